//! Strict field names (DESIGN §3): every level rtscore owns lists its known fields (a `const`
//! slice next to the code that parses it, in `validate`); a name that is not among them is an
//! error with a "did you mean" suggestion, because a misspelt `decay_lamda` would otherwise
//! silently leave the default in force. The document root also holds the platform's own fields
//! (the seed's admin service stores `name`, `owner`, ... beside rtscore's): those are foreign,
//! kept and reported as warnings. Hosts extend the foreign list with `--foreign-field NAME`.

use std::sync::OnceLock;

/// Root fields that belong to the platform, not to rtscore: accepted with a warning. `_id` (the
/// store's own key) is accepted silently. Keys of `config` other than `realtime_compute` belong
/// to other platform services and are accepted silently too.
pub const FOREIGN_FIELDS: &[&str] = &["name", "description", "owner", "created_at", "created_by", "updated_by", "tags"];

/// Root fields accepted without a word: the store's document key.
pub const SILENT_FIELDS: &[&str] = &["_id"];

/// The host's additions to [`FOREIGN_FIELDS`] (`--foreign-field`), set once at start-up.
static EXTRA_FOREIGN: OnceLock<Vec<String>> = OnceLock::new();

/// Most foreign field names a host may add, and the longest name (they are compared per key of
/// every document).
pub const MAX_EXTRA_FOREIGN: usize = 256;
pub const MAX_FOREIGN_NAME_BYTES: usize = 128;

/// Why a `--foreign-field` name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForeignFieldError {
    #[error("--foreign-field {0:?}: must be 1..={MAX_FOREIGN_NAME_BYTES} bytes without '.' (a root field of the scenario document)")]
    BadName(String),
    #[error("--foreign-field {0:?}: is an rtscore field of the scenario document, not a platform one")]
    Owned(String),
    #[error("--foreign-field: at most {MAX_EXTRA_FOREIGN} names")]
    TooMany,
}

/// Checks the host's extra foreign field names against the root fields rtscore owns.
pub fn check_extra_foreign(names: &[String], owned: &[&str]) -> Result<(), ForeignFieldError> {
    if names.len() > MAX_EXTRA_FOREIGN {
        return Err(ForeignFieldError::TooMany);
    }
    for n in names {
        if n.is_empty() || n.len() > MAX_FOREIGN_NAME_BYTES || n.contains('.') {
            return Err(ForeignFieldError::BadName(n.clone()));
        }
        if owned.contains(&n.as_str()) {
            return Err(ForeignFieldError::Owned(n.clone()));
        }
    }
    Ok(())
}

/// Installs the host's extra foreign fields for every later validation in this process (the
/// registry, the admin API, the CLI). The first call wins; later ones are ignored.
pub fn set_extra_foreign_fields(names: Vec<String>) -> Result<(), ForeignFieldError> {
    check_extra_foreign(&names, super::validate::ROOT_FIELDS)?;
    let _ = EXTRA_FOREIGN.set(names);
    Ok(())
}

/// The host's extra foreign fields (empty unless set).
pub fn extra_foreign_fields() -> &'static [String] {
    EXTRA_FOREIGN.get().map_or(&[], Vec::as_slice)
}

/// Optimal string alignment distance (Levenshtein plus adjacent transpositions) between two
/// short names, in bytes. Inputs are capped by the caller's bounded field names.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let w = b.len() + 1;
    // Three rows: two back (for transpositions), one back, current.
    let mut rows = vec![0usize; 3 * w];
    for (j, cell) in rows[w..2 * w].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        let (prev2, rest) = rows.split_at_mut(w);
        let (prev, cur) = rest.split_at_mut(w);
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(prev2[j - 2] + 1);
            }
            cur[j] = d;
        }
        rows.rotate_left(w);
    }
    // After the last rotation the current row sits in the middle third.
    rows[w + b.len()]
}

/// The known name closest to `name`, if it is close enough to be a likely typo: at most one
/// edit per three characters (at least one, at most three).
pub fn suggest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    if name.len() > 2 * MAX_FOREIGN_NAME_BYTES {
        return None;
    }
    let lower = name.to_ascii_lowercase();
    let limit = (name.len() / 3).clamp(1, 3);
    known.iter().map(|k| (edit_distance(&lower, k), *k)).filter(|(d, _)| *d <= limit).min_by_key(|(d, _)| *d).map(|(_, k)| k)
}

/// The rule for an unknown field among `known`: a suggestion when one is close, else the list.
pub fn unknown_field_rule(name: &str, known: &[&str]) -> String {
    match suggest(name, known) {
        Some(k) => format!("unknown field; did you mean \"{k}\"?"),
        None => format!("unknown field; known fields here: {}", known.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_edits_and_transpositions() {
        assert_eq!(edit_distance("decay_lamda", "decay_lambda"), 1);
        assert_eq!(edit_distance("top_m", "top_n"), 1);
        assert_eq!(edit_distance("tpo_n", "top_n"), 1, "a transposition is one edit");
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn suggestions_only_for_likely_typos() {
        let known = ["decay_lambda", "top_n", "window_size_minutes", "window_slide_minutes"];
        assert_eq!(suggest("decay_lamda", &known), Some("decay_lambda"));
        assert_eq!(suggest("Top_N", &known), Some("top_n"));
        assert_eq!(suggest("window_size_minute", &known), Some("window_size_minutes"));
        assert_eq!(suggest("colour", &known), None);
        assert!(unknown_field_rule("colour", &known).contains("known fields here: decay_lambda"));
        assert_eq!(unknown_field_rule("decay_lamda", &known), "unknown field; did you mean \"decay_lambda\"?");
    }

    #[test]
    fn extra_foreign_names_are_checked() {
        assert!(check_extra_foreign(&["team".into()], &["revision"]).is_ok());
        assert_eq!(check_extra_foreign(&["revision".into()], &["revision"]), Err(ForeignFieldError::Owned("revision".into())));
        assert!(matches!(check_extra_foreign(&["a.b".into()], &[]), Err(ForeignFieldError::BadName(_))));
        assert!(matches!(check_extra_foreign(&[String::new()], &[]), Err(ForeignFieldError::BadName(_))));
    }
}
