//! What this host applies, per scenario: the status rows (`output::status`) built from the
//! registry and the pipeline, the source of the status key (`rt:{tenant}:{scenario}:status`),
//! `/status`, and the per-scenario metrics.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use serde::Serialize;

use super::snapshots::Snapshots;
use crate::config::{Candidate, ScenarioRegistry};
use crate::output::status::{JobLaneStatus, PipelineStats, ScenarioStatusRow, TenantStatusRow};
use crate::pipeline::job_plugins::JobPlugins;
use crate::pipeline::{Pipeline, scorer_state};
use crate::plugin::PluginWorld;
use crate::sources::Backlog;
use crate::text::cap_error;

/// One row per scenario the registry knows that this host runs (another instance's scenarios
/// are that instance's to report: their status key is not written from here).
pub fn rows(registry: &ScenarioRegistry, pipeline: &Pipeline) -> Vec<ScenarioStatusRow> {
    registry
        .entries()
        .filter(|(key, entry)| pipeline.runs(key, entry.applied.as_deref()))
        .map(|(key, entry)| {
            let hot = pipeline.hot_job().scenario(key);
            let counters = hot.map(|h| h.counters.clone()).unwrap_or_default();
            // The revision in force: the hot job's, which may still wait for a newer one.
            let in_force = hot.map(|h| &h.config).or(entry.applied.as_ref());
            let plugin_ref = in_force.and_then(|c| c.hot_score.plugin.as_ref());
            let pending_lane = hot.and_then(|h| h.pending.as_ref());
            let pending = pending_lane.map(|p| &p.config);
            let shadow = hot.and_then(|h| h.shadow.as_ref());
            let candidate_error = match entry.applied.as_ref().and_then(|c| c.candidate.as_ref()) {
                Some(Candidate::Invalid(e)) => Some(e.clone()),
                _ => shadow.and_then(|s| s.last_plugin_error.clone()),
            }
            .map(|e| cap_error(&e));
            let metrics = pipeline.metrics_job().scenario(key);
            let metrics_ref = metrics.and_then(|m| m.plugins.in_force());
            let profile = pipeline.profile_job().scenario(key);
            let profile_ref = profile.and_then(|p| p.plugins.in_force());
            let mut job_lanes = JobLaneStatus::default();
            if let Some(m) = metrics {
                let (pending, candidate, state, error) = lane_status(&m.plugins);
                (job_lanes.metrics_plugin_pending, job_lanes.metrics_candidate) = (pending, candidate);
                (job_lanes.metrics_candidate_state, job_lanes.metrics_candidate_error) = (state, error);
            }
            if let Some(p) = profile {
                let (pending, candidate, state, error) = lane_status(&p.plugins);
                (job_lanes.profile_plugin_pending, job_lanes.profile_candidate) = (pending, candidate);
                (job_lanes.profile_candidate_state, job_lanes.profile_candidate_error) = (state, error);
                if p.plugins.shadow.is_some() {
                    job_lanes.profile_shadow_overlap_at_k = p.shadow.overlap_at_k;
                    job_lanes.profile_shadow_users = Some(p.shadow.users);
                }
            }
            ScenarioStatusRow {
                tenant_id: key.tenant_id.to_string(),
                scenario_id: key.scenario_id.to_string(),
                config_revision: in_force.map(|c| c.revision),
                active: hot.is_some(),
                plugin: plugin_ref.map_or_else(|| "builtin".to_string(), |p| p.label()),
                plugin_state: hot.map_or_else(|| "none".to_string(), |h| h.plugin_state()),
                // Error texts come from tenant documents and tenant code: capped for every reader.
                last_error: entry.last_error.as_deref().or_else(|| hot.and_then(|h| h.last_plugin_error.as_deref())).map(cap_error),
                plugin_error: hot.and_then(|h| h.last_plugin_error.as_deref()).map(cap_error),
                last_window_end: hot.and_then(|h| h.last_window_end),
                applied_at: entry.applied_at_ms,
                config_propagation_ms: entry.propagation_ms,
                events: counters.events,
                late: counters.late,
                duplicates: counters.duplicates,
                over_quota: counters.over_quota + pipeline.profile_job().scenario(key).map_or(0, |p| p.over_quota),
                windows_emitted: counters.windows_emitted,
                watermark: pipeline.tenant_watermark(&key.tenant_id),
                pending_revision: pending.map(|c| c.revision),
                effective_from_window_end: pending.or(in_force).and_then(|c| c.effective_from_window_end),
                pending_plugin_state: pending_lane.map(|p| {
                    if p.config.hot_score.plugin == in_force.and_then(|c| c.hot_score.plugin.clone()) {
                        "same as live".to_string()
                    } else {
                        scorer_state(&p.scorer)
                    }
                }),
                candidate: shadow.map(|s| s.hot.plugin.as_ref().map_or_else(|| "builtin".to_string(), |p| p.label())),
                candidate_state: shadow.map(|s| scorer_state(&s.scorer)),
                candidate_error,
                shadow_window_end: shadow.and_then(|s| s.last.map(|l| l.0)),
                shadow: shadow.and_then(|s| s.last.map(|l| l.1)),
                removed_at: entry.removed.as_ref().map(|r| r.at_ms),
                removed_reason: entry.removed.as_ref().map(|r| cap_error(&r.reason)),
                metrics_plugin: metrics_ref.map(|p| p.label()),
                metrics_plugin_state: metrics.filter(|_| metrics_ref.is_some()).map(|m| m.plugins.live.state().to_string()),
                metrics_plugin_error: metrics
                    .filter(|_| metrics_ref.is_some())
                    .and_then(|m| m.plugins.live.last_error.as_deref())
                    .map(cap_error),
                profile_plugin: profile_ref.map(|p| p.label()),
                profile_plugin_state: profile.filter(|_| profile_ref.is_some()).map(|p| p.plugins.live.state().to_string()),
                profile_plugin_error: profile
                    .filter(|_| profile_ref.is_some())
                    .and_then(|p| p.plugins.live.last_error.as_deref())
                    .map(cap_error),
                job_lanes,
            }
        })
        .collect()
}

