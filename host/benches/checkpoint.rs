//! `cargo bench -p rtscore --bench checkpoint`: what one partition's snapshot costs at 1M and
//! 10M (item, minute) pairs of hot-score state (issue 20, "State that scales"), one table:
//!
//! - copy: the consistent cut taken on the runtime's loop (`Pipeline::export_partition`), the
//!   only part that holds up events;
//! - encode: the snapshot bytes, built on a blocking thread;
//! - store: the chunked write to Redis (`SnapshotStore::save`, chunks of 8 MiB), in the background;
//! - load + decode, and import into a fresh pipeline: a restart's or a takeover's recovery.
//!
//! One scenario, 60-minute window with a 1-minute slide, every item with one event in each of
//! the 60 minutes. Needs `REDIS_URL` for the store and load columns (scripts/bench.sh starts the
//! stack); without it they are left out. `RTSCORE_BENCH_PAIRS` (e.g. `1000000`) runs one size.

// Bench code: a failed unwrap is a failed bench, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use rtscore::config::parse_scenario;
use rtscore::event::{Position, RecordBatch};
use rtscore::pipeline::{Pipeline, PipelineOptions};
use rtscore::runtime::snapshot_store::{Encoded, SnapshotStore};
use rtscore::sinks::redis::{RedisSink, RedisTtl};

const T0: i64 = 1_767_225_600_000;
const MIN: i64 = 60_000;
const BATCH: usize = 8192;
/// The input partition the state belongs to.
const P: i32 = 0;

/// A pipeline running the bench's one scenario.
fn pipeline(opts: PipelineOptions) -> Pipeline {
    let doc = serde_json::json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": {"hot_score": {
        "window_size_minutes": 60, "window_slide_minutes": 1, "top_n": 10}}}});
    let cfg = Arc::new(parse_scenario(&doc).unwrap());
    let mut p = Pipeline::new(opts);
    p.apply_config(&cfg.key, Some(cfg.clone()));
    p
}

fn pipeline_with(pairs: usize) -> (Pipeline, usize) {
    // A lateness beyond the hour of events: no window closes and nothing is evicted while the
    // state builds.
    let mut p = pipeline(PipelineOptions { allowed_lateness_ms: 2 * 3_600_000, ..PipelineOptions::default() });
    let items = pairs / 60;
    let (mut out, mut rejects) = (Vec::new(), Vec::new());
    let mut batch = RecordBatch::default();
    for minute in 0..60 {
        for item in 0..items {
            let line = format!(
                r#"{{"tenant_id":"t","scenario_id":"s","user_id":"u{}","item_id":"i{item}","action":"click","ts":{}}}"#,
                item % 1000,
                T0 + minute * MIN + (item as i64 % 50_000)
            );
            batch.push_at(line.as_bytes(), Position { partition: P, offset: (minute as usize * items + item) as i64 });
            if batch.len() == BATCH {
                p.process(&batch, &mut out, &mut rejects);
                batch = RecordBatch::default();
                out.clear();
            }
        }
    }
    p.process(&batch, &mut out, &mut rejects);
    assert!(rejects.is_empty(), "{rejects:?}");
    let held: usize = p.hot_job().scenarios().map(|s| s.windows.bucket_count()).sum();
    (p, held)
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

fn main() {
    let sizes: Vec<usize> = match std::env::var("RTSCORE_BENCH_PAIRS") {
        Ok(v) => vec![v.parse().expect("RTSCORE_BENCH_PAIRS: a number")],
        Err(_) => vec![1_000_000, 10_000_000],
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let redis_url = std::env::var("REDIS_URL").ok();
    println!(
        "| (item, minute) pairs | state MB in memory | copy ms (loop) | encode ms | snapshot MB | chunks | store ms | load + decode ms | import ms |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for pairs in sizes {
        let (p, held) = pipeline_with(pairs);
        let state_mb = p.hot_job().scenarios().map(|s| s.windows.state_bytes()).sum::<usize>() as f64 / 1e6;
        let t = Instant::now();
        let state = p.export_partition(P, 1);
        let copy_ms = ms(t);
        let t = Instant::now();
        let encoded = Encoded::of(&state).unwrap();
        let encode_ms = ms(t);
        let snapshot_mb = encoded.blob.len() as f64 / 1e6;
        drop(state);
        let (mut chunks, mut store_ms, mut load_ms, mut import_ms) =
            (String::from("-"), String::from("-"), String::from("-"), String::from("-"));
        if let Some(url) = &redis_url {
            rt.block_on(async {
                let mut redis = RedisSink::connect(url, RedisTtl::default()).await.unwrap();
                let store = SnapshotStore::new(&format!("bench-{}", std::process::id()), "checkpoint");
                let t = Instant::now();
                let saved = store.save(&mut redis, std::slice::from_ref(&encoded), T0).await.unwrap();
                store_ms = format!("{:.0}", ms(t));
                chunks = saved.chunks.to_string();
                let t = Instant::now();
                let mut loaded = store.load(&mut redis, &[P]).await.unwrap();
                load_ms = format!("{:.0}", ms(t));
                let mut fresh = pipeline(PipelineOptions::default());
                let t = Instant::now();
                fresh.import_partition(loaded.pop().expect("stored snapshot"), T0);
                import_ms = format!("{:.0}", ms(t));
                let restored: usize = fresh.hot_job().scenarios().map(|s| s.windows.bucket_count()).sum();
                assert_eq!(restored, held, "the restored state holds every pair");
                store.delete(&mut redis, &[P]).await.unwrap();
            });
        }
        println!(
            "| {held} | {state_mb:.0} | {copy_ms:.0} | {encode_ms:.0} | {snapshot_mb:.1} | {chunks} | {store_ms} | {load_ms} | {import_ms} |"
        );
    }
}
