//! The raw-PostgreSQL baseline: the engine's own statements on a plain
//! client per thread, prepared once, one statement per operation
//! (autocommit), parameters encoded before timing, columns read as
//! strings without decoding.

use std::collections::HashMap;
use std::sync::Mutex;

use postgres::types::ToSql;
use postgres::{Client, NoTls, Statement};
use taskstate_core::{Error, Result, StateBackend};
use taskstate_postgres::{PostgresBackend, PostgresOptions, Statements};

use super::{BenchTarget, Encoded, Op, Read, Workload};

/// A client with its prepared statements.
type Conn = (Client, HashMap<String, Statement>);

/// The raw baseline on a PostgreSQL schema of its own.
pub struct RawPostgres {
    url: String,
    schema: String,
    sql: Statements,
    encoded: Encoded,
    /// Idle clients: a thread takes one per operation (the lock costs
    /// nothing next to a round trip). Not thread-locals: a client
    /// dropped during thread exit would need tokio's already destroyed
    /// thread-local context.
    idle: Mutex<Vec<Conn>>,
}

/// Column `i` of a row the baseline wrote itself; a type it does not hold
/// is an error, not a panic.
fn col_of<T: for<'r> postgres::types::FromSql<'r>>(r: &postgres::Row, i: usize) -> Result<T> {
    r.try_get(i).map_err(|x| e("read column", x))
}

fn e(what: &str, err: postgres::Error) -> Error {
    Error::Storage {
        message: format!("raw postgres: {what}: {err}"),
        source: Some(Box::new(err)),
    }
}

impl RawPostgres {
    /// Creates the baseline's tables in `schema` (by the engine itself,
    /// so they are identical) and encodes the workload's parameters.
    pub fn create(url: &str, schema: &str, w: &Workload) -> Result<Self> {
        let options = PostgresOptions::default()
            .schema(schema.to_owned())
            .max_connections(1);
        let engine = PostgresBackend::connect(url, &options)?;
        engine.purge()?;
        drop(engine);
        Ok(Self {
            url: url.to_owned(),
            schema: schema.to_owned(),
            sql: Statements::new(schema),
            encoded: Encoded::new(w),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Drops the baseline's schema.
    pub fn drop_schema(&self) -> Result<()> {
        let mut c = Client::connect(&self.url, NoTls).map_err(|x| e("connect", x))?;
        c.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            self.schema
        ))
        .map_err(|x| e("drop schema", x))
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Client, &mut HashMap<String, Statement>) -> Result<T>,
    ) -> Result<T> {
        let popped = self.idle.lock().ok().and_then(|mut v| v.pop());
        let mut conn = match popped {
            Some(c) => c,
            None => (
                Client::connect(&self.url, NoTls).map_err(|x| e("connect", x))?,
                HashMap::new(),
            ),
        };
        let out = f(&mut conn.0, &mut conn.1);
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
        out
    }

    fn run(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<postgres::Row>> {
        self.with(|c, cache| {
            let st = match cache.get(sql) {
                Some(st) => st.clone(),
                None => {
                    let st = c.prepare(sql).map_err(|x| e("prepare", x))?;
                    cache.insert(sql.to_owned(), st.clone());
                    st
                }
            };
            c.query(&st, params).map_err(|x| e("query", x))
        })
    }

    fn strings(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        col: usize,
    ) -> Result<Vec<String>> {
        self.run(sql, params)?
            .iter()
            .map(|r| col_of::<String>(r, col))
            .collect()
    }
}

impl BenchTarget for RawPostgres {
    fn upsert(&self, _: &Workload, i: usize) -> Result<()> {
        let p = &self.encoded.inv[i];
        self.run(
            &self.sql.upsert_invocation,
            &[
                &p[0], &p[1], &p[2], &p[3], &p[4], &p[5], &p[6], &p[7], &p[8],
            ],
        )
        .map(drop)
    }
    fn add_history(&self, _: &Workload, r: usize) -> Result<()> {
        let (id, ts, us, status, json) = &self.encoded.hist[r];
        self.run(&self.sql.insert_history, &[id, ts, us, status, json])
            .map(drop)
    }
    fn set_result(&self, w: &Workload, i: usize) -> Result<()> {
        let id = w.pairs[i].0.invocation_id.as_str();
        self.run(&self.sql.set_result, &[&id, &w.results[i]])
            .map(drop)
    }
    fn read_invocation(&self, _: &Workload, i: usize) -> Result<Read> {
        let p = &self.encoded.inv[i];
        let rows = self.run(&self.sql.get_invocation, &[&p[0]])?;
        let Some(r) = rows.first() else {
            // No row: nothing an invocation read can match.
            return Ok(Read::Strings(Vec::new()));
        };
        Ok(Read::Columns(Box::new([
            col_of(r, 0)?,
            col_of(r, 1)?,
            col_of(r, 2)?,
            col_of(r, 3)?,
            col_of(r, 4)?,
            col_of(r, 5)?,
        ])))
    }
    fn read_history(&self, w: &Workload, i: usize) -> Result<Read> {
        let id = w.pairs[i].0.invocation_id.as_str();
        self.strings(&self.sql.get_history, &[&id], 0)
            .map(Read::Strings)
    }
    fn read_result(&self, w: &Workload, i: usize) -> Result<Read> {
        let id = w.pairs[i].0.invocation_id.as_str();
        self.strings(&self.sql.get_result, &[&id], 0)
            .map(Read::Strings)
    }
    fn read_children(&self, w: &Workload, i: usize) -> Result<Read> {
        let id = w.pairs[i].0.invocation_id.as_str();
        self.strings(&self.sql.children, &[&id], 0)
            .map(Read::Strings)
    }
    fn read_matches(&self, w: &Workload, op: Op, i: usize, got: &Read) -> bool {
        self.encoded.read_matches(w, op, i, got)
    }
    fn scan_ids(&self, w: &Workload) -> Result<super::ScannedIds> {
        let (lo, hi) = (w.range.start.key().seconds(), w.range.end.key().seconds());
        let page = taskstate_core::DEFAULT_PAGE_SIZE as i64;
        let mut out: Vec<String> = Vec::with_capacity(w.n());
        loop {
            let batch = match out.last() {
                None => self.strings(&self.sql.ids_range_first, &[&lo, &hi, &page], 0)?,
                Some(last) => {
                    self.strings(&self.sql.ids_range_after, &[&lo, &hi, &page, last], 0)?
                }
            };
            let done = (batch.len() as i64) < page;
            out.extend(batch);
            if done {
                return Ok(super::ScannedIds::Strings(out));
            }
        }
    }
    fn scan_history(&self, w: &Workload) -> Result<super::Scanned> {
        let (lo, hi) = (w.range.start.key().seconds(), w.range.end.key().seconds());
        let page = taskstate_core::DEFAULT_PAGE_SIZE as i64;
        let mut out = Vec::with_capacity(w.histories.len());
        let mut after: Option<(f64, i64)> = None;
        loop {
            let rows = match after {
                None => self.run(&self.sql.history_first, &[&lo, &hi, &page])?,
                Some((t, s)) => self.run(&self.sql.history_after, &[&lo, &hi, &page, &t, &s])?,
            };
            let done = (rows.len() as i64) < page;
            after = match rows.last() {
                Some(r) => Some((col_of::<f64>(r, 0)?, col_of::<i64>(r, 1)?)),
                None => None,
            };
            for r in &rows {
                out.push(col_of::<String>(r, 2)?);
            }
            if done {
                return Ok(super::Scanned::Json(out));
            }
        }
    }
}
