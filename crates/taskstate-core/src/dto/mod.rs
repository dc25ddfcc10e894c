//! The records a backend stores, and their pynenc JSON forms (SPEC §2).

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::KeyError;
use crate::ids::{CallId, InvocationId, RunnerId, TaskId};
use crate::pyjson;
use crate::status::InvocationStatus;
use crate::time::Timestamp;

mod context;
mod text;
mod wire;

pub use context::{AppInfo, RunnerContext};
pub use text::SharedText;
pub use wire::RecentIds;
use wire::{WireHistory, fast_history};

/// A call's serialized arguments: argument name → serialized value, in the
/// order the caller gave them (pynenc's dict order, which its JSON keeps).
///
/// Names are unique; inserting a name again replaces its value in place.
///
/// ```
/// use taskstate_core::SerializedArguments;
/// let args = SerializedArguments::from_pairs([("b", "2"), ("a", "1")]);
/// assert_eq!(args.get("a"), Some("1"));
/// assert_eq!(args.to_json(), r#"{"b": "2", "a": "1"}"#);
/// assert_eq!(args.args_id(), "81eb42d9b7f448d9d35d384a3d4e57cbf9566765fff5744a9635609ce64d72e6");
/// ```
///
/// Cloning is cheap: the pairs are shared (one reference count) until one
/// side changes them. They are kept packed, every name and value in one
/// string, so reading a call's arguments from storage allocates twice, not
/// twice per argument.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct SerializedArguments(std::sync::Arc<Packed>);

/// Names and values back to back in `text`; pair k is name
/// `text[bounds[2k]..bounds[2k + 1]]` and value
/// `text[bounds[2k + 1]..bounds[2k + 2]]` (`bounds` is empty, or starts at 0).
/// One canonical form per list of pairs, so the derived equality and hash
/// are those of the pairs.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct Packed {
    text: String,
    bounds: Vec<usize>,
}

impl Packed {
    /// From its parts, built by a reader that keeps the form canonical:
    /// `bounds` empty or `0, name end, value end, …` on char boundaries of
    /// `text`, names unique.
    pub(crate) fn from_parts(text: String, bounds: Vec<usize>) -> Self {
        Self { text, bounds }
    }

    /// Appends a pair (the caller keeps names unique).
    pub(crate) fn push(&mut self, name: &str, value: &str) {
        if self.bounds.is_empty() {
            self.bounds.push(0);
        }
        self.text.push_str(name);
        self.bounds.push(self.text.len());
        self.text.push_str(value);
        self.bounds.push(self.text.len());
    }

    /// The number of pairs.
    pub(crate) fn len(&self) -> usize {
        self.bounds.len().saturating_sub(1) / 2
    }

    pub(crate) fn pair(&self, k: usize) -> (&str, &str) {
        let b = &self.bounds[2 * k..2 * k + 3];
        (&self.text[b[0]..b[1]], &self.text[b[1]..b[2]])
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        (0..self.len()).map(|k| self.pair(k))
    }

    /// The position of `name`, if present.
    pub(crate) fn find(&self, name: &str) -> Option<usize> {
        Self::find_in(self.text.as_bytes(), &self.bounds, name.as_bytes())
    }

    /// The position of `name` among the pairs `bounds` lays out in `text`
    /// (the packed form, or one being built: a name ended without its
    /// value yet is not a pair).
    pub(crate) fn find_in(text: &[u8], bounds: &[usize], name: &[u8]) -> Option<usize> {
        bounds
            .chunks_exact(2)
            .position(|b| text.get(b[0]..b[1]) == Some(name))
    }
}

