//! `taskstate bench serve`: the web monitor's latency under load. Builds
//! (or reuses) a store, serves it read-only on a loopback port, and drives
//! every page with C concurrent keep-alive clients for S seconds each,
//! reporting p50/p90/p99/max and requests per second per page.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;
use taskstate::bench::retention::{self, RetentionStore};
use taskstate::serve::{Monitor, encode_component as enc, run};
use taskstate::{InvocationFilter, Timestamp, redact_url};

use crate::{CliResult, emit, open_for_reading, open_url};

/// `taskstate bench serve` arguments.
#[derive(clap::Args)]
pub(crate) struct BenchServeArgs {
    /// Store to serve. Filled with the retention bench's store of --n
    /// invocations first if it holds none (default: a SQLite file in a
    /// temp dir).
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Invocations to build when the store is empty (1 to 20,000,000).
    #[arg(long, default_value_t = 100_000, value_parser = crate::bounded::<1, 20_000_000>)]
    n: usize,
    /// Concurrent clients (1 to 256).
    #[arg(long, default_value_t = 8, value_parser = crate::bounded::<1, 256>)]
    clients: usize,
    /// Seconds of load per page (1 to 600).
    #[arg(long, default_value_t = 5, value_parser = crate::bounded::<1, 600>)]
    seconds: usize,
    /// Write the results as JSON to PATH.
    #[arg(long, value_name = "PATH")]
    json: Option<std::path::PathBuf>,
    /// Seed of the built store (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
}

/// One keep-alive HTTP/1.1 connection (responses carry Content-Length).
struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Result<Self, String> {
        let s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = s.set_nodelay(true);
        Ok(Client {
            reader: BufReader::new(s),
        })
    }

    /// The status code and body length of `GET path`.
    fn get(&mut self, path: &str) -> Result<(u16, usize), String> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: keep-alive\r\n\r\n");
        self.reader
            .get_mut()
            .write_all(req.as_bytes())
            .map_err(|e| format!("send: {e}"))?;
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .map_err(|e| format!("read: {e}"))?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| format!("bad status line {line:?}"))?;
        let mut length = None;
        loop {
            line.clear();
            self.reader
                .read_line(&mut line)
                .map_err(|e| format!("read: {e}"))?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse::<usize>().ok();
            }
        }
        let n = length.ok_or("response without Content-Length")?;
        let mut body = vec![0u8; n];
        self.reader
            .read_exact(&mut body)
            .map_err(|e| format!("read body: {e}"))?;
        Ok((status, n))
    }
}

struct PageResult {
    sorted: Vec<Duration>,
    errors: u64,
    bytes: usize,
    elapsed: Duration,
    first_error: Option<String>,
}

fn load(addr: SocketAddr, path: &str, clients: usize, seconds: usize) -> PageResult {
    let deadline = Instant::now() + Duration::from_secs(seconds as u64);
    let start = Instant::now();
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        for _ in 0..clients {
            let tx = tx.clone();
            s.spawn(move || {
                let mut lat = Vec::new();
                let (mut errors, mut bytes, mut first_error) = (0u64, 0usize, None);
                let mut client = None;
                while Instant::now() < deadline {
                    if client.is_none() {
                        match Client::connect(addr) {
                            Ok(c) => client = Some(c),
                            Err(e) => {
                                errors += 1;
                                first_error.get_or_insert(e);
                                continue;
                            }
                        }
                    }
                    let Some(c) = client.as_mut() else { continue };
                    let t = Instant::now();
                    match c.get(path) {
                        Ok((200, n)) => {
                            lat.push(t.elapsed());
                            bytes = n;
                        }
                        Ok((code, _)) => {
                            errors += 1;
                            first_error.get_or_insert(format!("HTTP {code}"));
                        }
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert(e);
                            client = None;
                        }
                    }
                }
                let _ = tx.send((lat, errors, bytes, first_error));
            });
        }
    });
    drop(tx);
    let mut out = PageResult {
        sorted: Vec::new(),
        errors: 0,
        bytes: 0,
        elapsed: start.elapsed(),
        first_error: None,
    };
    for (lat, errors, bytes, first) in rx {
        out.sorted.extend(lat);
        out.errors += errors;
        out.bytes = out.bytes.max(bytes);
        if out.first_error.is_none() {
            out.first_error = first;
        }
    }
    out.sorted.sort();
    out
}

/// The `q` quantile of ascending latencies, in milliseconds.
fn quantile(sorted: &[Duration], q: f64) -> Option<f64> {
    retention::nearest_rank(sorted, q).map(|d| d.as_secs_f64() * 1e3)
}

