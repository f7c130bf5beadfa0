//! Event sources: Kafka, a JSONL file, and the demo generator. Each runs as its own task and
//! hands the pipeline [`RecordBatch`]es over a bounded channel, so a slow pipeline pushes back
//! on the source instead of buffering without limit.

pub mod file;
pub mod generator;
pub mod kafka;

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
}

/// What a source sends down its channel.
#[derive(Debug)]
pub enum SourceMessage {
    Records(RecordBatch),
    /// A finite source reached its end: the pipeline emits every remaining window (DESIGN §4).
    End,
}
