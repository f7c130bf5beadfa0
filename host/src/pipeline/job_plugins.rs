//! The plugin lanes of a scenario's metrics or profile job, as the hot-score job has them
//! (docs/rollout.md): the module in force, the one a revision waits to switch to at its
//! `effective_from_window_end` (prepared ahead, so the switch needs no loading), and a shadow
//! candidate called beside the live one. The job says when its event time has reached a point
//! (a metrics window end, a profile write's due time); every host of a fleet thus switches at
//! the same event time, whenever it read the revision.

use crate::config::{PluginRef, ScenarioConfig, ScenarioKey};
use crate::plugin::{JobPlugin, PluginWorld};

/// A revision waiting for its effective time, with the job's plugin reference in it.
#[derive(Debug, Clone, PartialEq)]
struct Waiting {
    effective: i64,
    revision: i64,
    reference: Option<PluginRef>,
}

/// A job's plugin lanes for one scenario.
#[derive(Debug)]
pub struct JobPlugins {
    key: ScenarioKey,
    world: PluginWorld,
    /// The reference `live` runs (`None`: the built-in path).
    in_force: Option<PluginRef>,
    pub live: JobPlugin,
    /// Revisions waiting for their effective time, by (effective, revision).
    waiting: Vec<Waiting>,
    /// The first waiting revision's plugin, when it references another module than `in_force`.
    pub pending: Option<(PluginRef, JobPlugin)>,
    /// The candidate's plugin (`candidate.metrics.plugin` / `candidate.user_profile.plugin`).
    pub shadow: Option<(PluginRef, JobPlugin)>,
    /// Revisions switched to at their effective time: the runtime prepares the next waiting
    /// module when this moves.
    pub switches: u64,
}

impl JobPlugins {
    pub fn new(cfg: &ScenarioConfig, world: PluginWorld) -> Self {
        let mut lanes = Self {
            key: cfg.key.clone(),
            world,
            in_force: None,
            live: JobPlugin::new(cfg.key.clone(), world),
            waiting: Vec::new(),
            pending: None,
            shadow: None,
            switches: 0,
        };
        // A new scenario has nothing to keep: its first revision applies at once.
        lanes.in_force = reference(cfg, world).cloned();
        lanes.set_shadow(cfg);
        lanes
    }

    /// The reference in force.
    pub fn in_force(&self) -> Option<&PluginRef> {
        self.in_force.as_ref()
    }

    /// The first waiting reference and its effective time, when it differs from the one in force.
    pub fn pending_reference(&self) -> Option<(&PluginRef, i64)> {
        let head = self.waiting.first()?;
        self.pending.as_ref().map(|(r, _)| (r, head.effective))
    }

    /// Whether a plugin is or will be in force: inputs a plugin needs must be kept meanwhile.
    pub fn any_referenced(&self) -> bool {
        self.in_force.is_some() || self.waiting.iter().any(|w| w.reference.is_some()) || self.shadow.is_some()
    }

    /// Takes a new revision of the scenario. `done_through`: the latest event time the job has
    /// already produced output for (a window end, a write's due time). A revision without an
    /// effective time, or one whose time has passed here, applies at once; otherwise it waits.
    pub fn apply(&mut self, cfg: &ScenarioConfig, done_through: Option<i64>) {
        self.set_shadow(cfg);
        let wanted = reference(cfg, self.world).cloned();
        match cfg.effective_from_window_end {
            Some(e) if done_through.is_none_or(|d| d < e) => {
                // As for hot-score revisions: a newer revision effective earlier supersedes
                // waiting ones, older ones keep their time.
                self.waiting.retain(|w| w.revision > cfg.revision || w.effective < e);
                self.waiting.push(Waiting { effective: e, revision: cfg.revision, reference: wanted });
                self.waiting.sort_by_key(|w| (w.effective, w.revision));
            }
            late => {
                if let Some(e) = late {
                    tracing::warn!(scenario = %self.key, world = %self.world, revision = cfg.revision, effective_from_window_end = e,
                        "revision arrived after its effective time was passed here; its plugin applies from now");
                }
                self.waiting.clear();
                self.switch_to(wanted, None);
            }
        }
        self.prepare_head();
    }

