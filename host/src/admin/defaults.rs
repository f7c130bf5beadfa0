//! Defaults layers through the store (`config::layers`): read, replace, deep-merge patch and
//! history of a layer document, and a scenario resolved over its layers with the provenance
//! of every value. Shared by `rtscore defaults`, `rtscore scenario get --resolved`, the admin
//! API and the console. A layer write is validated on its own and against every scenario it
//! covers (refused naming the first it would make invalid), versioned, and appended to the
//! layer's history.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{AdminError, ScenarioService};
use crate::config::edit::deep_merge;
use crate::config::layers::{self, LayerError, LayerId};
use crate::config::store::RevisionConflict;
use crate::config::switch::EffectiveFrom;
use crate::config::{ScenarioStatus, parse_scenario};

impl From<LayerError> for AdminError {
    fn from(e: LayerError) -> Self {
        AdminError::Rejected(e.errors)
    }
}

fn store_error(e: anyhow::Error) -> AdminError {
    match e.downcast::<RevisionConflict>() {
        Ok(c) => AdminError::Conflict(format!(
            "{} changed meanwhile: it is at revision {}, this write was based on revision {}; read it again and retry",
            c.scenario, c.current, c.based_on
        )),
        Err(e) => AdminError::Store(e),
    }
}

fn revision_of(doc: Option<&Value>) -> i64 {
    doc.and_then(|d| d.get("revision")).and_then(Value::as_i64).unwrap_or(0)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The layer to address from a caller's names (`tenant`, `scenario_type`), ids checked.
pub fn layer_id(tenant: Option<&str>, scenario_type: Option<&str>) -> Result<LayerId, AdminError> {
    LayerId::new(tenant, scenario_type).map_err(|e| AdminError::Rejected(vec![e]))
}

impl ScenarioService {
    /// Every stored layer that is valid on its own, as the hosts hold them.
    async fn layer_set(&self) -> Result<BTreeMap<LayerId, Value>, AdminError> {
        Ok(self.store().layer_set().await?)
    }

    /// A layer's stored document, or an empty one at revision 0 (it sets nothing).
    pub async fn get_layer(&self, id: &LayerId) -> Result<Value, AdminError> {
        Ok(self.store().get_layer(id).await?.unwrap_or_else(|| id.empty_document()))
    }

    /// Every stored revision of a layer, oldest first.
    pub async fn layer_history(&self, id: &LayerId) -> Result<Vec<Value>, AdminError> {
        Ok(self.store().layer_history(id).await?)
    }

    /// Replaces a layer's document with `body` (ids filled in from `id`; others refused),
    /// validated on its own and against every scenario it covers, with `revision` one above
    /// the stored one; taking effect from `effective`. With `if_revision`, only over that
    /// revision (0: none stored). With `dry_run`, nothing is stored.
    pub async fn put_layer(
        &self,
        id: &LayerId,
        body: Value,
        effective: &EffectiveFrom,
        if_revision: Option<i64>,
        dry_run: bool,
    ) -> Result<Value, AdminError> {
        let Value::Object(mut m) = body else { return Err(AdminError::rejected("", "a defaults layer document must be a JSON object")) };
        for (field, want) in id.fields() {
            match m.get(&field) {
                None | Some(Value::Null) => {
                    m.insert(field, want);
                }
                Some(v) if *v == want => {}
                Some(_) => return Err(AdminError::rejected(&field, format!("must equal {want}, the layer being written"))),
            }
        }
        let stored = self.store().get_layer(id).await?;
        let current = revision_of(stored.as_ref());
        if let Some(want) = if_revision.filter(|w| *w != current) {
            return Err(store_error(RevisionConflict { tenant: "defaults".into(), scenario: id.key(), based_on: want, current }.into()));
        }
        m.insert("revision".into(), (current + 1).into());
        m.insert("updated_at".into(), now_ms().into());
        m.remove("effective_from_window_end");
        let mut doc = Value::Object(m);
        if layers::parse_layer(&doc)? != *id {
            return Err(AdminError::rejected("layer", format!("must name {id}")));
        }
        let scenarios = self.list(id.tenant()).await?;
        let current_layers = self.layer_set().await?;
        layers::check_covered(&current_layers, id, Some(&doc), &scenarios)?;
        if let Some(e) = self.layer_effective_from(&current_layers, id, &doc, &scenarios, effective).await? {
            doc["effective_from_window_end"] = e.into();
        }
        if !dry_run {
            self.store().put_layer(id, &doc, current).await.map_err(store_error)?;
        }
        Ok(doc)
    }

    /// Deep-merges `patch` into a layer's document (`null` removes a key) and stores the result
    /// as [`Self::put_layer`] does.
    pub async fn patch_layer(
        &self,
        id: &LayerId,
        patch: &Value,
        effective: &EffectiveFrom,
        if_revision: Option<i64>,
        dry_run: bool,
    ) -> Result<Value, AdminError> {
        if !patch.is_object() {
            return Err(AdminError::rejected("", "a patch must be a JSON object"));
        }
        let mut doc = self.get_layer(id).await?;
        let based_on = revision_of(Some(&doc));
        deep_merge(&mut doc, patch);
        // The revision the patch applies over, unless the caller named one.
        self.put_layer(id, doc, effective, Some(if_revision.unwrap_or(based_on)), dry_run).await
    }

    /// When a layer write takes effect: an explicit window end, none (`Immediately`), or the
    /// latest of the fleet-agreed window ends of the active scenarios it covers, so every one
    /// of them switches at one event time on every host.
    async fn layer_effective_from(
        &self,
        current: &BTreeMap<LayerId, Value>,
        id: &LayerId,
        doc: &Value,
        scenarios: &[Value],
        effective: &EffectiveFrom,
    ) -> Result<Option<i64>, AdminError> {
        if !matches!(effective, EffectiveFrom::AfterFleetProgress { .. }) {
            return Ok(match effective {
                EffectiveFrom::At(e) => Some(*e),
                _ => None,
            });
        }
        let mut with = current.clone();
        with.insert(id.clone(), doc.clone());
        let mut at = None;
        for s in scenarios {
            let Ok(cfg) = parse_scenario(&layers::resolve(&with, s)) else { continue };
            let covered = id.covers(&cfg.key.tenant_id, cfg.scenario_type.as_deref());
            if covered && cfg.status == ScenarioStatus::Active {
                at = at.max(effective.resolve(&cfg).await?);
            }
        }
        Ok(at)
    }

    /// A scenario resolved over its layers: the config in force with every default filled in,
    /// where each value came from (`builtin default`, `platform`, `tenant`, `type:<t>`,
    /// `scenario`), and the covering layers with their revisions.
    pub async fn resolved(&self, tenant: &str, scenario: &str) -> Result<Value, AdminError> {
        let doc = self.get(tenant, scenario).await?;
        let layer_set = self.layer_set().await?;
        let cfg = parse_scenario(&layers::resolve(&layer_set, &doc))?;
        let effective = layers::effective_realtime_compute(&cfg);
        let provenance = layers::provenance(&layer_set, &doc, &effective);
        let covering: Vec<Value> = layers::covering_layers(&layer_set, &doc)
            .into_iter()
            .map(|(source, key, revision)| json!({"source": source, "key": key, "revision": revision}))
            .collect();
        Ok(json!({
            "tenant_id": tenant, "scenario_id": scenario, "scenario_type": cfg.scenario_type, "revision": cfg.revision,
            "status": cfg.status, "layers": covering,
            "config": {"realtime_compute": effective},
            "provenance": Value::Object(provenance.into_iter().map(|(k, v)| (k, Value::from(v))).collect::<Map<String, Value>>()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::store::ScenarioStore;

    fn service() -> (tempfile::TempDir, ScenarioService) {
        let dir = tempfile::tempdir().unwrap();
        let svc = ScenarioService::new(ScenarioStore::Dir(dir.path().to_path_buf()));
        (dir, svc)
    }

    #[tokio::test]
    async fn layer_writes_are_versioned_validated_against_covered_scenarios_and_shown_resolved() {
        let (_dir, svc) = service();
        let now = EffectiveFrom::Immediately;
        svc.put("t", "s", json!({"config": {"realtime_compute": {"hot_score": {"window_slide_minutes": 20}}}}), &now, None).await.unwrap();
        svc.put("u", "s", json!({"scenario_type": "feed"}), &now, None).await.unwrap();
        let platform = LayerId::Platform;
        assert_eq!(svc.get_layer(&platform).await.unwrap()["revision"], 0);
        let lambda = json!({"config": {"realtime_compute": {"hot_score": {"decay_lambda": 0.3}}}});
        assert_eq!(svc.patch_layer(&platform, &lambda, &now, None, false).await.unwrap()["revision"], 1);
        // 90 minutes is no multiple of t/s's 20-minute slide: refused naming it, nothing stored.
        let err = svc
            .patch_layer(&platform, &json!({"config": {"realtime_compute": {"hot_score": {"window_size_minutes": 90}}}}), &now, None, false)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("t/s") && err.field_errors()[0].path.ends_with("window_size_minutes"), "{err}");
        assert_eq!(svc.get_layer(&platform).await.unwrap()["revision"], 1);
        // A stale revision conflicts; ids of another layer are refused.
        assert!(matches!(svc.put_layer(&platform, json!({}), &now, Some(0), false).await, Err(AdminError::Conflict(_))));
        let tenant = layer_id(Some("u"), None).unwrap();
        assert!(svc.put_layer(&tenant, json!({"tenant_id": "t"}), &now, None, false).await.is_err());
        let feed = layer_id(Some("u"), Some("feed")).unwrap();
        svc.put_layer(
            &feed,
            json!({"config": {"realtime_compute": {"hot_score": {"top_n": 5}}}}),
            &EffectiveFrom::At(900_000),
            None,
            false,
        )
        .await
        .unwrap();
        assert_eq!(svc.get_layer(&feed).await.unwrap()["effective_from_window_end"], 900_000);
        assert_eq!(svc.layer_history(&platform).await.unwrap().len(), 1);

        let r = svc.resolved("u", "s").await.unwrap();
        assert_eq!(r["config"]["realtime_compute"]["hot_score"]["top_n"], 5);
        assert_eq!(r["provenance"]["hot_score.top_n"], "type:feed");
        assert_eq!(r["provenance"]["hot_score.decay_lambda"], "platform");
        assert_eq!(r["provenance"]["hot_score.window_size_minutes"], layers::BUILTIN);
        assert_eq!(r["layers"].as_array().unwrap().len(), 2);
        assert_eq!(svc.resolved("t", "s").await.unwrap()["provenance"]["hot_score.window_slide_minutes"], "scenario");
        // A scenario valid only over its layers is accepted (a 40-minute slide of the tenant's
        // 120-minute window); one a layer makes invalid is refused.
        let t = layer_id(Some("t"), None).unwrap();
        svc.put_layer(&t, json!({"config": {"realtime_compute": {"hot_score": {"window_size_minutes": 120}}}}), &now, None, false)
            .await
            .unwrap();
        let slide = |m: i64| json!({"config": {"realtime_compute": {"hot_score": {"window_slide_minutes": m}}}});
        assert_eq!(svc.patch("t", "s", &slide(40), false, &now, None).await.unwrap().config.hot_score.window.size_ms, 120 * 60_000);
        assert!(svc.prepare_patch("t", "s", &slide(50), false).await.is_err());
    }
}
