//! The bulk path (SPEC §9): every stored row of every kind, read from one
//! consistent snapshot page by page and written a page per transaction.
//! Export, import, copy and the counts of `inspect` are built on it, so a
//! store of any size moves in bounded memory.
//!
//! The kinds of record are listed once, in [`Kind::ALL`]; every engine
//! implements [`StateBackend::snapshot`](crate::StateBackend::snapshot) and
//! [`StateBackend::write_rows`](crate::StateBackend::write_rows), and the
//! conformance suite checks both against the point operations.
//!
//! ```
//! use taskstate_core::*;
//! /// Copies every row of `from` into `to`, a page per transaction.
//! fn copy_all(from: &dyn StateBackend, to: &dyn StateBackend) -> Result<()> {
//!     let mut snap = from.snapshot()?;
//!     for kind in Kind::ALL {
//!         let mut after = None;
//!         loop {
//!             let page = snap.page(kind, after.as_ref(), 1000)?;
//!             to.write_rows(&page.items)?;
//!             match page.next {
//!                 Some(c) => after = Some(c),
//!                 None => break,
//!             }
//!         }
//!     }
//!     Ok(())
//! }
//! ```

use crate::backend::{Cursor, HistoryRow, Page, StoredHistory};
use crate::dto::{AppInfo, CallDTO, InvocationDTO, RunnerContext, WorkflowIdentity};
use crate::error::{Error, Result};
use crate::ids::{InvocationId, RunnerId};
use crate::rules::{
    check_app_info, check_history_row, check_invocation_id, check_invocation_pair,
    check_runner_context, check_sub_invocation, check_workflow, check_workflow_data,
};

/// The kinds of record a store holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// App infos, by app id.
    AppInfo,
    /// Runner contexts, one row per runner (its parent by id), by runner id.
    RunnerContext,
    /// Invocations with their calls, by invocation id.
    Invocation,
    /// History rows, in insertion order (so a copy keeps the order of rows
    /// that share a time key).
    History,
    /// Results, by invocation id.
    Result,
    /// Exceptions, by invocation id.
    Exception,
    /// Workflow runs, by workflow id.
    WorkflowRun,
    /// Workflow sub-invocation links, by (workflow id, sub-invocation id).
    SubInvocation,
    /// Workflow data, by (workflow id, key).
    WorkflowData,
}

impl Kind {
    /// Every kind, in the order a copy writes them.
    pub const ALL: [Kind; 9] = [
        Kind::AppInfo,
        Kind::RunnerContext,
        Kind::Invocation,
        Kind::History,
        Kind::Result,
        Kind::Exception,
        Kind::WorkflowRun,
        Kind::SubInvocation,
        Kind::WorkflowData,
    ];

