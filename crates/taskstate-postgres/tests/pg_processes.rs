//! Four OS processes write interleaved invocations, histories and results
//! into one PostgreSQL schema while reading it; every call must succeed
//! and every acknowledged write be there afterwards. Needs
//! `TASKSTATE_POSTGRES_URL` (prints `skipped: …` without it, fails in CI).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::ExitCode;

use taskstate_conformance::processes::{self, Outcome};
use taskstate_postgres::testing::{SchemaGuard, fresh_schema, test_url};
use taskstate_postgres::{PostgresBackend, PostgresOptions};

const WRITERS: usize = 4;
const ITERATIONS: usize = 150;

fn main() -> ExitCode {
    processes::main(
        &[(
            "four_processes_write_without_loss",
            four_processes_write_without_loss,
        )],
        run_child,
    )
}

fn run_child(args: &[String]) -> Result<(), String> {
    let [url, schema, k] = args else {
        return Err(format!("bad child arguments {args:?}"));
    };
    let k: usize = k.parse().map_err(|e| format!("index: {e}"))?;
    let options = PostgresOptions::default()
        .schema(schema.clone())
        .max_connections(2);
    let b = PostgresBackend::connect(url, &options).map_err(|e| format!("connect: {e}"))?;
    processes::writer(&b, k, WRITERS, ITERATIONS)
}

fn four_processes_write_without_loss() -> Outcome {
    let Some(url) = test_url() else {
        return Ok("skipped: set TASKSTATE_POSTGRES_URL".into());
    };
    // A schema nobody created yet: the four children race to migrate it
    // (the advisory lock serialises them) and then write at once.
    let schema = fresh_schema("ts_proc");
    let _guard = SchemaGuard::new(url.clone(), schema.clone());
    processes::run_writers(WRITERS, |k| {
        vec![url.clone(), schema.clone(), k.to_string()]
    })?;
    let options = PostgresOptions::default().schema(schema);
    let b = PostgresBackend::connect(&url, &options).map_err(|e| format!("connect: {e}"))?;
    processes::verify_writers(&b, WRITERS, ITERATIONS)
}
