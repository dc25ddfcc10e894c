//! An ordered map for keys that arrive mostly in ascending order, as
//! history time keys do: in-order keys are appended to a sorted vector (no
//! tree descent, no node to allocate), the rest go to a B-tree, and a range
//! reads both merged. Removal leaves a hole in the vector, squeezed out
//! once holes outnumber live entries.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::iter::Peekable;
use std::ops::Bound;

use taskstate_core::InvocationId;

/// An id as the key of an ordered set: its first eight bytes as a
/// big-endian integer beside it, so most comparisons are one integer
/// comparison on the tree node instead of a call to `memcmp` through two
/// pointers. The order is the ids' byte (code point) order: ids whose
/// first eight bytes differ compare as those bytes do (a shorter id is
/// padded with zero bytes, which sort first), and equal prefixes fall back
/// to the whole strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Keyed {
    prefix: u64,
    id: InvocationId,
}

impl Keyed {
    pub(crate) fn new(id: InvocationId) -> Self {
        let mut head = [0u8; 8];
        let bytes = id.as_str().as_bytes();
        let n = bytes.len().min(8);
        head[..n].copy_from_slice(&bytes[..n]);
        Self {
            prefix: u64::from_be_bytes(head),
            id,
        }
    }

    pub(crate) fn id(&self) -> &InvocationId {
        &self.id
    }
}

impl Ord for Keyed {
    fn cmp(&self, other: &Self) -> Ordering {
        self.prefix
            .cmp(&other.prefix)
            .then_with(|| self.id.as_str().cmp(other.id.as_str()))
    }
}

impl PartialOrd for Keyed {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A bound on ids as a bound on their [`Keyed`] forms.
pub(crate) fn keyed_bound(b: Bound<&InvocationId>) -> Bound<Keyed> {
    b.map(|id| Keyed::new(id.clone()))
}

/// Groups up to this size are sorted vectors.
const SMALL_GROUP: usize = 64;

/// One group's members (a parent's children, a workflow's invocations),
/// ascending: a sorted vector while small — one allocation, a binary
/// search and a short shift per insert, which is what most groups are —
/// and a B-tree once it outgrows [`SMALL_GROUP`] (inserting into a long
/// vector would be linear).
#[derive(Debug)]
pub(crate) enum Group {
    Small(Vec<Keyed>),
    Large(BTreeSet<Keyed>),
}

impl Group {
    pub(crate) fn one(member: Keyed) -> Self {
        let mut v = Vec::with_capacity(4);
        v.push(member);
        Group::Small(v)
    }

    /// Adds a member (a set: adding one twice keeps one).
    pub(crate) fn insert(&mut self, member: Keyed) {
        match self {
            Group::Small(v) => {
                if let Err(at) = v.binary_search(&member) {
                    if v.len() < SMALL_GROUP {
                        v.insert(at, member);
                    } else {
                        let mut set: BTreeSet<Keyed> = std::mem::take(v).into_iter().collect();
                        set.insert(member);
                        *self = Group::Large(set);
                    }
                }
            }
            Group::Large(set) => {
                set.insert(member);
            }
        }
    }

