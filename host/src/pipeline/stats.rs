//! Counters the pipeline keeps per scenario for the status key and the metrics endpoint (the
//! host-wide ones, `output::status::PipelineStats`, are read by the sinks too).

/// Where a job put an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// The job runs no such scenario.
    NotHere,
    Counted,
    Late,
    Duplicate,
    OverQuota(crate::event::QuotaKind, usize),
}

/// Per-scenario counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScenarioCounters {
    pub events: u64,
    pub late: u64,
    pub duplicates: u64,
    pub windows_emitted: u64,
    pub plugin_failures: u64,
    /// Events refused by a memory quota (`quota_*` reasons).
    pub over_quota: u64,
}