    /// Switches to every waiting revision whose effective time is at or before `t`; true when
    /// the reference in force changed.
    pub fn switch_due(&mut self, t: i64) -> bool {
        let mut changed = false;
        while self.waiting.first().is_some_and(|w| w.effective <= t) {
            let head = self.waiting.remove(0);
            self.switches += 1;
            if head.reference != self.in_force {
                tracing::info!(scenario = %self.key, world = %self.world, revision = head.revision, at = t,
                    plugin = head.reference.as_ref().map_or_else(|| "builtin".to_string(), PluginRef::label),
                    "switching plugin at its effective time");
                let prepared = self.pending.take().filter(|(r, _)| Some(r) == head.reference.as_ref()).map(|(_, p)| p);
                self.switch_to(head.reference, prepared);
                changed = true;
            }
            self.prepare_head();
        }
        changed
    }

    /// The earliest time a waiting revision switches at.
    pub fn next_switch(&self) -> Option<i64> {
        self.waiting.first().map(|w| w.effective)
    }

    fn switch_to(&mut self, reference: Option<PluginRef>, prepared: Option<JobPlugin>) {
        if reference == self.in_force && prepared.is_none() {
            return;
        }
        self.live = prepared.unwrap_or_else(|| JobPlugin::new(self.key.clone(), self.world));
        self.in_force = reference;
    }

    /// Keeps `pending` on the first waiting revision's module (when it is another than the one in force).
    fn prepare_head(&mut self) {
        let want = self.waiting.first().and_then(|w| w.reference.clone()).filter(|r| Some(r) != self.in_force.as_ref());
        match want {
            None => self.pending = None,
            Some(r) if self.pending.as_ref().is_some_and(|(p, _)| *p == r) => {}
            Some(r) => self.pending = Some((r, JobPlugin::new(self.key.clone(), self.world))),
        }
    }

    fn set_shadow(&mut self, cfg: &ScenarioConfig) {
        let candidate = cfg.candidate.as_ref().and_then(|c| match self.world {
            PluginWorld::Metrics => c.metrics_plugin(),
            PluginWorld::Profile => c.profile_plugin(),
            PluginWorld::Scorer => None,
        });
        match candidate {
            None => self.shadow = None,
            Some(r) if self.shadow.as_ref().is_some_and(|(s, _)| s == r) => {}
            Some(r) => self.shadow = Some((r.clone(), JobPlugin::new(self.key.clone(), self.world).for_shadow())),
        }
    }
}

