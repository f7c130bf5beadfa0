//! The shuffle stage of `--repartition` (docs/operations.md, "Running a fleet"): a member of
//! consumer group `<group>.shuffle` on the source topic that forwards every record, unchanged,
//! to the internal topic `<group>.by-scenario`, on the partition its `(tenant_id, scenario_id)`
//! hashes to (`repartition::route`), and sends each internal partition progress markers.
//!
//! Exactly once across the stage: a transactional producer forwards the records, the markers
//! and the source offsets (`send_offsets_to_transaction` with the consumer's group metadata,
//! KIP-447) in one transaction, committed every [`TXN_MS`] while the shuffle keeps up, and
//! every [`TXN_MAX_MS`] while it catches up (a commit blocks this thread for a few round trips
//! whatever the transaction's size, docs/benchmarks.md "Repartition"). The pipeline reads the internal
//! topic `read_committed`, so a shuffle killed mid-transaction leaves nothing visible, and the
//! source partition's next owner forwards from the committed offset. A transaction that fails,
//! or that a rebalance overtook, is aborted and the consumer rewound to the committed offsets.
//!
//! It runs on a thread of its own: the transactional calls block, and the pipeline's loop must
//! never wait for them.
//!
//! With `--instance-id` (or its default) the transactional id is stable, `<group>.shuffle.<id>`,
//! and the consumer a static member of `<group>.shuffle` (`group.instance.id`): a host restarted
//! after a crash fences its predecessor's open transaction at once and gets its source
//! partitions back without a rebalance. A producer fenced while alive means another live host
//! uses the same id: the shuffle says so and goes on with a per-process id.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, ConsumerGroupMetadata, Rebalance};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

use crate::event::{EventMapping, parse_event, parse_event_mapped};
use crate::repartition::marker::{MARKER_HEADER, SOURCE_HEADER, SOURCE_POSITION_HEADER, SourceTag};
use crate::repartition::{ShuffleProgress, ShuffleStats, Topology, partition_for_bytes, partition_for_scenario};

/// While the shuffle keeps up (its consumer ran out of records), a transaction is committed
/// this often: the delay the stage adds to a live stream.
pub const TXN_MS: u64 = 100;
/// While it catches up (records keep waiting), a transaction grows up to this long (or
/// [`TXN_MAX_RECORDS`]): a commit costs the same few round trips at any size, and at 100 ms
/// they took most of this thread's time. The pipeline sees a transaction's records when it
/// commits, so catching up adds up to this much delay; the work a crash makes the next owner
/// redo grows with it too.
pub const TXN_MAX_MS: u64 = 1_000;
const TXN_MAX_RECORDS: usize = 200_000;
/// How often the source lag is read for `/status` (a few metadata round trips).
const LAG_EVERY: Duration = Duration::from_secs(5);
/// A dead host's open transaction holds the pipeline's `read_committed` reads back until the
/// broker aborts it: this long at most.
const TXN_TIMEOUT_MS: &str = "10000";
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct ShuffleConfig {
    pub brokers: String,
    pub source_topic: String,
    pub internal_topic: String,
    /// `<group>.shuffle`.
    pub group_id: String,
    /// `--instance-id`: a stable transactional id and static group membership. Two live
    /// producers with one transactional id fence each other.
    pub instance_id: Option<String>,
    /// Unique per process (host, pid, start time): the transactional id without an instance id,
    /// or after a live peer fenced this one.
    pub process_tag: String,
    /// `--kafka-option` settings (SASL, TLS), applied to the consumer, producer and admin client.
    pub options: Vec<(String, String)>,
    pub mapping: Option<Arc<EventMapping>>,
    /// `--max-event-skew`: events the pipeline rejects as `ts_in_future` move no progress.
    pub max_event_skew_ms: Option<i64>,
}

impl ShuffleConfig {
    /// `<group>.shuffle.<instance id>` (stable) or `<group>.shuffle.<process tag>`.
    pub fn transactional_id(&self, stable: bool) -> String {
        match (&self.instance_id, stable) {
            (Some(id), true) => format!("{}.{id}", self.group_id),
            _ => format!("{}.{}", self.group_id, self.process_tag),
        }
    }
}

