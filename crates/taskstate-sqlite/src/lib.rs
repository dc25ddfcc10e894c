//! The SQLite engine of **taskstate**. It reads and writes the database
//! format of pynenc 0.1.0's `SQLiteStateBackend`, so the same file can be
//! used by pynenc and by taskstate, and it runs close to SQLite's own speed.
//!
//! ```
//! use taskstate_core::{InvocationId, StateBackend};
//! use taskstate_sqlite::SqliteBackend;
//!
//! let dir = tempfile::tempdir()?;
//! let backend = SqliteBackend::open(dir.path().join("state.db"))?;
//! backend.set_result(&InvocationId::new("inv-1"), "42")?;
//! assert_eq!(backend.get_result(&InvocationId::new("inv-1"))?, "42");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Opening a pynenc database
//!
//! Point [`SqliteBackend::open`] at the file pynenc's `sqlite_db_path`
//! names. A pynenc file has schema version 0 (`PRAGMA user_version`); on
//! first open this engine adds its own indexes (named `taskstate_*`) and sets
//! version 1. It never renames, drops or changes a reference table or
//! column, so pynenc 0.1.0 keeps reading and writing the file. A file whose
//! version is newer than this engine knows is refused, unmodified.
//! Back the file up first if pynenc and taskstate will not be upgraded
//! together.
//!
//! # Durability
//!
//! The file is put in WAL mode. Every write call returns after its
//! transaction has committed.
//! - `synchronous = NORMAL` (default): a committed write survives the
//!   process being killed at any instant. A power loss or OS crash may lose
//!   the most recent commits, never corrupting the file.
//! - `synchronous = FULL` ([`Synchronous::Full`]): the WAL is synced at every
//!   commit; a committed write also survives power loss. Slower.
//!
//! WAL needs every process that opens the file to be on the same host: do
//! not put the database on a network filesystem (NFS, SMB). For workers on
//! several machines use a server engine.
//!
//! # Concurrency
//!
//! One write connection with group commit (see the `writer` module docs):
//! each write is one `BEGIN IMMEDIATE` transaction, batches are one
//! transaction, and concurrent writers share commits. Reads use a pool of
//! read-only connections and never block writes. Other processes wait on a
//! busy timeout (60 s by default) instead of failing with "database is
//! locked".

use std::path::Path;
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row, params};
use taskstate_core::{
    AppInfo, CallDTO, CallId, Cursor, Entity, Error, InvocationDTO, InvocationHistory,
    InvocationId, Page, Result, Row as BulkRow, RunnerContext, RunnerId, SerializedArguments,
    Snapshot, StateBackend, TaskId, TimeRange, WorkflowIdentity, check_app_info, check_history_row,
    check_invocation_id, check_invocation_pair, check_page_size, check_runner_context,
    check_sub_invocation, check_workflow, check_workflow_data, fetch_limit, resolve_runner_chain,
    runner_id_matches,
};

mod bulk;
mod errors;
mod schema;
pub mod sql;
mod writer;

pub use schema::{SCHEMA_VERSION, Synchronous, TABLES};

use errors::{Ctx, corrupt, sql_err};
use schema::ConnSettings;
pub use writer::WriteStats;
use writer::{HistoryRow, InvocationRow, RunnerRow, WriteOp, Writer};

const ENGINE: &str = "sqlite";

/// How to open a database.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// Durability of commits (default [`Synchronous::Normal`]).
    pub synchronous: Synchronous,
    /// How long a call waits for another process's lock before failing
    /// with a retriable `Unavailable` error (default 60 s).
    pub busy_timeout: Duration,
    /// Idle read connections kept open (default 8).
    pub max_idle_readers: usize,
    /// Open for reading only (SPEC §6, reading never writes): the file must
    /// exist and hold the reference tables; nothing is created, migrated or
    /// switched to WAL, every connection is read-only, and writes fail.
    pub read_only: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Normal,
            busy_timeout: Duration::from_secs(60),
            max_idle_readers: 8,
            read_only: false,
        }
    }
}

/// Prepared statements kept per connection: more than every statement this
/// engine issues, so none is ever re-prepared.
const STATEMENT_CACHE: usize = 64;

/// Read connections, opened on demand and kept for reuse.
struct Readers {
    idle: Mutex<Vec<Connection>>,
    uri: String,
    settings: ConnSettings,
    max_idle: usize,
}

impl Readers {
    /// An idle read connection, or a new one.
    fn take(&self, ctx: &Ctx) -> Result<Connection> {
        if let Some(c) = self.idle.lock().pop() {
            return Ok(c);
        }
        let c = schema::open_connection(&self.uri, &self.settings, ctx)?;
        c.execute_batch("PRAGMA query_only = 1")
            .map_err(|e| sql_err(ctx, "open reader", e))?;
        Ok(c)
    }

    /// Keeps `conn` for reuse if it is idle (no transaction left open) and
    /// the pool has room.
    fn give_back(&self, conn: Connection) {
        if conn.is_autocommit() {
            let mut idle = self.idle.lock();
            if idle.len() < self.max_idle {
                idle.push(conn);
            }
        }
    }
}

