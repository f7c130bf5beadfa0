//! Read-only views over a [`RawBatch`]: the window, its items, and each item's rows.

use std::iter::FusedIterator;
use std::ops::Range;

use crate::decay::expected_decay;
use crate::{RawBatch, RawFeatureColumn, RawFeatureValues};

/// One emitted window, checked once on entry so iteration below never indexes out of bounds.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    raw: &'a RawBatch,
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
        if let Some(w) = raw.item_offsets.windows(2).find(|w| w[0] > w[1]) {
            return Err(format!("item offsets decrease: {} then {}", w[0], w[1]));
        }
        let last = raw.item_offsets.last().copied().unwrap_or(0) as usize;
        if last != rows {
            return Err(format!("item offsets end at {last}, but there are {rows} rows"));
        }
        if let Some(&a) = raw.row_action.iter().find(|&&a| usize::from(a) >= raw.actions.len()) {
            return Err(format!("row action index {a} out of range ({} actions)", raw.actions.len()));
        }
        let items = raw.item_offsets.len().saturating_sub(1);
        if raw.item_id_ends.len() != items {
            return Err(format!("{} item ids for {items} items", raw.item_id_ends.len()));
        }
        // Every id must be a slice of `item-ids` on character boundaries, so `Item::id` never
        // panics whatever the host sends.
        let mut start = 0usize;
        for (k, &end) in raw.item_id_ends.iter().enumerate() {
            let end = end as usize;
            if end < start || raw.item_ids.get(start..end).is_none() {
                return Err(format!("item id {k} ends at byte {end}: not a slice of the {} id bytes", raw.item_ids.len()));
            }
            start = end;
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
        Ok(Self { raw })
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
        Items { batch: *self, next: 0, end: self.len() }
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
    next: usize,
    end: usize,
}

impl<'a> Iterator for Items<'a> {
    type Item = Item<'a>;

    #[inline]
    fn next(&mut self) -> Option<Item<'a>> {
        (self.next < self.end).then(|| {
            self.next += 1;
            self.batch.item_unchecked(self.next - 1)
        })
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end - self.next;
        (n, Some(n))
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

    /// The built-in hot score (DESIGN §4): `Σ weight · count · E[exp(-λ·age)]`.
    #[inline]
    pub fn decayed_score(&self) -> f64 {
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
