//! The write path: encoded write operations and group commit.
//!
//! All writes go through one connection. A caller encodes its operation
//! (JSON and all) on its own thread, queues it, then takes the connection.
//! Whoever holds the connection is the *leader*: it drains every queued
//! operation, runs them in one `BEGIN IMMEDIATE` transaction, commits once
//! and hands every operation its outcome (a batch of one operation of one
//! statement runs as that statement alone, which SQLite commits by
//! itself). Operations are validated before they are queued, so the batch
//! runs without savepoints; should one fail anyway (a storage error), the
//! batch is rolled back and each operation is retried in its own
//! transaction, so a failure undoes only itself. A caller whose operation was
//! committed by an earlier leader finds its outcome as soon as it gets the
//! connection and returns without touching SQLite. One thread alone never
//! waits for anyone (its batch is just its own operation); N threads share
//! commits, so N writers approach batched throughput.
//!
//! Checkpoints run beside the write connection. SQLite's automatic
//! checkpoint runs inside the commit that takes the WAL past 1,000 frames:
//! it copies the WAL into the database file and syncs both, and with one
//! write connection every queued writer waits for it (two raw connections
//! would go on writing on the other one). Instead a WAL hook on the write
//! connection notes the WAL's size, and a leader whose commit took it past
//! [`CHECKPOINT_FRAMES`] runs a `PASSIVE` checkpoint on a connection of its
//! own ([`Checkpointer`]) once it has handed the write connection on: the
//! next batch commits meanwhile. One checkpoint runs at a time; a leader
//! that finds one running skips its own. The WAL starts over only after a
//! checkpoint that copied all of it, which writers appending meanwhile
//! prevent; past [`HOLD_FRAMES`] the checkpoint therefore also copies what
//! they appended, with the write connection held. That bounds the WAL near
//! [`HOLD_FRAMES`] plus what writers append while one checkpoint runs; when
//! checkpoints are slow enough (a loaded disk) for that to reach
//! [`LIMIT_FRAMES`], each writer waits for the running one instead of
//! appending more.

use std::cell::Cell;
use std::os::raw::c_int;
use std::sync::Arc;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use rusqlite::{Connection, params};
use taskstate_core::{BoxError, Error, Result};

use crate::errors::{Ctx, sql_err};
use crate::schema::{self, ConnSettings, TABLES};

/// WAL frames past which a commit asks for a checkpoint: SQLite's own
/// automatic-checkpoint threshold (about 4 MB of 4 KiB pages).
pub const CHECKPOINT_FRAMES: c_int = 1000;

/// WAL frames past which a checkpoint also copies, with writers held off,
/// what they appended while it ran, so that the WAL starts over. At one
/// thread the WAL starts over after every checkpoint (nobody appends
/// during it); under steady writers from several, it grows to this.
pub const HOLD_FRAMES: c_int = 4 * CHECKPOINT_FRAMES;

/// WAL frames past which a writer that finds a checkpoint running waits for
/// it and then runs one that holds writers off: the WAL's bound however slow
/// checkpoints are (give or take one batch per writer thread), unless a
/// read still open on older frames keeps them from being copied (which
/// holds SQLite's own checkpoints back the same way).
pub const LIMIT_FRAMES: c_int = 2 * HOLD_FRAMES;

thread_local! {
    /// Frames in the WAL after this thread's last commit on a write
    /// connection. The WAL hook sets it inside the commit, in the committing
    /// thread; the same thread takes it right after ([`Writer::take_due`]).
    static WAL_FRAMES: Cell<c_int> = const { Cell::new(0) };
}

/// The write connection's WAL hook. Installing it turns off SQLite's
/// automatic checkpoint on that connection (the hook replaces it).
fn note_wal_frames(_: &rusqlite::hooks::Wal, frames: c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.with(|f| f.set(frames));
    Ok(())
}

/// The first SQLite (3.51.3, as `sqlite3_libversion_number`) without the
/// WAL-reset bug: in every earlier version since 3.7.0 a checkpoint on one
/// connection that starts while another connection's commit starts the WAL
/// over can miss that reset, and a later checkpoint then leaves committed
/// pages out of the database file (<https://sqlite.org/wal.html#walresetbug>).
/// Checkpoints beside the write connection are exactly that pattern: with
/// SQLite 3.50.2, one of two runs of `taskstate bench --n 20000 --threads 2
/// --repeat 5` found a store "malformed" after its two-thread writes.
pub const WAL_RESET_FIXED: c_int = 3_051_003;

