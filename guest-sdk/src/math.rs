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

/// `e^x`, within 1 ulp of the correctly rounded value for every `f64` (0 below -745.14,
/// infinity above 709.79, NaN for NaN), with the same bits on every target.
///
/// Used by [`crate::decay`] instead of `f64::exp`: in a WebAssembly plugin `f64::exp` is an
/// out-of-line call into the C library's `exp`, which costs several times more than this
/// inlined, branch-free version (docs/benchmarks.md, "Plugin vs native"). The method of
/// musl's and ARM's `exp`: `x = (n/64)·ln2 + r` with `|r| <= ln2/128`,
/// `e^x = 2^(n/64) · e^r`, `2^(j/64)` from a 64-entry table (with the rounding error of each
/// entry, so the sum keeps it), `e^r` by a degree-5 polynomial; `2^(n div 64)` is built from
/// its exponent bits in two halves so that subnormal results and overflow come out right.
#[inline]
pub fn exp(x: f64) -> f64 {
    use exp_consts as c;
    // Beyond ±1000 the result is 0 or infinity anyway; the clamp keeps `n` in the range the
    // exponent bits below can hold. `clamp` keeps NaN.
    let x = x.clamp(-1000.0, 1000.0);
    // n = round(x·64/ln2): adding 1.5·2^52 rounds to an integer held in the low mantissa bits.
    let shifted = x * c::INV_LN2_N + c::SHIFT;
    let n = shifted.to_bits() as i32;
    let nf = shifted - c::SHIFT;
    // r = x - n·ln2/64, Cody–Waite: n·LN2_N_HI is exact (36 significant bits, |n| < 2^17).
    let r = (x - nf * c::LN2_N_HI) - nf * c::LN2_N_LO;
    let r2 = r * r;
    let q = (c::Q[0] + c::Q[1] * r) + (c::Q[2] + c::Q[3] * r) * r2;
    let [hi, tail] = c::TABLE[(n & 63) as usize];
    let tmp = (tail + r) + r2 * q;
    let y = hi + hi * tmp;
    // 2^e = 2^(e/2) · 2^(e - e/2), e = n div 64: each half is a normal double.
    let e = n >> 6;
    let e1 = e >> 1;
    y * pow2i(e1) * pow2i(e - e1)
}

/// `2^n` for `-1022 <= n <= 1023`, from its exponent bits.
#[inline(always)]
fn pow2i(n: i32) -> f64 {
    f64::from_bits(((n + 1023) as u64) << 52)
}

