//! Server-side behaviour: a newer schema is refused, NUL text is invalid
//! input, corrupt rows are typed errors, an unreachable server is a
//! retriable error. Needs `TASKSTATE_POSTGRES_URL`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use taskstate_conformance::{cases, data};
use taskstate_core::{ErrorKind, InvocationId, RunnerId, StateBackend};
use taskstate_postgres::testing::fresh_backend;
use taskstate_postgres::{PostgresBackend, PostgresOptions};

fn sql(url_schema: &PostgresBackend, statement: &str) {
    let url = std::env::var(taskstate_postgres::testing::URL_VAR).unwrap();
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    c.batch_execute(&statement.replace("{s}", &format!("\"{}\"", url_schema.schema())))
        .unwrap();
}

#[test]
fn newer_schema_version_is_refused() {
    let Some((b, _guard)) = fresh_backend("ts_srv") else {
        return;
    };
    sql(&b, "UPDATE {s}.taskstate_schema SET version = 99");
    let url = std::env::var(taskstate_postgres::testing::URL_VAR).unwrap();
    let opts = PostgresOptions::default().schema(b.schema().to_owned());
    let err = PostgresBackend::connect(&url, &opts).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Incompatible, "{err}");
    assert!(err.to_string().contains("newer"), "{err}");
}

#[test]
fn nul_text_is_invalid_input_and_nothing_is_written() {
    let Some((b, _guard)) = fresh_backend("ts_srv") else {
        return;
    };
    let e = b.set_result(&InvocationId::new("x"), "a\0b").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("NUL"), "{e}");
    assert!(b.result_ids().unwrap().is_empty());
}

