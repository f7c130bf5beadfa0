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
    /// Every hot-score window that contains the event had closed (dead-lettered only with
    /// `--dead-letter-all`; always counted).
    #[error("late: every window containing ts {ts} had closed (the tenant's watermark was at {watermark})")]
    Late { ts: i64, watermark: i64 },
    /// Its `event_id` was counted before (dead-lettered only with `--dead-letter-all`).
    #[error("duplicate: event_id already counted in this scenario")]
    Duplicate,
    /// No active scenario of that id on this host (dead-lettered only with `--dead-letter-all`).
    #[error("no active scenario `{tenant}/{scenario}` on this host")]
    UnknownScenario { tenant: String, scenario: String },
    /// `props` (DESIGN §2) holds more keys than [`MAX_PROPS`](super::MAX_PROPS).
    #[error("field `{field}` holds {count} keys; at most 16 are allowed")]
    TooManyProps { field: &'static str, count: usize },
    /// A `props` key outside `[A-Za-z0-9_.-]{1,64}` (shown cut to 80 bytes).
    #[error("field `{field}`: key {key:?} must be 1..=64 bytes of [A-Za-z0-9_.-]")]
    BadPropKey { field: &'static str, key: String },
    /// A `props` key given twice: which value counts would depend on the JSON reader.
    #[error("field `{field}`: key {key:?} appears twice")]
    DuplicateProp { field: &'static str, key: String },
    /// A `props` value that is neither a finite number nor a string.
    #[error("field `{field}.{key}`: must be a finite number or a string, got {found}")]
    BadPropValue { field: &'static str, key: String, found: &'static str },
    /// A `props` string longer than 256 bytes.
    #[error("field `{field}.{key}`: a string must be at most 256 bytes, got {bytes}")]
    LongPropText { field: &'static str, key: String, bytes: usize },
    /// The tenant reached a memory quota: the event would have added a new key (docs/security.md).
    #[error("the tenant's {0} quota is reached ({1}); the event would add a new key and is refused")]
    Quota(QuotaKind, u64),
}

/// A per-tenant memory quota (tenant document `quotas.*`, docs/security.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuotaKind {
    /// Distinct items held in one scenario's hot-score windows.
    Items,
    /// Event ids remembered for duplicate suppression in one scenario.
    EventIds,
    /// Users held in one scenario's profiles.
    Users,
    /// Bytes of all of the tenant's window and profile state.
    StateBytes,
}

impl QuotaKind {
    pub const ALL: [QuotaKind; 4] = [QuotaKind::Items, QuotaKind::EventIds, QuotaKind::Users, QuotaKind::StateBytes];

    /// The dead-letter reason kind.
    pub fn kind(self) -> &'static str {
        match self {
            QuotaKind::Items => "quota_items",
            QuotaKind::EventIds => "quota_event_ids",
            QuotaKind::Users => "quota_users",
            QuotaKind::StateBytes => "quota_state_bytes",
        }
    }

    /// The tenant document field that sets it.
    pub fn field(self) -> &'static str {
        match self {
            QuotaKind::Items => "max_items_per_scenario",
            QuotaKind::EventIds => "max_event_ids_per_scenario",
            QuotaKind::Users => "max_users_per_scenario",
            QuotaKind::StateBytes => "max_state_bytes",
        }
    }
}

impl std::fmt::Display for QuotaKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.field())
    }
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
            RejectReason::Late { .. } => "late",
            RejectReason::Duplicate => "duplicate",
            RejectReason::UnknownScenario { .. } => "unknown_scenario",
            RejectReason::Quota(q, _) => q.kind(),
            RejectReason::TooManyProps { .. } => "props_too_many_keys",
            RejectReason::BadPropKey { .. } => "prop_bad_key",
            RejectReason::DuplicateProp { .. } => "prop_duplicate_key",
            RejectReason::BadPropValue { .. } => "prop_bad_value",
            RejectReason::LongPropText { .. } => "prop_text_too_long",
        }
    }
}
