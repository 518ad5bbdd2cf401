//! Host readiness checks behind `pyro doctor`.

use super::environments;
use super::host::{kvm_status, KvmKind};
use super::paths;
use serde_json::{json, Value};
use std::path::Path;

fn check(name: &str, ok: bool, detail: String, required: bool) -> Value {
    json!({"name": name, "ok": ok, "required": required, "detail": detail})
}

/// All checks; `ready` is true only when `pyro run` can boot a guest here.
pub fn report() -> Value {
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
    let writable = std::fs::create_dir_all(&home).is_ok() && {
        let probe = home.join(format!(".doctor-{}", paths::random_id(4)));
        let ok = std::fs::write(&probe, b"ok").is_ok();
        let _ = std::fs::remove_file(probe);
        ok
    };
    checks.push(check(
        "state_dir",
        writable,
        format!("{} writable={writable}", home.display()),
        true,
    ));
    let envs = environments::list();
    let installed: Vec<String> = envs["environments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["installed"] == true)
        .map(|e| e["name"].as_str().unwrap().to_string())
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
    let ready = checks
        .iter()
        .all(|c| c["ok"] == true || c["required"] == false);
    json!({
        "ready": ready,
        "kvm": kvm,
        "pyro_home": home,
        "checks": checks,
        "installed_environments": installed,
    })
}
