//! The user profile job (DESIGN §4): per user, interest scores over `category` and `tags` that
//! decay with a half-life of `interest_decay_days`, the last items interacted with, and counts
//! per action. A user with new events is written at most every `update_frequency_minutes` of
//! event time; writes are coalesced on a timer queue keyed by due time.
//!
//! Users live in slots with dense ids ([`Users`]): the timer queue and a flush's due list
//! carry ids, so a write looks its user up by index, not by name, and a user becoming due
//! allocates nothing. A scenario keeps its state's size as it changes (`state_bytes`), for
//! the tenant quota check, instead of walking every user. The runtime takes profiles encoded
//! straight from the user's state ([`crate::output::EncodedProfile`],
//! `PipelineOptions::encode_profiles`); tests and tools take them structured
//! ([`UserProfile`]), the same values.
//!
//! With a profile plugin (`user_profile.plugin`, world `profile`) the built-in update still
//! runs on every event, and each user also keeps what the plugin needs for its next write: its
//! interests as last written and the events applied since ([`SinceWrite`]). When users are due,
//! they go to the plugin in batches and its interests replace theirs; a failed call keeps the
//! built-in interests of that batch (the plugin records the error), so the built-in update is
//! both the plugin-free default and the fallback.
//!
//! With a profile store (Kafka with Redis) profiles are durable (DESIGN §4, "Durable
//! profiles"): before a batch, [`ProfileJob::make_room`] bounds the users held per scenario and
//! the runtime reads back the profiles of the batch's users that are not in memory
//! ([`ProfileJob::needs_load`], [`ProfileJob::install`]); an event already applied to a profile
//! read back (its offset is covered) is skipped, so a replay never counts it twice.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use compact_str::CompactString;
use hashbrown::HashTable;
use smallvec::SmallVec;

use crate::event::Position;
use crate::output::encoded_profile::{EncodedSpan, ProfileEncoder};
use crate::output::stored_profile::{ProfileResume, StoredProfile, parse_stored_profile};

use super::job_plugins::JobPlugins;
use super::quota::MemoryLimits;
use super::scenario_map::{Route, ScenarioMap};
use super::stats::Routed;
use crate::config::{ScenarioConfig, ScenarioKey, ScenarioStatus};
use crate::event::{Event, QuotaKind};
use crate::output::{EncodedProfile, Interest, Output, RecentItem, UserProfile};
use crate::plugin::profile::InterestInput;
use crate::plugin::{JobPlugin, PluginError, PluginWorld, ProfileEventInput, ProfileInput, ProfileInterests, UserInput};
use crate::prefetch::{prefetch, prefetch_at, prefetch_slice};

/// Interests kept per user; the weakest is dropped beyond this, bounding state per user. A
/// profile plugin may return as many (the same bound, checked on its result).
pub const MAX_INTERESTS: usize = crate::plugin::profile::MAX_INTERESTS;
/// Events a user keeps for its profile plugin between two writes; beyond it the user's next
/// write takes the built-in interests (its plugin input would be incomplete).
pub const MAX_PLUGIN_EVENTS: usize = 512;
/// Users per profile plugin call: bounds one call's input and its share of the CPU budget.
pub const MAX_PLUGIN_USERS: usize = 256;
/// Interests written to a profile.
pub const WRITTEN_INTERESTS: usize = 20;
/// Recent items kept and written per user.
pub const MAX_RECENT_ITEMS: usize = 20;
/// Distinct actions counted per user.
const MAX_COUNTED_ACTIONS: usize = 64;
const MS_PER_DAY: f64 = 86_400_000.0;
/// Input partitions whose last applied offset a user remembers (beyond it, events of further
/// partitions are not guarded against a replay: far more than one scenario's partitions).
const MAX_COVERED_PARTITIONS: usize = 1024;
/// Actions a scenario remembers with their behavior weight (beyond it, an action is looked up
/// per event, still correct).
const MAX_CACHED_ACTIONS: usize = 32;

/// A user's interests: most users have a few, held in place (no pointer to follow per event).
type Interests = SmallVec<[(Arc<str>, f64); 6]>;
/// A user's counts per action, in action name order (as written).
type Counts = SmallVec<[(Arc<str>, u64); 4]>;

/// One user's profile state. Its snapshot form is unchanged: the lists serialize as the
/// vectors they were, a recent item as [`RecentItem`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UserState {
    /// Interest scores as of `as_of`. Names and actions are shared `Arc<str>`s, so writing a
    /// profile copies pointers, not strings.
    #[serde(with = "inline_list")]
    interests: Interests,
    as_of: i64,
    recent: VecDeque<Recent>,
    #[serde(with = "inline_list")]
    counts: Counts,
    last_event: i64,
    last_write: Option<i64>,
    /// Due time when the user has unwritten events.
    due: Option<i64>,
    /// Per input partition, the offset of the last event applied (Kafka), written with the
    /// profile. Not in snapshots (`skip` keeps their format): a restored user is in memory, and
    /// memory, not Redis, is then the truth; its next event records its offset again.
    #[serde(skip)]
    covered: Vec<(i32, i64)>,
    /// With a profile plugin referenced: the plugin's input for the next write. `None` when it
    /// would be incomplete (the user was held before the plugin was referenced, restored from a
    /// snapshot, or had more than [`MAX_PLUGIN_EVENTS`] events): the next write then takes the
    /// built-in interests and starts a new one. Not in snapshots, for the same reason as `covered`.
    #[serde(skip)]
    since_write: Option<Box<SinceWrite>>,
}

/// A recent item as a user holds it: the item id in place up to 24 bytes, so keeping it
/// allocates nothing and writing it follows no pointer. Serialized as [`RecentItem`].
#[derive(Debug, Clone, PartialEq)]
struct Recent {
    item_id: CompactString,
    action: Arc<str>,
    ts: i64,
}

/// [`RecentItem`]'s serialized form, borrowed.
#[derive(serde::Serialize)]
#[serde(rename = "RecentItem")]
struct RecentRef<'a> {
    item_id: &'a str,
    action: &'a str,
    ts: i64,
}

impl serde::Serialize for Recent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RecentRef { item_id: &self.item_id, action: &self.action, ts: self.ts }.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Recent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RecentItem::deserialize(d).map(Recent::from)
    }
}

impl From<RecentItem> for Recent {
    fn from(r: RecentItem) -> Self {
        Recent { item_id: CompactString::new(&*r.item_id), action: r.action, ts: r.ts }
    }
}

/// A list held in place serialized as the vector it was (snapshots keep their format).
mod inline_list {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use smallvec::{Array, SmallVec};

    pub fn serialize<A: Array, S: Serializer>(v: &SmallVec<A>, s: S) -> Result<S::Ok, S::Error>
    where
        A::Item: Serialize,
    {
        s.collect_seq(v.iter())
    }

    pub fn deserialize<'de, A: Array, D: Deserializer<'de>>(d: D) -> Result<SmallVec<A>, D::Error>
    where
        A::Item: Deserialize<'de>,
    {
        Vec::deserialize(d).map(SmallVec::from_vec)
    }
}

/// A user's interests as last written and the events applied since: a profile plugin's input.
#[derive(Debug, Clone, Default, PartialEq)]
struct SinceWrite {
    base: Vec<(Arc<str>, f64)>,
    base_at: i64,
    events: Vec<PendingEvent>,
}

/// One event applied since the user's last write, as the profile plugin receives it.
#[derive(Debug, Clone, PartialEq)]
struct PendingEvent {
    item_id: Box<str>,
    action: Arc<str>,
    ts: i64,
    category: Option<Arc<str>>,
    tags: Vec<Arc<str>>,
    watch_time_ms: Option<f64>,
}

/// Bytes [`UserState::heap_bytes`] counts for one interest, recent item, count, pending event.
fn interest_bytes(name: &str) -> usize {
    name.len() + 24
}

fn recent_bytes(r: &Recent) -> usize {
    // The entry, an id too long to sit in it, and the (shared) action's name.
    std::mem::size_of::<Recent>() + if r.item_id.is_heap_allocated() { r.item_id.len() } else { 0 } + r.action.len()
}

fn count_bytes(action: &str) -> usize {
    action.len() + 24
}

fn pending_bytes(e: &PendingEvent) -> usize {
    e.item_id.len() + 80 + e.tags.len() * 16
}

fn since_bytes(s: &Option<Box<SinceWrite>>) -> usize {
    s.as_ref().map_or(0, |s| s.heap_bytes())
}

/// The capacity a bounded list of `capacity` slots grows to when it must hold `needed`: double
/// (at least 4), but not past `bound` unless `needed` is, so a list at its bound holds no more
/// slots than it briefly needs (a power-of-two growth held up to twice the bound).
fn bounded_growth(capacity: usize, needed: usize, bound: usize) -> usize {
    (2 * capacity).max(4).min(bound).max(needed)
}

/// A change of a byte count, signed.
fn delta(before: usize, after: usize) -> isize {
    after as isize - before as isize
}

impl SinceWrite {
    fn new(base: Vec<(Arc<str>, f64)>, base_at: i64) -> Box<Self> {
        Box::new(Self { base, base_at, events: Vec::new() })
    }

    fn heap_bytes(&self) -> usize {
        self.base.len() * 24 + self.events.iter().map(pending_bytes).sum::<usize>() + std::mem::size_of::<Self>()
    }

    fn to_input(&self, user: &str, update_ms: i64) -> UserInput {
        let mut events: Vec<ProfileEventInput> = self
            .events
            .iter()
            .map(|e| ProfileEventInput {
                item_id: e.item_id.to_string(),
                action: e.action.to_string(),
                ts_ms: e.ts,
                category: e.category.as_deref().map(str::to_string),
                tags: e.tags.iter().map(|t| t.to_string()).collect(),
                watch_time_ms: e.watch_time_ms,
            })
            .collect();
        // Oldest first, as the WIT promises; stable, so equal times keep their arrival order.
        events.sort_by_key(|e| e.ts_ms);
        let mut interests: Vec<InterestInput> = self.base.iter().map(|(n, s)| InterestInput { name: n.to_string(), score: *s }).collect();
        interests.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.name.cmp(&b.name)));
        UserInput { user_id: user.to_string(), interests, interests_as_of_ms: self.base_at, update_ms, events }
    }
}

