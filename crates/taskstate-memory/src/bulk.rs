//! The bulk path of the memory engine: a snapshot is every area's read
//! lock, held until it is dropped (taken in field order, as `purge` takes
//! its write locks); a bulk write takes the write locks of the areas it
//! touches in the same order, so it is one atomic step.

use std::ops::Bound;

use parking_lot::RwLockReadGuard;
use taskstate_core::SharedText;
use taskstate_core::bulk::{
    cursor_after, cursor_arity, cursor_parts, key_cursor, not_keyed, page_of,
};
use taskstate_core::{
    AppId, AppInfo, Cursor, InvocationId, KeyRange, Kind, Page, Result, Row, RunnerId, Snapshot,
    StoredHistory,
};

use crate::ordered::{keyed_bound, sorted_within};
use crate::shards::ShardedRead;
use crate::{Group, History, Invocations, MemoryBackend, Pair, RunnerRow, Workflows, strip_parent};
use std::collections::BTreeMap;

/// The keys of a hash map, sorted once when a snapshot first pages it (the
/// snapshot holds the read lock, so they cannot change under it).
#[derive(Default)]
struct Sorted(Option<Vec<InvocationId>>);

impl Sorted {
    /// The given keys, collected and sorted the first time.
    fn of_keys<'s, 'k>(
        &'s mut self,
        keys: impl Iterator<Item = &'k InvocationId>,
    ) -> &'s [InvocationId] {
        self.0.get_or_insert_with(|| {
            let mut keys: Vec<InvocationId> = keys.cloned().collect();
            keys.sort_unstable();
            keys
        })
    }
}

/// The sorted keys within `(lo, hi)` bounds.
fn within<'k>(
    keys: &'k [InvocationId],
    lo: &Bound<InvocationId>,
    hi: &Bound<InvocationId>,
) -> &'k [InvocationId] {
    sorted_within(keys, |k| k, lo.as_ref(), hi.as_ref())
}

pub(crate) struct MemSnapshot<'a> {
    /// Held, not read: every writer of invocations takes it first, so
    /// none runs while the snapshot reads rows and child lists.
    _inv: RwLockReadGuard<'a, Invocations>,
    rows: ShardedRead<'a, Pair>,
    kids: ShardedRead<'a, Group>,
    his: RwLockReadGuard<'a, History>,
    res: ShardedRead<'a, SharedText>,
    exc: ShardedRead<'a, SharedText>,
    wf: RwLockReadGuard<'a, Workflows>,
    apps: RwLockReadGuard<'a, BTreeMap<AppId, AppInfo>>,
    run: RwLockReadGuard<'a, BTreeMap<RunnerId, RunnerRow>>,
    sorted_inv: Sorted,
    sorted_res: Sorted,
    sorted_exc: Sorted,
    sorted_parents: Sorted,
}

impl<'a> MemSnapshot<'a> {
    pub(crate) fn new(b: &'a MemoryBackend) -> Self {
        // Field order, as purge: no lock-order cycle with it.
        Self {
            _inv: b.invocations.read(),
            rows: b.rows.read_all(),
            kids: b.children.read_all(),
            his: b.history.read(),
            res: b.results.read_all(),
            exc: b.exceptions.read_all(),
            wf: b.workflows.read(),
            apps: b.apps.read(),
            run: b.runners.read(),
            sorted_inv: Sorted::default(),
            sorted_res: Sorted::default(),
            sorted_exc: Sorted::default(),
            sorted_parents: Sorted::default(),
        }
    }
}

/// The lower bound of a page after `after` (one key part).
fn after_one(after: Option<&Cursor>) -> Result<Bound<String>> {
    Ok(match after {
        Some(c) => Bound::Excluded(cursor_parts(c, 1)?.remove(0)),
        None => Bound::Unbounded,
    })
}

fn after_two(after: Option<&Cursor>) -> Result<Bound<(String, String)>> {
    Ok(match after {
        Some(c) => {
            let mut p = cursor_parts(c, 2)?;
            let second = p.pop().unwrap_or_default();
            Bound::Excluded((p.pop().unwrap_or_default(), second))
        }
        None => Bound::Unbounded,
    })
}

fn id_bound(b: Bound<String>) -> Bound<InvocationId> {
    b.map(InvocationId::new)
}

