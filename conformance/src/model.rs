//! The reference model: the contract written as plain, obviously correct
//! code over `BTreeMap`s and a `Vec`, with no indexes and no cleverness.
//! The model-based test compares every engine output with this.

// Each method mirrors the `StateBackend` method of the same name.
#![allow(missing_docs)]

use std::collections::{BTreeMap, BTreeSet};

use taskstate_core::engine::{
    check_history, check_invocation_pair, check_runner_context, check_workflow,
};
use taskstate_core::{
    AppInfo, CallDTO, Entity, Error, InvocationDTO, InvocationHistory, InvocationId,
    InvocationStatus, RunnerContext, RunnerId, TaskId, TimeKey, TimeRange, WorkflowIdentity,
};

/// Everything a backend stores.
#[derive(Clone, Debug, Default)]
pub struct Model {
    invocations: BTreeMap<InvocationId, (InvocationDTO, CallDTO)>,
    /// Every history row (key, record, time key), in insertion order.
    history: Vec<(InvocationId, InvocationHistory, TimeKey)>,
    results: BTreeMap<InvocationId, String>,
    exceptions: BTreeMap<InvocationId, String>,
    runs: BTreeMap<InvocationId, WorkflowIdentity>,
    subs: BTreeSet<(InvocationId, InvocationId)>,
    data: BTreeMap<(InvocationId, String), String>,
    apps: BTreeMap<taskstate_core::AppId, AppInfo>,
    /// runner id → (context without parent, parent id).
    runners: BTreeMap<RunnerId, (RunnerContext, Option<RunnerId>)>,
}

type R<T> = Result<T, Error>;

impl Model {
    pub fn upsert_invocations(&mut self, entries: &[(InvocationDTO, CallDTO)]) -> R<()> {
        for (i, c) in entries {
            check_invocation_pair(i, c)?;
        }
        for (i, c) in entries {
            self.invocations
                .insert(i.invocation_id.clone(), (i.clone(), c.clone()));
        }
        Ok(())
    }

    pub fn get_invocation(&self, id: &InvocationId) -> R<(InvocationDTO, CallDTO)> {
        self.invocations
            .get(id)
            .cloned()
            .ok_or_else(|| Error::not_found(Entity::Invocation, id.as_str()))
    }

    pub fn get_child_invocations(&self, parent: &InvocationId) -> Vec<InvocationId> {
        self.invocations
            .values()
            .filter(|(i, _)| i.parent_invocation_id.as_ref() == Some(parent))
            .map(|(i, _)| i.invocation_id.clone())
            .collect()
    }

    pub fn get_invocation_ids_by_workflow(
        &self,
        wf: Option<&InvocationId>,
        ty: Option<&TaskId>,
    ) -> Vec<InvocationId> {
        self.invocations
            .values()
            .filter(|(i, _)| wf.is_none_or(|w| i.workflow.workflow_id == *w))
            .filter(|(i, _)| ty.is_none_or(|t| i.workflow.workflow_type == *t))
            .map(|(i, _)| i.invocation_id.clone())
            .collect()
    }

    /// Rows (key, record, stored time key or none): SPEC §3 keys; identity
    /// is (key, time key, status), the time key the record's instant unless
    /// given.
    pub fn add_history_rows(
        &mut self,
        rows: &[(InvocationId, InvocationHistory, Option<TimeKey>)],
    ) -> R<()> {
        for (k, r, t) in rows {
            if k.as_str().is_empty() {
                return Err(Error::invalid("history key must not be empty"));
            }
            if t.is_some_and(|t| !t.seconds().is_finite()) {
                return Err(Error::invalid("time key must be finite"));
            }
            check_history(r)?;
        }
        for (k, r, t) in rows {
            let t = t.unwrap_or_else(|| r.timestamp.key());
            let ident = (k.clone(), t, r.status_record.status);
            // Same identity: the old row goes, the new one is appended.
            self.history
                .retain(|(hk, h, ht)| (hk.clone(), *ht, h.status_record.status) != ident);
            self.history.push((k.clone(), r.clone(), t));
        }
        Ok(())
    }

