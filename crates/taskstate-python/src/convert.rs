//! Conversions between pynenc 0.1.0's Python objects and taskstate's DTOs.
//!
//! This is the hot path of every backend call, so objects are read and
//! built directly: attributes are read with interned names, and pynenc's
//! (mostly frozen) dataclasses are built with `object.__new__` and a filled
//! `__dict__` instead of their generated `__init__` (which goes through
//! `object.__setattr__` once per field). Timestamps cross as Python's
//! `isoformat()` text, which keeps the UTC offset exactly (SPEC §2).

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyString, PyType};
use taskstate::{
    CallDTO, CallId, InvocationDTO, InvocationHistory, InvocationId, InvocationStatus,
    InvocationStatusRecord, RunnerContext, RunnerId, SerializedArguments, TaskId, TimeKey,
    Timestamp, WorkflowIdentity,
};

use crate::errors::invalid;

/// pynenc's classes and helpers, imported once per interpreter.
pub struct Types {
    object_new: Py<PyAny>,
    fromisoformat: Py<PyAny>,
    task_id: Py<PyType>,
    call_id: Py<PyType>,
    workflow: Py<PyType>,
    invocation_dto: Py<PyType>,
    call_dto: Py<PyType>,
    status_record: Py<PyType>,
    history: Py<PyType>,
    runner_context: Py<PyType>,
    /// `InvocationStatus` members in `taskstate::InvocationStatus::ALL` order.
    statuses: Vec<Py<PyAny>>,
    /// TaskId objects by key: a frozen dataclass, so one instance per task
    /// serves every invocation of it (building one costs more than the
    /// lookup). Cleared when it grows past `TASK_CACHE_MAX`.
    task_ids: Py<PyDict>,
}

const TASK_CACHE_MAX: usize = 4096;

static TYPES: PyOnceLock<Types> = PyOnceLock::new();

fn class(py: Python<'_>, module: &str, name: &str) -> PyResult<Py<PyType>> {
    Ok(py
        .import(module)?
        .getattr(name)?
        .cast_into::<PyType>()?
        .unbind())
}

impl Types {
    /// The cached classes (imported on first use).
    pub fn get(py: Python<'_>) -> PyResult<&Types> {
        TYPES.get_or_try_init(py, || {
            let status_cls = class(py, "pynenc.invocation.status", "InvocationStatus")?;
            let statuses = InvocationStatus::ALL
                .iter()
                .map(|s| Ok(status_cls.bind(py).call1((s.as_str(),))?.unbind()))
                .collect::<PyResult<Vec<_>>>()?;
            Ok(Types {
                object_new: py
                    .import("builtins")?
                    .getattr("object")?
                    .getattr("__new__")?
                    .unbind(),
                fromisoformat: py
                    .import("datetime")?
                    .getattr("datetime")?
                    .getattr("fromisoformat")?
                    .unbind(),
                task_id: class(py, "pynenc.identifiers.task_id", "TaskId")?,
                call_id: class(py, "pynenc.identifiers.call_id", "CallId")?,
                workflow: class(py, "pynenc.workflow.workflow_identity", "WorkflowIdentity")?,
                invocation_dto: class(py, "pynenc.models.invocation_dto", "InvocationDTO")?,
                call_dto: class(py, "pynenc.models.call_dto", "CallDTO")?,
                status_record: class(py, "pynenc.invocation.status", "InvocationStatusRecord")?,
                history: class(
                    py,
                    "pynenc.state_backend.base_state_backend",
                    "InvocationHistory",
                )?,
                runner_context: class(py, "pynenc.runner.runner_context", "RunnerContext")?,
                statuses,
                task_ids: PyDict::new(py).unbind(),
            })
        })
    }

