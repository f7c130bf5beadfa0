//! The author loop as a new user runs it, for every plugin world: `rtscore plugin new` scaffolds
//! a crate outside this repository, its native test passes, it builds to a component, and
//! `rtscore plugin test` runs it on the crate's sample events. And `plugin test` fails, with the
//! reason, when a metrics or profile module does not run.

use std::path::{Path, PathBuf};
use std::process::Command;

use rtscore_testkit::{read_hot_sink, rtscore_command};

/// The scaffolded crates build in one target directory, kept between runs (outside the
/// checkout) so only the first run compiles the SDK's dependencies, once for all worlds.
fn scaffold_target() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| rtscore_testkit::repo_root().join("target"));
    base.join("scaffold")
}

fn cargo(dir: &Path, args: &[&str]) {
    let out = Command::new("cargo").args(args).current_dir(dir).env("CARGO_TARGET_DIR", scaffold_target()).output().expect("run cargo");
    assert!(
        out.status.success(),
        "cargo {args:?} in the scaffolded crate failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `rtscore plugin test MODULE --scenario S --events-file E [--params P]`: success, stdout
/// parsed as JSON lines, stderr.
fn plugin_test(module: &Path, scenario: &Path, events: &Path, params: Option<&str>) -> (bool, Vec<serde_json::Value>, String) {
    let mut cmd = rtscore_command();
    cmd.args(["plugin", "test"]).arg(module).arg("--scenario").arg(scenario).arg("--events-file").arg(events);
    if let Some(p) = params {
        cmd.args(["--params", p]);
    }
    let out = cmd.output().unwrap();
    let lines = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (out.status.success(), lines, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn scaffolded_plugins_of_every_world_test_build_and_run_outside_the_repository() {
    // Not for the services: the crates' builds take both cores for minutes after an SDK change,
    // so this runs alone, never beside the timing bounds of the control-under-load suite.
    let _alone = rtscore_testkit::Stack::ensure_exclusive();
    let home = tempfile::tempdir().unwrap();
    let worlds = [("hot", "watch-time-heat"), ("profile", "tag-interests"), ("metrics", "engagement")];
    for (world, name) in worlds {
        let out = rtscore_command().args(["plugin", "new", name, "--world", world, "--dir"]).arg(home.path().join(name)).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("cargo build --release --target wasm32-wasip2"));
    }
    // Not inside the workspace: each crate is its own workspace, as in a tenant's repository.
    for (_, name) in worlds {
        cargo(&home.path().join(name), &["test", "--quiet"]);
        cargo(&home.path().join(name), &["build", "--quiet", "--release", "--target", "wasm32-wasip2"]);
    }
    let run = |name: &str| {
        let module = scaffold_target().join(format!("wasm32-wasip2/release/{}.wasm", name.replace('-', "_")));
        let size = std::fs::metadata(&module).unwrap().len();
        assert!(size < 1024 * 1024, "a scaffolded release module carries no debug info: {size} bytes");
        let dir = home.path().join(name);
        let (ok, lines, err) = plugin_test(&module, &dir.join("scenario.json"), &dir.join("events.jsonl"), None);
        assert!(ok, "{name}: {err}");
        lines
    };

    let sink = home.path().join("hot.jsonl");
    let hot = run("watch-time-heat");
    std::fs::write(&sink, hot.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let (_, rows) = read_hot_sink(&sink);
    assert!(rows.len() >= 2, "the sample events fill at least two windows: {hot:?}");
    assert!(rows.iter().all(|r| r["plugin"] == "under-test@0.0.0"), "every window scored by the module");

    // Metrics: only the metrics job runs; every window carries the module's values.
    let metrics = run("engagement");
    assert!(metrics.len() >= 2 && metrics.iter().all(|l| l["kind"] == "metrics"), "two windows, nothing else: {metrics:?}");
    for w in &metrics {
        assert_eq!(w["plugin"], "under-test@0.0.0", "{w}");
        let values = w["plugin_metrics"].as_array().unwrap();
        assert!(values.iter().any(|m| m["name"] == "engagement" && m["item_id"].is_null()), "the scenario's engagement: {w}");
    }

    // Profile: every user written, with the module's interests: a tag gets half of what its
    // item's category gets (the built-in update gives both the full weight).
    let profiles = run("tag-interests");
    assert!(profiles.iter().all(|l| l["kind"] == "profile"), "{profiles:?}");
    let users: std::collections::BTreeSet<&str> = profiles.iter().filter_map(|p| p["user_id"].as_str()).collect();
    assert_eq!(users.len(), 13, "every user of the sample is written");
    assert!(profiles.len() > 13, "users are written again every update_frequency_minutes");
    let score = |p: &serde_json::Value, name: &str| {
        p["interests"].as_array().unwrap().iter().find(|i| i["name"] == name).map(|i| i["score"].as_f64().unwrap())
    };
    let tagged: Vec<(f64, f64)> = profiles.iter().filter_map(|p| Some((score(p, "shoes")?, score(p, "sale")?))).collect();
    assert!(!tagged.is_empty(), "some users saw the tagged item: {profiles:?}");
    for (shoes, sale) in tagged {
        assert!((sale / shoes - 0.5).abs() < 1e-9, "sale is half of shoes: {sale} vs {shoes}");
    }

    // Scaffolding over an existing crate is refused and changes nothing.
    let again = rtscore_command().args(["plugin", "new", "engagement", "--dir"]).arg(home.path().join("engagement")).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
}

/// A metrics and a profile scenario of one tenant, with events that make both jobs emit: two
/// 10-minute metrics windows, and profile writes for two users.
fn worlds_fixture(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    const T0: i64 = 1_767_225_600_000;
    let metrics = dir.join("metrics.json");
    std::fs::write(
        &metrics,
        serde_json::json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": {
            "metrics": {"window_size_minutes": 10}}}})
        .to_string(),
    )
    .unwrap();
    let profile = dir.join("profile.json");
    std::fs::write(
        &profile,
        serde_json::json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": {
            "user_profile": {"update_frequency_minutes": 5, "behavior_weights": {"play": 1.0, "complete": 2.0}}}}})
        .to_string(),
    )
    .unwrap();
    let events = dir.join("events.jsonl");
    let lines: String = (0..40_i64)
        .map(|k| {
            let action = if k % 3 == 0 { "complete" } else { "play" };
            let ev = serde_json::json!({"tenant_id": "t", "scenario_id": "s", "user_id": format!("u{}", k % 2), "item_id": format!("i{}", k % 4),
                "action": action, "ts": T0 + k * 30_000, "category": "films", "watch_time_ms": 20_000});
            format!("{ev}\n")
        })
        .collect();
    std::fs::write(&events, lines).unwrap();
    (metrics, profile, events)
}