/// Constants of [`exp`].
pub(crate) mod exp_consts {
    /// 64 / ln 2.
    pub const INV_LN2_N: f64 = 92.332_482_616_893_66;
    /// 1.5·2^52.
    pub const SHIFT: f64 = 6_755_399_441_055_744.0;
    /// ln 2 / 64 split so that `n · LN2_N_HI` is exact for |n| < 2^17.
    pub const LN2_N_HI: f64 = f64::from_bits(0x3f86_2e42_fefa_0000);
    pub const LN2_N_LO: f64 = f64::from_bits(0x3d1c_f79a_bc9e_3b3a);
    /// Minimax fit of `(e^r - 1 - r) / r²` on `|r| <= ln2/128` (relative error 3e-13, so
    /// 5e-18 of `e^r`; Remez exchange at 60 digits).
    pub const Q: [f64; 4] = [0.499_999_999_999_844_6, 0.166_666_666_666_733_22, 0.041_666_708_218_922_835, 0.008_333_335_313_206_385];
    /// `[hi, tail]` per `j` in `0..64`: `hi` is `2^(j/64)` rounded to f64, `tail` is
    /// `(2^(j/64) - hi) / hi` rounded (computed at 60 digits).
    pub static TABLE: [[f64; 2]; 64] = {
        let mut t = [[0.0; 2]; 64];
        let mut j = 0;
        while j < 64 {
            t[j] = [f64::from_bits(BITS[j][0]), f64::from_bits(BITS[j][1])];
            j += 1;
        }
        t
    };
    const BITS: [[u64; 2]; 64] = [
        [0x3ff0000000000000, 0x0000000000000000],
        [0x3ff02c9a3e778061, 0xbc7160139cd8dc5d],
        [0x3ff059b0d3158574, 0x3c8cd2523567f613],
        [0x3ff0874518759bc8, 0x3c60f74e61e6c861],
        [0x3ff0b5586cf9890f, 0x3c979aa65d837b6d],
        [0x3ff0e3ec32d3d1a2, 0x3c3ebe3d702f9cd1],
        [0x3ff11301d0125b51, 0xbc9556522a2fbd0e],
        [0x3ff1429aaea92de0, 0xbc91c923b9d5f416],
        [0x3ff172b83c7d517b, 0xbc801b15eaa59348],
        [0x3ff1a35beb6fcb75, 0x3c8b898c3f1353bf],
        [0x3ff1d4873168b9aa, 0x3c9aecf73e3a2f60],
        [0x3ff2063b88628cd6, 0x3c8a6f4144a6c38d],
        [0x3ff2387a6e756238, 0x3c968efde3a8a894],
        [0x3ff26b4565e27cdd, 0x3c80472b981fe7f2],
        [0x3ff29e9df51fdee1, 0x3c82f7e16d09ab31],
        [0x3ff2d285a6e4030b, 0x3c8b3782720c0ab4],
        [0x3ff306fe0a31b715, 0x3c834d754db0abb6],
        [0x3ff33c08b26416ff, 0x3c8fdd395dd3f84a],
        [0x3ff371a7373aa9cb, 0xbc924aedcc4b5068],
        [0x3ff3a7db34e59ff7, 0xbc71d1e83e9436d2],
        [0x3ff3dea64c123422, 0x3c859f48a72a4c6d],
        [0x3ff4160a21f72e2a, 0xbc58a78f4817895b],
        [0x3ff44e086061892d, 0x3c4363ed60c2ac11],
        [0x3ff486a2b5c13cd0, 0x3c6ecce1daa10379],
        [0x3ff4bfdad5362a27, 0x3c7690cebb7aafb0],
        [0x3ff4f9b2769d2ca7, 0xbc8f94340071a38e],
        [0x3ff5342b569d4f82, 0xbc78dec6bd0f385f],
        [0x3ff56f4736b527da, 0x3c93350518fdd78e],
        [0x3ff5ab07dd485429, 0x3c9063e1e21c5409],
        [0x3ff5e76f15ad2148, 0x3c9432e62b64c035],
        [0x3ff6247eb03a5585, 0xbc8c33c53bef4da8],
        [0x3ff6623882552225, 0xbc93cedd78565858],
        [0x3ff6a09e667f3bcd, 0xbc93b3efbf5e2228],
        [0x3ff6dfb23c651a2f, 0xbc6367efb86da9ee],
        [0x3ff71f75e8ec5f74, 0xbc781f647e5a3ecf],
        [0x3ff75feb564267c9, 0xbc8619321e55e68a],
        [0x3ff7a11473eb0187, 0xbc7b32dcb94da51d],
        [0x3ff7e2f336cf4e62, 0x3c65ebe1abd66c55],
        [0x3ff82589994cce13, 0xbc9369b6f13b3734],
        [0x3ff868d99b4492ed, 0xbc94d450d872576e],
        [0x3ff8ace5422aa0db, 0x3c8db72fc1f0eab4],
        [0x3ff8f1ae99157736, 0x3c7bf68359f35f44],
        [0x3ff93737b0cdc5e5, 0xbc5da9b88b6c1e29],
        [0x3ff97d829fde4e50, 0xbc92434322f4f9aa],
        [0x3ff9c49182a3f090, 0x3c71affc2b91ce27],
        [0x3ffa0c667b5de565, 0xbc87c50422622263],
        [0x3ffa5503b23e255d, 0xbc91bbd1d3bcbb15],
        [0x3ffa9e6b5579fdbf, 0x3c8469846e735ab3],
        [0x3ffae89f995ad3ad, 0x3c8c1a7792cb3387],
        [0x3ffb33a2b84f15fb, 0xbc55c3d956dcaeba],
        [0x3ffb7f76f2fb5e47, 0xbc68d6f438ad9334],
        [0x3ffbcc1e904bc1d2, 0x3c74ffd70a5fddcd],
        [0x3ffc199bdd85529c, 0x3c736eae30af0cb3],
        [0x3ffc67f12e57d14b, 0x3c84e08fd10959ac],
        [0x3ffcb720dcef9069, 0x3c676b2c6c921968],
        [0x3ffd072d4a07897c, 0xbc8fad5d3ffffa6f],
        [0x3ffd5818dcfba487, 0x3c74a385a63d07a7],
        [0x3ffda9e603db3285, 0x3c8e5a50d5c192ac],
        [0x3ffdfc97337b9b5f, 0xbc82d52107b43e1f],
        [0x3ffe502ee78b3ff6, 0x3c74b604603a88d3],
        [0x3ffea4afa2a490da, 0xbc8ff7128fd391f0],
        [0x3ffefa1bee615a27, 0x3c8ec3bc41aa2008],
        [0x3fff50765b6e4540, 0x3c8a64a931d185ee],
        [0x3fffa7c1819e90d8, 0x3c77893b4d91cd9d],
    ];
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

