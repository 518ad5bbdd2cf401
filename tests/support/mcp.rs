//! One MCP client over a `pyro mcp serve` child (newline-delimited
//! JSON-RPC on its stdio), for the protocol tests, the workspace tests,
//! the use-case smokes and the workspace benchmarks.
//!
//! - Requests may overlap: answers read while waiting for another id are
//!   kept until asked for; notifications are skipped by [`Mcp::reply`]
//!   and seen by [`Mcp::next`].
//! - Every line the server writes on stdout must be JSON: anything else
//!   fails the test at once (stdout carries nothing but the protocol).
//! - No wait is unbounded: a server that stops answering fails the test
//!   after [`PATIENCE`] instead of hanging it. Nothing asserts on it.
//! - Reading is done on the test's own thread (poll, then read), so the
//!   benchmarks time the server, not a hand-off between threads.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// How long to wait for any one message.
pub const PATIENCE: Duration = Duration::from_secs(600);

/// The protocol revision the client asks for.
pub const PROTOCOL_VERSION: &str = "2025-11-25";

/// `pyro mcp serve ARGS` as a command, to adjust (cwd, environment,
/// stderr) before [`Mcp::spawn`].
pub fn serve(pyro: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(pyro);
    c.args(["mcp", "serve"]).args(args);
    c
}

/// [`serve`] in `cwd` with `home` as its state directory (`PYRO_HOME`)
/// and its stderr dropped: a server of a test's own, in a project
/// directory of the test's choosing.
pub fn serve_in(pyro: &Path, cwd: &Path, home: &Path, args: &[&str]) -> Command {
    let mut c = serve(pyro, args);
    c.current_dir(cwd)
        .env("PYRO_HOME", home)
        .stderr(Stdio::null());
    c
}

pub struct Mcp {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    /// Bytes read past the last complete line.
    buf: Vec<u8>,
    eof: bool,
    next_id: u64,
    /// Answers read while waiting for another, by their id's JSON text.
    early: HashMap<String, Value>,
    closed: bool,
}

impl Mcp {
    /// Starts `cmd` (see [`serve`]) with its stdin and stdout piped to this
    /// client; no handshake yet.
    pub fn spawn(cmd: &mut Command) -> Mcp {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start pyro mcp serve");
        Mcp {
            stdin: child.stdin.take(),
            stdout: child.stdout.take().unwrap(),
            child,
            buf: Vec::new(),
            eof: false,
            next_id: 1,
            early: HashMap::new(),
            closed: false,
        }
    }

    /// Starts `pyro mcp serve EXTRA…` in `cwd` (its stderr dropped) and
    /// completes the handshake; the server must come up with the
    /// workspace-core profile.
    pub fn start(pyro: &Path, cwd: &Path, extra: &[&str]) -> Mcp {
        let mut m = Mcp::spawn(serve(pyro, extra).current_dir(cwd).stderr(Stdio::null()));
        let init = m.initialize();
        assert_eq!(init["_meta"]["pyro/profile"], "workspace-core");
        m
    }

    /// The handshake: `initialize` (its result is returned), then
    /// `notifications/initialized`.
    pub fn initialize(&mut self) -> Value {
        let init = self.request(
            "initialize",
            json!({"protocolVersion": PROTOCOL_VERSION, "capabilities": {},
                   "clientInfo": {"name": "pyro-tests", "version": "1"}}),
        );
        assert!(init.get("error").is_none(), "initialize failed: {init}");
        self.send_message(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        init["result"].clone()
    }

    /// Writes `bytes` to the server's stdin as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let w = self.stdin.as_mut().expect("session closed");
        w.write_all(bytes).unwrap();
        w.flush().unwrap();
    }

    /// Writes one message (any JSON, valid JSON-RPC or not) and a newline.
    pub fn send_message(&mut self, msg: &Value) {
        self.send_raw(format!("{msg}\n").as_bytes());
    }

