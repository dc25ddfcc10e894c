//! Nothing stored is silently skipped (issue 10 class 4): whole-store
//! reads visit every row of every table, and a row they cannot decode is
//! corrupt data naming its table and key — never left out of an export or
//! a copy that then says "counts verified", never shown as absent.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use taskstate::{ErrorKind, InvocationId, Kind, copy, export, open};

/// A SQLite store with a little of everything, then `sql` run on the file
/// behind the engine's back.
fn store_with(sql: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let url = format!("sqlite://{}", path.display());
    {
        let b = open(&url).unwrap();
        taskstate_conformance::cases::populate_everything(b.as_ref());
    }
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(sql).unwrap();
    (dir, url)
}

fn no_progress() -> impl FnMut(&str, u64, u64) {
    |_, _, _| {}
}

fn assert_corrupt_at(e: &taskstate::Error, table_key: &str) {
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains(table_key), "{e}");
}

#[test]
fn history_rows_with_unreadable_time_keys_stop_export_and_copy() {
    for (ts, what) in [("'soon'", "text"), ("1e999", "infinite"), ("X'00'", "blob")] {
        let (_d, url) = store_with(&format!(
            "INSERT INTO state_backend_history VALUES ('ghost', {ts}, 'running', '{{}}')"
        ));
        let b = open(&url).unwrap();
        let e = export::export(b.as_ref(), &mut no_progress()).unwrap_err();
        assert_corrupt_at(&e, "state_backend_history[ghost]");
        let to = open("memory://").unwrap();
        let e = copy::copy(b.as_ref(), to.as_ref(), 100, false, &mut no_progress()).unwrap_err();
        assert_corrupt_at(&e, "state_backend_history[ghost]");
        // Counting sees it too.
        let held = copy::counts(b.as_ref()).unwrap().get(Kind::History);
        let clean = {
            let m = open("memory://").unwrap();
            taskstate_conformance::cases::populate_everything(m.as_ref());
            copy::counts(m.as_ref()).unwrap().get(Kind::History)
        };
        assert_eq!(held, clean + 1, "{what}");
    }
}

