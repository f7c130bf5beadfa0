//! The host's health as the runtime reports it and the HTTP server reads it: readiness
//! (started, outputs and source reachable), the latest `/status` document, and the live count
//! of events read. With `--threads N` each pipeline reports on its own flags and the host is
//! ready when every pipeline is ([`members`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::watch;

/// One pipeline's flags and live count.
#[derive(Clone, Default)]
struct Flags {
    ready: Arc<AtomicBool>,
    sinks_ok: Arc<AtomicBool>,
    source_ok: Arc<AtomicBool>,
    events_in: Arc<AtomicU64>,
}

impl Flags {
    fn new() -> Self {
        let f = Self::default();
        f.sinks_ok.store(true, Ordering::Relaxed);
        f.source_ok.store(true, Ordering::Relaxed);
        f
    }
}

/// What `/readyz` and `/status` read: the server's side of [`channel`] or [`members`].
#[derive(Clone)]
pub struct Health {
    pipelines: Vec<Flags>,
    status: watch::Receiver<serde_json::Value>,
}

impl Health {
    fn all(&self, flag: impl Fn(&Flags) -> &AtomicBool) -> bool {
        self.pipelines.iter().all(|f| flag(f).load(Ordering::Relaxed))
    }

    /// The runtime has started: configs loaded, the source running ([`HealthReporter::set_ready`]).
    pub fn started(&self) -> bool {
        self.all(|f| &f.ready)
    }

    /// Every sink reaches its service.
    pub fn sinks_ok(&self) -> bool {
        self.all(|f| &f.sinks_ok)
    }

    /// The event source reaches its broker.
    pub fn source_ok(&self) -> bool {
        self.all(|f| &f.source_ok)
    }

    /// The latest `/status` document, with the live count of events read in its `stats`.
    pub fn status(&self) -> serde_json::Value {
        let mut doc = self.status.borrow().clone();
        if let Some(stats) = doc.get_mut("stats").and_then(serde_json::Value::as_object_mut) {
            let events_in: u64 = self.pipelines.iter().map(|f| f.events_in.load(Ordering::Relaxed)).sum();
            stats.insert("events_in".into(), events_in.into());
        }
        doc
    }
}

/// The runtime's side of [`Health`].
#[derive(Clone)]
pub struct HealthReporter {
    /// `ready`; `sinks_ok`, which sinks flip while a dependency is down (ready = started &&
    /// every sink reachable); `source_ok`, which the event source clears while its broker is
    /// unreachable; `events_in`, the events read so far, updated after every source batch:
    /// `/status` reports it live while the rest of the document refreshes on the runtime's tick.
    flags: Flags,
    status: Arc<watch::Sender<serde_json::Value>>,
}

impl HealthReporter {
    pub fn set_ready(&self, ready: bool) {
        if self.flags.ready.swap(ready, Ordering::Relaxed) != ready {
            tracing::info!(ready, "readiness changed");
        }
    }

    /// A flag a sink clears while its service is unreachable (readiness follows it).
    pub fn sinks_ok_flag(&self) -> Arc<AtomicBool> {
        self.flags.sinks_ok.clone()
    }

    /// A flag the event source clears while its broker is unreachable (readiness follows it).
    pub fn source_ok_flag(&self) -> Arc<AtomicBool> {
        self.flags.source_ok.clone()
    }

    pub fn set_status(&self, status: serde_json::Value) {
        self.status.send_replace(status);
    }

    pub fn set_events_in(&self, n: u64) {
        self.flags.events_in.store(n, Ordering::Relaxed);
    }
}

/// A connected pair: the runtime reports through the [`HealthReporter`], the HTTP server reads
/// the [`Health`].
pub fn channel() -> (HealthReporter, Health) {
    let (mut reporters, health) = members(1);
    (reporters.remove(0), health)
}

/// One reporter per pipeline of a host (`--threads`): the host is started, and its sinks and
/// source reachable, when every pipeline says so; `events_in` is their sum. They share one
/// `/status` document, which the pipelines write merged (`runtime::members`).
pub fn members(n: usize) -> (Vec<HealthReporter>, Health) {
    let (tx, status) = watch::channel(serde_json::Value::Null);
    let tx = Arc::new(tx);
    let pipelines: Vec<Flags> = (0..n.max(1)).map(|_| Flags::new()).collect();
    let reporters = pipelines.iter().map(|flags| HealthReporter { flags: flags.clone(), status: tx.clone() }).collect();
    (reporters, Health { pipelines, status })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_of_several_pipelines_is_ready_when_every_one_is_and_counts_them_all() {
        let (reporters, health) = members(2);
        reporters[0].set_ready(true);
        assert!(!health.started(), "one pipeline of two is not the host");
        reporters[1].set_ready(true);
        assert!(health.started());
        reporters[1].sinks_ok_flag().store(false, Ordering::Relaxed);
        assert!(!health.sinks_ok());
        reporters[0].set_status(serde_json::json!({"stats": {"events_in": 0}}));
        reporters[0].set_events_in(3);
        reporters[1].set_events_in(4);
        assert_eq!(health.status()["stats"]["events_in"], 7);
    }
}
