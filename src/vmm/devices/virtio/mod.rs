//! Virtio devices over the MMIO transport.

pub mod block;
pub mod mmio;
pub mod queue;
pub mod rng;
pub mod vsock;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use virtio_bindings::{virtio_config, virtio_mmio::VIRTIO_MMIO_INT_VRING};
use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// A feature bit number from the spec (`virtio_bindings`) as the mask the
/// feature registers carry.
pub const fn feature(bit: u32) -> u64 {
    1 << bit
}

/// The one feature every device here offers and every driver must accept:
/// the transport speaks virtio 1.x only, never the legacy interface.
pub const F_VERSION_1: u64 = feature(virtio_config::VIRTIO_F_VERSION_1);

/// The vsock device's type, for the vsock files.
pub const TYPE_VSOCK: u32 = virtio_bindings::virtio_ids::VIRTIO_ID_VSOCK;

/// A device's interrupt: the status bits the driver reads back, and the
/// irqfd that raises the line.
#[derive(Clone)]
pub struct Interrupt {
    pub status: Arc<AtomicU32>,
    pub evt: Arc<EventFd>,
}

impl Interrupt {
    pub fn signal_used(&self) {
        self.status
            .fetch_or(VIRTIO_MMIO_INT_VRING, Ordering::SeqCst);
        if let Err(e) = self.evt.write(1) {
            log_device_error("interrupt", &format!("cannot raise interrupt: {e}"));
        }
    }
}

/// What a device gets when the driver sets DRIVER_OK.
pub struct Activation {
    pub mem: GuestMemoryMmap,
    pub queues: Vec<Queue>,
    pub interrupt: Interrupt,
}

/// Why a device refused the activation the driver asked for (the
/// transport then sets FAILED in the device status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivateError {
    /// The device serves exactly `expected` queues.
    QueueCount { expected: usize, got: usize },
}

impl std::fmt::Display for ActivateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ActivateError::QueueCount { expected, got } => {
                let s = if *expected == 1 { "" } else { "s" };
                write!(f, "expected {expected} queue{s}, got {got}")
            }
        }
    }
}

impl std::error::Error for ActivateError {}

/// One virtio device model behind the transport.
pub trait VirtioDevice: Send {
    fn device_type(&self) -> u32;
    fn queue_max_sizes(&self) -> &[u16];
    fn features(&self) -> u64;
    fn read_config(&self, offset: u64, data: &mut [u8]);
    fn activate(&mut self, act: Activation) -> Result<(), ActivateError>;
    /// The driver notified queue `index`.
    fn queue_notify(&mut self, registry: &mio::Registry, index: usize);
    /// The driver reset the device: drop the queues and any device state.
    fn reset(&mut self);
    /// Whether the queues are served on an I/O thread of the device's own
    /// rather than the shared device thread: true for devices whose
    /// requests block on host I/O, so a disk write never holds up the
    /// vsock stream (a pushed archive is received and written back at
    /// the same time).
    fn own_io_thread(&self) -> bool {
        false
    }
    /// Extra event sources (host sockets) the device wants polled; tokens
    /// are device-local and come back through `handle_event`.
    fn register_sources(
        &mut self,
        _registry: &mio::Registry,
        _token_base: usize,
    ) -> std::io::Result<()> {
        Ok(())
    }
    fn handle_event(
        &mut self,
        _registry: &mio::Registry,
        _token: usize,
        _event: &mio::event::Event,
    ) {
    }
}

/// Device errors the VMM log takes in full. An honest guest causes none or
/// a handful; a hostile one can cause one per queue kick, forever. At
/// about 100 bytes a line this keeps `vmm.log` near 100 KiB.
pub const DEVICE_ERROR_LOG_LINES: u64 = 1000;

static DEVICE_ERRORS: AtomicU64 = AtomicU64::new(0);

/// Guest-caused device errors go to the VMM log, never a panic: a guest
/// that misbehaves only hurts itself. Past [`DEVICE_ERROR_LOG_LINES`] they
/// are counted, and the count is logged at each power of two (so the log
/// stays bounded and still says the errors go on).
pub fn log_device_error(device: &str, msg: &str) {
    if let Some(line) = device_error_line(
        DEVICE_ERRORS.fetch_add(1, Ordering::Relaxed) + 1,
        device,
        msg,
    ) {
        eprintln!("{line}");
    }
}

/// What the `n`th device error (from 1) puts in the log, if anything.
fn device_error_line(n: u64, device: &str, msg: &str) -> Option<String> {
    if n <= DEVICE_ERROR_LOG_LINES {
        let mut line = format!("pyro-vmm: {device}: {msg}");
        if n == DEVICE_ERROR_LOG_LINES {
            line.push_str(&format!(
                "\npyro-vmm: {n} device errors logged; later ones are only counted"
            ));
        }
        return Some(line);
    }
    n.is_power_of_two()
        .then(|| format!("pyro-vmm: {n} device errors so far (latest: {device}: {msg})"))
}

/// Reads a little-endian config field window, clamped to the field.
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let off = offset as usize;
    if off < config.len() {
        let n = data.len().min(config.len() - off);
        data[..n].copy_from_slice(&config[off..off + n]);
    }
}

