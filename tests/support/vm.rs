//! What a test that boots VMs needs around it: the VMM processes on this
//! machine, the leak check (nothing of a VM outlives the test), and
//! [`VmGuard`], which every VM-backed test holds so that a failure always
//! shows the VMM's own logs and never leaves a VM behind for the next test.
//! Also the disk lock a VMM holds ([`lock_like_a_vmm`]), for tests that
//! fabricate a running VM without booting one.

use super::pyro_home;
use serde_json::Value;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A live `pyro vmm` process.
#[derive(Debug, Clone)]
pub struct Vmm {
    pub pid: i32,
    /// Its `--config` argument (`…/vm.json` in the VM's state directory).
    pub config: PathBuf,
}

/// Takes the lock a VMM holds on its writable disk (an exclusive open
/// file description lock over the whole file, src/vmm/disk_lock.rs), as
/// tests that stand in for a running VMM do; held while `f` is open.
pub fn lock_like_a_vmm(f: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: flock is plain data; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: fcntl on our descriptor with a pointer to a live flock.
    let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
}

/// Whether `pid` exists and is not a zombie (dead, not yet reaped).
pub fn pid_alive(pid: impl Into<i64>) -> bool {
    let pid = pid.into();
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// Every live `pyro vmm` process on this machine, whoever started it.
pub fn vmms() -> Vec<Vmm> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // Gone meanwhile, or a zombie (whose cmdline is empty).
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.len() > 2 && args[0].ends_with("pyro") && args[1] == "vmm" && pid_alive(pid) {
            let config = args
                .iter()
                .position(|a| a == "--config")
                .and_then(|i| args.get(i + 1))
                .map(PathBuf::from)
                .unwrap_or_default();
            found.push(Vmm { pid, config });
        }
    }
    found
}

/// Pids of the VMMs whose config path ends with `suffix`, e.g.
/// `workspaces/ID/vm/vm.json` (whatever spelling of PYRO_HOME started
/// them) or `runs/ID/vm.json`.
pub fn vmm_pids_of(suffix: &str) -> Vec<i32> {
    vmms()
        .into_iter()
        .filter(|v| v.config.to_string_lossy().ends_with(suffix))
        .map(|v| v.pid)
        .collect()
}

/// What a VM left behind: VMM processes, one-shot run directories in
/// `$PYRO_HOME/runs`, Unix sockets under `$PYRO_HOME` or under `extra`.
#[derive(Debug, Default)]
pub struct Leftovers {
    pub vmms: Vec<Vmm>,
    pub runs: Vec<PathBuf>,
    pub sockets: Vec<PathBuf>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.vmms.is_empty() && self.runs.is_empty() && self.sockets.is_empty()
    }
}

/// Looks for [`Leftovers`] now.
pub fn leftovers(extra: &[PathBuf]) -> Leftovers {
    let home = pyro_home();
    let runs = std::fs::read_dir(home.join("runs"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    let mut sockets = Vec::new();
    for dir in std::iter::once(&home).chain(extra) {
        find_sockets(dir, &mut sockets);
    }
    Leftovers {
        vmms: vmms(),
        runs,
        sockets,
    }
}

/// Unix sockets below `dir`, symlinks not followed (the test host's
/// `environments` is one, to a read-only disk).
fn find_sockets(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(t) = e.file_type() else { continue };
        if t.is_socket() {
            out.push(e.path());
        } else if t.is_dir() {
            find_sockets(&e.path(), out);
        }
    }
}

/// The leak check: no `pyro vmm` process runs, no one-shot run left its
/// directory, no socket is left in `$PYRO_HOME`.
pub fn assert_no_leftovers() {
    let left = leftovers(&[]);
    assert!(left.is_empty(), "left behind: {left:#?}");
}

/// The last `n` lines of each VM log in `dir`, on stderr under `title`.
fn print_logs(title: &str, dir: &Path, n: usize) {
    for name in ["vmm.log", "serial.log"] {
        let Ok(text) = std::fs::read_to_string(dir.join(name)) else {
            continue;
        };
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(n)..].join("\n");
        eprintln!("----- {title}: {name} (last {n} lines) -----\n{tail}");
    }
}

