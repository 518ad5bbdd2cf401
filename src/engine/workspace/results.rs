//! What workspace operations return: one type per result, serialized as
//! the MCP tools' `structuredContent` and as `pyro workspace ... --json`
//! (`render` shows them as text).

use super::seed::SeedInfo;
use super::store::WorkspaceState;
use crate::engine::run::{ExecOutcome, ExecutionMode};
use pyro_proto::ArtifactType;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// `workspace_exec`: one command's outcome in a workspace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkspaceExec {
    #[serde(flatten)]
    pub exec: ExecOutcome,
    pub workspace_id: String,
    pub environment: String,
    pub environment_version: String,
    pub command: String,
    pub execution_mode: ExecutionMode,
    /// Its number in the workspace's command history.
    pub sequence: u64,
    pub cwd: String,
    /// Why the operation had to boot the workspace's VM again, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarted_vm: Option<String>,
}

/// The fields about inactivity expiry every view of a workspace carries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpiryView {
    pub ttl_seconds: u64,
    pub last_activity_at: f64,
    pub expires_at: f64,
    pub retention_seconds: u64,
    /// Set while the workspace is expired.
    pub expired_at: Option<f64>,
    /// The earliest time an expired workspace may be deleted.
    pub delete_after: Option<f64>,
}

/// The host disk a workspace takes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiskUse {
    pub allocated_bytes: u64,
    pub allocated_bytes_at_create: u64,
}

/// A workspace as `workspace_status` shows it, and as the tools that
/// change one return it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkspaceView {
    pub workspace_id: String,
    pub name: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub environment: String,
    pub environment_version: String,
    pub vcpu_count: u8,
    pub mem_mib: u32,
    pub created_at: f64,
    /// As it is now: a `started` record whose VMM is gone reads `stopped`.
    pub state: WorkspaceState,
    /// What is worth knowing about the state (why it stopped, expired, or
    /// how its metadata was recovered).
    pub last_error: Option<String>,
    pub metadata_recovered: Option<String>,
    /// Guest networking is not in this build.
    pub network_policy: &'static str,
    pub network_enabled: bool,
    /// A workspace always runs in a VM.
    pub allow_host_compat: bool,
    pub execution_mode: ExecutionMode,
    pub workspace_path: &'static str,
    /// The seed as recorded at creation (see `SeedInfo`; an open object,
    /// as stored: rebuilt metadata keeps less).
    pub workspace_seed: Value,
    /// Secrets are not in this build.
    pub secrets: Vec<String>,
    pub command_count: u64,
    pub last_command: Option<CommandInfo>,
    pub reset_count: u64,
    pub last_reset_at: Option<f64>,
    pub restart_count: u64,
    /// Services are not in this build.
    pub service_count: u64,
    pub running_service_count: u64,
    /// Set while it is started.
    pub vmm_pid: Option<i32>,
    pub disk: DiskUse,
    pub metadata: BTreeMap<String, String>,
    #[serde(flatten)]
    pub expiry: ExpiryView,
}

/// `workspace_update`: the workspace as it is after the change.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Updated(pub WorkspaceView);

/// Where the time of a `workspace_create` went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CreateTimings {
    pub create_ms: u64,
    pub seed_check_ms: u64,
    pub baseline_write_ms: u64,
    pub boot_ms: u64,
    pub seed_push_ms: u64,
}

/// `workspace_create`: the new workspace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Created {
    #[serde(flatten)]
    pub workspace: WorkspaceView,
    pub timings: CreateTimings,
}

/// What a reset restored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResetInfo {
    pub snapshot_name: String,
    pub kind: String,
    pub destination: String,
    pub entry_count: u64,
    pub bytes_written: u64,
}

/// `workspace_reset`: the workspace on its fresh disk.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResetDone {
    #[serde(flatten)]
    pub workspace: WorkspaceView,
    pub workspace_reset: ResetInfo,
}

/// `workspace_delete`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deleted {
    pub workspace_id: String,
    pub deleted: bool,
    pub reason: &'static str,
}

/// A workspace in `workspace_list`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListItem {
    pub workspace_id: String,
    pub name: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub environment: String,
    pub state: WorkspaceState,
    pub last_error: Option<String>,
    pub created_at: f64,
    pub mem_mib: u32,
    pub command_count: u64,
    pub service_count: u64,
    pub running_service_count: u64,
    #[serde(flatten)]
    pub expiry: ExpiryView,
}

/// A workspace in `workspace_list` whose metadata cannot be read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DamagedItem {
    pub workspace_id: String,
    /// Unknown: always null.
    pub name: Option<String>,
    /// Unknown: always empty.
    pub labels: BTreeMap<String, String>,
    /// Unknown: always null.
    pub environment: Option<String>,
    /// Always `damaged`.
    pub state: WorkspaceState,
    /// What is wrong.
    pub damage: String,
    /// The error an operation on it fails with.
    pub last_error: String,
}

/// One entry of `workspace_list`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ListEntry {
    Workspace(ListItem),
    Damaged(DamagedItem),
}

