//! The web monitor's handlers, called in process through the router: every
//! page and its JSON twin, hostile stored strings, bad parameters, ids that
//! need encoding, the token, and a read-only SQLite file left byte-identical.
#![cfg(feature = "serve")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use taskstate::memory::MemoryBackend;
use taskstate::serve::{Monitor, router};
use taskstate::{HistoryRow, InvocationStatus as S, RunnerContext, RunnerId, StateBackend};
use taskstate_conformance::data::{at, child, hist, id, root, runner, with_parent};
use tower::ServiceExt;

mod common;

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

fn call(app: &Arc<Monitor>, method: Method, uri: &str, headers: &[(&str, &str)]) -> Reply {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = router(Arc::clone(app))
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    })
}

fn get(app: &Arc<Monitor>, uri: &str) -> Reply {
    call(app, Method::GET, uri, &[])
}

fn json(app: &Arc<Monitor>, uri: &str) -> Value {
    let r = get(app, uri);
    assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.body);
    assert_eq!(
        r.headers[header::CONTENT_TYPE],
        "application/json; charset=utf-8"
    );
    serde_json::from_str(&r.body).unwrap()
}

const EVIL: &str = "<script>alert(\"x\")</script>' OR 1=1; --";

/// A workflow `wf` of three (root, two children: one failed, one running),
/// a plain task, and an invocation whose id, argument and runner id are
/// hostile.
fn store() -> Arc<dyn StateBackend> {
    let b = MemoryBackend::new();
    let thread: RunnerContext = with_parent(runner("runner-thread-1"), runner("runner-main"));
    b.store_runner_context(&thread).unwrap();
    b.upsert_invocations(&[
        root("wf", "shop.flow"),
        child("c1", "shop.step", Some("wf"), "wf"),
        child("c2", "shop.step", Some("wf"), "wf"),
        root("plain", "shop.other"),
    ])
    .unwrap();
    let mut rows = vec![];
    for (inv, steps) in [
        ("wf", vec![S::Registered, S::Pending, S::Running]),
        ("c1", vec![S::Registered, S::Pending, S::Running, S::Failed]),
        ("c2", vec![S::Registered, S::Pending, S::Running]),
        (
            "plain",
            vec![S::Registered, S::Pending, S::Running, S::Success],
        ),
    ] {
        for (i, s) in steps.into_iter().enumerate() {
            let mut h = hist(inv, s, at(10 * i as i64 + inv.len() as i64));
            h.runner_context_id = RunnerId::new("runner-thread-1");
            rows.push(h);
        }
    }
    b.add_histories(&rows).unwrap();
    b.set_result(
        &id("plain"),
        "{\"rows\": [1, 2], \"note\": \"</pre><b>x</b>\"}",
    )
    .unwrap();
    b.set_exception(&id("c1"), "{\"error\": \"boom\"}").unwrap();
    b.store_workflow_run(&taskstate_conformance::data::wf("wf", "shop.flow", None))
        .unwrap();

    // The hostile one.
    let evil_call = taskstate_conformance::data::call("shop.evil", &[("arg", EVIL)]);
    let (mut inv, c) = taskstate_conformance::data::with_call(EVIL, evil_call);
    inv.workflow.workflow_id = id(EVIL);
    b.upsert_invocations(&[(inv, c)]).unwrap();
    let evil_runner = runner(EVIL);
    b.store_runner_context(&evil_runner).unwrap();
    let mut h = hist(EVIL, S::Registered, at(100));
    h.runner_context_id = RunnerId::new(EVIL);
    b.add_history_rows(&[HistoryRow::own(&h)]).unwrap();
    Arc::new(b)
}

fn monitor() -> Arc<Monitor> {
    Monitor::new(store(), None)
}

