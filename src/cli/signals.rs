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
    // Blocked before any other thread exists, so every thread inherits the
    // mask. It cannot fail (only an unknown `how` makes it fail); if it
    // did, the signals would keep their default action and end the
    // process as before.
    let Ok(set) = crate::signals::block_stop_signals() else {
        return;
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
