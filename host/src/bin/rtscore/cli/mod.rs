//! Command-line interface: flags in the seed's spelling, each with an environment variable.

pub mod defaults;
pub mod diff;
pub mod doc_args;
pub mod plugin;
pub mod plugin_new;
pub mod plugin_test;
pub mod run_args;
pub mod scenario;
pub mod status;
pub mod store_args;
pub mod token;

use clap::{Parser, Subcommand};

pub use run_args::RunArgs;

const AFTER_HELP: &str = "\
Examples:
  # Embedded default: scenarios from examples/scenarios, generated events, live terminal view
  rtscore

  # Offline replay / backtest of a recorded file into a JSON-lines sink
  rtscore run --events-file events.jsonl --scenarios-dir examples/scenarios --jsonl-out out.jsonl

  # Production: Kafka in, MongoDB configs, Redis out
  rtscore run --job all --kafka-servers 127.0.0.1:19092 \\
      --mongodb-url mongodb://127.0.0.1:27018 --redis-url redis://127.0.0.1:16379

  # A topic keyed any way (user_id, none), one pipeline per core of this host
  rtscore run --job all --threads auto --repartition --kafka-servers ... --mongodb-url ... --redis-url ...

  # Isolated instance for one important scenario (its own consumer group)
  rtscore run --tenant-id shop --scenario-id home --kafka-servers ... --mongodb-url ...

  # Admin API and operator console on 127.0.0.1:8080 (/api/v1, /console), tenant-scoped tokens
  rtscore token create --tenant shop --tokens-file tokens
  rtscore run --http-addr --api-tokens-file tokens ...";

#[derive(Debug, Parser)]
#[command(name = "rtscore", version, about = "WebAssembly-pluggable, config-driven real-time scoring runtime for recommender systems", after_help = AFTER_HELP, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With no subcommand, `rtscore` runs the job (same flags as `rtscore run`).
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the scoring job: read events, keep windows, score, write results.
    #[command(after_help = AFTER_HELP)]
    Run(Box<RunArgs>),
    /// Manage scenario documents: validate, list, get, set, patch (deep merge), promote, rollback,
    /// history, delete.
    Scenario(scenario::ScenarioArgs),
    /// Read and write the defaults layers scenarios are resolved over: --platform, --tenant-id T,
    /// --tenant-id T --scenario-type X (get, put, patch, history).
    Defaults(defaults::DefaultsArgs),
    /// Scaffold, test, publish, list and share plugins (WebAssembly components): hot-score,
    /// metrics and user-profile.
    Plugin(plugin::PluginArgs),
    /// Show what the running hosts apply per scenario (from their Redis status keys).
    Status(status::StatusArgs),
    /// Create bearer tokens for the admin API and operator console.
    Token(token::TokenArgs),
    /// Compare two JSONL sinks window by window: top-K overlap, score drift, items moving.
    Diff(diff::DiffArgs),
}
