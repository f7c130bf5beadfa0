//! World `profile`: what a profile plugin receives for the users of a scenario due to be
//! written ([`ProfileInput`], the WIT `profile-batch` itself, built once and lowered without a
//! copy) and the checks on what it returns ([`check_profiles`]). Pure data; the call is
//! `PluginInstance::update_profiles`.

use std::collections::HashSet;

use super::bindings::v0_2_profile::rtscore::scoring::types::{
    Interest as WitInterest, ProfileBatch, ProfileEvent as WitProfileEvent, UserUpdate,
};
use super::error::PluginError;

/// Interests a plugin may return per user: the profile job's bound on interests held per user.
pub const MAX_INTERESTS: usize = 32;
/// Longest interest name, in bytes (as event categories and tags).
pub const MAX_INTEREST_NAME: usize = 128;

/// The users of one scenario due to be written, as a profile plugin sees them (WIT `profile-batch`).
pub type ProfileInput = ProfileBatch;
/// One user of a [`ProfileInput`] (WIT `user-update`).
pub type UserInput = UserUpdate;
/// One event of a [`UserInput`] (WIT `profile-event`).
pub type ProfileEventInput = WitProfileEvent;
/// One interest (WIT `interest`).
pub type InterestInput = WitInterest;
/// One user's new interests, checked: (name, score), in the plugin's order.
pub type ProfileInterests = Vec<(String, f64)>;

impl ProfileBatch {
    /// Events over all users: what the call budget counts as items.
    pub fn events(&self) -> usize {
        self.users.iter().map(|u| u.events.len().max(1)).sum()
    }
}

fn valid_name(name: &str) -> bool {
    (1..=MAX_INTEREST_NAME).contains(&name.len()) && !name.chars().any(char::is_control)
}

/// Checks a plugin's interests against its batch: one list per user, at most
/// [`MAX_INTERESTS`] each, names of 1..=[`MAX_INTEREST_NAME`] bytes without control characters
/// and at most once per user, finite scores >= 0. One violation rejects the whole batch (the
/// job keeps the built-in interests for all of its users).
pub fn check_profiles(got: Vec<Vec<WitInterest>>, input: &ProfileInput) -> Result<Vec<ProfileInterests>, PluginError> {
    if got.len() != input.users.len() {
        return Err(PluginError::BadOutput(format!("{} interest lists for {} users", got.len(), input.users.len())));
    }
    let mut out = Vec::with_capacity(got.len());
    for (list, user) in got.into_iter().zip(&input.users) {
        let who = || crate::text::cap_text(&user.user_id, 64);
        if list.len() > MAX_INTERESTS {
            return Err(PluginError::BadOutput(format!("{} interests for user {:?}; at most {MAX_INTERESTS}", list.len(), who())));
        }
        let mut seen: HashSet<&str> = HashSet::with_capacity(list.len());
        for i in &list {
            let shown = || crate::text::cap_text(&i.name, 64);
            if !valid_name(&i.name) {
                return Err(PluginError::BadOutput(format!(
                    "interest name {:?} of user {:?} must be 1..={MAX_INTEREST_NAME} bytes without control characters",
                    shown(),
                    who()
                )));
            }
            if !(i.score.is_finite() && i.score >= 0.0) {
                return Err(PluginError::BadOutput(format!(
                    "interest {:?} of user {:?} has the score {}; scores must be finite and >= 0",
                    shown(),
                    who(),
                    i.score
                )));
            }
            if !seen.insert(&i.name) {
                return Err(PluginError::BadOutput(format!("interest {:?} appears twice for user {:?}", shown(), who())));
            }
        }
        out.push(list.into_iter().map(|i| (i.name, i.score)).collect());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(users: usize) -> ProfileInput {
        ProfileBatch {
            tenant_id: "t".into(),
            scenario_id: "s".into(),
            actions: vec![],
            weights: vec![],
            interest_decay_days: 30.0,
            users: (0..users)
                .map(|k| UserUpdate { user_id: format!("u{k}"), interests: vec![], interests_as_of_ms: 0, update_ms: 0, events: vec![] })
                .collect(),
        }
    }

    fn i(name: &str, score: f64) -> WitInterest {
        WitInterest { name: name.into(), score }
    }

    #[test]
    fn good_interests_pass_per_user_in_order() {
        let got = check_profiles(vec![vec![i("shoes", 2.0), i("red", 0.0)], vec![]], &batch(2)).unwrap();
        assert_eq!(got, vec![vec![("shoes".to_string(), 2.0), ("red".to_string(), 0.0)], vec![]]);
    }

    #[test]
    fn one_bad_interest_rejects_the_batch() {
        let bad = |v: Vec<Vec<WitInterest>>| check_profiles(v, &batch(2)).unwrap_err().to_string();
        assert!(bad(vec![vec![]]).contains("1 interest lists for 2 users"));
        assert!(bad(vec![vec![], vec![i("", 1.0)]]).contains("must be 1..=128 bytes"));
        assert!(bad(vec![vec![], vec![i(&"x".repeat(129), 1.0)]]).contains("must be 1..=128 bytes"));
        assert!(bad(vec![vec![], vec![i("a\nb", 1.0)]]).contains("control"));
        assert!(bad(vec![vec![i("a", f64::NAN)], vec![]]).contains("finite and >= 0"));
        assert!(bad(vec![vec![i("a", f64::INFINITY)], vec![]]).contains("finite and >= 0"));
        assert!(bad(vec![vec![i("a", -0.5)], vec![]]).contains("finite and >= 0"));
        assert!(bad(vec![vec![i("a", 1.0), i("a", 2.0)], vec![]]).contains("twice"));
        let many: Vec<WitInterest> = (0..=MAX_INTERESTS).map(|k| i(&format!("c{k}"), 1.0)).collect();
        assert!(bad(vec![many, vec![]]).contains("at most 32"));
    }
}
