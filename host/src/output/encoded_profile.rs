//! A user profile encoded once, as it is written (issue 21): the JSONL record of DESIGN §6 and
//! the `resume` field's JSON in one buffer, with the spans the Redis sink's hash fields take
//! (`interests`, `recent_items`, `counts`, `updated_at` and `config_revision` are the same
//! bytes in both sinks). The profile job writes this straight from a user's state, without
//! building a [`super::UserProfile`] per write (its vectors, map and shared-name clones) and
//! without serializing it again per sink. Profiles are written one after the other into a shared
//! buffer ([`ProfileEncoder::new`] appends to it; [`EncodedProfile::new`] takes a profile's part
//! of it once it is frozen): an allocation per buffer, not per profile.
//!
//! Every value goes through `serde_json`'s own serializer (string escapes, `ryu` floats, `null`
//! for non-finite ones, `itoa` integers), so the bytes equal those of the structured form:
//! `serde_json::to_vec(&ProfileRecord::from(&p))` and [`super::stored_profile::profile_fields`]
//! (tests below, and the profile job's tests compare both forms over whole runs).

use std::ops::Range;

use bytes::Bytes;
use serde::Serializer as _;

use crate::config::ScenarioKey;

/// A profile as the sinks write it (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedProfile {
    pub key: ScenarioKey,
    pub updated_at: i64,
    pub config_revision: i64,
    /// The scenario's half-life, from which the Redis key's lifetime follows.
    pub interest_decay_days: f64,
    /// The JSONL record, then `resume`'s JSON, then the user id as it is (for the Redis key):
    /// this profile's part of its shared buffer.
    bytes: Bytes,
    spans: Spans,
}

/// Where an encoded profile lies in its buffer, and its values
/// ([`ProfileEncoder::finish`]); [`EncodedProfile::new`] makes it a profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncodedSpan {
    start: usize,
    end: usize,
    spans: Spans,
    pub updated_at: i64,
    pub config_revision: i64,
    pub interest_decay_days: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Spans {
    line_end: u32,
    interests: (u32, u32),
    recent_items: (u32, u32),
    counts: (u32, u32),
    updated_at: (u32, u32),
    config_revision: (u32, u32),
    resume: (u32, u32),
    user_id: (u32, u32),
}

fn range((a, b): (u32, u32)) -> Range<usize> {
    a as usize..b as usize
}

impl EncodedProfile {
    /// The profile `span` of `buffer`, the buffer its encoder wrote (frozen: shared, not copied).
    pub fn new(key: ScenarioKey, buffer: &Bytes, span: EncodedSpan) -> Self {
        EncodedProfile {
            key,
            updated_at: span.updated_at,
            config_revision: span.config_revision,
            interest_decay_days: span.interest_decay_days,
            bytes: buffer.slice(span.start.min(buffer.len())..span.end.min(buffer.len())),
            spans: span.spans,
        }
    }

    /// The JSONL record (DESIGN §6), without its newline.
    pub fn jsonl_line(&self) -> &[u8] {
        &self.bytes[..self.spans.line_end as usize]
    }

    /// The user id, as the event carried it.
    pub fn user_id(&self) -> &str {
        std::str::from_utf8(&self.bytes[range(self.spans.user_id)]).unwrap_or_default()
    }

    /// The Redis hash fields, in the order and with the values of
    /// [`super::stored_profile::profile_fields`].
    pub fn redis_fields(&self) -> [(&'static str, &[u8]); 6] {
        let s = &self.spans;
        [
            ("interests", &self.bytes[range(s.interests)]),
            ("recent_items", &self.bytes[range(s.recent_items)]),
            ("counts", &self.bytes[range(s.counts)]),
            ("updated_at", &self.bytes[range(s.updated_at)]),
            ("config_revision", &self.bytes[range(s.config_revision)]),
            (super::stored_profile::RESUME_FIELD, &self.bytes[range(s.resume)]),
        ]
    }
}

/// Writes one profile's JSON at the end of a buffer, part after part, in the order of the
/// JSONL record. Each part method must be called once, in order: [`Self::new`], `interests`,
/// `recent_items`, `counts`, then [`Self::finish`]. Spans are kept from the profile's start.
pub struct ProfileEncoder<'a> {
    bytes: &'a mut Vec<u8>,
    start: usize,
    spans: Spans,
}

/// `serde_json`'s compact serializer over `buf`.
fn ser(buf: &mut Vec<u8>) -> serde_json::Serializer<&mut Vec<u8>> {
    serde_json::Serializer::new(buf)
}

