//! Flags of `rtscore run`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, ValueEnum};

pub use super::store_args::StoreArgs;
use rtscore::admin::ApiLimits;
use rtscore::config::redis_keys::{KeyLayout, TtlOverrides};
use rtscore::event::{EventMapping, TsUnit};
use rtscore::pipeline::{DEFAULT_PROFILE_MAX_USERS, JobSelection, PipelineOptions, ScenarioFilter};
use rtscore::settings::{
    DeadLetterSettings, GeneratorSettings, HttpSettings, KafkaSettings, OutputSettings, RepartitionSettings, Settings, SourceSettings,
    StoreSettings, ViewMode,
};

/// `--job`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum JobArg {
    /// Item hot scores (top-N lists per window).
    ItemHotScore,
    /// User interest profiles.
    UserProfile,
    /// Recommendation metrics (CTR, CVR, ...).
    Metrics,
    /// All three.
    All,
}

impl From<JobArg> for JobSelection {
    fn from(j: JobArg) -> Self {
        match j {
            JobArg::ItemHotScore => JobSelection::ItemHotScore,
            JobArg::UserProfile => JobSelection::UserProfile,
            JobArg::Metrics => JobSelection::Metrics,
            JobArg::All => JobSelection::All,
        }
    }
}

/// `--view`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ViewArg {
    /// Redraw each scenario's hot list in the terminal.
    Live,
    /// One log line per emitted window.
    Log,
    /// Nothing but warnings and errors.
    Off,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Which computation(s) to run.
    #[arg(long, value_enum, default_value = "item_hot_score", env = "RTSCORE_JOB")]
    pub job: JobArg,

    /// Only process this tenant (an isolated instance; with --scenario-id, one scenario).
    #[arg(long, env = "RTSCORE_TENANT_ID")]
    pub tenant_id: Option<String>,
    /// Only process this scenario (use with --tenant-id).
    #[arg(long, env = "RTSCORE_SCENARIO_ID", requires = "tenant_id")]
    pub scenario_id: Option<String>,

    // ---- event source (one of: file, Kafka, generator) ----
    /// Read events from a JSONL file (`-` for stdin); the run ends after the last window. Takes
    /// precedence over --kafka-servers / KAFKA_SERVERS.
    #[arg(long, value_name = "PATH", help_heading = "Events")]
    pub events_file: Option<PathBuf>,
    /// Kafka bootstrap servers; consume events from --topic in consumer group --group-id.
    #[arg(long, value_name = "HOSTS", env = "KAFKA_SERVERS", help_heading = "Events")]
    pub kafka_servers: Option<String>,
    /// Events topic.
    #[arg(long, default_value = "behavior-events", env = "RTSCORE_TOPIC", help_heading = "Events")]
    pub topic: String,
    /// A librdkafka consumer property, overriding the host's tuned default (repeatable), e.g.
    /// `--kafka-option fetch.wait.max.ms=50`. See librdkafka's CONFIGURATION.md.
    #[arg(long = "kafka-option", value_name = "KEY=VALUE", value_parser = parse_key_value, help_heading = "Events")]
    pub kafka_options: Vec<(String, String)>,
    /// Dead-letter topic for rejected events (Kafka mode).
    #[arg(long, default_value = "behavior-events-dlq", env = "RTSCORE_DLQ_TOPIC", help_heading = "Events")]
    pub dlq_topic: String,
    /// Consumer group [default: rtscore, or rtscore-<tenant>-<scenario> for an isolated instance].
    #[arg(long, env = "RTSCORE_GROUP_ID", help_heading = "Events")]
    pub group_id: Option<String>,
    /// Read a --topic keyed any way (by user_id, or not at all) and still compute exactly what
    /// one host would: a shuffle stage in each host (consumer group <group>.shuffle) forwards
    /// every event unchanged to the internal topic <group>.by-scenario (created if missing),
    /// on the partition its tenant_id/scenario_id hashes to, in Kafka transactions with the
    /// source offsets (exactly once); the pipeline reads that topic (read_committed) with
    /// event time kept per source partition. Costs one extra produce and consume per event.
    /// Without it, key --topic by tenant_id/scenario_id (docs/operations.md, "Running a fleet").
    #[arg(long, env = "RTSCORE_REPARTITION", help_heading = "Events")]
    pub repartition: bool,
    /// Partitions of the internal topic when --repartition creates it [default: as many as
    /// --topic]. An existing internal topic keeps its count.
    #[arg(long, value_name = "N", requires = "repartition", value_parser = clap::value_parser!(i32).range(1..), help_heading = "Events")]
    pub repartition_partitions: Option<i32>,
    /// This host's name in the fleet: stable across its restarts, and unique — two live hosts
    /// must never share it. With --repartition the shuffle's Kafka transactional id is
    /// <group>.shuffle.<ID> and its consumer a static member of <group>.shuffle, so a host
    /// restarted after a crash fences the open transaction it left at once and takes its source
    /// partitions back without waiting for the session timeout. 1-200 of [A-Za-z0-9._-]
    /// [default: <hostname>-<port> of --http-addr; without --http-addr, none: a per-process id]
    #[arg(long, value_name = "ID", env = "RTSCORE_INSTANCE_ID", value_parser = parse_instance_id, help_heading = "Events")]
    pub instance_id: Option<String>,
    /// Pipelines in this process: each runs on its own thread as its own member of the consumer
    /// group, owning its share of the topic's partitions (of the internal topic's with
    /// --repartition), with its own state, snapshots and plugin instances; results equal one
    /// pipeline's when the topic is keyed by tenant_id/scenario_id or with --repartition (else a
    /// scenario's events would be split between pipelines, as between hosts). `auto`: one per
    /// core this process may use, at most one per partition. Kafka only (docs/operations.md,
    /// "Every core of a host") [default: 1]
    #[arg(long, value_name = "N|auto", env = "RTSCORE_THREADS", value_parser = parse_threads, overrides_with = "threads",
          help_heading = "Events")]
    pub threads: Option<Threads>,
    /// Write rejected events (original bytes + reason) to this JSONL file. Without it, and
    /// outside Kafka mode, rejects are logged.
    #[arg(long, value_name = "PATH", help_heading = "Events")]
    pub dead_letter_file: Option<PathBuf>,
    /// Where rejects go that the dead-letter topic does not take (queue full, a permanent
    /// error such as an oversized record or a missing ACL, undelivered at shutdown): JSON
    /// lines with the reason and the topic's error. Opened only when needed.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "rtscore-dead-letters.fallback.jsonl",
        env = "RTSCORE_DEAD_LETTER_FALLBACK",
        help_heading = "Events"
    )]
    pub dead_letter_fallback: PathBuf,
    /// Also dead-letter events that are valid but not counted, with their reason: `late`
    /// (every window holding them had closed), `duplicate` (event_id seen), `unknown_scenario`.
    /// They are always counted per scenario and tenant in /status and /metrics. Events a
    /// tenant's memory quota refuses (`quota_*`) are dead-lettered either way.
    #[arg(long, help_heading = "Events")]
    pub dead_letter_all: bool,
    /// Generated events per second (embedded default, no --events-file or --kafka-servers).
    #[arg(long, default_value_t = 5000, help_heading = "Events")]
    pub generate_rate: u32,
    /// Event-time speed-up of the generator: 60 plays one minute of event time per second, so
    /// 15-minute slides emit every 15 s.
    #[arg(long, default_value_t = 60.0, help_heading = "Events")]
    pub generate_time_scale: f64,
    /// Stop the generator after this many events.
    #[arg(long, help_heading = "Events")]
    pub generate_limit: Option<u64>,
    /// How often (ms) each owned partition's window, profile and metrics state is stored in
    /// Redis (Kafka mode with --redis-url); offsets are committed only after it. Also stored
    /// when a partition is revoked and at shutdown.
    #[arg(long, default_value_t = 5_000, value_name = "MS", env = "RTSCORE_SNAPSHOT_INTERVAL_MS", help_heading = "Events")]
    pub snapshot_interval_ms: u64,
    /// How far the watermark trails the max event time seen, in ms.
    #[arg(long, default_value_t = 10_000, value_name = "MS", help_heading = "Events")]
    pub allowed_lateness_ms: i64,
    /// Wall time (ms) after which a partition that delivers nothing stops holding the
    /// watermark back. Its later events may then be late; raise it where results must not
    /// depend on timing (see docs/operations.md, "Running a fleet").
    #[arg(long, default_value_t = 5_000, value_name = "MS", help_heading = "Events")]
    pub partition_idle_ms: i64,
    /// Events dated more than this ahead of the wall clock are dead-lettered (reason
    /// `ts_in_future`) instead of moving their tenant's event time (each tenant's windows
    /// close on its own events): `10m`, `90s`, `500ms`, `2h`, or `none` to accept any time. The generator's accelerated event time is exempt.
    #[arg(long, default_value = "10m", value_name = "DURATION|none", value_parser = parse_skew, help_heading = "Events")]
    pub max_event_skew: MaxEventSkew,

    /// Read an event field from another JSON key, repeatable: `FIELD=PATH` with FIELD one of
    /// DESIGN §2's (tenant_id, scenario_id, user_id, item_id, action, ts, category, tags,
    /// watch_time_ms, event_id) and PATH a key or a dotted path into nested objects, e.g.
    /// `--event-field item_id=content_id --event-field user_id=user.id --event-field ts=meta.time`.
    /// Kafka and file events only; validation is unchanged, reject reasons name PATH.
    #[arg(long = "event-field", value_name = "FIELD=PATH", help_heading = "Events")]
    pub event_fields: Vec<String>,
    /// The unit of `ts`: `ms` (epoch milliseconds, whole floats or RFC 3339 strings, as
    /// always), `s` (epoch seconds, integer or fractional), `rfc3339` (strings only).
    #[arg(long, default_value = "ms", value_name = "ms|s|rfc3339", value_parser = TsUnit::parse, help_heading = "Events")]
    pub event_ts_unit: TsUnit,

    // ---- configuration ----
    #[command(flatten, next_help_heading = "Configuration")]
    pub store: StoreArgs,
    #[command(flatten, next_help_heading = "Configuration")]
    pub docs: super::doc_args::DocArgs,
    /// Seed-compatible mode: run only scenario documents with `status: "active"`, as the seed's
    /// loader did (`find({'status': 'active'})`). A document without it is not run and shows as
    /// inactive with the reason in status. By default a missing `status` means active.
    #[arg(long, env = "RTSCORE_REQUIRE_STATUS_ACTIVE", help_heading = "Configuration")]
    pub require_status_active: bool,
    /// How often MongoDB is polled for changed scenario documents (ms).
    #[arg(long, default_value_t = 250, value_name = "MS", help_heading = "Configuration")]
    pub config_poll_ms: u64,
    /// How often every scenario document is re-read from MongoDB, which also notices deletes (ms).
    #[arg(long, default_value_t = 10_000, value_name = "MS", help_heading = "Configuration")]
    pub config_resync_ms: u64,
    /// Create the indexes rtscore polls on (`updated_at`, unique tenant/scenario) in the
    /// `scenarios` collection if missing. `false` for a user that may only read the platform's
    /// collection: polling then scans it (fine up to many thousands of documents).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL", env = "MONGODB_CREATE_INDEXES", help_heading = "Configuration")]
    pub mongodb_create_indexes: bool,
    /// Directory of plugin modules named <name>@<version>.wasm, watched for new modules.
    #[arg(long, value_name = "DIR", default_value = "target/plugins", env = "RTSCORE_PLUGINS_DIR", help_heading = "Configuration")]
    pub plugins_dir: PathBuf,
    /// Directory compiled plugin components are kept in across restarts, so a module is
    /// compiled once per machine (seconds for a Python or JavaScript one) [default:
    /// $XDG_CACHE_HOME/rtscore/compiled-plugins or ~/.cache/rtscore/compiled-plugins]. Only
    /// the host's user may write it: one that another user owns or others may write is not used.
    #[arg(long, value_name = "DIR", env = "RTSCORE_PLUGIN_CACHE_DIR", conflicts_with = "no_plugin_cache", help_heading = "Configuration")]
    pub plugin_cache_dir: Option<PathBuf>,
    /// Keep compiled plugin components in memory only: every start compiles every module.
    #[arg(long, help_heading = "Configuration")]
    pub no_plugin_cache: bool,

    // ---- outputs ----
    /// Redis URL for results (DESIGN §6 keys).
    #[arg(long, value_name = "URL", env = "REDIS_URL", help_heading = "Outputs")]
    pub redis_url: Option<String>,
    /// Durable profiles (Kafka with --redis-url, --job user_profile or all): users whose
    /// profiles one scenario holds in memory. Beyond it the least recently active, already
    /// written to Redis, are forgotten and read back from Redis when they return
    /// (docs/operations.md, "Sizing profiles").
    #[arg(long, default_value_t = DEFAULT_PROFILE_MAX_USERS, value_name = "N", env = "RTSCORE_PROFILE_MAX_USERS", help_heading = "Outputs")]
    pub profile_max_users: usize,
    /// First segment of every Redis key (DESIGN §6: `{prefix}:{tenant}:{scenario}:hot`, ...), so
    /// existing consumers keep reading their keys. `rtscore status` and `rtscore scenario`
    /// take the same flag to find the hosts' status keys.
    #[arg(long, value_name = "PREFIX", default_value = "rt", env = "RTSCORE_REDIS_KEY_PREFIX", value_parser = parse_key_prefix, help_heading = "Outputs")]
    pub redis_key_prefix: KeyLayout,
    /// TTL of a kind of Redis key, repeatable: `hot=7d` (hot lists, shadow lists and their
    /// meta; default 7d), `status=7d` (default 7d), `metrics=30d` (default 30d), `profile=...`
    /// (default: 4 half-lives of the scenario's interest_decay_days, 7d to 365d). Units ms, s, m, h, d.
    #[arg(long = "redis-ttl", value_name = "KIND=DURATION", help_heading = "Outputs")]
    pub redis_ttl: Vec<String>,
    /// Write every emitted result as JSON lines to PATH (`-` for stdout).
    #[arg(long, value_name = "PATH", help_heading = "Outputs")]
    pub jsonl_out: Option<PathBuf>,
    /// Terminal output [default: live on a terminal, else log].
    #[arg(long, value_enum, help_heading = "Outputs")]
    pub view: Option<ViewArg>,
    /// Serve /healthz, /readyz, Prometheus /metrics, the admin API (/api/v1) and the operator
    /// console (/console) on this address; `--http-addr` alone binds 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR", env = "RTSCORE_HTTP_ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8080", help_heading = "Outputs")]
    pub http_addr: Option<SocketAddr>,
    /// Bearer tokens of the admin API and console: lines `tenant:<id> <sha256-hex>` or
    /// `admin <sha256-hex>` (see `rtscore token create`). Without it every API and console call is
    /// refused, and `/status` answers only local requests to localhost, 127.0.0.1 or [::1].
    #[arg(long, value_name = "PATH", env = "RTSCORE_API_TOKENS_FILE", help_heading = "Outputs")]
    pub api_tokens_file: Option<PathBuf>,

    // ---- admin API limits (docs/security.md) ----
    /// Largest request body of an API or console route, in bytes (`413` above it). Plugin
    /// uploads are capped by the tenant's `max_module_bytes` quota instead.
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES", env = "RTSCORE_API_MAX_BODY_BYTES", help_heading = "Admin API limits")]
    pub api_max_body_bytes: usize,
    /// An uploaded plugin module that takes longer to compile is refused.
    #[arg(long, default_value_t = 60, value_name = "SECONDS", help_heading = "Admin API limits")]
    pub plugin_compile_timeout_s: u64,
    /// Uploaded plugin modules compiling at once on this host, over all tenants (`429` above).
    #[arg(long, default_value_t = 2, value_name = "N", help_heading = "Admin API limits")]
    pub plugin_max_compiles: usize,
    /// How many modules that failed to compile (by sha256) are remembered and refused at once
    /// with their original error (least recently used first out; 0 turns it off).
    #[arg(long, default_value_t = 256, value_name = "N", help_heading = "Admin API limits")]
    pub failed_compile_cache: usize,
    /// Live console streams (server-sent events) open at once on this host (`429` above it).
    #[arg(long, default_value_t = 64, value_name = "N", help_heading = "Admin API limits")]
    pub console_max_streams: usize,
    /// Live console streams open at once per login scope (one tenant, or admin).
    #[arg(long, default_value_t = 8, value_name = "N", help_heading = "Admin API limits")]
    pub console_max_streams_per_login: usize,
    /// Largest live console update in bytes; a larger one is replaced by a note to reload.
    #[arg(long, default_value_t = 256 << 10, value_name = "BYTES", help_heading = "Admin API limits")]
    pub console_max_event_bytes: usize,
}

