//! What happened in a workspace: the command history (`workspace_logs`)
//! and review events (`events.jsonl`), from which `workspace_summary`
//! builds one concise view of the session since the last reset.
//!
//! Per-command records (`paths::write_atomic_unflushed`, 0600) and review
//! events (one `O_APPEND` line) are atomic against a crashing process but
//! not flushed: they sit on the hot path of every exec, and a power loss
//! costs at most the latest lines of history, never a file of the
//! workspace.

use super::results::{
    ChangeBrief, ChangesSummary, CommandBrief, CommandInfo, CommandRecord, CommandsSummary, Diff,
    Logs, SessionInfo, StoredEvent, Summary, WorkspaceView,
};
use super::store;
use super::{now, Result};
use crate::engine::run::{ExecOutcome, ExecutionMode};
use serde_json::{json, Map, Value};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

/// Output kept per stream in the history: the start and the end of it.
pub const LOG_HEAD_BYTES: usize = 8 * 1024;
pub const LOG_TAIL_BYTES: usize = 8 * 1024;

pub struct Event(Map<String, Value>);

impl Event {
    pub fn new(kind: &str) -> Event {
        let mut m = Map::new();
        m.insert("kind".into(), json!(kind));
        m.insert("at".into(), json!(now()));
        Event(m)
    }

    pub fn with(mut self, key: &str, v: impl Into<Value>) -> Event {
        self.0.insert(key.into(), v.into());
        self
    }
}

fn events_path(id: &str) -> PathBuf {
    store::dir(id).join("events.jsonl")
}

fn commands_dir(id: &str) -> PathBuf {
    store::dir(id).join("commands")
}

/// Appends one review event (best effort: a review log must never fail
/// the operation it describes).
pub fn append(id: &str, e: &Event) {
    let mut line = serde_json::to_vec(&e.0).expect("events serialize");
    line.push(b'\n');
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(events_path(id))
    {
        let _ = f.write_all(&line);
    }
}

