//! The export document (SPEC §9): everything a backend stores as one JSON
//! document, for backups, diffs and moving state between engines. Its
//! sections and entries have the shape of the pynenc fixture's
//! `expected.json`, so an export of a pynenc database compares with it.
//!
//! Both directions stream, so a store of any size moves in bounded memory:
//! [`export_to`] writes the document while it reads one snapshot of the
//! store page by page, and [`import_from`] parses the document entry by
//! entry (twice: once to check every input rule, once to write a page of
//! rows per transaction).
//!
//! ```
//! use taskstate::{export, open, InvocationId, StateBackend};
//! let a = open("memory://")?;
//! a.set_result(&InvocationId::new("orphan"), "1")?;
//! let doc = export::export(a.as_ref(), &mut |_, _, _| {})?;
//! let b = open("memory://")?;
//! let report = export::import(b.as_ref(), &doc, false)?;
//! assert_eq!(report.written.get(taskstate::Kind::Result), 1);
//! assert_eq!(export::export(b.as_ref(), &mut |_, _, _| {})?, doc);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Value, json};
use taskstate_core::{
    CallDTO, Cursor, Error, InvocationDTO, InvocationId, KeyRange, Kind, Result, Row,
    RunnerContext, RunnerId, SerializedArguments, Snapshot, StateBackend, StoredHistory,
    WorkflowIdentity,
};

use crate::copy::Counts;

/// The `format` field of documents this version writes and reads.
pub const FORMAT: &str = "taskstate-export/1";

/// Reports progress: (phase, done, total).
pub type Progress<'a> = dyn FnMut(&str, u64, u64) + 'a;

/// Invocations per page of an export's walk (each with its history,
/// result, exception and children read in the same key range).
const EXPORT_PAGE: usize = 1000;

/// One runner-context row as its export entry.
fn runner_value(c: &RunnerContext, parent: Option<&RunnerId>) -> Value {
    json!({
        "runner_id": c.runner_id.as_str(),
        "runner_cls": c.runner_cls,
        "pid": c.pid,
        "hostname": c.hostname,
        "thread_id": c.thread_id,
        "parent_runner_id": parent.map(RunnerId::as_str),
    })
}

/// The optional field of an exported history entry that carries the row's
/// stored time key (seconds since the epoch, a JSON number) where it differs
/// from the instant of the entry's `_timestamp` (see `docs/export-format.md`).
pub const TIME_KEY_FIELD: &str = "taskstate_time_key";

// ---- writing the document ---------------------------------------------

/// A write failure of the document, kept as the source so a caller can
/// tell a closed pipe from a full disk.
fn write_err(e: std::io::Error) -> Error {
    Error::Storage {
        message: format!("writing the export document: {e}"),
        source: Some(Box::new(e)),
    }
}

/// Writes the document one entry at a time: the sections on lines of
/// their own, each entry compact on one line (so a document diffs and
/// greps by entry, and no entry is ever built twice).
struct DocWriter<W: Write> {
    out: W,
    sections: usize,
    entries: usize,
}

impl<W: Write> DocWriter<W> {
    fn new(mut out: W) -> Result<Self> {
        out.write_all(b"{").map_err(write_err)?;
        Ok(Self {
            out,
            sections: 0,
            entries: 0,
        })
    }

    fn key(&mut self, name: &str) -> Result<()> {
        let sep: &[u8] = if self.sections == 0 {
            b"\n  "
        } else {
            b",\n  "
        };
        self.sections += 1;
        self.out.write_all(sep).map_err(write_err)?;
        self.value(name)?;
        self.out.write_all(b": ").map_err(write_err)
    }

    fn value<T: serde::Serialize + ?Sized>(&mut self, v: &T) -> Result<()> {
        serde_json::to_writer(&mut self.out, v).map_err(|e| write_err(e.into()))
    }

    /// A section whose value is written whole.
    fn scalar<T: serde::Serialize + ?Sized>(&mut self, name: &str, v: &T) -> Result<()> {
        self.key(name)?;
        self.value(v)
    }

    /// Opens a section holding an array (`[`) or object (`{`).
    fn open(&mut self, name: &str) -> Result<()> {
        self.key(name)?;
        self.entries = 0;
        Ok(())
    }

    fn entry_prefix(&mut self, open: u8) -> Result<()> {
        let prefix: &[u8] = if self.entries == 0 {
            b"\n    "
        } else {
            b",\n    "
        };
        if self.entries == 0 {
            self.out.write_all(&[open]).map_err(write_err)?;
        }
        self.entries += 1;
        self.out.write_all(prefix).map_err(write_err)
    }

