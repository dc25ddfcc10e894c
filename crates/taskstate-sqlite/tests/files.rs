//! Opening files: bad files are refused with typed errors and left
//! untouched; corrupt rows are typed errors naming table and key; the
//! schema is created once however many openers race; purge covers every
//! table the file has.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use rusqlite::params;
use taskstate_conformance::{cases, data};
use taskstate_core::{ErrorKind, InvocationId, RunnerId, StateBackend};
use taskstate_sqlite::{SCHEMA_VERSION, SqliteBackend, SqliteOptions, Synchronous, TABLES};

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The first column of every row `sql` returns, as strings.
fn names(c: &rusqlite::Connection, sql: &str) -> Vec<String> {
    c.prepare(sql)
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn not_a_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.db");
    let content =
        b"this is a text file, not SQLite, and long enough to have a header......".repeat(20);
    std::fs::write(&path, &content).unwrap();
    let err = SqliteBackend::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Incompatible, "{err}");
    assert!(err.to_string().contains("notes.db"), "{err}");
    assert!(err.to_string().contains("not a SQLite database"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), content);
    assert_eq!(listing(dir.path()), ["notes.db"]);
}

#[test]
fn newer_schema_version_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE state_backend_results (invocation_id TEXT PRIMARY KEY, result_data BLOB NOT NULL);")
            .unwrap();
        c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = SqliteBackend::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Incompatible);
    let msg = err.to_string();
    assert!(msg.contains("future.db") && msg.contains("newer"), "{msg}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(listing(dir.path()), ["future.db"]);
}

#[test]
fn uncreatable_directory_is_a_storage_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("plain-file");
    std::fs::write(&blocker, b"x").unwrap();
    let path = blocker.join("sub").join("state.db");
    let err = SqliteBackend::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage);
    assert!(err.to_string().contains("cannot create directory"), "{err}");
    assert!(err.to_string().contains("plain-file"), "{err}");
}

#[test]
fn a_directory_is_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteBackend::open(dir.path()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage);
    assert!(err.to_string().contains("is a directory"), "{err}");
}

#[test]
fn missing_parent_directories_are_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/c/state.db");
    let b = SqliteBackend::open(&path).unwrap();
    b.set_result(&InvocationId::new("x"), "1").unwrap();
    assert!(path.is_file());
}

#[test]
fn data_survives_reopen_and_full_sync_option() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let opts = SqliteOptions::default().synchronous(Synchronous::Full);
    {
        let b = SqliteBackend::open_with(&path, &opts).unwrap();
        cases::populate_everything(&b);
    }
    let b = SqliteBackend::open(&path).unwrap();
    assert_eq!(b.get_result(&InvocationId::new("p")).unwrap(), "r");
    assert_eq!(b.get_history(&InvocationId::new("p")).unwrap().len(), 1);
    assert_eq!(b.get_matching_runner_contexts("").unwrap().len(), 2);
    assert_eq!(b.integrity_check().unwrap(), ["ok"]);
}

#[test]
fn racing_openers_of_a_new_file_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.db");
    std::thread::scope(|s| {
        for t in 0..8 {
            let path = &path;
            s.spawn(move || {
                let b = SqliteBackend::open(path).unwrap();
                b.set_result(&InvocationId::new(format!("t{t}")), "ok")
                    .unwrap();
            });
        }
    });
    let b = SqliteBackend::open(&path).unwrap();
    assert_eq!(b.result_ids().unwrap().len(), 8);
    let c = rusqlite::Connection::open(&path).unwrap();
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn purge_covers_every_table_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let b = SqliteBackend::open(&path).unwrap();
    cases::populate_everything(&b);
    let c = rusqlite::Connection::open(&path).unwrap();
    let tables = names(
        &c,
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
    );
    let mut known: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
    known.push(taskstate_sqlite::LATEST_TABLE.to_string());
    known.sort();
    assert_eq!(
        tables, known,
        "a table was added that TABLES (and so purge) does not know"
    );
    for t in &tables {
        let n: i64 = c
            .query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0))
            .unwrap();
        assert!(
            n > 0,
            "populate_everything leaves {t} empty: the purge check would prove nothing"
        );
    }
    b.purge().unwrap();
    for t in &tables {
        let n: i64 = c
            .query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0, "{t} not purged");
    }
}

