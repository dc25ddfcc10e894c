//! The bulk path of the SQLite engine.
//!
//! A snapshot is one read transaction on a read connection (on an
//! in-memory database: the one connection, held until the snapshot is
//! dropped, so writes wait for it). Pages are keyset queries on each
//! table's key — history by rowid, its insertion order — so a page costs
//! its own rows however deep into the table it is. The first page of a kind
//! has no lower bound, so rows whose key is not text (which a point query
//! never finds) are read and reported as corrupt, not skipped.
//!
//! A bulk write is one [`WriteOp::Batch`]: one `BEGIN IMMEDIATE`
//! transaction with the engine's prepared statements.

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, Row as SqlRow};
use taskstate_core::bulk::{
    cursor_after, cursor_arity, cursor_parts, not_keyed, salvage_page, salvage_rows,
};
use taskstate_core::{
    Cursor, Error, InvocationId, KeyRange, Kind, Page, Result, Row, RunnerContext, RunnerId,
    Snapshot,
};

use crate::SqliteBackend;
use crate::decode::{
    T_APP, T_HIST, T_INV, T_RUN, decode_app, decode_invocation, decode_stored_history,
    decode_workflow, int_at, opt_id_at, text_at,
};
use crate::encode::{invocation_row, runner_row, workflow_run_op};
use crate::errors::{Ctx, sql_err};
use crate::writer::{HistoryRow, WriteOp};

const T_RES: &str = "state_backend_results";
const T_EXC: &str = "state_backend_exceptions";
const T_SUB: &str = "state_backend_workflow_sub_invocations";
const T_DATA: &str = "state_backend_workflow_data";
const T_WF: &str = "state_backend_workflows";

/// (columns, table, key columns) of each kind's pages. Every name here is a
/// constant; values are always parameters.
fn layout(kind: Kind) -> (&'static str, &'static str, &'static [&'static str]) {
    match kind {
        Kind::Invocation => (
            "invocation_id, call_id_key, serialized_arguments, parent_invocation_id, \
             workflow_id, workflow_type_key, parent_workflow_id",
            T_INV,
            &["invocation_id"],
        ),
        Kind::History => (
            "rowid, invocation_id, history_timestamp, history_json",
            T_HIST,
            &["rowid"],
        ),
        Kind::Result => ("invocation_id, result_data", T_RES, &["invocation_id"]),
        Kind::Exception => ("invocation_id, exception_data", T_EXC, &["invocation_id"]),
        Kind::WorkflowRun => (
            "workflow_id, workflow_type_key, parent_workflow_id",
            T_WF,
            &["workflow_id"],
        ),
        Kind::SubInvocation => (
            "parent_workflow_id, sub_invocation_id",
            T_SUB,
            &["parent_workflow_id", "sub_invocation_id"],
        ),
        Kind::WorkflowData => (
            "workflow_id, data_key, data_value",
            T_DATA,
            &["workflow_id", "data_key"],
        ),
        Kind::AppInfo => ("app_info_json, app_id", T_APP, &["app_id"]),
        Kind::RunnerContext => (
            "runner_id, runner_cls, parent_ctx_id, pid, hostname, thread_id",
            T_RUN,
            &["runner_id"],
        ),
    }
}

/// The cursor of a fetched row from its stored key columns (as [`layout`]
/// selects them), decoded or not: `None` if a key is not text.
fn raw_cursor(kind: Kind, row: &SqlRow<'_>) -> Option<Cursor> {
    use rusqlite::types::ValueRef;
    let cols: &[usize] = match kind {
        Kind::SubInvocation | Kind::WorkflowData => &[0, 1],
        Kind::AppInfo => &[1],
        _ => &[0],
    };
    let mut parts = Vec::with_capacity(cols.len());
    for &i in cols {
        match row.get_ref(i).ok()? {
            ValueRef::Text(t) => parts.push(std::str::from_utf8(t).ok()?.to_owned()),
            ValueRef::Integer(n) if kind == Kind::History => parts.push(n.to_string()),
            _ => return None,
        }
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    Some(cursor_after(&refs))
}

/// Where the snapshot's connection comes from.
enum Held<'a> {
    /// A pooled read connection, returned to the pool on drop.
    Pooled(Option<Connection>),
    /// The in-memory database's only connection.
    Shared(parking_lot::MutexGuard<'a, Connection>),
}

pub(crate) struct SqliteSnapshot<'a> {
    backend: &'a SqliteBackend,
    held: Held<'a>,
    salvage: bool,
    skipped: Vec<(Kind, Error)>,
}

