//! Opening an engine from a URL: one arm per engine, each behind its cargo
//! feature, and a clear error naming the feature when it is off.

use std::fmt;

use taskstate_core::{Error, StateBackend};

/// A parsed engine URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineUrl {
    /// `memory://`
    Memory,
    /// `sqlite://PATH[?synchronous=normal|full&busy_timeout_ms=N]`;
    /// `sqlite://:memory:` is a private in-memory database.
    Sqlite {
        /// File path (`:memory:` for in memory).
        path: String,
        /// `synchronous=full` was asked for.
        full_sync: bool,
        /// `busy_timeout_ms`, if given.
        busy_timeout_ms: Option<u64>,
    },
    /// `postgres://user@host:port/db?schema=name[&statement_timeout_ms=N][&retry_for_ms=N]`
    /// (and every parameter the `postgres` crate takes, such as libpq's
    /// `connect_timeout` in seconds).
    Postgres {
        /// The connection URL as the `postgres` crate takes it (without
        /// the parameters above).
        url: String,
        /// The PostgreSQL schema (default `taskstate`).
        schema: String,
        /// `statement_timeout_ms`, if given (0: none).
        statement_timeout_ms: Option<u64>,
        /// `retry_for_ms`, if given: how long lost connections are retried.
        retry_for_ms: Option<u64>,
    },
}

/// Why a URL could not be opened.
#[derive(Debug)]
pub enum UrlError {
    /// Not of the form `scheme://…`, or a bad parameter.
    Malformed(String),
    /// A scheme no engine handles.
    UnknownScheme(String),
    /// A scheme whose engine's cargo feature is off in this build.
    FeatureDisabled {
        /// The scheme.
        scheme: String,
        /// The feature that enables it.
        feature: &'static str,
    },
    /// The engine refused to open.
    Open(Error),
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::Malformed(m) => write!(f, "bad engine URL: {m}"),
            UrlError::UnknownScheme(s) => write!(
                f,
                "unknown engine URL scheme {s:?}: use memory://, sqlite://PATH or postgres://user@host/db"
            ),
            UrlError::FeatureDisabled { scheme, feature } => write!(
                f,
                "the {scheme}:// engine is not built into this taskstate: enable cargo feature `{feature}`"
            ),
            UrlError::Open(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for UrlError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UrlError::Open(e) => Some(e),
            _ => None,
        }
    }
}

fn percent_decode(s: &str) -> Result<String, UrlError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| UrlError::Malformed(format!("bad %-escape in {s:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| UrlError::Malformed(format!("{s:?} is not UTF-8 once decoded")))
}

/// Parses an engine URL without opening anything.
///
/// ```
/// use taskstate::{parse_url, EngineUrl};
/// assert_eq!(parse_url("memory://").unwrap(), EngineUrl::Memory);
/// let EngineUrl::Sqlite { path, full_sync, .. } =
///     parse_url("sqlite:///var/lib/app/state.db?synchronous=full").unwrap()
/// else { unreachable!() };
/// assert_eq!((path.as_str(), full_sync), ("/var/lib/app/state.db", true));
/// assert!(parse_url("redis://x").is_err());
/// ```
pub fn parse_url(url: &str) -> Result<EngineUrl, UrlError> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        UrlError::Malformed(format!(
            "{:?} is not of the form scheme://…",
            taskstate_core::redact_url(url)
        ))
    })?;
    let (body, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let mut params = Vec::new();
    for pair in query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        params.push((percent_decode(k)?, percent_decode(v)?));
    }
    match scheme.to_ascii_lowercase().as_str() {
        "memory" => {
            if !body.is_empty() || !params.is_empty() {
                return Err(UrlError::Malformed(
                    "memory:// takes no path or parameters".into(),
                ));
            }
            Ok(EngineUrl::Memory)
        }
        "sqlite" => {
            let path = percent_decode(body)?;
            if path.is_empty() {
                return Err(UrlError::Malformed(
                    "sqlite:// needs a path: sqlite://relative/state.db or sqlite:///absolute/state.db".into(),
                ));
            }
            let (mut full_sync, mut busy_timeout_ms) = (false, None);
            for (k, v) in params {
                match (k.as_str(), v.to_ascii_lowercase().as_str()) {
                    ("synchronous", "full") => full_sync = true,
                    ("synchronous", "normal") => full_sync = false,
                    ("busy_timeout_ms", n) => {
                        busy_timeout_ms = Some(n.parse().map_err(|_| {
                            UrlError::Malformed(format!("busy_timeout_ms={v:?} is not a number"))
                        })?);
                    }
                    _ => {
                        return Err(UrlError::Malformed(format!(
                            "unknown sqlite parameter {k}={v} (known: synchronous=normal|full, busy_timeout_ms=N)"
                        )));
                    }
                }
            }
            Ok(EngineUrl::Sqlite {
                path,
                full_sync,
                busy_timeout_ms,
            })
        }
        "postgres" | "postgresql" => {
            let mut schema = "taskstate".to_owned();
            let (mut statement_timeout_ms, mut retry_for_ms) = (None, None);
            let mut rest = Vec::new();
            let ms = |k: &str, v: &str| {
                v.parse::<u64>()
                    .ok()
                    .filter(|n| *n <= 86_400_000)
                    .ok_or_else(|| {
                        UrlError::Malformed(format!(
                            "{k}={v:?} is not a number of milliseconds up to 86400000"
                        ))
                    })
            };
            for pair in query
                .into_iter()
                .flat_map(|q| q.split('&'))
                .filter(|p| !p.is_empty())
            {
                match pair.split_once('=') {
                    Some(("schema", v)) => schema = percent_decode(v)?,
                    Some((k @ "statement_timeout_ms", v)) => statement_timeout_ms = Some(ms(k, v)?),
                    Some((k @ "retry_for_ms", v)) => retry_for_ms = Some(ms(k, v)?),
                    _ => rest.push(pair),
                }
            }
            let mut url = format!("{scheme}://{body}");
            if !rest.is_empty() {
                url.push('?');
                url.push_str(&rest.join("&"));
            }
            Ok(EngineUrl::Postgres {
                url,
                schema,
                statement_timeout_ms,
                retry_for_ms,
            })
        }
        other => Err(UrlError::UnknownScheme(other.to_owned())),
    }
}