/// A database with one good row of everything, then `corrupt` applied.
fn corrupted(corrupt: &str) -> (tempfile::TempDir, SqliteBackend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let b = SqliteBackend::open(&path).unwrap();
    cases::populate_everything(&b);
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(corrupt).unwrap();
    (dir, b)
}

fn assert_corrupt<T: std::fmt::Debug>(r: taskstate_core::Result<T>, must_name: &[&str]) {
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    let msg = e.to_string();
    for n in must_name {
        assert!(msg.contains(n), "{msg:?} should name {n:?}");
    }
}

#[test]
fn corrupt_history_json_and_unknown_status() {
    let (_d, b) = corrupted(
        "UPDATE state_backend_history SET history_json = '{not json' WHERE invocation_id = 'p'",
    );
    assert_corrupt(
        b.get_history(&InvocationId::new("p")),
        &["state_backend_history", "[p]"],
    );
    let (_d, b) = corrupted(
        "UPDATE state_backend_history SET history_json = replace(history_json, '\"registered\"', '\"exploded\"') WHERE invocation_id = 'p'",
    );
    assert_corrupt(
        b.get_history(&InvocationId::new("p")),
        &["state_backend_history", "exploded"],
    );
    let all: Vec<_> = b
        .iter_history_in_timerange(taskstate_core::TimeRange::all(), 10)
        .collect();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].as_ref().unwrap_err().kind(), ErrorKind::Corrupt);
    // Bytes that are not UTF-8 inside the JSON (a BLOB keeps them): the
    // record is read from SQLite's bytes directly, and refused.
    for field in ["invocation_id", "runner_context_id", "status"] {
        let (_d, b) = corrupted(&format!(
            "UPDATE state_backend_history SET history_json = CAST(replace(CAST(history_json AS BLOB), \
             CAST('\"{field}\": \"' AS BLOB), CAST('\"{field}\": \"' AS BLOB) || X'C3') AS BLOB) \
             WHERE invocation_id = 'p'"
        ));
        assert_corrupt(
            b.get_history(&InvocationId::new("p")),
            &["state_backend_history", "[p]", "UTF-8"],
        );
    }
}

#[test]
fn corrupt_invocation_rows() {
    let (_d, b) = corrupted(
        "UPDATE state_backend_invocations SET call_id_key = 'no-colon' WHERE invocation_id = 'p'",
    );
    assert_corrupt(
        b.get_invocation(&InvocationId::new("p")),
        &["state_backend_invocations[p]", "no-colon"],
    );
    let (_d, b) = corrupted(
        "UPDATE state_backend_invocations SET serialized_arguments = '[1]' WHERE invocation_id = 'c'",
    );
    assert_corrupt(
        b.get_invocation(&InvocationId::new("c")),
        &["state_backend_invocations[c]"],
    );
    let (_d, b) = corrupted(
        "UPDATE state_backend_invocations SET workflow_type_key = 'nodot' WHERE invocation_id = 'c'",
    );
    assert_corrupt(b.get_invocation(&InvocationId::new("c")), &["[c]", "nodot"]);
    // A name and a value that are UTF-8 only together: refused, not split
    // inside a character.
    let (_d, b) = corrupted(
        "UPDATE state_backend_invocations SET serialized_arguments = \
         CAST('{\"a' AS BLOB) || X'C3' || CAST('\": \"' AS BLOB) || X'A9' || CAST('\"}' AS BLOB) \
         WHERE invocation_id = 'c'",
    );
    assert_corrupt(b.get_invocation(&InvocationId::new("c")), &["[c]", "UTF-8"]);
    // TEXT affinity turns numbers into text, but a non-UTF-8 blob stays.
    let (_d, b) = corrupted(
        "UPDATE state_backend_invocations SET workflow_id = X'C3' WHERE invocation_id = 'c'",
    );
    assert_corrupt(b.get_invocation(&InvocationId::new("c")), &["[c]", "UTF-8"]);
    let (_d, b) = corrupted(
        "UPDATE state_backend_runner_contexts SET pid = 'many' WHERE runner_id = 'child'",
    );
    assert_corrupt(
        b.get_runner_context(&RunnerId::new("child")),
        &["state_backend_runner_contexts[child]", "expected integer"],
    );
}

