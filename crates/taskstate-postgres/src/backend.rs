//! The engine's operations. Input arrives checked (see
//! `taskstate_core::engine`); single statements run without a transaction,
//! multi-statement reads in one read-only transaction.

use std::collections::BTreeSet;
use std::sync::Arc;

use taskstate_core::SharedText;
use taskstate_core::engine::{Engine, HistoryPos, RangeQuery, runner_id_matches};
use taskstate_core::{
    AppId, AppInfo, CallDTO, Entity, Error, InvocationDTO, InvocationHistory, InvocationId,
    InvocationRecord, RecentIds, Result, Row as BulkRow, RunnerContext, RunnerId, Snapshot, TaskId,
    TimeKey, WorkflowIdentity,
};

use crate::encode::{exec_history, exec_invocations, history_columns, invocation_columns};
use crate::{ENGINE, PostgresBackend, bulk};

impl Engine for PostgresBackend {
    fn engine_name(&self) -> &'static str {
        ENGINE
    }

    fn upsert_invocations(&self, entries: &[(InvocationDTO, CallDTO)]) -> Result<()> {
        let Some(cols) = invocation_columns(entries.iter().map(|(i, c)| (i, c))) else {
            return Ok(());
        };
        let single = cols[0].len() == 1;
        self.write("upsert invocations", false, |tx| {
            if single {
                // One row: the plain statement (no array round trip).
                let p: Vec<&Option<String>> = cols.iter().map(|c| &c[0]).collect();
                return tx
                    .execute(
                        &self.sql.upsert_invocation,
                        &[p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8]],
                    )
                    .map(drop);
            }
            exec_invocations(tx, &self.sql, &cols)
        })
    }

    fn get_invocation(&self, id: &InvocationId) -> Result<InvocationRecord> {
        let k = id.as_str();
        self.read("get invocation", false, |tx| {
            let rows = self.q(tx, &self.sql.get_invocation, &[&k])?;
            let r = rows
                .first()
                .ok_or_else(|| Error::not_found(Entity::Invocation, k))?;
            self.decode_invocation(r, id.clone(), 0).map(Arc::new)
        })
    }

    fn get_child_invocations(&self, parent: &InvocationId) -> Result<Vec<InvocationId>> {
        self.ids(&self.sql.children, &[&parent.as_str()])
    }

    fn get_invocation_ids_by_workflow(
        &self,
        workflow_id: Option<&InvocationId>,
        workflow_type: Option<&TaskId>,
    ) -> Result<Vec<InvocationId>> {
        match (workflow_id, workflow_type) {
            (None, None) => self.ids(&self.sql.ids_all, &[]),
            (Some(w), None) => self.ids(&self.sql.ids_by_wf, &[&w.as_str()]),
            (None, Some(t)) => self.ids(&self.sql.ids_by_type, &[&t.key()]),
            (Some(w), Some(t)) => self.ids(&self.sql.ids_by_both, &[&w.as_str(), &t.key()]),
        }
    }

    fn add_history_rows(&self, records: &[taskstate_core::HistoryRow<'_>]) -> Result<()> {
        let Some(cols) = history_columns(records) else {
            return Ok(());
        };
        if let [r] = records {
            let (key, micros) = (r.time_key().seconds(), r.record.timestamp.micros());
            return self.write("add history", false, |tx| {
                tx.execute(
                    &self.sql.insert_history,
                    &[
                        &r.key.as_str(),
                        &key,
                        &micros,
                        &r.record.status_record.status.as_str(),
                        &cols.4[0],
                    ],
                )
                .map(drop)
            });
        }
        self.write("add histories", false, |tx| {
            exec_history(tx, &self.sql, &cols)
        })
    }

    fn get_history_rows(&self, id: &InvocationId) -> Result<Vec<taskstate_core::StoredHistory>> {
        self.read("get history", false, |tx| {
            let mut recent = RecentIds::default();
            self.q(tx, &self.sql.get_history, &[&id.as_str()])?
                .iter()
                .map(|r| self.decode_stored_history(r, 0, 1, 2, &mut recent))
                .collect()
        })
    }

    fn invocation_ids_in_timerange(
        &self,
        q: &RangeQuery<InvocationId>,
    ) -> Result<Vec<InvocationId>> {
        let (lo, hi, n) = (q.lo.seconds(), q.hi.seconds(), q.fetch_i64());
        match &q.after {
            None => self.ids(&self.sql.ids_range_first, &[&lo, &hi, &n]),
            Some(a) => self.ids(&self.sql.ids_range_after, &[&lo, &hi, &n, &a.as_str()]),
        }
    }

    fn history_in_timerange(
        &self,
        q: &RangeQuery<HistoryPos>,
    ) -> Result<Vec<(HistoryPos, InvocationHistory)>> {
        let (lo, hi, n) = (q.lo.seconds(), q.hi.seconds(), q.fetch_i64());
        self.read("history in range", false, |tx| {
            let rows = match q.after {
                None => self.q(tx, &self.sql.history_first, &[&lo, &hi, &n])?,
                Some((ts, seq)) => self.q(
                    tx,
                    &self.sql.history_after,
                    &[&lo, &hi, &n, &ts.seconds(), &seq],
                )?,
            };
            let mut recent = RecentIds::default();
            rows.iter()
                .map(|r| {
                    let ts = self.col::<f64>(r, 0, "history", "?")?;
                    let seq = self.col::<i64>(r, 1, "history", "?")?;
                    Ok((
                        (TimeKey::from_seconds(ts), seq),
                        self.decode_history(r, 2, 3, &mut recent)?,
                    ))
                })
                .collect()
        })
    }

    fn set_result(&self, id: &InvocationId, result: &str) -> Result<()> {
        self.write("set result", false, |tx| {
            tx.execute(&self.sql.set_result, &[&id.as_str(), &result])
                .map(drop)
        })
    }

    fn get_result(&self, id: &InvocationId) -> Result<SharedText> {
        self.get_text(&self.sql.get_result, id, Entity::Result)
            .map(SharedText::from)
    }

    fn set_exception(&self, id: &InvocationId, exception: &str) -> Result<()> {
        self.write("set exception", false, |tx| {
            tx.execute(&self.sql.set_exception, &[&id.as_str(), &exception])
                .map(drop)
        })
    }

    fn get_exception(&self, id: &InvocationId) -> Result<SharedText> {
        self.get_text(&self.sql.get_exception, id, Entity::Exception)
            .map(SharedText::from)
    }

    fn store_workflow_run(&self, workflow: &WorkflowIdentity) -> Result<()> {
        let parent = workflow
            .parent_workflow_id
            .as_ref()
            .map(InvocationId::as_str);
        self.write("store workflow run", false, |tx| {
            tx.execute(
                &self.sql.upsert_workflow,
                &[
                    &workflow.workflow_id.as_str(),
                    &workflow.workflow_type.key(),
                    &parent,
                ],
            )
            .map(drop)
        })
    }

    fn get_all_workflow_types(&self) -> Result<Vec<TaskId>> {
        self.read("workflow types", false, |tx| {
            self.q(tx, &self.sql.workflow_types, &[])?
                .iter()
                .map(|r| {
                    let k: String = self.col(r, 0, "workflows", "?")?;
                    k.parse().map_err(|e| self.corrupt("workflows", &k, e))
                })
                .collect()
        })
    }

    fn workflow_runs(
        &self,
        q: &taskstate_core::monitor::RunsQuery<'_>,
    ) -> Result<Vec<WorkflowIdentity>> {
        // $1 type, $2 after, $3 limit (NULL: all), each variant on the
        // (type, id) index or the primary key.
        let sql = match (q.workflow_type.is_some(), q.after.is_some()) {
            (true, true) => &self.sql.workflow_runs_of_after,
            (true, false) => &self.sql.workflow_runs_of,
            (false, true) => &self.sql.workflow_runs_after,
            (false, false) => &self.sql.workflow_runs,
        };
        let ty = q.workflow_type.map(|t| t.key());
        let after = q.after.map(|a| a.as_str());
        let limit = q.fetch.map(|f| i64::try_from(f).unwrap_or(i64::MAX));
        self.read("workflow runs", false, |tx| {
            let rows = self.q(tx, sql, &[&ty, &after, &limit])?;
            rows.iter().map(|r| self.decode_workflow(r)).collect()
        })
    }

    fn store_workflow_sub_invocation(
        &self,
        workflow_id: &InvocationId,
        sub_invocation: &InvocationId,
    ) -> Result<()> {
        self.write("store sub-invocation", false, |tx| {
            tx.execute(
                &self.sql.insert_sub,
                &[&workflow_id.as_str(), &sub_invocation.as_str()],
            )
            .map(drop)
        })
    }

    fn get_workflow_sub_invocations(
        &self,
        workflow_id: &InvocationId,
    ) -> Result<Vec<InvocationId>> {
        self.ids(&self.sql.subs_of, &[&workflow_id.as_str()])
    }

    fn set_workflow_data(&self, workflow_id: &InvocationId, key: &str, value: &str) -> Result<()> {
        self.write("set workflow data", false, |tx| {
            tx.execute(&self.sql.set_data, &[&workflow_id.as_str(), &key, &value])
                .map(drop)
        })
    }

    fn get_workflow_data(&self, workflow_id: &InvocationId, key: &str) -> Result<Option<String>> {
        self.read("get workflow data", false, |tx| {
            self.q(tx, &self.sql.get_data, &[&workflow_id.as_str(), &key])?
                .first()
                .map(|r| self.col(r, 0, "workflow_data", workflow_id.as_str()))
                .transpose()
        })
    }

    fn store_app_info(&self, info: &AppInfo) -> Result<()> {
        let json = info.to_json();
        self.write("store app info", false, |tx| {
            tx.execute(&self.sql.upsert_app, &[&info.app_id.as_str(), &json])
                .map(drop)
        })
    }

    fn get_app_info(&self, app_id: &AppId) -> Result<AppInfo> {
        let app_id = app_id.as_str();
        self.read("get app info", false, |tx| {
            let rows = self.q(tx, &self.sql.get_app, &[&app_id])?;
            let r = rows
                .first()
                .ok_or_else(|| Error::not_found(Entity::AppInfo, app_id))?;
            AppInfo::from_json(&self.col::<String>(r, 0, "app_info", app_id)?)
                .map_err(|e| self.corrupt("app_info", app_id, e))
        })
    }

    fn discover_app_infos(&self) -> Result<Vec<AppInfo>> {
        self.read("discover app infos", false, |tx| {
            self.q(tx, &self.sql.all_apps, &[])?
                .iter()
                .map(|r| {
                    let id: String = self.col(r, 1, "app_info", "?")?;
                    AppInfo::from_json(&self.col::<String>(r, 0, "app_info", &id)?)
                        .map_err(|e| self.corrupt("app_info", &id, e))
                })
                .collect()
        })
    }

    fn store_runner_context(&self, ctx: &RunnerContext) -> Result<()> {
        let chain: Vec<&RunnerContext> = ctx.chain().collect();
        self.write("store runner context", chain.len() > 1, |tx| {
            for c in &chain {
                let parent = c.parent_runner_id().map(RunnerId::as_str);
                tx.execute(
                    &self.sql.upsert_runner,
                    &[
                        &c.runner_id.as_str(),
                        &c.runner_cls,
                        &parent,
                        &c.pid,
                        &c.hostname,
                        &c.thread_id,
                    ],
                )?;
            }
            Ok(())
        })
    }

    fn get_runner_context(&self, runner_id: &RunnerId) -> Result<Option<RunnerContext>> {
        self.read("get runner context", true, |tx| {
            match self.load_runner(tx, runner_id)? {
                Some(row) => self.resolve_runner(tx, row).map(Some),
                None => Ok(None),
            }
        })
    }

    fn get_runner_contexts(&self, ids: &[RunnerId]) -> Result<Vec<RunnerContext>> {
        let wanted: BTreeSet<&RunnerId> = ids.iter().collect();
        self.read("get runner contexts", true, |tx| {
            let mut out = Vec::new();
            for id in &wanted {
                if let Some(row) = self.load_runner(tx, id)? {
                    out.push(self.resolve_runner(tx, row)?);
                }
            }
            Ok(out)
        })
    }

    fn get_matching_runner_contexts(&self, partial: &str) -> Result<Vec<RunnerContext>> {
        self.read("match runner contexts", true, |tx| {
            // Matched in Rust with the contract's rule (literal, ASCII case
            // folding), whatever the server's collation and LIKE would do.
            let ids: Vec<RunnerId> = self
                .q(tx, &self.sql.runner_ids, &[])?
                .iter()
                .map(|r| self.col::<String>(r, 0, "runner_contexts", "?"))
                .collect::<Result<Vec<_>>>()?
                .into_iter()
                .filter(|id| runner_id_matches(id, partial))
                .map(RunnerId::new)
                .collect();
            let mut out = Vec::with_capacity(ids.len());
            for id in &ids {
                if let Some(row) = self.load_runner(tx, id)? {
                    out.push(self.resolve_runner(tx, row)?);
                }
            }
            Ok(out)
        })
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>> {
        Ok(Box::new(bulk::PgSnapshot::new(self)?))
    }

    fn write_rows(&self, rows: &[BulkRow]) -> Result<()> {
        crate::write_rows::write_rows(self, rows)
    }

    fn engine_row_rules(&self, row: &BulkRow) -> Result<()> {
        crate::write_rows::no_nul_in_text(row)
    }

    fn purge(&self) -> Result<()> {
        self.write("purge", false, |tx| tx.batch_execute(&self.sql.purge))
    }

    fn prune_transaction(
        &self,
        write: bool,
        work: &mut dyn FnMut(&mut dyn taskstate_core::prune::PruneTx) -> Result<()>,
    ) -> Result<()> {
        self.prune_tx(write, work)
    }

    fn list_invocations(
        &self,
        q: &taskstate_core::monitor::ListQuery,
    ) -> Result<Vec<taskstate_core::InvocationSummary>> {
        self.list_latest(q)
    }

    fn latest_status_counts(&self) -> Result<taskstate_core::StatusCounts> {
        self.count_latest()
    }
}
