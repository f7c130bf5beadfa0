//! Plugins for tests and benches: the plugin crates (`plugins/*`, `tests/plugins/*`) built for
//! wasm32-wasip2, and window batches to score.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rtscore::scoring::WindowBatch;

use crate::repo_root;

/// Every plugin crate the tests load, reference and broken ones.
pub const CRATES: &[&str] = &[
    "decay-weighted",
    "gravity",
    "wilson-ctr",
    "trend",
    "completion-rate",
    "watch-heat",
    "gmv-heat",
    "fair-heat",
    "dwell-affinity",
    "test-trap",
    "test-spin",
    "test-oom",
    "test-wrong-len",
    "test-nan",
    "test-bad-params",
    "test-probe",
    "test-context",
];

/// Directory holding `<crate_name>.wasm` for every crate in [`CRATES`].
///
/// `RTSCORE_TEST_WASM_DIR` points at prebuilt modules; otherwise this runs
/// `cargo build --release --target wasm32-wasip2` once per test binary, in a target directory of
/// its own (the outer `cargo test` may hold the lock on the main one): `$CARGO_TARGET_DIR/plugin-tests`,
/// else `target/plugin-tests` in the repository.
pub fn wasm_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("RTSCORE_TEST_WASM_DIR") {
            return PathBuf::from(dir);
        }
        let base = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"));
        let target_dir = base.join("plugin-tests");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(repo_root())
            .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2"])
            // As scripts/build-plugins.sh builds them: no debug info, no symbols (and WebAssembly
            // SIMD, from the repository's .cargo/config.toml).
            .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
            .env("CARGO_PROFILE_RELEASE_STRIP", "true")
            .arg("--target-dir")
            .arg(&target_dir);
        for c in CRATES {
            cmd.args(["-p", c]);
        }
        let status = cmd.status().expect("run cargo to build the plugin crates");
        assert!(status.success(), "building the plugin crates for wasm32-wasip2 failed: {status}");
        target_dir.join("wasm32-wasip2").join("release")
    })
}

/// The module bytes of a plugin crate.
pub fn module(crate_name: &str) -> Vec<u8> {
    let path = wasm_dir().join(format!("{}.wasm", crate_name.replace('-', "_")));
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The language ports of the reference plugins (`plugins/<name>/python/`, `plugins/<name>/js/`),
/// as scripts/build-lang-plugins.sh names their components: `<name>-py`, `<name>-js`.
pub const LANG_PLUGINS: &[&str] = &["decay-weighted-py", "watch-heat-py", "decay-weighted-js", "watch-heat-js"];

/// Directory holding `<name>@0.1.0.wasm` for every module in [`LANG_PLUGINS`].
///
/// `RTSCORE_PLUGINS_OUT` (set by scripts/test.sh, where build-plugins.sh built them) or, without
/// it, `$CARGO_TARGET_DIR/plugins` (else `target/plugins`), where this runs
/// scripts/build-lang-plugins.sh once per test binary: it rebuilds a component only when its
/// sources changed, and needs the toolchains scripts/setup.sh installs.
pub fn lang_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("RTSCORE_PLUGINS_OUT") {
            let dir = PathBuf::from(dir);
            if LANG_PLUGINS.iter().all(|n| dir.join(format!("{n}@0.1.0.wasm")).is_file()) {
                return dir;
            }
        }
        let base = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"));
        let dir = base.join("plugins");
        let status = Command::new("bash")
            .arg(repo_root().join("scripts/build-lang-plugins.sh"))
            .env("RTSCORE_PLUGINS_OUT", &dir)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run scripts/build-lang-plugins.sh");
        assert!(status.success(), "building the Python and JavaScript plugins failed: {status}");
        for n in LANG_PLUGINS {
            assert!(
                dir.join(format!("{n}@0.1.0.wasm")).is_file(),
                "{n}@0.1.0.wasm was not built in {}: its toolchain is missing (run scripts/setup.sh)",
                dir.display()
            );
        }
        dir
    })
}