/// A job's waiting plugin (`name@version from <ms>: <state>`) and its candidate's reference,
/// state and last failure, for status.
fn lane_status(p: &JobPlugins) -> (Option<String>, Option<String>, Option<String>, Option<String>) {
    let pending = p.pending.as_ref().zip(p.next_switch()).map(|((r, j), at)| format!("{} from {at}: {}", r.label(), j.state()));
    let shadow = p.shadow.as_ref();
    (
        pending,
        shadow.map(|(r, _)| r.label()),
        shadow.map(|(_, j)| j.state().to_string()),
        shadow.and_then(|(_, j)| j.last_error.as_deref()).map(cap_error),
    )
}

/// One job's plugin lane of a scenario, as `rtscore plugin test` judges it: the hot score's
/// (world `scorer`), the metrics job's or the profile job's.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginLane {
    /// `tenant/scenario`.
    pub scenario: String,
    pub world: PluginWorld,
    /// `name@version`; `None` when the section references no plugin (the built-in path runs).
    pub plugin: Option<String>,
    /// As `plugin_state` in the status rows.
    pub state: String,
    /// The last failure, if the plugin ever failed.
    pub error: Option<String>,
    /// Events of the scenario the lane's job counted, where it counts them (the hot job).
    pub events: Option<u64>,
    /// Windows (hot, metrics) or profile writes the job emitted.
    pub emitted: u64,
    /// Of those, the ones the plugin did not make, where the job counts them.
    pub without_plugin: u64,
}

