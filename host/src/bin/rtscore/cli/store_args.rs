//! Where scenario documents live, one flag group and one precedence rule for `run`,
//! `scenario` and `plugin share`: an explicit `--scenarios-dir` (or `RTSCORE_SCENARIOS_DIR`)
//! wins, else MongoDB when `--mongodb-url` (or `MONGODB_URL`) is set, else the bundled
//! `examples/scenarios`. Before, `run` preferred the directory and `scenario` MongoDB, so with
//! `MONGODB_URL` in the environment `rtscore scenario set --scenarios-dir D` wrote to MongoDB.

use std::path::PathBuf;

use clap::Args;

use rtscore::config::store::ConfigSource;
use rtscore::settings::DEFAULT_SCENARIOS_DIR;

#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// MongoDB URL for scenario documents (collection `scenarios`), used unless
    /// --scenarios-dir is given.
    #[arg(long, global = true, value_name = "URL", env = "MONGODB_URL")]
    pub mongodb_url: Option<String>,
    /// MongoDB database.
    #[arg(long, global = true, default_value = "rtscore", env = "MONGODB_DATABASE")]
    pub mongodb_database: String,
    /// Directory of scenario documents, one JSON document per *.json file (watched by `run`)
    /// [default: examples/scenarios]. Given explicitly, it takes precedence over MONGODB_URL.
    #[arg(long, global = true, value_name = "DIR", env = "RTSCORE_SCENARIOS_DIR")]
    pub scenarios_dir: Option<PathBuf>,
}

impl StoreArgs {
    /// Where scenario documents come from (the rule in the module docs).
    pub fn source(&self) -> ConfigSource {
        match (&self.scenarios_dir, &self.mongodb_url) {
            (Some(dir), _) => ConfigSource::Dir(dir.clone()),
            (None, Some(url)) => ConfigSource::Mongo(url.clone()),
            (None, None) => ConfigSource::Dir(PathBuf::from(DEFAULT_SCENARIOS_DIR)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(url: Option<&str>, dir: Option<&str>) -> StoreArgs {
        StoreArgs { mongodb_url: url.map(String::from), mongodb_database: "rtscore".into(), scenarios_dir: dir.map(PathBuf::from) }
    }

    #[test]
    fn an_explicit_directory_wins_then_mongodb_then_the_examples() {
        assert_eq!(args(Some("mongodb://m"), Some("d")).source(), ConfigSource::Dir("d".into()));
        assert_eq!(args(Some("mongodb://m"), None).source(), ConfigSource::Mongo("mongodb://m".into()));
        assert_eq!(args(None, None).source(), ConfigSource::Dir(DEFAULT_SCENARIOS_DIR.into()));
    }
}
