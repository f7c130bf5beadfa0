//! The admin API (`/api/v1/...`, JSON) on the host's HTTP server: scenario documents, plugin
//! uploads and live status, each scoped to a tenant by bearer token. The handlers only
//! translate HTTP; the work is done by `crate::admin`, the same code the CLI runs.

mod defaults;
mod error;
mod plugins;
mod scenarios;
mod status;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{MethodRouter, delete, get, patch, post, put};

pub use error::ApiError;

use crate::admin::{Access, AdminState, Scope};

/// The OpenAPI description, checked in at `docs/openapi.json` and served as is.
pub const OPENAPI_JSON: &str = include_str!("../../../docs/openapi.json");

/// One route of the admin API.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    handler: MethodRouter<AdminState>,
}

fn route(method: Method, path: &'static str, access: Access, handler: MethodRouter<AdminState>) -> Route {
    Route { method, path, access, handler }
}

/// Every route; the router, the OpenAPI check and the security tests all read this table.
pub fn routes() -> Vec<Route> {
    use Access::*;
    const SCENARIO: &str = "/api/v1/tenants/{tenant}/scenarios/{scenario}";
    const TENANT_DEFAULTS: &str = "/api/v1/tenants/{tenant}/defaults";
    const TYPE_DEFAULTS: &str = "/api/v1/tenants/{tenant}/defaults/types/{scenario_type}";
    vec![
        route(Method::GET, "/api/v1/openapi.json", Public, get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON) })),
        route(Method::GET, "/api/v1/whoami", AnyToken, get(status::whoami)),
        route(Method::GET, "/api/v1/tenants/{tenant}/scenarios", Tenant, get(scenarios::list)),
        route(Method::GET, SCENARIO, Tenant, get(scenarios::get_one)),
        route(Method::PUT, SCENARIO, Tenant, put(scenarios::write)),
        route(Method::PATCH, SCENARIO, Tenant, patch(scenarios::write)),
        // The seed's admin call: the PATCH above, the tenant taken from the token (or named by
        // an admin token), so an existing admin service keeps its URL.
        route(Method::POST, "/api/v1/scenarios/{scenario}", AnyToken, post(scenarios::seed_update)),
        route(Method::DELETE, SCENARIO, Tenant, delete(scenarios::remove)),
        route(Method::GET, "/api/v1/tenants/{tenant}/scenarios/{scenario}/history", Tenant, get(scenarios::history)),
        route(Method::POST, "/api/v1/tenants/{tenant}/scenarios/{scenario}/promote", Tenant, post(scenarios::promote)),
        route(Method::POST, "/api/v1/tenants/{tenant}/scenarios/{scenario}/rollback", Tenant, post(scenarios::rollback)),
        route(Method::GET, "/api/v1/tenants/{tenant}/scenarios/{scenario}/live", Tenant, get(status::scenario_live)),
        route(Method::GET, "/api/v1/tenants/{tenant}/scenarios/{scenario}/resolved", Tenant, get(defaults::resolved)),
        route(Method::GET, "/api/v1/defaults/platform", AnyToken, get(defaults::platform_get)),
        route(Method::PUT, "/api/v1/defaults/platform", Admin, put(defaults::platform_write)),
        route(Method::PATCH, "/api/v1/defaults/platform", Admin, patch(defaults::platform_write)),
        route(Method::GET, "/api/v1/defaults/platform/history", AnyToken, get(defaults::platform_history)),
        route(Method::GET, TENANT_DEFAULTS, Tenant, get(defaults::tenant_get)),
        route(Method::PUT, TENANT_DEFAULTS, Tenant, put(defaults::tenant_write)),
        route(Method::PATCH, TENANT_DEFAULTS, Tenant, patch(defaults::tenant_write)),
        route(Method::GET, "/api/v1/tenants/{tenant}/defaults/history", Tenant, get(defaults::tenant_history)),
        route(Method::GET, TYPE_DEFAULTS, Tenant, get(defaults::type_get)),
        route(Method::PUT, TYPE_DEFAULTS, Tenant, put(defaults::type_write)),
        route(Method::PATCH, TYPE_DEFAULTS, Tenant, patch(defaults::type_write)),
        route(Method::GET, "/api/v1/tenants/{tenant}/defaults/types/{scenario_type}/history", Tenant, get(defaults::type_history)),
        route(Method::GET, "/api/v1/tenants/{tenant}/plugins", Tenant, get(plugins::list)),
        route(Method::POST, "/api/v1/tenants/{tenant}/plugins", Tenant, plugins::upload_route()),
        route(Method::PUT, "/api/v1/plugins/{plugin}/shared", Admin, put(plugins::set_shared)),
        route(Method::DELETE, "/api/v1/plugins/{plugin}/shared", Admin, delete(plugins::set_shared)),
        route(Method::GET, "/api/v1/tenants/{tenant}/status", Tenant, get(status::tenant_status)),
    ]
}

