//! Mapping server and driver failures to the contract's error kinds, with
//! the server's own words (SQLSTATE, message, detail, hint).

use postgres::error::SqlState;
use taskstate_core::Error;

use crate::PostgresBackend;

/// A server error as "SQLSTATE message (detail; hint)", anything else as
/// the `postgres` crate words it, with its cause (never just "db error").
pub(crate) fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
        if let Some(d) = db.detail() {
            s.push_str(&format!(" (detail: {d})"));
        }
        if let Some(h) = db.hint() {
            s.push_str(&format!(" (hint: {h})"));
        }
        return s;
    }
    match std::error::Error::source(e) {
        Some(cause) if !e.to_string().contains(&cause.to_string()) => format!("{e}: {cause}"),
        _ => e.to_string(),
    }
}

/// How one attempt of an operation failed: a driver error (retried if
/// [`retriable`]) or an error of ours (returned as is).
pub(crate) enum AttemptError {
    Pg(postgres::Error),
    Other(Error),
}

/// Whether `e` is worth retrying the whole transaction for.
pub(crate) fn retriable(e: &postgres::Error) -> bool {
    e.is_closed()
        || matches!(
            e.code(),
            Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
        )
        || e.code().is_none()
            && std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

impl PostgresBackend {
    pub(crate) fn pg_err(&self, what: &str, e: postgres::Error) -> Error {
        let message = format!("{}: {what}: {}", self.location, describe(&e));
        if retriable(&e) {
            return Error::Unavailable {
                message,
                source: Some(Box::new(e)),
            };
        }
        match e.code() {
            Some(c)
                if *c == SqlState::CHARACTER_NOT_IN_REPERTOIRE
                    || *c == SqlState::UNTRANSLATABLE_CHARACTER =>
            {
                Error::InvalidInput(format!(
                    "{message} (PostgreSQL text cannot hold NUL characters)"
                ))
            }
            _ => Error::Storage {
                message,
                source: Some(Box::new(e)),
            },
        }
    }
}
