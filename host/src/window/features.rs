//! Declared features (`hot_score.features`, DESIGN §4): per (item, minute) aggregates kept beside
//! a minute's cells, merged over a window's minutes into one column per feature. Every op is
//! order-independent and mergeable (an exact fixed-point sum, a max, a set union, the greatest
//! `(ts, value)`), so a window's columns depend only on which events it holds. A scenario without
//! features has no [`FeatureSet`] and its minutes no [`FeatureMinute`]: nothing is stored or
//! checked per event beyond one `Option` test.

use crate::config::{FeatureDef, FeatureField, FeatureOp};
use crate::event::{Event, PropValue};
use crate::scoring::{FeatureColumn, FeatureValues};

use super::distinct::{
    DistinctCounts, EXACT_BOUND, REGISTERS, SetView, group_by_key, hash, register, set_ref_parts, sketch_of, valid_sketch,
};

/// Fixed-point scale of `sum`: micro-units. A value's scaled form saturates at the i64 range
/// (±9.2e12 units); sums are i128, so they never overflow.
const SUM_SCALE: f64 = 1e6;
/// Marks an `Agg` of `distinct` past its two inline hashes: its hashes are then in the minute's
/// spilled hashes or its sketch.
const SPILLED: u64 = u64::MAX;
/// In the `b` of a [`SPILLED`] aggregate: the rest is the index of its sketch.
const SKETCH: u64 = 1 << 63;
/// Spilled hashes that arrive before a fold sorts them in: at least this many, or as many as
/// are folded (so each is regrouped O(log n) times over a minute's life, and repeats of one value
/// hold at most about half the arrays).
const FOLD_AT: usize = 4096;

/// One feature's aggregate for one (item, minute): 16 bytes, read per op.
/// - `sum`: the i128 sum of micro-units, low word in `a`.
/// - `max`: `a` the f64 bits, `b` 1 when set.
/// - `distinct`: up to two hashes inline (0: none), or `a` = [`SPILLED`] and `b` its run in the
///   folded hashes (start << 32 | len) or [`SKETCH`] | its sketch's index.
/// - `last`: `a` the i64 event time, `b` the value's span in the minute's text (start << 32 |
///   len + 1; 0: none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Agg {
    a: u64,
    b: u64,
}

/// A scenario's declared features and, per action code, which of them an event of that action
/// feeds (bit i: feature i).
#[derive(Debug, Clone, Default)]
pub struct FeatureSet {
    pub defs: Vec<FeatureDef>,
    mask_by_action: Vec<u8>,
}

impl FeatureSet {
    pub fn new(defs: Vec<FeatureDef>) -> Self {
        Self { defs, mask_by_action: Vec::new() }
    }

    /// The features an event of action `code` feeds; `actions` names the codes.
    #[inline]
    pub fn mask(&mut self, code: u16, actions: &[String]) -> u8 {
        match self.mask_by_action.get(code as usize) {
            Some(&m) => m,
            None => self.mask_of_new(code, actions),
        }
    }

    #[cold]
    fn mask_of_new(&mut self, code: u16, actions: &[String]) -> u8 {
        while self.mask_by_action.len() <= code as usize {
            let action = &actions[self.mask_by_action.len()];
            let m = self.defs.iter().enumerate().filter(|(_, d)| d.admits(action)).fold(0u8, |m, (i, _)| m | (1 << i));
            self.mask_by_action.push(m);
        }
        self.mask_by_action[code as usize]
    }
}

/// The feature aggregates of one minute's items.
#[derive(Debug, Default)]
pub struct FeatureMinute {
    /// `features` aggregates per row; an item's row is its head cell's index in the minute, so
    /// an event finds it without a lookup (rows of other cells stay empty). Rows past the last
    /// head an event fed are not allocated. An all-empty row reads as no aggregates.
    aggs: Vec<Agg>,
    /// The hashes of spilled `distinct` aggregates: `spill_hash[j]` belongs to aggregate
    /// `spill_at[j]`. The first `folded` are sorted by (aggregate, hash) without repeats, each
    /// aggregate's run recorded in its `b`; the rest arrived since, in any order, repeats
    /// allowed, and are sorted in before the minute is read ([`Self::fold`]). One pair of flat
    /// arrays for the minute: an event appends, with no set to allocate or sorted insert.
    spill_at: Vec<u32>,
    spill_hash: Vec<u64>,
    folded: usize,
    /// Spilled aggregates past [`EXACT_BOUND`] distinct hashes.
    sketches: Vec<Box<[u8; REGISTERS]>>,
    /// `last` values, back to back; replaced values are garbage until compaction.
    text: String,
    garbage: usize,
}

/// A clone is folded: states are exported (snapshots, repartition) through clones, which then
/// read as fast as the live state.
impl Clone for FeatureMinute {
    fn clone(&self) -> Self {
        let mut c = Self {
            aggs: self.aggs.clone(),
            spill_at: self.spill_at.clone(),
            spill_hash: self.spill_hash.clone(),
            folded: self.folded,
            sketches: self.sketches.clone(),
            text: self.text.clone(),
            garbage: self.garbage,
        };
        c.fold();
        c
    }
}

/// A value an event gives a feature.
enum Input<'e> {
    Number(f64),
    Text(&'e str),
}

fn input<'e>(def: &FeatureDef, ev: &'e Event<'_>) -> Option<Input<'e>> {
    let v = match &def.field {
        FeatureField::WatchTimeMs => Input::Number(ev.watch_time_ms?),
        FeatureField::UserId => Input::Text(&ev.user_id),
        FeatureField::Category => Input::Text(ev.category.as_deref()?),
        FeatureField::Prop(k) => match ev.prop(k)? {
            PropValue::Number(x) => Input::Number(*x),
            PropValue::Text(t) => Input::Text(t),
        },
    };
    // A value of the other kind does not contribute (the event is valid for other scenarios).
    match (def.op.numeric(), &v) {
        (true, Input::Number(_)) | (false, Input::Text(_)) => Some(v),
        _ => None,
    }
}

