//! One-minute buckets: the unit every window is a union of.

use serde::{Deserialize, Serialize};

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
        age_moments(self.count, self.sum_offset, self.sum_offset_sq, bucket_start, window_end)
    }
}

/// Mean and variance of the ages (`window_end - ts`) of `count` events of one bucket whose
/// offsets from `bucket_start` sum to `sum_offset` (squares: `sum_offset_sq`).
#[inline]
pub fn age_moments(count: u32, sum_offset: u64, sum_offset_sq: u64, bucket_start: i64, window_end: i64) -> (f64, f64) {
    let n = f64::from(count);
    let mean_off = sum_offset as f64 / n;
    let var = (sum_offset_sq as f64 / n - mean_off * mean_off).max(0.0);
    ((window_end - bucket_start) as f64 - mean_off, var)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_of_two_events() {
        // Events at 120 500 and 120 900 in the bucket starting at 120 000: ages 59 500 and
        // 59 100 from 180 000.
        let c = Cell { action: 0, count: 2, sum_offset: 500 + 900, sum_offset_sq: 500 * 500 + 900 * 900 };
        assert_eq!(c.age_moments(120_000, 180_000), (59_300.0, 40_000.0));
    }
}
