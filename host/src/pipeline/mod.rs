//! The synchronous core of the runtime: raw records in, validated events routed to their
//! scenario's jobs, results out. No I/O and no async here, so the same code runs under the
//! file replay, the Kafka runtime, unit tests and benchmarks.

mod clock;
mod hot_job;
mod item_metrics;
pub mod job_plugins;
mod metrics_job;
mod profile_job;
mod profile_load;
pub mod quota;
#[cfg(test)]
mod repartition_tests;
mod scenario_map;
pub mod shadow;
mod state;
mod stats;

pub use clock::{EventTime, InputClock, Lane, NO_SOURCE, SINGLE_PARTITION, SourceLaneTimes};
pub use hot_job::{HotScoreJob, ScenarioHot, scorer_state};
pub use metrics_job::MetricsJob;
pub use profile_job::{ProfileCounters, ProfileJob};
pub use profile_load::ProfileRef;
pub use state::{PartitionState, PartitionStateV1, PartitionStateV2, PartitionStateV3, ScenarioState, ScenarioStateV2, SourceLaneState};
pub use stats::{Routed, ScenarioCounters};

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::tenant::TenantTable;
use crate::config::{ScenarioConfig, ScenarioKey};
use crate::event::{Event, Origin, RecordBatch};
use crate::event::{QuotaKind, RejectReason};
use crate::output::Output;
use crate::output::status::PipelineStats;
use profile_job::LookAhead;
use quota::MemoryLimits;
use scenario_map::Route;

/// Which computations a host runs (`--job`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobSelection {
    ItemHotScore,
    UserProfile,
    Metrics,
    All,
}

impl JobSelection {
    pub fn hot_score(self) -> bool {
        matches!(self, JobSelection::ItemHotScore | JobSelection::All)
    }

    pub fn user_profile(self) -> bool {
        matches!(self, JobSelection::UserProfile | JobSelection::All)
    }

    pub fn metrics(self) -> bool {
        matches!(self, JobSelection::Metrics | JobSelection::All)
    }
}

/// Restricts a host to one scenario (`--tenant-id` / `--scenario-id`).
#[derive(Debug, Clone, Default)]
pub struct ScenarioFilter {
    pub tenant_id: Option<String>,
    pub scenario_id: Option<String>,
}

impl ScenarioFilter {
    pub fn admits(&self, tenant: &str, scenario: &str) -> bool {
        self.tenant_id.as_deref().is_none_or(|t| t == tenant) && self.scenario_id.as_deref().is_none_or(|s| s == scenario)
    }

    /// Whether this host computes `cfg`: one it admits, and, if the scenario is dedicated, only
    /// on an instance started for exactly that scenario, so the shared fleet never writes the
    /// keys its dedicated instance owns.
    pub fn runs(&self, cfg: &ScenarioConfig) -> bool {
        let (tenant, scenario) = (&*cfg.key.tenant_id, &*cfg.key.scenario_id);
        self.admits(tenant, scenario) && (!cfg.dedicated || self.scenario_id.as_deref() == Some(scenario))
    }
}

/// A rejected record: its index in the batch and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub index: usize,
    pub reason: RejectReason,
}

#[derive(Debug, Clone)]
pub struct PipelineOptions {
    pub jobs: JobSelection,
    pub filter: ScenarioFilter,
    /// How far behind the max event time the watermark trails.
    pub allowed_lateness_ms: i64,
    /// Users idle this long (event time) are forgotten from memory (with read-back, their
    /// profile is read back from Redis when they return).
    pub profile_idle_ms: i64,
    /// With read-back (Kafka with Redis), users held in memory per scenario, at batch
    /// boundaries (`--profile-max-users`); beyond it the least recently active go.
    pub profile_max_users: usize,
    /// Wall time after which a silent input partition stops holding the watermark back.
    pub partition_idle_ms: i64,
    /// Events more than this ahead of the wall clock are rejected (`ts_in_future`), and a
    /// restored partition clock is held to it; `None` accepts any time (replays of recorded
    /// events, the generator, and calls without a wall clock such as [`Pipeline::process`]).
    pub max_event_skew_ms: Option<i64>,
    /// `--dead-letter-all`: late, duplicate and unknown-scenario events go to the dead-letter
    /// sink with their reason as well (they are always counted). Quota refusals always go.
    pub dead_letter_dropped: bool,
    /// Profiles come out encoded once from the user's state ([`Output::EncodedProfile`], the
    /// same bytes as [`Output::Profile`] serialized), as the runtime writes them; off, they
    /// come out structured ([`Output::Profile`]), which tests and tools read.
    pub encode_profiles: bool,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            jobs: JobSelection::ItemHotScore,
            filter: ScenarioFilter::default(),
            allowed_lateness_ms: 10_000,
            profile_idle_ms: 7 * 86_400_000,
            profile_max_users: DEFAULT_PROFILE_MAX_USERS,
            partition_idle_ms: 5_000,
            max_event_skew_ms: None,
            dead_letter_dropped: false,
            encode_profiles: false,
        }
    }
}

/// Default of `--profile-max-users`: about 0.2-0.5 GB per scenario at its fullest
/// (docs/operations.md, "Sizing profiles").
pub const DEFAULT_PROFILE_MAX_USERS: usize = 200_000;

/// How many events ahead [`Pipeline::process_range`] parses (see there).
const LOOK_AHEAD: usize = LookAhead::DEPTH;

/// Parses, routes and computes. Owns every job's state.
pub struct Pipeline {
    opts: PipelineOptions,
    hot: HotScoreJob,
    profiles: ProfileJob,
    metrics: MetricsJob,
    time: EventTime,
    /// The minute of the host's watermark at the last check (see `host_entered_new_minute`).
    host_minute: Option<i64>,
    /// The input partition each scenario's state belongs to (see `state.rs`).
    homes: scenario_map::ScenarioMap<i32>,
    stats: PipelineStats,
    /// Every tenant's quotas.
    quotas: TenantTable,
    tenants: BTreeMap<Arc<str>, TenantUsage>,
    /// Wall time the tenants' state bytes were last summed.
    state_checked_ms: i64,
    /// Dedicated scenarios this host leaves to their own instance (few: scanned, not hashed).
    elsewhere: std::collections::BTreeSet<ScenarioKey>,
}

/// What a tenant holds and what of its input was not counted, for status and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantUsage {
    /// Events of the tenant's scenarios that no job here runs.
    pub unknown_scenario: u64,
    /// Events refused by each memory quota.
    pub over_quota: BTreeMap<QuotaKind, u64>,
    /// Bytes of window and profile state at the last check.
    pub state_bytes: usize,
    /// Over `quotas.max_state_bytes` at the last check: new keys are refused.
    pub state_full: bool,
}

