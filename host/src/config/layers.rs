//! Config layers: defaults shared by many scenarios, so changing a default for 300 scenarios is
//! one edit. A scenario's document is resolved as
//!
//! ```text
//! builtin defaults (config::validate) < platform < tenant < type:<scenario_type> < scenario
//! ```
//!
//! the layers' `config.realtime_compute` subtrees deep-merged in that order (`edit::deep_merge`:
//! objects key by key, other values replace, `null` removes), then the scenario document over
//! them; `parse_scenario` validates the result. Type layers belong to a tenant: `(tenant_id,
//! scenario_type)`, so one tenant's type defaults never reach another tenant's scenarios.
//!
//! Pure: the registry keeps the layers and each scenario's raw document here ([`Layered`]),
//! stores read and write layer documents (`config::layer_store`), and [`provenance`] says which
//! layer each resolved value came from.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::edit::deep_merge;
use super::validate::is_valid_id;
use super::{ConfigChange, FieldError, ScenarioConfig, ScenarioKey, parse_scenario};

/// Provenance of a value no layer and no scenario set.
pub const BUILTIN: &str = "builtin default";
/// Provenance of a value the scenario document set.
pub const SCENARIO: &str = "scenario";

/// Top-level fields a layer document may carry: its ids, its revision bookkeeping and the
/// `config.realtime_compute` subtree it sets.
const LAYER_FIELDS: [&str; 7] = ["layer", "tenant_id", "scenario_type", "revision", "updated_at", "effective_from_window_end", "config"];
const SECTIONS: [&str; 3] = ["hot_score", "user_profile", "metrics"];

/// Which defaults a layer document holds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LayerId {
    /// Every scenario of every tenant (written with the admin token).
    Platform,
    /// Every scenario of one tenant.
    Tenant(String),
    /// The scenarios of one tenant whose `scenario_type` is this.
    Type { tenant: String, scenario_type: String },
}

impl LayerId {
    /// The store key: `platform`, `tenant:<t>`, `type:<t>:<scenario_type>`.
    pub fn key(&self) -> String {
        match self {
            LayerId::Platform => "platform".into(),
            LayerId::Tenant(t) => format!("tenant:{t}"),
            LayerId::Type { tenant, scenario_type } => format!("type:{tenant}:{scenario_type}"),
        }
    }

    /// The provenance label of its values: `platform`, `tenant`, `type:<scenario_type>`.
    pub fn source(&self) -> String {
        match self {
            LayerId::Platform => "platform".into(),
            LayerId::Tenant(_) => "tenant".into(),
            LayerId::Type { scenario_type, .. } => format!("type:{scenario_type}"),
        }
    }

    /// The tenant whose layer this is (`None`: the platform's).
    pub fn tenant(&self) -> Option<&str> {
        match self {
            LayerId::Platform => None,
            LayerId::Tenant(t) | LayerId::Type { tenant: t, .. } => Some(t),
        }
    }

    /// Lower layers first: the merge order.
    fn rank(&self) -> u8 {
        match self {
            LayerId::Platform => 0,
            LayerId::Tenant(_) => 1,
            LayerId::Type { .. } => 2,
        }
    }

    /// Whether this layer applies to a scenario of `tenant` with `scenario_type`.
    pub fn covers(&self, tenant: &str, scenario_type: Option<&str>) -> bool {
        match self {
            LayerId::Platform => true,
            LayerId::Tenant(t) => t == tenant,
            LayerId::Type { tenant: t, scenario_type: x } => t == tenant && scenario_type == Some(x.as_str()),
        }
    }

    /// The layer a tenant or an operator names: ids checked (`[A-Za-z0-9_-]{1,64}`).
    pub fn new(tenant: Option<&str>, scenario_type: Option<&str>) -> Result<LayerId, FieldError> {
        let check = |field: &str, v: &str| {
            if is_valid_id(v) { Ok(v.to_string()) } else { Err(field_error(field, "must match [A-Za-z0-9_-]{1,64}")) }
        };
        match (tenant, scenario_type) {
            (None, None) => Ok(LayerId::Platform),
            (Some(t), None) => Ok(LayerId::Tenant(check("tenant_id", t)?)),
            (Some(t), Some(x)) => Ok(LayerId::Type { tenant: check("tenant_id", t)?, scenario_type: check("scenario_type", x)? }),
            (None, Some(_)) => Err(field_error("tenant_id", "a scenario_type layer belongs to a tenant: name the tenant")),
        }
    }

