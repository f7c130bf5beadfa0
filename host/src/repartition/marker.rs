//! What travels on the internal topic besides the events themselves, in Kafka headers and one
//! small binary record:
//!
//! - every forwarded event carries [`SOURCE_HEADER`] = `"<source partition>/<source partitions>"`
//!   (ASCII, readable with any Kafka tool), so the pipeline keys its event time by source partition;
//! - a record forwarded unreadable (routed by the hash of its bytes, the pipeline rejects it)
//!   also carries [`SOURCE_POSITION_HEADER`] = `"<source topic>/<partition>/<offset>"`, which its
//!   dead letter keeps, so it names where the bad record was written;
//! - a progress marker is a record with header [`MARKER_HEADER`] = `"1"` whose value is a
//!   [`Marker`]: for one source partition, each tenant's maximum event time forwarded from it so
//!   far and how many of its events were forwarded. The shuffle sends one to every internal
//!   partition after that partition's events, in the same transaction, so a marker read on an
//!   internal partition vouches for every event of its source forwarded before it.
//!
//! Marker value, little-endian: `b"RTSM"`, version `u8` (1), source `i32`, source partitions
//! `i32`, tenant count `u32`, then per tenant: id length `u16`, id bytes (UTF-8), max event
//! time `i64` (ms), events forwarded `u64`.

/// Header of a forwarded event: its source partition and the source topic's partition count.
pub const SOURCE_HEADER: &str = "rtscore-src";
/// Header of a record forwarded unreadable: where it was read (`<topic>/<partition>/<offset>`;
/// topic names hold no `/`).
pub const SOURCE_POSITION_HEADER: &str = "rtscore-src-pos";
/// Header of a progress marker.
pub const MARKER_HEADER: &str = "rtscore-marker";

const MAGIC: &[u8; 4] = b"RTSM";
const VERSION: u8 = 1;

/// Where a forwarded event was read: its source partition, of `sources`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceTag {
    pub source: i32,
    pub sources: i32,
}

impl SourceTag {
    pub fn encode(self) -> String {
        format!("{}/{}", self.source, self.sources)
    }

    /// `None` for a header that is not `"<p>/<n>"` with `0 <= p < n`.
    pub fn decode(value: &[u8]) -> Option<SourceTag> {
        let text = std::str::from_utf8(value).ok()?;
        let (p, n) = text.split_once('/')?;
        let (source, sources) = (p.parse::<i32>().ok()?, n.parse::<i32>().ok()?);
        (0 <= source && source < sources).then_some(SourceTag { source, sources })
    }
}

/// One tenant's progress on a source partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantProgress {
    pub tenant: String,
    pub max_ts: i64,
    pub events: u64,
}

/// A source partition's progress as the shuffle forwarded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub tag: SourceTag,
    pub tenants: Vec<TenantProgress>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarkerError {
    #[error("not a progress marker (bad magic or too short)")]
    NotAMarker,
    #[error("progress marker version {0} is not readable by this build")]
    Version(u8),
    #[error("progress marker is truncated or malformed")]
    Malformed,
}

