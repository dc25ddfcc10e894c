//! The engine's operations: reads on the pooled readers, writes encoded
//! here and run by the writer (group commit). Input arrives checked (see
//! `taskstate_core::engine`).

use std::sync::Arc;

use rusqlite::params;
use taskstate_core::engine::{Engine, HistoryPos, RangeQuery, runner_id_matches};
use taskstate_core::{
    AppId, AppInfo, CallDTO, Entity, Error, InvocationDTO, InvocationHistory, InvocationId,
    InvocationRecord, RecentIds, Result, Row as BulkRow, RunnerContext, RunnerId, SharedText,
    Snapshot, StoredHistory, TaskId, TimeKey, WorkflowIdentity,
};

use crate::decode::{
    T_APP, T_HIST, T_INV, T_RUN, T_WF, decode_app, decode_history, decode_invocation,
    decode_stored_history, decode_workflow, ids, int_at, load_runner, opt_text_at, real_at,
    resolve_runner, str_at, text_at,
};
use crate::encode::{invocation_row, runner_row, workflow_run_op};
use crate::errors::{corrupt, sql_err};
use crate::prune::SqlitePrune;
use crate::writer::{HistoryRow, WriteOp};
use crate::{ENGINE, SqliteBackend, bulk, sql};

impl Engine for SqliteBackend {
    fn engine_name(&self) -> &'static str {
        ENGINE
    }

    fn upsert_invocations(&self, entries: &[(InvocationDTO, CallDTO)]) -> Result<()> {
        let encoding = self.writer.enter();
        if entries.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::with_capacity(entries.len());
        for (inv, call) in entries {
            rows.push(invocation_row(inv, call));
        }
        self.write(encoding, WriteOp::Invocations(rows))
    }

    fn get_invocation(&self, id: &InvocationId) -> Result<InvocationRecord> {
        let ctx = &self.ctx;
        let k = id.as_str();
        self.read(|c| {
            let mut st = c
                .prepare_cached(sql::GET_INVOCATION)
                .map_err(|e| sql_err(ctx, "prepare", e))?;
            let mut rows = st.query([k]).map_err(|e| sql_err(ctx, "query", e))?;
            let Some(row) = rows.next().map_err(|e| sql_err(ctx, "read row", e))? else {
                return Err(Error::not_found(Entity::Invocation, k));
            };
            decode_invocation(ctx, row, id, 0).map(Arc::new)
        })
    }

    fn get_child_invocations(&self, parent: &InvocationId) -> Result<Vec<InvocationId>> {
        self.read(|c| ids(&self.ctx, c, sql::CHILDREN, T_INV, [parent.as_str()]))
    }

    fn get_invocation_ids_by_workflow(
        &self,
        workflow_id: Option<&InvocationId>,
        workflow_type: Option<&TaskId>,
    ) -> Result<Vec<InvocationId>> {
        let ctx = &self.ctx;
        self.read(|c| match (workflow_id, workflow_type) {
            (None, None) => ids(
                ctx,
                c,
                "SELECT invocation_id FROM state_backend_invocations ORDER BY invocation_id",
                T_INV,
                [],
            ),
            (Some(w), None) => ids(
                ctx,
                c,
                "SELECT invocation_id FROM state_backend_invocations WHERE workflow_id = ?1 \
                 ORDER BY invocation_id",
                T_INV,
                [w.as_str()],
            ),
            (None, Some(t)) => ids(
                ctx,
                c,
                "SELECT invocation_id FROM state_backend_invocations WHERE workflow_type_key = ?1 \
                 ORDER BY invocation_id",
                T_INV,
                [t.key()],
            ),
            (Some(w), Some(t)) => ids(
                ctx,
                c,
                "SELECT invocation_id FROM state_backend_invocations WHERE workflow_id = ?1 \
                 AND workflow_type_key = ?2 ORDER BY invocation_id",
                T_INV,
                [w.as_str(), t.key()],
            ),
        })
    }

    fn add_history_rows(&self, rows: &[taskstate_core::HistoryRow<'_>]) -> Result<()> {
        let encoding = self.writer.enter();
        if rows.is_empty() {
            return Ok(());
        }
        let mut encoded = Vec::with_capacity(rows.len());
        // pynenc's `_add_histories(ids, record)` writes one JSON under every
        // key: encode a record once however many keys it is stored under.
        let mut last: Option<(&InvocationHistory, std::sync::Arc<str>)> = None;
        for r in rows {
            let json = match &last {
                Some((rec, json)) if std::ptr::eq(*rec, r.record) => json.clone(),
                _ => {
                    let json: std::sync::Arc<str> = r.record.to_json().into();
                    last = Some((r.record, json.clone()));
                    json
                }
            };
            encoded.push(HistoryRow {
                id: r.key.as_str().to_owned(),
                ts: r.time_key().seconds(),
                status: r.record.status_record.status.as_str(),
                json,
            });
        }
        self.write(encoding, WriteOp::Histories(encoded))
    }

    fn get_history_rows(&self, id: &InvocationId) -> Result<Vec<StoredHistory>> {
        let ctx = &self.ctx;
        self.read(|c| {
            let mut st = c
                .prepare_cached(sql::GET_HISTORY)
                .map_err(|e| sql_err(ctx, "prepare", e))?;
            let mut rows = st
                .query([id.as_str()])
                .map_err(|e| sql_err(ctx, "query", e))?;
            let (mut out, mut recent) = (Vec::new(), RecentIds::default());
            while let Some(row) = rows.next().map_err(|e| sql_err(ctx, "read row", e))? {
                out.push(decode_stored_history(ctx, row, 0, 1, 2, &mut recent)?);
            }
            Ok(out)
        })
    }

    fn invocation_ids_in_timerange(
        &self,
        q: &RangeQuery<InvocationId>,
    ) -> Result<Vec<InvocationId>> {
        let (lo, hi, fetch) = (q.lo.seconds(), q.hi.seconds(), q.fetch_i64());
        let ctx = &self.ctx;
        self.read(|c| match &q.after {
            None => ids(
                ctx,
                c,
                sql::IDS_IN_RANGE_FIRST,
                T_HIST,
                params![lo, hi, fetch],
            ),
            Some(a) => ids(
                ctx,
                c,
                sql::IDS_IN_RANGE_AFTER,
                T_HIST,
                params![lo, hi, fetch, a.as_str()],
            ),
        })
    }

    fn history_in_timerange(
        &self,
        q: &RangeQuery<HistoryPos>,
    ) -> Result<Vec<(HistoryPos, InvocationHistory)>> {
        let (lo, hi, fetch) = (q.lo.seconds(), q.hi.seconds(), q.fetch_i64());
        let ctx = &self.ctx;
        self.read(|c| {
            let mut st;
            let mut rows = match q.after {
                None => {
                    st = c
                        .prepare_cached(sql::HISTORY_IN_RANGE_FIRST)
                        .map_err(|e| sql_err(ctx, "prepare", e))?;
                    st.query(params![lo, hi, fetch])
                }
                Some((ts, rowid)) => {
                    st = c
                        .prepare_cached(sql::HISTORY_IN_RANGE_AFTER)
                        .map_err(|e| sql_err(ctx, "prepare", e))?;
                    st.query(params![lo, hi, fetch, ts.seconds(), rowid])
                }
            }
            .map_err(|e| sql_err(ctx, "query", e))?;
            // Room for the page (within reason): no growth copying rows
            // of ~150 bytes a few times per page.
            let mut out = Vec::with_capacity(q.fetch.min(1024));
            let mut recent = RecentIds::default();
            while let Some(row) = rows.next().map_err(|e| sql_err(ctx, "read row", e))? {
                let ts = real_at(row, 0, ctx, T_HIST, "?")?;
                let rowid = int_at(row, 1, ctx, T_HIST, "?")?;
                out.push((
                    (TimeKey::from_seconds(ts), rowid),
                    decode_history(ctx, row, 2, 3, &mut recent)?,
                ));
            }
            Ok(out)
        })
    }

    fn set_result(&self, id: &InvocationId, result: &str) -> Result<()> {
        let encoding = self.writer.enter();
        self.write(
            encoding,
            WriteOp::Result {
                id: id.as_str().to_owned(),
                value: result.to_owned(),
            },
        )
    }

    fn get_result(&self, id: &InvocationId) -> Result<SharedText> {
        self.get_blob_text(sql::GET_RESULT, "state_backend_results", id, Entity::Result)
    }

    fn set_exception(&self, id: &InvocationId, exception: &str) -> Result<()> {
        let encoding = self.writer.enter();
        self.write(
            encoding,
            WriteOp::Exception {
                id: id.as_str().to_owned(),
                value: exception.to_owned(),
            },
        )
    }

    fn get_exception(&self, id: &InvocationId) -> Result<SharedText> {
        self.get_blob_text(
            "SELECT exception_data FROM state_backend_exceptions WHERE invocation_id = ?1",
            "state_backend_exceptions",
            id,
            Entity::Exception,
        )
    }

    fn store_workflow_run(&self, workflow: &WorkflowIdentity) -> Result<()> {
        let encoding = self.writer.enter();
        self.write(encoding, workflow_run_op(workflow))
    }

    fn get_all_workflow_types(&self) -> Result<Vec<TaskId>> {
        let ctx = &self.ctx;
        self.read(|c| {
            let mut st = c
                .prepare_cached(sql::WORKFLOW_TYPES)
                .map_err(|e| sql_err(ctx, "prepare", e))?;
            let mut rows = st.query([]).map_err(|e| sql_err(ctx, "query", e))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(|e| sql_err(ctx, "read row", e))? {
                let key = text_at(row, 0, ctx, T_WF, "workflow_type_key")?;
                out.push(key.parse().map_err(|e| corrupt(ctx, T_WF, &key, e))?);
            }
            Ok(out)
        })
    }

    fn workflow_runs(
        &self,
        q: &taskstate_core::monitor::RunsQuery<'_>,
    ) -> Result<Vec<WorkflowIdentity>> {
        let ctx = &self.ctx;
        self.read(|c| {
            // ?1 type, ?2 after, ?3 limit (-1: all); each variant uses the
            // (type, id) index or the primary key in id order.
            let sql = match (q.workflow_type.is_some(), q.after.is_some()) {
                (true, true) => sql::RUNS_OF_TYPE_AFTER,
                (true, false) => sql::RUNS_OF_TYPE,
                (false, true) => sql::RUNS_AFTER,
                (false, false) => sql::RUNS,
            };
            let mut st = c
                .prepare_cached(sql)
                .map_err(|e| sql_err(ctx, "prepare", e))?;
            let mut rows = st
                .query(params![
                    q.workflow_type.map(|t| t.key()),
                    q.after.map(|a| a.as_str()),
                    q.limit_or_all()
                ])
                .map_err(|e| sql_err(ctx, "query", e))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(|e| sql_err(ctx, "read row", e))? {
                out.push(decode_workflow(ctx, row)?);
            }
            Ok(out)
        })
    }

    fn store_workflow_sub_invocation(
        &self,
        workflow_id: &InvocationId,
        sub_invocation: &InvocationId,
    ) -> Result<()> {
        let encoding = self.writer.enter();
        self.write(
            encoding,
            WriteOp::SubInvocation {
                workflow: workflow_id.as_str().to_owned(),
                sub: sub_invocation.as_str().to_owned(),
            },
        )
    }

    fn get_workflow_sub_invocations(
        &self,
        workflow_id: &InvocationId,
    ) -> Result<Vec<InvocationId>> {
        self.read(|c| {
            ids(
                &self.ctx,
                c,
                "SELECT sub_invocation_id FROM state_backend_workflow_sub_invocations \
                 WHERE parent_workflow_id = ?1 ORDER BY sub_invocation_id",
                "state_backend_workflow_sub_invocations",
                [workflow_id.as_str()],
            )
        })
    }

    fn set_workflow_data(&self, workflow_id: &InvocationId, key: &str, value: &str) -> Result<()> {
        let encoding = self.writer.enter();
        self.write(
            encoding,
            WriteOp::WorkflowData {
                workflow: workflow_id.as_str().to_owned(),
                key: key.to_owned(),
                value: value.to_owned(),
            },
        )
    }

    fn get_workflow_data(&self, workflow_id: &InvocationId, key: &str) -> Result<Option<String>> {
        let ctx = &self.ctx;
        let k = format!("{workflow_id}/{key}");
        self.read(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT data_value FROM state_backend_workflow_data \
                     WHERE workflow_id = ?1 AND data_key = ?2",
                )
                .map_err(|e| sql_err(ctx, "prepare", e))?;
            let mut rows = st
                .query([workflow_id.as_str(), key])
                .map_err(|e| sql_err(ctx, "query", e))?;
            match rows.next().map_err(|e| sql_err(ctx, "read row", e))? {
                Some(row) => Ok(Some(text_at(
                    row,
                    0,
                    ctx,
                    "state_backend_workflow_data",
                    &k,
                )?)),
                None => Ok(None),
            }
        })
    }

    fn store_app_info(&self, info: &AppInfo) -> Result<()> {
        let encoding = self.writer.enter();
        self.write(
            encoding,
            WriteOp::AppInfo {
                id: info.app_id.as_str().to_owned(),
                json: info.to_json(),
            },
        )
    }

    fn get_app_info(&self, app_id: &AppId) -> Result<AppInfo> {
        let app_id = app_id.as_str();
        let ctx = &self.ctx;
        self.read(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT app_info_json FROM state_backend_app_info WHERE app_id = ?1",
                )
                .map_err(|e| sql_err(ctx, "prepare", e))?;
            let mut rows = st.query([app_id]).map_err(|e| sql_err(ctx, "query", e))?;
            match rows.next().map_err(|e| sql_err(ctx, "read row", e))? {
                Some(row) => decode_app(ctx, row, app_id),
                None => Err(Error::not_found(Entity::AppInfo, app_id)),
            }
        })
    }

    fn discover_app_infos(&self) -> Result<Vec<AppInfo>> {
        let ctx = &self.ctx;
        self.read(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT app_info_json, app_id FROM state_backend_app_info ORDER BY app_id",
                )
                .map_err(|e| sql_err(ctx, "prepare", e))?;
            let mut rows = st.query([]).map_err(|e| sql_err(ctx, "query", e))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(|e| sql_err(ctx, "read row", e))? {
                let key = opt_text_at(row, 1, ctx, T_APP, "?")?.unwrap_or_default();
                out.push(decode_app(ctx, row, &key)?);
            }
            Ok(out)
        })
    }

    fn store_runner_context(&self, ctx: &RunnerContext) -> Result<()> {
        let encoding = self.writer.enter();
        let rows = ctx
            .chain()
            .map(|c| runner_row(c, c.parent_runner_id()))
            .collect();
        self.write(encoding, WriteOp::Runners(rows))
    }

    fn get_runner_context(&self, runner_id: &RunnerId) -> Result<Option<RunnerContext>> {
        let ctx = &self.ctx;
        self.read_snapshot(|c| {
            load_runner(ctx, c, runner_id)?
                .map(|row| resolve_runner(ctx, c, row))
                .transpose()
        })
    }

    fn get_runner_contexts(&self, ids: &[RunnerId]) -> Result<Vec<RunnerContext>> {
        let wanted: std::collections::BTreeSet<&RunnerId> = ids.iter().collect();
        let ctx = &self.ctx;
        self.read_snapshot(|c| {
            let mut out = Vec::new();
            for id in wanted {
                if let Some(row) = load_runner(ctx, c, id)? {
                    out.push(resolve_runner(ctx, c, row)?);
                }
            }
            Ok(out)
        })
    }

    fn get_matching_runner_contexts(&self, partial: &str) -> Result<Vec<RunnerContext>> {
        let ctx = &self.ctx;
        self.read_snapshot(|c| {
            // SQL LIKE would treat % and _ as wildcards; match in Rust with
            // the contract's literal, ASCII-case-insensitive rule instead.
            let mut st = c
                .prepare_cached(
                    "SELECT runner_id FROM state_backend_runner_contexts ORDER BY runner_id",
                )
                .map_err(|e| sql_err(ctx, "prepare", e))?;
            let mut rows = st.query([]).map_err(|e| sql_err(ctx, "query", e))?;
            let mut matched = Vec::new();
            while let Some(row) = rows.next().map_err(|e| sql_err(ctx, "read row", e))? {
                let id = text_at(row, 0, ctx, T_RUN, "runner_id")?;
                if runner_id_matches(&id, partial) {
                    matched.push(RunnerId::new(id));
                }
            }
            drop(rows);
            let mut out = Vec::with_capacity(matched.len());
            for id in matched {
                if let Some(row) = load_runner(ctx, c, &id)? {
                    out.push(resolve_runner(ctx, c, row)?);
                }
            }
            Ok(out)
        })
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>> {
        Ok(Box::new(bulk::SqliteSnapshot::new(self)?))
    }

    fn write_rows(&self, rows: &[BulkRow]) -> Result<()> {
        let encoding = self.writer.enter();
        let op = bulk::encode(rows)?;
        if rows.is_empty() {
            return Ok(());
        }
        self.write(encoding, op)
    }

    fn purge(&self) -> Result<()> {
        let encoding = self.writer.enter();
        self.write(encoding, WriteOp::Purge)
    }

    fn prune_transaction(
        &self,
        write: bool,
        work: &mut dyn FnMut(&mut dyn taskstate_core::prune::PruneTx) -> Result<()>,
    ) -> Result<()> {
        let ctx = &self.ctx;
        if !write {
            return self.read_snapshot(|conn| work(&mut SqlitePrune { conn, ctx }));
        }
        self.writer.with_conn(|conn| {
            if !conn.is_autocommit() {
                // An interrupted transaction; never build on its leftovers.
                let _ = conn.execute_batch("ROLLBACK");
            }
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| sql_err(ctx, "begin prune transaction", e))?;
            work(&mut SqlitePrune { conn: &tx, ctx })?;
            tx.commit().map_err(|e| sql_err(ctx, "commit prune", e))
        })
    }

    fn reclaim_space(&self) -> Result<Option<taskstate_core::SpaceReport>> {
        let ctx = &self.ctx;
        self.writer.with_conn(|conn| {
            let size = |c: &rusqlite::Connection| -> Result<u64> {
                let pages: i64 = c
                    .query_row("PRAGMA page_count", [], |r| r.get(0))
                    .map_err(|e| sql_err(ctx, "read page count", e))?;
                let page: i64 = c
                    .query_row("PRAGMA page_size", [], |r| r.get(0))
                    .map_err(|e| sql_err(ctx, "read page size", e))?;
                Ok(u64::try_from(pages.saturating_mul(page)).unwrap_or(0))
            };
            let before_bytes = size(conn)?;
            conn.execute_batch("VACUUM")
                .map_err(|e| sql_err(ctx, "vacuum", e))?;
            // Hand the WAL's copy of the rewritten pages back too.
            conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                .map_err(|e| sql_err(ctx, "checkpoint", e))?;
            Ok(Some(taskstate_core::SpaceReport {
                before_bytes,
                after_bytes: size(conn)?,
            }))
        })
    }

    fn list_invocations(
        &self,
        q: &taskstate_core::monitor::ListQuery,
    ) -> Result<Vec<taskstate_core::InvocationSummary>> {
        self.read(|c| crate::monitor::list_invocations(c, &self.ctx, q))
    }

    fn latest_status_counts(&self) -> Result<taskstate_core::StatusCounts> {
        self.read(|c| crate::monitor::latest_status_counts(c, &self.ctx))
    }
}

impl SqliteBackend {
    fn get_blob_text(
        &self,
        sql: &str,
        table: &str,
        id: &InvocationId,
        entity: Entity,
    ) -> Result<SharedText> {
        let ctx = &self.ctx;
        self.read(|c| {
            let mut st = c
                .prepare_cached(sql)
                .map_err(|e| sql_err(ctx, "prepare", e))?;
            let mut rows = st
                .query([id.as_str()])
                .map_err(|e| sql_err(ctx, "query", e))?;
            match rows.next().map_err(|e| sql_err(ctx, "read row", e))? {
                // Copied once, from the row into the shared text.
                Some(row) => str_at(row, 0, ctx, table, id.as_str()).map(SharedText::from),
                None => Err(Error::not_found(entity, id.as_str())),
            }
        })
    }
}
