//! The host side of the protocol: reach the agent through the VMM's
//! hybrid vsock socket (Firecracker's `CONNECT <port>` convention) and
//! exchange one request per connection.
//!
//! Every wait on the agent is bounded by one overall deadline
//! ([`DeadlineStream`]), never by a timeout per read: a per-read timeout
//! starts again with every byte, so a guest that trickles a byte at a time
//! could hold the host side for ever.

use crate::{read_reply, write_frame, Request, Response, AGENT_PORT};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Longest `OK <port>` line accepted from the VMM during the handshake.
const HANDSHAKE_LINE_MAX: usize = 64;

/// A Unix stream whose reads and writes all end by one deadline: each one
/// is given only the time left, and fails with [`io::ErrorKind::TimedOut`]
/// once none is.
#[derive(Debug)]
pub struct DeadlineStream {
    inner: UnixStream,
    deadline: Instant,
}

impl DeadlineStream {
    pub fn new(inner: UnixStream, deadline: Instant) -> Self {
        DeadlineStream { inner, deadline }
    }

    /// Connects to the agent (`CONNECT <port>\n`, then `OK <n>\n`), the
    /// handshake included in the deadline.
    pub fn connect(uds: &Path, deadline: Instant) -> io::Result<Self> {
        let mut s = DeadlineStream::new(UnixStream::connect(uds)?, deadline);
        handshake(&mut s)?;
        Ok(s)
    }

    /// The stream itself, e.g. to shut it down from another thread.
    pub fn get_ref(&self) -> &UnixStream {
        &self.inner
    }

    pub fn into_inner(self) -> UnixStream {
        self.inner
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The time left, or `TimedOut` when there is none.
    fn left(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(deadline_passed());
        }
        Ok(left)
    }
}

fn deadline_passed() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the operation's deadline passed before the agent finished",
    )
}

/// A timeout of the socket itself, told apart from other errors.
fn timed_out(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => deadline_passed(),
        _ => e,
    }
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.left()?;
        self.inner.set_read_timeout(Some(left))?;
        self.inner.read(buf).map_err(timed_out)
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.left()?;
        self.inner.set_write_timeout(Some(left))?;
        self.inner.write(buf).map_err(timed_out)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `CONNECT <port>\n`, then expects `OK <n>\n`.
fn handshake<S: Read + Write>(s: &mut S) -> io::Result<()> {
    s.write_all(format!("CONNECT {AGENT_PORT}\n").as_bytes())?;
    let mut line = Vec::with_capacity(32);
    let mut b = [0u8; 1];
    loop {
        // Byte at a time: the stream right after the newline is the agent's.
        match s.read(&mut b)? {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    "agent not listening yet",
                ))
            }
            _ if b[0] == b'\n' => break,
            _ if line.len() > HANDSHAKE_LINE_MAX => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "bad vsock handshake",
                ))
            }
            _ => line.push(b[0]),
        }
    }
    if !line.starts_with(b"OK ") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "vsock handshake refused: {}",
                String::from_utf8_lossy(&line)
            ),
        ));
    }
    Ok(())
}

/// Opens a stream to the agent, the handshake done within `timeout`; the
/// stream keeps `timeout` as its per-read and per-write timeout (for short
/// probes; an operation uses [`DeadlineStream`]).
pub fn connect(uds: &Path, timeout: Duration) -> io::Result<UnixStream> {
    let s = DeadlineStream::connect(uds, Instant::now() + timeout)?.into_inner();
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    Ok(s)
}

/// Sends one request and waits for the answer, all within `timeout`.
pub fn call(uds: &Path, req: &Request, timeout: Duration) -> io::Result<Response> {
    exchange(
        &mut DeadlineStream::connect(uds, Instant::now() + timeout)?,
        req,
    )
}

/// Sends one request on a connected stream and reads the answer, within
/// the stream's own timeouts, bounded and clipped to what was asked
/// ([`read_reply`]).
pub fn exchange<S: Read + Write>(s: &mut S, req: &Request) -> io::Result<Response> {
    write_frame(s, req)?;
    match read_reply(s, req)? {
        Some(r) => Ok(r),
        None => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "agent closed the connection without answering",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A fake VMM socket that completes the handshake, then sends `reply`
    /// one byte every `gap`.
    fn trickling_agent(tag: &str, reply: Vec<u8>, gap: Duration) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "pyro-proto-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("v.sock");
        let l = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut line = [0u8; 11];
            s.read_exact(&mut line).unwrap();
            assert_eq!(&line, b"CONNECT 52\n");
            s.write_all(b"OK 1073741824\n").unwrap();
            for b in reply {
                std::thread::sleep(gap);
                if s.write_all(&[b]).is_err() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_secs(30));
        });
        path
    }

    #[test]
    fn a_trickling_agent_cannot_outlast_the_deadline() {
        // A whole, valid answer, sent a byte every 200 ms: each read gets a
        // byte well within any per-read timeout, but the answer as a whole
        // takes longer than the deadline.
        let mut reply = Vec::new();
        write_frame(&mut reply, &Response::Ok).unwrap();
        assert!(reply.len() >= 8);
        let path = trickling_agent("trickle", reply, Duration::from_millis(200));
        let start = Instant::now();
        let e = call(&path, &Request::Ping, Duration::from_millis(700)).unwrap_err();
        let took = start.elapsed();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(e.to_string().contains("deadline"), "{e}");
        assert!(
            took >= Duration::from_millis(650) && took < Duration::from_millis(1500),
            "{took:?}"
        );
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn an_answer_within_the_deadline_is_read_whole() {
        let mut reply = Vec::new();
        write_frame(&mut reply, &Response::Ok).unwrap();
        let path = trickling_agent("whole", reply, Duration::from_millis(1));
        assert_eq!(
            call(&path, &Request::Ping, Duration::from_secs(10)).unwrap(),
            Response::Ok
        );
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
