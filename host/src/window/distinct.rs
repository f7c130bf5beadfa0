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
/// those mark empty and spilled aggregates in `features::Agg`.
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

/// A set of hashes: exact while small, then a sketch. The reference model the flat forms
/// (`features::FeatureMinute`'s spilled runs, [`DistinctCounts`]) are tested against.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DistinctSet {
    /// Sorted, no duplicates, at most [`EXACT_BOUND`].
    Exact(Vec<u64>),
    Sketch(Box<[u8; REGISTERS]>),
}

#[cfg(test)]
impl Default for DistinctSet {
    fn default() -> Self {
        DistinctSet::Exact(Vec::new())
    }
}

/// Adds hash `h` to a sketch.
pub fn register(sketch: &mut [u8; REGISTERS], h: u64) {
    let idx = (h >> (64 - P)) as usize;
    // Leading zeros of the remaining bits, plus one; the marker bit caps it at 64 - P + 1.
    let rho = ((h << P) | (1 << (P - 1))).leading_zeros() as u8 + 1;
    if sketch[idx] < rho {
        sketch[idx] = rho;
    }
}

/// The sketch of `hashes`.
pub fn sketch_of(hashes: &[u64]) -> Box<[u8; REGISTERS]> {
    let mut s = Box::new([0u8; REGISTERS]);
    for &h in hashes {
        register(&mut s, h);
    }
    s
}

/// A borrowed set of hashes, as [`DistinctCounts::counts_into`] reads its set parts: exact
/// (sorted, no repeats, at most [`EXACT_BOUND`]) or a sketch.
#[derive(Debug, Clone, Copy)]
pub enum SetView<'a> {
    Exact(&'a [u64]),
    Sketch(&'a [u8; REGISTERS]),
}

#[cfg(test)]
impl DistinctSet {
    /// The set as a [`SetView`].
    pub fn view(&self) -> SetView<'_> {
        match self {
            DistinctSet::Exact(v) => SetView::Exact(v),
            DistinctSet::Sketch(s) => SetView::Sketch(s),
        }
    }

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
}

/// The largest register value: `register` caps it with its marker bit.
const RHO_MAX: u8 = (64 - P + 1) as u8;

/// Whether every register of a sketch is one `register` could have written: a check for
/// sketches read back from outside (snapshots).
pub fn valid_sketch(s: &[u8]) -> bool {
    s.len() == REGISTERS && s.iter().all(|&r| r <= RHO_MAX)
}

/// The HyperLogLog estimate, with linear counting for small cardinalities (no large-range
/// correction is needed with 64-bit hashes).
fn estimate(s: &[u8; REGISTERS]) -> f64 {
    let m = REGISTERS as f64;
    let alpha = 0.7213 / (1.0 + 1.079 / m);
    let zeros = s.iter().filter(|&&r| r == 0).count();
    let raw = alpha * m * m / sum_of_inverse_powers(s);
    if raw <= 2.5 * m && zeros > 0 { m * (m / zeros as f64).ln() } else { raw }
}

/// `Σ 2^-r` over the registers, summed exactly in units of `2^-RHO_MAX` and rounded once: the
/// sum a float loop gives whenever its partial sums are exact (every register below 42, so
/// always in practice), without a chain of dependent float adds. A quarter of the registers
/// sums within a u64 (at most 1024 · 2^53 = 2^63).
fn sum_of_inverse_powers(s: &[u8; REGISTERS]) -> f64 {
    let units: u128 =
        s.chunks(REGISTERS / 4).map(|quarter| u128::from(quarter.iter().map(|&r| 1u64 << (RHO_MAX - r.min(RHO_MAX))).sum::<u64>())).sum();
    // Scaling by a power of two is exact.
    units as f64 / (1u64 << RHO_MAX) as f64
}

