//! `taskstate prune`: delete finished, old state (SPEC §10) while workers
//! keep writing, with a progress bar on a terminal and a summary (or JSON)
//! at the end.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use taskstate::{PruneCounts, PruneOptions, PruneProgress, SpaceReport, Timestamp, redact_url};

use crate::{CliResult, emit, open_for_reading, open_url};

// What `taskstate prune` was asked (the subcommand's help is its
// variant's in `main.rs`).
#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("cutoff").required(true).args(["older_than", "before"]))]
pub(crate) struct PruneArgs {
    /// Store URL.
    pub url: String,
    /// Cutoff as an age: 30d, 12h, 90m, 45s, 2w.
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub older_than: Option<Duration>,
    /// Cutoff as an instant: 2025-01-01T00:00:00Z, or a date (its midnight UTC).
    #[arg(long, value_name = "INSTANT", value_parser = parse_instant)]
    pub before: Option<Timestamp>,
    /// Report what would go; delete nothing (opens the store read-only).
    #[arg(long)]
    pub dry_run: bool,
    /// Trees decided and deleted per transaction (1 to 100,000): writers
    /// wait for one chunk at most.
    #[arg(long, default_value_t = taskstate::prune::DEFAULT_CHUNK, value_parser = crate::bounded::<1, 100_000>)]
    pub chunk: usize,
    /// SQLite: VACUUM afterwards to give the space back (rewrites the
    /// file, needs as much free disk again, blocks writers meanwhile).
    #[arg(long, conflicts_with = "dry_run")]
    pub vacuum: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// A duration such as `30d`, `12h`, `90m`, `45s` or `2w` (one number,
/// one unit), for `--older-than`.
pub(crate) fn parse_age(s: &str) -> Result<Duration, String> {
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{s:?} has no unit (s, m, h, d or w), e.g. 30d"))?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a number followed by a unit, e.g. 30d"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        other => return Err(format!("unknown unit {other:?} in {s:?} (s, m, h, d or w)")),
    };
    // Up to 100 years: anything longer is a typo, and it keeps the
    // arithmetic far from overflowing.
    n.checked_mul(secs)
        .filter(|t| *t <= 100 * 366 * 86_400)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is longer than 100 years"))
}

/// An instant for `--before`: Python `isoformat()` text (`Z` allowed), or
/// a plain date meaning its midnight UTC.
pub(crate) fn parse_instant(s: &str) -> Result<Timestamp, String> {
    let text = if s.len() == 10 {
        format!("{s}T00:00:00+00:00")
    } else {
        s.to_owned()
    };
    Timestamp::parse(&text).map_err(|e| e.to_string())
}

fn cutoff(args: &PruneArgs) -> Result<Timestamp, String> {
    match (args.before, args.older_than) {
        (Some(t), None) => Ok(t),
        (None, Some(age)) => {
            let micros = i64::try_from(age.as_micros())
                .map_err(|_| "--older-than is too long".to_owned())?;
            Ok(Timestamp::now().add_micros(-micros))
        }
        _ => Err("give exactly one of --older-than and --before".into()),
    }
}

