//! Scale-out and crashes on the real stack (issue 6, DESIGN §7): several hosts in one consumer
//! group, one of them killed with SIGKILL mid-stream and restarted, produce the same window
//! results as one host reading the same events; so does one host killed and restarted on a
//! topic that is not keyed by scenario. Results are compared on the JSONL sinks (re-emitted
//! windows after a restart must be identical to the first emission) and on the final Redis keys.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use redis::Commands;
use rtscore::config::parse_scenario;
use rtscore::scoring::reference::{RefEvent, hot_lists};
use rtscore_testkit::*;

const T0: i64 = 1_767_225_600_000;
pub(crate) const PARTITIONS: i32 = 6;
pub(crate) const SCENARIOS: usize = 8;
const EVENTS: i64 = 24_000;
const METRICS_WINDOW_MS: i64 = 5 * 60_000;
const ACTIONS: [&str; 5] = ["impression", "view", "click", "like", "purchase"];

pub(crate) fn scenario_id(k: usize) -> String {
    format!("s{k}")
}

pub(crate) fn scenario_doc(tenant: &str, k: usize) -> serde_json::Value {
    serde_json::json!({"tenant_id": tenant, "scenario_id": scenario_id(k), "revision": 1, "config": {"realtime_compute": {
        "hot_score": {"window_size_minutes": 30, "window_slide_minutes": 10, "decay_lambda": 0.5, "top_n": 20},
        "user_profile": {"update_frequency_minutes": 5},
        "metrics": {"window_size_minutes": 5, "metrics_to_calculate": ["ctr", "cvr"]}}}})
}

/// Window records by (kind, scenario, window_end).
pub(crate) type Windows = BTreeMap<(String, String, i64), serde_json::Value>;
/// Per scenario: the final hot ZSET and the meta's window_end.
pub(crate) type RedisHot = BTreeMap<String, (Vec<(String, f64)>, Option<String>)>;

/// One event: scenario index, user, and the reference event.
pub(crate) type Ev = (usize, u32, RefEvent);

/// About four hours of skewed traffic in time order with < 5 s of disorder (below the 10 s
/// lateness, so no event is late however partitions interleave), then one unweighted event per
/// scenario six hours later, which closes every real window.
pub(crate) fn events() -> Vec<Ev> {
    let mut rng = SmallRng::seed_from_u64(6);
    let mut out = Vec::new();
    for i in 0..EVENTS {
        let k = (rng.random::<f64>().powi(2) * SCENARIOS as f64) as usize;
        let item = (rng.random::<f64>().powi(3) * 200.0) as u32;
        let ts = T0 + i * 600 - rng.random_range(0..5_000);
        let action = ACTIONS[rng.random_range(0..ACTIONS.len())];
        out.push((k, rng.random_range(0..50), RefEvent { item_id: format!("i{item}"), action: action.into(), ts }));
    }
    let end = T0 + EVENTS * 600 + 6 * 3_600_000;
    for k in 0..SCENARIOS {
        out.push((k, 0, RefEvent { item_id: "sentinel".into(), action: "noop".into(), ts: end }));
    }
    out
}

pub(crate) fn line(tenant: &str, (k, user, e): &Ev) -> Vec<u8> {
    format!(
        r#"{{"tenant_id":"{tenant}","scenario_id":"{}","user_id":"u{user}","item_id":"{}","action":"{}","ts":{},"category":"c{}"}}"#,
        scenario_id(*k),
        e.item_id,
        e.action,
        e.ts,
        user % 7
    )
    .into_bytes()
}

