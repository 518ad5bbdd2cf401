//! The host side of the device: the Unix socket the host connects to, the
//! `CONNECT <port>\n` line that opens a stream to a guest port, and the
//! connections that result, found by port pair. It speaks to the device
//! in packets (the [`Backend`] trait) and to the host in bytes.

use super::connection::{Connection, Next, State, ToGuest};
use super::packet::*;
use super::{Backend, Readiness};
use crate::vmm::devices::virtio::log_device_error;
use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Device-local tokens: below 16 are the device's queues, 16 the listener,
/// then one per host stream (the event loop gives each device 2^20).
const LISTENER: usize = 16;
const FIRST_STREAM: usize = 17;
const MAX_LOCAL_TOKEN: usize = 1 << 20;
/// The CONNECT line, with room to spare; a host stream that sends more
/// without a newline is dropped.
const CONNECT_LINE_MAX: usize = 64;
/// Our end of each stream gets a port from here up, as Firecracker's do.
const FIRST_LOCAL_PORT: u32 = 1 << 30;
/// What the host gets for a first line that is not `CONNECT <port>`.
const CONNECT_ERR: &[u8] = b"ERR expected CONNECT <port>\n";
/// Control packets waiting for an RX buffer beyond which the device
/// takes no more guest packets. Each guest packet adds at most one (an
/// RST or a CREDIT_UPDATE), and they drain only as the guest posts RX
/// buffers: without the cap a guest that sends and never receives would
/// grow the queue without bound. An honest guest keeps a few here at
/// most; the RX queue holds 256 buffers.
pub const CONTROL_QUEUE_MAX: usize = 256;

/// What the first bytes of a host stream say.
#[derive(Debug, PartialEq, Eq)]
enum ConnectLine<'a> {
    /// No newline yet, and short enough to wait for one.
    Incomplete,
    /// `CONNECT <port>`, and what the host sent after the newline.
    Connect { port: u32, rest: &'a [u8] },
    /// A line, but not a CONNECT line: the host gets [`CONNECT_ERR`].
    Invalid,
    /// Past the limit with no newline: dropped without a word.
    TooLong,
}

fn parse_connect_line(buf: &[u8]) -> ConnectLine<'_> {
    let Some(nl) = buf.iter().position(|b| *b == b'\n') else {
        return if buf.len() > CONNECT_LINE_MAX {
            ConnectLine::TooLong
        } else {
            ConnectLine::Incomplete
        };
    };
    let port = std::str::from_utf8(&buf[..nl])
        .ok()
        .and_then(|l| l.trim().strip_prefix("CONNECT "))
        .and_then(|p| p.trim().parse::<u32>().ok());
    match port {
        Some(port) => ConnectLine::Connect {
            port,
            rest: &buf[nl + 1..],
        },
        None => ConnectLine::Invalid,
    }
}

pub struct Muxer {
    cid: u64,
    uds_path: PathBuf,
    listener: UnixListener,
    token_base: usize,
    next_token: usize,
    next_port: u32,
    /// Host streams that have not sent their CONNECT line yet.
    pending: HashMap<usize, (UnixStream, Vec<u8>)>,
    conns: HashMap<usize, Connection>,
    /// (our port, guest port) -> token.
    by_ports: HashMap<(u32, u32), usize>,
    /// Payload-less packets waiting for an RX buffer.
    control: VecDeque<Header>,
}

impl Muxer {
    /// Listens on `uds_path` for host connections to guest `cid`.
    pub fn new(cid: u64, uds_path: PathBuf) -> io::Result<Self> {
        let listener = crate::vmm::listen_unix(&uds_path)?;
        listener.set_nonblocking(true)?;
        Ok(Muxer {
            cid,
            uds_path,
            listener: UnixListener::from_std(listener),
            token_base: 0,
            next_token: FIRST_STREAM,
            next_port: FIRST_LOCAL_PORT,
            pending: HashMap::new(),
            conns: HashMap::new(),
            by_ports: HashMap::new(),
            control: VecDeque::new(),
        })
    }

    pub fn uds_path(&self) -> &Path {
        &self.uds_path
    }

    fn alloc_token(&mut self) -> usize {
        loop {
            let t = self.next_token;
            self.next_token = if t + 1 >= MAX_LOCAL_TOKEN {
                FIRST_STREAM
            } else {
                t + 1
            };
            if !self.pending.contains_key(&t) && !self.conns.contains_key(&t) {
                return t;
            }
        }
    }

