//! One host-initiated stream: a host Unix socket spliced to a guest port,
//! and the state machine that takes it from REQUEST to its end, with the
//! credit accounting for both directions.
//!
//! The protocol in brief (virtio spec 5.10.6), as this side uses it:
//! - Opening: we send REQUEST; the guest answers RESPONSE if something
//!   listens on the port, RST if not.
//! - Data goes in RW packets. Every packet either way carries its
//!   sender's `buf_alloc` (what it buffers for this stream) and `fwd_cnt`
//!   (how much of what it received it has passed on). A sender may have
//!   at most `buf_alloc - (sent - fwd_cnt)` bytes in flight: its credit.
//!   A receiver that has passed data on tells the sender with a
//!   CREDIT_UPDATE (unasked once enough has gone, or when the sender asks
//!   with CREDIT_REQUEST).
//! - Closing: SHUTDOWN says a side is done (flags RCV and SEND); RST ends
//!   the stream at once.
//!
//! Guest data the host socket cannot take at once waits in `to_host`. We
//! advertise [`CONN_BUF_ALLOC`], so an honest guest never has more than
//! that in flight; a guest that sends more is reset. Host memory per
//! connection stays bounded whatever the guest sends.

use super::packet::*;
use super::Readiness;
use crate::vmm::devices::virtio::log_device_error;
use mio::net::UnixStream;
use std::io::{self, Read, Write};

/// What we advertise as our receive buffer per connection. The guest never
/// sends more than this ahead of what we have forwarded to the host.
pub const CONN_BUF_ALLOC: u32 = 256 * 1024;

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum State {
    /// REQUEST sent to the guest, waiting for RESPONSE or RST.
    Connecting,
    Established,
}

/// What the muxer does after a connection took a packet or an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing more.
    Stay,
    /// Send this control packet to the guest; the stream goes on.
    Reply(Header),
    /// The stream is over: forget it, and reset the guest's end if `rst`.
    Close { rst: bool },
    /// Send this control packet, then close with an RST: the last of a
    /// finished guest's data went out and earned a CREDIT_UPDATE.
    ReplyAndClose(Header),
}

/// What the host side has for the guest.
#[derive(Debug, PartialEq, Eq)]
pub enum ToGuest {
    /// An RW packet; its payload is the first `len` bytes of the buffer.
    Data(Header),
    /// The host will send no more: a SHUTDOWN for the guest.
    Eof(Header),
    /// Nothing now: no bytes waiting, no credit, or no room.
    Nothing,
    /// The host stream failed: close, with an RST for the guest.
    Failed,
}

pub struct Connection {
    pub stream: UnixStream,
    peer_cid: u64,
    /// Our port (picked by the muxer) and the guest's (from CONNECT).
    pub local_port: u32,
    pub peer_port: u32,
    state: State,
    /// The guest's receive buffer and how much of it it has passed on,
    /// from the last packet it sent.
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
    /// Bytes we have sent to the guest (wrapping, as the spec's counters).
    tx_cnt: u32,
    /// Bytes from the guest we have delivered to the host stream.
    fwd_cnt: u32,
    /// `fwd_cnt` as the guest last heard it.
    last_fwd_cnt_sent: u32,
    /// Leading bytes of `to_host` that are ours (the `OK` line), not guest
    /// data: they use no guest credit and do not count in `fwd_cnt`.
    preamble: usize,
    /// Guest data the host stream could not take yet (bounded by our credit).
    to_host: Vec<u8>,
    /// Host bytes that arrived with the CONNECT line, before the guest accepted.
    early: Vec<u8>,
    /// The host stream had data last time we looked (mio is edge-triggered).
    host_readable: bool,
    host_eof: bool,
    /// The guest will send no more; close once `to_host` is flushed.
    guest_done: bool,
}

