//! One scenario's item-hot-score window state: which windows are due, which events are late,
//! and the columnar batch of a window for the scorer.

use std::collections::{BTreeMap, HashMap};

use super::buckets::{BUCKET_MS, age_moments};
use super::features::{BatchFeatures, FeatureMinute, FeatureSet, retained};
use super::item_ids::ItemIds;
use super::minute_cells::{CellRow, MinuteCells};
use crate::config::{FeatureDef, WindowGeometry};
use crate::event::Event;
use crate::prefetch::prefetch_at;
use crate::scoring::WindowBatch;

/// Most distinct action names one scenario tracks; beyond it events are rejected as
/// `TooManyActions` rather than growing state without bound.
pub const MAX_ACTIONS: usize = 1024;

/// How many cells ahead a sweep over a window's cells starts loading the per-item state it
/// will touch.
const PREFETCH_AHEAD: usize = 16;

/// Sweeps prefetch only in a scenario with more ids than this: below it the per-id arrays
/// (4 bytes an id) stay in the caches, and the hints would only add work.
const PREFETCH_FROM_IDS: usize = 1 << 18;

/// How far ahead a sweep over the cells of a scenario with `ids` ids prefetches; 0: not at all.
fn prefetch_distance(ids: usize) -> usize {
    if ids > PREFETCH_FROM_IDS { PREFETCH_AHEAD } else { 0 }
}

/// The item of the cell `ahead` past cell `i`, for a sweep to prefetch its state: `None` when
/// the sweep does not prefetch (`ahead` is 0) or the minute ends first.
#[inline(always)]
fn item_ahead(cells: &[CellRow], i: usize, ahead: usize) -> Option<u32> {
    if ahead == 0 {
        return None;
    }
    cells.get(i + ahead).map(|c| c.item)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    Accepted,
    /// Every window that contains the event has already closed.
    Late,
    TooManyActions,
    /// A new item beyond the scenario's item quota: refused, nothing changed.
    OverQuota,
}

/// Per interned item: how many minutes hold its cells, and its two newest such minutes with
/// the index of its head cell there, so an event finds its cell without a lookup unless it is
/// more than one held minute out of order. 20 bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct ItemSlot {
    held: u32,
    /// Minutes since the epoch, newest first; [`NO_MINUTE`] when not held.
    recent_minutes: [i32; 2],
    recent_heads: [u32; 2],
}

const NO_MINUTE: i32 = i32::MIN;

impl Default for ItemSlot {
    fn default() -> Self {
        ItemSlot { held: 0, recent_minutes: [NO_MINUTE; 2], recent_heads: [0; 2] }
    }
}

/// Reused arrays of [`HotWindows::build_batch`]. Not state: a clone starts empty.
#[derive(Debug, Default)]
struct BatchScratch {
    /// Batch item index + 1 by item id; 0 when the item is not in the batch being built.
    mark: Vec<u32>,
    /// Item ids in batch order.
    order: Vec<u32>,
    /// Rows per batch item, then the next free row of each.
    rows: Vec<u32>,
    /// One minute's (batch item, feature row) pairs, merged into the feature columns a column
    /// at a time.
    heads: Vec<(u32, u32)>,
    /// The feature columns' accumulators.
    features: BatchFeatures,
}

