//! The snapshot form of [`HotWindows`]: item-major, the shape the window state had when snapshot
//! format 1 was defined (per item, its buckets oldest first, each with its cells in arrival
//! order), which leaves the in-memory layout free to change. Format 3 adds the declared features:
//! their definitions, and per bucket its aggregates in a canonical form (`features::PortableAgg`);
//! [`HotWindowsV2`] reads the form of formats 1 and 2, which have none.

use std::collections::{BTreeMap, HashMap};

use serde::ser::{SerializeMap, SerializeSeq, SerializeStruct};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::buckets::Cell;
use super::features::{FeatureSet, PortableAgg};
use super::hot::{HotWindows, ItemSlot};
use super::item_ids::ItemIds;
use super::minute_cells::MinuteCells;
use crate::config::{FeatureDef, MAX_FEATURES};

#[derive(Deserialize)]
struct PortableItem {
    /// Oldest first.
    buckets: Vec<PortableBucket>,
}

#[derive(Deserialize)]
struct PortableBucket {
    /// Minutes since the Unix epoch.
    minute: i64,
    cells: Vec<Cell>,
    /// One per declared feature, or none when the bucket holds no feature value.
    features: Vec<PortableAgg>,
}

/// [`PortableItem`] of formats 1 and 2.
#[derive(Deserialize)]
struct PortableItemV2 {
    buckets: Vec<PortableBucketV2>,
}

#[derive(Deserialize)]
struct PortableBucketV2 {
    minute: i64,
    cells: Vec<Cell>,
}

/// One (item, bucket) pair of the state: the item, the bucket's minute and cells, and the
/// item's head cell there.
type Pair<'a> = (u32, i64, &'a MinuteCells, u32);

/// Items as a map from name to buckets, written straight from the minute-major cells without
/// building the item-major form: `pairs` is grouped by item, minutes ascending within an item.
struct ItemsByName<'a> {
    ids: &'a ItemIds<ItemSlot>,
    pairs: Vec<Pair<'a>>,
    /// `None`: write the form of formats 1 and 2 (no features).
    defs: Option<&'a [FeatureDef]>,
}

impl Serialize for ItemsByName<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let items = self.pairs.chunk_by(|a, b| a.0 == b.0);
        let mut map = s.serialize_map(Some(items.clone().count()))?;
        for group in items {
            map.serialize_entry(self.ids.name(group[0].0), &ItemRef(group, self.defs))?;
        }
        map.end()
    }
}

/// Serializes as [`PortableItem`].
struct ItemRef<'a, 'p>(&'p [Pair<'a>], Option<&'a [FeatureDef]>);

impl Serialize for ItemRef<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut item = s.serialize_struct("PortableItem", 1)?;
        item.serialize_field("buckets", &BucketsRef(self.0, self.1))?;
        item.end()
    }
}

struct BucketsRef<'a, 'p>(&'p [Pair<'a>], Option<&'a [FeatureDef]>);

impl Serialize for BucketsRef<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|&(_, minute, cells, head)| BucketRef { minute, cells, head, defs: self.1 }))
    }
}

/// Serializes as [`PortableBucket`]: the cells of one item's chain in one minute, and its
/// feature aggregates.
struct BucketRef<'a> {
    minute: i64,
    cells: &'a MinuteCells,
    head: u32,
    defs: Option<&'a [FeatureDef]>,
}

impl BucketRef<'_> {
    /// The bucket's aggregates, canonical: none when no feature holds a value here, however the
    /// state came to be (a row created then emptied by a redefinition writes what no row does).
    fn features(&self, defs: &[FeatureDef]) -> Vec<PortableAgg> {
        let n = defs.len();
        let Some(fm) = self.cells.features.as_deref() else { return Vec::new() };
        let row = self.head as usize * n;
        let Some(out) = defs.iter().enumerate().map(|(i, d)| fm.portable(row + i, d.op)).collect::<Option<Vec<PortableAgg>>>() else {
            return Vec::new();
        };
        if out.iter().all(|p| *p == PortableAgg::Empty) { Vec::new() } else { out }
    }
}

