//! The reference workload of SPEC §7 and its runner: the same invocations,
//! histories and results the Python reference is measured with, timed per
//! operation ([`Op`]) on any engine, plus the raw baselines (the engine's
//! own SQL statements issued directly, one per operation).
//!
//! Every operation's outputs are checked after timing: a result's
//! `validation` is `Ok(())` only if they were all correct.
//!
//! Modules: [`Workload`] (the data), the targets (`BenchTarget`: any engine
//! through the trait, or a raw baseline), and the runner ([`run`]).

use std::fmt;

use serde_json::json;
use taskstate_core::Result;

pub mod retention;
mod target;
mod timing;
mod workload;

#[cfg(feature = "postgres")]
mod raw_postgres;
#[cfg(feature = "sqlite")]
mod raw_sqlite;

#[cfg(feature = "postgres")]
pub use raw_postgres::RawPostgres;
#[cfg(feature = "sqlite")]
pub use raw_sqlite::RawSqlite;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use target::Encoded;
pub use target::{BenchTarget, Read, Scanned, ScannedIds};
pub use timing::machine_scaling;
use timing::{Validation, read_loop, scan_loop, timed_writes, verdict};
pub use workload::Workload;

/// A timed operation of the reference workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `upsert_invocations`, one invocation per call.
    UpsertInvocations,
    /// `add_histories`, one record per call.
    AddHistories,
    /// `set_result`.
    SetResult,
    /// `get_invocation`.
    GetInvocation,
    /// `get_history`.
    GetHistory,
    /// `get_result`.
    GetResult,
    /// `get_child_invocations`.
    GetChildInvocations,
    /// All pages of `invocation_ids_in_timerange`.
    IterInvocationsInTimerange,
    /// All pages of `history_in_timerange`.
    IterHistoryInTimerange,
}

impl Op {
    /// Every operation, in the order they run.
    pub const ALL: [Op; 9] = [
        Op::UpsertInvocations,
        Op::AddHistories,
        Op::SetResult,
        Op::GetInvocation,
        Op::GetHistory,
        Op::GetResult,
        Op::GetChildInvocations,
        Op::IterInvocationsInTimerange,
        Op::IterHistoryInTimerange,
    ];

    /// The write operations (also run with several threads).
    pub const WRITES: [Op; 3] = [Op::UpsertInvocations, Op::AddHistories, Op::SetResult];

    /// The operation's name, as the reference's method is called.
    ///
    /// ```
    /// use taskstate::bench::Op;
    /// assert_eq!(Op::IterHistoryInTimerange.name(), "iter_history_in_timerange");
    /// ```
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Op::UpsertInvocations => "upsert_invocations",
            Op::AddHistories => "add_histories",
            Op::SetResult => "set_result",
            Op::GetInvocation => "get_invocation",
            Op::GetHistory => "get_history",
            Op::GetResult => "get_result",
            Op::GetChildInvocations => "get_child_invocations",
            Op::IterInvocationsInTimerange => "iter_invocations_in_timerange",
            Op::IterHistoryInTimerange => "iter_history_in_timerange",
        }
    }

    /// Whether it writes.
    #[must_use]
    pub fn is_write(self) -> bool {
        Op::WRITES.contains(&self)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// One measured operation.
#[derive(Clone, Debug)]
pub struct OpResult {
    /// Engine name (`memory`, `sqlite`, `raw-sqlite`, or a URL).
    pub engine: String,
    /// The operation.
    pub op: Op,
    /// Items processed.
    pub n: usize,
    /// Threads sharing the engine.
    pub threads: usize,
    /// Wall time.
    pub seconds: f64,
    /// `Ok(())`, or what was wrong with the outputs.
    pub validation: std::result::Result<(), String>,
}

impl OpResult {
    /// Operations per second.
    #[must_use]
    pub fn ops_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.n as f64 / self.seconds
        } else {
            f64::INFINITY
        }
    }

    /// The JSON entry of the `--json` report.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "engine": self.engine,
            "op": self.op.name(),
            "n": self.n,
            "threads": self.threads,
            "seconds": self.seconds,
            "ops_per_s": self.ops_per_s(),
            "validation": match &self.validation {
                Ok(()) => "ok",
                Err(e) => e.as_str(),
            },
        })
    }
}