    /// The id fields of its documents (`layer`, and `tenant_id` / `scenario_type`).
    pub fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let kind = match self {
            LayerId::Platform => "platform",
            LayerId::Tenant(_) => "tenant",
            LayerId::Type { .. } => "type",
        };
        m.insert("layer".into(), kind.into());
        if let Some(t) = self.tenant() {
            m.insert("tenant_id".into(), t.into());
        }
        if let LayerId::Type { scenario_type, .. } = self {
            m.insert("scenario_type".into(), scenario_type.as_str().into());
        }
        m
    }

    /// An empty layer (sets nothing) at revision 0: what a layer never written reads as.
    pub fn empty_document(&self) -> Value {
        let mut m = self.fields();
        m.insert("revision".into(), 0.into());
        m.insert("config".into(), json!({"realtime_compute": {}}));
        Value::Object(m)
    }
}

impl std::fmt::Display for LayerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayerId::Platform => write!(f, "platform defaults"),
            LayerId::Tenant(t) => write!(f, "tenant {t} defaults"),
            LayerId::Type { tenant, scenario_type } => write!(f, "tenant {tenant} scenario_type {scenario_type} defaults"),
        }
    }
}

fn field_error(path: &str, rule: impl Into<String>) -> FieldError {
    FieldError { path: path.into(), rule: rule.into() }
}

/// A layer document that was refused, with every rule it broke (field paths from its root).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid defaults layer{}: {}", .layer.as_ref().map(|l| format!(" {l}")).unwrap_or_default(), .errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
pub struct LayerError {
    /// The layer's key when its ids were readable.
    pub layer: Option<String>,
    pub errors: Vec<FieldError>,
}

fn id_field(doc: &Map<String, Value>, field: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    match doc.get(field) {
        Some(Value::String(s)) if is_valid_id(s) => Some(s.clone()),
        None | Some(Value::Null) => {
            errors.push(field_error(field, "is required for this layer"));
            None
        }
        Some(_) => {
            errors.push(field_error(field, "must match [A-Za-z0-9_-]{1,64}"));
            None
        }
    }
}

/// Validates a layer document on its own: its ids, that it sets nothing but
/// `config.realtime_compute.{hot_score,user_profile,metrics}` (no plugin reference: those stay
/// in scenario documents, pinned to a tenant's namespace), and that its values pass the
/// scenario rules (over the builtin defaults). Whether it keeps every covered scenario valid
/// is [`check_covered`]'s question.
pub fn parse_layer(doc: &Value) -> Result<LayerId, LayerError> {
    let Some(obj) = doc.as_object() else {
        return Err(LayerError { layer: None, errors: vec![field_error("$", "a defaults layer document must be a JSON object")] });
    };
    let mut errors = Vec::new();
    let id = match obj.get("layer").and_then(Value::as_str) {
        Some("platform") => {
            for f in ["tenant_id", "scenario_type"] {
                if obj.get(f).is_some_and(|v| !v.is_null()) {
                    errors.push(field_error(f, "the platform layer has none"));
                }
            }
            Some(LayerId::Platform)
        }
        Some("tenant") => {
            if obj.get("scenario_type").is_some_and(|v| !v.is_null()) {
                errors.push(field_error("scenario_type", "a tenant layer has none (layer \"type\" is per scenario_type)"));
            }
            id_field(obj, "tenant_id", &mut errors).map(LayerId::Tenant)
        }
        Some("type") => match (id_field(obj, "tenant_id", &mut errors), id_field(obj, "scenario_type", &mut errors)) {
            (Some(tenant), Some(scenario_type)) => Some(LayerId::Type { tenant, scenario_type }),
            _ => None,
        },
        _ => {
            errors.push(field_error("layer", "must be \"platform\", \"tenant\" or \"type\""));
            None
        }
    };
    for k in obj.keys().filter(|k| !LAYER_FIELDS.contains(&k.as_str())) {
        errors.push(field_error(k, "unknown field; a layer document holds its ids, revision and config.realtime_compute"));
    }
    for (f, must) in [("revision", "an integer >= 0"), ("effective_from_window_end", "an epoch-ms integer >= 0")] {
        if obj.get(f).is_some_and(|v| !v.is_null() && v.as_i64().is_none_or(|n| n < 0)) {
            errors.push(field_error(f, format!("must be {must}")));
        }
    }
    let config = obj.get("config").filter(|c| !c.is_null());
    match config {
        None => {}
        Some(Value::Object(c)) => {
            for k in c.keys().filter(|k| *k != "realtime_compute") {
                errors.push(field_error(&format!("config.{k}"), "unknown field; a layer sets config.realtime_compute only"));
            }
            match c.get("realtime_compute") {
                None | Some(Value::Null) => {}
                Some(Value::Object(rc)) => {
                    for k in rc.keys().filter(|k| !SECTIONS.contains(&k.as_str())) {
                        errors.push(field_error(
                            &format!("config.realtime_compute.{k}"),
                            "unknown section; known: hot_score, user_profile, metrics",
                        ));
                    }
                    for section in ["hot_score", "user_profile", "metrics"] {
                        if rc.get(section).and_then(|h| h.get("plugin")).is_some_and(|p| !p.is_null()) {
                            errors.push(field_error(
                                &format!("config.realtime_compute.{section}.plugin"),
                                "plugin references belong in scenario documents, not in defaults layers",
                            ));
                        }
                    }
                }
                Some(_) => errors.push(field_error("config.realtime_compute", "must be an object")),
            }
        }
        Some(_) => errors.push(field_error("config", "must be an object")),
    }
    // The values themselves: the scenario rules, over the builtin defaults.
    let mut probe = json!({"tenant_id": "layer", "scenario_id": "layer"});
    if let Some(c) = config {
        probe["config"] = c.clone();
    }
    if let Err(e) = parse_scenario(&probe) {
        errors.extend(e.errors);
    }
    match (id, errors.is_empty()) {
        (Some(id), true) => Ok(id),
        (id, _) => Err(LayerError { layer: id.map(|i| i.key()), errors }),
    }
}