    /// The kind's name in reports (plural, lower case).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Kind::AppInfo => "app infos",
            Kind::RunnerContext => "runner contexts",
            Kind::Invocation => "invocations",
            Kind::History => "history records",
            Kind::Result => "results",
            Kind::Exception => "exceptions",
            Kind::WorkflowRun => "workflow runs",
            Kind::SubInvocation => "workflow sub-invocations",
            Kind::WorkflowData => "workflow data",
        }
    }

    /// Whether rows of this kind are keyed by an invocation id, so
    /// [`Snapshot::keyed`] serves them.
    #[must_use]
    pub fn keyed_by_invocation(self) -> bool {
        matches!(self, Kind::History | Kind::Result | Kind::Exception)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One stored row of any kind, as the bulk path reads and writes it.
#[derive(Clone, Debug, PartialEq)]
pub enum Row {
    /// An invocation and its call.
    Invocation(Box<(InvocationDTO, CallDTO)>),
    /// A history row: the key it is stored under and the stored record
    /// with its time key (SPEC §3).
    History(InvocationId, StoredHistory),
    /// A result.
    Result(InvocationId, String),
    /// An exception.
    Exception(InvocationId, String),
    /// A workflow run.
    WorkflowRun(WorkflowIdentity),
    /// A (workflow id, sub-invocation id) link.
    SubInvocation(InvocationId, InvocationId),
    /// A (workflow id, key, value) entry of workflow data.
    WorkflowData(InvocationId, String, String),
    /// An app info.
    AppInfo(AppInfo),
    /// One runner-context row: the context without its parent, and the
    /// parent's id (the chain is not followed, so a row is O(1)).
    RunnerContext(RunnerContext, Option<RunnerId>),
}

impl Row {
    /// The row's kind.
    #[must_use]
    pub fn kind(&self) -> Kind {
        match self {
            Row::Invocation(_) => Kind::Invocation,
            Row::History(..) => Kind::History,
            Row::Result(..) => Kind::Result,
            Row::Exception(..) => Kind::Exception,
            Row::WorkflowRun(_) => Kind::WorkflowRun,
            Row::SubInvocation(..) => Kind::SubInvocation,
            Row::WorkflowData(..) => Kind::WorkflowData,
            Row::AppInfo(_) => Kind::AppInfo,
            Row::RunnerContext(..) => Kind::RunnerContext,
        }
    }

    /// The invocation id a row of a kind [keyed by invocation](Kind::keyed_by_invocation)
    /// is stored under.
    #[must_use]
    pub fn invocation_key(&self) -> Option<&InvocationId> {
        match self {
            Row::History(k, _) | Row::Result(k, _) | Row::Exception(k, _) => Some(k),
            Row::Invocation(p) => Some(&p.0.invocation_id),
            _ => None,
        }
    }

    /// A history row as [`StateBackend::add_history_rows`](crate::StateBackend::add_history_rows)
    /// takes it; `None` for other kinds.
    #[must_use]
    pub fn as_history_row(&self) -> Option<HistoryRow<'_>> {
        match self {
            Row::History(key, h) => {
                Some(HistoryRow::under(key, &h.record).at_time_key(h.explicit_time_key()))
            }
            _ => None,
        }
    }

    /// The input rules of SPEC §4 for this row, as the point operation
    /// writing it checks them; engines call it for every row of
    /// [`StateBackend::write_rows`](crate::StateBackend::write_rows).
    pub fn check(&self) -> Result<()> {
        match self {
            Row::Invocation(p) => check_invocation_pair(&p.0, &p.1),
            Row::History(..) => self
                .as_history_row()
                .map_or(Ok(()), |r| check_history_row(&r)),
            Row::Result(id, _) | Row::Exception(id, _) => check_invocation_id(id),
            Row::WorkflowRun(w) => check_workflow(w),
            Row::SubInvocation(w, s) => check_sub_invocation(w, s),
            Row::WorkflowData(w, k, _) => check_workflow_data(w, k),
            Row::AppInfo(a) => check_app_info(a),
            Row::RunnerContext(c, parent) => {
                check_runner_context(c)?;
                if c.parent.is_some() {
                    return Err(Error::invalid(format!(
                        "runner context row {:?}: a row names its parent by id, not by value",
                        c.runner_id.as_str()
                    )));
                }
                match parent {
                    Some(p) if p.as_str().is_empty() => Err(Error::invalid(format!(
                        "runner context row {:?}: empty parent runner id",
                        c.runner_id.as_str()
                    ))),
                    Some(p) if p == &c.runner_id => Err(Error::invalid(format!(
                        "runner context row {:?} names itself as its parent",
                        c.runner_id.as_str()
                    ))),
                    _ => Ok(()),
                }
            }
        }
    }
}

/// A range of invocation ids: after `after` (exclusive) up to `upto`
/// (inclusive); `None` leaves that side open.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRange {
    /// Exclusive lower bound.
    pub after: Option<InvocationId>,
    /// Inclusive upper bound.
    pub upto: Option<InvocationId>,
}

impl KeyRange {
    /// Every id.
    #[must_use]
    pub fn all() -> Self {
        Self::default()
    }

    /// Whether `id` is in the range.
    #[must_use]
    pub fn contains(&self, id: &InvocationId) -> bool {
        self.after.as_ref().is_none_or(|a| id > a) && self.upto.as_ref().is_none_or(|u| id <= u)
    }
}

/// A consistent, read-only view of a whole store: every call sees the
/// store as it was when the snapshot was taken, whatever is written
/// meanwhile (a SQLite read transaction, a PostgreSQL `REPEATABLE READ`
/// transaction, the memory engine's read locks). Drop it to release it.
pub trait Snapshot {
    /// Up to `limit` rows of `kind` after cursor `after` (from the start for
    /// `None`), in the kind's order (see [`Kind`]); `next` is `Some`
    /// exactly when more rows follow.
    fn page(&mut self, kind: Kind, after: Option<&Cursor>, limit: usize) -> Result<Page<Row>>;

    /// Every row of a kind [keyed by invocation](Kind::keyed_by_invocation)
    /// whose key is in `range`, ordered by key, then (history) by time key
    /// and insertion order: the order `get_history_rows` returns.
    /// `InvalidInput` for other kinds.
    fn keyed(&mut self, kind: Kind, range: &KeyRange) -> Result<Vec<Row>>;

