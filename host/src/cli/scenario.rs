//! `rtscore scenario ...`: manage scenario documents without an admin backend.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::admin::{AdminError, ScenarioService};
use crate::config::parse_scenario;
use crate::config::store::ScenarioStore;

#[derive(Debug, Args)]
pub struct ScenarioArgs {
    #[command(subcommand)]
    pub command: ScenarioCommand,
    /// MongoDB URL; without it, documents live in --scenarios-dir.
    #[arg(long, global = true, env = "MONGODB_URL")]
    pub mongodb_url: Option<String>,
    #[arg(long, global = true, default_value = "rtscore", env = "MONGODB_DATABASE")]
    pub mongodb_database: String,
    /// Directory of scenario documents (used when no MongoDB URL is set).
    #[arg(long, global = true, default_value = "examples/scenarios", env = "RTSCORE_SCENARIOS_DIR")]
    pub scenarios_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ScenarioId {
    #[arg(long)]
    pub tenant_id: String,
    #[arg(long)]
    pub scenario_id: String,
}

#[derive(Debug, Subcommand)]
pub enum ScenarioCommand {
    /// Check documents offline; prints every broken rule with its field path.
    Validate {
        /// JSON files, one scenario document each (`-` for stdin).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List scenarios with revision, status and hot-score settings.
    List,
    /// Print one scenario document.
    Get(ScenarioId),
    /// Store a complete document (validated; revision bumped).
    Set {
        /// The document (`-` for stdin).
        file: PathBuf,
    },
    /// Deep-merge a partial document into the stored one (validated; revision bumped).
    ///
    /// Example: raise only the purchase weight to 15:
    ///   rtscore scenario patch --tenant-id shop --scenario-id home \
    ///     --body '{"config":{"realtime_compute":{"hot_score":{"action_weights":{"purchase":15}}}}}'
    Patch {
        #[command(flatten)]
        id: ScenarioId,
        /// The partial document as JSON text.
        #[arg(long, conflicts_with = "file")]
        body: Option<String>,
        /// Read the partial document from a file (`-` for stdin).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Create the scenario (with defaults) if it does not exist.
        #[arg(long)]
        create: bool,
    },
    /// Delete a scenario document; hosts stop emitting for it and free its state.
    Delete(ScenarioId),
}

fn read_json(path: &PathBuf) -> anyhow::Result<Value> {
    let bytes = if path.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)?;
        b
    } else {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
    };
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not valid JSON", path.display()))
}

pub async fn run(args: ScenarioArgs) -> anyhow::Result<()> {
    if let ScenarioCommand::Validate { files } = &args.command {
        let mut failed = 0;
        for f in files {
            match read_json(f).and_then(|doc| parse_scenario(&doc).map_err(anyhow::Error::from)) {
                Ok(cfg) => println!("ok      {}  {} revision {}", f.display(), cfg.key, cfg.revision),
                Err(e) => {
                    failed += 1;
                    println!("invalid {}  {e:#}", f.display());
                }
            }
        }
        if failed > 0 {
            bail!("{failed} of {} documents are invalid", files.len());
        }
        return Ok(());
    }
    let store = ScenarioStore::open(args.mongodb_url.as_deref(), &args.mongodb_database, &args.scenarios_dir).await?;
    let service = ScenarioService::new(store);
    let place = service.describe();
    match args.command {
        ScenarioCommand::Validate { .. } => unreachable!("handled above"),
        ScenarioCommand::List => {
            let docs = service.list(None).await?;
            println!(
                "{:<16} {:<20} {:>8} {:<8} {:<12} {:<10} {:<6} plugin",
                "tenant", "scenario", "revision", "status", "window/slide", "lambda", "top_n"
            );
            for d in docs {
                match parse_scenario(&d) {
                    Ok(c) => {
                        let h = &c.hot_score;
                        println!(
                            "{:<16} {:<20} {:>8} {:<8} {:<12} {:<10} {:<6} {}",
                            c.key.tenant_id,
                            c.key.scenario_id,
                            c.revision,
                            format!("{:?}", c.status).to_lowercase(),
                            format!("{}/{} min", h.window.size_ms / 60_000, h.window.slide_ms / 60_000),
                            h.decay_lambda,
                            h.top_n,
                            h.plugin.as_ref().map_or("builtin".into(), |p| p.label())
                        );
                    }
                    Err(e) => println!(
                        "{:<16} {:<20} INVALID: {e}",
                        d["tenant_id"].as_str().unwrap_or("?"),
                        d["scenario_id"].as_str().unwrap_or("?")
                    ),
                }
            }
        }
        ScenarioCommand::Get(id) => {
            let doc = service.get(&id.tenant_id, &id.scenario_id).await.with_context(|| format!("in {place}"))?;
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        ScenarioCommand::Set { file } => {
            let stored = service.put_document(read_json(&file)?).await?;
            println!("stored {} revision {} in {place}", stored.config.key, stored.config.revision);
        }
        ScenarioCommand::Patch { id, body, file, create } => {
            let patch: Value = match (body, file) {
                (Some(b), _) => serde_json::from_str(&b).context("--body is not valid JSON")?,
                (None, Some(f)) => read_json(&f)?,
                (None, None) => bail!("give the partial document with --body JSON or --file PATH"),
            };
            let stored = match service.patch(&id.tenant_id, &id.scenario_id, &patch, create).await {
                Err(e @ AdminError::ScenarioNotFound { .. }) => bail!("{e} in {place} (use --create to create it)"),
                r => r?,
            };
            println!("patched {} to revision {} in {place}", stored.config.key, stored.config.revision);
        }
        ScenarioCommand::Delete(id) => {
            service.delete(&id.tenant_id, &id.scenario_id).await.with_context(|| format!("in {place}"))?;
            println!("deleted {}/{}", id.tenant_id, id.scenario_id);
        }
    }
    Ok(())
}
