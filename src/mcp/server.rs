//! The MCP session over one pair of byte streams (stdin/stdout in
//! production, pipes in tests).
//!
//! Threads, no async runtime: the calling thread reads messages and answers
//! the cheap ones (initialize, ping, tools/list, logging/setLevel) inline,
//! so they stay fast whatever else runs; each `tools/call` gets its own
//! thread, registered under its request id so `notifications/cancelled`
//! can reach it. All output goes through one lock, one message per line.

use super::access::HostAccess;
use super::jsonrpc::{self, Incoming, Line, LineReader, RpcError};
use super::project::ProjectSource;
use super::tool::{CallContext, Outcome};
use super::tools::Toolset;
use crate::engine::vm::CancelToken;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Protocol revisions this server speaks, newest first.
pub const SUPPORTED_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// Batches exist in these revisions only (2025-06-18 removed them).
const BATCH_VERSIONS: [&str; 2] = ["2025-03-26", "2024-11-05"];
/// Largest message accepted; bigger ones are skipped and answered with an
/// error. Room for a 1 MiB file written through a tool, JSON-escaped.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;
/// Tool calls allowed to run at once; each may hold a VM.
const MAX_CONCURRENT_CALLS: usize = 8;
/// After stdin closes, how long cancelled calls get to tear down their VMs.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

const LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];
/// Until the client picks a level, only warnings and worse are sent.
const DEFAULT_LEVEL: usize = 3;

pub struct Config {
    pub toolset: Toolset,
    pub project: ProjectSource,
    pub access: HostAccess,
}

struct Session {
    out: Mutex<Box<dyn Write + Send>>,
    /// Set when stdout fails: the client is gone and the session ends.
    out_broken: AtomicBool,
    toolset: Toolset,
    project: ProjectSource,
    access: HostAccess,
    instructions: String,
    /// The negotiated protocol version, once `initialize` was answered.
    version: Mutex<Option<&'static str>>,
    log_level: AtomicUsize,
    calls: Mutex<HashMap<String, CancelToken>>,
    /// Threads still working (tool calls, batches); shutdown waits for them.
    active: Mutex<usize>,
    active_changed: Condvar,
}

/// Serves one session until `input` ends or the output breaks. In-flight
/// calls are then cancelled (their VMs torn down) before this returns.
pub fn serve(cfg: Config, input: impl BufRead, output: Box<dyn Write + Send>) -> io::Result<()> {
    let instructions = instructions(&cfg);
    let session = Arc::new(Session {
        out: Mutex::new(output),
        out_broken: AtomicBool::new(false),
        toolset: cfg.toolset,
        project: cfg.project,
        access: cfg.access,
        instructions,
        version: Mutex::new(None),
        log_level: AtomicUsize::new(DEFAULT_LEVEL),
        calls: Mutex::new(HashMap::new()),
        active: Mutex::new(0),
        active_changed: Condvar::new(),
    });
    let mut reader = LineReader::new(input, MAX_MESSAGE_BYTES);
    let result = loop {
        if session.out_broken.load(Ordering::SeqCst) {
            break Ok(());
        }
        match reader.next_line() {
            Ok(None) => break Ok(()),
            Ok(Some(Line::TooLong(n))) => session.send(&jsonrpc::error_response(
                &Value::Null,
                &RpcError::invalid_request(format!(
                    "message of {n} bytes exceeds the limit of {MAX_MESSAGE_BYTES} bytes; it was skipped"
                )),
            )),
            Ok(Some(Line::Message(bytes))) => session.handle_line(&bytes),
            Err(e) => break Err(e),
        }
    };
    session.shutdown();
    result
}

