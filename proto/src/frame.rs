//! Frames: one message as a 4-byte big-endian length and that many bytes
//! of JSON, bounded on both sides before anything is allocated.

use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};

/// Frames bigger than this are refused on both sides, so a confused peer
/// cannot make the other allocate without bound. The host asks for less
/// per request ([`Request::reply_limit`](crate::Request::reply_limit));
/// this is the ceiling of both. 64 MiB holds the biggest honest frame (a
/// 200,000-entry manifest, an exec's 1 MiB of output twice, escaped) with
/// room to spare.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// Writes one frame.
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(io::Error::other)?;
    if body.len() > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "frame of {} bytes exceeds the {MAX_FRAME_BYTES}-byte limit",
                body.len()
            ),
        ));
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf)?;
    w.flush()
}

/// Reads one frame; `Ok(None)` on a clean EOF before the first byte.
pub fn read_frame<R: Read, T: for<'de> Deserialize<'de>>(r: &mut R) -> io::Result<Option<T>> {
    read_frame_limited(r, MAX_FRAME_BYTES)
}

/// [`read_frame`] for a frame of at most `max` bytes (and never more than
/// [`MAX_FRAME_BYTES`]): a longer one is refused from its length alone.
/// The body is buffered as it arrives, never allocated up front from the
/// length the peer claims, so a peer that announces a big frame and
/// trickles it gets nothing big allocated.
pub fn read_frame_limited<R: Read, T: for<'de> Deserialize<'de>>(
    r: &mut R,
    max: usize,
) -> io::Result<Option<T>> {
    let Some(len) = read_frame_len(r, max)? else {
        return Ok(None);
    };
    // Up to 64 KiB up front (one read for the usual small frame), the
    // rest as it comes.
    let mut body = Vec::with_capacity(len.min(64 * 1024));
    (&mut *r).take(len as u64).read_to_end(&mut body)?;
    if body.len() < len {
        return Err(closed_inside(len));
    }
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// A frame of at most `max` bytes parsed by `parse` straight from the
/// stream, without buffering the body: for answers made of many records,
/// whose parsed form is as big as their text (see
/// [`reply`](crate::reply)). Several times slower than
/// [`read_frame_limited`] per byte.
pub fn read_frame_with<R: Read, T>(
    r: &mut R,
    max: usize,
    parse: impl FnOnce(&mut dyn Read) -> serde_json::Result<T>,
) -> io::Result<Option<T>> {
    let Some(len) = read_frame_len(r, max)? else {
        return Ok(None);
    };
    let body = (&mut *r).take(len as u64);
    let mut body = io::BufReader::with_capacity(len.clamp(1, 64 * 1024), body);
    // serde_json reads the body to its end (only whitespace may follow
    // the value), so the stream is left at the next frame.
    let v = parse(&mut body).map_err(io::Error::from)?;
    if !body.buffer().is_empty() || body.into_inner().limit() > 0 {
        return Err(closed_inside(len));
    }
    Ok(Some(v))
}

/// The length prefix of the next frame, checked against `max` (and
/// [`MAX_FRAME_BYTES`]); `None` on a clean EOF before it.
fn read_frame_len<R: Read>(r: &mut R, max: usize) -> io::Result<Option<usize>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    let max = max.min(MAX_FRAME_BYTES);
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("peer sent a {len}-byte frame, over the {max}-byte limit for it"),
        ));
    }
    Ok(Some(len))
}

fn closed_inside(len: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("peer closed the stream inside a {len}-byte frame"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorKind, ExecRequest, Request, Response};

    #[test]
    fn frames_round_trip() {
        let req = Request::Exec(ExecRequest {
            argv: vec!["git".into(), "--version".into()],
            timeout_ms: Some(5000),
            ..Default::default()
        });
        let mut buf = Vec::new();
        write_frame(&mut buf, &req).unwrap();
        assert_eq!(
            u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize,
            buf.len() - 4
        );
        let back: Request = read_frame(&mut buf.as_slice()).unwrap().unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn eof_before_frame_is_none_and_mid_frame_is_error() {
        let none: Option<Request> = read_frame(&mut &[][..]).unwrap();
        assert!(none.is_none());
        let err = read_frame::<_, Request>(&mut &[0u8, 0][..]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn oversized_frame_is_refused_before_allocation() {
        let huge = ((MAX_FRAME_BYTES + 1) as u32).to_be_bytes();
        let err = read_frame::<_, Request>(&mut &huge[..]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // A frame within the ceiling but over the caller's limit.
        let mut buf = Vec::new();
        write_frame(&mut buf, &Response::Ok).unwrap();
        let err = read_frame_limited::<_, Response>(&mut buf.as_slice(), 4).unwrap_err();
        assert!(err.to_string().contains("over the 4-byte limit"), "{err}");
        assert!(read_frame_limited::<_, Response>(&mut buf.as_slice(), 64).is_ok());
    }

    #[test]
    fn a_trickled_frame_is_read_as_it_arrives_and_back_to_back_frames_stay_apart() {
        /// Hands out one byte per read, as a trickling peer does.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() || out.is_empty() {
                    return Ok(0);
                }
                out[0] = self.0[0];
                self.0 = &self.0[1..];
                Ok(1)
            }
        }
        let mut buf = Vec::new();
        write_frame(
            &mut buf,
            &Response::Error {
                kind: ErrorKind::Invalid,
                message: "one".into(),
            },
        )
        .unwrap();
        write_frame(&mut buf, &Response::Ok).unwrap();
        let mut t = Trickle(&buf);
        let a: Response = read_frame(&mut t).unwrap().unwrap();
        let b: Response = read_frame(&mut t).unwrap().unwrap();
        assert_eq!(
            a,
            Response::Error {
                kind: ErrorKind::Invalid,
                message: "one".into()
            }
        );
        assert_eq!(b, Response::Ok);
        // A frame that claims more than arrives ends in an EOF error,
        // trailing garbage inside a frame in a data error.
        let mut short = 100u32.to_be_bytes().to_vec();
        short.extend_from_slice(br#"{"kind":"ok"}"#);
        let e = read_frame::<_, Response>(&mut short.as_slice()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let body = br#"{"kind":"ok"} x"#;
        let mut junk = (body.len() as u32).to_be_bytes().to_vec();
        junk.extend_from_slice(body);
        let e = read_frame::<_, Response>(&mut junk.as_slice()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