fn enc(s: &str) -> String {
    percent_encode(s)
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn overview_counts_statuses_and_recent() {
    let app = monitor();
    let v = json(&app, "/api/overview");
    let counts: Vec<(String, u64)> =
        serde_json::from_value(v["figures"]["counts"].clone()).unwrap();
    assert!(
        counts.contains(&("invocations".to_owned(), 5)),
        "{counts:?}"
    );
    assert!(
        counts.contains(&("history records".to_owned(), 15)),
        "{counts:?}"
    );
    let statuses: Vec<(String, u64)> =
        serde_json::from_value(v["figures"]["statuses"].clone()).unwrap();
    assert_eq!(
        statuses,
        [
            ("failed".to_owned(), 1),
            ("registered".to_owned(), 1),
            ("running".to_owned(), 2),
            ("success".to_owned(), 1)
        ]
    );
    let recent: Vec<&str> = v["recent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["invocation_id"].as_str().unwrap())
        .collect();
    assert_eq!(recent[0], EVIL, "the newest status change comes first");
    assert_eq!(recent.len(), 5);

    let page = get(&app, "/");
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("<tr data-status=\"running\">"),
        "{}",
        page.body
    );
    assert!(page.body.contains("<td class=\"num\">2</td>"));
}

#[test]
fn invocation_list_filters_and_pages() {
    let app = monitor();
    let ids = |uri: &str| -> Vec<String> {
        json(&app, uri)["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["invocation_id"].as_str().unwrap().to_owned())
            .collect()
    };
    // Both at the same instant: ties go by id, descending.
    assert_eq!(ids("/api/invocations?status=running"), ["wf", "c2"]);
    assert_eq!(ids("/api/invocations?task=shop.step"), ["c1", "c2"]);
    assert_eq!(ids("/api/invocations?workflow=wf&status=failed"), ["c1"]);
    // One bound only: the other side is open.
    let since = enc(&at(31).to_string());
    assert_eq!(
        ids(&format!("/api/invocations?since={since}")),
        [EVIL, "plain", "c1"]
    );
    let until = enc(&at(14).to_string());
    assert_eq!(
        ids(&format!("/api/invocations?until={until}")),
        Vec::<String>::new()
    );
    let until = enc(&at(24).to_string());
    assert_eq!(
        ids(&format!("/api/invocations?until={until}")),
        ["wf", "c2"]
    );
    // Empty form fields are absent filters.
    assert_eq!(ids("/api/invocations?status=&task=&limit=50").len(), 5);
    // Pages of 2 cover all 5 once, in order.
    let mut all = Vec::new();
    let mut uri = "/api/invocations?limit=2".to_owned();
    loop {
        let v = json(&app, &uri);
        all.extend(
            v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["invocation_id"].as_str().unwrap().to_owned()),
        );
        match v["next"].as_str() {
            Some(next) => uri = format!("/api/invocations?limit=2&after={}", enc(next)),
            None => break,
        }
    }
    assert_eq!(all, ids("/api/invocations"));
    assert_eq!(all.len(), 5);
    // The page links to the next page and keeps the filters.
    let page = get(&app, "/invocations?task=shop.step&limit=1");
    assert!(
        page.body
            .contains("id=\"next\" href=\"/invocations?task=shop.step&amp;limit=1&amp;after="),
        "{}",
        page.body
    );
}

#[test]
fn invocation_detail_shows_call_history_runners_and_relations() {
    let app = monitor();
    let v = json(&app, "/api/invocations/c1");
    assert_eq!(v["task"], "shop.step");
    assert_eq!(v["parent_invocation_id"], "wf");
    assert_eq!(v["exception"], "{\n  \"error\": \"boom\"\n}");
    let statuses: Vec<&str> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["registered", "pending", "running", "failed"]);
    assert_eq!(v["history"][1]["since_previous_ms"], 10_000.0);
    assert_eq!(v["chain_valid"], true);
    assert_eq!(v["runners"][0]["runner_id"], "runner-thread-1");
    assert_eq!(v["runners"][0]["parents"][0], "runner-main");
    let root = json(&app, "/api/invocations/wf");
    assert_eq!(root["children"], serde_json::json!(["c1", "c2"]));
    let page = get(&app, "/invocations/plain");
    // The result's text is escaped inside <pre>, never markup.
    assert!(
        page.body.contains("&lt;/pre&gt;&lt;b&gt;x&lt;/b&gt;"),
        "{}",
        page.body
    );
    assert!(page.body.contains("id=\"history-timeline\""));
}

