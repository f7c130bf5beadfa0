//! Dead-letter sink: rejected events with their original bytes and the reason (DESIGN §2).
//! Kafka mode produces to the dead-letter topic (reason in headers); otherwise a JSONL file, or
//! rate-limited log lines when no file is given.
//!
//! The topic is written without ever blocking the pipeline: rejects are handed to a
//! background task over a bounded queue and produced asynchronously (librdkafka batches and
//! retries them within `message.timeout.ms`). A record the topic does not take (queue full,
//! a permanent error such as an oversized record or a missing ACL, or still undelivered at
//! shutdown) goes to the local fallback file, with the reason and why the topic refused it, and
//! is counted (`rtscore_dead_letter_fallback_total{cause}`). Nothing is dropped, and nothing
//! waits on the broker.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::mpsc;

use crate::event::Position;
use crate::event::RejectReason;

/// Rejects waiting for the background producer; beyond this they go to the fallback file.
const QUEUE: usize = 10_000;
/// How long shutdown waits for deliveries in flight before writing them to the fallback file.
const SHUTDOWN_WAIT: Duration = Duration::from_millis(500);

pub enum DeadLetterSink {
    Kafka(KafkaDeadLetters),
    File(DeadLetterFile),
    Log { logged: u64 },
}

/// One rejected record.
#[derive(Debug, Clone)]
struct Letter {
    raw: Vec<u8>,
    reason: String,
    kind: &'static str,
    pos: Option<Position>,
}

impl DeadLetterSink {
    /// The dead-letter topic, produced with the same client options as the consumer
    /// (`--kafka-option`: SASL, TLS, ...); rejects the topic refuses go to `fallback`.
    pub fn kafka(brokers: &str, topic: &str, options: &[(String, String)], fallback: &Path) -> anyhow::Result<Self> {
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", brokers).set("message.timeout.ms", "30000").set("enable.idempotence", "true");
        for (k, v) in options {
            client.set(k, v);
        }
        let producer: FutureProducer = client.create().with_context(|| format!("cannot create the dead-letter producer for {brokers}"))?;
        let fallback = Arc::new(Mutex::new(DeadLetterFile::open_lazily(fallback)));
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(deliver(producer, topic.to_string(), rx, fallback.clone()));
        Ok(Self::Kafka(KafkaDeadLetters { tx: Some(tx), fallback, task: Some(task) }))
    }

    pub fn file(path: &Path) -> anyhow::Result<Self> {
        let mut f = DeadLetterFile::open_lazily(path);
        f.writer()?;
        Ok(Self::File(f))
    }

    pub fn log() -> Self {
        Self::Log { logged: 0 }
    }

    /// Never waits on a broker: the Kafka sink only enqueues.
    pub fn send(&mut self, raw: &[u8], reason: &RejectReason, pos: Option<Position>) -> anyhow::Result<()> {
        metrics::counter!("rtscore_events_rejected_total", "reason" => reason.kind()).increment(1);
        let letter = Letter { raw: raw.to_vec(), reason: reason.to_string(), kind: reason.kind(), pos };
        match self {
            DeadLetterSink::Kafka(k) => k.enqueue(letter),
            DeadLetterSink::File(f) => f.write(&letter, None),
            DeadLetterSink::Log { logged } => {
                *logged += 1;
                // The first hundred in full, then one in a thousand: enough to diagnose, never a flood.
                if *logged <= 100 || logged.is_multiple_of(1000) {
                    tracing::warn!(reason = %reason, rejected_so_far = *logged, raw = %String::from_utf8_lossy(&raw[..raw.len().min(200)]), "event rejected (no --dead-letter-file)");
                }
                Ok(())
            }
        }
    }

    pub fn flush(&mut self) -> anyhow::Result<()> {
        match self {
            DeadLetterSink::File(f) => f.flush(),
            DeadLetterSink::Kafka(k) => lock(&k.fallback).flush(),
            DeadLetterSink::Log { .. } => Ok(()),
        }
    }

    /// At shutdown: deliveries in flight get [`SHUTDOWN_WAIT`], the rest go to the fallback file.
    pub async fn close(&mut self) -> anyhow::Result<()> {
        if let DeadLetterSink::Kafka(k) = self {
            k.tx = None;
            if let Some(task) = k.task.take() {
                // The task itself bounds its wait; this only guards against a hung join.
                let _ = tokio::time::timeout(SHUTDOWN_WAIT * 2, task).await;
            }
        }
        self.flush()
    }
}

pub struct KafkaDeadLetters {
    tx: Option<mpsc::Sender<Letter>>,
    fallback: Arc<Mutex<DeadLetterFile>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl KafkaDeadLetters {
    fn enqueue(&mut self, letter: Letter) -> anyhow::Result<()> {
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

fn lock(f: &Mutex<DeadLetterFile>) -> std::sync::MutexGuard<'_, DeadLetterFile> {
    // A panic while holding it cannot leave the file half-described: each record is one write.
    f.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
    headers
}

/// Rejects as JSON lines: reason, kind, original bytes (base64 when not UTF-8), position, and
/// for the Kafka fallback why the topic did not take it. Opened on first use.
pub struct DeadLetterFile {
    path: PathBuf,
    out: Option<BufWriter<std::fs::File>>,
}

impl DeadLetterFile {
    fn open_lazily(path: &Path) -> Self {
        Self { path: path.to_path_buf(), out: None }
    }

    fn writer(&mut self) -> anyhow::Result<&mut BufWriter<std::fs::File>> {
        if self.out.is_none() {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .with_context(|| format!("cannot open the dead-letter file {}", self.path.display()))?;
            self.out = Some(BufWriter::new(f));
        }
        self.out.as_mut().context("dead-letter file")
    }

    fn write(&mut self, l: &Letter, topic_refused: Option<&str>) -> anyhow::Result<()> {
        let mut rec = serde_json::json!({"reason": l.reason, "kind": l.kind});
        match std::str::from_utf8(&l.raw) {
            Ok(s) => rec["raw"] = s.into(),
            Err(_) => rec["raw_base64"] = base64::engine::general_purpose::STANDARD.encode(&l.raw).into(),
        }
        if let Some(p) = l.pos {
            rec["partition"] = p.partition.into();
            rec["offset"] = p.offset.into();
        }
        if let Some(cause) = topic_refused {
            rec["dead_letter_topic_error"] = cause.into();
        }
        let w = self.writer()?;
        serde_json::to_writer(&mut *w, &rec)?;
        w.write_all(b"\n")?;
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if let Some(w) = &mut self.out {
            w.flush()?;
        }
        Ok(())
    }
}
