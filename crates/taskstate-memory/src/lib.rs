//! The in-memory engine of **taskstate**: the whole [`StateBackend`](taskstate_core::StateBackend)
//! contract, kept in process memory (nothing survives the process).
//!
//! Use it in tests of code that depends on a state backend, and as the
//! fastest engine where durability is not needed.
//!
//! ```
//! use taskstate_core::{InvocationId, StateBackend};
//! use taskstate_memory::MemoryBackend;
//!
//! let backend = MemoryBackend::new();
//! let id = InvocationId::new("inv-1");
//! backend.set_result(&id, "42")?;
//! assert_eq!(backend.get_result(&id)?, "42");
//! # Ok::<(), taskstate_core::Error>(())
//! ```
//!
//! # Concurrency
//!
//! State is split into areas (the invocation indexes, the invocation rows,
//! the child lists, history, results, exceptions, workflows, apps, runner
//! contexts), each behind its own `parking_lot` read-write lock — rows,
//! child lists, results and exceptions behind sixteen, one per shard of
//! ids, so point reads from several threads rarely wait on each other.
//! Reads proceed in parallel, writes to different areas do not contend,
//! and every operation is atomic: it touches one area, or (an upsert)
//! holds the index lock while it write-locks every row shard its batch
//! falls in and, before releasing those, the child-list shards it
//! changes.
//! Point lookups go through hash maps (ids are cheap shared strings, so a
//! read hands out records without copying text); what the contract returns
//! in order is kept ordered (children and workflow members per key, the
//! history time index, the ids with history). Only whole-store operations
//! (purge, full listings — all invocations, or one workflow type's —,
//! substring search) do work proportional to the store. `purge` takes
//! every lock in one fixed order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;
use std::ops::Bound;
use std::sync::Arc;

use parking_lot::RwLock;
mod bulk;
mod history;
mod ordered;
mod prune;
mod shards;

use history::History;
use ordered::{Group, Keyed, keyed_bound};
use shards::{IdShards, TableMut};

use taskstate_core::SharedText;
use taskstate_core::engine::{
    Engine, HistoryPos, RangeQuery, resolve_runner_chain, runner_id_matches,
};
use taskstate_core::{
    AppId, AppInfo, CallDTO, Entity, Error, HistoryRow, InvocationDTO, InvocationHistory,
    InvocationId, InvocationRecord, Result, Row, RunnerContext, RunnerId, Snapshot, StoredHistory,
    TaskId, WorkflowIdentity,
};

type Pair = InvocationRecord;

/// A hash map with a fast hasher, seeded per process.
pub(crate) type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Ids grouped under a key (a parent, a workflow, a type), each group
/// ascending (as [`Keyed`], so most comparisons are integer ones).
type Groups<K> = Map<K, Group>;

/// Adds `id` to the group of `key` (a parent, a workflow).
fn group_add(groups: &mut impl TableMut<Group>, key: &InvocationId, id: &InvocationId) {
    // Look up before inserting: an entry API would clone (and drop) the
    // key on every call, two reference-count writes for nothing.
    let member = Keyed::new(id.clone());
    match groups.get_mut(key) {
        Some(group) => group.insert(member),
        None => {
            groups.insert(key, Group::one(member));
        }
    }
}

/// Removes `id` from the group of `key` (and the group once empty).
fn group_remove(groups: &mut impl TableMut<Group>, key: &InvocationId, id: &InvocationId) {
    if let Some(group) = groups.get_mut(key) {
        group.remove(&Keyed::new(id.clone()));
        if group.is_empty() {
            groups.remove(key);
        }
    }
}

/// The members of group `key`, ascending.
fn members<K: Hash + Eq>(g: &Groups<K>, key: &K) -> Vec<InvocationId> {
    g.get(key)
        .map(|group| group.iter().cloned().collect())
        .unwrap_or_default()
}

/// The members of an ordered pair set whose first element is `key`,
/// ascending (the workflows area, which the bulk path pages in order).
fn pair_members<K: Ord + Clone>(set: &BTreeSet<(K, InvocationId)>, key: &K) -> Vec<InvocationId> {
    set.range((key.clone(), InvocationId::new(""))..)
        .take_while(|(k, _)| k == key)
        .map(|(_, id)| id.clone())
        .collect()
}

