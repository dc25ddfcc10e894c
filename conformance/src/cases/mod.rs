//! The cases: one plain function per behaviour, taking the engine as a trait
//! object. `suite!` turns each into a `#[test]` of the same name.
//!
//! Cases named `spec8_*` are SPEC §8 (the reference's own tests); `rule*_`
//! cases are SPEC §4 rules; the rest pin behaviour two engines could
//! otherwise disagree on.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;

use taskstate_core::{
    Cursor, Entity, Error, ErrorKind, InvocationHistory, InvocationId, InvocationStatus as S,
    RunnerId, StateBackend, TimeRange, Timestamp, WorkflowIdentity,
};

use crate::data::*;

fn all_history(b: &dyn StateBackend, range: TimeRange, page: usize) -> Vec<Vec<InvocationHistory>> {
    b.iter_history_in_timerange(range, page)
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn all_ids(b: &dyn StateBackend, range: TimeRange, page: usize) -> Vec<Vec<InvocationId>> {
    b.iter_invocations_in_timerange(range, page)
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// Runner ids of the contexts matching `partial`, in the order returned.
fn matching_runner_ids(b: &dyn StateBackend, partial: &str) -> Vec<String> {
    b.get_matching_runner_contexts(partial)
        .unwrap()
        .into_iter()
        .map(|c| c.runner_id.into_string())
        .collect()
}

fn assert_not_found(e: Error, entity: Entity, want_id: &str) {
    match e {
        Error::NotFound { entity: got, id } => {
            assert_eq!(got, entity);
            assert_eq!(id, want_id);
        }
        other => panic!("expected {entity} not found for {want_id:?}, got {other:?}"),
    }
}

// ---- SPEC §8 -------------------------------------------------------------

pub fn spec8_01_history_orders_by_timestamp(b: &dyn StateBackend) {
    b.add_histories(&[hist("inv", S::Running, at(2))]).unwrap();
    b.add_histories(&[hist("inv", S::Registered, at(1))])
        .unwrap();
    b.add_histories(&[hist("inv", S::Failed, at(3))]).unwrap();
    let h = b.get_history(&id("inv")).unwrap();
    assert_eq!(statuses(&h), [S::Registered, S::Running, S::Failed]);
}

pub fn spec8_02_upsert_same_invocation_four_times(b: &dyn StateBackend) {
    let pair = root("inv-1", "m.task");
    for _ in 0..4 {
        b.upsert_invocations(std::slice::from_ref(&pair)).unwrap();
    }
    let (inv, call) = b.get_invocation(&id("inv-1")).unwrap();
    assert_eq!(inv.invocation_id, pair.0.invocation_id);
    assert_eq!(call.call_id, pair.1.call_id);
    assert_eq!((inv, call), pair);
    assert_eq!(
        strs(&b.get_invocation_ids_by_workflow(None, None).unwrap()),
        ["inv-1"]
    );
}

pub fn spec8_03_call_without_arguments(b: &dyn StateBackend) {
    let pair = with_call("inv", call("m.noargs", &[]));
    assert_eq!(pair.1.call_id.args_id(), "no_args");
    b.upsert_invocations(&[pair]).unwrap();
    let (_, c) = b.get_invocation(&id("inv")).unwrap();
    assert!(c.serialized_arguments.is_empty());
    assert_eq!(c.call_id.key(), "m.noargs:no_args");
}

pub fn spec8_04_call_with_arguments(b: &dyn StateBackend) {
    let pair = with_call("inv", call("m.f", &[("a", "1"), ("b", "\"two\"")]));
    b.upsert_invocations(std::slice::from_ref(&pair)).unwrap();
    let (_, c) = b.get_invocation(&id("inv")).unwrap();
    let names: BTreeSet<&str> = c.serialized_arguments.iter().map(|(k, _)| k).collect();
    assert_eq!(names, BTreeSet::from(["a", "b"]));
    assert_eq!(c.serialized_arguments.get("a"), Some("1"));
    assert_eq!(c.serialized_arguments.get("b"), Some("\"two\""));
    assert_eq!(c, pair.1);
}

pub fn spec8_05_unknown_invocation_is_not_found(b: &dyn StateBackend) {
    assert_not_found(
        b.get_invocation(&id("nope")).unwrap_err(),
        Entity::Invocation,
        "nope",
    );
}

pub fn spec8_06_history_records_round_trip_exactly(b: &dyn StateBackend) {
    let recs = [
        hist("inv", S::Running, at(2).add_micros(123_457)),
        hist("inv", S::Registered, at(1).add_micros(1)),
        hist("inv", S::Pending, at(1).add_micros(999_999)),
    ];
    b.add_histories(&recs).unwrap();
    let h = b.get_history(&id("inv")).unwrap();
    assert_eq!(h.len(), 3);
    assert_eq!(h[0], recs[1]);
    assert_eq!(h[1], recs[2]);
    assert_eq!(h[2], recs[0]);
    assert_eq!(h[2].status_record, recs[0].status_record);
}

pub fn spec8_07_history_of_unknown_invocation_is_empty(b: &dyn StateBackend) {
    assert!(b.get_history(&id("nobody")).unwrap().is_empty());
}

pub fn spec8_08_result_set_get_missing(b: &dyn StateBackend) {
    b.set_result(&id("inv"), "some result").unwrap();
    assert_eq!(b.get_result(&id("inv")).unwrap(), "some result");
    assert_not_found(
        b.get_result(&id("other")).unwrap_err(),
        Entity::Result,
        "other",
    );
}

pub fn spec8_09_exception_set_get_missing(b: &dyn StateBackend) {
    let exc = r#"{"error_name": "ValueError", "pynenc_error": false, "error_data": "{\"py/reduce\": []}"}"#;
    b.set_exception(&id("inv"), exc).unwrap();
    assert_eq!(b.get_exception(&id("inv")).unwrap(), exc);
    assert_not_found(
        b.get_exception(&id("other")).unwrap_err(),
        Entity::Exception,
        "other",
    );
}

pub fn spec8_10_workflow_data(b: &dyn StateBackend) {
    b.set_workflow_data(&id("wf"), "key", "\"value\"").unwrap();
    assert_eq!(
        b.get_workflow_data(&id("wf"), "key").unwrap().as_deref(),
        Some("\"value\"")
    );
    assert_eq!(b.get_workflow_data(&id("wf"), "missing").unwrap(), None);
    assert_eq!(b.get_workflow_data(&id("no-wf"), "key").unwrap(), None);
}

pub fn spec8_11_app_info_store_get_discover(b: &dyn StateBackend) {
    let info = app("shop");
    b.store_app_info(&info).unwrap();
    assert_eq!(b.get_app_info("shop").unwrap(), info);
    assert_eq!(b.get_app_info("shop").unwrap().to_json(), info.to_json());
    assert_eq!(b.discover_app_infos().unwrap(), [info]);
    assert_not_found(
        b.get_app_info("other").unwrap_err(),
        Entity::AppInfo,
        "other",
    );
}

pub fn spec8_12_workflow_run_stored_three_times_is_one(b: &dyn StateBackend) {
    let wf = WorkflowIdentity {
        workflow_id: id("inv-1"),
        workflow_type: task("m.func_1"),
        parent_workflow_id: None,
    };
    for _ in 0..3 {
        b.store_workflow_run(&wf).unwrap();
    }
    assert_eq!(b.get_workflow_runs(&task("m.func_1")).unwrap(), [wf]);
}

pub fn spec8_13_workflow_types_and_runs(b: &dyn StateBackend) {
    let run = |w: &str, t: &str| WorkflowIdentity {
        workflow_id: id(w),
        workflow_type: task(t),
        parent_workflow_id: None,
    };
    let runs = [
        run("inv-1", "m.func_1"),
        run("inv-2", "m.func_1"),
        run("inv-3", "m.func_2"),
    ];
    for r in &runs {
        b.store_workflow_run(r).unwrap();
    }
    assert_eq!(
        b.get_all_workflow_types().unwrap(),
        [task("m.func_1"), task("m.func_2")]
    );
    assert_eq!(b.get_all_workflow_runs().unwrap(), runs);
    assert_eq!(b.get_workflow_runs(&task("m.func_1")).unwrap(), runs[..2]);
    assert_eq!(b.get_workflow_runs(&task("m.func_2")).unwrap(), runs[2..]);
    assert!(b.get_workflow_runs(&task("m.func_3")).unwrap().is_empty());
}

pub fn spec8_14_workflow_sub_invocations(b: &dyn StateBackend) {
    b.store_workflow_sub_invocation(&id("wf"), &id("sub-2"))
        .unwrap();
    b.store_workflow_sub_invocation(&id("wf"), &id("sub-1"))
        .unwrap();
    b.store_workflow_sub_invocation(&id("wf"), &id("sub-1"))
        .unwrap();
    b.store_workflow_sub_invocation(&id("other"), &id("sub-3"))
        .unwrap();
    assert_eq!(
        strs(&b.get_workflow_sub_invocations(&id("wf")).unwrap()),
        ["sub-1", "sub-2"]
    );
    assert!(
        b.get_workflow_sub_invocations(&id("none"))
            .unwrap()
            .is_empty()
    );
}

pub fn spec8_15_history_in_timerange(b: &dyn StateBackend) {
    let recs = [
        hist("a", S::Registered, at(-30 * 60)),
        hist("b", S::Pending, at(30 * 60)),
        hist("b", S::Registered, at(10 * 60)),
        hist("c", S::Registered, at(2 * 3600)),
    ];
    b.add_histories(&recs).unwrap();
    let range = TimeRange::new(base(), at(3600));
    let got: Vec<_> = all_history(b, range, 100).concat();
    assert_eq!(got, [recs[2].clone(), recs[1].clone()]);
}

pub fn spec8_16_invocation_ids_in_timerange(b: &dyn StateBackend) {
    b.add_histories(&[
        hist("inv-multi", S::Registered, at(10 * 60)),
        hist("inv-multi", S::Pending, at(20 * 60)),
        hist("inv-single", S::Registered, at(30 * 60)),
        hist("inv-outside", S::Registered, at(2 * 3600)),
    ])
    .unwrap();
    let got = all_ids(b, TimeRange::new(base(), at(3600)), 100).concat();
    assert_eq!(strs(&got), ["inv-multi", "inv-single"]);
}

pub fn spec8_17_runner_contexts(b: &dyn StateBackend) {
    let ctx = runner("alpha-001");
    assert_eq!(b.get_runner_context(&ctx.runner_id).unwrap(), None);
    b.store_runner_context(&ctx).unwrap();
    assert_eq!(b.get_runner_context(&ctx.runner_id).unwrap(), Some(ctx));
    b.store_runner_context(&runner("beta-002")).unwrap();
    b.store_runner_context(&runner("alpha-003")).unwrap();
    let found = |s: &str| matching_runner_ids(b, s);
    assert_eq!(found("alpha"), ["alpha-001", "alpha-003"]);
    assert_eq!(found("beta"), ["beta-002"]);
    assert!(found("gamma").is_empty());
}

pub fn spec8_18_invocation_ids_by_workflow(b: &dyn StateBackend) {
    b.upsert_invocations(&[
        root("w1", "m.flow"),
        child("w1-a", "m.flow", Some("w1"), "w1"),
        root("w2", "m.other"),
    ])
    .unwrap();
    assert_eq!(
        strs(
            &b.get_invocation_ids_by_workflow(Some(&id("w1")), None)
                .unwrap()
        ),
        ["w1", "w1-a"]
    );
    assert_eq!(
        strs(
            &b.get_invocation_ids_by_workflow(None, Some(&task("m.flow")))
                .unwrap()
        ),
        ["w1", "w1-a"]
    );
    assert!(
        b.get_invocation_ids_by_workflow(Some(&id("unknown")), None)
            .unwrap()
            .is_empty()
    );
}

pub fn spec8_19_purge_empties_every_table(b: &dyn StateBackend) {
    populate_everything(b);
    b.purge().unwrap();
    assert_store_empty(b);
    // Usable afterwards.
    b.set_result(&id("after"), "r").unwrap();
    assert_eq!(b.get_result(&id("after")).unwrap(), "r");
}

/// Writes one of every kind of record.
pub fn populate_everything(b: &dyn StateBackend) {
    b.upsert_invocations(&[root("p", "m.t"), child("c", "m.t", Some("p"), "p")])
        .unwrap();
    b.add_histories(&[
        hist("p", S::Registered, at(1)),
        hist("orphan", S::Registered, at(2)),
    ])
    .unwrap();
    b.set_result(&id("p"), "r").unwrap();
    b.set_exception(&id("c"), "e").unwrap();
    b.store_workflow_run(&WorkflowIdentity {
        workflow_id: id("p"),
        workflow_type: task("m.t"),
        parent_workflow_id: Some(id("outer")),
    })
    .unwrap();
    b.store_workflow_sub_invocation(&id("p"), &id("c")).unwrap();
    b.set_workflow_data(&id("p"), "k", "v").unwrap();
    b.store_app_info(&app("app")).unwrap();
    b.store_runner_context(&with_parent(runner("child"), runner("parent")))
        .unwrap();
}

/// Asserts every read says the store is empty.
pub fn assert_store_empty(b: &dyn StateBackend) {
    assert!(
        b.get_invocation_ids_by_workflow(None, None)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        b.get_invocation(&id("p")).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(b.get_child_invocations(&id("p")).unwrap().is_empty());
    assert!(
        b.get_invocation_ids_by_workflow(Some(&id("p")), None)
            .unwrap()
            .is_empty()
    );
    assert!(b.get_history(&id("p")).unwrap().is_empty());
    assert!(b.get_history(&id("orphan")).unwrap().is_empty());
    assert_eq!(all_history(b, TimeRange::all(), 10), Vec::<Vec<_>>::new());
    assert_eq!(all_ids(b, TimeRange::all(), 10), Vec::<Vec<_>>::new());
    assert_eq!(
        b.get_result(&id("p")).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        b.get_exception(&id("c")).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(b.result_ids().unwrap().is_empty());
    assert!(b.exception_ids().unwrap().is_empty());
    assert!(b.get_all_workflow_runs().unwrap().is_empty());
    assert!(b.get_all_workflow_types().unwrap().is_empty());
    assert!(b.get_workflow_sub_invocations(&id("p")).unwrap().is_empty());
    assert!(b.all_workflow_sub_invocations().unwrap().is_empty());
    assert_eq!(b.get_workflow_data(&id("p"), "k").unwrap(), None);
    assert!(b.all_workflow_data().unwrap().is_empty());
    assert!(b.discover_app_infos().unwrap().is_empty());
    assert_eq!(
        b.get_app_info("app").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(b.get_matching_runner_contexts("").unwrap().is_empty());
    assert_eq!(
        b.get_runner_context(&RunnerId::new("parent")).unwrap(),
        None
    );
}

// ---- SPEC §4 rules -------------------------------------------------------

pub fn rule2_lists_sorted_ascending_by_id(b: &dyn StateBackend) {
    for inv in ["c3", "c1", "c2"] {
        b.upsert_invocations(&[child(inv, "m.t", Some("p"), "wf")])
            .unwrap();
        b.store_workflow_sub_invocation(&id("wf"), &id(inv))
            .unwrap();
        b.store_workflow_run(&WorkflowIdentity {
            workflow_id: id(inv),
            workflow_type: task(&format!("m.t_{inv}")),
            parent_workflow_id: None,
        })
        .unwrap();
        b.store_app_info(&app(inv)).unwrap();
        b.store_runner_context(&runner(&format!("r-{inv}")))
            .unwrap();
        b.set_result(&id(inv), "r").unwrap();
        b.set_exception(&id(inv), "e").unwrap();
        b.set_workflow_data(&id("wf"), inv, "v").unwrap();
    }
    let want = ["c1", "c2", "c3"];
    assert_eq!(strs(&b.get_child_invocations(&id("p")).unwrap()), want);
    assert_eq!(
        strs(
            &b.get_invocation_ids_by_workflow(Some(&id("wf")), None)
                .unwrap()
        ),
        want
    );
    assert_eq!(
        strs(&b.get_invocation_ids_by_workflow(None, None).unwrap()),
        want
    );
    assert_eq!(
        strs(&b.get_workflow_sub_invocations(&id("wf")).unwrap()),
        want
    );
    let runs: Vec<_> = b
        .get_all_workflow_runs()
        .unwrap()
        .into_iter()
        .map(|w| w.workflow_id)
        .collect();
    assert_eq!(strs(&runs), want);
    let types: Vec<_> = b
        .get_all_workflow_types()
        .unwrap()
        .iter()
        .map(|t| t.key().to_owned())
        .collect();
    assert_eq!(types, ["m.t_c1", "m.t_c2", "m.t_c3"]);
    let apps: Vec<_> = b
        .discover_app_infos()
        .unwrap()
        .into_iter()
        .map(|a| a.app_id)
        .collect();
    assert_eq!(apps, want);
    let ctxs = matching_runner_ids(b, "r-");
    assert_eq!(ctxs, ["r-c1", "r-c2", "r-c3"]);
    assert_eq!(strs(&b.result_ids().unwrap()), want);
    assert_eq!(strs(&b.exception_ids().unwrap()), want);
    let keys: Vec<_> = b
        .all_workflow_data()
        .unwrap()
        .into_iter()
        .map(|(_, k, _)| k)
        .collect();
    assert_eq!(keys, want);
}

pub fn rule2_sort_is_code_point_order(b: &dyn StateBackend) {
    // Upper case before lower case, '-' before '.', ASCII before é before emoji.
    let ids = ["é", "a", "B", "a-b", "a.b", "😀", "b", "Z", "aa"];
    for i in ids {
        b.upsert_invocations(&[child(i, "m.t", Some("p"), "w")])
            .unwrap();
    }
    let mut want: Vec<&str> = ids.to_vec();
    want.sort();
    assert_eq!(want, ["B", "Z", "a", "a-b", "a.b", "aa", "b", "é", "😀"]);
    assert_eq!(strs(&b.get_child_invocations(&id("p")).unwrap()), want);
}

pub fn rule2_history_ties_keep_insertion_order(b: &dyn StateBackend) {
    let t = at(5);
    b.add_histories(&[hist("inv", S::Running, t)]).unwrap();
    b.add_histories(&[hist("inv", S::Pending, t), hist("inv", S::Registered, t)])
        .unwrap();
    b.add_histories(&[hist("inv", S::Success, t)]).unwrap();
    let want = [S::Running, S::Pending, S::Registered, S::Success];
    assert_eq!(statuses(&b.get_history(&id("inv")).unwrap()), want);
    let page = all_history(b, TimeRange::new(t, t), 100).concat();
    assert_eq!(statuses(&page), want);
}

pub fn rule2_history_ties_across_invocations_in_range(b: &dyn StateBackend) {
    let t = at(5);
    b.add_histories(&[hist("z", S::Registered, t), hist("a", S::Registered, t)])
        .unwrap();
    b.add_histories(&[hist("m", S::Registered, t)]).unwrap();
    let got: Vec<_> = all_history(b, TimeRange::all(), 2)
        .concat()
        .into_iter()
        .map(|h| h.invocation_id.into_string())
        .collect();
    assert_eq!(got, ["z", "a", "m"]);
}

pub fn rule3_same_identity_replaces(b: &dyn StateBackend) {
    let first = hist("inv", S::Running, at(1));
    let mut second = first.clone();
    second.runner_context_id = RunnerId::new("other-runner");
    b.add_histories(&[first]).unwrap();
    b.add_histories(&[second.clone()]).unwrap();
    assert_eq!(b.get_history(&id("inv")).unwrap(), [second.clone()]);
    assert_eq!(all_history(b, TimeRange::all(), 10).concat(), [second]);
}

pub fn rule3_replaced_record_takes_latest_insertion_position(b: &dyn StateBackend) {
    let t = at(1);
    let a = hist("inv", S::Registered, t);
    b.add_histories(&[a.clone(), hist("inv", S::Pending, t)])
        .unwrap();
    let mut a2 = a;
    a2.runner_context_id = RunnerId::new("again");
    b.add_histories(&[a2.clone()]).unwrap();
    let h = b.get_history(&id("inv")).unwrap();
    assert_eq!(statuses(&h), [S::Pending, S::Registered]);
    assert_eq!(h[1], a2);
}

pub fn rule3_same_instant_other_offset_is_same_record(b: &dyn StateBackend) {
    let utc = hist("inv", S::Running, at(1));
    let mut shifted = utc.clone();
    shifted.timestamp = Timestamp::from_micros_with_offset(at(1).micros(), 7200).unwrap();
    b.add_histories(&[utc]).unwrap();
    b.add_histories(&[shifted.clone()]).unwrap();
    let h = b.get_history(&id("inv")).unwrap();
    assert_eq!(h, [shifted]);
    assert_eq!(h[0].timestamp.to_string(), "2025-01-15T14:00:01+02:00");
}

pub fn rule3_same_timestamp_other_status_both_kept(b: &dyn StateBackend) {
    b.add_histories(&[
        hist("inv", S::Running, at(1)),
        hist("inv", S::Failed, at(1)),
    ])
    .unwrap();
    assert_eq!(
        statuses(&b.get_history(&id("inv")).unwrap()),
        [S::Running, S::Failed]
    );
}

pub fn rule3_duplicate_within_one_batch_keeps_last(b: &dyn StateBackend) {
    let a = hist("inv", S::Running, at(1));
    let mut a2 = a.clone();
    a2.runner_context_id = RunnerId::new("last");
    b.add_histories(&[a, hist("inv", S::Pending, at(1)), a2.clone()])
        .unwrap();
    let h = b.get_history(&id("inv")).unwrap();
    assert_eq!(statuses(&h), [S::Pending, S::Running]);
    assert_eq!(h[1], a2);
}

pub fn rule4_upsert_reparents(b: &dyn StateBackend) {
    b.upsert_invocations(&[child("kid", "m.t", Some("p1"), "w1")])
        .unwrap();
    b.upsert_invocations(&[child("kid", "m.t", Some("p2"), "w1")])
        .unwrap();
    assert!(b.get_child_invocations(&id("p1")).unwrap().is_empty());
    assert_eq!(strs(&b.get_child_invocations(&id("p2")).unwrap()), ["kid"]);
    b.upsert_invocations(&[child("kid", "m.t", None, "w1")])
        .unwrap();
    assert!(b.get_child_invocations(&id("p2")).unwrap().is_empty());
    assert_eq!(
        b.get_invocation(&id("kid")).unwrap().0.parent_invocation_id,
        None
    );
}

pub fn rule4_upsert_moves_workflow_membership(b: &dyn StateBackend) {
    b.upsert_invocations(&[child("inv", "m.a", None, "w1")])
        .unwrap();
    b.upsert_invocations(&[child("inv", "m.b", None, "w2")])
        .unwrap();
    assert!(
        b.get_invocation_ids_by_workflow(Some(&id("w1")), None)
            .unwrap()
            .is_empty()
    );
    assert!(
        b.get_invocation_ids_by_workflow(None, Some(&task("m.a")))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        strs(
            &b.get_invocation_ids_by_workflow(Some(&id("w2")), Some(&task("m.b")))
                .unwrap()
        ),
        ["inv"]
    );
    let (inv, call) = b.get_invocation(&id("inv")).unwrap();
    assert_eq!(inv.call_id.task_id().key(), "m.b");
    assert_eq!(call.call_id, inv.call_id);
}

pub fn rule4_workflow_filters_combine_with_and(b: &dyn StateBackend) {
    b.upsert_invocations(&[
        child("a", "m.x", None, "w1"),
        child("b", "m.y", None, "w1"),
        child("c", "m.x", None, "w2"),
    ])
    .unwrap();
    assert_eq!(
        strs(
            &b.get_invocation_ids_by_workflow(Some(&id("w1")), Some(&task("m.x")))
                .unwrap()
        ),
        ["a"]
    );
    assert!(
        b.get_invocation_ids_by_workflow(Some(&id("w2")), Some(&task("m.y")))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        strs(&b.get_invocation_ids_by_workflow(None, None).unwrap()),
        ["a", "b", "c"]
    );
}

pub fn rule4_workflow_run_restore_changes_type(b: &dyn StateBackend) {
    let mut wf = WorkflowIdentity {
        workflow_id: id("w"),
        workflow_type: task("m.a"),
        parent_workflow_id: Some(id("outer")),
    };
    b.store_workflow_run(&wf).unwrap();
    wf.workflow_type = task("m.b");
    wf.parent_workflow_id = None;
    b.store_workflow_run(&wf).unwrap();
    assert!(b.get_workflow_runs(&task("m.a")).unwrap().is_empty());
    assert_eq!(b.get_workflow_runs(&task("m.b")).unwrap(), [wf.clone()]);
    assert_eq!(b.get_all_workflow_types().unwrap(), [task("m.b")]);
    assert_eq!(b.get_all_workflow_runs().unwrap(), [wf]);
}

pub fn rule5_range_bounds_inclusive(b: &dyn StateBackend) {
    let (lo, hi) = (at(10), at(20));
    b.add_histories(&[
        hist("before", S::Registered, lo.add_micros(-1)),
        hist("lo", S::Registered, lo),
        hist("hi", S::Registered, hi),
        hist("after", S::Registered, hi.add_micros(1)),
    ])
    .unwrap();
    let r = TimeRange::new(lo, hi);
    let got: Vec<_> = all_history(b, r, 10)
        .concat()
        .into_iter()
        .map(|h| h.invocation_id.into_string())
        .collect();
    assert_eq!(got, ["lo", "hi"]);
    assert_eq!(strs(&all_ids(b, r, 10).concat()), ["hi", "lo"]);
    // A one-instant range.
    assert_eq!(all_history(b, TimeRange::new(lo, lo), 10).concat().len(), 1);
}

pub fn rule5_range_compares_instants_across_offsets(b: &dyn StateBackend) {
    // 13:00+02:00 is 11:00 UTC: inside [10:30Z, 11:30Z] though its wall clock is not.
    let ts = "2025-01-15T13:00:00+02:00".parse::<Timestamp>().unwrap();
    b.add_histories(&[hist("inv", S::Registered, ts)]).unwrap();
    let r = TimeRange::new(
        "2025-01-15T10:30:00+00:00".parse().unwrap(),
        "2025-01-15T11:30:00+00:00".parse().unwrap(),
    );
    let got = all_history(b, r, 10).concat();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].timestamp.to_string(), "2025-01-15T13:00:00+02:00");
    let r2 = TimeRange::new(
        "2025-01-15T12:30:00+00:00".parse().unwrap(),
        "2025-01-15T13:30:00+00:00".parse().unwrap(),
    );
    assert!(all_history(b, r2, 10).is_empty());
}

pub fn rule5_paging_returns_every_row_once(b: &dyn StateBackend) {
    let mut recs = Vec::new();
    for i in 0..23i64 {
        // Some ties (i / 2) to exercise the tie-breaker across page edges.
        recs.push(hist(
            &format!("inv-{:02}", i % 7),
            S::ALL[(i % 14) as usize],
            at(i / 2),
        ));
    }
    b.add_histories(&recs).unwrap();
    let whole = all_history(b, TimeRange::all(), 1000).concat();
    assert_eq!(whole.len(), 23);
    for page in [1usize, 2, 3, 5, 7, 22, 23, 24] {
        let pages = all_history(b, TimeRange::all(), page);
        assert!(pages.iter().all(|p| !p.is_empty() && p.len() <= page));
        assert_eq!(pages.len(), 23usize.div_ceil(page), "page size {page}");
        assert_eq!(pages.concat(), whole, "page size {page}");
        let ids = all_ids(b, TimeRange::all(), page).concat();
        assert_eq!(
            strs(&ids),
            [
                "inv-00", "inv-01", "inv-02", "inv-03", "inv-04", "inv-05", "inv-06"
            ]
        );
    }
}

pub fn rule5_next_cursor_only_when_more_rows(b: &dyn StateBackend) {
    b.add_histories(&[
        hist("a", S::Registered, at(1)),
        hist("b", S::Registered, at(2)),
    ])
    .unwrap();
    let r = TimeRange::all();
    let p = b.history_in_timerange(&r, None, 2).unwrap();
    assert_eq!(p.items.len(), 2);
    assert!(
        p.next.is_none(),
        "an exactly full last page has no next cursor"
    );
    let p = b.history_in_timerange(&r, None, 1).unwrap();
    let next = p.next.expect("one more row follows");
    let p2 = b.history_in_timerange(&r, Some(&next), 1).unwrap();
    assert_eq!(p2.items[0].invocation_id.as_str(), "b");
    assert!(p2.next.is_none());
    let ids = b.invocation_ids_in_timerange(&r, None, 2).unwrap();
    assert_eq!(strs(&ids.items), ["a", "b"]);
    assert!(ids.next.is_none());
    let empty = b
        .history_in_timerange(&TimeRange::new(at(100), at(200)), None, 5)
        .unwrap();
    assert!(empty.items.is_empty() && empty.next.is_none());
}

pub fn rule5_paging_stable_under_writes_outside_range(b: &dyn StateBackend) {
    for i in 0..10 {
        b.add_histories(&[hist(&format!("in-{i}"), S::Registered, at(100 + i))])
            .unwrap();
    }
    let r = TimeRange::new(at(100), at(109));
    let (mut cursor, mut ids_cursor): (Option<Cursor>, Option<Cursor>) = (None, None);
    let (mut seen, mut ids_seen) = (Vec::new(), Vec::new());
    let (mut h_done, mut i_done) = (false, false);
    for round in 0..20i64 {
        if h_done && i_done {
            break;
        }
        // Writes before and after the range, with ids sorting among ours.
        b.add_histories(&[
            hist(&format!("in-{round}x"), S::Pending, at(50 - round)),
            hist(&format!("in-0{round}"), S::Pending, at(200 + round)),
        ])
        .unwrap();
        if !h_done {
            let p = b.history_in_timerange(&r, cursor.as_ref(), 3).unwrap();
            seen.extend(p.items);
            h_done = p.next.is_none();
            cursor = p.next;
        }
        if !i_done {
            let q = b
                .invocation_ids_in_timerange(&r, ids_cursor.as_ref(), 3)
                .unwrap();
            ids_seen.extend(q.items);
            i_done = q.next.is_none();
            ids_cursor = q.next;
        }
    }
    assert!(h_done && i_done, "paging did not finish in 20 rounds");
    let got: Vec<_> = seen
        .into_iter()
        .map(|h| h.invocation_id.into_string())
        .collect();
    let want: Vec<String> = (0..10).map(|i| format!("in-{i}")).collect();
    assert_eq!(got, want);
    let ids: Vec<String> = ids_seen
        .into_iter()
        .map(InvocationId::into_string)
        .collect();
    assert_eq!(ids, want, "every id once, none from outside the range");
}

pub fn rule5_inverted_range_is_empty(b: &dyn StateBackend) {
    b.add_histories(&[hist("a", S::Registered, at(1))]).unwrap();
    let r = TimeRange::new(at(2), at(0));
    assert!(all_history(b, r, 10).is_empty());
    assert!(all_ids(b, r, 10).is_empty());
}

pub fn rule5_page_size_zero_and_bad_cursor_are_invalid(b: &dyn StateBackend) {
    b.add_histories(&[hist("a", S::Registered, at(1))]).unwrap();
    let r = TimeRange::all();
    assert_eq!(
        b.history_in_timerange(&r, None, 0).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        b.invocation_ids_in_timerange(&r, None, 0)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    let junk = Cursor::from_token("not a cursor");
    assert_eq!(
        b.history_in_timerange(&r, Some(&junk), 5)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        b.invocation_ids_in_timerange(&r, Some(&junk), 5)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
}

pub fn rule5_far_past_and_future_timestamps(b: &dyn StateBackend) {
    let recs = [
        hist_at(
            "inv",
            S::Success,
            "9999-12-31T23:59:59.999999+00:00".parse().unwrap(),
        ),
        hist_at(
            "inv",
            S::Registered,
            "0001-01-01T00:00:00+00:00".parse().unwrap(),
        ),
        hist_at(
            "inv",
            S::Pending,
            "1969-12-31T23:59:59.999999-05:00".parse().unwrap(),
        ),
        hist_at(
            "inv",
            S::Running,
            "2106-02-07T06:28:16.000001+00:00".parse().unwrap(),
        ),
    ];
    b.add_histories(&recs).unwrap();
    let h = b.get_history(&id("inv")).unwrap();
    assert_eq!(
        h,
        [
            recs[1].clone(),
            recs[2].clone(),
            recs[3].clone(),
            recs[0].clone()
        ]
    );
    assert_eq!(all_history(b, TimeRange::all(), 3).concat(), h);
}

pub fn rule6_runner_search_is_literal(b: &dyn StateBackend) {
    for r in ["a%b", "axb", "a_b", "a\\b", "a'b", "ab"] {
        b.store_runner_context(&runner(r)).unwrap();
    }
    let found = |s: &str| matching_runner_ids(b, s);
    assert_eq!(found("%"), ["a%b"]);
    assert_eq!(found("a_b"), ["a_b"]);
    assert_eq!(found("_"), ["a_b"]);
    assert_eq!(found("\\"), ["a\\b"]);
    assert_eq!(found("'"), ["a'b"]);
    assert_eq!(found("a%"), ["a%b"]);
    assert_eq!(found("").len(), 6);
}

pub fn rule6_runner_search_folds_ascii_case_only(b: &dyn StateBackend) {
    for r in ["Runner-MAIN", "runner-main-2", "ÉCOLE", "école"] {
        b.store_runner_context(&runner(r)).unwrap();
    }
    let found = |s: &str| matching_runner_ids(b, s);
    assert_eq!(found("MAIN"), ["Runner-MAIN", "runner-main-2"]);
    assert_eq!(found("rUnNeR-MaIn-2"), ["runner-main-2"]);
    // Only ASCII letters fold: É and é stay distinct.
    assert_eq!(found("ÉCOLE"), ["ÉCOLE"]);
    assert_eq!(found("éc"), ["école"]);
    assert_eq!(found("COLE"), ["ÉCOLE", "école"]);
}

pub fn rule7_absence_is_none_or_empty(b: &dyn StateBackend) {
    let x = id("x");
    assert!(b.get_history(&x).unwrap().is_empty());
    assert_eq!(b.get_workflow_data(&x, "k").unwrap(), None);
    assert_eq!(b.get_runner_context(&RunnerId::new("x")).unwrap(), None);
    assert!(
        b.get_runner_contexts(&[RunnerId::new("x")])
            .unwrap()
            .is_empty()
    );
    assert!(b.get_child_invocations(&x).unwrap().is_empty());
    assert!(b.get_workflow_sub_invocations(&x).unwrap().is_empty());
    assert!(b.get_workflow_runs(&task("m.x")).unwrap().is_empty());
    assert!(b.get_matching_runner_contexts("x").unwrap().is_empty());
    assert_not_found(b.get_invocation(&x).unwrap_err(), Entity::Invocation, "x");
    assert_not_found(b.get_result(&x).unwrap_err(), Entity::Result, "x");
    assert_not_found(b.get_exception(&x).unwrap_err(), Entity::Exception, "x");
    assert_not_found(b.get_app_info("x").unwrap_err(), Entity::AppInfo, "x");
}

/// Strings that break naive storage code.
pub fn hostile_strings() -> Vec<String> {
    vec![
        "plain".into(),
        "ünïcödé – “quotes” ‘single’".into(),
        "emoji 😀🎉👩‍👩‍👧 and astral 𝔘".into(),
        "'; DROP TABLE state_backend_invocations; --".into(),
        "\" OR 1=1 -- \\ \\\\ %_ LIKE".into(),
        "tab\tnew\nline\rcr \u{1} \u{7f} \u{fffd}".into(),
        "{\"json\": [1, 2, {\"nested\": null}]}".into(),
        " leading and trailing spaces ".into(),
        "x".repeat(1 << 20),
    ]
}

/// `s` cut to at most 900 bytes (at a char boundary): hostile strings as
/// ids and keys, which engines index and limit to `MAX_ID_BYTES`.
fn as_id(s: &str) -> String {
    let mut end = s.len().min(900);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

pub fn rule8_strings_round_trip_exactly(b: &dyn StateBackend) {
    for (i, s) in hostile_strings().into_iter().enumerate() {
        // `s` as values (no length limit); `k` as ids and keys.
        let k = as_id(&s);
        let inv = format!("{k}-{i}");
        let mut c = call(
            &format!("{k}.fn{i}"),
            &[(s.as_str(), s.as_str()), ("other", "1")],
        );
        if k.contains('.') || k.contains(':') {
            // Keys split at the last '.'/':'; keep the task key parseable.
            c = call(&format!("mod.fn{i}"), &[(s.as_str(), s.as_str())]);
        }
        let mut pair = with_call(&inv, c);
        pair.0.parent_invocation_id = Some(id(&k));
        pair.0.workflow.parent_workflow_id = Some(id(&k));
        b.upsert_invocations(std::slice::from_ref(&pair)).unwrap();
        assert_eq!(b.get_invocation(&id(&inv)).unwrap(), pair);
        assert_eq!(
            strs(&b.get_child_invocations(&id(&k)).unwrap()),
            [inv.as_str()]
        );

        let mut h = hist(&inv, S::Pending, at(i as i64));
        h.runner_context_id = RunnerId::new(s.as_str());
        h.status_record.runner_id = Some(RunnerId::new(s.as_str()));
        h.registered_by_inv_id = Some(id(&k));
        b.add_histories(std::slice::from_ref(&h)).unwrap();
        assert_eq!(b.get_history(&id(&inv)).unwrap(), [h]);

        b.set_result(&id(&inv), &s).unwrap();
        assert_eq!(b.get_result(&id(&inv)).unwrap(), s);
        b.set_exception(&id(&inv), &s).unwrap();
        assert_eq!(b.get_exception(&id(&inv)).unwrap(), s);
        b.set_workflow_data(&id(&k), &k, &s).unwrap();
        assert_eq!(
            b.get_workflow_data(&id(&k), &k).unwrap().as_deref(),
            Some(s.as_str())
        );
        b.store_workflow_sub_invocation(&id(&k), &id(&k)).unwrap();
        assert_eq!(
            strs(&b.get_workflow_sub_invocations(&id(&k)).unwrap()),
            [k.as_str()]
        );

        let mut info = app(&k);
        info.config_filepath = Some(s.clone());
        info.module = s.clone();
        b.store_app_info(&info).unwrap();
        assert_eq!(b.get_app_info(&k).unwrap(), info);

        let mut ctx = runner(&k);
        ctx.hostname = s.clone();
        ctx.runner_cls = s.clone();
        b.store_runner_context(&ctx).unwrap();
        assert_eq!(b.get_runner_context(&ctx.runner_id).unwrap(), Some(ctx));
    }
}

pub fn input_ids_longer_than_the_limit_are_invalid(b: &dyn StateBackend) {
    let max = taskstate_core::MAX_ID_BYTES;
    let long = "é".repeat(max / 2) + "x"; // max + 1 bytes
    assert_eq!(long.len(), max + 1);
    let ok = "x".repeat(max);
    let invalid = |r: taskstate_core::Result<()>| {
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains(&max.to_string()), "{e}");
    };
    invalid(b.upsert_invocations(&[root(&long, "m.t")]));
    invalid(b.upsert_invocations(&[child("c", "m.t", Some(&long), "w")]));
    invalid(b.upsert_invocations(&[with_call("c", call(&format!("m.{}", "f".repeat(max)), &[]))]));
    invalid(b.add_histories(&[hist(&long, S::Registered, at(1))]));
    invalid(b.set_result(&id(&long), "v"));
    invalid(b.set_exception(&id(&long), "v"));
    invalid(b.set_workflow_data(&id(&long), "k", "v"));
    invalid(b.set_workflow_data(&id("w"), &long, "v"));
    invalid(b.store_workflow_sub_invocation(&id("w"), &id(&long)));
    invalid(b.store_app_info(&app(&long)));
    invalid(b.store_runner_context(&with_parent(runner("r"), runner(&long))));
    invalid(b.store_workflow_run(&WorkflowIdentity {
        workflow_id: id(&long),
        workflow_type: task("m.t"),
        parent_workflow_id: None,
    }));
    assert_store_empty(b);
    // Exactly the limit is fine, and reads of longer ids are just absent.
    b.upsert_invocations(&[child(&ok, "m.t", Some(&ok), &ok)])
        .unwrap();
    b.set_result(&id(&ok), "v").unwrap();
    b.store_runner_context(&runner(&ok)).unwrap();
    assert_eq!(
        strs(&b.get_child_invocations(&id(&ok)).unwrap()),
        [ok.as_str()]
    );
    assert_eq!(
        b.get_result(&id(&long)).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(b.get_history(&id(&long)).unwrap().is_empty());
}

pub fn rule8_empty_strings_as_values(b: &dyn StateBackend) {
    b.set_result(&id("inv"), "").unwrap();
    assert_eq!(b.get_result(&id("inv")).unwrap(), "");
    b.set_exception(&id("inv"), "").unwrap();
    assert_eq!(b.get_exception(&id("inv")).unwrap(), "");
    b.set_workflow_data(&id("wf"), "", "").unwrap();
    assert_eq!(
        b.get_workflow_data(&id("wf"), "").unwrap().as_deref(),
        Some("")
    );
    let pair = with_call("inv", call("m.f", &[("", "")]));
    b.upsert_invocations(std::slice::from_ref(&pair)).unwrap();
    assert_eq!(b.get_invocation(&id("inv")).unwrap(), pair);
}

pub fn rule9_concurrent_writers_lose_nothing(b: &dyn StateBackend) {
    const THREADS: usize = 8;
    const PER: usize = 60;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                for i in 0..PER {
                    let inv = format!("t{t}-{i:03}");
                    b.upsert_invocations(&[child(&inv, "m.t", Some("shared-parent"), "wf")])
                        .unwrap();
                    b.add_histories(&[hist("shared", S::Running, at((t * PER + i) as i64))])
                        .unwrap();
                    b.add_histories(&[hist(&inv, S::Registered, at(1))])
                        .unwrap();
                    b.set_result(&id(&inv), &format!("result-{t}-{i}")).unwrap();
                    b.set_workflow_data(&id("wf"), &inv, "v").unwrap();
                    // Reads interleave with the writes.
                    assert_eq!(
                        b.get_invocation(&id(&inv))
                            .unwrap()
                            .0
                            .invocation_id
                            .as_str(),
                        inv
                    );
                }
            });
        }
    });
    let kids = b.get_child_invocations(&id("shared-parent")).unwrap();
    assert_eq!(kids.len(), THREADS * PER);
    let shared = b.get_history(&id("shared")).unwrap();
    assert_eq!(shared.len(), THREADS * PER);
    assert!(
        shared
            .windows(2)
            .all(|w| w[0].timestamp.key() < w[1].timestamp.key())
    );
    for t in 0..THREADS {
        for i in 0..PER {
            let inv = format!("t{t}-{i:03}");
            assert_eq!(b.get_result(&id(&inv)).unwrap(), format!("result-{t}-{i}"));
            assert_eq!(b.get_history(&id(&inv)).unwrap().len(), 1);
        }
    }
    assert_eq!(b.all_workflow_data().unwrap().len(), THREADS * PER);
    assert_eq!(
        all_ids(b, TimeRange::all(), 100).concat().len(),
        THREADS * PER + 1
    );
}

pub fn rule9_concurrent_same_key_writes_settle_on_one(b: &dyn StateBackend) {
    std::thread::scope(|s| {
        for t in 0..8 {
            s.spawn(move || {
                for i in 0..40 {
                    b.set_result(&id("contended"), &format!("{t}-{i}")).unwrap();
                    b.add_histories(&[hist("contended", S::Running, at(1))])
                        .unwrap();
                    b.store_workflow_run(&WorkflowIdentity {
                        workflow_id: id("w"),
                        workflow_type: task(&format!("m.t{}", t % 2)),
                        parent_workflow_id: None,
                    })
                    .unwrap();
                }
            });
        }
    });
    let r = b.get_result(&id("contended")).unwrap();
    assert!(
        r.ends_with("-39"),
        "last write of some thread wins, got {r}"
    );
    assert_eq!(b.get_history(&id("contended")).unwrap().len(), 1);
    assert_eq!(b.get_all_workflow_runs().unwrap().len(), 1);
    assert_eq!(b.get_all_workflow_types().unwrap().len(), 1);
}

// ---- input rules and batches ----------------------------------------------

pub fn input_empty_ids_are_invalid(b: &dyn StateBackend) {
    let mut pair = root("", "m.t");
    assert_eq!(
        b.upsert_invocations(&[pair.clone()]).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    pair = root("ok", "m.t");
    pair.0.parent_invocation_id = Some(id(""));
    assert_eq!(
        b.upsert_invocations(&[pair.clone()]).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    pair = root("ok", "m.t");
    pair.0.workflow.workflow_id = id("");
    assert_eq!(
        b.upsert_invocations(&[pair.clone()]).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    pair = root("ok", "m.t");
    pair.0.workflow.parent_workflow_id = Some(id(""));
    assert_eq!(
        b.upsert_invocations(&[pair]).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        b.add_histories(&[hist("", S::Registered, at(1))])
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    let mut h = hist("x", S::Registered, at(1));
    h.registered_by_inv_id = Some(id(""));
    assert_eq!(
        b.add_histories(&[h]).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        b.store_workflow_run(&WorkflowIdentity {
            workflow_id: id(""),
            workflow_type: task("m.t"),
            parent_workflow_id: None
        })
        .unwrap_err()
        .kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        b.store_runner_context(&runner("")).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_store_empty(b);
}

pub fn input_call_id_mismatch_is_invalid(b: &dyn StateBackend) {
    let (mut inv, c) = root("inv", "m.t");
    inv.call_id = call("m.other", &[]).call_id;
    let e = b.upsert_invocations(&[(inv, c)]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("inv"), "{e}");
    assert_eq!(
        b.get_invocation(&id("inv")).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

pub fn input_runner_chain_with_repeated_id_is_invalid(b: &dyn StateBackend) {
    let cyc = with_parent(runner("a"), with_parent(runner("b"), runner("a")));
    assert_eq!(
        b.store_runner_context(&cyc).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert!(b.get_matching_runner_contexts("").unwrap().is_empty());
}

pub fn batch_upsert_is_atomic(b: &dyn StateBackend) {
    let mut bad = root("bad", "m.t");
    bad.0.parent_invocation_id = Some(id(""));
    let e = b
        .upsert_invocations(&[root("good-1", "m.t"), bad, root("good-2", "m.t")])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        b.get_invocation_ids_by_workflow(None, None)
            .unwrap()
            .is_empty()
    );
}

pub fn batch_history_is_atomic(b: &dyn StateBackend) {
    let e = b
        .add_histories(&[
            hist("a", S::Registered, at(1)),
            hist("", S::Registered, at(1)),
        ])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(b.get_history(&id("a")).unwrap().is_empty());
}

pub fn batch_upsert_later_entry_wins(b: &dyn StateBackend) {
    let first = child("inv", "m.a", Some("p1"), "w");
    let second = child("inv", "m.b", Some("p2"), "w");
    b.upsert_invocations(&[first, second.clone()]).unwrap();
    assert_eq!(b.get_invocation(&id("inv")).unwrap(), second);
    assert!(b.get_child_invocations(&id("p1")).unwrap().is_empty());
    assert_eq!(strs(&b.get_child_invocations(&id("p2")).unwrap()), ["inv"]);
}

pub fn batch_empty_is_a_no_op(b: &dyn StateBackend) {
    b.upsert_invocations(&[]).unwrap();
    b.add_histories(&[]).unwrap();
    assert_store_empty(b);
}

// ---- other behaviour -----------------------------------------------------

pub fn results_and_exceptions_replace(b: &dyn StateBackend) {
    b.set_result(&id("i"), "1").unwrap();
    b.set_result(&id("i"), "2").unwrap();
    b.set_exception(&id("i"), "e1").unwrap();
    b.set_exception(&id("i"), "e2").unwrap();
    assert_eq!(b.get_result(&id("i")).unwrap(), "2");
    assert_eq!(b.get_exception(&id("i")).unwrap(), "e2");
    assert_eq!(strs(&b.result_ids().unwrap()), ["i"]);
}

pub fn workflow_data_replaces_and_is_per_workflow(b: &dyn StateBackend) {
    b.set_workflow_data(&id("w1"), "k", "1").unwrap();
    b.set_workflow_data(&id("w1"), "k", "2").unwrap();
    b.set_workflow_data(&id("w2"), "k", "3").unwrap();
    assert_eq!(
        b.get_workflow_data(&id("w1"), "k").unwrap().as_deref(),
        Some("2")
    );
    assert_eq!(
        b.get_workflow_data(&id("w2"), "k").unwrap().as_deref(),
        Some("3")
    );
    let all = b.all_workflow_data().unwrap();
    assert_eq!(
        all,
        [
            (id("w1"), "k".into(), "2".into()),
            (id("w2"), "k".into(), "3".into())
        ]
    );
    assert_eq!(b.all_workflow_sub_invocations().unwrap(), []);
}

pub fn app_info_replaces(b: &dyn StateBackend) {
    let mut info = app("a");
    b.store_app_info(&info).unwrap();
    info.config_values = None;
    info.app_variable = None;
    b.store_app_info(&info).unwrap();
    assert_eq!(b.get_app_info("a").unwrap(), info);
    assert_eq!(b.discover_app_infos().unwrap().len(), 1);
}

pub fn runner_context_chain_is_stored_and_returned_whole(b: &dyn StateBackend) {
    let grand = runner("grand");
    let parent = with_parent(runner("parent"), grand.clone());
    let ctx = with_parent(runner("child"), parent.clone());
    b.store_runner_context(&ctx).unwrap();
    assert_eq!(
        b.get_runner_context(&RunnerId::new("child")).unwrap(),
        Some(ctx.clone())
    );
    assert_eq!(
        b.get_runner_context(&RunnerId::new("parent")).unwrap(),
        Some(parent.clone())
    );
    assert_eq!(
        b.get_runner_context(&RunnerId::new("grand")).unwrap(),
        Some(grand.clone())
    );
    let many = b
        .get_runner_contexts(&[
            RunnerId::new("child"),
            RunnerId::new("nope"),
            RunnerId::new("grand"),
            RunnerId::new("child"),
        ])
        .unwrap();
    assert_eq!(many, [ctx, grand]);
}

pub fn runner_context_reparent_and_parent_update(b: &dyn StateBackend) {
    b.store_runner_context(&with_parent(runner("c"), runner("p1")))
        .unwrap();
    let mut p2 = runner("p2");
    p2.pid = 7;
    b.store_runner_context(&with_parent(runner("c"), p2.clone()))
        .unwrap();
    assert_eq!(
        b.get_runner_context(&RunnerId::new("c"))
            .unwrap()
            .unwrap()
            .parent
            .as_deref(),
        Some(&p2)
    );
    // Storing the parent again with new fields shows through the child.
    p2.hostname = "moved".into();
    b.store_runner_context(&p2).unwrap();
    let c = b.get_runner_context(&RunnerId::new("c")).unwrap().unwrap();
    assert_eq!(c.parent.unwrap().hostname, "moved");
    // The old parent stays stored on its own.
    assert!(
        b.get_runner_context(&RunnerId::new("p1"))
            .unwrap()
            .is_some()
    );
}

pub fn add_status_for_sets_registered_by_only_for_registered(b: &dyn StateBackend) {
    let ctx = runner("r-9");
    let ids = [id("a"), id("b")];
    let regs = b
        .add_status_for(&ids, S::Registered, &ctx, Some(&id("parent")), at(1))
        .unwrap();
    assert!(
        regs.iter()
            .all(|h| h.registered_by_inv_id == Some(id("parent")))
    );
    assert!(regs.iter().all(|h| h.status_record.runner_id.is_none()));
    let pend = b
        .add_status_for(&ids, S::Pending, &ctx, Some(&id("parent")), at(2))
        .unwrap();
    assert!(pend.iter().all(|h| h.registered_by_inv_id.is_none()));
    assert!(
        pend.iter()
            .all(|h| h.status_record.runner_id == Some(RunnerId::new("r-9")))
    );
    let h = b.get_history(&id("b")).unwrap();
    assert_eq!(h, [regs[1].clone(), pend[1].clone()]);
    assert_eq!(h[0].invocation_id.as_str(), "b");
    assert_eq!(b.latest_status(&id("a")).unwrap(), Some(pend[0].clone()));
    assert!(taskstate_core::validate_chain(statuses(&h)).is_ok());
}

pub fn purge_twice_and_reuse_everything(b: &dyn StateBackend) {
    populate_everything(b);
    b.purge().unwrap();
    b.purge().unwrap();
    assert_store_empty(b);
    populate_everything(b);
    assert_eq!(b.get_history(&id("p")).unwrap().len(), 1);
    assert_eq!(strs(&b.get_child_invocations(&id("p")).unwrap()), ["c"]);
    assert_eq!(b.get_matching_runner_contexts("").unwrap().len(), 2);
}

pub fn engine_is_send_sync_and_names_itself(b: &dyn StateBackend) {
    fn assert_send_sync<T: Send + Sync + ?Sized>(_: &T) {}
    assert_send_sync(b);
    assert!(!b.engine_name().is_empty());
    let msg = b.get_invocation(&id("zz")).unwrap_err().to_string();
    assert_eq!(msg, "invocation not found: \"zz\"");
}

mod bulk;
mod history_keys;
pub use bulk::*;
pub use history_keys::*;

/// SPEC §6: a timestamp whose date, in UTC or in its own offset, is outside
/// years 1–9999 cannot be read back by the reference (Python's `datetime`):
/// invalid input, in either of a record's two timestamps; the batch stores
/// nothing. The edges themselves are stored.
pub fn input_timestamps_the_reference_cannot_read_are_invalid(b: &dyn StateBackend) {
    let bad = [
        "0000-06-01T00:00:00+00:00",
        "0001-01-01T00:30:00+01:00", // year 0 in UTC
        "9999-12-31T23:30:00-01:00", // year 10000 in UTC
        "10000-01-01T00:00:00+00:00",
    ];
    for text in bad {
        let Ok(t) = Timestamp::parse(text) else {
            continue; // not even representable: refused before any engine
        };
        let mut in_record = hist("inv", S::Running, at(1));
        in_record.timestamp = t;
        let mut in_status = hist("inv", S::Pending, at(2));
        in_status.status_record.timestamp = t;
        for r in [in_record, in_status] {
            let e = b
                .add_histories(&[hist("ok", S::Registered, at(1)), r])
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{text}: {e}");
        }
    }
    assert!(b.get_history(&id("ok")).unwrap().is_empty());
    assert!(b.get_history(&id("inv")).unwrap().is_empty());
    let edges = [
        hist_at(
            "edge",
            S::Registered,
            "0001-01-01T00:00:00+00:00".parse().unwrap(),
        ),
        hist_at(
            "edge",
            S::Pending,
            "0001-01-01T02:00:00+01:00".parse().unwrap(),
        ),
        hist_at(
            "edge",
            S::Running,
            "9999-12-31T23:59:59.999999+00:00".parse().unwrap(),
        ),
    ];
    b.add_histories(&edges).unwrap();
    assert_eq!(b.get_history(&id("edge")).unwrap().len(), 3);
}