fn instructions(cfg: &Config) -> String {
    let names = cfg.toolset.names().join(", ");
    let mut s = format!(
        "pyro runs commands in disposable Linux microVMs. Profile {}: tools {names}. \
         Use vm_run for one command in a fresh VM (the VM is destroyed afterwards; a nonzero \
         exit_code is a result, not an error). {}",
        cfg.toolset.profile.name(),
        cfg.project.describe()
    );
    if cfg.toolset.has("workspace_create") {
        s.push_str(
            " For multi-step work use a persistent workspace: workspace_create (seeded from seed_path \
             or this project), then workspace_exec, workspace_file_read/write, workspace_patch_apply, \
             workspace_diff against the seeded baseline, workspace_export to bring results to the host, \
             workspace_reset to start over, workspace_delete when done. A workspace left without \
             activity for its ttl_seconds (default 600) is stopped, state expired, with /workspace kept: \
             any workspace tool call boots it again. It is deleted only after its retention_seconds \
             (default 7 days) more, or by workspace_delete.",
        );
    }
    s.push(' ');
    s.push_str(&cfg.access.describe(cfg.toolset.has("workspace_create")));
    let pending = cfg.toolset.pending();
    if !pending.is_empty() {
        s.push_str(&format!(
            " The profile's {} workspace tools are not in this build yet, so they are not listed.",
            pending.len()
        ));
    }
    s
}

fn id_key(id: &Value) -> String {
    // JSON text keeps 1 and "1" apart, as JSON-RPC requires.
    id.to_string()
}

impl Session {
    fn send(&self, msg: &Value) {
        let mut line = serde_json::to_vec(msg).expect("JSON values serialize");
        line.push(b'\n');
        let mut out = self.out.lock().unwrap();
        if out.write_all(&line).and_then(|_| out.flush()).is_err() {
            self.out_broken.store(true, Ordering::SeqCst);
        }
    }

    fn log(&self, level: &str, data: Value) {
        let rank = LEVELS.iter().position(|l| *l == level).unwrap_or(0);
        if rank >= self.log_level.load(Ordering::SeqCst) {
            self.send(&jsonrpc::notification(
                "notifications/message",
                json!({"level": level, "logger": "pyro", "data": data}),
            ));
        }
    }

