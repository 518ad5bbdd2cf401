//! `workspace_export`: a file, symlink or directory from `/workspace` to a
//! host path.
//!
//! The guest is not trusted here: its tar stream is extracted on the host
//! under the same rules as a seed (no absolute or `..` members, no hard
//! links or devices, no write through a symlink, and no symlink that could
//! lead out, alone or chained with others: `pyro_proto::path::check_symlink`).
//! Everything is written into a fresh temporary sibling of the destination
//! and renamed onto it only when complete, so a failed export leaves
//! nothing behind, and an existing destination is replaced only with
//! `overwrite` (and then only once the new copy is whole).
//!
//! The destination is a [`WritePath`]: resolved under the caller's policy
//! (confined to the allowed roots for an MCP client) and never followed
//! if it is itself a symlink (it is replaced). Its directory is created
//! only after the workspace was found, and checked again right before the
//! renames.
//!
//! - `extract`: the guest's stream extracted on the host, confined and bounded
//! - `stage`: the stage directory beside the destination, its journal and
//!   the reaper, which make replacing crash-safe

mod extract;
pub mod stage;

use super::guest;
use super::live::open_live;
use super::results::Exported;
use super::review::{self, Event};
use super::{guest_path, normalize_path, EngineError, Result};
use crate::engine::agent;
use crate::engine::hostpath::WritePath;
use crate::engine::run::ExecutionMode;
use extract::extract_confined;
use pyro_proto::bounded_tar::{TarLimits, MAX_TAR_META_BYTES};
use pyro_proto::{ArtifactType, ChunkReader, Request, Response};
use stage::{journal_dir, reap_siblings, reap_stages, Stage};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Most bytes one export may carry from the guest (the tar stream: headers,
/// content and padding). It is the size of a workspace disk (8 GiB,
/// `scripts/build-image.sh`), so no honest export of what a guest stores is
/// refused, while a sparse file (`truncate -s 1T`) or a lying stream is
/// refused from its header instead of filling the host's disk.
pub const EXPORT_MAX_BYTES: u64 = 8 << 30;

/// Most entries one export may hold: the agent's own walk stops at this
/// many, so only a hostile stream (say, millions of empty files to use up
/// the host's inodes) reaches it.
pub const EXPORT_MAX_ENTRIES: u64 = pyro_proto::MAX_LISTING_ENTRIES as u64;

/// The limits of an export stream (see [`pyro_proto::bounded_tar`]).
pub const EXPORT_LIMITS: TarLimits = TarLimits {
    meta_bytes: MAX_TAR_META_BYTES,
    member_bytes: EXPORT_MAX_BYTES,
    total_bytes: EXPORT_MAX_BYTES,
    members: EXPORT_MAX_ENTRIES,
};

/// Receives the export of workspace path `rel` into `stage/tree`: asks
/// the agent for the archive and extracts it under [`EXPORT_LIMITS`].
/// Returns (type, entries, bytes, the path made in `stage`).
pub(super) fn receive(
    id: &str,
    rel: &str,
    stage: &Path,
) -> Result<(ArtifactType, u64, u64, PathBuf)> {
    // One deadline for the whole transfer, not one per read.
    let deadline = Instant::now() + agent::TRANSFER_DEADLINE;
    let mut s = agent::open(&guest::vsock(id), deadline)
        .map_err(|e| guest::lost_agent(id, "connecting to the guest agent", e))?;
    let req = Request::PullArchive {
        path: rel.to_string(),
    };
    pyro_proto::write_frame(&mut s, &req)
        .map_err(|e| guest::lost_agent(id, "asking for the export", e))?;
    let kind = match pyro_proto::read_reply(&mut s, &req) {
        Ok(Some(Response::ArchiveStart { artifact_type })) => artifact_type,
        Ok(Some(Response::Error { kind, message })) => {
            return Err(guest::agent_error(kind, message))
        }
        Ok(other) => {
            return Err(EngineError::Guest(format!(
                "unexpected agent answer to an export: {other:?}"
            )))
        }
        Err(e) => return Err(guest::lost_agent(id, "starting the export", e)),
    };
    let single = kind != ArtifactType::Directory;
    let tree = stage.join("tree");
    std::fs::create_dir(&tree)
        .map_err(|e| EngineError::io(format!("creating {}", tree.display()), e))?;
    // Extraction reads the stream to its end (so the agent's final word
    // can be read) or fails; then the connection is dropped unread: a
    // refused stream (1 TB of a sparse file) is never drained.
    let mut chunks = ChunkReader::new(&mut s);
    let (n, bytes) = extract_confined(&mut chunks, &tree, EXPORT_LIMITS)?;
    if !chunks.is_done() {
        return Err(EngineError::Guest(
            "the export stream from the guest did not end where its archive did".into(),
        ));
    }
    match pyro_proto::read_reply(&mut s, &req) {
        Ok(Some(Response::ArchiveDone { .. })) => {}
        Ok(Some(Response::Error { kind, message })) => {
            return Err(guest::agent_error(kind, message))
        }
        Ok(other) => {
            return Err(EngineError::Guest(format!(
                "unexpected end of an export: {other:?}"
            )))
        }
        Err(e) => return Err(guest::lost_agent(id, "finishing the export", e)),
    }
    let made = if single {
        let name = rel.rsplit('/').next().unwrap_or("");
        tree.join(name)
    } else {
        tree
    };
    if std::fs::symlink_metadata(&made).is_err() {
        return Err(EngineError::Guest(format!(
            "the export of {} arrived empty",
            guest_path(rel)
        )));
    }
    Ok((kind, n, bytes, made))
}

/// Copies workspace `path` to the checked host destination `dest`.
pub fn export(id: &str, path: &str, dest: &WritePath, overwrite: bool) -> Result<Exported> {
    let rel = normalize_path(path)?;
    // The workspace first: for an unknown id nothing on the host is touched.
    super::store::load(id)?;
    reap_stages();
    let out = dest.path();
    let dir = dest.dir();
    // An earlier export killed here may hold the original: put it back
    // before deciding whether the destination exists.
    reap_siblings(&dir);
    let exists = std::fs::symlink_metadata(&out).is_ok();
    if exists && !overwrite {
        return Err(EngineError::Invalid(format!(
            "output_path {} already exists; choose a new path or pass overwrite to replace it",
            out.display()
        )));
    }
    if exists && dest.is_confined() {
        refuse_hidden_inside(&out, dest.given())?;
    }
    let mut live = open_live(id, "export")?;
    dest.create_dirs().map_err(|e| {
        EngineError::Invalid(format!(
            "cannot create the directory of output_path {:?}: {e}",
            dest.given()
        ))
    })?;
    dest.verify()?;
    let stage = Stage::create(&dir, dest.name(), &journal_dir())?;
    let result = receive(id, &rel, &stage.dir).and_then(|(kind, n, bytes, made)| {
        // A symlink made for a confined caller must not open a way out of
        // (or into a hidden part of) the allowed roots.
        let m = std::fs::symlink_metadata(&made)
            .map_err(|e| EngineError::io(format!("reading {}", made.display()), e))?;
        if m.file_type().is_symlink() {
            let target = std::fs::read_link(&made)
                .map_err(|e| EngineError::io(format!("reading {}", made.display()), e))?;
            dest.check_link(&target).map_err(|e| {
                EngineError::Guest(format!("export refused: the exported symlink: {e}"))
            })?;
        }
        Ok((kind, n, bytes, made))
    });
    let outcome = result.and_then(|(kind, n, bytes, made)| {
        dest.verify()?;
        stage.commit(&made, &out, exists)?;
        Ok((kind, n, bytes))
    });
    let finished = stage.finish(&out);
    let (kind, n, bytes) = outcome?;
    finished?;
    review::append(
        id,
        &Event::new("export")
            .with("path", guest_path(&rel))
            .with("output_path", out.to_string_lossy().into_owned())
            .with("artifact_type", kind.as_str())
            .with("bytes_written", bytes),
    );
    live.touch()?;
    Ok(Exported {
        workspace_id: id.to_string(),
        workspace_path: guest_path(&rel),
        output_path: out,
        artifact_type: kind,
        entry_count: n,
        bytes_written: bytes,
        overwrote: exists,
        execution_mode: ExecutionMode::GuestVsock,
        restarted_vm: live.restarted.clone(),
    })
}

/// Entries of an existing destination looked at before a confined export
/// replaces it: enough for any source tree an agent works on, small enough
/// that the check stays well under a second.
pub const MAX_REPLACE_CHECK_ENTRIES: usize = 200_000;

/// A confined caller may not replace a directory holding hidden entries
/// (`.git`, `.env`, ...): replacing it would delete them, which is a write
/// into them. Symlinks are not followed.
fn refuse_hidden_inside(out: &Path, given: &str) -> Result<()> {
    let mut stack = vec![out.to_path_buf()];
    let mut seen = 0usize;
    while let Some(d) = stack.pop() {
        if !std::fs::symlink_metadata(&d).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        let entries = std::fs::read_dir(&d)
            .map_err(|e| EngineError::io(format!("reading {}", d.display()), e))?;
        for e in entries {
            let e = e.map_err(|e| EngineError::io(format!("reading {}", d.display()), e))?;
            seen += 1;
            if seen > MAX_REPLACE_CHECK_ENTRIES {
                return Err(EngineError::Invalid(format!(
                    "output_path {given:?} holds more than {MAX_REPLACE_CHECK_ENTRIES} entries; it is not replaced over MCP, choose a new path"
                )));
            }
            let name = e.file_name();
            if name.as_bytes().first() == Some(&b'.') {
                let p = e.path();
                let shown = p.strip_prefix(out).unwrap_or(&p);
                return Err(EngineError::Invalid(format!(
                    "output_path {given:?} is not replaced: it holds the hidden {} (replacing it would delete it); choose a new path",
                    shown.display()
                )));
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::temp_dir::TempDir;

    pub(super) fn put(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn a_confined_export_does_not_replace_a_tree_with_hidden_entries() {
        let d = TempDir::new("export-hidden");
        put(&d.join("plain/a/b.txt"), "x");
        assert!(refuse_hidden_inside(&d.join("plain"), "plain").is_ok());
        put(&d.join("repo/src/deep/.git/HEAD"), "ref");
        let e = refuse_hidden_inside(&d.join("repo"), "repo")
            .unwrap_err()
            .to_string();
        assert!(e.contains("src/deep/.git"), "{e}");
    }
}