/// Reused between writes: the order of a user's interests.
#[derive(Debug, Default)]
struct WriteScratch {
    /// (index into the user's interests, score decayed to the write time), strongest first.
    interests: Vec<(u32, f64)>,
    /// Encoded profiles, in write order, until their buffer is frozen.
    spans: Vec<EncodedSpan>,
}

/// Size of the buffers profiles are encoded into: small enough that the allocator serves a
/// buffer from memory freed by earlier ones instead of mapping fresh pages (one buffer per
/// flush, a few MB, faulted in four times the pages).
const SHARED_BUFFER_BYTES: usize = 64 * 1024;
/// A buffer is frozen once it has less room than this left: more than most profiles take, so
/// the next one rarely grows (reallocates) it.
const SHARED_BUFFER_SLACK: usize = 2048;

/// Outputs of the profiles `spans` of `buf`, which is frozen and shared by them.
fn freeze_profiles(buf: Vec<u8>, spans: &mut Vec<EncodedSpan>, key: &ScenarioKey, out: &mut Vec<Output>) {
    if spans.is_empty() {
        return;
    }
    let shared = Bytes::from(buf);
    out.extend(spans.drain(..).map(|span| Output::EncodedProfile(EncodedProfile::new(key.clone(), &shared, span))));
}

impl UserState {
    /// A profile read back: its state as of `updated_at` (interests decayed to it), written.
    /// Offsets of another input than `source` are dropped.
    fn from_stored(stored: StoredProfile, source: &str, names: &mut Interner) -> Self {
        let mut interests = Interests::with_capacity(stored.interests.len().min(MAX_INTERESTS + 1));
        for i in stored.interests {
            if !interests.iter().any(|(n, _)| **n == *i.name) {
                interests.push((names.get(&i.name), i.score));
            }
        }
        if interests.len() > MAX_INTERESTS {
            interests.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            interests.truncate(MAX_INTERESTS);
        }
        let mut recent: VecDeque<Recent> = stored
            .recent_items
            .into_iter()
            .take(MAX_RECENT_ITEMS)
            .map(|r| Recent { item_id: CompactString::new(&*r.item_id), action: names.get(&r.action), ts: r.ts })
            .collect();
        recent.make_contiguous().sort_by_key(|r| std::cmp::Reverse(r.ts));
        let counts = stored.counts.into_iter().take(MAX_COUNTED_ACTIONS).map(|(a, n)| (names.get(&a), n)).collect();
        let covered =
            if *stored.source == *source { stored.offsets.into_iter().take(MAX_COVERED_PARTITIONS).collect() } else { Vec::new() };
        let mut state = Self {
            interests,
            as_of: stored.updated_at,
            last_event: recent.front().map_or(stored.updated_at, |r| r.ts),
            recent,
            counts,
            last_write: Some(stored.updated_at),
            due: None,
            covered,
            since_write: None,
        };
        state.sort_counts();
        state
    }

    /// Starts the plugin input of the next write from the interests as of `at`. Returns the
    /// change of [`Self::heap_bytes`].
    fn start_since_write(&mut self, at: i64, half_life_days: f64) -> isize {
        let before = since_bytes(&self.since_write);
        let f = Self::decay_factor((at - self.as_of).max(0), half_life_days);
        self.since_write = Some(SinceWrite::new(self.interests.iter().map(|(n, s)| (n.clone(), s * f)).collect(), at));
        delta(before, since_bytes(&self.since_write))
    }

    /// Drops the plugin input. Returns the change of [`Self::heap_bytes`].
    fn drop_since_write(&mut self) -> isize {
        -(since_bytes(&self.since_write.take()) as isize)
    }

    /// Keeps `ev` for the plugin's next call (see `since_write`). Returns the change of
    /// [`Self::heap_bytes`].
    fn note_for_plugin(&mut self, ev: &Event<'_>, action: &Arc<str>, names: &mut Interner) -> isize {
        let Some(since) = self.since_write.as_mut() else { return 0 };
        if since.events.len() >= MAX_PLUGIN_EVENTS {
            return self.drop_since_write();
        }
        let e = PendingEvent {
            item_id: ev.item_id.as_ref().into(),
            action: action.clone(),
            ts: ev.ts,
            category: ev.category.as_deref().map(|c| names.get(c)),
            tags: ev.tags.iter().map(|t| names.get(t)).collect(),
            watch_time_ms: ev.watch_time_ms,
        };
        let added = pending_bytes(&e) as isize;
        since.events.push(e);
        added
    }

    /// The share of the top `k` interest names this user and `other` both hold (scores decay
    /// alike, so the ranking needs no common time).
    fn overlap_with(&self, other: &ProfileInterests, k: usize) -> f64 {
        let ranked = |v: &mut Vec<(String, f64)>| v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut mine: Vec<(String, f64)> = self.interests.iter().map(|(n, s)| (n.to_string(), *s)).collect();
        let mut theirs = other.clone();
        ranked(&mut mine);
        ranked(&mut theirs);
        crate::scoring::ranking::overlap_at(&mine, &theirs, k)
    }

    /// Replaces the interests with a plugin's, as of `at`. Returns the change of
    /// [`Self::heap_bytes`].
    fn set_interests(&mut self, interests: ProfileInterests, at: i64, names: &mut Interner) -> isize {
        let before: usize = self.interests.iter().map(|(n, _)| interest_bytes(n)).sum();
        self.interests = interests.into_iter().map(|(n, s)| (names.get(&n), s)).collect();
        self.as_of = at;
        delta(before, self.interests.iter().map(|(n, _)| interest_bytes(n)).sum())
    }

    /// The event at `pos` is already in this state (read back from a profile that holds it).
    fn covers(&self, pos: Position) -> bool {
        self.covered.iter().any(|&(p, o)| p == pos.partition && o >= pos.offset)
    }

    /// Returns the change of [`Self::heap_bytes`].
    fn note_position(&mut self, pos: Position) -> isize {
        if let Some((_, o)) = self.covered.iter_mut().find(|(p, _)| *p == pos.partition) {
            *o = (*o).max(pos.offset);
            0
        } else if self.covered.len() < MAX_COVERED_PARTITIONS {
            self.covered.push((pos.partition, pos.offset));
            16
        } else {
            0
        }
    }

    fn decay_factor(dt_ms: i64, half_life_days: f64) -> f64 {
        (-(dt_ms as f64) / (half_life_days * MS_PER_DAY) * std::f64::consts::LN_2).exp()
    }

    /// Adds an event's interest weight, decayed to the state's time base. Returns the change
    /// of [`Self::heap_bytes`].
    fn add_interests(&mut self, ev: &Event<'_>, weight: f64, half_life_days: f64, names: &mut Interner) -> isize {
        if ev.ts > self.as_of {
            let f = Self::decay_factor(ev.ts - self.as_of, half_life_days);
            self.interests.iter_mut().for_each(|(_, s)| *s *= f);
            self.as_of = ev.ts;
        }
        let w = weight * Self::decay_factor(self.as_of - ev.ts, half_life_days);
        let mut change = 0isize;
        // New names are pushed before the weakest beyond the bound go, so a full list briefly
        // holds more than it keeps: grown to exactly that rather than to the next power of two,
        // which held 64 slots (1.5 KB) for 32 interests.
        let (len, needed) = (self.interests.len(), self.interests.len() + usize::from(ev.category.is_some()) + ev.tags.len());
        if needed > self.interests.capacity() {
            self.interests.reserve_exact(bounded_growth(self.interests.capacity(), needed, MAX_INTERESTS) - len);
        }
        for name in ev.category.iter().chain(ev.tags.iter()) {
            match self.interests.iter_mut().find(|(n, _)| **n == **name) {
                Some((_, s)) => *s += w,
                None => {
                    change += interest_bytes(name) as isize;
                    self.interests.push((names.get(name), w));
                }
            }
        }
        if self.interests.len() > MAX_INTERESTS {
            self.interests.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            change -= self.interests[MAX_INTERESTS..].iter().map(|(n, _)| interest_bytes(n)).sum::<usize>() as isize;
            self.interests.truncate(MAX_INTERESTS);
        }
        change
    }

    /// Returns the change of [`Self::heap_bytes`].
    fn add_recent(&mut self, ev: &Event<'_>, action: &Arc<str>) -> isize {
        let pos = self.recent.iter().position(|r| r.ts <= ev.ts).unwrap_or(self.recent.len());
        if pos >= MAX_RECENT_ITEMS {
            return 0;
        }
        let item = Recent { item_id: CompactString::new(&ev.item_id), action: action.clone(), ts: ev.ts };
        let mut change = recent_bytes(&item) as isize;
        // The oldest goes before the newcomer comes in, and the list never grows past the
        // bound: inserting a 21st item first made every full list hold 32 slots (1.5 KB) for 20.
        while self.recent.len() >= MAX_RECENT_ITEMS {
            if let Some(r) = self.recent.pop_back() {
                change -= recent_bytes(&r) as isize;
            }
        }
        let len = self.recent.len();
        if len == self.recent.capacity() {
            self.recent.reserve_exact(bounded_growth(len, len + 1, MAX_RECENT_ITEMS) - len);
        }
        self.recent.insert(pos, item);
        change
    }

    /// Counts an action; the counts stay in action name order (as written). Returns the change
    /// of [`Self::heap_bytes`].
    fn count(&mut self, action: &Arc<str>) -> isize {
        match self.counts.iter().position(|(a, _)| Arc::ptr_eq(a, action) || a == action) {
            Some(i) => {
                self.counts[i].1 += 1;
                0
            }
            None if self.counts.len() < MAX_COUNTED_ACTIONS => {
                let at = self.counts.partition_point(|(a, _)| **a < **action);
                self.counts.insert(at, (action.clone(), 1));
                count_bytes(action) as isize
            }
            None => 0,
        }
    }

    /// Puts the counts in action name order (a state from a snapshot of an earlier version).
    fn sort_counts(&mut self) {
        if !self.counts.is_sorted_by(|a, b| a.0 <= b.0) {
            self.counts.sort_by(|a, b| a.0.cmp(&b.0));
        }
    }

