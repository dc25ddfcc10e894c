//! The retention benchmark (`taskstate bench prune`): a store of `n`
//! invocations, most of them finished long ago, pruned while a writer
//! keeps calling `add_histories`; what it measures is the prune's time and
//! rate and the writer's latency meanwhile (SPEC §10: writers wait for one
//! chunk, never for the whole prune).
//!
//! The store: trees of one plain task (80 %) or of a workflow root with
//! four children (its run, sub-invocation links and one data value). Each
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

/// Writes the store through `write_rows` in batches, reporting
/// `(invocations written, of)` after each.
pub fn fill(
    b: &dyn StateBackend,
    spec: &RetentionStore,
    now: Timestamp,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Filled> {
    let mut rng = Rng(spec.seed | 1);
    let mut filled = Filled::default();
    let mut batch: Vec<Row> = Vec::with_capacity(12_000);
    let total = spec.invocations as u64;
    while filled.invocations < total {
        let left = total - filled.invocations;
        let workflow = left >= 5 && rng.next() % 100 < 20;
        let size = if workflow { 5 } else { 1 };
        let unit = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        let expired = (rng.next() >> 11) as f64 / ((1u64 << 53) as f64) < spec.expired;
        let live = !expired && rng.next() % 10 == 0;
        let end = if expired {
            now.add_micros(-40 * DAY - (unit * 60.0 * DAY as f64) as i64)
        } else if live {
            now.add_micros(-45 * DAY)
        } else {
            now.add_micros(-(unit * 10.0 * DAY as f64) as i64)
        };
        let root = InvocationId::new(rng.uuid4());
        let wf = WorkflowIdentity {
            workflow_id: root.clone(),
            workflow_type: task(filled.invocations as usize)?,
            parent_workflow_id: None,
        };
        for k in 0..size {
            let n = filled.invocations as usize + k;
            let id = if k == 0 {
                root.clone()
            } else {
                InvocationId::new(rng.uuid4())
            };
            let last = if live && k + 1 == size {
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
                end.add_micros(k as i64 * 10_000),
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
        filled.invocations += size as u64;
        if expired {
            filled.expired_trees += 1;
            filled.expired_invocations += size as u64;
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
        if self.sorted.is_empty() {
            return None;
        }
        let rank = ((q * self.sorted.len() as f64).ceil() as usize).clamp(1, self.sorted.len());
        Some(self.sorted[rank - 1])
    }
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