#[test]
fn corrupt_values_results_apps_workflows() {
    let (_d, b) = corrupted(
        "UPDATE state_backend_results SET result_data = X'FF00FE' WHERE invocation_id = 'p'",
    );
    assert_corrupt(
        b.get_result(&InvocationId::new("p")),
        &["state_backend_results[p]", "UTF-8"],
    );
    let (_d, b) = corrupted("UPDATE state_backend_exceptions SET exception_data = 3.5");
    assert_corrupt(
        b.get_exception(&InvocationId::new("c")),
        &["state_backend_exceptions[c]"],
    );
    let (_d, b) = corrupted("UPDATE state_backend_app_info SET app_info_json = '{\"app_id\": 1}'");
    assert_corrupt(
        b.get_app_info(&taskstate_core::AppId::new("app")),
        &["state_backend_app_info[app]"],
    );
    assert_corrupt(b.discover_app_infos(), &["state_backend_app_info[app]"]);
    let (_d, b) = corrupted("UPDATE state_backend_workflows SET workflow_type_key = 'x'");
    assert_corrupt(b.get_all_workflow_runs(), &["state_backend_workflows[p]"]);
}

#[test]
fn runner_context_with_missing_parent_names_both_ids() {
    let (_d, b) = corrupted("DELETE FROM state_backend_runner_contexts WHERE runner_id = 'parent'");
    assert_corrupt(
        b.get_runner_context(&RunnerId::new("child")),
        &["\"child\"", "\"parent\"", "not stored"],
    );
    assert_corrupt(b.get_matching_runner_contexts("ch"), &["parent"]);
}

#[test]
fn runner_context_cycle_is_corrupt_not_a_hang() {
    let (_d, b) = corrupted(
        "UPDATE state_backend_runner_contexts SET parent_ctx_id = 'child' WHERE runner_id = 'parent'",
    );
    assert_corrupt(b.get_runner_context(&RunnerId::new("child")), &["cycle"]);
}

#[test]
fn pynenc_empty_string_parents_read_as_absent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let b = SqliteBackend::open(&path).unwrap();
    let (inv, call) = data::child("i", "m.t", None, "i");
    b.upsert_invocations(&[(inv, call)]).unwrap();
    b.store_runner_context(&data::runner("r")).unwrap();
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute(
        "UPDATE state_backend_invocations SET parent_invocation_id = ?1, parent_workflow_id = ?1",
        params![""],
    )
    .unwrap();
    c.execute(
        "UPDATE state_backend_runner_contexts SET parent_ctx_id = ''",
        [],
    )
    .unwrap();
    let (got, _) = &*b.get_invocation(&InvocationId::new("i")).unwrap();
    assert_eq!(got.parent_invocation_id, None);
    assert_eq!(got.workflow.parent_workflow_id, None);
    assert_eq!(
        b.get_runner_context(&RunnerId::new("r"))
            .unwrap()
            .unwrap()
            .parent,
        None
    );
}

#[test]
fn reads_do_not_block_on_a_long_write_transaction_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let b = SqliteBackend::open(&path).unwrap();
    b.set_result(&InvocationId::new("x"), "1").unwrap();
    // Another connection holds the write lock; WAL readers still read.
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute_batch("BEGIN IMMEDIATE; INSERT INTO state_backend_results VALUES ('y', '2');")
        .unwrap();
    assert_eq!(b.get_result(&InvocationId::new("x")).unwrap(), "1");
    assert_eq!(
        b.get_result(&InvocationId::new("y")).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    other.execute_batch("COMMIT").unwrap();
    assert_eq!(b.get_result(&InvocationId::new("y")).unwrap(), "2");
}

#[test]
fn a_busy_timeout_surfaces_as_retriable_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let b = SqliteBackend::open_with(
        &path,
        &SqliteOptions::default().busy_timeout(std::time::Duration::from_millis(50)),
    )
    .unwrap();
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let e = b.set_result(&InvocationId::new("x"), "1").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.is_retriable());
    assert!(std::error::Error::source(&e).is_some());
    other.execute_batch("ROLLBACK").unwrap();
    // Nothing half-written; the engine works again.
    assert_eq!(
        b.get_result(&InvocationId::new("x")).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    b.set_result(&InvocationId::new("x"), "1").unwrap();
    assert_eq!(b.get_result(&InvocationId::new("x")).unwrap(), "1");
}

