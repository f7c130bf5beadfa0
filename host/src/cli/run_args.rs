//! Flags of `rtscore run`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

pub use super::store_args::{ConfigSource, StoreArgs};
use crate::pipeline::JobSelection;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ViewMode {
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
    pub job: JobSelection,

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

    // ---- configuration ----
    #[command(flatten, next_help_heading = "Configuration")]
    pub store: StoreArgs,
    /// How often MongoDB is polled for changed scenario documents (ms).
    #[arg(long, default_value_t = 250, value_name = "MS", help_heading = "Configuration")]
    pub config_poll_ms: u64,
    /// How often every scenario document is re-read from MongoDB, which also notices deletes (ms).
    #[arg(long, default_value_t = 10_000, value_name = "MS", help_heading = "Configuration")]
    pub config_resync_ms: u64,
    /// Directory of plugin modules named <name>@<version>.wasm, watched for new modules.
    #[arg(long, value_name = "DIR", default_value = "target/plugins", env = "RTSCORE_PLUGINS_DIR", help_heading = "Configuration")]
    pub plugins_dir: PathBuf,

    // ---- outputs ----
    /// Redis URL for results (DESIGN §6 keys).
    #[arg(long, value_name = "URL", env = "REDIS_URL", help_heading = "Outputs")]
    pub redis_url: Option<String>,
    /// Write every emitted result as JSON lines to PATH (`-` for stdout).
    #[arg(long, value_name = "PATH", help_heading = "Outputs")]
    pub jsonl_out: Option<PathBuf>,
    /// Terminal output [default: live on a terminal, else log].
    #[arg(long, value_enum, help_heading = "Outputs")]
    pub view: Option<ViewMode>,
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
    /// Where scenario documents come from (`cli::store_args`).
    pub fn config_source(&self) -> ConfigSource {
        self.store.source()
    }

    pub fn consumer_group(&self) -> String {
        match (&self.group_id, &self.tenant_id, &self.scenario_id) {
            (Some(g), _, _) => g.clone(),
            (None, Some(t), Some(s)) => format!("rtscore-{t}-{s}"),
            (None, Some(t), None) => format!("rtscore-{t}"),
            _ => "rtscore".to_string(),
        }
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

/// `KEY=VALUE` for `--kafka-option`.
fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
