//! Criterion benches: every SPEC §7 operation on the memory engine, the
//! SQLite engine and the raw-SQLite baseline (one group per operation,
//! `BenchmarkId::new(engine, n)`, throughput in elements), plus a scaling
//! sweep of full time-range scans over 10k, 100k and 1M history rows that
//! shows the per-row cost of keyset paging stays flat.
//!
//! `cargo bench -p taskstate-benches` measures. `cargo test --benches` runs
//! every bench once as a smoke test, with the sweep at 1k/2k/4k rows so it
//! stays quick (the 1M-row database takes a while to build).

// Bench code: a failed setup unwrap is a failed bench.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use taskstate::StateBackend;
use taskstate::bench::{BenchTarget, Op as BenchOp, RawSqlite, Workload};
use taskstate::memory::MemoryBackend;
use taskstate::sqlite::{SqliteBackend, SqliteOptions};

const N: usize = 1000;

/// The engines of one group, each with what keeps it alive.
struct Targets {
    _dir: tempfile::TempDir,
    list: Vec<(&'static str, Box<dyn BenchTarget>)>,
}

fn targets(w: &Workload) -> Targets {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteBackend::open(dir.path().join("engine.db")).unwrap();
    let raw = RawSqlite::create(dir.path().join("raw.db"), SqliteOptions::default(), w).unwrap();
    Targets {
        list: vec![
            ("memory", Box::new(MemoryBackend::new())),
            ("sqlite", Box::new(sqlite)),
            ("raw-sqlite", Box::new(raw)),
        ],
        _dir: dir,
    }
}

/// Writes the workload into `t` and checks that every point read returns
/// what was written (the timed reads below are not checked again).
fn populate(t: &dyn BenchTarget, w: &Workload) {
    for i in 0..w.n() {
        t.upsert(w, i).unwrap();
        t.set_result(w, i).unwrap();
    }
    for r in 0..w.histories.len() {
        t.add_history(w, r).unwrap();
    }
    for i in 0..w.n() {
        for (op, got) in [
            (BenchOp::GetInvocation, t.read_invocation(w, i)),
            (BenchOp::GetHistory, t.read_history(w, i)),
            (BenchOp::GetResult, t.read_result(w, i)),
            (BenchOp::GetChildInvocations, t.read_children(w, i)),
        ] {
            assert!(t.read_matches(w, op, i, &got.unwrap()), "{op} of item {i}");
        }
    }
}

/// Times `iters` passes of `op` over `items` items.
fn passes(iters: u64, items: usize, op: impl Fn(usize)) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        for i in 0..items {
            op(i);
        }
    }
    start.elapsed()
}

fn operations(c: &mut Criterion) {
    let w = Workload::build(N, 42);
    let t = targets(&w);
    for (_, target) in &t.list {
        populate(target.as_ref(), &w);
    }
    type Op<'a> = (
        &'static str,
        usize,
        Box<dyn Fn(&dyn BenchTarget, usize) + 'a>,
    );
    let ops: Vec<Op<'_>> = vec![
        (
            "upsert_invocations",
            N,
            Box::new(|t, i| t.upsert(&w, i).unwrap()),
        ),
        (
            "add_histories",
            3 * N,
            Box::new(|t, r| t.add_history(&w, r).unwrap()),
        ),
        (
            "set_result",
            N,
            Box::new(|t, i| t.set_result(&w, i).unwrap()),
        ),
        (
            "get_invocation",
            N,
            Box::new(|t, i| {
                black_box(t.read_invocation(&w, i).unwrap());
            }),
        ),
        (
            "get_history",
            N,
            Box::new(|t, i| {
                black_box(t.read_history(&w, i).unwrap());
            }),
        ),
        (
            "get_result",
            N,
            Box::new(|t, i| {
                black_box(t.read_result(&w, i).unwrap());
            }),
        ),
        (
            "get_child_invocations",
            N,
            Box::new(|t, i| {
                black_box(t.read_children(&w, i).unwrap());
            }),
        ),
        (
            "iter_invocations_in_timerange",
            1,
            Box::new(|t, _| assert_eq!(t.scan_ids(&w).unwrap().len(), N)),
        ),
        (
            "iter_history_in_timerange",
            1,
            Box::new(|t, _| assert_eq!(t.scan_history(&w).unwrap().len(), 3 * N)),
        ),
    ];
    for (name, items, op) in &ops {
        let mut group = c.benchmark_group(*name);
        let elements = if *items == 1 {
            if name.contains("history") { 3 * N } else { N }
        } else {
            *items
        };
        group.throughput(Throughput::Elements(elements as u64));
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(3));
        for (engine, target) in &t.list {
            group.bench_function(BenchmarkId::new(*engine, N), |b| {
                b.iter_custom(|iters| passes(iters, *items, |i| op(target.as_ref(), i)));
            });
        }
        group.finish();
    }
}

/// Full keyset-paged scans over growing stores: per-row cost must stay flat.
fn scaling(c: &mut Criterion) {
    let measuring = std::env::args().any(|a| a == "--bench");
    let sizes: &[usize] = if measuring {
        &[10_000, 100_000, 1_000_000]
    } else {
        &[1_000, 2_000, 4_000]
    };
    let mut group = c.benchmark_group("scan_history_scaling");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for &rows in sizes {
        let w = Workload::build(rows / 3, 7);
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteBackend::open(dir.path().join("scale.db")).unwrap();
        let memory = MemoryBackend::new();
        for chunk in w.histories.chunks(2000) {
            sqlite.add_histories(chunk).unwrap();
            memory.add_histories(chunk).unwrap();
        }
        let raw =
            RawSqlite::create(dir.path().join("scale.db"), SqliteOptions::default(), &w).unwrap();
        let want = w.histories.len();
        group.throughput(Throughput::Elements(want as u64));
        let engines: [(&str, &dyn BenchTarget); 3] = [
            ("memory", &memory),
            ("sqlite", &sqlite),
            ("raw-sqlite", &raw),
        ];
        for (engine, target) in engines {
            group.bench_function(BenchmarkId::new(engine, want), |b| {
                b.iter(|| assert_eq!(target.scan_history(&w).unwrap().len(), want));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, operations, scaling);
criterion_main!(benches);