/// The indexes over the stored invocations (the rows themselves live in
/// [`MemoryBackend::rows`] and the child lists in
/// [`MemoryBackend::children`], sharded, so point reads take no shared
/// lock). Every writer of invocations holds this lock first, and changes
/// a row's child-list entry while it holds the row's shard, so a row and
/// its index entries change together for anyone who reads both.
#[derive(Default)]
struct Invocations {
    by_workflow: Groups<InvocationId>,
    /// By parent workflow id: only retention follows this link.
    by_parent_workflow: Groups<InvocationId>,
}

impl Invocations {
    fn unindex(&mut self, pair: &Pair, kids: &mut impl TableMut<Group>) {
        let inv = &pair.0;
        let id = &inv.invocation_id;
        if let Some(p) = &inv.parent_invocation_id {
            group_remove(kids, p, id);
        }
        group_remove(&mut self.by_workflow, &inv.workflow.workflow_id, id);
        if let Some(p) = &inv.workflow.parent_workflow_id {
            group_remove(&mut self.by_parent_workflow, p, id);
        }
    }

    /// Indexes `pair`, just stored in place of `old` (unindexed first).
    fn reindex(&mut self, old: Option<&Pair>, pair: &Pair, kids: &mut impl TableMut<Group>) {
        if let Some(old) = old {
            self.unindex(old, kids);
        }
        let inv = &pair.0;
        let id = &inv.invocation_id;
        if let Some(p) = &inv.parent_invocation_id {
            group_add(kids, p, id);
        }
        group_add(&mut self.by_workflow, &inv.workflow.workflow_id, id);
        if let Some(p) = &inv.workflow.parent_workflow_id {
            group_add(&mut self.by_parent_workflow, p, id);
        }
    }

    /// Unindexes the row just removed, if there was one; whether there was.
    fn removed(&mut self, old: Option<Pair>, kids: &mut impl TableMut<Group>) -> bool {
        old.map(|old| self.unindex(&old, kids)).is_some()
    }
}

#[derive(Default)]
struct Workflows {
    runs: BTreeMap<InvocationId, WorkflowIdentity>,
    by_type: BTreeSet<(TaskId, InvocationId)>,
    /// (parent workflow id, workflow id) of runs with a parent.
    by_parent: BTreeSet<(InvocationId, InvocationId)>,
    /// (workflow id, sub-invocation id).
    sub_invocations: BTreeSet<(InvocationId, InvocationId)>,
    /// (sub-invocation id, workflow id): the links reversed.
    sub_of: BTreeSet<(InvocationId, InvocationId)>,
    data: BTreeMap<(InvocationId, String), String>,
}

impl Workflows {
    /// Stores a workflow run, replacing (and unindexing) the one it
    /// supersedes.
    fn store_run(&mut self, w: &WorkflowIdentity) {
        self.remove_run(&w.workflow_id);
        self.runs.insert(w.workflow_id.clone(), w.clone());
        self.by_type
            .insert((w.workflow_type.clone(), w.workflow_id.clone()));
        if let Some(p) = &w.parent_workflow_id {
            self.by_parent.insert((p.clone(), w.workflow_id.clone()));
        }
    }

    /// Removes a run and its index entries; whether it was stored.
    fn remove_run(&mut self, id: &InvocationId) -> bool {
        let Some(old) = self.runs.remove(id) else {
            return false;
        };
        if let Some(p) = old.parent_workflow_id {
            self.by_parent.remove(&(p, old.workflow_id.clone()));
        }
        self.by_type.remove(&(old.workflow_type, old.workflow_id));
        true
    }

    /// Records a sub-invocation link (a set).
    fn add_sub(&mut self, workflow_id: &InvocationId, sub: &InvocationId) {
        self.sub_invocations
            .insert((workflow_id.clone(), sub.clone()));
        self.sub_of.insert((sub.clone(), workflow_id.clone()));
    }
}

/// A stored runner context row: the context without its parent, and the
/// parent's id.
type RunnerRow = (RunnerContext, Option<RunnerId>);

/// The in-memory engine. Cheap to create; `Send + Sync`; share it with an
/// `Arc` between threads.
#[derive(Default)]
pub struct MemoryBackend {
    invocations: RwLock<Invocations>,
    rows: IdShards<Pair>,
    /// Each parent's children, ascending, in the parent's shard.
    children: IdShards<Group>,
    history: RwLock<History>,
    results: IdShards<SharedText>,
    exceptions: IdShards<SharedText>,
    workflows: RwLock<Workflows>,
    apps: RwLock<BTreeMap<AppId, AppInfo>>,
    runners: RwLock<BTreeMap<RunnerId, RunnerRow>>,
}

