//! The terminal view: each scenario's latest hot list, redrawn in place on a terminal, or one
//! log line per emitted window otherwise.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use crate::config::ScenarioKey;
use crate::output::{HotList, Output};
use crate::pipeline::PipelineStats;

const SHOWN_ITEMS: usize = 8;

pub struct TerminalView {
    live: bool,
    latest: BTreeMap<ScenarioKey, HotList>,
    started: Instant,
    last_events: u64,
    last_draw: Instant,
}

impl TerminalView {
    /// `live`: redraw in place (for a terminal); otherwise log a line per window.
    pub fn new(live: bool) -> Self {
        Self { live, latest: BTreeMap::new(), started: Instant::now(), last_events: 0, last_draw: Instant::now() }
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

    /// Redraws the live view (called about once a second); `problems` are scenarios' last errors.
    pub fn draw(&mut self, stats: &PipelineStats, problems: &BTreeMap<ScenarioKey, String>) {
        if !self.live {
            return;
        }
        let now = Instant::now();
        let secs = now.duration_since(self.last_draw).as_secs_f64().max(1e-3);
        let rate = (stats.events_in - self.last_events) as f64 / secs;
        self.last_events = stats.events_in;
        self.last_draw = now;
        let mut s = String::from("\x1b[H\x1b[2J");
        s += &format!(
            "rtscore — up {:.0}s   events {} ({:.0}/s)   rejected {}   late {}   unknown scenario {}\n\n",
            self.started.elapsed().as_secs_f64(),
            stats.events_in,
            rate,
            stats.rejected,
            stats.late,
            stats.unknown_scenario
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
