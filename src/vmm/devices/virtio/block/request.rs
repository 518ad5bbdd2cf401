//! One virtio-blk request as the guest laid it out: a descriptor chain of
//! header, data buffers and status byte, parsed into a typed [`Request`]
//! before any disk I/O. Everything in the chain is the guest's choice, so
//! each length, direction and offset is checked here, against the disk's
//! size and this VMM's bounds; the only thing read is the header, from
//! guest memory.

use super::SECTOR;
use std::fmt;
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestMemoryMmap};

/// The request header: type (le32), reserved (le32), sector (le64).
const HEADER_LEN: u32 = 16;
/// Largest single data segment we accept; the kernel's default max segment
/// size is far below this, so only a hostile driver hits it.
const MAX_SEGMENT: u32 = 4 << 20;
/// Largest whole request; Linux stays near 1 MiB, this bounds the I/O a
/// hostile driver can ask for in one go.
const MAX_REQUEST: u64 = 32 << 20;

/// A checked request. The data descriptors are those between the header
/// and the status descriptor, all in the direction the type needs; reads
/// and writes are one contiguous range of the disk.
#[derive(Debug)]
pub enum Request<'d> {
    /// Read `len` bytes at byte `offset` into the (device-writable) `data`.
    In {
        offset: u64,
        len: u32,
        data: &'d [Descriptor],
    },
    /// Write the (device-readable) `data` to the disk at byte `offset`.
    Out { offset: u64, data: &'d [Descriptor] },
    /// Make the writes so far durable.
    Flush,
    /// Write the disk's serial into the (device-writable) `buffer`.
    GetId { buffer: Descriptor },
}

/// Why a chain is not a request this device serves. Every variant but
/// [`RequestError::Unsupported`] is a malformed request: the guest gets
/// an I/O error and the VMM log a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// No room for both a header and a status descriptor.
    TooFewDescriptors,
    /// The header is device-writable or shorter than a header.
    HeaderDescriptor,
    HeaderOutsideMemory,
    /// The last descriptor is device-readable or empty.
    StatusDescriptor,
    /// The sector's byte offset does not fit 64 bits.
    SectorOverflow,
    /// One data buffer over [`MAX_SEGMENT`].
    SegmentTooLarge,
    /// All data buffers together over [`MAX_REQUEST`].
    TooLarge,
    /// A read with a data buffer the device may not write.
    ReadIntoReadable,
    /// A write with a data buffer the device should write.
    WriteFromWritable,
    /// The range's end does not fit 64 bits.
    LengthOverflow,
    /// The range ends past the disk's last byte.
    PastEnd {
        end: u64,
        capacity: u64,
    },
    GetIdWithoutBuffer,
    GetIdIntoReadable,
    /// A request type this device does not offer (the guest gets
    /// UNSUPP, and nothing is logged: probing is legitimate).
    Unsupported(u32),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use RequestError::*;
        let malformed = match self {
            TooFewDescriptors => "fewer than two descriptors",
            HeaderDescriptor => "header descriptor",
            HeaderOutsideMemory => "header outside guest memory",
            StatusDescriptor => "status descriptor",
            SectorOverflow => "sector overflow",
            SegmentTooLarge => "segment too large",
            TooLarge => "request too large",
            ReadIntoReadable => "read into a device-readable buffer",
            WriteFromWritable => "write from a device-writable buffer",
            LengthOverflow => "length overflow",
            GetIdWithoutBuffer => "GET_ID without buffer",
            GetIdIntoReadable => "GET_ID into a device-readable buffer",
            PastEnd { end, capacity } => {
                return write!(f, "access past end of disk ({end} > {capacity})")
            }
            Unsupported(t) => return write!(f, "unsupported request type {t}"),
        };
        write!(f, "malformed request: {malformed}")
    }
}

impl std::error::Error for RequestError {}