impl std::fmt::Debug for SerializedArguments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl SerializedArguments {
    /// No arguments.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// From (name, value) pairs; a repeated name keeps its first position and
    /// its last value.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut packed = Packed::default();
        let mut repeated = Vec::new();
        for (k, v) in pairs {
            let (k, v) = (k.as_ref(), v.as_ref());
            if packed.find(k).is_some() {
                repeated.push((k.to_owned(), v.to_owned()));
            } else {
                packed.push(k, v);
            }
        }
        let mut args = Self(std::sync::Arc::new(packed));
        for (k, v) in repeated {
            args.insert(k, v);
        }
        args
    }

    /// Sets one argument.
    pub fn insert(&mut self, name: impl AsRef<str>, value: impl AsRef<str>) {
        let (name, value) = (name.as_ref(), value.as_ref());
        let packed = std::sync::Arc::make_mut(&mut self.0);
        match packed.find(name) {
            None => packed.push(name, value),
            Some(at) => {
                // Rebuild with the value replaced in place (rare: calls are
                // built once).
                let mut out = Packed::default();
                for (k, (n, v)) in packed.iter().enumerate() {
                    out.push(n, if k == at { value } else { v });
                }
                *packed = out;
            }
        }
    }

    /// The serialized value of one argument.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.find(name).map(|k| self.0.pair(k).1)
    }

    /// The (name, value) pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter()
    }

    /// Number of arguments.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no arguments.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }

    /// The args id of SPEC §2: `no_args` when empty, else the lower-case hex
    /// sha256 of `name:value` concatenated over the names in sorted order.
    #[must_use]
    pub fn args_id(&self) -> String {
        if self.is_empty() {
            return "no_args".to_owned();
        }
        let mut sorted: Vec<_> = self.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        let mut h = Sha256::new();
        for (k, v) in sorted {
            h.update(k.as_bytes());
            h.update(b":");
            h.update(v.as_bytes());
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The stored JSON form (`json.dumps(dict)`).
    #[must_use]
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        pyjson::write_object(&mut out, self.iter(), pyjson::write_str);
        out
    }

    /// Parses the stored JSON form: an object whose values are all strings.
    pub fn from_json(text: &str) -> Result<Self, String> {
        Self::from_stored_json(text.as_bytes())
    }

    /// [`SerializedArguments::from_json`] of the bytes a database column
    /// holds, checked to be UTF-8 as they are read (not in a pass of
    /// their own first).
    pub fn from_stored_json(bytes: &[u8]) -> Result<Self, String> {
        if let Some(packed) = wire::fast_arguments(bytes) {
            return Ok(Self(std::sync::Arc::new(packed)));
        }
        let text = std::str::from_utf8(bytes)
            .map_err(|e| format!("serialized_arguments is not UTF-8: {e}"))?;
        Self::from_json_serde(text)
    }

    /// [`SerializedArguments::from_json`] through serde_json: any text.
    fn from_json_serde(text: &str) -> Result<Self, String> {
        use serde::de::{Deserializer, MapAccess, Visitor};
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = Vec<(String, String)>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(4));
                // A repeated name is kept as read: `from_pairs` keeps its
                // first place and last value, as Python's dict does.
                while let Some(pair) = map.next_entry::<String, String>()? {
                    out.push(pair);
                }
                Ok(out)
            }
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let pairs = (&mut de)
            .deserialize_map(Pairs)
            .and_then(|p| de.end().map(|()| p))
            .map_err(|e| format!("serialized_arguments: {e}"))?;
        Ok(Self::from_pairs(pairs))
    }
}

/// A call: which task, with which arguments.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CallDTO {
    /// The call id (task key and args id).
    pub call_id: CallId,
    /// Serialized arguments.
    pub serialized_arguments: SerializedArguments,
}

impl CallDTO {
    /// A call of `task` whose call id is derived from `args` (SPEC §2).
    #[must_use]
    pub fn new(task: TaskId, args: SerializedArguments) -> Self {
        Self {
            call_id: CallId::new(task, &args.args_id()),
            serialized_arguments: args,
        }
    }
}

/// The workflow an invocation runs in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WorkflowIdentity {
    /// The root invocation of the workflow.
    pub workflow_id: InvocationId,
    /// The task of the root invocation.
    pub workflow_type: TaskId,
    /// The workflow this one runs inside, if any.
    pub parent_workflow_id: Option<InvocationId>,
}

/// One task invocation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InvocationDTO {
    /// Its id.
    pub invocation_id: InvocationId,
    /// Its call; must equal the call id of the [`CallDTO`] stored with it.
    pub call_id: CallId,
    /// Its workflow.
    pub workflow: WorkflowIdentity,
    /// The invocation that made it, if any.
    pub parent_invocation_id: Option<InvocationId>,
}

/// An invocation with its call, as [`get_invocation`](crate::StateBackend::get_invocation)
/// returns it: shared and immutable, so handing it out (or keeping it) is
/// one reference count, however large its arguments. Read it through the
/// `Arc`; clone the inner pair to change it.
///
/// ```
/// use std::sync::Arc;
/// use taskstate_core::{CallDTO, InvocationDTO, InvocationRecord, InvocationId, SerializedArguments, WorkflowIdentity};
/// let call = CallDTO::new("app.tasks.add".parse()?, SerializedArguments::from_pairs([("x", "1")]));
/// let id = InvocationId::new("inv-1");
/// let inv = InvocationDTO {
///     invocation_id: id.clone(),
///     call_id: call.call_id.clone(),
///     workflow: WorkflowIdentity { workflow_id: id, workflow_type: call.call_id.task_id().clone(), parent_workflow_id: None },
///     parent_invocation_id: None,
/// };
/// let record: InvocationRecord = Arc::new((inv, call));
/// let (inv, call) = &*record;
/// assert_eq!(inv.call_id, call.call_id);
/// # Ok::<(), taskstate_core::KeyError>(())
/// ```
pub type InvocationRecord = std::sync::Arc<(InvocationDTO, CallDTO)>;

