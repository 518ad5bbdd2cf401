//! The stop signals: what asks a pyro process that runs VMs to end
//! (Ctrl-C, `kill`, a closed terminal). Every process role blocks the same
//! set and takes the signals synchronously: the CLI and the MCP server on
//! a thread of their own (`cli::signals`), each VMM through a signalfd in
//! its event loop (`vmm::event_loop`).

use std::io;

/// SIGINT, SIGTERM and SIGHUP.
pub const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Blocks the stop signals in the calling thread (and in every thread it
/// spawns afterwards, which inherit its mask) and returns their set, to
/// wait on (`sigwait`) or read (`signalfd`).
pub fn block_stop_signals() -> io::Result<libc::sigset_t> {
    // SAFETY: the set is a local, zeroed (a valid sigset_t) and then
    // emptied before signals are added; pthread_sigmask only reads it and
    // is given no old mask to write.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in STOP_SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        // pthread_sigmask returns the error number; it sets no errno.
        match libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) {
            0 => Ok(set),
            err => Err(io::Error::from_raw_os_error(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stop_signals_are_blocked_in_the_calling_thread_and_returned() {
        // A thread of its own: the mask is per thread.
        std::thread::spawn(|| {
            let set = block_stop_signals().unwrap();
            // SAFETY: an all-zero sigset_t is a valid (empty) set.
            let mut mask: libc::sigset_t = unsafe { std::mem::zeroed() };
            // SAFETY: reads this thread's mask into a valid out-buffer.
            let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask) };
            assert_eq!(r, 0);
            for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
                let stop = STOP_SIGNALS.contains(&s);
                // SAFETY: both sets are valid sigset_t values.
                unsafe {
                    assert_eq!(libc::sigismember(&set, s) == 1, stop, "set: {s}");
                    assert_eq!(libc::sigismember(&mask, s) == 1, stop, "mask: {s}");
                }
            }
        })
        .join()
        .unwrap();
    }
}
