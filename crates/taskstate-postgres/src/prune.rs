//! Retention's view of the PostgreSQL engine (the rules are in
//! `taskstate_core::prune`): a [`PruneTx`] inside one transaction, each of
//! its calls a few statements over arrays of ids (`= ANY($1)`), so a chunk
//! costs a handful of round trips however many trees it holds.
//!
//! A real prune's chunk examines without locks, then takes `SHARE ROW
//! EXCLUSIVE` locks on the tables it reads and deletes from
//! ([`PruneTx::lock`]): plain reads go on, writes to those tables wait for
//! the chunk to commit, and core describes the trees about to go once
//! more under the lock, deleting only those whose facts did not change (no
//! row can appear in a tree it is removing). Writers wait for that second
//! look and the deletes, not for the examination. A dry run reads one `REPEATABLE READ` snapshot per chunk and
//! locks nothing. Deletes are plain deletes; autovacuum reuses the space.

use std::collections::HashMap;

use postgres::IsolationLevel;
use taskstate_core::engine::HistoryPos;
use taskstate_core::prune::{Latest, PruneCounts, PruneNode, PruneTx};
use taskstate_core::{InvocationId, Result, TimeKey};

use crate::PostgresBackend;
use crate::conn::{Db, PgConn, Target};
use crate::errors::AttemptError;
use crate::sql::Tables;

/// The statements of a prune, for one schema.
pub(crate) struct PruneSql {
    planner: String,
    lock: String,
    scan_first: String,
    scan_after: String,
    own_links: String,
    other_links: String,
    latest: String,
    /// (count, delete) per kind of row, in [`PruneCounts`] order after
    /// `trees`.
    by_id: [(String, String); 7],
}

impl PruneSql {
    pub(crate) fn new(tables: &Tables) -> Self {
        let Tables {
            inv,
            his,
            res,
            exc,
            wf,
            sub,
            data,
            ..
        } = tables;
        let pair = |table: &str, cond: &str| {
            (
                format!("SELECT count(*) FROM {table} WHERE {cond}"),
                format!("DELETE FROM {table} WHERE {cond}"),
            )
        };
        Self {
            planner: "SET LOCAL enable_seqscan = off; SET LOCAL jit = off".to_owned(),
            lock: format!(
                "LOCK TABLE {inv}, {his}, {res}, {exc}, {wf}, {sub}, {data} IN SHARE ROW EXCLUSIVE MODE"
            ),
            scan_first: format!(
                "SELECT ts_key, seq, invocation_id FROM {his} WHERE ts_key <= $1 \
                 ORDER BY ts_key, seq LIMIT $2"
            ),
            scan_after: format!(
                "SELECT ts_key, seq, invocation_id FROM {his} \
                 WHERE ts_key <= $1 AND (ts_key, seq) > ($3, $4) ORDER BY ts_key, seq LIMIT $2"
            ),
            own_links: format!(
                "SELECT invocation_id, parent_invocation_id, workflow_id, parent_workflow_id \
                 FROM {inv} WHERE invocation_id = ANY($1)"
            ),
            other_links: format!(
                "SELECT parent_invocation_id, invocation_id FROM {inv} WHERE parent_invocation_id = ANY($1) \
                 UNION ALL SELECT workflow_id, invocation_id FROM {inv} WHERE workflow_id = ANY($1) \
                 UNION ALL SELECT parent_workflow_id, invocation_id FROM {inv} WHERE parent_workflow_id = ANY($1) \
                 UNION ALL SELECT workflow_id, parent_workflow_id FROM {wf} WHERE workflow_id = ANY($1) \
                 UNION ALL SELECT parent_workflow_id, workflow_id FROM {wf} WHERE parent_workflow_id = ANY($1) \
                 UNION ALL SELECT parent_workflow_id, sub_invocation_id FROM {sub} WHERE parent_workflow_id = ANY($1) \
                 UNION ALL SELECT sub_invocation_id, parent_workflow_id FROM {sub} WHERE sub_invocation_id = ANY($1)"
            ),
            latest: format!(
                "SELECT DISTINCT ON (invocation_id) invocation_id, ts_key, status FROM {his} \
                 WHERE invocation_id = ANY($1) ORDER BY invocation_id, ts_key DESC, seq DESC"
            ),
            by_id: [
                pair(inv, "invocation_id = ANY($1)"),
                pair(his, "invocation_id = ANY($1)"),
                pair(res, "invocation_id = ANY($1)"),
                pair(exc, "invocation_id = ANY($1)"),
                pair(wf, "workflow_id = ANY($1)"),
                pair(
                    sub,
                    "parent_workflow_id = ANY($1) OR sub_invocation_id = ANY($1)",
                ),
                pair(data, "workflow_id = ANY($1)"),
            ],
        }
    }
}

struct PgPrune<'a, 'd> {
    backend: &'a PostgresBackend,
    db: &'a mut Db<'d>,
}

