//! Profile plugins (WIT world `profile`): write a [`Profiler`] in plain Rust, export it with
//! [`export_profiler!`](crate::export_profiler), test it natively with [`ProfileBatchBuilder`].
//!
//! The host calls a profile plugin when users' profiles are due to be written (at most every
//! `update_frequency_minutes` of event time per user), with each user's interests as last
//! written and the events since; the interests it returns replace the user's.
//!
//! ```
//! use rtscore_guest::NoParams;
//! use rtscore_guest::profile::{Interest, ProfileBatchBuilder, Profiler, Scenario, User, event};
//!
//! /// Counts weighted events per category, forgetting nothing.
//! pub struct CategoryCount;
//!
//! impl Profiler for CategoryCount {
//!     type Params = NoParams;
//!     fn new(_: NoParams) -> Result<Self, String> {
//!         Ok(Self)
//!     }
//!     fn update(&self, scenario: &Scenario<'_>, user: &User<'_>, out: &mut Vec<Interest>) -> Result<(), String> {
//!         out.extend(user.interests().iter().cloned());
//!         for e in user.events() {
//!             if let Some(c) = &e.category {
//!                 rtscore_guest::profile::add(out, c, scenario.weight(&e.action));
//!             }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let batch = ProfileBatchBuilder::new()
//!     .weight("view", 1.0)
//!     .interest("u1", "shoes", 2.0)
//!     .event("u1", rtscore_guest::profile::ProfileEvent { category: Some("shoes".into()), ..event("i1", "view", 0) })
//!     .build();
//! let got = batch.run::<CategoryCount>("null").unwrap();
//! assert_eq!(got[0][0].score, 3.0);
//! // In the plugin crate: rtscore_guest::export_profiler!(CategoryCount);
//! ```

use serde::de::DeserializeOwned;

/// Generated from `wit/scoring.wit` (world `profile`). Plugin authors never need it directly.
#[doc(hidden)]
#[allow(clippy::too_many_arguments, reason = "generated: the export's lifted batch arrives as flat arguments")]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "profile",
        pub_export_macro: true,
        export_macro_name: "__export_profile_world",
        default_bindings_module: "rtscore_guest::profile::bindings",
        runtime_path: "rtscore_guest::__private::wit_bindgen::rt",
        additional_derives: [PartialEq],
    });
}

/// The batch exactly as it crosses the component boundary (WIT `profile-batch`). Read it
/// through [`Scenario`] and [`User`]; build one in tests with [`ProfileBatchBuilder`].
pub use bindings::rtscore::scoring::types::ProfileBatch as RawProfileBatch;

/// One user of a batch as it crosses the component boundary (WIT `user-update`).
pub use bindings::rtscore::scoring::types::UserUpdate as RawUserUpdate;

/// One interest (WIT `interest`) and one event since the user's last write (WIT `profile-event`).
pub use bindings::rtscore::scoring::types::{Interest, ProfileEvent};

/// Interests the host keeps per user: [`run_profiler`] keeps the strongest this many.
pub const MAX_INTERESTS: usize = 32;
/// Longest interest name the host accepts, in bytes.
pub const MAX_INTEREST_NAME: usize = 128;
const MS_PER_DAY: f64 = 86_400_000.0;

/// A user-profile formula. One value is built per plugin instance from the scenario's
/// `user_profile.plugin.params`, then updates every batch of users of that scenario.
pub trait Profiler: Sized + 'static {
    /// Parameters, deserialized from `user_profile.plugin.params` (absent or `null`: the default).
    type Params: DeserializeOwned + Default;

    /// Validates the parameters; an `Err` rejects the scenario's reference.
    fn new(params: Self::Params) -> Result<Self, String>;

    /// Pushes `user`'s new interests as of [`User::update_ms`] into `out` (empty on entry);
    /// they replace the user's interests. Names are 1..=128 bytes and appear once, scores are
    /// finite and >= 0; the strongest [`MAX_INTERESTS`] are kept. Anything else, or an `Err`,
    /// makes the host keep its built-in interests for the whole batch.
    fn update(&self, scenario: &Scenario<'_>, user: &User<'_>, out: &mut Vec<Interest>) -> Result<(), String>;
}

