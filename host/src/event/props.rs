//! An event's optional `props` (DESIGN §2): a flat object of numbers and short strings that
//! declared features (`hot_score.features`) read. Read straight from the JSON without building a
//! `Value`, so a value of the wrong kind gets its own dead-letter reason instead of a bare
//! `json` error, and a hostile object with thousands of keys stores at most `MAX_PROPS + 1`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::RejectReason;

/// Most keys one event's `props` may hold.
pub const MAX_PROPS: usize = 16;
/// Longest `props` string value, bytes.
pub const MAX_PROP_TEXT_BYTES: usize = 256;
/// How much of a bad key a reason quotes.
const QUOTED_KEY_BYTES: usize = 80;

/// One accepted `props` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Prop<'a> {
    pub key: Cow<'a, str>,
    pub value: PropValue<'a>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PropValue<'a> {
    /// Always finite.
    Number(f64),
    /// At most [`MAX_PROP_TEXT_BYTES`] bytes.
    Text(Cow<'a, str>),
}

// The key rule is the config's too (`props.<key>` in a feature): it lives there, below events.
pub use crate::config::model::{MAX_PROP_KEY_BYTES, is_valid_prop_key};

/// A value as read, before the rules: anything that is not a number or a string is kept only as
/// the name of its kind, for the reason.
#[derive(Debug)]
pub(super) enum RawPropValue<'a> {
    Number(f64),
    Text(Cow<'a, str>),
    Other(&'static str),
}

/// `props` as read: at most `MAX_PROPS + 1` entries, and how many keys the object had.
#[derive(Debug, Default)]
pub(super) struct RawProps<'a> {
    pub entries: Vec<(Cow<'a, str>, RawPropValue<'a>)>,
    pub total: usize,
}

/// A key that borrows from the input unless it holds escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Key<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Owned(s.to_string())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawPropValue<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = RawPropValue<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a props value")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(RawPropValue::Number(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(RawPropValue::Number(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(RawPropValue::Number(v))
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(RawPropValue::Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(RawPropValue::Text(Cow::Owned(s.to_string())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(RawPropValue::Text(Cow::Owned(s)))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(RawPropValue::Other("a boolean"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(RawPropValue::Other("null"))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(RawPropValue::Other("null"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(RawPropValue::Other("an array"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(RawPropValue::Other("an object"))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawProps<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = RawProps<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of props")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = RawProps::default();
                // Keys past the bound are counted, not kept: the event is refused anyway.
                while out.total <= MAX_PROPS {
                    let Some((Key(k), v)) = map.next_entry::<Key<'a>, RawPropValue<'a>>()? else { return Ok(out) };
                    out.entries.push((k, v));
                    out.total += 1;
                }
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {
                    out.total += 1;
                }
                Ok(out)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// The same entries from a parsed document (the `--event-field` path); `None` when `v` is not
/// an object.
pub(super) fn raw_from_value(v: &Value) -> Option<RawProps<'static>> {
    let obj = v.as_object()?;
    let entries = obj.iter().take(MAX_PROPS + 1).map(|(k, v)| (Cow::Owned(k.clone()), raw_value(v))).collect();
    Some(RawProps { entries, total: obj.len() })
}

/// One value of a parsed document, as read.
pub(super) fn raw_value(v: &Value) -> RawPropValue<'static> {
    match v {
        Value::Number(n) => RawPropValue::Number(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => RawPropValue::Text(Cow::Owned(s.clone())),
        Value::Bool(_) => RawPropValue::Other("a boolean"),
        Value::Null => RawPropValue::Other("null"),
        Value::Array(_) => RawPropValue::Other("an array"),
        Value::Object(_) => RawPropValue::Other("an object"),
    }
}

fn quoted(key: &str) -> String {
    let mut end = key.len().min(QUOTED_KEY_BYTES);
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    key[..end].to_string()
}

/// The rules of DESIGN §2 on `props`; `field` names it in reasons (`props`, or its mapped path).
pub(super) fn validate<'a>(raw: Option<RawProps<'a>>, field: &'static str) -> Result<Vec<Prop<'a>>, RejectReason> {
    let Some(raw) = raw else { return Ok(Vec::new()) };
    if raw.total > MAX_PROPS {
        return Err(RejectReason::TooManyProps { field, count: raw.total });
    }
    let mut out: Vec<Prop<'_>> = Vec::with_capacity(raw.entries.len());
    for (key, value) in raw.entries {
        if !is_valid_prop_key(&key) {
            return Err(RejectReason::BadPropKey { field, key: quoted(&key) });
        }
        if out.iter().any(|p| p.key == key) {
            return Err(RejectReason::DuplicateProp { field, key: key.into_owned() });
        }
        let value = match value {
            RawPropValue::Number(x) if x.is_finite() => PropValue::Number(x),
            RawPropValue::Number(_) => {
                return Err(RejectReason::BadPropValue { field, key: key.into_owned(), found: "a non-finite number" });
            }
            RawPropValue::Text(t) if t.len() <= MAX_PROP_TEXT_BYTES => PropValue::Text(t),
            RawPropValue::Text(t) => return Err(RejectReason::LongPropText { field, key: key.into_owned(), bytes: t.len() }),
            RawPropValue::Other(found) => return Err(RejectReason::BadPropValue { field, key: key.into_owned(), found }),
        };
        out.push(Prop { key, value });
    }
    Ok(out)
}
