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

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeMap;
use serde_json::{Value, json};
use taskstate_core::{
    AppInfo, CallDTO, CallId, Cursor, Error, InvocationDTO, InvocationHistory, InvocationId,
    KeyRange, Kind, Result, Row, RunnerContext, RunnerId, SerializedArguments, Snapshot,
    StateBackend, StoredHistory, TimeKey, WorkflowIdentity,
};

use crate::copy::{Counts, counts_of};

/// The `format` field of documents this version writes and reads.
pub const FORMAT: &str = "taskstate-export/1";

/// Reports progress: (phase, done, total).
pub type Progress<'a> = dyn FnMut(&str, u64, u64) + 'a;

/// Invocations per page of an export's walk (each with its history,
/// result, exception and children read in the same key range).
const EXPORT_PAGE: usize = 1000;

/// Rows per transaction of an import.
pub const IMPORT_PAGE: usize = 5000;

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
    let mut after = None;
    loop {
        let page = snap.page(kind, after.as_ref(), EXPORT_PAGE)?;
        for row in page.items {
            f(row)?;
        }
        match page.next {
            Some(c) => after = Some(c),
            None => return Ok(()),
        }
    }
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
            doc.element(&json!({"app_id": a.app_id, "app_info": a.to_value()}))?;
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

// ---- reading the document ---------------------------------------------

fn bad(what: impl std::fmt::Display) -> Error {
    Error::invalid(format!("export document: {what}"))
}

fn field<'a>(v: &'a Value, key: &str, at: &str) -> Result<&'a Value> {
    v.get(key)
        .ok_or_else(|| bad(format!("{at}: missing {key:?}")))
}

fn str_field<'a>(v: &'a Value, key: &str, at: &str) -> Result<&'a str> {
    field(v, key, at)?
        .as_str()
        .ok_or_else(|| bad(format!("{at}: {key:?} is not a string")))
}

fn opt_str_field(v: &Value, key: &str, at: &str) -> Result<Option<String>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(format!("{at}: {key:?} is not a string or null"))),
    }
}

fn workflow_from(v: &Value, at: &str) -> Result<WorkflowIdentity> {
    Ok(WorkflowIdentity {
        workflow_id: InvocationId::new(str_field(v, "workflow_id", at)?),
        workflow_type: str_field(v, "workflow_type_key", at)?
            .parse()
            .map_err(|e| bad(format!("{at}: {e}")))?,
        parent_workflow_id: opt_str_field(v, "parent_workflow_id", at)?.map(InvocationId::new),
    })
}

/// A history entry read from a document: the record and the stored time
/// key it carries, if any.
type HistoryIn = (InvocationHistory, Option<TimeKey>);

fn history_from(r: &Value, at: &str) -> Result<HistoryIn> {
    let mut r = r.clone();
    let key = match r.as_object_mut().and_then(|m| m.remove(TIME_KEY_FIELD)) {
        None => None,
        Some(k) => match k.as_f64() {
            Some(s) if s.is_finite() => Some(TimeKey::from_seconds(s)),
            _ => {
                return Err(bad(format!(
                    "{at}: {TIME_KEY_FIELD} {k} is not a finite number"
                )));
            }
        },
    };
    let record = InvocationHistory::from_value(r).map_err(|e| bad(format!("{at}: {e}")))?;
    Ok((record, key))
}

fn histories_from(v: &Value, at: &str) -> Result<Vec<HistoryIn>> {
    match v.get("history") {
        None => Ok(Vec::new()),
        Some(h) => h
            .as_array()
            .ok_or_else(|| bad(format!("{at}: history is not an array")))?
            .iter()
            .map(|r| history_from(r, at))
            .collect(),
    }
}

/// Parsed invocation entry: the pair, its history, result and exception.
type InvocationEntry = (
    (InvocationDTO, CallDTO),
    Vec<HistoryIn>,
    Option<String>,
    Option<String>,
);

/// An invocation entry as parsed straight from the document (no `Value`
/// tree: invocations are most of a document). Fields an import derives
/// (`task_id_key`, `args_id`, `children`) are not read.
#[derive(serde::Deserialize)]
struct InvocationIn {
    invocation_id: String,
    call_id_key: String,
    serialized_arguments: ArgsIn,
    #[serde(default)]
    parent_invocation_id: Option<String>,
    workflow: WorkflowIn,
    #[serde(default)]
    history: Vec<HistoryEntryIn>,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    exception: Option<String>,
}

