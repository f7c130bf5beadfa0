//! `/api/v1/tenants/{tenant}/plugins`: list the modules the tenant may reference (its own and
//! the shared ones, marked `shared`); upload one (`POST` with the component as the body,
//! `?name=&version=`), stored with its sha256 and owned by the tenant.
//! `/api/v1/plugins/{name@version}/shared` (admin only): `PUT` shares a module with every
//! tenant, `DELETE` takes the mark off (409 while other tenants' scenarios reference it).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, post};
use serde::Deserialize;
use serde_json::json;

use super::{AdminState, ApiError, Scope};
use crate::admin::PluginQuota;

#[derive(Debug, Deserialize)]
pub struct UploadParams {
    name: String,
    version: String,
}

pub async fn list(State(s): State<AdminState>, Path(tenant): Path<String>, headers: HeaderMap) -> Result<impl IntoResponse, ApiError> {
    s.authorize(&headers, Some(&tenant))?;
    Ok(Json(json!({"plugins": s.plugins.list(Some(&tenant)).await?})))
}

/// The upload route, with a body limit just above the per-module quota (the quota check then
/// answers with a clear message; anything far larger is cut off by the server).
pub fn upload_route() -> MethodRouter<AdminState> {
    post(upload).layer(DefaultBodyLimit::max(PluginQuota::TENANT.max_module_bytes + 1))
}

async fn upload(
    State(s): State<AdminState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    q: Result<Query<UploadParams>, axum::extract::rejection::QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    s.authorize(&headers, Some(&tenant))?;
    let Query(p) = q.map_err(|e| ApiError::bad_request("query", format!("give ?name=<plugin>&version=<version> ({})", e.body_text())))?;
    let bytes = body.map_err(|e| ApiError::new(e.status(), format!("quota exceeded: {}", e.body_text())))?;
    let m = s.plugins.publish(Some(&tenant), &p.name, &p.version, bytes.to_vec(), PluginQuota::TENANT).await?;
    tracing::info!(%tenant, plugin = %format!("{}@{}", m.name, m.version), sha256 = %m.sha256, "plugin uploaded through the admin API");
    Ok((StatusCode::CREATED, Json(json!({"plugin": m, "reference": m.reference()}))))
}

/// `PUT` (share) or `DELETE` (unshare) `/api/v1/plugins/{plugin}/shared`, `{plugin}` being
/// `name@version`. Admin tokens only: sharing widens what every tenant runs.
pub async fn set_shared(
    State(s): State<AdminState>,
    method: axum::http::Method,
    Path(plugin): Path<String>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let scope = s.authorize(&headers, None)?;
    if scope != Scope::Admin {
        return Err(ApiError::forbidden(format!("a {scope} token may not share or unshare plugin modules; an admin token may")));
    }
    let Some((name, version)) = plugin.split_once('@') else {
        return Err(ApiError::bad_request("plugin", "must be <name>@<version>, e.g. gravity@1.0.0"));
    };
    let shared = method == axum::http::Method::PUT;
    let m = s.plugins.set_shared(&s.scenarios, name, version, shared).await?;
    tracing::info!(plugin = %m.label(), shared, "plugin sharing changed through the admin API");
    Ok(Json(json!({"plugin": m})))
}
