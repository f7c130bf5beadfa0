//! The columnar window batch: what a scorer (built-in or plugin) sees of one emitted window.
//!
//! It mirrors `record window-batch` in `wit/scoring.wit` field for field, so the plugin engine
//! hands it across the component boundary without reshaping it.

/// One emitted window of one scenario: per item, its (one-minute bucket, action) cells.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowBatch {
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    /// Action names; `row_action` indexes this.
    pub actions: Vec<String>,
    /// Configured weight per action index (0 for unweighted actions).
    pub weights: Vec<f64>,
    /// Configured decay, per hour.
    pub decay_lambda: f64,
    /// CSR offsets: rows of item `k` are `item_offsets[k]..item_offsets[k + 1]`.
    pub item_offsets: Vec<u32>,
    pub row_action: Vec<u16>,
    pub row_count: Vec<u32>,
    /// Mean age of the row's events, `window_end_ms - ts`, in ms.
    pub row_age_mean_ms: Vec<f64>,
    /// Variance of the row's event ages, in ms².
    pub row_age_var_ms2: Vec<f64>,
    /// Item ids in item order. Filled only for scorers that read them (WIT `0.2.0` plugins):
    /// the built-in formula and `0.1.0` modules never pay for the copies.
    pub item_ids: String,
    /// End offset of each item's id in `item_ids` (ids are concatenated: one copy per window
    /// across the component boundary instead of one allocation per item).
    pub item_id_ends: Vec<u32>,
    /// The window's slide, ms.
    pub slide_ms: i64,
    /// The scenario's `top_n`.
    pub top_n: u32,
    pub tenant_id: String,
    pub scenario_id: String,
    /// The scenario's declared features (`hot_score.features`), in declaration order: one
    /// column per feature, one value per item, aggregated over the whole window.
    pub features: Vec<FeatureColumn>,
}

/// One declared feature's values over a window, one per item (in item order).
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureColumn {
    /// The feature's name in the scenario document.
    pub name: String,
    pub values: FeatureValues,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FeatureValues {
    /// `sum`, `max` and `distinct` (an exact count, or an estimate past the exact bound).
    /// An item with no contributing event in the window has 0.
    Number(Vec<f64>),
    /// `last`: the value of the latest contributing event ("" when none).
    Text(Vec<String>),
}

impl WindowBatch {
    /// An empty batch for a window; items are appended with [`WindowBatch::push_row`] and
    /// [`WindowBatch::finish_item`].
    pub fn new(window_start_ms: i64, window_end_ms: i64, actions: Vec<String>, weights: Vec<f64>, decay_lambda: f64) -> Self {
        Self { window_start_ms, window_end_ms, actions, weights, decay_lambda, item_offsets: vec![0], ..Self::default() }
    }

    pub fn item_count(&self) -> usize {
        self.item_offsets.len().saturating_sub(1)
    }

    pub fn row_count(&self) -> usize {
        self.row_action.len()
    }

    pub fn push_row(&mut self, action: u16, count: u32, age_mean_ms: f64, age_var_ms2: f64) {
        self.row_action.push(action);
        self.row_count.push(count);
        self.row_age_mean_ms.push(age_mean_ms);
        self.row_age_var_ms2.push(age_var_ms2);
    }

    /// Closes the current item: the rows pushed since the previous call belong to it.
    pub fn finish_item(&mut self) {
        self.item_offsets.push(self.row_action.len() as u32);
    }

    /// Row range of item `k`.
    pub fn item_rows(&self, k: usize) -> std::ops::Range<usize> {
        self.item_offsets[k] as usize..self.item_offsets[k + 1] as usize
    }

    /// Appends the next item's id (the context of WIT 0.2.0).
    pub fn push_item_id(&mut self, id: &str) {
        self.item_ids.push_str(id);
        self.item_id_ends.push(u32::try_from(self.item_ids.len()).unwrap_or(u32::MAX));
    }

    /// Item `k`'s id, when the batch carries ids.
    pub fn item_id(&self, k: usize) -> Option<&str> {
        let end = *self.item_id_ends.get(k)? as usize;
        let start = if k == 0 { 0 } else { self.item_id_ends[k - 1] as usize };
        self.item_ids.get(start..end)
    }

    /// Empties the batch for reuse, keeping its allocations.
    pub fn clear(&mut self) {
        self.actions.clear();
        self.weights.clear();
        self.item_offsets.clear();
        self.item_offsets.push(0);
        self.row_action.clear();
        self.row_count.clear();
        self.row_age_mean_ms.clear();
        self.row_age_var_ms2.clear();
        self.item_ids.clear();
        self.item_id_ends.clear();
        self.features.clear();
    }
}
