//! Native test harness: build a window from `(item, action, age_ms, count)` events (plus the
//! window context and declared feature values, if the scorer reads them) and run a [`Scorer`]
//! on it exactly as the host would, without compiling to WebAssembly.
//!
//! ```
//! use rtscore_guest::testing::BatchBuilder;
//! # use rtscore_guest::{Item, NoParams, Scorer};
//! # struct Count;
//! # impl Scorer for Count {
//! #     type Params = NoParams;
//! #     fn new(_: NoParams) -> Result<Self, String> { Ok(Count) }
//! #     fn score_item(&self, item: &Item<'_>) -> f64 { item.weighted_count() }
//! # }
//! let batch = BatchBuilder::new()
//!     .weight("click", 2.0)
//!     .event("item-1", "click", 30_000, 3)
//!     .build();
//! assert_eq!(batch.run::<Count>("null").unwrap(), vec![6.0]);
//! ```

use crate::time::MS_PER_MINUTE;
use crate::{RawBatch, RawFeatureColumn, RawFeatureValues, Scorer};

/// A window end used when a test does not choose one (2026-01-01T00:00:00Z).
pub const DEFAULT_WINDOW_END_MS: i64 = 1_767_225_600_000;

/// One test event: action index, age in ms, count.
type TestEvent = (u16, i64, u32);

/// A declared feature's values set so far: `(item index, value)`.
#[derive(Debug, Clone)]
enum TestColumn {
    Number(Vec<(usize, f64)>),
    Text(Vec<(usize, String)>),
}

