//! The async runtime: wires a source, the config feed, the plugins, the pipeline and the sinks
//! together and runs until the input ends or it is told to stop. Build one from [`Settings`]
//! with [`Runtime::build`], then [`Runtime::run`] it; the binary stops it on SIGTERM, a test or
//! a command with [`Shutdown::manual`].

#[cfg(feature = "http")]
mod admin_state;
mod config_feed;
mod in_flight;
mod members;
mod outputs;
mod plugins;
mod profile_loader;
mod shutdown;
pub mod snapshot_store;
mod snapshots;
mod source;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::config::ScenarioRegistry;
use crate::config::store::ConfigSource;
use crate::health::HealthReporter;
#[cfg(feature = "http")]
use crate::http;
use crate::pipeline::Pipeline;
use crate::settings::Settings;
use crate::sinks::live::LiveView;
use crate::sources::{PartitionChange, SourceMessage};
use config_feed::ConfigFeed;
use in_flight::InFlight;
use outputs::Outputs;
use plugins::PluginCoordinator;
pub use shutdown::Shutdown;
use snapshots::Snapshots;
use source::Source;
use status::StatusPage;

/// Builds a runtime from `settings` and runs it until its input ends or `shutdown`: one
/// pipeline, or with `--threads N` N of them side by side ([`members`]).
pub async fn run(settings: Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    let Some(mut pipelines) = Runtime::build_all(settings, shutdown.clone()).await? else { return Ok(()) };
    if pipelines.len() > 1 {
        return members::run(pipelines, shutdown).await;
    }
    match pipelines.pop() {
        Some(rt) => rt.run(shutdown).await,
        None => Ok(()),
    }
}

/// A runtime with its configuration applied, plugins loaded and sinks open, ready to read events.
pub struct Runtime {
    settings: Settings,
    pipeline: Pipeline,
    registry: ScenarioRegistry,
    health: HealthReporter,
    config: mpsc::Receiver<ConfigFeed>,
    /// Keeps the scenario directory watched.
    _watcher: Option<Arc<notify::RecommendedWatcher>>,
    store_error: Option<String>,
    plugins: PluginCoordinator,
    outputs: Outputs,
    /// Stops the source and the config poller, after the last outputs and commits.
    stop_inputs: watch::Sender<bool>,
    /// `--repartition`: the shuffle's configuration, the internal topic created.
    repartition: Option<source::Repartition>,
    /// With `--threads`: which pipeline this is, and where the pipelines meet for `/status`.
    member: Option<members::Member>,
}

impl Runtime {
    /// Connects the stores (one MongoDB client for the config feed, the plugin registry and the
    /// admin API), serves HTTP, applies the first complete set of scenario documents, loads
    /// every plugin they reference and opens the sinks. `None` when `shutdown` came first
    /// (MongoDB may be waited for, and plugins take a while to load). One pipeline:
    /// `--threads` is for [`run`].
    pub async fn build(settings: Settings, shutdown: Shutdown) -> anyhow::Result<Option<Runtime>> {
        anyhow::ensure!(settings.threads() == Some(1), "Runtime::build makes one pipeline; runtime::run runs --threads");
        Ok(Self::build_all(settings, shutdown).await?.and_then(|mut v| v.pop()))
    }

