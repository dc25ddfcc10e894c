//! The bulk path (SPEC §9): a snapshot reads every row of every kind page
//! by page, in each kind's order, as of one instant; `write_rows` stores a
//! page of rows of any kinds in one transaction, each as its point
//! operation would.

use std::sync::mpsc;
use std::time::Duration;

use taskstate_core::bulk::{cursor_after, for_each_page};
use taskstate_core::{
    AppId, ErrorKind, HistoryRow, InvocationStatus as S, KeyRange, Kind, Row, RunnerId,
    StateBackend, StoredHistory, TimeKey,
};

use crate::data::*;

/// Every row of `kind` in `b`'s snapshot, read `page` rows at a time.
pub fn paged(b: &dyn StateBackend, kind: Kind, page: usize) -> Vec<Row> {
    let mut snap = b.snapshot().unwrap();
    let mut out = Vec::new();
    for_each_page(snap.as_mut(), kind, page, |p| {
        assert!(
            p.items.len() <= page,
            "{kind}: a page of {page} held {}",
            p.items.len()
        );
        assert!(
            p.next.is_none() || p.items.len() == page,
            "{kind}: a short page with a next"
        );
        out.extend(p.items);
        Ok(())
    })
    .unwrap();
    out
}

fn stored(key: &str, record: taskstate_core::InvocationHistory) -> Row {
    let time_key = record.timestamp.key();
    Row::History(id(key), StoredHistory { record, time_key })
}

/// A store holding some of every kind, written by point operations.
fn populate(b: &dyn StateBackend) {
    b.store_app_info(&app("app-b")).unwrap();
    b.store_app_info(&app("app-a")).unwrap();
    b.store_runner_context(&with_parent(runner("r-child"), runner("r-parent")))
        .unwrap();
    b.upsert_invocations(&[
        root("i2", "shop.orders.pay"),
        child("i1", "shop.orders.ship", Some("i2"), "i2"),
        child("i3", "shop.orders.ship", Some("i2"), "i2"),
    ])
    .unwrap();
    let (i1, i2, i3) = (id("i1"), id("i2"), id("i3"));
    let batch = hist("i1", S::Pending, at(5));
    b.add_history_rows(&[HistoryRow::own(&hist("i2", S::Registered, at(1)))])
        .unwrap();
    b.add_history_rows(&[
        HistoryRow::under(&i3, &batch),
        HistoryRow::under(&i1, &batch),
    ])
    .unwrap();
    b.add_history_rows(&[HistoryRow::own(&hist("orphan", S::Running, at(3)))])
        .unwrap();
    b.set_result(&i2, "\"paid\"").unwrap();
    b.set_result(&id("orphan"), "1").unwrap();
    b.set_exception(&i3, "{\"boom\": 1}").unwrap();
    b.store_workflow_run(&wf("i2", "shop.orders.pay", None))
        .unwrap();
    b.store_workflow_run(&wf("w0", "shop.flows.nightly", Some("i2")))
        .unwrap();
    b.store_workflow_sub_invocation(&i2, &i3).unwrap();
    b.store_workflow_sub_invocation(&i2, &i1).unwrap();
    b.store_workflow_sub_invocation(&id("w0"), &i2).unwrap();
    b.set_workflow_data(&i2, "k2", "2").unwrap();
    b.set_workflow_data(&i2, "k1", "1").unwrap();
}