/// How [`run`] measures.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    /// Threads sharing the target, for the writes and the timed reads.
    pub threads: usize,
    /// Time the read operations (else only the writes are reported; they
    /// are still validated by reading everything back).
    pub reads: bool,
    /// A timed read loop repeats over the workload until it has run at
    /// least this long, so a short loop's noise does not decide a figure.
    pub min_time: std::time::Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            threads: 1,
            reads: true,
            min_time: std::time::Duration::from_millis(200),
        }
    }
}

/// One write of the workload, by item index.
type WriteFn<'a> = dyn Fn(usize) -> Result<()> + Sync + 'a;

/// One checked read of the workload, by item index: whether it came back
/// right.
type ReadFn<'a> = dyn Fn(usize) -> Result<Read> + Sync + 'a;

/// Which operations a pass of [`run`] times, in order: the writes, then
/// (when `options.reads`) the point reads, then — single-threaded passes
/// only — the range scans.
#[must_use]
pub fn pass_ops(options: &RunOptions) -> Vec<Op> {
    Op::ALL
        .into_iter()
        .filter(|op| {
            op.is_write()
                || options.reads
                    && (options.threads <= 1
                        || !matches!(
                            op,
                            Op::IterInvocationsInTimerange | Op::IterHistoryInTimerange
                        ))
        })
        .collect()
}

/// Times one operation of the workload on `target` (writes in one pass
/// with `options.threads` threads; point reads with those threads, each
/// loop lasting at least `options.min_time`; range scans on one thread).
/// A write's validation here covers only its own errors: read everything
/// back afterwards with [`validate_writes`]. Run the writes before the
/// reads, in [`Op::ALL`] order, on an empty store.
pub fn run_op<T: BenchTarget + ?Sized>(
    engine: &str,
    target: &T,
    w: &Workload,
    op: Op,
    options: &RunOptions,
) -> OpResult {
    let n = w.n();
    let threads = options.threads.max(1);
    let min_time = options.min_time.as_secs_f64();
    let result = |items: usize, t: usize, secs: f64, validation: Validation| OpResult {
        engine: engine.to_owned(),
        op,
        n: items,
        threads: t,
        seconds: secs,
        validation,
    };
    let write = |items: usize, f: &WriteFn<'_>| {
        let (secs, validation) = timed_writes(items, threads, f);
        result(items, threads, secs, validation)
    };
    let read = |f: &ReadFn<'_>, what: &str| {
        let matches = |i: usize, got: &Read| target.read_matches(w, op, i, got);
        let (items, secs, v) = read_loop(n, threads, min_time, f, matches, what);
        result(items, threads, secs, v)
    };
    match op {
        Op::UpsertInvocations => write(n, &|i| target.upsert(w, i)),
        Op::AddHistories => write(3 * n, &|r| target.add_history(w, r)),
        Op::SetResult => write(n, &|i| target.set_result(w, i)),
        Op::GetInvocation => read(&|i| target.read_invocation(w, i), "invocations"),
        Op::GetHistory => read(&|i| target.read_history(w, i), "histories"),
        Op::GetResult => read(&|i| target.read_result(w, i), "results"),
        Op::GetChildInvocations => read(&|i| target.read_children(w, i), "child lists"),
        Op::IterInvocationsInTimerange => {
            let want = w.sorted_ids();
            let (items, secs, v) = scan_loop(
                n,
                min_time,
                || target.scan_ids(w),
                |ids| {
                    verdict(ids.matches(&want), || {
                        format!("scan returned {} ids, expected {}", ids.len(), want.len())
                    })
                },
            );
            result(items, 1, secs, v)
        }
        Op::IterHistoryInTimerange => {
            let (items, secs, v) = scan_loop(
                3 * n,
                min_time,
                || target.scan_history(w),
                |recs| {
                    verdict(recs.matches(w), || {
                        format!(
                            "scan returned {} records, expected {} in order",
                            recs.len(),
                            w.histories.len()
                        )
                    })
                },
            );
            result(items, 1, secs, v)
        }
    }
}

/// Reads every write of the workload back (untimed, one thread) and folds
/// the outcome into the write results in `results`: a write is valid only
/// if what it stored reads back equal.
pub fn validate_writes<T: BenchTarget + ?Sized>(
    target: &T,
    w: &Workload,
    results: &mut [OpResult],
) {
    let n = w.n();
    let once = |op: Op, f: &ReadFn<'_>, what: &str| {
        let matches = |i: usize, got: &Read| target.read_matches(w, op, i, got);
        read_loop(n, 1, 0.0, f, matches, what).2
    };
    let v_inv = once(
        Op::GetInvocation,
        &|i| target.read_invocation(w, i),
        "invocations",
    );
    let v_his = once(Op::GetHistory, &|i| target.read_history(w, i), "histories");
    let v_res = once(Op::GetResult, &|i| target.read_result(w, i), "results");
    for r in results.iter_mut().filter(|r| r.op.is_write()) {
        if r.validation.is_ok() {
            r.validation = match r.op {
                Op::UpsertInvocations => v_inv.clone(),
                Op::AddHistories => v_his.clone(),
                _ => v_res.clone(),
            };
        }
    }
}