impl<'a> SqliteSnapshot<'a> {
    pub(crate) fn new(backend: &'a SqliteBackend) -> Result<Self> {
        let ctx = &backend.ctx;
        let held = match &backend.readers {
            Some(readers) => Held::Pooled(Some(readers.take(ctx)?)),
            None => Held::Shared(backend.writer.lock_conn()),
        };
        let mut snap = Self {
            backend,
            held,
            salvage: false,
            skipped: Vec::new(),
        };
        // A snapshot scans whole tables once: through the memory map every
        // page it touches would stay resident (up to the map's size), so it
        // reads through the page cache instead. The read transaction starts
        // at its first read: take it now, so the snapshot is of this moment.
        snap.conn()?
            .execute_batch("PRAGMA mmap_size = 0; BEGIN; SELECT count(*) FROM sqlite_schema;")
            .map_err(|e| sql_err(ctx, "begin snapshot", e))?;
        Ok(snap)
    }

    fn conn(&mut self) -> Result<&Connection> {
        match &mut self.held {
            Held::Pooled(Some(c)) => Ok(c),
            Held::Pooled(None) => Err(Error::Storage {
                message: format!("{}: the snapshot was released", self.backend.ctx.path),
                source: None,
            }),
            Held::Shared(g) => Ok(g),
        }
    }