impl Clone for BatchScratch {
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// Window state of one scenario: one-minute buckets stored minute-major (every cell of a
/// minute in one vector) over interned item ids. Building a window's batch reads its minutes in
/// order and evicting a closed minute touches only that minute's items; an item-major layout
/// visited every item of the scenario, a cache miss each, at every slide (docs/benchmarks.md).
#[derive(Debug, Default, Clone)]
pub struct HotWindows {
    pub(super) ids: ItemIds<ItemSlot>,
    pub(super) minutes: BTreeMap<i64, MinuteCells>,
    /// Action names by code; codes are stable for the life of the state.
    pub(super) actions: Vec<String>,
    pub(super) action_codes: HashMap<String, u16, ahash::RandomState>,
    pub(super) max_ts: Option<i64>,
    /// Every window ending at or before this has been emitted or skipped; later ones are open.
    pub(super) closed_through: Option<i64>,
    /// Minutes before this were shrunk to fit once the watermark passed them.
    sealed_before: i64,
    scratch: BatchScratch,
    /// The scenario's declared features; `None` when it declares none.
    pub(super) features: Option<Box<FeatureSet>>,
}

/// The head cell of (item `id`, `minute`) and its minute, created (with a first cell of
/// `action`) if missing. A free function over the fields it needs, so callers may keep
/// borrowing the others.
fn locate<'m>(
    ids: &mut ItemIds<ItemSlot>,
    minutes: &'m mut BTreeMap<i64, MinuteCells>,
    id: u32,
    minute: i32,
    action: u16,
) -> (&'m mut MinuteCells, u32) {
    let slot = ids.get_mut(id);
    let cells = minutes.entry(i64::from(minute)).or_default();
    let [newest, older] = slot.recent_minutes;
    let head = if newest == minute {
        slot.recent_heads[0]
    } else if older == minute {
        slot.recent_heads[1]
    } else if let Some(h) = (minute < older).then(|| cells.find_head(id)).flatten() {
        h
    } else {
        // Newer than the item's second-newest held minute and not one of the two: the item
        // holds nothing here yet.
        let h = cells.push_head(id, action);
        slot.held += 1;
        if minute > newest {
            slot.recent_minutes = [minute, newest];
            slot.recent_heads = [h, slot.recent_heads[0]];
        } else if minute > older {
            (slot.recent_minutes[1], slot.recent_heads[1]) = (minute, h);
        }
        h
    };
    (cells, head)
}

impl HotWindows {
    /// The first window end that is still open under geometry `g`.
    fn next_open_end(&self, g: WindowGeometry) -> Option<i64> {
        self.closed_through.map(|c| g.next_end_after(c))
    }