impl Pipeline {
    pub fn new(opts: PipelineOptions) -> Self {
        let mut profiles = ProfileJob::new(opts.profile_idle_ms);
        profiles.encode_outputs(opts.encode_profiles);
        let time = EventTime::new(opts.partition_idle_ms, opts.max_event_skew_ms);
        Self {
            opts,
            hot: HotScoreJob::new(),
            profiles,
            metrics: MetricsJob::new(),
            time,
            host_minute: None,
            homes: scenario_map::ScenarioMap::default(),
            stats: PipelineStats::default(),
            quotas: TenantTable::default(),
            tenants: BTreeMap::new(),
            state_checked_ms: i64::MIN,
            elsewhere: std::collections::BTreeSet::new(),
        }
    }

    /// The jobs this host runs (`--job`).
    pub fn jobs(&self) -> JobSelection {
        self.opts.jobs
    }

    /// Whether this host computes (and reports) the scenario `key` with the applied config
    /// `cfg`: outside its `--tenant-id/--scenario-id`, or dedicated to another instance, it
    /// does not, and must not write that scenario's status key either.
    pub fn runs(&self, key: &ScenarioKey, cfg: Option<&ScenarioConfig>) -> bool {
        match cfg {
            Some(c) => self.opts.filter.runs(c),
            None => self.opts.filter.admits(&key.tenant_id, &key.scenario_id),
        }
    }

    /// Installs or replaces a scenario's config (or removes it when `None`).
    pub fn apply_config(&mut self, key: &ScenarioKey, cfg: Option<Arc<ScenarioConfig>>) {
        match &cfg {
            // Events of a scenario its own instance computes count as filtered here, not unknown.
            Some(c) if c.dedicated && !self.opts.filter.runs(c) => self.elsewhere.insert(key.clone()),
            _ => self.elsewhere.remove(key),
        };
        let cfg = cfg.filter(|c| self.opts.filter.runs(c));
        let jobs = self.opts.jobs;
        self.hot.apply_config(key, cfg.clone().filter(|_| jobs.hot_score()));
        self.profiles.apply_config(key, cfg.clone().filter(|_| jobs.user_profile()));
        self.metrics.apply_config(key, cfg.filter(|_| jobs.metrics()));
        self.apply_limits(&key.tenant_id);
    }

    /// Takes new tenant quotas (tenant documents); they apply to the next event.
    pub fn set_tenant_quotas(&mut self, quotas: TenantTable) {
        self.quotas = quotas;
        let tenants: Vec<Arc<str>> = self.tenants.keys().cloned().collect();
        for t in tenants {
            self.apply_limits(&t);
        }
    }

    fn apply_limits(&mut self, tenant: &str) {
        let known = self.hot.has_tenant(tenant) || self.profiles.has_tenant(tenant) || self.metrics.has_tenant(tenant);
        if !known {
            self.tenants.remove(tenant);
            return;
        }
        let usage = match self.tenants.get_mut(tenant) {
            Some(u) => u,
            None => self.tenants.entry(Arc::from(tenant)).or_default(),
        };
        let limits = MemoryLimits { state_full: usage.state_full, ..MemoryLimits::from(self.quotas.get(tenant)) };
        self.hot.set_limits(tenant, limits);
        self.profiles.set_limits(tenant, limits);
    }

    /// Sums each tenant's state bytes (at most every [`quota::STATE_CHECK_MS`] of wall time) and
    /// refuses new keys of a tenant over `quotas.max_state_bytes` until it is below again.
    pub fn check_state_quotas(&mut self, wall_ms: i64) {
        if wall_ms.saturating_sub(self.state_checked_ms) < quota::STATE_CHECK_MS {
            return;
        }
        self.state_checked_ms = wall_ms;
        let tenants: Vec<Arc<str>> = self.tenants.keys().cloned().collect();
        for t in tenants {
            let bytes = self.hot.tenant_state_bytes(&t) + self.profiles.tenant_state_bytes(&t);
            let full = bytes > self.quotas.get(&t).max_state_bytes;
            let Some(usage) = self.tenants.get_mut(&t) else { continue };
            usage.state_bytes = bytes;
            if usage.state_full != full {
                usage.state_full = full;
                tracing::warn!(tenant = %t, state_bytes = bytes, full, "tenant state quota (quotas.max_state_bytes) {}",
                    if full { "reached: new items, ids and users are refused" } else { "no longer reached" });
                self.apply_limits(&t);
            }
        }
    }

    /// Each tenant with a scenario here: its usage and uncounted input.
    pub fn tenant_usage(&self) -> &BTreeMap<Arc<str>, TenantUsage> {
        &self.tenants
    }

    pub fn profile_job(&self) -> &ProfileJob {
        &self.profiles
    }

    pub fn metrics_job(&self) -> &MetricsJob {
        &self.metrics
    }

    pub fn profile_job_mut(&mut self) -> &mut ProfileJob {
        &mut self.profiles
    }

    pub fn metrics_job_mut(&mut self) -> &mut MetricsJob {
        &mut self.metrics
    }

    pub fn hot_job_mut(&mut self) -> &mut HotScoreJob {
        &mut self.hot
    }

    pub fn hot_job(&self) -> &HotScoreJob {
        &self.hot
    }

    /// Revisions every job has switched to at their effective time, summed: when this moves,
    /// the next waiting revision of a scenario may need its module prepared (runtime::plugins).
    pub fn plugin_switches(&self) -> u64 {
        let hot: u64 = self.hot.scenarios().map(|s| s.switches).sum();
        let metrics: u64 = self.metrics.scenarios().map(|s| s.plugins.switches).sum();
        hot + metrics + self.profiles.scenarios().map(|s| s.plugins.switches).sum::<u64>()
    }

    /// Processes a batch of raw records; due windows go to `out`, rejects to `rejects`.
    /// For sources without partitions and wall clock (file replay, tests).
    pub fn process(&mut self, batch: &RecordBatch, out: &mut Vec<Output>, rejects: &mut Vec<Reject>) {
        self.process_at(batch, 0, out, rejects);
    }

    /// Like [`Self::process`], with the wall time the batch arrived at (for idle partitions).
    pub fn process_at(&mut self, batch: &RecordBatch, wall_ms: i64, out: &mut Vec<Output>, rejects: &mut Vec<Reject>) {
        self.process_range(batch, 0..batch.len(), wall_ms, out, rejects);
    }

