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
//! reply, or the child's exit stops the bench with one line naming it.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{Value, json};
use taskstate::bench::{Op, OpResult};

/// A running external target.
pub(crate) struct External {
    /// What it called itself in its reply to `hello`.
    pub(crate) name: String,
    command: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl External {
    /// Starts `command` (run by `sh -c`) and greets it with the workload
    /// size.
    pub(crate) fn spawn(command: &str, n: usize) -> Result<Self, String> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("--against {command:?}: cannot start it: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(format!("--against {command:?}: no pipes to it"));
        };
        let mut ext = External {
            name: String::new(),
            command: command.to_owned(),
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
        };
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
        let mut line = String::new();
        let read = match sent {
            Ok(()) => self.stdout.read_line(&mut line),
            Err(e) => Err(e),
        };
        match read {
            Ok(0) | Err(_) => {
                let how = match self.end() {
                    Some(status) => format!("it ended ({status})"),
                    None => "it closed its output and was stopped".to_owned(),
                };
                return Err(self.fail(&format!("{how} at request {request}")));
            }
            Ok(_) => {}
        }
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