/// The SQLite engine. `Send + Sync`: share one per process (in an `Arc`)
/// between all threads.
pub struct SqliteBackend {
    ctx: Ctx,
    writer: Writer,
    /// `None` for an in-memory database, whose reads share the writer's
    /// connection (a private in-memory database has only one).
    readers: Option<Readers>,
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("path", &self.ctx.path)
            .finish_non_exhaustive()
    }
}

impl SqliteBackend {
    /// Opens (creating if needed, with its parent directory) the database
    /// at `path` with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, &SqliteOptions::default())
    }

    /// Opens the database at `path` with `options`.
    pub fn open_with(path: impl AsRef<Path>, options: &SqliteOptions) -> Result<Self> {
        let (conn, ctx, uri, settings) = open_file(path.as_ref(), options)?;
        Ok(Self {
            writer: Writer::new(conn, ctx.clone()),
            readers: Some(Readers {
                idle: Mutex::new(Vec::new()),
                uri,
                settings,
                max_idle: options.max_idle_readers,
            }),
            ctx,
        })
    }

    /// A private in-memory database (nothing is durable; one connection
    /// serves reads and writes). Useful for tests.
    pub fn open_in_memory() -> Result<Self> {
        let ctx = Ctx {
            path: ":memory:".into(),
        };
        let settings = ConnSettings {
            synchronous: Synchronous::Normal,
            busy_timeout: Duration::from_secs(5),
            statement_cache: STATEMENT_CACHE,
            read_only: false,
        };
        let mut conn = schema::open_connection(":memory:", &settings, &ctx)?;
        schema::prepare_schema(&mut conn, true, settings.busy_timeout, &ctx)?;
        Ok(Self {
            writer: Writer::new(conn, ctx.clone()),
            readers: None,
            ctx,
        })
    }

    /// Write transactions and the operations they held since opening: more
    /// operations than transactions means concurrent writers shared commits.
    #[must_use]
    pub fn write_stats(&self) -> WriteStats {
        self.writer.stats()
    }

    /// The database path this engine was opened on.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.ctx.path
    }

    /// Runs a single-statement read `f` on a read connection (a statement
    /// is its own snapshot; no transaction round trips needed).
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.with_reader(false, f)
    }

    /// Runs a multi-statement read inside one read transaction, so all of
    /// its statements see one snapshot.
    fn read_snapshot<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.with_reader(true, f)
    }

    fn with_reader<T>(
        &self,
        snapshot: bool,
        f: impl FnOnce(&Connection) -> Result<T>,
    ) -> Result<T> {
        let Some(readers) = &self.readers else {
            // In memory: the one connection, held under the writer's lock,
            // is a snapshot by itself.
            return self.writer.with_conn(|c| f(c));
        };
        let mut conn = readers.take(&self.ctx)?;
        let result = if snapshot {
            (|| {
                let tx = conn
                    .transaction()
                    .map_err(|e| sql_err(&self.ctx, "begin read", e))?;
                let out = f(&tx)?;
                tx.finish().map_err(|e| sql_err(&self.ctx, "end read", e))?;
                Ok(out)
            })()
        } else {
            f(&conn)
        };
        readers.give_back(conn);
        result
    }

    fn write(&self, encoding: writer::Encoding<'_>, op: WriteOp) -> Result<()> {
        self.writer.submit(encoding, op)
    }

    /// Opens a plain rusqlite connection to the database at `path` with
    /// exactly this engine's pragmas, schema and statement cache: the raw
    /// baseline that `taskstate bench` measures this engine against. Not
    /// needed to use the engine.
    pub fn raw_connection(path: impl AsRef<Path>, options: &SqliteOptions) -> Result<Connection> {
        open_file(path.as_ref(), options).map(|(conn, ..)| conn)
    }

    /// Runs `PRAGMA integrity_check` and returns its report (`["ok"]` when
    /// the file is sound).
    pub fn integrity_check(&self) -> Result<Vec<String>> {
        self.read(|c| {
            let mut st = c
                .prepare("PRAGMA integrity_check")
                .map_err(|e| sql_err(&self.ctx, "integrity check", e))?;
            let rows = st
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(|e| sql_err(&self.ctx, "integrity check", e))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(|e| sql_err(&self.ctx, "integrity check", e))
        })
    }
}

