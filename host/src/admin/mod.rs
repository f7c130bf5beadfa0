//! Operator actions on scenarios and plugins, shared by the CLI (`rtscore scenario`, `rtscore
//! plugin`) and the admin API, so both edit, validate and publish the same way.

mod error;
pub mod limits;
pub mod plugins;
pub mod scenarios;

pub use error::AdminError;
pub use plugins::{CompileLimits, PluginQuota, PluginService, PublishedModule};
pub use scenarios::{ScenarioService, StoredScenario};
