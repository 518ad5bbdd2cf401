//! The virtio-vsock packet (virtio spec 5.10.6): the 44-byte header, and
//! the parse of what the guest puts on the TX queue, a pure function of
//! the bytes so every malformed shape has a typed error and a test.

use std::fmt;

pub const HDR_LEN: usize = 44;
/// Largest payload one packet carries either way (Linux's
/// VIRTIO_VSOCK_MAX_PKT_BUF_SIZE): what the device reads from one TX chain
/// and writes into one RX buffer.
pub const MAX_PAYLOAD: usize = 64 * 1024;
pub const HOST_CID: u64 = 2;
pub const TYPE_STREAM: u16 = 1;

pub const OP_REQUEST: u16 = 1;
pub const OP_RESPONSE: u16 = 2;
pub const OP_RST: u16 = 3;
pub const OP_SHUTDOWN: u16 = 4;
pub const OP_RW: u16 = 5;
pub const OP_CREDIT_UPDATE: u16 = 6;
pub const OP_CREDIT_REQUEST: u16 = 7;

/// SHUTDOWN flags: the sender will receive / send no more.
pub const SHUTDOWN_RCV: u32 = 1;
pub const SHUTDOWN_SEND: u32 = 2;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    pub src_cid: u64,
    pub dst_cid: u64,
    pub src_port: u32,
    pub dst_port: u32,
    /// Payload bytes that follow the header.
    pub len: u32,
    pub type_: u16,
    pub op: u16,
    pub flags: u32,
    /// The sender's receive buffer for this connection, and how much of
    /// what it received it has passed on (the credit the other side has
    /// is `buf_alloc - (sent - fwd_cnt)`).
    pub buf_alloc: u32,
    pub fwd_cnt: u32,
}

impl Header {
    pub fn decode(b: &[u8; HDR_LEN]) -> Header {
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        let u16_at = |o: usize| u16::from_le_bytes(b[o..o + 2].try_into().unwrap());
        Header {
            src_cid: u64_at(0),
            dst_cid: u64_at(8),
            src_port: u32_at(16),
            dst_port: u32_at(20),
            len: u32_at(24),
            type_: u16_at(28),
            op: u16_at(30),
            flags: u32_at(32),
            buf_alloc: u32_at(36),
            fwd_cnt: u32_at(40),
        }
    }

    pub fn encode(&self) -> [u8; HDR_LEN] {
        let mut b = [0u8; HDR_LEN];
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&self.type_.to_le_bytes());
        b[30..32].copy_from_slice(&self.op.to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        b
    }
}

/// A packet from the guest: its header and exactly `hdr.len` payload bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    pub hdr: Header,
    pub payload: &'a [u8],
}

/// Why the bytes of a TX chain are not a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    /// Fewer bytes than a header.
    ShortHeader { len: usize },
    /// The header announces more payload than a packet may carry.
    PayloadTooLong { len: u32 },
    /// The header announces more payload than the chain holds.
    ShortPayload { announced: u32, present: usize },
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketError::ShortHeader { len } => write!(
                f,
                "TX packet shorter than its header ({len} of {HDR_LEN} bytes); dropped"
            ),
            PacketError::PayloadTooLong { len } => write!(
                f,
                "TX packet announces {len} payload bytes, more than the {MAX_PAYLOAD} a packet \
                 may carry; dropped"
            ),
            PacketError::ShortPayload { announced, present } => write!(
                f,
                "TX packet announces {announced} payload bytes but its buffers hold {present}; \
                 dropped"
            ),
        }
    }
}