fn range_bounds(r: &KeyRange) -> (Bound<InvocationId>, Bound<InvocationId>) {
    (
        r.after.clone().map_or(Bound::Unbounded, Bound::Excluded),
        r.upto.clone().map_or(Bound::Unbounded, Bound::Included),
    )
}

impl MemSnapshot<'_> {
    /// Results or exceptions with keys within bounds, ascending, at most
    /// `take`.
    fn texts(
        &mut self,
        kind: Kind,
        lo: &Bound<InvocationId>,
        hi: &Bound<InvocationId>,
        take: usize,
    ) -> Vec<Row> {
        let (map, sorted) = if kind == Kind::Result {
            (&self.res, &mut self.sorted_res)
        } else {
            (&self.exc, &mut self.sorted_exc)
        };
        within(sorted.of_keys(map.keys()), lo, hi)
            .iter()
            .take(take)
            .filter_map(|k| {
                let v = map.get(k)?.as_str().to_owned();
                Some(if kind == Kind::Result {
                    Row::Result(k.clone(), v)
                } else {
                    Row::Exception(k.clone(), v)
                })
            })
            .collect()
    }
}

impl Snapshot for MemSnapshot<'_> {
    fn page(&mut self, kind: Kind, after: Option<&Cursor>, limit: usize) -> Result<Page<Row>> {
        if let Some(c) = after {
            if kind != Kind::History {
                cursor_parts(c, cursor_arity(kind))?;
            }
        }
        let take = limit.saturating_add(1);
        let rows: Vec<Row> = match kind {
            Kind::Invocation => {
                let lo = id_bound(after_one(after)?);
                let keys = self.sorted_inv.of_keys(self.rows.keys());
                within(keys, &lo, &Bound::Unbounded)
                    .iter()
                    .take(take)
                    .filter_map(|id| self.rows.get(id))
                    .map(|p| Row::Invocation(Box::new((**p).clone())))
                    .collect()
            }
            Kind::History => {
                let lo = match after {
                    Some(c) => {
                        let seq = cursor_parts(c, 1)?.remove(0);
                        let seq: i64 = seq.parse().map_err(|_| {
                            taskstate_core::Error::invalid(format!(
                                "cursor {:?} is not a history cursor of this engine",
                                c.token()
                            ))
                        })?;
                        Some(seq)
                    }
                    None => None,
                };
                let mut out = Vec::new();
                for (seq, (key, tk)) in self.his.by_seq.after(lo).take(take) {
                    if let Some(r) = self
                        .his
                        .per_invocation
                        .get(key)
                        .and_then(|l| l.get(&(*tk, seq)))
                    {
                        out.push((
                            seq,
                            Row::History(
                                key.clone(),
                                StoredHistory {
                                    record: (**r).clone(),
                                    time_key: *tk,
                                },
                            ),
                        ));
                    }
                }
                return Ok(taskstate_core::engine::page_from_rows(out, limit, |seq| {
                    cursor_after(&[&seq.to_string()])
                }));
            }
            Kind::Result | Kind::Exception => {
                let lo = id_bound(after_one(after)?);
                self.texts(kind, &lo, &Bound::Unbounded, take)
            }
            Kind::WorkflowRun => {
                let lo = id_bound(after_one(after)?);
                self.wf
                    .runs
                    .range((lo, Bound::Unbounded))
                    .take(take)
                    .map(|(_, w)| Row::WorkflowRun(w.clone()))
                    .collect()
            }
            Kind::SubInvocation => {
                let lo =
                    after_two(after)?.map(|(a, b)| (InvocationId::new(a), InvocationId::new(b)));
                self.wf
                    .sub_invocations
                    .range((lo, Bound::Unbounded))
                    .take(take)
                    .map(|(w, s)| Row::SubInvocation(w.clone(), s.clone()))
                    .collect()
            }
            Kind::WorkflowData => {
                let lo = after_two(after)?.map(|(a, b)| (InvocationId::new(a), b));
                self.wf
                    .data
                    .range((lo, Bound::Unbounded))
                    .take(take)
                    .map(|((w, k), v)| Row::WorkflowData(w.clone(), k.clone(), v.clone()))
                    .collect()
            }
            Kind::AppInfo => self
                .apps
                .range((after_one(after)?.map(AppId::new), Bound::Unbounded))
                .take(take)
                .map(|(_, a)| Row::AppInfo(a.clone()))
                .collect(),
            Kind::RunnerContext => {
                let lo = after_one(after)?.map(RunnerId::new);
                self.run
                    .range((lo, Bound::Unbounded))
                    .take(take)
                    .map(|(_, (c, p))| Row::RunnerContext(c.clone(), p.clone()))
                    .collect()
            }
        };
        Ok(page_of(rows, limit, key_cursor))
    }

    fn keyed(&mut self, kind: Kind, range: &KeyRange) -> Result<Vec<Row>> {
        let bounds = range_bounds(range);
        Ok(match kind {
            Kind::History => {
                let per_invocation = &self.his.per_invocation;
                self.his.keys.with_range(
                    keyed_bound(bounds.0.as_ref()),
                    keyed_bound(bounds.1.as_ref()),
                    |keys| {
                        keys.filter_map(|key| Some((key, per_invocation.get(key)?)))
                            .flat_map(|(key, list)| {
                                list.iter().map(move |((tk, _), r)| {
                                    Row::History(
                                        key.clone(),
                                        StoredHistory {
                                            record: (**r).clone(),
                                            time_key: *tk,
                                        },
                                    )
                                })
                            })
                            .collect()
                    },
                )
            }
            Kind::Result | Kind::Exception => self.texts(kind, &bounds.0, &bounds.1, usize::MAX),
            other => return Err(not_keyed(other)),
        })
    }

    fn children(&mut self, range: &KeyRange) -> Result<Vec<(InvocationId, InvocationId)>> {
        // Parents in (after, upto], each with its children ascending.
        let (lo, hi) = range_bounds(range);
        let parents = self.sorted_parents.of_keys(self.kids.keys());
        Ok(within(parents, &lo, &hi)
            .iter()
            .filter_map(|p| Some((p, self.kids.get(p)?)))
            .flat_map(|(p, kids)| kids.iter().map(move |c| (p.clone(), c.clone())))
            .collect())
    }

    fn set_salvage(&mut self, _on: bool) {
        // Rows in memory were checked when written: none is undecodable.
    }

    fn take_skipped(&mut self) -> Vec<(Kind, taskstate_core::Error)> {
        Vec::new()
    }

    fn count(&mut self, kind: Kind) -> Result<u64> {
        let n = match kind {
            Kind::Invocation => self.rows.len(),
            Kind::History => self.his.by_seq.len(),
            Kind::Result => self.res.len(),
            Kind::Exception => self.exc.len(),
            Kind::WorkflowRun => self.wf.runs.len(),
            Kind::SubInvocation => self.wf.sub_invocations.len(),
            Kind::WorkflowData => self.wf.data.len(),
            Kind::AppInfo => self.apps.len(),
            Kind::RunnerContext => self.run.len(),
        };
        Ok(n as u64)
    }
}

