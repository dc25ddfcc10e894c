//! The database written by real pynenc 0.1.0 (`fixtures/pynenc-0.1.0`)
//! reads back exactly as pynenc itself read it (`expected.json`), and a
//! database written by this engine holds the rows pynenc would write.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use rusqlite::types::Value as SqlValue;
use serde_json::{Value, json};
use taskstate_core::{
    AppInfo, CallDTO, CallId, InvocationDTO, InvocationHistory, InvocationId, RunnerContext,
    RunnerId, SerializedArguments, StateBackend, TaskId, TimeRange, Timestamp, WorkflowIdentity,
};
use taskstate_sqlite::{SqliteBackend, TABLES};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/pynenc-0.1.0")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixture_dir().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A private copy of the fixture database (opening it in WAL mode writes
/// beside it).
fn fixture_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::copy(fixture_dir().join("state.db"), &path).unwrap();
    (dir, path)
}

fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn opt_id(v: &Value) -> Option<InvocationId> {
    v.as_str().map(InvocationId::new)
}

fn ids_json(ids: &[InvocationId]) -> Value {
    Value::Array(ids.iter().map(|i| json!(i.as_str())).collect())
}

fn runner_json(c: &RunnerContext) -> Value {
    json!({
        "runner_id": c.runner_id.as_str(),
        "runner_cls": c.runner_cls,
        "pid": c.pid,
        "hostname": c.hostname,
        "thread_id": c.thread_id,
        "parent_runner_id": c.parent_runner_id().map(RunnerId::as_str),
    })
}

fn workflow_json(w: &WorkflowIdentity) -> Value {
    json!({
        "workflow_id": w.workflow_id.as_str(),
        "workflow_type_key": w.workflow_type.key(),
        "parent_workflow_id": w.parent_workflow_id.as_ref().map(InvocationId::as_str),
    })
}

