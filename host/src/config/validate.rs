//! Parse, don't validate: one fallible conversion from a raw scenario document (JSON, or BSON
//! turned into JSON) to a [`ScenarioConfig`]. Every error names the field path and the rule.
//! Missing fields take the seed's defaults; a map that is present is taken whole. Field names are
//! strict (`super::fields`): each level rtscore owns lists its known fields in a `const` slice
//! next to the code that parses it, and any other name there is an error with a "did you mean"
//! suggestion; the platform's own root fields are warnings, other `config` sections are left alone.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use super::fields::{FOREIGN_FIELDS, SILENT_FIELDS, extra_foreign_fields, suggest, unknown_field_rule};
use super::model::*;
use super::weights_guard::REPLACE_WEIGHTS;

/// One rule a document broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path from the document root, e.g. `config.realtime_compute.hot_score.decay_lambda`.
    pub path: String,
    pub rule: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.rule)
    }
}

/// A scenario document that failed validation, with every rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid scenario document{}: {}", .scenario.as_ref().map(|s| format!(" {s}")).unwrap_or_default(), .errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
pub struct ConfigError {
    /// `tenant/scenario` when the ids themselves were readable.
    pub scenario: Option<String>,
    pub errors: Vec<FieldError>,
}

pub const DEFAULT_ACTION_WEIGHTS: [(&str, f64); 8] = [
    ("impression", 0.5),
    ("view", 1.0),
    ("click", 2.0),
    ("like", 3.0),
    ("favorite", 4.0),
    ("comment", 5.0),
    ("share", 6.0),
    ("purchase", 10.0),
];
pub const DEFAULT_BEHAVIOR_WEIGHTS: [(&str, f64); 4] = [("view", 1.0), ("like", 3.0), ("favorite", 5.0), ("purchase", 10.0)];

/// Largest accepted `decay_lambda` (per hour). Above it a one-minute bucket is too coarse to
/// hold the 1e-3 accuracy promise (see `scoring::builtin`), and the half-life is under 4 minutes.
pub const MAX_DECAY_LAMBDA: f64 = 10.0;
pub const MAX_WINDOW_MINUTES: i64 = 7 * 24 * 60;
/// Most windows one event may belong to (window / slide).
pub const MAX_WINDOWS_PER_EVENT: i64 = 1440;
pub const MAX_TOP_N: i64 = 10_000;
pub const MAX_ABS_WEIGHT: f64 = 1e6;

