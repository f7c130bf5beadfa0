//! The async runtime: wires a source, the config feed, the pipeline and the sinks together and
//! runs until the input ends or the process is told to stop.

mod config_feed;
mod in_flight;
mod outputs;
mod plugins;
mod snapshots;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::cli::run_args::ConfigSource;
use crate::cli::{RunArgs, ViewMode};
use crate::config::mongo::MongoScenarioStore;
use crate::config::{ConfigChange, ScenarioRegistry};
use crate::http;
use crate::pipeline::{Pipeline, PipelineOptions, ScenarioFilter};
use crate::sources::kafka::{KafkaSourceConfig, PartitionChange, spawn_kafka_source};
use crate::sources::{self, Backlog, SourceMessage};
use crate::text::cap_error;
use config_feed::ConfigFeed;
use in_flight::InFlight;
use outputs::Outputs;
use plugins::PluginCoordinator;
use snapshots::Snapshots;

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
        partition_idle_ms: args.partition_idle_ms,
        // The generator runs event time ahead of the clock on purpose.
        max_event_skew_ms: if args.events_file.is_none() && args.kafka_servers.is_none() { None } else { args.max_event_skew.0 },
        dead_letter_dropped: args.dead_letter_all,
        ..PipelineOptions::default()
    };
    let mut pipeline = Pipeline::new(opts);
    let mut registry = ScenarioRegistry::default();
    let (health, health_view) = http::health();
    let live = args.http_addr.map(|_| crate::sinks::live::LiveView::new());
    if let (Some(addr), Some(live)) = (args.http_addr, &live) {
        let metrics = http::install_metrics()?;
        let admin = crate::api::AdminState::open(&args, live.clone()).await?;
        http::serve(addr, health_view, Some(metrics), Some(admin)).await?;
    }
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown_signal());

    // Configuration: the first complete set is applied before any event is processed.
    let (cfg_tx, mut cfg_rx) = mpsc::channel::<ConfigFeed>(16);
    let config_source = args.config_source();
    let _watcher = match &config_source {
        ConfigSource::Dir(dir) => Some(config_feed::start_dir(dir.clone(), cfg_tx)?),
        ConfigSource::Mongo(url) => {
            let intervals = config_feed::PollIntervals {
                poll: Duration::from_millis(args.config_poll_ms.max(10)),
                resync: Duration::from_millis(args.config_resync_ms.max(100)),
            };
            let connect =
                config_feed::connect_mongo(url.clone(), args.store.mongodb_database.clone(), intervals, cfg_tx, shutdown_rx.clone());
            tokio::select! {
                r = connect => r?,
                _ = &mut shutdown => return Ok(()),
            }
            None
        }
    };
    let mut store_error: Option<String> = None;
    // Tenant quotas come first, then the first snapshot of scenarios.
    while let Some(feed) = cfg_rx.recv().await {
        let snapshot = matches!(feed, ConfigFeed::Snapshot(_));
        apply_feed(feed, &mut registry, &mut pipeline, &mut store_error);
        if snapshot {
            break;
        }
    }

    // Plugins: every referenced module is loaded before the first event.
    let plugin_mongo = match &config_source {
        ConfigSource::Mongo(url) => Some(MongoScenarioStore::connect(url, &args.store.mongodb_database).await?),
        ConfigSource::Dir(_) => None,
    };
    let mut plugins = PluginCoordinator::start(&args.plugins_dir, plugin_mongo.as_ref()).await?;
    plugins.set_tenants(registry.tenants());
    pipeline.set_tenant_quotas(registry.tenants().clone());
    plugins.sync(&mut pipeline, true).await;

    let mut outputs = Outputs::open(&args, view, &health).await?.with_live(live);
    let mut committer: Option<crate::sources::kafka::KafkaCommitter> = None;
    // Kafka with Redis: partition state is snapshotted and offsets follow the snapshots.
    let mut snapshots: Option<Snapshots> = None;
    let mut kafka_lag: Option<Arc<std::sync::atomic::AtomicI64>> = None;
    let (_no_partitions_tx, mut partition_changes) = mpsc::unbounded_channel::<PartitionChange>();

    // Source.
    let (tx, mut rx) = sources::channel(8);
    let backlog = rx.backlog();
    let source_task = if let Some(path) = &args.events_file {
        sources::file::spawn_file_source(path.clone(), tx)
    } else if let Some(brokers) = &args.kafka_servers {
        let cfg = KafkaSourceConfig {
            brokers: brokers.clone(),
            topic: args.topic.clone(),
            group_id: args.consumer_group(),
            client_id: format!("rtscore-{}", std::process::id()),
            reachable: health.source_ok_flag(),
            options: args.kafka_options.clone(),
        };
        let source = spawn_kafka_source(cfg, tx, shutdown_rx.clone())?;
        committer = Some(source.committer);
        if outputs.redis_mut().is_some() {
            let store = crate::snapshot::store::SnapshotStore::new(&args.consumer_group(), &args.topic);
            snapshots = Some(Snapshots::new(store, Duration::from_millis(args.snapshot_interval_ms.max(100))));
        }
        kafka_lag = Some(source.lag);
        partition_changes = source.partition_changes;
        source.task
    } else {
        let keys: Vec<_> = registry.entries().filter_map(|(_, e)| e.applied.as_ref().map(|c| c.key.clone())).collect();
        sources::generator::spawn_generator(sources::generator::GeneratorConfig::from_args(&args, keys), tx)
    };
    health.set_ready(true);
    let status_page = StatusPage { health: &health, kafka_lag: kafka_lag.clone(), backlog: backlog.clone() };

    let mut out = Vec::new();
    let mut rejects = Vec::new();
    // A quarter of a second: `/status` stays well within a second old, even with a turn or a
    // snapshot store in between.
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut registry_closed = false;
    let mut warned_cross_partition = false;
    let mut in_flight: Option<InFlight> = None;
    let mut last_view = std::time::Instant::now();
    loop {
        // Control first, then data: every arm above the records is rare or cheap, and a batch is
        // processed in turns of at most `TURN_BUDGET`, so under any backlog a signal, a config
        // change, a plugin install or a tick waits for one turn at most (docs/operations.md,
        // "Control under load").
        tokio::select! {
            biased;
            _ = &mut shutdown => {
                tracing::info!(queued_events = backlog.queued_events(), "shutting down");
                break;
            }
            // Between batches only: a batch's records were admitted under the assignment they
            // arrived with, and a batch after an assignment may hold the new partitions'
            // records, which must meet their restored state.
            Some(change) = partition_changes.recv(), if in_flight.is_none() => match (change, &mut snapshots, outputs.redis_mut()) {
                (PartitionChange::Assigned(p), Some(s), Some(redis)) => s.assign(&p, &mut pipeline, redis, wall_ms()).await?,
                (PartitionChange::Revoked(p), Some(s), Some(redis)) => s.revoke(&p, &mut pipeline, redis).await?,
                (PartitionChange::Assigned(p), _, _) => pipeline.assign_partitions(&p, wall_ms()),
                (PartitionChange::Revoked(p), _, _) => pipeline.revoke_partitions(&p),
            },
            Some(feed) = cfg_rx.recv() => {
                apply_feed(feed, &mut registry, &mut pipeline, &mut store_error);
                plugins.set_tenants(registry.tenants());
                pipeline.set_tenant_quotas(registry.tenants().clone());
                plugins.sync(&mut pipeline, false).await;
                // Operators see a change at once, not at the next tick.
                status_page.publish(&registry, &pipeline, &store_error, snapshots.as_ref());
            }
            Some(prepared) = plugins.done_rx.recv() => plugins.installed(prepared, &mut pipeline),
            change = plugins.changes.recv(), if !registry_closed => match change {
                Err(tokio::sync::broadcast::error::RecvError::Closed) => registry_closed = true,
                change => plugins.registry_changed(change, &mut pipeline).await,
            },
            _ = tick.tick() => {
                // While a turn's outputs are being written, the state is ahead of the records
                // marked processed: no new outputs and no snapshot until they are.
                let consistent = in_flight.as_ref().is_none_or(InFlight::consistent);
                if consistent {
                    // A partition that went quiet may release the watermark.
                    pipeline.tick(wall_ms(), &mut out);
                    outputs.write(&out).await?;
                    out.clear();
                }
                if consistent {
                    // Status on both sides of the store, which may take a while with much state.
                    let before = |s: &Snapshots| _ = status_page.publish(&registry, &pipeline, &store_error, Some(s));
                    snapshot_if_due(snapshots.as_mut(), committer.as_ref(), &mut outputs, &pipeline, before).await?;
                }
                if let Some(age) = snapshots.as_ref().and_then(Snapshots::age_seconds) {
                    metrics::gauge!("rtscore_snapshot_age_seconds").set(age);
                }
                let (rows, tenants) = status_page.publish(&registry, &pipeline, &store_error, snapshots.as_ref());
                if !warned_cross_partition && pipeline.stats().cross_partition > 0 {
                    warned_cross_partition = true;
                    tracing::warn!(
                        "events of one scenario arrive on several partitions: one host computes them exactly, but several \
                         hosts in this group would each see part of a scenario; key the topic by tenant_id/scenario_id \
                         (docs/operations.md, \"Running a fleet\")"
                    );
                }
                status::export_metrics(pipeline.stats(), &rows);
                outputs.status(&rows).await?;
                // The terminal view and the console redraw once a second: faster, the console's
                // fragments would be replaced under the operator's cursor.
                if last_view.elapsed() >= Duration::from_secs(1) {
                    last_view = std::time::Instant::now();
                    outputs.tick(pipeline.stats(), &rows, &tenants, backlog.input_progress());
                }
            }
            msg = rx.recv(), if in_flight.is_none() => match msg {
                Some(SourceMessage::Records(batch)) => {
                    let batch = match &mut snapshots {
                        Some(s) => s.admit(batch),
                        None => batch,
                    };
                    in_flight = Some(InFlight::new(batch));
                }
                Some(SourceMessage::End) | None => {
                    pipeline.finish(&mut out);
                    outputs.write(&out).await?;
                    break;
                }
            },
            () = std::future::ready(()), if in_flight.is_some() => {
                let Some(f) = in_flight.as_mut() else { continue };
                let started = std::time::Instant::now();
                f.process(&mut pipeline, in_flight::TURN_BUDGET, wall_ms, &mut rejects);
                health.set_events_in(pipeline.stats().events_in);
                outputs.dead_letters(f.batch(), &rejects)?;
                rejects.clear();
                // Outputs in pieces too: a window closing over many users' profiles must not
                // hold control either.
                while let Some(chunk) = f.unwritten() {
                    outputs.write(chunk).await?;
                    if started.elapsed() >= in_flight::TURN_BUDGET {
                        break;
                    }
                }
                if let Some((done, produced_at, written)) = f.take_written() {
                    record_emission_delay(written, produced_at);
                    mark_processed(f.batch(), done, snapshots.as_mut(), committer.as_ref())?;
                    // A snapshot the tick had to defer (outputs were being written) is stored as
                    // soon as the state is consistent again.
                    let before = |s: &Snapshots| _ = status_page.publish(&registry, &pipeline, &store_error, Some(s));
                    snapshot_if_due(snapshots.as_mut(), committer.as_ref(), &mut outputs, &pipeline, before).await?;
                }
                if f.is_done() {
                    in_flight = None;
                }
                // Other tasks on this worker (HTTP, sinks) get their turn too.
                tokio::task::yield_now().await;
            }
        }
    }
    let _ = shutdown_tx.send(true);
    let consistent = finish_outputs(in_flight.as_mut(), &mut outputs, snapshots.as_mut(), committer.as_ref()).await?;
    // Graceful stop: the state of every owned partition is stored and its offsets committed,
    // so the next owner (or this host, upgraded) continues without replay.
    if let (Some(s), Some(c), Some(redis), true) = (&mut snapshots, &committer, outputs.redis_mut(), consistent) {
        s.save(&pipeline, redis, c, true).await?;
    }
    let rows = status::snapshot(&registry, &pipeline);
    outputs.status(&rows).await?;
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
    // Freeing millions of small allocations (windows, profiles) takes a good part of a second:
    // off this thread, so the exit does not wait for it.
    std::thread::spawn(move || drop((pipeline, in_flight, out)));
    Ok(())
}

