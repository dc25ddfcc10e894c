//! The bulk path of the memory engine: a snapshot is every area's read
//! lock, held until it is dropped (taken in field order, as `purge` takes
//! its write locks); a bulk write takes the write locks of the areas it
//! touches in the same order, so it is one atomic step.

use std::ops::Bound;

use parking_lot::RwLockReadGuard;
use taskstate_core::bulk::{
    cursor_after, cursor_arity, cursor_parts, key_cursor, not_keyed, page_of,
};
use taskstate_core::{
    AppId, AppInfo, Cursor, InvocationId, KeyRange, Kind, Page, Result, Row, RunnerId, Snapshot,
    StoredHistory,
};

use crate::{History, Invocations, MemoryBackend, RunnerRow, Workflows, strip_parent};
use std::collections::BTreeMap;

pub(crate) struct MemSnapshot<'a> {
    inv: RwLockReadGuard<'a, Invocations>,
    his: RwLockReadGuard<'a, History>,
    res: RwLockReadGuard<'a, BTreeMap<InvocationId, String>>,
    exc: RwLockReadGuard<'a, BTreeMap<InvocationId, String>>,
    wf: RwLockReadGuard<'a, Workflows>,
    apps: RwLockReadGuard<'a, BTreeMap<AppId, AppInfo>>,
    run: RwLockReadGuard<'a, BTreeMap<RunnerId, RunnerRow>>,
}

impl<'a> MemSnapshot<'a> {
    pub(crate) fn new(b: &'a MemoryBackend) -> Self {
        // Field order, as purge: no lock-order cycle with it.
        Self {
            inv: b.invocations.read(),
            his: b.history.read(),
            res: b.results.read(),
            exc: b.exceptions.read(),
            wf: b.workflows.read(),
            apps: b.apps.read(),
            run: b.runners.read(),
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
                self.inv
                    .rows
                    .range((lo, Bound::Unbounded))
                    .take(take)
                    .map(|(_, p)| Row::Invocation(Box::new((**p).clone())))
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
                        Bound::Excluded(seq)
                    }
                    None => Bound::Unbounded,
                };
                let mut out = Vec::new();
                for (seq, (key, tk)) in self.his.by_seq.range((lo, Bound::Unbounded)).take(take) {
                    if let Some(r) = self
                        .his
                        .per_invocation
                        .get(key)
                        .and_then(|l| l.get(&(*tk, *seq)))
                    {
                        out.push((
                            *seq,
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
                let map = if kind == Kind::Result {
                    &self.res
                } else {
                    &self.exc
                };
                let lo = id_bound(after_one(after)?);
                map.range((lo, Bound::Unbounded))
                    .take(take)
                    .map(|(k, v)| {
                        if kind == Kind::Result {
                            Row::Result(k.clone(), v.clone())
                        } else {
                            Row::Exception(k.clone(), v.clone())
                        }
                    })
                    .collect()
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
            Kind::History => self
                .his
                .per_invocation
                .range(bounds)
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
                .collect(),
            Kind::Result => self
                .res
                .range(bounds)
                .map(|(k, v)| Row::Result(k.clone(), v.clone()))
                .collect(),
            Kind::Exception => self
                .exc
                .range(bounds)
                .map(|(k, v)| Row::Exception(k.clone(), v.clone()))
                .collect(),
            other => return Err(not_keyed(other)),
        })
    }

    fn children(&mut self, range: &KeyRange) -> Result<Vec<(InvocationId, InvocationId)>> {
        // From the first link of the lower bound's parent (the empty id sorts
        // first), skipping that parent's own links: the bound is exclusive.
        let lo = range.after.clone().map_or(Bound::Unbounded, |a| {
            Bound::Included((a, InvocationId::new("")))
        });
        Ok(self
            .inv
            .children
            .range((lo, Bound::Unbounded))
            .skip_while(|(p, _)| range.after.as_ref() == Some(p))
            .take_while(|(p, _)| range.upto.as_ref().is_none_or(|u| p <= u))
            .cloned()
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
            Kind::Invocation => self.inv.rows.len(),
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
    let mut his = b.history.write();
    let mut res = b.results.write();
    let mut exc = b.exceptions.write();
    let mut wf = b.workflows.write();
    let mut apps = b.apps.write();
    let mut run = b.runners.write();
    for r in rows {
        match r {
            Row::Invocation(p) => inv.upsert(std::sync::Arc::new((**p).clone())),
            Row::History(..) => {
                if let Some(h) = r.as_history_row() {
                    his.add(&h);
                }
            }
            Row::Result(k, v) => {
                res.insert(k.clone(), v.clone());
            }
            Row::Exception(k, v) => {
                exc.insert(k.clone(), v.clone());
            }
            Row::WorkflowRun(w) => wf.store_run(w),
            Row::SubInvocation(w, s) => {
                wf.sub_invocations.insert((w.clone(), s.clone()));
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