    /// [`Self::build`] for every pipeline of `--threads`: they share the stores' clients, the
    /// HTTP server, the config feed, the plugin registry and compiled modules (and the tenants'
    /// plugin CPU and memory accounts), and the `--jsonl-out` file; each has its own Kafka
    /// consumer, pipeline state, snapshots, Redis connection and plugin instances.
    async fn build_all(settings: Settings, shutdown: Shutdown) -> anyhow::Result<Option<Vec<Runtime>>> {
        settings.check_build()?;
        let mongo = match &settings.store.source {
            #[cfg(feature = "mongodb")]
            ConfigSource::Mongo(url) => {
                match config_feed::connect_mongo(
                    url,
                    &settings.store.mongodb_database,
                    settings.store.create_indexes,
                    &mut shutdown.clone(),
                )
                .await
                {
                    Some(m) => Some(m),
                    None => return Ok(None),
                }
            }
            _ => None,
        };
        let topology = prepare_repartition(&settings).await?;
        let n = match settings.threads() {
            Some(n) => n,
            None => auto_threads(&settings, topology).await,
        };
        if n > 1 && topology.is_none() {
            tracing::warn!(
                pipelines = n,
                "the pipelines split the topic's partitions between them: exact when the topic is keyed by tenant_id/scenario_id; \
                 a topic keyed any other way needs --repartition (docs/operations.md, \"Every core of a host\")"
            );
        }
        let (reporters, health_view) = crate::health::members(n);
        let live = settings.http.as_ref().map(|_| LiveView::new());
        #[cfg(feature = "http")]
        if let (Some(h), Some(live)) = (&settings.http, &live) {
            let metrics = http::install_metrics(n > 1)?;
            let admin = admin_state::open(&settings, mongo.clone(), live.clone())?;
            http::serve(h.addr, health_view, Some(metrics), Some(admin)).await?;
        }
        #[cfg(not(feature = "http"))]
        drop(health_view);
        let (stop_inputs, stop_rx) = watch::channel(false);
        let (tx, config) = mpsc::channel::<ConfigFeed>(16);
        let watcher = match (&settings.store.source, &mongo) {
            #[cfg(feature = "mongodb")]
            (ConfigSource::Mongo(_), Some(m)) => {
                let intervals = config_feed::PollIntervals { poll: settings.store.poll, resync: settings.store.resync };
                config_feed::start_mongo(m.clone(), intervals, tx, stop_rx).await?;
                None
            }
            (ConfigSource::Dir(dir), _) => Some(Arc::new(config_feed::start_dir(dir.clone(), tx)?)),
            (ConfigSource::Mongo(url), _) => {
                drop(stop_rx);
                anyhow::bail!("no MongoDB client for {url}")
            }
        };
        let feeds = if n == 1 { vec![config] } else { members::fan_out(config, n) };
        let plugins = PluginCoordinator::start(&settings.plugins_dir, settings.plugin_cache_dir.as_deref(), mongo.as_ref()).await?;
        let jsonl = settings.outputs.jsonl_out.as_deref().map(crate::sinks::jsonl::JsonlSink::create).transpose()?;
        if n > 1 && settings.outputs.view != crate::settings::ViewMode::Off {
            tracing::info!(
                threads = n,
                "the terminal view follows one pipeline, so it is off with --threads; /status, /metrics and the console show every pipeline"
            );
        }
        let board = members::Board::new(n);
        let mut coordinators: Vec<PluginCoordinator> = (1..n).map(|_| plugins.sibling()).collect();
        coordinators.push(plugins);
        let mut built = Vec::with_capacity(n);
        let mut stop_first = Some(stop_inputs);
        for (i, ((config, health), plugins)) in feeds.into_iter().zip(reporters).zip(coordinators).enumerate() {
            let settings = if n == 1 { settings.clone() } else { settings.for_member(i, n)? };
            // The config poller stops with the first pipeline; the others have their own stop.
            let stop_inputs = stop_first.take().unwrap_or_else(|| watch::channel(false).0);
            let repartition = topology.map(|t| source::repartition(&settings, t)).transpose()?;
            let outputs = Outputs::open(&settings.outputs, &health, jsonl.clone()).await?.with_live(live.clone());
            let registry = ScenarioRegistry::requiring_status_active(settings.store.require_status_active);
            let mut pipeline = Pipeline::new(settings.pipeline.clone());
            // Durable profiles need positions to guard replays and Redis to read from: Kafka with
            // Redis. File and generator runs keep profiles in memory only (DESIGN §4).
            if let (Some(k), Some(_)) = (settings.kafka(), &settings.outputs.redis_url) {
                pipeline.enable_profile_read_back(&k.input_topic());
            }
            let member = (n > 1).then(|| members::Member::new(i, board.clone()));
            built.push(Runtime {
                pipeline,
                settings,
                registry,
                health,
                config,
                _watcher: watcher.clone(),
                store_error: None,
                plugins,
                outputs,
                stop_inputs,
                repartition,
                member,
            });
        }
        let first_configs = async {
            for rt in &mut built {
                // Tenant quotas come first, then the first full set of scenarios: applied, with
                // every plugin they reference loaded, before any event is processed.
                while let Some(feed) = rt.config.recv().await {
                    let full = matches!(feed, ConfigFeed::FullSet { .. });
                    config_feed::apply(feed, &mut rt.registry, &mut rt.pipeline, &mut rt.store_error);
                    if full {
                        break;
                    }
                }
                rt.plugins.set_tenants(rt.registry.tenants());
                rt.pipeline.set_tenant_quotas(rt.registry.tenants().clone());
                rt.plugins.sync(&mut rt.pipeline, true).await;
            }
        };
        // Loading plugins can take a while (an interpreter's component compiles for seconds the
        // first time): a stop meanwhile ends the run at once, before anything was consumed.
        let mut stop = shutdown.clone();
        tokio::select! {
            biased;
            () = stop.wait() => {
                tracing::info!("stopped while starting: nothing was consumed");
                return Ok(None);
            }
            () = first_configs => {}
        }
        Ok(Some(built))
    }

