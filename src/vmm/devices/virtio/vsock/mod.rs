//! virtio-vsock with Firecracker's hybrid host side: the host connects to a
//! Unix socket, writes `CONNECT <port>\n`, and once the guest accepts, reads
//! `OK <host port>\n` followed by the stream.

mod conn;
mod packet;

use super::{
    gather, log_device_error, scatter, writable_len, ActivateError, Activation, Interrupt,
    VirtioDevice, TYPE_VSOCK,
};
use conn::{Conn, State, CONN_BUF_ALLOC};
use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use packet::*;
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::path::PathBuf;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;

const RX: usize = 0;
const TX: usize = 1;
/// Largest payload we move in one packet either way.
const MAX_PAYLOAD: usize = 64 * 1024;
const LISTENER: usize = 16;
const FIRST_STREAM: usize = 17;
const MAX_LOCAL_TOKEN: usize = 1 << 20;
const CONNECT_LINE_MAX: usize = 64;

struct Active {
    mem: GuestMemoryMmap,
    queues: Vec<Queue>,
    irq: Interrupt,
}

pub struct Vsock {
    cid: u64,
    uds_path: PathBuf,
    config: [u8; 8],
    listener: Option<UnixListener>,
    token_base: usize,
    next_token: usize,
    next_port: u32,
    /// Host streams that have not sent their CONNECT line yet.
    pending: HashMap<usize, (UnixStream, Vec<u8>)>,
    conns: HashMap<usize, Conn>,
    by_ports: HashMap<(u32, u32), usize>,
    /// Payload-less packets waiting for an RX buffer.
    control: VecDeque<Header>,
    active: Option<Active>,
    buf: Vec<u8>,
}

impl Vsock {
    pub fn new(cid: u64, uds_path: PathBuf) -> io::Result<Self> {
        let listener = crate::vmm::listen_unix(&uds_path)?;
        listener.set_nonblocking(true)?;
        let listener = UnixListener::from_std(listener);
        Ok(Vsock {
            cid,
            uds_path,
            config: cid.to_le_bytes(),
            listener: Some(listener),
            token_base: 0,
            next_token: FIRST_STREAM,
            next_port: 1 << 30,
            pending: HashMap::new(),
            conns: HashMap::new(),
            by_ports: HashMap::new(),
            control: VecDeque::new(),
            active: None,
            buf: vec![0u8; MAX_PAYLOAD],
        })
    }

