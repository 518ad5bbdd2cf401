//! One VMM per disk.
//!
//! A VMM holds an exclusive lock on every writable disk it serves, from
//! before it opens `/dev/kvm` or puts its sockets in place until it exits,
//! and refuses to start when another process holds it: two kernels must
//! never mount one ext4, and a second VMM must never rename its sockets
//! over a live one's. The lock is the ground truth for "a VMM runs on this
//! disk": it belongs to the inode, so every spelling of the path (a
//! symlinked or bind-mounted `PYRO_HOME`) and every PID namespace sees the
//! same lock, and the kernel drops it when the process dies, however it
//! dies.
//!
//! The lock is an open file description lock (`F_OFD_SETLK`, a write lock
//! over the whole file) rather than `flock(2)`: the engine must be able to
//! ask whether a VMM holds a disk *without* taking the lock itself
//! (`F_OFD_GETLK`), or a status probe that held it for a moment would make a
//! VMM starting in that moment refuse to run. QEMU locks its disk images
//! the same way. Like `flock`, an OFD lock belongs to the open file, not to
//! the process, so closing some other descriptor of the disk never drops it
//! (as it would a classic POSIX lock).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Exit status of a VMM that did not start because another process holds
/// one of its disks (`EX_TEMPFAIL` of sysexits.h: try again once that VMM
/// is gone). The engine reports it as "another VMM is using this disk",
/// never as a crash.
pub const EXIT_DISK_BUSY: i32 = 75;

fn whole_file(kind: libc::c_short) -> libc::flock {
    // SAFETY: flock is plain data; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // l_start 0, l_len 0: the whole file, however it grows.
    fl
}

/// Takes the exclusive lock on `f` (open for writing). `Ok(false)` when
/// another open file holds a lock on it.
pub fn try_lock(f: &File) -> io::Result<bool> {
    let fl = whole_file(libc::F_WRLCK as libc::c_short);
    // SAFETY: fcntl on our descriptor with a pointer to a live flock.
    if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &fl) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(e),
    }
}

/// Whether some process holds a lock on the file at `path`, asked without
/// taking it. A missing file is not locked.
pub fn is_locked(path: &Path) -> io::Result<bool> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut fl = whole_file(libc::F_WRLCK as libc::c_short);
    // SAFETY: fcntl on our descriptor with a pointer to a live flock.
    if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// A file's identity as the control socket reports it: `<dev>:<ino>`.
pub fn identity(meta: &std::fs::Metadata) -> String {
    format!("{}:{}", meta.dev(), meta.ino())
}

/// Whether process `pid` holds the lock on the file at `path` through one
/// of its open descriptors (`/proc/<pid>/fdinfo` lists the locks held
/// through each). This identifies a VMM that does not answer on its control
/// socket with certainty: a pid reused by an unrelated process cannot hold
/// the lock on this inode.
pub fn held_by(pid: i32, path: &Path) -> bool {
    let Ok(want) = std::fs::metadata(path) else {
        return false;
    };
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        // Following the fd's link reaches the open file itself, whatever
        // path it was opened by.
        let same = std::fs::metadata(fd.path())
            .is_ok_and(|m| m.dev() == want.dev() && m.ino() == want.ino());
        same && std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .is_ok_and(|info| {
            info.lines()
                .any(|l| l.starts_with("lock:") && l.contains("WRITE"))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    /// A disk file in a directory of its own (removed with the returned
    /// guard).
    fn temp_disk(tag: &str) -> (crate::temp_dir::TempDir, std::path::PathBuf) {
        let d = crate::temp_dir::TempDir::new(&format!("disklock-{tag}"));
        let p = d.join("scratch.ext4");
        std::fs::write(&p, b"disk").unwrap();
        (d, p)
    }

    #[test]
    fn a_disk_lock_excludes_a_second_holder_and_is_seen_without_being_taken() {
        let (_dir, p) = temp_disk("excl");
        assert!(!is_locked(&p).unwrap());
        let a = OpenOptions::new().read(true).write(true).open(&p).unwrap();
        assert!(try_lock(&a).unwrap());
        // Another open of the same file (as a second VMM would make) fails,
        // and so does one through another spelling of the path.
        let b = OpenOptions::new().read(true).write(true).open(&p).unwrap();
        assert!(!try_lock(&b).unwrap());
        let link = p.with_file_name("link.ext4");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        let c = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&link)
            .unwrap();
        assert!(!try_lock(&c).unwrap());
        // The probe sees it from any spelling and leaves it in place.
        assert!(is_locked(&p).unwrap());
        assert!(is_locked(&link).unwrap());
        assert!(!try_lock(&b).unwrap());
        // This process holds it through `a`, and only while `a` is open.
        assert!(held_by(std::process::id() as i32, &link));
        drop(a);
        assert!(!is_locked(&p).unwrap());
        assert!(!held_by(std::process::id() as i32, &p));
        assert!(try_lock(&b).unwrap());
    }

    #[test]
    fn closing_another_descriptor_of_the_disk_keeps_the_lock() {
        let (_dir, p) = temp_disk("keep");
        let a = OpenOptions::new().read(true).write(true).open(&p).unwrap();
        assert!(try_lock(&a).unwrap());
        // A classic POSIX lock would be dropped here.
        drop(File::open(&p).unwrap());
        assert!(is_locked(&p).unwrap());
        // A duplicate descriptor (the one a disk device is given) keeps it
        // after the original closes.
        let dup = a.try_clone().unwrap();
        drop(a);
        assert!(is_locked(&p).unwrap());
        drop(dup);
        assert!(!is_locked(&p).unwrap());
    }

    #[test]
    fn a_missing_disk_is_not_locked_and_not_held() {
        let p = std::env::temp_dir().join("pyro-disklock-none/scratch.ext4");
        assert!(!is_locked(&p).unwrap());
        assert!(!held_by(std::process::id() as i32, &p));
    }
}
