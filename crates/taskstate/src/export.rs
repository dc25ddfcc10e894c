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

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value, json};
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

fn opt_id(id: Option<&InvocationId>) -> Value {
    id.map_or(Value::Null, |i| json!(i.as_str()))
}

fn workflow_value(w: &WorkflowIdentity) -> Value {
    json!({
        "workflow_id": w.workflow_id.as_str(),
        "workflow_type_key": w.workflow_type.key(),
        "parent_workflow_id": opt_id(w.parent_workflow_id.as_ref()),
    })
}

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

/// An exported history entry: the record's JSON object, plus
/// [`TIME_KEY_FIELD`] when the row was stored at another time key.
fn history_value(row: &StoredHistory) -> Value {
    let mut v = row.record.to_value();
    if let (Some(k), Value::Object(m)) = (row.explicit_time_key(), &mut v) {
        m.insert(TIME_KEY_FIELD.into(), json!(k.seconds()));
    }
    v
}

// ---- writing the document ---------------------------------------------

/// A write failure of the document, kept as the source so a caller can
/// tell a closed pipe from a full disk.
fn write_err(e: std::io::Error) -> Error {
    Error::Storage {
        message: format!("writing the export document: {e}"),
        source: Some(Box::new(e)),
    }
}

/// Writes the document as `serde_json::to_string_pretty` would write the
/// whole of it (keys in the order written, two-space indents), one entry
/// at a time.
struct DocWriter<W: Write> {
    out: W,
    sections: usize,
    entries: usize,
    scratch: Vec<u8>,
}