#[test]
fn a_failing_write_fails_alone_while_others_share_its_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let b = SqliteBackend::open(&path).unwrap();
    // A trigger makes one specific write fail inside SQLite.
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(
        "CREATE TRIGGER poison BEFORE INSERT ON state_backend_results \
         WHEN NEW.result_data = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned value'); END;",
    )
    .unwrap();
    let failures = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..8 {
            let (b, failures) = (&b, &failures);
            s.spawn(move || {
                for i in 0..100 {
                    let id = InvocationId::new(format!("t{t}-{i}"));
                    let value = if i % 10 == 3 { "poison" } else { "fine" };
                    match b.set_result(&id, value) {
                        Ok(()) => assert_eq!(value, "fine"),
                        Err(e) => {
                            assert_eq!(value, "poison", "{e}");
                            assert!(e.to_string().contains("poisoned value"), "{e}");
                            failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    assert_eq!(failures.into_inner(), 80);
    let ids = b.result_ids().unwrap();
    assert_eq!(
        ids.len(),
        720,
        "every good write committed, no poisoned one"
    );
    for id in ids {
        assert_eq!(b.get_result(&id).unwrap(), "fine");
    }
}

fn read_only() -> SqliteOptions {
    SqliteOptions::default().read_only(true)
}

/// SPEC §6: a read-only open creates nothing, migrates nothing, reads
/// everything, and refuses writes with an error (the file is unchanged).
#[test]
fn read_only_open_reads_and_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope").join("state.db");
    let err = SqliteBackend::open_with(&missing, &read_only()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("no such store"), "{err}");
    assert!(!dir.path().join("nope").exists());

    // An empty SQLite file (no reference tables) is not a store.
    let empty = dir.path().join("empty.db");
    rusqlite::Connection::open(&empty)
        .unwrap()
        .execute_batch("CREATE TABLE other (x)")
        .unwrap();
    let err = SqliteBackend::open_with(&empty, &read_only()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Incompatible, "{err}");
    assert!(
        err.to_string().contains("not a taskstate or pynenc store"),
        "{err}"
    );

    let path = dir.path().join("state.db");
    {
        let b = SqliteBackend::open(&path).unwrap();
        b.set_result(&InvocationId::new("a"), "1").unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let b = SqliteBackend::open_with(&path, &read_only()).unwrap();
    assert_eq!(b.get_result(&InvocationId::new("a")).unwrap(), "1");
    let err = b.set_result(&InvocationId::new("b"), "2").unwrap_err();
    assert!(
        err.to_string().contains("readonly") || err.to_string().contains("read-only"),
        "{err}"
    );
    drop(b);
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

/// The names of the file's indexes that taskstate added.
fn taskstate_indexes(c: &rusqlite::Connection) -> Vec<String> {
    names(
        c,
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'taskstate_%' ORDER BY name",
    )
}

#[test]
fn a_version_1_file_gains_the_retention_indexes_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        let b = SqliteBackend::open(&path).unwrap();
        cases::populate_everything(&b);
    }
    let before_rows;
    {
        // Back to what version 1 wrote: its three indexes, version 1.
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(DROP_V3).unwrap();
        c.execute_batch(
            "DROP INDEX taskstate_invocations_parent_workflow;
             DROP INDEX taskstate_workflows_parent;
             DROP INDEX taskstate_sub_invocations_sub;
             PRAGMA user_version = 1;",
        )
        .unwrap();
        before_rows = SqliteBackend::open_with(&path, &SqliteOptions::default().read_only(true))
            .unwrap()
            .snapshot_rows();
    }
    let b = SqliteBackend::open(&path).unwrap();
    assert_eq!(b.snapshot_rows(), before_rows);
    let c = rusqlite::Connection::open(&path).unwrap();
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    assert_eq!(
        taskstate_indexes(&c),
        [
            "taskstate_history_time",
            "taskstate_invocations_parent_workflow",
            "taskstate_invocations_type",
            "taskstate_invocations_workflow",
            "taskstate_latest_status",
            "taskstate_latest_task",
            "taskstate_sub_invocations_sub",
            "taskstate_workflows_parent",
            "taskstate_workflows_type_id",
        ]
    );
}

/// What version 3 adds: the latest-status table and its triggers.
const DROP_V3: &str = "
    DROP TRIGGER taskstate_latest_history_insert;
    DROP TRIGGER taskstate_latest_history_delete;
    DROP TRIGGER taskstate_latest_invocation_insert;
    DROP TRIGGER taskstate_latest_invocation_update;
    DROP TRIGGER taskstate_latest_invocation_delete;
    DROP TABLE taskstate_latest;
    DROP INDEX taskstate_workflows_type_id;";

/// Everything the monitor reads: every listed invocation and the counts.
fn monitor_view(
    b: &dyn StateBackend,
) -> (
    Vec<taskstate_core::InvocationSummary>,
    taskstate_core::StatusCounts,
) {
    let mut rows = Vec::new();
    let mut cursor = None;
    loop {
        let page = b
            .list_invocations(&Default::default(), cursor.as_ref(), 3)
            .unwrap();
        rows.extend(page.items);
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    (rows, b.latest_status_counts().unwrap())
}

/// A version-2 file (or pynenc's own) has no latest-status table: read-only
/// it is answered from the history itself, and the upgrade fills the table
/// with the same answers; the triggers then follow new writes.
#[test]
fn a_version_2_file_gains_a_filled_latest_table_and_answers_the_same() {
    use data::{at, hist, root};
    use taskstate_core::InvocationStatus as S;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.db");
    let want;
    {
        let b = SqliteBackend::open(&path).unwrap();
        cases::populate_everything(&b);
        let pairs: Vec<_> = (0..9).map(|i| root(&format!("m-{i}"), "m.t")).collect();
        b.upsert_invocations(&pairs).unwrap();
        for i in 0..9 {
            let id = format!("m-{i}");
            b.add_histories(&[
                hist(&id, S::Registered, at(i)),
                hist(
                    &id,
                    if i % 2 == 0 { S::Success } else { S::Running },
                    at(i + 1),
                ),
            ])
            .unwrap();
        }
        want = monitor_view(&b);
        assert!(want.0.len() >= 9, "{:?}", want.0);
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(DROP_V3).unwrap();
        c.pragma_update(None, "user_version", 2).unwrap();
    }
    {
        let ro =
            SqliteBackend::open_with(&path, &SqliteOptions::default().read_only(true)).unwrap();
        assert_eq!(monitor_view(&ro), want, "answered from the history");
    }
    let b = SqliteBackend::open(&path).unwrap();
    assert_eq!(monitor_view(&b), want, "answered from the filled table");
    let c = rusqlite::Connection::open(&path).unwrap();
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    let n: i64 = c
        .query_row("SELECT COUNT(*) FROM taskstate_latest", [], |r| r.get(0))
        .unwrap();
    let keys: i64 = c
        .query_row(
            "SELECT COUNT(DISTINCT invocation_id) FROM state_backend_history",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, keys);
    // A plain SQL writer (as pynenc is) moves the latest status too.
    c.execute(
        "INSERT INTO state_backend_history (invocation_id, history_timestamp, history_status, history_json) \
         SELECT invocation_id, history_timestamp + 100, 'failed', history_json FROM state_backend_history \
         WHERE invocation_id = 'm-1' ORDER BY history_timestamp DESC LIMIT 1",
        [],
    )
    .unwrap();
    let (rows, counts) = monitor_view(&b);
    assert_eq!(rows[0].invocation_id.as_str(), "m-1");
    assert_eq!(rows[0].status, Some(S::Failed));
    assert_eq!(counts.get(S::Failed), want.1.get(S::Failed) + 1);
    assert_eq!(counts.get(S::Running), want.1.get(S::Running) - 1);
}

trait SnapshotRows {
    fn snapshot_rows(&self) -> Vec<taskstate_core::Row>;
}

impl SnapshotRows for SqliteBackend {
    fn snapshot_rows(&self) -> Vec<taskstate_core::Row> {
        taskstate_core::Kind::ALL
            .iter()
            .flat_map(|k| cases::paged(self, *k, 100))
            .collect()
    }
}

#[test]
fn reclaim_space_shrinks_the_file_after_a_prune_and_keeps_what_is_left() {
    use taskstate_core::{InvocationStatus as S, PruneOptions};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.db");
    let b = SqliteBackend::open(&path).unwrap();
    let big = "x".repeat(2000);
    for i in 0..400 {
        let inv = format!("inv-{i:03}");
        b.upsert_invocations(&[data::root(&inv, "m.t")]).unwrap();
        b.add_histories(&[data::hist(&inv, S::Success, data::at(i))])
            .unwrap();
        b.set_result(&data::id(&inv), &big).unwrap();
    }
    let pruned = b
        .prune(&PruneOptions::new(data::at(359)), &mut |_| {})
        .unwrap();
    assert_eq!(pruned.invocations, 360);
    let kept = b.snapshot_rows();
    let space = b.reclaim_space().unwrap().unwrap();
    assert!(
        space.after_bytes * 3 < space.before_bytes,
        "{} → {} bytes",
        space.before_bytes,
        space.after_bytes
    );
    assert_eq!(b.snapshot_rows(), kept);
    assert_eq!(b.get_result(&data::id("inv-399")).unwrap(), big);
    drop(b);
    let on_disk = std::fs::metadata(&path).unwrap().len();
    assert_eq!(on_disk, space.after_bytes);
}

#[test]
fn a_read_only_store_dry_runs_a_prune_and_refuses_a_real_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ro.db");
    let b = SqliteBackend::open(&path).unwrap();
    let ro = SqliteBackend::open_with(&path, &SqliteOptions::default().read_only(true)).unwrap();
    let err = cases::read_only_store_dry_runs_and_refuses_prune(&b, &ro);
    assert!(err.to_string().contains("ro.db"), "{err}");
}

/// pynenc's own purge (`delete_tables_with_prefix`: `DELETE FROM` every
/// `state_backend*` table, in the schema's order) also empties the
/// latest-status table, through its triggers, and the next writes are
/// followed again.
#[test]
fn pynenc_purge_empties_the_latest_table_through_its_triggers() {
    use data::{at, hist, root};
    use taskstate_core::InvocationStatus as S;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("purged.db");
    let b = SqliteBackend::open(&path).unwrap();
    cases::populate_everything(&b);
    assert!(b.latest_status_counts().unwrap().total() > 0);
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        let tables = names(
            &c,
            "SELECT name FROM sqlite_master WHERE type='table' AND name LIKE 'state_backend%'",
        );
        for t in tables {
            c.execute(&format!("DELETE FROM {t}"), []).unwrap();
        }
        let n: i64 = c
            .query_row("SELECT COUNT(*) FROM taskstate_latest", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }
    assert_eq!(b.latest_status_counts().unwrap().total(), 0);
    b.upsert_invocations(&[root("again", "m.t")]).unwrap();
    b.add_histories(&[hist("again", S::Running, at(1))])
        .unwrap();
    assert_eq!(b.latest_status_counts().unwrap().get(S::Running), 1);
}

/// A connection set up as the engine sets up its own, on a new store in
/// `dir`.
fn engine_connection(dir: &Path) -> rusqlite::Connection {
    let path = dir.join("s.db");
    drop(SqliteBackend::open(&path).unwrap());
    SqliteBackend::raw_connection(&path, &SqliteOptions::default()).unwrap()
}

/// A page of a range scan binds a new cursor and limit each time; the
/// statement must run as prepared. SQLite (built with STAT4, as the
/// bundled one is) otherwise marks a bound LIMIT as plan-dependent and
/// compiles the statement again on every page — 100,000 instructions a
/// page, a quarter of a full history scan. The engine's connections use
/// the query planner stability guarantee, so plans never depend on bound
/// values.
#[test]
fn range_pages_run_without_recompiling() {
    use rusqlite::StatementStatus;
    let dir = tempfile::tempdir().unwrap();
    let c = engine_connection(dir.path());
    for sql in [
        taskstate_sqlite::sql::HISTORY_IN_RANGE_FIRST,
        taskstate_sqlite::sql::IDS_IN_RANGE_FIRST,
    ] {
        let mut st = c.prepare(sql).unwrap();
        for limit in [10, 20, 30] {
            let mut rows = st.query(params![0.0, 1e12, limit]).unwrap();
            assert!(rows.next().unwrap().is_none());
        }
        assert_eq!(st.get_status(StatementStatus::RePrepare), 0, "{sql}");
    }
}

/// The bundled SQLite keeps a page cache per connection. libsqlite3-sys
/// compiles it with `SQLITE_ENABLE_MEMORY_MANAGEMENT`, which puts every
/// connection of the process in one cache with one LRU list: the writer's
/// pages, another database's reads, evict a reader's working set, and
/// each of its reads went back to the file (measured: a point read at
/// twice the time, one `pread` per page). The workspace's
/// `.cargo/config.toml` builds it without that option.
#[cfg(feature = "bundled")]
#[test]
fn bundled_sqlite_keeps_a_page_cache_per_connection() {
    let dir = tempfile::tempdir().unwrap();
    let c = engine_connection(dir.path());
    let options = names(&c, "PRAGMA compile_options");
    assert!(options.iter().any(|o| o == "ENABLE_STAT4"), "{options:?}");
    assert!(
        !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
        "{options:?}"
    );
}

/// The engine checkpoints the WAL itself (beside the write connection,
/// whose automatic checkpoint its WAL hook replaces), and however steadily
/// writers keep committing, the WAL is copied back and starts over. A
/// checkpoint that ran while writers appended never leaves it wholly
/// copied, so without the step that holds writers off past 4,000 frames it
/// starts over only in the odd pause (16,000 commits of a 3 KB value: 223
/// and 263 MB). With it the WAL grows by what writers append while one
/// checkpoint runs (24–28 MB on a quiet machine), and past 8,000 frames
/// (33 MB), which slow checkpoints reach (56 MB beside a parallel build
/// before that limit), writers wait for the checkpoint: a bound however
/// slow the disk.
#[test]
fn the_wal_stays_bounded_under_steady_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let b = SqliteBackend::open(&path).unwrap();
    results_from_two_threads(&b, 8000, &"v".repeat(3000));
    assert_eq!(b.result_ids().unwrap().len(), 16_000);
    let (restarts, len) = (wal_restarts(&path), wal_len(&path));
    assert!(restarts >= 1, "the WAL never started over ({len} bytes)");
    // 8,000 frames of a 4 KiB page and its 24-byte header, and a batch per
    // writer thread.
    assert!(len < 36 << 20, "WAL grew to {len} bytes");
    // Nothing was lost on the way: the store reopens whole.
    drop(b);
    let c = rusqlite::Connection::open(&path).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM state_backend_results", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(n, 16_000);
}

/// `per_thread` results of `value` from each of two threads at once, each
/// its own commit.
fn results_from_two_threads(b: &SqliteBackend, per_thread: usize, value: &str) {
    std::thread::scope(|s| {
        for t in 0..2 {
            s.spawn(move || {
                for i in 0..per_thread {
                    b.set_result(&InvocationId::new(format!("t{t}-{i:05}")), value)
                        .unwrap();
                }
            });
        }
    });
}

/// The WAL file of database `db`.
fn wal_of(db: &Path) -> std::path::PathBuf {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    wal.into()
}

/// The checkpoint sequence number of a WAL file (bytes 12..16 of its
/// header): 0 in a new WAL and one more at every restart.
fn wal_restarts(db: &Path) -> u32 {
    let bytes = std::fs::read(wal_of(db)).unwrap();
    u32::from_be_bytes(bytes[12..16].try_into().unwrap())
}

/// The size of `db`'s WAL file.
fn wal_len(db: &Path) -> u64 {
    std::fs::metadata(wal_of(db)).unwrap().len()
}

/// A read left open on old frames keeps any checkpoint from copying past
/// them, so the WAL cannot start over and grows past the 8,000 frames at
/// which writers wait for checkpoints. Writers must still go on (each
/// waits for a checkpoint that can copy nothing, never for the reader),
/// and once the read ends the WAL starts over again.
#[test]
fn a_read_held_open_slows_no_writer_into_a_hang_and_the_wal_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let b = SqliteBackend::open(&path).unwrap();
    b.set_result(&InvocationId::new("first"), "1").unwrap();
    let reader = rusqlite::Connection::open(&path).unwrap();
    reader
        .execute_batch("BEGIN; SELECT count(*) FROM state_backend_results;")
        .unwrap();
    let before = wal_restarts(&path);
    results_from_two_threads(&b, 6000, "v");
    assert_eq!(wal_restarts(&path), before, "started over under the reader");
    // Past 8,000 frames of 4 KiB pages: the limit did not hold, as it cannot.
    let grown = wal_len(&path);
    assert!(grown > 8000 * 4096, "WAL of {grown} bytes");
    // The reader still sees its snapshot: one row.
    let seen: i64 = reader
        .query_row("SELECT count(*) FROM state_backend_results", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(seen, 1);
    reader.execute_batch("COMMIT").unwrap();
    for i in 0..10 {
        b.set_result(&InvocationId::new(format!("after-{i}")), "v")
            .unwrap();
    }
    assert!(wal_restarts(&path) > before, "the WAL never started over");
    assert_eq!(b.result_ids().unwrap().len(), 12_011);
}
