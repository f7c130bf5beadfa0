//! Issue 16's noisy neighbour, on one real host (`rtscore run` reading stdin, admin API on):
//! tenant `good` sends normal traffic under a normal config; tenant `evil` sends events dated
//! far and slightly ahead, floods new item ids past its quota, scores with a spinning plugin and
//! a memory-hungry one, and races edits of its scenario. `good`'s JSONL output must be byte for
//! byte what a host running `good` alone writes, and each of `evil`'s troubles must be visible
//! with its reason (dead-letter file, `/status`, the API's 409).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use rtscore_testkit::web::{ApiHost, request, request_raw};
use rtscore_testkit::{plugins, wait_until};
use serde_json::{Value, json};

const MINUTE: i64 = 60_000;

fn scenario(tenant: &str, id: &str, plugin: Option<&str>) -> Value {
    let mut doc = json!({"tenant_id": tenant, "scenario_id": id, "status": "active", "revision": 1,
        "config": {"realtime_compute": {"hot_score": {"action_weights": {"view": 1.0, "click": 3.0, "purchase": 10.0},
            "decay_lambda": 0.2, "window_size_minutes": 10, "window_slide_minutes": 5, "top_n": 10}}}});
    if let Some(name) = plugin {
        doc["config"]["realtime_compute"]["hot_score"]["plugin"] = json!({"name": name, "version": "0.1.0"});
    }
    doc
}

