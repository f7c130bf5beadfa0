//! A platform's own event shape (`rtscore run --event-field`, `--event-ts-unit`): which JSON
//! field, possibly nested (`user.id`), holds each field of DESIGN §2, and the unit of `ts`.
//! Only hosts that configure one take this path; without one, [`super::parse_event`] runs as
//! it always did. Validation after the mapping is the same code (`parse::validate`).

use std::fmt;

/// The fields of a behaviour event (DESIGN §2), by their canonical names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventField {
    TenantId,
    ScenarioId,
    UserId,
    ItemId,
    Action,
    Ts,
    Category,
    Tags,
    WatchTimeMs,
    EventId,
    Props,
}

impl EventField {
    pub const ALL: [EventField; 11] = [
        EventField::TenantId,
        EventField::ScenarioId,
        EventField::UserId,
        EventField::ItemId,
        EventField::Action,
        EventField::Ts,
        EventField::Category,
        EventField::Tags,
        EventField::WatchTimeMs,
        EventField::EventId,
        EventField::Props,
    ];

    /// The canonical name (the JSON key without a mapping).
    pub fn name(self) -> &'static str {
        match self {
            EventField::TenantId => "tenant_id",
            EventField::ScenarioId => "scenario_id",
            EventField::UserId => "user_id",
            EventField::ItemId => "item_id",
            EventField::Action => "action",
            EventField::Ts => "ts",
            EventField::Category => "category",
            EventField::Tags => "tags",
            EventField::WatchTimeMs => "watch_time_ms",
            EventField::EventId => "event_id",
            EventField::Props => "props",
        }
    }

    pub fn from_name(name: &str) -> Option<EventField> {
        EventField::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// How `ts` is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TsUnit {
    /// Epoch milliseconds (integers, whole floats) or an RFC 3339 string: the default.
    #[default]
    Ms,
    /// Epoch seconds, integer or fractional (to the millisecond).
    S,
    /// RFC 3339 strings only.
    Rfc3339,
}

impl TsUnit {
    pub fn parse(s: &str) -> Result<TsUnit, String> {
        match s.trim() {
            "ms" => Ok(TsUnit::Ms),
            "s" => Ok(TsUnit::S),
            "rfc3339" => Ok(TsUnit::Rfc3339),
            other => Err(format!("unknown ts unit {other:?}; use ms, s or rfc3339")),
        }
    }
}

impl fmt::Display for TsUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TsUnit::Ms => "ms",
            TsUnit::S => "s",
            TsUnit::Rfc3339 => "rfc3339",
        })
    }
}

/// Segments of a nested path and bytes of one segment: a mapping is host config, but kept
/// small so a typo cannot make every event walk a long path.
const MAX_PATH_SEGMENTS: usize = 8;
const MAX_SEGMENT_BYTES: usize = 128;