fn span(b: u64) -> (usize, usize) {
    ((b >> 32) as usize, (b & 0xffff_ffff) as usize - 1)
}

impl FeatureMinute {
    /// Row of head cell `head` for `n` features, allocated (empty) if past the end.
    fn row(&mut self, head: u32, n: usize) -> usize {
        let end = (head as usize + 1) * n;
        if self.aggs.len() < end {
            self.aggs.resize(end, Agg::default());
        }
        head as usize
    }

    /// Whether cell `cell`'s row is allocated, for `n` features (its aggregates may be empty).
    pub fn has_row(&self, cell: usize, n: usize) -> bool {
        (cell + 1) * n <= self.aggs.len()
    }

    /// Adds event `ev` of the item whose head cell here is `head` to the features in `mask`.
    #[inline]
    pub fn add(&mut self, head: u32, mask: u8, set: &FeatureSet, ev: &Event<'_>) {
        let n = set.defs.len();
        let row = self.row(head, n);
        for (i, def) in set.defs.iter().enumerate() {
            if mask & (1 << i) == 0 {
                continue;
            }
            let Some(v) = input(def, ev) else { continue };
            let at = row * n + i;
            match (def.op, v) {
                (FeatureOp::Sum, Input::Number(x)) => {
                    let agg = &mut self.aggs[at];
                    let sum = sum_of(agg) + i128::from(round_to_i64(x * SUM_SCALE));
                    *agg = Agg { a: sum as u64, b: (sum >> 64) as u64 };
                }
                (FeatureOp::Max, Input::Number(x)) => {
                    let agg = &mut self.aggs[at];
                    // The total order (+0 above -0): with `>` the first of two zeros would stay,
                    // and the column would depend on the events' order.
                    if agg.b == 0 || x.total_cmp(&f64::from_bits(agg.a)).is_gt() {
                        *agg = Agg { a: x.to_bits(), b: 1 };
                    }
                }
                (FeatureOp::Distinct, Input::Text(t)) => self.add_distinct(at, hash(t)),
                (FeatureOp::Last, Input::Text(t)) => self.add_last(at, ev.ts, t, set),
                _ => {}
            }
        }
    }

    fn add_distinct(&mut self, at: usize, h: u64) {
        let agg = &mut self.aggs[at];
        if agg.a == SPILLED {
            if agg.b & SKETCH != 0 {
                register(&mut self.sketches[(agg.b & !SKETCH) as usize], h);
            } else {
                self.spill(at, h);
            }
        } else if agg.a == 0 || agg.a == h {
            agg.a = h;
        } else if agg.b == 0 || agg.b == h {
            agg.b = h;
        } else {
            let (a, b) = (agg.a, agg.b);
            // No run until the next fold finds its hashes.
            *agg = Agg { a: SPILLED, b: 0 };
            [a, b, h].into_iter().for_each(|x| self.spill(at, x));
        }
    }

    fn spill(&mut self, at: usize, h: u64) {
        self.spill_at.push(at as u32);
        self.spill_hash.push(h);
        if self.spill_at.len() - self.folded > FOLD_AT.max(self.folded) {
            self.fold();
        }
    }

    /// Sorts the spilled hashes that arrived since the last fold in, drops repeats, records each
    /// spilled aggregate's run, and moves a run past [`EXACT_BOUND`] to a sketch: what every
    /// read of the minute's `distinct` aggregates expects. Cheap when nothing arrived.
    pub fn fold(&mut self) {
        if self.folded == self.spill_at.len() {
            return;
        }
        // Group every spilled hash by aggregate with a counting sort (linear: no comparison
        // sort over the whole minute), then sort each aggregate's few hashes. Runs are kept in
        // place, compacted left.
        let aggs = self.aggs.len();
        let (mut starts, mut cursor, mut hashes) = (Vec::new(), Vec::new(), Vec::new());
        let pairs = self.spill_at.iter().copied().zip(self.spill_hash.iter().copied());
        group_by_key(pairs, aggs, &mut starts, &mut cursor, &mut hashes);
        let mut at_out = Vec::with_capacity(hashes.len());
        let mut kept = 0usize;
        for at in 0..aggs {
            let (start, end) = (starts[at] as usize, starts[at + 1] as usize);
            if end == start {
                continue;
            }
            let run = &mut hashes[start..end];
            run.sort_unstable();
            let mut len = 1;
            for j in 1..run.len() {
                if run[j] != run[len - 1] {
                    run[len] = run[j];
                    len += 1;
                }
            }
            let agg = &mut self.aggs[at];
            if agg.b & SKETCH != 0 {
                // Only a restored sketch can meet spilled hashes of its own here.
                run[..len].iter().for_each(|&h| register(&mut self.sketches[(agg.b & !SKETCH) as usize], h));
            } else if len > EXACT_BOUND {
                *agg = Agg { a: SPILLED, b: SKETCH | self.sketches.len() as u64 };
                self.sketches.push(sketch_of(&run[..len]));
            } else {
                *agg = Agg { a: SPILLED, b: ((kept as u64) << 32) | len as u64 };
                hashes.copy_within(start..start + len, kept);
                at_out.extend(std::iter::repeat_n(at as u32, len));
                kept += len;
            }
        }
        hashes.truncate(kept);
        self.folded = kept;
        (self.spill_at, self.spill_hash) = (at_out, hashes);
    }

