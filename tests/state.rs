//! pyro's host state through the real binary, without booting a VM:
//! who may own the state directory, that new state is private, that
//! `doctor` writes nothing, how inactivity expiry and retention treat
//! workspaces (clock jumps included), what happens to damaged metadata,
//! and the reaping of killed one-shot runs. Workspaces here are written
//! by hand the way pyro lays them out; VM-backed behaviour is in
//! tests/workspace.rs.

mod support;

use serde_json::{json, Value};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use support::{json_stdout, mode, now, pyro_cmd, workspace_args, TempDir};

const DAY: f64 = 24.0 * 3600.0;

/// A fresh, private PYRO_HOME (removed when dropped).
struct Home(TempDir);

impl Home {
    fn new(tag: &str) -> Home {
        let p = TempDir::new(&format!("state-{tag}"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
        Home(p)
    }

    fn ws_dir(&self, id: &str) -> PathBuf {
        self.0.join("workspaces").join(id)
    }

    /// `pyro ARGS` with this PYRO_HOME: (exit code, stdout as JSON).
    fn pyro(&self, args: &[&str]) -> (i32, Value) {
        let out = pyro_in(&self.0, args);
        let v = json_stdout(&out, &args);
        (out.status.code().unwrap_or(-1), v)
    }

    /// `pyro workspace ARGS --json`, which must succeed.
    fn ok(&self, args: &[&str]) -> Value {
        let (code, v) = self.pyro(&workspace_args(args));
        assert_eq!(code, 0, "{args:?}: {v}");
        v
    }

    /// `pyro workspace ARGS --json`, which must fail; its error.
    fn fails(&self, args: &[&str]) -> String {
        let (code, v) = self.pyro(&workspace_args(args));
        assert_ne!(code, 0, "{args:?} should fail: {v}");
        v["error"].as_str().unwrap().to_string()
    }

    /// Writes a workspace the way pyro lays one out: its record (`None`:
    /// no workspace.json at all) and a writable disk holding "data".
    fn workspace(&self, id: &str, record: Option<&Value>) -> PathBuf {
        let d = self.ws_dir(id);
        std::fs::create_dir_all(d.join("vm")).unwrap();
        std::fs::write(d.join("vm/scratch.ext4"), b"the user's files").unwrap();
        if let Some(r) = record {
            std::fs::write(d.join("workspace.json"), serde_json::to_vec(r).unwrap()).unwrap();
        }
        d
    }

    /// The entry of workspace `id` in `workspace list`, if any.
    fn listed(&self, id: &str) -> (Option<Value>, Value) {
        let l = self.ok(&["list"]);
        let item = l["workspaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["workspace_id"] == id)
            .cloned();
        (item, l)
    }
}

fn pyro_in(home: &Path, args: &[&str]) -> std::process::Output {
    pyro_cmd()
        .args(args)
        .env("PYRO_HOME", home)
        .env_remove("PYRO_WORKSPACE_RETENTION_SECONDS")
        .output()
        .expect("spawn pyro")
}

/// This boot's id and CLOCK_BOOTTIME (what /proc/uptime shows).
fn boot() -> (String, f64) {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let up = std::fs::read_to_string("/proc/uptime").unwrap();
    let up: f64 = up.split_whitespace().next().unwrap().parse().unwrap();
    (id.trim().to_string(), up)
}

/// A record as pyro writes it.
fn record(id: &str, state: &str, last_activity_at: f64, ttl: u64) -> Value {
    json!({
        "layout_version": 1,
        "workspace_id": id,
        "name": format!("ws-{id}"),
        "labels": {"issue": "10"},
        "environment": "debian:12",
        "environment_version": "1.0.0",
        "vcpu_count": 1,
        "mem_mib": 1024,
        "ttl_seconds": ttl,
        "created_at": last_activity_at - 30.0 * DAY,
        "expires_at": last_activity_at + ttl as f64,
        "state": state,
        "vmm_pid": null,
        "workspace_seed": {"mode": "empty"},
        "last_activity_at": last_activity_at,
    })
}

#[test]
fn doctor_creates_nothing_not_even_the_state_directory() {
    let parent = Home::new("doctor");
    let home = parent.0.join("never-created");
    let out = pyro_in(&home, &["doctor", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!home.exists(), "doctor created {}", home.display());
    assert_eq!(std::fs::read_dir(&parent.0).unwrap().count(), 0);
    let check = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "state_dir")
        .unwrap()
        .clone();
    assert_eq!(check["ok"], true, "{check}");
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("does not exist yet"),
        "{check}"
    );
    // An existing one that others may write fails the check, still
    // without being touched.
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = pyro_in(&home, &["doctor", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ready"], false);
    assert_eq!(mode(&home), 0o777);
    assert_eq!(std::fs::read_dir(&home).unwrap().count(), 0);
}

#[test]
fn a_state_directory_other_users_can_write_is_refused_naming_the_fix() {
    let home = Home::new("shared");
    let id = "0123456789ab";
    home.workspace(id, Some(&record(id, "stopped", now(), 600)));
    for m in [0o777, 0o775, 0o1777] {
        std::fs::set_permissions(&home.0, std::fs::Permissions::from_mode(m)).unwrap();
        for args in [&["list"][..], &["status", id], &["delete", id]] {
            let e = home.fails(args);
            assert!(
                e.contains(&format!("chmod 700 {}", home.0.display())) && e.contains("PYRO_HOME"),
                "{args:?}: {e}"
            );
        }
        let (code, v) = home.pyro(&["run", "debian:12", "--json", "--", "true"]);
        assert_ne!(code, 0);
        // Refused before anything is touched: the workspace is still there.
        assert!(home.ws_dir(id).join("vm/scratch.ext4").exists(), "{v}");
    }
    std::fs::set_permissions(&home.0, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(home.ok(&["status", id])["workspace_id"], id);
}

#[test]
fn new_state_directories_and_files_are_private() {
    let parent = Home::new("private");
    let home = parent.0.join("home");
    // An environment import creates the state directory and its store.
    let img = parent.0.join("image");
    std::fs::create_dir_all(&img).unwrap();
    for f in ["rootfs.ext4", "scratch.ext4"] {
        std::fs::write(img.join(f), b"image").unwrap();
    }
    std::fs::write(img.join("environment.json"), b"{}").unwrap();
    std::fs::write(parent.0.join("vmlinux"), b"kernel").unwrap();
    let out = pyro_cmd()
        .args(["env", "import", "debian:12", "--json", "--image-dir"])
        .arg(&img)
        .arg("--kernel")
        .arg(parent.0.join("vmlinux"))
        .env("PYRO_HOME", &home)
        .env("XDG_DATA_HOME", parent.0.join("unused"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&home), 0o700);
    assert_eq!(mode(&home.join("environments")), 0o700);
    for f in ["rootfs.ext4", "scratch.ext4", "vmlinux"] {
        assert_eq!(
            mode(&home.join("environments/debian-12").join(f)),
            0o600,
            "{f}"
        );
    }
}

#[test]
fn the_ttl_counts_from_the_last_activity_and_expiry_keeps_the_disk() {
    let home = Home::new("ttl");
    let busy = "aaaaaaaaaaa1";
    let idle = "aaaaaaaaaaa2";
    // Created a month ago, active ten seconds ago: kept running.
    home.workspace(busy, Some(&record(busy, "stopped", now() - 10.0, 600)));
    // Idle for longer than its TTL: stopped, disk and everything kept.
    let d = home.workspace(idle, Some(&record(idle, "started", now() - 601.0, 600)));
    // Its record last saved long ago, its latest operation stamped (the
    // `activity` file's mtime) ten seconds ago: kept.
    let stamped = "aaaaaaaaaaa3";
    let d3 = home.workspace(
        stamped,
        Some(&record(stamped, "stopped", now() - 5000.0, 600)),
    );
    std::fs::File::create(d3.join("activity"))
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(10))
        .unwrap();
    let (item, l) = home.listed(busy);
    assert_eq!(item.unwrap()["state"], "stopped", "{l}");
    assert_eq!(l["expired_stopped"], json!([idle]), "{l}");
    let (item, _) = home.listed(stamped);
    let item = item.unwrap();
    assert_eq!(item["state"], "stopped", "{item}");
    assert!(
        item["last_activity_at"].as_f64().unwrap() > now() - 60.0,
        "{item}"
    );
    assert_eq!(l["expired_deleted"], json!([]), "{l}");
    let (item, l) = home.listed(idle);
    let item = item.unwrap();
    assert_eq!(item["state"], "expired", "{l}");
    assert_eq!(l["expired_stopped"], json!([]), "{l}");
    assert_eq!(item["retention_seconds"], 7 * 24 * 3600, "{item}");
    let expired_at = item["expired_at"].as_f64().unwrap();
    assert_eq!(
        item["delete_after"].as_f64().unwrap(),
        expired_at + 7.0 * DAY
    );
    assert_eq!(
        std::fs::read(d.join("vm/scratch.ext4")).unwrap(),
        b"the user's files"
    );
    let st = home.ok(&["status", idle]);
    assert_eq!(st["state"], "expired");
    assert!(
        st["last_error"]
            .as_str()
            .unwrap()
            .contains("any operation boots it again"),
        "{st}"
    );
    // Looking does not end the expiry; a second pass keeps it all.
    let (item, l) = home.listed(idle);
    assert_eq!(item.unwrap()["state"], "expired");
    assert_eq!(l["expired_deleted"], json!([]));
    // Any operation does end it (update needs no VM).
    let v = home.ok(&["update", idle, "--label", "k=v"]);
    assert_eq!(v["state"], "stopped", "{v}");
    assert!(
        v["expired_at"].is_null() && v["delete_after"].is_null(),
        "{v}"
    );
    assert!(v["last_activity_at"].as_f64().unwrap() > now() - 60.0);
    assert_eq!(
        v["expires_at"].as_f64().unwrap(),
        v["last_activity_at"].as_f64().unwrap() + 600.0
    );
}

#[test]
fn a_forward_clock_jump_deletes_nothing() {
    let home = Home::new("jump");
    let (boot_id, up) = boot();
    // As if the wall clock had jumped twenty years ahead: expired for
    // twenty years by the wall clock, for a few seconds by what the reaper
    // measured, with and without evidence of earlier passes.
    let mut ids = Vec::new();
    for (n, evidence) in [
        json!(null),
        json!({"boot_id": boot_id, "boottime": up - 5.0, "elapsed_seconds": 0.0}),
        json!({"boot_id": "another boot", "boottime": up + 1e6, "elapsed_seconds": 10.0}),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("bbbbbbbbbbb{n}");
        let mut r = record(&id, "expired", now() - 20.0 * 365.0 * DAY, 600);
        r["expired_at"] = json!(now() - 20.0 * 365.0 * DAY + 600.0);
        r["retention_seconds"] = json!(3600);
        r["expiry_evidence"] = evidence;
        home.workspace(&id, Some(&r));
        ids.push(id);
    }
    for _ in 0..3 {
        let l = home.ok(&["list"]);
        assert_eq!(l["expired_deleted"], json!([]), "{l}");
    }
    for id in &ids {
        assert!(home.ws_dir(id).join("vm/scratch.ext4").exists(), "{id}");
        let st = home.ok(&["status", id]);
        assert_eq!(st["state"], "expired", "{st}");
    }
    // The other boot's evidence is kept, the time between boots is not added.
    let r: Value = serde_json::from_slice(
        &std::fs::read(home.ws_dir(&ids[2]).join("workspace.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(r["expiry_evidence"]["boot_id"], boot_id, "{r}");
    assert!(
        r["expiry_evidence"]["elapsed_seconds"].as_f64().unwrap() < 60.0,
        "{r}"
    );
}

#[test]
fn retention_deletes_once_both_clocks_agree() {
    let home = Home::new("retention");
    let (boot_id, up) = boot();
    let id = "cccccccccccc";
    let mut r = record(id, "expired", now() - 2.0 * 3600.0, 600);
    r["expired_at"] = json!(now() - 3600.0);
    r["retention_seconds"] = json!(600);
    // The reaper saw it expired 700 s of uptime ago.
    r["expiry_evidence"] =
        json!({"boot_id": boot_id, "boottime": up - 700.0, "elapsed_seconds": 0.0});
    home.workspace(id, Some(&r));
    let l = home.ok(&["list"]);
    assert_eq!(l["expired_deleted"], json!([id]), "{l}");
    assert!(!home.ws_dir(id).exists());
    let e = home.fails(&["status", id]);
    assert!(e.contains("does not exist"), "{e}");
}

#[test]
fn a_torn_record_is_restored_from_its_backup() {
    let home = Home::new("torn");
    let id = "dddddddddddd";
    let good = record(id, "stopped", now(), 600);
    let d = home.workspace(id, None);
    std::fs::write(
        d.join("workspace.json.bak"),
        serde_json::to_vec(&good).unwrap(),
    )
    .unwrap();
    // What a power loss before the fix could leave: an empty file, or the
    // first bytes of one.
    for torn in [&b""[..], &serde_json::to_vec(&good).unwrap()[..40]] {
        std::fs::write(d.join("workspace.json"), torn).unwrap();
        let (item, l) = home.listed(id);
        let item = item.unwrap_or_else(|| panic!("hidden from list: {l}"));
        assert_eq!(item["name"], format!("ws-{id}"), "{item}");
        assert_eq!(item["state"], "stopped", "{item}");
        let st = home.ok(&["status", id]);
        let how = st["metadata_recovered"].as_str().unwrap();
        assert!(
            how.contains("workspace.json.bak") && how.contains("damaged"),
            "{st}"
        );
        assert!(!how.contains("delete"), "{how}");
        assert_eq!(st["labels"]["issue"], "10");
    }
    // The next save writes it back; the backup stays the good record.
    home.ok(&["update", id, "--label", "fixed=yes"]);
    let back: Value =
        serde_json::from_slice(&std::fs::read(d.join("workspace.json")).unwrap()).unwrap();
    assert_eq!(back["labels"]["fixed"], "yes");
    let st = home.ok(&["status", id]);
    assert!(st["metadata_recovered"].is_null(), "{st}");
    assert_eq!(mode(&d.join("workspace.json")), 0o600);
    // Each save keeps the one before as the backup.
    home.ok(&["update", id, "--label", "again=yes"]);
    let bak: Value =
        serde_json::from_slice(&std::fs::read(d.join("workspace.json.bak")).unwrap()).unwrap();
    assert_eq!(bak["labels"]["fixed"], "yes");
    assert!(bak["labels"].get("again").is_none());
}

#[test]
fn a_record_without_backup_is_rebuilt_from_the_vm_config() {
    let home = Home::new("rebuild");
    let id = "eeeeeeeeeeee";
    let d = home.workspace(id, None);
    std::fs::write(d.join("workspace.json"), b"{\"layout_version\": 1, \"works").unwrap();
    let kernel = home.0.join("environments/debian-12-build/vmlinux");
    std::fs::write(
        d.join("vm/vm.json"),
        serde_json::to_vec(&json!({
            "kernel": kernel, "cmdline": "console=ttyS0", "vcpus": 2, "mem_mib": 2048,
            "disks": [], "serial_log": d.join("vm/serial.log"),
        }))
        .unwrap(),
    )
    .unwrap();
    let (item, l) = home.listed(id);
    let item = item.unwrap_or_else(|| panic!("hidden from list: {l}"));
    assert_eq!(item["environment"], "debian:12-build", "{item}");
    assert_eq!(item["state"], "stopped", "{item}");
    let st = home.ok(&["status", id]);
    assert_eq!(st["vcpu_count"], 2);
    assert_eq!(st["mem_mib"], 2048);
    assert!(
        st["metadata_recovered"]
            .as_str()
            .unwrap()
            .contains("rebuilt from vm/vm.json"),
        "{st}"
    );
}

#[test]
fn a_record_beyond_repair_is_listed_as_damaged_and_can_still_be_deleted() {
    let home = Home::new("damaged");
    let id = "ffffffffffff";
    let d = home.workspace(id, None);
    std::fs::write(d.join("workspace.json"), b"\0\0\0garbage").unwrap();
    let (item, l) = home.listed(id);
    let item = item.unwrap_or_else(|| panic!("hidden from list: {l}"));
    assert_eq!(item["state"], "damaged", "{item}");
    let why = item["damage"].as_str().unwrap();
    assert!(
        why.contains("workspace.json") && why.contains("cannot be rebuilt"),
        "{why}"
    );
    for args in [&["status", id][..], &["exec", id, "--", "true"]] {
        let e = home.fails(args);
        assert!(
            e.contains("damaged") && e.contains("Nothing was deleted"),
            "{e}"
        );
        assert!(e.contains("scratch.ext4"), "{e}");
        assert!(!e.contains("pyro workspace delete"), "{e}");
    }
    assert!(d.join("vm/scratch.ext4").exists());
    // The reaper leaves it alone; an explicit delete removes it.
    home.ok(&["list"]);
    assert!(d.exists());
    let v = home.ok(&["delete", id]);
    assert_eq!(v["deleted"], true);
    assert!(!d.exists());
}

#[test]
fn leftovers_of_killed_runs_are_reaped_and_live_ones_kept() {
    let home = Home::new("runs");
    let runs = home.0.join("runs");
    let dead = runs.join("0a0a0a0a0a0a");
    let live = runs.join("0b0b0b0b0b0b");
    for d in [&dead, &live] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("scratch.ext4"), b"disk").unwrap();
    }
    // A live run's pyro holds its directory locked.
    let held = std::fs::File::open(&live).unwrap();
    // SAFETY: flock on a descriptor we own; it touches no memory.
    let locked = unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(locked, 0);
    // The next run reaps (whether or not it can boot here).
    let _ = pyro_in(&home.0, &["run", "debian:12", "--json", "--", "true"]);
    assert!(!dead.exists(), "a dead run's directory is removed");
    assert!(live.join("scratch.ext4").exists(), "a live run's is kept");
    drop(held);
}
