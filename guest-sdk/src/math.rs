//! Numerically safe helpers for scoring formulas: none of them returns NaN or infinity on
//! finite input, which the host would reject.

/// `num / den`, or 0 when `den` is 0 (or the quotient is not finite).
#[inline]
pub fn safe_div(num: f64, den: f64) -> f64 {
    let q = num / den;
    if den == 0.0 || !q.is_finite() { 0.0 } else { q }
}

/// Lower bound of the Wilson score interval for a proportion: a click-through rate that does not
/// reward tiny samples. `successes` is clamped to `0..=trials`; 0 when `trials` is 0. `z` is the
/// normal quantile (1.96 for 95 %).
pub fn wilson_lower_bound(successes: f64, trials: f64, z: f64) -> f64 {
    if trials <= 0.0 || !trials.is_finite() {
        return 0.0;
    }
    let p = (successes / trials).clamp(0.0, 1.0);
    let z2 = z * z;
    let centre = p + z2 / (2.0 * trials);
    let margin = z * ((p * (1.0 - p) + z2 / (4.0 * trials)) / trials).sqrt();
    ((centre - margin) / (1.0 + z2 / trials)).max(0.0)
}

/// `ln(1 + x)` for `x >= 0`, 0 below: a volume factor that grows slowly with counts.
#[inline]
pub fn log_volume(x: f64) -> f64 {
    if x > 0.0 { x.ln_1p() } else { 0.0 }
}

/// `x` if finite, else `fallback`.
#[inline]
pub fn finite_or(x: f64, fallback: f64) -> f64 {
    if x.is_finite() { x } else { fallback }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_div_never_blows_up() {
        assert_eq!(safe_div(1.0, 0.0), 0.0);
        assert_eq!(safe_div(0.0, 0.0), 0.0);
        assert_eq!(safe_div(6.0, 3.0), 2.0);
        assert_eq!(safe_div(f64::MAX, 1e-300), 0.0);
    }

    #[test]
    fn wilson_matches_a_known_value() {
        // 5 successes of 10 at 95 %: 0.2366 (standard tables).
        let lb = wilson_lower_bound(5.0, 10.0, 1.96);
        assert!((lb - 0.236_593).abs() < 1e-5, "{lb}");
        assert_eq!(wilson_lower_bound(0.0, 0.0, 1.96), 0.0);
        assert_eq!(wilson_lower_bound(3.0, 0.0, 1.96), 0.0);
        // More evidence at the same rate raises the bound.
        assert!(wilson_lower_bound(500.0, 1000.0, 1.96) > lb);
        // Clicks above impressions are clamped to a rate of 1.
        assert!(wilson_lower_bound(20.0, 10.0, 1.96) <= 1.0);
    }

    #[test]
    fn volume_and_finite() {
        assert_eq!(log_volume(-1.0), 0.0);
        assert!((log_volume(std::f64::consts::E - 1.0) - 1.0).abs() < 1e-12);
        assert_eq!(finite_or(f64::NAN, 0.0), 0.0);
        assert_eq!(finite_or(2.0, 0.0), 2.0);
    }
}
