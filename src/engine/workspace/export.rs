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
//! Crash safety: the stage directory (`.<name>.pyro-export-<id>` beside
//! the destination) is recorded in a journal under `$PYRO_HOME/exports/`
//! before it is made, and flock(2)ed while the export runs. Replacing
//! moves the old destination into the stage, then the new copy onto the
//! destination; a process killed between the two renames leaves the
//! original in the stage. [`reap_stages`] (run by every export and at MCP
//! server start) and the scan of the destination's directory at the next
//! export put it back and remove stages nobody holds.

use super::lifecycle::{self, open_live};
use super::results::Exported;
use super::review::{self, Event};
use super::{guest_path, normalize_path, EngineError, Result};
use crate::engine::agent;
use crate::engine::hostpath::WritePath;
use crate::engine::paths;
use crate::engine::run::ExecutionMode;
use pyro_proto::archive::{link_target, member_path};
use pyro_proto::bounded_tar::{limit_error, BoundedTar, TarLimits, MAX_TAR_META_BYTES};
use pyro_proto::path::check_symlink;
use pyro_proto::{ArtifactType, ChunkReader, Request, Response};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
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

/// Extracts a tar into `root` (a fresh directory), refusing anything that
/// could land outside it or exceeds `limits` (checked from each header,
/// before its content is read), then reads the rest of `input` (still
/// within the limits). Returns (entries, bytes). On an error the rest of
/// the stream is left unread: the caller drops it.
pub fn extract_confined<R: Read>(input: R, root: &Path, limits: TarLimits) -> Result<(u64, u64)> {
    let mut ar = tar::Archive::new(BoundedTar::new(input, limits));
    let (mut n, mut bytes) = (0u64, 0u64);
    // One buffer for every file: content is copied through it.
    let mut buf = vec![0u8; pyro_proto::CHUNK_BYTES];
    for entry in ar.entries().map_err(bad_stream)? {
        let mut entry = entry.map_err(bad_stream)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let rel =
            member_path(&name).map_err(|e| EngineError::Guest(format!("export refused: {e}")))?;
        if rel.is_empty() {
            continue;
        }
        let target = root.join(&rel);
        // No member may pass through a symlink made by an earlier one.
        let mut cur = root.to_path_buf();
        let comps: Vec<&str> = rel.split('/').collect();
        for c in &comps[..comps.len() - 1] {
            cur.push(c);
            match std::fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(EngineError::Guest(format!(
                        "export refused: member {name:?} would be written through the symlink {c:?}"
                    )))
                }
                Ok(m) if !m.is_dir() => {
                    return Err(EngineError::Guest(format!(
                        "export refused: member {name:?} lies under a non-directory"
                    )))
                }
                Ok(_) => {}
                Err(_) => {
                    std::fs::create_dir(&cur)
                        .map_err(|e| EngineError::io(format!("creating {}", cur.display()), e))?;
                }
            }
        }
        if std::fs::symlink_metadata(&target).is_ok_and(|m| !m.is_dir()) {
            return Err(EngineError::Guest(format!(
                "export refused: member {name:?} appears twice"
            )));
        }
        let t = entry.header().entry_type();
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        if t.is_dir() {
            if !target.is_dir() {
                std::fs::create_dir(&target)
                    .map_err(|e| EngineError::io(format!("creating {}", target.display()), e))?;
            }
            let _ =
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode | 0o700));
        } else if t.is_file() || t == tar::EntryType::Continuous {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&target)
                .map_err(|e| EngineError::io(format!("creating {}", target.display()), e))?;
            bytes += write_sparse(&mut entry, &mut f, &mut buf)
                .map_err(|e| EngineError::io(format!("writing {}", target.display()), e))?;
            let _ = std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode));
        } else if t.is_symlink() {
            let link = link_target(&entry);
            // Judged within what is written (a single exported link sits at
            // its top, so it may not climb at all); its parent chain was
            // checked above (no member is written through a symlink), which
            // the rule relies on.
            if let Err(why) = check_symlink(&rel, &link) {
                return Err(EngineError::Guest(format!(
                    "export refused: symlink {name:?} -> {link:?} points outside the exported tree: {why}"
                )));
            }
            std::os::unix::fs::symlink(&link, &target)
                .map_err(|e| EngineError::io(format!("creating {}", target.display()), e))?;
        } else {
            return Err(EngineError::Guest(format!(
                "export refused: member {name:?} is not a file, directory or symlink"
            )));
        }
        n += 1;
    }
    // After the end-of-archive block: padding (bounded like the rest).
    ar.into_inner().drain().map_err(bad_stream)?;
    Ok((n, bytes))
}

