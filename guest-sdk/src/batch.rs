//! Read-only views over a [`RawBatch`]: the window, its items, and each item's rows.

use std::iter::FusedIterator;
use std::ops::Range;
use std::sync::OnceLock;

use crate::decay::expected_decay;
use crate::{RawBatch, RawFeatureColumn, RawFeatureValues};

/// One emitted window, checked once on entry so iteration below never indexes out of bounds.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    raw: &'a RawBatch,
    /// Every item's [`Item::decayed_score`], computed for the whole window on first use (see
    /// `Batch::with_decay_cache`); `None` for a batch made by [`Batch::new`] alone.
    decayed: Option<&'a OnceLock<Vec<f64>>>,
}

/// Whether every byte is ASCII: an OR of all bytes, without the early exit of
/// `<[u8]>::is_ascii`, so it vectorizes (16 bytes an instruction with WebAssembly SIMD, where
/// `is_ascii` reads 4 bytes a step). On a batch of 100k items `is_ascii` was ~0.16x of the
/// built-in formula's whole time (docs/benchmarks.md, "Plugin vs native").
fn is_ascii(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |acc, &b| acc | b) < 0x80
}

impl<'a> Batch<'a> {
    /// Checks the columnar layout (column lengths, CSR offsets, action indexes, one id and one
    /// value per feature column for each item) and wraps it.
    pub fn new(raw: &'a RawBatch) -> Result<Self, String> {
        let rows = raw.row_action.len();
        if raw.row_count.len() != rows || raw.row_age_mean_ms.len() != rows || raw.row_age_var_ms2.len() != rows {
            return Err(format!(
                "row columns differ in length: action {rows}, count {}, age mean {}, age var {}",
                raw.row_count.len(),
                raw.row_age_mean_ms.len(),
                raw.row_age_var_ms2.len()
            ));
        }
        if raw.weights.len() != raw.actions.len() {
            return Err(format!("{} weights for {} actions", raw.weights.len(), raw.actions.len()));
        }
        match raw.item_offsets.first() {
            Some(0) => {}
            first => return Err(format!("item offsets must start at 0, got {first:?}")),
        }
        // Each check is first a pass without an early exit (it vectorizes, and costs a plugin a
        // fraction of what stopping at every element does); only a failing batch is searched
        // for the culprit.
        let offsets = &raw.item_offsets;
        if !offsets.iter().zip(&offsets[1..]).fold(true, |ok, (a, b)| ok & (a <= b))
            && let Some(w) = offsets.windows(2).find(|w| w[0] > w[1])
        {
            return Err(format!("item offsets decrease: {} then {}", w[0], w[1]));
        }
        let last = offsets.last().copied().unwrap_or(0) as usize;
        if last != rows {
            return Err(format!("item offsets end at {last}, but there are {rows} rows"));
        }
        if usize::from(raw.row_action.iter().copied().max().unwrap_or(0)) >= raw.actions.len()
            && let Some(&a) = raw.row_action.iter().find(|&&a| usize::from(a) >= raw.actions.len())
        {
            return Err(format!("row action index {a} out of range ({} actions)", raw.actions.len()));
        }
        let items = offsets.len().saturating_sub(1);
        if raw.item_id_ends.len() != items {
            return Err(format!("{} item ids for {items} items", raw.item_id_ends.len()));
        }
        // Every id must be a slice of `item-ids` on character boundaries, so `Item::id` never
        // panics whatever the host sends: ends that rise, the last within the bytes, each on a
        // boundary (every one is, when the ids are ASCII).
        let (ids, ends) = (&raw.item_ids, &raw.item_id_ends);
        let ids_ok = ends.iter().zip(ends.get(1..).unwrap_or_default()).fold(true, |ok, (a, b)| ok & (a <= b))
            && ends.last().is_none_or(|&e| e as usize <= ids.len())
            && (is_ascii(ids.as_bytes()) || ends.iter().all(|&e| ids.is_char_boundary(e as usize)));
        if !ids_ok {
            let mut start = 0usize;
            for (k, &end) in ends.iter().enumerate() {
                let end = end as usize;
                if end < start || ids.get(start..end).is_none() {
                    return Err(format!("item id {k} ends at byte {end}: not a slice of the {} id bytes", ids.len()));
                }
                start = end;
            }
        }
        for c in &raw.features {
            let n = match &c.values {
                RawFeatureValues::Number(v) => v.len(),
                RawFeatureValues::Text(v) => v.len(),
            };
            if n != items {
                return Err(format!("feature {:?} has {n} values for {items} items", c.name));
            }
        }
        Ok(Self { raw, decayed: None })
    }

