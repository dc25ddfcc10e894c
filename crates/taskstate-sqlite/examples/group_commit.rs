//! Shows group commit at work: T threads writing results one call at a
//! time into one engine, with the number of commits they shared.
//!
//! `cargo run --release -p taskstate-sqlite --example group_commit -- [THREADS] [OPS] [full]`

use std::time::Instant;

use taskstate_core::{InvocationId, StateBackend};
use taskstate_sqlite::{SqliteBackend, SqliteOptions, Synchronous};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let threads: usize = args.first().map_or(Ok(4), |a| a.parse())?;
    let ops: usize = args.get(1).map_or(Ok(20_000), |a| a.parse())?;
    let full = args.get(2).is_some_and(|a| a == "full");
    let dir = tempfile::tempdir()?;
    let options = SqliteOptions::default().synchronous(if full {
        Synchronous::Full
    } else {
        Synchronous::Normal
    });
    let b = SqliteBackend::open_with(dir.path().join("gc.db"), &options)?;
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let b = &b;
            s.spawn(move || {
                for i in 0..ops / threads {
                    if let Err(e) =
                        b.set_result(&InvocationId::new(format!("t{t}-{i}")), "{\"ok\": true}")
                    {
                        eprintln!("write failed: {e}");
                        std::process::exit(1);
                    }
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let stats = b.write_stats();
    println!(
        "threads={threads} synchronous={} ops={} {:.0} ops/s, {} transactions, {:.2} ops per commit",
        if full { "FULL" } else { "NORMAL" },
        stats.operations,
        stats.operations as f64 / secs,
        stats.transactions,
        stats.operations as f64 / stats.transactions as f64
    );
    Ok(())
}
