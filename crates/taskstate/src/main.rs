//! The `taskstate` command-line tool: benchmark engines, export, import,
//! copy, inspect and prune stores. Every failure is one line on stderr: exit
//! status 1, or 2 for a usage error. Output never panics: a closed pipe
//! ends the command quietly, any other write error is a failure line.

/// Small allocations on every write path: mimalloc, not the system
/// allocator (see this crate's Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use taskstate::{InvocationId, Kind, StateBackend, copy, export, inspect, open, redact_url};

#[path = "cli/bench_against.rs"]
mod bench_against_cmd;
#[path = "cli/bench.rs"]
mod bench_cmd;
#[path = "cli/bench_prune.rs"]
mod bench_prune_cmd;
#[cfg(feature = "serve")]
#[path = "cli/bench_serve.rs"]
mod bench_serve_cmd;
#[path = "cli/prune.rs"]
mod prune_cmd;
#[cfg(feature = "serve")]
#[path = "cli/serve.rs"]
mod serve_cmd;

use bench_cmd::cmd_bench;
use prune_cmd::cmd_prune;

#[derive(Parser)]
#[command(
    name = "taskstate",
    version,
    about = "State of a distributed task system (pynenc-compatible)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the reference workload (SPEC §7) on engines and a raw-SQLite
    /// baseline; `bench prune` measures retention instead.
    #[command(args_conflicts_with_subcommands = true)]
    Bench {
        #[command(subcommand)]
        what: Option<BenchWhat>,
        /// Engine URL to measure (repeatable); default: memory:// and a SQLite file in a temp dir.
        #[arg(long = "engine", value_name = "URL")]
        engines: Vec<String>,
        /// Number of invocations (1 to 2,000,000: the workload is built in memory).
        #[arg(long, default_value_t = 2000, value_parser = bounded::<1, 2_000_000>)]
        n: usize,
        /// Also run every operation with T threads (1 to 256) sharing one engine.
        #[arg(long, default_value_t = 1, value_parser = bounded::<1, 256>)]
        threads: usize,
        /// Rounds (1 to 100): every target runs every operation once per
        /// round, targets interleaved; figures are medians over rounds.
        #[arg(long, default_value_t = 3, value_parser = bounded::<1, 100>)]
        repeat: usize,
        /// Every timed operation repeats until it has run this many
        /// milliseconds (0 to 60000): reads over the workload, writes as
        /// whole passes on new empty stores.
        #[arg(long, default_value_t = 200, value_parser = bounded::<0, 60_000>)]
        min_time_ms: usize,
        /// Write the results as JSON to PATH.
        #[arg(long, value_name = "PATH")]
        json: Option<PathBuf>,
        /// Seed of the workload's uuids (default: from the clock).
        #[arg(long)]
        seed: Option<u64>,
        /// Compare every engine with a target served by this command (run
        /// by `sh -c`, driven op by op in turn with the engines) instead of
        /// a raw baseline; `benches/reference/pynenc_target.py` serves
        /// pynenc's own backends.
        #[arg(long, value_name = "COMMAND")]
        against: Option<String>,
        /// Seconds (1 to 86400) the --against target may take to answer one
        /// request (a write pass or a timed read) before the bench stops.
        #[arg(long, value_name = "SECS", default_value_t = 600, value_parser = bounded::<1, 86_400>)]
        against_timeout: usize,
    },
    /// Write everything a store holds as one JSON document (SPEC §9).
    Export {
        /// Store URL.
        url: String,
        /// Output file (default: stdout).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Salvage: leave out rows that cannot be decoded, listing each on
        /// stderr, instead of failing.
        #[arg(long)]
        skip_corrupt: bool,
    },
    /// Load an export document into a store (empty unless --merge).
    Import {
        /// Store URL.
        url: String,
        /// Export document.
        file: PathBuf,
        /// Allow importing into a store that already holds data.
        #[arg(long)]
        merge: bool,
    },
    /// Copy all state from one store to another, verifying counts.
    Copy {
        /// Source URL.
        from: String,
        /// Destination URL (empty unless --merge).
        to: String,
        /// Rows per page: each is read from the source's snapshot and written
        /// to the destination in one transaction (1 to 100,000).
        #[arg(long, default_value_t = 5000, value_parser = bounded::<1, 100_000>)]
        batch: usize,
        /// Allow copying into a store that already holds data.
        #[arg(long)]
        merge: bool,
        /// Salvage: do not copy rows of the source that cannot be decoded,
        /// listing each on stderr, instead of failing.
        #[arg(long)]
        skip_corrupt: bool,
    },
    /// Show what a store holds: counts, recent invocations, one invocation or workflow.
    Inspect {
        /// Store URL.
        url: String,
        /// Show one invocation's details and status timeline.
        #[arg(long, value_name = "ID")]
        invocation: Option<String>,
        /// Show one workflow's tree.
        #[arg(long, value_name = "ID")]
        workflow: Option<String>,
        /// How many recent invocations to list (0 to 100,000).
        #[arg(long, default_value_t = 10, value_parser = bounded::<0, 100_000>)]
        recent: usize,
    },
    /// Delete finished, old state (SPEC §10): whole workflow trees whose
    /// invocations all ended by the cutoff, and orphan rows as old; app
    /// infos and runner contexts stay. Workers may keep writing.
    Prune(prune_cmd::PruneArgs),
    /// Bring a store's schema up to this version: adds taskstate's indexes
    /// and latest-status table to a pynenc file (no row of pynenc's
    /// changes); a store already current is left alone.
    Upgrade {
        /// Store URL (must exist: an upgrade never creates a store).
        url: String,
    },
    /// Serve a read-only web monitor of a store (pages and their JSON under
    /// /api/): invocations by latest status, details, workflow trees,
    /// runners, a timeline. Listens on loopback unless --bind says otherwise.
    #[cfg(feature = "serve")]
    Serve(serve_cmd::ServeArgs),
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Build a store of N invocations (most finished long ago), prune it
    /// at 30 days while a writer calls add_histories, and report the
    /// prune's time and rate, the writer's p50/p99 latency, and the
    /// store's size before, after, and after reclaiming space.
    Prune(bench_prune_cmd::BenchPruneArgs),
    /// Serve a store (built with --n invocations if empty) and drive every
    /// monitor page with concurrent clients: p50/p90/p99 and requests/s.
    #[cfg(feature = "serve")]
    Serve(bench_serve_cmd::BenchServeArgs),
}

