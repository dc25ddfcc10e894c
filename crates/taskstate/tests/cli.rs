//! The `taskstate` binary: the bench's JSON report, and failures as one
//! clear line on stderr with a non-zero exit (never a panic).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

mod common;
use common::{assert_one_error_line, fixture_copy, stderr, taskstate};

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
        "--repeat",
        "2",
        "--min-time-ms",
        "5",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("sqlite/raw"), "{table}");
    assert!(table.contains("iter_history_in_timerange"), "{table}");
    assert!(table.contains("2 rounds"), "{table}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(doc["meta"]["n"], 120);
    assert_eq!(doc["meta"]["repeat"], 2);
    let samples = doc["samples"].as_array().unwrap();
    // 3 targets x 2 rounds x (9 single-thread ops + 7 with 2 threads: the
    // writes and point reads).
    assert_eq!(samples.len(), 3 * 2 * 16);
    for r in samples {
        assert_eq!(r["validation"], "ok", "{r}");
        assert!(r["ops_per_s"].as_f64().unwrap() > 0.0, "{r}");
    }
    let engines: std::collections::BTreeSet<&str> = samples
        .iter()
        .map(|r| r["engine"].as_str().unwrap())
        .collect();
    assert_eq!(
        engines.into_iter().collect::<Vec<_>>(),
        ["memory", "raw-sqlite", "sqlite"]
    );
    // Every (engine, op, threads) is summarised by its median and range,
    // and sqlite/raw by the median of the per-round ratios.
    let summary = doc["summary"].as_array().unwrap();
    assert_eq!(summary.len(), 3 * 16);
    for s in summary {
        let (lo, med, hi) = (
            s["min_ops_per_s"].as_f64().unwrap(),
            s["median_ops_per_s"].as_f64().unwrap(),
            s["max_ops_per_s"].as_f64().unwrap(),
        );
        assert!(lo <= med && med <= hi, "{s}");
    }
    let ratios = doc["ratios"].as_array().unwrap();
    assert_eq!(ratios.len(), 16);
    for r in ratios {
        assert_eq!(r["engine"], "sqlite");
        assert_eq!(r["per_round"].as_array().unwrap().len(), 2, "{r}");
    }
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
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_one_error_line(&taskstate(&args), want, &[], &format!("{args:?}"));
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
        "--repeat",
        "1",
        "--min-time-ms",
        "0",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let results = doc["samples"].as_array().unwrap();
    // postgres + raw-postgres, 16 rows each.
    assert_eq!(results.len(), 32);
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

/// Exit status 101 is a Rust panic: no command may end with it.
fn assert_no_panic(o: &Output, what: &str) {
    assert_ne!(o.status.code(), Some(101), "{what} panicked: {}", stderr(o));
    assert!(!stderr(o).contains("panicked"), "{what}: {}", stderr(o));
}

/// Runs the binary with stdout connected to a pipe whose reader has
/// already gone (as `taskstate inspect … | head -0` does).
fn with_closed_stdout(args: &[&str]) -> Output {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_taskstate"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close our end of the pipe before the child writes: its write fails
    // with EPIPE (Rust ignores SIGPIPE).
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let (_d, db) = fixture_copy();
    let url = format!("sqlite://{}", db.display());
    for args in [
        vec!["inspect", url.as_str()],
        vec!["export", url.as_str()],
        vec!["bench", "--n", "60"],
    ] {
        let out = with_closed_stdout(&args);
        assert_no_panic(&out, &args.join(" "));
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let said: Vec<String> = stderr(&out)
            .lines()
            .filter(|l| !l.starts_with("taskstate: note:"))
            .map(str::to_owned)
            .collect();
        assert!(
            said.is_empty(),
            "{args:?} says nothing on a closed pipe: {said:?}"
        );
    }
}

#[test]
fn a_full_stdout_is_one_line_and_exit_1() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        return; // no /dev/full on this system
    };
    let (_d, db) = fixture_copy();
    let url = format!("sqlite://{}", db.display());
    let out = Command::new(env!("CARGO_BIN_EXE_taskstate"))
        .args(["inspect", url.as_str()])
        .stdout(full)
        .output()
        .unwrap();
    assert_no_panic(&out, "inspect > /dev/full");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("taskstate: error: writing stdout"), "{err}");
}

