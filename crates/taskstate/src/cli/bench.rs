//! `taskstate bench`: runs the reference workload on each engine (and its
//! raw baseline), prints the table and writes the JSON report.

use std::cell::RefCell;
use std::io::Write;
use std::path::Path;
use std::rc::Rc;

use indicatif::ProgressBar;
use serde_json::json;
use taskstate::bench::{self, Op, OpResult, Workload};
use taskstate::{export, redact_url};

use crate::bench_against_cmd::External;
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

/// What one bench target is: an engine by URL, or a raw baseline.
enum Kind {
    /// An engine by URL; its store is emptied after each pass.
    Engine {
        url: String,
    },
    /// The SQLite engine on a file of the bench's own: a new file each
    /// pass, removed after it, as the raw baseline's is. (A purged file
    /// reuses its freed pages in scattered order: every pass after the
    /// first would read a fragmented file against a fresh baseline.)
    OwnSqlite,
    RawSqlite,
    RawPostgres {
        url: String,
    },
    /// A target outside this process (`--against`), one for the run.
    External(Rc<RefCell<External>>),
}

/// One measured target and its results, round by round.
struct Measured {
    name: String,
    kind: Kind,
    /// The target this engine is compared with (its raw baseline, or the
    /// `--against` target), if any.
    baseline: Option<String>,
    /// One entry per round: every timed operation of that round.
    rounds: Vec<Vec<OpResult>>,
}

/// How a bench run measures, from the command line.
pub(crate) struct BenchArgs {
    pub(crate) engines: Vec<String>,
    pub(crate) n: usize,
    pub(crate) threads: usize,
    pub(crate) repeat: usize,
    pub(crate) min_time_ms: u64,
    pub(crate) json: Option<std::path::PathBuf>,
    pub(crate) seed: Option<u64>,
    /// A command serving an external target (`--against`): every engine's
    /// ratio is taken against it instead of a raw baseline.
    pub(crate) against: Option<String>,
    /// How long the external target may take to answer one request.
    pub(crate) against_timeout: std::time::Duration,
}

/// A target's empty store for one pass, and what cleans it up.
enum Store {
    Engine {
        backend: Box<dyn taskstate::StateBackend>,
        shown: String,
        /// The file to remove after the pass (the bench's own), instead
        /// of purging the store.
        own_file: Option<std::path::PathBuf>,
    },
    #[cfg(feature = "sqlite")]
    RawSqlite {
        raw: Box<bench::RawSqlite>,
        path: std::path::PathBuf,
    },
    #[cfg(feature = "postgres")]
    RawPostgres(Box<bench::RawPostgres>),
    External(Rc<RefCell<External>>),
}

impl Store {
    fn open(m: &Measured, dir: &Path, tag: &str, w: &Workload) -> Result<Self, String> {
        match &m.kind {
            Kind::Engine { url } => Store::engine(open_url(url)?, redact_url(url), None),
            Kind::OwnSqlite => {
                let path = dir.join(format!("sqlite-{tag}.db"));
                let backend = own_sqlite(&path)?;
                Store::engine(backend, path.display().to_string(), Some(path))
            }
            Kind::RawSqlite => raw_sqlite(dir, tag, w),
            Kind::RawPostgres { url } => raw_postgres(url, w),
            Kind::External(ext) => {
                ext.borrow_mut().open()?;
                Ok(Store::External(Rc::clone(ext)))
            }
        }
    }

    fn engine(
        backend: Box<dyn taskstate::StateBackend>,
        shown: String,
        own_file: Option<std::path::PathBuf>,
    ) -> Result<Self, String> {
        if !export::is_empty(backend.as_ref()).map_err(|e| format!("{shown}: {e}"))? {
            return Err(format!(
                "{shown}: bench needs an empty store (it writes and then purges its data)"
            ));
        }
        Ok(Store::Engine {
            backend,
            shown,
            own_file,
        })
    }

    /// Times `op` (an external target's failure to answer is an error;
    /// what was wrong with an op's outputs is in its validation).
    fn run_op(
        &self,
        name: &str,
        w: &Workload,
        op: Op,
        options: &bench::RunOptions,
    ) -> Result<OpResult, String> {
        Ok(match self {
            Store::Engine { backend, .. } => bench::run_op(name, backend.as_ref(), w, op, options),
            #[cfg(feature = "sqlite")]
            Store::RawSqlite { raw, .. } => bench::run_op(name, raw.as_ref(), w, op, options),
            #[cfg(feature = "postgres")]
            Store::RawPostgres(raw) => bench::run_op(name, raw.as_ref(), w, op, options),
            Store::External(ext) => ext.borrow_mut().run(op, options.min_time.as_secs_f64())?,
        })
    }

