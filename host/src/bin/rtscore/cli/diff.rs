//! `rtscore diff A.jsonl B.jsonl`: compare two runs' hot lists window by window (backtests).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use rtscore::backtest::diff::{diff, parse_sink};

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The baseline sink (for example the live config's replay).
    pub a: PathBuf,
    /// The candidate sink.
    pub b: PathBuf,
    /// Depth of the compared hot lists.
    #[arg(long, short, default_value_t = 10)]
    pub k: usize,
    /// One JSON object per scenario instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: DiffArgs) -> anyhow::Result<()> {
    let read = |p: &PathBuf| -> anyhow::Result<_> {
        let text = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        parse_sink(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
    };
    let (a, b) = (read(&args.a)?, read(&args.b)?);
    let report = diff(&a, &b, args.k.max(1));
    if args.json {
        for r in &report {
            println!("{}", serde_json::to_string(r)?);
        }
        return Ok(());
    }
    println!("A = {}\nB = {}\ntop-{} per window\n", args.a.display(), args.b.display(), args.k);
    println!(
        "{:<28} {:>8} {:>6} {:>6} {:>8} {:>8} {:>9} {:>9} {:>9}",
        "scenario", "windows", "only A", "only B", "jaccard", "rbo", "drift p50", "drift p90", "drift max"
    );
    for r in &report {
        // Nothing to compare is not agreement: say so instead of printing perfect scores.
        if r.windows_compared == 0 {
            println!(
                "{:<28} {:>8} {:>6} {:>6}  no window in common: the runs cover different windows (check their event files)",
                r.scenario, 0, r.windows_only_in_a, r.windows_only_in_b
            );
            continue;
        }
        println!(
            "{:<28} {:>8} {:>6} {:>6} {:>8.3} {:>8.3} {:>8.1}% {:>8.1}% {:>8.1}%",
            r.scenario,
            r.windows_compared,
            r.windows_only_in_a,
            r.windows_only_in_b,
            r.mean_jaccard,
            r.mean_rbo,
            100.0 * r.drift_p50,
            100.0 * r.drift_p90,
            100.0 * r.drift_max
        );
    }
    for r in report.iter().filter(|r| !r.entering.is_empty() || !r.leaving.is_empty()) {
        let show = |v: &[(String, usize)]| v.iter().take(5).map(|(i, n)| format!("{i} ({n})")).collect::<Vec<_>>().join(", ");
        println!(
            "\n{}: entering B's top-{}: {}\n{}  leaving: {}",
            r.scenario,
            args.k,
            show(&r.entering),
            " ".repeat(r.scenario.len()),
            show(&r.leaving)
        );
    }
    Ok(())
}
