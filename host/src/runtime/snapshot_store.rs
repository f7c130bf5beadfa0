//! Snapshots live in Redis, one manifest hash per input partition,
//! `rtscore:snapshot:{group}:{topic}:{partition}` with `next_offset`, `version`, `chunks` and
//! `written_at`, and the encoded [`PartitionState`] in `chunks` string keys of at most
//! [`CHUNK_BYTES`] each (`rtscore:snapshot-chunk:...:{version}:{i}`). These keys are internal to
//! rtscore, not part of the DESIGN §6 output contract, and carry no TTL: they are the state of a
//! running group. Chunks keep every Redis command small whatever the state's size (a value may
//! not exceed 512 MB, and one huge command stalls Redis for every client); hosts written by an
//! older version kept the whole state in the manifest's `state` field, which is still read.
//!
//! A save writes its chunks under a version of its own, then flips the manifest in one script
//! that also deletes the chunks it replaced; readers only ever follow a manifest, so they see a
//! whole old or a whole new state. A write never replaces a snapshot of a later offset (its
//! chunks are deleted instead). Several hosts may write the same partition around a rebalance;
//! each snapshot is a valid state for its offset, and since offsets are committed only after the
//! snapshot that covers them is stored, the stored snapshot's offset is never behind the
//! committed one.

#[cfg(feature = "redis")]
use anyhow::Context;

use crate::config::redis_keys as keys;
use crate::pipeline::PartitionState;
#[cfg(feature = "redis")]
use crate::pipeline::{PartitionStateV1, PartitionStateV2, PartitionStateV3};
use crate::sinks::redis::RedisSink;
#[cfg(feature = "redis")]
use crate::snapshot::codec;

/// Most bytes per chunk key.
#[cfg(feature = "redis")]
pub const CHUNK_BYTES: usize = 8 << 20;

/// Flips manifests to new versions whose chunks are stored, each unless its stored offset is
/// later, all in one step (a consistent cut stays one: a scenario whose events span partitions
/// restores to one point in the stream); deletes the chunks that lost (a replaced version's, or
/// the new ones). KEYS: the manifests. ARGV per key: next_offset, version, chunks, chunk key
/// prefix (`...:{p}:`); then written_at. Returns how many were written. Chunk keys are derived
/// here, so the script runs on a single Redis (as the host's sink does), not on a cluster.
#[cfg(feature = "redis")]
const FLIP_SCRIPT: &str = r#"
local written = 0
for i, key in ipairs(KEYS) do
  local offset, version, chunks, prefix = tonumber(ARGV[4 * i - 3]), ARGV[4 * i - 2], ARGV[4 * i - 1], ARGV[4 * i]
  local function drop(v, n)
    for c = 0, (tonumber(n) or 0) - 1 do redis.call('DEL', prefix .. v .. ':' .. c) end
  end
  local stored = tonumber(redis.call('HGET', key, 'next_offset'))
  if stored ~= nil and stored > offset then
    drop(version, chunks)
  else
    local old = redis.call('HMGET', key, 'version', 'chunks')
    if old[1] and old[1] ~= version then drop(old[1], old[2]) end
    redis.call('HDEL', key, 'state')
    redis.call('HSET', key, 'next_offset', offset, 'version', version, 'chunks', chunks, 'written_at', ARGV[#ARGV])
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
    chunk_bytes: usize,
}

/// What a save wrote.
#[derive(Debug, Clone, Copy, Default)]
pub struct Saved {
    pub partitions: usize,
    pub bytes: usize,
    pub chunks: usize,
}

/// A partition's state, encoded for storage (off the pipeline thread: see `runtime::snapshots`).
pub struct Encoded {
    pub partition: i32,
    pub next_offset: i64,
    pub blob: Vec<u8>,
}

impl Encoded {
    pub fn of(state: &PartitionState) -> anyhow::Result<Self> {
        #[cfg(feature = "redis")]
        let blob = encode_state(state)?;
        #[cfg(not(feature = "redis"))]
        let blob = Vec::new();
        Ok(Self { partition: state.partition, next_offset: state.next_offset, blob })
    }
}

/// A partition state read without repartitioning has no source lanes: it is written in
/// format 3 as before (a host of the previous version can still read it); one with source
/// lanes needs format 4.
#[cfg(feature = "redis")]
fn encode_state(state: &PartitionState) -> Result<Vec<u8>, crate::snapshot::SnapshotError> {
    /// Format 3's shape, borrowed (bincode writes a slice as it writes a `Vec`): no copy of a
    /// large state just to drop one empty field.
    #[derive(serde::Serialize)]
    struct V3<'a> {
        partition: i32,
        next_offset: i64,
        max_event_ts: Option<i64>,
        scenarios: &'a [crate::pipeline::ScenarioState],
        tenant_max_ts: &'a [(String, i64)],
    }
    if !state.sources.is_empty() {
        return codec::encode(state);
    }
    let v3 = V3 {
        partition: state.partition,
        next_offset: state.next_offset,
        max_event_ts: state.max_event_ts,
        scenarios: &state.scenarios,
        tenant_max_ts: &state.tenant_max_ts,
    };
    codec::encode_as(3, &v3)
}