    /// This batch with a place to keep every item's decayed score: the first
    /// [`Item::decayed_score`] then computes all of them in one pass over the row columns
    /// ([`Batch::decayed_scores`]) and the later ones read them, the same bits several times
    /// faster in a plugin. [`crate::run_scorer`] (so `export_scorer!`) does it for every window.
    pub(crate) fn with_decay_cache(self, cache: &'a OnceLock<Vec<f64>>) -> Self {
        Self { decayed: Some(cache), ..self }
    }

    /// The batch exactly as received.
    #[inline]
    pub fn raw(&self) -> &'a RawBatch {
        self.raw
    }

    /// Start of the window (epoch ms, inclusive).
    #[inline]
    pub fn window_start_ms(&self) -> i64 {
        self.raw.window_start_ms
    }

    /// End of the window (epoch ms, exclusive): the time ages are measured from.
    #[inline]
    pub fn window_end_ms(&self) -> i64 {
        self.raw.window_end_ms
    }

    /// Window length in milliseconds.
    #[inline]
    pub fn window_ms(&self) -> i64 {
        self.raw.window_end_ms - self.raw.window_start_ms
    }

    /// The scenario's `decay_lambda`, per hour.
    #[inline]
    pub fn decay_lambda(&self) -> f64 {
        self.raw.decay_lambda
    }

    /// Action names; [`Row::action_index`] indexes this.
    #[inline]
    pub fn actions(&self) -> &'a [String] {
        &self.raw.actions
    }

    /// The scenario's weight per action index.
    #[inline]
    pub fn weights(&self) -> &'a [f64] {
        &self.raw.weights
    }

    /// The window's slide in ms: a window ends every `slide_ms`.
    #[inline]
    pub fn slide_ms(&self) -> i64 {
        self.raw.slide_ms
    }

    /// The scenario's `top_n`: how many items its hot list keeps.
    #[inline]
    pub fn top_n(&self) -> u32 {
        self.raw.top_n
    }

    /// The tenant the window belongs to.
    #[inline]
    pub fn tenant_id(&self) -> &'a str {
        &self.raw.tenant_id
    }

    /// The scenario the window belongs to.
    #[inline]
    pub fn scenario_id(&self) -> &'a str {
        &self.raw.scenario_id
    }

    /// Item ids, in item order.
    #[inline]
    pub fn item_ids(&self) -> impl ExactSizeIterator<Item = &'a str> + 'a {
        let b = *self;
        (0..self.len()).map(move |k| b.item_id(k))
    }

    /// Item `k`'s id ("" when out of range).
    #[inline]
    fn item_id(&self, k: usize) -> &'a str {
        let ends = &self.raw.item_id_ends;
        let Some(&end) = ends.get(k) else { return "" };
        let start = if k == 0 { 0 } else { ends[k - 1] as usize };
        // On boundaries: `Batch::new` checked every slice.
        self.raw.item_ids.get(start..end as usize).unwrap_or("")
    }

    /// The scenario's declared feature columns, in declaration order.
    #[inline]
    pub fn features(&self) -> &'a [RawFeatureColumn] {
        &self.raw.features
    }

    /// A declared feature's column by name (`None` when the scenario does not declare it).
    /// Look it up once per batch and index it per item ([`Item::index`]); [`Item::feature`]
    /// does the lookup per call.
    #[inline]
    pub fn feature(&self, name: &str) -> Option<Feature<'a>> {
        self.raw.features.iter().find(|c| c.name == name).map(|c| match &c.values {
            RawFeatureValues::Number(v) => Feature::Number(v),
            RawFeatureValues::Text(v) => Feature::Text(v),
        })
    }

    /// Index of an action name in this batch; resolve names once per batch, compare indexes per
    /// row.
    #[inline]
    pub fn action_index(&self, name: &str) -> Option<u16> {
        self.raw.actions.iter().position(|a| a == name).and_then(|i| u16::try_from(i).ok())
    }

    /// The scenario's weight for an action name (0 when it does not weight it).
    #[inline]
    pub fn weight_of(&self, name: &str) -> f64 {
        self.action_index(name).map_or(0.0, |i| self.raw.weights[usize::from(i)])
    }

    /// Every item's [`Item::decayed_score`], in item order, appended to `out`: the built-in hot
    /// score (DESIGN §4) of the whole window, bit for bit the same as item by item, in one pass
    /// over the row columns: two rows at a time with WebAssembly SIMD when the plugin is built
    /// with `-C target-feature=+simd128`, as scripts/build-plugins.sh and `rtscore plugin new`
    /// do (docs/benchmarks.md, "Plugin vs native").
    pub fn decayed_scores(&self, out: &mut Vec<f64>) {
        if let Some(all) = self.decayed.and_then(OnceLock::get) {
            out.extend_from_slice(all);
            return;
        }
        let raw = self.raw;
        let mut terms = vec![0.0; raw.row_action.len()];
        crate::decay::row_terms(
            raw.decay_lambda,
            &raw.weights,
            &raw.row_action,
            &raw.row_count,
            &raw.row_age_mean_ms,
            &raw.row_age_var_ms2,
            &mut terms,
        );
        out.extend(raw.item_offsets.windows(2).map(|w| {
            // `Batch::new` checked the offsets: they rise from 0 and end at the row count.
            let t = terms.get(w[0] as usize..w[1] as usize).unwrap_or(&[]);
            // Left to right from 0, as `Item::decayed_score` adds; short items without a loop.
            match *t {
                [] => 0.0,
                [a] => 0.0 + a,
                [a, b] => 0.0 + a + b,
                [a, b, c] => 0.0 + a + b + c,
                [a, b, c, d, ref rest @ ..] => rest.iter().fold(0.0 + a + b + c + d, |s, t| s + t),
            }
        }));
    }

    /// Number of items.
    #[inline]
    pub fn len(&self) -> usize {
        self.raw.item_offsets.len().saturating_sub(1)
    }

    /// True when the window holds no item.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of rows over all items.
    #[inline]
    pub fn row_len(&self) -> usize {
        self.raw.row_action.len()
    }

    /// The items, in the order scores are expected.
    #[inline]
    pub fn items(&self) -> Items<'a> {
        Items { batch: *self, offsets: self.raw.item_offsets.windows(2), next: 0 }
    }

    /// Item `index`, if in range.
    #[inline]
    pub fn item(&self, index: usize) -> Option<Item<'a>> {
        (index < self.len()).then(|| self.item_unchecked(index))
    }

    #[inline]
    fn item_unchecked(&self, index: usize) -> Item<'a> {
        let offsets = &self.raw.item_offsets;
        Item { batch: *self, index, rows: offsets[index] as usize..offsets[index + 1] as usize }
    }

    #[inline]
    fn row(&self, r: usize) -> Row<'a> {
        let action_index = self.raw.row_action[r];
        let a = usize::from(action_index);
        Row {
            action_index,
            action: &self.raw.actions[a],
            weight: self.raw.weights[a],
            count: self.raw.row_count[r],
            age_mean_ms: self.raw.row_age_mean_ms[r],
            age_var_ms2: self.raw.row_age_var_ms2[r],
        }
    }
}