impl RunArgs {
    pub fn consumer_group(&self) -> String {
        match (&self.group_id, &self.tenant_id, &self.scenario_id) {
            (Some(g), _, _) => g.clone(),
            (None, Some(t), Some(s)) => format!("rtscore-{t}-{s}"),
            (None, Some(t), None) => format!("rtscore-{t}"),
            _ => "rtscore".to_string(),
        }
    }
}

/// The one place of the run flags' precedence, defaults and bounds: an events file wins over
/// Kafka, which wins over the generator; the dead-letter topic is used in Kafka mode only (a
/// file replay never writes into a live topic); intervals have floors so a typo cannot spin a
/// loop; values that cannot mean anything are refused with the flag's name.
impl TryFrom<RunArgs> for Settings {
    type Error = anyhow::Error;

    fn try_from(a: RunArgs) -> anyhow::Result<Settings> {
        if a.allowed_lateness_ms < 0 {
            bail!("--allowed-lateness-ms must be 0 or more, got {}", a.allowed_lateness_ms);
        }
        if a.partition_idle_ms <= 0 {
            bail!("--partition-idle-ms must be more than 0, got {}", a.partition_idle_ms);
        }
        if !a.generate_time_scale.is_finite() || a.generate_time_scale <= 0.0 {
            bail!("--generate-time-scale must be a positive number, got {}", a.generate_time_scale);
        }
        if a.profile_max_users == 0 {
            bail!("--profile-max-users must be at least 1");
        }
        if a.generate_rate == 0 {
            bail!("--generate-rate must be at least 1 event per second");
        }
        let mut redis_ttl = TtlOverrides::default();
        for spec in &a.redis_ttl {
            redis_ttl.set(spec).map_err(|e| anyhow::anyhow!("--redis-ttl {spec}: {e}"))?;
        }
        let event_mapping =
            EventMapping::from_specs(&a.event_fields, a.event_ts_unit).map_err(|e| anyhow::anyhow!("--event-field: {e}"))?;
        if event_mapping.is_some() && a.events_file.is_none() && a.kafka_servers.is_none() {
            bail!(
                "--event-field and --event-ts-unit apply to --kafka-servers or --events-file events; the generator makes DESIGN §2 events"
            );
        }
        let group_id = a.consumer_group();
        if a.repartition && (a.events_file.is_some() || a.kafka_servers.is_none()) {
            bail!("--repartition applies to Kafka events (--kafka-servers without --events-file)");
        }
        if matches!(a.threads, Some(Threads(Some(n))) if n > 1) && (a.events_file.is_some() || a.kafka_servers.is_none()) {
            bail!(
                "--threads applies to Kafka events (--kafka-servers without --events-file): a file or the generator is one ordered stream"
            );
        }
        let repartition = a.repartition.then_some(RepartitionSettings { partitions: a.repartition_partitions });
        let source = match (a.events_file, a.kafka_servers) {
            (Some(path), _) => SourceSettings::File(path),
            (None, Some(brokers)) => SourceSettings::Kafka(KafkaSettings {
                brokers,
                topic: a.topic,
                group_id,
                options: a.kafka_options,
                dead_letter_topic: a.dlq_topic,
                repartition,
                instance_id: rtscore::settings::instance_id_or_default(
                    a.instance_id,
                    &rtscore::settings::hostname(),
                    a.http_addr.map(|h| h.port()),
                ),
                threads: match a.threads {
                    None => Some(1),
                    Some(Threads(n)) => n.map(usize::from),
                },
                member: None,
            }),
            (None, None) => SourceSettings::Generator(GeneratorSettings {
                events_per_second: a.generate_rate,
                time_scale: a.generate_time_scale,
                limit: a.generate_limit,
            }),
        };
        let dead_letters = match (a.dead_letter_file, &source) {
            (Some(path), _) => DeadLetterSettings::File(path),
            (None, SourceSettings::Kafka(k)) => DeadLetterSettings::Kafka {
                brokers: k.brokers.clone(),
                topic: k.dead_letter_topic.clone(),
                options: k.options.clone(),
                fallback: a.dead_letter_fallback,
            },
            (None, _) => DeadLetterSettings::Log,
        };
        let view = match a.view {
            Some(ViewArg::Live) => ViewMode::Live,
            Some(ViewArg::Log) => ViewMode::Log,
            Some(ViewArg::Off) => ViewMode::Off,
            // Live on a terminal, unless the results themselves go to stdout.
            None if std::io::IsTerminal::is_terminal(&std::io::stdout()) && a.jsonl_out.as_deref() != Some("-".as_ref()) => ViewMode::Live,
            None => ViewMode::Log,
        };
        let pipeline = PipelineOptions {
            jobs: a.job.into(),
            filter: ScenarioFilter { tenant_id: a.tenant_id, scenario_id: a.scenario_id },
            allowed_lateness_ms: a.allowed_lateness_ms,
            partition_idle_ms: a.partition_idle_ms,
            // The generator runs event time ahead of the clock on purpose.
            max_event_skew_ms: if matches!(source, SourceSettings::Generator(_)) { None } else { a.max_event_skew.0 },
            dead_letter_dropped: a.dead_letter_all,
            profile_max_users: a.profile_max_users,
            // The sinks write profiles as encoded bytes: no structured copy per write.
            encode_profiles: true,
            ..PipelineOptions::default()
        };
        let limits = ApiLimits {
            max_body_bytes: a.api_max_body_bytes,
            compile: rtscore::admin::CompileLimits {
                timeout: Duration::from_secs(a.plugin_compile_timeout_s.max(1)),
                failed_cache_entries: a.failed_compile_cache,
                max_compiles: a.plugin_max_compiles.max(1),
            },
            max_streams: a.console_max_streams,
            max_streams_per_login: a.console_max_streams_per_login,
            max_event_bytes: a.console_max_event_bytes,
        };
        Ok(Settings {
            source,
            store: StoreSettings {
                source: a.store.source(),
                mongodb_database: a.store.mongodb_database,
                poll: Duration::from_millis(a.config_poll_ms.max(10)),
                resync: Duration::from_millis(a.config_resync_ms.max(100)),
                create_indexes: a.mongodb_create_indexes,
                require_status_active: a.require_status_active,
            },
            plugins_dir: a.plugins_dir,
            plugin_cache_dir: if a.no_plugin_cache { None } else { a.plugin_cache_dir.or_else(rtscore::plugin::disk_cache::default_dir) },
            outputs: OutputSettings {
                redis_url: a.redis_url,
                redis_keys: a.redis_key_prefix,
                redis_ttl,
                jsonl_out: a.jsonl_out,
                view,
                dead_letters,
            },
            snapshot_interval: Duration::from_millis(a.snapshot_interval_ms.max(100)),
            http: a.http_addr.map(|addr| HttpSettings { addr, tokens_file: a.api_tokens_file, limits }),
            pipeline,
            event_mapping: event_mapping.map(std::sync::Arc::new),
            require_plugins_scored: false,
        })
    }
}

