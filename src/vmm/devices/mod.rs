//! Device models and the buses vCPU exits are dispatched on.

pub mod console_log;
pub mod i8042;
pub mod legacy;
pub mod virtio;

use std::sync::{Arc, Mutex};
use vmm_sys_util::eventfd::EventFd;

/// Raising an interrupt line: an eventfd registered as a KVM irqfd.
pub struct IrqLine(pub EventFd);

impl vm_superio::Trigger for IrqLine {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// A device reachable by MMIO: the vCPU threads call these on exits.
pub trait MmioDevice: Send {
    fn read(&mut self, offset: u64, data: &mut [u8]);
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// Maps guest-physical MMIO ranges to devices.
pub type SharedMmioDevice = Arc<Mutex<dyn MmioDevice>>;

#[derive(Default, Clone)]
pub struct MmioBus {
    ranges: Vec<(u64, u64, SharedMmioDevice)>,
}

impl MmioBus {
    pub fn insert(&mut self, base: u64, len: u64, dev: Arc<Mutex<dyn MmioDevice>>) {
        self.ranges.push((base, len, dev));
    }

    fn find(&self, addr: u64) -> Option<(u64, &Arc<Mutex<dyn MmioDevice>>)> {
        self.ranges
            .iter()
            .find(|(base, len, _)| addr >= *base && addr - *base < *len)
            .map(|(base, _, dev)| (addr - base, dev))
    }

    /// Reads from unmapped addresses return all ones, like open bus.
    pub fn read(&self, addr: u64, data: &mut [u8]) {
        match self.find(addr) {
            Some((off, dev)) => dev.lock().unwrap().read(off, data),
            None => data.fill(0xff),
        }
    }

    pub fn write(&self, addr: u64, data: &[u8]) {
        if let Some((off, dev)) = self.find(addr) {
            dev.lock().unwrap().write(off, data);
        }
    }
}
