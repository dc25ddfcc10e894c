//! The engines this build can open by URL: one [`EngineEntry`] each in
//! [`ENGINES`], the only list of engines in the facade. Adding an engine is
//! its crate, its one-line conformance test, and one entry here (with its
//! cargo feature); `parse_url`, `open`, `open_read_only` and every command of
//! the `taskstate` tool find it through this list.

use taskstate_core::StateBackend;

use crate::url::{EngineUrl, UrlError};

/// Opens an engine from its parsed URL; `true`: read-only (never create or
/// migrate; SPEC §6).
pub type OpenFn = fn(&EngineUrl, bool) -> Result<Box<dyn StateBackend>, UrlError>;

/// Checks a URL's path and parameters without opening anything.
pub type CheckFn = fn(&EngineUrl) -> Result<(), UrlError>;

/// One engine the facade can open by URL.
#[derive(Clone, Copy, Debug)]
pub struct EngineEntry {
    /// The engine's name (what [`StateBackend::engine_name`] returns).
    pub name: &'static str,
    /// The URL schemes it handles, lower case.
    pub schemes: &'static [&'static str],
    /// The cargo feature of this crate that builds it in.
    pub feature: &'static str,
    /// Checks a URL; `None` when the feature is off in this build.
    pub check: Option<CheckFn>,
    /// Opens the engine; `None` when the feature is off in this build.
    pub open: Option<OpenFn>,
}

/// Every engine, built in or not (an entry whose feature is off says so
/// when its URL is opened).
///
/// ```
/// let names: Vec<_> = taskstate::ENGINES.iter().map(|e| e.name).collect();
/// assert_eq!(names, ["memory", "sqlite", "postgres"]);
/// ```
pub const ENGINES: &[EngineEntry] = &[
    EngineEntry {
        name: "memory",
        schemes: &["memory"],
        feature: "memory",
        check: memory::CHECK,
        open: memory::OPEN,
    },
    EngineEntry {
        name: "sqlite",
        schemes: &["sqlite"],
        feature: "sqlite",
        check: sqlite::CHECK,
        open: sqlite::OPEN,
    },
    EngineEntry {
        name: "postgres",
        schemes: &["postgres", "postgresql"],
        feature: "postgres",
        check: postgres::CHECK,
        open: postgres::OPEN,
    },
];

mod memory {
    use super::{CheckFn, OpenFn};

    #[cfg(feature = "memory")]
    pub(super) const CHECK: Option<CheckFn> = Some(|url| {
        if !url.body.is_empty() || !url.params.is_empty() {
            return Err(super::UrlError::Malformed(
                "memory:// takes no path or parameters".into(),
            ));
        }
        Ok(())
    });
    #[cfg(not(feature = "memory"))]
    pub(super) const CHECK: Option<CheckFn> = None;

    #[cfg(feature = "memory")]
    pub(super) const OPEN: Option<OpenFn> = Some(|_url, _read_only| {
        Ok(Box::new(taskstate_memory::MemoryBackend::new()) as Box<dyn super::StateBackend>)
    });
    #[cfg(not(feature = "memory"))]
    pub(super) const OPEN: Option<OpenFn> = None;
}

/// A `sqlite://PATH?…` URL: the decoded path, `synchronous=full`, and
/// `busy_timeout_ms`.
#[cfg(feature = "sqlite")]
pub(crate) fn sqlite_parts(url: &EngineUrl) -> Result<(String, bool, Option<u64>), UrlError> {
    let path = url.decoded_body()?;
    if path.is_empty() {
        return Err(UrlError::Malformed(
            "sqlite:// needs a path: sqlite://relative/state.db or sqlite:///absolute/state.db"
                .into(),
        ));
    }
    let (mut full_sync, mut busy_timeout_ms) = (false, None);
    for (k, v) in url.decoded_params()? {
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
    Ok((path, full_sync, busy_timeout_ms))
}

mod sqlite {
    use super::{CheckFn, OpenFn};

    #[cfg(feature = "sqlite")]
    pub(super) const CHECK: Option<CheckFn> = Some(|url| super::sqlite_parts(url).map(drop));
    #[cfg(not(feature = "sqlite"))]
    pub(super) const CHECK: Option<CheckFn> = None;

    #[cfg(feature = "sqlite")]
    pub(super) const OPEN: Option<OpenFn> = Some(|url, read_only| {
        use taskstate_sqlite::{SqliteBackend, SqliteOptions, Synchronous};
        let (path, full_sync, busy_timeout_ms) = super::sqlite_parts(url)?;
        let boxed = |b: SqliteBackend| Box::new(b) as Box<dyn super::StateBackend>;
        if path == ":memory:" {
            return SqliteBackend::open_in_memory()
                .map(boxed)
                .map_err(super::UrlError::Open);
        }
        let mut opts = SqliteOptions::default().read_only(read_only);
        if full_sync {
            opts = opts.synchronous(Synchronous::Full);
        }
        if let Some(ms) = busy_timeout_ms {
            opts = opts.busy_timeout(std::time::Duration::from_millis(ms));
        }
        SqliteBackend::open_with(path, &opts)
            .map(boxed)
            .map_err(super::UrlError::Open)
    });
    #[cfg(not(feature = "sqlite"))]
    pub(super) const OPEN: Option<OpenFn> = None;
}

/// A `postgres://…` URL as the driver's connection URL (without this
/// project's parameters) and the engine's options.
#[cfg(feature = "postgres")]
pub(crate) fn postgres_options(
    url: &EngineUrl,
    read_only: bool,
) -> Result<(String, taskstate_postgres::PostgresOptions), UrlError> {
    let ms = |k: &str, v: &str| {
        v.parse::<u64>()
            .ok()
            .filter(|n| *n <= 86_400_000)
            .map(std::time::Duration::from_millis)
            .ok_or_else(|| {
                UrlError::Malformed(format!(
                    "{k}={v:?} is not a number of milliseconds up to 86400000"
                ))
            })
    };
    let mut options = taskstate_postgres::PostgresOptions::default().read_only(read_only);
    let mut rest = Vec::new();
    for (k, v) in &url.params {
        match k.as_str() {
            "schema" => options = options.schema(crate::url::percent_decode(v)?),
            "statement_timeout_ms" => options = options.statement_timeout(ms(k, v)?),
            "retry_for_ms" => options = options.retry_for(ms(k, v)?),
            _ => rest.push(format!("{k}={v}")),
        }
    }
    let mut conn = format!("{}://{}", url.scheme, url.body);
    if !rest.is_empty() {
        conn.push('?');
        conn.push_str(&rest.join("&"));
    }
    Ok((conn, options))
}

mod postgres {
    use super::{CheckFn, OpenFn};

    #[cfg(feature = "postgres")]
    pub(super) const CHECK: Option<CheckFn> =
        Some(|url| super::postgres_options(url, false).map(drop));
    #[cfg(not(feature = "postgres"))]
    pub(super) const CHECK: Option<CheckFn> = None;

    #[cfg(feature = "postgres")]
    pub(super) const OPEN: Option<OpenFn> = Some(|url, read_only| {
        let (conn, options) = super::postgres_options(url, read_only)?;
        taskstate_postgres::PostgresBackend::connect(&conn, &options)
            .map(|b| Box::new(b) as Box<dyn super::StateBackend>)
            .map_err(super::UrlError::Open)
    });
    #[cfg(not(feature = "postgres"))]
    pub(super) const OPEN: Option<OpenFn> = None;
}
