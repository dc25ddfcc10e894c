//! `taskstate bench --against CMD`: a target outside this process (pynenc's
//! own backends, through `benches/reference/pynenc_target.py`), driven op by
//! op in turn with the engines, so its figures and theirs are taken within
//! the same slices of time.
//!
//! The child speaks one JSON object per line each way (requests on its
//! stdin, replies on its stdout; its stderr is ours):
//!
//! | request | reply |
//! |---|---|
//! | `{"cmd":"hello","n":N}` | `{"name":NAME}` |
//! | `{"cmd":"open"}` (a new empty store) | `{}` |
//! | `{"cmd":"run","op":OP,"min_time":S}` | `{"items":I,"seconds":T,"error":null}` |
//! | `{"cmd":"validate"}` (read every write back) | `{"error":null}` |
//! | `{"cmd":"close"}` | `{}` |
//!
//! A write runs one pass of its items; a read loops over the workload until
//! it has run `S` seconds. `error` is what was wrong with the outputs (the
//! op's validation); a reply `{"fatal":WHY}`, a line that is not such a
//! reply, the child's exit, or no reply within `--against-timeout` stops
//! the bench with one line naming it.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use serde_json::{Value, json};
use taskstate::bench::{Op, OpResult};

/// A running external target.
pub(crate) struct External {
    /// What it called itself in its reply to `hello`.
    pub(crate) name: String,
    command: String,
    child: Child,
    stdin: Option<ChildStdin>,
    /// Its output line by line (empty at its end), read by a thread of its
    /// own so that a reply can be awaited with a deadline.
    replies: Receiver<std::io::Result<String>>,
    /// How long a reply may take.
    timeout: Duration,
}

impl External {
    /// Starts `command` (run by `sh -c`) and greets it with the workload
    /// size. A reply that takes longer than `timeout` stops the bench.
    pub(crate) fn spawn(command: &str, n: usize, timeout: Duration) -> Result<Self, String> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("--against {command:?}: cannot start it: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("--against {command:?}: no pipes to it"));
        };
        let (lines, replies) = mpsc::channel();
        let reader = std::thread::Builder::new()
            .name("against-replies".into())
            .spawn(move || {
                let mut stdout = BufReader::new(stdout);
                loop {
                    let mut line = String::new();
                    let read = stdout.read_line(&mut line);
                    let end = !matches!(read, Ok(n) if n > 0);
                    if lines.send(read.map(|_| line)).is_err() || end {
                        return;
                    }
                }
            });
        let mut ext = External {
            name: String::new(),
            command: command.to_owned(),
            child,
            stdin: Some(stdin),
            replies,
            timeout,
        };
        if let Err(e) = reader {
            return Err(ext.fail(&format!("cannot start a thread to read it: {e}")));
        }
        let reply = ext.call(&json!({"cmd": "hello", "n": n}))?;
        match reply["name"].as_str() {
            Some(name) if !name.is_empty() => ext.name = name.to_owned(),
            _ => return Err(ext.fail(&format!("its reply to hello names no target: {reply}"))),
        }
        Ok(ext)
    }

    fn fail(&self, what: &str) -> String {
        format!("--against {:?}: {what}", self.command)
    }

    /// Sends one request and reads its reply.
    fn call(&mut self, request: &Value) -> Result<Value, String> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(self.fail("already closed"));
        };
        let sent = writeln!(stdin, "{request}").and_then(|()| stdin.flush());
        let read = match sent {
            Ok(()) => match self.replies.recv_timeout(self.timeout) {
                Ok(read) => read,
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    return Err(self.fail(&format!(
                        "no reply to {request} within {} s (--against-timeout)",
                        self.timeout.as_secs_f64()
                    )));
                }
                // The reader thread ended: it saw the output's end.
                Err(RecvTimeoutError::Disconnected) => Ok(String::new()),
            },
            Err(e) => Err(e),
        };
        let line = match read {
            Ok(line) if !line.is_empty() => line,
            Ok(_) | Err(_) => {
                let how = match self.end() {
                    Some(status) => format!("it ended ({status})"),
                    None => "it closed its output and was stopped".to_owned(),
                };
                return Err(self.fail(&format!("{how} at request {request}")));
            }
        };
        let reply: Value = serde_json::from_str(line.trim_end()).map_err(|e| {
            self.fail(&format!(
                "its reply to {request} is not JSON ({e}): {:?}",
                line.trim_end()
            ))
        })?;
        if let Some(why) = reply.get("fatal") {
            let why = why.as_str().map_or_else(|| why.to_string(), str::to_owned);
            return Err(self.fail(&format!("it refused {request}: {why}")));
        }
        if !reply.is_object() {
            return Err(self.fail(&format!("its reply to {request} is not an object: {reply}")));
        }
        Ok(reply)
    }

    /// A new empty store (the previous one dropped).
    pub(crate) fn open(&mut self) -> Result<(), String> {
        self.call(&json!({"cmd": "open"})).map(drop)
    }

    /// Drops the store.
    pub(crate) fn close_store(&mut self) -> Result<(), String> {
        self.call(&json!({"cmd": "close"})).map(drop)
    }

    /// Times `op` on the open store (a write: one pass; a read: looped for
    /// `min_time` seconds).
    pub(crate) fn run(&mut self, op: Op, min_time: f64) -> Result<OpResult, String> {
        let request = json!({"cmd": "run", "op": op.name(), "min_time": min_time});
        let reply = self.call(&request)?;
        let (Some(items), Some(seconds)) = (reply["items"].as_u64(), reply["seconds"].as_f64())
        else {
            return Err(self.fail(&format!(
                "its reply to {request} lacks items or seconds: {reply}"
            )));
        };
        if !(seconds.is_finite() && seconds >= 0.0) {
            return Err(self.fail(&format!("it timed {op} at {seconds} seconds")));
        }
        Ok(OpResult {
            engine: self.name.clone(),
            op,
            n: usize::try_from(items).unwrap_or(usize::MAX),
            threads: 1,
            seconds,
            validation: Self::validation(&reply),
        })
    }

    /// Reads every write back: what was wrong, if anything.
    pub(crate) fn validate(&mut self) -> Result<Result<(), String>, String> {
        let reply = self.call(&json!({"cmd": "validate"}))?;
        Ok(Self::validation(&reply))
    }

    fn validation(reply: &Value) -> Result<(), String> {
        match &reply["error"] {
            Value::Null => Ok(()),
            Value::String(e) => Err(e.clone()),
            other => Err(other.to_string()),
        }
    }
}

impl External {
    /// Ends the child: its input closes (the protocol's end); one still
    /// running a second later is killed. Its exit status, if it exited of
    /// itself.
    fn end(&mut self) -> Option<std::process::ExitStatus> {
        drop(self.stdin.take());
        // std has no wait with a timeout: poll the exit, briefly.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Ok(None) | Err(_) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return None;
                }
            }
        }
    }
}

impl Drop for External {
    fn drop(&mut self) {
        self.end();
    }
}