#[derive(serde::Deserialize)]
struct WorkflowIn {
    workflow_id: String,
    workflow_type_key: String,
    #[serde(default)]
    parent_workflow_id: Option<String>,
}

#[derive(serde::Deserialize)]
struct HistoryEntryIn {
    invocation_id: String,
    #[serde(rename = "_timestamp")]
    timestamp: String,
    status_record: StatusIn,
    runner_context_id: String,
    #[serde(default)]
    registered_by_inv_id: Option<String>,
    #[serde(default)]
    taskstate_time_key: Option<f64>,
}

#[derive(serde::Deserialize)]
struct StatusIn {
    status: String,
    #[serde(default)]
    runner_id: Option<String>,
    timestamp: String,
}

/// Serialized arguments in document order (values must be strings).
struct ArgsIn(SerializedArguments);

impl<'de> serde::Deserialize<'de> for ArgsIn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ArgsIn;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of string arguments")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<ArgsIn, A::Error> {
                let mut args = SerializedArguments::new();
                while let Some((k, v)) = m.next_entry::<String, String>()? {
                    args.insert(k, v);
                }
                Ok(ArgsIn(args))
            }
        }
        d.deserialize_map(V)
    }
}

impl HistoryEntryIn {
    fn into_parts(self, at: &str) -> Result<HistoryIn> {
        let ts = |t: &str| {
            t.parse::<taskstate_core::Timestamp>()
                .map_err(|e| bad(format!("{at}: {e}")))
        };
        let key = match self.taskstate_time_key {
            None => None,
            Some(k) if k.is_finite() => Some(TimeKey::from_seconds(k)),
            Some(k) => {
                return Err(bad(format!(
                    "{at}: {TIME_KEY_FIELD} {k} is not a finite number"
                )));
            }
        };
        let record = InvocationHistory {
            invocation_id: InvocationId::new(self.invocation_id),
            timestamp: ts(&self.timestamp)?,
            status_record: taskstate_core::InvocationStatusRecord {
                status: self
                    .status_record
                    .status
                    .parse()
                    .map_err(|e| bad(format!("{at}: {e}")))?,
                runner_id: self.status_record.runner_id.map(RunnerId::new),
                timestamp: ts(&self.status_record.timestamp)?,
            },
            runner_context_id: RunnerId::new(self.runner_context_id),
            registered_by_inv_id: self.registered_by_inv_id.map(InvocationId::new),
        };
        Ok((record, key))
    }
}

impl InvocationIn {
    fn into_entry(self) -> Result<InvocationEntry> {
        let at = format!("invocation {:?}", self.invocation_id);
        let call_id: CallId = self
            .call_id_key
            .parse()
            .map_err(|e| bad(format!("{at}: {e}")))?;
        let workflow = WorkflowIdentity {
            workflow_id: InvocationId::new(self.workflow.workflow_id),
            workflow_type: self
                .workflow
                .workflow_type_key
                .parse()
                .map_err(|e| bad(format!("{at}: {e}")))?,
            parent_workflow_id: self.workflow.parent_workflow_id.map(InvocationId::new),
        };
        let history = self
            .history
            .into_iter()
            .map(|h| h.into_parts(&at))
            .collect::<Result<Vec<_>>>()?;
        Ok((
            (
                InvocationDTO {
                    invocation_id: InvocationId::new(self.invocation_id),
                    call_id: call_id.clone(),
                    workflow,
                    parent_invocation_id: self.parent_invocation_id.map(InvocationId::new),
                },
                CallDTO {
                    call_id,
                    serialized_arguments: self.serialized_arguments.0,
                },
            ),
            history,
            self.result,
            self.exception,
        ))
    }
}

/// One top-level entry of a document, as the parser meets it.
enum Entry {
    Format(Value),
    Invocation(Box<InvocationIn>),
    Orphan(String, Value),
    WorkflowRun(Value),
    SubInvocations(String, Value),
    WorkflowData(Value),
    AppInfo(Value),
    Runner(Value),
}

