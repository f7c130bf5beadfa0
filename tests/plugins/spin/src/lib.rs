//! Test plugin: never returns from `score`, to exhaust the host's CPU budget.

use rtscore_guest::{Batch, Item, NoParams, Scorer};

pub struct Spin;

impl Scorer for Spin {
    type Params = NoParams;

    fn new(_: NoParams) -> Result<Self, String> {
        Ok(Self)
    }

    fn score_item(&self, _: &Item<'_>) -> f64 {
        0.0
    }

    fn score(&self, _: &Batch<'_>, _: &mut Vec<f64>) -> Result<(), String> {
        let mut x = 0u64;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }
}

rtscore_guest::export_scorer!(Spin);
