//! The VMM process of a workspace: launching it on the workspace's disk,
//! waiting for its guest, telling whether it still runs, and stopping it.
//!
//! The VMM of a workspace runs detached (its own session, not tied to the
//! process that started it). Whether it still runs is decided by the lock
//! it holds on the workspace's disk (`vmm::disk_lock`), which every
//! process sees alike whatever path it reaches `PYRO_HOME` by and whatever
//! PID namespace it runs in; which process to stop is learnt by asking the
//! VMM on its control socket. A VMM that holds the disk is never taken for
//! dead, so a second one never boots on the same disk. A workspace whose
//! VMM is gone is `stopped`; its disk keeps `/workspace`, and the next
//! operation that needs the VM boots it again on the same disk and says so
//! (`live::open_live`). An `expired` one (stopped by the reaper for
//! inactivity) is booted again the same way.

use super::store::{self, Record};
use super::{EngineError, Result};
use crate::engine::capacity::Owner;
use crate::engine::environments;
use crate::engine::vm::{VmOptions, VmProcess};
use crate::vmm::{control, disk_lock};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn boot_timeout() -> Duration {
    let secs = std::env::var("PYRO_BOOT_TIMEOUT_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

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
pub(super) fn ping_vmm(id: &str) -> Option<control::Pong> {
    let pong = control::ping(&control_socket(id), CONTROL_TIMEOUT).ok()?;
    let ours = match &pong.disk {
        None => true,
        Some(d) => std::fs::metadata(disk_path(id)).is_ok_and(|m| disk_lock::identity(&m) == *d),
    };
    ours.then_some(pong)
}

/// The error for a VMM that holds the disk but cannot be reached.
pub(super) fn unresponsive(id: &str, recorded: Option<i32>) -> EngineError {
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
pub(super) fn kill_vmm(id: &str, recorded: Option<i32>) -> Result<()> {
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
pub(super) fn launch(r: &Record) -> Result<VmProcess> {
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
pub(super) fn wait_ready(mut vm: VmProcess) -> Result<i32> {
    if let Err(e) = vm.wait_ready(boot_timeout()) {
        vm.kill();
        return Err(e);
    }
    Ok(vm.pid)
}

/// Boots the workspace's VM on its existing disk; returns the VMM pid.
pub(super) fn boot(r: &Record) -> Result<i32> {
    wait_ready(launch(r)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workspace_without_a_disk_has_no_vmm() {
        assert!(!vmm_alive("0123456789ab"));
        assert_eq!(
            lock_holder("0123456789ab", Some(std::process::id() as i32), None),
            None
        );
    }
}