    fn action_code(&mut self, action: &str) -> Option<u16> {
        // A scenario usually has a handful of actions: comparing them beats hashing.
        if self.actions.len() <= 16 {
            if let Some(c) = self.actions.iter().position(|a| a == action) {
                return Some(c as u16);
            }
        } else if let Some(&c) = self.action_codes.get(action) {
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
        self.add_within(item, action, ts, g, usize::MAX)
    }

    /// Like [`Self::add`], refusing an item not held yet once `max_items` are held.
    pub fn add_within(&mut self, item: &str, action: &str, ts: i64, g: WindowGeometry, max_items: usize) -> AddOutcome {
        self.add_inner(item, action, ts, g, max_items, None)
    }

    /// Adds a whole event: its cell, and what it gives the declared features.
    pub fn add_event(&mut self, ev: &Event<'_>, g: WindowGeometry, max_items: usize) -> AddOutcome {
        self.add_inner(&ev.item_id, &ev.action, ev.ts, g, max_items, Some(ev))
    }

    /// Puts `defs` in force (a config change): aggregates of a feature declared the same way
    /// before are kept; changed and new features start empty from here, and dropped ones go.
    pub fn set_features(&mut self, defs: &[FeatureDef]) {
        let old: &[FeatureDef] = self.features.as_ref().map_or(&[], |f| &f.defs);
        if old == defs {
            return;
        }
        let keep = retained(old, defs);
        let old_n = old.len();
        for m in self.minutes.values_mut() {
            if keep.iter().all(Option::is_none) {
                m.features = None;
            } else if let Some(fm) = &mut m.features {
                fm.remap(old_n, &keep, defs);
            }
        }
        tracing::debug!(kept = keep.iter().flatten().count(), declared = defs.len(), "declared features changed");
        self.features = (!defs.is_empty()).then(|| Box::new(FeatureSet::new(defs.to_vec())));
    }

    /// Restores one bucket's feature aggregates (a snapshot); the bucket's cells are in place.
    pub(super) fn restore_features(&mut self, id: u32, minute: i32, aggs: &[super::features::PortableAgg]) -> Result<(), String> {
        let set = self.features.as_deref().ok_or("feature aggregates without declared features")?;
        if aggs.len() != set.defs.len() {
            return Err(format!("{} feature aggregates for {} declared features", aggs.len(), set.defs.len()));
        }
        // The head exists (its cells were just restored), so the action is not used.
        let (cells, head) = locate(&mut self.ids, &mut self.minutes, id, minute, 0);
        let fm = cells.features.get_or_insert_default();
        aggs.iter().enumerate().try_for_each(|(i, p)| fm.restore(head, i, set, p))
    }

    /// The declared features in force.
    pub fn feature_defs(&self) -> &[FeatureDef] {
        self.features.as_ref().map_or(&[], |f| &f.defs)
    }

    fn add_inner(&mut self, item: &str, action: &str, ts: i64, g: WindowGeometry, max_items: usize, ev: Option<&Event<'_>>) -> AddOutcome {
        if let Some(open) = self.next_open_end(g)
            && ts < open - g.size_ms
        {
            return AddOutcome::Late;
        }
        if self.ids.len() >= max_items && !self.ids.contains(item) {
            return AddOutcome::OverQuota;
        }
        let Some(code) = self.action_code(action) else {
            return AddOutcome::TooManyActions;
        };
        // Minutes since the epoch fit an i32 until the year 6053; parsing admits 2000..2100.
        let Ok(minute) = i32::try_from(ts.div_euclid(BUCKET_MS)) else {
            return AddOutcome::Late;
        };
        let id = self.ids.intern(item);
        let offset = ts.rem_euclid(BUCKET_MS) as u64;
        let (cells, head) = locate(&mut self.ids, &mut self.minutes, id, minute, code);
        let cell = cells.cell_in_chain(head, code);
        cell.count += 1;
        cell.sum_offset += offset;
        cell.sum_offset_sq += offset * offset;
        if let (Some(set), Some(ev)) = (self.features.as_deref_mut(), ev) {
            let mask = set.mask(code, &self.actions);
            if mask != 0 {
                cells.features.get_or_insert_default().add(head, mask, set, ev);
            }
        }
        self.max_ts = Some(self.max_ts.map_or(ts, |m| m.max(ts)));
        AddOutcome::Accepted
    }

    /// The cell of (item `id`, `minute`, `action`), created empty if missing.
    pub(super) fn cell(&mut self, id: u32, minute: i32, action: u16) -> &mut CellRow {
        let (cells, head) = locate(&mut self.ids, &mut self.minutes, id, minute, action);
        cells.cell_in_chain(head, action)
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
    /// `end`: items in order of first appearance, each item's rows by minute then by action in
    /// arrival order. [`Self::batch_ids`] then names the batch's items.
    pub fn build_batch(&mut self, end: i64, g: WindowGeometry, batch: &mut WindowBatch) {
        let (lo, hi) = ((end - g.size_ms).div_euclid(BUCKET_MS), end.div_euclid(BUCKET_MS));
        let s = &mut self.scratch;
        s.order.clear();
        s.rows.clear();
        s.mark.resize(self.ids.id_bound(), 0);
        let ahead = prefetch_distance(s.mark.len());
        // Pass 1: number the window's items and count their rows.
        for (_, m) in self.minutes.range(lo..hi) {
            for (i, c) in m.cells.iter().enumerate() {
                // A window over more items than the caches hold misses on `mark` per cell:
                // start the loads a few cells ahead.
                if let Some(item) = item_ahead(&m.cells, i, ahead) {
                    prefetch_at(&s.mark, item as usize);
                }
                let k = &mut s.mark[c.item as usize];
                if *k == 0 {
                    s.order.push(c.item);
                    s.rows.push(0);
                    *k = s.order.len() as u32;
                }
                s.rows[*k as usize - 1] += 1;
            }
        }
        // Row ranges (CSR offsets); `rows` becomes each item's next free row.
        batch.item_offsets.clear();
        batch.item_offsets.push(0);
        let mut total = 0u32;
        for r in &mut s.rows {
            let first = total;
            total += *r;
            batch.item_offsets.push(total);
            *r = first;
        }
        let total = total as usize;
        batch.row_action.resize(total, 0);
        batch.row_count.resize(total, 0);
        batch.row_age_mean_ms.resize(total, 0.0);
        batch.row_age_var_ms2.resize(total, 0.0);
        // Pass 2: each cell to its item's next row, and with declared features, each minute's
        // items merged into the columns (the pairs gathered in the same sweep over the cells).
        let set = self.features.as_deref();
        if set.is_some() {
            self.minutes.range_mut(lo..hi).filter_map(|(_, m)| m.features.as_deref_mut()).for_each(FeatureMinute::fold);
        }
        let n_features = set.map_or(0, |f| f.defs.len());
        let feature_minutes: Vec<&FeatureMinute> =
            if set.is_some() { self.minutes.range(lo..hi).filter_map(|(_, m)| m.features.as_deref()).collect() } else { Vec::new() };
        if let Some(set) = set {
            s.features.reset(set, s.order.len());
        }
        let mut feature_minute = 0u32;
        for (&minute, m) in self.minutes.range(lo..hi) {
            let bucket_start = minute * BUCKET_MS;
            let fm = m.features.as_deref().filter(|_| set.is_some());
            s.heads.clear();
            for (i, c) in m.cells.iter().enumerate() {
                if let Some(item) = item_ahead(&m.cells, i, ahead) {
                    prefetch_at(&s.mark, item as usize);
                }
                // `rows` by batch item: the `mark` entry prefetched half the distance back names it.
                if let Some(item) = item_ahead(&m.cells, i, ahead / 2) {
                    let k = s.mark[item as usize] as usize;
                    prefetch_at(&s.rows, k.wrapping_sub(1));
                }
                let k = s.mark[c.item as usize] as usize - 1;
                if let (Some(fm), true) = (fm, c.head)
                    && fm.has_row(i, n_features)
                {
                    s.heads.push((k as u32, i as u32));
                }
                let row = s.rows[k] as usize;
                s.rows[k] += 1;
                let (mean, var) = age_moments(c.count, c.sum_offset, c.sum_offset_sq, bucket_start, end);
                batch.row_action[row] = c.action;
                batch.row_count[row] = c.count;
                batch.row_age_mean_ms[row] = mean;
                batch.row_age_var_ms2[row] = var;
            }
            if fm.is_some() {
                s.features.merge_minute(&feature_minutes, feature_minute, &s.heads);
                feature_minute += 1;
            }
        }
        if let Some(set) = set {
            batch.features = s.features.columns(set, &feature_minutes);
        }
        for &id in &s.order {
            s.mark[id as usize] = 0;
        }
    }

    /// Takes back the feature columns of a batch this built, once scored, for the next
    /// window to refill (see [`BatchFeatures::recycle`]).
    pub fn recycle_features(&mut self, batch: &mut WindowBatch) {
        self.scratch.features.recycle(std::mem::take(&mut batch.features));
    }

    /// The id of item `k` of the last built batch.
    pub fn batch_item(&self, k: usize) -> &str {
        self.ids.name(self.scratch.order[k])
    }

    /// Item ids of the last built batch, in batch order.
    pub fn batch_ids(&self) -> impl ExactSizeIterator<Item = &str> {
        self.scratch.order.iter().map(|&id| self.ids.name(id))
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
        let kept = self.minutes.split_off(&first_kept_minute);
        let gone = std::mem::replace(&mut self.minutes, kept);
        // As in `build_batch`: with millions of live items each entry is a miss.
        let ahead = prefetch_distance(self.ids.id_bound());
        for m in gone.values() {
            for (i, c) in m.cells.iter().enumerate() {
                if let Some(item) = item_ahead(&m.cells, i, ahead) {
                    self.ids.prefetch(item);
                }
                if !c.head {
                    continue;
                }
                let slot = self.ids.get_mut(c.item);
                slot.held -= 1;
                if slot.held == 0 {
                    self.ids.release(c.item);
                }
            }
        }
    }

    /// Like [`Self::close_through`] for a watermark: closes the last window end `<= watermark`.
    pub fn close_to_watermark(&mut self, watermark: i64, g: WindowGeometry) {
        let last_end = watermark.div_euclid(g.slide_ms) * g.slide_ms;
        self.close_through(last_end, g);
        // Minutes the watermark has passed rarely grow again: give back their spare capacity
        // (a vector that doubled holds up to twice its cells).
        let passed = watermark.div_euclid(BUCKET_MS);
        let from = self.sealed_before.max(self.minutes.first_key_value().map_or(passed, |(&m, _)| m));
        if from < passed {
            for (_, m) in self.minutes.range_mut(from..passed) {
                m.cells.shrink_to_fit();
                if let Some(f) = &mut m.features {
                    f.shrink_to_fit();
                }
            }
        }
        self.sealed_before = self.sealed_before.max(passed);
    }

    pub fn item_count(&self) -> usize {
        self.ids.len()
    }

    /// (item, bucket) pairs held.
    pub fn bucket_count(&self) -> usize {
        self.minutes.values().map(|m| m.pairs as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Bytes of state: item names, per-item slots and their table, every minute's cells and
    /// the batch scratch arrays. O(minutes), so it can be sampled often.
    pub fn state_bytes(&self) -> usize {
        let s = &self.scratch;
        self.ids.heap_bytes()
            + self.minutes.values().map(MinuteCells::heap_bytes).sum::<usize>()
            + self.minutes.len() * (std::mem::size_of::<(i64, MinuteCells)>() + 16)
            + (s.mark.capacity() + s.order.capacity() + s.rows.capacity()) * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::buckets::age_moments;

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
    fn out_of_order_events_land_in_their_bucket() {
        let g = geom(2, 1);
        let mut w = HotWindows::default();
        w.add("x", "view", 120_500, g);
        w.add("x", "click", 60_100, g);
        w.add("x", "view", 120_900, g);
        // Two held minutes newer than this one: found through the minute's index.
        w.add("x", "view", 180_000, g);
        w.add("x", "click", 60_200, g);
        w.add("x", "view", 0, g);
        assert_eq!(w.bucket_count(), 4);
        let mut batch = WindowBatch::new(60_000, 180_000, vec![], vec![], 0.0);
        w.build_batch(180_000, g, &mut batch);
        assert_eq!(batch.row_count, vec![2, 2]);
        // Second row: events at 120 500 and 120 900, ages 59 500 and 59 100 from 180 000.
        assert_eq!(batch.row_age_mean_ms[1], 59_300.0);
        assert_eq!(batch.row_age_var_ms2[1], 40_000.0);
        w.close_through(180_000, g);
        assert_eq!(w.bucket_count(), 2);
        assert_eq!(w.item_count(), 1);
    }

    #[test]
    fn rows_keep_minute_then_arrival_order_and_evicted_ids_are_reused() {
        let g = geom(2, 1);
        let mut w = HotWindows::default();
        w.add("a", "click", MIN + 1, g);
        w.add("b", "view", 1, g);
        w.add("a", "view", MIN + 2, g);
        w.add("a", "view", 3, g);
        let mut batch = WindowBatch::new(0, 2 * MIN, vec![], vec![], 0.0);
        w.build_batch(2 * MIN, g, &mut batch);
        assert_eq!(w.batch_ids().collect::<Vec<_>>(), vec!["b", "a"]);
        // "a": minute 0 view, then minute 1 click and view in arrival order.
        assert_eq!(batch.item_offsets, vec![0, 1, 4]);
        assert_eq!(batch.row_action[1..], [1, 0, 1]);
        w.close_through(2 * MIN, g);
        // Minute 0 went: "b" with it; "a" keeps minute 1.
        assert_eq!(w.item_count(), 1);
        w.add("c", "view", 2 * MIN, g);
        assert_eq!(w.item_count(), 2);
        assert_eq!(w.ids.id_bound(), 2, "the id of b is reused");
        w.build_batch(3 * MIN, g, &mut batch);
        assert_eq!(w.batch_ids().collect::<Vec<_>>(), vec!["a", "c"]);
        assert_eq!(batch.item_offsets, vec![0, 2, 3]);
    }

    #[test]
    fn batch_holds_only_the_window() {
        let g = geom(2, 1);
        let mut w = HotWindows::default();
        w.add("a", "view", 0, g);
        w.add("b", "view", 2 * MIN + 5, g);
        let mut batch = WindowBatch::new(0, 2 * MIN, vec![], vec![], 0.0);
        w.build_batch(2 * MIN, g, &mut batch);
        assert_eq!(w.batch_ids().collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(batch.row_age_mean_ms, vec![(2 * MIN) as f64]);
    }

    /// An accepted event of the reference model: (item, action, ts).
    type Accepted = (u32, u16, i64);

    /// Each window's rows from the accepted events alone: per item, its (action, count, age
    /// mean, age variance) rows, sorted (the layout's row order is checked elsewhere).
    fn reference_rows(accepted: &[Accepted], end: i64, g: WindowGeometry) -> BTreeMap<String, Vec<(u16, u32, u64, u64)>> {
        let mut cells: BTreeMap<(u32, i64, u16), (u32, u64, u64)> = BTreeMap::new();
        for &(item, action, ts) in accepted.iter().filter(|e| e.2 >= end - g.size_ms && e.2 < end) {
            let off = ts.rem_euclid(BUCKET_MS) as u64;
            let c = cells.entry((item, ts.div_euclid(BUCKET_MS), action)).or_default();
            *c = (c.0 + 1, c.1 + off, c.2 + off * off);
        }
        let mut rows: BTreeMap<String, Vec<(u16, u32, u64, u64)>> = BTreeMap::new();
        for ((item, minute, action), (n, s, sq)) in cells {
            let (mean, var) = age_moments(n, s, sq, minute * BUCKET_MS, end);
            rows.entry(format!("i{item}")).or_default().push((action, n, mean.to_bits(), var.to_bits()));
        }
        rows.values_mut().for_each(|r| r.sort());
        rows
    }

    fn batch_rows(w: &HotWindows, b: &WindowBatch) -> BTreeMap<String, Vec<(u16, u32, u64, u64)>> {
        let mut rows = BTreeMap::new();
        for (k, id) in w.batch_ids().enumerate() {
            let mut r: Vec<_> = b
                .item_rows(k)
                .map(|r| (b.row_action[r], b.row_count[r], b.row_age_mean_ms[r].to_bits(), b.row_age_var_ms2[r].to_bits()))
                .collect();
            r.sort();
            assert!(rows.insert(id.to_string(), r).is_none(), "item {id} twice in one batch");
        }
        rows
    }

    /// Past [`PREFETCH_FROM_IDS`] the sweeps prefetch: the same rows, and closing still
    /// releases every id.
    #[test]
    fn a_window_over_more_ids_than_the_prefetch_bound_holds_the_same_rows() {
        let g = geom(2, 1);
        let mut w = HotWindows::default();
        let mut accepted: Vec<Accepted> = Vec::new();
        let (n, names) = (PREFETCH_FROM_IDS as u32 + 1_000, ["click", "view"]);
        for item in 0..n {
            // Every third item in both minutes and with a second action.
            let (action, ts) = ((item % 2) as u16, i64::from(item % 60_000));
            w.add(&format!("i{item}"), names[action as usize], ts, g);
            accepted.push((item, action, ts));
            if item % 3 == 0 {
                w.add(&format!("i{item}"), names[1 - action as usize], MIN + ts, g);
                accepted.push((item, 1 - action, MIN + ts));
            }
        }
        let mut batch = WindowBatch::default();
        w.build_batch(2 * MIN, g, &mut batch);
        assert_eq!(batch.item_count(), n as usize);
        assert_eq!(batch_rows(&w, &batch), reference_rows(&accepted, 2 * MIN, g));
        w.close_through(3 * MIN, g);
        assert!(w.is_empty());
        assert_eq!(w.item_count(), 0);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        /// Events up to 10 minutes out of order (the per-minute index path), a small catalogue
        /// (ids released and reused as minutes close), watermarks at random points: every
        /// emitted window holds exactly the accepted events' cells, and state drains at the end.
        #[test]
        fn windows_hold_exactly_the_accepted_events(
            (ratio, slide) in (1i64..6, 1i64..4),
            ops in proptest::collection::vec((0u32..12, 0u16..3, 0i64..600_000, proptest::bool::weighted(0.1)), 1..300),
        ) {
            let g = geom(ratio * slide, slide);
            let mut w = HotWindows::default();
            let mut accepted: Vec<Accepted> = Vec::new();
            let mut batch = WindowBatch::default();
            let mut max_ts = 0i64;
            let mut emit = |w: &mut HotWindows, accepted: &[Accepted], wm: i64| -> Result<(), proptest::test_runner::TestCaseError> {
                while let Some(end) = w.next_due(g, wm) {
                    w.build_batch(end, g, &mut batch);
                    proptest::prop_assert_eq!(batch_rows(w, &batch), reference_rows(accepted, end, g), "window ending {}", end);
                    w.close_through(end, g);
                }
                if wm < i64::MAX {
                    w.close_to_watermark(wm, g);
                }
                Ok(())
            };
            for (i, &(item, action, back, watermark)) in ops.iter().enumerate() {
                // Time moves forward 20 s an event; each event lands up to 10 minutes back.
                let ts = i as i64 * 20_000 + 3_600_000 - back;
                max_ts = max_ts.max(ts);
                if w.add(&format!("i{item}"), ["view", "click", "buy"][action as usize], ts, g) == AddOutcome::Accepted {
                    accepted.push((item, w.action_code(["view", "click", "buy"][action as usize]).unwrap_or(0), ts));
                }
                if watermark {
                    emit(&mut w, &accepted, max_ts - 120_000)?;
                }
            }
            emit(&mut w, &accepted, i64::MAX)?;
            w.close_through(i64::MAX - g.slide_ms, g);
            proptest::prop_assert!(w.is_empty() && w.bucket_count() == 0);
        }
    }
}
