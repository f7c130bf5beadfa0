//! The operator console (`/console`): server-rendered HTML, live over server-sent events, no
//! build step. A person logs in with an API token (kept in an HttpOnly, SameSite=Strict
//! cookie) and sees only the scenarios that token may access. Edits go through
//! `crate::admin`, validated before they are applied, like the API and the CLI.

pub mod html;

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Router, middleware};
use futures::Stream;
use serde::Deserialize;
use serde_json::json;

use crate::admin::{AdminError, AdminState, Scope};
use crate::config::ScenarioKey;
use crate::config::switch::{DEFAULT_MARGIN_MS, EffectiveFrom};
use crate::text::cap_error;
use html::EditorResult;

const COOKIE: &str = "rtscore_token";
/// At most this many live pushes per second per page.
const PUSH_INTERVAL: Duration = Duration::from_millis(250);
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; form-action 'self'";

/// Every console route as `(method, path, needs a login)`, for the security tests.
pub const ROUTES: &[(&str, &str, bool)] = &[
    ("GET", "/console", true),
    ("GET", "/console/events", true),
    ("GET", "/console/login", false),
    ("POST", "/console/login", false),
    ("POST", "/console/logout", false),
    ("GET", "/console/tenants/{tenant}/scenarios/{scenario}", true),
    ("GET", "/console/tenants/{tenant}/scenarios/{scenario}/events", true),
    ("POST", "/console/tenants/{tenant}/scenarios/{scenario}/config", true),
    ("POST", "/console/tenants/{tenant}/scenarios/{scenario}/promote", true),
    ("POST", "/console/tenants/{tenant}/scenarios/{scenario}/rollback", true),
    ("GET", "/console/assets/console.js", false),
    ("GET", "/console/assets/console.css", false),
];

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/console", get(overview))
        .route("/console/events", get(overview_events))
        .route("/console/login", get(|| async { Html(html::login(None)) }).post(login))
        .route("/console/logout", post(logout))
        .route("/console/tenants/{tenant}/scenarios/{scenario}", get(scenario))
        .route("/console/tenants/{tenant}/scenarios/{scenario}/events", get(scenario_events))
        .route("/console/tenants/{tenant}/scenarios/{scenario}/config", post(edit_config))
        .route("/console/tenants/{tenant}/scenarios/{scenario}/promote", post(promote))
        .route("/console/tenants/{tenant}/scenarios/{scenario}/rollback", post(rollback))
        .route(
            "/console/assets/console.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], include_str!("assets/console.js")) }),
        )
        .route("/console/assets/console.css", get(|| async { ([(header::CONTENT_TYPE, "text/css")], include_str!("assets/console.css")) }))
        .layer(middleware::map_response(security_headers))
        .layer(axum::extract::DefaultBodyLimit::max(state.limits.max_body_bytes))
        .with_state(state)
}

async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Not `no-referrer`: that makes browsers send `Origin: null` on the console's own forms.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    r
}

/// Why a console request is refused.
enum Refused {
    /// No or bad login: pages redirect to the login form, other requests get 401.
    Login {
        page: bool,
    },
    Forbidden(String),
    NotFound(String),
    /// Over a cap on open live streams.
    TooMany(String),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Login { page: true } => Redirect::to("/console/login").into_response(),
            Refused::Login { page: false } => {
                (StatusCode::UNAUTHORIZED, Html(html::message("Log in first", "This needs a valid token."))).into_response()
            }
            Refused::Forbidden(m) => (StatusCode::FORBIDDEN, Html(html::message("Not allowed", &m))).into_response(),
            Refused::NotFound(m) => (StatusCode::NOT_FOUND, Html(html::message("Not found", &m))).into_response(),
            Refused::TooMany(m) => (StatusCode::TOO_MANY_REQUESTS, Html(html::message("Too many live views", &m))).into_response(),
        }
    }
}

fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .filter(|t| !t.is_empty())
}

