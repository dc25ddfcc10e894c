//! What one upsert changes appears at once: its rows together with their
//! entries in the child lists, which live in shards of their own.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};

use taskstate_conformance::data::{child, id};
use taskstate_core::StateBackend;
use taskstate_memory::MemoryBackend;

/// A reader that sees a batch's rows finds each of them in its parent's
/// child list: never a row whose child-list entry is still to come.
#[test]
fn rows_and_child_lists_appear_together() {
    const BATCHES: usize = 10_000;
    const PER_BATCH: usize = 8;
    let b = MemoryBackend::new();
    let name = |k: usize, j: usize, what: &str| format!("{what}-{k}-{j}");
    let done = AtomicBool::new(false);
    let start = std::sync::Barrier::new(2);
    let (mut seen, mut torn, mut example) = (0usize, 0usize, None);
    std::thread::scope(|s| {
        s.spawn(|| {
            start.wait();
            for k in 0..BATCHES {
                // Each child under a parent of its own, so the lists fall in
                // several shards.
                let batch: Vec<_> = (0..PER_BATCH)
                    .map(|j| {
                        let parent = name(k, j, "p");
                        child(&name(k, j, "c"), "m.t", Some(&parent), &parent)
                    })
                    .collect();
                b.upsert_invocations(&batch).unwrap();
            }
            done.store(true, Ordering::Release);
        });
        start.wait();
        let mut k = 0;
        while k < BATCHES {
            let finished = done.load(Ordering::Acquire);
            if b.get_invocation(&id(&name(k, PER_BATCH - 1, "c"))).is_ok() {
                // The last child first: its entry would be the last to come.
                for j in (0..PER_BATCH).rev() {
                    let kids = b.get_child_invocations(&id(&name(k, j, "p"))).unwrap();
                    if kids != [id(&name(k, j, "c"))] {
                        torn += 1;
                        example = example.take().or(Some((k, j, kids)));
                    }
                }
                seen += 1;
                k += 1;
            } else if finished {
                break;
            }
        }
    });
    assert_eq!(torn, 0, "of {seen} batches seen, e.g. {example:?}");
    assert_eq!(seen, BATCHES);
}
