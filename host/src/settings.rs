//! What one run of the runtime does, decided once: a validated, clap-free description of the
//! source, the scenario store, the plugin registry, the outputs, the snapshots, the HTTP
//! surface and the pipeline options. The binary builds it from its flags (`TryFrom<RunArgs>`,
//! the one place of defaults, clamps and precedence); tests and embedders build it directly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::admin::ApiLimits;
use crate::config::redis_keys::{KeyLayout, TtlOverrides};
use crate::config::store::ConfigSource;
use crate::event::EventMapping;
use crate::pipeline::PipelineOptions;

/// The bundled scenarios the embedded default runs.
pub const DEFAULT_SCENARIOS_DIR: &str = "examples/scenarios";

/// One run of the runtime.
#[derive(Debug, Clone)]
pub struct Settings {
    pub source: SourceSettings,
    pub store: StoreSettings,
    /// Directory of plugin modules `<name>@<version>.wasm`, watched for new modules.
    pub plugins_dir: PathBuf,
    /// Where compiled plugin components are kept across restarts (`--plugin-cache-dir`, by
    /// default `plugin::disk_cache::default_dir()`); `None` compiles every module at every start.
    /// A directory only the host's user may write: see `plugin::disk_cache`.
    pub plugin_cache_dir: Option<PathBuf>,
    pub outputs: OutputSettings,
    /// How often owned partitions' state is stored (Kafka with Redis only).
    pub snapshot_interval: Duration,
    /// The HTTP server (health, metrics, admin API, console); `None` serves nothing.
    pub http: Option<HttpSettings>,
    pub pipeline: PipelineOptions,
    /// The shape of Kafka and file events when it is not DESIGN §2's (`--event-field`,
    /// `--event-ts-unit`); `None` parses them as always. The generator makes canonical events.
    pub event_mapping: Option<Arc<EventMapping>>,
    /// `rtscore plugin test`: the run fails, with the reason, when a plugin of a job this host
    /// runs did not run on every window or profile write of its job (it failed to load,
    /// configure or run and the built-in path stood in) or the job emitted nothing at all. A
    /// host keeps serving on the fallback instead.
    pub require_plugins_scored: bool,
}

/// Where events come from.
#[derive(Debug, Clone)]
pub enum SourceSettings {
    /// A JSON-lines file (`-` for stdin); the run ends after its last window.
    File(PathBuf),
    Kafka(KafkaSettings),
    /// Generated events over the configured scenarios (the embedded default).
    Generator(GeneratorSettings),
}

#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    pub topic: String,
    pub group_id: String,
    /// librdkafka properties set after the host's tuned defaults.
    pub options: Vec<(String, String)>,
    /// Where rejected events go unless a dead-letter file is given.
    pub dead_letter_topic: String,
    /// `--repartition`: `topic` is keyed any way; a shuffle stage forwards it to the internal
    /// topic, which the pipeline reads.
    pub repartition: Option<RepartitionSettings>,
    /// `--instance-id`: this host's stable name in the fleet (see [`instance_id_or_default`]).
    pub instance_id: Option<String>,
    /// `--threads`: pipelines in this process, each its own member of the consumer group
    /// owning its share of the partitions (docs/operations.md, "Every core of a host");
    /// `None` (`auto`): as many as the cores this process may use, at most one per partition.
    pub threads: Option<usize>,
    /// Which of the `threads` pipelines this is (`None`: the only one): tags its Kafka client
    /// id, instance id and shuffle transactional id, which must differ between members.
    pub member: Option<usize>,
}

/// `--repartition` (docs/operations.md, "Running a fleet").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepartitionSettings {
    /// Partitions of the internal topic when this host creates it (`None`: the source's).
    pub partitions: Option<i32>,
}