fn bad_stream(e: std::io::Error) -> EngineError {
    if let Some(limit) = limit_error(&e) {
        return EngineError::Guest(format!(
            "export refused: {limit}; an export carries at most {EXPORT_MAX_BYTES} bytes and {EXPORT_MAX_ENTRIES} entries, and no sparse file is expanded past that: export a smaller path (nothing was written)"
        ));
    }
    EngineError::Guest(format!(
        "the export stream from the guest is not a valid archive: {e}"
    ))
}

/// Block size below which zeros are written rather than skipped: the
/// usual filesystem block, so a hole is only made where it saves space.
const HOLE_BLOCK: usize = 4096;

/// Copies `data` into the new file `f`, leaving holes where whole blocks
/// of zeros arrive (a sparse file in the guest stays sparse on the host
/// rather than turning into allocated zeros). Returns the bytes copied.
fn write_sparse<R: Read>(
    data: &mut R,
    f: &mut std::fs::File,
    buf: &mut [u8],
) -> std::io::Result<u64> {
    use std::io::{Seek, SeekFrom, Write};
    let mut total = 0u64;
    let mut pending_hole = false;
    loop {
        let n = match data.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        // Runs of data blocks are written, runs of zero blocks skipped.
        let mut at = 0;
        while at < n {
            let zero = |i: usize| buf[i..(i + HOLE_BLOCK).min(n)].iter().all(|b| *b == 0);
            let hole = zero(at);
            let mut end = at;
            while end < n && zero(end) == hole {
                end = (end + HOLE_BLOCK).min(n);
            }
            if hole {
                f.seek(SeekFrom::Current((end - at) as i64))?;
            } else {
                f.write_all(&buf[at..end])?;
            }
            pending_hole = hole;
            at = end;
        }
        total += n as u64;
    }
    if pending_hole {
        // A file that ends in a hole gets its length from set_len.
        f.set_len(total)?;
    }
    Ok(total)
}

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
    let mut s = agent::open(&lifecycle::vsock(id), deadline)
        .map_err(|e| lifecycle::lost_agent(id, "connecting to the guest agent", e))?;
    let req = Request::PullArchive {
        path: rel.to_string(),
    };
    pyro_proto::write_frame(&mut s, &req)
        .map_err(|e| lifecycle::lost_agent(id, "asking for the export", e))?;
    let kind = match pyro_proto::read_reply(&mut s, &req) {
        Ok(Some(Response::ArchiveStart { artifact_type })) => artifact_type,
        Ok(Some(Response::Error { kind, message })) => {
            return Err(lifecycle::agent_error(kind, message))
        }
        Ok(other) => {
            return Err(EngineError::Guest(format!(
                "unexpected agent answer to an export: {other:?}"
            )))
        }
        Err(e) => return Err(lifecycle::lost_agent(id, "starting the export", e)),
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
            return Err(lifecycle::agent_error(kind, message))
        }
        Ok(other) => {
            return Err(EngineError::Guest(format!(
                "unexpected end of an export: {other:?}"
            )))
        }
        Err(e) => return Err(lifecycle::lost_agent(id, "finishing the export", e)),
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

// ---- the stage: crash-safe replacement ------------------------------------

/// What a stage directory's name carries between the destination's name and
/// its random id: `.<name>.pyro-export-<id>`.
const STAGE_MARK: &str = ".pyro-export-";
/// Hex digits of a stage's random id (6 bytes).
const STAGE_ID_HEX: usize = 12;
/// The old destination inside a stage, between the two renames.
const OLD: &str = "old";

/// Where the journal of running exports lives.
fn journal_dir() -> PathBuf {
    paths::home().join("exports")
}