/// The layers that cover a scenario of `tenant` with `scenario_type`, lowest first.
fn covering<'a>(layers: &'a BTreeMap<LayerId, Value>, tenant: &str, scenario_type: Option<&str>) -> Vec<(&'a LayerId, &'a Value)> {
    let mut v: Vec<_> = layers.iter().filter(|(id, _)| id.covers(tenant, scenario_type)).collect();
    v.sort_by_key(|(id, _)| id.rank());
    v
}

fn scenario_ids(doc: &Value) -> Option<(&str, Option<&str>)> {
    Some((doc.get("tenant_id")?.as_str()?, doc.get("scenario_type").and_then(Value::as_str)))
}

fn updated_at(doc: &Value) -> i64 {
    doc.get("updated_at").and_then(Value::as_i64).unwrap_or(0)
}

/// The scenario document resolved over `layers` (every stored layer; the covering ones are
/// picked here): its `config` is the layers' configs deep-merged in order, then its own. The
/// latest-written of the scenario and its layers decides when the result takes effect: a layer
/// written last lends the result its `effective_from_window_end` and `updated_at`, so a layer
/// change switches at the event time its writer chose, like a scenario change. With no layer
/// covering it, the document is returned as it is.
pub fn resolve(layers: &BTreeMap<LayerId, Value>, doc: &Value) -> Value {
    let Some((tenant, scenario_type)) = scenario_ids(doc) else { return doc.clone() };
    let cover = covering(layers, tenant, scenario_type);
    if cover.is_empty() {
        return doc.clone();
    }
    let mut config = json!({});
    for (_, layer) in &cover {
        if let Some(c) = layer.get("config").filter(|c| !c.is_null()) {
            deep_merge(&mut config, c);
        }
    }
    if let Some(c) = doc.get("config").filter(|c| !c.is_null()) {
        deep_merge(&mut config, c);
    }
    let mut out = doc.clone();
    out["config"] = config;
    // Ties go to the more specific document (the scenario, then the higher layer).
    let latest = cover.iter().rev().map(|(_, l)| *l).filter(|l| updated_at(l) > updated_at(doc)).max_by_key(|l| updated_at(l));
    if let (Some(layer), Value::Object(m)) = (latest, &mut out) {
        match layer.get("effective_from_window_end").filter(|e| !e.is_null()) {
            Some(e) => m.insert("effective_from_window_end".into(), e.clone()),
            None => m.remove("effective_from_window_end"),
        };
        m.insert("updated_at".into(), updated_at(layer).into());
    }
    out
}

