//! `taskstate prune` on the file real pynenc 0.1.0 wrote: a dry run changes
//! nothing and predicts the real run; the real run removes whole trees and
//! leaves every other row as it was; bad requests are one line on stderr.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Output;

mod common;
use common::{fixture_copy, stderr, taskstate};

use taskstate::{InvocationId, Kind, Row};

/// A copy of the pynenc fixture and its URL.
fn fixture_store() -> (tempfile::TempDir, PathBuf, String) {
    let (dir, path) = fixture_copy();
    let url = format!("sqlite://{}", path.display());
    (dir, path, url)
}

/// `prune URL --older-than 0s --dry-run --json`: every record of the
/// fixture is from 2025, so a cutoff of now covers them all.
fn dry_run_now(url: &str) -> serde_json::Value {
    json_of(&taskstate(&[
        "prune",
        url,
        "--older-than",
        "0s",
        "--dry-run",
        "--json",
    ]))
}

/// Every row of the store, read-only.
fn rows(url: &str) -> Vec<Row> {
    let b = taskstate::open_read_only(url).unwrap();
    let mut snap = b.snapshot().unwrap();
    let mut out = Vec::new();
    for kind in Kind::ALL {
        let mut after = None;
        loop {
            let page = snap.page(kind, after.as_ref(), 100).unwrap();
            out.extend(page.items);
            match page.next {
                Some(c) => after = Some(c),
                None => break,
            }
        }
    }
    out
}

/// The invocation ids a row names (its key, its links).
fn ids_of(row: &Row) -> Vec<InvocationId> {
    match row {
        Row::Invocation(p) => {
            let inv = &p.0;
            let mut v = vec![inv.invocation_id.clone(), inv.workflow.workflow_id.clone()];
            v.extend(inv.parent_invocation_id.iter().cloned());
            v.extend(inv.workflow.parent_workflow_id.iter().cloned());
            v
        }
        Row::History(k, _) | Row::Result(k, _) | Row::Exception(k, _) => vec![k.clone()],
        Row::WorkflowRun(w) => {
            let mut v = vec![w.workflow_id.clone()];
            v.extend(w.parent_workflow_id.iter().cloned());
            v
        }
        Row::SubInvocation(w, s) => vec![w.clone(), s.clone()],
        Row::WorkflowData(w, _, _) => vec![w.clone()],
        Row::AppInfo(_) | Row::RunnerContext(..) => Vec::new(),
    }
}

fn json_of(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn prune_of_the_pynenc_file_removes_whole_trees_and_nothing_else() {
    let (_dir, path, url) = fixture_store();
    // As pynenc wrote it, both trees of the fixture hold live invocations
    // (running, paused, pending...): nothing is expired.
    let untouched = dry_run_now(&url);
    assert_eq!(untouched["would_delete"]["trees"], 0);
    assert_eq!(untouched["kept_trees"], 2);
    finish_the_order_workflow(&path);
    let before = rows(&url);
    let bytes = std::fs::read(&path).unwrap();
    let dry = dry_run_now(&url);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "a dry run wrote the file"
    );
    assert!(doc_counts(&dry, "would_delete")["trees"].as_u64() > Some(0));
    assert_eq!(dry["dry_run"], true);
    let real = json_of(&taskstate(&["prune", &url, "--older-than", "0s", "--json"]));
    assert_eq!(
        doc_counts(&real, "deleted"),
        doc_counts(&dry, "would_delete")
    );
    assert_eq!(real["dry_run"], false);
    let after = rows(&url);

    // Rows only went away; what is left is unchanged.
    assert!(after.iter().all(|r| before.contains(r)));
    let gone: Vec<&Row> = before.iter().filter(|r| !after.contains(r)).collect();
    let gone_ids: BTreeSet<InvocationId> = gone
        .iter()
        .filter(|r| matches!(r, Row::Invocation(_)))
        .flat_map(|r| ids_of(r).into_iter().take(1))
        .collect();
    let deleted = &real["deleted"];
    assert_eq!(deleted["invocations"], gone_ids.len() as u64);
    assert_eq!(gone_ids.len(), 7, "the order workflow's tree");
    assert_eq!(deleted["trees"], 1);
    let count = |kind: Kind| gone.iter().filter(|r| r.kind() == kind).count() as u64;
    assert_eq!(deleted["history"], count(Kind::History));
    assert_eq!(deleted["results"], count(Kind::Result));
    assert_eq!(deleted["exceptions"], count(Kind::Exception));
    assert_eq!(deleted["workflow_runs"], count(Kind::WorkflowRun));
    assert_eq!(deleted["sub_invocations"], count(Kind::SubInvocation));
    assert_eq!(deleted["workflow_data"], count(Kind::WorkflowData));
    assert_eq!(count(Kind::AppInfo) + count(Kind::RunnerContext), 0);
    // Whole trees: no row left names a removed invocation.
    for r in &after {
        for id in ids_of(r) {
            assert!(!gone_ids.contains(&id), "{r:?} names removed {id}");
        }
    }
    // Whatever is left is live: a second run finds nothing.
    let again = json_of(&taskstate(&["prune", &url, "--older-than", "0s", "--json"]));
    assert_eq!(again["deleted"]["trees"], 0);
    let b = taskstate::sqlite::SqliteBackend::open(&path).unwrap();
    assert_eq!(b.integrity_check().unwrap(), ["ok"]);
}

