//! `rtscore defaults ...`: read and write the defaults layers every scenario is resolved over
//! (platform → tenant → scenario_type → scenario, docs/design.md §3). A write is validated on
//! its own and against every scenario the layer covers, versioned and kept in the layer's
//! history; running hosts apply it to every covered scenario without restart.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::Value;

use super::scenario::{WhenArgs, read_json};
use super::store_args::StoreArgs;
use rtscore::admin::{ScenarioService, layer_id};
use rtscore::config::layers::LayerId;
use rtscore::config::store::ScenarioStore;

#[derive(Debug, Args)]
pub struct DefaultsArgs {
    #[command(subcommand)]
    pub command: DefaultsCommand,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Which layer: `--platform`, `--tenant-id T`, or `--tenant-id T --scenario-type X`.
#[derive(Debug, Args)]
pub struct LayerArgs {
    /// The platform layer: every scenario of every tenant.
    #[arg(long, conflicts_with_all = ["tenant_id", "scenario_type"], required_unless_present = "tenant_id")]
    pub platform: bool,
    /// The tenant's layer: every scenario of the tenant.
    #[arg(long, alias = "tenant")]
    pub tenant_id: Option<String>,
    /// With --tenant-id: the layer of the tenant's scenarios with this `scenario_type`.
    #[arg(long, alias = "type", requires = "tenant_id")]
    pub scenario_type: Option<String>,
}

impl LayerArgs {
    fn id(&self) -> anyhow::Result<LayerId> {
        Ok(layer_id(self.tenant_id.as_deref(), self.scenario_type.as_deref())?)
    }
}

#[derive(Debug, Subcommand)]
pub enum DefaultsCommand {
    /// Print a layer document (an empty one at revision 0 if never written).
    Get(LayerArgs),
    /// Store a complete layer document (validated; revision bumped).
    Put {
        #[command(flatten)]
        layer: LayerArgs,
        /// The document (`-` for stdin): `{"config": {"realtime_compute": {...}}}`.
        file: PathBuf,
        /// Validate and print the next revision without storing it.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        when: WhenArgs,
    },
    /// Deep-merge a partial document into a layer (validated; revision bumped).
    ///
    /// Example: the platform-wide decay becomes 0.2 / h for every scenario that does not set its own:
    ///   rtscore defaults patch --platform --body '{"config":{"realtime_compute":{"hot_score":{"decay_lambda":0.2}}}}'
    Patch {
        #[command(flatten)]
        layer: LayerArgs,
        /// The partial document as JSON text.
        #[arg(long, conflicts_with = "file")]
        body: Option<String>,
        /// Read the partial document from a file (`-` for stdin).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Validate and print the next revision without storing it.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        when: WhenArgs,
    },
    /// List a layer's stored revisions, oldest first (`--json` for the documents).
    History {
        #[command(flatten)]
        layer: LayerArgs,
        #[arg(long)]
        json: bool,
    },
}

fn report(doc: &Value, id: &LayerId, place: &str, dry_run: bool) {
    let when = match doc.get("effective_from_window_end").and_then(Value::as_i64) {
        Some(e) => format!("effective from window end {e}"),
        None => "effective at each host's next window".into(),
    };
    let verb = if dry_run { "valid (dry run, not stored):" } else { "stored" };
    println!("{verb} {id} revision {} in {place}, {when}", doc["revision"]);
}

pub async fn run(args: DefaultsArgs) -> anyhow::Result<()> {
    let store = ScenarioStore::open(&args.store.source(), &args.store.mongodb_database).await?;
    let service = ScenarioService::new(store);
    let place = service.describe();
    match args.command {
        DefaultsCommand::Get(layer) => {
            let doc = service.get_layer(&layer.id()?).await.with_context(|| format!("in {place}"))?;
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        DefaultsCommand::Put { layer, file, dry_run, when } => {
            let id = layer.id()?;
            let doc = service.put_layer(&id, read_json(&file)?, &when.effective(), when.if_revision, dry_run).await?;
            report(&doc, &id, &place, dry_run);
        }
        DefaultsCommand::Patch { layer, body, file, dry_run, when } => {
            let id = layer.id()?;
            let patch: Value = match (body, file) {
                (Some(b), _) => serde_json::from_str(&b).context("--body is not valid JSON")?,
                (None, Some(f)) => read_json(&f)?,
                (None, None) => bail!("give the partial document with --body JSON or --file PATH"),
            };
            let doc = service.patch_layer(&id, &patch, &when.effective(), when.if_revision, dry_run).await?;
            report(&doc, &id, &place, dry_run);
        }
        DefaultsCommand::History { layer, json } => {
            let history = service.layer_history(&layer.id()?).await?;
            if !json {
                println!("{:>8} {:<25} {:<15} config.realtime_compute", "revision", "updated_at", "effective_from");
            }
            for d in history {
                if json {
                    println!("{}", serde_json::to_string(&d)?);
                    continue;
                }
                let at = d["updated_at"].as_i64().and_then(chrono::DateTime::from_timestamp_millis).map_or("-".into(), |t| t.to_rfc3339());
                let from = d["effective_from_window_end"].as_i64().map_or("next window".into(), |e| e.to_string());
                println!("{:>8} {:<25} {:<15} {}", d["revision"], at, from, d["config"]["realtime_compute"]);
            }
        }
    }
    Ok(())
}
