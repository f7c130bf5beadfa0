//! Zero-copy parsing: string fields borrow from the input unless they contain JSON escapes.

use std::borrow::Cow;

use serde::Deserialize;

use super::RejectReason;
use crate::config::validate::{is_valid_action, is_valid_id};

/// A validated behaviour event, borrowing from the bytes it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    pub tenant_id: Cow<'a, str>,
    pub scenario_id: Cow<'a, str>,
    pub user_id: Cow<'a, str>,
    pub item_id: Cow<'a, str>,
    pub action: Cow<'a, str>,
    /// Event time, epoch ms.
    pub ts: i64,
    pub category: Option<Cow<'a, str>>,
    pub tags: Vec<Cow<'a, str>>,
    pub watch_time_ms: Option<f64>,
    pub event_id: Option<Cow<'a, str>>,
}

/// `Option<Cow<str>>` never borrows under serde; a newtype around the `Cow` does.
#[derive(Deserialize)]
#[serde(transparent)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(borrow)]
    tenant_id: Option<Text<'a>>,
    #[serde(borrow)]
    scenario_id: Option<Text<'a>>,
    #[serde(borrow)]
    user_id: Option<Text<'a>>,
    #[serde(borrow)]
    item_id: Option<Text<'a>>,
    #[serde(borrow)]
    action: Option<Text<'a>>,
    #[serde(borrow)]
    ts: Option<RawTs<'a>>,
    #[serde(borrow)]
    category: Option<Text<'a>>,
    #[serde(borrow, default)]
    tags: Option<Vec<Text<'a>>>,
    watch_time_ms: Option<f64>,
    #[serde(borrow)]
    event_id: Option<Text<'a>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawTs<'a> {
    Int(i64),
    Float(f64),
    #[serde(borrow)]
    Text(Cow<'a, str>),
}

/// Earliest and latest accepted event times: 2000-01-01 and 2100-01-01 (epoch ms). Anything
/// outside is almost surely seconds-for-milliseconds or a corrupt clock.
const MIN_TS: i64 = 946_684_800_000;
const MAX_TS: i64 = 4_102_444_800_000;
const MAX_ID_BYTES: usize = 128;
const MAX_TAGS: usize = 64;

fn opaque_id_ok(s: &str) -> bool {
    (1..=MAX_ID_BYTES).contains(&s.len()) && !s.chars().any(char::is_control)
}

fn check<'a>(field: &'static str, v: Option<Text<'a>>, ok: fn(&str) -> bool, rule: &'static str) -> Result<Cow<'a, str>, RejectReason> {
    let v = v.ok_or(RejectReason::Missing(field))?.0;
    if ok(&v) { Ok(v) } else { Err(RejectReason::Invalid { field, rule }) }
}