#[test]
fn workflow_tree_and_budget() {
    let b = MemoryBackend::new();
    let mut pairs = vec![root("big", "w.flow")];
    for i in 0..30 {
        pairs.push(child(&format!("n{i:02}"), "w.step", Some("big"), "big"));
    }
    for i in 0..3 {
        pairs.push(child(&format!("n00-{i}"), "w.step", Some("n00"), "big"));
    }
    b.upsert_invocations(&pairs).unwrap();
    b.add_histories(&[hist("n00", S::Running, at(1))]).unwrap();
    let app = Monitor::new(Arc::new(b), None);
    let v = json(&app, "/api/workflows/big");
    assert_eq!(v["members_total"], 34);
    assert_eq!(v["nodes"].as_array().unwrap().len(), 34);
    assert_eq!(v["truncated"], false);
    assert_eq!(v["nodes"][0]["invocation_id"], "big");
    assert_eq!(v["nodes"][1]["invocation_id"], "n00");
    assert_eq!(v["nodes"][1]["status"], "running");
    assert_eq!(v["nodes"][2]["invocation_id"], "n00-0");
    assert_eq!(v["nodes"][2]["depth"], 2);
    let small = json(&app, "/api/workflows/big?budget=10");
    assert_eq!(small["nodes"].as_array().unwrap().len(), 10);
    assert_eq!(small["truncated"], true);
    assert_eq!(small["nodes"][0]["hidden_children"], 21);
    let page = get(&app, "/workflows/big?budget=10");
    assert!(page.body.contains("id=\"more\""));
    assert!(
        page.body.contains("href=\"/workflows/big?budget=20\""),
        "{}",
        page.body
    );
    assert_eq!(get(&app, "/workflows/absent").status, StatusCode::NOT_FOUND);
}

#[test]
fn workflows_runners_and_timeline() {
    let app = monitor();
    let w = json(&app, "/api/workflows?type=shop.flow");
    assert_eq!(w["types"], serde_json::json!(["shop.flow"]));
    assert_eq!(w["runs"][0]["workflow_id"], "wf");
    assert_eq!(w["next"], Value::Null);
    let r = json(&app, "/api/runners?q=THREAD");
    assert_eq!(r["total"], 1);
    assert_eq!(r["runners"][0]["runner_id"], "runner-thread-1");
    // Literal: a pattern character matches only itself.
    assert_eq!(json(&app, "/api/runners?q=%25")["total"], 0);
    let t = json(
        &app,
        &format!(
            "/api/timeline?since={}&until={}",
            enc(&at(0).to_string()),
            enc(&at(60).to_string())
        ),
    );
    let lanes = t["lanes"].as_array().unwrap();
    assert_eq!(lanes.len(), 1, "{t}");
    assert_eq!(lanes[0]["runner_id"], "runner-thread-1");
    assert_eq!(t["rows"], 14);
    let page = get(&app, "/timeline");
    assert!(page.body.contains("<svg id=\"timeline\""), "{}", page.body);
    assert!(page.body.contains("class=\"lane\""));
}

#[test]
fn hostile_strings_render_as_text() {
    let app = monitor();
    let evil_href = format!("/invocations/{}", enc(EVIL));
    for uri in [
        "/".to_owned(),
        "/invocations".to_owned(),
        evil_href.clone(),
        format!("/workflows/{}", enc(EVIL)),
        "/runners".to_owned(),
        format!(
            "/timeline?since={}&until={}",
            enc(&at(0).to_string()),
            enc(&at(200).to_string())
        ),
    ] {
        let r = get(&app, &uri);
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.body);
        assert!(!r.body.contains("<script"), "{uri} has raw markup");
        // The CSP forbids inline styles: a page must not depend on one.
        assert!(!r.body.contains(" style="), "{uri} has an inline style");
        assert!(
            r.body.contains("&lt;script&gt;alert("),
            "{uri} does not show the string"
        );
    }
    // The id round-trips through its link.
    let list = get(&app, "/invocations");
    let href = format!("href=\"{evil_href}\"");
    assert!(list.body.contains(&href), "{}", list.body);
    let v = json(&app, &format!("/api{evil_href}"));
    assert_eq!(v["invocation_id"], EVIL);
    assert_eq!(v["arguments"][0][1], EVIL);
    // Every response carries the headers that keep a page inert.
    let r = get(&app, "/");
    let csp = r.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert_eq!(r.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
}