    /// Orders the interests (decayed to `at`, strongest first, then by name) into `scratch`, as
    /// the written profile holds them.
    fn order_for_write(&self, at: i64, half_life_days: f64, scratch: &mut WriteScratch) {
        let f = Self::decay_factor((at - self.as_of).max(0), half_life_days);
        scratch.interests.clear();
        scratch.interests.extend(self.interests.iter().enumerate().map(|(i, (_, s))| (i as u32, s * f)));
        // Stable, from the state's order, like the structured form's sort.
        scratch
            .interests
            .sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| self.interests[a.0 as usize].0.cmp(&self.interests[b.0 as usize].0)));
    }

    /// The profile as of event time `at`; `source` names the input of the offsets it covers.
    fn profile(&self, key: &ScenarioKey, user: &str, at: i64, half_life_days: f64, revision: i64, source: &Arc<str>) -> UserProfile {
        let f = Self::decay_factor((at - self.as_of).max(0), half_life_days);
        let mut interests: Vec<Interest> = self.interests.iter().map(|(n, s)| Interest { name: n.clone(), score: s * f }).collect();
        interests.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.name.cmp(&b.name)));
        // The weaker interests travel in `resume`, so a profile read back is the whole state.
        let more_interests = interests.split_off(interests.len().min(WRITTEN_INTERESTS));
        UserProfile {
            key: key.clone(),
            user_id: user.to_string(),
            interests,
            recent_items: self
                .recent
                .iter()
                .map(|r| RecentItem { item_id: r.item_id.as_str().into(), action: r.action.clone(), ts: r.ts })
                .collect(),
            counts: self.counts.iter().map(|(a, n)| (a.clone(), *n)).collect(),
            updated_at: at,
            config_revision: revision,
            resume: ProfileResume { more_interests, source: source.clone(), offsets: self.covered.clone() },
            interest_decay_days: half_life_days,
        }
    }

    /// [`Self::profile`], encoded as the sinks write it (the same bytes, without the copy) at
    /// the end of `buf`, a buffer shared by the profiles of a flush.
    #[allow(clippy::too_many_arguments, reason = "the profile's context, as for `profile`")]
    fn encode(
        &self,
        buf: &mut Vec<u8>,
        prefix: &[u8],
        user: &str,
        at: i64,
        half_life_days: f64,
        revision: i64,
        source: &str,
        scratch: &mut WriteScratch,
    ) -> EncodedSpan {
        self.order_for_write(at, half_life_days, scratch);
        let written = scratch.interests.len().min(WRITTEN_INTERESTS);
        let name = |&(i, s): &(u32, f64)| (&*self.interests[i as usize].0, s);
        let mut e = ProfileEncoder::new(buf, prefix, user);
        e.interests(scratch.interests[..written].iter().map(name));
        e.recent_items(self.recent.iter().map(|r| (r.item_id.as_str(), &*r.action, r.ts)));
        // Counts are kept in action name order (`count`), the order of the written map.
        e.counts(self.counts.iter().map(|(a, n)| (&**a, *n)));
        e.finish(user, at, revision, scratch.interests[written..].iter().map(name), source, &self.covered, half_life_days)
    }

    /// Approximate bytes held, for the state-size gauge and benchmarks.
    pub fn heap_bytes(&self) -> usize {
        self.interests.iter().map(|(n, _)| interest_bytes(n)).sum::<usize>()
            + self.recent.iter().map(recent_bytes).sum::<usize>()
            + self.counts.iter().map(|(a, _)| count_bytes(a)).sum::<usize>()
            + self.covered.len() * 16
            + since_bytes(&self.since_write)
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

/// A scenario's users: each in a slot with a dense id, found by name through a hash table of
/// ids. Ids of forgotten users are reused. Names of up to 24 bytes sit in the slot, beside the
/// state, so finding a user does not miss the cache once more for its name.
/// The stages in which [`ProfileJob::prefetch`] loads an event's user state ahead of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookAhead {
    /// The user's hint (`Users::hints`): an address from the name's hash alone.
    Hint,
    /// The slot the hint names (else the first under the hash).
    Slot,
    /// The slot's newest recent item, where the event's insertion starts.
    Recent,
}

impl LookAhead {
    pub const STAGES: [LookAhead; 3] = [LookAhead::Hint, LookAhead::Slot, LookAhead::Recent];
    /// How many events ahead the first stage runs.
    pub const DEPTH: usize = 3;

    /// How many events before its event is processed the stage runs.
    pub fn distance(self) -> usize {
        match self {
            LookAhead::Hint => Self::DEPTH,
            LookAhead::Slot => 2,
            LookAhead::Recent => 1,
        }
    }
}

#[derive(Default)]
struct Users {
    table: HashTable<u32>,
    slots: Vec<Option<(CompactString, UserState)>>,
    free: Vec<u32>,
    hasher: ahash::RandomState,
    /// Direct-mapped hints: the id of the user last seen whose name's hash has these top bits
    /// ([`NO_HINT`]: none), at least [`HINTS_PER_USER`] per user. An event's hint is loaded
    /// by its address alone, so the look-ahead can prefetch it a stage before the slot; the
    /// table's probe, whose control bytes missed the cache for most events, runs only when
    /// the hinted slot holds another name. A hint is always checked against the slot's name,
    /// so a stale or colliding one costs that probe and nothing else.
    hints: Vec<u32>,
}

const NO_HINT: u32 = u32::MAX;
const HINTS_PER_USER: usize = 4;

impl Users {
    fn from_map(map: HashMap<Box<str>, UserState, ahash::RandomState>) -> Self {
        let mut users = Self::default();
        for (name, state) in map {
            users.insert(&name, state);
        }
        users
    }

    fn to_map(&self) -> HashMap<Box<str>, UserState, ahash::RandomState> {
        self.iter().map(|(_, name, state)| (Box::from(name), state.clone())).collect()
    }

    fn len(&self) -> usize {
        self.table.len()
    }

    fn find(&self, name: &str) -> Option<u32> {
        self.find_hashed(name, self.hasher.hash_one(name))
    }

    fn find_hashed(&self, name: &str, hash: u64) -> Option<u32> {
        let slots = &self.slots;
        let named = |i: u32| slots.get(i as usize).is_some_and(|s| s.as_ref().is_some_and(|(n, _)| n.as_str() == name));
        if let Some(&id) = self.hint_at(hash)
            && named(id)
        {
            return Some(id);
        }
        self.table.find(hash, |&i| named(i)).copied()
    }

    /// [`Self::find`], pointing the name's hint at the user found.
    fn find_and_hint(&mut self, name: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(name);
        let id = self.find_hashed(name, hash)?;
        self.set_hint(hash, id);
        Some(id)
    }

    fn hint_index(&self, hash: u64) -> Option<usize> {
        // The length is a power of two; the top bits pick the hint (the table uses the low ones).
        let bits = self.hints.len().trailing_zeros();
        (!self.hints.is_empty() && bits > 0).then(|| (hash >> (64 - bits)) as usize)
    }

    fn hint_at(&self, hash: u64) -> Option<&u32> {
        self.hints.get(self.hint_index(hash)?)
    }

    fn set_hint(&mut self, hash: u64, id: u32) {
        if let Some(h) = self.hint_index(hash).and_then(|i| self.hints.get_mut(i)) {
            *h = id;
        }
    }

    /// Keeps [`HINTS_PER_USER`] hints per slot: past that, twice as many, refilled from the
    /// slots.
    fn grow_hints(&mut self) {
        let want = (self.slots.len() * HINTS_PER_USER).next_power_of_two().max(1024);
        if self.hints.len() >= want {
            return;
        }
        self.hints = vec![NO_HINT; want];
        for id in 0..self.slots.len() {
            if let Some((name, _)) = &self.slots[id] {
                let hash = self.hasher.hash_one(name.as_str());
                self.set_hint(hash, id as u32);
            }
        }
    }

    fn contains_key(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    /// Starts loading the slot of the user most likely named `name` (its hint, else the first
    /// id under its hash), without comparing names: that would wait for the slot.
    fn prefetch_slot(&self, name: &str) {
        let hash = self.hasher.hash_one(name);
        let id = match self.hint_at(hash) {
            Some(&id) if id != NO_HINT => Some(id),
            _ => self.table.iter_hash(hash).next().copied(),
        };
        if let Some(slot) = id.and_then(|id| self.slots.get(id as usize)) {
            prefetch(slot);
        }
    }

    /// Starts loading the hint of user `name`: the first look-ahead stage, an address from the
    /// name's hash alone.
    fn prefetch_hint(&self, name: &str) {
        if let Some(hint) = self.hint_at(self.hasher.hash_one(name)) {
            prefetch(hint);
        }
    }

    /// Starts loading user `id`'s slot.
    fn prefetch_id(&self, id: u32) {
        prefetch_at(&self.slots, id as usize);
    }

    /// Starts loading the newest recent item of user `name`, whose slot should be cached by
    /// now ([`Self::prefetch_slot`]): the event's insertion starts there.
    fn prefetch_recent(&self, name: &str) {
        if let Some(recent) = self.find(name).and_then(|id| self.state(id)).and_then(|s| s.recent.front()) {
            prefetch(recent);
        }
    }

    fn state(&self, id: u32) -> Option<&UserState> {
        self.slots.get(id as usize)?.as_ref().map(|(_, s)| s)
    }

    fn slot(&self, id: u32) -> Option<(&str, &UserState)> {
        self.slots.get(id as usize)?.as_ref().map(|(n, s)| (n.as_str(), s))
    }

    fn state_mut(&mut self, id: u32) -> Option<&mut UserState> {
        self.slots.get_mut(id as usize)?.as_mut().map(|(_, s)| s)
    }

    /// Adds a user not held yet; returns its id.
    fn insert(&mut self, name: &str, state: UserState) -> u32 {
        let hash = self.hasher.hash_one(name);
        let name = CompactString::new(name);
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some((name, state));
                id
            }
            None => {
                self.slots.push(Some((name, state)));
                (self.slots.len() - 1) as u32
            }
        };
        let Self { table, slots, hasher, .. } = self;
        table.insert_unique(hash, id, |&i| slots[i as usize].as_ref().map_or(0, |(n, _)| hasher.hash_one(n.as_str())));
        self.grow_hints();
        self.set_hint(hash, id);
        id
    }

    /// Forgets user `id`; returns its name and state.
    fn remove(&mut self, id: u32) -> Option<(CompactString, UserState)> {
        let (name, state) = self.slots.get_mut(id as usize)?.take()?;
        let hash = self.hasher.hash_one(name.as_str());
        if let Ok(entry) = self.table.find_entry(hash, |&i| i == id) {
            entry.remove();
        }
        if self.hint_at(hash) == Some(&id) {
            self.set_hint(hash, NO_HINT);
        }
        self.free.push(id);
        Some((name, state))
    }

    fn iter(&self) -> impl Iterator<Item = (u32, &str, &UserState)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| s.as_ref().map(|(n, u)| (i as u32, n.as_str(), u)))
    }

    #[cfg(test)]
    fn keys(&self) -> impl Iterator<Item = &CompactString> {
        self.slots.iter().filter_map(|s| s.as_ref().map(|(n, _)| n))
    }

    #[cfg(test)]
    fn values(&self) -> impl Iterator<Item = &UserState> {
        self.iter().map(|(_, _, u)| u)
    }

    /// Bytes of every user's state, walked ([`ScenarioProfiles::state_bytes`] keeps it as it changes).
    fn walked_bytes(&self) -> usize {
        self.iter().map(|(_, k, u)| k.len() + u.heap_bytes()).sum()
    }
}

