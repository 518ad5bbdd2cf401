//! Workspace results other than commands: the workspace itself (status,
//! create, update, reset), the list, delete, the command history and sync.
//! Their MCP text is the JSON itself; the CLI prints them as below.

use super::{show, Human, Report};
use crate::engine::workspace::results::{
    Created, Deleted, ListEntry, Logs, ResetDone, SyncPush, Updated, WorkspaceList, WorkspaceView,
};
use crate::engine::workspace::seed::SourceKey;
use crate::engine::workspace::store::WorkspaceState;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// `k=v` pairs joined by `sep`.
fn pairs(labels: &BTreeMap<String, String>, sep: &str) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(sep)
}

/// What the CLI shows of a recorded seed description. Records keep it as
/// they stored it (`SeedInfo` writes it; metadata rebuilt after damage
/// keeps less), so every field may be missing.
#[derive(Debug, Default, Deserialize)]
struct SeedShown {
    #[serde(default)]
    mode: Value,
    #[serde(default)]
    seed_path: Value,
    #[serde(default)]
    entry_count: Value,
    #[serde(default)]
    bytes_written: Value,
}

impl SeedShown {
    fn of(seed: &Value) -> SeedShown {
        SeedShown::deserialize(seed).unwrap_or_default()
    }

    fn line(&self) -> String {
        match self.seed_path.as_str() {
            Some(p) => format!(
                "Seed: {} from {p} ({} entries, {} bytes)",
                show(&self.mode),
                show(&self.entry_count),
                show(&self.bytes_written)
            ),
            None => format!("Seed: {}", show(&self.mode)),
        }
    }
}

/// The workspace, one fact a line, under `action: <id>`.
fn workspace_human(v: &WorkspaceView, action: &str, h: &mut Human) {
    let mut line = |s: String| h.out(s + "\n");
    line(format!("{action}: {}", v.workspace_id));
    if let Some(n) = &v.name {
        line(format!("Name: {n}"));
    }
    if !v.labels.is_empty() {
        line(format!("Labels: {}", pairs(&v.labels, ", ")));
    }
    line(format!(
        "Environment: {} ({})",
        v.environment, v.environment_version
    ));
    line(format!("State: {}", v.state));
    if let Some(e) = &v.last_error {
        line(format!("Note: {e}"));
    }
    line(format!("Workspace: {}", v.workspace_path));
    line(SeedShown::of(&v.workspace_seed).line());
    line(format!(
        "Resources: {} vCPU / {} MiB",
        v.vcpu_count, v.mem_mib
    ));
    line(format!(
        "Disk: {} bytes allocated on the host",
        v.disk.allocated_bytes
    ));
    let x = &v.expiry;
    if v.state == WorkspaceState::Expired {
        line(format!(
            "Expired at: {} (no activity for {} s); disk kept, deleted not before {} (retention {} s) unless used",
            show(&x.expired_at),
            x.ttl_seconds,
            show(&x.delete_after),
            x.retention_seconds
        ));
    } else {
        line(format!(
            "Expires at: {} ({} s after the last activity; then the VM stops and the disk is kept {} s)",
            show(&x.expires_at),
            x.ttl_seconds,
            x.retention_seconds
        ));
    }
    if let Some(m) = &v.metadata_recovered {
        line(format!("Metadata: {m}"));
    }
    line(format!(
        "Commands: {}  Resets: {}",
        v.command_count, v.reset_count
    ));
    if let Some(c) = &v.last_command {
        line(format!(
            "Last command: {} (exit_code={})",
            c.command, c.exit_code
        ));
    }
}

impl Report for WorkspaceView {
    fn human(&self, h: &mut Human) {
        workspace_human(self, "Workspace", h);
    }

    fn workspace_id(&self) -> Option<&str> {
        Some(&self.workspace_id)
    }
}

impl Report for Updated {
    fn human(&self, h: &mut Human) {
        workspace_human(&self.0, "Updated workspace", h);
    }

    fn workspace_id(&self) -> Option<&str> {
        Some(&self.0.workspace_id)
    }
}

impl Report for Created {
    fn human(&self, h: &mut Human) {
        workspace_human(&self.workspace, "Workspace", h);
    }

    fn workspace_id(&self) -> Option<&str> {
        Some(&self.workspace.workspace_id)
    }
}

impl Report for ResetDone {
    fn human(&self, h: &mut Human) {
        workspace_human(&self.workspace, "Reset workspace", h);
        let r = &self.workspace_reset;
        h.out(format!(
            "Restored: {} ({} entries, {} bytes)\n",
            r.snapshot_name, r.entry_count, r.bytes_written
        ));
    }

