//! Test plugin: scores the last item NaN (∞ - ∞), the others by weighted count.

use rtscore_guest::{Item, NoParams, Scorer};

pub struct Nan;

impl Scorer for Nan {
    type Params = NoParams;

    fn new(_: NoParams) -> Result<Self, String> {
        Ok(Self)
    }

    fn score_item(&self, item: &Item<'_>) -> f64 {
        if item.index() + 1 == item.batch().len() {
            // Computed at run time so the NaN is the guest's own, as a buggy formula's would be.
            std::hint::black_box(f64::INFINITY) - f64::INFINITY
        } else {
            item.weighted_count()
        }
    }
}

rtscore_guest::export_scorer!(Nan);