    /// A `distinct` aggregate's hashes past its inline two, the minute folded.
    fn spilled(&self, agg: &Agg) -> Option<SetView<'_>> {
        if agg.b & SKETCH != 0 {
            return self.sketches.get((agg.b & !SKETCH) as usize).map(|s| SetView::Sketch(s));
        }
        let (start, len) = ((agg.b >> 32) as usize, (agg.b & 0xffff_ffff) as usize);
        self.spill_hash.get(start..start + len).map(SetView::Exact)
    }

    /// The set part at `at` for [`DistinctCounts`], the minute folded.
    fn set_part(&self, at: usize) -> Option<SetView<'_>> {
        self.spilled(self.aggs.get(at)?)
    }

    fn add_last(&mut self, at: usize, ts: i64, value: &str, set: &FeatureSet) {
        let agg = self.aggs[at];
        if agg.b != 0 {
            let (start, len) = span(agg.b);
            let held = &self.text[start..start + len];
            // The greatest (ts, value) wins, so the order events arrive in never matters.
            if (ts, value) <= (agg.a as i64, held) {
                return;
            }
            if held == value {
                self.aggs[at].a = ts as u64;
                return;
            }
            self.garbage += len;
        }
        let start = self.text.len();
        self.text.push_str(value);
        self.aggs[at] = Agg { a: ts as u64, b: ((start as u64) << 32) | (value.len() as u64 + 1) };
        if self.garbage > 4096 && self.garbage > self.text.len() / 2 {
            self.compact_text(set);
        }
    }

    /// Drops replaced `last` values: the text then grows with the minute's items, not its events.
    fn compact_text(&mut self, set: &FeatureSet) {
        let n = set.defs.len();
        let mut text = String::with_capacity(self.text.len() - self.garbage);
        for (i, agg) in self.aggs.iter_mut().enumerate() {
            if set.defs[i % n].op == FeatureOp::Last && agg.b != 0 {
                let (start, len) = span(agg.b);
                let new_start = text.len();
                text.push_str(&self.text[start..start + len]);
                agg.b = ((new_start as u64) << 32) | (len as u64 + 1);
            }
        }
        self.text = text;
        self.garbage = 0;
    }

    /// Keeps the aggregates of retained features after a redefinition to `defs`: new feature
    /// `i` takes old feature `keep[i]`'s values, or starts empty.
    pub fn remap(&mut self, old_n: usize, keep: &[Option<usize>], defs: &[FeatureDef]) {
        self.fold();
        let (old_n, new_n) = (old_n.max(1), keep.len());
        let rows = self.aggs.len() / old_n;
        let mut aggs = Vec::with_capacity(rows * new_n);
        let mut sketches = Vec::new();
        // A kept aggregate's spilled hashes move with it, re-sorted under its new index.
        let mut spilled: Vec<(u32, u64)> = Vec::new();
        for r in 0..rows {
            for (i, k) in keep.iter().enumerate() {
                let Some(o) = *k else {
                    aggs.push(Agg::default());
                    continue;
                };
                let agg = self.aggs[r * old_n + o];
                let at = (r * new_n + i) as u32;
                // Only a `distinct` aggregate's words are markers (a sum's may be anything).
                let is_spilled = defs.get(i).is_some_and(|d| d.op == FeatureOp::Distinct) && agg.a == SPILLED;
                match is_spilled.then(|| self.spilled(&agg)).flatten() {
                    Some(SetView::Sketch(s)) => {
                        aggs.push(Agg { a: SPILLED, b: SKETCH | sketches.len() as u64 });
                        sketches.push(Box::new(*s));
                    }
                    Some(SetView::Exact(v)) => {
                        aggs.push(Agg { a: SPILLED, b: 0 });
                        spilled.extend(v.iter().map(|&h| (at, h)));
                    }
                    None => aggs.push(agg),
                }
            }
        }
        self.aggs = aggs;
        self.sketches = sketches;
        (self.spill_at, self.spill_hash) = spilled.into_iter().unzip();
        self.folded = 0;
        self.fold();
    }

    pub fn shrink_to_fit(&mut self) {
        self.fold();
        self.aggs.shrink_to_fit();
        self.spill_at.shrink_to_fit();
        self.spill_hash.shrink_to_fit();
    }

    pub fn heap_bytes(&self) -> usize {
        self.aggs.capacity() * std::mem::size_of::<Agg>()
            + self.spill_at.capacity() * 4
            + self.spill_hash.capacity() * 8
            + self.sketches.len() * (REGISTERS + std::mem::size_of::<Box<[u8; REGISTERS]>>())
            + self.text.capacity()
    }

    /// Aggregate `at` (of head `h`, feature `i`: `h * n + i`) in its portable form; `None`
    /// past the allocated rows.
    pub fn portable(&self, at: usize, op: FeatureOp) -> Option<PortableAgg> {
        let agg = self.aggs.get(at)?;
        Some(match op {
            // A zero sum reads as none: a row that only events without the field touched
            // then writes what no row does.
            FeatureOp::Sum if sum_of(agg) == 0 => PortableAgg::Empty,
            FeatureOp::Sum => PortableAgg::Sum(sum_of(agg)),
            FeatureOp::Max if agg.b == 0 => PortableAgg::Empty,
            FeatureOp::Max => PortableAgg::Max(f64::from_bits(agg.a)),
            FeatureOp::Distinct => self.distinct_of(at, agg),
            FeatureOp::Last if agg.b == 0 => PortableAgg::Empty,
            FeatureOp::Last => {
                let (start, len) = span(agg.b);
                PortableAgg::Last(agg.a as i64, self.text[start..start + len].to_string())
            }
        })
    }

    /// `distinct` aggregate `at` as a canonical set, whether or not its minute is folded (a
    /// state read in place rather than through a clone, which folds).
    fn distinct_of(&self, at: usize, agg: &Agg) -> PortableAgg {
        if agg.a != SPILLED {
            let mut v: Vec<u64> = [agg.a, agg.b].into_iter().filter(|&h| h != 0).collect();
            v.sort_unstable();
            return if v.is_empty() { PortableAgg::Empty } else { PortableAgg::Exact(v) };
        }
        let mut v = match self.spilled(agg) {
            Some(SetView::Sketch(s)) => {
                let mut s = Box::new(*s);
                self.unfolded(at).for_each(|h| register(&mut s, h));
                return PortableAgg::Sketch(s.to_vec());
            }
            Some(SetView::Exact(v)) => v.to_vec(),
            None => Vec::new(),
        };
        v.extend(self.unfolded(at));
        v.sort_unstable();
        v.dedup();
        if v.len() > EXACT_BOUND { PortableAgg::Sketch(sketch_of(&v).to_vec()) } else { PortableAgg::Exact(v) }
    }

    /// Spilled hashes of aggregate `at` not folded yet.
    fn unfolded(&self, at: usize) -> impl Iterator<Item = u64> + '_ {
        let tail = self.spill_at[self.folded..].iter().zip(&self.spill_hash[self.folded..]);
        tail.filter(move |&(&a, _)| a as usize == at).map(|(_, &h)| h)
    }

    /// Restores one portable aggregate into head cell `head`'s row, feature `i` of `set`.
    pub fn restore(&mut self, head: u32, i: usize, set: &FeatureSet, p: &PortableAgg) -> Result<(), String> {
        let n = set.defs.len();
        let at = self.row(head, n) * n + i;
        match (set.defs[i].op, p) {
            (_, PortableAgg::Empty) => {}
            (FeatureOp::Sum, PortableAgg::Sum(s)) => self.aggs[at] = Agg { a: *s as u64, b: (*s >> 64) as u64 },
            (FeatureOp::Max, PortableAgg::Max(x)) if x.is_finite() => self.aggs[at] = Agg { a: x.to_bits(), b: 1 },
            (FeatureOp::Distinct, PortableAgg::Exact(v)) if v.len() <= EXACT_BOUND => {
                for &h in v {
                    if h == 0 || h == SPILLED {
                        return Err("a distinct hash out of range".into());
                    }
                    self.add_distinct(at, h);
                }
            }
            (FeatureOp::Distinct, PortableAgg::Sketch(regs)) => {
                if !valid_sketch(regs) {
                    return Err("a sketch of the wrong size or with a register out of range".into());
                }
                let regs: Box<[u8; REGISTERS]> =
                    regs.clone().into_boxed_slice().try_into().map_err(|_| "a sketch of the wrong size".to_string())?;
                self.aggs[at] = Agg { a: SPILLED, b: SKETCH | self.sketches.len() as u64 };
                self.sketches.push(regs);
            }
            (FeatureOp::Last, PortableAgg::Last(ts, v)) if v.len() <= crate::event::MAX_PROP_TEXT_BYTES => self.add_last(at, *ts, v, set),
            (op, p) => return Err(format!("a {p:?} aggregate for a `{}` feature", op.name())),
        }
        Ok(())
    }
}