fn parse_ts(raw: RawTs<'_>) -> Result<i64, RejectReason> {
    let ts = match raw {
        RawTs::Int(i) => i,
        RawTs::Float(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9e15 => f as i64,
        RawTs::Float(f) => return Err(RejectReason::Timestamp(format!("{f} is not a whole number of epoch milliseconds"))),
        RawTs::Text(s) => chrono::DateTime::parse_from_rfc3339(&s)
            .map_err(|e| RejectReason::Timestamp(format!("{s:?} is neither epoch ms nor RFC 3339 ({e})")))?
            .timestamp_millis(),
    };
    if (MIN_TS..MAX_TS).contains(&ts) {
        Ok(ts)
    } else {
        Err(RejectReason::Timestamp(format!("{ts} is outside 2000-01-01..2100-01-01 in epoch milliseconds")))
    }
}

/// Parses and validates one event.
pub fn parse_event(bytes: &[u8]) -> Result<Event<'_>, RejectReason> {
    let raw: RawEvent<'_> = serde_json::from_slice(bytes).map_err(|e| RejectReason::Json(e.to_string()))?;
    const ID_RULE: &str = "must match [A-Za-z0-9_-]{1,64}";
    const OPAQUE_RULE: &str = "must be 1..128 bytes without control characters";
    let tenant_id = check("tenant_id", raw.tenant_id, is_valid_id, ID_RULE)?;
    let scenario_id = check("scenario_id", raw.scenario_id, is_valid_id, ID_RULE)?;
    let user_id = check("user_id", raw.user_id, opaque_id_ok, OPAQUE_RULE)?;
    let item_id = check("item_id", raw.item_id, opaque_id_ok, OPAQUE_RULE)?;
    let action = check("action", raw.action, is_valid_action, "must match [a-z_]{1,32}")?;
    let ts = parse_ts(raw.ts.ok_or(RejectReason::Missing("ts"))?)?;
    let category = match raw.category.map(|t| t.0) {
        Some(c) if !opaque_id_ok(&c) => {
            return Err(RejectReason::Invalid { field: "category", rule: OPAQUE_RULE });
        }
        c => c,
    };
    let tags: Vec<Cow<'_, str>> = raw.tags.unwrap_or_default().into_iter().map(|t| t.0).collect();
    if tags.len() > MAX_TAGS {
        return Err(RejectReason::Invalid { field: "tags", rule: "must hold at most 64 tags" });
    }
    if !tags.iter().all(|t| opaque_id_ok(t)) {
        return Err(RejectReason::Invalid { field: "tags", rule: "each tag must be 1..128 bytes without control characters" });
    }
    if let Some(w) = raw.watch_time_ms
        && !(w.is_finite() && w >= 0.0)
    {
        return Err(RejectReason::Invalid { field: "watch_time_ms", rule: "must be a finite number >= 0" });
    }
    let event_id = match raw.event_id.map(|t| t.0) {
        Some(e) if !opaque_id_ok(&e) => {
            return Err(RejectReason::Invalid { field: "event_id", rule: OPAQUE_RULE });
        }
        e => e,
    };
    Ok(Event { tenant_id, scenario_id, user_id, item_id, action, ts, category, tags, watch_time_ms: raw.watch_time_ms, event_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"tenant_id":"shop","scenario_id":"home","user_id":"u1","item_id":"i1","action":"click","ts":1767225596681,"category":"a","tags":["x","y"],"extra":1}"#;

    #[test]
    fn parses_a_good_event_without_copying() {
        let e = parse_event(GOOD.as_bytes()).unwrap();
        assert_eq!(e.ts, 1_767_225_596_681);
        assert!(matches!(e.item_id, Cow::Borrowed("i1")));
        assert_eq!(e.tags.len(), 2);
    }

    #[test]
    fn accepts_rfc3339_and_whole_float_ts() {
        let e =
            parse_event(br#"{"tenant_id":"t","scenario_id":"s","user_id":"u","item_id":"i","action":"view","ts":"2026-01-01T00:00:00Z"}"#)
                .unwrap();
        assert_eq!(e.ts, 1_767_225_600_000);
        let e = parse_event(br#"{"tenant_id":"t","scenario_id":"s","user_id":"u","item_id":"i","action":"view","ts":1767225600000.0}"#)
            .unwrap();
        assert_eq!(e.ts, 1_767_225_600_000);
    }

    fn reason(s: &str) -> RejectReason {
        parse_event(s.as_bytes()).unwrap_err()
    }

    #[test]
    fn rejects_with_reasons() {
        assert_eq!(reason("{not json").kind(), "json");
        assert_eq!(
            reason(r#"{"scenario_id":"s","user_id":"u","item_id":"i","action":"view","ts":1767225600000}"#),
            RejectReason::Missing("tenant_id")
        );
        assert!(matches!(
            reason(r#"{"tenant_id":"a b","scenario_id":"s","user_id":"u","item_id":"i","action":"view","ts":1767225600000}"#),
            RejectReason::Invalid { field: "tenant_id", .. }
        ));
        assert!(matches!(
            reason(r#"{"tenant_id":"t","scenario_id":"s","user_id":"u","item_id":"","action":"view","ts":1767225600000}"#),
            RejectReason::Invalid { field: "item_id", .. }
        ));
        assert!(matches!(
            reason(r#"{"tenant_id":"t","scenario_id":"s","user_id":"u\u0001","item_id":"i","action":"view","ts":1767225600000}"#),
            RejectReason::Invalid { field: "user_id", .. }
        ));
        assert!(matches!(
            reason(r#"{"tenant_id":"t","scenario_id":"s","user_id":"u","item_id":"i","action":"View","ts":1767225600000}"#),
            RejectReason::Invalid { field: "action", .. }
        ));
        assert_eq!(
            reason(r#"{"tenant_id":"t","scenario_id":"s","user_id":"u","item_id":"i","action":"view","ts":"yesterday"}"#).kind(),
            "timestamp"
        );
        assert_eq!(
            reason(r#"{"tenant_id":"t","scenario_id":"s","user_id":"u","item_id":"i","action":"view","ts":1767225600}"#).kind(),
            "timestamp"
        );
        assert_eq!(
            reason(r#"{"tenant_id":"t","scenario_id":"s","user_id":"u","item_id":"i","action":"view","ts":1767225600000.5}"#).kind(),
            "timestamp"
        );
        assert!(matches!(
            reason(
                r#"{"tenant_id":"t","scenario_id":"s","user_id":"u","item_id":"i","action":"view","ts":1767225600000,"watch_time_ms":-1}"#
            ),
            RejectReason::Invalid { field: "watch_time_ms", .. }
        ));
        assert_eq!(reason(r#"{"tenant_id":5,"scenario_id":"s"}"#).kind(), "json");
    }

    /// What an accepted event must satisfy, whatever bytes it came from (DESIGN §2).
    fn assert_within_rules(e: &Event<'_>) -> Result<(), proptest::test_runner::TestCaseError> {
        use proptest::prop_assert;
        prop_assert!(crate::config::validate::is_valid_id(&e.tenant_id) && crate::config::validate::is_valid_id(&e.scenario_id));
        prop_assert!(opaque_id_ok(&e.user_id) && opaque_id_ok(&e.item_id));
        prop_assert!((MIN_TS..MAX_TS).contains(&e.ts));
        prop_assert!(e.tags.len() <= MAX_TAGS);
        Ok(())
    }

    // Fuzzing by property: untrusted bytes never panic the parser, and whatever it accepts
    // keeps the rules. Bounded case counts keep it to about a second in the test command.
    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3_000))]

        #[test]
        fn arbitrary_bytes_never_panic_and_accepted_events_keep_the_rules(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            if let Ok(e) = parse_event(&bytes) {
                assert_within_rules(&e)?;
            }
        }

        #[test]
        fn a_good_event_mutated_anywhere_never_panics(
            edits in proptest::collection::vec((0usize..GOOD.len(), proptest::prelude::any::<u8>()), 1..6),
            cut in 0usize..=GOOD.len(),
        ) {
            let mut bytes = GOOD.as_bytes().to_vec();
            for (at, b) in edits {
                bytes[at] = b;
            }
            bytes.truncate(cut.max(1));
            match parse_event(&bytes) {
                Ok(e) => assert_within_rules(&e)?,
                Err(r) => proptest::prop_assert!(!r.to_string().is_empty()),
            }
        }
    }
}