/// The distinct counts of many sets at once, each the union of parts added in any order: what
/// merging [`DistinctSet`]s one part at a time gives, without a set per counted item. An item
/// with one part (most items of a window: seen in one minute) is counted from that part as it
/// is. Other items' parts are kept flat: inline hashes as (item, hash) pairs grouped by a
/// counting sort, exact sets and sketches by reference into their arenas (nothing is copied to
/// read them). An item's union is then counted with a small table that stops at
/// [`EXACT_BOUND`] distinct hashes, so an item heading for a sketch (a popular item over a long
/// window) is never sorted. Reused from window to window ([`Self::reset`]), so a window's merge
/// costs no allocation once the arrays have grown, and no sorted insert per hash.
#[derive(Debug, Default)]
pub struct DistinctCounts {
    first: Vec<Part>,
    pairs: Vec<(u32, u64)>,
    /// The set parts (exact or sketch) of items with several parts: (item, its reference).
    sets: Vec<(u32, u64)>,
    /// Counting-sort scratch: the pairs' hashes grouped by item, and each item's range.
    starts: Vec<u32>,
    next: Vec<u32>,
    hashes: Vec<u64>,
    seen: SeenTable,
}

/// Groups `(key, hash)` pairs by key with a counting sort (linear): afterwards key `k`'s hashes
/// are `out[starts[k]..starts[k + 1]]`, in the pairs' order. Pairs whose key is `keys` or more
/// are dropped; `cursor` is scratch. The arrays keep their capacity for the next call.
pub fn group_by_key(
    pairs: impl Iterator<Item = (u32, u64)> + Clone,
    keys: usize,
    starts: &mut Vec<u32>,
    cursor: &mut Vec<u32>,
    out: &mut Vec<u64>,
) {
    starts.clear();
    starts.resize(keys + 1, 0);
    for (k, _) in pairs.clone().filter(|&(k, _)| (k as usize) < keys) {
        starts[k as usize + 1] += 1;
    }
    for k in 0..keys {
        starts[k + 1] += starts[k];
    }
    cursor.clone_from(starts);
    out.clear();
    out.resize(starts[keys] as usize, 0);
    for (k, h) in pairs.filter(|&(k, _)| (k as usize) < keys) {
        out[cursor[k as usize] as usize] = h;
        cursor[k as usize] += 1;
    }
}

/// Set `index` of arena `arena`, packed as `arena << 32 | index` (never `u64::MAX`): how
/// [`DistinctCounts::counts_into`]'s resolver is asked for a set part.
fn set_ref(arena: u32, index: u32) -> u64 {
    (u64::from(arena) << 32) | u64::from(index)
}

/// The (arena, index) of a [`set_ref`].
pub fn set_ref_parts(r: u64) -> (usize, usize) {
    ((r >> 32) as usize, (r & 0xffff_ffff) as usize)
}

/// An item's only part so far, in 16 bytes: no hashes (`0, 0`), up to two hashes inline (0:
/// none; a hash is never 0 or `u64::MAX`), a set (`MARK`, its [`set_ref`]), or several parts
/// (`MARK, MARK`: they are then in the pairs and sets).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Part {
    a: u64,
    b: u64,
}

const MARK: u64 = u64::MAX;
const SPILLED: Part = Part { a: MARK, b: MARK };

impl DistinctCounts {
    /// Starts counting for items `0..items` (parts of items beyond are ignored), keeping the
    /// arrays' capacity.
    pub fn reset(&mut self, items: usize) {
        self.first.clear();
        self.first.resize(items, Part::default());
        self.pairs.clear();
        self.sets.clear();
    }

    /// Adds up to two hashes (0: none) to item `k`'s set.
    #[inline]
    pub fn add_inline(&mut self, k: u32, a: u64, b: u64) {
        self.add_part(k, Part { a, b });
    }

    /// Adds every hash of set `index` of arena `arena` (as resolved by [`Self::counts_into`])
    /// to item `k`'s set.
    pub fn add_set(&mut self, k: u32, arena: u32, index: u32) {
        self.add_part(k, Part { a: MARK, b: set_ref(arena, index) });
    }

    #[inline]
    fn add_part(&mut self, k: u32, part: Part) {
        let Some(held) = self.first.get_mut(k as usize) else { return };
        if *held == Part::default() {
            *held = part;
        } else if *held == SPILLED {
            self.spill(k, part);
        } else {
            let only = std::mem::replace(held, SPILLED);
            self.spill(k, only);
            self.spill(k, part);
        }
    }

    fn spill(&mut self, k: u32, part: Part) {
        if part.a == MARK {
            self.sets.push((k, part.b));
            return;
        }
        if part.a != 0 {
            self.pairs.push((k, part.a));
        }
        if part.b != 0 {
            self.pairs.push((k, part.b));
        }
    }

