//! The device thread: one mio loop over queue notifications, device
//! sockets, the reset line, signals and the control socket; devices that
//! block on host I/O get a thread of their own (`spawn_io_thread`).

use super::exit::{ExitReport, VmExit};
use super::vm::DeviceSlot;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use vmm_sys_util::eventfd::EventFd;

const SIGNALS: Token = Token(0);
const RESET: Token = Token(1);
const VCPU_EXIT: Token = Token(2);
const CONTROL: Token = Token(3);
/// Device `i` owns tokens `[(i + 1) << 20, (i + 2) << 20)`: queue `q` is
/// `base + q`, the device's own sources sit above.
const DEVICE_SHIFT: usize = 20;

/// Why the event loop could not serve the VM.
#[derive(Debug)]
pub enum EventLoopError {
    Epoll(io::Error),
    Register(io::Error),
    ControlSocket(PathBuf, io::Error),
    ControlNonblocking(io::Error),
    DeviceSources(io::Error),
    Wait(io::Error),
    SpawnIoThread(io::Error),
}

impl fmt::Display for EventLoopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventLoopError::Epoll(e) => write!(f, "epoll: {e}"),
            EventLoopError::Register(e) => write!(f, "register: {e}"),
            EventLoopError::ControlSocket(p, e) => write!(f, "control socket {}: {e}", p.display()),
            EventLoopError::ControlNonblocking(e) => write!(f, "control socket: {e}"),
            EventLoopError::DeviceSources(e) => write!(f, "device sources: {e}"),
            EventLoopError::Wait(e) => write!(f, "epoll_wait: {e}"),
            EventLoopError::SpawnIoThread(e) => write!(f, "spawning device I/O thread: {e}"),
        }
    }
}

impl std::error::Error for EventLoopError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EventLoopError::Epoll(e)
            | EventLoopError::Register(e)
            | EventLoopError::ControlSocket(_, e)
            | EventLoopError::ControlNonblocking(e)
            | EventLoopError::DeviceSources(e)
            | EventLoopError::Wait(e)
            | EventLoopError::SpawnIoThread(e) => Some(e),
        }
    }
}

pub struct Loop {
    pub signals: OwnedFd,
    pub reset_evt: EventFd,
    pub exits: Arc<ExitReport>,
    pub slots: Vec<DeviceSlot>,
    pub control_socket: Option<PathBuf>,
    /// The locked disk's `<dev>:<ino>`, for the control socket's ping.
    pub disk_identity: String,
}