    /// Runs `sql` with `params`, decoding each row with `f`.
    fn rows<T>(
        &mut self,
        sql: &str,
        params: &[SqlValue],
        mut f: impl FnMut(&SqlRow<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let ctx = self.backend.ctx.clone();
        let c = self.conn()?;
        let mut st = c
            .prepare_cached(sql)
            .map_err(|e| sql_err(&ctx, "prepare", e))?;
        let mut rows = st
            .query(rusqlite::params_from_iter(params))
            .map_err(|e| sql_err(&ctx, "query", e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| sql_err(&ctx, "read row", e))? {
            out.push(f(row)?);
        }
        Ok(out)
    }
}

/// Decodes one row of `kind` (columns as [`layout`] lists them).
fn decode_kind(ctx: &Ctx, kind: Kind, row: &SqlRow<'_>) -> Result<Row> {
    Ok(match kind {
        Kind::Invocation => {
            let id = InvocationId::new(text_at(row, 0, ctx, T_INV, "?")?);
            Row::Invocation(Box::new(decode_invocation(ctx, row, &id, 1)?))
        }
        Kind::History => {
            let key = text_at(row, 1, ctx, T_HIST, "?")?;
            Row::History(
                InvocationId::new(key),
                decode_stored_history(
                    ctx,
                    row,
                    3,
                    1,
                    2,
                    &mut taskstate_core::RecentIds::default(),
                )?,
            )
        }
        Kind::Result | Kind::Exception => {
            let table = if kind == Kind::Result { T_RES } else { T_EXC };
            let id = text_at(row, 0, ctx, table, "?")?;
            let value = text_at(row, 1, ctx, table, &id)?;
            if kind == Kind::Result {
                Row::Result(InvocationId::new(id), value)
            } else {
                Row::Exception(InvocationId::new(id), value)
            }
        }
        Kind::WorkflowRun => Row::WorkflowRun(decode_workflow(ctx, row)?),
        Kind::SubInvocation => {
            let w = text_at(row, 0, ctx, T_SUB, "?")?;
            let s = text_at(row, 1, ctx, T_SUB, &w)?;
            Row::SubInvocation(InvocationId::new(w), InvocationId::new(s))
        }
        Kind::WorkflowData => {
            let w = text_at(row, 0, ctx, T_DATA, "?")?;
            let k = text_at(row, 1, ctx, T_DATA, &w)?;
            let v = text_at(row, 2, ctx, T_DATA, &w)?;
            Row::WorkflowData(InvocationId::new(w), k, v)
        }
        Kind::AppInfo => {
            let key = text_at(row, 1, ctx, T_APP, "?")?;
            Row::AppInfo(decode_app(ctx, row, &key)?)
        }
        Kind::RunnerContext => {
            let id = text_at(row, 0, ctx, T_RUN, "?")?;
            let k = id.as_str();
            Row::RunnerContext(
                RunnerContext {
                    runner_cls: text_at(row, 1, ctx, T_RUN, k)?,
                    runner_id: RunnerId::new(k),
                    parent: None,
                    pid: int_at(row, 3, ctx, T_RUN, k)?,
                    hostname: text_at(row, 4, ctx, T_RUN, k)?,
                    thread_id: int_at(row, 5, ctx, T_RUN, k)?,
                },
                opt_id_at(row, 2, ctx, T_RUN, k)?.map(|p| RunnerId::new(p.as_str())),
            )
        }
    })
}

impl Drop for SqliteSnapshot<'_> {
    fn drop(&mut self) {
        if let Ok(c) = self.conn() {
            let _ = c.execute_batch("ROLLBACK");
            let _ = c.execute_batch(&format!("PRAGMA mmap_size = {}", crate::schema::MMAP_SIZE));
        }
        if let (Held::Pooled(c), Some(readers)) = (&mut self.held, &self.backend.readers) {
            if let Some(c) = c.take() {
                readers.give_back(c);
            }
        }
    }
}

/// `WHERE` clause (with a leading space, or empty) bounding `col` to
/// `range`, and its parameters.
fn range_clause(col: &str, range: &KeyRange, extra: Option<&str>) -> (String, Vec<SqlValue>) {
    let mut conds: Vec<String> = extra.map(str::to_owned).into_iter().collect();
    let mut params = Vec::new();
    if let Some(a) = &range.after {
        params.push(SqlValue::Text(a.as_str().to_owned()));
        conds.push(format!("{col} > ?{}", params.len()));
    }
    if let Some(u) = &range.upto {
        params.push(SqlValue::Text(u.as_str().to_owned()));
        conds.push(format!("{col} <= ?{}", params.len()));
    }
    if conds.is_empty() {
        (String::new(), params)
    } else {
        (format!(" WHERE {}", conds.join(" AND ")), params)
    }
}

impl Snapshot for SqliteSnapshot<'_> {
    fn page(&mut self, kind: Kind, after: Option<&Cursor>, limit: usize) -> Result<Page<Row>> {
        let (cols, table, keys) = layout(kind);
        let mut params: Vec<SqlValue> = Vec::new();
        let mut clause = String::new();
        if let Some(c) = after {
            let parts = cursor_parts(c, cursor_arity(kind))?;
            if kind == Kind::History {
                let rowid: i64 = parts[0].parse().map_err(|_| {
                    Error::invalid(format!("cursor {:?} is not a history cursor", c.token()))
                })?;
                params.push(SqlValue::Integer(rowid));
            } else {
                params.extend(parts.into_iter().map(SqlValue::Text));
            }
            let marks: Vec<String> = (1..=keys.len()).map(|i| format!("?{i}")).collect();
            clause = format!(" WHERE ({}) > ({})", keys.join(", "), marks.join(", "));
        }
        params.push(SqlValue::Integer(taskstate_core::engine::fetch_limit(
            limit,
        )));
        let sql = format!(
            "SELECT {cols} FROM {table}{clause} ORDER BY {} LIMIT ?{}",
            keys.join(", "),
            params.len()
        );
        let ctx = self.backend.ctx.clone();
        let fetched = self.rows(&sql, &params, |r| {
            Ok((raw_cursor(kind, r), decode_kind(&ctx, kind, r)))
        })?;
        salvage_page(kind, fetched, limit, self.salvage, &mut self.skipped)
    }

