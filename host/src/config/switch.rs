//! The fleet-synchronised switch: a new revision takes effect from a window end in event time
//! (`effective_from_window_end`), chosen once by the writer and stored in the document, so every
//! host applies it from the same window whenever it happens to read it. The default is the first
//! slide boundary a safe margin past the progress the hosts report in Redis.

use super::redis_keys::KeyLayout;
use super::{ScenarioConfig, ScenarioKey, WindowGeometry};

/// Default event-time margin past the hosts' reported progress: covers config propagation
/// (about a second) and the spread of watermarks across a fleet.
pub const DEFAULT_MARGIN_MS: i64 = 30_000;

/// When a stored revision takes effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EffectiveFrom {
    /// At each host's next emitted window (no agreement; for single hosts and tests).
    Immediately,
    /// From this window end (epoch ms).
    At(i64),
    /// The first window end `margin_ms` of event time past the progress hosts report in Redis
    /// (`watermark` and `last_window_end` of the status key, `window_end` of `hot:meta`).
    /// `keys`: the hosts' key layout (`--redis-key-prefix`).
    AfterFleetProgress { redis_url: String, margin_ms: i64, keys: KeyLayout },
}

impl EffectiveFrom {
    /// The operator's choice, as the CLI flags and the admin API's query parameters spell it:
    /// an explicit window end wins; `immediately` opts out of the agreement; otherwise the
    /// hosts' progress in Redis decides, and without Redis the change applies at once.
    pub fn choose(effective_from: Option<i64>, immediately: bool, redis_url: Option<&str>, margin_ms: i64) -> Self {
        match (effective_from, immediately, redis_url) {
            (Some(e), _, _) => EffectiveFrom::At(e),
            (None, false, Some(url)) => {
                EffectiveFrom::AfterFleetProgress { redis_url: url.to_string(), margin_ms, keys: KeyLayout::default() }
            }
            _ => EffectiveFrom::Immediately,
        }
    }

    /// Reads the hosts' progress under `layout` (hosts run with `--redis-key-prefix`).
    pub fn with_keys(mut self, layout: &KeyLayout) -> Self {
        if let EffectiveFrom::AfterFleetProgress { keys, .. } = &mut self {
            *keys = layout.clone();
        }
        self
    }

    /// The `effective_from_window_end` to store for `cfg`, if any. With no host progress in
    /// Redis (no window emitted yet), the change applies at once: nothing can mix.
    pub async fn resolve(&self, cfg: &ScenarioConfig) -> anyhow::Result<Option<i64>> {
        match self {
            EffectiveFrom::Immediately => Ok(None),
            EffectiveFrom::At(e) => Ok(Some(*e)),
            EffectiveFrom::AfterFleetProgress { redis_url, margin_ms, keys } => {
                let progress = fleet_progress(redis_url, keys, &cfg.key).await?;
                Ok(progress.map(|p| choose_effective_from(p, cfg.hot_score.window, *margin_ms)))
            }
        }
    }
}

/// The first window end strictly after `progress + margin_ms`.
pub fn choose_effective_from(progress: i64, g: WindowGeometry, margin_ms: i64) -> i64 {
    g.next_end_after(progress.saturating_add(margin_ms.max(0)))
}

/// The furthest event time any host reported for `key`, from its Redis keys.
#[cfg(not(feature = "redis"))]
pub async fn fleet_progress(redis_url: &str, _keys: &KeyLayout, _key: &ScenarioKey) -> anyhow::Result<Option<i64>> {
    anyhow::bail!(
        "cannot read host progress from Redis at {redis_url}: this rtscore was built without the `redis` feature; \
         pass --effective-from MS or --immediately"
    )
}

/// The furthest event time any host reported for `key`, from its Redis keys.
#[cfg(feature = "redis")]
pub async fn fleet_progress(redis_url: &str, layout: &KeyLayout, key: &ScenarioKey) -> anyhow::Result<Option<i64>> {
    use super::redis_keys as keys;
    use anyhow::Context;
    use redis::AsyncCommands;

    let client = redis::Client::open(redis_url).with_context(|| format!("invalid --redis-url {redis_url}"))?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("cannot read host progress from Redis at {redis_url}; pass --effective-from MS or --immediately"))?;
    let status: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(layout.status(key))
        .arg("watermark")
        .arg("last_window_end")
        .query_async(&mut conn)
        .await
        .context("reading the status key")?;
    let meta: Option<String> = conn.hget(keys::meta(&layout.hot(key)), "window_end").await?;
    Ok(status.into_iter().chain([meta]).flatten().filter_map(|v| v.parse::<i64>().ok()).max())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_progress_is_read_under_the_hosts_key_prefix() {
        let reco = KeyLayout::new("reco").unwrap();
        let e = EffectiveFrom::choose(None, false, Some("redis://r"), 5).with_keys(&reco);
        assert_eq!(e, EffectiveFrom::AfterFleetProgress { redis_url: "redis://r".into(), margin_ms: 5, keys: reco.clone() });
        assert_eq!(EffectiveFrom::choose(Some(7), false, Some("redis://r"), 5).with_keys(&reco), EffectiveFrom::At(7));
    }

    #[test]
    fn effective_time_is_the_next_boundary_past_the_margin() {
        let g = WindowGeometry::from_minutes(10, 5);
        let min = 60_000;
        assert_eq!(choose_effective_from(12 * min, g, 30_000), 15 * min);
        assert_eq!(choose_effective_from(14 * min + 40_000, g, 30_000), 20 * min, "too close to 15 min: the next one");
        assert_eq!(choose_effective_from(15 * min, g, 0), 20 * min, "strictly after the last emitted end");
    }
}
