//! `taskstate bench --against CMD`: an external target driven op by op in
//! turn with the engines, over the line protocol of `cli/bench_against.rs`
//! (here a shell script with fixed answers, so its figures are known), and
//! every way such a target can fail as one line, never a panic or a hang.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

mod common;
use common::{assert_one_error_line, stderr, taskstate};

/// The command of `tests/fake_bench_target.sh` as target `name`, logging
/// to `name.log` in `dir`; every `run` is answered with `run_reply`
/// (default: 1,000 items in half a second: 2,000 op/s).
fn fake_target(dir: &Path, name: &str, run_reply: Option<&str>) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake_bench_target.sh");
    let log = dir.join(format!("{name}.log"));
    let mut command = format!("sh '{}' {name} '{}'", script.display(), log.display());
    if let Some(reply) = run_reply {
        command.push_str(&format!(" '{reply}'"));
    }
    command
}

/// The requests target `name` got, in order.
fn requests(dir: &Path, name: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join(format!("{name}.log")))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l.split_once(' ').unwrap().1).unwrap())
        .collect()
}

/// `bench` of memory:// at N = 20, one round of 1 ms ops, against `command`.
fn bench_memory_against(command: &str) -> std::process::Output {
    bench_memory_against_with(&[], command)
}

/// [`bench_memory_against`] with more options.
fn bench_memory_against_with(options: &[&str], command: &str) -> std::process::Output {
    let mut args = vec![
        "bench",
        "--engine",
        "memory://",
        "--n",
        "20",
        "--repeat",
        "1",
        "--min-time-ms",
        "1",
    ];
    args.extend_from_slice(options);
    args.extend_from_slice(&["--against", command]);
    taskstate(&args)
}

