//! Exclusive file locks (flock(2)) that say who holds them: a waiter
//! reads the holder's operation from the file. The workspace and store
//! locks, the VM capacity claim and one-shot run directories use them.

use super::paths;
use super::{EngineError, Result};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// An exclusive flock on a workspace's (or the store's) lock file, held
/// until dropped. Open file descriptions are per `open`, so two threads of
/// one process exclude each other as two processes do.
pub struct Lock {
    file: File,
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        // SAFETY: flock on our descriptor.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

pub fn try_flock(f: &File) -> std::io::Result<bool> {
    // SAFETY: flock on a valid descriptor.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

fn open_lock(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(paths::PRIVATE_FILE_MODE)
        .open(path)
        .map_err(|e| EngineError::io(format!("opening lock {}", path.display()), e))
}

/// Takes the lock at `path`, waiting up to `wait` for its holder; `what`
/// (the operation) is written into the file for whoever waits next.
pub fn lock_path(path: &Path, what: &str, wait: Duration) -> Result<Lock> {
    let mut f = open_lock(path)?;
    let deadline = Instant::now() + wait;
    loop {
        if try_flock(&f).map_err(|e| EngineError::io("locking", e))? {
            let _ = f.set_len(0);
            let _ = f.rewind();
            let _ = write!(
                f,
                "{what} (pid {}, since {:.0})",
                std::process::id(),
                crate::engine::workspace::now()
            );
            return Ok(Lock { file: f });
        }
        // A cancelled operation stops waiting at once (its MCP call slot
        // is freed when it returns).
        if crate::engine::cancel::cancelled() {
            return Err(crate::engine::cancel::cancelled_error(&format!(
                "waiting for {}",
                path.display()
            )));
        }
        if Instant::now() >= deadline {
            let mut holder = String::new();
            let _ = f.rewind();
            let _ = f.read_to_string(&mut holder);
            return Err(EngineError::Unavailable(format!(
                "busy: another operation holds it ({}) and did not finish within {} s; retry when it is done",
                if holder.is_empty() { "unknown" } else { holder.trim() },
                wait.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_exclude_each_other_within_one_process() {
        let d = crate::temp_dir::TempDir::new("store-lock");
        let p = d.join("lock");
        let held = lock_path(&p, "exec `sleep 9`", Duration::ZERO).unwrap();
        let e = lock_path(&p, "status", Duration::from_millis(50))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("exec `sleep 9`"), "{e}");
        drop(held);
        assert!(lock_path(&p, "status", Duration::ZERO).is_ok());
    }
}
