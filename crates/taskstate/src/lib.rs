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
mod url;

pub use taskstate_core::*;
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
}

/// The SQLite engine (feature `sqlite`).
#[cfg(feature = "sqlite")]
pub mod sqlite {
    pub use taskstate_sqlite::{SCHEMA_VERSION, SqliteBackend, SqliteOptions, Synchronous};
}
