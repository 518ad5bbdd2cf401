//! pyro's virtual machine monitor: one process per VM (`pyro vmm --config
//! FILE`, [`main`]), composed from the rust-vmm crates. It claims the
//! disks first (`claim`), then [`run`] builds the VM from a [`VmConfig`]
//! in named steps (`vm`), starts the vCPU threads and serves devices from
//! one event loop (disks on I/O threads of their own) until the guest
//! resets, a signal arrives, or the control socket asks it to stop
//! ([`VmExit`]).

pub mod boot;
mod claim;
pub mod config;
pub mod control;
pub mod cpu;
pub mod devices;
pub mod disk_lock;
mod event_loop;
mod exit;
pub mod layout;
pub mod mptable;
mod vcpu;
mod vm;

use claim::{claim_disks, DiskClaim};
use config::VmConfig;
use event_loop::EventLoopError;
pub use exit::VmExit;
use std::fmt;
use std::path::Path;
use vcpu::VcpuError;
use vm::{DeviceError, Vm, VmError};

/// Why the VMM could not build or serve the VM: one variant per layer.
#[derive(Debug)]
pub enum VmmError {
    Signals(std::io::Error),
    Vm(VmError),
    Device(DeviceError),
    Boot(boot::BootError),
    Vcpu(VcpuError),
    EventLoop(EventLoopError),
}

impl fmt::Display for VmmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmmError::Signals(e) => write!(f, "blocking signals: {e}"),
            VmmError::Vm(e) => write!(f, "{e}"),
            VmmError::Device(e) => write!(f, "{e}"),
            VmmError::Boot(e) => write!(f, "{e}"),
            VmmError::Vcpu(e) => write!(f, "{e}"),
            VmmError::EventLoop(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for VmmError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            VmmError::Signals(e) => Some(e),
            VmmError::Vm(e) => Some(e),
            VmmError::Device(e) => Some(e),
            VmmError::Boot(e) => Some(e),
            VmmError::Vcpu(e) => Some(e),
            VmmError::EventLoop(e) => Some(e),
        }
    }
}

impl From<VmError> for VmmError {
    fn from(e: VmError) -> Self {
        VmmError::Vm(e)
    }
}

impl From<DeviceError> for VmmError {
    fn from(e: DeviceError) -> Self {
        VmmError::Device(e)
    }
}

impl From<boot::BootError> for VmmError {
    fn from(e: boot::BootError) -> Self {
        VmmError::Boot(e)
    }
}

impl From<VcpuError> for VmmError {
    fn from(e: VcpuError) -> Self {
        VmmError::Vcpu(e)
    }
}

impl From<EventLoopError> for VmmError {
    fn from(e: EventLoopError) -> Self {
        VmmError::EventLoop(e)
    }
}

/// Exit status of a VMM given a config it cannot read.
pub const EXIT_BAD_CONFIG: i32 = 2;

/// The VMM process: reads the config at `config`, claims the disks, runs
/// the VM and logs how it ended (the engine shows the log's last line when
/// a VM ends unexpectedly). Returns the process's exit status: 0 however
/// the VM ended, [`EXIT_BAD_CONFIG`], [`disk_lock::EXIT_DISK_BUSY`], or 1
/// when the VM could not be built or served.
pub fn main(config: &Path) -> i32 {
    let cfg = match VmConfig::read(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pyro-vmm: bad config {}: {e}", config.display());
            return EXIT_BAD_CONFIG;
        }
    };
    // The disks first: a VMM that cannot have its disk to itself must not
    // touch KVM or the VM's sockets (another VMM's, while it runs).
    let claim = match claim_disks(&cfg) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pyro-vmm: {e}");
            return e.exit_code();
        }
    };
    match run(&cfg, claim) {
        Ok(exit) => {
            eprintln!("pyro-vmm: {exit}");
            0
        }
        Err(e) => {
            eprintln!("pyro-vmm: {e}");
            1
        }
    }
}

/// Builds and runs the VM on the disks `claim` holds; returns how it ended.
pub fn run(cfg: &VmConfig, claim: DiskClaim) -> Result<VmExit, VmmError> {
    let t0 = std::time::Instant::now();
    // Before any thread starts: every thread inherits the blocked mask, so
    // the stop signals reach only the event loop's signalfd.
    let signals = event_loop::block_signals().map_err(VmmError::Signals)?;
    let mut vm = Vm::new(cfg.mem_mib)?;
    let legacy = vm.add_legacy_devices(&cfg.serial_log)?;
    for (i, (disk, file)) in cfg.disks.iter().zip(&claim.files).enumerate() {
        vm.add_block_device(i, disk, file)?;
    }
    let vsock_path = match &cfg.vsock {
        Some(v) => Some(vm.add_vsock_device(v)?),
        None => None,
    };
    if cfg.rng {
        vm.add_rng_device()?;
    }
    let entry = vm.load_kernel(&cfg.kernel, &cfg.cmdline, cfg.vcpus)?;
    let loaded_ms = t0.elapsed().as_millis();
    let exits = vm.start_vcpus(cfg.vcpus, entry, &legacy.ports)?;
    let started_ms = t0.elapsed().as_millis();
    // Phase times help tell VMM overhead from guest boot time in the log.
    eprintln!(
        "pyro-vmm: timing: kernel loaded at {loaded_ms} ms, vcpus running at {started_ms} ms"
    );

    let outcome = event_loop::run(event_loop::Loop {
        signals,
        reset_evt: legacy.reset,
        exits,
        slots: vm.take_device_slots(),
        control_socket: cfg.control_socket.clone(),
        disk_identity: claim.identity.clone(),
    });
    legacy.ports.flush();
    eprintln!(
        "pyro-vmm: timing: VM ended at {} ms",
        t0.elapsed().as_millis()
    );
    if let Some(p) = vsock_path {
        let _ = std::fs::remove_file(p);
    }
    if let Some(p) = &cfg.control_socket {
        let _ = std::fs::remove_file(p);
    }
    // Only now may another VMM take the disks: its sockets must not be
    // removed by this one's cleanup above.
    drop(claim);
    Ok(outcome?)
}

/// Listens on a Unix socket at `path` that appears only once it accepts
/// connections: bound and listening under a temporary name, then renamed
/// into place. Clients wait for the path to exist and then connect; bound
/// in place, the path exists a moment before `listen`, and a client that
/// connects then is refused.
pub fn listen_unix(path: &std::path::Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = std::os::unix::net::UnixListener::bind(&tmp)?;
    // Connecting needs write permission on the socket: only its owner may
    // (whatever the umask), before it appears under its real name.
    use std::os::unix::fs::PermissionsExt;
    if let Err(e) = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .and_then(|_| std::fs::rename(&tmp, path))
    {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(listener)
}

#[cfg(test)]
mod tests {
    #[test]
    fn unix_sockets_appear_listening_and_replace_stale_files() {
        let dir = crate::temp_dir::TempDir::new("listen");
        let path = dir.join("ctl.sock");
        std::fs::write(&path, b"stale").unwrap();
        let listener = super::listen_unix(&path).unwrap();
        std::os::unix::net::UnixStream::connect(&path).unwrap();
        assert!(listener.accept().is_ok());
        // Nothing but the socket is left in the directory.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("ctl.sock")]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the socket is its owner's only");
    }
}
