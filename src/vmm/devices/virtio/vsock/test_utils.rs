//! Fakes for the vsock tests, one per layer boundary: a backend for the
//! device ([`TestBackend`]), a guest driver over `virtio_queue::mock`
//! queues ([`GuestDriver`]), and the host's side of the Unix socket with
//! a poller ([`Host`]).

use super::device::Vsock;
use super::packet::*;
use super::{Backend, Readiness};
use crate::vmm::devices::virtio::{Activation, Interrupt, VirtioDevice};
use mio::{Events, Poll, Registry};
use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

pub const GUEST_CID: u64 = 3;
/// The port the guest listens on (the agent's, in pyro).
pub const GUEST_PORT: u32 = 52;
/// What the fake guest advertises as its receive buffer.
pub const GUEST_BUF_ALLOC: u32 = 256 * 1024;
/// The first port the muxer gives our end of a stream.
pub const FIRST_HOST_PORT: u32 = 1 << 30;

const NEXT: u16 = 1;
const WRITE: u16 = 2;
/// Guest memory: rings low, then each queue's buffers; the kernel backs
/// only the pages a test touches.
const MEM_SIZE: usize = 192 << 20;
/// Entries per test queue (more than the device's 256, so a test can
/// offer more TX chains than the device takes).
const RING: u16 = 512;
/// Where a queue's used ring lies, from its descriptor table.
const USED_OFFSET: u64 = 0x8000;
/// Room for one descriptor's buffer: a header and the largest payload.
const SLOT: u64 = 0x1_1000;

pub fn test_mem() -> GuestMemoryMmap {
    GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap()
}

/// A header from the guest's end of the stream (guest port `GUEST_PORT`)
/// to the host's `host_port`, with the guest's full credit.
pub fn from_guest(op: u16, host_port: u32) -> Header {
    Header {
        src_cid: GUEST_CID,
        dst_cid: HOST_CID,
        src_port: GUEST_PORT,
        dst_port: host_port,
        len: 0,
        type_: TYPE_STREAM,
        op,
        flags: 0,
        buf_alloc: GUEST_BUF_ALLOC,
        fwd_cnt: 0,
    }
}

/// An RW packet from the guest, its length set to the payload's.
pub fn guest_rw(host_port: u32, payload: &[u8]) -> Header {
    Header {
        len: payload.len() as u32,
        ..from_guest(OP_RW, host_port)
    }
}

/// A backend that records what the device hands it and gives the device
/// what a test queues. It holds at most `capacity` packets for the guest
/// (`tx_ready` says so), and answers each guest packet with an RST when
/// `echo_rst` is set: the shape of the muxer's bounded control queue.
pub struct TestBackend {
    pub sent: Vec<(Header, Vec<u8>)>,
    pub to_guest: VecDeque<(Header, Vec<u8>)>,
    /// The room the device offered on each `recv_pkt`.
    pub rooms: Vec<usize>,
    pub capacity: usize,
    pub echo_rst: bool,
    pub events: Vec<(usize, Readiness)>,
    pub resets: usize,
}

impl Default for TestBackend {
    fn default() -> Self {
        TestBackend {
            sent: Vec::new(),
            to_guest: VecDeque::new(),
            rooms: Vec::new(),
            capacity: usize::MAX,
            echo_rst: false,
            events: Vec::new(),
            resets: 0,
        }
    }
}

impl Backend for TestBackend {
    fn send_pkt(&mut self, _registry: &Registry, pkt: &Packet<'_>) {
        assert!(self.tx_ready(), "the device sent past tx_ready");
        self.sent.push((pkt.hdr, pkt.payload.to_vec()));
        if self.echo_rst {
            let rst = Header {
                src_cid: HOST_CID,
                dst_cid: pkt.hdr.src_cid,
                src_port: pkt.hdr.dst_port,
                dst_port: pkt.hdr.src_port,
                type_: TYPE_STREAM,
                op: OP_RST,
                ..Default::default()
            };
            self.to_guest.push_back((rst, Vec::new()));
        }
    }
    fn tx_ready(&self) -> bool {
        self.to_guest.len() < self.capacity
    }
    fn recv_pkt(&mut self, _registry: &Registry, buf: &mut [u8]) -> Option<Header> {
        self.rooms.push(buf.len());
        let (mut hdr, payload) = self.to_guest.pop_front()?;
        assert!(
            payload.len() <= buf.len(),
            "test packet larger than the room"
        );
        buf[..payload.len()].copy_from_slice(&payload);
        hdr.len = payload.len() as u32;
        Some(hdr)
    }
    fn register(&mut self, _registry: &Registry, _token_base: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn handle_event(&mut self, _registry: &Registry, token: usize, readiness: Readiness) {
        self.events.push((token, readiness));
    }
    fn reset(&mut self) {
        self.to_guest.clear();
        self.resets += 1;
    }
}

/// One virtqueue as the guest driver sees it. Descriptor `i` always uses
/// the buffer at `buffers + i * SLOT`, so a chain's bytes stay readable
/// until its descriptors come round again (`RING` descriptors later).
///
/// The mock's descriptor table and available ring are used as they are;
/// the used ring is put elsewhere: the mock places it right after the
/// first half of the available ring (virtio-queue 0.18 measures that ring
/// in entries, not bytes), so past `RING / 2` entries the two overlap.
pub struct GuestQueue<'a> {
    mock: MockSplitQueue<'a, GuestMemoryMmap>,
    mem: &'a GuestMemoryMmap,
    used_at: u64,
    buffers: u64,
    next_desc: u16,
    avail_idx: u16,
    used_seen: u16,
    chains: HashMap<u16, Vec<Descriptor>>,
}

