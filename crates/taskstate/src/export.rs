//! The export document (SPEC §9): everything a backend stores as one JSON
//! document, for backups, diffs and moving state between engines. Its
//! sections and entries have the shape of the pynenc fixture's
//! `expected.json`, so an export of a pynenc database compares with it.
//!
//! ```
//! use taskstate::{export, open, InvocationId, StateBackend};
//! let a = open("memory://")?;
//! a.set_result(&InvocationId::new("orphan"), "1")?;
//! let doc = export::export(a.as_ref(), &mut |_, _, _| {})?;
//! let b = open("memory://")?;
//! export::import(b.as_ref(), &doc, false)?;
//! assert_eq!(export::export(b.as_ref(), &mut |_, _, _| {})?, doc);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};
use taskstate_core::{
    AppInfo, CallDTO, CallId, Error, HistoryRow, InvocationDTO, InvocationHistory, InvocationId,
    Result, RunnerContext, RunnerId, SerializedArguments, StateBackend, StoredHistory, TimeKey,
    TimeRange, WorkflowIdentity, check_history_row, check_invocation_pair,
};

/// The `format` field of documents this version writes and reads.
pub const FORMAT: &str = "taskstate-export/1";

/// Reports progress: (phase, done, total).
pub type Progress<'a> = dyn FnMut(&str, u64, u64) + 'a;

fn opt_id(id: Option<&InvocationId>) -> Value {
    id.map_or(Value::Null, |i| json!(i.as_str()))
}

fn ids_value(ids: &[InvocationId]) -> Value {
    Value::Array(ids.iter().map(|i| json!(i.as_str())).collect())
}

fn workflow_value(w: &WorkflowIdentity) -> Value {
    json!({
        "workflow_id": w.workflow_id.as_str(),
        "workflow_type_key": w.workflow_type.key(),
        "parent_workflow_id": opt_id(w.parent_workflow_id.as_ref()),
    })
}

fn result_or_null(r: Result<String>) -> Result<Value> {
    match r {
        Ok(s) => Ok(Value::String(s)),
        Err(Error::NotFound { .. }) => Ok(Value::Null),
        Err(e) => Err(e),
    }
}

