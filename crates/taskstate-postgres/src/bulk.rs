//! The bulk path of the PostgreSQL engine.
//!
//! A snapshot is one `REPEATABLE READ READ ONLY` transaction on a pooled
//! connection, held until the snapshot is dropped. Pages are keyset queries
//! on each table's key (history by `seq`, its insertion order, through the
//! `history_by_seq` index of schema version 2). A bulk write is one
//! transaction with one `INSERT … SELECT FROM UNNEST(…)` statement per kind
//! present: a page of thousands of rows costs a handful of round trips.

use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{Row as PgRow, Statement};
use taskstate_core::bulk::{
    cursor_after, cursor_arity, cursor_parts, not_keyed, salvage_page, salvage_rows,
};
use taskstate_core::{
    AppInfo, Cursor, Error, InvocationId, KeyRange, Kind, Page, RecentIds, Result, Row,
    RunnerContext, RunnerId, Snapshot,
};

use crate::PostgresBackend;
use crate::conn::Conn;

/// The bulk path's SQL for one schema.
pub struct BulkSql {
    pub(crate) first: HashMap<Kind, String>,
    pub(crate) after: HashMap<Kind, String>,
    pub(crate) count: HashMap<Kind, String>,
    pub(crate) keyed: HashMap<(Kind, bool, bool), String>,
    pub(crate) children: HashMap<(bool, bool), String>,
    pub(crate) results: String,
    pub(crate) exceptions: String,
    pub(crate) workflows: String,
    pub(crate) subs: String,
    pub(crate) data: String,
    pub(crate) apps: String,
    pub(crate) runners: String,
}

/// (columns, table, key columns) of each kind's pages.
fn layout(kind: Kind) -> (&'static str, &'static str, &'static [&'static str]) {
    match kind {
        Kind::Invocation => (
            "invocation_id, call_id_key, serialized_arguments, parent_invocation_id, \
             workflow_id, workflow_type_key, parent_workflow_id",
            "invocations",
            &["invocation_id"],
        ),
        Kind::History => (
            "seq, invocation_id, ts_key, history_json",
            "history",
            &["seq"],
        ),
        Kind::Result => ("invocation_id, result_data", "results", &["invocation_id"]),
        Kind::Exception => (
            "invocation_id, exception_data",
            "exceptions",
            &["invocation_id"],
        ),
        Kind::WorkflowRun => (
            "workflow_id, workflow_type_key, parent_workflow_id",
            "workflows",
            &["workflow_id"],
        ),
        Kind::SubInvocation => (
            "parent_workflow_id, sub_invocation_id",
            "workflow_sub_invocations",
            &["parent_workflow_id", "sub_invocation_id"],
        ),
        Kind::WorkflowData => (
            "workflow_id, data_key, data_value",
            "workflow_data",
            &["workflow_id", "data_key"],
        ),
        Kind::AppInfo => ("app_info_json, app_id", "app_info", &["app_id"]),
        Kind::RunnerContext => (
            "runner_id, runner_cls, parent_ctx_id, pid, hostname, thread_id",
            "runner_contexts",
            &["runner_id"],
        ),
    }
}

/// ` WHERE …` bounding `col` by `$1` (after, exclusive) and/or the next
/// parameter (upto, inclusive), plus `extra`.
fn range_where(col: &str, after: bool, upto: bool, extra: Option<&str>) -> String {
    let mut conds: Vec<String> = extra.map(str::to_owned).into_iter().collect();
    let mut n = 0;
    if after {
        n += 1;
        conds.push(format!("{col} > ${n}"));
    }
    if upto {
        n += 1;
        conds.push(format!("{col} <= ${n}"));
    }
    if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    }
}