/// The login's scope, which must allow `tenant` when given. `page`: a page a browser opens
/// (redirected to the login form when not logged in).
fn login_scope(state: &AdminState, headers: &HeaderMap, tenant: Option<&str>, page: bool) -> Result<Scope, Refused> {
    let scope = cookie_token(headers).and_then(|t| state.tokens.authenticate(t)).ok_or(Refused::Login { page })?;
    match tenant {
        Some(t) if !scope.allows(t) => Err(Refused::Forbidden(format!("A {scope} login may not see tenant {t}."))),
        _ => Ok(scope),
    }
}

/// Writes only from a page of this console: a foreign `Origin` is refused (the SameSite=Strict
/// cookie already keeps other sites' requests anonymous; this is the second lock).
fn same_origin(headers: &HeaderMap) -> Result<(), Refused> {
    let (Some(origin), Some(host)) = (headers.get(header::ORIGIN), headers.get(header::HOST)) else { return Ok(()) };
    let origin = origin.to_str().unwrap_or("");
    let host = host.to_str().unwrap_or("");
    let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
    if origin_host == host { Ok(()) } else { Err(Refused::Forbidden("Cross-site request refused.".into())) }
}

fn login_token(headers: &HeaderMap) -> String {
    cookie_token(headers).unwrap_or_default().to_string()
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(s): State<AdminState>, headers: HeaderMap, Form(f): Form<LoginForm>) -> Response {
    if let Err(r) = same_origin(&headers) {
        return r.into_response();
    }
    let token = f.token.trim();
    // Only a token's own characters go into the cookie header.
    let plausible = !token.is_empty() && token.len() <= 256 && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !plausible || s.tokens.authenticate(token).is_none() {
        return (StatusCode::UNAUTHORIZED, Html(html::login(Some("That token is not valid.")))).into_response();
    }
    let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/console; Max-Age=43200");
    let mut r = Redirect::to("/console").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn logout() -> Response {
    let mut r = Redirect::to("/console/login").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, HeaderValue::from_static("rtscore_token=; HttpOnly; SameSite=Strict; Path=/console; Max-Age=0"));
    r
}

async fn overview(State(s): State<AdminState>, headers: HeaderMap) -> Result<Html<String>, Refused> {
    let scope = login_scope(&s, &headers, None, true)?;
    Ok(Html(html::overview(&scope, &s.live.scenarios(scope.tenant()), &s.visible_counters(&scope))))
}

fn scenario_key(tenant: &str, scenario: &str) -> ScenarioKey {
    ScenarioKey::new(tenant, scenario)
}