/// `[A-Za-z0-9_-]{1,64}`: tenant and scenario ids.
pub fn is_valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `[a-z_]{1,32}`: action names.
pub fn is_valid_action(s: &str) -> bool {
    (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// A valid document's config and what the writer should hear about without being refused
/// (platform fields, a `replace_weights` marker), each a path and a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub config: ScenarioConfig,
    pub warnings: Vec<FieldError>,
}

/// Collects errors and warnings while walking a document.
struct Walker {
    errors: Vec<FieldError>,
    warnings: Vec<FieldError>,
}

impl Walker {
    fn err(&mut self, path: &str, rule: impl Into<String>) {
        self.errors.push(FieldError { path: path.to_string(), rule: rule.into() });
    }

    fn warn(&mut self, path: &str, rule: impl Into<String>) {
        self.warnings.push(FieldError { path: path.to_string(), rule: rule.into() });
    }

    /// Every key of `obj` (at `path`) not in `known` is an error naming the closest known one.
    fn known_fields(&mut self, obj: Option<&Map<String, Value>>, known: &[&str], path: &str) {
        for key in obj.into_iter().flat_map(|o| o.keys()) {
            if !known.contains(&key.as_str()) {
                self.err(&format!("{path}.{key}"), unknown_field_rule(key, known));
            }
        }
    }

    fn object<'v>(&mut self, parent: Option<&'v Map<String, Value>>, key: &str, path: &str) -> Option<&'v Map<String, Value>> {
        match parent?.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(_) => {
                self.err(path, "must be an object");
                None
            }
        }
    }

    fn bool(&mut self, obj: Option<&Map<String, Value>>, key: &str, path: &str, default: bool) -> bool {
        match obj.and_then(|o| o.get(key)) {
            None | Some(Value::Null) => default,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.err(path, "must be true or false");
                default
            }
        }
    }

    fn number(&mut self, obj: Option<&Map<String, Value>>, key: &str, path: &str, default: f64, min: f64, max: f64) -> f64 {
        match obj.and_then(|o| o.get(key)) {
            None | Some(Value::Null) => default,
            Some(Value::Number(n)) => match n.as_f64() {
                Some(x) if x.is_finite() && (min..=max).contains(&x) => x,
                _ => {
                    self.err(path, format!("must be a finite number in [{min}, {max}], got {n}"));
                    default
                }
            },
            Some(v) => {
                self.err(path, format!("must be a number, got {}", type_name(v)));
                default
            }
        }
    }

    fn integer(&mut self, obj: Option<&Map<String, Value>>, key: &str, path: &str, default: i64, min: i64, max: i64) -> i64 {
        match obj.and_then(|o| o.get(key)) {
            None | Some(Value::Null) => default,
            Some(Value::Number(n)) => {
                let as_int = n.as_i64().or_else(|| n.as_f64().filter(|x| x.fract() == 0.0 && x.abs() < 9e15).map(|x| x as i64));
                match as_int {
                    Some(x) if (min..=max).contains(&x) => x,
                    _ => {
                        self.err(path, format!("must be an integer in [{min}, {max}], got {n}"));
                        default
                    }
                }
            }
            Some(v) => {
                self.err(path, format!("must be an integer, got {}", type_name(v)));
                default
            }
        }
    }

    fn weights(&mut self, obj: Option<&Map<String, Value>>, key: &str, path: &str, default: &[(&str, f64)]) -> BTreeMap<String, f64> {
        match obj.and_then(|o| o.get(key)) {
            None | Some(Value::Null) => default.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            Some(Value::Object(m)) => {
                let mut out = BTreeMap::new();
                for (action, w) in m {
                    let p = format!("{path}.{action}");
                    if !is_valid_action(action) {
                        self.err(&p, "action names must match [a-z_]{1,32}");
                        continue;
                    }
                    match w.as_f64() {
                        Some(x) if x.is_finite() && x.abs() <= MAX_ABS_WEIGHT => {
                            out.insert(action.clone(), x);
                        }
                        _ => self.err(&p, format!("must be a finite number in [-{MAX_ABS_WEIGHT}, {MAX_ABS_WEIGHT}]")),
                    }
                }
                out
            }
            Some(v) => {
                self.err(path, format!("must be an object of action -> weight, got {}", type_name(v)));
                default.iter().map(|(k, v)| (k.to_string(), *v)).collect()
            }
        }
    }

    fn id(&mut self, doc: &Map<String, Value>, key: &str) -> Option<String> {
        match doc.get(key) {
            Some(Value::String(s)) if is_valid_id(s) => Some(s.clone()),
            Some(Value::String(_)) => {
                self.err(key, "must match [A-Za-z0-9_-]{1,64}");
                None
            }
            None | Some(Value::Null) => {
                self.err(key, "is required");
                None
            }
            Some(v) => {
                self.err(key, format!("must be a string, got {}", type_name(v)));
                None
            }
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Root fields rtscore reads or writes. Others are platform fields ([`FOREIGN_FIELDS`], the
/// host's `--foreign-field`: warnings) or errors.
pub const ROOT_FIELDS: &[&str] = &[
    "tenant_id",
    "scenario_id",
    "scenario_type",
    "status",
    "revision",
    "updated_at",
    "config",
    "candidate",
    "dedicated",
    "effective_from_window_end",
    REPLACE_WEIGHTS,
];
/// Keys of `config` rtscore owns; the others belong to other platform services.
pub const CONFIG_FIELDS: &[&str] = &["realtime_compute"];
pub const REALTIME_COMPUTE_FIELDS: &[&str] = &["hot_score", "user_profile", "metrics"];
pub const HOT_SCORE_FIELDS: &[&str] =
    &["enabled", "action_weights", "decay_lambda", "window_size_minutes", "window_slide_minutes", "top_n", "plugin", "features"];
/// One entry of `hot_score.features`.
pub const FEATURE_FIELDS: &[&str] = &["name", "op", "field", "actions"];
pub const USER_PROFILE_FIELDS: &[&str] = &["enabled", "update_frequency_minutes", "interest_decay_days", "behavior_weights", "plugin"];
pub const METRICS_FIELDS: &[&str] = &["enabled", "window_size_minutes", "metrics_to_calculate", "ctr", "cvr", "per_item", "plugin"];
/// `metrics.per_item`.
pub const PER_ITEM_FIELDS: &[&str] = &["top_n"];
/// Most items `metrics.per_item.top_n` may ask for per window.
pub const MAX_PER_ITEM_TOP_N: i64 = 1000;
/// `metrics.ctr` and `metrics.cvr`: the actions counted above and below the ratio.
pub const RATIO_FIELDS: &[&str] = &["numerator", "denominator"];
/// `plugin` (live or candidate); `params` is the plugin's own JSON and is not checked.
pub const PLUGIN_FIELDS: &[&str] = &["name", "version", "sha256", "params"];
pub const CANDIDATE_FIELDS: &[&str] = &["hot_score", "plugin", "metrics", "user_profile"];

/// The root's own fields: rtscore's, silently accepted, platform (a warning), or unknown.
fn root_fields(w: &mut Walker, doc: &Map<String, Value>, extra_foreign: &[String]) {
    for key in doc.keys() {
        let k = key.as_str();
        if ROOT_FIELDS.contains(&k) || SILENT_FIELDS.contains(&k) {
            continue;
        }
        if FOREIGN_FIELDS.contains(&k) || extra_foreign.iter().any(|f| f == k) {
            w.warn(k, "platform field: kept in the document, not read by rtscore");
        } else {
            let rule = match suggest(k, ROOT_FIELDS) {
                Some(s) => format!("unknown field; did you mean \"{s}\"?"),
                None => format!(
                    "unknown field; rtscore's fields here are {}; a platform field must be listed with the host's --foreign-field",
                    ROOT_FIELDS.join(", ")
                ),
            };
            w.err(k, rule);
        }
    }
}

/// Keys of `config`: `realtime_compute` is rtscore's, other sections belong to other services
/// and are left alone, unless the key looks like a misspelt `realtime_compute`.
fn config_fields(w: &mut Walker, config: Option<&Map<String, Value>>) {
    for key in config.into_iter().flat_map(|c| c.keys()) {
        if !CONFIG_FIELDS.contains(&key.as_str())
            && let Some(s) = suggest(key, CONFIG_FIELDS)
        {
            w.err(&format!("config.{key}"), format!("unknown field; did you mean \"{s}\"?"));
        }
    }
}

/// Turns a raw scenario document into a validated [`ScenarioConfig`] (warnings dropped).
pub fn parse_scenario(doc: &Value) -> Result<ScenarioConfig, ConfigError> {
    parse_scenario_checked(doc).map(|c| c.config)
}

/// [`parse_scenario`] with the warnings, under this host's foreign fields (`--foreign-field`).
pub fn parse_scenario_checked(doc: &Value) -> Result<Checked, ConfigError> {
    parse_scenario_with(doc, extra_foreign_fields())
}

/// [`parse_scenario_checked`] with an explicit list of extra foreign root fields.
pub fn parse_scenario_with(doc: &Value, extra_foreign: &[String]) -> Result<Checked, ConfigError> {
    let Some(doc) = doc.as_object() else {
        return Err(ConfigError {
            scenario: None,
            errors: vec![FieldError { path: "$".into(), rule: "a scenario document must be a JSON object".into() }],
        });
    };
    let mut w = Walker { errors: Vec::new(), warnings: Vec::new() };
    root_fields(&mut w, doc, extra_foreign);
    let tenant = w.id(doc, "tenant_id");
    let scenario = w.id(doc, "scenario_id");
    let label = match (&tenant, &scenario) {
        (Some(t), Some(s)) => Some(format!("{t}/{s}")),
        _ => None,
    };

    let status = match doc.get("status") {
        None | Some(Value::Null) => ScenarioStatus::Active,
        Some(Value::String(s)) if s == "active" => ScenarioStatus::Active,
        Some(Value::String(s)) if s == "inactive" => ScenarioStatus::Inactive,
        Some(_) => {
            w.err("status", "must be \"active\" or \"inactive\"");
            ScenarioStatus::Inactive
        }
    };
    let revision = w.integer(Some(doc), "revision", "revision", 0, 0, i64::MAX);
    let scenario_type = doc.get("scenario_type").and_then(Value::as_str).map(str::to_string);
    let dedicated = w.bool(Some(doc), "dedicated", "dedicated", false);

    if w.bool(Some(doc), REPLACE_WEIGHTS, REPLACE_WEIGHTS, false) {
        w.warn(
            REPLACE_WEIGHTS,
            "set: this revision may drop weighted actions of the previous one; remove it after the change \
             (rtscore's own writes do) so that later partial weight maps are refused again",
        );
    }

    let config = w.object(Some(doc), "config", "config");
    config_fields(&mut w, config);
    let rc = w.object(config, "realtime_compute", "config.realtime_compute");
    w.known_fields(rc, REALTIME_COMPUTE_FIELDS, "config.realtime_compute");

    // hot_score
    let p = "config.realtime_compute.hot_score";
    let hot = w.object(rc, "hot_score", p);
    w.known_fields(hot, HOT_SCORE_FIELDS, p);
    let window = w.integer(hot, "window_size_minutes", &format!("{p}.window_size_minutes"), 60, 1, MAX_WINDOW_MINUTES);
    let slide = w.integer(hot, "window_slide_minutes", &format!("{p}.window_slide_minutes"), 15, 1, MAX_WINDOW_MINUTES);
    if slide > window {
        w.err(&format!("{p}.window_slide_minutes"), format!("must not exceed window_size_minutes ({slide} > {window})"));
    } else if window % slide != 0 {
        w.err(
            &format!("{p}.window_size_minutes"),
            format!("must be a multiple of window_slide_minutes ({window} is not a multiple of {slide})"),
        );
    } else if window / slide > MAX_WINDOWS_PER_EVENT {
        w.err(
            &format!("{p}.window_slide_minutes"),
            format!("window_size_minutes / window_slide_minutes must be at most {MAX_WINDOWS_PER_EVENT}"),
        );
    }
    let hot_score = HotScoreConfig {
        enabled: w.bool(hot, "enabled", &format!("{p}.enabled"), true),
        action_weights: w.weights(hot, "action_weights", &format!("{p}.action_weights"), &DEFAULT_ACTION_WEIGHTS),
        decay_lambda: w.number(hot, "decay_lambda", &format!("{p}.decay_lambda"), 0.1, 0.0, MAX_DECAY_LAMBDA),
        window: WindowGeometry::from_minutes(window, slide),
        top_n: w.integer(hot, "top_n", &format!("{p}.top_n"), 100, 1, MAX_TOP_N) as usize,
        plugin: parse_plugin_ref(&mut w, hot, &format!("{p}.plugin")),
        features: parse_features(&mut w, hot, &format!("{p}.features")),
    };

    // user_profile
    let p = "config.realtime_compute.user_profile";
    let up = w.object(rc, "user_profile", p);
    w.known_fields(up, USER_PROFILE_FIELDS, p);
    let user_profile = UserProfileConfig {
        enabled: w.bool(up, "enabled", &format!("{p}.enabled"), true),
        update_frequency_ms: w.integer(up, "update_frequency_minutes", &format!("{p}.update_frequency_minutes"), 5, 1, 24 * 60)
            * MS_PER_MINUTE,
        interest_decay_days: w.number(up, "interest_decay_days", &format!("{p}.interest_decay_days"), 30.0, 0.001, 3650.0),
        behavior_weights: w.weights(up, "behavior_weights", &format!("{p}.behavior_weights"), &DEFAULT_BEHAVIOR_WEIGHTS),
        plugin: parse_plugin_ref(&mut w, up, &format!("{p}.plugin")),
    };

    // metrics
    let p = "config.realtime_compute.metrics";
    let m = w.object(rc, "metrics", p);
    w.known_fields(m, METRICS_FIELDS, p);
    let metrics_to_calculate = match m.and_then(|m| m.get("metrics_to_calculate")) {
        None | Some(Value::Null) => vec![MetricKind::Ctr, MetricKind::Cvr, MetricKind::WatchTime],
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for (i, it) in items.iter().enumerate() {
                match it.as_str() {
                    Some("ctr") => out.push(MetricKind::Ctr),
                    Some("cvr") => out.push(MetricKind::Cvr),
                    Some("watch_time") => out.push(MetricKind::WatchTime),
                    _ => w.err(
                        &format!("{p}.metrics_to_calculate[{i}]"),
                        format!("unknown metric {it}; known: \"ctr\", \"cvr\", \"watch_time\""),
                    ),
                }
            }
            out.sort();
            out.dedup();
            out
        }
        Some(v) => {
            w.err(&format!("{p}.metrics_to_calculate"), format!("must be a list of metric names, got {}", type_name(v)));
            Vec::new()
        }
    };
    let metrics = MetricsConfig {
        enabled: w.bool(m, "enabled", &format!("{p}.enabled"), true),
        window_size_ms: w.integer(m, "window_size_minutes", &format!("{p}.window_size_minutes"), 30, 1, MAX_WINDOW_MINUTES) * MS_PER_MINUTE,
        metrics_to_calculate,
        ctr: parse_ratio_actions(&mut w, m, "ctr", p, RatioActions::default_ctr()),
        cvr: parse_ratio_actions(&mut w, m, "cvr", p, RatioActions::default_cvr()),
        per_item: parse_per_item(&mut w, m, p),
        plugin: parse_plugin_ref(&mut w, m, &format!("{p}.plugin")),
    };

    let effective_from_window_end = doc
        .get("effective_from_window_end")
        .filter(|v| !v.is_null())
        .map(|_| w.integer(Some(doc), "effective_from_window_end", "effective_from_window_end", 0, 0, i64::MAX));

    match (tenant, scenario) {
        (Some(t), Some(s)) if w.errors.is_empty() => {
            let candidate = parse_candidate(doc, &hot_score);
            let config = ScenarioConfig {
                key: ScenarioKey::new(&t, &s),
                scenario_type,
                status,
                revision,
                hot_score,
                user_profile,
                metrics,
                effective_from_window_end,
                candidate,
                dedicated,
            };
            Ok(Checked { config, warnings: w.warnings })
        }
        _ => Err(ConfigError { scenario: label, errors: w.errors }),
    }
}

/// `metrics.per_item`: `{"top_n": N}` turns per-item metrics on for the N items with the most
/// events per window (1 to [`MAX_PER_ITEM_TOP_N`], default 100); absent or null: off.
fn parse_per_item(w: &mut Walker, metrics: Option<&Map<String, Value>>, parent: &str) -> Option<PerItemMetrics> {
    let path = format!("{parent}.per_item");
    let obj = w.object(metrics, "per_item", &path)?;
    w.known_fields(Some(obj), PER_ITEM_FIELDS, &path);
    let top_n = w.integer(Some(obj), "top_n", &format!("{path}.top_n"), 100, 1, MAX_PER_ITEM_TOP_N) as usize;
    Some(PerItemMetrics { top_n })
}

/// Most actions one side of a ratio metric may sum.
pub const MAX_RATIO_ACTIONS: usize = 32;

/// `metrics.ctr` / `metrics.cvr`: `{"numerator": [actions], "denominator": [actions]}`. A
/// missing metric or side takes the seed's default; a present list must hold 1 to
/// [`MAX_RATIO_ACTIONS`] action names (duplicates counted once).
fn parse_ratio_actions(
    w: &mut Walker,
    metrics: Option<&Map<String, Value>>,
    key: &str,
    parent: &str,
    default: RatioActions,
) -> RatioActions {
    let path = format!("{parent}.{key}");
    let obj = w.object(metrics, key, &path);
    w.known_fields(obj, RATIO_FIELDS, &path);
    let mut side = |name: &str, default: Vec<String>| -> Vec<String> {
        let p = format!("{path}.{name}");
        match obj.and_then(|o| o.get(name)) {
            None | Some(Value::Null) => default,
            Some(Value::Array(items)) if (1..=MAX_RATIO_ACTIONS).contains(&items.len()) => {
                let mut out: Vec<String> = Vec::with_capacity(items.len());
                for (i, it) in items.iter().enumerate() {
                    match it.as_str() {
                        Some(a) if is_valid_action(a) => {
                            if !out.iter().any(|o| o == a) {
                                out.push(a.to_string());
                            }
                        }
                        _ => w.err(&format!("{p}[{i}]"), "action names must match [a-z_]{1,32}"),
                    }
                }
                out
            }
            Some(Value::Array(_)) => {
                w.err(&p, format!("must list 1 to {MAX_RATIO_ACTIONS} action names"));
                default
            }
            Some(v) => {
                w.err(&p, format!("must be a list of action names, got {}", type_name(v)));
                default
            }
        }
    };
    let numerator = side("numerator", default.numerator);
    let denominator = side("denominator", default.denominator);
    RatioActions { numerator, denominator }
}

/// Validates the document's `candidate` (if any) on its own: the live config stays valid
/// whatever the candidate holds. The candidate scores the live windows, so it must keep their
/// geometry; for the metrics and profile jobs it holds a plugin reference only (the shadow
/// calls it on the live job's input).
fn parse_candidate(doc: &Map<String, Value>, live: &HotScoreConfig) -> Option<Candidate> {
    let raw = doc.get("candidate").filter(|c| !c.is_null())?;
    let Some(obj) = raw.as_object() else {
        return Some(Candidate::Invalid(
            "candidate: must be an object like {\"hot_score\": {...}, \"plugin\": {...}, \"metrics\": {\"plugin\": {...}}, \"user_profile\": {\"plugin\": {...}}}".into(),
        ));
    };
    if let Some(k) = obj.keys().find(|k| !CANDIDATE_FIELDS.contains(&k.as_str())) {
        return Some(Candidate::Invalid(format!(
            "candidate.{k}: {} (a candidate holds \"hot_score\", \"plugin\", \"metrics\" and/or \"user_profile\")",
            unknown_field_rule(k, CANDIDATE_FIELDS)
        )));
    }
    for job in ["metrics", "user_profile"] {
        let Some(section) = obj.get(job) else { continue };
        let plugin_only = section.as_object().is_some_and(|m| m.len() == 1 && m.get("plugin").is_some_and(Value::is_object));
        if !plugin_only {
            return Some(Candidate::Invalid(format!(
                "candidate.{job}: must hold only a plugin reference, {{\"plugin\": {{\"name\": ..., \"version\": ...}}}} (its shadow runs on the live {job} input)"
            )));
        }
    }
    let merged = super::edit::candidate_document(&Value::Object(doc.clone()))?;
    let touches_hot = obj.contains_key("hot_score") || obj.contains_key("plugin");
    Some(match parse_scenario(&merged) {
        Ok(c) if touches_hot && c.hot_score.window != live.window => Candidate::Invalid(
            "candidate.hot_score: must keep the live window_size_minutes and window_slide_minutes (the shadow scores the live windows)"
                .into(),
        ),
        Ok(c) if touches_hot && c.hot_score.features != live.features => Candidate::Invalid(
            "candidate.hot_score: must keep the live features (the shadow scores the live windows' feature columns)".into(),
        ),
        Ok(c) => Candidate::Valid(CandidateConfig {
            hot_score: touches_hot.then_some(c.hot_score),
            metrics_plugin: obj.contains_key("metrics").then_some(c.metrics.plugin).flatten(),
            profile_plugin: obj.contains_key("user_profile").then_some(c.user_profile.plugin).flatten(),
        }),
        Err(e) => Candidate::Invalid(
            e.errors
                .iter()
                .map(|f| {
                    let path = ["hot_score", "metrics", "user_profile"]
                        .iter()
                        .find_map(|j| {
                            f.path.strip_prefix(&format!("config.realtime_compute.{j}")).map(|rest| format!("candidate.{j}{rest}"))
                        })
                        .unwrap_or_else(|| f.path.clone());
                    format!("{path}: {}", f.rule)
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
    })
}

/// `[a-z0-9_]{1,32}`: a feature's name (a column name plugins read).
pub fn is_valid_feature_name(s: &str) -> bool {
    (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `hot_score.features`: a list of at most [`MAX_FEATURES`] `{name, op, field, actions}`
/// (DESIGN §3). Every entry is checked, so one pass reports every broken rule.
fn parse_features(w: &mut Walker, hot: Option<&Map<String, Value>>, path: &str) -> Vec<FeatureDef> {
    let items = match hot.and_then(|h| h.get("features")) {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(v) => {
            w.err(path, format!("must be a list of feature declarations, got {}", type_name(v)));
            return Vec::new();
        }
    };
    if items.len() > MAX_FEATURES {
        w.err(path, format!("at most {MAX_FEATURES} features, got {}", items.len()));
        return Vec::new();
    }
    let mut out: Vec<FeatureDef> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let Some(obj) = item.as_object() else {
            w.err(&p, format!("must be an object {{name, op, field, actions}}, got {}", type_name(item)));
            continue;
        };
        w.known_fields(Some(obj), FEATURE_FIELDS, &p);
        let name = match obj.get("name") {
            Some(Value::String(n)) if is_valid_feature_name(n) => {
                if out.iter().any(|f| f.name == *n) {
                    w.err(&format!("{p}.name"), format!("duplicate feature name \"{n}\""));
                }
                Some(n.clone())
            }
            _ => {
                w.err(&format!("{p}.name"), "is required and must match [a-z0-9_]{1,32}");
                None
            }
        };
        let op = match obj.get("op") {
            Some(Value::String(o)) => FeatureOp::from_name(o).or_else(|| {
                w.err(&format!("{p}.op"), unknown_name_rule("op", o, FeatureOp::NAMES));
                None
            }),
            _ => {
                w.err(&format!("{p}.op"), format!("is required: one of {}", FeatureOp::NAMES.join(", ")));
                None
            }
        };
        let field = match obj.get("field") {
            Some(Value::String(f)) => parse_feature_field(f).or_else(|| {
                let rule = match f.strip_prefix("props.") {
                    Some(_) => "a props key must be 1..=64 bytes of [A-Za-z0-9_.-]".to_string(),
                    None => unknown_name_rule("field", f, &["watch_time_ms", "user_id", "category"]) + " (or props.<key>)",
                };
                w.err(&format!("{p}.field"), rule);
                None
            }),
            _ => {
                w.err(&format!("{p}.field"), "is required: watch_time_ms, user_id, category or props.<key>");
                None
            }
        };
        if let (Some(op), Some(field)) = (op, &field)
            && !field.fits(op)
        {
            let takes = match op {
                FeatureOp::Sum | FeatureOp::Max => "a number: watch_time_ms or props.<key>",
                FeatureOp::Distinct => "a string: user_id, category or props.<key>",
                FeatureOp::Last => "a string: category or props.<key>",
            };
            w.err(&format!("{p}.field"), format!("`{}` reads {takes}, not {}", op.name(), field.name()));
        }
        let actions = match obj.get("actions") {
            None | Some(Value::Null) => None,
            Some(Value::Array(list)) if (1..=MAX_RATIO_ACTIONS).contains(&list.len()) => {
                let mut acts: Vec<String> = Vec::with_capacity(list.len());
                for (j, a) in list.iter().enumerate() {
                    match a.as_str() {
                        Some(a) if is_valid_action(a) => {
                            if !acts.iter().any(|x| x == a) {
                                acts.push(a.to_string());
                            }
                        }
                        _ => w.err(&format!("{p}.actions[{j}]"), "action names must match [a-z_]{1,32}"),
                    }
                }
                Some(acts)
            }
            Some(_) => {
                w.err(&format!("{p}.actions"), format!("must list 1 to {MAX_RATIO_ACTIONS} action names"));
                None
            }
        };
        if let (Some(name), Some(op), Some(field)) = (name, op, field) {
            out.push(FeatureDef { name, op, field, actions });
        }
    }
    out
}

/// `watch_time_ms`, `user_id`, `category` or `props.<key>`.
fn parse_feature_field(f: &str) -> Option<FeatureField> {
    Some(match f {
        "watch_time_ms" => FeatureField::WatchTimeMs,
        "user_id" => FeatureField::UserId,
        "category" => FeatureField::Category,
        _ => FeatureField::Prop(f.strip_prefix("props.").filter(|k| super::model::is_valid_prop_key(k))?.to_string()),
    })
}

/// An unknown value among `known`: a suggestion when one is close, else the list.
fn unknown_name_rule(what: &str, got: &str, known: &[&str]) -> String {
    match suggest(got, known) {
        Some(k) => format!("unknown {what} \"{got}\"; did you mean \"{k}\"?"),
        None => format!("unknown {what} \"{got}\"; known: {}", known.join(", ")),
    }
}

/// A `plugin` reference of a section (`hot_score`, `metrics`, `user_profile`): the section's world
/// is checked when its module loads.
fn parse_plugin_ref(w: &mut Walker, section: Option<&Map<String, Value>>, path: &str) -> Option<PluginRef> {
    let obj = w.object(section, "plugin", path)?;
    w.known_fields(Some(obj), PLUGIN_FIELDS, path);
    let mut text = |key: &str, rule: &str, ok: &dyn Fn(&str) -> bool| -> Option<String> {
        match obj.get(key) {
            Some(Value::String(s)) if ok(s) => Some(s.clone()),
            None | Some(Value::Null) if key == "sha256" => None,
            _ => {
                w.err(&format!("{path}.{key}"), rule);
                None
            }
        }
    };
    let name = text("name", "is required and must match [a-z0-9_-]{1,64}", &|s| {
        (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    });
    let version = text("version", "is required and must be a version like 1.2.0 ([0-9A-Za-z.+-]{1,32})", &|s| {
        (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
    });
    let sha256 = text("sha256", "must be 64 lower-case hex digits", &|s| {
        s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    let params = obj.get("params").cloned().unwrap_or(Value::Object(Map::new()));
    if !params.is_object() {
        w.err(&format!("{path}.params"), "must be an object");
    }
    Some(PluginRef { name: name?, version: version?, sha256, params })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// Any JSON value, nested a few levels.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            ".{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Where a tenant's edit can land in a document.
    const PATHS: &[&[&str]] = &[
        &["revision"],
        &["status"],
        &["effective_from_window_end"],
        &["config"],
        &["config", "realtime_compute"],
        &["config", "realtime_compute", "hot_score"],
        &["config", "realtime_compute", "hot_score", "action_weights"],
        &["config", "realtime_compute", "hot_score", "action_weights", "click"],
        &["config", "realtime_compute", "hot_score", "decay_lambda"],
        &["config", "realtime_compute", "hot_score", "window_size_minutes"],
        &["config", "realtime_compute", "hot_score", "window_slide_minutes"],
        &["config", "realtime_compute", "hot_score", "top_n"],
        &["config", "realtime_compute", "hot_score", "plugin"],
        &["config", "realtime_compute", "hot_score", "features"],
        &["config", "realtime_compute", "user_profile"],
        &["config", "realtime_compute", "metrics", "metrics_to_calculate"],
        &["candidate"],
    ];

    fn set(doc: &mut Value, path: &[&str], v: Value) {
        let mut at = doc;
        for (i, key) in path.iter().enumerate() {
            if !at.is_object() {
                *at = json!({});
            }
            let obj = at.as_object_mut().expect("made an object");
            if i + 1 == path.len() {
                obj.insert((*key).to_string(), v);
                return;
            }
            at = obj.entry(*key).or_insert_with(|| json!({}));
        }
    }

    // Fuzzing by property: a hostile document never panics the validator, a refusal always
    // says where, and what it accepts is a usable config.
    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn any_document_is_accepted_usable_or_refused_with_a_path(
            edits in proptest::collection::vec((0..PATHS.len(), any_json()), 0..4),
            whole in proptest::option::weighted(0.1, any_json()),
        ) {
            let mut doc = whole.unwrap_or_else(|| json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": {}}}));
            for (p, v) in edits {
                set(&mut doc, PATHS[p], v);
            }
            match parse_scenario(&doc) {
                Ok(cfg) => {
                    let g = cfg.hot_score.window;
                    prop_assert!(g.slide_ms > 0 && g.size_ms >= g.slide_ms, "{g:?}");
                    prop_assert!(cfg.hot_score.top_n > 0 && cfg.hot_score.decay_lambda.is_finite());
                }
                Err(e) => prop_assert!(!e.errors.is_empty() && e.errors.iter().all(|f| !f.path.is_empty() && !f.rule.is_empty())),
            }
        }
    }

    #[test]
    fn minimal_document_takes_seed_defaults() {
        let cfg = parse_scenario(&json!({"tenant_id": "t1", "scenario_id": "home"})).unwrap();
        assert_eq!(cfg.status, ScenarioStatus::Active);
        assert_eq!(cfg.hot_score.window, WindowGeometry::from_minutes(60, 15));
        assert_eq!(cfg.hot_score.weight("purchase"), 10.0);
        assert_eq!(cfg.hot_score.top_n, 100);
        assert_eq!(cfg.hot_score.decay_lambda, 0.1);
        assert_eq!(cfg.user_profile.update_frequency_ms, 5 * 60_000);
        assert_eq!(cfg.metrics.metrics_to_calculate.len(), 3);
    }

    #[test]
    fn present_weight_map_is_taken_whole() {
        let doc =
            json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": {"hot_score": {"action_weights": {"click": 3}}}}});
        let cfg = parse_scenario(&doc).unwrap();
        assert_eq!(cfg.hot_score.weight("click"), 3.0);
        assert_eq!(cfg.hot_score.weight("view"), 0.0);
    }

    #[test]
    fn errors_name_path_and_rule() {
        let doc = json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": {"hot_score": {
            "decay_lambda": -1, "window_size_minutes": 60, "window_slide_minutes": 25,
            "action_weights": {"Click": 1, "view": "x"}}}}});
        let err = parse_scenario(&doc).unwrap_err();
        let paths: Vec<_> = err.errors.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"config.realtime_compute.hot_score.decay_lambda"), "{err}");
        assert!(paths.contains(&"config.realtime_compute.hot_score.window_size_minutes"), "{err}");
        assert!(paths.contains(&"config.realtime_compute.hot_score.action_weights.Click"), "{err}");
        assert!(paths.contains(&"config.realtime_compute.hot_score.action_weights.view"), "{err}");
        assert_eq!(err.scenario.as_deref(), Some("t/s"));
    }

    #[test]
    fn slide_larger_than_window_is_rejected() {
        let doc = json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": {"hot_score": {"window_size_minutes": 10, "window_slide_minutes": 20}}}});
        assert!(parse_scenario(&doc).unwrap_err().to_string().contains("must not exceed"));
    }

    #[test]
    fn metrics_per_item_and_plugin_are_checked() {
        let rc = |m: Value| json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": {"metrics": m}}});
        let cfg =
            parse_scenario(&rc(json!({"per_item": {"top_n": 5}, "plugin": {"name": "completion-rate", "version": "0.1.0"}}))).unwrap();
        assert_eq!(cfg.metrics.per_item, Some(PerItemMetrics { top_n: 5 }));
        assert_eq!(cfg.metrics.plugin.unwrap().label(), "completion-rate@0.1.0");
        let seed = parse_scenario(&rc(json!({}))).unwrap();
        assert_eq!((seed.metrics.per_item, seed.metrics.plugin), (None, None), "both off by default");
        let e = parse_scenario(&rc(json!({"per_item": {"top_n": 1001, "topn": 1}, "plugin": {"name": "X"}}))).unwrap_err();
        let paths: Vec<_> = e.errors.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"config.realtime_compute.metrics.per_item.top_n"), "{paths:?}");
        assert!(paths.contains(&"config.realtime_compute.metrics.per_item.topn"), "{paths:?}");
        assert!(paths.contains(&"config.realtime_compute.metrics.plugin.name"), "{paths:?}");
    }

    #[test]
    fn user_profile_plugin_is_checked() {
        let rc = |u: Value| json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": {"user_profile": u}}});
        let cfg =
            parse_scenario(&rc(json!({"plugin": {"name": "dwell-affinity", "version": "0.1.0", "params": {"min_dwell": 1}}}))).unwrap();
        let plugin = cfg.user_profile.plugin.unwrap();
        assert_eq!((plugin.label(), plugin.params), ("dwell-affinity@0.1.0".to_string(), json!({"min_dwell": 1})));
        assert_eq!(parse_scenario(&rc(json!({}))).unwrap().user_profile.plugin, None, "off by default");
        let e = parse_scenario(&rc(json!({"plugin": {"name": "X", "versoin": "1"}}))).unwrap_err();
        let paths: Vec<_> = e.errors.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"config.realtime_compute.user_profile.plugin.name"), "{paths:?}");
        assert!(paths.contains(&"config.realtime_compute.user_profile.plugin.versoin"), "{paths:?}");
    }

    #[test]
    fn plugin_reference_is_checked() {
        let doc = json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": {"hot_score": {"plugin": {"name": "decay-weighted", "version": "0.1.0", "sha256": "XYZ"}}}}});
        let err = parse_scenario(&doc).unwrap_err();
        assert_eq!(err.errors[0].path, "config.realtime_compute.hot_score.plugin.sha256");
        let ok = json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": {"hot_score": {"plugin": {"name": "decay-weighted", "version": "0.1.0", "params": {"a": 1}}}}}});
        let cfg = parse_scenario(&ok).unwrap();
        assert_eq!(cfg.hot_score.plugin.unwrap().label(), "decay-weighted@0.1.0");
    }

    #[test]
    fn candidate_is_validated_apart_from_the_live_config() {
        let doc = |cand: Value| {
            json!({"tenant_id": "t", "scenario_id": "s", "effective_from_window_end": 900_000,
            "config": {"realtime_compute": {"hot_score": {"action_weights": {"click": 2.0}}}}, "candidate": cand})
        };
        let cfg = parse_scenario(&doc(json!({"hot_score": {"action_weights": {"click": 4.0}, "decay_lambda": 0.5}}))).unwrap();
        assert_eq!(cfg.effective_from_window_end, Some(900_000));
        let Some(h) = cfg.candidate.as_ref().and_then(Candidate::hot_score) else { panic!("valid candidate expected") };
        assert_eq!((h.weight("click"), h.decay_lambda, h.top_n), (4.0, 0.5, 100));
        assert_eq!(cfg.hot_score.weight("click"), 2.0, "live untouched");

        let bad = parse_scenario(&doc(json!({"hot_score": {"decay_lambda": "fast"}}))).unwrap();
        assert!(matches!(&bad.candidate, Some(Candidate::Invalid(e)) if e.contains("candidate.hot_score.decay_lambda")), "{bad:?}");
        let geometry = parse_scenario(&doc(json!({"hot_score": {"window_slide_minutes": 5}}))).unwrap();
        assert!(matches!(&geometry.candidate, Some(Candidate::Invalid(e)) if e.contains("window")));
        let unknown = parse_scenario(&doc(json!({"weights": 1}))).unwrap();
        assert!(matches!(&unknown.candidate, Some(Candidate::Invalid(e)) if e.contains("candidate.weights")));
        assert!(parse_scenario(&json!({"tenant_id": "t", "scenario_id": "s", "effective_from_window_end": "soon"})).is_err());
    }

    #[test]
    fn a_candidate_may_shadow_the_metrics_and_profile_plugins_alone() {
        let doc = |cand: Value| json!({"tenant_id": "t", "scenario_id": "s", "candidate": cand});
        let r = |name: &str| json!({"plugin": {"name": name, "version": "1.0.0", "params": {"k": 1}}});
        let cfg = parse_scenario(&doc(json!({"metrics": r("completion-rate"), "user_profile": r("dwell-affinity")}))).unwrap();
        let Some(Candidate::Valid(c)) = &cfg.candidate else { panic!("valid candidate expected: {cfg:?}") };
        assert_eq!(c.hot_score, None, "hot score is not shadowed: nothing to score twice");
        assert_eq!(c.metrics_plugin.as_ref().map(PluginRef::label).as_deref(), Some("completion-rate@1.0.0"));
        assert_eq!(c.profile_plugin.as_ref().map(|p| p.params.clone()), Some(json!({"k": 1})));
        assert_eq!((cfg.metrics.plugin, cfg.user_profile.plugin), (None, None), "live untouched");

        let other = parse_scenario(&doc(json!({"metrics": {"plugin": r("x")["plugin"], "per_item": {"top_n": 5}}}))).unwrap();
        assert!(
            matches!(&other.candidate, Some(Candidate::Invalid(e)) if e.contains("candidate.metrics: must hold only a plugin")),
            "{other:?}"
        );
        let bad = parse_scenario(&doc(json!({"user_profile": {"plugin": {"name": "X", "version": "1"}}}))).unwrap();
        assert!(matches!(&bad.candidate, Some(Candidate::Invalid(e)) if e.contains("candidate.user_profile.plugin.name")), "{bad:?}");
        let typo = parse_scenario(&doc(json!({"metric": r("x")}))).unwrap();
        assert!(matches!(&typo.candidate, Some(Candidate::Invalid(e)) if e.contains("did you mean \"metrics\"")), "{typo:?}");
    }

    /// The one error of `doc`, as `path: rule`.
    fn only_error(doc: Value) -> String {
        let err = parse_scenario(&doc).unwrap_err();
        assert_eq!(err.errors.len(), 1, "{err}");
        err.errors[0].to_string()
    }

    #[test]
    fn misspelt_fields_are_refused_with_a_suggestion_at_every_level() {
        let rc = |v: Value| json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": v}});
        assert_eq!(
            only_error(rc(json!({"hot_score": {"decay_lamda": 0.5}}))),
            "config.realtime_compute.hot_score.decay_lamda: unknown field; did you mean \"decay_lambda\"?"
        );
        assert_eq!(only_error(rc(json!({"hot_scor": {}}))), "config.realtime_compute.hot_scor: unknown field; did you mean \"hot_score\"?");
        assert_eq!(
            only_error(rc(json!({"user_profile": {"behaviour_weights": {"view": 1}}}))),
            "config.realtime_compute.user_profile.behaviour_weights: unknown field; did you mean \"behavior_weights\"?"
        );
        assert_eq!(
            only_error(rc(json!({"metrics": {"window_size_minute": 5}}))),
            "config.realtime_compute.metrics.window_size_minute: unknown field; did you mean \"window_size_minutes\"?"
        );
        assert_eq!(
            only_error(rc(json!({"metrics": {"ctr": {"numerator": ["click"], "denominatr": ["impression"]}}}))),
            "config.realtime_compute.metrics.ctr.denominatr: unknown field; did you mean \"denominator\"?"
        );
        let known = json!({"tenant_id": "t", "scenario_id": "s", "dedicated": true,
            "config": {"realtime_compute": {"metrics": {"cvr": {"numerator": ["purchase"], "denominator": ["click"]}}}}});
        let checked = parse_scenario_checked(&known).unwrap();
        assert!(checked.config.dedicated && checked.warnings.is_empty());
        assert_eq!(
            only_error(rc(json!({"hot_score": {"plugin": {"name": "gravity", "version": "0.1.0", "param": {}}}}))),
            "config.realtime_compute.hot_score.plugin.param: unknown field; did you mean \"params\"?"
        );
        assert_eq!(
            only_error(json!({"tenant_id": "t", "scenario_id": "s", "revison": 3})),
            "revison: unknown field; did you mean \"revision\"?"
        );
        assert_eq!(
            only_error(json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compte": {}}})),
            "config.realtime_compte: unknown field; did you mean \"realtime_compute\"?"
        );
        // Nothing close: the rule lists the known names instead.
        let far = only_error(rc(json!({"metrics": {"colour": 1}})));
        assert!(far.contains("known fields here: enabled, window_size_minutes, metrics_to_calculate"), "{far}");
        let root = only_error(json!({"tenant_id": "t", "scenario_id": "s", "budget_code": "x"}));
        assert!(root.starts_with("budget_code: unknown field;") && root.contains("--foreign-field"), "{root}");
        // A misspelt candidate field makes the candidate (not the live config) invalid.
        let cand = parse_scenario(&json!({"tenant_id": "t", "scenario_id": "s", "candidate": {"hot_score": {"top_m": 5}}})).unwrap();
        assert!(
            matches!(&cand.candidate, Some(Candidate::Invalid(e)) if e.contains("candidate.hot_score.top_m: unknown field; did you mean \"top_n\"")),
            "{cand:?}"
        );
    }

    #[test]
    fn platform_fields_are_warnings_and_other_config_sections_are_left_alone() {
        let doc = json!({"_id": "x", "tenant_id": "t", "scenario_id": "s", "name": "Home", "owner": "team", "tags": ["a"],
            "team_budget": 3, "config": {"recall": {"k": 10}, "ranking": {}, "realtime_compute": {}}});
        assert!(parse_scenario_with(&doc, &[]).is_err(), "team_budget is not a platform field by default");
        let checked = parse_scenario_with(&doc, &["team_budget".into()]).unwrap();
        let paths: Vec<_> = checked.warnings.iter().map(|w| w.path.as_str()).collect();
        assert_eq!(paths, ["name", "owner", "tags", "team_budget"]);
        assert!(checked.warnings[0].rule.contains("platform field"));
        assert_eq!(parse_scenario(&json!({"tenant_id": "t", "scenario_id": "s", "owner": "team"})).unwrap().hot_score.top_n, 100);
    }

    #[test]
    fn the_replace_weights_marker_is_a_boolean_and_warned_about() {
        let doc = json!({"tenant_id": "t", "scenario_id": "s", "replace_weights": true});
        let checked = parse_scenario_checked(&doc).unwrap();
        assert_eq!(checked.warnings.len(), 1);
        assert!(checked.warnings[0].to_string().starts_with("replace_weights: set:"));
        assert!(
            parse_scenario_checked(&json!({"tenant_id": "t", "scenario_id": "s", "replace_weights": false})).unwrap().warnings.is_empty()
        );
        assert_eq!(
            only_error(json!({"tenant_id": "t", "scenario_id": "s", "replace_weights": "yes"})),
            "replace_weights: must be true or false"
        );
    }

    fn with_features(features: Value) -> Value {
        json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": {"hot_score": {"features": features}}}})
    }

    #[test]
    fn features_are_parsed_in_declaration_order() {
        let cfg = parse_scenario(&with_features(json!([
            {"name": "watch", "op": "sum", "field": "watch_time_ms", "actions": ["view", "view", "play"]},
            {"name": "viewers", "op": "distinct", "field": "user_id"},
            {"name": "peak", "op": "max", "field": "props.dur.s"},
            {"name": "cat", "op": "last", "field": "category"},
        ])))
        .unwrap();
        let f = &cfg.hot_score.features;
        assert_eq!(f.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["watch", "viewers", "peak", "cat"]);
        assert_eq!(f[0].actions.as_deref(), Some(&["view".to_string(), "play".to_string()][..]), "duplicates counted once");
        assert!(f[0].admits("play") && !f[0].admits("click") && f[1].admits("click"));
        assert_eq!(f[2].field, FeatureField::Prop("dur.s".into()));
        assert_eq!(f[3].op, FeatureOp::Last);
        assert!(parse_scenario(&json!({"tenant_id": "t", "scenario_id": "s"})).unwrap().hot_score.features.is_empty());
    }

    #[test]
    fn bad_features_are_refused_naming_the_entry() {
        let p = "config.realtime_compute.hot_score.features";
        assert_eq!(
            only_error(with_features(json!([{"name": "a", "op": "avg", "field": "watch_time_ms"}]))),
            format!("{p}[0].op: unknown op \"avg\"; known: sum, max, distinct, last")
        );
        assert_eq!(
            only_error(with_features(json!([{"name": "a", "op": "summ", "field": "watch_time_ms"}]))),
            format!("{p}[0].op: unknown op \"summ\"; did you mean \"sum\"?")
        );
        assert_eq!(
            only_error(with_features(json!([{"name": "a", "op": "sum", "field": "watch_time"}]))),
            format!("{p}[0].field: unknown field \"watch_time\"; did you mean \"watch_time_ms\"? (or props.<key>)")
        );
        assert_eq!(
            only_error(with_features(json!([{"name": "a", "op": "sum", "field": "props.a b"}]))),
            format!("{p}[0].field: a props key must be 1..=64 bytes of [A-Za-z0-9_.-]")
        );
        assert_eq!(
            only_error(with_features(json!([{"name": "a", "op": "sum", "field": "user_id"}]))),
            format!("{p}[0].field: `sum` reads a number: watch_time_ms or props.<key>, not user_id")
        );
        assert_eq!(
            only_error(with_features(json!([{"name": "a", "op": "distinct", "field": "watch_time_ms"}]))),
            format!("{p}[0].field: `distinct` reads a string: user_id, category or props.<key>, not watch_time_ms")
        );
        assert!(only_error(with_features(json!([{"name": "a", "op": "last", "field": "user_id"}]))).contains("`last` reads a string"));
        assert_eq!(
            only_error(with_features(json!([{"name": "a", "op": "max", "feild": "watch_time_ms", "field": "watch_time_ms"}]))),
            format!("{p}[0].feild: unknown field; did you mean \"field\"?")
        );
        assert_eq!(
            only_error(with_features(json!([
                {"name": "a", "op": "max", "field": "watch_time_ms"},
                {"name": "a", "op": "sum", "field": "watch_time_ms"}
            ]))),
            format!("{p}[1].name: duplicate feature name \"a\"")
        );
        assert_eq!(
            only_error(with_features(json!([{"name": "Watch", "op": "max", "field": "watch_time_ms"}]))),
            format!("{p}[0].name: is required and must match [a-z0-9_]{{1,32}}")
        );
        let nine: Vec<Value> = (0..9).map(|i| json!({"name": format!("f{i}"), "op": "max", "field": "watch_time_ms"})).collect();
        assert_eq!(only_error(with_features(Value::from(nine))), format!("{p}: at most 8 features, got 9"));
        assert_eq!(
            only_error(with_features(json!([{"name": "a", "op": "max", "field": "watch_time_ms", "actions": ["View"]}]))),
            format!("{p}[0].actions[0]: action names must match [a-z_]{{1,32}}")
        );
        assert!(
            only_error(with_features(json!([{"name": "a", "op": "max", "field": "watch_time_ms", "actions": []}]))).contains("1 to 32")
        );
        assert!(only_error(with_features(json!({"a": 1}))).contains("must be a list"));
        assert!(only_error(with_features(json!([3]))).contains("must be an object"));
        assert!(
            only_error(with_features(json!([{"name": "a", "field": "category"}])))
                .ends_with("op: is required: one of sum, max, distinct, last")
        );
        assert_eq!(
            only_error(json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": {"hot_score": {"featurs": []}}}})),
            "config.realtime_compute.hot_score.featurs: unknown field; did you mean \"features\"?"
        );
    }

    #[test]
    fn a_candidate_keeps_the_live_features() {
        let mut doc = with_features(json!([{"name": "a", "op": "max", "field": "watch_time_ms"}]));
        doc["candidate"] = json!({"hot_score": {"decay_lambda": 0.5}});
        assert!(matches!(parse_scenario(&doc).unwrap().candidate, Some(Candidate::Valid(_))));
        doc["candidate"] = json!({"hot_score": {"features": []}});
        let cfg = parse_scenario(&doc).unwrap();
        assert!(matches!(&cfg.candidate, Some(Candidate::Invalid(e)) if e.contains("keep the live features")), "{cfg:?}");
    }

    #[test]
    fn bad_ids_and_metric_names() {
        let doc = json!({"tenant_id": "bad id", "scenario_id": 3, "config": {"realtime_compute": {"metrics": {"metrics_to_calculate": ["ctr", "ndcg"]}}}});
        let err = parse_scenario(&doc).unwrap_err();
        assert_eq!(err.errors.len(), 3, "{err}");
    }
}
