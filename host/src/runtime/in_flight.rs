//! A batch being processed in turns. The runtime's loop serves control (shutdown, config,
//! plugin installs, ticks) between turns, so under any backlog control waits for one turn at
//! most, not for a whole batch or for the source to run dry.
//!
//! A turn either processes records (until the batch ends or the budget is used) or, when the
//! records already processed left outputs unwritten, writes the next of those: a window that
//! closes over tens of thousands of users' profiles is written over several turns too. The
//! records of a turn count as processed (offsets, snapshots) only once all their outputs are
//! written, and the pipeline's state is ahead of them until then, so no snapshot is taken
//! meanwhile ([`InFlight::consistent`]).

use std::ops::Range;
use std::time::{Duration, Instant};

use crate::event::RecordBatch;
use crate::output::Output;
use crate::pipeline::{Pipeline, Reject};

/// The wall time one turn may spend before control is checked again. Well below the bounds
/// the runtime promises (docs/operations.md, "Control under load") and well above a turn's own
/// cost (one offset mark), so throughput does not notice.
pub const TURN_BUDGET: Duration = Duration::from_millis(20);

/// Records processed, or outputs written, between clock reads.
const SLICE: usize = 256;

/// A received batch, how far it has been processed, and the outputs not yet written.
pub struct InFlight {
    batch: RecordBatch,
    next: usize,
    /// Records processed whose outputs are not all written yet.
    unmarked: Range<usize>,
    out: Vec<Output>,
    written: usize,
    /// When the turn that produced `out` started (emission delay).
    produced_at: Instant,
}

impl InFlight {
    pub fn new(batch: RecordBatch) -> Self {
        Self { batch, next: 0, unmarked: 0..0, out: Vec::new(), written: 0, produced_at: Instant::now() }
    }

    pub fn batch(&self) -> &RecordBatch {
        &self.batch
    }

    /// Every record processed and every output written: the next batch may come.
    pub fn is_done(&self) -> bool {
        self.next >= self.batch.len() && self.consistent()
    }

    /// Every processed record's outputs are written, so the pipeline's state covers exactly
    /// the records marked processed: a snapshot may be taken.
    pub fn consistent(&self) -> bool {
        self.written >= self.out.len()
    }

    /// Processes records until the batch ends or `budget` is used, unless outputs of earlier
    /// records still wait. Rejects (indices into [`Self::batch`]) are appended to `rejects`.
    pub fn process(&mut self, pipeline: &mut Pipeline, budget: Duration, wall_ms: impl Fn() -> i64, rejects: &mut Vec<Reject>) {
        if !self.consistent() {
            return;
        }
        self.out.clear();
        self.written = 0;
        self.produced_at = Instant::now();
        let from = self.next;
        while self.next < self.batch.len() {
            let end = (self.next + SLICE).min(self.batch.len());
            pipeline.process_range(&self.batch, self.next..end, wall_ms(), &mut self.out, rejects);
            self.next = end;
            if self.produced_at.elapsed() >= budget {
                break;
            }
        }
        self.unmarked = from..self.next;
    }

    /// The next outputs to write, at most a slice; `None` when all are written.
    pub fn unwritten(&mut self) -> Option<&[Output]> {
        let from = self.written;
        let to = (from + SLICE).min(self.out.len());
        self.written = to;
        (to > from).then(|| &self.out[from..to])
    }

    /// Once every output is written: the records they cover (to mark processed) and when the
    /// turn that produced them started.
    pub fn take_written(&mut self) -> Option<(Range<usize>, Instant, &[Output])> {
        if !self.consistent() || self.unmarked.is_empty() {
            return None;
        }
        let range = std::mem::replace(&mut self.unmarked, self.next..self.next);
        Some((range, self.produced_at, &self.out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_scenario;
    use crate::pipeline::PipelineOptions;
    use std::sync::Arc;

    fn batch(n: usize) -> RecordBatch {
        let mut b = RecordBatch::default();
        for i in 0..n {
            // One event a minute: every event closes a window.
            let ts = 1_767_225_600_000i64 + i as i64 * 60_000;
            b.push(format!(r#"{{"tenant_id":"t","scenario_id":"s","user_id":"u","item_id":"i{i}","action":"view","ts":{ts}}}"#).as_bytes());
        }
        b
    }

    fn pipeline() -> Pipeline {
        let mut p = Pipeline::new(PipelineOptions::default());
        let doc = serde_json::json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": {"hot_score": {
            "window_size_minutes": 1, "window_slide_minutes": 1}}}});
        let cfg = Arc::new(parse_scenario(&doc).unwrap());
        p.apply_config(&cfg.key, Some(cfg.clone()));
        p
    }

    /// Drives `f` as the runtime does; returns the ranges marked processed.
    fn drive(f: &mut InFlight, p: &mut Pipeline, budget: Duration, written: &mut usize) -> Vec<Range<usize>> {
        let mut marked = Vec::new();
        while !f.is_done() {
            f.process(p, budget, || 0, &mut Vec::new());
            if let Some(chunk) = f.unwritten() {
                *written += chunk.len();
            }
            if let Some((range, _, _)) = f.take_written() {
                marked.push(range);
            }
        }
        marked
    }

    #[test]
    fn a_zero_budget_takes_one_slice_per_turn_and_writes_outputs_before_marking() {
        let (mut p, mut written) = (pipeline(), 0);
        let mut f = InFlight::new(batch(600));
        let marked = drive(&mut f, &mut p, Duration::ZERO, &mut written);
        assert_eq!(marked, vec![0..256, 256..512, 512..600]);
        assert_eq!(p.stats().events_in, 600);
        assert!(written >= 590, "about a window per event: {written}");
    }

    #[test]
    fn no_records_are_processed_while_outputs_wait() {
        let mut p = pipeline();
        let mut f = InFlight::new(batch(600));
        f.process(&mut p, Duration::ZERO, || 0, &mut Vec::new());
        assert!(!f.consistent(), "the first slice closed windows");
        f.process(&mut p, Duration::ZERO, || 0, &mut Vec::new());
        assert_eq!(p.stats().events_in, 256, "outputs first");
        assert!(f.take_written().is_none());
        while f.unwritten().is_some() {}
        assert_eq!(f.take_written().map(|(r, _, _)| r), Some(0..256));
        assert!(f.take_written().is_none(), "marked once");
    }

    #[test]
    fn a_generous_budget_takes_the_whole_batch_in_one_turn() {
        let (mut p, mut written) = (pipeline(), 0);
        let mut f = InFlight::new(batch(600));
        assert_eq!(drive(&mut f, &mut p, Duration::from_secs(60), &mut written), vec![0..600]);
    }
}
