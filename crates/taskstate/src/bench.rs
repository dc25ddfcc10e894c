//! The reference workload of SPEC §7 and its runner: the same invocations,
//! histories and results the Python reference is measured with, timed per
//! operation on any engine, plus the raw-SQLite baseline (the same SQL
//! statements issued directly through rusqlite, one per operation).
//!
//! Every operation's outputs are checked after timing; a result's
//! `validation` is `"ok"` only if they were all correct.

use std::time::Instant;

use serde_json::json;
use taskstate_core::{
    CallDTO, DEFAULT_PAGE_SIZE, InvocationDTO, InvocationHistory, InvocationId, InvocationStatus,
    InvocationStatusRecord, Result, RunnerId, SerializedArguments, StateBackend, TaskId, TimeRange,
    Timestamp, WorkflowIdentity,
};

/// The timed operations, in the order they run.
pub const OPS: [&str; 9] = [
    "upsert_invocations",
    "add_histories",
    "set_result",
    "get_invocation",
    "get_history",
    "get_result",
    "get_child_invocations",
    "iter_invocations_in_timerange",
    "iter_history_in_timerange",
];

/// The write operations (also run with several threads).
pub const WRITE_OPS: [&str; 3] = ["upsert_invocations", "add_histories", "set_result"];

const TASKS: [&str; 4] = [
    "pynenc_bench.tasks.process_order",
    "pynenc_bench.tasks.charge_card",
    "pynenc_bench.tasks.shipping.book_courier",
    "pynenc_bench.tasks.send_email",
];
const RUNNER: &str = "bench-runner-0001";
const GROUP: usize = 50;

/// xorshift64*: uuid4s need randomness, not cryptography.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn uuid4(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        let hi = (a & !0xF000) | 0x4000; // version 4
        let lo = (b & !(0xC << 60)) | (0x8 << 60); // variant 10
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xFFFF,
            hi & 0xFFFF,
            lo >> 48,
            lo & 0xFFFF_FFFF_FFFF
        )
    }
}

/// The workload, built before anything is timed.
pub struct Workload {
    /// The invocations with their calls, in order i = 0..N.
    pub pairs: Vec<(InvocationDTO, CallDTO)>,
    /// Three records per invocation, record 3i + k is step k of invocation i.
    pub histories: Vec<InvocationHistory>,
    /// Result i of invocation i.
    pub results: Vec<String>,
    /// Expected children of invocation i, ascending.
    pub children: Vec<Vec<InvocationId>>,
    /// The time range holding every record.
    pub range: TimeRange,
}

fn task(i: usize) -> TaskId {
    TASKS[i]
        .parse()
        .unwrap_or_else(|e| panic!("built-in task key {}: {e}", TASKS[i]))
}

