//! virtio-rng: fills guest buffers from the host's getrandom.

use super::{log_device_error, Activation, VirtioDevice, TYPE_RNG};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestMemoryMmap};

/// Per-buffer cap, so one request cannot make us allocate without bound.
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
        let mut used_any = false;
        while let Some(chain) = queue.pop_descriptor_chain(&*mem) {
            let head = chain.head_index();
            let mut len = 0u32;
            for d in chain.filter(|d| d.is_write_only()) {
                let mut buf = vec![0u8; (d.len() as usize).min(MAX_CHUNK)];
                if !getrandom(&mut buf) || mem.write_slice(&buf, d.addr()).is_err() {
                    log_device_error("virtio-rng", "cannot fill guest buffer");
                    break;
                }
                len += buf.len() as u32;
            }
            if queue.add_used(&*mem, head, len).is_err() {
                log_device_error("virtio-rng", "add_used failed");
            }
            used_any = true;
        }
        if used_any {
            irq.signal_used();
        }
    }
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        TYPE_RNG
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
    fn activate(&mut self, act: Activation) -> Result<(), String> {
        let queue = act.queues.into_iter().next().ok_or("no queue")?;
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