/// Windows a complete run emits: every non-empty reference hot list and every metrics window
/// holding events (the sentinels' windows never close).
pub(crate) fn expected_windows(tenant: &str, evs: &[Ev]) -> BTreeSet<(String, String, i64)> {
    let mut want = BTreeSet::new();
    for k in 0..SCENARIOS {
        let cfg = parse_scenario(&scenario_doc(tenant, k)).unwrap();
        let mine: Vec<RefEvent> = evs.iter().filter(|(s, _, _)| *s == k).map(|(_, _, e)| e.clone()).collect();
        for (end, list) in hot_lists(&mine, &cfg.hot_score) {
            if !list.is_empty() {
                want.insert(("hot".to_string(), scenario_id(k), end));
            }
        }
        for e in mine.iter().filter(|e| e.item_id != "sentinel") {
            want.insert((
                "metrics".to_string(),
                scenario_id(k),
                e.ts.div_euclid(METRICS_WINDOW_MS) * METRICS_WINDOW_MS + METRICS_WINDOW_MS,
            ));
        }
    }
    want
}

/// Equal JSON, numbers within relative `rel`.
pub(crate) fn same(a: &serde_json::Value, b: &serde_json::Value, rel: f64) -> bool {
    use serde_json::Value::*;
    match (a, b) {
        (Number(x), Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            x == y || (x - y).abs() <= rel * x.abs().max(y.abs())
        }
        (Array(x), Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y, rel)),
        (Object(x), Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w, rel))),
        _ => a == b,
    }
}

/// Hot and metrics records of JSONL sinks by (kind, scenario, window_end), without the tenant
/// and the wall-clock fields. A window emitted twice (replay after a restart) must carry the
/// same content both times (numbers within `rel`); a differing re-emission is returned as a
/// conflict: a lost or double-counted event would show up here.
pub(crate) fn windows_within(sinks: &[PathBuf], rel: f64) -> (Windows, Vec<String>) {
    let mut all = BTreeMap::new();
    let mut conflicts = Vec::new();
    for path in sinks {
        for mut r in read_hot_sink(path).1 {
            let kind = r["kind"].as_str().unwrap_or_default().to_string();
            if kind != "hot" && kind != "metrics" {
                continue;
            }
            let key = (kind, r["scenario_id"].as_str().unwrap().to_string(), r["window_end"].as_i64().unwrap());
            if let Some(o) = r.as_object_mut() {
                o.remove("tenant_id");
                o.remove("computed_at");
            }
            match all.get(&key) {
                Some(prev) if !same(prev, &r, rel) => conflicts.push(format!("{key:?}: {prev} vs {r}")),
                Some(_) => {}
                None => {
                    all.insert(key, r);
                }
            }
        }
    }
    (all, conflicts)
}

/// [`windows_within`], exactly.
fn windows(sinks: &[PathBuf]) -> (Windows, Vec<String>) {
    windows_within(sinks, 0.0)
}

/// Each scenario's final hot ZSET and meta window in Redis.
pub(crate) fn redis_hot(stack: &Stack, tenant: &str) -> RedisHot {
    let mut redis = stack.redis();
    (0..SCENARIOS)
        .map(|k| {
            let s = scenario_id(k);
            let zset: Vec<(String, f64)> = redis.zrevrange_withscores(format!("rt:{tenant}:{s}:hot"), 0, -1).unwrap();
            let end: Option<String> = redis.hget(format!("rt:{tenant}:{s}:hot:meta"), "window_end").unwrap();
            (s, (zset, end))
        })
        .collect()
}

/// One run's names: its own tenant (Redis keys), topic and consumer group.
struct Run {
    tenant: String,
    topic: String,
    group: String,
    dir: tempfile::TempDir,
    sinks: Vec<PathBuf>,
}

impl Run {
    fn new(stack: &Stack, prefix: &str) -> Run {
        let run = Run {
            tenant: unique(prefix),
            topic: unique("scale-"),
            group: unique("g"),
            dir: tempfile::tempdir().unwrap(),
            sinks: Vec::new(),
        };
        let scenarios = run.dir.path().join("scenarios");
        std::fs::create_dir_all(&scenarios).unwrap();
        for k in 0..SCENARIOS {
            std::fs::write(scenarios.join(format!("s{k}.json")), serde_json::to_vec(&scenario_doc(&run.tenant, k)).unwrap()).unwrap();
        }
        stack.create_topic(&run.topic, PARTITIONS);
        run
    }