#[test]
fn every_value_reads_back_as_pynenc_read_it() {
    let (_dir, path) = fixture_copy();
    let b = SqliteBackend::open(&path).unwrap();
    let exp = expected();

    // Invocations: DTOs, arguments in stored order, history, results, children.
    let invs = exp["invocations"].as_array().unwrap();
    assert_eq!(invs.len(), 12);
    let all = b.get_invocation_ids_by_workflow(None, None).unwrap();
    assert_eq!(
        ids_json(&all),
        Value::Array(invs.iter().map(|i| i["invocation_id"].clone()).collect())
    );
    for e in invs {
        let id = InvocationId::new(s(&e["invocation_id"]));
        let (inv, call) = &*b.get_invocation(&id).unwrap();
        assert_eq!(inv.call_id.key(), s(&e["call_id_key"]));
        assert_eq!(call.call_id.task_id().key(), s(&e["task_id_key"]));
        assert_eq!(call.call_id.args_id(), s(&e["args_id"]));
        let args: Vec<(String, String)> = e["serialized_arguments"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), s(v).to_owned()))
            .collect();
        let got: Vec<(String, String)> = call
            .serialized_arguments
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(got, args, "arguments of {id}");
        assert_eq!(inv.parent_invocation_id, opt_id(&e["parent_invocation_id"]));
        assert_eq!(workflow_json(&inv.workflow), e["workflow"]);
        let hist: Vec<Value> = b
            .get_history(&id)
            .unwrap()
            .iter()
            .map(InvocationHistory::to_value)
            .collect();
        assert_eq!(Value::Array(hist), e["history"], "history of {id}");
        assert_eq!(
            b.get_result(&id)
                .ok()
                .map(|t| Value::String(t.into_string()))
                .unwrap_or(Value::Null),
            e["result"]
        );
        assert_eq!(
            b.get_exception(&id)
                .ok()
                .map(|t| Value::String(t.into_string()))
                .unwrap_or(Value::Null),
            e["exception"]
        );
        assert_eq!(
            ids_json(&b.get_child_invocations(&id).unwrap()),
            e["children"],
            "children of {id}"
        );
    }

    // Workflows.
    let runs: Vec<Value> = b
        .get_all_workflow_runs()
        .unwrap()
        .iter()
        .map(workflow_json)
        .collect();
    assert_eq!(Value::Array(runs), exp["workflow_runs"]);
    let types: Vec<Value> = b
        .get_all_workflow_types()
        .unwrap()
        .iter()
        .map(|t| json!(t.key()))
        .collect();
    assert_eq!(Value::Array(types), exp["workflow_types"]);
    for (ty, want) in exp["workflow_runs_by_type"].as_object().unwrap() {
        let got: Vec<Value> = b
            .get_workflow_runs(&ty.parse::<TaskId>().unwrap())
            .unwrap()
            .iter()
            .map(|w| json!(w.workflow_id.as_str()))
            .collect();
        assert_eq!(&Value::Array(got), want, "runs of {ty}");
    }
    for (wf, want) in exp["workflow_sub_invocations"].as_object().unwrap() {
        assert_eq!(
            &ids_json(
                &b.get_workflow_sub_invocations(&InvocationId::new(wf.as_str()))
                    .unwrap()
            ),
            want
        );
    }
    for d in exp["workflow_data"].as_array().unwrap() {
        let got = b
            .get_workflow_data(&InvocationId::new(s(&d["workflow_id"])), s(&d["key"]))
            .unwrap();
        assert_eq!(got.as_deref(), Some(s(&d["stored"])));
    }
    let data: Vec<Value> = b
        .all_workflow_data()
        .unwrap()
        .into_iter()
        .map(|d| json!({"workflow_id": d.workflow_id.as_str(), "key": d.key, "stored": d.value}))
        .collect();
    assert_eq!(Value::Array(data), exp["workflow_data"]);

    // Apps.
    let app_id = s(&exp["queries"]["app_id"]);
    assert_eq!(
        b.get_app_info(&taskstate_core::AppId::new(app_id))
            .unwrap()
            .to_value(),
        exp["app_info"]
    );
    let apps: Vec<Value> = b
        .discover_app_infos()
        .unwrap()
        .iter()
        .map(|a| json!({"app_id": a.app_id.as_str(), "app_info": a.to_value()}))
        .collect();
    assert_eq!(Value::Array(apps), exp["app_infos"]);

    // Runner contexts, with parents, and the substring searches.
    let all_ctx = b.get_matching_runner_contexts("").unwrap();
    let ctx_json: Vec<Value> = all_ctx.iter().map(runner_json).collect();
    assert_eq!(Value::Array(ctx_json), exp["runner_contexts"]);
    let child = b
        .get_runner_context(&RunnerId::new("runner-main-7f3a-thread-1"))
        .unwrap()
        .unwrap();
    assert_eq!(
        child.parent.as_ref().unwrap().runner_id.as_str(),
        "runner-main-7f3a"
    );
    assert_eq!(
        child.parent.as_ref().unwrap().runner_cls,
        "MultiThreadRunner"
    );
    for (q, want) in exp["runner_context_matches"].as_object().unwrap() {
        let got: Vec<Value> = b
            .get_matching_runner_contexts(q)
            .unwrap()
            .iter()
            .map(|c| json!(c.runner_id.as_str()))
            .collect();
        assert_eq!(&Value::Array(got), want, "search {q:?}");
    }

    // Time ranges, page size 4, exactly pynenc's batches.
    let q = &exp["queries"]["timerange"];
    let range = TimeRange::new(
        s(&q["start"]).parse().unwrap(),
        s(&q["end"]).parse().unwrap(),
    );
    let page = q["batch_size"].as_u64().unwrap() as usize;
    assert_eq!(page, 4);
    let id_pages: Vec<Value> = b
        .iter_invocations_in_timerange(range, page)
        .map(|p| ids_json(&p.unwrap()))
        .collect();
    assert_eq!(
        Value::Array(id_pages),
        exp["timerange"]["invocation_id_batches"]
    );
    let hist_pages: Vec<Value> = b
        .iter_history_in_timerange(range, page)
        .map(|p| Value::Array(p.unwrap().iter().map(InvocationHistory::to_value).collect()))
        .collect();
    assert_eq!(
        Value::Array(hist_pages),
        exp["timerange"]["history_batches"]
    );

    // Ids by workflow.
    let q = &exp["queries"]["invocation_ids_by_workflow"];
    let by_id = b
        .get_invocation_ids_by_workflow(Some(&InvocationId::new(s(&q["workflow_id"]))), None)
        .unwrap();
    assert_eq!(
        ids_json(&by_id),
        exp["invocation_ids_by_workflow"]["by_workflow_id"]
    );
    let by_ty = b
        .get_invocation_ids_by_workflow(None, Some(&s(&q["workflow_type_key"]).parse().unwrap()))
        .unwrap();
    assert_eq!(
        ids_json(&by_ty),
        exp["invocation_ids_by_workflow"]["by_workflow_type_key"]
    );

    // Listings agree with the per-id answers.
    let with_result: Vec<&str> = invs
        .iter()
        .filter(|i| !i["result"].is_null())
        .map(|i| s(&i["invocation_id"]))
        .collect();
    assert_eq!(
        b.result_ids()
            .unwrap()
            .iter()
            .map(InvocationId::as_str)
            .collect::<Vec<_>>(),
        with_result
    );
    assert_eq!(b.exception_ids().unwrap().len(), 2);
    assert_eq!(b.all_workflow_sub_invocations().unwrap().len(), 10);
}

