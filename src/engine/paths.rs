//! Where pyro keeps state on the host, and the rules every piece of that
//! state is written under.
//!
//! - The state directory (`PYRO_HOME`) must belong to the user running pyro
//!   and be writable by nobody else: whoever can write there can swap a
//!   VM's config (`vm.json` names the disks the VMM opens read-write) or
//!   its disk. [`ensure_home`] refuses anything else, naming the fix.
//! - Directories pyro creates there are 0700 ([`private_dir`]), files 0600.
//! - Every state file is replaced through [`write_atomic`]: a temporary
//!   file in the same directory, `fdatasync`, `rename`, `fsync` of the
//!   directory. A crash or power loss leaves the old content or the new,
//!   never an empty or torn file.

use super::{EngineError, Result};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of the directories pyro creates: only the owner may list or enter.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of the files pyro creates: only the owner may read or write.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// `$PYRO_HOME`, else `$XDG_DATA_HOME/pyro`, else `~/.local/share/pyro`.
pub fn home() -> PathBuf {
    if let Some(h) = std::env::var_os("PYRO_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h);
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("pyro");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".local/share/pyro")
}

pub fn environments() -> PathBuf {
    home().join("environments")
}

pub fn runs() -> PathBuf {
    home().join("runs")
}

/// What is wrong with an existing state directory `path` whose metadata
/// is `meta`, for a process running as `uid`; None when it is fine.
pub fn home_problem(path: &Path, meta: &std::fs::Metadata, uid: u32) -> Option<String> {
    let p = path.display();
    if !meta.is_dir() {
        return Some(format!(
            "pyro's state directory {p} (PYRO_HOME) is not a directory; point PYRO_HOME at a directory of your own"
        ));
    }
    if meta.uid() != uid {
        return Some(format!(
            "pyro's state directory {p} (PYRO_HOME) belongs to uid {}, not to you (uid {uid}): its owner could swap the VM configs and disks pyro keeps there. \
             Set PYRO_HOME to a directory you own (or unset it to use ~/.local/share/pyro)",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Some(format!(
            "pyro's state directory {p} (PYRO_HOME) is writable by other users (mode {mode:04o}): they could swap the VM configs and disks pyro keeps there. \
             Make it private with `chmod 700 {p}`"
        ));
    }
    None
}

fn current_uid() -> u32 {
    // SAFETY: geteuid takes no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// Checks the state directory if it exists (see [`home_problem`]); a
/// missing one is fine (there is nothing in it to protect). An acceptable
/// one readable by others is narrowed to 0700.
pub fn check_home() -> Result<PathBuf> {
    let h = home();
    match std::fs::metadata(&h) {
        Ok(meta) => {
            if let Some(why) = home_problem(&h, &meta, current_uid()) {
                return Err(EngineError::Unavailable(why));
            }
            if meta.mode() & 0o077 != 0 {
                std::fs::set_permissions(&h, std::fs::Permissions::from_mode(PRIVATE_DIR_MODE))
                    .map_err(|e| EngineError::io(format!("making {} private", h.display()), e))?;
            }
            Ok(h)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(h),
        Err(e) => Err(EngineError::io(format!("checking {}", h.display()), e)),
    }
}

/// The state directory, created (0700) when missing and checked as
/// [`check_home`] does; for operations about to write state.
pub fn ensure_home() -> Result<PathBuf> {
    let h = home();
    if !h.exists() {
        // Its parents (~/.local/share) are ordinary directories; only the
        // state directory itself is private.
        if let Some(parent) = h.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| EngineError::io(format!("creating {}", parent.display()), e))?;
        }
        match std::fs::DirBuilder::new().mode(PRIVATE_DIR_MODE).create(&h) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(EngineError::io(format!("creating {}", h.display()), e)),
        }
    }
    check_home()
}

/// Creates directory `p` and its missing parents with mode 0700, and makes
/// `p` itself 0700 if it existed with another mode.
pub fn private_dir(p: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(p)?;
    let meta = std::fs::metadata(p)?;
    if meta.mode() & 0o777 != PRIVATE_DIR_MODE {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(PRIVATE_DIR_MODE))?;
    }
    Ok(())
}

/// Opens a new private file (0600) for writing, truncating an old one.
pub fn create_private(p: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(PRIVATE_FILE_MODE)
        .open(p)
}

