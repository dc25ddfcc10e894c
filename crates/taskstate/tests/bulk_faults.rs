//! The bulk path under faults (issue 8 part 6): a write that fails part-way
//! leaves whole pages only, says how far it got in one line, and running
//! the same import or copy again with merge completes it; reports count
//! what was stored and what replaced a stored row; bad documents are
//! refused before anything is written.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::Value;
use taskstate::{
    AppId, AppInfo, CallDTO, Cursor, Error, HistoryRow, InvocationDTO, InvocationHistory,
    InvocationId, InvocationRecord, Kind, Page, Result, Row, RunnerContext, RunnerId, Snapshot,
    StateBackend, StoredHistory, TaskId, TimeRange, WorkflowIdentity, copy, export, open,
};
use taskstate_memory::MemoryBackend;

/// A memory store whose `write_rows` fails once `budget` calls have
/// succeeded (until healed), or drops every history row (`lossy`).
#[derive(Default)]
struct Flaky {
    inner: MemoryBackend,
    budget: AtomicUsize,
    failing: AtomicBool,
    lossy: AtomicBool,
}

impl Flaky {
    fn failing_after(calls: usize) -> Self {
        let f = Flaky::default();
        f.budget.store(calls, Ordering::SeqCst);
        f.failing.store(true, Ordering::SeqCst);
        f
    }

    fn heal(&self) {
        self.failing.store(false, Ordering::SeqCst);
    }
}

impl StateBackend for Flaky {
    fn engine_name(&self) -> &'static str {
        "flaky"
    }
    fn write_rows(&self, rows: &[Row]) -> Result<()> {
        if self.failing.load(Ordering::SeqCst) {
            let left = self.budget.load(Ordering::SeqCst);
            if left == 0 {
                return Err(Error::Unavailable {
                    message: "disk unplugged".into(),
                    source: None,
                });
            }
            self.budget.store(left - 1, Ordering::SeqCst);
        }
        if self.lossy.load(Ordering::SeqCst) {
            let kept: Vec<Row> = rows
                .iter()
                .filter(|r| r.kind() != Kind::History)
                .cloned()
                .collect();
            return self.inner.write_rows(&kept);
        }
        self.inner.write_rows(rows)
    }
    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>> {
        self.inner.snapshot()
    }
    fn upsert_invocations(&self, e: &[(InvocationDTO, CallDTO)]) -> Result<()> {
        self.inner.upsert_invocations(e)
    }
    fn get_invocation(&self, id: &InvocationId) -> Result<InvocationRecord> {
        self.inner.get_invocation(id)
    }
    fn get_child_invocations(&self, p: &InvocationId) -> Result<Vec<InvocationId>> {
        self.inner.get_child_invocations(p)
    }
    fn get_invocation_ids_by_workflow(
        &self,
        w: Option<&InvocationId>,
        t: Option<&TaskId>,
    ) -> Result<Vec<InvocationId>> {
        self.inner.get_invocation_ids_by_workflow(w, t)
    }
    fn add_history_rows(&self, rows: &[HistoryRow<'_>]) -> Result<()> {
        self.inner.add_history_rows(rows)
    }
    fn get_history_rows(&self, id: &InvocationId) -> Result<Vec<StoredHistory>> {
        self.inner.get_history_rows(id)
    }
    fn invocation_ids_in_timerange(
        &self,
        r: &TimeRange,
        a: Option<&Cursor>,
        n: usize,
    ) -> Result<Page<InvocationId>> {
        self.inner.invocation_ids_in_timerange(r, a, n)
    }
    fn history_in_timerange(
        &self,
        r: &TimeRange,
        a: Option<&Cursor>,
        n: usize,
    ) -> Result<Page<InvocationHistory>> {
        self.inner.history_in_timerange(r, a, n)
    }
    fn set_result(&self, id: &InvocationId, v: &str) -> Result<()> {
        self.inner.set_result(id, v)
    }
    fn get_result(&self, id: &InvocationId) -> Result<taskstate::SharedText> {
        self.inner.get_result(id)
    }
    fn set_exception(&self, id: &InvocationId, v: &str) -> Result<()> {
        self.inner.set_exception(id, v)
    }
    fn get_exception(&self, id: &InvocationId) -> Result<taskstate::SharedText> {
        self.inner.get_exception(id)
    }
    fn store_workflow_run(&self, w: &WorkflowIdentity) -> Result<()> {
        self.inner.store_workflow_run(w)
    }
    fn get_all_workflow_types(&self) -> Result<Vec<TaskId>> {
        self.inner.get_all_workflow_types()
    }
    fn get_all_workflow_runs(&self) -> Result<Vec<WorkflowIdentity>> {
        self.inner.get_all_workflow_runs()
    }
    fn get_workflow_runs(&self, t: &TaskId) -> Result<Vec<WorkflowIdentity>> {
        self.inner.get_workflow_runs(t)
    }
    fn store_workflow_sub_invocation(&self, w: &InvocationId, s: &InvocationId) -> Result<()> {
        self.inner.store_workflow_sub_invocation(w, s)
    }
    fn get_workflow_sub_invocations(&self, w: &InvocationId) -> Result<Vec<InvocationId>> {
        self.inner.get_workflow_sub_invocations(w)
    }
    fn set_workflow_data(&self, w: &InvocationId, k: &str, v: &str) -> Result<()> {
        self.inner.set_workflow_data(w, k, v)
    }
    fn get_workflow_data(&self, w: &InvocationId, k: &str) -> Result<Option<String>> {
        self.inner.get_workflow_data(w, k)
    }
    fn store_app_info(&self, a: &AppInfo) -> Result<()> {
        self.inner.store_app_info(a)
    }
    fn get_app_info(&self, id: &AppId) -> Result<AppInfo> {
        self.inner.get_app_info(id)
    }
    fn discover_app_infos(&self) -> Result<Vec<AppInfo>> {
        self.inner.discover_app_infos()
    }
    fn store_runner_context(&self, c: &RunnerContext) -> Result<()> {
        self.inner.store_runner_context(c)
    }
    fn get_runner_context(&self, id: &RunnerId) -> Result<Option<RunnerContext>> {
        self.inner.get_runner_context(id)
    }
    fn get_runner_contexts(&self, ids: &[RunnerId]) -> Result<Vec<RunnerContext>> {
        self.inner.get_runner_contexts(ids)
    }
    fn get_matching_runner_contexts(&self, p: &str) -> Result<Vec<RunnerContext>> {
        self.inner.get_matching_runner_contexts(p)
    }
    fn purge(&self) -> Result<()> {
        self.inner.purge()
    }
    fn prune(
        &self,
        options: &taskstate::PruneOptions,
        progress: &mut dyn FnMut(&taskstate::PruneProgress),
    ) -> Result<taskstate::PruneCounts> {
        self.inner.prune(options, progress)
    }
    fn delete_trees(&self, ids: &[InvocationId], dry_run: bool) -> Result<taskstate::PruneCounts> {
        self.inner.delete_trees(ids, dry_run)
    }
    fn reclaim_space(&self) -> Result<Option<taskstate::SpaceReport>> {
        self.inner.reclaim_space()
    }
    fn list_invocations(
        &self,
        filter: &taskstate::InvocationFilter,
        after: Option<&taskstate::Cursor>,
        page_size: usize,
    ) -> Result<taskstate::Page<taskstate::InvocationSummary>> {
        self.inner.list_invocations(filter, after, page_size)
    }
    fn latest_status_counts(&self) -> Result<taskstate::StatusCounts> {
        self.inner.latest_status_counts()
    }
    fn list_workflow_runs(
        &self,
        workflow_type: Option<&taskstate::TaskId>,
        after: Option<&taskstate::Cursor>,
        page_size: usize,
    ) -> Result<taskstate::Page<taskstate::WorkflowIdentity>> {
        self.inner
            .list_workflow_runs(workflow_type, after, page_size)
    }
}