    fn validate_writes(&self, w: &Workload, results: &mut [OpResult]) -> Result<(), String> {
        match self {
            Store::Engine { backend, .. } => bench::validate_writes(backend.as_ref(), w, results),
            #[cfg(feature = "sqlite")]
            Store::RawSqlite { raw, .. } => bench::validate_writes(raw.as_ref(), w, results),
            #[cfg(feature = "postgres")]
            Store::RawPostgres(raw) => bench::validate_writes(raw.as_ref(), w, results),
            Store::External(ext) => {
                let v = ext.borrow_mut().validate()?;
                for r in results.iter_mut().filter(|r| r.validation.is_ok()) {
                    r.validation.clone_from(&v);
                }
            }
        }
        Ok(())
    }

    /// Empties the store (engines) or removes it (raw baselines).
    fn close(self) -> Result<(), String> {
        match self {
            Store::Engine {
                backend,
                own_file: Some(path),
                ..
            } => {
                drop(backend);
                remove_sqlite_files(&path);
                Ok(())
            }
            Store::Engine {
                backend,
                shown,
                own_file: None,
            } => backend
                .purge()
                .map_err(|e| format!("{shown}: purge after the pass: {e}")),
            #[cfg(feature = "sqlite")]
            Store::RawSqlite { raw, path } => {
                drop(raw);
                remove_sqlite_files(&path);
                Ok(())
            }
            #[cfg(feature = "postgres")]
            Store::RawPostgres(raw) => raw.drop_schema().map_err(|e| format!("raw-postgres: {e}")),
            Store::External(ext) => ext.borrow_mut().close_store(),
        }
    }
}

/// The SQLite engine on a file of the bench's own (opened by path: the
/// pass's tag is no URL).
#[cfg(feature = "sqlite")]
fn own_sqlite(path: &Path) -> Result<Box<dyn taskstate::StateBackend>, String> {
    taskstate::sqlite::SqliteBackend::open(path)
        .map(|b| Box::new(b) as Box<dyn taskstate::StateBackend>)
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(not(feature = "sqlite"))]
fn own_sqlite(_: &Path) -> Result<Box<dyn taskstate::StateBackend>, String> {
    Err("the bench's own SQLite store needs the sqlite feature".into())
}