/// `x.round() as i64` (half away from zero, saturating, NaN to 0) without a call to `round`:
/// the truncation is one instruction, and the rest of `x` is exact below 2^52 (above it `x` is
/// whole).
fn round_to_i64(x: f64) -> i64 {
    let t = x as i64;
    let rest = x - t as f64;
    if rest >= 0.5 {
        t.saturating_add(1)
    } else if rest <= -0.5 {
        t.saturating_sub(1)
    } else {
        t
    }
}

/// `s as f64`, through i64 where it fits: the same rounding, without a call to the 128-bit
/// conversion per item.
fn sum_to_f64(s: i128) -> f64 {
    if let Ok(s) = i64::try_from(s) { s as f64 } else { wide_to_f64(s) }
}

#[cold]
fn wide_to_f64(s: i128) -> f64 {
    s as f64
}

fn sum_of(agg: &Agg) -> i128 {
    (i128::from(agg.b as i64) << 64) | i128::from(agg.a)
}

/// A feature aggregate in snapshots: canonical (sets sorted, text copied out), so equal
/// aggregates always encode to equal bytes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum PortableAgg {
    Empty,
    Sum(i128),
    Max(f64),
    Exact(Vec<u64>),
    Sketch(Vec<u8>),
    Last(i64, String),
}

/// One feature's merge of a window's minutes, per batch item.
#[derive(Debug)]
enum Acc {
    Sum(Vec<i128>),
    Max(Vec<Option<f64>>),
    Distinct(DistinctCounts),
    /// The greatest `(ts, value)` so far: its event time, its minute (an index into the
    /// window's feature minutes) and its span there (0: none).
    Last(Vec<(i64, u32, u64)>),
}

impl Acc {
    fn new(op: FeatureOp) -> Self {
        match op {
            FeatureOp::Sum => Acc::Sum(Vec::new()),
            FeatureOp::Max => Acc::Max(Vec::new()),
            FeatureOp::Distinct => Acc::Distinct(DistinctCounts::default()),
            FeatureOp::Last => Acc::Last(Vec::new()),
        }
    }

    fn op(&self) -> FeatureOp {
        match self {
            Acc::Sum(_) => FeatureOp::Sum,
            Acc::Max(_) => FeatureOp::Max,
            Acc::Distinct(_) => FeatureOp::Distinct,
            Acc::Last(_) => FeatureOp::Last,
        }
    }

    fn reset(&mut self, items: usize) {
        match self {
            Acc::Sum(v) => refill(v, items, 0),
            Acc::Max(v) => refill(v, items, None),
            Acc::Distinct(d) => d.reset(items),
            Acc::Last(v) => refill(v, items, (0, 0, 0)),
        }
    }
}

fn refill<T: Clone>(v: &mut Vec<T>, items: usize, empty: T) {
    v.clear();
    v.resize(items, empty);
}

/// The window's feature columns, built by merging each batch item's (item, minute) aggregates.
/// Reused from window to window: once its arrays have grown, a window allocates only the
/// columns it hands over.
#[derive(Debug, Default)]
pub struct BatchFeatures {
    accs: Vec<Acc>,
    /// Number columns handed back by [`Self::recycle`], refilled by the next window.
    spare: Vec<Vec<f64>>,
}

