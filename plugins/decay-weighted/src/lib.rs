//! decay-weighted: the built-in hot score of DESIGN §4 as a plugin, to the last bit of the
//! formula: `Σ weight · count · E[exp(-λ·age)]`, weights and λ from the scenario.
//!
//! It scores the whole window in one call ([`Batch::decayed_scores`]: one pass over the row
//! columns, two rows at a time with WebAssembly SIMD) rather than item by item; the scores are
//! the same bits as `item.decayed_score()` per item.

use rtscore_guest::{Batch, NoParams, Scorer};

pub struct DecayWeighted;

impl Scorer for DecayWeighted {
    type Params = NoParams;

    fn new(_: NoParams) -> Result<Self, String> {
        Ok(Self)
    }

    fn score(&self, batch: &Batch<'_>, out: &mut Vec<f64>) -> Result<(), String> {
        batch.decayed_scores(out);
        Ok(())
    }
}

rtscore_guest::export_scorer!(DecayWeighted);

#[cfg(test)]
mod tests {
    use super::*;
    use rtscore_guest::decay::exp_decay;
    use rtscore_guest::testing::BatchBuilder;

    #[test]
    fn matches_the_per_event_formula() {
        let lambda = 0.7;
        let batch = BatchBuilder::new()
            .lambda(lambda)
            .weights([("view", 1.0), ("click", 2.0)])
            .events([("a", "view", 5_000, 1), ("a", "view", 35_000, 1), ("a", "click", 3_600_000, 2), ("b", "like", 1_000, 9)])
            .build();
        let scores = batch.run::<DecayWeighted>("null").unwrap();
        let expected_a = exp_decay(lambda, 5_000.0) + exp_decay(lambda, 35_000.0) + 2.0 * 2.0 * exp_decay(lambda, 3_600_000.0);
        assert!((scores[0] - expected_a).abs() / expected_a < 1e-6, "{} vs {expected_a}", scores[0]);
        assert_eq!(scores[1], 0.0, "like is not weighted");
    }

    #[test]
    fn scores_the_same_bits_as_item_by_item() {
        let batch = BatchBuilder::new()
            .lambda(3.0)
            .weights([("view", 1.0), ("click", 2.5), ("share", 0.0)])
            .events([
                ("a", "view", 5_000, 1),
                ("a", "click", 900_000, 3),
                ("a", "share", 10, 2),
                ("b", "view", 59_000, 7),
                ("c", "share", 1, 1),
            ])
            .build();
        let scores = batch.run::<DecayWeighted>("null").unwrap();
        let raw = &batch.raw;
        let by_item: Vec<f64> = Batch::new(raw).unwrap().items().map(|i| i.decayed_score()).collect();
        assert_eq!(scores.iter().map(|s| s.to_bits()).collect::<Vec<_>>(), by_item.iter().map(|s| s.to_bits()).collect::<Vec<_>>());
    }

    #[test]
    fn rejects_params_it_does_not_take() {
        let batch = BatchBuilder::new().build();
        assert!(batch.run::<DecayWeighted>("{}").is_ok());
        assert!(batch.run::<DecayWeighted>(r#"{"lambda": 2}"#).unwrap_err().contains("lambda"));
    }
}
