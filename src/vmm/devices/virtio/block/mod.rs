//! virtio-blk: one file-backed disk, read-only or writable. Each chain is
//! parsed into a [`Request`] (`request.rs`), then served on the disk file
//! straight from and into guest memory.

mod request;

use super::queue::{self, Served};
use super::{
    feature, log_device_error, read_config_bytes, ActivateError, Activation, VirtioDevice,
};
use request::{Request, RequestError};
use std::fmt;
use std::fs::File;
use std::os::fd::AsRawFd;
use virtio_bindings::virtio_blk::*;
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_queue::Queue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// The unit of the request header's sector and of the capacity, whatever
/// the disk's own block size.
const SECTOR: u64 = 512;
// The status byte's values, as the byte the guest reads.
const S_OK: u8 = VIRTIO_BLK_S_OK as u8;
const S_IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;
const S_UNSUPP: u8 = VIRTIO_BLK_S_UNSUPP as u8;
const QUEUE_SIZE: u16 = 256;
const ID_LEN: usize = VIRTIO_BLK_ID_BYTES as usize;

/// The backing file and what the guest may do with it.
struct Disk {
    file: File,
    read_only: bool,
    flush: bool,
    /// Written since the last fdatasync. Every guest syncfs sends a flush,
    /// written or not (each workspace exec ends with one); a clean file
    /// needs no fdatasync, which would still go down to the host's disk.
    /// Starts set: an earlier VMM may have left unsynced writes.
    dirty: std::cell::Cell<bool>,
    capacity_bytes: u64,
    id: [u8; ID_LEN],
}

pub struct Block {
    disk: Disk,
    /// The capacity in sectors. SEG_MAX stays off: with it a nested test
    /// host once stalled a push for minutes and showed no clear gain.
    config: [u8; 8],
    queue_sizes: [u16; 1],
    active: Option<(GuestMemoryMmap, Queue, super::Interrupt)>,
}

impl Block {
    pub fn new(file: File, read_only: bool, flush: bool, serial: &str) -> std::io::Result<Self> {
        let len = file.metadata()?.len();
        // Block devices report 0 in metadata; ask the kernel via seek instead.
        let len = if len == 0 {
            std::io::Seek::seek(&mut &file, std::io::SeekFrom::End(0))?
        } else {
            len
        };
        let capacity_bytes = len - len % SECTOR;
        let mut id = [0u8; ID_LEN];
        let n = serial.len().min(ID_LEN);
        id[..n].copy_from_slice(&serial.as_bytes()[..n]);
        Ok(Block {
            disk: Disk {
                file,
                read_only,
                flush,
                dirty: std::cell::Cell::new(true),
                capacity_bytes,
                id,
            },
            config: (capacity_bytes / SECTOR).to_le_bytes(),
            queue_sizes: [QUEUE_SIZE],
            active: None,
        })
    }

    fn process(&mut self) {
        let Some((mem, queue, irq)) = self.active.as_mut() else {
            return;
        };
        let (mem, disk) = (&*mem, &self.disk);
        queue::drain("virtio-blk", queue, mem, irq, |descs| {
            let (status, written) = match disk.handle_request(mem, descs) {
                Ok(w) => (S_OK, w),
                Err(e) => {
                    let status = e.status();
                    if status == S_IOERR {
                        log_device_error("virtio-blk", &e.to_string());
                    }
                    (status, 0)
                }
            };
            // The status byte is the last byte of the last descriptor.
            let mut len = written;
            if let Some(at) = descs.last().and_then(status_addr) {
                if mem.write_obj(status, at).is_ok() {
                    len += 1;
                }
            }
            Served::Used(len)
        });
    }
}

type DescList = [virtio_queue::desc::split::Descriptor];

/// Where the status byte goes: the last byte of the last descriptor, when
/// that descriptor is device-writable. The address and length are the
/// guest's, so the sum is checked: a descriptor that ends past the top of
/// the address space gets no status (the request is still completed).
fn status_addr(last: &virtio_queue::desc::split::Descriptor) -> Option<GuestAddress> {
    if !last.is_write_only() || last.len() == 0 {
        return None;
    }
    last.addr()
        .0
        .checked_add(u64::from(last.len()) - 1)
        .map(GuestAddress)
}

/// Why a request failed: the chain was not a request this device serves,
/// or serving it failed.
#[derive(Debug)]
enum BlockError {
    Request(RequestError),
    WriteReadOnly,
    /// A data buffer lies (partly) outside guest memory.
    BufferOutsideMemory,
    Read(std::io::Error),
    Write(std::io::Error),
    Flush(std::io::Error),
}

