//! Event sources: Kafka, a JSONL file, and the demo generator. Each runs as its own task and
//! hands the pipeline [`RecordBatch`]es over a bounded channel, so a slow pipeline pushes back
//! on the source instead of buffering without limit.

pub mod file;
pub mod generator;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "kafka")]
pub mod shuffle;
#[cfg(not(feature = "kafka"))]
pub mod kafka {
    //! Built without the `kafka` feature: there is no Kafka source, so no offsets to commit.

    /// Commits a Kafka source's offsets; cannot exist in this build.
    pub enum KafkaCommitter {}

    impl KafkaCommitter {
        pub fn commit(&self, _next: &std::collections::BTreeMap<i32, i64>) -> anyhow::Result<()> {
            match *self {}
        }

        pub fn commit_next(&self, _next: &std::collections::BTreeMap<i32, i64>, _wait: bool) -> anyhow::Result<()> {
            match *self {}
        }
    }
}

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::event::{EventMapping, RecordBatch};

/// A change in the partitions this instance reads (Kafka consumer groups).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionChange {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

/// Parses `batch` on the source's thread when the pipeline already has batches waiting, i.e.
/// when the pipeline thread is the bottleneck; otherwise leaves it to the pipeline, which is
/// idle. The split settles where both threads are busy, whichever of them is faster on the
/// machine (parsing is about half of the per-event work, docs/benchmarks.md), and a live
/// stream that the pipeline keeps up with is not delayed by parsing twice over.
/// On one core (`taskset -c 0`, a one-CPU container) there is no second thread to win: parsing
/// ahead would only add a copy of every field, so the pipeline parses.
pub fn parse_if_pipeline_behind(batch: &mut RecordBatch, tx: &SourceSender) {
    if tx.tx.capacity() < tx.tx.max_capacity() && more_than_one_cpu() {
        tx.shape(batch);
        batch.parse_ahead();
        metrics::counter!("rtscore_events_parsed_by_source_total").increment(batch.len() as u64);
    }
}

/// Whether this process may run on more than one CPU (its affinity mask and CPU quota), asked
/// once.
fn more_than_one_cpu() -> bool {
    static MANY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *MANY.get_or_init(|| std::thread::available_parallelism().map_or(true, |n| n.get() > 1))
}

/// What a source sends down its channel.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per batch of up to 2,048 records, rarely the small variant; boxing would only add an allocation"
)]
pub enum SourceMessage {
    Records(RecordBatch),
    /// A finite source reached its end: the pipeline emits every remaining window (DESIGN §4).
    End,
}

/// How much input waits for the pipeline, for `/status` and `/metrics`: an operator sees
/// overload (a backlog that grows) before it bites.
#[derive(Debug, Default)]
pub struct Backlog {
    /// Events sent by the source and not yet taken by the pipeline.
    queued: AtomicU64,
    /// Events a rate-driven source (the generator) is behind its schedule.
    behind: AtomicU64,
    /// Bytes a file source has read, and the file's size (0: not a file of known size).
    input_read: AtomicU64,
    input_total: AtomicU64,
}

impl Backlog {
    pub fn queued_events(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    pub fn behind_schedule(&self) -> u64 {
        self.behind.load(Ordering::Relaxed)
    }

    pub fn set_behind_schedule(&self, events: u64) {
        self.behind.store(events, Ordering::Relaxed);
    }

    /// A file source of `bytes` starts.
    pub fn set_input_size(&self, bytes: u64) {
        self.input_total.store(bytes, Ordering::Relaxed);
    }

    /// A file source has read `bytes` more.
    pub fn add_input_read(&self, bytes: u64) {
        self.input_read.fetch_add(bytes, Ordering::Relaxed);
    }

    /// (bytes read, file size) of a file source of known size.
    pub fn input_progress(&self) -> Option<(u64, u64)> {
        let total = self.input_total.load(Ordering::Relaxed);
        (total > 0).then(|| (self.input_read.load(Ordering::Relaxed).min(total), total))
    }
}

/// The bounded hand-over from a source task to the pipeline: `batches` batches at most, so a
/// slow pipeline pushes back on the source, with the events in flight counted.
pub fn channel(batches: usize) -> (SourceSender, SourceReceiver) {
    let (tx, rx) = mpsc::channel(batches);
    let backlog = Arc::new(Backlog::default());
    (SourceSender { tx, backlog: backlog.clone(), mapping: None }, SourceReceiver { rx, backlog })
}

/// A source's end of [`channel`].
#[derive(Clone)]
pub struct SourceSender {
    tx: mpsc::Sender<SourceMessage>,
    backlog: Arc<Backlog>,
    /// The event shape of this source's records (`--event-field`), stamped on every batch.
    mapping: Option<Arc<EventMapping>>,
}

/// The pipeline stopped listening.
#[derive(Debug, thiserror::Error)]
#[error("the pipeline stopped")]
pub struct Closed;

impl SourceSender {
    /// Records sent from now on are read in `mapping`'s shape (`None`: the default shape).
    pub fn with_event_mapping(mut self, mapping: Option<Arc<EventMapping>>) -> Self {
        self.mapping = mapping;
        self
    }