/// A status with the runner that set it and when.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InvocationStatusRecord {
    /// The status.
    pub status: InvocationStatus,
    /// The runner that set it (none for `registered`).
    pub runner_id: Option<RunnerId>,
    /// When the status was set.
    pub timestamp: Timestamp,
}

/// One record of an invocation's status history.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InvocationHistory {
    /// The invocation the record belongs to.
    pub invocation_id: InvocationId,
    /// When the record was made; history is ordered by it.
    pub timestamp: Timestamp,
    /// The status change.
    pub status_record: InvocationStatusRecord,
    /// The runner context that wrote the record.
    pub runner_context_id: RunnerId,
    /// For `registered`: the invocation that registered this one.
    pub registered_by_inv_id: Option<InvocationId>,
}

pub(crate) fn json_err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

pub(crate) fn take_str(
    obj: &mut Map<String, Value>,
    key: &str,
    what: &str,
) -> Result<String, String> {
    match obj.remove(key) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!("{what}: {key:?} is not a string: {other}")),
        None => Err(format!("{what}: missing {key:?}")),
    }
}

pub(crate) fn take_opt_str(
    obj: &mut Map<String, Value>,
    key: &str,
    what: &str,
) -> Result<Option<String>, String> {
    match obj.remove(key) {
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Null) | None => Ok(None),
        Some(other) => Err(format!("{what}: {key:?} is not a string or null: {other}")),
    }
}

pub(crate) fn take_obj(
    obj: &mut Map<String, Value>,
    key: &str,
    what: &str,
) -> Result<Map<String, Value>, String> {
    match obj.remove(key) {
        Some(Value::Object(m)) => Ok(m),
        Some(other) => Err(format!("{what}: {key:?} is not an object: {other}")),
        None => Err(format!("{what}: missing {key:?}")),
    }
}

pub(crate) fn parse_key<T>(r: Result<T, KeyError>) -> Result<T, String> {
    r.map_err(|e| e.to_string())
}

impl InvocationStatusRecord {
    fn write_json(&self, out: &mut String) {
        out.push_str("{\"status\": ");
        pyjson::write_str(out, self.status.as_str());
        out.push_str(", \"runner_id\": ");
        pyjson::write_opt_str(out, self.runner_id.as_ref().map(RunnerId::as_str));
        out.push_str(", \"timestamp\": ");
        pyjson::write_str(out, &self.timestamp.to_string());
        out.push('}');
    }

    /// The JSON form, `{"status": …, "runner_id": …, "timestamp": …}`.
    #[must_use]
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    fn from_map(mut m: Map<String, Value>) -> Result<Self, String> {
        const W: &str = "status_record";
        let status = take_str(&mut m, "status", W)?;
        Ok(Self {
            status: parse_key(status.parse())?,
            runner_id: take_opt_str(&mut m, "runner_id", W)?.map(RunnerId::new),
            timestamp: parse_key(take_str(&mut m, "timestamp", W)?.parse())?,
        })
    }
}

