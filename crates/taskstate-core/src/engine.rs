//! For engine authors: the [`Engine`] trait an engine implements, and the
//! helpers engines share. Application code uses [`StateBackend`] instead.
//!
//! Every type implementing [`Engine`] is a [`StateBackend`] through the
//! blanket implementation below, which is the one place the contract's
//! input rules run: it checks every write's input (ids, keys, timestamps,
//! runner chains, page sizes), decodes cursors, answers an inverted range
//! with an empty page, and shapes pages. An engine therefore receives
//! only requests that already passed the rules and cannot skip one by
//! forgetting a call; the conformance suite checks what it does with them.
//!
//! ```
//! use taskstate_core::engine::Engine;
//! use taskstate_core::*;
//!
//! // Any engine is a StateBackend, and an id over the limit never reaches
//! // it: the rule ran first, the same for every engine.
//! fn refuses_long_ids<E: Engine>(engine: &E) -> bool {
//!     let long = InvocationId::new("x".repeat(MAX_ID_BYTES + 1));
//!     let err = engine.set_result(&long, "1").unwrap_err();
//!     err.kind() == ErrorKind::InvalidInput
//! }
//! ```

use crate::backend::{Cursor, HistoryRow, Page, StateBackend, StoredHistory};
use crate::bulk::{Row, Snapshot};
use crate::dto::{
    AppInfo, CallDTO, InvocationDTO, InvocationHistory, InvocationRecord, RunnerContext,
    SharedText, WorkflowIdentity,
};
use crate::error::Result;
use crate::ids::{AppId, InvocationId, RunnerId, TaskId};
use crate::monitor::{InvocationFilter, InvocationSummary, ListQuery, RunsQuery, StatusCounts};
use crate::prune::{PruneCounts, PruneOptions, PruneProgress, PruneTx, SpaceReport};
use crate::time::{TimeKey, TimeRange};

pub use crate::backend::fetch_limit;
pub use crate::pyjson;
pub use crate::rules::{
    MAX_ID_BYTES, check_app_info, check_history, check_history_row, check_id, check_invocation_id,
    check_invocation_pair, check_page_size, check_runner_context, check_sub_invocation,
    check_timestamp, check_workflow, check_workflow_data, resolve_runner_chain, runner_id_matches,
};

/// A history row's position in time order: its time key and its insertion
/// order among rows with that key (a sequence or rowid).
pub type HistoryPos = (TimeKey, i64);

/// A validated range request: time keys `lo ≤ hi` (inclusive), the position
/// to resume after, and how many rows to fetch — one more than the page
/// size, so the caller can tell whether another page follows.
#[derive(Clone, Debug)]
pub struct RangeQuery<P> {
    /// The lowest time key in range.
    pub lo: TimeKey,
    /// The highest time key in range (never below `lo`).
    pub hi: TimeKey,
    /// Resume strictly after this position (`None`: from the start).
    pub after: Option<P>,
    /// Rows to fetch, at least 2.
    pub fetch: usize,
}

impl<P> RangeQuery<P> {
    /// [`RangeQuery::fetch`] as an SQL `LIMIT`.
    #[must_use]
    pub fn fetch_i64(&self) -> i64 {
        i64::try_from(self.fetch).unwrap_or(i64::MAX)
    }
}

/// An id read back from a nullable text column: the reference writes an
/// absent id as NULL or as the empty string, and both read as absent.
#[must_use]
pub fn absent_if_empty<S: AsRef<str>>(text: Option<S>) -> Option<InvocationId> {
    text.filter(|s| !s.as_ref().is_empty())
        .map(InvocationId::new)
}

/// A page of `rows` fetched for a page of `page_size` (at most one more):
/// the extra row only tells that another page follows; the cursor is made
/// from the position of the last row kept.
pub fn page_from_rows<K, T>(
    rows: Vec<(K, T)>,
    page_size: usize,
    cursor: impl Fn(&K) -> Cursor,
) -> Page<T> {
    Page::from_rows(rows, page_size, cursor)
}

/// What a storage engine implements. Each method has the meaning of the
/// [`StateBackend`] method of the same name, except that its input has
/// already passed the contract's rules (see the module docs): ids and keys
/// are within [`MAX_ID_BYTES`] and non-empty where the contract says so,
/// timestamps are readable by the reference, runner chains have no repeated
/// id, and range requests arrive as [`RangeQuery`]s with decoded positions.
pub trait Engine: Send + Sync {
    /// A short name of the engine (`memory`, `sqlite`...), for messages.
    fn engine_name(&self) -> &'static str;

