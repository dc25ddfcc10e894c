//! A map split into shards by key hash, each behind its own read-write lock
//! on its own cache line: threads reading different keys touch different
//! lock words, so reads scale with cores instead of contending on one lock.
//!
//! Writers that touch several shards take them in ascending index order
//! (one at a time for a single key), so no two writers wait on each other in
//! a cycle; whole-map operations (snapshots, bulk writes, purge) take every
//! shard in that order too.

use std::hash::{BuildHasher, Hash};

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
    seed: foldhash::fast::RandomState,
}

impl<T: Default> Default for Shards<T> {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Padded::default()).collect(),
            seed: foldhash::fast::RandomState::default(),
        }
    }
}

impl<T> Shards<T> {
    /// The shard holding `key`.
    pub(crate) fn index<K: Hash + ?Sized>(&self, key: &K) -> usize {
        // The high bits: foldhash mixes them best.
        (self.seed.hash_one(key) >> 56) as usize % SHARDS
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
