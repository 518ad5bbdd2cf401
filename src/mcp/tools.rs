//! The MCP tools and the profiles that select them.
//!
//! Every tool here is backed by the engine and really works; a profile's
//! contract tools that the engine cannot serve yet are left out of
//! `tools/list` rather than advertised as stubs.

use super::schema::{self, Arg, Kind};
use crate::engine::environments::CATALOG;
use crate::engine::run::{self, RunRequest};
use crate::engine::vm::CancelToken;
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    VmRun,
    WorkspaceCore,
    WorkspaceFull,
}

pub const PROFILE_NAMES: [&str; 3] = ["vm-run", "workspace-core", "workspace-full"];

/// The 4.3 contract's `workspace-core` surface.
const WORKSPACE_CORE: &[&str] = &[
    "vm_run",
    "workspace_create",
    "workspace_list",
    "workspace_update",
    "workspace_status",
    "workspace_sync_push",
    "workspace_exec",
    "workspace_logs",
    "workspace_summary",
    "workspace_file_list",
    "workspace_file_read",
    "workspace_file_write",
    "workspace_patch_apply",
    "workspace_diff",
    "workspace_export",
    "workspace_reset",
    "workspace_delete",
];

/// What `workspace-full` adds on top of `workspace-core`.
const WORKSPACE_FULL_EXTRA: &[&str] = &[
    "vm_list_environments",
    "vm_create",
    "vm_start",
    "vm_exec",
    "vm_stop",
    "vm_delete",
    "vm_status",
    "vm_network_info",
    "vm_reap_expired",
    "workspace_start",
    "workspace_stop",
    "workspace_disk_export",
    "workspace_disk_list",
    "workspace_disk_read",
    "snapshot_create",
    "snapshot_list",
    "snapshot_delete",
    "shell_open",
    "shell_read",
    "shell_write",
    "shell_signal",
    "shell_close",
    "service_start",
    "service_list",
    "service_status",
    "service_logs",
    "service_stop",
];

impl Profile {
    pub fn parse(name: &str) -> Option<Profile> {
        match name {
            "vm-run" => Some(Profile::VmRun),
            "workspace-core" => Some(Profile::WorkspaceCore),
            "workspace-full" => Some(Profile::WorkspaceFull),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Profile::VmRun => "vm-run",
            Profile::WorkspaceCore => "workspace-core",
            Profile::WorkspaceFull => "workspace-full",
        }
    }

    /// Every tool the contract puts in this profile.
    pub fn contract_tools(self) -> Vec<&'static str> {
        match self {
            Profile::VmRun => vec!["vm_run"],
            Profile::WorkspaceCore => WORKSPACE_CORE.to_vec(),
            Profile::WorkspaceFull => WORKSPACE_CORE
                .iter()
                .chain(WORKSPACE_FULL_EXTRA)
                .copied()
                .collect(),
        }
    }
}

/// The result of one tool call as MCP reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `structuredContent` plus a short text rendering of it.
    Done { structured: Value, text: String },
    /// `isError: true` with a message a model can act on.
    Failed(String),
    /// The client cancelled the call; no response is sent. The text says
    /// what the cancellation stopped, for the log.
    Cancelled(String),
}

/// Services a running tool call gets from the server.
pub struct CallContext<'a> {
    pub cancel: &'a CancelToken,
    /// The project `workspace_create` seeds from when given no seed_path.
    pub project: &'a super::project::ProjectSource,
    /// What the operator allowed on the host (paths, host execution).
    pub access: &'a super::access::HostAccess,
    /// Sends a progress notification (only when the caller asked for them).
    pub progress: &'a (dyn Fn(&str) + Sync),
    /// Sends a log notification at a level name ("debug", "info", ...).
    pub log: &'a (dyn Fn(&str, Value) + Sync),
}

pub struct Tool {
    pub name: &'static str,
    pub(crate) title: &'static str,
    pub(crate) description: &'static str,
    pub(crate) args: Vec<Arg>,
    pub(crate) output_schema: Value,
    /// Hints for clients: the tool changes nothing / may destroy data.
    pub(crate) read_only: bool,
    pub(crate) destructive: bool,
}

