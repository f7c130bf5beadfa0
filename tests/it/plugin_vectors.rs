//! Plugins through the real binary: the shared hot vectors scored by the `decay-weighted`
//! module (pinned by sha256) match the expected hot lists, and a module published into the
//! watched plugins directory takes over a live scenario without a restart (DESIGN §5).

use std::path::Path;
use std::time::Duration;

use rtscore::plugin::sha256_hex;
use rtscore_testkit::hot_vectors as vectors;
use rtscore_testkit::*;

/// Copies the vector scenarios into `dir`, each referencing `decay-weighted@0.1.0` by hash.
fn scenarios_with_plugin(dir: &Path, sha256: &str) {
    for entry in std::fs::read_dir(vectors().join("scenarios")).unwrap() {
        let path = entry.unwrap().path();
        let mut doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        doc["config"]["realtime_compute"]["hot_score"]["plugin"] =
            serde_json::json!({"name": "decay-weighted", "version": "0.1.0", "sha256": sha256, "params": {}});
        std::fs::write(dir.join(path.file_name().unwrap()), serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    }
}

#[test]
fn shared_vectors_scored_by_the_decay_weighted_plugin_match() {
    let dir = tempfile::tempdir().unwrap();
    let (scenarios, plugins, sink) = (dir.path().join("scenarios"), dir.path().join("plugins"), dir.path().join("out.jsonl"));
    std::fs::create_dir_all(&scenarios).unwrap();
    std::fs::create_dir_all(&plugins).unwrap();
    let module = plugins::module("decay-weighted");
    std::fs::write(plugins.join("decay-weighted@0.1.0.wasm"), &module).unwrap();
    scenarios_with_plugin(&scenarios, &sha256_hex(&module));
    // The shared vectors through the host, with whatever plugin pin the scenarios hold now.
    let replay = || {
        Host::run()
            .view_off()
            .events_file(vectors().join("events.jsonl"))
            .scenarios_dir(&scenarios)
            .plugins_dir(&plugins)
            .jsonl_out(&sink)
            .output()
    };
    let out = replay();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (got, records) = read_hot_sink(&sink);
    let (want, _) = read_hot_sink(&vectors().join("expected.jsonl"));
    let diffs = hot_differences(&want, &got, 1e-3);
    assert!(diffs.is_empty(), "{} differences, first: {:?}", diffs.len(), &diffs[..diffs.len().min(5)]);
    assert!(!records.is_empty() && records.iter().all(|r| r["plugin"] == "decay-weighted@0.1.0"), "every window is scored by the plugin");

    // A wrong pin is refused: the scenario falls back to the built-in formula (same scores), and says so.
    scenarios_with_plugin(&scenarios, &"0".repeat(64));
    let out = replay();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let (got, records) = read_hot_sink(&sink);
    assert!(hot_differences(&want, &got, 1e-3).is_empty());
    assert!(records.iter().all(|r| r["plugin"].is_null()), "built-in fallback is reported as plugin null");
    assert!(log.contains("but the scenario pins"), "the hash mismatch is reported: {log}");
}

#[test]
fn publishing_a_module_switches_a_live_scenario_without_restart() {
    let stack = Stack::ensure();
    let (tenant, topic) = (unique("pl"), unique("events-"));
    let dir = tempfile::tempdir().unwrap();
    let (scenarios, plugins, sink) = (dir.path().join("scenarios"), dir.path().join("plugins"), dir.path().join("out.jsonl"));
    std::fs::create_dir_all(&scenarios).unwrap();
    std::fs::create_dir_all(&plugins).unwrap();
    let module = plugins::module("gravity");
    let doc = serde_json::json!({"tenant_id": tenant, "scenario_id": "s", "config": {"realtime_compute": {"hot_score": {
        "window_size_minutes": 10, "window_slide_minutes": 5,
        "plugin": {"name": "gravity", "version": "0.1.0", "sha256": sha256_hex(&module), "params": {"gravity": 1.5}}}}}});
    std::fs::write(scenarios.join("s.json"), serde_json::to_vec(&doc).unwrap()).unwrap();
    stack.create_topic(&topic, 1);
    let port = free_port();
    let mut host = Host::run()
        .kafka(&stack, &topic, &unique("g"))
        .scenarios_dir(&scenarios)
        .plugins_dir(&plugins)
        .jsonl_out(&sink)
        .view_off()
        .http(port)
        .start();
    const T0: i64 = 1_767_225_600_000;
    let events = |from: i64, to: i64| -> Vec<Vec<u8>> {
        (from..to).step_by(7_000).map(|ts| event_line(&tenant, "s", &format!("i{}", ts % 7), "click", ts)).collect()
    };
    stack.produce(&topic, 1, &events(T0, T0 + 16 * 60_000));
    assert!(wait_until(Duration::from_secs(30), || read_hot_sink(&sink).1.len() >= 2), "{}", host.log());
    let (_, before) = read_hot_sink(&sink);
    assert!(before.iter().all(|r| r["plugin"].is_null()), "module not published yet: built-in formula");
    assert!(
        http_get(port, "/status").is_some_and(|s| s.contains("quarantined")),
        "status shows the missing module: {:?}",
        http_get(port, "/status")
    );

    // Hot deploy: the module appears in the watched directory (atomically, as `plugin publish` does).
    std::fs::write(plugins.join("gravity@0.1.0.wasm.tmp"), &module).unwrap();
    std::fs::rename(plugins.join("gravity@0.1.0.wasm.tmp"), plugins.join("gravity@0.1.0.wasm")).unwrap();
    // The bound covers a compile on a loaded 2-core machine (a debug host compiles the module).
    assert!(
        wait_until(Duration::from_secs(60), || http_get(port, "/status").is_some_and(|s| s.contains("active gravity@0.1.0"))),
        "{:?}\n{}",
        http_get(port, "/status"),
        host.log()
    );
    let status: serde_json::Value = serde_json::from_str(&http_get(port, "/status").unwrap()).unwrap();
    let row = &status["scenarios"][0];
    assert!(row["plugin_error"].is_null() && row["last_error"].is_null(), "a healthy plugin carries no stale error: {row}");
    stack.produce(&topic, 1, &events(T0 + 16 * 60_000, T0 + 40 * 60_000));
    assert!(
        wait_until(Duration::from_secs(30), || read_hot_sink(&sink).1.iter().any(|r| r["plugin"] == "gravity@0.1.0")),
        "no window scored by the published module\n{}",
        host.log()
    );
    assert!(host.stop().success());
}

#[test]
fn plugin_test_command_prints_the_hot_lists_a_host_would_emit() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("decay-weighted.wasm");
    std::fs::write(&module, plugins::module("decay-weighted")).unwrap();
    let (want, _) = read_hot_sink(&vectors().join("expected.jsonl"));
    let sink = dir.path().join("stdout.jsonl");
    let mut got = SinkWindows::new();
    for scenario in std::fs::read_dir(vectors().join("scenarios")).unwrap() {
        let out = rtscore_command()
            .args(["plugin", "test"])
            .arg(&module)
            .arg("--scenario")
            .arg(scenario.unwrap().path())
            .arg("--events-file")
            .arg(vectors().join("events.jsonl"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::write(&sink, &out.stdout).unwrap();
        got.extend(read_hot_sink(&sink).0);
    }
    let diffs = hot_differences(&want, &got, 1e-3);
    assert!(diffs.is_empty(), "{} differences, first: {:?}", diffs.len(), &diffs[..diffs.len().min(5)]);
}

/// `plugin test` is a CI check: a module that does not load, refuses its parameters, or a
/// scenario whose events never reach a window, exit non-zero with the reason (it used to exit
/// 0 and print the built-in formula's lists).
#[test]
fn plugin_test_fails_with_the_reason_when_the_module_does_not_score() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("decay-weighted.wasm");
    std::fs::write(&module, plugins::module("decay-weighted")).unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"not a component").unwrap();
    let scenario = std::fs::read_dir(vectors().join("scenarios")).unwrap().next().unwrap().unwrap().path();
    let elsewhere = dir.path().join("elsewhere.json");
    let mut doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&scenario).unwrap()).unwrap();
    doc["scenario_id"] = "no-events-here".into();
    std::fs::write(&elsewhere, doc.to_string()).unwrap();
    let run = |module: &std::path::Path, scenario: &std::path::Path, params: Option<&str>| {
        let mut cmd = rtscore_command();
        cmd.args(["plugin", "test"]).arg(module).arg("--scenario").arg(scenario).arg("--events-file").arg(vectors().join("events.jsonl"));
        if let Some(p) = params {
            cmd.args(["--params", p]);
        }
        let out = cmd.output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (ok, _) = run(&module, &scenario, None);
    assert!(ok, "a healthy module passes");
    let (ok, err) = run(&garbage, &scenario, None);
    assert!(!ok && err.contains("does not load as a plugin") && err.contains("compile"), "a module that does not load: {err}");
    let (ok, err) = run(&module, &scenario, Some(r#"{"unexpected": 1}"#));
    assert!(!ok && err.contains("did not score every window") && err.contains("rejected its params"), "refused parameters: {err}");
    let (ok, err) = run(&module, &elsewhere, None);
    assert!(!ok && err.contains("no window was scored"), "a scenario without events: {err}");
}
