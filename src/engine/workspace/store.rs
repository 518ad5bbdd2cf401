//! Workspace metadata on disk and the lock that serializes operations.
//!
//! Layout of `$PYRO_HOME/workspaces/<id>/` (directory mode 0700):
//!
//! | path | what |
//! | --- | --- |
//! | `workspace.json` | [`Record`], written durably and atomically, mode 0600 |
//! | `workspace.json.bak` | the record as it was before the last save |
//! | `activity` | empty; its mtime is the end of the latest operation |
//! | `lock` | flock(2) target; its text says who holds it |
//! | `vm/` | the VM: `scratch.ext4` (writable disk), `vm.json`, sockets, logs |
//! | `baseline.tar`, `baseline.json` | the seeded tree and its manifest |
//! | `commands/NNNNNN.json` | one executed command with its output |
//! | `events.jsonl` | review events, one JSON object per line |
//!
//! A record that cannot be read is never hidden and never a reason to
//! delete anything: it is restored from `workspace.json.bak`, else rebuilt
//! from `vm/vm.json` (environment, vCPUs, memory) with defaults for what
//! only the record knew, else listed as `damaged` with the reason.

use super::super::lock::{lock_path, Lock};
use super::super::paths;
use super::expiry::Evidence;
use super::results::DamagedItem;
use super::{now, EngineError, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const LAYOUT_VERSION: u32 = 1;
/// How long an operation waits for another one on the same workspace.
pub const LOCK_WAIT: Duration = Duration::from_secs(600);
/// The record's file name in a workspace directory.
pub const RECORD_FILE: &str = "workspace.json";
/// The previous good record, kept by every save.
pub const BACKUP_FILE: &str = "workspace.json.bak";
/// The file whose modification time stamps the latest activity.
pub const ACTIVITY_FILE: &str = "activity";

fn default_retention() -> u64 {
    super::expiry::DEFAULT_RETENTION_SECONDS
}

/// Where a workspace is in its life, as records store it and results
/// show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkspaceState {
    /// Being created (its creator holds its lock); not usable yet.
    Creating,
    /// Its VM runs.
    Started,
    /// Its VM is not running; the next operation that needs it boots it.
    Stopped,
    /// Stopped by the reaper after `ttl_seconds` without activity; its
    /// disk is kept until its retention ends.
    Expired,
    /// Its metadata cannot be read or rebuilt (never stored; see
    /// [`Damaged`]).
    Damaged,
}

impl WorkspaceState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkspaceState::Creating => "creating",
            WorkspaceState::Started => "started",
            WorkspaceState::Stopped => "stopped",
            WorkspaceState::Expired => "expired",
            WorkspaceState::Damaged => "damaged",
        }
    }
}

impl std::fmt::Display for WorkspaceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    /// Seconds without activity after which the VM is stopped (`expired`).
    pub ttl_seconds: u64,
    pub created_at: f64,
    /// `last_activity_at + ttl_seconds`.
    pub expires_at: f64,
    /// `creating`, `started`, `stopped` or `expired`.
    pub state: WorkspaceState,
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
    /// Seconds an expired workspace keeps its disk before it may be deleted.
    #[serde(default = "default_retention")]
    pub retention_seconds: u64,
    /// When the reaper stopped it for inactivity (wall clock).
    #[serde(default)]
    pub expired_at: Option<f64>,
    /// The time since expiry as the reaper measured it itself.
    #[serde(default)]
    pub expiry_evidence: Option<Evidence>,
    /// Set when this record was restored or rebuilt because
    /// `workspace.json` was damaged: how. Never saved.
    #[serde(skip)]
    pub recovered: Option<String>,
}