/// Checks every row, then applies them all under the write locks of every
/// area (field order): one atomic step.
pub(crate) fn write_rows(b: &MemoryBackend, rows: &[Row]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut inv = b.invocations.write();
    let mut stored = b.rows.write_all();
    let mut kids = b.children.write_all();
    let mut his = b.history.write();
    let mut res = b.results.write_all();
    let mut exc = b.exceptions.write_all();
    let mut wf = b.workflows.write();
    let mut apps = b.apps.write();
    let mut run = b.runners.write();
    for r in rows {
        match r {
            Row::Invocation(p) => {
                let pair = std::sync::Arc::new((**p).clone());
                let old = stored.insert(&pair.0.invocation_id, pair.clone());
                inv.reindex(old.as_ref(), &pair, &mut kids);
            }
            Row::History(..) => {
                if let Some(h) = r.as_history_row() {
                    his.add(&h);
                }
            }
            Row::Result(k, v) => {
                res.insert(k, SharedText::from(v.as_str()));
            }
            Row::Exception(k, v) => {
                exc.insert(k, SharedText::from(v.as_str()));
            }
            Row::WorkflowRun(w) => wf.store_run(w),
            Row::SubInvocation(w, s) => {
                wf.add_sub(w, s);
            }
            Row::WorkflowData(w, k, v) => {
                wf.data.insert((w.clone(), k.clone()), v.clone());
            }
            Row::AppInfo(a) => {
                apps.insert(a.app_id.clone(), a.clone());
            }
            Row::RunnerContext(c, parent) => {
                let (row, _) = strip_parent(c);
                run.insert(c.runner_id.clone(), (row, parent.clone()));
            }
        }
    }
    Ok(())
}
