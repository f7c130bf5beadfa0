//! The user profile job (DESIGN §4): per user, interest scores over `category` and `tags` that
//! decay with a half-life of `interest_decay_days`, the last items interacted with, and counts
//! per action. A user with new events is written at most every `update_frequency_minutes` of
//! event time; writes are coalesced on a timer wheel keyed by due time.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use super::quota::MemoryLimits;
use super::scenario_map::ScenarioMap;
use super::stats::Routed;
use crate::config::{ScenarioConfig, ScenarioKey, ScenarioStatus};
use crate::event::{Event, QuotaKind};
use crate::output::{Interest, Output, RecentItem, UserProfile};

/// Interests kept per user; the weakest is dropped beyond this, bounding state per user.
pub const MAX_INTERESTS: usize = 32;
/// Interests written to a profile.
pub const WRITTEN_INTERESTS: usize = 20;
/// Recent items kept and written per user.
pub const MAX_RECENT_ITEMS: usize = 20;
/// Distinct actions counted per user.
const MAX_COUNTED_ACTIONS: usize = 64;
const MS_PER_DAY: f64 = 86_400_000.0;

/// One user's profile state.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UserState {
    /// Interest scores as of `as_of`. Names and actions are shared `Arc<str>`s, so writing a
    /// profile copies pointers, not strings.
    interests: Vec<(Arc<str>, f64)>,
    as_of: i64,
    recent: VecDeque<RecentItem>,
    counts: Vec<(Arc<str>, u64)>,
    last_event: i64,
    last_write: Option<i64>,
    /// Due time when the user has unwritten events.
    due: Option<i64>,
}

impl UserState {
    fn decay_factor(dt_ms: i64, half_life_days: f64) -> f64 {
        (-(dt_ms as f64) / (half_life_days * MS_PER_DAY) * std::f64::consts::LN_2).exp()
    }

    /// Adds an event's interest weight, decayed to the state's time base.
    fn add_interests(&mut self, ev: &Event<'_>, weight: f64, half_life_days: f64, names: &mut Interner) {
        if ev.ts > self.as_of {
            let f = Self::decay_factor(ev.ts - self.as_of, half_life_days);
            self.interests.iter_mut().for_each(|(_, s)| *s *= f);
            self.as_of = ev.ts;
        }
        let w = weight * Self::decay_factor(self.as_of - ev.ts, half_life_days);
        for name in ev.category.iter().chain(ev.tags.iter()) {
            match self.interests.iter_mut().find(|(n, _)| **n == **name) {
                Some((_, s)) => *s += w,
                None => self.interests.push((names.get(name), w)),
            }
        }
        if self.interests.len() > MAX_INTERESTS {
            self.interests.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            self.interests.truncate(MAX_INTERESTS);
        }
    }

    fn add_recent(&mut self, ev: &Event<'_>, action: &Arc<str>) {
        let pos = self.recent.iter().position(|r| r.ts <= ev.ts).unwrap_or(self.recent.len());
        if pos < MAX_RECENT_ITEMS {
            self.recent.insert(pos, RecentItem { item_id: ev.item_id.as_ref().into(), action: action.clone(), ts: ev.ts });
            self.recent.truncate(MAX_RECENT_ITEMS);
        }
    }

    fn count(&mut self, action: &Arc<str>) {
        match self.counts.iter().position(|(a, _)| a == action) {
            Some(i) => self.counts[i].1 += 1,
            None if self.counts.len() < MAX_COUNTED_ACTIONS => self.counts.push((action.clone(), 1)),
            None => {}
        }
    }

    /// The profile as of event time `at`.
    fn profile(&self, key: &ScenarioKey, user: &str, at: i64, half_life_days: f64, revision: i64) -> UserProfile {
        let f = Self::decay_factor((at - self.as_of).max(0), half_life_days);
        let mut interests: Vec<Interest> = self.interests.iter().map(|(n, s)| Interest { name: n.clone(), score: s * f }).collect();
        interests.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.name.cmp(&b.name)));
        interests.truncate(WRITTEN_INTERESTS);
        UserProfile {
            key: key.clone(),
            user_id: user.to_string(),
            interests,
            recent_items: self.recent.iter().cloned().collect(),
            counts: self.counts.iter().map(|(a, n)| (a.clone(), *n)).collect(),
            updated_at: at,
            config_revision: revision,
        }
    }

    /// Approximate bytes held, for the state-size gauge and benchmarks.
    pub fn heap_bytes(&self) -> usize {
        self.interests.iter().map(|(n, _)| n.len() + 24).sum::<usize>()
            + self.recent.iter().map(|r| r.item_id.len() + r.action.len() + 56).sum::<usize>()
            + self.counts.iter().map(|(a, _)| a.len() + 24).sum::<usize>()
            + std::mem::size_of::<Self>()
    }
}

