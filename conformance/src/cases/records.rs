//! SPEC §4 rules 4 and 6 and the records' replace semantics: invocations
//! moving between parents and workflows, workflow runs and data, results,
//! app infos, runner contexts (chains, search), purge.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use taskstate_core::{AppId, InvocationStatus as S, RunnerId, StateBackend, WorkflowIdentity};

use super::helpers::*;
use crate::data::*;

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
    let (inv, call) = Arc::unwrap_or_clone(b.get_invocation(&id("inv")).unwrap());
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
    let all: Vec<_> = b
        .all_workflow_data()
        .unwrap()
        .into_iter()
        .map(|d| (d.workflow_id, d.key, d.value))
        .collect();
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
    assert_eq!(b.get_app_info(&AppId::new("a")).unwrap(), info);
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