#[test]
fn out_of_range_options_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("x.db").display());
    for args in [
        vec!["bench", "--threads", "100000"],
        vec!["bench", "--threads", "0"],
        vec!["bench", "--n", "0"],
        vec!["bench", "--n", "100000000"],
        vec!["bench", "--n", "-3"],
        vec!["bench", "--n", "ten"],
        vec!["copy", "memory://", db.as_str(), "--batch", "0"],
        vec!["inspect", "memory://", "--recent", "99999999999"],
        vec!["export"],
        vec!["frobnicate"],
    ] {
        let out = taskstate(&args);
        assert_no_panic(&out, &args.join(" "));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("taskstate: usage: "), "{args:?}: {err}");
    }
    let out = taskstate(&["bench", "--threads", "100000"]);
    assert!(
        stderr(&out).contains("100000 is out of range 1..=256"),
        "{}",
        stderr(&out)
    );
    let out = taskstate(&["copy", "memory://", "memory://", "--batch", "0"]);
    assert!(
        stderr(&out).contains("0 is out of range 1..=100000"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_overlong_busy_timeout_is_refused_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?busy_timeout_ms=2147483648",
        dir.path().join("t.db").display()
    );
    let out = taskstate(&["inspect", url.as_str()]);
    assert_no_panic(&out, "busy_timeout_ms=2^31");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("busy timeout"), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1);
}

#[test]
fn a_failed_export_file_leaves_no_temporary_behind() {
    let (_d, db) = fixture_copy();
    let dir = tempfile::tempdir().unwrap();
    // The output names a directory: the rename fails after the temp file
    // was written.
    let target = dir.path().join("out.json");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep"), "x").unwrap();
    let out = taskstate(&[
        "export",
        &format!("sqlite://{}", db.display()),
        "-o",
        target.to_str().unwrap(),
    ]);
    assert_no_panic(&out, "export -o DIR");
    assert_eq!(out.status.code(), Some(1));
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, ["out.json"], "no temporary file left");
}

