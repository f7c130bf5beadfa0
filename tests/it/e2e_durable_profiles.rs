//! Durable user profiles end to end (DESIGN §4, "Durable profiles"): a user forgotten from
//! memory, or unknown to a freshly started host, continues from the profile stored in Redis
//! instead of starting empty, and a replay of events it already holds counts nothing twice.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::Commands;
use rtscore_testkit::*;

const T0: i64 = 1_767_225_600_000;
const HOUR: i64 = 3_600_000;
const HALF_LIFE_DAYS: f64 = 30.0;

fn scenario(tenant: &str) -> serde_json::Value {
    serde_json::json!({"tenant_id": tenant, "scenario_id": "s", "revision": 1, "config": {"realtime_compute": {
        "hot_score": {"enabled": false}, "metrics": {"enabled": false},
        "user_profile": {"update_frequency_minutes": 1, "interest_decay_days": HALF_LIFE_DAYS,
            "behavior_weights": {"view": 1.0, "like": 3.0}}}}})
}

/// `(user, action, ts, category)`.
type Ev = (&'static str, &'static str, i64, &'static str);

fn lines(tenant: &str, evs: &[Ev]) -> Vec<Vec<u8>> {
    evs.iter()
        .map(|(u, a, ts, c)| {
            serde_json::to_vec(&serde_json::json!({"tenant_id": tenant, "scenario_id": "s", "user_id": u,
                "item_id": format!("i{ts}"), "action": a, "ts": ts, "category": c}))
            .unwrap()
        })
        .collect()
}

fn profile(redis: &mut redis::Connection, tenant: &str, user: &str) -> BTreeMap<String, String> {
    redis.hgetall(format!("rt:{tenant}:s:profile:{user}")).unwrap()
}

fn count_sum(p: &BTreeMap<String, String>) -> u64 {
    p.get("counts").map_or(0, |c| serde_json::from_str::<BTreeMap<String, u64>>(c).unwrap().values().sum())
}

/// Waits until `user`'s stored profile holds `events` events.
fn wait_for_count(redis: &mut redis::Connection, tenant: &str, user: &str, events: u64, host: &HostProcess) {
    let ok = wait_until(Duration::from_secs(30), || count_sum(&profile(redis, tenant, user)) == events);
    assert!(ok, "{user} never held {events} events: {:?}\n{}", profile(redis, tenant, user), host.log());
}

/// The interests `evs` give `user` at `at`, with the scenario's half-life.
fn want_interests(evs: &[Ev], user: &str, at: i64) -> BTreeMap<String, f64> {
    let mut want = BTreeMap::new();
    for (_, a, ts, c) in evs.iter().filter(|e| e.0 == user) {
        let w = match *a {
            "view" => 1.0,
            "like" => 3.0,
            _ => 0.0,
        };
        *want.entry(c.to_string()).or_default() += w * 0.5f64.powf((at - ts) as f64 / (HALF_LIFE_DAYS * 86_400_000.0));
    }
    want
}

fn assert_interests(p: &BTreeMap<String, String>, want: &BTreeMap<String, f64>) {
    let got: Vec<serde_json::Value> = serde_json::from_str(&p["interests"]).unwrap();
    let got: BTreeMap<String, f64> = got.iter().map(|i| (i["name"].as_str().unwrap().to_string(), i["score"].as_f64().unwrap())).collect();
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    for (name, w) in want {
        assert!((got[name] - w).abs() <= 1e-9 * w, "{name}: {} vs {w}", got[name]);
    }
}

fn metric(port: u16, line_start: &str) -> f64 {
    let text = http_get(port, "/metrics").unwrap_or_default();
    text.lines().find(|l| l.starts_with(line_start)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

#[test]
fn a_user_evicted_from_memory_continues_from_its_stored_profile() {
    let stack = Stack::ensure();
    let (tenant, topic, database) = (unique("dp"), unique("events-"), unique("db"));
    stack.put_scenarios(&database, &[scenario(&tenant)]);
    stack.create_topic(&topic, 1);
    let port = free_port();
    let mut host = Host::run()
        .kafka(&stack, &topic, &unique("g"))
        .job("user_profile")
        .mongo(&stack, &database)
        .redis(&stack)
        .view_off()
        .http(port)
        .arg("--profile-max-users", "2")
        .start();
    let mut redis = stack.redis();

    // Three batches (each produced once the previous one is written): u0's history, ten other
    // users that push u0 out of a memory of two, then u0 again. Each ends with a later event
    // of another user, which moves event time past the profiles' due times.
    let first: Vec<Ev> = vec![
        ("u0", "like", T0, "shoes"),
        ("u0", "view", T0 + HOUR, "bags"),
        ("u0", "view", T0 + 2 * HOUR, "shoes"),
        ("x", "view", T0 + 3 * HOUR, "misc"),
    ];
    stack.produce(&topic, 1, &lines(&tenant, &first));
    wait_for_count(&mut redis, &tenant, "u0", 3, &host);
    let others: Vec<Ev> = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
        .iter()
        .enumerate()
        .map(|(k, u)| (*u, "view", T0 + (4 + k as i64) * HOUR, "misc"))
        .collect();
    stack.produce(&topic, 1, &lines(&tenant, &others));
    wait_for_count(&mut redis, &tenant, "i", 1, &host);
    let returning: Vec<Ev> = vec![("u0", "like", T0 + 48 * HOUR, "bags"), ("zz", "view", T0 + 72 * HOUR, "misc")];
    stack.produce(&topic, 1, &lines(&tenant, &returning));
    wait_for_count(&mut redis, &tenant, "u0", 4, &host);

    let p = profile(&mut redis, &tenant, "u0");
    let at: i64 = p["updated_at"].parse().unwrap();
    let all: Vec<Ev> = first.iter().chain(&returning).copied().collect();
    assert_interests(&p, &want_interests(&all, "u0", at));
    let counts: BTreeMap<String, u64> = serde_json::from_str(&p["counts"]).unwrap();
    assert_eq!(counts, BTreeMap::from([("like".into(), 2), ("view".into(), 2)]));
    let recent: Vec<serde_json::Value> = serde_json::from_str(&p["recent_items"]).unwrap();
    assert_eq!(recent.len(), 4, "recent items kept across the eviction");
    // The key lives 4 half-lives (120 days), not the former week.
    let ttl_days = redis.pttl::<_, i64>(format!("rt:{tenant}:s:profile:u0")).unwrap() as f64 / 86_400_000.0;
    assert!((119.0..=120.0).contains(&ttl_days), "{ttl_days}");
    // It really was forgotten and read back (not kept in memory).
    assert!(
        wait_until(Duration::from_secs(5), || metric(port, "rtscore_profile_read_backs_total{result=\"found\"}") >= 1.0),
        "{}",
        http_get(port, "/metrics").unwrap_or_default()
    );
    assert!(metric(port, "rtscore_profile_evictions_total{reason=\"memory\"}") >= 1.0);
    assert!(host.stop().success());
}

#[test]
fn a_restarted_host_continues_stored_profiles_and_a_replay_counts_nothing_twice() {
    let stack = Stack::ensure();
    let (tenant, topic, database, group) = (unique("dr"), unique("events-"), unique("db"), unique("g"));
    stack.put_scenarios(&database, &[scenario(&tenant)]);
    stack.create_topic(&topic, 1);
    let start = |group: &str, port: u16| {
        Host::run().kafka(&stack, &topic, group).job("user_profile").mongo(&stack, &database).redis(&stack).view_off().http(port).start()
    };
    let mut redis = stack.redis();

    let first: Vec<Ev> = vec![("u0", "like", T0, "shoes"), ("u0", "view", T0 + HOUR, "bags"), ("w", "view", T0 + 2 * HOUR, "misc")];
    stack.produce(&topic, 1, &lines(&tenant, &first));
    let mut a = start(&group, free_port());
    wait_for_count(&mut redis, &tenant, "u0", 2, &a);
    assert!(a.stop().success());

    // The same group without its snapshot (lost, or never stored): the restarted host resumes
    // after the committed offsets with nothing in memory, and reads u0 back from Redis.
    let _: i64 = redis.del(format!("rtscore:snapshot:{group}:{topic}:0")).unwrap();
    let mut b = start(&group, free_port());
    let later: Vec<Ev> = vec![("u0", "view", T0 + 30 * HOUR, "shoes"), ("zz", "view", T0 + 60 * HOUR, "misc")];
    stack.produce(&topic, 1, &lines(&tenant, &later));
    wait_for_count(&mut redis, &tenant, "u0", 3, &b);
    assert!(b.stop().success());
    let p = profile(&mut redis, &tenant, "u0");
    let at: i64 = p["updated_at"].parse().unwrap();
    let all: Vec<Ev> = first.iter().chain(&later).copied().collect();
    assert_interests(&p, &want_interests(&all, "u0", at));

    // A new consumer group reads the topic from the start: every event of u0 is already in its
    // stored profile, so each is skipped and the profile is unchanged.
    let port = free_port();
    let mut c = start(&unique("g"), port);
    let skipped = wait_until(Duration::from_secs(30), || metric(port, "rtscore_profile_replayed_events_total") >= 3.0);
    assert!(skipped, "{}\n{}", http_get(port, "/metrics").unwrap_or_default(), c.log());
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(profile(&mut redis, &tenant, "u0"), p, "a replay leaves the stored profile as it was");
    assert!(c.stop().success());
}