impl BulkSql {
    /// The statements for tables in schema `s`.
    pub fn new(s: &str) -> Self {
        let q = |t: &str| crate::sql::qualified(s, t);
        let mut first = HashMap::new();
        let mut after = HashMap::new();
        let mut count = HashMap::new();
        for kind in Kind::ALL {
            let (cols, table, keys) = layout(kind);
            let table = q(table);
            let order = keys.join(", ");
            let n = keys.len();
            let marks: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
            first.insert(
                kind,
                format!("SELECT {cols} FROM {table} ORDER BY {order} LIMIT $1"),
            );
            after.insert(
                kind,
                format!(
                    "SELECT {cols} FROM {table} WHERE ({order}) > ({}) ORDER BY {order} LIMIT ${}",
                    marks.join(", "),
                    n + 1
                ),
            );
            count.insert(kind, format!("SELECT count(*) FROM {table}"));
        }
        let mut keyed = HashMap::new();
        let mut children = HashMap::new();
        for a in [false, true] {
            for u in [false, true] {
                let w = range_where("invocation_id", a, u, None);
                keyed.insert(
                    (Kind::History, a, u),
                    format!(
                        "SELECT seq, invocation_id, ts_key, history_json FROM {}{w} \
                         ORDER BY invocation_id, ts_key, seq",
                        q("history")
                    ),
                );
                for kind in [Kind::Result, Kind::Exception] {
                    let (cols, table, _) = layout(kind);
                    keyed.insert(
                        (kind, a, u),
                        format!("SELECT {cols} FROM {}{w} ORDER BY invocation_id", q(table)),
                    );
                }
                let w = range_where(
                    "parent_invocation_id",
                    a,
                    u,
                    Some("parent_invocation_id IS NOT NULL AND parent_invocation_id <> ''"),
                );
                children.insert(
                    (a, u),
                    format!(
                        "SELECT parent_invocation_id, invocation_id FROM {}{w} \
                         ORDER BY parent_invocation_id, invocation_id",
                        q("invocations")
                    ),
                );
            }
        }
        Self {
            first,
            after,
            count,
            keyed,
            children,
            results: format!(
                "INSERT INTO {} (invocation_id, result_data) SELECT * FROM UNNEST($1::text[], $2::text[]) \
                 ON CONFLICT (invocation_id) DO UPDATE SET result_data = EXCLUDED.result_data",
                q("results")
            ),
            exceptions: format!(
                "INSERT INTO {} (invocation_id, exception_data) SELECT * FROM UNNEST($1::text[], $2::text[]) \
                 ON CONFLICT (invocation_id) DO UPDATE SET exception_data = EXCLUDED.exception_data",
                q("exceptions")
            ),
            workflows: format!(
                "INSERT INTO {} (workflow_id, workflow_type_key, parent_workflow_id) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]) \
                 ON CONFLICT (workflow_id) DO UPDATE SET workflow_type_key = EXCLUDED.workflow_type_key, \
                 parent_workflow_id = EXCLUDED.parent_workflow_id",
                q("workflows")
            ),
            subs: format!(
                "INSERT INTO {} (parent_workflow_id, sub_invocation_id) \
                 SELECT * FROM UNNEST($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
                q("workflow_sub_invocations")
            ),
            data: format!(
                "INSERT INTO {} (workflow_id, data_key, data_value) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]) \
                 ON CONFLICT (workflow_id, data_key) DO UPDATE SET data_value = EXCLUDED.data_value",
                q("workflow_data")
            ),
            apps: format!(
                "INSERT INTO {} (app_id, app_info_json) SELECT * FROM UNNEST($1::text[], $2::text[]) \
                 ON CONFLICT (app_id) DO UPDATE SET app_info_json = EXCLUDED.app_info_json",
                q("app_info")
            ),
            runners: format!(
                "INSERT INTO {} (runner_id, runner_cls, parent_ctx_id, pid, hostname, thread_id) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::int8[]) \
                 ON CONFLICT (runner_id) DO UPDATE SET runner_cls = EXCLUDED.runner_cls, \
                 parent_ctx_id = EXCLUDED.parent_ctx_id, pid = EXCLUDED.pid, \
                 hostname = EXCLUDED.hostname, thread_id = EXCLUDED.thread_id",
                q("runner_contexts")
            ),
        }
    }
}

pub(crate) struct PgSnapshot<'a> {
    backend: &'a PostgresBackend,
    conn: Conn,
    salvage: bool,
    skipped: Vec<(Kind, Error)>,
}

