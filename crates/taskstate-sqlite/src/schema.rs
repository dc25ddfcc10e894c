//! Opening connections and the file format (SPEC §5): the reference's nine
//! tables and two indexes, our added indexes, and the schema version in
//! `PRAGMA user_version`.
//!
//! Every connection is opened through [`open_connection`], which sets the
//! pragmas outside any transaction. The schema is brought up to date in one
//! `BEGIN IMMEDIATE` transaction, so processes that open a new file at the
//! same moment serialise on it instead of racing.

use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use taskstate_core::{Error, Result};

use crate::errors::{Ctx, sql_err};

/// The schema version this engine writes and understands. Version 0 is the
/// reference's layout (pynenc never sets `user_version`).
pub const SCHEMA_VERSION: i64 = 3;

/// The reference's tables, in the order the reference creates them.
pub const TABLES: [&str; 9] = [
    "state_backend_results",
    "state_backend_exceptions",
    "state_backend_invocations",
    "state_backend_runner_contexts",
    "state_backend_history",
    "state_backend_workflows",
    "state_backend_app_info",
    "state_backend_workflow_data",
    "state_backend_workflow_sub_invocations",
];

/// The reference's `init_tables`, verbatim in columns, types and keys.
pub(crate) const REFERENCE_DDL: &str = "
CREATE TABLE IF NOT EXISTS state_backend_results (
    invocation_id TEXT PRIMARY KEY,
    result_data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS state_backend_exceptions (
    invocation_id TEXT PRIMARY KEY,
    exception_data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS state_backend_invocations (
    invocation_id TEXT PRIMARY KEY,
    call_id_key TEXT NOT NULL,
    task_id_key TEXT NOT NULL,
    arguments_id TEXT NOT NULL,
    serialized_arguments TEXT NOT NULL,
    parent_invocation_id TEXT,
    parent_call_id TEXT,
    workflow_id TEXT NOT NULL,
    workflow_type_key TEXT NOT NULL,
    parent_workflow_id TEXT
);
CREATE INDEX IF NOT EXISTS idx_state_backend_invocations_parent ON state_backend_invocations(parent_invocation_id);
CREATE TABLE IF NOT EXISTS state_backend_runner_contexts (
    runner_id TEXT PRIMARY KEY,
    runner_cls TEXT NOT NULL,
    parent_ctx_id TEXT,
    pid INTEGER NOT NULL,
    hostname TEXT NOT NULL,
    thread_id INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS state_backend_history (
    invocation_id TEXT NOT NULL,
    history_timestamp REAL NOT NULL,
    history_status TEXT NOT NULL,
    history_json TEXT NOT NULL,
    PRIMARY KEY (invocation_id, history_timestamp, history_status)
);
CREATE TABLE IF NOT EXISTS state_backend_workflows (
    workflow_id TEXT PRIMARY KEY,
    workflow_type_key TEXT NOT NULL,
    parent_workflow_id TEXT
);
CREATE INDEX IF NOT EXISTS idx_state_backend_workflows_type ON state_backend_workflows(workflow_type_key);
CREATE TABLE IF NOT EXISTS state_backend_app_info (
    app_id TEXT PRIMARY KEY,
    app_info_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS state_backend_workflow_data (
    workflow_id TEXT NOT NULL,
    data_key TEXT NOT NULL,
    data_value BLOB NOT NULL,
    PRIMARY KEY (workflow_id, data_key)
);
CREATE TABLE IF NOT EXISTS state_backend_workflow_sub_invocations (
    parent_workflow_id TEXT NOT NULL,
    sub_invocation_id TEXT NOT NULL,
    PRIMARY KEY (parent_workflow_id, sub_invocation_id)
);
";

/// Version 0 → 1: indexes this engine needs. Names start with `taskstate_`
/// so they never collide with the reference's.
/// - history by (timestamp, rowid): keyset-paged time-range scans;
/// - invocations by workflow id and by workflow type: workflow queries.
pub(crate) const V1_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS taskstate_history_time ON state_backend_history(history_timestamp);
CREATE INDEX IF NOT EXISTS taskstate_invocations_workflow ON state_backend_invocations(workflow_id);
CREATE INDEX IF NOT EXISTS taskstate_invocations_type ON state_backend_invocations(workflow_type_key);
";

/// Version 1 → 2: the links retention follows (SPEC §10) that no earlier
/// index serves: invocations and workflow runs by parent workflow, and
/// sub-invocation links by sub-invocation.
pub(crate) const V2_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS taskstate_invocations_parent_workflow ON state_backend_invocations(parent_workflow_id);
CREATE INDEX IF NOT EXISTS taskstate_workflows_parent ON state_backend_workflows(parent_workflow_id);
CREATE INDEX IF NOT EXISTS taskstate_sub_invocations_sub ON state_backend_workflow_sub_invocations(sub_invocation_id);
";

/// Version 2 → 3: each history key's latest row (see `taskstate_core::monitor`), kept by
/// triggers so that every writer of the file keeps it current — pynenc's
/// own `SQLiteStateBackend` included, which knows nothing of it.
///
/// - `taskstate_latest`: per key, the newest row by (timestamp, rowid) —
///   its timestamp, rowid and status — and the invocation's task (NULL
///   for a key without an invocation), WITHOUT ROWID: the key is the
///   table's order.
/// - Indexes: by (status, timestamp, key) and (task, timestamp, key) for
///   the filtered listings; the unfiltered one walks the history's own
///   time index (each index here is paid on every history insert).
/// - A history insert makes its row the latest unless a newer one is
///   there (a tie on timestamp goes to the new row, whose rowid is the
///   greatest); deleting the latest row elects the newest remaining one
///   (or none). A replaced row (`INSERT OR REPLACE` with the same
///   identity) is seen as its insert.
/// - An invocation's insert or task change copies its task over.
/// - Workflow runs by (type, id): a page of one type's runs in id order.
pub const LATEST_TABLE: &str = "taskstate_latest";
pub(crate) const V3_LATEST: &str = "
CREATE TABLE IF NOT EXISTS taskstate_latest (
    invocation_id TEXT PRIMARY KEY,
    history_timestamp REAL NOT NULL,
    history_rowid INTEGER NOT NULL,
    history_status TEXT NOT NULL,
    task_id_key TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS taskstate_latest_status ON taskstate_latest(history_status, history_timestamp, invocation_id);
CREATE INDEX IF NOT EXISTS taskstate_latest_task ON taskstate_latest(task_id_key, history_timestamp, invocation_id);
CREATE INDEX IF NOT EXISTS taskstate_workflows_type_id ON state_backend_workflows(workflow_type_key, workflow_id);
CREATE TRIGGER IF NOT EXISTS taskstate_latest_history_insert
AFTER INSERT ON state_backend_history
BEGIN
    INSERT INTO taskstate_latest
        (invocation_id, history_timestamp, history_rowid, history_status, task_id_key)
    VALUES (NEW.invocation_id, NEW.history_timestamp, NEW.rowid, NEW.history_status,
        (SELECT task_id_key FROM state_backend_invocations WHERE invocation_id = NEW.invocation_id))
    ON CONFLICT (invocation_id) DO UPDATE SET
        history_timestamp = excluded.history_timestamp,
        history_rowid = excluded.history_rowid,
        history_status = excluded.history_status,
        task_id_key = excluded.task_id_key
    WHERE excluded.history_timestamp >= taskstate_latest.history_timestamp;
END;
CREATE TRIGGER IF NOT EXISTS taskstate_latest_history_delete
AFTER DELETE ON state_backend_history
WHEN OLD.rowid = (SELECT history_rowid FROM taskstate_latest WHERE invocation_id = OLD.invocation_id)
BEGIN
    DELETE FROM taskstate_latest WHERE invocation_id = OLD.invocation_id;
    INSERT INTO taskstate_latest
        (invocation_id, history_timestamp, history_rowid, history_status, task_id_key)
    SELECT h.invocation_id, h.history_timestamp, h.rowid, h.history_status,
        (SELECT task_id_key FROM state_backend_invocations WHERE invocation_id = OLD.invocation_id)
    FROM state_backend_history h WHERE h.invocation_id = OLD.invocation_id
    ORDER BY h.history_timestamp DESC, h.rowid DESC LIMIT 1;
END;
CREATE TRIGGER IF NOT EXISTS taskstate_latest_invocation_insert
AFTER INSERT ON state_backend_invocations
BEGIN
    UPDATE taskstate_latest SET task_id_key = NEW.task_id_key
    WHERE invocation_id = NEW.invocation_id AND task_id_key IS NOT NEW.task_id_key;
END;
CREATE TRIGGER IF NOT EXISTS taskstate_latest_invocation_update
AFTER UPDATE OF invocation_id, task_id_key ON state_backend_invocations
BEGIN
    UPDATE taskstate_latest SET task_id_key = NULL
    WHERE invocation_id = OLD.invocation_id AND OLD.invocation_id IS NOT NEW.invocation_id;
    UPDATE taskstate_latest SET task_id_key = NEW.task_id_key
    WHERE invocation_id = NEW.invocation_id AND task_id_key IS NOT NEW.task_id_key;
END;
CREATE TRIGGER IF NOT EXISTS taskstate_latest_invocation_delete
AFTER DELETE ON state_backend_invocations
BEGIN
    UPDATE taskstate_latest SET task_id_key = NULL
    WHERE invocation_id = OLD.invocation_id AND task_id_key IS NOT NULL;
END;
";

/// Each history key's newest row by (timestamp, rowid), in
/// `taskstate_latest`'s columns, computed from the history: what the
/// upgrade fills the table with, and what a file without the table is
/// answered from (`monitor::LATEST_CTE`). A macro, so both are constants.
macro_rules! newest_rows {
    () => {
        "SELECT h.invocation_id, h.history_timestamp, h.rowid, h.history_status, \
            (SELECT task_id_key FROM state_backend_invocations i WHERE i.invocation_id = h.invocation_id) \
         FROM state_backend_history h \
         WHERE h.rowid = (SELECT h2.rowid FROM state_backend_history h2 \
                          WHERE h2.invocation_id = h.invocation_id \
                          ORDER BY h2.history_timestamp DESC, h2.rowid DESC LIMIT 1)"
    };
}
pub(crate) use newest_rows;

/// Fills `taskstate_latest` from the history already stored (the upgrade
/// of a file written before version 3, or by pynenc alone).
pub(crate) const V3_FILL: &str = concat!(
    "INSERT OR REPLACE INTO taskstate_latest \
     (invocation_id, history_timestamp, history_rowid, history_status, task_id_key) ",
    newest_rows!(),
    ";"
);

/// Bytes of the file each connection reads through a memory map (point
/// reads skip a copy; the bulk path's snapshots turn it off).
pub const MMAP_SIZE: i64 = 268_435_456;

/// `synchronous` setting of the connections (see the crate docs for what
/// each one makes durable).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// WAL is synced at checkpoints only: a process crash loses nothing; a
    /// power loss or OS crash may lose the last commits (never corrupts).
    #[default]
    Normal,
    /// WAL is synced at every commit: nothing acknowledged is ever lost.
    Full,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

/// Settings of a connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnSettings {
    pub synchronous: Synchronous,
    pub busy_timeout: Duration,
    pub statement_cache: usize,
    /// Open read-only (no create, `query_only`).
    pub read_only: bool,
}

/// Opens one connection with our pragmas. `uri` may be a path or a
/// `file:` URI. Nothing is written here.
pub fn open_connection(uri: &str, settings: &ConnSettings, ctx: &Ctx) -> Result<Connection> {
    let flags = if settings.read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(uri, flags).map_err(|e| sql_err(ctx, "open", e))?;
    conn.busy_timeout(settings.busy_timeout)
        .map_err(|e| sql_err(ctx, "set busy timeout", e))?;
    conn.set_prepared_statement_cache_capacity(settings.statement_cache);
    // Plans never depend on bound values (the query planner stability
    // guarantee). Without it a STAT4 build treats a bound LIMIT as
    // plan-dependent and recompiles the statement whenever it is bound
    // again: every page of a range scan paid a full prepare. Our
    // statements are written for their indexes; no plan needs the values.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(|e| sql_err(ctx, "set query planner stability", e))?;
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {}; PRAGMA temp_store = MEMORY; PRAGMA cache_size = -16000; PRAGMA mmap_size = {MMAP_SIZE};",
        settings.synchronous.pragma()
    ))
    .map_err(|e| sql_err(ctx, "set pragmas", e))?;
    if settings.read_only {
        conn.execute_batch("PRAGMA query_only = 1")
            .map_err(|e| sql_err(ctx, "set query_only", e))?;
    }
    Ok(conn)
}

/// For a read-only open: the version is one this engine reads, and the
/// file holds the reference tables (written by taskstate or by pynenc).
/// Reads only.
pub fn verify_read_only(conn: &Connection, ctx: &Ctx) -> Result<()> {
    refuse_newer(user_version(conn, ctx)?, ctx)?;
    let mut st = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .map_err(|e| sql_err(ctx, "read the schema", e))?;
    let names = st
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(|e| sql_err(ctx, "read the schema", e))?;
    let missing: Vec<&str> = TABLES
        .iter()
        .copied()
        .filter(|t| !names.iter().any(|n| n == t))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Incompatible {
            location: ctx.path.clone(),
            reason: format!(
                "not a taskstate or pynenc store (no {} table)",
                missing.join(", ")
            ),
        })
    }
}