/// One declared feature's values, one per item in item order (see [`Batch::feature`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Feature<'a> {
    /// A `sum`, `max` or `distinct` feature: 0 for an item no event contributed to.
    Number(&'a [f64]),
    /// A `last` feature: "" for an item no event contributed to.
    Text(&'a [String]),
}

impl<'a> Feature<'a> {
    /// The numbers of a numeric feature, `None` for a text one.
    #[inline]
    pub fn numbers(self) -> Option<&'a [f64]> {
        match self {
            Feature::Number(v) => Some(v),
            Feature::Text(_) => None,
        }
    }

    /// The strings of a text feature, `None` for a numeric one.
    #[inline]
    pub fn texts(self) -> Option<&'a [String]> {
        match self {
            Feature::Text(v) => Some(v),
            Feature::Number(_) => None,
        }
    }
}

/// Iterator over the items of a [`Batch`].
#[derive(Debug, Clone)]
pub struct Items<'a> {
    batch: Batch<'a>,
    /// The CSR offsets of the items not yet returned, pairwise.
    offsets: std::slice::Windows<'a, u32>,
    next: usize,
}

impl<'a> Iterator for Items<'a> {
    type Item = Item<'a>;

    #[inline]
    fn next(&mut self) -> Option<Item<'a>> {
        let w = self.offsets.next()?;
        self.next += 1;
        Some(Item { batch: self.batch, index: self.next - 1, rows: w[0] as usize..w[1] as usize })
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.offsets.size_hint()
    }
}

