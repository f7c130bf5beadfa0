//! Durable profiles, the pipeline's side (DESIGN §4, "Durable profiles"). Before a batch is
//! processed, the runtime asks which of its users must be read back
//! ([`Pipeline::profiles_to_load`], which first bounds the users held), reads them from Redis in
//! one round trip, and hands the hashes to [`Pipeline::install_profiles`]; then the batch runs
//! without touching Redis. Pure: the store is the runtime's, and tests use a map.

use std::collections::{HashMap, HashSet};

use super::Pipeline;
use crate::config::ScenarioKey;
use crate::event::RecordBatch;

/// A user whose profile is to be read back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProfileRef {
    pub key: ScenarioKey,
    pub user_id: String,
}

impl Pipeline {
    /// Reads profiles back from a store fed by input `source` (the Kafka topic), holding at
    /// most `profile_max_users` per scenario in memory. Only when the profile job runs.
    pub fn enable_profile_read_back(&mut self, source: &str) {
        if self.opts.jobs.user_profile() {
            self.profiles.enable_read_back(source, self.opts.profile_max_users);
        }
    }

    pub fn profile_read_back(&self) -> bool {
        self.profiles.read_back_enabled()
    }

    /// At a batch boundary (every output so far written): forgets users beyond the memory
    /// bound or idle, then lists the users of `batch` whose profiles are not in memory, each
    /// once, in batch order. Empty without read-back.
    pub fn profiles_to_load(&mut self, batch: &RecordBatch) -> Vec<ProfileRef> {
        if !self.profiles.read_back_enabled() {
            return Vec::new();
        }
        self.profiles.make_room();
        let mut seen = HashSet::new();
        let mut refs = Vec::new();
        for i in 0..batch.len() {
            let Ok(ev) = batch.event(i) else { continue };
            if !self.opts.filter.admits(&ev.tenant_id, &ev.scenario_id) || !self.profiles.needs_load(&ev) {
                continue;
            }
            let r = ProfileRef { key: ScenarioKey::new(&ev.tenant_id, &ev.scenario_id), user_id: ev.user_id.to_string() };
            if seen.insert(r.clone()) {
                refs.push(r);
            }
        }
        refs
    }

