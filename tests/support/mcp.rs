//! A small MCP client over a `pyro mcp serve` child (newline-delimited
//! JSON-RPC on its stdio), shared by the workspace tests, the use-case
//! smokes and the workspace benchmarks. Requests may overlap: answers read
//! while waiting for another id are kept until asked for.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

pub struct Mcp {
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
    next: u64,
    early: HashMap<u64, Value>,
}

impl Mcp {
    /// Starts `pyro mcp serve EXTRA…` in `cwd` and completes the handshake;
    /// the server must come up with the workspace-core profile.
    pub fn start(pyro: &Path, cwd: &Path, extra: &[&str]) -> Mcp {
        let mut child = Command::new(pyro)
            .args(["mcp", "serve"])
            .args(extra)
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pyro mcp serve");
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut m = Mcp {
            child,
            stdin,
            out,
            next: 1,
            early: HashMap::new(),
        };
        let id = m.send(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "pyro-tests", "version": "1"}}),
        );
        let init = m.wait(id);
        assert_eq!(init["result"]["_meta"]["pyro/profile"], "workspace-core");
        m.write(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        m
    }

    fn write(&mut self, msg: &Value) {
        let stdin = self.stdin.as_mut().expect("session closed");
        writeln!(stdin, "{msg}").unwrap();
        stdin.flush().unwrap();
    }

    /// Sends a request without waiting; returns its id.
    pub fn send(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next;
        self.next += 1;
        self.write(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        id
    }

    /// The answer to request `id` (notifications are skipped).
    pub fn wait(&mut self, id: u64) -> Value {
        if let Some(v) = self.early.remove(&id) {
            return v;
        }
        loop {
            let mut line = String::new();
            assert!(
                self.out.read_line(&mut line).unwrap() > 0,
                "the server closed stdout"
            );
            let v: Value = serde_json::from_str(&line).unwrap();
            match v["id"].as_u64() {
                Some(got) if got == id => return v,
                Some(other) => {
                    self.early.insert(other, v);
                }
                None => {}
            }
        }
    }

    /// Sends a notification (no answer comes).
    pub fn notify(&mut self, method: &str, params: Value) {
        self.write(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Whether an answer to `id` has arrived (kept while waiting for
    /// others); reads nothing new.
    pub fn answered(&self, id: u64) -> bool {
        self.early.contains_key(&id)
    }

    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.send(method, params);
        self.wait(id)
    }

    /// Starts a tool call without waiting for it.
    pub fn start_call(&mut self, tool: &str, args: Value) -> u64 {
        self.send("tools/call", json!({"name": tool, "arguments": args}))
    }

    /// The structured result of a started call, which must have succeeded.
    pub fn finish(&mut self, id: u64, tool: &str) -> Value {
        let r = self.wait(id);
        assert_eq!(r["result"]["isError"], false, "{tool} failed: {r}");
        r["result"]["structuredContent"].clone()
    }

    pub fn call(&mut self, tool: &str, args: Value) -> Value {
        let id = self.start_call(tool, args);
        self.finish(id, tool)
    }

    /// The error text of a call that must fail as a tool error.
    pub fn call_err(&mut self, tool: &str, args: Value) -> String {
        let r = self.request("tools/call", json!({"name": tool, "arguments": args}));
        assert_eq!(r["result"]["isError"], true, "{tool} should fail: {r}");
        r["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Closes stdin; the server must exit cleanly.
    pub fn close(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "pyro mcp serve exited with {status}");
    }
}

/// Deletes every workspace when dropped, passed or failed, so a failure
/// leaves no VM behind for what runs next in the same $PYRO_HOME. After a
/// failure it first prints the end of each workspace's VMM log and guest
/// console, which the delete would otherwise take with it.
pub struct DeleteAllAtEnd(pub PathBuf);

/// `$PYRO_HOME` as pyro resolves it (src/engine/paths.rs).
fn pyro_home() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(h) = var("PYRO_HOME") {
        return h.into();
    }
    if let Some(x) = var("XDG_DATA_HOME") {
        return PathBuf::from(x).join("pyro");
    }
    PathBuf::from(var("HOME").unwrap_or_else(|| "/root".into())).join(".local/share/pyro")
}

fn print_vm_logs(id: &str) {
    let dir = pyro_home().join("workspaces").join(id).join("vm");
    for name in ["vmm.log", "serial.log"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        eprintln!("----- workspace {id}: {name} (last 40 lines) -----\n{tail}");
    }
}

impl Drop for DeleteAllAtEnd {
    fn drop(&mut self) {
        let Ok(out) = Command::new(&self.0)
            .args(["workspace", "list", "--json"])
            .output()
        else {
            return;
        };
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        for w in v["workspaces"].as_array().into_iter().flatten() {
            if let Some(id) = w["workspace_id"].as_str() {
                if std::thread::panicking() {
                    print_vm_logs(id);
                }
                let _ = Command::new(&self.0)
                    .args(["workspace", "delete", id])
                    .output();
            }
        }
    }
}