    /// Reads events until the input ends or `shutdown`; then writes what is pending, stores a
    /// final snapshot and commits (Kafka), and closes the sinks.
    pub async fn run(self, mut shutdown: Shutdown) -> anyhow::Result<()> {
        let mut r = Running::start(self)?;
        loop {
            // Control first, then data: every arm above the records is rare or cheap, and a
            // batch is processed in turns of at most `TURN_BUDGET`, so under any backlog a
            // signal, a config change, a plugin install or a tick waits for one turn at most
            // (docs/operations.md, "Control under load").
            tokio::select! {
                biased;
                () = shutdown.wait() => {
                    tracing::info!(queued_events = r.source.backlog.queued_events(), "shutting down");
                    break;
                }
                // Between batches only: a batch's records were admitted under the assignment
                // they arrived with, and a batch after an assignment may hold the new
                // partitions' records, which must meet their restored state.
                Some(change) = r.source.partition_changes.recv(), if r.in_flight.is_none() => r.partitions_changed(change).await?,
                Some(feed) = r.rt.config.recv() => r.config_changed(feed).await,
                Some(prepared) = r.rt.plugins.done_rx.recv() => r.rt.plugins.installed(prepared, &mut r.rt.pipeline),
                change = r.rt.plugins.changes.recv(), if !r.registry_closed => match change {
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => r.registry_closed = true,
                    change => r.rt.plugins.registry_changed(change, &mut r.rt.pipeline).await,
                },
                _ = r.tick.tick() => r.tick().await?,
                // Redis acknowledged outputs written behind the pipeline: their records are
                // processed now (offsets, snapshot coverage, emission delay).
                acked = r.rt.outputs.acked_changed(), if !r.unacked.is_empty() => {
                    acked?;
                    r.mark_written()?;
                }
                // A snapshot stored in the background: its offsets are committed now.
                result = Snapshots::write_done(&mut r.snapshots), if r.snapshots.as_ref().is_some_and(Snapshots::writing) => r.snapshot_written(result)?,
                msg = r.source.records.recv(), if r.in_flight.is_none() => match msg {
                    Some(SourceMessage::Records(batch)) => r.admit(batch).await?,
                    Some(SourceMessage::End) | None => {
                        r.end_of_input().await?;
                        break;
                    }
                },
                () = std::future::ready(()), if r.in_flight.is_some() => r.turn().await?,
            }
        }
        r.stop().await
    }
}

