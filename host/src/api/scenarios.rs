//! `/api/v1/tenants/{tenant}/scenarios[/{scenario}]`: list, get, replace (PUT), deep-merge
//! (PATCH), delete, and the rollout operations: history, promote, rollback. Writes take
//! `?dry_run=true` to validate without storing (PUT/PATCH), `?drop_weights=true` to replace a
//! weight map that drops actions on purpose, and the effective-time parameters (`effective_from`,
//! `immediately`, `margin_ms`). Write responses carry the document's `warnings`.
//! `POST /api/v1/scenarios/{scenario}` is the seed's admin call, the PATCH with the tenant taken
//! from the caller (`seed_update`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use crate::admin::{AdminState, Scope, StoredScenario};
use crate::config::switch::{DEFAULT_MARGIN_MS, EffectiveFrom};

#[derive(Debug, Default, Deserialize)]
pub struct WriteOptions {
    /// Validate and report the next revision without storing it.
    #[serde(default)]
    pub(super) dry_run: bool,
    /// PATCH only: create the scenario from defaults if it does not exist.
    #[serde(default)]
    create: bool,
    /// PUT/PATCH: the new weight maps may drop actions the stored revision weights (sets the
    /// document's `replace_weights` marker, config::weights_guard).
    #[serde(default)]
    drop_weights: bool,
    /// Take effect from this hot-score window end (epoch ms) on every host.
    effective_from: Option<i64>,
    /// Take effect at each host's next window, with no fleet-wide agreement.
    #[serde(default)]
    immediately: bool,
    /// Event-time margin past the hosts' reported progress (default 30 s).
    margin_ms: Option<i64>,
    /// Rollback only: the revision to restore (default: the one before the current). A plain
    /// field rather than a flattened struct: `serde(flatten)` loses the query's number types.
    to_revision: Option<i64>,
}

impl WriteOptions {
    pub(super) fn effective(&self, s: &AdminState) -> EffectiveFrom {
        EffectiveFrom::choose(self.effective_from, self.immediately, s.redis_url.as_deref(), self.margin_ms.unwrap_or(DEFAULT_MARGIN_MS))
            .with_keys(&s.redis_keys)
    }
}

/// The JSON body; one above `--api-max-body-bytes` is a `413` that says the limit.
pub(super) fn json_body(s: &AdminState, body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than the host's {}-byte limit (--api-max-body-bytes)", s.limits.max_body_bytes),
        ),
        status => ApiError::new(status, e.body_text()),
    })?;
    serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("", format!("the body must be a JSON object ({e})")))
}

pub(super) fn options(q: Result<Query<WriteOptions>, axum::extract::rejection::QueryRejection>) -> Result<WriteOptions, ApiError> {
    q.map(|Query(o)| o).map_err(|e| ApiError::bad_request("query", e.body_text()))
}

fn written(s: StoredScenario, dry_run: bool) -> Json<Value> {
    let warnings: Vec<Value> = s.warnings.iter().map(|w| json!({"path": w.path, "rule": w.rule})).collect();
    Json(json!({"tenant_id": &*s.config.key.tenant_id, "scenario_id": &*s.config.key.scenario_id,
                "revision": s.config.revision, "dry_run": dry_run, "warnings": warnings, "document": s.document}))
}

pub async fn list(State(s): State<AdminState>, Path(tenant): Path<String>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(json!({"scenarios": s.scenarios.list(Some(&tenant)).await?})))
}

/// `ETag: "<revision>"`: what a later write names in `If-Match`.
pub(super) fn etag(doc: &Value) -> [(axum::http::HeaderName, String); 1] {
    [(axum::http::header::ETAG, format!("\"{}\"", doc.get("revision").and_then(Value::as_i64).unwrap_or(0)))]
}

/// `If-Match: "<revision>"` (also `W/"3"` or a bare `3`): the write applies only over that
/// revision, else 409 with the current one. `*` or no header: any revision.
pub(super) fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(v) = headers.get(axum::http::header::IF_MATCH) else { return Ok(None) };
    let v = v.to_str().unwrap_or_default().trim();
    if v == "*" {
        return Ok(None);
    }
    v.trim_start_matches("W/")
        .trim_matches('"')
        .parse::<i64>()
        .map(Some)
        .map_err(|_| ApiError::bad_request("If-Match", "must be the scenario's revision as its ETag gives it, e.g. \"3\""))
}

pub async fn get_one(State(s): State<AdminState>, Path((tenant, scenario)): Path<(String, String)>) -> Result<impl IntoResponse, ApiError> {
    let doc = s.scenarios.get(&tenant, &scenario).await?;
    Ok((etag(&doc), Json(doc)))
}

/// PUT replaces the document, PATCH deep-merges into it; both validate and bump `revision`.
pub async fn write(
    State(s): State<AdminState>,
    method: Method,
    Path((tenant, scenario)): Path<(String, String)>,
    headers: HeaderMap,
    q: Result<Query<WriteOptions>, axum::extract::rejection::QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let body = json_body(&s, body)?;
    store_write(&s, &tenant, &scenario, method == Method::PATCH, &headers, q, body).await
}

/// One write, PUT or PATCH (`merge`), with its options (`dry_run`, `create`, `drop_weights`,
/// effective time) and `If-Match`: the scenario routes and the seed's route share it.
async fn store_write(
    s: &AdminState,
    tenant: &str,
    scenario: &str,
    merge: bool,
    headers: &HeaderMap,
    q: Result<Query<WriteOptions>, axum::extract::rejection::QueryRejection>,
    mut body: Value,
) -> Result<Json<Value>, ApiError> {
    let opts = options(q)?;
    let if_revision = if_match(headers)?;
    if opts.drop_weights {
        crate::config::edit::request_drop_weights(&mut body);
    }
    let svc = &s.scenarios;
    let stored = match (merge, opts.dry_run) {
        (false, true) => svc.prepare_put(tenant, scenario, body).await?,
        (false, false) => svc.put(tenant, scenario, body, &opts.effective(s), if_revision).await?,
        (true, true) => svc.prepare_patch(tenant, scenario, &body, opts.create).await?,
        (true, false) => svc.patch(tenant, scenario, &body, opts.create, &opts.effective(s), if_revision).await?,
    };
    Ok(written(stored, opts.dry_run))
}

