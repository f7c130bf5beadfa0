//! The snapshot form of [`HotWindows`]: item-major, field for field the shape the window state
//! had when snapshot format 1 was defined (per item, its buckets oldest first, each with its
//! cells in arrival order). Keeping it lets hosts of either layout read each other's snapshots
//! without a format bump, and leaves the in-memory layout free to change.

use std::collections::{BTreeMap, HashMap};

use serde::ser::{SerializeMap, SerializeSeq, SerializeStruct};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::buckets::Cell;
use super::hot::{HotWindows, ItemSlot};
use super::item_ids::ItemIds;
use super::minute_cells::MinuteCells;

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
}

/// One (item, bucket) pair of the state: the item, the bucket's minute and cells, and the
/// item's head cell there.
type Pair<'a> = (u32, i64, &'a MinuteCells, u32);

/// Items as a map from name to buckets, written straight from the minute-major cells without
/// building the item-major form: `pairs` is grouped by item, minutes ascending within an item.
struct ItemsByName<'a> {
    ids: &'a ItemIds<ItemSlot>,
    pairs: Vec<Pair<'a>>,
}

impl Serialize for ItemsByName<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let items = self.pairs.chunk_by(|a, b| a.0 == b.0);
        let mut map = s.serialize_map(Some(items.clone().count()))?;
        for group in items {
            map.serialize_entry(self.ids.name(group[0].0), &ItemRef(group))?;
        }
        map.end()
    }
}

/// Serializes as [`PortableItem`].
struct ItemRef<'a, 'p>(&'p [Pair<'a>]);

impl Serialize for ItemRef<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut item = s.serialize_struct("PortableItem", 1)?;
        item.serialize_field("buckets", &BucketsRef(self.0))?;
        item.end()
    }
}

struct BucketsRef<'a, 'p>(&'p [Pair<'a>]);

impl Serialize for BucketsRef<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|&(_, minute, cells, head)| BucketRef { minute, cells, head }))
    }
}

/// Serializes as [`PortableBucket`]: the cells of one item's chain in one minute.
struct BucketRef<'a> {
    minute: i64,
    cells: &'a MinuteCells,
    head: u32,
}

impl Serialize for BucketRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut bucket = s.serialize_struct("PortableBucket", 2)?;
        bucket.serialize_field("minute", &self.minute)?;
        bucket.serialize_field("cells", &ChainRef(self))?;
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
}

impl Serialize for HotWindows {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut pairs: Vec<Pair<'_>> = self
            .minutes
            .iter()
            .flat_map(|(&minute, m)| m.cells.iter().enumerate().filter(|(_, c)| c.head).map(move |(i, c)| (c.item, minute, m, i as u32)))
            .collect();
        pairs.sort_unstable_by_key(|p| (p.0, p.1));
        PortableRef {
            items: ItemsByName { ids: &self.ids, pairs },
            actions: &self.actions,
            action_codes: &self.action_codes,
            minutes: self.minutes.iter().map(|(&m, c)| (m, c.pairs)).collect(),
            max_ts: self.max_ts,
            closed_through: self.closed_through,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for HotWindows {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let p = PortableOwned::deserialize(d)?;
        if p.action_codes.len() != p.actions.len() || p.action_codes.iter().any(|(a, &c)| p.actions.get(c as usize) != Some(a)) {
            return Err(serde::de::Error::custom("action codes do not match the action list"));
        }
        let mut w = HotWindows::default();
        (w.actions, w.action_codes, w.max_ts, w.closed_through) = (p.actions, p.action_codes, p.max_ts, p.closed_through);
        for (name, item) in p.items {
            let id = w.ids.intern(&name);
            for b in item.buckets {
                for c in b.cells {
                    if c.action as usize >= w.actions.len() || c.count == 0 {
                        return Err(serde::de::Error::custom(format!(
                            "item {name:?}: a cell with unknown action {} or no events",
                            c.action
                        )));
                    }
                    let minute = i32::try_from(b.minute)
                        .map_err(|_| serde::de::Error::custom(format!("bucket minute {} out of range", b.minute)))?;
                    let cell = w.cell(id, minute, c.action);
                    cell.count += c.count;
                    cell.sum_offset += c.sum_offset;
                    cell.sum_offset_sq += c.sum_offset_sq;
                }
            }
        }
        Ok(w)
    }
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
        let mut w: HotWindows = codec::decode(&bytes).unwrap();
        assert_eq!((w.item_count(), w.bucket_count(), w.max_ts()), (2, 3, Some(10 * 60_000 + 500)));
        let g = WindowGeometry::from_minutes(5, 1);
        let expected = vec![
            ("a".to_string(), vec![(1, 2, 59_950.0, 0.0), (0, 1, 59_993.0, 0.0)]),
            ("b".to_string(), vec![(0, 1, 119_997.0, 0.0), (0, 4, 59_990.0, 0.0)]),
        ];
        assert_eq!(batch_of(&mut w, 11 * 60_000, g), expected);
        // Written again in format 1 and read back: the same state.
        let again: V1Windows = codec::decode(&codec::encode(&w).unwrap()).unwrap();
        assert_eq!(again.items["b"].buckets.iter().map(|b| b.minute).collect::<Vec<_>>(), vec![9, 10]);
        assert_eq!(again.minutes, old.minutes);
        let mut w2: HotWindows = codec::decode(&codec::encode(&w).unwrap()).unwrap();
        assert_eq!(batch_of(&mut w2, 11 * 60_000, g), expected);
    }
}