impl SnapshotStore {
    pub fn new(group: &str, topic: &str) -> Self {
        #[cfg(feature = "redis")]
        let chunk_bytes = CHUNK_BYTES;
        #[cfg(not(feature = "redis"))]
        let chunk_bytes = 0;
        Self { group: group.to_string(), topic: topic.to_string(), chunk_bytes }
    }

    /// Chunks of at most `n` bytes (at least 1) instead of [`CHUNK_BYTES`]: tests exercise many
    /// chunks with small states.
    pub fn with_chunk_bytes(mut self, n: usize) -> Self {
        self.chunk_bytes = n.max(1);
        self
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
        let mut states = Vec::new();
        for &p in partitions {
            let Some(blob) = self.load_blob(redis, p).await? else { continue };
            let state: PartitionState = codec::decode_upgrading::<_, PartitionStateV1, PartitionStateV2, PartitionStateV3>(&blob)
                .with_context(|| {
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

    /// A partition's encoded state: from its chunks, or the manifest's own `state` field as
    /// older hosts wrote it.
    #[cfg(feature = "redis")]
    pub async fn load_blob(&self, redis: &mut RedisSink, p: i32) -> anyhow::Result<Option<Vec<u8>>> {
        let mut pipe = redis::pipe();
        pipe.cmd("HMGET").arg(self.key(p)).arg("state").arg("version").arg("chunks");
        let ((state, version, chunks),): (Manifest,) = redis.query(&pipe, "load snapshot").await?;
        if let Some(state) = state {
            return Ok(Some(state));
        }
        let (Some(version), Some(chunks)) = (version, chunks) else { return Ok(None) };
        let mut pipe = redis::pipe();
        for i in 0..chunks {
            pipe.get(keys::snapshot_chunk(&self.group, &self.topic, p, &version, i));
        }
        let parts: Vec<Option<Vec<u8>>> = redis.query(&pipe, "load snapshot chunks").await?;
        let mut blob = Vec::with_capacity(parts.iter().flatten().map(Vec::len).sum());
        for (i, part) in parts.into_iter().enumerate() {
            let part = part.with_context(|| {
                format!("snapshot {} lost chunk {i} of {chunks}; delete the key to start this partition afresh", self.key(p))
            })?;
            blob.extend_from_slice(&part);
        }
        Ok(Some(blob))
    }

    #[cfg(not(feature = "redis"))]
    pub async fn save(&self, redis: &mut RedisSink, _states: &[Encoded], _now_ms: i64) -> anyhow::Result<Saved> {
        match *redis {}
    }

    /// Stores encoded states: every partition's chunks, then every manifest flipped to them in
    /// one step (all or none; a partition whose later snapshot is stored meanwhile keeps it).
    #[cfg(feature = "redis")]
    pub async fn save(&self, redis: &mut RedisSink, states: &[Encoded], now_ms: i64) -> anyhow::Result<Saved> {
        if states.is_empty() {
            return Ok(Saved::default());
        }
        let mut flip = redis::cmd("EVAL");
        flip.arg(FLIP_SCRIPT).arg(states.len());
        for s in states {
            flip.arg(self.key(s.partition));
        }
        let (mut bytes, mut chunk_count) = (0, 0);
        for s in states {
            // Unique per save, so two hosts saving one partition never mix their chunks.
            let version = format!("{}-{}-{}", s.next_offset, std::process::id(), SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
            let chunks: Vec<&[u8]> = s.blob.chunks(self.chunk_bytes).collect();
            // A few chunks per round trip: every command stays small, and Redis serves other
            // clients between them.
            for (k, group) in chunks.chunks(4).enumerate() {
                let mut pipe = redis::pipe();
                for (j, c) in group.iter().enumerate() {
                    pipe.set(keys::snapshot_chunk(&self.group, &self.topic, s.partition, &version, k * 4 + j), *c).ignore();
                }
                redis.query::<()>(&pipe, "write snapshot chunks").await?;
            }
            flip.arg(s.next_offset).arg(&version).arg(chunks.len()).arg(self.chunk_prefix(s.partition));
            (bytes, chunk_count) = (bytes + s.blob.len(), chunk_count + chunks.len());
        }
        flip.arg(now_ms);
        let mut pipe = redis::pipe();
        pipe.add_command(flip);
        let (written,): (usize,) = redis.query(&pipe, "write snapshots").await?;
        if written < states.len() {
            tracing::info!(
                skipped = states.len() - written,
                "a later snapshot of a partition is stored already (another host owns it now)"
            );
        }
        Ok(Saved { partitions: written, bytes, chunks: chunk_count })
    }
}

/// Deletes manifests and the chunks they point to. KEYS: the manifests; ARGV: each one's chunk
/// key prefix.
#[cfg(feature = "redis")]
const DELETE_SCRIPT: &str = r#"
for i, key in ipairs(KEYS) do
  local m = redis.call('HMGET', key, 'version', 'chunks')
  if m[1] then
    for c = 0, (tonumber(m[2]) or 0) - 1 do redis.call('DEL', ARGV[i] .. m[1] .. ':' .. c) end
  end
  redis.call('DEL', key)
end
return #KEYS
"#;

/// A manifest's `state` (older hosts), `version` and `chunks`.
#[cfg(feature = "redis")]
type Manifest = (Option<Vec<u8>>, Option<String>, Option<usize>);

#[cfg(feature = "redis")]
impl SnapshotStore {
    /// `...:{partition}:`, to which a chunk key adds `{version}:{i}`.
    fn chunk_prefix(&self, partition: i32) -> String {
        let key = keys::snapshot_chunk(&self.group, &self.topic, partition, "", 0);
        key.strip_suffix(":0").unwrap_or(&key).to_string()
    }

    /// Deletes the snapshots of `partitions` with their chunks: those partitions start afresh
    /// at their committed offsets.
    pub async fn delete(&self, redis: &mut RedisSink, partitions: &[i32]) -> anyhow::Result<()> {
        if partitions.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(DELETE_SCRIPT).arg(partitions.len());
        for &p in partitions {
            cmd.arg(self.key(p));
        }
        for &p in partitions {
            cmd.arg(self.chunk_prefix(p));
        }
        let mut pipe = redis::pipe();
        pipe.add_command(cmd).ignore();
        redis.query::<()>(&pipe, "delete snapshots").await
    }
}

/// Saves by this process, for unique chunk versions.
#[cfg(feature = "redis")]
static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[cfg(all(test, feature = "redis"))]
mod tests {
    use super::*;
    use crate::pipeline::SourceLaneState;

    fn state(sources: Vec<SourceLaneState>) -> PartitionState {
        PartitionState {
            partition: 2,
            next_offset: 77,
            max_event_ts: Some(1_767_225_600_000),
            scenarios: Vec::new(),
            tenant_max_ts: vec![("t".into(), 1_767_225_600_000)],
            sources,
        }
    }

    #[test]
    fn a_state_without_source_lanes_is_written_in_format_3_byte_for_byte() {
        let s = state(Vec::new());
        let v3 = PartitionStateV3 {
            partition: s.partition,
            next_offset: s.next_offset,
            max_event_ts: s.max_event_ts,
            scenarios: Vec::new(),
            tenant_max_ts: s.tenant_max_ts.clone(),
        };
        let bytes = encode_state(&s).unwrap();
        assert_eq!(bytes, codec::encode_as(3, &v3).unwrap(), "what a format 3 host wrote");
        let read: PartitionState = codec::decode_upgrading::<_, PartitionStateV1, PartitionStateV2, PartitionStateV3>(&bytes).unwrap();
        assert_eq!((read.next_offset, read.tenant_max_ts, read.sources.len()), (77, s.tenant_max_ts, 0));
    }

    #[test]
    fn a_repartitioned_state_is_format_4_and_keeps_its_lanes() {
        let lanes = vec![
            SourceLaneState { source: 0, max_event_ts: Some(5), tenant_max_ts: vec![("t".into(), 5)] },
            SourceLaneState { source: 1, max_event_ts: None, tenant_max_ts: Vec::new() },
        ];
        let bytes = encode_state(&state(lanes.clone())).unwrap();
        assert_eq!(codec::version(&bytes).unwrap(), 4);
        let read: PartitionState = codec::decode_upgrading::<_, PartitionStateV1, PartitionStateV2, PartitionStateV3>(&bytes).unwrap();
        assert_eq!(read.sources, lanes);
    }
}
