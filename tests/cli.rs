//! CLI behaviour that needs no guest: help, usage errors, doctor, env list,
//! and how `pyro run` behaves on a host that cannot boot guests.

mod support;

use serde_json::Value;
use support::{json_stdout, pyro_cmd, TempDir};

/// `pyro ARGS`, run to the end.
fn pyro(args: &[&str]) -> std::process::Output {
    pyro_cmd().args(args).output().expect("spawn pyro")
}

fn json(out: &std::process::Output) -> Value {
    json_stdout(out, &"pyro")
}

#[test]
fn help_teaches_and_bad_usage_exits_2() {
    let out = pyro(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("pyro run debian:12 -- git --version"),
        "{text}"
    );
    let out = pyro(&["run", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("--timeout-seconds"));
    let out = pyro(&["run", "debian:12", "--vcpu-count", "lots", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--vcpu-count needs a number"));
    let out = pyro(&["env", "inspect"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn doctor_exit_code_matches_readiness() {
    let out = pyro(&["doctor", "--json"]);
    let v = json(&out);
    let ready = v["ready"].as_bool().unwrap();
    assert_eq!(out.status.success(), ready, "{v}");
    let kind = v["kvm"]["kind"].as_str().unwrap();
    assert!(
        ["hardware", "pvm", "unknown", "absent"].contains(&kind),
        "{kind}"
    );
    if kind == "pvm" {
        assert!(!ready, "a PVM host cannot boot pyro's stock guest kernel");
        let kvm_check = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "kvm_kind")
            .unwrap();
        assert!(kvm_check["detail"].as_str().unwrap().contains("PVM"));
    }
    let human = pyro(&["doctor"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("kvm_kind"));
}

#[test]
fn env_list_shows_the_catalog() {
    let v = json(&pyro(&["env", "list", "--json"]));
    let names: Vec<&str> = v["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["debian:12", "debian:12-base", "debian:12-build"]);
    let human = String::from_utf8_lossy(&pyro(&["env", "list"]).stdout).into_owned();
    assert!(human.contains("debian:12-build ["), "{human}");
    let out = pyro(&["env", "inspect", "alpine:3", "--json"]);
    assert!(!out.status.success());
    assert!(json(&out)["error"]
        .as_str()
        .unwrap()
        .contains("unknown environment"));
}

#[test]
fn run_without_usable_kvm_refuses_or_runs_host_compat_loudly() {
    let doctor = json(&pyro(&["doctor", "--json"]));
    let can_boot = matches!(
        doctor["kvm"]["kind"].as_str(),
        Some("hardware") | Some("unknown")
    ) && doctor["kvm"]["readable"] == true
        && doctor["kvm"]["writable"] == true;
    if can_boot {
        return; // the VM tests cover this host
    }
    let out = pyro(&["run", "debian:12", "--", "echo", "hi"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot boot a guest here") && err.contains("--allow-host-compat"),
        "{err}"
    );

    let out = pyro(&[
        "run",
        "debian:12",
        "--allow-host-compat",
        "--json",
        "--",
        "sh",
        "-c",
        "echo hi; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let v = json(&out);
    assert_eq!(v["execution_mode"], "host_compat");
    assert_eq!(v["stdout"], "hi\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("NOT ISOLATED"));
}

/// Takes the lock a VMM holds on its writable disk (an exclusive open
/// file description lock over the whole file, src/vmm/disk_lock.rs).
fn lock_like_a_vmm(f: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: flock is plain data; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: fcntl on our descriptor with a pointer to a live flock.
    let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
}

#[test]
fn a_second_vmm_refuses_a_disk_another_holds_before_touching_kvm_or_sockets() {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::fs::MetadataExt;
    let dir = TempDir::new("cli-disklock");
    let scratch = dir.join("scratch.ext4");
    std::fs::write(&scratch, vec![0u8; 4096]).unwrap();
    std::fs::write(dir.join("rootfs.ext4"), vec![0u8; 4096]).unwrap();
    // The config reaches the disk through a symlinked directory: another
    // spelling of the same file, as a symlinked PYRO_HOME gives.
    let alias = dir.with_extension("alias");
    let _ = std::fs::remove_file(&alias);
    std::os::unix::fs::symlink(&dir, &alias).unwrap();
    let cfg = serde_json::json!({
        "kernel": alias.join("no-such-vmlinux"),
        "cmdline": "console=ttyS0",
        "vcpus": 1,
        "mem_mib": 128,
        "disks": [{"path": alias.join("rootfs.ext4"), "read_only": true},
                  {"path": alias.join("scratch.ext4"), "read_only": false}],
        "vsock": {"guest_cid": 3, "uds_path": alias.join("vsock.sock")},
        "serial_log": alias.join("serial.log"),
        "control_socket": alias.join("control.sock"),
    });
    std::fs::write(dir.join("vm.json"), cfg.to_string()).unwrap();
    let vmm = || {
        pyro_cmd()
            .args(["vmm", "--config"])
            .arg(alias.join("vm.json"))
            .output()
            .unwrap()
    };

    // "The running VMM": holds the disk and answers on the control socket.
    let held = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&scratch)
        .unwrap();
    lock_like_a_vmm(&held);
    let control = std::os::unix::net::UnixListener::bind(dir.join("control.sock")).unwrap();
    let meta = std::fs::metadata(&scratch).unwrap();
    let answer = format!(
        "ok {} disk={}:{}\n",
        std::process::id(),
        meta.dev(),
        meta.ino()
    );
    let socket_ino = std::fs::metadata(dir.join("control.sock")).unwrap().ino();
    let server = std::thread::spawn(move || {
        let (s, _) = control.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).unwrap();
        assert_eq!(line, "ping\n");
        (&s).write_all(answer.as_bytes()).unwrap();
        control
    });

    let out = vmm();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(
        err.contains(&format!(
            "another VMM (pid {}) is using this VM's disk",
            std::process::id()
        )),
        "{err}"
    );
    // It stopped before KVM (no KVM error, whatever this host's /dev/kvm)
    // and before its sockets: the live VMM's control socket is untouched
    // and still its own, and no vsock socket appeared.
    assert!(!err.contains("kvm") && !err.contains("KVM"), "{err}");
    let control = server.join().unwrap();
    assert_eq!(
        std::fs::metadata(dir.join("control.sock")).unwrap().ino(),
        socket_ino
    );
    std::os::unix::net::UnixStream::connect(dir.join("control.sock")).unwrap();
    assert!(control.accept().is_ok());
    assert!(!dir.join("vsock.sock").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A holder that does not answer is still a holder.
    drop(control);
    std::fs::remove_file(dir.join("control.sock")).unwrap();
    let out = vmm();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(err.contains("does not answer"), "{err}");

    // Once the disk is free, the VMM gets past the lock (and fails later,
    // on the missing kernel or this host's KVM).
    drop(held);
    let out = vmm();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(75), "{err}");
    assert!(!err.contains("is using this VM's disk"), "{err}");

    std::fs::remove_file(&alias).unwrap();
}
