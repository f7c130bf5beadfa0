//! The synchronous core of the runtime: raw records in, validated events routed to their
//! scenario's jobs, results out. No I/O and no async here, so the same code runs under the
//! file replay, the Kafka runtime, unit tests and benchmarks.

mod hot_job;
mod stats;

pub use hot_job::HotScoreJob;
pub use stats::{PipelineStats, ScenarioCounters};

use std::sync::Arc;

use crate::config::{ScenarioConfig, ScenarioKey};
use crate::event::{RejectReason, parse_event};
use crate::output::Output;
use crate::sources::RecordBatch;

/// Which computations a host runs (`--job`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
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
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            jobs: JobSelection::ItemHotScore,
            filter: ScenarioFilter::default(),
            allowed_lateness_ms: 10_000,
        }
    }
}

/// Parses, routes and computes. Owns every job's state.
pub struct Pipeline {
    opts: PipelineOptions,
    hot: HotScoreJob,
    stats: PipelineStats,
}

impl Pipeline {
    pub fn new(opts: PipelineOptions) -> Self {
        let hot = HotScoreJob::new(opts.allowed_lateness_ms);
        Self {
            opts,
            hot,
            stats: PipelineStats::default(),
        }
    }

    /// Installs or replaces a scenario's config (or removes it when `None`).
    pub fn apply_config(&mut self, key: &ScenarioKey, cfg: Option<Arc<ScenarioConfig>>) {
        let cfg = cfg.filter(|c| self.opts.filter.admits(&c.key.tenant_id, &c.key.scenario_id));
        self.hot.apply_config(key, cfg.filter(|_| self.opts.jobs.hot_score()));
    }

    pub fn hot_job_mut(&mut self) -> &mut HotScoreJob {
        &mut self.hot
    }

    pub fn hot_job(&self) -> &HotScoreJob {
        &self.hot
    }

    /// Processes a batch of raw records; due windows go to `out`, rejects to `rejects`.
    pub fn process(&mut self, batch: &RecordBatch, out: &mut Vec<Output>, rejects: &mut Vec<Reject>) {
        for (index, raw) in batch.iter().enumerate() {
            self.stats.events_in += 1;
            let ev = match parse_event(raw) {
                Ok(ev) => ev,
                Err(reason) => {
                    self.stats.rejected += 1;
                    rejects.push(Reject { index, reason });
                    continue;
                }
            };
            if !self.opts.filter.admits(&ev.tenant_id, &ev.scenario_id) {
                self.stats.filtered += 1;
                continue;
            }
            if self.opts.jobs.hot_score() {
                self.hot.on_event(&ev, &mut self.stats);
            }
        }
        self.hot.emit_due(false, out);
    }

    /// End of a finite input: emits every window that holds events (DESIGN §4).
    pub fn finish(&mut self, out: &mut Vec<Output>) {
        self.hot.emit_due(true, out);
    }

    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }
}