/// Held by every test that boots VMs, first thing, so that it is dropped
/// last (after the test's MCP sessions and temporary directories). When
/// dropped, passed or failed:
///
/// 1. after a failure, prints the end of the VMM log and guest console of
///    every workspace, every one-shot run still on disk and every VM
///    directory the test [`watch`](VmGuard::watch)ed: what the teardown
///    would otherwise take with it;
/// 2. deletes every workspace, so nothing is left for what runs next in
///    the same `$PYRO_HOME`;
/// 3. checks for [`Leftovers`], then stops the VMMs it found whose state
///    is in `$PYRO_HOME` or a watched directory (and their run
///    directories): a leak fails the test that caused it, not the next.
pub struct VmGuard {
    pyro: PathBuf,
    watched: Vec<PathBuf>,
}

impl VmGuard {
    pub fn new() -> VmGuard {
        VmGuard::with_binary(super::pyro())
    }

    /// A guard tearing down through `pyro` (the benchmarks are given the
    /// binary to measure).
    pub fn with_binary(pyro: &Path) -> VmGuard {
        VmGuard {
            pyro: pyro.to_path_buf(),
            watched: Vec::new(),
        }
    }

    /// Also covers `dir`, a VM state directory outside `$PYRO_HOME` (a
    /// test that starts `pyro vmm` itself): its logs are shown after a
    /// failure, its sockets and VMM count as leftovers. Hold the directory
    /// longer than the guard, so it is still there when the guard drops.
    pub fn watch(&mut self, dir: &Path) {
        self.watched.push(dir.to_path_buf());
    }

    fn workspace_ids(&self) -> Vec<String> {
        let Ok(out) = Command::new(&self.pyro)
            .args(["workspace", "list", "--json"])
            .output()
        else {
            return Vec::new();
        };
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        v["workspaces"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w["workspace_id"].as_str().map(String::from))
            .collect()
    }

    fn print_all_logs(&self) {
        let home = pyro_home();
        for id in self.workspace_ids() {
            print_logs(
                &format!("workspace {id}"),
                &home.join("workspaces").join(&id).join("vm"),
                40,
            );
        }
        for run in std::fs::read_dir(home.join("runs"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = run.file_name().to_string_lossy().into_owned();
            print_logs(&format!("run {name}"), &run.path(), 40);
        }
        for dir in &self.watched {
            print_logs(&dir.display().to_string(), dir, 40);
        }
    }

    /// Stops the leaked VMMs that are this test's (their state is in
    /// `$PYRO_HOME` or a watched directory) and removes their run
    /// directories; another user's VMMs on a shared machine are only
    /// reported.
    fn stop_leaked(&self, left: &Leftovers) {
        let home = pyro_home();
        let ours = |p: &Path| {
            p.starts_with(&home)
                || p.to_string_lossy().contains("/workspaces/")
                || p.to_string_lossy().contains("/runs/")
                || self.watched.iter().any(|w| p.starts_with(w))
        };
        for v in left.vmms.iter().filter(|v| ours(&v.config)) {
            // SAFETY: kill(2) with a pid and a signal number; it touches
            // no memory of ours.
            unsafe { libc::kill(v.pid, libc::SIGKILL) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while pid_alive(v.pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Some(run) = v
                .config
                .parent()
                .filter(|d| d.starts_with(home.join("runs")))
            {
                let _ = std::fs::remove_dir_all(run);
            }
        }
    }
}

impl Default for VmGuard {
    fn default() -> VmGuard {
        VmGuard::new()
    }
}

impl Drop for VmGuard {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if failed {
            self.print_all_logs();
        }
        for id in self.workspace_ids() {
            let _ = Command::new(&self.pyro)
                .args(["workspace", "delete", &id])
                .output();
        }
        let left = leftovers(&self.watched);
        if left.is_empty() {
            return;
        }
        self.stop_leaked(&left);
        if failed {
            // Panicking again would abort the test binary.
            eprintln!("----- also left behind (now stopped): {left:#?}");
        } else {
            panic!("the test left behind (now stopped): {left:#?}");
        }
    }
}
