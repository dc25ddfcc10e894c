//! Builders for test records, shared by the cases and the model test.

use taskstate_core::{
    AppInfo, CallDTO, InvocationDTO, InvocationHistory, InvocationId, InvocationStatus,
    InvocationStatusRecord, RunnerContext, RunnerId, SerializedArguments, TaskId, Timestamp,
    WorkflowIdentity,
};

/// A task id from a key; panics on a bad key (test data only).
#[must_use]
pub fn task(key: &str) -> TaskId {
    key.parse()
        .unwrap_or_else(|e| panic!("test task key {key:?}: {e}"))
}

/// An invocation id.
#[must_use]
pub fn id(s: &str) -> InvocationId {
    InvocationId::new(s)
}

/// A call of `task_key` with `args` (name, serialized value) pairs.
#[must_use]
pub fn call(task_key: &str, args: &[(&str, &str)]) -> CallDTO {
    CallDTO::new(
        task(task_key),
        SerializedArguments::from_pairs(args.iter().copied()),
    )
}

/// A root invocation: its own workflow, no parent.
#[must_use]
pub fn root(inv: &str, task_key: &str) -> (InvocationDTO, CallDTO) {
    child(inv, task_key, None, inv)
}

/// An invocation with an optional parent, in workflow `wf` (whose type is
/// `task_key`'s task).
#[must_use]
pub fn child(
    inv: &str,
    task_key: &str,
    parent: Option<&str>,
    wf: &str,
) -> (InvocationDTO, CallDTO) {
    let c = call(task_key, &[("x", "1")]);
    (
        InvocationDTO {
            invocation_id: id(inv),
            call_id: c.call_id.clone(),
            workflow: WorkflowIdentity {
                workflow_id: id(wf),
                workflow_type: task(task_key),
                parent_workflow_id: None,
            },
            parent_invocation_id: parent.map(id),
        },
        c,
    )
}

/// A workflow run: workflow `w` of type `ty`, with an optional parent
/// workflow.
#[must_use]
pub fn wf(w: &str, ty: &str, parent: Option<&str>) -> WorkflowIdentity {
    WorkflowIdentity {
        workflow_id: id(w),
        workflow_type: task(ty),
        parent_workflow_id: parent.map(id),
    }
}

/// A pair with a given call.
#[must_use]
pub fn with_call(inv: &str, c: CallDTO) -> (InvocationDTO, CallDTO) {
    (
        InvocationDTO {
            invocation_id: id(inv),
            call_id: c.call_id.clone(),
            workflow: WorkflowIdentity {
                workflow_id: id(inv),
                workflow_type: c.call_id.task_id().clone(),
                parent_workflow_id: None,
            },
            parent_invocation_id: None,
        },
        c,
    )
}

/// The base instant of the cases: 2025-01-15T12:00:00+00:00.
#[must_use]
pub fn base() -> Timestamp {
    Timestamp::from_micros(1_736_942_400_000_000)
}

/// `base() + secs` seconds.
#[must_use]
pub fn at(secs: i64) -> Timestamp {
    base().add_micros(secs * 1_000_000)
}

/// A history record at `ts` whose status was also set at `ts` (for
/// timestamps at the edge of what the reference reads, where `hist`'s
/// status time 250 µs earlier would fall outside it).
#[must_use]
pub fn hist_at(inv: &str, status: InvocationStatus, ts: Timestamp) -> InvocationHistory {
    let mut h = hist(inv, status, ts);
    h.status_record.timestamp = ts;
    h
}

/// A history record of `inv` with `status` at `ts`, written by runner `r-1`.
#[must_use]
pub fn hist(inv: &str, status: InvocationStatus, ts: Timestamp) -> InvocationHistory {
    InvocationHistory {
        invocation_id: id(inv),
        timestamp: ts,
        status_record: InvocationStatusRecord {
            status,
            runner_id: if status == InvocationStatus::Registered {
                None
            } else {
                Some(RunnerId::new("r-1"))
            },
            timestamp: ts.add_micros(-250),
        },
        runner_context_id: RunnerId::new("r-1"),
        registered_by_inv_id: None,
    }
}

/// A runner context without parent.
#[must_use]
pub fn runner(runner_id: &str) -> RunnerContext {
    RunnerContext {
        runner_cls: "ThreadRunner".into(),
        runner_id: RunnerId::new(runner_id),
        parent: None,
        pid: 4242,
        hostname: "worker-host-a".into(),
        thread_id: 140_245_010_974_528,
    }
}

/// `ctx` with `parent` as its parent.
#[must_use]
pub fn with_parent(mut ctx: RunnerContext, parent: RunnerContext) -> RunnerContext {
    ctx.parent = Some(Box::new(parent));
    ctx
}

/// An app info with a nested, ordered config.
#[must_use]
pub fn app(app_id: &str) -> AppInfo {
    let config = serde_json::json!({
        "app_id": app_id,
        "z_last_first": true,
        "ratio": 0.25,
        "big": 1e16,
        "nested": {"b": [1, 2.5, null], "a": "é"},
    });
    AppInfo {
        app_id: app_id.into(),
        config_values: config.as_object().cloned(),
        config_filepath: None,
        module: "shop.app".into(),
        module_filepath: Some("shop/app.py".into()),
        app_variable: Some("app".into()),
    }
}

/// Statuses of a list of records.
#[must_use]
pub fn statuses(h: &[InvocationHistory]) -> Vec<InvocationStatus> {
    h.iter().map(|r| r.status_record.status).collect()
}

/// Invocation ids as strings.
#[must_use]
pub fn strs(ids: &[InvocationId]) -> Vec<&str> {
    ids.iter().map(InvocationId::as_str).collect()
}