impl PluginLane {
    /// What the job emits, in the singular.
    fn unit(&self) -> &'static str {
        match self.world {
            PluginWorld::Scorer => "window",
            PluginWorld::Metrics => "metrics window",
            PluginWorld::Profile => "profile write",
        }
    }

    /// Why the lane fails a `plugin test`, if it does.
    fn problem(&self) -> Option<String> {
        let scenario = &self.scenario;
        if self.emitted == 0 {
            let events = self.events.map(|n| format!(" ({n} events of it in the input)")).unwrap_or_default();
            return Some(match self.world {
                PluginWorld::Scorer => {
                    format!("{scenario}: no window was scored{events}: record events of this scenario, spanning at least one window")
                }
                PluginWorld::Metrics => {
                    format!("{scenario}: no metrics window was emitted{events}: record events of this scenario (is metrics enabled?)")
                }
                PluginWorld::Profile => {
                    format!("{scenario}: no profile was written{events}: record events of this scenario (is user_profile enabled?)")
                }
            });
        }
        let plugin = self.plugin.as_deref()?;
        let active = self.state.starts_with("active");
        if active && self.error.is_none() && self.without_plugin == 0 {
            return None;
        }
        let kind = match self.world {
            PluginWorld::Scorer => "",
            PluginWorld::Metrics => "metrics ",
            PluginWorld::Profile => "profile ",
        };
        // A fallback or quarantine state names its reason already.
        let error = self.error.as_deref().filter(|e| !self.state.contains(*e)).map(|e| format!(": {e}")).unwrap_or_default();
        let missed = match self.without_plugin {
            0 => String::new(),
            n => format!(" ({n} of {} {}s without it)", self.emitted, self.unit()),
        };
        Some(format!("{scenario}: {kind}plugin {plugin} is {}{error}{missed}", self.state))
    }
}

/// Every plugin lane of the jobs this host runs, per scenario row.
pub fn plugin_lanes(rows: &[ScenarioStatusRow], pipeline: &Pipeline) -> Vec<PluginLane> {
    let jobs = pipeline.jobs();
    let mut lanes = Vec::new();
    for r in rows {
        let key = r.key();
        let lane = |world, plugin: &Option<String>, state: &Option<String>, error: &Option<String>, (emitted, without_plugin)| PluginLane {
            scenario: format!("{}/{}", r.tenant_id, r.scenario_id),
            world,
            plugin: plugin.clone(),
            state: state.clone().unwrap_or_default(),
            error: error.clone(),
            events: None,
            emitted,
            without_plugin,
        };
        if jobs.hot_score() {
            let plugin = (r.plugin != "builtin").then(|| r.plugin.clone());
            // A window the plugin did not score leaves its error (the hot job keeps no count).
            let hot = lane(PluginWorld::Scorer, &plugin, &Some(r.plugin_state.clone()), &r.plugin_error, (r.windows_emitted, 0));
            lanes.push(PluginLane { events: Some(r.events), ..hot });
        }
        if jobs.metrics() {
            let counts = pipeline.metrics_job().scenario(&key).map_or((0, 0), |m| (m.windows_emitted, m.plugin_fallback_windows));
            lanes.push(lane(PluginWorld::Metrics, &r.metrics_plugin, &r.metrics_plugin_state, &r.metrics_plugin_error, counts));
        }
        if jobs.user_profile() {
            let counts = pipeline.profile_job().scenario(&key).map_or((0, 0), |p| (p.profiles_written, p.plugin_fallback_writes));
            lanes.push(lane(PluginWorld::Profile, &r.profile_plugin, &r.profile_plugin_state, &r.profile_plugin_error, counts));
        }
    }
    lanes
}

/// For `rtscore plugin test` (`Settings::require_plugins_scored`): why the run must fail, if a
/// lane's plugin did not run on everything its job emitted (it is not active: it failed to load
/// or configure, or was quarantined, and the built-in path stood in; or it failed on some
/// window or write), or its job emitted nothing at all. `None` when every plugin ran on every
/// window and write.
pub fn plugin_problems(lanes: &[PluginLane]) -> Option<String> {
    let failing: Vec<&PluginLane> = lanes.iter().filter(|l| l.problem().is_some()).collect();
    if failing.is_empty() {
        return None;
    }
    let mut what: Vec<&str> = Vec::new();
    for l in &failing {
        let w = match l.world {
            PluginWorld::Scorer => "score every window",
            PluginWorld::Metrics => "run on every metrics window",
            PluginWorld::Profile => "run on every profile write",
        };
        if !what.contains(&w) {
            what.push(w);
        }
    }
    let problems: Vec<String> = failing.iter().filter_map(|l| l.problem()).collect();
    Some(format!("the plugin did not {}: {}", what.join(" or "), problems.join("; ")))
}

