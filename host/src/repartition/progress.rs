//! What the shuffle knows of each source partition it owns: per tenant, the maximum event time
//! it forwarded and how many events. Markers are built from it. A transaction that aborts
//! makes its records invisible and rewinds the consumer to the committed offsets, so the
//! progress rolls back to what was committed too: a marker must never vouch for events that
//! will be forwarded again after it.

use std::collections::BTreeMap;

use super::marker::{Marker, SourceTag, TenantProgress};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Source {
    sources: i32,
    /// tenant -> (max event time, events forwarded).
    tenants: BTreeMap<String, (i64, u64)>,
}

/// Progress of the source partitions a shuffle owns: current (in the open transaction) and as
/// of the last committed transaction.
#[derive(Debug, Clone, Default)]
pub struct ShuffleProgress {
    current: BTreeMap<i32, Source>,
    committed: BTreeMap<i32, Source>,
}

impl ShuffleProgress {
    /// An event of `tenant` at `ts` forwarded from `tag.source`. Callers pass only events that
    /// parse and are not too far in the future (those the pipeline would reject must not move
    /// anyone's event time).
    pub fn forwarded(&mut self, tag: SourceTag, tenant: &str, ts: i64) {
        let src = self.current.entry(tag.source).or_default();
        src.sources = src.sources.max(tag.sources);
        match src.tenants.get_mut(tenant) {
            Some((max, n)) => {
                *max = (*max).max(ts);
                *n += 1;
            }
            None => {
                src.tenants.insert(tenant.to_string(), (ts, 1));
            }
        }
    }

    /// A source partition read from (even if none of its events parsed): its marker says how
    /// many source partitions there are, so the pipeline waits for all of them.
    pub fn touch(&mut self, tag: SourceTag) {
        let src = self.current.entry(tag.source).or_default();
        src.sources = src.sources.max(tag.sources);
    }

    /// The marker of `source`, if it was read from.
    pub fn marker(&self, source: i32) -> Option<Marker> {
        let src = self.current.get(&source)?;
        let tenants = src.tenants.iter().map(|(t, &(max_ts, events))| TenantProgress { tenant: t.clone(), max_ts, events }).collect();
        Some(Marker { tag: SourceTag { source, sources: src.sources }, tenants })
    }

    /// Source partitions with progress.
    pub fn sources(&self) -> Vec<i32> {
        self.current.keys().copied().collect()
    }

    /// The open transaction committed.
    pub fn commit(&mut self) {
        self.committed.clone_from(&self.current);
    }

    /// The open transaction aborted: back to the last commit.
    pub fn abort(&mut self) {
        self.current.clone_from(&self.committed);
    }

    /// Source partitions no longer owned (their next owner starts its own progress).
    pub fn forget(&mut self, sources: &[i32]) {
        for s in sources {
            self.current.remove(s);
            self.committed.remove(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAG: SourceTag = SourceTag { source: 1, sources: 4 };

    #[test]
    fn markers_carry_each_tenants_maximum_and_count() {
        let mut p = ShuffleProgress::default();
        assert_eq!(p.marker(1), None);
        p.forwarded(TAG, "a", 50);
        p.forwarded(TAG, "a", 40);
        p.forwarded(TAG, "b", 70);
        p.touch(SourceTag { source: 3, sources: 4 });
        let m = p.marker(1).unwrap();
        assert_eq!(m.tag, TAG);
        assert_eq!(
            m.tenants,
            vec![
                TenantProgress { tenant: "a".into(), max_ts: 50, events: 2 },
                TenantProgress { tenant: "b".into(), max_ts: 70, events: 1 }
            ]
        );
        assert_eq!(p.marker(3).unwrap().tenants, vec![]);
        assert_eq!(p.sources(), vec![1, 3]);
    }

    #[test]
    fn an_aborted_transaction_rolls_progress_back_to_the_last_commit() {
        let mut p = ShuffleProgress::default();
        p.forwarded(TAG, "a", 50);
        p.commit();
        p.forwarded(TAG, "a", 90);
        p.forwarded(TAG, "c", 95);
        p.abort();
        assert_eq!(p.marker(1).unwrap().tenants, vec![TenantProgress { tenant: "a".into(), max_ts: 50, events: 1 }]);
        p.forget(&[1]);
        assert_eq!(p.marker(1), None);
        p.abort();
        assert_eq!(p.marker(1), None, "forgotten in the committed copy too");
    }
}