    pub(crate) fn remove(&mut self, member: &Keyed) {
        match self {
            Group::Small(v) => {
                if let Ok(at) = v.binary_search(member) {
                    v.remove(at);
                }
            }
            Group::Large(set) => {
                set.remove(member);
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        match self {
            Group::Small(v) => v.is_empty(),
            Group::Large(set) => set.is_empty(),
        }
    }

    /// The members, ascending.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &InvocationId> {
        let (small, large) = match self {
            Group::Small(v) => (Some(v.iter()), None),
            Group::Large(set) => (None, Some(set.iter())),
        };
        small
            .into_iter()
            .flatten()
            .chain(large.into_iter().flatten())
            .map(Keyed::id)
    }
}

pub(crate) struct AppendMap<K, V> {
    /// Ascending by key; `None` is a removed entry.
    run: Vec<(K, Option<V>)>,
    holes: usize,
    /// Keys that arrived at or below the run's last key.
    late: BTreeMap<K, V>,
}

impl<K, V> Default for AppendMap<K, V> {
    fn default() -> Self {
        Self {
            run: Vec::new(),
            holes: 0,
            late: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Copy, V> AppendMap<K, V> {
    /// Inserts (replacing any value under `key`).
    pub(crate) fn insert(&mut self, key: K, value: V) {
        match self.run.last() {
            Some((last, _)) if key <= *last => match self.run.binary_search_by(|e| e.0.cmp(&key)) {
                Ok(i) => {
                    if self.run[i].1.replace(value).is_none() {
                        self.holes -= 1;
                    }
                }
                Err(_) => {
                    self.late.insert(key, value);
                }
            },
            _ => self.run.push((key, Some(value))),
        }
    }

    /// Removes the entry under `key`; its value, if there was one.
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        if let Ok(i) = self.run.binary_search_by(|e| e.0.cmp(key))
            && let Some(v) = self.run[i].1.take()
        {
            self.holes += 1;
            if self.holes > 64 && self.holes * 2 > self.run.len() {
                self.run.retain(|e| e.1.is_some());
                self.holes = 0;
            }
            return Some(v);
        }
        self.late.remove(key)
    }

    /// The entries with keys in `(lo, hi)`, ascending; an inverted range
    /// (or one excluding its only key) is empty, where `BTreeMap::range`
    /// would panic.
    pub(crate) fn range(&self, lo: Bound<K>, hi: Bound<K>) -> impl Iterator<Item = (&K, &V)> {
        let run = sorted_within(&self.run, |e| &e.0, lo.as_ref(), hi.as_ref())
            .iter()
            .filter_map(|(k, v)| Some((k, v.as_ref()?)));
        let late = may_hold(&lo, &hi)
            .then(|| self.late.range((lo, hi)))
            .into_iter()
            .flatten();
        Merge {
            a: run.peekable(),
            b: late.peekable(),
        }
    }
}

/// Whether the range `(lo, hi)` can hold a key: `false` for an inverted
/// range and one whose bounds meet at an excluded key, on which
/// `BTreeMap::range` would panic (or which it would find empty).
pub(crate) fn may_hold<K: Ord>(lo: &Bound<K>, hi: &Bound<K>) -> bool {
    match (lo, hi) {
        (Bound::Included(a), Bound::Included(b)) => a <= b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b)) => a < b,
        _ => true,
    }
}

/// The part of `items` (ascending by `key`) within `(lo, hi)`; empty for
/// an inverted range.
pub(crate) fn sorted_within<'a, T, K: Ord + ?Sized>(
    items: &'a [T],
    key: impl Fn(&T) -> &K,
    lo: Bound<&K>,
    hi: Bound<&K>,
) -> &'a [T] {
    let start = match lo {
        Bound::Included(a) => items.partition_point(|t| key(t) < a),
        Bound::Excluded(a) => items.partition_point(|t| key(t) <= a),
        Bound::Unbounded => 0,
    };
    let end = match hi {
        Bound::Included(b) => items.partition_point(|t| key(t) <= b),
        Bound::Excluded(b) => items.partition_point(|t| key(t) < b),
        Bound::Unbounded => items.len(),
    };
    items.get(start..end.max(start)).unwrap_or_default()
}

/// Two ascending iterators of distinct keys, merged.
struct Merge<A: Iterator, B: Iterator> {
    a: Peekable<A>,
    b: Peekable<B>,
}