#[test]
fn malformed_requests_are_400_with_a_message_never_500() {
    let app = monitor();
    for (uri, needle) in [
        ("/invocations?status=nope", "is not one of"),
        ("/invocations?limit=0", "limit must be"),
        ("/invocations?limit=abc", "limit must be"),
        ("/invocations?after=garbage", "after"),
        ("/invocations?after=l:zz:x", "after"),
        ("/invocations?since=yesterday", "is not a time"),
        ("/invocations?task=nodot", "task"),
        ("/invocations?bogus=1", "unknown parameter"),
        ("/invocations?status=running&status=failed", "given twice"),
        ("/?x=1", "takes no parameters"),
        ("/workflows/wf?budget=999999", "budget must be"),
        (
            "/timeline?since=2026-01-02&until=2026-01-01",
            "since is after until",
        ),
        ("/invocations?limit=%FF%FE", "limit must be"),
    ] {
        for api in [false, true] {
            let uri = match (api, uri.strip_prefix("/?")) {
                (false, _) => uri.to_owned(),
                (true, Some(q)) => format!("/api/overview?{q}"),
                (true, None) => format!("/api{uri}"),
            };
            let r = get(&app, &uri);
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}: {}", r.body);
            assert!(r.body.contains(needle), "{uri}: {}", r.body);
            if api {
                let v: Value = serde_json::from_str(&r.body).unwrap();
                assert!(v["error"].as_str().unwrap().contains(needle));
            }
        }
    }
    let long = "x".repeat(2000);
    assert_eq!(
        get(&app, &format!("/invocations/{long}")).status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        get(&app, "/invocations/absent").status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, "/api/invocations/absent").status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(get(&app, "/nothing/here").status, StatusCode::NOT_FOUND);
    for m in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        assert_eq!(
            call(&app, m.clone(), "/invocations", &[]).status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{m}"
        );
    }
}

#[test]
fn ids_that_need_encoding_reach_their_pages() {
    let b = MemoryBackend::new();
    let odd = ["a/b", "q?x=1#f", "sp ace", "ünï€ode", "100%", ".."];
    let pairs: Vec<_> = odd.iter().map(|i| root(i, "m.t")).collect();
    b.upsert_invocations(&pairs).unwrap();
    let app = Monitor::new(Arc::new(b), None);
    for i in odd {
        let v = json(&app, &format!("/api/invocations/{}", enc(i)));
        assert_eq!(v["invocation_id"], i);
    }
}

#[test]
fn a_token_guards_every_request() {
    let app = Monitor::new(store(), Some("s3cret".to_owned()));
    assert_eq!(get(&app, "/").status, StatusCode::UNAUTHORIZED);
    assert_eq!(get(&app, "/api/overview").status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        get(&app, "/assets/style.css").status,
        StatusCode::UNAUTHORIZED
    );
    let wrong = call(&app, Method::GET, "/", &[("authorization", "Bearer s3cre")]);
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let ok = call(
        &app,
        Method::GET,
        "/api/overview",
        &[("authorization", "Bearer s3cret")],
    );
    assert_eq!(ok.status, StatusCode::OK);
    let first = get(&app, "/invocations?token=s3cret&status=running");
    assert_eq!(first.status, StatusCode::OK);
    let cookie = first.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with("taskstate_token=s3cret;") && cookie.contains("HttpOnly"));
    let again = call(
        &app,
        Method::GET,
        "/runners",
        &[("cookie", "a=b; taskstate_token=s3cret")],
    );
    assert_eq!(again.status, StatusCode::OK);
}