/// Opens the write connection to a database file (creating it and its
/// directory) and brings its schema up to date: everything `open_with` and
/// the raw baseline share. Returns the connection, the context for
/// messages, the URI and the settings further connections use.
fn open_file(
    path: &Path,
    options: &SqliteOptions,
) -> Result<(Connection, Ctx, String, ConnSettings)> {
    let ctx = Ctx {
        path: path.display().to_string(),
    };
    if path.is_dir() {
        return Err(Error::Storage {
            message: format!("{} is a directory, not a database file", ctx.path),
            source: None,
        });
    }
    // SQLite takes the busy timeout as a C int of milliseconds (rusqlite
    // panics past it): refuse a longer one as input, not a crash.
    if i32::try_from(options.busy_timeout.as_millis()).is_err() {
        return Err(Error::invalid(format!(
            "busy timeout of {} ms is longer than SQLite's limit of {} ms",
            options.busy_timeout.as_millis(),
            i32::MAX
        )));
    }
    let uri = file_uri(path);
    let settings = ConnSettings {
        synchronous: options.synchronous,
        busy_timeout: options.busy_timeout,
        statement_cache: STATEMENT_CACHE,
        read_only: options.read_only,
    };
    if options.read_only {
        if !path.is_file() {
            return Err(Error::invalid(format!(
                "no such store: {} does not exist",
                ctx.path
            )));
        }
        let open_ro = |uri: &str| {
            let conn = schema::open_connection(uri, &settings, &ctx)?;
            schema::check_read_only(&conn, &ctx)?;
            Ok::<_, Error>(conn)
        };
        return match open_ro(&uri) {
            Ok(conn) => Ok((conn, ctx, uri, settings)),
            // A WAL file needs its index (-shm) even to be read; on
            // read-only media SQLite cannot create it and says "unable to
            // open". Nobody can write a file there, so reading it as
            // immutable is safe (and the only way to read it at all).
            Err(first) if first.to_string().contains("unable to open") => {
                let immutable = format!("{uri}?immutable=1");
                match open_ro(&immutable) {
                    Ok(conn) => Ok((conn, ctx, immutable, settings)),
                    Err(_) => Err(first),
                }
            }
            Err(e) => Err(e),
        };
    }
    schema::ensure_parent_dir(path)?;
    let mut conn = schema::open_connection(&uri, &settings, &ctx)?;
    schema::prepare_schema(&mut conn, false, options.busy_timeout, &ctx)?;
    Ok((conn, ctx, uri, settings))
}

/// A `file:` URI for a path, so query parameters in it stay literal.
fn file_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for b in path.to_string_lossy().bytes() {
        match b {
            b'?' | b'#' | b'%' | 0x80.. => uri.push_str(&format!("%{b:02X}")),
            _ => uri.push(char::from(b)),
        }
    }
    uri
}

// ---- decoding ------------------------------------------------------------

/// Reads a column as text, as the reference stores it (TEXT, or a BLOB
/// column holding UTF-8); anything else is corrupt data.
fn text_at(row: &Row<'_>, i: usize, ctx: &Ctx, table: &str, key: &str) -> Result<String> {
    opt_text_at(row, i, ctx, table, key)?
        .ok_or_else(|| corrupt(ctx, table, key, format!("column {i} is NULL")))
}

fn opt_text_at(
    row: &Row<'_>,
    i: usize,
    ctx: &Ctx,
    table: &str,
    key: &str,
) -> Result<Option<String>> {
    let v = row
        .get_ref(i)
        .map_err(|e| corrupt(ctx, table, key, format!("column {i}: {e}")))?;
    let bytes = match v {
        ValueRef::Null => return Ok(None),
        ValueRef::Text(b) | ValueRef::Blob(b) => b,
        other => {
            return Err(corrupt(
                ctx,
                table,
                key,
                format!("column {i} holds {:?}, expected text", other.data_type()),
            ));
        }
    };
    String::from_utf8(bytes.to_vec())
        .map(Some)
        .map_err(|e| corrupt(ctx, table, key, format!("column {i} is not UTF-8: {e}")))
}

/// An optional id column: NULL and `''` both mean absent (the reference
/// writes `''` for a missing workflow parent and reads falsy as none).
fn opt_id_at(row: &Row<'_>, i: usize, ctx: &Ctx, table: &str, key: &str) -> Result<Option<String>> {
    Ok(opt_text_at(row, i, ctx, table, key)?.filter(|s| !s.is_empty()))
}

fn int_at(row: &Row<'_>, i: usize, ctx: &Ctx, table: &str, key: &str) -> Result<i64> {
    match row.get_ref(i) {
        Ok(ValueRef::Integer(n)) => Ok(n),
        Ok(other) => Err(corrupt(
            ctx,
            table,
            key,
            format!("column {i} holds {:?}, expected integer", other.data_type()),
        )),
        Err(e) => Err(corrupt(ctx, table, key, format!("column {i}: {e}"))),
    }
}

fn real_at(row: &Row<'_>, i: usize, ctx: &Ctx, table: &str, key: &str) -> Result<f64> {
    match row.get_ref(i) {
        Ok(ValueRef::Real(f)) => Ok(f),
        Ok(ValueRef::Integer(n)) => Ok(n as f64),
        Ok(other) => Err(corrupt(
            ctx,
            table,
            key,
            format!("column {i} holds {:?}, expected real", other.data_type()),
        )),
        Err(e) => Err(corrupt(ctx, table, key, format!("column {i}: {e}"))),
    }
}

const T_INV: &str = "state_backend_invocations";
const T_HIST: &str = "state_backend_history";
const T_WF: &str = "state_backend_workflows";
const T_APP: &str = "state_backend_app_info";
const T_RUN: &str = "state_backend_runner_contexts";