pub async fn remove(State(s): State<AdminState>, Path((tenant, scenario)): Path<(String, String)>) -> Result<impl IntoResponse, ApiError> {
    s.scenarios.delete(&tenant, &scenario).await?;
    Ok(Json(json!({"deleted": true, "tenant_id": tenant, "scenario_id": scenario})))
}

pub async fn history(State(s): State<AdminState>, Path((tenant, scenario)): Path<(String, String)>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(json!({"tenant_id": tenant, "scenario_id": scenario, "revisions": s.scenarios.history(&tenant, &scenario).await?})))
}

/// The shadow candidate becomes the live config (a new revision without a candidate).
pub async fn promote(
    State(s): State<AdminState>,
    Path((tenant, scenario)): Path<(String, String)>,
    headers: HeaderMap,
    q: Result<Query<WriteOptions>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let opts = options(q)?;
    Ok(written(s.scenarios.promote(&tenant, &scenario, &opts.effective(&s), if_match(&headers)?).await?, false))
}

/// An earlier revision (`?to_revision=`, default the previous one) stored again as a new one.
pub async fn rollback(
    State(s): State<AdminState>,
    Path((tenant, scenario)): Path<(String, String)>,
    headers: HeaderMap,
    q: Result<Query<WriteOptions>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let opts = options(q)?;
    Ok(written(s.scenarios.rollback(&tenant, &scenario, opts.to_revision, &opts.effective(&s), if_match(&headers)?).await?, false))
}

/// The header an admin token names the tenant with on the seed's route.
pub const TENANT_HEADER: &str = "x-tenant-id";

/// The tenant of a seed-style call (`POST /api/v1/scenarios/{scenario}`), whose path has none:
/// a tenant token's own tenant, or for an admin token the `X-Tenant-Id` header or the body's
/// `tenant_id`. Naming two different tenants is refused rather than guessed.
pub fn seed_tenant(scope: &Scope, header: Option<&str>, body: Option<&Value>) -> Result<String, ApiError> {
    let from_body = match body {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(t.as_str()),
        Some(_) => return Err(ApiError::bad_request("tenant_id", "must be a string (the tenant id)")),
    };
    let named = match (header, from_body) {
        (Some(h), Some(b)) if h != b => {
            return Err(ApiError::bad_request(
                "X-Tenant-Id",
                format!("names tenant {h:?} but the body's tenant_id names {b:?}; name one tenant"),
            ));
        }
        (h, b) => h.or(b),
    };
    match (scope, named) {
        (Scope::Tenant(own), Some(t)) if t != own => Err(ApiError::forbidden(format!("a {scope} token may not access tenant {t:?}"))),
        (Scope::Tenant(own), _) => Ok(own.clone()),
        (Scope::Admin, Some(t)) => Ok(t.to_string()),
        (Scope::Admin, None) => Err(ApiError::bad_request(
            "X-Tenant-Id",
            "an admin token must name the tenant: an `X-Tenant-Id` header or `tenant_id` in the body",
        )),
    }
}

/// The seed's `POST /api/v1/scenarios/{scenario_id}` with a partial document: the PATCH
/// (deep merge, validation, revision, effective time, `If-Match`, `?dry_run`, `?create`) of
/// the caller's tenant's scenario.
pub async fn seed_update(
    State(s): State<AdminState>,
    Extension(scope): Extension<Scope>,
    Path(scenario): Path<String>,
    headers: HeaderMap,
    q: Result<Query<WriteOptions>, axum::extract::rejection::QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let body = json_body(&s, body)?;
    let header = match headers.get(TENANT_HEADER) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| ApiError::bad_request("X-Tenant-Id", "must be a tenant id"))?.trim()),
    };
    let tenant = seed_tenant(&scope, header, body.get("tenant_id"))?;
    store_write(&s, &tenant, &scenario, true, &headers, q, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_route_takes_the_tenant_from_the_token_or_names_it_once() {
        let acme = Scope::Tenant("acme".into());
        let tenant = |scope: &Scope, h: Option<&str>, b: Option<Value>| seed_tenant(scope, h, b.as_ref()).map_err(|e| e.status.as_u16());
        assert_eq!(tenant(&acme, None, None), Ok("acme".into()));
        assert_eq!(tenant(&acme, Some("acme"), Some(json!("acme"))), Ok("acme".into()));
        assert_eq!(tenant(&acme, Some("rival"), None), Err(403), "a tenant token names only its tenant");
        assert_eq!(tenant(&acme, None, Some(json!("rival"))), Err(403));
        assert_eq!(tenant(&Scope::Admin, Some("rival"), None), Ok("rival".into()));
        assert_eq!(tenant(&Scope::Admin, None, Some(json!("rival"))), Ok("rival".into()));
        assert_eq!(tenant(&Scope::Admin, Some("rival"), Some(json!("rival"))), Ok("rival".into()));
        assert_eq!(tenant(&Scope::Admin, None, None), Err(400), "admin must name the tenant");
        assert_eq!(tenant(&Scope::Admin, Some("acme"), Some(json!("rival"))), Err(400), "two tenants are ambiguous");
        assert_eq!(tenant(&Scope::Admin, None, Some(json!(7))), Err(400));
    }
}