    fn accept_all(&mut self, registry: &Registry) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let tok = self.alloc_token();
                    if let Err(e) = registry.register(
                        &mut stream,
                        Token(self.token_base + tok),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        log_device_error("vsock", &format!("register stream: {e}"));
                        continue;
                    }
                    self.pending.insert(tok, (stream, Vec::new()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log_device_error("vsock", &format!("accept: {e}"));
                    return;
                }
            }
        }
    }

    /// Reads the `CONNECT <port>\n` line of a new host stream; once it is
    /// there, sends the guest a REQUEST for that port.
    fn read_connect(&mut self, registry: &Registry, tok: usize) {
        let Some((stream, line)) = self.pending.get_mut(&tok) else {
            return;
        };
        let mut chunk = [0u8; CONNECT_LINE_MAX];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => {
                    self.drop_pending(registry, tok);
                    return;
                }
                Ok(n) => {
                    line.extend_from_slice(&chunk[..n]);
                    if parse_connect_line(line) != ConnectLine::Incomplete {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.drop_pending(registry, tok);
                    return;
                }
            }
        }
        let (mut stream, line) = self.pending.remove(&tok).unwrap();
        let (port, rest) = match parse_connect_line(&line) {
            ConnectLine::Connect { port, rest } => (port, rest),
            ConnectLine::Invalid => {
                let _ = stream.write_all(CONNECT_ERR);
                let _ = registry.deregister(&mut stream);
                return;
            }
            ConnectLine::TooLong | ConnectLine::Incomplete => {
                let _ = registry.deregister(&mut stream);
                return;
            }
        };
        let local = self.next_port;
        self.next_port = self.next_port.wrapping_add(1).max(FIRST_LOCAL_PORT);
        let conn = Connection::new(stream, self.cid, local, port, rest.to_vec());
        self.control.push_back(conn.header(OP_REQUEST, 0, 0));
        self.by_ports.insert((local, port), tok);
        self.conns.insert(tok, conn);
    }

    fn drop_pending(&mut self, registry: &Registry, tok: usize) {
        if let Some((mut s, _)) = self.pending.remove(&tok) {
            let _ = registry.deregister(&mut s);
        }
    }

    fn close(&mut self, registry: &Registry, tok: usize, rst: bool) {
        if let Some(mut conn) = self.conns.remove(&tok) {
            self.by_ports.remove(&(conn.local_port, conn.peer_port));
            if rst {
                self.control.push_back(conn.header(OP_RST, 0, 0));
            }
            let _ = registry.deregister(&mut conn.stream);
        }
    }

    /// Does what a connection asked for.
    fn apply(&mut self, registry: &Registry, tok: usize, next: Next) {
        match next {
            Next::Stay => {}
            Next::Reply(h) => self.control.push_back(h),
            Next::Close { rst } => self.close(registry, tok, rst),
            Next::ReplyAndClose(h) => {
                self.control.push_back(h);
                self.close(registry, tok, true);
            }
        }
    }

    fn stream_event(&mut self, registry: &Registry, tok: usize, r: Readiness) {
        let Some(conn) = self.conns.get_mut(&tok) else {
            return;
        };
        if conn.state() == State::Connecting && (r.write_closed || r.error) {
            // The host hung up (not just shut down its sending side)
            // before the guest answered, e.g. a readiness probe during
            // boot that timed out: withdraw the request if it is still
            // queued, so probes do not pile up for the guest to answer
            // once its driver starts; reset it if the guest has it.
            let (local, peer) = (conn.local_port, conn.peer_port);
            let queued = self.control.len();
            self.control
                .retain(|h| !(h.op == OP_REQUEST && h.src_port == local && h.dst_port == peer));
            let delivered = self.control.len() == queued;
            self.close(registry, tok, delivered);
            return;
        }
        let next = conn.host_event(r);
        self.apply(registry, tok, next);
    }
}