    /// Each item's count (0 for an item without hashes) into `out`: exact up to
    /// [`EXACT_BOUND`], else the sketch estimate, as [`DistinctSet::count`] of the union. Set
    /// parts are looked up by `resolve` from their [`set_ref`]; one it does not find counts as
    /// empty.
    pub fn counts_into<'a>(&mut self, resolve: impl Fn(u64) -> Option<SetView<'a>>, out: &mut Vec<f64>) {
        let items = self.first.len();
        group_by_key(self.pairs.iter().copied(), items, &mut self.starts, &mut self.next, &mut self.hashes);
        let starts = &self.starts;
        self.sets.sort_unstable();
        // The sets lie scattered over the minutes' arenas, and the union count below waits on
        // each one's first load in turn. Touching them all first, in a loop whose loads do not
        // depend on each other, lets those misses overlap.
        std::hint::black_box(self.sets.iter().fold(0u64, |acc, &(_, r)| match resolve(r) {
            Some(SetView::Exact(v)) => acc ^ v.first().copied().unwrap_or(0),
            _ => acc,
        }));
        let mut sets = self.sets.chunk_by(|a, b| a.0 == b.0).peekable();
        out.clear();
        out.extend((0..items).map(|k| {
            let part = self.first[k];
            if part.a != MARK {
                return f64::from(u8::from(part.a != 0) + u8::from(part.b != 0 && part.b != part.a));
            }
            if part != SPILLED {
                return match resolve(part.b) {
                    Some(SetView::Exact(v)) if v.len() <= EXACT_BOUND => v.len() as f64,
                    Some(SetView::Exact(v)) => estimate(&sketch_of(v)).round(),
                    Some(SetView::Sketch(s)) => estimate(s).round(),
                    None => 0.0,
                };
            }
            let own = &self.hashes[starts[k] as usize..starts[k + 1] as usize];
            let sets = sets.next_if(|c| c[0].0 as usize == k).unwrap_or_default();
            if sets.is_empty() && own.len() <= SMALL_UNION {
                return count_small(own);
            }
            count_union(own, sets.iter().filter_map(|&(_, r)| resolve(r)), &mut self.seen)
        }));
    }
}

/// Open-addressing set of hashes that counts up to one past [`EXACT_BOUND`] distinct ones: at
/// most a quarter full, so a probe is short. Reused for every item of a window.
#[derive(Debug)]
struct SeenTable {
    slots: Box<[u64; SEEN_SLOTS]>,
    /// Slots written since the last clear, to clear only those.
    used: Vec<usize>,
}

const SEEN_SLOTS: usize = 4 * (EXACT_BOUND + 1).next_power_of_two();

impl Default for SeenTable {
    fn default() -> Self {
        Self { slots: Box::new([0; SEEN_SLOTS]), used: Vec::with_capacity(EXACT_BOUND + 1) }
    }
}

impl SeenTable {
    /// The number of distinct hashes (never 0) in `hashes`, or `None` once it passes
    /// [`EXACT_BOUND`].
    fn distinct_within_bound<'h>(&mut self, hashes: impl Iterator<Item = &'h u64>) -> Option<usize> {
        let mut within = true;
        for &h in hashes {
            // The low bits: the high ones pick sketch registers; both are well mixed.
            let mut at = h as usize % SEEN_SLOTS;
            while self.slots[at] != 0 && self.slots[at] != h {
                at = (at + 1) % SEEN_SLOTS;
            }
            if self.slots[at] == 0 {
                self.slots[at] = h;
                self.used.push(at);
                if self.used.len() > EXACT_BOUND {
                    within = false;
                    break;
                }
            }
        }
        let distinct = self.used.len();
        self.used.drain(..).for_each(|at| self.slots[at] = 0);
        within.then_some(distinct)
    }
}

/// Unions of at most this many inline hashes (no set part) are counted by comparing each with
/// those before it: an item seen in a few minutes of a window by a few users each, the common
/// multi-part case, without the table.
const SMALL_UNION: usize = 16;

/// The number of distinct values among at most [`SMALL_UNION`] hashes.
fn count_small(hashes: &[u64]) -> f64 {
    let fresh = hashes.iter().enumerate().filter(|&(i, h)| !hashes[..i].contains(h)).count();
    fresh as f64
}

