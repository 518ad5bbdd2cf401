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
            .from_guest(pkt);
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
            match conn.to_guest(buf) {
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