    /// Records of the rows matching `keep`, ordered by (time key, insertion
    /// order).
    fn sorted_history(
        &self,
        keep: impl Fn(&InvocationId, TimeKey) -> bool,
    ) -> Vec<InvocationHistory> {
        let mut v: Vec<_> = self
            .history
            .iter()
            .filter(|(k, _, t)| keep(k, *t))
            .map(|(_, h, t)| (*t, h.clone()))
            .collect();
        // A stable sort keeps insertion order among equal keys.
        v.sort_by_key(|(t, _)| *t);
        v.into_iter().map(|(_, h)| h).collect()
    }

    pub fn get_history(&self, id: &InvocationId) -> Vec<InvocationHistory> {
        self.sorted_history(|k, _| k == id)
    }

    pub fn history_in_range(&self, range: &TimeRange) -> Vec<InvocationHistory> {
        self.sorted_history(|_, t| range.contains_key(t))
    }

    pub fn ids_in_range(&self, range: &TimeRange) -> Vec<InvocationId> {
        let ids: BTreeSet<InvocationId> = self
            .history
            .iter()
            .filter(|(_, _, t)| range.contains_key(*t))
            .map(|(k, _, _)| k.clone())
            .collect();
        ids.into_iter().collect()
    }

    pub fn set_result(&mut self, id: &InvocationId, v: &str) {
        self.results.insert(id.clone(), v.to_owned());
    }

    pub fn get_result(&self, id: &InvocationId) -> R<String> {
        self.results
            .get(id)
            .cloned()
            .ok_or_else(|| Error::not_found(Entity::Result, id.as_str()))
    }

    pub fn set_exception(&mut self, id: &InvocationId, v: &str) {
        self.exceptions.insert(id.clone(), v.to_owned());
    }

    pub fn get_exception(&self, id: &InvocationId) -> R<String> {
        self.exceptions
            .get(id)
            .cloned()
            .ok_or_else(|| Error::not_found(Entity::Exception, id.as_str()))
    }

    pub fn store_workflow_run(&mut self, wf: &WorkflowIdentity) -> R<()> {
        check_workflow(wf)?;
        self.runs.insert(wf.workflow_id.clone(), wf.clone());
        Ok(())
    }

    pub fn workflow_types(&self) -> Vec<TaskId> {
        let set: BTreeSet<TaskId> = self
            .runs
            .values()
            .map(|w| w.workflow_type.clone())
            .collect();
        set.into_iter().collect()
    }

    pub fn workflow_runs(&self, ty: Option<&TaskId>) -> Vec<WorkflowIdentity> {
        self.runs
            .values()
            .filter(|w| ty.is_none_or(|t| w.workflow_type == *t))
            .cloned()
            .collect()
    }

    pub fn store_sub(&mut self, wf: &InvocationId, sub: &InvocationId) {
        self.subs.insert((wf.clone(), sub.clone()));
    }

    pub fn subs_of(&self, wf: &InvocationId) -> Vec<InvocationId> {
        self.subs
            .iter()
            .filter(|(w, _)| w == wf)
            .map(|(_, s)| s.clone())
            .collect()
    }

    pub fn all_subs(&self) -> Vec<(InvocationId, InvocationId)> {
        self.subs.iter().cloned().collect()
    }

    pub fn set_data(&mut self, wf: &InvocationId, k: &str, v: &str) {
        self.data.insert((wf.clone(), k.to_owned()), v.to_owned());
    }

    pub fn get_data(&self, wf: &InvocationId, k: &str) -> Option<String> {
        self.data.get(&(wf.clone(), k.to_owned())).cloned()
    }

    pub fn all_data(&self) -> Vec<(InvocationId, String, String)> {
        self.data
            .iter()
            .map(|((w, k), v)| (w.clone(), k.clone(), v.clone()))
            .collect()
    }

    pub fn store_app(&mut self, a: &AppInfo) {
        self.apps.insert(a.app_id.clone(), a.clone());
    }

