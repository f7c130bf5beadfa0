//! Zero-copy parsing: string fields borrow from the input unless they contain JSON escapes.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use smallvec::SmallVec;

use super::RejectReason;
use super::mapping::{EventField, EventMapping, PathRef, TsUnit};
use super::props::{self, Prop, RawProps};
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
    /// Inline up to two (no allocation for the common event).
    pub tags: Tags<'a>,
    pub watch_time_ms: Option<f64>,
    pub event_id: Option<Cow<'a, str>>,
    /// `props`, in the event's key order (empty when absent).
    pub props: Vec<Prop<'a>>,
}

impl<'a> Event<'a> {
    /// The value of `props.<key>`, if the event has it.
    pub fn prop(&self, key: &str) -> Option<&props::PropValue<'a>> {
        self.props.iter().find(|p| p.key == key).map(|p| &p.value)
    }
}

/// An event's tags.
pub type Tags<'a> = SmallVec<[Cow<'a, str>; 2]>;

/// `tags` read as serde reads a list (so its errors are a list's), kept inline when short.
fn tags_as_list<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Tags<'a>>, D::Error> {
    Ok(Option::<Vec<Text<'a>>>::deserialize(d)?.map(|v| v.into_iter().map(|t| t.0).collect()))
}

/// `Option<Cow<str>>` never borrows under serde; a newtype around the `Cow` does.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub(super) struct Text<'a>(#[serde(borrow)] pub(super) Cow<'a, str>);

/// The fields as read, before the rules; by the scanner (`super::scan`) or serde_json.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawEvent<'a> {
    #[serde(borrow)]
    pub(super) tenant_id: Option<Text<'a>>,
    #[serde(borrow)]
    pub(super) scenario_id: Option<Text<'a>>,
    #[serde(borrow)]
    pub(super) user_id: Option<Text<'a>>,
    #[serde(borrow)]
    pub(super) item_id: Option<Text<'a>>,
    #[serde(borrow)]
    pub(super) action: Option<Text<'a>>,
    #[serde(borrow)]
    pub(super) ts: Option<RawTs<'a>>,
    #[serde(borrow)]
    pub(super) category: Option<Text<'a>>,
    #[serde(borrow, default, deserialize_with = "tags_as_list")]
    pub(super) tags: Option<Tags<'a>>,
    pub(super) watch_time_ms: Option<f64>,
    #[serde(borrow)]
    pub(super) event_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub(super) props: Option<RawProps<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawTs<'a> {
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
    // Printable ASCII, the common id, in one pass over the bytes; only other text is decoded.
    (1..=MAX_ID_BYTES).contains(&s.len())
        && (s.bytes().all(|b| (0x20..0x7f).contains(&b)) || (!s.is_ascii() && !s.chars().any(char::is_control)))
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
    let mut raw = RawEvent::default();
    read_raw(bytes, &mut raw)?;
    validate(&mut raw, &Canonical)
}

/// The canonical fields of `bytes` into `raw` (default on entry): by the checked scanner when
/// it is sure, else by serde_json, whose errors are the `json` reasons.
#[inline(always)]
fn read_raw<'a>(bytes: &'a [u8], raw: &mut RawEvent<'a>) -> Result<(), RejectReason> {
    if super::scan::scan_into(bytes, raw).is_none() {
        *raw = serde_raw(bytes)?;
    }
    Ok(())
}

/// The canonical fields of `bytes` as serde_json reads them.
pub(super) fn serde_raw(bytes: &[u8]) -> Result<RawEvent<'_>, RejectReason> {
    serde_json::from_slice(bytes).map_err(|e| RejectReason::Json(e.to_string()))
}

/// Parses and validates one event of a host's own shape (`--event-field`, `--event-ts-unit`):
/// the same rules as [`parse_event`], on the mapped fields, with reasons naming the mapped
/// field. Renamed or nested fields are read through a `serde_json::Value` (strings copied);
/// a mapping that only changes the `ts` unit keeps the zero-copy path.
pub fn parse_event_mapped<'a>(bytes: &'a [u8], m: &EventMapping) -> Result<Event<'a>, RejectReason> {
    if !m.renames() {
        let mut raw = RawEvent::default();
        read_raw(bytes, &mut raw)?;
        return validate(&mut raw, m);
    }
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| RejectReason::Json(e.to_string()))?;
    if !doc.is_object() {
        return Err(RejectReason::Json("an event must be a JSON object".into()));
    }
    validate(&mut raw_from_value(&doc, m)?, m)
}

