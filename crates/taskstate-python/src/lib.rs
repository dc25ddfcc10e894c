//! `pynenc_taskstate._native`: taskstate's engines for Python.
//!
//! One class, [`Store`], opened by the same URLs as `taskstate::open`
//! (`memory://`, `sqlite://PATH`, `postgres://…`). Its methods take and
//! return pynenc 0.1.0's own objects (`InvocationDTO`, `CallDTO`,
//! `InvocationHistory`, `RunnerContext`, `WorkflowIdentity`, `TaskId`), so
//! the Python package's `TaskstateStateBackend` only forwards calls. Every
//! engine call runs with the GIL released (`Python::detach`): pynenc's
//! thread runners run in parallel while one waits on disk or the server.
//! Engine errors arrive as the exceptions of `pynenc_taskstate.errors`.

mod convert;
mod errors;

/// The built extension's allocator (see Cargo.toml): only when maturin
/// builds the module, so the crate's tests and library users keep theirs.
#[cfg(feature = "extension-module")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};
use taskstate::{
    Cursor, Error, HistoryRow, InvocationId, Page, RunnerId, StateBackend, TimeRange, Timestamp,
};

use convert::Types;

/// A taskstate engine opened by URL, speaking pynenc's objects.
#[pyclass(frozen, weakref, module = "pynenc_taskstate._native")]
pub struct Store {
    backend: Box<dyn StateBackend>,
}

fn open_err(py: Python<'_>, e: taskstate::UrlError) -> PyErr {
    match e {
        taskstate::UrlError::Open(e) => errors::to_py(py, e),
        other => errors::invalid(py, other.to_string()),
    }
}

impl Store {
    /// Runs `f` on the engine with the GIL released; maps its error.
    fn run<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&dyn StateBackend) -> Result<T, Error> + Send,
    ) -> PyResult<T> {
        let backend = self.backend.as_ref();
        py.detach(|| f(backend)).map_err(|e| errors::to_py(py, e))
    }

    /// One page of a time-range query: bounds and cursor from Python, the
    /// engine call with the GIL released.
    fn page<T: Send>(
        &self,
        py: Python<'_>,
        start: &Bound<'_, PyAny>,
        end: &Bound<'_, PyAny>,
        cursor: Option<&str>,
        page_size: usize,
        fetch: impl FnOnce(
            &dyn StateBackend,
            &TimeRange,
            Option<&Cursor>,
            usize,
        ) -> Result<Page<T>, Error>
        + Send,
    ) -> PyResult<Page<T>> {
        let range = range_of(start, end)?;
        let (cursor, size) = page_args(py, cursor, page_size)?;
        self.run(py, |b| fetch(b, &range, cursor.as_ref(), size))
    }
}

/// A page as Python sees it: the items and the next cursor's token.
type PageOut<'py> = (Bound<'py, PyList>, Option<String>);

fn paged<'py, T>(
    page: Page<T>,
    items: impl FnOnce(&[T]) -> PyResult<Bound<'py, PyList>>,
) -> PyResult<PageOut<'py>> {
    Ok((items(&page.items)?, page.next.map(|c| c.token().to_owned())))
}

fn range_of(start: &Bound<'_, PyAny>, end: &Bound<'_, PyAny>) -> PyResult<TimeRange> {
    Ok(TimeRange::new(
        convert::bound_from(start)?,
        convert::bound_from(end)?,
    ))
}

fn page_args(
    py: Python<'_>,
    cursor: Option<&str>,
    page_size: usize,
) -> PyResult<(Option<Cursor>, usize)> {
    if page_size == 0 {
        return Err(errors::invalid(py, "batch_size must be at least 1".into()));
    }
    Ok((cursor.map(Cursor::from_token), page_size))
}

#[pymethods]
impl Store {
    /// Opens the engine at `url` (`memory://`, `sqlite://PATH`,
    /// `postgres://user@host/db?schema=name`).
    #[new]
    fn new(py: Python<'_>, url: &str) -> PyResult<Self> {
        let backend = py
            .detach(|| taskstate::open(url))
            .map_err(|e| open_err(py, e))?;
        Ok(Store { backend })
    }

