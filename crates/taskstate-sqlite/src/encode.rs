//! Encoding records into the owned rows the writer stores, exactly as the
//! reference writes them.

use taskstate_core::{CallDTO, InvocationDTO, RunnerContext, RunnerId, WorkflowIdentity};

use crate::writer::{InvocationRow, RunnerRow, WriteOp};

pub(crate) fn invocation_row(inv: &InvocationDTO, call: &CallDTO) -> InvocationRow {
    InvocationRow {
        id: inv.invocation_id.as_str().to_owned(),
        call_key: call.call_id.key().to_owned(),
        task_key: call.call_id.task_id().key().to_owned(),
        args_id: call.call_id.args_id().to_owned(),
        args_json: call.serialized_arguments.to_json(),
        parent: inv
            .parent_invocation_id
            .as_ref()
            .map(|p| p.as_str().to_owned()),
        workflow_id: inv.workflow.workflow_id.as_str().to_owned(),
        workflow_type: inv.workflow.workflow_type.key().to_owned(),
        parent_workflow: inv
            .workflow
            .parent_workflow_id
            .as_ref()
            .map(|p| p.as_str().to_owned()),
    }
}

/// A workflow run as the reference writes it ('' for "no parent").
pub(crate) fn workflow_run_op(w: &WorkflowIdentity) -> WriteOp {
    WriteOp::WorkflowRun {
        id: w.workflow_id.as_str().to_owned(),
        ty: w.workflow_type.key().to_owned(),
        parent: w
            .parent_workflow_id
            .as_ref()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
    }
}

/// One runner-context row: the context without its parent, and the
/// parent's id.
pub(crate) fn runner_row(c: &RunnerContext, parent: Option<&RunnerId>) -> RunnerRow {
    RunnerRow {
        id: c.runner_id.as_str().to_owned(),
        cls: c.runner_cls.clone(),
        parent: parent.map(|p| p.as_str().to_owned()),
        pid: c.pid,
        hostname: c.hostname.clone(),
        thread_id: c.thread_id,
    }
}