/// `plugin test` on the reference metrics and profile plugins (built by scripts/build-plugins.sh):
/// refused parameters or a scenario without events exit non-zero with the reason, where a host
/// would have written the built-in values. (Each run compiles the module in a debug host: the
/// passing runs are the scaffolded crates' above.)
#[test]
fn plugin_test_fails_with_the_reason_when_a_metrics_or_profile_module_does_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let (metrics, profile, events) = worlds_fixture(dir.path());
    let completion = dir.path().join("completion-rate.wasm");
    std::fs::write(&completion, rtscore_testkit::plugins::module("completion-rate")).unwrap();
    let dwell = dir.path().join("dwell-affinity.wasm");
    std::fs::write(&dwell, rtscore_testkit::plugins::module("dwell-affinity")).unwrap();

    let (ok, _, err) = plugin_test(&completion, &metrics, &events, Some(r#"{"complete": "play", "start": "play"}"#));
    assert!(!ok && err.contains("did not run on every metrics window") && err.contains("complete and start must differ"), "{err}");
    let (ok, _, err) = plugin_test(&dwell, &profile, &events, Some(r#"{"dwell_unit_ms": 0}"#));
    assert!(
        !ok && err.contains("did not run on every profile write") && err.contains("profile plugin under-test@0.0.0 is quarantined"),
        "{err}"
    );
    let elsewhere = dir.path().join("elsewhere.jsonl");
    std::fs::write(&elsewhere, std::fs::read_to_string(&events).unwrap().replace("\"tenant_id\":\"t\"", "\"tenant_id\":\"other\""))
        .unwrap();
    let (ok, _, err) = plugin_test(&dwell, &profile, &elsewhere, None);
    assert!(!ok && err.contains("no profile was written"), "{err}");
    // A metrics module for a scenario whose metrics are off: refused before anything runs.
    let off = dir.path().join("off.json");
    std::fs::write(&off, std::fs::read_to_string(&metrics).unwrap().replace("\"window_size_minutes\":10", "\"enabled\":false")).unwrap();
    let (ok, _, err) = plugin_test(&completion, &off, &events, None);
    assert!(!ok && err.contains("metrics.enabled is false"), "{err}");
}

#[test]
fn scenario_validate_checks_plugin_references_against_a_plugins_dir() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let module = rtscore_testkit::plugins::module("gravity");
    std::fs::write(plugins.join("gravity@0.1.0.wasm"), &module).unwrap();
    let sha = rtscore::plugin::sha256_hex(&module);
    let doc = |name: &str, sha: &str, params: serde_json::Value| {
        let path = dir.path().join(format!("{name}-{}.json", &sha[..8.min(sha.len())]));
        let d = serde_json::json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": {"hot_score": {
            "plugin": {"name": name, "version": "0.1.0", "sha256": sha, "params": params}}}}});
        std::fs::write(&path, serde_json::to_vec(&d).unwrap()).unwrap();
        path
    };
    let validate = |file: &std::path::Path| {
        let out = rtscore_command().args(["scenario", "validate", "--plugins-dir"]).arg(&plugins).arg(file).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };

    let (ok, text) = validate(&doc("gravity", &sha, serde_json::json!({"gravity": 1.5})));
    assert!(ok && text.contains("hot_score.plugin gravity@0.1.0 loads and accepts its params"), "{text}");

    let (ok, text) = validate(&doc("gravity", &"0".repeat(64), serde_json::json!({})));
    assert!(!ok && text.contains("sha256"), "a wrong sha256 is named: {text}");

    let (ok, text) = validate(&doc("gravity", &sha, serde_json::json!({"gravity": 99})));
    assert!(!ok && text.contains("gravity must be in 0..=10"), "the module's own refusal is shown: {text}");

    let (ok, text) = validate(&doc("missing", &sha, serde_json::json!({})));
    assert!(!ok && text.contains("no module"), "a missing module is named: {text}");

    // Without --plugins-dir the references are not checked (documents only).
    let out = rtscore_command().args(["scenario", "validate"]).arg(doc("missing", &sha, serde_json::json!({}))).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