/// `--threads auto`: one pipeline per core this process may use, at most one per partition of
/// the topic the pipelines read (more would idle). 1 when the partitions cannot be read.
#[cfg(feature = "kafka")]
async fn auto_threads(settings: &Settings, topology: Option<crate::repartition::Topology>) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let Some(k) = settings.kafka() else { return 1 };
    let partitions = match topology {
        Some(t) => Ok(Some(t.partitions)),
        None => crate::sources::shuffle::topic_partitions(&k.brokers, &k.options, &k.topic).await,
    };
    let n = match &partitions {
        Ok(Some(p)) => cores.min(usize::try_from(*p).unwrap_or(1)).max(1),
        Ok(None) => {
            tracing::warn!(topic = %k.input_topic(), "--threads auto: the topic does not exist yet; running 1 pipeline (set --threads)");
            1
        }
        Err(e) => {
            tracing::warn!(topic = %k.input_topic(), error = %format!("{e:#}"), "--threads auto: cannot read the topic's partitions; running 1 pipeline (set --threads)");
            1
        }
    };
    tracing::info!(pipelines = n, cores, partitions = ?partitions.ok().flatten(), "--threads auto");
    n
}

#[cfg(not(feature = "kafka"))]
async fn auto_threads(_: &Settings, _: Option<crate::repartition::Topology>) -> usize {
    1
}

/// `--repartition`: creates the internal topic (idempotently; every host of a fleet does) and
/// reads both topics' partition counts, before anything is consumed.
#[cfg(feature = "kafka")]
async fn prepare_repartition(settings: &Settings) -> anyhow::Result<Option<crate::repartition::Topology>> {
    let Some(k) = settings.kafka().filter(|k| k.repartition.is_some()) else { return Ok(None) };
    let shuffle = source::shuffle_config(k, settings.event_mapping.clone(), settings.pipeline.max_event_skew_ms);
    let partitions = k.repartition.as_ref().and_then(|r| r.partitions);
    let topology = crate::sources::shuffle::prepare(&shuffle, partitions).await?;
    tracing::info!(source = %k.topic, sources = topology.sources, internal = %shuffle.internal_topic, partitions = topology.partitions, "repartitioning");
    Ok(Some(topology))
}

#[cfg(not(feature = "kafka"))]
async fn prepare_repartition(_: &Settings) -> anyhow::Result<Option<crate::repartition::Topology>> {
    Ok(None)
}

/// Status rows, tenant rows and counts: a pipeline's or the host's.
type Rows =
    (Vec<crate::output::status::ScenarioStatusRow>, Vec<crate::output::status::TenantStatusRow>, crate::output::status::PipelineStats);

/// A runtime reading events: the loop's state besides the runtime.
struct Running {
    rt: Runtime,
    source: Source,
    /// Kafka with Redis: partition state is snapshotted and offsets follow the snapshots.
    snapshots: Option<Snapshots>,
    status: StatusPage,
    in_flight: Option<InFlight>,
    out: Vec<crate::output::Output>,
    rejects: Vec<crate::pipeline::Reject>,
    tick: tokio::time::Interval,
    last_view: std::time::Instant,
    registry_closed: bool,
    warned_cross_partition: bool,
    /// `Pipeline::plugin_switches` at the last plugin sync.
    plugin_switches: u64,
    /// Records whose outputs are written but not yet all acknowledged (Redis writes go out
    /// behind the pipeline): marked processed once they are, oldest first.
    unacked: std::collections::VecDeque<Unacked>,
}

/// Records processed whose outputs are written, waiting for the sinks to hold them.
struct Unacked {
    /// `Outputs::written` after their outputs: they are in every sink once
    /// `Outputs::written_through` reaches it.
    through: u64,
    /// Per partition, the offset after them.
    next: std::collections::BTreeMap<i32, i64>,
    /// When the turn that produced their outputs started, and its hot lists (emission delay).
    produced_at: std::time::Instant,
    hot: usize,
}

