//! Chunked partition snapshots on a real Redis (docs/operations.md, "State and offsets"): a
//! state stored in many chunks reads back byte for byte, a snapshot of an earlier offset never
//! replaces a later one and leaves no chunk behind, a newer one deletes the chunks it replaces,
//! snapshots written by older hosts (the whole state in the manifest) still load, and a delete
//! removes everything.

use std::sync::Arc;

use redis::Commands;
use rtscore::config::parse_scenario;
use rtscore::event::{Position, RecordBatch};
use rtscore::pipeline::{PartitionState, Pipeline, PipelineOptions};
use rtscore::runtime::snapshot_store::{Encoded, SnapshotStore};
use rtscore::sinks::redis::{RedisSink, RedisTtl};
use rtscore_testkit::*;

const T0: i64 = 1_767_225_600_000;
/// The input partition the state belongs to.
const P: i32 = 3;

/// A partition state of a few hundred (item, minute) pairs, at `next_offset`.
fn state(next_offset: i64) -> PartitionState {
    let doc = serde_json::json!({"tenant_id": "t", "scenario_id": "s", "config": {"realtime_compute": {"hot_score": {"window_size_minutes": 60}}}});
    let cfg = Arc::new(parse_scenario(&doc).unwrap());
    let mut p = Pipeline::new(PipelineOptions { allowed_lateness_ms: 7_200_000, ..PipelineOptions::default() });
    p.apply_config(&cfg.key.clone(), Some(cfg));
    let mut batch = RecordBatch::default();
    for k in 0..600 {
        let line = format!(
            r#"{{"tenant_id":"t","scenario_id":"s","user_id":"u","item_id":"i{}","action":"click","ts":{}}}"#,
            k % 50,
            T0 + k * 6_000
        );
        batch.push_at(line.as_bytes(), Position { partition: P, offset: k });
    }
    p.process(&batch, &mut Vec::new(), &mut Vec::new());
    p.export_partition(P, next_offset)
}

#[test]
fn chunked_snapshots_round_trip_never_go_back_and_leave_no_chunk_behind() {
    let stack = Stack::ensure();
    let (group, topic) = (unique("g"), unique("t"));
    let manifest = format!("rtscore:snapshot:{group}:{topic}:{P}");
    let chunk_keys = || -> Vec<String> { stack.redis().keys(format!("rtscore:snapshot-chunk:{group}:{topic}:*")).unwrap() };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut redis = RedisSink::connect(&stack.redis_url, RedisTtl::default()).await.unwrap();
        let store = SnapshotStore::new(&group, &topic).with_chunk_bytes(1024);
        let ten = Encoded::of(&state(10)).unwrap();
        assert!(ten.blob.len() > 4 * 1024, "the state spans several chunks: {} bytes", ten.blob.len());
        let saved = store.save(&mut redis, std::slice::from_ref(&ten), T0).await.unwrap();
        assert_eq!((saved.partitions, saved.chunks), (1, ten.blob.len().div_ceil(1024)));
        let loaded = store.load(&mut redis, &[P, 7]).await.unwrap();
        assert_eq!(loaded.len(), 1, "partition 7 has no snapshot");
        assert_eq!((loaded[0].next_offset, loaded[0].scenarios.len()), (10, 1));
        let blob = store.load_blob(&mut redis, P).await.unwrap().unwrap();
        assert!(blob == ten.blob, "read back byte for byte: {} of {} bytes", blob.len(), ten.blob.len());
        assert_eq!(chunk_keys().len(), saved.chunks);

        // Another host's snapshot of an earlier offset: refused, and its chunks are gone.
        let five = Encoded::of(&state(5)).unwrap();
        assert_eq!(store.save(&mut redis, &[five], T0).await.unwrap().partitions, 0);
        assert_eq!(store.load(&mut redis, &[P]).await.unwrap()[0].next_offset, 10);
        assert_eq!(chunk_keys().len(), saved.chunks, "the refused chunks are deleted");

        // A later one replaces it and deletes the chunks it replaced.
        let twenty = Encoded::of(&state(20)).unwrap();
        let later = store.save(&mut redis, &[twenty], T0).await.unwrap();
        assert_eq!(store.load(&mut redis, &[P]).await.unwrap()[0].next_offset, 20);
        assert_eq!(chunk_keys().len(), later.chunks);

        // An older host's layout: the whole state in the manifest.
        store.delete(&mut redis, &[P]).await.unwrap();
        assert!(chunk_keys().is_empty());
        let _: () = stack.redis().hset_multiple(&manifest, &[("next_offset", "10".as_bytes()), ("state", &ten.blob)]).unwrap();
        assert!(store.load_blob(&mut redis, P).await.unwrap().is_some_and(|b| b == ten.blob));
        assert_eq!(store.load(&mut redis, &[P]).await.unwrap()[0].next_offset, 10);
        // Its next save moves it to chunks.
        store.save(&mut redis, &[Encoded::of(&state(30)).unwrap()], T0).await.unwrap();
        assert!(!stack.redis().hexists::<_, _, bool>(&manifest, "state").unwrap());
        store.delete(&mut redis, &[P]).await.unwrap();
        assert!(chunk_keys().is_empty() && !stack.redis().exists::<_, bool>(&manifest).unwrap());
    });
}
