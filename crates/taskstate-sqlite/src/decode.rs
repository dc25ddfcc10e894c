//! Row decoding: every column is read through these helpers, which turn
//! anything unexpected (NULL, a wrong type, bad UTF-8, JSON that does not
//! parse) into `Corrupt` naming the file, the table and the row's key.

use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row};
use taskstate_core::engine::{absent_if_empty, resolve_runner_chain};
use taskstate_core::{
    AppInfo, CallDTO, CallId, InvocationDTO, InvocationHistory, InvocationId, RecentIds, Result,
    RunnerContext, RunnerId, SerializedArguments, StoredHistory, TaskId, TimeKey, WorkflowIdentity,
};

use crate::errors::{Ctx, corrupt, sql_err};

/// Reads a column as text, as the reference stores it (TEXT, or a BLOB
/// column holding UTF-8); anything else is corrupt data.
pub(crate) fn text_at(
    row: &Row<'_>,
    i: usize,
    ctx: &Ctx,
    table: &str,
    key: &str,
) -> Result<String> {
    str_at(row, i, ctx, table, key).map(str::to_owned)
}

pub(crate) fn opt_text_at(
    row: &Row<'_>,
    i: usize,
    ctx: &Ctx,
    table: &str,
    key: &str,
) -> Result<Option<String>> {
    Ok(opt_str_at(row, i, ctx, table, key)?.map(str::to_owned))
}

/// [`text_at`] borrowed from the row (no copy; what is built from it
/// copies once).
pub(crate) fn str_at<'r>(
    row: &'r Row<'_>,
    i: usize,
    ctx: &Ctx,
    table: &str,
    key: &str,
) -> Result<&'r str> {
    opt_str_at(row, i, ctx, table, key)?
        .ok_or_else(|| corrupt(ctx, table, key, format!("column {i} is NULL")))
}

/// A text column's bytes, borrowed from the row, for a reader that checks
/// they are UTF-8 as it decodes them.
pub(crate) fn bytes_at<'r>(
    row: &'r Row<'_>,
    i: usize,
    ctx: &Ctx,
    table: &str,
    key: &str,
) -> Result<&'r [u8]> {
    match row.get_ref(i) {
        Ok(ValueRef::Text(b) | ValueRef::Blob(b)) => Ok(b),
        // Anything else: the text reader's error.
        _ => str_at(row, i, ctx, table, key).map(str::as_bytes),
    }
}

/// [`opt_text_at`] borrowed from the row.
pub(crate) fn opt_str_at<'r>(
    row: &'r Row<'_>,
    i: usize,
    ctx: &Ctx,
    table: &str,
    key: &str,
) -> Result<Option<&'r str>> {
    let v = row
        .get_ref(i)
        .map_err(|e| corrupt(ctx, table, key, format!("column {i}: {e}")))?;
    let bytes = match v {
        ValueRef::Null => return Ok(None),
        ValueRef::Text(b) | ValueRef::Blob(b) => b,
        other => {
            return Err(corrupt(
                ctx,
                table,
                key,
                format!("column {i} holds {:?}, expected text", other.data_type()),
            ));
        }
    };
    std::str::from_utf8(bytes)
        .map(Some)
        .map_err(|e| corrupt(ctx, table, key, format!("column {i} is not UTF-8: {e}")))
}

/// An optional id column: NULL and `''` both mean absent (the reference
/// writes `''` for a missing workflow parent and reads falsy as none).
pub(crate) fn opt_id_at(
    row: &Row<'_>,
    i: usize,
    ctx: &Ctx,
    table: &str,
    key: &str,
) -> Result<Option<InvocationId>> {
    Ok(absent_if_empty(opt_str_at(row, i, ctx, table, key)?))
}

pub(crate) fn int_at(row: &Row<'_>, i: usize, ctx: &Ctx, table: &str, key: &str) -> Result<i64> {
    number_at(row, i, ctx, table, key, "integer", |v| match v {
        ValueRef::Integer(n) => Some(n),
        _ => None,
    })
}

pub(crate) fn real_at(row: &Row<'_>, i: usize, ctx: &Ctx, table: &str, key: &str) -> Result<f64> {
    number_at(row, i, ctx, table, key, "real", |v| match v {
        ValueRef::Real(f) => Some(f),
        ValueRef::Integer(n) => Some(n as f64),
        _ => None,
    })
}

