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
//!
//! With `--repartition` an input partition mixes the events of every *source* partition, so
//! progress is kept per [`Lane`]: (input partition, source partition). Events carry their
//! source; the shuffle's progress markers move a lane without an event. A window then closes
//! only when every source partition, as seen on every input partition, has passed it. Without
//! repartitioning every lane is `(partition, NO_SOURCE)` and the rule is the one above.

use std::collections::BTreeMap;
use std::sync::Arc;

/// Sources without partitions (file, generator) use this one.
pub const SINGLE_PARTITION: i32 = -1;

/// The source of a lane read without repartitioning.
pub const NO_SOURCE: i32 = -1;

/// A stream whose event time is tracked: an input partition, or (repartitioning) the events of
/// one source partition on one input partition, which arrive in source order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lane {
    pub partition: i32,
    pub source: i32,
}

impl Lane {
    /// The lane of an input partition read without repartitioning.
    pub const fn of(partition: i32) -> Lane {
        Lane { partition, source: NO_SOURCE }
    }

    fn all_of(partition: i32) -> std::ops::RangeInclusive<Lane> {
        Lane { partition, source: i32::MIN }..=Lane { partition, source: i32::MAX }
    }
}

#[derive(Debug, Clone, Copy)]
struct Progress {
    /// Max event time seen, `None` before the first event.
    max_ts: Option<i64>,
    /// Wall time of the last event (or of the assignment).
    last_wall_ms: i64,
    /// Events forwarded per the last progress marker: a marker counts as activity (for the
    /// idle rule) only when this moved, as a partition is active only while it delivers.
    marked: u64,
}

impl Progress {
    fn new(wall_ms: i64) -> Self {
        Progress { max_ts: None, last_wall_ms: wall_ms, marked: 0 }
    }
}

#[derive(Debug, Clone)]
pub struct InputClock {
    partitions: BTreeMap<Lane, Progress>,
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
    /// or goes idle. A partition with lanes already (restored by source) keeps them.
    pub fn assign(&mut self, partitions: &[i32], wall_ms: i64) {
        for &p in partitions {
            if self.partitions.range(Lane::all_of(p)).next().is_none() {
                self.partitions.insert(Lane::of(p), Progress::new(wall_ms));
            }
        }
    }

    pub fn revoke(&mut self, partitions: &[i32]) {
        for &p in partitions {
            let lanes: Vec<Lane> = self.partitions.range(Lane::all_of(p)).map(|(l, _)| *l).collect();
            for l in lanes {
                self.partitions.remove(&l);
            }
        }
    }

    /// Repartitioning: `partition` carries the events of `sources` source partitions. Each
    /// gets a lane that holds the watermark until it delivers (as an assigned partition
    /// does); the partition's own lane, which nothing delivers to, goes.
    pub fn expect_sources(&mut self, partition: i32, sources: i32, wall_ms: i64) {
        self.partitions.remove(&Lane::of(partition));
        for source in 0..sources {
            self.partitions.entry(Lane { partition, source }).or_insert(Progress::new(wall_ms));
        }
    }

    /// The max event time lane `lane` has delivered, for its snapshot.
    pub fn max_ts(&self, lane: Lane) -> Option<i64> {
        self.partitions.get(&lane).and_then(|p| p.max_ts)
    }

    /// Restores a lane's progress from its snapshot (never moves it backwards). A snapshot
    /// stored before the skew rule, holding a far-future maximum, heals here.
    pub fn restore(&mut self, lane: Lane, max_ts: Option<i64>, wall_ms: i64) {
        let limit = self.max_skew_ms.map_or(i64::MAX, |s| wall_ms.saturating_add(s));
        let max_ts = max_ts.map(|t| t.min(limit));
        let p = self.partitions.entry(lane).or_insert(Progress::new(wall_ms));
        p.max_ts = p.max_ts.max(max_ts);
        p.last_wall_ms = wall_ms;
    }

    /// Records an event; true when it raised its lane's maximum event time (only then, or
    /// when wall time moves, can the watermark move forward).
    #[inline]
    pub fn observe(&mut self, lane: Lane, ts: i64, wall_ms: i64) -> bool {
        let p = self.partitions.entry(lane).or_insert(Progress::new(wall_ms));
        p.last_wall_ms = wall_ms;
        if p.max_ts.is_some_and(|m| m >= ts) {
            return false;
        }
        p.max_ts = Some(ts);
        true
    }

    /// A progress marker: every event up to `max_ts` of the lane's source was forwarded before
    /// it, `events` in all. Moves the maximum like an event would; counts as activity only if
    /// events were forwarded since the last marker. True when it raised the maximum.
    pub fn mark(&mut self, lane: Lane, max_ts: Option<i64>, events: u64, wall_ms: i64) -> bool {
        let p = self.partitions.entry(lane).or_insert(Progress::new(wall_ms));
        if events != p.marked {
            p.marked = events;
            p.last_wall_ms = wall_ms;
        }
        let raised = max_ts.is_some_and(|t| p.max_ts.is_none_or(|m| t > m));
        p.max_ts = p.max_ts.max(max_ts);
        raised
    }

