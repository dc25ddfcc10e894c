//! Retention's view of the SQLite engine (the rules are in
//! `taskstate_core::prune`): a [`PruneTx`] on one connection inside one
//! transaction. A real prune's chunk runs on the write connection in a
//! `BEGIN IMMEDIATE` transaction, so it holds the file's write lock from
//! the first read to the commit: no write interleaves, and concurrent
//! writers wait for one chunk. A dry run reads a snapshot on a read
//! connection and blocks nobody.
//!
//! Every lookup is one indexed point query per id (the reference's
//! indexes, ours of version 1, and version 2's for the links only
//! retention follows); the scan walks `taskstate_history_time` up to the
//! cutoff.

use std::collections::HashSet;

use rusqlite::{Connection, params};
use taskstate_core::engine::HistoryPos;
use taskstate_core::prune::{Latest, PruneCounts, PruneNode, PruneTx};
use taskstate_core::{InvocationId, Result, TimeKey};

use crate::decode::{T_HIST, int_at, opt_id_at, opt_str_at, real_at};
use crate::errors::{Ctx, sql_err};

const SCAN_FIRST: &str = "SELECT history_timestamp, rowid, invocation_id \
     FROM state_backend_history WHERE history_timestamp <= ?1 \
     ORDER BY history_timestamp, rowid LIMIT ?2";

/// After (timestamp ?3, rowid ?4): the cursor's timestamp is the only lower
/// bound, as in `sql::HISTORY_IN_RANGE_AFTER`.
const SCAN_AFTER: &str = "SELECT history_timestamp, rowid, invocation_id \
     FROM state_backend_history \
     WHERE history_timestamp >= ?3 AND history_timestamp <= ?1 \
     AND (history_timestamp > ?3 OR rowid > ?4) \
     ORDER BY history_timestamp, rowid LIMIT ?2";

const OWN_LINKS: &str = "SELECT parent_invocation_id, workflow_id, parent_workflow_id \
     FROM state_backend_invocations WHERE invocation_id = ?1";

/// Every other link of ?1, one per row (NULL and '' are skipped by the
/// reader).
const OTHER_LINKS: &str = "\
     SELECT invocation_id FROM state_backend_invocations WHERE parent_invocation_id = ?1 \
     UNION ALL SELECT invocation_id FROM state_backend_invocations WHERE workflow_id = ?1 \
     UNION ALL SELECT invocation_id FROM state_backend_invocations WHERE parent_workflow_id = ?1 \
     UNION ALL SELECT parent_workflow_id FROM state_backend_workflows WHERE workflow_id = ?1 \
     UNION ALL SELECT workflow_id FROM state_backend_workflows WHERE parent_workflow_id = ?1 \
     UNION ALL SELECT sub_invocation_id FROM state_backend_workflow_sub_invocations \
         WHERE parent_workflow_id = ?1 \
     UNION ALL SELECT parent_workflow_id FROM state_backend_workflow_sub_invocations \
         WHERE sub_invocation_id = ?1";

const LATEST: &str = "SELECT history_timestamp, history_status FROM state_backend_history \
     WHERE invocation_id = ?1 ORDER BY history_timestamp DESC, rowid DESC LIMIT 1";

/// (count statement, delete statement) per kind of row, in
/// [`PruneCounts`] order after `trees`; sub-invocations are handled apart.
const BY_ID: [(&str, &str); 6] = [
    (
        "SELECT count(*) FROM state_backend_invocations WHERE invocation_id = ?1",
        "DELETE FROM state_backend_invocations WHERE invocation_id = ?1",
    ),
    (
        "SELECT count(*) FROM state_backend_history WHERE invocation_id = ?1",
        "DELETE FROM state_backend_history WHERE invocation_id = ?1",
    ),
    (
        "SELECT count(*) FROM state_backend_results WHERE invocation_id = ?1",
        "DELETE FROM state_backend_results WHERE invocation_id = ?1",
    ),
    (
        "SELECT count(*) FROM state_backend_exceptions WHERE invocation_id = ?1",
        "DELETE FROM state_backend_exceptions WHERE invocation_id = ?1",
    ),
    (
        "SELECT count(*) FROM state_backend_workflows WHERE workflow_id = ?1",
        "DELETE FROM state_backend_workflows WHERE workflow_id = ?1",
    ),
    (
        "SELECT count(*) FROM state_backend_workflow_data WHERE workflow_id = ?1",
        "DELETE FROM state_backend_workflow_data WHERE workflow_id = ?1",
    ),
];

const SUBS_FROM_COUNT: &str =
    "SELECT count(*) FROM state_backend_workflow_sub_invocations WHERE parent_workflow_id = ?1";
const SUBS_TO: &str = "SELECT parent_workflow_id FROM state_backend_workflow_sub_invocations WHERE sub_invocation_id = ?1";
const SUBS_DELETE: &str = "DELETE FROM state_backend_workflow_sub_invocations \
     WHERE parent_workflow_id = ?1 OR sub_invocation_id = ?1";

pub(crate) struct SqlitePrune<'a> {
    pub(crate) conn: &'a Connection,
    pub(crate) ctx: &'a Ctx,
}

