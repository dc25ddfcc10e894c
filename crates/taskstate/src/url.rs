//! Opening an engine from a URL: one arm per engine, each behind its cargo
//! feature, and a clear error naming the feature when it is off.

use std::fmt;

use taskstate_core::{Error, StateBackend};

/// A store URL split into its parts, and the registered engine that
/// handles its scheme. Each engine reads its own path and parameters from it
/// (see [`crate::ENGINES`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineUrl {
    /// The name of the engine that handles the scheme (`memory`, `sqlite`,
    /// `postgres`…).
    pub engine: &'static str,
    /// The scheme as written (`postgresql` stays `postgresql`).
    pub scheme: String,
    /// What follows `://` up to `?`, as written (not percent-decoded).
    pub body: String,
    /// The `key=value` pairs after `?`, in order, as written.
    pub params: Vec<(String, String)>,
}

impl EngineUrl {
    /// The body percent-decoded (a file path, for instance).
    pub fn decoded_body(&self) -> Result<String, UrlError> {
        percent_decode(&self.body)
    }

    /// The parameters, percent-decoded.
    pub fn decoded_params(&self) -> Result<Vec<(String, String)>, UrlError> {
        self.params
            .iter()
            .map(|(k, v)| Ok((percent_decode(k)?, percent_decode(v)?)))
            .collect()
    }
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

/// A URL that cannot be opened is an error of the contract's kinds:
/// `InvalidInput` for a URL nobody can open as written, the engine's own
/// error when it refused.
impl From<UrlError> for Error {
    fn from(e: UrlError) -> Self {
        match e {
            UrlError::Open(inner) => inner,
            other => Error::invalid(other.to_string()),
        }
    }
}

pub(crate) fn percent_decode(s: &str) -> Result<String, UrlError> {
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

/// Parses an engine URL and checks its path and parameters with the
/// engine that handles its scheme, without opening anything.
///
/// ```
/// use taskstate::parse_url;
/// assert_eq!(parse_url("memory://").unwrap().engine, "memory");
/// let u = parse_url("sqlite:///var/lib/app/state.db?synchronous=full").unwrap();
/// assert_eq!((u.engine, u.decoded_body().unwrap().as_str()), ("sqlite", "/var/lib/app/state.db"));
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
    let params = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let lower = scheme.to_ascii_lowercase();
    let entry = crate::ENGINES
        .iter()
        .find(|e| e.schemes.contains(&lower.as_str()))
        .ok_or_else(|| UrlError::UnknownScheme(lower.clone()))?;
    let parsed = EngineUrl {
        engine: entry.name,
        scheme: scheme.to_owned(),
        body: body.to_owned(),
        params,
    };
    let check = entry.check.ok_or_else(|| UrlError::FeatureDisabled {
        scheme: lower,
        feature: entry.feature,
    })?;
    check(&parsed)?;
    Ok(parsed)
}

/// Opens the engine a URL names: `memory://`, `sqlite://PATH` (relative
/// `sqlite://data/state.db` or absolute `sqlite:///var/lib/app/state.db`;
/// parameters `synchronous=normal|full`, `busy_timeout_ms=N`;
/// `sqlite://:memory:` for a private in-memory database), and
/// `postgres://user@host:port/db?schema=name` — each behind its cargo
/// feature (see [`crate::ENGINES`]).
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
    let parsed = parse_url(url)?;
    let entry = crate::ENGINES
        .iter()
        .find(|e| e.name == parsed.engine)
        .ok_or_else(|| UrlError::UnknownScheme(parsed.scheme.clone()))?;
    let open = entry.open.ok_or_else(|| UrlError::FeatureDisabled {
        scheme: parsed.scheme.clone(),
        feature: entry.feature,
    })?;
    open(&parsed, read_only)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths() {
        let p = |u: &str| parse_url(u).unwrap().decoded_body().unwrap();
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
    #[cfg(feature = "postgres")]
    fn postgres_urls_keep_the_rest_and_take_the_schema() {
        let u = parse_url(
            "postgres://u@h:5432/db?schema=app_state&connect_timeout=5&statement_timeout_ms=250&retry_for_ms=0",
        )
        .unwrap();
        let (url, options) = crate::registry::postgres_options(&u, false).unwrap();
        assert_eq!(url, "postgres://u@h:5432/db?connect_timeout=5");
        assert_eq!(options.schema, "app_state");
        assert_eq!(
            options.statement_timeout,
            std::time::Duration::from_millis(250)
        );
        assert_eq!(options.retry_for, std::time::Duration::ZERO);
        let u = parse_url("postgresql://u@h/db").unwrap();
        let (url, options) = crate::registry::postgres_options(&u, true).unwrap();
        assert_eq!(url, "postgresql://u@h/db");
        assert_eq!(options.schema, "taskstate");
        assert!(options.read_only);
        let msg = |u: &str| parse_url(u).unwrap_err().to_string();
        assert!(msg("postgres://h/db?retry_for_ms=soon").contains("milliseconds"));
    }

    #[test]
    fn url_errors_convert_into_the_contract_error() {
        let e: Error = parse_url("redis://x").unwrap_err().into();
        assert_eq!(e.kind(), taskstate_core::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("unknown engine URL scheme"));
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