    fn workspace_id(&self) -> Option<&str> {
        Some(&self.workspace.workspace_id)
    }
}

impl Report for WorkspaceList {
    /// One line per workspace.
    fn human(&self, h: &mut Human) {
        if self.workspaces.is_empty() {
            h.out("No workspaces.\n");
        }
        for entry in &self.workspaces {
            let w = match entry {
                ListEntry::Damaged(d) => {
                    h.out(format!(
                        "[workspace] workspace_id={} state={} damage={:?}\n",
                        d.workspace_id, d.state, d.damage
                    ));
                    continue;
                }
                ListEntry::Workspace(w) => w,
            };
            let name = w
                .name
                .as_ref()
                .map(|n| format!(" name={n:?}"))
                .unwrap_or_default();
            let labels = if w.labels.is_empty() {
                String::new()
            } else {
                format!(" labels={}", pairs(&w.labels, ","))
            };
            let when = if w.state == WorkspaceState::Expired {
                format!("delete_after={}", show(&w.expiry.delete_after))
            } else {
                format!("expires_at={}", show(&w.expiry.expires_at))
            };
            h.out(format!(
                "[workspace] workspace_id={}{name} state={} environment={}{labels} commands={} {when}\n",
                w.workspace_id, w.state, w.environment, w.command_count,
            ));
        }
    }
}

impl Report for Deleted {
    fn human(&self, h: &mut Human) {
        h.out(format!("Deleted workspace: {}\n", self.workspace_id));
    }

    fn workspace_id(&self) -> Option<&str> {
        Some(&self.workspace_id)
    }
}

impl Report for Logs {
    /// Each command: its outcome, the command line, its output.
    fn human(&self, h: &mut Human) {
        if self.entries.is_empty() {
            h.out("No commands since the last reset.\n");
        }
        for e in &self.entries {
            h.out(format!(
                "#{} exit_code={} duration_ms={}\n$ {}\n",
                e.info.sequence, e.info.exit_code, e.info.duration_ms, e.info.command
            ));
            for body in [&e.stdout, &e.stderr] {
                if !body.is_empty() {
                    h.out(body.as_str());
                    if !body.ends_with('\n') {
                        h.out("\n");
                    }
                }
            }
        }
    }

    fn workspace_id(&self) -> Option<&str> {
        Some(&self.workspace_id)
    }
}

impl Report for SyncPush {
    fn human(&self, h: &mut Human) {
        let w = &self.workspace_sync;
        let source = match &w.source {
            SourceKey::Seed(s) | SourceKey::Sync(s) => s,
        };
        h.out(format!(
            "[workspace-sync] workspace_id={} mode={} source={} destination={} entry_count={} bytes_written={}\n",
            self.workspace_id,
            w.mode,
            show(source),
            w.destination,
            w.entry_count,
            w.bytes_written
        ));
    }

    fn restarted_vm(&self) -> Option<&str> {
        self.restarted_vm.as_deref()
    }

    fn workspace_id(&self) -> Option<&str> {
        Some(&self.workspace_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::workspace::seed::{SeedInfo, SourceKey};

    /// The CLI reads back what creation records: a renamed field of
    /// `SeedInfo` would show as `-` and fail here.
    #[test]
    fn the_seed_line_reads_what_creation_records() {
        let info = SeedInfo {
            mode: "directory",
            source: SourceKey::Seed(Some("/src/p".into())),
            destination: "/workspace".into(),
            entry_count: 3,
            bytes_written: 15,
            repo: None,
        };
        let stored = serde_json::to_value(&info).unwrap();
        assert_eq!(
            SeedShown::of(&stored).line(),
            "Seed: directory from /src/p (3 entries, 15 bytes)"
        );
        let empty = SeedInfo {
            mode: "empty",
            source: SourceKey::Seed(None),
            ..info
        };
        assert_eq!(
            SeedShown::of(&serde_json::to_value(&empty).unwrap()).line(),
            "Seed: empty"
        );
        // A record without any (default) or rebuilt after damage.
        assert_eq!(SeedShown::of(&Value::Null).line(), "Seed: -");
        let rebuilt =
            serde_json::json!({"mode": "unknown (metadata rebuilt)", "destination": "/workspace"});
        assert_eq!(
            SeedShown::of(&rebuilt).line(),
            "Seed: unknown (metadata rebuilt)"
        );
    }
}
