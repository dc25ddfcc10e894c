//! The retention benchmark (`taskstate bench prune`): a store of `n`
//! invocations, most of them finished long ago, pruned while a writer
//! keeps calling `add_histories`; what it measures is the prune's time and
//! rate and the writer's latency meanwhile (SPEC §10: writers wait for one
//! chunk, never for the whole prune).
//!
//! The store: trees of one plain task (80 %) or of a workflow root with
//! four children (its run, sub-invocation links and one data value),
//! written oldest first. Each
//! invocation has four history rows (registered, pending, running, then
//! success — or, for 5 %, failed with an exception instead of a result).
//! A tree is *expired* (finished 40 to 100 days before the run) with
//! probability `expired`; the others finished in the last 10 days, except
//! one in ten, whose last row is `running` and 45 days old: live state
//! behind the cutoff, examined and kept.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use taskstate_core::{
    CallDTO, InvocationDTO, InvocationHistory, InvocationId, InvocationStatus,
    InvocationStatusRecord, PruneCounts, PruneOptions, Result, Row, RunnerId, SerializedArguments,
    StateBackend, StoredHistory, TaskId, Timestamp, WorkflowIdentity,
};

use super::workload::{Rng, TASKS};

const DAY: i64 = 86_400_000_000;

/// The store to build.
#[derive(Clone, Copy, Debug)]
pub struct RetentionStore {
    /// Invocations in all.
    pub invocations: usize,
    /// Share of trees finished long before the cutoff (0..=1).
    pub expired: f64,
    /// Seed of ids and ages.
    pub seed: u64,
}

/// What was written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filled {
    /// Trees written.
    pub trees: u64,
    /// Of which expired.
    pub expired_trees: u64,
    /// Invocations written.
    pub invocations: u64,
    /// Of which in expired trees.
    pub expired_invocations: u64,
    /// Rows written (every kind).
    pub rows: u64,
}

fn record(inv: &InvocationId, status: InvocationStatus, at: Timestamp) -> InvocationHistory {
    InvocationHistory {
        invocation_id: inv.clone(),
        timestamp: at,
        status_record: InvocationStatusRecord {
            status,
            runner_id: (status != InvocationStatus::Registered)
                .then(|| RunnerId::new("bench-runner-0001")),
            timestamp: at,
        },
        runner_context_id: RunnerId::new("bench-runner-0001"),
        registered_by_inv_id: None,
    }
}

fn task(i: usize) -> Result<TaskId> {
    TASKS[i % TASKS.len()]
        .parse()
        .map_err(|e| taskstate_core::Error::invalid(format!("bench task: {e}")))
}

/// Rows of one invocation ending at `end` (its last row), in workflow `wf`.
fn invocation_rows(
    out: &mut Vec<Row>,
    id: &InvocationId,
    parent: Option<&InvocationId>,
    wf: &WorkflowIdentity,
    end: Timestamp,
    last: InvocationStatus,
    n: usize,
) -> Result<()> {
    let call = CallDTO::new(
        task(n)?,
        SerializedArguments::from_pairs([("order_id", format!("{n}"))]),
    );
    out.push(Row::Invocation(Box::new((
        InvocationDTO {
            invocation_id: id.clone(),
            call_id: call.call_id.clone(),
            workflow: wf.clone(),
            parent_invocation_id: parent.cloned(),
        },
        call,
    ))));
    let steps: &[InvocationStatus] = if last == InvocationStatus::Running {
        &[InvocationStatus::Registered, InvocationStatus::Pending]
    } else {
        &[
            InvocationStatus::Registered,
            InvocationStatus::Pending,
            InvocationStatus::Running,
        ]
    };
    let start = end.add_micros(-(steps.len() as i64) * 1000);
    for (k, s) in steps.iter().chain([&last]).enumerate() {
        let at = start.add_micros(k as i64 * 1000);
        out.push(Row::History(
            id.clone(),
            StoredHistory {
                record: record(id, *s, at),
                time_key: at.key(),
            },
        ));
    }
    match last {
        InvocationStatus::Success => out.push(Row::Result(id.clone(), format!("{n}"))),
        InvocationStatus::Failed => out.push(Row::Exception(
            id.clone(),
            r#"{"error_name": "ValueError", "pynenc_error": false, "error_data": "{}"}"#.into(),
        )),
        _ => {}
    }
    Ok(())
}