async fn scenario(
    State(s): State<AdminState>,
    Path((tenant, scenario)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Html<String>, Refused> {
    let scope = login_scope(&s, &headers, Some(&tenant), true)?;
    let doc = match s.scenarios.get(&tenant, &scenario).await {
        Ok(d) => d,
        Err(AdminError::ScenarioNotFound { .. } | AdminError::Rejected(_)) => {
            return Err(Refused::NotFound(format!("No scenario {tenant}/{scenario}.")));
        }
        Err(e) => {
            tracing::error!(error = %e, "console: store failure");
            return Err(Refused::NotFound("The scenario store is unavailable; the host's log has the details.".into()));
        }
    };
    let key = scenario_key(&tenant, &scenario);
    let live = s.live.scenario(&key).unwrap_or_default();
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    let page = html::scenario_page(&scope, &key, &live, &text, revision_of(&doc), EditorResult::None);
    // Which layer each value in force came from (platform, tenant, type, scenario, builtin).
    let resolved = s.scenarios.resolved(&tenant, &scenario).await.map_err(|e| e.to_string());
    Ok(Html(html::with_section_before_editor(page, &html::resolved_config(resolved.as_ref().map_err(String::as_str)))))
}

fn revision_of(doc: &serde_json::Value) -> Option<i64> {
    doc.get("revision").and_then(serde_json::Value::as_i64)
}

#[derive(Deserialize)]
struct EditForm {
    document: String,
    action: String,
    /// The revision the page loaded (empty: none, e.g. a form from an older console).
    #[serde(default)]
    if_revision: String,
    /// The "drop weights" box: the new weight maps may drop actions on purpose.
    #[serde(default)]
    drop_weights: Option<String>,
}

/// The revision a write is based on: an `If-Match` header (as on the API) or the form's
/// `if_revision`, which every write form of the scenario page carries.
fn base_revision(headers: &HeaderMap, field: &str) -> Result<Option<i64>, AdminError> {
    let header = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()).map(|v| v.trim().trim_start_matches("W/").trim_matches('"'));
    match header.filter(|v| *v != "*").unwrap_or(field.trim()) {
        "" => Ok(None),
        v => v.parse::<i64>().map(Some).map_err(|_| AdminError::rejected("if_revision", "must be the revision the page loaded")),
    }
}

/// The stored revision now (0: none), for a conflict message.
async fn current_revision(s: &AdminState, tenant: &str, scenario: &str) -> i64 {
    s.scenarios.get(tenant, scenario).await.ok().as_ref().and_then(revision_of).unwrap_or(0)
}

async fn edit_config(
    State(s): State<AdminState>,
    Path((tenant, scenario)): Path<(String, String)>,
    headers: HeaderMap,
    Form(f): Form<EditForm>,
) -> Result<Response, Refused> {
    let scope = login_scope(&s, &headers, Some(&tenant), false)?;
    same_origin(&headers)?;
    let key = scenario_key(&tenant, &scenario);
    let live = s.live.scenario(&key).unwrap_or_default();
    let based_on = base_revision(&headers, &f.if_revision);
    let form_revision = based_on.as_ref().ok().copied().flatten();
    let render = |status: StatusCode, document: &str, result: EditorResult<'_>| {
        let revision = match &result {
            EditorResult::Applied { revision, .. } => Some(*revision),
            _ => form_revision,
        };
        (status, Html(html::scenario_page(&scope, &key, &live, document, revision, result))).into_response()
    };
    let mut doc: serde_json::Value = match serde_json::from_str(&f.document) {
        Ok(d) => d,
        Err(e) => {
            let errors = [crate::config::FieldError { path: String::new(), rule: format!("must be a JSON object ({e})") }];
            return Ok(render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &f.document,
                EditorResult::Invalid { message: "the document is not JSON", errors: &errors },
            ));
        }
    };
    if f.drop_weights.as_deref() == Some("true") {
        crate::config::edit::request_drop_weights(&mut doc);
    }
    let result = if f.action == "apply" {
        // As from the CLI and the API: from the first window end past the fleet's progress;
        // only over the revision the page loaded, so nobody's newer edit is overwritten.
        let effective = EffectiveFrom::choose(None, false, s.redis_url.as_deref(), DEFAULT_MARGIN_MS).with_keys(&s.redis_keys);
        match based_on {
            Ok(rev) => s.scenarios.put(&tenant, &scenario, doc, &effective, rev).await,
            Err(e) => Err(e),
        }
    } else {
        s.scenarios.prepare_put(&tenant, &scenario, doc).await
    };
    Ok(match result {
        Ok(stored) if f.action == "apply" => {
            tracing::info!(scenario = %key, revision = stored.config.revision, by = %scope, "scenario changed in the console");
            // The editor now shows what was stored, with its new revision.
            let stored_text = serde_json::to_string_pretty(&stored.document).unwrap_or_default();
            render(StatusCode::OK, &stored_text, EditorResult::Applied { revision: stored.config.revision, warnings: &stored.warnings })
        }
        Ok(stored) => {
            render(StatusCode::OK, &f.document, EditorResult::Valid { revision: stored.config.revision, warnings: &stored.warnings })
        }
        Err(AdminError::Conflict(_)) => {
            let current = current_revision(&s, &tenant, &scenario).await;
            render(StatusCode::CONFLICT, &f.document, EditorResult::Conflict { current })
        }
        Err(e) => {
            let message = shown(&e);
            render(StatusCode::UNPROCESSABLE_ENTITY, &f.document, EditorResult::Invalid { message: &message, errors: e.field_errors() })
        }
    })
}

