//! The Redis key layout (DESIGN §6), in one place: the Redis sink writes these keys,
//! `rtscore status` and the event-time switch ([`super::switch`]) read them, and nothing else
//! spells a key. It lives in `config`, beside the scenario key it is built from, so the
//! switch reads it without importing the sinks.

use super::ScenarioKey;

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
        assert_eq!(status(&k), "rt:shop:home:status");
        assert_eq!(status_pattern(Some("shop")), "rt:shop:*:status");
        assert_eq!(scenario_of_status(&status(&k)), "shop/home");
        assert_eq!(snapshot("g", "events", 3), "rtscore:snapshot:g:events:3");
    }
}
