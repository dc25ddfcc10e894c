//! Reads for watching a store (what `taskstate serve` shows): every invocation's *latest
//! status* — the status of the newest history row stored under its id, by
//! (time key, insertion order) — listed newest first with filters, and
//! counted by status.
//!
//! These are the queries a monitor asks on every page, so an engine answers
//! them from an index it keeps current as history is written (SQLite and
//! PostgreSQL maintain a latest-status table with triggers, so rows pynenc
//! itself writes are covered too), never by scanning the store.
//!
//! ```
//! use taskstate_core::monitor::InvocationFilter;
//! use taskstate_core::*;
//! # fn demo(b: &dyn StateBackend) -> Result<()> {
//! let running = InvocationFilter { status: Some(InvocationStatus::Running), ..Default::default() };
//! let page = b.list_invocations(&running, None, 50)?;
//! for s in &page.items {
//!     assert_eq!(s.status, Some(InvocationStatus::Running));
//! }
//! // The next page starts after the last row of this one.
//! if let Some(next) = &page.next {
//!     let _more = b.list_invocations(&running, Some(next), 50)?;
//! }
//! # Ok(()) }
//! ```

use crate::backend::Cursor;
use crate::error::{Error, Result};
use crate::ids::{InvocationId, TaskId};
use crate::status::InvocationStatus;
use crate::time::{TimeKey, TimeRange};

/// Which invocations [`list_invocations`](crate::StateBackend::list_invocations)
/// returns. Every field set must match (AND); the default matches all.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InvocationFilter {
    /// The latest status.
    pub status: Option<InvocationStatus>,
    /// The invocation's task.
    pub task: Option<TaskId>,
    /// The invocation's workflow id.
    pub workflow: Option<InvocationId>,
    /// The latest row's time key lies in this range (inclusive).
    pub range: Option<TimeRange>,
}

/// One invocation as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvocationSummary {
    /// The invocation.
    pub invocation_id: InvocationId,
    /// Its task.
    pub task_id: TaskId,
    /// Its workflow (its own id for a workflow root).
    pub workflow_id: InvocationId,
    /// The latest status; `None` when the stored status text is not one
    /// this version knows (the row is still listed, never hidden).
    pub status: Option<InvocationStatus>,
    /// The latest row's time key.
    pub time_key: TimeKey,
}

/// How many invocations have each latest status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// Per status text as stored, ascending by text; a status this version
    /// does not know is counted under its own text.
    pub by_status: Vec<(String, u64)>,
}

impl StatusCounts {
    /// The count for `status` (0 if none).
    #[must_use]
    pub fn get(&self, status: InvocationStatus) -> u64 {
        self.by_status
            .iter()
            .find(|(s, _)| s == status.as_str())
            .map_or(0, |(_, n)| *n)
    }

    /// Every key with history (invocations and orphan keys alike).
    #[must_use]
    pub fn total(&self) -> u64 {
        self.by_status.iter().map(|(_, n)| n).sum()
    }

    /// Builds counts from (status text, count) pairs in any order, merging
    /// repeats and dropping zeros.
    #[must_use]
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, u64)>) -> Self {
        let mut map = std::collections::BTreeMap::<String, u64>::new();
        for (s, n) in pairs {
            *map.entry(s).or_default() += n;
        }
        StatusCounts {
            by_status: map.into_iter().filter(|(_, n)| *n > 0).collect(),
        }
    }
}

/// A validated listing request as an engine receives it (see
/// [`crate::engine::Engine::list_invocations`]): rows ordered by (time key,
/// invocation id) *descending*, strictly after `after`, at most `fetch`.
#[derive(Clone, Debug)]
pub struct ListQuery {
    /// The filter; its range is already split into `lo`/`hi`.
    pub status: Option<InvocationStatus>,
    /// The task filter.
    pub task: Option<TaskId>,
    /// The workflow filter.
    pub workflow: Option<InvocationId>,
    /// Lowest latest time key (inclusive).
    pub lo: Option<TimeKey>,
    /// Highest latest time key (inclusive).
    pub hi: Option<TimeKey>,
    /// Resume strictly after (below) this position.
    pub after: Option<(TimeKey, InvocationId)>,
    /// Rows to fetch: the page size plus one.
    pub fetch: usize,
}

