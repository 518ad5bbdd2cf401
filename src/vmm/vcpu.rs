//! The vCPU threads: run KVM_RUN and dispatch port and MMIO exits.

use super::devices::{legacy::PortIo, MmioBus};
use kvm_ioctls::{VcpuExit, VcpuFd};
use std::sync::{Arc, Mutex};
use vmm_sys_util::eventfd::EventFd;

/// How the VM ended, as told by the vCPU that saw it.
pub type ExitNote = Arc<Mutex<Option<String>>>;

pub fn run(
    mut vcpu: VcpuFd,
    id: u8,
    pio: Arc<PortIo>,
    mmio: MmioBus,
    exit_evt: Arc<EventFd>,
    note: ExitNote,
) {
    let finish = |why: String| {
        let mut n = note.lock().unwrap();
        if n.is_none() {
            *n = Some(why);
        }
        let _ = exit_evt.write(1);
    };
    loop {
        match vcpu.run() {
            Ok(VcpuExit::IoIn(port, data)) => pio.read(port, data),
            Ok(VcpuExit::IoOut(port, data)) => pio.write(port, data),
            Ok(VcpuExit::MmioRead(addr, data)) => mmio.read(addr, data),
            Ok(VcpuExit::MmioWrite(addr, data)) => mmio.write(addr, data),
            Ok(VcpuExit::Hlt) => return finish(format!("vcpu {id} halted")),
            Ok(VcpuExit::Shutdown) => {
                return finish("guest shut down (triple fault or reset)".into())
            }
            Ok(VcpuExit::SystemEvent(kind, _)) => {
                return finish(format!("guest system event {kind}"))
            }
            Ok(VcpuExit::FailEntry(reason, cpu)) => {
                return finish(format!(
                    "vcpu {id}: KVM entry failed (reason {reason:#x}, cpu {cpu})"
                ))
            }
            Ok(VcpuExit::InternalError) => return finish(format!("vcpu {id}: KVM internal error")),
            Ok(other) => {
                // The guest can cause these at will: counted like device errors.
                crate::vmm::devices::virtio::log_device_error(
                    &format!("vcpu {id}"),
                    &format!("unhandled exit {other:?}"),
                );
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
            Err(e) => return finish(format!("vcpu {id}: KVM_RUN failed: {e}")),
        }
    }
}
