//! VM-backed integration tests: every test boots real guests through the
//! `pyro` binary. They need /dev/kvm that boots stock kernels, so they are
//! `#[ignore]`d for plain `cargo test`; `make test` runs them with
//! `--ignored` inside the test host (or directly on hardware KVM).

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};
use support::vm::{assert_no_leftovers, vmms, VmGuard};
use support::{json_stdout, pyro_cmd, pyro_home, TempDir};

fn run_json(args: &[&str]) -> (Output, Value) {
    let out = pyro_cmd()
        .arg("run")
        .args(args)
        .output()
        .expect("spawn pyro");
    let v = json_stdout(&out, &args);
    (out, v)
}

#[test]
#[ignore = "boots VMs: run with `make test`"]
fn run_returns_guest_output() {
    let _vm = VmGuard::new();
    let (out, v) = run_json(&["debian:12", "--json", "--", "git", "--version"]);
    assert!(out.status.success(), "{v}");
    assert!(
        v["stdout"].as_str().unwrap().starts_with("git version "),
        "{v}"
    );
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["execution_mode"], "guest_vsock");
    assert_eq!(v["environment"], "debian:12");
    assert!(v["timings"]["boot_ms"].as_u64().is_some());
    assert_no_leftovers();
}

#[test]
#[ignore = "boots VMs: run with `make test`"]
fn guest_is_isolated_and_writable() {
    let _vm = VmGuard::new();
    // The guest has its own kernel, hostname and a writable /workspace on
    // the overlay; the root image stays read-only underneath.
    let cmd =
        "uname -r; hostname; cd /workspace && echo hi > f && cat f; touch /etc/x && echo rootok; \
               grep -c . /proc/cpuinfo >/dev/null && nproc";
    let (out, v) = run_json(&[
        "debian:12",
        "--vcpu-count",
        "2",
        "--json",
        "--",
        "sh",
        "-c",
        cmd,
    ]);
    assert!(out.status.success(), "{v}");
    let lines: Vec<&str> = v["stdout"].as_str().unwrap().lines().collect();
    assert_eq!(lines[1], "pyro", "{v}");
    assert_eq!(lines[2], "hi");
    assert_eq!(lines[3], "rootok");
    assert_eq!(lines[4], "2", "two vCPUs visible: {v}");
    assert_no_leftovers();
}