impl ListQuery {
    /// [`ListQuery::fetch`] as an SQL `LIMIT`.
    #[must_use]
    pub fn fetch_i64(&self) -> i64 {
        i64::try_from(self.fetch).unwrap_or(i64::MAX)
    }

    /// Whether the request filters on what only the latest row or the
    /// invocation knows (status, task, workflow). When it does not, the
    /// newest-first walk can follow the history's own time index, keeping
    /// each key's latest row: SQL engines need no time index of their own
    /// on the latest rows (one less index for every history write).
    #[must_use]
    pub fn filters_attributes(&self) -> bool {
        self.status.is_some() || self.task.is_some() || self.workflow.is_some()
    }

    /// Whether a row at `(key, id)` with these attributes is selected
    /// (engines that filter in code use this; SQL engines say the same in
    /// their WHERE clause).
    #[must_use]
    pub fn selects(&self, s: &InvocationSummary) -> bool {
        self.status.is_none_or(|st| s.status == Some(st))
            && self.task.as_ref().is_none_or(|t| *t == s.task_id)
            && self.workflow.as_ref().is_none_or(|w| *w == s.workflow_id)
            && self.lo.is_none_or(|lo| s.time_key >= lo)
            && self.hi.is_none_or(|hi| s.time_key <= hi)
            && self
                .after
                .as_ref()
                .is_none_or(|(k, id)| (s.time_key, &s.invocation_id) < (*k, id))
    }
}

/// How an SQL engine names the columns a listing filters and orders on
/// (`table.column` as its query's FROM clause aliases them).
#[derive(Clone, Copy, Debug)]
pub struct LatestColumns {
    /// The key (invocation id) of the latest row.
    pub id: &'static str,
    /// Its time key.
    pub time: &'static str,
    /// Its status text.
    pub status: &'static str,
    /// The invocation's task key.
    pub task: &'static str,
    /// The invocation's workflow id.
    pub workflow: &'static str,
}

/// A value bound to a listing's SQL.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlParam {
    /// Text.
    Text(String),
    /// A time key, in seconds.
    Real(f64),
    /// A count.
    Int(i64),
}

impl ListQuery {
    /// The rest of a listing's SQL after `WHERE <true>`: one ` AND …`
    /// condition per filter present (so each combination is its own
    /// statement, and the engine's planner picks the index that serves
    /// it), the keyset condition, `ORDER BY` time and id descending and
    /// `LIMIT`; `placeholder(n)` writes the n-th (1-based) parameter
    /// (`?n`, `$n`). Returns the SQL and the parameters in order.
    ///
    /// ```
    /// use taskstate_core::monitor::{LatestColumns, ListQuery, SqlParam};
    /// let cols = LatestColumns { id: "l.id", time: "l.ts", status: "l.st", task: "l.task", workflow: "i.wf" };
    /// let q = ListQuery { status: Some(taskstate_core::InvocationStatus::Running), task: None,
    ///     workflow: None, lo: None, hi: None, after: None, fetch: 51 };
    /// let (sql, params) = q.sql_tail(&cols, |n| format!("${n}"));
    /// assert_eq!(sql, " AND l.st = $1 ORDER BY l.ts DESC, l.id DESC LIMIT $2");
    /// assert_eq!(params, [SqlParam::Text("running".into()), SqlParam::Int(51)]);
    /// ```
    #[must_use]
    pub fn sql_tail(
        &self,
        c: &LatestColumns,
        placeholder: impl Fn(usize) -> String,
    ) -> (String, Vec<SqlParam>) {
        let mut sql = String::new();
        let mut params = Vec::new();
        let mut cond = |sql: &mut String, column: &str, op: &str, p: SqlParam| {
            params.push(p);
            sql.push_str(&format!(" AND {column} {op} {}", placeholder(params.len())));
        };
        if let Some(s) = self.status {
            cond(
                &mut sql,
                c.status,
                "=",
                SqlParam::Text(s.as_str().to_owned()),
            );
        }
        if let Some(t) = &self.task {
            cond(&mut sql, c.task, "=", SqlParam::Text(t.key().to_owned()));
        }
        if let Some(w) = &self.workflow {
            cond(
                &mut sql,
                c.workflow,
                "=",
                SqlParam::Text(w.as_str().to_owned()),
            );
        }
        if let Some(lo) = self.lo {
            cond(&mut sql, c.time, ">=", SqlParam::Real(lo.seconds()));
        }
        if let Some(hi) = self.hi {
            cond(&mut sql, c.time, "<=", SqlParam::Real(hi.seconds()));
        }
        if let Some((key, id)) = &self.after {
            // Spelled out rather than as a row value, so a time index
            // serves the bound on both engines.
            params.push(SqlParam::Real(key.seconds()));
            params.push(SqlParam::Text(id.as_str().to_owned()));
            let (t, i) = (placeholder(params.len() - 1), placeholder(params.len()));
            sql.push_str(&format!(
                " AND {time} <= {t} AND ({time} < {t} OR {id} < {i})",
                time = c.time,
                id = c.id
            ));
        }
        params.push(SqlParam::Int(self.fetch_i64()));
        sql.push_str(&format!(
            " ORDER BY {} DESC, {} DESC LIMIT {}",
            c.time,
            c.id,
            placeholder(params.len())
        ));
        (sql, params)
    }
}