/// Where each event field is read from, and the unit of `ts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMapping {
    /// Per field (in [`EventField::ALL`] order): the dotted path as given, leaked once so that
    /// reject reasons (`&'static str`, like the canonical names) can name it, and its segments.
    paths: [Option<(&'static str, Vec<String>)>; 11],
    /// `props.<key>=PATH`: one prop read from elsewhere, by key.
    prop_paths: Vec<(String, Vec<String>)>,
    ts_unit: TsUnit,
}

impl Default for EventMapping {
    fn default() -> Self {
        Self { paths: Default::default(), prop_paths: Vec::new(), ts_unit: TsUnit::Ms }
    }
}

impl EventMapping {
    /// The mapping of `--event-field FIELD=PATH` specs and the `ts` unit; `None` when it would
    /// change nothing (the default parse path then runs, untouched).
    pub fn from_specs(specs: &[String], ts_unit: TsUnit) -> Result<Option<EventMapping>, String> {
        let mut m = EventMapping { ts_unit, ..EventMapping::default() };
        for spec in specs {
            m.set(spec)?;
        }
        Ok((!m.is_identity()).then_some(m))
    }

    /// Applies one `FIELD=PATH`, e.g. `item_id=content_id`, `user_id=user.id` or
    /// `props.duration=meta.duration_ms` (one prop; `props=PATH` moves the whole object).
    pub fn set(&mut self, spec: &str) -> Result<(), String> {
        let (field, path) = spec.split_once('=').ok_or_else(|| format!("expected FIELD=PATH (e.g. item_id=content_id), got {spec:?}"))?;
        let path = path.trim();
        let segments: Vec<String> = path.split('.').map(str::to_string).collect();
        if segments.len() > MAX_PATH_SEGMENTS || segments.iter().any(|s| s.is_empty() || s.len() > MAX_SEGMENT_BYTES) {
            return Err(format!(
                "{field}: {path:?} is not a path: 1 to {MAX_PATH_SEGMENTS} non-empty keys of at most {MAX_SEGMENT_BYTES} bytes, joined by `.`"
            ));
        }
        if let Some(key) = field.trim().strip_prefix("props.") {
            if !super::is_valid_prop_key(key) {
                return Err(format!("{field}: a props key must be 1..=64 bytes of [A-Za-z0-9_.-]"));
            }
            if self.prop_paths.iter().any(|(k, _)| k == key) {
                return Err(format!("{field} is mapped twice"));
            }
            if self.prop_paths.len() >= super::MAX_PROPS {
                return Err(format!("at most {} props.<key> mappings", super::MAX_PROPS));
            }
            self.prop_paths.push((key.to_string(), segments));
            return Ok(());
        }
        let f = EventField::from_name(field.trim()).ok_or_else(|| {
            format!("unknown event field {:?}; known: {}, props.<key>", field.trim(), EventField::ALL.map(EventField::name).join(", "))
        })?;
        let slot = &mut self.paths[f as usize];
        if slot.is_some() {
            return Err(format!("{field} is mapped twice"));
        }
        if segments.len() == 1 && segments[0] == f.name() {
            return Ok(()); // the identity: nothing to map
        }
        // Leaked once per run (a few bytes per flag): reject reasons carry `&'static str`.
        *slot = Some((Box::leak(path.to_string().into_boxed_str()), segments));
        Ok(())
    }

    /// Whether this mapping renames nothing and keeps the default `ts` unit.
    pub fn is_identity(&self) -> bool {
        !self.renames() && self.ts_unit == TsUnit::Ms
    }

    /// Whether any field is read from another key than its own.
    pub fn renames(&self) -> bool {
        self.paths.iter().any(Option::is_some) || !self.prop_paths.is_empty()
    }

    /// `props.<key>=PATH` mappings: the key and the path's segments.
    pub fn prop_paths(&self) -> impl Iterator<Item = (&String, &[String])> {
        self.prop_paths.iter().map(|(k, segs)| (k, segs.as_slice()))
    }

    pub fn ts_unit(&self) -> TsUnit {
        self.ts_unit
    }

    /// The name a reject reason gives `f`: its mapped path, or its canonical name.
    pub fn source_name(&self, f: EventField) -> &'static str {
        self.paths[f as usize].as_ref().map_or(f.name(), |(p, _)| p)
    }

    /// The keys from the event's root to `f`.
    pub fn path(&self, f: EventField) -> PathRef<'_> {
        match &self.paths[f as usize] {
            Some((_, segs)) => PathRef::Nested(segs),
            None => PathRef::Key(f.name()),
        }
    }

    /// `FIELD=PATH` of every mapped field, for logs.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> =
            EventField::ALL.iter().filter_map(|f| self.paths[*f as usize].as_ref().map(|(p, _)| format!("{}={p}", f.name()))).collect();
        parts.extend(self.prop_paths.iter().map(|(k, segs)| format!("props.{k}={}", segs.join("."))));
        parts.push(format!("ts unit {}", self.ts_unit));
        parts.join(", ")
    }
}

/// Where a field is read from: one top-level key, or a nested path.
#[derive(Debug, Clone, Copy)]
pub enum PathRef<'m> {
    Key(&'static str),
    Nested(&'m [String]),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_checked_and_the_identity_is_no_mapping() {
        assert_eq!(EventMapping::from_specs(&[], TsUnit::Ms), Ok(None));
        assert_eq!(EventMapping::from_specs(&["item_id=item_id".into()], TsUnit::Ms), Ok(None));
        let m = EventMapping::from_specs(&["item_id=content_id".into(), "user_id=user.id".into()], TsUnit::S).unwrap().unwrap();
        assert_eq!((m.source_name(EventField::ItemId), m.source_name(EventField::Action)), ("content_id", "action"));
        assert_eq!(m.describe(), "user_id=user.id, item_id=content_id, ts unit s");
        assert!(EventMapping::from_specs(&[], TsUnit::Rfc3339).unwrap().is_some(), "a unit alone is a mapping");
        for bad in ["item", "item_ids=x", "item_id=", "item_id=a..b", "item_id=a.b.c.d.e.f.g.h.i"] {
            assert!(EventMapping::from_specs(&[bad.into()], TsUnit::Ms).is_err(), "{bad:?}");
        }
        assert!(EventMapping::from_specs(&["ts=a".into(), "ts=b".into()], TsUnit::Ms).unwrap_err().contains("twice"));
        assert_eq!(TsUnit::parse("s"), Ok(TsUnit::S));
        assert!(TsUnit::parse("us").is_err());
    }
}
