//! Export, import and copy against the pynenc fixture database.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use serde_json::Value;
use taskstate::{Kind, StateBackend, copy, export, open};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/pynenc-0.1.0")
}

fn fixture_url() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::copy(fixture_dir().join("state.db"), &path).unwrap();
    let url = format!("sqlite://{}", path.display());
    (dir, url)
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture_dir().join("expected.json")).unwrap())
        .unwrap()
}

fn no_progress() -> impl FnMut(&str, u64, u64) {
    |_, _, _| {}
}

#[test]
fn export_of_the_fixture_matches_expected_json_section_by_section() {
    let (_d, url) = fixture_url();
    let b = open(&url).unwrap();
    let doc = export::export(b.as_ref(), &mut no_progress()).unwrap();
    let exp = expected();
    assert_eq!(doc["format"], "taskstate-export/1");
    let mut invs = exp["invocations"].clone();
    for inv in invs.as_array_mut().unwrap() {
        // Python-specific decoding of the exception: not part of an export.
        inv.as_object_mut().unwrap().remove("exception_decoded");
    }
    assert_eq!(doc["invocations"], invs);
    for section in [
        "orphan_invocation_data",
        "workflow_runs",
        "workflow_sub_invocations",
        "workflow_data",
        "app_infos",
        "runner_contexts",
    ] {
        assert_eq!(doc[section], exp[section], "section {section}");
    }
    let keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "format",
            "invocations",
            "orphan_invocation_data",
            "workflow_runs",
            "workflow_sub_invocations",
            "workflow_data",
            "app_infos",
            "runner_contexts"
        ]
    );
}