/// At shutdown: writes the outputs of the last turn that are still unwritten, for up to half
/// a second (the exit stays within its 2 s bound), and marks their records processed. Returns whether the state is consistent with the
/// records marked processed (a final snapshot may be stored); if not, the next owner resumes
/// from the last snapshot and reads those records again, so nothing is lost.
async fn finish_outputs(
    in_flight: Option<&mut InFlight>,
    outputs: &mut Outputs,
    snapshots: Option<&mut Snapshots>,
    committer: Option<&crate::sources::kafka::KafkaCommitter>,
) -> anyhow::Result<bool> {
    let Some(f) = in_flight else { return Ok(true) };
    let deadline = std::time::Instant::now() + Duration::from_millis(500);
    while std::time::Instant::now() < deadline
        && let Some(chunk) = f.unwritten()
    {
        outputs.write(chunk).await?;
    }
    if let Some((done, _, _)) = f.take_written() {
        mark_processed(f.batch(), done, snapshots, committer)?;
    }
    if !f.consistent() {
        tracing::warn!("stopped while writing a window's outputs: no final snapshot; the next owner resumes from the last one");
    }
    Ok(f.consistent())
}

/// Stores every owned partition's state and commits its offsets if the snapshot interval has
/// passed. Only call it while the state covers exactly the records marked processed.
async fn snapshot_if_due(
    snapshots: Option<&mut Snapshots>,
    committer: Option<&crate::sources::kafka::KafkaCommitter>,
    outputs: &mut Outputs,
    pipeline: &Pipeline,
    before: impl FnOnce(&Snapshots),
) -> anyhow::Result<()> {
    if let (Some(s), Some(c), Some(redis)) = (snapshots, committer, outputs.redis_mut())
        && s.due()
    {
        before(s);
        s.save(pipeline, redis, c, false).await?;
    }
    Ok(())
}

