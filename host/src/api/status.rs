//! What the host applies for a tenant, live: status rows, events/s and the latest hot lists.

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde_json::json;

use super::ApiError;
use crate::admin::{AdminState, Scope};
use crate::config::ScenarioKey;

pub async fn whoami(Extension(scope): Extension<Scope>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(json!({"scope": scope.to_string(), "tenant_id": scope.tenant()})))
}

pub async fn tenant_status(
    State(s): State<AdminState>,
    Path(tenant): Path<String>,
    Extension(scope): Extension<Scope>,
) -> Result<impl IntoResponse, ApiError> {
    let scenarios: Vec<_> = s
        .live
        .scenarios(Some(&tenant))
        .into_iter()
        .map(|(k, v)| json!({"scenario_id": &*k.scenario_id, "status": v.status, "events_per_s": v.events_per_s, "hot": v.hot}))
        .collect();
    // A tenant token sees its own totals, an admin token the host's.
    Ok(Json(json!({"tenant_id": tenant, "scenarios": scenarios, "host": s.visible_counters(&scope)})))
}

pub async fn scenario_live(
    State(s): State<AdminState>,
    Path((tenant, scenario)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let live = s
        .live
        .scenario(&ScenarioKey::new(&tenant, &scenario))
        .ok_or_else(|| ApiError::new(axum::http::StatusCode::NOT_FOUND, format!("this host runs no scenario {tenant}/{scenario}")))?;
    Ok(Json(live))
}
