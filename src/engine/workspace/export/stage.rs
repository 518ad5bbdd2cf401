//! The stage: crash-safe replacement of an export's destination.
//!
//! The stage directory (`.<name>.pyro-export-<id>` beside the destination)
//! is recorded in a journal under `$PYRO_HOME/exports/` before it is made,
//! and flock(2)ed while the export runs. Replacing
//! moves the old destination into the stage, then the new copy onto the
//! destination; a process killed between the two renames leaves the
//! original in the stage. [`reap_stages`] (run by every export and at MCP
//! server start) and the scan of the destination's directory at the next
//! export put it back and remove stages nobody holds.

use crate::engine::paths;
use crate::engine::{EngineError, Result};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What a stage directory's name carries between the destination's name and
/// its random id: `.<name>.pyro-export-<id>`.
const STAGE_MARK: &str = ".pyro-export-";
/// Hex digits of a stage's random id (6 bytes).
const STAGE_ID_HEX: usize = 12;
/// The old destination inside a stage, between the two renames.
const OLD: &str = "old";

/// Where the journal of running exports lives.
pub(super) fn journal_dir() -> PathBuf {
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
pub(super) struct Stage {
    pub(super) dir: PathBuf,
    journal: PathBuf,
    /// Held (flock) until the stage is gone: the reaper leaves it alone.
    _lock: File,
}

impl Stage {
    pub(super) fn create(parent: &Path, name: &OsStr, journals: &Path) -> Result<Stage> {
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
    pub(super) fn commit(&self, made: &Path, out: &Path, exists: bool) -> Result<()> {
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
    pub(super) fn finish(self, out: &Path) -> Result<()> {
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
pub(super) fn reap_siblings(dir: &Path) {
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
    use super::super::tests::put;
    use super::*;
    use crate::temp_dir::TempDir;

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
                "engine::workspace::export::stage::tests::sigkill_child_replaces_out",
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
}
