//! What a host's shuffle stage has done, for `/status` (`shuffle`) and the console: the shuffle
//! thread counts as it commits, the status page reads. Only committed work is counted: records
//! and markers of a transaction that aborted were never visible, and the next owner forwards
//! them again.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use serde::Serialize;

/// Counters shared between the shuffle thread (writer) and the status page (reader).
#[derive(Debug)]
pub struct ShuffleStats {
    /// The producer's `transactional.id` (fixed for a process unless a live peer fenced it).
    transactional_id: std::sync::Mutex<String>,
    forwarded: AtomicU64,
    markers: AtomicU64,
    committed: AtomicU64,
    aborted: AtomicU64,
    /// Wall time (ms) of the last commit; `i64::MIN` before the first.
    last_commit_ms: AtomicI64,
    /// Time spent committing (offsets + `commit_transaction`), in microseconds.
    commit_us: AtomicU64,
    /// Messages on the owned source partitions not yet read; -1 until known.
    source_lag: AtomicI64,
}

impl Default for ShuffleStats {
    fn default() -> Self {
        ShuffleStats {
            transactional_id: std::sync::Mutex::new(String::new()),
            forwarded: AtomicU64::new(0),
            markers: AtomicU64::new(0),
            committed: AtomicU64::new(0),
            aborted: AtomicU64::new(0),
            last_commit_ms: AtomicI64::new(i64::MIN),
            commit_us: AtomicU64::new(0),
            source_lag: AtomicI64::new(-1),
        }
    }
}

impl ShuffleStats {
    pub fn set_transactional_id(&self, id: &str) {
        if let Ok(mut t) = self.transactional_id.lock() {
            id.clone_into(&mut t);
        }
    }

    /// A transaction committed at `wall_ms` with `records` forwarded events and `markers`
    /// progress markers; committing it took `commit_us`.
    pub fn committed(&self, records: u64, markers: u64, wall_ms: i64, commit_us: u64) {
        self.forwarded.fetch_add(records, Ordering::Relaxed);
        self.markers.fetch_add(markers, Ordering::Relaxed);
        self.commit_us.fetch_add(commit_us, Ordering::Relaxed);
        self.last_commit_ms.store(wall_ms, Ordering::Relaxed);
        self.committed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn aborted(&self) {
        self.aborted.fetch_add(1, Ordering::Relaxed);
    }

    /// The owned source partitions' lag, `None` when unknown (no assignment yet).
    pub fn set_source_lag(&self, lag: Option<i64>) {
        self.source_lag.store(lag.map_or(-1, |l| l.max(0)), Ordering::Relaxed);
    }

    /// The counters as `/status` shows them at wall time `now_ms`.
    pub fn status(&self, now_ms: i64) -> ShuffleStatus {
        let committed = self.committed.load(Ordering::Relaxed);
        let last = self.last_commit_ms.load(Ordering::Relaxed);
        let commit_us = self.commit_us.load(Ordering::Relaxed);
        ShuffleStatus {
            transactional_id: self.transactional_id.lock().map(|t| t.clone()).unwrap_or_default(),
            forwarded: self.forwarded.load(Ordering::Relaxed),
            markers: self.markers.load(Ordering::Relaxed),
            transactions_committed: committed,
            transactions_aborted: self.aborted.load(Ordering::Relaxed),
            last_commit_age_ms: (last != i64::MIN).then(|| (now_ms - last).max(0)),
            commit_ms_avg: (committed > 0).then(|| (commit_us as f64 / committed as f64 / 1000.0 * 100.0).round() / 100.0),
            source_lag: Some(self.source_lag.load(Ordering::Relaxed)).filter(|l| *l >= 0),
        }
    }
}

/// `/status` `shuffle`: one host's shuffle stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShuffleStatus {
    pub transactional_id: String,
    /// Events forwarded in committed transactions.
    pub forwarded: u64,
    /// Progress markers sent in committed transactions.
    pub markers: u64,
    pub transactions_committed: u64,
    pub transactions_aborted: u64,
    /// Since the last commit; `None` before the first. Grows while nothing is read (nothing is
    /// committed then) or while the shuffle is stuck.
    pub last_commit_age_ms: Option<i64>,
    /// Mean time one commit took (offsets + `commit_transaction`), ms.
    pub commit_ms_avg: Option<f64>,
    /// Messages on the source partitions this host's shuffle owns not yet read (refreshed
    /// every few seconds while it forwards); `None` until known.
    pub source_lag: Option<i64>,
}

impl ShuffleStatus {
    /// One line for people (the console): `forwarded 1200 (3 markers) in 4 transactions, ...`.
    pub fn summary(&self) -> String {
        let age = match self.last_commit_age_ms {
            Some(ms) if ms < 10_000 => format!("{:.1} s ago", ms as f64 / 1000.0),
            Some(ms) => format!("{} s ago", ms / 1000),
            None => "never".to_string(),
        };
        let lag = self.source_lag.map_or("unknown".to_string(), |l| l.to_string());
        format!(
            "forwarded {} events and {} markers in {} transactions ({} aborted); last commit {age}; source lag {lag}",
            self.forwarded, self.markers, self.transactions_committed, self.transactions_aborted
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_committed_work_and_ages_the_last_commit() {
        let s = ShuffleStats::default();
        let empty = s.status(1_000);
        assert_eq!((empty.forwarded, empty.transactions_committed, empty.last_commit_age_ms, empty.commit_ms_avg), (0, 0, None, None));
        assert_eq!(empty.source_lag, None);
        assert_eq!(
            empty.summary(),
            "forwarded 0 events and 0 markers in 0 transactions (0 aborted); last commit never; source lag unknown"
        );
        s.set_transactional_id("g.shuffle.host-a");
        s.committed(100, 36, 5_000, 4_000);
        s.aborted();
        s.committed(50, 36, 5_100, 6_000);
        s.set_source_lag(Some(1234));
        let st = s.status(7_600);
        assert_eq!(st.transactional_id, "g.shuffle.host-a");
        assert_eq!((st.forwarded, st.markers, st.transactions_committed, st.transactions_aborted), (150, 72, 2, 1));
        assert_eq!(st.last_commit_age_ms, Some(2_500));
        assert_eq!(st.commit_ms_avg, Some(5.0));
        assert_eq!(st.source_lag, Some(1234));
        assert_eq!(
            st.summary(),
            "forwarded 150 events and 72 markers in 2 transactions (1 aborted); last commit 2.5 s ago; source lag 1234"
        );
        assert_eq!(s.status(4_000).last_commit_age_ms, Some(0), "a clock step back never shows a negative age");
        s.set_source_lag(None);
        assert_eq!(s.status(0).source_lag, None);
        let json = serde_json::to_value(s.status(65_100)).unwrap();
        assert_eq!(json["last_commit_age_ms"], 60_000);
        assert_eq!(json["transactions_committed"], 2);
        assert_eq!(s.status(65_100).summary().split("; ").nth(1), Some("last commit 60 s ago"));
    }
}
