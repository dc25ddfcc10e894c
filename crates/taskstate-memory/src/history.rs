//! The history area: each key's rows as a sorted vector, the global time
//! index, the ordered keys, and the insertion-order log of the bulk path.

use std::collections::BTreeSet;
use std::sync::Arc;

use taskstate_core::engine::HistoryPos;
use taskstate_core::{HistoryRow, InvocationHistory, InvocationId, InvocationStatus, TimeKey};

use crate::Map;
use crate::ordered::{AppendMap, Keyed, may_hold};

type HistKey = HistoryPos;

/// One key's history rows, ascending by (time key, sequence): a sorted
/// vector (a key holds a handful of rows; no tree nodes to allocate).
#[derive(Default)]
pub(crate) struct KeyRows(Vec<(HistKey, Arc<InvocationHistory>)>);

impl KeyRows {
    /// The row with this identity's time key and status, if stored.
    fn position_of(&self, key: TimeKey, status: InvocationStatus) -> Option<usize> {
        let start = self.0.partition_point(|((k, _), _)| *k < key);
        self.0[start..]
            .iter()
            .take_while(|((k, _), _)| *k == key)
            .position(|(_, r)| r.status_record.status == status)
            .map(|i| start + i)
    }

    /// Adds a row with the newest sequence of its time key.
    fn push(&mut self, pos: HistKey, rec: Arc<InvocationHistory>) {
        let at = self.0.partition_point(|(p, _)| *p < pos);
        self.0.insert(at, (pos, rec));
    }

    pub(crate) fn get(&self, pos: &HistKey) -> Option<&Arc<InvocationHistory>> {
        let i = self.0.binary_search_by(|(p, _)| p.cmp(pos)).ok()?;
        Some(&self.0[i].1)
    }

    /// Whether a row's time key lies in `lo..=hi`.
    pub(crate) fn any_within(&self, lo: TimeKey, hi: TimeKey) -> bool {
        let start = self.0.partition_point(|((k, _), _)| *k < lo);
        self.0.get(start).is_some_and(|((k, _), _)| *k <= hi)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &(HistKey, Arc<InvocationHistory>)> {
        self.0.iter()
    }
}

/// Insertion order of history rows: sequence number → (key, time key), a
/// slot per sequence from `base` (a replaced row's slot is emptied), for
/// the bulk path's pages in insertion order.
#[derive(Default)]
pub(crate) struct SeqLog {
    base: i64,
    slots: Vec<Option<(InvocationId, TimeKey)>>,
    live: usize,
}

impl SeqLog {
    fn push(&mut self, seq: i64, entry: (InvocationId, TimeKey)) {
        if self.slots.is_empty() {
            self.base = seq;
        }
        // Sequences only grow; a gap (after a purge) leaves empty slots.
        let at = usize::try_from(seq - self.base).unwrap_or(0);
        self.slots.resize(at, None);
        self.slots.push(Some(entry));
        self.live += 1;
    }

    fn remove(&mut self, seq: i64) {
        let slot = usize::try_from(seq - self.base)
            .ok()
            .and_then(|i| self.slots.get_mut(i));
        if let Some(slot) = slot
            && slot.take().is_some()
        {
            self.live -= 1;
        }
    }