impl Tool {
    fn listing(&self) -> Value {
        json!({
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "inputSchema": schema::object_schema(&self.args),
            "outputSchema": self.output_schema,
            "annotations": {
                "title": self.title,
                "readOnlyHint": self.read_only,
                "destructiveHint": self.destructive,
                "idempotentHint": false,
                "openWorldHint": false,
            },
        })
    }
}

/// The tools of one profile, with the `tools/list` answer built once.
pub struct Toolset {
    pub profile: Profile,
    tools: Vec<Tool>,
    listing: Value,
}

/// The tools the engine can serve today.
fn implemented() -> Vec<Tool> {
    let mut tools = vec![vm_run_tool()];
    tools.extend(super::workspace_tools::tools());
    tools
}

impl Toolset {
    pub fn new(profile: Profile) -> Toolset {
        let wanted = profile.contract_tools();
        let tools: Vec<Tool> = implemented()
            .into_iter()
            .filter(|t| wanted.contains(&t.name))
            .collect();
        let listing = json!({"tools": tools.iter().map(Tool::listing).collect::<Vec<_>>()});
        Toolset {
            profile,
            tools,
            listing,
        }
    }

    /// The `tools/list` result.
    pub fn listing(&self) -> &Value {
        &self.listing
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.tools.iter().map(|t| t.name).collect()
    }

    /// Contract tools of the profile that this build does not serve yet.
    pub fn pending(&self) -> Vec<&'static str> {
        let have = self.names();
        self.profile
            .contract_tools()
            .into_iter()
            .filter(|t| !have.contains(t))
            .collect()
    }

    pub fn has(&self, name: &str) -> bool {
        self.tools.iter().any(|t| t.name == name)
    }

    /// Runs tool `name` (which must be `has`); argument problems become a
    /// `Failed` outcome so the model can correct itself.
    pub fn call(&self, name: &str, args: &Map<String, Value>, ctx: &CallContext) -> Outcome {
        let Some(tool) = self.tools.iter().find(|t| t.name == name) else {
            return Outcome::Failed(format!("unknown tool {name:?}"));
        };
        let args = match schema::validate(&tool.args, args) {
            Ok(a) => a,
            Err(e) => return Outcome::Failed(format!("invalid arguments for {name}: {e}")),
        };
        match name {
            "vm_run" => vm_run(&args, ctx),
            n if n.starts_with("workspace_") => super::workspace_tools::call(n, &args, ctx),
            _ => Outcome::Failed(format!("tool {name} has no implementation")),
        }
    }
}

// ---- vm_run ---------------------------------------------------------------

/// Bounds the engine enforces (`RunRequest::validate`); a unit test keeps
/// them in step.
const VCPU_RANGE: (i64, i64) = (1, 32);
const MEM_MIB_RANGE: (i64, i64) = (256, 65536);
const TTL_MAX: i64 = 7 * 24 * 3600;
/// How often a long command reports that it is still running.
const HEARTBEAT: Duration = Duration::from_secs(5);

