//! pyro's virtual machine monitor: one process per VM, composed from the
//! rust-vmm crates. `claim_disks` opens the disks and locks the writable
//! ones (one VMM per disk, see `disk_lock`); `run` then builds the VM from
//! a [`VmConfig`], starts the vCPU threads and serves devices from one
//! event loop (disks on I/O threads of their own) until the guest resets,
//! a signal arrives, or the control socket asks it to stop.

pub mod boot;
pub mod config;
pub mod control;
pub mod cpu;
pub mod devices;
pub mod disk_lock;
mod event_loop;
pub mod layout;
pub mod mptable;
mod vcpu;

use config::VmConfig;
use devices::virtio::{
    block::Block, mmio::MmioTransport, rng::Rng, vsock::Vsock, Interrupt, VirtioDevice,
};
use devices::{legacy::PortIo, IrqLine, MmioBus};
use kvm_bindings::{
    kvm_pit_config, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{IoEventAddress, Kvm, VmFd};
use layout::*;
use std::fs::{File, OpenOptions};
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

#[derive(Debug)]
pub struct VmmError(pub String);

impl std::fmt::Display for VmmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> VmmError + '_ {
    move |e| VmmError(format!("{what}: {e}"))
}

/// A virtio device slot: the transport the vCPUs see and the eventfds the
/// event loop polls.
pub struct DeviceSlot {
    pub transport: Arc<Mutex<MmioTransport>>,
    pub notify: Vec<Arc<EventFd>>,
}

/// The VM's disks, open, the writable ones locked for this process's
/// whole life (dropping this releases them).
pub struct DiskClaim {
    /// One open file per `VmConfig::disks` entry, in order.
    files: Vec<File>,
    /// `<dev>:<ino>` of the first writable disk (`-` without one), as the
    /// control socket reports it.
    identity: String,
}

/// Why `claim_disks` failed.
#[derive(Debug)]
pub enum ClaimError {
    /// Another process holds a writable disk: the VMM must not start.
    Busy(String),
    Failed(VmmError),
}

impl ClaimError {
    /// The VMM process's exit status for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClaimError::Busy(_) => disk_lock::EXIT_DISK_BUSY,
            ClaimError::Failed(_) => 1,
        }
    }
}

impl std::fmt::Display for ClaimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClaimError::Busy(m) => f.write_str(m),
            ClaimError::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// Checks the config, opens every disk and locks the writable ones. This