impl InvocationHistory {
    /// The JSON form pynenc stores (`InvocationHistory.to_json()`), key
    /// order exactly `invocation_id, _timestamp, status_record,
    /// runner_context_id, registered_by_inv_id`.
    ///
    /// ```
    /// use taskstate_core::*;
    /// let ts: Timestamp = "2025-01-15T12:00:00.654321+00:00".parse().unwrap();
    /// let h = InvocationHistory {
    ///     invocation_id: "inv-1".into(),
    ///     timestamp: ts,
    ///     status_record: InvocationStatusRecord {
    ///         status: InvocationStatus::Pending,
    ///         runner_id: Some("runner-1".into()),
    ///         timestamp: ts,
    ///     },
    ///     runner_context_id: "runner-1".into(),
    ///     registered_by_inv_id: None,
    /// };
    /// let json = h.to_json();
    /// assert!(json.starts_with(r#"{"invocation_id": "inv-1", "_timestamp": "2025-01-15T12:00:00.654321+00:00", "status_record": {"status": "pending""#));
    /// assert_eq!(InvocationHistory::from_json(&json).unwrap(), h);
    /// ```
    #[must_use]
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push_str("{\"invocation_id\": ");
        pyjson::write_str(&mut out, self.invocation_id.as_str());
        out.push_str(", \"_timestamp\": ");
        pyjson::write_str(&mut out, &self.timestamp.to_string());
        out.push_str(", \"status_record\": ");
        self.status_record.write_json(&mut out);
        out.push_str(", \"runner_context_id\": ");
        pyjson::write_str(&mut out, self.runner_context_id.as_str());
        out.push_str(", \"registered_by_inv_id\": ");
        pyjson::write_opt_str(
            &mut out,
            self.registered_by_inv_id.as_ref().map(InvocationId::as_str),
        );
        out.push('}');
        out
    }

    /// Parses the stored JSON form. The error says which field is wrong.
    pub fn from_json(text: &str) -> Result<Self, String> {
        Self::from_json_reusing(text, &mut RecentIds::default())
    }

    /// [`InvocationHistory::from_json`], reusing the ids of the records
    /// read just before through `recent` (a page of history repeats its
    /// invocations and runners: each repeated id is then shared, not
    /// allocated again).
    pub fn from_json_reusing(text: &str, recent: &mut RecentIds) -> Result<Self, String> {
        Self::from_stored_json(text.as_bytes(), recent)
    }

    /// [`InvocationHistory::from_json_reusing`] of the bytes a database
    /// column holds, checked to be UTF-8 as they are read (not in a pass
    /// of their own first).
    pub fn from_stored_json(bytes: &[u8], recent: &mut RecentIds) -> Result<Self, String> {
        if let Some(h) = fast_history(bytes, recent) {
            return Ok(h);
        }
        let text =
            std::str::from_utf8(bytes).map_err(|e| format!("history json is not UTF-8: {e}"))?;
        let w: WireHistory<'_> =
            serde_json::from_str(text).map_err(|e| json_err("history json", e))?;
        // pynenc writes the same instant twice and usually the same runner
        // twice: parse and allocate each once.
        let timestamp = parse_key(Timestamp::parse(&w.timestamp))?;
        let status_time = if w.status_record.timestamp == w.timestamp {
            timestamp
        } else {
            parse_key(Timestamp::parse(&w.status_record.timestamp))?
        };
        let runner_context_id = recent.runner(&w.runner_context_id);
        let runner_id = w.status_record.runner_id.map(|r| {
            if r == w.runner_context_id {
                runner_context_id.clone()
            } else {
                RunnerId::new(&r)
            }
        });
        Ok(Self {
            invocation_id: recent.invocation(&w.invocation_id),
            timestamp,
            status_record: InvocationStatusRecord {
                status: parse_key(w.status_record.status.parse())?,
                runner_id,
                timestamp: status_time,
            },
            runner_context_id,
            registered_by_inv_id: w.registered_by_inv_id.map(|r| InvocationId::new(&r)),
        })
    }

    /// Decodes the JSON form from an already parsed value.
    pub fn from_value(v: Value) -> Result<Self, String> {
        const W: &str = "history";
        let Value::Object(mut m) = v else {
            return Err("history json is not an object".into());
        };
        Ok(Self {
            invocation_id: InvocationId::new(take_str(&mut m, "invocation_id", W)?),
            timestamp: parse_key(take_str(&mut m, "_timestamp", W)?.parse())?,
            status_record: InvocationStatusRecord::from_map(take_obj(&mut m, "status_record", W)?)?,
            runner_context_id: RunnerId::new(take_str(&mut m, "runner_context_id", W)?),
            registered_by_inv_id: take_opt_str(&mut m, "registered_by_inv_id", W)?
                .map(InvocationId::new),
        })
    }

    /// The JSON form as a value (for export documents).
    #[must_use]
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl InvocationHistory {
    /// Writes the record's fields into a map being serialized, in the
    /// order and shape of [`InvocationHistory::to_json`] (for writers that
    /// add fields of their own, such as the export document's).
    pub fn serialize_fields<M: serde::ser::SerializeMap>(&self, m: &mut M) -> Result<(), M::Error> {
        m.serialize_entry("invocation_id", self.invocation_id.as_str())?;
        m.serialize_entry("_timestamp", &self.timestamp.to_string())?;
        m.serialize_entry("status_record", &self.status_record)?;
        m.serialize_entry("runner_context_id", self.runner_context_id.as_str())?;
        m.serialize_entry(
            "registered_by_inv_id",
            &self.registered_by_inv_id.as_ref().map(InvocationId::as_str),
        )
    }
}