    /// Keyed by scenario (every event of a scenario on one partition), or round-robin.
    fn produce(&self, stack: &Stack, evs: &[Ev], keyed: bool) {
        let records: Vec<(i32, Vec<u8>)> = evs
            .iter()
            .enumerate()
            .map(|(i, ev)| (if keyed { ev.0 as i32 % PARTITIONS } else { i as i32 % PARTITIONS }, line(&self.tenant, ev)))
            .collect();
        stack.produce_to(&self.topic, &records);
    }

    fn start_host(&mut self, stack: &Stack) -> HostProcess {
        let sink = self.dir.path().join(format!("out-{}.jsonl", self.sinks.len()));
        self.sinks.push(sink.clone());
        Host::run()
            .kafka(stack, &self.topic, &self.group)
            .job("all")
            .dlq_topic(&format!("{}-dlq", self.topic))
            .scenarios_dir(self.dir.path().join("scenarios"))
            .redis(stack)
            .jsonl_out(&sink)
            .view_off()
            .snapshot_interval_ms(500)
            // Results must not depend on timing here: a partition waiting for its turn never
            // stops holding the watermark back.
            .partition_idle_ms(600_000)
            .start()
    }

    fn wait_complete(&self, want: &BTreeSet<(String, String, i64)>, deadline: Duration, logs: &dyn Fn() -> String) {
        let done = wait_until(deadline, || {
            let (got, _) = windows(&self.sinks);
            want.iter().all(|k| got.contains_key(k))
        });
        let (got, _) = windows(&self.sinks);
        let missing: Vec<_> = want.iter().filter(|k| !got.contains_key(*k)).take(5).collect();
        assert!(
            done,
            "{} of {} windows missing, e.g. {missing:?}\n{}",
            want.len() - want.iter().filter(|k| got.contains_key(*k)).count(),
            want.len(),
            logs()
        );
    }

    fn sink_lines(&self) -> usize {
        self.sinks.iter().map(|p| read_hot_sink(Path::new(p)).1.len()).sum()
    }

    /// The group's committed offsets have reached the end of every partition.
    fn committed_to_end(&self, stack: &Stack) -> bool {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let c: BaseConsumer =
            rdkafka::ClientConfig::new().set("bootstrap.servers", &stack.kafka).set("group.id", &self.group).create().unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(&self.topic, p);
        }
        let Ok(committed) = c.committed_offsets(tpl, Duration::from_secs(5)) else { return false };
        (0..PARTITIONS).all(|p| {
            let end = c.fetch_watermarks(&self.topic, p, Duration::from_secs(5)).map_or(i64::MAX, |w| w.1);
            matches!(committed.find_partition(&self.topic, p).map(|e| e.offset()), Some(rdkafka::Offset::Offset(o)) if o >= end)
        })
    }

    /// Partitions with a stored snapshot.
    fn snapshots(&self, stack: &Stack) -> usize {
        let keys: Vec<String> = stack.redis().keys(format!("rtscore:snapshot:{}:{}:*", self.group, self.topic)).unwrap();
        keys.len()
    }
}

/// One host reads everything; the reference for the fleet runs.
fn single_host_reference(stack: &Stack, evs: &[Ev]) -> (Windows, RedisHot) {
    let mut run = Run::new(stack, "one");
    run.produce(stack, evs, true);
    let want = expected_windows(&run.tenant, evs);
    let mut host = run.start_host(stack);
    run.wait_complete(&want, Duration::from_secs(180), &|| host.log());
    let (got, conflicts) = windows(&run.sinks);
    assert!(conflicts.is_empty(), "{conflicts:?}");
    let redis = wait_redis_final(stack, &run.tenant, &got);
    assert!(host.stop().success(), "{}", host.log());
    (got, redis)
}

