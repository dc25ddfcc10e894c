//! The operations of the model-based test, with the small id pools they
//! draw from, and how each runs on the model and on an engine.

use std::sync::Arc;

use taskstate_core::{
    AppId, AppInfo, CallDTO, Cursor, Error, ErrorKind, HistoryRow, InvocationDTO,
    InvocationHistory, InvocationId, InvocationStatus, InvocationStatusRecord, Page, PruneCounts,
    PruneOptions, RunnerContext, RunnerId, SerializedArguments, StateBackend, TaskId, TimeKey,
    TimeRange, Timestamp, WorkflowIdentity,
};

use crate::model::Model;

pub(crate) const INVS: [&str; 5] = ["i0", "i1", "i2", "i3", "i4"];
pub(crate) const TASKS: [&str; 3] = ["m.a", "m.b", "pkg.mod.c"];
pub(crate) const RUNNERS: [&str; 4] = ["r0", "r1", "R0x", "r%"];
pub(crate) const PARTIALS: [&str; 6] = ["", "r", "R0", "%", "x", "r1"];
pub(crate) const KEYS: [&str; 2] = ["k0", "k1"];
pub(crate) const VALUES: [&str; 3] = ["v0", "v1", "ü\"'"];
pub(crate) const APPS: [&str; 2] = ["a0", "a1"];
pub(crate) const STATUSES: [InvocationStatus; 3] = [
    InvocationStatus::Registered,
    InvocationStatus::Running,
    InvocationStatus::Success,
];

/// An invocation id from the pool; index `INVS.len()` is the empty id
/// (invalid input, so error paths are compared too).
pub(crate) fn inv(i: usize) -> InvocationId {
    InvocationId::new(INVS.get(i).copied().unwrap_or(""))
}

pub(crate) fn task(i: usize) -> TaskId {
    TaskId::new(
        TASKS[i].rsplit_once('.').map_or("m", |p| p.0),
        TASKS[i].rsplit_once('.').map_or("x", |p| p.1),
    )
    .unwrap_or_else(|e| panic!("pool task: {e}"))
}

/// Pool timestamp `t` (steps of 1 ms), optionally shown at +01:00.
pub(crate) fn ts(t: u8, shifted: bool) -> Timestamp {
    let micros = 1_736_942_400_000_000 + i64::from(t) * 1000;
    Timestamp::from_micros_with_offset(micros, if shifted { 3600 } else { 0 })
        .unwrap_or_else(|e| panic!("pool timestamp: {e}"))
}

/// One invocation of an upsert batch.
#[derive(Clone, Debug)]
pub struct InvSpec {
    pub(crate) inv: usize,
    pub(crate) parent: Option<usize>,
    pub(crate) wf: usize,
    pub(crate) task: usize,
    pub(crate) args: u8,
    /// The parent workflow (a link only retention follows).
    pub(crate) parent_wf: Option<usize>,
}

impl InvSpec {
    fn build(&self) -> (InvocationDTO, CallDTO) {
        let args = match self.args {
            0 => SerializedArguments::new(),
            1 => SerializedArguments::from_pairs([("a", "1")]),
            _ => SerializedArguments::from_pairs([("z", "\"é\""), ("a", "[1, 2]")]),
        };
        let call = CallDTO::new(task(self.task), args);
        (
            InvocationDTO {
                invocation_id: inv(self.inv),
                call_id: call.call_id.clone(),
                workflow: WorkflowIdentity {
                    workflow_id: inv(self.wf),
                    workflow_type: task(self.task),
                    parent_workflow_id: self.parent_wf.map(inv),
                },
                parent_invocation_id: self.parent.map(inv),
            },
            call,
        )
    }
}

/// One record of a history batch.
#[derive(Clone, Debug)]
pub struct HistSpec {
    /// The key the row is stored under when not the record's own id (SPEC §3).
    pub(crate) key: Option<usize>,
    /// A stored time key other than the record's instant (a naive pynenc
    /// timestamp), as a time index.
    pub(crate) stored_at: Option<u8>,
    pub(crate) inv: usize,
    pub(crate) t: u8,
    pub(crate) shifted: bool,
    pub(crate) status: usize,
    pub(crate) runner: usize,
}

