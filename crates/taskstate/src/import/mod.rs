//! Importing an export document (SPEC §9), streamed: the document is read
//! twice, one entry at a time (serde `DeserializeSeed`; invocation entries
//! as typed structs, not `Value` trees): once to check every input rule of
//! every entry, so a bad document is refused before anything is written,
//! then to write a page of rows per transaction on a writer thread.
//! Reached as `taskstate::export::import*`.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use taskstate_core::{Error, Kind, Result, Row, StateBackend};

mod parse;

use parse::{Entry, bad, entry_rows, parse};

use crate::copy::{Counts, counts};
use crate::export::{Progress, is_empty};

/// Rows per transaction of an import.
pub const IMPORT_PAGE: usize = 5000;

/// What an import checked and wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Rows of each kind the document holds (and the import wrote).
    pub written: Counts,
    /// Rows of each kind the store gained.
    pub added: Counts,
}

impl ImportReport {
    /// Rows written that replaced a row already stored (or written earlier
    /// by the same document): written − added, over every kind.
    #[must_use]
    pub fn replaced(&self) -> u64 {
        Kind::ALL
            .iter()
            .map(|k| self.written.get(*k).saturating_sub(self.added.get(*k)))
            .sum()
    }
}

/// What the checking pass learned of a document.
#[derive(Default)]
struct Checked {
    invocations: u64,
    format_seen: bool,
    ids: HashSet<String>,
    runners: BTreeMap<String, Option<String>>,
}

/// Checks every input rule of every entry (`b` adds its own, such as
/// PostgreSQL's refusal of NUL characters) without writing anything.
fn check_document(b: &dyn StateBackend, input: impl Read) -> Result<Checked> {
    let mut c = Checked::default();
    let mut rows = Vec::new();
    parse(input, &mut |entry| {
        match &entry {
            Entry::Format(_) => c.format_seen = true,
            Entry::Invocation(_) => c.invocations += 1,
            _ => {}
        }
        rows.clear();
        entry_rows(entry, &mut rows)?;
        for row in &rows {
            let at = match row {
                Row::Invocation(p) => {
                    let id = p.0.invocation_id.as_str();
                    if !c.ids.insert(id.to_owned()) {
                        return Err(bad(format!("invocation {id:?} appears twice")));
                    }
                    format!("invocation {id:?}")
                }
                Row::RunnerContext(ctx, parent) => {
                    let id = ctx.runner_id.as_str();
                    let parent = parent.as_ref().map(|p| p.as_str().to_owned());
                    if c.runners.insert(id.to_owned(), parent).is_some() {
                        return Err(bad(format!("runner context {id:?} appears twice")));
                    }
                    format!("runner context {id:?}")
                }
                other => match other.invocation_key() {
                    Some(k) => format!("{} of {:?}", other.kind(), k.as_str()),
                    None => other.kind().to_string(),
                },
            };
            b.check_row(row).map_err(|e| bad(format!("{at}: {e}")))?;
        }
        Ok(())
    })?;
    if !c.format_seen {
        return Err(bad("no \"format\" field: not a taskstate export"));
    }
    // Every runner chain must resolve within the document (no missing
    // parent, no cycle), as it will be read back. Each context is settled
    // once (a walk stops at the first context already known good), so this
    // is linear in the number of contexts however deep the chains.
    let mut good: HashSet<&str> = HashSet::new();
    for id in c.runners.keys() {
        let mut walk: Vec<&str> = Vec::new();
        let mut on_walk: HashSet<&str> = HashSet::new();
        let mut at = id.as_str();
        loop {
            if good.contains(at) {
                break;
            }
            if !on_walk.insert(at) {
                return Err(bad(format!(
                    "runner context {id:?}: its parent chain has a cycle at {at:?}"
                )));
            }
            walk.push(at);
            match c.runners.get_key_value(at) {
                Some((_, None)) => break,
                Some((_, Some(p))) => match c.runners.get_key_value(p.as_str()) {
                    Some((k, _)) => at = k.as_str(),
                    None => {
                        return Err(bad(format!(
                            "runner context {at:?} names parent {p:?}, which the document does not hold"
                        )));
                    }
                },
                None => break,
            }
        }
        good.extend(walk);
    }
    Ok(c)
}

