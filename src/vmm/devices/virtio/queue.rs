//! The one loop every device runs over a virtqueue: take each chain the
//! driver made available, serve it, hand it back as used, and raise the
//! interrupt once for the whole batch.

use super::{log_device_error, Interrupt};
use virtio_queue::desc::split::Descriptor;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;

/// What a device did with one descriptor chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Done: return the chain to the driver with this many bytes written
    /// into its device-writable buffers.
    Used(u32),
    /// Not now (nothing to put in an RX buffer, or the device cannot take
    /// more yet): leave the chain, and every one after it, in the ring for
    /// the next round.
    Later,
}

/// Serves chains from `queue` until it is empty or `serve` answers
/// [`Served::Later`]; signals `irq` once if any chain was used. Returns
/// whether any was.
///
/// `serve` sees the chain's descriptors as the guest wrote them: their
/// addresses and lengths are the guest's and must be checked before use
/// (`scatter`, `gather` and `writable_len` do). How many chains one call
/// takes is up to the driver (virtio-queue re-reads the available index on
/// every pop), so `serve` must not keep anything per chain: each chain is
/// finished, or put back, before the next one is taken.
pub fn drain(
    device: &str,
    queue: &mut Queue,
    mem: &GuestMemoryMmap,
    irq: &Interrupt,
    mut serve: impl FnMut(&[Descriptor]) -> Served,
) -> bool {
    let mut descs = Vec::new();
    let mut used_any = false;
    while let Some(chain) = queue.pop_descriptor_chain(mem) {
        let head = chain.head_index();
        descs.clear();
        descs.extend(chain);
        match serve(&descs) {
            Served::Used(len) => {
                if let Err(e) = queue.add_used(mem, head, len) {
                    log_device_error(device, &format!("add_used: {e}"));
                }
                used_any = true;
            }
            Served::Later => {
                queue.go_to_previous_position();
                break;
            }
        }
    }
    if used_any {
        irq.signal_used();
    }
    used_any
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};
    use vmm_sys_util::eventfd::EventFd;

    fn irq() -> Interrupt {
        Interrupt {
            status: Arc::new(AtomicU32::new(0)),
            evt: Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap()),
        }
    }

    #[test]
    fn every_chain_is_used_in_order_and_the_interrupt_raised_once() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let vq = MockSplitQueue::new(&mem, 16);
        // Three one-descriptor chains.
        let descs: Vec<RawDescriptor> = (0..3u64)
            .map(|i| RawDescriptor::from(Descriptor::new(0x1_0000 + i * 0x100, 16, 2, 0)))
            .collect();
        vq.add_desc_chains(&descs, 0).unwrap();
        let mut queue: Queue = vq.create_queue().unwrap();
        let irq = irq();
        let mut seen = Vec::new();
        let used = drain("test", &mut queue, &mem, &irq, |d| {
            seen.push(d[0].addr().0);
            Served::Used(seen.len() as u32)
        });
        assert!(used);
        assert_eq!(seen, [0x1_0000, 0x1_0100, 0x1_0200]);
        let used_idx: u16 = mem.read_obj(GuestAddress(vq.used_addr().0 + 2)).unwrap();
        assert_eq!(used_idx, 3);
        // Used lengths in ring order.
        for i in 0..3u64 {
            let len: u32 = mem
                .read_obj(GuestAddress(vq.used_addr().0 + 4 + 8 * i + 4))
                .unwrap();
            assert_eq!(len, i as u32 + 1);
        }
        assert_eq!(irq.evt.read().unwrap(), 1);
        assert_eq!(
            irq.status.load(Ordering::SeqCst),
            virtio_bindings::virtio_mmio::VIRTIO_MMIO_INT_VRING
        );
    }

    #[test]
    fn a_chain_served_later_stays_in_the_ring_with_those_after_it() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let vq = MockSplitQueue::new(&mem, 16);
        let descs: Vec<RawDescriptor> = (0..3u64)
            .map(|i| RawDescriptor::from(Descriptor::new(0x1_0000 + i * 0x100, 16, 2, 0)))
            .collect();
        vq.add_desc_chains(&descs, 0).unwrap();
        let mut queue: Queue = vq.create_queue().unwrap();
        let irq = irq();
        // Nothing to do: nothing used, no interrupt.
        assert!(!drain("test", &mut queue, &mem, &irq, |_| Served::Later));
        assert!(irq.evt.read().is_err(), "no interrupt without a used chain");
        // The first is served, the second put back: the next round starts
        // at the second.
        let mut n = 0;
        assert!(drain("test", &mut queue, &mem, &irq, |_| {
            n += 1;
            if n == 1 {
                Served::Used(0)
            } else {
                Served::Later
            }
        }));
        let mut seen = Vec::new();
        drain("test", &mut queue, &mem, &irq, |d| {
            seen.push(d[0].addr().0);
            Served::Used(0)
        });
        assert_eq!(seen, [0x1_0100, 0x1_0200]);
    }
}
