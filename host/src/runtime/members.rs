//! `--threads N`: N pipelines in one process, each its own member of the Kafka consumer group
//! (as N hosts would be), so the group spreads the partitions over them and each pipeline owns
//! its share's state alone: no lock on the event path, and the results are a fleet's, which
//! equal one pipeline's (docs/operations.md, "Every core of a host").
//!
//! What they share is built once by `Runtime::build_all`. Here is what they meet at: the
//! config feed fanned out to each ([`fan_out`]), and a [`Board`] where each pipeline leaves
//! its status at every tick and reads back the host's, merged ([`merge`]), for `/status`, the
//! console and the Redis status hashes. Metrics recorded by a pipeline's task carry a
//! `pipeline` label (`crate::metrics_label`), so its absolute counters do not overwrite another's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::mpsc;

use super::config_feed::ConfigFeed;
use super::{Runtime, Shutdown};
use crate::output::status::{PipelineStats, ScenarioStatusRow, TenantStatusRow};

/// Runs every pipeline, each on its own task (so the runtime's workers run them side by side),
/// until each stops; the first error, if any, is the run's.
pub async fn run(pipelines: Vec<Runtime>, shutdown: Shutdown) -> anyhow::Result<()> {
    let n = pipelines.len();
    tracing::info!(threads = n, "running pipelines side by side, each a member of the consumer group");
    let tasks: Vec<_> = pipelines
        .into_iter()
        .enumerate()
        .map(|(i, rt)| {
            // Its log lines carry `pipeline{i=..}`, its metrics `pipeline="<i>"`.
            let run = tracing::Instrument::instrument(rt.run(shutdown.clone()), tracing::info_span!("pipeline", i));
            tokio::spawn(crate::metrics_label::scope(i, run))
        })
        .collect();
    let mut first_error = None;
    for (i, t) in tasks.into_iter().enumerate() {
        let result = match t.await {
            Ok(r) => r,
            Err(e) => Err(anyhow::anyhow!("pipeline {i} of {n} stopped: {e}")),
        };
        if let Err(e) = result {
            tracing::error!(pipeline = i, error = %format!("{e:#}"), "pipeline failed");
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Hands each of `n` pipelines its own copy of the config feed. A pipeline busy in a turn
/// reads its copy at the next turn; the feed waits for it (16 changes deep) rather than drop
/// one, since a skipped change would leave that pipeline on an old config.
pub fn fan_out(mut feed: mpsc::Receiver<ConfigFeed>, n: usize) -> Vec<mpsc::Receiver<ConfigFeed>> {
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel::<ConfigFeed>(16)).unzip();
    tokio::spawn(async move {
        while let Some(change) = feed.recv().await {
            for tx in &txs {
                // A pipeline that stopped takes no more changes; the others still do.
                let _ = tx.send(change.clone()).await;
            }
        }
    });
    rxs
}

/// What one pipeline reported at its last tick.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub doc: Value,
    pub stats: PipelineStats,
    pub rows: Vec<ScenarioStatusRow>,
    pub tenants: Vec<TenantStatusRow>,
}

/// Where the pipelines leave their reports. Locked a few times a second per pipeline, never on
/// the event path.
#[derive(Clone)]
pub struct Board(Arc<Mutex<Vec<Option<Report>>>>);

impl Board {
    pub fn new(n: usize) -> Self {
        Self(Arc::new(Mutex::new(vec![None; n])))
    }
}

/// One pipeline's seat at the [`Board`].
pub struct Member {
    index: usize,
    board: Board,
}

impl Member {
    pub fn new(index: usize, board: Board) -> Self {
        Self { index, board }
    }

    /// Leaves this pipeline's report and returns the host's: every pipeline's latest, merged.
    pub fn publish(&self, report: Report) -> Report {
        // Every writer leaves the reports whole, so a poisoned lock is still usable.
        let mut reports = self.board.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = reports.get_mut(self.index) {
            *slot = Some(report);
        }
        merge(&reports.iter().flatten().collect::<Vec<_>>())
    }
}

/// The host's report from its pipelines'. A scenario is described by the pipeline that scored
/// most of its windows (the one owning its partition: the others hold its config but no events),
/// with every pipeline's counts added up; tenants' and the host's counts add up too.
pub fn merge(reports: &[&Report]) -> Report {
    let mut rows: Vec<ScenarioStatusRow> = Vec::new();
    let mut at: HashMap<(String, String), usize> = HashMap::new();
    let mut tenants: Vec<TenantStatusRow> = Vec::new();
    let mut tenant_at: HashMap<String, usize> = HashMap::new();
    let mut stats = PipelineStats::default();
    for r in reports {
        for row in &r.rows {
            match at.get(&(row.tenant_id.clone(), row.scenario_id.clone())) {
                Some(&i) => merge_row(&mut rows[i], row),
                None => {
                    at.insert((row.tenant_id.clone(), row.scenario_id.clone()), rows.len());
                    rows.push(row.clone());
                }
            }
        }
        for t in &r.tenants {
            match tenant_at.get(&t.tenant_id) {
                Some(&i) => merge_tenant(&mut tenants[i], t),
                None => {
                    tenant_at.insert(t.tenant_id.clone(), tenants.len());
                    tenants.push(t.clone());
                }
            }
        }
        add_stats(&mut stats, &r.stats);
    }
    let doc = merge_docs(reports, &rows, &tenants, &stats);
    Report { doc, stats, rows, tenants }
}

fn merge_row(into: &mut ScenarioStatusRow, r: &ScenarioStatusRow) {
    let sums = (
        into.events + r.events,
        into.late + r.late,
        into.duplicates + r.duplicates,
        into.over_quota + r.over_quota,
        into.windows_emitted + r.windows_emitted,
    );
    let last_window_end = into.last_window_end.max(r.last_window_end);
    if (r.windows_emitted, r.events) > (into.windows_emitted, into.events) {
        *into = r.clone();
    }
    (into.events, into.late, into.duplicates, into.over_quota, into.windows_emitted) = sums;
    into.last_window_end = last_window_end;
}

fn merge_tenant(into: &mut TenantStatusRow, t: &TenantStatusRow) {
    into.events += t.events;
    into.late += t.late;
    into.duplicates += t.duplicates;
    into.unknown_scenario += t.unknown_scenario;
    for (reason, n) in &t.over_quota {
        *into.over_quota.entry(*reason).or_default() += n;
    }
    into.state_bytes += t.state_bytes;
    into.state_full |= t.state_full;
    into.watermark = min_some(into.watermark, t.watermark);
}

fn add_stats(into: &mut PipelineStats, s: &PipelineStats) {
    into.events_in += s.events_in;
    into.rejected += s.rejected;
    into.filtered += s.filtered;
    into.unknown_scenario += s.unknown_scenario;
    into.late += s.late;
    into.duplicates += s.duplicates;
    into.cross_partition += s.cross_partition;
    into.over_quota += s.over_quota;
    into.bad_markers += s.bad_markers;
}

fn min_some(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The host's `/status` document: the merged rows and counts, the host-wide figures folded
/// (the slowest watermark, the summed lags and queues, the oldest snapshot, every partition),
/// and each pipeline's own figures under `pipelines`.
fn merge_docs(reports: &[&Report], rows: &[ScenarioStatusRow], tenants: &[TenantStatusRow], stats: &PipelineStats) -> Value {
    let docs: Vec<&Value> = reports.iter().map(|r| &r.doc).collect();
    let ints = |key: &str| docs.iter().filter_map(|d| d[key].as_i64()).collect::<Vec<_>>();
    let backlog_ints = |key: &str| docs.iter().filter_map(|d| d["backlog"][key].as_i64()).collect::<Vec<_>>();
    let sum_or_null = |v: Vec<i64>| if v.is_empty() { Value::Null } else { v.iter().sum::<i64>().into() };
    let mut partitions: Vec<i64> =
        docs.iter().flat_map(|d| d["partitions"].as_array().into_iter().flatten().filter_map(Value::as_i64)).collect();
    partitions.sort_unstable();
    let any_partitions = docs.iter().any(|d| d["partitions"].is_array());
    let snapshot_age = docs.iter().filter_map(|d| d["snapshot_age_seconds"].as_f64()).reduce(f64::max);
    let pipelines: Vec<Value> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            serde_json::json!({
                "pipeline": i, "partitions": d["partitions"], "watermark": d["watermark"], "backlog": d["backlog"],
                "kafka_lag": d["kafka_lag"], "snapshot_age_seconds": d["snapshot_age_seconds"], "shuffle": d["shuffle"],
                "stats": d["stats"],
            })
        })
        .collect();
    serde_json::json!({
        "updated_at_ms": ints("updated_at_ms").into_iter().max(),
        "scenarios": rows,
        "tenants": tenants,
        "config_store_error": docs.iter().map(|d| &d["config_store_error"]).find(|e| !e.is_null()).cloned().unwrap_or(Value::Null),
        "watermark": ints("watermark").into_iter().min(),
        "backlog": {
            "queued_events": backlog_ints("queued_events").iter().sum::<i64>(),
            "kafka_lag": sum_or_null(backlog_ints("kafka_lag")),
            "generator_behind": backlog_ints("generator_behind").iter().sum::<i64>(),
            "event_time_lag_ms": backlog_ints("event_time_lag_ms").into_iter().max(),
            "input_read_bytes": Value::Null,
            "input_total_bytes": Value::Null,
        },
        "kafka_lag": sum_or_null(ints("kafka_lag")),
        "partitions": if any_partitions { Value::from(partitions) } else { Value::Null },
        "snapshot_age_seconds": snapshot_age,
        "stats": { "events_in": stats.events_in, "rejected": stats.rejected, "late": stats.late,
                   "unknown_scenario": stats.unknown_scenario, "duplicates": stats.duplicates, "filtered": stats.filtered,
                   "over_quota": stats.over_quota, "cross_partition": stats.cross_partition },
        "pipelines": pipelines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(scenario: &str, events: u64, windows: u64, revision: i64) -> ScenarioStatusRow {
        ScenarioStatusRow {
            tenant_id: "t".into(),
            scenario_id: scenario.into(),
            events,
            windows_emitted: windows,
            config_revision: Some(revision),
            last_window_end: (windows > 0).then_some(windows as i64 * 60_000),
            ..Default::default()
        }
    }

    fn report(rows: Vec<ScenarioStatusRow>, events_in: u64, partitions: &[i32], watermark: Option<i64>) -> Report {
        let stats = PipelineStats { events_in, ..Default::default() };
        let doc = serde_json::json!({"updated_at_ms": 5, "partitions": partitions, "watermark": watermark, "kafka_lag": 2,
            "backlog": {"queued_events": 10, "kafka_lag": 2, "generator_behind": 0, "event_time_lag_ms": watermark.map(|w| 100 - w)},
            "config_store_error": null, "snapshot_age_seconds": 1.5});
        let tenants = vec![TenantStatusRow { tenant_id: "t".into(), events: events_in, state_bytes: 100, watermark, ..Default::default() }];
        Report { doc, stats, rows, tenants }
    }

    #[test]
    fn the_host_report_takes_each_scenario_from_its_owner_and_adds_the_counts() {
        // Pipeline 0 owns `a`, pipeline 1 owns `b`; each holds the other's config, with no events.
        let p0 = report(vec![row("a", 90, 3, 7), row("b", 0, 0, 7)], 90, &[0, 2], Some(40));
        let p1 = report(vec![row("a", 0, 0, 7), row("b", 50, 2, 8)], 50, &[1], Some(30));
        let host = merge(&[&p0, &p1]);
        assert_eq!(host.stats.events_in, 140);
        assert_eq!(host.rows.len(), 2);
        assert_eq!((host.rows[0].events, host.rows[0].windows_emitted, host.rows[0].config_revision), (90, 3, Some(7)));
        assert_eq!((host.rows[1].events, host.rows[1].windows_emitted, host.rows[1].config_revision), (50, 2, Some(8)));
        assert_eq!(host.rows[1].last_window_end, Some(120_000));
        assert_eq!(host.tenants[0].events, 140);
        assert_eq!(host.tenants[0].state_bytes, 200);
        assert_eq!(host.tenants[0].watermark, Some(30), "the slowest pipeline holds the tenant back");
        assert_eq!(host.doc["partitions"], serde_json::json!([0, 1, 2]));
        assert_eq!(host.doc["watermark"], 30);
        assert_eq!(host.doc["kafka_lag"], 4);
        assert_eq!(host.doc["backlog"]["queued_events"], 20);
        assert_eq!(host.doc["backlog"]["event_time_lag_ms"], 70);
        assert_eq!(host.doc["stats"]["events_in"], 140);
        assert_eq!(host.doc["pipelines"][1]["partitions"], serde_json::json!([1]));
        assert_eq!(host.doc["scenarios"][1]["scenario_id"], "b");
    }

    #[test]
    fn a_scenario_split_over_pipelines_adds_its_counts_and_one_report_is_itself() {
        let p0 = report(vec![row("a", 10, 1, 1)], 10, &[0], Some(5));
        let p1 = report(vec![row("a", 20, 1, 1)], 20, &[1], None);
        let host = merge(&[&p0, &p1]);
        assert_eq!((host.rows[0].events, host.rows[0].windows_emitted), (30, 2));
        assert_eq!(host.doc["watermark"], 5, "a pipeline with no watermark yet does not hold the host back");
        let alone = merge(&[&p0]);
        assert_eq!(alone.rows, p0.rows);
        assert_eq!(alone.stats, p0.stats);
    }

    #[test]
    fn a_seat_at_the_board_sees_every_pipelines_latest_report() {
        let board = Board::new(2);
        let (a, b) = (Member::new(0, board.clone()), Member::new(1, board));
        assert_eq!(a.publish(report(vec![], 1, &[0], None)).stats.events_in, 1);
        assert_eq!(b.publish(report(vec![], 2, &[1], None)).stats.events_in, 3);
        assert_eq!(a.publish(report(vec![], 5, &[0], None)).stats.events_in, 7, "a newer report replaces its pipeline's last");
    }

    #[tokio::test]
    async fn the_feed_reaches_every_pipeline() {
        let (tx, rx) = mpsc::channel(4);
        let mut copies = fan_out(rx, 3);
        tx.send(ConfigFeed::Recovered).await.unwrap();
        for c in &mut copies {
            assert!(matches!(c.recv().await, Some(ConfigFeed::Recovered)));
        }
    }
}