/// `--threads`: a count, or `None` for `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threads(pub Option<u16>);

impl Threads {
    /// Pipelines the runtime's worker pool is sized for: the count (1 when not given), or for
    /// `auto` the cores (`auto` never runs more).
    pub fn upper_bound(threads: Option<Threads>) -> usize {
        match threads {
            None => 1,
            Some(Threads(Some(n))) => usize::from(n),
            Some(Threads(None)) => std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

fn parse_threads(s: &str) -> Result<Threads, String> {
    if s.trim().eq_ignore_ascii_case("auto") {
        return Ok(Threads(None));
    }
    match s.trim().parse::<u16>() {
        Ok(n @ 1..=256) => Ok(Threads(Some(n))),
        _ => Err(format!("expected `auto` or a count of pipelines from 1 to 256, got `{s}`")),
    }
}

/// `--max-event-skew`: milliseconds, or `None` for no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxEventSkew(pub Option<i64>);

fn parse_skew(s: &str) -> Result<MaxEventSkew, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("none") {
        return Ok(MaxEventSkew(None));
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().map_err(|_| format!("expected a duration such as 10m, 90s or 500ms, or `none`; got {s:?}"))?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("unknown unit {unit:?} in {s:?}: use ms, s, m or h (or `none`)")),
    };
    n.checked_mul(ms).map(|v| MaxEventSkew(Some(v))).ok_or_else(|| format!("{s:?} is too large"))
}

/// `--redis-key-prefix`.
pub fn parse_key_prefix(s: &str) -> Result<KeyLayout, String> {
    KeyLayout::new(s.trim())
}

/// `KEY=VALUE` for `--kafka-option`.
fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// `--instance-id`: what Kafka accepts as a `group.instance.id`.
fn parse_instance_id(s: &str) -> Result<String, String> {
    match rtscore::settings::valid_instance_id(s) {
        true => Ok(s.to_string()),
        false => Err("an instance id is 1 to 200 of [A-Za-z0-9._-]".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rtscore run` flags with the environment's service URLs cleared (the test command
    /// exports them for the integration tests).
    fn run_args(flags: &[&str]) -> RunArgs {
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(["rtscore", "run"].iter().chain(flags)).unwrap();
        let Some(crate::cli::Command::Run(mut a)) = cli.command else { panic!("a run command") };
        for (flag, field) in
            [("--kafka-servers", &mut a.kafka_servers), ("--redis-url", &mut a.redis_url), ("--mongodb-url", &mut a.store.mongodb_url)]
        {
            if !flags.contains(&flag) {
                *field = None;
            }
        }
        *a
    }

    #[test]
    fn an_events_file_wins_over_kafka_and_never_dead_letters_into_its_topic() {
        let s = Settings::try_from(run_args(&["--events-file", "e.jsonl", "--kafka-servers", "k:9092"])).unwrap();
        assert!(matches!(&s.source, SourceSettings::File(p) if p.as_os_str() == "e.jsonl"));
        assert_eq!(s.outputs.dead_letters, DeadLetterSettings::Log);
        assert_eq!(s.pipeline.max_event_skew_ms, Some(600_000), "a replay keeps the skew rule");
    }

    #[test]
    fn threads_are_kafka_pipelines_each_with_its_own_ids_and_no_view() {
        let s = Settings::try_from(run_args(&["--kafka-servers", "k:9092", "--threads", "3", "--instance-id", "box-1", "--view", "log"]))
            .unwrap();
        assert_eq!(s.threads(), Some(3));
        let second = s.for_member(1, 3).unwrap();
        let k = second.kafka().unwrap();
        assert_eq!((k.member, k.instance_id.as_deref(), k.member_tag().as_str()), (Some(1), Some("box-1-t1"), "-t1"));
        assert_eq!(second.threads(), Some(3));
        assert_eq!(second.outputs.view, ViewMode::Off, "each pipeline's view would draw over the others'");
        assert!(second.http.is_none(), "the run serves HTTP once for every pipeline");
        assert_eq!(Settings::try_from(run_args(&["--kafka-servers", "k:9092"])).unwrap().threads(), Some(1), "one by default");
        let auto = Settings::try_from(run_args(&["--kafka-servers", "k:9092", "--threads", "auto"])).unwrap();
        assert_eq!(auto.threads(), None, "decided once the partitions are known");
        let s = Settings::try_from(run_args(&["--kafka-servers", "k:9092", "--threads", "auto", "--threads", "2"])).unwrap();
        assert_eq!(s.threads(), Some(2), "the last --threads wins (scripts append theirs)");
        assert_eq!(Settings::try_from(run_args(&["--events-file", "e.jsonl"])).unwrap().threads(), Some(1), "a file is one stream");
        assert_eq!(Settings::try_from(run_args(&["--events-file", "e.jsonl", "--threads", "auto"])).unwrap().threads(), Some(1));
        let err = Settings::try_from(run_args(&["--events-file", "e.jsonl", "--threads", "2"])).unwrap_err();
        assert!(err.to_string().contains("--threads applies to Kafka"), "{err}");
        let err = Settings::try_from(run_args(&["--threads", "2"])).unwrap_err();
        assert!(err.to_string().contains("--threads applies to Kafka"), "the generator is one stream too: {err}");
        let zero = <crate::cli::Cli as clap::Parser>::try_parse_from(["rtscore", "run", "--threads", "0"]);
        assert!(zero.is_err(), "at least one pipeline");
        let long = "x".repeat(199);
        let s = Settings::try_from(run_args(&["--kafka-servers", "k:9092", "--threads", "2", "--instance-id", &long])).unwrap();
        assert!(s.for_member(1, 2).unwrap_err().to_string().contains("longer than 200"));
    }

    #[test]
    fn repartition_reads_the_groups_internal_topic_and_needs_kafka() {
        let s = Settings::try_from(run_args(&["--kafka-servers", "k:9092", "--group-id", "g", "--repartition"])).unwrap();
        let k = s.kafka().unwrap();
        assert_eq!((k.topic.as_str(), k.input_topic().as_str()), ("behavior-events", "g.by-scenario"));
        assert_eq!(k.repartition, Some(RepartitionSettings { partitions: None }));
        let s = Settings::try_from(run_args(&["--kafka-servers", "k:9092", "--repartition", "--repartition-partitions", "12"])).unwrap();
        assert_eq!(s.kafka().unwrap().repartition, Some(RepartitionSettings { partitions: Some(12) }));
        let s = Settings::try_from(run_args(&["--kafka-servers", "k:9092", "--repartition", "--instance-id", "host-a"])).unwrap();
        assert_eq!(s.kafka().unwrap().instance_id.as_deref(), Some("host-a"));
        let bad = <crate::cli::Cli as clap::Parser>::try_parse_from(["rtscore", "run", "--instance-id", "a b"]);
        assert!(bad.is_err(), "characters outside [A-Za-z0-9._-]");
        let s = Settings::try_from(run_args(&["--kafka-servers", "k:9092"])).unwrap();
        assert_eq!(s.kafka().unwrap().input_topic(), "behavior-events", "no shuffle: the topic itself");
        let err = Settings::try_from(run_args(&["--events-file", "e.jsonl", "--repartition"])).unwrap_err();
        assert!(err.to_string().contains("--repartition applies to Kafka"), "{err}");
    }

    #[test]
    fn kafka_mode_dead_letters_into_the_topic_in_the_isolated_group() {
        let s = Settings::try_from(run_args(&["--kafka-servers", "k:9092", "--tenant-id", "t", "--scenario-id", "s"])).unwrap();
        let k = s.kafka().unwrap();
        assert_eq!((k.brokers.as_str(), k.group_id.as_str()), ("k:9092", "rtscore-t-s"));
        assert!(matches!(&s.outputs.dead_letters, DeadLetterSettings::Kafka { topic, .. } if topic == "behavior-events-dlq"));
        let s = Settings::try_from(run_args(&["--kafka-servers", "k:9092", "--dead-letter-file", "d.jsonl"])).unwrap();
        assert!(matches!(&s.outputs.dead_letters, DeadLetterSettings::File(_)), "an explicit file wins");
    }

    #[test]
    fn the_generator_runs_ahead_of_the_clock_and_intervals_have_floors() {
        let s = Settings::try_from(run_args(&["--config-poll-ms", "1", "--snapshot-interval-ms", "0", "--view", "off"])).unwrap();
        assert!(matches!(s.source, SourceSettings::Generator(g) if g.events_per_second == 5000));
        assert_eq!(s.pipeline.max_event_skew_ms, None);
        assert_eq!((s.store.poll, s.snapshot_interval), (Duration::from_millis(10), Duration::from_millis(100)));
        assert_eq!(s.outputs.view, ViewMode::Off);
        assert!(s.http.is_none());
    }

    #[test]
    fn values_that_cannot_mean_anything_are_refused_by_name() {
        for (flags, name) in [
            (&["--generate-time-scale", "0"][..], "--generate-time-scale"),
            (&["--generate-time-scale", "NaN"], "--generate-time-scale"),
            (&["--generate-rate", "0"], "--generate-rate"),
            (&["--allowed-lateness-ms=-1"], "--allowed-lateness-ms"),
            (&["--partition-idle-ms", "0"], "--partition-idle-ms"),
        ] {
            let err = Settings::try_from(run_args(flags)).unwrap_err().to_string();
            assert!(err.contains(name), "{flags:?}: {err}");
        }
    }

    #[test]
    fn kafka_options_are_key_value_pairs() {
        assert_eq!(parse_key_value("fetch.wait.max.ms=50"), Ok(("fetch.wait.max.ms".into(), "50".into())));
        assert_eq!(parse_key_value("sasl.password=a=b"), Ok(("sasl.password".into(), "a=b".into())));
        assert!(parse_key_value("fetch.wait.max.ms").is_err());
        assert!(parse_key_value("=5").is_err());
    }

    #[test]
    fn event_skew_takes_units_or_none() {
        assert_eq!(parse_skew("10m"), Ok(MaxEventSkew(Some(600_000))));
        assert_eq!(parse_skew("90s"), Ok(MaxEventSkew(Some(90_000))));
        assert_eq!(parse_skew("500ms"), Ok(MaxEventSkew(Some(500))));
        assert_eq!(parse_skew("2h"), Ok(MaxEventSkew(Some(7_200_000))));
        assert_eq!(parse_skew("None"), Ok(MaxEventSkew(None)));
        assert!(parse_skew("10").unwrap_err().contains("unit"));
        assert!(parse_skew("ten minutes").is_err());
        assert!(parse_skew("-5m").is_err());
    }

    #[test]
    fn redis_key_prefix_and_ttls_default_to_todays_layout() {
        let s = Settings::try_from(run_args(&[])).unwrap();
        assert_eq!((s.outputs.redis_keys.prefix(), s.outputs.redis_ttl), ("rt", TtlOverrides::default()));
        let s =
            Settings::try_from(run_args(&["--redis-key-prefix", "reco", "--redis-ttl", "hot=2d", "--redis-ttl", "profile=90d"])).unwrap();
        assert_eq!(s.outputs.redis_keys.prefix(), "reco");
        assert_eq!(s.outputs.redis_ttl.hot, Some(Duration::from_secs(2 * 86_400)));
        assert_eq!((s.outputs.redis_ttl.profile, s.outputs.redis_ttl.metrics), (Some(Duration::from_secs(90 * 86_400)), None));
        let err = Settings::try_from(run_args(&["--redis-ttl", "warm=1d"])).unwrap_err().to_string();
        assert!(err.contains("--redis-ttl warm=1d") && err.contains("unknown key kind"), "{err}");
        assert!(<crate::cli::Cli as clap::Parser>::try_parse_from(["rtscore", "run", "--redis-key-prefix", "a*"]).is_err());
    }

    #[test]
    fn event_fields_build_a_mapping_only_when_they_change_something() {
        assert!(Settings::try_from(run_args(&["--events-file", "e.jsonl"])).unwrap().event_mapping.is_none());
        let s = Settings::try_from(run_args(&["--events-file", "e.jsonl", "--event-field", "item_id=content_id", "--event-ts-unit", "s"]))
            .unwrap();
        let m = s.event_mapping.unwrap();
        assert_eq!((m.source_name(rtscore::event::EventField::ItemId), m.ts_unit()), ("content_id", TsUnit::S));
        let err = Settings::try_from(run_args(&["--events-file", "e.jsonl", "--event-field", "sku=content_id"])).unwrap_err().to_string();
        assert!(err.contains("--event-field") && err.contains("unknown event field"), "{err}");
        let err = Settings::try_from(run_args(&["--event-ts-unit", "s"])).unwrap_err().to_string();
        assert!(err.contains("generator"), "{err}");
    }
}
