//! File results: list, read, write, patch apply and export.

use super::{Human, Report};
use crate::engine::workspace::results::{Exported, FileList, FileRead, FileWritten, PatchApplied};

impl Report for FileList {
    fn human(&self, h: &mut Human) {
        h.out(format!(
            "Workspace path: {} (recursive={})\n",
            self.path, self.recursive
        ));
        if self.entries.is_empty() {
            h.out("No entries.\n");
        }
        for e in &self.entries {
            let link = e
                .link_target
                .as_ref()
                .map(|t| format!(" -> {t}"))
                .unwrap_or_default();
            h.out(format!(
                "{} [{}] size={}{link}\n",
                e.path,
                e.artifact_type.as_str(),
                e.size_bytes
            ));
        }
    }

    fn restarted_vm(&self) -> Option<&str> {
        self.restarted_vm.as_deref()
    }

    fn workspace_id(&self) -> Option<&str> {
        Some(&self.workspace_id)
    }
}

impl Report for FileRead {
    /// What was read, then the content.
    fn text(&self) -> String {
        format!(
            "{} ({} bytes, encoding {}{})\n{}",
            self.path,
            self.size_bytes,
            self.encoding.as_str(),
            if self.truncated {
                format!(", truncated to {} bytes", self.returned_bytes)
            } else {
                String::new()
            },
            self.content
        )
    }

    /// The content on stdout, what it is on stderr.
    fn human(&self, h: &mut Human) {
        h.out(self.content.as_str());
        if !self.content.is_empty() && !self.content.ends_with('\n') {
            h.out("\n");
        }
        h.errln(format!(
            "[workspace-file-read] workspace_id={} path={} size_bytes={} encoding={} truncated={}",
            self.workspace_id,
            self.path,
            self.size_bytes,
            self.encoding.as_str(),
            self.truncated
        ));
    }

    fn restarted_vm(&self) -> Option<&str> {
        self.restarted_vm.as_deref()
    }

    fn workspace_id(&self) -> Option<&str> {
        Some(&self.workspace_id)
    }
}

impl Report for FileWritten {
    fn human(&self, h: &mut Human) {
        h.out(format!(
            "[workspace-file-write] workspace_id={} path={} bytes_written={}\n",
            self.workspace_id, self.path, self.bytes_written
        ));
    }

    fn restarted_vm(&self) -> Option<&str> {
        self.restarted_vm.as_deref()
    }

    fn workspace_id(&self) -> Option<&str> {
        Some(&self.workspace_id)
    }
}

impl Report for PatchApplied {
    fn human(&self, h: &mut Human) {
        let m = &self.summary;
        h.out(format!(
            "[workspace-patch] workspace_id={} total={} added={} modified={} deleted={} renamed={}\n",
            self.workspace_id, m.total, m.added, m.modified, m.deleted, m.renamed
        ));
    }

    fn restarted_vm(&self) -> Option<&str> {
        self.restarted_vm.as_deref()
    }

    fn workspace_id(&self) -> Option<&str> {
        Some(&self.workspace_id)
    }
}

impl Report for Exported {
    fn human(&self, h: &mut Human) {
        h.out(format!(
            "[workspace-export] workspace_id={} workspace_path={} output_path={} artifact_type={} entry_count={} bytes_written={}\n",
            self.workspace_id,
            self.workspace_path,
            super::show(&self.output_path),
            self.artifact_type.as_str(),
            self.entry_count,
            self.bytes_written
        ));
    }

    fn restarted_vm(&self) -> Option<&str> {
        self.restarted_vm.as_deref()
    }

    fn workspace_id(&self) -> Option<&str> {
        Some(&self.workspace_id)
    }
}
