//! What a host reports about itself, beside the results it emits: one row per scenario and
//! per tenant (the Redis status key, `/status`, the console, the metrics) and the host-wide
//! event counters. Plain data; `runtime::status` builds the rows from the registry and the
//! pipeline.

use serde::Serialize;

use super::ShadowComparison;
use crate::config::ScenarioKey;

/// Host-wide event counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipelineStats {
    pub events_in: u64,
    pub rejected: u64,
    /// Events of scenarios outside this instance's `--tenant-id/--scenario-id`, or dedicated to
    /// another instance.
    pub filtered: u64,
    /// Events of scenarios with no document, or an inactive or disabled one.
    pub unknown_scenario: u64,
    pub late: u64,
    pub duplicates: u64,
    /// Events of a scenario that arrived on another partition than its earlier events. Nonzero
    /// means the topic is not keyed by scenario: several hosts in one group would each see part
    /// of such a scenario (docs/operations.md, "Running a fleet").
    pub cross_partition: u64,
    /// Events refused by a memory quota (`quota_*` reasons).
    pub over_quota: u64,
    /// Repartitioning: progress markers that did not decode (skipped; not events).
    pub bad_markers: u64,
}

/// One scenario on this host: the config and plugin it applies, rollout state, and counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScenarioStatusRow {
    pub tenant_id: String,
    pub scenario_id: String,
    /// Revision of the config in force, if any valid document was ever seen.
    pub config_revision: Option<i64>,
    pub active: bool,
    /// `name@version`, or `builtin`.
    pub plugin: String,
    pub plugin_state: String,
    /// The config error if the latest document was refused, else the last plugin failure.
    pub last_error: Option<String>,
    pub plugin_error: Option<String>,
    pub last_window_end: Option<i64>,
    /// Wall time the applied config took effect here.
    pub applied_at: Option<i64>,
    /// From the document's `updated_at` to `applied_at`, when the store records it.
    pub config_propagation_ms: Option<i64>,
    pub events: u64,
    pub late: u64,
    pub duplicates: u64,
    /// Events a memory quota of the tenant refused (dead-lettered with a `quota_*` reason).
    pub over_quota: u64,
    pub windows_emitted: u64,
    /// The tenant's watermark on this host (event time): `scenario set|patch|promote|rollback` choose the
    /// effective window end past it.
    pub watermark: Option<i64>,
    /// A stored revision waiting for its effective window end, and that end.
    pub pending_revision: Option<i64>,
    pub effective_from_window_end: Option<i64>,
    /// The pending revision's plugin scorer, loaded ahead when it references another module.
    pub pending_plugin_state: Option<String>,
    /// The shadow candidate: `name@version` or `builtin`, its scorer state, why it was refused.
    pub candidate: Option<String>,
    pub candidate_state: Option<String>,
    pub candidate_error: Option<String>,
    /// The last shadowed window and how its candidate list compared with the live one.
    pub shadow_window_end: Option<i64>,
    pub shadow: Option<ShadowComparison>,
    /// Set for an hour after the scenario was removed (its document deleted): when, and why.
    pub removed_at: Option<i64>,
    pub removed_reason: Option<String>,
    /// The metrics plugin (`metrics.plugin`): `name@version`, its state (as `plugin_state`),
    /// and its last failure (its metrics were then left out of the window).
    pub metrics_plugin: Option<String>,
    pub metrics_plugin_state: Option<String>,
    pub metrics_plugin_error: Option<String>,
    /// The profile plugin (`user_profile.plugin`): `name@version`, its state, and its last
    /// failure (the built-in interests were then written for that batch of users).
    pub profile_plugin: Option<String>,
    pub profile_plugin_state: Option<String>,
    pub profile_plugin_error: Option<String>,
    /// The metrics and profile jobs' waiting and candidate plugins.
    #[serde(flatten)]
    pub job_lanes: JobLaneStatus,
}

/// A metrics or profile plugin a revision waits to switch to, and a candidate in shadow:
/// `pending` is `name@version from <effective ms>: <state>`,
/// the candidate's reference, state and last failure.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JobLaneStatus {
    pub metrics_plugin_pending: Option<String>,
    pub metrics_candidate: Option<String>,
    pub metrics_candidate_state: Option<String>,
    pub metrics_candidate_error: Option<String>,
    pub profile_plugin_pending: Option<String>,
    pub profile_candidate: Option<String>,
    pub profile_candidate_state: Option<String>,
    pub profile_candidate_error: Option<String>,
    /// The profile candidate's mean overlap of the top 10 interests with the written ones, over
    /// the last flush's compared users, and the users compared since it started.
    pub profile_shadow_overlap_at_k: Option<f64>,
    pub profile_shadow_users: Option<u64>,
}