/// Removes a SQLite database file and its WAL and shared-memory files
/// (best effort: the directory is a temp dir removed at the end anyway).
fn remove_sqlite_files(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[cfg(feature = "sqlite")]
fn raw_sqlite(dir: &Path, tag: &str, w: &Workload) -> Result<Store, String> {
    use taskstate::sqlite::SqliteOptions;
    let path = dir.join(format!("raw-{tag}.db"));
    let raw = bench::RawSqlite::create(path.clone(), SqliteOptions::default(), w)
        .map_err(|e| format!("raw-sqlite: {e}"))?;
    Ok(Store::RawSqlite {
        raw: Box::new(raw),
        path,
    })
}

#[cfg(not(feature = "sqlite"))]
fn raw_sqlite(_: &Path, _: &str, _: &Workload) -> Result<Store, String> {
    Err("raw-sqlite needs the sqlite feature".into())
}

/// The raw-PostgreSQL baseline, on the server of `url`, in a schema of its
/// own that is dropped when the pass ends.
#[cfg(feature = "postgres")]
fn raw_postgres(url: &str, w: &Workload) -> Result<Store, String> {
    let url = taskstate::postgres::connection_url(url).map_err(|e| e.to_string())?;
    let schema = format!("taskstate_bench_raw_{}", std::process::id());
    bench::RawPostgres::create(&url, &schema, w)
        .map(|raw| Store::RawPostgres(Box::new(raw)))
        .map_err(|e| format!("raw-postgres: {e}"))
}

#[cfg(not(feature = "postgres"))]
fn raw_postgres(_: &str, _: &Workload) -> Result<Store, String> {
    Err("raw-postgres needs the postgres feature".into())
}

/// One pass of a round: each operation on every target before the next
/// operation (targets in `order`), so the figures a ratio compares are
/// taken moments apart, not a whole pass apart. Returns each target's
/// results, by its index in `measured`.
///
/// The writes run on empty stores, and a pass of them can be short (2,000
/// results into memory take a quarter of a millisecond), so they repeat:
/// whole passes of every write, each on a new empty store, every pass read
/// back. The targets take turns as the reads' slices do (A B B A …), a
/// turn lasting until each write of the target has run its share of
/// `options.min_time` (a failed write counts as done) and a target whose
/// writes have each run all of it skipping its remaining turns; a write's
/// figure is the sum over its passes. Turns, not single passes, alternate: a
/// target switched in after another's pass starts with the other's data
/// in the caches, which costs a fast target's quarter-millisecond pass
/// more than a slow one's. The reads then run on each target's last store.
fn run_pass(
    measured: &[Measured],
    order: &[usize],
    dir: &Path,
    w: &Workload,
    options: &bench::RunOptions,
    label: &str,
    bar: &ProgressBar,
) -> Result<Vec<(usize, Vec<OpResult>)>, String> {
    let (writes, reads): (Vec<Op>, Vec<Op>) = bench::pass_ops(options)
        .into_iter()
        .partition(|op| op.is_write());
    let min_time = options.min_time.as_secs_f64();
    let share = min_time / f64::from(READ_SLICES);
    // Per target (by position in `order`): its writes' running totals,
    // and the store of its latest pass.
    let mut totals: Vec<Vec<OpResult>> = vec![Vec::new(); order.len()];
    let mut last: Vec<Option<Store>> = order.iter().map(|_| None).collect();
    let mut write_pass = 0usize;
    let turns = if share > 0.0 {
        slice_turns(order.len())
    } else {
        (0..order.len()).collect()
    };
    for k in turns {
        // A slow target (a pass of SQLite writes at N = 20,000 lasts
        // seconds) is done after its first turn and skips the rest.
        if writes_ran(&totals[k], min_time) {
            continue;
        }
        let m = &measured[order[k]];
        let mut turn: Vec<OpResult> = Vec::new();
        loop {
            write_pass += 1;
            // The previous pass's store goes first (an external target
            // holds one store at a time).
            if let Some(old) = last[k].take() {
                old.close()?;
            }
            let store = Store::open(m, dir, &format!("{label}-{write_pass}"), w)?;
            let mut results = Vec::new();
            for &op in &writes {
                bar.set_message(format!("{label}: {op} (pass {write_pass}): {}", m.name));
                results.push(store.run_op(&m.name, w, op, options)?);
            }
            store.validate_writes(w, &mut results)?;
            add_passes(&mut turn, results);
            last[k] = Some(store);
            if writes_ran(&turn, share) {
                break;
            }
        }
        add_passes(&mut totals[k], turn);
    }
    let mut stores = Vec::new();
    for (k, (store, results)) in last.into_iter().zip(totals).enumerate() {
        if let Some(store) = store {
            stores.push((order[k], store, results));
        }
    }
    // Each read runs in slices, the targets alternating slice by slice in
    // the order A B B A A B …: a slower spell of the machine then falls on
    // every target nearly alike, and a steady drift cancels, where one
    // unbroken loop per target let a spell land on one of them.
    let slice = bench::RunOptions {
        min_time: options.min_time / READ_SLICES,
        ..*options
    };
    for op in reads {
        let mut sums: Vec<Vec<OpResult>> = vec![Vec::new(); stores.len()];
        for k in slice_turns(stores.len()) {
            let (idx, store, _) = &stores[k];
            let name = &measured[*idx].name;
            bar.set_message(format!("{label}: {op}: {name}"));
            add_passes(&mut sums[k], vec![store.run_op(name, w, op, &slice)?]);
        }
        for ((_, _, results), sum) in stores.iter_mut().zip(sums) {
            results.extend(sum);
        }
    }
    let mut out = Vec::new();
    for (idx, store, results) in stores {
        store.close()?;
        out.push((idx, results));
    }
    Ok(out)
}

/// Whether every write in `results` (summed over passes) has run `secs`
/// seconds or failed; false before any pass.
fn writes_ran(results: &[OpResult], secs: f64) -> bool {
    !results.is_empty()
        && results
            .iter()
            .all(|r| r.validation.is_err() || r.seconds >= secs)
}

/// The slices a timed read is cut into (see [`run_pass`]).
const READ_SLICES: u32 = 4;

/// The order in which `targets` targets take their [`READ_SLICES`] turns:
/// forwards, then backwards, and so on (A B B A A B B A for two).
fn slice_turns(targets: usize) -> Vec<usize> {
    (0..READ_SLICES as usize)
        .flat_map(|s| (0..targets).map(move |k| if s % 2 == 0 { k } else { targets - 1 - k }))
        .collect()
}

/// Folds one write pass's results into the running totals (op by op, in
/// the same order): items and seconds add up, the first failure stays.
fn add_passes(total: &mut Vec<OpResult>, pass: Vec<OpResult>) {
    if total.is_empty() {
        *total = pass;
        return;
    }
    for (t, r) in total.iter_mut().zip(pass) {
        t.n += r.n;
        t.seconds += r.seconds;
        if t.validation.is_ok() {
            t.validation = r.validation;
        }
    }
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

/// A rate in 3 significant digits with a k/M suffix (for ranges).
fn short_rate(r: f64) -> String {
    let (v, unit) = if r >= 1e6 {
        (r / 1e6, "M")
    } else if r >= 1e3 {
        (r / 1e3, "k")
    } else {
        (r, "")
    };
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$}{unit}")
}

/// Median, min and max.
fn spread(mut v: Vec<f64>) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let median = if v.len() % 2 == 0 {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    };
    Some((median, v[0], v[v.len() - 1]))
}