/// One runner context as its export entry.
#[must_use]
pub fn runner_value(c: &RunnerContext) -> Value {
    json!({
        "runner_id": c.runner_id.as_str(),
        "runner_cls": c.runner_cls,
        "pid": c.pid,
        "hostname": c.hostname,
        "thread_id": c.thread_id,
        "parent_runner_id": c.parent_runner_id().map(RunnerId::as_str),
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

/// Every invocation id with history, stored or not, ascending.
pub fn history_ids(b: &dyn StateBackend) -> Result<Vec<InvocationId>> {
    let mut ids = Vec::new();
    for page in b.iter_invocations_in_timerange(TimeRange::all(), 1000) {
        ids.extend(page?);
    }
    Ok(ids)
}

/// Builds the export document of everything `b` stores.
pub fn export(b: &dyn StateBackend, progress: &mut Progress<'_>) -> Result<Value> {
    let ids = b.get_invocation_ids_by_workflow(None, None)?;
    let total = ids.len() as u64;
    let mut invocations = Vec::with_capacity(ids.len());
    for (n, id) in ids.iter().enumerate() {
        let (inv, call) = b.get_invocation(id)?;
        let history: Vec<Value> = b.get_history_rows(id)?.iter().map(history_value).collect();
        let args: Map<String, Value> = call
            .serialized_arguments
            .iter()
            .map(|(k, v)| (k.to_owned(), json!(v)))
            .collect();
        invocations.push(json!({
            "invocation_id": id.as_str(),
            "call_id_key": call.call_id.key(),
            "task_id_key": call.call_id.task_id().key(),
            "args_id": call.call_id.args_id(),
            "serialized_arguments": args,
            "parent_invocation_id": opt_id(inv.parent_invocation_id.as_ref()),
            "workflow": workflow_value(&inv.workflow),
            "history": history,
            "result": result_or_null(b.get_result(id))?,
            "exception": result_or_null(b.get_exception(id))?,
            "children": ids_value(&b.get_child_invocations(id)?),
        }));
        if n % 256 == 0 || n + 1 == ids.len() {
            progress("invocations", n as u64 + 1, total);
        }
    }

    // History, results and exceptions of invocations that are not stored.
    let stored: BTreeSet<&InvocationId> = ids.iter().collect();
    let mut orphans: BTreeMap<InvocationId, Map<String, Value>> = BTreeMap::new();
    for id in history_ids(b)? {
        if !stored.contains(&id) {
            let h: Vec<Value> = b.get_history_rows(&id)?.iter().map(history_value).collect();
            orphans
                .entry(id)
                .or_default()
                .insert("history".into(), Value::Array(h));
        }
    }
    for id in b.result_ids()? {
        if !stored.contains(&id) {
            let r = b.get_result(&id)?;
            orphans
                .entry(id)
                .or_default()
                .insert("result".into(), json!(r));
        }
    }
    for id in b.exception_ids()? {
        if !stored.contains(&id) {
            let e = b.get_exception(&id)?;
            orphans
                .entry(id)
                .or_default()
                .insert("exception".into(), json!(e));
        }
    }
    let orphans: Map<String, Value> = orphans
        .into_iter()
        .map(|(id, m)| (id.into_string(), Value::Object(m)))
        .collect();

    let mut subs: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (w, s) in b.all_workflow_sub_invocations()? {
        subs.entry(w.into_string())
            .or_default()
            .push(json!(s.as_str()));
    }
    let data: Vec<Value> = b
        .all_workflow_data()?
        .into_iter()
        .map(|(w, k, v)| json!({"workflow_id": w.as_str(), "key": k, "stored": v}))
        .collect();
    let apps: Vec<Value> = b
        .discover_app_infos()?
        .iter()
        .map(|a| json!({"app_id": a.app_id, "app_info": a.to_value()}))
        .collect();
    let runners: Vec<Value> = b
        .get_matching_runner_contexts("")?
        .iter()
        .map(runner_value)
        .collect();
    let runs: Vec<Value> = b
        .get_all_workflow_runs()?
        .iter()
        .map(workflow_value)
        .collect();

    Ok(json!({
        "format": FORMAT,
        "invocations": invocations,
        "orphan_invocation_data": orphans,
        "workflow_runs": runs,
        "workflow_sub_invocations": subs,
        "workflow_data": data,
        "app_infos": apps,
        "runner_contexts": runners,
    }))
}

/// Whether `b` stores nothing at all.
pub fn is_empty(b: &dyn StateBackend) -> Result<bool> {
    Ok(b.get_invocation_ids_by_workflow(None, None)?.is_empty()
        && b.invocation_ids_in_timerange(&TimeRange::all(), None, 1)?
            .items
            .is_empty()
        && b.result_ids()?.is_empty()
        && b.exception_ids()?.is_empty()
        && b.get_all_workflow_runs()?.is_empty()
        && b.all_workflow_sub_invocations()?.is_empty()
        && b.all_workflow_data()?.is_empty()
        && b.discover_app_infos()?.is_empty()
        && b.get_matching_runner_contexts("")?.is_empty())
}

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

fn array<'a>(v: &'a Value, key: &str, at: &str) -> Result<&'a Vec<Value>> {
    field(v, key, at)?
        .as_array()
        .ok_or_else(|| bad(format!("{at}: {key:?} is not an array")))
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

/// The rows of `entries` under `key`, each at its carried time key.
fn rows_under<'a>(
    key: &'a InvocationId,
    entries: &'a [HistoryIn],
) -> impl Iterator<Item = HistoryRow<'a>> {
    entries
        .iter()
        .map(move |(r, t)| HistoryRow::under(key, r).at_time_key(*t))
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

/// Rebuilds runner contexts with their parent chains from export entries.
fn runners_from(entries: &[Value]) -> Result<Vec<RunnerContext>> {
    let mut rows: BTreeMap<String, (RunnerContext, Option<String>)> = BTreeMap::new();
    for e in entries {
        let id = str_field(e, "runner_id", "runner context")?;
        let at = format!("runner context {id:?}");
        let int = |k: &str| {
            field(e, k, &at)?
                .as_i64()
                .ok_or_else(|| bad(format!("{at}: {k:?} is not an integer")))
        };
        let ctx = RunnerContext {
            runner_cls: str_field(e, "runner_cls", &at)?.to_owned(),
            runner_id: RunnerId::new(id),
            parent: None,
            pid: int("pid")?,
            hostname: str_field(e, "hostname", &at)?.to_owned(),
            thread_id: int("thread_id")?,
        };
        rows.insert(
            id.to_owned(),
            (ctx, opt_str_field(e, "parent_runner_id", &at)?),
        );
    }
    rows.keys()
        .map(|id| {
            taskstate_core::resolve_runner_chain(
                "export document runner_contexts",
                (rows[id].0.clone(), rows[id].1.clone().map(RunnerId::new)),
                |p| {
                    Ok(rows
                        .get(p.as_str())
                        .map(|(c, pp)| (c.clone(), pp.clone().map(RunnerId::new))))
                },
            )
        })
        .collect()
}

/// What an import wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// Invocations upserted.
    pub invocations: usize,
    /// History records added.
    pub history: usize,
}

