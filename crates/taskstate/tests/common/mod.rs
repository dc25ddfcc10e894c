//! What the tests of the `taskstate` binary share: running it, its
//! stderr, and a private copy of the pynenc fixture.

// Each test binary uses its own subset.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs the binary with `args`.
pub fn taskstate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_taskstate"))
        .args(args)
        .output()
        .unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A copy of the pynenc 0.1.0 fixture in a temp dir (opening the original
/// would create its `-wal`/`-shm` beside it).
pub fn fixture_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let src =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/pynenc-0.1.0/state.db");
    std::fs::copy(src, &path).unwrap();
    (dir, path)
}

/// The overview's invocations per latest status, summed (`/api/overview`).
pub fn status_total(overview: &serde_json::Value) -> u64 {
    overview["figures"]["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_u64().unwrap())
        .sum()
}

/// `out` failed with exactly one `taskstate: error:` line on stderr (notes
/// and lines starting with one of `ignore` aside) containing `want`, and no
/// panic; `what` names the case in messages.
pub fn assert_one_error_line(out: &Output, want: &str, ignore: &[&str], what: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "{what}: succeeded");
    assert!(!err.contains("panicked"), "{what}: {err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("taskstate: note:") && !ignore.iter().any(|p| l.starts_with(p)))
        .collect();
    assert_eq!(lines.len(), 1, "{what}: {err}");
    assert!(lines[0].starts_with("taskstate: error: "), "{what}: {err}");
    assert!(lines[0].contains(want), "{what}: {err}");
}