#[test]
fn rows_whose_key_is_not_text_are_reported_not_skipped() {
    // SQLite lets a TEXT PRIMARY KEY hold NULL, and a blob that is not
    // UTF-8: no point read finds such a row, a whole-store read must not
    // skip it.
    for key in ["NULL", "X'FF00'"] {
        for table in ["state_backend_results", "state_backend_invocations"] {
            let sql = if table == "state_backend_results" {
                format!("INSERT INTO {table} VALUES ({key}, 'x')")
            } else {
                format!(
                    "INSERT INTO {table} VALUES ({key}, 'm.t:a', 'm.t', 'a', '{{}}', NULL, NULL, 'w', 'm.t', NULL)"
                )
            };
            let (_d, url) = store_with(&sql);
            let b = open(&url).unwrap();
            let e = export::export(b.as_ref(), &mut no_progress()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{sql}: {e}");
            assert!(e.to_string().contains(table), "{sql}: {e}");
            let to = open("memory://").unwrap();
            let e =
                copy::copy(b.as_ref(), to.as_ref(), 100, false, &mut no_progress()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{sql}: {e}");
        }
    }
}

#[test]
fn inspect_reports_a_corrupt_value_or_invocation_instead_of_hiding_it() {
    let cases = [
        (
            "UPDATE state_backend_results SET result_data = X'FF' WHERE invocation_id = 'p'",
            vec!["--invocation", "p"],
            "state_backend_results[p]",
        ),
        (
            "UPDATE state_backend_exceptions SET exception_data = 7 WHERE invocation_id = 'c'",
            vec!["--invocation", "c"],
            "state_backend_exceptions[c]",
        ),
        (
            "UPDATE state_backend_invocations SET call_id_key = 'nocolon' WHERE invocation_id = 'p'",
            vec![],
            "state_backend_invocations[p]",
        ),
    ];
    for (sql, extra, want) in &cases {
        let (_d, url) = store_with(sql);
        let mut args = vec!["inspect", url.as_str()];
        args.extend(extra.iter().copied());
        let out = Command::new(env!("CARGO_BIN_EXE_taskstate"))
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("corrupt data") && err.contains(*want),
            "{args:?}: {err}"
        );
    }
    let (_d, url) = store_with(cases[0].0);
    let e = open(&url)
        .unwrap()
        .get_result(&InvocationId::new("p"))
        .unwrap_err();
    assert_corrupt_at(&e, "state_backend_results[p]");
}

/// Costs that stay linear (issue 10 class 6): a runner-context parent chain
/// thousands deep is exported, imported, copied and counted row by row,
/// never by resolving every context's whole chain (which made these
/// O(N²): N = 2,000 took 13 s to export and 47 s to copy).
#[test]
fn a_deep_runner_chain_moves_row_by_row() {
    const DEPTH: usize = 3000;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("chain.db").display());
    let b = open(&url).unwrap();
    let rows: Vec<taskstate::Row> = (0..DEPTH)
        .map(|i| {
            let mut ctx = taskstate_conformance::data::runner(&format!("r{i:05}"));
            ctx.parent = None;
            let parent = (i > 0).then(|| taskstate::RunnerId::new(format!("r{:05}", i - 1)));
            taskstate::Row::RunnerContext(ctx, parent)
        })
        .collect();
    b.write_rows(&rows).unwrap();
    let doc = export::export(b.as_ref(), &mut no_progress()).unwrap();
    assert_eq!(doc["runner_contexts"].as_array().unwrap().len(), DEPTH);
    let m = open("memory://").unwrap();
    export::import(m.as_ref(), &doc, false).unwrap();
    let deepest = m
        .get_runner_context(&taskstate::RunnerId::new(format!("r{:05}", DEPTH - 1)))
        .unwrap()
        .unwrap();
    assert_eq!(deepest.chain().count(), DEPTH);
    let back = open(&format!(
        "sqlite://{}",
        dir.path().join("back.db").display()
    ))
    .unwrap();
    let counts = copy::copy(m.as_ref(), back.as_ref(), 500, false, &mut no_progress()).unwrap();
    assert_eq!(counts.get(Kind::RunnerContext), DEPTH as u64);
    let out = Command::new(env!("CARGO_BIN_EXE_taskstate"))
        .args(["inspect", &url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("runner contexts"));
}

/// Salvage: `--skip-corrupt` leaves out every row that cannot be decoded,
/// lists each (kind, table, key) on stderr, and moves everything else.
#[test]
fn skip_corrupt_salvages_everything_readable_and_lists_the_rest() {
    let (dir, url) = store_with(
        "INSERT INTO state_backend_history VALUES ('ghost', 'soon', 'running', '{}');
         UPDATE state_backend_results SET result_data = X'FF' WHERE invocation_id = 'p';
         INSERT INTO state_backend_results VALUES (NULL, 'x');
         INSERT INTO state_backend_app_info VALUES ('broken-app', 'not json');",
    );
    // Without the flag: refused.
    let plain = Command::new(env!("CARGO_BIN_EXE_taskstate"))
        .args(["export", &url])
        .output()
        .unwrap();
    assert_eq!(plain.status.code(), Some(1));
    // With it: exit 0, a document without the four rows, each listed.
    let out = Command::new(env!("CARGO_BIN_EXE_taskstate"))
        .args(["export", &url, "--skip-corrupt"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for want in [
        "skipped a corrupt history records row: corrupt data at",
        "state_backend_history[ghost]",
        "state_backend_results[p]",
        "skipped a corrupt results row",
        "state_backend_app_info[broken-app]",
        "4 corrupt rows were skipped",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        doc["orphan_invocation_data"].get("ghost").is_none(),
        "{doc}"
    );
    let p = doc["invocations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["invocation_id"] == "p")
        .unwrap();
    assert_eq!(p["result"], serde_json::Value::Null);
    assert_eq!(p["history"].as_array().unwrap().len(), 1);
    assert_eq!(doc["app_infos"].as_array().unwrap().len(), 1);
    // Copy: the same rows are left out and the counts verify without them.
    let to = format!("sqlite://{}", dir.path().join("salvaged.db").display());
    let out = Command::new(env!("CARGO_BIN_EXE_taskstate"))
        .args(["copy", &url, &to, "--skip-corrupt"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("4 corrupt rows were skipped"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("counts verified"));
    let salvaged = copy::counts(open(&to).unwrap().as_ref()).unwrap();
    // Both results were corrupt; the two readable history rows and the one
    // readable app info moved, and everything else.
    assert_eq!(salvaged.get(Kind::Result), 0);
    assert_eq!(salvaged.get(Kind::History), 2);
    assert_eq!(salvaged.get(Kind::AppInfo), 1);
    assert_eq!(salvaged.get(Kind::Invocation), 2);
}

/// PostgreSQL salvages the same way (rows whose JSON is damaged).
#[test]
fn skip_corrupt_on_postgres() {
    let Some((pg, _guard)) = taskstate_postgres::testing::fresh_backend("ts_salvage") else {
        return;
    };
    taskstate_conformance::cases::populate_everything(&pg);
    let url = std::env::var(taskstate_postgres::testing::URL_VAR).unwrap();
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    c.batch_execute(&format!(
        "UPDATE \"{}\".history SET history_json = '{{oops' WHERE invocation_id = 'orphan'",
        pg.schema()
    ))
    .unwrap();
    assert_eq!(
        export::export(&pg, &mut no_progress()).unwrap_err().kind(),
        ErrorKind::Corrupt
    );
    let mut skipped = Vec::new();
    let mut on = |k: Kind, e: &taskstate::Error| skipped.push((k, e.to_string()));
    let (counts, bytes) =
        export::export_with(&pg, Vec::new(), &mut no_progress(), Some(&mut on)).unwrap();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0].0, Kind::History);
    assert!(skipped[0].1.contains("history[orphan]"), "{skipped:?}");
    assert_eq!(counts.get(Kind::Invocation), 2);
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert!(doc["orphan_invocation_data"].get("orphan").is_none());
}
