//! Which events a cached conversation holds, as far as deduplication in memory needs to know.
//!
//! Keeping every key of every cached conversation made the server's memory grow with each
//! message stored: 40–51 MB after 30 s of the webhook benchmark, ~600 messages in each of
//! its 1,000 conversations (BENCHMARKS.md). Only the most recent keys are kept. That decides
//! a new event from memory when no repeat of a forgotten one could be newer than it: Meta
//! redelivers an event unchanged, timestamp included, so a repeat is never newer than its
//! original. Events at or before the newest forgotten timestamp (a late redelivery, a poll of
//! the history) are checked against the file instead.

use std::collections::{HashSet, VecDeque};

use super::event::MessagingEvent;
use super::format::EventKey;

/// How many keys a cached conversation keeps: redeliveries come within minutes, when a real
/// conversation has moved on by a few messages, not by dozens.
pub(super) const KEPT: usize = 64;

#[derive(Debug)]
#[cfg_attr(test, derive(PartialEq))]
pub(super) struct RecentKeys {
    limit: usize,
    keys: HashSet<EventKey>,
    /// The timestamped keys in the order they were noted, the next one to forget first.
    /// Keys of events without a timestamp are never forgotten (Meta always sends one).
    order: VecDeque<(i64, EventKey)>,
    /// The newest timestamp among the keys forgotten.
    forgotten_up_to: Option<i64>,
}

impl RecentKeys {
    /// Keeps the last [`KEPT`] keys: what the server caches.
    pub(super) fn bounded() -> RecentKeys {
        RecentKeys::keeping(KEPT)
    }

    /// Keeps every key: for a pass over many records of the same files (journal replay).
    pub(super) fn complete() -> RecentKeys {
        RecentKeys::keeping(usize::MAX)
    }

    fn keeping(limit: usize) -> RecentKeys {
        RecentKeys {
            limit,
            keys: HashSet::new(),
            // Never grown past the limit: the oldest key goes before a new one comes in.
            order: VecDeque::with_capacity(limit.min(KEPT)),
            forgotten_up_to: None,
        }
    }

    /// Whether memory alone tells which of `events` are stored already.
    pub(super) fn decides(&self, events: &[MessagingEvent]) -> bool {
        let Some(forgotten) = self.forgotten_up_to else {
            return true;
        };
        events
            .iter()
            .all(|event| event.timestamp().is_some_and(|ts| ts > forgotten))
    }

    pub(super) fn contains(&self, key: &EventKey) -> bool {
        self.keys.contains(key)
    }

    /// Takes note of an event stored, forgetting the oldest noted beyond the limit.
    pub(super) fn note(&mut self, event: &MessagingEvent) {
        self.note_key(event.key(), event.timestamp());
    }

    pub(super) fn note_key(&mut self, key: EventKey, ts: Option<i64>) {
        if !self.keys.insert(key) {
            return;
        }
        let Some(ts) = ts else {
            return;
        };
        if self.order.len() == self.limit
            && let Some((old_ts, old)) = self.order.pop_front()
        {
            self.keys.remove(&old);
            self.forgotten_up_to = self.forgotten_up_to.max(Some(old_ts));
        }
        self.order.push_back((ts, key));
    }

    /// How many timestamped keys are kept ([`usize::MAX`]: all).
    pub(super) fn limit(&self) -> usize {
        self.limit
    }

    /// Takes note of an event older than every key to be noted, whose key would be forgotten
    /// by then anyway: only its timestamp counts (memory no longer decides what is that old).
    pub(super) fn note_forgotten(&mut self, ts: i64) {
        self.forgotten_up_to = self.forgotten_up_to.max(Some(ts));
    }

    /// Every key kept (all of them when [`RecentKeys::complete`]).
    pub(super) fn into_keys(self) -> HashSet<EventKey> {
        self.keys
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(mid: &str, ts: i64) -> MessagingEvent {
        json!({"timestamp": ts, "message": {"mid": mid}}).into()
    }

    fn event_key(event: &MessagingEvent) -> EventKey {
        event.key()
    }

    #[test]
    fn keeps_the_last_keys_and_decides_only_what_is_newer_than_the_forgotten() {
        let mut keys = RecentKeys::keeping(3);
        for (i, ts) in [10, 20, 30].into_iter().enumerate() {
            keys.note(&event(&format!("m{i}"), ts));
        }
        assert!(keys.decides(&[event("old", 1)]), "nothing forgotten yet");
        keys.note(&event("m3", 40));
        assert_eq!(keys.len(), 3);
        assert!(!keys.contains(&event_key(&event("m0", 10))));
        assert!(keys.contains(&event_key(&event("m1", 20))));
        // A repeat of m0 (timestamp 10) could be anything at or before 10.
        assert!(!keys.decides(&[event("x", 10)]));
        assert!(!keys.decides(&[event("y", 50), event("x", 5)]));
        assert!(
            !keys.decides(&[json!({"delivery": {}}).into()]),
            "no timestamp"
        );
        assert!(keys.decides(&[event("x", 11), event("y", 50)]));
    }

    #[test]
    fn the_newest_forgotten_timestamp_counts_whatever_the_order_noted() {
        let mut keys = RecentKeys::keeping(1);
        keys.note(&event("late", 90));
        keys.note(&event("early", 10));
        keys.note(&event("next", 20));
        // "late" (90) and "early" (10) are forgotten: 90 is the bound.
        assert!(!keys.decides(&[event("x", 60)]));
        assert!(keys.decides(&[event("x", 91)]));
    }

    #[test]
    fn keys_without_a_timestamp_are_kept_and_repeats_noted_once() {
        let mut keys = RecentKeys::keeping(1);
        let receipt = json!({"delivery": {"watermark": 1}}).into();
        keys.note(&receipt);
        keys.note(&event("a", 1));
        keys.note(&event("a", 1));
        keys.note(&event("b", 2));
        assert!(keys.contains(&event_key(&receipt)));
        assert!(keys.contains(&event_key(&event("b", 2))));
        assert!(!keys.contains(&event_key(&event("a", 1))));
        assert_eq!(keys.len(), 2);
        assert!(keys.decides(&[event("c", 2)]));
    }

    #[test]
    fn complete_forgets_nothing() {
        let mut keys = RecentKeys::complete();
        for i in 0..(3 * KEPT as i64) {
            keys.note(&event(&format!("m{i}"), i));
        }
        assert_eq!(keys.len(), 3 * KEPT);
        assert!(keys.decides(&[event("x", 0)]));
    }
}