fn no_progress() -> impl FnMut(&str, u64, u64) {
    |_, _, _| {}
}

/// A source store with every kind and 40 invocations.
fn source() -> Box<dyn StateBackend> {
    let b = open("memory://").unwrap();
    taskstate_conformance::cases::populate_everything(b.as_ref());
    for i in 0..40 {
        let pair = taskstate_conformance::data::root(&format!("bulk-{i:03}"), "shop.orders.bulk");
        b.upsert_invocations(&[pair]).unwrap();
        b.set_result(&InvocationId::new(format!("bulk-{i:03}")), &i.to_string())
            .unwrap();
    }
    b
}

fn doc_of(b: &dyn StateBackend) -> Value {
    export::export(b, &mut no_progress()).unwrap()
}

#[test]
fn an_import_that_fails_part_way_keeps_whole_pages_and_merge_completes_it() {
    let src = source();
    let doc = doc_of(src.as_ref());
    let bytes = serde_json::to_vec(&doc).unwrap();
    let total = copy::counts(src.as_ref()).unwrap();
    let dst = Flaky::failing_after(2);
    let e = export::import_paged(&dst, || Ok(bytes.as_slice()), false, 10, &mut no_progress())
        .unwrap_err();
    let msg = e.to_string();
    assert_eq!(msg.lines().count(), 1, "{msg}");
    assert!(msg.contains("import stopped after 2 whole pages"), "{msg}");
    assert!(
        msg.contains("disk unplugged") && msg.contains("--merge"),
        "{msg}"
    );
    // Exactly the rows of the two pages that were written.
    let held = copy::counts(&dst).unwrap();
    let held_rows: u64 = held.rows().iter().map(|(_, n)| n).sum();
    assert!((20..40).contains(&held_rows), "{held:?}");
    dst.heal();
    let report =
        export::import_paged(&dst, || Ok(bytes.as_slice()), true, 10, &mut no_progress()).unwrap();
    assert_eq!(copy::counts(&dst).unwrap(), total);
    assert_eq!(doc_of(&dst), doc);
    assert_eq!(
        report.replaced(),
        held_rows,
        "rows of the first run are replaced"
    );
}

