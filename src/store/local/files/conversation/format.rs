//! The on-disk shape of a conversation file: a JSON array with one event per line.
//!
//! ```text
//! [
//! {"sender":{"id":"1"},...,"timestamp":1700000000000,...},
//! {"sender":{"id":"2"},...,"timestamp":1700000000500,...}
//! ]
//! ```
//!
//! One event per line makes an append a single write over the closing `\n]\n`, and makes a torn
//! append recoverable: every line before the torn one is still a complete event.

use std::collections::HashSet;

use serde_json::Value;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::event::MessagingEvent;
use super::recent_keys::RecentKeys;

/// The bytes every file in line format ends with; an append overwrites them.
pub(super) const TAIL: &[u8] = b"\n]\n";

/// How an event is recognised as already stored: Meta's message id when it has one (Meta
/// redelivers), else the whole event (delivery/read receipts, postbacks).
///
/// Kept as 128 bits of a SHA-256 rather than as text: a conversation's ids stay in memory
/// while it is cached, and 16 bytes a message instead of a ~100-byte string kept the server
/// within its memory budget (BENCHMARKS.md). Two different events share a key with odds
/// around 2^-128 per pair: nothing real.
pub(super) type EventKey = u128;

pub(super) fn event_key(event: &Value) -> EventKey {
    match event.pointer("/message/mid").and_then(Value::as_str) {
        Some(mid) => mid_key(mid),
        None => {
            // `serde_json::Map` is a BTreeMap here (no `preserve_order`), so equal events
            // serialise identically whatever order their keys arrived in.
            let canonical = serde_json::to_vec(event).expect("a Value always serialises");
            digest(b"event:", &canonical)
        }
    }
}

fn mid_key(mid: &str) -> EventKey {
    digest(b"mid:", mid.as_bytes())
}

fn digest(domain: &[u8], bytes: &[u8]) -> EventKey {
    let digest = Sha256::new()
        .chain_update(domain)
        .chain_update(bytes)
        .finalize();
    u128::from_be_bytes(digest[..16].try_into().expect("a SHA-256 is 32 bytes"))
}

pub(super) fn timestamp(event: &Value) -> Option<i64> {
    number_timestamp(event.get("timestamp")?.as_number()?)
}

fn number_timestamp(ts: &serde_json::Number) -> Option<i64> {
    ts.as_i64().or_else(|| ts.as_f64().map(|f| f as i64))
}

/// What reading a file must learn for later appends.
#[derive(Debug)]
pub(super) struct Summary {
    pub keys: RecentKeys,
    pub last_timestamp: Option<i64>,
    pub count: usize,
}

impl Summary {
    fn empty(keys: RecentKeys) -> Summary {
        Summary {
            keys,
            last_timestamp: None,
            count: 0,
        }
    }

    /// The summary of events already made, noting their keys in `keys`.
    pub(super) fn of(events: &[MessagingEvent], keys: RecentKeys) -> Summary {
        let mut summary = Summary::empty(keys);
        for event in events {
            summary.add(event.key(), event.timestamp());
        }
        summary
    }

    fn add(&mut self, key: EventKey, ts: Option<i64>) {
        self.keys.note_key(key, ts);
        self.count += 1;
        self.last_timestamp = self.last_timestamp.max(ts);
    }

    /// An event older than the keys kept: see [`RecentKeys::note_forgotten`].
    fn add_forgotten(&mut self, ts: i64) {
        self.keys.note_forgotten(ts);
        self.count += 1;
        self.last_timestamp = self.last_timestamp.max(Some(ts));
    }
}

/// Just the parts of an event a [`Summary`] needs; serde skips the rest without building it.
#[derive(serde::Deserialize)]
struct Peek<'a> {
    #[serde(borrow)]
    message: Option<PeekMessage<'a>>,
    timestamp: Option<serde_json::Number>,
}

#[derive(serde::Deserialize)]
struct PeekMessage<'a> {
    #[serde(borrow)]
    mid: Option<std::borrow::Cow<'a, str>>,
}