/// The sections of a document and how their entries come.
#[derive(Clone, Copy)]
enum Section {
    Format,
    Invocations,
    Orphans,
    WorkflowRuns,
    SubInvocations,
    WorkflowData,
    AppInfos,
    Runners,
}

impl Section {
    fn of(key: &str) -> Option<Self> {
        Some(match key {
            "format" => Section::Format,
            "invocations" => Section::Invocations,
            "orphan_invocation_data" => Section::Orphans,
            "workflow_runs" => Section::WorkflowRuns,
            "workflow_sub_invocations" => Section::SubInvocations,
            "workflow_data" => Section::WorkflowData,
            "app_infos" => Section::AppInfos,
            "runner_contexts" => Section::Runners,
            _ => return None,
        })
    }
}

type Sink<'s> = dyn FnMut(Entry) -> Result<()> + 's;

/// Feeds a document's entries to a sink one at a time (serde
/// `DeserializeSeed`): only one entry is in memory at once. A sink error
/// stops the parse and is kept in `failed`.
struct DocSeed<'a, 's> {
    sink: &'a mut Sink<'s>,
    failed: &'a mut Option<Error>,
}

struct SectionSeed<'a, 's> {
    section: Section,
    sink: &'a mut Sink<'s>,
    failed: &'a mut Option<Error>,
}

impl SectionSeed<'_, '_> {
    fn feed<E: serde::de::Error>(&mut self, entry: Entry) -> std::result::Result<(), E> {
        (self.sink)(entry).map_err(|e| {
            let msg = e.to_string();
            *self.failed = Some(e);
            E::custom(msg)
        })
    }
}

impl<'de> DeserializeSeed<'de> for DocSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DocSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a taskstate export document (a JSON object)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match Section::of(&key) {
                Some(section) => map.next_value_seed(SectionSeed {
                    section,
                    sink: &mut *self.sink,
                    failed: &mut *self.failed,
                })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for SectionSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(
        mut self,
        d: D,
    ) -> std::result::Result<(), D::Error> {
        match self.section {
            Section::Format => {
                let v = Value::deserialize(d)?;
                self.feed(Entry::Format(v))
            }
            Section::Orphans | Section::SubInvocations => d.deserialize_map(self),
            _ => d.deserialize_seq(self),
        }
    }
}

use serde::Deserialize as _;

impl<'de> Visitor<'de> for SectionSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.section {
            Section::Orphans | Section::SubInvocations => f.write_str("an object"),
            _ => f.write_str("an array"),
        }
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> std::result::Result<(), A::Error> {
        if matches!(self.section, Section::Orphans | Section::SubInvocations) {
            return Err(serde::de::Error::custom(
                "expected an object, found an array",
            ));
        }
        if matches!(self.section, Section::Invocations) {
            let mut n = 0u64;
            loop {
                n += 1;
                let next = seq.next_element::<InvocationIn>().map_err(|e| {
                    // Name the entry; the parser appends where it is.
                    let msg = e.to_string();
                    let msg = msg.split(" at line ").next().unwrap_or_default();
                    serde::de::Error::custom(format!("invocation entry {n}: {msg}"))
                })?;
                match next {
                    Some(v) => self.feed(Entry::Invocation(Box::new(v)))?,
                    None => return Ok(()),
                }
            }
        }
        while let Some(v) = seq.next_element::<Value>()? {
            let entry = match self.section {
                Section::WorkflowRuns => Entry::WorkflowRun(v),
                Section::WorkflowData => Entry::WorkflowData(v),
                Section::AppInfos => Entry::AppInfo(v),
                _ => Entry::Runner(v),
            };
            self.feed(entry)?;
        }
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> std::result::Result<(), A::Error> {
        if !matches!(self.section, Section::Orphans | Section::SubInvocations) {
            return Err(serde::de::Error::custom(
                "expected an array, found an object",
            ));
        }
        while let Some((k, v)) = map.next_entry::<String, Value>()? {
            let entry = match self.section {
                Section::Orphans => Entry::Orphan(k, v),
                _ => Entry::SubInvocations(k, v),
            };
            self.feed(entry)?;
        }
        Ok(())
    }
}