/// Column `i` as the number `pick` takes from it; any other value is
/// corrupt data naming the type found and the one `want`ed.
fn number_at<T>(
    row: &Row<'_>,
    i: usize,
    ctx: &Ctx,
    table: &str,
    key: &str,
    want: &str,
    pick: impl Fn(ValueRef<'_>) -> Option<T>,
) -> Result<T> {
    let v = row
        .get_ref(i)
        .map_err(|e| corrupt(ctx, table, key, format!("column {i}: {e}")))?;
    let found = v.data_type();
    pick(v).ok_or_else(|| {
        corrupt(
            ctx,
            table,
            key,
            format!("column {i} holds {found:?}, expected {want}"),
        )
    })
}

pub(crate) const T_INV: &str = "state_backend_invocations";
pub(crate) const T_HIST: &str = "state_backend_history";
pub(crate) const T_WF: &str = "state_backend_workflows";
pub(crate) const T_APP: &str = "state_backend_app_info";
pub(crate) const T_RUN: &str = "state_backend_runner_contexts";

/// Collects a single-column id query.
pub(crate) fn ids(
    ctx: &Ctx,
    c: &Connection,
    sql: &str,
    table: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<InvocationId>> {
    let mut st = c
        .prepare_cached(sql)
        .map_err(|e| sql_err(ctx, "prepare", e))?;
    let mut rows = st.query(params).map_err(|e| sql_err(ctx, "query", e))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| sql_err(ctx, "read row", e))? {
        out.push(InvocationId::new(str_at(row, 0, ctx, table, "id")?));
    }
    Ok(out)
}

pub(crate) fn decode_history(
    ctx: &Ctx,
    row: &Row<'_>,
    json_col: usize,
    id_col: usize,
    recent: &mut RecentIds,
) -> Result<InvocationHistory> {
    // Decoded straight from SQLite's buffer (no copy of the JSON text, and
    // its bytes checked as they are read); the key is read only to name a
    // bad row.
    let key = || opt_text_at(row, id_col, ctx, T_HIST, "?").map(Option::unwrap_or_default);
    match row.get_ref(json_col) {
        Ok(ValueRef::Text(b) | ValueRef::Blob(b)) => InvocationHistory::from_stored_json(b, recent)
            .map_err(|e| match key() {
                Ok(k) => corrupt(ctx, T_HIST, &k, e),
                Err(err) => err,
            }),
        // Not text: let the generic reader produce the precise error.
        _ => {
            let k = key()?;
            let json = text_at(row, json_col, ctx, T_HIST, &k)?;
            InvocationHistory::from_json(&json).map_err(|e| corrupt(ctx, T_HIST, &k, e))
        }
    }
}

/// An invocation and its call from the columns `call_id_key,
/// serialized_arguments, parent_invocation_id, workflow_id,
/// workflow_type_key, parent_workflow_id` starting at column `at`.
pub(crate) fn decode_invocation(
    ctx: &Ctx,
    row: &Row<'_>,
    id: &InvocationId,
    at: usize,
) -> Result<(InvocationDTO, CallDTO)> {
    let k = id.as_str();
    let call_id: CallId = str_at(row, at, ctx, T_INV, k)?
        .parse()
        .map_err(|e| corrupt(ctx, T_INV, k, e))?;
    let args = SerializedArguments::from_stored_json(bytes_at(row, at + 1, ctx, T_INV, k)?)
        .map_err(|e| corrupt(ctx, T_INV, k, e))?;
    // A root's workflow type is its own task: share the key, not a copy.
    let type_key = str_at(row, at + 4, ctx, T_INV, k)?;
    let workflow_type: TaskId = if type_key == call_id.task_id().key() {
        call_id.task_id().clone()
    } else {
        type_key.parse().map_err(|e| corrupt(ctx, T_INV, k, e))?
    };
    let workflow_key = str_at(row, at + 3, ctx, T_INV, k)?;
    let workflow_id = if workflow_key == k {
        id.clone()
    } else {
        InvocationId::new(workflow_key)
    };
    // A workflow's first children have its root as their parent: share it.
    let parent = opt_str_at(row, at + 2, ctx, T_INV, k)?;
    let parent_invocation_id = if parent == Some(workflow_key) && !workflow_key.is_empty() {
        Some(workflow_id.clone())
    } else {
        absent_if_empty(parent)
    };
    Ok((
        InvocationDTO {
            invocation_id: id.clone(),
            call_id: call_id.clone(),
            workflow: WorkflowIdentity {
                workflow_id,
                workflow_type,
                parent_workflow_id: opt_id_at(row, at + 5, ctx, T_INV, k)?,
            },
            parent_invocation_id,
        },
        CallDTO {
            call_id,
            serialized_arguments: args,
        },
    ))
}

/// A stored history row: the record (JSON at `json_col`) and its stored
/// time key (`history_timestamp` at `ts_col`); `id_col` names a bad row.
pub(crate) fn decode_stored_history(
    ctx: &Ctx,
    row: &Row<'_>,
    json_col: usize,
    id_col: usize,
    ts_col: usize,
    recent: &mut RecentIds,
) -> Result<StoredHistory> {
    let record = decode_history(ctx, row, json_col, id_col, recent)?;
    let time_key = match row.get_ref(ts_col) {
        Ok(ValueRef::Real(s)) if s.is_finite() => s,
        Ok(ValueRef::Integer(i)) => i as f64,
        _ => {
            let key = opt_text_at(row, id_col, ctx, T_HIST, "?")?.unwrap_or_default();
            return Err(corrupt(
                ctx,
                T_HIST,
                &key,
                "history_timestamp is not a finite number",
            ));
        }
    };
    Ok(StoredHistory {
        record,
        time_key: TimeKey::from_seconds(time_key),
    })
}

pub(crate) fn decode_workflow(ctx: &Ctx, row: &Row<'_>) -> Result<WorkflowIdentity> {
    let id = text_at(row, 0, ctx, T_WF, "?")?;
    let ty = text_at(row, 1, ctx, T_WF, &id)?;
    Ok(WorkflowIdentity {
        workflow_type: ty.parse().map_err(|e| corrupt(ctx, T_WF, &id, e))?,
        parent_workflow_id: opt_id_at(row, 2, ctx, T_WF, &id)?,
        workflow_id: InvocationId::new(id),
    })
}

pub(crate) fn decode_app(ctx: &Ctx, row: &Row<'_>, key: &str) -> Result<AppInfo> {
    let json = text_at(row, 0, ctx, T_APP, key)?;
    AppInfo::from_json(&json).map_err(|e| corrupt(ctx, T_APP, key, e))
}

pub(crate) type RunnerRowDecoded = (RunnerContext, Option<RunnerId>);

/// One runner-context row (without its parent) and its parent id.
pub(crate) fn load_runner(
    ctx: &Ctx,
    c: &Connection,
    id: &RunnerId,
) -> Result<Option<RunnerRowDecoded>> {
    let mut st = c
        .prepare_cached(
            "SELECT runner_cls, parent_ctx_id, pid, hostname, thread_id \
             FROM state_backend_runner_contexts WHERE runner_id = ?1",
        )
        .map_err(|e| sql_err(ctx, "prepare", e))?;
    let mut rows = st
        .query([id.as_str()])
        .map_err(|e| sql_err(ctx, "query", e))?;
    let Some(row) = rows.next().map_err(|e| sql_err(ctx, "read row", e))? else {
        return Ok(None);
    };
    let k = id.as_str();
    Ok(Some((
        RunnerContext {
            runner_cls: text_at(row, 0, ctx, T_RUN, k)?,
            runner_id: id.clone(),
            parent: None,
            pid: int_at(row, 2, ctx, T_RUN, k)?,
            hostname: text_at(row, 3, ctx, T_RUN, k)?,
            thread_id: int_at(row, 4, ctx, T_RUN, k)?,
        },
        opt_id_at(row, 1, ctx, T_RUN, k)?.map(|p| RunnerId::new(p.as_str())),
    )))
}

pub(crate) fn resolve_runner(
    ctx: &Ctx,
    c: &Connection,
    row: RunnerRowDecoded,
) -> Result<RunnerContext> {
    resolve_runner_chain(&format!("{} {T_RUN}", ctx.path), row, |id| {
        load_runner(ctx, c, id)
    })
}