/// One whole pass on an empty `target`: every operation of
/// [`pass_ops`] in order, the writes validated by reading them back.
pub fn run<T: BenchTarget + ?Sized>(
    engine: &str,
    target: &T,
    w: &Workload,
    options: &RunOptions,
    progress: &mut dyn FnMut(&str),
) -> Vec<OpResult> {
    let mut out = Vec::new();
    for op in pass_ops(options) {
        progress(op.name());
        out.push(run_op(engine, target, w, op, options));
        if op == Op::SetResult {
            progress("reading the writes back");
            validate_writes(target, w, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::workload::{RUNNER, TASKS};
    use super::*;
    use taskstate_core::{RunnerId, StateBackend};

    #[test]
    fn workload_follows_spec_7() {
        let w = Workload::build(120, 7);
        assert_eq!(w.pairs.len(), 120);
        assert_eq!(w.histories.len(), 360);
        // Root of each group of 50.
        let (root, call) = &w.pairs[50];
        assert_eq!(root.parent_invocation_id, None);
        assert_eq!(
            call.call_id.task_id().key(),
            "pynenc_bench.tasks.process_order"
        );
        assert_eq!(root.workflow.workflow_id, root.invocation_id);
        // j = 5 → parent root + 1; task index 1 + i % 3.
        let (inv, call) = &w.pairs[55];
        assert_eq!(
            inv.parent_invocation_id.as_ref(),
            Some(&w.pairs[51].0.invocation_id)
        );
        assert_eq!(call.call_id.task_id().key(), TASKS[1 + 55 % 3]);
        assert_eq!(inv.workflow.workflow_id, w.pairs[50].0.invocation_id);
        let args = &call.serialized_arguments;
        assert_eq!(args.get("order_id"), Some("100055"));
        assert_eq!(args.get("customer"), Some("\"customer-0055\""));
        assert_eq!(
            args.get("items"),
            Some(
                "[{\"sku\": \"SKU-0385\", \"qty\": 1}, {\"sku\": \"SKU-0386\", \"qty\": 2}, {\"sku\": \"SKU-0387\", \"qty\": 3}]"
            )
        );
        assert_eq!(args.get("priority"), Some("\"normal\""));
        assert_eq!(
            w.pairs[60].1.serialized_arguments.get("priority"),
            Some("\"high\"")
        );
        // Histories: registered_by = parent; 10 µs steps.
        let h = &w.histories[3 * 55..3 * 55 + 3];
        assert_eq!(h[0].registered_by_inv_id, inv.parent_invocation_id);
        assert_eq!(h[0].status_record.runner_id, None);
        assert_eq!(
            h[2].status_record.runner_id.as_ref().map(RunnerId::as_str),
            Some(RUNNER)
        );
        assert_eq!(h[1].timestamp.micros() - h[0].timestamp.micros(), 10);
        assert_eq!(
            w.results[55],
            "{\"order_id\": 100055, \"total_cents\": 2054, \"status\": \"charged\"}"
        );
        // 4-ary tree: root's children are j = 1..4.
        assert_eq!(w.children[50].len(), 4);
        // uuid4 shape.
        let id = w.pairs[0].0.invocation_id.as_str();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn run_validates_memory_engine() {
        let w = Workload::build(200, 3);
        let b = taskstate_memory_for_tests();
        let quick = RunOptions {
            min_time: std::time::Duration::ZERO,
            ..RunOptions::default()
        };
        let results = run("memory", b.as_ref(), &w, &quick, &mut |_| {});
        assert_eq!(results.len(), Op::ALL.len());
        for r in &results {
            assert_eq!(r.validation, Ok(()), "{}", r.op);
        }
        let four = RunOptions {
            threads: 4,
            ..quick
        };
        let threaded = run(
            "memory",
            taskstate_memory_for_tests().as_ref(),
            &w,
            &four,
            &mut |_| {},
        );
        // Writes and point reads with 4 threads; the scans only single-threaded.
        assert_eq!(threaded.len(), Op::ALL.len() - 2);
        for r in &threaded {
            assert_eq!(r.validation, Ok(()), "{}", r.op);
            assert_eq!(r.threads, 4, "{}", r.op);
        }
        // A read loop repeats over the workload until it lasts min_time.
        let long = RunOptions {
            min_time: std::time::Duration::from_millis(50),
            ..quick
        };
        let repeated = run(
            "memory",
            taskstate_memory_for_tests().as_ref(),
            &w,
            &long,
            &mut |_| {},
        );
        for r in repeated.iter().filter(|r| !r.op.is_write()) {
            assert!(r.seconds >= 0.05, "{} ran {} s", r.op, r.seconds);
            assert!(r.n >= 400, "{}: {} items in {} s", r.op, r.n, r.seconds);
        }
    }

    #[test]
    fn run_reports_a_wrong_engine() {
        let w = Workload::build(60, 3);
        // An engine that drops every tenth result must fail validation.
        struct Lossy(Box<dyn StateBackend>);
        impl BenchTarget for Lossy {
            fn upsert(&self, w: &Workload, i: usize) -> Result<()> {
                self.0.upsert(w, i)
            }
            fn add_history(&self, w: &Workload, r: usize) -> Result<()> {
                self.0.add_history(w, r)
            }
            fn set_result(&self, w: &Workload, i: usize) -> Result<()> {
                if i % 10 == 0 {
                    Ok(())
                } else {
                    BenchTarget::set_result(self.0.as_ref(), w, i)
                }
            }
            fn read_invocation(&self, w: &Workload, i: usize) -> Result<Read> {
                self.0.read_invocation(w, i)
            }
            fn read_history(&self, w: &Workload, i: usize) -> Result<Read> {
                self.0.read_history(w, i)
            }
            fn read_result(&self, w: &Workload, i: usize) -> Result<Read> {
                // A missing result reads back as an empty one.
                self.0
                    .read_result(w, i)
                    .or(Ok(Read::Text(taskstate_core::SharedText::default())))
            }
            fn read_children(&self, w: &Workload, i: usize) -> Result<Read> {
                self.0.read_children(w, i)
            }
            fn read_matches(&self, w: &Workload, op: Op, i: usize, got: &Read) -> bool {
                self.0.read_matches(w, op, i, got)
            }
            fn scan_ids(&self, w: &Workload) -> Result<ScannedIds> {
                self.0.scan_ids(w)
            }
            fn scan_history(&self, w: &Workload) -> Result<Scanned> {
                self.0.scan_history(w)
            }
        }
        let lossy = Lossy(taskstate_memory_for_tests());
        let quick = RunOptions {
            min_time: std::time::Duration::ZERO,
            ..RunOptions::default()
        };
        let results = run("lossy", &lossy, &w, &quick, &mut |_| {});
        let set = results
            .iter()
            .find(|r| r.op == Op::SetResult)
            .map(|r| r.validation.clone());
        assert_eq!(
            set,
            Some(Err(
                "6 of 60 results read back differ from the input".to_owned()
            ))
        );
        assert!(results.iter().filter(|r| r.validation.is_ok()).count() == Op::ALL.len() - 2);
    }

    /// An id scan matches only the workload's ids, all of them, in order,
    /// whether an engine returned them as ids or a baseline as strings.
    #[test]
    fn scanned_ids_match_only_the_same_ids_in_order() {
        let want = Workload::build(5, 2).sorted_ids();
        let strings = |ids: &[taskstate_core::InvocationId]| {
            ScannedIds::Strings(ids.iter().map(|i| i.as_str().to_owned()).collect())
        };
        let mut swapped = want.clone();
        swapped.swap(0, 1);
        for (got, ok) in [
            (ScannedIds::Ids(want.clone()), true),
            (strings(&want), true),
            (ScannedIds::Ids(swapped.clone()), false),
            (strings(&swapped), false),
            (ScannedIds::Ids(want[1..].to_vec()), false),
            (strings(&want[..4]), false),
            (ScannedIds::Strings(Vec::new()), false),
        ] {
            assert_eq!(got.matches(&want), ok, "{got:?}");
        }
        assert_eq!(strings(&want).len(), 5);
        assert!(ScannedIds::Ids(Vec::new()).is_empty());
    }

    fn taskstate_memory_for_tests() -> Box<dyn StateBackend> {
        crate::open("memory://").unwrap_or_else(|e| panic!("{e}"))
    }
}
