//! Counters the pipeline keeps for the status key, the terminal view and the metrics endpoint.

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

/// Host-wide event counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipelineStats {
    pub events_in: u64,
    pub rejected: u64,
    /// Events of scenarios outside this instance's `--tenant-id/--scenario-id`.
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
