//! The pipeline over a repartitioned input (forwarded events tagged with their source
//! partition, progress markers after each simulated shuffle transaction) emits what it emits
//! reading the source partitions directly, also when it reads only some internal partitions
//! (a fleet host) and when it moves a partition through a snapshot mid-stream.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::config::parse_scenario;
use crate::event::Position;
use crate::repartition::{ShuffleProgress, SourceTag, partition_for_scenario};

const T0: i64 = 1_767_225_600_000;
const SOURCES: i32 = 3;
const INTERNAL: i32 = 2;
const SCENARIOS: usize = 6;
const ACTIONS: [&str; 4] = ["view", "click", "purchase", "like"];

fn configs() -> Vec<Arc<ScenarioConfig>> {
    (0..SCENARIOS)
        .map(|k| {
            let doc = serde_json::json!({"tenant_id": "t", "scenario_id": format!("s{k}"), "revision": 1, "config": {"realtime_compute": {
                "hot_score": {"window_size_minutes": 10, "window_slide_minutes": 5, "decay_lambda": 0.5, "top_n": 10}}}});
            Arc::new(parse_scenario(&doc).unwrap())
        })
        .collect()
}

fn pipeline() -> Pipeline {
    let mut p = Pipeline::new(PipelineOptions::default());
    for c in configs() {
        p.apply_config(&c.key, Some(c.clone()));
    }
    p
}

fn internal_of(k: usize) -> i32 {
    partition_for_scenario("t", &format!("s{k}"), INTERNAL)
}

/// (source partition, scenario, ts, line) in source order. Source 2 carries only scenarios of
/// internal partition 1, so a host reading internal partition 0 learns source 2's progress from
/// markers alone.
fn events() -> Vec<(i32, usize, i64, String)> {
    (0..1500i64)
        .map(|i| {
            let k = ((i * 7) % SCENARIOS as i64) as usize;
            let source = if internal_of(k) == 1 { (i % 3) as i32 } else { (i % 2) as i32 };
            let ts = T0 + i * 3_000 - (i % 3) * 1_000;
            let line = format!(
                r#"{{"tenant_id":"t","scenario_id":"s{k}","user_id":"u{i}","item_id":"i{}","action":"{}","ts":{ts}}}"#,
                (i * 11) % 17,
                ACTIONS[(i % 4) as usize]
            );
            (source, k, ts, line)
        })
        .collect()
}

type Hot = BTreeMap<(String, i64), Vec<(String, f64)>>;

fn hot(out: &[Output]) -> Hot {
    out.iter()
        .filter_map(|o| match o {
            Output::Hot(h) => {
                Some(((h.key.scenario_id.to_string(), h.window_end), h.items.iter().map(|i| (i.item_id.clone(), i.score)).collect()))
            }
            _ => None,
        })
        .collect()
}

/// One host reading the source partitions directly, in order.
fn direct() -> Hot {
    let mut p = pipeline();
    p.assign_partitions(&[0, 1, 2], 0);
    let mut offsets = [0i64; SOURCES as usize];
    let (mut out, mut rejects) = (Vec::new(), Vec::new());
    for chunk in events().chunks(40) {
        let mut batch = RecordBatch::default();
        for (source, _, _, line) in chunk {
            let offset = &mut offsets[*source as usize];
            batch.push_at(line.as_bytes(), Position { partition: *source, offset: *offset });
            *offset += 1;
        }
        p.process_at(&batch, 0, &mut out, &mut rejects);
    }
    assert!(rejects.is_empty());
    hot(&out)
}

/// The internal partitions' records as the shuffle writes them: per transaction of 25 events,
/// each event to its scenario's partition, then a marker of every source read to every partition.
fn shuffled() -> Vec<Vec<(Origin, Vec<u8>)>> {
    let mut parts = vec![Vec::new(); INTERNAL as usize];
    let mut progress = ShuffleProgress::default();
    for txn in events().chunks(25) {
        let mut touched = std::collections::BTreeSet::new();
        for (source, k, ts, line) in txn {
            let tag = SourceTag { source: *source, sources: SOURCES };
            progress.forwarded(tag, "t", *ts);
            touched.insert(*source);
            parts[internal_of(*k) as usize].push((Origin::Source { source: *source, sources: SOURCES }, line.clone().into_bytes()));
        }
        for s in touched {
            let marker = progress.marker(s).unwrap().encode();
            parts.iter_mut().for_each(|p| p.push((Origin::Marker, marker.clone())));
        }
        progress.commit();
    }
    parts
}