/// Whether `serde_json` writes `s` as it is between quotes: no `"`, `\` or control byte
/// (below 0x20), the only bytes its escape table maps. Eight bytes at a time: ids are most of
/// what a profile holds, and a byte loop over them was 6% of `--job all`.
fn plain(s: &str) -> bool {
    let (words, rest) = s.as_bytes().as_chunks::<8>();
    // The last bytes, padded with a plain byte.
    let mut last = [b'a'; 8];
    last[..rest.len()].copy_from_slice(rest);
    words.iter().all(|w| plain_word(u64::from_le_bytes(*w))) && plain_word(u64::from_le_bytes(last))
}

/// No byte of `w` is below 0x20, `"` or `\`: the exact word tests for a byte below `n` and for
/// a zero byte (a borrow only crosses into a byte after one that already matched).
fn plain_word(w: u64) -> bool {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = ONES * 0x80;
    let below = |v: u64, n: u8| v.wrapping_sub(ONES * u64::from(n)) & !v;
    let quote = w ^ (ONES * u64::from(b'"'));
    let backslash = w ^ (ONES * u64::from(b'\\'));
    (below(w, 0x20) | below(quote, 1) | below(backslash, 1)) & HIGH == 0
}

/// `s` as a JSON string. The common string needs no escape and is copied whole; any other goes
/// through `serde_json`'s escaping.
fn put_str(buf: &mut Vec<u8>, s: &str) {
    if plain(s) {
        buf.reserve(s.len() + 2);
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    } else {
        // Writing to a Vec cannot fail.
        let _ = ser(buf).serialize_str(s);
    }
}

fn put_f64(buf: &mut Vec<u8>, v: f64) {
    let _ = ser(buf).serialize_f64(v);
}

fn put_i64(buf: &mut Vec<u8>, v: i64) {
    let _ = ser(buf).serialize_i64(v);
}

fn put_u64(buf: &mut Vec<u8>, v: u64) {
    let _ = ser(buf).serialize_u64(v);
}

/// Where the buffer ends, from the profile's start.
fn pos(buf: &[u8], start: usize) -> u32 {
    u32::try_from(buf.len() - start).unwrap_or(u32::MAX)
}

/// `[{"name":..,"score":..},...]`, the serialization of `[Interest]`.
fn put_interests<'a>(buf: &mut Vec<u8>, interests: impl IntoIterator<Item = (&'a str, f64)>) {
    buf.push(b'[');
    for (k, (name, score)) in interests.into_iter().enumerate() {
        if k > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(b"{\"name\":");
        put_str(buf, name);
        buf.extend_from_slice(b",\"score\":");
        put_f64(buf, score);
        buf.push(b'}');
    }
    buf.push(b']');
}

