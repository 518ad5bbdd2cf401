//! One-shot runs: create a VM, boot it, run one command, tear it down.

use super::capacity::{self, Owner};
use super::environments;
use super::host::kvm_status;
use super::paths;
use super::vm::{CancelToken, VmOptions, VmProcess};
use super::{EngineError, Result};
use pyro_proto::{ExecRequest, ExecResult};
use serde::Serialize;
use std::time::{Duration, Instant};

pub const DEFAULT_VCPU_COUNT: u8 = 1;
pub const DEFAULT_MEM_MIB: u32 = 1024;
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 30;
pub const DEFAULT_TTL_SECONDS: u64 = 600;
pub const MAX_TIMEOUT_SECONDS: u64 = 24 * 3600;
/// Exit code reported when the command hit its timeout, as timeout(1) does.
pub const TIMEOUT_EXIT_CODE: i32 = 124;

#[derive(Debug, Clone)]
pub struct RunRequest {
    pub environment: String,
    pub command: String,
    pub vcpu_count: u8,
    pub mem_mib: u32,
    pub timeout_seconds: u64,
    pub ttl_seconds: u64,
    pub network: bool,
    pub allow_host_compat: bool,
}

impl RunRequest {
    pub fn new(environment: &str, command: &str) -> Self {
        RunRequest {
            environment: environment.to_string(),
            command: command.to_string(),
            vcpu_count: DEFAULT_VCPU_COUNT,
            mem_mib: DEFAULT_MEM_MIB,
            timeout_seconds: DEFAULT_TIMEOUT_SECONDS,
            ttl_seconds: DEFAULT_TTL_SECONDS,
            network: false,
            allow_host_compat: false,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.command.trim().is_empty() {
            return Err(EngineError::Invalid("command must not be empty".into()));
        }
        EngineError::check_vm_size(self.vcpu_count, self.mem_mib)?;
        EngineError::check_range(
            "timeout_seconds",
            self.timeout_seconds,
            1,
            MAX_TIMEOUT_SECONDS,
        )?;
        if self.ttl_seconds == 0 {
            return Err(EngineError::Invalid(
                "ttl_seconds must be at least 1".into(),
            ));
        }
        if self.network {
            return Err(EngineError::Unavailable(
                "guest networking (--network) is not available in this build: pyro has no virtio-net/TAP support yet".into(),
            ));
        }
        Ok(())
    }
}

/// How the error of a run refused for want of a bootable guest begins.
pub const NO_GUEST: &str = "cannot boot a guest here";

/// Whether `e` is that refusal (the CLI then suggests --allow-host-compat).
pub fn is_no_guest(e: &EngineError) -> bool {
    matches!(e, EngineError::Unavailable(m) if m.starts_with(NO_GUEST))
}

/// A phase of a run, as progress reports it; its JSON form is the
/// phase's details.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Phase {
    /// The VM's directory and disk are being made.
    Create { environment: String, vm_id: String },
    /// The VMM runs and the guest boots.
    Start { vm_id: String },
    /// The guest answered; the command runs.
    Execute { vm_id: String, boot_ms: u64 },
    /// The VM is gone.
    Delete { vm_id: String },
    /// No guest can boot and the caller allowed host execution: the
    /// command runs on the host, unisolated.
    HostCompat { warning: String },
}

impl Phase {
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Create { .. } => "create",
            Phase::Start { .. } => "start",
            Phase::Execute { .. } => "execute",
            Phase::Delete { .. } => "delete",
            Phase::HostCompat { .. } => "host_compat",
        }
    }
}

/// Progress callback: called as each phase begins.
pub type Progress<'a> = &'a mut dyn FnMut(&Phase);

/// Where a command ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionMode {
    /// In a guest, through its agent over vsock.
    GuestVsock,
    /// Directly on the host, without isolation (`--allow-host-compat`).
    HostCompat,
}

impl ExecutionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionMode::GuestVsock => "guest_vsock",
            ExecutionMode::HostCompat => "host_compat",
        }
    }
}