/// Collects a single-column id query.
fn ids(
    ctx: &Ctx,
    c: &Connection,
    sql: &str,
    table: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<InvocationId>> {
    let mut st = c
        .prepare_cached(sql)
        .map_err(|e| sql_err(ctx, "prepare", e))?;
    let mut rows = st.query(params).map_err(|e| sql_err(ctx, "query", e))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| sql_err(ctx, "read row", e))? {
        out.push(InvocationId::new(text_at(row, 0, ctx, table, "id")?));
    }
    Ok(out)
}

fn decode_history(
    ctx: &Ctx,
    row: &Row<'_>,
    json_col: usize,
    id_col: usize,
) -> Result<InvocationHistory> {
    // Decoded straight from SQLite's buffer (no copy of the JSON text);
    // the key is read only to name a bad row.
    let key = || opt_text_at(row, id_col, ctx, T_HIST, "?").map(Option::unwrap_or_default);
    let json = match row.get_ref(json_col) {
        Ok(ValueRef::Text(b) | ValueRef::Blob(b)) => std::str::from_utf8(b).ok(),
        _ => None,
    };
    match json {
        Some(json) => InvocationHistory::from_json(json).map_err(|e| match key() {
            Ok(k) => corrupt(ctx, T_HIST, &k, e),
            Err(err) => err,
        }),
        // Not text: let the generic reader produce the precise error.
        None => {
            let k = key()?;
            let json = text_at(row, json_col, ctx, T_HIST, &k)?;
            InvocationHistory::from_json(&json).map_err(|e| corrupt(ctx, T_HIST, &k, e))
        }
    }
}

/// An invocation and its call from the columns `call_id_key,
/// serialized_arguments, parent_invocation_id, workflow_id,
/// workflow_type_key, parent_workflow_id` starting at column `at`.
fn decode_invocation(
    ctx: &Ctx,
    row: &Row<'_>,
    id: &InvocationId,
    at: usize,
) -> Result<(InvocationDTO, CallDTO)> {
    let k = id.as_str();
    let call_id: CallId = text_at(row, at, ctx, T_INV, k)?
        .parse()
        .map_err(|e| corrupt(ctx, T_INV, k, e))?;
    let args = SerializedArguments::from_json(&text_at(row, at + 1, ctx, T_INV, k)?)
        .map_err(|e| corrupt(ctx, T_INV, k, e))?;
    let workflow_type: TaskId = text_at(row, at + 4, ctx, T_INV, k)?
        .parse()
        .map_err(|e| corrupt(ctx, T_INV, k, e))?;
    Ok((
        InvocationDTO {
            invocation_id: id.clone(),
            call_id: call_id.clone(),
            workflow: WorkflowIdentity {
                workflow_id: InvocationId::new(text_at(row, at + 3, ctx, T_INV, k)?),
                workflow_type,
                parent_workflow_id: opt_id_at(row, at + 5, ctx, T_INV, k)?.map(InvocationId::new),
            },
            parent_invocation_id: opt_id_at(row, at + 2, ctx, T_INV, k)?.map(InvocationId::new),
        },
        CallDTO {
            call_id,
            serialized_arguments: args,
        },
    ))
}

/// A stored history row: the record (JSON at `json_col`) and its stored
/// time key (`history_timestamp` at `ts_col`); `id_col` names a bad row.
fn decode_stored_history(
    ctx: &Ctx,
    row: &Row<'_>,
    json_col: usize,
    id_col: usize,
    ts_col: usize,
) -> Result<taskstate_core::StoredHistory> {
    let record = decode_history(ctx, row, json_col, id_col)?;
    let time_key = match row.get_ref(ts_col) {
        Ok(ValueRef::Real(s)) if s.is_finite() => s,
        Ok(ValueRef::Integer(i)) => i as f64,
        _ => {
            let key = opt_text_at(row, id_col, ctx, T_HIST, "?")?.unwrap_or_default();
            return Err(corrupt(
                ctx,
                T_HIST,
                &key,
                "history_timestamp is not a finite number",
            ));
        }
    };
    Ok(taskstate_core::StoredHistory {
        record,
        time_key: taskstate_core::TimeKey::from_seconds(time_key),
    })
}

fn decode_workflow(ctx: &Ctx, row: &Row<'_>) -> Result<WorkflowIdentity> {
    let id = text_at(row, 0, ctx, T_WF, "?")?;
    let ty = text_at(row, 1, ctx, T_WF, &id)?;
    Ok(WorkflowIdentity {
        workflow_type: ty.parse().map_err(|e| corrupt(ctx, T_WF, &id, e))?,
        parent_workflow_id: opt_id_at(row, 2, ctx, T_WF, &id)?.map(InvocationId::new),
        workflow_id: InvocationId::new(id),
    })
}

fn decode_app(ctx: &Ctx, row: &Row<'_>, key: &str) -> Result<AppInfo> {
    let json = text_at(row, 0, ctx, T_APP, key)?;
    AppInfo::from_json(&json).map_err(|e| corrupt(ctx, T_APP, key, e))
}

type RunnerRowDecoded = (RunnerContext, Option<RunnerId>);