/// How reasons name the fields and how `ts` is read: the canonical shape (zero-sized, so the
/// default path compiles to what it was before mappings existed) or a host's mapping.
trait Shape {
    fn name(&self, f: EventField) -> &'static str;
    fn ts(&self, raw: RawTs<'_>) -> Result<i64, RejectReason>;
}

struct Canonical;

impl Shape for Canonical {
    #[inline(always)]
    fn name(&self, f: EventField) -> &'static str {
        f.name()
    }

    #[inline(always)]
    fn ts(&self, raw: RawTs<'_>) -> Result<i64, RejectReason> {
        parse_ts(raw)
    }
}

impl Shape for EventMapping {
    fn name(&self, f: EventField) -> &'static str {
        self.source_name(f)
    }

    fn ts(&self, raw: RawTs<'_>) -> Result<i64, RejectReason> {
        let name = self.source_name(EventField::Ts);
        let ts = match (self.ts_unit(), raw) {
            (TsUnit::Ms, raw) => parse_ts(raw),
            // Fractional seconds to the millisecond; the bound keeps the cast exact.
            (TsUnit::S, RawTs::Int(i)) => i
                .checked_mul(1000)
                .filter(|ms| (MIN_TS..MAX_TS).contains(ms))
                .ok_or_else(|| RejectReason::Timestamp(format!("{i} is outside 2000-01-01..2100-01-01 in epoch seconds"))),
            (TsUnit::S, RawTs::Float(f)) => Some(f)
                .filter(|f| f.is_finite() && f.abs() < 9e12)
                .map(|f| (f * 1000.0).round() as i64)
                .filter(|ms| (MIN_TS..MAX_TS).contains(ms))
                .ok_or_else(|| RejectReason::Timestamp(format!("{f} is outside 2000-01-01..2100-01-01 in epoch seconds"))),
            (TsUnit::S, RawTs::Text(t)) => Err(RejectReason::Timestamp(format!("{t:?} is not epoch seconds (--event-ts-unit s)"))),
            (TsUnit::Rfc3339, RawTs::Text(t)) => chrono::DateTime::parse_from_rfc3339(&t)
                .map(|d| d.timestamp_millis())
                .map_err(|e| RejectReason::Timestamp(format!("{t:?} is not RFC 3339 ({e})"))),
            (TsUnit::Rfc3339, RawTs::Int(i)) => {
                Err(RejectReason::Timestamp(format!("{i} is not an RFC 3339 string (--event-ts-unit rfc3339)")))
            }
            (TsUnit::Rfc3339, RawTs::Float(f)) => {
                Err(RejectReason::Timestamp(format!("{f} is not an RFC 3339 string (--event-ts-unit rfc3339)")))
            }
        };
        let ts = ts.and_then(|ts| {
            if (MIN_TS..MAX_TS).contains(&ts) {
                Ok(ts)
            } else {
                Err(RejectReason::Timestamp(format!("{ts} ms is outside 2000-01-01..2100-01-01")))
            }
        });
        // The reason says `ts`; a mapped field is named too.
        ts.map_err(|e| match e {
            RejectReason::Timestamp(msg) if name != "ts" => RejectReason::Timestamp(format!("`{name}`: {msg}")),
            e => e,
        })
    }
}