fn stage_name(name: &OsStr, id: &str) -> OsString {
    let mut n = OsString::from(".");
    n.push(name);
    n.push(STAGE_MARK);
    n.push(id);
    n
}

/// The destination name a stage directory name belongs to.
fn stage_target(stage_name: &OsStr) -> Option<OsString> {
    let b = stage_name.as_bytes();
    let b = b.strip_prefix(b".")?;
    if b.len() < STAGE_MARK.len() + STAGE_ID_HEX {
        return None;
    }
    let (rest, id) = b.split_at(b.len() - STAGE_ID_HEX);
    let name = rest.strip_suffix(STAGE_MARK.as_bytes())?;
    if name.is_empty() || !id.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    Some(OsString::from_vec(name.to_vec()))
}

fn flock_nb(f: &File) -> io::Result<bool> {
    // SAFETY: flock on a file descriptor this File owns.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

fn open_dir_nofollow(p: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(p)
}

/// Makes a directory's entries durable (after renames in it).
fn sync_dir(p: &Path) {
    if let Ok(d) = open_dir_nofollow(p) {
        let _ = d.sync_all();
    }
}

/// One export's stage directory, journalled and locked for its life.
struct Stage {
    dir: PathBuf,
    journal: PathBuf,
    /// Held (flock) until the stage is gone: the reaper leaves it alone.
    _lock: File,
}

impl Stage {
    fn create(parent: &Path, name: &OsStr, journals: &Path) -> Result<Stage> {
        let id = paths::random_id(STAGE_ID_HEX / 2);
        let dir = parent.join(stage_name(name, &id));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(journals)
            .map_err(|e| EngineError::io(format!("creating {}", journals.display()), e))?;
        // Journal first: whatever happens next, the reaper can find it.
        let journal = journals.join(&id);
        paths::write_atomic(&journal, dir.as_os_str().as_bytes())
            .map_err(|e| EngineError::io(format!("writing {}", journal.display()), e))?;
        let made = std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .and_then(|()| open_dir_nofollow(&dir))
            .and_then(|f| match flock_nb(&f)? {
                true => Ok(f),
                false => Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "another pyro process holds it",
                )),
            });
        match made {
            Ok(lock) => Ok(Stage {
                dir,
                journal,
                _lock: lock,
            }),
            Err(e) => {
                let _ = std::fs::remove_file(&journal);
                Err(EngineError::io(format!("creating {}", dir.display()), e))
            }
        }
    }

    /// Puts `made` (inside the stage) at `out`. Replacing moves the old
    /// `out` into the stage first; if the second rename fails the old one
    /// goes back. A kill between the two leaves it in the stage, for the
    /// reaper to restore.
    fn commit(&self, made: &Path, out: &Path, exists: bool) -> Result<()> {
        let parent = out.parent().unwrap_or(Path::new("/"));
        if exists {
            let old = self.dir.join(OLD);
            std::fs::rename(out, &old)
                .map_err(|e| EngineError::io(format!("moving aside {}", out.display()), e))?;
            #[cfg(test)]
            tests::kill_here_if_asked();
            if let Err(e) = std::fs::rename(made, out) {
                let _ = std::fs::rename(&old, out);
                return Err(EngineError::io(format!("writing {}", out.display()), e));
            }
        } else {
            rename_noreplace(made, out)
                .map_err(|e| EngineError::io(format!("writing {}", out.display()), e))?;
        }
        sync_dir(parent);
        Ok(())
    }

    /// Removes the stage (and the replaced original in it) and its journal,
    /// unless the original is still only in there (both renames failed):
    /// then it goes back to `out`, or, if even that fails, the stage and
    /// its journal stay for the reaper and the error says where it is.
    fn finish(self, out: &Path) -> Result<()> {
        let old = self.dir.join(OLD);
        let stranded = std::fs::symlink_metadata(&old).is_ok()
            && std::fs::symlink_metadata(out).is_err_and(|e| e.kind() == io::ErrorKind::NotFound);
        if stranded {
            if let Err(e) = rename_noreplace(&old, out) {
                return Err(EngineError::io(
                    format!(
                        "putting {} back (the original is kept in {}; the next export or `pyro mcp serve` restores it)",
                        out.display(),
                        old.display()
                    ),
                    e,
                ));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.journal);
        Ok(())
    }
}

