//! How a VM ends ([`VmExit`]), and the one place the threads that see it
//! happen report it ([`ExitReport`]): the vCPUs (the guest halted, reset
//! or KVM failed) and the device I/O threads, while the event loop itself
//! sees the reset line, signals and the control socket.

use std::fmt;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Mutex;
use vmm_sys_util::eventfd::EventFd;

/// Why the VM ended. The VMM logs it (`pyro-vmm: <exit>`) and exits 0:
/// the engine reads the log's last line when a VM ends unexpectedly.
#[derive(Debug)]
pub enum VmExit {
    /// The guest pulsed the i8042 reset line. The kernel runs with
    /// `reboot=k`, so this is how the guest agent powers the VM off.
    GuestReset,
    /// SIGTERM, SIGINT or SIGHUP reached the VMM.
    Signal(i32),
    /// A client of the control socket asked for `shutdown`.
    ControlStop,
    /// A vCPU halted and KVM handed the HLT to the VMM.
    Halted { vcpu: u8 },
    /// A triple fault, or a reset KVM could not emulate.
    Shutdown,
    /// KVM_SYSTEM_EVENT: the guest asked for shutdown, reset or crash.
    SystemEvent(u32),
    /// KVM could not enter the guest.
    FailEntry { vcpu: u8, reason: u64, cpu: u32 },
    /// KVM reported an internal error (an exit it cannot emulate).
    InternalError { vcpu: u8 },
    /// KVM_RUN itself failed.
    RunFailed { vcpu: u8, source: kvm_ioctls::Error },
    /// A device I/O thread could not wait for its queues any more: the VM
    /// stops rather than leave the guest waiting on a dead disk.
    DeviceThread {
        index: usize,
        source: std::io::Error,
    },
}

impl fmt::Display for VmExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmExit::GuestReset => f.write_str("guest requested reset (poweroff)"),
            VmExit::Signal(sig) => write!(f, "stopped by signal {sig}"),
            VmExit::ControlStop => f.write_str("stopped by control socket"),
            VmExit::Halted { vcpu } => write!(f, "vcpu {vcpu} halted"),
            VmExit::Shutdown => f.write_str("guest shut down (triple fault or reset)"),
            VmExit::SystemEvent(kind) => write!(f, "guest system event {kind}"),
            VmExit::FailEntry { vcpu, reason, cpu } => write!(
                f,
                "vcpu {vcpu}: KVM entry failed (reason {reason:#x}, cpu {cpu})"
            ),
            VmExit::InternalError { vcpu } => write!(f, "vcpu {vcpu}: KVM internal error"),
            VmExit::RunFailed { vcpu, source } => {
                write!(f, "vcpu {vcpu}: KVM_RUN failed: {source}")
            }
            VmExit::DeviceThread { index, source } => {
                write!(f, "device I/O thread io{index}: epoll_wait: {source}")
            }
        }
    }
}

/// Shared by the threads that can end the VM: the first exit reported is
/// kept, and the event loop is woken through an eventfd to collect it.
pub struct ExitReport {
    first: Mutex<Option<VmExit>>,
    wake: EventFd,
}

impl ExitReport {
    pub fn new() -> std::io::Result<ExitReport> {
        Ok(ExitReport {
            first: Mutex::new(None),
            wake: EventFd::new(libc::EFD_NONBLOCK)?,
        })
    }

    /// Records `exit` unless another came first, and wakes the event loop.
    pub fn report(&self, exit: VmExit) {
        let mut first = self.first.lock().unwrap();
        if first.is_none() {
            *first = Some(exit);
        }
        drop(first);
        // Cannot fail short of an overflowing counter; the exit is
        // recorded either way.
        let _ = self.wake.write(1);
    }

    /// The exit reported, once the eventfd said there is one.
    pub fn take(&self) -> Option<VmExit> {
        self.first.lock().unwrap().take()
    }
}

impl AsRawFd for ExitReport {
    fn as_raw_fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_exit_reported_wins_and_wakes_the_loop() {
        let report = ExitReport::new().unwrap();
        assert!(report.take().is_none());
        report.report(VmExit::Halted { vcpu: 1 });
        report.report(VmExit::Shutdown);
        assert_eq!(report.wake.read().unwrap(), 2, "each report wakes");
        let exit = report.take().unwrap();
        assert!(matches!(exit, VmExit::Halted { vcpu: 1 }), "{exit:?}");
        assert_eq!(exit.to_string(), "vcpu 1 halted");
        assert!(report.take().is_none());
    }

    #[test]
    fn exits_read_as_the_vmm_log_has_always_said() {
        // The engine shows a VMM log's last line as the reason a VM
        // ended, and tests/vm.rs looks for the signal and control texts.
        assert_eq!(VmExit::Signal(15).to_string(), "stopped by signal 15");
        assert_eq!(VmExit::ControlStop.to_string(), "stopped by control socket");
        assert_eq!(
            VmExit::GuestReset.to_string(),
            "guest requested reset (poweroff)"
        );
        assert_eq!(
            VmExit::FailEntry {
                vcpu: 0,
                reason: 0x21,
                cpu: 3
            }
            .to_string(),
            "vcpu 0: KVM entry failed (reason 0x21, cpu 3)"
        );
    }
}