/// The `config.realtime_compute` a validated config puts in force, every default filled in,
/// in the document's spelling (minutes, metric names).
pub fn effective_realtime_compute(cfg: &ScenarioConfig) -> Value {
    let h = &cfg.hot_score;
    let mut hot = json!({"enabled": h.enabled, "action_weights": h.action_weights, "decay_lambda": h.decay_lambda,
        "window_size_minutes": h.window.size_ms / 60_000, "window_slide_minutes": h.window.slide_ms / 60_000, "top_n": h.top_n});
    if let Some(p) = &h.plugin {
        hot["plugin"] = serde_json::to_value(p).unwrap_or(Value::Null);
    }
    if !h.features.is_empty() {
        hot["features"] = h.features.iter().map(|f| f.to_document()).collect();
    }
    let u = &cfg.user_profile;
    let m = &cfg.metrics;
    let mut user_profile = json!({"enabled": u.enabled, "update_frequency_minutes": u.update_frequency_ms / 60_000,
        "interest_decay_days": u.interest_decay_days, "behavior_weights": u.behavior_weights});
    if let Some(p) = &u.plugin {
        user_profile["plugin"] = serde_json::to_value(p).unwrap_or(Value::Null);
    }
    let mut metrics = json!({"enabled": m.enabled, "window_size_minutes": m.window_size_ms / 60_000,
        "metrics_to_calculate": m.metrics_to_calculate});
    if let Some(p) = m.per_item {
        metrics["per_item"] = json!({"top_n": p.top_n});
    }
    if let Some(p) = &m.plugin {
        metrics["plugin"] = serde_json::to_value(p).unwrap_or(Value::Null);
    }
    json!({
        "hot_score": hot,
        "user_profile": user_profile,
        "metrics": metrics,
    })
}

fn at_path<'v>(v: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(v, |at, k| at.as_object()?.get(*k)).filter(|v| !v.is_null())
}

/// Dotted paths (under `realtime_compute`) of the leaves of `v`: scalars, arrays and empty
/// objects.
fn leaves(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                prefix.push(k.clone());
                leaves(child, prefix, out);
                prefix.pop();
            }
        }
        _ => out.push(prefix.clone()),
    }
}

/// For each leaf of the resolved `config.realtime_compute` (`effective`, from
/// [`effective_realtime_compute`]), the layer it came from: [`BUILTIN`], `platform`, `tenant`,
/// `type:<t>` or [`SCENARIO`]. A value comes from the last document in merge order that sets
/// it, if it survived the merge (a later `null` returns it to the builtin default).
pub fn provenance(layers: &BTreeMap<LayerId, Value>, doc: &Value, effective: &Value) -> BTreeMap<String, String> {
    let (tenant, scenario_type) = scenario_ids(doc).unwrap_or(("", None));
    let rc = |d: &Value| d.get("config").and_then(|c| c.get("realtime_compute")).cloned().unwrap_or(Value::Null);
    let mut sources: Vec<(String, Value)> =
        covering(layers, tenant, scenario_type).into_iter().map(|(id, l)| (id.source(), rc(l))).collect();
    sources.push((SCENARIO.to_string(), rc(doc)));
    let resolved = rc(&resolve(layers, doc));
    let mut paths = Vec::new();
    leaves(effective, &mut Vec::new(), &mut paths);
    paths
        .into_iter()
        .map(|p| {
            let path: Vec<&str> = p.iter().map(String::as_str).collect();
            let source = match at_path(&resolved, &path) {
                Some(_) => sources.iter().rev().find(|(_, s)| at_path(s, &path).is_some()).map_or(BUILTIN.to_string(), |(l, _)| l.clone()),
                None => BUILTIN.to_string(),
            };
            (p.join("."), source)
        })
        .collect()
}

/// `(source, layer key, revision)` of each layer covering the scenario, lowest first.
pub fn covering_layers(layers: &BTreeMap<LayerId, Value>, doc: &Value) -> Vec<(String, String, i64)> {
    let (tenant, scenario_type) = scenario_ids(doc).unwrap_or(("", None));
    covering(layers, tenant, scenario_type)
        .into_iter()
        .map(|(id, l)| (id.source(), id.key(), l.get("revision").and_then(Value::as_i64).unwrap_or(0)))
        .collect()
}

