//! Timing and validating: one pass over the items on some threads, read
//! loops that repeat until a minimum time, whole-range scans likewise.

use std::time::{Duration, Instant};

use taskstate_core::Result;

/// The validation of outputs: `Ok` when they were right, else what was
/// wrong.
pub(crate) type Validation = std::result::Result<(), String>;

pub(crate) fn verdict(ok: bool, what: impl FnOnce() -> String) -> Validation {
    if ok { Ok(()) } else { Err(what()) }
}

/// Runs `write(i)` for i in 0..n on `threads` threads (contiguous slices),
/// each thread stopping at its first error; returns the wall time and the
/// first error, if any. Nothing is collected per item: the Python
/// reference's write loop keeps nothing either.
pub(crate) fn timed_writes(
    n: usize,
    threads: usize,
    write: impl Fn(usize) -> Result<()> + Sync,
) -> (f64, Validation) {
    let slice = |range: std::ops::Range<usize>| -> Validation {
        for i in range {
            write(i).map_err(|e| format!("error: {e}"))?;
        }
        Ok(())
    };
    let start = Instant::now();
    let outcome = if threads <= 1 {
        slice(0..n)
    } else {
        let chunk = n.div_ceil(threads);
        let slice = &slice;
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| s.spawn(move || slice(t * chunk..((t + 1) * chunk).min(n))))
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a bench thread panicked".to_owned()))
            })
        })
    };
    (start.elapsed().as_secs_f64(), outcome)
}

/// Runs `read` over the workload's `n` items with `threads` threads, pass
/// after pass until each thread's timed passes add up to `min_time`;
/// returns the items read, the seconds they took, and the validation of
/// every output (`matches(i, output)` says whether item `i` came back
/// right). With several threads each takes a slice of the items and
/// repeats it until its time is up: threads start once per loop, not once
/// per pass.
///
/// A pass is timed from its first read to its last, including dropping the
/// previous pass's outputs (the Python reference's loop frees its previous
/// list too); its outputs are checked after its timing stops, as the
/// reference checks its own. The seconds reported are the busiest
/// thread's.
pub(crate) fn read_loop<T>(
    n: usize,
    threads: usize,
    min_time: f64,
    read: impl Fn(usize) -> Result<T> + Sync,
    matches: impl Fn(usize, &T) -> bool + Sync,
    what: &str,
) -> (usize, f64, Validation) {
    let chunk = n.div_ceil(threads.max(1)).max(1);
    let (read, matches) = (&read, &matches);
    let worker = move |t: usize| {
        let slice = (t * chunk).min(n)..((t + 1) * chunk).min(n);
        let (mut items, mut bad, mut busy) = (0usize, 0usize, 0.0f64);
        let mut outputs: Vec<T> = Vec::with_capacity(slice.len());
        loop {
            let start = Instant::now();
            outputs.clear();
            for i in slice.clone() {
                match read(i) {
                    Ok(got) => outputs.push(got),
                    Err(e) => {
                        busy += start.elapsed().as_secs_f64();
                        return (items, busy, bad, Some(format!("error: {e}")));
                    }
                }
            }
            busy += start.elapsed().as_secs_f64();
            items += outputs.len();
            bad += slice
                .clone()
                .zip(&outputs)
                .filter(|(i, got)| !matches(*i, got))
                .count();
            if slice.is_empty() || busy >= min_time {
                return (items, busy, bad, None);
            }
        }
    };
    let outcomes: Vec<(usize, f64, usize, Option<String>)> = if threads <= 1 {
        vec![worker(0)]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads).map(|t| s.spawn(move || worker(t))).collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or((0, 0.0, 0, Some("a bench thread panicked".to_owned())))
                })
                .collect()
        })
    };
    let secs = outcomes.iter().map(|o| o.1).fold(0.0, f64::max);
    let items = outcomes.iter().map(|o| o.0).sum();
    if let Some(e) = outcomes.iter().find_map(|o| o.3.clone()) {
        return (items, secs, Err(e));
    }
    let bad: usize = outcomes.iter().map(|o| o.2).sum();
    let v = verdict(bad == 0, || {
        format!("{bad} of {items} {what} read back differ from the input")
    });
    (items, secs, v)
}

/// How much work `threads` threads of plain arithmetic (nothing shared,
/// nothing allocated) get done against one thread, right now: the median
/// of three tries of `per_try` each. On a shared VM the other cores are
/// not always free, and a multi-thread figure means little without this.
pub fn machine_scaling(threads: usize, per_try: Duration) -> f64 {
    fn spin(per_try: Duration) -> u64 {
        let start = Instant::now();
        let (mut x, mut rounds) = (0x9e37_79b9_7f4a_7c15_u64, 0u64);
        while start.elapsed() < per_try {
            for _ in 0..10_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            rounds += 1;
        }
        std::hint::black_box(x);
        rounds
    }
    let mut tries: Vec<f64> = (0..3)
        .map(|_| {
            let one = spin(per_try).max(1) as f64;
            let many: u64 = std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads.max(1))
                    .map(|_| s.spawn(move || spin(per_try)))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
            });
            many as f64 / one
        })
        .collect();
    tries.sort_by(f64::total_cmp);
    tries.get(1).copied().unwrap_or(0.0)
}

/// A whole-range scan, repeated until it has run `min_time` seconds;
/// returns the scans' items, their seconds, and the validation of each.
pub(crate) fn scan_loop<T>(
    per_scan: usize,
    min_time: f64,
    scan: impl Fn() -> Result<T>,
    check: impl Fn(&T) -> Validation,
) -> (usize, f64, Validation) {
    let (mut items, mut secs) = (0, 0.0);
    loop {
        let start = Instant::now();
        let got = scan();
        secs += start.elapsed().as_secs_f64();
        items += per_scan;
        match got {
            Ok(got) => {
                if let Err(e) = check(&got) {
                    return (items, secs, Err(e));
                }
            }
            Err(e) => return (items, secs, Err(format!("error: {e}"))),
        }
        if secs >= min_time {
            return (items, secs, Ok(()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use taskstate_core::Error;

    /// The machine reference is a plausible multiple of one thread: more
    /// than half a thread's work, at most one thread's per thread (with
    /// room for timer granularity).
    #[test]
    fn machine_scaling_is_a_plausible_multiple() {
        for threads in [1, 2] {
            let x = machine_scaling(threads, Duration::from_millis(20));
            assert!(
                x > 0.5 && x < threads as f64 * 1.3,
                "{threads} threads: {x}"
            );
        }
    }

    /// Every item is written once, on one thread or several; the first
    /// error of a thread stops it and is reported.
    #[test]
    fn timed_writes_writes_each_item_once_and_reports_an_error() {
        for threads in [1, 2, 3] {
            let calls: Vec<AtomicUsize> = (0..10).map(|_| AtomicUsize::new(0)).collect();
            let (_, v) = timed_writes(10, threads, |i| {
                calls[i].fetch_add(1, Ordering::Relaxed);
                Ok(())
            });
            assert_eq!(v, Ok(()));
            let counts: Vec<usize> = calls.iter().map(|c| c.load(Ordering::Relaxed)).collect();
            assert_eq!(counts, vec![1; 10], "{threads} threads");

            let (_, v) = timed_writes(10, threads, |i| {
                if i == 7 {
                    Err(Error::invalid("item seven"))
                } else {
                    Ok(())
                }
            });
            let e = v.err().unwrap_or_default();
            assert!(e.starts_with("error: ") && e.contains("item seven"), "{e}");
        }
    }
}
