//! Creating, finding, restarting, resetting and deleting workspaces, and
//! the reaper that applies inactivity expiry and retention (the rule is
//! in `expiry`).
//!
//! The VMM of a workspace runs detached (its own session, not tied to the
//! process that started it). Whether it still runs is decided by the lock
//! it holds on the workspace's disk (`vmm::disk_lock`), which every
//! process sees alike whatever path it reaches `PYRO_HOME` by and whatever
//! PID namespace it runs in; which process to stop is learnt by asking the
//! VMM on its control socket. A VMM that holds the disk is never taken for
//! dead, so a second one never boots on the same disk. A workspace whose
//! VMM is gone is `stopped`; its disk keeps `/workspace`, and the next
//! operation that needs the VM boots it again on the same disk and says so.
//! An `expired` one (stopped by the reaper for inactivity) is booted again
//! the same way.

use super::expiry::{self, Clock, Decision};
use super::results::{
    CreateTimings, Created, Deleted, DiskUse, ExpiryView, ListEntry, ListItem, ResetDone,
    ResetInfo, Updated, WorkspaceList, WorkspaceView,
};
use super::review::{self, Event};
use super::seed::{self, SeedSource};
use super::store::{self, Lock, Record, WorkspaceState};
use super::{now, EngineError, Result, GUEST_ROOT};
use crate::engine::capacity::{self, Owner};
use crate::engine::environments;
use crate::engine::host::kvm_status;
use crate::engine::run::ExecutionMode;
use crate::engine::vm::{VmOptions, VmProcess};
use crate::engine::{agent, disk};
use crate::vmm::{control, disk_lock};
use pyro_proto::{ChunkWriter, ErrorKind, Request, Response};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const DEFAULT_VCPU_COUNT: u8 = 1;
pub const DEFAULT_MEM_MIB: u32 = 1024;
pub const DEFAULT_TTL_SECONDS: u64 = 600;
pub const MAX_TTL_SECONDS: u64 = 7 * 24 * 3600;
pub const DEFAULT_ENVIRONMENT: &str = "debian:12";

#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub environment: String,
    pub vcpu_count: u8,
    pub mem_mib: u32,
    pub ttl_seconds: u64,
    /// None: the operator's default (`expiry::retention_for`).
    pub retention_seconds: Option<u64>,
    pub allow_host_compat: bool,
    pub seed: SeedSource,
    pub name: Option<String>,
    pub labels: BTreeMap<String, String>,
}

impl CreateRequest {
    pub fn new(environment: &str) -> Self {
        CreateRequest {
            environment: environment.to_string(),
            vcpu_count: DEFAULT_VCPU_COUNT,
            mem_mib: DEFAULT_MEM_MIB,
            ttl_seconds: DEFAULT_TTL_SECONDS,
            retention_seconds: None,
            allow_host_compat: false,
            seed: SeedSource::Empty,
            name: None,
            labels: BTreeMap::new(),
        }
    }

    fn validate(&mut self) -> Result<()> {
        EngineError::check_vm_size(self.vcpu_count, self.mem_mib)?;
        EngineError::check_range("ttl_seconds", self.ttl_seconds, 1, MAX_TTL_SECONDS)?;
        self.retention_seconds = Some(expiry::retention_for(self.retention_seconds)?);
        self.name = match self.name.take() {
            Some(n) => Some(normalize_name(&n)?),
            None => None,
        };
        self.labels = normalize_labels(&self.labels)?;
        Ok(())
    }
}

pub fn normalize_name(name: &str) -> Result<String> {
    let n = name.trim();
    if n.is_empty() {
        return Err(EngineError::Invalid("name must not be empty".into()));
    }
    if n.chars().count() > 120 {
        return Err(EngineError::Invalid(
            "name must be at most 120 characters".into(),
        ));
    }
    if n.chars().any(|c| c.is_control()) {
        return Err(EngineError::Invalid(
            "name must not contain control characters".into(),
        ));
    }
    Ok(n.to_string())
}

pub fn normalize_label_key(key: &str) -> Result<String> {
    let k = key.trim();
    let ok = !k.is_empty()
        && k.len() <= 64
        && k.as_bytes()[0].is_ascii_alphanumeric()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        return Err(EngineError::Invalid(format!(
            "label key {key:?} must be 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit"
        )));
    }
    Ok(k.to_string())
}

pub fn normalize_labels(labels: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (k, v) in labels {
        let key = normalize_label_key(k)?;
        let val = v.trim();
        if val.is_empty() || val.chars().count() > 120 || val.contains(['\n', '\r']) {
            return Err(EngineError::Invalid(format!(
                "label {key:?} must have a value of 1-120 characters on one line"
            )));
        }
        out.insert(key, val.to_string());
    }
    Ok(out)
}