#[test]
fn export_import_export_is_identical_on_every_engine() {
    let (_d, url) = fixture_url();
    let src = open(&url).unwrap();
    let first = export::export(src.as_ref(), &mut no_progress()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for target in [
        "memory://".to_owned(),
        "sqlite://:memory:".to_owned(),
        format!("sqlite://{}", dir.path().join("copy.db").display()),
    ] {
        let b = open(&target).unwrap();
        let summary = export::import(b.as_ref(), &first, false).unwrap();
        assert_eq!(summary.written.get(Kind::Invocation), 12);
        assert_eq!(summary.written.get(Kind::History), 43);
        let second = export::export(b.as_ref(), &mut no_progress()).unwrap();
        assert_eq!(second, first, "round trip through {target}");
        // Text form too, as the CLI writes it.
        assert_eq!(
            serde_json::to_string_pretty(&second).unwrap(),
            serde_json::to_string_pretty(&first).unwrap()
        );
        // A second import without merge is refused and changes nothing.
        let err = export::import(b.as_ref(), &first, false).unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
        export::import(b.as_ref(), &first, true).unwrap();
        assert_eq!(
            export::export(b.as_ref(), &mut no_progress()).unwrap(),
            first
        );
    }
}

#[test]
fn orphans_round_trip() {
    let a = open("memory://").unwrap();
    taskstate_conformance::cases::populate_everything(a.as_ref());
    let doc = export::export(a.as_ref(), &mut no_progress()).unwrap();
    assert_eq!(
        doc["orphan_invocation_data"]["orphan"]["history"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let b = open("sqlite://:memory:").unwrap();
    export::import(b.as_ref(), &doc, false).unwrap();
    assert_eq!(export::export(b.as_ref(), &mut no_progress()).unwrap(), doc);
}

#[test]
fn bad_documents_are_refused_before_writing() {
    let b = open("memory://").unwrap();
    let e = export::import(b.as_ref(), &serde_json::json!({"invocations": []}), false).unwrap_err();
    assert!(e.to_string().contains("not a taskstate export"), "{e}");
    let mut doc = export::export(b.as_ref(), &mut no_progress()).unwrap();
    let entry = |call: &str| {
        serde_json::json!({
            "invocation_id": "x", "call_id_key": call, "serialized_arguments": {},
            "workflow": {"workflow_id": "x", "workflow_type_key": "m.t"}
        })
    };
    doc["invocations"] = serde_json::json!([entry("nocolon")]);
    let e = export::import(b.as_ref(), &doc, false).unwrap_err();
    assert!(e.to_string().contains("invocation \"x\""), "{e}");
    // An entry of the wrong shape is named by position.
    doc["invocations"] = serde_json::json!([entry("m.t:abc"), {"invocation_id": "y"}]);
    let e = export::import(b.as_ref(), &doc, false).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("invocation entry 2: missing field `call_id_key` at line 1 column"),
        "{msg}"
    );
    // Not JSON at all, or cut short.
    let e = export::import_from(
        b.as_ref(),
        || Ok(&b"{\"format\": \"taskstate-export/1\", \"invoc"[..]),
        false,
        &mut no_progress(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("not JSON (or is cut short)"), "{e}");
    assert!(export::is_empty(b.as_ref()).unwrap());
}

#[test]
fn copy_sqlite_to_memory_and_back_verifies_counts() {
    let (_d, url) = fixture_url();
    let src = open(&url).unwrap();
    let mem = open("memory://").unwrap();
    let mut phases = Vec::new();
    let counts = copy::copy(
        src.as_ref(),
        mem.as_ref(),
        5,
        false,
        &mut |p, done, total| {
            phases.push((p.to_owned(), done, total));
        },
    )
    .unwrap();
    assert_eq!(counts.get(Kind::Invocation), 12);
    assert_eq!(counts.get(Kind::History), 43);
    assert_eq!(counts.get(Kind::Result), 4);
    assert_eq!(counts.get(Kind::Exception), 2);
    assert_eq!(counts.get(Kind::WorkflowRun), 3);
    assert_eq!(counts.get(Kind::SubInvocation), 10);
    assert_eq!(counts.get(Kind::WorkflowData), 3);
    assert_eq!(counts.get(Kind::AppInfo), 1);
    assert_eq!(counts.get(Kind::RunnerContext), 2);
    assert_eq!(
        phases
            .iter()
            .rfind(|p| p.0 == "invocations")
            .map(|p| (p.1, p.2)),
        Some((12, 12))
    );
    assert_eq!(copy::counts(mem.as_ref()).unwrap(), counts);
    let a = export::export(src.as_ref(), &mut no_progress()).unwrap();
    let b = export::export(mem.as_ref(), &mut no_progress()).unwrap();
    assert_eq!(a, b);
    // Into a non-empty store: refused unless merging.
    let e = copy::copy(src.as_ref(), mem.as_ref(), 5, false, &mut no_progress()).unwrap_err();
    assert!(e.to_string().contains("not empty"));
    copy::copy(src.as_ref(), mem.as_ref(), 5, true, &mut no_progress()).unwrap();
    assert_eq!(copy::counts(mem.as_ref()).unwrap(), counts);
}

#[test]
fn inspect_reports_timeline_and_tree() {
    let (_d, url) = fixture_url();
    let b = open(&url).unwrap();
    let s = taskstate::inspect::summary(b.as_ref(), 3).unwrap();
    assert!(s.contains("invocations") && s.contains("12"), "{s}");
    assert!(s.contains("history records") && s.contains("43"), "{s}");
    assert_eq!(
        s.lines().filter(|l| l.starts_with("  2025-")).count(),
        3,
        "{s}"
    );
    let inv = taskstate::InvocationId::new("0c5e7b1a-3f42-4d8e-a915-6b2f0e9d1a01");
    let t = taskstate::inspect::invocation(b.as_ref(), &inv).unwrap();
    assert!(t.contains("timeline (3 records)"), "{t}");
    assert!(t.contains("+1.100001s"), "{t}");
    assert!(t.contains("chain valid: yes"), "{t}");
    let w = taskstate::inspect::workflow(b.as_ref(), &inv).unwrap();
    assert!(w.contains("members (4)"), "{w}");
    assert!(w.contains("sub-workflows (1)"), "{w}");
    assert!(w.contains("order_status"), "{w}");
    let e = taskstate::inspect::invocation(b.as_ref(), &taskstate::InvocationId::new("nope"))
        .unwrap_err();
    assert_eq!(e.kind(), taskstate::ErrorKind::NotFound);
}

#[test]
fn engines_open_by_url_share_one_trait() {
    let engines: Vec<Box<dyn StateBackend>> = vec![
        open("memory://").unwrap(),
        open("sqlite://:memory:").unwrap(),
    ];
    for b in &engines {
        b.set_result(&taskstate::InvocationId::new("x"), "1")
            .unwrap();
        assert_eq!(
            b.get_result(&taskstate::InvocationId::new("x")).unwrap(),
            "1"
        );
    }
}

/// SQLite (the pynenc fixture) → PostgreSQL, verified by counts and by
/// identical export documents. Needs `TASKSTATE_POSTGRES_URL`.
#[cfg(feature = "postgres")]
#[test]
fn copy_fixture_sqlite_to_postgres_and_back() {
    let Some((pg, _guard)) = taskstate_postgres::testing::fresh_backend("ts_copy") else {
        return;
    };
    let (_d, url) = fixture_url();
    let src = open(&url).unwrap();
    let counts = copy::copy(src.as_ref(), &pg, 4, false, &mut no_progress()).unwrap();
    assert_eq!(counts.get(Kind::Invocation), 12);
    assert_eq!(counts.get(Kind::History), 43);
    assert_eq!(copy::counts(&pg).unwrap(), counts);
    let a = export::export(src.as_ref(), &mut no_progress()).unwrap();
    let b = export::export(&pg, &mut no_progress()).unwrap();
    assert_eq!(a, b);
    // And the export of PostgreSQL still matches what pynenc read.
    assert_eq!(b["runner_contexts"], expected()["runner_contexts"]);
    // Back into a new SQLite file: the same document again.
    let dir = tempfile::tempdir().unwrap();
    let back = open(&format!(
        "sqlite://{}",
        dir.path().join("back.db").display()
    ))
    .unwrap();
    copy::copy(&pg, back.as_ref(), 100, false, &mut no_progress()).unwrap();
    assert_eq!(
        export::export(back.as_ref(), &mut no_progress()).unwrap(),
        a
    );
}

/// A store holding one record under several keys (SPEC §3), as pynenc's
/// `_add_histories([a, b, c], record)` writes: an invocation, a stored
/// invocation whose row carries another's JSON, and an orphan key.
fn multi_key_store(b: &dyn StateBackend) {
    use taskstate::{
        CallDTO, HistoryRow, InvocationDTO, InvocationHistory, InvocationId, InvocationStatus,
        InvocationStatusRecord, RunnerId, SerializedArguments, TaskId, Timestamp, WorkflowIdentity,
    };
    let task: TaskId = "app.tasks.work".parse().unwrap();
    let call = CallDTO::new(task.clone(), SerializedArguments::from_pairs([("x", "1")]));
    let (a, k2, orphan) = (
        InvocationId::new("a"),
        InvocationId::new("b"),
        InvocationId::new("zz-orphan"),
    );
    let pairs: Vec<_> = [&a, &k2]
        .into_iter()
        .map(|id| {
            let inv = InvocationDTO {
                invocation_id: id.clone(),
                call_id: call.call_id.clone(),
                workflow: WorkflowIdentity {
                    workflow_id: id.clone(),
                    workflow_type: task.clone(),
                    parent_workflow_id: None,
                },
                parent_invocation_id: None,
            };
            (inv, call.clone())
        })
        .collect();
    b.upsert_invocations(&pairs).unwrap();
    let t = Timestamp::parse("2025-01-15T12:00:00.000001+00:00").unwrap();
    let record = |status, at: Timestamp| InvocationHistory {
        invocation_id: a.clone(),
        timestamp: at,
        status_record: InvocationStatusRecord {
            status,
            runner_id: Some(RunnerId::new("r")),
            timestamp: at,
        },
        runner_context_id: RunnerId::new("r"),
        registered_by_inv_id: None,
    };
    let pending = record(InvocationStatus::Pending, t);
    let running = record(InvocationStatus::Running, t.add_micros(5));
    b.add_history_rows(&[
        HistoryRow::under(&a, &pending),
        HistoryRow::under(&k2, &pending),
        HistoryRow::under(&orphan, &pending),
    ])
    .unwrap();
    b.add_history_rows(&[HistoryRow::under(&k2, &running)])
        .unwrap();
    // A naive-timestamp row as pynenc wrote it east of UTC: its REAL is two
    // hours after the instant its JSON reads as, so it sorts last.
    let naive = record(InvocationStatus::Success, t.add_micros(1));
    let stored_at = taskstate::TimeKey::from_seconds(naive.timestamp.key().seconds() + 7200.0);
    b.add_history_rows(&[HistoryRow::under(&a, &naive).at_time_key(Some(stored_at))])
        .unwrap();
}

/// The statuses and stored time keys of every history row under `key`.
fn history_keys(b: &dyn StateBackend, key: &str) -> Vec<(String, f64)> {
    b.get_history_rows(&taskstate::InvocationId::new(key))
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.record.status_record.status.to_string(),
                r.time_key.seconds(),
            )
        })
        .collect()
}