impl<'a> GuestQueue<'a> {
    fn new(mem: &'a GuestMemoryMmap, ring_at: u64, buffers: u64) -> Self {
        let mock = MockSplitQueue::create(mem, GuestAddress(ring_at), RING);
        let used_at = ring_at + USED_OFFSET;
        assert!(mock.avail_addr().0 + 6 + 2 * u64::from(RING) <= used_at);
        GuestQueue {
            mock,
            mem,
            used_at,
            buffers,
            next_desc: 0,
            avail_idx: 0,
            used_seen: 0,
            chains: HashMap::new(),
        }
    }

    pub fn queue(&self) -> Queue {
        let mut q: Queue = self.mock.create_queue().unwrap();
        q.set_used_ring_address(Some(self.used_at as u32), Some((self.used_at >> 32) as u32));
        q
    }

    /// Offers a chain of `(addr, len, writable)` descriptors; `None` as
    /// the address means this descriptor's own buffer. Returns the head.
    pub fn add_chain(&mut self, descs: &[(Option<u64>, u32, bool)]) -> u16 {
        let head = self.next_desc;
        let mut chain = Vec::new();
        for (i, (addr, len, write)) in descs.iter().enumerate() {
            let idx = self.next_desc;
            self.next_desc = (self.next_desc + 1) % RING;
            let addr = addr.unwrap_or(self.buffers + u64::from(idx) * SLOT);
            let last = i + 1 == descs.len();
            let flags = if *write { WRITE } else { 0 } | if last { 0 } else { NEXT };
            let d = Descriptor::new(addr, *len, flags, self.next_desc);
            self.mock
                .desc_table()
                .store(idx, RawDescriptor::from(d))
                .unwrap();
            chain.push(d);
        }
        let avail = self.mock.avail();
        avail
            .ring()
            .ref_at(usize::from(self.avail_idx % RING))
            .unwrap()
            .store(head);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        avail.idx().store(self.avail_idx);
        self.chains.insert(head, chain);
        head
    }

    /// Offers device-readable buffers holding `parts`, one descriptor each.
    pub fn add_readable(&mut self, parts: &[&[u8]]) -> u16 {
        let first = self.next_desc;
        for (i, part) in parts.iter().enumerate() {
            let idx = (first + i as u16) % RING;
            self.mem
                .write_slice(part, GuestAddress(self.buffers + u64::from(idx) * SLOT))
                .unwrap();
        }
        let descs: Vec<_> = parts
            .iter()
            .map(|p| (None, p.len() as u32, false))
            .collect();
        self.add_chain(&descs)
    }

    /// Offers device-writable buffers of these lengths as one chain.
    pub fn add_writable(&mut self, lens: &[u32]) -> u16 {
        let descs: Vec<_> = lens.iter().map(|l| (None, *l, true)).collect();
        self.add_chain(&descs)
    }

