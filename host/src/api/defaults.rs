//! Defaults layers (`config::layers`): `/api/v1/defaults/platform` (read with any token, written
//! with the admin token), `/api/v1/tenants/{tenant}/defaults` and
//! `/api/v1/tenants/{tenant}/defaults/types/{scenario_type}` (the tenant's own token), each with
//! GET, PUT (replace), PATCH (deep merge) and `/history`; and a scenario resolved over its
//! layers with the provenance of every value (`.../scenarios/{scenario}/resolved`). Writes take
//! the scenario writes' `?dry_run=true`, `If-Match` and effective-time parameters.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::ApiError;
use super::scenarios::{WriteOptions, etag, if_match, json_body, options};
use crate::admin::{AdminState, layer_id};
use crate::config::layers::LayerId;

pub async fn resolved(
    State(s): State<AdminState>,
    Path((tenant, scenario)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.scenarios.resolved(&tenant, &scenario).await?))
}

async fn read(s: &AdminState, id: &LayerId) -> Result<impl IntoResponse + use<>, ApiError> {
    let doc = s.scenarios.get_layer(id).await?;
    Ok((etag(&doc), Json(doc)))
}

async fn write(
    s: &AdminState,
    id: &LayerId,
    method: Method,
    headers: &HeaderMap,
    q: Result<Query<WriteOptions>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let opts = options(q)?;
    let if_revision = if_match(headers)?;
    let body = json_body(s, body)?;
    let effective = opts.effective(s);
    let doc = if method == Method::PATCH {
        s.scenarios.patch_layer(id, &body, &effective, if_revision, opts.dry_run).await?
    } else {
        s.scenarios.put_layer(id, body, &effective, if_revision, opts.dry_run).await?
    };
    Ok(Json(json!({"layer": id.key(), "revision": doc["revision"], "dry_run": opts.dry_run, "document": doc})))
}

async fn history(s: &AdminState, id: &LayerId) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"layer": id.key(), "revisions": s.scenarios.layer_history(id).await?})))
}

pub async fn platform_get(State(s): State<AdminState>) -> Result<impl IntoResponse, ApiError> {
    read(&s, &LayerId::Platform).await
}

pub async fn platform_write(
    State(s): State<AdminState>,
    method: Method,
    headers: HeaderMap,
    q: Result<Query<WriteOptions>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    write(&s, &LayerId::Platform, method, &headers, q, body).await
}

pub async fn platform_history(State(s): State<AdminState>) -> Result<Json<Value>, ApiError> {
    history(&s, &LayerId::Platform).await
}

pub async fn tenant_get(State(s): State<AdminState>, Path(tenant): Path<String>) -> Result<impl IntoResponse, ApiError> {
    read(&s, &layer_id(Some(&tenant), None)?).await
}

pub async fn tenant_write(
    State(s): State<AdminState>,
    method: Method,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    q: Result<Query<WriteOptions>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    write(&s, &layer_id(Some(&tenant), None)?, method, &headers, q, body).await
}

pub async fn tenant_history(State(s): State<AdminState>, Path(tenant): Path<String>) -> Result<Json<Value>, ApiError> {
    history(&s, &layer_id(Some(&tenant), None)?).await
}

pub async fn type_get(State(s): State<AdminState>, Path((tenant, ty)): Path<(String, String)>) -> Result<impl IntoResponse, ApiError> {
    read(&s, &layer_id(Some(&tenant), Some(&ty))?).await
}

pub async fn type_write(
    State(s): State<AdminState>,
    method: Method,
    Path((tenant, ty)): Path<(String, String)>,
    headers: HeaderMap,
    q: Result<Query<WriteOptions>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    write(&s, &layer_id(Some(&tenant), Some(&ty))?, method, &headers, q, body).await
}

pub async fn type_history(State(s): State<AdminState>, Path((tenant, ty)): Path<(String, String)>) -> Result<Json<Value>, ApiError> {
    history(&s, &layer_id(Some(&tenant), Some(&ty))?).await
}
