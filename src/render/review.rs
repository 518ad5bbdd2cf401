//! Reviewing a workspace: the diff against the baseline and the session
//! summary.

use super::{json_text, Human, Report};
use crate::engine::workspace::results::{Diff, Summary};

impl Report for Diff {
    /// The summary, the files without a text patch, then the patch.
    fn text(&self) -> String {
        if !self.changed {
            return "no changes against the baseline".to_string();
        }
        let mut s = format!("{}\n", json_text(&self.summary));
        for e in self.entries.iter().filter(|e| e.text_patch.is_none()) {
            s.push_str(&format!(
                "{} {} ({}{})\n",
                e.status.as_str(),
                e.path,
                e.artifact_type.as_str(),
                if e.binary {
                    ", binary"
                } else if e.over_budget {
                    ", not diffed: over the diff budget"
                } else {
                    ""
                }
            ));
        }
        s.push_str(&self.patch);
        if self.truncated {
            s.push_str(&format!(
                "[truncated: the diff budget ({} bytes of content, {} files) was spent; the files marked above are listed with sha256 and size only: read them with workspace_file_read]\n",
                self.budget.max_bytes, self.budget.max_files
            ));
        }
        s
    }

    /// The counts on one line, then the patch.
    fn human(&self, h: &mut Human) {
        if !self.changed {
            h.out("No changes against the baseline.\n");
            return;
        }
        let m = &self.summary;
        h.out(format!(
            "[workspace-diff] workspace_id={} total={} added={} modified={} deleted={} type_changed={} text_patched={} non_text={}\n",
            self.workspace_id,
            m.total,
            m.added,
            m.modified,
            m.deleted,
            m.type_changed,
            m.text_patched,
            m.non_text
        ));
        h.out(self.patch.as_str());
        if self.truncated {
            let b = &self.budget;
            h.out(format!(
                "[workspace-diff] truncated: {} file(s) over the diff budget ({} bytes, {} files) are listed with hashes only; see --json\n",
                b.files_over_budget, b.max_bytes, b.max_files
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

impl Report for Summary {
    /// The headline, then a line per command, changed path and kind of
    /// event.
    fn human(&self, h: &mut Human) {
        h.out(format!(
            "{}\nWorkspace: {} state={}\n",
            self.headline, self.workspace_id, self.state
        ));
        for c in &self.commands.entries {
            h.out(format!(
                "  #{} exit_code={} {}ms  $ {}\n",
                c.sequence, c.exit_code, c.duration_ms, c.command
            ));
        }
        for c in &self.changes.entries {
            h.out(format!(
                "  {} {}{}\n",
                c.status.as_str(),
                c.path,
                if c.binary { " (binary)" } else { "" }
            ));
        }
        for (events, label) in [
            (&self.syncs, "sync push"),
            (&self.file_edits, "file write"),
            (&self.patch_applies, "patch apply"),
            (&self.exports, "export"),
        ] {
            if !events.is_empty() {
                h.out(format!("  {label}: {}\n", events.len()));
            }
        }
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
    use crate::engine::workspace::results::{ChangeStatus, DiffBudget, DiffEntry, DiffSummary};
    use crate::render::{Rendered, Stream};
    use pyro_proto::ArtifactType;

    fn over_budget_diff() -> Diff {
        let mut summary = DiffSummary::default();
        summary.count(ChangeStatus::Added);
        summary.count(ChangeStatus::Modified);
        summary.text_patched = 1;
        summary.non_text = 1;
        Diff {
            workspace_id: "0123456789ab".into(),
            changed: true,
            summary,
            truncated: true,
            budget: DiffBudget {
                max_bytes: 4 << 20,
                max_files: 1000,
                bytes_read: 10,
                files_read: 1,
                files_over_budget: 1,
                max_entries: 5000,
                entries_omitted: 0,
            },
            entries: vec![
                DiffEntry {
                    path: "big.txt".into(),
                    status: ChangeStatus::Added,
                    artifact_type: ArtifactType::File,
                    binary: false,
                    size_bytes: Some(9 << 20),
                    sha256: Some("ab".repeat(32)),
                    text_patch: None,
                    over_budget: true,
                },
                DiffEntry {
                    path: "a.txt".into(),
                    status: ChangeStatus::Modified,
                    artifact_type: ArtifactType::File,
                    binary: false,
                    size_bytes: Some(2),
                    sha256: None,
                    text_patch: Some("--- a/a.txt\n".into()),
                    over_budget: false,
                },
            ],
            patch: "--- a/a.txt\n".into(),
            restarted_vm: None,
        }
    }

    #[test]
    fn a_truncated_diff_says_which_files_it_left_out_and_how_to_read_them() {
        let d = over_budget_diff();
        assert_eq!(
            d.to_text(),
            "{\"added\":1,\"deleted\":0,\"modified\":1,\"non_text\":1,\"text_patched\":1,\"total\":2,\"type_changed\":0}\n\
             added big.txt (file, not diffed: over the diff budget)\n\
             --- a/a.txt\n\
             [truncated: the diff budget (4194304 bytes of content, 1000 files) was spent; the files marked above are listed with sha256 and size only: read them with workspace_file_read]\n"
        );
        assert_eq!(
            d.to_human().on(Stream::Stdout),
            "[workspace-diff] workspace_id=0123456789ab total=2 added=1 modified=1 deleted=0 type_changed=0 text_patched=1 non_text=1\n\
             --- a/a.txt\n\
             [workspace-diff] truncated: 1 file(s) over the diff budget (4194304 bytes, 1000 files) are listed with hashes only; see --json\n"
        );
        let v = d.to_json();
        assert_eq!(v["entries"][0]["over_budget"], true);
        assert!(v["entries"][1].get("over_budget").is_none());
        assert_eq!(v["entries"][0]["status"], "added");
    }

    #[test]
    fn an_empty_diff_says_so() {
        let d = Diff {
            changed: false,
            entries: Vec::new(),
            patch: String::new(),
            truncated: false,
            summary: DiffSummary::default(),
            ..over_budget_diff()
        };
        assert_eq!(d.to_text(), "no changes against the baseline");
        assert_eq!(
            d.to_human().on(Stream::Stdout),
            "No changes against the baseline.\n"
        );
    }
}