#[test]
#[ignore = "boots VMs: run with `make test`"]
fn nonzero_exit_and_stderr_propagate() {
    let _vm = VmGuard::new();
    let out = pyro_cmd()
        .args([
            "run",
            "debian:12-base",
            "--",
            "sh",
            "-c",
            "echo oops >&2; exit 7",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("oops"), "{err}");
    assert!(err.contains("exit_code=7"), "{err}");
    let (_, v) = run_json(&["debian:12-base", "--json", "--", "no-such-command"]);
    assert_eq!(v["exit_code"], 127, "{v}");
    assert_no_leftovers();
}

#[test]
#[ignore = "boots VMs: run with `make test`"]
fn timeout_kills_command_and_vm() {
    let _vm = VmGuard::new();
    let start = Instant::now();
    let (out, v) = run_json(&[
        "debian:12-base",
        "--timeout-seconds",
        "2",
        "--json",
        "--",
        "sh",
        "-c",
        "sleep 60 & sleep 60",
    ]);
    assert_eq!(out.status.code(), Some(124), "{v}");
    assert_eq!(v["timed_out"], true);
    assert!(v["stderr"].as_str().unwrap().contains("timed out after 2s"));
    assert!(
        start.elapsed() < Duration::from_secs(55),
        "the 60 s sleep was not killed"
    );
    assert_no_leftovers();
}

#[test]
#[ignore = "boots VMs: run with `make test`"]
fn large_output_is_truncated_and_reported() {
    let _vm = VmGuard::new();
    let (out, v) = run_json(&[
        "debian:12-base",
        "--json",
        "--",
        "sh",
        "-c",
        "head -c 3000000 /dev/zero | tr '\\0' x",
    ]);
    assert!(out.status.success(), "{}", v["stderr"]);
    assert_eq!(v["stdout_truncated"], true);
    assert_eq!(v["stdout_bytes"], 3_000_000);
    assert_eq!(
        v["stdout"].as_str().unwrap().len(),
        pyro_proto::DEFAULT_MAX_OUTPUT_BYTES
    );
    assert_no_leftovers();
}

#[test]
#[ignore = "boots VMs: run with `make test`"]
fn bad_input_gives_clear_errors() {
    let _vm = VmGuard::new();
    let out = pyro_cmd()
        .args(["run", "debian:13", "--", "true"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown environment \"debian:13\"") && err.contains("debian:12"),
        "{err}"
    );

    let out = pyro_cmd()
        .args(["run", "debian:12", "--bogus", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bogus"));

    let out = pyro_cmd().args(["frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown command \"frobnicate\""));

    let out = pyro_cmd().args(["run", "debian:12"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing command"));
    assert_no_leftovers();
}

#[test]
#[ignore = "boots VMs: run with `make test`"]
fn parallel_runs_do_not_interfere() {
    let _vm = VmGuard::new();
    let spawn = |tag: &str| {
        let cmd = format!("echo {tag} > /workspace/tag; sleep 1; cat /workspace/tag");
        pyro_cmd()
            .args(["run", "debian:12-base", "--json", "--", "sh", "-c", &cmd])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn("alpha");
    let b = spawn("bravo");
    for (child, tag) in [(a, "alpha"), (b, "bravo")] {
        let out = child.wait_with_output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["stdout"], format!("{tag}\n"), "{v}");
    }
    assert_no_leftovers();
}

#[test]
#[ignore = "boots VMs: run with `make test`"]
fn interrupt_tears_the_vm_down() {
    let _vm = VmGuard::new();
    let mut child = pyro_cmd()
        .args(["run", "debian:12-base", "--", "sleep", "120"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the VM is up (a VMM exists), then interrupt like Ctrl-C.
    let deadline = Instant::now() + Duration::from_secs(120);
    while vmms().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) signalling our own child; no memory is involved.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_no_leftovers();
}

/// Starts `pyro vmm` directly on an installed environment, with its state
/// in `dir`.
fn start_vmm(dir: &Path) -> std::process::Child {
    let env = pyro_home().join("environments/debian-12-base");
    support::sparse::copy_sparse(&env.join("scratch.ext4"), &dir.join("scratch.ext4")).unwrap();
    let cfg = serde_json::json!({
        "kernel": env.join("vmlinux"),
        "cmdline": "console=ttyS0 reboot=k panic=1 pci=off nomodules quiet root=/dev/vda ro rootfstype=ext4 init=/sbin/pyro-init",
        "vcpus": 1,
        "mem_mib": 256,
        "disks": [{"path": env.join("rootfs.ext4"), "read_only": true}, {"path": dir.join("scratch.ext4"), "read_only": false}],
        "vsock": {"guest_cid": 3, "uds_path": dir.join("v.sock")},
        "serial_log": dir.join("serial.log"),
        "control_socket": dir.join("ctl.sock"),
    });
    std::fs::write(dir.join("vm.json"), cfg.to_string()).unwrap();
    let child = pyro_cmd()
        .arg("vmm")
        .arg("--config")
        .arg(dir.join("vm.json"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.join("ctl.sock").exists() {
        assert!(Instant::now() < deadline, "control socket never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn control(dir: &Path, cmd: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(dir.join("ctl.sock")).unwrap();
    s.write_all(format!("{cmd}\n").as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
#[ignore = "boots VMs: run with `make test`"]
fn vmm_stops_on_request_and_on_sigterm_leaving_nothing() {
    // The guard covers the VMMs' directories, which outlive it.
    let (dir, dir2) = (TempDir::new("vmm-ctl"), TempDir::new("vmm-term"));
    let mut vm = VmGuard::new();
    vm.watch(&dir);
    vm.watch(&dir2);
    let child = start_vmm(&dir);
    let pong = control(&dir, "ping");
    // The pid, and the disk it holds locked (by device and inode).
    let scratch =
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(dir.join("scratch.ext4")).unwrap());
    assert!(
        pong.trim().starts_with(&format!("ok {} disk=", child.id()))
            && pong.trim().ends_with(&format!(":{scratch}")),
        "{pong}"
    );
    assert!(control(&dir, "bogus").starts_with("error unknown command"));
    assert_eq!(control(&dir, "shutdown").trim(), "ok");
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopped by control socket"));
    assert!(
        !dir.join("ctl.sock").exists() && !dir.join("v.sock").exists(),
        "sockets left behind"
    );

    let child = start_vmm(&dir2);
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) signalling our own child; no memory is involved.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopped by signal 15"));
    assert!(
        !dir2.join("ctl.sock").exists() && !dir2.join("v.sock").exists(),
        "sockets left behind"
    );
    assert_no_leftovers();
}

#[test]
#[ignore = "boots VMs: run with `make test`"]
fn demo_narrates_the_lifecycle() {
    let _vm = VmGuard::new();
    let out = pyro_cmd().arg("demo").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in ["create:", "start:", "exec:", "delete:", "git version "] {
        assert!(text.contains(step), "missing {step:?} in {text}");
    }
    assert_no_leftovers();
}
