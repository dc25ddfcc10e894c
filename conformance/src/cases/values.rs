//! SPEC §4 rules 7 and 8 and the input rules: absence, values that must
//! round-trip exactly, and the input every engine refuses alike.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use taskstate_core::{
    AppId, Entity, ErrorKind, InvocationStatus as S, RunnerId, StateBackend, Timestamp,
    WorkflowIdentity,
};

use super::helpers::*;
use crate::data::*;

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
    assert_not_found(
        b.get_app_info(&AppId::new("x")).unwrap_err(),
        Entity::AppInfo,
        "x",
    );
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
        assert_eq!(*b.get_invocation(&id(&inv)).unwrap(), pair);
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
        assert_eq!(b.get_app_info(&AppId::new(&*k)).unwrap(), info);

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
    assert_eq!(*b.get_invocation(&id("inv")).unwrap(), pair);
}

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