/// The cursor of a fetched row from its key columns (as [`layout`] selects
/// them), decoded or not.
fn raw_cursor(kind: Kind, r: &PgRow) -> Option<Cursor> {
    if kind == Kind::History {
        return r
            .try_get::<_, i64>(0)
            .ok()
            .map(|seq| cursor_after(&[&seq.to_string()]));
    }
    let cols: &[usize] = match kind {
        Kind::SubInvocation | Kind::WorkflowData => &[0, 1],
        Kind::AppInfo => &[1],
        _ => &[0],
    };
    let parts: Vec<String> = cols
        .iter()
        .map(|&i| r.try_get::<_, String>(i).ok())
        .collect::<Option<_>>()?;
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    Some(cursor_after(&refs))
}

impl<'a> PgSnapshot<'a> {
    pub(crate) fn new(backend: &'a PostgresBackend) -> Result<Self> {
        let mut conn = backend.live_conn()?;
        conn.client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .map_err(|e| backend.pg_err("begin snapshot", e))?;
        let mut snap = Self {
            backend,
            conn,
            salvage: false,
            skipped: Vec::new(),
        };
        // The snapshot is taken at the first statement: take it now.
        snap.query("SELECT 1", &[])?;
        Ok(snap)
    }

    fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(st) = self.conn.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = self
            .conn
            .client
            .prepare(sql)
            .map_err(|e| self.backend.pg_err("prepare", e))?;
        self.conn.statements.insert(sql.to_owned(), st.clone());
        Ok(st)
    }

    fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<PgRow>> {
        let st = self.statement(sql)?;
        self.conn.client.query(&st, params).map_err(|e| {
            // A snapshot cannot be resumed on another connection: the
            // caller sees the loss (and the pool drops this one).
            if crate::errors::retriable(&e) {
                self.conn.broken = true;
            }
            self.backend.pg_err("read snapshot", e)
        })
    }

    /// Runs `sql`, whose parameters are the bounds `range` has (after,
    /// then upto; the statement was chosen for which are present).
    fn query_range(&mut self, sql: &str, range: &KeyRange) -> Result<Vec<PgRow>> {
        let bounds: Vec<&str> = [&range.after, &range.upto]
            .into_iter()
            .flatten()
            .map(InvocationId::as_str)
            .collect();
        let params: Vec<&(dyn ToSql + Sync)> =
            bounds.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
        self.query(sql, &params)
    }

    fn decode(&self, kind: Kind, r: &PgRow) -> Result<Row> {
        let b = self.backend;
        let text = |i: usize, table: &str, key: &str| b.col::<String>(r, i, table, key);
        let int = |i: usize, table: &str, key: &str| b.col::<i64>(r, i, table, key);
        Ok(match kind {
            Kind::Invocation => {
                let id = text(0, "invocations", "?")?;
                Row::Invocation(Box::new(b.decode_invocation(
                    r,
                    InvocationId::new(id),
                    1,
                )?))
            }
            Kind::History => {
                let key = text(1, "history", "?")?;
                Row::History(
                    InvocationId::new(key),
                    b.decode_stored_history(r, 3, 1, 2, &mut RecentIds::default())?,
                )
            }
            Kind::Result => {
                let id = text(0, "results", "?")?;
                let v = text(1, "results", &id)?;
                Row::Result(InvocationId::new(id), v)
            }
            Kind::Exception => {
                let id = text(0, "exceptions", "?")?;
                let v = text(1, "exceptions", &id)?;
                Row::Exception(InvocationId::new(id), v)
            }
            Kind::WorkflowRun => Row::WorkflowRun(b.decode_workflow(r)?),
            Kind::SubInvocation => {
                let t = "workflow_sub_invocations";
                let w = text(0, t, "?")?;
                let s = text(1, t, &w)?;
                Row::SubInvocation(InvocationId::new(w), InvocationId::new(s))
            }
            Kind::WorkflowData => {
                let t = "workflow_data";
                let w = text(0, t, "?")?;
                Row::WorkflowData(InvocationId::new(&*w), text(1, t, &w)?, text(2, t, &w)?)
            }
            Kind::AppInfo => {
                let id = text(1, "app_info", "?")?;
                Row::AppInfo(
                    AppInfo::from_json(&text(0, "app_info", &id)?)
                        .map_err(|e| b.corrupt("app_info", &id, e))?,
                )
            }
            Kind::RunnerContext => {
                let t = "runner_contexts";
                let id = text(0, t, "?")?;
                Row::RunnerContext(
                    RunnerContext {
                        runner_cls: text(1, t, &id)?,
                        runner_id: RunnerId::new(&*id),
                        parent: None,
                        pid: int(3, t, &id)?,
                        hostname: text(4, t, &id)?,
                        thread_id: int(5, t, &id)?,
                    },
                    b.opt_id(r, 2, t, &id)?
                        .map(|p| RunnerId::new(p.into_string())),
                )
            }
        })
    }
}

