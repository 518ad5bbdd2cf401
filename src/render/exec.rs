//! Command results: a one-shot run (`vm_run`, `pyro run`) and a command in
//! a workspace (`workspace_exec`, `pyro workspace exec`). Both share the
//! outcome fields ([`ExecOutcome`]) and so the way the streams are shown.

use super::{show, Human, Report};
use crate::engine::run::{ExecOutcome, RunResult};
use crate::engine::workspace::results::WorkspaceExec;

/// The MCP text after the outcome line: whether it timed out, then each
/// stream (a note when it was cut, its content under a header).
fn streams_text(e: &ExecOutcome, s: &mut String) {
    if e.timed_out {
        s.push_str("; timed out");
    }
    for (name, body, truncated, bytes) in e.streams() {
        if truncated {
            s.push_str(&format!("\n[{name} truncated: {bytes} bytes produced]"));
        }
        if !body.is_empty() {
            s.push_str(&format!("\n--- {name} ---\n{body}"));
            if !body.ends_with('\n') {
                s.push('\n');
            }
        }
    }
}

/// What the CLI prints of a command: its streams where they belong, then
/// notes about cut streams on stderr, tagged `[tag]`.
fn streams_human(e: &ExecOutcome, tag: &str, h: &mut Human) {
    h.out(e.stdout.as_str());
    h.err(e.stderr.as_str());
    for (name, _, truncated, bytes) in e.streams() {
        if truncated {
            h.errln(format!(
                "[{tag}] note: {name} was truncated ({bytes} bytes produced)"
            ));
        }
    }
}

impl Report for RunResult {
    /// The outcome on one line, then the output streams.
    fn text(&self) -> String {
        let mut s = format!(
            "exit_code {} from `{}` in {} ({}, {} ms)",
            self.exec.exit_code,
            self.command,
            self.environment,
            self.execution_mode.as_str(),
            self.exec.duration_ms
        );
        streams_text(&self.exec, &mut s);
        s
    }

    fn human(&self, h: &mut Human) {
        streams_human(&self.exec, "run", h);
        h.errln(format!(
            "[run] environment={} execution_mode={} exit_code={} duration_ms={} boot_ms={}",
            self.environment,
            self.execution_mode.as_str(),
            self.exec.exit_code,
            self.exec.duration_ms,
            super::json_text(&self.timings.boot_ms)
        ));
    }
}

impl Report for WorkspaceExec {
    /// The outcome on one line, then the output streams.
    fn text(&self) -> String {
        let mut s = format!(
            "exit_code {} from `{}` in workspace {} ({} ms, sequence {})",
            self.exec.exit_code,
            self.command,
            self.workspace_id,
            self.exec.duration_ms,
            self.sequence
        );
        streams_text(&self.exec, &mut s);
        s
    }

    fn human(&self, h: &mut Human) {
        streams_human(&self.exec, "workspace-exec", h);
        h.errln(format!(
            "[workspace-exec] workspace_id={} sequence={} cwd={} exit_code={} duration_ms={}",
            self.workspace_id,
            self.sequence,
            self.cwd,
            self.exec.exit_code,
            show(&self.exec.duration_ms)
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
    use crate::engine::run::{ExecutionMode, RunCleanup, RunTimings};
    use crate::render::{Rendered, Stream};

    fn outcome() -> ExecOutcome {
        ExecOutcome {
            stdout: "built\n".into(),
            stderr: String::new(),
            exit_code: 3,
            signal: None,
            timed_out: false,
            stdout_truncated: false,
            stderr_truncated: true,
            stdout_bytes: 6,
            stderr_bytes: 99,
            duration_ms: 40,
        }
    }

    fn run() -> RunResult {
        RunResult {
            exec: outcome(),
            vm_id: "ab12".into(),
            environment: "debian:12".into(),
            environment_version: "1.0.0".into(),
            command: "make".into(),
            execution_mode: ExecutionMode::GuestVsock,
            vcpu_count: 1,
            mem_mib: 1024,
            timings: RunTimings {
                create_ms: Some(1),
                boot_ms: Some(300),
                guest_uptime_at_ready_ms: Some(250),
                exec_ms: 40,
                teardown_ms: Some(2),
                total_ms: 343,
            },
            cleanup: RunCleanup {
                vm_stopped: Some(true),
                state_removed: true,
                scratch_disk_allocated_bytes: Some(4096),
            },
        }
    }

    #[test]
    fn summary_shows_outcome_and_streams() {
        let s = run().to_text();
        assert!(s.starts_with("exit_code 3 from `make` in debian:12"), "{s}");
        assert!(s.contains("--- stdout ---\nbuilt\n"), "{s}");
        assert!(s.contains("[stderr truncated: 99 bytes produced]"), "{s}");
        assert!(!s.contains("--- stderr ---"), "{s}");
    }

    #[test]
    fn a_run_shows_its_streams_where_they_belong_and_its_outcome_on_stderr() {
        let h = run().to_human();
        assert_eq!(h.on(Stream::Stdout), "built\n");
        assert_eq!(
            h.on(Stream::Stderr),
            "[run] note: stderr was truncated (99 bytes produced)\n\
             [run] environment=debian:12 execution_mode=guest_vsock exit_code=3 duration_ms=40 boot_ms=300\n"
        );
    }

    #[test]
    fn a_workspace_command_names_its_sequence_and_a_restart() {
        let r = WorkspaceExec {
            exec: ExecOutcome {
                timed_out: true,
                exit_code: 124,
                ..outcome()
            },
            workspace_id: "0123456789ab".into(),
            environment: "debian:12".into(),
            environment_version: "1.0.0".into(),
            command: "make".into(),
            execution_mode: ExecutionMode::GuestVsock,
            sequence: 7,
            cwd: "/workspace".into(),
            restarted_vm: Some("booted again".into()),
        };
        let t = r.to_text();
        assert!(
            t.starts_with(
                "note: booted again\nexit_code 124 from `make` in workspace 0123456789ab (40 ms, sequence 7); timed out"
            ),
            "{t}"
        );
        let h = r.to_human();
        assert!(h
            .on(Stream::Stderr)
            .starts_with("[workspace] note: booted again\n"));
        assert!(h.on(Stream::Stderr).ends_with(
            "[workspace-exec] workspace_id=0123456789ab sequence=7 cwd=/workspace exit_code=124 duration_ms=40\n"
        ));
        assert_eq!(r.to_json()["restarted_vm"], "booted again");
    }
}
