//! Row decoding: every column is read with `try_get` through
//! [`PostgresBackend::col`], so a NULL or a value of another type (a column
//! altered behind the engine's back) is `Corrupt` naming table and key —
//! never a panic.

use postgres::Row;
use postgres::types::ToSql;
use taskstate_core::engine::{absent_if_empty, resolve_runner_chain};
use taskstate_core::{
    CallDTO, CallId, Entity, Error, InvocationDTO, InvocationHistory, InvocationId, RecentIds,
    Result, RunnerContext, RunnerId, SerializedArguments, StoredHistory, TimeKey, WorkflowIdentity,
};

use crate::PostgresBackend;
use crate::conn::Db;

impl PostgresBackend {
    /// Column `i` of a stored row as `T`; a NULL or a value of another type
    /// (a column altered behind the engine's back) is corrupt data naming
    /// table and key — never a panic.
    pub(crate) fn col<T: for<'r> postgres::types::FromSql<'r>>(
        &self,
        r: &Row,
        i: usize,
        table: &str,
        key: &str,
    ) -> Result<T> {
        r.try_get(i)
            .map_err(|e| self.corrupt(table, key, format!("column {i}: {e}")))
    }

    /// An optional id column: NULL and `''` both read as absent.
    pub(crate) fn opt_id(
        &self,
        r: &Row,
        i: usize,
        table: &str,
        key: &str,
    ) -> Result<Option<InvocationId>> {
        Ok(absent_if_empty(
            self.col::<Option<String>>(r, i, table, key)?,
        ))
    }

    /// A column parsed with `FromStr` (task and call keys); a bad key is
    /// corrupt data.
    pub(crate) fn parsed<T: std::str::FromStr>(
        &self,
        r: &Row,
        i: usize,
        table: &str,
        key: &str,
    ) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        self.col::<String>(r, i, table, key)?
            .parse()
            .map_err(|e| self.corrupt(table, key, e))
    }

    /// An invocation and its call from the columns `call_id_key,
    /// serialized_arguments, parent_invocation_id, workflow_id,
    /// workflow_type_key, parent_workflow_id` starting at column `at`.
    pub(crate) fn decode_invocation(
        &self,
        r: &Row,
        id: InvocationId,
        at: usize,
    ) -> Result<(InvocationDTO, CallDTO)> {
        let (t, k) = ("invocations", id.as_str());
        let call_id: CallId = self.parsed(r, at, t, k)?;
        let args = SerializedArguments::from_json(&self.col::<String>(r, at + 1, t, k)?)
            .map_err(|e| self.corrupt(t, k, e))?;
        let inv = InvocationDTO {
            call_id: call_id.clone(),
            workflow: WorkflowIdentity {
                workflow_id: InvocationId::new(self.col::<String>(r, at + 3, t, k)?),
                workflow_type: self.parsed(r, at + 4, t, k)?,
                parent_workflow_id: self.opt_id(r, at + 5, t, k)?,
            },
            parent_invocation_id: self.opt_id(r, at + 2, t, k)?,
            invocation_id: id,
        };
        Ok((
            inv,
            CallDTO {
                call_id,
                serialized_arguments: args,
            },
        ))
    }

    /// A workflow run from `workflow_id, workflow_type_key,
    /// parent_workflow_id`.
    pub(crate) fn decode_workflow(&self, r: &Row) -> Result<WorkflowIdentity> {
        let t = "workflows";
        let id: String = self.col(r, 0, t, "?")?;
        Ok(WorkflowIdentity {
            workflow_type: self.parsed(r, 1, t, &id)?,
            parent_workflow_id: self.opt_id(r, 2, t, &id)?,
            workflow_id: InvocationId::new(id),
        })
    }

    /// A stored history row from `json_col` (the record), `id_col` (its
    /// key, naming a bad row) and `ts_col` (its time key).
    pub(crate) fn decode_stored_history(
        &self,
        r: &Row,
        json_col: usize,
        id_col: usize,
        ts_col: usize,
        recent: &mut RecentIds,
    ) -> Result<StoredHistory> {
        let record = self.decode_history(r, json_col, id_col, recent)?;
        let time_key = r
            .try_get::<_, f64>(ts_col)
            .ok()
            .filter(|k| k.is_finite())
            .ok_or_else(|| {
                let key: String = r.try_get(id_col).unwrap_or_default();
                self.corrupt("history", &key, "ts_key is not a finite number")
            })?;
        Ok(StoredHistory {
            record,
            time_key: TimeKey::from_seconds(time_key),
        })
    }

    pub(crate) fn corrupt(&self, table: &str, key: &str, reason: impl std::fmt::Display) -> Error {
        Error::corrupt(format!("{} {table}[{key}]", self.location), reason)
    }

    pub(crate) fn ids(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<InvocationId>> {
        self.read("list ids", false, |tx| {
            self.q(tx, sql, params)?
                .iter()
                .map(|r| self.col::<String>(r, 0, "ids", "?").map(InvocationId::new))
                .collect::<Result<_>>()
        })
    }

    /// A history record from its JSON column, read in place; `id_col`
    /// names a bad row.
    pub(crate) fn decode_history(
        &self,
        row: &Row,
        json_col: usize,
        id_col: usize,
        recent: &mut RecentIds,
    ) -> Result<InvocationHistory> {
        let bad = |reason: String| {
            let id: String = row.try_get(id_col).unwrap_or_default();
            self.corrupt("history", &id, reason)
        };
        let json: &str = row
            .try_get(json_col)
            .map_err(|e| bad(format!("column {json_col}: {e}")))?;
        InvocationHistory::from_json_reusing(json, recent).map_err(bad)
    }

    pub(crate) fn load_runner(
        &self,
        tx: &mut Db<'_>,
        id: &RunnerId,
    ) -> Result<Option<(RunnerContext, Option<RunnerId>)>> {
        let rows = self.q(tx, &self.sql.get_runner, &[&id.as_str()])?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let (t, k) = ("runner_contexts", id.as_str());
        Ok(Some((
            RunnerContext {
                runner_cls: self.col(r, 0, t, k)?,
                runner_id: id.clone(),
                parent: None,
                pid: self.col(r, 2, t, k)?,
                hostname: self.col(r, 3, t, k)?,
                thread_id: self.col(r, 4, t, k)?,
            },
            self.opt_id(r, 1, t, k)?
                .map(|p| RunnerId::new(p.into_string())),
        )))
    }

    pub(crate) fn resolve_runner(
        &self,
        tx: &mut Db<'_>,
        row: (RunnerContext, Option<RunnerId>),
    ) -> Result<RunnerContext> {
        resolve_runner_chain(&format!("{} runner_contexts", self.location), row, |id| {
            self.load_runner(tx, id)
        })
    }

    pub(crate) fn get_text(&self, sql: &str, id: &InvocationId, entity: Entity) -> Result<String> {
        self.read("get", false, |tx| {
            let rows = self.q(tx, sql, &[&id.as_str()])?;
            let r = rows
                .first()
                .ok_or_else(|| Error::not_found(entity, id.as_str()))?;
            self.col(r, 0, &entity.to_string(), id.as_str())
        })
    }
}
