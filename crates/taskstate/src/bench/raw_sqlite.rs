//! The raw-SQLite baseline: the engine's own SQL statements on a plain
//! rusqlite connection with the engine's pragmas, one statement per
//! operation (autocommit), cached statements, parameters encoded before
//! timing, and columns read as strings without decoding. It is the limit
//! an engine built on SQLite can approach.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use rusqlite::{Connection, params};
use taskstate_core::{Error, Result};
use taskstate_sqlite::sql;
use taskstate_sqlite::{SqliteBackend, SqliteOptions};

use super::{BenchTarget, Op, Read, Workload};

thread_local! {
    /// This thread's connection, tagged with the baseline it belongs to:
    /// each thread has its own, as separate processes would, and the hot
    /// path takes no lock.
    static CONN: RefCell<Option<(usize, Connection)>> = const { RefCell::new(None) };
}

use super::Encoded;

/// The raw baseline on a database file.
pub struct RawSqlite {
    path: PathBuf,
    options: SqliteOptions,
    encoded: Encoded,
    id: usize,
}

fn e(what: &str, err: rusqlite::Error) -> Error {
    Error::Storage {
        message: format!("raw sqlite: {what}: {err}"),
        source: Some(Box::new(err)),
    }
}

impl RawSqlite {
    /// Creates the baseline's database at `path` (schema made by the
    /// engine itself, so tables and indexes are identical) and encodes
    /// the workload's parameters.
    pub fn create(path: PathBuf, options: SqliteOptions, w: &Workload) -> Result<Self> {
        drop(SqliteBackend::raw_connection(&path, &options)?);
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        Ok(Self {
            path,
            options,
            encoded: Encoded::new(w),
            id: NEXT.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Runs `f` on this thread's connection (each thread its own, as
    /// separate processes would have).
    fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        CONN.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.as_ref().is_none_or(|(id, _)| *id != self.id) {
                let c = SqliteBackend::raw_connection(&self.path, &self.options)?;
                *slot = Some((self.id, c));
            }
            match slot.as_ref() {
                Some((_, c)) => f(c),
                None => Err(Error::invalid("raw sqlite: no connection")),
            }
        })
    }

    fn strings(c: &Connection, sql: &str, p: impl rusqlite::Params) -> Result<Vec<String>> {
        let mut st = c.prepare_cached(sql).map_err(|x| e("prepare", x))?;
        let rows = st
            .query_map(p, |r| r.get::<_, String>(0))
            .map_err(|x| e("query", x))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|x| e("row", x))
    }
}

impl Drop for RawSqlite {
    fn drop(&mut self) {
        // Close this thread's connection to the file (worker threads'
        // connections closed when their threads ended).
        let _ = CONN.try_with(|cell| {
            if let Ok(mut slot) = cell.try_borrow_mut()
                && slot.as_ref().is_some_and(|(id, _)| *id == self.id)
            {
                *slot = None;
            }
        });
    }
}

