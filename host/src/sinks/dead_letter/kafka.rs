//! The dead-letter topic: rejects are queued to a background producer and never wait on the
//! broker; what the topic does not take goes to the fallback file (module docs of the parent).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::mpsc;

use super::{DeadLetterFile, Letter};

/// Rejects waiting for the background producer; beyond this they go to the fallback file.
const QUEUE: usize = 10_000;
/// How long shutdown waits for deliveries in flight before writing them to the fallback file.
const SHUTDOWN_WAIT: Duration = Duration::from_millis(500);

pub struct KafkaDeadLetters {
    tx: Option<mpsc::Sender<Letter>>,
    fallback: Arc<Mutex<DeadLetterFile>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl KafkaDeadLetters {
    /// The dead-letter topic, produced with the same client options as the consumer
    /// (`--kafka-option`: SASL, TLS, ...); rejects the topic refuses go to `fallback`.
    pub fn start(brokers: &str, topic: &str, options: &[(String, String)], fallback: &Path) -> anyhow::Result<Self> {
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", brokers).set("message.timeout.ms", "30000").set("enable.idempotence", "true");
        for (k, v) in options {
            client.set(k, v);
        }
        let producer: FutureProducer = client.create().with_context(|| format!("cannot create the dead-letter producer for {brokers}"))?;
        let fallback = Arc::new(Mutex::new(DeadLetterFile::open_lazily(fallback)));
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(deliver(producer, topic.to_string(), rx, fallback.clone()));
        Ok(KafkaDeadLetters { tx: Some(tx), fallback, task: Some(task) })
    }

    pub fn flush(&self) -> anyhow::Result<()> {
        lock(&self.fallback).flush()
    }

    /// Deliveries in flight get [`SHUTDOWN_WAIT`], the rest go to the fallback file.
    pub async fn close(&mut self) {
        self.tx = None;
        if let Some(task) = self.task.take() {
            // The task itself bounds its wait; this only guards against a hung join.
            let _ = tokio::time::timeout(SHUTDOWN_WAIT * 2, task).await;
        }
    }

    pub(super) fn enqueue(&mut self, letter: Letter) -> anyhow::Result<()> {
        let refused = match &self.tx {
            Some(tx) => match tx.try_send(letter) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(l)) => (l, "queue_full"),
                Err(mpsc::error::TrySendError::Closed(l)) => (l, "closed"),
            },
            None => (letter, "closed"),
        };
        let (letter, cause) = refused;
        metrics::counter!("rtscore_dead_letter_fallback_total", "cause" => cause).increment(1);
        lock(&self.fallback).write(&letter, Some(cause))
    }
}

/// Produces letters as they come, collecting deliveries; a refused or failed one goes to the
/// fallback file.
async fn deliver(producer: FutureProducer, topic: String, mut rx: mpsc::Receiver<Letter>, fallback: Arc<Mutex<DeadLetterFile>>) {
    // Letters in flight by id: their delivery futures resolve to the id.
    let (mut waiting, mut next_id) = (std::collections::HashMap::<u64, Letter>::new(), 0u64);
    let mut in_flight = FuturesUnordered::new();
    let fail = |letter: &Letter, cause: &str| {
        metrics::counter!("rtscore_dead_letter_fallback_total", "cause" => "delivery").increment(1);
        tracing::warn!(cause, topic = %topic, "the dead-letter topic did not take a record; written to the fallback file");
        let mut f = lock(&fallback);
        if let Err(e) = f.write(letter, Some(cause)).and_then(|()| f.flush()) {
            tracing::error!(error = %format!("{e:#}"), "cannot write the dead-letter fallback file");
        }
    };
    let settle =
        |waiting: &mut std::collections::HashMap<u64, Letter>,
         id: u64,
         result: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, futures::channel::oneshot::Canceled>| {
            let Some(letter) = waiting.remove(&id) else { return };
            match result {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => fail(&letter, &e.to_string()),
                Err(_) => fail(&letter, "producer closed"),
            }
        };
    loop {
        tokio::select! {
            letter = rx.recv() => {
                let Some(letter) = letter else { break };
                let record: FutureRecord<'_, (), [u8]> = FutureRecord::to(&topic).payload(letter.raw.as_slice()).headers(headers(&letter));
                match producer.send_result(record) {
                    Ok(delivery) => {
                        let id = next_id;
                        next_id += 1;
                        waiting.insert(id, letter);
                        in_flight.push(async move { (id, delivery.await) });
                    }
                    Err((e, _)) => fail(&letter, &e.to_string()),
                }
            }
            Some((id, result)) = in_flight.next(), if !in_flight.is_empty() => settle(&mut waiting, id, result),
        }
    }
    // Shutdown: what is delivered in time is delivered; the rest is kept locally.
    let deadline = tokio::time::Instant::now() + SHUTDOWN_WAIT;
    while let Ok(Some((id, result))) = tokio::time::timeout_at(deadline, in_flight.next()).await {
        settle(&mut waiting, id, result);
    }
    for letter in waiting.values() {
        fail(letter, "not delivered before shutdown");
    }
}

fn headers(l: &Letter) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new()
        .insert(Header { key: "rtscore-reason", value: Some(l.reason.as_str()) })
        .insert(Header { key: "rtscore-reason-kind", value: Some(l.kind) });
    if let Some(p) = l.pos {
        let (partition, offset) = (p.partition.to_string(), p.offset.to_string());
        headers = headers
            .insert(Header { key: "rtscore-source-partition", value: Some(partition.as_str()) })
            .insert(Header { key: "rtscore-source-offset", value: Some(offset.as_str()) });
    }
    if let Some(at) = &l.source {
        headers = headers.insert(Header { key: crate::repartition::marker::SOURCE_POSITION_HEADER, value: Some(at.as_str()) });
    }
    headers
}

fn lock(f: &Mutex<DeadLetterFile>) -> std::sync::MutexGuard<'_, DeadLetterFile> {
    // A panic while holding it cannot leave the file half-described: each record is one write.
    f.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
