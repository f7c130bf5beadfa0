//! The Redis key layout (DESIGN §6), in one place: the Redis sink writes these keys,
//! `rtscore status` and the event-time switch ([`super::switch`]) read them, and nothing else
//! spells a key. It lives in `config`, beside the scenario key it is built from, so the
//! switch reads it without importing the sinks.

//!
//! The first segment is `rt` unless a host runs with `--redis-key-prefix` ([`KeyLayout`]: a
//! platform keeping its existing consumers' keys); the free functions spell the default layout.

use std::sync::Arc;
use std::time::Duration;

use super::ScenarioKey;

/// Today's first key segment: `rt:{tenant}:{scenario}:...`.
pub const DEFAULT_PREFIX: &str = "rt";

/// The key layout of one host: DESIGN §6 under a first segment (`rt` by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    prefix: Arc<str>,
}

impl Default for KeyLayout {
    fn default() -> Self {
        Self { prefix: DEFAULT_PREFIX.into() }
    }
}

impl KeyLayout {
    /// A layout under `prefix`: 1 to 64 of `[A-Za-z0-9_.:-]`, not ending in `:` (the layout
    /// adds it). Glob characters are refused: the prefix goes into `SCAN MATCH` patterns.
    pub fn new(prefix: &str) -> Result<Self, String> {
        let ok_chars = prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
        if !(1..=64).contains(&prefix.len()) || !ok_chars || prefix.ends_with(':') || prefix.starts_with(':') {
            return Err(format!("invalid Redis key prefix {prefix:?}: 1 to 64 of [A-Za-z0-9_.:-], not starting or ending with `:`"));
        }
        Ok(Self { prefix: prefix.into() })
    }

    /// The first segment, e.g. `rt`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}:{tenant}:{scenario}`, the start of every key of a scenario.
    pub fn scenario(&self, k: &ScenarioKey) -> String {
        format!("{}:{}:{}", self.prefix, k.tenant_id, k.scenario_id)
    }

    pub fn hot(&self, k: &ScenarioKey) -> String {
        format!("{}:hot", self.scenario(k))
    }

    pub fn hot_shadow(&self, k: &ScenarioKey) -> String {
        format!("{}:hot:shadow", self.scenario(k))
    }

    pub fn profile(&self, k: &ScenarioKey, user_id: &str) -> String {
        format!("{}:profile:{user_id}", self.scenario(k))
    }

    pub fn metrics(&self, k: &ScenarioKey, window_start: i64) -> String {
        format!("{}:metrics:{window_start}", self.scenario(k))
    }

    pub fn status(&self, k: &ScenarioKey) -> String {
        format!("{}:status", self.scenario(k))
    }

    /// A `SCAN MATCH` pattern of the status keys of `tenant` (all tenants with `None`).
    pub fn status_pattern(&self, tenant: Option<&str>) -> String {
        format!("{}:{}:*:status", self.prefix, tenant.unwrap_or("*"))
    }

    /// `tenant/scenario` of a status key of this layout.
    pub fn scenario_of_status(&self, key: &str) -> String {
        let rest = key.strip_prefix(&*self.prefix).and_then(|r| r.strip_prefix(':')).unwrap_or(key);
        rest.trim_end_matches(":status").replacen(':', "/", 1)
    }
}

/// Key lifetimes a host was told to use instead of the defaults (`--redis-ttl KIND=DURATION`);
/// `None` keeps the default. The profile default follows the scenario (see the Redis sink).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TtlOverrides {
    pub hot: Option<Duration>,
    pub status: Option<Duration>,
    pub metrics: Option<Duration>,
    pub profile: Option<Duration>,
}

/// The key kinds `--redis-ttl` names.
pub const TTL_KINDS: [&str; 4] = ["hot", "status", "metrics", "profile"];

/// Shortest and longest accepted TTL: a key must outlive a window emission; Redis takes
/// milliseconds as a signed 64-bit integer, and ten years is past any retention.
const MIN_TTL: Duration = Duration::from_secs(1);
const MAX_TTL: Duration = Duration::from_secs(3650 * 86_400);

impl TtlOverrides {
    /// Applies one `KIND=DURATION` (`hot=7d`, `metrics=30d`, `status=12h`, `profile=90m`).
    pub fn set(&mut self, spec: &str) -> Result<(), String> {
        let (kind, value) = spec.split_once('=').ok_or_else(|| format!("expected KIND=DURATION (e.g. hot=7d), got {spec:?}"))?;
        let d = parse_duration(value.trim()).map_err(|e| format!("{kind}: {e}"))?;
        if !(MIN_TTL..=MAX_TTL).contains(&d) {
            return Err(format!("{kind}: a TTL must be between 1s and 3650d, got {value}"));
        }
        let slot = match kind.trim() {
            "hot" => &mut self.hot,
            "status" => &mut self.status,
            "metrics" => &mut self.metrics,
            "profile" => &mut self.profile,
            other => return Err(format!("unknown key kind {other:?}; known: {}", TTL_KINDS.join(", "))),
        };
        *slot = Some(d);
        Ok(())
    }
}

/// A humane duration: a whole number with a unit, `ms`, `s`, `m`, `h` or `d` (`7d`, `90m`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = s.split_at(digits);
    let n: u64 = n.parse().map_err(|_| format!("expected a duration like 7d, 12h, 30m, 45s or 500ms, got {s:?}"))?;
    let ms_per = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("unknown unit in {s:?}; use ms, s, m, h or d")),
    };
    n.checked_mul(ms_per).map(Duration::from_millis).ok_or_else(|| format!("{s:?} is too long"))
}

