//! How many VMs may run on this host at once, and with how much guest
//! memory in total: checked whenever a VM is about to start (workspace
//! create, restart and reset, one-shot `pyro run`).
//!
//! Every running VMM holds a *slot*: a small file in `$PYRO_HOME/vms/`
//! saying whose VM it is and how much memory it has, flock(2)ed by an open
//! descriptor the VMM inherits and keeps for its whole life. The kernel
//! drops the lock when the VMM exits, however it exits, so a slot whose
//! lock can be taken belongs to no running VM and is removed. Counting the
//! slots and starting the VMM happen under one host-wide lock
//! (`vms/.lock`), so two pyro processes cannot both take the last place.

use super::lock;
use super::paths;
use super::{EngineError, Result};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variable capping the VMs running at once.
pub const MAX_VMS_ENV: &str = "PYRO_MAX_VMS";
/// Environment variable capping the guest memory of all running VMs, MiB.
pub const MAX_GUEST_MEM_ENV: &str = "PYRO_MAX_GUEST_MEM_MIB";
/// Default cap on running VMs per host CPU. An idle VM costs next to no
/// CPU, a busy one a full host CPU per vCPU; with more than four vCPU
/// threads per CPU a few busy guests starve the rest (boots and commands
/// then miss their timeouts) and the host itself.
pub const VMS_PER_CPU: u64 = 4;
/// Default cap on the guest memory of all running VMs, in percent of the
/// host's RAM. Guest memory is allocated as the guest touches it, and a
/// hostile guest touches all of it; three quarters leave the host a
/// quarter for itself, the page cache and pyro.
pub const GUEST_MEM_PERCENT: u64 = 75;
/// How long a VM start waits for another one to finish claiming its slot
/// (a claim is a count and a fork/exec: milliseconds).
const CLAIM_WAIT: Duration = Duration::from_secs(60);

/// The caps in force.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_vms: u64,
    pub max_guest_mem_mib: u64,
    /// Where each cap came from, for the error message.
    pub vms_source: String,
    pub mem_source: String,
}

/// Whose VM a slot is, as a VM start declares it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Owner {
    /// `workspace` or `run` (one-shot).
    pub kind: String,
    /// The workspace id or the run's VM id.
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

impl Owner {
    pub fn workspace(id: &str, name: Option<&str>) -> Owner {
        Owner {
            kind: "workspace".into(),
            id: id.into(),
            name: name.map(String::from),
        }
    }

    pub fn run(vm_id: &str) -> Owner {
        Owner {
            kind: "run".into(),
            id: vm_id.into(),
            name: None,
        }
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.kind.as_str(), &self.name) {
            ("workspace", Some(n)) if self.id.is_empty() => write!(f, "a new workspace ({n:?})"),
            ("workspace", None) if self.id.is_empty() => write!(f, "a new workspace"),
            ("workspace", Some(n)) => write!(f, "workspace {} ({n:?})", self.id),
            ("workspace", None) => write!(f, "workspace {}", self.id),
            _ => write!(f, "one-shot run {}", self.id),
        }
    }
}

/// What a slot file says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Running {
    pub owner: Owner,
    pub mem_mib: u32,
    pub vcpus: u8,
}

fn host_cpus() -> u64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1)
}

fn host_mem_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kib| kib / 1024)
        .unwrap_or(0)
}

fn env_cap(name: &str) -> Result<Option<u64>> {
    match std::env::var(name) {
        Ok(s) if !s.trim().is_empty() => match s.trim().parse::<u64>() {
            Ok(v) if v >= 1 => Ok(Some(v)),
            _ => Err(EngineError::Invalid(format!(
                "{name} must be a whole number of at least 1, got {s:?}"
            ))),
        },
        _ => Ok(None),
    }
}

/// The caps: [`MAX_VMS_ENV`] and [`MAX_GUEST_MEM_ENV`] when set, else
/// derived from this host's CPUs and RAM.
pub fn limits() -> Result<Limits> {
    let (max_vms, vms_source) = match env_cap(MAX_VMS_ENV)? {
        Some(v) => (v, MAX_VMS_ENV.to_string()),
        None => {
            let cpus = host_cpus();
            (
                VMS_PER_CPU * cpus,
                format!("{VMS_PER_CPU} per CPU of this host's {cpus}; {MAX_VMS_ENV} sets it"),
            )
        }
    };
    let (max_guest_mem_mib, mem_source) = match env_cap(MAX_GUEST_MEM_ENV)? {
        Some(v) => (v, MAX_GUEST_MEM_ENV.to_string()),
        None => {
            let total = host_mem_mib();
            (
                total * GUEST_MEM_PERCENT / 100,
                format!(
                    "{GUEST_MEM_PERCENT}% of this host's {total} MiB; {MAX_GUEST_MEM_ENV} sets it"
                ),
            )
        }
    };
    Ok(Limits {
        max_vms,
        max_guest_mem_mib,
        vms_source,
        mem_source,
    })
}