impl Drop for PgSnapshot<'_> {
    fn drop(&mut self) {
        let _ = self.conn.client.batch_execute("ROLLBACK");
    }
}

impl Snapshot for PgSnapshot<'_> {
    fn page(&mut self, kind: Kind, after: Option<&Cursor>, limit: usize) -> Result<Page<Row>> {
        let fetch = taskstate_core::engine::fetch_limit(limit);
        let bulk = &self.backend.sql.bulk;
        let rows = match after {
            None => {
                let sql = bulk.first[&kind].clone();
                self.query(&sql, &[&fetch])?
            }
            Some(c) => {
                let parts = cursor_parts(c, cursor_arity(kind))?;
                let sql = bulk.after[&kind].clone();
                if kind == Kind::History {
                    let seq: i64 = parts[0].parse().map_err(|_| {
                        Error::invalid(format!("cursor {:?} is not a history cursor", c.token()))
                    })?;
                    self.query(&sql, &[&seq, &fetch])?
                } else if let [a, b] = &parts[..] {
                    self.query(&sql, &[a, b, &fetch])?
                } else {
                    self.query(&sql, &[&parts[0], &fetch])?
                }
            }
        };
        let fetched: Vec<_> = rows
            .iter()
            .map(|r| (raw_cursor(kind, r), self.decode(kind, r)))
            .collect();
        salvage_page(kind, fetched, limit, self.salvage, &mut self.skipped)
    }

    fn keyed(&mut self, kind: Kind, range: &KeyRange) -> Result<Vec<Row>> {
        if !kind.keyed_by_invocation() {
            return Err(not_keyed(kind));
        }
        let key = (kind, range.after.is_some(), range.upto.is_some());
        let sql = self.backend.sql.bulk.keyed[&key].clone();
        let rows = self.query_range(&sql, range)?;
        let decoded: Vec<_> = rows.iter().map(|r| self.decode(kind, r)).collect();
        salvage_rows(kind, decoded, self.salvage, &mut self.skipped)
    }

    fn children(&mut self, range: &KeyRange) -> Result<Vec<(InvocationId, InvocationId)>> {
        let key = (range.after.is_some(), range.upto.is_some());
        let sql = self.backend.sql.bulk.children[&key].clone();
        let rows = self.query_range(&sql, range)?;
        let links: Vec<_> = rows
            .iter()
            .map(|r| {
                let p: String = r
                    .try_get(0)
                    .map_err(|e| self.backend.corrupt("invocations", "?", e))?;
                let c: String = r
                    .try_get(1)
                    .map_err(|e| self.backend.corrupt("invocations", &p, e))?;
                Ok((InvocationId::new(p), InvocationId::new(c)))
            })
            .collect();
        salvage_rows(Kind::Invocation, links, self.salvage, &mut self.skipped)
    }

    fn set_salvage(&mut self, on: bool) {
        self.salvage = on;
    }

    fn take_skipped(&mut self) -> Vec<(Kind, Error)> {
        std::mem::take(&mut self.skipped)
    }

    fn count(&mut self, kind: Kind) -> Result<u64> {
        let sql = self.backend.sql.bulk.count[&kind].clone();
        let rows = self.query(&sql, &[])?;
        let n: i64 = rows.first().and_then(|r| r.try_get(0).ok()).unwrap_or(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
