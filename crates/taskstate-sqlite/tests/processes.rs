//! Safety across OS processes (runs without the libtest harness so this
//! binary can re-invoke itself as the child processes):
//!
//! - `four_processes_write_without_loss`: 4 processes write interleaved
//!   invocations, histories and results into one file while reading it;
//!   every call must succeed (no busy/locked error) and every write must be
//!   there afterwards, history in order.
//! - `sigkill_loses_no_acknowledged_write`: a writer process reports each
//!   acknowledged operation through a pipe and is killed with SIGKILL at a
//!   random moment, 100 times (`TASKSTATE_CRASH_KILLS` sets another count,
//!   e.g. 1000 locally). Its operations cycle through single and batch
//!   upserts, history records (one record under two keys in a batch),
//!   results, exceptions, and bulk pages (`write_rows` of invocations,
//!   history, results and workflow data in one transaction, as import and
//!   copy write them). After each kill the file opens, passes
//!   `PRAGMA integrity_check` and holds that round's acknowledged
//!   operations; at the end it holds every one.
//!
//! Usage as cargo runs it: `processes [FILTER] [--exact] [--list]`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use taskstate_conformance::data::{child, hist};
use taskstate_conformance::processes::{self, Outcome};
use taskstate_core::{
    HistoryRow, InvocationId, InvocationStatus as S, Row, StateBackend, StoredHistory, Timestamp,
};
use taskstate_sqlite::SqliteBackend;

const WRITERS: usize = 4;
const ITERATIONS: usize = 250;
/// Kills per run unless `TASKSTATE_CRASH_KILLS` says otherwise.
const KILLS: usize = 100;

fn main() -> ExitCode {
    processes::main(
        &[
            (
                "four_processes_write_without_loss",
                four_processes_write_without_loss,
            ),
            (
                "sigkill_loses_no_acknowledged_write",
                sigkill_loses_no_acknowledged_write,
            ),
        ],
        run_child,
    )
}

fn e<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |err| format!("{what}: {err}")
}

fn run_child(args: &[String]) -> Result<(), String> {
    match args {
        [role, db, idx] if role == "writer" => {
            let k: usize = idx.parse().map_err(e("index"))?;
            let b = SqliteBackend::open(Path::new(db)).map_err(e("open"))?;
            processes::writer(&b, k, WRITERS, ITERATIONS)
        }
        [role, db, round] if role == "crasher" => crasher_child(Path::new(db), round),
        _ => Err(format!("bad child arguments {args:?}")),
    }
}

fn crasher_child(db: &Path, round: &str) -> Result<(), String> {
    let b = SqliteBackend::open(db).map_err(e("open"))?;
    let base = Timestamp::from_micros(1_736_942_400_000_000);
    let mut out = std::io::stdout().lock();
    let mut report = |lines: &[String]| -> Result<(), String> {
        for l in lines {
            writeln!(out, "{l}").map_err(e("report"))?;
        }
        out.flush().map_err(e("report"))
    };
    for i in 0.. {
        let inv = format!("k{round}-{i}");
        b.upsert_invocations(&[child(&inv, "m.task", None, &inv)])
            .map_err(e("upsert"))?;
        report(&[format!("inv {inv}")])?;
        b.add_histories(&[hist(&inv, S::Registered, base.add_micros(i))])
            .map_err(e("history"))?;
        report(&[format!("hist {inv}")])?;
        b.set_result(
            &InvocationId::new(inv.as_str()),
            &format!("result of {inv}"),
        )
        .map_err(e("result"))?;
        report(&[format!("res {inv}")])?;
        if i % 3 == 0 {
            // A batch upsert of three, acknowledged together.
            let ids: Vec<String> = (0..3).map(|j| format!("b{round}-{i}-{j}")).collect();
            let batch: Vec<_> = ids.iter().map(|id| child(id, "m.task", None, id)).collect();
            b.upsert_invocations(&batch).map_err(e("batch upsert"))?;
            report(&ids.iter().map(|id| format!("inv {id}")).collect::<Vec<_>>())?;
            // One record under two keys (SPEC §3), in one batch.
            let keys = [
                InvocationId::new(format!("ka{round}-{i}")),
                InvocationId::new(format!("kb{round}-{i}")),
            ];
            let rec = hist(&inv, S::Pending, base.add_micros(i));
            let rows: Vec<HistoryRow<'_>> =
                keys.iter().map(|k| HistoryRow::under(k, &rec)).collect();
            b.add_history_rows(&rows).map_err(e("keyed history"))?;
            report(&keys.iter().map(|k| format!("hist {k}")).collect::<Vec<_>>())?;
            b.set_exception(
                &InvocationId::new(inv.as_str()),
                &format!("exception of {inv}"),
            )
            .map_err(e("exception"))?;
            report(&[format!("exc {inv}")])?;
        }
        if i % 4 == 0 {
            // A bulk page, as import and copy write them: rows of several
            // kinds in one transaction, acknowledged together.
            let ids: Vec<String> = (0..4).map(|j| format!("p{round}-{i}-{j}")).collect();
            let mut rows = Vec::new();
            for id in &ids {
                let key = InvocationId::new(id.as_str());
                rows.push(Row::Invocation(Box::new(child(id, "m.task", None, id))));
                let record = hist(id, S::Running, base.add_micros(i));
                let time_key = record.timestamp.key();
                rows.push(Row::History(
                    key.clone(),
                    StoredHistory { record, time_key },
                ));
                rows.push(Row::Result(key.clone(), format!("result of {id}")));
                rows.push(Row::WorkflowData(key, "page".into(), id.clone()));
            }
            b.write_rows(&rows).map_err(e("bulk page"))?;
            let mut lines = Vec::new();
            for id in &ids {
                for op in ["inv", "hist", "res", "data"] {
                    lines.push(format!("{op} {id}"));
                }
            }
            report(&lines)?;
        }
    }
    Ok(())
}

