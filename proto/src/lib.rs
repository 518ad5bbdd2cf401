//! The wire protocol between the pyro host and the guest agent.
//!
//! One request per vsock connection: the host connects to [`AGENT_PORT`],
//! writes one [`Request`] frame and reads one [`Response`] frame. A frame is
//! a 4-byte big-endian length followed by that many bytes of JSON. Keeping
//! both sides on these types is what stops the host and the guest drifting.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};

pub mod archive;
pub mod bounded_tar;
pub mod client;
pub mod error;
pub mod path;
pub mod reply;

pub use error::{AgentError, ErrorKind};
pub use reply::{read_reply, LISTING_REPLY_MAX_BYTES, MAX_LISTING_ENTRIES, SMALL_REPLY_MAX_BYTES};

/// The vsock port the agent listens on.
pub const AGENT_PORT: u32 = 52;

/// Frames bigger than this are refused on both sides, so a confused peer
/// cannot make the other allocate without bound. The host asks for less
/// per request ([`Request::reply_limit`]); this is the ceiling of both.
/// 64 MiB holds the biggest honest frame (a 200,000-entry manifest, an
/// exec's 1 MiB of output twice, escaped) with room to spare.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// Bumped whenever a message changes shape. 3: errors carry a kind
/// ([`ErrorKind`]); a host reads an error without one as `Unknown`.
pub const PROTOCOL_VERSION: u32 = 3;

/// Default cap on captured stdout and stderr (each) of one exec.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Liveness probe; answered with [`Response::Pong`].
    Ping,
    Exec(ExecRequest),
    /// Flush filesystems and power the VM off (the VMM exits on reboot).
    Shutdown,
    /// Metadata of one workspace path, and of its children when it is a
    /// directory (all descendants with `recursive`).
    ListFiles {
        path: String,
        #[serde(default)]
        recursive: bool,
    },
    /// Up to `max_bytes` of one regular file (symlinks are not followed).
    ReadFile {
        path: String,
        max_bytes: u64,
    },
    /// Writes and deletes applied all-or-nothing (see [`ApplyRequest`]).
    Apply(ApplyRequest),
    /// Every entry under a workspace path with a content hash per file;
    /// the host diffs it against the baseline's.
    Manifest {
        path: String,
    },
    /// The host streams a tar archive (chunked, see [`ChunkWriter`]) right
    /// after this frame; the agent extracts it under `dest` and answers
    /// [`Response::Extracted`].
    PushArchive {
        dest: String,
    },
    /// The agent answers [`Response::ArchiveStart`], streams a tar of `path`
    /// as chunks, then sends a final [`Response::ArchiveDone`] (or `Error`).
    PullArchive {
        path: String,
    },
    /// The host streams chunks right after this frame; the agent reads them
    /// to the end, keeps nothing and answers [`Response::Discarded`]. It
    /// measures the bare transport (`make bench` compares sync push to it).
    Discard,
}

/// All paths in file requests are relative to the workspace root
/// (`/workspace` in the guest), `/`-separated, without `.` or `..`
/// components; the empty string is the root itself. The agent re-checks
/// this and resolves every path beneath the root, so a symlink cannot lead
/// a request outside it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ApplyRequest {
    /// Regular files to create or replace; parents are created.
    #[serde(default)]
    pub writes: Vec<FileWrite>,
    /// Regular files or symlinks to remove.
    #[serde(default)]
    pub deletes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileWrite {
    pub path: String,
    /// The content, base64 (see [`base64_encode`]).
    pub data_b64: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactType {
    File,
    Directory,
    Symlink,
    /// Devices, fifos, sockets: listed, never read or archived.
    Other,
}

impl ArtifactType {
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactType::File => "file",
            ArtifactType::Directory => "directory",
            ArtifactType::Symlink => "symlink",
            ArtifactType::Other => "other",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    /// Relative to the workspace root.
    pub path: String,
    pub artifact_type: ArtifactType,
    pub size_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
    /// Permission bits.
    #[serde(default)]
    pub mode: u32,
    /// SHA-256 of a regular file's content (manifests only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256Digest>,
}

/// A SHA-256 digest: 64 lowercase hex digits on the wire and in records,
/// 32 bytes in memory (a manifest may hold 200,000 of them, and as hex
/// strings they made up a third of its size).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// From 64 hex digits (either case).
    pub fn from_hex(hex: &str) -> Option<Sha256Digest> {
        let b = hex.as_bytes();
        if b.len() != 64 {
            return None;
        }
        let nibble = |c: u8| (c as char).to_digit(16).map(|v| v as u8);
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = nibble(b[2 * i])? << 4 | nibble(b[2 * i + 1])?;
        }
        Some(Sha256Digest(out))
    }
}