/// What a command did: the fields `vm_run` and `workspace_exec` share.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecOutcome {
    pub stdout: String,
    /// With a line saying so at the end when the command timed out.
    pub stderr: String,
    /// The shell's exit code (128 + signal when killed); 124 on timeout.
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// Bytes the command wrote to each stream, kept or not.
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub duration_ms: u64,
}

impl ExecOutcome {
    /// The outcome of agent result `r` for a command given
    /// `timeout_seconds`: a timeout reads as exit code 124 with a line
    /// saying so at the end of stderr.
    pub fn new(r: ExecResult, timeout_seconds: u64) -> ExecOutcome {
        let (exit_code, stderr) = outcome(&r, timeout_seconds);
        ExecOutcome {
            stdout: r.stdout,
            stderr,
            exit_code,
            signal: r.signal,
            timed_out: r.timed_out,
            stdout_truncated: r.stdout_truncated,
            stderr_truncated: r.stderr_truncated,
            stdout_bytes: r.stdout_bytes,
            stderr_bytes: r.stderr_bytes,
            duration_ms: r.duration_ms,
        }
    }

    /// Each stream: its name, what was kept, whether it was cut and how
    /// many bytes the command wrote.
    pub fn streams(&self) -> [(&'static str, &str, bool, u64); 2] {
        [
            (
                "stdout",
                &self.stdout,
                self.stdout_truncated,
                self.stdout_bytes,
            ),
            (
                "stderr",
                &self.stderr,
                self.stderr_truncated,
                self.stderr_bytes,
            ),
        ]
    }
}

/// The result of a one-shot run (`vm_run`, `pyro run`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunResult {
    #[serde(flatten)]
    pub exec: ExecOutcome,
    /// `host-compat` for a run on the host.
    pub vm_id: String,
    pub environment: String,
    pub environment_version: String,
    pub command: String,
    pub execution_mode: ExecutionMode,
    pub vcpu_count: u8,
    pub mem_mib: u32,
    pub timings: RunTimings,
    pub cleanup: RunCleanup,
}

/// Where a run's time went. A run on the host has only `exec_ms` and
/// `total_ms`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunTimings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_uptime_at_ready_ms: Option<u64>,
    pub exec_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teardown_ms: Option<u64>,
    pub total_ms: u64,
}

/// What was cleaned up after a run. A run on the host had no VM.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunCleanup {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_stopped: Option<bool>,
    pub state_removed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scratch_disk_allocated_bytes: Option<u64>,
}

/// Runs the request; returns the object the CLI prints with --json.
pub fn run(req: &RunRequest, progress: Progress) -> Result<RunResult> {
    run_cancellable(req, &CancelToken::new(), progress)
}

/// Message of the error a cancelled run returns.
pub const CANCELLED: &str = "the run was cancelled; its VM was stopped and its state removed";

