//! Snapshot-and-commit for the Kafka source: which partitions this host owns, how far each has
//! been processed, restoring a partition's state when it is assigned and storing it when it is
//! revoked, every `--snapshot-interval-ms`, and at shutdown. The order is always: outputs
//! written, then the snapshot stored, then the offsets committed, so a kill at any point
//! resumes from a state whose events are exactly the ones before its offsets.
//!
//! Only the copy of the state (the consistent cut) is taken on the pipeline's loop; encoding
//! and storing it run in the background while events keep flowing, and the offsets of that cut
//! are committed when its store completes (docs/operations.md, "Snapshots").

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::snapshot_store::{Encoded, Saved, SnapshotStore};
use crate::event::RecordBatch;
use crate::pipeline::Pipeline;
use crate::sinks::redis::RedisSink;
use crate::sources::kafka::KafkaCommitter;

pub struct Snapshots {
    store: SnapshotStore,
    interval: Duration,
    assigned: BTreeSet<i32>,
    /// Next offset per assigned partition: every record before it is in the pipeline's state.
    processed: BTreeMap<i32, i64>,
    /// Records below these offsets are in a restored snapshot already (replayed from an older
    /// commit) and are skipped.
    restored_to: BTreeMap<i32, i64>,
    /// What the last stored snapshot covered, and when it was stored.
    saved: BTreeMap<i32, i64>,
    saved_at: Option<Instant>,
    /// Redis outages seen at the last save: Redis may come back empty, so after an outage
    /// every partition is stored again even without progress.
    outages_at_save: u64,
    /// A save being encoded and stored in the background.
    writing: Option<Writing>,
}

/// A background save: its task, the offsets of its cut, and when its copy was taken.
struct Writing {
    task: JoinHandle<anyhow::Result<Saved>>,
    next: BTreeMap<i32, i64>,
    started: Instant,
    outages: u64,
}

impl Snapshots {
    pub fn new(store: SnapshotStore, interval: Duration) -> Self {
        Self {
            store,
            interval,
            assigned: BTreeSet::new(),
            processed: BTreeMap::new(),
            restored_to: BTreeMap::new(),
            saved: BTreeMap::new(),
            saved_at: None,
            outages_at_save: 0,
            writing: None,
        }
    }

    /// New partitions: their stored state (if any) joins the pipeline before their records.
    pub async fn assign(
        &mut self,
        partitions: &[i32],
        pipeline: &mut Pipeline,
        redis: &mut RedisSink,
        committer: &KafkaCommitter,
        wall_ms: i64,
    ) -> anyhow::Result<()> {
        self.settle(committer).await?;
        let states = self.store.load(redis, partitions).await?;
        for state in states {
            let (p, next) = (state.partition, state.next_offset);
            let scenarios = pipeline.import_partition(state, wall_ms);
            tracing::info!(partition = p, next_offset = next, scenarios, "restored partition state from its snapshot");
            metrics::counter!("rtscore_snapshot_restores_total").increment(1);
            self.restored_to.insert(p, next);
            // Not marked saved: the committed offset may be behind the snapshot (the old owner
            // died between storing and committing), so the next save commits it.
            self.processed.insert(p, next);
        }
        self.assigned.extend(partitions.iter().copied());
        pipeline.assign_partitions(partitions, wall_ms);
        tracing::info!(partitions = ?self.assigned, "partitions owned");
        Ok(())
    }

    /// Partitions taken away: their state is stored for the next owner, then dropped here. The
    /// offsets cannot be committed any more (the new owner skips what the snapshot covers).
    pub async fn revoke(
        &mut self,
        partitions: &[i32],
        pipeline: &mut Pipeline,
        redis: &mut RedisSink,
        committer: &KafkaCommitter,
    ) -> anyhow::Result<()> {
        self.settle(committer).await?;
        let states: Vec<_> = partitions.iter().filter_map(|p| Some(pipeline.export_partition(*p, self.unsaved(*p)?))).collect();
        let encoded = encode_off_thread(states).await?;
        self.store.save(redis, &encoded, wall_ms()).await?;
        for p in partitions {
            self.assigned.remove(p);
            self.processed.remove(p);
            self.restored_to.remove(p);
            self.saved.remove(p);
        }
        pipeline.revoke_partitions(partitions);
        tracing::info!(partitions = ?self.assigned, "partitions owned");
        Ok(())
    }

