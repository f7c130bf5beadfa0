//! Event sources: Kafka, a JSONL file, and the demo generator. Each runs as its own task and
//! hands the pipeline [`RecordBatch`]es over a bounded channel, so a slow pipeline pushes back
//! on the source instead of buffering without limit.

pub mod file;
pub mod generator;
pub mod kafka;

use std::collections::BTreeMap;

/// Where a record came from, for offset commits and dead-letter headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub partition: i32,
    pub offset: i64,
}

/// Many raw records in one contiguous buffer: record `i` is `data[ends[i-1]..ends[i]]`.
#[derive(Debug, Default, Clone)]
pub struct RecordBatch {
    pub data: Vec<u8>,
    pub ends: Vec<u32>,
    /// Per record, when the source has positions (Kafka); empty otherwise.
    pub positions: Vec<Position>,
}

impl RecordBatch {
    pub fn with_capacity(records: usize, bytes: usize) -> Self {
        Self { data: Vec::with_capacity(bytes), ends: Vec::with_capacity(records), positions: Vec::new() }
    }

    pub fn push(&mut self, record: &[u8]) {
        self.data.extend_from_slice(record);
        self.ends.push(self.data.len() as u32);
    }

    pub fn push_at(&mut self, record: &[u8], pos: Position) {
        self.push(record);
        self.positions.push(pos);
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

    /// The records `keep` admits, or `None` when it admits every record (no copy).
    pub fn filtered(&self, mut keep: impl FnMut(Position) -> bool) -> Option<RecordBatch> {
        if self.positions.iter().all(|p| keep(*p)) {
            return None;
        }
        let mut out = RecordBatch::with_capacity(self.len(), self.bytes_len());
        for (i, rec) in self.iter().enumerate() {
            if let Some(pos) = self.position(i)
                && keep(pos)
            {
                out.push_at(rec, pos);
            }
        }
        Some(out)
    }

    /// Next offset per partition after this batch's records.
    pub fn next_offsets(&self) -> BTreeMap<i32, i64> {
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for p in &self.positions {
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
    }
}

/// What a source sends down its channel.
#[derive(Debug)]
pub enum SourceMessage {
    Records(RecordBatch),
    /// A finite source reached its end: the pipeline emits every remaining window (DESIGN §4).
    End,
}