    /// Sends a request without waiting; returns its id.
    pub fn send(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send_message(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        id
    }

    /// Sends a notification (no answer comes).
    pub fn notify(&mut self, method: &str, params: Value) {
        self.send_message(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// The next message from the server, of any kind (answers kept by
    /// [`reply`](Mcp::reply) are not seen again).
    pub fn next(&mut self) -> Value {
        self.read_message(Some(PATIENCE))
            .expect("the server answered")
    }

    /// The next message if one has arrived; does not wait.
    pub fn try_next(&mut self) -> Option<Value> {
        self.read_message(None)
    }

    /// The answer to request `id`. Notifications and requests from the
    /// server seen on the way are dropped; answers to other ids are kept.
    pub fn reply(&mut self, id: impl Into<Value>) -> Value {
        let id = id.into();
        if let Some(v) = self.early.remove(&id.to_string()) {
            return v;
        }
        self.wait_for(&id).0
    }

    /// Reads until the answer to `id` comes: that answer and its line.
    /// Notifications and requests from the server are dropped; answers
    /// to other ids are kept for [`reply`](Mcp::reply).
    fn wait_for(&mut self, id: &Value) -> (Value, String) {
        loop {
            let (m, line) = self.read_line(Some(PATIENCE)).expect("the server answered");
            if m.get("method").is_some() {
                continue;
            }
            match m.get("id") {
                Some(got) if got == id => return (m, line),
                Some(other) => {
                    self.early.insert(other.to_string(), m);
                }
                None => {}
            }
        }
    }

    /// Whether an answer to `id` has arrived: kept while waiting for
    /// others, or waiting to be read now.
    pub fn answered(&mut self, id: impl Into<Value>) -> bool {
        while let Some(m) = self.try_next() {
            if m.get("method").is_none() {
                if let Some(got) = m.get("id") {
                    self.early.insert(got.to_string(), m);
                }
            }
        }
        self.early.contains_key(&id.into().to_string())
    }

    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.send(method, params);
        self.reply(id)
    }

    /// [`request`](Mcp::request), with the answer's line as the server
    /// wrote it on stdout (without its newline), for tests that pin the
    /// bytes on the wire.
    pub fn request_line(&mut self, method: &str, params: Value) -> (Value, String) {
        let id = self.send(method, params);
        self.wait_for(&id.into())
    }

    /// `ping`, which must get an empty result.
    pub fn ping(&mut self) {
        let r = self.request("ping", json!({}));
        assert_eq!(r["result"], json!({}), "{r}");
    }

    /// Starts a tool call without waiting for it.
    pub fn start_call(&mut self, tool: &str, args: Value) -> u64 {
        self.send("tools/call", json!({"name": tool, "arguments": args}))
    }

    /// The structured result of a started call, which must have succeeded.
    pub fn finish(&mut self, id: u64, tool: &str) -> Value {
        let r = self.reply(id);
        assert_eq!(r["result"]["isError"], false, "{tool} failed: {r}");
        r["result"]["structuredContent"].clone()
    }

    /// The structured result of a call that must succeed.
    pub fn call(&mut self, tool: &str, args: Value) -> Value {
        let id = self.start_call(tool, args);
        self.finish(id, tool)
    }

    /// What a call that must succeed returns and shows: its structured
    /// result and its text content.
    pub fn call_shown(&mut self, tool: &str, args: Value) -> (Value, String) {
        let r = self.request("tools/call", json!({"name": tool, "arguments": args}));
        let r = &r["result"];
        let text = r["content"][0]["text"].as_str().unwrap_or("").to_string();
        assert_eq!(r["isError"], false, "{tool} failed: {text}");
        (r["structuredContent"].clone(), text)
    }

    /// A call's outcome, whatever it is: (isError, the text content).
    pub fn call_outcome(&mut self, tool: &str, args: Value) -> (bool, String) {
        let r = self.request("tools/call", json!({"name": tool, "arguments": args}));
        let r = &r["result"];
        (
            r["isError"] == true,
            r["content"][0]["text"].as_str().unwrap_or("").to_string(),
        )
    }

    /// The error text of a call that must fail as a tool error.
    pub fn call_err(&mut self, tool: &str, args: Value) -> String {
        let (err, text) = self.call_outcome(tool, args.clone());
        assert!(err, "{tool} {args} should have failed: {text}");
        text
    }

    /// Closes stdin; the server must exit cleanly.
    pub fn close(self) {
        let (code, _) = self.close_status();
        assert_eq!(code, 0, "pyro mcp serve exited with {code}");
    }

    /// Closes stdin and reads to the end: the exit code (-1 for a signal)
    /// and the messages that came after the last one read.
    pub fn close_status(mut self) -> (i32, Vec<Value>) {
        self.closed = true;
        drop(self.stdin.take());
        let mut rest = Vec::new();
        while let Some(m) = self.read_message(Some(PATIENCE)) {
            rest.push(m);
        }
        assert!(self.eof, "the server kept stdout open after stdin closed");
        let status = self.child.wait().unwrap();
        (status.code().unwrap_or(-1), rest)
    }

    /// One message: from what is buffered, else read as it comes within
    /// `patience` (`None`: only what is there now). None at EOF, or when
    /// nothing came in time (a test that needed it fails on that).
    fn read_message(&mut self, patience: Option<Duration>) -> Option<Value> {
        self.read_line(patience).map(|(v, _)| v)
    }

    /// [`read_message`](Mcp::read_message), with the line as the server
    /// wrote it (its newline removed).
    fn read_line(&mut self, patience: Option<Duration>) -> Option<(Value, String)> {
        let deadline = patience.map(|p| Instant::now() + p);
        loop {
            if let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=nl).collect();
                line.pop();
                let line = String::from_utf8(line).expect("stdout is UTF-8");
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout carried a non-JSON line {line:?}: {e}"));
                return Some((v, line));
            }
            if self.eof {
                assert!(
                    self.buf.is_empty(),
                    "stdout ended inside a line: {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
                return None;
            }
            let wait_ms = match deadline {
                None => 0,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        panic!("no message from the server in {} s", PATIENCE.as_secs());
                    }
                    left.as_millis().min(i32::MAX as u128) as i32
                }
            };
            let mut pfd = libc::pollfd {
                fd: self.stdout.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll(2) on one pollfd we own, for its duration.
            let n = unsafe { libc::poll(&mut pfd, 1, wait_ms) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "poll: {e}");
                continue;
            }
            if n == 0 {
                match deadline {
                    // Asked for what is there now: nothing.
                    None => return None,
                    Some(_) => continue,
                }
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.stdout.read(&mut chunk) {
                Ok(0) => self.eof = true,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("reading the server's stdout: {e}"),
            }
        }
    }
}

impl Drop for Mcp {
    /// A session the test did not close: after a failure the server is
    /// killed at once, so the VMs it runs stay up for [`super::vm::VmGuard`]
    /// to show their logs (it then stops them); otherwise it is closed.
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        if std::thread::panicking() {
            let _ = self.child.kill();
        } else {
            drop(self.stdin.take());
        }
        let _ = self.child.wait();
    }
}
