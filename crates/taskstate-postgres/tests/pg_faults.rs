//! PostgreSQL faults (issue 10 class 3): the server terminates our
//! backends mid-run, a listener accepts and never answers, errors carry the
//! server's SQLSTATE and message, URLs never show a password. Nothing
//! acknowledged may be lost. Needs `TASKSTATE_POSTGRES_URL`.
//!
//! A server restart mid-run is in `pg_restart.rs` (its own binary: it takes
//! the server away from every other test).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Barrier, mpsc};
use std::time::Duration;

use taskstate_core::{ErrorKind, InvocationId, StateBackend};
use taskstate_postgres::testing::{SchemaGuard, fresh_schema, test_url};
use taskstate_postgres::{PostgresBackend, PostgresOptions};

/// `url` with `application_name` set, so a test can find its own backends.
fn with_app(url: &str, app: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}application_name={app}")
}

fn terminate(admin: &mut postgres::Client, app: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .unwrap()
        .get(0)
}

#[test]
fn terminated_backends_are_replaced_and_nothing_acknowledged_is_lost() {
    let Some(url) = test_url() else { return };
    let schema = fresh_schema("ts_fault");
    let _guard = SchemaGuard::new(url.clone(), schema.clone());
    let app = schema.clone();
    const THREADS: usize = 6;
    const ROUNDS: usize = 12;
    const PER: usize = 12;
    let b = PostgresBackend::connect(
        &with_app(&url, &app),
        &PostgresOptions::default()
            .schema(schema.clone())
            .max_connections(THREADS as u32),
    )
    .unwrap();
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    // Every round: all writers work (so the pool holds one live connection
    // per writer), wait at the barrier, the server terminates every one of
    // them, and all writers go on: each meets dead connections.
    let barrier = Barrier::new(THREADS + 1);
    let mut killed = 0;
    type Outcome = (Vec<(usize, InvocationId)>, Vec<String>);
    let outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let writers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (b, barrier) = (&b, &barrier);
                s.spawn(move || {
                    let (mut acked, mut failed) = (Vec::new(), Vec::new());
                    for round in 0..ROUNDS {
                        for i in 0..PER {
                            let id = InvocationId::new(format!("t{t}-r{round:02}-{i:03}"));
                            // Batches, single writes and reads all meet
                            // dead connections.
                            let outcome = match i % 4 {
                                0 => b.set_result(&id, &format!("{round}")),
                                1 => b.upsert_invocations(&[taskstate_conformance::data::root(
                                    id.as_str(),
                                    "shop.orders.pay",
                                )]),
                                2 => b.set_workflow_data(&id, "k", "v"),
                                _ => b.get_invocation_ids_by_workflow(None, None).map(drop),
                            };
                            match outcome {
                                Ok(()) if i % 4 < 3 => acked.push((i % 4, id)),
                                Ok(()) => {}
                                Err(e) => failed.push(format!("{id}: {e}")),
                            }
                        }
                        barrier.wait();
                        barrier.wait();
                    }
                    (acked, failed)
                })
            })
            .collect();
        for _ in 0..ROUNDS {
            barrier.wait();
            killed += terminate(&mut admin, &app);
            barrier.wait();
        }
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    assert!(killed >= ROUNDS as i64, "only {killed} backends terminated");
    let (acked, failed): (Vec<_>, Vec<_>) = outcomes.into_iter().unzip();
    let failed: Vec<String> = failed.into_iter().flatten().collect();
    assert!(
        failed.is_empty(),
        "{} calls failed, first: {:?}",
        failed.len(),
        failed.first()
    );
    let acked: Vec<_> = acked.into_iter().flatten().collect();
    assert_eq!(acked.len(), THREADS * ROUNDS * PER * 3 / 4);
    for (kind, id) in &acked {
        match kind {
            0 => assert!(b.get_result(id).is_ok(), "lost result {id}"),
            1 => assert!(b.get_invocation(id).is_ok(), "lost invocation {id}"),
            _ => assert_eq!(b.get_workflow_data(id, "k").unwrap().as_deref(), Some("v")),
        }
    }
}

#[test]
fn a_listener_that_never_answers_times_out_with_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        // Accept and hold every connection, never writing a byte.
        let (sock, _) = listener.accept().unwrap();
        let _ = stop_rx.recv();
        drop(sock);
    });
    let err = PostgresBackend::connect(
        &format!("postgres://u:secret@127.0.0.1:{port}/db"),
        &PostgresOptions::default().connect_timeout(Duration::from_millis(300)),
    )
    .unwrap_err();
    let _ = stop_tx.send(());
    holder.join().unwrap();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("no answer from the server within 300 ms"),
        "{msg}"
    );
    assert!(!msg.contains("secret") && msg.contains("u:***@"), "{msg}");
}

#[test]
fn server_errors_carry_sqlstate_and_message() {
    let Some(url) = test_url() else { return };
    let schema = fresh_schema("ts_fault");
    let _guard = SchemaGuard::new(url.clone(), schema.clone());
    let b =
        PostgresBackend::connect(&url, &PostgresOptions::default().schema(schema.clone())).unwrap();
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("DROP TABLE \"{schema}\".results"))
        .unwrap();
    let err = b.set_result(&InvocationId::new("x"), "1").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("42P01"), "{msg}");
    assert!(msg.contains("does not exist"), "{msg}");
    assert!(!msg.contains("db error") || msg.contains("42P01"), "{msg}");
}

#[test]
fn a_statement_over_its_timeout_is_cancelled_with_the_servers_reason() {
    let Some(url) = test_url() else { return };
    let schema = fresh_schema("ts_fault");
    let _guard = SchemaGuard::new(url.clone(), schema.clone());
    let b = PostgresBackend::connect(
        &url,
        &PostgresOptions::default()
            .schema(schema.clone())
            .statement_timeout(Duration::from_millis(200)),
    )
    .unwrap();
    b.set_result(&InvocationId::new("x"), "1").unwrap();
    // Hold the row's lock from another session: the write waits on it
    // until its statement timeout cancels it.
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let mut tx = admin.transaction().unwrap();
    tx.execute(
        &format!("UPDATE \"{schema}\".results SET result_data = '2' WHERE invocation_id = 'x'"),
        &[],
    )
    .unwrap();
    let err = b.set_result(&InvocationId::new("x"), "3").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("57014"), "{msg}");
    assert!(msg.contains("statement timeout"), "{msg}");
    tx.rollback().unwrap();
    assert_eq!(b.get_result(&InvocationId::new("x")).unwrap(), "1");
}
