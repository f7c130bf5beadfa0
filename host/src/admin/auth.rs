//! Bearer tokens for the admin API and the console. A token is scoped to one tenant or to
//! admin; only its sha256 is stored, one per line of a tokens file:
//!
//! ```text
//! tenant:shop 3f1c...e9   # optional comment
//! admin 9b2d...41
//! ```
//!
//! The file is re-read when it changes, so `rtscore token create` takes effect on a running
//! host. Hashes are compared in constant time.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::Context;
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::config::validate::is_valid_id;

/// What a token may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Admin,
    Tenant(String),
}

impl Scope {
    /// Whether this scope may read and change `tenant`'s scenarios, plugins and status.
    pub fn allows(&self, tenant: &str) -> bool {
        match self {
            Scope::Admin => true,
            Scope::Tenant(t) => t == tenant,
        }
    }

    /// The tenant this scope is limited to (`None` for admin).
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Scope::Admin => None,
            Scope::Tenant(t) => Some(t),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Admin => f.write_str("admin"),
            Scope::Tenant(t) => write!(f, "tenant:{t}"),
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("tenant:") {
            Some(t) if is_valid_id(t) => Ok(Scope::Tenant(t.to_string())),
            Some(t) => Err(format!("invalid tenant id {t:?}: must match [A-Za-z0-9_-]{{1,64}}")),
            None if s == "admin" => Ok(Scope::Admin),
            None => Err(format!("invalid scope {s:?}: use `tenant:<id>` or `admin`")),
        }
    }
}

/// Who may call a route of the admin API (`api::routes`), by the scope of the caller's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (the OpenAPI description).
    Public,
    /// Any valid token.
    AnyToken,
    /// A token for the `{tenant}` in the path, or admin.
    Tenant,
    /// Admin tokens only (tenant tokens get 403).
    Admin,
}

/// One line of the tokens file.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenEntry {
    pub scope: Scope,
    hash: [u8; 32],
}

fn sha256(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// Parses a tokens file; a malformed line is an error naming its number.
pub fn parse_tokens(text: &str) -> Result<Vec<TokenEntry>, String> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(scope), Some(hex_hash), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("line {}: expected `<tenant:ID|admin> <sha256-hex>`", n + 1));
        };
        let scope = scope.parse::<Scope>().map_err(|e| format!("line {}: {e}", n + 1))?;
        let mut hash = [0u8; 32];
        hex::decode_to_slice(hex_hash, &mut hash).map_err(|_| format!("line {}: the hash must be 64 hex digits", n + 1))?;
        out.push(TokenEntry { scope, hash });
    }
    Ok(out)
}

/// The scope of `presented` among `entries`. Every entry is compared, in constant time, so
/// timing says nothing about which hash came close.
pub fn authenticate(entries: &[TokenEntry], presented: &str) -> Option<Scope> {
    let hash = sha256(presented);
    let mut found = None;
    for e in entries {
        if bool::from(e.hash.ct_eq(&hash)) {
            found = Some(e.scope.clone());
        }
    }
    found
}

/// A fresh random token (`rts_` + 64 hex digits) and the line that stores its hash.
pub fn new_token(scope: &Scope) -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("rts_{}", hex::encode(bytes));
    let line = format!("{scope} {}", hex::encode(sha256(&token)));
    (token, line)
}

/// Appends a new token for `scope` to the tokens file (created with mode 0600) and returns
/// the token, which is not stored anywhere else.
pub fn create_token(path: &Path, scope: &Scope) -> anyhow::Result<String> {
    let (token, line) = new_token(scope);
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).with_context(|| format!("opening the tokens file {}", path.display()))?;
    writeln!(f, "{line}").with_context(|| format!("writing {}", path.display()))?;
    Ok(token)
}

/// The tokens file of a running host, re-read when its modification time changes.
pub struct TokenStore {
    path: Option<PathBuf>,
    cache: Mutex<Cached>,
}

/// The entries last read, and the file's modification time and length then.
#[derive(Default)]
struct Cached {
    stamp: Option<(SystemTime, u64)>,
    entries: Vec<TokenEntry>,
    /// The last read error, logged once rather than on every request.
    error: Option<String>,
}

impl TokenStore {
    /// `None`: no tokens file, so every request is refused.
    pub fn new(path: Option<PathBuf>) -> Self {
        Self { path, cache: Mutex::new(Cached::default()) }
    }

    pub fn configured(&self) -> bool {
        self.path.is_some()
    }

    /// The scope of a presented token, if the file lists its hash.
    pub fn authenticate(&self, presented: &str) -> Option<Scope> {
        let path = self.path.as_ref()?;
        let modified = std::fs::metadata(path).and_then(|m| Ok((m.modified()?, m.len()))).ok();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if modified.is_none() || cache.stamp != modified {
            let entries = match std::fs::read_to_string(path) {
                Ok(text) => parse_tokens(&text),
                Err(e) => {
                    // A removed or unreadable file revokes every token.
                    cache.entries.clear();
                    Err(e.to_string())
                }
            };
            match entries {
                Ok(entries) => *cache = Cached { stamp: modified, entries, error: None },
                Err(e) => {
                    // A malformed file keeps the last good set: a half-edited file must not lock
                    // everyone out.
                    if cache.error.as_ref() != Some(&e) {
                        tracing::error!(file = %path.display(), error = %e, "cannot read the API tokens file");
                        cache.error = Some(e);
                    }
                }
            }
        }
        authenticate(&cache.entries, presented)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_authenticate_only_their_scope() {
        let (shop, shop_line) = new_token(&Scope::Tenant("shop".into()));
        let (admin, admin_line) = new_token(&Scope::Admin);
        let entries = parse_tokens(&format!("# tokens\n{shop_line}  # shop team\n\n{admin_line}\n")).unwrap();
        assert_eq!(authenticate(&entries, &shop), Some(Scope::Tenant("shop".into())));
        assert_eq!(authenticate(&entries, &admin), Some(Scope::Admin));
        assert_eq!(authenticate(&entries, "rts_guess"), None);
        assert_eq!(authenticate(&entries, ""), None);
        // The file holds hashes, never the tokens.
        assert!(!shop_line.contains(&shop[4..]));
        assert!(Scope::Tenant("shop".into()).allows("shop"));
        assert!(!Scope::Tenant("shop".into()).allows("news"));
        assert!(Scope::Admin.allows("news"));
    }

    #[test]
    fn malformed_lines_are_named() {
        assert!(parse_tokens("tenant:shop abc").unwrap_err().contains("line 1"));
        assert!(parse_tokens("\nroot 00").unwrap_err().contains("line 2"));
        assert!(parse_tokens(&format!("tenant:a/b {}", "0".repeat(64))).is_err());
    }

    #[test]
    fn the_store_sees_tokens_created_after_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        let store = TokenStore::new(Some(path.clone()));
        assert_eq!(store.authenticate("rts_x"), None);
        let t = create_token(&path, &Scope::Tenant("news".into())).unwrap();
        assert_eq!(store.authenticate(&t), Some(Scope::Tenant("news".into())));
        assert_eq!(TokenStore::new(None).authenticate(&t), None);
        // A malformed edit keeps the last good set; removing the file revokes everything.
        std::fs::write(&path, format!("{}\nbroken line\n", std::fs::read_to_string(&path).unwrap().trim())).unwrap();
        assert_eq!(store.authenticate(&t), Some(Scope::Tenant("news".into())));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(store.authenticate(&t), None);
    }
}
