//! A map split into shards by key hash, each behind its own read-write lock
//! on its own cache line: threads reading different keys touch different
//! lock words, so reads scale with cores instead of contending on one lock.
//!
//! Writers that touch several shards take them in ascending index order
//! (one at a time for a single key), so no two writers wait on each other in
//! a cycle; whole-map operations (snapshots, bulk writes, purge) take every
//! shard in that order too.

use std::hash::BuildHasher;
use std::ops::{Deref, DerefMut};

use hashbrown::HashTable;
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use taskstate_core::InvocationId;

/// Shards per map: more than cores on a typical host, few enough that a
/// whole-map lock stays cheap.
pub(crate) const SHARDS: usize = 16;

/// A value alone on its cache line (two 64-byte lines: adjacent-line
/// prefetch would otherwise pair neighbours).
#[repr(align(128))]
#[derive(Default)]
struct Padded<T>(T);

/// One shard: each id stored with its hash, so growing the table moves
/// entries without hashing an id again.
pub(crate) struct IdTable<V>(HashTable<(u64, InvocationId, V)>);

impl<V> Default for IdTable<V> {
    fn default() -> Self {
        Self(HashTable::new())
    }
}

impl<V> IdTable<V> {
    fn get(&self, hash: u64, id: &InvocationId) -> Option<&V> {
        self.0.find(hash, |e| e.1 == *id).map(|e| &e.2)
    }

    fn insert(&mut self, hash: u64, id: &InvocationId, value: V) -> Option<V> {
        match self.0.find_mut(hash, |e| e.1 == *id) {
            Some(e) => Some(std::mem::replace(&mut e.2, value)),
            None => {
                self.0
                    .insert_unique(hash, (hash, id.clone(), value), |e| e.0);
                None
            }
        }
    }

    fn remove(&mut self, hash: u64, id: &InvocationId) -> Option<V> {
        match self.0.find_entry(hash, |e| e.1 == *id) {
            Ok(entry) => Some(entry.remove().0.2),
            Err(_) => None,
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn keys(&self) -> impl Iterator<Item = &InvocationId> {
        self.0.iter().map(|e| &e.1)
    }
}

/// Where an id lives: its hash, and the shard that hash picks.
#[derive(Clone, Copy)]
struct Slot {
    hash: u64,
    shard: usize,
}

/// A map keyed by invocation id, split into [`SHARDS`] shards.
pub(crate) struct IdShards<V> {
    hasher: foldhash::fast::RandomState,
    shards: Vec<Padded<RwLock<IdTable<V>>>>,
}

impl<V> Default for IdShards<V> {
    fn default() -> Self {
        Self {
            hasher: foldhash::fast::RandomState::default(),
            shards: (0..SHARDS).map(|_| Padded::default()).collect(),
        }
    }
}

impl<V> IdShards<V> {
    /// The id's hash, computed once: bits 48..52 pick the shard, bits the
    /// table inside it uses for neither the bucket (the low bits) nor the
    /// tag byte (the top seven), so entries of one shard still differ
    /// there.
    fn slot(&self, id: &InvocationId) -> Slot {
        let hash = self.hasher.hash_one(id.as_str());
        Slot {
            hash,
            shard: (hash >> 48) as usize % SHARDS,
        }
    }

    fn shard(&self, i: usize) -> &RwLock<IdTable<V>> {
        &self.shards[i % SHARDS].0
    }

    /// A copy of the value stored under `id` (one shard read-locked).
    pub(crate) fn get_cloned(&self, id: &InvocationId) -> Option<V>
    where
        V: Clone,
    {
        let s = self.slot(id);
        self.shard(s.shard).read().get(s.hash, id).cloned()
    }

    /// Stores `value` under `id` (one shard write-locked), returning the
    /// value it replaces. The old value is dropped after the lock is
    /// released.
    pub(crate) fn insert(&self, id: &InvocationId, value: V) -> Option<V> {
        let s = self.slot(id);
        self.shard(s.shard).write().insert(s.hash, id, value)
    }

    /// Every shard read-locked, in index order.
    pub(crate) fn read_all(&self) -> Locked<'_, V, RwLockReadGuard<'_, IdTable<V>>> {
        Locked {
            owner: self,
            guards: self.shards.iter().map(|s| s.0.read()).collect(),
        }
    }

    /// Every shard write-locked, in index order.
    pub(crate) fn write_all(&self) -> Locked<'_, V, RwLockWriteGuard<'_, IdTable<V>>> {
        Locked {
            owner: self,
            guards: self.shards.iter().map(|s| s.0.write()).collect(),
        }
    }
}

/// Every shard of an [`IdShards`] locked (read or write, by guard type).
pub(crate) struct Locked<'a, V, G> {
    owner: &'a IdShards<V>,
    guards: Vec<G>,
}

impl<V, G: Deref<Target = IdTable<V>>> Locked<'_, V, G> {
    pub(crate) fn get(&self, id: &InvocationId) -> Option<&V> {
        let s = self.owner.slot(id);
        self.guards.get(s.shard)?.get(s.hash, id)
    }