/// Copies `parts` into the device-writable descriptors of a chain, in
/// order; returns the bytes written. Fails if guest memory is out of range
/// or the buffers are too small.
pub fn scatter(
    mem: &GuestMemoryMmap,
    descs: &[virtio_queue::desc::split::Descriptor],
    parts: &[&[u8]],
) -> Result<u32, &'static str> {
    use vm_memory::{Bytes, GuestAddress};
    let mut writable = descs.iter().filter(|d| d.is_write_only());
    let mut cur = writable.next();
    let mut used_in_cur = 0u32;
    let mut total = 0u32;
    for part in parts {
        let mut rest = *part;
        while !rest.is_empty() {
            let d = cur.ok_or("guest buffer too small")?;
            let room = d.len() - used_in_cur;
            if room == 0 {
                cur = writable.next();
                used_in_cur = 0;
                continue;
            }
            let n = (room as usize).min(rest.len());
            // The guest chose the address: an end past u64::MAX is outside
            // its memory, not an overflow.
            let at = d
                .addr()
                .0
                .checked_add(u64::from(used_in_cur))
                .ok_or("buffer outside guest memory")?;
            mem.write_slice(&rest[..n], GuestAddress(at))
                .map_err(|_| "buffer outside guest memory")?;
            used_in_cur += n as u32;
            total += n as u32;
            rest = &rest[n..];
        }
    }
    Ok(total)
}

/// Total capacity of a chain's device-writable descriptors.
pub fn writable_len(descs: &[virtio_queue::desc::split::Descriptor]) -> u64 {
    descs
        .iter()
        .filter(|d| d.is_write_only())
        .map(|d| d.len() as u64)
        .sum()
}

/// Reads up to `max` bytes from a chain's device-readable descriptors.
pub fn gather(
    mem: &GuestMemoryMmap,
    descs: &[virtio_queue::desc::split::Descriptor],
    max: usize,
    out: &mut Vec<u8>,
) -> Result<(), &'static str> {
    use vm_memory::Bytes;
    out.clear();
    for d in descs.iter().filter(|d| !d.is_write_only()) {
        let n = (d.len() as usize).min(max - out.len());
        if n == 0 {
            break;
        }
        let start = out.len();
        out.resize(start + n, 0);
        mem.read_slice(&mut out[start..], d.addr())
            .map_err(|_| "buffer outside guest memory")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_queue::desc::split::Descriptor;
    use vm_memory::GuestAddress;

    const WRITE: u16 = virtio_bindings::virtio_ring::VRING_DESC_F_WRITE as u16;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 16)]).unwrap()
    }

    #[test]
    fn device_errors_past_the_cap_are_counted_not_logged() {
        let lines: Vec<String> = (1..=1_000_000u64)
            .filter_map(|n| device_error_line(n, "virtio-blk", "malformed request"))
            .collect();
        // The first DEVICE_ERROR_LOG_LINES in full, then one per power of two.
        assert_eq!(lines.len() as u64, DEVICE_ERROR_LOG_LINES + 10);
        assert!(lines[0].ends_with("virtio-blk: malformed request"));
        assert!(lines[DEVICE_ERROR_LOG_LINES as usize - 1].contains("later ones are only counted"));
        assert!(lines
            .last()
            .unwrap()
            .contains("524288 device errors so far"));
        let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
        assert!(bytes < 128 * 1024, "{bytes}");
    }

    #[test]
    fn scatter_refuses_buffers_at_the_top_of_the_address_space() {
        let m = mem();
        let descs = [Descriptor::new(u64::MAX - 1, 16, WRITE, 0)];
        assert_eq!(
            scatter(&m, &descs, &[b"abcd", b"efgh"]),
            Err("buffer outside guest memory")
        );
        // The same parts fit a buffer inside memory, across descriptors.
        let descs = [
            Descriptor::new(0x100, 3, WRITE, 0),
            Descriptor::new(0x200, 0, WRITE, 0),
            Descriptor::new(0x300, 16, WRITE, 0),
        ];
        assert_eq!(scatter(&m, &descs, &[b"abcd", b"efgh"]), Ok(8));
        let mut got = [0u8; 5];
        vm_memory::Bytes::read_slice(&m, &mut got, GuestAddress(0x300)).unwrap();
        assert_eq!(&got, b"defgh");
        assert_eq!(
            scatter(&m, &descs[..1], &[b"abcd"]),
            Err("guest buffer too small")
        );
    }

    #[test]
    fn writable_len_and_gather_take_hostile_lengths() {
        let m = mem();
        let descs = [
            Descriptor::new(0, u32::MAX, WRITE, 0),
            Descriptor::new(0, u32::MAX, WRITE, 0),
            Descriptor::new(0x10, u32::MAX, 0, 0),
        ];
        assert_eq!(writable_len(&descs), 2 * u64::from(u32::MAX));
        // A readable buffer longer than memory: the cap bounds the copy.
        let mut out = Vec::new();
        gather(&m, &descs, 64, &mut out).unwrap();
        assert_eq!(out.len(), 64);
    }
}