impl Backend for Muxer {
    fn send_pkt(&mut self, registry: &Registry, pkt: &Packet<'_>) {
        let hdr = &pkt.hdr;
        if hdr.src_cid != self.cid || hdr.dst_cid != HOST_CID {
            log_device_error(
                "vsock",
                &format!(
                    "dropping packet from cid {} to cid {}",
                    hdr.src_cid, hdr.dst_cid
                ),
            );
            return;
        }
        let Some(&tok) = self.by_ports.get(&(hdr.dst_port, hdr.src_port)) else {
            // Nothing listens on the host for guest-initiated streams.
            if hdr.op != OP_RST {
                self.control.push_back(Header {
                    src_cid: HOST_CID,
                    dst_cid: self.cid,
                    src_port: hdr.dst_port,
                    dst_port: hdr.src_port,
                    type_: TYPE_STREAM,
                    op: OP_RST,
                    ..Default::default()
                });
            }
            return;
        };
        let next = self
            .conns
            .get_mut(&tok)
            .expect("port map and connections agree")
            .on_guest_packet(pkt);
        self.apply(registry, tok, next);
    }

    fn tx_ready(&self) -> bool {
        self.control.len() < CONTROL_QUEUE_MAX
    }

    fn recv_pkt(&mut self, registry: &Registry, buf: &mut [u8]) -> Option<Header> {
        if let Some(h) = self.control.pop_front() {
            return Some(h);
        }
        let mut failed = None;
        for (&tok, conn) in self.conns.iter_mut() {
            match conn.next_for_guest(buf) {
                ToGuest::Data(h) | ToGuest::Eof(h) => return Some(h),
                ToGuest::Nothing => {}
                ToGuest::Failed => {
                    failed = Some(tok);
                    break;
                }
            }
        }
        let tok = failed?;
        self.close(registry, tok, true);
        self.control.pop_front()
    }

    fn register(&mut self, registry: &Registry, token_base: usize) -> io::Result<()> {
        self.token_base = token_base;
        registry.register(
            &mut self.listener,
            Token(token_base + LISTENER),
            Interest::READABLE,
        )
    }

    fn handle_event(&mut self, registry: &Registry, token: usize, r: Readiness) {
        match token {
            LISTENER => self.accept_all(registry),
            t if self.pending.contains_key(&t) => self.read_connect(registry, t),
            t => self.stream_event(registry, t, r),
        }
    }

    fn reset(&mut self) {
        self.control.clear();
    }
}

impl Drop for Muxer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.uds_path);
    }
}

