//! The PostgreSQL engine of **taskstate**: one shared store for workers on
//! many machines.
//!
//! ```no_run
//! use taskstate_core::{InvocationId, StateBackend};
//! use taskstate_postgres::{PostgresBackend, PostgresOptions};
//!
//! let backend = PostgresBackend::connect(
//!     "postgres://postgres@127.0.0.1:5432/test",
//!     &PostgresOptions { schema: "taskstate".into(), ..PostgresOptions::default() },
//! )?;
//! backend.set_result(&InvocationId::new("inv-1"), "42")?;
//! # Ok::<(), taskstate_core::Error>(())
//! ```
//!
//! # What it needs from the server
//!
//! A database and a role that may `CREATE SCHEMA` (or an existing schema the
//! role owns) and create tables, indexes and a sequence in it. Everything
//! lives in one schema (default `taskstate`), so several independent stores
//! can share a database. Migrations run under a transaction-level advisory
//! lock, so any number of processes can start at once; a schema written by
//! a newer taskstate is refused.
//!
//! # Data layout
//!
//! Ids are `text COLLATE "C"`, so every list sorts by code point exactly as
//! the other engines do. History keeps the contract's ordering key
//! (`ts_key`, the `f64` seconds of SPEC's REAL column) with a sequence for
//! insertion order, and `history_us`, the instant in microseconds, for
//! operators' own queries. Uniqueness rules are constraints, upserts are
//! `INSERT … ON CONFLICT`, every batch is one transaction, and range queries
//! page by keyset on `(ts_key, seq)`. PostgreSQL text cannot hold NUL
//! characters; such input is refused as invalid.
//!
//! # Errors
//!
//! Serialization failures, deadlocks and lost connections are retried (the
//! whole transaction, up to 3 times); if they persist they surface as the
//! retriable `Unavailable` kind with their source. Nothing is half-written.

use std::collections::BTreeSet;
use std::time::Duration;

use std::collections::HashMap;

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement, Transaction};
use r2d2::{ManageConnection, Pool, PooledConnection};
mod bulk;

use taskstate_core::{
    AppInfo, CallDTO, CallId, Cursor, Entity, Error, ErrorKind, InvocationDTO, InvocationHistory,
    InvocationId, Page, Result, Row as BulkRow, RunnerContext, RunnerId, SerializedArguments,
    Snapshot, StateBackend, TaskId, TimeRange, WorkflowIdentity, check_app_info, check_history_row,
    check_invocation_id, check_invocation_pair, check_page_size, check_runner_context,
    check_sub_invocation, check_workflow, check_workflow_data, fetch_limit, resolve_runner_chain,
    runner_id_matches,
};

pub mod testing;

const ENGINE: &str = "postgres";

/// The schema version this engine writes.
pub const SCHEMA_VERSION: i64 = 2;

/// Connection options.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// The PostgreSQL schema holding the tables (letters, digits, `_`;
    /// at most 63 bytes). Default `taskstate`.
    pub schema: String,
    /// Largest number of pooled connections (default 16).
    pub max_connections: u32,
    /// How long opening a connection may take, handshake included (a
    /// server that accepts TCP but never answers fails after it), and how
    /// long a call waits for a free pooled connection (default 10 s).
    pub connect_timeout: Duration,
    /// Server-side limit on one statement (`statement_timeout`; default
    /// 60 s; zero: none).
    pub statement_timeout: Duration,
    /// How long an operation keeps retrying after the server dropped its
    /// connection (a terminated backend, a restart), with growing pauses,
    /// before it fails as unavailable (default 15 s).
    pub retry_for: Duration,
    /// Open for reading only (SPEC §6, reading never writes): the schema
    /// must exist at a version this engine reads; no DDL is run.
    pub read_only: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            schema: "taskstate".into(),
            max_connections: 16,
            connect_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(60),
            retry_for: Duration::from_secs(15),
            read_only: false,
        }
    }
}

/// A pooled connection with its prepared statements: every statement is
/// prepared once per connection, then runs in one round trip.
pub struct PgConn {
    client: Client,
    statements: HashMap<String, Statement>,
    /// Set when a call on it failed as a lost connection: the pool drops
    /// it instead of handing it out again.
    broken: bool,
}

/// Opens [`PgConn`]s for the pool.
struct Manager {
    config: postgres::Config,
    connect_timeout: Duration,
}

/// Why a connection could not be opened.
#[derive(Debug)]
enum ConnectError {
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
    fn open(&self) -> std::result::Result<PgConn, ConnectError> {
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

/// A server error as "SQLSTATE message (detail; hint)", anything else as
/// the `postgres` crate words it, with its cause (never just "db error").
fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
        if let Some(d) = db.detail() {
            s.push_str(&format!(" (detail: {d})"));
        }
        if let Some(h) = db.hint() {
            s.push_str(&format!(" (hint: {h})"));
        }
        return s;
    }
    match std::error::Error::source(e) {
        Some(cause) if !e.to_string().contains(&cause.to_string()) => format!("{e}: {cause}"),
        _ => e.to_string(),
    }
}

type Conn = PooledConnection<Manager>;

/// Where statements run: straight on the connection (one statement is its
/// own transaction) or inside a transaction.
enum Target<'a> {
    Plain(&'a mut Client),
    Tx(Transaction<'a>),
}

/// A connection (or transaction on it) with its statement cache.
pub struct Db<'a> {
    target: Target<'a>,
    statements: &'a mut HashMap<String, Statement>,
}