impl HistSpec {
    fn build(&self) -> InvocationHistory {
        InvocationHistory {
            invocation_id: inv(self.inv),
            timestamp: ts(self.t, self.shifted),
            status_record: InvocationStatusRecord {
                status: STATUSES[self.status],
                runner_id: Some(RunnerId::new(RUNNERS[self.runner])),
                timestamp: ts(self.t, false),
            },
            runner_context_id: RunnerId::new(RUNNERS[self.runner]),
            registered_by_inv_id: None,
        }
    }

    fn row(&self) -> Row {
        let rec = self.build();
        (
            self.key.map_or_else(|| rec.invocation_id.clone(), inv),
            rec,
            self.time_key(),
        )
    }

    fn time_key(&self) -> Option<TimeKey> {
        self.stored_at.map(|t| ts(t, false).key())
    }
}

/// Rows of a batch: each spec's row, then (for `AddUnderKeys`) one record
/// under several keys, as the reference's `_add_histories(ids, record)`.
/// A history row: key, record, stored time key (none: the record's instant).
pub(crate) type Row = (InvocationId, InvocationHistory, Option<TimeKey>);

pub(crate) fn rows_of(specs: &[HistSpec]) -> Vec<Row> {
    specs.iter().map(HistSpec::row).collect()
}

pub(crate) fn rows_under(spec: &HistSpec, keys: &[usize]) -> Vec<Row> {
    let rec = spec.build();
    keys.iter()
        .map(|k| (inv(*k), rec.clone(), spec.time_key()))
        .collect()
}

pub(crate) fn engine_rows(b: &dyn StateBackend, rows: &[Row]) -> taskstate_core::Result<()> {
    let borrowed: Vec<HistoryRow<'_>> = rows
        .iter()
        .map(|(k, r, t)| HistoryRow::under(k, r).at_time_key(*t))
        .collect();
    b.add_history_rows(&borrowed)
}

/// One operation of a generated sequence.
#[derive(Clone, Debug)]
#[allow(missing_docs)]
pub enum Op {
    Upsert(Vec<InvSpec>),
    GetInvocation(usize),
    Children(usize),
    ByWorkflow(Option<usize>, Option<usize>),
    AddHistories(Vec<HistSpec>),
    AddUnderKeys(HistSpec, Vec<usize>),
    GetHistory(usize),
    HistoryRange {
        lo: u8,
        hi: u8,
        page: usize,
    },
    IdsRange {
        lo: u8,
        hi: u8,
        page: usize,
    },
    SetResult(usize, usize),
    GetResult(usize),
    SetException(usize, usize),
    GetException(usize),
    StoreRun {
        wf: usize,
        task: usize,
        parent: Option<usize>,
    },
    Types,
    Runs,
    RunsOf(usize),
    StoreSub(usize, usize),
    Subs(usize),
    SetData(usize, usize, usize),
    GetData(usize, usize),
    StoreApp(usize, bool),
    GetApp(usize),
    Apps,
    StoreRunner(Vec<usize>),
    GetRunner(usize),
    GetRunners(Vec<usize>),
    MatchRunners(usize),
    ResultIds,
    ExceptionIds,
    AllSubs,
    AllData,
    Purge,
    /// Prune at pool time `cutoff`, maybe dry, in chunks of `chunk` trees.
    Prune {
        cutoff: u8,
        dry: bool,
        chunk: usize,
    },
    DeleteTrees(Vec<usize>, bool),
}

/// What an operation returned, errors reduced to what the contract fixes
/// (the kind, and for not-found the full message naming kind and id).
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum Out {
    Unit(Result<(), String>),
    Pair(Result<(InvocationDTO, CallDTO), String>),
    Ids(Vec<InvocationId>),
    History(Vec<InvocationHistory>),
    HistoryPages(Vec<Vec<InvocationHistory>>),
    IdPages(Vec<Vec<InvocationId>>),
    Str(Result<String, String>),
    OptStr(Option<String>),
    Types(Vec<TaskId>),
    Runs(Vec<WorkflowIdentity>),
    App(Result<AppInfo, String>),
    Apps(Vec<AppInfo>),
    Runner(Option<RunnerContext>),
    Runners(Vec<RunnerContext>),
    Links(Vec<(InvocationId, InvocationId)>),
    Data(Vec<(InvocationId, String, String)>),
    /// Prune counts, in `PruneCounts::fields` order.
    Counts(Result<Vec<u64>, String>),
    /// An engine error where the model has none.
    Failed(String),
}

