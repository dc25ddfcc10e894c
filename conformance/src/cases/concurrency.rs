//! SPEC §4 rule 9: concurrent writers lose nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use taskstate_core::{InvocationStatus as S, StateBackend, TimeRange, WorkflowIdentity};

use super::helpers::*;
use crate::data::*;

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
