//! Test support: a fresh schema per test, dropped afterwards, on the server
//! `TASKSTATE_POSTGRES_URL` names.

use std::io::Write;
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::{PostgresBackend, PostgresOptions};

/// The environment variable naming the test server.
pub const URL_VAR: &str = "TASKSTATE_POSTGRES_URL";

/// The server URL for tests. When unset: `None` after printing a visible
/// `skipped: set TASKSTATE_POSTGRES_URL` line (written past the test
/// harness's output capture), unless `CI` is set, where a missing server is
/// a failure.
pub fn test_url() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var_os("CI").is_some() {
                panic!("CI is set but {URL_VAR} is not: the PostgreSQL tests must run in CI");
            }
            static ONCE: Once = Once::new();
            ONCE.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "skipped: set {URL_VAR} (PostgreSQL tests did not run)"
                );
            });
            None
        }
    }
}

/// Drops its schema when dropped.
pub struct SchemaGuard {
    url: String,
    schema: String,
}

impl SchemaGuard {
    /// A guard for `schema` on the server at `url`.
    #[must_use]
    pub fn new(url: String, schema: String) -> Self {
        Self { url, schema }
    }
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.url, postgres::NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                self.schema
            ));
        }
    }
}

/// A unique schema name for this process and call.
pub fn fresh_schema(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A backend on a fresh schema of the test server, and the guard that drops
/// the schema; `None` when no server is configured.
pub fn fresh_backend(prefix: &str) -> Option<(PostgresBackend, SchemaGuard)> {
    let url = test_url()?;
    let schema = fresh_schema(prefix);
    let options = PostgresOptions::default()
        .schema(schema.clone())
        .max_connections(10);
    let backend = PostgresBackend::connect(&url, &options)
        .unwrap_or_else(|e| panic!("connect to {URL_VAR}: {e}"));
    Some((backend, SchemaGuard { url, schema }))
}
