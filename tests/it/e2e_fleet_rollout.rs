//! The fleet-synchronised switch on the real stack (issue 9 item 3, docs/rollout.md "Fleets"):
//! config changes made at random wall-clock moments while events flow switch a 3-host fleet
//! and a single host at the same window ends, and both write the same JSONL.
//!
//! Design: both fleets run at once, as two consumer groups reading the same topic, the same
//! MongoDB scenario store and reporting to the same Redis. Every change is made once, through
//! the real CLI with `--redis-url` (so the default time is chosen: the first window end a margin
//! past the progress hosts report) and stored with that `effective_from_window_end`; both
//! fleets read the same stored revisions, so there is nothing to replay (a replay would need
//! every stored revision re-applied with its time, which a host only reading the current
//! document cannot do) and nothing the test could get subtly different from what a user runs. The comparison is then exact: same window
//! results (hot, shadow, shadow_end) from the 3 hosts as from the 1 host, each window scored by
//! one revision (hot and shadow agree), and that revision the one the stored history says is in
//! force at that window end. Events are produced progressively, so changes land while hosts are
//! mid-stream; the margin (15 min of event time, 3 s of wall time at the production rate) covers
//! the ~1 s a change needs to reach a host, also when a loaded host catches up a backlog. A host
//! that still got one too late says so in its log, and the test fails on that line rather than
//! on a mismatch.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rtscore::config::parse_scenario;
use rtscore::scoring::reference::{RefEvent, hot_lists};
use rtscore_testkit::*;

const T0: i64 = 1_767_225_600_000;
const MIN: i64 = 60_000;
const SCENARIOS: usize = 4;
const END: i64 = T0 + 100 * MIN;
/// Event time produced per batch, one batch per `PACE`: 300 s of event time per second.
const CHUNK: i64 = 30_000;
const PACE: Duration = Duration::from_millis(100);
const MARGIN_MS: &str = "900000";
const ACTIONS: [&str; 4] = ["view", "click", "like", "purchase"];
const CANDIDATE: &str = r#"{"candidate":{"hot_score":{"action_weights":{"click":20},"decay_lambda":1.5,"top_n":8}}}"#;

fn scenario_id(k: usize) -> String {
    format!("s{k}")
}

fn doc(tenant: &str, k: usize) -> serde_json::Value {
    serde_json::json!({"tenant_id": tenant, "scenario_id": scenario_id(k), "config": {"realtime_compute": {"hot_score": {
        "action_weights": {"view": 1.0, "click": 2.0, "like": 3.0, "purchase": 10.0},
        "decay_lambda": 0.5, "window_size_minutes": 5, "window_slide_minutes": 1, "top_n": 10}}}})
}

/// Window records by (kind, scenario, window_end), without the wall-clock field.
type Windows = BTreeMap<(String, String, i64), serde_json::Value>;

/// One fleet's window records; a window emitted twice must be emitted identically.
fn windows(sinks: &[PathBuf]) -> Windows {
    let mut all = Windows::new();
    for path in sinks {
        for mut r in read_hot_sink(path).1 {
            let kind = r["kind"].as_str().unwrap_or_default().to_string();
            if !["hot", "shadow", "shadow_end"].contains(&kind.as_str()) {
                continue;
            }
            let key = (kind, r["scenario_id"].as_str().unwrap().to_string(), r["window_end"].as_i64().unwrap());
            if let Some(o) = r.as_object_mut() {
                o.remove("computed_at");
            }
            if let Some(prev) = all.get(&key) {
                assert_eq!(prev, &r, "{key:?} emitted twice with different content");
            }
            all.insert(key, r);
        }
    }
    all
}

/// Whether the host's last "partitions owned" log line lists any.
fn owns_partitions(log: &str) -> bool {
    log.lines().rfind(|l| l.contains("partitions owned")).is_some_and(|l| !l.trim_end().ends_with("{}"))
}

