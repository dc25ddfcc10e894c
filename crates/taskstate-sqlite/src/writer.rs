//! The write path: encoded write operations and group commit.
//!
//! All writes go through one connection. A caller encodes its operation
//! (JSON and all) on its own thread, queues it, then takes the connection.
//! Whoever holds the connection is the *leader*: it drains every queued
//! operation, runs them in one `BEGIN IMMEDIATE` transaction (each inside a
//! savepoint, so one failing operation does not undo the others), commits
//! once and hands every operation its outcome. A caller whose operation was
//! committed by an earlier leader finds its outcome as soon as it gets the
//! connection and returns without touching SQLite. One thread alone never
//! waits for anyone (its batch is just its own operation); N threads share
//! commits, so N writers approach batched throughput.

use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::{Connection, params};
use taskstate_core::{BoxError, Error, Result};

use crate::errors::{Ctx, sql_err};
use crate::schema::TABLES;

/// One invocation row, encoded.
pub struct InvocationRow {
    pub id: String,
    pub call_key: String,
    pub task_key: String,
    pub args_id: String,
    pub args_json: String,
    pub parent: Option<String>,
    pub workflow_id: String,
    pub workflow_type: String,
    pub parent_workflow: Option<String>,
}

/// One history row, encoded.
pub struct HistoryRow {
    pub id: String,
    pub ts: f64,
    pub status: &'static str,
    pub json: String,
}

/// One runner-context row, encoded.
pub struct RunnerRow {
    pub id: String,
    pub cls: String,
    pub parent: Option<String>,
    pub pid: i64,
    pub hostname: String,
    pub thread_id: i64,
}

/// A write, with its data owned so another thread can run it.
pub enum WriteOp {
    Invocations(Vec<InvocationRow>),
    Histories(Vec<HistoryRow>),
    Result {
        id: String,
        value: String,
    },
    Exception {
        id: String,
        value: String,
    },
    WorkflowRun {
        id: String,
        ty: String,
        parent: String,
    },
    SubInvocation {
        workflow: String,
        sub: String,
    },
    WorkflowData {
        workflow: String,
        key: String,
        value: String,
    },
    AppInfo {
        id: String,
        json: String,
    },
    Runners(Vec<RunnerRow>),
    Purge,
}

