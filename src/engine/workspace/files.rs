//! Operations on a live workspace's files and commands: exec, file list,
//! read and write, patch apply, sync push, diff and summary. Each takes the
//! workspace lock for its whole duration, so operations on one workspace
//! never interleave.

use super::guest;
use super::live::{open_live, Live};
use super::results::{
    Diff, Encoding, FileEntryView, FileList, FileRead, FileWritten, Logs, PatchApplied, PatchEntry,
    PatchSummary, Summary, SyncPush, WorkspaceExec,
};
use super::review::{self, Event};
use super::seed;
use super::view;
use super::{guest_path, normalize_path, patch, EngineError, Result};
use super::{FILE_MAX_BYTES, PATCH_MAX_BYTES};
use crate::engine::agent;
use crate::engine::hostpath::ReadPath;
use crate::engine::run::{ExecOutcome, ExecutionMode};
use pyro_proto::{base64_decode, base64_encode, ApplyRequest, ExecRequest, FileWrite};
use pyro_proto::{Request, Response};
use std::time::{Duration, Instant};

pub const DEFAULT_TIMEOUT_SECONDS: u64 = 30;
pub const MAX_TIMEOUT_SECONDS: u64 = 24 * 3600;

/// The deadline of a file operation starting now (see `agent`).
fn file_op_deadline() -> Instant {
    Instant::now() + agent::FILE_OP_DEADLINE
}

fn call(id: &str, req: &Request, deadline: Instant, what: &str) -> Result<Response> {
    match agent::request(&guest::vsock(id), req, deadline) {
        Ok(Response::Error { kind, message }) => Err(guest::agent_error(kind, message)),
        Ok(r) => Ok(r),
        Err(e) => Err(guest::lost_agent(id, what, e)),
    }
}

fn unexpected(what: &str, r: Response) -> EngineError {
    EngineError::Guest(format!("unexpected agent answer to {what}: {r:?}"))
}

/// `workspace_exec`: one shell command in `/workspace`.
pub fn exec(id: &str, command: &str, timeout_seconds: u64) -> Result<WorkspaceExec> {
    if command.trim().is_empty() {
        return Err(EngineError::Invalid("command must not be empty".into()));
    }
    EngineError::check_range("timeout_seconds", timeout_seconds, 1, MAX_TIMEOUT_SECONDS)?;
    let short: String = command.chars().take(60).collect();
    let mut live = open_live(id, &format!("exec `{short}`"))?;
    let req = ExecRequest {
        shell: Some(command.to_string()),
        cwd: Some(super::GUEST_ROOT.into()),
        timeout_ms: Some(timeout_seconds * 1000),
        max_output_bytes: pyro_proto::DEFAULT_MAX_OUTPUT_BYTES,
        sync_after: true,
        ..Default::default()
    };
    let r = match call(
        live.id(),
        &Request::Exec(req),
        Instant::now() + Duration::from_secs(timeout_seconds) + agent::EXEC_DEADLINE_MARGIN,
        "running the command",
    )? {
        Response::Exec(r) => r,
        other => return Err(unexpected("exec", other)),
    };
    let outcome = ExecOutcome::new(r, timeout_seconds);
    let sequence = review::record_command(id, command, &outcome)?;
    review::append(
        id,
        &Event::new("exec")
            .with("sequence", sequence)
            .with("command", command)
            .with("exit_code", outcome.exit_code)
            .with("duration_ms", outcome.duration_ms),
    );
    live.touch()?;
    Ok(WorkspaceExec {
        exec: outcome,
        workspace_id: id.to_string(),
        environment: live.record.environment.clone(),
        environment_version: live.record.environment_version.clone(),
        command: command.to_string(),
        execution_mode: ExecutionMode::GuestVsock,
        sequence,
        cwd: super::GUEST_ROOT.into(),
        restarted_vm: live.restarted.clone(),
    })
}

fn entry_view(e: &pyro_proto::FileEntry) -> FileEntryView {
    FileEntryView {
        path: guest_path(&e.path),
        artifact_type: e.artifact_type,
        size_bytes: e.size_bytes,
        link_target: e.link_target.clone(),
    }
}