impl BlockError {
    /// The status byte the guest gets.
    fn status(&self) -> u8 {
        match self {
            BlockError::Request(RequestError::Unsupported(_)) => S_UNSUPP,
            _ => S_IOERR,
        }
    }
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockError::Request(e) => write!(f, "{e}"),
            BlockError::WriteReadOnly => f.write_str("write to a read-only disk"),
            BlockError::BufferOutsideMemory => {
                f.write_str("malformed request: buffer outside guest memory")
            }
            BlockError::Read(e) => write!(f, "read: {e}"),
            BlockError::Write(e) => write!(f, "write: {e}"),
            BlockError::Flush(e) => write!(f, "flush: {e}"),
        }
    }
}

impl std::error::Error for BlockError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BlockError::Request(e) => Some(e),
            BlockError::Read(e) | BlockError::Write(e) | BlockError::Flush(e) => Some(e),
            _ => None,
        }
    }
}

impl From<RequestError> for BlockError {
    fn from(e: RequestError) -> Self {
        BlockError::Request(e)
    }
}

impl Disk {
    /// Serves one chain; returns the number of data bytes written to the guest.
    fn handle_request(&self, mem: &GuestMemoryMmap, descs: &DescList) -> Result<u32, BlockError> {
        let request = Request::parse(descs, mem, self.capacity_bytes)?;
        self.execute(mem, request)
    }

    fn execute(&self, mem: &GuestMemoryMmap, request: Request) -> Result<u32, BlockError> {
        match request {
            // One preadv/pwritev for the whole request: the segments are
            // contiguous on disk.
            Request::In { offset, len, data } => {
                let mut iov = guest_iovecs(mem, data).ok_or(BlockError::BufferOutsideMemory)?;
                io_at(&self.file, &mut iov, offset, false).map_err(BlockError::Read)?;
                Ok(len)
            }
            Request::Out { offset, data } => {
                if self.read_only {
                    return Err(BlockError::WriteReadOnly);
                }
                let mut iov = guest_iovecs(mem, data).ok_or(BlockError::BufferOutsideMemory)?;
                self.dirty.set(true);
                io_at(&self.file, &mut iov, offset, true).map_err(BlockError::Write)?;
                Ok(0)
            }
            Request::Flush => {
                if !self.read_only && self.flush && self.dirty.get() {
                    self.file.sync_data().map_err(BlockError::Flush)?;
                    self.dirty.set(false);
                }
                Ok(0)
            }
            Request::GetId { buffer } => {
                let n = (buffer.len() as usize).min(ID_LEN);
                mem.write_slice(&self.id[..n], buffer.addr())
                    .map_err(|_| BlockError::BufferOutsideMemory)?;
                Ok(n as u32)
            }
        }
    }
}

/// The host addresses of a request's data buffers, straight into guest
/// memory: the disk is read into and written from them with no bounce
/// buffer in between. None if any byte lies outside guest memory.
fn guest_iovecs(mem: &GuestMemoryMmap, data: &DescList) -> Option<Vec<libc::iovec>> {
    let mut iov = Vec::with_capacity(data.len());
    for d in data {
        let mut got = 0usize;
        for s in GuestMemoryBackend::get_slices(mem, d.addr(), d.len() as usize) {
            let s = s.ok()?;
            got += s.len();
            iov.push(libc::iovec {
                iov_base: s.ptr_guard_mut().as_ptr().cast(),
                iov_len: s.len(),
            });
        }
        // vm-memory does not promise the slices add up (its docs say not
        // to rely on it in unsafe code), and the kernel will write there.
        if got != d.len() as usize {
            return None;
        }
    }
    Some(iov)
}

