//! Builds a synthetic store for measuring the bulk path: N invocations in
//! workflows of 50 (the first of each is the workflow's root and every
//! other one its child and sub-invocation), each with 3 history records
//! (registered, pending, success) and a result; plus an app info and a
//! runner context. Written with `write_rows`, a page per transaction.
//!
//! ```text
//! cargo run --release -p taskstate --example gen_store -- sqlite:///tmp/big.db 1000000
//! # the raw baseline: the same rows by plain rusqlite in ONE transaction
//! cargo run --release -p taskstate --example gen_store -- --raw /tmp/raw.db 1000000
//! ```

use std::time::Instant;

use taskstate::{
    AppInfo, CallDTO, InvocationDTO, InvocationHistory, InvocationId, InvocationStatus,
    InvocationStatusRecord, Row, RunnerContext, RunnerId, SerializedArguments, StoredHistory,
    TaskId, Timestamp, WorkflowIdentity, open,
};

type Failure = Box<dyn std::error::Error>;

/// What every generated row shares.
struct Gen {
    task: TaskId,
    runner: RunnerId,
    t0: Timestamp,
}

impl Gen {
    fn new() -> Result<Self, Failure> {
        Ok(Self {
            task: "bench.tasks.work".parse()?,
            runner: RunnerId::new("runner-0"),
            t0: Timestamp::from_micros(1_736_942_400_000_000),
        })
    }

    fn preamble(&self) -> Vec<Row> {
        vec![
            Row::AppInfo(AppInfo::new("bench-app", "bench.app")),
            Row::RunnerContext(
                RunnerContext {
                    runner_cls: "PersistentProcessRunner".into(),
                    runner_id: self.runner.clone(),
                    parent: None,
                    pid: 1,
                    hostname: "bench-host".into(),
                    thread_id: 1,
                },
                None,
            ),
        ]
    }

    /// The rows of invocation `i`, appended to `out`.
    fn invocation(&self, i: u64, out: &mut Vec<Row>) -> Result<(), Failure> {
        let id = InvocationId::new(format!("inv-{i:09}"));
        let root = InvocationId::new(format!("inv-{:09}", i - i % 50));
        let is_root = id == root;
        let call = CallDTO::new(
            self.task.clone(),
            SerializedArguments::from_pairs([("i", i.to_string()), ("payload", "\"x\"".repeat(8))]),
        );
        let inv = InvocationDTO {
            invocation_id: id.clone(),
            call_id: call.call_id.clone(),
            workflow: WorkflowIdentity {
                workflow_id: root.clone(),
                workflow_type: self.task.clone(),
                parent_workflow_id: None,
            },
            parent_invocation_id: (!is_root).then(|| root.clone()),
        };
        out.push(Row::Invocation(Box::new((inv.clone(), call))));
        let at = self.t0.add_micros(i64::try_from(i)? * 1000);
        let statuses = [
            InvocationStatus::Registered,
            InvocationStatus::Pending,
            InvocationStatus::Success,
        ];
        for (k, status) in statuses.into_iter().enumerate() {
            let ts = at.add_micros(i64::try_from(k)? * 100);
            let record = InvocationHistory {
                invocation_id: id.clone(),
                timestamp: ts,
                status_record: InvocationStatusRecord {
                    status,
                    runner_id: (status != InvocationStatus::Registered)
                        .then(|| self.runner.clone()),
                    timestamp: ts,
                },
                runner_context_id: self.runner.clone(),
                registered_by_inv_id: None,
            };
            let time_key = ts.key();
            out.push(Row::History(id.clone(), StoredHistory { record, time_key }));
        }
        out.push(Row::Result(id.clone(), format!("{{\"value\": {i}}}")));
        if is_root {
            out.push(Row::WorkflowRun(inv.workflow.clone()));
        } else {
            out.push(Row::SubInvocation(root, id));
        }
        Ok(())
    }
}

fn main() -> Result<(), Failure> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let raw = args.first().is_some_and(|a| a == "--raw");
    if raw {
        args.remove(0);
    }
    let (Some(url), Some(n)) = (args.first(), args.get(1)) else {
        return Err("usage: gen_store [--raw] URL N   (--raw: URL is a SQLite file path)".into());
    };
    let n: u64 = n.parse()?;
    let g = Gen::new()?;
    let started = Instant::now();
    if raw {
        raw_baseline(url, n, &g)?;
    } else {
        let b = open(url)?;
        b.write_rows(&g.preamble())?;
        let mut page = Vec::with_capacity(8000);
        for i in 0..n {
            g.invocation(i, &mut page)?;
            if page.len() >= 7000 {
                b.write_rows(&page)?;
                page.clear();
            }
        }
        b.write_rows(&page)?;
    }
    let secs = started.elapsed().as_secs_f64();
    let how = if raw {
        "raw rusqlite, one transaction"
    } else {
        "write_rows, 7000-row pages"
    };
    eprintln!(
        "wrote {n} invocations into {url} in {secs:.1} s ({:.0} invocations/s, {how})",
        n as f64 / secs
    );
    Ok(())
}

/// The same rows inserted by plain rusqlite with the engine's pragmas and
/// statements, in one transaction: what SQLite itself does with them.
fn raw_baseline(path: &str, n: u64, g: &Gen) -> Result<(), Failure> {
    use taskstate_sqlite::sql;
    let options = taskstate::sqlite::SqliteOptions::default();
    let mut conn = taskstate::sqlite::SqliteBackend::raw_connection(path, &options)?;
    let tx = conn.transaction()?;
    {
        let mut inv = tx.prepare(sql::UPSERT_INVOCATION)?;
        let mut his = tx.prepare(sql::INSERT_HISTORY)?;
        let mut res = tx.prepare(sql::SET_RESULT)?;
        let mut run = tx.prepare(
            "INSERT OR REPLACE INTO state_backend_workflows \
             (workflow_id, workflow_type_key, parent_workflow_id) VALUES (?1, ?2, ?3)",
        )?;
        let mut sub = tx.prepare(
            "INSERT OR REPLACE INTO state_backend_workflow_sub_invocations \
             (parent_workflow_id, sub_invocation_id) VALUES (?1, ?2)",
        )?;
        let mut rows = Vec::new();
        for i in 0..n {
            rows.clear();
            g.invocation(i, &mut rows)?;
            for r in &rows {
                match r {
                    Row::Invocation(p) => {
                        let (i, c) = &**p;
                        inv.execute(rusqlite::params![
                            i.invocation_id.as_str(),
                            c.call_id.key(),
                            c.call_id.task_id().key(),
                            c.call_id.args_id(),
                            c.serialized_arguments.to_json(),
                            i.parent_invocation_id.as_ref().map(InvocationId::as_str),
                            i.workflow.workflow_id.as_str(),
                            i.workflow.workflow_type.key(),
                            Option::<&str>::None,
                        ])?;
                    }
                    Row::History(k, h) => {
                        his.execute(rusqlite::params![
                            k.as_str(),
                            h.time_key.seconds(),
                            h.record.status_record.status.as_str(),
                            h.record.to_json(),
                        ])?;
                    }
                    Row::Result(k, v) => {
                        res.execute(rusqlite::params![k.as_str(), v])?;
                    }
                    Row::WorkflowRun(w) => {
                        run.execute(rusqlite::params![
                            w.workflow_id.as_str(),
                            w.workflow_type.key(),
                            ""
                        ])?;
                    }
                    Row::SubInvocation(w, s) => {
                        sub.execute(rusqlite::params![w.as_str(), s.as_str()])?;
                    }
                    _ => {}
                }
            }
        }
    }
    tx.commit()?;
    Ok(())
}