impl Workload {
    /// Builds the SPEC §7 workload of `n` invocations; `seed` picks the uuids.
    #[must_use]
    pub fn build(n: usize, seed: u64) -> Self {
        let mut rng = Rng(seed | 1);
        let ids: Vec<InvocationId> = (0..n).map(|_| InvocationId::new(rng.uuid4())).collect();
        let t0 = Timestamp::now().add_micros(-3_600_000_000);
        let mut pairs = Vec::with_capacity(n);
        let mut histories = Vec::with_capacity(3 * n);
        let mut results = Vec::with_capacity(n);
        let mut children = vec![Vec::new(); n];
        for i in 0..n {
            let (root, j) = (i - i % GROUP, i % GROUP);
            let (task_id, parent) = if j == 0 {
                (task(0), None)
            } else {
                (task(1 + i % 3), Some(root + (j - 1) / 4))
            };
            let items: Vec<String> = (0..3)
                .map(|k| {
                    format!(
                        "{{\"sku\": \"SKU-{:04}\", \"qty\": {}}}",
                        (7 * i + k) % 1000,
                        1 + (i + k) % 5
                    )
                })
                .collect();
            let args = SerializedArguments::from_pairs([
                ("order_id", (100_000 + i).to_string()),
                ("customer", format!("\"customer-{:04}\"", i % 97)),
                ("items", format!("[{}]", items.join(", "))),
                (
                    "priority",
                    if i % 10 == 0 {
                        "\"high\""
                    } else {
                        "\"normal\""
                    }
                    .to_owned(),
                ),
            ]);
            let call = CallDTO::new(task_id, args);
            if let Some(p) = parent {
                children[p].push(ids[i].clone());
            }
            pairs.push((
                InvocationDTO {
                    invocation_id: ids[i].clone(),
                    call_id: call.call_id.clone(),
                    workflow: WorkflowIdentity {
                        workflow_id: ids[root].clone(),
                        workflow_type: task(0),
                        parent_workflow_id: None,
                    },
                    parent_invocation_id: parent.map(|p| ids[p].clone()),
                },
                call,
            ));
            for (k, status) in [
                InvocationStatus::Registered,
                InvocationStatus::Pending,
                InvocationStatus::Running,
            ]
            .into_iter()
            .enumerate()
            {
                let ts = t0.add_micros(10 * (3 * i + k) as i64);
                let registered = k == 0;
                histories.push(InvocationHistory {
                    invocation_id: ids[i].clone(),
                    timestamp: ts,
                    status_record: InvocationStatusRecord {
                        status,
                        runner_id: (!registered).then(|| RunnerId::new(RUNNER)),
                        timestamp: ts,
                    },
                    runner_context_id: RunnerId::new(RUNNER),
                    registered_by_inv_id: if registered {
                        parent.map(|p| ids[p].clone())
                    } else {
                        None
                    },
                });
            }
            results.push(format!(
                "{{\"order_id\": {}, \"total_cents\": {}, \"status\": \"charged\"}}",
                100_000 + i,
                1999 + i
            ));
        }
        for c in &mut children {
            c.sort();
        }
        let t_end = t0.add_micros(10 * (3 * n) as i64);
        Self {
            pairs,
            histories,
            results,
            children,
            range: TimeRange::new(t0, t_end),
        }
    }

    /// Number of invocations.
    #[must_use]
    pub fn n(&self) -> usize {
        self.pairs.len()
    }

    /// Every invocation id, ascending.
    #[must_use]
    pub fn sorted_ids(&self) -> Vec<InvocationId> {
        let mut ids: Vec<_> = self
            .pairs
            .iter()
            .map(|(i, _)| i.invocation_id.clone())
            .collect();
        ids.sort();
        ids
    }
}

/// What a full history scan returned: decoded records (engines) or the
/// stored JSON text (raw baselines, which do not decode). Compared with
/// the workload only after timing.
#[derive(Debug)]
pub enum Scanned {
    /// Records, as an engine returns them.
    Records(Vec<InvocationHistory>),
    /// JSON text, as the raw baselines read it.
    Json(Vec<String>),
}

impl Scanned {
    /// Number of records.
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            Scanned::Records(r) => r.len(),
            Scanned::Json(j) => j.len(),
        }
    }

    /// Whether nothing was returned.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether these are exactly the workload's records, in order.
    #[must_use]
    pub fn matches(&self, w: &Workload) -> bool {
        self.len() == w.histories.len()
            && match self {
                Scanned::Records(r) => r[..] == w.histories[..],
                Scanned::Json(j) => j
                    .iter()
                    .zip(&w.histories)
                    .all(|(got, want)| *got == want.to_json()),
            }
    }
}

/// One measured operation.
#[derive(Clone, Debug)]
pub struct OpResult {
    /// Engine name (`memory`, `sqlite`, `raw-sqlite`, or a URL).
    pub engine: String,
    /// Operation name (one of [`OPS`]).
    pub op: &'static str,
    /// Items processed.
    pub n: usize,
    /// Threads sharing the engine.
    pub threads: usize,
    /// Wall time.
    pub seconds: f64,
    /// `"ok"`, or what was wrong with the outputs.
    pub validation: String,
}

impl OpResult {
    /// Operations per second.
    #[must_use]
    pub fn ops_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.n as f64 / self.seconds
        } else {
            f64::INFINITY
        }
    }

    /// The JSON entry of the `--json` report.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "engine": self.engine,
            "op": self.op,
            "n": self.n,
            "threads": self.threads,
            "seconds": self.seconds,
            "ops_per_s": self.ops_per_s(),
            "validation": self.validation,
        })
    }
}