/// The scenario's side of a batch: its ids and `user_profile` settings.
#[derive(Debug, Clone, Copy)]
pub struct Scenario<'a> {
    raw: &'a RawProfileBatch,
}

impl<'a> Scenario<'a> {
    /// Checks the column lengths.
    pub fn new(raw: &'a RawProfileBatch) -> Result<Self, String> {
        if raw.actions.len() != raw.weights.len() {
            return Err(format!("{} actions but {} weights", raw.actions.len(), raw.weights.len()));
        }
        Ok(Self { raw })
    }

    /// The raw record.
    pub fn raw(&self) -> &'a RawProfileBatch {
        self.raw
    }

    /// The tenant and scenario ids.
    pub fn ids(&self) -> (&'a str, &'a str) {
        (&self.raw.tenant_id, &self.raw.scenario_id)
    }

    /// The scenario's `behavior_weights` entry for `action` (0 when it has none).
    pub fn weight(&self, action: &str) -> f64 {
        self.raw.actions.iter().position(|a| a == action).map_or(0.0, |k| self.raw.weights[k])
    }

    /// `interest_decay_days`, the interests' half-life.
    pub fn half_life_days(&self) -> f64 {
        self.raw.interest_decay_days
    }

    /// The factor a score at `from_ms` keeps at `to_ms` under the half-life (1 when
    /// `to_ms <= from_ms`), computed as the host's built-in update does.
    pub fn decay(&self, from_ms: i64, to_ms: i64) -> f64 {
        let dt = (to_ms - from_ms).max(0) as f64;
        (-dt / (self.raw.interest_decay_days * MS_PER_DAY) * std::f64::consts::LN_2).exp()
    }

    /// The users of the batch, in batch order.
    pub fn users(&self) -> impl Iterator<Item = User<'a>> + 'a {
        self.raw.users.iter().map(|raw| User { raw })
    }
}

/// One user due to be written.
#[derive(Debug, Clone, Copy)]
pub struct User<'a> {
    raw: &'a RawUserUpdate,
}

impl<'a> User<'a> {
    /// The user's id.
    pub fn id(&self) -> &'a str {
        &self.raw.user_id
    }

    /// The interests as of [`Self::interests_as_of_ms`] (as last written), strongest first.
    pub fn interests(&self) -> &'a [Interest] {
        &self.raw.interests
    }

    /// When [`Self::interests`] were computed, epoch ms.
    pub fn interests_as_of_ms(&self) -> i64 {
        self.raw.interests_as_of_ms
    }

    /// The time the new interests are as of, epoch ms (>= every event's time).
    pub fn update_ms(&self) -> i64 {
        self.raw.update_ms
    }

    /// The events since the last write, oldest first.
    pub fn events(&self) -> &'a [ProfileEvent] {
        &self.raw.events
    }
}

/// Adds `score` to the interest `name` in `interests`, or appends it.
pub fn add(interests: &mut Vec<Interest>, name: &str, score: f64) {
    match interests.iter_mut().find(|i| i.name == name) {
        Some(i) => i.score += score,
        None => interests.push(Interest { name: name.to_string(), score }),
    }
}

/// Builds a profile plugin from params JSON, as the host's `configure` call does.
pub fn build_profiler<P: Profiler>(params_json: &str) -> Result<P, String> {
    P::new(crate::parse_params(params_json)?)
}

