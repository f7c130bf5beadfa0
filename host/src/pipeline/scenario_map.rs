//! Per-scenario state of a job, indexed by tenant then scenario so an event is routed by its
//! `&str` ids without building a key. Ordered maps: scenarios emit in the same order in every
//! run, so a replay's output is identical byte for byte (scenario counts are small, so the
//! ordered lookup costs next to nothing).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::ScenarioKey;

#[derive(Debug)]
pub struct ScenarioMap<T> {
    map: BTreeMap<Arc<str>, BTreeMap<Arc<str>, T>>,
}

impl<T> Default for ScenarioMap<T> {
    fn default() -> Self {
        Self { map: BTreeMap::new() }
    }
}

impl<T> ScenarioMap<T> {
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, tenant: &str, scenario: &str) -> Option<&T> {
        self.map.get(tenant)?.get(scenario)
    }

    pub fn get_mut(&mut self, tenant: &str, scenario: &str) -> Option<&mut T> {
        self.map.get_mut(tenant)?.get_mut(scenario)
    }

    /// Updates the scenario's state in place, or creates it.
    pub fn upsert(&mut self, key: &ScenarioKey, update: impl FnOnce(&mut T), create: impl FnOnce() -> T) {
        let tenant = self.map.entry(key.tenant_id.clone()).or_default();
        match tenant.get_mut(&*key.scenario_id) {
            Some(existing) => update(existing),
            None => {
                tenant.insert(key.scenario_id.clone(), create());
            }
        }
    }

    /// Drops the scenario's state (its memory is freed).
    pub fn remove(&mut self, key: &ScenarioKey) {
        if let Some(t) = self.map.get_mut(&*key.tenant_id) {
            t.remove(&*key.scenario_id);
            if t.is_empty() {
                self.map.remove(&*key.tenant_id);
            }
        }
    }

    /// Every scenario with its key parts, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<str>, &T)> {
        self.map.iter().flat_map(|(t, m)| m.iter().map(move |(s, v)| (t, s, v)))
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.map.values().flat_map(|t| t.values())
    }

    pub fn has_tenant(&self, tenant: &str) -> bool {
        self.map.contains_key(tenant)
    }

    /// One tenant's scenarios, in key order.
    pub fn tenant_values_mut(&mut self, tenant: &str) -> impl Iterator<Item = &mut T> {
        self.map.get_mut(tenant).into_iter().flat_map(|t| t.values_mut())
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.map.values_mut().flat_map(|t| t.values_mut())
    }
}