    /// The next offset of `p` if records were processed since its last snapshot.
    fn unsaved(&self, p: i32) -> Option<i64> {
        let next = *self.processed.get(&p)?;
        (self.saved.get(&p) != Some(&next)).then_some(next)
    }

    /// The records to process: those of partitions this host owns that its restored state
    /// does not already hold.
    pub fn admit(&mut self, batch: RecordBatch) -> RecordBatch {
        let (assigned, restored_to) = (&self.assigned, &self.restored_to);
        match batch.filtered(|pos| assigned.contains(&pos.partition) && restored_to.get(&pos.partition).is_none_or(|&o| pos.offset >= o)) {
            Some(kept) => kept,
            None => batch,
        }
    }

    /// The outputs of the batch's records in `range` are written: they count as processed.
    /// Records before `next` (per partition) are processed and their outputs written.
    pub fn processed(&mut self, next: &BTreeMap<i32, i64>) {
        for (&p, &next) in next {
            let e = self.processed.entry(p).or_insert(next);
            *e = (*e).max(next);
            self.restored_to.remove(&p);
        }
    }

    pub fn due(&self) -> bool {
        self.writing.is_none() && self.saved_at.is_none_or(|at| at.elapsed() >= self.interval)
    }

    /// Whether a save is being stored in the background.
    pub fn writing(&self) -> bool {
        self.writing.is_some()
    }

    /// The background save's task; `None` when there is none.
    fn write_task(&mut self) -> Option<&mut JoinHandle<anyhow::Result<Saved>>> {
        self.writing.as_mut().map(|w| &mut w.task)
    }

    /// Completes with the background save's result; never, while there is none (for the
    /// runtime's loop).
    pub async fn write_done(snapshots: &mut Option<Snapshots>) -> Result<anyhow::Result<Saved>, tokio::task::JoinError> {
        match snapshots.as_mut().and_then(Snapshots::write_task) {
            Some(task) => task.await,
            None => std::future::pending().await,
        }
    }

    /// Stores the state of every partition with unsaved progress and commits their offsets,
    /// waiting for it (shutdown); a background save in progress completes first. `pipeline`
    /// is only read, but held across awaits: `&mut` keeps the future `Send` (a pipeline is
    /// `Send`, not `Sync`), so a pipeline can run on a task of its own (`--threads`).
    pub async fn save(
        &mut self,
        pipeline: &mut Pipeline,
        redis: &mut RedisSink,
        committer: &KafkaCommitter,
        at_shutdown: bool,
    ) -> anyhow::Result<()> {
        self.settle(committer).await?;
        if self.begin_save(pipeline, redis, committer, at_shutdown)? {
            self.settle_with(committer, at_shutdown).await?;
        }
        Ok(())
    }

