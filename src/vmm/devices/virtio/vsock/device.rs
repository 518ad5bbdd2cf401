//! The virtio side of vsock: moves packets between the guest's queues and
//! a [`Backend`] (the Unix-socket muxer, or a fake in tests). It knows
//! descriptors and guest memory, nothing of host sockets.

use super::muxer::Muxer;
use super::packet::{Packet, HDR_LEN, MAX_PAYLOAD};
use super::{Backend, Readiness};
use crate::vmm::devices::virtio::queue::{self, Served};
use crate::vmm::devices::virtio::{
    gather, log_device_error, read_config_bytes, scatter, writable_len, Activation, Interrupt,
    VirtioDevice, TYPE_VSOCK,
};
use mio::Registry;
use std::io;
use std::path::{Path, PathBuf};
use virtio_queue::desc::split::Descriptor;
use virtio_queue::Queue;
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap};

/// Queue indices (virtio spec 5.10.2); the event queue is never used.
const RX: usize = 0;
const TX: usize = 1;
const QUEUE_SIZES: [u16; 3] = [256, 256, 16];

struct Active {
    mem: GuestMemoryMmap,
    queues: Vec<Queue>,
    irq: Interrupt,
}

pub struct Vsock<B = Muxer> {
    /// The guest's CID, the device's whole config space.
    config: [u8; 8],
    backend: B,
    active: Option<Active>,
    /// TX chains wait in the ring because the backend could take no more;
    /// they are served once it can again.
    tx_waiting: bool,
    /// One packet's bytes either way, allocated once.
    tx_buf: Vec<u8>,
    rx_buf: Vec<u8>,
}

impl Vsock<Muxer> {
    /// A device for guest `cid` whose host side listens on `uds_path`.
    pub fn new(cid: u64, uds_path: PathBuf) -> io::Result<Self> {
        Ok(Vsock::with_backend(cid, Muxer::new(cid, uds_path)?))
    }

    pub fn uds_path(&self) -> &Path {
        self.backend.uds_path()
    }
}

impl<B: Backend> Vsock<B> {
    pub fn with_backend(cid: u64, backend: B) -> Self {
        Vsock {
            config: cid.to_le_bytes(),
            backend,
            active: None,
            tx_waiting: false,
            tx_buf: Vec::with_capacity(HDR_LEN + MAX_PAYLOAD),
            rx_buf: vec![0u8; MAX_PAYLOAD],
        }
    }

    #[cfg(test)]
    pub fn backend(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Hands the guest's packets to the backend, one chain at a time, for
    /// as long as it takes them.
    fn process_tx(&mut self, registry: &Registry) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let (backend, buf, mem) = (&mut self.backend, &mut self.tx_buf, &active.mem);
        let mut waiting = false;
        queue::drain("vsock", &mut active.queues[TX], mem, &active.irq, |descs| {
            if !backend.tx_ready() {
                waiting = true;
                return Served::Later;
            }
            match gather(mem, descs, HDR_LEN + MAX_PAYLOAD, buf) {
                Ok(()) => match Packet::parse(buf) {
                    Ok(pkt) => backend.send_pkt(registry, &pkt),
                    Err(e) => log_device_error("vsock", &e.to_string()),
                },
                Err(e) => log_device_error("vsock", e),
            }
            Served::Used(0)
        });
        self.tx_waiting = waiting;
    }

    /// Fills the guest's RX buffers with what the backend has for it.
    fn process_rx(&mut self, registry: &Registry) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let (backend, buf, mem) = (&mut self.backend, &mut self.rx_buf, &active.mem);
        queue::drain("vsock", &mut active.queues[RX], mem, &active.irq, |descs| {
            let Some(room) = writable_len(descs).checked_sub(HDR_LEN as u64) else {
                log_device_error("vsock", "RX buffer smaller than a packet header");
                return Served::Used(0);
            };
            let room = room.min(MAX_PAYLOAD as u64) as usize;
            // Checked before the backend gives up a packet for it: a
            // buffer we cannot write must not swallow host data.
            if !writable_in_memory(mem, descs, HDR_LEN + room) {
                log_device_error("vsock", "RX buffer outside guest memory");
                return Served::Used(0);
            }
            let Some(hdr) = backend.recv_pkt(registry, &mut buf[..room]) else {
                return Served::Later;
            };
            match scatter(mem, descs, &[&hdr.encode(), &buf[..hdr.len as usize]]) {
                Ok(len) => Served::Used(len),
                Err(e) => {
                    log_device_error("vsock", e);
                    Served::Used(0)
                }
            }
        });
    }

    /// Serves the queues after a kick or a host event: TX if it was kicked
    /// or has waited, then RX; and TX again for as long as RX makes room
    /// in the backend for what waits there.
    fn serve(&mut self, registry: &Registry, tx_kicked: bool) {
        if tx_kicked || self.tx_waiting {
            self.process_tx(registry);
        }
        loop {
            self.process_rx(registry);
            if !(self.tx_waiting && self.backend.tx_ready()) {
                break;
            }
            self.process_tx(registry);
        }
    }
}

/// Whether the first `n` bytes of a chain's device-writable buffers lie in
/// guest memory (and the buffers hold that many).
fn writable_in_memory(mem: &GuestMemoryMmap, descs: &[Descriptor], mut n: usize) -> bool {
    for d in descs.iter().filter(|d| d.is_write_only()) {
        if n == 0 {
            break;
        }
        let take = (d.len() as usize).min(n);
        if !GuestMemoryBackend::check_range(mem, d.addr(), take) {
            return false;
        }
        n -= take;
    }
    n == 0
}

impl<B: Backend> VirtioDevice for Vsock<B> {
    fn device_type(&self) -> u32 {
        TYPE_VSOCK
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }
    fn features(&self) -> u64 {
        0
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }
    fn activate(&mut self, act: Activation) -> Result<(), String> {
        if act.queues.len() != QUEUE_SIZES.len() {
            return Err(format!("expected 3 queues, got {}", act.queues.len()));
        }
        self.active = Some(Active {
            mem: act.mem,
            queues: act.queues,
            irq: act.interrupt,
        });
        Ok(())
    }
    fn reset(&mut self) {
        self.active = None;
        self.tx_waiting = false;
        self.backend.reset();
    }
    fn register_sources(&mut self, registry: &Registry, token_base: usize) -> io::Result<()> {
        self.backend.register(registry, token_base)
    }
    fn handle_event(&mut self, registry: &Registry, token: usize, event: &mio::event::Event) {
        self.backend
            .handle_event(registry, token, Readiness::from(event));
        self.serve(registry, false);
    }
    fn queue_notify(&mut self, registry: &Registry, index: usize) {
        self.serve(registry, index == TX);
    }
}
