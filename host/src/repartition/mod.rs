//! The pure half of `--repartition` (docs/operations.md, "Running a fleet"): a fleet reads a
//! topic keyed any way (by user, or not at all) through an internal topic keyed by scenario.
//! A shuffle stage forwards each event unchanged to the internal partition its
//! `(tenant_id, scenario_id)` hashes to ([`route`]), tagged with its source partition, and
//! sends every internal partition progress markers ([`marker`]) so the pipeline's event time
//! can be the minimum over *source* partitions. [`progress`] is what the shuffle tracks between
//! transactions, [`stats`] what it has done (`/status`). No I/O here: the Kafka side is `sources::shuffle`.

pub mod marker;
pub mod progress;
pub mod route;
pub mod stats;

pub use marker::{Marker, MarkerError, SourceTag, TenantProgress};
pub use progress::ShuffleProgress;
pub use route::{internal_topic, partition_for_bytes, partition_for_scenario, routing_key, shuffle_group};
pub use stats::{ShuffleStats, ShuffleStatus};

/// A repartitioning run's two topics: the source topic's partition count and the internal
/// topic's (what the routing hash is taken modulo).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topology {
    pub sources: i32,
    pub partitions: i32,
}
