//! The error type every engine returns.

use std::fmt;

/// Boxed source error kept by [`Error::Unavailable`] and [`Error::Storage`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Convenience alias used by every [`crate::StateBackend`] method.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of stored thing was not found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entity {
    /// An invocation (and its call).
    Invocation,
    /// The result of an invocation.
    Result,
    /// The exception of an invocation.
    Exception,
    /// The info of an application.
    AppInfo,
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Entity::Invocation => "invocation",
            Entity::Result => "result",
            Entity::Exception => "exception",
            Entity::AppInfo => "app info",
        })
    }
}

/// A key that does not parse (a task id without `.`, a call id without `:`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} key {key:?}: {reason}")]
pub struct KeyError {
    /// What was being parsed (`task id`, `call id`, `timestamp`...).
    pub what: &'static str,
    /// The text that failed to parse.
    pub key: String,
    /// Why it failed.
    pub reason: String,
}

impl KeyError {
    /// Builds a key error.
    pub fn new(what: &'static str, key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            what,
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// The kind of an [`Error`], for callers (and the conformance suite) that
/// branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// See [`Error::NotFound`].
    NotFound,
    /// See [`Error::Corrupt`].
    Corrupt,
    /// See [`Error::Unavailable`].
    Unavailable,
    /// See [`Error::InvalidInput`].
    InvalidInput,
    /// See [`Error::Unsupported`].
    Unsupported,
    /// See [`Error::Incompatible`].
    Incompatible,
    /// See [`Error::Storage`].
    Storage,
}

/// Every failure a [`crate::StateBackend`] reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The invocation, result, exception or app info does not exist.
    #[error("{entity} not found: {id:?}")]
    NotFound {
        /// What was looked up.
        entity: Entity,
        /// Which id was looked up.
        id: String,
    },

    /// Stored data could not be decoded (bad JSON, unknown status, a runner
    /// context whose parent is missing). Nothing was changed.
    #[error("corrupt data at {location}: {reason}")]
    Corrupt {
        /// Where: the table (or map) and key of the bad row.
        location: String,
        /// Why it could not be decoded.
        reason: String,
    },

    /// The store is temporarily unreachable or busy. Retrying may succeed;
    /// the operation was not applied.
    #[error("store unavailable: {message}")]
    Unavailable {
        /// What was attempted.
        message: String,
        /// The underlying cause.
        #[source]
        source: Option<BoxError>,
    },

    /// The caller passed something the contract refuses (an empty id, a call
    /// id that differs between the invocation and its call, a page size of 0,
    /// a cursor from another query). Nothing was changed.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// The engine does not offer this operation.
    #[error("{operation} is not supported by the {engine} engine")]
    Unsupported {
        /// The operation asked for.
        operation: &'static str,
        /// The engine's name.
        engine: &'static str,
    },

    /// The store was written by a newer version of this project (or is not
    /// a store at all) and is refused as it is; nothing was modified.
    #[error("incompatible store at {location}: {reason}")]
    Incompatible {
        /// The file, database or schema.
        location: String,
        /// Why it is refused.
        reason: String,
    },

    /// Any other failure of the underlying storage (I/O error, disk full,
    /// permission denied). The operation was not applied.
    #[error("storage error: {message}")]
    Storage {
        /// What was attempted.
        message: String,
        /// The underlying cause.
        #[source]
        source: Option<BoxError>,
    },
}

impl Error {
    /// The kind of this error.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Corrupt { .. } => ErrorKind::Corrupt,
            Error::Unavailable { .. } => ErrorKind::Unavailable,
            Error::InvalidInput(_) => ErrorKind::InvalidInput,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::Incompatible { .. } => ErrorKind::Incompatible,
            Error::Storage { .. } => ErrorKind::Storage,
        }
    }

    /// Whether retrying the same call may succeed.
    #[must_use]
    pub fn is_retriable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }

    /// A not-found error for `entity` with id `id`.
    pub fn not_found(entity: Entity, id: impl Into<String>) -> Self {
        Error::NotFound {
            entity,
            id: id.into(),
        }
    }

    /// A corrupt-data error at `location` (table and key).
    pub fn corrupt(location: impl Into<String>, reason: impl fmt::Display) -> Self {
        Error::Corrupt {
            location: location.into(),
            reason: reason.to_string(),
        }
    }

    /// An invalid-input error.
    pub fn invalid(reason: impl Into<String>) -> Self {
        Error::InvalidInput(reason.into())
    }
}

impl From<KeyError> for Error {
    fn from(e: KeyError) -> Self {
        Error::InvalidInput(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_and_which() {
        let e = Error::not_found(Entity::Result, "inv-1");
        assert_eq!(e.to_string(), "result not found: \"inv-1\"");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let e = Error::corrupt("state_backend_history[inv-1]", "bad json");
        assert_eq!(
            e.to_string(),
            "corrupt data at state_backend_history[inv-1]: bad json"
        );
        assert!(!e.is_retriable());
        let e = Error::Unavailable {
            message: "locked".into(),
            source: Some("io".into()),
        };
        assert!(e.is_retriable());
        assert!(std::error::Error::source(&e).is_some());
    }
}
