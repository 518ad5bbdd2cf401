//! The VMM's first step, before `/dev/kvm` and before any socket: open the
//! VM's disks and lock the writable ones for the process's whole life
//! (one VMM per disk, see `disk_lock`). A VMM that cannot have its disk
//! to itself changes nothing, and a busy disk is reported as such, even
//! on a host where KVM would fail too.

use super::config::{ConfigError, VmConfig};
use super::{control, disk_lock};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// The VM's disks, open, the writable ones locked (dropping this releases
/// them).
pub struct DiskClaim {
    /// One open file per `VmConfig::disks` entry, in order.
    pub files: Vec<File>,
    /// `<dev>:<ino>` of the first writable disk (`-` without one), as the
    /// control socket reports it.
    pub identity: String,
}

/// Why `claim_disks` failed.
#[derive(Debug)]
pub enum ClaimError {
    Invalid(ConfigError),
    Open(PathBuf, io::Error),
    Lock(PathBuf, io::Error),
    Stat(PathBuf, io::Error),
    /// Another process holds a writable disk's lock: the VMM must not
    /// start. `holder` is the pid of the VMM that holds it, when it
    /// answers on this VM's control socket.
    Busy {
        disk: PathBuf,
        holder: Option<i32>,
    },
}

impl ClaimError {
    /// The VMM process's exit status for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClaimError::Busy { .. } => disk_lock::EXIT_DISK_BUSY,
            _ => 1,
        }
    }
}

impl fmt::Display for ClaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClaimError::Invalid(e) => write!(f, "{e}"),
            ClaimError::Open(p, e) => write!(f, "cannot open disk {}: {e}", p.display()),
            ClaimError::Lock(p, e) => write!(f, "cannot lock disk {}: {e}", p.display()),
            ClaimError::Stat(p, e) => write!(f, "disk {}: {e}", p.display()),
            ClaimError::Busy { disk, holder } => {
                match holder {
                    Some(pid) => write!(f, "another VMM (pid {pid})")?,
                    None => f.write_str(
                        "another process (it does not answer on this VM's control socket)",
                    )?,
                }
                write!(
                    f,
                    " is using this VM's disk {} (it holds its lock); refusing to start a second VM on it",
                    disk.display()
                )
            }
        }
    }
}

impl std::error::Error for ClaimError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClaimError::Invalid(e) => Some(e),
            ClaimError::Open(_, e) | ClaimError::Lock(_, e) | ClaimError::Stat(_, e) => Some(e),
            ClaimError::Busy { .. } => None,
        }
    }
}

/// Checks the config, opens every disk and locks the writable ones.
pub fn claim_disks(cfg: &VmConfig) -> Result<DiskClaim, ClaimError> {
    cfg.validate().map_err(ClaimError::Invalid)?;
    let mut files = Vec::new();
    let mut identity = None;
    for d in &cfg.disks {
        let file = OpenOptions::new()
            .read(true)
            .write(!d.read_only)
            .open(&d.path)
            .map_err(|e| ClaimError::Open(d.path.clone(), e))?;
        if !d.read_only {
            let locked =
                disk_lock::try_lock(&file).map_err(|e| ClaimError::Lock(d.path.clone(), e))?;
            if !locked {
                return Err(ClaimError::Busy {
                    disk: d.path.clone(),
                    holder: holder(cfg),
                });
            }
            if identity.is_none() {
                let meta = file
                    .metadata()
                    .map_err(|e| ClaimError::Stat(d.path.clone(), e))?;
                identity = Some(disk_lock::identity(&meta));
            }
        }
        files.push(file);
    }
    Ok(DiskClaim {
        files,
        identity: identity.unwrap_or_else(|| "-".into()),
    })
}

/// How long a VMM that finds its disk locked waits for the holder to say
/// who it is, for the error message: a live VMM answers within
/// milliseconds, and a hung one must not hold up the refusal.
const HOLDER_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The pid of the VMM holding the disk, from its answer on the control
/// socket (whose path is this VM's too, when the holder is a VMM of the
/// same VM directory).
fn holder(cfg: &VmConfig) -> Option<i32> {
    let socket: &Path = cfg.control_socket.as_deref()?;
    control::ping(socket, HOLDER_PING_TIMEOUT)
        .ok()
        .map(|p| p.pid)
}
