//! Benchmark plugin: every call burns `iterations` loop turns, then scores every item 0. A
//! tenant whose plugins stay just under their per-call budget, call after call, is the load
//! the per-tenant CPU budget exists for (`cargo bench -p rtscore --bench tenant_fairness`).

use rtscore_guest::{Batch, Item, Scorer};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Params {
    pub iterations: u64,
}

pub struct Busy {
    iterations: u64,
}

impl Scorer for Busy {
    type Params = Params;

    fn new(p: Params) -> Result<Self, String> {
        Ok(Self { iterations: p.iterations })
    }

    fn score_item(&self, _: &Item<'_>) -> f64 {
        0.0
    }

    fn score(&self, batch: &Batch<'_>, out: &mut Vec<f64>) -> Result<(), String> {
        let mut x = 0u64;
        for i in 0..self.iterations {
            x = std::hint::black_box(x ^ i);
        }
        std::hint::black_box(x);
        out.extend(batch.items().map(|i| self.score_item(&i)));
        Ok(())
    }
}

rtscore_guest::export_scorer!(Busy);