/// Shares one allocation per distinct string (actions, categories, tags) within a scenario.
#[derive(Default)]
struct Interner {
    strings: std::collections::HashSet<Arc<str>, ahash::RandomState>,
}

/// Distinct interned strings kept per scenario; beyond it strings are not shared (still correct).
const MAX_INTERNED: usize = 100_000;

impl Interner {
    fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strings.get(s) {
            return a.clone();
        }
        let a: Arc<str> = s.into();
        if self.strings.len() < MAX_INTERNED {
            self.strings.insert(a.clone());
        }
        a
    }
}

/// One scenario's profiles.
pub struct ScenarioProfiles {
    pub config: Arc<ScenarioConfig>,
    users: HashMap<Box<str>, UserState, ahash::RandomState>,
    /// Users due for a write, by due time (coalesced timers).
    timers: BTreeMap<i64, Vec<Box<str>>>,
    max_ts: i64,
    pub profiles_written: u64,
    last_eviction_hour: i64,
    names: Interner,
    /// The tenant's memory quotas.
    pub limits: MemoryLimits,
    /// Events refused because they would add a user beyond the quota.
    pub over_quota: u64,
}

impl ScenarioProfiles {
    fn new(config: Arc<ScenarioConfig>) -> Self {
        Self {
            config,
            users: HashMap::default(),
            timers: BTreeMap::new(),
            max_ts: i64::MIN,
            profiles_written: 0,
            last_eviction_hour: i64::MIN,
            names: Interner::default(),
            limits: MemoryLimits::default(),
            over_quota: 0,
        }
    }

    fn on_event(&mut self, ev: &Event<'_>) -> Routed {
        let cfg = &self.config.user_profile;
        let user = match self.users.get_mut(&*ev.user_id) {
            Some(u) => u,
            None => {
                let (max_users, quota) = self.limits.bound(QuotaKind::Users);
                if self.users.len() >= max_users {
                    self.over_quota += 1;
                    return Routed::OverQuota(quota, max_users);
                }
                self.users.entry(ev.user_id.as_ref().into()).or_default()
            }
        };
        if let Some(&w) = cfg.behavior_weights.get(&*ev.action)
            && w != 0.0
        {
            user.add_interests(ev, w, cfg.interest_decay_days, &mut self.names);
        }
        let action = self.names.get(&ev.action);
        user.add_recent(ev, &action);
        user.count(&action);
        user.last_event = user.last_event.max(ev.ts);
        if user.due.is_none() {
            let due = user.last_write.map_or(ev.ts, |w| (w + cfg.update_frequency_ms).max(ev.ts));
            user.due = Some(due);
            self.timers.entry(due).or_default().push(ev.user_id.as_ref().into());
        }
        self.max_ts = self.max_ts.max(ev.ts);
        Routed::Counted
    }

    /// Writes every user due at or before `now` (event time).
    fn flush_due(&mut self, now: i64, out: &mut Vec<Output>) {
        let cfg = &self.config;
        while let Some(entry) = self.timers.first_entry() {
            if *entry.key() > now {
                break;
            }
            let (due, users) = entry.remove_entry();
            for u in users {
                if let Some(state) = self.users.get_mut(&u)
                    && state.due == Some(due)
                {
                    let at = due.max(state.last_event);
                    out.push(Output::Profile(state.profile(&cfg.key, &u, at, cfg.user_profile.interest_decay_days, cfg.revision)));
                    state.last_write = Some(at);
                    state.due = None;
                    self.profiles_written += 1;
                }
            }
        }
    }

    /// Forgets users idle for longer than `idle_ms` whose profiles are written.
    fn evict_idle(&mut self, now: i64, idle_ms: i64) {
        self.users.retain(|_, u| u.due.is_some() || now - u.last_event <= idle_ms);
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    pub fn state_bytes(&self) -> usize {
        self.users.iter().map(|(k, u)| k.len() + u.heap_bytes()).sum()
    }
}

/// All scenarios' profiles.
/// What a snapshot carries of one scenario's profiles (the interned names are rebuilt).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ProfileState {
    users: HashMap<Box<str>, UserState, ahash::RandomState>,
    timers: BTreeMap<i64, Vec<Box<str>>>,
    max_ts: i64,
    last_eviction_hour: i64,
}

