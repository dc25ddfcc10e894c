//! The `taskstate` binary: the bench's JSON report, and failures as one
//! clear line on stderr with a non-zero exit (never a panic).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn taskstate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_taskstate"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn fixture_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let src =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/pynenc-0.1.0/state.db");
    std::fs::copy(src, &path).unwrap();
    (dir, path)
}

#[test]
fn bench_writes_a_validated_json_report() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = taskstate(&[
        "bench",
        "--n",
        "120",
        "--threads",
        "2",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("sqlite/raw"), "{table}");
    assert!(table.contains("iter_history_in_timerange"), "{table}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(doc["meta"]["n"], 120);
    let results = doc["results"].as_array().unwrap();
    // 3 engines x (9 single-thread ops + 3 writes with 2 threads).
    assert_eq!(results.len(), 3 * 12);
    for r in results {
        assert_eq!(r["validation"], "ok", "{r}");
        assert!(r["ops_per_s"].as_f64().unwrap() > 0.0, "{r}");
    }
    let engines: std::collections::BTreeSet<&str> = results
        .iter()
        .map(|r| r["engine"].as_str().unwrap())
        .collect();
    assert_eq!(
        engines.into_iter().collect::<Vec<_>>(),
        ["memory", "raw-sqlite", "sqlite"]
    );
}

#[test]
fn failures_are_one_line_without_panic() {
    let dir = tempfile::tempdir().unwrap();
    let not_db = dir.path().join("notes.db");
    std::fs::write(
        &not_db,
        "just text, not a database at all, long enough to matter".repeat(30),
    )
    .unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["inspect".into(), "redis://x".into()],
            "unknown engine URL scheme",
        ),
        (
            vec![
                "inspect".into(),
                "postgres://postgres@127.0.0.1:1/test".into(),
            ],
            "Connection refused",
        ),
        (
            vec![
                "inspect".into(),
                "postgres://postgres@127.0.0.1:5432/test?schema=no-dashes".into(),
            ],
            "schema name",
        ),
        (
            vec!["export".into(), format!("sqlite://{}", not_db.display())],
            "not a SQLite database",
        ),
        (
            vec![
                "import".into(),
                "memory://".into(),
                "/no/such/file.json".into(),
            ],
            "cannot read /no/such/file.json",
        ),
        (
            vec![
                "import".into(),
                "memory://".into(),
                not_db.display().to_string(),
            ],
            "is not JSON",
        ),
        (
            vec![
                "inspect".into(),
                "memory://".into(),
                "--invocation".into(),
                "nope".into(),
            ],
            "invocation not found: \"nope\"",
        ),
        (
            vec!["bench".into(), "--n".into(), "0".into()],
            "--n must be at least 1",
        ),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = taskstate(&args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| !l.starts_with("taskstate: note:"))
            .collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        assert!(
            lines[0].starts_with("taskstate: error: "),
            "{args:?}: {err}"
        );
        assert!(lines[0].contains(want), "{args:?}: {err}");
    }
}

#[test]
fn export_import_copy_inspect_through_the_cli() {
    let (dir, db) = fixture_copy();
    let url = format!("sqlite://{}", db.display());
    let exported = dir.path().join("export.json");
    let out = taskstate(&["export", &url, "-o", exported.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let target = format!("sqlite://{}", dir.path().join("imported.db").display());
    let out = taskstate(&["import", &target, exported.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("imported 12 invocations and 43 history records")
    );
    let again = taskstate(&["export", &target]);
    assert!(again.status.success());
    assert_eq!(
        String::from_utf8_lossy(&again.stdout),
        std::fs::read_to_string(&exported).unwrap()
    );
    let refused = taskstate(&["import", &target, exported.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("not empty"));

    let copied = format!("sqlite://{}", dir.path().join("copied.db").display());
    let out = taskstate(&["copy", &url, &copied]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("counts verified") && text.contains("history records") && text.contains("43"),
        "{text}"
    );

    let out = taskstate(&[
        "inspect",
        &copied,
        "--invocation",
        "62b4d170-95a8-43e4-857b-c18564f37007",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("exception") && text.contains("ValueError"),
        "{text}"
    );
    assert!(text.contains("chain valid"), "{text}");
}

/// The bench on PostgreSQL with its raw baseline and several threads (the
/// raw baseline once kept clients in thread-locals, which aborted the
/// process when worker threads exited). Needs `TASKSTATE_POSTGRES_URL`.
#[cfg(feature = "postgres")]
#[test]
fn bench_on_postgres_with_threads() {
    let Some(url) = taskstate_postgres::testing::test_url() else {
        return;
    };
    let schema = taskstate_postgres::testing::fresh_schema("ts_bench");
    let _guard = taskstate_postgres::testing::SchemaGuard::new(url.clone(), schema.clone());
    let sep = if url.contains('?') { '&' } else { '?' };
    let engine = format!("{url}{sep}schema={schema}");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("pg.json");
    let out = taskstate(&[
        "bench",
        "--engine",
        &engine,
        "--n",
        "60",
        "--threads",
        "2",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let results = doc["results"].as_array().unwrap();
    // postgres + raw-sqlite + raw-postgres, 12 rows each.
    assert_eq!(results.len(), 36);
    assert!(
        results.iter().all(|r| r["validation"] == "ok"),
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .any(|r| r["engine"] == "raw-postgres" && r["threads"] == 2)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("postgres/raw"));
}