/// preadv/pwritev of all of `iov` at `offset`, resuming after short
/// transfers; a read past the end of the file is an error.
fn io_at(
    file: &File,
    mut iov: &mut [libc::iovec],
    mut offset: u64,
    write: bool,
) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    while !iov.is_empty() {
        let cnt = iov.len().min(1024) as libc::c_int;
        // SAFETY: every iovec points into the guest memory mapping, which
        // outlives this call (guest_iovecs checked the ranges).
        let n = unsafe {
            if write {
                libc::pwritev(file.as_raw_fd(), iov.as_ptr(), cnt, offset as libc::off_t)
            } else {
                libc::preadv(file.as_raw_fd(), iov.as_ptr(), cnt, offset as libc::off_t)
            }
        };
        if n < 0 {
            let e = Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(if write {
                ErrorKind::WriteZero.into()
            } else {
                ErrorKind::UnexpectedEof.into()
            });
        }
        let mut n = n as usize;
        offset += n as u64;
        while n > 0 {
            if n >= iov[0].iov_len {
                n -= iov[0].iov_len;
                iov = &mut iov[1..];
            } else {
                iov[0].iov_base = iov[0].iov_base.cast::<u8>().wrapping_add(n).cast();
                iov[0].iov_len -= n;
                n = 0;
            }
        }
    }
    Ok(())
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }
    fn features(&self) -> u64 {
        let ro = if self.disk.read_only {
            feature(VIRTIO_BLK_F_RO)
        } else {
            0
        };
        let flush = if self.disk.flush {
            feature(VIRTIO_BLK_F_FLUSH)
        } else {
            0
        };
        ro | flush
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }
    fn activate(&mut self, act: Activation) -> Result<(), ActivateError> {
        let got = act.queues.len();
        let Ok([queue]) = <[Queue; 1]>::try_from(act.queues) else {
            return Err(ActivateError::QueueCount { expected: 1, got });
        };
        self.active = Some((act.mem, queue, act.interrupt));
        self.process();
        Ok(())
    }
    fn queue_notify(&mut self, _registry: &mio::Registry, _index: usize) {
        self.process();
    }
    fn reset(&mut self) {
        self.active = None;
    }
    fn own_io_thread(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::devices::virtio::Interrupt;
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vmm_sys_util::eventfd::EventFd;

    use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};

    const NEXT: u16 = VRING_DESC_F_NEXT as u16;
    const WRITE: u16 = VRING_DESC_F_WRITE as u16;

    struct Rig {
        mem: GuestMemoryMmap,
        poll: mio::Poll,
        path: std::path::PathBuf,
    }

    impl Rig {
        fn new(disk: &[u8]) -> Rig {
            let path = std::env::temp_dir()
                .join(format!("pyro-blk-{}", crate::engine::paths::random_id(4)));
            std::fs::write(&path, disk).unwrap();
            let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
            Rig {
                mem,
                poll: mio::Poll::new().unwrap(),
                path,
            }
        }

        /// Runs one request chain through a fresh device; returns the
        /// status byte the device wrote and the used length.
        fn request(
            &self,
            read_only: bool,
            hdr: (u32, u64),
            descs: &[(u64, u32, u16)],
        ) -> (u8, u32) {
            let mut raw = [0u8; 16];
            raw[0..4].copy_from_slice(&hdr.0.to_le_bytes());
            raw[8..16].copy_from_slice(&hdr.1.to_le_bytes());
            let _ = self.mem.write_slice(&raw, GuestAddress(descs[0].0));
            let vq = MockSplitQueue::new(&self.mem, 16);
            let chain: Vec<RawDescriptor> = descs
                .iter()
                .enumerate()
                .map(|(i, (addr, len, flags))| {
                    let next = if i + 1 < descs.len() { NEXT } else { 0 };
                    RawDescriptor::from(SplitDescriptor::new(
                        *addr,
                        *len,
                        flags | next,
                        (i + 1) as u16,
                    ))
                })
                .collect();
            vq.add_desc_chains(&chain, 0).unwrap();
            let queue: Queue = vq.create_queue().unwrap();
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(!read_only)
                .open(&self.path)
                .unwrap();
            let mut dev = Block::new(file, read_only, true, "test").unwrap();
            let irq = Interrupt {
                status: Arc::new(AtomicU32::new(0)),
                evt: Arc::new(EventFd::new(0).unwrap()),
            };
            let status_at = {
                let (a, l, _) = descs.last().unwrap();
                // Hostile cases put the status past the top of memory.
                a.wrapping_add(*l as u64).wrapping_sub(1)
            };
            let _ = self.mem.write_obj(0xeeu8, GuestAddress(status_at));
            dev.activate(Activation {
                mem: self.mem.clone(),
                queues: vec![queue],
                interrupt: irq,
            })
            .unwrap();
            dev.queue_notify(self.poll.registry(), 0);
            let status: u8 = self.mem.read_obj(GuestAddress(status_at)).unwrap_or(0xee);
            let used_len: u32 = self
                .mem
                .read_obj(GuestAddress(vq.used_addr().0 + 8))
                .unwrap();
            (status, used_len)
        }
    }

    impl Drop for Rig {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    #[test]
    fn reads_and_writes_sectors() {
        let mut disk = vec![0u8; 4096];
        disk[512..1024].fill(0xab);
        let rig = Rig::new(&disk);
        let (status, used) = rig.request(
            false,
            (VIRTIO_BLK_T_IN, 1),
            &[(0x1000, 16, 0), (0x2000, 512, WRITE), (0x3000, 1, WRITE)],
        );
        assert_eq!((status, used), (S_OK, 513));
        let mut got = [0u8; 512];
        rig.mem.read_slice(&mut got, GuestAddress(0x2000)).unwrap();
        assert!(got.iter().all(|b| *b == 0xab));

        rig.mem
            .write_slice(&[0x5a; 512], GuestAddress(0x4000))
            .unwrap();
        let (status, _) = rig.request(
            false,
            (VIRTIO_BLK_T_OUT, 7),
            &[(0x1000, 16, 0), (0x4000, 512, 0), (0x3000, 1, WRITE)],
        );
        assert_eq!(status, S_OK);
        assert!(std::fs::read(&rig.path).unwrap()[7 * 512..8 * 512]
            .iter()
            .all(|b| *b == 0x5a));
    }

    #[test]
    fn multi_segment_requests_are_one_contiguous_range() {
        let rig = Rig::new(&[0u8; 8192]);
        rig.mem
            .write_slice(&[1; 512], GuestAddress(0x4000))
            .unwrap();
        rig.mem
            .write_slice(&[2; 1024], GuestAddress(0x6000))
            .unwrap();
        rig.mem
            .write_slice(&[3; 512], GuestAddress(0x9000))
            .unwrap();
        let (status, _) = rig.request(
            false,
            (VIRTIO_BLK_T_OUT, 2),
            &[
                (0x1000, 16, 0),
                (0x4000, 512, 0),
                (0x6000, 1024, 0),
                (0x9000, 512, 0),
                (0x3000, 1, WRITE),
            ],
        );
        assert_eq!(status, S_OK);
        let disk = std::fs::read(&rig.path).unwrap();
        assert!(disk[1024..1536].iter().all(|b| *b == 1));
        assert!(disk[1536..2560].iter().all(|b| *b == 2));
        assert!(disk[2560..3072].iter().all(|b| *b == 3));
        // Read it back scattered the other way round.
        let (status, used) = rig.request(
            false,
            (VIRTIO_BLK_T_IN, 2),
            &[
                (0x1000, 16, 0),
                (0xa000, 1536, WRITE),
                (0xc000, 512, WRITE),
                (0x3000, 1, WRITE),
            ],
        );
        assert_eq!((status, used), (S_OK, 2049));
        let mut got = vec![0u8; 512];
        rig.mem.read_slice(&mut got, GuestAddress(0xc000)).unwrap();
        assert!(got.iter().all(|b| *b == 3));
        // One bad segment fails the whole write before anything is written.
        let before = std::fs::read(&rig.path).unwrap();
        let (status, _) = rig.request(
            false,
            (VIRTIO_BLK_T_OUT, 10),
            &[
                (0x1000, 16, 0),
                (0x4000, 512, 0),
                (0x7fff_0000, 512, 0),
                (0x3000, 1, WRITE),
            ],
        );
        assert_eq!(status, S_IOERR);
        assert_eq!(std::fs::read(&rig.path).unwrap(), before);
        // Mixed directions in one request are refused.
        let (status, _) = rig.request(
            false,
            (VIRTIO_BLK_T_IN, 0),
            &[
                (0x1000, 16, 0),
                (0xa000, 512, WRITE),
                (0xc000, 512, 0),
                (0x3000, 1, WRITE),
            ],
        );
        assert_eq!(status, S_IOERR);
    }

    #[test]
    fn hostile_requests_fail_cleanly() {
        let rig = Rig::new(&[0u8; 4096]);
        // Past the end of the disk.
        let (s, _) = rig.request(
            false,
            (VIRTIO_BLK_T_IN, 8),
            &[(0x1000, 16, 0), (0x2000, 512, WRITE), (0x3000, 1, WRITE)],
        );
        assert_eq!(s, S_IOERR);
        // Sector number that overflows when turned into a byte offset.
        let (s, _) = rig.request(
            false,
            (VIRTIO_BLK_T_IN, u64::MAX),
            &[(0x1000, 16, 0), (0x2000, 512, WRITE), (0x3000, 1, WRITE)],
        );
        assert_eq!(s, S_IOERR);
        // A write whose data runs off the end of guest memory (1 MiB)
        // writes nothing.
        let (s, _) = rig.request(
            false,
            (VIRTIO_BLK_T_OUT, 0),
            &[(0x1000, 16, 0), (0xff000, 8192, 0), (0x3000, 1, WRITE)],
        );
        assert_eq!(s, S_IOERR);
        assert_eq!(std::fs::read(&rig.path).unwrap(), [0u8; 4096]);
        // Data buffer outside guest memory.
        let (s, _) = rig.request(
            false,
            (VIRTIO_BLK_T_IN, 0),
            &[
                (0x1000, 16, 0),
                (0x7fff_0000, 512, WRITE),
                (0x3000, 1, WRITE),
            ],
        );
        assert_eq!(s, S_IOERR);
        // Header shorter than a request header.
        let (s, _) = rig.request(
            false,
            (VIRTIO_BLK_T_IN, 0),
            &[(0x1000, 8, 0), (0x2000, 512, WRITE), (0x3000, 1, WRITE)],
        );
        assert_eq!(s, S_IOERR);
        // A write to a read-only disk leaves the file untouched.
        let (s, _) = rig.request(
            true,
            (VIRTIO_BLK_T_OUT, 0),
            &[(0x1000, 16, 0), (0x2000, 512, 0), (0x3000, 1, WRITE)],
        );
        assert_eq!(s, S_IOERR);
        assert!(std::fs::read(&rig.path).unwrap().iter().all(|b| *b == 0));
        // Reading into a device-readable buffer is refused.
        let (s, _) = rig.request(
            false,
            (VIRTIO_BLK_T_IN, 0),
            &[(0x1000, 16, 0), (0x2000, 512, 0), (0x3000, 1, WRITE)],
        );
        assert_eq!(s, S_IOERR);
        // Unknown request types are reported as unsupported.
        let (s, _) = rig.request(false, (99, 0), &[(0x1000, 16, 0), (0x3000, 1, WRITE)]);
        assert_eq!(s, S_UNSUPP);
    }

    #[test]
    fn a_status_descriptor_at_the_top_of_the_address_space_does_not_overflow() {
        let rig = Rig::new(&[0u8; 4096]);
        // addr + len - 1 is past u64::MAX: no status byte and no panic;
        // the read itself was valid, so the chain completes with its data.
        let (s, used) = rig.request(
            false,
            (VIRTIO_BLK_T_IN, 0),
            &[
                (0x1000, 16, 0),
                (0x2000, 512, WRITE),
                (u64::MAX - 3, 16, WRITE),
            ],
        );
        assert_eq!((s, used), (0xee, 512));
        assert_eq!(
            status_addr(&SplitDescriptor::new(u64::MAX, 2, WRITE, 0)),
            None
        );
        assert_eq!(
            status_addr(&SplitDescriptor::new(u64::MAX, 1, WRITE, 0)),
            Some(GuestAddress(u64::MAX))
        );
        assert_eq!(status_addr(&SplitDescriptor::new(0x3000, 1, 0, 0)), None);
    }

    #[test]
    fn get_id_writes_only_into_a_device_writable_buffer() {
        let rig = Rig::new(&[0u8; 4096]);
        rig.mem
            .write_slice(&[0x77; 32], GuestAddress(0x2000))
            .unwrap();
        // A device-readable data buffer: refused, left as it was.
        let (s, used) = rig.request(
            false,
            (VIRTIO_BLK_T_GET_ID, 0),
            &[(0x1000, 16, 0), (0x2000, 20, 0), (0x3000, 1, WRITE)],
        );
        assert_eq!((s, used), (S_IOERR, 1));
        let mut got = [0u8; 20];
        rig.mem.read_slice(&mut got, GuestAddress(0x2000)).unwrap();
        assert_eq!(got, [0x77; 20]);
        // A device-writable one gets the serial, NUL-padded to 20 bytes.
        let (s, used) = rig.request(
            false,
            (VIRTIO_BLK_T_GET_ID, 0),
            &[(0x1000, 16, 0), (0x2000, 20, WRITE), (0x3000, 1, WRITE)],
        );
        assert_eq!((s, used), (S_OK, 21));
        rig.mem.read_slice(&mut got, GuestAddress(0x2000)).unwrap();
        assert_eq!(&got[..4], b"test");
        assert!(got[4..].iter().all(|b| *b == 0));
    }
}
