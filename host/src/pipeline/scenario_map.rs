//! Per-scenario state of a job, found by an event's `&str` tenant and scenario ids without
//! building a key. The states are kept in key order (tenant, then scenario), so scenarios emit in
//! the same order in every run and a replay's output is identical byte for byte; an event finds
//! its scenario through a hash index over them: one probe and one comparison of each id, where
//! two nested ordered maps compared strings at every level of their descent. `--job all` looks
//! an event up about six times (three jobs and the profile look-ahead), so the pipeline hashes
//! its key once ([`Route`]) for all of them (docs/benchmarks.md, "`--job all`").

use std::sync::{Arc, OnceLock};

use hashbrown::HashTable;

use crate::config::ScenarioKey;

/// An event's scenario key, hashed once for the lookups of every job (the pipeline computes it
/// as it parses the event; [`ScenarioMap::get_routed`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Route(u64);

impl Route {
    pub fn of(tenant: &str, scenario: &str) -> Self {
        // One hasher per process, so a route fits every map; seeded at random, so ids a
        // tenant picks cannot be aimed at another's bucket.
        static HASHER: OnceLock<ahash::RandomState> = OnceLock::new();
        Self(HASHER.get_or_init(ahash::RandomState::new).hash_one((tenant, scenario)))
    }
}

#[derive(Debug)]
pub struct ScenarioMap<T> {
    /// Every scenario's state, sorted by (tenant, scenario).
    entries: Vec<Entry<T>>,
    /// Positions in `entries` by the hash of their key, kept in step when a scenario comes or
    /// goes (a config change, never per event).
    index: HashTable<u32>,
}

#[derive(Debug)]
struct Entry<T> {
    tenant: Arc<str>,
    scenario: Arc<str>,
    value: T,
}

impl<T> Entry<T> {
    fn is(&self, tenant: &str, scenario: &str) -> bool {
        &*self.tenant == tenant && &*self.scenario == scenario
    }
}

impl<T> Default for ScenarioMap<T> {
    fn default() -> Self {
        Self { entries: Vec::new(), index: HashTable::new() }
    }
}

impl<T> ScenarioMap<T> {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The position of a scenario's state; `route` is [`Route::of`] its ids.
    #[inline]
    fn position(&self, route: Route, tenant: &str, scenario: &str) -> Option<usize> {
        // Jobs a host does not run hold no scenario: their lookups end here, in the caller.
        if self.entries.is_empty() {
            return None;
        }
        self.probe(route, tenant, scenario)
    }

    fn probe(&self, route: Route, tenant: &str, scenario: &str) -> Option<usize> {
        debug_assert_eq!(route, Route::of(tenant, scenario), "the route of other ids");
        let entries = &self.entries;
        self.index.find(route.0, |&i| entries.get(i as usize).is_some_and(|e| e.is(tenant, scenario))).map(|&i| i as usize)
    }

    /// The position of a scenario's state by its ids (hashed here unless the map is empty).
    fn find(&self, tenant: &str, scenario: &str) -> Option<usize> {
        if self.entries.is_empty() {
            return None;
        }
        self.probe(Route::of(tenant, scenario), tenant, scenario)
    }

    pub fn get(&self, tenant: &str, scenario: &str) -> Option<&T> {
        self.find(tenant, scenario).map(|i| &self.entries[i].value)
    }

    pub fn get_mut(&mut self, tenant: &str, scenario: &str) -> Option<&mut T> {
        self.find(tenant, scenario).map(|i| &mut self.entries[i].value)
    }

    /// [`Self::get`] with the ids' [`Route`] computed once for several lookups.
    #[inline]
    pub fn get_routed(&self, route: Route, tenant: &str, scenario: &str) -> Option<&T> {
        self.position(route, tenant, scenario).map(|i| &self.entries[i].value)
    }

    /// [`Self::get_mut`] with the ids' [`Route`] computed once for several lookups.
    #[inline]
    pub fn get_mut_routed(&mut self, route: Route, tenant: &str, scenario: &str) -> Option<&mut T> {
        self.position(route, tenant, scenario).map(|i| &mut self.entries[i].value)
    }

    /// Updates the scenario's state in place, or creates it.
    pub fn upsert(&mut self, key: &ScenarioKey, update: impl FnOnce(&mut T), create: impl FnOnce() -> T) {
        let (tenant, scenario) = (&*key.tenant_id, &*key.scenario_id);
        if let Some(i) = self.find(tenant, scenario) {
            update(&mut self.entries[i].value);
            return;
        }
        let at = self.entries.partition_point(|e| (&*e.tenant, &*e.scenario) < (tenant, scenario));
        let entry = Entry { tenant: key.tenant_id.clone(), scenario: key.scenario_id.clone(), value: create() };
        self.entries.insert(at, entry);
        // The entries after `at` moved up one: shift their positions rather than rehash every
        // key, so loading many scenarios stays cheap. Scenario counts are far below u32::MAX
        // (config::limits bounds them).
        let at = at as u32;
        self.index.iter_mut().filter(|p| **p >= at).for_each(|p| *p += 1);
        let Self { entries, index } = self;
        let route = |e: &Entry<T>| Route::of(&e.tenant, &e.scenario).0;
        index.insert_unique(Route::of(tenant, scenario).0, at, |&j| entries.get(j as usize).map_or(0, route));
    }

