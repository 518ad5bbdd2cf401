//! The host side of the protocol: reach the agent through the VMM's
//! hybrid vsock socket (Firecracker's `CONNECT <port>` convention) and
//! exchange one request per connection.

use crate::{read_reply, write_frame, Request, Response, AGENT_PORT};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Opens a stream to the agent: `CONNECT <port>\n`, then expects `OK <n>\n`.
pub fn connect(uds: &Path, timeout: Duration) -> io::Result<UnixStream> {
    let mut s = UnixStream::connect(uds)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
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
            _ if line.len() > 64 => {
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
    Ok(s)
}

/// Sends one request and waits up to `timeout` for the answer.
pub fn call(uds: &Path, req: &Request, timeout: Duration) -> io::Result<Response> {
    exchange(&mut connect(uds, timeout)?, req)
}

/// Sends one request on a connected stream and reads the answer, within
/// the stream's own timeouts, bounded and clipped to what was asked
/// ([`read_reply`]).
pub fn exchange(s: &mut UnixStream, req: &Request) -> io::Result<Response> {
    write_frame(s, req)?;
    match read_reply(s, req)? {
        Some(r) => Ok(r),
        None => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "agent closed the connection without answering",
        )),
    }
}