/// Every kind pages in its order at every page size, rows as stored:
/// history in insertion order under its keys, runner contexts one row each
/// with the parent by id.
pub fn bulk_snapshot_pages_every_kind_in_order(b: &dyn StateBackend) {
    populate(b);
    let batch = hist("i1", S::Pending, at(5));
    for page in [1, 2, 3, 1000] {
        let ids: Vec<String> = paged(b, Kind::Invocation, page)
            .iter()
            .map(|r| r.invocation_key().unwrap().as_str().to_owned())
            .collect();
        assert_eq!(ids, ["i1", "i2", "i3"], "page {page}");
        assert_eq!(
            paged(b, Kind::History, page),
            [
                stored("i2", hist("i2", S::Registered, at(1))),
                stored("i3", batch.clone()),
                stored("i1", batch.clone()),
                stored("orphan", hist("orphan", S::Running, at(3))),
            ],
            "page {page}"
        );
        assert_eq!(
            paged(b, Kind::Result, page),
            [
                Row::Result(id("i2"), "\"paid\"".into()),
                Row::Result(id("orphan"), "1".into())
            ]
        );
        assert_eq!(
            paged(b, Kind::Exception, page),
            [Row::Exception(id("i3"), "{\"boom\": 1}".into())]
        );
        assert_eq!(
            paged(b, Kind::WorkflowRun, page),
            [
                Row::WorkflowRun(wf("i2", "shop.orders.pay", None)),
                Row::WorkflowRun(wf("w0", "shop.flows.nightly", Some("i2")))
            ]
        );
        assert_eq!(
            paged(b, Kind::SubInvocation, page),
            [
                Row::SubInvocation(id("i2"), id("i1")),
                Row::SubInvocation(id("i2"), id("i3")),
                Row::SubInvocation(id("w0"), id("i2")),
            ]
        );
        assert_eq!(
            paged(b, Kind::WorkflowData, page),
            [
                Row::WorkflowData(id("i2"), "k1".into(), "1".into()),
                Row::WorkflowData(id("i2"), "k2".into(), "2".into()),
            ]
        );
        assert_eq!(
            paged(b, Kind::AppInfo, page),
            [Row::AppInfo(app("app-a")), Row::AppInfo(app("app-b"))]
        );
        assert_eq!(
            paged(b, Kind::RunnerContext, page),
            [
                Row::RunnerContext(runner("r-child"), Some(RunnerId::new("r-parent"))),
                Row::RunnerContext(runner("r-parent"), None),
            ]
        );
    }
    let mut snap = b.snapshot().unwrap();
    let want = [
        (Kind::Invocation, 3),
        (Kind::History, 4),
        (Kind::Result, 2),
        (Kind::Exception, 1),
        (Kind::WorkflowRun, 2),
        (Kind::SubInvocation, 3),
        (Kind::WorkflowData, 2),
        (Kind::AppInfo, 2),
        (Kind::RunnerContext, 2),
    ];
    for (kind, n) in want {
        assert_eq!(snap.count(kind).unwrap(), n, "{kind}");
    }
}

/// A replaced history row moves to the end of the insertion order, as the
/// point read of time ranges shows it.
pub fn bulk_history_replacement_takes_the_latest_position(b: &dyn StateBackend) {
    let r1 = hist("a", S::Running, at(1));
    let r2 = hist("b", S::Running, at(1));
    b.add_histories(&[r1.clone(), r2.clone()]).unwrap();
    let mut again = r1.clone();
    again.runner_context_id = RunnerId::new("r-2");
    b.add_histories(std::slice::from_ref(&again)).unwrap();
    assert_eq!(
        paged(b, Kind::History, 1),
        [stored("b", r2), stored("a", again)]
    );
}

