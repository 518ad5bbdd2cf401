//! Opening a workspace for an operation that needs its VM: the workspace
//! locked, its VMM running (booted again on the same disk if it had
//! stopped or expired), and activity stamped when the operation ends.

use super::expiry;
use super::reap::reap_expired;
use super::review::{self, Event};
use super::store::{self, Record, WorkspaceState};
use super::view::load_checked;
use super::vmm::{boot, ping_vmm, unresponsive, vmm_alive};
use super::{now, EngineError, Result};
use crate::engine::lock::Lock;

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
