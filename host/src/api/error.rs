//! Errors of the admin API, always JSON: `{"error": "...", "errors": [{"path", "rule"}]}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::admin::AdminError;
use crate::config::FieldError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub errors: Vec<FieldError>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), errors: Vec::new() }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// A request body or parameter that is not what the route takes.
    pub fn bad_request(path: &str, rule: impl Into<String>) -> Self {
        let rule = rule.into();
        Self { status: StatusCode::BAD_REQUEST, message: format!("{path}: {rule}"), errors: vec![FieldError { path: path.into(), rule }] }
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        let status = match &e {
            AdminError::ScenarioNotFound { .. } | AdminError::PluginNotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Invalid(_) | AdminError::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AdminError::Quota(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AdminError::NotOwner(_) => StatusCode::FORBIDDEN,
            AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // The details (URLs, paths, driver errors) are for operators, not for API callers.
            tracing::error!(error = %e, "admin API: store failure");
            return Self::new(status, "the scenario or plugin store is unavailable; the host's log has the details");
        }
        Self { status, message: e.to_string(), errors: e.field_errors().to_vec() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let errors: Vec<_> = self.errors.iter().map(|e| json!({"path": e.path, "rule": e.rule})).collect();
        let mut r = (self.status, axum::Json(json!({"error": self.message, "errors": errors}))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"rtscore\""));
        }
        r
    }
}
