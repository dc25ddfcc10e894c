//! A map split into shards by key hash, each behind its own read-write lock
//! on its own cache line: threads reading different keys touch different
//! lock words, so reads scale with cores instead of contending on one lock.
//!
//! Writers that touch several shards take them in ascending index order
//! (one at a time for a single key), so no two writers wait on each other in
//! a cycle; whole-map operations (snapshots, bulk writes, purge) take every
//! shard in that order too.

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Shards per map: more than cores on a typical host, few enough that a
/// whole-map lock stays cheap.
pub(crate) const SHARDS: usize = 16;

/// A value alone on its cache line (two 64-byte lines: adjacent-line
/// prefetch would otherwise pair neighbours).
#[repr(align(128))]
#[derive(Default)]
struct Padded<T>(T);

pub(crate) struct Shards<T> {
    shards: Vec<Padded<RwLock<T>>>,
}

impl<T: Default> Default for Shards<T> {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Padded::default()).collect(),
        }
    }
}

impl<T> Shards<T> {
    /// The shard holding `key`: a multiplicative hash of the id's first
    /// and last eight bytes and its length. Cheap on purpose — the map in
    /// the shard hashes the id again, properly — and spread well enough
    /// for lock striping: uuids vary everywhere, sequential ids at the
    /// end, ids with a fixed tail at the start. Ids alike in both places
    /// share a shard, which costs only contention, never correctness.
    pub(crate) fn index(&self, key: &taskstate_core::InvocationId) -> usize {
        fn word(b: &[u8]) -> u64 {
            let mut w = [0u8; 8];
            let n = b.len().min(8);
            w[..n].copy_from_slice(&b[..n]);
            u64::from_le_bytes(w)
        }
        let b = key.as_str().as_bytes();
        let mixed =
            word(b) ^ word(&b[b.len().saturating_sub(8)..]).rotate_left(29) ^ b.len() as u64;
        // Fibonacci hashing: the product's top bits depend on every input bit.
        (mixed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60) as usize % SHARDS
    }

    pub(crate) fn read(&self, i: usize) -> RwLockReadGuard<'_, T> {
        self.shards[i % SHARDS].0.read()
    }

    pub(crate) fn write(&self, i: usize) -> RwLockWriteGuard<'_, T> {
        self.shards[i % SHARDS].0.write()
    }

    /// Every shard read-locked, in index order.
    pub(crate) fn read_all(&self) -> Vec<RwLockReadGuard<'_, T>> {
        self.shards.iter().map(|s| s.0.read()).collect()
    }

    /// Every shard write-locked, in index order.
    pub(crate) fn write_all(&self) -> Vec<RwLockWriteGuard<'_, T>> {
        self.shards.iter().map(|s| s.0.write()).collect()
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
        let shards: Shards<()> = Shards::default();
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
                counts[shards.index(&InvocationId::new(family(i)))] += 1;
            }
            let (min, max) = (counts.iter().min(), counts.iter().max());
            assert!(min > Some(&0), "{:?}: {counts:?}", family(0));
            assert!(max < Some(&2_000), "{:?}: {counts:?}", family(0));
        }
    }
}
