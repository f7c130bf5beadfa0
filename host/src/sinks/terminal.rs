//! The terminal view: each scenario's latest hot list, redrawn in place on a terminal, or one
//! log line per emitted window otherwise.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use crate::config::ScenarioKey;
use crate::output::status::PipelineStats;
use crate::output::{HotList, Output};

const SHOWN_ITEMS: usize = 8;

pub struct TerminalView {
    live: bool,
    latest: BTreeMap<ScenarioKey, HotList>,
    started: Instant,
    last_events: u64,
    last_draw: Instant,
    /// Bytes of a replayed file read at the last draw, and when the log last said how far.
    last_read: u64,
    last_progress_log: Instant,
}

/// How often the log view reports a replay's progress.
const PROGRESS_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// "42% read, about 12 s left" for a replay that has read `read` of `total` bytes at
/// `bytes_per_s`.
pub fn replay_progress(read: u64, total: u64, bytes_per_s: f64) -> String {
    let share = read as f64 * 100.0 / total.max(1) as f64;
    let left = total.saturating_sub(read) as f64;
    if read >= total {
        "input read to the end".to_string()
    } else if bytes_per_s >= 1.0 {
        format!("{share:.0}% read, about {:.0} s left", left / bytes_per_s)
    } else {
        format!("{share:.0}% read")
    }
}

impl TerminalView {
    /// `live`: redraw in place (for a terminal); otherwise log a line per window.
    pub fn new(live: bool) -> Self {
        let now = Instant::now();
        // The first draw of a replay already says how far it is.
        let last_progress_log = now.checked_sub(PROGRESS_LOG_EVERY).unwrap_or(now);
        Self { live, latest: BTreeMap::new(), started: now, last_events: 0, last_draw: now, last_read: 0, last_progress_log }
    }

    pub fn record(&mut self, outputs: &[Output]) {
        for o in outputs {
            let Output::Hot(h) = o else { continue };
            if !self.live {
                let top: Vec<String> = h.items.iter().take(3).map(|i| format!("{}={:.3}", i.item_id, i.score)).collect();
                tracing::info!(scenario = %h.key, window_end = h.window_end, items = h.items.len(), revision = h.config_revision, plugin = h.plugin.as_deref().unwrap_or("builtin"), top = %top.join(" "), "hot list");
            }
            self.latest.insert(h.key.clone(), h.clone());
        }
    }

    /// Redraws the live view (called about once a second); `problems` are scenarios' last errors,
    /// `input` a replayed file's (bytes read, size). The log view says how far a replay is every
    /// few seconds instead.
    pub fn draw(&mut self, stats: &PipelineStats, problems: &BTreeMap<ScenarioKey, String>, input: Option<(u64, u64)>) {
        let now = Instant::now();
        let secs = now.duration_since(self.last_draw).as_secs_f64().max(1e-3);
        let rate = (stats.events_in - self.last_events) as f64 / secs;
        let progress = input.map(|(read, total)| replay_progress(read, total, read.saturating_sub(self.last_read) as f64 / secs));
        self.last_events = stats.events_in;
        self.last_read = input.map_or(0, |(read, _)| read);
        self.last_draw = now;
        if !self.live {
            if let Some(p) = progress
                && now.duration_since(self.last_progress_log) >= PROGRESS_LOG_EVERY
            {
                self.last_progress_log = now;
                tracing::info!(events = stats.events_in, events_per_s = rate.round(), "replay: {p}");
            }
            return;
        }
        let mut s = String::from("\x1b[H\x1b[2J");
        s += &format!(
            "rtscore — up {:.0}s   events {} ({:.0}/s)   rejected {}   late {}   unknown scenario {}{}\n\n",
            self.started.elapsed().as_secs_f64(),
            stats.events_in,
            rate,
            stats.rejected,
            stats.late,
            stats.unknown_scenario,
            progress.map_or_else(String::new, |p| format!("   replay: {p}"))
        );
        if self.latest.is_empty() {
            s += "waiting for the first window to close (watermark = max event time - allowed lateness)...\n";
        }
        // Scenarios with a problem but no window yet still show it.
        for (key, p) in problems.iter().filter(|(k, _)| !self.latest.contains_key(*k)) {
            s += &format!("\x1b[1m{key}\x1b[0m  \x1b[33m! {}\x1b[0m\n\n", p.chars().take(150).collect::<String>());
        }
        for (key, h) in &self.latest {
            let end =
                chrono::DateTime::from_timestamp_millis(h.window_end).map(|t| t.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_default();
            s += &format!(
                "\x1b[1m{key}\x1b[0m  window ending {end}  rev {}  {}  ({} items)\n",
                h.config_revision,
                h.plugin.as_deref().unwrap_or("built-in formula"),
                h.items.len()
            );
            if let Some(p) = problems.get(key) {
                s += &format!("  \x1b[33m! {}\x1b[0m\n", p.chars().take(150).collect::<String>());
            }
            for (rank, it) in h.items.iter().take(SHOWN_ITEMS).enumerate() {
                s += &format!("  {:>2}. {:<24} {:>12.3}\n", rank + 1, it.item_id, it.score);
            }
            s.push('\n');
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(s.as_bytes());
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_progress_says_the_share_read_and_the_time_left() {
        assert_eq!(replay_progress(420, 1_000, 50.0), "42% read, about 12 s left");
        assert_eq!(replay_progress(0, 1_000, 0.0), "0% read");
        assert_eq!(replay_progress(1_000, 1_000, 10.0), "input read to the end");
    }
}