/// One row per tenant with a scenario on this host, summing its scenarios' rows.
pub fn tenant_rows(rows: &[ScenarioStatusRow], pipeline: &Pipeline) -> Vec<TenantStatusRow> {
    pipeline
        .tenant_usage()
        .iter()
        .map(|(tenant, usage)| {
            let mine = rows.iter().filter(|r| *r.tenant_id == **tenant);
            let (events, late, duplicates) = mine.fold((0, 0, 0), |(e, l, d), r| (e + r.events, l + r.late, d + r.duplicates));
            TenantStatusRow {
                tenant_id: tenant.to_string(),
                events,
                late,
                duplicates,
                unknown_scenario: usage.unknown_scenario,
                over_quota: usage.over_quota.iter().map(|(q, n)| (q.kind(), *n)).collect(),
                state_bytes: usage.state_bytes,
                state_full: usage.state_full,
                watermark: pipeline.tenant_watermark(tenant),
            }
        })
        .collect()
}

/// Publishes per-tenant figures to the metrics recorder.
pub fn export_tenant_metrics(tenants: &[TenantStatusRow]) {
    for t in tenants {
        let tenant = t.tenant_id.clone();
        metrics::gauge!("rtscore_tenant_state_bytes", "tenant" => tenant.clone()).set(t.state_bytes as f64);
        metrics::gauge!("rtscore_tenant_state_full", "tenant" => tenant.clone()).set(if t.state_full { 1.0 } else { 0.0 });
        metrics::counter!("rtscore_tenant_events_unknown_scenario_total", "tenant" => tenant.clone()).absolute(t.unknown_scenario);
        for (reason, n) in &t.over_quota {
            metrics::counter!("rtscore_tenant_events_over_quota_total", "tenant" => tenant.clone(), "reason" => *reason).absolute(*n);
        }
    }
}

/// Publishes host-wide and per-scenario figures to the metrics recorder.
pub fn export_metrics(stats: &PipelineStats, rows: &[ScenarioStatusRow]) {
    metrics::counter!("rtscore_events_in_total").absolute(stats.events_in);
    metrics::counter!("rtscore_events_rejected_seen_total").absolute(stats.rejected);
    metrics::counter!("rtscore_events_late_total").absolute(stats.late);
    metrics::counter!("rtscore_events_duplicate_total").absolute(stats.duplicates);
    metrics::counter!("rtscore_events_unknown_scenario_total").absolute(stats.unknown_scenario);
    metrics::counter!("rtscore_events_filtered_total").absolute(stats.filtered);
    metrics::counter!("rtscore_events_cross_partition_total").absolute(stats.cross_partition);
    metrics::counter!("rtscore_events_over_quota_total").absolute(stats.over_quota);
    for r in rows {
        let labels = [("tenant", r.tenant_id.clone()), ("scenario", r.scenario_id.clone())];
        metrics::gauge!("rtscore_scenario_config_revision", &labels).set(r.config_revision.unwrap_or(-1) as f64);
        metrics::gauge!("rtscore_scenario_config_error", &labels).set(if r.last_error.is_some() { 1.0 } else { 0.0 });
        metrics::counter!("rtscore_scenario_events_total", &labels).absolute(r.events);
        metrics::counter!("rtscore_scenario_windows_emitted_total", &labels).absolute(r.windows_emitted);
        metrics::counter!("rtscore_scenario_events_late_total", &labels).absolute(r.late);
        metrics::counter!("rtscore_scenario_events_duplicate_total", &labels).absolute(r.duplicates);
        metrics::counter!("rtscore_scenario_events_over_quota_total", &labels).absolute(r.over_quota);
        metrics::gauge!("rtscore_scenario_pending_revision", &labels).set(r.pending_revision.unwrap_or(-1) as f64);
        if let Some(c) = r.shadow {
            metrics::gauge!("rtscore_shadow_overlap_at_k", &labels).set(c.overlap_at_k);
            metrics::gauge!("rtscore_shadow_rbo", &labels).set(c.rbo);
            metrics::gauge!("rtscore_shadow_drift_p90", &labels).set(c.drift_p90);
        }
        metrics::gauge!("rtscore_shadow_candidate_error", &labels).set(if r.candidate_error.is_some() { 1.0 } else { 0.0 });
    }
}