/// Builds a [`RawBatch`] the way the host does: events grouped per item (in first-seen order),
/// then per (one-minute bucket, action), with the count, mean and variance of their ages.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    window_start_ms: i64,
    window_end_ms: i64,
    decay_lambda: f64,
    actions: Vec<String>,
    weights: Vec<f64>,
    /// Per item: its id and its events `(action index, age_ms, count)`.
    items: Vec<(String, Vec<TestEvent>)>,
    slide_ms: i64,
    top_n: u32,
    tenant_id: String,
    scenario_id: String,
    /// Declared features, in declaration (first use) order.
    features: Vec<(String, TestColumn)>,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchBuilder {
    /// A 60-minute window sliding by 1 minute ending at [`DEFAULT_WINDOW_END_MS`], λ = 0.1 per
    /// hour, no actions, `top_n` 100, tenant `tenant`, scenario `scenario`, no features.
    pub fn new() -> Self {
        Self {
            window_start_ms: DEFAULT_WINDOW_END_MS - 60 * 60_000,
            window_end_ms: DEFAULT_WINDOW_END_MS,
            decay_lambda: 0.1,
            actions: Vec::new(),
            weights: Vec::new(),
            items: Vec::new(),
            slide_ms: 60_000,
            top_n: 100,
            tenant_id: "tenant".into(),
            scenario_id: "scenario".into(),
            features: Vec::new(),
        }
    }

    /// The window's slide, ms.
    pub fn slide_ms(mut self, slide_ms: i64) -> Self {
        self.slide_ms = slide_ms;
        self
    }

    /// The scenario's `top_n`.
    pub fn top_n(mut self, top_n: u32) -> Self {
        self.top_n = top_n;
        self
    }

    /// The tenant id.
    pub fn tenant(mut self, tenant_id: &str) -> Self {
        self.tenant_id = tenant_id.to_string();
        self
    }

    /// The scenario id.
    pub fn scenario(mut self, scenario_id: &str) -> Self {
        self.scenario_id = scenario_id.to_string();
        self
    }

    /// An item with no events (yet): items are in first-mention order.
    pub fn item(mut self, item: &str) -> Self {
        self.item_index(item);
        self
    }

    /// `item`'s value of the numeric declared feature `name` (items without one get 0, as the
    /// host gives them).
    pub fn feature(mut self, item: &str, name: &str, value: f64) -> Self {
        let k = self.item_index(item);
        match self.column(name, || TestColumn::Number(Vec::new())) {
            TestColumn::Number(v) => v.push((k, value)),
            TestColumn::Text(_) => panic!("feature {name:?} was declared as text"),
        }
        self
    }

    /// `item`'s value of the text declared feature `name` (items without one get "", as the
    /// host gives them).
    pub fn feature_text(mut self, item: &str, name: &str, value: &str) -> Self {
        let k = self.item_index(item);
        match self.column(name, || TestColumn::Text(Vec::new())) {
            TestColumn::Text(v) => v.push((k, value.to_string())),
            TestColumn::Number(_) => panic!("feature {name:?} was declared as a number"),
        }
        self
    }

    fn column(&mut self, name: &str, new: impl FnOnce() -> TestColumn) -> &mut TestColumn {
        let i = match self.features.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                self.features.push((name.to_string(), new()));
                self.features.len() - 1
            }
        };
        &mut self.features[i].1
    }

    fn item_index(&mut self, item: &str) -> usize {
        match self.items.iter().position(|(id, _)| id == item) {
            Some(pos) => pos,
            None => {
                self.items.push((item.to_string(), Vec::new()));
                self.items.len() - 1
            }
        }
    }

    /// Window bounds `[start_ms, end_ms)`.
    pub fn window(mut self, start_ms: i64, end_ms: i64) -> Self {
        self.window_start_ms = start_ms;
        self.window_end_ms = end_ms;
        self
    }

    /// The scenario's `decay_lambda`, per hour.
    pub fn lambda(mut self, per_hour: f64) -> Self {
        self.decay_lambda = per_hour;
        self
    }

    /// The scenario's weight for `action` (actions never weighted weigh 0).
    pub fn weight(mut self, action: &str, weight: f64) -> Self {
        let i = self.action(action);
        self.weights[usize::from(i)] = weight;
        self
    }

    /// Several weights at once.
    pub fn weights<'s>(self, weights: impl IntoIterator<Item = (&'s str, f64)>) -> Self {
        weights.into_iter().fold(self, |b, (a, w)| b.weight(a, w))
    }

    /// `count` events of `action` on `item`, each `age_ms` before the window end.
    pub fn event(mut self, item: &str, action: &str, age_ms: i64, count: u32) -> Self {
        let a = self.action(action);
        let pos = self.item_index(item);
        self.items[pos].1.push((a, age_ms, count));
        self
    }

    /// Many `(item, action, age_ms, count)` events.
    pub fn events<'s>(self, events: impl IntoIterator<Item = (&'s str, &'s str, i64, u32)>) -> Self {
        events.into_iter().fold(self, |b, (i, a, age, n)| b.event(i, a, age, n))
    }

    fn action(&mut self, name: &str) -> u16 {
        let i = match self.actions.iter().position(|a| a == name) {
            Some(i) => i,
            None => {
                self.actions.push(name.to_string());
                self.weights.push(0.0);
                self.actions.len() - 1
            }
        };
        #[allow(clippy::expect_used, reason = "the test harness, not plugin code: a test with 65,536 actions is a bug")]
        let code = u16::try_from(i).expect("test batches have fewer than 65536 actions");
        code
    }

    /// The batch, with the item ids in score order.
    pub fn build(&self) -> TestBatch {
        let mut raw = RawBatch {
            window_start_ms: self.window_start_ms,
            window_end_ms: self.window_end_ms,
            actions: self.actions.clone(),
            weights: self.weights.clone(),
            decay_lambda: self.decay_lambda,
            item_offsets: vec![0],
            row_action: Vec::new(),
            row_count: Vec::new(),
            row_age_mean_ms: Vec::new(),
            row_age_var_ms2: Vec::new(),
            item_ids: self.items.iter().map(|(id, _)| id.as_str()).collect(),
            item_id_ends: self
                .items
                .iter()
                .scan(0u32, |end, (id, _)| {
                    *end += id.len() as u32;
                    Some(*end)
                })
                .collect(),
            slide_ms: self.slide_ms,
            top_n: self.top_n,
            tenant_id: self.tenant_id.clone(),
            scenario_id: self.scenario_id.clone(),
            features: self.features.iter().map(|(name, c)| self.feature_column(name, c)).collect(),
        };
        let bucket_ms = MS_PER_MINUTE as i64;
        for (_, events) in &self.items {
            // Cells keyed by (minute bucket of the event time, action), like the host's window.
            type Cell = ((i64, u16), Vec<(f64, u32)>);
            let mut cells: Vec<Cell> = Vec::new();
            for &(a, age, n) in events {
                let key = ((self.window_end_ms - age).div_euclid(bucket_ms), a);
                match cells.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, v)) => v.push((age as f64, n)),
                    None => cells.push((key, vec![(age as f64, n)])),
                }
            }
            cells.sort_by_key(|(k, _)| *k);
            for ((_, a), ages) in cells {
                let n: f64 = ages.iter().map(|&(_, c)| f64::from(c)).sum();
                let count: u32 = ages.iter().map(|&(_, c)| c).sum();
                let mean = if n > 0.0 { ages.iter().map(|&(x, c)| x * f64::from(c)).sum::<f64>() / n } else { 0.0 };
                let var = if n > 0.0 { ages.iter().map(|&(x, c)| f64::from(c) * (x - mean).powi(2)).sum::<f64>() / n } else { 0.0 };
                raw.row_action.push(a);
                raw.row_count.push(count);
                raw.row_age_mean_ms.push(mean);
                raw.row_age_var_ms2.push(var);
            }
            raw.item_offsets.push(raw.row_action.len() as u32);
        }
        let item_ids = self.items.iter().map(|(id, _)| id.clone()).collect();
        TestBatch { item_ids, raw }
    }

    fn feature_column(&self, name: &str, c: &TestColumn) -> RawFeatureColumn {
        let n = self.items.len();
        let values = match c {
            TestColumn::Number(set) => {
                let mut v = vec![0.0; n];
                set.iter().for_each(|&(k, x)| v[k] = x);
                RawFeatureValues::Number(v)
            }
            TestColumn::Text(set) => {
                let mut v = vec![String::new(); n];
                set.iter().for_each(|(k, x)| v[*k].clone_from(x));
                RawFeatureValues::Text(v)
            }
        };
        RawFeatureColumn { name: name.to_string(), values }
    }
}

