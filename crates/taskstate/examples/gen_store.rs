//! Builds a synthetic store for measuring the bulk path: N invocations in
//! workflows of 50 (the first of each is the workflow's root and every
//! other one its child and sub-invocation), each with 3 history records
//! (registered, pending, success) and a result; plus an app info and a
//! runner context. Written with `write_rows`, a page per transaction.
//!
//! ```text
//! cargo run --release -p taskstate --example gen_store -- sqlite:///tmp/big.db 1000000
//! ```

use std::time::Instant;

use taskstate::{
    AppInfo, CallDTO, InvocationDTO, InvocationHistory, InvocationId, InvocationStatus,
    InvocationStatusRecord, Row, RunnerContext, RunnerId, SerializedArguments, StoredHistory,
    Timestamp, WorkflowIdentity, open,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(n)) = (args.next(), args.next()) else {
        return Err("usage: gen_store URL N".into());
    };
    let n: u64 = n.parse()?;
    let b = open(&url)?;
    let started = Instant::now();
    let runner = RunnerId::new("runner-0");
    b.write_rows(&[
        Row::AppInfo(AppInfo::new("bench-app", "bench.app")),
        Row::RunnerContext(
            RunnerContext {
                runner_cls: "PersistentProcessRunner".into(),
                runner_id: runner.clone(),
                parent: None,
                pid: 1,
                hostname: "bench-host".into(),
                thread_id: 1,
            },
            None,
        ),
    ])?;
    let task: taskstate::TaskId = "bench.tasks.work".parse()?;
    let t0 = Timestamp::from_micros(1_736_942_400_000_000);
    let mut page = Vec::with_capacity(8000);
    for i in 0..n {
        let id = InvocationId::new(format!("inv-{i:09}"));
        let root = InvocationId::new(format!("inv-{:09}", i - i % 50));
        let is_root = id == root;
        let call = CallDTO::new(
            task.clone(),
            SerializedArguments::from_pairs([("i", i.to_string()), ("payload", "\"x\"".repeat(8))]),
        );
        let inv = InvocationDTO {
            invocation_id: id.clone(),
            call_id: call.call_id.clone(),
            workflow: WorkflowIdentity {
                workflow_id: root.clone(),
                workflow_type: task.clone(),
                parent_workflow_id: None,
            },
            parent_invocation_id: (!is_root).then(|| root.clone()),
        };
        page.push(Row::Invocation(Box::new((inv.clone(), call))));
        let at = t0.add_micros(i64::try_from(i)? * 1000);
        for (k, status) in [
            InvocationStatus::Registered,
            InvocationStatus::Pending,
            InvocationStatus::Success,
        ]
        .into_iter()
        .enumerate()
        {
            let ts = at.add_micros(i64::try_from(k)? * 100);
            let record = InvocationHistory {
                invocation_id: id.clone(),
                timestamp: ts,
                status_record: InvocationStatusRecord {
                    status,
                    runner_id: (status != InvocationStatus::Registered).then(|| runner.clone()),
                    timestamp: ts,
                },
                runner_context_id: runner.clone(),
                registered_by_inv_id: None,
            };
            page.push(Row::History(
                id.clone(),
                StoredHistory {
                    time_key: ts.key(),
                    record,
                },
            ));
        }
        page.push(Row::Result(id.clone(), format!("{{\"value\": {i}}}")));
        if is_root {
            page.push(Row::WorkflowRun(inv.workflow.clone()));
        } else {
            page.push(Row::SubInvocation(root, id));
        }
        if page.len() >= 7000 {
            b.write_rows(&page)?;
            page.clear();
        }
    }
    b.write_rows(&page)?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "wrote {n} invocations into {url} in {secs:.1} s ({:.0} invocations/s through write_rows)",
        n as f64 / secs
    );
    Ok(())
}