/// Runs a profile plugin on a raw batch, as the host's `update-profiles` call does: one list
/// per user, strongest first, at most [`MAX_INTERESTS`].
pub fn run_profiler<P: Profiler>(plugin: &P, raw: &RawProfileBatch) -> Result<Vec<Vec<Interest>>, String> {
    let scenario = Scenario::new(raw)?;
    let mut all = Vec::with_capacity(raw.users.len());
    for user in scenario.users() {
        let mut out = Vec::new();
        plugin.update(&scenario, &user, &mut out)?;
        out.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.name.cmp(&b.name)));
        out.truncate(MAX_INTERESTS);
        all.push(out);
    }
    Ok(all)
}

/// An event of `item` and `action` at `ts_ms`, without category, tags or watch time; fill
/// those with struct update syntax.
pub fn event(item: &str, action: &str, ts_ms: i64) -> ProfileEvent {
    ProfileEvent { item_id: item.into(), action: action.into(), ts_ms, category: None, tags: Vec::new(), watch_time_ms: None }
}

/// Builds a [`RawProfileBatch`] the way the host does: actions in name order, users in the
/// order first named, events oldest first.
#[derive(Debug, Clone)]
pub struct ProfileBatchBuilder {
    weights: Vec<(String, f64)>,
    half_life_days: f64,
    update_ms: i64,
    users: Vec<RawUserUpdate>,
}

impl Default for ProfileBatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ProfileBatchBuilder {
    /// No weights, a 30-day half-life, users updated at [`crate::testing::DEFAULT_WINDOW_END_MS`]
    /// with interests as of the same time.
    pub fn new() -> Self {
        Self { weights: Vec::new(), half_life_days: 30.0, update_ms: crate::testing::DEFAULT_WINDOW_END_MS, users: Vec::new() }
    }

    /// The weight of `action` (`behavior_weights`).
    pub fn weight(mut self, action: &str, weight: f64) -> Self {
        self.weights.retain(|(a, _)| a != action);
        self.weights.push((action.into(), weight));
        self
    }

    /// `interest_decay_days`.
    pub fn half_life_days(mut self, days: f64) -> Self {
        self.half_life_days = days;
        self
    }

    /// The update time of the users added after this call.
    pub fn update_ms(mut self, ms: i64) -> Self {
        self.update_ms = ms;
        self
    }

    fn user_mut(&mut self, user: &str) -> &mut RawUserUpdate {
        let k = match self.users.iter().position(|u| u.user_id == user) {
            Some(k) => k,
            None => {
                self.users.push(RawUserUpdate {
                    user_id: user.into(),
                    interests: Vec::new(),
                    interests_as_of_ms: self.update_ms,
                    update_ms: self.update_ms,
                    events: Vec::new(),
                });
                self.users.len() - 1
            }
        };
        &mut self.users[k]
    }

    /// Adds `user` without interests or events.
    pub fn user(mut self, user: &str) -> Self {
        self.user_mut(user);
        self
    }

    /// Gives `user` the interest `name` with `score`.
    pub fn interest(mut self, user: &str, name: &str, score: f64) -> Self {
        self.user_mut(user).interests.push(Interest { name: name.into(), score });
        self
    }

    /// When `user`'s interests were computed.
    pub fn interests_as_of(mut self, user: &str, ms: i64) -> Self {
        self.user_mut(user).interests_as_of_ms = ms;
        self
    }

    /// Adds an event of `user` (see [`event`]).
    pub fn event(mut self, user: &str, e: ProfileEvent) -> Self {
        self.user_mut(user).events.push(e);
        self
    }

    /// The batch record.
    pub fn build(mut self) -> TestProfileBatch {
        self.weights.sort_by(|a, b| a.0.cmp(&b.0));
        for u in &mut self.users {
            u.events.sort_by_key(|e| e.ts_ms);
            u.interests.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.name.cmp(&b.name)));
        }
        TestProfileBatch(RawProfileBatch {
            tenant_id: "t".into(),
            scenario_id: "s".into(),
            actions: self.weights.iter().map(|(a, _)| a.clone()).collect(),
            weights: self.weights.iter().map(|(_, w)| *w).collect(),
            interest_decay_days: self.half_life_days,
            users: self.users,
        })
    }
}