/// Whether checkpoints may run beside the write connection with the SQLite
/// of this version number: only where the WAL-reset bug is fixed. Else
/// SQLite's automatic checkpoint stays on, inside the write connection's
/// commits, which writers wait for but no commit of ours can race. (The
/// bundled SQLite is newer; a build against the system's, such as the
/// Python extension's, may not be.)
#[must_use]
pub fn checkpoints_beside_writers(sqlite_version: c_int) -> bool {
    sqlite_version >= WAL_RESET_FIXED
}

/// Checkpoints a file's WAL on a connection of its own, opened at the first
/// checkpoint.
pub struct Checkpointer {
    conn: Mutex<Option<Connection>>,
    uri: String,
    settings: ConnSettings,
}

impl Checkpointer {
    pub fn new(uri: String, settings: ConnSettings) -> Self {
        Self {
            conn: Mutex::new(None),
            uri,
            settings,
        }
    }

    /// A `PASSIVE` checkpoint beside the writers, unless another thread is
    /// running one (then nothing, or past [`LIMIT_FRAMES`] a wait for it
    /// first): it copies what no reader still needs and never waits for a
    /// lock. When the commit that asked for it left `frames` at
    /// [`HOLD_FRAMES`] or more, a second one follows with the `writer`
    /// connection held, copying what was appended during the first, so the
    /// next write starts the WAL over. Errors are dropped, as SQLite drops
    /// those of its automatic checkpoint: the WAL keeps every commit, and
    /// the next commit past the threshold tries again.
    fn run(&self, writer: &Mutex<Connection>, frames: c_int, ctx: &Ctx) {
        let mut held = match self.conn.try_lock() {
            Some(held) => held,
            // Writers outran a checkpoint (a slow disk): wait for it, then
            // run one that holds them off, instead of appending more.
            None if frames >= LIMIT_FRAMES => self.conn.lock(),
            None => return,
        };
        if held.is_none() {
            *held = schema::open_connection(&self.uri, &self.settings, ctx).ok();
        }
        let Some(conn) = held.as_ref() else {
            return;
        };
        let checkpoint = || conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)");
        if checkpoint().is_ok() && frames >= HOLD_FRAMES {
            let _writers_wait = writer.lock();
            let _ = checkpoint();
        }
    }
}

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
    pub json: std::sync::Arc<str>,
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
    /// Several operations as one (the bulk path's page of rows).
    Batch(Vec<WriteOp>),
}

impl WriteOp {
    /// Whether this operation is one statement (its triggers included):
    /// SQLite makes such a statement atomic by itself.
    fn is_one_statement(&self) -> bool {
        match self {
            WriteOp::Invocations(rows) => rows.len() == 1,
            WriteOp::Histories(rows) => rows.len() == 1,
            WriteOp::Runners(rows) => rows.len() == 1,
            WriteOp::Result { .. }
            | WriteOp::Exception { .. }
            | WriteOp::WorkflowRun { .. }
            | WriteOp::SubInvocation { .. }
            | WriteOp::WorkflowData { .. }
            | WriteOp::AppInfo { .. } => true,
            WriteOp::Batch(ops) => matches!(ops.as_slice(), [op] if op.is_one_statement()),
            WriteOp::Purge => false,
        }
    }

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
                    st.execute(params![r.id, r.ts, r.status, &*r.json])?;
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
            WriteOp::Batch(ops) => {
                for op in ops {
                    op.execute(c)?;
                }
            }
            WriteOp::Purge => {
                // First, so the history triggers find no latest row to elect
                // a successor for.
                c.execute(&format!("DELETE FROM {}", crate::schema::LATEST_TABLE), [])?;
                for t in TABLES {
                    c.execute(&format!("DELETE FROM {t}"), [])?;
                }
            }
        }
        Ok(())
    }
}

/// A failed write transaction, and whether it failed to even begin.
struct Failure {
    error: Error,
    at_begin: bool,
}

struct Job {
    op: WriteOp,
    outcome: Mutex<Option<Result<()>>>,
}

/// The single write connection and the queue in front of it.
pub struct Writer {
    conn: Mutex<Connection>,
    /// `None` for an in-memory database (no WAL).
    checkpointer: Option<Checkpointer>,
    shared: Mutex<Shared>,
    /// Signalled when a leader finishes a batch.
    batch_done: Condvar,
    ctx: Ctx,
    transactions: AtomicU64,
    operations: AtomicU64,
    encoding: AtomicUsize,
    /// Signalled when a job is queued while a leader is gathering.
    queued: Condvar,
}

/// The queue and whether a leader is running (or gathering) a batch.
struct Shared {
    queue: Vec<Arc<Job>>,
    leader_active: bool,
    /// A leader is waiting for writers that are encoding their operations.
    gathering: bool,
}

/// How long a leader waits at most for writers that have started a write
/// call but not queued it yet. Only ever spent when other writers are in
/// flight, so a lone writer never waits.
const GATHER: Duration = Duration::from_micros(200);

