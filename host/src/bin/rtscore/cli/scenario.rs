//! `rtscore scenario ...`: manage scenario documents without an admin backend, and roll changes
//! out safely (shadow candidate, promote, rollback, history, event-time switch).

use std::path::PathBuf;

use anyhow::{Context, bail};

use super::store_args::StoreArgs;
use clap::{Args, Subcommand};
use serde_json::Value;

use rtscore::admin::{AdminError, ScenarioService};
use rtscore::config::edit::deep_merge;
use rtscore::config::store::ScenarioStore;
use rtscore::config::switch::{DEFAULT_MARGIN_MS, EffectiveFrom};
use rtscore::config::tenant::parse_tenant;
use rtscore::config::{Checked, FieldError, ScenarioConfig, parse_scenario, parse_scenario_checked};

#[derive(Debug, Args)]
pub struct ScenarioArgs {
    #[command(subcommand)]
    pub command: ScenarioCommand,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub docs: super::doc_args::DocArgs,
}

/// A write whose weight maps may drop actions on purpose (DESIGN §3, dropped weights).
#[derive(Debug, Args)]
pub struct DropArgs {
    /// The new `action_weights` / `behavior_weights` may drop actions the stored revision
    /// weights (they then weigh 0). Without it such a write is refused with the list of dropped
    /// actions; writing them with weight 0 also works. Sets the document's `replace_weights`
    /// marker for this revision only.
    #[arg(long)]
    pub drop_weights: bool,
}

impl DropArgs {
    fn apply(&self, body: &mut Value) {
        if self.drop_weights {
            rtscore::config::edit::request_drop_weights(body);
        }
    }
}

#[derive(Debug, Args)]
pub struct ScenarioId {
    #[arg(long)]
    pub tenant_id: String,
    #[arg(long)]
    pub scenario_id: String,
}

/// When a stored revision takes effect (DESIGN §3 addendum, docs/rollout.md).
#[derive(Debug, Args)]
pub struct WhenArgs {
    /// Take effect from this hot-score window end (epoch ms) on every host; earlier windows keep
    /// the previous revision.
    #[arg(long, value_name = "MS", conflicts_with = "immediately")]
    pub effective_from: Option<i64>,
    /// Take effect at each host's next window, with no fleet-wide agreement.
    #[arg(long)]
    pub immediately: bool,
    /// Redis the hosts report to: by default the change takes effect from the first window end
    /// --margin-ms of event time past the furthest progress they report. Without it (and without
    /// the other two flags) the change applies immediately.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// The hosts' `--redis-key-prefix`, where their progress is read.
    #[arg(long, value_name = "PREFIX", default_value = "rt", env = "RTSCORE_REDIS_KEY_PREFIX", value_parser = super::run_args::parse_key_prefix)]
    pub redis_key_prefix: rtscore::config::redis_keys::KeyLayout,
    /// Event-time margin past the hosts' reported progress.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_MARGIN_MS)]
    pub margin_ms: i64,
    /// Write only if the stored revision is still this one (the revision you edited; 0: the
    /// scenario must not exist yet), else fail naming the current revision. Without it the
    /// write applies over whatever revision is current, and still never over a concurrent one.
    #[arg(long, value_name = "REVISION")]
    pub if_revision: Option<i64>,
}

impl WhenArgs {
    pub(super) fn effective(&self) -> EffectiveFrom {
        EffectiveFrom::choose(self.effective_from, self.immediately, self.redis_url.as_deref(), self.margin_ms)
            .with_keys(&self.redis_key_prefix)
    }
}