/// `workspace_list`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkspaceList {
    pub count: usize,
    /// Most recently active first; damaged ones last.
    pub workspaces: Vec<ListEntry>,
    /// Workspaces this call's reaper pass stopped for inactivity...
    pub expired_stopped: Vec<String>,
    /// ...and deleted at the end of their retention.
    pub expired_deleted: Vec<String>,
}

/// A command of the history without its output (`last_command`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandInfo {
    pub sequence: u64,
    pub command: String,
    pub cwd: String,
    pub exit_code: i32,
    pub duration_ms: u64,
    pub timed_out: bool,
    pub execution_mode: ExecutionMode,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub recorded_at: f64,
}

/// A command of the history as recorded: with its output, long output
/// keeping its start and end (`review::clip`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandRecord {
    #[serde(flatten)]
    pub info: CommandInfo,
    pub stdout: String,
    pub stderr: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub stdout_clipped_in_log: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub stderr_clipped_in_log: bool,
}

fn is_false(b: &bool) -> bool {
    !b
}

/// `workspace_logs`: every command since the last reset, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Logs {
    pub workspace_id: String,
    pub count: usize,
    pub entries: Vec<CommandRecord>,
}

/// `workspace_sync_push`: what a sync put where.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncPush {
    pub workspace_id: String,
    pub execution_mode: ExecutionMode,
    pub workspace_sync: SeedInfo,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarted_vm: Option<String>,
}

/// One path in a file listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileEntryView {
    /// Absolute, under `/workspace`.
    pub path: String,
    pub artifact_type: ArtifactType,
    pub size_bytes: u64,
    /// A symlink's target (never followed).
    pub link_target: Option<String>,
}

/// `workspace_file_list`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileList {
    pub workspace_id: String,
    pub path: String,
    /// What `path` itself is: a listing of anything but a directory lists
    /// that one entry.
    pub artifact_type: ArtifactType,
    pub recursive: bool,
    /// Entries there are, listed or not (`truncated`).
    pub count: usize,
    pub entries: Vec<FileEntryView>,
    pub truncated: bool,
    pub execution_mode: ExecutionMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarted_vm: Option<String>,
}

/// How a file read's content is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Encoding {
    /// UTF-8 text, as is.
    #[serde(rename = "utf-8")]
    Utf8,
    /// Anything else.
    #[serde(rename = "base64")]
    Base64,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Base64 => "base64",
        }
    }
}

/// `workspace_file_read`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileRead {
    pub workspace_id: String,
    pub path: String,
    /// The whole file's size.
    pub size_bytes: u64,
    pub max_bytes: u64,
    pub content: String,
    pub encoding: Encoding,
    pub binary: bool,
    /// Bytes of the file `content` holds.
    pub returned_bytes: usize,
    /// Whether the file goes on past `content`.
    pub truncated: bool,
    pub execution_mode: ExecutionMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarted_vm: Option<String>,
}

/// `workspace_file_write`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileWritten {
    pub workspace_id: String,
    pub path: String,
    pub size_bytes: u64,
    pub bytes_written: u64,
    pub execution_mode: ExecutionMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarted_vm: Option<String>,
}

/// How many files a patch changed, by kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PatchSummary {
    pub total: u64,
    pub added: u64,
    pub modified: u64,
    pub deleted: u64,
    pub renamed: u64,
}

/// One file a patch changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatchEntry {
    pub path: String,
    /// `added`, `modified`, `deleted` or `renamed`.
    pub status: &'static str,
    pub hunks: usize,
    /// Where a renamed file was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// `workspace_patch_apply`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatchApplied {
    pub workspace_id: String,
    pub changed: bool,
    pub summary: PatchSummary,
    pub entries: Vec<PatchEntry>,
    /// The patch as given.
    pub patch: String,
    pub execution_mode: ExecutionMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarted_vm: Option<String>,
}

/// Changed paths by kind, and how they are shown.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DiffSummary {
    pub total: u64,
    pub added: u64,
    pub modified: u64,
    pub deleted: u64,
    pub type_changed: u64,
    /// Shown as a text patch...
    pub text_patched: u64,
    /// ...or not (binary, over the budget, a directory or symlink).
    pub non_text: u64,
}

impl DiffSummary {
    /// Counts one path that changed as `status` says.
    pub fn count(&mut self, status: ChangeStatus) {
        self.total += 1;
        *match status {
            ChangeStatus::Added => &mut self.added,
            ChangeStatus::Modified => &mut self.modified,
            ChangeStatus::Deleted => &mut self.deleted,
            ChangeStatus::TypeChanged => &mut self.type_changed,
        } += 1;
    }
}

/// How a path changed against the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeStatus {
    Added,
    Deleted,
    TypeChanged,
    Modified,
}

impl ChangeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeStatus::Added => "added",
            ChangeStatus::Deleted => "deleted",
            ChangeStatus::TypeChanged => "type_changed",
            ChangeStatus::Modified => "modified",
        }
    }
}

