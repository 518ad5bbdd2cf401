//! The VM under construction, one step per method in the order `vmm::run`
//! calls them: KVM's VM with guest memory and the in-kernel interrupt
//! controller and timer, the legacy devices on the I/O ports, each virtio
//! device on an MMIO slot of its own, the kernel with its boot structures,
//! and the vCPUs. Each layer fails with its own error type.

use super::boot::{self, BootError};
use super::config::{DiskConfig, VsockConfig};
use super::devices::console_log::{RingLog, SERIAL_LOG_MAX_BYTES};
use super::devices::virtio::{
    block::Block, mmio::MmioTransport, rng::Rng, vsock::Vsock, Interrupt, VirtioDevice,
};
use super::devices::{legacy::PortIo, IrqLine, MmioBus};
use super::exit::ExitReport;
use super::layout::*;
use super::mptable;
use super::vcpu::{self, VcpuError};
use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{IoEventAddress, Kvm, VmFd};
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use virtio_bindings::virtio_mmio::VIRTIO_MMIO_QUEUE_NOTIFY;
use vm_memory::mmap::FromRangesError;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

/// Why KVM's VM could not be created with its memory and interrupt
/// controller.
#[derive(Debug)]
pub enum VmError {
    OpenKvm(kvm_ioctls::Error),
    /// The named VM ioctl failed.
    Kvm(&'static str, kvm_ioctls::Error),
    GuestMemory(FromRangesError),
}

impl fmt::Display for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmError::OpenKvm(e) => write!(f, "cannot open /dev/kvm: {e}"),
            VmError::Kvm(ioctl, e) => write!(f, "{ioctl}: {e}"),
            VmError::GuestMemory(e) => write!(f, "allocating guest memory: {e}"),
        }
    }
}

impl std::error::Error for VmError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            VmError::OpenKvm(e) | VmError::Kvm(_, e) => Some(e),
            VmError::GuestMemory(e) => Some(e),
        }
    }
}

/// Why a device could not be added: its host side, its interrupt line or
/// its MMIO slot.
#[derive(Debug)]
pub enum DeviceError {
    SerialLog(PathBuf, io::Error),
    EventFd(io::Error),
    EventFdClone(io::Error),
    SerialIrq(kvm_ioctls::Error),
    KeyboardIrq(kvm_ioctls::Error),
    VirtioIrq(kvm_ioctls::Error),
    QueueNotify(kvm_ioctls::Error),
    /// Every interrupt controller pin is taken.
    TooManyDevices,
    DuplicateDisk(io::Error),
    Disk(io::Error),
    VsockListen(PathBuf, io::Error),
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::SerialLog(p, e) => {
                write!(f, "cannot open serial log {}: {e}", p.display())
            }
            DeviceError::EventFd(e) => write!(f, "eventfd: {e}"),
            DeviceError::EventFdClone(e) => write!(f, "eventfd clone: {e}"),
            DeviceError::SerialIrq(e) => write!(f, "irqfd for serial: {e}"),
            DeviceError::KeyboardIrq(e) => write!(f, "irqfd for i8042: {e}"),
            DeviceError::VirtioIrq(e) => write!(f, "KVM_IRQFD: {e}"),
            DeviceError::QueueNotify(e) => write!(f, "KVM_IOEVENTFD: {e}"),
            DeviceError::TooManyDevices => {
                f.write_str("too many devices for the interrupt controller")
            }
            DeviceError::DuplicateDisk(e) => write!(f, "duplicating a disk descriptor: {e}"),
            DeviceError::Disk(e) => write!(f, "disk: {e}"),
            DeviceError::VsockListen(p, e) => {
                write!(f, "cannot listen on vsock socket {}: {e}", p.display())
            }
        }
    }
}

impl std::error::Error for DeviceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DeviceError::SerialLog(_, e)
            | DeviceError::EventFd(e)
            | DeviceError::EventFdClone(e)
            | DeviceError::DuplicateDisk(e)
            | DeviceError::Disk(e)
            | DeviceError::VsockListen(_, e) => Some(e),
            DeviceError::SerialIrq(e)
            | DeviceError::KeyboardIrq(e)
            | DeviceError::VirtioIrq(e)
            | DeviceError::QueueNotify(e) => Some(e),
            DeviceError::TooManyDevices => None,
        }
    }
}