/// Redis once every scenario's meta shows its last emitted hot window.
pub(crate) fn wait_redis_final(stack: &Stack, tenant: &str, got: &Windows) -> RedisHot {
    let last: BTreeMap<String, i64> = got.keys().filter(|k| k.0 == "hot").map(|k| (k.1.clone(), k.2)).collect();
    let ok = wait_until(Duration::from_secs(20), || {
        redis_hot(stack, tenant).iter().all(|(s, (_, end))| end.as_deref() == last.get(s).map(|e| e.to_string()).as_deref())
    });
    assert!(ok, "Redis meta does not show the last windows {last:?}: {:?}", redis_hot(stack, tenant));
    redis_hot(stack, tenant)
}

/// Whether the host's last "partitions owned" log line lists any.
pub(crate) fn owns_partitions(log: &str) -> bool {
    log.lines().rfind(|l| l.contains("partitions owned")).is_some_and(|l| !l.trim_end().ends_with("{}"))
}

pub(crate) fn assert_same(want: &Windows, got: &Windows) {
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let differ: Vec<_> = want.iter().filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v)).map(|(k, _)| k).collect();
    assert!(
        missing.is_empty() && extra.is_empty() && differ.is_empty(),
        "missing {}: {:?}\nextra {}: {:?}\ndiffering {}: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)],
        extra.len(),
        &extra[..extra.len().min(5)],
        differ.len(),
        &differ[..differ.len().min(5)]
    );
}

#[test]
fn three_hosts_with_one_killed_match_one_host() {
    let stack = Stack::ensure();
    let evs = events();
    let (want, want_redis) = single_host_reference(&stack, &evs);
    assert!(want.len() > 300, "the workload should produce many windows ({})", want.len());

    // The fleet: three hosts read the first part and store snapshots of every partition; the
    // second part arrives and one host is killed while reading it; the rest arrives while it
    // is down, and it comes back.
    let mut run = Run::new(&stack, "fleet");
    let (a, b) = (evs.len() * 4 / 10, evs.len() * 7 / 10);
    let mut hosts: Vec<HostProcess> = (0..3).map(|_| run.start_host(&stack)).collect();
    let owning = wait_until(Duration::from_secs(60), || hosts.iter().all(|h| owns_partitions(&h.log())));
    assert!(owning, "the group did not spread the partitions over three hosts\n{}", hosts[0].log());
    run.produce(&stack, &evs[..a], true);
    // Every host has emitted something (all three own partitions and hold open windows) and
    // every partition has a snapshot.
    let busy = wait_until(Duration::from_secs(90), || {
        run.sinks.iter().all(|p| !read_hot_sink(p).1.is_empty()) && run.snapshots(&stack) == PARTITIONS as usize
    });
    assert!(busy, "not every host emitted windows and stored snapshots\n{}", hosts[0].log());
    run.produce(&stack, &evs[a..b], true);
    let killed_at = Instant::now();
    hosts[0].kill();
    let before = run.sink_lines();
    run.produce(&stack, &evs[b..], true);
    hosts.push(run.start_host(&stack));
    let want_keys: BTreeSet<_> = want.keys().cloned().collect();
    run.wait_complete(&want_keys, Duration::from_secs(180), &|| {
        hosts.iter().skip(1).map(HostProcess::log).collect::<Vec<_>>().join("\n----\n")
    });
    eprintln!("fleet caught up {:.1} s after the kill ({before} sink lines before it)", killed_at.elapsed().as_secs_f64());

    let logs: String = hosts.iter().skip(1).map(HostProcess::log).collect();
    assert!(logs.contains("restored partition state from its snapshot"), "no host took over a snapshot\n{logs}");
    let (got, conflicts) = windows(&run.sinks);
    assert!(conflicts.is_empty(), "a window re-emitted after the restart differs: {:?}", &conflicts[..conflicts.len().min(3)]);
    assert_same(&want, &got);
    let got_redis = wait_redis_final(&stack, &run.tenant, &got);
    assert_eq!(got_redis, want_redis, "final Redis hot lists differ from the single host's");
    // Offsets follow the snapshots to the end, including partitions taken over from the
    // killed host with nothing left to read.
    assert!(wait_until(Duration::from_secs(20), || run.committed_to_end(&stack)), "committed offsets did not reach the end");
    for h in hosts.iter_mut().skip(1) {
        assert!(h.stop().success(), "{}", h.log());
    }
}