impl WriteOp {
    /// Runs the statements of this operation (inside the caller's
    /// transaction). Writes exactly the columns the reference writes.
    fn execute(&self, c: &Connection) -> rusqlite::Result<()> {
        match self {
            WriteOp::Invocations(rows) => {
                let mut st = c.prepare_cached(crate::sql::UPSERT_INVOCATION)?;
                for r in rows {
                    st.execute(params![
                        r.id,
                        r.call_key,
                        r.task_key,
                        r.args_id,
                        r.args_json,
                        r.parent,
                        r.workflow_id,
                        r.workflow_type,
                        r.parent_workflow
                    ])?;
                }
            }
            WriteOp::Histories(rows) => {
                let mut st = c.prepare_cached(crate::sql::INSERT_HISTORY)?;
                for r in rows {
                    st.execute(params![r.id, r.ts, r.status, r.json])?;
                }
            }
            WriteOp::Result { id, value } => {
                c.prepare_cached(crate::sql::SET_RESULT)?
                    .execute(params![id, value])?;
            }
            WriteOp::Exception { id, value } => {
                c.prepare_cached(
                    "INSERT OR REPLACE INTO state_backend_exceptions (invocation_id, exception_data) VALUES (?1, ?2)",
                )?
                .execute(params![id, value])?;
            }
            WriteOp::WorkflowRun { id, ty, parent } => {
                c.prepare_cached(
                    "INSERT OR REPLACE INTO state_backend_workflows \
                     (workflow_id, workflow_type_key, parent_workflow_id) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![id, ty, parent])?;
            }
            WriteOp::SubInvocation { workflow, sub } => {
                c.prepare_cached(
                    "INSERT OR REPLACE INTO state_backend_workflow_sub_invocations \
                     (parent_workflow_id, sub_invocation_id) VALUES (?1, ?2)",
                )?
                .execute(params![workflow, sub])?;
            }
            WriteOp::WorkflowData {
                workflow,
                key,
                value,
            } => {
                c.prepare_cached(
                    "INSERT OR REPLACE INTO state_backend_workflow_data \
                     (workflow_id, data_key, data_value) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![workflow, key, value])?;
            }
            WriteOp::AppInfo { id, json } => {
                c.prepare_cached(
                    "INSERT OR REPLACE INTO state_backend_app_info (app_id, app_info_json) VALUES (?1, ?2)",
                )?
                .execute(params![id, json])?;
            }
            WriteOp::Runners(rows) => {
                let mut st = c.prepare_cached(
                    "REPLACE INTO state_backend_runner_contexts \
                     (runner_id, runner_cls, parent_ctx_id, pid, hostname, thread_id) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for r in rows {
                    st.execute(params![
                        r.id,
                        r.cls,
                        r.parent,
                        r.pid,
                        r.hostname,
                        r.thread_id
                    ])?;
                }
            }
            WriteOp::Purge => {
                for t in TABLES {
                    c.execute(&format!("DELETE FROM {t}"), [])?;
                }
            }
        }
        Ok(())
    }
}

struct Job {
    op: WriteOp,
    outcome: Mutex<Option<Result<()>>>,
}

/// The single write connection and the queue in front of it.
pub struct Writer {
    conn: Mutex<Connection>,
    queue: Mutex<Vec<Arc<Job>>>,
    ctx: Ctx,
}

/// A copy of an error for every job of a failed batch (rusqlite errors are
/// not `Clone`): same kind, same message, the text as source.
fn replicate(e: &Error) -> Error {
    let src = |m: &str| -> Option<BoxError> { Some(m.to_owned().into()) };
    match e {
        Error::Unavailable { message, .. } => Error::Unavailable {
            message: message.clone(),
            source: src(&e.to_string()),
        },
        Error::Incompatible { location, reason } => Error::Incompatible {
            location: location.clone(),
            reason: reason.clone(),
        },
        other => Error::Storage {
            message: other.to_string(),
            source: None,
        },
    }
}

impl Writer {
    pub fn new(conn: Connection, ctx: Ctx) -> Self {
        Self {
            conn: Mutex::new(conn),
            queue: Mutex::new(Vec::new()),
            ctx,
        }
    }

    /// Runs `f` with the write connection held (no transaction open), for
    /// in-memory databases whose reads share it.
    pub fn with_conn<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> T {
        f(&mut self.conn.lock())
    }

    /// Commits `op`, possibly together with other threads' operations, and
    /// returns once it is committed (or has failed, having changed nothing).
    pub fn submit(&self, op: WriteOp) -> Result<()> {
        let job = Arc::new(Job {
            op,
            outcome: Mutex::new(None),
        });
        self.queue.lock().push(job.clone());
        let mut conn = self.conn.lock();
        if let Some(done) = job.outcome.lock().take() {
            return done;
        }
        // Only the connection holder drains the queue, and our job was not
        // run by an earlier holder, so it is in this batch.
        let batch = std::mem::take(&mut *self.queue.lock());
        self.run_batch(&mut conn, &batch);
        drop(conn);
        let outcome = job.outcome.lock().take();
        outcome.unwrap_or_else(|| {
            Err(Error::Storage {
                message: format!("{}: write was not run (internal error)", self.ctx.path),
                source: None,
            })
        })
    }

    fn run_batch(&self, conn: &mut Connection, batch: &[Arc<Job>]) {
        let fail_all = |e: Error| {
            for j in batch {
                *j.outcome.lock() = Some(Err(replicate(&e)));
            }
        };
        if !conn.is_autocommit() {
            // A previous batch was interrupted; never build on its leftovers.
            let _ = conn.execute_batch("ROLLBACK");
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            return fail_all(sql_err(&self.ctx, "begin write transaction", e));
        }
        let mut outcomes: Vec<Result<()>> = Vec::with_capacity(batch.len());
        if let [job] = batch {
            if let Err(e) = job.op.execute(conn) {
                let _ = conn.execute_batch("ROLLBACK");
                *job.outcome.lock() = Some(Err(sql_err(&self.ctx, "write", e)));
                return;
            }
            outcomes.push(Ok(()));
        } else {
            for job in batch {
                match self.run_in_savepoint(conn, job) {
                    Ok(r) => outcomes.push(r),
                    Err(e) => {
                        // The savepoint itself failed: the transaction's
                        // state is unknown, so nothing of it is kept.
                        let _ = conn.execute_batch("ROLLBACK");
                        return fail_all(e);
                    }
                }
            }
        }
        if let Err(e) = conn.execute_batch("COMMIT") {
            let err = sql_err(&self.ctx, "commit", e);
            let _ = conn.execute_batch("ROLLBACK");
            return fail_all(err);
        }
        for (job, r) in batch.iter().zip(outcomes) {
            *job.outcome.lock() = Some(r);
        }
    }

    /// Runs one job in a savepoint: `Ok(job outcome)`, or `Err` if the
    /// savepoint machinery failed.
    fn run_in_savepoint(&self, conn: &Connection, job: &Job) -> Result<Result<()>> {
        let sp = |sql: &str| {
            conn.execute_batch(sql)
                .map_err(|e| sql_err(&self.ctx, "savepoint", e))
        };
        sp("SAVEPOINT job")?;
        let r = job.op.execute(conn);
        if r.is_err() {
            sp("ROLLBACK TO job")?;
        }
        sp("RELEASE job")?;
        Ok(r.map_err(|e| sql_err(&self.ctx, "write", e)))
    }
}
