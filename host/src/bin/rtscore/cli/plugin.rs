//! `rtscore plugin ...`: the plugin author's loop — test a module on recorded events, publish
//! it to a plugins directory or a fleet's MongoDB, list what is published — and the operator's
//! `share`, which lets every tenant reference a tenant's module.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::store_args::StoreArgs;
use rtscore::admin::plugins::PluginTarget;
use rtscore::admin::{PluginQuota, PluginService, ScenarioService};
use rtscore::config::store::ScenarioStore;

#[derive(Debug, Args)]
pub struct PluginArgs {
    #[command(subcommand)]
    pub command: PluginCommand,
    /// With a MongoDB URL, modules are published to / listed and shared in the fleet's
    /// `plugins` collection instead of --plugins-dir; scenario documents (checked before
    /// `share --unshare`) are found by the same rule as for `run` and `scenario`.
    #[command(flatten)]
    pub store: StoreArgs,
    /// The plugins directory hosts watch.
    #[arg(long, global = true, default_value = "target/plugins", env = "RTSCORE_PLUGINS_DIR")]
    pub plugins_dir: PathBuf,
    // `plugin test` and `plugin share` read scenario documents.
    #[command(flatten)]
    pub docs: super::doc_args::DocArgs,
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Check that a module loads in the sandbox, then publish it as <name>@<version>, without an
    /// owner (shared: every tenant's scenarios may reference it); prints the reference to put in
    /// the scenario section of its world (hot_score.plugin, metrics.plugin or
    /// user_profile.plugin).
    Publish {
        /// The component (e.g. target/wasm32-wasip2/release/my_plugin.wasm).
        module: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        version: String,
    },
    /// List published modules with their sha256, whether every tenant may use them, and owner.
    List,
    /// Share a tenant's module with every tenant (or, with --unshare, take that back).
    ///
    /// A scenario may reference only modules of its own tenant and shared ones. Modules
    /// published here or placed in the plugins directory by hand have no owner and are always
    /// shared; modules a tenant uploaded through the admin API are its own until shared.
    /// --unshare is refused while scenarios of other tenants reference the module (they would
    /// lose it at their next load): point them elsewhere first.
    Share {
        /// The module, as <name>@<version>.
        #[arg(value_name = "NAME@VERSION")]
        plugin: String,
        /// Take the shared mark off: only the owner's scenarios may reference it again.
        #[arg(long)]
        unshare: bool,
    },
    /// Run a module of any world (hot-score, metrics or user-profile) over recorded events with a
    /// scenario document, as a host would, and print that job's output as JSON lines.
    ///
    /// The module's world is detected from its exports; it goes into the document's
    /// hot_score.plugin, metrics.plugin or user_profile.plugin, and only that job runs. Printed:
    /// hot lists for a scorer, metrics windows (with the module's `plugin_metrics`) for a
    /// metrics plugin, profile writes for a profile plugin. Exits non-zero, with the reason,
    /// when the module fails to load, configure or run on a window or profile write (a host
    /// would fall back to its built-in path), or when it never ran: no window of the scenario,
    /// or no profile write.
    Test {
        module: PathBuf,
        /// A scenario document; the plugin of the module's section is replaced by this module.
        #[arg(long)]
        scenario: PathBuf,
        /// Events, one JSON object per line.
        #[arg(long)]
        events_file: PathBuf,
        /// Plugin parameters as JSON (default: the document's, or {}).
        #[arg(long)]
        params: Option<String>,
    },
    /// Scaffold a plugin crate of any world (--world hot, profile or metrics), with a passing
    /// test, a sample scenario and events; with --lang python or js, a hot-score plugin in that
    /// language.
    ///
    /// The crate holds a formula of the world with a passing native test, a sample scenario that
    /// references the module from the world's section and events that make it run under
    /// `plugin test`, and a README with the build, test and publish commands. It is its own
    /// workspace and builds anywhere; it takes the SDK by path (default: the guest-sdk this
    /// binary was built from) or by git.
    New {
        /// The plugin's name: [a-z][a-z0-9_-]{0,63}, also its Cargo package name.
        name: String,
        /// The plugin world to implement: hot (hot_score.plugin), profile (user_profile.plugin)
        /// or metrics (metrics.plugin).
        #[arg(long, value_enum, default_value = "hot")]
        world: super::plugin_new::World,
        /// The language: rust (a Cargo crate, every world), python (componentize-py) or js
        /// (componentize-js); Python and JavaScript plugins are hot-score plugins and carry a copy
        /// of their SDK and of the WIT contract.
        #[arg(long, value_enum, default_value = "rust")]
        lang: super::plugin_new::Lang,
        /// Where to create the crate (default: ./NAME); must not exist or be empty.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The guest SDK's directory (rtscore's guest-sdk/).
        #[arg(long, conflicts_with = "sdk_git")]
        sdk_path: Option<PathBuf>,
        /// A git URL of rtscore's repository, for the SDK.
        #[arg(long)]
        sdk_git: Option<String>,
    },
}

fn read_module(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read module {}", path.display()))
}