impl Connection {
    pub fn new(
        stream: UnixStream,
        peer_cid: u64,
        local_port: u32,
        peer_port: u32,
        early: Vec<u8>,
    ) -> Self {
        Connection {
            stream,
            peer_cid,
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

    pub fn state(&self) -> State {
        self.state
    }

    /// A packet from our end of this stream, carrying our credit.
    pub fn header(&self, op: u16, len: u32, flags: u32) -> Header {
        Header {
            src_cid: HOST_CID,
            dst_cid: self.peer_cid,
            src_port: self.local_port,
            dst_port: self.peer_port,
            len,
            type_: TYPE_STREAM,
            op,
            flags,
            buf_alloc: CONN_BUF_ALLOC,
            fwd_cnt: self.fwd_cnt,
        }
    }

    /// Tells the guest how much of its data the host has taken: the one
    /// place a CREDIT_UPDATE is made.
    pub fn credit_update(&mut self) -> Header {
        self.last_fwd_cnt_sent = self.fwd_cnt;
        self.header(OP_CREDIT_UPDATE, 0, 0)
    }

    /// A CREDIT_UPDATE once the guest's view of our buffer is a quarter of
    /// it behind, so a guest writing steadily never stalls on credit.
    fn credit_update_if_due(&mut self) -> Next {
        if self.fwd_cnt.wrapping_sub(self.last_fwd_cnt_sent) >= CONN_BUF_ALLOC / 4 {
            Next::Reply(self.credit_update())
        } else {
            Next::Stay
        }
    }

    /// Bytes we may still send before the guest's buffer is full.
    pub fn peer_credit(&self) -> u32 {
        self.peer_buf_alloc
            .saturating_sub(self.tx_cnt.wrapping_sub(self.peer_fwd_cnt))
    }

    /// A packet the guest sent on this stream.
    pub fn on_guest_packet(&mut self, pkt: &Packet<'_>) -> Next {
        let hdr = &pkt.hdr;
        self.peer_buf_alloc = hdr.buf_alloc;
        self.peer_fwd_cnt = hdr.fwd_cnt;
        if hdr.type_ != TYPE_STREAM {
            return Next::Close { rst: true };
        }
        match hdr.op {
            OP_RESPONSE if self.state == State::Connecting => {
                self.state = State::Established;
                let ok = format!("OK {}\n", self.local_port);
                match self.push_preamble(ok.as_bytes()) {
                    Ok(()) => Next::Stay,
                    Err(_) => Next::Close { rst: true },
                }
            }
            OP_RW if self.state == State::Established => {
                if let Err(e) = self.push_to_host(pkt.payload) {
                    if e.kind() != io::ErrorKind::BrokenPipe {
                        log_device_error("vsock", &format!("port {}: {e}", self.peer_port));
                    }
                    return Next::Close { rst: true };
                }
                self.credit_update_if_due()
            }
            OP_CREDIT_UPDATE => Next::Stay,
            OP_CREDIT_REQUEST => Next::Reply(self.credit_update()),
            OP_SHUTDOWN => {
                if hdr.flags & (SHUTDOWN_SEND | SHUTDOWN_RCV) != 0 {
                    self.guest_done = true;
                    if self.to_host.is_empty() {
                        return Next::Close { rst: true };
                    }
                }
                Next::Stay
            }
            OP_RST => Next::Close { rst: false },
            // A second RESPONSE, data before the handshake, a REQUEST for
            // a stream we opened, or an op we do not know.
            _ => Next::Close { rst: true },
        }
    }

    /// The host stream became readable or writable. (A hang-up while
    /// connecting is the muxer's to handle: it may withdraw the REQUEST.)
    pub fn host_event(&mut self, r: Readiness) -> Next {
        if r.readable || r.read_closed {
            self.host_readable = true;
        }
        let mut next = Next::Stay;
        if r.writable && !self.to_host.is_empty() {
            if self.flush_to_host().is_err() {
                return Next::Close { rst: true };
            }
            next = self.credit_update_if_due();
        }
        if self.guest_done && self.to_host.is_empty() {
            return match next {
                Next::Reply(h) => Next::ReplyAndClose(h),
                _ => Next::Close { rst: true },
            };
        }
        next
    }

    /// Whether [`Connection::next_for_guest`] may have a packet now.
    pub fn has_data_for_guest(&self) -> bool {
        self.state == State::Established
            && (self.host_readable || !self.early.is_empty())
            && !self.host_eof
            && self.peer_credit() > 0
    }

    /// Reads host data for the guest into `buf`, at most the guest's
    /// credit; at the host's EOF, the SHUTDOWN that says so.
    pub fn next_for_guest(&mut self, buf: &mut [u8]) -> ToGuest {
        if buf.is_empty() || !self.has_data_for_guest() {
            return ToGuest::Nothing;
        }
        let want = buf.len().min(self.peer_credit() as usize);
        match self.read_from_host(&mut buf[..want]) {
            Err(_) => ToGuest::Failed,
            Ok(0) if self.host_eof => {
                ToGuest::Eof(self.header(OP_SHUTDOWN, 0, SHUTDOWN_SEND | SHUTDOWN_RCV))
            }
            Ok(0) => ToGuest::Nothing,
            Ok(n) => {
                // At most MAX_PAYLOAD, so it fits.
                let n = n as u32;
                self.tx_cnt = self.tx_cnt.wrapping_add(n);
                self.last_fwd_cnt_sent = self.fwd_cnt;
                ToGuest::Data(self.header(OP_RW, n, 0))
            }
        }
    }

    /// Queues guest data for the host and writes as much as the stream takes.
    fn push_to_host(&mut self, data: &[u8]) -> io::Result<()> {
        if self.to_host.len() - self.preamble + data.len() > CONN_BUF_ALLOC as usize {
            return Err(io::Error::other("guest overran its credit"));
        }
        self.to_host.extend_from_slice(data);
        self.flush_to_host()
    }

    /// Queues bytes of our own (not guest data) ahead of everything else.
    fn push_preamble(&mut self, data: &[u8]) -> io::Result<()> {
        self.preamble += data.len();
        self.to_host.splice(0..0, data.iter().copied());
        self.flush_to_host()
    }

    fn flush_to_host(&mut self) -> io::Result<()> {
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
    fn read_from_host(&mut self, buf: &mut [u8]) -> io::Result<usize> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::devices::virtio::vsock::test_utils::*;
    use std::os::unix::net::UnixStream as StdStream;
    use std::time::Duration;

    const LOCAL: u32 = FIRST_HOST_PORT;

    /// A connection over a real socket pair, and the host's end of it.
    fn conn(early: &[u8]) -> (Connection, StdStream) {
        let (ours, host) = StdStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let c = Connection::new(
            UnixStream::from_std(ours),
            GUEST_CID,
            LOCAL,
            GUEST_PORT,
            early.to_vec(),
        );
        (c, host)
    }

    /// Hands the connection a guest packet.
    fn send(c: &mut Connection, hdr: Header, payload: &[u8]) -> Next {
        c.on_guest_packet(&Packet { hdr, payload })
    }

    /// A connection the guest has accepted, the host's `OK` line read.
    fn established() -> (Connection, StdStream) {
        let (mut c, mut host) = conn(b"");
        assert_eq!(
            send(&mut c, from_guest(OP_RESPONSE, LOCAL), b""),
            Next::Stay
        );
        assert_eq!(host_read(&mut host, 14), b"OK 1073741824\n");
        (c, host)
    }

    #[test]
    fn the_guests_response_establishes_the_stream_and_the_host_reads_ok_with_our_port() {
        let (mut c, mut host) = conn(b"");
        assert_eq!(c.state(), State::Connecting);
        let req = c.header(OP_REQUEST, 0, 0);
        assert_eq!(
            (req.src_cid, req.dst_cid, req.src_port, req.dst_port),
            (HOST_CID, GUEST_CID, LOCAL, GUEST_PORT)
        );
        assert_eq!(
            send(&mut c, from_guest(OP_RESPONSE, LOCAL), b""),
            Next::Stay
        );
        assert_eq!(c.state(), State::Established);
        assert_eq!(host_read(&mut host, 14), b"OK 1073741824\n");
        // Our own line uses none of the guest's credit.
        assert_eq!(c.fwd_cnt, 0);
        // A second RESPONSE is a protocol error.
        assert_eq!(
            send(&mut c, from_guest(OP_RESPONSE, LOCAL), b""),
            Next::Close { rst: true }
        );
    }

    #[test]
    fn data_before_the_handshake_or_of_another_type_resets_the_stream() {
        let (mut c, _host) = conn(b"");
        assert_eq!(
            send(&mut c, guest_rw(LOCAL, b"early"), b"early"),
            Next::Close { rst: true }
        );
        let (mut c, _host) = established();
        let dgram = Header {
            type_: 2,
            ..guest_rw(LOCAL, b"x")
        };
        assert_eq!(send(&mut c, dgram, b"x"), Next::Close { rst: true });
        let (mut c, _host) = established();
        assert_eq!(
            send(&mut c, from_guest(OP_REQUEST, LOCAL), b""),
            Next::Close { rst: true }
        );
        let (mut c, _host) = established();
        assert_eq!(
            send(&mut c, from_guest(99, LOCAL), b""),
            Next::Close { rst: true }
        );
    }

    #[test]
    fn host_data_goes_to_the_guest_only_as_far_as_its_credit() {
        let (mut c, mut host) = conn(b"early ");
        // Nothing before the guest accepts, whatever the host sent.
        let mut buf = vec![0u8; MAX_PAYLOAD];
        assert_eq!(c.next_for_guest(&mut buf), ToGuest::Nothing);
        let accept = Header {
            buf_alloc: 10,
            ..from_guest(OP_RESPONSE, LOCAL)
        };
        send(&mut c, accept, b"");
        host_read(&mut host, 14);
        host_write(&mut host, b"and the rest of it");
        // The bytes that came with the CONNECT line go first.
        let ToGuest::Data(h) = c.next_for_guest(&mut buf) else {
            panic!("no data");
        };
        assert_eq!((h.op, h.len, &buf[..6]), (OP_RW, 6, &b"early "[..]));
        let ToGuest::Data(h) = c.next_for_guest(&mut buf) else {
            panic!("no data");
        };
        assert_eq!(&buf[..h.len as usize], b"and ");
        // Credit exhausted: 10 bytes sent, none passed on by the guest.
        assert_eq!(c.peer_credit(), 0);
        assert!(!c.has_data_for_guest());
        assert_eq!(c.next_for_guest(&mut buf), ToGuest::Nothing);
        // A CREDIT_UPDATE from the guest opens the window again.
        let update = Header {
            buf_alloc: 10,
            fwd_cnt: 10,
            ..from_guest(OP_CREDIT_UPDATE, LOCAL)
        };
        assert_eq!(send(&mut c, update, b""), Next::Stay);
        assert_eq!(c.peer_credit(), 10);
        let ToGuest::Data(h) = c.next_for_guest(&mut buf) else {
            panic!("no data");
        };
        assert_eq!(&buf[..h.len as usize], b"the rest o");
        // A guest buffer smaller than the credit bounds the packet too.
        let update = Header {
            buf_alloc: 10,
            fwd_cnt: 20,
            ..from_guest(OP_CREDIT_UPDATE, LOCAL)
        };
        send(&mut c, update, b"");
        let ToGuest::Data(h) = c.next_for_guest(&mut buf[..2]) else {
            panic!("no data");
        };
        assert_eq!(&buf[..h.len as usize], b"f ");
        // The counters wrap as the spec's do.
        c.tx_cnt = u32::MAX - 1;
        c.peer_fwd_cnt = u32::MAX - 1;
        c.peer_buf_alloc = 10;
        assert_eq!(c.peer_credit(), 10);
        c.tx_cnt = 3;
        assert_eq!(c.peer_credit(), 5);
    }

    #[test]
    fn guest_data_reaches_the_host_and_a_credit_update_follows_each_quarter_of_the_buffer() {
        let (mut c, mut host) = established();
        let chunk = vec![7u8; 16 * 1024];
        // 64 KiB is a quarter of what we advertise: the fourth chunk brings
        // a CREDIT_UPDATE with everything passed on so far.
        for _ in 0..3 {
            assert_eq!(send(&mut c, guest_rw(LOCAL, &chunk), &chunk), Next::Stay);
        }
        let Next::Reply(h) = send(&mut c, guest_rw(LOCAL, &chunk), &chunk) else {
            panic!("no credit update");
        };
        assert_eq!(
            (h.op, h.fwd_cnt, h.buf_alloc, h.dst_port),
            (OP_CREDIT_UPDATE, 64 * 1024, CONN_BUF_ALLOC, GUEST_PORT)
        );
        assert_eq!(host_read(&mut host, 64 * 1024), vec![7u8; 64 * 1024]);
        // The next one comes a quarter later, not at once.
        assert_eq!(send(&mut c, guest_rw(LOCAL, &chunk), &chunk), Next::Stay);
        // A CREDIT_REQUEST is answered at once.
        let Next::Reply(h) = send(&mut c, from_guest(OP_CREDIT_REQUEST, LOCAL), b"") else {
            panic!("no credit update");
        };
        assert_eq!((h.op, h.fwd_cnt), (OP_CREDIT_UPDATE, 80 * 1024));
        // Each RW packet to the guest carries our count too.
        host_write(&mut host, b"x");
        let mut buf = [0u8; 16];
        let ToGuest::Data(h) = c.next_for_guest(&mut buf) else {
            panic!("no data");
        };
        assert_eq!(h.fwd_cnt, 80 * 1024);
    }

    #[test]
    fn a_slow_host_gets_its_data_when_writable_and_the_guest_its_credit_back() {
        let (mut c, mut host) = established();
        // Fill the host socket, then keep 64 KiB more: the guest may, its
        // credit allows four times that.
        let chunk = vec![1u8; 16 * 1024];
        let mut sent = 0;
        while c.to_host.len() < 64 * 1024 {
            assert!(matches!(
                send(&mut c, guest_rw(LOCAL, &chunk), &chunk),
                Next::Stay | Next::Reply(_)
            ));
            sent += chunk.len();
        }
        let kept = c.to_host.len();
        assert_eq!(c.fwd_cnt as usize, sent - kept);
        // The guest asks where we are, and hears it.
        let Next::Reply(h) = send(&mut c, from_guest(OP_CREDIT_REQUEST, LOCAL), b"") else {
            panic!("no credit update");
        };
        assert_eq!(h.fwd_cnt as usize, sent - kept);
        // The host drains its socket; the writable event sends what we
        // kept (it fits the emptied socket) and the guest gets its credit
        // back.
        assert_eq!(host_read(&mut host, sent - kept).len(), sent - kept);
        let next = c.host_event(Readiness {
            writable: true,
            ..Default::default()
        });
        assert!(c.to_host.is_empty());
        assert_eq!(c.fwd_cnt as usize, sent);
        let Next::Reply(h) = next else {
            panic!("no credit update after the flush: {next:?}");
        };
        assert_eq!((h.op, h.fwd_cnt as usize), (OP_CREDIT_UPDATE, sent));
        assert_eq!(host_read(&mut host, kept).len(), kept);
        // Nothing more to flush, nothing more to say.
        let idle = Readiness {
            writable: true,
            ..Default::default()
        };
        assert_eq!(c.host_event(idle), Next::Stay);
    }

    #[test]
    fn a_guest_that_overruns_its_credit_is_reset_and_the_host_buffers_no_more() {
        let (mut c, _host) = established();
        // The host reads nothing: the socket fills, then our buffer.
        let chunk = vec![9u8; MAX_PAYLOAD];
        let mut packets = 0;
        let next = loop {
            let next = send(&mut c, guest_rw(LOCAL, &chunk), &chunk);
            assert!(c.to_host.len() <= CONN_BUF_ALLOC as usize);
            packets += 1;
            if next == (Next::Close { rst: true }) {
                break next;
            }
            assert!(packets < 1000, "never reset");
        };
        assert_eq!(next, Next::Close { rst: true });
        // The packet that would have gone past our buffer was not kept.
        assert!(c.to_host.len() + chunk.len() > CONN_BUF_ALLOC as usize);
        // Exactly our buffer is fine: a guest that keeps to its credit is
        // never reset.
        let (mut c, _host) = established();
        while c.to_host.is_empty() {
            send(&mut c, guest_rw(LOCAL, &chunk[..1024]), &chunk[..1024]);
        }
        let room = CONN_BUF_ALLOC as usize - c.to_host.len();
        let fill = vec![3u8; room];
        for part in fill.chunks(MAX_PAYLOAD) {
            assert_ne!(
                send(&mut c, guest_rw(LOCAL, part), part),
                Next::Close { rst: true }
            );
        }
        assert_eq!(c.to_host.len(), CONN_BUF_ALLOC as usize);
        assert_eq!(
            send(&mut c, guest_rw(LOCAL, b"!"), b"!"),
            Next::Close { rst: true }
        );
    }

    #[test]
    fn a_guest_shutdown_closes_once_its_data_is_flushed() {
        let (mut c, _host) = established();
        // No flags: nothing said, nothing done.
        assert_eq!(
            send(&mut c, from_guest(OP_SHUTDOWN, LOCAL), b""),
            Next::Stay
        );
        let bye = Header {
            flags: SHUTDOWN_SEND,
            ..from_guest(OP_SHUTDOWN, LOCAL)
        };
        assert_eq!(send(&mut c, bye, b""), Next::Close { rst: true });

        let (mut c, mut host) = established();
        let chunk = vec![5u8; 32 * 1024];
        let mut sent = 0;
        while c.to_host.is_empty() {
            send(&mut c, guest_rw(LOCAL, &chunk), &chunk);
            sent += chunk.len();
        }
        let bye = Header {
            flags: SHUTDOWN_SEND | SHUTDOWN_RCV,
            ..from_guest(OP_SHUTDOWN, LOCAL)
        };
        // Data still waits for the host: the stream stays until it is out.
        assert_eq!(send(&mut c, bye, b""), Next::Stay);
        // The guest last heard of our progress a quarter buffer ago, so
        // the flush that ends the stream earns a CREDIT_UPDATE first.
        c.last_fwd_cnt_sent = c.fwd_cnt.wrapping_sub(CONN_BUF_ALLOC / 4);
        // The host drains its socket; what we kept (under 32 KiB) then
        // goes in one write.
        let kept = c.to_host.len();
        assert_eq!(host_read(&mut host, sent - kept).len(), sent - kept);
        let next = c.host_event(Readiness {
            writable: true,
            ..Default::default()
        });
        let Next::ReplyAndClose(h) = next else {
            panic!("{next:?}");
        };
        assert_eq!((h.op, h.fwd_cnt as usize), (OP_CREDIT_UPDATE, sent));
        assert_eq!(host_read(&mut host, kept).len(), kept);
    }

    #[test]
    fn a_guest_rst_closes_without_a_reply() {
        let (mut c, _host) = conn(b"");
        assert_eq!(
            send(&mut c, from_guest(OP_RST, LOCAL), b""),
            Next::Close { rst: false }
        );
        let (mut c, _host) = established();
        assert_eq!(
            send(&mut c, from_guest(OP_RST, LOCAL), b""),
            Next::Close { rst: false }
        );
    }

    #[test]
    fn the_hosts_eof_is_one_shutdown_for_the_guest() {
        let (mut c, mut host) = established();
        host_write(&mut host, b"last words");
        host.shutdown(std::net::Shutdown::Write).unwrap();
        let mut buf = vec![0u8; 64];
        let ToGuest::Data(h) = c.next_for_guest(&mut buf) else {
            panic!("no data");
        };
        assert_eq!(&buf[..h.len as usize], b"last words");
        let ToGuest::Eof(h) = c.next_for_guest(&mut buf) else {
            panic!("no shutdown");
        };
        assert_eq!(
            (h.op, h.flags, h.len),
            (OP_SHUTDOWN, SHUTDOWN_SEND | SHUTDOWN_RCV, 0)
        );
        assert!(!c.has_data_for_guest());
        assert_eq!(c.next_for_guest(&mut buf), ToGuest::Nothing);
        // The guest can still send; the host still gets it.
        assert_eq!(send(&mut c, guest_rw(LOCAL, b"ack"), b"ack"), Next::Stay);
        assert_eq!(host_read(&mut host, 3), b"ack");
    }

    #[test]
    fn a_read_event_marks_the_host_readable_again() {
        let (mut c, mut host) = established();
        let mut buf = vec![0u8; 64];
        // Nothing there: the connection stops looking until told.
        assert_eq!(c.next_for_guest(&mut buf), ToGuest::Nothing);
        assert!(!c.has_data_for_guest());
        host_write(&mut host, b"now");
        assert_eq!(
            c.host_event(Readiness {
                readable: true,
                ..Default::default()
            }),
            Next::Stay
        );
        assert!(c.has_data_for_guest());
        assert!(matches!(c.next_for_guest(&mut buf), ToGuest::Data(h) if h.len == 3));
    }
}