/// Marks a thread as encoding a write, from the start of the write call
/// until its operation is queued (or the call fails before that); a leader
/// waits briefly for such writers so their operations share its commit.
pub struct Encoding<'a> {
    writer: &'a Writer,
    counted: bool,
}

impl Encoding<'_> {
    fn finish(&mut self) {
        if std::mem::take(&mut self.counted) {
            self.writer.encoding.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Encoding<'_> {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Counts of committed write transactions and the operations they held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Write transactions run (committed or not).
    pub transactions: u64,
    /// Operations run in them.
    pub operations: u64,
}

/// Ends a leader's turn even if the batch panicked, so waiters never hang.
struct LeaderTurn<'a>(&'a Writer);

impl Drop for LeaderTurn<'_> {
    fn drop(&mut self) {
        self.0.shared.lock().leader_active = false;
        self.0.batch_done.notify_all();
    }
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
    /// A writer on `conn`; with a `checkpointer`, it checkpoints the WAL
    /// itself (see the module docs) instead of SQLite's automatic one.
    pub fn new(conn: Connection, ctx: Ctx, checkpointer: Option<Checkpointer>) -> Self {
        if checkpointer.is_some() {
            conn.wal_hook(Some(note_wal_frames));
        }
        Self {
            conn: Mutex::new(conn),
            checkpointer,
            shared: Mutex::new(Shared {
                queue: Vec::new(),
                leader_active: false,
                gathering: false,
            }),
            encoding: AtomicUsize::new(0),
            queued: Condvar::new(),
            batch_done: Condvar::new(),
            ctx,
            transactions: AtomicU64::new(0),
            operations: AtomicU64::new(0),
        }
    }

    /// Runs `f` with the write connection held (no transaction open): the
    /// reads of an in-memory database, and writes that run their own
    /// transactions (prune, reclaim). A checkpoint due after them runs once
    /// the connection is released.
    pub fn with_conn<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> T {
        let out = f(&mut self.conn.lock());
        self.checkpoint_if_due();
        out
    }

    /// Whether this thread's last commit took the WAL past
    /// [`CHECKPOINT_FRAMES`]; clears the note.
    fn take_due() -> Option<c_int> {
        let frames = WAL_FRAMES.with(|f| f.replace(0));
        (frames >= CHECKPOINT_FRAMES).then_some(frames)
    }

    /// Runs a checkpoint if this thread's last commit asked for one. Call
    /// it with the write connection released.
    fn checkpoint_if_due(&self) {
        // An in-memory database (no checkpointer) has no WAL to note: its
        // reads, which come through `with_conn`, skip the thread-local.
        if let Some(checkpointer) = &self.checkpointer
            && let Some(frames) = Self::take_due()
        {
            checkpointer.run(&self.conn, frames, &self.ctx);
        }
    }

    /// The write connection itself, held until the guard is dropped: the
    /// snapshot of an in-memory database, whose reads share it.
    pub fn lock_conn(&self) -> parking_lot::MutexGuard<'_, Connection> {
        self.conn.lock()
    }

    /// Marks the calling thread as encoding a write until it is submitted.
    /// Take it before encoding the operation.
    pub fn enter(&self) -> Encoding<'_> {
        self.encoding.fetch_add(1, Ordering::Relaxed);
        Encoding {
            writer: self,
            counted: true,
        }
    }

    /// Transactions and operations run so far (operations per transaction
    /// above 1 means commits were shared).
    pub fn stats(&self) -> WriteStats {
        WriteStats {
            transactions: self.transactions.load(Ordering::Relaxed),
            operations: self.operations.load(Ordering::Relaxed),
        }
    }

    /// Commits `op`, possibly together with other threads' operations, and
    /// returns once it is committed (or has failed, having changed nothing).
    ///
    /// Waiting callers sleep on a condition variable, not on the connection:
    /// when a batch ends, callers whose operations it held return at once,
    /// and one of the others leads the next batch with everything queued
    /// meanwhile.
    pub fn submit(&self, mut encoding: Encoding<'_>, op: WriteOp) -> Result<()> {
        let job = Arc::new(Job {
            op,
            outcome: Mutex::new(None),
        });
        let mut shared = self.shared.lock();
        shared.queue.push(job.clone());
        encoding.finish();
        if shared.gathering {
            self.queued.notify_one();
        }
        loop {
            if let Some(done) = job.outcome.lock().take() {
                return done;
            }
            if shared.leader_active {
                self.batch_done.wait(&mut shared);
                continue;
            }
            // Lead: everything queued (our job included) is one batch. Writers
            // already encoding are worth a short wait: one commit for all.
            shared.leader_active = true;
            let deadline = Instant::now() + GATHER;
            while self.encoding.load(Ordering::Relaxed) > 0 {
                shared.gathering = true;
                if self.queued.wait_until(&mut shared, deadline).timed_out() {
                    break;
                }
            }
            shared.gathering = false;
            let batch = std::mem::take(&mut shared.queue);
            drop(shared);
            {
                let _turn = LeaderTurn(self);
                let mut conn = self.conn.lock();
                self.run_batch(&mut conn, &batch);
            }
            // The next leader has the connection: checkpoint beside it.
            self.checkpoint_if_due();
            shared = self.shared.lock();
        }
    }

    /// Runs `batch` in one transaction. Operations were validated before
    /// they were queued and only fail on storage errors, so the batch runs
    /// optimistically with no savepoints; if any operation fails, the whole
    /// transaction is rolled back and each operation is retried alone, so
    /// every caller gets its own outcome and a failure undoes only itself.
    fn run_batch(&self, conn: &mut Connection, batch: &[Arc<Job>]) {
        self.transactions.fetch_add(1, Ordering::Relaxed);
        self.operations
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        if !conn.is_autocommit() {
            // A previous batch was interrupted; never build on its leftovers.
            let _ = conn.execute_batch("ROLLBACK");
        }
        match self.transaction(conn, batch) {
            Ok(()) => {
                for j in batch {
                    *j.outcome.lock() = Some(Ok(()));
                }
            }
            Err(Failure { error, .. }) if batch.len() == 1 => {
                *batch[0].outcome.lock() = Some(Err(error));
            }
            // No transaction could be started (busy past the timeout, I/O):
            // retrying each operation would only wait again.
            Err(Failure {
                error,
                at_begin: true,
            }) => {
                for j in batch {
                    *j.outcome.lock() = Some(Err(replicate(&error)));
                }
            }
            Err(Failure {
                at_begin: false, ..
            }) => {
                for j in batch {
                    let r = self.transaction(conn, std::slice::from_ref(j));
                    *j.outcome.lock() = Some(r.map_err(|f| f.error));
                }
            }
        }
    }

    /// One `BEGIN IMMEDIATE … COMMIT` around `jobs`, rolled back on error;
    /// a lone single-statement job runs in autocommit instead.
    fn transaction(&self, conn: &Connection, jobs: &[Arc<Job>]) -> Result<(), Failure> {
        if let [job] = jobs
            && job.op.is_one_statement()
        {
            // One statement alone commits by itself (autocommit), as atomic
            // as inside BEGIN IMMEDIATE … COMMIT: a write statement takes its
            // snapshot and the write lock in one step, waiting on the busy
            // handler as BEGIN IMMEDIATE does. Two statements fewer.
            return job.op.execute(conn).map_err(|e| Failure {
                error: sql_err(&self.ctx, "write", e),
                at_begin: false,
            });
        }
        let step = |sql: &str, what: &str| -> Result<()> {
            conn.prepare_cached(sql)
                .and_then(|mut st| st.execute([]))
                .map(drop)
                .map_err(|e| sql_err(&self.ctx, what, e))
        };
        step("BEGIN IMMEDIATE", "begin write transaction").map_err(|error| Failure {
            error,
            at_begin: true,
        })?;
        let mut result = Ok(());
        for j in jobs {
            if let Err(e) = j.op.execute(conn) {
                result = Err(sql_err(&self.ctx, "write", e));
                break;
            }
        }
        if result.is_ok() {
            result = step("COMMIT", "commit");
        }
        if result.is_err() && !conn.is_autocommit() {
            let _ = step("ROLLBACK", "rollback");
        }
        result.map_err(|error| Failure {
            error,
            at_begin: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_run_beside_writers_only_where_the_wal_reset_bug_is_fixed() {
        // Debian 12's system SQLite, the one bundled until 2026-12-01, the
        // last with the bug, the fix, and the one bundled since.
        for (version, beside) in [
            (3_040_001, false),
            (3_050_002, false),
            (3_051_002, false),
            (3_051_003, true),
            (3_053_001, true),
        ] {
            assert_eq!(checkpoints_beside_writers(version), beside, "{version}");
        }
    }

    /// The SQLite compiled in must not have the WAL-reset bug: the engine
    /// then checkpoints beside its writers, as its two-thread write speed
    /// depends on.
    #[cfg(feature = "bundled")]
    #[test]
    fn the_bundled_sqlite_has_the_wal_reset_fix() {
        assert!(
            checkpoints_beside_writers(rusqlite::version_number()),
            "bundled SQLite {} has the WAL-reset bug",
            rusqlite::version()
        );
    }
}
