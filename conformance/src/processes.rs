//! Multi-process scenarios for durable engines, run from a test binary
//! without the libtest harness (`harness = false`) so it can re-invoke
//! itself as the child processes.
//!
//! ```no_run
//! // tests/processes.rs of an engine crate, with `harness = false`:
//! use std::process::ExitCode;
//! use taskstate_conformance::processes::{self, Outcome};
//!
//! fn four_writers() -> Outcome {
//!     // create the store, spawn processes::spawn_self(&["writer", …]),
//!     // wait, then processes::verify_writers(&store, 4, 250)
//!     Ok("…".into())
//! }
//!
//! fn child(args: &[String]) -> Result<(), String> {
//!     // open the store named in args, then processes::writer(&store, k, 250)
//!     Ok(())
//! }
//!
//! fn main() -> ExitCode {
//!     processes::main(&[("four_writers", four_writers)], child)
//! }
//! ```

use std::process::{Child, Command, ExitCode, Stdio};

use taskstate_core::{InvocationId, InvocationStatus as S, StateBackend, Timestamp};

use crate::data::{child, hist};

/// What a scenario reports: a summary of what it verified, or the failure.
pub type Outcome = Result<String, String>;

/// A named scenario.
pub type Scenario = (&'static str, fn() -> Outcome);

fn base() -> Timestamp {
    Timestamp::from_micros(1_736_942_400_000_000)
}

fn e<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |err| format!("{what}: {err}")
}

/// The test binary's `main`: runs `child(args)` when invoked as a child
/// (`--child ARGS…`), else the scenarios selected by libtest-style
/// arguments (`FILTER`, `--exact`, `--list`), printing libtest-style lines.
pub fn main(scenarios: &[Scenario], child: fn(&[String]) -> Result<(), String>) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return match child(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("child failed: {err}");
                ExitCode::FAILURE
            }
        };
    }
    if args.iter().any(|a| a == "--list") {
        for (name, _) in scenarios {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let exact = args.iter().any(|a| a == "--exact");
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let selected: Vec<&Scenario> = scenarios
        .iter()
        .filter(|(name, _)| {
            filters.is_empty()
                || filters.iter().any(|f| {
                    if exact {
                        *name == f.as_str()
                    } else {
                        name.contains(f.as_str())
                    }
                })
        })
        .collect();
    println!("\nrunning {} tests", selected.len());
    let (mut passed, mut failed) = (0, 0);
    for (name, scenario) in &selected {
        match scenario() {
            Ok(summary) => {
                passed += 1;
                println!("test {name} ... ok ({summary})");
            }
            Err(err) => {
                failed += 1;
                println!("test {name} ... FAILED\n  {err}");
            }
        }
    }
    let verdict = if failed == 0 { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {verdict}. {passed} passed; {failed} failed; 0 ignored; 0 measured; {} filtered out\n",
        scenarios.len() - selected.len()
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Starts this test binary again as a child with `--child ARGS…`.
pub fn spawn_self(args: &[&str], stdout: Stdio) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(e("current exe"))?;
    Command::new(exe)
        .arg("--child")
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(e("spawn child"))
}

/// Spawns `writers` children with `args(k)` and waits for all; any child
/// that failed (a call returned an error) fails the scenario.
pub fn run_writers(writers: usize, args: impl Fn(usize) -> Vec<String>) -> Result<(), String> {
    let children: Vec<Child> = (0..writers)
        .map(|k| {
            let a = args(k);
            spawn_self(
                &a.iter().map(String::as_str).collect::<Vec<_>>(),
                Stdio::null(),
            )
        })
        .collect::<Result<_, _>>()?;
    for (k, mut c) in children.into_iter().enumerate() {
        let status = c.wait().map_err(e("wait"))?;
        if !status.success() {
            return Err(format!(
                "writer {k} failed ({status}): a call returned an error"
            ));
        }
    }
    Ok(())
}

/// Writer `k` of a multi-process scenario: `iterations` rounds of an
/// invocation upsert, a history record on a shared invocation and one on
/// its own, a result, and every tenth round reads checking history order.
/// Any error ends the child with a failure.
pub fn writer(
    b: &dyn StateBackend,
    k: usize,
    writers: usize,
    iterations: usize,
) -> Result<(), String> {
    for i in 0..iterations {
        let inv = format!("p{k}-{i:04}");
        b.upsert_invocations(&[child(&inv, "m.task", Some("root"), "root")])
            .map_err(e("upsert"))?;
        let t = base().add_micros((i * writers + k) as i64);
        b.add_histories(&[hist("shared", S::Running, t), hist(&inv, S::Registered, t)])
            .map_err(e("add history"))?;
        b.set_result(&InvocationId::new(inv.as_str()), &format!("r{k}-{i}"))
            .map_err(e("set result"))?;
        if i % 10 == 0 {
            let h = b
                .get_history(&InvocationId::new("shared"))
                .map_err(e("read history"))?;
            if !h
                .windows(2)
                .all(|w| w[0].timestamp.key() < w[1].timestamp.key())
            {
                return Err("shared history out of order".into());
            }
            b.get_invocation(&InvocationId::new(inv.as_str()))
                .map_err(e("read back"))?;
        }
    }
    Ok(())
}

/// Checks that every write of `writers` × `iterations` [`writer`] rounds
/// is present, the shared history complete and in order.
pub fn verify_writers(b: &dyn StateBackend, writers: usize, iterations: usize) -> Outcome {
    let total = writers * iterations;
    let kids = b
        .get_child_invocations(&InvocationId::new("root"))
        .map_err(e("children"))?;
    if kids.len() != total {
        return Err(format!("{} invocations, expected {total}", kids.len()));
    }
    let shared = b
        .get_history(&InvocationId::new("shared"))
        .map_err(e("history"))?;
    if shared.len() != total {
        return Err(format!(
            "{} shared history records, expected {total}",
            shared.len()
        ));
    }
    for (n, h) in shared.iter().enumerate() {
        if h.timestamp != base().add_micros(n as i64) {
            return Err(format!("shared history record {n} is at {}", h.timestamp));
        }
    }
    for k in 0..writers {
        for i in 0..iterations {
            let id = InvocationId::new(format!("p{k}-{i:04}"));
            let r = b.get_result(&id).map_err(e("result"))?;
            if r != format!("r{k}-{i}") {
                return Err(format!("result of {id} is {r:?}"));
            }
            if b.get_history(&id).map_err(e("history"))?.len() != 1 {
                return Err(format!("history of {id} missing"));
            }
        }
    }
    Ok(format!(
        "{writers} processes × {iterations} iterations, {} acknowledged writes verified",
        total * 3
    ))
}