/// The scenarios (`(document, origin)`) a new version of a layer would make invalid while they
/// are valid now: the layer is refused naming the first of them. `current` holds the layers in
/// force, `next` the layer's new document (`None`: removed).
pub fn check_covered<'a>(
    current: &BTreeMap<LayerId, Value>,
    id: &LayerId,
    next: Option<&Value>,
    scenarios: impl IntoIterator<Item = &'a Value>,
) -> Result<(), LayerError> {
    let mut with = current.clone();
    match next {
        Some(doc) => with.insert(id.clone(), doc.clone()),
        None => with.remove(id),
    };
    for doc in scenarios {
        let Some((tenant, scenario_type)) = scenario_ids(doc) else { continue };
        if !id.covers(tenant, scenario_type) || parse_scenario(&resolve(current, doc)).is_err() {
            continue;
        }
        if let Err(e) = parse_scenario(&resolve(&with, doc)) {
            let scenario = e.scenario.clone().unwrap_or_default();
            return Err(LayerError {
                layer: Some(id.key()),
                errors: e
                    .errors
                    .into_iter()
                    .map(|f| FieldError { path: f.path, rule: format!("{} (would make scenario {scenario} invalid)", f.rule) })
                    .collect(),
            });
        }
    }
    Ok(())
}

/// The next version of a stored scenario document, as `edit::next_revision` makes it
/// (`revision` one above the stored one, `updated_at` now), validated resolved over `layers`
/// as the hosts will validate it: a document that relies on a layer's value is accepted, one
/// that a layer makes invalid is refused. Returns the raw document to store and its resolved
/// config.
pub fn next_revision_over(
    layers: &BTreeMap<LayerId, Value>,
    stored: Option<&Value>,
    mut candidate: Value,
    now_ms: i64,
) -> Result<(Value, super::Checked), super::ConfigError> {
    let previous = stored.and_then(|d| d.get("revision")).and_then(Value::as_i64).unwrap_or(0);
    if let Value::Object(m) = &mut candidate {
        m.insert("revision".into(), Value::from(previous + 1));
        m.insert("updated_at".into(), Value::from(now_ms));
    }
    super::parse_scenario_checked(&resolve(layers, &candidate))?;
    // Weight maps are compared document to document: what the writer wrote against what was
    // stored (the layers under both are the same).
    super::weights_guard::guard_write(stored, &mut candidate)?;
    // Parsed again: the guard may have removed an unneeded marker (and its warning).
    let mut checked = super::parse_scenario_checked(&resolve(layers, &candidate))?;
    checked.warnings = super::edit::write_warnings(stored, &candidate);
    Ok((candidate, checked))
}

/// What the registry keeps for layering: the layers in force (each its last valid version) and
/// every scenario's raw document, re-resolved when a layer covering it changes.
#[derive(Debug, Default)]
pub struct Layered {
    layers: BTreeMap<LayerId, Value>,
    raw: BTreeMap<ScenarioKey, (Value, String)>,
    /// The last refused document of each layer: a poll re-reading it is not reported again.
    refused: BTreeMap<LayerId, Value>,
}

/// A layer document the host refused; the last valid version of the layer stays in force.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerRefusal {
    pub origin: String,
    pub error: String,
}

impl Layered {
    pub fn layers(&self) -> &BTreeMap<LayerId, Value> {
        &self.layers
    }

    /// Keeps `doc` as the scenario's raw document and returns it resolved over the layers.
    pub fn remember(&mut self, doc: &Value, origin: &str) -> Value {
        if let (Some(t), Some(s)) = (doc.get("tenant_id").and_then(Value::as_str), doc.get("scenario_id").and_then(Value::as_str))
            && is_valid_id(t)
            && is_valid_id(s)
        {
            self.raw.insert(ScenarioKey::new(t, s), (doc.clone(), origin.to_string()));
        }
        resolve(&self.layers, doc)
    }

    pub fn forget(&mut self, key: &ScenarioKey) {
        self.raw.remove(key);
    }