    /// The engine's name (`memory`, `sqlite`, `postgres`).
    #[getter]
    fn engine(&self) -> &'static str {
        self.backend.engine_name()
    }

    // ---- invocations ---------------------------------------------------

    /// Stores `(InvocationDTO, CallDTO)` pairs atomically.
    fn upsert_invocations(&self, py: Python<'_>, entries: &Bound<'_, PyAny>) -> PyResult<()> {
        let pairs = entries
            .try_iter()?
            .map(|e| convert::invocation_pair_from(&e?))
            .collect::<PyResult<Vec<_>>>()?;
        self.run(py, |b| b.upsert_invocations(&pairs))
    }

    /// The `(InvocationDTO, CallDTO)` pair of `invocation_id`, or `None`.
    fn get_invocation<'py>(
        &self,
        py: Python<'py>,
        invocation_id: &str,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let id = InvocationId::new(invocation_id);
        let found = self.run(py, |b| match b.get_invocation(&id) {
            Ok(pair) => Ok(Some(pair)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        })?;
        match found {
            None => Ok(None),
            Some(record) => {
                let (inv, call) = &*record;
                let (i, c) = Types::get(py)?.invocation_pair(py, inv, call)?;
                Ok(Some(PyTuple::new(py, [i, c])?))
            }
        }
    }

    /// Ids of the children of `parent_invocation_id`, ascending.
    fn get_child_invocations<'py>(
        &self,
        py: Python<'py>,
        parent_invocation_id: &str,
    ) -> PyResult<Bound<'py, PyList>> {
        let id = InvocationId::new(parent_invocation_id);
        let ids = self.run(py, |b| b.get_child_invocations(&id))?;
        convert::id_list(py, &ids)
    }

    /// Ids of invocations by workflow id and/or workflow type key.
    #[pyo3(signature = (workflow_id=None, workflow_type_key=None))]
    fn get_invocation_ids_by_workflow<'py>(
        &self,
        py: Python<'py>,
        workflow_id: Option<&str>,
        workflow_type_key: Option<&str>,
    ) -> PyResult<Bound<'py, PyList>> {
        let wf = workflow_id.filter(|s| !s.is_empty()).map(InvocationId::new);
        let ty = match workflow_type_key.filter(|s| !s.is_empty()) {
            None => None,
            Some(k) => match k.parse::<taskstate::TaskId>() {
                Ok(t) => Some(t),
                // No stored invocation has a type key that does not parse.
                Err(_) => return Ok(PyList::empty(py)),
            },
        };
        let ids = self.run(py, |b| {
            b.get_invocation_ids_by_workflow(wf.as_ref(), ty.as_ref())
        })?;
        convert::id_list(py, &ids)
    }

    // ---- history -------------------------------------------------------

    /// Stores ONE `InvocationHistory` under every id of `invocation_ids`
    /// (pynenc's `_add_histories`; SPEC §3 history keys), atomically.
    fn add_histories(
        &self,
        py: Python<'_>,
        invocation_ids: Vec<String>,
        history: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let (record, time_key) = convert::history_from(history)?;
        let keys: Vec<InvocationId> = invocation_ids.into_iter().map(InvocationId::new).collect();
        self.run(py, |b| {
            let rows: Vec<HistoryRow<'_>> = keys
                .iter()
                .map(|k| HistoryRow::under(k, &record).at_time_key(time_key))
                .collect();
            b.add_history_rows(&rows)
        })
    }

    /// The history stored under `invocation_id`, in order.
    fn get_history<'py>(
        &self,
        py: Python<'py>,
        invocation_id: &str,
    ) -> PyResult<Bound<'py, PyList>> {
        let id = InvocationId::new(invocation_id);
        let h = self.run(py, |b| b.get_history(&id))?;
        Types::get(py)?.list(py, &h, Types::history)
    }

    /// One page of ids with history in [start, end]: `(ids, next_cursor)`.
    #[pyo3(signature = (start, end, cursor=None, page_size=100))]
    fn invocation_ids_page<'py>(
        &self,
        py: Python<'py>,
        start: &Bound<'py, PyAny>,
        end: &Bound<'py, PyAny>,
        cursor: Option<&str>,
        page_size: usize,
    ) -> PyResult<PageOut<'py>> {
        let page = self.page(py, start, end, cursor, page_size, |b, r, c, n| {
            b.invocation_ids_in_timerange(r, c, n)
        })?;
        paged(page, |items| convert::id_list(py, items))
    }

    /// One page of history rows in [start, end]: `(records, next_cursor)`.
    #[pyo3(signature = (start, end, cursor=None, page_size=100))]
    fn history_page<'py>(
        &self,
        py: Python<'py>,
        start: &Bound<'py, PyAny>,
        end: &Bound<'py, PyAny>,
        cursor: Option<&str>,
        page_size: usize,
    ) -> PyResult<PageOut<'py>> {
        let page = self.page(py, start, end, cursor, page_size, |b, r, c, n| {
            b.history_in_timerange(r, c, n)
        })?;
        paged(page, |items| {
            Types::get(py)?.list(py, items, Types::history)
        })
    }

    // ---- results and exceptions ----------------------------------------

    /// Sets an invocation's serialized result.
    fn set_result(&self, py: Python<'_>, invocation_id: &str, result: &str) -> PyResult<()> {
        let id = InvocationId::new(invocation_id);
        let value = result.to_owned();
        self.run(py, |b| b.set_result(&id, &value))
    }

    /// An invocation's serialized result; `NotFoundError` (a `KeyError`).
    fn get_result<'py>(
        &self,
        py: Python<'py>,
        invocation_id: &str,
    ) -> PyResult<Bound<'py, PyString>> {
        let id = InvocationId::new(invocation_id);
        let v = self.run(py, |b| b.get_result(&id))?;
        Ok(PyString::new(py, &v))
    }

    /// Sets an invocation's serialized exception.
    fn set_exception(&self, py: Python<'_>, invocation_id: &str, exception: &str) -> PyResult<()> {
        let id = InvocationId::new(invocation_id);
        let value = exception.to_owned();
        self.run(py, |b| b.set_exception(&id, &value))
    }

    /// An invocation's serialized exception; `NotFoundError` (a `KeyError`).
    fn get_exception<'py>(
        &self,
        py: Python<'py>,
        invocation_id: &str,
    ) -> PyResult<Bound<'py, PyString>> {
        let id = InvocationId::new(invocation_id);
        let v = self.run(py, |b| b.get_exception(&id))?;
        Ok(PyString::new(py, &v))
    }

    // ---- workflows -----------------------------------------------------

    /// Stores (upserts) a workflow run.
    fn store_workflow_run(&self, py: Python<'_>, workflow: &Bound<'_, PyAny>) -> PyResult<()> {
        let wf = convert::workflow_from(workflow)?;
        self.run(py, |b| b.store_workflow_run(&wf))
    }

    /// Every workflow type (`TaskId`), ascending by key.
    fn get_all_workflow_types<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let types = self.run(py, |b| b.get_all_workflow_types())?;
        Types::get(py)?.list(py, &types, Types::task_id)
    }

    /// Every workflow run (`WorkflowIdentity`), ascending by workflow id.
    fn get_all_workflow_runs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let runs = self.run(py, |b| b.get_all_workflow_runs())?;
        Types::get(py)?.list(py, &runs, Types::workflow)
    }

    /// The runs of one workflow type (a pynenc `TaskId`).
    fn get_workflow_runs<'py>(
        &self,
        py: Python<'py>,
        workflow_type: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let ty = convert::task_id_from(workflow_type)?;
        let runs = self.run(py, |b| b.get_workflow_runs(&ty))?;
        Types::get(py)?.list(py, &runs, Types::workflow)
    }

    /// Records a sub-invocation of a workflow.
    fn store_workflow_sub_invocation(
        &self,
        py: Python<'_>,
        parent_workflow_id: &str,
        sub_invocation_id: &str,
    ) -> PyResult<()> {
        let (w, s) = (
            InvocationId::new(parent_workflow_id),
            InvocationId::new(sub_invocation_id),
        );
        self.run(py, |b| b.store_workflow_sub_invocation(&w, &s))
    }

    /// The sub-invocations of a workflow, ascending.
    fn get_workflow_sub_invocations<'py>(
        &self,
        py: Python<'py>,
        workflow_id: &str,
    ) -> PyResult<Bound<'py, PyList>> {
        let w = InvocationId::new(workflow_id);
        let ids = self.run(py, |b| b.get_workflow_sub_invocations(&w))?;
        convert::id_list(py, &ids)
    }

    /// Sets a workflow data value (already serialized).
    fn set_workflow_data(
        &self,
        py: Python<'_>,
        workflow_id: &str,
        key: &str,
        value: &str,
    ) -> PyResult<()> {
        let (w, k, v) = (
            InvocationId::new(workflow_id),
            key.to_owned(),
            value.to_owned(),
        );
        self.run(py, |b| b.set_workflow_data(&w, &k, &v))
    }

    /// A workflow data value, or `None`.
    fn get_workflow_data(
        &self,
        py: Python<'_>,
        workflow_id: &str,
        key: &str,
    ) -> PyResult<Option<String>> {
        let (w, k) = (InvocationId::new(workflow_id), key.to_owned());
        self.run(py, |b| b.get_workflow_data(&w, &k))
    }

    // ---- apps ----------------------------------------------------------

    /// Stores an app info given as pynenc's `AppInfo.to_json()` text.
    fn store_app_info(&self, py: Python<'_>, app_info_json: &str) -> PyResult<()> {
        let info = taskstate::AppInfo::from_json(app_info_json)
            .map_err(|e| errors::invalid(py, format!("app info: {e}")))?;
        self.run(py, |b| b.store_app_info(&info))
    }

    /// An app info as JSON text; `NotFoundError` (a `KeyError`) if absent.
    fn get_app_info(&self, py: Python<'_>, app_id: &str) -> PyResult<String> {
        let id = taskstate::AppId::new(app_id);
        Ok(self.run(py, |b| b.get_app_info(&id))?.to_json())
    }

    /// Every app info as `(app_id, json)`, ascending by app id.
    fn discover_app_infos(&self, py: Python<'_>) -> PyResult<Vec<(String, String)>> {
        let infos = self.run(py, |b| b.discover_app_infos())?;
        Ok(infos
            .into_iter()
            .map(|a| {
                let json = a.to_json();
                (a.app_id.into_string(), json)
            })
            .collect())
    }

    // ---- runner contexts -----------------------------------------------

    /// Stores a pynenc `RunnerContext` and its parent chain.
    fn store_runner_context(&self, py: Python<'_>, ctx: &Bound<'_, PyAny>) -> PyResult<()> {
        let ctx = convert::runner_context_from(ctx)?;
        self.run(py, |b| b.store_runner_context(&ctx))
    }

    /// A stored `RunnerContext` with its parent chain, or `None`.
    fn get_runner_context<'py>(
        &self,
        py: Python<'py>,
        runner_id: &str,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let id = RunnerId::new(runner_id);
        match self.run(py, |b| b.get_runner_context(&id))? {
            Some(c) => Ok(Some(Types::get(py)?.runner_context(py, &c)?)),
            None => Ok(None),
        }
    }

    /// The stored contexts among `runner_ids`, ascending by id.
    fn get_runner_contexts<'py>(
        &self,
        py: Python<'py>,
        runner_ids: Vec<String>,
    ) -> PyResult<Bound<'py, PyList>> {
        let ids: Vec<RunnerId> = runner_ids.into_iter().map(RunnerId::new).collect();
        let found = self.run(py, |b| b.get_runner_contexts(&ids))?;
        Types::get(py)?.list(py, &found, Types::runner_context)
    }

    /// Contexts whose runner id contains `partial_id` (literal, ASCII
    /// case-insensitive), ascending by id.
    fn get_matching_runner_contexts<'py>(
        &self,
        py: Python<'py>,
        partial_id: &str,
    ) -> PyResult<Bound<'py, PyList>> {
        let partial = partial_id.to_owned();
        let found = self.run(py, |b| b.get_matching_runner_contexts(&partial))?;
        Types::get(py)?.list(py, &found, Types::runner_context)
    }

    // ---- maintenance ---------------------------------------------------

    /// Deletes everything the store holds.
    fn purge(&self, py: Python<'_>) -> PyResult<()> {
        self.run(py, |b| b.purge())
    }

    /// Deletes finished state that ended at or before `before` (SPEC §10:
    /// whole workflow trees, orphan rows as old), `chunk` trees per
    /// transaction; with `dry_run`, deletes nothing. Returns the counts of
    /// what was (or would be) deleted, by kind.
    #[pyo3(signature = (before, dry_run = false, chunk = taskstate::prune::DEFAULT_CHUNK))]
    fn prune(
        &self,
        py: Python<'_>,
        before: &Bound<'_, PyAny>,
        dry_run: bool,
        chunk: usize,
    ) -> PyResult<Vec<(&'static str, u64)>> {
        let options = taskstate::PruneOptions::new(convert::bound_from(before)?)
            .dry_run(dry_run)
            .chunk(chunk);
        let counts = self.run(py, |b| b.prune(&options, &mut |_| {}))?;
        Ok(counts.fields().to_vec())
    }

    fn __repr__(&self) -> String {
        format!("<taskstate Store engine={}>", self.backend.engine_name())
    }
}

/// Parses a timestamp the way the store does (for tests and tools).
#[pyfunction]
fn parse_timestamp(py: Python<'_>, text: &str) -> PyResult<(i64, i32)> {
    let t = Timestamp::parse(text).map_err(|e| errors::invalid(py, e.to_string()))?;
    Ok((t.micros(), t.offset_secs()))
}

/// The module `pynenc_taskstate._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Store>()?;
    m.add_function(wrap_pyfunction!(parse_timestamp, m)?)?;
    Ok(())
}
