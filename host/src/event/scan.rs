//! A checked scanner for the common event: one flat object of the canonical fields, strings
//! without escapes, `ts` a plain integer. It reads only what [`RawEvent`] holds and answers
//! `None` whenever it is not sure serde_json would read the same thing (escapes, `null`, a
//! duplicate field, `props`, a fractional `ts`, nested unknown values, any syntax error), and
//! the caller then parses with serde_json. So an accepted event is exactly what serde_json
//! gives, and every reject, JSON errors included, still comes from serde_json's path:
//! reasons stay byte-identical while the common event skips serde's machinery.

use std::borrow::Cow;

use smallvec::SmallVec;

use super::parse::{RawEvent, RawTs, Tags, Text};

/// Bytes that end the fast read of a string: the closing quote, an escape, or a control
/// character (which JSON forbids unescaped, so serde_json's error must speak for it).
const STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// The fields the scanner recognises, as bits of the "seen" mask (a duplicate falls back:
/// serde reports it).
const TENANT: u16 = 1;
const SCENARIO: u16 = 1 << 1;
const USER: u16 = 1 << 2;
const ITEM: u16 = 1 << 3;
const ACTION: u16 = 1 << 4;
const TS: u16 = 1 << 5;
const CATEGORY: u16 = 1 << 6;
const TAGS: u16 = 1 << 7;
const WATCH: u16 = 1 << 8;
const EVENT_ID: u16 = 1 << 9;

struct Cursor<'a> {
    /// The whole record, checked as UTF-8 once: strings are slices of it at ASCII quotes, so
    /// no string is checked again.
    text: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// JSON's four whitespace bytes, as serde_json skips them.
    #[inline(always)]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    #[inline(always)]
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// A string without escapes or control characters, at the cursor.
    #[inline(always)]
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        self.i = stop_at(self.b, self.i)?;
        self.eat(b'"')?;
        // Both ends sit next to an ASCII quote, so on character boundaries.
        self.text.get(start..self.i - 1)
    }

    /// The maximal run of number bytes at the cursor (its syntax is checked by the reader).
    #[inline(always)]
    fn number_token(&mut self) -> &'a [u8] {
        let start = self.i;
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.peek() {
            self.i += 1;
        }
        &self.b[start..self.i]
    }
}

/// Eight copies of byte `x`.
const fn splat(x: u8) -> u64 {
    u64::from_ne_bytes([x; 8])
}

/// The index of the first [`STOP`] byte at or after `i`, eight bytes at a time: ids are a
/// handful of words long, so most strings end within one or two steps.
#[inline(always)]
fn stop_at(b: &[u8], mut i: usize) -> Option<usize> {
    const HIGH: u64 = splat(0x80);
    while let Some(chunk) = b.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().ok()?);
        // Per byte, the high bit set where it is below 0x20, a quote or a backslash. Each test
        // may also flag bytes above the first true hit (borrows), never below it, so the lowest
        // flagged byte is the first stop byte.
        let control = w.wrapping_sub(splat(0x20)) & !w;
        let quote = w ^ splat(b'"');
        let quote = quote.wrapping_sub(splat(1)) & !quote;
        let backslash = w ^ splat(b'\\');
        let backslash = backslash.wrapping_sub(splat(1)) & !backslash;
        let hits = (control | quote | backslash) & HIGH;
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    while !STOP[*b.get(i)? as usize] {
        i += 1;
    }
    Some(i)
}

/// A plain positive integer without leading zeros, of at most 18 digits (so it fits an i64
/// and serde_json reads it as that integer).
#[inline(always)]
fn plain_uint(tok: &[u8]) -> Option<u64> {
    match tok {
        [b'1'..=b'9', rest @ ..] if rest.len() < 18 => {
            tok.iter().try_fold(0u64, |n, &d| d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0')))
        }
        _ => None,
    }
}

/// `"key":` as a 16-byte little-endian word and a mask of its length, so the key a producer
/// writes next is compared in one load instead of a `memcmp` call per field.
struct Pattern {
    word: u128,
    mask: u128,
    bytes: &'static [u8],
    bit: u16,
}

const fn pattern(bytes: &'static [u8], bit: u16) -> Pattern {
    assert!(bytes.len() <= 16, "a pattern fits one 16-byte word");
    let mut word = [0u8; 16];
    let mut i = 0;
    while i < bytes.len() {
        word[i] = bytes[i];
        i += 1;
    }
    let mask = if bytes.len() == 16 { u128::MAX } else { (1u128 << (8 * bytes.len())) - 1 };
    Pattern { word: u128::from_le_bytes(word), mask, bytes, bit }
}

impl Pattern {
    #[inline(always)]
    fn starts(&self, rest: &[u8]) -> bool {
        match rest.first_chunk::<16>() {
            Some(head) => (u128::from_le_bytes(*head) ^ self.word) & self.mask == 0,
            None => rest.starts_with(self.bytes),
        }
    }
}

/// The canonical fields in the order the generator and most producers write them, each as
/// `"key":`.
const IN_ORDER: [Pattern; 10] = [
    pattern(b"\"tenant_id\":", TENANT),
    pattern(b"\"scenario_id\":", SCENARIO),
    pattern(b"\"user_id\":", USER),
    pattern(b"\"item_id\":", ITEM),
    pattern(b"\"action\":", ACTION),
    pattern(b"\"ts\":", TS),
    pattern(b"\"category\":", CATEGORY),
    pattern(b"\"tags\":", TAGS),
    pattern(b"\"watch_time_ms\":", WATCH),
    pattern(b"\"event_id\":", EVENT_ID),
];

/// A key's bit (0: a field serde ignores); `None` for `props`, which serde_json reads.
#[inline(always)]
fn key_bit(key: &str) -> Option<u16> {
    Some(match key {
        "tenant_id" => TENANT,
        "scenario_id" => SCENARIO,
        "user_id" => USER,
        "item_id" => ITEM,
        "action" => ACTION,
        "ts" => TS,
        "category" => CATEGORY,
        "tags" => TAGS,
        "watch_time_ms" => WATCH,
        "event_id" => EVENT_ID,
        "props" => return None,
        _ => 0,
    })
}

/// Reads `bytes` as the common event, or `None` for serde_json to read it.
#[cfg(test)]
pub(super) fn scan(bytes: &[u8]) -> Option<RawEvent<'_>> {
    let mut raw = RawEvent::default();
    scan_into(bytes, &mut raw).map(|()| raw)
}

