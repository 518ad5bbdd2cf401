//! What kind of virtualization this host offers.

use serde::Serialize;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KvmKind {
    /// kvm_intel or kvm_amd: stock guest kernels boot.
    Hardware,
    /// kvm_pvm: needs a PVM-patched guest kernel; stock kernels do not boot.
    Pvm,
    /// /dev/kvm exists but no known module is loaded.
    Unknown,
    Absent,
}

#[derive(Debug, Clone, Serialize)]
pub struct KvmStatus {
    pub device: &'static str,
    pub present: bool,
    pub readable: bool,
    pub writable: bool,
    pub kind: KvmKind,
}

fn access(path: &str, mode: libc::c_int) -> bool {
    let c = std::ffi::CString::new(path).unwrap();
    // SAFETY: valid NUL-terminated path.
    unsafe { libc::access(c.as_ptr(), mode) == 0 }
}

pub fn kvm_status() -> KvmStatus {
    let dev = "/dev/kvm";
    let present = Path::new(dev).exists();
    let sysmod = |m: &str| Path::new("/sys/module").join(m).exists();
    let kind = if !present {
        KvmKind::Absent
    } else if sysmod("kvm_pvm") && !sysmod("kvm_intel") && !sysmod("kvm_amd") {
        KvmKind::Pvm
    } else if sysmod("kvm_intel") || sysmod("kvm_amd") {
        KvmKind::Hardware
    } else {
        KvmKind::Unknown
    };
    KvmStatus {
        device: dev,
        present,
        readable: access(dev, libc::R_OK),
        writable: access(dev, libc::W_OK),
        kind,
    }
}

impl KvmStatus {
    /// Why stock guests cannot run here, or None when they can.
    pub fn blocker(&self) -> Option<String> {
        if !self.present {
            return Some("/dev/kvm is missing: enable virtualization in firmware and load kvm_intel or kvm_amd".into());
        }
        if !self.readable || !self.writable {
            return Some("/dev/kvm is not readable and writable by this user: add yourself to the kvm group (or fix its mode)".into());
        }
        if self.kind == KvmKind::Pvm {
            return Some(
                "/dev/kvm is served by kvm_pvm (Pagetable-based Virtual Machine), which cannot boot a stock guest kernel; \
                 run on a host with kvm_intel/kvm_amd, or inside pyro's test host (tests/vmhost/run -- pyro ...)"
                    .into(),
            );
        }
        None
    }
}