/// Parses the document from `input`, feeding every entry to `sink`.
fn parse(input: impl Read, sink: &mut Sink<'_>) -> Result<()> {
    let mut failed = None;
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::new(input));
    let parsed = DocSeed {
        sink,
        failed: &mut failed,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match (parsed, failed) {
        (_, Some(e)) => Err(e),
        (Err(e), None) if e.is_data() => Err(bad(e)),
        (Err(e), None) if e.is_io() => Err(bad(format!("cannot read the document: {e}"))),
        (Err(e), None) => Err(bad(format!(
            "the document is not JSON (or is cut short): {e}"
        ))),
        (Ok(()), None) => Ok(()),
    }
}

fn history_rows(key: &InvocationId, entries: Vec<HistoryIn>, out: &mut Vec<Row>) {
    for (record, t) in entries {
        let time_key = t.unwrap_or_else(|| record.timestamp.key());
        out.push(Row::History(
            key.clone(),
            StoredHistory { record, time_key },
        ));
    }
}

/// One runner-context entry as its row.
fn runner_row(e: &Value) -> Result<Row> {
    let id = str_field(e, "runner_id", "runner context")?;
    let at = format!("runner context {id:?}");
    let int = |k: &str| {
        field(e, k, &at)?
            .as_i64()
            .ok_or_else(|| bad(format!("{at}: {k:?} is not an integer")))
    };
    Ok(Row::RunnerContext(
        RunnerContext {
            runner_cls: str_field(e, "runner_cls", &at)?.to_owned(),
            runner_id: RunnerId::new(id),
            parent: None,
            pid: int("pid")?,
            hostname: str_field(e, "hostname", &at)?.to_owned(),
            thread_id: int("thread_id")?,
        },
        opt_str_field(e, "parent_runner_id", &at)?.map(RunnerId::new),
    ))
}

/// The rows of one entry, appended to `out`. `Format` has none.
fn entry_rows(entry: Entry, out: &mut Vec<Row>) -> Result<()> {
    match entry {
        Entry::Format(v) => match v.as_str() {
            Some(FORMAT) => {}
            Some(other) => return Err(bad(format!("format {other:?} is not {FORMAT:?}"))),
            None => return Err(bad("\"format\" is not a string")),
        },
        Entry::Invocation(v) => {
            let (pair, hist, result, exception) = v.into_entry()?;
            let id = pair.0.invocation_id.clone();
            out.push(Row::Invocation(Box::new(pair)));
            // SPEC §9: an entry belongs to the list that holds it, whatever
            // its own invocation_id says (§3 history keys).
            history_rows(&id, hist, out);
            if let Some(r) = result {
                out.push(Row::Result(id.clone(), r));
            }
            if let Some(e) = exception {
                out.push(Row::Exception(id, e));
            }
        }
        Entry::Orphan(id, v) => {
            let at = format!("orphan {id:?}");
            let id = InvocationId::new(id);
            history_rows(&id, histories_from(&v, &at)?, out);
            if let Some(r) = opt_str_field(&v, "result", &at)? {
                out.push(Row::Result(id.clone(), r));
            }
            if let Some(e) = opt_str_field(&v, "exception", &at)? {
                out.push(Row::Exception(id, e));
            }
        }
        Entry::WorkflowRun(v) => out.push(Row::WorkflowRun(workflow_from(&v, "workflow run")?)),
        Entry::SubInvocations(w, v) => {
            let list = v
                .as_array()
                .ok_or_else(|| bad(format!("sub-invocations of {w:?} are not an array")))?;
            for s in list {
                let s = s
                    .as_str()
                    .ok_or_else(|| bad(format!("a sub-invocation id of {w:?} is not a string")))?;
                out.push(Row::SubInvocation(
                    InvocationId::new(w.as_str()),
                    InvocationId::new(s),
                ));
            }
        }
        Entry::WorkflowData(d) => out.push(Row::WorkflowData(
            InvocationId::new(str_field(&d, "workflow_id", "workflow data")?),
            str_field(&d, "key", "workflow data")?.to_owned(),
            str_field(&d, "stored", "workflow data")?.to_owned(),
        )),
        Entry::AppInfo(a) => out.push(Row::AppInfo(
            AppInfo::from_value(field(&a, "app_info", "app info")?.clone()).map_err(bad)?,
        )),
        Entry::Runner(e) => out.push(runner_row(&e)?),
    }
    Ok(())
}

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
        counts_of(b)?
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
    let after = counts_of(b)?;
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
