//! Validated scenario configuration (DESIGN §3). Values of these types have passed
//! [`super::validate::parse_scenario`]; code past that point never re-checks them.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Milliseconds per minute: window sizes and slides are whole minutes.
pub const MS_PER_MINUTE: i64 = 60_000;

/// `(tenant_id, scenario_id)`, the unit of configuration and of output keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ScenarioKey {
    pub tenant_id: Arc<str>,
    pub scenario_id: Arc<str>,
}

impl ScenarioKey {
    pub fn new(tenant_id: &str, scenario_id: &str) -> Self {
        Self { tenant_id: tenant_id.into(), scenario_id: scenario_id.into() }
    }
}

impl fmt::Display for ScenarioKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant_id, self.scenario_id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScenarioStatus {
    Active,
    Inactive,
}

/// One scenario's validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioConfig {
    pub key: ScenarioKey,
    pub scenario_type: Option<String>,
    pub status: ScenarioStatus,
    pub revision: i64,
    pub hot_score: HotScoreConfig,
    pub user_profile: UserProfileConfig,
    pub metrics: MetricsConfig,
    /// The first hot-score window end (epoch ms) this revision applies to; earlier windows keep
    /// the previous revision, so every host of a fleet switches at the same event time.
    /// `None`: from the next emitted window.
    pub effective_from_window_end: Option<i64>,
    /// A hot-score candidate evaluated in shadow beside the live one (docs/rollout.md).
    pub candidate: Option<Candidate>,
    /// Computed only by instances started for this scenario (`--tenant-id T --scenario-id S`);
    /// the shared fleet skips it (docs/operations.md, "Dedicated instances").
    pub dedicated: bool,
}

/// A scenario's shadow candidate: the live hot-score section with the document's `candidate`
/// deep-merged over it, validated on its own so a broken candidate never affects the live one.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant, reason = "one per scenario config, rarely the small variant; boxing would only add an indirection")]
pub enum Candidate {
    Valid(CandidateConfig),
    /// Why the candidate was refused (field paths under `candidate.`).
    Invalid(String),
}

/// What a valid candidate evaluates in shadow, per job: each part is `None` when the candidate
/// leaves that job alone (so nothing is computed twice for it).
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateConfig {
    /// `candidate.hot_score` / `candidate.plugin`: the candidate hot-score config.
    pub hot_score: Option<HotScoreConfig>,
    /// `candidate.metrics.plugin`: a metrics plugin computed beside the live one.
    pub metrics_plugin: Option<PluginRef>,
    /// `candidate.user_profile.plugin`: a profile plugin called beside the live one.
    pub profile_plugin: Option<PluginRef>,
}

impl Candidate {
    /// The candidate hot-score config, if the candidate has one.
    pub fn hot_score(&self) -> Option<&HotScoreConfig> {
        match self {
            Candidate::Valid(c) => c.hot_score.as_ref(),
            Candidate::Invalid(_) => None,
        }
    }

    pub fn metrics_plugin(&self) -> Option<&PluginRef> {
        match self {
            Candidate::Valid(c) => c.metrics_plugin.as_ref(),
            Candidate::Invalid(_) => None,
        }
    }

    pub fn profile_plugin(&self) -> Option<&PluginRef> {
        match self {
            Candidate::Valid(c) => c.profile_plugin.as_ref(),
            Candidate::Invalid(_) => None,
        }
    }
}

/// Sliding window geometry, both in ms and whole minutes; `size_ms` is a multiple of `slide_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WindowGeometry {
    pub size_ms: i64,
    pub slide_ms: i64,
}

impl WindowGeometry {
    pub fn from_minutes(size: i64, slide: i64) -> Self {
        Self { size_ms: size * MS_PER_MINUTE, slide_ms: slide * MS_PER_MINUTE }
    }

    /// The smallest window end whose window contains `ts`.
    pub fn first_end_containing(&self, ts: i64) -> i64 {
        ts.div_euclid(self.slide_ms) * self.slide_ms + self.slide_ms
    }

    /// The first window end strictly after `t` (a multiple of the slide).
    pub fn next_end_after(&self, t: i64) -> i64 {
        self.first_end_containing(t)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HotScoreConfig {
    pub enabled: bool,
    /// Weight per action; actions absent from the map weigh 0.
    pub action_weights: BTreeMap<String, f64>,
    /// Exponential decay per hour of event age.
    pub decay_lambda: f64,
    pub window: WindowGeometry,
    pub top_n: usize,
    pub plugin: Option<PluginRef>,
    /// Declared features (`hot_score.features`): per-item aggregates computed natively over
    /// each window and handed to the scorer as columns, in declaration order.
    pub features: Vec<FeatureDef>,
}

/// Most features one scenario may declare.
pub const MAX_FEATURES: usize = 8;

/// One declared feature: `{name, op, field, actions}`. Two declarations are the same feature
/// (its aggregates survive a config change) when every part is equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FeatureDef {
    pub name: String,
    pub op: FeatureOp,
    pub field: FeatureField,
    /// Only events of these actions contribute; `None`: every action.
    pub actions: Option<Vec<String>>,
}

impl FeatureDef {
    /// Whether an event of `action` contributes.
    pub fn admits(&self, action: &str) -> bool {
        self.actions.as_ref().is_none_or(|a| a.iter().any(|x| x == action))
    }