impl Running {
    fn start(mut rt: Runtime) -> anyhow::Result<Running> {
        let scenarios = rt.registry.entries().filter_map(|(_, e)| e.applied.as_ref().map(|c| c.key.clone())).collect();
        let source = Source::open(
            &rt.settings.source,
            rt.settings.event_mapping.clone(),
            scenarios,
            &rt.health,
            rt.stop_inputs.subscribe(),
            rt.repartition.take(),
        )?;
        let snapshots = match (rt.settings.kafka(), rt.outputs.redis_mut()) {
            (Some(k), Some(_)) => {
                let store = snapshot_store::SnapshotStore::new(&k.group_id, &k.input_topic());
                Some(Snapshots::new(store, rt.settings.snapshot_interval))
            }
            _ => None,
        };
        rt.health.set_ready(true);
        let status = StatusPage::new(source.lag.clone(), Arc::clone(&source.backlog)).with_shuffle(source.shuffle_stats());
        // A quarter of a second: `/status` stays well within a second old, even with a turn
        // or a snapshot store in between.
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(Running {
            rt,
            source,
            snapshots,
            status,
            in_flight: None,
            out: Vec::new(),
            rejects: Vec::new(),
            tick,
            last_view: std::time::Instant::now(),
            registry_closed: false,
            warned_cross_partition: false,
            plugin_switches: 0,
            unacked: std::collections::VecDeque::new(),
        })
    }

    /// Publishes `/status` and returns this pipeline's rows (its metrics are its own) and, with
    /// `--threads`, the host's: every pipeline's merged (what Redis, the console and the
    /// terminal show); `None` when this pipeline is the host.
    fn publish_status(&self) -> (Rows, Option<Rows>) {
        let (rows, tenants, doc) = self.status.publish(&self.rt.registry, &self.rt.pipeline, &self.rt.store_error, self.snapshots.as_ref());
        let stats = self.rt.pipeline.stats().clone();
        match &self.rt.member {
            None => {
                self.rt.health.set_status(doc);
                ((rows, tenants, stats), None)
            }
            Some(m) => {
                let host = m.publish(members::Report { doc, stats: stats.clone(), rows: rows.clone(), tenants: tenants.clone() });
                self.rt.health.set_status(host.doc);
                ((rows, tenants, stats), Some((host.rows, host.tenants, host.stats)))
            }
        }
    }

    /// Marks processed the records whose outputs every sink holds by now (without waiting);
    /// true when any were.
    fn mark_written(&mut self) -> anyhow::Result<bool> {
        let through = self.rt.outputs.written_through();
        let mut any = false;
        while let Some(u) = self.unacked.front().filter(|u| u.through <= through) {
            record_emission_delay(u.hot, u.produced_at);
            mark_processed(&u.next, self.snapshots.as_mut(), self.source.committer.as_ref())?;
            self.unacked.pop_front();
            any = true;
        }
        Ok(any)
    }

    /// Waits until every output written is in every sink, and marks their records processed.
    async fn settle(&mut self) -> anyhow::Result<()> {
        if !self.unacked.is_empty() || self.rt.outputs.written_through() < self.rt.outputs.written() {
            self.rt.outputs.settle().await?;
        }
        self.mark_written()?;
        Ok(())
    }

    async fn partitions_changed(&mut self, change: PartitionChange) -> anyhow::Result<()> {
        // Between batches: every output so far in Redis and its records marked, so a revoked
        // partition's snapshot covers exactly what was written.
        self.settle().await?;
        let pipeline = &mut self.rt.pipeline;
        match (change, &mut self.snapshots, self.rt.outputs.redis_mut(), &self.source.committer) {
            (PartitionChange::Assigned(p), Some(s), Some(redis), Some(c)) => s.assign(&p, pipeline, redis, c, wall_ms()).await?,
            (PartitionChange::Revoked(p), Some(s), Some(redis), Some(c)) => s.revoke(&p, pipeline, redis, c).await?,
            (PartitionChange::Assigned(p), _, _, _) => pipeline.assign_partitions(&p, wall_ms()),
            (PartitionChange::Revoked(p), _, _, _) => pipeline.revoke_partitions(&p),
        }
        Ok(())
    }

    async fn config_changed(&mut self, feed: ConfigFeed) {
        let rt = &mut self.rt;
        config_feed::apply(feed, &mut rt.registry, &mut rt.pipeline, &mut rt.store_error);
        rt.plugins.set_tenants(rt.registry.tenants());
        rt.pipeline.set_tenant_quotas(rt.registry.tenants().clone());
        rt.plugins.sync(&mut rt.pipeline, false).await;
        // Operators see a change at once, not at the next tick.
        self.publish_status();
    }