pub struct ProfileJob {
    /// Users idle longer than this are forgotten (their Redis profile expires with its TTL).
    idle_ms: i64,
    scenarios: ScenarioMap<ScenarioProfiles>,
}

impl ProfileJob {
    pub fn new(idle_ms: i64) -> Self {
        Self { idle_ms, scenarios: ScenarioMap::default() }
    }

    /// New behaviour weights and half-life apply to events after the change; state is kept.
    pub fn apply_config(&mut self, key: &ScenarioKey, cfg: Option<Arc<ScenarioConfig>>) {
        match cfg.filter(|c| c.status == ScenarioStatus::Active && c.user_profile.enabled) {
            Some(cfg) => self.scenarios.upsert(key, |s| s.config = cfg.clone(), || ScenarioProfiles::new(cfg.clone())),
            None => self.scenarios.remove(key),
        }
    }

    /// Adds one event to its user's profile.
    pub fn on_event(&mut self, ev: &Event<'_>) -> Routed {
        match self.scenarios.get_mut(&ev.tenant_id, &ev.scenario_id) {
            Some(s) => s.on_event(ev),
            None => Routed::NotHere,
        }
    }

    /// Holds `tenant`'s scenarios to `limits`.
    pub fn set_limits(&mut self, tenant: &str, limits: MemoryLimits) {
        for s in self.scenarios.tenant_values_mut(tenant) {
            s.limits = limits;
        }
    }

    /// Bytes of `tenant`'s profile state (walks every user).
    pub fn tenant_state_bytes(&mut self, tenant: &str) -> usize {
        self.scenarios.tenant_values_mut(tenant).map(|s| s.state_bytes()).sum()
    }

    pub fn has_tenant(&self, tenant: &str) -> bool {
        self.scenarios.has_tenant(tenant)
    }

    /// Writes every user of `tenant` whose timer its watermark has passed.
    pub fn advance(&mut self, tenant: &str, watermark: i64, out: &mut Vec<Output>) {
        for s in self.scenarios.tenant_values_mut(tenant) {
            s.flush_due(watermark, out);
            // Idle users are few and the horizon is days: scanning once an event-time hour
            // keeps the scan off the per-event cost.
            let hour = watermark.div_euclid(3_600_000);
            if hour != s.last_eviction_hour {
                s.last_eviction_hour = hour;
                s.evict_idle(watermark, self.idle_ms);
            }
        }
    }

    /// End of a finite input: writes every user with unwritten events.
    pub fn finish(&mut self, out: &mut Vec<Output>) {
        for s in self.scenarios.values_mut() {
            s.flush_due(i64::MAX, out);
        }
    }

    /// (users held, approximate bytes of their state) over all scenarios.
    /// A copy of the scenario's profile state, if it has a profile config.
    pub fn export_state(&self, key: &ScenarioKey) -> Option<ProfileState> {
        let s = self.scenario(key)?;
        Some(ProfileState { users: s.users.clone(), timers: s.timers.clone(), max_ts: s.max_ts, last_eviction_hour: s.last_eviction_hour })
    }

    /// Replaces the scenario's profile state (`None`: empty). False when it has no config here.
    pub fn restore_state(&mut self, key: &ScenarioKey, state: Option<ProfileState>) -> bool {
        let Some(s) = self.scenarios.get_mut(&key.tenant_id, &key.scenario_id) else { return false };
        let state = state.unwrap_or(ProfileState { max_ts: i64::MIN, last_eviction_hour: i64::MIN, ..ProfileState::default() });
        s.users = state.users;
        s.timers = state.timers;
        s.max_ts = state.max_ts;
        s.last_eviction_hour = state.last_eviction_hour;
        true
    }

    pub fn totals(&self) -> (usize, usize) {
        self.scenarios.values().fold((0, 0), |(u, b), s| (u + s.user_count(), b + s.state_bytes()))
    }