/// Whether one more VM with `mem_mib` fits beside `running`; the refusal
/// names every running VM and what to do.
pub fn check(running: &[Running], mem_mib: u32, who: &Owner, limits: &Limits) -> Result<()> {
    let used: u64 = running.iter().map(|r| r.mem_mib as u64).sum();
    let why = if running.len() as u64 >= limits.max_vms {
        format!(
            "{} VMs are running and at most {} may run at once ({})",
            running.len(),
            limits.max_vms,
            limits.vms_source
        )
    } else if used + mem_mib as u64 > limits.max_guest_mem_mib {
        format!(
            "its {mem_mib} MiB would bring guest memory to {} MiB, over the cap of {} MiB ({})",
            used + mem_mib as u64,
            limits.max_guest_mem_mib,
            limits.mem_source
        )
    } else {
        return Ok(());
    };
    let list: Vec<String> = running
        .iter()
        .map(|r| format!("{} ({} MiB)", r.owner, r.mem_mib))
        .collect();
    Err(EngineError::Unavailable(format!(
        "cannot start the VM of {who}: {why}. Running now: {}. \
         Wait for a run to end, delete a workspace you no longer need (`pyro workspace delete ID`), \
         ask for less memory (mem_mib), or raise the cap",
        if list.is_empty() {
            "none".to_string()
        } else {
            list.join(", ")
        }
    )))
}

/// A claimed place for one VM: the slot file, locked, and the host-wide
/// claim lock. Hand [`Slot::fd`] to the VMM (it must inherit it) and drop
/// the slot once the VMM has started.
pub struct Slot {
    file: File,
    pub path: PathBuf,
    _claim: lock::Lock,
}

impl Slot {
    /// The descriptor holding the slot's lock, for the VMM to inherit.
    pub fn fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.file.as_raw_fd()
    }

    /// Gives the slot up (the VM did not start).
    pub fn release(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The slot directory.
pub fn slots_dir() -> PathBuf {
    paths::home().join("vms")
}

/// Claims a place for a VM of `who` with `mem_mib` and `vcpus`, or says
/// why there is none.
pub fn reserve(who: &Owner, mem_mib: u32, vcpus: u8) -> Result<Slot> {
    paths::ensure_home()?;
    reserve_in(&slots_dir(), who, mem_mib, vcpus, &limits()?)
}

/// Says early whether a VM of `who` with `mem_mib` would fit now, before
/// a caller spends time preparing it; [`reserve`] decides for good.
pub fn precheck(who: &Owner, mem_mib: u32) -> Result<()> {
    let dir = slots_dir();
    if !dir.is_dir() {
        return check(&[], mem_mib, who, &limits()?);
    }
    let _claim = lock::lock_path(&dir.join(".lock"), "checking VM capacity", CLAIM_WAIT)
        .map_err(|e| EngineError::Unavailable(format!("the VM capacity lock is {e}")))?;
    check(&running_in(&dir), mem_mib, who, &limits()?)
}

/// The VMs holding a slot in `dir` (removing slots nobody holds).
fn running_in(dir: &Path) -> Vec<Running> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        let Ok(mut f) = std::fs::OpenOptions::new().read(true).open(&p) else {
            continue;
        };
        match lock::try_flock(&f) {
            // Its VMM is gone: the slot is free.
            Ok(true) => {
                let _ = std::fs::remove_file(&p);
            }
            Ok(false) => {
                let mut s = String::new();
                let _ = f.read_to_string(&mut s);
                // A slot is written before it is locked, so a held one
                // reads whole; an unreadable one still counts, as a VM
                // of unknown size.
                out.push(serde_json::from_str(&s).unwrap_or(Running {
                    owner: Owner {
                        kind: "unknown".into(),
                        id: p.file_stem().unwrap_or_default().to_string_lossy().into(),
                        name: None,
                    },
                    mem_mib: 0,
                    vcpus: 0,
                }));
            }
            Err(_) => {}
        }
    }
    out.sort_by(|a, b| a.owner.id.cmp(&b.owner.id));
    out
}