/// One tree to write: its size, when its last row is, and what it is.
struct Plan {
    size: usize,
    end: Timestamp,
    expired: bool,
    live: bool,
    /// Seed of its ids and outcomes.
    seed: u64,
}

/// The trees of the store, oldest first.
fn plan(spec: &RetentionStore, now: Timestamp) -> Vec<Plan> {
    let mut rng = Rng(spec.seed | 1);
    let mut unit = || (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
    let mut plans = Vec::new();
    let mut planned = 0;
    while planned < spec.invocations {
        let workflow = spec.invocations - planned >= 5 && unit() < 0.2;
        let size = if workflow { 5 } else { 1 };
        let expired = unit() < spec.expired;
        let live = !expired && unit() < 0.1;
        let age = if expired {
            40 * DAY + (unit() * 60.0 * DAY as f64) as i64
        } else if live {
            45 * DAY
        } else {
            (unit() * 10.0 * DAY as f64) as i64
        };
        plans.push(Plan {
            size,
            end: now.add_micros(-age),
            expired,
            live,
            seed: (unit() * u64::MAX as f64) as u64 | 1,
        });
        planned += size;
    }
    plans.sort_by_key(|p| p.end.micros());
    plans
}

/// Writes the store through `write_rows` in batches, oldest trees first
/// (a task system writes in time order, so rows of one age are neighbours
/// in the history table and its time index; ids are random uuids, so the
/// id-keyed indexes are not), reporting `(invocations written, of)` after
/// each batch.
pub fn fill(
    b: &dyn StateBackend,
    spec: &RetentionStore,
    now: Timestamp,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Filled> {
    let mut filled = Filled::default();
    let mut batch: Vec<Row> = Vec::with_capacity(12_000);
    let total = spec.invocations as u64;
    for tree in plan(spec, now) {
        let mut rng = Rng(tree.seed);
        let workflow = tree.size > 1;
        let root = InvocationId::new(rng.uuid4());
        let wf = WorkflowIdentity {
            workflow_id: root.clone(),
            workflow_type: task(filled.invocations as usize)?,
            parent_workflow_id: None,
        };
        for k in 0..tree.size {
            let n = filled.invocations as usize + k;
            let id = if k == 0 {
                root.clone()
            } else {
                InvocationId::new(rng.uuid4())
            };
            let last = if tree.live && k + 1 == tree.size {
                InvocationStatus::Running
            } else if rng.next() % 20 == 0 {
                InvocationStatus::Failed
            } else {
                InvocationStatus::Success
            };
            let parent = (k > 0).then_some(&root);
            invocation_rows(
                &mut batch,
                &id,
                parent,
                &wf,
                tree.end.add_micros(k as i64 * 10_000),
                last,
                n,
            )?;
            if workflow && k > 0 {
                batch.push(Row::SubInvocation(root.clone(), id.clone()));
            }
        }
        if workflow {
            batch.push(Row::WorkflowRun(wf.clone()));
            batch.push(Row::WorkflowData(
                root.clone(),
                "step".into(),
                "\"done\"".into(),
            ));
        }
        filled.trees += 1;
        filled.invocations += tree.size as u64;
        if tree.expired {
            filled.expired_trees += 1;
            filled.expired_invocations += tree.size as u64;
        }
        if batch.len() >= 10_000 {
            filled.rows += batch.len() as u64;
            b.write_rows(&batch)?;
            batch.clear();
            progress(filled.invocations, total);
        }
    }
    filled.rows += batch.len() as u64;
    b.write_rows(&batch)?;
    progress(filled.invocations, total);
    Ok(filled)
}

/// Latencies of the concurrent writer's calls.
#[derive(Clone, Debug, Default)]
pub struct WriterLatency {
    /// Every call's latency, ascending.
    pub sorted: Vec<Duration>,
    /// Calls that failed.
    pub errors: u64,
}

impl WriterLatency {
    /// The `q` quantile (0..=1) of the latencies, nearest rank.
    #[must_use]
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        nearest_rank(&self.sorted, q)
    }
}

/// The `q` quantile (0..=1) of ascending latencies, nearest rank; `None`
/// when there are none.
#[must_use]
pub fn nearest_rank(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// One measured prune.
#[derive(Clone, Debug)]
pub struct PruneRun {
    /// What went.
    pub counts: PruneCounts,
    /// Trees kept after examination.
    pub kept_trees: u64,
    /// Chunks (transactions).
    pub chunks: u64,
    /// Wall time of the prune.
    pub elapsed: Duration,
    /// The writer's calls during the prune.
    pub writer: WriterLatency,
}

/// Prunes `b` at `cutoff` in chunks of `chunk` while another thread calls
/// `add_histories` (one new record per call) every `interval`, measuring
/// each call.
pub fn prune_under_writes(
    b: &dyn StateBackend,
    cutoff: Timestamp,
    chunk: usize,
    interval: Duration,
    progress: &mut (dyn FnMut(&taskstate_core::PruneProgress) + Send),
) -> Result<PruneRun> {
    let done = AtomicBool::new(false);
    let options = PruneOptions::new(cutoff).chunk(chunk);
    let mut last = None;
    let (result, writer) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut lat = WriterLatency::default();
            let start = Instant::now();
            let mut i: u32 = 0;
            while !done.load(Ordering::Relaxed) {
                let id = InvocationId::new(format!("bench-writer-{i:08}"));
                let rec = record(&id, InvocationStatus::Registered, Timestamp::now());
                let t = Instant::now();
                match b.add_histories(std::slice::from_ref(&rec)) {
                    Ok(()) => lat.sorted.push(t.elapsed()),
                    Err(_) => lat.errors += 1,
                }
                i = i.wrapping_add(1);
                // A steady rate, as workers write; not a wait for anything.
                let next = interval * i;
                if let Some(pause) = next.checked_sub(start.elapsed()) {
                    std::thread::sleep(pause);
                }
            }
            lat
        });
        let started = Instant::now();
        let result = b
            .prune(&options, &mut |p| {
                progress(p);
                last = Some(p.clone());
            })
            .map(|counts| (counts, started.elapsed()));
        done.store(true, Ordering::Relaxed);
        (result, writer.join())
    });
    let (counts, elapsed) = result?;
    let mut writer = writer.map_err(|_| taskstate_core::Error::Storage {
        message: "the bench's writer thread panicked".into(),
        source: None,
    })?;
    writer.sorted.sort_unstable();
    Ok(PruneRun {
        counts,
        kept_trees: last.as_ref().map_or(0, |p| p.kept_trees),
        chunks: last.as_ref().map_or(0, |p| p.chunks),
        elapsed,
        writer,
    })
}