    /// Installs what the store returned for `refs`: one hash per ref (empty when the key does
    /// not exist), or `None` when the store did not answer in time, in which case those users
    /// start empty (counted in [`crate::pipeline::ProfileCounters::read_back_failed`]).
    pub fn install_profiles(&mut self, refs: &[ProfileRef], fetched: Option<&[HashMap<String, String>]>) {
        for (i, r) in refs.iter().enumerate() {
            self.profiles.install(&r.key, &r.user_id, fetched.and_then(|f| f.get(i)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_scenario, redis_keys};
    use crate::event::Position;
    use crate::output::stored_profile::profile_fields;
    use crate::output::{Output, UserProfile};
    use crate::pipeline::{JobSelection, PipelineOptions};

    const T0: i64 = 1_767_225_600_000;

    /// Redis as the sink leaves it: profile key -> hash.
    type Store = HashMap<String, HashMap<String, String>>;

    fn pipeline(max_users: usize, read_back: bool) -> Pipeline {
        let doc = serde_json::json!({"tenant_id": "t", "scenario_id": "s", "revision": 1, "config": {"realtime_compute": {
            "hot_score": {"enabled": false}, "metrics": {"enabled": false},
            "user_profile": {"update_frequency_minutes": 1, "interest_decay_days": 30, "behavior_weights": {"view": 1.0, "like": 3.0}}}}});
        let cfg = std::sync::Arc::new(parse_scenario(&doc).unwrap());
        let mut p =
            Pipeline::new(PipelineOptions { jobs: JobSelection::UserProfile, profile_max_users: max_users, ..PipelineOptions::default() });
        p.apply_config(&cfg.key.clone(), Some(cfg));
        p.assign_partitions(&[0], 0);
        if read_back {
            p.enable_profile_read_back("events");
        }
        p
    }

    /// Events at offsets `from..`, in batches of `per_batch`: `users[k]` views item k with
    /// category `c{k % 7}` and tag `t{k % 3}`, an hour apart.
    fn batches(users: &[&str], from: i64, per_batch: usize) -> Vec<RecordBatch> {
        users
            .chunks(per_batch)
            .enumerate()
            .map(|(b, chunk)| {
                let mut batch = RecordBatch::default();
                for (j, u) in chunk.iter().enumerate() {
                    let k = from + (b * per_batch + j) as i64;
                    let action = if k % 4 == 0 { "like" } else { "view" };
                    let line = format!(
                        r#"{{"tenant_id":"t","scenario_id":"s","user_id":"{u}","item_id":"i{k}","action":"{action}","ts":{},"category":"c{}","tags":["t{}"]}}"#,
                        T0 + k * 3_600_000,
                        k % 7,
                        k % 3
                    );
                    batch.push_at(line.as_bytes(), Position { partition: 0, offset: k });
                }
                batch
            })
            .collect()
    }

    /// Drives `p` as the runtime does: read back, process, write to `store`. `up: false` is
    /// Redis not answering the read-backs.
    fn drive(p: &mut Pipeline, store: &mut Store, batches: &[RecordBatch], up: bool, held: &mut Vec<usize>) -> Vec<UserProfile> {
        let mut written = Vec::new();
        let mut write = |out: Vec<Output>, store: &mut Store| {
            for o in out {
                if let Output::Profile(pr) = o {
                    let fields = profile_fields(&pr).into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                    store.insert(redis_keys::profile(&pr.key, &pr.user_id), fields);
                    written.push(pr);
                }
            }
        };
        for b in batches {
            let refs = p.profiles_to_load(b);
            held.push(p.profile_job().totals().0);
            let fetched: Option<Vec<HashMap<String, String>>> =
                up.then(|| refs.iter().map(|r| store.get(&redis_keys::profile(&r.key, &r.user_id)).cloned().unwrap_or_default()).collect());
            p.install_profiles(&refs, fetched.as_deref());
            let (mut out, mut rejects) = (Vec::new(), Vec::new());
            p.process(b, &mut out, &mut rejects);
            assert!(rejects.is_empty());
            write(out, store);
        }
        let mut out = Vec::new();
        p.finish(&mut out);
        write(out, store);
        written
    }

    fn last_of<'a>(written: &'a [UserProfile], user: &str) -> &'a UserProfile {
        written.iter().rfind(|p| p.user_id == user).unwrap()
    }

    fn assert_same(a: &UserProfile, b: &UserProfile) {
        assert_eq!((&a.recent_items, &a.counts, a.updated_at), (&b.recent_items, &b.counts, b.updated_at), "{}", a.user_id);
        assert_eq!(a.interests.len(), b.interests.len(), "{}", a.user_id);
        for (x, y) in a.interests.iter().zip(&b.interests) {
            assert_eq!(x.name, y.name);
            assert!((x.score - y.score).abs() <= 1e-12 * y.score.abs(), "{}: {} vs {}", x.name, x.score, y.score);
        }
    }

    /// u0 is active, then 40 other users push it out of a memory of 8, then it returns.
    fn traffic() -> Vec<String> {
        let mut users: Vec<String> = vec!["u0".into(); 6];
        users.extend((1..=40).map(|k| format!("u{k}")));
        users.extend(vec!["u0".into(); 3]);
        users
    }

    #[test]
    fn a_user_evicted_from_memory_continues_from_its_stored_profile() {
        let users = traffic();
        let users: Vec<&str> = users.iter().map(String::as_str).collect();
        let unbounded = drive(&mut pipeline(usize::MAX, false), &mut Store::new(), &batches(&users, 0, 4), true, &mut Vec::new());
        let mut p = pipeline(8, true);
        let mut held = Vec::new();
        let bounded = drive(&mut p, &mut Store::new(), &batches(&users, 0, 4), true, &mut held);
        let c = p.profile_job().counters;
        assert!(c.evicted_memory >= 30, "{c:?}");
        assert!(c.read_back >= 1, "u0 came back from the store: {c:?}");
        assert_same(last_of(&bounded, "u0"), last_of(&unbounded, "u0"));
        assert_eq!(last_of(&bounded, "u0").counts.values().sum::<u64>(), 9, "its history is kept");
        // The bound holds at every batch boundary (a batch adds at most its own 4 users).
        assert!(held.iter().all(|&n| n <= 8), "{held:?}");
    }

    #[test]
    fn a_restart_without_snapshot_continues_and_a_replay_counts_nothing_twice() {
        let users = traffic();
        let users: Vec<&str> = users.iter().map(String::as_str).collect();
        let all = batches(&users, 0, 5);
        let whole = drive(&mut pipeline(usize::MAX, true), &mut Store::new(), &all, true, &mut Vec::new());
        // First host: the first half; a fresh one (no snapshot) goes on with the rest.
        let mut store = Store::new();
        let half = all.len() / 2;
        drive(&mut pipeline(usize::MAX, true), &mut store, &all[..half], true, &mut Vec::new());
        let mut second = pipeline(usize::MAX, true);
        let resumed = drive(&mut second, &mut store, &all[half..], true, &mut Vec::new());
        assert_same(last_of(&resumed, "u0"), last_of(&whole, "u0"));
        let after = store.clone();
        // A third host (a new group, or a lost snapshot) replays everything: the profiles read
        // back already hold every event, so nothing changes and nothing is written.
        let mut third = pipeline(usize::MAX, true);
        let replay = drive(&mut third, &mut store, &all, true, &mut Vec::new());
        assert!(replay.is_empty(), "{} profiles rewritten", replay.len());
        assert_eq!(third.profile_job().replayed(), users.len() as u64);
        assert_eq!(store, after, "idempotent");
    }

    #[test]
    fn profiles_are_read_once_per_missing_user_and_never_without_read_back() {
        let b = &batches(&["a", "b", "a", "c"], 0, 4)[0];
        assert!(pipeline(8, false).profiles_to_load(b).is_empty());
        let mut p = pipeline(8, true);
        let users: Vec<String> = p.profiles_to_load(b).into_iter().map(|r| r.user_id).collect();
        assert_eq!(users, ["a", "b", "c"]);
        p.process(b, &mut Vec::new(), &mut Vec::new());
        assert!(p.profiles_to_load(b).is_empty(), "all in memory now");
    }

    #[test]
    fn redis_not_answering_starts_users_empty_counts_it_and_loses_no_event() {
        let users = ["u0", "u0", "u1"];
        let mut store = Store::new();
        drive(&mut pipeline(8, true), &mut store, &batches(&users, 0, 3), true, &mut Vec::new());
        let mut p = pipeline(8, true);
        let written = drive(&mut p, &mut store, &batches(&["u0"], 10, 1), false, &mut Vec::new());
        assert_eq!(p.profile_job().counters.read_back_failed, 1);
        let u0 = last_of(&written, "u0");
        assert_eq!(u0.counts.values().sum::<u64>(), 1, "the new event is counted, the history was not read");
    }

    #[test]
    fn a_stored_hash_that_is_not_a_profile_is_ignored_and_counted() {
        let mut store = Store::new();
        let key = redis_keys::profile(&ScenarioKey::new("t", "s"), "u0");
        store.insert(key, HashMap::from([("interests".to_string(), "{".to_string())]));
        let mut p = pipeline(8, true);
        let written = drive(&mut p, &mut store, &batches(&["u0"], 0, 1), true, &mut Vec::new());
        assert_eq!(p.profile_job().counters.read_back_invalid, 1);
        assert_eq!(last_of(&written, "u0").counts.values().sum::<u64>(), 1);
    }
}