impl std::fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Hex;
        impl serde::de::Visitor<'_> for Hex {
            type Value = Sha256Digest;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a SHA-256 as 64 hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Sha256Digest, E> {
                Sha256Digest::from_hex(v)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_str(Hex)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ExecRequest {
    /// Program and arguments, run without a shell.
    #[serde(default)]
    pub argv: Vec<String>,
    /// A shell command line, run as `/bin/sh -c`; used when `argv` is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Wall-clock limit; the whole process group is killed when it passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Cap on each of stdout and stderr; the rest is counted, not kept.
    #[serde(default = "default_max_output")]
    pub max_output_bytes: usize,
    /// Flush the filesystem holding the working directory once the command
    /// ends, so what it wrote survives the VM being killed afterwards.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sync_after: bool,
}

fn default_max_output() -> usize {
    DEFAULT_MAX_OUTPUT_BYTES
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ExecResult {
    /// Exit status when the process exited normally.
    pub exit_code: Option<i32>,
    /// Signal number when the process was killed by a signal.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Total bytes the command wrote, kept or not.
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub timed_out: bool,
    pub duration_ms: u64,
}

impl ExecResult {
    /// The conventional shell exit code: the status, or 128 + signal.
    /// The signal number comes from the guest, so one outside the range a
    /// shell can report (1-127) gives 255 rather than an overflow.
    pub fn shell_exit_code(&self) -> i32 {
        match (self.exit_code, self.signal) {
            (Some(code), _) => code,
            (None, Some(sig)) if (1..128).contains(&sig) => 128 + sig,
            (None, _) => 255,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Response {
    Pong {
        protocol_version: u32,
        agent_version: String,
        /// Guest uptime when the ping was answered, from /proc/uptime.
        uptime_ms: u64,
    },
    Exec(ExecResult),
    Ok,
    /// The request failed. `kind` travels as `error_kind` (`kind` is the
    /// tag); an agent before protocol 3 sends none, read as
    /// [`ErrorKind::Unknown`].
    Error {
        #[serde(rename = "error_kind", default)]
        kind: ErrorKind,
        message: String,
    },
    Files {
        /// The listed path itself.
        entry: FileEntry,
        /// Children (descendants when recursive), sorted by path; empty
        /// unless the path is a directory.
        entries: Vec<FileEntry>,
    },
    FileData {
        size_bytes: u64,
        data_b64: String,
        /// The file is longer than what was returned.
        truncated: bool,
    },
    Applied {
        written: u64,
        deleted: u64,
        bytes_written: u64,
    },
    Manifest {
        entries: Vec<FileEntry>,
    },
    Extracted {
        entry_count: u64,
        bytes_written: u64,
    },
    ArchiveStart {
        artifact_type: ArtifactType,
    },
    ArchiveDone {
        entry_count: u64,
        bytes_written: u64,
    },
    Discarded {
        bytes: u64,
    },
}

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

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648), for file bytes inside JSON.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        out.push(B64[(n >> 18) as usize & 63] as char);
        out.push(B64[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            B64[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            B64[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// Decodes [`base64_encode`]'s output; `None` on anything else.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (i, q) in bytes.chunks(4).enumerate() {
        let last = i == bytes.len() / 4 - 1;
        let pad = q.iter().rev().take_while(|c| **c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for (j, c) in q.iter().enumerate() {
            let v = if j >= 4 - pad { 0 } else { val(*c)? };
            n = n << 6 | v;
        }
        out.push((n >> 16) as u8);
        if pad < 2 {
            out.push((n >> 8) as u8);
        }
        if pad < 1 {
            out.push(n as u8);
        }
    }
    Some(out)
}

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
/// whose parsed form is as big as their text (see [`reply`]). Several
/// times slower than [`read_frame_limited`] per byte.
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

    #[test]
    fn exec_defaults_apply_when_fields_are_missing() {
        let req: Request = serde_json::from_str(r#"{"op":"exec","shell":"true"}"#).unwrap();
        match req {
            Request::Exec(e) => {
                assert_eq!(e.max_output_bytes, DEFAULT_MAX_OUTPUT_BYTES);
                assert!(e.argv.is_empty());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn base64_round_trips_every_length() {
        let data: Vec<u8> = (0..=255u8).collect();
        for n in 0..40 {
            let enc = base64_encode(&data[..n]);
            assert_eq!(base64_decode(&enc).unwrap(), &data[..n], "{n}");
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert!(base64_decode("Zm8").is_none());
        assert!(base64_decode("Z=8=").is_none());
        assert!(base64_decode("Zm8=Zm8=").is_none());
        assert!(base64_decode("Zm!=").is_none());
    }

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

    #[test]
    fn file_requests_have_stable_json() {
        let req: Request = serde_json::from_str(r#"{"op":"list_files","path":"src"}"#).unwrap();
        assert_eq!(
            req,
            Request::ListFiles {
                path: "src".into(),
                recursive: false
            }
        );
        let r = Response::ArchiveStart {
            artifact_type: ArtifactType::Directory,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"kind":"archive_start","artifact_type":"directory"}"#
        );
    }

    #[test]
    fn digests_travel_as_hex() {
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let d = Sha256Digest::from_hex(hex).unwrap();
        assert_eq!(d.to_string(), hex);
        assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{hex}\""));
        let back: Sha256Digest =
            serde_json::from_str(&format!("\"{}\"", hex.to_uppercase())).unwrap();
        assert_eq!(back, d);
        for bad in ["", "zz", &hex[..63], &format!("{hex}0")] {
            assert!(serde_json::from_str::<Sha256Digest>(&format!("\"{bad}\"")).is_err());
        }
    }

    #[test]
    fn shell_exit_code_maps_signals() {
        let r = ExecResult {
            signal: Some(9),
            ..Default::default()
        };
        assert_eq!(r.shell_exit_code(), 137);
    }

    #[test]
    fn shell_exit_code_survives_hostile_signal_numbers() {
        for sig in [i32::MAX, i32::MIN, -1, 0, 128] {
            let r = ExecResult {
                signal: Some(sig),
                ..Default::default()
            };
            assert_eq!(r.shell_exit_code(), 255, "{sig}");
        }
    }
}