/// `(method, path, access)` of every route, for documentation checks and tests.
pub fn route_specs() -> Vec<(Method, &'static str, Access)> {
    routes().into_iter().map(|r| (r.method, r.path, r.access)).collect()
}

pub fn router(state: AdminState) -> Router {
    // Every body is capped; the upload route reads its body itself, capped by the tenant's
    // module-size quota.
    let limit = DefaultBodyLimit::max(state.limits.max_body_bytes);
    routes()
        .into_iter()
        .fold(Router::new(), |r, rt| {
            // The table's access column is the check: no handler runs before it passed.
            let guard = axum::middleware::from_fn_with_state((state.clone(), rt.access), enforce_access);
            r.route(rt.path, rt.handler.route_layer(guard))
        })
        .layer(limit)
        .with_state(state)
}

/// The scope of the request's bearer token, which must allow `tenant` (any tenant with `None`).
pub fn authorize(state: &AdminState, headers: &HeaderMap, tenant: Option<&str>) -> Result<Scope, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer <token>` header"))?;
    let scope = state.tokens.authenticate(token).ok_or_else(|| ApiError::unauthorized("invalid token"))?;
    match tenant {
        Some(t) if !scope.allows(t) => Err(ApiError::forbidden(format!("a {scope} token may not access tenant {t:?}"))),
        _ => Ok(scope),
    }
}

/// Lets a request through to its handler only if its token has the route's [`Access`] (for
/// `Tenant` routes, to the `{tenant}` of the path); the caller's [`Scope`] goes into the
/// request's extensions for handlers that answer by scope.
async fn enforce_access(
    State((s, access)): State<(AdminState, Access)>,
    Path(params): Path<std::collections::HashMap<String, String>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let scope = match access {
        Access::Public => return Ok(next.run(req).await),
        Access::AnyToken => authorize(&s, req.headers(), None)?,
        Access::Tenant => authorize(&s, req.headers(), Some(params.get("tenant").map_or("", String::as_str)))?,
        Access::Admin => match authorize(&s, req.headers(), None)? {
            Scope::Admin => Scope::Admin,
            scope => return Err(ApiError::forbidden(format!("a {scope} token may not call this route; an admin token may"))),
        },
    };
    req.extensions_mut().insert(scope);
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_the_openapi_description() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).expect("docs/openapi.json is JSON");
        for (method, path, access) in route_specs() {
            let op = &doc["paths"][path][method.as_str().to_ascii_lowercase()];
            assert!(op.is_object(), "docs/openapi.json lacks {method} {path}");
            let secured = op.get("security").is_none_or(|s| s.as_array().is_none_or(|a| !a.is_empty()));
            assert_eq!(secured, access != Access::Public, "{method} {path}: security in the description must match the route");
        }
        // And nothing documented that the router lacks.
        let documented: usize =
            doc["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().keys().filter(|k| *k != "parameters").count()).sum();
        assert_eq!(documented, route_specs().len());
    }
}