/// One runner-context row (without its parent) and its parent id.
fn load_runner(ctx: &Ctx, c: &Connection, id: &RunnerId) -> Result<Option<RunnerRowDecoded>> {
    let mut st = c
        .prepare_cached(
            "SELECT runner_cls, parent_ctx_id, pid, hostname, thread_id \
             FROM state_backend_runner_contexts WHERE runner_id = ?1",
        )
        .map_err(|e| sql_err(ctx, "prepare", e))?;
    let mut rows = st
        .query([id.as_str()])
        .map_err(|e| sql_err(ctx, "query", e))?;
    let Some(row) = rows.next().map_err(|e| sql_err(ctx, "read row", e))? else {
        return Ok(None);
    };
    let k = id.as_str();
    Ok(Some((
        RunnerContext {
            runner_cls: text_at(row, 0, ctx, T_RUN, k)?,
            runner_id: id.clone(),
            parent: None,
            pid: int_at(row, 2, ctx, T_RUN, k)?,
            hostname: text_at(row, 3, ctx, T_RUN, k)?,
            thread_id: int_at(row, 4, ctx, T_RUN, k)?,
        },
        opt_id_at(row, 1, ctx, T_RUN, k)?.map(RunnerId::new),
    )))
}

fn resolve_runner(ctx: &Ctx, c: &Connection, row: RunnerRowDecoded) -> Result<RunnerContext> {
    resolve_runner_chain(&format!("{} {T_RUN}", ctx.path), row, |id| {
        load_runner(ctx, c, id)
    })
}

// ---- encoding ------------------------------------------------------------