fn line(tenant: &str, scenario: &str, item: &str, action: &str, ts: i64) -> Vec<u8> {
    format!(r#"{{"tenant_id":"{tenant}","scenario_id":"{scenario}","user_id":"u1","item_id":"{item}","action":"{action}","ts":{ts}}}"#)
        .into_bytes()
}

/// Three hours of `good` traffic ending about now (the host rejects events from the future).
fn good_events(t0: i64) -> Vec<Vec<u8>> {
    let actions = ["view", "view", "click", "view", "purchase"];
    (0..5_400i64).map(|i| line("good", "feed", &format!("i{}", (i * 7) % 31), actions[(i % 5) as usize], t0 + i * 2_000)).collect()
}

/// `evil`'s traffic beside good event `i`.
fn evil_events(i: i64, t0: i64, now: i64) -> Vec<Vec<u8>> {
    let ts = t0 + i * 2_000;
    let mut v = vec![
        line("evil", "spin", &format!("s{}", i % 5), "view", ts),
        line("evil", "hungry", &format!("h{}", i % 5), "view", ts),
        // A new item every event: past the tenant's 50-item quota almost at once.
        line("evil", "flood", &format!("x{i}"), "click", ts),
    ];
    if i % 500 == 0 {
        // A day ahead: dead-lettered, whoever sends it.
        v.push(line("evil", "flood", "future", "click", now + 86_400_000));
        v.push(line("unknown", "flood", "future", "click", now + 86_400_000));
    }
    if i == 5_000 {
        // Nine minutes ahead: accepted; it closes evil's own windows (and makes the rest of
        // evil's traffic late), nobody else's.
        v.push(line("evil", "flood", "soon", "click", now + 9 * MINUTE));
    }
    v
}

struct Run {
    good_lines: Vec<String>,
    dead_letters: Vec<Value>,
    status: Value,
    racing: Vec<u16>,
    /// The console overview as each tenant sees it.
    evil_console: String,
    good_console: String,
}

fn run(with_evil: bool) -> Run {
    let now = chrono::Utc::now().timestamp_millis();
    let t0 = (now - 3 * 3_600_000).div_euclid(MINUTE) * MINUTE;
    let mut scenarios = vec![scenario("good", "feed", None)];
    if with_evil {
        scenarios.extend([
            scenario("evil", "spin", Some("test-spin")),
            scenario("evil", "hungry", Some("test-oom")),
            scenario("evil", "flood", None),
        ]);
    }
    let prepare = |dir: &Path| {
        let tenants = dir.join("scenarios/tenants");
        std::fs::create_dir_all(&tenants).unwrap();
        let quotas = json!({"tenant_id": "evil", "quotas": {"max_items_per_scenario": 50, "cpu_ms_per_window": 50,
            "max_instance_memory_bytes": 16 << 20}});
        std::fs::write(tenants.join("evil.json"), quotas.to_string()).unwrap();
        for name in ["test-spin", "test-oom"] {
            std::fs::write(dir.join("plugins").join(format!("{name}@0.1.0.wasm")), plugins::module(name)).unwrap();
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let (out, dlq) = (tmp.path().join("out.jsonl"), tmp.path().join("dead.jsonl"));
    // Results must not depend on how fast the host reads: no partition goes idle mid-test.
    let mut api =
        ApiHost::start_prepared(&scenarios, prepare, |host| host.jsonl_out(&out).dead_letter_file(&dlq).partition_idle_ms(600_000));
    let admin = api.token("admin");
    let evil_token = api.token("tenant:evil");
    if with_evil {
        // Both plugins loaded before any event, so every run scores the same windows with them.
        let loaded = wait_until(Duration::from_secs(60), || {
            let s = request(api.port, "GET", "/status", Some(&admin), b"").json();
            let states: Vec<String> =
                s["scenarios"].as_array().into_iter().flatten().map(|r| r["plugin_state"].as_str().unwrap_or("").to_string()).collect();
            states.iter().filter(|p| p.starts_with("active")).count() == 2
        });
        assert!(loaded, "plugins not loaded:\n{}", api.host.log());
    }
    let good = good_events(t0);
    let mut racing = Vec::new();
    for (chunk_no, chunk) in good.chunks(600).enumerate() {
        let mut lines = Vec::new();
        for (k, g) in chunk.iter().enumerate() {
            lines.push(g.clone());
            if with_evil {
                lines.extend(evil_events((chunk_no * 600 + k) as i64, t0, now));
            }
        }
        api.send(&lines);
        if with_evil && chunk_no == 4 {
            racing = race_edits(api.port, &evil_token);
        }
    }
    // Everything sent is processed once good's 5,400 events are counted.
    let mut status = Value::Null;
    let processed = wait_until(Duration::from_secs(60), || {
        status = request(api.port, "GET", "/status", Some(&admin), b"").json();
        let good = status["tenants"].as_array().into_iter().flatten().find(|t| t["tenant_id"] == "good");
        good.is_some_and(|g| g["events"] == 5_400)
    });
    assert!(processed, "not all processed: {status}");
    let good_token = api.token("tenant:good");
    let console = |token: &str| {
        let page = || request_raw(api.port, "GET", "/console", &[("Cookie", &format!("rtscore_token={token}"))], b"", None).body;
        // The console's figures are refreshed once a second.
        wait_until(Duration::from_secs(5), || !with_evil || page().contains("over quota <b>0</b>") != (token == evil_token));
        page()
    };
    let (evil_console, good_console) = (console(&evil_token), console(&good_token));
    assert!(api.end_of_input().success(), "host failed:\n{}", api.host.log());
    let good_lines = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v["tenant_id"] == "good"))
        .map(String::from)
        .collect();
    let dead_letters = std::fs::read_to_string(&dlq).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    Run { good_lines, dead_letters, status, racing, evil_console, good_console }
}

/// Eight editors PATCH evil's `flood` at once, each over the revision it read.
fn race_edits(port: u16, token: &str) -> Vec<u16> {
    let path = "/api/v1/tenants/evil/scenarios/flood";
    let read = request(port, "GET", path, Some(token), b"");
    let etag = read.header("etag").expect("an ETag").to_string();
    let bearer = format!("Bearer {token}");
    let handles: Vec<_> = (0..8)
        .map(|n| {
            let (etag, bearer) = (etag.clone(), bearer.clone());
            std::thread::spawn(move || {
                let body = format!(r#"{{"config":{{"realtime_compute":{{"hot_score":{{"top_n":{}}}}}}}}}"#, 3 + n);
                let headers = [("Authorization", bearer.as_str()), ("If-Match", etag.as_str()), ("Content-Type", "application/json")];
                request_raw(port, "PATCH", path, &headers, body.as_bytes(), None).status
            })
        })
        .collect();
    let mut codes: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    codes.sort();
    codes
}

#[test]
fn a_hostile_tenant_changes_nothing_of_a_good_tenants_output() {
    let alone = run(false);
    let mixed = run(true);
    assert!(alone.good_lines.len() > 30, "good alone wrote {} lines", alone.good_lines.len());
    assert!(alone.dead_letters.is_empty(), "{:?}", alone.dead_letters);
    assert_eq!(mixed.good_lines.len(), alone.good_lines.len(), "good's output differs in length");
    for (k, (m, a)) in mixed.good_lines.iter().zip(&alone.good_lines).enumerate() {
        assert_eq!(m, a, "good's line {k} differs");
    }

    // Each of evil's troubles is visible with its reason.
    let reasons: BTreeSet<&str> = mixed.dead_letters.iter().filter_map(|d| d["kind"].as_str()).collect();
    for want in ["ts_in_future", "quota_items"] {
        assert!(reasons.contains(want), "dead letters lack {want}: {reasons:?}");
    }
    assert!(
        mixed.dead_letters.iter().all(|d| !d["raw"].as_str().unwrap_or("").contains("\"tenant_id\":\"good\"")),
        "none of good's events is dead-lettered"
    );
    let rows = mixed.status["scenarios"].as_array().expect("status rows");
    let row =
        |s: &str| rows.iter().find(|r| r["tenant_id"] == "evil" && r["scenario_id"] == s).unwrap_or_else(|| panic!("no row evil/{s}"));
    for (s, kind) in [("spin", "CPU budget"), ("hungry", "memory cap")] {
        let r = row(s);
        let state = r["plugin_state"].as_str().unwrap_or("");
        assert!(state.starts_with("quarantined") || state.starts_with("fallback"), "evil/{s}: {state}");
        assert!(state.contains(kind) || r["plugin_error"].as_str().is_some_and(|e| e.contains(kind)), "evil/{s}: {r}");
    }
    let tenants = mixed.status["tenants"].as_array().expect("tenant rows");
    let evil = tenants.iter().find(|t| t["tenant_id"] == "evil").expect("evil's tenant row");
    assert!(evil["over_quota"]["quota_items"].as_u64().unwrap_or(0) > 1_000, "{evil}");
    assert!(evil["late"].as_u64().unwrap_or(0) > 100, "evil's own clock made its own later events late: {evil}");
    let good = tenants.iter().find(|t| t["tenant_id"] == "good").expect("good's tenant row");
    assert_eq!((good["late"].as_u64(), good["over_quota"].as_object().map(|m| m.len())), (Some(0), Some(0)), "{good}");
    // The console: evil sees its refusals; good sees its own figures and nothing of evil.
    assert!(mixed.evil_console.contains("tenant evil on this host") && !mixed.evil_console.contains("over quota <b>0</b>"));
    assert!(mixed.good_console.contains("over quota <b>0</b>") && !mixed.good_console.contains("evil"), "{}", mixed.good_console);
    // Racing edits: one editor wins, every other one is told the revision moved.
    assert_eq!(mixed.racing, [200, 409, 409, 409, 409, 409, 409, 409]);
}