    /// The declaration in the document's spelling.
    pub fn to_document(&self) -> serde_json::Value {
        let mut doc = serde_json::json!({"name": self.name, "op": self.op.name(), "field": self.field.name()});
        if let Some(a) = &self.actions {
            doc["actions"] = a.clone().into();
        }
        doc
    }
}

/// How a feature aggregates its field. Snapshots store it: keep the variant order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FeatureOp {
    /// Sum of a number, exact in fixed point (micro-units).
    Sum,
    /// Largest number.
    Max,
    /// Number of distinct strings: exact up to a bound, then a HyperLogLog estimate.
    Distinct,
    /// The string of the latest event (greatest `(ts, value)`).
    Last,
}

impl FeatureOp {
    pub const NAMES: &[&str] = &["sum", "max", "distinct", "last"];

    pub fn from_name(s: &str) -> Option<FeatureOp> {
        Some(match s {
            "sum" => FeatureOp::Sum,
            "max" => FeatureOp::Max,
            "distinct" => FeatureOp::Distinct,
            "last" => FeatureOp::Last,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// Whether the op reads numbers (else strings).
    pub fn numeric(self) -> bool {
        matches!(self, FeatureOp::Sum | FeatureOp::Max)
    }
}

/// Longest `props` key, bytes.
pub const MAX_PROP_KEY_BYTES: usize = 64;

/// `[A-Za-z0-9_.-]{1,64}`: a `props` key of an event (also what `props.<key>` in a feature names).
pub fn is_valid_prop_key(k: &str) -> bool {
    (1..=MAX_PROP_KEY_BYTES).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// The event field a feature reads. Snapshots store it: keep the variant order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FeatureField {
    WatchTimeMs,
    UserId,
    Category,
    /// `props.<key>`.
    Prop(String),
}

impl FeatureField {
    pub const NAMES: &[&str] = &["watch_time_ms", "user_id", "category", "props.<key>"];

    pub fn name(&self) -> String {
        match self {
            FeatureField::WatchTimeMs => "watch_time_ms".into(),
            FeatureField::UserId => "user_id".into(),
            FeatureField::Category => "category".into(),
            FeatureField::Prop(k) => format!("props.{k}"),
        }
    }

    /// Whether `op` may read this field (DESIGN §3): numbers for sum/max, strings otherwise;
    /// `last` of a user id is left out (it would single out one user).
    pub fn fits(&self, op: FeatureOp) -> bool {
        match self {
            FeatureField::Prop(_) => true,
            FeatureField::WatchTimeMs => op.numeric(),
            FeatureField::UserId => op == FeatureOp::Distinct,
            FeatureField::Category => !op.numeric(),
        }
    }
}

impl HotScoreConfig {
    pub fn weight(&self, action: &str) -> f64 {
        self.action_weights.get(action).copied().unwrap_or(0.0)
    }
}

/// A scenario's reference to a scoring plugin module (DESIGN §5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginRef {
    pub name: String,
    pub version: String,
    /// Lower-case hex sha256 of the module bytes. `None` is an unpinned development reference:
    /// the newest module with that name and version is used, and a warning is reported.
    pub sha256: Option<String>,
    /// Plugin parameters, handed to the module as JSON.
    pub params: serde_json::Value,
}

impl PluginRef {
    /// `name@version`, as reported in outputs and status.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserProfileConfig {
    pub enabled: bool,
    pub update_frequency_ms: i64,
    pub interest_decay_days: f64,
    pub behavior_weights: BTreeMap<String, f64>,
    /// A profile plugin (world `profile`), called for the users due to be written; the built-in
    /// interest update is its fallback.
    pub plugin: Option<PluginRef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    Ctr,
    Cvr,
    WatchTime,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub window_size_ms: i64,
    pub metrics_to_calculate: Vec<MetricKind>,
    /// `ctr`'s actions (default click / impression).
    pub ctr: RatioActions,
    /// `cvr`'s actions (default purchase / click).
    pub cvr: RatioActions,
    /// Per-item metrics of the `top_n` items with the most events per window (off by default).
    pub per_item: Option<PerItemMetrics>,
    /// A metrics plugin (world `metrics`), called once per emitted window.
    pub plugin: Option<PluginRef>,
}

/// `metrics.per_item`: per window, counts per action and the scenario's ratios for each of the
/// `top_n` items with the most events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerItemMetrics {
    pub top_n: usize,
}

/// A ratio metric: the events of the `numerator` actions over those of the `denominator`
/// actions in the window, so a platform whose events say `expose`/`tap` keeps its names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatioActions {
    pub numerator: Vec<String>,
    pub denominator: Vec<String>,
}

impl RatioActions {
    pub fn new(numerator: &[&str], denominator: &[&str]) -> Self {
        let owned = |l: &[&str]| l.iter().map(|a| a.to_string()).collect();
        Self { numerator: owned(numerator), denominator: owned(denominator) }
    }

    /// The seed's `ctr = click / impression`.
    pub fn default_ctr() -> Self {
        Self::new(&["click"], &["impression"])
    }

    /// The seed's `cvr = purchase / click`.
    pub fn default_cvr() -> Self {
        Self::new(&["purchase"], &["click"])
    }
}