fn verdict(ok: bool, what: impl FnOnce() -> String) -> String {
    if ok { "ok".to_owned() } else { what() }
}

fn first_error<T>(results: Vec<Result<T>>) -> std::result::Result<Vec<T>, String> {
    results
        .into_iter()
        .collect::<Result<Vec<_>>>()
        .map_err(|e| format!("error: {e}"))
}

/// Runs `body(i)` for i in 0..n on `threads` threads (contiguous slices),
/// returning the wall time and each call's output in index order.
fn timed<T: Send>(n: usize, threads: usize, body: impl Fn(usize) -> T + Sync) -> (f64, Vec<T>) {
    let start = Instant::now();
    let out = if threads <= 1 {
        (0..n).map(&body).collect()
    } else {
        let chunk = n.div_ceil(threads);
        let body = &body;
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    s.spawn(move || {
                        (t * chunk..((t + 1) * chunk).min(n))
                            .map(body)
                            .collect::<Vec<T>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        })
    };
    (start.elapsed().as_secs_f64(), out)
}

/// The operations an engine under test offers the bench: the trait's, or
/// raw SQL for the baseline.
pub trait BenchTarget: Sync {
    /// Upserts invocation `i`.
    fn upsert(&self, w: &Workload, i: usize) -> Result<()>;
    /// Adds history record `r`.
    fn add_history(&self, w: &Workload, r: usize) -> Result<()>;
    /// Sets result `i`.
    fn set_result(&self, w: &Workload, i: usize) -> Result<()>;
    /// Reads invocation `i` back; true when it equals the input.
    fn check_invocation(&self, w: &Workload, i: usize) -> Result<bool>;
    /// Reads the history of invocation `i`; true when it is the 3 records.
    fn check_history(&self, w: &Workload, i: usize) -> Result<bool>;
    /// Reads result `i`; true when equal.
    fn check_result(&self, w: &Workload, i: usize) -> Result<bool>;
    /// Reads children of invocation `i`; true when equal.
    fn check_children(&self, w: &Workload, i: usize) -> Result<bool>;
    /// Full scan of ids in the workload range; the ids, in order.
    fn scan_ids(&self, w: &Workload) -> Result<Vec<String>>;
    /// Full scan of history in the workload range.
    fn scan_history(&self, w: &Workload) -> Result<Scanned>;
}

impl<B: StateBackend + ?Sized> BenchTarget for B {
    fn upsert(&self, w: &Workload, i: usize) -> Result<()> {
        self.upsert_invocations(std::slice::from_ref(&w.pairs[i]))
    }
    fn add_history(&self, w: &Workload, r: usize) -> Result<()> {
        self.add_histories(std::slice::from_ref(&w.histories[r]))
    }
    fn set_result(&self, w: &Workload, i: usize) -> Result<()> {
        StateBackend::set_result(self, &w.pairs[i].0.invocation_id, &w.results[i])
    }
    fn check_invocation(&self, w: &Workload, i: usize) -> Result<bool> {
        Ok(self.get_invocation(&w.pairs[i].0.invocation_id)? == w.pairs[i])
    }
    fn check_history(&self, w: &Workload, i: usize) -> Result<bool> {
        Ok(self.get_history(&w.pairs[i].0.invocation_id)? == w.histories[3 * i..3 * i + 3])
    }
    fn check_result(&self, w: &Workload, i: usize) -> Result<bool> {
        Ok(self.get_result(&w.pairs[i].0.invocation_id)? == w.results[i])
    }
    fn check_children(&self, w: &Workload, i: usize) -> Result<bool> {
        Ok(self.get_child_invocations(&w.pairs[i].0.invocation_id)? == w.children[i])
    }
    fn scan_ids(&self, w: &Workload) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for page in self.iter_invocations_in_timerange(w.range, DEFAULT_PAGE_SIZE) {
            out.extend(page?.into_iter().map(InvocationId::into_string));
        }
        Ok(out)
    }
    fn scan_history(&self, w: &Workload) -> Result<Scanned> {
        let mut out = Vec::new();
        for page in self.iter_history_in_timerange(w.range, DEFAULT_PAGE_SIZE) {
            out.extend(page?);
        }
        Ok(Scanned::Records(out))
    }
}