/// A built test batch.
#[derive(Debug, Clone, PartialEq)]
pub struct TestProfileBatch(pub RawProfileBatch);

impl TestProfileBatch {
    /// Configures `P` with `params_json` and runs it on the batch, as the host would.
    pub fn run<P: Profiler>(&self, params_json: &str) -> Result<Vec<Vec<Interest>>, String> {
        run_profiler(&build_profiler::<P>(params_json)?, &self.0)
    }
}

/// Exports a [`Profiler`] as the plugin's component interface (`configure` and
/// `update-profiles` of WIT world `rtscore:scoring/profile`). Use it once, in the plugin
/// crate's `lib.rs`.
#[macro_export]
#[rustfmt::skip]
macro_rules! export_profiler {
    ($profiler:ty) => {
        const _: () = {
            struct __RtscoreProfileExport;

            impl $crate::profile::bindings::Guest for __RtscoreProfileExport {
                fn configure(params_json: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__private::configure_profiler::<$profiler>(&params_json)
                }

                fn update_profiles(
                    batch: $crate::profile::RawProfileBatch,
                ) -> ::std::result::Result<::std::vec::Vec<::std::vec::Vec<$crate::profile::Interest>>, ::std::string::String> {
                    $crate::__private::update_profiles::<$profiler>(&batch)
                }
            }

            $crate::profile::bindings::__export_profile_world!(__RtscoreProfileExport with_types_in $crate::profile::bindings);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_lays_out_the_batch_like_the_host() {
        let b = ProfileBatchBuilder::new()
            .weight("view", 1.0)
            .weight("like", 3.0)
            .half_life_days(2.0)
            .interest("u1", "a", 1.0)
            .interest("u1", "b", 2.0)
            .interests_as_of("u1", 5)
            .event("u1", event("i2", "view", 20))
            .event("u1", event("i1", "like", 10))
            .update_ms(99)
            .user("u2")
            .build();
        let raw = &b.0;
        assert_eq!((raw.actions.clone(), raw.weights.clone()), (vec!["like".to_string(), "view".to_string()], vec![3.0, 1.0]));
        let s = Scenario::new(raw).unwrap();
        assert_eq!((s.weight("like"), s.weight("nope"), s.half_life_days()), (3.0, 0.0, 2.0));
        assert!((s.decay(0, 2 * 86_400_000) - 0.5).abs() < 1e-15);
        assert_eq!(s.decay(10, 5), 1.0);
        let users: Vec<User<'_>> = s.users().collect();
        assert_eq!(users[0].interests()[0].name, "b", "strongest first");
        assert_eq!(users[0].events().iter().map(|e| e.ts_ms).collect::<Vec<_>>(), [10, 20], "oldest first");
        assert_eq!((users[0].interests_as_of_ms(), users[1].update_ms(), users[1].id()), (5, 99, "u2"));
    }

    struct Many;
    impl Profiler for Many {
        type Params = crate::NoParams;
        fn new(_: crate::NoParams) -> Result<Self, String> {
            Ok(Self)
        }
        fn update(&self, _: &Scenario<'_>, _: &User<'_>, out: &mut Vec<Interest>) -> Result<(), String> {
            out.extend((0..40).map(|k| Interest { name: format!("c{k:02}"), score: k as f64 }));
            Ok(())
        }
    }

    #[test]
    fn the_strongest_interests_are_kept() {
        let got = ProfileBatchBuilder::new().user("u").build().run::<Many>("null").unwrap();
        assert_eq!(got[0].len(), MAX_INTERESTS);
        assert_eq!((got[0][0].name.as_str(), got[0][31].name.as_str()), ("c39", "c08"));
    }

    #[test]
    fn malformed_batches_are_refused() {
        let mut raw = ProfileBatchBuilder::new().weight("view", 1.0).build().0;
        raw.weights.push(2.0);
        assert!(Scenario::new(&raw).is_err());
    }
}