/// Ends every live invocation of the fixture's order workflow (rooted at
/// `0c5e…`, with its `charge_card` sub-workflow) with `success`, a second
/// after its last record, so that tree expires and the report tree stays.
fn finish_the_order_workflow(path: &std::path::Path) {
    use taskstate::{InvocationStatus, StateBackend as _};
    let b = taskstate::sqlite::SqliteBackend::open(path).unwrap();
    let root = InvocationId::new("0c5e7b1a-3f42-4d8e-a915-6b2f0e9d1a01");
    let sub = InvocationId::new("4092bf5e-7386-41c2-a359-af6342d15e05");
    let mut ids = b.get_invocation_ids_by_workflow(Some(&root), None).unwrap();
    ids.extend(b.get_invocation_ids_by_workflow(Some(&sub), None).unwrap());
    assert_eq!(ids.len(), 7);
    for id in ids {
        let mut last = b.get_history(&id).unwrap().pop().unwrap();
        if !last.status_record.status.is_final() {
            last.timestamp = last.timestamp.add_micros(1_000_000);
            last.status_record.status = InvocationStatus::Success;
            last.status_record.timestamp = last.timestamp;
            b.add_histories(&[last]).unwrap();
        }
    }
}

fn doc_counts(doc: &serde_json::Value, key: &str) -> serde_json::Value {
    let c = doc[key].clone();
    assert!(c["trees"].is_u64(), "{doc}");
    c
}

#[test]
fn prune_summary_and_vacuum_on_a_terminal_less_run() {
    let (_dir, _path, url) = fixture_store();
    let out = taskstate(&["prune", &url, "--before", "2100-01-01", "--vacuum"]);
    // 2100 is in the future: refused before anything is opened.
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is in the future"),
        "{}",
        stderr(&out)
    );
    let out = taskstate(&[
        "prune",
        &url,
        "--before",
        "2026-01-01T00:00:00Z",
        "--vacuum",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("deleted state that ended at or before 2026-01-01T00:00:00+00:00"),
        "{text}"
    );
    assert!(text.contains("after VACUUM"), "{text}");
    assert!(
        out.stderr.is_empty(),
        "no progress bar off a terminal: {}",
        stderr(&out)
    );
}

#[test]
fn prune_refuses_bad_requests_in_one_line() {
    let (dir, _path, url) = fixture_store();
    let missing = format!("sqlite://{}", dir.path().join("none.db").display());
    let cases: [(&[&str], i32, &str); 6] = [
        (&["prune", &url], 2, "--older-than"),
        (
            &["prune", &url, "--older-than", "30", "--json"],
            2,
            "no unit",
        ),
        (
            &[
                "prune",
                &url,
                "--older-than",
                "1d",
                "--before",
                "2025-01-01",
            ],
            2,
            "cannot be used",
        ),
        (
            &["prune", &url, "--older-than", "1d", "--chunk", "0"],
            2,
            "out of range",
        ),
        (
            &["prune", &url, "--older-than", "1d", "--dry-run", "--vacuum"],
            2,
            "cannot be used",
        ),
        (
            &["prune", &missing, "--older-than", "1d"],
            1,
            "no such store",
        ),
    ];
    for (args, code, says) in cases {
        let out = taskstate(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
    assert!(
        !dir.path().join("none.db").exists(),
        "a prune created a store"
    );
}
