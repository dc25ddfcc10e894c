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

pub fn cmd_serve(args: &ServeArgs) -> CliResult {
    let store = open_for_reading(&args.url)?;
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