/// Reads the schema version; fails with `Incompatible` on a file that is
/// not a database (SQLite reports that on the first read).
pub fn user_version(conn: &Connection, ctx: &Ctx) -> Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| sql_err(ctx, "read schema version", e))
}

fn refuse_newer(version: i64, ctx: &Ctx) -> Result<()> {
    if version > SCHEMA_VERSION {
        return Err(Error::Incompatible {
            location: ctx.path.clone(),
            reason: format!(
                "schema version {version} is newer than this taskstate-sqlite knows ({SCHEMA_VERSION}); upgrade taskstate"
            ),
        });
    }
    if version < 0 {
        return Err(Error::Incompatible {
            location: ctx.path.clone(),
            reason: format!("schema version {version} is not a taskstate version"),
        });
    }
    Ok(())
}

/// Checks the version (refusing a newer one before anything is written),
/// switches the file to WAL (unless in memory), and creates or upgrades the
/// schema in one immediate transaction.
pub fn prepare_schema(
    conn: &mut Connection,
    in_memory: bool,
    busy_timeout: Duration,
    ctx: &Ctx,
) -> Result<()> {
    refuse_newer(user_version(conn, ctx)?, ctx)?;
    if !in_memory {
        enable_wal(conn, busy_timeout, ctx)?;
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| sql_err(ctx, "begin schema transaction", e))?;
    // Re-read inside the lock: another process may have upgraded meanwhile.
    let version = user_version(&tx, ctx)?;
    refuse_newer(version, ctx)?;
    if version < 1 {
        tx.execute_batch(REFERENCE_DDL)
            .map_err(|e| sql_err(ctx, "create reference tables", e))?;
        tx.execute_batch(V1_INDEXES)
            .map_err(|e| sql_err(ctx, "create taskstate indexes", e))?;
    }
    if version < 2 {
        tx.execute_batch(V2_INDEXES)
            .map_err(|e| sql_err(ctx, "create taskstate indexes", e))?;
    }
    if version < 3 {
        tx.execute_batch(V3_LATEST)
            .map_err(|e| sql_err(ctx, "create the latest-status table", e))?;
        tx.execute_batch(V3_FILL)
            .map_err(|e| sql_err(ctx, "fill the latest-status table", e))?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(|e| sql_err(ctx, "set schema version", e))?;
    }
    tx.commit().map_err(|e| sql_err(ctx, "commit schema", e))
}