    /// An instance of `cls` with `fields` as its attributes, without running
    /// `__init__` (pynenc's DTOs are plain dataclasses: their state is their
    /// `__dict__`).
    fn build<'py>(
        &self,
        py: Python<'py>,
        cls: &Py<PyType>,
        fields: &[(&Bound<'py, PyString>, Bound<'py, PyAny>)],
    ) -> PyResult<Bound<'py, PyAny>> {
        let obj = self.object_new.bind(py).call1((cls.bind(py),))?;
        let dict = obj.getattr(intern!(py, "__dict__"))?;
        let dict = dict.cast::<PyDict>()?;
        for (k, v) in fields {
            dict.set_item(k, v)?;
        }
        Ok(obj)
    }

    fn datetime<'py>(&self, py: Python<'py>, t: &Timestamp) -> PyResult<Bound<'py, PyAny>> {
        self.fromisoformat.bind(py).call1((t.to_string(),))
    }

    /// A pynenc `TaskId` (one shared instance per key).
    pub fn task_id<'py>(&self, py: Python<'py>, t: &TaskId) -> PyResult<Bound<'py, PyAny>> {
        let cache = self.task_ids.bind(py);
        if let Some(found) = cache.get_item(t.key())? {
            return Ok(found);
        }
        let obj = self.build(
            py,
            &self.task_id,
            &[
                (
                    intern!(py, "module"),
                    PyString::new(py, t.module()).into_any(),
                ),
                (
                    intern!(py, "func_name"),
                    PyString::new(py, t.func_name()).into_any(),
                ),
            ],
        )?;
        if cache.len() >= TASK_CACHE_MAX {
            cache.clear();
        }
        cache.set_item(t.key(), &obj)?;
        Ok(obj)
    }

    fn call_id<'py>(&self, py: Python<'py>, c: &CallId) -> PyResult<Bound<'py, PyAny>> {
        self.build(
            py,
            &self.call_id,
            &[
                (intern!(py, "task_id"), self.task_id(py, c.task_id())?),
                (
                    intern!(py, "args_id"),
                    PyString::new(py, c.args_id()).into_any(),
                ),
            ],
        )
    }

    /// A pynenc `WorkflowIdentity`.
    pub fn workflow<'py>(
        &self,
        py: Python<'py>,
        w: &WorkflowIdentity,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.build(
            py,
            &self.workflow,
            &[
                (intern!(py, "workflow_id"), id_obj(py, &w.workflow_id)),
                (
                    intern!(py, "workflow_type"),
                    self.task_id(py, &w.workflow_type)?,
                ),
                (
                    intern!(py, "parent_workflow_id"),
                    opt_id(py, w.parent_workflow_id.as_ref()),
                ),
            ],
        )
    }

    /// pynenc's `(InvocationDTO, CallDTO)` pair.
    pub fn invocation_pair<'py>(
        &self,
        py: Python<'py>,
        inv: &InvocationDTO,
        call: &CallDTO,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let args = PyDict::new(py);
        for (k, v) in call.serialized_arguments.iter() {
            args.set_item(k, v)?;
        }
        let call_id = self.call_id(py, &call.call_id)?;
        // Both DTOs share one CallId object when the ids agree, as they
        // always do when stored (SPEC: the invocation's call id is its call's).
        let inv_call_id = if inv.call_id == call.call_id {
            call_id.clone()
        } else {
            self.call_id(py, &inv.call_id)?
        };
        let call_obj = self.build(
            py,
            &self.call_dto,
            &[
                (intern!(py, "call_id"), call_id),
                (intern!(py, "serialized_arguments"), args.into_any()),
            ],
        )?;
        let inv_obj = self.build(
            py,
            &self.invocation_dto,
            &[
                (intern!(py, "invocation_id"), id_obj(py, &inv.invocation_id)),
                (intern!(py, "call_id"), inv_call_id),
                (intern!(py, "workflow"), self.workflow(py, &inv.workflow)?),
                (
                    intern!(py, "parent_invocation_id"),
                    opt_id(py, inv.parent_invocation_id.as_ref()),
                ),
            ],
        )?;
        Ok((inv_obj, call_obj))
    }

    /// A pynenc `InvocationHistory`.
    pub fn history<'py>(
        &self,
        py: Python<'py>,
        h: &InvocationHistory,
    ) -> PyResult<Bound<'py, PyAny>> {
        let status = InvocationStatus::ALL
            .iter()
            .position(|s| *s == h.status_record.status)
            .and_then(|i| self.statuses.get(i))
            .ok_or_else(|| invalid(py, format!("unknown status {}", h.status_record.status)))?;
        // Both instants are usually the same (datetimes are immutable: share).
        let status_time = self.datetime(py, &h.status_record.timestamp)?;
        let record_time = if h.timestamp == h.status_record.timestamp {
            status_time.clone()
        } else {
            self.datetime(py, &h.timestamp)?
        };
        let record = self.build(
            py,
            &self.status_record,
            &[
                (intern!(py, "status"), status.bind(py).clone()),
                (
                    intern!(py, "runner_id"),
                    match &h.status_record.runner_id {
                        Some(r) => PyString::new(py, r.as_str()).into_any(),
                        None => py.None().into_bound(py),
                    },
                ),
                (intern!(py, "timestamp"), status_time.clone()),
            ],
        )?;
        self.build(
            py,
            &self.history,
            &[
                (intern!(py, "invocation_id"), id_obj(py, &h.invocation_id)),
                (intern!(py, "_timestamp"), record_time),
                (intern!(py, "status_record"), record),
                (
                    intern!(py, "runner_context_id"),
                    PyString::new(py, h.runner_context_id.as_str()).into_any(),
                ),
                (
                    intern!(py, "registered_by_inv_id"),
                    opt_id(py, h.registered_by_inv_id.as_ref()),
                ),
            ],
        )
    }

    /// A pynenc `RunnerContext` with its whole parent chain.
    pub fn runner_context<'py>(
        &self,
        py: Python<'py>,
        c: &RunnerContext,
    ) -> PyResult<Bound<'py, PyAny>> {
        let parent = match &c.parent {
            Some(p) => self.runner_context(py, p)?,
            None => py.None().into_bound(py),
        };
        self.build(
            py,
            &self.runner_context,
            &[
                (
                    intern!(py, "runner_cls"),
                    PyString::new(py, &c.runner_cls).into_any(),
                ),
                (
                    intern!(py, "runner_id"),
                    PyString::new(py, c.runner_id.as_str()).into_any(),
                ),
                (intern!(py, "parent_ctx"), parent),
                (intern!(py, "pid"), c.pid.into_pyobject(py)?.into_any()),
                (
                    intern!(py, "hostname"),
                    PyString::new(py, &c.hostname).into_any(),
                ),
                (
                    intern!(py, "thread_id"),
                    c.thread_id.into_pyobject(py)?.into_any(),
                ),
            ],
        )
    }

    /// A list of pynenc objects made by `f`.
    pub fn list<'py, T>(
        &self,
        py: Python<'py>,
        items: &[T],
        f: impl Fn(&Self, Python<'py>, &T) -> PyResult<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for item in items {
            list.append(f(self, py, item)?)?;
        }
        Ok(list)
    }
}