fn check_all(
    n: usize,
    threads: usize,
    f: impl Fn(usize) -> Result<bool> + Sync,
    what: &str,
) -> (f64, String) {
    let (secs, out) = timed(n, threads, f);
    let v = match first_error(out) {
        Ok(oks) => {
            let bad = oks.iter().filter(|ok| !**ok).count();
            verdict(bad == 0, || {
                format!("{bad} of {n} {what} differ from the input")
            })
        }
        Err(e) => e,
    };
    (secs, v)
}

/// One write of the workload, by item index.
type WriteFn<'a> = dyn Fn(usize) -> Result<()> + Sync + 'a;

/// Runs the write operations with `threads` threads on `target`, then the
/// (single-thread) reads that validate them, and, when `reads`, times the
/// read operations too. Returns one result per timed operation.
pub fn run<T: BenchTarget + ?Sized>(
    engine: &str,
    target: &T,
    w: &Workload,
    threads: usize,
    reads: bool,
    progress: &mut dyn FnMut(&str),
) -> Vec<OpResult> {
    let n = w.n();
    let mut out = Vec::new();
    let mut push = |op: &'static str, items: usize, t: usize, secs: f64, validation: String| {
        out.push(OpResult {
            engine: engine.to_owned(),
            op,
            n: items,
            threads: t,
            seconds: secs,
            validation,
        });
    };
    let writes: [(&'static str, usize, &WriteFn<'_>); 3] = [
        ("upsert_invocations", n, &|i| target.upsert(w, i)),
        ("add_histories", 3 * n, &|r| target.add_history(w, r)),
        ("set_result", n, &|i| target.set_result(w, i)),
    ];
    let mut write_times = Vec::new();
    for (op, items, f) in writes {
        progress(op);
        let (secs, res) = timed(items, threads, f);
        write_times.push((op, items, secs, first_error(res).err()));
    }
    // Reads, timed (single thread) and checked; they validate the writes.
    progress("get_invocation");
    let (s_inv, v_inv) = check_all(n, 1, |i| target.check_invocation(w, i), "invocations");
    progress("get_history");
    let (s_his, v_his) = check_all(n, 1, |i| target.check_history(w, i), "histories");
    progress("get_result");
    let (s_res, v_res) = check_all(n, 1, |i| target.check_result(w, i), "results");
    for (op, items, secs, err) in write_times {
        let read_check = match op {
            "upsert_invocations" => &v_inv,
            "add_histories" => &v_his,
            _ => &v_res,
        };
        let v = err.unwrap_or_else(|| read_check.clone());
        push(op, items, threads, secs, v);
    }
    if !reads {
        return out;
    }
    push("get_invocation", n, 1, s_inv, v_inv);
    push("get_history", n, 1, s_his, v_his);
    push("get_result", n, 1, s_res, v_res);
    progress("get_child_invocations");
    let (s, v) = check_all(n, 1, |i| target.check_children(w, i), "child lists");
    push("get_child_invocations", n, 1, s, v);

    progress("iter_invocations_in_timerange");
    let start = Instant::now();
    let ids = target.scan_ids(w);
    let secs = start.elapsed().as_secs_f64();
    let want: Vec<String> = w
        .sorted_ids()
        .into_iter()
        .map(InvocationId::into_string)
        .collect();
    let v = match ids {
        Ok(ids) => verdict(ids == want, || {
            format!("scan returned {} ids, expected {}", ids.len(), want.len())
        }),
        Err(e) => format!("error: {e}"),
    };
    push("iter_invocations_in_timerange", n, 1, secs, v);

    progress("iter_history_in_timerange");
    let start = Instant::now();
    let recs = target.scan_history(w);
    let secs = start.elapsed().as_secs_f64();
    let v = match recs {
        Ok(recs) => {
            let ok = recs.matches(w);
            verdict(ok, || {
                format!(
                    "scan returned {} records, expected {} in order",
                    recs.len(),
                    w.histories.len()
                )
            })
        }
        Err(e) => format!("error: {e}"),
    };
    push("iter_history_in_timerange", 3 * n, 1, secs, v);
    out
}

