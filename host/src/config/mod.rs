//! Scenario configuration: the document model, its validation, and the stores it is read from.

pub mod dir_store;
pub mod edit;
pub mod fields;
pub mod history;
pub mod layer_store;
pub mod layers;
pub mod model;
#[cfg(feature = "mongodb")]
pub mod mongo;
#[cfg(not(feature = "mongodb"))]
pub mod mongo {
    //! Built without the `mongodb` feature: no MongoDB store can exist.

    /// Why a MongoDB store cannot be opened.
    pub const NOT_BUILT: &str = "this rtscore was built without the `mongodb` feature";

    /// The MongoDB scenario store; cannot exist in this build.
    #[derive(Clone)]
    pub enum MongoScenarioStore {}
}
pub mod plugin_limits;
pub mod redis_keys;
pub mod registry;
pub mod store;
pub mod switch;
pub mod tenant;
pub mod validate;
pub mod weights_guard;

pub use model::{
    Candidate, CandidateConfig, FeatureDef, FeatureField, FeatureOp, HotScoreConfig, MAX_FEATURES, MetricsConfig, PluginRef,
    ScenarioConfig, ScenarioKey, ScenarioStatus, UserProfileConfig, WindowGeometry,
};
pub use registry::{ConfigChange, ScenarioRegistry};
pub use validate::{Checked, ConfigError, FieldError, parse_scenario, parse_scenario_checked};