    /// Every (parent id, child id) of invocations whose parent is in
    /// `range`, ascending.
    fn children(&mut self, range: &KeyRange) -> Result<Vec<(InvocationId, InvocationId)>>;

    /// How many rows of `kind` the snapshot holds.
    fn count(&mut self, kind: Kind) -> Result<u64>;

    /// Salvage mode (off by default): a row that cannot be decoded is
    /// skipped and kept, with its kind, for [`Snapshot::take_skipped`],
    /// instead of failing the read — for getting what can still be read out
    /// of a damaged store. Errors other than corrupt data still fail.
    fn set_salvage(&mut self, on: bool);

    /// The rows skipped in salvage mode since the last call: their kind and
    /// the `Corrupt` error naming table and key.
    fn take_skipped(&mut self) -> Vec<(Kind, Error)>;
}

/// Rows decoded from a query, each with the raw cursor of its key (`None`
/// when the stored key is not text), turned into a page of up to `limit`
/// rows: a row that failed to decode fails the page, or in salvage mode is
/// moved to `skipped`. The next cursor is the raw key of the last row
/// fetched within the page, decoded or not, so paging steps past a skipped
/// row; if that key is not text either, paging ends there and the rest of
/// the kind is reported as unread.
pub fn salvage_page(
    kind: Kind,
    fetched: Vec<(Option<Cursor>, Result<Row>)>,
    limit: usize,
    salvage: bool,
    skipped: &mut Vec<(Kind, Error)>,
) -> Result<Page<Row>> {
    let more = fetched.len() > limit;
    let mut items = Vec::with_capacity(fetched.len().min(limit));
    let mut last_cursor = None;
    for (cursor, row) in fetched.into_iter().take(limit) {
        last_cursor = cursor;
        match row {
            Ok(r) => items.push(r),
            Err(e) if salvage && e.kind() == crate::ErrorKind::Corrupt => skipped.push((kind, e)),
            Err(e) => return Err(e),
        }
    }
    let next = match (more, last_cursor) {
        (false, _) => None,
        (true, Some(c)) => Some(c),
        (true, None) => {
            skipped.push((
                kind,
                Error::corrupt(
                    kind.name(),
                    "a row whose key is not text ends the walk: later rows of this kind were not read",
                ),
            ));
            None
        }
    };
    Ok(Page { items, next })
}