    pub fn get_app(&self, id: &str) -> R<AppInfo> {
        self.apps
            .get(id)
            .cloned()
            .ok_or_else(|| Error::not_found(Entity::AppInfo, id))
    }

    pub fn apps(&self) -> Vec<AppInfo> {
        self.apps.values().cloned().collect()
    }

    pub fn store_runner(&mut self, ctx: &RunnerContext) -> R<()> {
        check_runner_context(ctx)?;
        let mut c = Some(ctx);
        while let Some(cur) = c {
            let row = RunnerContext {
                parent: None,
                ..cur.clone()
            };
            self.runners.insert(
                cur.runner_id.clone(),
                (row, cur.parent_runner_id().cloned()),
            );
            c = cur.parent.as_deref();
        }
        Ok(())
    }

    /// Rebuilds a stored context by following parent ids (the API cannot
    /// create a missing parent or a cycle, so neither is handled here).
    pub fn get_runner(&self, id: &RunnerId) -> Option<RunnerContext> {
        let (row, parent) = self.runners.get(id)?;
        let mut ctx = row.clone();
        ctx.parent = parent
            .as_ref()
            .and_then(|p| self.get_runner(p))
            .map(Box::new);
        Some(ctx)
    }

    pub fn get_runners(&self, ids: &[RunnerId]) -> Vec<RunnerContext> {
        let set: BTreeSet<&RunnerId> = ids.iter().collect();
        set.into_iter()
            .filter_map(|id| self.get_runner(id))
            .collect()
    }

    pub fn match_runners(&self, partial: &str) -> Vec<RunnerContext> {
        self.runners
            .keys()
            // Written out here rather than calling core's
            // `runner_id_matches`, so a bug there cannot hide from this test.
            .filter(|id| {
                id.as_str()
                    .to_ascii_lowercase()
                    .contains(&partial.to_ascii_lowercase())
            })
            .filter_map(|id| self.get_runner(id))
            .collect()
    }

    pub fn result_ids(&self) -> Vec<InvocationId> {
        self.results.keys().cloned().collect()
    }

    pub fn exception_ids(&self) -> Vec<InvocationId> {
        self.exceptions.keys().cloned().collect()
    }

    pub fn purge(&mut self) {
        *self = Model::default();
    }

    // ---- retention (SPEC §10), written out plainly -------------------

    /// Every id linked to `id`, by scanning everything stored.
    fn linked(&self, id: &InvocationId) -> Vec<InvocationId> {
        let mut out = Vec::new();
        for (inv, _) in self.invocations.values() {
            let w = &inv.workflow;
            let own = [
                inv.parent_invocation_id.as_ref(),
                Some(&w.workflow_id),
                w.parent_workflow_id.as_ref(),
            ];
            if inv.invocation_id == *id {
                out.extend(own.iter().flatten().map(|x| (*x).clone()));
            }
            if own.iter().flatten().any(|x| *x == id) {
                out.push(inv.invocation_id.clone());
            }
        }
        for run in self.runs.values() {
            if run.workflow_id == *id {
                out.extend(run.parent_workflow_id.iter().cloned());
            }
            if run.parent_workflow_id.as_ref() == Some(id) {
                out.push(run.workflow_id.clone());
            }
        }
        for (w, sub) in &self.subs {
            if w == id {
                out.push(sub.clone());
            }
            if sub == id {
                out.push(w.clone());
            }
        }
        out.retain(|x| !x.as_str().is_empty());
        out
    }

    /// The ids connected to `seed`.
    fn component(&self, seed: &InvocationId) -> BTreeSet<InvocationId> {
        let mut seen = BTreeSet::from([seed.clone()]);
        let mut todo = vec![seed.clone()];
        while let Some(id) = todo.pop() {
            for other in self.linked(&id) {
                if seen.insert(other.clone()) {
                    todo.push(other);
                }
            }
        }
        seen
    }