impl ExactSizeIterator for Items<'_> {}
impl FusedIterator for Items<'_> {}

/// One item of the window: its rows are its (one-minute bucket, action) cells.
#[derive(Debug, Clone)]
pub struct Item<'a> {
    batch: Batch<'a>,
    index: usize,
    rows: Range<usize>,
}

impl<'a> Item<'a> {
    /// Position of the item in the batch (and of its score in the output).
    #[inline]
    pub fn index(&self) -> usize {
        self.index
    }

    /// The item's id.
    #[inline]
    pub fn id(&self) -> &'a str {
        self.batch.item_id(self.index)
    }

    /// The item's value of a numeric declared feature; `None` when the scenario declares no
    /// numeric feature of that name.
    #[inline]
    pub fn feature(&self, name: &str) -> Option<f64> {
        self.batch.feature(name)?.numbers().map(|v| v[self.index])
    }

    /// The item's value of a text declared feature (`last`); `None` when the scenario declares
    /// no text feature of that name.
    #[inline]
    pub fn feature_text(&self, name: &str) -> Option<&'a str> {
        self.batch.feature(name)?.texts().map(|v| v[self.index].as_str())
    }

    /// The window this item belongs to.
    #[inline]
    pub fn batch(&self) -> Batch<'a> {
        self.batch
    }

    /// The scenario's `decay_lambda`, per hour.
    #[inline]
    pub fn decay_lambda(&self) -> f64 {
        self.batch.decay_lambda()
    }

    /// The item's rows: one per (one-minute bucket, action) that holds events.
    #[inline]
    pub fn rows(&self) -> Rows<'a> {
        Rows { batch: self.batch, rows: self.rows.clone() }
    }

    /// How many rows the item has.
    #[inline]
    pub fn row_len(&self) -> usize {
        self.rows.len()
    }

    /// Number of events of the item, all actions.
    #[inline]
    pub fn count(&self) -> u64 {
        self.rows().map(|r| u64::from(r.count)).sum()
    }

    /// Number of events of one action (by index, see [`Batch::action_index`]).
    #[inline]
    pub fn count_of(&self, action_index: u16) -> u64 {
        self.rows().filter(|r| r.action_index == action_index).map(|r| u64::from(r.count)).sum()
    }

    /// `Σ weight · count`: the undecayed weighted event count.
    #[inline]
    pub fn weighted_count(&self) -> f64 {
        self.rows().map(|r| r.weighted_count()).sum()
    }

    /// The built-in hot score (DESIGN §4): `Σ weight · count · E[exp(-λ·age)]`. In a plugin
    /// the first call computes every item's score of the window at once (see
    /// [`Batch::decayed_scores`]); the same bits as row by row.
    #[inline]
    pub fn decayed_score(&self) -> f64 {
        if let Some(cache) = self.batch.decayed {
            let all = cache.get_or_init(|| {
                let mut all = Vec::with_capacity(self.batch.len());
                self.batch.decayed_scores(&mut all);
                all
            });
            if let Some(&score) = all.get(self.index) {
                return score;
            }
        }
        self.decayed_score_by_rows()
    }

    /// [`Item::decayed_score`] row by row.
    #[inline]
    fn decayed_score_by_rows(&self) -> f64 {
        let lambda = self.decay_lambda();
        let mut score = 0.0;
        for r in self.rows() {
            // Skipping zero weights keeps the sum identical to the host's built-in formula.
            if r.weight != 0.0 {
                score += r.decayed(lambda);
            }
        }
        score
    }

    /// Mean age (ms) of the item's weighted events (nonzero weight), each event counted once;
    /// `None` when it has none.
    #[inline]
    pub fn mean_age_ms(&self) -> Option<f64> {
        let (mut n, mut sum) = (0.0, 0.0);
        for r in self.rows().filter(|r| r.weight != 0.0) {
            n += f64::from(r.count);
            sum += f64::from(r.count) * r.age_mean_ms;
        }
        (n > 0.0).then(|| sum / n)
    }
}

