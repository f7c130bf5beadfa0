//! Why an event was rejected. The reason travels with the original bytes to the dead-letter
//! sink, and its [`RejectReason::kind`] labels the rejection counter.

/// A rule of DESIGN §2 that an event broke.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RejectReason {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("missing required field `{0}`")]
    Missing(&'static str),
    #[error("field `{field}` {rule}")]
    Invalid { field: &'static str, rule: &'static str },
    #[error("field `ts`: {0}")]
    Timestamp(String),
    /// Ahead of the wall clock by more than `--max-event-skew`: accepted, it would close every
    /// scenario's windows early and make everyone's later events late.
    #[error("field `ts`: {ts} is more than {skew_ms} ms ahead of the wall clock ({wall_ms}); see --max-event-skew")]
    InFuture { ts: i64, wall_ms: i64, skew_ms: i64 },
}

impl RejectReason {
    /// Short stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            RejectReason::Json(_) => "json",
            RejectReason::Missing(_) => "missing_field",
            RejectReason::Invalid { .. } => "invalid_field",
            RejectReason::Timestamp(_) => "timestamp",
            RejectReason::InFuture { .. } => "ts_in_future",
        }
    }
}
