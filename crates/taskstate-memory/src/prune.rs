//! Retention's view of the memory engine: a [`PruneTx`] over every area
//! it touches, write-locked in the engine's fixed order (the order `purge`
//! uses) for the whole chunk, so no write interleaves with it. Dry runs
//! take the same locks: a chunk of hash lookups holds them for
//! microseconds.

use std::collections::HashSet;
use std::ops::Bound;

use parking_lot::RwLockWriteGuard;
use taskstate_core::SharedText;
use taskstate_core::engine::HistoryPos;
use taskstate_core::prune::{Latest, PruneCounts, PruneNode, PruneTx};
use taskstate_core::{InvocationId, Result, TimeKey};

use crate::history::History;
use crate::shards::ShardedWrite;
use crate::{Group, Invocations, MemoryBackend, Pair, Workflows, members, pair_members};

struct MemPrune<'a> {
    inv: RwLockWriteGuard<'a, Invocations>,
    rows: ShardedWrite<'a, Pair>,
    kids: ShardedWrite<'a, Group>,
    his: RwLockWriteGuard<'a, History>,
    res: ShardedWrite<'a, SharedText>,
    exc: ShardedWrite<'a, SharedText>,
    wf: RwLockWriteGuard<'a, Workflows>,
}

pub(crate) fn transaction(
    backend: &MemoryBackend,
    work: &mut dyn FnMut(&mut dyn PruneTx) -> Result<()>,
) -> Result<()> {
    let mut tx = MemPrune {
        inv: backend.invocations.write(),
        rows: backend.rows.write_all(),
        kids: backend.children.write_all(),
        his: backend.history.write(),
        res: backend.results.write_all(),
        exc: backend.exceptions.write_all(),
        wf: backend.workflows.write(),
    };
    // `remove` is the last step of every chunk and cannot fail, so there
    // is never a partial chunk to roll back.
    work(&mut tx)
}

impl PruneTx for MemPrune<'_> {
    fn scan(
        &mut self,
        cutoff: TimeKey,
        after: Option<HistoryPos>,
        limit: usize,
    ) -> Result<Vec<(HistoryPos, InvocationId)>> {
        let hi = (cutoff, i64::MAX);
        // A cursor at or past the cutoff reads nothing (AppendMap::range
        // takes an inverted range as empty).
        let lo = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(self
            .his
            .by_time
            .range(lo, Bound::Included(hi))
            .filter_map(|(pos, _)| Some((*pos, self.his.by_seq.get(pos.1)?.0.clone())))
            .take(limit)
            .collect())
    }

    fn nodes(&mut self, ids: &[InvocationId]) -> Result<Vec<PruneNode>> {
        let (inv, wf) = (&*self.inv, &*self.wf);
        Ok(ids
            .iter()
            .map(|id| {
                let mut links = Vec::new();
                let stored = self.rows.get(id);
                if let Some(pair) = stored {
                    let w = &pair.0.workflow;
                    links.extend(pair.0.parent_invocation_id.iter().cloned());
                    links.push(w.workflow_id.clone());
                    links.extend(w.parent_workflow_id.iter().cloned());
                }
                links.extend(
                    self.kids
                        .get(id)
                        .into_iter()
                        .flat_map(|g| g.iter().cloned()),
                );
                links.extend(members(&inv.by_workflow, id));
                links.extend(members(&inv.by_parent_workflow, id));
                if let Some(run) = wf.runs.get(id) {
                    links.extend(run.parent_workflow_id.iter().cloned());
                }
                links.extend(pair_members(&wf.by_parent, id));
                links.extend(pair_members(&wf.sub_invocations, id));
                links.extend(pair_members(&wf.sub_of, id));
                PruneNode {
                    id: id.clone(),
                    invocation: stored.is_some(),
                    latest: self.his.latest(id).map(|(time, status)| Latest {
                        time,
                        status: Some(status),
                    }),
                    links,
                }
            })
            .collect())
    }

    fn remove(&mut self, ids: &[InvocationId], dry_run: bool) -> Result<PruneCounts> {
        let mut c = PruneCounts::default();
        if dry_run {
            let set: HashSet<&InvocationId> = ids.iter().collect();
            for id in ids {
                c.invocations += u64::from(self.rows.contains(id));
                c.history += self
                    .his
                    .per_invocation
                    .get(id)
                    .map_or(0, |l| l.iter().count()) as u64;
                c.results += u64::from(self.res.contains(id));
                c.exceptions += u64::from(self.exc.contains(id));
                c.workflow_runs += u64::from(self.wf.runs.contains_key(id));
                c.sub_invocations += pair_members(&self.wf.sub_invocations, id).len() as u64;
                c.sub_invocations += pair_members(&self.wf.sub_of, id)
                    .iter()
                    .filter(|w| !set.contains(w))
                    .count() as u64;
                c.workflow_data += self.data_keys(id).len() as u64;
            }
            return Ok(c);
        }
        for id in ids {
            c.invocations += u64::from(self.inv.removed(self.rows.remove(id), &mut self.kids));
            c.history += self.his.remove_key(id);
            c.results += u64::from(self.res.remove(id).is_some());
            c.exceptions += u64::from(self.exc.remove(id).is_some());
            c.workflow_runs += u64::from(self.wf.remove_run(id));
            for sub in pair_members(&self.wf.sub_invocations, id) {
                self.wf.sub_invocations.remove(&(id.clone(), sub.clone()));
                self.wf.sub_of.remove(&(sub, id.clone()));
                c.sub_invocations += 1;
            }
            for w in pair_members(&self.wf.sub_of, id) {
                self.wf.sub_of.remove(&(id.clone(), w.clone()));
                self.wf.sub_invocations.remove(&(w, id.clone()));
                c.sub_invocations += 1;
            }
            for key in self.data_keys(id) {
                self.wf.data.remove(&(id.clone(), key));
                c.workflow_data += 1;
            }
        }
        Ok(c)
    }
}

impl MemPrune<'_> {
    /// The data keys of workflow `id`.
    fn data_keys(&self, id: &InvocationId) -> Vec<String> {
        self.wf
            .data
            .range((id.clone(), String::new())..)
            .take_while(|((w, _), _)| w == id)
            .map(|((_, k), _)| k.clone())
            .collect()
    }
}
