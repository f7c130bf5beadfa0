//! `rtscore plugin new`: scaffolds a plugin crate of one world (hot, profile, metrics) that
//! builds outside this repository, with a passing native test, a sample scenario and events for
//! `plugin test`, and a README. The build files are shared by every world
//! (`templates/plugin/common/`); the formula and the README's opening are the world's own.
//!
//! With `--lang python` or `--lang js`, a hot-score plugin in that language instead
//! (`templates/plugin/python/`, `templates/plugin/js/`): the directory gets a copy of the
//! language's guest SDK and of the WIT contract, so it tests and builds anywhere with only the
//! language's toolchain (componentize-py, componentize-js).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::ValueEnum;
use rtscore::plugin::PluginWorld;
use rtscore::plugin::registry::ModuleId;

/// Which of the host's plugin worlds the crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum World {
    /// Scores an item hot list window (WIT world `scorer`, `hot_score.plugin`).
    Hot,
    /// Updates the interests of users due to be written (WIT world `profile`,
    /// `user_profile.plugin`).
    Profile,
    /// Computes metrics over a closed metrics window (WIT world `metrics`, `metrics.plugin`).
    Metrics,
}

impl World {
    /// The host's world, for the section that references the module.
    pub fn plugin_world(self) -> PluginWorld {
        match self {
            World::Hot => PluginWorld::Scorer,
            World::Profile => PluginWorld::Profile,
            World::Metrics => PluginWorld::Metrics,
        }
    }

    /// The world's own files: `src/lib.rs` and the README's opening paragraph.
    fn templates(self) -> (&'static str, &'static str) {
        match self {
            World::Hot => (
                include_str!("../../../../templates/plugin/hot/lib.rs.tmpl"),
                include_str!("../../../../templates/plugin/hot/about.md.tmpl"),
            ),
            World::Profile => (
                include_str!("../../../../templates/plugin/profile/lib.rs.tmpl"),
                include_str!("../../../../templates/plugin/profile/about.md.tmpl"),
            ),
            World::Metrics => (
                include_str!("../../../../templates/plugin/metrics/lib.rs.tmpl"),
                include_str!("../../../../templates/plugin/metrics/about.md.tmpl"),
            ),
        }
    }

    /// What `plugin test` prints for this world, and what the module must run on.
    pub fn test_output(self) -> (&'static str, &'static str) {
        match self {
            World::Hot => ("hot lists", "windows"),
            World::Profile => ("profile writes", "profile writes"),
            World::Metrics => ("metrics windows", "metrics windows"),
        }
    }
}

/// The language the plugin is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// A Cargo crate on the Rust guest SDK (every world).
    Rust,
    /// A Python module on guest-sdk-py, built with componentize-py (world hot).
    Python,
    /// A JavaScript module on guest-sdk-js, built with componentize-js (world hot).
    #[value(alias = "javascript")]
    Js,
}

/// The componentize-py and componentize-js versions the scaffolds name, as scripts/lib.sh pins
/// them (a test keeps them in step).
pub const COMPONENTIZE_PY: &str = "0.25.1";
pub const COMPONENTIZE_JS: &str = "0.23.0";

/// The WIT contract a Python or JavaScript plugin builds against.
const WIT: &str = include_str!("../../../../../wit/scoring.wit");

/// The Python guest SDK, copied into a scaffolded Python plugin.
const SDK_PY: &[(&str, &str)] = &[
    ("rtscore_guest/__init__.py", include_str!("../../../../../guest-sdk-py/rtscore_guest/__init__.py")),
    ("rtscore_guest/batch.py", include_str!("../../../../../guest-sdk-py/rtscore_guest/batch.py")),
    ("rtscore_guest/decay.py", include_str!("../../../../../guest-sdk-py/rtscore_guest/decay.py")),
    ("rtscore_guest/math.py", include_str!("../../../../../guest-sdk-py/rtscore_guest/math.py")),
    ("rtscore_guest/params.py", include_str!("../../../../../guest-sdk-py/rtscore_guest/params.py")),
    ("rtscore_guest/scorer.py", include_str!("../../../../../guest-sdk-py/rtscore_guest/scorer.py")),
    ("rtscore_guest/testing.py", include_str!("../../../../../guest-sdk-py/rtscore_guest/testing.py")),
    ("rtscore_guest/time.py", include_str!("../../../../../guest-sdk-py/rtscore_guest/time.py")),
];

/// The JavaScript guest SDK, copied into a scaffolded JavaScript plugin.
const SDK_JS: &[(&str, &str)] = &[
    ("rtscore-guest/index.js", include_str!("../../../../../guest-sdk-js/src/index.js")),
    ("rtscore-guest/batch.js", include_str!("../../../../../guest-sdk-js/src/batch.js")),
    ("rtscore-guest/decay.js", include_str!("../../../../../guest-sdk-js/src/decay.js")),
    ("rtscore-guest/params.js", include_str!("../../../../../guest-sdk-js/src/params.js")),
    ("rtscore-guest/scorer.js", include_str!("../../../../../guest-sdk-js/src/scorer.js")),
    ("rtscore-guest/testing.js", include_str!("../../../../../guest-sdk-js/src/testing.js")),
];

