//! Stopping an operation from another thread (an MCP
//! `notifications/cancelled`).
//!
//! The operation is handed a [`CancelToken`]; cancelling it
//! - kills the VMM of a one-shot run (`watch`), which makes whatever the
//!   run is blocked on (boot wait, agent exec) fail at once;
//! - shuts down every agent connection the operation has open
//!   (`watch_stream`), so a call blocked on the guest returns at once, and
//!   the guest agent, seeing its connection close, kills the process group
//!   of a command it runs for it;
//! - makes the waits of a workspace operation (for the workspace lock, for
//!   a restarted VM to boot) give up at their next check.
//!
//! Workspace operations find their token through a [`Scope`] set on the
//! calling thread: the engine functions are shared with the CLI (which
//! has nothing to cancel them with), and every agent connection an
//! operation opens, however deep in its helpers, must be reached.

use std::cell::RefCell;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::vm::VmProcess;
use super::EngineError;

/// Lets another thread stop one in-flight operation.
///
/// A one-shot run records its VMM's pid here while the VM lives. The pid
/// is only recorded while the child is unreaped, and both `cancel` and
/// `release` hold the lock, so a cancel can never hit a recycled pid.
#[derive(Clone, Default)]
pub struct CancelToken(Arc<CancelState>);

#[derive(Default)]
struct CancelState {
    cancelled: AtomicBool,
    vmm_pid: Mutex<Option<i32>>,
    /// Open agent connections (duplicates of their descriptors), by key.
    streams: Mutex<Vec<(u64, UnixStream)>>,
    next_stream: AtomicU64,
}

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the operation cancelled, kills its VMM if it is a run with
    /// one, and shuts down its agent connections.
    pub fn cancel(&self) {
        {
            let pid = self.0.vmm_pid.lock().unwrap();
            self.0.cancelled.store(true, Ordering::SeqCst);
            if let Some(pid) = *pid {
                // SAFETY: kill takes no pointers; the pid is an unreaped child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        for (_, s) in self.0.streams.lock().unwrap().iter() {
            // Shutting down the socket (not closing our duplicate) ends the
            // reads and writes blocked on it in the operation's thread.
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    /// Records the VMM of the run; kills it at once if already cancelled.
    pub fn watch(&self, vm: &VmProcess) {
        let mut pid = self.0.vmm_pid.lock().unwrap();
        *pid = Some(vm.pid);
        if self.is_cancelled() {
            // SAFETY: as in `cancel`.
            unsafe { libc::kill(vm.pid, libc::SIGKILL) };
        }
    }

    /// Forgets the VMM; must be called before the child is reaped.
    pub fn release(&self) {
        *self.0.vmm_pid.lock().unwrap() = None;
    }

    /// Has `s` shut down when the operation is cancelled (at once if it
    /// already is), until the returned watch is dropped.
    pub fn watch_stream(&self, s: &UnixStream) -> std::io::Result<StreamWatch> {
        let dup = s.try_clone()?;
        let key = self.0.next_stream.fetch_add(1, Ordering::SeqCst);
        let mut streams = self.0.streams.lock().unwrap();
        // Checked under the lock `cancel` takes to walk the list: either
        // it sees this stream, or this sees the flag.
        if self.is_cancelled() {
            let _ = dup.shutdown(std::net::Shutdown::Both);
        }
        streams.push((key, dup));
        Ok(StreamWatch {
            token: self.clone(),
            key,
        })
    }
}

/// An agent connection registered with a [`CancelToken`]; dropping it
/// forgets the connection (and closes the token's duplicate of it).
pub struct StreamWatch {
    token: CancelToken,
    key: u64,
}

impl Drop for StreamWatch {
    fn drop(&mut self) {
        self.token
            .0
            .streams
            .lock()
            .unwrap()
            .retain(|(k, _)| *k != self.key);
    }
}

thread_local! {
    static CURRENT: RefCell<Option<CancelToken>> = const { RefCell::new(None) };
}

/// While alive, makes a token the current thread's cancellation (see the
/// module documentation); the previous one comes back when it drops.
pub struct Scope {
    prev: Option<CancelToken>,
    /// Tied to the thread whose state it restores.
    _not_send: std::marker::PhantomData<*const ()>,
}

pub fn scope(token: &CancelToken) -> Scope {
    let prev = CURRENT.with(|c| c.replace(Some(token.clone())));
    Scope {
        prev,
        _not_send: std::marker::PhantomData,
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let prev = self.prev.take();
        CURRENT.with(|c| *c.borrow_mut() = prev);
    }
}

/// The current thread's cancellation, if a scope set one.
pub fn current() -> Option<CancelToken> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Whether the current thread's operation was cancelled.
pub fn cancelled() -> bool {
    CURRENT.with(|c| c.borrow().as_ref().is_some_and(CancelToken::is_cancelled))
}

/// The error a cancelled operation returns (an MCP client that cancelled
/// never sees it; the CLI has no way to cancel).
pub fn cancelled_error(what: &str) -> EngineError {
    EngineError::Unavailable(format!("{what} was cancelled"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn cancelling_shuts_down_watched_streams_at_once_and_only_those() {
        let token = CancelToken::new();
        let (mut a, peer_a) = UnixStream::pair().unwrap();
        let (mut b, peer_b) = UnixStream::pair().unwrap();
        let watch = token.watch_stream(&a).unwrap();
        drop(token.watch_stream(&b).unwrap());
        let reader = std::thread::spawn(move || {
            let start = std::time::Instant::now();
            let mut buf = [0u8; 8];
            // Blocks: the peer neither writes nor closes.
            let n = a.read(&mut buf).unwrap();
            (n, start.elapsed())
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        token.cancel();
        let (n, took) = reader.join().unwrap();
        assert_eq!(n, 0, "a cancelled stream reads as closed");
        assert!(took < std::time::Duration::from_secs(2), "{took:?}");
        // The peer (the guest side) sees the connection end.
        let mut buf = [0u8; 8];
        assert_eq!((&peer_a).read(&mut buf).unwrap(), 0);
        // A stream whose watch was dropped is left alone.
        b.set_nonblocking(true).unwrap();
        assert_eq!(
            b.read(&mut buf).unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock
        );
        drop((watch, peer_b));
    }

    #[test]
    fn a_stream_watched_after_the_cancel_is_shut_down_at_once() {
        let token = CancelToken::new();
        token.cancel();
        let (mut a, _peer) = UnixStream::pair().unwrap();
        let _watch = token.watch_stream(&a).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(a.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn scopes_set_the_threads_cancellation_and_restore_the_previous_one() {
        assert!(current().is_none());
        let outer = CancelToken::new();
        let inner = CancelToken::new();
        let s1 = scope(&outer);
        {
            let _s2 = scope(&inner);
            inner.cancel();
            assert!(cancelled());
            // Other threads are not affected.
            assert!(std::thread::spawn(|| current().is_none()).join().unwrap());
        }
        assert!(!cancelled());
        outer.cancel();
        assert!(cancelled());
        drop(s1);
        assert!(current().is_none() && !cancelled());
    }
}