    /// Takes layer documents (`full`: every stored one, so layers not among them are gone).
    /// Returns the raw documents of the scenarios to apply again (those a changed layer covers)
    /// and the refused layer documents. A layer that is invalid on its own, or would make a
    /// covered scenario invalid, is refused and its last valid version stays in force.
    pub fn update(&mut self, docs: &[(Value, String)], full: bool) -> (Vec<(Value, String)>, Vec<LayerRefusal>) {
        let mut changed: BTreeSet<LayerId> = BTreeSet::new();
        let mut refusals = Vec::new();
        let mut seen: BTreeSet<LayerId> = BTreeSet::new();
        let mut all_ids_known = true;
        for (doc, origin) in docs {
            let id = match parse_layer(doc) {
                Ok(id) => id,
                Err(e) => {
                    let id = e.layer.as_ref().and_then(|_| layer_id_of(doc));
                    match &id {
                        Some(id) => {
                            seen.insert(id.clone());
                            if self.refused.get(id) == Some(doc) {
                                continue;
                            }
                            self.refused.insert(id.clone(), doc.clone());
                        }
                        None => all_ids_known = false,
                    }
                    refusals.push(LayerRefusal { origin: origin.clone(), error: e.to_string() });
                    continue;
                }
            };
            seen.insert(id.clone());
            if self.layers.get(&id) == Some(doc) || self.refused.get(&id) == Some(doc) {
                continue;
            }
            match check_covered(&self.layers, &id, Some(doc), self.raw.values().map(|(d, _)| d)) {
                Ok(()) => {
                    self.refused.remove(&id);
                    self.layers.insert(id.clone(), doc.clone());
                    changed.insert(id);
                }
                Err(e) => {
                    self.refused.insert(id, doc.clone());
                    refusals.push(LayerRefusal { origin: origin.clone(), error: e.to_string() });
                }
            }
        }
        // A full read without a layer means it was deleted; unless some document's ids were
        // unreadable (it might be that layer).
        if full && all_ids_known {
            let gone: Vec<LayerId> = self.layers.keys().filter(|id| !seen.contains(*id)).cloned().collect();
            for id in gone {
                self.layers.remove(&id);
                changed.insert(id);
            }
            self.refused.retain(|id, _| seen.contains(id));
        }
        let again = self
            .raw
            .values()
            .filter(|(d, _)| scenario_ids(d).is_some_and(|(t, x)| changed.iter().any(|id| id.covers(t, x))))
            .cloned()
            .collect();
        (again, refusals)
    }
}

/// The layer a document names, even when the document is otherwise invalid.
fn layer_id_of(doc: &Value) -> Option<LayerId> {
    let s = |f: &str| doc.get(f).and_then(Value::as_str);
    match s("layer")? {
        "platform" => Some(LayerId::Platform),
        "tenant" => LayerId::new(s("tenant_id"), None).ok(),
        "type" => LayerId::new(s("tenant_id"), Some(s("scenario_type")?)).ok(),
        _ => None,
    }
}

/// Registry side of a layer update: the scenario changes it caused, and the refusals.
#[derive(Debug, Default)]
pub struct LayerUpdate {
    pub changes: Vec<ConfigChange>,
    pub refused: Vec<LayerRefusal>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(id: &LayerId, rev: i64, updated: i64, rc: Value) -> Value {
        let mut m = id.fields();
        m.insert("revision".into(), rev.into());
        m.insert("updated_at".into(), updated.into());
        m.insert("config".into(), json!({"realtime_compute": rc}));
        Value::Object(m)
    }

    fn ty(t: &str, x: &str) -> LayerId {
        LayerId::Type { tenant: t.into(), scenario_type: x.into() }
    }

    fn set() -> BTreeMap<LayerId, Value> {
        let mut layers = BTreeMap::new();
        let p = LayerId::Platform;
        layers.insert(
            p.clone(),
            layer(&p, 1, 10, json!({"hot_score": {"decay_lambda": 0.2, "top_n": 50, "action_weights": {"view": 1, "click": 2}}})),
        );
        let t = LayerId::Tenant("t".into());
        layers.insert(t.clone(), layer(&t, 1, 20, json!({"hot_score": {"decay_lambda": 0.3, "action_weights": {"click": 4}}})));
        layers.insert(
            ty("t", "feed"),
            layer(&ty("t", "feed"), 1, 30, json!({"hot_score": {"top_n": 20}, "metrics": {"window_size_minutes": 10}})),
        );
        // Another tenant's type layer of the same name never applies to t.
        layers.insert(ty("u", "feed"), layer(&ty("u", "feed"), 1, 40, json!({"hot_score": {"top_n": 7}})));
        layers
    }