#[test]
fn corrupt_rows_are_typed_errors_naming_table_and_key() {
    let Some((b, _guard)) = fresh_backend("ts_srv") else {
        return;
    };
    cases::populate_everything(&b);
    sql(
        &b,
        "UPDATE {s}.history SET history_json = '{oops' WHERE invocation_id = 'p'",
    );
    let e = b.get_history(&InvocationId::new("p")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(e.to_string().contains("history[p]"), "{e}");
    sql(
        &b,
        "DELETE FROM {s}.runner_contexts WHERE runner_id = 'parent'",
    );
    let e = b.get_runner_context(&RunnerId::new("child")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(e.to_string().contains("\"parent\""), "{e}");
    sql(
        &b,
        "UPDATE {s}.invocations SET call_id_key = 'nocolon' WHERE invocation_id = 'c'",
    );
    let e = b.get_invocation(&InvocationId::new("c")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(e.to_string().contains("invocations[c]"), "{e}");
}

#[test]
fn bad_schema_names_and_unreachable_servers_are_clear_errors() {
    let Some((_b, _guard)) = fresh_backend("ts_srv") else {
        return;
    };
    let bad = PostgresOptions::default().schema("x; DROP SCHEMA public");
    let e = PostgresBackend::connect("postgres://postgres@127.0.0.1:5432/test", &bad).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let unreachable =
        PostgresOptions::default().connect_timeout(std::time::Duration::from_millis(300));
    let e =
        PostgresBackend::connect("postgres://postgres@127.0.0.1:1/test", &unreachable).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.is_retriable());
    let e = PostgresBackend::connect("not a url", &PostgresOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}

#[test]
fn schemas_are_isolated_stores() {
    let Some((a, _ga)) = fresh_backend("ts_srv") else {
        return;
    };
    let Some((b, _gb)) = fresh_backend("ts_srv") else {
        return;
    };
    a.upsert_invocations(&[data::root("only-in-a", "m.t")])
        .unwrap();
    assert_eq!(
        a.get_invocation_ids_by_workflow(None, None).unwrap().len(),
        1
    );
    assert!(
        b.get_invocation_ids_by_workflow(None, None)
            .unwrap()
            .is_empty()
    );
    a.purge().unwrap();
    cases::assert_store_empty(&a);
}

/// The bulk path pages every table by an index on its page key, so a page
/// costs its own rows however deep into the table it is (not a scan and
/// sort of the whole table). Regression: the first `history (seq)` index
/// was named like the `history_seq` sequence, so `CREATE INDEX IF NOT
/// EXISTS` skipped it and every history page scanned the table.
#[test]
fn bulk_pages_have_an_index_on_their_key() {
    let Some((b, _guard)) = fresh_backend("ts_srv") else {
        return;
    };
    let url = std::env::var(taskstate_postgres::testing::URL_VAR).unwrap();
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    for (table, key) in [
        ("history", "seq"),
        ("invocations", "invocation_id"),
        ("results", "invocation_id"),
        (
            "workflow_sub_invocations",
            "parent_workflow_id, sub_invocation_id",
        ),
    ] {
        let rows = c
            .query(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = $2",
                &[&b.schema(), &table],
            )
            .unwrap();
        let defs: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        assert!(
            defs.iter().any(|d| d.ends_with(&format!("({key})"))),
            "{table}: no index on ({key}): {defs:?}"
        );
    }
}

/// Stored values the schema no longer guarantees (a column altered behind
/// the engine's back: NULLs, another type) are corrupt data naming table
/// and key, never a panic; an empty optional id reads as absent, as the
/// other readers and engines read it.
#[test]
fn altered_columns_are_corrupt_data_not_panics() {
    let Some((b, _guard)) = fresh_backend("ts_srv") else {
        return;
    };
    cases::populate_everything(&b);
    sql(
        &b,
        "ALTER TABLE {s}.results ALTER COLUMN result_data DROP NOT NULL;
         UPDATE {s}.results SET result_data = NULL WHERE invocation_id = 'p';
         ALTER TABLE {s}.runner_contexts ALTER COLUMN pid TYPE text USING pid::text;
         ALTER TABLE {s}.app_info ALTER COLUMN app_info_json DROP NOT NULL;
         UPDATE {s}.app_info SET app_info_json = NULL;
         UPDATE {s}.invocations SET parent_invocation_id = '' WHERE invocation_id = 'c';",
    );
    let e = b.get_result(&InvocationId::new("p")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("[p]"), "{e}");
    let e = b.get_runner_context(&RunnerId::new("child")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("runner_contexts[child]"), "{e}");
    let e = b.discover_app_infos().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("app_info[app]"), "{e}");
    let (inv, _) = &*b.get_invocation(&InvocationId::new("c")).unwrap();
    assert_eq!(inv.parent_invocation_id, None);
}

/// SPEC §6, reads never write: a store opened read-only refuses every
/// write, a prune included, and still answers reads and dry runs.
#[test]
fn a_read_only_store_refuses_writes_and_still_dry_runs_a_prune() {
    let Some((b, _guard)) = fresh_backend("ts_srv") else {
        return;
    };
    let url = std::env::var(taskstate_postgres::testing::URL_VAR).unwrap();
    let opts = PostgresOptions::default()
        .schema(b.schema().to_owned())
        .read_only(true);
    let ro = PostgresBackend::connect(&url, &opts).unwrap();
    let err = ro.set_result(&InvocationId::new("x"), "1").unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    let err = cases::read_only_store_dry_runs_and_refuses_prune(&b, &ro);
    assert!(err.to_string().contains("read-only"), "{err}");
}

/// A schema written before version 4 (no `latest` table), opened
/// read-only so it is never migrated, still answers the monitor's reads —
/// from the history itself — with what the table gives after migrating.
#[test]
fn a_version_3_schema_read_only_lists_latest_statuses_from_history() {
    use taskstate_core::InvocationFilter;
    let Some((b, _guard)) = fresh_backend("ts_srv") else {
        return;
    };
    cases::populate_everything(&b);
    let view = |s: &dyn StateBackend| {
        let page = s
            .list_invocations(&InvocationFilter::default(), None, 100)
            .unwrap();
        (page.items, s.latest_status_counts().unwrap())
    };
    let want = view(&b);
    assert!(!want.0.is_empty());
    sql(
        &b,
        "DROP TRIGGER latest_on_history ON {s}.history; DROP TRIGGER latest_on_invocation ON {s}.invocations; \
         DROP TABLE {s}.latest; UPDATE {s}.taskstate_schema SET version = 3",
    );
    let url = std::env::var(taskstate_postgres::testing::URL_VAR).unwrap();
    let opts = PostgresOptions::default()
        .schema(b.schema().to_owned())
        .read_only(true);
    let ro = PostgresBackend::connect(&url, &opts).unwrap();
    assert_eq!(view(&ro), want);
}
