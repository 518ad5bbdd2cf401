//! Starting, reaching and stopping one VMM process.
//!
//! The VMM is this same binary re-executed as `pyro vmm --config FILE`,
//! in its own session, with its sockets and logs in the VM's state
//! directory, under umask 077 (everything it creates is private). It
//! inherits the locked capacity slot it was started under (see
//! `capacity`). Ephemeral VMs also get `PR_SET_PDEATHSIG`, so they cannot
//! outlive the `pyro` process that started them.

use super::agent;
pub use super::cancel::CancelToken;
use super::capacity::{self, Owner};
use super::environments::Installed;
use super::{EngineError, Result};
use crate::vmm::config::{DiskConfig, VmConfig, VsockConfig};
use pyro_proto::{ExecRequest, ExecResult, Request, Response};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const CMDLINE: &str = "console=ttyS0 reboot=k panic=1 pci=off nomodules quiet \
    i8042.noaux i8042.nomux i8042.dumbkbd random.trust_cpu=on \
    root=/dev/vda ro rootfstype=ext4 init=/sbin/pyro-init";
/// Unix socket paths must fit in sockaddr_un.
const MAX_SOCKET_PATH: usize = 100;

pub struct VmOptions {
    pub vcpus: u8,
    pub mem_mib: u32,
    /// Tie the VMM's life to this process (one-shot runs).
    pub attached: bool,
    /// Whose VM it is (named when the host's capacity is exhausted).
    pub owner: Owner,
}

pub struct VmProcess {
    pub pid: i32,
    child: Option<Child>,
    pub vsock: PathBuf,
    pub serial_log: PathBuf,
    pub vmm_log: PathBuf,
    /// The writable disk, which the VMM holds locked while it runs.
    disk: PathBuf,
}

/// VMs to kill and directories to remove if this process is interrupted.
static EPHEMERAL: Mutex<Vec<(i32, PathBuf)>> = Mutex::new(Vec::new());

