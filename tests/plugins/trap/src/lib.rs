//! Test plugin: panics (a wasm `unreachable` trap) in `score`, after `ok_calls` good calls.

use std::cell::Cell;

use rtscore_guest::{Item, Scorer};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Params {
    /// Calls that succeed (scoring the weighted count) before every later call panics.
    pub ok_calls: u32,
}

pub struct Trap {
    ok_calls: u32,
    calls: Cell<u32>,
}

impl Scorer for Trap {
    type Params = Params;

    fn new(p: Params) -> Result<Self, String> {
        Ok(Self { ok_calls: p.ok_calls, calls: Cell::new(0) })
    }

    fn score_item(&self, item: &Item<'_>) -> f64 {
        item.weighted_count()
    }

    fn score(&self, batch: &rtscore_guest::Batch<'_>, out: &mut Vec<f64>) -> Result<(), String> {
        let n = self.calls.get() + 1;
        self.calls.set(n);
        if n > self.ok_calls {
            panic!("test-trap: deliberate panic on call {n}");
        }
        out.extend(batch.items().map(|i| self.score_item(&i)));
        Ok(())
    }
}

rtscore_guest::export_scorer!(Trap);
