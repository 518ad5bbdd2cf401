//! What workspace operations return: one type per result, serialized as
//! the MCP tools' `structuredContent` and as `pyro workspace ... --json`
//! (`render` shows them as text).

use crate::engine::run::{ExecOutcome, ExecutionMode};
use serde::Serialize;

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