fn invocation_row(inv: &InvocationDTO, call: &CallDTO) -> InvocationRow {
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
fn workflow_run_op(w: &WorkflowIdentity) -> WriteOp {
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
fn runner_row(c: &RunnerContext, parent: Option<&RunnerId>) -> RunnerRow {
    RunnerRow {
        id: c.runner_id.as_str().to_owned(),
        cls: c.runner_cls.clone(),
        parent: parent.map(|p| p.as_str().to_owned()),
        pid: c.pid,
        hostname: c.hostname.clone(),
        thread_id: c.thread_id,
    }
}

impl StateBackend for SqliteBackend {
    fn engine_name(&self) -> &'static str {
        ENGINE
    }

    fn upsert_invocations(&self, entries: &[(InvocationDTO, CallDTO)]) -> Result<()> {
        let encoding = self.writer.enter();
        if entries.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::with_capacity(entries.len());
        for (inv, call) in entries {
            check_invocation_pair(inv, call)?;
            rows.push(invocation_row(inv, call));
        }
        self.write(encoding, WriteOp::Invocations(rows))
    }

    fn get_invocation(&self, id: &InvocationId) -> Result<(InvocationDTO, CallDTO)> {
        let ctx = &self.ctx;
        let k = id.as_str();
        self.read(|c| {
            let mut st = c
                .prepare_cached(sql::GET_INVOCATION)
                .map_err(|e| sql_err(ctx, "prepare", e))?;
            let mut rows = st.query([k]).map_err(|e| sql_err(ctx, "query", e))?;
            let Some(row) = rows.next().map_err(|e| sql_err(ctx, "read row", e))? else {
                return Err(Error::not_found(Entity::Invocation, k));
            };
            decode_invocation(ctx, row, id, 0)
        })
    }

    fn get_child_invocations(&self, parent: &InvocationId) -> Result<Vec<InvocationId>> {
        self.read(|c| ids(&self.ctx, c, sql::CHILDREN, T_INV, [parent.as_str()]))
    }

    fn get_invocation_ids_by_workflow(
        &self,
        workflow_id: Option<&InvocationId>,
        workflow_type: Option<&TaskId>,
    ) -> Result<Vec<InvocationId>> {
        let ctx = &self.ctx;
        self.read(|c| match (workflow_id, workflow_type) {
            (None, None) => ids(
                ctx,
                c,
                "SELECT invocation_id FROM state_backend_invocations ORDER BY invocation_id",
                T_INV,
                [],
            ),
            (Some(w), None) => ids(
                ctx,
                c,
                "SELECT invocation_id FROM state_backend_invocations WHERE workflow_id = ?1 \
                 ORDER BY invocation_id",
                T_INV,
                [w.as_str()],
            ),
            (None, Some(t)) => ids(
                ctx,
                c,
                "SELECT invocation_id FROM state_backend_invocations WHERE workflow_type_key = ?1 \
                 ORDER BY invocation_id",
                T_INV,
                [t.key()],
            ),
            (Some(w), Some(t)) => ids(
                ctx,
                c,
                "SELECT invocation_id FROM state_backend_invocations WHERE workflow_id = ?1 \
                 AND workflow_type_key = ?2 ORDER BY invocation_id",
                T_INV,
                [w.as_str(), t.key()],
            ),
        })
    }

    fn add_history_rows(&self, rows: &[taskstate_core::HistoryRow<'_>]) -> Result<()> {
        let encoding = self.writer.enter();
        if rows.is_empty() {
            return Ok(());
        }
        let mut encoded = Vec::with_capacity(rows.len());
        // pynenc's `_add_histories(ids, record)` writes one JSON under every
        // key: encode a record once however many keys it is stored under.
        let mut last: Option<(&InvocationHistory, std::sync::Arc<str>)> = None;
        for r in rows {
            check_history_row(r)?;
            let json = match &last {
                Some((rec, json)) if std::ptr::eq(*rec, r.record) => json.clone(),
                _ => {
                    let json: std::sync::Arc<str> = r.record.to_json().into();
                    last = Some((r.record, json.clone()));
                    json
                }
            };
            encoded.push(HistoryRow {
                id: r.key.as_str().to_owned(),
                ts: r.time_key().seconds(),
                status: r.record.status_record.status.as_str(),
                json,
            });
        }
        self.write(encoding, WriteOp::Histories(encoded))
    }

    fn get_history_rows(&self, id: &InvocationId) -> Result<Vec<taskstate_core::StoredHistory>> {
        let ctx = &self.ctx;
        self.read(|c| {
            let mut st = c
                .prepare_cached(sql::GET_HISTORY)
                .map_err(|e| sql_err(ctx, "prepare", e))?;
            let mut rows = st
                .query([id.as_str()])
                .map_err(|e| sql_err(ctx, "query", e))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(|e| sql_err(ctx, "read row", e))? {
                out.push(decode_stored_history(ctx, row, 0, 1, 2)?);
            }
            Ok(out)
        })
    }

    fn invocation_ids_in_timerange(
        &self,
        range: &TimeRange,
        after: Option<&Cursor>,
        page_size: usize,
    ) -> Result<Page<InvocationId>> {
        check_page_size(page_size)?;
        let after = after.map(Cursor::id_position).transpose()?;
        let (lo, hi) = (range.start.key().seconds(), range.end.key().seconds());
        let ctx = &self.ctx;
        let found = self.read(|c| match &after {
            None => ids(
                ctx,
                c,
                sql::IDS_IN_RANGE_FIRST,
                T_HIST,
                params![lo, hi, fetch_limit(page_size)],
            ),
            Some(a) => ids(
                ctx,
                c,
                sql::IDS_IN_RANGE_AFTER,
                T_HIST,
                params![lo, hi, fetch_limit(page_size), a.as_str()],
            ),
        })?;
        Ok(Page::from_ids(found, page_size))
    }

    fn history_in_timerange(
        &self,
        range: &TimeRange,
        after: Option<&Cursor>,
        page_size: usize,
    ) -> Result<Page<InvocationHistory>> {
        check_page_size(page_size)?;
        let after = after
            .map(Cursor::history_position)
            .transpose()?
            .map(|(k, t)| (k.seconds(), t));
        let (lo, hi) = (range.start.key().seconds(), range.end.key().seconds());
        let ctx = &self.ctx;
        let rows = self.read(|c| {
            let mut st;
            let mut rows = match after {
                None => {
                    st = c
                        .prepare_cached(sql::HISTORY_IN_RANGE_FIRST)
                        .map_err(|e| sql_err(ctx, "prepare", e))?;
                    st.query(params![lo, hi, fetch_limit(page_size)])
                }
                Some((ts, rowid)) => {
                    st = c
                        .prepare_cached(sql::HISTORY_IN_RANGE_AFTER)
                        .map_err(|e| sql_err(ctx, "prepare", e))?;
                    st.query(params![lo, hi, fetch_limit(page_size), ts, rowid])
                }
            }
            .map_err(|e| sql_err(ctx, "query", e))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(|e| sql_err(ctx, "read row", e))? {
                let ts = real_at(row, 0, ctx, T_HIST, "?")?;
                let rowid = int_at(row, 1, ctx, T_HIST, "?")?;
                out.push(((ts, rowid), decode_history(ctx, row, 2, 3)?));
            }
            Ok(out)
        })?;
        Ok(Page::from_rows(rows, page_size, |(ts, rowid)| {
            Cursor::after_history(taskstate_core::TimeKey::from_seconds(*ts), *rowid)
        }))
    }

    fn set_result(&self, id: &InvocationId, result: &str) -> Result<()> {
        check_invocation_id(id)?;
        let encoding = self.writer.enter();
        self.write(
            encoding,
            WriteOp::Result {
                id: id.as_str().to_owned(),
                value: result.to_owned(),
            },
        )
    }

    fn get_result(&self, id: &InvocationId) -> Result<String> {
        self.get_blob_text(sql::GET_RESULT, "state_backend_results", id, Entity::Result)
    }

    fn set_exception(&self, id: &InvocationId, exception: &str) -> Result<()> {
        check_invocation_id(id)?;
        let encoding = self.writer.enter();
        self.write(
            encoding,
            WriteOp::Exception {
                id: id.as_str().to_owned(),
                value: exception.to_owned(),
            },
        )
    }

    fn get_exception(&self, id: &InvocationId) -> Result<String> {
        self.get_blob_text(
            "SELECT exception_data FROM state_backend_exceptions WHERE invocation_id = ?1",
            "state_backend_exceptions",
            id,
            Entity::Exception,
        )
    }

    fn store_workflow_run(&self, workflow: &WorkflowIdentity) -> Result<()> {
        let encoding = self.writer.enter();
        check_workflow(workflow)?;
        self.write(encoding, workflow_run_op(workflow))
    }

    fn get_all_workflow_types(&self) -> Result<Vec<TaskId>> {
        let ctx = &self.ctx;
        self.read(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT DISTINCT workflow_type_key FROM state_backend_workflows ORDER BY workflow_type_key",
                )
                .map_err(|e| sql_err(ctx, "prepare", e))?;
            let mut rows = st.query([]).map_err(|e| sql_err(ctx, "query", e))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(|e| sql_err(ctx, "read row", e))? {
                let key = text_at(row, 0, ctx, T_WF, "workflow_type_key")?;
                out.push(key.parse().map_err(|e| corrupt(ctx, T_WF, &key, e))?);
            }
            Ok(out)
        })
    }

    fn get_all_workflow_runs(&self) -> Result<Vec<WorkflowIdentity>> {
        self.workflow_runs(None)
    }

    fn get_workflow_runs(&self, workflow_type: &TaskId) -> Result<Vec<WorkflowIdentity>> {
        self.workflow_runs(Some(workflow_type))
    }

    fn store_workflow_sub_invocation(
        &self,
        workflow_id: &InvocationId,
        sub_invocation: &InvocationId,
    ) -> Result<()> {
        check_sub_invocation(workflow_id, sub_invocation)?;
        let encoding = self.writer.enter();
        self.write(
            encoding,
            WriteOp::SubInvocation {
                workflow: workflow_id.as_str().to_owned(),
                sub: sub_invocation.as_str().to_owned(),
            },
        )
    }

    fn get_workflow_sub_invocations(
        &self,
        workflow_id: &InvocationId,
    ) -> Result<Vec<InvocationId>> {
        self.read(|c| {
            ids(
                &self.ctx,
                c,
                "SELECT sub_invocation_id FROM state_backend_workflow_sub_invocations \
                 WHERE parent_workflow_id = ?1 ORDER BY sub_invocation_id",
                "state_backend_workflow_sub_invocations",
                [workflow_id.as_str()],
            )
        })
    }

    fn set_workflow_data(&self, workflow_id: &InvocationId, key: &str, value: &str) -> Result<()> {
        check_workflow_data(workflow_id, key)?;
        let encoding = self.writer.enter();
        self.write(
            encoding,
            WriteOp::WorkflowData {
                workflow: workflow_id.as_str().to_owned(),
                key: key.to_owned(),
                value: value.to_owned(),
            },
        )
    }

    fn get_workflow_data(&self, workflow_id: &InvocationId, key: &str) -> Result<Option<String>> {
        let ctx = &self.ctx;
        let k = format!("{workflow_id}/{key}");
        self.read(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT data_value FROM state_backend_workflow_data \
                     WHERE workflow_id = ?1 AND data_key = ?2",
                )
                .map_err(|e| sql_err(ctx, "prepare", e))?;
            let mut rows = st
                .query([workflow_id.as_str(), key])
                .map_err(|e| sql_err(ctx, "query", e))?;
            match rows.next().map_err(|e| sql_err(ctx, "read row", e))? {
                Some(row) => Ok(Some(text_at(
                    row,
                    0,
                    ctx,
                    "state_backend_workflow_data",
                    &k,
                )?)),
                None => Ok(None),
            }
        })
    }

    fn store_app_info(&self, info: &AppInfo) -> Result<()> {
        check_app_info(info)?;
        let encoding = self.writer.enter();
        self.write(
            encoding,
            WriteOp::AppInfo {
                id: info.app_id.clone(),
                json: info.to_json(),
            },
        )
    }

    fn get_app_info(&self, app_id: &str) -> Result<AppInfo> {
        let ctx = &self.ctx;
        self.read(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT app_info_json FROM state_backend_app_info WHERE app_id = ?1",
                )
                .map_err(|e| sql_err(ctx, "prepare", e))?;
            let mut rows = st.query([app_id]).map_err(|e| sql_err(ctx, "query", e))?;
            match rows.next().map_err(|e| sql_err(ctx, "read row", e))? {
                Some(row) => decode_app(ctx, row, app_id),
                None => Err(Error::not_found(Entity::AppInfo, app_id)),
            }
        })
    }

    fn discover_app_infos(&self) -> Result<Vec<AppInfo>> {
        let ctx = &self.ctx;
        self.read(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT app_info_json, app_id FROM state_backend_app_info ORDER BY app_id",
                )
                .map_err(|e| sql_err(ctx, "prepare", e))?;
            let mut rows = st.query([]).map_err(|e| sql_err(ctx, "query", e))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(|e| sql_err(ctx, "read row", e))? {
                let key = opt_text_at(row, 1, ctx, T_APP, "?")?.unwrap_or_default();
                out.push(decode_app(ctx, row, &key)?);
            }
            Ok(out)
        })
    }

    fn store_runner_context(&self, ctx: &RunnerContext) -> Result<()> {
        let encoding = self.writer.enter();
        check_runner_context(ctx)?;
        let rows = ctx
            .chain()
            .map(|c| runner_row(c, c.parent_runner_id()))
            .collect();
        self.write(encoding, WriteOp::Runners(rows))
    }

    fn get_runner_context(&self, runner_id: &RunnerId) -> Result<Option<RunnerContext>> {
        let ctx = &self.ctx;
        self.read_snapshot(|c| {
            load_runner(ctx, c, runner_id)?
                .map(|row| resolve_runner(ctx, c, row))
                .transpose()
        })
    }

    fn get_runner_contexts(&self, ids: &[RunnerId]) -> Result<Vec<RunnerContext>> {
        let wanted: std::collections::BTreeSet<&RunnerId> = ids.iter().collect();
        let ctx = &self.ctx;
        self.read_snapshot(|c| {
            let mut out = Vec::new();
            for id in wanted {
                if let Some(row) = load_runner(ctx, c, id)? {
                    out.push(resolve_runner(ctx, c, row)?);
                }
            }
            Ok(out)
        })
    }

    fn get_matching_runner_contexts(&self, partial: &str) -> Result<Vec<RunnerContext>> {
        let ctx = &self.ctx;
        self.read_snapshot(|c| {
            // SQL LIKE would treat % and _ as wildcards; match in Rust with
            // the contract's literal, ASCII-case-insensitive rule instead.
            let mut st = c
                .prepare_cached(
                    "SELECT runner_id FROM state_backend_runner_contexts ORDER BY runner_id",
                )
                .map_err(|e| sql_err(ctx, "prepare", e))?;
            let mut rows = st.query([]).map_err(|e| sql_err(ctx, "query", e))?;
            let mut matched = Vec::new();
            while let Some(row) = rows.next().map_err(|e| sql_err(ctx, "read row", e))? {
                let id = text_at(row, 0, ctx, T_RUN, "runner_id")?;
                if runner_id_matches(&id, partial) {
                    matched.push(RunnerId::new(id));
                }
            }
            drop(rows);
            let mut out = Vec::with_capacity(matched.len());
            for id in matched {
                if let Some(row) = load_runner(ctx, c, &id)? {
                    out.push(resolve_runner(ctx, c, row)?);
                }
            }
            Ok(out)
        })
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>> {
        Ok(Box::new(bulk::SqliteSnapshot::new(self)?))
    }

    fn write_rows(&self, rows: &[BulkRow]) -> Result<()> {
        let encoding = self.writer.enter();
        let op = bulk::encode(rows)?;
        if rows.is_empty() {
            return Ok(());
        }
        self.write(encoding, op)
    }

    fn purge(&self) -> Result<()> {
        let encoding = self.writer.enter();
        self.write(encoding, WriteOp::Purge)
    }
}