/// The files of a hot-score plugin `name` in Python or JavaScript. Pure, like [`render`].
pub fn render_lang(name: &str, lang: Lang) -> anyhow::Result<Vec<File>> {
    ModuleId::new(name, "0.1.0").map_err(|e| anyhow::anyhow!("{e}"))?;
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        bail!("plugin name {name:?} must start with a letter a-z");
    }
    let fill = |t: &str| {
        t.replace("{{name}}", name).replace("{{componentize_py}}", COMPONENTIZE_PY).replace("{{componentize_js}}", COMPONENTIZE_JS)
    };
    let mut files: Vec<File> = match lang {
        Lang::Rust => bail!("a Rust plugin is a crate: `render`"),
        Lang::Python => vec![
            ("app.py", fill(include_str!("../../../../templates/plugin/python/app.py.tmpl"))),
            ("test_app.py", fill(include_str!("../../../../templates/plugin/python/test_app.py.tmpl"))),
            ("build.sh", fill(include_str!("../../../../templates/plugin/python/build.sh.tmpl"))),
            ("README.md", fill(include_str!("../../../../templates/plugin/python/README.md.tmpl"))),
            (".gitignore", fill(include_str!("../../../../templates/plugin/python/gitignore.tmpl"))),
        ],
        Lang::Js => vec![
            ("plugin.js", fill(include_str!("../../../../templates/plugin/js/plugin.js.tmpl"))),
            ("plugin.test.js", fill(include_str!("../../../../templates/plugin/js/plugin.test.js.tmpl"))),
            ("build.sh", fill(include_str!("../../../../templates/plugin/js/build.sh.tmpl"))),
            ("README.md", fill(include_str!("../../../../templates/plugin/js/README.md.tmpl"))),
            (".gitignore", fill(include_str!("../../../../templates/plugin/js/gitignore.tmpl"))),
            // ES modules for Node.js (`node --test`); componentize-js reads them as modules anyway.
            (
                "package.json",
                format!(
                    "{{\n  \"name\": \"{name}\",\n  \"private\": true,\n  \"type\": \"module\",\n  \"scripts\": {{\"test\": \"node --test\", \"build\": \"./build.sh\"}}\n}}\n"
                ),
            ),
        ],
    };
    let sdk = if lang == Lang::Python { SDK_PY } else { SDK_JS };
    files.extend(sdk.iter().map(|(rel, text)| (*rel, (*text).to_string())));
    files.push(("wit/scoring.wit", WIT.to_string()));
    files.push(("scenario.json", sample_scenario(name, World::Hot)));
    files.push(("events.jsonl", sample_events(name)));
    Ok(files)
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
    let crate_name = name.replace('-', "_");
    let (lib, about) = world.templates();
    let (prints, runs_on) = world.test_output();
    // `about` is filled first: it may hold placeholders of its own.
    let fill = |t: &str| {
        t.replace("{{about}}", about)
            .replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{sdk_dep}}", &sdk.dependency_line())
            .replace("{{toolchain}}", TOOLCHAIN)
            .replace("{{section}}", world.plugin_world().section())
            .replace("{{prints}}", prints)
            .replace("{{runs_on}}", runs_on)
    };
    Ok(vec![
        ("Cargo.toml", fill(include_str!("../../../../templates/plugin/common/Cargo.toml.tmpl"))),
        ("rust-toolchain.toml", fill(include_str!("../../../../templates/plugin/common/rust-toolchain.toml.tmpl"))),
        (".cargo/config.toml", fill(include_str!("../../../../templates/plugin/common/cargo-config.toml.tmpl"))),
        (".gitignore", fill(include_str!("../../../../templates/plugin/common/gitignore.tmpl"))),
        ("rustfmt.toml", fill(include_str!("../../../../templates/plugin/common/rustfmt.toml.tmpl"))),
        ("src/lib.rs", fill(lib)),
        ("README.md", fill(include_str!("../../../../templates/plugin/common/README.md.tmpl"))),
        ("scenario.json", sample_scenario(name, world)),
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
        if rel.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("cannot make {} executable", path.display()))?;
        }
    }
    Ok(())
}

/// The toolchain the workspace pins (`rust-toolchain.toml`), which the SDK is tested with; a
/// test keeps the two in step.
const TOOLCHAIN: &str = "1.99.1";