/// rename(2) that fails rather than replace something that appeared at
/// `to` meanwhile (renameat2 RENAME_NOREPLACE; where the filesystem lacks
/// it, a check right before a plain rename).
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
    };
    let (f, t) = (c(from)?, c(to)?);
    // SAFETY: two valid NUL-terminated paths; renameat2 reads them only.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            if std::fs::symlink_metadata(to).is_ok() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            std::fs::rename(from, to)
        }
        _ => Err(e),
    }
}

/// What became of one stage directory.
#[derive(Debug, PartialEq)]
enum Reaped {
    /// A live export holds it.
    Busy,
    /// Already gone (or not a stage).
    Gone,
    /// Removed; the destination was in place.
    Removed,
    /// The original was put back at this destination, then removed.
    Restored(PathBuf),
}

/// Finishes or undoes an abandoned stage: the original goes back where it
/// was if nothing took its place, then the stage is removed.
fn reap_stage(stage: &Path) -> io::Result<Reaped> {
    let Some(name) = stage.file_name().and_then(stage_target) else {
        return Ok(Reaped::Gone);
    };
    let lock = match open_dir_nofollow(stage) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Reaped::Gone),
        Err(e) => return Err(e),
    };
    if !flock_nb(&lock)? {
        return Ok(Reaped::Busy);
    }
    let parent = stage.parent().unwrap_or(Path::new("/"));
    let out = parent.join(name);
    let old = stage.join(OLD);
    let restore = std::fs::symlink_metadata(&old).is_ok()
        && std::fs::symlink_metadata(&out).is_err_and(|e| e.kind() == io::ErrorKind::NotFound);
    if restore {
        rename_noreplace(&old, &out)?;
        sync_dir(parent);
    }
    match std::fs::remove_dir_all(stage) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Reaped::Gone),
        Err(e) => return Err(e),
    }
    Ok(if restore {
        Reaped::Restored(out)
    } else {
        Reaped::Removed
    })
}

fn report(stage: &Path, r: io::Result<Reaped>) {
    match r {
        Ok(Reaped::Restored(out)) => eprintln!(
            "pyro: an interrupted export had moved {} aside; it is back in place",
            out.display()
        ),
        Err(e) => eprintln!(
            "pyro: could not clean up the interrupted export stage {}: {e}; if the export replaced something, the original is in its `old` entry",
            stage.display()
        ),
        Ok(_) => {}
    }
}

/// Reaps the stages of every export this PYRO_HOME's journal lists whose
/// process is gone. Cheap when nothing was interrupted (one empty
/// directory read); never creates anything.
pub fn reap_stages() {
    reap_journal(&journal_dir());
}

fn reap_journal(journals: &Path) {
    let Ok(entries) = std::fs::read_dir(journals) else {
        return;
    };
    for e in entries.flatten() {
        let j = e.path();
        let Ok(bytes) = std::fs::read(&j) else {
            continue;
        };
        let stage = PathBuf::from(OsString::from_vec(bytes));
        let r = reap_stage(&stage);
        let done = matches!(r, Ok(Reaped::Gone | Reaped::Removed | Reaped::Restored(_)));
        report(&stage, r);
        if done {
            let _ = std::fs::remove_file(&j);
        }
    }
}

