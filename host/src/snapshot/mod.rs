//! State snapshots: the versioned byte format ([`codec`]) and where snapshots live ([`store`]).
//! A snapshot is one input partition's [`crate::pipeline::PartitionState`]; the runtime writes
//! them after the outputs they cover and commits Kafka offsets only after that.

pub mod codec;
pub mod store;

pub use codec::{FORMAT_VERSION, SnapshotError};
