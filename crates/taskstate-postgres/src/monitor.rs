//! Latest status per history key (see `taskstate_core::monitor`): listings and counts from the
//! `latest` table, which triggers keep current (see `sql::DDL_V4`).

use postgres::types::ToSql;
use taskstate_core::monitor::{InvocationSummary, ListQuery, StatusCounts};
use taskstate_core::{InvocationId, InvocationStatus, Result, TimeKey};

use crate::PostgresBackend;

/// A listing's parameters, owned so the SQL can borrow them.
enum Param {
    Text(String),
    Real(f64),
    Int(i64),
}

impl Param {
    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Param::Text(s) => s,
            Param::Real(f) => f,
            Param::Int(n) => n,
        }
    }
}

impl PostgresBackend {
    /// The SQL of a listing with these filters present, and its parameters
    /// (one statement per combination, each prepared once per connection).
    fn listing_sql(&self, q: &ListQuery) -> (String, Vec<Param>) {
        let (latest, inv) = (&self.sql.tables.latest, &self.sql.tables.inv);
        let mut sql = format!(
            "SELECT l.invocation_id, i.task_id_key, i.workflow_id, l.status, l.ts_key \
             FROM {latest} l JOIN {inv} i ON i.invocation_id = l.invocation_id WHERE true"
        );
        let mut params = Vec::new();
        let mut cond = |sql: &mut String, text: &str, p: Param| {
            params.push(p);
            sql.push_str(&text.replace('?', &format!("${}", params.len())));
        };
        if let Some(s) = q.status {
            cond(
                &mut sql,
                " AND l.status = ?",
                Param::Text(s.as_str().into()),
            );
        }
        if let Some(t) = &q.task {
            cond(
                &mut sql,
                " AND l.task_id_key = ?",
                Param::Text(t.key().into()),
            );
        }
        if let Some(w) = &q.workflow {
            cond(
                &mut sql,
                " AND i.workflow_id = ?",
                Param::Text(w.as_str().into()),
            );
        }
        if let Some(lo) = q.lo {
            cond(&mut sql, " AND l.ts_key >= ?", Param::Real(lo.seconds()));
        }
        if let Some(hi) = q.hi {
            cond(&mut sql, " AND l.ts_key <= ?", Param::Real(hi.seconds()));
        }
        if let Some((key, id)) = &q.after {
            params.push(Param::Real(key.seconds()));
            params.push(Param::Text(id.as_str().into()));
            let n = params.len();
            sql.push_str(&format!(
                " AND (l.ts_key, l.invocation_id) < (${}, ${n})",
                n - 1
            ));
        }
        params.push(Param::Int(q.fetch_i64()));
        sql.push_str(&format!(
            " ORDER BY l.ts_key DESC, l.invocation_id DESC LIMIT ${}",
            params.len()
        ));
        (sql, params)
    }

    pub(crate) fn list_latest(&self, q: &ListQuery) -> Result<Vec<InvocationSummary>> {
        let (sql, params) = self.listing_sql(q);
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(Param::as_sql).collect();
        self.read("list invocations", false, |db| {
            let rows = self.q(db, &sql, &params)?;
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
        let sql = format!(
            "SELECT status, count(*) FROM {} GROUP BY status",
            self.sql.tables.latest
        );
        self.read("count latest statuses", false, |db| {
            let rows = self.q(db, &sql, &[])?;
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
