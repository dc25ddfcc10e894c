//! SPEC §4 rules 2 and 3: list order (ascending by id, code point order),
//! history order (instant, then insertion), and history identity.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use taskstate_core::{
    InvocationStatus as S, RunnerId, StateBackend, TimeRange, Timestamp, WorkflowIdentity,
};

use super::helpers::*;
use crate::data::*;

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
        .map(|a| a.app_id.into_string())
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
        .map(|d| d.key)
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