fn boot_timeout() -> Duration {
    let secs = std::env::var("PYRO_BOOT_TIMEOUT_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

// ---- the VMM process --------------------------------------------------

/// How long the engine waits, in all, for a VMM's answer on its control
/// socket. A VMM answers from its device thread within microseconds; the
/// rest is room for a host under load (a nested test host).
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a VMM may take to exit after SIGKILL: the kernel frees the
/// VM's memory first (seconds for many GiB), and only then its files.
const KILL_WAIT: Duration = Duration::from_secs(60);

/// The workspace's writable disk, which its VMM holds locked.
fn disk_path(id: &str) -> PathBuf {
    store::vm_dir(id).join("scratch.ext4")
}

fn control_socket(id: &str) -> PathBuf {
    store::vm_dir(id).join("control.sock")
}

/// Whether a VMM runs on this workspace's disk: one holds the disk's lock
/// (the ground truth), or, with the lock free, one answers on the control
/// socket (a VMM started by a pyro from before the disk lock). When the
/// lock cannot be checked, the answer is yes: taking a live VMM for dead
/// would boot a second one on its disk.
pub fn vmm_alive(id: &str) -> bool {
    match disk_lock::is_locked(&disk_path(id)) {
        Ok(true) | Err(_) => true,
        Ok(false) => control::ping(&control_socket(id), CONTROL_TIMEOUT).is_ok(),
    }
}

/// The VMM's answer on the workspace's control socket, if the disk it
/// names is this workspace's disk (compared by inode, so any spelling of
/// the path agrees), or it names none (a VMM from before the disk lock).
fn ping_vmm(id: &str) -> Option<control::Pong> {
    let pong = control::ping(&control_socket(id), CONTROL_TIMEOUT).ok()?;
    let ours = match &pong.disk {
        None => true,
        Some(d) => std::fs::metadata(disk_path(id)).is_ok_and(|m| disk_lock::identity(&m) == *d),
    };
    ours.then_some(pong)
}

/// The error for a VMM that holds the disk but cannot be reached.
fn unresponsive(id: &str, recorded: Option<i32>) -> EngineError {
    EngineError::Unavailable(format!(
        "a VMM holds workspace {id}'s disk but does not answer on its control socket within {} s \
         and no process visible here holds the disk's lock (recorded VMM pid: {}); it is busy, hung, \
         or runs in another PID namespace. pyro will not start a second VM on the same disk: retry \
         later, or stop that VMM from where it was started",
        CONTROL_TIMEOUT.as_secs(),
        recorded.map_or("none".to_string(), |p| p.to_string())
    ))
}

/// The process that provably holds the disk's lock, as this process sees
/// it: the pid the VMM answered with (it may come from another PID
/// namespace, so it is checked too), the recorded pid, or, failing both,
/// any process found holding it.
fn lock_holder(id: &str, answered: Option<i32>, recorded: Option<i32>) -> Option<i32> {
    let disk = disk_path(id);
    if let Some(p) = [answered, recorded]
        .into_iter()
        .flatten()
        .find(|p| *p > 0 && disk_lock::held_by(*p, &disk))
    {
        return Some(p);
    }
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .find(|p| *p != std::process::id() as i32 && disk_lock::held_by(*p, &disk))
}

/// Whether process `pid` has exited (gone, or a zombie).
fn exited(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            Some('Z') | Some('X') | None
        ),
    }
}