#[test]
fn reports_count_rows_stored_and_rows_replaced() {
    let src = source();
    let doc = doc_of(src.as_ref());
    let dst = open("sqlite://:memory:").unwrap();
    let first = export::import(dst.as_ref(), &doc, false).unwrap();
    let total = copy::counts(src.as_ref()).unwrap();
    assert_eq!(first.written, total);
    assert_eq!(first.added, total);
    assert_eq!(first.replaced(), 0);
    let again = export::import(dst.as_ref(), &doc, true).unwrap();
    assert_eq!(again.written, total);
    assert_eq!(again.added, copy::Counts::default());
    assert_eq!(
        again.replaced(),
        total.rows().iter().map(|(_, n)| n).sum::<u64>()
    );
}

#[test]
fn a_copy_that_fails_part_way_names_the_kind_and_merge_completes_it() {
    let src = source();
    let dst = Flaky::failing_after(3);
    let e = copy::copy(src.as_ref(), &dst, 7, false, &mut no_progress()).unwrap_err();
    let msg = e.to_string();
    assert_eq!(msg.lines().count(), 1, "{msg}");
    assert!(msg.contains("copy stopped in invocations after"), "{msg}");
    assert!(
        msg.contains("--merge") && !msg.contains("Counts {"),
        "{msg}"
    );
    dst.heal();
    copy::copy(src.as_ref(), &dst, 7, true, &mut no_progress()).unwrap();
    assert_eq!(
        copy::counts(&dst).unwrap(),
        copy::counts(src.as_ref()).unwrap()
    );
    assert_eq!(doc_of(&dst), doc_of(src.as_ref()));
}

#[test]
fn a_copy_that_loses_rows_says_which_kind_and_both_counts() {
    let src = source();
    let dst = Flaky::default();
    dst.lossy.store(true, Ordering::SeqCst);
    let e = copy::copy(src.as_ref(), &dst, 100, false, &mut no_progress()).unwrap_err();
    let msg = e.to_string();
    let want_history = copy::counts(src.as_ref()).unwrap().get(Kind::History);
    assert_eq!(msg.lines().count(), 1, "{msg}");
    assert!(
        msg.contains(&format!(
            "copy verification failed: history records: source holds {want_history}, destination 0"
        )),
        "{msg}"
    );
}

#[test]
fn documents_breaking_a_rule_anywhere_are_refused_before_writing() {
    let src = source();
    let doc = doc_of(src.as_ref());
    type Breaker = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Breaker, &str)> = vec![
        (
            Box::new(|d: &mut Value| {
                let first = d["invocations"][0].clone();
                d["invocations"].as_array_mut().unwrap().push(first);
            }),
            "appears twice",
        ),
        (
            Box::new(|d: &mut Value| {
                let last = d["invocations"].as_array().unwrap().len() - 1;
                d["invocations"][last]["invocation_id"] = Value::String(String::new());
            }),
            "invalid input",
        ),
        (
            Box::new(|d: &mut Value| {
                d["invocations"][3]["history"] = serde_json::json!([{
                    "invocation_id": "x", "_timestamp": "0000-01-01T00:00:00+00:00",
                    "status_record": {"status": "registered", "runner_id": null,
                        "timestamp": "0000-01-01T00:00:00+00:00"},
                    "runner_context_id": "r", "registered_by_inv_id": null}]);
            }),
            "outside years 1-9999",
        ),
        (
            Box::new(|d: &mut Value| {
                d["runner_contexts"][0]["parent_runner_id"] = Value::String("ghost".into());
            }),
            "which the document does not hold",
        ),
    ];
    for (break_it, want) in cases {
        let mut bad = doc.clone();
        break_it(&mut bad);
        let dst = open("memory://").unwrap();
        let e = export::import(dst.as_ref(), &bad, false).unwrap_err();
        assert!(e.to_string().contains(want), "{want}: {e}");
        assert!(
            export::is_empty(dst.as_ref()).unwrap(),
            "{want}: something was written"
        );
    }
}

#[test]
fn a_nul_is_refused_before_writing_on_postgres() {
    let Some((pg, _guard)) = taskstate_postgres::testing::fresh_backend("ts_bulk_nul") else {
        return;
    };
    let src = source();
    let mut doc = doc_of(src.as_ref());
    let last = doc["invocations"].as_array().unwrap().len() - 1;
    doc["invocations"][last]["result"] = Value::String("a\u{0}b".into());
    let e = export::import(&pg, &doc, false).unwrap_err();
    assert!(e.to_string().contains("NUL"), "{e}");
    assert!(export::is_empty(&pg).unwrap());
    // Memory and SQLite store it as given.
    let m = open("memory://").unwrap();
    export::import(m.as_ref(), &doc, false).unwrap();
    assert_eq!(doc_of(m.as_ref()), doc);
}