fn reserve_in(dir: &Path, who: &Owner, mem_mib: u32, vcpus: u8, limits: &Limits) -> Result<Slot> {
    paths::private_dir(dir)
        .map_err(|e| EngineError::io(format!("creating {}", dir.display()), e))?;
    let claim = lock::lock_path(&dir.join(".lock"), "starting a VM", CLAIM_WAIT)
        .map_err(|e| EngineError::Unavailable(format!("the VM capacity lock is {e}")))?;
    let running = running_in(dir);
    check(&running, mem_mib, who, limits)?;
    let path = dir.join(format!("{}.json", paths::random_id(8)));
    let body = serde_json::to_vec(&Running {
        owner: who.clone(),
        mem_mib,
        vcpus,
    })
    .expect("slots serialize");
    let io = |e| EngineError::io(format!("claiming VM slot {}", path.display()), e);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(paths::PRIVATE_FILE_MODE)
        .open(&path)
        .map_err(io)?;
    let claimed = file
        .write_all(&body)
        .and_then(|_| lock::try_flock(&file))
        .map_err(io);
    match claimed {
        Ok(true) => Ok(Slot {
            file,
            path,
            _claim: claim,
        }),
        Ok(false) | Err(_) => {
            let _ = std::fs::remove_file(&path);
            Err(claimed.err().unwrap_or_else(|| {
                EngineError::Io(format!("VM slot {} is locked", path.display()))
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(vms: u64, mem: u64) -> Limits {
        Limits {
            max_vms: vms,
            max_guest_mem_mib: mem,
            vms_source: "test".into(),
            mem_source: "test".into(),
        }
    }

    fn vm(kind: &str, id: &str, name: Option<&str>, mem: u32) -> Running {
        Running {
            owner: Owner {
                kind: kind.into(),
                id: id.into(),
                name: name.map(String::from),
            },
            mem_mib: mem,
            vcpus: 1,
        }
    }

    #[test]
    fn a_vm_over_either_cap_is_refused_naming_the_running_ones() {
        let running = [
            vm("workspace", "0123456789ab", Some("fix-123"), 2048),
            vm("run", "fedcba987654", None, 1024),
        ];
        let me = Owner::workspace("aaaaaaaaaaaa", None);
        assert!(check(&running, 1024, &me, &limits(3, 4096)).is_ok());
        let e = check(&running, 1024, &me, &limits(2, 8192))
            .unwrap_err()
            .to_string();
        assert!(e.contains("2 VMs are running and at most 2"), "{e}");
        assert!(
            e.contains("workspace 0123456789ab (\"fix-123\") (2048 MiB)")
                && e.contains("one-shot run fedcba987654 (1024 MiB)")
                && e.contains("workspace aaaaaaaaaaaa"),
            "{e}"
        );
        let e = check(&running, 1025, &me, &limits(8, 4096))
            .unwrap_err()
            .to_string();
        assert!(e.contains("4097 MiB, over the cap of 4096 MiB"), "{e}");
        assert!(check(&[], 4096, &me, &limits(1, 4096)).is_ok());
    }

    #[test]
    fn the_default_caps_follow_the_host() {
        let l = limits_from_host();
        assert_eq!(l.max_vms, VMS_PER_CPU * host_cpus());
        assert!(l.max_guest_mem_mib > 0 && l.max_guest_mem_mib < host_mem_mib());
    }

    fn limits_from_host() -> Limits {
        // limits() without the environment variables (not set in tests).
        assert!(std::env::var_os(MAX_VMS_ENV).is_none());
        assert!(std::env::var_os(MAX_GUEST_MEM_ENV).is_none());
        super::limits().unwrap()
    }

    #[test]
    fn slots_count_while_held_and_free_themselves_when_released() {
        let dir = std::env::temp_dir().join(format!("pyro-slots-{}", paths::random_id(4)));
        let l = limits(1, 4096);
        let a = reserve_in(&dir, &Owner::run("r1"), 1024, 1, &l).unwrap();
        let held = a.path.clone();
        // The claim lock is per slot: drop it the way launch does once the
        // VMM runs, keeping the locked slot file open.
        let Slot { file, path, _claim } = a;
        drop(_claim);
        let e = reserve_in(&dir, &Owner::run("r2"), 1024, 1, &l)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("one-shot run r1 (1024 MiB)"), "{e}");
        assert!(path.exists());
        // The holder exits (its descriptor closes): the place is free again
        // and the stale slot is gone.
        drop(file);
        let b = reserve_in(&dir, &Owner::run("r3"), 1024, 1, &l).unwrap();
        assert!(!held.exists());
        b.release();
        std::fs::remove_dir_all(dir).unwrap();
    }
}
