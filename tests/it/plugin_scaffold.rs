//! The author loop as a new user runs it: `rtscore plugin new` scaffolds a crate outside this
//! repository, its native test passes, it builds to a component, and `rtscore plugin test`
//! scores the crate's sample events with it.

use std::path::PathBuf;
use std::process::Command;

use rtscore_testkit::{read_hot_sink, rtscore_command};

/// The scaffolded crate builds in its own target directory, kept between runs (outside the
/// checkout) so only the first run compiles the SDK's dependencies.
fn scaffold_target() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| rtscore_testkit::repo_root().join("target"));
    base.join("scaffold")
}

fn cargo(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("cargo").args(args).current_dir(dir).env("CARGO_TARGET_DIR", scaffold_target()).output().expect("run cargo");
    assert!(
        out.status.success(),
        "cargo {args:?} in the scaffolded crate failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_scaffolded_plugin_tests_builds_and_scores_outside_the_repository() {
    // Not for the services: the crate's builds take both cores for minutes after an SDK change,
    // so this runs alone, never beside the timing bounds of the control-under-load suite.
    let _alone = rtscore_testkit::Stack::ensure_exclusive();
    let home = tempfile::tempdir().unwrap();
    let crate_dir = home.path().join("watch-time-heat");
    let out = rtscore_command().args(["plugin", "new", "watch-time-heat", "--dir"]).arg(&crate_dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("cargo build --release --target wasm32-wasip2"));

    // Not inside the workspace: the crate is its own workspace, as in a tenant's repository.
    cargo(&crate_dir, &["test", "--quiet"]);
    cargo(&crate_dir, &["build", "--quiet", "--release", "--target", "wasm32-wasip2"]);
    let module = scaffold_target().join("wasm32-wasip2/release/watch_time_heat.wasm");
    let size = std::fs::metadata(&module).unwrap().len();
    assert!(size < 1024 * 1024, "a scaffolded release module carries no debug info: {size} bytes");

    let sink = home.path().join("hot.jsonl");
    let out = rtscore_command()
        .args(["plugin", "test"])
        .arg(&module)
        .arg("--scenario")
        .arg(crate_dir.join("scenario.json"))
        .arg("--events-file")
        .arg(crate_dir.join("events.jsonl"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(&sink, &out.stdout).unwrap();
    let (_, rows) = read_hot_sink(&sink);
    assert!(rows.len() >= 2, "the sample events fill at least two windows: {}", String::from_utf8_lossy(&out.stdout));
    assert!(rows.iter().all(|r| r["plugin"] == "under-test@0.0.0"), "every window scored by the module");

    // Scaffolding over an existing crate is refused and changes nothing.
    let again = rtscore_command().args(["plugin", "new", "watch-time-heat", "--dir"]).arg(&crate_dir).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
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