pub async fn run(args: PluginArgs) -> anyhow::Result<()> {
    args.docs.install()?;
    match args.command {
        PluginCommand::New { name, world, lang, dir, sdk_path, sdk_git } if lang != super::plugin_new::Lang::Rust => {
            use super::plugin_new::{Lang, World, render_lang, write};
            if world != World::Hot {
                bail!("Python and JavaScript plugins are hot-score plugins (--world hot); write a {world:?} plugin in Rust");
            }
            if sdk_path.is_some() || sdk_git.is_some() {
                bail!("--sdk-path and --sdk-git are for Rust crates: a {lang:?} plugin carries a copy of its SDK");
            }
            let files = render_lang(&name, lang)?;
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            write(&dir, &files)?;
            let d = dir.display();
            println!("created {lang:?} plugin {name} in {d}:");
            for (rel, _) in files.iter().filter(|(r, _)| !r.starts_with("rtscore") && !r.starts_with("wit/")) {
                println!("  {rel}");
            }
            println!("  (and the guest SDK and WIT contract it builds against)");
            println!("next:");
            let test = if lang == Lang::Python { "python3 -m unittest" } else { "node --test" };
            println!("  cd {d} && {test}                       # the formula, natively");
            println!("  ./build.sh                                          # the component: {name}.wasm");
            println!("  rtscore plugin test {name}.wasm --scenario scenario.json --events-file events.jsonl   # hot lists");
        }
        PluginCommand::New { name, world, dir, sdk_path, sdk_git, .. } => {
            use super::plugin_new::{SdkSource, default_sdk, render, write};
            let sdk = match (sdk_path, sdk_git) {
                (Some(p), _) => SdkSource::Path(std::path::absolute(&p).with_context(|| format!("--sdk-path {}", p.display()))?),
                (None, Some(url)) => SdkSource::Git(url),
                (None, None) => SdkSource::Path(default_sdk().context(
                    "the guest SDK this binary was built from is not on this machine: give --sdk-path DIR (rtscore's guest-sdk/) or --sdk-git URL",
                )?),
            };
            let files = render(&name, world, &sdk)?;
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            write(&dir, &files)?;
            let d = dir.display();
            println!("created plugin crate {name} in {d}:");
            for (rel, _) in &files {
                println!("  {rel}");
            }
            println!("next:");
            println!("  cd {d} && cargo test                              # the formula, natively");
            println!("  cargo build --release --target wasm32-wasip2      # the component");
            println!(
                "  rtscore plugin test target/wasm32-wasip2/release/{}.wasm --scenario scenario.json --events-file events.jsonl   # {}",
                name.replace('-', "_"),
                world.test_output().0
            );
        }
        PluginCommand::Publish { module, name, version } => {
            let bytes = read_module(&module)?;
            // The check compiles the module: kept in the hosts' default compiled-plugin cache, so
            // a host of this machine that loads it next reads it instead of compiling it again.
            let service = PluginService::new(
                PluginTarget::open(args.store.mongodb_url.as_deref(), &args.store.mongodb_database, &args.plugins_dir).await?,
            )
            .with_compile_cache(rtscore::plugin::disk_cache::default_dir());
            let m = service
                .publish(None, &name, &version, bytes, PluginQuota::OPERATOR)
                .await
                .with_context(|| format!("{} cannot be published", module.display()))?;
            println!("published {}@{} ({} bytes) to {}", m.name, m.version, m.size, service.describe());
            println!("reference: {}", serde_json::json!({"plugin": m.reference()}));
        }
        PluginCommand::List => {
            let service = PluginService::new(
                PluginTarget::open(args.store.mongodb_url.as_deref(), &args.store.mongodb_database, &args.plugins_dir).await?,
            );
            println!("{:<28} {:>10}  {:<64}  {:<6}  owner", "module", "bytes", "sha256", "shared");
            for m in service.list(None).await? {
                println!(
                    "{:<28} {:>10}  {:<64}  {:<6}  {}",
                    format!("{}@{}", m.name, m.version),
                    m.size,
                    m.sha256,
                    if m.shared { "yes" } else { "no" },
                    m.owner.as_deref().unwrap_or("-")
                );
            }
        }
        PluginCommand::Share { plugin, unshare } => {
            let Some((name, version)) = plugin.split_once('@') else {
                bail!("{plugin:?}: give the module as <name>@<version>, e.g. gravity@1.0.0");
            };
            let service = PluginService::new(
                PluginTarget::open(args.store.mongodb_url.as_deref(), &args.store.mongodb_database, &args.plugins_dir).await?,
            );
            // The scenarios checked for references before --unshare.
            let store = ScenarioStore::open(&args.store.source(), &args.store.mongodb_database).await?;
            let m = service
                .set_shared(&ScenarioService::new(store), name, version, !unshare)
                .await
                .with_context(|| format!("{plugin} cannot be {}", if unshare { "unshared" } else { "shared" }))?;
            match (m.shared, m.owner.as_deref()) {
                (true, None) => println!("{plugin} has no owner: it is shared with every tenant ({})", service.describe()),
                (true, Some(o)) => println!("shared {plugin} (owner {o}) with every tenant ({})", service.describe()),
                (false, o) => println!("{plugin} is no longer shared: only tenant {} may reference it", o.unwrap_or("-")),
            }
        }
        PluginCommand::Test { module, scenario, events_file, params } => {
            super::plugin_test::run(super::plugin_test::TestRun { module, scenario, events_file, params }).await?;
        }
    }
    Ok(())
}
