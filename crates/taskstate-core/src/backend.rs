//! The `StateBackend` trait: the operations every engine provides (SPEC §3)
//! with the semantics of SPEC §4.

use crate::bulk::{Kind, Row, Snapshot};
use crate::dto::{
    AppInfo, CallDTO, InvocationDTO, InvocationHistory, InvocationRecord, InvocationStatusRecord,
    RunnerContext, SharedText, WorkflowIdentity,
};
use crate::error::{Error, Result};
use crate::ids::{AppId, InvocationId, RunnerId, TaskId};
use crate::monitor::{InvocationFilter, InvocationSummary, StatusCounts};
use crate::prune::{PruneCounts, PruneOptions, PruneProgress, SpaceReport};
use crate::status::InvocationStatus;
use crate::time::{TimeKey, TimeRange, Timestamp};

/// An opaque position in a paged query. Only the engine that produced it can
/// interpret it; pass it back unchanged to get the next page.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cursor(String);

impl Cursor {
    /// Wraps an engine-defined token. Engines use this; callers never need to.
    #[must_use]
    pub fn from_token(token: impl Into<String>) -> Self {
        Cursor(token.into())
    }

    /// The engine-defined token.
    #[must_use]
    pub fn token(&self) -> &str {
        &self.0
    }

    /// A cursor after the history row at `key` with tie-breaker `tiebreak`
    /// (insertion order within equal keys) — the position time-ordered
    /// pages resume after in every engine of this workspace.
    #[must_use]
    pub fn after_history(key: TimeKey, tiebreak: i64) -> Self {
        Cursor(format!("h:{:016x}:{tiebreak}", key.seconds().to_bits()))
    }

    /// The position of a cursor made by [`Cursor::after_history`];
    /// `InvalidInput` for any other token.
    pub fn history_position(&self) -> Result<(TimeKey, i64)> {
        let bad = || Error::invalid(format!("cursor {:?} is not a history cursor", self.0));
        let rest = self.0.strip_prefix("h:").ok_or_else(bad)?;
        let (bits, tiebreak) = rest.split_once(':').ok_or_else(bad)?;
        let bits = u64::from_str_radix(bits, 16).map_err(|_| bad())?;
        let tiebreak = tiebreak.parse::<i64>().map_err(|_| bad())?;
        Ok((TimeKey::from_seconds(f64::from_bits(bits)), tiebreak))
    }

    /// A cursor after invocation id `id` (pages ordered by id).
    #[must_use]
    pub fn after_id(id: &InvocationId) -> Self {
        Cursor(format!("i:{id}"))
    }

    /// The id of a cursor made by [`Cursor::after_id`]; `InvalidInput` for
    /// any other token.
    pub fn id_position(&self) -> Result<InvocationId> {
        self.0
            .strip_prefix("i:")
            .map(InvocationId::new)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "cursor {:?} is not an invocation-id cursor",
                    self.0
                ))
            })
    }
}

/// A history record and the key it is stored under (SPEC §3).
///
/// The key is normally the record's own invocation id
/// ([`HistoryRow::own`]); the reference's batch write stores one record
/// under every id of a batch, so a row's key may differ
/// ([`HistoryRow::under`]). Identity (SPEC §4 rule 3) is (key, time key,
/// status).
///
/// The row's *time key* orders and identifies it: normally its record's
/// instant ([`Timestamp::key`]). pynenc 0.1.0 stores `_timestamp.timestamp()`,
/// which for a naive `_timestamp` is the writer's local time, not the UTC
/// instant the JSON reads as; such a row keeps the key it was stored with
/// ([`HistoryRow::at_time_key`]), so its order survives export and copy.
///
/// ```
/// use taskstate_core::*;
/// # fn demo(b: &dyn StateBackend, record: &InvocationHistory) -> Result<()> {
/// let (a, c) = (InvocationId::new("a"), InvocationId::new("c"));
/// // One record under two keys, as pynenc's `_add_histories([a, c], record)`.
/// b.add_history_rows(&[HistoryRow::under(&a, record), HistoryRow::under(&c, record)])?;
/// assert_eq!(b.get_history(&c)?, vec![record.clone()]);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryRow<'a> {
    /// The invocation id the row is stored under.
    pub key: &'a InvocationId,
    /// The record, stored as given.
    pub record: &'a InvocationHistory,
    /// The stored time key when it is not the record's instant.
    pub time_key: Option<TimeKey>,
}