impl SqlitePrune<'_> {
    fn count(&self, sql: &str, id: &InvocationId) -> Result<u64> {
        let n: i64 = self
            .conn
            .prepare_cached(sql)
            .and_then(|mut st| st.query_row([id.as_str()], |r| r.get(0)))
            .map_err(|e| sql_err(self.ctx, "count rows to prune", e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn delete(&self, sql: &str, id: &InvocationId) -> Result<u64> {
        let n = self
            .conn
            .prepare_cached(sql)
            .and_then(|mut st| st.execute([id.as_str()]))
            .map_err(|e| sql_err(self.ctx, "prune", e))?;
        Ok(n as u64)
    }

    /// The non-empty ids a query on `id` returns (first column).
    fn linked(&self, sql: &str, id: &InvocationId, into: &mut Vec<InvocationId>) -> Result<()> {
        let ctx = self.ctx;
        let mut st = self
            .conn
            .prepare_cached(sql)
            .map_err(|e| sql_err(ctx, "prepare", e))?;
        let mut rows = st
            .query([id.as_str()])
            .map_err(|e| sql_err(ctx, "query links", e))?;
        while let Some(row) = rows.next().map_err(|e| sql_err(ctx, "read row", e))? {
            into.extend(opt_id_at(row, 0, ctx, "links", id.as_str())?);
        }
        Ok(())
    }

    fn node(&self, id: &InvocationId) -> Result<PruneNode> {
        let ctx = self.ctx;
        let key = id.as_str();
        let mut links = Vec::new();
        let mut invocation = false;
        {
            let mut st = self
                .conn
                .prepare_cached(OWN_LINKS)
                .map_err(|e| sql_err(ctx, "prepare", e))?;
            let mut rows = st.query([key]).map_err(|e| sql_err(ctx, "query", e))?;
            if let Some(row) = rows.next().map_err(|e| sql_err(ctx, "read row", e))? {
                invocation = true;
                for i in 0..3 {
                    links.extend(opt_id_at(row, i, ctx, "state_backend_invocations", key)?);
                }
            }
        }
        self.linked(OTHER_LINKS, id, &mut links)?;
        let mut st = self
            .conn
            .prepare_cached(LATEST)
            .map_err(|e| sql_err(ctx, "prepare", e))?;
        let mut rows = st.query([key]).map_err(|e| sql_err(ctx, "query", e))?;
        let latest = match rows.next().map_err(|e| sql_err(ctx, "read row", e))? {
            Some(row) => Some(Latest {
                time: TimeKey::from_seconds(real_at(row, 0, ctx, T_HIST, key)?),
                status: opt_str_at(row, 1, ctx, T_HIST, key)?.and_then(|s| s.parse().ok()),
            }),
            None => None,
        };
        Ok(PruneNode {
            id: id.clone(),
            invocation,
            latest,
            links,
        })
    }
}

impl PruneTx for SqlitePrune<'_> {
    fn scan(
        &mut self,
        cutoff: TimeKey,
        after: Option<HistoryPos>,
        limit: usize,
    ) -> Result<Vec<(HistoryPos, InvocationId)>> {
        let ctx = self.ctx;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut st;
        let mut rows = match after {
            None => {
                st = self
                    .conn
                    .prepare_cached(SCAN_FIRST)
                    .map_err(|e| sql_err(ctx, "prepare", e))?;
                st.query(params![cutoff.seconds(), limit])
            }
            Some((ts, rowid)) => {
                st = self
                    .conn
                    .prepare_cached(SCAN_AFTER)
                    .map_err(|e| sql_err(ctx, "prepare", e))?;
                st.query(params![cutoff.seconds(), limit, ts.seconds(), rowid])
            }
        }
        .map_err(|e| sql_err(ctx, "scan history", e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| sql_err(ctx, "read row", e))? {
            let ts = real_at(row, 0, ctx, T_HIST, "?")?;
            let rowid = int_at(row, 1, ctx, T_HIST, "?")?;
            let key = opt_str_at(row, 2, ctx, T_HIST, "?")?.unwrap_or_default();
            out.push(((TimeKey::from_seconds(ts), rowid), InvocationId::new(key)));
        }
        Ok(out)
    }

    fn nodes(&mut self, ids: &[InvocationId]) -> Result<Vec<PruneNode>> {
        ids.iter().map(|id| self.node(id)).collect()
    }

    fn remove(&mut self, ids: &[InvocationId], dry_run: bool) -> Result<PruneCounts> {
        let mut c = PruneCounts::default();
        let set: HashSet<&InvocationId> = ids.iter().collect();
        for id in ids {
            let mut n = [0u64; 6];
            for (slot, (count, delete)) in n.iter_mut().zip(BY_ID) {
                *slot = if dry_run {
                    self.count(count, id)?
                } else {
                    self.delete(delete, id)?
                };
            }
            c.invocations += n[0];
            c.history += n[1];
            c.results += n[2];
            c.exceptions += n[3];
            c.workflow_runs += n[4];
            c.workflow_data += n[5];
            c.sub_invocations += if dry_run {
                let mut to = Vec::new();
                self.linked(SUBS_TO, id, &mut to)?;
                let from_others = to.iter().filter(|w| !set.contains(w)).count() as u64;
                self.count(SUBS_FROM_COUNT, id)? + from_others
            } else {
                self.delete(SUBS_DELETE, id)?
            };
        }
        Ok(c)
    }
}
