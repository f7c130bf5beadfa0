//! The cells of one bucket minute, for every item of a scenario: one flat vector, so building a
//! window batch and evicting a minute read memory in order instead of chasing a pointer per
//! item.

use std::collections::HashMap;

use super::buckets::Cell;
use super::features::FeatureMinute;

/// No next cell in an item's chain.
pub const NONE: u32 = u32::MAX;

/// One (item, action) cell of the minute: 32 bytes.
#[derive(Debug, Clone, Copy)]
pub struct CellRow {
    pub item: u32,
    /// The item's next cell (another action) in this minute, or [`NONE`].
    pub next: u32,
    pub count: u32,
    pub action: u16,
    /// The item's first cell in this minute: one head per (item, minute) pair.
    pub head: bool,
    pub sum_offset: u64,
    pub sum_offset_sq: u64,
}

impl CellRow {
    pub fn cell(&self) -> Cell {
        Cell { action: self.action, count: self.count, sum_offset: self.sum_offset, sum_offset_sq: self.sum_offset_sq }
    }
}

#[derive(Debug, Clone, Default)]
pub struct MinuteCells {
    pub cells: Vec<CellRow>,
    /// Distinct items (head cells).
    pub pairs: u32,
    /// Head cell by item, built on the first lookup that the item's recent minutes cannot
    /// answer (an event more than one held minute out of order), then kept up to date.
    index: Option<HashMap<u32, u32, ahash::RandomState>>,
    /// Declared features' aggregates of this minute's items; `None` in scenarios without
    /// features (and until an event feeds one).
    pub features: Option<Box<FeatureMinute>>,
}

impl MinuteCells {
    /// The item's head cell here, if it has one (builds the index on first use).
    pub fn find_head(&mut self, item: u32) -> Option<u32> {
        let cells = &self.cells;
        let index =
            self.index.get_or_insert_with(|| cells.iter().enumerate().filter(|(_, c)| c.head).map(|(i, c)| (c.item, i as u32)).collect());
        index.get(&item).copied()
    }

    /// Starts the item's chain in this minute with its first cell; returns its index.
    pub fn push_head(&mut self, item: u32, action: u16) -> u32 {
        let at = self.push(item, action, true);
        self.pairs += 1;
        if let Some(index) = &mut self.index {
            index.insert(item, at);
        }
        at
    }

    /// The cell of `action` in the chain starting at `head`, appended if missing.
    pub fn cell_in_chain(&mut self, head: u32, action: u16) -> &mut CellRow {
        let mut at = head;
        loop {
            let c = &self.cells[at as usize];
            if c.action == action {
                return &mut self.cells[at as usize];
            }
            if c.next == NONE {
                break;
            }
            at = c.next;
        }
        let item = self.cells[at as usize].item;
        let new = self.push(item, action, false);
        self.cells[at as usize].next = new;
        &mut self.cells[new as usize]
    }

    fn push(&mut self, item: u32, action: u16, head: bool) -> u32 {
        #[allow(clippy::expect_used, reason = "the item quota keeps a minute's cells far below 2^32")]
        let at = u32::try_from(self.cells.len()).expect("fewer than 2^32 cells in a minute");
        self.cells.push(CellRow { item, next: NONE, count: 0, action, head, sum_offset: 0, sum_offset_sq: 0 });
        at
    }

    /// The cells of the chain starting at `head`, in insertion order.
    pub fn chain(&self, head: u32) -> impl Iterator<Item = &CellRow> {
        let mut at = head;
        std::iter::from_fn(move || {
            let c = self.cells.get(at as usize)?;
            at = c.next;
            Some(c)
        })
    }

    pub fn heap_bytes(&self) -> usize {
        self.cells.capacity() * std::mem::size_of::<CellRow>()
            + self.index.as_ref().map_or(0, |i| i.capacity() * 9)
            + self.features.as_ref().map_or(0, |f| std::mem::size_of::<FeatureMinute>() + f.heap_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_row_is_32_bytes() {
        assert_eq!(std::mem::size_of::<CellRow>(), 32);
    }

    #[test]
    fn chains_keep_actions_in_insertion_order_and_the_index_follows() {
        let mut m = MinuteCells::default();
        let a = m.push_head(7, 3);
        m.cell_in_chain(a, 1).count += 1;
        m.cell_in_chain(a, 3).count += 2;
        let b = m.push_head(9, 1);
        assert_eq!(m.find_head(7), Some(a));
        let c = m.push_head(11, 0);
        assert_eq!(m.find_head(11), Some(c));
        assert_eq!(m.find_head(9), Some(b));
        assert_eq!(m.find_head(8), None);
        let actions: Vec<(u16, u32)> = m.chain(a).map(|c| (c.action, c.count)).collect();
        assert_eq!(actions, vec![(3, 2), (1, 1)]);
        assert_eq!(m.pairs, 3);
    }
}