impl ScenarioStatusRow {
    pub fn key(&self) -> ScenarioKey {
        ScenarioKey::new(&self.tenant_id, &self.scenario_id)
    }

    /// Fields of the Redis status hash (DESIGN §6); `written_at_ms` is the heartbeat.
    pub fn redis_fields(&self, written_at_ms: i64) -> Vec<(&'static str, String)> {
        vec![
            ("config_revision", self.config_revision.map(|r| r.to_string()).unwrap_or_default()),
            ("active", self.active.to_string()),
            ("plugin", self.plugin.clone()),
            ("plugin_state", self.plugin_state.clone()),
            ("last_error", self.last_error.clone().unwrap_or_default()),
            ("plugin_error", self.plugin_error.clone().unwrap_or_default()),
            ("last_window_end", self.last_window_end.map(|e| e.to_string()).unwrap_or_default()),
            ("events", self.events.to_string()),
            ("late", self.late.to_string()),
            ("over_quota", self.over_quota.to_string()),
            ("applied_at", self.applied_at.map(|a| a.to_string()).unwrap_or_default()),
            ("updated_at", written_at_ms.to_string()),
            ("watermark", opt(self.watermark)),
            ("pending_revision", opt(self.pending_revision)),
            ("effective_from_window_end", opt(self.effective_from_window_end)),
            ("pending_plugin_state", self.pending_plugin_state.clone().unwrap_or_default()),
            ("candidate", self.candidate.clone().unwrap_or_default()),
            ("candidate_state", self.candidate_state.clone().unwrap_or_default()),
            ("candidate_error", self.candidate_error.clone().unwrap_or_default()),
            ("shadow_window_end", opt(self.shadow_window_end)),
            ("shadow_overlap_at_k", opt(self.shadow.map(|c| c.overlap_at_k))),
            ("shadow_rbo", opt(self.shadow.map(|c| c.rbo))),
            ("shadow_drift_p90", opt(self.shadow.map(|c| c.drift_p90))),
            ("removed_at", opt(self.removed_at)),
            ("removed_reason", self.removed_reason.clone().unwrap_or_default()),
            ("metrics_plugin", self.metrics_plugin.clone().unwrap_or_default()),
            ("metrics_plugin_state", self.metrics_plugin_state.clone().unwrap_or_default()),
            ("metrics_plugin_error", self.metrics_plugin_error.clone().unwrap_or_default()),
            ("profile_plugin", self.profile_plugin.clone().unwrap_or_default()),
            ("profile_plugin_state", self.profile_plugin_state.clone().unwrap_or_default()),
            ("profile_plugin_error", self.profile_plugin_error.clone().unwrap_or_default()),
            ("metrics_plugin_pending", self.job_lanes.metrics_plugin_pending.clone().unwrap_or_default()),
            ("metrics_candidate", self.job_lanes.metrics_candidate.clone().unwrap_or_default()),
            ("metrics_candidate_state", self.job_lanes.metrics_candidate_state.clone().unwrap_or_default()),
            ("metrics_candidate_error", self.job_lanes.metrics_candidate_error.clone().unwrap_or_default()),
            ("profile_plugin_pending", self.job_lanes.profile_plugin_pending.clone().unwrap_or_default()),
            ("profile_candidate", self.job_lanes.profile_candidate.clone().unwrap_or_default()),
            ("profile_candidate_state", self.job_lanes.profile_candidate_state.clone().unwrap_or_default()),
            ("profile_candidate_error", self.job_lanes.profile_candidate_error.clone().unwrap_or_default()),
            ("profile_shadow_overlap_at_k", opt(self.job_lanes.profile_shadow_overlap_at_k)),
            ("profile_shadow_users", opt(self.job_lanes.profile_shadow_users)),
        ]
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

/// One tenant's figures on this host (`/status` `tenants`, `rtscore_tenant_*`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TenantStatusRow {
    pub tenant_id: String,
    pub events: u64,
    pub late: u64,
    pub duplicates: u64,
    pub unknown_scenario: u64,
    /// Refusals by quota reason (`quota_items`, `quota_event_ids`, `quota_users`,
    /// `quota_state_bytes`).
    pub over_quota: std::collections::BTreeMap<&'static str, u64>,
    /// Window and profile state held, at the last check (every 2 s), and whether it is over
    /// `quotas.max_state_bytes`.
    pub state_bytes: usize,
    pub state_full: bool,
    pub watermark: Option<i64>,
}