fn table_rows(conn: &rusqlite::Connection, table: &str) -> Vec<Vec<SqlValue>> {
    let cols: Vec<String> = conn
        .prepare(&format!(
            "SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
        ))
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let order: Vec<String> = (1..=cols.len()).map(|i| i.to_string()).collect();
    let sql = format!(
        "SELECT {} FROM {table} ORDER BY {}",
        cols.join(", "),
        order.join(", ")
    );
    let mut st = conn.prepare(&sql).unwrap();
    st.query_map([], |r| {
        (0..cols.len())
            .map(|i| r.get::<_, SqlValue>(i))
            .collect::<Result<Vec<_>, _>>()
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

#[test]
fn opening_a_pynenc_file_adds_only_our_objects_and_changes_no_row() {
    let (_dir, path) = fixture_copy();
    let before = rusqlite::Connection::open(&path).unwrap();
    let rows_before: Vec<_> = TABLES.iter().map(|t| table_rows(&before, t)).collect();
    let version: i64 = before
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 0, "pynenc leaves user_version at 0");
    drop(before);

    drop(SqliteBackend::open(&path).unwrap());

    let after = rusqlite::Connection::open(&path).unwrap();
    let rows_after: Vec<_> = TABLES.iter().map(|t| table_rows(&after, t)).collect();
    assert_eq!(rows_before, rows_after);
    let version: i64 = after
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, taskstate_sqlite::SCHEMA_VERSION);
    let names: Vec<String> = after
        .prepare("SELECT type || ' ' || name FROM sqlite_master WHERE name LIKE '%state_backend%' OR name LIKE 'taskstate_%' ORDER BY 1")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut want: Vec<String> = expected()["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| s(v).to_owned())
        .collect();
    want.extend(
        [
            "index taskstate_history_time",
            "index taskstate_invocations_parent_workflow",
            "index taskstate_invocations_type",
            "index taskstate_invocations_workflow",
            "index taskstate_latest_status",
            "index taskstate_latest_task",
            "index taskstate_sub_invocations_sub",
            "index taskstate_workflows_parent",
            "index taskstate_workflows_type_id",
            "table taskstate_latest",
            "trigger taskstate_latest_history_delete",
            "trigger taskstate_latest_history_insert",
            "trigger taskstate_latest_invocation_delete",
            "trigger taskstate_latest_invocation_insert",
            "trigger taskstate_latest_invocation_update",
        ]
        .map(String::from),
    );
    want.sort();
    // The primary-key index of a WITHOUT ROWID table has no entry of its own.
    assert_eq!(names, want);
    // One latest row per history key, filled from pynenc's rows.
    let (latest, keys): (i64, i64) = after
        .query_row(
            "SELECT (SELECT COUNT(*) FROM taskstate_latest), \
             (SELECT COUNT(DISTINCT invocation_id) FROM state_backend_history)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(latest, keys);
    let counts = expected()["table_row_counts"].clone();
    for t in TABLES {
        let n: i64 = after
            .query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0))
            .unwrap();
        assert_eq!(json!(n), counts[t], "{t}");
    }
}

/// Writes the fixture's content through the engine, from `expected.json`.
fn write_fixture_content(b: &dyn StateBackend, exp: &Value) {
    let ctxs = exp["runner_contexts"].as_array().unwrap();
    let ctx_by_id = |id: &str| ctxs.iter().find(|c| c["runner_id"] == id).unwrap().clone();
    fn build(c: &Value, lookup: &dyn Fn(&str) -> Value) -> RunnerContext {
        RunnerContext {
            runner_cls: s(&c["runner_cls"]).into(),
            runner_id: RunnerId::new(s(&c["runner_id"])),
            parent: c["parent_runner_id"]
                .as_str()
                .map(|p| Box::new(build(&lookup(p), lookup))),
            pid: c["pid"].as_i64().unwrap(),
            hostname: s(&c["hostname"]).into(),
            thread_id: c["thread_id"].as_i64().unwrap(),
        }
    }
    b.store_app_info(&AppInfo::from_value(exp["app_info"].clone()).unwrap())
        .unwrap();
    for c in ctxs {
        b.store_runner_context(&build(c, &ctx_by_id)).unwrap();
    }
    for e in exp["invocations"].as_array().unwrap() {
        let call_id: CallId = s(&e["call_id_key"]).parse().unwrap();
        let args = SerializedArguments::from_pairs(
            e["serialized_arguments"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), s(v).to_owned())),
        );
        assert_eq!(
            args.args_id(),
            call_id.args_id(),
            "args_id of {}",
            e["invocation_id"]
        );
        let w = &e["workflow"];
        let inv = InvocationDTO {
            invocation_id: InvocationId::new(s(&e["invocation_id"])),
            call_id: call_id.clone(),
            workflow: WorkflowIdentity {
                workflow_id: InvocationId::new(s(&w["workflow_id"])),
                workflow_type: s(&w["workflow_type_key"]).parse().unwrap(),
                parent_workflow_id: opt_id(&w["parent_workflow_id"]),
            },
            parent_invocation_id: opt_id(&e["parent_invocation_id"]),
        };
        b.upsert_invocations(&[(
            inv,
            CallDTO {
                call_id,
                serialized_arguments: args,
            },
        )])
        .unwrap();
        for h in e["history"].as_array().unwrap() {
            b.add_histories(&[InvocationHistory::from_value(h.clone()).unwrap()])
                .unwrap();
        }
        if let Some(r) = e["result"].as_str() {
            b.set_result(&InvocationId::new(s(&e["invocation_id"])), r)
                .unwrap();
        }
        if let Some(x) = e["exception"].as_str() {
            b.set_exception(&InvocationId::new(s(&e["invocation_id"])), x)
                .unwrap();
        }
    }
    for w in exp["workflow_runs"].as_array().unwrap() {
        b.store_workflow_run(&WorkflowIdentity {
            workflow_id: InvocationId::new(s(&w["workflow_id"])),
            workflow_type: s(&w["workflow_type_key"]).parse().unwrap(),
            parent_workflow_id: opt_id(&w["parent_workflow_id"]),
        })
        .unwrap();
    }
    for (wf, subs) in exp["workflow_sub_invocations"].as_object().unwrap() {
        for sub in subs.as_array().unwrap() {
            b.store_workflow_sub_invocation(
                &InvocationId::new(wf.as_str()),
                &InvocationId::new(s(sub)),
            )
            .unwrap();
        }
    }
    for d in exp["workflow_data"].as_array().unwrap() {
        b.set_workflow_data(
            &InvocationId::new(s(&d["workflow_id"])),
            s(&d["key"]),
            s(&d["stored"]),
        )
        .unwrap();
    }
}