fn vm_run_tool() -> Tool {
    let envs: Vec<String> = CATALOG.iter().map(|e| e.name.to_string()).collect();
    Tool {
        name: "vm_run",
        title: "Run a command in a fresh microVM",
        description: "Boot a disposable Linux microVM from an environment, run one shell command \
            in it, return its exit code, stdout and stderr, and destroy the VM. Nothing persists \
            between calls. Use it for one-off checks (a build, a test, an untrusted script). \
            A nonzero exit code is a normal result, not a tool error.",
        args: vec![
            Arg {
                name: "environment",
                description: "Environment to boot (must be installed on the host; `pyro env list` shows which are).",
                kind: Kind::String {
                    min_len: 1,
                    one_of: Some(envs),
                },
                default: None,
            },
            Arg {
                name: "command",
                description: "Shell command line, run with /bin/sh -c in /workspace inside the VM.",
                kind: Kind::String {
                    min_len: 1,
                    one_of: None,
                },
                default: None,
            },
            Arg {
                name: "vcpu_count",
                description: "Virtual CPUs for the VM.",
                kind: Kind::Integer {
                    min: VCPU_RANGE.0,
                    max: VCPU_RANGE.1,
                },
                default: Some(json!(run::DEFAULT_VCPU_COUNT)),
            },
            Arg {
                name: "mem_mib",
                description: "Guest memory in MiB.",
                kind: Kind::Integer {
                    min: MEM_MIB_RANGE.0,
                    max: MEM_MIB_RANGE.1,
                },
                default: Some(json!(run::DEFAULT_MEM_MIB)),
            },
            Arg {
                name: "timeout_seconds",
                description: "Kill the command after this many seconds; the result then has timed_out true and exit_code 124.",
                kind: Kind::Integer {
                    min: 1,
                    max: run::MAX_TIMEOUT_SECONDS as i64,
                },
                default: Some(json!(run::DEFAULT_TIMEOUT_SECONDS)),
            },
            Arg {
                name: "ttl_seconds",
                description: "Lifetime bound of the VM record; a one-shot VM is always destroyed when the call ends, so this only matters for compatibility.",
                kind: Kind::Integer { min: 1, max: TTL_MAX },
                default: Some(json!(run::DEFAULT_TTL_SECONDS)),
            },
            Arg {
                name: "network",
                description: "Give the guest network access (not available in this build yet; true fails with an explanation).",
                kind: Kind::Boolean,
                default: Some(json!(false)),
            },
            Arg {
                name: "allow_host_compat",
                description: "Leave false. Only a server whose operator enabled unisolated host execution honours true (then, where no guest can boot, the command runs directly on the host WITHOUT isolation); anywhere else true is refused.",
                kind: Kind::Boolean,
                default: Some(json!(false)),
            },
        ],
        output_schema: vm_run_output_schema(),
        read_only: false,
        destructive: false,
    }
}

fn vm_run_output_schema() -> Value {
    let int = json!({"type": "integer"});
    let string = json!({"type": "string"});
    let boolean = json!({"type": "boolean"});
    let fields = [
        ("vm_id", string.clone()),
        ("environment", string.clone()),
        ("environment_version", string.clone()),
        ("command", string.clone()),
        ("stdout", string.clone()),
        ("stderr", string.clone()),
        ("exit_code", int.clone()),
        // anyOf rather than a type array: single-type dialects (Gemini's
        // function declarations) accept it.
        (
            "signal",
            json!({"anyOf": [{"type": "integer"}, {"type": "null"}]}),
        ),
        ("timed_out", boolean.clone()),
        ("stdout_truncated", boolean.clone()),
        ("stderr_truncated", boolean.clone()),
        ("stdout_bytes", int.clone()),
        ("stderr_bytes", int.clone()),
        ("duration_ms", int.clone()),
        (
            "execution_mode",
            json!({"type": "string", "enum": ["guest_vsock", "host_compat"]}),
        ),
        ("vcpu_count", int.clone()),
        ("mem_mib", int),
        ("timings", json!({"type": "object"})),
        ("cleanup", json!({"type": "object"})),
    ];
    let required: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
    let props: Map<String, Value> = fields
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    // Open to new fields: clients validate results against this schema, and
    // an added field must not break them.
    json!({"type": "object", "properties": props, "required": required, "additionalProperties": true})
}