#[test]
fn three_hosts_with_changes_at_random_moments_match_one_host() {
    let stack = Stack::ensure();
    let (tenant, topic, database) = (unique("fl"), unique("fleet-"), unique("db"));
    let dir = tempfile::tempdir().unwrap();
    let scenario_cli = |args: &[&str]| {
        let mut all = vec!["scenario"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--mongodb-url", &stack.mongodb_url, "--mongodb-database", &database]);
        cli(&all)
    };
    for k in 0..SCENARIOS {
        let file = dir.path().join(format!("s{k}.json"));
        std::fs::write(&file, serde_json::to_vec(&doc(&tenant, k)).unwrap()).unwrap();
        scenario_cli(&["set", file.to_str().unwrap()]);
    }
    stack.create_topic(&topic, SCENARIOS as i32);

    let host = |group: &str, n: usize| {
        let sink = dir.path().join(format!("{group}-{n}.jsonl"));
        let h = Host::run()
            .kafka(&stack, &topic, group)
            .mongo(&stack, &database)
            .redis(&stack)
            .jsonl_out(&sink)
            .view_off()
            .config_poll_ms(100)
            // Results must not depend on timing: a quiet partition keeps holding its watermark.
            .partition_idle_ms(600_000)
            .start();
        (h, sink)
    };
    let (fleet_group, single_group) = (unique("g3-"), unique("g1-"));
    let (mut hosts, fleet_sinks): (Vec<HostProcess>, Vec<PathBuf>) = (0..3).map(|n| host(&fleet_group, n)).unzip();
    let (single, single_sink) = host(&single_group, 0);
    hosts.push(single);
    let logs = |hosts: &[HostProcess]| hosts.iter().map(HostProcess::log).collect::<Vec<_>>().join("\n----\n");
    // Partitions must not move mid-run (a host taking one over knows only the stored revision).
    assert!(wait_until(Duration::from_secs(60), || hosts.iter().all(|h| owns_partitions(&h.log()))), "{}", logs(&hosts));

    // Every scenario on its own partition, produced progressively in event-time order; one
    // unweighted event far ahead per scenario closes every window at the end.
    let events: Vec<Vec<RefEvent>> = (0..SCENARIOS).map(|k| traffic(40 + k as u64, T0, END, &ACTIONS)).collect();
    let producer = {
        let (stack, tenant, topic, events) = (stack.clone(), tenant.clone(), topic.clone(), events.clone());
        std::thread::spawn(move || {
            let mut from = T0;
            while from < END {
                let mut records: Vec<(i32, Vec<u8>)> = Vec::new();
                for (k, evs) in events.iter().enumerate() {
                    for e in evs.iter().filter(|e| e.ts >= from && e.ts < from + CHUNK) {
                        records.push((k as i32, event_line(&tenant, &scenario_id(k), &e.item_id, &e.action, e.ts)));
                    }
                }
                stack.produce_to(&topic, &records);
                from += CHUNK;
                std::thread::sleep(PACE);
            }
            let sentinels: Vec<(i32, Vec<u8>)> =
                (0..SCENARIOS).map(|k| (k as i32, event_line(&tenant, &scenario_id(k), "sentinel", "noop", END + 360 * MIN))).collect();
            stack.produce_to(&topic, &sentinels);
        })
    };

    // Changes start once the hosts report progress, so the CLI can pick a fleet-wide time.
    let all_sinks: Vec<PathBuf> = fleet_sinks.iter().chain([&single_sink]).cloned().collect();
    assert!(
        wait_until(Duration::from_secs(30), || {
            let w = windows(&all_sinks);
            (0..SCENARIOS).all(|k| w.keys().any(|(kind, s, _)| kind == "hot" && *s == scenario_id(k)))
        }),
        "{}",
        logs(&hosts)
    );
    let mut rng = SmallRng::seed_from_u64(9);
    let promoted = scenario_id(rng.random_range(0..SCENARIOS));
    let changes: Vec<(String, Vec<String>)> = vec![
        (
            scenario_id(rng.random_range(0..SCENARIOS)),
            vec![
                "patch".into(),
                "--body".into(),
                format!(
                    r#"{{"config":{{"realtime_compute":{{"hot_score":{{"action_weights":{{"click":{}}}}}}}}}}}"#,
                    rng.random_range(3..30)
                ),
            ],
        ),
        (promoted.clone(), vec!["patch".into(), "--body".into(), CANDIDATE.into()]),
        (
            scenario_id(rng.random_range(0..SCENARIOS)),
            vec![
                "patch".into(),
                "--body".into(),
                format!(r#"{{"config":{{"realtime_compute":{{"hot_score":{{"decay_lambda":{:.2}}}}}}}}}"#, rng.random_range(0.1..2.0)),
            ],
        ),
        (promoted.clone(), vec!["promote".into()]),
        (
            scenario_id(rng.random_range(0..SCENARIOS)),
            vec![
                "patch".into(),
                "--body".into(),
                format!(r#"{{"config":{{"realtime_compute":{{"hot_score":{{"top_n":{}}}}}}}}}"#, rng.random_range(3..15)),
            ],
        ),
        (promoted.clone(), vec!["rollback".into()]),
    ];
    for (scenario, args) in &changes {
        std::thread::sleep(Duration::from_millis(rng.random_range(300..1200)));
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.extend_from_slice(&[
            "--tenant-id",
            &tenant,
            "--scenario-id",
            scenario,
            "--redis-url",
            &stack.redis_url,
            "--margin-ms",
            MARGIN_MS,
        ]);
        let out = scenario_cli(&all);
        assert!(out.contains("effective from window end"), "the CLI chose no fleet-wide time: {out}");
    }
    producer.join().unwrap();

    // Complete: both fleets emitted every scenario's last window.
    let last: Vec<i64> = (0..SCENARIOS)
        .map(|k| {
            let cfg = parse_scenario(&doc(&tenant, k)).unwrap();
            *hot_lists(&events[k], &cfg.hot_score).keys().max().unwrap()
        })
        .collect();
    let complete = |sinks: &[PathBuf]| {
        let w = windows(sinks);
        (0..SCENARIOS).all(|k| w.contains_key(&("hot".to_string(), scenario_id(k), last[k])))
    };
    let single_sinks = [single_sink];
    assert!(wait_until(Duration::from_secs(60), || complete(&fleet_sinks) && complete(&single_sinks)), "{}", logs(&hosts));
    let all_logs = logs(&hosts);
    for h in &mut hosts {
        assert!(h.stop().success(), "{}", h.log());
    }
    assert!(
        !all_logs.contains("revision arrived after its effective window"),
        "a host read a change after its effective window: raise the margin\n{all_logs}"
    );
    assert!(fleet_sinks.iter().all(|p| !read_hot_sink(p).1.is_empty()), "every fleet host scored some scenario");

    // The 3 hosts wrote exactly what the single host wrote.
    let (fleet, one) = (windows(&fleet_sinks), windows(&single_sinks));
    let missing: Vec<_> = one.keys().filter(|k| !fleet.contains_key(*k)).collect();
    let extra: Vec<_> = fleet.keys().filter(|k| !one.contains_key(*k)).collect();
    let differ: Vec<_> = one.iter().filter(|(k, v)| fleet.get(*k).is_some_and(|f| f != *v)).map(|(k, _)| k).collect();
    assert!(missing.is_empty() && extra.is_empty() && differ.is_empty(), "missing {missing:?}\nextra {extra:?}\ndiffering {differ:?}");

    // Each window is scored by one revision: the one the stored history puts in force there.
    for k in 0..SCENARIOS {
        let s = scenario_id(k);
        let history = scenario_cli(&["history", "--json", "--tenant-id", &tenant, "--scenario-id", &s]);
        let schedule: Vec<(i64, i64)> = history
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|d| (d["revision"].as_i64().unwrap(), d["effective_from_window_end"].as_i64().unwrap_or(i64::MIN)))
            .collect();
        eprintln!(
            "{s}: (revision, effective_from_window_end - T0 in min) {:?}",
            schedule.iter().map(|(r, e)| (*r, (*e > T0).then(|| (e - T0) / MIN))).collect::<Vec<_>>()
        );
        assert_eq!(schedule.len(), 1 + changes.iter().filter(|(c, _)| *c == s).count(), "{history}");
        let in_force = |end: i64| schedule.iter().filter(|(_, e)| *e <= end).map(|(r, _)| *r).max().unwrap();
        for ((kind, _, end), r) in one.iter().filter(|((kind, sc, _), _)| *sc == s && kind != "shadow_end") {
            assert_eq!(r["config_revision"].as_i64(), Some(in_force(*end)), "{kind} window {end} of {s}: {r}");
        }
        for &(revision, _) in &schedule {
            assert!(
                one.iter().any(|((kind, sc, _), r)| kind == "hot" && *sc == s && r["config_revision"] == revision),
                "{s} revision {revision} scored no window"
            );
        }
    }
    // The candidate ran in shadow before the promotion and again after the rollback.
    let shadow_revisions: Vec<i64> =
        one.iter().filter(|((kind, _, _), _)| kind == "shadow").map(|(_, r)| r["config_revision"].as_i64().unwrap()).collect();
    assert!(
        shadow_revisions.windows(2).any(|w| w[0] != w[1]),
        "shadow windows before the promotion and after the rollback: {shadow_revisions:?}"
    );
    assert!(one.keys().any(|(kind, s, _)| kind == "shadow_end" && *s == promoted), "the promotion ended the shadow");
}