impl MemoryBackend {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

const ENGINE: &str = "memory";

fn strip_parent(ctx: &RunnerContext) -> RunnerRow {
    let row = RunnerContext {
        parent: None,
        ..ctx.clone()
    };
    (row, ctx.parent_runner_id().cloned())
}

impl MemoryBackend {
    fn resolve(
        &self,
        runners: &BTreeMap<RunnerId, RunnerRow>,
        row: &RunnerRow,
    ) -> Result<RunnerContext> {
        resolve_runner_chain("memory.runner_contexts", row.clone(), |id| {
            Ok(runners.get(id).cloned())
        })
    }
}

impl Engine for MemoryBackend {
    fn engine_name(&self) -> &'static str {
        ENGINE
    }

    fn upsert_invocations(&self, entries: &[(InvocationDTO, CallDTO)]) -> Result<()> {
        // Copied before any lock is taken; the batch's rows appear at
        // once, and with their index entries for anyone reading both.
        // One invocation (pynenc's usual call) allocates no list for it.
        let (one, many): ([Pair; 1], Vec<Pair>);
        let pairs: &[Pair] = if let [e] = entries {
            one = [Arc::new(e.clone())];
            &one
        } else {
            many = entries.iter().map(|p| Arc::new(p.clone())).collect();
            &many
        };
        let mut s = self.invocations.write();
        // The child lists change while the rows' shards are still locked
        // (rows, then children: the one order every writer uses).
        let mut kids = self.children.write_as_needed();
        self.rows.insert_all(
            pairs,
            |p| &p.0.invocation_id,
            |replaced| {
                for (pair, old) in pairs.iter().zip(replaced) {
                    s.reindex(old.as_ref(), pair, &mut kids);
                }
            },
        );
        Ok(())
    }

    fn get_invocation(&self, id: &InvocationId) -> Result<InvocationRecord> {
        self.rows
            .get_cloned(id)
            .ok_or_else(|| Error::not_found(Entity::Invocation, id.as_str()))
    }

    fn get_child_invocations(&self, parent: &InvocationId) -> Result<Vec<InvocationId>> {
        Ok(self.children.read_with(parent, |kids| {
            kids.map(|group| group.iter().cloned().collect())
                .unwrap_or_default()
        }))
    }

    fn get_invocation_ids_by_workflow(
        &self,
        workflow_id: Option<&InvocationId>,
        workflow_type: Option<&TaskId>,
    ) -> Result<Vec<InvocationId>> {
        let s = self.invocations.read();
        Ok(match (workflow_id, workflow_type) {
            (None, None) => {
                let mut all: Vec<InvocationId> = self.rows.read_all().keys().cloned().collect();
                all.sort_unstable();
                all
            }
            (Some(w), None) => members(&s.by_workflow, w),
            // Not indexed: pynenc itself never asks for a type's
            // invocations (its MemStateBackend scans for them too), and an
            // index the size of the type's population cost every upsert a
            // B-tree insert. A scan of the store, as for the full list.
            (None, Some(t)) => {
                let mut of_type: Vec<InvocationId> = self
                    .rows
                    .read_all()
                    .values()
                    .filter(|p| p.0.workflow.workflow_type == *t)
                    .map(|p| p.0.invocation_id.clone())
                    .collect();
                of_type.sort_unstable();
                of_type
            }
            (Some(w), Some(t)) => members(&s.by_workflow, w)
                .into_iter()
                .filter(|id| {
                    self.rows
                        .get_cloned(id)
                        .is_some_and(|p| p.0.workflow.workflow_type == *t)
                })
                .collect(),
        })
    }

