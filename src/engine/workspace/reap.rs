//! The reaper: applies inactivity expiry and retention (the rule is in
//! `expiry`) to workspaces nobody is using, and clears creations and
//! deletes that a dead process left halfway. It runs whenever pyro is
//! used (list, create, any operation on a live workspace).

use super::delete::remove;
use super::expiry::{self, Clock, Decision};
use super::guest::vsock;
use super::review::{self, Event};
use super::store::{self, WorkspaceState};
use super::view::load_checked;
use super::vmm::{kill_vmm, vmm_alive};
use super::Result;
use crate::engine::agent;
use pyro_proto::Request;
use std::time::{Duration, Instant};

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