    pub(crate) fn contains(&self, id: &InvocationId) -> bool {
        self.get(id).is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.guards.iter().map(|g| g.len()).sum()
    }

    /// Every key, in no particular order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &InvocationId> {
        self.guards.iter().flat_map(|g| g.keys())
    }
}

impl<V, G: DerefMut<Target = IdTable<V>>> Locked<'_, V, G> {
    pub(crate) fn insert(&mut self, id: &InvocationId, value: V) -> Option<V> {
        let s = self.owner.slot(id);
        self.guards.get_mut(s.shard)?.insert(s.hash, id, value)
    }

    pub(crate) fn remove(&mut self, id: &InvocationId) -> Option<V> {
        let s = self.owner.slot(id);
        self.guards.get_mut(s.shard)?.remove(s.hash, id)
    }

    pub(crate) fn clear(&mut self) {
        self.guards.iter_mut().for_each(|g| g.0.clear());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskstate_core::InvocationId;

    /// uuids, sequential ids and ids with a fixed tail spread over every
    /// shard, none holding more than twice its share.
    #[test]
    fn ids_spread_over_the_shards() {
        let shards: IdShards<()> = IdShards::default();
        let families: [Box<dyn Fn(usize) -> String>; 3] = [
            Box::new(|i| {
                format!(
                    "{:08x}-5e7b-4a3f-9915-{:012x}",
                    i.wrapping_mul(2_654_435_761),
                    i * 7919
                )
            }),
            Box::new(|i| format!("task-{i:06}")),
            Box::new(|i| format!("{i}-result-of-the-day")),
        ];
        for family in &families {
            let mut counts = [0usize; SHARDS];
            for i in 0..16_000 {
                counts[shards.slot(&InvocationId::new(family(i))).shard] += 1;
            }
            let (min, max) = (counts.iter().min(), counts.iter().max());
            assert!(min > Some(&0), "{:?}: {counts:?}", family(0));
            assert!(max < Some(&2_000), "{:?}: {counts:?}", family(0));
        }
    }

    proptest::proptest! {
        /// Inserts, replacements and removals agree with std's map at
        /// every step, through the single-key and the all-locked paths,
        /// while the tables grow.
        #[test]
        fn agrees_with_a_hash_map(
            ops in proptest::collection::vec((0u8..3, 0usize..300, 0u32..1000), 0..600)
        ) {
            let shards: IdShards<u32> = IdShards::default();
            let mut model = std::collections::HashMap::new();
            for (op, key, value) in ops {
                let id = InvocationId::new(format!("id-{key}"));
                match op {
                    0 => proptest::prop_assert_eq!(
                        shards.insert(&id, value), model.insert(id.clone(), value)
                    ),
                    1 => proptest::prop_assert_eq!(
                        shards.write_all().remove(&id), model.remove(&id)
                    ),
                    _ => proptest::prop_assert_eq!(
                        shards.get_cloned(&id), model.get(&id).copied()
                    ),
                }
            }
            let all = shards.read_all();
            proptest::prop_assert_eq!(all.len(), model.len());
            for (id, v) in &model {
                proptest::prop_assert_eq!(all.get(id), Some(v));
            }
            let mut keys: Vec<&InvocationId> = all.keys().collect();
            keys.sort();
            let mut want: Vec<&InvocationId> = model.keys().collect();
            want.sort();
            proptest::prop_assert_eq!(keys, want);
        }
    }
}
