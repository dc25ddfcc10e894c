//! Latest status per history key (see `taskstate_core::monitor`): listings
//! and counts from the `latest` table, which triggers keep current (see
//! `sql::DDL_V4`). A schema older than version 4, opened read-only and so
//! never migrated, has no such table: its reads are answered from the
//! history itself (each key's newest row by `DISTINCT ON`), correctly and
//! with a scan.

use postgres::types::ToSql;
use taskstate_core::monitor::{
    InvocationSummary, LatestColumns, ListQuery, SqlParam, StatusCounts,
};
use taskstate_core::{InvocationId, InvocationStatus, Result, TimeKey};

use crate::PostgresBackend;
use crate::conn::Db;
use crate::sql::newest_rows;

/// The listing's columns, as its FROM clause aliases them.
const COLUMNS: LatestColumns = LatestColumns {
    id: "l.invocation_id",
    time: "l.ts_key",
    status: "l.status",
    task: "l.task_id_key",
    workflow: "i.workflow_id",
};

/// The unfiltered listing's order: the history row's (see
/// `list_latest`).
const HISTORY_COLUMNS: LatestColumns = LatestColumns {
    id: "h.invocation_id",
    time: "h.ts_key",
    ..COLUMNS
};

fn to_sql(p: &SqlParam) -> &(dyn ToSql + Sync) {
    match p {
        SqlParam::Text(s) => s,
        SqlParam::Real(f) => f,
        SqlParam::Int(n) => n,
    }
}

impl PostgresBackend {
    /// Runs the query `make(latest)` builds, where `latest` names the
    /// table — or, where the schema predates it, the same rows computed
    /// from the history.
    fn query_latest(
        &self,
        db: &mut Db<'_>,
        make: impl Fn(&str) -> String,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>> {
        match db.query(&make(&self.sql.tables.latest), params) {
            Err(e) if e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) => {
                let computed = format!(
                    "({})",
                    newest_rows!().replace("{s}", &format!("\"{}\"", self.schema))
                );
                self.q(db, &make(&computed), params)
            }
            other => other.map_err(|e| self.pg_err("query", e)),
        }
    }

    pub(crate) fn list_latest(&self, q: &ListQuery) -> Result<Vec<InvocationSummary>> {
        let (inv, his) = (&self.sql.tables.inv, &self.sql.tables.his);
        // Filtered: from the latest rows' status and task indexes (or the
        // invocations' workflow index). Otherwise newest first along the
        // history's time index, keeping each key's latest row (same seq).
        let by_history = !q.filters_attributes();
        let columns = if by_history {
            &HISTORY_COLUMNS
        } else {
            &COLUMNS
        };
        let (tail, params) = q.sql_tail(columns, |n| format!("${n}"));
        let make = |latest: &str| {
            let from = if by_history {
                format!(
                    "FROM {his} h JOIN {latest} l ON l.invocation_id = h.invocation_id AND l.seq = h.seq \
                     JOIN {inv} i ON i.invocation_id = l.invocation_id"
                )
            } else {
                format!("FROM {latest} l JOIN {inv} i ON i.invocation_id = l.invocation_id")
            };
            format!(
                "SELECT l.invocation_id, i.task_id_key, i.workflow_id, l.status, l.ts_key \
                 {from} WHERE true{tail}"
            )
        };
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(to_sql).collect();
        self.read("list invocations", false, |db| {
            let rows = self.query_latest(db, make, &params)?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let id: String = self.col(r, 0, "latest", "?")?;
                let task: String = self.col(r, 1, "invocations", &id)?;
                let task_id = task
                    .parse()
                    .map_err(|e| self.corrupt("invocations", &id, e))?;
                let workflow_id =
                    InvocationId::new(self.col::<String>(r, 2, "invocations", &id)?);
                let status = self
                    .col::<String>(r, 3, "latest", &id)?
                    .parse::<InvocationStatus>()
                    .ok();
                let time_key = TimeKey::from_seconds(self.col::<f64>(r, 4, "latest", &id)?);
                out.push(InvocationSummary {
                    invocation_id: InvocationId::new(id),
                    task_id,
                    workflow_id,
                    status,
                    time_key,
                });
            }
            Ok(out)
        })
    }

    pub(crate) fn count_latest(&self) -> Result<StatusCounts> {
        let make =
            |latest: &str| format!("SELECT l.status, count(*) FROM {latest} l GROUP BY l.status");
        self.read("count latest statuses", false, |db| {
            let rows = self.query_latest(db, make, &[])?;
            let mut pairs = Vec::with_capacity(rows.len());
            for r in &rows {
                let status: String = self.col(r, 0, "latest", "?")?;
                let n: i64 = self.col(r, 1, "latest", &status)?;
                pairs.push((status, u64::try_from(n).unwrap_or(0)));
            }
            Ok(StatusCounts::from_pairs(pairs))
        })
    }
}