/// Blocks the stop signals in this thread (and every thread it spawns
/// afterwards) and returns a signalfd that reports them instead.
pub fn block_signals() -> std::io::Result<OwnedFd> {
    // SAFETY: sigset manipulation on a local, then syscalls with valid pointers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Serves the devices until the VM ends; returns how it ended.
pub fn run(mut lp: Loop) -> Result<VmExit, EventLoopError> {
    let mut poll = Poll::new().map_err(EventLoopError::Epoll)?;
    let reg = poll.registry().try_clone().map_err(EventLoopError::Epoll)?;
    reg.register(
        &mut SourceFd(&lp.signals.as_raw_fd()),
        SIGNALS,
        Interest::READABLE,
    )
    .map_err(EventLoopError::Register)?;
    reg.register(
        &mut SourceFd(&lp.reset_evt.as_raw_fd()),
        RESET,
        Interest::READABLE,
    )
    .map_err(EventLoopError::Register)?;
    reg.register(
        &mut SourceFd(&lp.exits.as_raw_fd()),
        VCPU_EXIT,
        Interest::READABLE,
    )
    .map_err(EventLoopError::Register)?;
    let control = match &lp.control_socket {
        Some(p) => {
            let l =
                super::listen_unix(p).map_err(|e| EventLoopError::ControlSocket(p.clone(), e))?;
            l.set_nonblocking(true)
                .map_err(EventLoopError::ControlNonblocking)?;
            reg.register(&mut SourceFd(&l.as_raw_fd()), CONTROL, Interest::READABLE)
                .map_err(EventLoopError::Register)?;
            Some(l)
        }
        None => None,
    };
    for (i, slot) in lp.slots.iter().enumerate() {
        let base = (i + 1) << DEVICE_SHIFT;
        if slot.transport.lock().unwrap().device().own_io_thread() {
            spawn_io_thread(i, slot, lp.exits.clone())?;
            continue;
        }
        for (q, evt) in slot.notify.iter().enumerate() {
            reg.register(
                &mut SourceFd(&evt.as_raw_fd()),
                Token(base + q),
                Interest::READABLE,
            )
            .map_err(EventLoopError::Register)?;
        }
        slot.transport
            .lock()
            .unwrap()
            .device_mut()
            .register_sources(&reg, base)
            .map_err(EventLoopError::DeviceSources)?;
    }

    let mut events = Events::with_capacity(64);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(EventLoopError::Wait(e));
        }
        for ev in events.iter() {
            match ev.token() {
                SIGNALS => {
                    // SAFETY: reading one siginfo record into a correctly sized buffer.
                    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
                    let n = unsafe {
                        libc::read(
                            lp.signals.as_raw_fd(),
                            &mut info as *mut _ as *mut libc::c_void,
                            std::mem::size_of_val(&info),
                        )
                    };
                    let sig = if n > 0 { info.ssi_signo as i32 } else { 0 };
                    return Ok(VmExit::Signal(sig));
                }
                RESET => return Ok(VmExit::GuestReset),
                VCPU_EXIT => {
                    // Every wake-up follows a report.
                    if let Some(exit) = lp.exits.take() {
                        return Ok(exit);
                    }
                }
                CONTROL => {
                    if let Some(l) = &control {
                        if super::control::serve(l, &lp.disk_identity) {
                            return Ok(VmExit::ControlStop);
                        }
                    }
                }
                Token(t) => {
                    let idx = (t >> DEVICE_SHIFT) - 1;
                    let local = t & ((1 << DEVICE_SHIFT) - 1);
                    let Some(slot) = lp.slots.get_mut(idx) else {
                        continue;
                    };
                    let mut tr = slot.transport.lock().unwrap();
                    if let Some(evt) = slot.notify.get(local) {
                        let _ = evt.read();
                        tr.notify_queue(&reg, local);
                    } else {
                        tr.device_mut().handle_event(&reg, local, ev);
                    }
                }
            }
        }
    }
}

/// Serves one device's queue notifications on a thread of its own (see
/// `VirtioDevice::own_io_thread`). It lives as long as the VMM process:
/// the device thread's return ends the process, and with it this thread.
/// If it cannot go on, it stops the VM the way a failing vCPU does (a
/// guest whose disk silently stopped answering would hang instead).
fn spawn_io_thread(
    index: usize,
    slot: &DeviceSlot,
    exits: Arc<ExitReport>,
) -> Result<(), EventLoopError> {
    let mut poll = Poll::new().map_err(EventLoopError::Epoll)?;
    for (q, evt) in slot.notify.iter().enumerate() {
        poll.registry()
            .register(
                &mut SourceFd(&evt.as_raw_fd()),
                Token(q),
                Interest::READABLE,
            )
            .map_err(EventLoopError::Register)?;
    }
    let (transport, notify) = (slot.transport.clone(), slot.notify.clone());
    std::thread::Builder::new()
        .name(format!("io{index}"))
        .spawn(move || {
            let mut events = Events::with_capacity(8);
            loop {
                if let Err(e) = poll.poll(&mut events, None) {
                    if e.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    exits.report(VmExit::DeviceThread { index, source: e });
                    return;
                }
                for ev in events.iter() {
                    let q = ev.token().0;
                    let _ = notify[q].read();
                    transport.lock().unwrap().notify_queue(poll.registry(), q);
                }
            }
        })
        .map_err(EventLoopError::SpawnIoThread)?;
    Ok(())
}
