//! Distinct counting for `distinct` features: a fixed-seed 64-bit hash of each value (the same in
//! every process, build and run, so fleets and replays agree), an exact sorted set of hashes up to
//! [`EXACT_BOUND`], then a HyperLogLog sketch of [`REGISTERS`] registers (p = 12, standard error
//! 1.04 / sqrt(4096) ≈ 1.6 %). Both merge by union (a sketch by register max), and a sketch is a
//! function of the set of hashes it saw, so a count never depends on event order or on how the
//! values were split over minutes.

/// Most distinct hashes kept exactly; one more and the set becomes a sketch.
pub const EXACT_BOUND: usize = 256;
/// HyperLogLog precision: the top `P` hash bits pick a register.
const P: u32 = 12;
pub const REGISTERS: usize = 1 << P;

/// The stable hash of a value: FNV-1a over its bytes, then a 64-bit finalizer (the FNV state
/// alone leaves the high bits, which pick HLL registers, poorly mixed). Never 0 or `u64::MAX`:
/// those mark empty and arena slots in `features::Agg`.
pub fn hash(value: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in value.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h.clamp(1, u64::MAX - 1)
}

/// A set of hashes: exact while small, then a sketch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DistinctSet {
    /// Sorted, no duplicates, at most [`EXACT_BOUND`].
    Exact(Vec<u64>),
    Sketch(Box<[u8; REGISTERS]>),
}

impl Default for DistinctSet {
    fn default() -> Self {
        DistinctSet::Exact(Vec::new())
    }
}

fn register(sketch: &mut [u8; REGISTERS], h: u64) {
    let idx = (h >> (64 - P)) as usize;
    // Leading zeros of the remaining bits, plus one; the marker bit caps it at 64 - P + 1.
    let rho = ((h << P) | (1 << (P - 1))).leading_zeros() as u8 + 1;
    if sketch[idx] < rho {
        sketch[idx] = rho;
    }
}

fn sketch_of(hashes: &[u64]) -> Box<[u8; REGISTERS]> {
    let mut s = Box::new([0u8; REGISTERS]);
    for &h in hashes {
        register(&mut s, h);
    }
    s
}

impl DistinctSet {
    pub fn insert(&mut self, h: u64) {
        match self {
            DistinctSet::Exact(v) => {
                if let Err(at) = v.binary_search(&h) {
                    v.insert(at, h);
                    if v.len() > EXACT_BOUND {
                        *self = DistinctSet::Sketch(sketch_of(v));
                    }
                }
            }
            DistinctSet::Sketch(s) => register(s, h),
        }
    }

    /// Adds every hash of `other`.
    pub fn merge(&mut self, other: &DistinctSet) {
        match other {
            DistinctSet::Exact(v) => v.iter().for_each(|&h| self.insert(h)),
            DistinctSet::Sketch(o) => {
                if let DistinctSet::Exact(v) = self {
                    *self = DistinctSet::Sketch(sketch_of(v));
                }
                if let DistinctSet::Sketch(s) = self {
                    for (r, &x) in s.iter_mut().zip(o.iter()) {
                        *r = (*r).max(x);
                    }
                }
            }
        }
    }

    /// The exact count, or the sketch's estimate rounded to a whole number.
    pub fn count(&self) -> f64 {
        match self {
            DistinctSet::Exact(v) => v.len() as f64,
            DistinctSet::Sketch(s) => estimate(s).round(),
        }
    }

    pub fn heap_bytes(&self) -> usize {
        match self {
            DistinctSet::Exact(v) => v.capacity() * 8,
            DistinctSet::Sketch(_) => REGISTERS,
        }
    }
}

/// The HyperLogLog estimate, with linear counting for small cardinalities (no large-range
/// correction is needed with 64-bit hashes).
fn estimate(s: &[u8; REGISTERS]) -> f64 {
    let m = REGISTERS as f64;
    let alpha = 0.7213 / (1.0 + 1.079 / m);
    let (sum, zeros) = s.iter().fold((0.0f64, 0usize), |(sum, z), &r| (sum + (-(f64::from(r))).exp2(), z + usize::from(r == 0)));
    let raw = alpha * m * m / sum;
    if raw <= 2.5 * m && zeros > 0 { m * (m / zeros as f64).ln() } else { raw }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_of(values: impl Iterator<Item = String>) -> DistinctSet {
        let mut s = DistinctSet::default();
        values.for_each(|v| s.insert(hash(&v)));
        s
    }

    #[test]
    fn the_hash_is_fixed() {
        // Pinned: a change here changes every fleet's distinct counts and snapshots.
        assert_eq!(hash(""), 0xefd0_1f60_ba99_2926);
        assert_eq!(hash("u1"), 0x63b9_b7f5_2c45_b2b1);
        assert_ne!(hash("u1"), hash("u2"));
    }

    #[test]
    fn exact_up_to_the_bound() {
        let s = set_of((0..EXACT_BOUND).chain(0..10).map(|i| format!("user-{i}")));
        assert!(matches!(s, DistinctSet::Exact(_)));
        assert_eq!(s.count(), EXACT_BOUND as f64);
        let s = set_of((0..=EXACT_BOUND).map(|i| format!("user-{i}")));
        assert!(matches!(s, DistinctSet::Sketch(_)), "one past the bound is a sketch");
        assert!((s.count() - 257.0).abs() <= 257.0 * 0.05, "{}", s.count());
    }

    #[test]
    fn sketch_error_is_within_the_bound() {
        // 1.6 % standard error; three of them at each size.
        for n in [1_000usize, 5_000, 10_000, 20_000, 100_000] {
            let c = set_of((0..n).map(|i| format!("u{i}"))).count();
            let err = (c - n as f64).abs() / n as f64;
            assert!(err < 0.049, "{n} distinct counted as {c} ({:.2} %)", err * 100.0);
        }
    }

    #[test]
    fn merging_does_not_depend_on_order_or_split() {
        let all: Vec<String> = (0..3_000).map(|i| format!("u{}", i % 2_000)).collect();
        let whole = set_of(all.iter().cloned());
        let (a, b) = all.split_at(700);
        let (mut x, y) = (set_of(b.iter().rev().cloned()), set_of(a.iter().cloned()));
        x.merge(&y);
        assert_eq!(x, whole);
        let (mut small, big) = (set_of(a[..5].iter().cloned()), set_of(all.iter().cloned()));
        small.merge(&big);
        assert_eq!(small, whole);
        assert_eq!(whole.count(), set_of(all.iter().rev().cloned()).count());
    }
}