fn toml_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// A scenario of tenant `demo` that references the module from the world's section, with the
/// template's default params, and that the sample events make run: two hot windows, two metrics
/// windows, or several profile writes per user.
fn sample_scenario(name: &str, world: World) -> String {
    let plugin = |params: serde_json::Value| serde_json::json!({"name": name, "version": "0.1.0", "params": params});
    let section = match world {
        World::Hot => serde_json::json!({"hot_score": {
            "action_weights": {"view": 1.0, "click": 3.0, "purchase": 10.0},
            "decay_lambda": 1.0,
            "window_size_minutes": 10,
            "window_slide_minutes": 5,
            "top_n": 10,
            "plugin": plugin(serde_json::json!({"min_events": 2}))
        }}),
        World::Profile => serde_json::json!({"user_profile": {
            "update_frequency_minutes": 5,
            "interest_decay_days": 7,
            "behavior_weights": {"view": 1.0, "click": 3.0, "purchase": 10.0},
            "plugin": plugin(serde_json::json!({"tag_share": 0.5, "min_score": 0.01}))
        }}),
        World::Metrics => serde_json::json!({"metrics": {
            "window_size_minutes": 10,
            "metrics_to_calculate": ["cvr"],
            "plugin": plugin(serde_json::json!({"engaged": ["click", "purchase"], "min_events": 2}))
        }}),
    };
    let doc = serde_json::json!({
        "tenant_id": "demo",
        "scenario_id": name,
        "status": "active",
        "config": {"realtime_compute": section}
    });
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
}