/// A virtio device slot: the transport the vCPUs see and the eventfds the
/// event loop polls.
pub struct DeviceSlot {
    pub transport: Arc<Mutex<MmioTransport>>,
    pub notify: Vec<Arc<EventFd>>,
}

/// The legacy devices on the I/O ports, and the i8042's reset line (how
/// the guest ends the VM), for the event loop.
pub struct LegacyDevices {
    pub ports: Arc<PortIo>,
    pub reset: EventFd,
}

pub struct Vm {
    kvm: Kvm,
    fd: VmFd,
    mem: GuestMemoryMmap,
    mem_bytes: u64,
    /// The virtio transports, by guest-physical address, for the vCPUs.
    bus: MmioBus,
    /// The same devices with their queue eventfds, for the event loop.
    slots: Vec<DeviceSlot>,
    /// ` virtio_mmio.device=4K@<base>:<irq>` per device, for the kernel
    /// command line: there is no other way to find them.
    device_args: String,
}

impl Vm {
    /// Opens KVM and creates the VM: `mem_mib` of guest memory (around
    /// the MMIO hole), the in-kernel interrupt controller and the PIT.
    pub fn new(mem_mib: u32) -> Result<Vm, VmError> {
        let kvm = Kvm::new().map_err(VmError::OpenKvm)?;
        let fd = kvm
            .create_vm()
            .map_err(|e| VmError::Kvm("KVM_CREATE_VM", e))?;
        let mem_bytes = mem_mib as u64 * 1024 * 1024;
        let ranges: Vec<(GuestAddress, usize)> = ram_regions(mem_bytes)
            .into_iter()
            .map(|(s, l)| (GuestAddress(s), l as usize))
            .collect();
        let mem = GuestMemoryMmap::<()>::from_ranges(&ranges).map_err(VmError::GuestMemory)?;
        for (slot, region) in mem.iter().enumerate() {
            let r = kvm_userspace_memory_region {
                slot: slot as u32,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: region.as_ptr() as u64,
                flags: 0,
            };
            // SAFETY: the region is a live mapping of `region.len()` bytes
            // owned by `mem`, which outlives the VM (it lives in `Vm`, and
            // each device transport holds a clone).
            unsafe { fd.set_user_memory_region(r) }
                .map_err(|e| VmError::Kvm("KVM_SET_USER_MEMORY_REGION", e))?;
        }
        fd.set_tss_address(KVM_TSS_ADDR)
            .map_err(|e| VmError::Kvm("KVM_SET_TSS_ADDR", e))?;
        fd.create_irq_chip()
            .map_err(|e| VmError::Kvm("KVM_CREATE_IRQCHIP", e))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        fd.create_pit2(pit)
            .map_err(|e| VmError::Kvm("KVM_CREATE_PIT2", e))?;
        Ok(Vm {
            kvm,
            fd,
            mem,
            mem_bytes,
            bus: MmioBus::default(),
            slots: Vec::new(),
            device_args: String::new(),
        })
    }

    /// The serial console (kernel log into `serial_log`) and the i8042
    /// controller, on their ISA interrupts.
    pub fn add_legacy_devices(&self, serial_log: &Path) -> Result<LegacyDevices, DeviceError> {
        let log = RingLog::open(serial_log, SERIAL_LOG_MAX_BYTES)
            .map_err(|e| DeviceError::SerialLog(serial_log.to_path_buf(), e))?;
        let serial_evt = new_evt()?;
        self.fd
            .register_irqfd(&serial_evt, SERIAL_IRQ)
            .map_err(DeviceError::SerialIrq)?;
        let kbd_evt = new_evt()?;
        self.fd
            .register_irqfd(&kbd_evt, I8042_IRQ)
            .map_err(DeviceError::KeyboardIrq)?;
        let reset = new_evt()?;
        let ports = Arc::new(PortIo::new(
            IrqLine(serial_evt),
            log,
            IrqLine(kbd_evt),
            IrqLine(reset.try_clone().map_err(DeviceError::EventFdClone)?),
        ));
        Ok(LegacyDevices { ports, reset })
    }

    /// Disk `index` of the config, served from `file` (the claimed one).
    pub fn add_block_device(
        &mut self,
        index: usize,
        disk: &DiskConfig,
        file: &File,
    ) -> Result<(), DeviceError> {
        // A duplicate shares the locked open file: the device serves the
        // very inode this process holds the lock on.
        let file = file.try_clone().map_err(DeviceError::DuplicateDisk)?;
        let serial = format!("pyro-disk{index}");
        let dev =
            Block::new(file, disk.read_only, disk.flush, &serial).map_err(DeviceError::Disk)?;
        self.add_virtio_device(Box::new(dev))
    }