    /// The latest row under key `id` (greatest time key, later insertion
    /// winning ties): its time key and status.
    fn latest(&self, id: &InvocationId) -> Option<(TimeKey, InvocationStatus)> {
        let mut best: Option<(TimeKey, InvocationStatus)> = None;
        for (k, h, t) in &self.history {
            if k == id && best.is_none_or(|(bt, _)| *t >= bt) {
                best = Some((*t, h.status_record.status));
            }
        }
        best
    }

    fn tree_expired(&self, tree: &BTreeSet<InvocationId>, cutoff: TimeKey) -> bool {
        let mut dated = false;
        for id in tree {
            let stored = self.invocations.contains_key(id);
            match self.latest(id) {
                None if stored => return false,
                None => {}
                Some((t, status)) => {
                    dated = true;
                    if t > cutoff || (stored && !status.is_final()) {
                        return false;
                    }
                }
            }
        }
        dated
    }

    fn holds_state(&self, tree: &BTreeSet<InvocationId>) -> bool {
        tree.iter()
            .any(|id| self.invocations.contains_key(id) || self.latest(id).is_some())
    }

    /// Removes (or counts) everything under `ids`, as
    /// `[trees, invocations, history, results, exceptions, runs, subs, data]`
    /// with `trees` 0.
    fn remove_all(&mut self, ids: &BTreeSet<InvocationId>, dry: bool) -> [u64; 8] {
        let n = |it: usize| it as u64;
        let c = [
            0,
            n(self.invocations.keys().filter(|k| ids.contains(*k)).count()),
            n(self
                .history
                .iter()
                .filter(|(k, _, _)| ids.contains(k))
                .count()),
            n(self.results.keys().filter(|k| ids.contains(*k)).count()),
            n(self.exceptions.keys().filter(|k| ids.contains(*k)).count()),
            n(self.runs.keys().filter(|k| ids.contains(*k)).count()),
            n(self
                .subs
                .iter()
                .filter(|(w, s)| ids.contains(w) || ids.contains(s))
                .count()),
            n(self.data.keys().filter(|(w, _)| ids.contains(w)).count()),
        ];
        if !dry {
            self.invocations.retain(|k, _| !ids.contains(k));
            self.history.retain(|(k, _, _)| !ids.contains(k));
            self.results.retain(|k, _| !ids.contains(k));
            self.exceptions.retain(|k, _| !ids.contains(k));
            self.runs.retain(|k, _| !ids.contains(k));
            self.subs
                .retain(|(w, s)| !ids.contains(w) && !ids.contains(s));
            self.data.retain(|(w, _), _| !ids.contains(w));
        }
        c
    }

    /// SPEC §10 in one pass: every expired tree (found from the history
    /// keys) removed whole.
    pub fn prune(&mut self, cutoff: TimeKey, dry: bool) -> [u64; 8] {
        let keys: BTreeSet<InvocationId> = self.history.iter().map(|(k, _, _)| k.clone()).collect();
        let mut done: BTreeSet<InvocationId> = BTreeSet::new();
        let mut doomed: BTreeSet<InvocationId> = BTreeSet::new();
        let mut trees = 0;
        for key in keys {
            if done.contains(&key) {
                continue;
            }
            let tree = self.component(&key);
            if self.tree_expired(&tree, cutoff) {
                trees += 1;
                doomed.extend(tree.iter().cloned());
            }
            done.extend(tree);
        }
        let mut c = self.remove_all(&doomed, dry);
        c[0] = trees;
        c
    }

    /// The whole trees of `ids`, whatever their statuses.
    pub fn delete_trees(&mut self, ids: &[InvocationId], dry: bool) -> R<[u64; 8]> {
        if ids.iter().any(|i| i.as_str().is_empty()) {
            return Err(Error::invalid("invocation id must not be empty"));
        }
        let mut all = BTreeSet::new();
        let mut trees = 0;
        for id in ids {
            if all.contains(id) {
                continue;
            }
            let tree = self.component(id);
            if self.holds_state(&tree) {
                trees += 1;
            }
            all.extend(tree);
        }
        let mut c = self.remove_all(&all, dry);
        c[0] = trees;
        Ok(c)
    }
}
