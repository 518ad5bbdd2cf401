//! virtio-blk: one file-backed disk, read-only or writable.

use super::queue::{self, Served};
use super::{log_device_error, read_config_bytes, Activation, VirtioDevice, TYPE_BLOCK};
use std::fs::File;
use std::os::fd::AsRawFd;
use virtio_queue::Queue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

const SECTOR: u64 = 512;
const F_RO: u64 = 1 << 5;
const F_FLUSH: u64 = 1 << 9;
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;
/// Largest single data segment we accept; the kernel's default max segment
/// size is far below this, so only a hostile driver hits it.
const MAX_SEGMENT: u32 = 4 << 20;
/// Largest whole request; Linux stays near 1 MiB, this bounds the I/O a
/// hostile driver can ask for in one go.
const MAX_REQUEST: u64 = 32 << 20;
const QUEUE_SIZE: u16 = 256;
const ID_LEN: usize = 20;

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
                Err((status, msg)) => {
                    if status == S_IOERR {
                        log_device_error("virtio-blk", &msg);
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

impl Disk {
    /// Serves one request; returns the number of data bytes written to the guest.
    fn handle_request(&self, mem: &GuestMemoryMmap, descs: &DescList) -> Result<u32, (u8, String)> {
        let (file, read_only, flush, capacity, id) = (
            &self.file,
            self.read_only,
            self.flush,
            self.capacity_bytes,
            &self.id,
        );
        let bad = |m: &str| (S_IOERR, format!("malformed request: {m}"));
        if descs.len() < 2 {
            return Err(bad("fewer than two descriptors"));
        }
        let hdr = &descs[0];
        if hdr.is_write_only() || hdr.len() < 16 {
            return Err(bad("header descriptor"));
        }
        let mut raw = [0u8; 16];
        mem.read_slice(&mut raw, hdr.addr())
            .map_err(|_| bad("header outside guest memory"))?;
        let req_type = u32::from_le_bytes(raw[0..4].try_into().unwrap());
        let sector = u64::from_le_bytes(raw[8..16].try_into().unwrap());
        let status = descs.last().unwrap();
        if !status.is_write_only() || status.len() < 1 {
            return Err(bad("status descriptor"));
        }
        // Data descriptors sit between header and status; a status descriptor
        // longer than one byte is not used for data.
        let data = &descs[1..descs.len() - 1];
        match req_type {
            T_IN | T_OUT => {
                let offset = sector
                    .checked_mul(SECTOR)
                    .ok_or_else(|| bad("sector overflow"))?;
                // Check every segment first, then one pread/pwrite for the
                // whole request: the segments are contiguous on disk.
                let mut total = 0u64;
                for d in data {
                    if d.len() > MAX_SEGMENT {
                        return Err(bad("segment too large"));
                    }
                    if d.is_write_only() != (req_type == T_IN) {
                        return Err(bad(if req_type == T_IN {
                            "read into a device-readable buffer"
                        } else {
                            "write from a device-writable buffer"
                        }));
                    }
                    total += d.len() as u64;
                    if total > MAX_REQUEST {
                        return Err(bad("request too large"));
                    }
                }
                let end = offset
                    .checked_add(total)
                    .ok_or_else(|| bad("length overflow"))?;
                if end > capacity {
                    return Err((
                        S_IOERR,
                        format!("access past end of disk ({end} > {capacity})"),
                    ));
                }
                if req_type == T_OUT && read_only {
                    return Err((S_IOERR, "write to a read-only disk".into()));
                }
                let mut iov =
                    guest_iovecs(mem, data).ok_or_else(|| bad("buffer outside guest memory"))?;
                if req_type == T_IN {
                    io_at(file, &mut iov, offset, false)
                        .map_err(|e| (S_IOERR, format!("read: {e}")))?;
                    Ok(total as u32)
                } else {
                    self.dirty.set(true);
                    io_at(file, &mut iov, offset, true)
                        .map_err(|e| (S_IOERR, format!("write: {e}")))?;
                    Ok(0)
                }
            }
            T_FLUSH => {
                if !read_only && flush && self.dirty.get() {
                    file.sync_data()
                        .map_err(|e| (S_IOERR, format!("flush: {e}")))?;
                    self.dirty.set(false);
                }
                Ok(0)
            }
            T_GET_ID => {
                let d = data.first().ok_or_else(|| bad("GET_ID without buffer"))?;
                if !d.is_write_only() {
                    return Err(bad("GET_ID into a device-readable buffer"));
                }
                let n = (d.len() as usize).min(ID_LEN);
                mem.write_slice(&id[..n], d.addr())
                    .map_err(|_| bad("buffer outside guest memory"))?;
                Ok(n as u32)
            }
            _ => Err((S_UNSUPP, String::new())),
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
        TYPE_BLOCK
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }
    fn features(&self) -> u64 {
        let ro = if self.disk.read_only { F_RO } else { 0 };
        let flush = if self.disk.flush { F_FLUSH } else { 0 };
        ro | flush
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }
    fn activate(&mut self, act: Activation) -> Result<(), String> {
        let queue = act.queues.into_iter().next().ok_or("no queue")?;
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

    const NEXT: u16 = 1;
    const WRITE: u16 = 2;

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
            (T_IN, 1),
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
            (T_OUT, 7),
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
            (T_OUT, 2),
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
            (T_IN, 2),
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
            (T_OUT, 10),
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
            (T_IN, 0),
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
            (T_IN, 8),
            &[(0x1000, 16, 0), (0x2000, 512, WRITE), (0x3000, 1, WRITE)],
        );
        assert_eq!(s, S_IOERR);
        // Sector number that overflows when turned into a byte offset.
        let (s, _) = rig.request(
            false,
            (T_IN, u64::MAX),
            &[(0x1000, 16, 0), (0x2000, 512, WRITE), (0x3000, 1, WRITE)],
        );
        assert_eq!(s, S_IOERR);
        // A write whose data runs off the end of guest memory (1 MiB)
        // writes nothing.
        let (s, _) = rig.request(
            false,
            (T_OUT, 0),
            &[(0x1000, 16, 0), (0xff000, 8192, 0), (0x3000, 1, WRITE)],
        );
        assert_eq!(s, S_IOERR);
        assert_eq!(std::fs::read(&rig.path).unwrap(), [0u8; 4096]);
        // Data buffer outside guest memory.
        let (s, _) = rig.request(
            false,
            (T_IN, 0),
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
            (T_IN, 0),
            &[(0x1000, 8, 0), (0x2000, 512, WRITE), (0x3000, 1, WRITE)],
        );
        assert_eq!(s, S_IOERR);
        // A write to a read-only disk leaves the file untouched.
        let (s, _) = rig.request(
            true,
            (T_OUT, 0),
            &[(0x1000, 16, 0), (0x2000, 512, 0), (0x3000, 1, WRITE)],
        );
        assert_eq!(s, S_IOERR);
        assert!(std::fs::read(&rig.path).unwrap().iter().all(|b| *b == 0));
        // Reading into a device-readable buffer is refused.
        let (s, _) = rig.request(
            false,
            (T_IN, 0),
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
            (T_IN, 0),
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
            (T_GET_ID, 0),
            &[(0x1000, 16, 0), (0x2000, 20, 0), (0x3000, 1, WRITE)],
        );
        assert_eq!((s, used), (S_IOERR, 1));
        let mut got = [0u8; 20];
        rig.mem.read_slice(&mut got, GuestAddress(0x2000)).unwrap();
        assert_eq!(got, [0x77; 20]);
        // A device-writable one gets the serial, NUL-padded to 20 bytes.
        let (s, used) = rig.request(
            false,
            (T_GET_ID, 0),
            &[(0x1000, 16, 0), (0x2000, 20, WRITE), (0x3000, 1, WRITE)],
        );
        assert_eq!((s, used), (S_OK, 21));
        rig.mem.read_slice(&mut got, GuestAddress(0x2000)).unwrap();
        assert_eq!(&got[..4], b"test");
        assert!(got[4..].iter().all(|b| *b == 0));
    }
}
