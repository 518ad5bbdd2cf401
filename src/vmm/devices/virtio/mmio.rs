//! The virtio-mmio transport (version 2): the register file the driver
//! programs, queue setup, feature negotiation, and the status machine that
//! activates the device.

use super::{log_device_error, ActivateError, Activation, Interrupt, VirtioDevice, F_VERSION_1};
use crate::vmm::devices::MmioDevice;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_FEATURES_OK,
};
use virtio_bindings::virtio_mmio::*;
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// What the magic value register reads: "virt", little-endian.
const MAGIC: u32 = 0x7472_6976;
/// The register layout served: version 2, the modern (virtio 1.x) one.
const MMIO_VERSION: u32 = 2;
/// The vendor id register: "PYRO", any value the spec does not reserve.
const VENDOR: u32 = 0x5059_524f;

/// Why the transport refused to activate its device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TransportError {
    /// DRIVER_OK came without ACKNOWLEDGE, DRIVER and FEATURES_OK.
    NotNegotiated,
    /// The queue with this index has rings outside guest memory or a size
    /// that is not a power of two.
    InvalidQueue(usize),
    Device(ActivateError),
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportError::NotNegotiated => {
                f.write_str("DRIVER_OK before feature negotiation finished")
            }
            TransportError::InvalidQueue(i) => write!(
                f,
                "queue {i} is not valid (addresses outside guest memory or bad size)"
            ),
            TransportError::Device(e) => write!(f, "activation failed: {e}"),
        }
    }
}

pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: GuestMemoryMmap,
    interrupt: Interrupt,
    /// Per-queue notify eventfds: the fallback path when a notify write
    /// reaches us as an MMIO exit instead of through the ioeventfd.
    notify: Vec<Arc<EventFd>>,
    queues: Vec<Queue>,
    status: u32,
    features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    activated: bool,
    config_generation: u32,
}

impl MmioTransport {
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestMemoryMmap,
        interrupt: Interrupt,
        notify: Vec<Arc<EventFd>>,
    ) -> Self {
        let queues = device
            .queue_max_sizes()
            .iter()
            .map(|&max| Queue::new(max).expect("queue sizes are powers of two"))
            .collect();
        MmioTransport {
            device,
            mem,
            interrupt,
            notify,
            queues,
            status: 0,
            features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            activated: false,
            config_generation: 0,
        }
    }

    pub fn device(&self) -> &dyn VirtioDevice {
        self.device.as_ref()
    }

    pub fn device_mut(&mut self) -> &mut dyn VirtioDevice {
        self.device.as_mut()
    }

    /// The driver kicked queue `index` (its ioeventfd fired): the device
    /// serves it once the driver has activated it, not before.
    pub fn notify_queue(&mut self, registry: &mio::Registry, index: usize) {
        if self.activated {
            self.device.queue_notify(registry, index);
        }
    }

    fn queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn set_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let newly = value & !self.status;
        self.status = value;
        if newly & VIRTIO_CONFIG_S_FEATURES_OK != 0 && self.driver_features & F_VERSION_1 == 0 {
            // Legacy drivers are not supported; refuse the feature set.
            self.status &= !VIRTIO_CONFIG_S_FEATURES_OK;
        }
        if newly & VIRTIO_CONFIG_S_DRIVER_OK != 0 && !self.activated {
            self.activate();
        }
    }

    /// The driver set DRIVER_OK: hand the queues to the device, or mark
    /// the device FAILED (the driver sees it and gives up on the device).
    fn activate(&mut self) {
        match self.try_activate() {
            Ok(()) => self.activated = true,
            Err(e) => {
                log_device_error("virtio-mmio", &e.to_string());
                self.status |= VIRTIO_CONFIG_S_FAILED;
            }
        }
    }

    fn try_activate(&mut self) -> Result<(), TransportError> {
        let needed = VIRTIO_CONFIG_S_ACKNOWLEDGE
            | VIRTIO_CONFIG_S_DRIVER
            | VIRTIO_CONFIG_S_FEATURES_OK
            | VIRTIO_CONFIG_S_DRIVER_OK;
        if self.status & needed != needed {
            return Err(TransportError::NotNegotiated);
        }
        if let Some(i) = self.queues.iter().position(|q| !q.is_valid(&self.mem)) {
            return Err(TransportError::InvalidQueue(i));
        }
        let queues = std::mem::take(&mut self.queues);
        let act = Activation {
            mem: self.mem.clone(),
            queues,
            interrupt: self.interrupt.clone(),
        };
        self.device.activate(act).map_err(TransportError::Device)
    }

    fn reset(&mut self) {
        self.device.reset();
        self.queues = self
            .device
            .queue_max_sizes()
            .iter()
            .map(|&max| Queue::new(max).expect("queue sizes are powers of two"))
            .collect();
        self.status = 0;
        self.activated = false;
        self.driver_features = 0;
        self.interrupt.status.store(0, Ordering::SeqCst);
    }
}

