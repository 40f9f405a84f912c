//! Which conversations keep their state (recent message ids, the open lock file) in memory.
//!
//! Least recently used first out, and never one in use. Why not simply forget every idle
//! conversation once the cache is full (as it did before): on a server with more active
//! conversations than it keeps, that emptied the cache every ~1,000 new conversations, and the
//! next update of each busy conversation read its whole file again, on the request's path.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

#[derive(Debug)]
struct Entry<V> {
    value: Arc<V>,
    /// `clock` at the entry's last use.
    used: u64,
}

/// A bounded map of shared values. An entry counts as in use while someone holds its `Arc`.
#[derive(Debug)]
pub(super) struct Slots<K, V> {
    entries: HashMap<K, Entry<V>>,
    clock: u64,
    capacity: usize,
}

impl<K: Hash + Eq, V: Default> Slots<K, V> {
    pub(super) fn new(capacity: usize) -> Slots<K, V> {
        Slots {
            entries: HashMap::new(),
            clock: 0,
            capacity: capacity.max(1),
        }
    }

    /// The value kept for `key`, made if there is none. A new key in a full cache makes room
    /// for an eighth of it at once, the least recently used idle entries first: one pass over
    /// the entries per eighth of them, not one per new key.
    pub(super) fn get(&mut self, key: K) -> Arc<V> {
        self.clock += 1;
        let used = self.clock;
        if let Some(entry) = self.entries.get_mut(&key) {
            entry.used = used;
            return Arc::clone(&entry.value);
        }
        if self.entries.len() >= self.capacity {
            let keep = self.capacity - (self.capacity / 8).max(1);
            self.evict(self.entries.len() - keep);
        }
        let value = Arc::new(V::default());
        let kept = Arc::clone(&value);
        self.entries.insert(key, Entry { value, used });
        kept
    }

    /// Forgets up to `count` idle entries, the least recently used first. Entries in use stay,
    /// so the cache may hold more than its capacity while all of them are.
    fn evict(&mut self, count: usize) {
        let mut idle: Vec<u64> = (self.entries.values())
            .filter(|entry| Arc::strong_count(&entry.value) == 1)
            .map(|entry| entry.used)
            .collect();
        if idle.is_empty() {
            return;
        }
        let count = count.min(idle.len());
        let (_, newest_evicted, _) = idle.select_nth_unstable(count - 1);
        let newest_evicted = *newest_evicted;
        // `used` values are distinct, so these are the `count` oldest idle entries, and any
        // older one that went idle meanwhile (its last holder dropped it without the lock).
        self.entries
            .retain(|_, entry| entry.used > newest_evicted || Arc::strong_count(&entry.value) > 1);
    }

    #[cfg(test)]
    pub(super) fn peek(&self, key: &K) -> Option<&Arc<V>> {
        self.entries.get(key).map(|entry| &entry.value)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_idle_entries_go_first() {
        let mut slots: Slots<u32, ()> = Slots::new(16);
        for key in 0..16 {
            slots.get(key);
        }
        // 0 and 1 used again: now the most recent; 2 held by someone: in use.
        slots.get(0);
        slots.get(1);
        let held = slots.get(2);
        slots.get(100);
        // An eighth of 16: the two least recently used idle ones, 3 and 4.
        assert_eq!(slots.len(), 15);
        for kept in [0, 1, 2, 5, 15, 100] {
            assert!(slots.peek(&kept).is_some(), "{kept} kept");
        }
        for gone in [3, 4] {
            assert!(slots.peek(&gone).is_none(), "{gone} evicted");
        }
        assert!(
            Arc::ptr_eq(&held, &slots.get(2)),
            "the entry in use is the same"
        );
    }

    #[test]
    fn the_same_value_comes_back_while_it_is_kept() {
        let mut slots: Slots<u32, std::sync::Mutex<u32>> = Slots::new(4);
        *slots.get(1).lock().unwrap() = 7;
        assert_eq!(*slots.get(1).lock().unwrap(), 7);
        for key in 2..=8 {
            slots.get(key);
        }
        // 1 was the least recently used: made anew.
        assert_eq!(*slots.get(1).lock().unwrap(), 0);
    }

    #[test]
    fn entries_in_use_are_never_evicted_even_past_the_capacity() {
        let mut slots: Slots<u32, ()> = Slots::new(4);
        let held: Vec<_> = (0..6).map(|key| slots.get(key)).collect();
        assert_eq!(slots.len(), 6);
        for (key, value) in held.iter().enumerate() {
            assert!(Arc::ptr_eq(value, slots.peek(&(key as u32)).unwrap()));
        }
        drop(held);
        slots.get(6);
        // Now idle: the cache is back within its capacity, the oldest gone first.
        assert_eq!(slots.len(), 4);
        for key in 0..3 {
            assert!(slots.peek(&key).is_none(), "{key} evicted");
        }
        for key in 3..=6 {
            assert!(slots.peek(&key).is_some(), "{key} kept");
        }
    }

    #[test]
    fn a_cache_of_many_keeps_a_busy_key_through_a_stream_of_new_ones() {
        let mut slots: Slots<u32, ()> = Slots::new(1024);
        let busy = slots.get(0);
        drop(busy);
        for key in 1..10_000 {
            slots.get(key);
            if key % 100 == 0 {
                slots.get(0);
            }
        }
        assert!(
            slots.peek(&0).is_some(),
            "a key used every 100 new ones stays"
        );
        assert!(slots.len() <= 1024);
    }
}
