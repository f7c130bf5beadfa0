//! Where the shuffle sends an event: a stable hash of `(tenant_id, scenario_id)` modulo the
//! internal topic's partition count, so every event of a scenario lands on one internal
//! partition whichever host forwards it, on any platform and any build (FNV-1a, 64 bits: not
//! Rust's `DefaultHasher`, which is not stable across releases).

/// The internal topic a consumer group's pipeline reads when it repartitions.
pub fn internal_topic(group: &str) -> String {
    format!("{group}.by-scenario")
}

/// The consumer group of the shuffle stage.
pub fn shuffle_group(group: &str) -> String {
    format!("{group}.shuffle")
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

fn modulo(h: u64, partitions: i32) -> i32 {
    let n = u64::try_from(partitions.max(1)).unwrap_or(1);
    // Below `partitions`, which is an i32.
    i32::try_from(h % n).unwrap_or(0)
}

/// FNV-1a of `tenant_id`, a zero byte, `scenario_id`, modulo `partitions`. The zero byte keeps
/// `("ab", "c")` and `("a", "bc")` apart (ids never contain one: they are JSON strings that
/// the validator limits to printable characters).
pub fn partition_for_scenario(tenant: &str, scenario: &str, partitions: i32) -> i32 {
    let h = fnv1a(fnv1a(fnv1a(FNV_OFFSET, tenant.as_bytes()), &[0]), scenario.as_bytes());
    modulo(h, partitions)
}

/// A record whose routing fields cannot be read goes, unchanged, where the hash of its bytes
/// sends it: deterministic, so a replay puts it in the same place, and the pipeline rejects it
/// with the reason it always had.
pub fn partition_for_bytes(record: &[u8], partitions: i32) -> i32 {
    modulo(fnv1a(FNV_OFFSET, record), partitions)
}

/// The message key of a forwarded event: `tenant_id/scenario_id`, as a scenario-keyed topic
/// would carry it (for people reading the internal topic; the partition is chosen explicitly).
pub fn routing_key(tenant: &str, scenario: &str) -> String {
    format!("{tenant}/{scenario}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_stable_and_documented() {
        // FNV-1a 64 of "t\0s" and of "" (the offset basis): pinned, so a change of the function
        // (which would move every scenario's state to another partition) fails here.
        assert_eq!(fnv1a(FNV_OFFSET, b"t\0s"), 0x566d_c719_43ee_387e);
        assert_eq!(partition_for_scenario("t", "s", 1), 0);
        assert_eq!(partition_for_scenario("t", "s", 7), 3);
        assert_ne!(fnv1a(FNV_OFFSET, b"ab\0c"), fnv1a(FNV_OFFSET, b"a\0bc"));
    }

    #[test]
    fn every_partition_is_used_and_none_outside() {
        let mut seen = [0usize; 6];
        for t in 0..20 {
            for s in 0..20 {
                let p = partition_for_scenario(&format!("t{t}"), &format!("s{s}"), 6);
                seen[usize::try_from(p).unwrap()] += 1;
            }
        }
        assert!(seen.iter().all(|&n| n > 30), "{seen:?}");
        assert!((0..1000).all(|i| (0..6).contains(&partition_for_bytes(format!("{{bad {i}").as_bytes(), 6))));
        assert_eq!(partition_for_bytes(b"x", 0), 0, "no partitions is read as one");
    }

    #[test]
    fn names_derive_from_the_group() {
        assert_eq!(internal_topic("rtscore"), "rtscore.by-scenario");
        assert_eq!(shuffle_group("rtscore"), "rtscore.shuffle");
        assert_eq!(routing_key("shop", "home"), "shop/home");
    }
}
