//! Exponential time decay, as the built-in formula uses it (`decay_lambda` per hour).

use crate::time::MS_PER_HOUR;

/// `exp(-λ·age)` for one event of age `age_ms`, λ per hour.
#[inline]
pub fn exp_decay(lambda_per_hour: f64, age_ms: f64) -> f64 {
    (-lambda_per_hour / MS_PER_HOUR * age_ms).exp()
}

/// `E[exp(-k·age)]` of a group of events with the given age mean and variance, k = λ per ms:
/// `exp(-k·m) · (1 + k²·var / 2)`, the second-order expansion the host's built-in formula uses
/// (exact to 1e-4 relative for one-minute buckets).
#[inline]
pub fn expected_decay(lambda_per_hour: f64, age_mean_ms: f64, age_var_ms2: f64) -> f64 {
    let k = lambda_per_hour / MS_PER_HOUR;
    (-k * age_mean_ms).exp() * (1.0 + 0.5 * k * k * age_var_ms2)
}

/// The λ (per hour) whose decay halves a weight every `half_life_hours`.
pub fn lambda_for_half_life(half_life_hours: f64) -> f64 {
    std::f64::consts::LN_2 / half_life_hours
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_life_halves() {
        let lambda = lambda_for_half_life(2.0);
        assert!((exp_decay(lambda, 2.0 * MS_PER_HOUR) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn expected_decay_of_one_event_is_exp_decay() {
        assert_eq!(expected_decay(0.3, 1_234.0, 0.0), exp_decay(0.3, 1_234.0));
        assert_eq!(expected_decay(0.0, 1e9, 1e9), 1.0);
    }
}