/// The count of the union of `own` hashes (any order, repeats allowed) and the `sets`.
fn count_union<'s>(own: &[u64], sets: impl Iterator<Item = SetView<'s>> + Clone, seen: &mut SeenTable) -> f64 {
    let exact = || sets.clone().filter_map(|s| if let SetView::Exact(v) = s { Some(v) } else { None });
    let all = || own.iter().chain(exact().flatten());
    if !sets.clone().any(|s| matches!(s, SetView::Sketch(_))) {
        if own.is_empty() && exact().all(<[u64]>::is_empty) {
            return 0.0;
        }
        if let Some(distinct) = seen.distinct_within_bound(all()) {
            return distinct as f64;
        }
    }
    let mut s = Box::new([0u8; REGISTERS]);
    for p in sets.clone() {
        if let SetView::Sketch(p) = p {
            s.iter_mut().zip(p.iter()).for_each(|(r, &x)| *r = (*r).max(x));
        }
    }
    all().for_each(|&h| register(&mut s, h));
    estimate(&s).round()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

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

    #[test]
    fn registers_stay_within_their_bound() {
        let mut s = Box::new([0u8; REGISTERS]);
        // Nothing past the register bits: only the marker bit stops the count.
        register(&mut s, 1 << 63);
        assert_eq!(s[REGISTERS / 2], RHO_MAX);
        assert!(valid_sketch(&s[..]));
        s[7] = RHO_MAX + 1;
        assert!(!valid_sketch(&s[..]));
        assert!(!valid_sketch(&s[..100]));
    }

    proptest! {
        /// The exact sum is the float loop's sum (exp2 of each register, added in order)
        /// whenever that loop's partial sums are exact, which holds for registers below 42.
        #[test]
        fn the_register_sum_is_the_float_loops(regs in prop::collection::vec(prop_oneof![8 => 0u8..6, 2 => 0u8..42], REGISTERS)) {
            let s: Box<[u8; REGISTERS]> = regs.into_boxed_slice().try_into().unwrap();
            let float = s.iter().fold(0.0f64, |sum, &r| sum + (-f64::from(r)).exp2());
            prop_assert_eq!(sum_of_inverse_powers(&s).to_bits(), float.to_bits());
        }
    }

    proptest! {
        /// The flat merge counts exactly what merging sets part by part counts, whatever the
        /// parts: small and large exact sets, sketches, items without hashes.
        #[test]
        fn flat_counts_equal_set_merges(
            parts in prop::collection::vec((0u32..6, 0usize..400, 0u64..600, any::<bool>()), 0..14)
        ) {
            let parts: Vec<(u32, DistinctSet, bool)> =
                parts.into_iter().map(|(k, n, base, as_set)| (k, set_of((0..n as u64).map(|i| format!("u{}", base + i))), as_set)).collect();
            // Reused: a first round over other parts must leave nothing behind.
            let mut flat = DistinctCounts::default();
            flat.reset(3);
            flat.add_inline(1, 5, 6);
            flat.add_inline(1, 7, 0);
            flat.counts_into(|_| None, &mut Vec::new());
            flat.reset(6);
            // The set parts, split over two arenas as over two minutes.
            let arenas: Vec<Vec<DistinctSet>> = vec![
                parts.iter().step_by(2).map(|(_, p, _)| p.clone()).collect(),
                parts.iter().skip(1).step_by(2).map(|(_, p, _)| p.clone()).collect(),
            ];
            let mut sets = vec![DistinctSet::default(); 6];
            for (i, (k, part, as_set)) in parts.iter().enumerate() {
                match part {
                    // Up to two hashes at a time, as an (item, minute) holds them inline.
                    DistinctSet::Exact(v) if !as_set => v.chunks(2).for_each(|c| flat.add_inline(*k, c[0], c.get(1).copied().unwrap_or(0))),
                    _ => flat.add_set(*k, (i % 2) as u32, (i / 2) as u32),
                }
                sets[*k as usize].merge(part);
            }
            let want: Vec<f64> = sets.iter().map(DistinctSet::count).collect();
            let mut got = Vec::new();
            flat.counts_into(
                |r| {
                    let (arena, index) = set_ref_parts(r);
                    Some(arenas.get(arena)?.get(index)?.view())
                },
                &mut got,
            );
            prop_assert_eq!(got, want);
        }
    }
}
