//! One scenario's item-hot-score window state: which windows are due, which events are late,
//! and the columnar batch of a window for the scorer.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::buckets::{BUCKET_MS, ItemBuckets};
use crate::config::WindowGeometry;
use crate::scoring::WindowBatch;

/// Most distinct action names one scenario tracks; beyond it events are rejected as
/// `TooManyActions` rather than growing state without bound.
pub const MAX_ACTIONS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    Accepted,
    /// Every window that contains the event has already closed.
    Late,
    TooManyActions,
}

/// Window state of one scenario (snapshotted as is).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct HotWindows {
    items: HashMap<Box<str>, ItemBuckets, ahash::RandomState>,
    /// Action names by code; codes are stable for the life of the state.
    actions: Vec<String>,
    action_codes: HashMap<String, u16, ahash::RandomState>,
    /// Number of (item, bucket) pairs per bucket minute: finds the windows that hold events.
    minutes: BTreeMap<i64, u32>,
    max_ts: Option<i64>,
    /// Every window ending at or before this has been emitted or skipped; later ones are open.
    closed_through: Option<i64>,
}

impl HotWindows {
    /// The first window end that is still open under geometry `g`.
    fn next_open_end(&self, g: WindowGeometry) -> Option<i64> {
        self.closed_through.map(|c| g.next_end_after(c))
    }

    fn action_code(&mut self, action: &str) -> Option<u16> {
        if let Some(&c) = self.action_codes.get(action) {
            return Some(c);
        }
        if self.actions.len() >= MAX_ACTIONS {
            return None;
        }
        let code = self.actions.len() as u16;
        self.actions.push(action.to_string());
        self.action_codes.insert(action.to_string(), code);
        Some(code)
    }

    pub fn add(&mut self, item: &str, action: &str, ts: i64, g: WindowGeometry) -> AddOutcome {
        if let Some(open) = self.next_open_end(g)
            && ts < open - g.size_ms
        {
            return AddOutcome::Late;
        }
        let Some(code) = self.action_code(action) else {
            return AddOutcome::TooManyActions;
        };
        let buckets = match self.items.get_mut(item) {
            Some(b) => b,
            None => self.items.entry(item.into()).or_default(),
        };
        if buckets.add(ts, code) {
            *self.minutes.entry(ts.div_euclid(BUCKET_MS)).or_default() += 1;
        }
        self.max_ts = Some(self.max_ts.map_or(ts, |m| m.max(ts)));
        AddOutcome::Accepted
    }

    /// Max event time seen minus the allowed lateness.
    pub fn watermark(&self, lateness_ms: i64) -> Option<i64> {
        self.max_ts.map(|m| m - lateness_ms)
    }

    pub fn max_ts(&self) -> Option<i64> {
        self.max_ts
    }

    /// The next window end `<= watermark` whose window holds events, if any. Windows without
    /// events are skipped (they emit nothing).
    pub fn next_due(&self, g: WindowGeometry, watermark: i64) -> Option<i64> {
        let (&earliest_minute, _) = self.minutes.first_key_value()?;
        let first_with_events = g.first_end_containing(earliest_minute * BUCKET_MS);
        let mut end = match self.next_open_end(g) {
            Some(open) => open.max(first_with_events),
            None => first_with_events,
        };
        loop {
            if end > watermark {
                return None;
            }
            let (lo, hi) = ((end - g.size_ms).div_euclid(BUCKET_MS), end.div_euclid(BUCKET_MS));
            if self.minutes.range(lo..hi).next().is_some() {
                return Some(end);
            }
            // Jump to the first window that contains the next non-empty bucket.
            let (&next_minute, _) = self.minutes.range(hi..).next()?;
            end = g.first_end_containing(next_minute * BUCKET_MS);
        }
    }

