//! `taskstate bench prune`: builds a large store, prunes it while a writer
//! keeps writing, and reports the prune's time and rate, the writer's
//! latency, and the store's size before, after, and after reclaiming space.

use std::time::{Duration, Instant};

use serde_json::json;
use taskstate::bench::retention::{self, RetentionStore};
use taskstate::{Timestamp, redact_url};

use crate::{CliResult, emit, open_url, progress_bar, write_atomically};

// What `taskstate bench prune` was asked (the subcommand's help is its
// variant's in `main.rs`).
#[derive(clap::Args)]
pub(crate) struct BenchPruneArgs {
    /// Engine URL (repeatable; its store is PURGED first); default: a
    /// SQLite file in a temp dir.
    #[arg(long = "engine", value_name = "URL")]
    pub engines: Vec<String>,
    /// Invocations in the store (1 to 20,000,000).
    #[arg(long, default_value_t = 100_000, value_parser = crate::bounded::<1, 20_000_000>)]
    pub n: usize,
    /// Percent of trees finished long before the cutoff (0 to 100).
    #[arg(long, default_value_t = 90, value_parser = crate::bounded::<0, 100>)]
    pub expired_percent: usize,
    /// Trees per prune transaction (1 to 100,000).
    #[arg(long, default_value_t = taskstate::prune::DEFAULT_CHUNK, value_parser = crate::bounded::<1, 100_000>)]
    pub chunk: usize,
    /// Milliseconds between the writer's calls (1 to 10,000).
    #[arg(long, default_value_t = 5, value_parser = crate::bounded::<1, 10_000>)]
    pub writer_interval_ms: usize,
    /// Write the results as JSON to PATH.
    #[arg(long, value_name = "PATH")]
    pub json: Option<std::path::PathBuf>,
    /// Seed of ids and ages (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
}

impl BenchPruneArgs {
    /// The share of expired trees, `0..=1`.
    fn expired(&self) -> f64 {
        self.expired_percent as f64 / 100.0
    }
}

/// Bytes the store takes, where the bench can tell: a SQLite file (its
/// WAL apart: it holds copies of pages until a checkpoint), or a
/// PostgreSQL schema's tables with their indexes and TOAST.
fn stored_bytes(url: &str) -> Option<Bytes> {
    let parsed = taskstate::parse_url(url).ok()?;
    match parsed.engine {
        "sqlite" => {
            let path = parsed.decoded_body().ok()?;
            let size = |p: &str| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            Some(Bytes {
                store: size(&path),
                wal: Some(size(&format!("{path}-wal"))),
            })
        }
        #[cfg(feature = "postgres")]
        "postgres" => {
            let schema = parsed
                .decoded_params()
                .ok()?
                .into_iter()
                .find(|(k, _)| k == "schema")
                .map_or_else(|| "taskstate".to_owned(), |(_, v)| v);
            let conn = taskstate::postgres::connection_url(url).ok()?;
            let mut client = postgres::Client::connect(&conn, postgres::NoTls).ok()?;
            let row = client
                .query_one(
                    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint \
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = $1 AND c.relkind = 'r'",
                    &[&schema],
                )
                .ok()?;
            let store = row
                .try_get::<_, i64>(0)
                .ok()
                .and_then(|n| u64::try_from(n).ok())?;
            Some(Bytes { store, wal: None })
        }
        _ => None,
    }
}

/// A store's size: the store itself, and a SQLite WAL beside it.
#[derive(Clone, Copy)]
struct Bytes {
    store: u64,
    wal: Option<u64>,
}

impl Bytes {
    fn json(b: Option<Self>) -> serde_json::Value {
        b.map_or(
            serde_json::Value::Null,
            |b| json!({"store": b.store, "wal": b.wal}),
        )
    }
}

fn ms(d: Option<Duration>) -> Option<f64> {
    d.map(|d| (d.as_secs_f64() * 1e6).round() / 1e3)
}

fn mb(b: Option<Bytes>) -> String {
    let m = |n: u64| format!("{:.1} MB", n as f64 / 1e6);
    match b {
        None => "-".into(),
        Some(Bytes {
            store,
            wal: Some(w),
        }) => format!("{} (+{} WAL)", m(store), m(w)),
        Some(Bytes { store, wal: None }) => m(store),
    }
}