    /// One element of an array section.
    fn element<T: serde::Serialize + ?Sized>(&mut self, v: &T) -> Result<()> {
        self.entry_prefix(b'[')?;
        self.value(v)
    }

    /// One member of an object section.
    fn member<T: serde::Serialize + ?Sized>(&mut self, key: &str, v: &T) -> Result<()> {
        self.entry_prefix(b'{')?;
        self.value(key)?;
        self.out.write_all(b": ").map_err(write_err)?;
        self.value(v)
    }

    /// Closes a section opened with `open` (`[`/`{`).
    fn close(&mut self, open: u8) -> Result<()> {
        let close = if open == b'[' { b']' } else { b'}' };
        if self.entries == 0 {
            self.out.write_all(&[open, close]).map_err(write_err)
        } else {
            self.out.write_all(b"\n  ").map_err(write_err)?;
            self.out.write_all(&[close]).map_err(write_err)
        }
    }

    fn finish(mut self) -> Result<W> {
        self.out.write_all(b"\n}").map_err(write_err)?;
        self.out.flush().map_err(write_err)?;
        Ok(self.out)
    }
}

/// Everything stored under one invocation id: the invocation if stored,
/// its history (in order), result, exception and children.
#[derive(Default)]
struct Group {
    invocation: Option<Box<(InvocationDTO, CallDTO)>>,
    history: Vec<StoredHistory>,
    result: Option<String>,
    exception: Option<String>,
    children: Vec<InvocationId>,
}

/// Walks the snapshot by pages of invocations; each page covers the key
/// range from the previous page's last id (exclusive) to its own last id
/// (the last page: to the end), so every row keyed by an invocation id
/// falls in exactly one page. Calls `f` for every key of the range, in
/// order, with what is stored under it.
fn walk(
    snap: &mut dyn Snapshot,
    mut f: impl FnMut(InvocationId, Group) -> Result<()>,
) -> Result<()> {
    let mut after: Option<Cursor> = None;
    let mut prev_last: Option<InvocationId> = None;
    loop {
        let page = snap.page(Kind::Invocation, after.as_ref(), EXPORT_PAGE)?;
        let last = page.items.last().and_then(Row::invocation_key).cloned();
        let range = KeyRange {
            after: prev_last.clone(),
            upto: if page.next.is_some() {
                last.clone()
            } else {
                None
            },
        };
        let mut groups: BTreeMap<InvocationId, Group> = BTreeMap::new();
        for row in page.items {
            if let Row::Invocation(p) = row {
                let id = p.0.invocation_id.clone();
                groups.entry(id).or_default().invocation = Some(p);
            }
        }
        for kind in [Kind::History, Kind::Result, Kind::Exception] {
            for row in snap.keyed(kind, &range)? {
                match row {
                    Row::History(k, h) => groups.entry(k).or_default().history.push(h),
                    Row::Result(k, v) => groups.entry(k).or_default().result = Some(v),
                    Row::Exception(k, v) => groups.entry(k).or_default().exception = Some(v),
                    _ => {}
                }
            }
        }
        for (parent, child) in snap.children(&range)? {
            if let Some(g) = groups.get_mut(&parent) {
                if g.invocation.is_some() {
                    g.children.push(child);
                }
            }
        }
        for (id, g) in groups {
            f(id, g)?;
        }
        match page.next {
            Some(c) => {
                after = Some(c);
                prev_last = last;
            }
            None => return Ok(()),
        }
    }
}

/// An exported history entry: the record's JSON object, plus
/// [`TIME_KEY_FIELD`] when the row was stored at another time key.
struct HistoryEntry<'a>(&'a StoredHistory);

impl Serialize for HistoryEntry<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let explicit = self.0.explicit_time_key();
        let mut m = s.serialize_map(Some(5 + usize::from(explicit.is_some())))?;
        self.0.record.serialize_fields(&mut m)?;
        if let Some(k) = explicit {
            m.serialize_entry(TIME_KEY_FIELD, &k.seconds())?;
        }
        m.end()
    }
}

struct Histories<'a>(&'a [StoredHistory]);

impl Serialize for Histories<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(HistoryEntry))
    }
}

struct Workflow<'a>(&'a WorkflowIdentity);