/// `rt:{tenant}:{scenario}`, the prefix of every key of a scenario.
pub fn prefix(k: &ScenarioKey) -> String {
    format!("rt:{}:{}", k.tenant_id, k.scenario_id)
}

/// The latest hot list (a sorted set), and beside it `…:hot:meta` (a hash).
pub fn hot(k: &ScenarioKey) -> String {
    format!("{}:hot", prefix(k))
}

/// The shadow candidate's latest list.
pub fn hot_shadow(k: &ScenarioKey) -> String {
    format!("{}:hot:shadow", prefix(k))
}

/// The hash of a list's window and revision, beside the list key `list`.
pub fn meta(list: &str) -> String {
    format!("{list}:meta")
}

/// One user's profile.
pub fn profile(k: &ScenarioKey, user_id: &str) -> String {
    format!("{}:profile:{user_id}", prefix(k))
}

/// One metrics window, by its start (epoch ms).
pub fn metrics(k: &ScenarioKey, window_start: i64) -> String {
    format!("{}:metrics:{window_start}", prefix(k))
}

/// The per-item hash of a metrics window (`metrics.per_item`), beside the window's hash.
pub fn metrics_items(metrics: &str) -> String {
    format!("{metrics}:items")
}

/// The per-item values of a metrics window's plugin (`metrics.plugin`), beside the window's hash.
pub fn metrics_plugin_items(metrics: &str) -> String {
    format!("{metrics}:plugin_items")
}

/// The per-item values of a metrics window's shadow candidate plugin (`candidate.metrics.plugin`).
pub fn metrics_shadow_items(metrics: &str) -> String {
    format!("{metrics}:shadow_items")
}

/// What a host applies for the scenario (a hash).
pub fn status(k: &ScenarioKey) -> String {
    format!("{}:status", prefix(k))
}

/// A `SCAN MATCH` pattern of the status keys of `tenant` (all tenants with `None`).
pub fn status_pattern(tenant: Option<&str>) -> String {
    format!("rt:{}:*:status", tenant.unwrap_or("*"))
}

/// One input partition's stored state (a hash), for the consumer group `group` reading
/// `topic`: internal to rtscore, not part of the DESIGN §6 output contract.
pub fn snapshot(group: &str, topic: &str, partition: i32) -> String {
    format!("rtscore:snapshot:{group}:{topic}:{partition}")
}

/// One chunk of a stored partition snapshot: version `version` (unique per save), chunk `i`.
/// Outside the `rtscore:snapshot:` prefix, so a scan of snapshots finds one key per partition.
pub fn snapshot_chunk(group: &str, topic: &str, partition: i32, version: &str, i: usize) -> String {
    format!("rtscore:snapshot-chunk:{group}:{topic}:{partition}:{version}:{i}")
}

/// `tenant/scenario` of a status key.
pub fn scenario_of_status(key: &str) -> String {
    key.trim_start_matches("rt:").trim_end_matches(":status").replacen(':', "/", 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_design_layout() {
        let k = ScenarioKey::new("shop", "home");
        assert_eq!(hot(&k), "rt:shop:home:hot");
        assert_eq!(meta(&hot(&k)), "rt:shop:home:hot:meta");
        assert_eq!(meta(&hot_shadow(&k)), "rt:shop:home:hot:shadow:meta");
        assert_eq!(profile(&k, "u1"), "rt:shop:home:profile:u1");
        assert_eq!(metrics(&k, 60_000), "rt:shop:home:metrics:60000");
        assert_eq!(metrics_items(&metrics(&k, 60_000)), "rt:shop:home:metrics:60000:items");
        assert_eq!(status(&k), "rt:shop:home:status");
        assert_eq!(status_pattern(Some("shop")), "rt:shop:*:status");
        assert_eq!(scenario_of_status(&status(&k)), "shop/home");
        assert_eq!(snapshot("g", "events", 3), "rtscore:snapshot:g:events:3");
        let d = KeyLayout::default();
        assert_eq!(
            (d.hot(&k), d.status_pattern(None), d.scenario_of_status(&d.status(&k))),
            (hot(&k), status_pattern(None), "shop/home".into())
        );
    }

    #[test]
    fn a_custom_prefix_moves_every_scenario_key() {
        let k = ScenarioKey::new("shop", "home");
        let l = KeyLayout::new("reco:v2").unwrap();
        assert_eq!(l.hot(&k), "reco:v2:shop:home:hot");
        assert_eq!(meta(&l.hot_shadow(&k)), "reco:v2:shop:home:hot:shadow:meta");
        assert_eq!(l.profile(&k, "u1"), "reco:v2:shop:home:profile:u1");
        assert_eq!(l.metrics(&k, 60_000), "reco:v2:shop:home:metrics:60000");
        assert_eq!(l.status_pattern(Some("shop")), "reco:v2:shop:*:status");
        assert_eq!(l.scenario_of_status(&l.status(&k)), "shop/home");
        for bad in ["", "rt:", ":rt", "a*", "r t", "x[1]", &"p".repeat(65)] {
            assert!(KeyLayout::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ttl_overrides_take_humane_durations() {
        let mut t = TtlOverrides::default();
        t.set("hot=7d").unwrap();
        t.set("metrics=30d").unwrap();
        t.set("status=90m").unwrap();
        assert_eq!(t.hot, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(t.metrics, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!((t.status, t.profile), (Some(Duration::from_secs(5400)), None));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        for bad in ["hot", "hot=7", "hot=7w", "hot=-1d", "hot=0s", "hot=4000d", "warm=1d", "hot=d"] {
            assert!(t.set(bad).is_err(), "{bad:?}");
        }
        assert!(t.set("warm=1d").unwrap_err().contains("hot, status, metrics, profile"));
    }
}