impl Db<'_> {
    fn statement(&mut self, sql: &str) -> std::result::Result<Statement, postgres::Error> {
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
    fn query(
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
    fn execute(
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

    fn batch_execute(&mut self, sql: &str) -> std::result::Result<(), postgres::Error> {
        match &mut self.target {
            Target::Plain(c) => c.batch_execute(sql),
            Target::Tx(t) => t.batch_execute(sql),
        }
    }

    fn finish(self) -> std::result::Result<(), postgres::Error> {
        match self.target {
            Target::Plain(_) => Ok(()),
            Target::Tx(t) => t.commit(),
        }
    }
}

fn open_db(
    conn: &mut PgConn,
    transaction: bool,
    read_only: bool,
) -> std::result::Result<Db<'_>, postgres::Error> {
    let PgConn {
        client, statements, ..
    } = conn;
    let target = if transaction {
        Target::Tx(client.build_transaction().read_only(read_only).start()?)
    } else {
        Target::Plain(client)
    };
    Ok(Db { target, statements })
}

/// The PostgreSQL engine. `Send + Sync`; share one per process.
pub struct PostgresBackend {
    pool: Pool<Manager>,
    schema: String,
    location: String,
    sql: Statements,
    retry_for: Duration,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// Every statement this engine issues, with the schema spliced in once
/// (identifiers cannot be parameters; the schema name is checked to be a
/// plain identifier). The hot-path ones are public so the raw baseline of
/// `taskstate bench` issues exactly the same SQL.
pub struct Statements {
    /// Upsert one invocation ($1..$9 as the columns).
    pub upsert_invocation: String,
    /// Read one invocation ($1 id).
    pub get_invocation: String,
    /// Children of $1, ascending.
    pub children: String,
    ids_all: String,
    ids_by_wf: String,
    ids_by_type: String,
    ids_by_both: String,
    /// Add or replace one history record ($1 id, $2 ts_key, $3 history_us, $4 status, $5 json).
    pub insert_history: String,
    insert_history_batch: String,
    upsert_invocation_batch: String,
    /// History of $1 in order.
    pub get_history: String,
    /// First page of history in [$1, $2], $3 rows.
    pub history_first: String,
    /// Next page of history in [$1, $2] after ($4, $5), $3 rows.
    pub history_after: String,
    /// First page of ids with history in [$1, $2], $3 rows.
    pub ids_range_first: String,
    /// Next page of ids in [$1, $2] after $4, $3 rows.
    pub ids_range_after: String,
    /// Set result $2 of $1.
    pub set_result: String,
    /// Result of $1.
    pub get_result: String,
    set_exception: String,
    get_exception: String,
    upsert_workflow: String,
    workflow_types: String,
    workflow_runs: String,
    workflow_runs_of: String,
    insert_sub: String,
    subs_of: String,
    set_data: String,
    get_data: String,
    upsert_app: String,
    get_app: String,
    all_apps: String,
    upsert_runner: String,
    get_runner: String,
    runner_ids: String,
    purge: String,
    /// The bulk path's statements.
    pub(crate) bulk: bulk::BulkSql,
}

impl Statements {
    /// The statements for tables in `schema`.
    #[must_use]
    pub fn new(s: &str) -> Self {
        let q = |t: &str| format!("\"{s}\".{t}");
        let (inv, his, res, exc, wf, sub, data, app, run) = (
            q("invocations"),
            q("history"),
            q("results"),
            q("exceptions"),
            q("workflows"),
            q("workflow_sub_invocations"),
            q("workflow_data"),
            q("app_info"),
            q("runner_contexts"),
        );
        Self {
            upsert_invocation: format!(
                "INSERT INTO {inv} (invocation_id, call_id_key, task_id_key, arguments_id, serialized_arguments, \
                 parent_invocation_id, workflow_id, workflow_type_key, parent_workflow_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (invocation_id) DO UPDATE SET \
                 call_id_key = EXCLUDED.call_id_key, task_id_key = EXCLUDED.task_id_key, \
                 arguments_id = EXCLUDED.arguments_id, serialized_arguments = EXCLUDED.serialized_arguments, \
                 parent_invocation_id = EXCLUDED.parent_invocation_id, workflow_id = EXCLUDED.workflow_id, \
                 workflow_type_key = EXCLUDED.workflow_type_key, parent_workflow_id = EXCLUDED.parent_workflow_id"
            ),
            get_invocation: format!(
                "SELECT call_id_key, serialized_arguments, parent_invocation_id, workflow_id, \
                 workflow_type_key, parent_workflow_id FROM {inv} WHERE invocation_id = $1"
            ),
            children: format!(
                "SELECT invocation_id FROM {inv} WHERE parent_invocation_id = $1 ORDER BY invocation_id"
            ),
            ids_all: format!("SELECT invocation_id FROM {inv} ORDER BY invocation_id"),
            ids_by_wf: format!(
                "SELECT invocation_id FROM {inv} WHERE workflow_id = $1 ORDER BY invocation_id"
            ),
            ids_by_type: format!(
                "SELECT invocation_id FROM {inv} WHERE workflow_type_key = $1 ORDER BY invocation_id"
            ),
            ids_by_both: format!(
                "SELECT invocation_id FROM {inv} WHERE workflow_id = $1 AND workflow_type_key = $2 \
                 ORDER BY invocation_id"
            ),
            // A replaced record takes a new sequence number: the latest
            // insertion position, as the contract asks.
            insert_history: format!(
                "INSERT INTO {his} (invocation_id, ts_key, history_us, status, history_json) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (invocation_id, ts_key, status) DO UPDATE SET \
                 history_us = EXCLUDED.history_us, history_json = EXCLUDED.history_json, \
                 seq = nextval('\"{s}\".history_seq')"
            ),
            // A batch in one statement: the arrays' rows in their order
            // (WITH ORDINALITY), so sequence numbers follow the batch order.
            insert_history_batch: format!(
                "INSERT INTO {his} (invocation_id, ts_key, history_us, status, history_json) \
                 SELECT i, t, u, st, j FROM UNNEST($1::text[], $2::float8[], $3::int8[], $4::text[], $5::text[]) \
                 WITH ORDINALITY AS r(i, t, u, st, j, n) ORDER BY n \
                 ON CONFLICT (invocation_id, ts_key, status) DO UPDATE SET \
                 history_us = EXCLUDED.history_us, history_json = EXCLUDED.history_json, \
                 seq = nextval('\"{s}\".history_seq')"
            ),
            upsert_invocation_batch: format!(
                "INSERT INTO {inv} (invocation_id, call_id_key, task_id_key, arguments_id, serialized_arguments, \
                 parent_invocation_id, workflow_id, workflow_type_key, parent_workflow_id) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                 $6::text[], $7::text[], $8::text[], $9::text[]) \
                 ON CONFLICT (invocation_id) DO UPDATE SET \
                 call_id_key = EXCLUDED.call_id_key, task_id_key = EXCLUDED.task_id_key, \
                 arguments_id = EXCLUDED.arguments_id, serialized_arguments = EXCLUDED.serialized_arguments, \
                 parent_invocation_id = EXCLUDED.parent_invocation_id, workflow_id = EXCLUDED.workflow_id, \
                 workflow_type_key = EXCLUDED.workflow_type_key, parent_workflow_id = EXCLUDED.parent_workflow_id"
            ),
            get_history: format!(
                "SELECT history_json, invocation_id, ts_key FROM {his} WHERE invocation_id = $1 ORDER BY ts_key, seq"
            ),
            history_first: format!(
                "SELECT ts_key, seq, history_json, invocation_id FROM {his} \
                 WHERE ts_key >= $1 AND ts_key <= $2 ORDER BY ts_key, seq LIMIT $3"
            ),
            history_after: format!(
                "SELECT ts_key, seq, history_json, invocation_id FROM {his} \
                 WHERE ts_key >= $1 AND ts_key <= $2 AND (ts_key, seq) > ($4, $5) \
                 ORDER BY ts_key, seq LIMIT $3"
            ),
            ids_range_first: format!(
                "SELECT DISTINCT invocation_id FROM {his} WHERE ts_key >= $1 AND ts_key <= $2 \
                 ORDER BY invocation_id LIMIT $3"
            ),
            ids_range_after: format!(
                "SELECT DISTINCT invocation_id FROM {his} WHERE invocation_id > $4 AND ts_key >= $1 \
                 AND ts_key <= $2 ORDER BY invocation_id LIMIT $3"
            ),
            set_result: format!(
                "INSERT INTO {res} (invocation_id, result_data) VALUES ($1, $2) \
                 ON CONFLICT (invocation_id) DO UPDATE SET result_data = EXCLUDED.result_data"
            ),
            get_result: format!("SELECT result_data FROM {res} WHERE invocation_id = $1"),
            set_exception: format!(
                "INSERT INTO {exc} (invocation_id, exception_data) VALUES ($1, $2) \
                 ON CONFLICT (invocation_id) DO UPDATE SET exception_data = EXCLUDED.exception_data"
            ),
            get_exception: format!("SELECT exception_data FROM {exc} WHERE invocation_id = $1"),
            upsert_workflow: format!(
                "INSERT INTO {wf} (workflow_id, workflow_type_key, parent_workflow_id) VALUES ($1, $2, $3) \
                 ON CONFLICT (workflow_id) DO UPDATE SET workflow_type_key = EXCLUDED.workflow_type_key, \
                 parent_workflow_id = EXCLUDED.parent_workflow_id"
            ),
            workflow_types: format!(
                "SELECT DISTINCT workflow_type_key FROM {wf} ORDER BY workflow_type_key"
            ),
            workflow_runs: format!(
                "SELECT workflow_id, workflow_type_key, parent_workflow_id FROM {wf} ORDER BY workflow_id"
            ),
            workflow_runs_of: format!(
                "SELECT workflow_id, workflow_type_key, parent_workflow_id FROM {wf} \
                 WHERE workflow_type_key = $1 ORDER BY workflow_id"
            ),
            insert_sub: format!(
                "INSERT INTO {sub} (parent_workflow_id, sub_invocation_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
            ),
            subs_of: format!(
                "SELECT sub_invocation_id FROM {sub} WHERE parent_workflow_id = $1 ORDER BY sub_invocation_id"
            ),
            set_data: format!(
                "INSERT INTO {data} (workflow_id, data_key, data_value) VALUES ($1, $2, $3) \
                 ON CONFLICT (workflow_id, data_key) DO UPDATE SET data_value = EXCLUDED.data_value"
            ),
            get_data: format!(
                "SELECT data_value FROM {data} WHERE workflow_id = $1 AND data_key = $2"
            ),
            upsert_app: format!(
                "INSERT INTO {app} (app_id, app_info_json) VALUES ($1, $2) \
                 ON CONFLICT (app_id) DO UPDATE SET app_info_json = EXCLUDED.app_info_json"
            ),
            get_app: format!("SELECT app_info_json FROM {app} WHERE app_id = $1"),
            all_apps: format!("SELECT app_info_json, app_id FROM {app} ORDER BY app_id"),
            upsert_runner: format!(
                "INSERT INTO {run} (runner_id, runner_cls, parent_ctx_id, pid, hostname, thread_id) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (runner_id) DO UPDATE SET \
                 runner_cls = EXCLUDED.runner_cls, parent_ctx_id = EXCLUDED.parent_ctx_id, pid = EXCLUDED.pid, \
                 hostname = EXCLUDED.hostname, thread_id = EXCLUDED.thread_id"
            ),
            get_runner: format!(
                "SELECT runner_cls, parent_ctx_id, pid, hostname, thread_id FROM {run} WHERE runner_id = $1"
            ),
            runner_ids: format!("SELECT runner_id FROM {run} ORDER BY runner_id"),
            purge: format!(
                "TRUNCATE {inv}, {his}, {res}, {exc}, {wf}, {sub}, {data}, {app}, {run}"
            ),
            bulk: bulk::BulkSql::new(s),
        }
    }
}

/// The tables of schema version 1. `{s}` is the quoted schema.
const DDL_V1: &str = r#"
CREATE SEQUENCE IF NOT EXISTS {s}.history_seq;
CREATE TABLE IF NOT EXISTS {s}.invocations (
    invocation_id text COLLATE "C" PRIMARY KEY,
    call_id_key text COLLATE "C" NOT NULL,
    task_id_key text COLLATE "C" NOT NULL,
    arguments_id text NOT NULL,
    serialized_arguments text NOT NULL,
    parent_invocation_id text COLLATE "C",
    workflow_id text COLLATE "C" NOT NULL,
    workflow_type_key text COLLATE "C" NOT NULL,
    parent_workflow_id text COLLATE "C"
);
CREATE INDEX IF NOT EXISTS invocations_parent ON {s}.invocations (parent_invocation_id, invocation_id);
CREATE INDEX IF NOT EXISTS invocations_workflow ON {s}.invocations (workflow_id, invocation_id);
CREATE INDEX IF NOT EXISTS invocations_type ON {s}.invocations (workflow_type_key, invocation_id);
CREATE TABLE IF NOT EXISTS {s}.history (
    invocation_id text COLLATE "C" NOT NULL,
    ts_key double precision NOT NULL,
    history_us bigint NOT NULL,
    status text NOT NULL,
    history_json text NOT NULL,
    seq bigint NOT NULL DEFAULT nextval('{s}.history_seq'),
    UNIQUE (invocation_id, ts_key, status)
);
CREATE INDEX IF NOT EXISTS history_time ON {s}.history (ts_key, seq);
CREATE TABLE IF NOT EXISTS {s}.results (
    invocation_id text COLLATE "C" PRIMARY KEY,
    result_data text NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.exceptions (
    invocation_id text COLLATE "C" PRIMARY KEY,
    exception_data text NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.workflows (
    workflow_id text COLLATE "C" PRIMARY KEY,
    workflow_type_key text COLLATE "C" NOT NULL,
    parent_workflow_id text COLLATE "C"
);
CREATE INDEX IF NOT EXISTS workflows_type ON {s}.workflows (workflow_type_key, workflow_id);
CREATE TABLE IF NOT EXISTS {s}.workflow_sub_invocations (
    parent_workflow_id text COLLATE "C" NOT NULL,
    sub_invocation_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (parent_workflow_id, sub_invocation_id)
);
CREATE TABLE IF NOT EXISTS {s}.workflow_data (
    workflow_id text COLLATE "C" NOT NULL,
    data_key text COLLATE "C" NOT NULL,
    data_value text NOT NULL,
    PRIMARY KEY (workflow_id, data_key)
);
CREATE TABLE IF NOT EXISTS {s}.app_info (
    app_id text COLLATE "C" PRIMARY KEY,
    app_info_json text NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.runner_contexts (
    runner_id text COLLATE "C" PRIMARY KEY,
    runner_cls text NOT NULL,
    parent_ctx_id text COLLATE "C",
    pid bigint NOT NULL,
    hostname text NOT NULL,
    thread_id bigint NOT NULL
);
"#;

/// Version 1 → 2: history by insertion order, for the bulk path's pages
/// (keyset on `seq`; without it every page would sort the whole table).
/// Not named `history_seq`: that is the sequence's name, and indexes and
/// sequences share one namespace (`IF NOT EXISTS` would skip it).
const DDL_V2: &str = "CREATE INDEX IF NOT EXISTS history_by_seq ON {s}.history (seq);";

/// How one attempt of an operation failed: a driver error (retried if
/// [`retriable`]) or an error of ours (returned as is).
enum AttemptError {
    Pg(postgres::Error),
    Other(Error),
}

/// Whether `e` is worth retrying the whole transaction for.
fn retriable(e: &postgres::Error) -> bool {
    e.is_closed()
        || matches!(
            e.code(),
            Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
        )
        || e.code().is_none()
            && std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

impl PostgresBackend {
    /// Connects to `url` (`postgres://user@host:port/db`, as the `postgres`
    /// crate parses it) and brings the schema up to date.
    pub fn connect(url: &str, options: &PostgresOptions) -> Result<Self> {
        check_schema_name(&options.schema)?;
        let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| {
            Error::invalid(format!("bad PostgreSQL URL: {}", redact(&e.to_string())))
        })?;
        let location = format!("postgres {} schema {}", redact(url), options.schema);
        // libpq's `connect_timeout` (seconds) in the URL wins over the option.
        let connect_timeout = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(options.connect_timeout);
        config.connect_timeout(connect_timeout);
        let ms = options.statement_timeout.as_millis();
        let server_options = match config.get_options() {
            Some(o) => format!("{o} -c statement_timeout={ms}"),
            None => format!("-c statement_timeout={ms}"),
        };
        config.options(&server_options);
        let manager = Manager {
            config,
            connect_timeout,
        };
        // One direct attempt first: a refused or unresolvable server fails
        // now, instead of the pool retrying until its timeout.
        manager.connect().map_err(|e| Error::Unavailable {
            message: format!("{location}: cannot connect: {e}"),
            source: Some(Box::new(e)),
        })?;
        let pool = Pool::builder()
            .max_size(options.max_connections.max(1))
            .min_idle(Some(1))
            .connection_timeout(connect_timeout)
            // No validation query per checkout: that is a round trip per call;
            // broken connections are caught by has_broken and by retries.
            .test_on_check_out(false)
            .build_unchecked(manager);
        let backend = Self {
            pool,
            sql: Statements::new(&options.schema),
            schema: options.schema.clone(),
            location,
            retry_for: options.retry_for,
        };
        if options.read_only {
            backend.check_schema()?;
        } else {
            backend.migrate()?;
        }
        Ok(backend)
    }

    /// This engine's statements (for the raw baseline of `taskstate bench`).
    #[must_use]
    pub fn statements(&self) -> &Statements {
        &self.sql
    }

    /// The schema this engine stores in.
    #[must_use]
    pub fn schema(&self) -> &str {
        &self.schema
    }

    fn conn(&self) -> Result<Conn> {
        self.pool.get().map_err(|e| Error::Unavailable {
            message: format!("{}: no connection: {e}", self.location),
            source: Some(Box::new(e)),
        })
    }

    /// A pooled connection known to answer: after a lost connection the
    /// pool may hold others the server dropped too (a restart drops them
    /// all), so each is pinged and a dead one discarded.
    fn live_conn(&self) -> Result<Conn> {
        loop {
            let mut conn = self.conn()?;
            match conn.client.simple_query("") {
                Ok(_) => return Ok(conn),
                Err(_) => conn.broken = true,
            }
        }
    }

    fn pg_err(&self, what: &str, e: postgres::Error) -> Error {
        let message = format!("{}: {what}: {}", self.location, describe(&e));
        if retriable(&e) {
            return Error::Unavailable {
                message,
                source: Some(Box::new(e)),
            };
        }
        match e.code() {
            Some(c)
                if *c == SqlState::CHARACTER_NOT_IN_REPERTOIRE
                    || *c == SqlState::UNTRANSLATABLE_CHARACTER =>
            {
                Error::InvalidInput(format!(
                    "{message} (PostgreSQL text cannot hold NUL characters)"
                ))
            }
            _ => Error::Storage {
                message,
                source: Some(Box::new(e)),
            },
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or lost
    /// connections have been retried for `retry_for`: a connection that
    /// failed is dropped from the pool, the next attempt runs on one that
    /// answers, after a pause that doubles from 20 ms up to 1 s. Every
    /// operation of this engine is idempotent (upserts, reads), so running
    /// one again after a connection died mid-way is safe.
    fn retrying<T>(
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
    fn write<T>(
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
    fn read<T>(
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

    fn q(&self, db: &mut Db<'_>, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        db.query(sql, params).map_err(|e| self.pg_err("query", e))
    }

    /// `Incompatible` for a schema version newer than this engine knows.
    fn refuse_newer(&self, version: i64) -> Result<()> {
        if version > SCHEMA_VERSION {
            return Err(Error::Incompatible {
                location: self.location.clone(),
                reason: format!(
                    "schema version {version} is newer than this taskstate-postgres knows ({SCHEMA_VERSION}); upgrade taskstate"
                ),
            });
        }
        Ok(())
    }

    /// For a read-only open: the schema exists at a version this engine
    /// reads. Runs one query and no DDL.
    fn check_schema(&self) -> Result<()> {
        let mut conn = self.conn()?;
        let rows = conn
            .client
            .query(
                "SELECT to_regclass(format('%I.taskstate_schema', $1::text)) IS NOT NULL",
                &[&self.schema],
            )
            .map_err(|e| self.pg_err("read schema", e))?;
        let exists = rows
            .first()
            .and_then(|r| r.try_get::<_, bool>(0).ok())
            .unwrap_or(false);
        if !exists {
            return Err(Error::invalid(format!(
                "no such store: {} has no taskstate tables",
                self.location
            )));
        }
        let rows = conn
            .client
            .query(
                &format!(
                    "SELECT max(version) FROM \"{}\".taskstate_schema",
                    self.schema
                ),
                &[],
            )
            .map_err(|e| self.pg_err("read schema version", e))?;
        let version = rows
            .first()
            .and_then(|r| r.try_get::<_, Option<i64>>(0).ok())
            .flatten()
            .unwrap_or(0);
        self.refuse_newer(version)?;
        if version < 1 {
            return Err(Error::invalid(format!(
                "no such store: {} was never migrated",
                self.location
            )));
        }
        Ok(())
    }

    fn migrate(&self) -> Result<()> {
        let s = format!("\"{}\"", self.schema);
        let lock_key = schema_lock_key(&self.schema);
        let mut conn = self.conn()?;
        let mut tx = conn
            .client
            .transaction()
            .map_err(|e| self.pg_err("begin migration", e))?;
        let step = |tx: &mut Transaction<'_>, sql: &str| tx.batch_execute(sql);
        let run = (|| -> std::result::Result<Option<i64>, postgres::Error> {
            // Serialises every process migrating this schema. An index on
            // a big table may take longer than the statement timeout.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key])?;
            step(&mut tx, "SET LOCAL statement_timeout = 0")?;
            step(&mut tx, &format!("CREATE SCHEMA IF NOT EXISTS {s}"))?;
            step(
                &mut tx,
                &format!(
                    "CREATE TABLE IF NOT EXISTS {s}.taskstate_schema (version bigint NOT NULL)"
                ),
            )?;
            let rows = tx.query(&format!("SELECT version FROM {s}.taskstate_schema"), &[])?;
            let version: i64 = match rows.first() {
                Some(r) => r.try_get(0)?,
                None => 0,
            };
            if version > SCHEMA_VERSION {
                return Ok(Some(version));
            }
            if version < 1 {
                step(&mut tx, &DDL_V1.replace("{s}", &s))?;
            }
            if version < 2 {
                step(&mut tx, &DDL_V2.replace("{s}", &s))?;
                step(&mut tx, &format!("DELETE FROM {s}.taskstate_schema"))?;
                tx.execute(
                    &format!("INSERT INTO {s}.taskstate_schema (version) VALUES ($1)"),
                    &[&SCHEMA_VERSION],
                )?;
            }
            Ok(None)
        })();
        match run {
            Ok(Some(newer)) => self.refuse_newer(newer),
            Ok(None) => tx.commit().map_err(|e| self.pg_err("commit migration", e)),
            Err(e) => Err(self.pg_err("migrate schema", e)),
        }
    }

    /// Drops this engine's schema and everything in it (used by tests to
    /// clean up; irreversible).
    pub fn drop_schema(&self) -> Result<()> {
        let mut conn = self.conn()?;
        conn.client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                self.schema
            ))
            .map_err(|e| self.pg_err("drop schema", e))
    }

    /// Column `i` of a stored row as `T`; a NULL or a value of another type
    /// (a column altered behind the engine's back) is corrupt data naming
    /// table and key — never a panic.
    fn col<T: for<'r> postgres::types::FromSql<'r>>(
        &self,
        r: &Row,
        i: usize,
        table: &str,
        key: &str,
    ) -> Result<T> {
        r.try_get(i)
            .map_err(|e| self.corrupt(table, key, format!("column {i}: {e}")))
    }

    fn corrupt(&self, table: &str, key: &str, reason: impl std::fmt::Display) -> Error {
        Error::corrupt(format!("{} {table}[{key}]", self.location), reason)
    }

    fn ids(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<InvocationId>> {
        self.read("list ids", false, |tx| {
            self.q(tx, sql, params)?
                .iter()
                .map(|r| self.col::<String>(r, 0, "ids", "?").map(InvocationId::new))
                .collect::<Result<_>>()
        })
    }

    fn decode_history(
        &self,
        row: &Row,
        json_col: usize,
        id_col: usize,
    ) -> Result<InvocationHistory> {
        let id: String = self.col(row, id_col, "history", "?")?;
        let json: String = self.col(row, json_col, "history", &id)?;
        InvocationHistory::from_json(&json).map_err(|e| self.corrupt("history", &id, e))
    }

    fn load_runner(
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
            self.col::<Option<String>>(r, 1, t, k)?
                .filter(|p| !p.is_empty())
                .map(RunnerId::new),
        )))
    }

    fn resolve_runner(
        &self,
        tx: &mut Db<'_>,
        row: (RunnerContext, Option<RunnerId>),
    ) -> Result<RunnerContext> {
        resolve_runner_chain(&format!("{} runner_contexts", self.location), row, |id| {
            self.load_runner(tx, id)
        })
    }

    fn get_text(&self, sql: &str, id: &InvocationId, entity: Entity) -> Result<String> {
        self.read("get", false, |tx| {
            let rows = self.q(tx, sql, &[&id.as_str()])?;
            let r = rows
                .first()
                .ok_or_else(|| Error::not_found(entity, id.as_str()))?;
            self.col(r, 0, &entity.to_string(), id.as_str())
        })
    }

    fn workflow_runs(&self, ty: Option<&TaskId>) -> Result<Vec<WorkflowIdentity>> {
        self.read("workflow runs", false, |tx| {
            let rows = match ty {
                Some(t) => self.q(tx, &self.sql.workflow_runs_of, &[&t.key()])?,
                None => self.q(tx, &self.sql.workflow_runs, &[])?,
            };
            rows.iter()
                .map(|r| {
                    let id: String = self.col(r, 0, "workflows", "?")?;
                    let ty: String = self.col(r, 1, "workflows", &id)?;
                    Ok(WorkflowIdentity {
                        workflow_type: ty.parse().map_err(|e| self.corrupt("workflows", &id, e))?,
                        parent_workflow_id: self
                            .col::<Option<String>>(r, 2, "workflows", &id)?
                            .filter(|p| !p.is_empty())
                            .map(InvocationId::new),
                        workflow_id: InvocationId::new(id),
                    })
                })
                .collect()
        })
    }
}

/// An invocation batch as column arrays (table order), of entries sharing
/// an id only the last (ON CONFLICT cannot touch a row twice in one
/// statement), sorted by id so concurrent batches lock rows in one order
/// (no deadlocks between them). `None` for no entries.
pub(crate) fn invocation_columns<'a>(
    entries: impl Iterator<Item = (&'a InvocationDTO, &'a CallDTO)>,
) -> Option<[Vec<Option<String>>; 9]> {
    let mut latest: std::collections::BTreeMap<&str, (&InvocationDTO, &CallDTO)> =
        std::collections::BTreeMap::new();
    for (inv, call) in entries {
        latest.insert(inv.invocation_id.as_str(), (inv, call));
    }
    if latest.is_empty() {
        return None;
    }
    let mut cols: [Vec<Option<String>>; 9] = Default::default();
    for (inv, call) in latest.values() {
        let row = [
            Some(inv.invocation_id.as_str().to_owned()),
            Some(call.call_id.key().to_owned()),
            Some(call.call_id.task_id().key().to_owned()),
            Some(call.call_id.args_id().to_owned()),
            Some(call.serialized_arguments.to_json()),
            inv.parent_invocation_id
                .as_ref()
                .map(|p| p.as_str().to_owned()),
            Some(inv.workflow.workflow_id.as_str().to_owned()),
            Some(inv.workflow.workflow_type.key().to_owned()),
            inv.workflow
                .parent_workflow_id
                .as_ref()
                .map(|p| p.as_str().to_owned()),
        ];
        for (col, v) in cols.iter_mut().zip(row) {
            col.push(v);
        }
    }
    Some(cols)
}

/// Runs the batch upsert of [`invocation_columns`].
pub(crate) fn exec_invocations(
    db: &mut Db<'_>,
    sql: &Statements,
    c: &[Vec<Option<String>>; 9],
) -> std::result::Result<(), postgres::Error> {
    db.execute(
        &sql.upsert_invocation_batch,
        &[
            &c[0], &c[1], &c[2], &c[3], &c[4], &c[5], &c[6], &c[7], &c[8],
        ],
    )
    .map(drop)
}

/// History rows as column arrays (key, time key, µs, status, JSON) in
/// their order; of rows sharing an identity only the last, at its own
/// (later) position, which is where it would end up anyway.
pub(crate) type HistoryColumns = (
    Vec<String>,
    Vec<f64>,
    Vec<i64>,
    Vec<&'static str>,
    Vec<String>,
);

/// See [`HistoryColumns`]; `None` for no rows.
pub(crate) fn history_columns(rows: &[taskstate_core::HistoryRow<'_>]) -> Option<HistoryColumns> {
    if rows.is_empty() {
        return None;
    }
    let mut last: HashMap<(&str, u64, &str), usize> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        let (k, t, st) = r.identity();
        last.insert((k.as_str(), t.seconds().to_bits(), st.as_str()), i);
    }
    let mut cols: HistoryColumns = Default::default();
    // One JSON per record however many keys it is stored under.
    let mut prev: Option<(&InvocationHistory, String)> = None;
    for (i, r) in rows.iter().enumerate() {
        let (k, t, st) = r.identity();
        if last.get(&(k.as_str(), t.seconds().to_bits(), st.as_str())) != Some(&i) {
            continue;
        }
        let json = match &prev {
            Some((rec, json)) if std::ptr::eq(*rec, r.record) => json.clone(),
            _ => {
                let json = r.record.to_json();
                prev = Some((r.record, json.clone()));
                json
            }
        };
        cols.0.push(k.as_str().to_owned());
        cols.1.push(t.seconds());
        cols.2.push(r.record.timestamp.micros());
        cols.3.push(st.as_str());
        cols.4.push(json);
    }
    Some(cols)
}

/// Runs the batch insert of [`history_columns`].
pub(crate) fn exec_history(
    db: &mut Db<'_>,
    sql: &Statements,
    c: &HistoryColumns,
) -> std::result::Result<(), postgres::Error> {
    db.execute(&sql.insert_history_batch, &[&c.0, &c.1, &c.2, &c.3, &c.4])
        .map(drop)
}

/// Only plain identifiers are accepted as schema names, so splicing them
/// into SQL (quoted) is safe.
fn check_schema_name(s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "schema name {s:?}: use 1 to 63 letters, digits or '_', not starting with a digit"
        )))
    }
}

/// A stable advisory-lock key per schema (FNV-1a of the name).
fn schema_lock_key(schema: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in "taskstate-migrate:".bytes().chain(schema.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

use taskstate_core::redact_url as redact;

impl StateBackend for PostgresBackend {
    fn engine_name(&self) -> &'static str {
        ENGINE
    }

    fn upsert_invocations(&self, entries: &[(InvocationDTO, CallDTO)]) -> Result<()> {
        for (inv, call) in entries {
            check_invocation_pair(inv, call)?;
        }
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

    fn get_invocation(&self, id: &InvocationId) -> Result<(InvocationDTO, CallDTO)> {
        let k = id.as_str();
        self.read("get invocation", false, |tx| {
            let rows = self.q(tx, &self.sql.get_invocation, &[&k])?;
            let r = rows
                .first()
                .ok_or_else(|| Error::not_found(Entity::Invocation, k))?;
            let call_id: CallId = self
                .col::<String>(r, 0, "invocations", k)?
                .parse()
                .map_err(|e| self.corrupt("invocations", k, e))?;
            let args =
                SerializedArguments::from_json(&self.col::<String>(r, 1, "invocations", k)?)
                    .map_err(|e| self.corrupt("invocations", k, e))?;
            let workflow_type: TaskId = self
                .col::<String>(r, 4, "invocations", k)?
                .parse()
                .map_err(|e| self.corrupt("invocations", k, e))?;
            // An empty optional id reads as absent, as in every reader.
            let opt_id = |i: usize| -> Result<Option<InvocationId>> {
                Ok(self
                    .col::<Option<String>>(r, i, "invocations", k)?
                    .filter(|p| !p.is_empty())
                    .map(InvocationId::new))
            };
            Ok((
                InvocationDTO {
                    invocation_id: id.clone(),
                    call_id: call_id.clone(),
                    workflow: WorkflowIdentity {
                        workflow_id: InvocationId::new(self.col::<String>(
                            r,
                            3,
                            "invocations",
                            k,
                        )?),
                        workflow_type,
                        parent_workflow_id: opt_id(5)?,
                    },
                    parent_invocation_id: opt_id(2)?,
                },
                CallDTO {
                    call_id,
                    serialized_arguments: args,
                },
            ))
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
        for r in records {
            check_history_row(r)?;
        }
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
            self.q(tx, &self.sql.get_history, &[&id.as_str()])?
                .iter()
                .map(|r| {
                    let record = self.decode_history(r, 0, 1)?;
                    let time_key = r
                        .try_get::<_, f64>(2)
                        .ok()
                        .filter(|k| k.is_finite())
                        .ok_or_else(|| {
                            self.corrupt("history", id.as_str(), "ts_key is not a finite number")
                        })?;
                    Ok(taskstate_core::StoredHistory {
                        record,
                        time_key: taskstate_core::TimeKey::from_seconds(time_key),
                    })
                })
                .collect()
        })
    }

    fn invocation_ids_in_timerange(
        &self,
        range: &TimeRange,
        after: Option<&Cursor>,
        page_size: usize,
    ) -> Result<Page<InvocationId>> {
        check_page_size(page_size)?;
        let after = after.map(Cursor::id_position).transpose()?;
        let (lo, hi, n) = (
            range.start.key().seconds(),
            range.end.key().seconds(),
            fetch_limit(page_size),
        );
        let found = match &after {
            None => self.ids(&self.sql.ids_range_first, &[&lo, &hi, &n])?,
            Some(a) => self.ids(&self.sql.ids_range_after, &[&lo, &hi, &n, &a.as_str()])?,
        };
        Ok(Page::from_ids(found, page_size))
    }

    fn history_in_timerange(
        &self,
        range: &TimeRange,
        after: Option<&Cursor>,
        page_size: usize,
    ) -> Result<Page<InvocationHistory>> {
        check_page_size(page_size)?;
        let after = after
            .map(Cursor::history_position)
            .transpose()?
            .map(|(k, t)| (k.seconds(), t));
        let (lo, hi, n) = (
            range.start.key().seconds(),
            range.end.key().seconds(),
            fetch_limit(page_size),
        );
        let rows = self.read("history in range", false, |tx| {
            let rows = match after {
                None => self.q(tx, &self.sql.history_first, &[&lo, &hi, &n])?,
                Some((ts, seq)) => {
                    self.q(tx, &self.sql.history_after, &[&lo, &hi, &n, &ts, &seq])?
                }
            };
            rows.iter()
                .map(|r| {
                    Ok((
                        (
                            self.col::<f64>(r, 0, "history", "?")?,
                            self.col::<i64>(r, 1, "history", "?")?,
                        ),
                        self.decode_history(r, 2, 3)?,
                    ))
                })
                .collect::<Result<Vec<_>>>()
        })?;
        Ok(Page::from_rows(rows, page_size, |(ts, seq)| {
            Cursor::after_history(taskstate_core::TimeKey::from_seconds(*ts), *seq)
        }))
    }

    fn set_result(&self, id: &InvocationId, result: &str) -> Result<()> {
        check_invocation_id(id)?;
        self.write("set result", false, |tx| {
            tx.execute(&self.sql.set_result, &[&id.as_str(), &result])
                .map(drop)
        })
    }

    fn get_result(&self, id: &InvocationId) -> Result<String> {
        self.get_text(&self.sql.get_result, id, Entity::Result)
    }

    fn set_exception(&self, id: &InvocationId, exception: &str) -> Result<()> {
        check_invocation_id(id)?;
        self.write("set exception", false, |tx| {
            tx.execute(&self.sql.set_exception, &[&id.as_str(), &exception])
                .map(drop)
        })
    }

    fn get_exception(&self, id: &InvocationId) -> Result<String> {
        self.get_text(&self.sql.get_exception, id, Entity::Exception)
    }

    fn store_workflow_run(&self, workflow: &WorkflowIdentity) -> Result<()> {
        check_workflow(workflow)?;
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

    fn get_all_workflow_runs(&self) -> Result<Vec<WorkflowIdentity>> {
        self.workflow_runs(None)
    }

    fn get_workflow_runs(&self, workflow_type: &TaskId) -> Result<Vec<WorkflowIdentity>> {
        self.workflow_runs(Some(workflow_type))
    }

    fn store_workflow_sub_invocation(
        &self,
        workflow_id: &InvocationId,
        sub_invocation: &InvocationId,
    ) -> Result<()> {
        check_sub_invocation(workflow_id, sub_invocation)?;
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
        check_workflow_data(workflow_id, key)?;
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
        check_app_info(info)?;
        let json = info.to_json();
        self.write("store app info", false, |tx| {
            tx.execute(&self.sql.upsert_app, &[&info.app_id, &json])
                .map(drop)
        })
    }

    fn get_app_info(&self, app_id: &str) -> Result<AppInfo> {
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
        check_runner_context(ctx)?;
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
        bulk::write_rows(self, rows)
    }

    fn check_row(&self, row: &BulkRow) -> Result<()> {
        bulk::check_row(row)
    }

    fn purge(&self) -> Result<()> {
        self.write("purge", false, |tx| tx.batch_execute(&self.sql.purge))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(check_schema_name("taskstate").is_ok());
        assert!(check_schema_name("t_1").is_ok());
        for bad in [
            "",
            "1abc",
            "a-b",
            "a\"b",
            "x; DROP SCHEMA public",
            &"a".repeat(64),
        ] {
            assert!(check_schema_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lock_keys_differ_per_schema() {
        assert_ne!(schema_lock_key("a"), schema_lock_key("b"));
        assert_eq!(schema_lock_key("a"), schema_lock_key("a"));
    }
}
