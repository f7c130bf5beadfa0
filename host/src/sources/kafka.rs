//! Kafka source: a consumer-group member on the events topic. Messages are packed into
//! [`RecordBatch`]es with their positions; offsets are committed only for events whose outputs
//! have been written (the runtime calls [`KafkaCommitter::commit`] after its sinks).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::FutureExt;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};

use super::{PartitionChange, SourceMessage, SourceSender};
use crate::event::{Origin, Position, RecordBatch};
use crate::repartition::marker;

const BATCH_RECORDS: usize = 2048;

#[derive(Debug, Clone)]
pub struct KafkaSourceConfig {
    pub brokers: String,
    pub topic: String,
    pub group_id: String,
    pub client_id: String,
    /// Cleared while the brokers do not answer (readiness).
    pub reachable: Arc<std::sync::atomic::AtomicBool>,
    /// librdkafka properties set after the defaults (`--kafka-option`).
    pub options: Vec<(String, String)>,
    /// `topic` is the internal topic of `--repartition`: only committed transactions are read,
    /// and each record's origin (source partition, or progress marker) comes from its headers.
    pub repartitioned: bool,
}

/// Logs partition assignment and revocation and tells the runtime, whose watermark is the
/// minimum over the partitions it reads.
pub struct GroupContext {
    changes: mpsc::UnboundedSender<PartitionChange>,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let change = match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = ?partitions(tpl), "partitions assigned");
                PartitionChange::Assigned(partitions(tpl))
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = ?partitions(tpl), "partitions revoked");
                PartitionChange::Revoked(partitions(tpl))
            }
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "rebalance error");
                return;
            }
        };
        let _ = self.changes.send(change);
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(error = %e, "offset commit failed; will retry with the next commit");
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

type GroupConsumer = StreamConsumer<GroupContext>;

/// Commits consumed positions once their outputs are durable.
#[derive(Clone)]
pub struct KafkaCommitter {
    consumer: Arc<GroupConsumer>,
    topic: String,
}

impl KafkaCommitter {
    /// Marks every message before `next` (per partition) as processed; the consumer's
    /// auto-commit sends the marks to Kafka.
    pub fn commit(&self, next: &BTreeMap<i32, i64>) -> anyhow::Result<()> {
        if next.is_empty() {
            return Ok(());
        }
        match self.consumer.store_offsets(&self.offset_list(next)?) {
            Ok(()) => Ok(()),
            // A partition revoked by a rebalance cannot be stored any more; its new owner
            // re-reads from the last commit, so nothing is lost.
            Err(e) => {
                tracing::debug!(error = %e, "storing offsets failed (partition revoked?)");
                Ok(())
            }
        }
    }
}

impl KafkaCommitter {
    fn offset_list(&self, next: &BTreeMap<i32, i64>) -> anyhow::Result<TopicPartitionList> {
        let mut tpl = TopicPartitionList::new();
        for (&partition, &offset) in next {
            tpl.add_partition_offset(&self.topic, partition, Offset::Offset(offset)).context("building the offset list")?;
        }
        Ok(tpl)
    }

    /// Commits `next` (next offset per partition) now: after a snapshot covering them is
    /// stored. `wait` blocks until the broker answers (at shutdown).
    pub fn commit_next(&self, next: &BTreeMap<i32, i64>, wait: bool) -> anyhow::Result<()> {
        if next.is_empty() {
            return Ok(());
        }
        let mode = if wait { CommitMode::Sync } else { CommitMode::Async };
        if let Err(e) = self.consumer.commit(&self.offset_list(next)?, mode) {
            // Revoked meanwhile, or the broker is away: the next snapshot commits again, and
            // a new owner resumes from the stored snapshot, which is never behind a commit.
            tracing::warn!(error = %e, "offset commit failed; the next snapshot retries");
        }
        Ok(())
    }
}

