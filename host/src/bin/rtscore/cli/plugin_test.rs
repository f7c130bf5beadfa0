//! `rtscore plugin test`: replays recorded events through the runtime with a module in the
//! scenario section its world belongs to, running only that section's job, and fails unless the
//! module ran on every window or profile write.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rtscore::pipeline::JobSelection;
use rtscore::plugin::{PluginWorld, sha256_hex};
use rtscore::runtime::{self, Shutdown};
use rtscore::settings::Settings;

/// The registry name the module is tested under (what the printed lines' `plugin` says).
const UNDER_TEST: (&str, &str) = ("under-test", "0.0.0");

/// What one `plugin test` runs.
pub struct TestRun {
    pub module: PathBuf,
    pub scenario: PathBuf,
    pub events_file: PathBuf,
    /// Plugin parameters as JSON text (default: the document's, or {}).
    pub params: Option<String>,
}

pub async fn run(t: TestRun) -> anyhow::Result<()> {
    let bytes = std::fs::read(&t.module).with_context(|| format!("cannot read module {}", t.module.display()))?;
    // Read from the exports, not compiled: the runtime compiles the module once, as a host does.
    let world = PluginWorld::detect_bytes(&bytes).with_context(|| format!("{} does not load as a plugin", t.module.display()))?;
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&t.scenario).with_context(|| format!("cannot read {}", t.scenario.display()))?)
            .with_context(|| format!("{} is not JSON", t.scenario.display()))?;
    let params = t.params.as_deref().map(serde_json::from_str).transpose().context("--params is not valid JSON")?;
    let doc = with_module(doc, world, &sha256_hex(&bytes), params).with_context(|| format!("{}", t.scenario.display()))?;
    tracing::info!(world = %world, section = world.section(), "testing the module");

    // The same runtime path as a host: a scenarios dir, a plugins dir, a replay.
    let dir = scratch_dir()?;
    let result = replay(&dir, &doc, &bytes, world, t.events_file).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn replay(dir: &Path, doc: &serde_json::Value, bytes: &[u8], world: PluginWorld, events: PathBuf) -> anyhow::Result<()> {
    let (scen_dir, plug_dir) = (dir.join("scenarios"), dir.join("plugins"));
    std::fs::create_dir_all(&scen_dir)?;
    std::fs::create_dir_all(&plug_dir)?;
    std::fs::write(scen_dir.join("scenario.json"), serde_json::to_vec(doc)?)?;
    std::fs::write(plug_dir.join(format!("{}@{}.wasm", UNDER_TEST.0, UNDER_TEST.1)), bytes)?;
    let mut settings = Settings::replay(events, scen_dir, "-");
    settings.plugins_dir = plug_dir;
    // Only the job the module belongs to: its lines are what is printed and checked.
    settings.pipeline.jobs = job_of(world);
    // A CI check on this command must fail when the module does not run.
    settings.require_plugins_scored = true;
    runtime::run(settings, Shutdown::on_signals()).await
}

/// The job whose windows or writes run a module of `world`.
fn job_of(world: PluginWorld) -> JobSelection {
    match world {
        PluginWorld::Scorer => JobSelection::ItemHotScore,
        PluginWorld::Metrics => JobSelection::Metrics,
        PluginWorld::Profile => JobSelection::UserProfile,
    }
}

/// `doc` with the module under test as the plugin of `world`'s section; `params` (else the
/// section's own plugin params, else `{}`) as its params. The hot-score section must exist (its
/// weights are what the module scores with); the metrics and profile sections are created when
/// absent (their defaults apply), and refused when disabled, since nothing would call the module.
fn with_module(
    mut doc: serde_json::Value,
    world: PluginWorld,
    sha256: &str,
    params: Option<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    let section = world.section().trim_end_matches(".plugin");
    let Some(compute) = doc.pointer_mut("/config/realtime_compute").and_then(|c| c.as_object_mut()) else {
        bail!("no config.realtime_compute object");
    };
    if world != PluginWorld::Scorer {
        compute.entry(section).or_insert_with(|| serde_json::json!({}));
    }
    let Some(s) = compute.get_mut(section).filter(|s| s.is_object()) else {
        bail!("no config.realtime_compute.{section} object: a module of world `{world}` runs in {}", world.section());
    };
    if s.get("enabled") == Some(&serde_json::Value::Bool(false)) {
        bail!("{section}.enabled is false: nothing would run the module of world `{world}`");
    }
    let params = params.or_else(|| s.pointer("/plugin/params").cloned()).unwrap_or_else(|| serde_json::json!({}));
    s["plugin"] = serde_json::json!({"name": UNDER_TEST.0, "version": UNDER_TEST.1, "sha256": sha256, "params": params});
    Ok(doc)
}

fn scratch_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("rtscore-plugin-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(compute: serde_json::Value) -> serde_json::Value {
        json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": compute}})
    }

    #[test]
    fn the_module_goes_into_its_worlds_section_with_the_documents_params() {
        let d = doc(
            json!({"hot_score": {"plugin": {"name": "old", "version": "1", "params": {"a": 1}}}, "metrics": {"plugin": {"name": "m", "version": "1", "params": {"b": 2}}}}),
        );
        let hot = with_module(d.clone(), PluginWorld::Scorer, "ab", None).unwrap();
        assert_eq!(
            hot["config"]["realtime_compute"]["hot_score"]["plugin"],
            json!({"name": "under-test", "version": "0.0.0", "sha256": "ab", "params": {"a": 1}})
        );
        assert_eq!(hot["config"]["realtime_compute"]["metrics"]["plugin"]["name"], "m", "other sections are left alone");
        let metrics = with_module(d.clone(), PluginWorld::Metrics, "ab", Some(json!({"c": 3}))).unwrap();
        assert_eq!(metrics["config"]["realtime_compute"]["metrics"]["plugin"]["params"], json!({"c": 3}), "--params wins");
        let profile = with_module(d, PluginWorld::Profile, "ab", None).unwrap();
        assert_eq!(profile["config"]["realtime_compute"]["user_profile"]["plugin"]["params"], json!({}), "a new section: defaults");
    }

    #[test]
    fn a_missing_hot_section_or_a_disabled_job_is_refused_with_the_reason() {
        let no_hot = with_module(doc(json!({"metrics": {}})), PluginWorld::Scorer, "ab", None).unwrap_err();
        assert!(no_hot.to_string().contains("no config.realtime_compute.hot_score object"), "{no_hot}");
        let off = with_module(doc(json!({"metrics": {"enabled": false}})), PluginWorld::Metrics, "ab", None).unwrap_err();
        assert!(off.to_string().contains("metrics.enabled is false"), "{off}");
        let none = with_module(json!({"tenant_id": "t"}), PluginWorld::Profile, "ab", None).unwrap_err();
        assert!(none.to_string().contains("no config.realtime_compute object"), "{none}");
    }

    #[test]
    fn each_world_runs_its_own_job() {
        assert_eq!(job_of(PluginWorld::Scorer), JobSelection::ItemHotScore);
        assert_eq!(job_of(PluginWorld::Metrics), JobSelection::Metrics);
        assert_eq!(job_of(PluginWorld::Profile), JobSelection::UserProfile);
    }
}