#[test]
fn every_engine_is_compared_with_the_external_target() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let fake = fake_target(dir.path(), "fake", None);
    let out = taskstate(&[
        "bench",
        "--n",
        "60",
        "--repeat",
        "2",
        "--min-time-ms",
        "8",
        "--against",
        &fake,
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("memory/fake") && table.contains("sqlite/fake"),
        "{table}"
    );
    assert!(!table.contains("raw"), "no raw baseline runs: {table}");

    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let samples = doc["samples"].as_array().unwrap();
    // 3 targets x 2 rounds x 9 ops, one thread.
    assert_eq!(samples.len(), 3 * 2 * 9);
    let rate = |engine: &str, op: &str, round: u64| {
        samples
            .iter()
            .find(|s| s["engine"] == engine && s["op"] == op && s["round"] == round)
            .unwrap()["ops_per_s"]
            .as_f64()
            .unwrap()
    };
    for s in samples.iter().filter(|s| s["engine"] == "fake") {
        assert_eq!(s["validation"], "ok", "{s}");
        // Writes: whole passes summed until each ran 8 ms, every one
        // answering 1,000 in 0.5 s; reads: 4 slices alike.
        assert_eq!(s["ops_per_s"], 2000.0, "{s}");
    }
    let ratios = doc["ratios"].as_array().unwrap();
    assert_eq!(ratios.len(), 2 * 9);
    for r in ratios {
        assert_eq!(r["baseline"], "fake", "{r}");
        let (engine, op) = (r["engine"].as_str().unwrap(), r["op"].as_str().unwrap());
        let per_round: Vec<f64> = r["per_round"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let want = [rate(engine, op, 0) / 2000.0, rate(engine, op, 1) / 2000.0];
        assert_eq!(per_round.len(), 2, "{r}");
        for (got, want) in per_round.iter().zip(want) {
            assert!((got / want - 1.0).abs() < 1e-9, "{r}: {want}");
        }
    }

    // The protocol as the target saw it: greeted once with the size; every
    // store opened is closed; writes ask for one pass, reads for a slice of
    // the 8 ms (4 slices each, alternating with the engines').
    let log = requests(dir.path(), "fake");
    assert_eq!(log[0], serde_json::json!({"cmd": "hello", "n": 60}));
    let count = |cmd: &str| log.iter().filter(|r| r["cmd"] == cmd).count();
    assert_eq!(count("hello"), 1);
    assert!(count("open") >= 2, "{log:?}");
    assert_eq!(count("open"), count("close"));
    assert_eq!(count("validate"), count("open"));
    let runs: Vec<&serde_json::Value> = log.iter().filter(|r| r["cmd"] == "run").collect();
    for op in ["get_invocation", "iter_history_in_timerange"] {
        let of_op: Vec<_> = runs.iter().filter(|r| r["op"] == op).collect();
        assert_eq!(of_op.len(), 2 * 4, "{op}: {of_op:?}");
        assert!(of_op.iter().all(|r| r["min_time"] == 0.002), "{of_op:?}");
    }
    // One write pass per store opened, each op once in it.
    assert_eq!(
        runs.iter().filter(|r| r["op"] == "set_result").count(),
        count("open")
    );
}

#[test]
fn a_failing_target_stops_the_bench_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let nonsense = dir.path().join("nonsense.sh");
    std::fs::write(
        &nonsense,
        "read -r line; echo 'not json'; cat > /dev/null\n",
    )
    .unwrap();
    let refuses = dir.path().join("refuses.sh");
    std::fs::write(
        &refuses,
        "read -r line; echo '{\"name\":\"r\"}'; read -r line; echo '{\"fatal\":\"no store today\"}'; cat > /dev/null\n",
    )
    .unwrap();
    let no_name = dir.path().join("no_name.sh");
    std::fs::write(&no_name, "read -r line; echo '{}'; cat > /dev/null\n").unwrap();
    let bad_figures = fake_target(dir.path(), "bad", Some(r#"{"items":10}"#));
    let cases: Vec<(String, &str)> = vec![
        ("exit 3".into(), "it ended (exit status: 3)"),
        (
            "true".into(),
            "--against \"true\": it ended (exit status: 0) at request",
        ),
        (format!("sh {}", nonsense.display()), "is not JSON"),
        (format!("sh {}", refuses.display()), "no store today"),
        (format!("sh {}", no_name.display()), "names no target"),
        (bad_figures, "lacks items or seconds"),
        ("/no/such/program".into(), "--against \"/no/such/program\""),
    ];
    for (command, want) in cases {
        assert_one_error_line(&bench_memory_against(&command), want, &["sh: "], &command);
    }
}

/// A target that stops answering (here: it reads its requests and never
/// replies) stops the bench at `--against-timeout`, with one line, instead
/// of hanging it.
#[test]
fn a_silent_target_times_out_with_one_line() {
    let out = bench_memory_against_with(&["--against-timeout", "1"], "cat > /dev/null");
    assert_one_error_line(
        &out,
        "--against \"cat > /dev/null\": no reply to {\"cmd\":\"hello\",\"n\":20} within 1 s (--against-timeout)",
        &[],
        "a silent target",
    );
}

/// What was wrong with the target's outputs fails the run as any
/// engine's would, naming the target and the op.
#[test]
fn a_target_reporting_wrong_outputs_fails_validation() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = fake_target(
        dir.path(),
        "wrong",
        Some(r#"{"items":1000,"seconds":0.5,"error":"3 results differ"}"#),
    );
    let out = bench_memory_against(&wrong);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.starts_with("taskstate: note:") || err.starts_with("taskstate: error:"));
    assert!(
        err.contains(
            "taskstate: error: validation failed: wrong upsert_invocations (T=1): 3 results differ;"
        ) && err.contains("wrong get_result (T=1): 3 results differ"),
        "{err}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("FAILED (wrong: 3 results differ)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn against_refuses_several_threads() {
    let out = taskstate(&["bench", "--threads", "2", "--n", "10", "--against", "true"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--against measures one thread"),
        "{}",
        stderr(&out)
    );
}
