//! `vm_run`: one command in a fresh microVM, the only tool of the
//! `vm-run` profile. It reports the VM's phases as progress and, while the
//! command runs, a heartbeat.

use super::schema;
use super::tool::{Args, CallContext, Outcome};
use crate::engine::run::{self, Phase, RunRequest};
use crate::render::Rendered;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Bounds the engine enforces (`RunRequest::validate`); a unit test keeps
/// them in step.
pub const VCPU_RANGE: (i64, i64) = (1, 32);
pub const MEM_MIB_RANGE: (i64, i64) = (256, 65536);
pub const TTL_MAX: i64 = 7 * 24 * 3600;
/// How often a long command reports that it is still running.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// The `outputSchema` of `vm_run`.
pub fn output_schema() -> Value {
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
    schema::output_object(fields.into())
}

/// `vm_run`: one command in a fresh VM, with progress while it runs.
pub fn call(args: &Args, ctx: &CallContext) -> Outcome {
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
        let mut on_phase = |p: &Phase| {
            let msg = match p {
                Phase::Create { vm_id, .. } => {
                    phase.store(1, Ordering::SeqCst);
                    format!("creating VM {vm_id} from {}", req.environment)
                }
                Phase::Start { vm_id } => {
                    phase.store(2, Ordering::SeqCst);
                    format!("booting VM {vm_id}")
                }
                Phase::Execute { vm_id, boot_ms } => {
                    phase.store(EXECUTING, Ordering::SeqCst);
                    format!("VM {vm_id} booted in {boot_ms} ms; running the command")
                }
                Phase::Delete { vm_id } => {
                    phase.store(4, Ordering::SeqCst);
                    format!("VM {vm_id} stopped and removed")
                }
                Phase::HostCompat { warning } => {
                    (ctx.log)("warning", json!({"tool": "vm_run", "warning": warning}));
                    phase.store(EXECUTING, Ordering::SeqCst);
                    format!("WARNING: {warning}")
                }
            };
            (ctx.log)(
                "debug",
                json!({"tool": "vm_run", "phase": p.name(), "details": p}),
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
        Ok(r) => Outcome::Done {
            text: r.to_text(),
            structured: r.to_json(),
        },
        Err(e) => Outcome::Failed(format!("vm_run failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::vm::CancelToken;
    use crate::mcp::tools::{Profile, Toolset};

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
}