/// How much input waits and how far behind event time the host is (`/status` `backlog`,
/// `rtscore_source_*` and `rtscore_event_time_lag_seconds`): a backlog that grows is overload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BacklogStatus {
    /// Events read by the source and waiting for the pipeline (at most 8 batches).
    pub queued_events: u64,
    /// Messages on the assigned Kafka partitions not yet read (refreshed every 5 s).
    pub kafka_lag: Option<i64>,
    /// Events the generator is behind its `--generate-rate` schedule.
    pub generator_behind: u64,
    /// Wall time minus the watermark: how far behind event time the windows are closed.
    /// Includes `--allowed-lateness-ms`; large for replays of recorded events, negative when
    /// the generator runs event time faster than the clock.
    pub event_time_lag_ms: Option<i64>,
    /// A replayed file: bytes read of its size.
    pub input_read_bytes: Option<u64>,
    pub input_total_bytes: Option<u64>,
}

impl BacklogStatus {
    pub fn read(backlog: &crate::sources::Backlog, kafka_lag: Option<i64>, watermark: Option<i64>, wall_ms: i64) -> Self {
        Self {
            queued_events: backlog.queued_events(),
            kafka_lag,
            generator_behind: backlog.behind_schedule(),
            event_time_lag_ms: watermark.map(|w| wall_ms - w),
            input_read_bytes: backlog.input_progress().map(|p| p.0),
            input_total_bytes: backlog.input_progress().map(|p| p.1),
        }
    }

    pub fn export_metrics(&self) {
        metrics::gauge!("rtscore_source_queued_events").set(self.queued_events as f64);
        metrics::gauge!("rtscore_generator_behind_events").set(self.generator_behind as f64);
        if let Some(ms) = self.event_time_lag_ms {
            metrics::gauge!("rtscore_event_time_lag_seconds").set(ms as f64 / 1000.0);
        }
    }
}

/// What `/status` is made of besides the registry, the pipeline and the snapshots: fixed once
/// the source runs.
pub struct StatusPage {
    kafka_lag: Option<Arc<AtomicI64>>,
    backlog: Arc<Backlog>,
    /// `--repartition`: the shuffle stage's counters.
    shuffle: Option<Arc<crate::repartition::ShuffleStats>>,
}

impl StatusPage {
    pub fn new(kafka_lag: Option<Arc<AtomicI64>>, backlog: Arc<Backlog>) -> Self {
        Self { kafka_lag, backlog, shuffle: None }
    }

    /// Shows the shuffle stage's counters (`shuffle`) on `/status`.
    pub fn with_shuffle(mut self, stats: Option<Arc<crate::repartition::ShuffleStats>>) -> Self {
        self.shuffle = stats;
        self
    }

