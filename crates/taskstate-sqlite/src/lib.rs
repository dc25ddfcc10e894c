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
//! each write is one transaction (`BEGIN IMMEDIATE`, or a lone statement
//! in autocommit), batches are one transaction, and concurrent writers
//! share commits. The WAL is checkpointed beside the write connection, on
//! a connection of its own, so writers go on committing while it is copied
//! into the database file (a lone writer's WAL starts over near SQLite's
//! 1,000 frames; under steady writers from several threads it stays near
//! 4,000 frames, about 25 MB, and past 8,000, 33 MB, writers wait for the
//! checkpoint; a read still open on older frames holds the WAL back from
//! starting over, as with SQLite's own checkpoints). That needs an SQLite
//! without the WAL-reset bug (3.51.3 or later, as bundled): with an older
//! one, such as a system library this crate is built against without the
//! `bundled` feature, SQLite's automatic checkpoint runs inside the
//! writers' commits instead. Reads use a pool of
//! read-only connections and never block writes. Other processes wait on a
//! busy timeout (60 s by default) instead of failing with "database is
//! locked".

use std::path::Path;
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::Connection;
use taskstate_core::{Error, Result};

mod backend;
mod bulk;
mod decode;
mod encode;
mod errors;
mod monitor;
mod prune;
mod schema;
pub mod sql;
mod writer;

pub use schema::{LATEST_TABLE, SCHEMA_VERSION, Synchronous, TABLES};

use errors::{Ctx, sql_err};
use schema::ConnSettings;
pub use writer::WriteStats;
use writer::{Checkpointer, WriteOp, Writer};

const ENGINE: &str = "sqlite";

/// How to open a database.
#[derive(Clone, Debug)]
#[non_exhaustive]
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

impl SqliteOptions {
    /// Sets [`SqliteOptions::synchronous`].
    #[must_use]
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// Sets [`SqliteOptions::busy_timeout`].
    #[must_use]
    pub fn busy_timeout(mut self, busy_timeout: Duration) -> Self {
        self.busy_timeout = busy_timeout;
        self
    }

    /// Sets [`SqliteOptions::max_idle_readers`].
    #[must_use]
    pub fn max_idle_readers(mut self, max_idle_readers: usize) -> Self {
        self.max_idle_readers = max_idle_readers;
        self
    }

    /// Sets [`SqliteOptions::read_only`].
    #[must_use]
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
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
        let checkpointer = (!options.read_only
            && writer::checkpoints_beside_writers(rusqlite::version_number()))
        .then(|| Checkpointer::new(uri.clone(), settings));
        Ok(Self {
            writer: Writer::new(conn, ctx.clone(), checkpointer),
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
            writer: Writer::new(conn, ctx.clone(), None),
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
            schema::verify_read_only(&conn, &ctx)?;
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