/// Kills every ephemeral VM this process started and removes its state.
/// Called from the signal thread on Ctrl-C / SIGTERM.
pub fn kill_ephemeral() {
    let list = std::mem::take(&mut *EPHEMERAL.lock().unwrap());
    for (pid, dir) in list {
        // SAFETY: kill and waitpid take no pointers we own.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn vmm_binary() -> Result<PathBuf> {
    std::env::current_exe().map_err(|e| EngineError::io("locating the pyro binary", e))
}

impl VmProcess {
    /// Writes the VMM config into `dir` and starts the VMM. `dir` must
    /// already hold the VM's writable disk as `scratch.ext4`.
    pub fn launch(env: &Installed, dir: &Path, opts: &VmOptions) -> Result<VmProcess> {
        let vsock = dir.join("vsock.sock");
        let control = dir.join("control.sock");
        if control.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(EngineError::Invalid(format!(
                "state directory {} is too long for Unix sockets; set PYRO_HOME to a shorter path",
                dir.display()
            )));
        }
        let cfg = VmConfig {
            kernel: env.kernel.clone(),
            cmdline: match std::env::var("PYRO_GUEST_CMDLINE_EXTRA") {
                // A debugging knob: e.g. `loglevel=7 printk.time=1`.
                Ok(extra) if !extra.trim().is_empty() => format!("{CMDLINE} {}", extra.trim()),
                _ => CMDLINE.to_string(),
            },
            vcpus: opts.vcpus,
            mem_mib: opts.mem_mib,
            disks: vec![
                DiskConfig {
                    path: env.rootfs.clone(),
                    read_only: true,
                    flush: false,
                },
                DiskConfig {
                    path: dir.join("scratch.ext4"),
                    read_only: false,
                    // Ephemeral VMs' disks are discarded: skip flushes.
                    flush: !opts.attached,
                },
            ],
            vsock: Some(VsockConfig {
                guest_cid: 3,
                uds_path: vsock.clone(),
            }),
            rng: true,
            serial_log: dir.join("serial.log"),
            control_socket: Some(control),
        };
        cfg.validate()
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        let cfg_path = dir.join("vm.json");
        let body = serde_json::to_vec_pretty(&cfg).expect("config serializes");
        super::paths::write_atomic(&cfg_path, &body)
            .map_err(|e| EngineError::io("writing VM config", e))?;
        let vmm_log = dir.join("vmm.log");
        let log = super::paths::create_private(&vmm_log)
            .map_err(|e| EngineError::io("creating VMM log", e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| EngineError::io("creating VMM log", e))?;
        let attached = opts.attached;
        let binary = vmm_binary()?;
        // Checked and claimed last, right before the start.
        let slot = capacity::reserve(&opts.owner, opts.mem_mib, opts.vcpus)?;
        let slot_fd = slot.fd();
        let mut cmd = Command::new(binary);
        cmd.arg("vmm")
            .arg("--config")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                libc::umask(0o077);
                // The VMM keeps the slot's lock for its whole life.
                if libc::fcntl(slot_fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if attached {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                }
                Ok(())
            });
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                slot.release();
                return Err(EngineError::io("starting the VMM", e));
            }
        };
        // The child holds the slot now; our descriptor and the claim go.
        drop(slot);
        let pid = child.id() as i32;
        if attached {
            EPHEMERAL.lock().unwrap().push((pid, dir.to_path_buf()));
        }
        Ok(VmProcess {
            pid,
            child: Some(child),
            vsock,
            serial_log: dir.join("serial.log"),
            vmm_log,
            disk: dir.join("scratch.ext4"),
        })
    }

    pub fn is_alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            // SAFETY: signal 0 only checks for existence.
            None => unsafe { libc::kill(self.pid, 0) == 0 },
        }
    }

    /// Waits until the guest agent answers a ping; returns the guest's
    /// uptime at that moment.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<u64> {
        let start = Instant::now();
        let deadline = start + timeout;
        // A connection request made before the guest's vsock driver is
        // up, or while it starts (it drops its own reset until it is
        // registered), is never answered, so an attempt waits for the
        // handshake only briefly. Measured in the test host: with a 2 s
        // wait, `pyro run` often reached the agent 2 s after it listened.
        // Once the boot is slow anyway, the wait doubles after each
        // silent attempt, for a host too busy to answer in 100 ms.
        let mut handshake = Duration::from_millis(100);
        loop {
            if super::cancel::cancelled() {
                return Err(super::cancel::cancelled_error("waiting for the VM to boot"));
            }
            if !self.is_alive() {
                if crate::vmm::disk_lock::is_locked(&self.disk).unwrap_or(false) {
                    // It refused to start: another VMM runs on the disk.
                    return Err(EngineError::Unavailable(format!(
                        "the VMM did not start: {}",
                        last_line(&self.vmm_log)
                    )));
                }
                return Err(EngineError::Guest(format!(
                    "the VM stopped while booting.\n{}",
                    self.diagnostics()
                )));
            }
            if self.vsock.exists() {
                match ping(&self.vsock, handshake) {
                    Ok(uptime_ms) => return Ok(uptime_ms),
                    Err(e)
                        if (e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut)
                            && start.elapsed() > PATIENT_AFTER =>
                    {
                        handshake = (handshake * 2).min(Duration::from_secs(2));
                    }
                    Err(_) => {}
                }
            }
            if Instant::now() >= deadline {
                return Err(EngineError::Guest(format!(
                    "the guest agent did not answer within {} s.\n{}",
                    timeout.as_secs(),
                    self.diagnostics()
                )));
            }
            std::thread::sleep(Duration::from_millis(3));
        }
    }

    pub fn exec(&mut self, req: &ExecRequest, host_timeout: Duration) -> Result<ExecResult> {
        match agent::call(&self.vsock, &Request::Exec(req.clone()), host_timeout) {
            Ok(Response::Exec(r)) => Ok(r),
            Ok(Response::Error { message }) => {
                Err(EngineError::Guest(format!("guest agent error: {message}")))
            }
            Ok(other) => Err(EngineError::Guest(format!(
                "unexpected agent answer: {other:?}"
            ))),
            Err(e) => {
                let alive = self.is_alive();
                Err(EngineError::Guest(format!(
                    "lost the guest agent during exec ({e}){}.\n{}",
                    if alive { "" } else { "; the VM is gone" },
                    self.diagnostics()
                )))
            }
        }
    }

    /// Last lines of the VMM log and guest console, for error messages.
    pub fn diagnostics(&self) -> String {
        format!(
            "VMM log ({}):\n{}\nguest console ({}):\n{}",
            self.vmm_log.display(),
            tail_lines(&self.vmm_log, 10),
            self.serial_log.display(),
            tail_lines(&self.serial_log, 15)
        )
    }

    /// Stops the VM at once (the disk is not flushed) and reaps it.
    pub fn kill(&mut self) {
        // SAFETY: kill takes no pointers.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        EPHEMERAL.lock().unwrap().retain(|(p, _)| *p != self.pid);
    }
}

