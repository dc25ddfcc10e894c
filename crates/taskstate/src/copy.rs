//! Moving all state from one engine to another on the bulk path, and
//! counting what a store holds (to verify a copy).
//!
//! A copy reads one snapshot of the source page by page and writes each
//! page in one transaction, so it holds at most a page in memory whatever
//! the store's size, and the copy is of one instant even while workers keep
//! writing to the source.

use taskstate_core::{Error, Kind, Result, StateBackend};

use crate::export::{OnSkipped, Progress, is_empty};

/// How many rows of each kind a store holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts([u64; 9]);

impl Counts {
    fn slot(kind: Kind) -> usize {
        Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0)
    }

    /// Rows of `kind`.
    #[must_use]
    pub fn get(&self, kind: Kind) -> u64 {
        self.0[Self::slot(kind)]
    }

    /// Adds `n` rows of `kind`.
    pub fn add(&mut self, kind: Kind, n: u64) {
        self.0[Self::slot(kind)] += n;
    }

    /// (kind name, count) pairs in [`Kind::ALL`] order, for tables.
    #[must_use]
    pub fn rows(&self) -> Vec<(&'static str, u64)> {
        Kind::ALL.iter().map(|k| (k.name(), self.get(*k))).collect()
    }

    /// The kinds whose counts differ, as `kind: a vs b` parts.
    fn differences(&self, other: &Counts, a: &str, b: &str) -> Vec<String> {
        Kind::ALL
            .iter()
            .filter(|k| self.get(**k) != other.get(**k))
            .map(|k| format!("{k}: {a} {}, {b} {}", self.get(*k), other.get(*k)))
            .collect()
    }
}

/// Counts everything `b` stores, from one snapshot.
pub fn counts(b: &dyn StateBackend) -> Result<Counts> {
    let mut snap = b.snapshot()?;
    let mut c = Counts::default();
    for kind in Kind::ALL {
        c.add(kind, snap.count(kind)?);
    }
    Ok(c)
}

/// Copies everything from `from` into `to` (which must be empty unless
/// `merge`), `batch` rows per transaction, from one snapshot of `from`;
/// then, when `to` started empty, verifies every kind's count. Returns the
/// source's counts.
///
/// A failure part-way leaves whole pages only, and its message names the
/// kind and how far the copy got; copying again with `merge` completes it
/// (every write is an upsert).
pub fn copy(
    from: &dyn StateBackend,
    to: &dyn StateBackend,
    batch: usize,
    merge: bool,
    progress: &mut Progress<'_>,
) -> Result<Counts> {
    copy_with(from, to, batch, merge, progress, None)
}

/// [`copy`]; with `skip_corrupt`, rows of the source that cannot be decoded
/// are not copied and each is passed to it (salvage of a damaged store);
/// the verification then expects the source's counts less those rows.
pub fn copy_with(
    from: &dyn StateBackend,
    to: &dyn StateBackend,
    batch: usize,
    merge: bool,
    progress: &mut Progress<'_>,
    mut skip_corrupt: Option<&mut OnSkipped<'_>>,
) -> Result<Counts> {
    let batch = batch.max(1);
    let started_empty = is_empty(to)?;
    if !merge && !started_empty {
        return Err(Error::invalid(
            "the destination store is not empty: copy into an empty store, or merge explicitly",
        ));
    }
    let mut snap = from.snapshot()?;
    snap.set_salvage(skip_corrupt.is_some());
    let mut skipped = Counts::default();
    let mut source = Counts::default();
    for kind in Kind::ALL {
        source.add(kind, snap.count(kind)?);
    }
    // Reading and writing overlap: this thread reads pages from the
    // snapshot while a writer thread stores the previous one (at most two
    // pages wait), so a copy runs at the pace of the slower side.
    let (tx, rx) = std::sync::mpsc::sync_channel::<(Kind, Vec<taskstate_core::Row>)>(2);
    let written = std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<()> {
            let mut done = Counts::default();
            for (kind, page) in rx {
                to.write_rows(&page).map_err(|e| Error::Storage {
                    message: format!(
                        "copy stopped in {kind} after {} of {} (whole pages only; earlier \
                         kinds complete): {e}; copy again with --merge to complete it",
                        done.get(kind),
                        source.get(kind)
                    ),
                    source: Some(Box::new(e)),
                })?;
                done.add(kind, page.len() as u64);
            }
            Ok(())
        });
        let read = (|| -> Result<()> {
            for kind in Kind::ALL {
                let total = source.get(kind);
                let mut done = 0u64;
                let mut after = None;
                progress(kind.name(), 0, total);
                loop {
                    let page = snap.page(kind, after.as_ref(), batch)?;
                    for (k, e) in snap.take_skipped() {
                        skipped.add(k, 1);
                        if let Some(f) = skip_corrupt.as_mut() {
                            f(k, &e);
                        }
                    }
                    done += page.items.len() as u64;
                    // A closed channel: the writer stopped; its error says why.
                    if tx.send((kind, page.items)).is_err() {
                        return Ok(());
                    }
                    progress(kind.name(), done, total);
                    match page.next {
                        Some(c) => after = Some(c),
                        None => break,
                    }
                }
            }
            Ok(())
        })();
        drop(tx);
        let wrote = writer
            .join()
            .unwrap_or_else(|_| Err(Error::invalid("the copy's writer thread panicked")));
        wrote.and(read)
    });
    written?;
    drop(snap);
    if started_empty {
        let dest = counts(to)?;
        let mut expected = Counts::default();
        for kind in Kind::ALL {
            expected.add(kind, source.get(kind).saturating_sub(skipped.get(kind)));
        }
        if dest != expected {
            return Err(Error::Storage {
                message: format!(
                    "copy verification failed: {}",
                    expected
                        .differences(&dest, "source holds", "destination")
                        .join("; ")
                ),
                source: None,
            });
        }
    }
    Ok(source)
}
