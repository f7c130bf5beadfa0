//! A user profile as it is stored in Redis and read back (DESIGN §4, "Durable profiles"): the
//! hash fields the Redis sink writes ([`profile_fields`]), their parse when a host reads a
//! profile back ([`parse_stored_profile`]), and the key's lifetime ([`profile_ttl_ms`]).
//! Pure: the sink and the pipeline share it without importing each other.
//!
//! Beside the public fields (`interests`, `recent_items`, `counts`, `updated_at`,
//! `config_revision`) a profile carries `resume`, internal to rtscore: the interests beyond the
//! written top ones and, per input partition, the offset of the last event applied, so a host
//! that reads the profile back continues it exactly and skips events it already holds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Interest, RecentItem, UserProfile};

/// The internal hash field holding [`ProfileResume`].
pub const RESUME_FIELD: &str = "resume";
/// Larger fields are refused: a stored profile is a few KiB (bounded interests, recent items,
/// counts), so anything larger is not one of ours.
pub const MAX_FIELD_BYTES: usize = 256 << 10;
/// Interests, recent items, counts and offsets read back, at most (more are cut).
const MAX_ENTRIES: usize = 256;
/// Longest interest name, item id or action read back (events allow 128 bytes).
const MAX_NAME_BYTES: usize = 1024;

/// Half-lives a profile key outlives its last write by default: its interests are then at 1/16
/// of their value (DESIGN §4, "Durable profiles").
pub const PROFILE_TTL_HALF_LIVES: f64 = 4.0;
/// Bounds of the derived profile TTL: at least the former fixed week, at most a year.
pub const MIN_PROFILE_TTL_MS: u64 = 7 * 86_400_000;
pub const MAX_PROFILE_TTL_MS: u64 = 365 * 86_400_000;

/// The lifetime of a profile key: `override_ttl` when given (at least 1 ms), else
/// [`PROFILE_TTL_HALF_LIVES`] half-lives of `interest_decay_days`, clamped to
/// [[`MIN_PROFILE_TTL_MS`], [`MAX_PROFILE_TTL_MS`]]. A 30-day half-life keeps a profile 120 days
/// after its last write.
pub fn profile_ttl_ms(interest_decay_days: f64, override_ttl: Option<Duration>) -> u64 {
    if let Some(ttl) = override_ttl {
        return u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
    }
    let ms = interest_decay_days * PROFILE_TTL_HALF_LIVES * 86_400_000.0;
    if !ms.is_finite() {
        return MIN_PROFILE_TTL_MS;
    }
    // `as` saturates; the clamp bounds it either way.
    (ms as u64).clamp(MIN_PROFILE_TTL_MS, MAX_PROFILE_TTL_MS)
}

/// What a stored profile carries so that a host reading it back continues it exactly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfileResume {
    /// Interests beyond the written top ones (decayed to `updated_at`, like them).
    #[serde(default)]
    pub more_interests: Vec<Interest>,
    /// The input the offsets belong to (the Kafka topic); offsets of another input are ignored.
    #[serde(default)]
    pub source: Arc<str>,
    /// Per input partition, the offset of the last event applied to the profile.
    #[serde(default)]
    pub offsets: Vec<(i32, i64)>,
}

/// The hash fields of a profile, as the Redis sink writes them (DESIGN §6).
pub fn profile_fields(p: &UserProfile) -> [(&'static str, String); 6] {
    [
        ("interests", serde_json::to_string(&p.interests).unwrap_or_default()),
        ("recent_items", serde_json::to_string(&p.recent_items).unwrap_or_default()),
        ("counts", serde_json::to_string(&p.counts).unwrap_or_default()),
        ("updated_at", p.updated_at.to_string()),
        ("config_revision", p.config_revision.to_string()),
        (RESUME_FIELD, serde_json::to_string(&p.resume).unwrap_or_default()),
    ]
}

/// A profile read back: its state as of `updated_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredProfile {
    /// Every interest stored (written and `resume.more_interests`), decayed to `updated_at`.
    pub interests: Vec<Interest>,
    /// Most recent first.
    pub recent_items: Vec<RecentItem>,
    pub counts: Vec<(Arc<str>, u64)>,
    pub updated_at: i64,
    /// The input the offsets belong to, and the offsets (empty for profiles written before
    /// `resume` existed).
    pub source: Arc<str>,
    pub offsets: Vec<(i32, i64)>,
}

