//! Dead-letter sink: rejected events with their original bytes and the reason (DESIGN §2).
//! Kafka mode produces to the dead-letter topic (reason in headers); otherwise a JSONL file, or
//! rate-limited log lines when no file is given. A failed produce is retried, never dropped.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::event::RejectReason;
use crate::sources::Position;

pub enum DeadLetterSink {
    Kafka { producer: FutureProducer, topic: String },
    File(BufWriter<std::fs::File>),
    Log { logged: u64 },
}

impl DeadLetterSink {
    pub fn kafka(brokers: &str, topic: &str) -> anyhow::Result<Self> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("message.timeout.ms", "30000")
            .set("enable.idempotence", "true")
            .create()
            .with_context(|| format!("cannot create the dead-letter producer for {brokers}"))?;
        Ok(Self::Kafka { producer, topic: topic.to_string() })
    }

    pub fn file(path: &Path) -> anyhow::Result<Self> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open --dead-letter-file {}", path.display()))?;
        Ok(Self::File(BufWriter::new(f)))
    }

    pub fn log() -> Self {
        Self::Log { logged: 0 }
    }

    pub async fn send(&mut self, raw: &[u8], reason: &RejectReason, pos: Option<Position>) -> anyhow::Result<()> {
        metrics::counter!("rtscore_events_rejected_total", "reason" => reason.kind()).increment(1);
        match self {
            DeadLetterSink::Kafka { producer, topic } => {
                let reason_text = reason.to_string();
                let (partition, offset) = pos.map(|p| (p.partition.to_string(), p.offset.to_string())).unzip();
                let mut headers = OwnedHeaders::new()
                    .insert(Header { key: "rtscore-reason", value: Some(reason_text.as_str()) })
                    .insert(Header { key: "rtscore-reason-kind", value: Some(reason.kind()) });
                if let (Some(p), Some(o)) = (&partition, &offset) {
                    headers = headers
                        .insert(Header { key: "rtscore-source-partition", value: Some(p.as_str()) })
                        .insert(Header { key: "rtscore-source-offset", value: Some(o.as_str()) });
                }
                let mut delay = Duration::from_millis(100);
                loop {
                    let record: FutureRecord<'_, (), [u8]> = FutureRecord::to(topic).payload(raw).headers(headers.clone());
                    match producer.send(record, Duration::from_secs(10)).await {
                        Ok(_) => return Ok(()),
                        Err((e, _)) => {
                            tracing::warn!(error = %e, topic = %topic, "dead-letter produce failed; retrying");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(5));
                        }
                    }
                }
            }
            DeadLetterSink::File(w) => {
                let mut rec = serde_json::json!({"reason": reason.to_string(), "kind": reason.kind()});
                match std::str::from_utf8(raw) {
                    Ok(s) => rec["raw"] = s.into(),
                    Err(_) => rec["raw_base64"] = base64::engine::general_purpose::STANDARD.encode(raw).into(),
                }
                if let Some(p) = pos {
                    rec["partition"] = p.partition.into();
                    rec["offset"] = p.offset.into();
                }
                serde_json::to_writer(&mut *w, &rec)?;
                w.write_all(b"\n")?;
                Ok(())
            }
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
        if let DeadLetterSink::File(w) = self {
            w.flush()?;
        }
        Ok(())
    }
}
