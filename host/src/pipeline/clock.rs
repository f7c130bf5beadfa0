//! Event-time progress of the input. With several partitions (Kafka), one partition can run
//! ahead of the others, above all while catching up on a backlog; the watermark is therefore
//! the *minimum* over the partitions of each one's maximum event time, so no partition's events
//! are declared late because another raced ahead. A partition that delivers nothing for
//! `idle_ms` of wall time stops holding the watermark back until it delivers again.

use std::collections::BTreeMap;

/// Sources without partitions (file, generator) use this one.
pub const SINGLE_PARTITION: i32 = -1;

#[derive(Debug, Clone, Copy)]
struct Progress {
    /// Max event time seen, `None` before the first event.
    max_ts: Option<i64>,
    /// Wall time of the last event (or of the assignment).
    last_wall_ms: i64,
}

#[derive(Debug, Clone)]
pub struct InputClock {
    partitions: BTreeMap<i32, Progress>,
    idle_ms: i64,
    /// `--max-event-skew`: a restored maximum further ahead of the wall clock than this came
    /// from an event that would be rejected today, and is held back to it.
    max_skew_ms: Option<i64>,
}

impl InputClock {
    pub fn new(idle_ms: i64, max_skew_ms: Option<i64>) -> Self {
        Self { partitions: BTreeMap::new(), idle_ms, max_skew_ms }
    }

    /// Partitions this instance now reads: each holds the watermark back until it delivers
    /// or goes idle.
    pub fn assign(&mut self, partitions: &[i32], wall_ms: i64) {
        for &p in partitions {
            self.partitions.entry(p).or_insert(Progress { max_ts: None, last_wall_ms: wall_ms });
        }
    }

    pub fn revoke(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.partitions.remove(p);
        }
    }

    /// The max event time partition `p` has delivered, for its snapshot.
    pub fn max_ts(&self, partition: i32) -> Option<i64> {
        self.partitions.get(&partition).and_then(|p| p.max_ts)
    }

    /// Restores a partition's progress from its snapshot (never moves it backwards). A snapshot
    /// stored before the skew rule, holding a far-future maximum, heals here.
    pub fn restore(&mut self, partition: i32, max_ts: Option<i64>, wall_ms: i64) {
        let limit = self.max_skew_ms.map_or(i64::MAX, |s| wall_ms.saturating_add(s));
        let max_ts = max_ts.map(|t| t.min(limit));
        let p = self.partitions.entry(partition).or_insert(Progress { max_ts: None, last_wall_ms: wall_ms });
        p.max_ts = p.max_ts.max(max_ts);
        p.last_wall_ms = wall_ms;
    }

    /// Records an event; true when it raised its partition's maximum event time (only then, or
    /// when wall time moves, can the watermark move forward).
    #[inline]
    pub fn observe(&mut self, partition: i32, ts: i64, wall_ms: i64) -> bool {
        let p = self.partitions.entry(partition).or_insert(Progress { max_ts: None, last_wall_ms: wall_ms });
        p.last_wall_ms = wall_ms;
        if p.max_ts.is_some_and(|m| m >= ts) {
            return false;
        }
        p.max_ts = Some(ts);
        true
    }

    /// The event time every active partition has reached, if any.
    pub fn event_time(&self, wall_ms: i64) -> Option<i64> {
        let active = |p: &&Progress| wall_ms - p.last_wall_ms <= self.idle_ms;
        let mut min: Option<i64> = None;
        let mut any_active = false;
        for p in self.partitions.values().filter(active) {
            any_active = true;
            // An active partition that has delivered nothing yet blocks progress.
            let ts = p.max_ts?;
            min = Some(min.map_or(ts, |m| m.min(ts)));
        }
        if any_active {
            min
        } else {
            // Everything is idle: the furthest any partition got.
            self.partitions.values().filter_map(|p| p.max_ts).max()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slowest_partition_holds_the_clock_until_idle() {
        let mut c = InputClock::new(5_000, None);
        c.assign(&[0, 1], 0);
        c.observe(0, 1_000_000, 0);
        assert_eq!(c.event_time(0), None, "partition 1 has not delivered yet");
        c.observe(1, 10, 1);
        assert_eq!(c.event_time(1), Some(10));
        c.observe(0, 2_000_000, 7_000);
        assert_eq!(c.event_time(7_000), Some(2_000_000), "partition 1 idle for 7 s no longer holds the clock");
        c.observe(1, 20, 7_001);
        assert_eq!(c.event_time(7_001), Some(20));
        c.revoke(&[1]);
        assert_eq!(c.event_time(7_002), Some(2_000_000));
    }

    #[test]
    fn a_restored_partition_holds_the_clock_at_its_snapshot_and_never_moves_back() {
        let mut c = InputClock::new(5_000, None);
        c.observe(0, 5_000_000, 0);
        c.restore(1, Some(3_000_000), 0);
        assert_eq!(c.max_ts(1), Some(3_000_000));
        assert_eq!(c.event_time(0), Some(3_000_000), "the moved partition is where its snapshot left it");
        c.restore(0, Some(1_000), 0);
        assert_eq!(c.max_ts(0), Some(5_000_000), "an older snapshot does not move a partition back");
    }

    #[test]
    fn a_restored_clock_poisoned_by_a_future_event_heals() {
        let mut c = InputClock::new(5_000, Some(600_000));
        c.restore(0, Some(4_102_444_800_000), 1_767_225_600_000);
        assert_eq!(c.max_ts(0), Some(1_767_225_600_000 + 600_000));
    }
}