/// `keyed` answers by key range (after, exclusive; upto, inclusive), each
/// key's history in (time key, insertion) order; `children` by parent.
pub fn bulk_keyed_ranges_and_children(b: &dyn StateBackend) {
    populate(b);
    let batch = hist("i1", S::Pending, at(5));
    let late = hist("i1", S::Running, at(9));
    let early = hist("i1", S::Registered, at(0));
    b.add_histories(&[late.clone(), early.clone()]).unwrap();
    let mut snap = b.snapshot().unwrap();
    let range = |a: Option<&str>, u: Option<&str>| KeyRange {
        after: a.map(id),
        upto: u.map(id),
    };
    assert_eq!(
        snap.keyed(Kind::History, &range(None, Some("i1"))).unwrap(),
        [
            stored("i1", early),
            stored("i1", batch.clone()),
            stored("i1", late)
        ]
    );
    assert_eq!(
        snap.keyed(Kind::History, &range(Some("i1"), Some("i3")))
            .unwrap(),
        [
            stored("i2", hist("i2", S::Registered, at(1))),
            stored("i3", batch)
        ]
    );
    assert_eq!(
        snap.keyed(Kind::History, &range(Some("i3"), None)).unwrap(),
        [stored("orphan", hist("orphan", S::Running, at(3)))]
    );
    assert_eq!(
        snap.keyed(Kind::Result, &range(Some("i1"), None)).unwrap(),
        [
            Row::Result(id("i2"), "\"paid\"".into()),
            Row::Result(id("orphan"), "1".into())
        ]
    );
    assert_eq!(
        snap.keyed(Kind::Exception, &range(None, Some("i2")))
            .unwrap(),
        []
    );
    assert_eq!(
        snap.keyed(Kind::Exception, &KeyRange::all()).unwrap().len(),
        1
    );
    assert_eq!(
        snap.children(&KeyRange::all()).unwrap(),
        [(id("i2"), id("i1")), (id("i2"), id("i3"))]
    );
    assert_eq!(snap.children(&range(Some("i2"), None)).unwrap(), []);
    assert_eq!(
        snap.children(&range(Some("i1"), Some("i2"))).unwrap().len(),
        2
    );
    for kind in [Kind::Invocation, Kind::AppInfo, Kind::SubInvocation] {
        let e = snap.keyed(kind, &KeyRange::all()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{kind}: {e}");
    }
}

/// A key range whose lower bound lies above its upper one, or whose two
/// bounds are the same id (after it, up to it), holds no key: every keyed
/// kind and the child lists read nothing, as a SQL `key > a AND key <= u`
/// does, never a panic.
pub fn bulk_empty_and_inverted_key_ranges_read_nothing(b: &dyn StateBackend) {
    populate(b);
    let mut snap = b.snapshot().unwrap();
    for (after, upto) in [("i3", "i1"), ("orphan", "i2"), ("i2", "i2")] {
        let range = KeyRange {
            after: Some(id(after)),
            upto: Some(id(upto)),
        };
        for kind in [Kind::History, Kind::Result, Kind::Exception] {
            assert_eq!(
                snap.keyed(kind, &range).unwrap(),
                [],
                "{kind} after {after} up to {upto}"
            );
        }
        assert_eq!(
            snap.children(&range).unwrap(),
            [],
            "after {after} up to {upto}"
        );
    }
}

/// Rows written by `write_rows` read back through the point operations
/// exactly as if those had written them; a runner row may come before its
/// parent's.
pub fn bulk_write_rows_reads_back_through_point_operations(b: &dyn StateBackend) {
    let batch = hist("i1", S::Pending, at(5));
    // Stored two hours before its instant, as pynenc stores a naive
    // timestamp written at UTC+02:00.
    let naive = hist("i2", S::Running, at(7));
    let shifted = TimeKey::from_seconds(at(7).key().seconds() - 7200.0);
    let rows = vec![
        Row::RunnerContext(runner("r-child"), Some(RunnerId::new("r-parent"))),
        Row::RunnerContext(runner("r-parent"), None),
        Row::AppInfo(app("app-a")),
        Row::Invocation(Box::new(root("i2", "shop.orders.pay"))),
        Row::Invocation(Box::new(child("i1", "shop.orders.ship", Some("i2"), "i2"))),
        stored("i1", batch.clone()),
        stored("i3", batch.clone()),
        Row::History(
            id("i2"),
            StoredHistory {
                record: naive.clone(),
                time_key: shifted,
            },
        ),
        Row::Result(id("i2"), "\"paid\"".into()),
        Row::Exception(id("i1"), "e".into()),
        Row::WorkflowRun(wf("i2", "shop.orders.pay", None)),
        Row::SubInvocation(id("i2"), id("i1")),
        Row::WorkflowData(id("i2"), "k".into(), "v".into()),
    ];
    b.write_rows(&rows).unwrap();
    assert_eq!(
        *b.get_invocation(&id("i1")).unwrap(),
        child("i1", "shop.orders.ship", Some("i2"), "i2")
    );
    assert_eq!(strs(&b.get_child_invocations(&id("i2")).unwrap()), ["i1"]);
    assert_eq!(
        b.get_history(&id("i3")).unwrap(),
        std::slice::from_ref(&batch)
    );
    let h = b.get_history_rows(&id("i2")).unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].time_key, shifted);
    assert_eq!(h[0].record, naive);
    assert_eq!(b.get_result(&id("i2")).unwrap(), "\"paid\"");
    assert_eq!(b.get_exception(&id("i1")).unwrap(), "e");
    assert_eq!(
        b.get_all_workflow_runs().unwrap(),
        [wf("i2", "shop.orders.pay", None)]
    );
    assert_eq!(
        strs(&b.get_workflow_sub_invocations(&id("i2")).unwrap()),
        ["i1"]
    );
    assert_eq!(
        b.get_workflow_data(&id("i2"), "k").unwrap().as_deref(),
        Some("v")
    );
    assert_eq!(b.get_app_info(&AppId::new("app-a")).unwrap(), app("app-a"));
    assert_eq!(
        b.get_runner_context(&RunnerId::new("r-child")).unwrap(),
        Some(with_parent(runner("r-child"), runner("r-parent")))
    );
    // And the snapshot reads back what was written, kind by kind.
    for kind in Kind::ALL {
        let mut want: Vec<Row> = rows.iter().filter(|r| r.kind() == kind).cloned().collect();
        if kind != Kind::History {
            want.sort_by_key(|r| format!("{r:?}"));
        }
        let mut got = paged(b, kind, 2);
        if kind != Kind::History {
            got.sort_by_key(|r| format!("{r:?}"));
        }
        assert_eq!(got, want, "{kind}");
    }
}