impl Serialize for BucketRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut bucket = s.serialize_struct("PortableBucket", 2 + usize::from(self.defs.is_some()))?;
        bucket.serialize_field("minute", &self.minute)?;
        bucket.serialize_field("cells", &ChainRef(self))?;
        if let Some(defs) = self.defs {
            bucket.serialize_field("features", &self.features(defs))?;
        }
        bucket.end()
    }
}

struct ChainRef<'a, 'b>(&'b BucketRef<'a>);

impl Serialize for ChainRef<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let b = self.0;
        let mut seq = s.serialize_seq(Some(b.cells.chain(b.head).count()))?;
        for c in b.cells.chain(b.head) {
            seq.serialize_element(&c.cell())?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct PortableRef<'a> {
    items: ItemsByName<'a>,
    actions: &'a [String],
    action_codes: &'a HashMap<String, u16, ahash::RandomState>,
    /// (item, bucket) pairs per minute.
    minutes: BTreeMap<i64, u32>,
    max_ts: Option<i64>,
    closed_through: Option<i64>,
    /// The declared features the aggregates belong to (format 3; `None` writes format 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    features: Option<&'a [FeatureDef]>,
}

#[derive(Deserialize)]
struct PortableOwned {
    /// Ordered, so a restore builds the same state in every process.
    items: BTreeMap<Box<str>, PortableItem>,
    actions: Vec<String>,
    action_codes: HashMap<String, u16, ahash::RandomState>,
    /// Derived from `items`; read and recomputed.
    #[allow(dead_code)]
    minutes: BTreeMap<i64, u32>,
    max_ts: Option<i64>,
    closed_through: Option<i64>,
    /// Always present in format 3 (written as an option so format 2's form can leave it out).
    features: Option<Vec<FeatureDef>>,
}

/// [`PortableOwned`] of formats 1 and 2.
#[derive(Deserialize)]
struct PortableOwnedV2 {
    items: BTreeMap<Box<str>, PortableItemV2>,
    actions: Vec<String>,
    action_codes: HashMap<String, u16, ahash::RandomState>,
    #[allow(dead_code)]
    minutes: BTreeMap<i64, u32>,
    max_ts: Option<i64>,
    closed_through: Option<i64>,
}

impl From<PortableOwnedV2> for PortableOwned {
    fn from(v: PortableOwnedV2) -> Self {
        let items = v
            .items
            .into_iter()
            .map(|(name, item)| {
                let buckets =
                    item.buckets.into_iter().map(|b| PortableBucket { minute: b.minute, cells: b.cells, features: Vec::new() }).collect();
                (name, PortableItem { buckets })
            })
            .collect();
        PortableOwned {
            items,
            actions: v.actions,
            action_codes: v.action_codes,
            minutes: v.minutes,
            max_ts: v.max_ts,
            closed_through: v.closed_through,
            features: None,
        }
    }
}

/// [`HotWindows`] as snapshot formats 1 and 2 wrote it (no features).
#[derive(Debug, Clone)]
pub struct HotWindowsV2(pub HotWindows);

impl<'de> Deserialize<'de> for HotWindowsV2 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let p = PortableOwnedV2::deserialize(d)?;
        restore(p.into()).map(HotWindowsV2).map_err(serde::de::Error::custom)
    }
}

impl Serialize for HotWindows {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.portable(Some(self.feature_defs())).serialize(s)
    }
}

/// Writes the form of formats 1 and 2: the state without its features (tests of old
/// snapshots, and a host asked to write for an older fleet).
impl Serialize for HotWindowsV2 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.portable(None).serialize(s)
    }
}

impl HotWindows {
    fn portable<'a>(&'a self, defs: Option<&'a [FeatureDef]>) -> PortableRef<'a> {
        let mut pairs: Vec<Pair<'_>> = self
            .minutes
            .iter()
            .flat_map(|(&minute, m)| m.cells.iter().enumerate().filter(|(_, c)| c.head).map(move |(i, c)| (c.item, minute, m, i as u32)))
            .collect();
        pairs.sort_unstable_by_key(|p| (p.0, p.1));
        PortableRef {
            items: ItemsByName { ids: &self.ids, pairs, defs },
            actions: &self.actions,
            action_codes: &self.action_codes,
            minutes: self.minutes.iter().map(|(&m, c)| (m, c.pairs)).collect(),
            max_ts: self.max_ts,
            closed_through: self.closed_through,
            features: defs,
        }
    }
}