impl<'d> Request<'d> {
    /// Parses the chain `descs` (in chain order) for a disk of `capacity`
    /// bytes.
    pub fn parse(
        descs: &'d [Descriptor],
        mem: &GuestMemoryMmap,
        capacity: u64,
    ) -> Result<Request<'d>, RequestError> {
        use RequestError::*;
        let [header, .., status] = descs else {
            return Err(TooFewDescriptors);
        };
        if header.is_write_only() || header.len() < HEADER_LEN {
            return Err(HeaderDescriptor);
        }
        let mut raw = [0u8; HEADER_LEN as usize];
        mem.read_slice(&mut raw, header.addr())
            .map_err(|_| HeaderOutsideMemory)?;
        let request_type = u32::from_le_bytes(raw[0..4].try_into().unwrap());
        let sector = u64::from_le_bytes(raw[8..16].try_into().unwrap());
        if !status.is_write_only() || status.len() < 1 {
            return Err(StatusDescriptor);
        }
        // A status descriptor longer than one byte is not used for data.
        let data = &descs[1..descs.len() - 1];
        match request_type {
            VIRTIO_BLK_T_IN | VIRTIO_BLK_T_OUT => {
                let read = request_type == VIRTIO_BLK_T_IN;
                let offset = sector.checked_mul(SECTOR).ok_or(SectorOverflow)?;
                let mut total = 0u64;
                for d in data {
                    if d.len() > MAX_SEGMENT {
                        return Err(SegmentTooLarge);
                    }
                    if d.is_write_only() != read {
                        return Err(if read {
                            ReadIntoReadable
                        } else {
                            WriteFromWritable
                        });
                    }
                    total += u64::from(d.len());
                    if total > MAX_REQUEST {
                        return Err(TooLarge);
                    }
                }
                let end = offset.checked_add(total).ok_or(LengthOverflow)?;
                if end > capacity {
                    return Err(PastEnd { end, capacity });
                }
                Ok(if read {
                    // At most MAX_REQUEST, so it fits.
                    let len = total as u32;
                    Request::In { offset, len, data }
                } else {
                    Request::Out { offset, data }
                })
            }
            VIRTIO_BLK_T_FLUSH => Ok(Request::Flush),
            VIRTIO_BLK_T_GET_ID => {
                let buffer = *data.first().ok_or(GetIdWithoutBuffer)?;
                if !buffer.is_write_only() {
                    return Err(GetIdIntoReadable);
                }
                Ok(Request::GetId { buffer })
            }
            other => Err(Unsupported(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::mock::MockSplitQueue;
    use virtio_queue::{Queue, QueueT};
    use vm_memory::GuestAddress;

    const WRITE: u16 = VRING_DESC_F_WRITE as u16;
    /// A 1 MiB disk.
    const CAPACITY: u64 = 1 << 20;
    const HEADER_AT: u64 = 0x1000;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    /// Writes the header `(type, sector)` at [`HEADER_AT`], puts the chain
    /// `descs` (address, length, flags) on a mock queue and pops it, as
    /// the device does.
    fn chain(
        mem: &GuestMemoryMmap,
        header: (u32, u64),
        descs: &[(u64, u32, u16)],
    ) -> Vec<Descriptor> {
        let mut raw = [0u8; 16];
        raw[0..4].copy_from_slice(&header.0.to_le_bytes());
        raw[8..16].copy_from_slice(&header.1.to_le_bytes());
        mem.write_slice(&raw, GuestAddress(HEADER_AT)).unwrap();
        let vq = MockSplitQueue::new(mem, 16);
        let raw: Vec<RawDescriptor> = descs
            .iter()
            .enumerate()
            .map(|(i, &(addr, len, flags))| {
                let next = if i + 1 < descs.len() {
                    VRING_DESC_F_NEXT as u16
                } else {
                    0
                };
                RawDescriptor::from(Descriptor::new(addr, len, flags | next, i as u16 + 1))
            })
            .collect();
        vq.add_desc_chains(&raw, 0).unwrap();
        let mut queue: Queue = vq.create_queue().unwrap();
        queue.pop_descriptor_chain(mem).unwrap().collect()
    }

    fn parse_err(header: (u32, u64), descs: &[(u64, u32, u16)]) -> RequestError {
        let mem = mem();
        let descs = chain(&mem, header, descs);
        Request::parse(&descs, &mem, CAPACITY).unwrap_err()
    }

    #[test]
    fn a_read_is_one_range_of_the_disk_into_the_writable_buffers() {
        let mem = mem();
        let descs = chain(
            &mem,
            (VIRTIO_BLK_T_IN, 3),
            &[
                (HEADER_AT, 16, 0),
                (0x2000, 512, WRITE),
                (0x4000, 1024, WRITE),
                (0x3000, 1, WRITE),
            ],
        );
        let Ok(Request::In { offset, len, data }) = Request::parse(&descs, &mem, CAPACITY) else {
            panic!("not a read");
        };
        assert_eq!((offset, len), (3 * 512, 1536));
        let addrs: Vec<u64> = data.iter().map(|d| d.addr().0).collect();
        assert_eq!(addrs, [0x2000, 0x4000], "the status byte is not data");
    }

    #[test]
    fn writes_flushes_and_get_id_parse_to_their_kind() {
        let mem = mem();
        let descs = chain(
            &mem,
            (VIRTIO_BLK_T_OUT, 1),
            &[(HEADER_AT, 16, 0), (0x2000, 512, 0), (0x3000, 1, WRITE)],
        );
        assert!(matches!(
            Request::parse(&descs, &mem, CAPACITY),
            Ok(Request::Out { offset: 512, data }) if data.len() == 1
        ));
        let descs = chain(
            &mem,
            (VIRTIO_BLK_T_FLUSH, 0),
            &[(HEADER_AT, 16, 0), (0x3000, 1, WRITE)],
        );
        assert!(matches!(
            Request::parse(&descs, &mem, CAPACITY),
            Ok(Request::Flush)
        ));
        let descs = chain(
            &mem,
            (VIRTIO_BLK_T_GET_ID, 0),
            &[(HEADER_AT, 16, 0), (0x2000, 20, WRITE), (0x3000, 1, WRITE)],
        );
        assert!(matches!(
            Request::parse(&descs, &mem, CAPACITY),
            Ok(Request::GetId { buffer }) if buffer.addr().0 == 0x2000 && buffer.len() == 20
        ));
    }

    #[test]
    fn a_chain_needs_a_readable_header_and_a_writable_status_byte() {
        use RequestError::*;
        let t = (VIRTIO_BLK_T_IN, 0);
        assert_eq!(parse_err(t, &[(HEADER_AT, 16, 0)]), TooFewDescriptors);
        assert_eq!(
            parse_err(t, &[(HEADER_AT, 16, WRITE), (0x3000, 1, WRITE)]),
            HeaderDescriptor
        );
        assert_eq!(
            parse_err(t, &[(HEADER_AT, 8, 0), (0x3000, 1, WRITE)]),
            HeaderDescriptor
        );
        assert_eq!(
            parse_err(t, &[(0x7fff_0000, 16, 0), (0x3000, 1, WRITE)]),
            HeaderOutsideMemory
        );
        assert_eq!(
            parse_err(t, &[(HEADER_AT, 16, 0), (0x3000, 1, 0)]),
            StatusDescriptor
        );
        assert_eq!(
            parse_err(t, &[(HEADER_AT, 16, 0), (0x3000, 0, WRITE)]),
            StatusDescriptor
        );
    }

    #[test]
    fn offsets_and_lengths_are_bounded_by_the_disk_and_the_vmm() {
        use RequestError::*;
        let status = (0x3000, 1, WRITE);
        assert_eq!(
            parse_err(
                (VIRTIO_BLK_T_IN, u64::MAX),
                &[(HEADER_AT, 16, 0), (0x2000, 512, WRITE), status]
            ),
            SectorOverflow
        );
        assert_eq!(
            parse_err(
                (VIRTIO_BLK_T_IN, u64::MAX / SECTOR),
                &[(HEADER_AT, 16, 0), (0x2000, 512, WRITE), status]
            ),
            LengthOverflow
        );
        assert_eq!(
            parse_err(
                (VIRTIO_BLK_T_IN, CAPACITY / SECTOR),
                &[(HEADER_AT, 16, 0), (0x2000, 512, WRITE), status]
            ),
            PastEnd {
                end: CAPACITY + 512,
                capacity: CAPACITY
            }
        );
        assert_eq!(
            parse_err(
                (VIRTIO_BLK_T_OUT, 0),
                &[(HEADER_AT, 16, 0), (0x2000, MAX_SEGMENT + 1, 0), status]
            ),
            SegmentTooLarge
        );
        // Nine segments of the largest size: over the request bound before
        // the disk's size is even looked at.
        let mut descs = vec![(HEADER_AT, 16, 0)];
        descs.extend([(0x2000, MAX_SEGMENT, 0); 9]);
        descs.push(status);
        assert_eq!(parse_err((VIRTIO_BLK_T_OUT, 0), &descs), TooLarge);
        // Exactly up to the last byte is fine.
        let mem = mem();
        let descs = chain(
            &mem,
            (VIRTIO_BLK_T_IN, CAPACITY / SECTOR - 1),
            &[(HEADER_AT, 16, 0), (0x2000, 512, WRITE), status],
        );
        assert!(Request::parse(&descs, &mem, CAPACITY).is_ok());
    }

    #[test]
    fn data_buffers_must_point_the_way_the_request_moves_data() {
        use RequestError::*;
        let status = (0x3000, 1, WRITE);
        assert_eq!(
            parse_err(
                (VIRTIO_BLK_T_IN, 0),
                &[
                    (HEADER_AT, 16, 0),
                    (0x2000, 512, WRITE),
                    (0x4000, 512, 0),
                    status
                ]
            ),
            ReadIntoReadable
        );
        assert_eq!(
            parse_err(
                (VIRTIO_BLK_T_OUT, 0),
                &[(HEADER_AT, 16, 0), (0x2000, 512, WRITE), status]
            ),
            WriteFromWritable
        );
        assert_eq!(
            parse_err(
                (VIRTIO_BLK_T_GET_ID, 0),
                &[(HEADER_AT, 16, 0), (0x2000, 20, 0), status]
            ),
            GetIdIntoReadable
        );
        assert_eq!(
            parse_err((VIRTIO_BLK_T_GET_ID, 0), &[(HEADER_AT, 16, 0), status]),
            GetIdWithoutBuffer
        );
    }

    #[test]
    fn unknown_types_are_unsupported_not_malformed() {
        let err = parse_err((99, 0), &[(HEADER_AT, 16, 0), (0x3000, 1, WRITE)]);
        assert_eq!(err, RequestError::Unsupported(99));
        assert!(!err.to_string().starts_with("malformed"));
        assert_eq!(
            RequestError::SectorOverflow.to_string(),
            "malformed request: sector overflow"
        );
    }
}