    /// The vsock device, listening on its Unix socket; returns the
    /// socket's path (removed when the VM ends).
    pub fn add_vsock_device(&mut self, cfg: &VsockConfig) -> Result<PathBuf, DeviceError> {
        let dev = Vsock::new(cfg.guest_cid, cfg.uds_path.clone())
            .map_err(|e| DeviceError::VsockListen(cfg.uds_path.clone(), e))?;
        let path = dev.uds_path().to_path_buf();
        self.add_virtio_device(Box::new(dev))?;
        Ok(path)
    }

    pub fn add_rng_device(&mut self) -> Result<(), DeviceError> {
        self.add_virtio_device(Box::new(Rng::default()))
    }

    /// Puts `dev` on the next MMIO slot and interrupt pin: an irqfd for
    /// its interrupt, an ioeventfd per queue for its notifications.
    fn add_virtio_device(&mut self, dev: Box<dyn VirtioDevice>) -> Result<(), DeviceError> {
        let i = self.slots.len();
        let base = VIRTIO_MMIO_BASE + i as u64 * VIRTIO_MMIO_SIZE;
        let irq = VIRTIO_IRQ_BASE + i as u32;
        if irq >= IOAPIC_PINS {
            return Err(DeviceError::TooManyDevices);
        }
        let irq_evt = new_evt()?;
        self.fd
            .register_irqfd(&irq_evt, irq)
            .map_err(DeviceError::VirtioIrq)?;
        let mut notify = Vec::new();
        for q in 0..dev.queue_max_sizes().len() {
            let evt = new_evt()?;
            let addr = IoEventAddress::Mmio(base + u64::from(VIRTIO_MMIO_QUEUE_NOTIFY));
            self.fd
                .register_ioevent(&evt, &addr, q as u32)
                .map_err(DeviceError::QueueNotify)?;
            notify.push(Arc::new(evt));
        }
        let interrupt = Interrupt {
            status: Arc::new(AtomicU32::new(0)),
            evt: Arc::new(irq_evt),
        };
        let transport = Arc::new(Mutex::new(MmioTransport::new(
            dev,
            self.mem.clone(),
            interrupt,
            notify.clone(),
        )));
        self.bus.insert(base, VIRTIO_MMIO_SIZE, transport.clone());
        self.device_args
            .push_str(&format!(" virtio_mmio.device=4K@{base:#x}:{irq}"));
        self.slots.push(DeviceSlot { transport, notify });
        Ok(())
    }

    /// Loads `kernel` with `cmdline` plus the device list, and writes the
    /// boot structures and the MP table for `vcpus` CPUs; returns the
    /// kernel's 64-bit entry point.
    pub fn load_kernel(&self, kernel: &Path, cmdline: &str, vcpus: u8) -> Result<u64, BootError> {
        let cmdline = format!("{cmdline}{}", self.device_args);
        let entry = boot::load(&self.mem, kernel, &cmdline, self.mem_bytes)?;
        mptable::write(&self.mem, vcpus).map_err(BootError::MpTable)?;
        Ok(entry)
    }

    /// Starts `count` vCPUs at `entry`; returns where they report how the
    /// VM ended.
    pub fn start_vcpus(
        &self,
        count: u8,
        entry: u64,
        ports: &Arc<PortIo>,
    ) -> Result<Arc<ExitReport>, VcpuError> {
        let exits = Arc::new(ExitReport::new().map_err(VcpuError::ExitEventFd)?);
        let shared = vcpu::Shared {
            ports: ports.clone(),
            mmio: self.bus.clone(),
            exits: exits.clone(),
        };
        vcpu::start_all(&self.kvm, &self.fd, count, entry, &shared)?;
        Ok(exits)
    }

    /// The virtio devices, handed to the event loop (the VM itself must
    /// live on while it runs: it owns KVM's VM and the guest memory).
    pub fn take_device_slots(&mut self) -> Vec<DeviceSlot> {
        std::mem::take(&mut self.slots)
    }
}

fn new_evt() -> Result<EventFd, DeviceError> {
    EventFd::new(libc::EFD_NONBLOCK).map_err(DeviceError::EventFd)
}