/// Reads `bytes` as the common event into `raw` (default on entry), or `None` for serde_json to
/// read it (`raw` then holds what was read so far). The caller's `raw` is filled in place: the
/// ~300-byte value is not copied out per event.
pub(super) fn scan_into<'a>(bytes: &'a [u8], raw: &mut RawEvent<'a>) -> Option<()> {
    let text = simdutf8::basic::from_utf8(bytes).ok()?;
    let mut c = Cursor { text, b: bytes, i: 0 };
    let mut seen = 0u16;
    let mut next = 0usize;
    c.ws();
    c.eat(b'{')?;
    c.ws();
    if c.eat(b'}').is_none() {
        loop {
            // Producers write the fields in one order: the key after the previous one is tried
            // first as a whole (`"key":`), before reading a key and matching it.
            let bit = if let Some(p) = IN_ORDER.get(next)
                && p.starts(&c.b[c.i..])
            {
                c.i += p.bytes.len();
                next += 1;
                c.ws();
                p.bit
            } else {
                let bit = key_bit(c.string()?)?;
                c.ws();
                c.eat(b':')?;
                c.ws();
                next = IN_ORDER.iter().position(|p| p.bit == bit).map_or(next, |p| p + 1);
                bit
            };
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            let text = |c: &mut Cursor<'a>| c.string().map(|s| Some(Text(Cow::Borrowed(s))));
            match bit {
                TENANT => raw.tenant_id = text(&mut c)?,
                SCENARIO => raw.scenario_id = text(&mut c)?,
                USER => raw.user_id = text(&mut c)?,
                ITEM => raw.item_id = text(&mut c)?,
                ACTION => raw.action = text(&mut c)?,
                CATEGORY => raw.category = text(&mut c)?,
                EVENT_ID => raw.event_id = text(&mut c)?,
                TS => {
                    let n = plain_uint(c.number_token())?;
                    raw.ts = Some(RawTs::Int(i64::try_from(n).ok()?));
                }
                WATCH => {
                    let tok = c.number_token();
                    raw.watch_time_ms = Some(match plain_uint(tok) {
                        // serde_json reads an integer as u64 and converts; so does this.
                        Some(n) => n as f64,
                        // Anything else through serde_json's own float reading, so the value
                        // is bit-identical.
                        None => serde_json::from_slice::<f64>(tok).ok()?,
                    });
                }
                TAGS => raw.tags = Some(tags(&mut c)?),
                _ => skip_scalar(&mut c)?,
            }
            c.ws();
            match c.peek()? {
                b',' => {
                    c.i += 1;
                    c.ws();
                }
                b'}' => {
                    c.i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    c.ws();
    (c.i == bytes.len()).then_some(())
}

/// `["a","b",...]` of plain strings.
#[inline(always)]
fn tags<'a>(c: &mut Cursor<'a>) -> Option<Tags<'a>> {
    c.eat(b'[')?;
    c.ws();
    let mut out = SmallVec::new();
    if c.eat(b']').is_some() {
        return Some(out);
    }
    loop {
        out.push(Cow::Borrowed(c.string()?));
        c.ws();
        match c.peek()? {
            b',' => {
                c.i += 1;
                c.ws();
            }
            b']' => {
                c.i += 1;
                return Some(out);
            }
            _ => return None,
        }
    }
}

/// An unknown field's value, which serde_json checks and ignores: a plain string, a number
/// serde_json reads, or a literal. Arrays and objects fall back.
fn skip_scalar(c: &mut Cursor<'_>) -> Option<()> {
    match c.peek()? {
        b'"' => c.string().map(drop),
        b't' | b'f' | b'n' => {
            let rest = &c.b[c.i..];
            let lit: &[u8] = [&b"true"[..], b"false", b"null"].into_iter().find(|l| rest.starts_with(l))?;
            c.i += lit.len();
            Some(())
        }
        _ => {
            let tok = c.number_token();
            serde_json::from_slice::<serde::de::IgnoredAny>(tok).ok().map(drop)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse::serde_raw;

    fn same_as_serde(s: &str) {
        let fast = scan(s.as_bytes()).unwrap_or_else(|| panic!("scanned: {s}"));
        let slow = serde_raw(s.as_bytes()).unwrap_or_else(|e| panic!("serde: {e}: {s}"));
        assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "{s}");
    }

    #[test]
    fn reads_what_serde_reads() {
        same_as_serde(
            r#"{"tenant_id":"shop","scenario_id":"home","user_id":"u1","item_id":"i1","action":"click","ts":1767225596681,"category":"a","tags":["x","y"],"extra":1}"#,
        );
        same_as_serde(" { \"ts\" : 1767225596681 , \"tags\" : [ ] , \"watch_time_ms\" : 1500.25 , \"x\" : true , \"y\" : \"é\" }\r\n");
        same_as_serde(r#"{"watch_time_ms":3e2,"item_id":"ï","u":-1.5e-3,"n":null,"f":false}"#);
        same_as_serde("{}");
    }

    #[test]
    fn leaves_to_serde_what_it_is_not_sure_of() {
        for s in [
            r#"{"item_id":"a\"b"}"#,
            r#"{"item_id":null}"#,
            r#"{"item_id":"a","item_id":"b"}"#,
            r#"{"ts":"2026-01-01T00:00:00Z"}"#,
            r#"{"ts":1767225600000.0}"#,
            r#"{"ts":01767225600000}"#,
            r#"{"ts":-1}"#,
            r#"{"ts":12345678901234567890}"#,
            r#"{"props":{}}"#,
            r#"{"x":[1]}"#,
            r#"{"x":{"a":1}}"#,
            r#"{"x":1.2.3}"#,
            r#"{"x":tru}"#,
            r#"{"tenant\u005fid":"t"}"#,
            "{\"item_id\":\"a\u{1}\"}",
            r#"{"a":1,}"#,
            r#"{"a":1} x"#,
            r#"[1]"#,
            r#"{"a":1"#,
            "",
        ] {
            assert!(scan(s.as_bytes()).is_none(), "{s}");
        }
        assert!(scan(b"{\"item_id\":\"\xff\"}").is_none());
    }

    #[test]
    fn stop_at_finds_the_first_stop_byte_anywhere() {
        for stop in [b'"', b'\\', 0u8, 0x1f, b'\n'] {
            for at in 0..20 {
                let mut b: Vec<u8> = (0..24).map(|i| [b'a', 0x7f, 0xc3, 0xa9, b' ', 0x20, 0x80, 0xff][i % 8]).collect();
                b[at] = stop;
                assert_eq!(stop_at(&b, 0), Some(at), "{stop:#x} at {at}");
                assert_eq!(stop_at(&b, at), Some(at));
            }
        }
        assert_eq!(stop_at(b"abcdefghijkl", 0), None);
        assert_eq!(stop_at(b"", 0), None);
    }

    const LINE: &str = r#"{"tenant_id":"shop","scenario_id":"home","user_id":"u1","item_id":"item-7","action":"view","ts":1767225596681,"category":"a","tags":["x","y"],"watch_time_ms":1500,"extra":-1.5e3,"ok":true}"#;

    // The contract: whatever the scanner accepts, serde_json reads the same way.
    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3_000))]

        #[test]
        fn a_mutated_event_is_scanned_as_serde_reads_it_or_left_to_serde(
            edits in proptest::collection::vec((0usize..LINE.len(), proptest::prelude::any::<u8>()), 1..4),
            cut in 0usize..=LINE.len(),
        ) {
            let mut bytes = LINE.as_bytes().to_vec();
            for (at, b) in edits {
                bytes[at] = b;
            }
            bytes.truncate(cut.max(1));
            if let Some(fast) = scan(&bytes) {
                let slow = serde_raw(&bytes);
                proptest::prop_assert!(slow.is_ok(), "scanned what serde refuses: {:?}", String::from_utf8_lossy(&bytes));
                proptest::prop_assert_eq!(format!("{:?}", Some(fast)), format!("{:?}", slow.ok()));
            }
        }

        #[test]
        fn arbitrary_bytes_are_scanned_as_serde_reads_them_or_left_to_serde(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ) {
            if let Some(fast) = scan(&bytes) {
                proptest::prop_assert_eq!(format!("{:?}", Some(fast)), format!("{:?}", serde_raw(&bytes).ok()));
            }
        }
    }
}
