//! virtio-rng: fills guest buffers from the host's getrandom.

use super::queue::{self, Served};
use super::{log_device_error, ActivateError, Activation, VirtioDevice};
use virtio_bindings::virtio_ids::VIRTIO_ID_RNG;
use virtio_queue::Queue;
use vm_memory::{Bytes, GuestMemoryMmap};

/// Cap on the random bytes one request (descriptor chain) gets, so one
/// request cannot make us allocate or draw without bound (a chain may hold
/// 65535 descriptors of 4 GiB each) and the used length always fits its
/// u32. Linux asks for at most a page at a time; fewer bytes than the
/// buffers hold is a valid answer.
const MAX_CHUNK: usize = 64 * 1024;

#[derive(Default)]
pub struct Rng {
    active: Option<(GuestMemoryMmap, Queue, super::Interrupt)>,
}

fn getrandom(buf: &mut [u8]) -> bool {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of buf.
        let n = unsafe {
            libc::getrandom(
                buf[filled..].as_mut_ptr() as *mut libc::c_void,
                buf.len() - filled,
                0,
            )
        };
        if n <= 0 {
            return false;
        }
        filled += n as usize;
    }
    true
}

impl Rng {
    fn process(&mut self) {
        let Some((mem, queue, irq)) = self.active.as_mut() else {
            return;
        };
        let mem = &*mem;
        queue::drain("virtio-rng", queue, mem, irq, |descs| {
            let mut len = 0usize;
            for d in descs.iter().filter(|d| d.is_write_only()) {
                let n = (d.len() as usize).min(MAX_CHUNK - len);
                if n == 0 {
                    break;
                }
                let mut buf = vec![0u8; n];
                if !getrandom(&mut buf) || mem.write_slice(&buf, d.addr()).is_err() {
                    log_device_error("virtio-rng", "cannot fill guest buffer");
                    break;
                }
                len += n;
            }
            // At most MAX_CHUNK, so it fits.
            Served::Used(len as u32)
        });
    }
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_RNG
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[64]
    }
    fn features(&self) -> u64 {
        0
    }
    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn activate(&mut self, act: Activation) -> Result<(), ActivateError> {
        let got = act.queues.len();
        let Ok([queue]) = <[Queue; 1]>::try_from(act.queues) else {
            return Err(ActivateError::QueueCount { expected: 1, got });
        };
        self.active = Some((act.mem, queue, act.interrupt));
        Ok(())
    }
    fn queue_notify(&mut self, _registry: &mio::Registry, _index: usize) {
        self.process();
    }
    fn reset(&mut self) {
        self.active = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::devices::virtio::Interrupt;
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;
    use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
    use virtio_queue::desc::{split::Descriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::GuestAddress;
    use vmm_sys_util::eventfd::EventFd;

    #[test]
    fn one_request_gets_at_most_max_chunk_bytes_whatever_its_buffers_claim() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let vq = MockSplitQueue::new(&mem, 16);
        // Three writable buffers claiming 4 GiB each (only their first
        // MAX_CHUNK bytes lie in memory).
        let chain: Vec<RawDescriptor> = (0..3u16)
            .map(|i| {
                let next = if i < 2 { VRING_DESC_F_NEXT } else { 0 };
                let flags = (VRING_DESC_F_WRITE | next) as u16;
                RawDescriptor::from(Descriptor::new(0x40000, u32::MAX, flags, i + 1))
            })
            .collect();
        vq.add_desc_chains(&chain, 0).unwrap();
        let mut dev = Rng::default();
        dev.activate(Activation {
            mem: mem.clone(),
            queues: vec![vq.create_queue().unwrap()],
            interrupt: Interrupt {
                status: Arc::new(AtomicU32::new(0)),
                evt: Arc::new(EventFd::new(0).unwrap()),
            },
        })
        .unwrap();
        dev.queue_notify(mio::Poll::new().unwrap().registry(), 0);
        let used_len: u32 = mem.read_obj(GuestAddress(vq.used_addr().0 + 8)).unwrap();
        assert_eq!(used_len as usize, MAX_CHUNK);
    }

    #[test]
    fn activation_without_its_one_queue_is_refused() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let err = Rng::default()
            .activate(Activation {
                mem,
                queues: Vec::new(),
                interrupt: Interrupt {
                    status: Arc::new(AtomicU32::new(0)),
                    evt: Arc::new(EventFd::new(0).unwrap()),
                },
            })
            .unwrap_err();
        assert_eq!(
            err,
            ActivateError::QueueCount {
                expected: 1,
                got: 0
            }
        );
        assert_eq!(err.to_string(), "expected 1 queue, got 0");
    }
}