fn id_obj<'py>(py: Python<'py>, id: &InvocationId) -> Bound<'py, PyAny> {
    PyString::new(py, id.as_str()).into_any()
}

fn opt_id<'py>(py: Python<'py>, id: Option<&InvocationId>) -> Bound<'py, PyAny> {
    match id {
        Some(id) => id_obj(py, id),
        None => py.None().into_bound(py),
    }
}

/// A list of Python strings from ids.
pub fn id_list<'py>(py: Python<'py>, ids: &[InvocationId]) -> PyResult<Bound<'py, PyList>> {
    PyList::new(py, ids.iter().map(InvocationId::as_str))
}

// ---- Python → Rust ----------------------------------------------------

fn attr<'py>(obj: &Bound<'py, PyAny>, name: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyAny>> {
    obj.getattr(name)
}

fn string(obj: &Bound<'_, PyAny>, name: &Bound<'_, PyString>) -> PyResult<String> {
    attr(obj, name)?.extract()
}

fn opt_string(obj: &Bound<'_, PyAny>, name: &Bound<'_, PyString>) -> PyResult<Option<String>> {
    let v = attr(obj, name)?;
    if v.is_none() {
        Ok(None)
    } else {
        Ok(Some(v.extract()?))
    }
}

/// A pynenc `TaskId` (`module`, `func_name`).
pub fn task_id_from(obj: &Bound<'_, PyAny>) -> PyResult<TaskId> {
    let py = obj.py();
    let module: String = string(obj, intern!(py, "module"))?;
    let func: String = string(obj, intern!(py, "func_name"))?;
    TaskId::new(&module, &func).map_err(|e| invalid(py, e.to_string()))
}

fn call_id_from(obj: &Bound<'_, PyAny>) -> PyResult<CallId> {
    let py = obj.py();
    let task = task_id_from(&attr(obj, intern!(py, "task_id"))?)?;
    let args_id: String = string(obj, intern!(py, "args_id"))?;
    Ok(CallId::new(task, &args_id))
}

/// A pynenc `WorkflowIdentity`.
pub fn workflow_from(obj: &Bound<'_, PyAny>) -> PyResult<WorkflowIdentity> {
    let py = obj.py();
    Ok(WorkflowIdentity {
        workflow_id: InvocationId::new(string(obj, intern!(py, "workflow_id"))?),
        workflow_type: task_id_from(&attr(obj, intern!(py, "workflow_type"))?)?,
        parent_workflow_id: opt_string(obj, intern!(py, "parent_workflow_id"))?
            .map(InvocationId::new),
    })
}

