//! State slicing for snapshots and rebalances. Each scenario's state belongs to the input
//! partition its events come from (its *home*, the first partition that delivered one of its
//! events), so when Kafka moves a partition between hosts its scenarios' windows, profiles and
//! metrics move with it: [`Pipeline::export_partition`] on the old owner (or from the last
//! snapshot), [`Pipeline::import_partition`] on the new one. This is exact when every event of
//! a scenario arrives on one partition (a topic keyed by `tenant_id/scenario_id`); events of a
//! scenario seen on another partition are counted as `cross_partition` (see docs/operations.md).

use serde::{Deserialize, Serialize};

use super::Pipeline;
use super::hot_job::{HotState, HotStateV2};
use super::metrics_job::MetricsState;
use super::profile_job::ProfileState;
use crate::config::ScenarioKey;

/// Everything a host needs to continue one input partition where another left off.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionState {
    pub partition: i32,
    /// The next offset to process: every record before it is reflected in this state (and its
    /// outputs were written before the state was).
    pub next_offset: i64,
    /// Max event time the partition had delivered (its part of the host's event time).
    pub max_event_ts: Option<i64>,
    pub scenarios: Vec<ScenarioState>,
    /// Each tenant's max event time on the partition (its part of that tenant's event time).
    pub tenant_max_ts: Vec<(String, i64)>,
    /// Repartitioned input (`--repartition`): the same per source partition (format 4; empty
    /// otherwise, and then the snapshot is written in format 3, byte for byte as before).
    pub sources: Vec<SourceLaneState>,
}

/// One source partition's progress on a repartitioned input partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceLaneState {
    pub source: i32,
    pub max_event_ts: Option<i64>,
    pub tenant_max_ts: Vec<(String, i64)>,
}

/// [`PartitionState`] as snapshot format 3 wrote it: no source partitions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionStateV3 {
    pub partition: i32,
    pub next_offset: i64,
    pub max_event_ts: Option<i64>,
    pub scenarios: Vec<ScenarioState>,
    pub tenant_max_ts: Vec<(String, i64)>,
}

impl From<PartitionStateV3> for PartitionState {
    fn from(v: PartitionStateV3) -> Self {
        Self {
            partition: v.partition,
            next_offset: v.next_offset,
            max_event_ts: v.max_event_ts,
            scenarios: v.scenarios,
            tenant_max_ts: v.tenant_max_ts,
            sources: Vec::new(),
        }
    }
}

/// [`PartitionState`] as snapshot format 1 wrote it: one maximum for every tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionStateV1 {
    pub partition: i32,
    pub next_offset: i64,
    pub max_event_ts: Option<i64>,
    pub scenarios: Vec<ScenarioStateV2>,
}

/// [`PartitionState`] as snapshot format 2 wrote it: windows without features.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionStateV2 {
    pub partition: i32,
    pub next_offset: i64,
    pub max_event_ts: Option<i64>,
    pub scenarios: Vec<ScenarioStateV2>,
    pub tenant_max_ts: Vec<(String, i64)>,
}

impl From<PartitionStateV2> for PartitionState {
    fn from(v: PartitionStateV2) -> Self {
        Self {
            partition: v.partition,
            next_offset: v.next_offset,
            max_event_ts: v.max_event_ts,
            scenarios: v.scenarios.into_iter().map(Into::into).collect(),
            tenant_max_ts: v.tenant_max_ts,
            sources: Vec::new(),
        }
    }
}

/// [`ScenarioState`] of formats 1 and 2.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioStateV2 {
    pub tenant_id: String,
    pub scenario_id: String,
    pub hot: Option<HotStateV2>,
    pub profiles: Option<ProfileState>,
    pub metrics: Option<MetricsState>,
}

impl From<ScenarioStateV2> for ScenarioState {
    fn from(v: ScenarioStateV2) -> Self {
        Self { tenant_id: v.tenant_id, scenario_id: v.scenario_id, hot: v.hot.map(Into::into), profiles: v.profiles, metrics: v.metrics }
    }
}

impl From<ScenarioState> for ScenarioStateV2 {
    fn from(s: ScenarioState) -> Self {
        Self { tenant_id: s.tenant_id, scenario_id: s.scenario_id, hot: s.hot.map(Into::into), profiles: s.profiles, metrics: s.metrics }
    }
}

