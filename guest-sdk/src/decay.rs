//! Exponential time decay, as the built-in formula uses it (`decay_lambda` per hour).

use crate::math::exp;
use crate::time::MS_PER_HOUR;

/// `exp(-λ·age)` for one event of age `age_ms`, λ per hour.
#[inline]
pub fn exp_decay(lambda_per_hour: f64, age_ms: f64) -> f64 {
    exp(-lambda_per_hour / MS_PER_HOUR * age_ms)
}

/// `E[exp(-k·age)]` of a group of events with the given age mean and variance, k = λ per ms:
/// `exp(-k·m) · (1 + k²·var / 2)`, the second-order expansion the host's built-in formula uses
/// (exact to 1e-4 relative for one-minute buckets).
#[inline]
pub fn expected_decay(lambda_per_hour: f64, age_mean_ms: f64, age_var_ms2: f64) -> f64 {
    let k = lambda_per_hour / MS_PER_HOUR;
    exp(-k * age_mean_ms) * (1.0 + 0.5 * k * k * age_var_ms2)
}

/// `weight · count · E[exp(-k·age)]` of every row of the columns, written to `out` (one entry
/// per row): the terms of the built-in score, bit for bit what [`crate::Row::decayed`] gives row
/// by row; a row of weight 0 gives +0 whatever it holds. `weights` is indexed by `actions`,
/// which `Batch::new` checked are in range (an index past the end would take the last weight:
/// the loop has no branch).
///
/// One pass over the columns, two rows at a time with WebAssembly SIMD when the module is built
/// with `-C target-feature=+simd128` (the plugin build does it), with the same operations per
/// lane as the scalar path, so the results do not depend on it.
pub(crate) fn row_terms(
    lambda_per_hour: f64,
    weights: &[f64],
    actions: &[u16],
    counts: &[u32],
    means: &[f64],
    vars: &[f64],
    out: &mut [f64],
) {
    let n = out.len().min(actions.len()).min(counts.len()).min(means.len()).min(vars.len());
    let (actions, counts, means, vars, out) = (&actions[..n], &counts[..n], &means[..n], &vars[..n], &mut out[..n]);
    let k = lambda_per_hour / MS_PER_HOUR;
    let c = Consts { neg_k: -k, half_k2: 0.5 * k * k };
    // The batch was checked (`Batch::new`): every action index is in range. Clamping the index
    // instead of checking it keeps the loop free of branches.
    let Some(last) = weights.len().checked_sub(1) else {
        out.fill(0.0);
        return;
    };
    let weight = |a: u16| weights[usize::from(a).min(last)];
    let pairs = n / 2;
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    for p in 0..pairs {
        let r = 2 * p;
        let t = simd::terms2(
            &c,
            [weight(actions[r]), weight(actions[r + 1])],
            [counts[r], counts[r + 1]],
            [means[r], means[r + 1]],
            [vars[r], vars[r + 1]],
        );
        out[r] = t[0];
        out[r + 1] = t[1];
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    for r in 0..2 * pairs {
        out[r] = c.term(weight(actions[r]), counts[r], means[r], vars[r]);
    }
    if n % 2 == 1 {
        let r = n - 1;
        out[r] = c.term(weight(actions[r]), counts[r], means[r], vars[r]);
    }
}

/// Per-batch constants of [`row_terms`].
struct Consts {
    neg_k: f64,
    half_k2: f64,
}

impl Consts {
    /// One row's term, as [`crate::Row::decayed`] computes it.
    #[inline(always)]
    fn term(&self, weight: f64, count: u32, mean: f64, var: f64) -> f64 {
        let t = weight * f64::from(count) * (exp(self.neg_k * mean) * (1.0 + self.half_k2 * var));
        if weight != 0.0 { t } else { 0.0 }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd {
    use core::arch::wasm32::*;

    use super::Consts;
    use crate::math::exp_consts as ec;

    /// [`Consts::term`] of two rows in the two lanes of `f64x2`.
    #[inline(always)]
    pub(super) fn terms2(c: &Consts, w: [f64; 2], count: [u32; 2], mean: [f64; 2], var: [f64; 2]) -> [f64; 2] {
        let w = f64x2(w[0], w[1]);
        // u32 to f64 exactly: 2^52 + c has the bits of 2^52 with c in the low mantissa bits.
        let two52 = f64x2_splat(4_503_599_627_370_496.0);
        let count = f64x2_sub(v128_or(u64x2_extend_low_u32x4(u32x4(count[0], count[1], 0, 0)), two52), two52);
        let x = f64x2_mul(f64x2_splat(c.neg_k), f64x2(mean[0], mean[1]));
        let corr = f64x2_add(f64x2_splat(1.0), f64x2_mul(f64x2_splat(c.half_k2), f64x2(var[0], var[1])));
        let t = f64x2_mul(f64x2_mul(w, count), f64x2_mul(exp2(x), corr));
        // Weight 0 gives +0 whatever the rest (also NaN): all-ones lanes where w != 0.
        let t = v128_and(t, f64x2_ne(w, f64x2_splat(0.0)));
        [f64x2_extract_lane::<0>(t), f64x2_extract_lane::<1>(t)]
    }

    /// [`crate::math::exp`] of both lanes, operation for operation.
    #[inline(always)]
    fn exp2(x: v128) -> v128 {
        // `pmax`/`pmin` (`a < b ? b : a`, `b < a ? b : a`) keep a NaN `x`, like `f64::clamp`, in
        // one instruction each.
        let x = f64x2_pmin(f64x2_pmax(x, f64x2_splat(-1000.0)), f64x2_splat(1000.0));
        let shifted = f64x2_add(f64x2_mul(x, f64x2_splat(ec::INV_LN2_N)), f64x2_splat(ec::SHIFT));
        let nf = f64x2_sub(shifted, f64x2_splat(ec::SHIFT));
        let r = f64x2_sub(f64x2_sub(x, f64x2_mul(nf, f64x2_splat(ec::LN2_N_HI))), f64x2_mul(nf, f64x2_splat(ec::LN2_N_LO)));
        let r2 = f64x2_mul(r, r);
        let q = ec::Q;
        let lin = |a: f64, b: f64| f64x2_add(f64x2_splat(a), f64x2_mul(f64x2_splat(b), r));
        let q = f64x2_add(lin(q[0], q[1]), f64x2_mul(lin(q[2], q[3]), r2));
        // n is the low 32 bits of each lane of `shifted` (those of SHIFT are 0).
        let t0 = ec::TABLE[(i32x4_extract_lane::<0>(shifted) & 63) as usize];
        let t1 = ec::TABLE[(i32x4_extract_lane::<2>(shifted) & 63) as usize];
        let (hi, tail) = (f64x2(t0[0], t1[0]), f64x2(t0[1], t1[1]));
        let tmp = f64x2_add(f64x2_add(tail, r), f64x2_mul(r2, q));
        let y = f64x2_add(hi, f64x2_mul(hi, tmp));
        // 32-bit lane arithmetic on n, then the 64-bit shift keeps only the low 12 bits of each
        // lane: the exponents.
        let e = i32x4_shr(shifted, 6);
        let e1 = i32x4_shr(e, 1);
        let e2 = i32x4_sub(e, e1);
        let bias = i32x4_splat(1023);
        let s1 = i64x2_shl(i32x4_add(e1, bias), 52);
        let s2 = i64x2_shl(i32x4_add(e2, bias), 52);
        f64x2_mul(f64x2_mul(y, s1), s2)
    }
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
