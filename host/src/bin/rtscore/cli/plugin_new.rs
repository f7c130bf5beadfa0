//! `rtscore plugin new`: scaffolds a plugin crate that builds outside this repository, with a
//! passing native test, a sample scenario and events for `plugin test`, and a README.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::ValueEnum;
use rtscore::plugin::registry::ModuleId;

/// Which of the host's plugin worlds the crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum World {
    /// Scores an item hot list window (WIT world `scorer`).
    Hot,
}

/// Where the scaffolded crate takes the guest SDK from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdkSource {
    Path(PathBuf),
    Git(String),
}

impl SdkSource {
    fn dependency_line(&self) -> String {
        match self {
            SdkSource::Path(p) => format!("rtscore-guest = {{ path = {} }}", toml_string(&p.display().to_string())),
            SdkSource::Git(url) => format!("rtscore-guest = {{ git = {} }}", toml_string(url)),
        }
    }
}

/// The SDK next to the sources this binary was built from, when they are still there.
pub fn default_sdk() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
    sdk.join("Cargo.toml").is_file().then(|| sdk.canonicalize().unwrap_or(sdk))
}

/// One file of the crate: its path relative to the crate root, and its text.
pub type File = (&'static str, String);

/// The crate's files for plugin `name`. Pure: [`write`] puts them on disk.
pub fn render(name: &str, world: World, sdk: &SdkSource) -> anyhow::Result<Vec<File>> {
    // A plugin name must be a module name (to publish it) and a Cargo package name (to build it).
    ModuleId::new(name, "0.1.0").map_err(|e| anyhow::anyhow!("{e}"))?;
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        bail!("plugin name {name:?} must start with a letter a-z (Cargo package names cannot start with a digit)");
    }
    let World::Hot = world;
    let crate_name = name.replace('-', "_");
    let fill = |t: &str| {
        t.replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{sdk_dep}}", &sdk.dependency_line())
            .replace("{{toolchain}}", TOOLCHAIN)
    };
    Ok(vec![
        ("Cargo.toml", fill(include_str!("../../../../templates/plugin-hot/Cargo.toml.tmpl"))),
        ("rust-toolchain.toml", fill(include_str!("../../../../templates/plugin-hot/rust-toolchain.toml.tmpl"))),
        (".cargo/config.toml", fill(include_str!("../../../../templates/plugin-hot/cargo-config.toml.tmpl"))),
        (".gitignore", fill(include_str!("../../../../templates/plugin-hot/gitignore.tmpl"))),
        ("src/lib.rs", fill(include_str!("../../../../templates/plugin-hot/lib.rs.tmpl"))),
        ("README.md", fill(include_str!("../../../../templates/plugin-hot/README.md.tmpl"))),
        ("scenario.json", sample_scenario(name)),
        ("events.jsonl", sample_events(name)),
    ])
}

/// Writes the crate into `dir`, which must not exist yet or be empty: nothing is overwritten.
pub fn write(dir: &Path, files: &[File]) -> anyhow::Result<()> {
    if dir.exists() && std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?.next().is_some() {
        bail!("{} already exists and is not empty: choose another --dir or name", dir.display());
    }
    for (rel, text) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// The toolchain the workspace pins (`rust-toolchain.toml`), which the SDK is tested with; a
/// test keeps the two in step.
const TOOLCHAIN: &str = "1.99.1";

fn toml_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// A scenario of tenant `demo` that the sample events fill with two windows.
fn sample_scenario(name: &str) -> String {
    let doc = serde_json::json!({
        "tenant_id": "demo",
        "scenario_id": name,
        "status": "active",
        "config": {"realtime_compute": {"hot_score": {
            "action_weights": {"view": 1.0, "click": 3.0, "purchase": 10.0},
            "decay_lambda": 1.0,
            "window_size_minutes": 10,
            "window_slide_minutes": 5,
            "top_n": 10
        }}}
    });
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
}

/// 20 minutes of deterministic traffic on five items for the sample scenario.
fn sample_events(name: &str) -> String {
    const START_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    let actions = ["view", "view", "view", "click", "view", "purchase", "click"];
    let mut out = String::new();
    for i in 0..120_i64 {
        let item = format!("item-{}", (i * 7 + i / 5) % 5 + 1);
        let ev = serde_json::json!({
            "tenant_id": "demo",
            "scenario_id": name,
            "user_id": format!("u{}", i % 13),
            "item_id": item,
            "action": actions[(i % actions.len() as i64) as usize],
            "ts": START_MS + i * 10_000,
        });
        out.push_str(&ev.to_string());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file<'a>(files: &'a [File], rel: &str) -> &'a str {
        files.iter().find(|(r, _)| *r == rel).map(|(_, t)| t.as_str()).unwrap_or_default()
    }

    #[test]
    fn the_crate_names_its_package_module_and_sdk() {
        let files = render("watch-heat", World::Hot, &SdkSource::Path("/opt/rtscore/guest-sdk".into())).unwrap();
        let cargo = file(&files, "Cargo.toml");
        assert!(cargo.contains("name = \"watch-heat\""), "{cargo}");
        assert!(cargo.contains("rtscore-guest = { path = \"/opt/rtscore/guest-sdk\" }"), "{cargo}");
        assert!(cargo.contains("debug = false"), "release builds carry no debug info: {cargo}");
        assert!(file(&files, "README.md").contains("release/watch_heat.wasm"));
        assert!(file(&files, ".cargo/config.toml").contains("+simd128"), "the module uses WebAssembly SIMD");
        assert!(!files.iter().any(|(_, t)| t.contains("{{")), "every placeholder is filled");
        let git = render("x", World::Hot, &SdkSource::Git("https://example.com/rtscore.git".into())).unwrap();
        assert!(file(&git, "Cargo.toml").contains("rtscore-guest = { git = \"https://example.com/rtscore.git\" }"));
    }

    #[test]
    fn names_that_cannot_be_a_module_or_a_package_are_refused() {
        let sdk = SdkSource::Path("/sdk".into());
        for bad in ["", "Heat", "9heat", "heat plugin", "../heat", &"h".repeat(65)] {
            assert!(render(bad, World::Hot, &sdk).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_sample_events_belong_to_the_sample_scenario() {
        let files = render("heat", World::Hot, &SdkSource::Path("/sdk".into())).unwrap();
        let scenario: serde_json::Value = serde_json::from_str(file(&files, "scenario.json")).unwrap();
        assert_eq!(scenario["scenario_id"], "heat");
        let events: Vec<serde_json::Value> = file(&files, "events.jsonl").lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(events.len(), 120);
        assert!(events.iter().all(|e| e["tenant_id"] == "demo" && e["scenario_id"] == "heat"));
    }

    #[test]
    fn the_toolchain_matches_the_workspace_pin() {
        let pin = include_str!("../../../../../rust-toolchain.toml");
        assert!(pin.contains(&format!("channel = \"{TOOLCHAIN}\"")), "rust-toolchain.toml moved on: update TOOLCHAIN");
    }

    #[test]
    fn an_existing_non_empty_directory_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
        assert!(write(dir.path(), &[("keep.txt", "theirs".into())]).is_err());
        assert_eq!(std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(), "mine");
    }
}