    /// Inserts or replaces each (checked) invocation with its call, atomically.
    fn upsert_invocations(&self, entries: &[(InvocationDTO, CallDTO)]) -> Result<()>;
    /// The invocation and its call, shared ([`InvocationRecord`]: one
    /// reference count); `NotFound` naming the id if absent.
    fn get_invocation(&self, id: &InvocationId) -> Result<InvocationRecord>;
    /// Ids of the invocations whose parent is `parent`, ascending.
    fn get_child_invocations(&self, parent: &InvocationId) -> Result<Vec<InvocationId>>;
    /// Ids of the invocations in a workflow, ascending (see
    /// [`StateBackend::get_invocation_ids_by_workflow`]).
    fn get_invocation_ids_by_workflow(
        &self,
        workflow_id: Option<&InvocationId>,
        workflow_type: Option<&TaskId>,
    ) -> Result<Vec<InvocationId>>;

    /// Adds (checked) history rows atomically; identity is
    /// [`HistoryRow::identity`].
    fn add_history_rows(&self, rows: &[HistoryRow<'_>]) -> Result<()>;
    /// The rows stored under key `id` by (time key, insertion order).
    fn get_history_rows(&self, id: &InvocationId) -> Result<Vec<StoredHistory>>;
    /// Up to `q.fetch` distinct keys with a history row in `q.lo..=q.hi`,
    /// ascending, after `q.after`.
    fn invocation_ids_in_timerange(
        &self,
        q: &RangeQuery<InvocationId>,
    ) -> Result<Vec<InvocationId>>;
    /// Up to `q.fetch` history rows in `q.lo..=q.hi` by position, after
    /// `q.after`, each with its position.
    fn history_in_timerange(
        &self,
        q: &RangeQuery<HistoryPos>,
    ) -> Result<Vec<(HistoryPos, InvocationHistory)>>;

    /// Sets (or replaces) an invocation's serialized result.
    fn set_result(&self, id: &InvocationId, result: &str) -> Result<()>;
    /// An invocation's result, shared ([`SharedText`]); `NotFound` if none
    /// was set.
    fn get_result(&self, id: &InvocationId) -> Result<SharedText>;
    /// Sets (or replaces) an invocation's serialized exception.
    fn set_exception(&self, id: &InvocationId, exception: &str) -> Result<()>;
    /// An invocation's exception, shared ([`SharedText`]); `NotFound` if
    /// none was set.
    fn get_exception(&self, id: &InvocationId) -> Result<SharedText>;

    /// Stores (upserts by workflow id) a workflow run.
    fn store_workflow_run(&self, workflow: &WorkflowIdentity) -> Result<()>;
    /// The distinct workflow types of stored runs, ascending by key.
    fn get_all_workflow_types(&self) -> Result<Vec<TaskId>>;
    /// The stored workflow runs (of one type, or all), ascending by
    /// workflow id, within the query's bounds.
    fn workflow_runs(&self, q: &RunsQuery<'_>) -> Result<Vec<WorkflowIdentity>>;
    /// Records a sub-invocation of a workflow (a set).
    fn store_workflow_sub_invocation(
        &self,
        workflow_id: &InvocationId,
        sub_invocation: &InvocationId,
    ) -> Result<()>;
    /// The sub-invocations of a workflow, ascending.
    fn get_workflow_sub_invocations(&self, workflow_id: &InvocationId)
    -> Result<Vec<InvocationId>>;
    /// Sets a workflow data value.
    fn set_workflow_data(&self, workflow_id: &InvocationId, key: &str, value: &str) -> Result<()>;
    /// A workflow data value; `None` when absent.
    fn get_workflow_data(&self, workflow_id: &InvocationId, key: &str) -> Result<Option<String>>;

    /// Stores (upserts by app id) an app's info.
    fn store_app_info(&self, info: &AppInfo) -> Result<()>;
    /// An app's info; `NotFound` if absent.
    fn get_app_info(&self, app_id: &AppId) -> Result<AppInfo>;
    /// Every stored app info, ascending by app id.
    fn discover_app_infos(&self) -> Result<Vec<AppInfo>>;

    /// Stores a (checked) context and every ancestor of its chain.
    fn store_runner_context(&self, ctx: &RunnerContext) -> Result<()>;
    /// A stored context with its whole parent chain; `None` if absent.
    fn get_runner_context(&self, runner_id: &RunnerId) -> Result<Option<RunnerContext>>;
    /// The stored contexts among `ids`, ascending by runner id, each once.
    fn get_runner_contexts(&self, ids: &[RunnerId]) -> Result<Vec<RunnerContext>>;
    /// Contexts whose runner id matches `partial` per
    /// [`runner_id_matches`], ascending by runner id.
    fn get_matching_runner_contexts(&self, partial: &str) -> Result<Vec<RunnerContext>>;

    /// A consistent read-only view of the whole store. Page sizes are
    /// checked before any call reaches it.
    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>>;
    /// Writes rows that passed [`StateBackend::check_row`], in one
    /// transaction.
    fn write_rows(&self, rows: &[Row]) -> Result<()>;
    /// This engine's own input rules beyond the contract's (e.g.
    /// PostgreSQL text cannot hold NUL): applied to bulk rows before
    /// [`Engine::write_rows`] and by importers before anything is written.
    fn engine_row_rules(&self, row: &Row) -> Result<()> {
        let _ = row;
        Ok(())
    }
    /// Deletes everything; the engine stays usable.
    fn purge(&self) -> Result<()>;

    /// Runs `work` in one transaction of this engine, handing it a
    /// [`PruneTx`] over a consistent view: with `write`, a write
    /// transaction that no concurrent write interleaves with (what `work`
    /// examined is still true when it deletes), committed when `work`
    /// returns `Ok` and rolled back otherwise; without, a read-only one
    /// (dry runs). `work` may run again if the engine retries the
    /// transaction. The rules of retention live in [`crate::prune`].
    fn prune_transaction(
        &self,
        write: bool,
        work: &mut dyn FnMut(&mut dyn PruneTx) -> Result<()>,
    ) -> Result<()>;

    /// See [`StateBackend::reclaim_space`]; nothing to do by default.
    fn reclaim_space(&self) -> Result<Option<SpaceReport>> {
        Ok(None)
    }

    /// Up to `q.fetch` listed invocations (see
    /// [`StateBackend::list_invocations`]) in [`ListQuery`]'s order.
    fn list_invocations(&self, q: &ListQuery) -> Result<Vec<InvocationSummary>>;
    /// See [`StateBackend::latest_status_counts`].
    fn latest_status_counts(&self) -> Result<StatusCounts>;
}

/// A snapshot whose page requests are checked before the engine's sees them.
struct CheckedSnapshot<'a>(Box<dyn Snapshot + 'a>);

impl Snapshot for CheckedSnapshot<'_> {
    fn page(
        &mut self,
        kind: crate::bulk::Kind,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<Row>> {
        check_page_size(limit)?;
        self.0.page(kind, after, limit)
    }
    fn keyed(
        &mut self,
        kind: crate::bulk::Kind,
        range: &crate::bulk::KeyRange,
    ) -> Result<Vec<Row>> {
        self.0.keyed(kind, range)
    }
    fn children(
        &mut self,
        range: &crate::bulk::KeyRange,
    ) -> Result<Vec<(InvocationId, InvocationId)>> {
        self.0.children(range)
    }
    fn count(&mut self, kind: crate::bulk::Kind) -> Result<u64> {
        self.0.count(kind)
    }
    fn set_salvage(&mut self, on: bool) {
        self.0.set_salvage(on);
    }
    fn take_skipped(&mut self) -> Vec<(crate::bulk::Kind, crate::error::Error)> {
        self.0.take_skipped()
    }
}

/// Validates a range request: page size, cursor, bounds. `None` when the
/// range is inverted (empty by definition).
fn range_query<P>(
    range: &TimeRange,
    after: Option<&Cursor>,
    page_size: usize,
    position: impl Fn(&Cursor) -> Result<P>,
) -> Result<Option<RangeQuery<P>>> {
    check_page_size(page_size)?;
    let after = after.map(position).transpose()?;
    let (lo, hi) = (range.start.key(), range.end.key());
    if lo > hi {
        return Ok(None);
    }
    Ok(Some(RangeQuery {
        lo,
        hi,
        after,
        fetch: page_size.saturating_add(1),
    }))
}

/// The contract's rules, run once for every engine.
impl<E: Engine> StateBackend for E {
    fn engine_name(&self) -> &'static str {
        Engine::engine_name(self)
    }

    fn upsert_invocations(&self, entries: &[(InvocationDTO, CallDTO)]) -> Result<()> {
        for (inv, call) in entries {
            check_invocation_pair(inv, call)?;
        }
        Engine::upsert_invocations(self, entries)
    }

    fn get_invocation(&self, id: &InvocationId) -> Result<InvocationRecord> {
        Engine::get_invocation(self, id)
    }

    fn get_child_invocations(&self, parent: &InvocationId) -> Result<Vec<InvocationId>> {
        Engine::get_child_invocations(self, parent)
    }

    fn get_invocation_ids_by_workflow(
        &self,
        workflow_id: Option<&InvocationId>,
        workflow_type: Option<&TaskId>,
    ) -> Result<Vec<InvocationId>> {
        Engine::get_invocation_ids_by_workflow(self, workflow_id, workflow_type)
    }

    fn add_history_rows(&self, rows: &[HistoryRow<'_>]) -> Result<()> {
        for r in rows {
            check_history_row(r)?;
        }
        Engine::add_history_rows(self, rows)
    }

    fn get_history_rows(&self, id: &InvocationId) -> Result<Vec<StoredHistory>> {
        Engine::get_history_rows(self, id)
    }

    fn invocation_ids_in_timerange(
        &self,
        range: &TimeRange,
        after: Option<&Cursor>,
        page_size: usize,
    ) -> Result<Page<InvocationId>> {
        let Some(q) = range_query(range, after, page_size, Cursor::id_position)? else {
            return Ok(Page::from_ids(Vec::new(), page_size));
        };
        let ids = Engine::invocation_ids_in_timerange(self, &q)?;
        Ok(Page::from_ids(ids, page_size))
    }

    fn history_in_timerange(
        &self,
        range: &TimeRange,
        after: Option<&Cursor>,
        page_size: usize,
    ) -> Result<Page<InvocationHistory>> {
        let Some(q) = range_query(range, after, page_size, Cursor::history_position)? else {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        };
        let rows = Engine::history_in_timerange(self, &q)?;
        Ok(Page::from_rows(rows, page_size, |(key, seq)| {
            Cursor::after_history(*key, *seq)
        }))
    }

    fn set_result(&self, id: &InvocationId, result: &str) -> Result<()> {
        check_invocation_id(id)?;
        Engine::set_result(self, id, result)
    }

    fn get_result(&self, id: &InvocationId) -> Result<SharedText> {
        Engine::get_result(self, id)
    }

    fn set_exception(&self, id: &InvocationId, exception: &str) -> Result<()> {
        check_invocation_id(id)?;
        Engine::set_exception(self, id, exception)
    }

    fn get_exception(&self, id: &InvocationId) -> Result<SharedText> {
        Engine::get_exception(self, id)
    }

    fn store_workflow_run(&self, workflow: &WorkflowIdentity) -> Result<()> {
        check_workflow(workflow)?;
        Engine::store_workflow_run(self, workflow)
    }

    fn get_all_workflow_types(&self) -> Result<Vec<TaskId>> {
        Engine::get_all_workflow_types(self)
    }

    fn get_all_workflow_runs(&self) -> Result<Vec<WorkflowIdentity>> {
        Engine::workflow_runs(
            self,
            &RunsQuery {
                workflow_type: None,
                after: None,
                fetch: None,
            },
        )
    }

    fn get_workflow_runs(&self, workflow_type: &TaskId) -> Result<Vec<WorkflowIdentity>> {
        Engine::workflow_runs(
            self,
            &RunsQuery {
                workflow_type: Some(workflow_type),
                after: None,
                fetch: None,
            },
        )
    }

    fn store_workflow_sub_invocation(
        &self,
        workflow_id: &InvocationId,
        sub_invocation: &InvocationId,
    ) -> Result<()> {
        check_sub_invocation(workflow_id, sub_invocation)?;
        Engine::store_workflow_sub_invocation(self, workflow_id, sub_invocation)
    }

    fn get_workflow_sub_invocations(
        &self,
        workflow_id: &InvocationId,
    ) -> Result<Vec<InvocationId>> {
        Engine::get_workflow_sub_invocations(self, workflow_id)
    }

    fn set_workflow_data(&self, workflow_id: &InvocationId, key: &str, value: &str) -> Result<()> {
        check_workflow_data(workflow_id, key)?;
        Engine::set_workflow_data(self, workflow_id, key, value)
    }

    fn get_workflow_data(&self, workflow_id: &InvocationId, key: &str) -> Result<Option<String>> {
        Engine::get_workflow_data(self, workflow_id, key)
    }

    fn store_app_info(&self, info: &AppInfo) -> Result<()> {
        check_app_info(info)?;
        Engine::store_app_info(self, info)
    }

    fn get_app_info(&self, app_id: &AppId) -> Result<AppInfo> {
        Engine::get_app_info(self, app_id)
    }

    fn discover_app_infos(&self) -> Result<Vec<AppInfo>> {
        Engine::discover_app_infos(self)
    }

    fn store_runner_context(&self, ctx: &RunnerContext) -> Result<()> {
        check_runner_context(ctx)?;
        Engine::store_runner_context(self, ctx)
    }

    fn get_runner_context(&self, runner_id: &RunnerId) -> Result<Option<RunnerContext>> {
        Engine::get_runner_context(self, runner_id)
    }

    fn get_runner_contexts(&self, ids: &[RunnerId]) -> Result<Vec<RunnerContext>> {
        Engine::get_runner_contexts(self, ids)
    }

    fn get_matching_runner_contexts(&self, partial: &str) -> Result<Vec<RunnerContext>> {
        Engine::get_matching_runner_contexts(self, partial)
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>> {
        Ok(Box::new(CheckedSnapshot(Engine::snapshot(self)?)))
    }

    fn write_rows(&self, rows: &[Row]) -> Result<()> {
        for row in rows {
            StateBackend::check_row(self, row)?;
        }
        Engine::write_rows(self, rows)
    }

    fn check_row(&self, row: &Row) -> Result<()> {
        row.check()?;
        self.engine_row_rules(row)
    }

    fn purge(&self) -> Result<()> {
        Engine::purge(self)
    }

    fn prune(
        &self,
        options: &PruneOptions,
        progress: &mut dyn FnMut(&PruneProgress),
    ) -> Result<PruneCounts> {
        crate::prune::run(self, options, progress)
    }

    fn delete_trees(&self, ids: &[InvocationId], dry_run: bool) -> Result<PruneCounts> {
        for id in ids {
            if id.as_str().is_empty() {
                return Err(crate::Error::invalid("invocation id must not be empty"));
            }
            check_invocation_id(id)?;
        }
        crate::prune::delete_trees(self, ids, dry_run)
    }

    fn reclaim_space(&self) -> Result<Option<SpaceReport>> {
        Engine::reclaim_space(self)
    }

    fn list_invocations(
        &self,
        filter: &InvocationFilter,
        after: Option<&Cursor>,
        page_size: usize,
    ) -> Result<Page<InvocationSummary>> {
        check_page_size(page_size)?;
        let after = after.map(Cursor::latest_position).transpose()?;
        if let Some(w) = &filter.workflow {
            check_invocation_id(w)?;
        }
        let (lo, hi) = match &filter.range {
            Some(r) => (Some(r.start.key()), Some(r.end.key())),
            None => (None, None),
        };
        if let (Some(lo), Some(hi)) = (lo, hi)
            && lo > hi
        {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        }
        let q = ListQuery {
            status: filter.status,
            task: filter.task.clone(),
            workflow: filter.workflow.clone(),
            lo,
            hi,
            after,
            fetch: page_size.saturating_add(1),
        };
        let rows = Engine::list_invocations(self, &q)?;
        Ok(Page::of(rows, page_size, |s| {
            Cursor::after_latest(s.time_key, &s.invocation_id)
        }))
    }

    fn latest_status_counts(&self) -> Result<StatusCounts> {
        Engine::latest_status_counts(self)
    }

    fn list_workflow_runs(
        &self,
        workflow_type: Option<&TaskId>,
        after: Option<&Cursor>,
        page_size: usize,
    ) -> Result<Page<WorkflowIdentity>> {
        check_page_size(page_size)?;
        let after = after.map(Cursor::id_position).transpose()?;
        let runs = Engine::workflow_runs(
            self,
            &RunsQuery {
                workflow_type,
                after: after.as_ref(),
                fetch: Some(page_size.saturating_add(1)),
            },
        )?;
        Ok(Page::of(runs, page_size, |w| {
            Cursor::after_id(&w.workflow_id)
        }))
    }
}