/// `run`, stoppable from another thread through `cancel`: the VM is killed
/// and the run returns an error saying so.
pub fn run_cancellable(
    req: &RunRequest,
    cancel: &CancelToken,
    progress: Progress,
) -> Result<RunResult> {
    req.validate()?;
    let entry = environments::lookup(&req.environment)?;
    // Leftovers of runs killed earlier go first, whether or not this one
    // can boot.
    reap_runs();
    let start = Instant::now();
    if let Some(why) = kvm_status().blocker() {
        if req.allow_host_compat {
            return host_compat(req, entry.version, &why, progress);
        }
        // No hint about host execution: this text reaches MCP clients,
        // which must not be invited to ask for it. The CLI adds the hint
        // for the person at the terminal (`is_no_guest`).
        return Err(EngineError::Unavailable(format!("{NO_GUEST}: {why}.")));
    }
    let env = environments::installed(&req.environment)?;
    let vm_id = paths::random_id(6);
    paths::ensure_home()?;
    capacity::precheck(&Owner::run(&vm_id), req.mem_mib)?;
    progress(&Phase::Create {
        environment: req.environment.clone(),
        vm_id: vm_id.clone(),
    });
    // Held until the directory is gone: while it is, no reaper touches it.
    let (dir, _dir_lock) = claim_run_dir(&vm_id)?;
    let outcome = (|| {
        let scratch = dir.join("scratch.ext4");
        super::disk::copy_sparse(&env.scratch, &scratch)
            .map_err(|e| EngineError::io("creating the VM's scratch disk", e))?;
        let disk_bytes = super::disk::allocated_bytes(&scratch).unwrap_or(0);
        let created_ms = start.elapsed().as_millis() as u64;
        if cancel.is_cancelled() {
            return Err(EngineError::Guest(CANCELLED.into()));
        }
        let mut vm = VmProcess::launch(
            &env,
            &dir,
            &VmOptions {
                vcpus: req.vcpu_count,
                mem_mib: req.mem_mib,
                attached: true,
                owner: Owner::run(&vm_id),
            },
        )?;
        cancel.watch(&vm);
        progress(&Phase::Start {
            vm_id: vm_id.clone(),
        });
        let booted = vm.wait_ready(boot_timeout());
        let boot_ms = start.elapsed().as_millis() as u64 - created_ms;
        let uptime = match booted {
            Ok(u) => u,
            Err(e) => {
                cancel.release();
                vm.kill();
                return Err(e);
            }
        };
        progress(&Phase::Execute {
            vm_id: vm_id.clone(),
            boot_ms,
        });
        let exec_start = Instant::now();
        let ereq = ExecRequest {
            shell: Some(req.command.clone()),
            timeout_ms: Some(req.timeout_seconds * 1000),
            max_output_bytes: pyro_proto::DEFAULT_MAX_OUTPUT_BYTES,
            ..Default::default()
        };
        let result = vm.exec(&ereq, Duration::from_secs(req.timeout_seconds + 15));
        let exec_ms = exec_start.elapsed().as_millis() as u64;
        cancel.release();
        vm.kill();
        Ok((result?, created_ms, boot_ms, exec_ms, uptime, disk_bytes))
    })();
    let teardown = Instant::now();
    let removed = std::fs::remove_dir_all(&dir).is_ok();
    if cancel.is_cancelled() {
        // Whatever failed (boot wait, exec) failed because the VM was killed.
        return Err(EngineError::Guest(CANCELLED.into()));
    }
    let (res, created_ms, boot_ms, exec_ms, uptime, disk_bytes) = outcome?;
    let teardown_ms = teardown.elapsed().as_millis() as u64;
    progress(&Phase::Delete {
        vm_id: vm_id.clone(),
    });
    Ok(run_result(
        req,
        entry.version,
        vm_id,
        ExecutionMode::GuestVsock,
        res,
        RunTimings {
            create_ms: Some(created_ms),
            boot_ms: Some(boot_ms),
            guest_uptime_at_ready_ms: Some(uptime),
            exec_ms,
            teardown_ms: Some(teardown_ms),
            total_ms: start.elapsed().as_millis() as u64,
        },
        RunCleanup {
            vm_stopped: Some(true),
            state_removed: removed,
            scratch_disk_allocated_bytes: Some(disk_bytes),
        },
    ))
}

/// How long creating or reaping run directories waits for another
/// process doing the same (each holds it for a directory scan at most).
const RUNS_LOCK_WAIT: Duration = Duration::from_secs(60);

