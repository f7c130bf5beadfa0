//! The host's health as the runtime reports it and the HTTP server reads it: readiness
//! (started, outputs and source reachable), the latest `/status` document, and the live count
//! of events read.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::watch;

/// What `/readyz` and `/status` read: the server's side of [`channel`].
#[derive(Clone)]
pub struct Health {
    ready: Arc<AtomicBool>,
    sinks_ok: Arc<AtomicBool>,
    source_ok: Arc<AtomicBool>,
    status: watch::Receiver<serde_json::Value>,
    events_in: Arc<AtomicU64>,
}

impl Health {
    /// The runtime has started: configs loaded, the source running ([`HealthReporter::set_ready`]).
    pub fn started(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Every sink reaches its service.
    pub fn sinks_ok(&self) -> bool {
        self.sinks_ok.load(Ordering::Relaxed)
    }

    /// The event source reaches its broker.
    pub fn source_ok(&self) -> bool {
        self.source_ok.load(Ordering::Relaxed)
    }

    /// The latest `/status` document, with the live count of events read in its `stats`.
    pub fn status(&self) -> serde_json::Value {
        let mut doc = self.status.borrow().clone();
        if let Some(stats) = doc.get_mut("stats").and_then(serde_json::Value::as_object_mut) {
            stats.insert("events_in".into(), self.events_in.load(Ordering::Relaxed).into());
        }
        doc
    }
}

/// The runtime's side of [`Health`].
#[derive(Clone)]
pub struct HealthReporter {
    ready: Arc<AtomicBool>,
    /// Sinks flip this while a dependency is down; ready = started && every sink reachable.
    sinks_ok: Arc<AtomicBool>,
    /// The event source clears this while its broker is unreachable.
    source_ok: Arc<AtomicBool>,
    status: watch::Sender<serde_json::Value>,
    /// Events read so far, updated after every source batch: `/status` reports it live while
    /// the rest of the document refreshes on the runtime's one-second tick.
    events_in: Arc<AtomicU64>,
}

impl HealthReporter {
    pub fn set_ready(&self, ready: bool) {
        if self.ready.swap(ready, Ordering::Relaxed) != ready {
            tracing::info!(ready, "readiness changed");
        }
    }

    /// A flag a sink clears while its service is unreachable (readiness follows it).
    pub fn sinks_ok_flag(&self) -> Arc<AtomicBool> {
        self.sinks_ok.clone()
    }

    /// A flag the event source clears while its broker is unreachable (readiness follows it).
    pub fn source_ok_flag(&self) -> Arc<AtomicBool> {
        self.source_ok.clone()
    }

    pub fn set_status(&self, status: serde_json::Value) {
        self.status.send_replace(status);
    }

    pub fn set_events_in(&self, n: u64) {
        self.events_in.store(n, Ordering::Relaxed);
    }
}

/// A connected pair: the runtime reports through the [`HealthReporter`], the HTTP server reads
/// the [`Health`].
pub fn channel() -> (HealthReporter, Health) {
    let ready = Arc::new(AtomicBool::new(false));
    let sinks_ok = Arc::new(AtomicBool::new(true));
    let source_ok = Arc::new(AtomicBool::new(true));
    let events_in = Arc::new(AtomicU64::new(0));
    let (tx, rx) = watch::channel(serde_json::Value::Null);
    (
        HealthReporter {
            ready: ready.clone(),
            sinks_ok: sinks_ok.clone(),
            source_ok: source_ok.clone(),
            status: tx,
            events_in: events_in.clone(),
        },
        Health { ready, sinks_ok, source_ok, status: rx, events_in },
    )
}
