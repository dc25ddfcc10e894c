//! `taskstate bench`: runs the reference workload on each engine (and its
//! raw baseline), prints the table and writes the JSON report.

use std::io::Write;
use std::path::Path;

use indicatif::ProgressBar;
use serde_json::json;
use taskstate::bench::{self, Op, OpResult, Workload};
use taskstate::{export, redact_url};

use crate::{CliResult, Failure, emit, open_url, progress_bar, write_atomically};

fn read_first_line(path: &str, prefix: Option<&str>) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    match prefix {
        None => text.lines().next().map(|l| l.trim().to_owned()),
        Some(p) => text
            .lines()
            .find(|l| l.starts_with(p))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned()),
    }
}

fn machine_meta(n: usize, threads: usize, seed: u64) -> serde_json::Value {
    json!({
        "host": read_first_line("/proc/sys/kernel/hostname", None),
        "cpu": read_first_line("/proc/cpuinfo", Some("model name")),
        "cores": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "memory": read_first_line("/proc/meminfo", Some("MemTotal")),
        "os": format!("{} {}", std::env::consts::OS,
            read_first_line("/proc/sys/kernel/osrelease", None).unwrap_or_default()),
        "taskstate": env!("CARGO_PKG_VERSION"),
        "sqlite": rusqlite_version(),
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "date": chrono::Utc::now().to_rfc3339(),
        "n": n,
        "threads": threads,
        "seed": seed,
        "page_size": taskstate::DEFAULT_PAGE_SIZE,
    })
}

#[cfg(feature = "sqlite")]
fn rusqlite_version() -> Option<&'static str> {
    Some(rusqlite::version())
}

#[cfg(not(feature = "sqlite"))]
fn rusqlite_version() -> Option<&'static str> {
    None
}

struct Measured {
    name: String,
    /// The raw baseline this engine is compared with, if any.
    baseline: Option<&'static str>,
    results: Vec<OpResult>,
}

fn bench_engine(
    name: &str,
    url: &str,
    w: &Workload,
    threads: usize,
    bar: &ProgressBar,
) -> Result<Vec<OpResult>, String> {
    let b = open_url(url)?;
    let shown = redact_url(url);
    if !export::is_empty(b.as_ref()).map_err(|e| format!("{shown}: {e}"))? {
        return Err(format!(
            "{shown}: bench needs an empty store (it writes and then purges its data)"
        ));
    }
    let mut step = |op: &str| bar.set_message(format!("{name}: {op}"));
    let mut results = bench::run(name, b.as_ref(), w, 1, true, &mut step);
    if threads > 1 {
        b.purge()
            .map_err(|e| format!("{shown}: purge between runs: {e}"))?;
        results.extend(bench::run(name, b.as_ref(), w, threads, false, &mut step));
    }
    b.purge()
        .map_err(|e| format!("{shown}: purge after bench: {e}"))?;
    Ok(results)
}

#[cfg(feature = "sqlite")]
fn bench_raw(
    dir: &Path,
    w: &Workload,
    threads: usize,
    bar: &ProgressBar,
) -> Result<Vec<OpResult>, String> {
    use taskstate::sqlite::SqliteOptions;
    let mut step = |op: &str| bar.set_message(format!("raw-sqlite: {op}"));
    let raw = bench::RawSqlite::create(dir.join("raw-1.db"), SqliteOptions::default(), w)
        .map_err(|e| format!("raw-sqlite: {e}"))?;
    let mut results = bench::run("raw-sqlite", &raw, w, 1, true, &mut step);
    if threads > 1 {
        let raw = bench::RawSqlite::create(dir.join("raw-t.db"), SqliteOptions::default(), w)
            .map_err(|e| format!("raw-sqlite: {e}"))?;
        results.extend(bench::run("raw-sqlite", &raw, w, threads, false, &mut step));
    }
    Ok(results)
}

