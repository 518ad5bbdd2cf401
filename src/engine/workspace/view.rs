//! Describing workspaces: the workspace object every workspace tool
//! returns (`describe`), `status` and `list`, with the state as it is now
//! (a VMM that died reads `stopped`), and loading a record checked against
//! its VMM.

use super::expiry;
use super::reap::reap_expired;
use super::results::{DiskUse, ExpiryView, ListEntry, ListItem, WorkspaceList, WorkspaceView};
use super::review;
use super::store::{self, Record, WorkspaceState};
use super::vmm::{ping_vmm, vmm_alive};
use super::{EngineError, Result, GUEST_ROOT};
use crate::engine::disk;
use crate::engine::run::ExecutionMode;
use std::collections::BTreeMap;

/// Bytes a workspace takes on the host: its writable disk (allocated
/// blocks, not the sparse size) and its baseline archive.
pub fn disk_bytes(id: &str) -> u64 {
    let d = store::dir(id);
    disk::allocated_bytes(&d.join("vm/scratch.ext4")).unwrap_or(0)
        + disk::allocated_bytes(&d.join("baseline.tar")).unwrap_or(0)
}

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
pub(super) fn load_checked(id: &str) -> Result<Record> {
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
