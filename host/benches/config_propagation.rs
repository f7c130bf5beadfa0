//! `cargo bench -p rtscore --bench config_propagation`: how long a scenario change takes from
//! its write to MongoDB to the moment a running host applies it (the host measures this itself:
//! apply time minus the document's `updated_at`). Starts the local stack if needed, runs a host
//! on generated traffic, writes 100 changes at irregular intervals, prints percentiles.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use rtscore::config::mongo::MongoScenarioStore;
use rtscore_testkit::{Host, Stack, http_get};

const CHANGES: usize = 100;

fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let stack = Stack::ensure();
    let database = format!("bench{}", std::process::id());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let store = rt.block_on(MongoScenarioStore::connect(&stack.mongodb_url, &database)).expect("MongoDB");
    let doc = |rev: usize| {
        serde_json::json!({"tenant_id": "bench", "scenario_id": "home", "revision": rev,
        "config": {"realtime_compute": {"hot_score": {"top_n": 1 + rev % 50}}}})
    };
    rt.block_on(store.upsert(&doc(1))).unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut host = Host::run().mongo(&stack, &database).view_off().generate_rate(2000).http(port).start();
    let status_has = |rev: usize| http_get(port, "/status").filter(|s| s.contains(&format!("\"config_revision\":{rev},")));
    let deadline = Instant::now() + Duration::from_secs(20);
    while status_has(1).is_none() {
        assert!(Instant::now() < deadline, "host did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut lags = Vec::new();
    for rev in 2..CHANGES + 2 {
        // Irregular spacing, so changes land at every phase of the poll interval.
        std::thread::sleep(Duration::from_millis(40 + (rev as u64 * 37) % 160));
        rt.block_on(store.upsert(&doc(rev))).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = status_has(rev) {
                break s;
            }
            assert!(Instant::now() < deadline, "revision {rev} not applied within 10 s");
            std::thread::sleep(Duration::from_millis(5));
        };
        let v: serde_json::Value = serde_json::from_str(&status).unwrap();
        let lag = v["scenarios"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["scenario_id"] == "home")
            .and_then(|s| s["config_propagation_ms"].as_i64())
            .unwrap();
        lags.push(lag);
    }
    host.kill();
    lags.sort();
    println!("\n| config propagation (write to MongoDB -> applied by a running host) | ms |");
    println!("|---|---:|");
    for (name, p) in [("p50", 0.50), ("p90", 0.90), ("p99", 0.99)] {
        println!("| {name} | {} |", percentile(&lags, p));
    }
    println!("| max | {} |", lags.last().unwrap());
    println!(
        "\n{} changes, poll interval 250 ms (--config-poll-ms), FerretDB on 127.0.0.1; target p99 <= 1000 ms: {}",
        lags.len(),
        if percentile(&lags, 0.99) <= 1000 { "met" } else { "NOT met" }
    );
}