/// Iterator over the rows of an [`Item`].
#[derive(Debug, Clone)]
pub struct Rows<'a> {
    batch: Batch<'a>,
    rows: Range<usize>,
}

impl<'a> Iterator for Rows<'a> {
    type Item = Row<'a>;

    #[inline]
    fn next(&mut self) -> Option<Row<'a>> {
        self.rows.next().map(|r| self.batch.row(r))
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.rows.size_hint()
    }
}

impl ExactSizeIterator for Rows<'_> {}
impl FusedIterator for Rows<'_> {}

/// One (one-minute bucket, action) cell of an item: how many events, and their age moments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row<'a> {
    /// The action's index in the batch's action list.
    pub action_index: u16,
    /// The action's name.
    pub action: &'a str,
    /// The scenario's weight for this action (0 when it does not weight it).
    pub weight: f64,
    /// Number of events.
    pub count: u32,
    /// Mean event age, `window_end_ms - ts`, in ms.
    pub age_mean_ms: f64,
    /// Variance of the event ages, in ms² (0 for a single event).
    pub age_var_ms2: f64,
}

impl Row<'_> {
    /// `weight · count`.
    #[inline]
    pub fn weighted_count(&self) -> f64 {
        self.weight * f64::from(self.count)
    }

    /// `E[exp(-λ·age)]` over the row's events, λ per hour.
    #[inline]
    pub fn expected_decay(&self, lambda_per_hour: f64) -> f64 {
        expected_decay(lambda_per_hour, self.age_mean_ms, self.age_var_ms2)
    }

    /// `weight · count · E[exp(-λ·age)]`: the row's share of the built-in score.
    #[inline]
    pub fn decayed(&self, lambda_per_hour: f64) -> f64 {
        self.weight * f64::from(self.count) * self.expected_decay(lambda_per_hour)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::BatchBuilder;

    fn raw() -> RawBatch {
        BatchBuilder::new()
            .weight("view", 1.0)
            .weight("click", 2.0)
            .event("a", "view", 1_000, 3)
            .event("a", "click", 61_000, 1)
            .event("b", "share", 5_000, 2)
            .feature("b", "price", 9.5)
            .feature_text("a", "brand", "acme")
            .build()
            .raw
    }

    #[test]
    fn context_and_features() {
        let ctx = BatchBuilder::new().slide_ms(300_000).top_n(7).tenant("t1").scenario("s1").build().raw;
        let batch = Batch::new(&ctx).unwrap();
        assert_eq!((batch.slide_ms(), batch.top_n(), batch.tenant_id(), batch.scenario_id()), (300_000, 7, "t1", "s1"));
        let raw = raw();
        let batch = Batch::new(&raw).unwrap();
        let items: Vec<_> = batch.items().collect();
        assert_eq!((items[0].id(), items[1].id()), ("a", "b"));
        assert_eq!(batch.item_ids().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!((items[0].feature("price"), items[1].feature("price")), (Some(0.0), Some(9.5)));
        assert_eq!((items[0].feature_text("brand"), items[1].feature_text("brand")), (Some("acme"), Some("")));
        assert_eq!(items[0].feature("brand"), None, "a text feature is not a number");
        assert_eq!(items[0].feature("nope"), None);
        assert_eq!(batch.feature("price").and_then(Feature::numbers), Some(&[0.0, 9.5][..]));
        assert_eq!(batch.features().len(), 2);
    }

    #[test]
    fn views_follow_the_csr_layout() {
        let raw = raw();
        let batch = Batch::new(&raw).unwrap();
        assert_eq!(batch.len(), 2);
        let items: Vec<_> = batch.items().collect();
        assert_eq!(items[0].count(), 4);
        assert_eq!(items[0].weighted_count(), 5.0);
        assert_eq!(items[1].weighted_count(), 0.0, "share is not weighted");
        assert_eq!(items[1].mean_age_ms(), None);
        let click = batch.action_index("click").unwrap();
        assert_eq!(items[0].count_of(click), 1);
        assert_eq!(items[0].mean_age_ms(), Some((3.0 * 1_000.0 + 61_000.0) / 4.0));
        assert_eq!(batch.weight_of("share"), 0.0);
    }

    /// A random window: `0..max_rows` rows per item over 6 actions (one of weight 0, one
    /// negative), ages from 0 to past the point where the decay underflows, counts up to
    /// `u32::MAX`.
    fn random_raw(seed: u64, items: usize, max_rows: u64, lambda: f64) -> RawBatch {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let mut b = BatchBuilder::new().lambda(lambda).weights([("a", 1.0), ("b", 2.5), ("c", 0.0), ("d", -0.75), ("e", 1e-3)]).build().raw;
        b.actions.push("f".into());
        b.weights.push(7.0);
        for k in 0..items {
            for _ in 0..next() % max_rows {
                b.row_action.push((next() % 6) as u16);
                b.row_count.push(match next() % 10 {
                    0 => u32::MAX,
                    _ => (next() % 60) as u32 + 1,
                });
                let age = match next() % 10 {
                    0 => (next() % 100) as f64,
                    1 => 1e9 * (next() % 1000) as f64,
                    _ => (next() % 86_400_000) as f64 + (next() % 1000) as f64 / 1000.0,
                };
                b.row_age_mean_ms.push(age);
                b.row_age_var_ms2.push(if next() % 3 == 0 { 0.0 } else { (next() % 300_000_000) as f64 });
            }
            b.item_offsets.push(b.row_action.len() as u32);
            b.item_ids.push_str(&format!("i{k}"));
            b.item_id_ends.push(b.item_ids.len() as u32);
        }
        b
    }

    #[test]
    fn the_whole_window_pass_scores_the_same_bits_as_row_by_row() {
        for (seed, lambda) in [(1, 0.1), (2, 0.0), (3, 10.0), (4, 0.7), (5, 3.0), (6, 1e-6), (7, 200.0)] {
            for (items, max_rows) in [(0, 8), (1, 8), (2, 8), (3, 8), (17, 8), (400, 8), (5, 3000), (60, 40)] {
                let raw = random_raw(seed * 1000 + items as u64, items, max_rows, lambda);
                let batch = Batch::new(&raw).unwrap();
                let by_rows: Vec<u64> = batch.items().map(|i| i.decayed_score_by_rows().to_bits()).collect();
                let mut whole = Vec::new();
                batch.decayed_scores(&mut whole);
                assert_eq!(whole.iter().map(|s| s.to_bits()).collect::<Vec<_>>(), by_rows, "seed {seed} λ {lambda} items {items}");
                // Through the cache that `run_scorer` gives every window, in any order.
                let cache = OnceLock::new();
                let cached = batch.with_decay_cache(&cache);
                let mut got: Vec<u64> = (0..items).rev().filter_map(|k| cached.item(k)).map(|i| i.decayed_score().to_bits()).collect();
                got.reverse();
                assert_eq!(got, by_rows);
                let mut again = vec![1.0];
                cached.decayed_scores(&mut again);
                assert_eq!(again.len(), items + 1, "appended");
                assert!(again[1..].iter().map(|s| s.to_bits()).eq(by_rows.iter().copied()));
            }
        }
    }

    #[test]
    fn the_vectorized_ascii_check_agrees_with_std() {
        let text: Vec<u8> = (0..200u8).map(|b| b % 0x7f).collect();
        for len in 0..text.len() {
            for at in [0, len / 2, len.saturating_sub(1)] {
                let mut t = text[..len].to_vec();
                assert!(is_ascii(&t));
                if let Some(b) = t.get_mut(at) {
                    *b |= 0x80;
                    assert!(!is_ascii(&t), "high byte at {at} of {len}");
                }
            }
        }
    }

    #[test]
    fn batches_and_items_can_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Batch<'_>>();
        send_sync::<Item<'_>>();
    }

    #[test]
    fn decayed_scores_skip_weight_zero_rows_whatever_they_hold() {
        // A row of an unweighted action whose decay overflows (a negative age) adds nothing,
        // as the built-in formula skips it; a weighted one is infinite, which the host rejects.
        let mut raw = BatchBuilder::new().lambda(10.0).weights([("view", 1.0), ("share", 0.0)]).build().raw;
        raw.row_action = vec![1, 0];
        raw.row_count = vec![3, 2];
        raw.row_age_mean_ms = vec![-1e12, 60_000.0];
        raw.row_age_var_ms2 = vec![0.0, 0.0];
        raw.item_offsets = vec![0, 1, 2];
        raw.item_ids = "ab".into();
        raw.item_id_ends = vec![1, 2];
        let batch = Batch::new(&raw).unwrap();
        let mut out = Vec::new();
        batch.decayed_scores(&mut out);
        assert_eq!(out[0].to_bits(), 0.0_f64.to_bits());
        assert_eq!(out[1], 1.0 * 2.0 * crate::decay::expected_decay(10.0, 60_000.0, 0.0));
        assert_eq!(
            out.iter().map(|s| s.to_bits()).collect::<Vec<_>>(),
            batch.items().map(|i| i.decayed_score_by_rows().to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn malformed_layouts_are_errors_not_panics() {
        let mut bad = raw();
        bad.item_offsets = vec![0, 5];
        assert!(Batch::new(&bad).unwrap_err().contains("end at 5"));
        let mut bad = raw();
        bad.row_action[0] = 99;
        assert!(Batch::new(&bad).unwrap_err().contains("99"));
        let mut bad = raw();
        bad.item_offsets = vec![0, 2, 1, 3];
        assert!(Batch::new(&bad).unwrap_err().contains("decrease"));
        let mut bad = raw();
        bad.weights.pop();
        assert!(Batch::new(&bad).is_err());
        let mut bad = raw();
        bad.row_count.pop();
        assert!(Batch::new(&bad).is_err());
        let mut bad = raw();
        bad.item_offsets.clear();
        assert!(Batch::new(&bad).is_err());
        let mut bad = raw();
        bad.item_id_ends.pop();
        assert!(Batch::new(&bad).unwrap_err().contains("1 item ids for 2 items"));
        let mut bad = raw();
        bad.item_id_ends[0] = 99;
        assert!(Batch::new(&bad).unwrap_err().contains("not a slice"), "an id past the bytes is refused");
        let mut bad = raw();
        bad.item_ids = "é".into();
        bad.item_id_ends = vec![1, 2];
        assert!(Batch::new(&bad).is_err(), "an id off a character boundary is refused");
        let mut bad = raw();
        bad.features[0].values = RawFeatureValues::Number(vec![1.0]);
        assert!(Batch::new(&bad).unwrap_err().contains("\"price\" has 1 values"));
    }
}