/// A bar over the scan's way from the oldest row to the cutoff, with what
/// went so far; hidden unless stderr is a terminal.
fn bar(dry_run: bool) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let verb = if dry_run { "would go" } else { "pruned" };
    ProgressBar::new(1000).with_style(
        ProgressStyle::with_template(&format!(
            "[{{bar:40}}] {{percent:>3}}% {verb}: {{msg}} ({{elapsed}}, eta {{eta}})"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    )
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

pub(crate) fn cmd_prune(args: &PruneArgs) -> CliResult {
    let cutoff = cutoff(args)?;
    let options = PruneOptions::new(cutoff)
        .dry_run(args.dry_run)
        .chunk(args.chunk);
    // Refused before the store is opened (a future cutoff, a bad chunk).
    options.check().map_err(|e| e.to_string())?;
    // A dry run only reads: the store is opened read-only (SPEC §6). A real
    // run must find an existing store too (opening for writing would
    // create an empty one), so it is checked read-only first.
    let store = open_for_reading(&args.url)?;
    let store = if args.dry_run {
        store
    } else {
        drop(store);
        open_url(&args.url)?
    };
    let shown = redact_url(&args.url);
    let bar = bar(args.dry_run);
    let started = Instant::now();
    let mut last: Option<PruneProgress> = None;
    let counts = store
        .prune(&options, &mut |p| {
            bar.set_position((p.fraction() * 1000.0) as u64);
            bar.set_message(format!(
                "{} trees, {} invocations",
                p.counts.trees, p.counts.invocations
            ));
            last = Some(p.clone());
        })
        .map_err(|e| format!("{shown}: prune: {e}"));
    bar.finish_and_clear();
    let counts = counts?;
    let seconds = started.elapsed().as_secs_f64();
    let space: Option<SpaceReport> = if args.vacuum {
        store
            .reclaim_space()
            .map_err(|e| format!("{shown}: reclaim space: {e}"))?
    } else {
        None
    };
    let (kept, examined, chunks) = last
        .as_ref()
        .map_or((0, 0, 0), |p| (p.kept_trees, p.examined, p.chunks));
    if args.json {
        let fields: serde_json::Map<String, serde_json::Value> = counts
            .fields()
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        let doc = json!({
            "url": shown,
            "cutoff": cutoff.to_string(),
            "dry_run": args.dry_run,
            "chunk": args.chunk,
            if args.dry_run { "would_delete" } else { "deleted" }: fields,
            "kept_trees": kept,
            "examined_history_rows": examined,
            "chunks": chunks,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "invocations_per_second": rate(counts.invocations, seconds),
            "vacuum": space.map(|s| json!({"before_bytes": s.before_bytes, "after_bytes": s.after_bytes})),
        });
        return emit(&format!("{doc}\n"));
    }
    emit(&summary(
        args, &shown, cutoff, &counts, kept, examined, chunks, seconds, space,
    ))
}

fn rate(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        (n as f64 / seconds).round()
    } else {
        0.0
    }
}

#[allow(clippy::too_many_arguments)]
fn summary(
    args: &PruneArgs,
    shown: &str,
    cutoff: Timestamp,
    c: &PruneCounts,
    kept: u64,
    examined: u64,
    chunks: u64,
    seconds: f64,
    space: Option<SpaceReport>,
) -> String {
    let head = if args.dry_run {
        "dry run: would delete"
    } else {
        "deleted"
    };
    let mut out = format!(
        "{shown}: {head} state that ended at or before {cutoff}\n  \
         {} trees: {} invocations, {} history rows, {} results, {} exceptions, \
         {} workflow runs, {} sub-invocation links, {} workflow data values\n  \
         kept {kept} trees with live or newer state; examined {examined} history rows \
         in {chunks} chunks of up to {} trees, {seconds:.2} s ({} invocations/s)\n",
        c.trees,
        c.invocations,
        c.history,
        c.results,
        c.exceptions,
        c.workflow_runs,
        c.sub_invocations,
        c.workflow_data,
        args.chunk,
        rate(c.invocations, seconds),
    );
    match (args.vacuum, space) {
        (true, Some(s)) => out.push_str(&format!(
            "  space: {} → {} after VACUUM\n",
            mb(s.before_bytes),
            mb(s.after_bytes)
        )),
        (true, None) => {
            out.push_str("  space: nothing to reclaim on this engine (memory frees at once; PostgreSQL autovacuum reuses the space)\n")
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(parse_age("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_age("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_age("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_age("0s"), Ok(Duration::ZERO));
        for bad in [
            "30",
            "d",
            "30x",
            "-1d",
            "1.5d",
            "",
            "99999999999999999999d",
            "40000d",
        ] {
            assert!(parse_age(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn instants() {
        let t = parse_instant("2025-01-01").unwrap();
        assert_eq!(t.to_string(), "2025-01-01T00:00:00+00:00");
        assert_eq!(
            parse_instant("2025-01-01T00:00:00Z").unwrap().micros(),
            t.micros()
        );
        assert!(parse_instant("2025-13-01").is_err());
        assert!(parse_instant("yesterday").is_err());
    }
}
