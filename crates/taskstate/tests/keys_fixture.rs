//! A database written by real pynenc 0.1.0 with one record under several
//! ids and naive timestamps at UTC+02:00 (`fixtures/pynenc-0.1.0-keys`,
//! see its generate.py): taskstate reads it as pynenc does, and export →
//! import → export and copy to SQLite, to PostgreSQL and back keep every
//! row under its key at its stored time key.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use serde_json::Value;
use taskstate::{InvocationId, Kind, StateBackend, copy, export, open};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/pynenc-0.1.0-keys")
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("expected.json")).unwrap()).unwrap()
}

fn fixture() -> (tempfile::TempDir, Box<dyn StateBackend>) {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("state.db");
    std::fs::copy(dir().join("state.db"), &path).unwrap();
    let b = open(&format!("sqlite://{}", path.display())).unwrap();
    (d, b)
}

fn no_progress() -> impl FnMut(&str, u64, u64) {
    |_, _, _| {}
}

/// For every key pynenc wrote: the records (as JSON values, in order) and
/// the stored time keys, read through `b`.
fn view(b: &dyn StateBackend) -> Vec<(String, Vec<Value>, Vec<f64>)> {
    let exp = expected();
    exp["history"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| {
            let rows = b.get_history_rows(&InvocationId::new(k.as_str())).unwrap();
            (
                k.clone(),
                rows.iter().map(|r| r.record.to_value()).collect(),
                rows.iter().map(|r| r.time_key.seconds()).collect(),
            )
        })
        .collect()
}

fn pynenc_view() -> Vec<(String, Vec<Value>, Vec<f64>)> {
    let exp = expected();
    exp["history"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, h)| {
            let keys = exp["history_timestamps"][k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            (k.clone(), h.as_array().unwrap().clone(), keys)
        })
        .collect()
}

#[test]
fn taskstate_reads_the_keys_fixture_as_pynenc_does() {
    let (_d, b) = fixture();
    let ours = view(b.as_ref());
    assert_eq!(ours, pynenc_view());
    // The case that matters: under inv-a the naive-timestamp "pending" row
    // (its JSON says 12:00Z) sorts before "running" at 11:00Z, by its REAL.
    let (_, a, keys) = &ours[0];
    let statuses: Vec<&str> = a
        .iter()
        .map(|h| h["status_record"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["registered", "pending", "running"]);
    assert!(keys.windows(2).all(|w| w[0] <= w[1]));
    // inv-b and orphan-x hold records whose own id is another invocation's.
    assert_eq!(ours[1].1[0]["invocation_id"], "inv-a");
    assert_eq!(ours[3].1[0]["invocation_id"], "inv-c");
}

#[test]
fn keys_fixture_survives_export_import_export() {
    let (_d, src) = fixture();
    let first = export::export(src.as_ref(), &mut no_progress()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for target in [
        "memory://".to_owned(),
        format!("sqlite://{}", tmp.path().join("import.db").display()),
    ] {
        let b = open(&target).unwrap();
        let summary = export::import(b.as_ref(), &first, false).unwrap();
        assert_eq!(summary.written.get(Kind::History), 10, "{target}");
        assert_eq!(
            export::export(b.as_ref(), &mut no_progress()).unwrap(),
            first,
            "{target}"
        );
        assert_eq!(view(b.as_ref()), pynenc_view(), "{target}");
    }
}

#[test]
fn keys_fixture_copies_to_sqlite_postgres_and_back() {
    let (_d, src) = fixture();
    let first = export::export(src.as_ref(), &mut no_progress()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let to = open(&format!(
        "sqlite://{}",
        tmp.path().join("copy.db").display()
    ))
    .unwrap();
    let counts = copy::copy(src.as_ref(), to.as_ref(), 2, false, &mut no_progress()).unwrap();
    assert_eq!(counts.get(Kind::Invocation), 3);
    assert_eq!(counts.get(Kind::History), 10);
    assert_eq!(view(to.as_ref()), pynenc_view());
    assert_eq!(
        export::export(to.as_ref(), &mut no_progress()).unwrap(),
        first
    );
    let Some((pg, _guard)) = taskstate_postgres::testing::fresh_backend("ts_keys_fx") else {
        return;
    };
    let counts = copy::copy(to.as_ref(), &pg, 3, false, &mut no_progress()).unwrap();
    assert_eq!(counts.get(Kind::History), 10);
    assert_eq!(view(&pg), pynenc_view());
    let back = open(&format!(
        "sqlite://{}",
        tmp.path().join("back.db").display()
    ))
    .unwrap();
    copy::copy(&pg, back.as_ref(), 100, false, &mut no_progress()).unwrap();
    assert_eq!(view(back.as_ref()), pynenc_view());
    assert_eq!(
        export::export(back.as_ref(), &mut no_progress()).unwrap(),
        first
    );
}