/// The summary of a file in line format that parses cleanly, without building its events
/// (what a server's first append to each conversation after a start-up pays for, a
/// conversation at a time); `None` for anything else, which [`parse`] handles.
///
/// Only the newest lines, whose keys `keys` keeps, are peeked at for their message id (and
/// its digest); of the older ones only the timestamp is read, as `keys` would forget their
/// ids anyway: a file of 5,000 events costs 64 peeks and 4,936 timestamp reads, not 5,000
/// peeks and digests.
pub(super) fn summarize(bytes: &[u8], keys: RecentKeys) -> Option<Summary> {
    let body = bytes.strip_prefix(b"[\n")?.strip_suffix(TAIL)?;
    let mut lines = Vec::new();
    let mut split = body.split(|&b| b == b'\n').peekable();
    while let Some(line) = split.next() {
        lines.push(match split.peek() {
            Some(_) => line.strip_suffix(b",")?,
            None => line,
        });
    }
    // From the end back to the oldest line whose key `keys` keeps.
    let (mut newest, mut timestamped) = (Vec::new(), 0);
    while timestamped < keys.limit()
        && let Some(line) = lines.pop()
    {
        let (key, ts) = peek(line)?;
        timestamped += usize::from(ts.is_some());
        newest.push((key, ts));
    }
    let mut summary = Summary::empty(keys);
    for line in lines {
        match peek_timestamp(line) {
            Some(ts) => summary.add_forgotten(ts),
            // Kept whatever its age (no timestamp), or not a plain line: peeked at whole.
            None => {
                let (key, ts) = peek(line)?;
                match ts {
                    Some(ts) => summary.add_forgotten(ts),
                    None => summary.add(key, None),
                }
            }
        }
    }
    for (key, ts) in newest.into_iter().rev() {
        summary.add(key, ts);
    }
    Some(summary)
}

/// An event's timestamp when it reads as a plain number; `None` for anything else (the
/// caller peeks at it whole).
fn peek_timestamp(event: &[u8]) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Timestamp {
        timestamp: Option<serde_json::Number>,
    }
    if event.first() != Some(&b'{') {
        return None;
    }
    let peeked: Timestamp = serde_json::from_slice(event).ok()?;
    number_timestamp(&peeked.timestamp?)
}

/// One event's key and timestamp, as [`event_key`] and [`timestamp`] give them. Events with
/// a `mid` (nearly all) are only peeked at; the rest are built whole for their digest.
pub(super) fn peek(event: &[u8]) -> Option<(EventKey, Option<i64>)> {
    if event.first() == Some(&b'{')
        && let Ok(Peek {
            message: Some(PeekMessage { mid: Some(mid) }),
            timestamp,
        }) = serde_json::from_slice::<Peek>(event)
    {
        return Some((mid_key(&mid), timestamp.as_ref().and_then(number_timestamp)));
    }
    let event: Value = serde_json::from_slice(event).ok()?;
    Some((event_key(&event), timestamp(&event)))
}

/// Sorts by timestamp, keeping arrival order among equals. An event without a timestamp keeps
/// its place after the event before it.
pub(super) fn sort_chronologically(events: &mut Vec<MessagingEvent>) {
    let mut last = i64::MIN;
    let mut keyed: Vec<(i64, MessagingEvent)> = events
        .drain(..)
        .map(|event| {
            last = event.timestamp().unwrap_or(last);
            (last, event)
        })
        .collect();
    keyed.sort_by_key(|(ts, _)| *ts);
    events.extend(keyed.into_iter().map(|(_, event)| event));
}

/// Drops events `stored` already or repeated within `events`.
pub(super) fn keep_unseen(
    events: impl IntoIterator<Item = MessagingEvent>,
    stored: impl Fn(&EventKey) -> bool,
) -> Vec<MessagingEvent> {
    let mut batch = HashSet::new();
    events
        .into_iter()
        .filter(|event| {
            let key = event.key();
            !stored(&key) && batch.insert(key)
        })
        .collect()
}

