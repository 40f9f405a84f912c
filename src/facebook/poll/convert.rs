//! Turning a Graph API message into the webhook's event shape, so that the poll and the
//! webhook write the same thing into a conversation file.
//!
//! Graph: `{id, created_time, from: {id}, to: {data: [{id}]}, message, attachments: {data},
//! sticker}`. Webhook: `{sender: {id}, recipient: {id}, timestamp (ms), message: {mid, text?,
//! attachments?, sticker?}}`. A message without text (an image, a sticker) is kept.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::macros::format_description;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("message without an id")]
    NoId,
    #[error("message {0} has no sender or recipient")]
    NoParties(String),
    #[error("message {0} has an unreadable created_time")]
    BadTime(String),
}

pub fn to_event(message: &Value) -> Result<Value, ConvertError> {
    let mid = message
        .get("id")
        .and_then(Value::as_str)
        .ok_or(ConvertError::NoId)?;
    let sender = message.pointer("/from/id").and_then(Value::as_str);
    let recipient = message.pointer("/to/data/0/id").and_then(Value::as_str);
    let (Some(sender), Some(recipient)) = (sender, recipient) else {
        return Err(ConvertError::NoParties(mid.to_string()));
    };
    let created = message
        .get("created_time")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let timestamp = parse_time(created).ok_or_else(|| ConvertError::BadTime(mid.to_string()))?;

    let mut body = Map::new();
    body.insert("mid".into(), json!(mid));
    if let Some(text) = message
        .get("message")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        body.insert("text".into(), json!(text));
    }
    let attachments: Vec<Value> = message
        .pointer("/attachments/data")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(attachment)
        .collect();
    if !attachments.is_empty() {
        body.insert("attachments".into(), Value::Array(attachments));
    }
    if let Some(sticker) = message.get("sticker").filter(|s| !s.is_null()) {
        body.insert("sticker".into(), sticker.clone());
    }
    Ok(json!({
        "sender": {"id": sender},
        "recipient": {"id": recipient},
        "timestamp": timestamp,
        "message": body,
    }))
}

/// `{type, payload: {url}}` as the webhook sends attachments, plus Graph's own fields.
fn attachment(graph: &Value) -> Value {
    let mime = graph
        .get("mime_type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = match mime.split('/').next() {
        Some("image") => "image",
        Some("video") => "video",
        Some("audio") => "audio",
        _ => "file",
    };
    let url = graph
        .pointer("/image_data/url")
        .or_else(|| graph.pointer("/video_data/url"))
        .or_else(|| graph.get("file_url"))
        .cloned()
        .unwrap_or(Value::Null);
    json!({"type": kind, "payload": {"url": url}, "graph": graph})
}

/// `2024-01-01T12:00:00+0000` (Graph's format) to Unix milliseconds.
pub fn parse_time(text: &str) -> Option<i64> {
    let format = format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory][offset_minute]"
    );
    let parsed = OffsetDateTime::parse(text, &format)
        .or_else(|_| OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339))
        .ok()?;
    Some((parsed.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_messages_become_webhook_events() {
        let graph = json!({"id": "m_1", "created_time": "2024-01-01T12:00:00+0000", "message": "Hi",
            "from": {"id": "2001", "name": "Ann"}, "to": {"data": [{"id": "101", "name": "Page"}]}});
        assert_eq!(
            to_event(&graph).unwrap(),
            json!({"sender": {"id": "2001"}, "recipient": {"id": "101"}, "timestamp": 1_704_110_400_000_i64, "message": {"mid": "m_1", "text": "Hi"}})
        );
    }

    #[test]
    fn attachments_and_stickers_are_kept_without_text() {
        let graph = json!({"id": "m_2", "created_time": "2024-01-01T12:00:01+0100", "message": "",
            "from": {"id": "2001"}, "to": {"data": [{"id": "101"}]},
            "sticker": "https://cdn.example/sticker.png",
            "attachments": {"data": [{"id": "a1", "mime_type": "image/jpeg", "image_data": {"url": "https://cdn.example/a.jpg"}}]}});
        let event = to_event(&graph).unwrap();
        assert_eq!(event["timestamp"], 1_704_106_801_000_i64);
        assert!(event["message"].get("text").is_none());
        assert_eq!(
            event["message"]["sticker"],
            "https://cdn.example/sticker.png"
        );
        assert_eq!(event["message"]["attachments"][0]["type"], "image");
        assert_eq!(
            event["message"]["attachments"][0]["payload"]["url"],
            "https://cdn.example/a.jpg"
        );
    }

    #[test]
    fn unusable_messages_are_errors_not_panics() {
        assert_eq!(to_event(&json!({})), Err(ConvertError::NoId));
        assert_eq!(
            to_event(&json!({"id": "m", "created_time": "2024-01-01T12:00:00+0000"})),
            Err(ConvertError::NoParties("m".into()))
        );
        let bad_time = json!({"id": "m", "created_time": "yesterday", "from": {"id": "1"}, "to": {"data": [{"id": "2"}]}});
        assert_eq!(to_event(&bad_time), Err(ConvertError::BadTime("m".into())));
    }
}