/// One bad row anywhere refuses the whole call: nothing is stored.
pub fn bulk_write_rows_is_atomic(b: &dyn StateBackend) {
    let good = Row::Invocation(Box::new(root("i1", "shop.orders.pay")));
    let long = "s".repeat(taskstate_core::MAX_ID_BYTES + 1);
    let bad_rows = [
        Row::Result(id(&long), "1".into()),
        Row::WorkflowData(id("w"), long.clone(), "v".into()),
        Row::Invocation(Box::new(root("", "shop.orders.pay"))),
        stored("", hist("i1", S::Pending, at(2))),
        Row::RunnerContext(runner("r"), Some(RunnerId::new("r"))),
        Row::RunnerContext(with_parent(runner("r"), runner("p")), None),
        Row::SubInvocation(id("w"), id(&"s".repeat(taskstate_core::MAX_ID_BYTES + 1))),
    ];
    for bad in bad_rows {
        let e = b
            .write_rows(&[
                good.clone(),
                stored("i1", hist("i1", S::Pending, at(1))),
                bad.clone(),
            ])
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad:?}: {e}");
        assert_eq!(
            b.check_row(&bad).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }
    let mut snap = b.snapshot().unwrap();
    for kind in Kind::ALL {
        assert_eq!(snap.count(kind).unwrap(), 0, "{kind}");
    }
    drop(snap);
    b.write_rows(&[]).unwrap();
}