    #[test]
    fn layers_merge_in_order_and_the_scenario_wins() {
        let layers = set();
        let doc = json!({"tenant_id": "t", "scenario_id": "s", "scenario_type": "feed", "updated_at": 100,
            "config": {"realtime_compute": {"hot_score": {"action_weights": {"purchase": 9}}}}});
        let cfg = parse_scenario(&resolve(&layers, &doc)).unwrap();
        assert_eq!(cfg.hot_score.decay_lambda, 0.3, "tenant over platform");
        assert_eq!(cfg.hot_score.top_n, 20, "type over platform");
        assert_eq!(cfg.metrics.window_size_ms, 10 * 60_000);
        // Maps merge key by key across layers.
        assert_eq!(
            (cfg.hot_score.weight("view"), cfg.hot_score.weight("click"), cfg.hot_score.weight("purchase"), cfg.hot_score.weight("like")),
            (1.0, 4.0, 9.0, 0.0)
        );
        // Other tenant, other type: platform only; no layer at all: the document as it is.
        let other = parse_scenario(&resolve(&layers, &json!({"tenant_id": "v", "scenario_id": "s", "scenario_type": "feed"}))).unwrap();
        assert_eq!((other.hot_score.decay_lambda, other.hot_score.top_n), (0.2, 50));
        let bare = json!({"tenant_id": "t", "scenario_id": "s", "revision": 3});
        assert_eq!(resolve(&BTreeMap::new(), &bare), bare);
        // A null in the scenario returns the value to the builtin default.
        let reset = json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": {"hot_score": {"decay_lambda": null}}}});
        assert_eq!(parse_scenario(&resolve(&layers, &reset)).unwrap().hot_score.decay_lambda, 0.1);
    }

    #[test]
    fn provenance_names_the_layer_of_every_value() {
        let layers = set();
        let doc = json!({"tenant_id": "t", "scenario_id": "s", "scenario_type": "feed",
            "config": {"realtime_compute": {"hot_score": {"action_weights": {"purchase": 9}, "window_size_minutes": 30}, "user_profile": {"interest_decay_days": null}}}});
        let cfg = parse_scenario(&resolve(&layers, &doc)).unwrap();
        let effective = effective_realtime_compute(&cfg);
        let p = provenance(&layers, &doc, &effective);
        let at = |k: &str| p.get(k).map(String::as_str).unwrap_or("missing");
        assert_eq!(at("hot_score.decay_lambda"), "tenant");
        assert_eq!(at("hot_score.top_n"), "type:feed");
        assert_eq!(at("hot_score.action_weights.view"), "platform");
        assert_eq!(at("hot_score.action_weights.click"), "tenant");
        assert_eq!(at("hot_score.action_weights.purchase"), "scenario");
        assert_eq!(at("hot_score.window_size_minutes"), "scenario");
        assert_eq!(at("hot_score.window_slide_minutes"), BUILTIN);
        assert_eq!(at("metrics.window_size_minutes"), "type:feed");
        assert_eq!(at("user_profile.interest_decay_days"), BUILTIN);
        assert_eq!(at("user_profile.behavior_weights.view"), BUILTIN);
        assert_eq!(effective["hot_score"]["window_size_minutes"], 30);
        assert!(!p.contains_key("hot_score.action_weights.impression"), "a map set by a layer replaces the builtin map");
    }

    #[test]
    fn the_latest_written_document_decides_the_effective_time() {
        let p = LayerId::Platform;
        let mut layers = BTreeMap::new();
        let mut l = layer(&p, 2, 500, json!({"hot_score": {"decay_lambda": 0.4}}));
        l["effective_from_window_end"] = 900_000.into();
        layers.insert(p.clone(), l);
        let older = json!({"tenant_id": "t", "scenario_id": "s", "updated_at": 100, "effective_from_window_end": 300_000});
        let r = resolve(&layers, &older);
        assert_eq!((r["effective_from_window_end"].as_i64(), r["updated_at"].as_i64()), (Some(900_000), Some(500)));
        let newer = json!({"tenant_id": "t", "scenario_id": "s", "updated_at": 600});
        let r = resolve(&layers, &newer);
        assert!(r.get("effective_from_window_end").is_none() && r["updated_at"] == 600);
    }

    #[test]
    fn scenario_writes_are_validated_over_their_layers() {
        let p = LayerId::Platform;
        let layers = BTreeMap::from([(p.clone(), layer(&p, 1, 0, json!({"hot_score": {"window_size_minutes": 120}})))]);
        // A 40-minute slide divides the platform's 120-minute window, not the builtin 60.
        let doc =
            json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": {"hot_score": {"window_slide_minutes": 40}}}});
        assert!(parse_scenario(&doc).is_err());
        let (stored, checked) = next_revision_over(&layers, Some(&json!({"revision": 4})), doc.clone(), 99).unwrap();
        let cfg = checked.config;
        assert_eq!((stored["revision"].as_i64(), cfg.hot_score.window.size_ms), (Some(5), 120 * 60_000));
        assert!(stored["config"]["realtime_compute"]["hot_score"].get("window_size_minutes").is_none(), "the raw document is stored");
        let bad =
            json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": {"hot_score": {"window_slide_minutes": 50}}}});
        assert!(next_revision_over(&layers, None, bad, 0).is_err());
    }

