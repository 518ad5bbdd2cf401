//! Resetting a workspace: a fresh disk and VM, `/workspace` restored from
//! the baseline archive written at creation.

use super::expiry;
use super::guest::push_file;
use super::results::{ResetDone, ResetInfo};
use super::review::{self, Event};
use super::store::{self, WorkspaceState};
use super::view::{describe, load_checked};
use super::vmm::{boot, kill_vmm};
use super::{now, EngineError, Result, GUEST_ROOT};
use crate::engine::disk;
use crate::engine::environments;
use std::time::Instant;

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
