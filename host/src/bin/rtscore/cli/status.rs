//! `rtscore status`: what the running hosts apply, per scenario, from the status keys they
//! write to Redis (`rt:{tenant}:{scenario}:status`).

use rtscore::config::redis_keys as keys;

use clap::Args;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:16379")]
    pub redis_url: String,
    /// The hosts' `--redis-key-prefix`.
    #[arg(long, value_name = "PREFIX", default_value = "rt", env = "RTSCORE_REDIS_KEY_PREFIX", value_parser = super::run_args::parse_key_prefix)]
    pub redis_key_prefix: keys::KeyLayout,
    /// Only this tenant's scenarios.
    #[arg(long)]
    pub tenant_id: Option<String>,
    /// Print the raw status hashes as JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let statuses = rtscore::sinks::redis::read_statuses(&args.redis_url, &args.redis_key_prefix, args.tenant_id.as_deref()).await?;
    if statuses.is_empty() {
        println!("no status keys in {} (no host has run with --redis-url there, or they expired)", args.redis_url);
        return Ok(());
    }
    let now = chrono::Utc::now().timestamp_millis();
    if !args.json {
        println!(
            "{:<34} {:>8} {:>14} {:<36} {:>8} {:>8} {:>9} {:>17}  last error",
            "scenario", "revision", "pending@window", "plugin", "events", "late", "seen", "shadow overlap/rbo"
        );
    }
    for (key, h) in statuses {
        let scenario = args.redis_key_prefix.scenario_of_status(&key);
        if args.json {
            println!("{}", serde_json::json!({"scenario": scenario, "status": h}));
            continue;
        }
        let get = |f: &str| h.get(f).cloned().unwrap_or_default();
        let seen = h
            .get("updated_at")
            .and_then(|t| t.parse::<i64>().ok())
            .map_or("-".to_string(), |t| format!("{}s ago", (now - t).max(0) / 1000));
        let plugin = match get("plugin_state").as_str() {
            "" | "builtin" => "built-in formula".to_string(),
            s => s.chars().take(36).collect(),
        };
        // A revision waiting for its effective window end, e.g. `5@1767227400000`.
        let pending = match get("pending_revision").as_str() {
            "" => "-".to_string(),
            r => format!("{r}@{}", get("effective_from_window_end")),
        };
        let num = |f: &str| h.get(f).and_then(|v| v.parse::<f64>().ok());
        let shadow = match (num("shadow_overlap_at_k"), num("shadow_rbo"), get("candidate_error")) {
            (_, _, e) if !e.is_empty() => "candidate refused".to_string(),
            (Some(o), Some(r), _) => format!("{o:.2}/{r:.2}"),
            _ => "-".to_string(),
        };
        let removed = match get("removed_reason").as_str() {
            "" => String::new(),
            why => format!("removed: {why}"),
        };
        let error =
            [removed, get("last_error"), get("candidate_error")].into_iter().filter(|e| !e.is_empty()).collect::<Vec<_>>().join("; ");
        println!(
            "{:<34} {:>8} {:>14} {:<36} {:>8} {:>8} {:>9} {:>17}  {}",
            scenario,
            get("config_revision"),
            pending,
            plugin,
            get("events"),
            get("late"),
            seen,
            shadow,
            error
        );
    }
    Ok(())
}