impl PostgresBackend {
    pub(crate) fn prune_tx(
        &self,
        write: bool,
        work: &mut dyn FnMut(&mut dyn PruneTx) -> Result<()>,
    ) -> Result<()> {
        let sql = &self.sql.prune;
        self.retrying("prune", |conn| {
            let PgConn {
                client, statements, ..
            } = conn;
            let isolation = if write {
                IsolationLevel::ReadCommitted
            } else {
                IsolationLevel::RepeatableRead
            };
            // READ ONLY for a dry run; never an explicit READ WRITE, which
            // would override a read-only session's default.
            let builder = client.build_transaction().isolation_level(isolation);
            let builder = if write {
                builder
            } else {
                builder.read_only(true)
            };
            let tx = builder.start().map_err(AttemptError::Pg)?;
            let mut db = Db {
                target: Target::Tx(tx),
                statements,
            };
            // Every statement below has an index to use; without this a
            // table never analyzed (just imported, just filled) gets the
            // planner's default selectivity for `= ANY($1)` (0.5 % a
            // value: half the table for 100 ids), a sequential scan per
            // statement and JIT compiling on top, seconds a chunk.
            db.batch_execute(&sql.planner).map_err(AttemptError::Pg)?;
            work(&mut PgPrune {
                backend: self,
                db: &mut db,
            })
            .map_err(AttemptError::Other)?;
            db.finish().map_err(AttemptError::Pg)
        })
    }
}

impl PgPrune<'_, '_> {
    fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>> {
        self.backend.q(self.db, sql, params)
    }
}

impl PruneTx for PgPrune<'_, '_> {
    fn lock(&mut self) -> Result<bool> {
        let b = self.backend;
        self.db
            .batch_execute(&b.sql.prune.lock)
            .map_err(|e| b.pg_err("lock tables for prune", e))?;
        Ok(true)
    }

    fn scan(
        &mut self,
        cutoff: TimeKey,
        after: Option<HistoryPos>,
        limit: usize,
    ) -> Result<Vec<(HistoryPos, InvocationId)>> {
        let b = self.backend;
        let (c, n) = (cutoff.seconds(), i64::try_from(limit).unwrap_or(i64::MAX));
        let rows = match after {
            None => self.query(&b.sql.prune.scan_first, &[&c, &n])?,
            Some((ts, seq)) => {
                self.query(&b.sql.prune.scan_after, &[&c, &n, &ts.seconds(), &seq])?
            }
        };
        rows.iter()
            .map(|r| {
                let ts = b.col::<f64>(r, 0, "history", "?")?;
                let seq = b.col::<i64>(r, 1, "history", "?")?;
                let key = b.col::<String>(r, 2, "history", "?")?;
                Ok(((TimeKey::from_seconds(ts), seq), InvocationId::new(key)))
            })
            .collect()
    }

    fn nodes(&mut self, ids: &[InvocationId]) -> Result<Vec<PruneNode>> {
        let b = self.backend;
        let keys: Vec<&str> = ids.iter().map(InvocationId::as_str).collect();
        let mut nodes: HashMap<&str, PruneNode> = ids
            .iter()
            .map(|id| {
                (
                    id.as_str(),
                    PruneNode {
                        id: id.clone(),
                        invocation: false,
                        latest: None,
                        links: Vec::new(),
                    },
                )
            })
            .collect();
        for r in self.query(&b.sql.prune.own_links, &[&keys])? {
            let id = b.col::<String>(&r, 0, "invocations", "?")?;
            if let Some(node) = nodes.get_mut(id.as_str()) {
                node.invocation = true;
                for i in 1..4 {
                    node.links.extend(b.opt_id(&r, i, "invocations", &id)?);
                }
            }
        }
        for r in self.query(&b.sql.prune.other_links, &[&keys])? {
            let id = b.col::<String>(&r, 0, "links", "?")?;
            if let Some(node) = nodes.get_mut(id.as_str()) {
                node.links.extend(b.opt_id(&r, 1, "links", &id)?);
            }
        }
        for r in self.query(&b.sql.prune.latest, &[&keys])? {
            let id = b.col::<String>(&r, 0, "history", "?")?;
            let ts = b.col::<f64>(&r, 1, "history", &id)?;
            let status = b.col::<String>(&r, 2, "history", &id)?;
            if let Some(node) = nodes.get_mut(id.as_str()) {
                node.latest = Some(Latest {
                    time: TimeKey::from_seconds(ts),
                    status: status.parse().ok(),
                });
            }
        }
        Ok(nodes.into_values().collect())
    }

    fn remove(&mut self, ids: &[InvocationId], dry_run: bool) -> Result<PruneCounts> {
        let b = self.backend;
        let keys: Vec<&str> = ids.iter().map(InvocationId::as_str).collect();
        let mut n = [0u64; 7];
        for (slot, (count, delete)) in n.iter_mut().zip(&b.sql.prune.by_id) {
            *slot = if dry_run {
                let rows = self.query(count, &[&keys])?;
                let c = match rows.first() {
                    Some(r) => b.col::<i64>(r, 0, "count", "?")?,
                    None => 0,
                };
                u64::try_from(c).unwrap_or(0)
            } else {
                self.db
                    .execute(delete, &[&keys])
                    .map_err(|e| b.pg_err("prune", e))?
            };
        }
        let mut c = PruneCounts::default();
        c.invocations = n[0];
        c.history = n[1];
        c.results = n[2];
        c.exceptions = n[3];
        c.workflow_runs = n[4];
        c.sub_invocations = n[5];
        c.workflow_data = n[6];
        Ok(c)
    }
}