/// Parameters of every write, encoded before timing (the raw baselines
/// bind them as they are).
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
struct Encoded {
    inv: Vec<[Option<String>; 9]>,
    /// (id, ts_key seconds, µs, status, json)
    hist: Vec<(String, f64, i64, &'static str, String)>,
}

#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
impl Encoded {
    fn new(w: &Workload) -> Self {
        let inv = w
            .pairs
            .iter()
            .map(|(i, c)| {
                [
                    Some(i.invocation_id.as_str().to_owned()),
                    Some(c.call_id.key().to_owned()),
                    Some(c.call_id.task_id().key().to_owned()),
                    Some(c.call_id.args_id().to_owned()),
                    Some(c.serialized_arguments.to_json()),
                    i.parent_invocation_id
                        .as_ref()
                        .map(|p| p.as_str().to_owned()),
                    Some(i.workflow.workflow_id.as_str().to_owned()),
                    Some(i.workflow.workflow_type.key().to_owned()),
                    i.workflow
                        .parent_workflow_id
                        .as_ref()
                        .map(|p| p.as_str().to_owned()),
                ]
            })
            .collect();
        let hist = w
            .histories
            .iter()
            .map(|h| {
                (
                    h.invocation_id.as_str().to_owned(),
                    h.timestamp.key().seconds(),
                    h.timestamp.micros(),
                    h.status_record.status.as_str(),
                    h.to_json(),
                )
            })
            .collect();
        Self { inv, hist }
    }

    /// Whether the columns of `GET_INVOCATION` read back for invocation `i`
    /// (call key, arguments, parent, workflow id, type, parent workflow)
    /// are what was written.
    fn invocation_matches(&self, i: usize, got: &[Option<String>; 6]) -> bool {
        let p = &self.inv[i];
        got.iter()
            .zip([&p[1], &p[4], &p[5], &p[6], &p[7], &p[8]])
            .all(|(g, w)| g == w)
    }

    /// Whether the history JSON read back for invocation `i` is its three
    /// records, in order.
    fn history_matches(&self, i: usize, got: &[String]) -> bool {
        got.len() == 3 && got.iter().zip(&self.hist[3 * i..]).all(|(g, h)| *g == h.4)
    }
}

/// Whether the child ids read back for invocation `i` are the expected ones.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
fn children_match(w: &Workload, i: usize, got: &[String]) -> bool {
    got.iter()
        .map(String::as_str)
        .eq(w.children[i].iter().map(InvocationId::as_str))
}

#[cfg(feature = "sqlite")]
pub use raw::RawSqlite;

#[cfg(feature = "postgres")]
pub use raw_pg::RawPostgres;

#[cfg(feature = "postgres")]
mod raw_pg {
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

    use super::{BenchTarget, Encoded, Workload};

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
            Ok(self
                .run(sql, params)?
                .iter()
                .map(|r| r.get::<_, String>(col))
                .collect())
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
        fn check_invocation(&self, _: &Workload, i: usize) -> Result<bool> {
            let p = &self.encoded.inv[i];
            let rows = self.run(&self.sql.get_invocation, &[&p[0]])?;
            let Some(r) = rows.first() else {
                return Ok(false);
            };
            let got: [Option<String>; 6] =
                [r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)];
            Ok(self.encoded.invocation_matches(i, &got))
        }
        fn check_history(&self, w: &Workload, i: usize) -> Result<bool> {
            let id = w.pairs[i].0.invocation_id.as_str();
            let got = self.strings(&self.sql.get_history, &[&id], 0)?;
            Ok(self.encoded.history_matches(i, &got))
        }
        fn check_result(&self, w: &Workload, i: usize) -> Result<bool> {
            let id = w.pairs[i].0.invocation_id.as_str();
            Ok(self.strings(&self.sql.get_result, &[&id], 0)? == [w.results[i].clone()])
        }
        fn check_children(&self, w: &Workload, i: usize) -> Result<bool> {
            let id = w.pairs[i].0.invocation_id.as_str();
            let got = self.strings(&self.sql.children, &[&id], 0)?;
            Ok(super::children_match(w, i, &got))
        }
        fn scan_ids(&self, w: &Workload) -> Result<Vec<String>> {
            let (lo, hi) = (w.range.start.key().seconds(), w.range.end.key().seconds());
            let page = super::DEFAULT_PAGE_SIZE as i64;
            let mut out: Vec<String> = Vec::new();
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
                    return Ok(out);
                }
            }
        }
        fn scan_history(&self, w: &Workload) -> Result<super::Scanned> {
            let (lo, hi) = (w.range.start.key().seconds(), w.range.end.key().seconds());
            let page = super::DEFAULT_PAGE_SIZE as i64;
            let mut out = Vec::new();
            let mut after: Option<(f64, i64)> = None;
            loop {
                let rows = match after {
                    None => self.run(&self.sql.history_first, &[&lo, &hi, &page])?,
                    Some((t, s)) => {
                        self.run(&self.sql.history_after, &[&lo, &hi, &page, &t, &s])?
                    }
                };
                let done = (rows.len() as i64) < page;
                after = rows
                    .last()
                    .map(|r| (r.get::<_, f64>(0), r.get::<_, i64>(1)));
                out.extend(rows.iter().map(|r| r.get::<_, String>(2)));
                if done {
                    return Ok(super::Scanned::Json(out));
                }
            }
        }
    }
}