impl SqliteBackend {
    fn get_blob_text(
        &self,
        sql: &str,
        table: &str,
        id: &InvocationId,
        entity: Entity,
    ) -> Result<String> {
        let ctx = &self.ctx;
        self.read(|c| {
            let mut st = c
                .prepare_cached(sql)
                .map_err(|e| sql_err(ctx, "prepare", e))?;
            let mut rows = st
                .query([id.as_str()])
                .map_err(|e| sql_err(ctx, "query", e))?;
            match rows.next().map_err(|e| sql_err(ctx, "read row", e))? {
                Some(row) => text_at(row, 0, ctx, table, id.as_str()),
                None => Err(Error::not_found(entity, id.as_str())),
            }
        })
    }

    fn workflow_runs(&self, ty: Option<&TaskId>) -> Result<Vec<WorkflowIdentity>> {
        let ctx = &self.ctx;
        self.read(|c| {
            let (sql, key) = match ty {
                Some(t) => (
                    "SELECT workflow_id, workflow_type_key, parent_workflow_id FROM state_backend_workflows \
                     WHERE workflow_type_key = ?1 ORDER BY workflow_id",
                    Some(t.key()),
                ),
                None => (
                    "SELECT workflow_id, workflow_type_key, parent_workflow_id FROM state_backend_workflows \
                     ORDER BY workflow_id",
                    None,
                ),
            };
            let mut st = c.prepare_cached(sql).map_err(|e| sql_err(ctx, "prepare", e))?;
            let mut rows = match key {
                Some(k) => st.query([k]),
                None => st.query([]),
            }
            .map_err(|e| sql_err(ctx, "query", e))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(|e| sql_err(ctx, "read row", e))? {
                out.push(decode_workflow(ctx, row)?);
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_uri_escapes_uri_syntax() {
        assert_eq!(
            file_uri(Path::new("/tmp/a?b#c%d.db")),
            "file:/tmp/a%3Fb%23c%25d.db"
        );
        assert_eq!(file_uri(Path::new("rel/state.db")), "file:rel/state.db");
        assert_eq!(file_uri(Path::new("/tmp/é.db")), "file:/tmp/%C3%A9.db");
    }
}
