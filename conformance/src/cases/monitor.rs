//! Watching (`taskstate_core::monitor`): each key's latest status, listed newest first with
//! filters and keyset pages, and counted. SQL engines keep the latest row
//! with triggers; these cases pin that every write path (point, batch,
//! keyed, bulk, replacement, retention, purge) keeps it right.

use taskstate_core::{
    Cursor, ErrorKind, HistoryRow, InvocationFilter, InvocationId, InvocationStatus as S,
    InvocationSummary, Row, StateBackend, StoredHistory, TimeKey, TimeRange,
};

use crate::data::*;

/// Every page of a listing, concatenated, checking that only the last page
/// lacks a cursor.
fn list_all(
    b: &dyn StateBackend,
    filter: &InvocationFilter,
    page: usize,
) -> Vec<InvocationSummary> {
    let (mut out, mut cursor) = (Vec::new(), None::<Cursor>);
    loop {
        let p = b.list_invocations(filter, cursor.as_ref(), page).unwrap();
        assert!(p.items.len() <= page);
        out.extend(p.items);
        match p.next {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

fn ids_of(rows: &[InvocationSummary]) -> Vec<&str> {
    rows.iter().map(|s| s.invocation_id.as_str()).collect()
}

/// Four invocations with histories, one without, one orphan key:
/// a(done at 10), b(running at 30), c(failed at 20) in workflow a, d(success
/// at 30, tie with b) of another task.
fn fill(b: &dyn StateBackend) {
    b.upsert_invocations(&[
        root("a", "m.flow"),
        child("b", "m.step", Some("a"), "a"),
        child("c", "m.step", Some("a"), "a"),
        root("d", "m.other"),
        root("silent", "m.other"),
    ])
    .unwrap();
    b.add_histories(&[
        hist("a", S::Registered, at(1)),
        hist("a", S::Running, at(2)),
        hist("a", S::Success, at(10)),
        hist("b", S::Registered, at(3)),
        hist("b", S::Running, at(30)),
        hist("c", S::Failed, at(20)),
        hist("c", S::Registered, at(4)),
        hist("d", S::Success, at(30)),
        hist("orphan", S::Running, at(40)),
    ])
    .unwrap();
}

/// Newest latest row first, ties by id descending; each with its task,
/// workflow and latest status; no history or no invocation: not listed.
pub fn monitor_lists_latest_status_newest_first(b: &dyn StateBackend) {
    fill(b);
    let all = list_all(b, &InvocationFilter::default(), 100);
    assert_eq!(ids_of(&all), ["d", "b", "c", "a"]);
    let b_row = &all[1];
    assert_eq!(b_row.task_id, task("m.step"));
    assert_eq!(b_row.workflow_id, id("a"));
    assert_eq!(b_row.status, Some(S::Running));
    assert_eq!(b_row.time_key, at(30).key());
    // c's failed row is newest although written first.
    assert_eq!(all[2].status, Some(S::Failed));
    assert_eq!(all[3].status, Some(S::Success));

    let counts = b.latest_status_counts().unwrap();
    assert_eq!(
        counts.by_status,
        vec![
            ("failed".to_string(), 1),
            ("running".to_string(), 2), // b and the orphan key
            ("success".to_string(), 2),
        ]
    );
}

/// Filters combine with AND; the range is on the latest row, inclusive.
pub fn monitor_filters_combine(b: &dyn StateBackend) {
    fill(b);
    let f = |status, task_key: Option<&str>, wf: Option<&str>, range| InvocationFilter {
        status,
        task: task_key.map(task),
        workflow: wf.map(id),
        range,
    };
    let ids = |filter: InvocationFilter| -> Vec<String> {
        ids_of(&list_all(b, &filter, 100))
            .into_iter()
            .map(String::from)
            .collect()
    };
    assert_eq!(ids(f(Some(S::Success), None, None, None)), ["d", "a"]);
    assert_eq!(ids(f(Some(S::Running), None, None, None)), ["b"]);
    assert_eq!(
        ids(f(Some(S::Registered), None, None, None)),
        Vec::<String>::new()
    );
    assert_eq!(ids(f(None, Some("m.step"), None, None)), ["b", "c"]);
    assert_eq!(ids(f(None, None, Some("a"), None)), ["b", "c", "a"]);
    assert_eq!(ids(f(Some(S::Success), None, Some("a"), None)), ["a"]);
    assert_eq!(
        ids(f(None, Some("m.nothing"), None, None)),
        Vec::<String>::new()
    );
    let range = TimeRange::new(at(10), at(20));
    assert_eq!(ids(f(None, None, None, Some(range))), ["c", "a"]);
    let range = TimeRange::new(at(20), at(30));
    assert_eq!(
        ids(f(None, Some("m.step"), Some("a"), Some(range))),
        ["b", "c"]
    );
    // An inverted range is empty, not an error.
    let inverted = TimeRange::new(at(30), at(10));
    assert_eq!(
        ids(f(None, None, None, Some(inverted))),
        Vec::<String>::new()
    );
}

/// Pages of every size return every row once, in order, across ties;
/// bad requests are invalid.
pub fn monitor_pages_with_cursor(b: &dyn StateBackend) {
    let ids: Vec<String> = (0..7).map(|i| format!("inv-{i}")).collect();
    let pairs: Vec<_> = ids.iter().map(|i| root(i, "m.t")).collect();
    b.upsert_invocations(&pairs).unwrap();
    // inv-0..2 and inv-5 share one instant (ties broken by id, descending).
    let recs: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(n, i)| hist(i, S::Pending, at(if n < 3 { 5 } else { n as i64 })))
        .collect();
    b.add_histories(&recs).unwrap();
    let full = list_all(b, &InvocationFilter::default(), 100);
    assert_eq!(
        ids_of(&full),
        [
            "inv-6", "inv-5", "inv-2", "inv-1", "inv-0", "inv-4", "inv-3"
        ]
    );
    for page in 1..=7 {
        assert_eq!(
            list_all(b, &InvocationFilter::default(), page),
            full,
            "page size {page}"
        );
    }
    let p = b
        .list_invocations(&InvocationFilter::default(), None, 7)
        .unwrap();
    assert!(p.next.is_none(), "no cursor when nothing follows");

    let err = b
        .list_invocations(&InvocationFilter::default(), None, 0)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    for token in ["h:0000000000000000:1", "i:inv-1", "l:nothex:x", "garbage"] {
        let err = b
            .list_invocations(
                &InvocationFilter::default(),
                Some(&Cursor::from_token(token)),
                5,
            )
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{token}");
    }
}

/// The latest row follows SPEC §4 rule 3: on a timestamp tie the later
/// insertion wins, and a replaced row takes the latest position.
pub fn monitor_latest_follows_ties_and_replacement(b: &dyn StateBackend) {
    b.upsert_invocations(&[root("x", "m.t")]).unwrap();
    b.add_histories(&[hist("x", S::Running, at(5))]).unwrap();
    b.add_histories(&[hist("x", S::Success, at(5))]).unwrap();
    let status = || {
        list_all(b, &InvocationFilter::default(), 10)
            .iter()
            .map(|s| s.status)
            .collect::<Vec<_>>()
    };
    assert_eq!(status(), [Some(S::Success)]);
    // Writing the running row again (same identity) makes it the latest.
    b.add_histories(&[hist("x", S::Running, at(5))]).unwrap();
    assert_eq!(status(), [Some(S::Running)]);
    // An older row never displaces a newer one.
    b.add_histories(&[hist("x", S::Registered, at(1))]).unwrap();
    assert_eq!(status(), [Some(S::Running)]);
    assert_eq!(b.latest_status_counts().unwrap().get(S::Running), 1);
}

/// SPEC §3: the latest row of a key is the newest row stored under it,
/// whoever's record it is; bulk rows count at their stored time key.
pub fn monitor_latest_is_by_key_and_stored_time_key(b: &dyn StateBackend) {
    b.upsert_invocations(&[root("a", "m.t"), root("c", "m.t")])
        .unwrap();
    let (a, c) = (id("a"), id("c"));
    let shared = hist("a", S::Pending, at(2));
    b.add_history_rows(&[
        HistoryRow::under(&a, &shared),
        HistoryRow::under(&c, &shared),
    ])
    .unwrap();
    b.add_histories(&[hist("a", S::Running, at(3))]).unwrap();
    let all = list_all(b, &InvocationFilter::default(), 10);
    assert_eq!(ids_of(&all), ["a", "c"]);
    assert_eq!(all[1].status, Some(S::Pending));

    // A bulk row stored at a time key other than its record's instant.
    let record = hist("c", S::Success, at(1));
    let later = TimeKey::from_seconds(at(100).key().seconds());
    b.write_rows(&[Row::History(
        c.clone(),
        StoredHistory {
            record,
            time_key: later,
        },
    )])
    .unwrap();
    let all = list_all(b, &InvocationFilter::default(), 10);
    assert_eq!(ids_of(&all), ["c", "a"]);
    assert_eq!(all[0].status, Some(S::Success));
    assert_eq!(all[0].time_key, later);
}

/// Runs page by id, of one type or all, each once, the cursor only when
/// more follow; the pages together are `get_workflow_runs`.
pub fn monitor_workflow_runs_page_by_id(b: &dyn StateBackend) {
    for (w, ty) in [
        ("w5", "m.a"),
        ("w1", "m.b"),
        ("w3", "m.a"),
        ("w2", "m.a"),
        ("w4", "m.b"),
        ("w0", "m.a"),
    ] {
        b.store_workflow_run(&wf(w, ty, None)).unwrap();
    }
    let pages = |ty: Option<&str>, size: usize| -> Vec<Vec<String>> {
        let ty = ty.map(task);
        let (mut out, mut cursor) = (Vec::new(), None::<Cursor>);
        loop {
            let p = b
                .list_workflow_runs(ty.as_ref(), cursor.as_ref(), size)
                .unwrap();
            out.push(p.items.iter().map(|w| w.workflow_id.to_string()).collect());
            match p.next {
                Some(c) => cursor = Some(c),
                None => return out,
            }
        }
    };
    assert_eq!(pages(Some("m.a"), 2), [["w0", "w2"], ["w3", "w5"]]);
    assert_eq!(pages(Some("m.b"), 5), [vec!["w1", "w4"]]);
    assert_eq!(
        pages(None, 4),
        [vec!["w0", "w1", "w2", "w3"], vec!["w4", "w5"]]
    );
    assert_eq!(pages(Some("m.none"), 3), [Vec::<String>::new()]);
    let all: Vec<String> = b
        .get_workflow_runs(&task("m.a"))
        .unwrap()
        .iter()
        .map(|w| w.workflow_id.to_string())
        .collect();
    assert_eq!(all, pages(Some("m.a"), 1).concat());
    let err = b.list_workflow_runs(None, None, 0).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = b
        .list_workflow_runs(None, Some(&Cursor::from_token("l:00:x")), 3)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

/// Deleting trees and purging take their keys out of the listing and the
/// counts; a re-upsert that changes an invocation's task moves it between
/// task filters.
pub fn monitor_follows_deletes_purge_and_task_changes(b: &dyn StateBackend) {
    fill(b);
    b.delete_trees(&[id("d")], false).unwrap();
    assert_eq!(
        ids_of(&list_all(b, &InvocationFilter::default(), 10)),
        ["b", "c", "a"]
    );
    assert_eq!(b.latest_status_counts().unwrap().get(S::Success), 1);

    b.upsert_invocations(&[child("c", "m.moved", Some("a"), "a")])
        .unwrap();
    let moved = InvocationFilter {
        task: Some(task("m.moved")),
        ..InvocationFilter::default()
    };
    assert_eq!(ids_of(&list_all(b, &moved, 10)), ["c"]);
    let step = InvocationFilter {
        task: Some(task("m.step")),
        ..InvocationFilter::default()
    };
    assert_eq!(ids_of(&list_all(b, &step, 10)), ["b"]);

    b.purge().unwrap();
    assert!(list_all(b, &InvocationFilter::default(), 10).is_empty());
    assert_eq!(b.latest_status_counts().unwrap().total(), 0);
    // And it keeps working after a purge.
    b.upsert_invocations(&[root("n", "m.t")]).unwrap();
    b.add_histories(&[hist("n", S::Registered, at(1))]).unwrap();
    let all = list_all(b, &InvocationFilter::default(), 10);
    assert_eq!(
        all.iter()
            .map(|s| (s.invocation_id.clone(), s.status))
            .collect::<Vec<_>>(),
        [(InvocationId::new("n"), Some(S::Registered))]
    );
}