/// Most entries a file listing returns (`count` is the full number and
/// `truncated` says when there were more). A guest makes 200,000 files
/// with one shell loop; as JSON values they would cost the host hundreds
/// of MiB, and no client reads that many.
pub const LIST_MAX_ENTRIES: usize = 10_000;

/// `workspace_file_list`.
pub fn list(id: &str, path: &str, recursive: bool) -> Result<FileList> {
    let rel = normalize_path(path)?;
    let live = open_live(id, "file list")?;
    Ok(FileList {
        restarted_vm: live.restarted.clone(),
        ..listing(id, &rel, recursive)?
    })
}

/// The listing of `rel` in a running workspace (see [`LIST_MAX_ENTRIES`]).
pub(super) fn listing(id: &str, rel: &str, recursive: bool) -> Result<FileList> {
    match call(
        id,
        &Request::ListFiles {
            path: rel.to_string(),
            recursive,
        },
        file_op_deadline(),
        "listing files",
    )? {
        Response::Files { entry, entries } => Ok(FileList {
            workspace_id: id.to_string(),
            path: guest_path(rel),
            artifact_type: entry.artifact_type,
            recursive,
            count: entries.len(),
            entries: if entry.artifact_type == pyro_proto::ArtifactType::Directory {
                entries
                    .iter()
                    .take(LIST_MAX_ENTRIES)
                    .map(entry_view)
                    .collect()
            } else {
                vec![entry_view(&entry)]
            },
            truncated: entries.len() > LIST_MAX_ENTRIES,
            execution_mode: ExecutionMode::GuestVsock,
            restarted_vm: None,
        }),
        other => Err(unexpected("a listing", other)),
    }
}

pub(super) fn read_raw(
    id: &str,
    rel: &str,
    max: u64,
    deadline: Instant,
) -> Result<(u64, Vec<u8>, bool)> {
    match call(
        id,
        &Request::ReadFile {
            path: rel.to_string(),
            max_bytes: max,
        },
        deadline,
        "reading a file",
    )? {
        Response::FileData {
            size_bytes,
            data_b64,
            truncated,
        } => {
            let mut data = base64_decode(&data_b64)
                .ok_or_else(|| EngineError::Guest("the agent sent invalid base64".into()))?;
            // The answer was clipped to about `max` bytes' worth of base64
            // (`Response::clip_to`); never pass on more than was asked.
            let truncated = truncated || data.len() as u64 > max;
            data.truncate(usize::try_from(max).unwrap_or(usize::MAX));
            Ok((size_bytes, data, truncated))
        }
        other => Err(unexpected("a read", other)),
    }
}

/// `workspace_file_read`: up to `max_bytes`; text as UTF-8, anything else
/// as base64 (`encoding` says which), never altered.
pub fn read(id: &str, path: &str, max_bytes: u64) -> Result<FileRead> {
    if !(1..=FILE_MAX_BYTES).contains(&max_bytes) {
        return Err(EngineError::Invalid(format!(
            "max_bytes must be between 1 and {FILE_MAX_BYTES}, got {max_bytes}"
        )));
    }
    let rel = normalize_path(path)?;
    let live = open_live(id, "file read")?;
    let (size, data, truncated) = read_raw(live.id(), &rel, max_bytes, file_op_deadline())?;
    // A cut through a multi-byte character is not binary content.
    let (content, encoding, returned) = match std::str::from_utf8(&data) {
        Ok(s) if !s.contains('\0') => (s.to_string(), Encoding::Utf8, data.len()),
        Err(e) if truncated && e.error_len().is_none() && !data[..e.valid_up_to()].contains(&0) => {
            let ok = e.valid_up_to();
            (
                String::from_utf8_lossy(&data[..ok]).into_owned(),
                Encoding::Utf8,
                ok,
            )
        }
        _ => (base64_encode(&data), Encoding::Base64, data.len()),
    };
    Ok(FileRead {
        workspace_id: id.to_string(),
        path: guest_path(&rel),
        size_bytes: size,
        max_bytes,
        content,
        encoding,
        binary: encoding == Encoding::Base64,
        returned_bytes: returned,
        truncated: truncated || (returned as u64) < size,
        execution_mode: ExecutionMode::GuestVsock,
        restarted_vm: live.restarted.clone(),
    })
}