/// One scenario's profiles.
pub struct ScenarioProfiles {
    pub config: Arc<ScenarioConfig>,
    users: Users,
    /// Users due for a write: (due time, arrival, user id), earliest first, in arrival order
    /// at equal times (coalesced timers).
    timers: BinaryHeap<Reverse<(i64, u64, u32)>>,
    timer_seq: u64,
    max_ts: i64,
    pub profiles_written: u64,
    last_eviction_hour: i64,
    names: Interner,
    /// Actions seen, with their behavior weight under `config` (0: none).
    actions: Vec<(Arc<str>, f64)>,
    /// Bytes of every user's state (`Users::walked_bytes`), kept as it changes.
    bytes: usize,
    /// Profiles come out encoded (`PipelineOptions::encode_profiles`).
    encode: bool,
    /// Reused between flushes.
    due: Vec<(u32, i64)>,
    scratch: WriteScratch,
    /// What every encoded record of this scenario starts with.
    prefix: Vec<u8>,
    /// The tenant's memory quotas.
    pub limits: MemoryLimits,
    /// Events refused because they would add a user beyond the quota.
    pub over_quota: u64,
    /// Events skipped because the profile read back already held them (a replay).
    pub replayed: u64,
    /// The scenario's profile plugin lanes (`user_profile.plugin`, a revision's waiting one,
    /// the candidate's), installed by the runtime.
    pub plugins: JobPlugins,
    /// The watermark of the last flush: a revision effective at or before it applies at once.
    flushed_through: Option<i64>,
    /// How the candidate's interests compare with the ones written (`candidate.user_profile.plugin`).
    pub shadow: ProfileShadowStats,
    /// Writes whose interests came from the plugin, and writes that took the built-in
    /// interests while a plugin was referenced (its call failed, it was not active, or the
    /// user's input was incomplete).
    pub plugin_writes: u64,
    pub plugin_fallback_writes: u64,
}

/// Interests compared per user between a shadow candidate and the written profile.
pub const SHADOW_K: usize = 10;

/// A profile candidate's agreement with the live interests, over the writes both made.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProfileShadowStats {
    /// Writes compared since the candidate started.
    pub users: u64,
    /// Mean over the last flush's compared writes of the share of the top [`SHADOW_K`] interest
    /// names both hold (1: the candidate ranks the same interests first).
    pub overlap_at_k: Option<f64>,
    /// Event time of that flush.
    pub at: Option<i64>,
}

/// Calls the profile plugin on one batch: `None` when none is active (the built-in interests
/// stand), else its checked result. Tests pass their own.
type UpdateFn<'a> = dyn FnMut(&mut JobPlugin, &ProfileInput) -> Option<Result<Vec<ProfileInterests>, PluginError>> + 'a;

/// The production [`UpdateFn`]: the scenario's plugin, through its budget and quarantine rules.
fn call_plugin(plugin: &mut JobPlugin, input: &ProfileInput) -> Option<Result<Vec<ProfileInterests>, PluginError>> {
    if !plugin.is_active() {
        return None;
    }
    plugin.call(|instance| instance.update_profiles(input))
}

fn add_bytes(bytes: &mut usize, change: isize) {
    *bytes = bytes.saturating_add_signed(change);
}

impl ScenarioProfiles {
    fn new(config: Arc<ScenarioConfig>, encode: bool) -> Self {
        let plugins = JobPlugins::new(&config, PluginWorld::Profile);
        let prefix = ProfileEncoder::prefix(&config.key);
        Self {
            plugins,
            flushed_through: None,
            shadow: ProfileShadowStats::default(),
            plugin_writes: 0,
            plugin_fallback_writes: 0,
            config,
            users: Users::default(),
            timers: BinaryHeap::new(),
            timer_seq: 0,
            max_ts: i64::MIN,
            profiles_written: 0,
            last_eviction_hour: i64::MIN,
            names: Interner::default(),
            actions: Vec::new(),
            bytes: 0,
            encode,
            due: Vec::new(),
            scratch: WriteScratch::default(),
            prefix,
            limits: MemoryLimits::default(),
            over_quota: 0,
            replayed: 0,
        }
    }

    /// A new config: its behavior weights apply to the next event.
    fn set_config(&mut self, cfg: Arc<ScenarioConfig>) {
        self.config = cfg;
        self.actions.clear();
    }

    /// The interned action `name` and its behavior weight (0: none).
    fn action(&mut self, name: &str) -> (Arc<str>, f64) {
        if let Some((a, w)) = self.actions.iter().find(|(a, _)| **a == *name) {
            return (a.clone(), *w);
        }
        let a = self.names.get(name);
        let w = self.config.user_profile.behavior_weights.get(name).copied().unwrap_or(0.0);
        if self.actions.len() < MAX_CACHED_ACTIONS {
            self.actions.push((a.clone(), w));
        }
        (a, w)
    }

    fn schedule(&mut self, due: i64, id: u32) {
        self.timers.push(Reverse((due, self.timer_seq, id)));
        self.timer_seq += 1;
    }

    fn on_event(&mut self, ev: &Event<'_>, pos: Option<Position>) -> Routed {
        let referenced = self.plugins.any_referenced();
        let id = match self.users.find_and_hint(&ev.user_id) {
            Some(id) => id,
            None => {
                let (max_users, quota) = self.limits.bound(QuotaKind::Users);
                if self.users.len() >= max_users {
                    self.over_quota += 1;
                    return Routed::OverQuota(quota, max_users);
                }
                let mut fresh = UserState::default();
                if referenced {
                    // A new user has no interests yet: the plugin's input is complete.
                    fresh.since_write = Some(SinceWrite::new(Vec::new(), ev.ts));
                }
                self.bytes += ev.user_id.len() + fresh.heap_bytes();
                self.users.insert(&ev.user_id, fresh)
            }
        };
        if let Some(pos) = pos
            && self.users.state(id).is_some_and(|u| u.covers(pos))
        {
            self.replayed += 1;
            return Routed::Counted;
        }
        let (action, weight) = self.action(&ev.action);
        let cfg = &self.config.user_profile;
        let Some(user) = self.users.state_mut(id) else { return Routed::Counted };
        let mut change = 0;
        if let Some(pos) = pos {
            change += user.note_position(pos);
        }
        if weight != 0.0 {
            change += user.add_interests(ev, weight, cfg.interest_decay_days, &mut self.names);
        }
        if referenced {
            change += user.note_for_plugin(ev, &action, &mut self.names);
        } else if user.since_write.is_some() {
            change += user.drop_since_write();
        }
        change += user.add_recent(ev, &action);
        change += user.count(&action);
        user.last_event = user.last_event.max(ev.ts);
        let due = match user.due {
            None => {
                let due = user.last_write.map_or(ev.ts, |w| (w + cfg.update_frequency_ms).max(ev.ts));
                user.due = Some(due);
                Some(due)
            }
            Some(_) => None,
        };
        add_bytes(&mut self.bytes, change);
        if let Some(due) = due {
            self.schedule(due, id);
        }
        self.max_ts = self.max_ts.max(ev.ts);
        Routed::Counted
    }

    /// Writes every user due at or before `now` (event time).
    fn flush_due(&mut self, now: i64, source: &Arc<str>, out: &mut Vec<Output>) {
        self.flush_due_with(now, source, out, &mut call_plugin);
    }

    /// [`Self::flush_due`], the profile plugin called through `update`. A revision waiting
    /// for an effective time at or before `now` switches the plugin there: users due before it
    /// are written with the previous plugin, the others with the new one, whatever the flushes.
    fn flush_due_with(&mut self, now: i64, source: &Arc<str>, out: &mut Vec<Output>, update: &mut UpdateFn<'_>) {
        while let Some(e) = self.plugins.next_switch().filter(|&e| e <= now) {
            self.flush_through(e - 1, source, out, update);
            self.plugins.switch_due(e);
        }
        self.flush_through(now, source, out, update);
        self.flushed_through = Some(now);
    }

    /// Writes every user due at or before `now` with the plugin in force.
    fn flush_through(&mut self, now: i64, source: &Arc<str>, out: &mut Vec<Output>, update: &mut UpdateFn<'_>) {
        let mut due = std::mem::take(&mut self.due);
        due.clear();
        while let Some(&Reverse((t, _, id))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            due.push((id, t));
        }
        // A timer stands only if its user is still due then. Checking reads each user's slot,
        // mostly out of the cache: the slots a few timers later are loaded meanwhile.
        let mut kept = 0;
        for k in 0..due.len() {
            if let Some(&(later, _)) = due.get(k + 4) {
                self.users.prefetch_id(later);
            }
            let (id, t) = due[k];
            if let Some(state) = self.users.state(id)
                && state.due == Some(t)
            {
                due[kept] = (id, t.max(state.last_event));
                kept += 1;
            }
        }
        due.truncate(kept);
        if !due.is_empty() {
            self.write_due(&due, source, out, update);
        }
        self.due = due;
    }