    fn negotiated(&self) -> Option<&'static str> {
        *self.version.lock().unwrap()
    }

    fn handle_line(self: &Arc<Self>, bytes: &[u8]) {
        let value: Value = match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(e) => {
                return self.send(&jsonrpc::error_response(
                    &Value::Null,
                    &RpcError::new(jsonrpc::PARSE_ERROR, format!("not valid JSON: {e}")),
                ))
            }
        };
        match value {
            Value::Array(items) => self.handle_batch(items),
            v => {
                if let Some(reply) = self.dispatch(v, false) {
                    self.send(&reply);
                }
            }
        }
    }

    /// Runs `work` on its own thread, counted so shutdown can wait for it.
    fn spawn(self: &Arc<Self>, work: impl FnOnce(&Arc<Session>) + Send + 'static) {
        *self.active.lock().unwrap() += 1;
        let me = Arc::clone(self);
        std::thread::spawn(move || {
            work(&me);
            *me.active.lock().unwrap() -= 1;
            me.active_changed.notify_all();
        });
    }

    fn handle_batch(self: &Arc<Self>, items: Vec<Value>) {
        let version = self.negotiated();
        let refusal = match version {
            _ if items.is_empty() => Some("an empty batch is not a valid request".to_string()),
            Some(v) if BATCH_VERSIONS.contains(&v) => None,
            Some(v) => Some(format!(
                "JSON-RPC batches are not part of MCP {v}; send one message per line"
            )),
            None => Some("batches are refused before initialize has negotiated a protocol version that allows them".into()),
        };
        if let Some(msg) = refusal {
            return self.send(&jsonrpc::error_response(
                &Value::Null,
                &RpcError::invalid_request(msg),
            ));
        }
        // A batch may hold tool calls: answer it off the reader thread.
        self.spawn(move |me| {
            let replies: Vec<Value> = items
                .into_iter()
                .filter_map(|v| me.dispatch(v, true))
                .collect();
            if !replies.is_empty() {
                me.send(&Value::Array(replies));
            }
        });
    }

    /// Handles one message; returns the reply to send, if any. Outside a
    /// batch, tool calls run on their own thread and reply from there.
    fn dispatch(self: &Arc<Self>, v: Value, in_batch: bool) -> Option<Value> {
        let msg = match jsonrpc::classify(v) {
            Ok(m) => m,
            Err((id, e)) => return Some(jsonrpc::error_response(&id, &e)),
        };
        match msg {
            Incoming::Response => None,
            Incoming::Notification { method, params } => {
                self.notification(&method, params);
                None
            }
            Incoming::Request { id, method, params } if method == "tools/call" => {
                let call = match self.start_call(&id, params) {
                    Ok(c) => c,
                    Err(e) => return Some(jsonrpc::error_response(&id, &e)),
                };
                if in_batch {
                    return self.finish_call(&id, call);
                }
                self.spawn(move |me| {
                    if let Some(reply) = me.finish_call(&id, call) {
                        me.send(&reply);
                    }
                });
                None
            }
            Incoming::Request { id, method, params } => Some(match self.request(&method, params) {
                Ok(r) => jsonrpc::response(&id, r),
                Err(e) => jsonrpc::error_response(&id, &e),
            }),
        }
    }

    fn request(&self, method: &str, params: Option<Value>) -> Result<Value, RpcError> {
        match method {
            "initialize" => self.initialize(jsonrpc::params_object(params)?),
            "ping" => Ok(json!({})),
            "tools/list" => {
                let p = jsonrpc::params_object(params)?;
                match p.get("cursor") {
                    None | Some(Value::Null) => Ok(self.toolset.listing().clone()),
                    Some(_) => Err(RpcError::invalid_params(
                        "unknown cursor: tools/list returns every tool in one page",
                    )),
                }
            }
            "logging/setLevel" => {
                let p = jsonrpc::params_object(params)?;
                let level = p.get("level").and_then(Value::as_str).unwrap_or("");
                match LEVELS.iter().position(|l| *l == level) {
                    Some(rank) => {
                        self.log_level.store(rank, Ordering::SeqCst);
                        Ok(json!({}))
                    }
                    None => Err(RpcError::invalid_params(format!(
                        "level must be one of {}",
                        LEVELS.join(", ")
                    ))),
                }
            }
            // The 2026-07-28 stateless probe: refusing it cleanly makes a
            // client fall back to the initialize handshake.
            "server/discover" => Err(RpcError::new(
                jsonrpc::METHOD_NOT_FOUND,
                format!(
                    "server/discover is not supported; use initialize (protocol versions {})",
                    SUPPORTED_VERSIONS.join(", ")
                ),
            )),
            other => Err(RpcError::new(
                jsonrpc::METHOD_NOT_FOUND,
                format!("unknown method {other:?}"),
            )),
        }
    }

    fn initialize(&self, p: Map<String, Value>) -> Result<Value, RpcError> {
        let Some(asked) = p.get("protocolVersion").and_then(Value::as_str) else {
            return Err(RpcError::invalid_params(
                "initialize needs params.protocolVersion (a string)",
            ));
        };
        let mut version = self.version.lock().unwrap();
        if version.is_some() {
            return Err(RpcError::invalid_request(
                "the session is already initialized",
            ));
        }
        // Answer the client's version when we speak it, else our newest.
        let chosen = SUPPORTED_VERSIONS
            .iter()
            .find(|v| **v == asked)
            .copied()
            .unwrap_or(SUPPORTED_VERSIONS[0]);
        *version = Some(chosen);
        Ok(json!({
            "protocolVersion": chosen,
            "capabilities": {"tools": {"listChanged": false}, "logging": {}},
            "serverInfo": {
                "name": "pyro",
                "title": "pyro: disposable microVM sandboxes",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "instructions": self.instructions,
            "_meta": {
                "pyro/profile": self.toolset.profile.name(),
                "pyro/project": self.project.to_json(),
                "pyro/host_access": self.access.to_json(),
            },
        }))
    }

    fn notification(&self, method: &str, params: Option<Value>) {
        if method == "notifications/cancelled" {
            let id = params.as_ref().and_then(|p| p.get("requestId")).map(id_key);
            if let Some(token) = id.and_then(|k| self.calls.lock().unwrap().get(&k).cloned()) {
                token.cancel();
            }
        }
        // notifications/initialized and any other notification need no
        // action: requests are served from the first message on.
    }

    /// Checks a tools/call and registers it (on the reader thread, so a
    /// cancellation right behind it finds it).
    fn start_call(&self, id: &Value, params: Option<Value>) -> Result<PendingCall, RpcError> {
        let mut p = jsonrpc::params_object(params)?;
        let name = match p.remove("name") {
            Some(Value::String(n)) => n,
            _ => {
                return Err(RpcError::invalid_params(
                    "tools/call needs params.name (a string)",
                ))
            }
        };
        if !self.toolset.has(&name) {
            return Err(RpcError::invalid_params(format!(
                "unknown tool {name:?}; profile {} serves: {}",
                self.toolset.profile.name(),
                self.toolset.names().join(", ")
            )));
        }
        let args = match p.remove("arguments") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(_) => {
                return Err(RpcError::invalid_params(
                    "params.arguments must be an object",
                ))
            }
        };
        let progress_token = p
            .get("_meta")
            .and_then(|m| m.get("progressToken"))
            .filter(|t| t.is_string() || t.is_i64() || t.is_u64())
            .cloned();
        let mut calls = self.calls.lock().unwrap();
        let key = id_key(id);
        if calls.contains_key(&key) {
            return Err(RpcError::invalid_request(format!(
                "request id {key} is already in use by a running call"
            )));
        }
        let busy = calls.len() >= MAX_CONCURRENT_CALLS;
        let cancel = CancelToken::new();
        if !busy {
            calls.insert(key, cancel.clone());
        }
        Ok(PendingCall {
            name,
            args,
            progress_token,
            cancel,
            busy,
        })
    }

    fn finish_call(&self, id: &Value, call: PendingCall) -> Option<Value> {
        let outcome = if call.busy {
            Outcome::Failed(format!(
                "{MAX_CONCURRENT_CALLS} tool calls are already running; wait for one to finish and retry"
            ))
        } else {
            let step = AtomicU64::new(0);
            let progress = |message: &str| {
                if let Some(token) = &call.progress_token {
                    let n = step.fetch_add(1, Ordering::SeqCst) + 1;
                    self.send(&jsonrpc::notification(
                        "notifications/progress",
                        json!({"progressToken": token, "progress": n, "message": message}),
                    ));
                }
            };
            let log = |level: &str, data: Value| self.log(level, data);
            eprintln!("pyro mcp: {} started (request {id})", call.name);
            let ctx = CallContext {
                cancel: &call.cancel,
                project: &self.project,
                access: &self.access,
                progress: &progress,
                log: &log,
            };
            let outcome = self.toolset.call(&call.name, &call.args, &ctx);
            self.calls.lock().unwrap().remove(&id_key(id));
            outcome
        };
        let result = match outcome {
            Outcome::Done { structured, text } => {
                eprintln!("pyro mcp: {} done (request {id})", call.name);
                json!({
                    "content": [{"type": "text", "text": text}],
                    "structuredContent": structured,
                    "isError": false,
                })
            }
            Outcome::Failed(message) => {
                eprintln!("pyro mcp: {} failed (request {id})", call.name);
                json!({"content": [{"type": "text", "text": message}], "isError": true})
            }
            Outcome::Cancelled(what) => {
                // The client gave up on the request: no response is sent
                // (MCP cancellation), only a log line saying what happened.
                eprintln!("pyro mcp: {} cancelled (request {id}); {what}", call.name);
                self.log(
                    "info",
                    json!({"event": "cancelled", "tool": call.name, "requestId": id,
                           "message": format!("call cancelled; {what}")}),
                );
                return None;
            }
        };
        Some(jsonrpc::response(id, result))
    }

    /// End of input: cancel what still runs and give it time to clean up.
    fn shutdown(&self) {
        for token in self.calls.lock().unwrap().values() {
            token.cancel();
        }
        let deadline = std::time::Instant::now() + SHUTDOWN_GRACE;
        let mut active = self.active.lock().unwrap();
        while *active > 0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                eprintln!(
                    "pyro mcp: {} call(s) still running at exit; their VMs die with this process",
                    *active
                );
                break;
            }
            active = self.active_changed.wait_timeout(active, left).unwrap().0;
        }
    }
}