/// A request for workflow runs as an engine receives it: of one type or
/// all, ascending by workflow id, strictly after `after`, at most `fetch`
/// (`None`: all).
#[derive(Clone, Copy, Debug)]
pub struct RunsQuery<'a> {
    /// Only runs of this type.
    pub workflow_type: Option<&'a TaskId>,
    /// Resume strictly after this workflow id.
    pub after: Option<&'a InvocationId>,
    /// Rows to fetch (`None`: every row).
    pub fetch: Option<usize>,
}

impl RunsQuery<'_> {
    /// [`RunsQuery::fetch`] as an SQL `LIMIT` (SQLite's -1: no limit).
    #[must_use]
    pub fn limit_or_all(&self) -> i64 {
        self.fetch
            .map_or(-1, |f| i64::try_from(f).unwrap_or(i64::MAX))
    }
}

/// The listing order: newest latest row first, ties by id descending.
pub fn newest_first(a: &InvocationSummary, b: &InvocationSummary) -> std::cmp::Ordering {
    (b.time_key, &b.invocation_id).cmp(&(a.time_key, &a.invocation_id))
}

impl Cursor {
    /// A cursor after a listed invocation (see [`ListQuery`]).
    #[must_use]
    pub fn after_latest(key: TimeKey, id: &InvocationId) -> Self {
        Cursor::from_token(format!("l:{:016x}:{id}", key.seconds().to_bits()))
    }

    /// The position of a cursor made by [`Cursor::after_latest`];
    /// `InvalidInput` for any other token.
    pub fn latest_position(&self) -> Result<(TimeKey, InvocationId)> {
        let token = self.token();
        let bad = || Error::invalid(format!("cursor {token:?} is not an invocation-list cursor"));
        let rest = token.strip_prefix("l:").ok_or_else(bad)?;
        let (bits, id) = rest.split_once(':').ok_or_else(bad)?;
        if bits.len() != 16 || id.is_empty() {
            return Err(bad());
        }
        let bits = u64::from_str_radix(bits, 16).map_err(|_| bad())?;
        let key = f64::from_bits(bits);
        if !key.is_finite() {
            return Err(bad());
        }
        Ok((TimeKey::from_seconds(key), InvocationId::new(id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_cursor_round_trips_and_rejects_others() {
        let id = InvocationId::new("a:b:c");
        let c = Cursor::after_latest(TimeKey::from_seconds(1.5), &id);
        assert_eq!(
            c.latest_position().ok(),
            Some((TimeKey::from_seconds(1.5), id))
        );
        for bad in [
            "",
            "l:",
            "l:zz:x",
            "h:0000000000000000:1",
            "l:7ff8000000000000:x",
            "l:3ff0000000000000:",
        ] {
            let err = Cursor::from_token(bad).latest_position();
            assert!(matches!(err, Err(Error::InvalidInput(_))), "{bad}: {err:?}");
        }
    }

    #[test]
    fn counts_merge_and_drop_zeros() {
        let c = StatusCounts::from_pairs([
            ("success".into(), 2),
            ("running".into(), 1),
            ("success".into(), 3),
            ("failed".into(), 0),
        ]);
        assert_eq!(
            c.by_status,
            vec![("running".to_string(), 1), ("success".to_string(), 5)]
        );
        assert_eq!(c.get(InvocationStatus::Success), 5);
        assert_eq!(c.get(InvocationStatus::Failed), 0);
        assert_eq!(c.total(), 6);
    }
}
