//! Duplicate suppression for events that carry an `event_id` (DESIGN §2: counted once).
//! Ids are remembered as 64-bit hashes with their event time, and forgotten once every window
//! that could contain them has closed, so memory follows the window length, not the stream.

use std::collections::HashMap;

/// What [`SeenEventIds::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    First,
    Before,
    /// New, but the quota of remembered ids is reached: not remembered, not counted.
    Full,
}

#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct SeenEventIds {
    seen: HashMap<u64, i64, ahash::RandomState>,
    /// Not snapshotted: the keys are fixed, so a restored set hashes ids as the old one did.
    #[serde(skip, default = "fixed_hasher")]
    hasher: ahash::RandomState,
}

/// Fixed keys: the same ids hash the same way in every run and on every host.
fn fixed_hasher() -> ahash::RandomState {
    ahash::RandomState::with_seeds(1, 2, 3, 4)
}

impl SeenEventIds {
    pub fn new() -> Self {
        Self { seen: HashMap::default(), hasher: fixed_hasher() }
    }

    /// True the first time an id is seen.
    pub fn first_time(&mut self, event_id: &str, ts: i64) -> bool {
        self.check(event_id, ts, usize::MAX) == Seen::First
    }

    /// Remembers `event_id` unless it was seen, or `max_ids` are remembered already.
    pub fn check(&mut self, event_id: &str, ts: i64, max_ids: usize) -> Seen {
        let h = self.hasher.hash_one(event_id);
        let full = self.seen.len() >= max_ids;
        match self.seen.entry(h) {
            std::collections::hash_map::Entry::Occupied(_) => Seen::Before,
            std::collections::hash_map::Entry::Vacant(_) if full => Seen::Full,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(ts);
                Seen::First
            }
        }
    }

    /// Forgets ids of events older than `t`.
    pub fn forget_before(&mut self, t: i64) {
        self.seen.retain(|_, ts| *ts >= t);
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}
