//! Interned item ids: each distinct item of a scenario's window state gets a dense `u32`, so
//! cells store 4 bytes per item instead of a string and per-window scratch arrays are indexed
//! by it. Each id carries a value next to its name (one cache line serves an event's lookup and
//! its per-item state); the table stores only the `u32`s and hashes through the names, so each
//! name is held once. Names up to 24 bytes are stored inline (no allocation, no pointer to
//! chase on lookup). Released ids are reused.

use compact_str::CompactString;
use hashbrown::HashTable;

#[derive(Debug, Clone, Default)]
struct Entry<T> {
    /// Empty for a released id (live names are never empty).
    name: CompactString,
    value: T,
}

#[derive(Clone)]
pub struct ItemIds<T> {
    table: HashTable<u32>,
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    hasher: ahash::RandomState,
    /// Bytes of names too long to be stored inline.
    name_bytes: usize,
}

impl<T> Default for ItemIds<T> {
    fn default() -> Self {
        Self { table: HashTable::new(), entries: Vec::new(), free: Vec::new(), hasher: ahash::RandomState::new(), name_bytes: 0 }
    }
}

impl<T> std::fmt::Debug for ItemIds<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ItemIds").field("live", &self.table.len()).field("slots", &self.entries.len()).finish()
    }
}

impl<T: Default> ItemIds<T> {
    /// The id of `name`, interning it (with a default value) if new.
    pub fn intern(&mut self, name: &str) -> u32 {
        let hash = self.hasher.hash_one(name);
        let entries = &self.entries;
        if let Some(&id) = self.table.find(hash, |&id| entries[id as usize].name == name) {
            return id;
        }
        let boxed = CompactString::new(name);
        if boxed.is_heap_allocated() {
            self.name_bytes += boxed.capacity();
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.entries[id as usize].name = boxed;
                id
            }
            None => {
                if self.entries.len() == self.entries.capacity() {
                    // Grow by an eighth, not double: the entries are a large share of the state.
                    self.entries.reserve_exact((self.entries.len() / 8).max(64));
                }
                self.entries.push(Entry { name: boxed, value: T::default() });
                #[allow(clippy::expect_used, reason = "the item quota keeps live items far below 2^32")]
                let id = u32::try_from(self.entries.len() - 1).expect("fewer than 2^32 live items");
                id
            }
        };
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.table.insert_unique(hash, id, |&i| hasher.hash_one(entries[i as usize].name.as_str()));
        id
    }

    /// True when `name` is interned.
    pub fn contains(&self, name: &str) -> bool {
        let entries = &self.entries;
        self.table.find(self.hasher.hash_one(name), |&id| entries[id as usize].name == name).is_some()
    }

    pub fn name(&self, id: u32) -> &str {
        &self.entries[id as usize].name
    }

    /// Starts loading the entry of `id` (a hint: no effect on what is computed).
    #[inline(always)]
    pub fn prefetch(&self, id: u32) {
        crate::prefetch::prefetch_at(&self.entries, id as usize);
    }

    pub fn get_mut(&mut self, id: u32) -> &mut T {
        &mut self.entries[id as usize].value
    }

    /// Forgets `id` and resets its value; the id may be handed out again for another name.
    pub fn release(&mut self, id: u32) {
        let entry = &mut self.entries[id as usize];
        let name = std::mem::take(&mut entry.name);
        entry.value = T::default();
        let hash = self.hasher.hash_one(name.as_str());
        if let Ok(found) = self.table.find_entry(hash, |&i| i == id) {
            found.remove();
        }
        if name.is_heap_allocated() {
            self.name_bytes -= name.capacity();
        }
        self.free.push(id);
    }

    /// Live ids.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// One past the highest id handed out: the length per-id arrays need.
    pub fn id_bound(&self) -> usize {
        self.entries.len()
    }

    /// Bytes held: long names, the entries and the table (a `u32` and a control byte a slot).
    pub fn heap_bytes(&self) -> usize {
        self.name_bytes
            + self.entries.capacity() * std::mem::size_of::<Entry<T>>()
            + self.free.capacity() * 4
            + self.table.capacity() * (std::mem::size_of::<u32>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_releases_and_reuses() {
        let mut ids = ItemIds::<u8>::default();
        assert_eq!(ids.intern("a"), 0);
        assert_eq!(ids.intern("b"), 1);
        assert_eq!(ids.intern("a"), 0);
        *ids.get_mut(0) = 9;
        ids.release(0);
        assert_eq!(ids.len(), 1);
        assert_eq!(ids.intern("c"), 0);
        assert_eq!(*ids.get_mut(0), 0, "a reused id starts from the default value");
        assert_eq!(ids.name(0), "c");
        assert_eq!(ids.intern("b"), 1);
        assert_eq!(ids.id_bound(), 2);
    }
}