/// Feeds `partitions` of the internal topic (round-robin in slices of 30 records, from
/// `from` offsets on) to `p`.
fn feed(p: &mut Pipeline, parts: &[Vec<(Origin, Vec<u8>)>], partitions: &[i32], from: i64, to: i64, out: &mut Vec<Output>) {
    let mut rejects = Vec::new();
    let mut at = from;
    while at < to {
        let end = (at + 30).min(to);
        let mut batch = RecordBatch::default();
        for &pi in partitions {
            for (o, (origin, rec)) in parts[pi as usize].iter().enumerate().take(end as usize).skip(at as usize) {
                batch.push_from(rec, Position { partition: pi, offset: o as i64 }, *origin);
            }
        }
        p.process_at(&batch, 0, out, &mut rejects);
        at = end;
    }
    assert!(rejects.is_empty(), "{rejects:?}");
}

fn only(h: &Hot, partition: i32) -> Hot {
    h.iter().filter(|((s, _), _)| internal_of(s[1..].parse().unwrap()) == partition).map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[test]
fn a_repartitioned_input_emits_what_the_source_partitions_do() {
    assert!((0..SCENARIOS).any(|k| internal_of(k) == 0) && (0..SCENARIOS).any(|k| internal_of(k) == 1));
    let want = direct();
    assert!(want.len() > 60, "{}", want.len());
    let parts = shuffled();
    let longest = parts.iter().map(Vec::len).max().unwrap() as i64;

    // One host reading both internal partitions.
    let mut all = pipeline();
    all.assign_partitions(&[0, 1], 0);
    let mut out = Vec::new();
    feed(&mut all, &parts, &[0, 1], 0, longest, &mut out);
    assert_eq!(hot(&out), want);
    assert_eq!(all.stats().events_in, 1500, "markers are not events");

    // A fleet host reading internal partition 0 only: source 2 reaches it through markers.
    let mut half = pipeline();
    half.assign_partitions(&[0], 0);
    let mut out = Vec::new();
    let cut = parts[0].len() as i64 / 2;
    feed(&mut half, &parts, &[0], 0, cut, &mut out);
    // The partition moves to another host through its snapshot, which keeps every lane.
    let state = half.export_partition(0, cut);
    assert_eq!(state.sources.len(), SOURCES as usize);
    let mut next = pipeline();
    next.import_partition(state, 0);
    next.assign_partitions(&[0], 0);
    feed(&mut next, &parts, &[0], cut, parts[0].len() as i64, &mut out);
    let got = hot(&out);
    assert!(got.len() > 15, "{}", got.len());
    assert_eq!(got, only(&want, 0));
}

#[test]
fn without_a_source_partitions_progress_nothing_closes() {
    let parts = shuffled();
    // Internal partition 0 with source 2's markers removed: source 2 never delivers there,
    // so (its partition not idle) no window may close.
    let starved: Vec<Vec<(Origin, Vec<u8>)>> = vec![
        parts[0]
            .iter()
            .filter(|(o, rec)| *o != Origin::Marker || crate::repartition::Marker::decode(rec).unwrap().tag.source != 2)
            .cloned()
            .collect(),
    ];
    let mut p = pipeline();
    p.assign_partitions(&[0], 0);
    let mut out = Vec::new();
    feed(&mut p, &starved, &[0], 0, starved[0].len() as i64, &mut out);
    assert_eq!(hot(&out).len(), 0);
    assert_eq!(p.watermark(0), None);
    // A marker that does not decode is skipped, not counted and not rejected.
    let mut batch = RecordBatch::default();
    batch.push_from(b"RTSMgarbage", Position { partition: 0, offset: 1 << 20 }, Origin::Marker);
    let before = p.stats().events_in;
    p.process_at(&batch, 0, &mut out, &mut Vec::new());
    assert_eq!((p.stats().events_in, p.stats().bad_markers), (before, 1));
}