/// Puts the file in WAL mode (persistent in the file). The switch needs an
/// exclusive lock and SQLite does not run the busy handler for it, so when
/// several processes open a new file at once the losers retry, with a
/// short backoff, for up to `timeout`. A file already in WAL mode is left
/// alone without taking any lock.
fn enable_wal(conn: &Connection, timeout: Duration, ctx: &Ctx) -> Result<()> {
    let current: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(|e| sql_err(ctx, "read journal mode", e))?;
    if current.eq_ignore_ascii_case("wal") {
        return Ok(());
    }
    let start = std::time::Instant::now();
    let mut backoff = Duration::from_millis(1);
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)) {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(mode) => {
                return Err(Error::Storage {
                    message: format!(
                        "{}: could not enable WAL (journal_mode is {mode})",
                        ctx.path
                    ),
                    source: None,
                });
            }
            Err(e) => {
                let err = sql_err(ctx, "enable WAL", e);
                if !err.is_retriable() || start.elapsed() >= timeout {
                    return Err(err);
                }
            }
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_millis(50));
    }
}

/// Creates the parent directory of a database path if it is missing.
pub fn ensure_parent_dir(path: &Path) -> Result<()> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::Storage {
        message: format!(
            "cannot create directory {} for database {}: {e}",
            dir.display(),
            path.display()
        ),
        source: Some(Box::new(e)),
    })
}
