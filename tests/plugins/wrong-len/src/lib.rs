//! Test plugin: returns one score too few (or one too many for an empty batch).

use rtscore_guest::{Batch, Item, NoParams, Scorer};

pub struct WrongLen;

impl Scorer for WrongLen {
    type Params = NoParams;

    fn new(_: NoParams) -> Result<Self, String> {
        Ok(Self)
    }

    fn score_item(&self, item: &Item<'_>) -> f64 {
        item.weighted_count()
    }

    fn score(&self, batch: &Batch<'_>, out: &mut Vec<f64>) -> Result<(), String> {
        out.extend(batch.items().skip(1).map(|i| self.score_item(&i)));
        if batch.is_empty() {
            out.push(1.0);
        }
        Ok(())
    }
}

rtscore_guest::export_scorer!(WrongLen);