/// Whether an acknowledged operation is in the store.
fn present(b: &SqliteBackend, op: &str, id: &str) -> Result<bool, String> {
    let inv = InvocationId::new(id);
    Ok(match op {
        "inv" => b.get_invocation(&inv).is_ok(),
        "hist" => b.get_history(&inv).map_err(e("history"))?.len() == 1,
        "res" => b.get_result(&inv).ok().as_deref() == Some(format!("result of {id}").as_str()),
        "exc" => {
            b.get_exception(&inv).ok().as_deref() == Some(format!("exception of {id}").as_str())
        }
        "data" => {
            b.get_workflow_data(&inv, "page")
                .map_err(e("data"))?
                .as_deref()
                == Some(id)
        }
        other => return Err(format!("unknown op {other}")),
    })
}

fn four_processes_write_without_loss() -> Outcome {
    let dir = tempfile::tempdir().map_err(e("tempdir"))?;
    let db = dir.path().join("shared.db");
    let db_str = db.to_string_lossy().into_owned();
    processes::run_writers(WRITERS, |k| {
        vec!["writer".into(), db_str.clone(), k.to_string()]
    })?;
    let b = SqliteBackend::open(&db).map_err(e("open"))?;
    let summary = processes::verify_writers(&b, WRITERS, ITERATIONS)?;
    let check = b.integrity_check().map_err(e("integrity"))?;
    if check != ["ok"] {
        return Err(format!("integrity check: {check:?}"));
    }
    Ok(summary)
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
    let kills = std::env::var("TASKSTATE_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(KILLS);
    println!("crash test seed: {seed} (set TASKSTATE_CRASH_SEED to repeat), {kills} kills");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().map_err(e("tempdir"))?;
    let db = dir.path().join("crash.db");
    let db_str = db.to_string_lossy().into_owned();
    let mut acked: Vec<(String, String)> = Vec::new();
    for round in 0..kills {
        let checked = acked.len();
        let target = 1 + (rng.next() % 150) as usize;
        let mut c =
            processes::spawn_self(&["crasher", &db_str, &round.to_string()], Stdio::piped())?;
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
        // This round's acknowledged operations; all of them at the end.
        for (op, id) in &acked[checked..] {
            if !present(&b, op, id)? {
                return Err(format!("acknowledged {op} of {id} lost after kill {round}"));
            }
        }
    }
    let b = SqliteBackend::open(&db).map_err(e("final open"))?;
    for (op, id) in &acked {
        if !present(&b, op, id)? {
            return Err(format!("acknowledged {op} of {id} lost by the end"));
        }
    }
    Ok(format!(
        "{kills} kills, {} acknowledged operations, 0 lost",
        acked.len()
    ))
}