impl Record {
    /// The record of a workspace created at `created_at` that has done
    /// nothing yet: `creating`, the default shape (vCPUs, memory, TTL,
    /// retention), no name, labels, seed, VMM or history, activity not yet
    /// stamped. Its one definition: create, the rebuild from `vm.json` and
    /// the tests set what they know on top of it.
    pub fn new(
        workspace_id: &str,
        environment: &str,
        environment_version: &str,
        created_at: f64,
    ) -> Record {
        use super::create::{DEFAULT_MEM_MIB, DEFAULT_TTL_SECONDS, DEFAULT_VCPU_COUNT};
        Record {
            layout_version: LAYOUT_VERSION,
            workspace_id: workspace_id.to_string(),
            name: None,
            labels: BTreeMap::new(),
            environment: environment.to_string(),
            environment_version: environment_version.to_string(),
            vcpu_count: DEFAULT_VCPU_COUNT,
            mem_mib: DEFAULT_MEM_MIB,
            ttl_seconds: DEFAULT_TTL_SECONDS,
            created_at,
            expires_at: 0.0,
            state: WorkspaceState::Creating,
            vmm_pid: None,
            last_error: None,
            workspace_seed: Value::Null,
            reset_count: 0,
            last_reset_at: None,
            restart_count: 0,
            last_activity_at: 0.0,
            created_disk_bytes: 0,
            retention_seconds: default_retention(),
            expired_at: None,
            expiry_evidence: None,
            recovered: None,
        }
    }

    /// Records activity at `at`: the TTL counts from the last activity.
    pub fn stamp_activity(&mut self, at: f64) {
        self.last_activity_at = at;
        self.expires_at = at + self.ttl_seconds as f64;
    }
}

/// A workspace directory whose record could neither be read nor rebuilt.
#[derive(Debug, Clone, PartialEq)]
pub struct Damaged {
    pub workspace_id: String,
    pub reason: String,
}

impl Damaged {
    /// The error an operation on it fails with: what is wrong, that
    /// nothing was deleted, and where the files are.
    pub fn error(&self) -> EngineError {
        let d = dir(&self.workspace_id);
        EngineError::Unavailable(format!(
            "workspace {} cannot be used: {}. Nothing was deleted: /workspace is on its disk image {} \
             (ext4; `mount -o loop,ro` it to copy files out), with the seed in {}",
            self.workspace_id,
            self.reason,
            d.join("vm/scratch.ext4").display(),
            d.join("baseline.tar").display()
        ))
    }

    /// Its entry in `workspace list`.
    pub fn describe(&self) -> DamagedItem {
        DamagedItem {
            workspace_id: self.workspace_id.clone(),
            name: None,
            labels: BTreeMap::new(),
            environment: None,
            state: WorkspaceState::Damaged,
            damage: self.reason.clone(),
            last_error: self.error().to_string(),
        }
    }
}

/// What one workspace directory holds.
#[derive(Debug)]
pub enum Found {
    /// A readable record (possibly restored or rebuilt: `recovered`).
    Record(Box<Record>),
    Damaged(Damaged),
    /// No record and nothing to rebuild one from: a creation that has not
    /// written its first record yet (or died before it did).
    Empty,
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
    paths::private_dir(p).map_err(|e| EngineError::io(format!("creating {}", p.display()), e))
}

pub fn not_found(id: &str) -> EngineError {
    let mut msg = format!(
        "workspace {id:?} does not exist (it was deleted, explicitly or when its retention period ended, or never created); `pyro workspace list` shows the existing ones"
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

fn parse(bytes: &[u8]) -> std::result::Result<Record, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("it is empty".into());
    }
    serde_json::from_slice(bytes).map_err(|e| format!("it is not a valid record: {e}"))
}

/// Why the file at `p` is not a record (missing, empty, invalid).
fn read_record(p: &Path) -> std::result::Result<Record, String> {
    match std::fs::read(p) {
        Ok(b) => parse(&b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("it is missing".into()),
        Err(e) => Err(format!("it cannot be read: {e}")),
    }
}

/// Stamps activity at `at` (wall-clock seconds) on workspace `id`: the
/// modification time of its `activity` file, which every read of the
/// record takes into account. Each operation ends with one, so it costs no
/// record write and no flush: a stamp lost in a crash only makes the
/// workspace expire earlier, which loses nothing.
pub fn stamp_activity(id: &str, at: f64) -> Result<()> {
    let p = dir(id).join(ACTIVITY_FILE);
    let when = std::time::UNIX_EPOCH + Duration::from_secs_f64(at.max(0.0));
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(paths::PRIVATE_FILE_MODE)
        .open(&p)
        .and_then(|f| f.set_modified(when))
        .map_err(|e| EngineError::io(format!("stamping {}", p.display()), e))
}

/// The latest activity stamp of workspace `id`, if any.
fn activity_stamp(id: &str) -> Option<f64> {
    let t = std::fs::metadata(dir(id).join(ACTIVITY_FILE))
        .ok()?
        .modified()
        .ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64())
}

