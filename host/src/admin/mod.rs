//! Operator actions on scenarios and plugins, shared by the CLI (`rtscore scenario`, `rtscore
//! plugin`), the admin API and the console, so all edit, validate and publish the same way;
//! and what the two HTTP front ends share: their state ([`AdminState`]), the token scopes
//! ([`auth`]) and the caps on what callers hold ([`limits`], [`streams`]).

pub mod auth;
mod defaults;
mod error;
pub mod limits;
pub mod plugins;
pub mod scenarios;
mod state;
pub mod streams;

pub use auth::{Access, Scope, TokenStore};
pub use defaults::layer_id;
pub use error::AdminError;
pub use plugins::{CompileLimits, PluginQuota, PluginService, PublishedModule};
pub use scenarios::{ScenarioService, StoredScenario};
pub use state::{AdminState, ApiLimits};
