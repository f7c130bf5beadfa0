//! Snapshots live in Redis, one hash per input partition:
//! `rtscore:snapshot:{group}:{topic}:{partition}` with `next_offset`, `state` (the encoded
//! [`PartitionState`]) and `written_at`. These keys are internal to rtscore, not part of the
//! DESIGN §6 output contract, and carry no TTL: they are the state of a running group.
//!
//! A write never replaces a snapshot of a later offset. Several hosts may write the same
//! partition around a rebalance; each snapshot is a valid state for its offset, and since
//! offsets are committed only after the snapshot that covers them is stored, the stored
//! snapshot's offset is never behind the committed one.

#[cfg(feature = "redis")]
use anyhow::Context;

use crate::config::redis_keys as keys;
use crate::pipeline::PartitionState;
#[cfg(feature = "redis")]
use crate::pipeline::{PartitionStateV1, PartitionStateV2};
use crate::sinks::redis::RedisSink;
#[cfg(feature = "redis")]
use crate::snapshot::codec;

/// Writes each (key, offset, state) whose stored offset is not later; returns how many.
#[cfg(feature = "redis")]
const SAVE_SCRIPT: &str = r#"
local written = 0
for i, key in ipairs(KEYS) do
  local offset = tonumber(ARGV[2 * i - 1])
  local stored = tonumber(redis.call('HGET', key, 'next_offset'))
  if stored == nil or stored <= offset then
    redis.call('HSET', key, 'next_offset', ARGV[2 * i - 1], 'state', ARGV[2 * i], 'written_at', ARGV[#ARGV])
    written = written + 1
  end
end
return written
"#;

/// Where one consumer group's snapshots of one topic live.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    group: String,
    topic: String,
}

/// What a save wrote.
#[derive(Debug, Clone, Copy, Default)]
pub struct Saved {
    pub partitions: usize,
    pub bytes: usize,
}

impl SnapshotStore {
    pub fn new(group: &str, topic: &str) -> Self {
        Self { group: group.to_string(), topic: topic.to_string() }
    }

    pub fn key(&self, partition: i32) -> String {
        keys::snapshot(&self.group, &self.topic, partition)
    }

    #[cfg(not(feature = "redis"))]
    pub async fn load(&self, redis: &mut RedisSink, _partitions: &[i32]) -> anyhow::Result<Vec<PartitionState>> {
        match *redis {}
    }

    /// The stored snapshots of `partitions` (those that have one). A snapshot this build cannot
    /// read is an error: continuing without it would lose or double-count events.
    #[cfg(feature = "redis")]
    pub async fn load(&self, redis: &mut RedisSink, partitions: &[i32]) -> anyhow::Result<Vec<PartitionState>> {
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for &p in partitions {
            pipe.hget(self.key(p), "state");
        }
        let blobs: Vec<Option<Vec<u8>>> = redis.query(&pipe, "load snapshots").await?;
        let mut states = Vec::new();
        for (&p, blob) in partitions.iter().zip(blobs) {
            let Some(blob) = blob else { continue };
            let state: PartitionState = codec::decode_upgrading::<_, PartitionStateV1, PartitionStateV2>(&blob).with_context(|| {
                format!(
                    "snapshot {} cannot be read; run a host version that can, or delete the key to start this partition afresh",
                    self.key(p)
                )
            })?;
            anyhow::ensure!(state.partition == p, "snapshot {} holds partition {}", self.key(p), state.partition);
            states.push(state);
        }
        Ok(states)
    }

    #[cfg(not(feature = "redis"))]
    pub async fn save(&self, redis: &mut RedisSink, _states: &[PartitionState], _now_ms: i64) -> anyhow::Result<Saved> {
        match *redis {}
    }

    /// Encodes and stores `states` in one atomic step (all or none).
    #[cfg(feature = "redis")]
    pub async fn save(&self, redis: &mut RedisSink, states: &[PartitionState], now_ms: i64) -> anyhow::Result<Saved> {
        if states.is_empty() {
            return Ok(Saved::default());
        }
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(SAVE_SCRIPT).arg(states.len());
        for s in states {
            cmd.arg(self.key(s.partition));
        }
        let mut bytes = 0;
        for s in states {
            let blob = codec::encode(s)?;
            bytes += blob.len();
            cmd.arg(s.next_offset).arg(blob);
        }
        cmd.arg(now_ms);
        let mut pipe = redis::pipe();
        pipe.add_command(cmd);
        let (written,): (usize,) = redis.query(&pipe, "write snapshots").await?;
        if written < states.len() {
            tracing::info!(
                skipped = states.len() - written,
                "a later snapshot of a partition is stored already (another host owns it now)"
            );
        }
        Ok(Saved { partitions: written, bytes })
    }
}