impl<'de> Deserialize<'de> for HotWindows {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        restore(PortableOwned::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The state a portable form describes, checked.
fn restore(p: PortableOwned) -> Result<HotWindows, String> {
    if p.action_codes.len() != p.actions.len() || p.action_codes.iter().any(|(a, &c)| p.actions.get(c as usize) != Some(a)) {
        return Err("action codes do not match the action list".into());
    }
    let features = p.features.unwrap_or_default();
    if features.len() > MAX_FEATURES {
        return Err(format!("{} declared features (at most {MAX_FEATURES})", features.len()));
    }
    let mut w = HotWindows::default();
    (w.actions, w.action_codes, w.max_ts, w.closed_through) = (p.actions, p.action_codes, p.max_ts, p.closed_through);
    w.features = (!features.is_empty()).then(|| Box::new(FeatureSet::new(features)));
    for (name, item) in p.items {
        let id = w.ids.intern(&name);
        for b in item.buckets {
            let minute = i32::try_from(b.minute).map_err(|_| format!("bucket minute {} out of range", b.minute))?;
            if b.cells.is_empty() {
                // Ignored as before features existed; aggregates need an item there.
                if b.features.is_empty() {
                    continue;
                }
                return Err(format!("item {name:?}: feature aggregates in a bucket without cells"));
            }
            for c in b.cells {
                if c.action as usize >= w.actions.len() || c.count == 0 {
                    return Err(format!("item {name:?}: a cell with unknown action {} or no events", c.action));
                }
                let cell = w.cell(id, minute, c.action);
                cell.count += c.count;
                cell.sum_offset += c.sum_offset;
                cell.sum_offset_sq += c.sum_offset_sq;
            }
            if !b.features.is_empty() {
                w.restore_features(id, minute, &b.features).map_err(|e| format!("item {name:?}, minute {minute}: {e}"))?;
            }
        }
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::config::WindowGeometry;
    use crate::scoring::WindowBatch;
    use crate::snapshot::codec;

    /// The window state's derived shape before the minute-major layout, as format 1 wrote it.
    #[derive(Serialize, Deserialize)]
    struct V1Windows {
        items: HashMap<Box<str>, V1Item>,
        actions: Vec<String>,
        action_codes: HashMap<String, u16>,
        minutes: BTreeMap<i64, u32>,
        max_ts: Option<i64>,
        closed_through: Option<i64>,
    }

    #[derive(Serialize, Deserialize)]
    struct V1Item {
        buckets: VecDeque<V1Bucket>,
    }

    #[derive(Serialize, Deserialize)]
    struct V1Bucket {
        minute: i64,
        cells: Vec<Cell>,
    }

    /// A batch row: action, count, age mean, age variance.
    type Row = (u16, u32, f64, f64);

    fn batch_of(w: &mut HotWindows, end: i64, g: WindowGeometry) -> Vec<(String, Vec<Row>)> {
        let mut b = WindowBatch::new(end - g.size_ms, end, vec![], vec![], 0.0);
        w.build_batch(end, g, &mut b);
        let mut items: Vec<_> = w
            .batch_ids()
            .enumerate()
            .map(|(k, id)| {
                let rows = b.item_rows(k).map(|r| (b.row_action[r], b.row_count[r], b.row_age_mean_ms[r], b.row_age_var_ms2[r])).collect();
                (id.to_string(), rows)
            })
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        items
    }

    #[test]
    fn reads_a_format_1_snapshot_and_round_trips() {
        let cell = |action, count, sum_offset, sum_offset_sq| Cell { action, count, sum_offset, sum_offset_sq };
        let old = V1Windows {
            items: HashMap::from([
                (
                    "a".into(),
                    V1Item { buckets: VecDeque::from([V1Bucket { minute: 10, cells: vec![cell(1, 2, 100, 5000), cell(0, 1, 7, 49)] }]) },
                ),
                (
                    "b".into(),
                    V1Item {
                        buckets: VecDeque::from([
                            V1Bucket { minute: 9, cells: vec![cell(0, 1, 3, 9)] },
                            V1Bucket { minute: 10, cells: vec![cell(0, 4, 40, 400)] },
                        ]),
                    },
                ),
            ]),
            actions: vec!["view".into(), "click".into()],
            action_codes: HashMap::from([("view".into(), 0), ("click".into(), 1)]),
            minutes: BTreeMap::from([(9, 1), (10, 2)]),
            max_ts: Some(10 * 60_000 + 500),
            closed_through: Some(5 * 60_000),
        };
        let bytes = codec::encode(&old).unwrap();
        let HotWindowsV2(mut w) = codec::decode(&bytes).unwrap();
        assert_eq!((w.item_count(), w.bucket_count(), w.max_ts()), (2, 3, Some(10 * 60_000 + 500)));
        let g = WindowGeometry::from_minutes(5, 1);
        let expected = vec![
            ("a".to_string(), vec![(1, 2, 59_950.0, 0.0), (0, 1, 59_993.0, 0.0)]),
            ("b".to_string(), vec![(0, 1, 119_997.0, 0.0), (0, 4, 59_990.0, 0.0)]),
        ];
        assert_eq!(batch_of(&mut w, 11 * 60_000, g), expected);
        // Written again in format 1 and read back: the same state.
        let again: V1Windows = codec::decode(&codec::encode(&HotWindowsV2(w.clone())).unwrap()).unwrap();
        assert_eq!(again.items["b"].buckets.iter().map(|b| b.minute).collect::<Vec<_>>(), vec![9, 10]);
        assert_eq!(again.minutes, old.minutes);
        // And in the current format.
        let mut w2: HotWindows = codec::decode(&codec::encode(&w).unwrap()).unwrap();
        assert_eq!(batch_of(&mut w2, 11 * 60_000, g), expected);
    }

    mod features {
        use proptest::prelude::*;

        use super::*;
        use crate::config::{FeatureField, FeatureOp};
        use crate::event::parse_event;
        use crate::scoring::FeatureValues;

        const T0: i64 = 1_767_225_600_000;
        const MIN: i64 = 60_000;

        fn defs() -> Vec<FeatureDef> {
            let d = |name: &str, op, field| FeatureDef { name: name.into(), op, field, actions: None };
            vec![
                d("watch", FeatureOp::Sum, FeatureField::WatchTimeMs),
                d("peak", FeatureOp::Max, FeatureField::Prop("x".into())),
                d("users", FeatureOp::Distinct, FeatureField::UserId),
                d("last", FeatureOp::Last, FeatureField::Prop("s".into())),
            ]
        }

        fn event(item: u8, sec: i64, user: u32, x: f64, s: u8) -> String {
            format!(
                r#"{{"tenant_id":"t","scenario_id":"s","user_id":"u{user}","item_id":"i{item}","action":"view","ts":{},"watch_time_ms":{},"props":{{"x":{x},"s":"v{s}"}}}}"#,
                T0 + sec * 1000,
                x.abs()
            )
        }

        fn add(w: &mut HotWindows, events: &[String]) {
            let g = WindowGeometry::from_minutes(10, 5);
            for e in events {
                w.add_event(&parse_event(e.as_bytes()).unwrap(), g, usize::MAX);
            }
        }

        /// Per item name, its feature values in the window ending at `end`.
        fn columns(w: &mut HotWindows, end: i64) -> BTreeMap<String, Vec<String>> {
            let mut b = WindowBatch::default();
            w.build_batch(end, WindowGeometry::from_minutes(10, 5), &mut b);
            w.batch_ids()
                .enumerate()
                .map(|(k, id)| {
                    let vals = b
                        .features
                        .iter()
                        .map(|c| match &c.values {
                            FeatureValues::Number(v) => v[k].to_string(),
                            FeatureValues::Text(v) => v[k].clone(),
                        })
                        .collect();
                    (id.to_string(), vals)
                })
                .collect()
        }

        /// The feature part of a snapshot, by item name then minute: what must not depend on
        /// event order (item ids and action codes, which do, are the state's own numbering).
        fn feature_bytes(w: &HotWindows) -> Vec<u8> {
            #[derive(Deserialize)]
            struct Item {
                buckets: Vec<PortableBucket>,
            }
            #[derive(Deserialize)]
            struct Whole {
                items: BTreeMap<Box<str>, Item>,
                #[allow(dead_code)]
                actions: Vec<String>,
                #[allow(dead_code)]
                action_codes: HashMap<String, u16, ahash::RandomState>,
                #[allow(dead_code)]
                minutes: BTreeMap<i64, u32>,
                #[allow(dead_code)]
                max_ts: Option<i64>,
                #[allow(dead_code)]
                closed_through: Option<i64>,
                features: Option<Vec<FeatureDef>>,
            }
            let whole: Whole = codec::decode(&codec::encode(w).unwrap()).unwrap();
            type Buckets = Vec<(i64, Vec<PortableAgg>)>;
            let parts: Vec<(String, Buckets)> = whole
                .items
                .into_iter()
                .map(|(name, item)| (name.to_string(), item.buckets.into_iter().map(|b| (b.minute, b.features)).collect()))
                .collect();
            codec::encode(&(whole.features, parts)).unwrap()
        }

        #[test]
        fn features_round_trip_through_a_snapshot() {
            let mut w = HotWindows::default();
            w.set_features(&defs());
            let events: Vec<String> =
                (0..2_000).map(|i| event((i % 3) as u8, i % 900, (i * 7) as u32 % 600, i as f64 / 3.0, (i % 5) as u8)).collect();
            add(&mut w, &events);
            let bytes = codec::encode(&w).unwrap();
            let mut back: HotWindows = codec::decode(&bytes).unwrap();
            assert_eq!(back.feature_defs(), &defs()[..]);
            assert_eq!(codec::encode(&back).unwrap(), bytes, "a restored state writes the same bytes");
            for end in [T0 + 5 * MIN, T0 + 10 * MIN, T0 + 15 * MIN, T0 + 20 * MIN] {
                assert_eq!(columns(&mut back, end), columns(&mut w, end));
            }
            // A snapshot of a state without features reads back without any.
            let plain: HotWindows = codec::decode(&codec::encode(&HotWindows::default()).unwrap()).unwrap();
            assert!(plain.feature_defs().is_empty());
        }

        #[test]
        fn bad_feature_aggregates_are_refused() {
            let mut w = HotWindows::default();
            w.set_features(&defs()[..1]);
            add(&mut w, &[event(1, 0, 1, 2.0, 0)]);
            let mut bytes = codec::encode(&w).unwrap();
            // Declared features dropped from the end: the aggregates no longer fit.
            let n = bytes.len();
            let tail = codec::encode(&defs()[..1].to_vec()).unwrap()[6..].len();
            bytes.truncate(n - tail);
            bytes.push(0);
            assert!(codec::decode::<HotWindows>(&bytes).is_err());
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(48))]
            /// Any order of the same events, and any split of them around a snapshot, gives the
            /// same columns and the same feature bytes in the snapshot.
            #[test]
            fn order_and_snapshots_never_change_features(
                raw in proptest::collection::vec((0u8..4, 0i64..1200, 0u32..300, -1e3f64..1e3, 0u8..4), 1..150),
                cut in 0usize..150,
                seed in any::<u64>(),
            ) {
                let events: Vec<String> = raw.iter().map(|&(i, s, u, x, v)| event(i, s, u, x, v)).collect();
                let mut shuffled = events.clone();
                let mut r = seed | 1;
                for i in (1..shuffled.len()).rev() {
                    r ^= r << 13;
                    r ^= r >> 7;
                    r ^= r << 17;
                    shuffled.swap(i, (r % (i as u64 + 1)) as usize);
                }
                let mut a = HotWindows::default();
                a.set_features(&defs());
                add(&mut a, &events);
                // b: the shuffled events, snapshotted and restored part way.
                let cut = cut.min(shuffled.len());
                let mut b = HotWindows::default();
                b.set_features(&defs());
                add(&mut b, &shuffled[..cut]);
                let mut b: HotWindows = codec::decode(&codec::encode(&b).unwrap()).unwrap();
                add(&mut b, &shuffled[cut..]);
                prop_assert_eq!(feature_bytes(&a), feature_bytes(&b));
                for end in (1..=5).map(|k| T0 + k * 5 * MIN) {
                    prop_assert_eq!(columns(&mut a, end), columns(&mut b, end), "window ending {}", end);
                }
            }
        }
    }
}