impl Marker {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(17 + self.tenants.iter().map(|t| t.tenant.len() + 18).sum::<usize>());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.tag.source.to_le_bytes());
        out.extend_from_slice(&self.tag.sources.to_le_bytes());
        let n = u32::try_from(self.tenants.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&n.to_le_bytes());
        for t in self.tenants.iter().take(n as usize) {
            // Tenant ids are short (validated); a longer one would not fit the length field
            // and is cut, which only makes its progress unknown to the pipeline.
            let id = &t.tenant.as_bytes()[..t.tenant.len().min(usize::from(u16::MAX))];
            out.extend_from_slice(&u16::try_from(id.len()).unwrap_or(u16::MAX).to_le_bytes());
            out.extend_from_slice(id);
            out.extend_from_slice(&t.max_ts.to_le_bytes());
            out.extend_from_slice(&t.events.to_le_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Marker, MarkerError> {
        let mut r = Reader(bytes);
        if r.take(4).ok_or(MarkerError::NotAMarker)? != MAGIC {
            return Err(MarkerError::NotAMarker);
        }
        let version = r.take(1).ok_or(MarkerError::NotAMarker)?[0];
        if version != VERSION {
            return Err(MarkerError::Version(version));
        }
        let (source, sources) = (r.i32()?, r.i32()?);
        if !(0 <= source && source < sources) {
            return Err(MarkerError::Malformed);
        }
        let n = r.u32()?;
        let mut tenants = Vec::with_capacity((n as usize).min(bytes.len() / 18));
        for _ in 0..n {
            let len = usize::from(r.u16()?);
            let id = std::str::from_utf8(r.take(len).ok_or(MarkerError::Malformed)?).map_err(|_| MarkerError::Malformed)?;
            let tenant = id.to_string();
            tenants.push(TenantProgress { tenant, max_ts: r.i64()?, events: r.u64()? });
        }
        if !r.0.is_empty() {
            return Err(MarkerError::Malformed);
        }
        Ok(Marker { tag: SourceTag { source, sources }, tenants })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], MarkerError> {
        self.take(N).and_then(|b| b.try_into().ok()).ok_or(MarkerError::Malformed)
    }

    fn u16(&mut self) -> Result<u16, MarkerError> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, MarkerError> {
        self.array().map(u32::from_le_bytes)
    }

    fn i32(&mut self) -> Result<i32, MarkerError> {
        self.array().map(i32::from_le_bytes)
    }

    fn i64(&mut self) -> Result<i64, MarkerError> {
        self.array().map(i64::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, MarkerError> {
        self.array().map(u64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Marker {
        Marker {
            tag: SourceTag { source: 2, sources: 6 },
            tenants: vec![
                TenantProgress { tenant: "shop".into(), max_ts: 1_767_225_600_000, events: 12 },
                TenantProgress { tenant: "vidéo".into(), max_ts: -5, events: u64::MAX },
            ],
        }
    }

    #[test]
    fn a_marker_round_trips_and_its_layout_is_pinned() {
        let bytes = sample().encode();
        assert_eq!(Marker::decode(&bytes), Ok(sample()));
        assert_eq!(&bytes[..5], b"RTSM\x01");
        assert_eq!(&bytes[5..17], &[2, 0, 0, 0, 6, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(&bytes[17..23], b"\x04\x00shop");
        let empty = Marker { tag: SourceTag { source: 0, sources: 1 }, tenants: vec![] };
        assert_eq!(Marker::decode(&empty.encode()), Ok(empty));
    }

    #[test]
    fn a_damaged_marker_is_an_error_never_a_panic() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(Marker::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Marker::decode(&longer), Err(MarkerError::Malformed));
        let mut v2 = bytes.clone();
        v2[4] = 2;
        assert_eq!(Marker::decode(&v2), Err(MarkerError::Version(2)));
        assert_eq!(Marker::decode(br#"{"tenant_id":"t"}"#), Err(MarkerError::NotAMarker));
        let mut huge = bytes[..13].to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Marker::decode(&huge), Err(MarkerError::Malformed));
        let mut outside = bytes;
        outside[5] = 9;
        assert_eq!(Marker::decode(&outside), Err(MarkerError::Malformed), "source 9 of 6");
    }

    #[test]
    fn source_tags_are_readable_text() {
        let tag = SourceTag { source: 3, sources: 12 };
        assert_eq!(tag.encode(), "3/12");
        assert_eq!(SourceTag::decode(b"3/12"), Some(tag));
        for bad in [&b"12/12"[..], b"-1/3", b"3", b"a/b", b"\xff/1", b""] {
            assert_eq!(SourceTag::decode(bad), None, "{bad:?}");
        }
    }
}