struct PendingCall {
    name: String,
    args: Map<String, Value>,
    progress_token: Option<Value>,
    cancel: CancelToken,
    /// Over the concurrency limit: answered with an error, not run.
    busy: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::tools::Profile;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Serves `input` to the end and returns every message written.
    fn session(input: &[Value]) -> Vec<Value> {
        let text: String = input.iter().map(|v| format!("{v}\n")).collect();
        raw_session(text.as_bytes())
    }

    fn raw_session(input: &[u8]) -> Vec<Value> {
        let sink = Sink::default();
        let cfg = Config {
            toolset: Toolset::new(Profile::WorkspaceCore),
            project: ProjectSource::None { cwd: "/".into() },
            access: HostAccess::none(),
        };
        serve(cfg, io::BufReader::new(input), Box::new(sink.clone())).unwrap();
        let out = sink.0.lock().unwrap().clone();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).expect("every output line is JSON"))
            .collect()
    }

    fn init(version: &str) -> Value {
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
               "params": {"protocolVersion": version, "capabilities": {},
                          "clientInfo": {"name": "t", "version": "1"}}})
    }

    fn req(id: i64, method: &str, params: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
    }

    fn by_id(out: &[Value], id: i64) -> Value {
        out.iter()
            .find(|m| m["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no reply to {id} in {out:?}"))
    }

    #[test]
    fn negotiates_the_clients_version_or_offers_the_newest() {
        for v in SUPPORTED_VERSIONS {
            let out = session(&[init(v)]);
            assert_eq!(out[0]["result"]["protocolVersion"], v);
        }
        let out = session(&[init("2099-01-01")]);
        assert_eq!(out[0]["result"]["protocolVersion"], SUPPORTED_VERSIONS[0]);
        let r = &out[0]["result"];
        assert_eq!(r["serverInfo"]["name"], "pyro");
        assert!(r["capabilities"]["tools"].is_object());
        assert!(r["capabilities"]["logging"].is_object());
        assert!(r["instructions"]
            .as_str()
            .unwrap()
            .contains("No project source"));
        assert_eq!(r["_meta"]["pyro/profile"], "workspace-core");
    }

    #[test]
    fn lifecycle_errors_use_the_json_rpc_codes() {
        let out = session(&[
            init("2025-11-25"),
            init("2025-11-25"),
            req(1, "resources/list", json!({})),
            req(2, "logging/setLevel", json!({"level": "loud"})),
            req(3, "tools/list", json!({"cursor": "x"})),
            req(4, "tools/call", json!({"name": "nope"})),
            req(5, "tools/call", json!({"name": "vm_run", "arguments": [1]})),
            req(6, "initialize", json!({"protocolVersion": 7})),
            req(7, "server/discover", json!({})),
            req(8, "ping", json!({})),
        ]);
        assert_eq!(out[1]["error"]["code"], jsonrpc::INVALID_REQUEST);
        assert_eq!(by_id(&out, 1)["error"]["code"], jsonrpc::METHOD_NOT_FOUND);
        assert_eq!(by_id(&out, 2)["error"]["code"], jsonrpc::INVALID_PARAMS);
        assert_eq!(by_id(&out, 3)["error"]["code"], jsonrpc::INVALID_PARAMS);
        let unknown = by_id(&out, 4);
        assert_eq!(unknown["error"]["code"], jsonrpc::INVALID_PARAMS);
        assert!(unknown["error"]["message"]
            .as_str()
            .unwrap()
            .contains("vm_run"));
        assert_eq!(by_id(&out, 5)["error"]["code"], jsonrpc::INVALID_PARAMS);
        assert_eq!(by_id(&out, 6)["error"]["code"], jsonrpc::INVALID_PARAMS);
        assert_eq!(by_id(&out, 7)["error"]["code"], jsonrpc::METHOD_NOT_FOUND);
        assert_eq!(by_id(&out, 8)["result"], json!({}));
    }

    #[test]
    fn bad_tool_arguments_are_tool_errors_not_protocol_errors() {
        let out = session(&[
            init("2025-06-18"),
            req(
                1,
                "tools/call",
                json!({"name": "vm_run",
                "arguments": {"environment": "debian:12", "command": "true", "mem_mib": "lots"}}),
            ),
        ]);
        let r = by_id(&out, 1)["result"].clone();
        assert_eq!(r["isError"], true);
        let text = r["content"][0]["text"].as_str().unwrap();
        assert!(
            text.contains("mem_mib must be an integer from 256 to 65536"),
            "{text}"
        );
        assert!(r.get("structuredContent").is_none());
    }

    #[test]
    fn batches_follow_the_negotiated_version() {
        let batch = json!([req(1, "ping", json!({})),
                           {"jsonrpc": "2.0", "method": "notifications/initialized"},
                           req(2, "tools/list", json!({}))]);
        let old = session(&[init("2025-03-26"), batch.clone()]);
        let replies = old[1]
            .as_array()
            .expect("a batch is answered with an array");
        assert_eq!(replies.len(), 2);
        assert_eq!(replies[1]["result"]["tools"][0]["name"], "vm_run");
        let new = session(&[init("2025-11-25"), batch.clone()]);
        assert_eq!(new[1]["error"]["code"], jsonrpc::INVALID_REQUEST);
        let before_init = session(&[batch]);
        assert_eq!(before_init[0]["error"]["code"], jsonrpc::INVALID_REQUEST);
        let empty = session(&[init("2024-11-05"), json!([])]);
        assert_eq!(empty[1]["error"]["code"], jsonrpc::INVALID_REQUEST);
    }

    #[test]
    fn garbage_and_oversized_lines_are_answered_and_serving_continues() {
        let mut input = b"{not json\n".to_vec();
        input.extend(vec![b' '; 10]);
        input.extend(format!("\"{}\"\n", "x".repeat(MAX_MESSAGE_BYTES)).as_bytes());
        input.extend(format!("{}\n", req(1, "ping", json!({}))).as_bytes());
        input.extend(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"pi");
        let out = raw_session(&input);
        assert_eq!(out[0]["error"]["code"], jsonrpc::PARSE_ERROR);
        assert_eq!(out[1]["error"]["code"], jsonrpc::INVALID_REQUEST);
        assert!(out[1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exceeds the limit"));
        assert_eq!(out[2]["id"], 1);
        // A message cut off by EOF is a parse error, then the session ends.
        assert_eq!(out[3]["error"]["code"], jsonrpc::PARSE_ERROR);
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn log_level_filters_notifications() {
        let sink = Sink::default();
        let s = Session {
            out: Mutex::new(Box::new(sink.clone())),
            out_broken: AtomicBool::new(false),
            toolset: Toolset::new(Profile::VmRun),
            project: ProjectSource::None { cwd: "/".into() },
            access: HostAccess::none(),
            instructions: String::new(),
            version: Mutex::new(None),
            log_level: AtomicUsize::new(DEFAULT_LEVEL),
            calls: Mutex::new(HashMap::new()),
            active: Mutex::new(0),
            active_changed: Condvar::new(),
        };
        s.log("info", json!("hidden"));
        s.log("error", json!("shown"));
        s.request("logging/setLevel", Some(json!({"level": "debug"})))
            .unwrap();
        s.log("debug", json!("now shown"));
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("hidden"));
        assert!(text.contains("\"shown\"") && text.contains("now shown"));
    }
}