    /// Closes quiet windows, stores a due snapshot, refreshes status, metrics and views.
    async fn tick(&mut self) -> anyhow::Result<()> {
        self.mark_written()?;
        // While a turn's outputs are being written, the state is ahead of the records marked
        // processed: no new outputs and no snapshot until they are.
        if self.in_flight.as_ref().is_none_or(InFlight::consistent) {
            // A partition that went quiet may release the watermark.
            self.rt.pipeline.tick(wall_ms(), &mut self.out);
            self.rt.outputs.write(&self.out).await?;
            self.out.clear();
            self.snapshot_if_due().await?;
        }
        // A revision switched at its effective time: the one waiting behind it gets its module
        // prepared now, not at the next config change.
        let switches = self.rt.pipeline.plugin_switches();
        if switches != self.plugin_switches {
            self.plugin_switches = switches;
            self.rt.plugins.sync(&mut self.rt.pipeline, false).await;
        }
        if let Some(age) = self.snapshots.as_ref().and_then(Snapshots::age_seconds) {
            metrics::gauge!("rtscore_snapshot_age_seconds").set(age);
        }
        let (own, host) = self.publish_status();
        let (rows, _, stats) = &own;
        let (host_rows, host_tenants, host_stats) = host.as_ref().unwrap_or(&own);
        if !self.warned_cross_partition && stats.cross_partition > 0 {
            self.warned_cross_partition = true;
            tracing::warn!(
                "events of one scenario arrive on several partitions: one host computes them exactly, but several \
                 hosts in this group would each see part of a scenario; key the topic by tenant_id/scenario_id, \
                 or run every host of the group with --repartition (docs/operations.md, \"Running a fleet\")"
            );
        }
        status::export_metrics(stats, rows);
        profile_loader::export_metrics(&self.rt.pipeline);
        self.rt.outputs.status(host_rows).await?;
        // The terminal view and the console redraw once a second: faster, the console's
        // fragments would be replaced under the operator's cursor.
        if self.last_view.elapsed() >= Duration::from_secs(1) {
            self.last_view = std::time::Instant::now();
            self.rt.outputs.tick(host_stats, host_rows, host_tenants, self.source.backlog.input_progress());
            if let (Some(live), Some(shuffle)) = (self.rt.outputs.live(), self.source.shuffle_stats()) {
                live.set_shuffle(Some(shuffle.status(wall_ms())));
            }
        }
        Ok(())
    }

    /// Takes a batch in: records of partitions not owned are dropped, and the profiles of its
    /// users not in memory are read back from Redis (one round trip, bounded) before any of it
    /// is processed. Every earlier output is in Redis by then (the writes queued behind the
    /// pipeline are waited for first), so Redis holds every profile a user evicted from memory
    /// had.
    async fn admit(&mut self, batch: crate::event::RecordBatch) -> anyhow::Result<()> {
        let mut batch = match &mut self.snapshots {
            Some(s) => s.admit(batch),
            None => batch,
        };
        if self.rt.pipeline.profile_read_back() {
            self.settle().await?;
        }
        if let Some(redis) = self.rt.outputs.redis_mut() {
            profile_loader::read_back(&mut self.rt.pipeline, &mut batch, redis).await;
        }
        self.in_flight = Some(InFlight::new(batch));
        Ok(())
    }

    async fn end_of_input(&mut self) -> anyhow::Result<()> {
        self.rt.pipeline.finish(&mut self.out);
        self.rt.outputs.write(&self.out).await?;
        self.settle().await
    }