/// Reaps abandoned stages in `dir` (the directory an export writes into),
/// journalled or not (an older pyro, another PYRO_HOME).
fn reap_siblings(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if stage_target(&e.file_name()).is_some() {
            let stage = e.path();
            let r = reap_stage(&stage);
            report(&stage, r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::raw_tar::{header_only, raw_tar};
    use super::*;
    use crate::temp_dir::TempDir;

    #[test]
    fn hostile_guest_streams_cannot_escape() {
        use tar::EntryType::*;
        let d = TempDir::new("export-hostile");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (raw_tar(&[("../evil", Regular, b"x", "")]), "'..'"),
            (raw_tar(&[("/tmp/evil", Regular, b"x", "")]), "absolute"),
            (
                raw_tar(&[("l", Symlink, b"", "../../etc")]),
                "points outside",
            ),
            (
                raw_tar(&[("l", Symlink, b"", "."), ("l/x", Regular, b"x", "")]),
                "through the symlink",
            ),
            (raw_tar(&[("h", Link, b"", "x")]), "not a file"),
            // The review's chain: `up -> .` passes on its own, the climb
            // through it does not.
            (
                raw_tar(&[
                    ("up", Symlink, b"", "."),
                    ("leak", Symlink, b"", "up/up/../../SECRET"),
                ]),
                "'..' after a name",
            ),
            (
                raw_tar(&[("a", Symlink, b"", "."), ("b", Symlink, b"", "a/a/..")]),
                "'..' after a name",
            ),
            (
                raw_tar(&[("x", Symlink, b"", "y"), ("y", Symlink, b"", "..")]),
                "climbs above the tree",
            ),
            (raw_tar(&[("l", Symlink, b"", "/etc/passwd")]), "absolute"),
            (
                raw_tar(&[("f", Regular, b"1", ""), ("f", Regular, b"2", "")]),
                "twice",
            ),
        ];
        for (i, (bytes, want)) in cases.into_iter().enumerate() {
            let root = d.join(format!("r{i}"));
            std::fs::create_dir(&root).unwrap();
            let e = extract_confined(bytes.as_slice(), &root, EXPORT_LIMITS)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
        assert!(!d.join("evil").exists());
        // Nothing of the chain is left to follow.
        assert!(std::fs::symlink_metadata(d.join("r6/leak")).is_err());
    }

    #[test]
    fn a_terabyte_sparse_file_is_refused_from_its_header_and_nothing_is_written() {
        let d = TempDir::new("export-sparse");
        // What the guest sends for `truncate -s 1T big`: a header, then
        // zeros it would stream for hours. Only the header is here: the
        // refusal must not need the content.
        let bytes = header_only("big", tar::EntryType::Regular, 1 << 40);
        let e = extract_confined(bytes.as_slice(), &d, EXPORT_LIMITS)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"big\" is 1099511627776 bytes, over the 8589934592-byte limit"),
            "{e}"
        );
        assert!(e.contains("export a smaller path"), "{e}");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
    }

    #[test]
    fn export_limits_on_bytes_entries_and_metadata_are_enforced() {
        use tar::EntryType::*;
        let d = TempDir::new("export-limits");
        // A 1 GiB long name claim: refused before anything is read.
        let bomb = header_only("././@LongLink", GNULongName, 1 << 30);
        let e = extract_confined(bomb.as_slice(), &d, EXPORT_LIMITS)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("GNU long name header of 1073741824 bytes"),
            "{e}"
        );
        // The running total and the member count, with small limits.
        let small = TarLimits {
            meta_bytes: MAX_TAR_META_BYTES,
            member_bytes: 1 << 20,
            total_bytes: 8 * 1024,
            members: 10,
        };
        let kb = vec![b'x'; 3000];
        let three = raw_tar(&[
            ("a", Regular, &kb, ""),
            ("b", Regular, &kb, ""),
            ("c", Regular, &kb, ""),
        ]);
        let root = d.join("total");
        std::fs::create_dir(&root).unwrap();
        let e = extract_confined(three.as_slice(), &root, small)
            .unwrap_err()
            .to_string();
        assert!(e.contains("over the 8192-byte limit"), "{e}");
        assert!(
            !root.join("c").exists(),
            "the member over the limit is not written"
        );
        let root = d.join("count");
        std::fs::create_dir(&root).unwrap();
        let small = TarLimits {
            total_bytes: 1 << 20,
            members: 2,
            ..small
        };
        let e = extract_confined(three.as_slice(), &root, small)
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than 2 members"), "{e}");
    }

    #[test]
    fn runs_of_zeros_become_holes_and_the_content_is_intact() {
        use std::os::unix::fs::MetadataExt;
        let d = TempDir::new("export-holes");
        let mut data = vec![0u8; 4 << 20];
        data[1_000_000..1_000_010].copy_from_slice(b"0123456789");
        let mut tail = data.clone();
        tail.extend_from_slice(b"end");
        let bytes = raw_tar(&[
            ("zeros", tar::EntryType::Regular, &data, ""),
            ("tail", tar::EntryType::Regular, &tail, ""),
        ]);
        let (n, written) = extract_confined(bytes.as_slice(), &d, EXPORT_LIMITS).unwrap();
        assert_eq!((n, written), (2, (data.len() + tail.len()) as u64));
        assert_eq!(std::fs::read(d.join("zeros")).unwrap(), data);
        assert_eq!(std::fs::read(d.join("tail")).unwrap(), tail);
        // Only the blocks around the data are allocated (where the
        // filesystem has holes at all).
        let m = std::fs::metadata(d.join("zeros")).unwrap();
        assert!(m.blocks() * 512 <= 64 * 1024, "{} blocks", m.blocks());
    }

    #[test]
    fn a_single_exported_symlink_may_not_climb() {
        use tar::EntryType::*;
        let d = TempDir::new("export-single");
        for (target, ok) in [
            ("x/y", true),
            (".", true),
            ("../x", false),
            ("a/../x", false),
        ] {
            let root = d.join(format!("r{}", target.len()));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir(&root).unwrap();
            let r = extract_confined(
                raw_tar(&[("l", Symlink, b"", target)]).as_slice(),
                &root,
                EXPORT_LIMITS,
            );
            assert_eq!(r.is_ok(), ok, "{target}: {r:?}");
        }
    }

    /// Set in the child process of the SIGKILL test: the stage's commit
    /// kills its own process between the two renames.
    const KILL_BETWEEN_RENAMES: &str = "PYRO_TEST_KILL_BETWEEN_RENAMES";
    /// The directory the SIGKILL test's child works in.
    const CHILD_DIR: &str = "PYRO_TEST_EXPORT_CHILD_DIR";

    pub(super) fn kill_here_if_asked() {
        if std::env::var_os(KILL_BETWEEN_RENAMES).is_some() {
            // SAFETY: signalling this process; SIGKILL cannot be caught,
            // exactly like a kill from outside.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
    }

    fn put(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// `out/` with two files: the original an export replaces.
    fn original(d: &Path) {
        put(&d.join("out/a.txt"), "original a\n");
        put(&d.join("out/sub/b.txt"), "original b\n");
    }

    fn assert_original(d: &Path) {
        assert_eq!(
            std::fs::read_to_string(d.join("out/a.txt")).unwrap(),
            "original a\n"
        );
        assert_eq!(
            std::fs::read_to_string(d.join("out/sub/b.txt")).unwrap(),
            "original b\n"
        );
    }

    fn stages(d: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(d)
            .unwrap()
            .flatten()
            .filter(|e| stage_target(&e.file_name()).is_some())
            .map(|e| e.path())
            .collect()
    }

    /// Not a test on its own: the child of the SIGKILL test, a no-op
    /// unless that test started it.
    #[test]
    fn sigkill_child_replaces_out() {
        let Some(d) = std::env::var_os(CHILD_DIR).map(PathBuf::from) else {
            return;
        };
        let stage = Stage::create(&d, OsStr::new("out"), &d.join("journal")).unwrap();
        let made = stage.dir.join("tree");
        put(&made.join("new.txt"), "new\n");
        stage.commit(&made, &d.join("out"), true).unwrap();
        // Only reached if the kill did not happen: the parent sees "new".
        stage.finish(&d.join("out")).unwrap();
    }

    /// Runs the child above with the kill armed; returns its directory.
    fn killed_between_renames(tag: &str) -> TempDir {
        use std::os::unix::process::ExitStatusExt;
        let d = TempDir::new(&format!("export-{tag}"));
        original(&d);
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "engine::workspace::export::tests::sigkill_child_replaces_out",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(CHILD_DIR, d.path())
            .env(KILL_BETWEEN_RENAMES, "1")
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
        // The state the kill left: no destination, the original in the stage.
        assert!(!d.join("out").exists());
        let st = stages(&d);
        assert_eq!(st.len(), 1, "{st:?}");
        assert_eq!(
            std::fs::read_to_string(st[0].join("old/a.txt")).unwrap(),
            "original a\n"
        );
        assert_eq!(std::fs::read_dir(d.join("journal")).unwrap().count(), 1);
        d
    }

    #[test]
    fn a_sigkill_between_the_renames_is_undone_by_the_journal_reaper() {
        let d = killed_between_renames("kill-journal");
        reap_journal(&d.join("journal"));
        assert_original(&d);
        assert!(!d.join("out/new.txt").exists());
        assert!(stages(&d).is_empty());
        assert_eq!(std::fs::read_dir(d.join("journal")).unwrap().count(), 0);
    }

    #[test]
    fn a_sigkill_between_the_renames_is_undone_by_the_next_export_there() {
        let d = killed_between_renames("kill-sibling");
        // The next export into the same directory scans it first.
        reap_siblings(&d);
        assert_original(&d);
        assert!(stages(&d).is_empty());
        // The journal entry left behind is dropped once its stage is gone.
        reap_journal(&d.join("journal"));
        assert_eq!(std::fs::read_dir(d.join("journal")).unwrap().count(), 0);
    }

    #[test]
    fn a_running_export_stage_is_left_alone_and_a_finished_one_leaves_nothing() {
        let d = TempDir::new("export-busy");
        original(&d);
        let journals = d.join("journal");
        let stage = Stage::create(&d, OsStr::new("out"), &journals).unwrap();
        let made = stage.dir.join("tree");
        put(&made.join("new.txt"), "new\n");
        reap_journal(&journals);
        reap_siblings(&d);
        assert!(stage.dir.is_dir(), "a held stage is not reaped");
        assert_eq!(reap_stage(&stage.dir).unwrap(), Reaped::Busy);
        stage.commit(&made, &d.join("out"), true).unwrap();
        stage.finish(&d.join("out")).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.join("out/new.txt")).unwrap(),
            "new\n"
        );
        assert!(!d.join("out/a.txt").exists());
        assert!(stages(&d).is_empty());
        assert_eq!(std::fs::read_dir(&journals).unwrap().count(), 0);
    }

    #[test]
    fn an_abandoned_stage_after_both_renames_keeps_the_new_copy() {
        let d = TempDir::new("export-after");
        put(&d.join("out/new.txt"), "new\n");
        let stage = d.join(stage_name(OsStr::new("out"), "0123456789ab"));
        put(&stage.join("old/a.txt"), "original a\n");
        assert_eq!(reap_stage(&stage).unwrap(), Reaped::Removed);
        assert_eq!(
            std::fs::read_to_string(d.join("out/new.txt")).unwrap(),
            "new\n"
        );
        assert!(!stage.exists());
    }

    #[test]
    fn a_new_destination_is_never_replaced_by_surprise() {
        let d = TempDir::new("export-noreplace");
        let stage = Stage::create(&d, OsStr::new("out"), &d.join("journal")).unwrap();
        let made = stage.dir.join("tree");
        put(&made, "new\n");
        // Something appeared at the destination while the export ran.
        put(&d.join("out"), "someone else's\n");
        assert!(stage.commit(&made, &d.join("out"), false).is_err());
        assert_eq!(
            std::fs::read_to_string(d.join("out")).unwrap(),
            "someone else's\n"
        );
        stage.finish(&d.join("out")).unwrap();
    }

    #[test]
    fn finishing_a_stage_never_deletes_an_original_left_in_it() {
        let d = TempDir::new("export-stranded");
        original(&d);
        let stage = Stage::create(&d, OsStr::new("out"), &d.join("journal")).unwrap();
        // As if the new copy's rename and the way back had both failed.
        std::fs::rename(d.join("out"), stage.dir.join(OLD)).unwrap();
        stage.finish(&d.join("out")).unwrap();
        assert_original(&d);
        assert!(stages(&d).is_empty());
    }

    #[test]
    fn stage_names_map_back_to_their_destination() {
        let n = stage_name(OsStr::new("my.file.tar"), "00ff00ff00ff");
        assert_eq!(n, ".my.file.tar.pyro-export-00ff00ff00ff");
        assert_eq!(stage_target(&n).unwrap(), "my.file.tar");
        for not in [
            "my.file",
            ".x.pyro-export-short",
            ".x.pyro-export-zzzzzzzzzzzz",
            "..pyro-export-00ff00ff00ff",
            "x.pyro-export-00ff00ff00ff",
        ] {
            assert!(stage_target(OsStr::new(not)).is_none(), "{not}");
        }
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
