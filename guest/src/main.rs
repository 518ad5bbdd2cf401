//! pyro's guest agent, installed as `/sbin/pyro-init` in every image.
//!
//! As PID 1 it turns the read-only root image plus the per-VM scratch disk
//! into a writable root, then starts itself again as the agent server and
//! spends the rest of its life reaping orphans. Keeping the server out of
//! PID 1 means the server can wait for its own children with plain
//! `waitpid` without racing a reaper.

use pyro_guest::exec;
mod init;
mod server;
mod sys;

use std::process::Command;

fn main() {
    if std::process::id() == 1 {
        pid1();
    }
    let port = std::env::var("PYRO_AGENT_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(pyro_proto::AGENT_PORT);
    if let Err(e) = server::serve(port) {
        eprintln!("pyro-init: agent server failed: {e}");
        std::process::exit(1);
    }
}

fn pid1() -> ! {
    if let Err(e) = init::setup() {
        // Without a usable root there is nothing to serve; say why on the
        // console and let the VMM see the VM end.
        eprintln!("pyro-init: setup failed: {e}");
        init::power_off();
    }
    // `PYRO_POWEROFF=1` on the kernel command line (the kernel hands unknown
    // key=value words to init as environment): boot, set up, power off.
    // Benchmarks use it to time boot-to-init against other VMMs.
    if std::env::var("PYRO_POWEROFF").as_deref() == Ok("1") {
        let uptime = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
        let uptime = uptime.split_whitespace().next().unwrap_or("?");
        eprintln!(
            "pyro-init: init reached at guest uptime {uptime} s; powering off (PYRO_POWEROFF=1)"
        );
        init::power_off();
    }
    let mut restarts = 0;
    loop {
        let server = Command::new("/proc/self/exe").env_clear().spawn();
        let pid = match server {
            Ok(child) => child.id() as i32,
            Err(e) => {
                eprintln!("pyro-init: cannot start the agent server: {e}");
                init::power_off();
            }
        };
        // Reap everything; the server's own exit ends this inner loop.
        loop {
            let mut status = 0;
            // SAFETY: status is a valid out-pointer.
            let reaped = unsafe { libc::waitpid(-1, &mut status, 0) };
            if reaped == pid {
                break;
            }
            if reaped < 0 {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        restarts += 1;
        eprintln!("pyro-init: agent server exited; restart {restarts}");
        if restarts > 5 {
            init::power_off();
        }
    }
}
