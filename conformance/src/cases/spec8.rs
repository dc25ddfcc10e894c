//! SPEC §8: the reference's own state-backend tests, one case each.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;

use taskstate_core::{
    AppId, Entity, InvocationStatus as S, StateBackend, TimeRange, WorkflowIdentity,
};

use super::helpers::*;
use crate::data::*;

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
    let (inv, call) = &*b.get_invocation(&id("inv-1")).unwrap();
    assert_eq!(inv.invocation_id, pair.0.invocation_id);
    assert_eq!(call.call_id, pair.1.call_id);
    assert_eq!((inv, call), (&pair.0, &pair.1));
    assert_eq!(
        strs(&b.get_invocation_ids_by_workflow(None, None).unwrap()),
        ["inv-1"]
    );
}

pub fn spec8_03_call_without_arguments(b: &dyn StateBackend) {
    let pair = with_call("inv", call("m.noargs", &[]));
    assert_eq!(pair.1.call_id.args_id(), "no_args");
    b.upsert_invocations(&[pair]).unwrap();
    let (_, c) = &*b.get_invocation(&id("inv")).unwrap();
    assert!(c.serialized_arguments.is_empty());
    assert_eq!(c.call_id.key(), "m.noargs:no_args");
}

pub fn spec8_04_call_with_arguments(b: &dyn StateBackend) {
    let pair = with_call("inv", call("m.f", &[("a", "1"), ("b", "\"two\"")]));
    b.upsert_invocations(std::slice::from_ref(&pair)).unwrap();
    let (_, c) = &*b.get_invocation(&id("inv")).unwrap();
    let names: BTreeSet<&str> = c.serialized_arguments.iter().map(|(k, _)| k).collect();
    assert_eq!(names, BTreeSet::from(["a", "b"]));
    assert_eq!(c.serialized_arguments.get("a"), Some("1"));
    assert_eq!(c.serialized_arguments.get("b"), Some("\"two\""));
    assert_eq!(*c, pair.1);
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
    assert_eq!(b.get_app_info(&AppId::new("shop")).unwrap(), info);
    assert_eq!(
        b.get_app_info(&AppId::new("shop")).unwrap().to_json(),
        info.to_json()
    );
    assert_eq!(b.discover_app_infos().unwrap(), [info]);
    assert_not_found(
        b.get_app_info(&AppId::new("other")).unwrap_err(),
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