pub(crate) fn cmd_bench_serve(args: &BenchServeArgs) -> CliResult {
    let tmp = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let url = args
        .store
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", tmp.path().join("serve.db").display()));
    let shown = redact_url(&url);
    {
        let store = open_url(&url)?;
        let empty = store
            .list_invocations(&InvocationFilter::default(), None, 1)
            .map_err(|e| format!("{shown}: {e}"))?
            .items
            .is_empty();
        if empty {
            let spec = RetentionStore {
                invocations: args.n,
                expired: 0.9,
                seed: args
                    .seed
                    .unwrap_or_else(|| Timestamp::now().micros().unsigned_abs()),
            };
            let t = Instant::now();
            let mut last = Instant::now();
            retention::fill(store.as_ref(), &spec, Timestamp::now(), &mut |done, of| {
                if last.elapsed() > Duration::from_secs(10) {
                    last = Instant::now();
                    let _ = writeln!(std::io::stderr(), "filling: {done}/{of}");
                }
            })
            .map_err(|e| format!("{shown}: fill: {e}"))?;
            let _ = writeln!(
                std::io::stderr(),
                "filled {} invocations in {:.1} s",
                args.n,
                t.elapsed().as_secs_f64()
            );
        }
    }
    let store: Arc<dyn taskstate::StateBackend> = Arc::from(open_for_reading(&url)?);
    // What the pages will ask for, taken from the store itself.
    let fail = |e: taskstate::Error| format!("{shown}: {e}");
    let first = store
        .list_invocations(&InvocationFilter::default(), None, 1)
        .map_err(fail)?;
    let some_id = first
        .items
        .first()
        .map(|s| s.invocation_id.to_string())
        .ok_or("the store has no invocation with history")?;
    // A one-day window a day before the newest status change.
    let newest = first
        .items
        .first()
        .map_or(0, |s| s.time_key.to_timestamp().micros());
    let day = 86_400_000_000;
    let window = format!(
        "since={}&until={}",
        enc(&Timestamp::from_micros(newest - 2 * day).to_string()),
        enc(&Timestamp::from_micros(newest - day).to_string())
    );
    let mut cursor = None;
    for _ in 0..100 {
        let p = store
            .list_invocations(&InvocationFilter::default(), cursor.as_ref(), 50)
            .map_err(fail)?;
        match p.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let deep = cursor.map(|c| c.token().to_owned()).unwrap_or_default();
    let types = store.get_all_workflow_types().map_err(fail)?;
    let ty = types
        .first()
        .map(|t| t.key().to_owned())
        .unwrap_or_default();
    let wf = match types.first() {
        Some(t) => store
            .get_workflow_runs(t)
            .map_err(fail)?
            .first()
            .map(|w| w.workflow_id.to_string())
            .unwrap_or_default(),
        None => some_id.clone(),
    };
    let task = store
        .get_invocation(&taskstate::InvocationId::new(&some_id))
        .map_err(fail)?
        .1
        .call_id
        .task_id()
        .key()
        .to_owned();
    let pages: Vec<(String, String)> = vec![
        ("overview".into(), "/".into()),
        ("invocations".into(), "/invocations".into()),
        (
            "invocations, page 101".into(),
            format!("/invocations?after={}", enc(&deep)),
        ),
        (
            "invocations?status=running".into(),
            "/invocations?status=running".into(),
        ),
        (
            "invocations?status=failed&task".into(),
            format!("/invocations?status=failed&task={}", enc(&task)),
        ),
        (
            "invocations?since&until".into(),
            format!("/invocations?{window}"),
        ),
        (
            "invocation detail".into(),
            format!("/invocations/{}", enc(&some_id)),
        ),
        ("workflows".into(), "/workflows".into()),
        (
            "workflows?type".into(),
            format!("/workflows?type={}", enc(&ty)),
        ),
        ("workflow tree".into(), format!("/workflows/{}", enc(&wf))),
        ("runners?q".into(), "/runners?q=runner".into()),
        ("timeline".into(), "/timeline".into()),
        (
            "api/invocations".into(),
            "/api/invocations?status=success".into(),
        ),
        (
            "api/invocation".into(),
            format!("/api/invocations/{}", enc(&some_id)),
        ),
    ];
    let app = Monitor::new(Arc::clone(&store), None);
    let (tx, rx) = mpsc::channel();
    // The server runs until the process ends with this command.
    std::thread::spawn(move || {
        let sent = tx.clone();
        if let Err(e) = run(app, SocketAddr::from(([127, 0, 0, 1], 0)), move |a| {
            let _ = sent.send(Ok(a));
        }) {
            let _ = tx.send(Err(e));
        }
    });
    let addr = rx
        .recv()
        .map_err(|_| "the server did not start".to_owned())??;
    // Warm up: the overview's first visit reads its counts.
    for (_, path) in &pages {
        let _ = Client::connect(addr).and_then(|mut c| c.get(path));
    }
    let mut text = format!(
        "{shown}: {} clients, {} s per page\n{:<32} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>8}\n",
        args.clients,
        args.seconds,
        "page",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "errors",
        "bytes"
    );
    let mut rows = Vec::new();
    for (name, path) in &pages {
        let r = load(addr, path, args.clients, args.seconds);
        let rate = r.sorted.len() as f64 / r.elapsed.as_secs_f64();
        let f = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
        text.push_str(&format!(
            "{name:<32} {rate:>9.1} {:>9} {:>9} {:>9} {:>9} {:>7} {:>8}\n",
            f(quantile(&r.sorted, 0.5)),
            f(quantile(&r.sorted, 0.9)),
            f(quantile(&r.sorted, 0.99)),
            f(r.sorted.last().map(|d| d.as_secs_f64() * 1e3)),
            r.errors,
            r.bytes
        ));
        if let Some(e) = &r.first_error {
            text.push_str(&format!("  first error: {e}\n"));
        }
        rows.push(json!({
            "page": name, "path": path, "requests": r.sorted.len(), "requests_per_s": rate,
            "p50_ms": quantile(&r.sorted, 0.5), "p90_ms": quantile(&r.sorted, 0.9),
            "p99_ms": quantile(&r.sorted, 0.99), "max_ms": r.sorted.last().map(|d| d.as_secs_f64() * 1e3),
            "errors": r.errors, "first_error": r.first_error, "bytes": r.bytes,
        }));
    }
    emit(&text)?;
    if let Some(p) = &args.json {
        let doc = json!({"store": shown, "clients": args.clients, "seconds": args.seconds, "pages": rows});
        std::fs::write(p, format!("{doc:#}\n")).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}