#[test]
fn serving_a_read_only_sqlite_file_never_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/pynenc-0.1.0/state.db");
    std::fs::copy(&src, &path).unwrap();
    let before = std::fs::read(&path).unwrap();
    let url = format!("sqlite://{}", path.display());
    let store = taskstate::open_read_only(&url).unwrap();
    let app = Monitor::new(Arc::from(store), None);
    let v = json(&app, "/api/overview");
    // The fixture's 12 invocations all have history; pynenc's file has no
    // latest-status table, so these come from the history itself.
    assert_eq!(common::status_total(&v), 12);
    let first = v["recent"][0]["invocation_id"].as_str().unwrap().to_owned();
    let wf = v["recent"][0]["workflow_id"].as_str().unwrap().to_owned();
    for uri in [
        "/".to_owned(),
        "/invocations?status=success".to_owned(),
        format!("/invocations/{first}"),
        "/workflows".to_owned(),
        format!("/workflows/{wf}"),
        "/runners?q=runner".to_owned(),
        "/timeline".to_owned(),
    ] {
        assert_eq!(get(&app, &uri).status, StatusCode::OK, "{uri}");
    }
    drop(app);
    assert_eq!(std::fs::read(&path).unwrap(), before, "the store changed");
}

/// Served while a worker keeps writing the same SQLite file (as pynenc
/// workers do): every request answers, and the pages follow the writes.
#[test]
fn serving_a_sqlite_file_while_it_is_written() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("live.db").display());
    let writer = taskstate::open(&url).unwrap();
    writer.upsert_invocations(&[root("seed", "m.t")]).unwrap();
    writer
        .add_histories(&[hist("seed", S::Registered, at(0))])
        .unwrap();
    let app = Monitor::new(Arc::from(taskstate::open_read_only(&url).unwrap()), None);
    let stop = AtomicBool::new(false);
    let written = std::thread::scope(|s| {
        let w = s.spawn(|| {
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) && n < 2000 {
                let id = format!("w-{n}");
                writer.upsert_invocations(&[root(&id, "m.t")]).unwrap();
                writer
                    .add_histories(&[
                        hist(&id, S::Registered, at(n)),
                        hist(&id, S::Running, at(n + 1)),
                    ])
                    .unwrap();
                n += 1;
            }
            n
        });
        let mut seen = 0;
        for _ in 0..50 {
            let v = json(&app, "/api/invocations?status=running&limit=500");
            let n = v["items"].as_array().unwrap().len();
            assert!(n >= seen || n == 500, "the listing went back: {n} < {seen}");
            seen = n;
            assert_eq!(get(&app, "/").status, StatusCode::OK);
        }
        stop.store(true, Ordering::Relaxed);
        w.join().unwrap()
    });
    assert!(written > 0);
    // Everything written is there once the writer stopped.
    let counts = json(&app, "/api/invocations?status=running&limit=500");
    let expect = usize::try_from(written).unwrap().min(500);
    assert_eq!(counts["items"].as_array().unwrap().len(), expect);
}

/// The same pages on PostgreSQL: the latest-status table its triggers keep
/// answers the list, its filters and the counts.
#[test]
fn serves_a_postgres_store() {
    let Some((pg, _guard)) = taskstate_postgres::testing::fresh_backend("ts_serve") else {
        eprintln!("skipped: set TASKSTATE_POSTGRES_URL");
        return;
    };
    let pg: Arc<dyn StateBackend> = Arc::new(pg);
    let mem = store();
    // The memory store's content, copied.
    let mut quiet = |_: &str, _: u64, _: u64| {};
    taskstate::copy::copy(mem.as_ref(), pg.as_ref(), 100, false, &mut quiet).unwrap();
    let (on_pg, on_mem) = (Monitor::new(pg, None), monitor());
    for uri in [
        "/api/invocations",
        "/api/invocations?status=running",
        "/api/invocations?task=shop.step&limit=1",
        "/api/invocations/c1",
        "/api/workflows/wf",
        "/api/workflows?type=shop.flow",
        "/api/runners?q=thread",
    ] {
        assert_eq!(json(&on_pg, uri), json(&on_mem, uri), "{uri}");
    }
    let statuses = |app: &Arc<Monitor>| json(app, "/api/overview")["figures"]["statuses"].clone();
    assert_eq!(statuses(&on_pg), statuses(&on_mem));
}