impl<'a> ProfileEncoder<'a> {
    /// What every record of `key` starts with, up to the user id ([`Self::new`] takes it).
    pub fn prefix(key: &ScenarioKey) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(64 + key.tenant_id.len() + key.scenario_id.len());
        bytes.extend_from_slice(b"{\"kind\":\"profile\",\"tenant_id\":");
        put_str(&mut bytes, &key.tenant_id);
        bytes.extend_from_slice(b",\"scenario_id\":");
        put_str(&mut bytes, &key.scenario_id);
        bytes.extend_from_slice(b",\"user_id\":");
        bytes
    }

    /// Starts the record of `user_id` at the end of `bytes`, after `prefix` (its scenario's
    /// [`Self::prefix`]).
    pub fn new(bytes: &'a mut Vec<u8>, prefix: &[u8], user_id: &str) -> Self {
        let start = bytes.len();
        bytes.extend_from_slice(prefix);
        put_str(bytes, user_id);
        bytes.extend_from_slice(b",\"interests\":");
        Self { bytes, start, spans: Spans::default() }
    }

    /// The written interests, strongest first.
    pub fn interests<'n>(&mut self, interests: impl IntoIterator<Item = (&'n str, f64)>) {
        let start = pos(self.bytes, self.start);
        put_interests(self.bytes, interests);
        self.spans.interests = (start, pos(self.bytes, self.start));
        self.bytes.extend_from_slice(b",\"recent_items\":");
    }

    /// The recent items, most recent first: `(item_id, action, ts)`.
    pub fn recent_items<'n>(&mut self, items: impl IntoIterator<Item = (&'n str, &'n str, i64)>) {
        let start = pos(self.bytes, self.start);
        let b = &mut *self.bytes;
        b.push(b'[');
        for (k, (item, action, ts)) in items.into_iter().enumerate() {
            if k > 0 {
                b.push(b',');
            }
            b.extend_from_slice(b"{\"item_id\":");
            put_str(b, item);
            b.extend_from_slice(b",\"action\":");
            put_str(b, action);
            b.extend_from_slice(b",\"ts\":");
            put_i64(b, ts);
            b.push(b'}');
        }
        b.push(b']');
        self.spans.recent_items = (start, pos(self.bytes, self.start));
        self.bytes.extend_from_slice(b",\"counts\":");
    }

    /// The counts per action, in action name order (a map's order).
    pub fn counts<'n>(&mut self, counts: impl IntoIterator<Item = (&'n str, u64)>) {
        let start = pos(self.bytes, self.start);
        let b = &mut *self.bytes;
        b.push(b'{');
        for (k, (action, n)) in counts.into_iter().enumerate() {
            if k > 0 {
                b.push(b',');
            }
            put_str(b, action);
            b.push(b':');
            put_u64(b, n);
        }
        b.push(b'}');
        self.spans.counts = (start, pos(self.bytes, self.start));
    }

    /// Closes the record with its times and appends `resume` (the interests beyond the written
    /// ones, the input the offsets belong to, and the offsets) and the raw user id.
    #[allow(clippy::too_many_arguments, reason = "the record's last fields, each its own value")]
    pub fn finish<'n>(
        mut self,
        user_id: &str,
        updated_at: i64,
        config_revision: i64,
        more_interests: impl IntoIterator<Item = (&'n str, f64)>,
        source: &str,
        offsets: &[(i32, i64)],
        interest_decay_days: f64,
    ) -> EncodedSpan {
        let (b, at) = (&mut *self.bytes, self.start);
        b.extend_from_slice(b",\"updated_at\":");
        let start = pos(b, at);
        put_i64(b, updated_at);
        self.spans.updated_at = (start, pos(b, at));
        b.extend_from_slice(b",\"config_revision\":");
        let start = pos(b, at);
        put_i64(b, config_revision);
        self.spans.config_revision = (start, pos(b, at));
        b.push(b'}');
        self.spans.line_end = pos(b, at);
        let start = pos(b, at);
        b.extend_from_slice(b"{\"more_interests\":");
        put_interests(b, more_interests);
        b.extend_from_slice(b",\"source\":");
        put_str(b, source);
        b.extend_from_slice(b",\"offsets\":[");
        for (k, &(p, o)) in offsets.iter().enumerate() {
            if k > 0 {
                b.push(b',');
            }
            b.push(b'[');
            put_i64(b, i64::from(p));
            b.push(b',');
            put_i64(b, o);
            b.push(b']');
        }
        b.extend_from_slice(b"]}");
        self.spans.resume = (start, pos(b, at));
        let start = pos(b, at);
        b.extend_from_slice(user_id.as_bytes());
        self.spans.user_id = (start, pos(b, at));
        EncodedSpan { start: at, end: b.len(), spans: self.spans, updated_at, config_revision, interest_decay_days }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::stored_profile::{ProfileResume, profile_fields};
    use crate::output::{Interest, ProfileRecord, RecentItem, UserProfile};
    use std::collections::BTreeMap;

    /// `p` encoded at the end of `buf`.
    fn encode_into(buf: &mut Vec<u8>, p: &UserProfile) -> EncodedSpan {
        let mut e = ProfileEncoder::new(buf, &ProfileEncoder::prefix(&p.key), &p.user_id);
        e.interests(p.interests.iter().map(|i| (&*i.name, i.score)));
        e.recent_items(p.recent_items.iter().map(|r| (&*r.item_id, &*r.action, r.ts)));
        e.counts(p.counts.iter().map(|(a, n)| (&**a, *n)));
        e.finish(
            &p.user_id,
            p.updated_at,
            p.config_revision,
            p.resume.more_interests.iter().map(|i| (&*i.name, i.score)),
            &p.resume.source,
            &p.resume.offsets,
            p.interest_decay_days,
        )
    }

    fn encode(p: &UserProfile) -> EncodedProfile {
        let mut buf = Vec::new();
        let span = encode_into(&mut buf, p);
        EncodedProfile::new(p.key.clone(), &Bytes::from(buf), span)
    }

    fn check(p: &UserProfile) {
        let e = encode(p);
        check_encoded(&e, p);
    }

    fn check_encoded(e: &EncodedProfile, p: &UserProfile) {
        assert_eq!(
            String::from_utf8_lossy(e.jsonl_line()),
            serde_json::to_string(&ProfileRecord::from(p)).unwrap(),
            "the JSONL record of the structured form"
        );
        let fields = profile_fields(p);
        for ((name, bytes), (want_name, want)) in e.redis_fields().iter().zip(fields.iter()) {
            assert_eq!((name, String::from_utf8_lossy(bytes)), (want_name, want.as_str().into()));
        }
        assert_eq!(e.user_id(), p.user_id);
        assert_eq!((e.updated_at, e.config_revision, e.interest_decay_days), (p.updated_at, p.config_revision, p.interest_decay_days));
    }

    fn profile(user: &str, names: &[&str], scores: &[f64]) -> UserProfile {
        let interests: Vec<Interest> = names.iter().zip(scores).map(|(n, s)| Interest { name: (*n).into(), score: *s }).collect();
        UserProfile {
            key: ScenarioKey::new("t\"1", "s\u{1}é"),
            user_id: user.into(),
            interests: interests.clone(),
            recent_items: names
                .iter()
                .enumerate()
                .map(|(k, n)| RecentItem { item_id: (*n).into(), action: "vi\new".into(), ts: -(k as i64) * 7 })
                .collect(),
            counts: names.iter().enumerate().map(|(k, n)| (Arc::<str>::from(*n), k as u64 * 1_000_000_007)).collect::<BTreeMap<_, _>>(),
            updated_at: 1_767_225_600_123,
            config_revision: -3,
            resume: ProfileResume {
                more_interests: interests.into_iter().rev().collect(),
                source: "top\\ic".into(),
                offsets: vec![(0, 41), (-1, i64::MAX)],
            },
            interest_decay_days: 30.0,
        }
    }

    use std::sync::Arc;

    #[test]
    fn plain_strings_are_those_serde_json_leaves_as_they_are() {
        for b in 0..=127u8 {
            let s = char::from(b).to_string();
            assert_eq!(plain(&s), serde_json::to_string(&s).unwrap() == format!("\"{s}\""), "byte {b}");
        }
        assert!(plain("é😀\u{7f}\u{2028}"));
    }

    proptest::proptest! {
        /// The word-at-a-time test equals the byte-at-a-time one, wherever the byte sits.
        #[test]
        fn plain_equals_a_byte_loop(s in "(.|[\\x00-\\x21\"\\\\\\x7f]){0,40}") {
            let bytewise = s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
            proptest::prop_assert_eq!(plain(&s), bytewise);
        }
    }

    #[test]
    fn the_encoded_bytes_equal_the_structured_forms_serialized() {
        check(&profile("u1", &[], &[]));
        check(&profile("u\"2\\", &["shoes"], &[1.0 / 3.0]));
        check(&profile(
            "ü\u{7f}\u{0}",
            &["a", "b\t", "\u{2028}", "😀", "</script>"],
            &[f64::NAN, f64::INFINITY, -0.0, 1e-300, 123456789012345680.0],
        ));
    }

    proptest::proptest! {
        #[test]
        fn any_strings_and_scores_encode_as_serde_json_does(
            user in ".{0,12}",
            names in proptest::collection::vec(".{0,10}", 0..6),
            scores in proptest::collection::vec(proptest::num::f64::ANY, 6),
        ) {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            check(&profile(&user, &names, &scores));
        }

        /// A flush's profiles share one buffer: each reads back as it would alone.
        #[test]
        fn profiles_sharing_a_buffer_each_read_as_their_own(
            users in proptest::collection::vec((".{0,12}", proptest::collection::vec(".{0,10}", 0..6)), 1..5),
            scores in proptest::collection::vec(proptest::num::f64::ANY, 6),
        ) {
            let profiles: Vec<UserProfile> = users
                .iter()
                .map(|(user, names)| profile(user, &names.iter().map(String::as_str).collect::<Vec<_>>(), &scores))
                .collect();
            let mut buf = b"not a profile".to_vec();
            let spans: Vec<EncodedSpan> = profiles.iter().map(|p| encode_into(&mut buf, p)).collect();
            let shared = Bytes::from(buf);
            for (p, span) in profiles.iter().zip(spans) {
                let e = EncodedProfile::new(p.key.clone(), &shared, span);
                check_encoded(&e, p);
                proptest::prop_assert_eq!(e, encode(p));
            }
        }
    }
}