fn find(round: &[OpResult], op: Op, t: usize) -> Option<&OpResult> {
    round.iter().find(|r| r.op == op && r.threads == t)
}

/// The ops/s of `op` at `t` threads, round by round.
fn rates(m: &Measured, op: Op, t: usize) -> Vec<f64> {
    m.rounds
        .iter()
        .filter_map(|r| find(r, op, t))
        .map(OpResult::ops_per_s)
        .collect()
}

/// `m`'s ops/s over its baseline's, per round (rounds where both ran).
fn ratios(measured: &[Measured], m: &Measured, op: Op, t: usize) -> Vec<f64> {
    let Some(raw) = measured
        .iter()
        .find(|r| Some(&r.name) == m.baseline.as_ref())
    else {
        return Vec::new();
    };
    m.rounds
        .iter()
        .zip(&raw.rounds)
        .filter_map(|(a, b)| Some(find(a, op, t)?.ops_per_s() / find(b, op, t)?.ops_per_s()))
        .collect()
}

fn rows_of(measured: &[Measured]) -> Vec<(Op, usize)> {
    let mut rows: Vec<(Op, usize)> = Vec::new();
    for r in measured.iter().flat_map(|m| m.rounds.iter().flatten()) {
        if !rows.contains(&(r.op, r.threads)) {
            rows.push((r.op, r.threads));
        }
    }
    rows.sort_by_key(|(op, t)| (*t, *op));
    rows
}

fn print_table(measured: &[Measured], out: &mut impl Write) -> std::io::Result<()> {
    let ratio_of: Vec<&Measured> = measured.iter().filter(|m| m.baseline.is_some()).collect();
    write!(out, "{:<30}{:>3}", "operation", "T")?;
    for m in measured {
        write!(out, "{:>30}", format!("{} op/s [min-max]", m.name))?;
    }
    for m in &ratio_of {
        // A raw baseline shows as `raw`; an `--against` target by its name.
        let base = m.baseline.as_deref().unwrap_or_default();
        let base = if base.starts_with("raw-") {
            "raw"
        } else {
            base
        };
        write!(out, "{:>22}", format!("{}/{base}", m.name))?;
    }
    writeln!(out, "  valid")?;
    for (op, t) in rows_of(measured) {
        write!(out, "{op:<30}{t:>3}")?;
        let mut bad = Vec::new();
        for m in measured {
            let cell = match spread(rates(m, op, t)) {
                Some((med, lo, hi)) => {
                    format!("{} [{}-{}]", fmt_rate(med), short_rate(lo), short_rate(hi))
                }
                None => "-".into(),
            };
            write!(out, "{cell:>30}")?;
            for r in m.rounds.iter().filter_map(|r| find(r, op, t)) {
                if let Err(e) = &r.validation {
                    bad.push(format!("{}: {e}", m.name));
                }
            }
        }
        for m in &ratio_of {
            let cell = match spread(ratios(measured, m, op, t)) {
                Some((med, lo, hi)) => format!("{med:.2} [{lo:.2}-{hi:.2}]"),
                None => "-".into(),
            };
            write!(out, "{cell:>22}")?;
        }
        if bad.is_empty() {
            writeln!(out, "  ok")?;
        } else {
            bad.dedup();
            writeln!(out, "  FAILED ({})", bad.join("; "))?;
        }
    }
    Ok(())
}