    pub fn uds_path(&self) -> &std::path::Path {
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
}

fn header(cid: u64, conn: &Conn, op: u16, len: u32, flags: u32) -> Header {
    Header {
        src_cid: HOST_CID,
        dst_cid: cid,
        src_port: conn.local_port,
        dst_port: conn.peer_port,
        len,
        type_: TYPE_STREAM,
        op,
        flags,
        buf_alloc: CONN_BUF_ALLOC,
        fwd_cnt: conn.fwd_cnt,
    }
}

impl Vsock {
    fn accept_all(&mut self, registry: &Registry) {
        loop {
            let accepted = match &self.listener {
                Some(l) => l.accept(),
                None => return,
            };
            match accepted {
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

    /// Reads the `CONNECT <port>\n` line of a new host stream.
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
                    if line.contains(&b'\n') || line.len() > CONNECT_LINE_MAX {
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
        let (stream, line) = self.pending.remove(&tok).unwrap();
        let Some(nl) = line.iter().position(|b| *b == b'\n') else {
            let _ = registry.deregister(&mut { stream });
            return;
        };
        let port = std::str::from_utf8(&line[..nl])
            .ok()
            .and_then(|l| l.trim().strip_prefix("CONNECT "))
            .and_then(|p| p.trim().parse::<u32>().ok());
        let Some(port) = port else {
            let mut s = stream;
            let _ = std::io::Write::write_all(&mut s, b"ERR expected CONNECT <port>\n");
            let _ = registry.deregister(&mut s);
            return;
        };
        let local = self.next_port;
        self.next_port = self.next_port.wrapping_add(1).max(1 << 30);
        let conn = Conn::new(stream, local, port, line[nl + 1..].to_vec());
        self.control
            .push_back(header(self.cid, &conn, OP_REQUEST, 0, 0));
        self.by_ports.insert((local, port), tok);
        self.conns.insert(tok, conn);
    }

    fn drop_pending(&mut self, registry: &Registry, tok: usize) {
        if let Some((mut s, _)) = self.pending.remove(&tok) {
            let _ = registry.deregister(&mut s);
        }
    }

    fn close(&mut self, registry: &Registry, tok: usize, tell_guest: bool) {
        if let Some(mut conn) = self.conns.remove(&tok) {
            self.by_ports.remove(&(conn.local_port, conn.peer_port));
            if tell_guest {
                self.control
                    .push_back(header(self.cid, &conn, OP_RST, 0, 0));
            }
            let _ = registry.deregister(&mut conn.stream);
        }
    }

    fn process_tx(&mut self, registry: &Registry) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let mut packets = Vec::new();
        let mut used_any = false;
        while let Some(chain) = active.queues[TX].pop_descriptor_chain(&active.mem) {
            let head = chain.head_index();
            let descs: Vec<_> = chain.collect();
            let mut bytes = Vec::new();
            match gather(&active.mem, &descs, HDR_LEN + MAX_PAYLOAD, &mut bytes) {
                Ok(()) if bytes.len() >= HDR_LEN => {
                    let hdr = Header::decode(bytes[..HDR_LEN].try_into().unwrap());
                    let payload_len = (hdr.len as usize).min(bytes.len() - HDR_LEN);
                    bytes.truncate(HDR_LEN + payload_len);
                    packets.push((hdr, bytes));
                }
                Ok(()) => log_device_error("vsock", "TX packet shorter than its header"),
                Err(e) => log_device_error("vsock", e),
            }
            if active.queues[TX].add_used(&active.mem, head, 0).is_err() {
                log_device_error("vsock", "TX add_used failed");
            }
            used_any = true;
        }
        if used_any {
            active.irq.signal_used();
        }
        for (hdr, bytes) in packets {
            self.handle_guest_packet(registry, hdr, &bytes[HDR_LEN..]);
        }
    }

    fn handle_guest_packet(&mut self, registry: &Registry, hdr: Header, payload: &[u8]) {
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
        let conn = self
            .conns
            .get_mut(&tok)
            .expect("port map and connections agree");
        conn.peer_buf_alloc = hdr.buf_alloc;
        conn.peer_fwd_cnt = hdr.fwd_cnt;
        if hdr.type_ != TYPE_STREAM {
            self.close(registry, tok, true);
            return;
        }
        match hdr.op {
            OP_RESPONSE if conn.state == State::Connecting => {
                conn.state = State::Established;
                let ok = format!("OK {}\n", conn.local_port);
                if conn.push_preamble(ok.as_bytes()).is_err() {
                    self.close(registry, tok, true);
                }
            }
            OP_RW if conn.state == State::Established => {
                if let Err(e) = conn.push_to_host(payload) {
                    if e.kind() != io::ErrorKind::BrokenPipe {
                        log_device_error("vsock", &format!("port {}: {e}", conn.peer_port));
                    }
                    self.close(registry, tok, true);
                    return;
                }
                if conn.wants_credit_update() {
                    conn.last_fwd_cnt_sent = conn.fwd_cnt;
                    let h = header(self.cid, conn, OP_CREDIT_UPDATE, 0, 0);
                    self.control.push_back(h);
                }
            }
            OP_CREDIT_UPDATE => {}
            OP_CREDIT_REQUEST => {
                conn.last_fwd_cnt_sent = conn.fwd_cnt;
                let h = header(self.cid, conn, OP_CREDIT_UPDATE, 0, 0);
                self.control.push_back(h);
            }
            OP_SHUTDOWN => {
                if hdr.flags & SHUTDOWN_SEND != 0 || hdr.flags & SHUTDOWN_RCV != 0 {
                    conn.guest_done = true;
                    if conn.to_host.is_empty() {
                        self.close(registry, tok, true);
                    }
                }
            }
            OP_RST => self.close(registry, tok, false),
            _ => self.close(registry, tok, true),
        }
    }

    /// Moves control packets and host data into the guest's RX buffers.
    fn process_rx(&mut self, registry: &Registry) {
        if self.active.is_none() {
            return;
        }
        let mut used_any = self.flush_control();
        let ready: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.state == State::Established
                    && (c.host_readable || !c.early.is_empty())
                    && !c.host_eof
            })
            .map(|(t, _)| *t)
            .collect();
        let mut to_close = Vec::new();
        'conns: for tok in ready {
            loop {
                let active = self.active.as_mut().unwrap();
                let conn = self.conns.get_mut(&tok).unwrap();
                let credit = conn.peer_credit() as usize;
                if credit == 0 || conn.host_eof || (!conn.host_readable && conn.early.is_empty()) {
                    break;
                }
                let Some(chain) = active.queues[RX].pop_descriptor_chain(&active.mem) else {
                    break 'conns;
                };
                let head = chain.head_index();
                let descs: Vec<_> = chain.collect();
                let room = writable_len(&descs).saturating_sub(HDR_LEN as u64) as usize;
                if room == 0 {
                    log_device_error("vsock", "RX buffer smaller than a packet header");
                    let _ = active.queues[RX].add_used(&active.mem, head, 0);
                    used_any = true;
                    continue;
                }
                let want = room.min(credit).min(MAX_PAYLOAD);
                let n = match conn.read_from_host(&mut self.buf[..want]) {
                    Ok(n) => n,
                    Err(_) => {
                        active.queues[RX].go_to_previous_position();
                        to_close.push(tok);
                        break;
                    }
                };
                if n == 0 {
                    active.queues[RX].go_to_previous_position();
                    if conn.host_eof {
                        let h =
                            header(self.cid, conn, OP_SHUTDOWN, 0, SHUTDOWN_SEND | SHUTDOWN_RCV);
                        self.control.push_back(h);
                    }
                    break;
                }
                let h = header(self.cid, conn, OP_RW, n as u32, 0);
                let conn = self.conns.get_mut(&tok).unwrap();
                let active = self.active.as_mut().unwrap();
                match scatter(&active.mem, &descs, &[&h.encode(), &self.buf[..n]]) {
                    Ok(len) => {
                        conn.tx_cnt = conn.tx_cnt.wrapping_add(n as u32);
                        conn.last_fwd_cnt_sent = conn.fwd_cnt;
                        let _ = active.queues[RX].add_used(&active.mem, head, len);
                    }
                    Err(e) => {
                        log_device_error("vsock", e);
                        let _ = active.queues[RX].add_used(&active.mem, head, 0);
                    }
                }
                used_any = true;
            }
        }
        for tok in to_close {
            self.close(registry, tok, true);
        }
        used_any |= self.flush_control();
        if used_any {
            self.active.as_ref().unwrap().irq.signal_used();
        }
    }

