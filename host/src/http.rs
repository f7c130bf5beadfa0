//! The host's HTTP server. Operations endpoints: `/healthz` (the process is up), `/readyz`
//! (configs loaded and sinks reachable, as [`Health`] says), `/metrics` (Prometheus text
//! format), `/status` (what this host applies, as JSON); plus, when given an [`AdminState`],
//! the admin API (`/api/v1`, see `crate::api`) and the operator console (`/console`, see
//! `crate::console`).

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::admin::{AdminState, Scope};
use crate::health::Health;

/// Installs the global Prometheus recorder (once per process).
/// Installs the Prometheus recorder; with `per_pipeline` (`--threads` > 1) what a pipeline
/// records carries its `pipeline` label (`crate::metrics_label`).
pub fn install_metrics(per_pipeline: bool) -> anyhow::Result<PrometheusHandle> {
    if !per_pipeline {
        return PrometheusBuilder::new().install_recorder().context("installing the Prometheus metrics recorder");
    }
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(crate::metrics_label::labelled(recorder)).context("installing the Prometheus metrics recorder")?;
    Ok(handle)
}

#[derive(Clone)]
struct AppState {
    health: Health,
    metrics: Option<PrometheusHandle>,
    /// With the admin API on, `/status` (every tenant's rows) needs an admin token.
    admin: Option<AdminState>,
}

/// Binds `addr` and serves the operations endpoints (and the admin API and console, with
/// `admin`) until the process exits.
pub async fn serve(addr: SocketAddr, health: Health, metrics: Option<PrometheusHandle>, admin: Option<AdminState>) -> anyhow::Result<()> {
    let mut app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .route("/status", get(status))
        .with_state(AppState { health, metrics, admin: admin.clone() });
    if let Some(admin) = admin {
        app = app.merge(crate::api::router(admin.clone())).merge(crate::console::router(admin));
    }
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot bind --http-addr {addr}"))?;
    tracing::info!(%addr, "serving /healthz /readyz /metrics /status /api/v1 /console");
    tokio::spawn(async move {
        // The peer address is needed for `/status` without a tokens file (loopback only).
        if let Err(e) = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await {
            tracing::error!(error = %e, "operations endpoint stopped");
        }
    });
    Ok(())
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let h = &s.health;
    match (h.started(), h.sinks_ok(), h.source_ok()) {
        (true, true, true) => (StatusCode::OK, "ready\n"),
        (false, _, _) => (StatusCode::SERVICE_UNAVAILABLE, "not ready: starting\n"),
        (true, false, _) => {
            (StatusCode::SERVICE_UNAVAILABLE, "not ready: an output (Redis) is unreachable; holding events until it returns\n")
        }
        (true, true, false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the event source (Kafka) is unreachable; state is kept, resuming when it returns\n",
        ),
    }
}

async fn render_metrics(State(s): State<AppState>) -> impl IntoResponse {
    match &s.metrics {
        Some(h) => (StatusCode::OK, h.render()),
        None => (StatusCode::NOT_FOUND, "metrics recorder not installed\n".to_string()),
    }
}

/// Whether a request comes from this machine and names it: a loopback peer, and a `Host` of
/// `localhost`, `127.0.0.1` or `[::1]` with any port. The `Host` check stops DNS rebinding: a
/// foreign page whose name was made to resolve to 127.0.0.1 still sends its own name.
pub fn is_local_request(peer: IpAddr, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let name = if host.starts_with('[') {
        match host.find(']') {
            Some(end) if host[end + 1..].is_empty() || is_port(&host[end + 1..]) => &host[..=end],
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(&format!(":{port}")) => name,
            Some(_) => return false,
            None => host,
        }
    };
    peer.is_loopback() && (name.eq_ignore_ascii_case("localhost") || name == "127.0.0.1" || name == "[::1]")
}

/// `:<digits>`, a port suffix.
fn is_port(s: &str) -> bool {
    s.strip_prefix(':').is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

async fn status(State(s): State<AppState>, ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap) -> axum::response::Response {
    match s.admin.as_ref().filter(|a| a.tokens.configured()) {
        Some(admin) => match crate::api::authorize(admin, &headers, None) {
            Ok(Scope::Admin) => {}
            Ok(scope) => {
                return crate::api::ApiError::forbidden(format!("/status shows every tenant: it needs an admin token, not {scope}"))
                    .into_response();
            }
            Err(e) => return e.into_response(),
        },
        // No tokens: every tenant's rows, to this machine only.
        None => {
            let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
            if !is_local_request(peer.ip(), host) {
                tracing::warn!(%peer, host = host.unwrap_or(""), "/status refused: not a local request and no --api-tokens-file");
                return crate::api::ApiError::forbidden(
                    "/status without --api-tokens-file answers only requests from this machine to localhost, 127.0.0.1 or [::1]; \
                     configure a tokens file (rtscore token create) and use an admin token",
                )
                .into_response();
            }
        }
    }
    axum::Json(s.health.status()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_peers_naming_this_machine_are_local() {
        let lo4: IpAddr = "127.0.0.1".parse().unwrap();
        let lo6: IpAddr = "::1".parse().unwrap();
        let lan: IpAddr = "10.0.0.5".parse().unwrap();
        for host in ["localhost", "LOCALHOST:8080", "127.0.0.1", "127.0.0.1:9464", "[::1]", "[::1]:8080"] {
            assert!(is_local_request(lo4, Some(host)), "{host}");
            assert!(is_local_request(lo6, Some(host)), "{host}");
            assert!(!is_local_request(lan, Some(host)), "a remote peer: {host}");
        }
        for host in
            ["evil.example", "evil.example:8080", "127.0.0.1.evil.example", "localhost.:80", "[::1]x", "127.0.0.1:x", "", "[::2]:80"]
        {
            assert!(!is_local_request(lo4, Some(host)), "DNS rebinding: {host}");
        }
        assert!(!is_local_request(lo4, None), "no Host header");
    }
}