/// Help and version print as clap prints them; any other usage error is one
/// line on stderr and exit status 2.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let text = e.to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("bad usage");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // "the following required arguments were not provided:" names them on
    // the next line.
    let first = match (first.ends_with(':'), lines.next()) {
        (true, Some(next)) => format!("{first} {next}"),
        _ => first.to_owned(),
    };
    let _ = writeln!(
        std::io::stderr(),
        "taskstate: usage: {first} (see taskstate --help)"
    );
    ExitCode::from(USAGE)
}

/// A whole number in `LO..=HI`, or a one-line usage error (exit status 2).
fn bounded<const LO: usize, const HI: usize>(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number"))?;
    if (LO..=HI).contains(&n) {
        Ok(n)
    } else {
        Err(format!("{n} is out of range {LO}..={HI}"))
    }
}

/// Why a command failed.
enum Failure {
    /// A one-line message for stderr (exit status 1).
    Message(String),
    /// stdout was closed by its reader (`taskstate inspect … | head -1`):
    /// end quietly, as Unix tools do.
    BrokenPipe,
}

impl From<String> for Failure {
    fn from(m: String) -> Self {
        Failure::Message(m)
    }
}

impl From<&str> for Failure {
    fn from(m: &str) -> Self {
        Failure::Message(m.to_owned())
    }
}

/// An I/O error writing `what` as a failure (a closed pipe ends quietly).
fn io_failure(what: &str, e: &std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Failure::BrokenPipe
    } else {
        Failure::Message(format!("writing {what}: {e}"))
    }
}

/// Writes `text` to stdout, flushed; never panics (`println!` does on a
/// closed pipe or a full disk).
fn emit(text: &str) -> CliResult {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| io_failure("stdout", &e))
}

type CliResult = Result<(), Failure>;