impl<'m, K: Ord + 'm, V: 'm, A, B> Iterator for Merge<A, B>
where
    A: Iterator<Item = (&'m K, &'m V)>,
    B: Iterator<Item = (&'m K, &'m V)>,
{
    type Item = (&'m K, &'m V);

    fn next(&mut self) -> Option<Self::Item> {
        match (self.a.peek(), self.b.peek()) {
            (Some(x), Some(y)) if y.0 < x.0 => self.b.next(),
            (Some(_), _) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any sequence of inserts and removals reads back, over any
        /// range, exactly as a BTreeMap does.
        #[test]
        fn reads_as_a_btreemap(
            ops in proptest::collection::vec((any::<bool>(), 0u16..200, any::<u32>()), 0..400),
            ranges in proptest::collection::vec((0u8..3, 0u16..220, 0u8..3, 0u16..220), 1..20),
        ) {
            let mut ours = AppendMap::default();
            let mut model = BTreeMap::new();
            for (insert, k, v) in ops {
                if insert {
                    ours.insert(k, v);
                    model.insert(k, v);
                } else {
                    prop_assert_eq!(ours.remove(&k), model.remove(&k));
                }
            }
            let bound = |kind: u8, k: u16| match kind {
                0 => Bound::Included(k),
                1 => Bound::Excluded(k),
                _ => Bound::Unbounded,
            };
            for (lk, lo, hk, hi) in ranges {
                let (lo, hi) = (bound(lk, lo), bound(hk, hi));
                let got: Vec<(u16, u32)> = ours.range(lo, hi).map(|(k, v)| (*k, *v)).collect();
                let valid = match (lo, hi) {
                    (Bound::Included(a), Bound::Included(b)) => a <= b,
                    (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(b))
                    | (Bound::Excluded(a), Bound::Included(b)) => a < b,
                    _ => true,
                };
                let want: Vec<(u16, u32)> = if valid {
                    model.range((lo, hi)).map(|(k, v)| (*k, *v)).collect()
                } else {
                    Vec::new()
                };
                prop_assert_eq!(got, want);
            }
        }
    }

    proptest! {
        /// Keyed ids sort exactly as their strings do, NUL bytes, shared
        /// prefixes and multi-byte characters included.
        #[test]
        fn keyed_order_is_string_order(
            a in "[a\\x00é😀-]{0,12}", b in "[a\\x00é😀-]{0,12}",
        ) {
            let (ka, kb) = (
                Keyed::new(InvocationId::new(&a)),
                Keyed::new(InvocationId::new(&b)),
            );
            prop_assert_eq!(ka.cmp(&kb), a.as_str().cmp(b.as_str()));
            prop_assert_eq!(ka == kb, a == b);
        }
    }

    proptest! {
        /// Any sequence of inserts and removals leaves a group holding what
        /// a BTreeSet would, in its order, across the switch to a B-tree.
        #[test]
        fn groups_read_as_a_btreeset(
            ops in proptest::collection::vec((any::<bool>(), 0u16..150), 1..400),
        ) {
            let key = |k: u16| Keyed::new(InvocationId::new(format!("id-{k:03}")));
            let mut group: Option<Group> = None;
            let mut model = BTreeSet::new();
            for (insert, k) in ops {
                if insert {
                    match &mut group {
                        Some(g) => g.insert(key(k)),
                        None => group = Some(Group::one(key(k))),
                    }
                    model.insert(format!("id-{k:03}"));
                } else {
                    if let Some(g) = &mut group {
                        g.remove(&key(k));
                    }
                    model.remove(&format!("id-{k:03}"));
                }
                let got: Vec<String> = group
                    .iter()
                    .flat_map(Group::iter)
                    .map(|id| id.as_str().to_owned())
                    .collect();
                prop_assert_eq!(&got, &model.iter().cloned().collect::<Vec<_>>());
                prop_assert_eq!(group.as_ref().is_none_or(Group::is_empty), model.is_empty());
            }
        }
    }

    #[test]
    fn in_order_keys_stay_in_the_run() {
        let mut m = AppendMap::default();
        for k in 0..1000u32 {
            m.insert(k, k);
        }
        assert!(m.late.is_empty());
        m.insert(500, 7);
        assert!(m.late.is_empty(), "a replaced key stays where it is");
        assert_eq!(
            m.range(Bound::Included(500), Bound::Included(500)).next(),
            Some((&500, &7))
        );
        for k in 0..900 {
            assert_eq!(m.remove(&k), Some(if k == 500 { 7 } else { k }));
        }
        assert!(m.run.len() < 1000, "holes were squeezed out");
        assert_eq!(m.range(Bound::Unbounded, Bound::Unbounded).count(), 100);
    }
}