fn client(brokers: &str, options: &[(String, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for (k, v) in options {
        c.set(k, v);
    }
    c
}

/// Reads the source topic's partition count and creates the internal topic if it does not
/// exist (idempotent: every host of the fleet does this at start) with `partitions` partitions
/// (default: as many as the source). An existing internal topic keeps its count, which is
/// what the hash uses from then on.
pub async fn prepare(cfg: &ShuffleConfig, partitions: Option<i32>) -> anyhow::Result<Topology> {
    let admin: Arc<AdminClient<DefaultClientContext>> = Arc::new(
        client(&cfg.brokers, &cfg.options).create().with_context(|| format!("cannot create a Kafka admin client for {}", cfg.brokers))?,
    );
    let sources = partition_count(&admin, &cfg.source_topic)
        .await?
        .with_context(|| format!("--repartition: the source topic {} does not exist", cfg.source_topic))?;
    let want = partitions.unwrap_or(sources);
    // Replication -1: the broker's default.
    let topic = NewTopic::new(&cfg.internal_topic, want, TopicReplication::Fixed(-1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics([&topic], &opts).await.context("creating the internal topic")? {
        match result {
            Ok(_) => tracing::info!(topic = %cfg.internal_topic, partitions = want, "created the internal topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => anyhow::bail!("cannot create the internal topic {t}: {e}"),
        }
    }
    // Metadata may lag the creation by a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let partitions = loop {
        match partition_count(&admin, &cfg.internal_topic).await? {
            Some(n) => break n,
            None if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            None => anyhow::bail!("the internal topic {} did not appear", cfg.internal_topic),
        }
    };
    if partitions != want {
        tracing::warn!(topic = %cfg.internal_topic, partitions, requested = want, "the internal topic exists with another partition count; using it");
    }
    Ok(Topology { sources, partitions })
}

/// `topic`'s partition count on `brokers` (with the consumer's client `options`), `None` if it
/// does not exist: how many pipelines `--threads auto` can keep busy.
pub async fn topic_partitions(brokers: &str, options: &[(String, String)], topic: &str) -> anyhow::Result<Option<i32>> {
    let admin: Arc<AdminClient<DefaultClientContext>> =
        Arc::new(client(brokers, options).create().with_context(|| format!("cannot create a Kafka admin client for {brokers}"))?);
    partition_count(&admin, topic).await
}

/// A topic's partition count, `None` if it does not exist (a blocking metadata call, off the
/// async workers).
async fn partition_count(admin: &Arc<AdminClient<DefaultClientContext>>, topic: &str) -> anyhow::Result<Option<i32>> {
    let (admin, name) = (admin.clone(), topic.to_string());
    let md = tokio::task::spawn_blocking(move || admin.inner().fetch_metadata(Some(&name), Duration::from_secs(10)))
        .await
        .context("metadata task")?
        .with_context(|| format!("cannot read the metadata of {topic}"))?;
    let found = md.topics().first().filter(|t| t.error().is_none() && !t.partitions().is_empty());
    Ok(found.map(|t| i32::try_from(t.partitions().len()).unwrap_or(i32::MAX)))
}

/// Counts rebalances and remembers revoked partitions: a transaction that a rebalance
/// overtook is aborted (its offsets may belong to another member now).
struct ShuffleContext {
    rebalances: AtomicU64,
    revoked: std::sync::Mutex<Vec<i32>>,
}

impl ClientContext for ShuffleContext {}

impl ConsumerContext for ShuffleContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.rebalances.fetch_add(1, Ordering::SeqCst);
        if let Rebalance::Revoke(tpl) = rebalance {
            let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(partitions = ?parts, "shuffle: source partitions revoked");
            if let Ok(mut r) = self.revoked.lock() {
                r.extend(parts);
            }
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(partitions = ?parts, "shuffle: source partitions assigned");
        }
    }
}

/// A running shuffle; stops when dropped or [`Shuffle::stop`]ped.
pub struct Shuffle {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    stats: Arc<ShuffleStats>,
}

impl Shuffle {
    /// What it has done, for `/status`.
    pub fn stats(&self) -> Arc<ShuffleStats> {
        self.stats.clone()
    }

    /// Commits the open transaction and leaves the group.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Shuffle {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Starts the shuffle thread. It retries (after a second) whatever fails, so Kafka being away
/// for a while only delays forwarding.
pub fn spawn(cfg: ShuffleConfig, topology: Topology) -> anyhow::Result<Shuffle> {
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(ShuffleStats::default());
    let (flag, counters) = (stop.clone(), stats.clone());
    let thread = std::thread::Builder::new()
        .name("rtscore-shuffle".into())
        .spawn(move || {
            let mut stable = cfg.instance_id.is_some();
            while !flag.load(Ordering::SeqCst) {
                let (result, fenced) = match Session::open(&cfg, topology, stable, &counters) {
                    Ok(mut s) => {
                        let result = s.run(&flag);
                        (result, s.fenced())
                    }
                    Err(e) => (Err(e), false),
                };
                match result {
                    Ok(()) => break,
                    Err(e) => {
                        if fenced && stable {
                            // Alive and fenced: another live host uses this id (or this one
                            // stalled past the transaction timeout). Never fence it back.
                            tracing::error!(
                                instance_id = cfg.instance_id.as_deref().unwrap_or_default(),
                                "shuffle: another live host uses this --instance-id (its transactional id fenced this one); \
                                 continuing with a per-process transactional id: give every host its own --instance-id"
                            );
                            stable = false;
                        }
                        tracing::warn!(error = format!("{e:#}"), "shuffle stopped; restarting in 1 s");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            }
        })
        .context("cannot start the shuffle thread")?;
    Ok(Shuffle { stop, thread: Some(thread), stats })
}

/// One consumer and one transactional producer.
struct Session<'a> {
    consumer: BaseConsumer<ShuffleContext>,
    fwd: Forwarder<'a>,
    /// A static member of the shuffle group (`group.instance.id`).
    stable: bool,
    lag_read: Instant,
}

/// Everything of a session but its consumer, which lends the messages being forwarded.
struct Forwarder<'a> {
    cfg: &'a ShuffleConfig,
    topology: Topology,
    producer: ThreadedProducer<DefaultProducerContext>,
    progress: ShuffleProgress,
    /// The open transaction: when it began, the rebalance count and group metadata then, the
    /// next source offset per partition, records forwarded, and source partitions read.
    open: Option<Txn>,
    stats: &'a ShuffleStats,
    /// Per source partition, its `rtscore-src` header text (made once).
    tags: Vec<String>,
    /// The message key being built (reused: no allocation per record).
    key: String,
}

struct Txn {
    began: Instant,
    rebalances: u64,
    group: ConsumerGroupMetadata,
    next: BTreeMap<i32, i64>,
    records: usize,
    touched: BTreeSet<i32>,
}

impl<'a> Session<'a> {
    fn open(cfg: &'a ShuffleConfig, topology: Topology, stable: bool, stats: &'a ShuffleStats) -> anyhow::Result<Session<'a>> {
        let mut consumer_config = client(&cfg.brokers, &[]);
        consumer_config
            .set("group.id", &cfg.group_id)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            // A source written transactionally is forwarded only once committed.
            .set("isolation.level", "read_committed")
            .set("session.timeout.ms", "10000")
            .set("partition.assignment.strategy", "cooperative-sticky")
            // As the pipeline's consumer (sources/kafka.rs): large fetches, a deep local queue
            // and a short pause when it is full (librdkafka's default is 1 s).
            .set("max.partition.fetch.bytes", "16777216")
            .set("queued.min.messages", "1000000")
            .set("fetch.queue.backoff.ms", "10");
        if let (Some(id), true) = (&cfg.instance_id, stable) {
            // Static membership: a restarted host takes its partitions back at once.
            consumer_config.set("group.instance.id", id);
        }
        let consumer: BaseConsumer<ShuffleContext> = consumer_config
            .set_all(&cfg.options)
            .create_with_context(ShuffleContext { rebalances: AtomicU64::new(0), revoked: Default::default() })
            .context("cannot create the shuffle consumer")?;
        consumer.subscribe(&[&cfg.source_topic]).with_context(|| format!("cannot subscribe to {}", cfg.source_topic))?;
        let transactional_id = cfg.transactional_id(stable);
        let producer: ThreadedProducer<DefaultProducerContext> = client(&cfg.brokers, &[])
            .set("transactional.id", &transactional_id)
            .set("transaction.timeout.ms", TXN_TIMEOUT_MS)
            .set("enable.idempotence", "true")
            // Longer lingering (20-100 ms) halved the broker's CPU but added as much in this
            // process's librdkafka threads; reporting only failed deliveries showed no gain
            // either (docs/benchmarks.md, "Repartition").
            .set("linger.ms", "5")
            .set_all(&cfg.options)
            .create()
            .context("cannot create the shuffle producer")?;
        // With a stable id this also aborts the open transaction a crashed predecessor left.
        producer.init_transactions(CALL_TIMEOUT).context("init_transactions")?;
        stats.set_transactional_id(&transactional_id);
        tracing::info!(from = %cfg.source_topic, to = %cfg.internal_topic, group = %cfg.group_id, partitions = topology.partitions,
            %transactional_id, static_member = stable, "shuffle forwarding");
        let fwd = Forwarder {
            cfg,
            topology,
            producer,
            progress: ShuffleProgress::default(),
            open: None,
            stats,
            tags: Vec::new(),
            key: String::new(),
        };
        Ok(Session { consumer, fwd, stable, lag_read: Instant::now() })
    }

    fn run(&mut self, stop: &AtomicBool) -> anyhow::Result<()> {
        let mut errors = 0u64;
        // Records kept waiting at the last poll: the transaction may grow to TXN_MAX_MS.
        let mut behind = false;
        while !stop.load(Ordering::SeqCst) {
            // Rebalance callbacks run inside poll, on this thread: between two polls the
            // assignment cannot change under an open transaction unnoticed.
            let mut budget = 2_000;
            let mut wait = Duration::from_millis(20);
            behind = loop {
                if budget == 0 {
                    break true;
                }
                match self.consumer.poll(wait) {
                    Some(Ok(m)) => {
                        self.fwd.forward(&self.consumer, &m)?;
                        budget -= 1;
                        wait = Duration::ZERO;
                    }
                    Some(Err(e)) => {
                        errors += 1;
                        if errors == 1 || errors.is_multiple_of(100) {
                            tracing::warn!(error = %e, errors, "shuffle consumer error; retrying");
                        }
                        if let Some((code, why)) = self.consumer.client().fatal_error() {
                            anyhow::bail!("shuffle consumer: fatal error {code:?}: {why}");
                        }
                        break behind;
                    }
                    None => break false,
                }
            };
            let revoked = self.consumer.context().revoked.lock().map(|mut r| std::mem::take(&mut *r)).unwrap_or_default();
            if !revoked.is_empty() {
                self.fwd.progress.forget(&revoked);
            }
            if self.fwd.open.as_ref().is_some_and(|t| due(t.began.elapsed(), t.records, behind)) {
                self.fwd.finish(&self.consumer)?;
            }
            if self.lag_read.elapsed() >= LAG_EVERY {
                self.lag_read = Instant::now();
                self.fwd.stats.set_source_lag(source_lag(&self.consumer, &self.fwd.cfg.source_topic));
            }
        }
        self.fwd.finish(&self.consumer)?;
        if self.stable {
            self.leave();
        }
        Ok(())
    }

    /// A static member does not leave its group when it closes (its partitions wait for it to
    /// come back, up to the session timeout): at a clean stop, leave now so another host takes
    /// them over at once.
    fn leave(&self) {
        self.consumer.unsubscribe();
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            let _ = self.consumer.poll(Duration::from_millis(50));
            if self.consumer.assignment().map_or(true, |a| a.count() == 0) {
                break;
            }
        }
        // The LeaveGroup request goes out after the revocation.
        let _ = self.consumer.poll(Duration::from_millis(100));
    }

    /// Whether the producer (its transactional id) or the consumer (its `group.instance.id`)
    /// was fenced by another client with the same id.
    fn fenced(&self) -> bool {
        let producer = self.fwd.producer.client().fatal_error().map(|e| e.0);
        let consumer = self.consumer.client().fatal_error().map(|e| e.0);
        matches!(producer, Some(RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch | RDKafkaErrorCode::Fenced))
            || matches!(consumer, Some(RDKafkaErrorCode::FencedInstanceId))
    }
}

/// Whether the open transaction is due: after [`TXN_MS`] while the shuffle keeps up, after
/// [`TXN_MAX_MS`] while records keep waiting, or at [`TXN_MAX_RECORDS`].
fn due(age: Duration, records: usize, behind: bool) -> bool {
    let limit = if behind { TXN_MAX_MS } else { TXN_MS };
    age >= Duration::from_millis(limit) || records >= TXN_MAX_RECORDS
}

/// Messages not yet read on the owned source partitions (`None` without an assignment or an
/// answer): high watermark minus position, as the pipeline's lag (sources/kafka.rs).
fn source_lag(consumer: &BaseConsumer<ShuffleContext>, topic: &str) -> Option<i64> {
    let positions = consumer.position().ok()?;
    let mut lag = None;
    for e in positions.elements_for_topic(topic) {
        let Ok((low, high)) = consumer.fetch_watermarks(topic, e.partition(), Duration::from_secs(2)) else { continue };
        let pos = match e.offset() {
            Offset::Offset(o) => o,
            _ => low,
        };
        lag = Some(lag.unwrap_or(0) + (high - pos).max(0));
    }
    if let Some(l) = lag {
        metrics::gauge!("rtscore_shuffle_source_lag").set(l as f64);
    }
    lag
}

impl Forwarder<'_> {
    fn begin(&mut self, consumer: &BaseConsumer<ShuffleContext>) -> anyhow::Result<()> {
        self.producer.begin_transaction().context("begin_transaction")?;
        let group = consumer.group_metadata().context("the shuffle consumer has no group metadata")?;
        let rebalances = consumer.context().rebalances.load(Ordering::SeqCst);
        self.open = Some(Txn { began: Instant::now(), rebalances, group, next: BTreeMap::new(), records: 0, touched: BTreeSet::new() });
        Ok(())
    }

    /// Forwards one source record unchanged, tagged with its source partition.
    fn forward(&mut self, consumer: &BaseConsumer<ShuffleContext>, m: &rdkafka::message::BorrowedMessage<'_>) -> anyhow::Result<()> {
        let payload = m.payload().unwrap_or_default();
        let tag = SourceTag { source: m.partition(), sources: self.topology.sources.max(m.partition() + 1) };
        let n = self.topology.partitions;
        let parsed = match &self.cfg.mapping {
            None => parse_event(payload),
            Some(mapping) => parse_event_mapped(payload, mapping),
        };
        self.key.clear();
        let mut unreadable = false;
        let partition = match &parsed {
            Ok(ev) => {
                // The clock is read only when --max-event-skew asks for it.
                if self.cfg.max_event_skew_ms.is_none_or(|s| ev.ts <= chrono::Utc::now().timestamp_millis().saturating_add(s)) {
                    self.progress.forwarded(tag, &ev.tenant_id, ev.ts);
                } else {
                    self.progress.touch(tag);
                }
                // `routing_key` without an allocation per record.
                self.key.push_str(&ev.tenant_id);
                self.key.push('/');
                self.key.push_str(&ev.scenario_id);
                partition_for_scenario(&ev.tenant_id, &ev.scenario_id, n)
            }
            // Unreadable: where its bytes hash to, so the pipeline rejects it as it always did.
            Err(_) => {
                self.progress.touch(tag);
                unreadable = true;
                partition_for_bytes(payload, n)
            }
        };
        let source = usize::try_from(m.partition()).unwrap_or(0);
        if self.tags.len() <= source {
            self.tags.resize(source + 1, String::new());
        }
        if self.tags[source].is_empty() {
            self.tags[source] = tag.encode();
        }
        if self.open.is_none() {
            self.begin(consumer)?;
        }
        let mut headers = OwnedHeaders::new_with_capacity(1).insert(Header { key: SOURCE_HEADER, value: Some(self.tags[source].as_str()) });
        if unreadable {
            // Its dead letter names where it was written (rare: a copy is fine).
            let at = format!("{}/{}/{}", self.cfg.source_topic, m.partition(), m.offset());
            headers = headers.insert(Header { key: SOURCE_POSITION_HEADER, value: Some(at.as_str()) });
        }
        let mut record: BaseRecord<'_, str, [u8]> =
            BaseRecord::to(&self.cfg.internal_topic).partition(partition).payload(payload).headers(headers);
        if !self.key.is_empty() {
            record = record.key(self.key.as_str());
        }
        send(&self.producer, record)?;
        let txn = self.open.as_mut().context("no open transaction")?;
        txn.next.insert(m.partition(), m.offset() + 1);
        txn.records += 1;
        txn.touched.insert(m.partition());
        Ok(())
    }

    /// Sends the markers of the source partitions read in this transaction to every internal
    /// partition, then commits records, markers and source offsets at once. On failure: abort,
    /// rewind to the committed offsets, progress back to the last commit. Nothing is sent
    /// while nothing is read: a marker without news would change no lane, and would make
    /// every pipeline store snapshots of an idle input.
    fn finish(&mut self, consumer: &BaseConsumer<ShuffleContext>) -> anyhow::Result<()> {
        let Some(touched) = self.open.as_ref().map(|t| t.touched.clone()) else { return Ok(()) };
        let mut markers = 0u64;
        for source in touched {
            let Some(marker) = self.progress.marker(source) else { continue };
            let bytes = marker.encode();
            for p in 0..self.topology.partitions {
                let headers = OwnedHeaders::new().insert(Header { key: MARKER_HEADER, value: Some("1") });
                let record: BaseRecord<'_, (), [u8]> =
                    BaseRecord::to(&self.cfg.internal_topic).partition(p).payload(bytes.as_slice()).headers(headers);
                send(&self.producer, record)?;
                markers += 1;
            }
        }
        let Some(txn) = self.open.take() else { return Ok(()) };
        let started = Instant::now();
        match self.commit(consumer, &txn) {
            Ok(()) => {
                self.progress.commit();
                let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                self.stats.committed(txn.records as u64, markers, chrono::Utc::now().timestamp_millis(), took);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    records = txn.records,
                    "shuffle transaction aborted; rewinding to the committed offsets"
                );
                metrics::counter!("rtscore_shuffle_aborted_transactions_total").increment(1);
                self.stats.aborted();
                if let Err(abort) = self.producer.abort_transaction(CALL_TIMEOUT) {
                    // A fatal state (fenced, for one): a new session starts from the committed offsets.
                    anyhow::bail!("abort_transaction: {abort}");
                }
                self.progress.abort();
                rewind(consumer)
            }
        }
    }

    fn commit(&self, consumer: &BaseConsumer<ShuffleContext>, txn: &Txn) -> anyhow::Result<()> {
        if consumer.context().rebalances.load(Ordering::SeqCst) != txn.rebalances {
            anyhow::bail!("a rebalance overtook the transaction");
        }
        if !txn.next.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for (&p, &o) in &txn.next {
                tpl.add_partition_offset(&self.cfg.source_topic, p, Offset::Offset(o)).context("offset list")?;
            }
            self.producer.send_offsets_to_transaction(&tpl, &txn.group, CALL_TIMEOUT).context("send_offsets_to_transaction")?;
        }
        self.producer.commit_transaction(CALL_TIMEOUT).context("commit_transaction")?;
        metrics::counter!("rtscore_shuffle_forwarded_total").increment(txn.records as u64);
        Ok(())
    }
}