/// Opens the engine a URL names.
///
/// - `memory://` — the in-memory engine (feature `memory`);
/// - `sqlite://PATH` — a SQLite file, relative (`sqlite://data/state.db`) or
///   absolute (`sqlite:///var/lib/app/state.db`); parameters
///   `synchronous=normal|full` and `busy_timeout_ms=N`; `sqlite://:memory:`
///   for a private in-memory database (feature `sqlite`).
///
/// An unknown scheme, or one whose feature is off, is an error that says so.
pub fn open(url: &str) -> Result<Box<dyn StateBackend>, UrlError> {
    open_mode(url, false)
}

/// Opens the store at `url` for reading only (SPEC §6, reading never
/// writes): a SQLite file must exist and is opened read-only, without
/// creating, migrating or switching it to WAL; a PostgreSQL schema must
/// exist and no DDL runs. A missing store is an error that says "no such
/// store". Writes through the returned engine fail. `memory://` opens an
/// empty store, as [`open`] does.
///
/// ```
/// let e = taskstate::open_read_only("sqlite:///nonexistent/dir/state.db").unwrap_err();
/// assert!(e.to_string().contains("no such store"));
/// assert!(!std::path::Path::new("/nonexistent/dir").exists());
/// ```
pub fn open_read_only(url: &str) -> Result<Box<dyn StateBackend>, UrlError> {
    open_mode(url, true)
}

fn open_mode(url: &str, read_only: bool) -> Result<Box<dyn StateBackend>, UrlError> {
    match parse_url(url)? {
        EngineUrl::Memory => open_memory(),
        EngineUrl::Sqlite {
            path,
            full_sync,
            busy_timeout_ms,
        } => open_sqlite(&path, full_sync, busy_timeout_ms, read_only),
        EngineUrl::Postgres {
            url,
            schema,
            statement_timeout_ms,
            retry_for_ms,
        } => {
            let ms = |v: Option<u64>| v.map(std::time::Duration::from_millis);
            open_postgres(
                &url,
                &schema,
                ms(statement_timeout_ms),
                ms(retry_for_ms),
                read_only,
            )
        }
    }
}

#[cfg(feature = "postgres")]
fn open_postgres(
    url: &str,
    schema: &str,
    statement_timeout: Option<std::time::Duration>,
    retry_for: Option<std::time::Duration>,
    read_only: bool,
) -> Result<Box<dyn StateBackend>, UrlError> {
    use taskstate_postgres::{PostgresBackend, PostgresOptions};
    let defaults = PostgresOptions::default();
    let options = PostgresOptions {
        schema: schema.to_owned(),
        read_only,
        statement_timeout: statement_timeout.unwrap_or(defaults.statement_timeout),
        retry_for: retry_for.unwrap_or(defaults.retry_for),
        ..defaults
    };
    PostgresBackend::connect(url, &options)
        .map(|b| Box::new(b) as Box<dyn StateBackend>)
        .map_err(UrlError::Open)
}

#[cfg(not(feature = "postgres"))]
fn open_postgres(
    _: &str,
    _: &str,
    _: Option<std::time::Duration>,
    _: Option<std::time::Duration>,
    _: bool,
) -> Result<Box<dyn StateBackend>, UrlError> {
    Err(UrlError::FeatureDisabled {
        scheme: "postgres".into(),
        feature: "postgres",
    })
}