    /// Takes a consistent cut of every partition with unsaved progress and starts encoding and
    /// storing it in the background (see [`Self::written`]); true when a save started. With
    /// nothing new, commits the stored offsets again: an asynchronous commit can fail (a
    /// rebalance in progress) and an idle partition would otherwise keep its lag.
    // Without the `redis` feature no sink exists, so everything after its first use is unreachable.
    #[cfg_attr(not(feature = "redis"), allow(unreachable_code))]
    pub fn begin_save(
        &mut self,
        pipeline: &Pipeline,
        redis: &RedisSink,
        committer: &KafkaCommitter,
        at_shutdown: bool,
    ) -> anyhow::Result<bool> {
        if self.writing.is_some() {
            return Ok(false);
        }
        let started = Instant::now();
        let mut next = BTreeMap::new();
        // A consistent cut: every assigned partition at the same moment, so a scenario whose
        // events span partitions (unkeyed topic, one host) restores to one point in the stream.
        let states: Vec<_> = self
            .assigned
            .iter()
            .filter_map(|&p| {
                let offset = *self.processed.get(&p)?;
                next.insert(p, offset);
                Some(pipeline.export_partition(p, offset))
            })
            .collect();
        if redis.outages() == self.outages_at_save && states.iter().all(|s| self.saved.get(&s.partition) == Some(&s.next_offset)) {
            committer.commit_next(&next, at_shutdown)?;
            self.saved_at = Some(Instant::now());
            return Ok(false);
        }
        metrics::histogram!("rtscore_snapshot_copy_seconds").record(started.elapsed().as_secs_f64());
        let (store, mut conn) = (self.store.clone(), redis.background());
        let task = tokio::spawn(async move {
            let encoded = encode_off_thread(states).await?;
            store.save(&mut conn, &encoded, wall_ms()).await
        });
        self.writing = Some(Writing { task, next, started, outages: redis.outages() });
        Ok(true)
    }

    /// The background save finished with `result`: its offsets are committed (or the error
    /// returned: the runtime stops rather than commit offsets no stored state covers).
    pub fn written(
        &mut self,
        result: Result<anyhow::Result<Saved>, tokio::task::JoinError>,
        committer: &KafkaCommitter,
        at_shutdown: bool,
    ) -> anyhow::Result<()> {
        let Some(w) = self.writing.take() else { return Ok(()) };
        let saved = result.map_err(|e| anyhow::anyhow!("snapshot task failed: {e}"))??;
        committer.commit_next(&w.next, at_shutdown)?;
        self.saved = w.next;
        self.outages_at_save = w.outages;
        self.saved_at = Some(Instant::now());
        let took = w.started.elapsed();
        metrics::gauge!("rtscore_snapshot_bytes").set(saved.bytes as f64);
        metrics::gauge!("rtscore_snapshot_partitions").set(saved.partitions as f64);
        metrics::counter!("rtscore_snapshots_total").increment(1);
        metrics::histogram!("rtscore_snapshot_write_seconds").record(took.as_secs_f64());
        tracing::debug!(
            partitions = saved.partitions,
            bytes = saved.bytes,
            chunks = saved.chunks,
            ms = took.as_millis() as u64,
            "snapshot stored"
        );
        Ok(())
    }

    /// Waits for a background save in progress, if any, and commits its offsets.
    pub async fn settle(&mut self, committer: &KafkaCommitter) -> anyhow::Result<()> {
        self.settle_with(committer, false).await
    }

    async fn settle_with(&mut self, committer: &KafkaCommitter, at_shutdown: bool) -> anyhow::Result<()> {
        let Some(task) = self.write_task() else { return Ok(()) };
        let result = task.await;
        self.written(result, committer, at_shutdown)
    }

    /// Partitions this host owns now.
    pub fn owned(&self) -> Vec<i32> {
        self.assigned.iter().copied().collect()
    }

    /// Seconds since the last stored snapshot (or check that found nothing new).
    pub fn age_seconds(&self) -> Option<f64> {
        self.saved_at.map(|at| at.elapsed().as_secs_f64())
    }
}

/// Encodes partition states on a blocking thread: at millions of (item, bucket) pairs this takes
/// seconds of CPU that must not hold up the runtime's loop.
async fn encode_off_thread(states: Vec<crate::pipeline::PartitionState>) -> anyhow::Result<Vec<Encoded>> {
    tokio::task::spawn_blocking(move || states.iter().map(Encoded::of).collect())
        .await
        .map_err(|e| anyhow::anyhow!("snapshot encoding failed: {e}"))?
}

fn wall_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
