//! Test plugin: allocates (and touches) memory in `score` until the host's memory cap stops it.

use rtscore_guest::{Batch, Item, NoParams, Scorer};

pub struct Oom;

impl Scorer for Oom {
    type Params = NoParams;

    fn new(_: NoParams) -> Result<Self, String> {
        Ok(Self)
    }

    fn score_item(&self, _: &Item<'_>) -> f64 {
        0.0
    }

    fn score(&self, _: &Batch<'_>, _: &mut Vec<f64>) -> Result<(), String> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![1u8; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }
}

rtscore_guest::export_scorer!(Oom);