/// A pynenc `(InvocationDTO, CallDTO)` pair.
pub fn invocation_pair_from(entry: &Bound<'_, PyAny>) -> PyResult<(InvocationDTO, CallDTO)> {
    let py = entry.py();
    let (inv, call): (Bound<'_, PyAny>, Bound<'_, PyAny>) = entry.extract()?;
    let args_obj = attr(&call, intern!(py, "serialized_arguments"))?;
    let args_dict = args_obj.cast::<PyDict>()?;
    let mut args = SerializedArguments::new();
    for (k, v) in args_dict.iter() {
        let k: String = k.extract()?;
        let v: String = v.extract()?;
        args.insert(k, v);
    }
    let call_id = call_id_from(&attr(&call, intern!(py, "call_id"))?)?;
    let inv_call = attr(&inv, intern!(py, "call_id"))?;
    let same_call = inv_call.is(attr(&call, intern!(py, "call_id"))?);
    let inv_call_id = if same_call {
        call_id.clone()
    } else {
        call_id_from(&inv_call)?
    };
    Ok((
        InvocationDTO {
            invocation_id: InvocationId::new(string(&inv, intern!(py, "invocation_id"))?),
            call_id: inv_call_id,
            workflow: workflow_from(&attr(&inv, intern!(py, "workflow"))?)?,
            parent_invocation_id: opt_string(&inv, intern!(py, "parent_invocation_id"))?
                .map(InvocationId::new),
        },
        CallDTO {
            call_id,
            serialized_arguments: args,
        },
    ))
}

/// A Python `datetime` as a [`Timestamp`], keeping its UTC offset; a naive
/// datetime is UTC (as pynenc's `InvocationHistory.from_json` reads one).
pub fn timestamp_from(dt: &Bound<'_, PyAny>) -> PyResult<Timestamp> {
    let py = dt.py();
    let text = dt.call_method0(intern!(py, "isoformat"))?;
    let text = text.cast::<PyString>()?.to_str()?;
    Timestamp::parse(text).map_err(|e| invalid(py, e.to_string()))
}

fn is_naive(dt: &Bound<'_, PyAny>) -> PyResult<bool> {
    Ok(dt.getattr(intern!(dt.py(), "tzinfo"))?.is_none())
}

/// A range bound: an aware datetime as its instant; a naive one as the
/// local time pynenc's SQLite backend reads it as (`.timestamp()`).
pub fn bound_from(dt: &Bound<'_, PyAny>) -> PyResult<Timestamp> {
    if is_naive(dt)? {
        timestamp_from(&dt.call_method0(intern!(dt.py(), "astimezone"))?)
    } else {
        timestamp_from(dt)
    }
}

/// A pynenc `InvocationHistory` and the time key pynenc's SQLite backend
/// stores it at when that is not its instant: `_timestamp.timestamp()` of a
/// naive `_timestamp` is the writer's local time (SPEC §3, stored time keys).
pub fn history_from(obj: &Bound<'_, PyAny>) -> PyResult<(InvocationHistory, Option<TimeKey>)> {
    let py = obj.py();
    let stamp = attr(obj, intern!(py, "_timestamp"))?;
    let record = record_from(obj, &stamp)?;
    let key = if is_naive(&stamp)? {
        let local: f64 = stamp.call_method0(intern!(py, "timestamp"))?.extract()?;
        Some(TimeKey::from_seconds(local)).filter(|k| *k != record.timestamp.key())
    } else {
        None
    };
    Ok((record, key))
}

fn record_from(obj: &Bound<'_, PyAny>, stamp: &Bound<'_, PyAny>) -> PyResult<InvocationHistory> {
    let py = obj.py();
    let record = attr(obj, intern!(py, "status_record"))?;
    let status = attr(&record, intern!(py, "status"))?;
    let status = status.cast::<PyString>()?.to_str()?;
    let status: InvocationStatus = status
        .parse()
        .map_err(|e: taskstate::KeyError| invalid(py, e.to_string()))?;
    Ok(InvocationHistory {
        invocation_id: InvocationId::new(string(obj, intern!(py, "invocation_id"))?),
        timestamp: timestamp_from(stamp)?,
        status_record: InvocationStatusRecord {
            status,
            runner_id: opt_string(&record, intern!(py, "runner_id"))?.map(RunnerId::new),
            timestamp: timestamp_from(&attr(&record, intern!(py, "timestamp"))?)?,
        },
        runner_context_id: RunnerId::new(string(obj, intern!(py, "runner_context_id"))?),
        registered_by_inv_id: opt_string(obj, intern!(py, "registered_by_inv_id"))?
            .map(InvocationId::new),
    })
}

/// A pynenc `RunnerContext` with its parent chain.
pub fn runner_context_from(obj: &Bound<'_, PyAny>) -> PyResult<RunnerContext> {
    let py = obj.py();
    let parent = attr(obj, intern!(py, "parent_ctx"))?;
    Ok(RunnerContext {
        runner_cls: string(obj, intern!(py, "runner_cls"))?,
        runner_id: RunnerId::new(string(obj, intern!(py, "runner_id"))?),
        parent: if parent.is_none() {
            None
        } else {
            Some(Box::new(runner_context_from(&parent)?))
        },
        pid: attr(obj, intern!(py, "pid"))?.extract()?,
        hostname: string(obj, intern!(py, "hostname"))?,
        thread_id: attr(obj, intern!(py, "thread_id"))?.extract()?,
    })
}