/// The JSON report: every sample, and per row the median and range of
/// each target and of each engine/raw ratio.
fn report_json(measured: &[Measured], meta: serde_json::Value) -> serde_json::Value {
    let samples: Vec<_> = measured
        .iter()
        .flat_map(|m| {
            m.rounds.iter().enumerate().flat_map(|(round, rs)| {
                rs.iter().map(move |r| {
                    let mut v = r.to_json();
                    v["round"] = json!(round);
                    v
                })
            })
        })
        .collect();
    let mut summary = Vec::new();
    let mut ratio_rows = Vec::new();
    for (op, t) in rows_of(measured) {
        for m in measured {
            if let Some((median, min, max)) = spread(rates(m, op, t)) {
                summary.push(json!({"engine": m.name, "op": op.name(), "threads": t,
                    "median_ops_per_s": median, "min_ops_per_s": min, "max_ops_per_s": max}));
            }
            let per_round = ratios(measured, m, op, t);
            if let Some((median, min, max)) = spread(per_round.clone()) {
                ratio_rows.push(json!({"engine": m.name, "baseline": m.baseline, "op": op.name(),
                    "threads": t, "median": median, "min": min, "max": max, "per_round": per_round}));
            }
        }
    }
    json!({"meta": meta, "samples": samples, "summary": summary, "ratios": ratio_rows})
}

