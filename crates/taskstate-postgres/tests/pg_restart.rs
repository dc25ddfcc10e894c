//! The server restarts while a writer is busy (issue 10 class 3): every
//! write either returns an error or is stored; writes after the restart
//! succeed on fresh connections. Needs `TASKSTATE_POSTGRES_URL` and
//! `TASKSTATE_POSTGRES_RESTART` (a shell command that restarts that server
//! and returns once it accepts connections again; `.ci/run` sets both).
//! Its own test binary: nothing else may use the server meanwhile.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::mpsc;

use taskstate_core::{InvocationId, StateBackend};
use taskstate_postgres::testing::{SchemaGuard, fresh_schema, test_url};
use taskstate_postgres::{PostgresBackend, PostgresOptions};

const RESTART_VAR: &str = "TASKSTATE_POSTGRES_RESTART";

#[test]
fn a_server_restart_mid_run_loses_nothing_acknowledged() {
    let Some(url) = test_url() else { return };
    let Some(restart) = std::env::var(RESTART_VAR).ok().filter(|c| !c.is_empty()) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but {RESTART_VAR} is not: the restart test must run in CI"
        );
        eprintln!("skipped: set {RESTART_VAR} (the server-restart test did not run)");
        return;
    };
    let schema = fresh_schema("ts_restart");
    let _guard = SchemaGuard::new(url.clone(), schema.clone());
    let b = PostgresBackend::connect(
        &url,
        &PostgresOptions::default()
            .schema(schema.clone())
            .max_connections(4),
    )
    .unwrap();
    let (halfway_tx, halfway_rx) = mpsc::sync_channel::<()>(0);
    let mut acked = Vec::new();
    let mut failed = 0usize;
    std::thread::scope(|s| {
        let restarter = s.spawn(move || {
            halfway_rx.recv().unwrap();
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(&restart)
                .output()
                .unwrap();
            assert!(out.status.success(), "{restart}: {out:?}");
        });
        for i in 0..600 {
            if i == 200 {
                halfway_tx.send(()).unwrap();
            }
            let id = InvocationId::new(format!("w{i:04}"));
            match b.set_result(&id, &i.to_string()) {
                Ok(()) => acked.push(id),
                Err(_) => failed += 1,
            }
        }
        restarter.join().unwrap();
    });
    // After the restart the engine works again on fresh connections.
    b.set_result(&InvocationId::new("after"), "1").unwrap();
    for id in &acked {
        assert!(b.get_result(id).is_ok(), "acknowledged {id} was lost");
    }
    eprintln!(
        "restart test: {} acknowledged, {failed} failed as unavailable",
        acked.len()
    );
    assert!(acked.len() >= 400, "{} acknowledged", acked.len());
}