    /// Writes the `due` users, each as of its time.
    fn write_due(&mut self, due: &[(u32, i64)], source: &Arc<str>, out: &mut Vec<Output>, update: &mut UpdateFn<'_>) {
        let from_plugin = self.apply_plugin(due, update);
        let cfg = self.config.clone();
        let half_life = cfg.user_profile.interest_decay_days;
        let referenced = self.plugins.in_force().is_some();
        let keep_inputs = self.plugins.any_referenced();
        out.reserve(due.len());
        // Profiles are encoded one after the other into a buffer, shared by their outputs once
        // frozen: an allocation per [`SHARED_BUFFER_BYTES`], not per profile.
        let mut buf = Vec::new();
        self.scratch.spans.clear();
        for (k, &(id, at)) in due.iter().enumerate() {
            // Users written now were last touched many events ago, mostly out of the cache:
            // the slots of the users written a few steps later, then (once those are cached)
            // their recent items, are loaded while this one is encoded.
            if let Some(&(later, _)) = due.get(k + 4) {
                self.users.prefetch_id(later);
            }
            if let Some(state) = due.get(k + 2).and_then(|&(next, _)| self.users.state(next)) {
                let (front, back) = state.recent.as_slices();
                prefetch_slice(front, 8);
                prefetch_slice(back, 8);
            }
            let Some((user, state)) = self.users.slot(id) else { continue };
            if self.encode {
                if buf.capacity() == 0 {
                    buf.reserve(SHARED_BUFFER_BYTES);
                }
                let span = state.encode(&mut buf, &self.prefix, user, at, half_life, cfg.revision, source, &mut self.scratch);
                self.scratch.spans.push(span);
                if buf.len() + SHARED_BUFFER_SLACK >= SHARED_BUFFER_BYTES {
                    freeze_profiles(std::mem::take(&mut buf), &mut self.scratch.spans, &cfg.key, out);
                }
            } else {
                out.push(Output::Profile(state.profile(&cfg.key, user, at, half_life, cfg.revision, source)));
            }
            let Some(state) = self.users.state_mut(id) else { continue };
            state.last_write = Some(at);
            state.due = None;
            self.profiles_written += 1;
            if referenced {
                if from_plugin.get(k).copied().unwrap_or(false) {
                    self.plugin_writes += 1;
                } else {
                    self.plugin_fallback_writes += 1;
                }
            }
            let change = if keep_inputs {
                state.start_since_write(at, half_life)
            } else if state.since_write.is_some() {
                state.drop_since_write()
            } else {
                0
            };
            add_bytes(&mut self.bytes, change);
        }
        freeze_profiles(buf, &mut self.scratch.spans, &cfg.key, out);
    }

    /// With a profile plugin in force, replaces the interests of the due users whose input is
    /// complete with the plugin's, [`MAX_PLUGIN_USERS`] users per call. Returns, per due user,
    /// whether its interests now come from the plugin (empty: none does); the others keep the
    /// built-in ones. A shadow candidate gets the same input and its result is only compared
    /// with the outcome.
    fn apply_plugin(&mut self, due: &[(u32, i64)], update: &mut UpdateFn<'_>) -> Vec<bool> {
        let (mut live_on, mut shadow_on) = (self.plugins.in_force().is_some(), self.plugins.shadow.is_some());
        if !live_on && !shadow_on {
            return Vec::new();
        }
        let mut from_plugin = vec![false; due.len()];
        let up = &self.config.user_profile;
        let (actions, weights): (Vec<String>, Vec<f64>) = up.behavior_weights.iter().map(|(a, w)| (a.clone(), *w)).unzip();
        let half_life = up.interest_decay_days;
        let (mut overlap_sum, mut compared) = (0.0, 0u64);
        let ready: Vec<usize> = (0..due.len()).filter(|&k| self.users.state(due[k].0).is_some_and(|u| u.since_write.is_some())).collect();
        for chunk in ready.chunks(MAX_PLUGIN_USERS) {
            if !live_on && !shadow_on {
                break;
            }
            let users: Vec<UserInput> = chunk
                .iter()
                .filter_map(|&k| {
                    let (id, at) = due[k];
                    let (u, s) = self.users.slot(id)?;
                    s.since_write.as_ref().map(|since| since.to_input(u, at))
                })
                .collect();
            let input = ProfileInput {
                tenant_id: self.config.key.tenant_id.to_string(),
                scenario_id: self.config.key.scenario_id.to_string(),
                actions: actions.clone(),
                weights: weights.clone(),
                interest_decay_days: half_life,
                users,
            };
            // No plugin active (none loaded yet, quarantined): built-in for the rest too. A
            // failed call is counted, logged and recorded by the plugin; that batch keeps the
            // built-in interests.
            let candidate = match self.plugins.shadow.as_mut().filter(|_| shadow_on).map(|(_, p)| update(p, &input)) {
                Some(Some(Ok(lists))) => Some(lists),
                Some(None) => {
                    shadow_on = false;
                    None
                }
                _ => None,
            };
            if live_on {
                match update(&mut self.plugins.live, &input) {
                    None => live_on = false,
                    Some(Err(_)) => {}
                    Some(Ok(lists)) => {
                        for (&k, interests) in chunk.iter().zip(lists) {
                            let (id, at) = due[k];
                            if let Some(state) = self.users.state_mut(id) {
                                let change = state.set_interests(interests, at, &mut self.names);
                                add_bytes(&mut self.bytes, change);
                                from_plugin[k] = true;
                            }
                        }
                    }
                }
            }
            for (&k, cand) in chunk.iter().zip(candidate.into_iter().flatten()) {
                if let Some(state) = self.users.state(due[k].0) {
                    overlap_sum += state.overlap_with(&cand, SHADOW_K);
                    compared += 1;
                }
            }
        }
        if compared > 0 {
            self.shadow.users += compared;
            self.shadow.overlap_at_k = Some(overlap_sum / compared as f64);
            self.shadow.at = due.iter().map(|(_, at)| *at).max();
        }
        from_plugin
    }

    /// Forgets the users `doomed` (ids); returns how many went.
    fn forget(&mut self, doomed: &[u32]) -> usize {
        for &id in doomed {
            if let Some((name, state)) = self.users.remove(id) {
                self.bytes = self.bytes.saturating_sub(name.len() + state.heap_bytes());
            }
        }
        doomed.len()
    }

    /// Forgets users idle for longer than `idle_ms` whose profiles are written; returns how many.
    fn evict_idle(&mut self, now: i64, idle_ms: i64) -> usize {
        let doomed: Vec<u32> =
            self.users.iter().filter(|(_, _, u)| u.due.is_none() && now - u.last_event > idle_ms).map(|(id, _, _)| id).collect();
        self.forget(&doomed)
    }

    /// Above `max_users`, forgets the least recently active users whose profiles are written
    /// (by last event time, then id: deterministic) until a tenth of the bound is free, so the
    /// O(users) scan runs once per tenth of the bound of new users. Users with unwritten events
    /// stay (they are written within `update_frequency_minutes`). Returns how many went.
    fn evict_least_recent(&mut self, max_users: usize) -> usize {
        if self.users.len() <= max_users {
            return 0;
        }
        let excess = self.users.len() - (max_users - max_users / 10);
        let mut written: Vec<(i64, &str, u32)> =
            self.users.iter().filter(|(_, _, u)| u.due.is_none()).map(|(id, k, u)| (u.last_event, k, id)).collect();
        if written.len() > excess {
            written.select_nth_unstable(excess);
            written.truncate(excess);
        }
        let doomed: Vec<u32> = written.into_iter().map(|(_, _, id)| id).collect();
        self.forget(&doomed)
    }

    /// Installs a profile read back for `user`, unless it is held already or the tenant's user
    /// quota is reached (its event is refused then anyway).
    fn install(&mut self, user: &str, stored: StoredProfile, source: &str) -> bool {
        if self.users.contains_key(user) || self.users.len() >= self.limits.bound(QuotaKind::Users).0 {
            return false;
        }
        let mut state = UserState::from_stored(stored, source, &mut self.names);
        if self.plugins.any_referenced() {
            // The stored profile is the whole state as of its write: the plugin's input is complete.
            state.start_since_write(state.as_of, self.config.user_profile.interest_decay_days);
        }
        self.bytes += user.len() + state.heap_bytes();
        self.users.insert(user, state);
        true
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Bytes of every user's state (names, interests, recent items, counts, offsets, plugin
    /// inputs), kept as it changes: O(1).
    pub fn state_bytes(&self) -> usize {
        self.bytes
    }

    /// The users' names by due time, as snapshots hold the timers.
    fn timers_by_due(&self) -> BTreeMap<i64, Vec<Box<str>>> {
        let mut entries: Vec<(i64, u64, u32)> = self.timers.iter().map(|Reverse(t)| *t).collect();
        entries.sort_unstable();
        let mut by_due: BTreeMap<i64, Vec<Box<str>>> = BTreeMap::new();
        for (due, _, id) in entries {
            if let Some((name, _)) = self.users.slot(id) {
                by_due.entry(due).or_default().push(name.into());
            }
        }
        by_due
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
    /// Set when profiles are read back from a store (Kafka with Redis).
    read_back: Option<ReadBack>,
    /// The input written profiles' offsets belong to (empty without a store).
    source: Arc<str>,
    /// Profiles come out encoded ([`Output::EncodedProfile`]) rather than structured.
    encode: bool,
    /// Evictions and read-backs so far (`rtscore_profile_*` metrics).
    pub counters: ProfileCounters,
}

/// Durable profiles: what bounds memory when profiles are read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ReadBack {
    /// Users held per scenario, at batch boundaries (`--profile-max-users`).
    max_users: usize,
}

/// What the profile store did, over the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProfileCounters {
    /// Users forgotten after `profile_idle_ms` (7 days) of event time without events.
    pub evicted_idle: u64,
    /// Users forgotten because a scenario held more than `--profile-max-users`.
    pub evicted_memory: u64,
    /// Profiles read back from the store and continued.
    pub read_back: u64,
    /// Users looked up that the store did not hold (new users, or expired keys).
    pub read_back_absent: u64,
    /// Users looked up whose stored hash was not a profile (they start empty; logged).
    pub read_back_invalid: u64,
    /// Users looked up while the store did not answer in time (they start empty).
    pub read_back_failed: u64,
}

impl ProfileJob {
    pub fn new(idle_ms: i64) -> Self {
        Self {
            idle_ms,
            scenarios: ScenarioMap::default(),
            read_back: None,
            source: "".into(),
            encode: false,
            counters: ProfileCounters::default(),
        }
    }

    /// Profiles come out encoded ([`Output::EncodedProfile`], as the runtime writes them) when
    /// `on`, else structured ([`Output::Profile`]); the values are the same.
    pub fn encode_outputs(&mut self, on: bool) {
        self.encode = on;
        for s in self.scenarios.values_mut() {
            s.encode = on;
        }
    }

    /// Reads profiles back from a store fed by input `source` (the Kafka topic), and holds at
    /// most `max_users` users per scenario in memory (DESIGN §4, "Durable profiles").
    pub fn enable_read_back(&mut self, source: &str, max_users: usize) {
        self.read_back = Some(ReadBack { max_users: max_users.max(1) });
        self.source = source.into();
    }

