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
use hashbrown::hash_table::Entry;
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use taskstate_core::InvocationId;

/// Shards per map: more than cores on a typical host, few enough that a
/// whole-map lock stays cheap.
pub(crate) const SHARDS: usize = 16;

/// Below this many entries a full shard grows to four times its entries
/// instead of hashbrown's two: a fresh store's small tables would otherwise
/// be rebuilt every few inserts (CPython's dict grows fourfold too). Above
/// it tables double, so a large store's slack stays at most half.
const FAST_GROWTH_BELOW: usize = 1024;

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
        let len = self.0.len();
        if len == self.0.capacity() {
            // Full: a replacement must not grow it (`entry` would).
            if let Some(e) = self.0.find_mut(hash, |e| e.1 == *id) {
                return Some(std::mem::replace(&mut e.2, value));
            }
            let more = if len < FAST_GROWTH_BELOW {
                3 * len.max(1)
            } else {
                1
            };
            self.0.reserve(more, |e| e.0);
        }
        match self.0.entry(hash, |e| e.1 == *id, |e| e.0) {
            Entry::Occupied(mut e) => Some(std::mem::replace(&mut e.get_mut().2, value)),
            Entry::Vacant(e) => {
                e.insert((hash, id.clone(), value));
                None
            }
        }
    }

    fn get_mut(&mut self, hash: u64, id: &InvocationId) -> Option<&mut V> {
        self.0.find_mut(hash, |e| e.1 == *id).map(|e| &mut e.2)
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

    /// `f` of the value stored under `id`, if any (one shard read-locked
    /// while `f` runs).
    pub(crate) fn read_with<R>(&self, id: &InvocationId, f: impl FnOnce(Option<&V>) -> R) -> R {
        let s = self.slot(id);
        f(self.shard(s.shard).read().get(s.hash, id))
    }

    /// Stores `value` under `id` (one shard write-locked), returning the
    /// value it replaces. The old value is dropped after the lock is
    /// released.
    pub(crate) fn insert(&self, id: &InvocationId, value: V) -> Option<V> {
        let s = self.slot(id);
        self.shard(s.shard).write().insert(s.hash, id, value)
    }

    /// Stores each value under its id (`id_of`) as one step: the shards
    /// they fall in are write-locked together (ascending) until all are
    /// stored and `then` has run on the values replaced (in order; a later
    /// duplicate replaces an earlier one), so no reader sees part of the
    /// batch, nor the batch without what `then` changes under locks of its
    /// own. Returns what `then` returns.
    ///
    /// One value (every upsert of one invocation) allocates nothing here.
    pub(crate) fn insert_all<R>(
        &self,
        values: &[V],
        id_of: impl Fn(&V) -> &InvocationId,
        then: impl FnOnce(&[Option<V>]) -> R,
    ) -> R
    where
        V: Clone,
    {
        if let [one] = values {
            let id = id_of(one);
            let s = self.slot(id);
            let mut table = self.shard(s.shard).write();
            let old = table.insert(s.hash, id, one.clone());
            return then(&[old]);
        }
        let slots: Vec<Slot> = values.iter().map(|v| self.slot(id_of(v))).collect();
        let touched = slots.iter().fold(0u32, |m, s| m | 1 << s.shard);
        let mut guards: Vec<Option<RwLockWriteGuard<'_, IdTable<V>>>> = (0..SHARDS)
            .map(|i| (touched >> i & 1 == 1).then(|| self.shard(i).write()))
            .collect();
        let replaced: Vec<Option<V>> = values
            .iter()
            .zip(slots)
            .map(|(v, s)| {
                let table = guards.get_mut(s.shard).and_then(Option::as_mut)?;
                table.insert(s.hash, id_of(v), v.clone())
            })
            .collect();
        then(&replaced)
    }

    /// A view that write-locks each shard the first time it touches it
    /// and holds every lock it took until dropped (two-phase locking: what
    /// it changed appears at once to any reader).
    ///
    /// Locks are taken in the order of use, not ascending: the caller must
    /// be the only one locking several shards of this map at a time (the
    /// memory engine's writers all hold its index lock first), or two such
    /// views could wait on each other.
    pub(crate) fn write_as_needed(&self) -> Partial<'_, V> {
        Partial {
            owner: self,
            guards: std::array::from_fn(|_| None),
        }
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

/// An [`IdShards`] read-locked whole (snapshots).
pub(crate) type ShardedRead<'a, V> = Locked<'a, V, RwLockReadGuard<'a, IdTable<V>>>;

/// An [`IdShards`] write-locked whole (retention).
pub(crate) type ShardedWrite<'a, V> = Locked<'a, V, RwLockWriteGuard<'a, IdTable<V>>>;

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

    /// Every value, in no particular order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.guards.iter().flat_map(|g| g.0.iter().map(|e| &e.2))
    }
}

impl<V, G: DerefMut<Target = IdTable<V>>> TableMut<V> for Locked<'_, V, G> {
    fn get_mut(&mut self, id: &InvocationId) -> Option<&mut V> {
        let s = self.owner.slot(id);
        self.guards.get_mut(s.shard)?.get_mut(s.hash, id)
    }

    fn insert(&mut self, id: &InvocationId, value: V) -> Option<V> {
        Locked::insert(self, id, value)
    }

    fn remove(&mut self, id: &InvocationId) -> Option<V> {
        Locked::remove(self, id)
    }
}

