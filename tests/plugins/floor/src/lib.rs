//! Benchmark plugin: every item scores 0 without reading its rows. What it costs per item is the
//! floor under any plugin: lowering the window's columns into the guest, the SDK's layout check
//! and lifting the scores back (`cargo bench -p rtscore --bench plugin_vs_native`).

use rtscore_guest::{Item, NoParams, Scorer};

pub struct Floor;

impl Scorer for Floor {
    type Params = NoParams;

    fn new(_: NoParams) -> Result<Self, String> {
        Ok(Self)
    }

    fn score_item(&self, _: &Item<'_>) -> f64 {
        0.0
    }
}

rtscore_guest::export_scorer!(Floor);
