//! SPEC §10 retention: whole workflow trees go when every invocation in
//! them ended (final status) at or before the cutoff; orphans by their
//! newest row; nothing left behind links into what went.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use taskstate_core::{
    ErrorKind, HistoryRow, InvocationStatus as S, Kind, PruneCounts, PruneOptions, PruneProgress,
    Row, StateBackend, Timestamp,
};

use super::bulk::paged;
use crate::data::*;

/// Every row of every kind, in snapshot order.
fn dump(b: &dyn StateBackend) -> Vec<Row> {
    Kind::ALL.iter().flat_map(|k| paged(b, *k, 50)).collect()
}

fn prune(b: &dyn StateBackend, cutoff: Timestamp, chunk: usize) -> PruneCounts {
    b.prune(&PruneOptions::new(cutoff).chunk(chunk), &mut |_| {})
        .unwrap()
}

fn dry(b: &dyn StateBackend, cutoff: Timestamp, chunk: usize) -> PruneCounts {
    b.prune(
        &PruneOptions::new(cutoff).chunk(chunk).dry_run(true),
        &mut |_| {},
    )
    .unwrap()
}

/// `[trees, invocations, history, results, exceptions, runs, subs, data]`.
fn n(c: PruneCounts) -> [u64; 8] {
    c.fields().map(|(_, v)| v)
}

/// A finished history: registered, running, then `last` at `t`.
fn finished(b: &dyn StateBackend, inv: &str, t: i64, last: S) {
    b.add_histories(&[
        hist(inv, S::Registered, at(t - 2)),
        hist(inv, S::Running, at(t - 1)),
        hist(inv, last, at(t)),
    ])
    .unwrap();
}

fn present(b: &dyn StateBackend, inv: &str) -> bool {
    b.get_invocation(&id(inv)).is_ok()
}

