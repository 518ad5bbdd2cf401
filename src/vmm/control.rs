//! The VMM's control socket: one command line in, one answer line out.
//!
//! | command | answer |
//! | --- | --- |
//! | `ping` | `ok <pid> disk=<dev>:<ino>`: the VMM's pid (in the VMM's own PID namespace view, as `getpid` gives it) and the identity of the writable disk it holds locked (`disk=-` without one) |
//! | `shutdown` | `ok`, then the VMM stops |
//!
//! The engine decides which process to stop from the ping answer, after
//! checking that the disk it names is the workspace's disk (by inode, so
//! any spelling of the path agrees); see `disk_lock` for why the lock, not
//! the answer, says whether a VMM runs at all.

use pyro_proto::client::DeadlineStream;
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// Longest command line accepted (the longest command is 8 bytes). A
/// client that sends more gets an error; it cannot make the VMM buffer.
pub const LINE_MAX: usize = 64;
/// How long one client gets, in all, to send its line. The device thread
/// serves the socket, so a client that trickles bytes must not hold it
/// (with per-read timeouts it could, a byte at a time).
pub const SERVE_DEADLINE: Duration = Duration::from_millis(500);

/// A VMM's answer to `ping`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pong {
    pub pid: i32,
    /// `<dev>:<ino>` of the disk the VMM holds locked; `None` from a VMM
    /// without a writable disk, or one older than the disk lock.
    pub disk: Option<String>,
}

/// Asks the VMM behind `socket` for its pid and disk, within `timeout` in
/// all.
pub fn ping(socket: &Path, timeout: Duration) -> io::Result<Pong> {
    let answer = command(socket, "ping", timeout)?;
    parse_pong(&answer).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected answer to ping: {answer:?}"),
        )
    })
}

/// Asks the VMM behind `socket` to stop, within `timeout`; it has stopped
/// serving once this returns (its process ends a moment later).
pub fn shutdown(socket: &Path, timeout: Duration) -> io::Result<()> {
    match command(socket, "shutdown", timeout)?.as_str() {
        "ok" => Ok(()),
        other => Err(io::Error::other(format!(
            "the VMM refused to stop: {other:?}"
        ))),
    }
}

/// Sends one command line and returns the answer line, within `timeout`.
fn command(socket: &Path, cmd: &str, timeout: Duration) -> io::Result<String> {
    let stream = UnixStream::connect(socket)?;
    let mut s = DeadlineStream::new(stream, Instant::now() + timeout);
    writeln!(s, "{cmd}")?;
    let mut answer = Vec::new();
    Read::by_ref(&mut s)
        .take(LINE_MAX as u64 + 1)
        .read_to_end(&mut answer)?;
    Ok(String::from_utf8_lossy(&answer).trim().to_string())
}

fn parse_pong(line: &str) -> Option<Pong> {
    let mut words = line.split(' ');
    if words.next()? != "ok" {
        return None;
    }
    let pid = words.next()?.parse().ok().filter(|p| *p > 0)?;
    let disk = words
        .find_map(|w| w.strip_prefix("disk="))
        .filter(|d| *d != "-")
        .map(String::from);
    Some(Pong { pid, disk })
}

/// Answers the connections waiting on `l`; returns true when one asked the
/// VMM to stop. `disk` is this VMM's locked disk (`<dev>:<ino>` or `-`).
pub(super) fn serve(l: &UnixListener, disk: &str) -> bool {
    while let Ok((stream, _)) = l.accept() {
        let _ = stream.set_nonblocking(false);
        let mut s = DeadlineStream::new(stream, Instant::now() + SERVE_DEADLINE);
        let Some(line) = read_line(&mut s) else {
            continue;
        };
        let answer = match line.trim() {
            "ping" => format!("ok {} disk={disk}", std::process::id()),
            "shutdown" => {
                let _ = writeln!(s, "ok");
                return true;
            }
            other => format!("error unknown command {other:?} (expected ping or shutdown)"),
        };
        let _ = writeln!(s, "{answer}");
    }
    false
}

/// One line of at most [`LINE_MAX`] bytes, read within the stream's
/// deadline; `None` (and an error answer, when it is too long) otherwise.
fn read_line(s: &mut DeadlineStream) -> Option<String> {
    let mut line = Vec::with_capacity(16);
    let mut buf = [0u8; LINE_MAX];
    loop {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        line.extend_from_slice(&buf[..n]);
        if line.len() > LINE_MAX {
            let _ = writeln!(s, "error command longer than {LINE_MAX} bytes");
            return None;
        }
        if line.contains(&b'\n') {
            break;
        }
    }
    let end = line.iter().position(|b| *b == b'\n').unwrap_or(line.len());
    Some(String::from_utf8_lossy(&line[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket path in a directory of its own (removed with the
    /// returned guard).
    fn temp_socket(tag: &str) -> (crate::temp_dir::TempDir, std::path::PathBuf) {
        let d = crate::temp_dir::TempDir::new(&format!("ctl-{tag}"));
        let p = d.join("control.sock");
        (d, p)
    }

    #[test]
    fn ping_answers_carry_the_pid_and_the_locked_disk() {
        assert_eq!(
            parse_pong("ok 42 disk=2049:77"),
            Some(Pong {
                pid: 42,
                disk: Some("2049:77".into())
            })
        );
        // A VMM from before the disk lock answers with its pid only.
        assert_eq!(
            parse_pong("ok 42"),
            Some(Pong {
                pid: 42,
                disk: None
            })
        );
        assert_eq!(parse_pong("ok 42 disk=-").unwrap().disk, None);
        for bad in ["", "ok", "ok 0", "ok -3", "ok x", "error ping"] {
            assert_eq!(parse_pong(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_control_socket_answers_ping_and_shutdown() {
        let (_dir, path) = temp_socket("serve");
        let l = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            // Serve until asked to stop; `accept` blocks between clients.
            while !serve(&l, "7:9") {}
        });
        let pong = ping(&path, Duration::from_secs(5)).unwrap();
        assert_eq!(pong.pid, std::process::id() as i32);
        assert_eq!(pong.disk.as_deref(), Some("7:9"));
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(b"shutdown\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert_eq!(out, "ok\n");
        server.join().unwrap();
    }

    #[test]
    fn a_trickling_or_flooding_client_cannot_hold_the_control_socket() {
        let (_dir, path) = temp_socket("trickle");
        let l = UnixListener::bind(&path).unwrap();
        // As in the VMM: `serve` returns once no client is waiting.
        l.set_nonblocking(true).unwrap();
        // A client that sends a byte now and then, never a newline.
        let trickler = {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut s = UnixStream::connect(&path).unwrap();
                for _ in 0..20 {
                    if s.write_all(b"p").is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        let start = Instant::now();
        assert!(!serve(&l, "-"));
        let took = start.elapsed();
        assert!(
            took < SERVE_DEADLINE + Duration::from_millis(400),
            "served a trickling client for {took:?}"
        );
        // A client that floods without a newline gets an error, not a buffer.
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(&[b'x'; 4 * LINE_MAX]).unwrap();
        assert!(!serve(&l, "-"));
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.starts_with("error command longer than"), "{out:?}");
        trickler.join().unwrap();
    }
}