impl BenchTarget for RawSqlite {
    fn upsert(&self, _: &Workload, i: usize) -> Result<()> {
        let p = &self.encoded.inv[i];
        self.with(|c| {
            c.prepare_cached(sql::UPSERT_INVOCATION)
                .and_then(|mut st| {
                    st.execute(params![
                        p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8]
                    ])
                })
                .map(drop)
                .map_err(|x| e("upsert", x))
        })
    }
    fn add_history(&self, _: &Workload, r: usize) -> Result<()> {
        let (id, ts, _, status, json) = &self.encoded.hist[r];
        self.with(|c| {
            c.prepare_cached(sql::INSERT_HISTORY)
                .and_then(|mut st| st.execute(params![id, ts, status, json]))
                .map(drop)
                .map_err(|x| e("history", x))
        })
    }
    fn set_result(&self, w: &Workload, i: usize) -> Result<()> {
        let id = w.pairs[i].0.invocation_id.as_str();
        self.with(|c| {
            c.prepare_cached(sql::SET_RESULT)
                .and_then(|mut st| st.execute(params![id, w.results[i]]))
                .map(drop)
                .map_err(|x| e("result", x))
        })
    }
    fn read_invocation(&self, _: &Workload, i: usize) -> Result<Read> {
        let p = &self.encoded.inv[i];
        self.with(|c| {
            let mut st = c
                .prepare_cached(sql::GET_INVOCATION)
                .map_err(|x| e("prepare", x))?;
            let row = st
                .query_row([&p[0]], |r| {
                    Ok([
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                    ])
                })
                .map_err(|x| e("get invocation", x))?;
            Ok(Read::Columns(Box::new(row)))
        })
    }
    fn read_history(&self, w: &Workload, i: usize) -> Result<Read> {
        let id = w.pairs[i].0.invocation_id.as_str();
        self.with(|c| Self::strings(c, sql::GET_HISTORY, [id]).map(Read::Strings))
    }
    fn read_result(&self, w: &Workload, i: usize) -> Result<Read> {
        let id = w.pairs[i].0.invocation_id.as_str();
        self.with(|c| Self::strings(c, sql::GET_RESULT, [id]).map(Read::Strings))
    }
    fn read_children(&self, w: &Workload, i: usize) -> Result<Read> {
        let id = w.pairs[i].0.invocation_id.as_str();
        self.with(|c| Self::strings(c, sql::CHILDREN, [id]).map(Read::Strings))
    }
    fn read_matches(&self, w: &Workload, op: Op, i: usize, got: &Read) -> bool {
        self.encoded.read_matches(w, op, i, got)
    }
    fn scan_ids(&self, w: &Workload) -> Result<super::ScannedIds> {
        let (lo, hi) = (w.range.start.key().seconds(), w.range.end.key().seconds());
        let page = taskstate_core::DEFAULT_PAGE_SIZE as i64;
        self.with(|c| {
            let mut out: Vec<String> = Vec::with_capacity(w.n());
            loop {
                let batch = match out.last() {
                    None => Self::strings(c, sql::IDS_IN_RANGE_FIRST, params![lo, hi, page])?,
                    Some(last) => {
                        Self::strings(c, sql::IDS_IN_RANGE_AFTER, params![lo, hi, page, last])?
                    }
                };
                let done = (batch.len() as i64) < page;
                out.extend(batch);
                if done {
                    return Ok(super::ScannedIds::Strings(out));
                }
            }
        })
    }
    fn scan_history(&self, w: &Workload) -> Result<super::Scanned> {
        let (lo, hi) = (w.range.start.key().seconds(), w.range.end.key().seconds());
        let page = taskstate_core::DEFAULT_PAGE_SIZE as i64;
        self.with(|c| {
            let mut out = Vec::with_capacity(w.histories.len());
            let mut after: Option<(f64, i64)> = None;
            loop {
                let sql_text = if after.is_some() {
                    sql::HISTORY_IN_RANGE_AFTER
                } else {
                    sql::HISTORY_IN_RANGE_FIRST
                };
                let mut st = c.prepare_cached(sql_text).map_err(|x| e("prepare", x))?;
                let map = |r: &rusqlite::Row<'_>| {
                    Ok((
                        r.get::<_, f64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                };
                let rows: Vec<(f64, i64, String)> = match after {
                    None => st.query_map(params![lo, hi, page], map),
                    Some((t, id)) => st.query_map(params![lo, hi, page, t, id], map),
                }
                .and_then(|rows| rows.collect())
                .map_err(|x| e("scan", x))?;
                let done = (rows.len() as i64) < page;
                after = rows.last().map(|(t, id, _)| (*t, *id));
                out.extend(rows.into_iter().map(|(_, _, j)| j));
                if done {
                    return Ok(super::Scanned::Json(out));
                }
            }
        })
    }
}