/// Exit status of a usage error (a bad option or argument).
const USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let result = match cli.command {
        Command::Bench {
            what: Some(BenchWhat::Prune(args)),
            ..
        } => bench_prune_cmd::cmd_bench_prune(&args),
        #[cfg(feature = "serve")]
        Command::Bench {
            what: Some(BenchWhat::Serve(args)),
            ..
        } => bench_serve_cmd::cmd_bench_serve(&args),
        Command::Bench {
            what: None,
            engines,
            n,
            threads,
            repeat,
            min_time_ms,
            json,
            seed,
            against,
            against_timeout,
        } => cmd_bench(bench_cmd::BenchArgs {
            engines,
            n,
            threads,
            repeat,
            min_time_ms: min_time_ms as u64,
            json,
            seed,
            against,
            against_timeout: std::time::Duration::from_secs(against_timeout as u64),
        }),
        Command::Export {
            url,
            output,
            skip_corrupt,
        } => cmd_export(&url, output.as_deref(), skip_corrupt),
        Command::Import { url, file, merge } => cmd_import(&url, &file, merge),
        Command::Copy {
            from,
            to,
            batch,
            merge,
            skip_corrupt,
        } => cmd_copy(&from, &to, batch, merge, skip_corrupt),
        Command::Inspect {
            url,
            invocation,
            workflow,
            recent,
        } => cmd_inspect(&url, invocation, workflow, recent),
        Command::Prune(args) => cmd_prune(&args),
        Command::Upgrade { url } => cmd_upgrade(&url),
        #[cfg(feature = "serve")]
        Command::Serve(args) => serve_cmd::cmd_serve(&args),
    };
    match result {
        Ok(()) | Err(Failure::BrokenPipe) => ExitCode::SUCCESS,
        Err(Failure::Message(e)) => {
            // stderr itself may be closed: nothing more to say then.
            let _ = writeln!(std::io::stderr(), "taskstate: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn open_url(url: &str) -> Result<Box<dyn StateBackend>, String> {
    open(url).map_err(|e| format!("{}: {e}", redact_url(url)))
}

/// Opens a store the command only reads: read-only, never created or
/// migrated (SPEC §6).
fn open_for_reading(url: &str) -> Result<Box<dyn StateBackend>, String> {
    taskstate::open_read_only(url).map_err(|e| format!("{}: {e}", redact_url(url)))
}

/// Opens the store read-only first (so a missing store is "no such store",
/// never created), then for writing, which migrates it.
fn cmd_upgrade(url: &str) -> CliResult {
    drop(open_for_reading(url)?);
    let store = open_url(url)?;
    emit(&format!(
        "{}: up to date ({} engine, schema of this taskstate)\n",
        redact_url(url),
        store.engine_name()
    ))
}

/// Refuses an export file that is the SQLite store being exported: the
/// rename at the end would replace the database with its JSON.
fn refuse_own_source(url: &str, output: &Path) -> CliResult {
    if let Ok(parsed) = taskstate::parse_url(url)
        && parsed.engine == "sqlite"
        && let Ok(path) = parsed.decoded_body()
        && let (Ok(a), Ok(b)) = (std::fs::canonicalize(&path), std::fs::canonicalize(output))
        && a == b
    {
        return Err(format!(
            "refusing to write the export over its own source {}",
            output.display()
        )
        .into());
    }
    Ok(())
}

/// A progress bar on stderr when it is a terminal, else nothing.
fn progress_bar(len: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    match len {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template("{msg:>14} [{bar:40}] {pos}/{len} ({eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    }
}

// ---- bench ---------------------------------------------------------------

/// Whether `e` (or a cause of it) is a write to a closed pipe.
fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Writes through `write` to `path` via a temp file and a rename, so a
/// failure never leaves a truncated file behind.
fn write_atomically<T>(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let tmp = path.with_extension("tmp-taskstate");
    let written = (|| {
        let file = std::fs::File::create(&tmp)
            .map_err(|e| Failure::Message(format!("cannot write {}: {e}", path.display())))?;
        let mut out = std::io::BufWriter::new(file);
        let v = write(&mut out)?;
        let file = out.into_inner().map_err(|e| {
            Failure::Message(format!("cannot write {}: {}", path.display(), e.error()))
        })?;
        file.sync_all()
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| Failure::Message(format!("cannot write {}: {e}", path.display())))?;
        Ok(v)
    })();
    if written.is_err() {
        // Nothing half-written stays behind (a full disk, a vanished dir).
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Lists a row skipped as corrupt on stderr (never panics) and counts it.
fn skipped_line(count: &mut u64, kind: Kind, e: &taskstate::Error) {
    *count += 1;
    let _ = writeln!(
        std::io::stderr(),
        "taskstate: skipped a corrupt {kind} row: {e}"
    );
}

fn skipped_total(count: u64) {
    if count > 0 {
        let _ = writeln!(
            std::io::stderr(),
            "taskstate: note: {count} corrupt rows were skipped (listed above)"
        );
    }
}

fn cmd_export(url: &str, output: Option<&Path>, skip_corrupt: bool) -> CliResult {
    if let Some(out) = output {
        refuse_own_source(url, out)?;
    }
    let b = open_for_reading(url)?;
    let bar = progress_bar(Some(0));
    let mut on_progress = |phase: &str, done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
        bar.set_message(phase.to_owned());
    };
    let failed = |e: taskstate::Error| {
        if is_broken_pipe(&e) {
            Failure::BrokenPipe
        } else {
            Failure::Message(format!("{}: {e}", redact_url(url)))
        }
    };
    let mut skipped = 0u64;
    let mut on_skipped = |kind: Kind, e: &taskstate::Error| skipped_line(&mut skipped, kind, e);
    let salvage: Option<&mut export::OnSkipped<'_>> = if skip_corrupt {
        Some(&mut on_skipped)
    } else {
        None
    };
    match output {
        Some(p) => write_atomically(p, |out| {
            export::export_with(b.as_ref(), &mut *out, &mut on_progress, salvage)
                .and_then(|(_, w)| {
                    w.write_all(b"\n").map_err(|e| taskstate::Error::Storage {
                        message: format!("writing the export document: {e}"),
                        source: Some(Box::new(e)),
                    })
                })
                .map_err(failed)
        })?,
        None => {
            let stdout = std::io::stdout().lock();
            let out = std::io::BufWriter::new(stdout);
            let (_, mut out) =
                export::export_with(b.as_ref(), out, &mut on_progress, salvage).map_err(failed)?;
            out.write_all(b"\n")
                .and_then(|()| out.flush())
                .map_err(|e| io_failure("stdout", &e))?;
        }
    }
    bar.finish_and_clear();
    skipped_total(skipped);
    Ok(())
}

fn cmd_import(url: &str, file: &Path, merge: bool) -> CliResult {
    let b = open_url(url)?;
    let bar = progress_bar(Some(0));
    let open = || {
        std::fs::File::open(file)
            .map_err(|e| taskstate::Error::invalid(format!("cannot read {}: {e}", file.display())))
    };
    let report = export::import_from(b.as_ref(), open, merge, &mut |phase, done, total| {
        bar.set_length(total);
        bar.set_position(done);
        bar.set_message(phase.to_owned());
    })
    .map_err(|e| format!("import {} into {}: {e}", file.display(), redact_url(url)))?;
    bar.finish_and_clear();
    let w = &report.written;
    let mut text = format!(
        "imported {} invocations and {} history records into {}: {} rows written, {} replaced a row already stored\n",
        w.get(Kind::Invocation),
        w.get(Kind::History),
        redact_url(url),
        w.rows().iter().map(|(_, n)| n).sum::<u64>(),
        report.replaced(),
    );
    for (name, n) in w.rows() {
        text.push_str(&format!("  {name:<26} {n:>12}\n"));
    }
    emit(&text)
}

fn cmd_copy(from: &str, to: &str, batch: usize, merge: bool, skip_corrupt: bool) -> CliResult {
    let src = open_for_reading(from)?;
    let dst = open_url(to)?;
    let bar = progress_bar(Some(0));
    let mut skipped = 0u64;
    let mut on_skipped = |kind: Kind, e: &taskstate::Error| skipped_line(&mut skipped, kind, e);
    let salvage: Option<&mut export::OnSkipped<'_>> = if skip_corrupt {
        Some(&mut on_skipped)
    } else {
        None
    };
    let counts = copy::copy_with(
        src.as_ref(),
        dst.as_ref(),
        batch,
        merge,
        &mut |phase, done, total| {
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(phase.to_owned());
        },
        salvage,
    )
    .map_err(|e| format!("copy {} -> {}: {e}", redact_url(from), redact_url(to)))?;
    bar.finish_and_clear();
    let mut report = format!(
        "copied {} -> {}{}\n",
        redact_url(from),
        redact_url(to),
        if merge {
            " (merged)"
        } else {
            ", counts verified"
        }
    );
    for (name, n) in counts.rows() {
        report.push_str(&format!("  {name:<26} {n:>12}\n"));
    }
    skipped_total(skipped);
    emit(&report)
}

fn cmd_inspect(
    url: &str,
    invocation: Option<String>,
    workflow: Option<String>,
    recent: usize,
) -> CliResult {
    let b = open_for_reading(url)?;
    let report = match (invocation, workflow) {
        (Some(_), Some(_)) => return Err("give --invocation or --workflow, not both".into()),
        (Some(id), None) => inspect::invocation(b.as_ref(), &InvocationId::new(id)),
        (None, Some(id)) => inspect::workflow(b.as_ref(), &InvocationId::new(id)),
        (None, None) => inspect::summary(b.as_ref(), recent),
    }
    .map_err(|e| format!("{}: {e}", redact_url(url)))?;
    emit(&report)
}
