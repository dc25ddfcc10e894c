//! Connections: the pool's manager (each connection keeps its prepared
//! statements), a bounded connect, and running an operation on a live
//! connection, retried whole when the connection is lost.

use std::collections::HashMap;
use std::time::Duration;

use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement, Transaction};
use r2d2::{ManageConnection, PooledConnection};
use taskstate_core::{Error, ErrorKind, Result};

use crate::PostgresBackend;
use crate::errors::{AttemptError, describe, retriable};

/// A pooled connection with its prepared statements: every statement is
/// prepared once per connection, then runs in one round trip.
pub(crate) struct PgConn {
    pub(crate) client: Client,
    pub(crate) statements: HashMap<String, Statement>,
    /// Set when a call on it failed as a lost connection: the pool drops
    /// it instead of handing it out again.
    pub(crate) broken: bool,
}

/// Opens [`PgConn`]s for the pool.
pub(crate) struct Manager {
    pub(crate) config: postgres::Config,
    pub(crate) connect_timeout: Duration,
}

/// Why a connection could not be opened.
#[derive(Debug)]
pub(crate) enum ConnectError {
    Server(postgres::Error),
    /// No answer within the connect timeout (a listener that accepts and
    /// never speaks, a black-holed address).
    TimedOut(Duration),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Server(e) => write!(f, "{}", describe(e)),
            ConnectError::TimedOut(d) => {
                write!(f, "no answer from the server within {} ms", d.as_millis())
            }
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Server(e) => Some(e),
            ConnectError::TimedOut(_) => None,
        }
    }
}

impl Manager {
    /// Connects within the timeout, handshake included: the `postgres`
    /// crate's own `connect_timeout` bounds only the TCP connect, so the
    /// whole attempt runs on a helper thread that is abandoned (and ends
    /// when the socket does) if it does not answer in time.
    pub(crate) fn open(&self) -> std::result::Result<PgConn, ConnectError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let config = self.config.clone();
        std::thread::Builder::new()
            .name("taskstate-pg-connect".into())
            .spawn(move || {
                let _ = tx.send(config.connect(NoTls));
            })
            .map_err(|_| ConnectError::TimedOut(Duration::ZERO))?;
        match rx.recv_timeout(self.connect_timeout) {
            Ok(Ok(client)) => Ok(PgConn {
                client,
                statements: HashMap::new(),
                broken: false,
            }),
            Ok(Err(e)) => Err(ConnectError::Server(e)),
            Err(_) => Err(ConnectError::TimedOut(self.connect_timeout)),
        }
    }
}

impl ManageConnection for Manager {
    type Connection = PgConn;
    type Error = ConnectError;

    fn connect(&self) -> std::result::Result<PgConn, ConnectError> {
        self.open()
    }

    fn is_valid(&self, conn: &mut PgConn) -> std::result::Result<(), ConnectError> {
        conn.client
            .simple_query("")
            .map(drop)
            .map_err(ConnectError::Server)
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.broken || conn.client.is_closed()
    }
}

pub(crate) type Conn = PooledConnection<Manager>;

/// Where statements run: straight on the connection (one statement is its
/// own transaction) or inside a transaction.
pub(crate) enum Target<'a> {
    Plain(&'a mut Client),
    Tx(Transaction<'a>),
}

/// A connection (or transaction on it) with its statement cache.
pub(crate) struct Db<'a> {
    pub(crate) target: Target<'a>,
    pub(crate) statements: &'a mut HashMap<String, Statement>,
}

impl Db<'_> {
    pub(crate) fn statement(
        &mut self,
        sql: &str,
    ) -> std::result::Result<Statement, postgres::Error> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = match &mut self.target {
            Target::Plain(c) => c.prepare(sql)?,
            Target::Tx(t) => t.prepare(sql)?,
        };
        self.statements.insert(sql.to_owned(), st.clone());
        Ok(st)
    }

    /// Runs a query (prepared once per connection).
    pub(crate) fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<Vec<Row>, postgres::Error> {
        let st = self.statement(sql)?;
        match &mut self.target {
            Target::Plain(c) => c.query(&st, params),
            Target::Tx(t) => t.query(&st, params),
        }
    }

    /// Runs a statement (prepared once per connection).
    pub(crate) fn execute(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<u64, postgres::Error> {
        let st = self.statement(sql)?;
        match &mut self.target {
            Target::Plain(c) => c.execute(&st, params),
            Target::Tx(t) => t.execute(&st, params),
        }
    }

    pub(crate) fn batch_execute(&mut self, sql: &str) -> std::result::Result<(), postgres::Error> {
        match &mut self.target {
            Target::Plain(c) => c.batch_execute(sql),
            Target::Tx(t) => t.batch_execute(sql),
        }
    }

    pub(crate) fn finish(self) -> std::result::Result<(), postgres::Error> {
        match self.target {
            Target::Plain(_) => Ok(()),
            Target::Tx(t) => t.commit(),
        }
    }
}