/// Where a store failure is reported: the details go to the log, not to the page.
fn shown(e: &AdminError) -> String {
    match e {
        AdminError::Store(err) => {
            tracing::error!(error = %err, "console: store failure");
            "the scenario store is unavailable; the host's log has the details".to_string()
        }
        e => cap_error(&e.to_string()),
    }
}

#[derive(Deserialize)]
struct RollbackForm {
    /// Empty: the revision before the current one.
    #[serde(default)]
    to_revision: String,
    #[serde(default)]
    if_revision: String,
}

#[derive(Deserialize)]
struct PromoteForm {
    #[serde(default)]
    if_revision: String,
}

async fn promote(
    State(s): State<AdminState>,
    Path((tenant, scenario)): Path<(String, String)>,
    headers: HeaderMap,
    f: Result<Form<PromoteForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, Refused> {
    // An empty or missing form: promote over whatever is stored, as before.
    let if_revision = f.map(|Form(f)| f.if_revision).unwrap_or_default();
    rollout_action(s, tenant, scenario, headers, None, if_revision).await
}

async fn rollback(
    State(s): State<AdminState>,
    Path((tenant, scenario)): Path<(String, String)>,
    headers: HeaderMap,
    Form(f): Form<RollbackForm>,
) -> Result<Response, Refused> {
    rollout_action(s, tenant, scenario, headers, Some(f.to_revision), f.if_revision).await
}

/// Promote (`rollback: None`) or roll back to a revision (empty: the previous one), through
/// the same service as the API and the CLI, then show the scenario page with the outcome.
async fn rollout_action(
    s: AdminState,
    tenant: String,
    scenario: String,
    headers: HeaderMap,
    rollback: Option<String>,
    if_revision: String,
) -> Result<Response, Refused> {
    let scope = login_scope(&s, &headers, Some(&tenant), false)?;
    same_origin(&headers)?;
    let effective = EffectiveFrom::choose(None, false, s.redis_url.as_deref(), DEFAULT_MARGIN_MS).with_keys(&s.redis_keys);
    let action = if rollback.is_some() { "Rolled back" } else { "Promoted" };
    let result = match (base_revision(&headers, &if_revision), rollback.as_deref().map(str::trim)) {
        (Err(e), _) => Err(e),
        (Ok(base), None) => s.scenarios.promote(&tenant, &scenario, &effective, base).await,
        (Ok(base), Some("")) => s.scenarios.rollback(&tenant, &scenario, None, &effective, base).await,
        (Ok(base), Some(n)) => match n.parse::<i64>() {
            Ok(to) => s.scenarios.rollback(&tenant, &scenario, Some(to), &effective, base).await,
            Err(_) => Err(AdminError::rejected("to_revision", "must be a revision number")),
        },
    };
    let key = scenario_key(&tenant, &scenario);
    let live = s.live.scenario(&key).unwrap_or_default();
    let (status, message) = match &result {
        Ok(stored) => {
            tracing::info!(scenario = %key, revision = stored.config.revision, by = %scope, "{action} in the console");
            (StatusCode::OK, String::new())
        }
        Err(AdminError::Conflict(_)) => {
            let current = current_revision(&s, &tenant, &scenario).await;
            (StatusCode::CONFLICT, format!("changed by someone else to revision {current}; reload the page and check it first"))
        }
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, shown(e)),
    };
    let (document, outcome) = match &result {
        Ok(stored) => (stored.document.clone(), EditorResult::RolledOut { action, revision: stored.config.revision }),
        Err(_) => (s.scenarios.get(&tenant, &scenario).await.unwrap_or_default(), EditorResult::RolloutRefused { message: &message }),
    };
    let text = serde_json::to_string_pretty(&document).unwrap_or_default();
    Ok((status, Html(html::scenario_page(&scope, &key, &live, &text, revision_of(&document), outcome))).into_response())
}

