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
//! - `sigkill_mid_prune_leaves_every_tree_whole_or_gone`: a prune (chunks
//!   of 2 trees) in a child process reports each chunk through a pipe and
//!   is killed with SIGKILL after a random number of them, 12 times; after
//!   each kill the file passes `integrity_check` and every workflow tree is
//!   whole (every row it had) or gone (no row under any of its ids); the
//!   last prune, run to the end, leaves exactly the live trees.
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
            (
                "sigkill_mid_prune_leaves_every_tree_whole_or_gone",
                sigkill_mid_prune_leaves_every_tree_whole_or_gone,
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
        [role, db] if role == "pruner" => pruner_child(Path::new(db)),
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

// ---- a prune killed mid-way ------------------------------------------------

/// Trees of the prune scenario: a root, three children, its run, links and
/// data; every 10th tree has a running child (live, never pruned).
const PRUNE_TREES: usize = 120;

fn tree_ids(t: usize) -> Vec<String> {
    let root = format!("tree-{t:03}");
    let mut ids = vec![root.clone()];
    ids.extend((0..3).map(|k| format!("{root}-child-{k}")));
    ids
}

fn build_prune_store(b: &SqliteBackend) -> Result<(), String> {
    let base = Timestamp::from_micros(1_736_942_400_000_000);
    for t in 0..PRUNE_TREES {
        let ids = tree_ids(t);
        let root = &ids[0];
        let mut pairs = vec![child(root, "m.flow", None, root)];
        for id in &ids[1..] {
            pairs.push(child(id, "m.flow", Some(root), root));
        }
        b.upsert_invocations(&pairs).map_err(e("upsert"))?;
        let wf = InvocationId::new(root.as_str());
        b.store_workflow_run(&taskstate_conformance::data::wf(root, "m.flow", None))
            .map_err(e("run"))?;
        b.set_workflow_data(&wf, "k", "v").map_err(e("data"))?;
        for (k, id) in ids.iter().enumerate() {
            let at = base.add_micros((t * 10 + k) as i64 * 1_000_000);
            let last = if t % 10 == 0 && k == 3 {
                S::Running
            } else {
                S::Success
            };
            b.add_histories(&[
                hist(id, S::Registered, at),
                hist(id, last, at.add_micros(500_000)),
            ])
            .map_err(e("history"))?;
            b.set_result(&InvocationId::new(id.as_str()), "r")
                .map_err(e("result"))?;
            if k > 0 {
                b.store_workflow_sub_invocation(&wf, &InvocationId::new(id.as_str()))
                    .map_err(e("sub"))?;
            }
        }
    }
    Ok(())
}

/// Rows a tree has: 4 invocations, 8 history rows, 4 results, a run, 3
/// links and a data value (21), or none; anything else is half a tree.
fn tree_rows(b: &SqliteBackend, t: usize) -> Result<usize, String> {
    let ids = tree_ids(t);
    let wf = InvocationId::new(ids[0].as_str());
    let mut n = 0;
    for id in &ids {
        let id = InvocationId::new(id.as_str());
        n += usize::from(b.get_invocation(&id).is_ok());
        n += b.get_history(&id).map_err(e("history"))?.len();
        n += usize::from(b.get_result(&id).is_ok());
    }
    n += b
        .get_all_workflow_runs()
        .map_err(e("runs"))?
        .iter()
        .filter(|r| r.workflow_id == wf)
        .count();
    n += b
        .get_workflow_sub_invocations(&wf)
        .map_err(e("subs"))?
        .len();
    n += usize::from(b.get_workflow_data(&wf, "k").map_err(e("data"))?.is_some());
    Ok(n)
}

fn pruner_child(db: &Path) -> Result<(), String> {
    use taskstate_core::PruneOptions;
    let b = SqliteBackend::open(db).map_err(e("open"))?;
    let cutoff = Timestamp::from_micros(1_736_942_400_000_000).add_micros(86_400_000_000);
    let mut out = std::io::stdout().lock();
    let mut failed = None;
    b.prune(&PruneOptions::new(cutoff).chunk(2), &mut |p| {
        if failed.is_none()
            && let Err(err) = writeln!(out, "chunk {}", p.chunks).and_then(|()| out.flush())
        {
            failed = Some(err.to_string());
        }
    })
    .map_err(e("prune"))?;
    failed.map_or(Ok(()), Err)
}

fn sigkill_mid_prune_leaves_every_tree_whole_or_gone() -> Outcome {
    const KILLS: usize = 12;
    let dir = tempfile::tempdir().map_err(e("tempdir"))?;
    let db = dir.path().join("prune.db");
    let db_str = db.to_string_lossy().into_owned();
    build_prune_store(&SqliteBackend::open(&db).map_err(e("open"))?)?;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut killed_after = Vec::new();
    for round in 0..KILLS {
        let target = 1 + (rng.next() % 5) as usize;
        let mut c = processes::spawn_self(&["pruner", &db_str], Stdio::piped())?;
        let stdout = c.stdout.take().ok_or("no child stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = 0;
        while seen < target {
            match lines.next() {
                Some(Ok(_)) => seen += 1,
                Some(Err(err)) => return Err(format!("reading child: {err}")),
                None => break,
            }
        }
        c.kill().map_err(e("SIGKILL"))?;
        c.wait().map_err(e("wait"))?;
        killed_after.push(seen);
        let b =
            SqliteBackend::open(&db).map_err(|err| format!("open after kill {round}: {err}"))?;
        let check = b.integrity_check().map_err(e("integrity"))?;
        if check != ["ok"] {
            return Err(format!("integrity check after kill {round}: {check:?}"));
        }
        for t in 0..PRUNE_TREES {
            let n = tree_rows(&b, t)?;
            if n != 0 && n != 21 {
                return Err(format!(
                    "tree {t} has {n} of its 21 rows after kill {round}"
                ));
            }
            if t % 10 == 0 && n != 21 {
                return Err(format!("live tree {t} lost rows after kill {round}"));
            }
        }
    }
    let b = SqliteBackend::open(&db).map_err(e("final open"))?;
    let gone_before = (0..PRUNE_TREES)
        .filter(|t| tree_rows(&b, *t).is_ok_and(|n| n == 0))
        .count();
    if gone_before == 0 {
        return Err("no chunk committed before the kills".into());
    }
    b.prune(
        &taskstate_core::PruneOptions::new(
            Timestamp::from_micros(1_736_942_400_000_000).add_micros(86_400_000_000),
        ),
        &mut |_| {},
    )
    .map_err(e("final prune"))?;
    for t in 0..PRUNE_TREES {
        let n = tree_rows(&b, t)?;
        let want = if t % 10 == 0 { 21 } else { 0 };
        if n != want {
            return Err(format!(
                "tree {t}: {n} rows after the last prune, want {want}"
            ));
        }
    }
    Ok(format!(
        "{KILLS} kills after {killed_after:?} chunks; {gone_before} of {} expired trees gone before the last prune, every tree whole or gone after each kill",
        PRUNE_TREES - PRUNE_TREES / 10
    ))
}
