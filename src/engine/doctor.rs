//! Host readiness checks behind `pyro doctor`. They only look: doctor
//! creates, changes and deletes nothing (not even the state directory).

use super::environments;
use super::host::KvmStatus;
use super::host::{kvm_status, KvmKind};
use super::paths;
use serde::Serialize;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One readiness check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// Whether `pyro run` needs it (a failed optional check only warns).
    pub required: bool,
    pub detail: String,
}

/// `pyro doctor`: every check, and whether guests can boot here.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Every required check passed.
    pub ready: bool,
    pub kvm: KvmStatus,
    pub pyro_home: PathBuf,
    pub checks: Vec<Check>,
    pub installed_environments: Vec<String>,
}

fn check(name: &'static str, ok: bool, detail: String, required: bool) -> Check {
    Check {
        name,
        ok,
        required,
        detail,
    }
}

fn writable(p: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated path.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// Whether pyro can keep its state in `home`, found out without writing:
/// an existing directory must pass pyro's ownership and mode rule; a
/// missing one needs a writable nearest existing parent.
fn state_dir_check(home: &Path) -> (bool, String) {
    match std::fs::metadata(home) {
        Ok(meta) => {
            // SAFETY: geteuid takes no arguments and cannot fail.
            let uid = unsafe { libc::geteuid() };
            if let Some(why) = paths::home_problem(home, &meta, uid) {
                return (false, why);
            }
            let w = writable(home);
            (
                w,
                format!(
                    "{} (yours, not writable by others) writable={w}",
                    home.display()
                ),
            )
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = home.ancestors().skip(1).find(|a| a.exists());
            match parent {
                Some(p) if writable(p) => (
                    true,
                    format!(
                        "{} does not exist yet; pyro creates it (mode 0700) on first use under {}",
                        home.display(),
                        p.display()
                    ),
                ),
                Some(p) => (
                    false,
                    format!(
                        "{} does not exist and cannot be created: {} is not writable; set PYRO_HOME to a directory of yours",
                        home.display(),
                        p.display()
                    ),
                ),
                None => (false, format!("{} cannot be created", home.display())),
            }
        }
        Err(e) => (false, format!("{}: {e}", home.display())),
    }
}

/// All checks; `ready` is true only when `pyro run` can boot a guest here.
pub fn report() -> Report {
    let kvm = kvm_status();
    let mut checks = Vec::new();
    checks.push(check(
        "kvm_device",
        kvm.present,
        if kvm.present {
            "/dev/kvm exists".into()
        } else {
            "/dev/kvm is missing".into()
        },
        true,
    ));
    checks.push(check(
        "kvm_access",
        kvm.readable && kvm.writable,
        format!("readable={} writable={}", kvm.readable, kvm.writable),
        true,
    ));
    let kind_detail = match kvm.kind {
        KvmKind::Hardware => "hardware KVM (kvm_intel/kvm_amd): stock guest kernels boot directly".to_string(),
        KvmKind::Pvm => "PVM (kvm_pvm): only PVM-patched guest kernels boot; pyro's stock guest kernel does not. \
             Use a host with kvm_intel/kvm_amd, or run inside pyro's test host: tests/vmhost/run -- pyro ..."
            .to_string(),
        KvmKind::Unknown => "/dev/kvm exists but neither kvm_intel, kvm_amd nor kvm_pvm is loaded; guests may not boot".to_string(),
        KvmKind::Absent => "no KVM: enable virtualization (VT-x/AMD-V) and load kvm_intel or kvm_amd".to_string(),
    };
    checks.push(check(
        "kvm_kind",
        kvm.kind == KvmKind::Hardware || kvm.kind == KvmKind::Unknown,
        kind_detail,
        true,
    ));
    let tun = Path::new("/dev/net/tun").exists();
    checks.push(check(
        "tun_device",
        tun,
        if tun {
            "/dev/net/tun exists (needed for guest networking)".into()
        } else {
            "/dev/net/tun is missing: guest networking will not work".into()
        },
        false,
    ));
    let fwd = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
        .map(|s| s.trim() == "1")
        .unwrap_or(false);
    checks.push(check(
        "ip_forwarding",
        fwd,
        if fwd {
            "net.ipv4.ip_forward=1".into()
        } else {
            "net.ipv4.ip_forward=0: guests with --network cannot reach the outside".into()
        },
        false,
    ));
    let home = paths::home();
    let (ok, detail) = state_dir_check(&home);
    checks.push(check("state_dir", ok, detail, true));
    let installed: Vec<String> = environments::list()
        .environments
        .iter()
        .filter(|e| e.installed)
        .map(|e| e.name.to_string())
        .collect();
    checks.push(check(
        "environments",
        !installed.is_empty(),
        if installed.is_empty() {
            "no environments installed: run `pyro env pull debian:12` (or `make envs` in a checkout)".into()
        } else {
            format!("installed: {}", installed.join(", "))
        },
        true,
    ));
    let ready = checks.iter().all(|c| c.ok || !c.required);
    Report {
        ready,
        kvm,
        pyro_home: home,
        checks,
        installed_environments: installed,
    }
}