/// One host on a topic that is not keyed by scenario (every scenario on every partition),
/// killed mid-stream: the snapshot of all its partitions is one consistent cut, so the restarted
/// host neither loses nor double-counts an event.
#[test]
fn one_host_killed_on_an_unkeyed_topic_matches_the_reference() {
    let stack = Stack::ensure();
    let evs = events();
    let mut run = Run::new(&stack, "kill1");
    let want_keys = expected_windows(&run.tenant, &evs);
    let (a, b) = (evs.len() * 4 / 10, evs.len() * 7 / 10);
    run.produce(&stack, &evs[..a], false);
    let mut host = run.start_host(&stack);
    let snapshotted = wait_until(Duration::from_secs(90), || run.sink_lines() > 20 && run.snapshots(&stack) == PARTITIONS as usize);
    assert!(snapshotted, "{}", host.log());
    run.produce(&stack, &evs[a..b], false);
    host.kill();
    run.produce(&stack, &evs[b..], false);
    let mut host = run.start_host(&stack);
    run.wait_complete(&want_keys, Duration::from_secs(180), &|| host.log());
    assert!(host.log().contains("restored partition state from its snapshot"), "{}", host.log());
    // Every scenario spans every partition here, so two runs may add a window's rows in
    // another order: a re-emission equals the first to the last few bits, not bit for bit.
    let (got, conflicts) = windows_within(&run.sinks, 1e-12);
    assert!(conflicts.is_empty(), "a window re-emitted after the restart differs: {:?}", &conflicts[..conflicts.len().min(3)]);

    // Hot lists equal the per-event reference (DESIGN §4) to 1e-9.
    let mut ref_hot = SinkWindows::new();
    let mut got_hot = SinkWindows::new();
    for k in 0..SCENARIOS {
        let cfg = parse_scenario(&scenario_doc(&run.tenant, k)).unwrap();
        let mine: Vec<RefEvent> = evs.iter().filter(|(s, _, _)| *s == k).map(|(_, _, e)| e.clone()).collect();
        for (end, list) in hot_lists(&mine, &cfg.hot_score) {
            ref_hot.insert((scenario_id(k), end), list);
        }
    }
    for ((kind, s, end), r) in &got {
        if kind == "hot" {
            let items = r["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| (i["item_id"].as_str().unwrap().to_string(), i["score"].as_f64().unwrap()))
                .collect();
            got_hot.insert((s.clone(), *end), items);
        }
    }
    let diffs = hot_differences(&ref_hot, &got_hot, 1e-9);
    assert!(diffs.is_empty(), "{} differences, first: {:?}", diffs.len(), &diffs[..diffs.len().min(5)]);
    assert!(host.stop().success(), "{}", host.log());
}

/// Issue 16: the backlog of a killed host's partition is taken over by a host that has already
/// run its own partition two hours ahead. The killed host never stored a snapshot, so the
/// backlog is read from the start; it must be judged by its own events, not by the new owner's
/// clock: nothing is late, and every window equals the reference computed from that backlog alone.
#[test]
fn a_host_that_is_ahead_takes_over_a_dead_hosts_backlog_and_nothing_is_late() {
    const HOUR: i64 = 3_600_000;
    let stack = Stack::ensure();
    let (tenant, topic, group) = (unique("ahead"), unique("events-"), unique("g"));
    let dir = tempfile::tempdir().unwrap();
    let doc = |s: &str| {
        serde_json::json!({"tenant_id": tenant, "scenario_id": s, "revision": 1, "config": {"realtime_compute": {
            "hot_score": {"window_size_minutes": 10, "window_slide_minutes": 5, "decay_lambda": 0.5, "top_n": 20}}}})
    };
    let scenarios = write_scenarios(dir.path(), &[doc("ahead"), doc("behind")]);
    stack.create_topic(&topic, 2);
    let host = |name: &str| {
        let (sink, port) = (dir.path().join(format!("{name}.jsonl")), free_port());
        let host = Host::run()
            .kafka(&stack, &topic, &group)
            .redis(&stack)
            .scenarios_dir(&scenarios)
            .jsonl_out(&sink)
            .http(port)
            .view_off()
            // The killed host must die before its first snapshot.
            .snapshot_interval_ms(600_000)
            .start();
        (host, port, sink)
    };
    let owned = |port: u16| -> Vec<i64> {
        http_get(port, "/status")
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
            .and_then(|s| s["partitions"].as_array().map(|a| a.iter().filter_map(|p| p.as_i64()).collect()))
            .unwrap_or_default()
    };
    let (mut doomed, doomed_port, _) = host("doomed");
    assert!(wait_until(Duration::from_secs(30), || owned(doomed_port).len() == 2), "{}", doomed.log());
    let (survivor, survivor_port, sink) = host("survivor");
    assert!(
        wait_until(Duration::from_secs(60), || owned(survivor_port).len() == 1 && owned(doomed_port).len() == 1),
        "the group did not split the partitions\n{}",
        survivor.log()
    );
    let (mine, theirs) = (owned(survivor_port)[0] as i32, owned(doomed_port)[0] as i32);

    // The survivor runs its own partition two hours ahead.
    let line = |s: &str, e: &RefEvent| event_line(&tenant, s, &e.item_id, &e.action, e.ts);
    let ahead = traffic(1, T0, T0 + 2 * HOUR, &ACTIONS);
    stack.produce_to(&topic, &ahead.iter().map(|e| (mine, line("ahead", e))).collect::<Vec<_>>());
    let mut redis = stack.redis();
    assert!(
        wait_until(Duration::from_secs(60), || status_of(&mut redis, &tenant, "ahead")
            .get("last_window_end")
            .and_then(|w| w.parse::<i64>().ok())
            .is_some_and(|w| w >= T0 + 2 * HOUR - 10 * 60_000)),
        "the survivor did not run ahead\n{}",
        survivor.log()
    );
    // The other host dies without a snapshot; its partition's backlog arrives, two hours behind.
    doomed.kill();
    // It runs on past the survivor's clock, as a live stream would: the backlog's windows are
    // emitted once it passes the point the survivor's windows had reached.
    let behind = traffic(2, T0, T0 + 2 * HOUR + 30 * 60_000, &ACTIONS);
    stack.produce_to(&topic, &behind.iter().map(|e| (theirs, line("behind", e))).collect::<Vec<_>>());
    assert!(wait_until(Duration::from_secs(60), || owned(survivor_port).len() == 2), "no takeover\n{}", survivor.log());
    let done = |sink: &Path| {
        read_hot_sink(sink).1.iter().any(|r| r["scenario_id"] == "behind" && r["window_end"].as_i64() >= Some(T0 + 2 * HOUR + 20 * 60_000))
    };
    assert!(wait_until(Duration::from_secs(60), || done(&sink)), "the backlog was not scored\n{}", survivor.log());

    let status = status_of(&mut redis, &tenant, "behind");
    assert_eq!(status.get("late").map(String::as_str), Some("0"), "{status:?}\n{}", survivor.log());
    let cfg = parse_scenario(&doc("behind")).unwrap().hot_score;
    let want = hot_lists(&behind, &cfg);
    let records: Vec<serde_json::Value> = read_hot_sink(&sink).1.into_iter().filter(|r| r["scenario_id"] == "behind").collect();
    let checked = check_against_reference(&records, "hot", |_| &want);
    assert!(checked >= 20, "{checked} windows of the backlog");
    drop(survivor);
}