#[cfg(test)]
impl Muxer {
    /// Control packets waiting for the guest.
    pub fn control_len(&self) -> usize {
        self.control.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::devices::virtio::vsock::test_utils::*;
    use std::os::unix::net::UnixStream as StdStream;

    /// A muxer listening in a temporary directory, driven by hand: host
    /// streams are real, the guest is whatever packets a test sends.
    struct Rig {
        host: Host,
        mux: Muxer,
        buf: Vec<u8>,
    }

    impl Rig {
        fn new() -> Rig {
            let host = Host::new();
            let mut mux = Muxer::new(GUEST_CID, host.socket_path()).unwrap();
            mux.register(host.poll.registry(), 0).unwrap();
            Rig {
                host,
                mux,
                buf: vec![0u8; MAX_PAYLOAD],
            }
        }

        /// Hands the muxer every host event.
        fn pump(&mut self) {
            let mux = &mut self.mux;
            self.host
                .pump(|reg, tok, ev| mux.handle_event(reg, tok, Readiness::from(ev)));
        }

        /// The next packet for the guest.
        fn recv(&mut self) -> Option<(Header, Vec<u8>)> {
            let h = self
                .mux
                .recv_pkt(self.host.poll.registry(), &mut self.buf)?;
            Some((h, self.buf[..h.len as usize].to_vec()))
        }

        fn send(&mut self, hdr: Header, payload: &[u8]) {
            self.mux
                .send_pkt(self.host.poll.registry(), &Packet { hdr, payload });
        }

        /// A host stream that has sent `line`, and what the guest got.
        fn connect(&mut self, line: &[u8]) -> (StdStream, Option<(Header, Vec<u8>)>) {
            let mut s = self.host.connect();
            host_write(&mut s, line);
            self.pump();
            (s, self.recv())
        }

        /// A stream the guest has accepted, the host's `OK` line read;
        /// returns it and our port.
        fn establish(&mut self) -> (StdStream, u32) {
            let (mut s, req) = self.connect(b"CONNECT 52\n");
            let (req, _) = req.expect("no REQUEST");
            self.send(from_guest(OP_RESPONSE, req.src_port), b"");
            let ok = format!("OK {}\n", req.src_port);
            assert_eq!(host_read(&mut s, ok.len()), ok.as_bytes());
            (s, req.src_port)
        }
    }

    #[test]
    fn connect_lines_are_parsed_to_the_letter() {
        use ConnectLine::*;
        assert_eq!(
            parse_connect_line(b"CONNECT 52\n"),
            Connect {
                port: 52,
                rest: b""
            }
        );
        assert_eq!(
            parse_connect_line(b"  CONNECT   4294967295 \nhello"),
            Connect {
                port: u32::MAX,
                rest: b"hello"
            }
        );
        assert_eq!(parse_connect_line(b"CONNECT 52"), Incomplete);
        assert_eq!(parse_connect_line(b""), Incomplete);
        assert_eq!(parse_connect_line(&[b' '; CONNECT_LINE_MAX]), Incomplete);
        assert_eq!(parse_connect_line(&[b' '; CONNECT_LINE_MAX + 1]), TooLong);
        for bad in [
            &b"CONNECT\n"[..],
            b"CONNECT 4294967296\n",
            b"CONNECT -1\n",
            b"CONNECT 0x34\n",
            b"connect 52\n",
            b"CONNECT52\n",
            b"HELLO 52\n",
            b"\n",
            b"CONNECT \xff\n",
        ] {
            assert_eq!(parse_connect_line(bad), Invalid, "{bad:?}");
        }
    }

    #[test]
    fn a_connect_line_becomes_a_request_and_the_response_an_ok_line() {
        let mut rig = Rig::new();
        let (mut s, req) = rig.connect(b"CONNECT 52\n");
        let (req, payload) = req.expect("no REQUEST");
        assert_eq!(
            req,
            Header {
                src_cid: HOST_CID,
                dst_cid: GUEST_CID,
                src_port: FIRST_HOST_PORT,
                dst_port: GUEST_PORT,
                len: 0,
                type_: TYPE_STREAM,
                op: OP_REQUEST,
                flags: 0,
                buf_alloc: 256 * 1024,
                fwd_cnt: 0,
            }
        );
        assert!(payload.is_empty());
        assert_eq!(rig.recv(), None);
        rig.send(from_guest(OP_RESPONSE, FIRST_HOST_PORT), b"");
        assert_eq!(host_read(&mut s, 14), b"OK 1073741824\n");
        // Then the stream, both ways.
        host_write(&mut s, b"ping");
        rig.pump();
        let (h, payload) = rig.recv().expect("no data");
        assert_eq!(
            (h.op, h.dst_port, &payload[..]),
            (OP_RW, GUEST_PORT, &b"ping"[..])
        );
        rig.send(guest_rw(FIRST_HOST_PORT, b"pong"), b"pong");
        assert_eq!(host_read(&mut s, 4), b"pong");
        // A second stream gets the next port.
        let (_s2, req) = rig.connect(b"CONNECT 1024\n");
        let (req, _) = req.unwrap();
        assert_eq!((req.src_port, req.dst_port), (FIRST_HOST_PORT + 1, 1024));
    }

    #[test]
    fn a_connect_line_in_pieces_and_bytes_after_it_reach_the_guest_in_order() {
        let mut rig = Rig::new();
        let mut s = rig.host.connect();
        host_write(&mut s, b"CONN");
        rig.pump();
        assert_eq!(rig.recv(), None);
        host_write(&mut s, b"ECT 52\nbytes sent early");
        rig.pump();
        let (req, _) = rig.recv().expect("no REQUEST");
        assert_eq!((req.op, req.dst_port), (OP_REQUEST, 52));
        // Nothing reaches the guest before it accepts.
        assert_eq!(rig.recv(), None);
        rig.send(from_guest(OP_RESPONSE, req.src_port), b"");
        assert_eq!(host_read(&mut s, 14), b"OK 1073741824\n");
        let (h, payload) = rig.recv().expect("no data");
        assert_eq!((h.op, &payload[..]), (OP_RW, &b"bytes sent early"[..]));
    }

    #[test]
    fn a_bad_connect_line_gets_an_error_and_is_closed() {
        let mut rig = Rig::new();
        for line in [
            &b"HELLO 52\n"[..],
            b"CONNECT 52x\n",
            b"CONNECT 99999999999\n",
        ] {
            let (mut s, req) = rig.connect(line);
            assert_eq!(req, None, "{line:?}");
            assert_eq!(host_read_to_end(&mut s), CONNECT_ERR, "{line:?}");
        }
        // A line that never ends is dropped without a word.
        let (mut s, req) = rig.connect(&[b'C'; CONNECT_LINE_MAX + 1]);
        assert_eq!(req, None);
        assert_eq!(host_read_to_end(&mut s), b"");
        // So is a stream that hangs up before its line.
        let mut s = rig.host.connect();
        host_write(&mut s, b"CONNECT 5");
        drop(s);
        rig.pump();
        assert_eq!(rig.recv(), None);
        assert!(rig.mux.pending.is_empty());
        assert!(rig.mux.conns.is_empty());
        // The listener still serves.
        let (_s, req) = rig.connect(b"CONNECT 52\n");
        assert_eq!(req.unwrap().0.op, OP_REQUEST);
    }

    #[test]
    fn a_host_hang_up_before_the_guest_answers_withdraws_the_request_or_resets_it() {
        let mut rig = Rig::new();
        // Still queued: withdrawn, the guest never hears of it.
        let mut s = rig.host.connect();
        host_write(&mut s, b"CONNECT 52\n");
        rig.pump();
        assert_eq!(rig.mux.control_len(), 1);
        drop(s);
        rig.pump();
        assert_eq!(rig.recv(), None);
        assert!(rig.mux.conns.is_empty() && rig.mux.by_ports.is_empty());
        // Already with the guest: an RST for it.
        let (s, req) = rig.connect(b"CONNECT 52\n");
        let (req, _) = req.unwrap();
        drop(s);
        rig.pump();
        let (rst, _) = rig.recv().expect("no RST");
        assert_eq!(
            (rst.op, rst.src_port, rst.dst_port),
            (OP_RST, req.src_port, GUEST_PORT)
        );
        assert!(rig.mux.conns.is_empty());
        // The guest's late RESPONSE finds nothing: it gets an RST.
        rig.send(from_guest(OP_RESPONSE, req.src_port), b"");
        let (rst, _) = rig.recv().expect("no RST");
        assert_eq!((rst.op, rst.dst_port), (OP_RST, GUEST_PORT));
        // A host that only stops sending is still waiting for its answer.
        let (s, req) = rig.connect(b"CONNECT 52\n");
        let (req, _) = req.unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        rig.pump();
        assert_eq!(rig.recv(), None);
        assert_eq!(rig.mux.conns.len(), 1);
        let mut s = s;
        rig.send(from_guest(OP_RESPONSE, req.src_port), b"");
        assert_eq!(host_read(&mut s, 14), b"OK 1073741826\n");
    }

    #[test]
    fn a_guest_rst_closes_the_host_stream_with_no_reply() {
        let mut rig = Rig::new();
        let (mut s, port) = rig.establish();
        rig.send(from_guest(OP_RST, port), b"");
        assert_eq!(host_read_to_end(&mut s), b"");
        assert_eq!(rig.recv(), None);
        assert!(rig.mux.conns.is_empty() && rig.mux.by_ports.is_empty());
        // The guest refusing the stream is the same RST.
        let (mut s, req) = rig.connect(b"CONNECT 9\n");
        let refusal = Header {
            src_port: 9,
            ..from_guest(OP_RST, req.unwrap().0.src_port)
        };
        rig.send(refusal, b"");
        assert_eq!(host_read_to_end(&mut s), b"");
        assert_eq!(rig.recv(), None);
    }

    #[test]
    fn the_hosts_eof_reaches_the_guest_and_the_guests_shutdown_closes() {
        let mut rig = Rig::new();
        let (mut s, port) = rig.establish();
        host_write(&mut s, b"bye");
        s.shutdown(std::net::Shutdown::Write).unwrap();
        rig.pump();
        let (h, payload) = rig.recv().unwrap();
        assert_eq!((h.op, &payload[..]), (OP_RW, &b"bye"[..]));
        let (h, _) = rig.recv().unwrap();
        assert_eq!((h.op, h.flags), (OP_SHUTDOWN, SHUTDOWN_RCV | SHUTDOWN_SEND));
        assert_eq!(rig.recv(), None);
        let bye = Header {
            flags: SHUTDOWN_RCV | SHUTDOWN_SEND,
            ..from_guest(OP_SHUTDOWN, port)
        };
        rig.send(bye, b"");
        let (h, _) = rig.recv().expect("no RST");
        assert_eq!((h.op, h.src_port), (OP_RST, port));
        assert_eq!(host_read_to_end(&mut s), b"");
        assert!(rig.mux.conns.is_empty());
    }

    #[test]
    fn packets_for_no_stream_get_an_rst_and_foreign_cids_nothing() {
        let mut rig = Rig::new();
        // A guest-initiated stream: nothing listens on the host.
        rig.send(from_guest(OP_REQUEST, 80), b"");
        let (h, _) = rig.recv().expect("no RST");
        assert_eq!(
            h,
            Header {
                src_cid: HOST_CID,
                dst_cid: GUEST_CID,
                src_port: 80,
                dst_port: GUEST_PORT,
                type_: TYPE_STREAM,
                op: OP_RST,
                ..Default::default()
            }
        );
        // An RST is never answered.
        rig.send(from_guest(OP_RST, 80), b"");
        assert_eq!(rig.recv(), None);
        // Packets that claim another guest's CID, or are not for the host,
        // are dropped, even for a live stream.
        let (mut s, port) = rig.establish();
        let spoofed = Header {
            src_cid: GUEST_CID + 1,
            ..guest_rw(port, b"spoof")
        };
        rig.send(spoofed, b"spoof");
        let elsewhere = Header {
            dst_cid: 7,
            ..guest_rw(port, b"spoof")
        };
        rig.send(elsewhere, b"spoof");
        assert_eq!(rig.recv(), None);
        rig.send(guest_rw(port, b"real"), b"real");
        assert_eq!(host_read(&mut s, 4), b"real");
    }

    #[test]
    fn control_packets_waiting_for_the_guest_are_capped() {
        let mut rig = Rig::new();
        // A guest that sends to nowhere and never receives: each packet
        // earns an RST, and the muxer says when it can take no more.
        let mut taken = 0;
        while rig.mux.tx_ready() {
            rig.send(from_guest(OP_REQUEST, 1000 + taken), b"");
            taken += 1;
            assert!(taken <= CONTROL_QUEUE_MAX as u32, "never full");
        }
        assert_eq!(rig.mux.control_len(), CONTROL_QUEUE_MAX);
        // One RX buffer's worth drains one, and makes room for one.
        let (h, _) = rig.recv().unwrap();
        assert_eq!((h.op, h.src_port), (OP_RST, 1000));
        assert!(rig.mux.tx_ready());
        // Host streams still open (host-side packets are not capped: the
        // host, not the guest, decides how many there are).
        let (_s, _) = rig.connect(b"CONNECT 52\n");
        assert_eq!(rig.mux.control_len(), CONTROL_QUEUE_MAX - 1);
        let mut last = None;
        while let Some((h, _)) = rig.recv() {
            last = Some(h);
        }
        assert_eq!(last.unwrap().op, OP_REQUEST);
    }

    #[test]
    fn a_host_stream_that_fails_while_sending_is_reset() {
        let mut rig = Rig::new();
        let (s, port) = rig.establish();
        // The host end is gone without a word: the next guest data finds a
        // broken pipe; the guest gets an RST, quietly.
        drop(s);
        rig.send(guest_rw(port, b"anyone?"), b"anyone?");
        let (h, _) = rig.recv().expect("no RST");
        assert_eq!((h.op, h.src_port), (OP_RST, port));
        assert!(rig.mux.conns.is_empty());
    }

    #[test]
    fn reset_drops_what_waits_for_the_guest_and_keeps_the_streams() {
        let mut rig = Rig::new();
        let (_s, _) = rig.connect(b"CONNECT 52\n");
        let (_s2, req) = rig.connect(b"CONNECT 53\n");
        assert!(req.is_some());
        rig.send(from_guest(OP_REQUEST, 80), b"");
        rig.mux.reset();
        assert_eq!(rig.recv(), None);
        assert_eq!(rig.mux.conns.len(), 2);
    }

    #[test]
    fn dropping_the_muxer_removes_its_socket() {
        let rig = Rig::new();
        let path = rig.host.socket_path();
        assert!(path.exists());
        drop(rig.mux);
        assert!(!path.exists());
    }
}