    /// Lanes of `partition` by source (repartitioning), with their maxima.
    fn sources_of(&self, partition: i32) -> impl Iterator<Item = (i32, Option<i64>)> + '_ {
        self.partitions.range(Lane::all_of(partition)).filter(|(l, _)| l.source != NO_SOURCE).map(|(l, p)| (l.source, p.max_ts))
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

    /// Lanes with a maximum, for a snapshot.
    fn maxima(&self) -> impl Iterator<Item = (Lane, i64)> + '_ {
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
    /// Repartitioning: the source partition count each input partition's lanes were made for.
    sources: BTreeMap<i32, i32>,
}

/// One lane of a partition's snapshot, repartitioning: a source partition, the host's maximum
/// on it and each tenant's.
pub type SourceLaneTimes = (i32, Option<i64>, Vec<(String, i64)>);

impl EventTime {
    pub fn new(idle_ms: i64, max_skew_ms: Option<i64>) -> Self {
        Self { host: InputClock::new(idle_ms, max_skew_ms), tenants: BTreeMap::new(), idle_ms, max_skew_ms, sources: BTreeMap::new() }
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
        for p in partitions {
            self.sources.remove(p);
        }
    }

    /// Repartitioning: a record of `partition` says its source topic has `sources` partitions.
    /// From the first one on, the host waits for every source partition on it. Cheap when
    /// nothing changed (once per record).
    #[inline]
    pub fn expect_sources(&mut self, partition: i32, sources: i32, wall_ms: i64) {
        if self.sources.get(&partition).is_none_or(|&n| n < sources) {
            self.sources.insert(partition, sources);
            self.host.expect_sources(partition, sources, wall_ms);
        }
    }

    /// Records an admitted event of `tenant`: whether it raised the host's maximum on its
    /// lane (which may move every tenant's time) and whether it raised the tenant's own.
    #[inline]
    pub fn observe(&mut self, tenant: &str, lane: Lane, ts: i64, wall_ms: i64) -> Raised {
        let host = self.host.observe(lane, ts, wall_ms);
        let own = match self.tenants.get_mut(tenant) {
            Some(t) => t.clock.observe(lane, ts, wall_ms),
            None => self.tenant_entry(tenant).clock.observe(lane, ts, wall_ms),
        };
        Raised { host, own }
    }

