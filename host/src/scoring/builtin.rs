//! The built-in hot score of DESIGN §4, evaluated on a [`WindowBatch`].
//!
//! `score = Σ weight[action] · exp(-λ · age / 1h)` over the window's events. Events are kept in
//! one-minute buckets with the count, mean and variance of their ages, so the sum over a bucket is
//! `n · E[exp(-k·a)] ≈ n · exp(-k·mean) · (1 + k²·var / 2)` (k = λ per ms). The neglected term is
//! third order in `k · 60 s`, below 1e-4 relative for every λ the validator accepts.

use super::batch::WindowBatch;

/// Milliseconds per hour: `decay_lambda` is per hour.
pub const MS_PER_HOUR: f64 = 3_600_000.0;

/// Expected decay factor `E[exp(-k·age)]` of a group of events with the given age moments.
#[inline]
pub fn expected_decay(lambda_per_hour: f64, age_mean_ms: f64, age_var_ms2: f64) -> f64 {
    let k = lambda_per_hour / MS_PER_HOUR;
    (-k * age_mean_ms).exp() * (1.0 + 0.5 * k * k * age_var_ms2)
}

/// Scores every item of `batch` into `out` (cleared first), one score per item.
pub fn score_batch(batch: &WindowBatch, out: &mut Vec<f64>) {
    out.clear();
    out.reserve(batch.item_count());
    let lambda = batch.decay_lambda;
    for k in 0..batch.item_count() {
        let mut score = 0.0;
        for r in batch.item_rows(k) {
            let w = batch.weights[batch.row_action[r] as usize];
            if w != 0.0 {
                score += w * f64::from(batch.row_count[r]) * expected_decay(lambda, batch.row_age_mean_ms[r], batch.row_age_var_ms2[r]);
            }
        }
        out.push(score);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_moments_match_per_event_sum() {
        // Three events in one bucket, ages 10 s, 40 s, 55 s, at a fast decay (λ = 10/h).
        let ages = [10_000.0_f64, 40_000.0, 55_000.0];
        let lambda = 10.0;
        let exact: f64 = ages.iter().map(|a| (-lambda * a / MS_PER_HOUR).exp()).sum();
        let mean = ages.iter().sum::<f64>() / 3.0;
        let var = ages.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / 3.0;
        let approx = 3.0 * expected_decay(lambda, mean, var);
        assert!(((approx - exact) / exact).abs() < 1e-5, "{approx} vs {exact}");
    }

    #[test]
    fn unweighted_actions_score_zero() {
        let mut b = WindowBatch::new(0, 60_000, vec!["view".into(), "click".into()], vec![0.0, 2.0], 0.0);
        b.push_row(0, 5, 1_000.0, 0.0);
        b.finish_item();
        b.push_row(1, 3, 1_000.0, 0.0);
        b.finish_item();
        let mut out = Vec::new();
        score_batch(&b, &mut out);
        assert_eq!(out, vec![0.0, 6.0]);
    }
}
