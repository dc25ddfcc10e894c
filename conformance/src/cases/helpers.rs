//! Helpers the cases share (and `populate_everything` / `assert_store_empty`,
//! which the CLI's tests use too).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use taskstate_core::{
    AppId, Entity, Error, ErrorKind, InvocationHistory, InvocationId, InvocationStatus as S,
    RunnerId, StateBackend, TimeRange, WorkflowIdentity,
};

use crate::data::*;

pub fn all_history(
    b: &dyn StateBackend,
    range: TimeRange,
    page: usize,
) -> Vec<Vec<InvocationHistory>> {
    b.iter_history_in_timerange(range, page)
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

pub fn all_ids(b: &dyn StateBackend, range: TimeRange, page: usize) -> Vec<Vec<InvocationId>> {
    b.iter_invocations_in_timerange(range, page)
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// Runner ids of the contexts matching `partial`, in the order returned.
pub fn matching_runner_ids(b: &dyn StateBackend, partial: &str) -> Vec<String> {
    b.get_matching_runner_contexts(partial)
        .unwrap()
        .into_iter()
        .map(|c| c.runner_id.into_string())
        .collect()
}

pub fn assert_not_found(e: Error, entity: Entity, want_id: &str) {
    match e {
        Error::NotFound { entity: got, id } => {
            assert_eq!(got, entity);
            assert_eq!(id, want_id);
        }
        other => panic!("expected {entity} not found for {want_id:?}, got {other:?}"),
    }
}

// ---- SPEC §8 -------------------------------------------------------------

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
        b.get_app_info(&AppId::new("app")).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(b.get_matching_runner_contexts("").unwrap().is_empty());
    assert_eq!(
        b.get_runner_context(&RunnerId::new("parent")).unwrap(),
        None
    );
}

// ---- SPEC §4 rules -------------------------------------------------------

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
pub fn as_id(s: &str) -> String {
    let mut end = s.len().min(900);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// For an engine's read-only open (SPEC §6): writes one finished
/// invocation through `writable`, then checks that `read_only` refuses a
/// write, dry-runs a prune of it, refuses the real prune and still reads
/// it. Returns the prune's refusal, for the engine's own message checks.
pub fn read_only_store_dry_runs_and_refuses_prune(
    writable: &dyn StateBackend,
    read_only: &dyn StateBackend,
) -> Error {
    use taskstate_core::PruneOptions;
    writable.upsert_invocations(&[root("old", "m.t")]).unwrap();
    writable
        .add_histories(&[hist("old", S::Success, at(1))])
        .unwrap();
    assert!(read_only.set_result(&id("x"), "1").is_err());
    let options = PruneOptions::new(at(10));
    let would = read_only
        .prune(&options.clone().dry_run(true), &mut |_| {})
        .unwrap();
    assert_eq!(would.invocations, 1);
    let err = read_only.prune(&options, &mut |_| {}).unwrap_err();
    assert!(read_only.get_invocation(&id("old")).is_ok());
    assert!(writable.result_ids().unwrap().is_empty());
    err
}
