//! The async runtime: wires a source, the config store, the pipeline and the sinks together and
//! runs until the input ends or the process is told to stop.

mod outputs;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::cli::{RunArgs, ViewMode};
use crate::config::{ConfigChange, ScenarioRegistry, dir_store};
use crate::http;
use crate::pipeline::{Pipeline, PipelineOptions, ScenarioFilter};
use crate::sources::{self, SourceMessage};
use outputs::Outputs;

/// Runs the job described by `args` to completion.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let view =
        args.view.unwrap_or(if std::io::IsTerminal::is_terminal(&std::io::stdout()) && args.jsonl_out.as_deref() != Some("-".as_ref()) {
            ViewMode::Live
        } else {
            ViewMode::Log
        });
    let opts = PipelineOptions {
        jobs: args.job,
        filter: ScenarioFilter { tenant_id: args.tenant_id.clone(), scenario_id: args.scenario_id.clone() },
        allowed_lateness_ms: args.allowed_lateness_ms,
        ..PipelineOptions::default()
    };
    let mut pipeline = Pipeline::new(opts);
    let mut registry = ScenarioRegistry::default();
    let (health, health_view) = http::health();
    if let Some(addr) = args.http_addr {
        let metrics = http::install_metrics()?;
        http::serve(addr, health_view, Some(metrics)).await?;
    }

    // Configuration: everything is loaded before the first event is processed.
    let (dir_tx, mut dir_rx) = mpsc::channel::<()>(4);
    let _watcher = if args.mongodb_url.is_none() {
        reload_dir(&args, &mut registry, &mut pipeline)?;
        Some(dir_store::watch_dir(&args.scenarios_dir, dir_tx)?)
    } else {
        anyhow::bail!("--mongodb-url is not wired yet");
    };

    let mut outputs = Outputs::open(&args, view).await?;
    health.set_ready(true);

    // Source.
    let (tx, mut rx) = mpsc::channel::<SourceMessage>(8);
    let source_task = if let Some(path) = &args.events_file {
        sources::file::spawn_file_source(path.clone(), tx)
    } else if args.kafka_servers.is_some() {
        anyhow::bail!("--kafka-servers is not wired yet");
    } else {
        let keys: Vec<_> = registry.entries().filter_map(|(_, e)| e.applied.as_ref().map(|c| c.key.clone())).collect();
        sources::generator::spawn_generator(sources::generator::GeneratorConfig::from_args(&args, keys), tx)
    };

    let mut out = Vec::new();
    let mut rejects = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(SourceMessage::Records(batch)) => {
                    pipeline.process(&batch, &mut out, &mut rejects);
                    outputs.dead_letters(&batch, &rejects).await?;
                    outputs.write(&out).await?;
                    out.clear();
                    rejects.clear();
                }
                Some(SourceMessage::End) | None => {
                    pipeline.finish(&mut out);
                    outputs.write(&out).await?;
                    break;
                }
            },
            Some(()) = dir_rx.recv() => reload_dir(&args, &mut registry, &mut pipeline)?,
            _ = tick.tick() => {
                let rows = status::snapshot(&registry, &pipeline);
                status::export_metrics(pipeline.stats(), &rows);
                health.set_status(serde_json::json!({ "scenarios": rows, "stats": {
                    "events_in": pipeline.stats().events_in, "rejected": pipeline.stats().rejected,
                    "late": pipeline.stats().late, "unknown_scenario": pipeline.stats().unknown_scenario } }));
                outputs.tick(pipeline.stats());
            }
            _ = &mut shutdown => {
                tracing::info!("shutting down");
                break;
            }
        }
    }
    outputs.close().await?;
    let stats = pipeline.stats();
    tracing::info!(
        events = stats.events_in,
        rejected = stats.rejected,
        late = stats.late,
        unknown_scenario = stats.unknown_scenario,
        duplicates = stats.duplicates,
        "done"
    );
    drop(rx);
    let _ = source_task.await;
    Ok(())
}

fn reload_dir(args: &RunArgs, registry: &mut ScenarioRegistry, pipeline: &mut Pipeline) -> anyhow::Result<()> {
    let read = dir_store::read_dir_documents(&args.scenarios_dir)?;
    for e in read.errors {
        tracing::error!(error = %e, "scenario file is not a JSON document; ignored");
    }
    let changes = registry.resync(&read.docs);
    apply_changes(&changes, pipeline);
    Ok(())
}

fn apply_changes(changes: &[ConfigChange], pipeline: &mut Pipeline) {
    for c in changes {
        match c {
            ConfigChange::Applied(cfg) => {
                tracing::info!(scenario = %cfg.key, revision = cfg.revision, "config applied");
                pipeline.apply_config(&cfg.key, Some(Arc::clone(cfg)));
            }
            ConfigChange::Removed(key) => {
                tracing::info!(scenario = %key, "scenario removed");
                pipeline.apply_config(key, None);
            }
            ConfigChange::Rejected { key, error, origin } => {
                tracing::error!(scenario = key.as_ref().map(|k| k.to_string()).unwrap_or_default(), %origin, %error, "invalid scenario document; keeping the last valid config");
            }
            ConfigChange::Unchanged => {}
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return ctrl_c.await.unwrap_or(()),
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
