//! Starts the event source a run's settings name, and holds what the runtime needs from it: the
//! records, the offsets committer and lag (Kafka), and partition assignments.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use tokio::sync::{mpsc, watch};

use crate::config::ScenarioKey;
use crate::event::EventMapping;
use crate::health::HealthReporter;
use crate::settings::SourceSettings;
use crate::sources::generator::{GeneratorConfig, spawn_generator};
use crate::sources::kafka::KafkaCommitter;
#[cfg(feature = "kafka")]
use crate::sources::kafka::{KafkaSourceConfig, spawn_kafka_source};
use crate::sources::{self, Backlog, PartitionChange, SourceReceiver};

/// A running source.
pub struct Source {
    pub records: SourceReceiver,
    pub backlog: Arc<Backlog>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// Kafka only: commits offsets once their records' outputs are written.
    pub committer: Option<KafkaCommitter>,
    /// Kafka only: the consumer group's lag, -1 until known.
    pub lag: Option<Arc<AtomicI64>>,
    /// Kafka only: partitions assigned and revoked; never sends for the other sources.
    pub partition_changes: mpsc::UnboundedReceiver<PartitionChange>,
    _no_partitions: Option<mpsc::UnboundedSender<PartitionChange>>,
    /// `--repartition`: the shuffle stage feeding the internal topic this source reads.
    shuffle: Option<Shuffle>,
}

/// What a repartitioning Kafka source needs besides its settings: the shuffle's configuration
/// and the topics' partition counts, prepared (the internal topic created) by `Runtime::build`.
#[cfg(feature = "kafka")]
pub struct Repartition {
    pub shuffle: crate::sources::shuffle::ShuffleConfig,
    pub topology: crate::repartition::Topology,
}

/// Without the `kafka` feature there is nothing to repartition.
#[cfg(not(feature = "kafka"))]
pub enum Repartition {}

#[cfg(feature = "kafka")]
use crate::sources::shuffle::Shuffle;
/// Without the `kafka` feature there is no shuffle.
#[cfg(not(feature = "kafka"))]
pub enum Shuffle {}
#[cfg(not(feature = "kafka"))]
impl Shuffle {
    fn stop(self) {
        match self {}
    }

    fn stats(&self) -> Arc<crate::repartition::ShuffleStats> {
        match *self {}
    }
}

/// The shuffle's configuration for a repartitioning Kafka run.
#[cfg(feature = "kafka")]
pub fn shuffle_config(
    k: &crate::settings::KafkaSettings,
    mapping: Option<Arc<EventMapping>>,
    max_event_skew_ms: Option<i64>,
) -> crate::sources::shuffle::ShuffleConfig {
    let host = crate::settings::hostname();
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    crate::sources::shuffle::ShuffleConfig {
        brokers: k.brokers.clone(),
        source_topic: k.topic.clone(),
        internal_topic: k.input_topic(),
        group_id: crate::repartition::shuffle_group(&k.group_id),
        // Stable with --instance-id: a restarted host fences its crashed predecessor's open
        // transaction at once. Without one, unique per process (host, pid, start time), and a
        // killed host's open transaction is aborted by the broker after the transaction timeout.
        instance_id: k.instance_id.clone(),
        process_tag: format!("{host}.{}.{started}{}", std::process::id(), k.member_tag()),
        options: k.options.clone(),
        mapping,
        max_event_skew_ms,
    }
}

/// A repartitioning pipeline's shuffle (`settings` of that pipeline: its own ids) over the
/// topics `prepare_repartition` read.
#[cfg(feature = "kafka")]
pub fn repartition(settings: &crate::settings::Settings, topology: crate::repartition::Topology) -> anyhow::Result<Repartition> {
    let k = settings.kafka().ok_or_else(|| anyhow::anyhow!("--repartition applies to Kafka events"))?;
    Ok(Repartition { shuffle: shuffle_config(k, settings.event_mapping.clone(), settings.pipeline.max_event_skew_ms), topology })
}