    /// Updates `/status` and returns its scenario and tenant rows.
    pub fn publish(
        &self,
        registry: &ScenarioRegistry,
        pipeline: &Pipeline,
        store_error: &Option<String>,
        snapshots: Option<&Snapshots>,
    ) -> (Vec<ScenarioStatusRow>, Vec<TenantStatusRow>, serde_json::Value) {
        let kafka_lag = self.kafka_lag.as_deref().map(|l| l.load(std::sync::atomic::Ordering::Relaxed)).filter(|l| *l >= 0);
        let rows = rows(registry, pipeline);
        let tenants = tenant_rows(&rows, pipeline);
        export_tenant_metrics(&tenants);
        let stats = pipeline.stats();
        let now = chrono::Utc::now().timestamp_millis();
        let watermark = pipeline.watermark(now);
        let backlog = BacklogStatus::read(&self.backlog, kafka_lag, watermark, now);
        backlog.export_metrics();
        let doc = serde_json::json!({
            "updated_at_ms": now,
            "scenarios": &rows,
            "tenants": &tenants,
            "config_store_error": store_error,
            "watermark": watermark,
            "backlog": backlog,
            "kafka_lag": kafka_lag,
            "partitions": snapshots.map(Snapshots::owned),
            "snapshot_age_seconds": snapshots.and_then(Snapshots::age_seconds),
            "shuffle": self.shuffle.as_deref().map(|s| s.status(now)),
            "stats": { "events_in": stats.events_in, "rejected": stats.rejected, "late": stats.late,
                       "unknown_scenario": stats.unknown_scenario, "duplicates": stats.duplicates, "filtered": stats.filtered,
                       "over_quota": stats.over_quota,
                       "cross_partition": stats.cross_partition },
        });
        (rows, tenants, doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(world: PluginWorld, state: &str, error: Option<&str>, emitted: u64) -> PluginLane {
        PluginLane {
            scenario: "t/s".into(),
            world,
            plugin: Some("under-test@0.0.0".into()),
            state: state.into(),
            error: error.map(str::to_string),
            events: (world == PluginWorld::Scorer).then_some(10),
            emitted,
            without_plugin: 0,
        }
    }

    #[test]
    fn a_plugin_test_fails_unless_the_plugin_scored_every_window() {
        let ok = lane(PluginWorld::Scorer, "active under-test@0.0.0", None, 3);
        assert_eq!(plugin_problems(std::slice::from_ref(&ok)), None);
        assert_eq!(plugin_problems(&[PluginLane { plugin: None, state: "builtin".into(), ..ok.clone() }]), None);
        let failed = plugin_problems(&[lane(PluginWorld::Scorer, "fallback under-test@0.0.0", Some("configure: bad params"), 3)]);
        assert!(
            failed
                .as_deref()
                .is_some_and(|w| w.starts_with("the plugin did not score every window: t/s: plugin under-test@0.0.0 is fallback")
                    && w.contains("bad params")),
            "{failed:?}"
        );
        let once = plugin_problems(&[lane(PluginWorld::Scorer, "active under-test@0.0.0", Some("trap in window 5"), 3)]);
        assert!(once.is_some(), "a window that fell back fails the test too");
        let nothing = plugin_problems(&[lane(PluginWorld::Scorer, "active under-test@0.0.0", None, 0)]);
        assert!(nothing.as_deref().is_some_and(|w| w.contains("no window was scored (10 events")), "{nothing:?}");
    }

    #[test]
    fn a_metrics_or_profile_plugin_test_fails_unless_it_ran_on_every_window_and_write() {
        for world in [PluginWorld::Metrics, PluginWorld::Profile] {
            let ok = lane(world, "active under-test@0.0.0", None, 4);
            assert_eq!(plugin_problems(std::slice::from_ref(&ok)), None, "{world}");
            let quarantined =
                lane(world, "quarantined under-test@0.0.0: plugin rejected its params: nope", Some("plugin rejected its params: nope"), 4);
            let why = plugin_problems(&[quarantined]).unwrap_or_default();
            let kind = world.name();
            assert!(why.contains(&format!("t/s: {kind} plugin under-test@0.0.0 is quarantined")) && why.contains("nope"), "{why}");
            assert_eq!(why.matches("nope").count(), 1, "the reason is said once: {why}");
            // Skipped without an error (a profile user's input was incomplete): still a failure.
            let skipped = plugin_problems(&[PluginLane { without_plugin: 1, ..ok.clone() }]).unwrap_or_default();
            assert!(skipped.contains("(1 of 4 "), "{skipped}");
            let nothing = plugin_problems(&[lane(world, "active under-test@0.0.0", None, 0)]).unwrap_or_default();
            assert!(
                nothing.contains(if world == PluginWorld::Metrics { "no metrics window was emitted" } else { "no profile was written" }),
                "{nothing}"
            );
        }
        let both =
            plugin_problems(&[lane(PluginWorld::Metrics, "fallback x", Some("x"), 1), lane(PluginWorld::Profile, "active", None, 0)]);
        assert!(both.is_some_and(|w| w.starts_with("the plugin did not run on every metrics window or run on every profile write: ")));
    }
}
