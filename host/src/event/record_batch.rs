//! Raw records as sources hand them to the pipeline: many records in one buffer, with their
//! Kafka positions, optionally parsed ahead into [`ParsedEvents`] on the source's thread.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use super::{Event, EventMapping, ParsedEvents, RejectReason, parse_event, parse_event_mapped};

/// Where a record came from, for offset commits and dead-letter headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub partition: i32,
    pub offset: i64,
}

/// How a record reached a host that repartitions (`--repartition`, docs/operations.md): an
/// event forwarded from a source partition, or the shuffle's progress marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Forwarded from partition `source` of a source topic of `sources` partitions.
    Source { source: i32, sources: i32 },
    /// A progress marker (not an event: never counted, scored or dead-lettered).
    Marker,
    /// No tag (a record written to the internal topic by something else): read as an event of
    /// its partition, as without repartitioning.
    Untagged,
}

/// Many raw records in one contiguous buffer: record `i` is `data[ends[i-1]..ends[i]]`.
#[derive(Debug, Default, Clone)]
pub struct RecordBatch {
    pub data: Vec<u8>,
    pub ends: Vec<u32>,
    /// Per record, when the source has positions (Kafka); empty otherwise.
    pub positions: Vec<Position>,
    /// Per record, when the source repartitions; empty otherwise.
    pub origins: Vec<Origin>,
    /// Records a repartitioning host's shuffle forwarded unreadable, with where it read them
    /// (`<topic>/<partition>/<offset>`), for their dead letters. Sparse: such records are rare.
    pub source_positions: Vec<(usize, String)>,
    /// Every record parsed by the source ([`Self::parse_ahead`]); `None` leaves parsing to
    /// the pipeline.
    pub parsed: Option<ParsedEvents>,
    /// The host's event shape (`--event-field`, `--event-ts-unit`), set by the source's
    /// sender; `None`, the default shape, parses as [`parse_event`] always did.
    pub mapping: Option<Arc<EventMapping>>,
}

impl RecordBatch {
    pub fn with_capacity(records: usize, bytes: usize) -> Self {
        Self {
            data: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(records),
            positions: Vec::new(),
            origins: Vec::new(),
            source_positions: Vec::new(),
            parsed: None,
            mapping: None,
        }
    }

    /// Parses every record now, on the caller's thread, so the pipeline thread does not.
    /// Sources call it before sending: parsing is about half of the per-event work.
    pub fn parse_ahead(&mut self) {
        let mut parsed = ParsedEvents::with_capacity(self.len());
        for rec in self.iter() {
            parsed.push(self.parse(rec));
        }
        self.parsed = Some(parsed);
    }

