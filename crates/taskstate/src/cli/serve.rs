//! `taskstate serve`: the web monitor on a store opened read-only.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use taskstate::serve::{Monitor, is_loopback, run};

use crate::{CliResult, open_for_reading};

/// `taskstate serve` arguments.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Store URL (opened read-only: nothing is ever written to it).
    url: String,
    /// Address to listen on; a non-loopback address exposes the store's
    /// contents to the network (a warning says so; consider --token).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    bind: SocketAddr,
    /// Require this token on every request (`Authorization: Bearer TOKEN`,
    /// or open `/?token=TOKEN` once in a browser: it sets a cookie).
    /// Default: the TASKSTATE_SERVE_TOKEN environment variable, if set.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "TASKSTATE_SERVE_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
}

/// Whether a SQLite store lacks the latest-status table (a pynenc file
/// taskstate never opened for writing): its pages then read the whole
/// store. `false` for other engines and when it cannot tell.
#[cfg(feature = "sqlite")]
fn lacks_latest_table(url: &str) -> bool {
    use rusqlite::{Connection, OpenFlags};
    let Ok(parsed) = taskstate::parse_url(url) else {
        return false;
    };
    if parsed.engine != "sqlite" {
        return false;
    }
    let Ok(path) = parsed.decoded_body() else {
        return false;
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(&path, flags)
        .and_then(|c| {
            c.query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'taskstate_latest'",
                [],
                |r| r.get::<_, i64>(0),
            )
        })
        .is_ok_and(|n| n == 0)
}

#[cfg(not(feature = "sqlite"))]
fn lacks_latest_table(_: &str) -> bool {
    false
}

pub fn cmd_serve(args: &ServeArgs) -> CliResult {
    let store = open_for_reading(&args.url)?;
    if lacks_latest_table(&args.url) {
        let _ = writeln!(
            std::io::stderr(),
            "taskstate: warning: {} has no latest-status table (pynenc created it and taskstate never wrote to it): every page reads the whole store; `taskstate upgrade URL` adds it once, changing no row of pynenc's",
            taskstate::redact_url(&args.url)
        );
    }
    if !is_loopback(&args.bind) {
        let _ = writeln!(
            std::io::stderr(),
            "taskstate: warning: listening on {}, reachable from other machines: anyone who can connect reads the store{}",
            args.bind,
            if args.token.is_some() {
                " if they have the token (sent in clear: put TLS in front)"
            } else {
                "; set --token"
            }
        );
    }
    let app = Monitor::new(Arc::from(store), args.token.clone());
    run(app, args.bind, |addr| {
        // The first line a wrapper (or a test) waits for.
        let _ = writeln!(
            std::io::stderr(),
            "taskstate: serving {} on http://{addr}/",
            taskstate::redact_url(&args.url)
        );
    })?;
    Ok(())
}
