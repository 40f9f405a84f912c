//! One messaging event as a conversation file stores it: its line, and what deduplication and
//! ordering need of it (its key and timestamp), learned once when it is made.
//!
//! Why not a `serde_json::Value`: building each event's tree from the webhook's body, and
//! serialising it back into its line, were ~5% of the webhook's CPU, for events that are
//! stored exactly as they came. An event from raw JSON keeps its bytes as Meta sent them
//! (unless they span lines: see [`MessagingEvent::from_json`]) and is only peeked at.

use serde_json::Value;

use super::format::{EventKey, event_key, peek, timestamp};

#[derive(Debug, Clone, PartialEq)]
pub struct MessagingEvent {
    /// Compact JSON of one object, on one line: what goes into the file.
    line: Box<[u8]>,
    key: EventKey,
    timestamp: Option<i64>,
}

impl MessagingEvent {
    /// The event in `json`, kept as it is; `None` unless `json` is one JSON object. An event
    /// whose JSON spans lines (pretty-printed) is made compact: a file holds one per line.
    pub fn from_json(json: &[u8]) -> Option<MessagingEvent> {
        let json = json.trim_ascii();
        // A peek skips over strings it does not read without checking their UTF-8; the line
        // must be valid whole, for whoever reads the file.
        if json.first() != Some(&b'{') || std::str::from_utf8(json).is_err() {
            return None;
        }
        if json.contains(&b'\n') || json.contains(&b'\r') {
            let value: Value = serde_json::from_slice(json).ok()?;
            return Some(MessagingEvent::from(&value));
        }
        let (key, timestamp) = peek(json)?;
        Some(MessagingEvent {
            line: json.into(),
            key,
            timestamp,
        })
    }

    /// The event's compact JSON, one line, valid UTF-8: what a conversation stores.
    pub(crate) fn line(&self) -> &[u8] {
        &self.line
    }

    pub(super) fn key(&self) -> EventKey {
        self.key
    }

    /// How the event is recognised as stored already (its `message.mid`, or the whole event),
    /// as 16 bytes: the same in every backend, so both deduplicate alike.
    pub(crate) fn key_bytes(&self) -> [u8; 16] {
        self.key.to_be_bytes()
    }

    pub(crate) fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// The event as a tree, for whoever reads it back.
    pub fn to_value(&self) -> Value {
        serde_json::from_slice(&self.line).expect("an event's line is JSON")
    }
}

impl From<&Value> for MessagingEvent {
    fn from(event: &Value) -> MessagingEvent {
        MessagingEvent {
            // Compact JSON escapes control characters, so an event is always exactly one line.
            line: serde_json::to_vec(event)
                .expect("a Value always serialises")
                .into(),
            key: event_key(event),
            timestamp: timestamp(event),
        }
    }
}

impl From<Value> for MessagingEvent {
    fn from(event: Value) -> MessagingEvent {
        MessagingEvent::from(&event)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn raw_json_is_kept_as_sent_and_learns_what_a_tree_would() {
        let raw = br#"{"timestamp":7,"message":{"text":"a\nb","mid":"m.1"},"sender":{"id":"5"}}"#;
        let event = MessagingEvent::from_json(raw).unwrap();
        assert_eq!(event.line(), raw);
        let tree = MessagingEvent::from(event.to_value());
        assert_eq!(
            (event.key(), event.timestamp()),
            (tree.key(), tree.timestamp())
        );
        assert_eq!(event.timestamp(), Some(7));
    }

    #[test]
    fn events_without_a_mid_are_keyed_by_content_whatever_the_key_order() {
        let a = MessagingEvent::from_json(br#"{"read":{"watermark":5},"sender":{"id":"1"}}"#);
        let b = MessagingEvent::from_json(br#"{"sender":{"id":"1"},"read":{"watermark":5}}"#);
        let c = MessagingEvent::from(json!({"sender": {"id": "1"}, "read": {"watermark": 6}}));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.key(), b.key());
        assert_ne!(a.key(), c.key());
    }

    #[test]
    fn an_event_spanning_lines_is_made_compact() {
        let pretty =
            serde_json::to_vec_pretty(&json!({"message": {"mid": "m"}, "timestamp": 1})).unwrap();
        let event = MessagingEvent::from_json(&pretty).unwrap();
        assert_eq!(event.line(), br#"{"message":{"mid":"m"},"timestamp":1}"#);
        assert_eq!(event.timestamp(), Some(1));
    }

    #[test]
    fn anything_but_one_object_is_refused() {
        for bad in [
            &b"[1]"[..],
            b"\"x\"",
            b"{\"a\":1",
            b"{\"a\":1}{}",
            b"",
            b"null",
            b"{\"message\":{\"mid\":\"m\",\"text\":\"\xff\"}}",
        ] {
            assert!(MessagingEvent::from_json(bad).is_none(), "{bad:?}");
        }
    }
}