impl BatchFeatures {
    /// Starts a window of `items` batch items under `set`.
    pub fn reset(&mut self, set: &FeatureSet, items: usize) {
        if !self.accs.iter().map(Acc::op).eq(set.defs.iter().map(|d| d.op)) {
            self.accs = set.defs.iter().map(|d| Acc::new(d.op)).collect();
        }
        self.accs.iter_mut().for_each(|a| a.reset(items));
    }

    /// Merges one minute's aggregates: `minutes[minute]` is the minute, `heads` pairs each batch
    /// item with its row there. A column at a time: the accumulators are indexed by batch item,
    /// so each access may miss the cache, and a short loop per column keeps many of those misses
    /// in flight at once where one loop over every feature would wait on each in turn.
    pub fn merge_minute(&mut self, minutes: &[&FeatureMinute], minute: u32, heads: &[(u32, u32)]) {
        let Some(fm) = minutes.get(minute as usize) else { return };
        let n = self.accs.len();
        for (i, acc) in self.accs.iter_mut().enumerate() {
            let aggs = heads.iter().filter_map(|&(k, r)| Some((k as usize, fm.aggs.get(r as usize * n + i)?)));
            match acc {
                Acc::Sum(v) => aggs.for_each(|(k, agg)| v[k] += sum_of(agg)),
                Acc::Max(v) => {
                    for (k, agg) in aggs.filter(|(_, agg)| agg.b != 0) {
                        let x = f64::from_bits(agg.a);
                        // As per event: the total order, so -0 and +0 merge the same either way.
                        v[k] = Some(v[k].map_or(x, |m| if x.total_cmp(&m).is_gt() { x } else { m }));
                    }
                }
                Acc::Distinct(d) => {
                    for &(k, r) in heads {
                        let at = r as usize * n + i;
                        match fm.aggs.get(at) {
                            Some(agg) if agg.a != SPILLED => d.add_inline(k, agg.a, agg.b),
                            Some(_) => d.add_set(k, minute, at as u32),
                            None => {}
                        }
                    }
                }
                Acc::Last(v) => {
                    for (k, agg) in aggs.filter(|(_, agg)| agg.b != 0) {
                        let (held_ts, held_minute, held_span) = v[k];
                        let cand = (agg.a as i64, text_of(fm, agg.b));
                        if held_span == 0 || cand > (held_ts, minutes.get(held_minute as usize).map_or("", |m| text_of(m, held_span))) {
                            v[k] = (cand.0, minute, agg.b);
                        }
                    }
                }
            }
        }
    }

    /// Takes back a window's columns once scored: their vectors (an item's worth of numbers
    /// each) are refilled by the next window instead of allocated, zeroed by the kernel and
    /// freed again.
    pub fn recycle(&mut self, columns: Vec<FeatureColumn>) {
        for c in columns {
            if let FeatureValues::Number(v) = c.values
                && self.spare.len() < self.accs.len()
            {
                self.spare.push(v);
            }
        }
    }

    /// The columns, in declaration order; `minutes` as passed to [`Self::merge_minute`].
    pub fn columns(&mut self, set: &FeatureSet, minutes: &[&FeatureMinute]) -> Vec<FeatureColumn> {
        let resolve = |r| {
            let (minute, at) = set_ref_parts(r);
            minutes.get(minute)?.set_part(at)
        };
        let spare = &mut self.spare;
        self.accs
            .iter_mut()
            .zip(&set.defs)
            .map(|(acc, def)| {
                let values = match acc {
                    // Through i64 where the sum fits (the same rounding, without a 128-bit
                    // conversion call per item).
                    Acc::Sum(v) => numbers(spare, v.iter().map(|&s| sum_to_f64(s) / SUM_SCALE)),
                    Acc::Max(v) => numbers(spare, v.iter().map(|m| m.unwrap_or(0.0))),
                    Acc::Distinct(d) => {
                        let mut counts = spare.pop().unwrap_or_default();
                        d.counts_into(resolve, &mut counts);
                        FeatureValues::Number(counts)
                    }
                    Acc::Last(v) => FeatureValues::Text(
                        v.iter()
                            .map(|&(_, m, span)| {
                                if span == 0 { String::new() } else { minutes.get(m as usize).map_or("", |m| text_of(m, span)).to_string() }
                            })
                            .collect(),
                    ),
                };
                FeatureColumn { name: def.name.clone(), values }
            })
            .collect()
    }
}

/// A number column of `values`, in a spare vector if there is one.
fn numbers(spare: &mut Vec<Vec<f64>>, values: impl Iterator<Item = f64>) -> FeatureValues {
    let mut v = spare.pop().unwrap_or_default();
    v.clear();
    v.extend(values);
    FeatureValues::Number(v)
}

/// The `last` value at span `b` of minute `fm`.
fn text_of(fm: &FeatureMinute, b: u64) -> &str {
    let (start, len) = span(b);
    fm.text.get(start..start + len).unwrap_or("")
}