/// The rules of DESIGN §2 on a raw event, whichever shape it was read from.
#[inline(always)]
/// The event `raw` holds, checked (its fields are taken: by reference, so the raw event is
/// not copied per event).
fn validate<'a, S: Shape>(raw: &mut RawEvent<'a>, shape: &S) -> Result<Event<'a>, RejectReason> {
    use EventField as F;
    const ID_RULE: &str = "must match [A-Za-z0-9_-]{1,64}";
    const OPAQUE_RULE: &str = "must be 1..128 bytes without control characters";
    let tenant_id = check(shape.name(F::TenantId), raw.tenant_id.take(), is_valid_id, ID_RULE)?;
    let scenario_id = check(shape.name(F::ScenarioId), raw.scenario_id.take(), is_valid_id, ID_RULE)?;
    let user_id = check(shape.name(F::UserId), raw.user_id.take(), opaque_id_ok, OPAQUE_RULE)?;
    let item_id = check(shape.name(F::ItemId), raw.item_id.take(), opaque_id_ok, OPAQUE_RULE)?;
    let action = check(shape.name(F::Action), raw.action.take(), is_valid_action, "must match [a-z_]{1,32}")?;
    let ts = shape.ts(raw.ts.take().ok_or(RejectReason::Missing(shape.name(F::Ts)))?)?;
    let category = match raw.category.take().map(|t| t.0) {
        Some(c) if !opaque_id_ok(&c) => {
            return Err(RejectReason::Invalid { field: shape.name(F::Category), rule: OPAQUE_RULE });
        }
        c => c,
    };
    let tags = raw.tags.take().unwrap_or_default();
    if tags.len() > MAX_TAGS {
        return Err(RejectReason::Invalid { field: shape.name(F::Tags), rule: "must hold at most 64 tags" });
    }
    if !tags.iter().all(|t| opaque_id_ok(t)) {
        return Err(RejectReason::Invalid { field: shape.name(F::Tags), rule: "each tag must be 1..128 bytes without control characters" });
    }
    if let Some(w) = raw.watch_time_ms
        && !(w.is_finite() && w >= 0.0)
    {
        return Err(RejectReason::Invalid { field: shape.name(F::WatchTimeMs), rule: "must be a finite number >= 0" });
    }
    let event_id = match raw.event_id.take().map(|t| t.0) {
        Some(e) if !opaque_id_ok(&e) => {
            return Err(RejectReason::Invalid { field: shape.name(F::EventId), rule: OPAQUE_RULE });
        }
        e => e,
    };
    // Checked last, so an event that also breaks an older rule keeps that rule's reason.
    let props = props::validate(raw.props.take(), shape.name(F::Props))?;
    Ok(Event { tenant_id, scenario_id, user_id, item_id, action, ts, category, tags, watch_time_ms: raw.watch_time_ms, event_id, props })
}