/// The JSON object of [`InvocationHistory::to_json`], for serde writers.
impl serde::Serialize for InvocationHistory {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(5))?;
        self.serialize_fields(&mut m)?;
        m.end()
    }
}

/// `{"status": …, "runner_id": …, "timestamp": …}`, as pynenc writes it.
impl serde::Serialize for InvocationStatusRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("status", self.status.as_str())?;
        m.serialize_entry("runner_id", &self.runner_id.as_ref().map(RunnerId::as_str))?;
        m.serialize_entry("timestamp", &self.timestamp.to_string())?;
        m.end()
    }
}

/// Computes the args id of serialized arguments (SPEC §2); see
/// [`SerializedArguments::args_id`].
#[must_use]
pub fn args_id(args: &SerializedArguments) -> String {
    args.args_id()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_id_test_vectors() {
        let v = |pairs: &[(&str, &str)]| {
            SerializedArguments::from_pairs(pairs.iter().copied()).args_id()
        };
        assert_eq!(v(&[]), "no_args");
        assert_eq!(
            v(&[("a", "1"), ("b", "2")]),
            "81eb42d9b7f448d9d35d384a3d4e57cbf9566765fff5744a9635609ce64d72e6"
        );
        assert_eq!(
            v(&[("b", "20"), ("a", "10")]),
            "516a12d0823ae772d958528ebc43fc0aa5923a9efcb91e9ebab6a6d25a39e6aa"
        );
        assert_eq!(
            v(&[("x", "\"hi\"")]),
            "f5a42b36c15f03a187461ddf130bb20459718f64334a090f00d72077a2dc7f19"
        );
    }

    #[test]
    fn arguments_keep_order_and_reject_non_strings() {
        let a = SerializedArguments::from_json(r#"{"z": "1", "a": "\u00e9"}"#).unwrap();
        assert_eq!(a.iter().collect::<Vec<_>>(), [("z", "1"), ("a", "é")]);
        assert_eq!(a.to_json(), r#"{"z": "1", "a": "\u00e9"}"#);
        assert!(SerializedArguments::from_json(r#"{"a": 1}"#).is_err());
        assert!(SerializedArguments::from_json("[]").is_err());
        assert_eq!(SerializedArguments::new().to_json(), "{}");
    }

    #[test]
    fn serialized_history_is_its_json_form() {
        let ts: Timestamp = "2025-01-15T12:00:00.5"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let h = InvocationHistory {
            invocation_id: "inv-\u{e9}\"1".into(),
            timestamp: ts,
            status_record: InvocationStatusRecord {
                status: crate::InvocationStatus::Registered,
                runner_id: None,
                timestamp: ts,
            },
            runner_context_id: "r".into(),
            registered_by_inv_id: Some("p".into()),
        };
        let parsed: Value = serde_json::from_str(&h.to_json()).unwrap_or(Value::Null);
        assert_eq!(h.to_value(), parsed);
        assert_eq!(
            serde_json::to_string(&h).unwrap_or_default(),
            serde_json::to_string(&parsed).unwrap_or_default()
        );
    }

    #[test]
    fn history_json_errors_name_the_field() {
        let e = InvocationHistory::from_json(r#"{"invocation_id": "x"}"#).unwrap_err();
        assert!(e.contains("_timestamp"), "{e}");
        let good = r#"{"invocation_id": "x", "_timestamp": "2025-01-15T12:00:00+00:00", "status_record": {"status": "bogus", "runner_id": null, "timestamp": "2025-01-15T12:00:00+00:00"}, "runner_context_id": "r", "registered_by_inv_id": null}"#;
        let e = InvocationHistory::from_json(good).unwrap_err();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn runner_context_json_with_parent() {
        let parent = RunnerContext {
            runner_cls: "MultiThreadRunner".into(),
            runner_id: "p".into(),
            parent: None,
            pid: 1,
            hostname: "h".into(),
            thread_id: 140245019367232,
        };
        let child = RunnerContext {
            runner_cls: "ThreadRunner".into(),
            runner_id: "c".into(),
            parent: Some(Box::new(parent)),
            pid: 1,
            hostname: "h".into(),
            thread_id: 3,
        };
        let json = child.to_json();
        assert_eq!(
            json,
            r#"{"hostname": "h", "parent_ctx": {"hostname": "h", "pid": 1, "runner_cls": "MultiThreadRunner", "runner_id": "p", "thread_id": 140245019367232}, "pid": 1, "runner_cls": "ThreadRunner", "runner_id": "c", "thread_id": 3}"#
        );
        assert_eq!(RunnerContext::from_json(&json).unwrap(), child);
        assert_eq!(child.chain().count(), 2);
    }
}