/// For each new definition, the index of the same definition among `old`, if any.
pub fn retained(old: &[FeatureDef], new: &[FeatureDef]) -> Vec<Option<usize>> {
    new.iter().map(|d| old.iter().position(|o| o == d)).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::config::WindowGeometry;
    use crate::event::parse_event;
    use crate::window::HotWindows;

    const T0: i64 = 1_767_225_600_000;
    const MIN: i64 = 60_000;

    fn def(name: &str, op: FeatureOp, field: FeatureField, actions: Option<&[&str]>) -> FeatureDef {
        FeatureDef { name: name.into(), op, field, actions: actions.map(|a| a.iter().map(|s| s.to_string()).collect()) }
    }

    fn prop(k: &str) -> FeatureField {
        FeatureField::Prop(k.into())
    }

    /// An event as JSON text: item, action, ts, user, then extra fields.
    fn ev(item: &str, action: &str, ts: i64, user: &str, extra: &str) -> String {
        format!(r#"{{"tenant_id":"t","scenario_id":"s","user_id":"{user}","item_id":"{item}","action":"{action}","ts":{ts}{extra}}}"#)
    }

    fn add_all(w: &mut HotWindows, events: &[String], g: WindowGeometry) {
        for e in events {
            let e = parse_event(e.as_bytes()).unwrap();
            w.add_event(&e, g, usize::MAX);
        }
    }

    /// Feature columns of the window ending at `end`, per item name.
    fn columns(w: &mut HotWindows, end: i64, g: WindowGeometry) -> BTreeMap<String, Vec<String>> {
        let mut b = WindowBatch::default();
        w.build_batch(end, g, &mut b);
        let mut out = BTreeMap::new();
        for (k, id) in w.batch_ids().enumerate() {
            let row = b
                .features
                .iter()
                .map(|c| match &c.values {
                    FeatureValues::Number(v) => format!("{}={}", c.name, v[k]),
                    FeatureValues::Text(v) => format!("{}={}", c.name, v[k]),
                })
                .collect();
            out.insert(id.to_string(), row);
        }
        out
    }

    use crate::scoring::WindowBatch;

    fn row(cols: &BTreeMap<String, Vec<String>>, item: &str) -> Vec<String> {
        cols[item].clone()
    }

    proptest! {
        #[test]
        fn rounding_is_std_rounding(x in prop_oneof![any::<f64>(), -1e7f64..1e7, (-1000i64..1000).prop_map(|k| k as f64 / 2.0)]) {
            prop_assert_eq!(round_to_i64(x), x.round() as i64);
        }
    }

    #[test]
    fn a_restored_sketch_is_checked() {
        let set = FeatureSet::new(vec![def("users", FeatureOp::Distinct, FeatureField::UserId, None)]);
        let mut fm = FeatureMinute::default();
        let mut regs = vec![3u8; REGISTERS];
        assert!(fm.restore(0, 0, &set, &PortableAgg::Sketch(regs.clone())).is_ok());
        regs[9] = 200;
        assert!(fm.restore(1, 0, &set, &PortableAgg::Sketch(regs)).unwrap_err().contains("out of range"));
        assert!(fm.restore(1, 0, &set, &PortableAgg::Sketch(vec![1; 10])).is_err());
    }

    #[test]
    fn rounding_edges_are_std_rounding() {
        for x in [
            0.49999999999999994,
            -0.49999999999999994,
            2.5,
            -2.5,
            4503599627370495.5,
            9.3e18,
            -9.3e18,
            f64::MAX,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            -0.0,
        ] {
            assert_eq!(round_to_i64(x), x.round() as i64, "{x}");
        }
    }

    #[test]
    fn each_op_over_a_window() {
        let g = WindowGeometry::from_minutes(10, 5);
        let mut w = HotWindows::default();
        w.set_features(&[
            def("watch", FeatureOp::Sum, FeatureField::WatchTimeMs, Some(&["view"])),
            def("peak", FeatureOp::Max, prop("dur"), None),
            def("users", FeatureOp::Distinct, FeatureField::UserId, None),
            def("cat", FeatureOp::Last, FeatureField::Category, None),
        ]);
        let events = [
            ev("a", "view", T0 + 1, "u1", r#","watch_time_ms":0.1,"props":{"dur":3},"category":"x""#),
            ev("a", "view", T0 + MIN + 2, "u2", r#","watch_time_ms":0.2,"props":{"dur":-7.5},"category":"y""#),
            // Not a view: no watch time; same user: counted once; same ts as above, greater value.
            ev("a", "click", T0 + MIN + 2, "u1", r#","watch_time_ms":100,"props":{"dur":"long"},"category":"z""#),
            ev("a", "view", T0 + 3 * MIN, "u3", r#","props":{"dur":9}"#),
            // Nothing any feature reads beyond the user.
            ev("b", "click", T0 + 4, "u9", ""),
        ];
        add_all(&mut w, &events, g);
        let cols = columns(&mut w, T0 + 10 * MIN, g);
        // 0.1 + 0.2 is exactly 0.3 in fixed point.
        assert_eq!(row(&cols, "a"), ["watch=0.3", "peak=9", "users=3", "cat=z"]);
        assert_eq!(row(&cols, "b"), ["watch=0", "peak=0", "users=1", "cat="]);
        // A later window without the first minute.
        let cols = columns(&mut w, T0 + 11 * MIN, g);
        assert_eq!(row(&cols, "a"), ["watch=0.2", "peak=9", "users=3", "cat=z"]);
    }

    #[test]
    fn recycled_columns_read_as_fresh_ones() {
        let g = WindowGeometry::from_minutes(10, 5);
        let mut w = HotWindows::default();
        w.set_features(&all_ops());
        let events: Vec<String> = (0..400)
            .map(|i| {
                ev(
                    &format!("i{}", i % 7),
                    "view",
                    T0 + i * 3_000,
                    &format!("u{}", i % 13),
                    &format!(r#","watch_time_ms":{i},"props":{{"x":{i},"s":"v{}"}}"#, i % 3),
                )
            })
            .collect();
        add_all(&mut w, &events, g);
        let mut reused = WindowBatch::default();
        for end in (1..=4).map(|k| T0 + k * 5 * MIN) {
            w.recycle_features(&mut reused);
            reused.clear();
            w.build_batch(end, g, &mut reused);
            let mut fresh = WindowBatch::default();
            w.build_batch(end, g, &mut fresh);
            assert_eq!(reused.features, fresh.features, "window ending {end}");
        }
    }

    #[test]
    fn max_of_signed_zeros_does_not_depend_on_order() {
        let g = WindowGeometry::from_minutes(10, 5);
        let neg = |ts| ev("a", "view", ts, "u", r#","props":{"dur":-0.0}"#);
        let pos = |ts| ev("a", "view", ts, "u", r#","props":{"dur":0.0}"#);
        // Within a minute (the per-event update) and across minutes (the window's merge).
        for events in [[neg(T0), pos(T0 + 1)], [pos(T0), neg(T0 + 1)], [neg(T0), pos(T0 + MIN)], [pos(T0), neg(T0 + MIN)]] {
            let mut w = HotWindows::default();
            w.set_features(&[def("peak", FeatureOp::Max, prop("dur"), None)]);
            add_all(&mut w, &events, g);
            assert_eq!(row(&columns(&mut w, T0 + 10 * MIN, g), "a"), ["peak=0"], "{events:?}");
        }
    }

    #[test]
    fn distinct_sets_move_to_the_arena_and_stay_exact_to_the_bound() {
        let g = WindowGeometry::from_minutes(60, 60);
        let mut w = HotWindows::default();
        w.set_features(&[def("users", FeatureOp::Distinct, FeatureField::UserId, None)]);
        let events: Vec<String> = (0..300).map(|i| ev("a", "view", T0 + (i % 60) * MIN, &format!("u{}", i % 256), "")).collect();
        add_all(&mut w, &events, g);
        assert_eq!(row(&columns(&mut w, T0 + 60 * MIN, g), "a"), ["users=256"]);
        let events: Vec<String> = (0..20_000).map(|i| ev("b", "view", T0 + (i % 60) * MIN + i % 997, &format!("user-{i}"), "")).collect();
        add_all(&mut w, &events, g);
        let got: f64 = row(&columns(&mut w, T0 + 60 * MIN, g), "b")[0].trim_start_matches("users=").parse().unwrap();
        assert!((got - 20_000.0).abs() / 20_000.0 < 0.049, "{got}");
    }

    #[test]
    fn last_breaks_ties_by_value_and_its_text_is_compacted() {
        let g = WindowGeometry::from_minutes(1, 1);
        let mut w = HotWindows::default();
        w.set_features(&[def("src", FeatureOp::Last, prop("src"), None)]);
        // Ever newer values: each replaces the last, and the minute's text stays small.
        let events: Vec<String> =
            (0..5_000).map(|i| ev("a", "view", T0 + i, "u", &format!(r#","props":{{"src":"value-{i:05}"}}"#))).collect();
        add_all(&mut w, &events, g);
        assert!(w.state_bytes() < 64 * 1024, "{}", w.state_bytes());
        add_all(&mut w, &[ev("a", "view", T0 + 4_999, "u", r#","props":{"src":"value-00000"}"#)], g);
        assert_eq!(row(&columns(&mut w, T0 + MIN, g), "a"), ["src=value-04999"], "a smaller value at the same ts loses");
        add_all(&mut w, &[ev("a", "view", T0 + 4_999, "u", r#","props":{"src":"zz"}"#)], g);
        assert_eq!(row(&columns(&mut w, T0 + MIN, g), "a"), ["src=zz"], "a greater value at the same ts wins");
    }

    #[test]
    fn a_redefinition_keeps_unchanged_features_only() {
        let g = WindowGeometry::from_minutes(10, 10);
        let mut w = HotWindows::default();
        let watch = def("watch", FeatureOp::Sum, FeatureField::WatchTimeMs, None);
        let users = def("users", FeatureOp::Distinct, FeatureField::UserId, None);
        w.set_features(&[watch.clone(), users.clone()]);
        add_all(&mut w, &[ev("a", "view", T0, "u1", r#","watch_time_ms":5"#)], g);
        let users_of_views = def("users", FeatureOp::Distinct, FeatureField::UserId, Some(&["view"]));
        w.set_features(&[users_of_views, watch.clone()]);
        add_all(&mut w, &[ev("a", "view", T0 + 1, "u2", r#","watch_time_ms":1"#)], g);
        assert_eq!(row(&columns(&mut w, T0 + 10 * MIN, g), "a"), ["users=1", "watch=6"], "users changed: counts from the change");
        w.set_features(&[]);
        assert!(w.minutes.values().all(|m| m.features.is_none()));
        assert!(columns(&mut w, T0 + 10 * MIN, g)["a"].is_empty());
    }

    #[test]
    fn a_redefinition_keeps_spilled_and_sketched_distinct_sets() {
        let g = WindowGeometry::from_minutes(10, 10);
        let mut w = HotWindows::default();
        let users = def("users", FeatureOp::Distinct, FeatureField::UserId, None);
        let watch = def("watch", FeatureOp::Sum, FeatureField::WatchTimeMs, None);
        w.set_features(&[watch.clone(), users.clone()]);
        // Item a spills past its two inline hashes; item b passes the exact bound.
        let mut events: Vec<String> = (0..5).map(|i| ev("a", "view", T0 + i, &format!("u{i}"), "")).collect();
        events.extend((0..300).map(|i| ev("b", "view", T0 + i, &format!("u{i}"), "")));
        add_all(&mut w, &events, g);
        let before = columns(&mut w, T0 + 10 * MIN, g);
        // Reordered and one dropped: the kept sets move to their new index.
        w.set_features(std::slice::from_ref(&users));
        add_all(&mut w, &[ev("a", "view", T0 + 9, "u9", "")], g);
        let after = columns(&mut w, T0 + 10 * MIN, g);
        assert_eq!(row(&before, "a"), ["watch=0", "users=5"]);
        assert_eq!(row(&after, "a"), ["users=6"]);
        assert_eq!(row(&after, "b")[0], row(&before, "b")[1]);
    }

    #[test]
    fn a_redefinition_keeps_a_sum_whose_words_look_like_markers() {
        let g = WindowGeometry::from_minutes(10, 10);
        let mut w = HotWindows::default();
        let users = def("users", FeatureOp::Distinct, FeatureField::UserId, None);
        let score = def("score", FeatureOp::Sum, prop("x"), None);
        w.set_features(&[score.clone(), users.clone()]);
        // -1 micro-unit: both words of the sum are all ones, a spilled distinct's marker.
        add_all(&mut w, &[ev("a", "view", T0, "u1", r#","props":{"x":-0.000001}"#)], g);
        w.set_features(&[users, score]);
        assert_eq!(row(&columns(&mut w, T0 + 10 * MIN, g), "a"), ["users=1", "score=-0.000001"]);
    }

    #[test]
    fn no_features_no_feature_state() {
        let g = WindowGeometry::from_minutes(10, 10);
        let mut w = HotWindows::default();
        add_all(&mut w, &[ev("a", "view", T0, "u1", r#","watch_time_ms":5"#)], g);
        assert!(w.minutes.values().all(|m| m.features.is_none()));
        let mut b = WindowBatch::default();
        w.build_batch(T0 + 10 * MIN, g, &mut b);
        assert!(b.features.is_empty());
    }

    fn all_ops() -> Vec<FeatureDef> {
        vec![
            def("watch", FeatureOp::Sum, FeatureField::WatchTimeMs, None),
            def("score", FeatureOp::Sum, prop("x"), Some(&["click"])),
            def("peak", FeatureOp::Max, prop("x"), None),
            def("users", FeatureOp::Distinct, FeatureField::UserId, None),
            def("cats", FeatureOp::Distinct, FeatureField::Category, None),
            def("last", FeatureOp::Last, prop("s"), None),
        ]
    }

    /// Random events over 4 items, 30 minutes, a few users, values that collide in ts.
    fn events() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec((0u8..4, 0usize..3, 0i64..30 * 60, 0u32..400, -1e6f64..1e6, 0u8..5, 0u8..3), 1..200).prop_map(|raw| {
            raw.into_iter()
                .map(|(item, action, sec, user, x, s, cat)| {
                    let extra = format!(r#","watch_time_ms":{},"category":"c{cat}","props":{{"x":{x},"s":"v{s}"}}"#, x.abs());
                    ev(&format!("i{item}"), ["view", "click", "buy"][action], T0 + sec * 1000, &format!("u{user}"), &extra)
                })
                .collect()
        })
    }

    use crate::window::distinct::DistinctSet;

    /// The portable form of a reference set.
    fn canonical(s: &DistinctSet) -> PortableAgg {
        match s {
            DistinctSet::Exact(v) if v.is_empty() => PortableAgg::Empty,
            DistinctSet::Exact(v) => PortableAgg::Exact(v.clone()),
            DistinctSet::Sketch(s) => PortableAgg::Sketch(s.to_vec()),
        }
    }

    #[test]
    fn repeats_of_spilled_values_keep_the_arrays_small() {
        let mut fm = FeatureMinute::default();
        fm.aggs.resize(1, Agg::default());
        for i in 0..200_000u64 {
            fm.add_distinct(0, hash(&format!("u{}", i % 10)));
        }
        // Folded as they come: the unsorted tail never passes FOLD_AT, the folded part holds 10.
        assert!(fm.spill_hash.len() <= FOLD_AT + 11, "{}", fm.spill_hash.len());
        assert_eq!(
            fm.portable(0, FeatureOp::Distinct).unwrap(),
            canonical(&(0..10).fold(DistinctSet::default(), |mut s, i| {
                s.insert(hash(&format!("u{i}")));
                s
            }))
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// However spilled hashes were folded (at any points, or not yet), and through a clone,
        /// each aggregate reads as the reference set of its hashes: exact to the bound, then
        /// that set's sketch.
        #[test]
        fn spilled_hashes_read_as_the_reference_set(values in proptest::collection::vec((0usize..3, 0u64..700), 0..1500), fold_every in 1usize..2000) {
            let mut fm = FeatureMinute::default();
            fm.aggs.resize(3, Agg::default());
            let mut want = vec![DistinctSet::default(); 3];
            for (j, &(at, v)) in values.iter().enumerate() {
                let h = hash(&format!("u{v}"));
                fm.add_distinct(at, h);
                want[at].insert(h);
                if j % fold_every == fold_every - 1 {
                    fm.fold();
                }
            }
            let clone = fm.clone();
            prop_assert_eq!(clone.folded, clone.spill_at.len());
            for (at, want) in want.iter().enumerate() {
                prop_assert_eq!(fm.portable(at, FeatureOp::Distinct), Some(canonical(want)), "in place, aggregate {}", at);
                prop_assert_eq!(clone.portable(at, FeatureOp::Distinct), Some(canonical(want)), "cloned, aggregate {}", at);
            }
        }

        /// Any order of the same events gives the same columns in every window.
        #[test]
        fn columns_do_not_depend_on_event_order(events in events(), seed in any::<u64>()) {
            let g = WindowGeometry::from_minutes(10, 5);
            let mut shuffled = events.clone();
            // A seeded Fisher-Yates: proptest shrinks the seed with the events.
            let mut r = seed | 1;
            for i in (1..shuffled.len()).rev() {
                r ^= r << 13;
                r ^= r >> 7;
                r ^= r << 17;
                shuffled.swap(i, (r % (i as u64 + 1)) as usize);
            }
            let (mut a, mut b) = (HotWindows::default(), HotWindows::default());
            a.set_features(&all_ops());
            b.set_features(&all_ops());
            add_all(&mut a, &events, g);
            add_all(&mut b, &shuffled, g);
            for end in (1..=8).map(|k| T0 + k * 5 * MIN) {
                prop_assert_eq!(columns(&mut a, end, g), columns(&mut b, end, g), "window ending {}", end);
            }
        }
    }
}