#[cfg(feature = "memory")]
fn open_memory() -> Result<Box<dyn StateBackend>, UrlError> {
    Ok(Box::new(taskstate_memory::MemoryBackend::new()))
}

#[cfg(not(feature = "memory"))]
fn open_memory() -> Result<Box<dyn StateBackend>, UrlError> {
    Err(UrlError::FeatureDisabled {
        scheme: "memory".into(),
        feature: "memory",
    })
}

#[cfg(feature = "sqlite")]
fn open_sqlite(
    path: &str,
    full_sync: bool,
    busy_timeout_ms: Option<u64>,
    read_only: bool,
) -> Result<Box<dyn StateBackend>, UrlError> {
    use taskstate_sqlite::{SqliteBackend, SqliteOptions, Synchronous};
    if path == ":memory:" {
        return SqliteBackend::open_in_memory()
            .map(|b| Box::new(b) as Box<dyn StateBackend>)
            .map_err(UrlError::Open);
    }
    let mut opts = SqliteOptions {
        read_only,
        ..SqliteOptions::default()
    };
    if full_sync {
        opts.synchronous = Synchronous::Full;
    }
    if let Some(ms) = busy_timeout_ms {
        opts.busy_timeout = std::time::Duration::from_millis(ms);
    }
    SqliteBackend::open_with(path, &opts)
        .map(|b| Box::new(b) as Box<dyn StateBackend>)
        .map_err(UrlError::Open)
}

#[cfg(not(feature = "sqlite"))]
fn open_sqlite(
    _: &str,
    _: bool,
    _: Option<u64>,
    _: bool,
) -> Result<Box<dyn StateBackend>, UrlError> {
    Err(UrlError::FeatureDisabled {
        scheme: "sqlite".into(),
        feature: "sqlite",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths() {
        let p = |u: &str| match parse_url(u).unwrap() {
            EngineUrl::Sqlite { path, .. } => path,
            other => panic!("{other:?}"),
        };
        assert_eq!(p("sqlite://state.db"), "state.db");
        assert_eq!(p("sqlite://data/state.db"), "data/state.db");
        assert_eq!(p("sqlite:///var/lib/app/state.db"), "/var/lib/app/state.db");
        assert_eq!(p("sqlite:///tmp/with%20space.db"), "/tmp/with space.db");
        assert_eq!(p("sqlite://:memory:"), ":memory:");
    }

    #[test]
    fn errors_are_specific() {
        let msg = |u: &str| parse_url(u).unwrap_err().to_string();
        assert!(msg("state.db").contains("scheme://"));
        assert!(msg("sqlite://").contains("needs a path"));
        assert!(msg("sqlite://x.db?synchronous=maybe").contains("unknown sqlite parameter"));
        assert!(msg("sqlite://x.db?busy_timeout_ms=soon").contains("not a number"));
        assert!(msg("redis://localhost").contains("unknown engine URL scheme"));
        assert!(msg("postgres://u@h/db?schema=bad%zz").contains("%-escape"));
        assert!(msg("memory://x").contains("takes no path"));
        assert!(msg("sqlite://%zz").contains("%-escape"));
    }

    #[test]
    fn postgres_urls_keep_the_rest_and_take_the_schema() {
        assert_eq!(
            parse_url(
                "postgres://u@h:5432/db?schema=app_state&connect_timeout=5&statement_timeout_ms=250&retry_for_ms=0"
            )
            .unwrap(),
            EngineUrl::Postgres {
                url: "postgres://u@h:5432/db?connect_timeout=5".into(),
                schema: "app_state".into(),
                statement_timeout_ms: Some(250),
                retry_for_ms: Some(0),
            }
        );
        assert_eq!(
            parse_url("postgresql://u@h/db").unwrap(),
            EngineUrl::Postgres {
                url: "postgresql://u@h/db".into(),
                schema: "taskstate".into(),
                statement_timeout_ms: None,
                retry_for_ms: None,
            }
        );
        let msg = |u: &str| parse_url(u).unwrap_err().to_string();
        assert!(msg("postgres://h/db?retry_for_ms=soon").contains("milliseconds"));
    }

    #[test]
    fn opens_engines() {
        let m = open("memory://").unwrap();
        assert_eq!(m.engine_name(), "memory");
        let s = open("sqlite://:memory:").unwrap();
        assert_eq!(s.engine_name(), "sqlite");
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}/x/y.db?busy_timeout_ms=100",
            dir.path().display()
        );
        assert_eq!(open(&url).unwrap().engine_name(), "sqlite");
        let bad = format!("sqlite://{}", dir.path().display());
        assert!(
            open(&bad)
                .unwrap_err()
                .to_string()
                .contains("is a directory")
        );
    }
}