fn apply(
    live: &Live,
    writes: Vec<(String, Vec<u8>)>,
    deletes: Vec<String>,
    deadline: Instant,
) -> Result<u64> {
    let req = ApplyRequest {
        writes: writes
            .iter()
            .map(|(p, d)| FileWrite {
                path: p.clone(),
                data_b64: base64_encode(d),
            })
            .collect(),
        deletes,
    };
    match call(live.id(), &Request::Apply(req), deadline, "writing files")? {
        Response::Applied { bytes_written, .. } => Ok(bytes_written),
        other => Err(unexpected("a write", other)),
    }
}

/// `workspace_file_write`: creates or replaces one text file, creating its
/// parent directories.
pub fn write(id: &str, path: &str, text: &str) -> Result<FileWritten> {
    if text.len() as u64 > FILE_MAX_BYTES {
        return Err(EngineError::Invalid(format!(
            "text is {} bytes; a file write takes at most {FILE_MAX_BYTES} bytes of UTF-8 (use workspace_sync_push for bigger files)",
            text.len()
        )));
    }
    let rel = normalize_path(path)?;
    if rel.is_empty() {
        return Err(EngineError::Invalid(
            "path names /workspace itself; give a file path inside it".into(),
        ));
    }
    let mut live = open_live(id, "file write")?;
    let bytes = apply(
        &live,
        vec![(rel.clone(), text.as_bytes().to_vec())],
        Vec::new(),
        file_op_deadline(),
    )?;
    review::append(
        id,
        &Event::new("file_write")
            .with("path", guest_path(&rel))
            .with("bytes", bytes),
    );
    live.touch()?;
    Ok(FileWritten {
        workspace_id: id.to_string(),
        path: guest_path(&rel),
        size_bytes: bytes,
        bytes_written: bytes,
        execution_mode: ExecutionMode::GuestVsock,
        restarted_vm: live.restarted.clone(),
    })
}

