//! Ctrl-C and SIGTERM for commands that start VMs: a dedicated thread
//! waits for the signal, tears down every VM this process started, and
//! exits with the conventional 128 + signal code.

use std::sync::atomic::{AtomicI32, Ordering};

static INTERRUPTED: AtomicI32 = AtomicI32::new(0);

/// The signal that interrupted this process, if any. Work failing because
/// its VM was torn down on interrupt reports this instead of its own error.
pub fn interrupted() -> Option<i32> {
    match INTERRUPTED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

pub fn install() {
    // SAFETY: sigset manipulation on locals; the mask is set before any
    // other thread exists, so every thread inherits it.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    std::thread::spawn(move || {
        let mut sig: libc::c_int = 0;
        // SAFETY: set is a valid sigset; sig a valid out-pointer.
        unsafe { libc::sigwait(&set, &mut sig) };
        INTERRUPTED.store(sig, Ordering::SeqCst);
        eprintln!("pyro: interrupted (signal {sig}); stopping VMs");
        crate::engine::vm::kill_ephemeral();
        std::process::exit(128 + sig);
    });
}