    /// One turn of the batch in flight: at most `TURN_BUDGET` of processing, then its
    /// outputs, in pieces too, so a window closing over many users' profiles does not hold
    /// control either.
    async fn turn(&mut self) -> anyhow::Result<()> {
        let Some(f) = self.in_flight.as_mut() else { return Ok(()) };
        let started = std::time::Instant::now();
        f.process(&mut self.rt.pipeline, in_flight::TURN_BUDGET, wall_ms, &mut self.rejects);
        self.rt.health.set_events_in(self.rt.pipeline.stats().events_in);
        self.rt.outputs.dead_letters(f.batch(), &self.rejects)?;
        self.rejects.clear();
        while let Some(chunk) = f.unwritten() {
            self.rt.outputs.write(chunk).await?;
            if started.elapsed() >= in_flight::TURN_BUDGET {
                break;
            }
        }
        // The turn's records are marked processed once the sinks hold their outputs: Redis
        // acknowledges them behind the next turns, which run meanwhile.
        if let Some((done, produced_at, written)) = f.take_written() {
            let hot = written.iter().filter(|o| matches!(o, crate::output::Output::Hot(_))).count();
            let (through, next) = (self.rt.outputs.written(), f.batch().next_offsets_in(done));
            self.unacked.push_back(Unacked { through, next, produced_at, hot });
        }
        let done = f.is_done();
        if self.mark_written()? {
            // A snapshot the tick had to defer (outputs were being written) is stored as soon
            // as the state is consistent again.
            self.snapshot_if_due().await?;
        }
        if done {
            self.in_flight = None;
        }
        // Other tasks on this worker (HTTP, sinks) get their turn too.
        tokio::task::yield_now().await;
        Ok(())
    }

    /// Stores every owned partition's state and commits its offsets if the snapshot interval
    /// has passed. Only called while the state covers exactly the records marked processed.
    async fn snapshot_if_due(&mut self) -> anyhow::Result<()> {
        if self.in_flight.as_ref().is_some_and(|f| !f.consistent()) || !self.snapshots.as_ref().is_some_and(Snapshots::due) {
            return Ok(());
        }
        // The state covers every record processed: the cut needs them all marked.
        self.settle().await?;
        if let (Some(s), Some(c), Some(redis)) = (&mut self.snapshots, &self.source.committer, self.rt.outputs.redis_mut()) {
            s.begin_save(&self.rt.pipeline, redis, c, false)?;
        }
        Ok(())
    }

    fn snapshot_written(&mut self, result: Result<anyhow::Result<snapshot_store::Saved>, tokio::task::JoinError>) -> anyhow::Result<()> {
        match (&mut self.snapshots, &self.source.committer) {
            (Some(s), Some(c)) => s.written(result, c, false),
            _ => Ok(()),
        }
    }

    /// Writes what the last turn left, stores the final snapshot and commits (graceful stop:
    /// the next owner, or this host upgraded, continues without replay), closes the sinks.
    async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.rt.stop_inputs.send(true);
        let consistent = finish_outputs(self.in_flight.as_mut(), &mut self.rt.outputs, &mut self.unacked).await?;
        // Redis acknowledging what was written, within the same half second.
        let consistent = consistent && {
            match tokio::time::timeout(Duration::from_millis(500), self.rt.outputs.settle()).await {
                Ok(settled) => {
                    settled?;
                    self.mark_written()?;
                    true
                }
                Err(_) => {
                    tracing::warn!(
                        "Redis did not acknowledge the last outputs in time: no final snapshot; the next owner resumes from the last one"
                    );
                    false
                }
            }
        };
        if let (Some(s), Some(c), Some(redis), true) =
            (&mut self.snapshots, &self.source.committer, self.rt.outputs.redis_mut(), consistent)
        {
            s.save(&mut self.rt.pipeline, redis, c, true).await?;
        }
        let ((rows, _, _), host) = self.publish_status();
        let host_rows = host.map(|h| h.0);
        self.rt.outputs.status(host_rows.as_ref().unwrap_or(&rows)).await?;
        self.rt.outputs.close().await?;
        let plugin_problems = if self.rt.settings.require_plugins_scored {
            status::plugin_problems(&status::plugin_lanes(&rows, &self.rt.pipeline))
        } else {
            None
        };
        let stats = self.rt.pipeline.stats();
        tracing::info!(
            events = stats.events_in,
            rejected = stats.rejected,
            late = stats.late,
            unknown_scenario = stats.unknown_scenario,
            duplicates = stats.duplicates,
            "done"
        );
        self.source.close().await;
        // Freeing millions of small allocations (windows, profiles) takes a good part of a
        // second: off this thread, so the exit does not wait for it.
        let (pipeline, in_flight, out) = (self.rt.pipeline, self.in_flight, self.out);
        std::thread::spawn(move || drop((pipeline, in_flight, out)));
        match plugin_problems {
            Some(why) => anyhow::bail!("{why}"),
            None => Ok(()),
        }
    }
}

