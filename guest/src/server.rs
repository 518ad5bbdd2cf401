//! The agent's listener: one request per connection, a thread each.

use crate::exec;
use pyro_guest::ops;
use pyro_proto::{read_frame, write_frame, ErrorKind, Request, Response, PROTOCOL_VERSION};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixListener;

pub fn serve(port: u32) -> io::Result<()> {
    // Outside a VM (the agent's own tests) a Unix socket stands in for vsock.
    if let Ok(path) = std::env::var("PYRO_AGENT_UNIX") {
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        for conn in listener.incoming() {
            let conn = conn?;
            std::thread::spawn(move || handle(conn));
        }
        return Ok(());
    }
    let fd = vsock_listen(port)?;
    loop {
        // SAFETY: accept4 on our listening socket; null address pointers are allowed.
        let conn = unsafe {
            libc::accept4(
                fd,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if conn < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            eprintln!("pyro-init: accept: {e}");
            std::thread::sleep(std::time::Duration::from_millis(10));
            continue;
        }
        // SAFETY: accept4 returned a fresh descriptor we now own.
        let file = unsafe { File::from_raw_fd(conn) };
        std::thread::spawn(move || handle(file));
    }
}

fn vsock_listen(port: u32) -> io::Result<i32> {
    // SAFETY: socket/bind/listen with a zeroed, fully initialised sockaddr_vm.
    unsafe {
        let fd = libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        crate::sys::check(fd, "vsock socket")?;
        let mut addr: libc::sockaddr_vm = std::mem::zeroed();
        addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
        addr.svm_port = port;
        addr.svm_cid = libc::VMADDR_CID_ANY;
        let r = libc::bind(
            fd,
            &addr as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        );
        crate::sys::check(r, "vsock bind")?;
        crate::sys::check(libc::listen(fd, 64), "vsock listen")?;
        Ok(fd)
    }
}

fn handle<S: io::Read + io::Write + AsRawFd>(mut conn: S) {
    let req: Request = match read_frame(&mut conn) {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            let _ = write_frame(
                &mut conn,
                &Response::Error {
                    kind: ErrorKind::Invalid,
                    message: format!("bad request: {e}"),
                },
            );
            return;
        }
    };
    if let Some(done) = ops::serve(&req, &mut conn) {
        if let Err(e) = done {
            eprintln!("pyro-init: file request failed mid-stream: {e}");
        }
        return;
    }
    let resp = match req {
        Request::Ping => Response::Pong {
            protocol_version: PROTOCOL_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_ms: uptime_ms(),
        },
        // The command dies with the connection: a host that hangs up
        // (cancelled, or past its deadline) never leaves it running.
        Request::Exec(e) => match exec::run_for(&e, Some(conn.as_raw_fd())) {
            Ok(r) => {
                if e.sync_after {
                    ops::sync_dir(e.cwd.as_deref().unwrap_or("/workspace"));
                }
                Response::Exec(r)
            }
            Err(e) => Response::error(&e),
        },
        Request::Shutdown => {
            let _ = write_frame(&mut conn, &Response::Ok);
            drop(conn);
            crate::init::power_off();
        }
        other => Response::Error {
            kind: ErrorKind::Invalid,
            message: format!("request {other:?} is not handled here"),
        },
    };
    let _ = write_frame(&mut conn, &resp);
}

fn uptime_ms() -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|secs| (secs * 1000.0) as u64)
        .unwrap_or(0)
}