    fn flush_control(&mut self) -> bool {
        let Some(active) = self.active.as_mut() else {
            return false;
        };
        let mut used = false;
        while let Some(h) = self.control.front() {
            let Some(chain) = active.queues[RX].pop_descriptor_chain(&active.mem) else {
                break;
            };
            let head = chain.head_index();
            let descs: Vec<_> = chain.collect();
            let len = match scatter(&active.mem, &descs, &[&h.encode()]) {
                Ok(l) => l,
                Err(e) => {
                    log_device_error("vsock", e);
                    0
                }
            };
            let _ = active.queues[RX].add_used(&active.mem, head, len);
            self.control.pop_front();
            used = true;
        }
        used
    }

    fn handle_stream_event(&mut self, registry: &Registry, tok: usize, event: &mio::event::Event) {
        let Some(conn) = self.conns.get_mut(&tok) else {
            return;
        };
        if conn.state == State::Connecting && (event.is_write_closed() || event.is_error()) {
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
        if event.is_readable() || event.is_read_closed() {
            conn.host_readable = true;
        }
        if event.is_writable() && !conn.to_host.is_empty() {
            if conn.flush_to_host().is_err() {
                self.close(registry, tok, true);
                return;
            }
            if conn.wants_credit_update() {
                conn.last_fwd_cnt_sent = conn.fwd_cnt;
                let h = header(self.cid, conn, OP_CREDIT_UPDATE, 0, 0);
                self.control.push_back(h);
            }
        }
        let conn = &self.conns[&tok];
        if conn.guest_done && conn.to_host.is_empty() {
            self.close(registry, tok, true);
        }
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        TYPE_VSOCK
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[256, 256, 16]
    }
    fn features(&self) -> u64 {
        0
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        super::read_config_bytes(&self.config, offset, data);
    }
    fn activate(&mut self, act: Activation) -> Result<(), ActivateError> {
        if act.queues.len() != 3 {
            return Err(ActivateError::QueueCount {
                expected: 3,
                got: act.queues.len(),
            });
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
        self.control.clear();
    }
    fn register_sources(&mut self, registry: &Registry, token_base: usize) -> io::Result<()> {
        self.token_base = token_base;
        if let Some(l) = self.listener.as_mut() {
            registry.register(l, Token(token_base + LISTENER), Interest::READABLE)?;
        }
        Ok(())
    }
    fn handle_event(&mut self, registry: &Registry, token: usize, event: &mio::event::Event) {
        match token {
            LISTENER => self.accept_all(registry),
            t if self.pending.contains_key(&t) => self.read_connect(registry, t),
            t => self.handle_stream_event(registry, t, event),
        }
        self.process_rx(registry);
    }
    fn queue_notify(&mut self, registry: &Registry, index: usize) {
        if index == TX {
            self.process_tx(registry);
        }
        self.process_rx(registry);
    }
}

impl Drop for Vsock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.uds_path);
    }
}