/// Reads workspace directory `id`, restoring or rebuilding a damaged
/// record in memory (the next save writes it back). The record's activity
/// includes the latest stamp.
pub fn find(id: &str) -> Found {
    let mut found = find_record(id);
    if let (Found::Record(r), Some(t)) = (&mut found, activity_stamp(id)) {
        if t > r.last_activity_at {
            r.stamp_activity(t);
        }
    }
    found
}

fn find_record(id: &str) -> Found {
    let d = dir(id);
    let main = d.join(RECORD_FILE);
    let why = match read_record(&main) {
        Ok(r) => return Found::Record(Box::new(r)),
        Err(why) => why,
    };
    let bak = d.join(BACKUP_FILE);
    let has_vm_config = d.join("vm/vm.json").is_file();
    if why == "it is missing" && !bak.exists() && !has_vm_config {
        return Found::Empty;
    }
    let what = format!("its metadata {} is damaged ({why})", main.display());
    if let Ok(mut r) = read_record(&bak) {
        if r.workspace_id == id {
            r.recovered = Some(format!(
                "{what}; restored from {BACKUP_FILE}, the record as it was one save earlier"
            ));
            return Found::Record(Box::new(r));
        }
    }
    match rebuild(id) {
        Ok(r) => Found::Record(Box::new(r)),
        Err(e) => Found::Damaged(Damaged {
            workspace_id: id.to_string(),
            reason: format!("{what} and cannot be rebuilt: {e}"),
        }),
    }
}

/// A record rebuilt from `vm/vm.json`: environment, vCPUs and memory from
/// the VM config, defaults for the rest (name, labels, TTL, counters).
fn rebuild(id: &str) -> std::result::Result<Record, String> {
    use crate::engine::environments;
    let d = dir(id);
    let cfg_path = d.join("vm/vm.json");
    let cfg: Value = std::fs::read(&cfg_path)
        .map_err(|e| format!("no usable {} ({e})", cfg_path.display()))
        .and_then(|b| {
            serde_json::from_slice(&b)
                .map_err(|e| format!("{} is invalid ({e})", cfg_path.display()))
        })?;
    let kernel = PathBuf::from(cfg["kernel"].as_str().unwrap_or_default());
    let env_dir = kernel
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let env = environments::CATALOG
        .iter()
        .find(|e| environments::slug(e.name) == env_dir)
        .ok_or_else(|| {
            format!(
                "{} names kernel {}, which is no known environment's",
                cfg_path.display(),
                kernel.display()
            )
        })?;
    let vcpus = cfg["vcpus"].as_u64().filter(|v| (1..=32).contains(v));
    let mem = cfg["mem_mib"]
        .as_u64()
        .filter(|m| (256..=65536).contains(m));
    let (Some(vcpus), Some(mem)) = (vcpus, mem) else {
        return Err(format!(
            "{} has no valid vcpus and mem_mib",
            cfg_path.display()
        ));
    };
    let created_at = ["baseline.json", "vm"]
        .iter()
        .filter_map(|f| std::fs::metadata(d.join(f)).ok()?.modified().ok())
        .filter_map(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|t| t.as_secs_f64())
        .next()
        .unwrap_or_else(now);
    let mut r = Record {
        vcpu_count: vcpus as u8,
        mem_mib: mem as u32,
        // Whether its VMM still runs is found out by the caller.
        state: WorkspaceState::Stopped,
        workspace_seed: json!({"mode": "unknown (metadata rebuilt)", "destination": super::GUEST_ROOT}),
        ..Record::new(id, env.name, env.version, created_at)
    };
    // A rebuilt workspace gets a full TTL from now to be noticed.
    r.stamp_activity(now());
    let main = d.join(RECORD_FILE);
    let why = read_record(&main).err().unwrap_or_default();
    r.recovered = Some(format!(
        "its metadata {} was damaged ({why}) and had no usable {BACKUP_FILE}; rebuilt from vm/vm.json: \
         environment, vCPUs and memory are right, name, labels, TTL and counters are defaults",
        main.display()
    ));
    Ok(r)
}