/// What [`render`] or [`render_append`] made, read as a JSON array of the events in it: both
/// are one once their first byte (`[` or `,`) is `[`.
pub(super) fn as_json_array(rendered: &[u8]) -> [&[u8]; 2] {
    [b"[", rendered.get(1..).unwrap_or_default()]
}

/// A whole file holding `events`.
pub(super) fn render(events: &[MessagingEvent]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rendered_len(events));
    out.push(b'[');
    for (i, event) in events.iter().enumerate() {
        out.extend_from_slice(if i == 0 { b"\n" } else { b",\n" });
        out.extend_from_slice(event.line());
    }
    out.extend_from_slice(TAIL);
    out
}

/// What replaces the [`TAIL`] of a non-empty file to add `events` after its last one.
pub(super) fn render_append(events: &[MessagingEvent]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rendered_len(events));
    for event in events {
        out.extend_from_slice(b",\n");
        out.extend_from_slice(event.line());
    }
    out.extend_from_slice(TAIL);
    out
}

/// What [`render`] or [`render_append`] makes of `events` is at most this long.
fn rendered_len(events: &[MessagingEvent]) -> usize {
    let lines: usize = events.iter().map(|event| event.line().len() + 2).sum();
    lines + TAIL.len() + 1
}

/// What a file holds, and whether it had to be pieced together.
#[derive(Debug)]
pub(super) struct Parsed {
    pub events: Vec<MessagingEvent>,
    /// The file was already in line format: appends may go in place.
    pub line_format: bool,
    /// Lines that were not complete events. Only the last line can be torn by a crash during
    /// an append; `damaged_before_end` means something else broke it.
    pub dropped_lines: usize,
    pub damaged_before_end: bool,
    /// The file parsed as a JSON array as it is; otherwise it must be rewritten before a reader
    /// sees it again, even when every event could be recovered (a torn closing `]`).
    pub clean: bool,
}

pub(super) fn parse(bytes: &[u8]) -> Parsed {
    // Each event kept as the file has it; an array holding anything but objects is pieced
    // together line by line below, which drops what is not an event.
    let events = serde_json::from_slice::<Vec<&RawValue>>(bytes)
        .ok()
        .and_then(|raw| {
            raw.iter()
                .map(|event| MessagingEvent::from_json(event.get().as_bytes()))
                .collect::<Option<Vec<_>>>()
        });
    if let Some(events) = events {
        // A file written by the original (one line, no trailing newline) parses too; it is
        // rewritten in line format before the first in-place append.
        let line_format = !events.is_empty()
            && bytes.starts_with(b"[\n")
            && bytes.ends_with(TAIL)
            && bytes.iter().filter(|&&b| b == b'\n').count() == events.len() + 2;
        return Parsed {
            events,
            line_format,
            dropped_lines: 0,
            damaged_before_end: false,
            clean: true,
        };
    }
    let lines: Vec<&[u8]> = bytes
        .split(|&b| b == b'\n')
        .map(|l| l.trim_ascii())
        .filter(|l| !l.is_empty() && *l != b"[" && *l != b"]")
        .collect();
    let mut events = Vec::new();
    let mut bad = Vec::new();
    for (i, raw) in lines.iter().enumerate() {
        let raw = raw.strip_prefix(b"[").unwrap_or(raw);
        let raw = raw.strip_suffix(b"]").unwrap_or(raw);
        let raw = raw.strip_suffix(b",").unwrap_or(raw);
        match MessagingEvent::from_json(raw) {
            Some(event) => events.push(event),
            None => bad.push(i),
        }
    }
    Parsed {
        events,
        line_format: false,
        dropped_lines: bad.len(),
        damaged_before_end: bad.iter().any(|&i| i + 1 < lines.len()),
        clean: false,
    }
}

#[cfg(test)]
mod tests;