/// The component of a language port (one of [`LANG_PLUGINS`]).
pub fn lang_module(name: &str) -> Vec<u8> {
    let path = lang_dir().join(format!("{name}@0.1.0.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The compiled-plugin cache the tests share with the hosts they start (the hosts' default
/// directory): an interpreter component takes seconds to compile, and this way each is
/// compiled once per machine, not once per test.
pub fn compile_cache_dir() -> PathBuf {
    rtscore::plugin::disk_cache::default_dir().unwrap_or_else(|| std::env::temp_dir().join("rtscore-compiled-plugins"))
}

/// The reference plugins kept as WIT 0.1.0 modules in `tests/plugins/v0.1.0/` (see its README).
pub const V010_FIXTURES: &[&str] = &["decay-weighted", "gravity", "trend", "wilson-ctr"];

/// The bytes of the WIT 0.1.0 build of reference plugin `name` (one of [`V010_FIXTURES`]).
pub fn v010_fixture(name: &str) -> Vec<u8> {
    let path = repo_root().join("tests/plugins/v0.1.0").join(format!("{name}@0.1.0.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A window of `items` items with `rows_per_item` rows each, in the window context a 0.2.0
/// plugin reads ([`with_context`]): the benches' fixed workload (deterministic, no features).
pub fn fixed_batch(items: usize, rows_per_item: usize) -> WindowBatch {
    let end = 1_767_225_600_000_i64;
    let actions: Vec<String> = ["impression", "view", "click", "like"].iter().map(|s| s.to_string()).collect();
    let mut b = WindowBatch::new(end - 3_600_000, end, actions, vec![0.5, 1.0, 2.0, 3.0], 0.1);
    for k in 0..items {
        for r in 0..rows_per_item {
            b.push_row(((k + r) % 4) as u16, 1 + (k % 7) as u32, ((k * 7 + r * 13) % 3_600) as f64 * 1_000.0, 1.0e8);
        }
        b.finish_item();
    }
    with_context(b)
}

/// `b` with the window context a WIT 0.2.0 plugin reads, as the pipeline fills it: item ids
/// `item-<k>`, a one-minute slide, `top_n` 50, tenant `t`, scenario `s` (no features).
pub fn with_context(mut b: WindowBatch) -> WindowBatch {
    b.item_ids.clear();
    b.item_id_ends.clear();
    for k in 0..b.item_count() {
        b.push_item_id(&format!("item-{k}"));
    }
    (b.slide_ms, b.top_n) = (60_000, 50);
    (b.tenant_id, b.scenario_id) = ("t".into(), "s".into());
    b
}

/// A random window: `items` items with 1..=`max_rows` rows each over the given actions, with
/// the window context ([`with_context`]) a 0.2.0 plugin gets from the pipeline.
pub fn random_batch(seed: u64, items: usize, max_rows: usize) -> WindowBatch {
    let mut rng = SmallRng::seed_from_u64(seed);
    let actions: Vec<String> = ["impression", "view", "click", "like", "share", "purchase"].iter().map(|s| s.to_string()).collect();
    let weights: Vec<f64> = actions.iter().map(|_| if rng.random_bool(0.2) { 0.0 } else { rng.random_range(0.1..10.0) }).collect();
    let lambda = [0.0, 0.1, 0.7, 3.0][rng.random_range(0..4)];
    let end = 1_767_225_600_000_i64;
    let mut b = WindowBatch::new(end - 3_600_000, end, actions.clone(), weights, lambda);
    for _ in 0..items {
        for _ in 0..rng.random_range(1..=max_rows) {
            let bucket = rng.random_range(0..60) as f64;
            let n = rng.random_range(1..50u32);
            let var = if n == 1 { 0.0 } else { rng.random_range(0.0..3.0e8) };
            b.push_row(rng.random_range(0..actions.len()) as u16, n, bucket * 60_000.0 + rng.random_range(0.0..60_000.0), var);
        }
        b.finish_item();
    }
    with_context(b)
}

/// A batch of `items` items with one `view` row each, with the window context.
pub fn simple_batch(items: usize) -> WindowBatch {
    let end = 1_767_225_600_000_i64;
    let mut b = WindowBatch::new(end - 3_600_000, end, vec!["view".into(), "click".into()], vec![1.0, 2.0], 0.1);
    for k in 0..items {
        b.push_row(0, 1 + k as u32, 30_000.0, 0.0);
        b.finish_item();
    }
    with_context(b)
}

/// Relative difference, safe at zero.
pub fn rel_diff(a: f64, b: f64) -> f64 {
    if a == b { 0.0 } else { (a - b).abs() / a.abs().max(b.abs()) }
}