#[test]
fn multi_key_history_survives_export_import_and_copy() {
    let src = open("memory://").unwrap();
    multi_key_store(src.as_ref());
    let first = export::export(src.as_ref(), &mut no_progress()).unwrap();
    // Every row is listed under its key, with the JSON it was stored with.
    // The naive row sorts last under "a", by its stored key, which the
    // document carries.
    let a_hist = first["invocations"][0]["history"].as_array().unwrap();
    assert_eq!(a_hist.len(), 2);
    assert_eq!(a_hist[1]["status_record"]["status"], "success");
    assert!(a_hist[1]["taskstate_time_key"].is_f64());
    assert!(a_hist[0].get("taskstate_time_key").is_none());
    let want_a = history_keys(src.as_ref(), "a");
    assert_eq!(want_a[1].0, "success");
    let b_hist = &first["invocations"][1]["history"];
    assert_eq!(first["invocations"][1]["invocation_id"], "b");
    assert_eq!(b_hist.as_array().unwrap().len(), 2);
    assert_eq!(b_hist[0]["invocation_id"], "a");
    assert_eq!(
        first["orphan_invocation_data"]["zz-orphan"]["history"][0]["invocation_id"],
        "a"
    );
    let dir = tempfile::tempdir().unwrap();
    for target in [
        "memory://".to_owned(),
        format!("sqlite://{}", dir.path().join("import.db").display()),
    ] {
        let b = open(&target).unwrap();
        let summary = export::import(b.as_ref(), &first, false).unwrap();
        assert_eq!(summary.written.get(Kind::History), 5, "{target}");
        let again = export::export(b.as_ref(), &mut no_progress()).unwrap();
        assert_eq!(again, first, "export → import → export on {target}");
        assert_eq!(history_keys(b.as_ref(), "a"), want_a, "{target}");
    }
    let to = open(&format!(
        "sqlite://{}",
        dir.path().join("copy.db").display()
    ))
    .unwrap();
    let counts = copy::copy(src.as_ref(), to.as_ref(), 1, false, &mut no_progress()).unwrap();
    assert_eq!(counts.get(Kind::History), 5);
    assert_eq!(
        export::export(to.as_ref(), &mut no_progress()).unwrap(),
        first
    );
    assert_eq!(history_keys(to.as_ref(), "a"), want_a);
    // To PostgreSQL and back to SQLite: every key and every order kept.
    let Some((pg, _guard)) = taskstate_postgres::testing::fresh_backend("ts_keys") else {
        return;
    };
    copy::copy(to.as_ref(), &pg, 2, false, &mut no_progress()).unwrap();
    assert_eq!(export::export(&pg, &mut no_progress()).unwrap(), first);
    assert_eq!(history_keys(&pg, "a"), want_a);
    let back = open(&format!(
        "sqlite://{}",
        dir.path().join("back.db").display()
    ))
    .unwrap();
    copy::copy(&pg, back.as_ref(), 3, false, &mut no_progress()).unwrap();
    assert_eq!(
        export::export(back.as_ref(), &mut no_progress()).unwrap(),
        first
    );
    assert_eq!(
        history_keys(back.as_ref(), "b"),
        history_keys(src.as_ref(), "b")
    );
}

/// A document that breaks an input rule anywhere -- here a timestamp
/// pynenc cannot read (year 0 in UTC), in the last invocation's history --
/// is refused before anything is written (SPEC §6, §9).
#[test]
fn a_document_breaking_a_rule_anywhere_is_refused_before_writing() {
    let (_d, url) = fixture_url();
    let src = open(&url).unwrap();
    let mut doc = export::export(src.as_ref(), &mut no_progress()).unwrap();
    let invs = doc["invocations"].as_array_mut().unwrap();
    let last = invs.last_mut().unwrap();
    last["history"][0]["_timestamp"] = "0001-01-01T00:30:00+01:00".into();
    let b = open("memory://").unwrap();
    let e = export::import(b.as_ref(), &doc, false).unwrap_err();
    assert!(e.to_string().contains("years 1-9999"), "{e}");
    assert!(export::is_empty(b.as_ref()).unwrap(), "nothing was written");
    assert_eq!(copy::counts(b.as_ref()).unwrap(), copy::Counts::default());
}