/// `workspace_patch_apply`: every file is read, every hunk applied in
/// memory, and only then is anything written, in one all-or-nothing agent
/// request.
pub fn patch_apply(id: &str, patch_text: &str) -> Result<PatchApplied> {
    if patch_text.len() > PATCH_MAX_BYTES {
        return Err(EngineError::Invalid(format!(
            "patch is {} bytes; at most {PATCH_MAX_BYTES} bytes are accepted",
            patch_text.len()
        )));
    }
    let files = patch::parse(patch_text)?;
    let mut live = open_live(id, "patch apply")?;
    // One deadline for every read and the final write.
    let deadline = file_op_deadline();
    let mut writes = Vec::new();
    let mut deletes = Vec::new();
    let mut entries = Vec::new();
    let mut summary = PatchSummary::default();
    for fp in &files {
        let source = &fp.old_path;
        let current = match read_raw(live.id(), source, FILE_MAX_BYTES, deadline) {
            Ok((_, data, false)) => Some(String::from_utf8(data).map_err(|_| {
                EngineError::Invalid(format!(
                    "{} is not UTF-8 text; patches only change text files (nothing was changed)",
                    guest_path(source)
                ))
            })?),
            Ok((size, _, true)) => {
                return Err(EngineError::Invalid(format!(
                    "{} is {size} bytes, over the {FILE_MAX_BYTES}-byte patch limit (nothing was changed)",
                    guest_path(source)
                )))
            }
            Err(EngineError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        match (fp.status, &current) {
            (patch::Status::Added, Some(_)) => {
                return Err(EngineError::Invalid(format!(
                    "patch adds {} but it already exists (nothing was changed)",
                    guest_path(&fp.new_path)
                )))
            }
            (patch::Status::Modified | patch::Status::Deleted | patch::Status::Renamed, None) => {
                return Err(EngineError::Invalid(format!(
                    "patch changes {} but it does not exist (nothing was changed)",
                    guest_path(source)
                )))
            }
            _ => {}
        }
        if fp.status == patch::Status::Renamed {
            match read_raw(live.id(), &fp.new_path, 1, deadline) {
                Err(EngineError::NotFound(_)) => {}
                Ok(_) => {
                    return Err(EngineError::Invalid(format!(
                        "patch renames {} to {}, which already exists (nothing was changed)",
                        guest_path(source),
                        guest_path(&fp.new_path)
                    )))
                }
                Err(e) => return Err(e),
            }
        }
        let after = patch::apply(fp, current.as_deref())?;
        if let Some(text) = &after {
            if text.len() as u64 > FILE_MAX_BYTES {
                return Err(EngineError::Invalid(format!(
                    "patched {} would be {} bytes, over the {FILE_MAX_BYTES}-byte limit (nothing was changed)",
                    guest_path(&fp.new_path),
                    text.len()
                )));
            }
        }
        match after {
            Some(text) => writes.push((fp.new_path.clone(), text.into_bytes())),
            None => deletes.push(fp.new_path.clone()),
        }
        if fp.status == patch::Status::Renamed {
            deletes.push(fp.old_path.clone());
        }
        summary.total += 1;
        *match fp.status {
            patch::Status::Added => &mut summary.added,
            patch::Status::Modified => &mut summary.modified,
            patch::Status::Deleted => &mut summary.deleted,
            patch::Status::Renamed => &mut summary.renamed,
        } += 1;
        entries.push(PatchEntry {
            path: guest_path(&fp.new_path),
            status: fp.status.as_str(),
            hunks: fp.hunks.len(),
            from: (fp.status == patch::Status::Renamed).then(|| guest_path(&fp.old_path)),
        });
    }
    apply(&live, writes, deletes, deadline)?;
    review::append(
        id,
        &Event::new("patch_apply")
            .with(
                "files",
                serde_json::to_value(&entries).expect("entries serialize"),
            )
            .with(
                "summary",
                serde_json::to_value(&summary).expect("summaries serialize"),
            ),
    );
    live.touch()?;
    Ok(PatchApplied {
        workspace_id: id.to_string(),
        changed: !entries.is_empty(),
        summary,
        entries,
        patch: patch_text.to_string(),
        execution_mode: ExecutionMode::GuestVsock,
        restarted_vm: live.restarted.clone(),
    })
}

/// `workspace_sync_push`: a host directory or archive into `/workspace`
/// (or a directory inside it). Checked whole before anything is sent;
/// files land through temporary names, but a sync that fails partway can
/// leave earlier files in place (reset restores the baseline).
///
/// The workspace is looked up before the source is read: for an unknown id
/// no host tree is walked.
pub fn sync_push(id: &str, source: &ReadPath, dest: &str) -> Result<SyncPush> {
    let rel = normalize_path(dest)?;
    super::store::load(id)?;
    let plan = seed::plan_read(source)?;
    let start = Instant::now();
    let mut live = open_live(id, "sync push")?;
    let mut stats = seed::Written::default();
    let (entry_count, bytes) = guest::push_archive(id, &rel, &mut |w| {
        stats = plan.write_tar(w, false)?;
        Ok(())
    })?;
    let ms = start.elapsed().as_millis() as u64;
    let sync = plan.describe(
        seed::Purpose::Sync,
        &guest_path(&rel),
        &seed::Written {
            entry_count,
            bytes,
            manifest: Vec::new(),
        },
    );
    review::append(
        id,
        &Event::new("sync_push")
            .with("source_path", plan.source.clone())
            .with("destination", guest_path(&rel))
            .with("entry_count", entry_count)
            .with("bytes_written", bytes)
            .with("duration_ms", ms),
    );
    live.touch()?;
    Ok(SyncPush {
        workspace_id: id.to_string(),
        execution_mode: ExecutionMode::GuestVsock,
        workspace_sync: sync,
        duration_ms: ms,
        restarted_vm: live.restarted.clone(),
    })
}

/// `workspace_diff`.
pub fn diff(id: &str) -> Result<Diff> {
    let live = open_live(id, "diff")?;
    Ok(Diff {
        restarted_vm: live.restarted.clone(),
        ..super::diff::diff(live.id(), true)?
    })
}

/// `workspace_logs`: command history since the last reset.
pub fn logs(id: &str) -> Result<Logs> {
    super::store::load(id)?;
    view::status(id)?;
    Ok(review::logs(id))
}

/// `workspace_summary`: the session since the last reset.
pub fn summary(id: &str) -> Result<Summary> {
    let live = open_live(id, "summary")?;
    let d = super::diff::diff(live.id(), false)?;
    let ws = view::describe(&live.record);
    Ok(Summary {
        restarted_vm: live.restarted.clone(),
        ..review::summary(&ws, &d)
    })
}
