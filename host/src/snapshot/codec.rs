//! The one place that knows the snapshot byte format: a 4-byte magic, a little-endian `u16`
//! format version, then a bincode 2 payload (serde, standard config). Everything else in the
//! host calls [`encode`] and [`decode`], so replacing bincode (3.0.0 on crates.io is a
//! tombstone) with a format-compatible successor such as wincode touches only this file.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Identifies an rtscore state snapshot.
pub const MAGIC: [u8; 4] = *b"RTSS";
/// The format this build writes. Bump it when a snapshotted type changes shape, and keep a
/// reader for the previous version so an upgraded host can load what the old one wrote.
///
/// 2: partition states carry each tenant's max event time (`PartitionState::tenant_max_ts`).
/// 3: window states carry declared features (`hot_score.features`) and their aggregates.
/// 4: partition states of a repartitioned input carry progress per source partition
///    (`PartitionState::sources`); a state without them is still written as format 3.
pub const FORMAT_VERSION: u16 = 4;
/// Versions this build can read.
pub const READABLE_VERSIONS: &[u16] = &[1, 2, 3, 4];

const HEADER_LEN: usize = MAGIC.len() + 2;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("not an rtscore snapshot (bad magic or shorter than its header)")]
    NotASnapshot,
    #[error("snapshot format version {found} is not readable by this build (reads {readable:?}); upgrade the host")]
    UnknownVersion { found: u16, readable: &'static [u16] },
    #[error("snapshot payload is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot encode snapshot: {0}")]
    Encode(String),
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Header + payload.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, SnapshotError> {
    encode_as(FORMAT_VERSION, value)
}

/// Header + payload in an earlier format `version`, for a value whose shape is that format's
/// (a state that needs nothing newer is written as before, so older hosts still read it).
pub fn encode_as<T: Serialize>(version: u16, value: &T) -> Result<Vec<u8>, SnapshotError> {
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    bincode::serde::encode_into_std_write(value, &mut out, config()).map_err(|e| SnapshotError::Encode(e.to_string()))?;
    Ok(out)
}

/// The format version of an encoded snapshot.
pub fn version(bytes: &[u8]) -> Result<u16, SnapshotError> {
    if bytes.len() < HEADER_LEN || bytes[..MAGIC.len()] != MAGIC {
        return Err(SnapshotError::NotASnapshot);
    }
    Ok(u16::from_le_bytes([bytes[4], bytes[5]]))
}

/// Checks the header and decodes the payload; trailing bytes are corruption. For a type whose
/// shape is the same in every readable version; see [`decode_upgrading`] for one that changed.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, SnapshotError> {
    let found = version(bytes)?;
    if !READABLE_VERSIONS.contains(&found) {
        return Err(SnapshotError::UnknownVersion { found, readable: READABLE_VERSIONS });
    }
    decode_payload(bytes)
}

/// Like [`decode`] for a type that later formats changed: a format 1 snapshot is read as `V1`,
/// a format 2 one as `V2`, a format 3 one as `V3`, and converted.
pub fn decode_upgrading<T, V1, V2, V3>(bytes: &[u8]) -> Result<T, SnapshotError>
where
    T: DeserializeOwned,
    V1: DeserializeOwned + Into<T>,
    V2: DeserializeOwned + Into<T>,
    V3: DeserializeOwned + Into<T>,
{
    match version(bytes)? {
        1 => decode_payload::<V1>(bytes).map(Into::into),
        2 => decode_payload::<V2>(bytes).map(Into::into),
        3 => decode_payload::<V3>(bytes).map(Into::into),
        found if READABLE_VERSIONS.contains(&found) => decode_payload(bytes),
        found => Err(SnapshotError::UnknownVersion { found, readable: READABLE_VERSIONS }),
    }
}

fn decode_payload<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, SnapshotError> {
    let payload = &bytes[HEADER_LEN..];
    let (value, used) = bincode::serde::decode_from_slice(payload, config()).map_err(|e| SnapshotError::Corrupt(e.to_string()))?;
    if used != payload.len() {
        return Err(SnapshotError::Corrupt(format!("{} trailing bytes", payload.len() - used)));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct Sample {
        name: String,
        values: Vec<(i64, f64)>,
        maybe: Option<u32>,
    }

    fn sample() -> Sample {
        Sample { name: "t/s".into(), values: vec![(1, 0.5), (-7, f64::MAX)], maybe: None }
    }

    #[test]
    fn round_trip_keeps_the_value() {
        let bytes = encode(&sample()).unwrap();
        assert_eq!(&bytes[..4], b"RTSS");
        assert_eq!(version(&bytes).unwrap(), FORMAT_VERSION);
        assert_eq!(decode::<Sample>(&bytes).unwrap(), sample());
    }

    #[test]
    fn unknown_version_is_a_clear_error() {
        let mut bytes = encode(&sample()).unwrap();
        bytes[4..6].copy_from_slice(&999u16.to_le_bytes());
        let err = decode::<Sample>(&bytes).unwrap_err();
        assert!(matches!(err, SnapshotError::UnknownVersion { found: 999, .. }), "{err}");
        assert!(err.to_string().contains("version 999"), "{err}");
    }

    #[test]
    fn foreign_truncated_and_padded_bytes_are_refused() {
        assert!(matches!(decode::<Sample>(b"{\"json\":1}"), Err(SnapshotError::NotASnapshot)));
        assert!(matches!(decode::<Sample>(b"RTS"), Err(SnapshotError::NotASnapshot)));
        let bytes = encode(&sample()).unwrap();
        assert!(matches!(decode::<Sample>(&bytes[..bytes.len() - 3]), Err(SnapshotError::Corrupt(_))));
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(matches!(decode::<Sample>(&padded), Err(SnapshotError::Corrupt(_))));
    }
}