    pub fn read_back_enabled(&self) -> bool {
        self.read_back.is_some()
    }

    /// Whether `ev`'s user should be read back before `ev` is processed: profiles are read
    /// back, its scenario has a profile config here, and the user is not in memory.
    pub fn needs_load(&self, ev: &Event<'_>) -> bool {
        self.read_back.is_some() && self.scenarios.get(&ev.tenant_id, &ev.scenario_id).is_some_and(|s| !s.users.contains_key(&ev.user_id))
    }

    /// At a batch boundary (every output written, so every written profile is in the store):
    /// forgets idle users (once an event-time hour) and bounds each scenario's users. Without
    /// read-back, idle users are forgotten in [`Self::advance`] as before.
    pub fn make_room(&mut self) {
        let Some(rb) = self.read_back else { return };
        for s in self.scenarios.values_mut() {
            let hour = s.max_ts.div_euclid(3_600_000);
            if s.max_ts != i64::MIN && hour != s.last_eviction_hour {
                s.last_eviction_hour = hour;
                self.counters.evicted_idle += s.evict_idle(s.max_ts, self.idle_ms) as u64;
            }
            self.counters.evicted_memory += s.evict_least_recent(rb.max_users) as u64;
        }
    }

    /// Installs what the store returned for `user` of `key`: its profile hash (empty when it
    /// has none), or `None` when the store did not answer in time. A user without a usable
    /// profile starts empty, as a new user does.
    pub fn install(&mut self, key: &ScenarioKey, user: &str, fetched: Option<&HashMap<String, String>>) {
        let Some(fields) = fetched else {
            self.counters.read_back_failed += 1;
            return;
        };
        let stored = match parse_stored_profile(fields) {
            Ok(Some(stored)) => stored,
            Ok(None) => {
                self.counters.read_back_absent += 1;
                return;
            }
            Err(e) => {
                self.counters.read_back_invalid += 1;
                tracing::warn!(scenario = %key, user = %crate::text::cap_text(user, 128), error = %e, "stored profile ignored; the user starts empty");
                return;
            }
        };
        if let Some(s) = self.scenarios.get_mut(&key.tenant_id, &key.scenario_id)
            && s.install(user, stored, &self.source)
        {
            self.counters.read_back += 1;
        }
    }

    /// New behaviour weights and half-life apply to events after the change; state is kept.
    pub fn apply_config(&mut self, key: &ScenarioKey, cfg: Option<Arc<ScenarioConfig>>) {
        match cfg.filter(|c| c.status == ScenarioStatus::Active && c.user_profile.enabled) {
            Some(cfg) => self.scenarios.upsert(
                key,
                |s| {
                    s.plugins.apply(&cfg, s.flushed_through);
                    if cfg.candidate.as_ref().and_then(|c| c.profile_plugin()) != s.plugins.shadow.as_ref().map(|(r, _)| r) {
                        s.shadow = ProfileShadowStats::default();
                    }
                    s.set_config(cfg.clone());
                },
                || ScenarioProfiles::new(cfg.clone(), self.encode),
            ),
            None => self.scenarios.remove(key),
        }
    }

    /// One look-ahead stage for event `ev`, [`LookAhead::distance`] events before it is
    /// processed: each stage loads what the one before made cheap to find.
    pub fn prefetch(&self, ev: &Event<'_>, route: Route, stage: LookAhead) {
        let Some(s) = self.scenarios.get_routed(route, &ev.tenant_id, &ev.scenario_id) else { return };
        match stage {
            LookAhead::Hint => s.users.prefetch_hint(&ev.user_id),
            LookAhead::Slot => s.users.prefetch_slot(&ev.user_id),
            LookAhead::Recent => s.users.prefetch_recent(&ev.user_id),
        }
    }

    /// Adds one event to its user's profile; `pos` is its input position (Kafka), if any.
    pub fn on_event(&mut self, ev: &Event<'_>, pos: Option<Position>) -> Routed {
        self.on_routed_event(ev, Route::of(&ev.tenant_id, &ev.scenario_id), pos)
    }