    /// Chains the device has used since the last call: head and length.
    pub fn take_used(&mut self) -> Vec<(u16, u32)> {
        let idx: u16 = self.mem.read_obj(GuestAddress(self.used_at + 2)).unwrap();
        let mut out = Vec::new();
        while self.used_seen != idx {
            let at = self.used_at + 4 + 8 * u64::from(self.used_seen % RING);
            let id: u32 = self.mem.read_obj(GuestAddress(at)).unwrap();
            let len: u32 = self.mem.read_obj(GuestAddress(at + 4)).unwrap();
            out.push((id as u16, len));
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        out
    }

    /// The first `len` bytes written into a used chain's buffers.
    pub fn written(&self, head: u16, len: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut left = len as usize;
        for d in self.chains[&head].iter().filter(|d| d.is_write_only()) {
            let n = left.min(d.len() as usize);
            let mut part = vec![0u8; n];
            self.mem.read_slice(&mut part, d.addr()).unwrap();
            out.extend_from_slice(&part);
            left -= n;
        }
        out
    }
}

/// A guest's vsock driver: the three queues over mock guest memory and
/// the device's interrupt.
pub struct GuestDriver<'a> {
    pub rx: GuestQueue<'a>,
    pub tx: GuestQueue<'a>,
    pub ev: GuestQueue<'a>,
    pub mem: &'a GuestMemoryMmap,
    pub irq: Interrupt,
}

impl<'a> GuestDriver<'a> {
    pub fn new(mem: &'a GuestMemoryMmap) -> Self {
        GuestDriver {
            rx: GuestQueue::new(mem, 0x1_0000, 0x100_0000),
            tx: GuestQueue::new(mem, 0x2_0000, 0x400_0000),
            ev: GuestQueue::new(mem, 0x3_0000, 0x700_0000),
            mem,
            irq: Interrupt {
                status: Arc::new(AtomicU32::new(0)),
                evt: Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap()),
            },
        }
    }

    pub fn activate<B: Backend>(&self, dev: &mut Vsock<B>) {
        dev.activate(Activation {
            mem: self.mem.clone(),
            queues: vec![self.rx.queue(), self.tx.queue(), self.ev.queue()],
            interrupt: self.irq.clone(),
        })
        .unwrap();
    }

    /// Offers one packet on TX: a header descriptor, then the payload's.
    pub fn send(&mut self, hdr: Header, payload: &[u8]) -> u16 {
        let h = hdr.encode();
        if payload.is_empty() {
            self.tx.add_readable(&[&h])
        } else {
            self.tx.add_readable(&[&h, payload])
        }
    }

    /// Posts `n` RX buffers of a header and `room` payload bytes each.
    pub fn post_rx(&mut self, n: usize, room: u32) {
        for _ in 0..n {
            self.rx.add_writable(&[HDR_LEN as u32 + room]);
        }
    }

    /// The packets the device has put in RX buffers since the last call.
    pub fn received(&mut self) -> Vec<(Header, Vec<u8>)> {
        self.rx
            .take_used()
            .into_iter()
            .map(|(head, len)| {
                assert!(
                    len as usize >= HDR_LEN,
                    "an RX buffer used without a packet"
                );
                let bytes = self.rx.written(head, len);
                let hdr = Header::decode(bytes[..HDR_LEN].try_into().unwrap());
                assert_eq!(hdr.len as usize, bytes.len() - HDR_LEN, "{hdr:?}");
                (hdr, bytes[HDR_LEN..].to_vec())
            })
            .collect()
    }

    /// Interrupts raised since the last call.
    pub fn interrupts(&self) -> u64 {
        self.irq.evt.read().unwrap_or(0)
    }
}

/// The host's side: a path for the device's Unix socket, a poller the
/// device registers with, and blocking client streams.
pub struct Host {
    pub dir: crate::temp_dir::TempDir,
    pub poll: Poll,
    events: Events,
}

impl Host {
    pub fn new() -> Host {
        Host {
            dir: crate::temp_dir::TempDir::new("vsock"),
            poll: Poll::new().unwrap(),
            events: Events::with_capacity(64),
        }
    }

    pub fn socket_path(&self) -> PathBuf {
        self.dir.join("vsock.sock")
    }

    /// A client of the device's socket, as the engine connects.
    pub fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(self.socket_path()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    /// Hands every event the poller has, until it has been quiet for a
    /// moment, to `handle` (device-local token, event).
    pub fn pump(&mut self, mut handle: impl FnMut(&Registry, usize, &mio::event::Event)) {
        loop {
            self.poll
                .poll(&mut self.events, Some(Duration::from_millis(20)))
                .unwrap();
            if self.events.is_empty() {
                return;
            }
            for ev in self.events.iter() {
                handle(self.poll.registry(), ev.token().0, ev);
            }
        }
    }
}

/// Writes `bytes` on a host stream.
pub fn host_write(s: &mut UnixStream, bytes: &[u8]) {
    s.write_all(bytes).unwrap();
}

/// Reads exactly `n` bytes from a host stream.
pub fn host_read(s: &mut UnixStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).unwrap();
    buf
}

/// Reads a host stream to its end.
pub fn host_read_to_end(s: &mut UnixStream) -> Vec<u8> {
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    buf
}