    fn add_history_rows(&self, rows: &[HistoryRow<'_>]) -> Result<()> {
        let mut h = self.history.write();
        for r in rows {
            h.add(r);
        }
        Ok(())
    }

    fn get_history_rows(&self, id: &InvocationId) -> Result<Vec<StoredHistory>> {
        let h = self.history.read();
        Ok(h.per_invocation
            .get(id)
            .map(|l| {
                l.iter()
                    .map(|((time_key, _), r)| StoredHistory {
                        record: (**r).clone(),
                        time_key: *time_key,
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    fn invocation_ids_in_timerange(
        &self,
        q: &RangeQuery<InvocationId>,
    ) -> Result<Vec<InvocationId>> {
        let lower = keyed_bound(q.after.as_ref().map_or(Bound::Unbounded, Bound::Excluded));
        let (lo, hi) = ((q.lo, i64::MIN), (q.hi, i64::MAX));
        let h = self.history.read();
        let mut items = Vec::new();
        h.keys.with_range(lower, Bound::Unbounded, |ids| {
            for id in ids {
                let Some(list) = h.per_invocation.get(id) else {
                    continue;
                };
                if list.any_within(lo.0, hi.0) {
                    items.push(id.clone());
                    if items.len() >= q.fetch {
                        break;
                    }
                }
            }
        });
        Ok(items)
    }

    fn history_in_timerange(
        &self,
        q: &RangeQuery<HistoryPos>,
    ) -> Result<Vec<(HistoryPos, InvocationHistory)>> {
        let start = match q.after {
            Some(k) => Bound::Excluded(k),
            None => Bound::Included((q.lo, i64::MIN)),
        };
        let hi = (q.hi, i64::MAX);
        let h = self.history.read();
        let mut items = Vec::new();
        // A cursor past the range's end reads nothing (AppendMap::range
        // takes an inverted range as empty).
        for (k, r) in h.by_time.range(start, Bound::Included(hi)) {
            if k.0 < q.lo {
                continue;
            }
            items.push((*k, (**r).clone()));
            if items.len() >= q.fetch {
                break;
            }
        }
        Ok(items)
    }

    fn set_result(&self, id: &InvocationId, result: &str) -> Result<()> {
        // Allocated before the shard is locked; the replaced text is
        // freed after it is released.
        self.results.insert(id, SharedText::from(result));
        Ok(())
    }

    fn get_result(&self, id: &InvocationId) -> Result<SharedText> {
        self.results
            .get_cloned(id)
            .ok_or_else(|| Error::not_found(Entity::Result, id.as_str()))
    }

    fn set_exception(&self, id: &InvocationId, exception: &str) -> Result<()> {
        self.exceptions.insert(id, SharedText::from(exception));
        Ok(())
    }

    fn get_exception(&self, id: &InvocationId) -> Result<SharedText> {
        self.exceptions
            .get_cloned(id)
            .ok_or_else(|| Error::not_found(Entity::Exception, id.as_str()))
    }

    fn store_workflow_run(&self, workflow: &WorkflowIdentity) -> Result<()> {
        self.workflows.write().store_run(workflow);
        Ok(())
    }

    fn get_all_workflow_types(&self) -> Result<Vec<TaskId>> {
        let w = self.workflows.read();
        let mut types: Vec<TaskId> = Vec::new();
        for (t, _) in &w.by_type {
            if types.last() != Some(t) {
                types.push(t.clone());
            }
        }
        Ok(types)
    }

    fn workflow_runs(
        &self,
        q: &taskstate_core::monitor::RunsQuery<'_>,
    ) -> Result<Vec<WorkflowIdentity>> {
        let w = self.workflows.read();
        let take = q.fetch.unwrap_or(usize::MAX);
        let lower = q.after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(match q.workflow_type {
            None => w
                .runs
                .range::<InvocationId, _>((lower, Bound::Unbounded))
                .take(take)
                .map(|(_, r)| r.clone())
                .collect(),
            Some(t) => pair_members(&w.by_type, t)
                .iter()
                .filter(|id| q.after.is_none_or(|a| *id > a))
                .take(take)
                .filter_map(|id| w.runs.get(id).cloned())
                .collect(),
        })
    }

    fn store_workflow_sub_invocation(
        &self,
        workflow_id: &InvocationId,
        sub_invocation: &InvocationId,
    ) -> Result<()> {
        self.workflows.write().add_sub(workflow_id, sub_invocation);
        Ok(())
    }

    fn get_workflow_sub_invocations(
        &self,
        workflow_id: &InvocationId,
    ) -> Result<Vec<InvocationId>> {
        Ok(pair_members(
            &self.workflows.read().sub_invocations,
            workflow_id,
        ))
    }

    fn set_workflow_data(&self, workflow_id: &InvocationId, key: &str, value: &str) -> Result<()> {
        self.workflows
            .write()
            .data
            .insert((workflow_id.clone(), key.to_owned()), value.to_owned());
        Ok(())
    }

    fn get_workflow_data(&self, workflow_id: &InvocationId, key: &str) -> Result<Option<String>> {
        Ok(self
            .workflows
            .read()
            .data
            .get(&(workflow_id.clone(), key.to_owned()))
            .cloned())
    }

    fn store_app_info(&self, info: &AppInfo) -> Result<()> {
        self.apps.write().insert(info.app_id.clone(), info.clone());
        Ok(())
    }

    fn get_app_info(&self, app_id: &AppId) -> Result<AppInfo> {
        self.apps
            .read()
            .get(app_id)
            .cloned()
            .ok_or_else(|| Error::not_found(Entity::AppInfo, app_id.as_str()))
    }

    fn discover_app_infos(&self) -> Result<Vec<AppInfo>> {
        Ok(self.apps.read().values().cloned().collect())
    }

    fn store_runner_context(&self, ctx: &RunnerContext) -> Result<()> {
        let mut r = self.runners.write();
        for c in ctx.chain() {
            r.insert(c.runner_id.clone(), strip_parent(c));
        }
        Ok(())
    }

    fn get_runner_context(&self, runner_id: &RunnerId) -> Result<Option<RunnerContext>> {
        let r = self.runners.read();
        r.get(runner_id)
            .map(|row| self.resolve(&r, row))
            .transpose()
    }

    fn get_runner_contexts(&self, ids: &[RunnerId]) -> Result<Vec<RunnerContext>> {
        let wanted: BTreeSet<&RunnerId> = ids.iter().collect();
        let r = self.runners.read();
        wanted
            .into_iter()
            .filter_map(|id| r.get(id))
            .map(|row| self.resolve(&r, row))
            .collect()
    }

    fn get_matching_runner_contexts(&self, partial: &str) -> Result<Vec<RunnerContext>> {
        let r = self.runners.read();
        r.iter()
            .filter(|(id, _)| runner_id_matches(id.as_str(), partial))
            .map(|(_, row)| self.resolve(&r, row))
            .collect()
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>> {
        Ok(Box::new(bulk::MemSnapshot::new(self)))
    }

    fn write_rows(&self, rows: &[Row]) -> Result<()> {
        bulk::write_rows(self, rows)
    }

    fn prune_transaction(
        &self,
        _write: bool,
        work: &mut dyn FnMut(&mut dyn taskstate_core::prune::PruneTx) -> Result<()>,
    ) -> Result<()> {
        prune::transaction(self, work)
    }

    fn list_invocations(
        &self,
        q: &taskstate_core::monitor::ListQuery,
    ) -> Result<Vec<taskstate_core::InvocationSummary>> {
        // Lock order as in purge: rows, then history. A memory store
        // lives in one process and is scanned whole: no index to keep.
        let inv = self.rows.read_all();
        let his = self.history.read();
        let mut out: Vec<taskstate_core::InvocationSummary> = his
            .per_invocation
            .iter()
            .filter_map(|(id, rows)| {
                let ((time_key, _), rec) = rows.iter().last()?;
                let pair = inv.get(id)?;
                Some(taskstate_core::InvocationSummary {
                    invocation_id: id.clone(),
                    task_id: pair.1.call_id.task_id().clone(),
                    workflow_id: pair.0.workflow.workflow_id.clone(),
                    status: Some(rec.status_record.status),
                    time_key: *time_key,
                })
            })
            .filter(|s| q.selects(s))
            .collect();
        out.sort_unstable_by(taskstate_core::monitor::newest_first);
        out.truncate(q.fetch);
        Ok(out)
    }

    fn latest_status_counts(&self) -> Result<taskstate_core::StatusCounts> {
        let his = self.history.read();
        let mut counts = Map::<taskstate_core::InvocationStatus, u64>::default();
        for rows in his.per_invocation.values() {
            if let Some((_, rec)) = rows.iter().last() {
                *counts.entry(rec.status_record.status).or_default() += 1;
            }
        }
        Ok(taskstate_core::StatusCounts::from_pairs(
            counts.into_iter().map(|(s, n)| (s.as_str().to_owned(), n)),
        ))
    }

    fn purge(&self) -> Result<()> {
        // Fixed lock order (field order) so purge cannot deadlock with itself.
        let mut inv = self.invocations.write();
        let mut rows = self.rows.write_all();
        let mut kids = self.children.write_all();
        let mut his = self.history.write();
        let mut res = self.results.write_all();
        let mut exc = self.exceptions.write_all();
        let mut wf = self.workflows.write();
        let mut apps = self.apps.write();
        let mut run = self.runners.write();
        *inv = Invocations::default();
        rows.clear();
        kids.clear();
        // The sequence keeps counting so insertion order stays monotonic.
        let next_seq = his.next_seq;
        *his = History {
            next_seq,
            ..History::default()
        };
        res.clear();
        exc.clear();
        *wf = Workflows::default();
        apps.clear();
        run.clear();
        Ok(())
    }
}