    /// Like [`Self::process_at`], for the records in `range` only: the runtime processes a
    /// batch in parts so that control (shutdown, config, ticks) never waits for a whole batch.
    /// Results do not depend on where a batch is split. Reject indices are the batch's.
    pub fn process_range(
        &mut self,
        batch: &RecordBatch,
        range: std::ops::Range<usize>,
        wall_ms: i64,
        out: &mut Vec<Output>,
        rejects: &mut Vec<Reject>,
    ) {
        let mut wall_checked = false;
        let end = range.end.min(batch.len());
        // Events are parsed LOOK_AHEAD events before they are processed, so the state they
        // will touch can be prefetched in stages, each load's address known from the one
        // before (a user's hint, then its slot, then what the slot points to), while the
        // events before them are processed.
        let parse = |i: usize| (!matches!(batch.origin(i), Some(Origin::Marker))).then(|| batch.event(i));
        let mut ahead: [Option<Result<Event<'_>, RejectReason>>; LOOK_AHEAD + 1] = std::array::from_fn(|_| None);
        // Each parsed event's scenario key, hashed once for the lookups of every job.
        let mut routes = [Route::default(); LOOK_AHEAD + 1];
        let prefetch = !self.profiles.is_empty();
        let slot = |i: usize| i % (LOOK_AHEAD + 1);
        let read = |i: usize| {
            let parsed = parse(i);
            let route = match &parsed {
                Some(Ok(ev)) => Route::of(&ev.tenant_id, &ev.scenario_id),
                _ => Route::default(),
            };
            (parsed, route)
        };
        for i in range.start..(range.start + LOOK_AHEAD).min(end) {
            (ahead[slot(i)], routes[slot(i)]) = read(i);
        }
        for index in range.start..end {
            let far = index + LOOK_AHEAD;
            if far < end {
                (ahead[slot(far)], routes[slot(far)]) = read(far);
            }
            if prefetch {
                for stage in LookAhead::STAGES {
                    let k = index + stage.distance();
                    if let Some(Some(Ok(ev))) = ahead.get(slot(k)).filter(|_| k < end) {
                        self.profiles.prefetch(ev, routes[slot(k)], stage);
                    }
                }
            }
            let parsed = &ahead[slot(index)];
            let route = routes[slot(index)];
            // Repartitioned input (`--repartition`): events carry their source partition, and
            // the shuffle's progress markers move event time without being events.
            let source = match batch.origin(index) {
                None | Some(Origin::Untagged) => NO_SOURCE,
                Some(Origin::Source { source, sources }) => {
                    let partition = batch.position(index).map_or(SINGLE_PARTITION, |p| p.partition);
                    self.time.expect_sources(partition, sources, wall_ms);
                    source
                }
                Some(Origin::Marker) => {
                    self.apply_marker(batch, index, wall_ms, out);
                    continue;
                }
            };
            self.stats.events_in += 1;
            // Read in place: moving the ~270-byte event out of the result was a copy per event.
            let ev = match parsed {
                Some(Ok(ev)) => ev,
                None => continue, // a marker, handled above
                Some(Err(reason)) => {
                    self.stats.rejected += 1;
                    rejects.push(Reject { index, reason: reason.clone() });
                    continue;
                }
            };
            if let Some(skew_ms) = self.opts.max_event_skew_ms
                && ev.ts > wall_ms.saturating_add(skew_ms)
            {
                self.stats.rejected += 1;
                rejects.push(Reject { index, reason: RejectReason::InFuture { ts: ev.ts, wall_ms, skew_ms } });
                continue;
            }
            let partition = batch.position(index).map_or(SINGLE_PARTITION, |p| p.partition);
            // Only events of this host's configured scenarios move event time: an unknown or
            // filtered-out tenant's clock must not close anyone's windows.
            let mut raised = clock::Raised { host: false, own: false };
            let tenant = &*ev.tenant_id;
            if !self.opts.filter.admits(&ev.tenant_id, &ev.scenario_id) {
                self.stats.filtered += 1;
            } else {
                let hot = self.hot.on_event(ev, route, &mut self.stats);
                let profile = self.profiles.on_routed_event(ev, route, batch.position(index));
                let metrics = self.metrics.on_event(ev, route);
                let dedicated_elsewhere =
                    || self.elsewhere.iter().any(|k| *k.tenant_id == *ev.tenant_id && *k.scenario_id == *ev.scenario_id);
                if [hot, profile, metrics] == [Routed::NotHere; 3] && dedicated_elsewhere() {
                    self.stats.filtered += 1;
                } else if [hot, profile, metrics] == [Routed::NotHere; 3] {
                    self.stats.unknown_scenario += 1;
                    // Per tenant only for tenants with a scenario here: ids made up by the
                    // million must not grow the map.
                    if let Some(usage) = self.tenants.get_mut(tenant) {
                        usage.unknown_scenario += 1;
                    }
                    if self.opts.dead_letter_dropped {
                        let reason = RejectReason::UnknownScenario { tenant: tenant.to_string(), scenario: ev.scenario_id.to_string() };
                        rejects.push(Reject { index, reason });
                    }
                } else {
                    self.route_outcome(tenant, hot, profile, ev.ts, index, rejects);
                    raised = self.time.observe(tenant, Lane { partition, source }, ev.ts, wall_ms);
                    if partition != SINGLE_PARTITION {
                        self.note_home(&ev.tenant_id, &ev.scenario_id, partition);
                    }
                }
            }
            // Windows are closed after every event that moves its tenant's watermark into a new
            // minute (window ends are whole minutes), so results depend on event order only,
            // never on how events were batched. Within a batch the wall time is fixed, so only
            // an event that raises a partition's maximum can move a watermark (the batch's
            // first event re-checks every tenant, for idle partitions). The host's time holds
            // every tenant, so it entering a new minute re-checks every tenant too.
            if !wall_checked || (raised.host && self.host_entered_new_minute(wall_ms)) {
                wall_checked = true;
                self.advance_all(wall_ms, out);
            } else if raised.own {
                self.advance_tenant(tenant, wall_ms, out);
            }
        }
    }

    /// A progress marker of the shuffle: the tenants this host runs move their lane on the
    /// marker's input partition (and the host's lane with them, as their events would), then
    /// every tenant's windows are checked. A marker that does not decode is skipped with a log
    /// line: it is not an event, so it is neither counted nor dead-lettered.
    fn apply_marker(&mut self, batch: &RecordBatch, index: usize, wall_ms: i64, out: &mut Vec<Output>) {
        let partition = batch.position(index).map_or(SINGLE_PARTITION, |p| p.partition);
        let marker = match crate::repartition::Marker::decode(batch.get(index).unwrap_or_default()) {
            Ok(m) => m,
            Err(e) => {
                self.stats.bad_markers += 1;
                if self.stats.bad_markers == 1 || self.stats.bad_markers.is_multiple_of(1000) {
                    tracing::warn!(error = %e, partition, skipped = self.stats.bad_markers, "skipping an unreadable progress marker");
                }
                return;
            }
        };
        self.time.expect_sources(partition, marker.tag.sources, wall_ms);
        // The shuffle counts no event past the skew; a marker that does anyway (written by
        // something else) must not close every window either.
        let limit = self.opts.max_event_skew_ms.map_or(i64::MAX, |s| wall_ms.saturating_add(s));
        let tenants: Vec<(&str, i64, u64)> = marker
            .tenants
            .iter()
            .filter(|t| self.tenants.contains_key(t.tenant.as_str()) && t.max_ts <= limit)
            .map(|t| (t.tenant.as_str(), t.max_ts, t.events))
            .collect();
        let host_max = tenants.iter().map(|t| t.1).max();
        let host_events = tenants.iter().map(|t| t.2).sum();
        let lane = Lane { partition, source: marker.tag.source };
        if self.time.mark(lane, (host_max, host_events), &tenants, wall_ms) {
            self.advance_all(wall_ms, out);
        }
    }

    /// Counts what the jobs did not count and dead-letters it: always a quota refusal, the rest
    /// with `--dead-letter-all`.
    #[inline]
    fn route_outcome(&mut self, tenant: &str, hot: Routed, profile: Routed, ts: i64, index: usize, rejects: &mut Vec<Reject>) {
        let reason = match (hot, profile) {
            (Routed::OverQuota(q, limit), _) | (_, Routed::OverQuota(q, limit)) => {
                self.stats.over_quota += 1;
                if let Some(usage) = self.tenants.get_mut(tenant) {
                    *usage.over_quota.entry(q).or_default() += 1;
                }
                RejectReason::Quota(q, limit as u64)
            }
            _ if !self.opts.dead_letter_dropped => return,
            (Routed::Late, _) => RejectReason::Late { ts, watermark: self.time.watermark(tenant).unwrap_or(i64::MIN) },
            (Routed::Duplicate, _) => RejectReason::Duplicate,
            _ => return,
        };
        rejects.push(Reject { index, reason });
    }

    /// Re-evaluates the watermarks without new events (a partition may have gone idle).
    pub fn tick(&mut self, wall_ms: i64, out: &mut Vec<Output>) {
        self.check_state_quotas(wall_ms);
        self.advance_all(wall_ms, out);
    }

    /// Partitions assigned to this instance (Kafka rebalance).
    pub fn assign_partitions(&mut self, partitions: &[i32], wall_ms: i64) {
        self.time.assign(partitions, wall_ms);
    }

    /// Partitions moved to another host: their progress and their scenarios' state go.
    pub fn revoke_partitions(&mut self, partitions: &[i32]) {
        self.time.revoke(partitions);
        for &p in partitions {
            self.release_partition(p);
        }
    }

    /// True (once) when the host's watermark has entered a later minute than at the last call:
    /// only then can a tenant held back by the host move into a new minute.
    #[inline]
    fn host_entered_new_minute(&mut self, wall_ms: i64) -> bool {
        let Some(minute) = self.watermark(wall_ms).map(|w| w.div_euclid(60_000)) else { return false };
        if self.host_minute.is_some_and(|m| m >= minute) {
            return false;
        }
        self.host_minute = Some(minute);
        true
    }

    fn advance_all(&mut self, wall_ms: i64, out: &mut Vec<Output>) {
        self.host_minute = self.watermark(wall_ms).map(|w| w.div_euclid(60_000)).max(self.host_minute);
        for tenant in self.time.tenants() {
            self.advance_tenant(&tenant, wall_ms, out);
        }
    }

    /// Closes what `tenant`'s event time has passed.
    #[inline]
    fn advance_tenant(&mut self, tenant: &str, wall_ms: i64, out: &mut Vec<Output>) {
        let Some(wm) = self.time.tenant_time(tenant, wall_ms).map(|t| t - self.opts.allowed_lateness_ms) else { return };
        if !self.time.advance_watermark(tenant, wm) {
            return;
        }
        self.hot.advance(tenant, wm, out);
        self.profiles.advance(tenant, wm, out);
        self.metrics.advance(tenant, wm, out);
    }

    /// The watermark `tenant`'s windows were last closed at.
    pub fn tenant_watermark(&self, tenant: &str) -> Option<i64> {
        self.time.watermark(tenant)
    }

    /// The host's watermark: the event time every active partition has reached (over every
    /// tenant) less the allowed lateness. For status and lag; no window closes on it.
    pub fn watermark(&self, wall_ms: i64) -> Option<i64> {
        self.time.host_time(wall_ms).map(|t| t - self.opts.allowed_lateness_ms)
    }

    /// End of a finite input: emits every window that holds events (DESIGN §4).
    pub fn finish(&mut self, out: &mut Vec<Output>) {
        self.hot.finish(out);
        self.profiles.finish(out);
        self.metrics.finish(out);
    }

    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_scenario;
    use crate::output::HotList;
    use crate::scoring::reference::{RefEvent, hot_lists};
    use proptest::prelude::*;

    const T0: i64 = 1_767_225_600_000;
    const ACTIONS: [&str; 5] = ["impression", "view", "click", "purchase", "dislike"];

    fn scenario(window: i64, slide: i64, lambda: f64, top_n: i64) -> Arc<ScenarioConfig> {
        let doc = serde_json::json!({"tenant_id": "t", "scenario_id": "s", "revision": 3, "config": {"realtime_compute": {"hot_score": {
            "action_weights": {"impression": 0.5, "view": 1.0, "click": 2.0, "purchase": 10.0, "dislike": -3.0},
            "decay_lambda": lambda, "window_size_minutes": window, "window_slide_minutes": slide, "top_n": top_n}}}});
        Arc::new(parse_scenario(&doc).unwrap())
    }

    fn run(cfg: &Arc<ScenarioConfig>, lines: &[String], chunk: usize) -> Vec<HotList> {
        let mut p = Pipeline::new(PipelineOptions::default());
        p.apply_config(&cfg.key, Some(cfg.clone()));
        let mut out = Vec::new();
        let mut rejects = Vec::new();
        for (i, part) in lines.chunks(chunk.max(1)).enumerate() {
            let mut batch = RecordBatch::default();
            part.iter().for_each(|l| batch.push(l.as_bytes()));
            // Both ways a batch arrives: parsed by its source (Kafka, files) or by the pipeline.
            if i % 2 == 1 {
                batch.parse_ahead();
            }
            p.process(&batch, &mut out, &mut rejects);
        }
        p.finish(&mut out);
        assert!(rejects.is_empty());
        out.into_iter().filter_map(|o| if let Output::Hot(h) = o { Some(h) } else { None }).collect()
    }

    fn assert_close(got: &[HotList], want: &std::collections::BTreeMap<i64, Vec<(String, f64)>>) -> Result<(), TestCaseError> {
        let got_nonempty: Vec<&HotList> = got.iter().filter(|h| !h.items.is_empty()).collect();
        let want_nonempty = want.values().filter(|v| !v.is_empty()).count();
        prop_assert_eq!(got_nonempty.len(), want_nonempty);
        for h in got {
            let w = want.get(&h.window_end).cloned().unwrap_or_default();
            prop_assert_eq!(h.items.len(), w.len(), "window {}", h.window_end);
            for (g, (wi, ws)) in h.items.iter().zip(&w) {
                // The bucket moments approximate E[exp(-k·age)] to second order; the neglected
                // terms stay below 1e-4 relative for decay_lambda <= 10/h (docs/architecture.md),
                // ten times inside the contract's 1e-3.
                prop_assert!(
                    (g.score - ws).abs() <= 1e-4 * ws.abs() + 1e-12,
                    "window {} {}: {} vs {} {}",
                    h.window_end,
                    g.item_id,
                    g.score,
                    wi,
                    ws
                );
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// In-order-within-lateness streams, any geometry and decay, any batching: the pipeline
        /// emits exactly the windows and scores of the per-event reference.
        #[test]
        fn pipeline_matches_per_event_reference(
            (slide, ratio) in (1i64..20, 1i64..6),
            lambda in prop_oneof![Just(0.0), 0.0f64..10.0],
            top_n in 1i64..30,
            raw in proptest::collection::vec((0u32..40, 0usize..5, 0i64..(6 * 3_600_000), 0i64..9_000), 1..400),
            chunk in 1usize..64,
        ) {
            let cfg = scenario(slide * ratio, slide, lambda, top_n);
            // Event time increases along the stream, each event displaced by up to 9 s (< the
            // 10 s lateness), so no event is late and every event counts.
            let mut base: Vec<i64> = raw.iter().map(|r| r.2).collect();
            base.sort();
            let events: Vec<RefEvent> = raw.iter().zip(&base).map(|((item, a, _, jitter), b)| RefEvent { item_id: format!("i{item}"), action: ACTIONS[*a].into(), ts: T0 + b - jitter }).collect();
            let lines: Vec<String> = events.iter().map(|e| format!(r#"{{"tenant_id":"t","scenario_id":"s","user_id":"u","item_id":"{}","action":"{}","ts":{}}}"#, e.item_id, e.action, e.ts)).collect();
            let got = run(&cfg, &lines, chunk);
            prop_assert!(got.iter().all(|h| h.config_revision == 3));
            assert_close(&got, &hot_lists(&events, &cfg.hot_score))?;
        }
    }

    fn lines_of(events: &[RefEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| {
                format!(
                    r#"{{"tenant_id":"t","scenario_id":"s","user_id":"u","item_id":"{}","action":"{}","ts":{}}}"#,
                    e.item_id, e.action, e.ts
                )
            })
            .collect()
    }

    fn traffic(n: i64) -> Vec<RefEvent> {
        (0..n)
            .map(|i| RefEvent { item_id: format!("i{}", (i * 7) % 13), action: ACTIONS[(i % 4) as usize].into(), ts: T0 + i * 20_000 })
            .collect()
    }

    fn feed(p: &mut Pipeline, lines: &[String], out: &mut Vec<Output>) {
        let mut batch = RecordBatch::default();
        lines.iter().for_each(|l| batch.push(l.as_bytes()));
        p.process(&batch, out, &mut Vec::new());
    }

    fn as_map(lists: &[&HotList]) -> std::collections::BTreeMap<i64, Vec<(String, f64)>> {
        lists.iter().map(|h| (h.window_end, h.items.iter().map(|i| (i.item_id.clone(), i.score)).collect())).collect()
    }

    #[test]
    fn a_revision_switches_exactly_at_its_effective_window_end() {
        let v1 = scenario(10, 5, 0.5, 10);
        let mut doc2 = serde_json::json!({"tenant_id": "t", "scenario_id": "s", "revision": 4, "effective_from_window_end": T0 + 40 * 60_000,
            "config": {"realtime_compute": {"hot_score": {"action_weights": {"click": 7.0, "view": 1.0},
            "decay_lambda": 0.2, "window_size_minutes": 10, "window_slide_minutes": 5, "top_n": 10}}}});
        let v2 = Arc::new(parse_scenario(&doc2).unwrap());
        let events = traffic(200); // about 66 minutes
        let lines = lines_of(&events);
        let mut p = Pipeline::new(PipelineOptions::default());
        p.apply_config(&v1.key, Some(v1.clone()));
        let mut out = Vec::new();
        feed(&mut p, &lines[..60], &mut out);
        // Stored while windows up to ~T0 + 15 min are out: the host holds it until T0 + 40 min.
        p.apply_config(&v2.key, Some(v2.clone()));
        assert_eq!(p.hot_job().scenario(&v1.key).unwrap().config.revision, 3);
        feed(&mut p, &lines[60..], &mut out);
        p.finish(&mut out);
        let hot: Vec<&HotList> = out.iter().filter_map(|o| if let Output::Hot(h) = o { Some(h) } else { None }).collect();
        assert!(hot.iter().all(|h| h.config_revision == if h.window_end < T0 + 40 * 60_000 { 3 } else { 4 }), "{hot:?}");
        let (r1, r2) = (hot_lists(&events, &v1.hot_score), hot_lists(&events, &v2.hot_score));
        for (want, rev) in [(r1, 3), (r2, 4)] {
            let got: Vec<&HotList> = hot.iter().copied().filter(|h| h.config_revision == rev).collect();
            assert!(!got.is_empty());
            let want = want.into_iter().filter(|(e, _)| got.iter().any(|h| h.window_end == *e)).collect();
            assert_close(&got.into_iter().cloned().collect::<Vec<_>>(), &want).unwrap();
        }

        // Arriving after its window was emitted, a revision applies at the next window.
        doc2["revision"] = 5.into();
        doc2["effective_from_window_end"] = T0.into();
        p.apply_config(&v2.key, Some(Arc::new(parse_scenario(&doc2).unwrap())));
        assert_eq!(p.hot_job().scenario(&v1.key).unwrap().config.revision, 5);
    }

    #[test]
    fn a_defaults_layer_change_of_the_same_revision_waits_for_its_window_end() {
        // A layer change (config::layers) keeps the scenario's revision, yet switches at its
        // effective window end like a new revision.
        let v1 = scenario(10, 5, 0.5, 10);
        let doc = serde_json::json!({"tenant_id": "t", "scenario_id": "s", "revision": 3, "effective_from_window_end": T0 + 40 * 60_000,
            "config": {"realtime_compute": {"hot_score": {"decay_lambda": 2.0, "window_size_minutes": 10, "window_slide_minutes": 5, "top_n": 10}}}});
        let layered = Arc::new(parse_scenario(&doc).unwrap());
        assert_eq!(layered.revision, v1.revision);
        let lines = lines_of(&traffic(200));
        let mut p = Pipeline::new(PipelineOptions::default());
        p.apply_config(&v1.key, Some(v1.clone()));
        let mut out = Vec::new();
        feed(&mut p, &lines[..60], &mut out);
        p.apply_config(&v1.key, Some(layered.clone()));
        assert_eq!(p.hot_job().scenario(&v1.key).unwrap().config.hot_score.decay_lambda, 0.5, "held until its window end");
        feed(&mut p, &lines[60..], &mut out);
        assert_eq!(p.hot_job().scenario(&v1.key).unwrap().config.hot_score.decay_lambda, 2.0);
    }

    #[test]
    fn revisions_stored_in_quick_succession_each_switch_at_their_own_window_end() {
        // A fleet host may read revisions 4 and 5 before either is due, or switch to 4 before
        // reading 5: both must score the same windows with the same revisions.
        let v3 = scenario(10, 5, 0.5, 10);
        let at = |revision: i64, minutes: i64, lambda: f64| {
            Arc::new(
                parse_scenario(&serde_json::json!({"tenant_id": "t", "scenario_id": "s", "revision": revision,
                    "effective_from_window_end": T0 + minutes * 60_000, "config": {"realtime_compute": {"hot_score": {
                    "decay_lambda": lambda, "window_size_minutes": 10, "window_slide_minutes": 5, "top_n": 10}}}}))
                .unwrap(),
            )
        };
        let (v4, v5, v6) = (at(4, 30, 0.2), at(5, 45, 0.9), at(6, 40, 0.3));
        let lines = lines_of(&traffic(200));
        let revisions = |late_reads: bool| {
            let mut p = Pipeline::new(PipelineOptions::default());
            p.apply_config(&v3.key, Some(v3.clone()));
            let mut out = Vec::new();
            feed(&mut p, &lines[..60], &mut out);
            p.apply_config(&v3.key, Some(v4.clone()));
            p.apply_config(&v3.key, Some(v5.clone()));
            if late_reads {
                feed(&mut p, &lines[60..110], &mut out);
                p.apply_config(&v3.key, Some(v6.clone()));
                feed(&mut p, &lines[110..], &mut out);
            } else {
                p.apply_config(&v3.key, Some(v6.clone()));
                feed(&mut p, &lines[60..], &mut out);
            }
            p.finish(&mut out);
            out.iter()
                .filter_map(|o| if let Output::Hot(h) = o { Some((h.window_end, h.config_revision)) } else { None })
                .collect::<Vec<_>>()
        };
        let early = revisions(false);
        // 6 (from 40 min) is newer than 5 (from 45 min): it supersedes 5.
        let want = |end: i64| match (end - T0) / 60_000 {
            ..30 => 3,
            30..40 => 4,
            _ => 6,
        };
        assert!(early.iter().all(|&(end, rev)| rev == want(end)), "{early:?}");
        assert!(early.iter().any(|&(_, rev)| rev == 4) && early.iter().any(|&(_, rev)| rev == 6));
        assert_eq!(revisions(true), early);
    }

    #[test]
    fn a_candidate_scores_the_same_windows_in_shadow_and_live_is_unchanged() {
        let live = scenario(10, 5, 0.5, 10);
        let mut doc = serde_json::json!({"tenant_id": "t", "scenario_id": "s", "revision": 3, "config": {"realtime_compute": {"hot_score": {
            "action_weights": {"impression": 0.5, "view": 1.0, "click": 2.0, "purchase": 10.0, "dislike": -3.0},
            "decay_lambda": 0.5, "window_size_minutes": 10, "window_slide_minutes": 5, "top_n": 10}}}});
        doc["candidate"] =
            serde_json::json!({"hot_score": {"action_weights": {"click": 9.0, "purchase": 1.0}, "decay_lambda": 2.0, "top_n": 5}});
        let with_candidate = Arc::new(parse_scenario(&doc).unwrap());
        let events = traffic(120);
        let mut p = Pipeline::new(PipelineOptions::default());
        p.apply_config(&with_candidate.key, Some(with_candidate.clone()));
        let mut out = Vec::new();
        feed(&mut p, &lines_of(&events), &mut out);
        p.finish(&mut out);
        let hot: Vec<HotList> = out.iter().filter_map(|o| if let Output::Hot(h) = o { Some(h.clone()) } else { None }).collect();
        let shadow: Vec<&crate::output::ShadowList> =
            out.iter().filter_map(|o| if let Output::Shadow(s) = o { Some(s) } else { None }).collect();
        assert_eq!(hot.len(), shadow.len());
        assert_close(&hot, &hot_lists(&events, &live.hot_score)).unwrap();
        let Some(cand) = with_candidate.candidate.as_ref().and_then(crate::config::Candidate::hot_score) else { panic!() };
        let lists: Vec<HotList> = shadow.iter().map(|s| s.list.clone()).collect();
        assert_close(&lists, &hot_lists(&events, cand)).unwrap();
        for s in &shadow {
            let h = hot.iter().find(|h| h.window_end == s.list.window_end).unwrap();
            assert_eq!(s.comparison, shadow::compare(&h.items, &s.list.items, 10));
        }
        assert!(shadow.iter().any(|s| s.comparison.overlap_at_k < 1.0));
        let _ = as_map;
    }

    #[test]
    fn a_batch_processed_in_parts_gives_the_same_outputs() {
        let cfg = scenario(10, 5, 0.5, 10);
        let mut batch = RecordBatch::default();
        lines_of(&traffic(300)).iter().for_each(|l| batch.push(l.as_bytes()));
        batch.push(b"not json");
        let run = |cuts: &[usize]| {
            let mut p = Pipeline::new(PipelineOptions::default());
            p.apply_config(&cfg.key, Some(cfg.clone()));
            let (mut out, mut rejects) = (Vec::new(), Vec::new());
            let mut start = 0;
            for &end in cuts.iter().chain([&batch.len()]) {
                p.process_range(&batch, start..end, 0, &mut out, &mut rejects);
                start = end;
            }
            p.finish(&mut out);
            (out.iter().map(|o| o.to_json().to_string()).collect::<Vec<_>>(), rejects, p.stats().events_in)
        };
        let whole = run(&[]);
        assert!(whole.0.len() > 10);
        assert_eq!(whole.1, vec![Reject { index: 300, reason: whole.1[0].reason.clone() }]);
        assert_eq!(run(&[1, 2, 77, 150, 299]), whole);
    }

    #[test]
    fn far_future_and_unknown_events_do_not_move_event_time() {
        let cfg = scenario(10, 5, 0.5, 10);
        let lines = lines_of(&traffic(200));
        let wall = T0 + 86_400_000;
        let future = |tenant: &str| {
            format!(r#"{{"tenant_id":"{tenant}","scenario_id":"s","user_id":"u","item_id":"x","action":"click","ts":4102444000000}}"#)
        };
        let run = |extra: &[String], skew: Option<i64>| {
            let mut p = Pipeline::new(PipelineOptions { max_event_skew_ms: skew, ..PipelineOptions::default() });
            p.apply_config(&cfg.key, Some(cfg.clone()));
            let mut batch = RecordBatch::default();
            for (i, l) in lines.iter().enumerate() {
                if i == 50 {
                    extra.iter().for_each(|e| batch.push(e.as_bytes()));
                }
                batch.push(l.as_bytes());
            }
            let (mut out, mut rejects) = (Vec::new(), Vec::new());
            p.process_at(&batch, wall, &mut out, &mut rejects);
            p.finish(&mut out);
            let kinds: Vec<&str> = rejects.iter().map(|r| r.reason.kind()).collect();
            (out.iter().map(|o| o.to_json().to_string()).collect::<Vec<_>>(), kinds.join(","), p.stats().unknown_scenario)
        };
        let (clean, _, _) = run(&[], Some(600_000));
        assert!(clean.len() > 10);
        // With the skew rule both are dead-lettered; the known tenant's would have closed every
        // window up to 2099 and made the rest of the stream late.
        assert_eq!(run(&[future("t"), future("other")], Some(600_000)), (clean.clone(), "ts_in_future,ts_in_future".into(), 0));
        // Without it (a replay of recorded events), an unknown tenant still moves nothing.
        assert_eq!(run(&[future("other")], None), (clean, String::new(), 1));
    }

    #[test]
    fn a_tenant_ahead_of_the_others_closes_only_its_own_windows() {
        let good = scenario(10, 5, 0.5, 10);
        let doc = serde_json::json!({"tenant_id": "evil", "scenario_id": "s", "revision": 1,
            "config": {"realtime_compute": {"hot_score": {"window_size_minutes": 10, "window_slide_minutes": 5}}}});
        let evil = Arc::new(parse_scenario(&doc).unwrap());
        let good_lines = lines_of(&traffic(300));
        let run = |with_evil: bool| {
            let mut p = Pipeline::new(PipelineOptions { max_event_skew_ms: Some(600_000), ..PipelineOptions::default() });
            p.apply_config(&good.key, Some(good.clone()));
            p.apply_config(&evil.key, Some(evil.clone()));
            let (mut out, mut rejects) = (Vec::new(), Vec::new());
            for (i, l) in good_lines.iter().enumerate() {
                let mut batch = RecordBatch::default();
                batch.push(l.as_bytes());
                let ts = T0 + i as i64 * 20_000;
                if with_evil {
                    // Nine minutes ahead of good's time and of the wall clock: inside the skew.
                    let ahead = format!(
                        r#"{{"tenant_id":"evil","scenario_id":"s","user_id":"u","item_id":"x","action":"click","ts":{}}}"#,
                        ts + 540_000
                    );
                    batch.push(ahead.as_bytes());
                }
                p.process_at(&batch, ts, &mut out, &mut rejects);
            }
            p.finish(&mut out);
            assert!(rejects.is_empty(), "{rejects:?}");
            assert_eq!(p.stats().late, 0);
            let of_good: Vec<String> = out.iter().map(|o| o.to_json()).filter(|j| j["tenant_id"] == "t").map(|j| j.to_string()).collect();
            (of_good, p.tenant_watermark("t"), p.tenant_watermark("evil"))
        };
        let (alone, wm_alone, _) = run(false);
        let (mixed, wm_mixed, wm_evil) = run(true);
        assert!(alone.len() > 10);
        assert_eq!(mixed, alone, "good's output must not depend on evil's clock");
        assert_eq!(wm_mixed, wm_alone);
        assert!(wm_evil > wm_alone, "evil's own windows run ahead");
    }

    #[test]
    fn a_tenant_at_its_quotas_is_refused_new_keys_and_others_are_unchanged() {
        let good = scenario(10, 5, 0.0, 10);
        let doc = serde_json::json!({"tenant_id": "evil", "scenario_id": "s", "revision": 1, "config": {"realtime_compute": {
            "hot_score": {"window_size_minutes": 10, "window_slide_minutes": 5}, "user_profile": {}}}});
        let evil = Arc::new(parse_scenario(&doc).unwrap());
        let (quotas, errors) = TenantTable::from_documents(&[serde_json::json!({"tenant_id": "evil",
            "quotas": {"max_items_per_scenario": 3, "max_event_ids_per_scenario": 5, "max_users_per_scenario": 2}})]);
        assert!(errors.is_empty());
        let good_lines = lines_of(&traffic(100));
        let run = |with_evil: bool| {
            let mut p = Pipeline::new(PipelineOptions { jobs: JobSelection::All, ..PipelineOptions::default() });
            p.set_tenant_quotas(quotas.clone());
            p.apply_config(&good.key, Some(good.clone()));
            p.apply_config(&evil.key, Some(evil.clone()));
            let mut batch = RecordBatch::default();
            for (i, l) in good_lines.iter().enumerate() {
                batch.push(l.as_bytes());
                if with_evil {
                    let flood = format!(
                        r#"{{"tenant_id":"evil","scenario_id":"s","user_id":"u{i}","item_id":"x{i}","action":"click","ts":{},"event_id":"e{i}"}}"#,
                        T0 + i as i64 * 20_000
                    );
                    batch.push(flood.as_bytes());
                }
            }
            let (mut out, mut rejects) = (Vec::new(), Vec::new());
            p.process(&batch, &mut out, &mut rejects);
            p.finish(&mut out);
            let of_good: Vec<String> = out.iter().map(|o| o.to_json()).filter(|j| j["tenant_id"] == "t").map(|j| j.to_string()).collect();
            let kinds: Vec<&'static str> = rejects.iter().map(|r| r.reason.kind()).collect();
            (of_good, kinds, p.tenant_usage().get("evil").cloned())
        };
        let (alone, none, _) = run(false);
        let (mixed, kinds, usage) = run(true);
        assert_eq!(mixed, alone, "good's output must not depend on evil's flood");
        assert!(none.is_empty());
        // At most 3 items, 5 ids and 2 users are held at a time (closed windows free theirs), so
        // nearly every flood event is refused, each with the quota it hit.
        assert!(kinds.len() > 80, "{kinds:?}");
        for k in ["quota_items", "quota_event_ids", "quota_users"] {
            assert!(kinds.contains(&k), "{k} in {kinds:?}");
        }
        let usage = usage.unwrap();
        assert_eq!(usage.over_quota.values().sum::<u64>(), kinds.len() as u64);
    }

    #[test]
    fn bad_events_anywhere_in_a_range_are_rejected_at_their_index_whatever_the_split() {
        // Events are parsed a few ahead of where they are processed (the look-ahead that
        // prefetches profile state): a bad line at a range's first, last or any index in
        // between must be rejected at its own index, and the good ones' output stay the same.
        let doc = serde_json::json!({"tenant_id": "t", "scenario_id": "s", "revision": 1, "config": {"realtime_compute": {
            "hot_score": {"window_size_minutes": 10, "window_slide_minutes": 5}, "user_profile": {}}}});
        let cfg = Arc::new(parse_scenario(&doc).unwrap());
        let mut lines: Vec<String> = lines_of(&traffic(40))
            .into_iter()
            .enumerate()
            .map(|(i, l)| l.replace(r#""user_id":"u""#, &format!(r#""user_id":"u{}""#, i % 5)))
            .collect();
        let bad = [0, 1, 17, 41, 42];
        for &at in &bad {
            lines.insert(at, format!(r#"{{"tenant_id":"t","scenario_id":"s","user_id":"u","item_id":"i","action":"click","ts":"x{at}"}}"#));
        }
        let mut batch = RecordBatch::default();
        lines.iter().for_each(|l| batch.push(l.as_bytes()));
        let run = |step: usize| {
            let mut p = Pipeline::new(PipelineOptions { jobs: JobSelection::All, ..PipelineOptions::default() });
            p.apply_config(&cfg.key, Some(cfg.clone()));
            let (mut out, mut rejects) = (Vec::new(), Vec::new());
            for start in (0..batch.len()).step_by(step) {
                p.process_range(&batch, start..(start + step).min(batch.len()), 0, &mut out, &mut rejects);
            }
            p.finish(&mut out);
            let rejects: Vec<(usize, &'static str)> = rejects.iter().map(|r| (r.index, r.reason.kind())).collect();
            (out, rejects)
        };
        let (whole, rejects) = run(batch.len());
        assert_eq!(rejects.iter().map(|r| r.0).collect::<Vec<_>>(), bad);
        assert!(whole.iter().any(|o| matches!(o, Output::Hot(_))) && whole.iter().any(|o| !matches!(o, Output::Hot(_))), "{whole:?}");
        for step in [1, 2, 3, 5] {
            assert_eq!(run(step), (whole.clone(), rejects.clone()), "ranges of {step}");
        }
    }

    #[test]
    fn a_tenant_over_its_state_bytes_keeps_its_keys_and_is_refused_new_ones() {
        let cfg = scenario(10, 5, 0.0, 10);
        let (quotas, _) = TenantTable::from_documents(&[serde_json::json!({"tenant_id": "t", "quotas": {"max_state_bytes": 1}})]);
        let mut p = Pipeline::new(PipelineOptions::default());
        p.set_tenant_quotas(quotas);
        p.apply_config(&cfg.key, Some(cfg.clone()));
        let ev =
            |item: &str| format!(r#"{{"tenant_id":"t","scenario_id":"s","user_id":"u","item_id":"{item}","action":"click","ts":{T0}}}"#);
        let (mut out, mut rejects) = (Vec::new(), Vec::new());
        let mut batch = RecordBatch::default();
        batch.push(ev("a").as_bytes());
        p.process(&batch, &mut out, &mut rejects);
        p.tick(10_000, &mut out);
        assert!(p.tenant_usage()["t"].state_full);
        let mut batch = RecordBatch::default();
        batch.push(ev("a").as_bytes());
        batch.push(ev("b").as_bytes());
        p.process(&batch, &mut out, &mut rejects);
        assert_eq!(rejects.iter().map(|r| (r.index, r.reason.kind())).collect::<Vec<_>>(), vec![(1, "quota_state_bytes")]);
        assert_eq!(p.hot_job().scenario(&cfg.key).unwrap().counters.events, 2, "the held item still counts");
    }

    #[test]
    fn dead_letter_all_sends_late_duplicate_and_unknown_events_with_their_reason() {
        let cfg = scenario(10, 5, 0.0, 10);
        let ev = |s: &str, id: &str, ts: i64| {
            format!(r#"{{"tenant_id":"t","scenario_id":"{s}","user_id":"u","item_id":"a","action":"click","ts":{ts},"event_id":"{id}"}}"#)
        };
        let lines = [ev("s", "e1", T0), ev("s", "e1", T0), ev("s", "e2", T0 + 3_600_000), ev("s", "e3", T0 + 1), ev("nope", "e4", T0)];
        let run = |all: bool| {
            let mut p = Pipeline::new(PipelineOptions { dead_letter_dropped: all, ..PipelineOptions::default() });
            p.apply_config(&cfg.key, Some(cfg.clone()));
            let (mut out, mut rejects) = (Vec::new(), Vec::new());
            let mut batch = RecordBatch::default();
            lines.iter().for_each(|l| batch.push(l.as_bytes()));
            p.process(&batch, &mut out, &mut rejects);
            assert_eq!(p.tenant_usage().get("t").map(|u| u.unknown_scenario), Some(1));
            rejects.iter().map(|r| (r.index, r.reason.kind())).collect::<Vec<_>>()
        };
        assert_eq!(run(false), vec![]);
        assert_eq!(run(true), vec![(1, "duplicate"), (3, "late"), (4, "unknown_scenario")]);
    }

    #[test]
    fn duplicate_event_ids_count_once_and_late_events_are_dropped() {
        let cfg = scenario(10, 5, 0.0, 10);
        let ev = |id: &str, ts: i64| {
            format!(r#"{{"tenant_id":"t","scenario_id":"s","user_id":"u","item_id":"a","action":"click","ts":{ts},"event_id":"{id}"}}"#)
        };
        let lines = [ev("e1", T0), ev("e1", T0), ev("e2", T0 + 3_600_000), ev("e3", T0 + 1)];
        let mut p = Pipeline::new(PipelineOptions::default());
        p.apply_config(&cfg.key, Some(cfg.clone()));
        let (mut out, mut rejects) = (Vec::new(), Vec::new());
        let mut batch = RecordBatch::default();
        lines.iter().for_each(|l| batch.push(l.as_bytes()));
        p.process(&batch, &mut out, &mut rejects);
        assert_eq!(p.stats().duplicates, 1);
        assert_eq!(p.stats().late, 1);
        let Output::Hot(first) = &out[0] else { panic!("expected a hot list") };
        assert_eq!(first.items[0].score, 2.0, "e1 counted once (twice would score 4)");
    }

    #[test]
    fn unknown_and_filtered_scenarios_are_counted() {
        let cfg = scenario(10, 5, 0.0, 10);
        let mut p = Pipeline::new(PipelineOptions {
            filter: ScenarioFilter { tenant_id: Some("t".into()), scenario_id: None },
            ..PipelineOptions::default()
        });
        p.apply_config(&cfg.key, Some(cfg.clone()));
        let mut batch = RecordBatch::default();
        batch.push(br#"{"tenant_id":"t","scenario_id":"other","user_id":"u","item_id":"a","action":"click","ts":1767225600000}"#);
        batch.push(br#"{"tenant_id":"x","scenario_id":"s","user_id":"u","item_id":"a","action":"click","ts":1767225600000}"#);
        batch.push(b"garbage");
        let (mut out, mut rejects) = (Vec::new(), Vec::new());
        p.process(&batch, &mut out, &mut rejects);
        assert_eq!((p.stats().unknown_scenario, p.stats().filtered, p.stats().rejected), (1, 1, 1));
        assert_eq!(rejects[0].index, 2);
    }

    #[test]
    fn a_dedicated_scenario_runs_only_on_the_instance_started_for_it() {
        let mut cfg = (*scenario(10, 5, 0.0, 10)).clone();
        cfg.dedicated = true;
        let cfg = Arc::new(cfg);
        let event = br#"{"tenant_id":"t","scenario_id":"s","user_id":"u","item_id":"a","action":"click","ts":1767225600000}"#;
        let run = |filter: ScenarioFilter| {
            let mut p = Pipeline::new(PipelineOptions { filter, dead_letter_dropped: true, ..PipelineOptions::default() });
            p.apply_config(&cfg.key, Some(cfg.clone()));
            let mut batch = RecordBatch::default();
            batch.push(event);
            let (mut out, mut rejects) = (Vec::new(), Vec::new());
            p.process(&batch, &mut out, &mut rejects);
            (p.runs(&cfg.key, Some(&cfg)), p.stats().filtered, p.stats().unknown_scenario, rejects.len())
        };
        let fleet = ScenarioFilter::default();
        assert_eq!(run(fleet), (false, 1, 0, 0), "the fleet skips it: filtered, not unknown, not dead-lettered");
        let tenant_wide = ScenarioFilter { tenant_id: Some("t".into()), scenario_id: None };
        assert!(!run(tenant_wide).0, "a tenant's instance is not started for this scenario");
        let own = ScenarioFilter { tenant_id: Some("t".into()), scenario_id: Some("s".into()) };
        assert_eq!(run(own), (true, 0, 0, 0));
    }
}
