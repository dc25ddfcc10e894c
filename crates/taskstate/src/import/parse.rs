//! Reading an export document entry by entry: serde `DeserializeSeed`
//! visitors hand each entry (invocation entries as typed structs, not
//! `Value` trees) to a sink, and `entry_rows` turns an entry into the rows
//! it stores.

use std::io::Read;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use taskstate_core::{
    AppInfo, CallDTO, CallId, Error, InvocationDTO, InvocationHistory, InvocationId, Result, Row,
    RunnerContext, RunnerId, SerializedArguments, StoredHistory, TimeKey, WorkflowIdentity,
};

use crate::export::{FORMAT, TIME_KEY_FIELD};

pub(crate) fn bad(what: impl std::fmt::Display) -> Error {
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
pub(crate) struct InvocationIn {
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
pub(crate) enum Entry {
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
pub(crate) fn parse(input: impl Read, sink: &mut Sink<'_>) -> Result<()> {
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
pub(crate) fn entry_rows(entry: Entry, out: &mut Vec<Row>) -> Result<()> {
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