/// One changed path of a diff.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiffEntry {
    pub path: String,
    pub status: ChangeStatus,
    pub artifact_type: ArtifactType,
    pub binary: bool,
    pub size_bytes: Option<u64>,
    pub sha256: Option<String>,
    /// Its part of `patch`, when it has one.
    pub text_patch: Option<String>,
    /// Listed with hash and size only: the diff budget was spent.
    #[serde(skip_serializing_if = "is_false")]
    pub over_budget: bool,
}

/// What one diff could spend and spent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiffBudget {
    pub max_bytes: u64,
    pub max_files: usize,
    pub bytes_read: u64,
    pub files_read: usize,
    pub files_over_budget: u64,
    pub max_entries: usize,
    pub entries_omitted: usize,
}

/// `workspace_diff`: `/workspace` against the baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diff {
    pub workspace_id: String,
    pub changed: bool,
    pub summary: DiffSummary,
    /// Some files were over the budget or some paths left out.
    pub truncated: bool,
    pub budget: DiffBudget,
    pub entries: Vec<DiffEntry>,
    /// The text patches and binary notes, in path order.
    pub patch: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarted_vm: Option<String>,
}

/// A review event as `events.jsonl` records it: its kind, when, and
/// the fields of that kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub kind: String,
    pub at: f64,
    #[serde(flatten)]
    pub fields: serde_json::Map<String, Value>,
}

/// Where the session a summary covers began.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionInfo {
    pub started_at: Option<f64>,
    /// `create` or `reset`.
    pub since: &'static str,
    pub reset_count: u64,
    pub last_reset_at: Option<f64>,
    pub seed: Value,
}

/// A command in a summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandBrief {
    pub sequence: u64,
    pub command: String,
    pub exit_code: i32,
    pub duration_ms: u64,
    pub timed_out: bool,
}

/// The session's commands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandsSummary {
    pub count: usize,
    /// Those with a nonzero exit code.
    pub failed: usize,
    pub entries: Vec<CommandBrief>,
}

/// A changed path in a summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangeBrief {
    pub path: String,
    pub status: ChangeStatus,
    pub artifact_type: ArtifactType,
    pub binary: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub over_budget: bool,
}

/// The session's changes against the baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangesSummary {
    pub changed: bool,
    pub summary: DiffSummary,
    pub entries: Vec<ChangeBrief>,
    pub truncated: bool,
}

/// `workspace_summary`: the session since the last reset (or creation).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub workspace_id: String,
    pub name: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub environment: String,
    pub state: WorkspaceState,
    pub headline: String,
    pub session: SessionInfo,
    pub commands: CommandsSummary,
    pub changes: ChangesSummary,
    pub syncs: Vec<StoredEvent>,
    pub file_edits: Vec<StoredEvent>,
    pub patch_applies: Vec<StoredEvent>,
    pub exports: Vec<StoredEvent>,
    pub vm_restarts: Vec<StoredEvent>,
    /// Services and snapshots are not in this build.
    pub services: Vec<Value>,
    pub snapshots: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarted_vm: Option<String>,
}

/// `workspace_export`: what was copied out to the host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exported {
    pub workspace_id: String,
    pub workspace_path: String,
    pub output_path: std::path::PathBuf,
    pub artifact_type: ArtifactType,
    pub entry_count: u64,
    pub bytes_written: u64,
    /// Whether an existing `output_path` was replaced.
    pub overwrote: bool,
    pub execution_mode: ExecutionMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarted_vm: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(v: &Value) -> Vec<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    /// Create and reset (which need a VM, so the host tests do not call
    /// them) return the workspace object with one field more.
    #[test]
    fn create_and_reset_return_the_workspace_object_and_their_own_field() {
        let view =
            super::super::view::describe(&super::super::store::sample_record("0123456789ab"));
        let plain = serde_json::to_value(&view).unwrap();
        assert_eq!(plain["state"], "stopped");
        assert_eq!(plain["expires_at"], 1_795_997_400.0);
        let created = serde_json::to_value(Created {
            workspace: view.clone(),
            timings: CreateTimings {
                create_ms: 5,
                seed_check_ms: 1,
                baseline_write_ms: 1,
                boot_ms: 2,
                seed_push_ms: 1,
            },
        })
        .unwrap();
        let mut want = keys(&plain);
        want.push("timings".into());
        want.sort();
        assert_eq!(keys(&created), want);
        assert_eq!(created["timings"]["boot_ms"], 2);
        let reset = serde_json::to_value(ResetDone {
            workspace: view.clone(),
            workspace_reset: ResetInfo {
                snapshot_name: "baseline".into(),
                kind: "baseline".into(),
                destination: "/workspace".into(),
                entry_count: 3,
                bytes_written: 15,
            },
        })
        .unwrap();
        let mut want = keys(&plain);
        want.push("workspace_reset".into());
        want.sort();
        assert_eq!(keys(&reset), want);
        assert_eq!(serde_json::to_value(Updated(view)).unwrap(), plain);
    }
}
