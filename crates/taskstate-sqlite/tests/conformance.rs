//! The SQLite engine runs the whole conformance suite, on a file (the real
//! deployment) and on a private in-memory database.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use taskstate_conformance::Factory;
use taskstate_sqlite::SqliteBackend;

mod file {
    use super::*;

    /// A fresh database file in its own temp dir per case.
    pub struct SqliteFile;

    impl Factory for SqliteFile {
        type Backend = SqliteBackend;
        type Guard = tempfile::TempDir;

        fn create() -> Option<(SqliteBackend, tempfile::TempDir)> {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
            let backend = SqliteBackend::open(dir.path().join("state.db"))
                .unwrap_or_else(|e| panic!("open sqlite: {e}"));
            Some((backend, dir))
        }
    }

    taskstate_conformance::suite!(SqliteFile);
}

mod in_memory {
    use super::*;

    pub struct SqliteMemory;

    impl Factory for SqliteMemory {
        type Backend = SqliteBackend;
        type Guard = ();

        fn create() -> Option<(SqliteBackend, ())> {
            let backend =
                SqliteBackend::open_in_memory().unwrap_or_else(|e| panic!("open sqlite: {e}"));
            Some((backend, ()))
        }
    }

    taskstate_conformance::suite!(SqliteMemory);
}