#[test]
fn rows_written_here_are_the_rows_pynenc_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours.db");
    {
        let b = SqliteBackend::open(&ours).unwrap();
        write_fixture_content(&b, &expected());
    }
    let (_fdir, theirs) = fixture_copy();
    let a = rusqlite::Connection::open(&ours).unwrap();
    let p = rusqlite::Connection::open(&theirs).unwrap();
    for t in TABLES {
        let (mine, pynenc) = (table_rows(&a, t), table_rows(&p, t));
        assert!(!pynenc.is_empty(), "{t}");
        assert_eq!(mine, pynenc, "table {t} differs from what pynenc wrote");
    }
    // Column storage classes match too (TEXT in the BLOB columns, REAL time).
    for (t, col) in [
        ("state_backend_results", "result_data"),
        ("state_backend_history", "history_timestamp"),
        ("state_backend_workflows", "parent_workflow_id"),
        ("state_backend_invocations", "parent_workflow_id"),
        ("state_backend_invocations", "parent_call_id"),
    ] {
        let q = format!("SELECT group_concat(DISTINCT typeof({col})) FROM {t}");
        let mine: String = a.query_row(&q, [], |r| r.get(0)).unwrap();
        let pynenc: String = p.query_row(&q, [], |r| r.get(0)).unwrap();
        assert_eq!(mine, pynenc, "{t}.{col}");
    }
}

#[test]
fn offsets_other_than_utc_are_kept_in_json_and_ordered_by_instant() {
    let dir = tempfile::tempdir().unwrap();
    let b = SqliteBackend::open(dir.path().join("s.db")).unwrap();
    let mut h =
        InvocationHistory::from_value(expected()["invocations"][0]["history"][0].clone()).unwrap();
    h.timestamp = "2025-01-15T14:00:00.100001+02:00"
        .parse::<Timestamp>()
        .unwrap();
    b.add_histories(&[h.clone()]).unwrap();
    let got = b.get_history(&h.invocation_id).unwrap();
    assert_eq!(got, [h]);
    assert!(
        got[0]
            .to_json()
            .contains("\"_timestamp\": \"2025-01-15T14:00:00.100001+02:00\"")
    );
}