    #[test]
    fn layer_documents_are_validated_on_their_own() {
        assert_eq!(parse_layer(&layer(&ty("t", "feed"), 1, 0, json!({"hot_score": {"top_n": 5}}))).unwrap(), ty("t", "feed"));
        let paths = |doc: Value| parse_layer(&doc).unwrap_err().errors.into_iter().map(|e| e.path).collect::<Vec<_>>();
        assert_eq!(
            paths(json!({"layer": "platform", "config": {"realtime_compute": {"hot_score": {"decay_lambda": "fast"}}}})),
            ["config.realtime_compute.hot_score.decay_lambda"]
        );
        assert_eq!(paths(json!({"layer": "tenant"})), ["tenant_id"]);
        assert_eq!(paths(json!({"layer": "type", "tenant_id": "t"})), ["scenario_type"]);
        assert_eq!(paths(json!({"layer": "everyone"})), ["layer"]);
        assert_eq!(paths(json!({"layer": "platform", "status": "inactive", "candidate": {}})).len(), 2);
        assert_eq!(
            paths(json!({"layer": "platform", "config": {"realtime_compute": {"hot_score": {"plugin": {"name": "x", "version": "1"}}}}})),
            ["config.realtime_compute.hot_score.plugin"]
        );
        assert_eq!(
            paths(
                json!({"layer": "platform", "config": {"realtime_compute": {"user_profile": {"plugin": {"name": "x", "version": "1"}}}}})
            ),
            ["config.realtime_compute.user_profile.plugin"]
        );
        assert!(LayerId::new(None, Some("feed")).is_err() && LayerId::new(Some("../x"), None).is_err());
    }

    #[test]
    fn a_change_reaches_covered_scenarios_and_an_invalid_layer_keeps_the_last_valid() {
        let mut l = Layered::default();
        l.remember(&json!({"tenant_id": "t", "scenario_id": "a"}), "a.json");
        l.remember(
            &json!({"tenant_id": "t", "scenario_id": "b", "config": {"realtime_compute": {"hot_score": {"window_slide_minutes": 20}}}}),
            "b.json",
        );
        l.remember(&json!({"tenant_id": "u", "scenario_id": "c"}), "c.json");
        let t = LayerId::Tenant("t".into());
        let v1 = layer(&t, 1, 10, json!({"hot_score": {"window_size_minutes": 120}}));
        let (again, refused) = l.update(&[(v1.clone(), "mongodb".into())], false);
        assert!(refused.is_empty(), "{refused:?}");
        let mut names: Vec<_> = again.iter().map(|(d, _)| d["scenario_id"].as_str().unwrap().to_string()).collect();
        names.sort();
        assert_eq!(names, ["a", "b"], "only the tenant's scenarios");
        // Re-reading the same document changes nothing.
        assert_eq!(l.update(&[(v1.clone(), "mongodb".into())], false).0.len(), 0);
        // 90 minutes is not a multiple of b's 20-minute slide: refused naming b; v1 stays.
        let v2 = layer(&t, 2, 20, json!({"hot_score": {"window_size_minutes": 90}}));
        let (again, refused) = l.update(&[(v2.clone(), "mongodb".into())], false);
        assert!(again.is_empty());
        assert!(refused[0].error.contains("t/b") && refused[0].error.contains("window_size_minutes"), "{refused:?}");
        assert_eq!(l.layers()[&t], v1);
        assert!(l.update(&[(v2, "mongodb".into())], false).1.is_empty(), "reported once");
        // Invalid on its own: refused, v1 stays.
        let bad = layer(&t, 3, 30, json!({"hot_score": {"decay_lambda": -1}}));
        assert!(l.update(&[(bad, "mongodb".into())], false).1[0].error.contains("decay_lambda"));
        assert_eq!(l.layers()[&t], v1);
        assert_eq!(
            parse_scenario(&l.remember(&json!({"tenant_id": "t", "scenario_id": "a"}), "a.json")).unwrap().hot_score.window.size_ms,
            120 * 60_000
        );
        // A full read without it: deleted, its scenarios re-resolved.
        let (again, _) = l.update(&[], true);
        assert_eq!(again.len(), 2);
        assert!(l.layers().is_empty());
    }
}