#[cfg(not(feature = "sqlite"))]
fn bench_raw(_: &Path, _: &Workload, _: usize, _: &ProgressBar) -> Result<Vec<OpResult>, String> {
    Ok(Vec::new())
}

/// The raw-PostgreSQL baseline, on the server of `url`, in a schema of its
/// own that is dropped afterwards.
#[cfg(feature = "postgres")]
fn bench_raw_postgres(
    url: &str,
    w: &Workload,
    threads: usize,
    bar: &ProgressBar,
) -> Result<Vec<OpResult>, String> {
    let url = taskstate::postgres::connection_url(url).map_err(|e| e.to_string())?;
    let schema = format!("taskstate_bench_raw_{}", std::process::id());
    let mut step = |op: &str| bar.set_message(format!("raw-postgres: {op}"));
    let raw =
        bench::RawPostgres::create(&url, &schema, w).map_err(|e| format!("raw-postgres: {e}"))?;
    let mut results = bench::run("raw-postgres", &raw, w, 1, true, &mut step);
    if threads > 1 {
        let again = bench::RawPostgres::create(&url, &schema, w)
            .map_err(|e| format!("raw-postgres: {e}"))?;
        results.extend(bench::run(
            "raw-postgres",
            &again,
            w,
            threads,
            false,
            &mut step,
        ));
    }
    raw.drop_schema()
        .map_err(|e| format!("raw-postgres: {e}"))?;
    Ok(results)
}

#[cfg(not(feature = "postgres"))]
fn bench_raw_postgres(
    _: &str,
    _: &Workload,
    _: usize,
    _: &ProgressBar,
) -> Result<Vec<OpResult>, String> {
    Ok(Vec::new())
}