/// At shutdown: writes the outputs of the last turn that are still unwritten, for up to half
/// a second (the exit stays within its 2 s bound), and queues their records to be marked
/// processed once the sinks hold them (`unacked`). Returns whether the state is consistent
/// with the records written (a final snapshot may be stored once they are acknowledged); if
/// not, the next owner resumes from the last snapshot and reads those records again, so
/// nothing is lost.
async fn finish_outputs(
    in_flight: Option<&mut InFlight>,
    outputs: &mut Outputs,
    unacked: &mut std::collections::VecDeque<Unacked>,
) -> anyhow::Result<bool> {
    let Some(f) = in_flight else { return Ok(true) };
    let deadline = std::time::Instant::now() + Duration::from_millis(500);
    while std::time::Instant::now() < deadline
        && let Some(chunk) = f.unwritten()
    {
        outputs.write(chunk).await?;
    }
    if let Some((done, produced_at, _)) = f.take_written() {
        unacked.push_back(Unacked { through: outputs.written(), next: f.batch().next_offsets_in(done), produced_at, hot: 0 });
    }
    if !f.consistent() {
        tracing::warn!("stopped while writing a window's outputs: no final snapshot; the next owner resumes from the last one");
    }
    Ok(f.consistent())
}

/// The records before `next` (per partition) have their outputs in every sink: offsets may
/// move past them (with snapshots, once the state covering them is stored).
fn mark_processed(
    next: &std::collections::BTreeMap<i32, i64>,
    snapshots: Option<&mut Snapshots>,
    committer: Option<&crate::sources::kafka::KafkaCommitter>,
) -> anyhow::Result<()> {
    match (snapshots, committer) {
        (Some(s), _) => s.processed(next),
        (None, Some(c)) => c.commit(next)?,
        (None, None) => {}
    }
    Ok(())
}

/// `rtscore_hot_emission_delay_seconds`: from the start of the batch in which the watermark
/// passed a window's end to its `hot` lists being in every sink (Redis acknowledged them). An
/// upper bound: the watermark passes the end somewhere inside the batch.
fn record_emission_delay(hot: usize, started: std::time::Instant) {
    if hot > 0 {
        let delay = started.elapsed().as_secs_f64();
        let h = metrics::histogram!("rtscore_hot_emission_delay_seconds");
        (0..hot).for_each(|_| h.record(delay));
    }
}

fn wall_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stop_while_starting_ends_the_run_before_anything_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let scenarios = dir.path().join("scenarios");
        std::fs::create_dir_all(&scenarios).unwrap();
        let doc = serde_json::json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": {"hot_score": {}}}});
        std::fs::write(scenarios.join("s.json"), doc.to_string()).unwrap();
        let events = dir.path().join("events.jsonl");
        std::fs::write(&events, "").unwrap();
        let mut settings = Settings::replay(&events, &scenarios, dir.path().join("out.jsonl"));
        settings.plugin_cache_dir = None;
        settings.plugins_dir = dir.path().join("plugins");
        std::fs::create_dir_all(&settings.plugins_dir).unwrap();
        let (tx, shutdown) = Shutdown::manual();
        tx.send(true).unwrap();
        let built = tokio::time::timeout(Duration::from_secs(30), Runtime::build(settings, shutdown)).await.unwrap().unwrap();
        assert!(built.is_none(), "a stop requested while starting must end the run");
    }
}
