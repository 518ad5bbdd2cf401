//! VM benchmarks, run by `make bench` where /dev/kvm boots stock kernels
//! (inside the test host on this kind of machine). Side by side in one
//! run, median of N each:
//!   - pyro's VMM and Firecracker booting the same kernel and image to
//!     init and powering off (`PYRO_POWEROFF=1` makes pyro-init do that);
//!   - `pyro run ENV -- true` end to end, and its start -> agent ready;
//!   - VMM overhead RSS (all resident memory except guest RAM) for both.
//!
//! Prints one JSON object; tests/bench/run turns it into docs/benchmarks.md.

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MEM_MIB: u64 = 1024;
const CMDLINE: &str = "console=ttyS0 reboot=k panic=1 pci=off nomodules quiet \
    i8042.noaux i8042.nomux i8042.dumbkbd random.trust_cpu=on \
    root=/dev/vda ro rootfstype=ext4 init=/sbin/pyro-init";

struct Args {
    firecracker: PathBuf,
    pyro: PathBuf,
    env_dir: PathBuf,
    environment: String,
    runs: usize,
    work: PathBuf,
}

fn args() -> Args {
    let mut a = Args {
        firecracker: PathBuf::new(),
        pyro: PathBuf::from("pyro"),
        env_dir: PathBuf::new(),
        environment: "debian:12".into(),
        runs: 10,
        work: std::env::temp_dir().join("pyro-bench-work"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--firecracker" => a.firecracker = v().into(),
            "--pyro" => a.pyro = v().into(),
            "--env-dir" => a.env_dir = v().into(),
            "--environment" => a.environment = v(),
            "--runs" => a.runs = v().parse().expect("--runs N"),
            "--work" => a.work = v().into(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn fresh_scratch(a: &Args, name: &str) -> PathBuf {
    let p = a.work.join(name);
    support::sparse::copy_sparse(&a.env_dir.join("scratch.ext4"), &p)
        .expect("copying the scratch template");
    p
}

/// Resident memory of `pid` outside the guest RAM mapping, in KiB.
fn overhead_rss_kib(pid: u32) -> Option<u64> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let (mut total, mut guest) = (0u64, 0u64);
    let mut size = 0u64;
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("Size:") => size = f.next()?.parse().ok()?,
            Some("Rss:") => {
                let rss: u64 = f.next()?.parse().ok()?;
                total += rss;
                if size == MEM_MIB * 1024 {
                    guest += rss;
                }
            }
            _ => {}
        }
    }
    Some(total - guest)
}

fn pyro_vm_config(a: &Args, scratch: &Path, tag: &str, poweroff: bool) -> PathBuf {
    let cmdline = if poweroff {
        format!("{CMDLINE} PYRO_POWEROFF=1")
    } else {
        CMDLINE.to_string()
    };
    let cfg = json!({
        "kernel": a.env_dir.join("vmlinux"),
        "cmdline": cmdline,
        "vcpus": 1,
        "mem_mib": MEM_MIB,
        "disks": [
            {"path": a.env_dir.join("rootfs.ext4"), "read_only": true},
            {"path": scratch, "read_only": false}
        ],
        "vsock": {"guest_cid": 3, "uds_path": a.work.join(format!("{tag}.vsock"))},
        "serial_log": a.work.join(format!("{tag}.serial.log")),
    });
    let p = a.work.join(format!("{tag}.json"));
    std::fs::write(&p, serde_json::to_vec(&cfg).unwrap()).unwrap();
    p
}

fn fc_config(a: &Args, scratch: &Path, tag: &str) -> PathBuf {
    let cfg = json!({
        "boot-source": {
            "kernel_image_path": a.env_dir.join("vmlinux"),
            "boot_args": format!("{CMDLINE} PYRO_POWEROFF=1"),
        },
        "drives": [
            {"drive_id": "rootfs", "path_on_host": a.env_dir.join("rootfs.ext4"), "is_root_device": false, "is_read_only": true},
            {"drive_id": "scratch", "path_on_host": scratch, "is_root_device": false, "is_read_only": false}
        ],
        "machine-config": {"vcpu_count": 1, "mem_size_mib": MEM_MIB},
        "vsock": {"guest_cid": 3, "uds_path": a.work.join(format!("{tag}.vsock"))},
        "entropy": {},
    });
    let p = a.work.join(format!("{tag}.json"));
    std::fs::write(&p, serde_json::to_vec(&cfg).unwrap()).unwrap();
    p
}

/// Spawns, waits for exit; returns wall seconds, or None on failure.
fn time_to_exit(mut cmd: Command, deadline: Duration) -> Option<f64> {
    let start = Instant::now();
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let st = wait_with_deadline(cmd, deadline)?;
    st.success().then(|| start.elapsed().as_secs_f64())
}

/// Spawns `cmd` (stdin closed) and waits for it; past `deadline` kills it
/// and returns None.
fn wait_with_deadline(mut cmd: Command, deadline: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    let mut child = cmd.stdin(Stdio::null()).spawn().ok()?;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            reap_or_abandon(&mut child);
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits up to 10 s for a killed child: a VMM stuck in the kernel must not
/// hang the whole benchmark (the round is recorded as a failure).
fn reap_or_abandon(child: &mut std::process::Child) {
    for _ in 0..1000 {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "bench: pid {} did not exit after SIGKILL; abandoned",
        child.id()
    );
}

/// `pyro run` with a deadline: stdout and stderr, or None when it hung.
fn run_with_deadline(mut cmd: Command, deadline: Duration) -> Option<(Vec<u8>, Vec<u8>)> {
    let dir = std::env::temp_dir();
    let (out_p, err_p) = (
        dir.join("pyro-bench-run.out"),
        dir.join("pyro-bench-run.err"),
    );
    cmd.stdout(std::fs::File::create(&out_p).ok()?)
        .stderr(std::fs::File::create(&err_p).ok()?);
    wait_with_deadline(cmd, deadline)?;
    Some((std::fs::read(out_p).ok()?, std::fs::read(err_p).ok()?))
}

fn main() {
    let a = args();
    std::fs::create_dir_all(&a.work).unwrap();
    let deadline = Duration::from_secs(120);
    let (mut fc_boot, mut pyro_boot, mut run_e2e, mut run_ready) = (vec![], vec![], vec![], vec![]);
    let mut failures = Vec::new();
    for i in 0..a.runs {
        // Interleave the VMMs so drift in the host affects both alike.
        let s = fresh_scratch(&a, "fc.scratch");
        let _ = std::fs::remove_file(a.work.join("fc.vsock"));
        let mut fc = Command::new(&a.firecracker);
        fc.args(["--no-api", "--level", "Error", "--config-file"])
            .arg(fc_config(&a, &s, "fc"));
        match time_to_exit(fc, deadline) {
            Some(t) => fc_boot.push(t),
            None => failures.push(format!("firecracker boot {i}")),
        }
        let s = fresh_scratch(&a, "pyro.scratch");
        let mut vmm = Command::new(&a.pyro);
        vmm.arg("vmm")
            .arg("--config")
            .arg(pyro_vm_config(&a, &s, "pyro", true));
        match time_to_exit(vmm, deadline) {
            Some(t) => pyro_boot.push(t),
            None => failures.push(format!("pyro vmm boot {i}")),
        }
        let start = Instant::now();
        let mut run = Command::new(&a.pyro);
        run.args(["run", &a.environment, "--json", "--", "true"]);
        let Some((stdout, stderr)) = run_with_deadline(run, deadline) else {
            failures.push(format!("pyro run {i}: no answer within {deadline:?}"));
            continue;
        };
        let e2e = start.elapsed().as_secs_f64();
        match serde_json::from_slice::<Value>(&stdout) {
            Ok(v) if v["exit_code"] == 0 => {
                run_e2e.push(e2e);
                let t = &v["timings"];
                run_ready.push(
                    (t["create_ms"].as_f64().unwrap() + t["boot_ms"].as_f64().unwrap()) / 1000.0,
                );
            }
            // With --json an error is a JSON object on stdout; keep both.
            _ => failures.push(format!(
                "pyro run {i}: {} {}",
                String::from_utf8_lossy(&stdout).trim(),
                String::from_utf8_lossy(&stderr).trim()
            )),
        }
        eprintln!("bench: round {}/{} done", i + 1, a.runs);
    }
    let rss = measure_rss(&a);
    let fc_med = median(&mut fc_boot);
    let out = json!({
        "runs": a.runs,
        "environment": a.environment,
        "mem_mib": MEM_MIB,
        "firecracker_boot_poweroff_s": fc_med,
        "pyro_vmm_boot_poweroff_s": median(&mut pyro_boot),
        "pyro_run_true_e2e_s": median(&mut run_e2e),
        "pyro_start_to_ready_s": median(&mut run_ready),
        "rss_overhead_kib": rss,
        "failures": failures,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}

/// Boots each VMM to an idle guest and samples its non-guest RSS.
fn measure_rss(a: &Args) -> Value {
    let s = fresh_scratch(a, "rss-pyro.scratch");
    let mut pyro = Command::new(&a.pyro)
        .arg("vmm")
        .arg("--config")
        .arg(pyro_vm_config(a, &s, "rss-pyro", false))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(20));
    let pyro_rss = overhead_rss_kib(pyro.id());
    let _ = pyro.kill();
    reap_or_abandon(&mut pyro);
    let s = fresh_scratch(a, "rss-fc.scratch");
    let _ = std::fs::remove_file(a.work.join("rss-fc.vsock"));
    // Without PYRO_POWEROFF the guest stays up; same idle point as pyro.
    let cfg = fc_config(a, &s, "rss-fc");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(" PYRO_POWEROFF=1", "");
    std::fs::write(&cfg, text).unwrap();
    let mut fc = Command::new(&a.firecracker)
        .args(["--no-api", "--level", "Error", "--config-file"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(20));
    let fc_rss = overhead_rss_kib(fc.id());
    let _ = fc.kill();
    reap_or_abandon(&mut fc);
    json!({"pyro": pyro_rss, "firecracker": fc_rss})
}