/// Every assigned partition back to its committed offset (the start without one).
fn rewind(consumer: &BaseConsumer<ShuffleContext>) -> anyhow::Result<()> {
    let committed = consumer.committed(CALL_TIMEOUT).context("reading committed offsets")?;
    let mut tpl = TopicPartitionList::new();
    for e in committed.elements() {
        let offset = match e.offset() {
            Offset::Offset(o) => Offset::Offset(o),
            _ => Offset::Beginning,
        };
        tpl.add_partition_offset(e.topic(), e.partition(), offset).context("offset list")?;
    }
    consumer.seek_partitions(tpl, CALL_TIMEOUT).context("rewinding")?;
    Ok(())
}

/// Produces, waiting while the local queue is full.
fn send<K: rdkafka::message::ToBytes + ?Sized>(
    producer: &ThreadedProducer<DefaultProducerContext>,
    mut record: BaseRecord<'_, K, [u8]>,
) -> anyhow::Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e).context("forwarding to the internal topic"),
        }
    }
}

trait SetAll {
    fn set_all(&mut self, options: &[(String, String)]) -> &mut Self;
}

impl SetAll for ClientConfig {
    fn set_all(&mut self, options: &[(String, String)]) -> &mut Self {
        for (k, v) in options {
            self.set(k, v);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_grows_only_while_records_keep_waiting() {
        let ms = Duration::from_millis;
        assert!(!due(ms(99), 10, false));
        assert!(due(ms(TXN_MS), 10, false), "keeping up: every 100 ms");
        assert!(!due(ms(TXN_MS), 10, true), "catching up: the transaction grows");
        assert!(!due(ms(TXN_MAX_MS - 1), 10, true));
        assert!(due(ms(TXN_MAX_MS), 10, true));
        assert!(due(ms(1), TXN_MAX_RECORDS, true), "and never past the record cap");
    }

    #[test]
    fn the_transactional_id_is_stable_with_an_instance_id() {
        let cfg = ShuffleConfig {
            brokers: "k:9092".into(),
            source_topic: "events".into(),
            internal_topic: "g.by-scenario".into(),
            group_id: "g.shuffle".into(),
            instance_id: Some("host-a-9464".into()),
            process_tag: "box.42.1700000000000".into(),
            options: vec![],
            mapping: None,
            max_event_skew_ms: None,
        };
        assert_eq!(cfg.transactional_id(true), "g.shuffle.host-a-9464");
        assert_eq!(cfg.transactional_id(false), "g.shuffle.box.42.1700000000000", "after a live peer fenced it");
        let anonymous = ShuffleConfig { instance_id: None, ..cfg };
        assert_eq!(anonymous.transactional_id(true), "g.shuffle.box.42.1700000000000");
    }
}