#[cfg(all(test, feature = "memory"))]
mod tests {
    use super::*;

    #[test]
    fn a_small_store_prunes_exactly_its_expired_trees() {
        let b = taskstate_memory::MemoryBackend::new();
        let now = Timestamp::now();
        let spec = RetentionStore {
            invocations: 3000,
            expired: 0.9,
            seed: 7,
        };
        let filled = fill(&b, &spec, now, &mut |_, _| {}).unwrap();
        assert_eq!(filled.invocations, 3000);
        assert!(filled.expired_trees > 0 && filled.expired_trees < filled.trees);
        let run = prune_under_writes(
            &b,
            now.add_micros(-30 * DAY),
            100,
            Duration::from_millis(1),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(run.counts.trees, filled.expired_trees);
        assert_eq!(run.counts.invocations, filled.expired_invocations);
        assert_eq!(run.counts.history, 4 * filled.expired_invocations);
        assert_eq!(
            run.counts.results + run.counts.exceptions,
            filled.expired_invocations
        );
        // What is left: the recent trees and the writer's rows.
        let left = b.get_invocation_ids_by_workflow(None, None).unwrap();
        assert_eq!(left.len() as u64, 3000 - filled.expired_invocations);
        assert!(!run.writer.sorted.is_empty());
        assert_eq!(run.writer.errors, 0);
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let l = WriterLatency {
            sorted: (1..=100).map(Duration::from_millis).collect(),
            errors: 0,
        };
        assert_eq!(l.quantile(0.5), Some(Duration::from_millis(50)));
        assert_eq!(l.quantile(0.99), Some(Duration::from_millis(99)));
        assert_eq!(l.quantile(1.0), Some(Duration::from_millis(100)));
        assert_eq!(WriterLatency::default().quantile(0.5), None);
    }
}
