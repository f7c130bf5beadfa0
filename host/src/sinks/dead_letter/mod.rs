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
#[cfg(feature = "kafka")]
mod kafka;

use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;

use crate::event::Position;
use crate::event::RejectReason;

pub enum DeadLetterSink {
    #[cfg(feature = "kafka")]
    Kafka(kafka::KafkaDeadLetters),
    File(DeadLetterFile),
    Log {
        logged: u64,
    },
}

/// One rejected record.
#[derive(Debug, Clone)]
struct Letter {
    raw: Vec<u8>,
    reason: String,
    kind: &'static str,
    pos: Option<Position>,
    /// `--repartition`: where the shuffle read it (`<topic>/<partition>/<offset>`).
    source: Option<String>,
}

impl DeadLetterSink {
    /// The dead-letter topic, produced with the same client options as the consumer
    /// (`--kafka-option`: SASL, TLS, ...); rejects the topic refuses go to `fallback`.
    pub fn kafka(brokers: &str, topic: &str, options: &[(String, String)], fallback: &Path) -> anyhow::Result<Self> {
        #[cfg(feature = "kafka")]
        return Ok(Self::Kafka(kafka::KafkaDeadLetters::start(brokers, topic, options, fallback)?));
        #[cfg(not(feature = "kafka"))]
        {
            let _ = (options, fallback);
            anyhow::bail!("cannot dead-letter to topic {topic} on {brokers}: this rtscore was built without the `kafka` feature")
        }
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
    /// `source`: where a repartitioning host's shuffle read the record (its `rtscore-src-pos`).
    pub fn send(&mut self, raw: &[u8], reason: &RejectReason, pos: Option<Position>, source: Option<&str>) -> anyhow::Result<()> {
        metrics::counter!("rtscore_events_rejected_total", "reason" => reason.kind()).increment(1);
        let letter = Letter { raw: raw.to_vec(), reason: reason.to_string(), kind: reason.kind(), pos, source: source.map(str::to_string) };
        match self {
            #[cfg(feature = "kafka")]
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
            #[cfg(feature = "kafka")]
            DeadLetterSink::Kafka(k) => k.flush(),
            DeadLetterSink::Log { .. } => Ok(()),
        }
    }

    /// At shutdown: deliveries in flight get [`SHUTDOWN_WAIT`], the rest go to the fallback file.
    pub async fn close(&mut self) -> anyhow::Result<()> {
        #[cfg(feature = "kafka")]
        if let DeadLetterSink::Kafka(k) = self {
            k.close().await;
        }
        self.flush()
    }
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
        if let Some(at) = &l.source {
            rec["src_pos"] = at.as_str().into();
        }
        if let Some(cause) = topic_refused {
            rec["dead_letter_topic_error"] = cause.into();
        }
        // One `write_all` per whole line on a file opened to append: the pipelines of a host
        // (`--threads`) append to one file, and no line of one splits another's.
        let mut line = serde_json::to_vec(&rec)?;
        line.push(b'\n');
        self.writer()?.write_all(&line)?;
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if let Some(w) = &mut self.out {
            w.flush()?;
        }
        Ok(())
    }
}