/// Each warning on its own line, on stderr (stdout stays the result).
fn print_warnings(warnings: &[FieldError]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

/// `stored <key> revision <n> in <store>, effective ...`.
fn report(verb: &str, cfg: &ScenarioConfig, place: &str) {
    let when = match cfg.effective_from_window_end {
        Some(e) => format!(
            "effective from window end {e} ({})",
            chrono::DateTime::from_timestamp_millis(e).map_or_else(|| "?".into(), |t| t.to_rfc3339())
        ),
        None => "effective at each host's next window".to_string(),
    };
    println!("{verb} {} revision {} in {place}, {when}", cfg.key, cfg.revision);
}

#[derive(Debug, Subcommand)]
pub enum ScenarioCommand {
    /// Check documents offline; prints every broken rule with its field path. With
    /// --plugins-dir, also checks each plugin reference (live and candidate) as a host would
    /// load it: the module exists there, its sha256 matches, it loads in the sandbox, and it
    /// accepts the params.
    Validate {
        /// JSON files, one scenario document each (`-` for stdin).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// A plugins directory (files <name>@<version>.wasm) to check plugin references against.
        #[arg(long)]
        plugins_dir: Option<PathBuf>,
    },
    /// List scenarios with revision, status and hot-score settings (resolved over the defaults
    /// layers).
    List,
    /// Print one scenario document; with --resolved, the config in force over its defaults
    /// layers (platform, tenant, scenario_type) and the layer each value came from.
    Get {
        #[command(flatten)]
        id: ScenarioId,
        /// Resolve over the defaults layers and show each value's layer (`builtin default`,
        /// `platform`, `tenant`, `type:<t>`, `scenario`).
        #[arg(long)]
        resolved: bool,
        /// With --resolved: print it as JSON.
        #[arg(long, requires = "resolved")]
        json: bool,
    },
    /// Store a complete document (validated; revision bumped).
    Set {
        /// The document (`-` for stdin).
        file: PathBuf,
        #[command(flatten)]
        when: WhenArgs,
        #[command(flatten)]
        drop: DropArgs,
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
        #[command(flatten)]
        when: WhenArgs,
        #[command(flatten)]
        drop: DropArgs,
    },
    /// Make the shadow candidate live: merged into the live config, removed, revision bumped.
    Promote {
        #[command(flatten)]
        id: ScenarioId,
        #[command(flatten)]
        when: WhenArgs,
    },
    /// Store the previous revision's content (or --to-revision N) again as a new revision.
    Rollback {
        #[command(flatten)]
        id: ScenarioId,
        /// The revision to return to (default: the one before the current).
        #[arg(long)]
        to_revision: Option<i64>,
        #[command(flatten)]
        when: WhenArgs,
    },
    /// List a scenario's stored revisions, oldest first (`--json` for the documents).
    History {
        #[command(flatten)]
        id: ScenarioId,
        #[arg(long)]
        json: bool,
    },
    /// Show a tenant's quotas, or deep-merge --body into its tenant document.
    ///
    /// Example: at most 5 scenarios, 20 ms of plugin CPU per window:
    ///   rtscore scenario quotas --tenant-id shop --body '{"quotas":{"max_scenarios":5,"cpu_ms_per_window":20}}'
    Quotas {
        #[arg(long)]
        tenant_id: String,
        /// Partial tenant document as JSON text.
        #[arg(long)]
        body: Option<String>,
    },
    /// Delete a scenario document; hosts stop emitting for it and free its state.
    Delete(ScenarioId),
}

pub(super) fn read_json(path: &PathBuf) -> anyhow::Result<Value> {
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
    args.docs.install()?;
    // Validation reads files only: no store needed.
    if let ScenarioCommand::Validate { files, plugins_dir } = &args.command {
        return validate(files, plugins_dir.as_deref()).await;
    }
    let store = ScenarioStore::open(&args.store.source(), &args.store.mongodb_database).await?;
    let service = ScenarioService::new(store);
    let place = service.describe();
    match args.command {
        ScenarioCommand::Validate { files, plugins_dir } => validate(&files, plugins_dir.as_deref()).await?,
        ScenarioCommand::List => list(&service).await?,
        ScenarioCommand::Get { id, resolved: true, json } => {
            let r = service.resolved(&id.tenant_id, &id.scenario_id).await.with_context(|| format!("in {place}"))?;
            print_resolved(&r, json)?;
        }
        ScenarioCommand::Get { id, .. } => {
            let doc = service.get(&id.tenant_id, &id.scenario_id).await.with_context(|| format!("in {place}"))?;
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        ScenarioCommand::Set { file, when, drop } => {
            let mut doc = read_json(&file)?;
            drop.apply(&mut doc);
            let stored = service.put_document(doc, &when.effective(), when.if_revision).await?;
            print_warnings(&stored.warnings);
            report("stored", &stored.config, &place);
        }
        ScenarioCommand::Patch { id, body, file, create, when, drop } => {
            let mut patch: Value = match (body, file) {
                (Some(b), _) => serde_json::from_str(&b).context("--body is not valid JSON")?,
                (None, Some(f)) => read_json(&f)?,
                (None, None) => bail!("give the partial document with --body JSON or --file PATH"),
            };
            drop.apply(&mut patch);
            let stored = match service.patch(&id.tenant_id, &id.scenario_id, &patch, create, &when.effective(), when.if_revision).await {
                Err(e @ AdminError::ScenarioNotFound { .. }) => bail!("{e} in {place} (use --create to create it)"),
                r => r?,
            };
            print_warnings(&stored.warnings);
            report("patched", &stored.config, &place);
        }
        ScenarioCommand::Promote { id, when } => {
            let stored = service.promote(&id.tenant_id, &id.scenario_id, &when.effective(), when.if_revision).await?;
            print_warnings(&stored.warnings);
            report("promoted the candidate of", &stored.config, &place);
        }
        ScenarioCommand::Rollback { id, to_revision, when } => {
            let stored = service.rollback(&id.tenant_id, &id.scenario_id, to_revision, &when.effective(), when.if_revision).await?;
            print_warnings(&stored.warnings);
            report("rolled back", &stored.config, &place);
        }
        ScenarioCommand::History { id, json } => {
            let history = service.history(&id.tenant_id, &id.scenario_id).await.with_context(|| format!("no history in {place}"))?;
            print_history(&history, json)?;
        }
        ScenarioCommand::Quotas { tenant_id, body } => quotas(&service, &tenant_id, body.as_deref()).await?,
        ScenarioCommand::Delete(id) => {
            service.delete(&id.tenant_id, &id.scenario_id).await.with_context(|| format!("in {place}"))?;
            println!("deleted {}/{}", id.tenant_id, id.scenario_id);
        }
    }
    Ok(())
}

/// `scenario validate`: every file checked, each reported, an error if any is invalid.
async fn validate(files: &[PathBuf], plugins_dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    let loader = match plugins_dir {
        Some(dir) => Some(plugin_loader(dir).await?),
        None => None,
    };
    let mut failed = 0;
    for f in files {
        match read_json(f).and_then(|doc| parse_scenario_checked(&doc).map_err(anyhow::Error::from)) {
            Ok(Checked { config: cfg, warnings }) => {
                let mut problems = Vec::new();
                if let Some(loader) = &loader {
                    for (lane, world, r) in plugin_refs(&cfg) {
                        match loader.prepare_world(&cfg.key, r, &Default::default(), world).await {
                            Ok(_) => println!("ok      {}  {lane} {} loads and accepts its params", f.display(), r.label()),
                            Err(e) => problems.push(format!("{lane} {}: {e}", r.label())),
                        }
                    }
                }
                if problems.is_empty() {
                    println!("ok      {}  {} revision {}", f.display(), cfg.key, cfg.revision);
                } else {
                    failed += 1;
                    for p in problems {
                        println!("invalid {}  {p}", f.display());
                    }
                }
                for w in warnings {
                    println!("warning {}  {w}", f.display());
                }
            }
            Err(e) => {
                failed += 1;
                println!("invalid {}  {e:#}", f.display());
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} documents are invalid", files.len());
    }
    Ok(())
}

/// The plugin references a host would load for `cfg`, each with the world it must implement:
/// the live ones and the candidate's.
fn plugin_refs(cfg: &ScenarioConfig) -> Vec<(&'static str, rtscore::plugin::PluginWorld, &rtscore::config::PluginRef)> {
    use rtscore::plugin::PluginWorld::{Metrics, Profile, Scorer};
    let cand = cfg.candidate.as_ref();
    [
        ("hot_score.plugin", Scorer, cfg.hot_score.plugin.as_ref()),
        ("candidate.plugin", Scorer, cand.and_then(|c| c.hot_score()).and_then(|h| h.plugin.as_ref())),
        ("metrics.plugin", Metrics, cfg.metrics.plugin.as_ref()),
        ("candidate.metrics.plugin", Metrics, cand.and_then(|c| c.metrics_plugin())),
        ("user_profile.plugin", Profile, cfg.user_profile.plugin.as_ref()),
        ("candidate.user_profile.plugin", Profile, cand.and_then(|c| c.profile_plugin())),
    ]
    .into_iter()
    .filter_map(|(what, world, r)| r.map(|r| (what, world, r)))
    .collect()
}

/// A loader over `dir` with a host's default sandbox and tenant quotas.
async fn plugin_loader(dir: &std::path::Path) -> anyhow::Result<rtscore::plugin::PluginLoader> {
    use rtscore::plugin::{Grants, PluginEngine, PluginLoader, PluginRegistry};
    if !dir.is_dir() {
        bail!("--plugins-dir {}: not a directory", dir.display());
    }
    // The hosts' default compiled-plugin cache: a Python or JavaScript module is compiled once.
    let cache = rtscore::plugin::disk_cache::default_dir();
    let engine =
        PluginEngine::with_disk_cache(Default::default(), Grants::default(), cache.as_deref()).context("starting the plugin engine")?;
    let registry = PluginRegistry::new();
    registry.watch_dir(dir).await.with_context(|| format!("reading plugins in {}", dir.display()))?;
    Ok(PluginLoader::new(engine, registry))
}

/// `scenario list`: one line per scenario, invalid documents marked.
async fn list(service: &ScenarioService) -> anyhow::Result<()> {
    let docs = service.list(None).await?;
    // As the hosts see them: resolved over the defaults layers.
    let layers = service.store().layer_set().await?;
    println!(
        "{:<16} {:<20} {:>8} {:<8} {:<12} {:<10} {:<6} plugin",
        "tenant", "scenario", "revision", "status", "window/slide", "lambda", "top_n"
    );
    for d in docs {
        match parse_scenario(&rtscore::config::layers::resolve(&layers, &d)) {
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
            Err(e) => {
                println!("{:<16} {:<20} INVALID: {e}", d["tenant_id"].as_str().unwrap_or("?"), d["scenario_id"].as_str().unwrap_or("?"))
            }
        }
    }
    Ok(())
}

/// `scenario get --resolved`: one line per value of the resolved config with its layer.
fn print_resolved(r: &Value, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    let layers: Vec<String> = r["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| format!("{} (revision {})", l["source"].as_str().unwrap_or("?"), l["revision"]))
        .collect();
    println!(
        "{}/{} revision {} over {}",
        r["tenant_id"].as_str().unwrap_or("?"),
        r["scenario_id"].as_str().unwrap_or("?"),
        r["revision"],
        if layers.is_empty() { "no defaults layer".to_string() } else { layers.join(", ") }
    );
    let rc = &r["config"]["realtime_compute"];
    for (path, source) in r["provenance"].as_object().into_iter().flatten() {
        let value = path.split('.').fold(rc, |v, k| &v[k]);
        println!("  {path:<45} {:<24} {}", value.to_string(), source.as_str().unwrap_or("?"));
    }
    Ok(())
}

/// `scenario history`: a table, or the stored documents as JSON lines.
fn print_history(history: &[Value], json: bool) -> anyhow::Result<()> {
    if !json {
        println!(
            "{:>8} {:<25} {:<15} {:<10} {:<6} {:<22} candidate",
            "revision", "updated_at", "effective_from", "lambda", "top_n", "plugin"
        );
    }
    for d in history {
        if json {
            println!("{}", serde_json::to_string(d)?);
            continue;
        }
        let at = |v: &Value| v.as_i64().and_then(chrono::DateTime::from_timestamp_millis).map_or("-".into(), |t| t.to_rfc3339());
        match parse_scenario(d) {
            Ok(c) => println!(
                "{:>8} {:<25} {:<15} {:<10} {:<6} {:<22} {}",
                c.revision,
                at(&d["updated_at"]),
                c.effective_from_window_end.map_or("next window".into(), |e| e.to_string()),
                c.hot_score.decay_lambda,
                c.hot_score.top_n,
                c.hot_score.plugin.as_ref().map_or("builtin".into(), |p| p.label()),
                d.get("candidate").filter(|c| !c.is_null()).map_or("-".into(), |c| c.to_string())
            ),
            Err(e) => println!("{:>8} {:<25} INVALID: {e}", d["revision"], at(&d["updated_at"])),
        }
    }
    Ok(())
}

/// `scenario quotas`: shows a tenant's quotas, after deep-merging `body` into its document.
async fn quotas(service: &ScenarioService, tenant_id: &str, body: Option<&str>) -> anyhow::Result<()> {
    let store = service.store();
    let mut doc = store.tenant(tenant_id).await?.unwrap_or_else(|| serde_json::json!({"tenant_id": tenant_id}));
    if let Some(b) = body {
        deep_merge(&mut doc, &serde_json::from_str(b).context("--body is not valid JSON")?);
        doc["tenant_id"] = Value::from(tenant_id);
        parse_tenant(&doc)?;
        store.put_tenant(&doc).await?;
    }
    let (_, q) = parse_tenant(&doc)?;
    println!(
        "tenant {tenant_id}: max_scenarios {} max_module_bytes {} cpu_ms_per_window {} max_instance_memory_bytes {}",
        q.max_scenarios, q.max_module_bytes, q.cpu_ms_per_window, q.max_instance_memory_bytes
    );
    Ok(())
}
