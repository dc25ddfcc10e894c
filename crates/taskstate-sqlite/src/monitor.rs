//! Latest status per history key (see `taskstate_core::monitor`): listings and counts from
//! `taskstate_latest`, which triggers keep current (see
//! [`crate::schema::V3_LATEST`]).
//!
//! A file that lacks the table — written by pynenc alone and opened
//! read-only, so it was never upgraded — is still answered, from a
//! common table expression of the same name and columns that finds each
//! key's newest row through the history's primary key. That reads the whole
//! store for every page; `taskstate upgrade` (any writable open) builds the
//! table once.

use rusqlite::{Connection, ToSql};
use taskstate_core::monitor::{
    InvocationSummary, LatestColumns, ListQuery, SqlParam, StatusCounts,
};
use taskstate_core::{InvocationId, InvocationStatus, Result, TimeKey};

use crate::decode::{T_INV, real_at, str_at};
use crate::errors::{Ctx, corrupt, sql_err};
use crate::schema::{LATEST_TABLE, newest_rows};

/// The latest rows computed from the history, for a file without the table.
const LATEST_CTE: &str = concat!(
    "WITH taskstate_latest \
     (invocation_id, history_timestamp, history_rowid, history_status, task_id_key) AS (",
    newest_rows!(),
    ") "
);

/// Whether the file has the maintained table.
pub(crate) fn has_latest_table(c: &Connection, ctx: &Ctx) -> Result<bool> {
    c.prepare_cached("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1")
        .and_then(|mut st| st.exists([LATEST_TABLE]))
        .map_err(|e| sql_err(ctx, "read the schema", e))
}

/// The listing's columns, as [`LATEST_CTE`] and the table name them.
const COLUMNS: LatestColumns = LatestColumns {
    id: "l.invocation_id",
    time: "l.history_timestamp",
    status: "l.history_status",
    task: "l.task_id_key",
    workflow: "i.workflow_id",
};

/// The listing driven by latest rows: their status and task indexes, or
/// the invocations' workflow index, serve the filters.
const FROM_LATEST: &str = "FROM taskstate_latest l \
     JOIN state_backend_invocations i ON i.invocation_id = l.invocation_id";

/// The unfiltered (or only time-bounded) listing, newest first along the
/// history's time index, keeping each key's latest row (its rowid is the
/// latest's): a page reads its rows plus the older rows of the same keys
/// met on the way. `INDEXED BY` and `CROSS JOIN` pin that plan: left to
/// itself, SQLite 3.50 (the bundled one) chose, for a page of one, to scan
/// the whole history's primary key and sort it — 3 s at 1M invocations
/// (`bench serve`), where 3.40 walked the index in 0.1 ms. The index exists
/// wherever the table does (schema version 1 made it).
const FROM_HISTORY: &str = "FROM state_backend_history h INDEXED BY taskstate_history_time \
     CROSS JOIN taskstate_latest l ON l.invocation_id = h.invocation_id AND l.history_rowid = h.rowid \
     JOIN state_backend_invocations i ON i.invocation_id = l.invocation_id";

/// [`FROM_HISTORY`]'s order: the history row's time and key (equal to the
/// latest row's, which it is).
const HISTORY_COLUMNS: LatestColumns = LatestColumns {
    id: "h.invocation_id",
    time: "h.history_timestamp",
    ..COLUMNS
};

fn to_sql(p: &SqlParam) -> &dyn ToSql {
    match p {
        SqlParam::Text(s) => s,
        SqlParam::Real(f) => f,
        SqlParam::Int(n) => n,
    }
}

/// A listing's SQL and parameters; `cte`: the file has no latest table.
fn listing_sql(q: &ListQuery, cte: bool) -> (String, Vec<SqlParam>) {
    let (from, columns) = if cte || q.filters_attributes() {
        (FROM_LATEST, &COLUMNS)
    } else {
        (FROM_HISTORY, &HISTORY_COLUMNS)
    };
    let (tail, params) = q.sql_tail(columns, |n| format!("?{n}"));
    let sql = format!(
        "{}SELECT l.invocation_id, i.task_id_key, i.workflow_id, l.history_status, l.history_timestamp \
         {from} WHERE 1{tail}",
        if cte { LATEST_CTE } else { "" }
    );
    (sql, params)
}

