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
