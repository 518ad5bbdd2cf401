//! Reaching a guest agent for one host operation.
//!
//! Every workspace operation has one overall deadline (the constants
//! below), and every connection it opens to the agent ends by it: a guest
//! that answers slowly, a byte at a time, or not at all holds the
//! operation (and with it the workspace lock and an MCP call slot) only
//! that long. A connection from [`open`] is also shut down at once when the
//! operation is cancelled (see `cancel`). The protocol itself lives beside
//! the message types in `pyro_proto::client`, where benchmarks reach it
//! too.

use super::cancel::{self, StreamWatch};
use pyro_proto::client::DeadlineStream;
use pyro_proto::{Request, Response};
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

pub use pyro_proto::client::{call, connect, exchange};

/// Deadline of a file operation (list, read, write, patch apply), from
/// the moment the workspace's VM runs: each moves at most a few MiB
/// (`FILE_MAX_BYTES` per file), which takes well under a second even in a
/// nested test host; the rest is room for a guest busy with other work.
pub const FILE_OP_DEADLINE: Duration = Duration::from_secs(120);
/// How much longer than its own `timeout_seconds` an exec may take in all:
/// the guest kills the command at its timeout, then still has to collect
/// its output, sync `/workspace` and answer.
pub const EXEC_DEADLINE_MARGIN: Duration = Duration::from_secs(30);
/// Deadline of a diff or summary: a manifest of the whole workspace, then
/// one read per changed text file.
pub const DIFF_DEADLINE: Duration = Duration::from_secs(600);
/// Deadline of an archive stream (seeding at create and reset, sync push,
/// export): long enough for several GiB at the tens of MiB/s a nested test
/// host manages, short enough that a stalled guest frees the workspace.
pub const TRANSFER_DEADLINE: Duration = Duration::from_secs(1800);

/// One connection to an agent: every read and write ends by the
/// operation's deadline, and the connection is shut down if the
/// operation is cancelled.
pub struct Conn {
    stream: DeadlineStream,
    _watch: Option<StreamWatch>,
}

/// Opens a connection to the agent behind `vsock` for the current thread's
/// operation, which must end by `deadline`.
pub fn open(vsock: &Path, deadline: Instant) -> io::Result<Conn> {
    if cancel::cancelled() {
        return Err(cancelled());
    }
    let stream = DeadlineStream::connect(vsock, deadline)?;
    let watch = match cancel::current() {
        Some(token) => Some(token.watch_stream(stream.get_ref())?),
        None => None,
    };
    Ok(Conn {
        stream,
        _watch: watch,
    })
}

/// Sends one request on a new connection and reads the answer, by
/// `deadline`.
pub fn request(vsock: &Path, req: &Request, deadline: Instant) -> io::Result<Response> {
    exchange(&mut open(vsock, deadline)?, req)
}

/// The error every read and write of a cancelled operation's connection
/// returns (the shut-down stream itself would only read as closed).
fn cancelled() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the operation was cancelled",
    )
}

/// Whether `e` is the error of a cancelled connection.
pub fn is_cancelled(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::ConnectionAborted && cancel::cancelled()
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.stream.read(buf) {
            Ok(0) | Err(_) if cancel::cancelled() => Err(cancelled()),
            r => r,
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.stream.write(buf) {
            Err(_) if cancel::cancelled() => Err(cancelled()),
            r => r,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::cancel::CancelToken;
    use std::os::unix::net::UnixListener;
    use std::sync::mpsc;

    /// A fake agent behind a VMM's vsock socket: it completes the
    /// handshake, reads the request, then trickles an answer one byte per
    /// second and never finishes. Reports on `ended` when the host side
    /// closed the connection. Its socket's directory goes with the
    /// returned guard.
    fn trickling_agent(
        tag: &str,
    ) -> (
        crate::temp_dir::TempDir,
        std::path::PathBuf,
        mpsc::Receiver<Instant>,
    ) {
        let dir = crate::temp_dir::TempDir::new(&format!("agent-{tag}"));
        let path = dir.join("vsock.sock");
        let l = UnixListener::bind(&path).unwrap();
        let (tx, ended) = mpsc::channel();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut line = [0u8; 11];
            s.read_exact(&mut line).unwrap();
            assert_eq!(&line, b"CONNECT 52\n");
            s.write_all(b"OK 1073741824\n").unwrap();
            let _: Option<Request> = pyro_proto::read_frame(&mut s).unwrap();
            // A frame header announcing a small answer, then a byte a second.
            let _ = s.write_all(&100u32.to_be_bytes());
            s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let mut b = [0u8; 1];
            for _ in 0..120 {
                if s.write_all(b" ").is_err() {
                    break;
                }
                // Waits a second for the host, which never writes again: a
                // read that returns at all means it hung up.
                if let Ok(0) = s.read(&mut b) {
                    break;
                }
            }
            let _ = tx.send(Instant::now());
        });
        (dir, path, ended)
    }

    #[test]
    fn a_trickling_agent_is_cut_off_at_the_operations_deadline() {
        let (_dir, path, _ended) = trickling_agent("deadline");
        let start = Instant::now();
        let e = request(
            &path,
            &Request::Ping,
            Instant::now() + Duration::from_millis(2500),
        )
        .unwrap_err();
        let took = start.elapsed();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        // Bytes kept arriving every second; the deadline held anyway.
        assert!(
            took >= Duration::from_millis(2400) && took < Duration::from_millis(4000),
            "{took:?}"
        );
    }

    #[test]
    fn cancelling_closes_the_agent_stream_promptly() {
        let (_dir, path, ended) = trickling_agent("cancel");
        let token = CancelToken::new();
        let caller = {
            let (path, token) = (path.clone(), token.clone());
            std::thread::spawn(move || {
                let _scope = cancel::scope(&token);
                let start = Instant::now();
                let r = request(
                    &path,
                    &Request::Ping,
                    Instant::now() + Duration::from_secs(600),
                );
                (r, start.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(1500));
        let cancelled_at = Instant::now();
        token.cancel();
        let (r, _) = caller.join().unwrap();
        let returned = cancelled_at.elapsed();
        let e = r.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted, "{e}");
        assert!(e.to_string().contains("cancelled"), "{e}");
        assert!(returned < Duration::from_millis(500), "{returned:?}");
        // The agent saw its connection end (it would kill the command).
        let hung_up = ended.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(
            hung_up.duration_since(cancelled_at) < Duration::from_secs(3),
            "the agent noticed after {:?}",
            hung_up.duration_since(cancelled_at)
        );
        // A new connection of the cancelled operation is refused outright.
        let _scope = cancel::scope(&token);
        assert_eq!(
            open(&path, Instant::now() + Duration::from_secs(5))
                .err()
                .unwrap()
                .kind(),
            io::ErrorKind::ConnectionAborted
        );
    }
}