/// Changing values by id, whichever way the shards are locked.
pub(crate) trait TableMut<V> {
    fn get_mut(&mut self, id: &InvocationId) -> Option<&mut V>;
    /// Stores `value` under `id`, returning the value it replaces.
    fn insert(&mut self, id: &InvocationId, value: V) -> Option<V>;
    fn remove(&mut self, id: &InvocationId) -> Option<V>;
}

/// A plain map, for the indexes kept under one lock.
impl<V, S: BuildHasher> TableMut<V> for std::collections::HashMap<InvocationId, V, S> {
    fn get_mut(&mut self, id: &InvocationId) -> Option<&mut V> {
        std::collections::HashMap::get_mut(self, id)
    }

    fn insert(&mut self, id: &InvocationId, value: V) -> Option<V> {
        std::collections::HashMap::insert(self, id.clone(), value)
    }

    fn remove(&mut self, id: &InvocationId) -> Option<V> {
        std::collections::HashMap::remove(self, id)
    }
}

/// See [`IdShards::write_as_needed`].
pub(crate) struct Partial<'a, V> {
    owner: &'a IdShards<V>,
    /// One slot per shard, on the stack: every upsert makes one.
    guards: [Option<RwLockWriteGuard<'a, IdTable<V>>>; SHARDS],
}

impl<'a, V> Partial<'a, V> {
    /// The table of `id`'s shard, locked now if it was not yet.
    fn table(&mut self, id: &InvocationId) -> (u64, &mut IdTable<V>) {
        let s = self.owner.slot(id);
        let owner = self.owner;
        let guard = self.guards[s.shard].get_or_insert_with(|| owner.shard(s.shard).write());
        (s.hash, guard)
    }
}

impl<V> TableMut<V> for Partial<'_, V> {
    fn get_mut(&mut self, id: &InvocationId) -> Option<&mut V> {
        let (hash, table) = self.table(id);
        table.get_mut(hash, id)
    }

    fn insert(&mut self, id: &InvocationId, value: V) -> Option<V> {
        let (hash, table) = self.table(id);
        table.insert(hash, id, value)
    }

    fn remove(&mut self, id: &InvocationId) -> Option<V> {
        let (hash, table) = self.table(id);
        table.remove(hash, id)
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

    /// A batch appears at once: a reader that sees a version of the
    /// batch's first id never then reads an earlier version of its last
    /// (stored 63 inserts later, in another shard).
    #[test]
    fn a_batch_appears_at_once() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let shards: IdShards<(InvocationId, u32)> = IdShards::default();
        let mut ids: Vec<InvocationId> = (0..63)
            .map(|i| InvocationId::new(format!("batch-{i}")))
            .collect();
        // The seed is per process: find a last id in another shard.
        let other = (63..)
            .map(|i| InvocationId::new(format!("batch-{i}")))
            .find(|id| shards.slot(id).shard != shards.slot(&ids[0]).shard);
        ids.extend(other);
        let (first, last) = (&ids[0], &ids[63]);
        let done = AtomicBool::new(false);
        let start = std::sync::Barrier::new(2);
        let (mut reads, mut torn, mut example) = (0u64, 0u64, None);
        std::thread::scope(|s| {
            s.spawn(|| {
                start.wait();
                for v in 0..3_000u32 {
                    let batch: Vec<(InvocationId, u32)> =
                        ids.iter().map(|id| (id.clone(), v)).collect();
                    shards.insert_all(&batch, |e| &e.0, |_| ());
                }
                done.store(true, Ordering::Release);
            });
            start.wait();
            while !done.load(Ordering::Acquire) {
                let va = shards.get_cloned(first).map(|e| e.1);
                let vb = shards.get_cloned(last).map(|e| e.1);
                if vb < va {
                    torn += 1;
                    example = example.or(Some((va, vb)));
                }
                reads += 1;
            }
        });
        assert_eq!(torn, 0, "of {reads} reads, e.g. {example:?}");
        assert_eq!(shards.get_cloned(last).map(|e| e.1), Some(2_999));
    }

    /// A full small table replaces in place, grows fourfold for a new id,
    /// and a large one doubles; every value stays findable throughout.
    #[test]
    fn small_tables_grow_fourfold_and_large_ones_double() {
        let hasher = foldhash::fast::RandomState::default();
        let mut table: IdTable<usize> = IdTable::default();
        let id = |i: usize| InvocationId::new(format!("grow-{i}"));
        let mut growths = Vec::new();
        for i in 0..5_000 {
            let full = table.len() == table.0.capacity();
            if full && i > 0 {
                // A replacement of a present id does not grow the table.
                let before = table.0.capacity();
                let old = table.insert(hasher.hash_one(id(0).as_str()), &id(0), 0);
                assert_eq!(old, Some(0));
                assert_eq!(table.0.capacity(), before);
            }
            let (len, before) = (table.len(), table.0.capacity());
            assert_eq!(
                table.insert(hasher.hash_one(id(i).as_str()), &id(i), i),
                None
            );
            if table.0.capacity() != before {
                growths.push((len, table.0.capacity()));
            }
        }
        for &(len, cap) in &growths {
            if len == 0 {
                continue;
            }
            if len < FAST_GROWTH_BELOW {
                assert!(cap >= 4 * len, "{len} entries grew to {cap}: {growths:?}");
            } else {
                assert!(cap < 3 * len, "{len} entries grew to {cap}: {growths:?}");
            }
        }
        assert!(growths.iter().any(|&(len, _)| len >= FAST_GROWTH_BELOW));
        for i in 0..5_000 {
            assert_eq!(table.get(hasher.hash_one(id(i).as_str()), &id(i)), Some(&i));
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
