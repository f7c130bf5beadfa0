//! Event-time progress of the input. With several partitions (Kafka), one partition can run
//! ahead of the others, above all while catching up on a backlog; the watermark is therefore
//! the *minimum* over the partitions of each one's maximum event time, so no partition's events
//! are declared late because another raced ahead. A partition that delivers nothing for
//! `idle_ms` of wall time stops holding the watermark back until it delivers again.
//!
//! Each tenant has an event time of its own ([`EventTime`]): the same rule over that tenant's
//! events only, held back by the host's clock (so a partition that has not delivered yet, or is
//! catching up, still holds everyone), but never moved by another tenant's events. A tenant
//! sending events dated ahead can close only its own windows early.

use std::collections::BTreeMap;
use std::sync::Arc;

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

    /// The furthest any partition got.
    fn furthest(&self) -> Option<i64> {
        self.partitions.values().filter_map(|p| p.max_ts).max()
    }

    /// How long (wall time) every partition has been idle, counted from when the last one went
    /// idle (`idle_ms` after its last event); `None` while one is active.
    fn idle_for(&self, wall_ms: i64) -> Option<i64> {
        let last = self.partitions.values().map(|p| p.last_wall_ms).max()?;
        let idle = wall_ms - last - self.idle_ms;
        (idle > 0).then_some(idle)
    }

    /// Partitions with a maximum, for a snapshot.
    fn maxima(&self) -> impl Iterator<Item = (i32, i64)> + '_ {
        self.partitions.iter().filter_map(|(&p, pr)| pr.max_ts.map(|t| (p, t)))
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
            self.furthest()
        }
    }
}

/// What an event moved (see [`EventTime::observe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    pub host: bool,
    pub own: bool,
}

/// One tenant's progress and the watermark its windows were last closed at.
#[derive(Debug, Clone)]
struct TenantTime {
    clock: InputClock,
    watermark: Option<i64>,
}

/// Event time of the host and of each tenant. The host's clock (over every admitted event)
/// keeps the partition-minimum rule: a partition assigned but silent, or behind, holds every
/// tenant. A tenant's own clock (over its own events) caps it: its windows never close past
/// what its own events have reached, whatever other tenants send. A tenant whose partitions
/// have all gone idle has its event time run on with the wall clock from the moment it went
/// idle, so a quiet tenant's last windows still close, on its own input and timing only.
#[derive(Debug, Clone)]
pub struct EventTime {
    host: InputClock,
    tenants: BTreeMap<Arc<str>, TenantTime>,
    idle_ms: i64,
    max_skew_ms: Option<i64>,
}

impl EventTime {
    pub fn new(idle_ms: i64, max_skew_ms: Option<i64>) -> Self {
        Self { host: InputClock::new(idle_ms, max_skew_ms), tenants: BTreeMap::new(), idle_ms, max_skew_ms }
    }

    /// `tenant`'s progress, created on its first event (off the per-event path: callers look
    /// the tenant up first).
    fn tenant_entry(&mut self, tenant: &str) -> &mut TenantTime {
        let (idle_ms, max_skew_ms) = (self.idle_ms, self.max_skew_ms);
        self.tenants
            .entry(Arc::from(tenant))
            .or_insert_with(|| TenantTime { clock: InputClock::new(idle_ms, max_skew_ms), watermark: None })
    }

    pub fn assign(&mut self, partitions: &[i32], wall_ms: i64) {
        self.host.assign(partitions, wall_ms);
    }

    pub fn revoke(&mut self, partitions: &[i32]) {
        self.host.revoke(partitions);
        for t in self.tenants.values_mut() {
            t.clock.revoke(partitions);
        }
    }

    /// Records an admitted event of `tenant`: whether it raised the host's maximum on its
    /// partition (which may move every tenant's time) and whether it raised the tenant's own.
    #[inline]
    pub fn observe(&mut self, tenant: &str, partition: i32, ts: i64, wall_ms: i64) -> Raised {
        let host = self.host.observe(partition, ts, wall_ms);
        let own = match self.tenants.get_mut(tenant) {
            Some(t) => t.clock.observe(partition, ts, wall_ms),
            None => self.tenant_entry(tenant).clock.observe(partition, ts, wall_ms),
        };
        Raised { host, own }
    }

    /// The host's event time: every active partition's progress over every tenant.
    pub fn host_time(&self, wall_ms: i64) -> Option<i64> {
        self.host.event_time(wall_ms)
    }