/// A built batch and the ids of its items (index `k` is the item of score `k`).
#[derive(Debug, Clone, PartialEq)]
pub struct TestBatch {
    /// The batch as the host lowers it into the guest.
    pub raw: RawBatch,
    /// Item ids, index `k` being the item of score `k`.
    pub item_ids: Vec<String>,
}

impl TestBatch {
    /// Configures `S` from `params_json` and scores the batch, as the host's `configure` then
    /// `score` calls do, and checks the host's rules on the result (one finite score per item).
    pub fn run<S: Scorer>(&self, params_json: &str) -> Result<Vec<f64>, String> {
        let scorer: S = crate::build_scorer(params_json)?;
        self.run_scorer(&scorer)
    }

    /// Like [`TestBatch::run`] with an already built scorer.
    pub fn run_scorer<S: Scorer>(&self, scorer: &S) -> Result<Vec<f64>, String> {
        let scores = crate::run_scorer(scorer, &self.raw)?;
        let expected = self.item_ids.len();
        if scores.len() != expected {
            return Err(format!("{} scores for {expected} items (the host rejects this)", scores.len()));
        }
        if let Some((i, s)) = scores.iter().enumerate().find(|(_, s)| !s.is_finite()) {
            return Err(format!("score {s} of item {} is not finite (the host rejects this)", self.item_ids[i]));
        }
        Ok(scores)
    }

    /// `(item_id, score)` pairs, in item order.
    pub fn scores<S: Scorer>(&self, params_json: &str) -> Result<Vec<(String, f64)>, String> {
        Ok(self.item_ids.iter().cloned().zip(self.run::<S>(params_json)?).collect())
    }

    /// The score of one item by id.
    pub fn score_of<S: Scorer>(&self, params_json: &str, item: &str) -> Result<f64, String> {
        let k = self.item_ids.iter().position(|id| id == item).ok_or_else(|| format!("no item {item} in the batch"))?;
        Ok(self.run::<S>(params_json)?[k])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_in_one_minute_cell_share_a_row() {
        // Window end is a minute boundary; ages 10 s and 40 s fall in the last minute.
        let b = BatchBuilder::new()
            .weight("view", 1.0)
            .event("a", "view", 10_000, 1)
            .event("a", "view", 40_000, 1)
            .event("a", "view", 70_000, 2)
            .event("b", "click", 1_000, 1)
            .build();
        assert_eq!(b.item_ids, vec!["a", "b"]);
        assert_eq!(b.raw.item_offsets, vec![0, 2, 3]);
        assert_eq!(b.raw.row_count, vec![2, 2, 1]);
        let (mean, var) = (b.raw.row_age_mean_ms[1], b.raw.row_age_var_ms2[1]);
        assert_eq!(mean, 25_000.0);
        assert_eq!(var, 225_000_000.0);
        assert_eq!(b.raw.actions, vec!["view", "click"]);
        assert_eq!(b.raw.weights, vec![1.0, 0.0]);
        assert_eq!(b.raw.item_ids, b.item_ids.concat());
    }

    #[test]
    fn features_default_per_item_and_keep_declaration_order() {
        let b = BatchBuilder::new().item("a").feature_text("b", "brand", "x").feature("c", "price", 2.0).feature("a", "price", 1.0).build();
        assert_eq!(b.item_ids, vec!["a", "b", "c"]);
        let names: Vec<_> = b.raw.features.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["brand", "price"]);
        assert_eq!(b.raw.features[0].values, RawFeatureValues::Text(vec!["".into(), "x".into(), "".into()]));
        assert_eq!(b.raw.features[1].values, RawFeatureValues::Number(vec![1.0, 0.0, 2.0]));
    }
}
