//! Mapping SQLite failures to the contract's error kinds.

use rusqlite::ErrorCode;
use taskstate_core::Error;

/// What every error message names: the database.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// The database path (or `:memory:`).
    pub path: String,
}

/// Maps a rusqlite error during `what` to a contract error, keeping it as
/// the source: busy/locked → `Unavailable` (retriable), not-a-database →
/// `Incompatible`, everything else → `Storage`.
pub fn sql_err(ctx: &Ctx, what: &str, e: rusqlite::Error) -> Error {
    let message = format!("{}: {what}: {e}", ctx.path);
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::Unavailable {
            message,
            source: Some(Box::new(e)),
        },
        Some(ErrorCode::NotADatabase) => Error::Incompatible {
            location: ctx.path.clone(),
            reason: format!("not a SQLite database ({what}: {e})"),
        },
        _ => Error::Storage {
            message,
            source: Some(Box::new(e)),
        },
    }
}

/// A corrupt-data error at `table[key]` of this database.
pub fn corrupt(ctx: &Ctx, table: &str, key: &str, reason: impl std::fmt::Display) -> Error {
    Error::corrupt(format!("{} {table}[{key}]", ctx.path), reason)
}
