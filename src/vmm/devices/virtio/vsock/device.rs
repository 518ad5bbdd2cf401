//! The virtio side of vsock: moves packets between the guest's queues and
//! a [`Backend`] (the Unix-socket muxer, or a fake in tests). It knows
//! descriptors and guest memory, nothing of host sockets.

use super::muxer::Muxer;
use super::packet::{Packet, HDR_LEN, MAX_PAYLOAD};
use super::{Backend, Readiness};
use crate::vmm::devices::virtio::queue::{self, Served};
use crate::vmm::devices::virtio::{
    gather, log_device_error, read_config_bytes, scatter, writable_len, ActivateError, Activation,
    Interrupt, VirtioDevice, TYPE_VSOCK,
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
    fn activate(&mut self, act: Activation) -> Result<(), ActivateError> {
        if act.queues.len() != QUEUE_SIZES.len() {
            return Err(ActivateError::QueueCount {
                expected: QUEUE_SIZES.len(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::devices::virtio::vsock::muxer::CONTROL_QUEUE_MAX;
    use crate::vmm::devices::virtio::vsock::packet::*;
    use crate::vmm::devices::virtio::vsock::test_utils::*;

    fn device(backend: TestBackend) -> (Vsock<TestBackend>, mio::Poll) {
        (
            Vsock::with_backend(GUEST_CID, backend),
            mio::Poll::new().unwrap(),
        )
    }

    fn rst_from_host(guest_port: u32) -> Header {
        Header {
            src_cid: HOST_CID,
            dst_cid: GUEST_CID,
            src_port: FIRST_HOST_PORT,
            dst_port: guest_port,
            type_: TYPE_STREAM,
            op: OP_RST,
            ..Default::default()
        }
    }

    #[test]
    fn tx_packets_reach_the_backend_parsed_and_every_chain_is_used() {
        let mem = test_mem();
        let mut guest = GuestDriver::new(&mem);
        let (mut dev, poll) = device(TestBackend::default());
        guest.activate(&mut dev);
        guest.send(guest_rw(FIRST_HOST_PORT, b"hello"), b"hello");
        guest.send(from_guest(OP_CREDIT_REQUEST, FIRST_HOST_PORT), b"");
        // Header and payload in one buffer, with spare bytes after it.
        let mut one = guest_rw(FIRST_HOST_PORT, b"one").encode().to_vec();
        one.extend_from_slice(b"one and more");
        guest.tx.add_readable(&[&one]);
        dev.queue_notify(poll.registry(), TX);
        let sent = &dev.backend().sent;
        assert_eq!(sent.len(), 3);
        assert_eq!(
            sent[0],
            (guest_rw(FIRST_HOST_PORT, b"hello"), b"hello".to_vec())
        );
        assert_eq!(sent[1].0.op, OP_CREDIT_REQUEST);
        assert_eq!(&sent[2].1, b"one");
        assert_eq!(guest.tx.take_used(), [(0, 0), (2, 0), (3, 0)]);
        assert_eq!(guest.interrupts(), 1);
    }

    #[test]
    fn short_and_malformed_tx_chains_are_used_and_dropped() {
        let mem = test_mem();
        let mut guest = GuestDriver::new(&mem);
        let (mut dev, poll) = device(TestBackend::default());
        guest.activate(&mut dev);
        let hdr = guest_rw(FIRST_HOST_PORT, b"0123456789").encode();
        // Shorter than a header.
        guest.tx.add_readable(&[&hdr[..20]]);
        // More payload announced than the chain holds.
        guest.tx.add_readable(&[&hdr, b"01234"]);
        // More payload announced than a packet may carry.
        let huge = Header {
            len: MAX_PAYLOAD as u32 + 1,
            ..guest_rw(FIRST_HOST_PORT, b"")
        };
        guest.tx.add_readable(&[&huge.encode(), &[0u8; 100]]);
        // A header outside guest memory, and one at the top of the
        // address space.
        guest.tx.add_chain(&[(Some(0x7fff_0000_0000), 44, false)]);
        guest.tx.add_chain(&[(Some(u64::MAX - 10), 44, false)]);
        // Only device-writable buffers: nothing to read.
        guest.tx.add_chain(&[(None, 64, true)]);
        // Then a good one.
        guest.send(guest_rw(FIRST_HOST_PORT, b"ok"), b"ok");
        dev.queue_notify(poll.registry(), TX);
        assert_eq!(guest.tx.take_used().len(), 7);
        assert_eq!(dev.backend().sent.len(), 1);
        assert_eq!(dev.backend().sent[0].1, b"ok");
    }

    #[test]
    fn rx_buffers_get_the_backends_packets_header_then_payload() {
        let mem = test_mem();
        let mut guest = GuestDriver::new(&mem);
        let mut backend = TestBackend::default();
        let data = Header {
            op: OP_RW,
            ..rst_from_host(GUEST_PORT)
        };
        backend.to_guest.push_back((data, b"first".to_vec()));
        backend
            .to_guest
            .push_back((rst_from_host(GUEST_PORT), Vec::new()));
        backend.to_guest.push_back((data, vec![0xab; 4096]));
        let (mut dev, poll) = device(backend);
        guest.activate(&mut dev);
        guest.post_rx(1, 4096);
        // A header buffer, then a data buffer, as Linux posts them.
        guest.rx.add_writable(&[HDR_LEN as u32, 100]);
        // A buffer bigger than a packet: the payload stops at 64 KiB.
        guest
            .rx
            .add_writable(&[HDR_LEN as u32 + MAX_PAYLOAD as u32 + 4096]);
        dev.queue_notify(poll.registry(), RX);
        let got = guest.received();
        assert_eq!(got.len(), 3);
        assert_eq!((got[0].0.op, &got[0].1[..]), (OP_RW, &b"first"[..]));
        assert_eq!(got[1].0, rst_from_host(GUEST_PORT));
        assert_eq!(got[2].1, vec![0xab; 4096]);
        assert_eq!(dev.backend().rooms, [4096, 100, MAX_PAYLOAD]);
        assert_eq!(guest.interrupts(), 1);
    }

    #[test]
    fn rx_buffers_wait_in_the_ring_until_there_is_something_to_send() {
        let mem = test_mem();
        let mut guest = GuestDriver::new(&mem);
        let (mut dev, poll) = device(TestBackend::default());
        guest.activate(&mut dev);
        guest.post_rx(2, 4096);
        dev.queue_notify(poll.registry(), RX);
        assert!(guest.received().is_empty());
        assert_eq!(guest.interrupts(), 0);
        // Something for the guest (a host event, here any event) fills the
        // first buffer only.
        dev.backend()
            .to_guest
            .push_back((rst_from_host(GUEST_PORT), Vec::new()));
        dev.serve(poll.registry(), false);
        assert_eq!(guest.received().len(), 1);
        assert_eq!(guest.interrupts(), 1);
        dev.backend()
            .to_guest
            .push_back((rst_from_host(GUEST_PORT), Vec::new()));
        dev.serve(poll.registry(), false);
        assert_eq!(guest.rx.take_used(), [(1, HDR_LEN as u32)]);
    }

    #[test]
    fn an_rx_buffer_too_small_or_outside_memory_is_returned_empty_and_loses_no_packet() {
        let mem = test_mem();
        let mut guest = GuestDriver::new(&mem);
        let mut backend = TestBackend::default();
        backend
            .to_guest
            .push_back((rst_from_host(GUEST_PORT), Vec::new()));
        let (mut dev, poll) = device(backend);
        guest.activate(&mut dev);
        guest.rx.add_writable(&[HDR_LEN as u32 - 1]);
        guest.rx.add_chain(&[(Some(0x7fff_0000_0000), 4096, true)]);
        guest.rx.add_chain(&[(Some(u64::MAX - 100), 4096, true)]);
        // In memory for the header, not for the payload room it claims.
        guest.rx.add_chain(&[(Some((192 << 20) - 100), 4096, true)]);
        // A device-readable buffer has no room at all.
        guest.rx.add_chain(&[(None, 4096, false)]);
        guest.post_rx(1, 4096);
        dev.queue_notify(poll.registry(), RX);
        let used = guest.rx.take_used();
        assert_eq!(used.len(), 6);
        assert!(used[..5].iter().all(|(_, len)| *len == 0), "{used:?}");
        assert_eq!(used[5].1, HDR_LEN as u32);
        assert!(dev.backend().to_guest.is_empty());
    }

    #[test]
    fn tx_waits_while_the_backend_is_full_and_resumes_as_rx_drains_it() {
        let mem = test_mem();
        let mut guest = GuestDriver::new(&mem);
        let backend = TestBackend {
            capacity: 2,
            echo_rst: true,
            ..Default::default()
        };
        let (mut dev, poll) = device(backend);
        guest.activate(&mut dev);
        for port in 0..5 {
            guest.send(from_guest(OP_REQUEST, port), b"");
        }
        // No RX buffers: the backend fills after two.
        dev.queue_notify(poll.registry(), TX);
        assert_eq!(dev.backend().sent.len(), 2);
        assert_eq!(guest.tx.take_used().len(), 2);
        // Nothing more is taken while it stays full, however often kicked.
        dev.queue_notify(poll.registry(), TX);
        assert_eq!(dev.backend().sent.len(), 2);
        // Each RX buffer drains one reply and lets one more TX in, without
        // another TX kick.
        guest.post_rx(2, 4096);
        dev.queue_notify(poll.registry(), RX);
        assert_eq!(guest.received().len(), 2);
        assert_eq!(dev.backend().sent.len(), 4);
        guest.post_rx(10, 4096);
        dev.queue_notify(poll.registry(), RX);
        assert_eq!(guest.received().len(), 3);
        assert_eq!(dev.backend().sent.len(), 5);
        assert_eq!(guest.tx.take_used().len(), 3);
        assert!(!dev.tx_waiting);
    }

    #[test]
    fn reset_drops_the_queues_and_what_waits_for_the_guest() {
        let mem = test_mem();
        let mut guest = GuestDriver::new(&mem);
        let (mut dev, poll) = device(TestBackend::default());
        guest.activate(&mut dev);
        dev.reset();
        assert_eq!(dev.backend().resets, 1);
        // Unactivated: a kick touches nothing.
        guest.send(from_guest(OP_REQUEST, 1), b"");
        dev.queue_notify(poll.registry(), TX);
        assert!(dev.backend().sent.is_empty());
        assert!(guest.tx.take_used().is_empty());
        // And activation wants the three queues.
        let err = dev
            .activate(Activation {
                mem: mem.clone(),
                queues: vec![guest.rx.queue()],
                interrupt: guest.irq.clone(),
            })
            .unwrap_err();
        assert_eq!(
            err,
            ActivateError::QueueCount {
                expected: 3,
                got: 1
            }
        );
        assert_eq!(err.to_string(), "expected 3 queues, got 1");
    }

    #[test]
    fn config_space_is_the_guest_cid() {
        let (dev, _poll) = device(TestBackend::default());
        let mut cid = [0u8; 8];
        dev.read_config(0, &mut cid);
        assert_eq!(u64::from_le_bytes(cid), GUEST_CID);
        let mut past = [0xffu8; 4];
        dev.read_config(6, &mut past);
        assert_eq!(past, [0, 0, 0, 0]);
    }

    /// The whole stack: a guest driver on mock queues, the device, the
    /// muxer, and a host stream on its real socket.
    struct Stack<'a> {
        guest: GuestDriver<'a>,
        dev: Vsock,
        host: Host,
    }

    impl<'a> Stack<'a> {
        fn new(mem: &'a GuestMemoryMmap) -> Stack<'a> {
            let host = Host::new();
            let mut dev = Vsock::new(GUEST_CID, host.socket_path()).unwrap();
            dev.register_sources(host.poll.registry(), 0).unwrap();
            let guest = GuestDriver::new(mem);
            guest.activate(&mut dev);
            Stack { guest, dev, host }
        }

        fn pump(&mut self) {
            let dev = &mut self.dev;
            self.host
                .pump(|reg, tok, ev| dev.handle_event(reg, tok, ev));
        }

        fn kick(&mut self, queue: usize) {
            self.dev.queue_notify(self.host.poll.registry(), queue);
        }
    }

    #[test]
    fn a_host_stream_round_trips_through_the_device_to_a_guest_driver() {
        let mem = test_mem();
        let mut st = Stack::new(&mem);
        assert_eq!(st.dev.uds_path(), st.host.socket_path());
        st.guest.post_rx(64, 4096);
        st.kick(RX);
        let mut s = st.host.connect();
        host_write(&mut s, b"CONNECT 52\n");
        st.pump();
        let got = st.guest.received();
        assert_eq!(got.len(), 1);
        let req = got[0].0;
        assert_eq!((req.op, req.dst_port), (OP_REQUEST, GUEST_PORT));
        let port = req.src_port;
        st.guest.send(from_guest(OP_RESPONSE, port), b"");
        st.kick(TX);
        assert_eq!(host_read(&mut s, 14), b"OK 1073741824\n");

        // Host to guest, 200 KiB: more than the RX buffers posted at once,
        // so the guest reposts and acknowledges as it goes.
        let data: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
        let writer = {
            let mut s = s.try_clone().unwrap();
            let data = data.clone();
            std::thread::spawn(move || host_write(&mut s, &data))
        };
        let mut got = Vec::new();
        let mut rounds = 0;
        while got.len() < data.len() {
            st.pump();
            let pkts = st.guest.received();
            for (h, payload) in &pkts {
                assert_eq!((h.op, h.dst_port, h.src_port), (OP_RW, GUEST_PORT, port));
                got.extend_from_slice(payload);
            }
            // The guest passes the data on and says so.
            let update = Header {
                fwd_cnt: got.len() as u32,
                ..from_guest(OP_CREDIT_UPDATE, port)
            };
            st.guest.send(update, b"");
            st.guest.post_rx(pkts.len(), 4096);
            st.kick(TX);
            rounds += 1;
            assert!(rounds < 1000, "stalled at {} bytes", got.len());
        }
        writer.join().unwrap();
        assert_eq!(got, data);

        // Guest to host.
        st.guest
            .send(guest_rw(port, b"from the guest"), b"from the guest");
        st.kick(TX);
        assert_eq!(host_read(&mut s, 14), b"from the guest");

        // The host hangs up: the guest hears SHUTDOWN, answers RST, and
        // the stream is gone.
        drop(s);
        st.pump();
        let got = st.guest.received();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.op, OP_SHUTDOWN);
        st.guest.send(from_guest(OP_RST, port), b"");
        st.kick(TX);
        assert!(st.guest.received().is_empty());
        assert!(st.guest.tx.take_used().len() > 1);
    }

    #[test]
    fn a_guest_that_sends_and_never_receives_cannot_grow_what_the_host_holds() {
        let mem = test_mem();
        let mut st = Stack::new(&mem);
        // 500 packets to a port nobody listens on, no RX buffer: each
        // would earn an RST. The device takes packets only while the RSTs
        // fit under the cap, and leaves the rest in the ring.
        for i in 0..500 {
            st.guest.send(from_guest(OP_REQUEST, 2000 + i), b"");
        }
        st.kick(TX);
        st.kick(TX);
        assert_eq!(st.guest.tx.take_used().len(), CONTROL_QUEUE_MAX);
        assert_eq!(st.dev.backend().control_len(), CONTROL_QUEUE_MAX);
        // RX buffers let it go on, in order, with no packet lost.
        let mut replies = Vec::new();
        while replies.len() < 500 {
            st.guest.post_rx(100, 4096);
            st.kick(RX);
            replies.extend(st.guest.received());
            assert!(st.dev.backend().control_len() <= CONTROL_QUEUE_MAX);
        }
        let ports: Vec<u32> = replies.iter().map(|(h, _)| h.src_port).collect();
        assert_eq!(ports, (2000..2500).collect::<Vec<u32>>());
        assert!(replies.iter().all(|(h, _)| h.op == OP_RST));
    }
}