    /// A progress marker on `lane`: the host's part (over the tenants this host runs) and each
    /// such tenant's `(tenant, max event time, events forwarded)`. Returns whether anything rose.
    pub fn mark(&mut self, lane: Lane, host: (Option<i64>, u64), tenants: &[(&str, i64, u64)], wall_ms: i64) -> bool {
        let mut raised = self.host.mark(lane, host.0, host.1, wall_ms);
        for &(tenant, ts, events) in tenants {
            raised |= self.tenant_entry(tenant).clock.mark(lane, Some(ts), events, wall_ms);
        }
        raised
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

    /// The host's maximum on `partition` and each tenant's, for the partition's snapshot;
    /// repartitioning, the same per source partition (the partition's own lane is then gone).
    pub fn export(&self, partition: i32) -> (Option<i64>, Vec<(String, i64)>, Vec<SourceLaneTimes>) {
        let tenants_on = |lane: Lane| -> Vec<(String, i64)> {
            self.tenants
                .iter()
                .filter_map(|(name, t)| t.clock.maxima().find(|(l, _)| *l == lane).map(|(_, ts)| (name.to_string(), ts)))
                .collect()
        };
        let lane = Lane::of(partition);
        let sources = self.host.sources_of(partition).map(|(source, max)| (source, max, tenants_on(Lane { partition, source }))).collect();
        (self.host.max_ts(lane), tenants_on(lane), sources)
    }

    /// Restores a partition's progress from its snapshot: the host's and each tenant's, per
    /// source partition when it was repartitioned.
    pub fn restore(&mut self, partition: i32, host: Option<i64>, tenants: &[(String, i64)], sources: &[SourceLaneTimes], wall_ms: i64) {
        if sources.is_empty() {
            self.host.restore(Lane::of(partition), host, wall_ms);
            for (tenant, ts) in tenants {
                self.tenant_entry(tenant).clock.restore(Lane::of(partition), Some(*ts), wall_ms);
            }
            return;
        }
        let count = sources.iter().map(|(s, _, _)| s + 1).max().unwrap_or(0);
        self.expect_sources(partition, count, wall_ms);
        for (source, max, tenants) in sources {
            let lane = Lane { partition, source: *source };
            self.host.restore(lane, *max, wall_ms);
            for (tenant, ts) in tenants {
                self.tenant_entry(tenant).clock.restore(lane, Some(*ts), wall_ms);
            }
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
        c.observe(Lane::of(0), 1_000_000, 0);
        assert_eq!(c.event_time(0), None, "partition 1 has not delivered yet");
        c.observe(Lane::of(1), 10, 1);
        assert_eq!(c.event_time(1), Some(10));
        c.observe(Lane::of(0), 2_000_000, 7_000);
        assert_eq!(c.event_time(7_000), Some(2_000_000), "partition 1 idle for 7 s no longer holds the clock");
        c.observe(Lane::of(1), 20, 7_001);
        assert_eq!(c.event_time(7_001), Some(20));
        c.revoke(&[1]);
        assert_eq!(c.event_time(7_002), Some(2_000_000));
    }

    #[test]
    fn a_restored_partition_holds_the_clock_at_its_snapshot_and_never_moves_back() {
        let mut c = InputClock::new(5_000, None);
        c.observe(Lane::of(0), 5_000_000, 0);
        c.restore(Lane::of(1), Some(3_000_000), 0);
        assert_eq!(c.max_ts(Lane::of(1)), Some(3_000_000));
        assert_eq!(c.event_time(0), Some(3_000_000), "the moved partition is where its snapshot left it");
        c.restore(Lane::of(0), Some(1_000), 0);
        assert_eq!(c.max_ts(Lane::of(0)), Some(5_000_000), "an older snapshot does not move a partition back");
    }

    #[test]
    fn a_tenant_ahead_moves_only_its_own_time() {
        let mut t = EventTime::new(5_000, None);
        t.assign(&[0], 0);
        t.observe("good", Lane::of(0), 1_000_000, 0);
        t.observe("evil", Lane::of(0), 9_000_000, 0);
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
        t.observe("a", Lane::of(0), 1_000_000, 0);
        assert_eq!(t.tenant_time("a", 0), None, "partition 1 may hold a's older events");
        t.observe("b", Lane::of(1), 500_000, 1);
        assert_eq!(t.tenant_time("a", 1), Some(500_000), "partition 1 is behind: it holds a as well");
        t.observe("b", Lane::of(1), 2_000_000, 2);
        assert_eq!(t.tenant_time("a", 2), Some(1_000_000));
        let (host, tenants, sources) = t.export(0);
        assert_eq!((host, tenants, sources), (Some(1_000_000), vec![("a".to_string(), 1_000_000)], vec![]));
        let mut r = EventTime::new(5_000, None);
        r.restore(0, host, &t.export(0).1, &[], 0);
        assert_eq!(r.tenant_time("a", 0), Some(1_000_000));
    }

    #[test]
    fn a_restored_clock_poisoned_by_a_future_event_heals() {
        let mut c = InputClock::new(5_000, Some(600_000));
        c.restore(Lane::of(0), Some(4_102_444_800_000), 1_767_225_600_000);
        assert_eq!(c.max_ts(Lane::of(0)), Some(1_767_225_600_000 + 600_000));
    }

    /// Repartitioned: input partition 0 mixes source partitions 0..3; the clock is the minimum
    /// over the sources, markers move a source without an event, and a snapshot keeps it.
    #[test]
    fn repartitioned_lanes_wait_for_every_source_partition() {
        let mut t = EventTime::new(5_000, None);
        t.assign(&[0], 0);
        t.expect_sources(0, 3, 0);
        let lane = |source| Lane { partition: 0, source };
        t.observe("a", lane(0), 1_000_000, 0);
        t.observe("a", lane(1), 2_000_000, 0);
        assert_eq!(t.host_time(0), None, "source 2 has not delivered");
        // Source 2's events all went to other input partitions; its marker vouches for them.
        assert!(t.mark(lane(2), (Some(1_500_000), 4), &[("a", 1_500_000, 4)], 1));
        assert_eq!(t.tenant_time("a", 1), Some(1_000_000));
        assert!(!t.mark(lane(2), (Some(1_500_000), 4), &[("a", 1_500_000, 4)], 2), "the same marker again moves nothing");
        t.observe("a", lane(0), 3_000_000, 2);
        assert_eq!(t.tenant_time("a", 2), Some(1_500_000));
        // Markers without new events are no activity: source 2 goes idle as a silent partition would.
        t.mark(lane(2), (Some(1_500_000), 4), &[("a", 1_500_000, 4)], 4_000);
        t.observe("a", lane(0), 3_000_001, 6_000);
        t.observe("a", lane(1), 3_000_001, 6_000);
        assert_eq!(t.host_time(6_000), Some(3_000_001));

        let (host, tenants, sources) = t.export(0);
        assert_eq!((host, tenants.len()), (None, 0), "no lane of the partition itself");
        assert_eq!(sources.len(), 3);
        let mut r = EventTime::new(5_000, None);
        r.restore(0, host, &tenants, &sources, 0);
        r.assign(&[0], 0);
        assert_eq!(r.host_time(0), Some(1_500_000), "restored lanes hold, and no lane of the partition itself");
        assert_eq!(r.tenant_time("a", 0), Some(1_500_000));
        r.revoke(&[0]);
        assert_eq!(r.host_time(0), None);
        // A source count learned later (the topic grew) adds lanes, never drops them.
        t.expect_sources(0, 4, 6_000);
        assert_eq!(t.host_time(6_000), None, "source 3 has not delivered");
    }
}