    fn keyed(&mut self, kind: Kind, range: &KeyRange) -> Result<Vec<Row>> {
        let (sql, params) = match kind {
            Kind::History => {
                let (w, p) = range_clause("invocation_id", range, None);
                (
                    format!(
                        "SELECT rowid, invocation_id, history_timestamp, history_json \
                         FROM {T_HIST}{w} ORDER BY invocation_id, history_timestamp, rowid"
                    ),
                    p,
                )
            }
            Kind::Result | Kind::Exception => {
                let (cols, table, _) = layout(kind);
                let (w, p) = range_clause("invocation_id", range, None);
                (
                    format!("SELECT {cols} FROM {table}{w} ORDER BY invocation_id"),
                    p,
                )
            }
            other => return Err(not_keyed(other)),
        };
        let ctx = self.backend.ctx.clone();
        let rows = self.rows(&sql, &params, |r| Ok(decode_kind(&ctx, kind, r)))?;
        salvage_rows(kind, rows, self.salvage, &mut self.skipped)
    }

    fn children(&mut self, range: &KeyRange) -> Result<Vec<(InvocationId, InvocationId)>> {
        let (w, p) = range_clause(
            "parent_invocation_id",
            range,
            Some("parent_invocation_id IS NOT NULL AND parent_invocation_id <> ''"),
        );
        let sql = format!(
            "SELECT parent_invocation_id, invocation_id FROM {T_INV}{w} \
             ORDER BY parent_invocation_id, invocation_id"
        );
        let ctx = self.backend.ctx.clone();
        let rows = self.rows(&sql, &p, |r| {
            Ok(text_at(r, 1, &ctx, T_INV, "?").and_then(|child| {
                let parent = text_at(r, 0, &ctx, T_INV, &child)?;
                Ok((InvocationId::new(parent), InvocationId::new(child)))
            }))
        })?;
        salvage_rows(Kind::Invocation, rows, self.salvage, &mut self.skipped)
    }

    fn set_salvage(&mut self, on: bool) {
        self.salvage = on;
    }

    fn take_skipped(&mut self) -> Vec<(Kind, Error)> {
        std::mem::take(&mut self.skipped)
    }

    fn count(&mut self, kind: Kind) -> Result<u64> {
        let (_, table, _) = layout(kind);
        let ctx = self.backend.ctx.clone();
        let n = self.rows(&format!("SELECT count(*) FROM {table}"), &[], |r| {
            int_at(r, 0, &ctx, table, "count")
        })?;
        Ok(n.first().copied().unwrap_or(0).max(0) as u64)
    }
}

/// Encodes `rows` (checked by the caller) as one write operation.
pub(crate) fn encode(rows: &[Row]) -> Result<WriteOp> {
    let mut ops = Vec::new();
    for r in rows {
        let op = match r {
            Row::Invocation(p) => WriteOp::Invocations(vec![invocation_row(&p.0, &p.1)]),
            Row::History(key, h) => WriteOp::Histories(vec![HistoryRow {
                id: key.as_str().to_owned(),
                ts: h.time_key.seconds(),
                status: h.record.status_record.status.as_str(),
                json: h.record.to_json().into(),
            }]),
            Row::Result(id, v) => WriteOp::Result {
                id: id.as_str().to_owned(),
                value: v.clone(),
            },
            Row::Exception(id, v) => WriteOp::Exception {
                id: id.as_str().to_owned(),
                value: v.clone(),
            },
            Row::WorkflowRun(w) => workflow_run_op(w),
            Row::SubInvocation(w, s) => WriteOp::SubInvocation {
                workflow: w.as_str().to_owned(),
                sub: s.as_str().to_owned(),
            },
            Row::WorkflowData(w, k, v) => WriteOp::WorkflowData {
                workflow: w.as_str().to_owned(),
                key: k.clone(),
                value: v.clone(),
            },
            Row::AppInfo(a) => WriteOp::AppInfo {
                id: a.app_id.as_str().to_owned(),
                json: a.to_json(),
            },
            Row::RunnerContext(c, parent) => WriteOp::Runners(vec![runner_row(c, parent.as_ref())]),
        };
        // Runs of one kind share one operation (one prepared statement).
        match (ops.last_mut(), op) {
            (Some(WriteOp::Invocations(v)), WriteOp::Invocations(mut n)) => v.append(&mut n),
            (Some(WriteOp::Histories(v)), WriteOp::Histories(mut n)) => v.append(&mut n),
            (Some(WriteOp::Runners(v)), WriteOp::Runners(mut n)) => v.append(&mut n),
            (_, op) => ops.push(op),
        }
    }
    Ok(WriteOp::Batch(ops))
}