/// The job's reference in a config.
fn reference(cfg: &ScenarioConfig, world: PluginWorld) -> Option<&PluginRef> {
    match world {
        PluginWorld::Metrics => cfg.metrics.plugin.as_ref(),
        PluginWorld::Profile => cfg.user_profile.plugin.as_ref(),
        PluginWorld::Scorer => cfg.hot_score.plugin.as_ref(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::parse_scenario;
    use serde_json::json;

    fn cfg(revision: i64, plugin: Option<&str>, effective: Option<i64>) -> ScenarioConfig {
        let mut doc = json!({"tenant_id": "t", "scenario_id": "s", "revision": revision, "config": {"realtime_compute": {"metrics": {}}}});
        if let Some(p) = plugin {
            doc["config"]["realtime_compute"]["metrics"]["plugin"] = json!({"name": p, "version": "1.0.0"});
        }
        if let Some(e) = effective {
            doc["effective_from_window_end"] = json!(e);
        }
        parse_scenario(&doc).unwrap()
    }

    fn name(r: Option<&PluginRef>) -> Option<&str> {
        r.map(|r| r.name.as_str())
    }

    #[test]
    fn a_revision_waits_for_its_effective_time_with_its_module_prepared() {
        let mut lanes = JobPlugins::new(&cfg(1, Some("a"), None), PluginWorld::Metrics);
        assert_eq!(name(lanes.in_force()), Some("a"), "a new scenario's first revision applies at once");
        lanes.apply(&cfg(2, Some("b"), Some(600_000)), Some(300_000));
        assert_eq!(name(lanes.in_force()), Some("a"));
        assert_eq!(lanes.pending_reference().map(|(r, e)| (r.name.as_str(), e)), Some(("b", 600_000)));
        lanes.pending.as_mut().unwrap().1.set_loading("b@1.0.0");
        assert!(!lanes.switch_due(540_000));
        assert!(lanes.switch_due(600_000));
        assert_eq!((name(lanes.in_force()), lanes.switches), (Some("b"), 1), "the runtime sees the switch");
        assert_eq!(lanes.live.state().name(), "loading", "the prepared plugin went live");
        assert!(lanes.pending.is_none());
    }

    #[test]
    fn a_late_revision_or_one_without_a_time_applies_at_once() {
        let mut lanes = JobPlugins::new(&cfg(1, Some("a"), None), PluginWorld::Metrics);
        lanes.apply(&cfg(2, Some("b"), Some(600_000)), Some(600_000));
        assert_eq!(name(lanes.in_force()), Some("b"));
        lanes.apply(&cfg(3, None, None), Some(600_000));
        assert_eq!(lanes.in_force(), None);
        assert!(!lanes.any_referenced());
    }

    #[test]
    fn revisions_read_together_switch_as_if_read_one_by_one() {
        // Read at once: rev 2 (at 600k) and rev 3 (at 1200k).
        let mut together = JobPlugins::new(&cfg(1, Some("a"), None), PluginWorld::Metrics);
        together.apply(&cfg(2, Some("b"), Some(600_000)), Some(0));
        together.apply(&cfg(3, Some("c"), Some(1_200_000)), Some(0));
        let mut seen = Vec::new();
        for t in (0..=1_500_000).step_by(300_000) {
            together.switch_due(t);
            seen.push(name(together.in_force()).map(str::to_string));
        }
        assert_eq!(seen, ["a", "a", "b", "b", "c", "c"].map(|s| Some(s.to_string())));
        // A newer revision effective earlier than a waiting one supersedes it.
        let mut lanes = JobPlugins::new(&cfg(1, Some("a"), None), PluginWorld::Metrics);
        lanes.apply(&cfg(2, Some("b"), Some(1_200_000)), Some(0));
        lanes.apply(&cfg(3, Some("c"), Some(600_000)), Some(0));
        lanes.switch_due(1_500_000);
        assert_eq!(name(lanes.in_force()), Some("c"));
    }

    #[test]
    fn the_candidate_gets_a_shadow_lane_of_its_own() {
        let mut doc =
            json!({"tenant_id": "t", "scenario_id": "s", "candidate": {"metrics": {"plugin": {"name": "x", "version": "1.0.0"}}}});
        let with = parse_scenario(&doc).unwrap();
        let mut lanes = JobPlugins::new(&with, PluginWorld::Metrics);
        assert_eq!(lanes.shadow.as_ref().map(|(r, _)| r.name.as_str()), Some("x"));
        assert!(lanes.any_referenced(), "the shadow needs the plugin's input kept");
        lanes.shadow.as_mut().unwrap().1.set_loading("x@1.0.0");
        lanes.apply(&with, None);
        assert_eq!(lanes.shadow.as_ref().unwrap().1.state().name(), "loading", "the same candidate keeps its lane");
        doc["candidate"] = serde_json::Value::Null;
        lanes.apply(&parse_scenario(&doc).unwrap(), None);
        assert!(lanes.shadow.is_none());
        assert!(JobPlugins::new(&with, PluginWorld::Profile).shadow.is_none(), "a metrics candidate is not a profile one");
    }
}