impl<'a> HistoryRow<'a> {
    /// The record under its own invocation id.
    #[must_use]
    pub fn own(record: &'a InvocationHistory) -> Self {
        Self {
            key: &record.invocation_id,
            record,
            time_key: None,
        }
    }

    /// The record under `key`.
    #[must_use]
    pub fn under(key: &'a InvocationId, record: &'a InvocationHistory) -> Self {
        Self {
            key,
            record,
            time_key: None,
        }
    }

    /// The same row stored at time key `key` instead of its record's
    /// instant (see the type's docs); `None` keeps the record's instant.
    #[must_use]
    pub fn at_time_key(self, key: Option<TimeKey>) -> Self {
        Self {
            time_key: key,
            ..self
        }
    }

    /// The time key the row is stored (ordered, identified) at.
    #[must_use]
    pub fn time_key(&self) -> TimeKey {
        self.time_key.unwrap_or_else(|| self.record.timestamp.key())
    }

    /// The row's identity (SPEC §4 rule 3): key, time key and status.
    #[must_use]
    pub fn identity(&self) -> (&'a InvocationId, TimeKey, InvocationStatus) {
        (self.key, self.time_key(), self.record.status_record.status)
    }
}

/// A stored history row as read back: the record and its time key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredHistory {
    /// The record, as stored.
    pub record: InvocationHistory,
    /// The time key the row is ordered by (see [`HistoryRow`]); equals
    /// `record.timestamp.key()` unless it was stored otherwise.
    pub time_key: TimeKey,
}

impl StoredHistory {
    /// The time key when it differs from the record's instant, else `None`
    /// (what an export writes, and [`HistoryRow::at_time_key`] takes).
    #[must_use]
    pub fn explicit_time_key(&self) -> Option<TimeKey> {
        (self.time_key != self.record.timestamp.key()).then_some(self.time_key)
    }
}

/// How many rows to fetch for a page of `page_size`: one more, to know
/// whether another page follows.
#[must_use]
pub fn fetch_limit(page_size: usize) -> i64 {
    i64::try_from(page_size)
        .unwrap_or(i64::MAX - 1)
        .saturating_add(1)
}

/// One page of a keyset-paged query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    /// The items of this page, at most the page size, in query order.
    pub items: Vec<T>,
    /// Where the next page starts: `Some` exactly when at least one more item
    /// follows this page.
    pub next: Option<Cursor>,
}

impl Page<InvocationId> {
    /// A page of ids ordered by id from up to `page_size + 1` fetched ids;
    /// the cursor is the last id kept.
    #[must_use]
    pub(crate) fn from_ids(ids: Vec<InvocationId>, page_size: usize) -> Self {
        let rows = ids.into_iter().map(|id| (id.clone(), id)).collect();
        Page::from_rows(rows, page_size, Cursor::after_id)
    }
}

impl<T> Page<T> {
    /// A page from up to `page_size + 1` fetched items: the extra item only
    /// tells that another page follows, and the cursor is made from the
    /// last item kept.
    pub(crate) fn of(mut items: Vec<T>, page_size: usize, cursor: impl Fn(&T) -> Cursor) -> Self {
        let next = if items.len() > page_size {
            items.truncate(page_size);
            items.last().map(cursor)
        } else {
            None
        };
        Page { items, next }
    }

    /// [`Page::of`] over `(position, item)` rows, the cursor made from the
    /// position of the last row kept.
    pub(crate) fn from_rows<K>(
        rows: Vec<(K, T)>,
        page_size: usize,
        cursor: impl Fn(&K) -> Cursor,
    ) -> Self {
        let page = Page::of(rows, page_size, |(k, _)| cursor(k));
        Page {
            items: page.items.into_iter().map(|(_, t)| t).collect(),
            next: page.next,
        }
    }
}

