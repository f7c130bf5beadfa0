//! What an operator action can fail with; the API maps each kind to an HTTP status, the CLI
//! prints it.

use crate::config::history::RolloutError;
use crate::config::{ConfigError, FieldError};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no scenario {tenant}/{scenario}")]
    ScenarioNotFound { tenant: String, scenario: String },

    /// The document (or the merge result) breaks validation rules; each names its field path.
    #[error(transparent)]
    Invalid(#[from] ConfigError),

    /// A request that is not a scenario rule violation (wrong id in the body, bad plugin name,
    /// a module that does not load): still reported with a field path and the rule.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Rejected(Vec<FieldError>),

    #[error("no plugin module {0}")]
    PluginNotFound(String),

    #[error("quota exceeded: {0}")]
    Quota(String),

    /// Too many requests of this kind right now (upload rate, concurrent compiles); try again
    /// after `retry_after` seconds.
    #[error("{message}")]
    TooMany { message: String, retry_after: Option<u64> },

    /// The caller may not touch this object (a plugin another tenant published).
    #[error("{0}")]
    NotOwner(String),

    /// The write contradicts what is stored (a published plugin version with other bytes).
    #[error("{0}")]
    Conflict(String),

    #[error("{0:#}")]
    Store(#[from] anyhow::Error),
}

impl AdminError {
    pub fn rejected(path: &str, rule: impl Into<String>) -> Self {
        AdminError::Rejected(vec![FieldError { path: path.to_string(), rule: rule.into() }])
    }

    /// The field errors behind this failure, if it is a validation failure.
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            AdminError::Invalid(e) => &e.errors,
            AdminError::Rejected(e) => e,
            _ => &[],
        }
    }
}

impl From<RolloutError> for AdminError {
    fn from(e: RolloutError) -> Self {
        match e {
            RolloutError::NotFound { tenant, scenario } => AdminError::ScenarioNotFound { tenant, scenario },
            e @ RolloutError::NoCandidate(_) => AdminError::rejected("candidate", e.to_string()),
            e @ RolloutError::NoSuchRevision { .. } => AdminError::rejected("revision", e.to_string()),
            RolloutError::Invalid(e) => AdminError::Invalid(e),
            RolloutError::Conflict(c) => AdminError::Conflict(c.to_string()),
            RolloutError::Store(e) => AdminError::Store(e),
        }
    }
}