    /// Distance in units in the last place between two finite values of the same sign.
    fn ulps(a: f64, b: f64) -> u64 {
        a.to_bits().abs_diff(b.to_bits())
    }

    /// Checks `exp` against `f64::exp` at `x`, returning the ulp distance.
    fn exp_ulps(x: f64) -> u64 {
        let (got, want) = (exp(x), x.exp());
        assert!(got >= 0.0 && want >= 0.0, "exp({x:e}) = {got:e}, std {want:e}");
        ulps(got, want)
    }

    #[test]
    fn exp_is_within_one_ulp_of_std_everywhere() {
        let mut worst = (0, 0.0);
        let mut check = |x: f64| {
            let u = exp_ulps(x);
            if u > worst.0 {
                worst = (u, x);
            }
        };
        // A dense sweep over every input whose result is neither 0 nor infinite (and a bit
        // beyond): the decay arguments are all in [-745, 0].
        let (lo, hi, steps) = (-746.0_f64, 710.0_f64, 4_000_000);
        for k in 0..=steps {
            check(lo + (hi - lo) * f64::from(k) / f64::from(steps));
        }
        // Random inputs over the same range (xorshift, fixed seed) and near 0 at every scale.
        let mut s = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..2_000_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 11) as f64 / (1u64 << 53) as f64;
            check(lo + (hi - lo) * u);
            // |x| from 2^-60 to 2^4, both signs.
            let tiny = f64::from_bits((s & 0x000f_ffff_ffff_ffff) | ((1023 - 60 + (s >> 58) % 64) << 52));
            check(if s & 1 == 0 { tiny } else { -tiny });
        }
        assert!(worst.0 <= 1, "exp({:e}) is {} ulp from f64::exp", worst.1, worst.0);
    }

    #[test]
    fn exp_table_holds_the_powers_of_two_and_their_rounding_errors() {
        for (j, &[hi, tail]) in exp_consts::TABLE.iter().enumerate() {
            let want = (j as f64 / 64.0).exp2();
            assert!(ulps(hi, want) <= 1 && (1.0..2.0).contains(&hi), "2^({j}/64): {hi} vs {want}");
            assert!(tail.abs() <= f64::EPSILON / 2.0, "tail {j}: {tail:e}");
        }
    }

    #[test]
    fn exp_edges() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-0.0), 1.0);
        assert!(ulps(exp(1.0), std::f64::consts::E) <= 1);
        assert!(exp(f64::NAN).is_nan());
        assert_eq!(exp(f64::NEG_INFINITY), 0.0);
        assert_eq!(exp(f64::INFINITY), f64::INFINITY);
        assert_eq!(exp(-1e300), 0.0);
        assert_eq!(exp(1e300), f64::INFINITY);
        assert_eq!(exp(710.0), f64::INFINITY);
        assert_eq!(exp(-746.0), 0.0);
        // Largest finite result and the subnormal tail.
        assert!(exp_ulps(709.782_712_893_383_9) <= 1);
        assert!(exp(709.782_712_893_384_1).is_infinite());
        for x in [-708.0, -708.4, -709.0, -720.0, -740.0, -744.0, -745.0, -745.1] {
            assert!(exp_ulps(x) <= 1, "exp({x}) = {:e}, std {:e}", exp(x), x.exp());
        }
        assert_eq!(exp(-745.2), 0.0);
        assert_eq!(exp(f64::MIN_POSITIVE), 1.0);
    }

    #[test]
    fn volume_and_finite() {
        assert_eq!(log_volume(-1.0), 0.0);
        assert!((log_volume(std::f64::consts::E - 1.0) - 1.0).abs() < 1e-12);
        assert_eq!(finite_or(f64::NAN, 0.0), 0.0);
        assert_eq!(finite_or(2.0, 0.0), 2.0);
    }
}