/// Writes an export document into `b`. Refuses (changing nothing) a
/// document of another format or a non-empty store unless `merge`.
pub fn import(b: &dyn StateBackend, doc: &Value, merge: bool) -> Result<ImportSummary> {
    match doc.get("format").and_then(Value::as_str) {
        Some(FORMAT) => {}
        Some(other) => return Err(bad(format!("format {other:?} is not {FORMAT:?}"))),
        None => return Err(bad("no \"format\" field: not a taskstate export")),
    }
    if !merge && !is_empty(b)? {
        return Err(Error::invalid(
            "the target store is not empty: import into an empty store, or merge explicitly",
        ));
    }
    // Parse everything before writing anything.
    let invs: Vec<InvocationEntry> = array(doc, "invocations", "document")?
        .iter()
        .map(invocation_from)
        .collect::<Result<_>>()?;
    let mut orphans = Vec::new();
    for (id, entry) in object(doc, "orphan_invocation_data", "document")? {
        let at = format!("orphan {id:?}");
        orphans.push((
            InvocationId::new(id.as_str()),
            histories_from(entry, &at)?,
            opt_str_field(entry, "result", &at)?,
            opt_str_field(entry, "exception", &at)?,
        ));
    }
    let runs: Vec<WorkflowIdentity> = array(doc, "workflow_runs", "document")?
        .iter()
        .map(|w| workflow_from(w, "workflow run"))
        .collect::<Result<_>>()?;
    let mut subs = Vec::new();
    for (w, list) in object(doc, "workflow_sub_invocations", "document")? {
        let list = list
            .as_array()
            .ok_or_else(|| bad(format!("sub-invocations of {w:?} are not an array")))?;
        for s in list {
            let s = s
                .as_str()
                .ok_or_else(|| bad("a sub-invocation id is not a string"))?;
            subs.push((InvocationId::new(w.as_str()), InvocationId::new(s)));
        }
    }
    let data: Vec<(InvocationId, String, String)> = array(doc, "workflow_data", "document")?
        .iter()
        .map(|d| {
            Ok((
                InvocationId::new(str_field(d, "workflow_id", "workflow data")?),
                str_field(d, "key", "workflow data")?.to_owned(),
                str_field(d, "stored", "workflow data")?.to_owned(),
            ))
        })
        .collect::<Result<_>>()?;
    let apps: Vec<AppInfo> = array(doc, "app_infos", "document")?
        .iter()
        .map(|a| AppInfo::from_value(field(a, "app_info", "app info")?.clone()).map_err(bad))
        .collect::<Result<_>>()?;
    let runners = runners_from(array(doc, "runner_contexts", "document")?)?;
    // Check every input rule before writing anything, so a document that
    // breaks one anywhere (an empty or over-long id, a timestamp pynenc
    // cannot read) leaves the store untouched. Engines check them again.
    for ((pair, hist, ..), at) in invs.iter().map(|e| (e, &e.0.0.invocation_id)) {
        check_invocation_pair(&pair.0, &pair.1)
            .map_err(|e| bad(format!("invocation {at:?}: {e}")))?;
        for row in rows_under(at, hist) {
            check_history_row(&row).map_err(|e| bad(format!("history of {at:?}: {e}")))?;
        }
    }
    for (id, hist, ..) in &orphans {
        for row in rows_under(id, hist) {
            check_history_row(&row).map_err(|e| bad(format!("history of {id:?}: {e}")))?;
        }
    }

    let mut summary = ImportSummary::default();
    for a in &apps {
        b.store_app_info(a)?;
    }
    for r in &runners {
        b.store_runner_context(r)?;
    }
    for chunk in invs.chunks(500) {
        let pairs: Vec<_> = chunk.iter().map(|(p, ..)| p.clone()).collect();
        b.upsert_invocations(&pairs)?;
        summary.invocations += pairs.len();
        // SPEC §9: an entry belongs to the list that holds it, whatever its
        // own invocation_id says (§3 history keys).
        let hist: Vec<HistoryRow<'_>> = chunk
            .iter()
            .flat_map(|((inv, _), h, ..)| rows_under(&inv.invocation_id, h))
            .collect();
        b.add_history_rows(&hist)?;
        summary.history += hist.len();
        for ((inv, _), _, result, exception) in chunk {
            if let Some(r) = result {
                b.set_result(&inv.invocation_id, r)?;
            }
            if let Some(e) = exception {
                b.set_exception(&inv.invocation_id, e)?;
            }
        }
    }
    for (id, hist, result, exception) in &orphans {
        let rows: Vec<HistoryRow<'_>> = rows_under(id, hist).collect();
        b.add_history_rows(&rows)?;
        summary.history += hist.len();
        if let Some(r) = result {
            b.set_result(id, r)?;
        }
        if let Some(e) = exception {
            b.set_exception(id, e)?;
        }
    }
    for w in &runs {
        b.store_workflow_run(w)?;
    }
    for (w, s) in &subs {
        b.store_workflow_sub_invocation(w, s)?;
    }
    for (w, k, v) in &data {
        b.set_workflow_data(w, k, v)?;
    }
    Ok(summary)
}