/// The records of `batch` in `range` have their outputs written: offsets may move past them
/// (with snapshots, once the state covering them is stored).
fn mark_processed(
    batch: &crate::event::RecordBatch,
    range: std::ops::Range<usize>,
    snapshots: Option<&mut Snapshots>,
    committer: Option<&crate::sources::kafka::KafkaCommitter>,
) -> anyhow::Result<()> {
    match (snapshots, committer) {
        (Some(s), _) => s.processed(batch, range),
        (None, Some(c)) => c.commit(batch, range)?,
        (None, None) => {}
    }
    Ok(())
}

fn apply_feed(feed: ConfigFeed, registry: &mut ScenarioRegistry, pipeline: &mut Pipeline, store_error: &mut Option<String>) {
    let changes = match feed {
        ConfigFeed::Snapshot(docs) => registry.resync(&docs, wall_ms()),
        ConfigFeed::Changed(docs) => docs.iter().map(|(d, origin)| registry.apply_document(d, origin, wall_ms())).collect(),
        ConfigFeed::Tenants(docs) => {
            let (tenants, errors) = crate::config::tenant::TenantTable::from_documents(&docs);
            for e in errors {
                tracing::error!(error = %cap_error(&e.to_string()), "invalid tenant document; that tenant keeps the default quotas");
            }
            registry.set_tenants(tenants);
            return;
        }
        ConfigFeed::Unavailable(e) => {
            tracing::error!(error = %e, "config store unavailable; running on the last valid configs");
            *store_error = Some(e);
            return;
        }
        ConfigFeed::Recovered => {
            tracing::info!("config store reachable again");
            *store_error = None;
            return;
        }
    };
    for c in &changes {
        match c {
            ConfigChange::Applied(cfg) => {
                let lag = registry.get(&cfg.key).and_then(|e| e.propagation_ms);
                if let Some(ms) = lag {
                    metrics::histogram!("rtscore_config_propagation_seconds").record(ms as f64 / 1000.0);
                }
                tracing::info!(scenario = %cfg.key, revision = cfg.revision, propagation_ms = lag, "config applied");
                pipeline.apply_config(&cfg.key, Some(Arc::clone(cfg)));
            }
            ConfigChange::Removed(key) => {
                tracing::info!(scenario = %key, "scenario removed; its state is freed");
                pipeline.apply_config(key, None);
            }
            ConfigChange::Rejected { key, error, origin } => {
                let scenario = key.as_ref().map(|k| k.to_string()).unwrap_or_default();
                // The error echoes the tenant's document: capped.
                tracing::error!(%scenario, %origin, error = %cap_error(&error.to_string()), "invalid scenario document; keeping the last valid config");
            }
            ConfigChange::Unchanged => {}
        }
    }
}