/// A stream of rendered fragments, pushed after every change of the live view (at most every
/// [`PUSH_INTERVAL`]). It ends once the login's token no longer grants `scope` (revoked).
/// A stream holds one of the host's and one of its login's stream slots while it is open, and
/// an update larger than `--console-max-event-bytes` is replaced by a note to reload.
fn live_stream(
    s: AdminState,
    token: String,
    scope: Scope,
    render: impl Fn(&AdminState) -> serde_json::Value + Send + 'static,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Refused> {
    let slot = s.streams.try_open(&scope.to_string()).map_err(|e| {
        tracing::warn!(login = %scope, error = %e, "console: live stream refused");
        Refused::TooMany(e.to_string())
    })?;
    let rx = s.live.subscribe();
    let max_bytes = s.limits.max_event_bytes;
    let render = move |s: &AdminState| capped_event(render(s), max_bytes);
    let stream = futures::stream::unfold((s, rx, true, render, slot), move |(s, mut rx, first, render, slot)| {
        let (token, scope) = (token.clone(), scope.clone());
        async move {
            if !first {
                tokio::time::sleep(PUSH_INTERVAL).await;
                rx.changed().await.ok()?;
            }
            if s.tokens.authenticate(&token) != Some(scope) {
                return None;
            }
            rx.mark_unchanged();
            let event = Event::default().data(render(&s));
            Some((Ok(event), (s, rx, false, render, slot)))
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The update as sent: the fragments by element id, or, when that is above `max_bytes`, each
/// fragment replaced by a short note (a tenant's long item ids or errors must not make every
/// update of every open page huge).
fn capped_event(fragments: serde_json::Value, max_bytes: usize) -> String {
    let text = fragments.to_string();
    if text.len() <= max_bytes {
        return text;
    }
    let note = format!(
        r#"<p class="muted">This part is too large to update live ({} bytes, the limit is {max_bytes}); reload the page to see it.</p>"#,
        text.len()
    );
    let ids = fragments.as_object().map(|o| o.keys().map(|k| (k.clone(), serde_json::Value::from(note.as_str()))).collect());
    serde_json::Value::Object(ids.unwrap_or_default()).to_string()
}

async fn overview_events(State(s): State<AdminState>, headers: HeaderMap) -> Result<impl IntoResponse, Refused> {
    let scope = login_scope(&s, &headers, None, false)?;
    let tenant = scope.tenant().map(str::to_string);
    let view_scope = scope.clone();
    live_stream(
        s,
        login_token(&headers),
        scope,
        move |s| json!({"scenarios": html::overview_rows(&s.live.scenarios(tenant.as_deref())), "host": html::host_counters(&view_scope, &s.visible_counters(&view_scope))}),
    )
}

async fn scenario_events(
    State(s): State<AdminState>,
    Path((tenant, scenario)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, Refused> {
    let scope = login_scope(&s, &headers, Some(&tenant), false)?;
    let key = scenario_key(&tenant, &scenario);
    live_stream(s, login_token(&headers), scope, move |s| {
        let live = s.live.scenario(&key).unwrap_or_default();
        json!({"status": html::status_card(&live), "hot": html::hot_list(&live), "timeline": html::timeline(&live), "shadow": html::shadow(&live)})
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; rtscore_token=rts_abc; b=2"));
        assert_eq!(cookie_token(&h), Some("rts_abc"));
        h.insert(header::COOKIE, HeaderValue::from_static("rtscore_token="));
        assert_eq!(cookie_token(&h), None);
    }

    #[test]
    fn foreign_origins_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(same_origin(&h).is_ok());
        h.insert(header::ORIGIN, HeaderValue::from_static("http://evil.example"));
        assert!(same_origin(&h).is_err());
    }
}