/// Imports the document that `open()` reads (called twice: the document
/// is checked whole before anything is written, then written a page of
/// [`IMPORT_PAGE`] rows per transaction). Refuses a non-empty store unless
/// `merge`. A failure while writing leaves whole pages only and says how
/// far it got; importing the same document again with `merge` completes it
/// (every write is an upsert, so the pages already written are rewritten
/// unchanged).
pub fn import_from<R: Read>(
    b: &dyn StateBackend,
    open: impl FnMut() -> Result<R>,
    merge: bool,
    progress: &mut Progress<'_>,
) -> Result<ImportReport> {
    import_paged(b, open, merge, IMPORT_PAGE, progress)
}

/// [`import_from`] with pages of `page_rows` rows (at least 1).
pub fn import_paged<R: Read>(
    b: &dyn StateBackend,
    mut open: impl FnMut() -> Result<R>,
    merge: bool,
    page_rows: usize,
    progress: &mut Progress<'_>,
) -> Result<ImportReport> {
    let page_rows = page_rows.max(1);
    let checked = check_document(b, open()?)?;
    drop(checked.ids);
    let before = if merge {
        counts(b)?
    } else {
        if !is_empty(b)? {
            return Err(Error::invalid(
                "the target store is not empty: import into an empty store, or merge explicitly",
            ));
        }
        Counts::default()
    };
    let total = checked.invocations;
    // Parsing and writing overlap: this thread parses pages of rows while
    // a writer thread stores the previous page (at most two pages wait).
    let done_invocations = AtomicU64::new(0);
    let (written, parsed) = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Row>>(2);
        let done = &done_invocations;
        let writer = scope.spawn(move || -> Result<Counts> {
            let mut written = Counts::default();
            for (pages, page) in rx.into_iter().enumerate() {
                b.write_rows(&page).map_err(|e| Error::Storage {
                    message: format!(
                        "import stopped after {pages} whole pages ({} of {total} invocations \
                         written; nothing of the failed page): {e}; import the same document \
                         again with --merge to complete it",
                        written.get(Kind::Invocation)
                    ),
                    source: Some(Box::new(e)),
                })?;
                for r in &page {
                    written.add(r.kind(), 1);
                }
                done.store(written.get(Kind::Invocation), Ordering::Relaxed);
            }
            Ok(written)
        });
        progress("invocations", 0, total);
        let mut page: Vec<Row> = Vec::with_capacity(page_rows + 64);
        let parsed = parse(open()?, &mut |entry| {
            entry_rows(entry, &mut page)?;
            if page.len() >= page_rows {
                let full = std::mem::replace(&mut page, Vec::with_capacity(page_rows + 64));
                // A closed channel means the writer stopped on an error,
                // which its result reports.
                tx.send(full)
                    .map_err(|_| Error::invalid("the writer stopped"))?;
                progress("invocations", done.load(Ordering::Relaxed), total);
            }
            Ok(())
        })
        .and_then(|()| {
            if !page.is_empty() {
                tx.send(std::mem::take(&mut page))
                    .map_err(|_| Error::invalid("the writer stopped"))?;
            }
            Ok(())
        });
        drop(tx);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(Error::invalid("the import's writer thread panicked")));
        Ok::<_, Error>((written, parsed))
    })?;
    // The writer's error explains a stopped parse; else the parse's own.
    let written = written?;
    parsed?;
    progress("invocations", written.get(Kind::Invocation), total);
    let after = counts(b)?;
    let mut added = Counts::default();
    for k in Kind::ALL {
        added.add(k, after.get(k).saturating_sub(before.get(k)));
    }
    Ok(ImportReport { written, added })
}

/// Writes an export document held in memory into `b` (see [`import_from`]).
pub fn import(b: &dyn StateBackend, doc: &Value, merge: bool) -> Result<ImportReport> {
    let bytes = serde_json::to_vec(doc).map_err(|e| bad(e.to_string()))?;
    import_from(b, || Ok(bytes.as_slice()), merge, &mut |_, _, _| {})
}