impl<'a> Packet<'a> {
    /// Reads a packet from the device-readable bytes of one TX chain.
    /// Bytes past the announced payload are ignored; no length is trusted
    /// before it is checked against what is there and against
    /// [`MAX_PAYLOAD`].
    pub fn parse(bytes: &'a [u8]) -> Result<Packet<'a>, PacketError> {
        let Some((head, rest)) = bytes.split_first_chunk::<HDR_LEN>() else {
            return Err(PacketError::ShortHeader { len: bytes.len() });
        };
        let hdr = Header::decode(head);
        if hdr.len as usize > MAX_PAYLOAD {
            return Err(PacketError::PayloadTooLong { len: hdr.len });
        }
        let payload = rest
            .get(..hdr.len as usize)
            .ok_or(PacketError::ShortPayload {
                announced: hdr.len,
                present: rest.len(),
            })?;
        Ok(Packet { hdr, payload })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(len: u32) -> Header {
        Header {
            src_cid: 3,
            dst_cid: 2,
            src_port: 52,
            dst_port: 1 << 30,
            len,
            type_: TYPE_STREAM,
            op: OP_RW,
            flags: 0,
            buf_alloc: 262_144,
            fwd_cnt: 99,
        }
    }

    #[test]
    fn header_round_trips() {
        let h = rw(17);
        assert_eq!(Header::decode(&h.encode()), h);
        // Little-endian at the spec's offsets.
        let b = h.encode();
        assert_eq!(&b[24..28], &17u32.to_le_bytes());
        assert_eq!(&b[30..32], &OP_RW.to_le_bytes());
    }

    #[test]
    fn a_packet_is_its_header_and_exactly_the_announced_payload() {
        let mut bytes = rw(5).encode().to_vec();
        bytes.extend_from_slice(b"hello, and bytes past the payload");
        let p = Packet::parse(&bytes).unwrap();
        assert_eq!(p.hdr, rw(5));
        assert_eq!(p.payload, b"hello");
        // A control packet: header only.
        let mut h = rw(0);
        h.op = OP_CREDIT_REQUEST;
        let bytes = h.encode();
        let p = Packet::parse(&bytes).unwrap();
        assert_eq!((p.hdr.op, p.payload), (OP_CREDIT_REQUEST, &b""[..]));
    }

    #[test]
    fn short_and_malformed_packets_are_typed_errors() {
        assert_eq!(Packet::parse(&[]), Err(PacketError::ShortHeader { len: 0 }));
        assert_eq!(
            Packet::parse(&rw(0).encode()[..HDR_LEN - 1]),
            Err(PacketError::ShortHeader { len: HDR_LEN - 1 })
        );
        // More payload announced than the chain holds.
        let mut bytes = rw(10).encode().to_vec();
        bytes.extend_from_slice(b"four");
        assert_eq!(
            Packet::parse(&bytes),
            Err(PacketError::ShortPayload {
                announced: 10,
                present: 4
            })
        );
        // A length past the packet limit is refused before anything is
        // compared with it, even when the bytes are there.
        let mut bytes = rw(MAX_PAYLOAD as u32 + 1).encode().to_vec();
        bytes.resize(HDR_LEN + MAX_PAYLOAD + 1, 0);
        assert_eq!(
            Packet::parse(&bytes),
            Err(PacketError::PayloadTooLong {
                len: MAX_PAYLOAD as u32 + 1
            })
        );
        assert_eq!(
            Packet::parse(&rw(u32::MAX).encode()),
            Err(PacketError::PayloadTooLong { len: u32::MAX })
        );
        // The largest payload is fine.
        let mut bytes = rw(MAX_PAYLOAD as u32).encode().to_vec();
        bytes.resize(HDR_LEN + MAX_PAYLOAD, 7);
        assert_eq!(Packet::parse(&bytes).unwrap().payload.len(), MAX_PAYLOAD);
    }

    #[test]
    fn packet_errors_say_what_was_wrong() {
        assert_eq!(
            PacketError::ShortPayload {
                announced: 10,
                present: 4
            }
            .to_string(),
            "TX packet announces 10 payload bytes but its buffers hold 4; dropped"
        );
        assert!(PacketError::ShortHeader { len: 3 }
            .to_string()
            .contains("3 of 44 bytes"));
    }
}