#[cfg(not(feature = "kafka"))]
pub fn repartition(_: &crate::settings::Settings, _: crate::repartition::Topology) -> anyhow::Result<Repartition> {
    anyhow::bail!("--repartition applies to Kafka events: this rtscore was built without the `kafka` feature")
}

impl Source {
    /// Starts the source. `scenarios` are what the generator makes events for; `stop` ends the
    /// Kafka consumer (after the runtime's last commit).
    pub fn open(
        settings: &SourceSettings,
        event_mapping: Option<Arc<EventMapping>>,
        scenarios: Vec<ScenarioKey>,
        health: &HealthReporter,
        stop: watch::Receiver<bool>,
        repartition: Option<Repartition>,
    ) -> anyhow::Result<Source> {
        let (tx, records) = sources::channel(8);
        // A platform's own event shape applies to its events, never to generated ones.
        let mapped = matches!(settings, SourceSettings::File(_) | SourceSettings::Kafka(_));
        let tx = tx.with_event_mapping(event_mapping.filter(|_| mapped));
        let backlog = records.backlog();
        let (task, kafka) = match settings {
            SourceSettings::File(path) => (sources::file::spawn_file_source(path.clone(), tx), None),
            SourceSettings::Generator(g) => {
                let cfg = GeneratorConfig {
                    scenarios,
                    events_per_second: g.events_per_second,
                    time_scale: g.time_scale,
                    limit: g.limit,
                    items_per_scenario: 5_000,
                    seed: 42,
                };
                (spawn_generator(cfg, tx), None)
            }
            #[cfg(not(feature = "kafka"))]
            SourceSettings::Kafka(k) => {
                let _ = (health, stop, repartition);
                anyhow::bail!("cannot read topic {} on {}: this rtscore was built without the `kafka` feature", k.topic, k.brokers)
            }
            #[cfg(feature = "kafka")]
            SourceSettings::Kafka(k) => {
                // Repartitioning: the shuffle forwards the source topic to the internal one,
                // which the pipeline reads as it reads a scenario-keyed topic.
                let shuffle = match (&k.repartition, repartition) {
                    (Some(_), Some(r)) => Some(crate::sources::shuffle::spawn(r.shuffle, r.topology)?),
                    (Some(_), None) => anyhow::bail!("--repartition: the internal topic was not prepared"),
                    (None, _) => None,
                };
                let cfg = KafkaSourceConfig {
                    brokers: k.brokers.clone(),
                    topic: k.input_topic(),
                    group_id: k.group_id.clone(),
                    client_id: format!("rtscore-{}{}", std::process::id(), k.member_tag()),
                    reachable: health.source_ok_flag(),
                    options: k.options.clone(),
                    repartitioned: shuffle.is_some(),
                };
                let kafka = spawn_kafka_source(cfg, tx, stop)?;
                (kafka.task, Some((kafka.committer, kafka.lag, kafka.partition_changes, shuffle)))
            }
        };
        Ok(match kafka {
            Some((committer, lag, partition_changes, shuffle)) => Source {
                records,
                backlog,
                task,
                committer: Some(committer),
                lag: Some(lag),
                partition_changes,
                _no_partitions: None,
                shuffle,
            },
            None => {
                let (no_partitions, partition_changes) = mpsc::unbounded_channel();
                Source {
                    records,
                    backlog,
                    task,
                    committer: None,
                    lag: None,
                    partition_changes,
                    _no_partitions: Some(no_partitions),
                    shuffle: None,
                }
            }
        })
    }

    /// The shuffle's counters, when this source repartitions.
    pub fn shuffle_stats(&self) -> Option<Arc<crate::repartition::ShuffleStats>> {
        self.shuffle.as_ref().map(Shuffle::stats)
    }

    /// Closes the records channel (a source blocked on a full channel stops) and waits for
    /// the source to end; a shuffle commits its open transaction and leaves its group.
    pub async fn close(self) {
        drop(self.records);
        let _ = self.task.await;
        if let Some(shuffle) = self.shuffle {
            let _ = tokio::task::spawn_blocking(move || shuffle.stop()).await;
        }
    }
}
