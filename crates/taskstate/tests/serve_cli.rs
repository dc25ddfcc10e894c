//! `taskstate serve` and `taskstate upgrade` as a user runs them: the
//! binary on a pynenc file, over real HTTP.
#![cfg(feature = "serve")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use common::{fixture_copy, stderr, taskstate};

/// A running `taskstate serve`, killed on drop.
struct Served {
    child: Child,
    addr: String,
    first_lines: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server with `args` after `serve`; waits for its
/// "serving … on http://ADDR/" line (any warning comes before it).
fn serve(args: &[&str]) -> Served {
    let child = Command::new(env!("CARGO_BIN_EXE_taskstate"))
        .arg("serve")
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Owned by the guard at once: killed and reaped even if a check fails.
    let mut served = Served {
        child,
        addr: String::new(),
        first_lines: String::new(),
    };
    let mut reader = BufReader::new(served.child.stderr.take().unwrap());
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).unwrap();
        assert!(n > 0, "server exited: {}", served.first_lines);
        served.first_lines.push_str(&line);
        if let Some((_, rest)) = line.split_once(" on http://") {
            served.addr = rest.trim().trim_end_matches('/').to_owned();
            return served;
        }
    }
}

/// `GET path` over HTTP/1.1: status code and body.
fn get(addr: &str, path: &str, extra: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

#[test]
fn serves_a_pynenc_file_read_only_and_upgrade_adds_the_latest_table() {
    let (_dir, path) = fixture_copy();
    let url = format!("sqlite://{}", path.display());
    let before = std::fs::read(&path).unwrap();
    {
        let s = serve(&[&url, "--bind", "127.0.0.1:0"]);
        // pynenc's file, never upgraded: served, with a hint how to index it.
        assert!(
            s.first_lines.contains("warning:") && s.first_lines.contains("taskstate upgrade"),
            "{}",
            s.first_lines
        );
        let (code, body) = get(&s.addr, "/api/overview", "");
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(common::status_total(&v), 12);
        let (code, _) = get(&s.addr, "/invocations?status=nope", "");
        assert_eq!(code, 400);
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "serve wrote to the file"
    );

    // upgrade: the table appears, filled; pynenc's rows stay as they were.
    let o = taskstate(&["upgrade", &url]);
    assert!(o.status.success(), "{}", stderr(&o));
    let c = rusqlite::Connection::open(&path).unwrap();
    let n: i64 = c
        .query_row("SELECT COUNT(*) FROM taskstate_latest", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 12);
    // Upgraded: no warning any more.
    let s = serve(&[&url, "--bind", "127.0.0.1:0"]);
    assert!(!s.first_lines.contains("warning"), "{}", s.first_lines);
    drop(s);
    // An upgrade never creates a store.
    let missing = path.with_file_name("missing.db");
    let o = taskstate(&["upgrade", &format!("sqlite://{}", missing.display())]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no such store"), "{}", stderr(&o));
    assert!(!missing.exists());
}

#[test]
fn a_token_is_required_and_a_public_bind_warns() {
    let (_dir, path) = fixture_copy();
    let url = format!("sqlite://{}", path.display());
    let s = serve(&[&url, "--bind", "0.0.0.0:0", "--token", "t0k"]);
    assert!(
        s.first_lines.contains("warning: listening on 0.0.0.0"),
        "{}",
        s.first_lines
    );
    let port = s.addr.rsplit(':').next().unwrap();
    let local = format!("127.0.0.1:{port}");
    assert_eq!(get(&local, "/", "").0, 401);
    assert_eq!(get(&local, "/", "Authorization: Bearer t0k\r\n").0, 200);
    assert_eq!(get(&local, "/?token=t0k", "").0, 200);
}

#[test]
fn a_bad_bind_or_store_is_one_line() {
    let o = taskstate(&["serve", "sqlite:///nonexistent/dir/x.db"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no such store"), "{err}");
    let o = taskstate(&["serve", "memory://", "--bind", "not-an-address"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // A port already taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (_dir, path) = fixture_copy();
    let o = taskstate(&[
        "serve",
        &format!("sqlite://{}", path.display()),
        "--bind",
        &addr,
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    // The file's warning, then one error line.
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains("cannot listen on"), "{err}");
    assert_eq!(err.lines().last(), Some(errors[0]), "{err}");
}