/// Whether `id` may name an instance: 1 to 200 of `[A-Za-z0-9._-]` (what Kafka accepts in a
/// `group.instance.id`, and safe in a `transactional.id`).
pub fn valid_instance_id(id: &str) -> bool {
    (1..=200).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `--instance-id`, or its default: `<hostname>-<port>` when this host serves HTTP on a fixed
/// port (stable across restarts, and no two live processes of one machine can bind the same
/// port), else none (a per-process id). A hostname's other characters become `-`.
pub fn instance_id_or_default(given: Option<String>, hostname: &str, http_port: Option<u16>) -> Option<String> {
    given.or_else(|| {
        let port = http_port.filter(|p| *p != 0)?;
        let host: String =
            hostname.trim().chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' }).collect();
        let id = format!("{}-{port}", if host.is_empty() { "host" } else { host.as_str() });
        valid_instance_id(&id).then_some(id)
    })
}

/// This machine's hostname (`host` if it cannot be read).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}

impl KafkaSettings {
    /// What tells this pipeline's Kafka ids from its siblings' (`-t<i>`; empty for the only one).
    pub fn member_tag(&self) -> String {
        self.member.map(|i| format!("-t{i}")).unwrap_or_default()
    }

    /// The topic the pipeline reads (its snapshots and profile offsets are keyed by it): the
    /// internal `<group>.by-scenario` topic when repartitioning, else `topic`.
    pub fn input_topic(&self) -> String {
        match self.repartition {
            Some(_) => crate::repartition::internal_topic(&self.group_id),
            None => self.topic.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeneratorSettings {
    pub events_per_second: u32,
    /// Event time runs this many times faster than the wall clock.
    pub time_scale: f64,
    pub limit: Option<u64>,
}

/// The scenario (and tenant, and plugin) documents.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreSettings {
    pub source: ConfigSource,
    pub mongodb_database: String,
    /// MongoDB: how often changed documents are polled, and how often all are re-read.
    pub poll: Duration,
    pub resync: Duration,
    /// Create the `scenarios` indexes if missing (false: a read-only user; polling then scans).
    pub create_indexes: bool,
    /// The seed's rule (`--require-status-active`): a document without `status: "active"` is
    /// not run (reported as inactive, with the reason); by default a missing status is active.
    pub require_status_active: bool,
}

/// Terminal output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewMode {
    /// Each scenario's hot list redrawn in place.
    Live,
    /// One log line per emitted window.
    Log,
    /// Nothing but warnings and errors.
    Off,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutputSettings {
    pub redis_url: Option<String>,
    /// The first segment of every Redis key (`--redis-key-prefix`, default `rt`).
    pub redis_keys: KeyLayout,
    /// TTLs other than the defaults (`--redis-ttl KIND=DURATION`).
    pub redis_ttl: TtlOverrides,
    /// JSON lines of every result (`-` for stdout).
    pub jsonl_out: Option<PathBuf>,
    pub view: ViewMode,
    pub dead_letters: DeadLetterSettings,
}

/// Where rejected events go.
#[derive(Debug, Clone, PartialEq)]
pub enum DeadLetterSettings {
    /// Logged only.
    Log,
    /// JSON lines with the original bytes and the reason.
    File(PathBuf),
    /// The dead-letter topic; what it does not take goes to `fallback`.
    Kafka { brokers: String, topic: String, options: Vec<(String, String)>, fallback: PathBuf },
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub addr: SocketAddr,
    /// Bearer tokens of the admin API and console; without them every call is refused.
    pub tokens_file: Option<PathBuf>,
    pub limits: ApiLimits,
}

impl Settings {
    /// The embedded default: generated events over the bundled scenarios, nothing external.
    pub fn embedded() -> Settings {
        Settings {
            source: SourceSettings::Generator(GeneratorSettings { events_per_second: 5_000, time_scale: 60.0, limit: None }),
            store: StoreSettings::dir(DEFAULT_SCENARIOS_DIR),
            plugins_dir: PathBuf::from("target/plugins"),
            plugin_cache_dir: crate::plugin::disk_cache::default_dir(),
            outputs: OutputSettings {
                redis_url: None,
                redis_keys: KeyLayout::default(),
                redis_ttl: TtlOverrides::default(),
                jsonl_out: None,
                view: ViewMode::Log,
                dead_letters: DeadLetterSettings::Log,
            },
            snapshot_interval: Duration::from_secs(5),
            http: None,
            pipeline: PipelineOptions::default(),
            event_mapping: None,
            require_plugins_scored: false,
        }
    }

    /// A replay of `events` over the scenarios in `scenarios_dir`, results as JSON lines to
    /// `jsonl_out`, nothing on the terminal (`rtscore plugin test`, tests).
    pub fn replay(events: impl Into<PathBuf>, scenarios_dir: impl Into<PathBuf>, jsonl_out: impl Into<PathBuf>) -> Settings {
        let mut s = Settings::embedded();
        s.source = SourceSettings::File(events.into());
        s.store = StoreSettings::dir(scenarios_dir);
        s.outputs.jsonl_out = Some(jsonl_out.into());
        s.outputs.view = ViewMode::Off;
        s
    }

    /// Refuses settings that name a service this build cannot talk to (built without one of
    /// the default features), naming the feature, before anything is started.
    pub fn check_build(&self) -> anyhow::Result<()> {
        let wanted = [
            ("kafka", cfg!(feature = "kafka"), matches!(self.source, SourceSettings::Kafka(_)), "--kafka-servers"),
            ("mongodb", cfg!(feature = "mongodb"), matches!(self.store.source, ConfigSource::Mongo(_)), "--mongodb-url"),
            ("redis", cfg!(feature = "redis"), self.outputs.redis_url.is_some(), "--redis-url"),
            ("http", cfg!(feature = "http"), self.http.is_some(), "--http-addr"),
        ];
        let missing: Vec<String> = wanted
            .iter()
            .filter(|(_, built, used, _)| *used && !built)
            .map(|(f, _, _, flag)| format!("{flag} needs the `{f}` feature"))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        anyhow::bail!(
            "this rtscore was built without some services: {} (rebuild with the default features, e.g. `cargo build --release -p rtscore`)",
            missing.join(", ")
        )
    }

    /// Pipelines of this run: `--threads` for Kafka (`None`: `auto`, decided once the topic's
    /// partitions are known), else 1 (a file or the generator is one ordered stream).
    pub fn threads(&self) -> Option<usize> {
        match self.kafka() {
            Some(k) => k.threads.map(|n| n.max(1)),
            None => Some(1),
        }
    }

    /// The settings of pipeline `i` of a run of several ([`Self::threads`]): its own Kafka
    /// ids; no terminal view (each would draw over the others: `/status`, `/metrics` and the
    /// console show them all) and no HTTP server of its own (the run serves one for all).
    pub fn for_member(&self, i: usize, of: usize) -> anyhow::Result<Settings> {
        let mut s = self.clone();
        if let SourceSettings::Kafka(k) = &mut s.source {
            k.member = Some(i);
            k.threads = Some(of);
            if let Some(id) = &mut k.instance_id {
                id.push_str(&format!("-t{i}"));
                anyhow::ensure!(valid_instance_id(id), "--instance-id with --threads: {id} is longer than 200 characters");
            }
        }
        s.outputs.view = ViewMode::Off;
        s.http = None;
        Ok(s)
    }

    /// The Kafka source, if events come from Kafka.
    pub fn kafka(&self) -> Option<&KafkaSettings> {
        match &self.source {
            SourceSettings::Kafka(k) => Some(k),
            _ => None,
        }
    }
}

impl StoreSettings {
    /// Scenario documents from a directory.
    pub fn dir(dir: impl Into<PathBuf>) -> StoreSettings {
        StoreSettings {
            source: ConfigSource::Dir(dir.into()),
            mongodb_database: "rtscore".into(),
            poll: Duration::from_millis(250),
            resync: Duration::from_secs(10),
            create_indexes: true,
            require_status_active: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_instance_id_is_the_hostname_and_http_port() {
        assert_eq!(instance_id_or_default(Some("given".into()), "box", Some(9464)).as_deref(), Some("given"));
        assert_eq!(instance_id_or_default(None, "box.local\n", Some(9464)).as_deref(), Some("box.local-9464"));
        assert_eq!(instance_id_or_default(None, "odd name:x", Some(80)).as_deref(), Some("odd-name-x-80"));
        assert_eq!(instance_id_or_default(None, "box", None), None, "no HTTP port: a per-process id");
        assert_eq!(instance_id_or_default(None, "box", Some(0)), None, "an ephemeral port is not stable");
        assert_eq!(instance_id_or_default(None, "", Some(1)).as_deref(), Some("host-1"));
        assert!(
            valid_instance_id("a-Z_0.9") && !valid_instance_id("") && !valid_instance_id("a/b") && !valid_instance_id(&"x".repeat(201))
        );
    }
}