pub(crate) fn open_db(
    conn: &mut PgConn,
    transaction: bool,
    read_only: bool,
) -> std::result::Result<Db<'_>, postgres::Error> {
    let PgConn {
        client, statements, ..
    } = conn;
    let target = if transaction {
        // Only ever narrowed to READ ONLY: an explicit READ WRITE would
        // override a read-only session's default.
        let builder = client.build_transaction();
        let builder = if read_only {
            builder.read_only(true)
        } else {
            builder
        };
        Target::Tx(builder.start()?)
    } else {
        Target::Plain(client)
    };
    Ok(Db { target, statements })
}

impl PostgresBackend {
    pub(crate) fn conn(&self) -> Result<Conn> {
        self.pool.get().map_err(|e| Error::Unavailable {
            message: format!("{}: no connection: {e}", self.location),
            source: Some(Box::new(e)),
        })
    }

    /// A pooled connection known to answer: after a lost connection the
    /// pool may hold others the server dropped too (a restart drops them
    /// all), so each is pinged and a dead one discarded.
    pub(crate) fn live_conn(&self) -> Result<Conn> {
        loop {
            let mut conn = self.conn()?;
            match conn.client.simple_query("") {
                Ok(_) => return Ok(conn),
                Err(_) => conn.broken = true,
            }
        }
    }
    /// Runs `attempt` until it succeeds, fails for good, or lost
    /// connections have been retried for `retry_for`: a connection that
    /// failed is dropped from the pool, the next attempt runs on one that
    /// answers, after a pause that doubles from 20 ms up to 1 s. Every
    /// operation of this engine is idempotent (upserts, reads), so running
    /// one again after a connection died mid-way is safe.
    pub(crate) fn retrying<T>(
        &self,
        what: &str,
        mut attempt: impl FnMut(&mut PgConn) -> std::result::Result<T, AttemptError>,
    ) -> Result<T> {
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(20);
        let mut first = true;
        loop {
            let conn = if first { self.conn() } else { self.live_conn() };
            let failure = match conn {
                Ok(mut conn) => match attempt(&mut conn) {
                    Ok(v) => return Ok(v),
                    Err(AttemptError::Pg(e)) if retriable(&e) => {
                        conn.broken = true;
                        self.pg_err(what, e)
                    }
                    Err(AttemptError::Pg(e)) => return Err(self.pg_err(what, e)),
                    // A read's own query lost its connection (mapped by
                    // pg_err to Unavailable): retried like the driver's.
                    Err(AttemptError::Other(e)) if e.kind() == ErrorKind::Unavailable => {
                        conn.broken = true;
                        e
                    }
                    Err(AttemptError::Other(e)) => return Err(e),
                },
                Err(e) => e,
            };
            first = false;
            if started.elapsed() + pause > self.retry_for {
                return Err(failure);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Runs a write, retrying it whole on serialization failures,
    /// deadlocks and lost connections. `transaction`: wrap its statements in
    /// one transaction (a single statement is atomic by itself and saves
    /// the BEGIN/COMMIT round trips).
    pub(crate) fn write<T>(
        &self,
        what: &str,
        transaction: bool,
        mut f: impl FnMut(&mut Db<'_>) -> std::result::Result<T, postgres::Error>,
    ) -> Result<T> {
        self.retrying(what, |conn| {
            open_db(conn, transaction, false)
                .and_then(|mut db| {
                    let v = f(&mut db)?;
                    db.finish()?;
                    Ok(v)
                })
                .map_err(AttemptError::Pg)
        })
    }

    /// Runs a read; `snapshot`: in one read-only transaction, for reads of
    /// several statements. Lost connections are retried as writes are.
    pub(crate) fn read<T>(
        &self,
        what: &str,
        snapshot: bool,
        mut f: impl FnMut(&mut Db<'_>) -> Result<T>,
    ) -> Result<T> {
        self.retrying(what, |conn| {
            let mut db = open_db(conn, snapshot, true).map_err(AttemptError::Pg)?;
            let out = f(&mut db).map_err(AttemptError::Other)?;
            db.finish().map_err(AttemptError::Pg)?;
            Ok(out)
        })
    }

    pub(crate) fn q(
        &self,
        db: &mut Db<'_>,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        db.query(sql, params).map_err(|e| self.pg_err("query", e))
    }
}