    /// [`Self::on_event`] with the event's [`Route`] computed once for every job.
    pub fn on_routed_event(&mut self, ev: &Event<'_>, route: Route, pos: Option<Position>) -> Routed {
        match self.scenarios.get_mut_routed(route, &ev.tenant_id, &ev.scenario_id) {
            Some(s) => s.on_event(ev, pos),
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

    /// Whether any scenario keeps profiles here (else there is nothing to prefetch).
    pub fn is_empty(&self) -> bool {
        self.scenarios.is_empty()
    }

    /// Writes every user of `tenant` whose timer its watermark has passed.
    pub fn advance(&mut self, tenant: &str, watermark: i64, out: &mut Vec<Output>) {
        for s in self.scenarios.tenant_values_mut(tenant) {
            s.flush_due(watermark, &self.source, out);
            // Idle users are few and the horizon is days: scanning once an event-time hour
            // keeps the scan off the per-event cost. With read-back, users are forgotten only
            // at batch boundaries (`make_room`), never between a batch's read-back and its events.
            let hour = watermark.div_euclid(3_600_000);
            if self.read_back.is_none() && hour != s.last_eviction_hour {
                s.last_eviction_hour = hour;
                self.counters.evicted_idle += s.evict_idle(watermark, self.idle_ms) as u64;
            }
        }
    }

    /// End of a finite input: writes every user with unwritten events.
    pub fn finish(&mut self, out: &mut Vec<Output>) {
        for s in self.scenarios.values_mut() {
            s.flush_due(i64::MAX, &self.source, out);
        }
    }

    /// (users held, approximate bytes of their state) over all scenarios.
    /// A copy of the scenario's profile state, if it has a profile config.
    pub fn export_state(&self, key: &ScenarioKey) -> Option<ProfileState> {
        let s = self.scenario(key)?;
        Some(ProfileState {
            users: s.users.to_map(),
            timers: s.timers_by_due(),
            max_ts: s.max_ts,
            last_eviction_hour: s.last_eviction_hour,
        })
    }

    /// Replaces the scenario's profile state (`None`: empty). False when it has no config here.
    pub fn restore_state(&mut self, key: &ScenarioKey, state: Option<ProfileState>) -> bool {
        let Some(s) = self.scenarios.get_mut(&key.tenant_id, &key.scenario_id) else { return false };
        let state = state.unwrap_or(ProfileState { max_ts: i64::MIN, last_eviction_hour: i64::MIN, ..ProfileState::default() });
        let mut users = state.users;
        users.values_mut().for_each(UserState::sort_counts);
        s.users = Users::from_map(users);
        s.bytes = s.users.walked_bytes();
        s.timers.clear();
        for (due, names) in state.timers {
            for name in names {
                if let Some(id) = s.users.find(&name) {
                    s.schedule(due, id);
                }
            }
        }
        s.max_ts = state.max_ts;
        s.last_eviction_hour = state.last_eviction_hour;
        true
    }

    /// Events skipped over all scenarios because a profile read back already held them.
    pub fn replayed(&self) -> u64 {
        self.scenarios.values().map(|s| s.replayed).sum()
    }

    pub fn totals(&self) -> (usize, usize) {
        self.scenarios.values().fold((0, 0), |(u, b), s| (u + s.user_count(), b + s.state_bytes()))
    }

    pub fn scenario(&self, key: &ScenarioKey) -> Option<&ScenarioProfiles> {
        self.scenarios.get(&key.tenant_id, &key.scenario_id)
    }

    pub fn scenario_mut(&mut self, key: &ScenarioKey) -> Option<&mut ScenarioProfiles> {
        self.scenarios.get_mut(&key.tenant_id, &key.scenario_id)
    }

    pub fn scenarios(&self) -> impl Iterator<Item = &ScenarioProfiles> {
        self.scenarios.values()
    }

    pub fn scenarios_mut(&mut self) -> impl Iterator<Item = &mut ScenarioProfiles> {
        self.scenarios.values_mut()
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

    #[test]
    fn users_are_found_by_name_whatever_their_hints_hold() {
        // Direct-mapped hints collide, go stale when users are forgotten and their ids reused,
        // and are rebuilt as the users grow: a find must still give exactly the named user.
        let mut users = Users::default();
        let mut held: HashMap<String, u32> = HashMap::new();
        for round in 0..4u32 {
            for k in 0..3000u32 {
                let name = format!("u{}", k * 7 + round);
                if !held.contains_key(&name) {
                    held.insert(name.clone(), users.insert(&name, UserState::default()));
                }
            }
            // Forget every third held user (their ids are reused next round).
            let gone: Vec<String> = held.keys().filter(|n| n.len() % 3 == round as usize % 3).cloned().collect();
            for name in &gone {
                let id = held.remove(name).unwrap();
                assert_eq!(users.remove(id).unwrap().0.as_str(), name);
                assert_eq!(users.find(name), None, "{name} forgotten");
            }
            // Every hint can also be pointed at the wrong user: finds still check the name.
            let first = *held.values().next().unwrap();
            let saved = std::mem::replace(&mut users.hints, vec![first; 1024]);
            for (name, &id) in &held {
                assert_eq!(users.find(name), Some(id));
            }
            users.hints = saved;
            for (name, &id) in &held {
                assert_eq!(users.find_and_hint(name), Some(id));
                assert_eq!(users.find(name), Some(id));
            }
            assert_eq!(users.find("nobody"), None);
            assert!(users.hints.len() >= HINTS_PER_USER * users.slots.len());
        }
    }

    fn line(user: &str, item: &str, action: &str, ts: i64, extra: &str) -> String {
        format!(r#"{{"tenant_id":"t","scenario_id":"s","user_id":"{user}","item_id":"{item}","action":"{action}","ts":{ts}{extra}}}"#)
    }

    fn feed(j: &mut ProfileJob, lines: &[String]) -> Vec<UserProfile> {
        let mut out = Vec::new();
        for l in lines {
            let ev = parse_event(l.as_bytes()).unwrap();
            assert_eq!(j.on_event(&ev, None), Routed::Counted);
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
        // Full lists hold no spare slots beyond an event's worth (one category here).
        let users = &j.scenario(&ScenarioKey::new("t", "s")).unwrap().users;
        assert!(users.values().all(|u| u.recent.capacity() == MAX_RECENT_ITEMS));
        assert!(users.values().all(|u| u.interests.capacity() == MAX_INTERESTS + 1));
    }

    #[test]
    fn the_memory_bound_forgets_the_least_recent_written_users_and_keeps_unwritten_ones() {
        let (mut j, cfg) = job(60, 30.0);
        j.enable_read_back("events", 10);
        let mut out = Vec::new();
        for k in 0..30 {
            let ev = line(&format!("u{k:02}"), "i", "view", T0 + k * 60_000, "");
            j.on_event(&parse_event(ev.as_bytes()).unwrap(), None);
        }
        // Everyone but the last five is written.
        j.advance("t", T0 + 25 * 60_000 - 1, &mut out);
        j.make_room();
        let s = j.scenario(&cfg.key).unwrap();
        let mut held: Vec<&str> = s.users.keys().map(|k| &**k).collect();
        held.sort();
        // Down to 9 (a tenth of the bound freed): the five unwritten ones and the four most recent written.
        assert_eq!(held, ["u21", "u22", "u23", "u24", "u25", "u26", "u27", "u28", "u29"]);
        assert_eq!(j.counters.evicted_memory, 21);
        j.make_room();
        assert_eq!(j.counters.evicted_memory, 21, "within the bound nothing more goes");
    }

    #[test]
    fn without_read_back_nothing_is_bounded_and_replays_are_not_skipped() {
        let (mut j, cfg) = job(60, 30.0);
        for k in 0..30 {
            let ev = line(&format!("u{k}"), "i", "view", T0 + k, "");
            let pos = Position { partition: 0, offset: 7 };
            j.on_event(&parse_event(ev.as_bytes()).unwrap(), Some(pos));
        }
        j.make_room();
        assert_eq!(j.scenario(&cfg.key).unwrap().user_count(), 30);
        assert_eq!(j.replayed(), 0, "an in-memory user's offsets guard nothing but read-backs");
    }

    /// A profile job whose scenario references a profile plugin (never loaded here: tests call
    /// `flush_due_with` with their own update).
    fn plugin_job(freq_min: i64) -> (ProfileJob, Arc<ScenarioConfig>) {
        let doc = serde_json::json!({"tenant_id": "t", "scenario_id": "s", "revision": 2, "config": {"realtime_compute": {"user_profile": {
            "update_frequency_minutes": freq_min, "interest_decay_days": 1.0,
            "behavior_weights": {"view": 1.0, "like": 3.0}, "plugin": {"name": "p", "version": "1.0.0"}}}}});
        let cfg = Arc::new(parse_scenario(&doc).unwrap());
        let mut j = ProfileJob::new(30 * DAY);
        j.apply_config(&cfg.key, Some(cfg.clone()));
        (j, cfg)
    }

    fn push(j: &mut ProfileJob, l: &str) {
        assert_eq!(j.on_event(&parse_event(l.as_bytes()).unwrap(), None), Routed::Counted);
    }

    /// Flushes through `update`, returning the profiles written.
    fn flush(j: &mut ProfileJob, now: i64, update: &mut UpdateFn<'_>) -> Vec<UserProfile> {
        let mut out = Vec::new();
        let source = j.source.clone();
        let key = ScenarioKey::new("t", "s");
        j.scenarios.get_mut(&key.tenant_id, &key.scenario_id).unwrap().flush_due_with(now, &source, &mut out, update);
        out.into_iter().filter_map(|o| if let Output::Profile(p) = o { Some(p) } else { None }).collect()
    }

    fn names(p: &UserProfile) -> Vec<(&str, f64)> {
        p.interests.iter().map(|i| (&*i.name, i.score)).collect()
    }

    #[test]
    fn a_profile_plugin_gets_the_last_written_interests_and_the_events_since_and_replaces_them() {
        let (mut j, _) = plugin_job(5);
        push(&mut j, &line("u1", "i1", "view", T0, r#","category":"shoes","tags":["red"],"watch_time_ms":1500"#));
        let seen: std::cell::RefCell<Vec<ProfileInput>> = Default::default();
        let mut plugin = |_: &mut JobPlugin, input: &ProfileInput| {
            seen.borrow_mut().push(input.clone());
            Some(Ok(input.users.iter().map(|u| vec![(format!("n{}", u.events.len()), 5.0)]).collect()))
        };
        let first = flush(&mut j, T0, &mut plugin);
        assert_eq!(names(&first[0]), [("n1", 5.0)], "the plugin's interests are written");
        let input = seen.borrow()[0].clone();
        assert_eq!((input.tenant_id.as_str(), input.scenario_id.as_str(), input.interest_decay_days), ("t", "s", 1.0));
        assert_eq!((input.actions.clone(), input.weights.clone()), (vec!["like".to_string(), "view".to_string()], vec![3.0, 1.0]));
        let u = &input.users[0];
        assert_eq!((u.user_id.as_str(), u.interests.len(), u.update_ms), ("u1", 0, T0), "a new user has no interests");
        let e = &u.events[0];
        assert_eq!((e.item_id.as_str(), e.action.as_str(), e.ts_ms), ("i1", "view", T0));
        assert_eq!((e.category.as_deref(), e.tags.clone(), e.watch_time_ms), (Some("shoes"), vec!["red".to_string()], Some(1500.0)));

        // The next period: the base is what was written, the events are only the new ones, oldest first.
        push(&mut j, &line("u1", "i3", "like", T0 + 3 * 60_000, ""));
        push(&mut j, &line("u1", "i2", "view", T0 + 2 * 60_000, ""));
        let second = flush(&mut j, T0 + 5 * 60_000, &mut plugin);
        assert_eq!(names(&second[0]), [("n2", 5.0)]);
        let u = seen.borrow()[1].users[0].clone();
        assert_eq!((u.interests_as_of_ms, u.update_ms), (T0, T0 + 5 * 60_000));
        assert_eq!(u.interests.iter().map(|i| (i.name.as_str(), i.score)).collect::<Vec<_>>(), [("n1", 5.0)]);
        assert_eq!(u.events.iter().map(|e| e.ts_ms).collect::<Vec<_>>(), [T0 + 2 * 60_000, T0 + 3 * 60_000]);
        let s = j.scenario(&ScenarioKey::new("t", "s")).unwrap();
        assert_eq!((s.plugin_writes, s.plugin_fallback_writes), (2, 0));
    }

    #[test]
    fn a_failed_plugin_call_writes_the_built_in_interests_and_the_next_base_is_what_was_written() {
        let (mut j, _) = plugin_job(5);
        let (mut plain, _) = job(5, 1.0);
        let events = [line("u1", "i1", "view", T0, r#","category":"shoes""#), line("u1", "i2", "like", T0 + 60_000, r#","tags":["red"]"#)];
        for l in &events {
            push(&mut j, l);
            push(&mut plain, l);
        }
        let failed = flush(&mut j, T0 + 60_000, &mut |_, _| Some(Err(PluginError::Guest("boom".into()))));
        let mut out = Vec::new();
        plain.advance("t", T0 + 60_000, &mut out);
        let Some(Output::Profile(built_in)) = out.into_iter().next() else { panic!("no built-in profile") };
        assert_eq!(failed[0].interests, built_in.interests, "the built-in update is the fallback");
        push(&mut j, &line("u1", "i3", "view", T0 + 10 * 60_000, ""));
        let mut base = Vec::new();
        flush(&mut j, i64::MAX, &mut |_, input| {
            base = input.users[0].interests.iter().map(|i| (i.name.clone(), i.score)).collect();
            Some(Ok(vec![vec![]]))
        });
        let written: Vec<(String, f64)> = failed[0].interests.iter().map(|i| (i.name.to_string(), i.score)).collect();
        assert_eq!(base, written);
        let s = j.scenario(&ScenarioKey::new("t", "s")).unwrap();
        assert_eq!((s.plugin_writes, s.plugin_fallback_writes), (1, 1));
    }

    #[test]
    fn due_users_go_to_the_plugin_in_bounded_batches_and_incomplete_inputs_take_the_built_in_path() {
        let (mut j, _) = plugin_job(5);
        let n = MAX_PLUGIN_USERS + 44;
        for k in 0..n {
            push(&mut j, &line(&format!("u{k}"), "i", "view", T0, r#","category":"c""#));
        }
        // One user with more events than its plugin input keeps.
        for k in 0..=MAX_PLUGIN_EVENTS as i64 {
            push(&mut j, &line("heavy", "i", "view", T0 + k, r#","category":"h""#));
        }
        let mut sizes = Vec::new();
        let profiles = flush(&mut j, i64::MAX, &mut |_, input| {
            sizes.push(input.users.len());
            Some(Ok(vec![vec![("p".to_string(), 1.0)]; input.users.len()]))
        });
        assert_eq!(sizes, [MAX_PLUGIN_USERS, 44]);
        assert_eq!(profiles.len(), n + 1);
        let heavy = profiles.iter().find(|p| p.user_id == "heavy").unwrap();
        assert_eq!(heavy.interests.len(), 1);
        assert_eq!(&*heavy.interests[0].name, "h", "built-in interests for an incomplete input");
        assert!(profiles.iter().filter(|p| p.user_id != "heavy").all(|p| names(p) == [("p", 1.0)]));
        // No plugin active: the built-in interests, and the plugin is asked once, not per batch.
        for k in 0..n {
            push(&mut j, &line(&format!("u{k}"), "i", "view", T0 + DAY, r#","category":"c""#));
        }
        let mut asked = 0;
        let profiles = flush(&mut j, i64::MAX, &mut |_, _| {
            asked += 1;
            None
        });
        assert_eq!(asked, 1);
        assert!(profiles.iter().all(|p| p.interests.iter().any(|i| &*i.name == "c")), "built-in interests");
    }

    /// A profile job whose document is `doc` with the plugin settings of [`plugin_job`].
    fn job_of(doc: serde_json::Value) -> (ProfileJob, ScenarioKey) {
        let cfg = Arc::new(parse_scenario(&doc).unwrap());
        let mut j = ProfileJob::new(30 * DAY);
        j.apply_config(&cfg.key, Some(cfg.clone()));
        (j, cfg.key.clone())
    }

    fn plugin_doc(revision: i64, plugin: &str) -> serde_json::Value {
        serde_json::json!({"tenant_id": "t", "scenario_id": "s", "revision": revision, "config": {"realtime_compute": {"user_profile": {
            "update_frequency_minutes": 5, "interest_decay_days": 1.0,
            "behavior_weights": {"view": 1.0}, "plugin": {"name": plugin, "version": "1.0.0"}}}}})
    }

    /// A stand-in for every lane: each returns its label (set with `set_loading`) as the one interest.
    fn by_label(p: &mut JobPlugin, input: &ProfileInput) -> Option<Result<Vec<ProfileInterests>, PluginError>> {
        let label = p.state().to_string();
        Some(Ok(input.users.iter().map(|_| vec![(label.clone(), 1.0)]).collect()))
    }

    #[test]
    fn a_profile_candidate_sees_the_live_input_and_only_its_agreement_is_kept() {
        let mut doc = plugin_doc(1, "live");
        doc["candidate"] = serde_json::json!({"user_profile": {"plugin": {"name": "cand", "version": "1.0.0"}}});
        let (mut j, key) = job_of(doc);
        let s = j.scenario_mut(&key).unwrap();
        s.plugins.live.set_loading("live");
        s.plugins.shadow.as_mut().unwrap().1.set_loading("cand");
        push(&mut j, &line("u1", "i1", "view", T0, r#","category":"c""#));
        push(&mut j, &line("u2", "i1", "view", T0, r#","category":"c""#));
        let mut inputs: Vec<(String, ProfileInput)> = Vec::new();
        let written = flush(&mut j, T0, &mut |p, input| {
            inputs.push((p.state().to_string(), input.clone()));
            by_label(p, input)
        });
        assert!(written.iter().all(|p| names(p) == [("loading live", 1.0)]), "only the live plugin's interests are written");
        assert_eq!(inputs.len(), 2);
        assert_eq!(format!("{:?}", inputs[0].1), format!("{:?}", inputs[1].1), "the candidate gets exactly the live input");
        let s = j.scenario(&key).unwrap();
        assert_eq!((s.shadow.users, s.shadow.overlap_at_k), (2, Some(0.0)), "no interest in common");
        assert_eq!((s.plugin_writes, s.plugin_fallback_writes), (2, 0));
    }

    #[test]
    fn a_waiting_profile_plugin_takes_over_at_its_effective_time_whatever_the_flushes() {
        let run = |flushes: &[i64]| {
            let (mut j, key) = job_of(plugin_doc(1, "a"));
            j.scenario_mut(&key).unwrap().plugins.live.set_loading("a");
            let mut next = plugin_doc(2, "b");
            next["effective_from_window_end"] = (T0 + 10 * 60_000).into();
            j.apply_config(&key, Some(Arc::new(parse_scenario(&next).unwrap())));
            j.scenario_mut(&key).unwrap().plugins.pending.as_mut().expect("b waits, prepared ahead").1.set_loading("b");
            for (k, ts) in [0, 8, 9, 12, 14].iter().enumerate() {
                push(&mut j, &line(&format!("u{k}"), "i", "view", T0 + ts * 60_000, ""));
            }
            let mut written = Vec::new();
            for &f in flushes {
                written.extend(flush(&mut j, f, &mut by_label));
            }
            written.sort_by(|a, b| a.user_id.cmp(&b.user_id));
            written.iter().map(|p| (p.user_id.clone(), p.interests[0].name.to_string())).collect::<Vec<_>>()
        };
        let at_once = run(&[i64::MAX]);
        let by_minute: Vec<i64> = (0..20).map(|m| T0 + m * 60_000).chain([i64::MAX]).collect();
        assert_eq!(at_once, run(&by_minute));
        let plugin_of: Vec<&str> = at_once.iter().map(|(_, p)| p.as_str()).collect();
        assert_eq!(plugin_of, ["loading a", "loading a", "loading a", "loading b", "loading b"]);
    }

    /// Events of `users` users over `minutes` minutes: many interests (more than are
    /// written), recent items beyond the cap, several actions, input positions.
    fn varied_events(users: usize, minutes: i64) -> Vec<(String, Position)> {
        let actions = ["view", "like", "click", "purchase", "add_to_cart"];
        (0..users * minutes as usize)
            .map(|k| {
                let (u, m) = (k % users, (k / users) as i64);
                let extra = format!(r#","category":"c{}","tags":["t{}","t\"é{}"]"#, k % 29, k % 31, k % 7);
                let ts = T0 + m * 60_000 + (k as i64 * 7919) % 50_000;
                let pos = Position { partition: (k % 3) as i32, offset: k as i64 };
                (line(&format!("u{u}"), &format!("i{}", k % 97), actions[k % actions.len()], ts, &extra), pos)
            })
            .collect()
    }

    #[test]
    fn encoded_profiles_are_the_structured_ones_serialized() {
        let ((mut plain, _), (mut encoded, _)) = (job(5, 30.0), job(5, 30.0));
        encoded.encode_outputs(true);
        for j in [&mut plain, &mut encoded] {
            j.enable_read_back("events", 1_000);
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for (l, pos) in varied_events(40, 90) {
            let ev = parse_event(l.as_bytes()).unwrap();
            plain.on_event(&ev, Some(pos));
            encoded.on_event(&ev, Some(pos));
            plain.advance("t", ev.ts - 1_000, &mut a);
            encoded.advance("t", ev.ts - 1_000, &mut b);
        }
        plain.finish(&mut a);
        encoded.finish(&mut b);
        assert_eq!(a.len(), b.len());
        assert!(a.len() > 40 * 15, "{} writes", a.len());
        let mut more = 0;
        for (a, b) in a.iter().zip(&b) {
            let (Output::Profile(p), Output::EncodedProfile(e)) = (a, b) else { panic!("{a:?} / {b:?}") };
            more += usize::from(!p.resume.more_interests.is_empty());
            assert_eq!(String::from_utf8_lossy(e.jsonl_line()), serde_json::to_string(&crate::output::ProfileRecord::from(p)).unwrap());
            let want = crate::output::stored_profile::profile_fields(p);
            let got: Vec<(&str, String)> = e.redis_fields().iter().map(|(k, v)| (*k, String::from_utf8_lossy(v).into_owned())).collect();
            assert_eq!(got, want.to_vec());
            assert_eq!((e.user_id(), &e.key, e.interest_decay_days), (p.user_id.as_str(), &p.key, p.interest_decay_days));
        }
        assert!(more > 0, "some profiles carry interests beyond the written ones");
    }

    #[test]
    fn the_state_size_is_kept_as_it_changes() {
        let check = |j: &ProfileJob, key: &ScenarioKey| {
            let s = j.scenario(key).unwrap();
            assert_eq!(s.state_bytes(), s.users.walked_bytes());
        };
        // Built-in, then with a plugin referenced (events kept for it, its interests installed).
        let (mut j, cfg) = job(5, 30.0);
        j.enable_read_back("events", 25);
        let mut out = Vec::new();
        for (k, (l, pos)) in varied_events(30, 40).into_iter().enumerate() {
            let ev = parse_event(l.as_bytes()).unwrap();
            j.on_event(&ev, Some(pos));
            j.advance("t", ev.ts, &mut out);
            if k % 97 == 0 {
                j.make_room();
                check(&j, &cfg.key);
            }
        }
        check(&j, &cfg.key);
        assert!(j.counters.evicted_memory > 0);
        let stored = parse_stored_profile(
            &crate::output::stored_profile::profile_fields(&match out.last() {
                Some(Output::Profile(p)) => p.clone(),
                other => panic!("{other:?}"),
            })
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        )
        .unwrap()
        .unwrap();
        j.scenario_mut(&cfg.key).unwrap().install("returning", stored, "events");
        check(&j, &cfg.key);
        let state = j.export_state(&cfg.key);
        j.restore_state(&cfg.key, state);
        check(&j, &cfg.key);

        let (mut j, _) = plugin_job(5);
        let key = ScenarioKey::new("t", "s");
        for (l, _) in varied_events(20, 30) {
            push(&mut j, &l);
        }
        check(&j, &key);
        flush(&mut j, T0 + 10 * 60_000, &mut |_, input| Some(Ok(input.users.iter().map(|_| vec![("p".to_string(), 1.0)]).collect())));
        check(&j, &key);
        flush(&mut j, i64::MAX, &mut |_, _| None);
        check(&j, &key);
    }

    #[test]
    fn a_snapshot_keeps_the_timers_and_their_order() {
        let (mut j, cfg) = job(5, 30.0);
        let mut out = Vec::new();
        for (l, _) in varied_events(25, 12) {
            let ev = parse_event(l.as_bytes()).unwrap();
            j.on_event(&ev, None);
            j.advance("t", ev.ts - 120_000, &mut out);
        }
        let state = j.export_state(&cfg.key);
        let (mut restored, _) = job(5, 30.0);
        restored.restore_state(&cfg.key, state.clone());
        assert_eq!(format!("{:?}", restored.export_state(&cfg.key).map(|s| s.timers)), format!("{:?}", state.map(|s| s.timers)));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        j.finish(&mut a);
        restored.finish(&mut b);
        assert!(!a.is_empty());
        assert_eq!(a, b, "the same writes, in the same order");
    }

    /// `UserState` as snapshots held it before its lists were kept in place: the same bytes.
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct UserStateBefore {
        interests: Vec<(Arc<str>, f64)>,
        as_of: i64,
        recent: VecDeque<RecentItem>,
        counts: Vec<(Arc<str>, u64)>,
        last_event: i64,
        last_write: Option<i64>,
        due: Option<i64>,
    }

    #[test]
    fn a_user_state_snapshots_as_before() {
        let (mut j, cfg) = job(5, 30.0);
        for (l, _) in varied_events(1, 30) {
            push(&mut j, &l);
        }
        let s = j.scenario(&cfg.key).unwrap();
        let state = s.users.values().next().unwrap().clone();
        assert!(state.interests.len() > 6 && state.recent.len() == MAX_RECENT_ITEMS && state.counts.len() > 1);
        let before = UserStateBefore {
            interests: state.interests.to_vec(),
            as_of: state.as_of,
            recent: state
                .recent
                .iter()
                .map(|r| RecentItem { item_id: r.item_id.as_str().into(), action: r.action.clone(), ts: r.ts })
                .collect(),
            counts: state.counts.to_vec(),
            last_event: state.last_event,
            last_write: state.last_write,
            due: state.due,
        };
        let cfg = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(&state, cfg).unwrap();
        assert_eq!(bytes, bincode::serde::encode_to_vec(&before, cfg).unwrap());
        let (back, _): (UserState, usize) = bincode::serde::decode_from_slice(&bytes, cfg).unwrap();
        assert_eq!(back, UserState { covered: Vec::new(), since_write: None, ..state });
    }
}
