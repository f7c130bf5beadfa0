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
                let _ = (health, stop);
                anyhow::bail!("cannot read topic {} on {}: this rtscore was built without the `kafka` feature", k.topic, k.brokers)
            }
            #[cfg(feature = "kafka")]
            SourceSettings::Kafka(k) => {
                let cfg = KafkaSourceConfig {
                    brokers: k.brokers.clone(),
                    topic: k.topic.clone(),
                    group_id: k.group_id.clone(),
                    client_id: format!("rtscore-{}", std::process::id()),
                    reachable: health.source_ok_flag(),
                    options: k.options.clone(),
                };
                let kafka = spawn_kafka_source(cfg, tx, stop)?;
                (kafka.task, Some((kafka.committer, kafka.lag, kafka.partition_changes)))
            }
        };
        Ok(match kafka {
            Some((committer, lag, partition_changes)) => {
                Source { records, backlog, task, committer: Some(committer), lag: Some(lag), partition_changes, _no_partitions: None }
            }
            None => {
                let (no_partitions, partition_changes) = mpsc::unbounded_channel();
                Source { records, backlog, task, committer: None, lag: None, partition_changes, _no_partitions: Some(no_partitions) }
            }
        })
    }

    /// Closes the records channel (a source blocked on a full channel stops) and waits for
    /// the source to end.
    pub async fn close(self) {
        drop(self.records);
        let _ = self.task.await;
    }
}
