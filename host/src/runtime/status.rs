//! What this host applies, per scenario: the source of the status key
//! (`rt:{tenant}:{scenario}:status`), `/status`, and the per-scenario metrics.

use serde::Serialize;

use crate::config::{ScenarioKey, ScenarioRegistry};
use crate::pipeline::{Pipeline, PipelineStats};

#[derive(Debug, Clone, PartialEq, Serialize)]
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
    pub windows_emitted: u64,
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
            ("applied_at", self.applied_at.map(|a| a.to_string()).unwrap_or_default()),
            ("updated_at", written_at_ms.to_string()),
        ]
    }
}

/// One row per scenario the registry knows.
pub fn snapshot(registry: &ScenarioRegistry, pipeline: &Pipeline) -> Vec<ScenarioStatusRow> {
    registry
        .entries()
        .map(|(key, entry)| {
            let hot = pipeline.hot_job().scenario(key);
            let counters = hot.map(|h| h.counters.clone()).unwrap_or_default();
            let plugin_ref = entry.applied.as_ref().and_then(|c| c.hot_score.plugin.as_ref());
            ScenarioStatusRow {
                tenant_id: key.tenant_id.to_string(),
                scenario_id: key.scenario_id.to_string(),
                config_revision: entry.applied.as_ref().map(|c| c.revision),
                active: hot.is_some(),
                plugin: plugin_ref.map_or_else(|| "builtin".to_string(), |p| p.label()),
                plugin_state: hot.map_or_else(|| "none".to_string(), |h| h.plugin_state()),
                last_error: entry.last_error.clone().or_else(|| hot.and_then(|h| h.last_plugin_error.clone())),
                plugin_error: hot.and_then(|h| h.last_plugin_error.clone()),
                last_window_end: hot.and_then(|h| h.last_window_end),
                applied_at: entry.applied_at_ms,
                config_propagation_ms: entry.propagation_ms,
                events: counters.events,
                late: counters.late,
                duplicates: counters.duplicates,
                windows_emitted: counters.windows_emitted,
            }
        })
        .collect()
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
    for r in rows {
        let labels = [("tenant", r.tenant_id.clone()), ("scenario", r.scenario_id.clone())];
        metrics::gauge!("rtscore_scenario_config_revision", &labels).set(r.config_revision.unwrap_or(-1) as f64);
        metrics::gauge!("rtscore_scenario_config_error", &labels).set(if r.last_error.is_some() { 1.0 } else { 0.0 });
        metrics::counter!("rtscore_scenario_events_total", &labels).absolute(r.events);
        metrics::counter!("rtscore_scenario_windows_emitted_total", &labels).absolute(r.windows_emitted);
        metrics::counter!("rtscore_scenario_events_late_total", &labels).absolute(r.late);
    }
}
