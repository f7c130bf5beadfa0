//! gmv-heat (shop): heat from the money an item makes, each buyer counted once.
//!
//! `score = decayed_score + gmv_weight · buyers · mean_price · purchase_decay`, where
//! `decayed_score` is the built-in heat of the weighted actions (leave `purchase` unweighted
//! to count purchases only through GMV), `buyers` the distinct buyers of the window,
//! `mean_price = revenue / purchases` and `purchase_decay` the mean `exp(-λ·age)` of the
//! item's purchases. A buyer who orders ten times adds one buyer, not ten. Two features declared
//! in the scenario feed it (names are params):
//!
//! ```json
//! "features": [
//!   {"name": "buyers", "op": "distinct", "field": "user_id", "actions": ["purchase"]},
//!   {"name": "revenue", "op": "sum", "field": "props.price", "actions": ["purchase"]}
//! ]
//! ```

use rtscore_guest::{Batch, Scorer};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Heat per unit of currency bought once per buyer.
    pub gmv_weight: f64,
    /// The action whose events are purchases.
    pub purchase_action: String,
    /// The declared `distinct` feature of buyers (`user_id` of purchases).
    pub buyers_feature: String,
    /// The declared `sum` feature of the purchases' prices.
    pub revenue_feature: String,
}

impl Default for Params {
    fn default() -> Self {
        Self { gmv_weight: 0.1, purchase_action: "purchase".into(), buyers_feature: "buyers".into(), revenue_feature: "revenue".into() }
    }
}

pub struct GmvHeat {
    p: Params,
}

impl Scorer for GmvHeat {
    type Params = Params;

    fn new(p: Params) -> Result<Self, String> {
        if !(p.gmv_weight.is_finite() && (0.0..=1e6).contains(&p.gmv_weight)) {
            return Err(format!("gmv_weight must be in 0..=1000000, got {}", p.gmv_weight));
        }
        Ok(Self { p })
    }

    fn score(&self, batch: &Batch<'_>, out: &mut Vec<f64>) -> Result<(), String> {
        let buyers = batch.feature(&self.p.buyers_feature).and_then(|f| f.numbers());
        let revenue = batch.feature(&self.p.revenue_feature).and_then(|f| f.numbers());
        let purchase = batch.action_index(&self.p.purchase_action);
        let lambda = batch.decay_lambda();
        for item in batch.items() {
            let k = item.index();
            let mut gmv = 0.0;
            if let (Some(b), Some(r), Some(pa)) = (buyers, revenue, purchase) {
                // Purchases and their mean decay, from the rows of the purchase action.
                let (mut n, mut decay) = (0.0, 0.0);
                for row in item.rows().filter(|r| r.action_index == pa) {
                    n += f64::from(row.count);
                    decay += f64::from(row.count) * row.expected_decay(lambda);
                }
                if n > 0.0 {
                    gmv = b[k] * (r[k] / n) * (decay / n);
                }
            }
            out.push(item.decayed_score() + self.p.gmv_weight * gmv);
        }
        Ok(())
    }
}

rtscore_guest::export_scorer!(GmvHeat);

#[cfg(test)]
mod tests {
    use super::*;
    use rtscore_guest::decay::exp_decay;
    use rtscore_guest::testing::BatchBuilder;

    #[test]
    fn each_buyer_counts_once_at_the_mean_price() {
        let lambda = 0.5;
        let b = BatchBuilder::new()
            .lambda(lambda)
            .weights([("view", 1.0)])
            // "loyal": one buyer, ten orders of 20; "popular": ten buyers, one order of 20 each.
            .events([("loyal", "purchase", 600_000, 10)])
            .feature("loyal", "buyers", 1.0)
            .feature("loyal", "revenue", 200.0)
            .events([("popular", "purchase", 600_000, 10)])
            .feature("popular", "buyers", 10.0)
            .feature("popular", "revenue", 200.0)
            .events([("browsed", "view", 0, 3)])
            .build();
        let scores = b.run::<GmvHeat>(r#"{"gmv_weight": 0.5}"#).unwrap();
        let d = exp_decay(lambda, 600_000.0);
        assert!((scores[0] - 0.5 * 1.0 * 20.0 * d).abs() < 1e-9, "{scores:?}");
        assert!((scores[1] - 0.5 * 10.0 * 20.0 * d).abs() < 1e-9, "{scores:?}");
        assert!((scores[2] - 3.0).abs() < 1e-9, "views only: the built-in heat {scores:?}");
    }

    #[test]
    fn without_declared_features_it_is_the_built_in_formula() {
        let b = BatchBuilder::new().weights([("purchase", 5.0)]).events([("a", "purchase", 0, 2)]).build();
        assert!((b.run::<GmvHeat>("null").unwrap()[0] - 10.0).abs() < 1e-9);
    }

    #[test]
    fn params_are_checked() {
        let b = BatchBuilder::new().build();
        assert!(b.run::<GmvHeat>(r#"{"gmv_weight": -1}"#).unwrap_err().contains("gmv_weight"));
        assert!(b.run::<GmvHeat>(r#"{"gmv_wieght": 1}"#).is_err());
    }
}
