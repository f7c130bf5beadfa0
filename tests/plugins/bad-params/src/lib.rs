//! Test plugin: `configure` always fails, whatever the params.

use rtscore_guest::{Item, Scorer};

pub struct BadParams;

impl Scorer for BadParams {
    type Params = serde_json::Value;

    fn new(params: serde_json::Value) -> Result<Self, String> {
        Err(format!("test-bad-params rejects every params value, got {params}"))
    }

    fn score_item(&self, _: &Item<'_>) -> f64 {
        0.0
    }
}

rtscore_guest::export_scorer!(BadParams);