/// `rows` with, in salvage mode, the corrupt ones moved to `skipped`.
pub fn salvage_rows<T>(
    kind: Kind,
    rows: Vec<Result<T>>,
    salvage: bool,
    skipped: &mut Vec<(Kind, Error)>,
) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        match r {
            Ok(v) => out.push(v),
            Err(e) if salvage && e.kind() == crate::ErrorKind::Corrupt => skipped.push((kind, e)),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Every page of `kind` in `snap`, `limit` rows at a time, handed to `f` in
/// order (the keyset walk every whole-kind read shares).
pub fn for_each_page(
    snap: &mut dyn Snapshot,
    kind: Kind,
    limit: usize,
    mut f: impl FnMut(Page<Row>) -> Result<()>,
) -> Result<()> {
    let mut after: Option<Cursor> = None;
    loop {
        let page = snap.page(kind, after.as_ref(), limit)?;
        let next = page.next.clone();
        f(page)?;
        match next {
            Some(c) => after = Some(c),
            None => return Ok(()),
        }
    }
}

/// The refusal of [`Snapshot::keyed`] for a kind not keyed by invocation.
#[must_use]
pub fn not_keyed(kind: Kind) -> Error {
    Error::invalid(format!(
        "{kind} are not keyed by invocation id: page through them instead"
    ))
}

/// A cursor after a row whose position is `parts` (the bulk path's keyset
/// positions: an id, a pair of ids, or an engine's insertion number).
#[must_use]
pub fn cursor_after(parts: &[&str]) -> Cursor {
    Cursor::from_token(format!(
        "b:{}",
        serde_json::Value::from(parts.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>())
    ))
}

/// The parts of a cursor made by [`cursor_after`], checked to be `n` of
/// them; `InvalidInput` for any other token.
pub fn cursor_parts(cursor: &Cursor, n: usize) -> Result<Vec<String>> {
    let bad = || {
        Error::invalid(format!(
            "cursor {:?} is not a bulk-read cursor",
            cursor.token()
        ))
    };
    let json = cursor.token().strip_prefix("b:").ok_or_else(bad)?;
    let parts: Vec<String> = serde_json::from_str(json).map_err(|_| bad())?;
    if parts.len() == n {
        Ok(parts)
    } else {
        Err(bad())
    }
}

/// The page of `rows` (fetched up to `limit + 1`) with the cursor of its
/// last row made by `position`.
pub fn page_of(rows: Vec<Row>, limit: usize, position: impl Fn(&Row) -> Cursor) -> Page<Row> {
    Page::of(rows, limit, position)
}

/// The cursor position of a row of any kind but history (whose position is
/// the engine's insertion number): its key parts.
#[must_use]
pub fn key_cursor(row: &Row) -> Cursor {
    match row {
        Row::Invocation(p) => cursor_after(&[p.0.invocation_id.as_str()]),
        Row::History(k, _) | Row::Result(k, _) | Row::Exception(k, _) => {
            cursor_after(&[k.as_str()])
        }
        Row::WorkflowRun(w) => cursor_after(&[w.workflow_id.as_str()]),
        Row::SubInvocation(w, s) => cursor_after(&[w.as_str(), s.as_str()]),
        Row::WorkflowData(w, k, _) => cursor_after(&[w.as_str(), k]),
        Row::AppInfo(a) => cursor_after(&[a.app_id.as_str()]),
        Row::RunnerContext(c, _) => cursor_after(&[c.runner_id.as_str()]),
    }
}

/// How many key parts a cursor of `kind` has.
#[must_use]
pub fn cursor_arity(kind: Kind) -> usize {
    match kind {
        Kind::SubInvocation | Kind::WorkflowData => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_any_text() {
        let c = cursor_after(&["a\"b", "c:d\u{1}"]);
        assert_eq!(
            cursor_parts(&c, 2).ok(),
            Some(vec!["a\"b".to_owned(), "c:d\u{1}".to_owned()])
        );
        assert!(cursor_parts(&c, 1).is_err());
        assert!(cursor_parts(&Cursor::from_token("i:x"), 1).is_err());
    }

    #[test]
    fn key_ranges_are_half_open() {
        let r = KeyRange {
            after: Some(InvocationId::new("b")),
            upto: Some(InvocationId::new("d")),
        };
        let ids = ["a", "b", "c", "d", "e"].map(InvocationId::new);
        let inside: Vec<_> = ids
            .iter()
            .filter(|i| r.contains(i))
            .map(InvocationId::as_str)
            .collect();
        assert_eq!(inside, ["c", "d"]);
        assert!(KeyRange::all().contains(&InvocationId::new("")));
    }

    #[test]
    fn salvage_pages_step_past_skipped_rows() {
        let row = |id: &str| Row::Result(InvocationId::new(id), "1".into());
        let bad = || Err(Error::corrupt("t[x]", "bad"));
        let c = |id: &str| Some(cursor_after(&[id]));
        let fetched = || {
            vec![
                (c("a"), Ok(row("a"))),
                (c("b"), bad()),
                (c("c"), Ok(row("c"))),
            ]
        };
        // Not salvaging: the corrupt row fails the page.
        let mut skipped = Vec::new();
        assert!(salvage_page(Kind::Result, fetched(), 2, false, &mut skipped).is_err());
        // Salvaging: skipped, and the cursor is the skipped row's key.
        let page = salvage_page(Kind::Result, fetched(), 2, true, &mut skipped)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(page.items, vec![row("a")]);
        assert_eq!(page.next, c("b"));
        assert_eq!(skipped.len(), 1);
        // A key that is not text ends the walk, reported.
        let mut skipped = Vec::new();
        let fetched = vec![
            (c("a"), Ok(row("a"))),
            (None, bad()),
            (c("z"), Ok(row("z"))),
        ];
        let page = salvage_page(Kind::Result, fetched, 2, true, &mut skipped)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(page.next, None);
        assert_eq!(skipped.len(), 2);
        // Errors other than corrupt data still fail.
        let mut skipped = Vec::new();
        let lost: Vec<(Option<Cursor>, Result<Row>)> =
            vec![(c("a"), Err(Error::invalid("not corrupt")))];
        assert!(salvage_page(Kind::Result, lost, 2, true, &mut skipped).is_err());
    }

    #[test]
    fn every_kind_is_listed_once_with_its_name() {
        let names: std::collections::BTreeSet<_> = Kind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), 9);
        assert_eq!(
            Kind::ALL.iter().filter(|k| k.keyed_by_invocation()).count(),
            3
        );
    }
}