/// Serializes creating run directories with reaping them, so a reaper
/// never sees a new directory before its owner has locked it. The lock is
/// a flock on `runs/` itself: nothing but run directories lives there.
fn lock_runs() -> Result<std::fs::File> {
    let runs = paths::runs();
    let io = |e| EngineError::io(format!("locking {}", runs.display()), e);
    paths::private_dir(&runs).map_err(io)?;
    let f = std::fs::File::open(&runs).map_err(io)?;
    let deadline = Instant::now() + RUNS_LOCK_WAIT;
    while !super::lock::try_flock(&f).map_err(io)? {
        if Instant::now() >= deadline {
            return Err(EngineError::Unavailable(format!(
                "{} stayed locked by another pyro process for {} s; retry",
                runs.display(),
                RUNS_LOCK_WAIT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(f)
}

/// Creates `runs/<vm_id>` (0700) and locks it for as long as the returned
/// file lives: the lock says a live `pyro` process owns the directory.
fn claim_run_dir(vm_id: &str) -> Result<(std::path::PathBuf, std::fs::File)> {
    use std::os::unix::fs::DirBuilderExt;
    let _runs = lock_runs()?;
    let dir = paths::runs().join(vm_id);
    let io = |e| EngineError::io(format!("creating {}", dir.display()), e);
    std::fs::DirBuilder::new()
        .mode(paths::PRIVATE_DIR_MODE)
        .create(&dir)
        .map_err(io)?;
    let f = std::fs::File::open(&dir).map_err(io)?;
    if !super::lock::try_flock(&f).map_err(io)? {
        return Err(EngineError::Io(format!(
            "{} is locked by another process",
            dir.display()
        )));
    }
    Ok((dir, f))
}

/// Removes the leftovers of one-shot runs whose `pyro` process died
/// without cleaning up (SIGKILL, a crash, a power loss): directories no
/// live process holds locked. Their VMMs died with it (`PR_SET_PDEATHSIG`).
/// Returns the run ids removed.
pub fn reap_runs() -> Vec<String> {
    let mut gone = Vec::new();
    // Nothing to reap (and nothing to create) without a usable runs/.
    if paths::check_home().is_err() || !paths::runs().is_dir() {
        return gone;
    }
    let Ok(_runs) = lock_runs() else {
        return gone;
    };
    let Ok(rd) = std::fs::read_dir(paths::runs()) else {
        return gone;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !e.path().is_dir() {
            continue;
        }
        let Ok(f) = std::fs::File::open(e.path()) else {
            continue;
        };
        if super::lock::try_flock(&f).unwrap_or(false) && std::fs::remove_dir_all(e.path()).is_ok()
        {
            gone.push(name);
        }
    }
    gone
}

fn boot_timeout() -> Duration {
    let secs = std::env::var("PYRO_BOOT_TIMEOUT_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

#[allow(clippy::too_many_arguments)]
fn run_result(
    req: &RunRequest,
    version: &str,
    vm_id: String,
    mode: ExecutionMode,
    r: ExecResult,
    timings: RunTimings,
    cleanup: RunCleanup,
) -> RunResult {
    RunResult {
        exec: ExecOutcome::new(r, req.timeout_seconds),
        vm_id,
        environment: req.environment.clone(),
        environment_version: version.to_string(),
        command: req.command.clone(),
        execution_mode: mode,
        vcpu_count: req.vcpu_count,
        mem_mib: req.mem_mib,
        timings,
        cleanup,
    }
}

/// The exit code and stderr a command reports: a timeout reads as exit
/// code 124 with a line saying so at the end of stderr.
fn outcome(r: &ExecResult, timeout_seconds: u64) -> (i32, String) {
    if !r.timed_out {
        return (r.shell_exit_code(), r.stderr.clone());
    }
    let mut s = r.stderr.clone();
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    s.push_str(&format!("command timed out after {timeout_seconds}s\n"));
    (TIMEOUT_EXIT_CODE, s)
}

/// `--allow-host-compat`: the command runs on this host, unisolated.
fn host_compat(
    req: &RunRequest,
    version: &str,
    why: &str,
    progress: Progress,
) -> Result<RunResult> {
    progress(&Phase::HostCompat {
        warning: format!("NOT ISOLATED: {why}; running the command directly on this host"),
    });
    let start = Instant::now();
    let dir = std::env::temp_dir().join(format!("pyro-host-compat-{}", paths::random_id(4)));
    std::fs::create_dir_all(&dir)
        .map_err(|e| EngineError::io("creating a scratch directory", e))?;
    let ereq = ExecRequest {
        shell: Some(req.command.clone()),
        cwd: Some(dir.to_string_lossy().into_owned()),
        timeout_ms: Some(req.timeout_seconds * 1000),
        max_output_bytes: pyro_proto::DEFAULT_MAX_OUTPUT_BYTES,
        ..Default::default()
    };
    let r = pyro_guest::exec::run(&ereq)
        .map_err(|e| EngineError::io("running the command on the host", e));
    let _ = std::fs::remove_dir_all(&dir);
    let r = r?;
    let exec_ms = r.duration_ms;
    Ok(run_result(
        req,
        version,
        "host-compat".into(),
        ExecutionMode::HostCompat,
        r,
        RunTimings {
            create_ms: None,
            boot_ms: None,
            guest_uptime_at_ready_ms: None,
            exec_ms,
            teardown_ms: None,
            total_ms: start.elapsed().as_millis() as u64,
        },
        RunCleanup {
            vm_stopped: None,
            state_removed: true,
            scratch_disk_allocated_bytes: None,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_bad_field() {
        let mut r = RunRequest::new("debian:12", "true");
        r.vcpu_count = 0;
        assert!(r.validate().unwrap_err().to_string().contains("vcpu_count"));
        let mut r = RunRequest::new("debian:12", "  ");
        assert!(r.validate().unwrap_err().to_string().contains("command"));
        r.command = "true".into();
        r.mem_mib = 64;
        assert!(r.validate().unwrap_err().to_string().contains("mem_mib"));
    }

    #[test]
    fn timed_out_results_use_exit_124() {
        let req = RunRequest::new("debian:12", "sleep 9");
        let r = ExecResult {
            timed_out: true,
            signal: Some(9),
            ..Default::default()
        };
        let timings = RunTimings {
            create_ms: None,
            boot_ms: None,
            guest_uptime_at_ready_ms: None,
            exec_ms: 0,
            teardown_ms: None,
            total_ms: 0,
        };
        let cleanup = RunCleanup {
            vm_stopped: None,
            state_removed: true,
            scratch_disk_allocated_bytes: None,
        };
        let v = run_result(
            &req,
            "1.0.0",
            "x".into(),
            ExecutionMode::GuestVsock,
            r,
            timings,
            cleanup,
        );
        assert_eq!(v.exec.exit_code, 124);
        assert!(v.exec.stderr.contains("timed out after 30s"));
    }

    /// A run in a VM reports every timing and cleanup field (a run on the
    /// host only some: see the host-compat golden file).
    #[test]
    fn a_guest_run_reports_every_timing_and_cleanup_field() {
        let req = RunRequest::new("debian:12", "true");
        let r = run_result(
            &req,
            "1.0.0",
            "ab12cd34ef56".into(),
            ExecutionMode::GuestVsock,
            ExecResult {
                exit_code: Some(0),
                ..Default::default()
            },
            RunTimings {
                create_ms: Some(1),
                boot_ms: Some(2),
                guest_uptime_at_ready_ms: Some(3),
                exec_ms: 4,
                teardown_ms: Some(5),
                total_ms: 15,
            },
            RunCleanup {
                vm_stopped: Some(true),
                state_removed: true,
                scratch_disk_allocated_bytes: Some(4096),
            },
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v["timings"],
            serde_json::json!({"create_ms": 1, "boot_ms": 2, "guest_uptime_at_ready_ms": 3,
                               "exec_ms": 4, "teardown_ms": 5, "total_ms": 15})
        );
        assert_eq!(
            v["cleanup"],
            serde_json::json!({"vm_stopped": true, "state_removed": true,
                               "scratch_disk_allocated_bytes": 4096})
        );
        assert_eq!(v["execution_mode"], "guest_vsock");
        assert_eq!(v["exit_code"], 0);
        assert_eq!(v["signal"], serde_json::Value::Null);
        assert_eq!(v["vm_id"], "ab12cd34ef56");
    }
}
