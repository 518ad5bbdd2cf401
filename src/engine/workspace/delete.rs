//! Deleting a workspace: its VMM stopped, then its directory (disk,
//! sockets, history) removed.

use super::results::Deleted;
use super::store;
use super::vmm::kill_vmm;
use super::{EngineError, Result};

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
pub(super) fn remove(id: &str, vmm_pid: Option<i32>) -> Result<()> {
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
