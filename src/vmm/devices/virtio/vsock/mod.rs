//! virtio-vsock with Firecracker's hybrid host side: the host connects to a
//! Unix socket, writes `CONNECT <port>\n`, and once the guest accepts, reads
//! `OK <host port>\n` followed by the stream.
//!
//! One file per layer, each tested against a fake of the one below it:
//! - `device`: the virtio device; moves packets between the guest's
//!   queues and a [`Backend`] (queues <-> packets).
//! - `muxer`: the backend; the Unix listener, the CONNECT handshake, and
//!   the connections by port pair.
//! - `connection`: one stream's state machine and credit accounting.
//! - `packet`: the header, and the parse of a guest packet.
//! - `test_utils`: the fakes (a backend, a guest driver, host sockets).

mod connection;
mod device;
mod muxer;
mod packet;
#[cfg(test)]
mod test_utils;

pub use device::Vsock;

use mio::Registry;
use packet::{Header, Packet};
use std::io;

/// How a host socket became ready: the parts of a mio event the muxer
/// reads, as plain data so the layers below can be driven without a
/// poller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Readiness {
    pub readable: bool,
    pub writable: bool,
    pub read_closed: bool,
    pub write_closed: bool,
    pub error: bool,
}

impl From<&mio::event::Event> for Readiness {
    fn from(e: &mio::event::Event) -> Self {
        Readiness {
            readable: e.is_readable(),
            writable: e.is_writable(),
            read_closed: e.is_read_closed(),
            write_closed: e.is_write_closed(),
            error: e.is_error(),
        }
    }
}

/// The host side of the device, as the device sees it: where guest
/// packets go and host packets come from (Firecracker's `VsockBackend`).
pub trait Backend: Send {
    /// Takes a packet the guest sent (parsed: its payload is exactly the
    /// length its header announces).
    fn send_pkt(&mut self, registry: &Registry, pkt: &Packet<'_>);
    /// Whether it can take another packet from the guest now. While it
    /// cannot, the device leaves the guest's TX chains in the ring: what
    /// the backend holds for the guest stays bounded even when the guest
    /// sends without ever posting an RX buffer.
    fn tx_ready(&self) -> bool;
    /// The next packet for the guest, its payload written to the start of
    /// `buf` (at most `buf.len()` bytes, the room in the guest's buffer);
    /// None when nothing waits.
    fn recv_pkt(&mut self, registry: &Registry, buf: &mut [u8]) -> Option<Header>;
    /// Registers the backend's host sockets; their events come back to
    /// `handle_event` with `token_base` taken off.
    fn register(&mut self, registry: &Registry, token_base: usize) -> io::Result<()>;
    fn handle_event(&mut self, registry: &Registry, token: usize, readiness: Readiness);
    /// The driver reset the device: drop what waits for the guest.
    fn reset(&mut self);
}