/// 20 minutes of deterministic traffic of 13 users on five items for the sample scenario, with
/// a category per item and tags on some (what a profile plugin reads).
fn sample_events(name: &str) -> String {
    const START_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    let actions = ["view", "view", "view", "click", "view", "purchase", "click"];
    let categories = ["shoes", "bags", "hats", "books", "games"];
    let mut out = String::new();
    for i in 0..120_i64 {
        let item = ((i * 7 + i / 5) % 5) as usize;
        let mut ev = serde_json::json!({
            "tenant_id": "demo",
            "scenario_id": name,
            "user_id": format!("u{}", i % 13),
            "item_id": format!("item-{}", item + 1),
            "action": actions[(i % actions.len() as i64) as usize],
            "ts": START_MS + i * 10_000,
            "category": categories[item],
        });
        if item.is_multiple_of(2) {
            ev["tags"] = serde_json::json!([if item == 0 { "sale" } else { "new" }]);
        }
        out.push_str(&ev.to_string());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORLDS: [World; 3] = [World::Hot, World::Profile, World::Metrics];

    fn file<'a>(files: &'a [File], rel: &str) -> &'a str {
        files.iter().find(|(r, _)| *r == rel).map(|(_, t)| t.as_str()).unwrap_or_default()
    }

    #[test]
    fn the_crate_names_its_package_module_and_sdk() {
        for world in WORLDS {
            let files = render("watch-heat", world, &SdkSource::Path("/opt/rtscore/guest-sdk".into())).unwrap();
            let cargo = file(&files, "Cargo.toml");
            assert!(cargo.contains("name = \"watch-heat\""), "{cargo}");
            assert!(cargo.contains("rtscore-guest = { path = \"/opt/rtscore/guest-sdk\" }"), "{cargo}");
            assert!(cargo.contains("debug = false"), "release builds carry no debug info: {cargo}");
            assert!(file(&files, "README.md").contains("release/watch_heat.wasm"));
            assert!(file(&files, ".cargo/config.toml").contains("+simd128"), "the module uses WebAssembly SIMD");
            assert!(!files.iter().any(|(_, t)| t.contains("{{")), "{world:?}: every placeholder is filled");
        }
        let git = render("x", World::Hot, &SdkSource::Git("https://example.com/rtscore.git".into())).unwrap();
        assert!(file(&git, "Cargo.toml").contains("rtscore-guest = { git = \"https://example.com/rtscore.git\" }"));
    }

    #[test]
    fn each_world_gets_its_own_formula_and_readme_on_the_shared_files() {
        let sdk = SdkSource::Path("/sdk".into());
        let hot = render("heat", World::Hot, &sdk).unwrap();
        let profile = render("heat", World::Profile, &sdk).unwrap();
        let metrics = render("heat", World::Metrics, &sdk).unwrap();
        for (files, export, section, builder) in [
            (&hot, "export_scorer!", "hot_score.plugin", "BatchBuilder"),
            (&profile, "export_profiler!", "user_profile.plugin", "ProfileBatchBuilder"),
            (&metrics, "export_metrics!", "metrics.plugin", "MetricsWindowBuilder"),
        ] {
            let lib = file(files, "src/lib.rs");
            assert!(lib.contains(export) && lib.contains(builder) && lib.contains("#[test]"), "{lib}");
            let readme = file(files, "README.md");
            assert!(readme.contains(&format!("`{section}`")), "{readme}");
            for shared in ["Cargo.toml", "rust-toolchain.toml", ".gitignore", "rustfmt.toml"] {
                assert_eq!(file(files, shared), file(&hot, shared), "{shared} is the same for every world");
            }
        }
    }

    #[test]
    fn names_that_cannot_be_a_module_or_a_package_are_refused() {
        let sdk = SdkSource::Path("/sdk".into());
        for world in WORLDS {
            for bad in ["", "Heat", "9heat", "heat plugin", "../heat", &"h".repeat(65)] {
                assert!(render(bad, world, &sdk).is_err(), "{bad:?}");
            }
        }
    }

    #[test]
    fn the_sample_scenario_references_the_module_and_the_events_make_it_run() {
        for world in WORLDS {
            let files = render("heat", world, &SdkSource::Path("/sdk".into())).unwrap();
            let scenario: serde_json::Value = serde_json::from_str(file(&files, "scenario.json")).unwrap();
            assert_eq!(scenario["scenario_id"], "heat");
            rtscore::config::parse_scenario(&scenario).unwrap_or_else(|e| panic!("{world:?}: the sample scenario is valid: {e}"));
            let section = world.plugin_world().section().trim_end_matches(".plugin");
            let plugin = &scenario["config"]["realtime_compute"][section]["plugin"];
            assert_eq!((&plugin["name"], &plugin["version"]), (&"heat".into(), &"0.1.0".into()), "{world:?}: {scenario}");
            let events: Vec<serde_json::Value> = file(&files, "events.jsonl").lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            assert_eq!(events.len(), 120);
            assert!(events.iter().all(|e| e["tenant_id"] == "demo" && e["scenario_id"] == "heat" && e["category"].is_string()));
            let ts: Vec<i64> = events.iter().map(|e| e["ts"].as_i64().unwrap()).collect();
            let span_minutes = (ts[ts.len() - 1] - ts[0]) / 60_000;
            // Hot: windows of 10 sliding by 5; metrics: windows of 10; profile: writes every 5.
            assert!(span_minutes >= 15, "{world:?}: the events span several windows and writes: {span_minutes} minutes");
        }
    }

    #[test]
    fn the_toolchain_matches_the_workspace_pin() {
        let pin = include_str!("../../../../../rust-toolchain.toml");
        assert!(pin.contains(&format!("channel = \"{TOOLCHAIN}\"")), "rust-toolchain.toml moved on: update TOOLCHAIN");
    }

    #[test]
    fn the_crate_formats_like_the_workspace() {
        let ours: Vec<&str> = include_str!("../../../../../rustfmt.toml").lines().collect();
        let files = render("heat", World::Hot, &SdkSource::Path("/sdk".into())).unwrap();
        let theirs: Vec<&str> = file(&files, "rustfmt.toml").lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(theirs, ours, "rustfmt.toml moved on: update templates/plugin/common/rustfmt.toml.tmpl");
    }

    #[test]
    fn python_and_js_plugins_carry_their_sdk_and_the_contract() {
        for (lang, entry, export, test) in [
            (Lang::Python, "app.py", "WitWorld = export_scorer(Formula)", "test_app.py"),
            (Lang::Js, "plugin.js", "exportScorer(Formula)", "plugin.test.js"),
        ] {
            let files = render_lang("heat", lang).unwrap();
            assert!(file(&files, entry).contains(export), "{lang:?}");
            assert!(file(&files, test).contains("min_event"), "{lang:?}");
            assert_eq!(file(&files, "wit/scoring.wit"), WIT);
            assert!(file(&files, "build.sh").contains("-w scorer") || file(&files, "build.sh").contains("--world-name scorer"));
            assert!(file(&files, "build.sh").contains("heat.wasm"));
            assert!(!files.iter().any(|(_, t)| t.contains("{{")), "{lang:?}: every placeholder is filled");
            let scenario: serde_json::Value = serde_json::from_str(file(&files, "scenario.json")).unwrap();
            rtscore::config::parse_scenario(&scenario).unwrap();
        }
        assert!(render_lang("Heat", Lang::Python).is_err());
    }

    #[test]
    fn the_toolchain_pins_match_the_scripts() {
        let lib = include_str!("../../../../../scripts/lib.sh");
        assert!(lib.contains(&format!("COMPONENTIZE_PY_VERSION=\"{COMPONENTIZE_PY}\"")), "scripts/lib.sh moved on: update COMPONENTIZE_PY");
        assert!(lib.contains(&format!("COMPONENTIZE_JS_VERSION=\"{COMPONENTIZE_JS}\"")), "scripts/lib.sh moved on: update COMPONENTIZE_JS");
    }

    #[test]
    fn an_existing_non_empty_directory_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
        assert!(write(dir.path(), &[("keep.txt", "theirs".into())]).is_err());
        assert_eq!(std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(), "mine");
    }
}