pub(crate) fn err_str(e: &Error) -> String {
    match e.kind() {
        ErrorKind::NotFound => e.to_string(),
        k => format!("{k:?}"),
    }
}

pub(crate) fn range(lo: u8, hi: u8) -> TimeRange {
    TimeRange::new(ts(lo, false), ts(hi, false))
}

pub(crate) fn chunks<T: Clone>(items: Vec<T>, page: usize) -> Vec<Vec<T>> {
    if items.is_empty() {
        return vec![Vec::new()];
    }
    items.chunks(page).map(<[T]>::to_vec).collect()
}

pub(crate) fn app(i: usize, with_config: bool) -> AppInfo {
    let mut a = AppInfo::new(APPS[i], "mod.app");
    if with_config {
        a.config_values = serde_json::json!({"b": 1.5, "a": [null, "x"]})
            .as_object()
            .cloned();
        a.app_variable = Some("app".into());
    }
    a
}

pub(crate) fn runner_chain(idx: &[usize]) -> RunnerContext {
    let mut ctx: Option<RunnerContext> = None;
    for &i in idx.iter().rev() {
        ctx = Some(RunnerContext {
            runner_cls: "Runner".into(),
            runner_id: RunnerId::new(RUNNERS[i]),
            parent: ctx.map(Box::new),
            pid: i as i64,
            hostname: format!("host-{}", idx.len()),
            thread_id: 7,
        });
    }
    ctx.unwrap_or_else(|| panic!("runner chain must not be empty"))
}

/// Applies `op` to the model.
pub fn run_model(m: &mut Model, op: &Op) -> Out {
    let unit = |r: Result<(), Error>| Out::Unit(r.map_err(|e| err_str(&e)));
    match op {
        Op::Upsert(specs) => {
            let entries: Vec<_> = specs.iter().map(InvSpec::build).collect();
            unit(m.upsert_invocations(&entries))
        }
        Op::GetInvocation(i) => Out::Pair(m.get_invocation(&inv(*i)).map_err(|e| err_str(&e))),
        Op::Children(i) => Out::Ids(m.get_child_invocations(&inv(*i))),
        Op::ByWorkflow(w, t) => {
            Out::Ids(m.get_invocation_ids_by_workflow(w.map(inv).as_ref(), t.map(task).as_ref()))
        }
        Op::AddHistories(specs) => unit(m.add_history_rows(&rows_of(specs))),
        Op::AddUnderKeys(spec, keys) => unit(m.add_history_rows(&rows_under(spec, keys))),
        Op::GetHistory(i) => Out::History(m.get_history(&inv(*i))),
        Op::HistoryRange { lo, hi, page } => {
            Out::HistoryPages(chunks(m.history_in_range(&range(*lo, *hi)), *page))
        }
        Op::IdsRange { lo, hi, page } => {
            Out::IdPages(chunks(m.ids_in_range(&range(*lo, *hi)), *page))
        }
        Op::SetResult(i, v) => {
            m.set_result(&inv(*i), VALUES[*v]);
            Out::Unit(Ok(()))
        }
        Op::GetResult(i) => Out::Str(m.get_result(&inv(*i)).map_err(|e| err_str(&e))),
        Op::SetException(i, v) => {
            m.set_exception(&inv(*i), VALUES[*v]);
            Out::Unit(Ok(()))
        }
        Op::GetException(i) => Out::Str(m.get_exception(&inv(*i)).map_err(|e| err_str(&e))),
        Op::StoreRun {
            wf,
            task: t,
            parent,
        } => unit(m.store_workflow_run(&WorkflowIdentity {
            workflow_id: inv(*wf),
            workflow_type: task(*t),
            parent_workflow_id: parent.map(inv),
        })),
        Op::Types => Out::Types(m.workflow_types()),
        Op::Runs => Out::Runs(m.workflow_runs(None)),
        Op::RunsOf(t) => Out::Runs(m.workflow_runs(Some(&task(*t)))),
        Op::StoreSub(w, s) => {
            m.store_sub(&inv(*w), &inv(*s));
            Out::Unit(Ok(()))
        }
        Op::Subs(w) => Out::Ids(m.subs_of(&inv(*w))),
        Op::SetData(w, k, v) => {
            m.set_data(&inv(*w), KEYS[*k], VALUES[*v]);
            Out::Unit(Ok(()))
        }
        Op::GetData(w, k) => Out::OptStr(m.get_data(&inv(*w), KEYS[*k])),
        Op::StoreApp(i, c) => {
            m.store_app(&app(*i, *c));
            Out::Unit(Ok(()))
        }
        Op::GetApp(i) => Out::App(m.get_app(APPS[*i]).map_err(|e| err_str(&e))),
        Op::Apps => Out::Apps(m.apps()),
        Op::StoreRunner(chain) => unit(m.store_runner(&runner_chain(chain))),
        Op::GetRunner(i) => Out::Runner(m.get_runner(&RunnerId::new(RUNNERS[*i]))),
        Op::GetRunners(ids) => Out::Runners(
            m.get_runners(
                &ids.iter()
                    .map(|i| RunnerId::new(RUNNERS[*i]))
                    .collect::<Vec<_>>(),
            ),
        ),
        Op::MatchRunners(p) => Out::Runners(m.match_runners(PARTIALS[*p])),
        Op::ResultIds => Out::Ids(m.result_ids()),
        Op::ExceptionIds => Out::Ids(m.exception_ids()),
        Op::AllSubs => Out::Links(m.all_subs()),
        Op::AllData => Out::Data(m.all_data()),
        Op::Purge => {
            m.purge();
            Out::Unit(Ok(()))
        }
        Op::Prune { cutoff, dry, .. } => {
            Out::Counts(Ok(m.prune(ts(*cutoff, false).key(), *dry).to_vec()))
        }
        Op::DeleteTrees(ids, dry) => {
            let ids: Vec<InvocationId> = ids.iter().map(|i| inv(*i)).collect();
            Out::Counts(
                m.delete_trees(&ids, *dry)
                    .map(|c| c.to_vec())
                    .map_err(|e| err_str(&e)),
            )
        }
    }
}