    /// Fills `batch` (already cleared and carrying the window bounds) with the window ending at
    /// `end`, and `ids` with the item id of each batch item.
    pub fn build_batch<'s>(&'s self, end: i64, g: WindowGeometry, batch: &mut WindowBatch, ids: &mut Vec<&'s str>) {
        let start = end - g.size_ms;
        for (item, buckets) in &self.items {
            if buckets.push_rows(start, end, batch) {
                batch.finish_item();
                ids.push(item);
            }
        }
    }

    /// Action names by code, for the batch header.
    pub fn actions(&self) -> &[String] {
        &self.actions
    }

    /// Marks every window ending at or before `end` closed and drops buckets no open window
    /// can contain.
    pub fn close_through(&mut self, end: i64, g: WindowGeometry) {
        if self.closed_through.is_some_and(|c| c >= end) {
            return;
        }
        self.closed_through = Some(end);
        let keep_from = g.next_end_after(end) - g.size_ms;
        let first_kept_minute = keep_from.div_euclid(BUCKET_MS);
        if self.minutes.first_key_value().is_none_or(|(&m, _)| m >= first_kept_minute) {
            return;
        }
        self.minutes = self.minutes.split_off(&first_kept_minute);
        self.items.retain(|_, b| {
            b.evict_before(keep_from);
            !b.is_empty()
        });
    }

    /// Like [`Self::close_through`] for a watermark: closes the last window end `<= watermark`.
    pub fn close_to_watermark(&mut self, watermark: i64, g: WindowGeometry) {
        let last_end = watermark.div_euclid(g.slide_ms) * g.slide_ms;
        self.close_through(last_end, g);
    }

    pub fn item_count(&self) -> usize {
        self.items.len()
    }

    /// (item, bucket) pairs held.
    pub fn bucket_count(&self) -> usize {
        self.minutes.values().map(|&n| n as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Approximate bytes of state: item keys, per-item buckets, the hash tables and the minute
    /// index.
    pub fn state_bytes(&self) -> usize {
        let per_entry = std::mem::size_of::<(Box<str>, ItemBuckets)>() + 8;
        self.items.iter().map(|(k, b)| k.len() + b.heap_bytes()).sum::<usize>()
            + self.items.capacity() * per_entry
            + self.minutes.len() * (std::mem::size_of::<(i64, u32)>() + 16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn geom(w: i64, s: i64) -> WindowGeometry {
        WindowGeometry::from_minutes(w, s)
    }

    #[test]
    fn emits_each_window_that_holds_events_and_skips_gaps() {
        let g = geom(10, 5);
        let mut w = HotWindows::default();
        w.add("a", "click", 2 * MIN, g);
        w.add("a", "click", 100 * MIN, g);
        let mut ends = Vec::new();
        while let Some(e) = w.next_due(g, i64::MAX) {
            ends.push(e / MIN);
            w.close_through(e, g);
        }
        assert_eq!(ends, vec![5, 10, 105, 110]);
        assert!(w.is_empty());
    }

    #[test]
    fn late_events_are_refused_once_their_windows_closed() {
        let g = geom(10, 5);
        let mut w = HotWindows::default();
        assert_eq!(w.add("a", "view", 30 * MIN, g), AddOutcome::Accepted);
        w.close_to_watermark(30 * MIN, g); // closes the window ending at 30
        // Open windows end at 35, 40, ...: the window ending at 35 starts at 25.
        assert_eq!(w.add("a", "view", 25 * MIN, g), AddOutcome::Accepted);
        assert_eq!(w.add("a", "view", 25 * MIN - 1, g), AddOutcome::Late);
    }

    #[test]
    fn batch_holds_only_the_window() {
        let g = geom(2, 1);
        let mut w = HotWindows::default();
        w.add("a", "view", 0, g);
        w.add("b", "view", 2 * MIN + 5, g);
        let mut batch = WindowBatch::new(0, 2 * MIN, vec![], vec![], 0.0);
        let mut ids = Vec::new();
        w.build_batch(2 * MIN, g, &mut batch, &mut ids);
        assert_eq!(ids, vec!["a"]);
        assert_eq!(batch.row_age_mean_ms, vec![(2 * MIN) as f64]);
    }
}