    /// The event time `tenant`'s windows may close at: its own progress, held back by the host's.
    pub fn tenant_time(&self, tenant: &str, wall_ms: i64) -> Option<i64> {
        let host = self.host.event_time(wall_ms)?;
        let t = self.tenants.get(tenant)?;
        let own = match t.clock.idle_for(wall_ms) {
            Some(idle) => t.clock.furthest()?.saturating_add(idle),
            None => t.clock.event_time(wall_ms)?,
        };
        Some(own.min(host))
    }

    /// The watermark `tenant`'s windows were last closed at.
    pub fn watermark(&self, tenant: &str) -> Option<i64> {
        self.tenants.get(tenant).and_then(|t| t.watermark)
    }

    /// Moves `tenant`'s watermark to `wm` if that enters a later minute (window ends are whole
    /// minutes, so nothing closes within one); returns whether it moved.
    pub fn advance_watermark(&mut self, tenant: &str, wm: i64) -> bool {
        let Some(t) = self.tenants.get_mut(tenant) else { return false };
        if t.watermark.is_some_and(|prev| wm.div_euclid(60_000) <= prev.div_euclid(60_000)) {
            return false;
        }
        t.watermark = Some(wm);
        true
    }

    /// Tenants with a clock, in key order (outputs are emitted in this order).
    pub fn tenants(&self) -> Vec<Arc<str>> {
        self.tenants.keys().cloned().collect()
    }

    /// The host's maximum on `partition` and each tenant's, for the partition's snapshot.
    pub fn export(&self, partition: i32) -> (Option<i64>, Vec<(String, i64)>) {
        let tenants = self
            .tenants
            .iter()
            .filter_map(|(name, t)| t.clock.maxima().find(|(p, _)| *p == partition).map(|(_, ts)| (name.to_string(), ts)))
            .collect();
        (self.host.max_ts(partition), tenants)
    }

    /// Restores a partition's progress from its snapshot: the host's and each tenant's.
    pub fn restore(&mut self, partition: i32, host: Option<i64>, tenants: &[(String, i64)], wall_ms: i64) {
        self.host.restore(partition, host, wall_ms);
        for (tenant, ts) in tenants {
            self.tenant_entry(tenant).clock.restore(partition, Some(*ts), wall_ms);
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
    fn a_tenant_ahead_moves_only_its_own_time() {
        let mut t = EventTime::new(5_000, None);
        t.assign(&[0], 0);
        t.observe("good", 0, 1_000_000, 0);
        t.observe("evil", 0, 9_000_000, 0);
        assert_eq!(t.tenant_time("good", 0), Some(1_000_000));
        assert_eq!(t.tenant_time("evil", 0), Some(9_000_000));
        assert_eq!(t.tenant_time("nobody", 0), None);
        // Idle (5 s after its last event), good's time runs on with the wall clock, whatever
        // evil's clock says; never past the host's.
        assert_eq!(t.tenant_time("good", 5_000), Some(1_000_000));
        assert_eq!(t.tenant_time("good", 65_000), Some(1_060_000));
        assert_eq!(t.tenant_time("good", 20_000_000), Some(9_000_000));
    }

    #[test]
    fn a_partition_that_has_not_delivered_holds_every_tenant() {
        let mut t = EventTime::new(5_000, None);
        t.assign(&[0, 1], 0);
        t.observe("a", 0, 1_000_000, 0);
        assert_eq!(t.tenant_time("a", 0), None, "partition 1 may hold a's older events");
        t.observe("b", 1, 500_000, 1);
        assert_eq!(t.tenant_time("a", 1), Some(500_000), "partition 1 is behind: it holds a as well");
        t.observe("b", 1, 2_000_000, 2);
        assert_eq!(t.tenant_time("a", 2), Some(1_000_000));
        let (host, tenants) = t.export(0);
        assert_eq!((host, tenants), (Some(1_000_000), vec![("a".to_string(), 1_000_000)]));
        let mut r = EventTime::new(5_000, None);
        r.restore(0, host, &t.export(0).1, 0);
        assert_eq!(r.tenant_time("a", 0), Some(1_000_000));
    }

    #[test]
    fn a_restored_clock_poisoned_by_a_future_event_heals() {
        let mut c = InputClock::new(5_000, Some(600_000));
        c.restore(0, Some(4_102_444_800_000), 1_767_225_600_000);
        assert_eq!(c.max_ts(0), Some(1_767_225_600_000 + 600_000));
    }
}