impl Serialize for Workflow<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let w = self.0;
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("workflow_id", w.workflow_id.as_str())?;
        m.serialize_entry("workflow_type_key", w.workflow_type.key())?;
        m.serialize_entry(
            "parent_workflow_id",
            &w.parent_workflow_id.as_ref().map(InvocationId::as_str),
        )?;
        m.end()
    }
}

/// An invocation entry: the pair and everything stored under its id.
struct InvocationEntryOut<'a> {
    id: &'a InvocationId,
    pair: &'a (InvocationDTO, CallDTO),
    group: &'a Group,
}

impl Serialize for InvocationEntryOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        struct Args<'a>(&'a SerializedArguments);
        impl Serialize for Args<'_> {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                s.collect_map(self.0.iter())
            }
        }
        let (inv, call) = self.pair;
        let g = self.group;
        let mut m = s.serialize_map(Some(11))?;
        m.serialize_entry("invocation_id", self.id.as_str())?;
        m.serialize_entry("call_id_key", call.call_id.key())?;
        m.serialize_entry("task_id_key", call.call_id.task_id().key())?;
        m.serialize_entry("args_id", call.call_id.args_id())?;
        m.serialize_entry("serialized_arguments", &Args(&call.serialized_arguments))?;
        m.serialize_entry(
            "parent_invocation_id",
            &inv.parent_invocation_id.as_ref().map(InvocationId::as_str),
        )?;
        m.serialize_entry("workflow", &Workflow(&inv.workflow))?;
        m.serialize_entry("history", &Histories(&g.history))?;
        m.serialize_entry("result", &g.result)?;
        m.serialize_entry("exception", &g.exception)?;
        m.serialize_entry(
            "children",
            &g.children
                .iter()
                .map(InvocationId::as_str)
                .collect::<Vec<_>>(),
        )?;
        m.end()
    }
}

/// What is stored under an id that is not a stored invocation.
struct OrphanEntry<'a>(&'a Group);

impl Serialize for OrphanEntry<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let g = self.0;
        let mut m = s.serialize_map(None)?;
        if !g.history.is_empty() {
            m.serialize_entry("history", &Histories(&g.history))?;
        }
        if let Some(r) = &g.result {
            m.serialize_entry("result", r)?;
        }
        if let Some(e) = &g.exception {
            m.serialize_entry("exception", e)?;
        }
        m.end()
    }
}

/// Writes every page of `kind` through `f`.
fn each_row(
    snap: &mut dyn Snapshot,
    kind: Kind,
    mut f: impl FnMut(Row) -> Result<()>,
) -> Result<()> {
    taskstate_core::bulk::for_each_page(snap, kind, EXPORT_PAGE, |page| {
        page.items.into_iter().try_for_each(&mut f)
    })
}

/// Called with each row skipped as corrupt in salvage mode: its kind and
/// the error naming table and key.
pub type OnSkipped<'a> = dyn FnMut(Kind, &Error) + 'a;

/// Writes the export document of everything `b` stores to `out`, from one
/// snapshot, in bounded memory. Returns the rows of each kind it holds.
/// A row that cannot be decoded fails the export (see [`export_with`]).
pub fn export_to<W: Write>(
    b: &dyn StateBackend,
    out: W,
    progress: &mut Progress<'_>,
) -> Result<(Counts, W)> {
    export_with(b, out, progress, None)
}

