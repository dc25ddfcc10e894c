//! **taskstate** stores the state of a distributed task system: every task
//! invocation and its call, the history of its status changes, results and
//! exceptions, workflows, runner contexts and app info. It re-implements the
//! state backend of pynenc in Rust and reads and writes pynenc's own SQLite
//! database format.
//!
//! This is the crate to depend on. Pick engines with cargo features
//! (`memory` and `sqlite` are on by default) and open one by URL:
//!
//! ```
//! use taskstate::{open, InvocationId, StateBackend};
//!
//! // In memory: nothing is durable.
//! let mem = open("memory://")?;
//! mem.set_result(&InvocationId::new("inv-1"), "42")?;
//! assert_eq!(mem.get_result(&InvocationId::new("inv-1"))?, "42");
//!
//! // A SQLite file (pynenc's format), created with its directory if needed.
//! let dir = tempfile::tempdir()?;
//! let url = format!("sqlite://{}?synchronous=full", dir.path().join("state.db").display());
//! let db = open(&url)?;
//! assert!(db.get_history(&InvocationId::new("inv-1"))?.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `postgres://user@host:port/db?schema=name` opens the PostgreSQL engine
//! (feature `postgres`). Engines can also be built directly
//! ([`memory::MemoryBackend`], [`sqlite::SqliteBackend`],
//! `postgres::PostgresBackend`). Beyond the engines, this crate offers the
//! export document ([`export`]), engine-to-engine copy ([`copy`]), the
//! reference benchmark workload ([`mod@bench`]) and the operator's view
//! ([`inspect`]) that the `taskstate` command-line tool is built on.

pub mod bench;
pub mod copy;
pub mod export;
mod import;
pub mod inspect;
mod registry;
mod url;

// What applications use. Engine-author plumbing (the `Engine` trait, the
// input rules, page shaping, the Python-compatible JSON writer) is in
// `engine`, re-exported under that name only.
#[cfg(feature = "serve")]
pub mod serve;

pub use registry::{CheckFn, ENGINES, EngineEntry, OpenFn};
pub use taskstate_core::{
    AppId, AppInfo, BoxError, CallDTO, CallId, ChainError, Cursor, DEFAULT_PAGE_SIZE, Entity,
    Error, ErrorKind, HistoryRow, InvocationDTO, InvocationFilter, InvocationHistory, InvocationId,
    InvocationRecord, InvocationStatus, InvocationStatusRecord, InvocationSummary, KeyError,
    KeyRange, Kind, MAX_ID_BYTES, OwnershipError, Page, Pages, PruneCounts, PruneOptions,
    PruneProgress, Result, Row, RunnerContext, RunnerId, SerializedArguments, SharedText, Snapshot,
    SpaceReport, StateBackend, StatusCounts, StatusFlags, StoredHistory, TaskId, TimeKey,
    TimeRange, Timestamp, WorkflowData, WorkflowIdentity, args_id, bulk, check_ownership, engine,
    monitor, prune, redact_url, validate_chain,
};
pub use url::{EngineUrl, UrlError, open, open_read_only, parse_url};

// The README's Rust examples are compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// The in-memory engine (feature `memory`).
#[cfg(feature = "memory")]
pub mod memory {
    pub use taskstate_memory::MemoryBackend;
}

/// The PostgreSQL engine (feature `postgres`).
#[cfg(feature = "postgres")]
pub mod postgres {
    pub use taskstate_postgres::{PostgresBackend, PostgresOptions, SCHEMA_VERSION};

    /// The driver's connection URL of a `postgres://` store URL: without
    /// the parameters this project reads (`schema`, `statement_timeout_ms`,
    /// `retry_for_ms`).
    ///
    /// ```
    /// let url = taskstate::postgres::connection_url("postgres://u@h/db?schema=s&connect_timeout=5");
    /// assert_eq!(url.unwrap(), "postgres://u@h/db?connect_timeout=5");
    /// ```
    pub fn connection_url(url: &str) -> Result<String, crate::UrlError> {
        let parsed = crate::parse_url(url)?;
        crate::registry::postgres_options(&parsed, true).map(|(conn, _)| conn)
    }
}

/// The SQLite engine (feature `sqlite`).
#[cfg(feature = "sqlite")]
pub mod sqlite {
    pub use taskstate_sqlite::{SCHEMA_VERSION, SqliteBackend, SqliteOptions, Synchronous};
}