/// Why a stored hash is not a profile this host can continue (it then starts empty).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoredProfileError {
    #[error("stored profile has no `{0}` field")]
    Missing(&'static str),
    #[error("stored profile field `{field}` is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// Parses a profile hash as read from Redis: `Ok(None)` for no hash (no key), an error naming
/// the field when it is not a profile. Bounded: oversized fields are refused, long lists cut.
pub fn parse_stored_profile(fields: &HashMap<String, String>) -> Result<Option<StoredProfile>, StoredProfileError> {
    if fields.is_empty() {
        return Ok(None);
    }
    let field = |name: &'static str| -> Result<&str, StoredProfileError> {
        let v = fields.get(name).ok_or(StoredProfileError::Missing(name))?;
        if v.len() > MAX_FIELD_BYTES {
            return Err(StoredProfileError::Invalid { field: name, reason: format!("{} bytes, more than {MAX_FIELD_BYTES}", v.len()) });
        }
        Ok(v)
    };
    let invalid = |field: &'static str| move |e: serde_json::Error| StoredProfileError::Invalid { field, reason: e.to_string() };
    let updated_at: i64 = field("updated_at")?
        .parse()
        .map_err(|e: std::num::ParseIntError| StoredProfileError::Invalid { field: "updated_at", reason: e.to_string() })?;
    let mut interests: Vec<Interest> = serde_json::from_str(field("interests")?).map_err(invalid("interests"))?;
    let recent_items: Vec<RecentItem> = serde_json::from_str(field("recent_items")?).map_err(invalid("recent_items"))?;
    let counts: std::collections::BTreeMap<Arc<str>, u64> = serde_json::from_str(field("counts")?).map_err(invalid("counts"))?;
    // Absent in profiles written before it existed: they continue without the guard.
    let resume: ProfileResume = match fields.get(RESUME_FIELD) {
        Some(_) => serde_json::from_str(field(RESUME_FIELD)?).map_err(invalid(RESUME_FIELD))?,
        None => ProfileResume::default(),
    };
    interests.extend(resume.more_interests);
    interests.truncate(MAX_ENTRIES);
    if let Some(i) = interests.iter().find(|i| !i.score.is_finite() || i.name.len() > MAX_NAME_BYTES) {
        return Err(StoredProfileError::Invalid {
            field: "interests",
            reason: format!("interest {:?} is not a finite score with a short name", short(&i.name)),
        });
    }
    let mut recent_items = recent_items;
    recent_items.truncate(MAX_ENTRIES);
    if recent_items.iter().any(|r| r.item_id.len() > MAX_NAME_BYTES || r.action.len() > MAX_NAME_BYTES) {
        return Err(StoredProfileError::Invalid { field: "recent_items", reason: "an item id or action is too long".into() });
    }
    if counts.keys().any(|a| a.len() > MAX_NAME_BYTES) {
        return Err(StoredProfileError::Invalid { field: "counts", reason: "an action name is too long".into() });
    }
    let mut offsets = resume.offsets;
    offsets.truncate(MAX_ENTRIES);
    Ok(Some(StoredProfile {
        interests,
        recent_items,
        counts: counts.into_iter().take(MAX_ENTRIES).collect(),
        updated_at,
        source: resume.source,
        offsets,
    }))
}

fn short(s: &str) -> String {
    crate::text::cap_text(s, 64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ScenarioKey;
    use std::collections::BTreeMap;

    const DAY: u64 = 86_400_000;

    fn profile() -> UserProfile {
        UserProfile {
            key: ScenarioKey::new("t", "s"),
            user_id: "u1".into(),
            interests: vec![Interest { name: "shoes".into(), score: 1.0 / 3.0 }],
            recent_items: vec![RecentItem { item_id: "i1".into(), action: "view".into(), ts: 5 }],
            counts: BTreeMap::from([("view".into(), 2)]),
            updated_at: 7,
            config_revision: 3,
            resume: ProfileResume {
                more_interests: vec![Interest { name: "red".into(), score: 1e-9 }],
                source: "events".into(),
                offsets: vec![(0, 41), (3, 9)],
            },
            interest_decay_days: 30.0,
        }
    }

    fn as_hash(p: &UserProfile) -> HashMap<String, String> {
        profile_fields(p).into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    #[test]
    fn the_ttl_follows_the_half_life_within_bounds_unless_overridden() {
        assert_eq!(profile_ttl_ms(30.0, None), 120 * DAY);
        assert_eq!(profile_ttl_ms(0.5, None), MIN_PROFILE_TTL_MS, "short half-lives keep the former week");
        assert_eq!(profile_ttl_ms(1000.0, None), MAX_PROFILE_TTL_MS);
        assert_eq!(profile_ttl_ms(f64::NAN, None), MIN_PROFILE_TTL_MS);
        assert_eq!(profile_ttl_ms(30.0, Some(Duration::from_secs(3600))), 3_600_000);
        assert_eq!(profile_ttl_ms(30.0, Some(Duration::ZERO)), 1);
    }

    #[test]
    fn a_written_profile_reads_back_exactly() {
        let p = profile();
        let s = parse_stored_profile(&as_hash(&p)).unwrap().unwrap();
        assert_eq!(s.interests, vec![p.interests[0].clone(), p.resume.more_interests[0].clone()], "scores round-trip bit for bit");
        assert_eq!(s.recent_items, p.recent_items);
        assert_eq!(s.counts, vec![("view".into(), 2)]);
        assert_eq!((s.updated_at, &*s.source, s.offsets), (7, "events", vec![(0, 41), (3, 9)]));
    }

    #[test]
    fn no_hash_is_no_profile_and_a_profile_without_resume_still_reads() {
        assert_eq!(parse_stored_profile(&HashMap::new()), Ok(None));
        let mut h = as_hash(&profile());
        h.remove(RESUME_FIELD);
        let s = parse_stored_profile(&h).unwrap().unwrap();
        assert_eq!((s.interests.len(), s.offsets.len()), (1, 0));
    }

    #[test]
    fn junk_is_refused_naming_the_field() {
        let h = as_hash(&profile());
        let with = |k: &str, v: &str| {
            let mut h = h.clone();
            h.insert(k.into(), v.into());
            parse_stored_profile(&h).unwrap_err()
        };
        assert!(matches!(with("interests", "{"), StoredProfileError::Invalid { field: "interests", .. }));
        assert!(matches!(with("updated_at", "soon"), StoredProfileError::Invalid { field: "updated_at", .. }));
        assert!(matches!(with("resume", &"x".repeat(MAX_FIELD_BYTES + 1)), StoredProfileError::Invalid { field: "resume", .. }));
        let mut h2 = h.clone();
        h2.remove("counts");
        assert_eq!(parse_stored_profile(&h2), Err(StoredProfileError::Missing("counts")));
        let long = format!(r#"[{{"name":"{}","score":1.0}}]"#, "n".repeat(MAX_NAME_BYTES + 1));
        assert!(matches!(with("interests", &long), StoredProfileError::Invalid { field: "interests", .. }));
    }
}
