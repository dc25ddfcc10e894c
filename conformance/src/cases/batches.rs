//! Batch operations: all or nothing, later entries win, empty is a no-op.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use taskstate_core::{ErrorKind, InvocationStatus as S, StateBackend};

use super::helpers::*;
use crate::data::*;

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
    assert_eq!(*b.get_invocation(&id("inv")).unwrap(), second);
    assert!(b.get_child_invocations(&id("p1")).unwrap().is_empty());
    assert_eq!(strs(&b.get_child_invocations(&id("p2")).unwrap()), ["inv"]);
}

pub fn batch_empty_is_a_no_op(b: &dyn StateBackend) {
    b.upsert_invocations(&[]).unwrap();
    b.add_histories(&[]).unwrap();
    assert_store_empty(b);
}

// ---- other behaviour -----------------------------------------------------