/// A running Kafka source.
pub struct KafkaSource {
    pub committer: KafkaCommitter,
    /// Messages behind the end of the assigned partitions (refreshed every 5 s; -1 = unknown).
    pub lag: Arc<std::sync::atomic::AtomicI64>,
    pub partition_changes: mpsc::UnboundedReceiver<PartitionChange>,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Subscribes and spawns the consuming task.
pub fn spawn_kafka_source(cfg: KafkaSourceConfig, tx: SourceSender, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<KafkaSource> {
    let (changes, partition_changes) = mpsc::unbounded_channel();
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &cfg.brokers)
        .set("group.id", &cfg.group_id)
        .set("client.id", &cfg.client_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "10000")
        // Catching up is bound by fetching, not by the pipeline (docs/benchmarks.md): large
        // fetches per partition, a deep local queue, and a short pause (librdkafka's default
        // is 1 s) when that queue is full, so the pipeline thread never waits on an empty queue.
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "16777216")
        .set("queued.min.messages", "1000000")
        .set("fetch.queue.backoff.ms", "10");
    if cfg.repartitioned {
        // Records of a shuffle transaction that aborted (its host killed mid-way) are never
        // read; the source partition's next owner forwards them again.
        client.set("isolation.level", "read_committed");
    }
    for (k, v) in &cfg.options {
        client.set(k, v);
    }
    let repartitioned = cfg.repartitioned;
    let consumer: GroupConsumer = client
        .create_with_context(GroupContext { changes })
        .with_context(|| format!("cannot create a Kafka consumer for {}", cfg.brokers))?;
    consumer.subscribe(&[&cfg.topic]).with_context(|| format!("cannot subscribe to topic {}", cfg.topic))?;
    let consumer = Arc::new(consumer);
    let committer = KafkaCommitter { consumer: consumer.clone(), topic: cfg.topic.clone() };
    let (consumer_for_lag, cfg_topic, lag_shutdown) = (consumer.clone(), cfg.topic.clone(), shutdown.clone());
    tracing::info!(brokers = %cfg.brokers, topic = %cfg.topic, group = %cfg.group_id, "consuming");
    let task = tokio::spawn(async move {
        let mut batch = RecordBatch::with_capacity(BATCH_RECORDS, BATCH_RECORDS * 256);
        let mut errors = 0u64;
        loop {
            // Wait for the first message of a batch (or shutdown), then linger briefly for more.
            let first = tokio::select! {
                m = consumer.recv() => m,
                _ = shutdown.changed() => break,
            };
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Ok(m) => {
                        let pos = Position { partition: m.partition(), offset: m.offset() };
                        // A null payload is still a record: it is rejected downstream with a reason.
                        match repartitioned {
                            false => batch.push_at(m.payload().unwrap_or_default(), pos),
                            true => {
                                let (from, at) = origin(&m);
                                batch.push_from(m.payload().unwrap_or_default(), pos, from);
                                if let Some(at) = at {
                                    batch.set_source_position(at);
                                }
                            }
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        if errors == 1 || errors.is_multiple_of(100) {
                            tracing::warn!(error = %e, errors, "Kafka consumer error; retrying");
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                if batch.len() >= BATCH_RECORDS {
                    break;
                }
                // Take what librdkafka already fetched without waiting (no timer per message);
                // an empty queue ends the batch and the loop awaits the next message.
                next = consumer.recv().now_or_never();
            }
            if !batch.is_empty() {
                let mut full = std::mem::replace(&mut batch, RecordBatch::with_capacity(BATCH_RECORDS, BATCH_RECORDS * 256));
                super::parse_if_pipeline_behind(&mut full, &tx);
                if tx.send(SourceMessage::Records(full)).await.is_err() {
                    break;
                }
            }
        }
        Ok(())
    });
    let lag = Arc::new(std::sync::atomic::AtomicI64::new(-1));
    spawn_lag_reporter(consumer_for_lag, cfg_topic, lag.clone(), cfg.reachable.clone(), lag_shutdown);
    Ok(KafkaSource { committer, lag, partition_changes, task })
}

/// How a record of the internal topic got there, from its headers (`repartition::marker`),
/// and, for a record the shuffle forwarded unreadable, where it read it.
fn origin(m: &rdkafka::message::BorrowedMessage<'_>) -> (Origin, Option<String>) {
    use rdkafka::message::Headers;
    let Some(headers) = m.headers() else { return (Origin::Untagged, None) };
    let (mut origin, mut at) = (Origin::Untagged, None);
    for h in headers.iter() {
        match (h.key, h.value) {
            (marker::MARKER_HEADER, _) => return (Origin::Marker, None),
            (marker::SOURCE_HEADER, Some(v)) => {
                if let Some(tag) = marker::SourceTag::decode(v) {
                    origin = Origin::Source { source: tag.source, sources: tag.sources };
                }
            }
            (marker::SOURCE_POSITION_HEADER, Some(v)) => at = Some(String::from_utf8_lossy(v).into_owned()),
            _ => {}
        }
    }
    (origin, at)
}

/// Every 5 s, off the event path: whether the brokers answer (readiness), and lag per assigned
/// partition = high watermark - position.
fn spawn_lag_reporter(
    consumer: Arc<GroupConsumer>,
    topic: String,
    total: Arc<std::sync::atomic::AtomicI64>,
    reachable: Arc<std::sync::atomic::AtomicBool>,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = shutdown.changed() => break,
            }
            let (c, t, up) = (consumer.clone(), topic.clone(), reachable.clone());
            let lags = tokio::task::spawn_blocking(move || -> Vec<(i32, i64)> {
                let answered = c.fetch_metadata(Some(&t), Duration::from_secs(2)).is_ok();
                if up.swap(answered, std::sync::atomic::Ordering::Relaxed) != answered {
                    match answered {
                        true => tracing::info!("Kafka is reachable again; catching up"),
                        false => tracing::warn!("Kafka is unreachable; holding state and retrying"),
                    }
                }
                let Ok(positions) = c.position() else { return Vec::new() };
                positions
                    .elements_for_topic(&t)
                    .iter()
                    .filter_map(|e| {
                        let high = c.fetch_watermarks(&t, e.partition(), Duration::from_secs(2)).ok()?.1;
                        let pos = match e.offset() {
                            Offset::Offset(o) => o,
                            // Nothing consumed yet on this partition: all of it is lag.
                            _ => c.fetch_watermarks(&t, e.partition(), Duration::from_secs(2)).ok()?.0,
                        };
                        Some((e.partition(), (high - pos).max(0)))
                    })
                    .collect()
            })
            .await
            .unwrap_or_default();
            if lags.is_empty() {
                continue;
            }
            for (p, lag) in &lags {
                metrics::gauge!("rtscore_kafka_consumer_lag", "partition" => p.to_string()).set(*lag as f64);
            }
            total.store(lags.iter().map(|(_, l)| l).sum(), std::sync::atomic::Ordering::Relaxed);
        }
    });
}