    /// The live entries after sequence `after` (all for `None`), ascending.
    pub(crate) fn after(
        &self,
        after: Option<i64>,
    ) -> impl Iterator<Item = (i64, &(InvocationId, TimeKey))> {
        let from = match after {
            Some(a) => usize::try_from(a.saturating_sub(self.base).saturating_add(1)).unwrap_or(0),
            None => 0,
        };
        let base = self.base;
        self.slots
            .iter()
            .enumerate()
            .skip(from)
            .filter_map(move |(i, e)| Some((base + i as i64, e.as_ref()?)))
    }

    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// The key and time key of the row with sequence `seq`, if live.
    pub(crate) fn get(&self, seq: i64) -> Option<&(InvocationId, TimeKey)> {
        let at = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        self.slots.get(at)?.as_ref()
    }
}

/// The keys with history, ascending (pages of ids in a time range). A new
/// key is pushed onto a pending list — a write pays a push, not a B-tree
/// insert — and the first read that needs the order merges the list into
/// the set, under a mutex of its own (readers hold only the area's read
/// lock); a removal merges first, so it never searches the list.
#[derive(Default)]
pub(crate) struct KeySet(parking_lot::Mutex<PendingKeys>);

#[derive(Default)]
struct PendingKeys {
    sorted: BTreeSet<Keyed>,
    pending: Vec<Keyed>,
}

impl PendingKeys {
    fn merge(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.pending.sort_unstable();
        if self.sorted.is_empty() {
            // Built in one go from sorted input.
            self.sorted = self.pending.drain(..).collect();
        } else {
            self.sorted.extend(self.pending.drain(..));
        }
    }
}

impl KeySet {
    /// Adds a key not yet in the set.
    pub(crate) fn add(&mut self, key: Keyed) {
        self.0.get_mut().pending.push(key);
    }

    pub(crate) fn remove(&mut self, key: &Keyed) {
        let keys = self.0.get_mut();
        keys.merge();
        keys.sorted.remove(key);
    }

    /// `f` over the keys within `(lo, hi)`, ascending (none for an
    /// inverted range).
    pub(crate) fn with_range<R>(
        &self,
        lo: std::ops::Bound<Keyed>,
        hi: std::ops::Bound<Keyed>,
        f: impl FnOnce(&mut dyn Iterator<Item = &InvocationId>) -> R,
    ) -> R {
        if !may_hold(&lo, &hi) {
            return f(&mut std::iter::empty());
        }
        let mut keys = self.0.lock();
        keys.merge();
        f(&mut keys.sorted.range((lo, hi)).map(Keyed::id))
    }
}

#[derive(Default)]
pub(crate) struct History {
    pub(crate) next_seq: i64,
    pub(crate) per_invocation: Map<InvocationId, KeyRows>,
    /// The keys with history, ascending (pages of ids in a time range).
    pub(crate) keys: KeySet,
    /// Every row by position; time keys arrive mostly ascending.
    pub(crate) by_time: AppendMap<HistKey, Arc<InvocationHistory>>,
    pub(crate) by_seq: SeqLog,
}

impl History {
    /// Removes every row stored under key `id`; how many there were.
    pub(crate) fn remove_key(&mut self, id: &InvocationId) -> u64 {
        let Some(list) = self.per_invocation.remove(id) else {
            return 0;
        };
        self.keys.remove(&Keyed::new(id.clone()));
        for (pos, _) in &list.0 {
            self.by_time.remove(pos);
            self.by_seq.remove(pos.1);
        }
        list.0.len() as u64
    }

    /// The latest row stored under `id`: its time key and status.
    pub(crate) fn latest(&self, id: &InvocationId) -> Option<(TimeKey, InvocationStatus)> {
        let ((key, _), rec) = self.per_invocation.get(id)?.0.last()?;
        Some((*key, rec.status_record.status))
    }

    /// Adds a row; one with the same identity (key, time key, status) is
    /// replaced, and the new one takes the latest insertion position.
    pub(crate) fn add(&mut self, row: &HistoryRow<'_>) {
        let (id, key, status) = row.identity();
        let seq = self.next_seq;
        self.next_seq += 1;
        let rec = Arc::new(row.record.clone());
        self.by_time.insert((key, seq), rec.clone());
        self.by_seq.push(seq, (id.clone(), key));
        match self.per_invocation.get_mut(id) {
            Some(list) => {
                if let Some(i) = list.position_of(key, status) {
                    let ((_, old_seq), _) = list.0.remove(i);
                    self.by_time.remove(&(key, old_seq));
                    self.by_seq.remove(old_seq);
                }
                list.push((key, seq), rec);
            }
            None => {
                self.keys.add(Keyed::new(id.clone()));
                // Room for the usual life of an invocation (registered,
                // pending, running, a final status) without regrowing.
                let mut rows = Vec::with_capacity(4);
                rows.push(((key, seq), rec));
                self.per_invocation.insert(id.clone(), KeyRows(rows));
            }
        }
    }
}