impl From<PartitionStateV1> for PartitionState {
    /// Each restored scenario's tenant starts from the partition's maximum (held to the wall
    /// clock plus the skew on restore); from the next snapshot on each has its own.
    fn from(v1: PartitionStateV1) -> Self {
        let mut tenants: Vec<(String, i64)> = match v1.max_event_ts {
            Some(ts) => v1.scenarios.iter().map(|s| (s.tenant_id.clone(), ts)).collect(),
            None => Vec::new(),
        };
        tenants.dedup();
        Self {
            partition: v1.partition,
            next_offset: v1.next_offset,
            max_event_ts: v1.max_event_ts,
            scenarios: v1.scenarios.into_iter().map(Into::into).collect(),
            tenant_max_ts: tenants,
            sources: Vec::new(),
        }
    }
}

/// One scenario's state in the three jobs (`None` where the job does not run it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioState {
    pub tenant_id: String,
    pub scenario_id: String,
    pub hot: Option<HotState>,
    pub profiles: Option<ProfileState>,
    pub metrics: Option<MetricsState>,
}

impl Pipeline {
    /// Notes the partition a routed event came from.
    #[inline]
    pub(super) fn note_home(&mut self, tenant: &str, scenario: &str, partition: i32) {
        match self.homes.get(tenant, scenario) {
            Some(&home) if home == partition => {}
            Some(_) => self.stats.cross_partition += 1,
            None => self.homes.upsert(&ScenarioKey::new(tenant, scenario), |_| {}, || partition),
        }
    }

    fn homed_in(&self, partition: i32) -> Vec<ScenarioKey> {
        self.homes
            .iter()
            .filter(|(_, _, p)| **p == partition)
            .map(|(t, s, _)| ScenarioKey { tenant_id: t.clone(), scenario_id: s.clone() })
            .collect()
    }

    /// A copy of the state of `partition`'s scenarios, valid up to `next_offset`.
    pub fn export_partition(&self, partition: i32, next_offset: i64) -> PartitionState {
        let scenarios = self
            .homed_in(partition)
            .into_iter()
            .map(|key| ScenarioState {
                tenant_id: key.tenant_id.to_string(),
                scenario_id: key.scenario_id.to_string(),
                hot: self.hot.export_state(&key),
                profiles: self.profiles.export_state(&key),
                metrics: self.metrics.export_state(&key),
            })
            .collect();
        let (max_event_ts, tenant_max_ts, sources) = self.time.export(partition);
        let sources = sources
            .into_iter()
            .map(|(source, max_event_ts, tenant_max_ts)| SourceLaneState { source, max_event_ts, tenant_max_ts })
            .collect();
        PartitionState { partition, next_offset, max_event_ts, scenarios, tenant_max_ts, sources }
    }

    /// Takes over a partition's state (from a snapshot). Scenarios without a config on this
    /// host are skipped; returns how many were restored.
    pub fn import_partition(&mut self, state: PartitionState, wall_ms: i64) -> usize {
        let sources: Vec<super::SourceLaneTimes> =
            state.sources.iter().map(|l| (l.source, l.max_event_ts, l.tenant_max_ts.clone())).collect();
        self.time.restore(state.partition, state.max_event_ts, &state.tenant_max_ts, &sources, wall_ms);
        let mut restored = 0;
        for s in state.scenarios {
            let key = ScenarioKey::new(&s.tenant_id, &s.scenario_id);
            // `|` so every job gets its part even when an earlier one has no config.
            let any = self.hot.restore_state(&key, s.hot)
                | self.profiles.restore_state(&key, s.profiles)
                | self.metrics.restore_state(&key, s.metrics);
            if any {
                self.homes.upsert(&key, |h| *h = state.partition, || state.partition);
                restored += 1;
            } else {
                tracing::warn!(scenario = %key, partition = state.partition, "snapshot holds a scenario with no config here; its state is dropped");
            }
        }
        restored
    }

