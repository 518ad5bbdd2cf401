//! Chunks: a byte stream (an archive) carried on the same connection as
//! the frames around it, as length-prefixed pieces ended by an empty one.

use crate::MAX_FRAME_BYTES;
use std::io::{self, Read, Write};

/// Size of the binary chunks that follow an archive request or answer.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// Writes a byte stream as chunks: a 4-byte big-endian length and that
/// many bytes, ended by a zero-length chunk ([`ChunkWriter::finish`]).
/// Chunks let one connection carry a stream and then more frames.
pub struct ChunkWriter<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> ChunkWriter<W> {
    pub fn new(inner: W) -> Self {
        ChunkWriter {
            inner,
            buf: Vec::with_capacity(CHUNK_BYTES + 4),
        }
    }

    fn emit(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let len = (self.buf.len() as u32).to_be_bytes();
        self.inner.write_all(&len)?;
        self.inner.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    /// Flushes what is buffered, writes the end marker and returns the
    /// underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.emit()?;
        self.inner.write_all(&0u32.to_be_bytes())?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ChunkWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK_BYTES - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK_BYTES {
            self.emit()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.emit()?;
        self.inner.flush()
    }
}

/// Reads the byte stream [`ChunkWriter`] wrote; EOF at the end marker.
pub struct ChunkReader<R: Read> {
    inner: R,
    left: usize,
    done: bool,
}

impl<R: Read> ChunkReader<R> {
    pub fn new(inner: R) -> Self {
        ChunkReader {
            inner,
            left: 0,
            done: false,
        }
    }

    /// Reads and discards the rest of the stream, up to its end marker.
    pub fn drain(&mut self) -> io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        while self.read(&mut buf)? > 0 {}
        Ok(())
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    pub fn is_done(&self) -> bool {
        self.done
    }
}

impl<R: Read> Read for ChunkReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.done || out.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut len = [0u8; 4];
            self.inner.read_exact(&mut len)?;
            let len = u32::from_be_bytes(len) as usize;
            if len == 0 {
                self.done = true;
                return Ok(0);
            }
            if len > MAX_FRAME_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("peer sent a {len}-byte chunk, over the {MAX_FRAME_BYTES}-byte limit"),
                ));
            }
            self.left = len;
        }
        let want = out.len().min(self.left);
        let n = self.inner.read(&mut out[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.left -= n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{read_frame, write_frame, Response};

    #[test]
    fn chunks_carry_a_stream_then_more_frames() {
        let payload: Vec<u8> = (0..(CHUNK_BYTES * 2 + 17)).map(|i| i as u8).collect();
        let mut w = ChunkWriter::new(Vec::new());
        w.write_all(&payload).unwrap();
        let mut buf = w.finish().unwrap();
        write_frame(&mut buf, &Response::Ok).unwrap();
        let mut cursor = buf.as_slice();
        let mut r = ChunkReader::new(&mut cursor);
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        assert!(r.is_done());
        assert_eq!(got, payload);
        let next: Response = read_frame(&mut cursor).unwrap().unwrap();
        assert_eq!(next, Response::Ok);
    }
}