/// How much of a log's end [`tail_lines`] reads: the guest writes the
/// console, so the file is read from its end, never whole.
const TAIL_BYTES: u64 = 16 * 1024;

/// The last `n` lines of the log at `path` (from its last [`TAIL_BYTES`];
/// lines longer than that are cut), lossily decoded.
pub fn tail_lines(path: &Path, n: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.seek(SeekFrom::End(0)).unwrap_or(0);
    let from = len.saturating_sub(TAIL_BYTES);
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(from)).is_err() || f.take(TAIL_BYTES).read_to_end(&mut buf).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&buf);
    // A read that starts mid-line drops that partial line (unless it is
    // all there is).
    let text = match text.split_once('\n') {
        Some((_, rest)) if from > 0 && !rest.is_empty() => rest,
        _ => &text,
    };
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The last line of a log, for a one-line error (read from its tail, as
/// [`tail_lines`] does: the log may be large).
fn last_line(p: &Path) -> String {
    let s = tail_lines(p, 1);
    let line = s.trim();
    line.strip_prefix("pyro-vmm: ").unwrap_or(line).to_string()
}

/// How long `wait_ready` keeps its handshake wait short.
const PATIENT_AFTER: Duration = Duration::from_secs(5);

/// One readiness check: the vsock handshake within `handshake`, then a
/// ping answered within 2 s; returns the guest's uptime.
fn ping(vsock: &std::path::Path, handshake: Duration) -> std::io::Result<u64> {
    let mut s = agent::connect(vsock, handshake)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    match agent::exchange(&mut s, &Request::Ping)? {
        Response::Pong { uptime_ms, .. } => Ok(uptime_ms),
        other => Err(std::io::Error::other(format!(
            "unexpected answer to ping: {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_read_a_log_from_its_end_only() {
        let p =
            std::env::temp_dir().join(format!("pyro-tail-{}", super::super::paths::random_id(4)));
        assert_eq!(tail_lines(&p, 3), "");
        // 64 MiB of console in one line, then three short ones.
        let mut f = std::fs::File::create(&p).unwrap();
        use std::io::Write;
        f.write_all(&vec![b'a'; 64 << 20]).unwrap();
        f.write_all(b"\none\ntwo\nthree\n").unwrap();
        assert_eq!(tail_lines(&p, 2), "two\nthree");
        assert_eq!(tail_lines(&p, 3), "one\ntwo\nthree");
        // The partial line the read starts in is left out...
        assert_eq!(tail_lines(&p, 9), "one\ntwo\nthree");
        // ...unless it is all there is: then it is cut, not read whole.
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&vec![b'b'; 1 << 20]).unwrap();
        f.write_all(b"\n").unwrap();
        assert_eq!(tail_lines(&p, 9).len() as u64, TAIL_BYTES - 1);
        std::fs::write(&p, "only\n").unwrap();
        assert_eq!(tail_lines(&p, 5), "only");
        std::fs::remove_file(&p).unwrap();
    }
}
