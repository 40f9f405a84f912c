//! Keeping a customer's photos, videos, audio, files and stickers before Meta's signed CDN
//! links expire.
//!
//! Every URL of a stored event is owed a download ([`owed_by`]), recorded in the queue before
//! the webhook answers; the [`worker`] fetches them in the background ([`fetch`]: allowed hosts
//! only, size-capped, paced) and writes
//! `facebook/<page_id>/attachments/<sender_id>/<mid>-<n>.<ext>`: `n` counts the event's URLs
//! in order (`message.attachments[].payload.url`, then a poll's `message.sticker`), the
//! extension comes from the content type. The conversation file is not changed; a bot finds
//! an event's files by that rule.

pub mod fetch;
pub mod worker;

use serde_json::Value;

use crate::domain::{PageId, SenderId};
use crate::store::attachments::Owed;
use crate::store::conversations::Conversations;
use crate::store::{MessagingEvent, StoreError};

pub use worker::Downloader;

/// The attachment URLs of one event, in the order `n` counts them.
pub fn urls(event: &Value) -> Vec<String> {
    let Some(message) = event.get("message") else {
        return Vec::new();
    };
    let attachments = message
        .get("attachments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|a| a.pointer("/payload/url").and_then(Value::as_str));
    let sticker = std::iter::once(message.get("sticker").and_then(Value::as_str));
    attachments
        .chain(sticker)
        .flatten()
        .filter(|url| !url.is_empty())
        .map(str::to_string)
        .collect()
}

/// Merges `events` into a conversation, then owes their attachments a download when downloads
/// are on; how many events were new. (The webhook does the same for a whole delivery at once.)
pub async fn add_owing(
    conversations: &dyn Conversations,
    downloader: Option<&Downloader>,
    page: &PageId,
    customer: &SenderId,
    events: Vec<MessagingEvent>,
) -> Result<usize, StoreError> {
    let owed = downloader
        .map(|_| owed_by(page, customer, &events))
        .unwrap_or_default();
    let new = conversations.add(page, customer, events).await?;
    if let Some(downloader) = downloader {
        downloader.owe(owed).await?;
    }
    Ok(new)
}

/// What `events` of one conversation owe: each URL of each event with a message id.
pub fn owed_by(page: &PageId, customer: &SenderId, events: &[MessagingEvent]) -> Vec<Owed> {
    let mut owed = Vec::new();
    for event in events {
        // Most events carry text only: they are not parsed again.
        let line = event.line();
        if !contains(line, b"\"attachments\"") && !contains(line, b"\"sticker\"") {
            continue;
        }
        let value = event.to_value();
        let Some(mid) = value.pointer("/message/mid").and_then(Value::as_str) else {
            continue;
        };
        for (n, url) in urls(&value).into_iter().enumerate() {
            owed.push(Owed {
                page: page.clone(),
                customer: customer.clone(),
                mid: mid.to_string(),
                n: n as u32,
                url,
                attempts: 0,
            });
        }
    }
    owed
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

/// `<mid>-<n>.<ext>`: the message id with anything but letters, digits, `_` and `-` made `_`
/// (Meta's ids are `m_` and base64url today; a file name must never hold a `/` or start
/// with a dot).
pub fn file_name(mid: &str, n: u32, content_type: Option<&str>) -> String {
    let safe: String = mid
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' => c,
            _ => '_',
        })
        .collect();
    format!("{safe}-{n}.{}", extension(content_type))
}

fn extension(content_type: Option<&str>) -> &'static str {
    let essence = content_type
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("image/jpeg" | "image/jpg") => "jpg",
        Some("image/png") => "png",
        Some("image/gif") => "gif",
        Some("image/webp") => "webp",
        Some("image/heic") => "heic",
        Some("video/mp4") => "mp4",
        Some("video/quicktime") => "mov",
        Some("video/webm") => "webm",
        Some("audio/mpeg") => "mp3",
        Some("audio/mp4" | "audio/x-m4a") => "m4a",
        Some("audio/aac") => "aac",
        Some("audio/ogg") => "ogg",
        Some("audio/wav" | "audio/x-wav") => "wav",
        Some("application/pdf") => "pdf",
        Some("application/zip") => "zip",
        Some("text/plain") => "txt",
        _ => "bin",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_url_of_webhook_and_poll_events_is_owed_in_order() {
        let webhook = json!({"sender": {"id": "7001"}, "recipient": {"id": "101"}, "timestamp": 1,
            "message": {"mid": "m_1", "attachments": [
                {"type": "image", "payload": {"url": "https://scontent.fbcdn.net/a.jpg"}},
                {"type": "image", "payload": {"url": "https://scontent.fbcdn.net/s.png", "sticker_id": 369}},
                {"type": "fallback", "payload": null}]}});
        let polled = json!({"sender": {"id": "7001"}, "recipient": {"id": "101"}, "timestamp": 2,
            "message": {"mid": "m_2", "sticker": "https://cdn.fbsbx.com/st.png",
                "attachments": [{"type": "file", "payload": {"url": "https://cdn.fbsbx.com/f.pdf"}}]}});
        let text = json!({"sender": {"id": "7001"}, "recipient": {"id": "101"}, "timestamp": 3,
            "message": {"mid": "m_3", "text": "no attachments here"}});
        let events: Vec<_> = [webhook, polled, text]
            .iter()
            .map(MessagingEvent::from)
            .collect();
        let (page, customer) = (
            PageId::parse("101").unwrap(),
            SenderId::parse("7001").unwrap(),
        );
        let owed: Vec<(String, u32, String)> = owed_by(&page, &customer, &events)
            .into_iter()
            .map(|o| (o.mid, o.n, o.url))
            .collect();
        assert_eq!(
            owed,
            [
                ("m_1".into(), 0, "https://scontent.fbcdn.net/a.jpg".into()),
                ("m_1".into(), 1, "https://scontent.fbcdn.net/s.png".into()),
                ("m_2".into(), 0, "https://cdn.fbsbx.com/f.pdf".into()),
                ("m_2".into(), 1, "https://cdn.fbsbx.com/st.png".into()),
            ]
        );
    }

    #[test]
    fn file_names_are_safe_and_typed() {
        assert_eq!(file_name("m_AbC-9", 0, Some("image/jpeg")), "m_AbC-9-0.jpg");
        assert_eq!(
            file_name("../../etc/passwd", 2, Some("video/mp4; codecs=x")),
            "______etc_passwd-2.mp4"
        );
        assert_eq!(file_name("m.1", 1, None), "m_1-1.bin");
        assert_eq!(file_name("m", 0, Some("application/x-unknown")), "m-0.bin");
    }
}