/// Walks every page of a paged query; a page that breaks the paging
/// contract (empty before the end, larger than asked, endless) is reported.
pub(crate) fn walk<T>(
    page: usize,
    mut fetch: impl FnMut(Option<&Cursor>) -> Result<Page<T>, Error>,
) -> Result<Vec<Vec<T>>, String> {
    let mut pages = Vec::new();
    let mut cursor: Option<Cursor> = None;
    for _ in 0..10_000 {
        let p = fetch(cursor.as_ref()).map_err(|e| err_str(&e))?;
        if p.items.len() > page {
            return Err(format!("page of {} items, page size {page}", p.items.len()));
        }
        if p.items.is_empty() && (p.next.is_some() || !pages.is_empty()) {
            return Err("an empty page that is not the only page".into());
        }
        pages.push(p.items);
        match p.next {
            Some(c) => cursor = Some(c),
            None => return Ok(pages),
        }
    }
    Err("paging did not end after 10000 pages".into())
}

/// Applies `op` to an engine.
pub fn run_engine(b: &dyn StateBackend, op: &Op) -> Out {
    fn ok<T>(r: Result<T, Error>, f: impl FnOnce(T) -> Out) -> Out {
        match r {
            Ok(v) => f(v),
            Err(e) => Out::Failed(e.to_string()),
        }
    }
    let unit = |r: Result<(), Error>| Out::Unit(r.map_err(|e| err_str(&e)));
    match op {
        Op::Upsert(specs) => {
            let entries: Vec<_> = specs.iter().map(InvSpec::build).collect();
            unit(b.upsert_invocations(&entries))
        }
        Op::GetInvocation(i) => Out::Pair(
            b.get_invocation(&inv(*i))
                .map(Arc::unwrap_or_clone)
                .map_err(|e| err_str(&e)),
        ),
        Op::Children(i) => ok(b.get_child_invocations(&inv(*i)), Out::Ids),
        Op::ByWorkflow(w, t) => ok(
            b.get_invocation_ids_by_workflow(w.map(inv).as_ref(), t.map(task).as_ref()),
            Out::Ids,
        ),
        Op::AddHistories(specs) => unit(engine_rows(b, &rows_of(specs))),
        Op::AddUnderKeys(spec, keys) => unit(engine_rows(b, &rows_under(spec, keys))),
        Op::GetHistory(i) => ok(b.get_history(&inv(*i)), Out::History),
        Op::HistoryRange { lo, hi, page } => {
            let r = range(*lo, *hi);
            match walk(*page, |c| b.history_in_timerange(&r, c, *page)) {
                Ok(p) => Out::HistoryPages(p),
                Err(e) => Out::Failed(e),
            }
        }
        Op::IdsRange { lo, hi, page } => {
            let r = range(*lo, *hi);
            match walk(*page, |c| b.invocation_ids_in_timerange(&r, c, *page)) {
                Ok(p) => Out::IdPages(p),
                Err(e) => Out::Failed(e),
            }
        }
        Op::SetResult(i, v) => unit(b.set_result(&inv(*i), VALUES[*v])),
        Op::GetResult(i) => Out::Str(
            b.get_result(&inv(*i))
                .map(String::from)
                .map_err(|e| err_str(&e)),
        ),
        Op::SetException(i, v) => unit(b.set_exception(&inv(*i), VALUES[*v])),
        Op::GetException(i) => Out::Str(
            b.get_exception(&inv(*i))
                .map(String::from)
                .map_err(|e| err_str(&e)),
        ),
        Op::StoreRun {
            wf,
            task: t,
            parent,
        } => unit(b.store_workflow_run(&WorkflowIdentity {
            workflow_id: inv(*wf),
            workflow_type: task(*t),
            parent_workflow_id: parent.map(inv),
        })),
        Op::Types => ok(b.get_all_workflow_types(), Out::Types),
        Op::Runs => ok(b.get_all_workflow_runs(), Out::Runs),
        Op::RunsOf(t) => ok(b.get_workflow_runs(&task(*t)), Out::Runs),
        Op::StoreSub(w, s) => unit(b.store_workflow_sub_invocation(&inv(*w), &inv(*s))),
        Op::Subs(w) => ok(b.get_workflow_sub_invocations(&inv(*w)), Out::Ids),
        Op::SetData(w, k, v) => unit(b.set_workflow_data(&inv(*w), KEYS[*k], VALUES[*v])),
        Op::GetData(w, k) => ok(b.get_workflow_data(&inv(*w), KEYS[*k]), Out::OptStr),
        Op::StoreApp(i, c) => unit(b.store_app_info(&app(*i, *c))),
        Op::GetApp(i) => Out::App(
            b.get_app_info(&AppId::new(APPS[*i]))
                .map_err(|e| err_str(&e)),
        ),
        Op::Apps => ok(b.discover_app_infos(), Out::Apps),
        Op::StoreRunner(chain) => unit(b.store_runner_context(&runner_chain(chain))),
        Op::GetRunner(i) => ok(
            b.get_runner_context(&RunnerId::new(RUNNERS[*i])),
            Out::Runner,
        ),
        Op::GetRunners(ids) => ok(
            b.get_runner_contexts(
                &ids.iter()
                    .map(|i| RunnerId::new(RUNNERS[*i]))
                    .collect::<Vec<_>>(),
            ),
            Out::Runners,
        ),
        Op::MatchRunners(p) => ok(b.get_matching_runner_contexts(PARTIALS[*p]), Out::Runners),
        Op::ResultIds => ok(b.result_ids(), Out::Ids),
        Op::ExceptionIds => ok(b.exception_ids(), Out::Ids),
        Op::AllSubs => ok(b.all_workflow_sub_invocations(), Out::Links),
        Op::AllData => ok(b.all_workflow_data(), |all| {
            Out::Data(
                all.into_iter()
                    .map(|d| (d.workflow_id, d.key, d.value))
                    .collect(),
            )
        }),
        Op::Purge => unit(b.purge()),
        Op::Prune { cutoff, dry, chunk } => {
            let options = PruneOptions::new(ts(*cutoff, false))
                .dry_run(*dry)
                .chunk(*chunk);
            counts(b.prune(&options, &mut |_| {}))
        }
        Op::DeleteTrees(ids, dry) => {
            let ids: Vec<InvocationId> = ids.iter().map(|i| inv(*i)).collect();
            counts(b.delete_trees(&ids, *dry))
        }
    }
}

fn counts(r: Result<PruneCounts, Error>) -> Out {
    Out::Counts(
        r.map(|c| c.fields().iter().map(|(_, n)| *n).collect())
            .map_err(|e| err_str(&e)),
    )
}
