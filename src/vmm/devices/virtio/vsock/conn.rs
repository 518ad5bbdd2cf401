//! One host-initiated stream: a host Unix socket spliced to a guest port,
//! with the virtio-vsock credit accounting for both directions.

use mio::net::UnixStream;
use std::io::{self, Read, Write};

/// What we advertise as our receive buffer per connection. The guest never
/// sends more than this ahead of what we have forwarded to the host.
pub const CONN_BUF_ALLOC: u32 = 256 * 1024;

#[derive(Debug, PartialEq, Clone, Copy)]
pub enum State {
    /// REQUEST sent to the guest, waiting for RESPONSE or RST.
    Connecting,
    Established,
}

pub struct Conn {
    pub stream: UnixStream,
    pub local_port: u32,
    pub peer_port: u32,
    pub state: State,
    /// Guest's receive buffer and how much of it it has consumed.
    pub peer_buf_alloc: u32,
    pub peer_fwd_cnt: u32,
    /// Bytes we have sent to the guest.
    pub tx_cnt: u32,
    /// Bytes from the guest we have delivered to the host stream.
    pub fwd_cnt: u32,
    pub last_fwd_cnt_sent: u32,
    /// Leading bytes of `to_host` that are ours (the `OK` line), not guest data.
    preamble: usize,
    /// Guest data the host stream could not take yet (bounded by our credit).
    pub to_host: Vec<u8>,
    /// Host bytes that arrived with the CONNECT line, before the guest accepted.
    pub early: Vec<u8>,
    /// The host stream had data last time we looked (mio is edge-triggered).
    pub host_readable: bool,
    pub host_eof: bool,
    /// The guest will send no more; close once `to_host` is flushed.
    pub guest_done: bool,
}

impl Conn {
    pub fn new(stream: UnixStream, local_port: u32, peer_port: u32, early: Vec<u8>) -> Self {
        Conn {
            stream,
            local_port,
            peer_port,
            state: State::Connecting,
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
            tx_cnt: 0,
            fwd_cnt: 0,
            last_fwd_cnt_sent: 0,
            preamble: 0,
            to_host: Vec::new(),
            early,
            host_readable: true,
            host_eof: false,
            guest_done: false,
        }
    }

    /// Bytes we may still send before the guest's buffer is full.
    pub fn peer_credit(&self) -> u32 {
        self.peer_buf_alloc
            .saturating_sub(self.tx_cnt.wrapping_sub(self.peer_fwd_cnt))
    }

    /// Queues guest data for the host and writes as much as the stream takes.
    pub fn push_to_host(&mut self, data: &[u8]) -> io::Result<()> {
        if self.to_host.len() - self.preamble + data.len() > CONN_BUF_ALLOC as usize {
            return Err(io::Error::other("guest overran its credit"));
        }
        self.to_host.extend_from_slice(data);
        self.flush_to_host()
    }

    /// Queues bytes of our own (not guest data) ahead of everything else.
    pub fn push_preamble(&mut self, data: &[u8]) -> io::Result<()> {
        self.preamble += data.len();
        self.to_host.splice(0..0, data.iter().copied());
        self.flush_to_host()
    }

    pub fn flush_to_host(&mut self) -> io::Result<()> {
        while !self.to_host.is_empty() {
            match self.stream.write(&self.to_host) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.to_host.drain(..n);
                    let ours = n.min(self.preamble);
                    self.preamble -= ours;
                    self.fwd_cnt = self.fwd_cnt.wrapping_add((n - ours) as u32);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads host data for the guest; `Ok(0)` with `host_eof` set at EOF.
    pub fn read_from_host(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.early.is_empty() {
            let n = buf.len().min(self.early.len());
            buf[..n].copy_from_slice(&self.early[..n]);
            self.early.drain(..n);
            return Ok(n);
        }
        loop {
            match self.stream.read(buf) {
                Ok(0) => {
                    self.host_eof = true;
                    self.host_readable = false;
                    return Ok(0);
                }
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.host_readable = false;
                    return Ok(0);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether the guest should hear about our progress draining its data.
    pub fn wants_credit_update(&self) -> bool {
        self.fwd_cnt.wrapping_sub(self.last_fwd_cnt_sent) >= CONN_BUF_ALLOC / 4
    }
}