pub(crate) fn cmd_bench(args: BenchArgs) -> CliResult {
    let BenchArgs {
        engines,
        n,
        threads,
        repeat,
        min_time_ms,
        json: json_path,
        seed,
        against,
        against_timeout,
    } = args;
    if n == 0 || threads == 0 || repeat == 0 {
        return Err("--n, --threads and --repeat must be at least 1".into());
    }
    if against.is_some() && threads > 1 {
        return Err(
            "--against measures one thread (pynenc's backends are driven from one): leave out --threads"
                .into(),
        );
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
    // (name, url, whether the store is a SQLite file of the bench's own).
    let urls: Vec<(String, String, bool)> = if engines.is_empty() {
        let mut v = Vec::new();
        if cfg!(feature = "memory") {
            v.push(("memory".to_owned(), "memory://".to_owned(), false));
        }
        if cfg!(feature = "sqlite") {
            // Named for its engine and baseline only: each pass opens a
            // file of its own (`Kind::OwnSqlite`).
            let path = dir.path().join("sqlite.db");
            v.push((
                "sqlite".to_owned(),
                format!("sqlite://{}", path.display()),
                true,
            ));
        }
        v
    } else {
        let mut v: Vec<(String, String, bool)> = Vec::new();
        for url in engines {
            let name = open_url(&url)?.engine_name().to_owned();
            let name = if v.iter().any(|(n, ..)| *n == name) {
                redact_url(&url)
            } else {
                name
            };
            v.push((name, url, false));
        }
        v
    };
    let external = match &against {
        Some(command) => Some(External::spawn(command, n, against_timeout)?),
        None => None,
    };
    if let Some(ext) = &external
        && urls.iter().any(|(name, ..)| *name == ext.name)
    {
        return Err(format!(
            "--against: its target calls itself {:?}, as an engine measured here is named",
            ext.name
        )
        .into());
    }
    let mut measured: Vec<Measured> = Vec::new();
    for (name, url, own) in &urls {
        let engine = taskstate::parse_url(url).map(|u| u.engine);
        let baseline = match (&external, engine) {
            (Some(ext), _) => Some(ext.name.clone()),
            (None, Ok("sqlite")) if cfg!(feature = "sqlite") => Some("raw-sqlite".to_owned()),
            (None, Ok("postgres")) if cfg!(feature = "postgres") => Some("raw-postgres".to_owned()),
            _ => None,
        };
        measured.push(Measured {
            name: name.clone(),
            kind: if *own {
                Kind::OwnSqlite
            } else {
                Kind::Engine { url: url.clone() }
            },
            baseline,
            rounds: Vec::new(),
        });
    }
    if measured
        .iter()
        .any(|m| m.baseline.as_deref() == Some("raw-sqlite"))
    {
        measured.push(Measured {
            name: "raw-sqlite".into(),
            kind: Kind::RawSqlite,
            baseline: None,
            rounds: Vec::new(),
        });
    }
    // With `--against`, no raw baseline: every ratio is against the target.
    if external.is_none()
        && let Some((_, pg, _)) = urls
            .iter()
            .find(|(_, u, _)| taskstate::parse_url(u).is_ok_and(|p| p.engine == "postgres"))
    {
        measured.push(Measured {
            name: "raw-postgres".into(),
            kind: Kind::RawPostgres { url: pg.clone() },
            baseline: None,
            rounds: Vec::new(),
        });
    }
    if let Some(ext) = external {
        measured.push(Measured {
            name: ext.name.clone(),
            kind: Kind::External(Rc::new(RefCell::new(ext))),
            baseline: None,
            rounds: Vec::new(),
        });
    }
    let bar = progress_bar(None);
    bar.set_message("building workload");
    let w = Workload::build(n, seed);
    let min_time = std::time::Duration::from_millis(min_time_ms);
    // The machine's own scaling at the start and at the end: on a shared
    // VM the other cores are not always free.
    let reference = |when: &str| {
        (threads > 1).then(|| {
            bar.set_message(format!("machine reference ({when})"));
            bench::machine_scaling(threads, std::time::Duration::from_millis(100))
        })
    };
    let reference_before = reference("before");
    for round in 0..repeat {
        // Targets interleaved per operation, their order rotated each
        // round: a noisy moment of the machine hits every target, and none
        // always runs first.
        let k = measured.len();
        let order: Vec<usize> = (0..k).map(|i| (i + round) % k).collect();
        let mut passes = vec![1];
        if threads > 1 {
            passes.push(threads);
        }
        let mut by_target: Vec<Vec<OpResult>> = vec![Vec::new(); k];
        for t in passes {
            let options = bench::RunOptions {
                threads: t,
                reads: true,
                min_time,
            };
            let label = format!("round {} of {repeat}, T={t}", round + 1);
            for (idx, results) in
                run_pass(&measured, &order, dir.path(), &w, &options, &label, &bar)?
            {
                by_target[idx].extend(results);
            }
        }
        for (m, results) in measured.iter_mut().zip(by_target) {
            m.rounds.push(results);
        }
    }
    let reference_after = reference("after");
    bar.finish_and_clear();

    let mut meta = machine_meta(n, threads, seed);
    meta["repeat"] = json!(repeat);
    meta["min_time_ms"] = json!(min_time_ms);
    if let (Some(before), Some(after)) = (reference_before, reference_after) {
        meta["machine_scaling"] = json!({"threads": threads, "before": before, "after": after});
    }
    let mut table = Vec::new();
    let _ = writeln!(
        table,
        "taskstate bench: N={n}, threads={threads}, {repeat} rounds (targets interleaved), each op timed >= {min_time_ms} ms, {} build, {} cores, {}",
        meta["build"].as_str().unwrap_or("?"),
        meta["cores"],
        meta["cpu"].as_str().unwrap_or("unknown cpu")
    );
    print_table(&measured, &mut table).map_err(|e| format!("writing the table: {e}"))?;
    let _ = writeln!(
        table,
        "median of the rounds [min-max]; a ratio is the median of the per-round ratios [their range]"
    );
    if let (Some(before), Some(after)) = (reference_before, reference_after) {
        let _ = writeln!(
            table,
            "machine reference: {threads} threads of plain arithmetic ran {before:.2}x one thread before the rounds, {after:.2}x after"
        );
    }
    emit(&String::from_utf8_lossy(&table))?;
    if let Some(path) = json_path.as_deref() {
        let doc = report_json(&measured, meta);
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        write_atomically(path, |out| {
            out.write_all(text.as_bytes())
                .map_err(|e| Failure::Message(format!("cannot write {}: {e}", path.display())))
        })?;
        emit(&format!("results written to {}\n", path.display()))?;
    }
    let failed: Vec<String> = measured
        .iter()
        .flat_map(|m| m.rounds.iter().flatten())
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

#[cfg(all(test, feature = "sqlite"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn db_files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("sqlite-"))
            .collect();
        v.sort();
        v
    }

    /// The bench's own SQLite store is a new file each pass, removed
    /// after it, as the raw baseline's is: never a purged file whose freed
    /// pages the next pass reuses in scattered order.
    #[test]
    fn own_sqlite_store_is_a_new_file_each_pass() {
        let dir = tempfile::tempdir().unwrap();
        let w = Workload::build(10, 1);
        let m = Measured {
            name: "sqlite".into(),
            kind: Kind::OwnSqlite,
            baseline: Some("raw-sqlite".into()),
            rounds: Vec::new(),
        };
        let options = bench::RunOptions::default();
        let first = Store::open(&m, dir.path(), "a", &w).unwrap();
        assert!(
            first
                .run_op("sqlite", &w, Op::UpsertInvocations, &options)
                .unwrap()
                .validation
                .is_ok()
        );
        assert!(db_files(dir.path()).contains(&"sqlite-a.db".to_owned()));
        first.close().unwrap();
        assert_eq!(db_files(dir.path()), Vec::<String>::new());
        let second = Store::open(&m, dir.path(), "b", &w).unwrap();
        assert_eq!(db_files(dir.path())[0], "sqlite-b.db");
        second.close().unwrap();
        assert_eq!(db_files(dir.path()), Vec::<String>::new());
    }

    /// Writes repeat as whole passes on new empty stores until each has
    /// run the minimum time, every pass read back; the reads run once on
    /// the last pass's stores; no store of a pass is left behind.
    #[test]
    fn writes_repeat_on_new_stores_until_min_time() {
        let dir = tempfile::tempdir().unwrap();
        let target = |name: &str, kind: Kind| Measured {
            name: name.into(),
            kind,
            baseline: None,
            rounds: Vec::new(),
        };
        let measured = vec![
            target(
                "memory",
                Kind::Engine {
                    url: "memory://".into(),
                },
            ),
            target("sqlite", Kind::OwnSqlite),
        ];
        let options = pass_options(30);
        let out = one_pass(&measured, &[1, 0], dir.path(), 20, 30);
        let order: Vec<usize> = out.iter().map(|(idx, _)| *idx).collect();
        assert_eq!(order, vec![1, 0]);
        for (idx, results) in &out {
            let ops: Vec<Op> = results.iter().map(|r| r.op).collect();
            assert_eq!(ops, bench::pass_ops(&options));
            for r in results {
                assert_eq!(r.validation, Ok(()), "{} {}", r.engine, r.op);
                assert!(r.seconds >= 0.03, "{} {}: {} s", r.engine, r.op, r.seconds);
            }
            for r in results.iter().filter(|r| r.op.is_write()) {
                let per_pass = if r.op == Op::AddHistories { 60 } else { 20 };
                assert_eq!(r.n % per_pass, 0, "{} {}: {}", r.engine, r.op, r.n);
                // Twenty writes into memory take microseconds: many passes.
                if *idx == 0 {
                    assert!(r.n >= 10 * per_pass, "{}: {} items", r.op, r.n);
                }
            }
        }
        assert_eq!(db_files(dir.path()), Vec::<String>::new());
    }

    /// One-thread options with reads, each op timed `min_ms`.
    fn pass_options(min_ms: u64) -> bench::RunOptions {
        bench::RunOptions {
            threads: 1,
            reads: true,
            min_time: std::time::Duration::from_millis(min_ms),
        }
    }

    /// One [`run_pass`] of `measured` in `order` on a workload of `n`
    /// (seed 1), each op timed `min_ms`.
    fn one_pass(
        measured: &[Measured],
        order: &[usize],
        dir: &Path,
        n: usize,
        min_ms: u64,
    ) -> Vec<(usize, Vec<OpResult>)> {
        let w = Workload::build(n, 1);
        run_pass(
            measured,
            order,
            dir,
            &w,
            &pass_options(min_ms),
            "t",
            &ProgressBar::hidden(),
        )
        .unwrap()
    }

    /// What [`fake_pass`] saw.
    struct FakePass {
        /// Runs of consecutive opens by one target: (target, count).
        runs: Vec<(String, usize)>,
        /// Each target's own log lines (`open`, `close`).
        own: Vec<Vec<String>>,
        /// The write results of both.
        writes: Vec<OpResult>,
    }

    /// Runs one pass of two external targets whose write passes take
    /// `seconds` each by their own account (min_time 4 ms), logging their
    /// stores to one file.
    fn fake_pass(a: (&str, f64), b: (&str, f64)) -> FakePass {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake_bench_target.sh");
        let fake = |(name, seconds): (&str, f64)| {
            let reply = format!(r#"{{"items":10,"seconds":{seconds},"error":null}}"#);
            let command = format!(
                "sh '{}' {name} '{}' '{reply}'",
                script.display(),
                log.display()
            );
            Measured {
                name: name.into(),
                kind: Kind::External(Rc::new(RefCell::new(
                    External::spawn(&command, 10, std::time::Duration::from_secs(60)).unwrap(),
                ))),
                baseline: None,
                rounds: Vec::new(),
            }
        };
        let measured = vec![fake(a), fake(b)];
        let out = one_pass(&measured, &[0, 1], dir.path(), 10, 4);
        drop(measured);
        // "NAME {request}" per line: keep (name, cmd) of open and close.
        let text = std::fs::read_to_string(&log).unwrap();
        let log: Vec<(String, String)> = text
            .lines()
            .filter_map(|l| {
                let (name, request) = l.split_once(' ')?;
                let request: serde_json::Value = serde_json::from_str(request).ok()?;
                let cmd = request["cmd"].as_str()?;
                matches!(cmd, "open" | "close").then(|| (name.to_owned(), cmd.to_owned()))
            })
            .collect();
        let mut runs: Vec<(String, usize)> = Vec::new();
        for (t, _) in log.iter().filter(|(_, cmd)| cmd == "open") {
            match runs.last_mut() {
                Some((name, count)) if name == t => *count += 1,
                _ => runs.push((t.clone(), 1)),
            }
        }
        let own = [a.0, b.0]
            .iter()
            .map(|name| {
                log.iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, cmd)| cmd.clone())
                    .collect()
            })
            .collect();
        let writes = out
            .into_iter()
            .flat_map(|(_, r)| r)
            .filter(|r| r.op.is_write())
            .collect();
        FakePass { runs, own, writes }
    }

    /// Write passes alternate between targets in turns (A B B A A B B A),
    /// not pass by pass: two targets whose passes take 0.1 ms need ten a
    /// turn, and the log shows five runs of one target's passes (the
    /// turns, adjacent ones merged), every store closed before the next
    /// opens.
    #[test]
    fn write_passes_alternate_in_turns() {
        let FakePass { runs, own, writes } = fake_pass(("a", 0.0001), ("b", 0.0001));
        let runs: Vec<(&str, usize)> = runs.iter().map(|(n, c)| (n.as_str(), *c)).collect();
        assert_eq!(
            runs,
            [("a", 10), ("b", 20), ("a", 20), ("b", 20), ("a", 10)]
        );
        for r in &writes {
            // 1 ms a turn at 0.1 ms a pass: ten passes, four turns.
            assert_eq!(r.n, 4 * 10 * 10, "{} {}", r.engine, r.op);
        }
        let want: Vec<&str> = (0..40).flat_map(|_| ["open", "close"]).collect();
        for lines in own {
            assert_eq!(lines, want);
        }
    }

    /// A target whose one pass already runs min_time takes one turn and
    /// skips the rest (a pass of SQLite writes at N = 20,000 lasts
    /// seconds); the other still takes all four.
    #[test]
    fn a_slow_target_takes_one_write_turn() {
        let FakePass { runs, own, writes } = fake_pass(("fast", 0.0001), ("slow", 0.01));
        let runs: Vec<(&str, usize)> = runs.iter().map(|(n, c)| (n.as_str(), *c)).collect();
        assert_eq!(runs, [("fast", 10), ("slow", 1), ("fast", 30)]);
        for r in &writes {
            let passes = if r.engine == "slow" { 1 } else { 40 };
            assert_eq!(r.n, 10 * passes, "{} {}", r.engine, r.op);
        }
        assert_eq!(own[1], ["open", "close"]);
    }

    /// Reads alternate between targets slice by slice, each target's
    /// order reversed every other slice, so every target gets every slice.
    #[test]
    fn read_slices_alternate_forwards_and_backwards() {
        assert_eq!(slice_turns(2), vec![0, 1, 1, 0, 0, 1, 1, 0]);
        assert_eq!(slice_turns(3), vec![0, 1, 2, 2, 1, 0, 0, 1, 2, 2, 1, 0]);
        assert_eq!(slice_turns(1), vec![0; READ_SLICES as usize]);
        assert_eq!(slice_turns(0), Vec::<usize>::new());
    }
}