/// See [`taskstate_core::engine::Engine::list_invocations`].
pub(crate) fn list_invocations(
    c: &Connection,
    ctx: &Ctx,
    q: &ListQuery,
) -> Result<Vec<InvocationSummary>> {
    let cte = !has_latest_table(c, ctx)?;
    let (sql, params) = listing_sql(q, cte);
    let mut st = c
        .prepare_cached(&sql)
        .map_err(|e| sql_err(ctx, "prepare", e))?;
    let params: Vec<&dyn ToSql> = params.iter().map(to_sql).collect();
    let mut rows = st
        .query(params.as_slice())
        .map_err(|e| sql_err(ctx, "query", e))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| sql_err(ctx, "read row", e))? {
        let id = InvocationId::new(str_at(row, 0, ctx, T_INV, "?")?);
        let k = id.as_str();
        let task_id = str_at(row, 1, ctx, T_INV, k)?
            .parse()
            .map_err(|e| corrupt(ctx, T_INV, k, e))?;
        let workflow_id = InvocationId::new(str_at(row, 2, ctx, T_INV, k)?);
        let status = str_at(row, 3, ctx, T_INV, k)?
            .parse::<InvocationStatus>()
            .ok();
        let time_key = TimeKey::from_seconds(real_at(row, 4, ctx, T_INV, k)?);
        out.push(InvocationSummary {
            invocation_id: id,
            task_id,
            workflow_id,
            status,
            time_key,
        });
    }
    Ok(out)
}

/// See [`taskstate_core::engine::Engine::latest_status_counts`].
pub(crate) fn latest_status_counts(c: &Connection, ctx: &Ctx) -> Result<StatusCounts> {
    let cte = !has_latest_table(c, ctx)?;
    let sql = format!(
        "{}SELECT history_status, count(*) FROM taskstate_latest GROUP BY history_status",
        if cte { LATEST_CTE } else { "" }
    );
    let mut st = c
        .prepare_cached(&sql)
        .map_err(|e| sql_err(ctx, "prepare", e))?;
    let pairs = st
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(|e| sql_err(ctx, "count latest statuses", e))?;
    Ok(StatusCounts::from_pairs(
        pairs
            .into_iter()
            .map(|(s, n)| (s, u64::try_from(n).unwrap_or(0))),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::schema::{REFERENCE_DDL, V1_INDEXES, V2_INDEXES, V3_LATEST};

    /// The plan of every listing shape, with a page of one and of fifty:
    /// each must be an index walk, never a scan of a whole table and a sort
    /// (which the planner chose once, at 1M invocations: 3 s a page).
    #[test]
    fn every_listing_walks_an_index() {
        let c = Connection::open_in_memory().unwrap();
        for ddl in [REFERENCE_DDL, V1_INDEXES, V2_INDEXES, V3_LATEST] {
            c.execute_batch(ddl).unwrap();
        }
        let base = ListQuery {
            status: None,
            task: None,
            workflow: None,
            lo: None,
            hi: None,
            after: None,
            fetch: 2,
        };
        let after = Some((TimeKey::from_seconds(5.0), InvocationId::new("x")));
        let shapes = [
            ("unfiltered", base.clone(), "taskstate_history_time"),
            (
                "page 2",
                ListQuery {
                    after: after.clone(),
                    ..base.clone()
                },
                "taskstate_history_time",
            ),
            (
                "range",
                ListQuery {
                    lo: Some(TimeKey::from_seconds(1.0)),
                    ..base.clone()
                },
                "taskstate_history_time",
            ),
            (
                "status",
                ListQuery {
                    status: Some(InvocationStatus::Running),
                    after,
                    ..base.clone()
                },
                "taskstate_latest_status",
            ),
            (
                "task",
                ListQuery {
                    task: Some("m.t".parse().unwrap()),
                    ..base.clone()
                },
                "taskstate_latest_task",
            ),
            (
                "workflow",
                ListQuery {
                    workflow: Some(InvocationId::new("w")),
                    ..base.clone()
                },
                "taskstate_invocations_workflow",
            ),
        ];
        for (name, q, index) in shapes {
            for fetch in [2, 51] {
                let q = ListQuery { fetch, ..q.clone() };
                let (sql, params) = listing_sql(&q, false);
                let params: Vec<&dyn ToSql> = params.iter().map(to_sql).collect();
                let plan: Vec<String> = c
                    .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                    .unwrap()
                    .query_map(params.as_slice(), |r| r.get::<_, String>(3))
                    .unwrap()
                    .collect::<rusqlite::Result<_>>()
                    .unwrap();
                assert!(
                    plan.iter().any(|p| p.contains(index)),
                    "{name}, fetch {fetch}: {plan:?}"
                );
                assert!(
                    !plan
                        .iter()
                        .any(|p| p.starts_with("SCAN") && !p.contains("INDEX")),
                    "{name}, fetch {fetch}: a table scan: {plan:?}"
                );
            }
        }
    }
}