    /// Forgets the state of `partition`'s scenarios (the partition moved to another host).
    pub(super) fn release_partition(&mut self, partition: i32) {
        for key in self.homed_in(partition) {
            self.hot.restore_state(&key, None);
            self.profiles.restore_state(&key, None);
            self.metrics.restore_state(&key, None);
            self.homes.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ScenarioConfig, parse_scenario};
    use crate::event::{Position, RecordBatch};
    use crate::output::Output;
    use crate::pipeline::{JobSelection, PipelineOptions};
    use crate::snapshot::codec;
    use std::sync::Arc;

    const T0: i64 = 1_767_225_600_000;

    fn configs() -> Vec<Arc<ScenarioConfig>> {
        ["a", "b"]
            .iter()
            .map(|s| {
                let doc = serde_json::json!({"tenant_id": "t", "scenario_id": s, "revision": 1, "config": {"realtime_compute": {
                    "hot_score": {"window_size_minutes": 10, "window_slide_minutes": 5},
                    "user_profile": {"update_frequency_minutes": 1}, "metrics": {"window_size_minutes": 5}}}});
                Arc::new(parse_scenario(&doc).unwrap())
            })
            .collect()
    }

    fn pipeline() -> Pipeline {
        let mut p = Pipeline::new(PipelineOptions { jobs: JobSelection::All, ..PipelineOptions::default() });
        for c in configs() {
            p.apply_config(&c.key, Some(c.clone()));
        }
        p
    }

    /// Scenario `a` on partition 0, `b` on partition 1, an hour of events each.
    fn records(from: usize, to: usize) -> RecordBatch {
        let mut b = RecordBatch::default();
        for i in from..to {
            let (s, part) = if i % 2 == 0 { ("a", 0) } else { ("b", 1) };
            let line = format!(
                r#"{{"tenant_id":"t","scenario_id":"{s}","user_id":"u{}","item_id":"i{}","action":"click","ts":{},"category":"c","event_id":"e{i}"}}"#,
                i % 7,
                i % 13,
                T0 + i as i64 * 2_000
            );
            b.push_at(line.as_bytes(), Position { partition: part, offset: (i / 2) as i64 });
        }
        b
    }

    fn run(p: &mut Pipeline, batch: &RecordBatch, out: &mut Vec<Output>) {
        let mut rejects = Vec::new();
        p.process_at(batch, 0, out, &mut rejects);
        assert!(rejects.is_empty());
    }

    /// Hot lists and metrics windows, sorted. Profiles are left out: a profile is written at
    /// the first watermark past its due time and holds what arrived by then, which depends on
    /// how the partitions interleave (see docs/operations.md).
    fn keyed(out: &[Output]) -> Vec<String> {
        let mut v: Vec<String> = out.iter().filter(|o| !matches!(o, Output::Profile(_))).map(|o| o.to_json().to_string()).collect();
        v.sort();
        v
    }

    /// A format 1 snapshot (one maximum per partition) is read, and each of its tenants
    /// starts from that maximum.
    #[test]
    fn a_format_1_snapshot_is_read_with_one_maximum_per_tenant() {
        let mut a = pipeline();
        run(&mut a, &records(0, 400), &mut Vec::new());
        let now = a.export_partition(1, 200);
        assert_eq!(now.tenant_max_ts, vec![("t".to_string(), now.max_event_ts.unwrap())]);
        let old_scenarios: Vec<ScenarioStateV2> = now.scenarios.iter().cloned().map(Into::into).collect();
        let v1 = PartitionStateV1 { partition: 1, next_offset: 200, max_event_ts: now.max_event_ts, scenarios: old_scenarios.clone() };
        let mut bytes = codec::encode(&v1).unwrap();
        bytes[4..6].copy_from_slice(&1u16.to_le_bytes());
        let read: PartitionState = codec::decode_upgrading::<_, PartitionStateV1, PartitionStateV2, PartitionStateV3>(&bytes).unwrap();
        assert_eq!(read.tenant_max_ts, now.tenant_max_ts);
        assert_eq!(read.scenarios.len(), 1);
        let current: PartitionState =
            codec::decode_upgrading::<_, PartitionStateV1, PartitionStateV2, PartitionStateV3>(&codec::encode(&now).unwrap()).unwrap();
        assert_eq!(current.tenant_max_ts, now.tenant_max_ts);
        // Format 2: the same state without features, read and written again in format 3.
        let v2 = PartitionStateV2 {
            partition: 1,
            next_offset: 200,
            max_event_ts: now.max_event_ts,
            scenarios: old_scenarios,
            tenant_max_ts: now.tenant_max_ts.clone(),
        };
        let mut bytes = codec::encode(&v2).unwrap();
        bytes[4..6].copy_from_slice(&2u16.to_le_bytes());
        let read: PartitionState = codec::decode_upgrading::<_, PartitionStateV1, PartitionStateV2, PartitionStateV3>(&bytes).unwrap();
        // Restores number items by name: compare with the current snapshot restored too.
        let restored_now: PartitionState = codec::decode(&codec::encode(&now).unwrap()).unwrap();
        let windows = |p: &PartitionState| codec::encode(&p.scenarios[0].hot.as_ref().unwrap().windows).unwrap();
        assert_eq!(windows(&read), windows(&restored_now));
    }

    /// A partition's state exported (through the codec) mid-stream and imported into another
    /// pipeline continues exactly: the two hosts together emit what one host emits alone.
    #[test]
    fn a_partition_moves_with_its_scenarios_state() {
        let all = records(0, 4000);
        let mut single = pipeline();
        let mut want = Vec::new();
        run(&mut single, &all, &mut want);
        single.finish(&mut want);

        // Host A reads both partitions, then partition 1 moves to host B.
        let mut a = pipeline();
        let mut got = Vec::new();
        run(&mut a, &records(0, 1500), &mut got);
        let moved = codec::encode(&a.export_partition(1, 750)).unwrap();
        assert_eq!(a.export_partition(1, 750).scenarios.len(), 1, "only scenario b lives on partition 1");
        a.revoke_partitions(&[1]);
        let mut b = pipeline();
        assert_eq!(b.import_partition(codec::decode(&moved).unwrap(), 0), 1);
        let rest = records(1500, 4000);
        let (mut to_a, mut to_b) = (RecordBatch::default(), RecordBatch::default());
        for (i, r) in rest.iter().enumerate() {
            let pos = rest.position(i).unwrap();
            if pos.partition == 0 { to_a.push_at(r, pos) } else { to_b.push_at(r, pos) }
        }
        run(&mut a, &to_a, &mut got);
        run(&mut b, &to_b, &mut got);
        a.finish(&mut got);
        b.finish(&mut got);
        let (got, want) = (keyed(&got), keyed(&want));
        assert_eq!(got.len(), want.len());
        assert!(got == want, "outputs differ after the move");
        assert_eq!(single.stats().cross_partition, 0);
    }

    /// Issue 16: a host that has run its own partition far ahead takes over a partition whose
    /// owner died before its first snapshot. Nothing of that backlog is late, and its
    /// scenario's outputs are what a host reading only that partition emits.
    #[test]
    fn a_taken_over_backlog_is_judged_by_its_own_progress() {
        let line = |s: &str, i: i64| {
            format!(
                r#"{{"tenant_id":"t","scenario_id":"{s}","user_id":"u{}","item_id":"i{}","action":"click","ts":{}}}"#,
                i % 7,
                i % 13,
                T0 + i * 2_000
            )
        };
        let batch = |s: &str, p: i32| {
            let mut b = RecordBatch::default();
            (0..3_600).for_each(|i| b.push_at(line(s, i).as_bytes(), Position { partition: p, offset: i }));
            b
        };
        // Only b's hot lists and metrics: what a host that read only partition 1 emits.
        let of_b = |out: &[Output]| {
            let mut v: Vec<String> = out
                .iter()
                .map(|o| o.to_json())
                .filter(|j| j["scenario_id"] == "b" && j["kind"] != "profile")
                .map(|j| j.to_string())
                .collect();
            v.sort();
            v
        };
        let mut alone = pipeline();
        alone.assign_partitions(&[1], 0);
        let mut want = Vec::new();
        run(&mut alone, &batch("b", 1), &mut want);
        alone.finish(&mut want);

        let mut host = pipeline();
        host.assign_partitions(&[0], 0);
        let mut got = Vec::new();
        run(&mut host, &batch("a", 0), &mut got);
        assert!(host.tenant_watermark("t").is_some_and(|w| w > T0 + 7_000_000), "partition 0 ran two hours ahead");
        host.assign_partitions(&[1], 0);
        run(&mut host, &batch("b", 1), &mut got);
        host.finish(&mut got);
        assert_eq!(host.stats().late, 0);
        assert!(!of_b(&want).is_empty());
        assert!(of_b(&got) == of_b(&want), "b's outputs differ from a host reading only its partition");
    }

    #[test]
    fn events_of_one_scenario_on_two_partitions_are_counted() {
        let mut p = pipeline();
        let mut b = RecordBatch::default();
        let line = |ts: i64| format!(r#"{{"tenant_id":"t","scenario_id":"a","user_id":"u","item_id":"i","action":"click","ts":{ts}}}"#);
        b.push_at(line(T0).as_bytes(), Position { partition: 0, offset: 0 });
        b.push_at(line(T0 + 1).as_bytes(), Position { partition: 3, offset: 0 });
        run(&mut p, &b, &mut Vec::new());
        assert_eq!(p.stats().cross_partition, 1);
        assert_eq!(p.export_partition(0, 1).scenarios.len(), 1);
        assert!(p.export_partition(3, 1).scenarios.is_empty());
    }
}