    /// Record `i` as an event, or why it is rejected; parsed now unless parsed ahead.
    pub fn event(&self, i: usize) -> Result<Event<'_>, RejectReason> {
        if let Some(parsed) = &self.parsed
            && let Some(result) = parsed.get(i)
        {
            return result.map_err(Clone::clone);
        }
        self.parse(self.get(i).unwrap_or_default())
    }

    /// One record in the batch's event shape.
    #[inline]
    fn parse<'r>(&self, rec: &'r [u8]) -> Result<Event<'r>, RejectReason> {
        match &self.mapping {
            None => parse_event(rec),
            Some(m) => parse_event_mapped(rec, m),
        }
    }

    pub fn push(&mut self, record: &[u8]) {
        self.data.extend_from_slice(record);
        self.ends.push(self.data.len() as u32);
    }

    pub fn push_at(&mut self, record: &[u8], pos: Position) {
        self.push(record);
        self.positions.push(pos);
    }

    /// A record of a repartitioning source, with how it got here.
    pub fn push_from(&mut self, record: &[u8], pos: Position, origin: Origin) {
        self.push_at(record, pos);
        self.origins.push(origin);
    }

    /// The record pushed last was read at `at` of the source topic (before the shuffle).
    pub fn set_source_position(&mut self, at: String) {
        if let Some(i) = self.len().checked_sub(1) {
            self.source_positions.push((i, at));
        }
    }

    /// Where the shuffle read record `i`, if it forwarded it unreadable.
    pub fn source_position(&self, i: usize) -> Option<&str> {
        self.source_positions.iter().find(|(j, _)| *j == i).map(|(_, at)| at.as_str())
    }

    /// How record `i` got here, when the source repartitions.
    #[inline]
    pub fn origin(&self, i: usize) -> Option<Origin> {
        self.origins.get(i).copied()
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn bytes_len(&self) -> usize {
        self.data.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut start = 0usize;
        self.ends.iter().map(move |&end| {
            let rec = &self.data[start..end as usize];
            start = end as usize;
            rec
        })
    }

    /// Record `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)? as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        Some(&self.data[start..end])
    }

    pub fn position(&self, i: usize) -> Option<Position> {
        self.positions.get(i).copied()
    }

    /// The records `keep` admits, or `None` when it admits every record (no copy). The copy is
    /// not parsed ahead (it only happens around a rebalance).
    pub fn filtered(&self, mut keep: impl FnMut(Position) -> bool) -> Option<RecordBatch> {
        if self.positions.iter().all(|p| keep(*p)) {
            return None;
        }
        let mut out = RecordBatch::with_capacity(self.len(), self.bytes_len());
        out.mapping = self.mapping.clone();
        for (i, rec) in self.iter().enumerate() {
            if let Some(pos) = self.position(i)
                && keep(pos)
            {
                match self.origin(i) {
                    Some(origin) => out.push_from(rec, pos, origin),
                    None => out.push_at(rec, pos),
                }
                if let Some(at) = self.source_position(i) {
                    out.set_source_position(at.to_string());
                }
            }
        }
        Some(out)
    }

    /// Next offset per partition after this batch's records.
    pub fn next_offsets(&self) -> BTreeMap<i32, i64> {
        self.next_offsets_in(0..self.len())
    }

    /// Next offset per partition after the records in `range` (a batch processed in parts).
    pub fn next_offsets_in(&self, range: Range<usize>) -> BTreeMap<i32, i64> {
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        let end = range.end.min(self.positions.len());
        for p in &self.positions[range.start.min(end)..end] {
            let e = next.entry(p.partition).or_insert(p.offset + 1);
            *e = (*e).max(p.offset + 1);
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filtering_keeps_positions_and_bytes_together() {
        let mut b = RecordBatch::default();
        for (p, o) in [(0, 5), (1, 9), (0, 6), (1, 10)] {
            b.push_at(format!("r{p}-{o}").as_bytes(), Position { partition: p, offset: o });
        }
        assert!(b.filtered(|_| true).is_none());
        let kept = b.filtered(|p| p.partition == 0 || p.offset >= 10).unwrap();
        assert_eq!(kept.iter().collect::<Vec<_>>(), vec![&b"r0-5"[..], b"r0-6", b"r1-10"]);
        assert_eq!(kept.position(2), Some(Position { partition: 1, offset: 10 }));
        assert_eq!(b.next_offsets(), BTreeMap::from([(0, 7), (1, 11)]));
        assert_eq!(b.next_offsets_in(0..2), BTreeMap::from([(0, 6), (1, 10)]));
        assert_eq!(b.next_offsets_in(2..2), BTreeMap::new());
    }

    #[test]
    fn where_the_shuffle_read_an_unreadable_record_follows_it_through_a_filter() {
        let mut b = RecordBatch::default();
        let src = Origin::Source { source: 3, sources: 6 };
        b.push_from(b"{ok}", Position { partition: 0, offset: 1 }, src);
        b.push_from(b"{bad", Position { partition: 1, offset: 7 }, src);
        b.set_source_position("events/3/41".into());
        b.push_from(b"{ok}", Position { partition: 1, offset: 8 }, src);
        assert_eq!((b.source_position(0), b.source_position(1), b.source_position(2)), (None, Some("events/3/41"), None));
        let kept = b.filtered(|p| p.partition == 1).unwrap();
        assert_eq!(kept.source_position(0), Some("events/3/41"), "re-indexed with its record");
        assert_eq!(kept.source_position(1), None);
    }

    #[test]
    fn a_mapped_batch_reads_its_shape_parsed_ahead_or_not_and_after_filtering() {
        let m = EventMapping::from_specs(&["item_id=content_id".into()], crate::event::TsUnit::Ms).unwrap().unwrap();
        let rec = br#"{"tenant_id":"t","scenario_id":"s","user_id":"u","content_id":"i9","action":"view","ts":1767225600000}"#;
        let mut b = RecordBatch::default();
        b.push_at(rec, Position { partition: 0, offset: 1 });
        b.push_at(b"{}", Position { partition: 1, offset: 1 });
        assert!(b.event(0).is_err(), "without the mapping it has no item_id");
        b.mapping = Some(Arc::new(m));
        assert_eq!(b.event(0).unwrap().item_id, "i9");
        let kept = b.filtered(|p| p.partition == 0).unwrap();
        assert_eq!(kept.event(0).unwrap().item_id, "i9");
        b.parse_ahead();
        assert_eq!(b.event(0).unwrap().item_id, "i9");
        assert_eq!(b.event(1), Err(RejectReason::Missing("tenant_id")));
    }
}
