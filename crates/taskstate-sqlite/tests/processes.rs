//! Safety across OS processes (runs without the libtest harness so this
//! binary can re-invoke itself as the child processes):
//!
//! - `four_processes_write_without_loss`: 4 processes write interleaved
//!   invocations, histories and results into one file while reading it;
//!   every call must succeed (no busy/locked error) and every write must be
//!   there afterwards, history in order.
//! - `sigkill_loses_no_acknowledged_write`: a writer process reports each
//!   acknowledged operation through a pipe and is killed with SIGKILL at a
//!   random moment, 24 times; after each kill the file opens, passes
//!   `PRAGMA integrity_check`, and holds every acknowledged operation.
//!
//! Usage as cargo runs it: `processes [FILTER] [--exact] [--list]`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use taskstate_conformance::data::{child, hist};
use taskstate_core::{InvocationId, InvocationStatus as S, StateBackend, Timestamp};
use taskstate_sqlite::SqliteBackend;

const WRITERS: usize = 4;
const ITERATIONS: usize = 250;
const KILLS: usize = 24;

type Outcome = Result<String, String>;
type NamedTest = (&'static str, fn() -> Outcome);

fn base() -> Timestamp {
    Timestamp::from_micros(1_736_942_400_000_000)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return match run_child(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("child failed: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let tests: [NamedTest; 2] = [
        (
            "four_processes_write_without_loss",
            four_processes_write_without_loss,
        ),
        (
            "sigkill_loses_no_acknowledged_write",
            sigkill_loses_no_acknowledged_write,
        ),
    ];
    if args.iter().any(|a| a == "--list") {
        for (name, _) in tests {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let exact = args.iter().any(|a| a == "--exact");
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let selected: Vec<_> = tests
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
    for (name, test) in selected {
        match test() {
            Ok(summary) => {
                passed += 1;
                println!("test {name} ... ok ({summary})");
            }
            Err(e) => {
                failed += 1;
                println!("test {name} ... FAILED\n  {e}");
            }
        }
    }
    let verdict = if failed == 0 { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {verdict}. {passed} passed; {failed} failed; 0 ignored; 0 measured; {} filtered out\n",
        tests.len() - passed - failed
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn e<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |err| format!("{what}: {err}")
}

fn run_child(args: &[String]) -> Result<(), String> {
    match args {
        [role, db, idx] if role == "writer" => {
            let k: usize = idx.parse().map_err(e("index"))?;
            writer_child(Path::new(db), k)
        }
        [role, db, round] if role == "crasher" => crasher_child(Path::new(db), round),
        _ => Err(format!("bad child arguments {args:?}")),
    }
}

fn writer_child(db: &Path, k: usize) -> Result<(), String> {
    let b = SqliteBackend::open(db).map_err(e("open"))?;
    for i in 0..ITERATIONS {
        let inv = format!("p{k}-{i:04}");
        b.upsert_invocations(&[child(&inv, "m.task", Some("root"), "root")])
            .map_err(e("upsert"))?;
        let t = base().add_micros((i * WRITERS + k) as i64);
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

fn crasher_child(db: &Path, round: &str) -> Result<(), String> {
    let b = SqliteBackend::open(db).map_err(e("open"))?;
    let mut out = std::io::stdout().lock();
    for i in 0.. {
        let inv = format!("k{round}-{i}");
        b.upsert_invocations(&[child(&inv, "m.task", None, &inv)])
            .map_err(e("upsert"))?;
        writeln!(out, "inv {inv}")
            .and_then(|()| out.flush())
            .map_err(e("report"))?;
        b.add_histories(&[hist(&inv, S::Registered, base().add_micros(i))])
            .map_err(e("history"))?;
        writeln!(out, "hist {inv}")
            .and_then(|()| out.flush())
            .map_err(e("report"))?;
        b.set_result(
            &InvocationId::new(inv.as_str()),
            &format!("result of {inv}"),
        )
        .map_err(e("result"))?;
        writeln!(out, "res {inv}")
            .and_then(|()| out.flush())
            .map_err(e("report"))?;
    }
    Ok(())
}

fn spawn_child(args: &[&str], stdout: Stdio) -> Result<std::process::Child, String> {
    let exe = std::env::current_exe().map_err(e("current exe"))?;
    Command::new(exe)
        .arg("--child")
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(e("spawn child"))
}

fn four_processes_write_without_loss() -> Outcome {
    let dir = tempfile::tempdir().map_err(e("tempdir"))?;
    let db = dir.path().join("shared.db");
    let db_str = db.to_string_lossy().into_owned();
    let children: Vec<_> = (0..WRITERS)
        .map(|k| spawn_child(&["writer", &db_str, &k.to_string()], Stdio::null()))
        .collect::<Result<_, _>>()?;
    for (k, mut c) in children.into_iter().enumerate() {
        let status = c.wait().map_err(e("wait"))?;
        if !status.success() {
            return Err(format!(
                "writer {k} failed ({status}): a call returned an error"
            ));
        }
    }
    let b = SqliteBackend::open(&db).map_err(e("open"))?;
    let kids = b
        .get_child_invocations(&InvocationId::new("root"))
        .map_err(e("children"))?;
    if kids.len() != WRITERS * ITERATIONS {
        return Err(format!(
            "{} invocations, expected {}",
            kids.len(),
            WRITERS * ITERATIONS
        ));
    }
    let shared = b
        .get_history(&InvocationId::new("shared"))
        .map_err(e("history"))?;
    if shared.len() != WRITERS * ITERATIONS {
        return Err(format!(
            "{} shared history records, expected {}",
            shared.len(),
            WRITERS * ITERATIONS
        ));
    }
    for (n, h) in shared.iter().enumerate() {
        if h.timestamp != base().add_micros(n as i64) {
            return Err(format!("shared history record {n} is at {}", h.timestamp));
        }
    }
    for k in 0..WRITERS {
        for i in 0..ITERATIONS {
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
    let check = b.integrity_check().map_err(e("integrity"))?;
    if check != ["ok"] {
        return Err(format!("integrity check: {check:?}"));
    }
    Ok(format!(
        "{WRITERS} processes × {ITERATIONS} iterations, {} acknowledged writes verified",
        WRITERS * ITERATIONS * 3
    ))
}

/// xorshift64*: a tiny deterministic generator, seeded from the clock and
/// printed so a failing run can be repeated with TASKSTATE_CRASH_SEED.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn sigkill_loses_no_acknowledged_write() -> Outcome {
    let seed = std::env::var("TASKSTATE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    println!("crash test seed: {seed} (set TASKSTATE_CRASH_SEED to repeat)");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().map_err(e("tempdir"))?;
    let db = dir.path().join("crash.db");
    let db_str = db.to_string_lossy().into_owned();
    let mut acked: Vec<(String, String)> = Vec::new();
    for round in 0..KILLS {
        let target = 1 + (rng.next() % 400) as usize;
        let mut c = spawn_child(&["crasher", &db_str, &round.to_string()], Stdio::piped())?;
        let stdout = c.stdout.take().ok_or("no child stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = 0;
        while seen < target {
            match lines.next() {
                Some(Ok(line)) => {
                    let (op, id) = line
                        .split_once(' ')
                        .ok_or_else(|| format!("bad report {line:?}"))?;
                    acked.push((op.to_owned(), id.to_owned()));
                    seen += 1;
                }
                Some(Err(err)) => return Err(format!("reading child: {err}")),
                None => {
                    return Err(format!(
                        "writer exited early in round {round}: {:?}",
                        c.wait()
                    ));
                }
            }
        }
        c.kill().map_err(e("SIGKILL"))?; // SIGKILL on Unix: no chance to clean up.
        c.wait().map_err(e("wait"))?;

        let b =
            SqliteBackend::open(&db).map_err(|err| format!("open after kill {round}: {err}"))?;
        let check = b.integrity_check().map_err(e("integrity"))?;
        if check != ["ok"] {
            return Err(format!("integrity check after kill {round}: {check:?}"));
        }
        for (op, id) in &acked {
            let inv = InvocationId::new(id.as_str());
            let present = match op.as_str() {
                "inv" => b.get_invocation(&inv).is_ok(),
                "hist" => b.get_history(&inv).map_err(e("history"))?.len() == 1,
                "res" => {
                    b.get_result(&inv).ok().as_deref() == Some(format!("result of {id}").as_str())
                }
                other => return Err(format!("unknown op {other}")),
            };
            if !present {
                return Err(format!("acknowledged {op} of {id} lost after kill {round}"));
            }
        }
    }
    Ok(format!(
        "{KILLS} kills, {} acknowledged operations, 0 lost",
        acked.len()
    ))
}