/// The raw fields of a parsed document, each read where the mapping says. A value of the
/// wrong JSON type is a `json` reject, as it is on the default path.
fn raw_from_value<'a>(doc: &Value, m: &EventMapping) -> Result<RawEvent<'a>, RejectReason> {
    use EventField as F;
    let at = |f: F| -> Option<&Value> {
        let v = match m.path(f) {
            PathRef::Key(k) => doc.get(k),
            PathRef::Nested(segs) => segs.iter().try_fold(doc, |v, s| v.get(s.as_str())),
        };
        v.filter(|v| !v.is_null())
    };
    let wrong = |f: F, want: &str| RejectReason::Json(format!("invalid type at `{}`: expected {want}", m.source_name(f)));
    let text = |f: F| -> Result<Option<Text<'static>>, RejectReason> {
        match at(f) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(Text(Cow::Owned(s.clone())))),
            Some(_) => Err(wrong(f, "a string")),
        }
    };
    let ts = match at(F::Ts) {
        None => None,
        Some(Value::Number(n)) => Some(match n.as_i64() {
            Some(i) => RawTs::Int(i),
            None => RawTs::Float(n.as_f64().unwrap_or(f64::NAN)),
        }),
        Some(Value::String(s)) => Some(RawTs::Text(Cow::Owned(s.clone()))),
        Some(_) => return Err(wrong(F::Ts, "a number or a string")),
    };
    let tags = match at(F::Tags) {
        None => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|t| t.as_str().map(|s| Cow::Owned(s.to_string())).ok_or_else(|| wrong(F::Tags, "a list of strings")))
                .collect::<Result<SmallVec<_>, _>>()?,
        ),
        Some(_) => return Err(wrong(F::Tags, "a list of strings")),
    };
    let watch_time_ms = match at(F::WatchTimeMs) {
        None => None,
        Some(Value::Number(n)) => n.as_f64(),
        Some(_) => return Err(wrong(F::WatchTimeMs, "a number")),
    };
    let mut props = match at(F::Props) {
        None => None,
        Some(v) => Some(props::raw_from_value(v).ok_or_else(|| wrong(F::Props, "an object"))?),
    };
    // `--event-field props.<key>=PATH`: that prop is read from PATH (over one in `props`).
    for (key, segs) in m.prop_paths() {
        let Some(v) = segs.iter().try_fold(doc, |v, s| v.get(s.as_str())).filter(|v| !v.is_null()) else { continue };
        let raw = props.get_or_insert_with(RawProps::default);
        let before = raw.entries.len();
        raw.entries.retain(|(k, _)| k != key);
        if raw.entries.len() == before {
            raw.total += 1;
        }
        raw.entries.push((Cow::Owned(key.clone()), props::raw_value(v)));
    }
    Ok(RawEvent {
        props,
        tenant_id: text(F::TenantId)?,
        scenario_id: text(F::ScenarioId)?,
        user_id: text(F::UserId)?,
        item_id: text(F::ItemId)?,
        action: text(F::Action)?,
        ts,
        category: text(F::Category)?,
        tags,
        watch_time_ms,
        event_id: text(F::EventId)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"tenant_id":"shop","scenario_id":"home","user_id":"u1","item_id":"i1","action":"click","ts":1767225596681,"category":"a","tags":["x","y"],"extra":1}"#;
    /// [`GOOD`] with props, for the mutation property.
    const GOOD_PROPS: &str = r#"{"tenant_id":"shop","scenario_id":"home","user_id":"u1","item_id":"i1","action":"click","ts":1767225596681,"props":{"dur":12.5,"src":"feed","k.1":"v"}}"#;

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

    fn with_props(props: &str) -> String {
        format!(r#"{{"tenant_id":"t","scenario_id":"s","user_id":"u","item_id":"i","action":"view","ts":1767225600000,"props":{props}}}"#)
    }

    #[test]
    fn props_are_read_without_copying() {
        let text = with_props(r#"{"watch.s":12.5,"src":"feed","n":-3,"big":1e300}"#);
        let e = parse_event(text.as_bytes()).unwrap();
        assert_eq!(e.props.len(), 4);
        assert_eq!(e.prop("watch.s"), Some(&props::PropValue::Number(12.5)));
        assert!(matches!(e.prop("src"), Some(props::PropValue::Text(Cow::Borrowed("feed")))));
        assert_eq!(e.prop("n"), Some(&props::PropValue::Number(-3.0)));
        assert_eq!(e.prop("missing"), None);
        assert!(parse_event(with_props("{}").as_bytes()).unwrap().props.is_empty());
        assert!(parse_event(with_props("null").as_bytes()).unwrap().props.is_empty());
        let max: Vec<String> = (0..16).map(|i| format!(r#""k{i}":{i}"#)).collect();
        assert_eq!(parse_event(with_props(&format!("{{{}}}", max.join(","))).as_bytes()).unwrap().props.len(), 16);
        let long_ok = format!(r#"{{"{}":"{}"}}"#, "k".repeat(64), "v".repeat(256));
        assert!(parse_event(with_props(&long_ok).as_bytes()).is_ok());
    }

    #[test]
    fn bad_props_have_their_own_reasons() {
        let kind = |props: &str| reason(&with_props(props)).kind();
        let seventeen: Vec<String> = (0..17).map(|i| format!(r#""k{i}":{i}"#)).collect();
        assert_eq!(reason(&with_props(&format!("{{{}}}", seventeen.join(",")))), RejectReason::TooManyProps { field: "props", count: 17 });
        let many: Vec<String> = (0..5000).map(|i| format!(r#""k{i}":{i}"#)).collect();
        assert_eq!(reason(&with_props(&format!("{{{}}}", many.join(",")))), RejectReason::TooManyProps { field: "props", count: 5000 });
        assert_eq!(kind(r#"{"a b":1}"#), "prop_bad_key");
        assert_eq!(kind(r#"{"":1}"#), "prop_bad_key");
        let long_key = reason(&with_props(&format!(r#"{{"{}":1}}"#, "k".repeat(65))));
        assert_eq!(long_key, RejectReason::BadPropKey { field: "props", key: "k".repeat(65) });
        assert_eq!(reason(&with_props(r#"{"a":1,"a":"x"}"#)), RejectReason::DuplicateProp { field: "props", key: "a".into() });
        for (value, found) in [("true", "a boolean"), ("null", "null"), ("[1]", "an array"), (r#"{"x":1}"#, "an object")] {
            assert_eq!(
                reason(&with_props(&format!(r#"{{"v":{value}}}"#))),
                RejectReason::BadPropValue { field: "props", key: "v".into(), found },
                "{value}"
            );
        }
        assert_eq!(
            reason(&with_props(&format!(r#"{{"s":"{}"}}"#, "x".repeat(257)))),
            RejectReason::LongPropText { field: "props", key: "s".into(), bytes: 257 }
        );
        let text = reason(&with_props(r#"{"v":[1]}"#)).to_string();
        assert_eq!(text, "field `props.v`: must be a finite number or a string, got an array");
        // Not an object at all: a wrong JSON type, like any other field's.
        assert_eq!(kind("[1,2]"), "json");
        assert_eq!(kind(r#""x""#), "json");
        // Older rules come first: an event breaking one keeps its reason.
        let both =
            r#"{"tenant_id":"a b","scenario_id":"s","user_id":"u","item_id":"i","action":"view","ts":1767225600000,"props":{"v":[1]}}"#;
        assert!(matches!(reason(both), RejectReason::Invalid { field: "tenant_id", .. }));
    }

    #[test]
    fn props_can_be_mapped_whole_or_by_key() {
        let m = mapping(&["props=attrs", "props.dur=meta.duration"], TsUnit::Ms);
        let theirs = br#"{"tenant_id":"t","scenario_id":"s","user_id":"u","item_id":"i","action":"view","ts":1767225600000,"attrs":{"src":"feed","dur":1},"meta":{"duration":42}}"#;
        let e = parse_event_mapped(theirs, &m).unwrap();
        assert_eq!(e.prop("src"), Some(&props::PropValue::Text("feed".into())));
        assert_eq!(e.prop("dur"), Some(&props::PropValue::Number(42.0)), "the mapped key wins");
        assert_eq!(e.props.len(), 2);
        let bad = br#"{"tenant_id":"t","scenario_id":"s","user_id":"u","item_id":"i","action":"view","ts":1767225600000,"meta":{"duration":[1]}}"#;
        assert_eq!(parse_event_mapped(bad, &m), Err(RejectReason::BadPropValue { field: "attrs", key: "dur".into(), found: "an array" }));
        let not_object = br#"{"tenant_id":"t","scenario_id":"s","user_id":"u","item_id":"i","action":"view","ts":1767225600000,"attrs":3}"#;
        assert_eq!(parse_event_mapped(not_object, &m).unwrap_err().kind(), "json");
        assert!(EventMapping::from_specs(&["props.a b=x".into()], TsUnit::Ms).is_err());
        assert!(EventMapping::from_specs(&["props.a=x".into(), "props.a=y".into()], TsUnit::Ms).unwrap_err().contains("twice"));
    }

    fn mapping(specs: &[&str], unit: TsUnit) -> EventMapping {
        EventMapping::from_specs(&specs.iter().map(|s| s.to_string()).collect::<Vec<_>>(), unit).unwrap().unwrap()
    }

    #[test]
    fn a_mapped_event_parses_to_the_same_event() {
        let m = mapping(&["item_id=content_id", "user_id=user.id", "ts=meta.time", "tags=labels"], TsUnit::Ms);
        let theirs = r#"{"tenant_id":"shop","scenario_id":"home","user":{"id":"u1","age":3},"content_id":"i1","action":"click","meta":{"time":1767225596681},"category":"a","labels":["x","y"],"extra":1,"item_id":"ignored"}"#;
        assert_eq!(parse_event_mapped(theirs.as_bytes(), &m), parse_event(GOOD.as_bytes()));
        // The same mapping on the default shape finds none of the mapped fields.
        assert_eq!(parse_event_mapped(GOOD.as_bytes(), &m), Err(RejectReason::Missing("user.id")));
        // A unit alone keeps the zero-copy path.
        let secs = mapping(&[], TsUnit::S);
        let e = parse_event_mapped(
            br#"{"tenant_id":"t","scenario_id":"s","user_id":"u","item_id":"i","action":"view","ts":1767225600}"#,
            &secs,
        )
        .unwrap();
        assert_eq!(e.ts, 1_767_225_600_000);
        assert!(matches!(e.item_id, Cow::Borrowed("i")));
    }

    #[test]
    fn ts_units_seconds_and_rfc3339() {
        let ev =
            |ts: &str| format!(r#"{{"tenant_id":"t","scenario_id":"s","user_id":"u","item_id":"i","action":"view","event_time":{ts}}}"#);
        let s = mapping(&["ts=event_time"], TsUnit::S);
        assert_eq!(parse_event_mapped(ev("1767225600").as_bytes(), &s).map(|e| e.ts), Ok(1_767_225_600_000));
        assert_eq!(parse_event_mapped(ev("1767225600.25").as_bytes(), &s).map(|e| e.ts), Ok(1_767_225_600_250));
        let ms_as_s = parse_event_mapped(ev("1767225600000").as_bytes(), &s).unwrap_err();
        assert_eq!(ms_as_s.kind(), "timestamp");
        assert!(ms_as_s.to_string().contains("`event_time`"), "{ms_as_s}");
        assert_eq!(parse_event_mapped(ev(r#""2026-01-01T00:00:00Z""#).as_bytes(), &s).unwrap_err().kind(), "timestamp");
        let r = mapping(&["ts=event_time"], TsUnit::Rfc3339);
        assert_eq!(parse_event_mapped(ev(r#""2026-01-01T00:00:00.5Z""#).as_bytes(), &r).map(|e| e.ts), Ok(1_767_225_600_500));
        assert!(parse_event_mapped(ev("1767225600000").as_bytes(), &r).unwrap_err().to_string().contains("RFC 3339"));
        // The default unit still takes ms only: seconds are out of range, as before.
        let ms = mapping(&["ts=event_time"], TsUnit::Ms);
        assert_eq!(parse_event_mapped(ev("1767225600000").as_bytes(), &ms).map(|e| e.ts), Ok(1_767_225_600_000));
        assert!(
            parse_event_mapped(ev("1767225600").as_bytes(), &ms).unwrap_err().to_string().contains("`event_time`: 1767225600 is outside")
        );
    }

    #[test]
    fn bad_mapped_values_are_rejected_naming_the_mapped_field() {
        let m = mapping(&["item_id=content.id", "action=verb"], TsUnit::Ms);
        let ev = |item: &str, verb: &str| {
            format!(r#"{{"tenant_id":"t","scenario_id":"s","user_id":"u","content":{{"id":{item}}},"verb":{verb},"ts":1767225600000}}"#)
        };
        let reason = |item: &str, verb: &str| parse_event_mapped(ev(item, verb).as_bytes(), &m).unwrap_err();
        assert_eq!(
            reason(r#""""#, r#""view""#),
            RejectReason::Invalid { field: "content.id", rule: "must be 1..128 bytes without control characters" }
        );
        assert_eq!(reason(r#""i""#, r#""View""#), RejectReason::Invalid { field: "verb", rule: "must match [a-z_]{1,32}" });
        assert_eq!(reason("null", r#""view""#), RejectReason::Missing("content.id"));
        let wrong_type = reason("5", r#""view""#);
        assert_eq!(wrong_type.kind(), "json");
        assert!(wrong_type.to_string().contains("`content.id`"), "{wrong_type}");
        assert_eq!(parse_event_mapped(br#"[1,2]"#, &m).unwrap_err().kind(), "json");
        assert_eq!(parse_event_mapped(b"{not json", &m).unwrap_err().kind(), "json");
        // Unmapped fields keep their names and rules.
        let bad_tenant = r#"{"tenant_id":"a b","scenario_id":"s","user_id":"u","content":{"id":"i"},"verb":"view","ts":1767225600000}"#;
        assert!(matches!(parse_event_mapped(bad_tenant.as_bytes(), &m), Err(RejectReason::Invalid { field: "tenant_id", .. })));
    }

    /// What an accepted event must satisfy, whatever bytes it came from (DESIGN §2).
    fn assert_within_rules(e: &Event<'_>) -> Result<(), proptest::test_runner::TestCaseError> {
        use proptest::prop_assert;
        prop_assert!(crate::config::validate::is_valid_id(&e.tenant_id) && crate::config::validate::is_valid_id(&e.scenario_id));
        prop_assert!(opaque_id_ok(&e.user_id) && opaque_id_ok(&e.item_id));
        prop_assert!((MIN_TS..MAX_TS).contains(&e.ts));
        prop_assert!(e.tags.len() <= MAX_TAGS);
        prop_assert!(e.props.len() <= props::MAX_PROPS);
        for p in &e.props {
            prop_assert!(props::is_valid_prop_key(&p.key));
            match &p.value {
                props::PropValue::Number(x) => prop_assert!(x.is_finite()),
                props::PropValue::Text(t) => prop_assert!(t.len() <= props::MAX_PROP_TEXT_BYTES),
            }
        }
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
        fn mapped_parsing_never_panics_and_keeps_the_rules(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let m = mapping(&["item_id=content.id", "ts=t"], TsUnit::S);
            if let Ok(e) = parse_event_mapped(&bytes, &m) {
                assert_within_rules(&e)?;
            }
        }

        #[test]
        fn an_event_with_props_mutated_anywhere_never_panics(
            edits in proptest::collection::vec((0usize..GOOD_PROPS.len(), proptest::prelude::any::<u8>()), 1..6),
        ) {
            let mut bytes = GOOD_PROPS.as_bytes().to_vec();
            for (at, b) in edits {
                bytes[at] = b;
            }
            match parse_event(&bytes) {
                Ok(e) => assert_within_rules(&e)?,
                Err(r) => proptest::prop_assert!(!r.to_string().is_empty()),
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