pub fn events(id: &str) -> Vec<StoredEvent> {
    std::fs::read_to_string(events_path(id))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Keeps the start and end of a long output, marking the cut.
pub fn clip(s: &str) -> (String, bool) {
    if s.len() <= LOG_HEAD_BYTES + LOG_TAIL_BYTES {
        return (s.to_string(), false);
    }
    let mut head = LOG_HEAD_BYTES;
    while !s.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = s.len() - LOG_TAIL_BYTES;
    while !s.is_char_boundary(tail) {
        tail += 1;
    }
    (
        format!(
            "{}\n[... {} bytes omitted ...]\n{}",
            &s[..head],
            tail - head,
            &s[tail..]
        ),
        true,
    )
}

fn sequences(id: &str) -> Vec<u64> {
    let mut seqs: Vec<u64> = std::fs::read_dir(commands_dir(id))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    seqs.sort();
    seqs
}

fn read_command(id: &str, seq: u64) -> Option<CommandRecord> {
    let p = commands_dir(id).join(format!("{seq:06}.json"));
    serde_json::from_slice(&std::fs::read(p).ok()?).ok()
}

/// Records one executed command; returns its sequence number.
pub fn record_command(id: &str, command: &str, outcome: &ExecOutcome) -> Result<u64> {
    let dir = commands_dir(id);
    store::make_private_dir(&dir)?;
    let seq = sequences(id).last().copied().unwrap_or(0) + 1;
    let (stdout, stdout_clipped_in_log) = clip(&outcome.stdout);
    let (stderr, stderr_clipped_in_log) = clip(&outcome.stderr);
    let entry = CommandRecord {
        info: CommandInfo {
            sequence: seq,
            command: command.to_string(),
            cwd: super::GUEST_ROOT.into(),
            exit_code: outcome.exit_code,
            duration_ms: outcome.duration_ms,
            timed_out: outcome.timed_out,
            execution_mode: ExecutionMode::GuestVsock,
            stdout_truncated: outcome.stdout_truncated,
            stderr_truncated: outcome.stderr_truncated,
            recorded_at: now(),
        },
        stdout,
        stderr,
        stdout_clipped_in_log,
        stderr_clipped_in_log,
    };
    let p = dir.join(format!("{seq:06}.json"));
    let body = serde_json::to_vec(&entry).expect("entries serialize");
    crate::engine::paths::write_atomic_unflushed(&p, &body)
        .map_err(|e| super::EngineError::io("recording the command", e))?;
    Ok(seq)
}

/// (number of commands since the last reset, the last one without output)
pub fn command_stats(id: &str) -> (u64, Option<CommandInfo>) {
    let seqs = sequences(id);
    let last = seqs
        .last()
        .and_then(|s| read_command(id, *s))
        .map(|c| c.info);
    (seqs.len() as u64, last)
}

/// Forgets the command history (a reset starts a new session).
pub fn clear_commands(id: &str) {
    let _ = std::fs::remove_dir_all(commands_dir(id));
}

/// `workspace_logs`: every command since the last reset, oldest first.
pub fn logs(id: &str) -> Logs {
    let entries: Vec<CommandRecord> = sequences(id)
        .into_iter()
        .filter_map(|s| read_command(id, s))
        .collect();
    Logs {
        workspace_id: id.to_string(),
        count: entries.len(),
        entries,
    }
}

/// Events of the current session: after the last create or reset.
pub fn session_events(id: &str) -> Vec<StoredEvent> {
    let mut all = events(id);
    let start = all
        .iter()
        .rposition(|e| e.kind == "create" || e.kind == "reset")
        .unwrap_or(0);
    all.split_off(start)
}

/// Builds the summary from the session's events, the command history and
/// the current diff.
pub fn summary(workspace: &WorkspaceView, diff: &Diff) -> Summary {
    let id = workspace.workspace_id.as_str();
    let events = session_events(id);
    let pick = |kind: &str| -> Vec<StoredEvent> {
        events.iter().filter(|e| e.kind == kind).cloned().collect()
    };
    let commands: Vec<CommandBrief> = sequences(id)
        .into_iter()
        .filter_map(|s| read_command(id, s))
        .map(|c| CommandBrief {
            sequence: c.info.sequence,
            command: c.info.command,
            exit_code: c.info.exit_code,
            duration_ms: c.info.duration_ms,
            timed_out: c.info.timed_out,
        })
        .collect();
    let failed = commands.iter().filter(|c| c.exit_code != 0).count();
    let changed: Vec<ChangeBrief> = diff
        .entries
        .iter()
        .map(|e| ChangeBrief {
            path: e.path.clone(),
            status: e.status,
            artifact_type: e.artifact_type,
            binary: e.binary,
            over_budget: e.over_budget,
        })
        .collect();
    let session_start = events.first().map(|e| e.at);
    let edits = pick("file_write");
    let patches = pick("patch_apply");
    let syncs = pick("sync_push");
    let exports = pick("export");
    let restarts = pick("restart");
    let mut headline = format!(
        "{} command(s) run ({} failed), {} file(s) changed since {}",
        commands.len(),
        failed,
        changed.len(),
        if workspace.reset_count > 0 {
            "the last reset"
        } else {
            "creation"
        }
    );
    for (n, what) in [
        (edits.len(), "file write(s)"),
        (patches.len(), "patch apply(s)"),
        (syncs.len(), "sync push(es)"),
        (exports.len(), "export(s)"),
    ] {
        if n > 0 {
            headline.push_str(&format!(", {n} {what}"));
        }
    }
    Summary {
        workspace_id: id.to_string(),
        name: workspace.name.clone(),
        labels: workspace.labels.clone(),
        environment: workspace.environment.clone(),
        state: workspace.state,
        headline,
        session: SessionInfo {
            started_at: session_start,
            since: if workspace.reset_count > 0 {
                "reset"
            } else {
                "create"
            },
            reset_count: workspace.reset_count,
            last_reset_at: workspace.last_reset_at,
            seed: workspace.workspace_seed.clone(),
        },
        commands: CommandsSummary {
            count: commands.len(),
            failed,
            entries: commands,
        },
        changes: ChangesSummary {
            changed: diff.changed,
            summary: diff.summary.clone(),
            entries: changed,
            truncated: diff.truncated,
        },
        syncs,
        file_edits: edits,
        patch_applies: patches,
        exports,
        vm_restarts: restarts,
        services: Vec::new(),
        snapshots: Vec::new(),
        restarted_vm: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_output_keeps_head_and_tail() {
        let s = format!("{}{}", "a".repeat(20_000), "END");
        let (c, cut) = clip(&s);
        assert!(cut);
        assert!(c.starts_with("aaa") && c.ends_with("END"));
        assert!(c.contains("bytes omitted"));
        assert!(c.len() < 17_000);
        let (c, cut) = clip("short");
        assert_eq!((c.as_str(), cut), ("short", false));
        // Never splits a UTF-8 character.
        let s = "é".repeat(20_000);
        let (c, _) = clip(&s);
        assert!(c.contains("omitted"));
    }
}