    /// Stamps the source's event shape on `batch`, before it is parsed anywhere.
    fn shape(&self, batch: &mut RecordBatch) {
        if self.mapping.is_some() && batch.mapping.is_none() {
            batch.mapping = self.mapping.clone();
        }
    }

    pub async fn send(&self, mut msg: SourceMessage) -> Result<(), Closed> {
        if let SourceMessage::Records(b) = &mut msg {
            self.shape(b);
        }
        let n = self.count(&msg);
        let sent = self.tx.send(msg).await.map_err(|_| Closed);
        self.uncount_if_failed(n, &sent);
        sent
    }

    /// For sources on a blocking thread (files, stdin).
    pub fn blocking_send(&self, mut msg: SourceMessage) -> Result<(), Closed> {
        if let SourceMessage::Records(b) = &mut msg {
            self.shape(b);
        }
        let n = self.count(&msg);
        let sent = self.tx.blocking_send(msg).map_err(|_| Closed);
        self.uncount_if_failed(n, &sent);
        sent
    }

    pub fn backlog(&self) -> &Backlog {
        &self.backlog
    }

    /// Counted before the send, so the pipeline never takes more than was counted.
    fn count(&self, msg: &SourceMessage) -> u64 {
        let n = match msg {
            SourceMessage::Records(b) => b.len() as u64,
            SourceMessage::End => 0,
        };
        self.backlog.queued.fetch_add(n, Ordering::Relaxed);
        n
    }

    fn uncount_if_failed(&self, n: u64, sent: &Result<(), Closed>) {
        if sent.is_err() {
            self.backlog.queued.fetch_sub(n, Ordering::Relaxed);
        }
    }
}

/// The pipeline's end of [`channel`].
pub struct SourceReceiver {
    rx: mpsc::Receiver<SourceMessage>,
    backlog: Arc<Backlog>,
}

impl SourceReceiver {
    /// The next message; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<SourceMessage> {
        let msg = self.rx.recv().await;
        if let Some(SourceMessage::Records(b)) = &msg {
            self.backlog.queued.fetch_sub(b.len() as u64, Ordering::Relaxed);
        }
        msg
    }

    pub fn backlog(&self) -> Arc<Backlog> {
        self.backlog.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_parsed_ahead_only_while_the_pipeline_has_one_waiting() {
        let (tx, mut rx) = channel(4);
        let mut batch = RecordBatch::default();
        batch.push(br#"{"tenant_id":"t","scenario_id":"s","user_id":"u","item_id":"i","action":"view","ts":1767225600000}"#);
        batch.push(b"{not json");
        parse_if_pipeline_behind(&mut batch, &tx);
        assert!(batch.parsed.is_none(), "an idle pipeline parses itself");
        tx.tx.try_send(SourceMessage::End).unwrap();
        parse_if_pipeline_behind(&mut batch, &tx);
        // On one CPU (the test pinned) the pipeline parses: there is no second thread to win.
        assert_eq!(batch.parsed.is_some(), more_than_one_cpu());
        assert_eq!(batch.event(0).unwrap().item_id, "i");
        assert_eq!(batch.event(1).unwrap_err().kind(), "json");
        assert!(matches!(rx.rx.try_recv(), Ok(SourceMessage::End)));
    }

    #[tokio::test]
    async fn the_backlog_counts_events_sent_and_not_yet_taken() {
        let (tx, mut rx) = channel(4);
        let mut batch = RecordBatch::default();
        (0..3).for_each(|_| batch.push(b"{}"));
        tx.send(SourceMessage::Records(batch.clone())).await.unwrap();
        tx.send(SourceMessage::Records(batch)).await.unwrap();
        tx.send(SourceMessage::End).await.unwrap();
        assert_eq!(rx.backlog().queued_events(), 6);
        assert!(matches!(rx.recv().await, Some(SourceMessage::Records(_))));
        assert_eq!(rx.backlog().queued_events(), 3);
        rx.recv().await;
        rx.recv().await;
        assert_eq!(rx.backlog().queued_events(), 0);
        drop(rx);
        assert!(tx.send(SourceMessage::Records(RecordBatch::default())).await.is_err());
        assert_eq!(tx.backlog().queued_events(), 0, "a failed send is not counted");
    }
}