/// `export -o` on a full disk: the write itself fails part-way, and the
/// temporary file it was writing is removed. Needs a small tmpfs, which
/// only root can mount (CI runs as root); elsewhere it says so and returns.
#[test]
fn an_export_onto_a_full_disk_leaves_nothing_behind() {
    let (_d, db) = fixture_copy();
    let mnt = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8k", "tmpfs"])
        .arg(mnt.path())
        .output()
        .is_ok_and(|o| o.status.success());
    if !mounted {
        eprintln!("skipped: a full-disk export needs root to mount a tmpfs");
        return;
    }
    let target = mnt.path().join("export.json");
    let out = taskstate(&[
        "export",
        &format!("sqlite://{}", db.display()),
        "-o",
        target.to_str().unwrap(),
    ]);
    let left: Vec<_> = std::fs::read_dir(mnt.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let _ = Command::new("umount").arg(mnt.path()).status();
    assert_no_panic(&out, "export onto a full disk");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("No space left"), "{}", stderr(&out));
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn bytes(p: &std::path::Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

/// SPEC §6: commands that only read (export, inspect, copy's source) open
/// stores read-only: a missing store is "no such store" and is not
/// created, a pynenc file is not migrated, a corrupt file is not touched,
/// and an export never replaces its own source.
#[test]
fn reading_commands_never_write() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("misspelt").join("state.db");
    let url = format!("sqlite://{}", missing.display());
    let copy_to = format!("sqlite://{}", dir.path().join("to.db").display());
    for args in [
        vec!["export", url.as_str()],
        vec!["inspect", url.as_str()],
        vec!["copy", url.as_str(), copy_to.as_str()],
    ] {
        let out = taskstate(&args);
        assert_no_panic(&out, &args.join(" "));
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&out).contains("no such store"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(
            !dir.path().join("misspelt").exists(),
            "{args:?} created the directory"
        );
    }

    // A pynenc-written file (user_version 0, no taskstate indexes) stays so.
    let (_d, db) = fixture_copy();
    let before = bytes(&db);
    let url = format!("sqlite://{}", db.display());
    for args in [vec!["inspect", url.as_str()], vec!["export", url.as_str()]] {
        let out = taskstate(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(bytes(&db), before, "the database file was written");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 0, "a read migrated the pynenc file");
    let ours: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name LIKE 'taskstate_%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(ours, 0, "a read added taskstate indexes");
    drop(conn);

    // export -o onto its own source is refused; the database survives.
    let out = taskstate(&["export", url.as_str(), "-o", db.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("its own source"), "{}", stderr(&out));
    assert_eq!(bytes(&db), before);

    // A file that is not a database is reported, and left as it was.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"this is not a database, just some bytes..").unwrap();
    let out = taskstate(&["export", &format!("sqlite://{}", junk.display())]);
    assert_no_panic(&out, "export junk");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(bytes(&junk), b"this is not a database, just some bytes..");
}

/// A misspelt PostgreSQL schema is "no such store", and no DDL runs.
#[test]
fn reading_a_missing_postgres_schema_creates_nothing() {
    let Ok(base) = std::env::var("TASKSTATE_POSTGRES_URL") else {
        eprintln!("skipped: set TASKSTATE_POSTGRES_URL");
        return;
    };
    let schema = format!("ts_misspelt_{}", std::process::id());
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}schema={schema}");
    let out = taskstate(&["inspect", url.as_str()]);
    assert_no_panic(&out, "inspect missing schema");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no such store"), "{}", stderr(&out));
    let mut client = postgres::Client::connect(&base, postgres::NoTls).unwrap();
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
            &[&schema],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "a read created the schema");
}

/// A pynenc file (WAL mode) on a read-only mount is exported and inspected:
/// SQLite cannot create its WAL index there, so the read-only open falls
/// back to reading it as immutable. Needs root for the read-only bind
/// mount (CI runs as root); elsewhere it says so and returns.
#[test]
fn a_store_on_a_read_only_mount_can_be_read() {
    let (src, db) = fixture_copy();
    let mnt = tempfile::tempdir().unwrap();
    let mount = |args: &[&str]| {
        Command::new("mount")
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let (s, m) = (src.path().to_str().unwrap(), mnt.path().to_str().unwrap());
    if !mount(&["--bind", s, m]) {
        eprintln!("skipped: a read-only mount needs root");
        return;
    }
    let ro = mount(&["-o", "remount,ro,bind", m]);
    let url = format!(
        "sqlite://{}",
        mnt.path().join(db.file_name().unwrap()).display()
    );
    let inspect = taskstate(&["inspect", url.as_str()]);
    let export = taskstate(&["export", url.as_str()]);
    let _ = Command::new("umount").arg(m).status();
    assert!(ro, "remount read-only failed");
    assert!(inspect.status.success(), "{}", stderr(&inspect));
    assert!(String::from_utf8_lossy(&inspect.stdout).contains("invocations"));
    assert!(export.status.success(), "{}", stderr(&export));
    let doc: serde_json::Value = serde_json::from_slice(&export.stdout).unwrap();
    assert_eq!(doc["invocations"].as_array().unwrap().len(), 12);
}

/// No message shows a password, in any command, whatever fails.
#[test]
fn passwords_never_reach_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("doc.json");
    std::fs::write(&doc, "{\"format\": \"taskstate-export/1\"}").unwrap();
    let doc = doc.display().to_string();
    // Port 1 refuses connections: every command fails at once.
    for url in [
        "postgres://app:hunter2@127.0.0.1:1/db",
        "postgres://127.0.0.1:1/db?user=app&password=hunter2",
    ] {
        for args in [
            vec!["export", url],
            vec!["inspect", url],
            vec!["import", url, doc.as_str()],
            vec!["copy", "memory://", url],
            vec!["copy", url, "memory://"],
            vec!["bench", "--engine", url, "--n", "10"],
        ] {
            let out = taskstate(&args);
            let text = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
            assert!(!out.status.success(), "{args:?}");
            assert!(!text.contains("hunter2"), "{args:?}: {text}");
            assert!(text.contains("***"), "{args:?}: {text}");
        }
    }
}
