//! State snapshots: the versioned byte format ([`codec`]). A snapshot is one input
//! partition's stored state (`pipeline::PartitionState`); the runtime stores them in Redis
//! (`runtime::snapshot_store`) after the outputs they cover and commits Kafka offsets only
//! after that.

pub mod codec;

pub use codec::{FORMAT_VERSION, SnapshotError};