/// is the VMM's first step, before `/dev/kvm` and before any socket: a
/// VMM that cannot have its disk to itself changes nothing (and a busy
/// disk is reported as such, even on a host where KVM would fail too).
pub fn claim_disks(cfg: &VmConfig) -> Result<DiskClaim, ClaimError> {
    cfg.validate()
        .map_err(|e| ClaimError::Failed(VmmError(e)))?;
    let mut files = Vec::new();
    let mut identity = None;
    for d in &cfg.disks {
        let file = OpenOptions::new()
            .read(true)
            .write(!d.read_only)
            .open(&d.path)
            .map_err(|e| {
                ClaimError::Failed(VmmError(format!(
                    "cannot open disk {}: {e}",
                    d.path.display()
                )))
            })?;
        if !d.read_only {
            let locked = disk_lock::try_lock(&file).map_err(|e| {
                ClaimError::Failed(VmmError(format!(
                    "cannot lock disk {}: {e}",
                    d.path.display()
                )))
            })?;
            if !locked {
                return Err(ClaimError::Busy(busy_message(cfg, &d.path)));
            }
            if identity.is_none() {
                let meta = file.metadata().map_err(|e| {
                    ClaimError::Failed(VmmError(format!("disk {}: {e}", d.path.display())))
                })?;
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

/// "Another VMM (pid N) is using this disk": the pid from the holder's
/// answer on the control socket (whose path is this VM's too, when the
/// holder is a VMM of the same VM directory).
fn busy_message(cfg: &VmConfig, disk: &std::path::Path) -> String {
    let holder = cfg
        .control_socket
        .as_deref()
        .and_then(|s| control::ping(s, HOLDER_PING_TIMEOUT).ok());
    let who = match holder {
        Some(p) => format!("another VMM (pid {})", p.pid),
        None => "another process (it does not answer on this VM's control socket)".into(),
    };
    format!(
        "{who} is using this VM's disk {} (it holds its lock); refusing to start a second VM on it",
        disk.display()
    )
}

/// Builds and runs the VM on the disks `claim` holds; returns why it ended.
pub fn run(cfg: &VmConfig, claim: DiskClaim) -> Result<String, VmmError> {
    let t0 = std::time::Instant::now();
    let signals = event_loop::block_signals().map_err(err("blocking signals"))?;
    let kvm = Kvm::new().map_err(err("cannot open /dev/kvm"))?;
    let vm = kvm.create_vm().map_err(err("KVM_CREATE_VM"))?;
    let mem_bytes = cfg.mem_mib as u64 * 1024 * 1024;
    let ranges: Vec<(GuestAddress, usize)> = ram_regions(mem_bytes)
        .into_iter()
        .map(|(s, l)| (GuestAddress(s), l as usize))
        .collect();
    let mem =
        GuestMemoryMmap::<()>::from_ranges(&ranges).map_err(err("allocating guest memory"))?;
    for (slot, region) in mem.iter().enumerate() {
        let r = kvm_userspace_memory_region {
            slot: slot as u32,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: region.as_ptr() as u64,
            flags: 0,
        };
        // SAFETY: the region is a live mapping owned by `mem`, which outlives the VM.
        unsafe { vm.set_user_memory_region(r) }.map_err(err("KVM_SET_USER_MEMORY_REGION"))?;
    }
    vm.set_tss_address(KVM_TSS_ADDR)
        .map_err(err("KVM_SET_TSS_ADDR"))?;
    vm.create_irq_chip().map_err(err("KVM_CREATE_IRQCHIP"))?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit).map_err(err("KVM_CREATE_PIT2"))?;

    let serial_log = devices::console_log::RingLog::open(
        &cfg.serial_log,
        devices::console_log::SERIAL_LOG_MAX_BYTES,
    )
    .map_err(|e| {
        VmmError(format!(
            "cannot open serial log {}: {e}",
            cfg.serial_log.display()
        ))
    })?;
    let serial_evt = new_evt()?;
    vm.register_irqfd(&serial_evt, SERIAL_IRQ)
        .map_err(err("irqfd for serial"))?;
    let kbd_evt = new_evt()?;
    vm.register_irqfd(&kbd_evt, I8042_IRQ)
        .map_err(err("irqfd for i8042"))?;
    let reset_evt = new_evt()?;
    let pio = Arc::new(PortIo::new(
        IrqLine(serial_evt),
        serial_log,
        IrqLine(kbd_evt),
        IrqLine(reset_evt.try_clone().map_err(err("eventfd clone"))?),
    ));

    let mut virtio: Vec<Box<dyn VirtioDevice>> = Vec::new();
    for (i, (d, file)) in cfg.disks.iter().zip(&claim.files).enumerate() {
        // A duplicate shares the locked open file: the device serves the
        // very inode this process holds the lock on.
        let file = file
            .try_clone()
            .map_err(err("duplicating a disk descriptor"))?;
        let dev = Block::new(file, d.read_only, d.flush, &format!("pyro-disk{i}"))
            .map_err(err("disk"))?;
        virtio.push(Box::new(dev));
    }
    let mut vsock_path = None;
    if let Some(v) = &cfg.vsock {
        let dev = Vsock::new(v.guest_cid, v.uds_path.clone()).map_err(|e| {
            VmmError(format!(
                "cannot listen on vsock socket {}: {e}",
                v.uds_path.display()
            ))
        })?;
        vsock_path = Some(dev.uds_path().to_path_buf());
        virtio.push(Box::new(dev));
    }
    if cfg.rng {
        virtio.push(Box::new(Rng::default()));
    }

    let mut cmdline = cfg.cmdline.clone();
    let mut bus = MmioBus::default();
    let mut slots = Vec::new();
    for (i, dev) in virtio.into_iter().enumerate() {
        let base = VIRTIO_MMIO_BASE + i as u64 * VIRTIO_MMIO_SIZE;
        let irq = VIRTIO_IRQ_BASE + i as u32;
        if irq >= IOAPIC_PINS {
            return Err(VmmError(
                "too many devices for the interrupt controller".into(),
            ));
        }
        let slot = attach(&vm, &mem, dev, base, irq)?;
        bus.insert(base, VIRTIO_MMIO_SIZE, slot.transport.clone());
        cmdline.push_str(&format!(" virtio_mmio.device=4K@{base:#x}:{irq}"));
        slots.push(slot);
    }

    let entry =
        boot::load(&mem, &cfg.kernel, &cmdline, mem_bytes).map_err(|e| VmmError(e.to_string()))?;
    mptable::write(&mem, cfg.vcpus).map_err(err("writing MP table"))?;
    let loaded_ms = t0.elapsed().as_millis();

    let base_cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(err("KVM_GET_SUPPORTED_CPUID"))?;
    let tsc_deadline = kvm.check_extension(kvm_ioctls::Cap::TscDeadlineTimer);
    let exit_evt = Arc::new(new_evt()?);
    let note: vcpu::ExitNote = Arc::new(Mutex::new(None));
    for id in 0..cfg.vcpus {
        let fd = vm.create_vcpu(id as u64).map_err(err("KVM_CREATE_VCPU"))?;
        cpu::configure(&fd, &base_cpuid, id, cfg.vcpus, entry, tsc_deadline)
            .map_err(|e| VmmError(e.to_string()))?;
        let (pio, bus, exit_evt, note) = (pio.clone(), bus.clone(), exit_evt.clone(), note.clone());
        std::thread::Builder::new()
            .name(format!("vcpu{id}"))
            .spawn(move || vcpu::run(fd, id, pio, bus, exit_evt, note))
            .map_err(err("spawning vcpu thread"))?;
    }

    let started_ms = t0.elapsed().as_millis();
    // Phase times help tell VMM overhead from guest boot time in the log.
    eprintln!(
        "pyro-vmm: timing: kernel loaded at {loaded_ms} ms, vcpus running at {started_ms} ms"
    );
    let outcome = event_loop::run(event_loop::Loop {
        signals,
        reset_evt,
        exit_evt,
        note,
        slots,
        control_socket: cfg.control_socket.clone(),
        disk_identity: claim.identity.clone(),
    });
    pio.flush();
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
    outcome
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

fn new_evt() -> Result<EventFd, VmmError> {
    EventFd::new(libc::EFD_NONBLOCK).map_err(err("eventfd"))
}

fn attach(
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    dev: Box<dyn VirtioDevice>,
    base: u64,
    irq: u32,
) -> Result<DeviceSlot, VmmError> {
    let irq_evt = new_evt()?;
    vm.register_irqfd(&irq_evt, irq).map_err(err("KVM_IRQFD"))?;
    let mut notify = Vec::new();
    for q in 0..dev.queue_max_sizes().len() {
        let evt = new_evt()?;
        let addr = IoEventAddress::Mmio(
            base + u64::from(virtio_bindings::virtio_mmio::VIRTIO_MMIO_QUEUE_NOTIFY),
        );
        vm.register_ioevent(&evt, &addr, q as u32)
            .map_err(err("KVM_IOEVENTFD"))?;
        notify.push(Arc::new(evt));
    }
    let interrupt = Interrupt {
        status: Arc::new(AtomicU32::new(0)),
        evt: Arc::new(irq_evt),
    };
    let transport = MmioTransport::new(dev, mem.clone(), interrupt, notify.clone());
    Ok(DeviceSlot {
        transport: Arc::new(Mutex::new(transport)),
        notify,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn unix_sockets_appear_listening_and_replace_stale_files() {
        let dir = std::env::temp_dir().join(format!(
            "pyro-listen-{}",
            crate::engine::paths::random_id(4)
        ));
        std::fs::create_dir_all(&dir).unwrap();
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
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
