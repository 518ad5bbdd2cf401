//! VM-backed integration tests: every test boots real guests through the
//! `pyro` binary. They need /dev/kvm that boots stock kernels, so they are
//! `#[ignore]`d for plain `cargo test`; `make test` runs them with
//! `--ignored` inside the test host (or directly on hardware KVM).

#[path = "support/sparse.rs"]
mod sparse;

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn pyro() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pyro"))
}

fn run_json(args: &[&str]) -> (Output, Value) {
    let out = pyro().arg("run").args(args).output().expect("spawn pyro");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, v)
}

fn pyro_home() -> PathBuf {
    std::env::var_os("PYRO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".local/share/pyro")
        })
}

/// Pids of live VMM processes (any `pyro vmm` on this machine).
fn vmm_pids() -> Vec<u32> {
    let mut pids = Vec::new();
    for ent in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = ent.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(ent.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        if args.len() > 2 && args[0].ends_with(b"pyro") && args[1] == b"vmm" {
            pids.push(pid);
        }
    }
    pids
}

fn assert_no_leftovers() {
    assert!(
        vmm_pids().is_empty(),
        "VMM processes left behind: {:?}",
        vmm_pids()
    );
    let runs = pyro_home().join("runs");
    let left: Vec<_> = std::fs::read_dir(&runs)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "run state left behind: {left:?}");
}

#[test]
#[ignore = "boots VMs: run with `make test`"]
fn run_returns_guest_output() {
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
    let out = pyro()
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
    let out = pyro()
        .args(["run", "debian:13", "--", "true"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown environment \"debian:13\"") && err.contains("debian:12"),
        "{err}"
    );

    let out = pyro()
        .args(["run", "debian:12", "--bogus", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bogus"));

    let out = pyro().args(["frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown command \"frobnicate\""));

    let out = pyro().args(["run", "debian:12"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing command"));
    assert_no_leftovers();
}

#[test]
#[ignore = "boots VMs: run with `make test`"]
fn parallel_runs_do_not_interfere() {
    let spawn = |tag: &str| {
        let cmd = format!("echo {tag} > /workspace/tag; sleep 1; cat /workspace/tag");
        pyro()
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
    let mut child = pyro()
        .args(["run", "debian:12-base", "--", "sleep", "120"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the VM is up (a VMM exists), then interrupt like Ctrl-C.
    let deadline = Instant::now() + Duration::from_secs(120);
    while vmm_pids().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signalling our own child.
    unsafe { libc_kill(child.id() as i32, 2) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_no_leftovers();
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Starts `pyro vmm` directly on an installed environment; returns the
/// child and its state directory.
fn start_vmm(tag: &str) -> (std::process::Child, PathBuf) {
    let env = pyro_home().join("environments/debian-12-base");
    let dir = std::env::temp_dir().join(format!("pyro-vmm-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    sparse::copy_sparse(&env.join("scratch.ext4"), &dir.join("scratch.ext4")).unwrap();
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
    let child = pyro()
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
    (child, dir)
}

fn control(dir: &std::path::Path, cmd: &str) -> String {
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
    let (child, dir) = start_vmm("ctl");
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

    let (child, dir2) = start_vmm("term");
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signalling our own child.
    unsafe { libc_kill(child.id() as i32, 15) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopped by signal 15"));
    assert!(
        !dir2.join("ctl.sock").exists() && !dir2.join("v.sock").exists(),
        "sockets left behind"
    );
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(dir2);
    assert_no_leftovers();
}

#[test]
#[ignore = "boots VMs: run with `make test`"]
fn demo_narrates_the_lifecycle() {
    let out = pyro().arg("demo").output().unwrap();
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