/// A random lowercase hex id of `bytes * 2` characters.
pub fn random_id(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // SAFETY: buf is valid for writes of its length.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
    if n != bytes as isize {
        // getrandom cannot fail for small requests on Linux >= 3.17; fall
        // back to time and pid rather than aborting.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            ^ (std::process::id() as u128) << 64;
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8;
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Flushes a directory's entries (a rename or a new file in it) to disk.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` with `data` durably and atomically, mode 0600: the
/// writer of pyro's state files (see the module doc).
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    replace(path, data, PRIVATE_FILE_MODE, true)
}

/// [`write_atomic`] with file mode `mode` (exactly, whatever the umask),
/// for files whose mode is someone else's choice (host config files).
pub fn write_atomic_mode(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    replace(path, data, mode, true)
}

/// [`write_atomic`] without the flushes: atomic against a crashing
/// process (old content or new), not against a power loss, which may lose
/// the write or leave the file empty. Only for records on the hot path of
/// every command whose loss costs a line of history and nothing else (a
/// flush costs milliseconds, tens on a busy disk: measured 7 to 25 ms in
/// the test host against 3 ms without).
pub fn write_atomic_unflushed(path: &Path, data: &[u8]) -> std::io::Result<()> {
    replace(path, data, PRIVATE_FILE_MODE, false)
}

/// The one implementation behind the writers above.
fn replace(path: &Path, data: &[u8], mode: u32, durable: bool) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        random_id(4)
    ));
    let mut renamed = false;
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have cleared bits of `mode`.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        // Data before the rename: otherwise a crash can leave the new name
        // on an empty file (ext4 with delalloc, XFS, btrfs). fdatasync is
        // enough: a new file's size is flushed with its data.
        if durable {
            f.sync_data()?;
        }
        std::fs::rename(&tmp, path)?;
        renamed = true;
        // The rename itself survives a crash only once the directory is.
        if durable {
            sync_dir(dir)?;
        }
        Ok(())
    })();
    if result.is_err() && !renamed {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::temp_dir::TempDir;

    #[test]
    fn ids_are_hex_and_distinct() {
        let a = random_id(6);
        assert_eq!(a.len(), 12);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, random_id(6));
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = TempDir::new("paths-atomic");
        let p = dir.join("meta.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    }

    #[test]
    fn atomic_writes_are_private_whatever_the_old_mode() {
        let dir = TempDir::new("paths-atomic-mode");
        let p = dir.join("workspace.json");
        std::fs::write(&p, b"old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&p, b"{}").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let q = dir.join("config.json");
        write_atomic_mode(&q, b"{}", 0o640).unwrap();
        let mode = std::fs::metadata(&q).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
    }

    #[test]
    fn a_failed_atomic_write_keeps_the_old_content_and_no_temp() {
        let dir = TempDir::new("paths-atomic-fail");
        let p = dir.join("meta.json");
        write_atomic(&p, b"old").unwrap();
        // A directory in the way of the rename: the write fails.
        let blocked = dir.join("blocked");
        std::fs::create_dir_all(blocked.join("inner")).unwrap();
        assert!(write_atomic(&blocked, b"new").is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
    }

    #[test]
    fn private_dirs_are_0700_even_when_they_existed() {
        let dir = TempDir::new("paths-private");
        let p = dir.join("a/b");
        private_dir(&p).unwrap();
        for d in [dir.join("a"), p.clone()] {
            let mode = std::fs::metadata(&d).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", d.display());
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_state_dir_others_can_write_or_do_not_own_is_refused_with_the_fix() {
        let dir = TempDir::new("paths-home");
        let me = current_uid();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let meta = std::fs::metadata(&dir).unwrap();
        assert_eq!(home_problem(&dir, &meta, me), None);
        for mode in [0o777, 0o770, 0o1777, 0o702] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
            let meta = std::fs::metadata(&dir).unwrap();
            let why = home_problem(&dir, &meta, me).expect("refused");
            assert!(
                why.contains(&format!("chmod 700 {}", dir.display())),
                "{why}"
            );
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let meta = std::fs::metadata(&dir).unwrap();
        let why = home_problem(&dir, &meta, me + 1).expect("refused");
        assert!(
            why.contains("not to you") && why.contains("PYRO_HOME"),
            "{why}"
        );
        let file = dir.join("f");
        std::fs::write(&file, b"").unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        assert!(home_problem(&file, &meta, me)
            .unwrap()
            .contains("not a directory"));
    }
}