pub fn load(id: &str) -> Result<Record> {
    if !valid_id(id) {
        return Err(not_found(id));
    }
    paths::check_home()?;
    if !dir(id).is_dir() {
        return Err(not_found(id));
    }
    match find(id) {
        Found::Record(r) => Ok(*r),
        Found::Damaged(d) => Err(d.error()),
        Found::Empty => Err(EngineError::Unavailable(format!(
            "workspace {id} is still being created; retry in a moment"
        ))),
    }
}

/// Saves the record durably: the previous good record becomes
/// `workspace.json.bak` (a hard link, no copy), then the new one replaces
/// `workspace.json` through [`paths::write_atomic`].
pub fn save(r: &Record) -> Result<()> {
    let d = dir(&r.workspace_id);
    let p = d.join(RECORD_FILE);
    // Only a record that reads back is worth keeping: a damaged one must
    // never replace the good backup it was restored from.
    if read_record(&p).is_ok() {
        let tmp = d.join(format!(".{BACKUP_FILE}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        if std::fs::hard_link(&p, &tmp).is_ok() {
            // Made durable by the directory sync of the write below.
            let _ = std::fs::rename(&tmp, d.join(BACKUP_FILE));
        }
    }
    let body = serde_json::to_vec_pretty(r).expect("records serialize");
    paths::write_atomic(&p, &body)
        .map_err(|e| EngineError::io(format!("writing {}", p.display()), e))
}

/// Every workspace directory's record (restored or rebuilt ones
/// included) and the damaged ones, each sorted by id. Directories without
/// metadata (a create in progress) are skipped.
pub fn scan() -> Result<(Vec<Record>, Vec<Damaged>)> {
    let mut records = Vec::new();
    let mut damaged = Vec::new();
    paths::check_home()?;
    let rd = match std::fs::read_dir(root()) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((records, damaged)),
        Err(e) => return Err(EngineError::io("listing workspaces", e)),
    };
    for ent in rd.flatten() {
        let name = ent.file_name().to_string_lossy().into_owned();
        if !valid_id(&name) || !ent.path().is_dir() {
            continue;
        }
        match find(&name) {
            Found::Record(r) => records.push(*r),
            Found::Damaged(d) => damaged.push(d),
            Found::Empty => {}
        }
    }
    records.sort_by(|a, b| a.workspace_id.cmp(&b.workspace_id));
    damaged.sort_by(|a, b| a.workspace_id.cmp(&b.workspace_id));
    Ok((records, damaged))
}

/// Every readable (or restored) record, sorted by id.
pub fn list_records() -> Result<Vec<Record>> {
    Ok(scan()?.0)
}

/// A plausible record, for tests.
#[cfg(test)]
pub fn sample_record(id: &str) -> Record {
    let mut r = Record {
        name: Some("sample".into()),
        ttl_seconds: 600,
        state: WorkspaceState::Started,
        ..Record::new(id, "debian:12", "1.0.0", 1_795_996_800.0)
    };
    r.stamp_activity(r.created_at);
    r
}

/// Locks workspace `id` for operation `what`.
pub fn lock(id: &str, what: &str) -> Result<Lock> {
    if !valid_id(id) {
        return Err(not_found(id));
    }
    paths::check_home()?;
    if !dir(id).is_dir() {
        return Err(not_found(id));
    }
    lock_path(&dir(id).join("lock"), what, LOCK_WAIT)
        .map_err(|e| EngineError::Unavailable(format!("workspace {id} is {e}")))
}

/// Locks workspace `id` only if nobody holds it.
pub fn try_lock(id: &str, what: &str) -> Option<Lock> {
    if !dir(id).is_dir() {
        return None;
    }
    lock_path(&dir(id).join("lock"), what, Duration::ZERO).ok()
}

/// The store-wide lock: taken while names are checked and new workspaces
/// registered, so two creates cannot claim one name.
pub fn lock_store() -> Result<Lock> {
    paths::ensure_home()?;
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
    fn empty_and_invalid_records_are_told_apart_from_missing_ones() {
        assert_eq!(parse(b"").unwrap_err(), "it is empty");
        assert_eq!(parse(b" \n").unwrap_err(), "it is empty");
        assert!(parse(b"{\"layout_version\": 1, \"workspace_")
            .unwrap_err()
            .contains("not a valid record"));
        let missing = std::env::temp_dir().join(format!("pyro-none-{}", paths::random_id(4)));
        assert_eq!(read_record(&missing).unwrap_err(), "it is missing");
    }
}
