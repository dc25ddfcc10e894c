//! The PostgreSQL engine of **taskstate**: one shared store for workers on
//! many machines.
//!
//! ```no_run
//! use taskstate_core::{InvocationId, StateBackend};
//! use taskstate_postgres::{PostgresBackend, PostgresOptions};
//!
//! let backend = PostgresBackend::connect(
//!     "postgres://postgres@127.0.0.1:5432/test",
//!     &PostgresOptions::default().schema("taskstate"),
//! )?;
//! backend.set_result(&InvocationId::new("inv-1"), "42")?;
//! # Ok::<(), taskstate_core::Error>(())
//! ```
//!
//! # What it needs from the server
//!
//! A database and a role that may `CREATE SCHEMA` (or an existing schema the
//! role owns) and create tables, indexes and a sequence in it. Everything
//! lives in one schema (default `taskstate`), so several independent stores
//! can share a database. Migrations run under a transaction-level advisory
//! lock, so any number of processes can start at once; a schema written by
//! a newer taskstate is refused.
//!
//! # Data layout
//!
//! Ids are `text COLLATE "C"`, so every list sorts by code point exactly as
//! the other engines do. History keeps the contract's ordering key
//! (`ts_key`, the `f64` seconds of SPEC's REAL column) with a sequence for
//! insertion order, and `history_us`, the instant in microseconds, for
//! operators' own queries. Uniqueness rules are constraints, upserts are
//! `INSERT … ON CONFLICT`, every batch is one transaction, and range queries
//! page by keyset on `(ts_key, seq)`. PostgreSQL text cannot hold NUL
//! characters; such input is refused as invalid.
//!
//! # Errors
//!
//! Serialization failures, deadlocks and lost connections are retried (the
//! whole transaction, up to 3 times); if they persist they surface as the
//! retriable `Unavailable` kind with their source. Nothing is half-written.

use std::time::Duration;

use r2d2::{ManageConnection, Pool};
use taskstate_core::{Error, Result};

mod backend;
mod bulk;
mod conn;
mod decode;
mod encode;
mod errors;
mod monitor;
mod prune;
mod schema;
mod sql;
#[cfg(feature = "testing")]
pub mod testing;
mod write_rows;

use conn::Manager;
use schema::valid_schema_name;
pub use sql::Statements;
use taskstate_core::redact_url as redact;

const ENGINE: &str = "postgres";

/// The schema version this engine writes.
pub const SCHEMA_VERSION: i64 = 4;

/// Connection options.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// The PostgreSQL schema holding the tables (letters, digits, `_`;
    /// at most 63 bytes). Default `taskstate`.
    pub schema: String,
    /// Largest number of pooled connections (default 16).
    pub max_connections: u32,
    /// How long opening a connection may take, handshake included (a
    /// server that accepts TCP but never answers fails after it), and how
    /// long a call waits for a free pooled connection (default 10 s).
    pub connect_timeout: Duration,
    /// Server-side limit on one statement (`statement_timeout`; default
    /// 60 s; zero: none).
    pub statement_timeout: Duration,
    /// How long an operation keeps retrying after the server dropped its
    /// connection (a terminated backend, a restart), with growing pauses,
    /// before it fails as unavailable (default 15 s).
    pub retry_for: Duration,
    /// Open for reading only (SPEC §6, reading never writes): the schema
    /// must exist at a version this engine reads; no DDL is run, and every
    /// session is `default_transaction_read_only`, so the server refuses
    /// any write.
    pub read_only: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            schema: "taskstate".into(),
            max_connections: 16,
            connect_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(60),
            retry_for: Duration::from_secs(15),
            read_only: false,
        }
    }
}

impl PostgresOptions {
    /// Sets [`PostgresOptions::schema`].
    #[must_use]
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Sets [`PostgresOptions::max_connections`].
    #[must_use]
    pub fn max_connections(mut self, max_connections: u32) -> Self {
        self.max_connections = max_connections;
        self
    }

    /// Sets [`PostgresOptions::connect_timeout`].
    #[must_use]
    pub fn connect_timeout(mut self, connect_timeout: Duration) -> Self {
        self.connect_timeout = connect_timeout;
        self
    }

    /// Sets [`PostgresOptions::statement_timeout`].
    #[must_use]
    pub fn statement_timeout(mut self, statement_timeout: Duration) -> Self {
        self.statement_timeout = statement_timeout;
        self
    }

    /// Sets [`PostgresOptions::retry_for`].
    #[must_use]
    pub fn retry_for(mut self, retry_for: Duration) -> Self {
        self.retry_for = retry_for;
        self
    }

    /// Sets [`PostgresOptions::read_only`].
    #[must_use]
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }
}

/// The PostgreSQL engine. `Send + Sync`; share one per process.
pub struct PostgresBackend {
    pool: Pool<Manager>,
    schema: String,
    location: String,
    sql: Statements,
    retry_for: Duration,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl PostgresBackend {
    /// Connects to `url` (`postgres://user@host:port/db`, as the `postgres`
    /// crate parses it) and brings the schema up to date.
    pub fn connect(url: &str, options: &PostgresOptions) -> Result<Self> {
        valid_schema_name(&options.schema)?;
        let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| {
            Error::invalid(format!("bad PostgreSQL URL: {}", redact(&e.to_string())))
        })?;
        let location = format!("postgres {} schema {}", redact(url), options.schema);
        // libpq's `connect_timeout` (seconds) in the URL wins over the option.
        let connect_timeout = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(options.connect_timeout);
        config.connect_timeout(connect_timeout);
        let ms = options.statement_timeout.as_millis();
        // Read-only sessions: the server itself refuses any write (SQLSTATE
        // 25006), whatever path it would come from.
        let read_only = if options.read_only {
            " -c default_transaction_read_only=on"
        } else {
            ""
        };
        let server_options = match config.get_options() {
            Some(o) => format!("{o} -c statement_timeout={ms}{read_only}"),
            None => format!("-c statement_timeout={ms}{read_only}"),
        };
        config.options(&server_options);
        let manager = Manager {
            config,
            connect_timeout,
        };
        // One direct attempt first: a refused or unresolvable server fails
        // now, instead of the pool retrying until its timeout.
        manager.connect().map_err(|e| Error::Unavailable {
            message: format!("{location}: cannot connect: {e}"),
            source: Some(Box::new(e)),
        })?;
        let pool = Pool::builder()
            .max_size(options.max_connections.max(1))
            .min_idle(Some(1))
            .connection_timeout(connect_timeout)
            // No validation query per checkout: that is a round trip per call;
            // broken connections are caught by has_broken and by retries.
            .test_on_check_out(false)
            .build_unchecked(manager);
        let backend = Self {
            pool,
            sql: Statements::new(&options.schema),
            schema: options.schema.clone(),
            location,
            retry_for: options.retry_for,
        };
        if options.read_only {
            backend.verify_schema()?;
        } else {
            backend.migrate()?;
        }
        Ok(backend)
    }

    /// This engine's statements (for the raw baseline of `taskstate bench`).
    #[must_use]
    pub fn statements(&self) -> &Statements {
        &self.sql
    }

    /// The schema this engine stores in.
    #[must_use]
    pub fn schema(&self) -> &str {
        &self.schema
    }
}