/// The default page size of range queries (the reference's `batch_size`).
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// Fetches the page after a cursor (the first page for `None`).
type FetchPage<'a, T> = Box<dyn FnMut(Option<&Cursor>) -> Result<Page<T>> + 'a>;

/// Iterator over all pages of a paged query; yields each non-empty page.
pub struct Pages<'a, T> {
    fetch: FetchPage<'a, T>,
    cursor: Option<Cursor>,
    done: bool,
}

impl<'a, T> Pages<'a, T> {
    /// Pages of `fetch(cursor)`, starting with no cursor.
    pub fn new(fetch: impl FnMut(Option<&Cursor>) -> Result<Page<T>> + 'a) -> Self {
        Self {
            fetch: Box::new(fetch),
            cursor: None,
            done: false,
        }
    }
}

impl<T> Iterator for Pages<'_, T> {
    type Item = Result<Vec<T>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match (self.fetch)(self.cursor.as_ref()) {
            Ok(page) => {
                self.done = page.next.is_none();
                self.cursor = page.next;
                if page.items.is_empty() {
                    self.done = true;
                    None
                } else {
                    Some(Ok(page.items))
                }
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// One workflow data entry: a value stored under a key of a workflow.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WorkflowData {
    /// The workflow (its invocation id).
    pub workflow_id: InvocationId,
    /// The key within the workflow.
    pub key: String,
    /// The stored value (serialized by the caller).
    pub value: String,
}

/// The durable record of a task system: invocations, status history,
/// results, exceptions, workflows, apps and runner contexts.
///
/// Every method takes `&self`; engines are `Send + Sync` and safe to share
/// between threads. Batch methods apply all or nothing. Lists without a
/// natural order are sorted ascending by id; history is ordered by
/// (timestamp instant, insertion order). See SPEC §4 for every rule; the
/// `taskstate-conformance` crate checks them.
///
/// ```
/// use taskstate_core::*;
/// fn count_children(backend: &dyn StateBackend, id: &InvocationId) -> Result<usize> {
///     Ok(backend.get_child_invocations(id)?.len())
/// }
/// ```
pub trait StateBackend: Send + Sync {
    /// A short name of the engine (`memory`, `sqlite`...), for messages.
    fn engine_name(&self) -> &'static str;

    // ---- invocations -------------------------------------------------

    /// Inserts or replaces each invocation with its call, atomically.
    ///
    /// Each pair must pass [`check_invocation_pair`](crate::engine::check_invocation_pair) (the invocation's call id
    /// equals the call's; no id is empty), else `InvalidInput` and nothing is
    /// stored. Within a batch a later entry for the same id wins.
    fn upsert_invocations(&self, entries: &[(InvocationDTO, CallDTO)]) -> Result<()>;

    /// The invocation and its call, shared ([`InvocationRecord`]: one
    /// reference count); `NotFound` naming the id if absent.
    fn get_invocation(&self, id: &InvocationId) -> Result<InvocationRecord>;

    /// Ids of the invocations whose parent is `parent`, ascending.
    fn get_child_invocations(&self, parent: &InvocationId) -> Result<Vec<InvocationId>>;

    /// Ids of the invocations in a workflow (by workflow id and/or workflow
    /// type key; both: AND; neither: every invocation), ascending.
    fn get_invocation_ids_by_workflow(
        &self,
        workflow_id: Option<&InvocationId>,
        workflow_type: Option<&TaskId>,
    ) -> Result<Vec<InvocationId>>;

    // ---- status history ----------------------------------------------

    /// Adds history rows atomically, each record under its row's key (SPEC
    /// §3: normally the record's own invocation id, but a caller may store
    /// one record under several keys, as the reference's
    /// `_add_histories(ids, record)` does). A row with the identity of a
    /// stored one (same key, instant and status) replaces it and takes the
    /// latest insertion position. Each row must pass [`check_history_row`](crate::engine::check_history_row).
    fn add_history_rows(&self, rows: &[HistoryRow<'_>]) -> Result<()>;

    /// Adds history records atomically, each under its own invocation id
    /// (the usual case of [`StateBackend::add_history_rows`]).
    fn add_histories(&self, records: &[InvocationHistory]) -> Result<()> {
        if let [one] = records {
            // The common call (pynenc adds one record at a time): no vector.
            return self.add_history_rows(&[HistoryRow::own(one)]);
        }
        let rows: Vec<HistoryRow<'_>> = records.iter().map(HistoryRow::own).collect();
        self.add_history_rows(&rows)
    }

    /// The history rows stored under key `id` with their time keys, by
    /// (time key, insertion order); empty if none. Each record reads back as
    /// stored: its own `invocation_id` may differ from `id` (SPEC §3).
    fn get_history_rows(&self, id: &InvocationId) -> Result<Vec<StoredHistory>>;

    /// The records of [`StateBackend::get_history_rows`], in its order.
    fn get_history(&self, id: &InvocationId) -> Result<Vec<InvocationHistory>> {
        Ok(self
            .get_history_rows(id)?
            .into_iter()
            .map(|r| r.record)
            .collect())
    }

    /// One page of the distinct keys (invocation ids) with a history row in
    /// `range` (inclusive), ascending, after `after`.
    fn invocation_ids_in_timerange(
        &self,
        range: &TimeRange,
        after: Option<&Cursor>,
        page_size: usize,
    ) -> Result<Page<InvocationId>>;

    /// One page of the history rows in `range` (inclusive), by (timestamp,
    /// insertion order), after `after`: the record of every row, so a record
    /// stored under several keys appears once per key.
    fn history_in_timerange(
        &self,
        range: &TimeRange,
        after: Option<&Cursor>,
        page_size: usize,
    ) -> Result<Page<InvocationHistory>>;

    // ---- results and exceptions --------------------------------------

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

    // ---- workflows ---------------------------------------------------

    /// Stores (upserts by workflow id) a workflow run.
    fn store_workflow_run(&self, workflow: &WorkflowIdentity) -> Result<()>;
    /// The distinct workflow types of stored runs, ascending by key.
    fn get_all_workflow_types(&self) -> Result<Vec<TaskId>>;
    /// All stored workflow runs, ascending by workflow id.
    fn get_all_workflow_runs(&self) -> Result<Vec<WorkflowIdentity>>;
    /// The runs of one workflow type, ascending by workflow id.
    fn get_workflow_runs(&self, workflow_type: &TaskId) -> Result<Vec<WorkflowIdentity>>;
    /// Records that `sub_invocation` ran inside workflow `workflow_id` (a set).
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
    /// A workflow data value; `None` when the key or workflow is absent.
    fn get_workflow_data(&self, workflow_id: &InvocationId, key: &str) -> Result<Option<String>>;

    // ---- applications ------------------------------------------------

    /// Stores (upserts by app id) an app's info.
    fn store_app_info(&self, info: &AppInfo) -> Result<()>;
    /// An app's info; `NotFound` if absent.
    fn get_app_info(&self, app_id: &AppId) -> Result<AppInfo>;
    /// Every stored app info, ascending by app id.
    fn discover_app_infos(&self) -> Result<Vec<AppInfo>>;

    // ---- runner contexts ---------------------------------------------

    /// Stores (upserts by runner id) a context and every ancestor in its
    /// parent chain, each linked to its parent by id.
    fn store_runner_context(&self, ctx: &RunnerContext) -> Result<()>;
    /// A stored context with its whole parent chain; `None` if absent; a
    /// missing (or cyclic) parent is `Corrupt`, naming both ids.
    fn get_runner_context(&self, runner_id: &RunnerId) -> Result<Option<RunnerContext>>;
    /// The stored contexts among `ids` (unknown ids skipped), ascending by
    /// runner id, each id once.
    fn get_runner_contexts(&self, ids: &[RunnerId]) -> Result<Vec<RunnerContext>>;
    /// Contexts whose runner id contains `partial` (literal, ASCII
    /// case-insensitive), ascending by runner id.
    fn get_matching_runner_contexts(&self, partial: &str) -> Result<Vec<RunnerContext>>;

    // ---- the bulk path (export, import, copy, inspect) ---------------

    /// A consistent, read-only view of the whole store (see [`Snapshot`]):
    /// every row of every kind, page by page, as of this call.
    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>>;

    /// Writes `rows` of any kinds in one transaction: all or nothing. Each
    /// row is checked and stored as its point operation would store it
    /// (upserts replace, history rows keep their key and time key and
    /// replace by identity, sub-invocation links are kept once); within a
    /// call a later row wins. A runner-context row is stored as given, its
    /// parent named by id (not followed or checked).
    fn write_rows(&self, rows: &[Row]) -> Result<()>;

    /// The input rules this engine applies to `row` when writing it: the
    /// contract's ([`Row::check`]) plus the engine's own (PostgreSQL text
    /// cannot hold NUL characters). Lets a caller refuse a whole batch of
    /// input before writing any of it.
    fn check_row(&self, row: &Row) -> Result<()> {
        row.check()
    }

    // ---- whole-store listing (provided, from a snapshot) -------------

    /// Ids with a stored result, ascending.
    fn result_ids(&self) -> Result<Vec<InvocationId>> {
        all_rows(self, Kind::Result, |r| match r {
            Row::Result(id, _) => Some(id),
            _ => None,
        })
    }
    /// Ids with a stored exception, ascending.
    fn exception_ids(&self) -> Result<Vec<InvocationId>> {
        all_rows(self, Kind::Exception, |r| match r {
            Row::Exception(id, _) => Some(id),
            _ => None,
        })
    }
    /// Every (workflow id, sub-invocation id) link, ascending.
    fn all_workflow_sub_invocations(&self) -> Result<Vec<(InvocationId, InvocationId)>> {
        all_rows(self, Kind::SubInvocation, |r| match r {
            Row::SubInvocation(w, s) => Some((w, s)),
            _ => None,
        })
    }
    /// Every workflow data entry, ascending by (workflow id, key).
    fn all_workflow_data(&self) -> Result<Vec<WorkflowData>> {
        all_rows(self, Kind::WorkflowData, |r| match r {
            Row::WorkflowData(workflow_id, key, value) => Some(WorkflowData {
                workflow_id,
                key,
                value,
            }),
            _ => None,
        })
    }

    // ---- maintenance -------------------------------------------------

    /// Deletes everything this backend stores; it stays usable.
    fn purge(&self) -> Result<()>;

    /// Deletes finished state older than [`PruneOptions::before`] (SPEC
    /// §10): whole workflow trees whose invocations all ended by then, and
    /// orphan rows as old, in chunks of one short transaction each;
    /// `progress` hears after every chunk. Returns what was deleted (with
    /// [`PruneOptions::dry_run`], what would be). See [`crate::prune`].
    fn prune(
        &self,
        options: &PruneOptions,
        progress: &mut dyn FnMut(&PruneProgress),
    ) -> Result<PruneCounts>;

    /// Deletes the whole trees holding `ids`, whatever their statuses, in
    /// one transaction (nothing left behind links into them); with
    /// `dry_run`, counts instead.
    fn delete_trees(&self, ids: &[InvocationId], dry_run: bool) -> Result<PruneCounts>;

    /// Gives the space deleted rows held back to the file system where the
    /// engine keeps it (SQLite: `VACUUM`, which rewrites the file and
    /// blocks writers while it runs). `None` where there is nothing to do
    /// (memory; PostgreSQL, whose autovacuum reuses the space).
    fn reclaim_space(&self) -> Result<Option<SpaceReport>>;

    // ---- watching (see [`crate::monitor`]) --------------------------------

    /// One page of the invocations that have history under their own id,
    /// each with its latest status, newest latest row first (ties: id
    /// descending), filtered by `filter`, after `after`. An invocation
    /// without history is not listed; a history key without an
    /// invocation is not either (both are counted elsewhere).
    fn list_invocations(
        &self,
        filter: &InvocationFilter,
        after: Option<&Cursor>,
        page_size: usize,
    ) -> Result<Page<InvocationSummary>>;

    /// How many history keys have each latest status.
    fn latest_status_counts(&self) -> Result<StatusCounts>;

    /// One page of workflow runs (of one type, or all), ascending by
    /// workflow id, after `after` — what [`StateBackend::get_workflow_runs`]
    /// returns, a page at a time.
    fn list_workflow_runs(
        &self,
        workflow_type: Option<&TaskId>,
        after: Option<&Cursor>,
        page_size: usize,
    ) -> Result<Page<WorkflowIdentity>>;

    // ---- provided helpers --------------------------------------------

    /// All pages of [`StateBackend::history_in_timerange`].
    ///
    /// ```
    /// # use taskstate_core::*;
    /// fn count(b: &dyn StateBackend) -> Result<usize> {
    ///     let mut n = 0;
    ///     for page in b.iter_history_in_timerange(TimeRange::all(), DEFAULT_PAGE_SIZE) {
    ///         n += page?.len();
    ///     }
    ///     Ok(n)
    /// }
    /// ```
    fn iter_history_in_timerange(
        &self,
        range: TimeRange,
        page_size: usize,
    ) -> Pages<'_, InvocationHistory> {
        Pages::new(move |c| self.history_in_timerange(&range, c, page_size))
    }

    /// All pages of [`StateBackend::invocation_ids_in_timerange`].
    fn iter_invocations_in_timerange(
        &self,
        range: TimeRange,
        page_size: usize,
    ) -> Pages<'_, InvocationId> {
        Pages::new(move |c| self.invocation_ids_in_timerange(&range, c, page_size))
    }

    /// Records one status for many invocations in one batch, as the
    /// reference's `add_histories` does: each record gets its own invocation
    /// id, the runner context's id, and `registered_by` only when the status
    /// is `registered`. Returns the records written.
    fn add_status_for(
        &self,
        ids: &[InvocationId],
        status: InvocationStatus,
        runner: &RunnerContext,
        registered_by: Option<&InvocationId>,
        at: Timestamp,
    ) -> Result<Vec<InvocationHistory>> {
        let runner_id = if status == InvocationStatus::Registered {
            None
        } else {
            Some(runner.runner_id.clone())
        };
        let records: Vec<InvocationHistory> = ids
            .iter()
            .map(|id| InvocationHistory {
                invocation_id: id.clone(),
                timestamp: at,
                status_record: InvocationStatusRecord {
                    status,
                    runner_id: runner_id.clone(),
                    timestamp: at,
                },
                runner_context_id: runner.runner_id.clone(),
                registered_by_inv_id: if status == InvocationStatus::Registered {
                    registered_by.cloned()
                } else {
                    None
                },
            })
            .collect();
        self.add_histories(&records)?;
        Ok(records)
    }

    /// The latest history record of an invocation, if any.
    fn latest_status(&self, id: &InvocationId) -> Result<Option<InvocationHistory>> {
        Ok(self.get_history(id)?.pop())
    }
}

impl std::fmt::Debug for dyn StateBackend + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateBackend({})", self.engine_name())
    }
}

/// Every row of `kind` in `b`, mapped by `f` (rows it maps to `None` are
/// skipped), from one snapshot.
fn all_rows<B: StateBackend + ?Sized, T>(
    b: &B,
    kind: Kind,
    f: impl Fn(Row) -> Option<T>,
) -> Result<Vec<T>> {
    let mut snap = b.snapshot()?;
    let mut out = Vec::new();
    crate::bulk::for_each_page(snap.as_mut(), kind, 1000, |page| {
        out.extend(page.items.into_iter().filter_map(&f));
        Ok(())
    })?;
    Ok(out)
}