impl<W: Write> DocWriter<W> {
    fn new(mut out: W) -> Result<Self> {
        out.write_all(b"{").map_err(write_err)?;
        Ok(Self {
            out,
            sections: 0,
            entries: 0,
            scratch: Vec::new(),
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
        serde_json::to_writer(&mut self.out, name).map_err(|e| write_err(e.into()))?;
        self.out.write_all(b": ").map_err(write_err)
    }

    /// A section whose value is written whole.
    fn scalar(&mut self, name: &str, v: &Value) -> Result<()> {
        self.key(name)?;
        self.pretty(v, 1)
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
    fn element(&mut self, v: &Value) -> Result<()> {
        self.entry_prefix(b'[')?;
        self.pretty(v, 2)
    }

    /// One member of an object section.
    fn member(&mut self, key: &str, v: &Value) -> Result<()> {
        self.entry_prefix(b'{')?;
        serde_json::to_writer(&mut self.out, key).map_err(|e| write_err(e.into()))?;
        self.out.write_all(b": ").map_err(write_err)?;
        self.pretty(v, 2)
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

    /// `v` pretty-printed, its lines after the first indented `depth` levels.
    fn pretty(&mut self, v: &Value, depth: usize) -> Result<()> {
        self.scratch.clear();
        serde_json::to_writer_pretty(&mut self.scratch, v).map_err(|e| write_err(e.into()))?;
        let indent = "  ".repeat(depth);
        let mut lines = self.scratch.split(|b| *b == b'\n');
        if let Some(first) = lines.next() {
            self.out.write_all(first).map_err(write_err)?;
        }
        for line in lines {
            self.out.write_all(b"\n").map_err(write_err)?;
            self.out.write_all(indent.as_bytes()).map_err(write_err)?;
            self.out.write_all(line).map_err(write_err)?;
        }
        Ok(())
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

fn invocation_value(id: &InvocationId, pair: &(InvocationDTO, CallDTO), g: &Group) -> Value {
    let (inv, call) = pair;
    let args: Map<String, Value> = call
        .serialized_arguments
        .iter()
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect();
    json!({
        "invocation_id": id.as_str(),
        "call_id_key": call.call_id.key(),
        "task_id_key": call.call_id.task_id().key(),
        "args_id": call.call_id.args_id(),
        "serialized_arguments": args,
        "parent_invocation_id": opt_id(inv.parent_invocation_id.as_ref()),
        "workflow": workflow_value(&inv.workflow),
        "history": g.history.iter().map(history_value).collect::<Vec<_>>(),
        "result": g.result.as_deref().map_or(Value::Null, |r| json!(r)),
        "exception": g.exception.as_deref().map_or(Value::Null, |e| json!(e)),
        "children": g.children.iter().map(|c| json!(c.as_str())).collect::<Vec<_>>(),
    })
}

fn orphan_value(g: &Group) -> Value {
    let mut m = Map::new();
    if !g.history.is_empty() {
        m.insert(
            "history".into(),
            Value::Array(g.history.iter().map(history_value).collect()),
        );
    }
    if let Some(r) = &g.result {
        m.insert("result".into(), json!(r));
    }
    if let Some(e) = &g.exception {
        m.insert("exception".into(), json!(e));
    }
    Value::Object(m)
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

/// Writes the export document of everything `b` stores to `out`, from one
/// snapshot, in bounded memory. Returns the rows of each kind it holds.
pub fn export_to<W: Write>(
    b: &dyn StateBackend,
    out: W,
    progress: &mut Progress<'_>,
) -> Result<(Counts, W)> {
    let mut snap = b.snapshot()?;
    let total = snap.count(Kind::Invocation)?;
    let mut doc = DocWriter::new(out)?;
    let mut written = Counts::default();

    doc.scalar("format", &json!(FORMAT))?;

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
                doc.element(&invocation_value(&id, pair, &g))?;
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

    // Rows under ids that are not stored invocations: a second walk of
    // the same snapshot, only when the first one met any.
    doc.open("orphan_invocation_data")?;
    if orphans > 0 {
        walk(snap.as_mut(), |id, g| {
            if g.invocation.is_none() {
                doc.member(id.as_str(), &orphan_value(&g))?;
            }
            Ok(())
        })?;
    }
    doc.close(b'{')?;

    doc.open("workflow_runs")?;
    each_row(snap.as_mut(), Kind::WorkflowRun, |row| {
        if let Row::WorkflowRun(w) = row {
            written.add(Kind::WorkflowRun, 1);
            doc.element(&workflow_value(&w))?;
        }
        Ok(())
    })?;
    doc.close(b'[')?;

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

fn object<'a>(v: &'a Value, key: &str, at: &str) -> Result<&'a Map<String, Value>> {
    field(v, key, at)?
        .as_object()
        .ok_or_else(|| bad(format!("{at}: {key:?} is not an object")))
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

fn invocation_from(v: &Value) -> Result<InvocationEntry> {
    let id = str_field(v, "invocation_id", "invocation")?;
    let at = format!("invocation {id:?}");
    let call_id: CallId = str_field(v, "call_id_key", &at)?
        .parse()
        .map_err(|e| bad(format!("{at}: {e}")))?;
    let mut args = SerializedArguments::new();
    for (k, val) in object(v, "serialized_arguments", &at)? {
        let s = val
            .as_str()
            .ok_or_else(|| bad(format!("{at}: argument {k:?} is not a string")))?;
        args.insert(k.clone(), s);
    }
    let inv = InvocationDTO {
        invocation_id: InvocationId::new(id),
        call_id: call_id.clone(),
        workflow: workflow_from(field(v, "workflow", &at)?, &at)?,
        parent_invocation_id: opt_str_field(v, "parent_invocation_id", &at)?.map(InvocationId::new),
    };
    Ok((
        (
            inv,
            CallDTO {
                call_id,
                serialized_arguments: args,
            },
        ),
        histories_from(v, &at)?,
        opt_str_field(v, "result", &at)?,
        opt_str_field(v, "exception", &at)?,
    ))
}

/// One top-level entry of a document, as the parser meets it.
enum Entry {
    Format(Value),
    Invocation(Value),
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
        while let Some(v) = seq.next_element::<Value>()? {
            let entry = match self.section {
                Section::Invocations => Entry::Invocation(v),
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
        (Err(e), None) => Err(bad(format!("the document is not JSON (or not whole): {e}"))),
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
            let (pair, hist, result, exception) = invocation_from(&v)?;
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
    // parent, no cycle), as it will be read back.
    for id in c.runners.keys() {
        let mut seen = vec![id.as_str()];
        let mut next = c.runners.get(id).cloned().flatten();
        while let Some(p) = next {
            if seen.contains(&p.as_str()) {
                return Err(bad(format!(
                    "runner context {id:?}: its parent chain has a cycle at {p:?}"
                )));
            }
            let Some(grand) = c.runners.get(&p) else {
                return Err(bad(format!(
                    "runner context {id:?} names parent {p:?}, which the document does not hold"
                )));
            };
            seen.push(c.runners.get_key_value(&p).map_or("", |(k, _)| k.as_str()));
            next = grand.clone();
        }
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
    mut open: impl FnMut() -> Result<R>,
    merge: bool,
    progress: &mut Progress<'_>,
) -> Result<ImportReport> {
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
    let mut written = Counts::default();
    let mut page: Vec<Row> = Vec::with_capacity(IMPORT_PAGE + 64);
    let mut pages = 0u64;
    progress("invocations", 0, total);
    let mut flush = |page: &mut Vec<Row>, written: &mut Counts| -> Result<()> {
        if page.is_empty() {
            return Ok(());
        }
        b.write_rows(page).map_err(|e| Error::Storage {
            message: format!(
                "import stopped after {pages} whole pages ({} of {total} invocations written; \
                 nothing of the failed page): {e}; import the same document again with --merge \
                 to complete it",
                written.get(Kind::Invocation)
            ),
            source: Some(Box::new(e)),
        })?;
        pages += 1;
        for r in page.iter() {
            written.add(r.kind(), 1);
        }
        page.clear();
        progress("invocations", written.get(Kind::Invocation), total);
        Ok(())
    };
    parse(open()?, &mut |entry| {
        entry_rows(entry, &mut page)?;
        if page.len() >= IMPORT_PAGE {
            flush(&mut page, &mut written)?;
        }
        Ok(())
    })?;
    flush(&mut page, &mut written)?;
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