/// What `/status` is made of besides the registry, the pipeline and the snapshots: fixed once
/// the source runs.
struct StatusPage<'a> {
    health: &'a http::HealthReporter,
    kafka_lag: Option<Arc<std::sync::atomic::AtomicI64>>,
    backlog: Arc<Backlog>,
}

impl StatusPage<'_> {
    /// Updates `/status` and returns its scenario and tenant rows.
    fn publish(
        &self,
        registry: &ScenarioRegistry,
        pipeline: &Pipeline,
        store_error: &Option<String>,
        snapshots: Option<&Snapshots>,
    ) -> (Vec<status::ScenarioStatusRow>, Vec<status::TenantStatusRow>) {
        let kafka_lag = self.kafka_lag.as_deref().map(|l| l.load(std::sync::atomic::Ordering::Relaxed)).filter(|l| *l >= 0);
        let rows = status::snapshot(registry, pipeline);
        let tenants = status::tenant_rows(&rows, pipeline);
        status::export_tenant_metrics(&tenants);
        let stats = pipeline.stats();
        let now = wall_ms();
        let watermark = pipeline.watermark(now);
        let backlog = status::BacklogStatus::read(&self.backlog, kafka_lag, watermark, now);
        backlog.export_metrics();
        self.health.set_status(serde_json::json!({
            "updated_at_ms": now,
            "scenarios": &rows,
            "tenants": &tenants,
            "config_store_error": store_error,
            "watermark": watermark,
            "backlog": backlog,
            "kafka_lag": kafka_lag,
            "partitions": snapshots.map(Snapshots::owned),
            "snapshot_age_seconds": snapshots.and_then(Snapshots::age_seconds),
            "stats": { "events_in": stats.events_in, "rejected": stats.rejected, "late": stats.late,
                       "unknown_scenario": stats.unknown_scenario, "duplicates": stats.duplicates, "filtered": stats.filtered,
                       "over_quota": stats.over_quota,
                       "cross_partition": stats.cross_partition },
        }));
        (rows, tenants)
    }
}

/// `rtscore_hot_emission_delay_seconds`: from the start of the batch in which the watermark
/// passed a window's end to its hot list being written to every sink (Redis included). An upper
/// bound: the watermark passes the end somewhere inside the batch.
fn record_emission_delay(out: &[crate::output::Output], started: std::time::Instant) {
    let hot = out.iter().filter(|o| matches!(o, crate::output::Output::Hot(_))).count();
    if hot > 0 {
        let delay = started.elapsed().as_secs_f64();
        let h = metrics::histogram!("rtscore_hot_emission_delay_seconds");
        (0..hot).for_each(|_| h.record(delay));
    }
}

fn wall_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
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