impl MmioDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= u64::from(VIRTIO_MMIO_CONFIG) {
            self.device
                .read_config(offset - u64::from(VIRTIO_MMIO_CONFIG), data);
            return;
        }
        if data.len() != 4 {
            data.fill(0);
            return;
        }
        let features = self.device.features() | F_VERSION_1;
        // Below the config space, so the offset fits.
        let v = match offset as u32 {
            VIRTIO_MMIO_MAGIC_VALUE => MAGIC,
            VIRTIO_MMIO_VERSION => MMIO_VERSION,
            VIRTIO_MMIO_DEVICE_ID => self.device.device_type(),
            VIRTIO_MMIO_VENDOR_ID => VENDOR,
            VIRTIO_MMIO_DEVICE_FEATURES => match self.features_sel {
                0 => features as u32,
                1 => (features >> 32) as u32,
                _ => 0,
            },
            VIRTIO_MMIO_QUEUE_NUM_MAX => self.queue().map(|q| q.max_size() as u32).unwrap_or(0),
            VIRTIO_MMIO_QUEUE_READY => self.queue().map(|q| q.ready() as u32).unwrap_or(0),
            VIRTIO_MMIO_INTERRUPT_STATUS => self.interrupt.status.load(Ordering::SeqCst),
            VIRTIO_MMIO_STATUS => self.status,
            VIRTIO_MMIO_CONFIG_GENERATION => self.config_generation,
            _ => 0,
        };
        data.copy_from_slice(&v.to_le_bytes());
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= u64::from(VIRTIO_MMIO_CONFIG) {
            // No device here has writable config.
            return;
        }
        if data.len() != 4 {
            return;
        }
        let v = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        // Queue layout may only change before the device is live.
        let setup = !self.activated && self.status & VIRTIO_CONFIG_S_DRIVER_OK == 0;
        // Below the config space, so the offset fits.
        match offset as u32 {
            VIRTIO_MMIO_DEVICE_FEATURES_SEL => self.features_sel = v,
            VIRTIO_MMIO_DRIVER_FEATURES => {
                let shift = match self.driver_features_sel {
                    0 => 0,
                    1 => 32,
                    _ => return,
                };
                let offered = self.device.features() | F_VERSION_1;
                let mask = 0xffff_ffffu64 << shift;
                self.driver_features =
                    (self.driver_features & !mask) | (((v as u64) << shift) & offered);
            }
            VIRTIO_MMIO_DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            VIRTIO_MMIO_QUEUE_SEL => self.queue_sel = v,
            VIRTIO_MMIO_QUEUE_NUM if setup => {
                if let Some(q) = self.queue() {
                    q.set_size(v as u16);
                }
            }
            VIRTIO_MMIO_QUEUE_READY if setup => {
                if let Some(q) = self.queue() {
                    q.set_ready(v == 1);
                }
            }
            VIRTIO_MMIO_QUEUE_NOTIFY => match self.notify.get(v as usize) {
                Some(evt) => {
                    let _ = evt.write(1);
                }
                None => log_device_error("virtio-mmio", &format!("notify for unknown queue {v}")),
            },
            VIRTIO_MMIO_INTERRUPT_ACK => {
                self.interrupt.status.fetch_and(!v, Ordering::SeqCst);
            }
            VIRTIO_MMIO_STATUS => self.set_status(v),
            VIRTIO_MMIO_QUEUE_DESC_LOW if setup => self
                .queue()
                .into_iter()
                .for_each(|q| q.set_desc_table_address(Some(v), None)),
            VIRTIO_MMIO_QUEUE_DESC_HIGH if setup => self
                .queue()
                .into_iter()
                .for_each(|q| q.set_desc_table_address(None, Some(v))),
            VIRTIO_MMIO_QUEUE_AVAIL_LOW if setup => self
                .queue()
                .into_iter()
                .for_each(|q| q.set_avail_ring_address(Some(v), None)),
            VIRTIO_MMIO_QUEUE_AVAIL_HIGH if setup => self
                .queue()
                .into_iter()
                .for_each(|q| q.set_avail_ring_address(None, Some(v))),
            VIRTIO_MMIO_QUEUE_USED_LOW if setup => self
                .queue()
                .into_iter()
                .for_each(|q| q.set_used_ring_address(Some(v), None)),
            VIRTIO_MMIO_QUEUE_USED_HIGH if setup => self
                .queue()
                .into_iter()
                .for_each(|q| q.set_used_ring_address(None, Some(v))),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::devices::virtio::rng::Rng;
    use std::sync::atomic::AtomicU32;
    use vm_memory::GuestAddress;

    fn transport() -> MmioTransport {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let irq = Interrupt {
            status: Arc::new(AtomicU32::new(0)),
            evt: Arc::new(EventFd::new(0).unwrap()),
        };
        let notify = vec![Arc::new(EventFd::new(0).unwrap())];
        MmioTransport::new(Box::new(Rng::default()), mem, irq, notify)
    }

    fn read(t: &mut MmioTransport, off: u64) -> u32 {
        let mut b = [0u8; 4];
        t.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    fn write(t: &mut MmioTransport, off: u64, v: u32) {
        t.write(off, &v.to_le_bytes());
    }

    #[test]
    fn identifies_as_modern_virtio() {
        let mut t = transport();
        assert_eq!(read(&mut t, 0x00), MAGIC);
        assert_eq!(read(&mut t, 0x04), 2);
        assert_eq!(
            read(&mut t, 0x08),
            virtio_bindings::virtio_ids::VIRTIO_ID_RNG
        );
        write(&mut t, 0x14, 1);
        assert_eq!(read(&mut t, 0x10) & 1, 1, "VERSION_1 offered");
        // Odd-sized accesses and unknown registers are harmless.
        let mut b = [0xffu8; 2];
        t.read(0x00, &mut b);
        assert_eq!(b, [0, 0]);
        write(&mut t, 0xe0, 1234);
    }

    #[test]
    fn queue_outside_guest_memory_fails_activation() {
        let mut t = transport();
        write(
            &mut t,
            0x70,
            VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER,
        );
        write(&mut t, 0x24, 1);
        write(&mut t, 0x20, 1); // VERSION_1
        write(
            &mut t,
            0x70,
            VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK,
        );
        write(&mut t, 0x30, 0);
        write(&mut t, 0x38, 16);
        write(&mut t, 0x80, 0xffff_0000); // descriptor table far outside RAM
        write(&mut t, 0x90, 0x2000);
        write(&mut t, 0xa0, 0x3000);
        write(&mut t, 0x44, 1);
        write(
            &mut t,
            0x70,
            VIRTIO_CONFIG_S_ACKNOWLEDGE
                | VIRTIO_CONFIG_S_DRIVER
                | VIRTIO_CONFIG_S_FEATURES_OK
                | VIRTIO_CONFIG_S_DRIVER_OK,
        );
        assert!(!t.activated);
        assert_ne!(read(&mut t, 0x70) & VIRTIO_CONFIG_S_FAILED, 0);
        // A reset brings the device back to a clean state.
        write(&mut t, 0x70, 0);
        assert_eq!(read(&mut t, 0x70), 0);
    }

    #[test]
    fn driver_ok_before_negotiation_fails_activation() {
        let mut t = transport();
        write(&mut t, 0x70, VIRTIO_CONFIG_S_ACKNOWLEDGE);
        assert_eq!(t.try_activate(), Err(TransportError::NotNegotiated));
        write(
            &mut t,
            0x70,
            VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER_OK,
        );
        assert!(!t.activated);
        assert_ne!(read(&mut t, 0x70) & VIRTIO_CONFIG_S_FAILED, 0);
    }

    #[test]
    fn legacy_drivers_are_refused() {
        let mut t = transport();
        write(
            &mut t,
            0x70,
            VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER,
        );
        write(
            &mut t,
            0x70,
            VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK,
        );
        assert_eq!(read(&mut t, 0x70) & VIRTIO_CONFIG_S_FEATURES_OK, 0);
    }
}
