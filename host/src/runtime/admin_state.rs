//! The admin API's and console's state for one run ([`AdminState`]), opened from its
//! [`Settings`]. It is here rather than in `admin` because only a run has settings: `admin`
//! knows nothing of runs, and `settings` holds `admin`'s limits.

use std::sync::Arc;

use crate::admin::plugins::PluginTarget;
use crate::admin::streams::StreamSlots;
use crate::admin::{AdminState, PluginService, ScenarioService, TokenStore};
use crate::config::mongo::MongoScenarioStore;
use crate::config::store::{ConfigSource, ScenarioStore};
use crate::settings::Settings;
use crate::sinks::live::LiveView;

/// Works on the stores the runtime reads: the scenario directory, or the run's MongoDB
/// client `mongo` (plugins to MongoDB in a fleet, else the plugins directory), with the
/// tokens and limits of `settings.http`.
pub fn open(settings: &Settings, mongo: Option<MongoScenarioStore>, live: LiveView) -> anyhow::Result<AdminState> {
    let (store, target) = match (&settings.store.source, mongo) {
        #[cfg(feature = "mongodb")]
        (ConfigSource::Mongo(_), Some(m)) => {
            let plugins = m.plugins();
            (ScenarioStore::Mongo(m), PluginTarget::Mongo(plugins))
        }
        (ConfigSource::Dir(dir), _) => (ScenarioStore::Dir(dir.clone()), PluginTarget::Dir(settings.plugins_dir.clone())),
        (ConfigSource::Mongo(url), _) => anyhow::bail!("the admin API needs the MongoDB client of {url}"),
    };
    let http = settings.http.as_ref();
    if http.is_none_or(|h| h.tokens_file.is_none()) {
        tracing::warn!("no --api-tokens-file: the admin API and console refuse every request (create one with `rtscore token create`)");
    }
    let limits = http.map(|h| h.limits).unwrap_or_default();
    let plugins = Arc::new(PluginService::with_limits(target, limits.compile).with_compile_cache(settings.plugin_cache_dir.clone()));
    Ok(AdminState {
        scenarios: Arc::new(ScenarioService::new(store).with_plugin_namespace(Arc::clone(&plugins))),
        plugins,
        tokens: Arc::new(TokenStore::new(http.and_then(|h| h.tokens_file.clone()))),
        live,
        redis_url: settings.outputs.redis_url.clone(),
        redis_keys: settings.outputs.redis_keys.clone(),
        limits,
        streams: Arc::new(StreamSlots::new(limits.max_streams, limits.max_streams_per_login)),
    })
}