    pub fn scenario(&self, key: &ScenarioKey) -> Option<&ScenarioProfiles> {
        self.scenarios.get(&key.tenant_id, &key.scenario_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_scenario;
    use crate::event::parse_event;

    const DAY: i64 = 86_400_000;
    const T0: i64 = 1_767_225_600_000;

    fn job(freq_min: i64, half_life_days: f64) -> (ProfileJob, Arc<ScenarioConfig>) {
        let doc = serde_json::json!({"tenant_id": "t", "scenario_id": "s", "revision": 2, "config": {"realtime_compute": {"user_profile": {
            "update_frequency_minutes": freq_min, "interest_decay_days": half_life_days,
            "behavior_weights": {"view": 1.0, "like": 3.0, "purchase": 10.0}}}}});
        let cfg = Arc::new(parse_scenario(&doc).unwrap());
        let mut j = ProfileJob::new(30 * DAY);
        j.apply_config(&cfg.key, Some(cfg.clone()));
        (j, cfg)
    }

    fn line(user: &str, item: &str, action: &str, ts: i64, extra: &str) -> String {
        format!(r#"{{"tenant_id":"t","scenario_id":"s","user_id":"{user}","item_id":"{item}","action":"{action}","ts":{ts}{extra}}}"#)
    }

    fn feed(j: &mut ProfileJob, lines: &[String]) -> Vec<UserProfile> {
        let mut out = Vec::new();
        for l in lines {
            let ev = parse_event(l.as_bytes()).unwrap();
            assert_eq!(j.on_event(&ev), Routed::Counted);
            j.advance("t", ev.ts, &mut out);
        }
        j.finish(&mut out);
        out.into_iter().filter_map(|o| if let Output::Profile(p) = o { Some(p) } else { None }).collect()
    }

    #[test]
    fn interests_decay_with_half_life_over_days() {
        let (mut j, _) = job(5, 30.0);
        let lines = [
            line("u1", "i1", "purchase", T0, r#","category":"shoes","tags":["red"]"#),
            line("u1", "i2", "view", T0 + 30 * DAY, r#","category":"shoes""#),
            line("u1", "i3", "like", T0 + 60 * DAY, r#","tags":["red","sale"]"#),
            line("u1", "i4", "click", T0 + 60 * DAY, r#","category":"bags""#), // unweighted action
        ];
        let profiles = feed(&mut j, &lines);
        let last = profiles.iter().filter(|p| p.user_id == "u1").max_by_key(|p| p.updated_at).unwrap();
        let at = last.updated_at;
        let decay = |ts: i64| 0.5f64.powf((at - ts) as f64 / (30.0 * DAY as f64));
        let want_shoes = 10.0 * decay(T0) + 1.0 * decay(T0 + 30 * DAY);
        let want_red = 10.0 * decay(T0) + 3.0 * decay(T0 + 60 * DAY);
        let got = |n: &str| last.interests.iter().find(|i| &*i.name == n).map(|i| i.score).unwrap_or(0.0);
        assert!((got("shoes") - want_shoes).abs() < 1e-9 * want_shoes, "{} vs {want_shoes}", got("shoes"));
        assert!((got("red") - want_red).abs() < 1e-9 * want_red);
        assert_eq!(got("bags"), 0.0, "click has no behavior weight");
        assert_eq!(last.counts.get("click"), Some(&1));
        assert_eq!(last.recent_items.first().map(|r| r.ts), Some(T0 + 60 * DAY));
        assert_eq!(last.config_revision, 2);
    }

    #[test]
    fn users_without_category_or_tags_still_get_counts_and_recent_items() {
        let (mut j, _) = job(5, 30.0);
        let p = feed(&mut j, &[line("u2", "i9", "view", T0, "")]);
        assert_eq!(p.len(), 1);
        assert!(p[0].interests.is_empty());
        assert_eq!(p[0].counts.get("view"), Some(&1));
        assert_eq!(&*p[0].recent_items[0].item_id, "i9");
    }

    #[test]
    fn writes_are_coalesced_to_the_update_frequency() {
        let (mut j, _) = job(5, 30.0);
        // One event a minute for an hour: at most one write per 5 minutes (plus the first).
        let lines: Vec<String> = (0..60).map(|m| line("u3", "i1", "view", T0 + m * 60_000, r#","category":"c""#)).collect();
        let p = feed(&mut j, &lines);
        assert!((12..=13).contains(&p.len()), "{} writes", p.len());
        assert!(p.windows(2).all(|w| w[1].updated_at - w[0].updated_at >= 5 * 60_000));
    }

    #[test]
    fn recent_items_are_capped_and_interests_bounded() {
        let (mut j, _) = job(1, 30.0);
        let lines: Vec<String> =
            (0..100).map(|k| line("u4", &format!("i{k}"), "view", T0 + k, &format!(r#","category":"c{k}""#))).collect();
        let p = feed(&mut j, &lines);
        let last = p.last().unwrap();
        assert_eq!(last.recent_items.len(), MAX_RECENT_ITEMS);
        assert_eq!(&*last.recent_items[0].item_id, "i99");
        assert!(last.interests.len() <= WRITTEN_INTERESTS);
        assert!(j.scenario(&ScenarioKey::new("t", "s")).unwrap().users.values().all(|u| u.interests.len() <= MAX_INTERESTS));
    }
}
