//! Errors of the admin API, always JSON: `{"error": "...", "errors": [{"path", "rule"}]}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::admin::AdminError;
use crate::config::FieldError;
use crate::text::cap_error;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub errors: Vec<FieldError>,
    /// Seconds for a `Retry-After` header (`429`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), errors: Vec::new(), retry_after: None }
    }

    /// `429 Too Many Requests`, with `Retry-After` when the wait is known.
    pub fn too_many(message: impl Into<String>, retry_after: Option<u64>) -> Self {
        Self { retry_after, ..Self::new(StatusCode::TOO_MANY_REQUESTS, message) }
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
        Self {
            status: StatusCode::BAD_REQUEST,
            message: format!("{path}: {rule}"),
            errors: vec![FieldError { path: path.into(), rule }],
            retry_after: None,
        }
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
            AdminError::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            AdminError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // The details (URLs, paths, driver errors) are for operators, not for API callers.
            tracing::error!(error = %e, "admin API: store failure");
            return Self::new(status, "the scenario or plugin store is unavailable; the host's log has the details");
        }
        let retry_after = match &e {
            AdminError::TooMany { retry_after, .. } => *retry_after,
            _ => None,
        };
        Self { status, message: e.to_string(), errors: e.field_errors().to_vec(), retry_after }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Messages and rules echo tenant input (documents, module errors): each is capped, and
        // so is their number, so an error response stays small whatever was sent.
        const MAX_FIELD_ERRORS: usize = 100;
        let errors: Vec<_> =
            self.errors.iter().take(MAX_FIELD_ERRORS).map(|e| json!({"path": cap_error(&e.path), "rule": cap_error(&e.rule)})).collect();
        let mut r = (self.status, axum::Json(json!({"error": cap_error(&self.message), "errors": errors}))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"rtscore\""));
        }
        if let Some(secs) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}
