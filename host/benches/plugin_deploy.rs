//! `cargo bench -p rtscore --bench plugin_deploy`: how long a newly published module takes to
//! score a live scenario. A host runs on generated traffic (event time at 600x, so a one-minute
//! slide closes every 100 ms); the scenario already pins a module that is not published yet.
//! Measured: from the module's atomic write into the watched plugins directory to the first
//! emitted window scored by it (registry notice + hash check + compile + instantiate +
//! configure + the next window). Needs the reference plugins built (scripts/build-plugins.sh).

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rtscore::plugin::sha256_hex;
use rtscore_testkit::{Host, repo_root};

fn built_plugins() -> PathBuf {
    std::env::var_os("RTSCORE_PLUGINS_OUT").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target/plugins"))
}

fn main() {
    let dir = std::env::temp_dir().join(format!("rtscore-deploy-bench-{}", std::process::id()));
    let (scenarios, plugins, sink) = (dir.join("scenarios"), dir.join("plugins"), dir.join("out.jsonl"));
    std::fs::create_dir_all(&scenarios).unwrap();
    std::fs::create_dir_all(&plugins).unwrap();
    let modules: Vec<(String, Vec<u8>)> = ["gravity", "trend", "wilson-ctr", "decay-weighted"]
        .iter()
        .map(|m| {
            let path = built_plugins().join(format!("{m}@0.1.0.wasm"));
            (m.to_string(), std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run scripts/build-plugins.sh)", path.display())))
        })
        .collect();
    let write_scenario = |name: &str, sha: &str| {
        let doc = serde_json::json!({"tenant_id": "bench", "scenario_id": "live", "config": {"realtime_compute": {"hot_score": {
            "window_size_minutes": 5, "window_slide_minutes": 1, "plugin": {"name": name, "version": "0.1.0", "sha256": sha, "params": {}}}}}});
        std::fs::write(scenarios.join("live.json.tmp"), serde_json::to_vec(&doc).unwrap()).unwrap();
        std::fs::rename(scenarios.join("live.json.tmp"), scenarios.join("live.json")).unwrap();
    };
    write_scenario("warmup", &"0".repeat(64));
    let mut host = Host::run()
        .view_off()
        .generate_rate(5000)
        .arg("--generate-time-scale", "600")
        .scenarios_dir(&scenarios)
        .plugins_dir(&plugins)
        .jsonl_out(&sink)
        .start();
    std::thread::sleep(Duration::from_secs(2));

    let mut rows = Vec::new();
    for round in 0..2 {
        for (i, (m, bytes)) in modules.iter().enumerate() {
            // A fresh name per trial, so the registry sees a new module every time; the module's
            // bytes (and so the compile cache) repeat in round 2.
            let name = format!("{m}-{round}-{i}");
            write_scenario(&name, &sha256_hex(bytes));
            std::thread::sleep(Duration::from_millis(500)); // the scenario change is applied first
            let label = format!("\"plugin\":\"{name}@0.1.0\"");
            let start_len = std::fs::metadata(&sink).map(|m| m.len()).unwrap_or(0);
            let t0 = Instant::now();
            std::fs::write(plugins.join(format!("{name}@0.1.0.wasm.tmp")), bytes).unwrap();
            std::fs::rename(plugins.join(format!("{name}@0.1.0.wasm.tmp")), plugins.join(format!("{name}@0.1.0.wasm"))).unwrap();
            let latency = loop {
                let f = std::fs::File::open(&sink).unwrap();
                let mut r = std::io::BufReader::new(f);
                std::io::Seek::seek(&mut r, std::io::SeekFrom::Start(start_len)).unwrap();
                if r.lines().map_while(Result::ok).any(|l| l.contains(&label)) {
                    break t0.elapsed();
                }
                assert!(t0.elapsed() < Duration::from_secs(20), "{name} never scored a window");
                std::thread::sleep(Duration::from_millis(5));
            };
            rows.push((m.clone(), round == 0, latency));
        }
    }
    host.kill();
    let _ = std::fs::remove_dir_all(&dir);
    println!("\n| module | compiled (first use) | publish -> first window scored by it (ms) |");
    println!("|---|---|---:|");
    for (m, cold, l) in &rows {
        println!("| {m} | {} | {} |", if *cold { "yes" } else { "cached" }, l.as_millis());
    }
    let worst = rows.iter().map(|r| r.2).max().unwrap();
    println!(
        "\nwindows close every ~100 ms of wall time here; target <= 1000 ms: {}",
        if worst <= Duration::from_secs(1) { "met" } else { "NOT met" }
    );
}