#[cfg(feature = "sqlite")]
mod raw {
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

    use super::{BenchTarget, Workload};

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
        fn check_invocation(&self, _: &Workload, i: usize) -> Result<bool> {
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
                Ok(self.encoded.invocation_matches(i, &row))
            })
        }
        fn check_history(&self, w: &Workload, i: usize) -> Result<bool> {
            let id = w.pairs[i].0.invocation_id.as_str();
            self.with(|c| {
                let got = Self::strings(c, sql::GET_HISTORY, [id])?;
                Ok(self.encoded.history_matches(i, &got))
            })
        }
        fn check_result(&self, w: &Workload, i: usize) -> Result<bool> {
            let id = w.pairs[i].0.invocation_id.as_str();
            self.with(|c| Ok(Self::strings(c, sql::GET_RESULT, [id])? == [w.results[i].clone()]))
        }
        fn check_children(&self, w: &Workload, i: usize) -> Result<bool> {
            let id = w.pairs[i].0.invocation_id.as_str();
            self.with(|c| {
                let got = Self::strings(c, sql::CHILDREN, [id])?;
                Ok(super::children_match(w, i, &got))
            })
        }
        fn scan_ids(&self, w: &Workload) -> Result<Vec<String>> {
            let (lo, hi) = (w.range.start.key().seconds(), w.range.end.key().seconds());
            let page = super::DEFAULT_PAGE_SIZE as i64;
            self.with(|c| {
                let mut out: Vec<String> = Vec::new();
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
                        return Ok(out);
                    }
                }
            })
        }
        fn scan_history(&self, w: &Workload) -> Result<super::Scanned> {
            let (lo, hi) = (w.range.start.key().seconds(), w.range.end.key().seconds());
            let page = super::DEFAULT_PAGE_SIZE as i64;
            self.with(|c| {
                let mut out = Vec::new();
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_follows_spec_7() {
        let w = Workload::build(120, 7);
        assert_eq!(w.pairs.len(), 120);
        assert_eq!(w.histories.len(), 360);
        // Root of each group of 50.
        let (root, call) = &w.pairs[50];
        assert_eq!(root.parent_invocation_id, None);
        assert_eq!(
            call.call_id.task_id().key(),
            "pynenc_bench.tasks.process_order"
        );
        assert_eq!(root.workflow.workflow_id, root.invocation_id);
        // j = 5 → parent root + 1; task index 1 + i % 3.
        let (inv, call) = &w.pairs[55];
        assert_eq!(
            inv.parent_invocation_id.as_ref(),
            Some(&w.pairs[51].0.invocation_id)
        );
        assert_eq!(call.call_id.task_id().key(), TASKS[1 + 55 % 3]);
        assert_eq!(inv.workflow.workflow_id, w.pairs[50].0.invocation_id);
        let args = &call.serialized_arguments;
        assert_eq!(args.get("order_id"), Some("100055"));
        assert_eq!(args.get("customer"), Some("\"customer-0055\""));
        assert_eq!(
            args.get("items"),
            Some(
                "[{\"sku\": \"SKU-0385\", \"qty\": 1}, {\"sku\": \"SKU-0386\", \"qty\": 2}, {\"sku\": \"SKU-0387\", \"qty\": 3}]"
            )
        );
        assert_eq!(args.get("priority"), Some("\"normal\""));
        assert_eq!(
            w.pairs[60].1.serialized_arguments.get("priority"),
            Some("\"high\"")
        );
        // Histories: registered_by = parent; 10 µs steps.
        let h = &w.histories[3 * 55..3 * 55 + 3];
        assert_eq!(h[0].registered_by_inv_id, inv.parent_invocation_id);
        assert_eq!(h[0].status_record.runner_id, None);
        assert_eq!(
            h[2].status_record.runner_id.as_ref().map(RunnerId::as_str),
            Some(RUNNER)
        );
        assert_eq!(h[1].timestamp.micros() - h[0].timestamp.micros(), 10);
        assert_eq!(
            w.results[55],
            "{\"order_id\": 100055, \"total_cents\": 2054, \"status\": \"charged\"}"
        );
        // 4-ary tree: root's children are j = 1..4.
        assert_eq!(w.children[50].len(), 4);
        // uuid4 shape.
        let id = w.pairs[0].0.invocation_id.as_str();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn run_validates_memory_engine() {
        let w = Workload::build(200, 3);
        let b = taskstate_memory_for_tests();
        let results = run("memory", b.as_ref(), &w, 1, true, &mut |_| {});
        assert_eq!(results.len(), OPS.len());
        for r in &results {
            assert_eq!(r.validation, "ok", "{} {}", r.op, r.validation);
        }
        let threaded = run(
            "memory",
            taskstate_memory_for_tests().as_ref(),
            &w,
            4,
            false,
            &mut |_| {},
        );
        assert!(
            threaded
                .iter()
                .all(|r| r.validation == "ok" && r.threads == 4)
        );
    }

    #[test]
    fn run_reports_a_wrong_engine() {
        let w = Workload::build(60, 3);
        // An engine that drops every tenth result must fail validation.
        struct Lossy(Box<dyn StateBackend>);
        impl BenchTarget for Lossy {
            fn upsert(&self, w: &Workload, i: usize) -> Result<()> {
                self.0.upsert(w, i)
            }
            fn add_history(&self, w: &Workload, r: usize) -> Result<()> {
                self.0.add_history(w, r)
            }
            fn set_result(&self, w: &Workload, i: usize) -> Result<()> {
                if i % 10 == 0 {
                    Ok(())
                } else {
                    BenchTarget::set_result(self.0.as_ref(), w, i)
                }
            }
            fn check_invocation(&self, w: &Workload, i: usize) -> Result<bool> {
                self.0.check_invocation(w, i)
            }
            fn check_history(&self, w: &Workload, i: usize) -> Result<bool> {
                self.0.check_history(w, i)
            }
            fn check_result(&self, w: &Workload, i: usize) -> Result<bool> {
                self.0.check_result(w, i).or(Ok(false))
            }
            fn check_children(&self, w: &Workload, i: usize) -> Result<bool> {
                self.0.check_children(w, i)
            }
            fn scan_ids(&self, w: &Workload) -> Result<Vec<String>> {
                self.0.scan_ids(w)
            }
            fn scan_history(&self, w: &Workload) -> Result<Scanned> {
                self.0.scan_history(w)
            }
        }
        let lossy = Lossy(taskstate_memory_for_tests());
        let results = run("lossy", &lossy, &w, 1, true, &mut |_| {});
        let set = results
            .iter()
            .find(|r| r.op == "set_result")
            .map(|r| r.validation.clone());
        assert_eq!(
            set.as_deref(),
            Some("6 of 60 results differ from the input")
        );
        assert!(results.iter().filter(|r| r.validation == "ok").count() == OPS.len() - 2);
    }

    fn taskstate_memory_for_tests() -> Box<dyn StateBackend> {
        crate::open("memory://").unwrap_or_else(|e| panic!("{e}"))
    }
}
