//! The batched limit group commit approaches: history records written one
//! per call versus many per call (one transaction per call).
//!
//! `cargo run --release -p taskstate-sqlite --example batch_limit -- [RECORDS] [full]`

use std::time::Instant;

use taskstate_core::{
    InvocationHistory, InvocationId, InvocationStatus, InvocationStatusRecord, RunnerId,
    StateBackend, Timestamp,
};
use taskstate_sqlite::{SqliteBackend, SqliteOptions, Synchronous};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().map_or(Ok(30_000), |a| a.parse())?;
    let full = args.get(1).is_some_and(|a| a == "full");
    let options = SqliteOptions::default().synchronous(if full {
        Synchronous::Full
    } else {
        Synchronous::Normal
    });
    let t0 = Timestamp::now();
    let records: Vec<InvocationHistory> = (0..n)
        .map(|i| InvocationHistory {
            invocation_id: InvocationId::new(format!("inv-{}", i % 5000)),
            timestamp: t0.add_micros(i as i64),
            status_record: InvocationStatusRecord {
                status: InvocationStatus::Running,
                runner_id: Some(RunnerId::new("r")),
                timestamp: t0,
            },
            runner_context_id: RunnerId::new("r"),
            registered_by_inv_id: None,
        })
        .collect();
    for per_call in [1usize, 4, 16, 100] {
        let dir = tempfile::tempdir()?;
        let b = SqliteBackend::open_with(dir.path().join("b.db"), &options)?;
        let start = Instant::now();
        for chunk in records.chunks(per_call) {
            b.add_histories(chunk)?;
        }
        println!(
            "{per_call:>4} records per call: {:>9.0} records/s",
            n as f64 / start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
