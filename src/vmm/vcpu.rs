//! The vCPU threads: create and configure each vCPU, then run KVM_RUN and
//! dispatch port and MMIO exits until the guest or KVM ends the VM.

use super::cpu::{self, CpuError};
use super::devices::{legacy::PortIo, MmioBus};
use super::exit::{ExitReport, VmExit};
use kvm_bindings::KVM_MAX_CPUID_ENTRIES;
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use std::fmt;
use std::sync::Arc;

/// Why a vCPU could not be started.
#[derive(Debug)]
pub enum VcpuError {
    /// The eventfd through which the vCPUs report the VM's end.
    ExitEventFd(std::io::Error),
    SupportedCpuid(kvm_ioctls::Error),
    Create(kvm_ioctls::Error),
    Configure(CpuError),
    Spawn(std::io::Error),
}

impl fmt::Display for VcpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VcpuError::ExitEventFd(e) => write!(f, "eventfd: {e}"),
            VcpuError::SupportedCpuid(e) => write!(f, "KVM_GET_SUPPORTED_CPUID: {e}"),
            VcpuError::Create(e) => write!(f, "KVM_CREATE_VCPU: {e}"),
            VcpuError::Configure(e) => write!(f, "{e}"),
            VcpuError::Spawn(e) => write!(f, "spawning vcpu thread: {e}"),
        }
    }
}

impl std::error::Error for VcpuError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            VcpuError::SupportedCpuid(e) | VcpuError::Create(e) => Some(e),
            VcpuError::Configure(e) => Some(e),
            VcpuError::ExitEventFd(e) | VcpuError::Spawn(e) => Some(e),
        }
    }
}

/// What every vCPU thread shares.
pub struct Shared {
    pub ports: Arc<PortIo>,
    pub mmio: MmioBus,
    pub exits: Arc<ExitReport>,
}

/// Creates the `count` vCPUs, sets them up for a direct 64-bit boot at
/// `entry` (the boot CPU; the others wait for INIT/SIPI) and starts their
/// threads.
pub fn start_all(
    kvm: &Kvm,
    vm: &VmFd,
    count: u8,
    entry: u64,
    shared: &Shared,
) -> Result<(), VcpuError> {
    let base_cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(VcpuError::SupportedCpuid)?;
    let tsc_deadline = kvm.check_extension(kvm_ioctls::Cap::TscDeadlineTimer);
    for id in 0..count {
        let fd = vm.create_vcpu(id as u64).map_err(VcpuError::Create)?;
        cpu::configure(&fd, &base_cpuid, id, count, entry, tsc_deadline)
            .map_err(VcpuError::Configure)?;
        let (ports, mmio, exits) = (
            shared.ports.clone(),
            shared.mmio.clone(),
            shared.exits.clone(),
        );
        std::thread::Builder::new()
            .name(format!("vcpu{id}"))
            .spawn(move || exits.report(run(fd, id, &ports, &mmio)))
            .map_err(VcpuError::Spawn)?;
    }
    Ok(())
}

/// Runs the vCPU until an exit that ends the VM, and returns it.
fn run(mut vcpu: VcpuFd, id: u8, ports: &PortIo, mmio: &MmioBus) -> VmExit {
    loop {
        match vcpu.run() {
            Ok(VcpuExit::IoIn(port, data)) => ports.read(port, data),
            Ok(VcpuExit::IoOut(port, data)) => ports.write(port, data),
            Ok(VcpuExit::MmioRead(addr, data)) => mmio.read(addr, data),
            Ok(VcpuExit::MmioWrite(addr, data)) => mmio.write(addr, data),
            Ok(VcpuExit::Hlt) => return VmExit::Halted { vcpu: id },
            Ok(VcpuExit::Shutdown) => return VmExit::Shutdown,
            Ok(VcpuExit::SystemEvent(kind, _)) => return VmExit::SystemEvent(kind),
            Ok(VcpuExit::FailEntry(reason, cpu)) => {
                return VmExit::FailEntry {
                    vcpu: id,
                    reason,
                    cpu,
                }
            }
            Ok(VcpuExit::InternalError) => return VmExit::InternalError { vcpu: id },
            Ok(other) => {
                // The guest can cause these at will: counted like device errors.
                crate::vmm::devices::virtio::log_device_error(
                    &format!("vcpu {id}"),
                    &format!("unhandled exit {other:?}"),
                );
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
            Err(e) => {
                return VmExit::RunFailed {
                    vcpu: id,
                    source: e,
                }
            }
        }
    }
}