/// Plain tasks: ended by the cutoff go with their result and exception;
/// ended later, still running, or without history stay; app infos and
/// runner contexts stay.
pub fn prune_plain_tasks_by_final_status_and_cutoff(b: &dyn StateBackend) {
    b.upsert_invocations(&[
        root("old", "m.t"),
        root("new", "m.t"),
        root("running", "m.t"),
        root("silent", "m.t"),
        root("failed", "m.t"),
    ])
    .unwrap();
    finished(b, "old", 10, S::Success);
    finished(b, "failed", 5, S::Failed);
    finished(b, "new", 30, S::Success);
    b.add_histories(&[hist("running", S::Running, at(3))])
        .unwrap();
    b.set_result(&id("old"), "r").unwrap();
    b.set_exception(&id("failed"), "e").unwrap();
    b.set_result(&id("new"), "r2").unwrap();
    b.store_app_info(&app("app")).unwrap();
    b.store_runner_context(&runner("r-1")).unwrap();

    // The cutoff is inclusive: `old` ended exactly at 10.
    let c = prune(b, at(10), 10);
    assert_eq!(n(c), [2, 2, 6, 1, 1, 0, 0, 0]);
    assert!(!present(b, "old") && !present(b, "failed"));
    assert!(b.get_history(&id("old")).unwrap().is_empty());
    assert_eq!(
        b.get_result(&id("old")).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        b.get_exception(&id("failed")).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    for kept in ["new", "running", "silent"] {
        assert!(present(b, kept), "{kept} kept");
    }
    assert_eq!(b.get_history(&id("new")).unwrap().len(), 3);
    assert_eq!(b.get_history(&id("running")).unwrap().len(), 1);
    assert_eq!(b.get_result(&id("new")).unwrap(), "r2");
    assert_eq!(b.discover_app_infos().unwrap().len(), 1);
    assert!(b.get_runner_context(&rid("r-1")).unwrap().is_some());
    // Nothing more to do at the same cutoff.
    assert_eq!(n(prune(b, at(10), 10)), [0; 8]);
}

fn rid(r: &str) -> taskstate_core::RunnerId {
    taskstate_core::RunnerId::new(r)
}

/// A workflow with a child and a sub-workflow (its own child, run, data,
/// sub-invocation links): four invocations, one tree.
fn workflow_tree(b: &dyn StateBackend, last_of_s1: S) {
    let mut sub = child("S", "m.sub", Some("c1"), "S");
    sub.0.workflow.parent_workflow_id = Some(id("W"));
    b.upsert_invocations(&[
        root("W", "m.flow"),
        child("c1", "m.flow", Some("W"), "W"),
        sub,
        child("s1", "m.sub", Some("S"), "S"),
    ])
    .unwrap();
    b.store_workflow_run(&wf("W", "m.flow", None)).unwrap();
    b.store_workflow_run(&wf("S", "m.sub", Some("W"))).unwrap();
    b.store_workflow_sub_invocation(&id("W"), &id("c1"))
        .unwrap();
    b.store_workflow_sub_invocation(&id("W"), &id("S")).unwrap();
    b.set_workflow_data(&id("W"), "k", "v").unwrap();
    b.set_workflow_data(&id("S"), "k", "v").unwrap();
    for inv in ["W", "c1", "S"] {
        finished(b, inv, 5, S::Success);
    }
    b.add_histories(&[
        hist("s1", S::Registered, at(1)),
        hist("s1", last_of_s1, at(2)),
    ])
    .unwrap();
}

/// A tree whose invocations all ended goes whole: invocations, history,
/// runs, sub-invocation links and data of the workflow and its
/// sub-workflow.
pub fn prune_workflow_tree_with_sub_workflow_goes_whole(b: &dyn StateBackend) {
    workflow_tree(b, S::Success);
    root_elsewhere(b);
    let c = prune(b, at(10), 10);
    assert_eq!(n(c), [1, 4, 11, 0, 0, 2, 2, 2]);
    for inv in ["W", "c1", "S", "s1"] {
        assert!(!present(b, inv), "{inv} gone");
    }
    assert!(b.get_all_workflow_runs().unwrap().is_empty());
    assert!(b.all_workflow_sub_invocations().unwrap().is_empty());
    assert!(b.all_workflow_data().unwrap().is_empty());
    assert!(present(b, "elsewhere"));
}

/// An unrelated live task, to show a prune leaves it alone.
fn root_elsewhere(b: &dyn StateBackend) {
    b.upsert_invocations(&[root("elsewhere", "m.t")]).unwrap();
    b.add_histories(&[hist("elsewhere", S::Running, at(1))])
        .unwrap();
}

/// One running invocation deep in a tree keeps all of it.
pub fn prune_tree_with_one_running_invocation_is_kept_whole(b: &dyn StateBackend) {
    workflow_tree(b, S::Running);
    let before = dump(b);
    assert_eq!(n(prune(b, at(10), 10)), [0; 8]);
    assert_eq!(n(dry(b, at(10), 10)), [0; 8]);
    assert_eq!(dump(b), before);
}

/// An invocation with no history keeps its tree (nothing says it ended).
pub fn prune_invocation_without_history_keeps_its_tree(b: &dyn StateBackend) {
    b.upsert_invocations(&[root("p", "m.t"), child("quiet", "m.t", Some("p"), "p")])
        .unwrap();
    finished(b, "p", 5, S::Success);
    let before = dump(b);
    assert_eq!(n(prune(b, at(10), 10)), [0; 8]);
    assert_eq!(dump(b), before);
}

/// Each link alone joins two invocations into one tree: with one side
/// running, the finished side stays.
pub fn prune_follows_every_kind_of_link(b: &dyn StateBackend) {
    // (name, how the finished invocation `{name}-done` is linked to the
    // running `{name}-live`)
    let mut by_parent = child("parent-done", "m.t", Some("parent-live"), "parent-done");
    by_parent.0.workflow.workflow_id = id("parent-done");
    let by_workflow = child("workflow-done", "m.t", None, "workflow-live");
    let mut by_parent_wf = root("pwf-done", "m.t");
    by_parent_wf.0.workflow.parent_workflow_id = Some(id("pwf-live"));
    b.upsert_invocations(&[
        by_parent,
        root("parent-live", "m.t"),
        by_workflow,
        root("workflow-live", "m.t"),
        by_parent_wf,
        root("pwf-live", "m.t"),
        root("run-done", "m.t"),
        root("run-live", "m.t"),
        root("sub-done", "m.t"),
        root("sub-live", "m.t"),
    ])
    .unwrap();
    // A stored run of `run-done` whose parent workflow is `run-live`.
    b.store_workflow_run(&wf("run-done", "m.t", Some("run-live")))
        .unwrap();
    // `sub-live`'s workflow lists `sub-done` as a sub-invocation.
    b.store_workflow_sub_invocation(&id("sub-live"), &id("sub-done"))
        .unwrap();
    for kind in ["parent", "workflow", "pwf", "run", "sub"] {
        finished(b, &format!("{kind}-done"), 5, S::Success);
        b.add_histories(&[hist(&format!("{kind}-live"), S::Running, at(5))])
            .unwrap();
    }
    let before = dump(b);
    assert_eq!(n(prune(b, at(10), 2)), [0; 8]);
    assert_eq!(dump(b), before);
    // Once the live sides end, every pair goes, two invocations a tree.
    for kind in ["parent", "workflow", "pwf", "run", "sub"] {
        b.add_histories(&[hist(&format!("{kind}-live"), S::Success, at(6))])
            .unwrap();
    }
    let c = prune(b, at(10), 2);
    assert_eq!(n(c), [5, 10, 25, 0, 0, 1, 1, 0]);
    assert!(dump(b).is_empty());
}

/// SPEC §3 keys: a tree is judged by the rows stored under its ids, and
/// only those go with it, whatever invocation id their JSON names.
pub fn prune_judges_and_removes_history_by_key(b: &dyn StateBackend) {
    b.upsert_invocations(&[root("a", "m.t"), root("b", "m.t"), root("y", "m.t")])
        .unwrap();
    // One record of `a` under keys a and b (pynenc's batch write).
    let done = hist("a", S::Success, at(1));
    let (a, bk, y) = (id("a"), id("b"), id("y"));
    b.add_history_rows(&[HistoryRow::under(&a, &done), HistoryRow::under(&bk, &done)])
        .unwrap();
    // A running record naming `a`, stored only under y: y is live, a is not.
    let live = hist("a", S::Running, at(2));
    b.add_history_rows(&[HistoryRow::under(&y, &live)]).unwrap();
    let c = prune(b, at(10), 10);
    assert_eq!(n(c), [2, 2, 2, 0, 0, 0, 0, 0]);
    assert!(!present(b, "a") && !present(b, "b") && present(b, "y"));
    assert_eq!(b.get_history(&y).unwrap(), [live]);
}

/// Orphan rows (no stored invocation) go by their newest timestamp alone,
/// with the result and exception under the same id; an orphan result with
/// no history cannot be dated and stays.
pub fn prune_orphans_by_newest_timestamp(b: &dyn StateBackend) {
    b.add_histories(&[
        hist("orphan-old", S::Running, at(1)),
        hist("orphan-old", S::Pending, at(2)),
        hist("orphan-new", S::Success, at(1)),
        hist("orphan-new", S::Success, at(20)),
    ])
    .unwrap();
    b.set_result(&id("orphan-old"), "r").unwrap();
    b.set_exception(&id("orphan-old"), "e").unwrap();
    b.set_result(&id("undated"), "r").unwrap();
    let c = prune(b, at(10), 10);
    assert_eq!(n(c), [1, 0, 2, 1, 1, 0, 0, 0]);
    assert!(b.get_history(&id("orphan-old")).unwrap().is_empty());
    assert_eq!(b.get_history(&id("orphan-new")).unwrap().len(), 2);
    assert_eq!(b.get_result(&id("undated")).unwrap(), "r");
    assert_eq!(b.result_ids().unwrap(), [id("undated")]);
}

/// Small chunks: every expired tree goes once, across many transactions;
/// progress is reported after each, growing to the returned counts.
pub fn prune_pages_across_chunk_boundaries(b: &dyn StateBackend) {
    for i in 0..25 {
        let inv = format!("done-{i:02}");
        b.upsert_invocations(&[root(&inv, "m.t")]).unwrap();
        finished(b, &inv, 3 + i, S::Success);
        if i % 5 == 0 {
            let live = format!("live-{i:02}");
            b.upsert_invocations(&[root(&live, "m.t")]).unwrap();
            b.add_histories(&[hist(&live, S::Running, at(3 + i))])
                .unwrap();
        }
    }
    let mut seen: Vec<PruneProgress> = Vec::new();
    let c = b
        .prune(&PruneOptions::new(at(100)).chunk(3), &mut |p| {
            seen.push(p.clone())
        })
        .unwrap();
    assert_eq!(n(c), [25, 25, 75, 0, 0, 0, 0, 0]);
    assert!(seen.len() >= 9, "{} chunks", seen.len());
    assert!(
        seen.windows(2)
            .all(|w| w[0].counts.trees <= w[1].counts.trees)
    );
    let last = seen.last().unwrap();
    assert!(last.done && last.counts == c && last.kept_trees == 5);
    assert_eq!(last.fraction(), 1.0);
    assert_eq!(
        b.get_invocation_ids_by_workflow(None, None).unwrap().len(),
        5
    );
}

/// A dry run deletes nothing and reports exactly what the real run then
/// deletes; afterwards both report nothing.
pub fn prune_dry_run_equals_real_run(b: &dyn StateBackend) {
    workflow_tree(b, S::Success);
    b.upsert_invocations(&[root("p", "m.t"), child("q", "m.t", Some("p"), "p")])
        .unwrap();
    finished(b, "p", 4, S::Success);
    finished(b, "q", 6, S::Failed);
    b.set_result(&id("p"), "r").unwrap();
    b.add_histories(&[hist("orphan", S::Running, at(2))])
        .unwrap();
    root_elsewhere(b);
    for chunk in [1, 2, 100] {
        let before = dump(b);
        let would = dry(b, at(10), chunk);
        assert_eq!(dump(b), before, "a dry run changed the store");
        assert_eq!(n(would), [3, 6, 18, 1, 0, 2, 2, 2], "chunk {chunk}");
    }
    let did = prune(b, at(10), 2);
    assert_eq!(n(did), [3, 6, 18, 1, 0, 2, 2, 2]);
    assert_eq!(n(dry(b, at(10), 2)), [0; 8]);
    assert!(present(b, "elsewhere"));
}

/// Explicit deletion takes the whole tree of any id in it, whatever the
/// statuses; a dry run counts the same; unknown ids delete nothing.
pub fn delete_trees_takes_whole_trees_whatever_status(b: &dyn StateBackend) {
    workflow_tree(b, S::Running);
    root_elsewhere(b);
    let would = b.delete_trees(&[id("s1")], true).unwrap();
    assert_eq!(n(would), [1, 4, 11, 0, 0, 2, 2, 2]);
    let did = b.delete_trees(&[id("s1"), id("c1")], false).unwrap();
    assert_eq!(did, would);
    for inv in ["W", "c1", "S", "s1"] {
        assert!(!present(b, inv));
    }
    assert!(present(b, "elsewhere"));
    assert_eq!(n(b.delete_trees(&[id("nobody")], false).unwrap()), [0; 8]);
    let err = b.delete_trees(&[id("")], false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

/// A cutoff ahead of the clock and chunks out of range are refused before
/// anything is read.
pub fn prune_refuses_future_cutoff_and_bad_chunk(b: &dyn StateBackend) {
    b.upsert_invocations(&[root("old", "m.t")]).unwrap();
    finished(b, "old", 5, S::Success);
    let future = Timestamp::now().add_micros(86_400_000_000);
    for options in [
        PruneOptions::new(future),
        PruneOptions::new(at(10)).chunk(0),
    ] {
        let err = b.prune(&options, &mut |_| {}).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    }
    assert!(present(b, "old"));
}

/// Writers keep writing while a prune runs in small chunks: what they
/// write is untouched, every old tree is whole or gone (never half), and
/// nothing left links to a removed invocation.
pub fn prune_with_concurrent_writers(b: &dyn StateBackend) {
    const OLD: usize = 40;
    for i in 0..OLD {
        let (p, c) = (format!("old-{i:02}"), format!("old-{i:02}-child"));
        b.upsert_invocations(&[root(&p, "m.t"), child(&c, "m.t", Some(&p), &p)])
            .unwrap();
        finished(b, &p, 5 + i as i64, S::Success);
        finished(b, &c, 5 + i as i64, S::Success);
    }
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            for i in 0..60 {
                let inv = format!("new-{i:02}");
                b.upsert_invocations(&[root(&inv, "m.t")]).unwrap();
                finished(b, &inv, 1000 + i, S::Success);
                b.set_result(&id(&inv), "r").unwrap();
                if i % 6 == 0 {
                    // An old tree's child retried: live again, if still there.
                    let c = format!("old-{:02}-child", i / 2);
                    b.add_histories(&[hist(&c, S::Retry, at(60))]).unwrap();
                }
            }
        });
        let c = prune(b, at(100), 2);
        // Whole trees of two invocations; a retry row written after its
        // tree went is an orphan, which may go as a tree of its own.
        assert!(c.invocations <= 2 * OLD as u64 && c.invocations % 2 == 0);
        assert!(c.trees <= OLD as u64 + 10);
        writer.join().unwrap();
    });
    for i in 0..60 {
        let inv = format!("new-{i:02}");
        assert!(present(b, &inv), "{inv} written during the prune");
        assert_eq!(b.get_history(&id(&inv)).unwrap().len(), 3);
        assert_eq!(b.get_result(&id(&inv)).unwrap(), "r");
    }
    for i in 0..OLD {
        let (p, c) = (format!("old-{i:02}"), format!("old-{i:02}-child"));
        assert_eq!(present(b, &p), present(b, &c), "tree {p} half pruned");
        if present(b, &p) {
            // Kept: only because its child went live before its chunk.
            let h = b.get_history(&id(&c)).unwrap();
            assert_eq!(h.last().unwrap().status_record.status, S::Retry, "{p}");
            assert_eq!(b.get_history(&id(&p)).unwrap().len(), 3);
        }
    }
    for inv in b.get_invocation_ids_by_workflow(None, None).unwrap() {
        let (dto, _) = &*b.get_invocation(&inv).unwrap();
        if let Some(parent) = &dto.parent_invocation_id {
            assert!(b.get_invocation(parent).is_ok(), "{inv} lost its parent");
        }
    }
}