/// [`export_to`]; with `skip_corrupt`, rows that cannot be decoded are left
/// out of the document and each is passed to it (salvage of a damaged
/// store) instead of failing the export.
pub fn export_with<W: Write>(
    b: &dyn StateBackend,
    out: W,
    progress: &mut Progress<'_>,
    mut skip_corrupt: Option<&mut OnSkipped<'_>>,
) -> Result<(Counts, W)> {
    let mut snap = b.snapshot()?;
    snap.set_salvage(skip_corrupt.is_some());
    let mut report_skipped = |snap: &mut dyn Snapshot| {
        if let Some(f) = skip_corrupt.as_mut() {
            for (kind, e) in snap.take_skipped() {
                f(kind, &e);
            }
        }
    };
    let total = snap.count(Kind::Invocation)?;
    let mut doc = DocWriter::new(out)?;
    let mut written = Counts::default();

    doc.scalar("format", FORMAT)?;

    doc.open("invocations")?;
    let mut done = 0u64;
    let mut orphans = 0u64;
    progress("invocations", 0, total);
    walk(snap.as_mut(), |id, g| {
        written.add(Kind::History, g.history.len() as u64);
        written.add(Kind::Result, u64::from(g.result.is_some()));
        written.add(Kind::Exception, u64::from(g.exception.is_some()));
        match &g.invocation {
            Some(pair) => {
                written.add(Kind::Invocation, 1);
                doc.element(&InvocationEntryOut {
                    id: &id,
                    pair,
                    group: &g,
                })?;
                done += 1;
                if done % 1024 == 0 || done == total {
                    progress("invocations", done, total);
                }
            }
            None => orphans += 1,
        }
        Ok(())
    })?;
    doc.close(b'[')?;
    report_skipped(snap.as_mut());

    // Rows under ids that are not stored invocations: a second walk of
    // the same snapshot, only when the first one met any.
    doc.open("orphan_invocation_data")?;
    if orphans > 0 {
        walk(snap.as_mut(), |id, g| {
            if g.invocation.is_none() {
                doc.member(id.as_str(), &OrphanEntry(&g))?;
            }
            Ok(())
        })?;
    }
    // The second walk met the same corrupt rows as the first, which
    // reported them.
    let _ = snap.take_skipped();
    doc.close(b'{')?;
    report_skipped(snap.as_mut());

    doc.open("workflow_runs")?;
    each_row(snap.as_mut(), Kind::WorkflowRun, |row| {
        if let Row::WorkflowRun(w) = row {
            written.add(Kind::WorkflowRun, 1);
            doc.element(&Workflow(&w))?;
        }
        Ok(())
    })?;
    doc.close(b'[')?;
    report_skipped(snap.as_mut());

    // One member per workflow: its links arrive in (workflow, sub) order.
    doc.open("workflow_sub_invocations")?;
    let mut current: Option<(InvocationId, Vec<Value>)> = None;
    each_row(snap.as_mut(), Kind::SubInvocation, |row| {
        if let Row::SubInvocation(w, s) = row {
            written.add(Kind::SubInvocation, 1);
            match &mut current {
                Some((cw, list)) if *cw == w => list.push(json!(s.as_str())),
                _ => {
                    if let Some((cw, list)) = current.replace((w, vec![json!(s.as_str())])) {
                        doc.member(cw.as_str(), &Value::Array(list))?;
                    }
                }
            }
        }
        Ok(())
    })?;
    if let Some((cw, list)) = current {
        doc.member(cw.as_str(), &Value::Array(list))?;
    }
    doc.close(b'{')?;
    doc.open("workflow_data")?;
    each_row(snap.as_mut(), Kind::WorkflowData, |row| {
        if let Row::WorkflowData(w, k, v) = row {
            written.add(Kind::WorkflowData, 1);
            doc.element(&json!({"workflow_id": w.as_str(), "key": k, "stored": v}))?;
        }
        Ok(())
    })?;
    doc.close(b'[')?;
    report_skipped(snap.as_mut());

    doc.open("app_infos")?;
    each_row(snap.as_mut(), Kind::AppInfo, |row| {
        if let Row::AppInfo(a) = row {
            written.add(Kind::AppInfo, 1);
            doc.element(&json!({"app_id": a.app_id.as_str(), "app_info": a.to_value()}))?;
        }
        Ok(())
    })?;
    doc.close(b'[')?;
    doc.open("runner_contexts")?;
    each_row(snap.as_mut(), Kind::RunnerContext, |row| {
        if let Row::RunnerContext(c, parent) = row {
            written.add(Kind::RunnerContext, 1);
            doc.element(&runner_value(&c, parent.as_ref()))?;
        }
        Ok(())
    })?;
    doc.close(b'[')?;
    report_skipped(snap.as_mut());
    let out = doc.finish()?;
    Ok((written, out))
}

/// The export document of everything `b` stores, as a value (built by
/// [`export_to`]; for documents that fit in memory).
pub fn export(b: &dyn StateBackend, progress: &mut Progress<'_>) -> Result<Value> {
    let (_, bytes) = export_to(b, Vec::new(), progress)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Storage {
        message: format!("the export document does not parse back: {e}"),
        source: None,
    })
}

/// Whether `b` stores nothing at all (one row of each kind is looked for).
pub fn is_empty(b: &dyn StateBackend) -> Result<bool> {
    let mut snap = b.snapshot()?;
    for kind in Kind::ALL {
        if !snap.page(kind, None, 1)?.items.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}

pub use crate::import::{IMPORT_PAGE, ImportReport, import, import_from, import_paged};
