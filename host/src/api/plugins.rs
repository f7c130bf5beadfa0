//! `/api/v1/tenants/{tenant}/plugins`: list the modules the tenant may reference (its own and
//! the shared ones, marked `shared`); upload one (`POST` with the component as the body,
//! `?name=&version=`), stored with its sha256 and owned by the tenant.
//! `/api/v1/plugins/{name@version}/shared` (admin only): `PUT` shares a module with every
//! tenant, `DELETE` takes the mark off (409 while other tenants' scenarios reference it).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, post};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::ApiError;
use crate::admin::{AdminState, PluginQuota};

#[derive(Debug, Deserialize)]
pub struct UploadParams {
    name: String,
    version: String,
}

pub async fn list(State(s): State<AdminState>, Path(tenant): Path<String>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(json!({"plugins": s.plugins.list(Some(&tenant)).await?})))
}

/// The upload route. It takes the raw body and reads it itself, capped by the tenant's
/// module-size quota (not the API's body limit).
pub fn upload_route() -> MethodRouter<AdminState> {
    post(upload)
}

fn too_large(cap: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("quota exceeded: the module is larger than this tenant's module-size quota ({cap} bytes, max_module_bytes)"),
    )
}

/// The body, refused as soon as it passes `cap` bytes (at once when `Content-Length` says
/// so): at most `cap` bytes are ever held.
async fn read_capped(headers: &HeaderMap, body: Body, cap: usize) -> Result<Vec<u8>, ApiError> {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap as u64) {
        return Err(too_large(cap));
    }
    let mut out = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request("body", format!("could not be read ({e})")))?;
        if out.len() + chunk.len() > cap {
            return Err(too_large(cap));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn upload(
    State(s): State<AdminState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    q: Result<Query<UploadParams>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    // The route's access check ran first: nothing of the body is read for a caller that may
    // not upload.
    let Query(p) = q.map_err(|e| ApiError::bad_request("query", format!("give ?name=<plugin>&version=<version> ({})", e.body_text())))?;
    let quota = PluginQuota::for_tenant(&s.scenarios.tenant_quotas(&tenant).await?);
    // Over its rate, a tenant's upload is refused before its bytes are received.
    s.plugins.admit_upload(&tenant, &quota)?;
    let bytes = read_capped(&headers, body, quota.max_module_bytes).await?;
    let m = s.plugins.publish(Some(&tenant), &p.name, &p.version, bytes, quota).await?;
    tracing::info!(%tenant, plugin = %format!("{}@{}", m.name, m.version), sha256 = %m.sha256, "plugin uploaded through the admin API");
    Ok((StatusCode::CREATED, Json(json!({"plugin": m, "reference": m.reference()}))))
}

/// `PUT` (share) or `DELETE` (unshare) `/api/v1/plugins/{plugin}/shared`, `{plugin}` being
/// `name@version`. Admin tokens only: sharing widens what every tenant runs.
pub async fn set_shared(
    State(s): State<AdminState>,
    method: axum::http::Method,
    Path(plugin): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let Some((name, version)) = plugin.split_once('@') else {
        return Err(ApiError::bad_request("plugin", "must be <name>@<version>, e.g. gravity@1.0.0"));
    };
    let shared = method == axum::http::Method::PUT;
    let m = s.plugins.set_shared(&s.scenarios, name, version, shared).await?;
    tracing::info!(plugin = %m.label(), shared, "plugin sharing changed through the admin API");
    Ok(Json(json!({"plugin": m})))
}
