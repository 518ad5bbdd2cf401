//! Workspace metadata on disk and the lock that serializes operations.
//!
//! Layout of `$PYRO_HOME/workspaces/<id>/` (directory mode 0700):
//!
//! | path | what |
//! | --- | --- |
//! | `workspace.json` | [`Record`], written atomically, mode 0600 |
//! | `lock` | flock(2) target; its text says who holds it |
//! | `vm/` | the VM: `scratch.ext4` (writable disk), `vm.json`, sockets, logs |
//! | `baseline.tar`, `baseline.json` | the seeded tree and its manifest |
//! | `commands/NNNNNN.json` | one executed command with its output |
//! | `events.jsonl` | review events, one JSON object per line |

use super::super::paths;
use super::{EngineError, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const LAYOUT_VERSION: u32 = 1;
/// How long an operation waits for another one on the same workspace.
pub const LOCK_WAIT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub layout_version: u32,
    pub workspace_id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub environment: String,
    #[serde(default)]
    pub environment_version: String,
    pub vcpu_count: u8,
    pub mem_mib: u32,
    pub ttl_seconds: u64,
    pub created_at: f64,
    pub expires_at: f64,
    /// `started` or `stopped`.
    pub state: String,
    #[serde(default)]
    pub vmm_pid: Option<i32>,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub workspace_seed: Value,
    #[serde(default)]
    pub reset_count: u64,
    #[serde(default)]
    pub last_reset_at: Option<f64>,
    #[serde(default)]
    pub restart_count: u64,
    #[serde(default)]
    pub last_activity_at: f64,
    /// Bytes the new workspace took on the host's disk (writable disk plus
    /// baseline archive), measured right after creation.
    #[serde(default)]
    pub created_disk_bytes: u64,
}

pub fn root() -> PathBuf {
    paths::home().join("workspaces")
}

pub fn dir(id: &str) -> PathBuf {
    root().join(id)
}

pub fn vm_dir(id: &str) -> PathBuf {
    dir(id).join("vm")
}

/// Workspace ids are 12 lowercase hex digits; anything else cannot name
/// one (and must never become a path).
pub fn valid_id(id: &str) -> bool {
    id.len() == 12
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Creates a private directory (0700).
pub fn make_private_dir(p: &Path) -> Result<()> {
    std::fs::create_dir_all(p)
        .map_err(|e| EngineError::io(format!("creating {}", p.display()), e))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| EngineError::io(format!("securing {}", p.display()), e))
}

/// Writes `data` atomically with mode 0600 (temp file, fsync, rename).
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        paths::random_id(4)
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

pub fn not_found(id: &str) -> EngineError {
    let mut msg = format!(
        "workspace {id:?} does not exist (it was deleted, expired, or never created); `pyro workspace list` shows the existing ones"
    );
    // A name given where an id belongs: point at the id.
    if let Ok(all) = list_records() {
        if let Some(r) = all.iter().find(|r| r.name.as_deref() == Some(id)) {
            msg = format!(
                "{id:?} is a workspace name, not an id; that workspace's id is {}",
                r.workspace_id
            );
        }
    }
    EngineError::NotFound(msg)
}

pub fn load(id: &str) -> Result<Record> {
    if !valid_id(id) {
        return Err(not_found(id));
    }
    let p = dir(id).join("workspace.json");
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found(id)),
        Err(e) => return Err(EngineError::io(format!("reading {}", p.display()), e)),
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        EngineError::Io(format!(
            "workspace metadata {} is damaged ({e}); delete the workspace with `pyro workspace delete {id}`",
            p.display()
        ))
    })
}

pub fn save(r: &Record) -> Result<()> {
    let p = dir(&r.workspace_id).join("workspace.json");
    let body = serde_json::to_vec_pretty(r).expect("records serialize");
    write_private(&p, &body).map_err(|e| EngineError::io(format!("writing {}", p.display()), e))
}

/// [`save`] without the fsync: still atomic against a crashing process
/// (temp file and rename), for the activity stamp every exec updates.
pub fn save_quick(r: &Record) -> Result<()> {
    let p = dir(&r.workspace_id).join("workspace.json");
    let tmp = dir(&r.workspace_id).join(".workspace.json.quick");
    let body = serde_json::to_vec_pretty(r).expect("records serialize");
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&body))
        .and_then(|_| std::fs::rename(&tmp, &p))
        .map_err(|e| EngineError::io(format!("writing {}", p.display()), e))
}

/// Every readable record, sorted by id. Directories without metadata
/// (a create in progress, a delete half done) are skipped.
pub fn list_records() -> Result<Vec<Record>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(root()) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(EngineError::io("listing workspaces", e)),
    };
    for ent in rd.flatten() {
        let name = ent.file_name().to_string_lossy().into_owned();
        if !valid_id(&name) {
            continue;
        }
        if let Ok(bytes) = std::fs::read(ent.path().join("workspace.json")) {
            if let Ok(r) = serde_json::from_slice::<Record>(&bytes) {
                out.push(r);
            }
        }
    }
    out.sort_by(|a, b| a.workspace_id.cmp(&b.workspace_id));
    Ok(out)
}

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

fn try_flock(f: &File) -> std::io::Result<bool> {
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
        .mode(0o600)
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
                super::now()
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

/// Locks workspace `id` for operation `what`.
pub fn lock(id: &str, what: &str) -> Result<Lock> {
    if !valid_id(id) || !dir(id).is_dir() {
        return Err(not_found(id));
    }
    lock_path(&dir(id).join("lock"), what, LOCK_WAIT)
        .map_err(|e| EngineError::Unavailable(format!("workspace {id} is {e}")))
}

/// Locks workspace `id` only if nobody holds it.
pub fn try_lock(id: &str, what: &str) -> Option<Lock> {
    lock_path(&dir(id).join("lock"), what, Duration::ZERO).ok()
}

/// The store-wide lock: taken while names are checked and new workspaces
/// registered, so two creates cannot claim one name.
pub fn lock_store() -> Result<Lock> {
    make_private_dir(&root())?;
    lock_path(
        &root().join(".lock"),
        "registering a workspace",
        Duration::from_secs(120),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_before_becoming_paths() {
        assert!(valid_id("0123456789ab"));
        for bad in [
            "../../etc",
            "0123456789AB",
            "0123",
            "0123456789abc",
            "/tmp/x",
        ] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn locks_exclude_each_other_within_one_process() {
        let d = std::env::temp_dir().join(format!("pyro-lock-{}", paths::random_id(4)));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("lock");
        let held = lock_path(&p, "exec `sleep 9`", Duration::ZERO).unwrap();
        let e = lock_path(&p, "status", Duration::from_millis(50))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("exec `sleep 9`"), "{e}");
        drop(held);
        assert!(lock_path(&p, "status", Duration::ZERO).is_ok());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn private_writes_are_0600() {
        let d = std::env::temp_dir().join(format!("pyro-priv-{}", paths::random_id(4)));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("workspace.json");
        write_private(&p, b"{}").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(d).unwrap();
    }
}