/// Stops the workspace's VMM, if one runs, and waits until it is gone
/// (its disk lock released). `recorded` is the pid in the record. Fails,
/// leaving everything as it is, when a VMM holds the disk but cannot be
/// identified or does not exit.
fn kill_vmm(id: &str, recorded: Option<i32>) -> Result<()> {
    if !vmm_alive(id) {
        return Ok(());
    }
    let pong = ping_vmm(id);
    let legacy = pong.as_ref().is_some_and(|p| p.disk.is_none());
    let target = if legacy {
        // A VMM from before the disk lock holds none: its answer is all
        // there is to go by.
        pong.as_ref().map(|p| p.pid)
    } else {
        lock_holder(id, pong.as_ref().map(|p| p.pid), recorded)
    };
    match target {
        // SAFETY: kill takes no pointers; the process holds this disk.
        Some(pid) => unsafe {
            libc::kill(pid, libc::SIGKILL);
        },
        // It answers but is not visible here (another PID namespace): ask
        // it to stop.
        None if pong.is_some() => {
            control::shutdown(&control_socket(id), CONTROL_TIMEOUT)
                .map_err(|e| EngineError::io(format!("stopping the VMM of workspace {id}"), e))?;
        }
        None => return Err(unresponsive(id, recorded)),
    }
    let deadline = Instant::now() + KILL_WAIT;
    while Instant::now() < deadline {
        if let Some(pid) = target {
            // SAFETY: waitpid with a null status pointer (reaps our own
            // child; fails harmlessly for anyone else's).
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        }
        // The lock goes when the process's files are closed, which is
        // not quite the end of its exit: wait for that too, so its memory
        // is back when this returns.
        if !vmm_alive(id) && target.is_none_or(exited) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(EngineError::Unavailable(format!(
        "the VMM of workspace {id} ({}) still holds its disk {} s after being stopped; retry later",
        target.map_or("not visible here".to_string(), |p| format!("pid {p}")),
        KILL_WAIT.as_secs()
    )))
}

/// Starts the workspace's VMM on its existing disk (without waiting for
/// the guest).
fn launch(r: &Record) -> Result<VmProcess> {
    let env = environments::installed(&r.environment)?;
    let dir = store::vm_dir(&r.workspace_id);
    // Keep the previous run's logs for diagnosis.
    for log in ["serial.log", "vmm.log"] {
        let p = dir.join(log);
        if p.exists() {
            let _ = std::fs::rename(&p, dir.join(format!("{log}.prev")));
        }
    }
    let vm = VmProcess::launch(
        &env,
        &dir,
        &VmOptions {
            vcpus: r.vcpu_count,
            mem_mib: r.mem_mib,
            attached: false,
            owner: Owner::workspace(&r.workspace_id, r.name.as_deref()),
        },
    )?;
    let pid = vm.pid;
    // Reap the VMM whenever it exits, so a long-lived server never keeps
    // zombies of workspaces deleted from elsewhere.
    std::thread::spawn(move || {
        // SAFETY: waitpid with a null status pointer.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    });
    Ok(vm)
}

/// Waits for the guest agent of a launched VM; kills the VM on failure.
fn wait_ready(mut vm: VmProcess) -> Result<i32> {
    if let Err(e) = vm.wait_ready(boot_timeout()) {
        vm.kill();
        return Err(e);
    }
    Ok(vm.pid)
}

/// Boots the workspace's VM on its existing disk; returns the VMM pid.
fn boot(r: &Record) -> Result<i32> {
    wait_ready(launch(r)?)
}

/// The agent socket of a running workspace.
pub fn vsock(id: &str) -> PathBuf {
    store::vm_dir(id).join("vsock.sock")
}

/// Streams `archive` into the guest under `dest`: (entries, bytes).
pub fn push_archive(
    id: &str,
    dest: &str,
    write: &mut dyn FnMut(&mut dyn Write) -> Result<()>,
) -> Result<(u64, u64)> {
    let deadline = Instant::now() + agent::TRANSFER_DEADLINE;
    let mut s = agent::open(&vsock(id), deadline)
        .map_err(|e| lost_agent(id, "connecting to the guest agent", e))?;
    let req = Request::PushArchive {
        dest: dest.to_string(),
    };
    pyro_proto::write_frame(&mut s, &req)
        .map_err(|e| lost_agent(id, "sending the archive request", e))?;
    let mut w = ChunkWriter::new(std::io::BufWriter::with_capacity(
        pyro_proto::CHUNK_BYTES + 8,
        &mut s,
    ));
    let sent = write(&mut w);
    // Always end the stream, so the agent answers (an error, if cut short).
    let finished = w
        .finish()
        .and_then(|mut b| b.flush())
        .map_err(|e| lost_agent(id, "streaming the archive", e));
    sent?;
    finished?;
    match pyro_proto::read_reply(&mut s, &req) {
        Ok(Some(Response::Extracted {
            entry_count,
            bytes_written,
        })) => Ok((entry_count, bytes_written)),
        Ok(Some(Response::Error { kind, message })) => Err(agent_error(kind, message)),
        Ok(other) => Err(EngineError::Guest(format!(
            "unexpected agent answer to an archive push: {other:?}"
        ))),
        Err(e) => Err(lost_agent(id, "waiting for the archive to be extracted", e)),
    }
}

/// An agent's error as an engine error, by the kind the agent gave it.
pub fn agent_error(kind: ErrorKind, message: String) -> EngineError {
    match kind {
        ErrorKind::NotFound => EngineError::NotFound(message),
        ErrorKind::NoSpace => EngineError::Guest(format!(
            "{message}; free space in the workspace (delete files with workspace_exec) or reset it"
        )),
        // Every other agent error has always been reported as the
        // request's fault (exit code 2); kept so.
        ErrorKind::Invalid | ErrorKind::Permission | ErrorKind::TooLarge | ErrorKind::Io => {
            EngineError::Invalid(message)
        }
        ErrorKind::Unknown => agent_error(legacy_error_kind(&message), message),
    }
}

/// The kind of an error that came without one: from an agent before
/// protocol 3 (a workspace made from an older image), read from its words
/// as hosts did before kinds were sent.
fn legacy_error_kind(message: &str) -> ErrorKind {
    if message.contains("does not exist") {
        ErrorKind::NotFound
    } else if message.contains("no space left") {
        ErrorKind::NoSpace
    } else {
        ErrorKind::Invalid
    }
}

pub fn lost_agent(id: &str, what: &str, e: std::io::Error) -> EngineError {
    if agent::is_cancelled(&e) {
        return crate::engine::cancel::cancelled_error(&format!("{what} in workspace {id}"));
    }
    if e.kind() == std::io::ErrorKind::TimedOut {
        return EngineError::Guest(format!(
            "the guest agent of workspace {id} did not finish {what} within the operation's deadline ({e}); \
             the VM keeps running and /workspace is intact: retry, or check the guest's load with workspace_exec"
        ));
    }
    let alive = vmm_alive(id);
    EngineError::Guest(format!(
        "lost the guest agent of workspace {id} while {what} ({e}){}",
        if alive {
            ""
        } else {
            "; its VM has stopped (the next operation restarts it with /workspace intact)"
        }
    ))
}

// ---- creating ----------------------------------------------------------

/// Bytes a workspace takes on the host: its writable disk (allocated
/// blocks, not the sparse size) and its baseline archive.
pub fn disk_bytes(id: &str) -> u64 {
    let d = store::dir(id);
    disk::allocated_bytes(&d.join("vm/scratch.ext4")).unwrap_or(0)
        + disk::allocated_bytes(&d.join("baseline.tar")).unwrap_or(0)
}

pub fn create(mut req: CreateRequest, progress: &mut dyn FnMut(&str)) -> Result<Created> {
    req.validate()?;
    let entry = environments::lookup(&req.environment)?;
    if let Some(why) = kvm_status().blocker() {
        // No hint about host execution here: this text reaches MCP clients
        // too (the CLI adds its own note).
        return Err(EngineError::Unavailable(format!(
            "cannot boot a workspace VM here: {why}."
        )));
    }
    let env = environments::installed(&req.environment)?;
    reap_expired();
    // Refused before anything is made; the start itself checks again.
    capacity::precheck(&Owner::workspace("", req.name.as_deref()), req.mem_mib)?;
    let start = Instant::now();
    // Check the seed before anything is created.
    progress("checking the seed");
    let plan = seed::plan(&req.seed)?;
    let plan_ms = start.elapsed().as_millis() as u64;

    let store_lock = store::lock_store()?;
    if let Some(name) = &req.name {
        if let Some(other) = store::list_records()?
            .into_iter()
            .find(|r| r.name.as_deref() == Some(name))
        {
            return Err(EngineError::Invalid(format!(
                "a workspace named {name:?} already exists ({}); pick another name or delete that workspace first",
                other.workspace_id
            )));
        }
    }
    let id = loop {
        let id = crate::engine::paths::random_id(6);
        if !store::dir(&id).exists() {
            break id;
        }
    };
    let dir = store::dir(&id);
    store::make_private_dir(&dir)?;
    let lock = store::lock(&id, "create")?;
    let created_at = now();
    let mut record = Record {
        name: req.name.clone(),
        labels: req.labels.clone(),
        vcpu_count: req.vcpu_count,
        mem_mib: req.mem_mib,
        ttl_seconds: req.ttl_seconds,
        retention_seconds: req
            .retention_seconds
            .unwrap_or(expiry::DEFAULT_RETENTION_SECONDS),
        ..Record::new(&id, &req.environment, entry.version, created_at)
    };
    record.stamp_activity(created_at);
    store::save(&record)?;
    drop(store_lock);

    let result = (|| -> Result<Created> {
        store::make_private_dir(&store::vm_dir(&id))?;
        disk::copy_sparse(&env.scratch, &store::vm_dir(&id).join("scratch.ext4"))
            .map_err(|e| EngineError::io("creating the workspace disk", e))?;
        // The guest boots while the baseline is written.
        progress("booting the VM");
        let t = Instant::now();
        let vm = launch(&record)?;
        record.vmm_pid = Some(vm.pid);
        store::save(&record)?;
        progress("writing the baseline");
        let baseline = dir.join("baseline.tar");
        let wrote = (|| -> Result<()> {
            let f = crate::engine::paths::create_private(&baseline)
                .map_err(|e| EngineError::io("creating the baseline archive", e))?;
            let written = plan.write_tar(std::io::BufWriter::new(f), true)?;
            let manifest = serde_json::to_vec(&written.manifest).expect("manifest serializes");
            crate::engine::paths::write_atomic(&dir.join("baseline.json"), &manifest)
                .map_err(|e| EngineError::io("writing the baseline manifest", e))
        })();
        let baseline_ms = t.elapsed().as_millis() as u64;
        if let Err(e) = wrote {
            let mut vm = vm;
            vm.kill();
            return Err(e);
        }
        wait_ready(vm)?;
        let boot_ms = t.elapsed().as_millis() as u64;
        progress("seeding /workspace");
        let t = Instant::now();
        let (entry_count, bytes) = push_file(&id, "", &baseline)?;
        let seed_ms = t.elapsed().as_millis() as u64;
        record.state = WorkspaceState::Started;
        let seed = plan.describe(
            seed::Purpose::Seed,
            GUEST_ROOT,
            &seed::Written {
                entry_count,
                bytes,
                manifest: Vec::new(),
            },
        );
        record.workspace_seed = serde_json::to_value(seed).expect("seeds serialize");
        record.created_disk_bytes = disk_bytes(&id);
        record.stamp_activity(now());
        store::save(&record)?;
        review::append(
            &id,
            &Event::new("create")
                .with("seed", record.workspace_seed.clone())
                .with("duration_ms", start.elapsed().as_millis() as u64),
        );
        Ok(Created {
            workspace: describe(&record),
            timings: CreateTimings {
                create_ms: start.elapsed().as_millis() as u64,
                seed_check_ms: plan_ms,
                baseline_write_ms: baseline_ms,
                boot_ms,
                seed_push_ms: seed_ms,
            },
        })
    })();
    match result {
        Ok(v) => {
            drop(lock);
            Ok(v)
        }
        Err(e) => {
            // A VMM that cannot be stopped keeps its directory: the record
            // still says `creating`, and the reaper retries later.
            if kill_vmm(&id, record.vmm_pid).is_ok() {
                let _ = std::fs::remove_dir_all(&dir);
            }
            drop(lock);
            Err(e)
        }
    }
}

/// Pushes a tar file into the guest.
pub fn push_file(id: &str, dest: &str, tar: &Path) -> Result<(u64, u64)> {
    push_archive(id, dest, &mut |w| {
        let mut f = std::fs::File::open(tar)
            .map_err(|e| EngineError::io(format!("reading {}", tar.display()), e))?;
        std::io::copy(&mut f, w).map_err(|e| lost_agent(id, "streaming the archive", e))?;
        Ok(())
    })
}

// ---- describing --------------------------------------------------------

/// The state as it is now: a `started` record whose VMM is gone reads
/// `stopped`; an `expired` one says what that means.
fn live_state(r: &Record) -> (WorkspaceState, Option<String>) {
    if r.state == WorkspaceState::Started && !vmm_alive(&r.workspace_id) {
        return (
            WorkspaceState::Stopped,
            Some(format!(
                "the VM process (pid {}) is no longer running; /workspace is intact on the workspace disk and the next operation that needs the VM restarts it",
                r.vmm_pid.unwrap_or(0)
            )),
        );
    }
    if r.state == WorkspaceState::Expired {
        return (
            WorkspaceState::Expired,
            Some(format!(
                "no activity for ttl_seconds ({} s): its VM was stopped at {:.0}; /workspace is kept on the workspace disk and any operation boots it again. \
                 Unless used, it is deleted once retention_seconds ({} s) have passed since then (not before {:.0}, delete_after)",
                r.ttl_seconds,
                r.expired_at.unwrap_or(0.0),
                r.retention_seconds,
                expiry::delete_after(r).unwrap_or(0.0)
            )),
        );
    }
    let mut note = r.last_error.clone();
    if let Some(how) = &r.recovered {
        note = Some(match note {
            Some(n) => format!("{how}; {n}"),
            None => how.clone(),
        });
    }
    (r.state, note)
}

/// The fields about inactivity expiry that `describe` and `list` share.
fn expiry_view(r: &Record) -> ExpiryView {
    ExpiryView {
        ttl_seconds: r.ttl_seconds,
        last_activity_at: r.last_activity_at,
        expires_at: r.expires_at,
        retention_seconds: r.retention_seconds,
        expired_at: r.expired_at.filter(|_| r.state == WorkspaceState::Expired),
        delete_after: expiry::delete_after(r),
    }
}

/// The full workspace object every workspace tool returns.
pub fn describe(r: &Record) -> WorkspaceView {
    let (state, last_error) = live_state(r);
    let (command_count, last_command) = review::command_stats(&r.workspace_id);
    WorkspaceView {
        workspace_id: r.workspace_id.clone(),
        name: r.name.clone(),
        labels: r.labels.clone(),
        environment: r.environment.clone(),
        environment_version: r.environment_version.clone(),
        vcpu_count: r.vcpu_count,
        mem_mib: r.mem_mib,
        created_at: r.created_at,
        state,
        last_error,
        metadata_recovered: r.recovered.clone(),
        network_policy: "off",
        network_enabled: false,
        allow_host_compat: false,
        execution_mode: ExecutionMode::GuestVsock,
        workspace_path: GUEST_ROOT,
        workspace_seed: r.workspace_seed.clone(),
        secrets: Vec::new(),
        command_count,
        last_command,
        reset_count: r.reset_count,
        last_reset_at: r.last_reset_at,
        restart_count: r.restart_count,
        service_count: 0,
        running_service_count: 0,
        vmm_pid: r.vmm_pid.filter(|_| state == WorkspaceState::Started),
        disk: DiskUse {
            allocated_bytes: disk_bytes(&r.workspace_id),
            allocated_bytes_at_create: r.created_disk_bytes,
        },
        metadata: BTreeMap::new(),
        expiry: expiry_view(r),
    }
}

fn list_item(r: &Record) -> ListItem {
    let (state, last_error) = live_state(r);
    let (command_count, _) = review::command_stats(&r.workspace_id);
    ListItem {
        workspace_id: r.workspace_id.clone(),
        name: r.name.clone(),
        labels: r.labels.clone(),
        environment: r.environment.clone(),
        state,
        last_error,
        created_at: r.created_at,
        mem_mib: r.mem_mib,
        command_count,
        service_count: 0,
        running_service_count: 0,
        expiry: expiry_view(r),
    }
}

pub fn list() -> Result<WorkspaceList> {
    let reaped = reap_expired();
    let (records, damaged) = store::scan()?;
    let mut records: Vec<Record> = records
        .into_iter()
        .filter(|r| r.state != WorkspaceState::Creating)
        .collect();
    records.sort_by(|a, b| {
        b.last_activity_at
            .total_cmp(&a.last_activity_at)
            .then(b.created_at.total_cmp(&a.created_at))
            .then(a.workspace_id.cmp(&b.workspace_id))
    });
    let mut items: Vec<ListEntry> = records
        .iter()
        .map(|r| ListEntry::Workspace(list_item(r)))
        .collect();
    // Damaged ones last, never left out.
    items.extend(
        damaged
            .iter()
            .map(|d| ListEntry::Damaged(store::Damaged::describe(d))),
    );
    Ok(WorkspaceList {
        count: items.len(),
        workspaces: items,
        expired_stopped: reaped.stopped,
        expired_deleted: reaped.deleted,
    })
}

/// Loads a record for a look or an operation. A record restored or
/// rebuilt from a damaged one learns whether its VMM still runs, so it
/// is never booted twice.
fn load_checked(id: &str) -> Result<Record> {
    let mut r = store::load(id)?;
    if r.state == WorkspaceState::Creating {
        return Err(EngineError::Unavailable(format!(
            "workspace {id} is still being created; retry in a moment"
        )));
    }
    if r.recovered.is_some() {
        // The disk lock says whether a VMM runs; its control socket, which.
        let running = vmm_alive(id).then(|| ping_vmm(id).map(|p| p.pid).or(r.vmm_pid));
        match running {
            Some(pid) => {
                r.state = WorkspaceState::Started;
                r.vmm_pid = pid;
                expiry::clear_expiry(&mut r);
            }
            None if r.state == WorkspaceState::Started => r.state = WorkspaceState::Stopped,
            None => {}
        }
    }
    Ok(r)
}

pub fn status(id: &str) -> Result<WorkspaceView> {
    Ok(describe(&load_checked(id)?))
}

// ---- operating on a live workspace --------------------------------------

/// A locked workspace whose VM runs (booted again if it had stopped or
/// expired). Dropping it stamps the activity (see `touch`).
pub struct Live {
    pub record: Record,
    /// Set when this operation had to boot the VM again.
    pub restarted: Option<String>,
    _lock: Lock,
}

impl Live {
    pub fn id(&self) -> &str {
        &self.record.workspace_id
    }

    /// Records activity now (`store::stamp_activity`: no record write).
    pub fn touch(&mut self) -> Result<()> {
        let at = now();
        self.record.stamp_activity(at);
        store::stamp_activity(self.id(), at)
    }
}

impl Drop for Live {
    /// Every operation counts as activity when it ends, read-only ones
    /// and failed ones too (the lock is still held here).
    fn drop(&mut self) {
        let _ = self.touch();
    }
}

/// Locks workspace `id` for operation `what` and makes sure its VM runs.
pub fn open_live(id: &str, what: &str) -> Result<Live> {
    // Expiry and retention are applied whenever pyro is used, not only on
    // list/create.
    reap_expired();
    let lock = store::lock(id, what)?;
    let mut record = load_checked(id)?;
    let mut restarted = None;
    let alive = vmm_alive(id);
    if alive && record.state != WorkspaceState::Started {
        // A VMM runs on the disk though the record says otherwise (its
        // starter died before saving, or an expiry stop failed): use it,
        // never boot a second one. Using it ends any expiry.
        let pong = ping_vmm(id).ok_or_else(|| unresponsive(id, record.vmm_pid))?;
        record.state = WorkspaceState::Started;
        record.vmm_pid = Some(pong.pid);
        record.last_error = None;
        expiry::clear_expiry(&mut record);
        record.stamp_activity(now());
        store::save(&record)?;
    } else if !alive {
        let why = match record.state {
            WorkspaceState::Started => format!(
                "the VM process (pid {}) had stopped; booted it again on the same disk (/workspace kept)",
                record.vmm_pid.unwrap_or(0)
            ),
            WorkspaceState::Expired => format!(
                "the workspace had expired (no activity for {} s) and its VM was stopped; booted it again on the same disk (/workspace kept)",
                record.ttl_seconds
            ),
            _ => "the workspace was stopped; booted it again on the same disk (/workspace kept)"
                .into(),
        };
        // Using it again ends the expiry, whether or not the boot works.
        record.state = WorkspaceState::Stopped;
        record.vmm_pid = None;
        expiry::clear_expiry(&mut record);
        record.stamp_activity(now());
        store::save(&record)?;
        match boot(&record) {
            Ok(pid) => {
                record.state = WorkspaceState::Started;
                record.vmm_pid = Some(pid);
                record.last_error = None;
                record.restart_count += 1;
                store::save(&record)?;
                review::append(id, &Event::new("restart").with("reason", why.clone()));
                restarted = Some(why);
            }
            Err(e) => {
                record.last_error = Some(format!("restart failed: {e}"));
                store::save(&record)?;
                return Err(EngineError::Guest(format!(
                    "workspace {id} was stopped and could not be restarted: {e}"
                )));
            }
        }
    }
    Ok(Live {
        record,
        restarted,
        _lock: lock,
    })
}

pub fn update(
    id: &str,
    name: Option<String>,
    clear_name: bool,
    labels: BTreeMap<String, String>,
    clear_labels: Vec<String>,
) -> Result<Updated> {
    if name.is_some() && clear_name {
        return Err(EngineError::Invalid(
            "name and clear_name cannot be used together".into(),
        ));
    }
    let name = name.map(|n| normalize_name(&n)).transpose()?;
    let labels = normalize_labels(&labels)?;
    let clear: Vec<String> = clear_labels
        .iter()
        .map(|k| normalize_label_key(k))
        .collect::<Result<_>>()?;
    let _lock = store::lock(id, "update")?;
    let _store = store::lock_store()?;
    let mut r = load_checked(id)?;
    let mut changed = Vec::new();
    if clear_name && r.name.is_some() {
        r.name = None;
        changed.push("name".to_string());
    }
    if let Some(n) = name {
        if r.name.as_deref() != Some(n.as_str()) {
            if let Some(other) = store::list_records()?
                .into_iter()
                .find(|o| o.name.as_deref() == Some(n.as_str()) && o.workspace_id != r.workspace_id)
            {
                return Err(EngineError::Invalid(format!(
                    "a workspace named {n:?} already exists ({}); pick another name",
                    other.workspace_id
                )));
            }
            r.name = Some(n);
            changed.push("name".into());
        }
    }
    for (k, v) in labels {
        if r.labels.get(&k) != Some(&v) {
            r.labels.insert(k.clone(), v);
            changed.push(format!("labels.{k}"));
        }
    }
    for k in clear {
        if r.labels.remove(&k).is_some() {
            changed.push(format!("labels.{k}"));
        }
    }
    if changed.is_empty() {
        return Err(EngineError::Invalid(
            "workspace update requested no effective change (give a new name, labels, clear_name or clear_labels)".into(),
        ));
    }
    if r.state == WorkspaceState::Expired {
        // Any operation ends the expiry; the VM boots when one needs it.
        r.state = WorkspaceState::Stopped;
        expiry::clear_expiry(&mut r);
    }
    r.stamp_activity(now());
    store::save(&r)?;
    review::append(id, &Event::new("update").with("changed", changed));
    Ok(Updated(describe(&r)))
}

/// Recreates the VM on a fresh disk and restores `/workspace` from the
/// baseline; command history starts over.
pub fn reset(id: &str, snapshot: &str) -> Result<ResetDone> {
    if snapshot != "baseline" {
        return Err(EngineError::NotFound(format!(
            "snapshot {snapshot:?} does not exist for workspace {id}; workspace-core keeps only the baseline (named snapshots are part of workspace-full)"
        )));
    }
    let start = Instant::now();
    let _lock = store::lock(id, "reset")?;
    let mut r = load_checked(id)?;
    let env = environments::installed(&r.environment)?;
    // The disk is replaced below: only once no VMM holds it.
    kill_vmm(id, r.vmm_pid)?;
    r.state = WorkspaceState::Stopped;
    r.vmm_pid = None;
    expiry::clear_expiry(&mut r);
    r.stamp_activity(now());
    store::save(&r)?;
    let vm = store::vm_dir(id);
    let scratch = vm.join("scratch.ext4");
    let _ = std::fs::remove_file(&scratch);
    disk::copy_sparse(&env.scratch, &scratch)
        .map_err(|e| EngineError::io("recreating the workspace disk", e))?;
    review::clear_commands(id);
    let pid = boot(&r)?;
    r.vmm_pid = Some(pid);
    r.state = WorkspaceState::Started;
    r.last_error = None;
    store::save(&r)?;
    let (entry_count, bytes) = push_file(id, "", &store::dir(id).join("baseline.tar"))?;
    r.reset_count += 1;
    r.last_reset_at = Some(now());
    r.stamp_activity(now());
    store::save(&r)?;
    review::append(
        id,
        &Event::new("reset")
            .with("snapshot", "baseline")
            .with("entry_count", entry_count)
            .with("duration_ms", start.elapsed().as_millis() as u64),
    );
    Ok(ResetDone {
        workspace: describe(&r),
        workspace_reset: ResetInfo {
            snapshot_name: "baseline".into(),
            kind: "baseline".into(),
            destination: GUEST_ROOT.into(),
            entry_count,
            bytes_written: bytes,
        },
    })
}

/// Removes a workspace: its VM, disk, sockets, history. Waits for a running
/// operation on it to finish first. A workspace whose metadata is damaged
/// beyond repair can be deleted too (its VMM is found by its config path).
pub fn delete(id: &str) -> Result<Deleted> {
    let lock = store::lock(id, "delete")?;
    // A damaged record may have no trustworthy pid: kill_vmm finds the
    // VMM that holds the disk by itself.
    let pid = match store::load(id) {
        Ok(r) => r.vmm_pid,
        Err(EngineError::NotFound(m)) => return Err(EngineError::NotFound(m)),
        Err(_) => None,
    };
    remove(id, pid)?;
    drop(lock);
    Ok(Deleted {
        workspace_id: id.to_string(),
        deleted: true,
        reason: "explicit_delete",
    })
}

/// Stops the VMM and removes everything; a VMM that cannot be stopped
/// keeps the workspace as it is (its directory must outlive it).
fn remove(id: &str, vmm_pid: Option<i32>) -> Result<()> {
    kill_vmm(id, vmm_pid)?;
    let dir = store::dir(id);
    // Rename first: a half-removed directory never looks like a workspace.
    let trash = store::root().join(format!(".deleted-{id}"));
    let target = if std::fs::rename(&dir, &trash).is_ok() {
        trash
    } else {
        dir
    };
    let _ = std::fs::remove_dir_all(target);
    Ok(())
}

/// How long an expiring workspace's guest gets to flush its filesystems
/// and power off before its VMM is killed: a clean shutdown takes well
/// under a second; a guest that does not answer loses nothing the host
/// promised to keep (every operation flushes before it returns).
pub const EXPIRY_SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// Stops a workspace's VM for expiry: a clean guest shutdown first (its
/// filesystems flushed), a kill if that does not end it in time.
fn stop_for_expiry(id: &str, pid: Option<i32>) -> Result<()> {
    if vmm_alive(id) {
        let deadline = Instant::now() + EXPIRY_SHUTDOWN_WAIT;
        if agent::request(&vsock(id), &Request::Shutdown, deadline).is_ok() {
            while vmm_alive(id) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    kill_vmm(id, pid)
}

/// What one reaper pass did.
#[derive(Debug, Default)]
pub struct Reaped {
    /// Workspaces whose VM it stopped for inactivity (disk kept).
    pub stopped: Vec<String>,
    /// Workspaces it deleted: retention over, or a creation abandoned
    /// halfway by a process that died.
    pub deleted: Vec<String>,
}

/// Applies inactivity expiry and retention (`expiry::decide`) to every
/// workspace nobody is using, and deletes creations that were abandoned
/// (their process died mid-create).
pub fn reap_expired() -> Reaped {
    let mut out = Reaped::default();
    let Ok(records) = store::list_records() else {
        return out;
    };
    let clock = Clock::now();
    for r in records {
        let id = r.workspace_id.clone();
        if r.state != WorkspaceState::Creating && expiry::decide(&r, &clock) == Decision::Keep {
            continue;
        }
        // Busy (in use, or still being created): leave it for later.
        let Some(lock) = store::try_lock(&id, "expiring") else {
            continue;
        };
        // Decide again on the record as it is now that nobody can change it.
        let Ok(fresh) = store::load(&id) else {
            continue;
        };
        if fresh.state == WorkspaceState::Creating {
            if remove(&id, fresh.vmm_pid).is_ok() {
                out.deleted.push(id);
            }
            continue;
        }
        let Ok(mut r) = load_checked(&id) else {
            continue;
        };
        match expiry::decide(&r, &clock) {
            Decision::Keep => {}
            Decision::Expire => {
                if stop_for_expiry(&id, r.vmm_pid).is_err() {
                    // Its VMM could not be stopped: not expired yet.
                    continue;
                }
                expiry::mark_expired(&mut r, &clock);
                if store::save(&r).is_ok() {
                    review::append(
                        &id,
                        &Event::new("expire")
                            .with("ttl_seconds", r.ttl_seconds)
                            .with("last_activity_at", r.last_activity_at)
                            .with("retention_seconds", r.retention_seconds),
                    );
                    out.stopped.push(id);
                }
            }
            Decision::Observe(ev) => {
                r.expiry_evidence = Some(ev);
                let _ = store::save(&r);
            }
            Decision::Delete => {
                if remove(&id, r.vmm_pid).is_ok() {
                    out.deleted.push(id);
                }
            }
        }
        drop(lock);
    }
    // Leftovers of deletes interrupted halfway.
    if let Ok(rd) = std::fs::read_dir(store::root()) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(".deleted-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_errors_map_by_their_kind_and_an_old_agents_by_their_words() {
        let missing = "/workspace/a does not exist";
        assert!(matches!(
            agent_error(ErrorKind::NotFound, missing.into()),
            EngineError::NotFound(m) if m == missing
        ));
        let full = "no space left on the workspace disk while writing /workspace/a";
        assert!(matches!(
            agent_error(ErrorKind::NoSpace, full.into()),
            EngineError::Guest(m) if m == format!("{full}; free space in the workspace (delete files with workspace_exec) or reset it")
        ));
        for kind in [
            ErrorKind::Invalid,
            ErrorKind::Permission,
            ErrorKind::TooLarge,
            ErrorKind::Io,
        ] {
            assert!(matches!(
                agent_error(kind, "m".into()),
                EngineError::Invalid(m) if m == "m"
            ));
        }
        // The words no longer decide when a kind came with them: a file
        // named "does not exist" that cannot be read is not missing.
        let odd = "/workspace/does not exist: Permission denied (os error 13)";
        assert!(matches!(
            agent_error(ErrorKind::Permission, odd.into()),
            EngineError::Invalid(_)
        ));
        // Without a kind (an agent before protocol 3), the words do.
        assert!(matches!(
            agent_error(ErrorKind::Unknown, missing.into()),
            EngineError::NotFound(_)
        ));
        assert!(matches!(
            agent_error(ErrorKind::Unknown, full.into()),
            EngineError::Guest(m) if m.ends_with("or reset it")
        ));
        assert!(matches!(
            agent_error(ErrorKind::Unknown, "bad workspace path".into()),
            EngineError::Invalid(_)
        ));
    }

    #[test]
    fn names_and_labels_are_validated() {
        assert_eq!(normalize_name("  alpha ").unwrap(), "alpha");
        assert!(normalize_name(" ").is_err());
        assert!(normalize_name(&"x".repeat(121)).is_err());
        let mut l = BTreeMap::new();
        l.insert("issue".to_string(), " 123 ".to_string());
        assert_eq!(normalize_labels(&l).unwrap()["issue"], "123");
        l.insert("-bad".to_string(), "x".to_string());
        assert!(normalize_labels(&l)
            .unwrap_err()
            .to_string()
            .contains("-bad"));
        let mut l = BTreeMap::new();
        l.insert("k".to_string(), "two\nlines".to_string());
        assert!(normalize_labels(&l).is_err());
    }

    #[test]
    fn create_checks_arguments_first() {
        let mut r = CreateRequest::new("debian:12");
        r.vcpu_count = 0;
        assert!(create(r, &mut |_| {})
            .unwrap_err()
            .to_string()
            .contains("vcpu_count"));
        let mut r = CreateRequest::new("debian:12");
        r.ttl_seconds = 0;
        assert!(create(r, &mut |_| {})
            .unwrap_err()
            .to_string()
            .contains("ttl_seconds"));
        let r = CreateRequest::new("debian:99");
        assert!(create(r, &mut |_| {})
            .unwrap_err()
            .to_string()
            .contains("unknown environment"));
    }

    #[test]
    fn a_workspace_without_a_disk_has_no_vmm() {
        assert!(!vmm_alive("0123456789ab"));
        assert_eq!(
            lock_holder("0123456789ab", Some(std::process::id() as i32), None),
            None
        );
    }
}