fn fmt_rate(r: f64) -> String {
    if !r.is_finite() {
        return "inf".into();
    }
    let s = format!("{:.0}", r);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn print_table(measured: &[Measured], out: &mut impl Write) -> std::io::Result<()> {
    let ratio_of: Vec<&Measured> = measured.iter().filter(|m| m.baseline.is_some()).collect();
    let mut rows: Vec<(Op, usize, usize)> = Vec::new();
    for m in measured {
        for r in &m.results {
            if !rows.iter().any(|(op, t, _)| *op == r.op && *t == r.threads) {
                rows.push((r.op, r.threads, r.n));
            }
        }
    }
    rows.sort_by_key(|(op, t, _)| (*t, *op));
    write!(out, "{:<32}{:>8}{:>4}", "operation", "n", "T")?;
    for m in measured {
        write!(out, "{:>19}", format!("{} op/s", m.name))?;
    }
    for m in &ratio_of {
        write!(out, "{:>14}", format!("{}/raw", m.name))?;
    }
    writeln!(out, "  valid")?;
    let find = |m: &Measured, op: Op, t: usize| {
        m.results
            .iter()
            .find(|r| r.op == op && r.threads == t)
            .cloned()
    };
    for (op, t, n) in rows {
        write!(out, "{op:<32}{n:>8}{t:>4}")?;
        let mut bad = Vec::new();
        for m in measured {
            match find(m, op, t) {
                Some(r) => {
                    write!(out, "{:>19}", fmt_rate(r.ops_per_s()))?;
                    if let Err(e) = &r.validation {
                        bad.push(format!("{}: {e}", m.name));
                    }
                }
                None => write!(out, "{:>19}", "-")?,
            }
        }
        for m in &ratio_of {
            let raw = measured
                .iter()
                .find(|r| Some(r.name.as_str()) == m.baseline);
            let ratio = match (find(m, op, t), raw.and_then(|raw| find(raw, op, t))) {
                (Some(a), Some(b)) => format!("{:.2}", a.ops_per_s() / b.ops_per_s()),
                _ => "-".into(),
            };
            write!(out, "{ratio:>14}")?;
        }
        if bad.is_empty() {
            writeln!(out, "  ok")?;
        } else {
            writeln!(out, "  FAILED ({})", bad.join("; "))?;
        }
    }
    Ok(())
}

pub(crate) fn cmd_bench(
    engines: Vec<String>,
    n: usize,
    threads: usize,
    json_path: Option<&Path>,
    seed: Option<u64>,
) -> CliResult {
    if n == 0 {
        return Err("--n must be at least 1".into());
    }
    if threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    if cfg!(debug_assertions) {
        eprintln!(
            "taskstate: note: this is a debug build; for representative figures run with --release"
        );
    }
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
    let urls: Vec<(String, String)> = if engines.is_empty() {
        let mut v = Vec::new();
        if cfg!(feature = "memory") {
            v.push(("memory".to_owned(), "memory://".to_owned()));
        }
        if cfg!(feature = "sqlite") {
            v.push((
                "sqlite".to_owned(),
                format!("sqlite://{}", dir.path().join("bench-sqlite.db").display()),
            ));
        }
        v
    } else {
        let mut v: Vec<(String, String)> = Vec::new();
        for url in engines {
            let name = open_url(&url)?.engine_name().to_owned();
            let name = if v.iter().any(|(n, _)| *n == name) {
                redact_url(&url)
            } else {
                name
            };
            v.push((name, url));
        }
        v
    };
    let bar = progress_bar(None);
    bar.set_message("building workload");
    let w = Workload::build(n, seed);
    let mut measured = Vec::new();
    for (name, url) in &urls {
        let results = bench_engine(name, url, &w, threads, &bar)?;
        let baseline = match taskstate::parse_url(url).map(|u| u.engine) {
            Ok("sqlite") => Some("raw-sqlite"),
            Ok("postgres") => Some("raw-postgres"),
            _ => None,
        };
        measured.push(Measured {
            name: name.clone(),
            baseline,
            results,
        });
    }
    let raw = bench_raw(dir.path(), &w, threads, &bar)?;
    if !raw.is_empty() {
        measured.push(Measured {
            name: "raw-sqlite".into(),
            baseline: None,
            results: raw,
        });
    }
    if let Some((_, pg_url)) = urls.iter().find(|(_, u)| u.starts_with("postgres")) {
        let raw = bench_raw_postgres(pg_url, &w, threads, &bar)?;
        if !raw.is_empty() {
            measured.push(Measured {
                name: "raw-postgres".into(),
                baseline: None,
                results: raw,
            });
        }
    }
    bar.finish_and_clear();

    let meta = machine_meta(n, threads, seed);
    let mut table = Vec::new();
    let _ = writeln!(
        table,
        "taskstate bench: N={n}, threads={threads}, {} build, {} cores, {}",
        meta["build"].as_str().unwrap_or("?"),
        meta["cores"],
        meta["cpu"].as_str().unwrap_or("unknown cpu")
    );
    print_table(&measured, &mut table).map_err(|e| format!("writing the table: {e}"))?;
    emit(&String::from_utf8_lossy(&table))?;
    if let Some(path) = json_path {
        let results: Vec<_> = measured
            .iter()
            .flat_map(|m| m.results.iter().map(OpResult::to_json))
            .collect();
        let doc = json!({"meta": meta, "results": results});
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        write_atomically(path, |out| {
            out.write_all(text.as_bytes())
                .map_err(|e| Failure::Message(format!("cannot write {}: {e}", path.display())))
        })?;
        emit(&format!("results written to {}\n", path.display()))?;
    }
    let failed: Vec<String> = measured
        .iter()
        .flat_map(|m| m.results.iter())
        .filter_map(|r| {
            r.validation
                .as_ref()
                .err()
                .map(|e| format!("{} {} (T={}): {e}", r.engine, r.op, r.threads))
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("validation failed: {}", failed.join("; ")).into())
    }
}

// ---- export / import / copy / inspect ------------------------------------