/// Runs `program args` in `dir`, asserting success; stdout and stderr on failure.
fn run_in(dir: &Path, program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).current_dir(dir).output().unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} in {} failed:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Python and JavaScript author loop as a new user runs it (docs/plugins.md, "Python and
/// JavaScript plugins"): `plugin new --lang`, the native tests, `./build.sh`, `plugin test`. An
/// interpreter component takes a minute to build: the module of a scaffold whose files did not
/// change since an earlier run is taken from the scaffold target directory instead of built
/// again (the digest covers every file `build.sh` reads).
#[test]
fn python_and_javascript_plugins_scaffold_test_build_and_run_outside_the_repository() {
    let home = tempfile::tempdir().unwrap();
    for (lang, name, native) in
        [("python", "py-heat", &["python3", "-m", "unittest", "-q"][..]), ("js", "js-heat", &["node", "--test"][..])]
    {
        let dir = home.path().join(name);
        let out = rtscore_command().args(["plugin", "new", name, "--lang", lang, "--dir"]).arg(&dir).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("./build.sh"));
        run_in(&dir, native[0], &native[1..]);

        let mut files: Vec<PathBuf> = walk(&dir);
        files.sort();
        let mut digest = String::new();
        for f in &files {
            digest.push_str(&rtscore::plugin::sha256_hex(&std::fs::read(f).unwrap()));
        }
        let built = scaffold_target().join("lang-builds").join(rtscore::plugin::sha256_hex(digest.as_bytes())).join(format!("{name}.wasm"));
        let module = dir.join(format!("{name}.wasm"));
        if built.is_file() {
            std::fs::copy(&built, &module).unwrap();
        } else {
            run_in(&dir, "./build.sh", &[]);
            std::fs::create_dir_all(built.parent().unwrap()).unwrap();
            std::fs::copy(&module, &built).unwrap();
        }
        let (ok, lines, err) = plugin_test(&module, &dir.join("scenario.json"), &dir.join("events.jsonl"), None);
        assert!(ok, "{name}: {err}");
        let sink = home.path().join(format!("{name}.jsonl"));
        std::fs::write(&sink, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
        let (_, rows) = read_hot_sink(&sink);
        assert!(rows.len() >= 2, "{name}: the sample events fill at least two windows: {lines:?}");
        assert!(rows.iter().all(|r| r["plugin"] == "under-test@0.0.0"), "{name}: every window scored by the module");
        // The formula's floor: items with fewer than 2 events in a window are left out.
        assert!(rows.iter().all(|r| !r["items"].as_array().unwrap().is_empty()), "{name}: {rows:?}");
    }
    // A metrics or profile plugin in Python or JavaScript is refused with the reason.
    let out = rtscore_command()
        .args(["plugin", "new", "m", "--lang", "python", "--world", "metrics", "--dir"])
        .arg(home.path().join("m"))
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("hot-score plugins"));
}

/// Every file under `dir`, recursively.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "__pycache__" && n != "node_modules") {
                out.extend(walk(&p));
            }
        } else {
            out.push(p);
        }
    }
    out
}