/// Within one call a later row wins, for every kind that replaces.
pub fn bulk_write_rows_later_row_wins(b: &dyn StateBackend) {
    let first = hist("i1", S::Running, at(1));
    let mut second = first.clone();
    second.runner_context_id = RunnerId::new("r-2");
    let mut r2 = runner("r");
    r2.pid = 7;
    b.write_rows(&[
        Row::Invocation(Box::new(root("i1", "shop.orders.pay"))),
        Row::Invocation(Box::new(root("i1", "shop.orders.ship"))),
        stored("i1", first),
        stored("i1", second.clone()),
        Row::Result(id("i1"), "1".into()),
        Row::Result(id("i1"), "2".into()),
        Row::WorkflowData(id("w"), "k".into(), "1".into()),
        Row::WorkflowData(id("w"), "k".into(), "2".into()),
        Row::SubInvocation(id("w"), id("i1")),
        Row::SubInvocation(id("w"), id("i1")),
        Row::RunnerContext(runner("r"), None),
        Row::RunnerContext(r2.clone(), None),
    ])
    .unwrap();
    assert_eq!(
        *b.get_invocation(&id("i1")).unwrap(),
        root("i1", "shop.orders.ship")
    );
    assert_eq!(b.get_history(&id("i1")).unwrap(), [second]);
    assert_eq!(b.get_result(&id("i1")).unwrap(), "2");
    assert_eq!(
        b.get_workflow_data(&id("w"), "k").unwrap().as_deref(),
        Some("2")
    );
    assert_eq!(
        strs(&b.get_workflow_sub_invocations(&id("w")).unwrap()),
        ["i1"]
    );
    assert_eq!(b.get_runner_context(&RunnerId::new("r")).unwrap(), Some(r2));
}

/// A snapshot sees the store as it was when taken: rows written after it
/// (from another thread) are not in it, a new snapshot has them.
pub fn bulk_snapshot_is_one_instant(b: &dyn StateBackend) {
    populate(b);
    std::thread::scope(|s| {
        let mut snap = b.snapshot().unwrap();
        let before = snap.count(Kind::History).unwrap();
        let (done_tx, done_rx) = mpsc::channel();
        s.spawn(move || {
            b.add_histories(&[hist("late", S::Running, at(20))])
                .unwrap();
            b.set_result(&id("late"), "1").unwrap();
            b.upsert_invocations(&[root("i0", "shop.orders.pay")])
                .unwrap();
            let _ = done_tx.send(());
        });
        // Engines whose writers wait for open snapshots (the memory engine)
        // time out here; the others finish first. Either way the snapshot
        // must not change.
        let _ = done_rx.recv_timeout(Duration::from_millis(500));
        assert_eq!(snap.count(Kind::History).unwrap(), before);
        assert_eq!(paged_snapshot(snap.as_mut(), Kind::Invocation).len(), 3);
        assert!(
            snap.keyed(Kind::Result, &KeyRange::all())
                .unwrap()
                .iter()
                .all(|r| r.invocation_key().map(|k| k.as_str()) != Some("late"))
        );
        drop(snap);
    });
    assert_eq!(paged(b, Kind::Invocation, 10).len(), 4);
    assert_eq!(paged(b, Kind::Result, 10).len(), 3);
}

fn paged_snapshot(snap: &mut dyn taskstate_core::Snapshot, kind: Kind) -> Vec<Row> {
    let mut out = Vec::new();
    for_each_page(snap, kind, 2, |p| {
        out.extend(p.items);
        Ok(())
    })
    .unwrap();
    out
}

/// A page size of 0 and a cursor of another shape are invalid input.
pub fn bulk_bad_page_requests_are_invalid(b: &dyn StateBackend) {
    let mut snap = b.snapshot().unwrap();
    assert_eq!(
        snap.page(Kind::Result, None, 0).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let one = cursor_after(&["a"]);
    assert_eq!(
        snap.page(Kind::SubInvocation, Some(&one), 5)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    let not_a_number = cursor_after(&["x"]);
    assert_eq!(
        snap.page(Kind::History, Some(&not_a_number), 5)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    let foreign = taskstate_core::Cursor::after_id(&id("a"));
    assert_eq!(
        snap.page(Kind::Invocation, Some(&foreign), 5)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
}