pub(crate) fn cmd_bench_prune(args: &BenchPruneArgs) -> CliResult {
    let tmp = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let engines = if args.engines.is_empty() {
        vec![format!(
            "sqlite://{}",
            tmp.path().join("prune.db").display()
        )]
    } else {
        args.engines.clone()
    };
    let seed = args
        .seed
        .unwrap_or_else(|| Timestamp::now().micros().unsigned_abs());
    let mut reports = Vec::new();
    let mut text = String::new();
    for url in &engines {
        let shown = redact_url(url);
        let store = open_url(url)?;
        store.purge().map_err(|e| format!("{shown}: purge: {e}"))?;
        let now = Timestamp::now();
        let spec = RetentionStore {
            invocations: args.n,
            expired: args.expired(),
            seed,
        };
        let bar = progress_bar(Some(args.n as u64));
        bar.set_message("filling");
        let started = Instant::now();
        let filled = retention::fill(store.as_ref(), &spec, now, &mut |done, _| {
            bar.set_position(done)
        })
        .map_err(|e| format!("{shown}: fill: {e}"))?;
        let fill_time = started.elapsed();
        bar.finish_and_clear();
        let before = stored_bytes(url);
        let bar = progress_bar(Some(1000));
        bar.set_message("pruning");
        let cutoff = now.add_micros(-30 * 86_400_000_000);
        let run = retention::prune_under_writes(
            store.as_ref(),
            cutoff,
            args.chunk,
            Duration::from_millis(args.writer_interval_ms as u64),
            &mut |p| bar.set_position((p.fraction() * 1000.0) as u64),
        )
        .map_err(|e| format!("{shown}: prune: {e}"))?;
        bar.finish_and_clear();
        let after_prune = stored_bytes(url);
        let started = Instant::now();
        let space = store
            .reclaim_space()
            .map_err(|e| format!("{shown}: reclaim space: {e}"))?;
        let vacuum_time = started.elapsed();
        let after_vacuum = stored_bytes(url);
        let secs = run.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            run.counts.invocations as f64 / secs
        } else {
            0.0
        };
        let (p50, p90, p99, max) = (
            run.writer.quantile(0.5),
            run.writer.quantile(0.9),
            run.writer.quantile(0.99),
            run.writer.quantile(1.0),
        );
        text.push_str(&format!(
            "{shown}\n  store: {} invocations in {} trees ({} expired invocations), {} rows, filled in {:.1} s\n  \
             prune: {} trees / {} invocations / {} history rows in {:.1} s = {:.0} invocations/s \
             ({} chunks of up to {}, {} trees kept)\n  \
             writer during the prune: {} add_histories calls, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} errors\n  \
             size: {} before, {} after the prune, {} after reclaiming space ({})\n",
            filled.invocations,
            filled.trees,
            filled.expired_invocations,
            filled.rows,
            fill_time.as_secs_f64(),
            run.counts.trees,
            run.counts.invocations,
            run.counts.history,
            secs,
            rate,
            run.chunks,
            args.chunk,
            run.kept_trees,
            run.writer.sorted.len(),
            ms(p50).unwrap_or(0.0),
            ms(p90).unwrap_or(0.0),
            ms(p99).unwrap_or(0.0),
            ms(max).unwrap_or(0.0),
            run.writer.errors,
            mb(before),
            mb(after_prune),
            mb(after_vacuum),
            match space {
                Some(_) => format!("VACUUM, {:.1} s", vacuum_time.as_secs_f64()),
                None => "nothing to do on this engine: memory frees at once, PostgreSQL autovacuum reuses the space".into(),
            },
        ));
        reports.push(json!({
            "engine": shown,
            "store": {
                "invocations": filled.invocations,
                "trees": filled.trees,
                "expired_trees": filled.expired_trees,
                "expired_invocations": filled.expired_invocations,
                "rows": filled.rows,
                "fill_seconds": fill_time.as_secs_f64(),
            },
            "prune": {
                "deleted": run.counts.fields().iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "kept_trees": run.kept_trees,
                "chunks": run.chunks,
                "chunk": args.chunk,
                "seconds": secs,
                "invocations_per_second": rate,
            },
            "writer": {
                "calls": run.writer.sorted.len(),
                "errors": run.writer.errors,
                "interval_ms": args.writer_interval_ms,
                "p50_ms": ms(p50),
                "p90_ms": ms(p90),
                "p99_ms": ms(p99),
                "max_ms": ms(max),
            },
            "bytes": {
                "before": Bytes::json(before),
                "after_prune": Bytes::json(after_prune),
                "after_reclaim": Bytes::json(after_vacuum),
                "reclaim_seconds": space.map(|_| vacuum_time.as_secs_f64()),
            },
        }));
    }
    if let Some(path) = &args.json {
        let doc = json!({
            "meta": {
                "n": args.n,
                "expired": args.expired(),
                "seed": seed,
                "build": if cfg!(debug_assertions) { "debug" } else { "release" },
                "date": chrono::Utc::now().to_rfc3339(),
                "cores": std::thread::available_parallelism().map(|n| n.get()).ok(),
            },
            "runs": reports,
        });
        write_atomically(path, |w| {
            serde_json::to_writer_pretty(&mut *w, &doc)
                .map_err(|e| format!("writing {}: {e}", path.display()).into())
        })?;
    }
    emit(&text)
}
