//! Per-item one-minute buckets.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::scoring::WindowBatch;

/// Bucket width. Window geometry is in whole minutes, so buckets never straddle a window edge.
pub const BUCKET_MS: i64 = 60_000;

/// Events of one action in one bucket. Offsets are ms from the bucket start (< 60 000), so the
/// sums are exact integers: results do not depend on the order events arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Cell {
    pub action: u16,
    pub count: u32,
    pub sum_offset: u64,
    pub sum_offset_sq: u64,
}

impl Cell {
    /// Mean and variance of the ages (`window_end - ts`) of this cell's events.
    pub fn age_moments(&self, bucket_start: i64, window_end: i64) -> (f64, f64) {
        let n = f64::from(self.count);
        let mean_off = self.sum_offset as f64 / n;
        let var = (self.sum_offset_sq as f64 / n - mean_off * mean_off).max(0.0);
        ((window_end - bucket_start) as f64 - mean_off, var)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Bucket {
    /// Minutes since the Unix epoch.
    minute: i64,
    #[serde(with = "cells_as_seq")]
    cells: SmallVec<[Cell; 1]>,
}

/// Cells as a plain sequence, so snapshots need no serde feature of `smallvec` (turning one on
/// would rebuild every crate that shares it, wasmtime included).
mod cells_as_seq {
    use serde::{Deserialize, Deserializer, Serializer};
    use smallvec::SmallVec;

    use super::Cell;

    pub fn serialize<S: Serializer>(cells: &SmallVec<[Cell; 1]>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(cells.iter())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SmallVec<[Cell; 1]>, D::Error> {
        Vec::<Cell>::deserialize(d).map(SmallVec::from_vec)
    }
}

/// One item's buckets, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemBuckets {
    buckets: VecDeque<Bucket>,
}

impl ItemBuckets {
    /// Adds one event. Returns true when it opened a new bucket.
    pub fn add(&mut self, ts: i64, action: u16) -> bool {
        let minute = ts.div_euclid(BUCKET_MS);
        let offset = ts.rem_euclid(BUCKET_MS) as u64;
        // Events arrive nearly in order: search from the newest bucket.
        let pos = self.buckets.iter().rposition(|b| b.minute <= minute);
        let opens = !matches!(pos, Some(i) if self.buckets[i].minute == minute);
        if opens && self.buckets.len() == self.buckets.capacity() {
            // Grow 1, 2, 4, ... instead of the default first allocation of 4 buckets: most
            // items of a long-tail catalogue hold a single bucket, and three empty slots per
            // item tripled the state (docs/benchmarks.md, state per (item, bucket)).
            self.buckets.reserve_exact(self.buckets.len().max(1));
        }
        let (idx, opened) = match pos {
            Some(i) if self.buckets[i].minute == minute => (i, false),
            Some(i) => {
                self.buckets.insert(i + 1, Bucket { minute, cells: SmallVec::new() });
                (i + 1, true)
            }
            None => {
                self.buckets.push_front(Bucket { minute, cells: SmallVec::new() });
                (0, true)
            }
        };
        let cells = &mut self.buckets[idx].cells;
        let cell = match cells.iter_mut().position(|c| c.action == action) {
            Some(c) => &mut cells[c],
            None => {
                cells.push(Cell { action, ..Cell::default() });
                cells.last_mut().expect("just pushed")
            }
        };
        cell.count += 1;
        cell.sum_offset += offset;
        cell.sum_offset_sq += offset * offset;
        opened
    }

    /// Drops buckets that start before `t` (ms); returns how many were dropped.
    pub fn evict_before(&mut self, t: i64) -> usize {
        let min_minute = t.div_euclid(BUCKET_MS);
        let keep_from = self.buckets.iter().position(|b| b.minute >= min_minute).unwrap_or(self.buckets.len());
        self.buckets.drain(..keep_from);
        keep_from
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// Appends this item's cells within `[start, end)` to `batch` as rows; true if any.
    pub fn push_rows(&self, start: i64, end: i64, batch: &mut WindowBatch) -> bool {
        let (lo, hi) = (start.div_euclid(BUCKET_MS), end.div_euclid(BUCKET_MS));
        let mut any = false;
        for b in self.buckets.iter().filter(|b| b.minute >= lo && b.minute < hi) {
            let bucket_start = b.minute * BUCKET_MS;
            for c in &b.cells {
                let (mean, var) = c.age_moments(bucket_start, end);
                batch.push_row(c.action, c.count, mean, var);
                any = true;
            }
        }
        any
    }

    /// Approximate heap bytes held, for the state-size gauge and benchmarks.
    pub fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<Bucket>()
            + self.buckets.iter().filter(|b| b.cells.spilled()).map(|b| b.cells.capacity() * std::mem::size_of::<Cell>()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_events_land_in_their_bucket() {
        let mut ib = ItemBuckets::default();
        assert!(ib.add(120_500, 0));
        assert!(ib.add(60_100, 1));
        assert!(!ib.add(120_900, 0));
        assert!(ib.add(0, 0));
        assert_eq!(ib.bucket_count(), 3);
        let mut batch = WindowBatch::new(60_000, 180_000, vec![], vec![], 0.0);
        assert!(ib.push_rows(60_000, 180_000, &mut batch));
        batch.finish_item();
        assert_eq!(batch.row_count, vec![1, 2]);
        // Second row: events at 120 500 and 120 900, ages 59 500 and 59 100 from 180 000.
        assert_eq!(batch.row_age_mean_ms[1], 59_300.0);
        assert_eq!(batch.row_age_var_ms2[1], 40_000.0);
        assert_eq!(ib.evict_before(120_000), 2);
        assert_eq!(ib.bucket_count(), 1);
    }
}