    /// Drops the scenario's state (its memory is freed).
    pub fn remove(&mut self, key: &ScenarioKey) {
        let (tenant, scenario) = (&*key.tenant_id, &*key.scenario_id);
        let Some(i) = self.find(tenant, scenario) else { return };
        if let Ok(found) = self.index.find_entry(Route::of(tenant, scenario).0, |&p| p as usize == i) {
            found.remove();
        }
        self.entries.remove(i);
        // The entries after `i` moved down one.
        self.index.iter_mut().filter(|p| **p as usize > i).for_each(|p| *p -= 1);
    }

    /// Every scenario with its key parts, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<str>, &T)> {
        self.entries.iter().map(|e| (&e.tenant, &e.scenario, &e.value))
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().map(|e| &e.value)
    }

    /// The positions of one tenant's scenarios (contiguous: the entries are sorted by tenant).
    fn tenant_range(&self, tenant: &str) -> std::ops::Range<usize> {
        let start = self.entries.partition_point(|e| &*e.tenant < tenant);
        let end = start + self.entries[start..].partition_point(|e| &*e.tenant == tenant);
        start..end
    }

    pub fn has_tenant(&self, tenant: &str) -> bool {
        !self.tenant_range(tenant).is_empty()
    }

    /// One tenant's scenarios, in key order.
    pub fn tenant_values_mut(&mut self, tenant: &str) -> impl Iterator<Item = &mut T> {
        let range = self.tenant_range(tenant);
        self.entries[range].iter_mut().map(|e| &mut e.value)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.entries.iter_mut().map(|e| &mut e.value)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn key(t: &str, s: &str) -> ScenarioKey {
        ScenarioKey::new(t, s)
    }

    #[test]
    fn scenarios_iterate_in_key_order_and_are_found_by_their_ids() {
        let mut m = ScenarioMap::default();
        for (t, s, v) in [("b", "x", 1), ("a", "z", 2), ("a", "y", 3), ("c", "a", 4), ("b", "a", 5)] {
            m.upsert(&key(t, s), |_| unreachable!("new"), || v);
        }
        let order: Vec<(String, String, i32)> = m.iter().map(|(t, s, v)| (t.to_string(), s.to_string(), *v)).collect();
        let want = [("a", "y", 3), ("a", "z", 2), ("b", "a", 5), ("b", "x", 1), ("c", "a", 4)];
        assert_eq!(order, want.map(|(t, s, v)| (t.to_string(), s.to_string(), v)));
        assert_eq!(m.get("b", "x"), Some(&1));
        assert_eq!(m.get("b", "z"), None);
        assert_eq!(m.get("bx", ""), None, "the ids are compared whole, not concatenated");
        m.upsert(&key("b", "x"), |v| *v += 10, || unreachable!("exists"));
        assert_eq!(m.get("b", "x"), Some(&11));
        assert_eq!(m.tenant_values_mut("b").map(|v| *v).collect::<Vec<_>>(), [5, 11]);
        assert!(m.has_tenant("c") && !m.has_tenant("d") && !m.has_tenant(""));
        m.remove(&key("c", "a"));
        assert!(!m.has_tenant("c"));
        assert_eq!(m.get("a", "z"), Some(&2), "the index follows the entries that moved");
    }

    proptest! {
        /// Any sequence of upserts and removals leaves the same contents, order and lookups as
        /// the two nested ordered maps the index replaced.
        #[test]
        fn behaves_as_nested_ordered_maps(ops in prop::collection::vec((0u8..4, 0u8..5, any::<bool>(), 0i32..100), 0..60)) {
            let mut m = ScenarioMap::default();
            let mut want: BTreeMap<String, BTreeMap<String, i32>> = BTreeMap::new();
            for (t, s, insert, v) in ops {
                let (t, s) = (format!("t{t}"), format!("s{s}"));
                if insert {
                    m.upsert(&key(&t, &s), |x| *x = v, || v);
                    want.entry(t).or_default().insert(s, v);
                } else {
                    m.remove(&key(&t, &s));
                    if let Some(inner) = want.get_mut(&t) {
                        inner.remove(&s);
                        if inner.is_empty() {
                            want.remove(&t);
                        }
                    }
                }
            }
            let got: Vec<(String, String, i32)> = m.iter().map(|(t, s, v)| (t.to_string(), s.to_string(), *v)).collect();
            let expected: Vec<(String, String, i32)> =
                want.iter().flat_map(|(t, inner)| inner.iter().map(move |(s, v)| (t.clone(), s.clone(), *v))).collect();
            prop_assert_eq!(got, expected);
            for t in 0..4 {
                let t = format!("t{t}");
                prop_assert_eq!(m.has_tenant(&t), want.contains_key(&t));
                for s in 0..5 {
                    let s = format!("s{s}");
                    prop_assert_eq!(m.get(&t, &s), want.get(&t).and_then(|inner| inner.get(&s)));
                }
            }
        }
    }
}