fn vm_run(args: &Map<String, Value>, ctx: &CallContext) -> Outcome {
    if args["allow_host_compat"] == true && !ctx.access.allow_host_compat {
        return Outcome::Failed(format!(
            "vm_run refused: {}",
            super::access::HOST_COMPAT_REFUSED
        ));
    }
    let int = |k: &str| args[k].as_f64().unwrap_or(0.0) as u64;
    let mut req = RunRequest::new(
        args["environment"].as_str().unwrap_or_default(),
        args["command"].as_str().unwrap_or_default(),
    );
    req.vcpu_count = int("vcpu_count") as u8;
    req.mem_mib = int("mem_mib") as u32;
    req.timeout_seconds = int("timeout_seconds");
    req.ttl_seconds = int("ttl_seconds");
    req.network = args["network"] == true;
    req.allow_host_compat = args["allow_host_compat"] == true;

    // Phase 3 is the command itself; while in it, a heartbeat thread keeps
    // the client informed (and its request timeout fresh).
    const EXECUTING: u8 = 3;
    let phase = AtomicU8::new(0);
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let result = std::thread::scope(|s| {
        let phase = &phase;
        s.spawn(move || {
            let started = Instant::now();
            while let Err(mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(HEARTBEAT) {
                if phase.load(Ordering::SeqCst) == EXECUTING {
                    (ctx.progress)(&format!(
                        "command still running ({} s since the call started)",
                        started.elapsed().as_secs()
                    ));
                }
            }
        });
        let mut on_phase = |name: &str, details: Value| {
            let vm = details["vm_id"].as_str().unwrap_or("");
            let msg = match name {
                "create" => {
                    phase.store(1, Ordering::SeqCst);
                    format!("creating VM {vm} from {}", req.environment)
                }
                "start" => {
                    phase.store(2, Ordering::SeqCst);
                    format!("booting VM {vm}")
                }
                "execute" => {
                    phase.store(EXECUTING, Ordering::SeqCst);
                    format!(
                        "VM {vm} booted in {} ms; running the command",
                        details["boot_ms"]
                    )
                }
                "delete" => {
                    phase.store(4, Ordering::SeqCst);
                    format!("VM {vm} stopped and removed")
                }
                "host_compat" => {
                    let w = details["warning"].as_str().unwrap_or("not isolated");
                    (ctx.log)("warning", json!({"tool": "vm_run", "warning": w}));
                    phase.store(EXECUTING, Ordering::SeqCst);
                    format!("WARNING: {w}")
                }
                other => format!("{other} {details}"),
            };
            (ctx.log)(
                "debug",
                json!({"tool": "vm_run", "phase": name, "details": details}),
            );
            (ctx.progress)(&msg);
        };
        let r = run::run_cancellable(&req, ctx.cancel, &mut on_phase);
        let _ = stop_tx.send(());
        r
    });
    if ctx.cancel.is_cancelled() {
        return Outcome::Cancelled("its VM was stopped and its state removed".into());
    }
    match result {
        Ok(v) => Outcome::Done {
            text: run_summary(&v),
            structured: v,
        },
        Err(e) => Outcome::Failed(format!("vm_run failed: {e}")),
    }
}

/// A short rendering of a run for clients that only show text: the outcome
/// on one line, then the output streams.
fn run_summary(v: &Value) -> String {
    let mut s = format!(
        "exit_code {} from `{}` in {} ({}, {} ms)",
        v["exit_code"],
        v["command"].as_str().unwrap_or(""),
        v["environment"].as_str().unwrap_or(""),
        v["execution_mode"].as_str().unwrap_or(""),
        v["duration_ms"]
    );
    if v["timed_out"] == true {
        s.push_str("; timed out");
    }
    for stream in ["stdout", "stderr"] {
        let body = v[stream].as_str().unwrap_or("");
        if v[format!("{stream}_truncated")] == true {
            s.push_str(&format!(
                "\n[{stream} truncated: {} bytes produced]",
                v[format!("{stream}_bytes")]
            ));
        }
        if !body.is_empty() {
            s.push_str(&format!("\n--- {stream} ---\n{body}"));
            if !body.ends_with('\n') {
                s.push('\n');
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_lists_only_working_tools() {
        for name in PROFILE_NAMES {
            let p = Profile::parse(name).unwrap();
            assert_eq!(p.name(), name);
            let t = Toolset::new(p);
            assert!(t.names().contains(&"vm_run"));
            assert!(t.profile.contract_tools().contains(&"vm_run"));
        }
        assert_eq!(Toolset::new(Profile::VmRun).names(), vec!["vm_run"]);
        // Bare `pyro mcp serve` serves exactly the workspace-core contract.
        let mut core = Toolset::new(Profile::WorkspaceCore).names();
        let mut want = WORKSPACE_CORE.to_vec();
        core.sort();
        want.sort();
        assert_eq!(core, want);
        assert!(Toolset::new(Profile::WorkspaceCore).pending().is_empty());
        assert!(Profile::parse("workspace").is_none());
        let full = Toolset::new(Profile::WorkspaceFull);
        assert!(full.pending().contains(&"shell_open"));
        assert!(!Toolset::new(Profile::WorkspaceCore)
            .pending()
            .contains(&"shell_open"));
    }

    #[test]
    fn vm_run_schema_matches_the_reference_arguments() {
        let t = Toolset::new(Profile::VmRun);
        let s = &t.listing()["tools"][0]["inputSchema"];
        let props: Vec<&String> = s["properties"].as_object().unwrap().keys().collect();
        for a in [
            "environment",
            "command",
            "vcpu_count",
            "mem_mib",
            "timeout_seconds",
            "ttl_seconds",
            "network",
            "allow_host_compat",
        ] {
            assert!(props.iter().any(|p| *p == a), "{a}");
        }
        assert_eq!(props.len(), 8);
        assert_eq!(s["required"], json!(["environment", "command"]));
        assert_eq!(s["properties"]["mem_mib"]["default"], 1024);
        assert_eq!(s["properties"]["vcpu_count"]["default"], 1);
        assert_eq!(s["properties"]["timeout_seconds"]["default"], 30);
        assert_eq!(s["properties"]["ttl_seconds"]["default"], 600);
        assert_eq!(s["additionalProperties"], false);
    }

    /// The schema's bounds are exactly what the engine accepts.
    #[test]
    fn schema_bounds_agree_with_the_engine() {
        let ok = |f: &dyn Fn(&mut RunRequest)| {
            let mut r = RunRequest::new("debian:12", "true");
            f(&mut r);
            r.validate().is_ok()
        };
        assert!(ok(&|r| r.vcpu_count = VCPU_RANGE.0 as u8));
        assert!(ok(&|r| r.vcpu_count = VCPU_RANGE.1 as u8));
        assert!(!ok(&|r| r.vcpu_count = VCPU_RANGE.1 as u8 + 1));
        assert!(!ok(&|r| r.vcpu_count = VCPU_RANGE.0 as u8 - 1));
        assert!(ok(&|r| r.mem_mib = MEM_MIB_RANGE.0 as u32));
        assert!(ok(&|r| r.mem_mib = MEM_MIB_RANGE.1 as u32));
        assert!(!ok(&|r| r.mem_mib = MEM_MIB_RANGE.0 as u32 - 1));
        assert!(!ok(&|r| r.mem_mib = MEM_MIB_RANGE.1 as u32 + 1));
        assert!(ok(&|r| r.timeout_seconds = run::MAX_TIMEOUT_SECONDS));
        assert!(!ok(&|r| r.timeout_seconds = run::MAX_TIMEOUT_SECONDS + 1));
        assert!(!ok(&|r| r.timeout_seconds = 0));
        assert!(ok(&|r| r.ttl_seconds = TTL_MAX as u64));
        assert!(!ok(&|r| r.ttl_seconds = 0));
    }

    #[test]
    fn bad_arguments_fail_with_every_problem_named() {
        let t = Toolset::new(Profile::WorkspaceCore);
        let cancel = CancelToken::new();
        let project = super::super::project::ProjectSource::None { cwd: "/".into() };
        let access = super::super::access::HostAccess::none();
        let ctx = CallContext {
            cancel: &cancel,
            project: &project,
            access: &access,
            progress: &|_| {},
            log: &|_, _| {},
        };
        let args = json!({"environment": "debian:99", "vcpu_count": "two"});
        match t.call("vm_run", args.as_object().unwrap(), &ctx) {
            Outcome::Failed(m) => {
                assert!(m.contains("environment must be one of"), "{m}");
                assert!(m.contains("missing required argument \"command\""), "{m}");
                assert!(m.contains("vcpu_count must be an integer"), "{m}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn summary_shows_outcome_and_streams() {
        let v = json!({"exit_code": 3, "command": "make", "environment": "debian:12",
            "execution_mode": "guest_vsock", "duration_ms": 40, "timed_out": false,
            "stdout": "built\n", "stderr": "", "stdout_truncated": false,
            "stderr_truncated": true, "stderr_bytes": 99});
        let s = run_summary(&v);
        assert!(s.starts_with("exit_code 3 from `make` in debian:12"), "{s}");
        assert!(s.contains("--- stdout ---\nbuilt\n"), "{s}");
        assert!(s.contains("[stderr truncated: 99 bytes produced]"), "{s}");
        assert!(!s.contains("--- stderr ---"), "{s}");
    }
}
