//! PID 1 duties: mounts, the overlay root, hostname, loopback, power-off.
//!
//! Disk layout the host provides: `/dev/vda` is the environment's root
//! image, mounted read-only by the kernel as `/`; `/dev/vdb` is this VM's
//! writable scratch disk (ext4). The scratch disk holds the overlay's upper
//! and work directories and `/workspace`, so a workspace's changes survive a
//! VM restart while the root image stays shared and untouched.

use crate::sys::{check, cstr, mount, move_mount};
use std::fs;
use std::io;
use std::path::Path;

const SCRATCH_DEV: &str = "/dev/vdb";
const SCRATCH_MNT: &str = "/mnt";

pub fn setup() -> io::Result<()> {
    mount("proc", "/proc", "proc", 0, "")?;
    mount("sysfs", "/sys", "sysfs", 0, "")?;
    // The kernel may have mounted devtmpfs already (DEVTMPFS_MOUNT).
    mount_unless_busy("devtmpfs", "/dev", "devtmpfs", 0, "")?;
    if Path::new(SCRATCH_DEV).exists() {
        overlay_root()?;
    } else {
        eprintln!("pyro-init: no scratch disk at {SCRATCH_DEV}; root stays read-only");
    }
    let _ = fs::create_dir_all("/dev/pts");
    mount(
        "devpts",
        "/dev/pts",
        "devpts",
        0,
        "gid=5,mode=620,ptmxmode=666",
    )?;
    let _ = fs::create_dir_all("/dev/shm");
    mount(
        "tmpfs",
        "/dev/shm",
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        "mode=1777",
    )?;
    mount(
        "tmpfs",
        "/run",
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        "mode=0755",
    )?;
    if !Path::new("/tmp").exists() {
        fs::create_dir_all("/tmp")?;
    }
    let _ = std::os::unix::fs::symlink("/proc/self/fd", "/dev/fd");
    sethostname("pyro")?;
    loopback_up()?;
    Ok(())
}

fn mount_unless_busy(
    src: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    match mount(src, target, fstype, flags, data) {
        Err(e) if e.kind() == io::ErrorKind::ResourceBusy => Ok(()),
        other => other,
    }
}

/// Builds `overlay(lower=/, upper=scratch)` and pivots into it.
fn overlay_root() -> io::Result<()> {
    // noauto_da_alloc: ext4 otherwise writes a file's data out on every
    // rename over an existing file (editors, sync push); pyro syncs the
    // filesystem itself after each command and push.
    mount(
        SCRATCH_DEV,
        SCRATCH_MNT,
        "ext4",
        libc::MS_NOATIME,
        "noauto_da_alloc",
    )?;
    for d in ["upper", "work", "workspace", "newroot"] {
        fs::create_dir_all(format!("{SCRATCH_MNT}/{d}"))?;
    }
    let newroot = format!("{SCRATCH_MNT}/newroot");
    mount(
        "overlay",
        &newroot,
        "overlay",
        0,
        &format!("lowerdir=/,upperdir={SCRATCH_MNT}/upper,workdir={SCRATCH_MNT}/work"),
    )?;
    fs::create_dir_all(format!("{newroot}/workspace"))?;
    mount(
        &format!("{SCRATCH_MNT}/workspace"),
        &format!("{newroot}/workspace"),
        "",
        libc::MS_BIND,
        "",
    )?;
    for m in ["/proc", "/sys", "/dev"] {
        move_mount(m, &format!("{newroot}{m}"))?;
    }
    std::env::set_current_dir(&newroot)?;
    let (new, old) = (cstr(".")?, cstr("mnt")?);
    // SAFETY: valid NUL-terminated paths; pivot_root has no memory side effects.
    let ret = unsafe { libc::syscall(libc::SYS_pivot_root, new.as_ptr(), old.as_ptr()) };
    check(ret as libc::c_int, "pivot_root")?;
    std::env::set_current_dir("/")?;
    // The old root lives on as the overlay's lower layer; detach its name.
    let m = cstr("/mnt")?;
    // SAFETY: a valid NUL-terminated path; umount2 touches no memory of ours.
    let ret = unsafe { libc::umount2(m.as_ptr(), libc::MNT_DETACH) };
    check(ret, "umount old root")?;
    Ok(())
}

fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: pointer and length describe `name`'s bytes.
    let ret = unsafe { libc::sethostname(name.as_ptr() as *const libc::c_char, name.len()) };
    check(ret, "sethostname")
}

fn loopback_up() -> io::Result<()> {
    // SAFETY: plain socket/ioctl calls on a zeroed, correctly sized ifreq.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        check(fd, "socket for loopback")?;
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        let r = libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut ifr);
        if r == 0 {
            ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &ifr);
        }
        libc::close(fd);
    }
    Ok(())
}

/// Flushes disks and ends the VM. The kernel runs with `reboot=k`, so a
/// restart is an i8042 reset, which the VMM treats as "VM finished".
pub fn power_off() -> ! {
    // SAFETY: sync and reboot take no pointers.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_AUTOBOOT);
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
