//! Golden files pinning what the workspace tools return and show, on the
//! host, without a VM: the shape (field names and JSON types) of every
//! tool's `structuredContent`, the MCP text content, and the CLI's human
//! output of every `pyro workspace` command that works on an existing
//! workspace.
//!
//! The workspaces are fabricated: a record in `$PYRO_HOME`, a disk file
//! this test holds locked as a running VMM would (so the engine takes the
//! VM for running), and a fake agent on the workspace's `vsock.sock` that
//! answers the hybrid-vsock handshake and then serves each request with
//! the guest agent's own code (`pyro_guest::ops`, `pyro_guest::exec`) on a
//! temporary directory standing in for `/workspace`. The engine under test
//! is the real `pyro` binary (`pyro mcp serve`, `pyro workspace ...`).
//!
//! Creating and resetting boot VMs, so they are left to the VM tests
//! (tests/workspace.rs), which assert their JSON.
//!
//! Values that change from run to run (timestamps, the temporary paths,
//! durations the engine measures, allocated disk bytes) are normalized
//! before comparing. When a change is intended, regenerate the files with
//! `PYRO_BLESS=1 cargo test --test workspace_golden` and review the diff.

mod support;

use pyro_proto::{read_frame, write_frame, Request, Response};
use serde_json::{json, Value};
use sha2::Digest;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use support::golden::{self, normalize, shape, transcript};
use support::mcp::{serve_in, Mcp};
use support::vm::lock_like_a_vmm;
use support::{now, pyro, pyro_cmd, write_file, TempDir};

/// The running workspace every command works on.
const ID: &str = "badc0ffee001";
/// A workspace whose metadata is damaged beyond repair (listed as such).
const DAMAGED_ID: &str = "badc0ffee002";
/// A workspace the reaper stopped for inactivity.
const EXPIRED_ID: &str = "badc0ffee003";
/// A stopped workspace whose record was restored from its backup.
const RECOVERED_ID: &str = "badc0ffee004";
/// What the fake agent reports as every command's duration.
const EXEC_MS: u64 = 42;
/// 2026-12-01 00:00 UTC: the fabricated records' creation time.
const T0: f64 = 1_795_996_800.0;

const PATCH: &str = "--- a/src/app.py\n+++ b/src/app.py\n@@ -1 +1 @@\n-print(1)\n+print(2)\n";

// ---- the fabricated workspaces and the fake agent --------------------------

/// One test directory: `$PYRO_HOME`, the guest's `/workspace`, and host
/// directories for sync and export.
struct Rig {
    root: TempDir,
    /// The disk lock standing in for a running VMM.
    vmm: Option<File>,
    stop: Arc<AtomicBool>,
    /// The agent's listening socket (its file goes with a deleted workspace).
    listener: UnixListener,
    agent: Option<std::thread::JoinHandle<()>>,
}

/// Writes a state file as pyro does: readable by its owner only.
fn write_private(p: &Path, body: &[u8]) {
    write_file(p, body);
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn record(id: &str, state: &str, now: f64) -> Value {
    json!({
        "layout_version": 1,
        "workspace_id": id,
        "name": null,
        "labels": {},
        "environment": "debian:12",
        "environment_version": "1.0.0",
        "vcpu_count": 1,
        "mem_mib": 1024,
        "ttl_seconds": 600,
        "created_at": T0,
        "expires_at": now + 600.0,
        "state": state,
        "vmm_pid": null,
        "last_error": null,
        "workspace_seed": {
            "mode": "directory",
            "seed_path": "/src/project",
            "destination": "/workspace",
            "entry_count": 3,
            "bytes_written": 15,
        },
        "reset_count": 0,
        "last_reset_at": null,
        "restart_count": 0,
        "last_activity_at": now,
        "created_disk_bytes": 0,
        "retention_seconds": 604800,
    })
}

impl Rig {
    fn new(tag: &str) -> Rig {
        let root = TempDir::new(&format!("golden-ws-{tag}"));
        let home = root.join("home");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        let now = now();

        // The seeded tree, in the guest and as the baseline.
        let ws = root.join("ws");
        let files: [(&str, &[u8]); 2] = [("README.md", b"hello\n"), ("src/app.py", b"print(1)\n")];
        let mut manifest = vec![json!({"path": "src", "artifact_type": "directory",
                                       "size_bytes": 0, "mode": 0o755})];
        let mut tar = tar::Builder::new(Vec::new());
        for (path, body) in files {
            write_file(&ws.join(path), body);
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut h, path, body).unwrap();
            let hash: String = sha2::Sha256::digest(body)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            manifest.push(json!({"path": path, "artifact_type": "file",
                                 "size_bytes": body.len(), "mode": 0o644, "sha256": hash}));
        }
        let dir = home.join("workspaces").join(ID);
        write_private(&dir.join("baseline.tar"), &tar.into_inner().unwrap());
        write_private(
            &dir.join("baseline.json"),
            serde_json::to_string(&manifest).unwrap().as_bytes(),
        );
        write_private(
            &dir.join("workspace.json"),
            serde_json::to_string_pretty(&record(ID, "started", now))
                .unwrap()
                .as_bytes(),
        );
        // The "VMM": the disk held locked as `vmm::disk_lock` does.
        let disk = dir.join("vm/scratch.ext4");
        write_private(&disk, b"");
        let vmm = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&disk)
            .unwrap();
        lock_like_a_vmm(&vmm);

        // An expired workspace, and one whose metadata cannot be read.
        let mut expired = record(EXPIRED_ID, "expired", T0 + 60.0);
        expired["name"] = json!("old");
        expired["labels"] = json!({"issue": "7"});
        expired["expired_at"] = json!(T0 + 700.0);
        expired["retention_seconds"] = json!(365 * 24 * 3600);
        let edir = home.join("workspaces").join(EXPIRED_ID);
        write_private(
            &edir.join("workspace.json"),
            serde_json::to_string_pretty(&expired).unwrap().as_bytes(),
        );
        std::fs::create_dir_all(edir.join("vm")).unwrap();
        write_private(
            &home
                .join("workspaces")
                .join(DAMAGED_ID)
                .join("workspace.json"),
            b"{\"layout_version\": 1, \"works",
        );
        let rdir = home.join("workspaces").join(RECOVERED_ID);
        let mut recovered = record(RECOVERED_ID, "stopped", now);
        recovered["created_at"] = json!(T0 + 1.0);
        write_private(&rdir.join("workspace.json"), b"");
        write_private(
            &rdir.join("workspace.json.bak"),
            serde_json::to_string_pretty(&recovered).unwrap().as_bytes(),
        );

        // Host directories: a tree to sync in, a place to export to.
        write_file(&root.join("host/sync/docs/guide.txt"), "read me\n");
        std::fs::create_dir_all(root.join("host/out")).unwrap();

        // The agent serves this rig's /workspace (read by pyro_guest::ops
        // on every request; the phases of the test run one after another).
        std::env::set_var("PYRO_WORKSPACE_ROOT", &ws);
        let listener = UnixListener::bind(dir.join("vm/vsock.sock")).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let listening = listener.try_clone().unwrap();
        let agent = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                };
                let ws = ws.clone();
                std::thread::spawn(move || {
                    if let Err(e) = serve(conn, &ws) {
                        eprintln!("fake agent: {e}");
                    }
                });
            }
        });
        Rig {
            root,
            vmm: Some(vmm),
            stop,
            listener: listening,
            agent: Some(agent),
        }
    }

    fn home(&self) -> PathBuf {
        self.root.join("home")
    }

    fn host(&self, p: &str) -> String {
        self.root.join("host").join(p).to_str().unwrap().to_string()
    }

    /// The VMM "exits": its disk lock goes (before a delete, which would
    /// otherwise stop the process holding it: this one).
    fn stop_vmm(&mut self) {
        self.vmm = None;
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the agent's accept (with an error) even when the socket's
        // file is gone.
        // SAFETY: shutdown(2) on a descriptor this rig owns.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(t) = self.agent.take() {
            let _ = t.join();
        }
    }
}

/// One connection of the fake agent: the handshake the VMM's hybrid
/// vsock speaks, one request, its answer.
fn serve(mut s: UnixStream, ws: &Path) -> io::Result<()> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < 64 && !line.ends_with(b"\n") {
        if s.read(&mut b)? == 0 {
            return Ok(());
        }
        line.push(b[0]);
    }
    if line != b"CONNECT 52\n" {
        return Err(io::Error::other(format!("bad handshake {line:?}")));
    }
    s.write_all(b"OK 1\n")?;
    let Some(req) = read_frame::<_, Request>(&mut s)? else {
        return Ok(());
    };
    if let Some(done) = pyro_guest::ops::serve(&req, &mut s) {
        return done;
    }
    let resp = match req {
        Request::Exec(mut e) => {
            // The guest's /workspace is the rig's directory here.
            e.cwd = Some(ws.to_str().unwrap().to_string());
            let mut r = pyro_guest::exec::run_for(&e, Some(s.as_raw_fd()))?;
            r.duration_ms = EXEC_MS;
            Response::Exec(r)
        }
        other => Response::Error {
            kind: pyro_proto::ErrorKind::Invalid,
            message: format!("the fake agent does not serve {other:?}"),
        },
    };
    write_frame(&mut s, &resp)
}

// ---- the MCP server ----------------------------------------------------------

/// The shape of a structured result as the golden files list it: one
/// indented `name: type` line per field (see [`shape`]).
fn indented_shape(v: &Value) -> String {
    let lines: Vec<String> = shape(v).iter().map(|l| format!("  {l}")).collect();
    lines.join("\n")
}

#[test]
fn workspace_tools_and_commands_match_their_golden_files() {
    // The MCP tools.
    let mut rig = Rig::new("mcp");
    let host = rig.root.join("host");
    let mut mcp = Mcp::spawn(&mut serve_in(
        pyro(),
        &host,
        &rig.home(),
        &["--allow-path", &rig.host("")],
    ));
    mcp.initialize();
    let id = json!(ID);
    let calls: Vec<(&str, Value)> = vec![
        ("workspace_list", json!({})),
        ("workspace_status", json!({"workspace_id": id})),
        ("workspace_status", json!({"workspace_id": EXPIRED_ID})),
        ("workspace_status", json!({"workspace_id": RECOVERED_ID})),
        (
            "workspace_update",
            json!({"workspace_id": id, "name": "golden", "labels": {"issue": "11"}}),
        ),
        (
            "workspace_exec",
            json!({"workspace_id": id, "command": "echo out; echo err >&2; exit 3"}),
        ),
        (
            "workspace_exec",
            json!({"workspace_id": id, "command": "printf 'no newline'"}),
        ),
        ("workspace_logs", json!({"workspace_id": id})),
        ("workspace_status", json!({"workspace_id": id})),
        (
            "workspace_file_list",
            json!({"workspace_id": id, "path": "/workspace", "recursive": true}),
        ),
        (
            "workspace_file_read",
            json!({"workspace_id": id, "path": "README.md"}),
        ),
        (
            "workspace_file_read",
            json!({"workspace_id": id, "path": "src/app.py", "max_bytes": 3}),
        ),
        (
            "workspace_file_write",
            json!({"workspace_id": id, "path": "notes/todo.txt", "text": "write tests\n"}),
        ),
        (
            "workspace_patch_apply",
            json!({"workspace_id": id, "patch": PATCH}),
        ),
        (
            "workspace_sync_push",
            json!({"workspace_id": id, "source_path": rig.host("sync"), "dest": "synced"}),
        ),
        (
            "workspace_exec",
            json!({"workspace_id": id, "command": "printf '\\000\\001' > data.bin; ln -s README.md link"}),
        ),
        ("workspace_diff", json!({"workspace_id": id})),
        ("workspace_summary", json!({"workspace_id": id})),
        (
            "workspace_export",
            json!({"workspace_id": id, "path": "src", "output_path": rig.host("out/src")}),
        ),
    ];
    let mut shapes = String::new();
    let mut texts = String::new();
    let mut record = |tool: &str, args: &Value, (structured, text): (Value, String)| {
        shapes.push_str(&format!("{tool}:\n{}\n", indented_shape(&structured)));
        texts.push_str(&format!("==== {tool} {args}\n{text}\n"));
    };
    for (tool, args) in &calls {
        let r = mcp.call_shown(tool, args.clone());
        record(tool, args, r);
    }
    rig.stop_vmm();
    let args = json!({"workspace_id": id});
    let r = mcp.call_shown("workspace_delete", args.clone());
    record("workspace_delete", &args, r);
    let r = mcp.call_shown("workspace_list", json!({}));
    record("workspace_list", &json!({}), r);
    mcp.close();
    golden::check("workspace_tools.shapes.txt", &shapes);
    golden::check("workspace_tools.text.txt", &normalize(&texts, &rig.root));
    drop(rig);

    // The same operations from the terminal, without --json.
    let mut rig = Rig::new("cli");
    let (sync, out) = (rig.host("sync"), rig.host("out/src"));
    let commands: Vec<Vec<&str>> = vec![
        vec!["list"],
        vec!["status", ID],
        vec!["status", EXPIRED_ID],
        vec!["status", RECOVERED_ID],
        vec!["update", ID, "--name", "golden", "--label", "issue=11"],
        vec![
            "exec",
            ID,
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        vec!["exec", ID, "--", "printf", "no newline"],
        vec!["logs", ID],
        vec!["status", ID],
        vec!["file", "list", ID, "--recursive"],
        vec!["file", "read", ID, "README.md"],
        vec!["file", "read", ID, "src/app.py", "--max-bytes", "3"],
        vec![
            "file",
            "write",
            ID,
            "notes/todo.txt",
            "--text",
            "write tests\n",
        ],
        vec!["patch", "apply", ID, "--patch", PATCH],
        vec!["sync", "push", ID, &sync, "--dest", "synced"],
        vec![
            "exec",
            ID,
            "--",
            "sh",
            "-c",
            "printf '\\000\\001' > data.bin; ln -s README.md link",
        ],
        vec!["diff", ID],
        vec!["summary", ID],
        vec!["export", ID, "src", "--output", &out],
    ];
    let mut shown = String::new();
    let home = rig.home();
    let mut run = |argv: &[&str]| {
        let o = pyro_cmd()
            .arg("workspace")
            .args(argv)
            .env("PYRO_HOME", &home)
            .output()
            .unwrap();
        shown.push_str(&transcript(
            &format!("pyro workspace {}", argv.join(" ")),
            &o,
        ));
    };
    for argv in &commands {
        run(argv);
    }
    rig.stop_vmm();
    run(&["delete", ID]);
    run(&["list"]);
    golden::check("workspace_cli.txt", &normalize(&shown, &rig.root));
}

/// `vm_run` and `pyro run` where no guest can boot and the operator
/// allowed host execution: the same result object, rendered by each front
/// end. On a host that can boot guests there is nothing to compare (a run
/// would need an installed environment), so the test says so and passes.
#[test]
fn one_shot_runs_on_the_host_match_their_golden_file() {
    let root = TempDir::new("golden-run");
    let run = |args: &[&str]| {
        pyro_cmd()
            .args(args)
            .current_dir(&root)
            .env("PYRO_HOME", root.join("home"))
            .output()
            .unwrap()
    };
    let probe = run(&[
        "run",
        "--allow-host-compat",
        "--json",
        "debian:12",
        "--",
        "true",
    ]);
    let v: Value = serde_json::from_slice(&probe.stdout).unwrap_or_default();
    if v["execution_mode"] != "host_compat" {
        eprintln!("this host can boot guests: no host-compat run to compare");
        return;
    }
    // The reason no guest boots is the host's; the rest is pinned.
    let strip_reason = |s: &str| -> String {
        s.lines()
            .map(
                |l| match (l.find("NOT ISOLATED: "), l.find("; running the command")) {
                    (Some(a), Some(b)) if a < b => format!("{}<why>{}\n", &l[..a + 14], &l[b..]),
                    _ => format!("{l}\n"),
                },
            )
            .collect()
    };
    let mut shown = String::new();
    for argv in [
        vec![
            "run",
            "--allow-host-compat",
            "debian:12",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        vec![
            "run",
            "--allow-host-compat",
            "debian:12",
            "--",
            "printf",
            "no newline",
        ],
    ] {
        let mut o: Output = run(&argv);
        o.stderr = strip_reason(&String::from_utf8_lossy(&o.stderr)).into_bytes();
        shown.push_str(&transcript(&format!("pyro {}", argv.join(" ")), &o));
    }
    let mut mcp = Mcp::spawn(&mut serve_in(
        pyro(),
        &root,
        &root.join("home"),
        &["--allow-host-compat"],
    ));
    mcp.initialize();
    let args = json!({"environment": "debian:12", "command": "echo out; echo err >&2; exit 3",
                      "allow_host_compat": true});
    let (structured, text) = mcp.call_shown("vm_run", args.clone());
    mcp.close();
    shown.push_str(&format!(
        "==== vm_run {args}\n{text}\n==== vm_run structuredContent\n{}\n",
        indented_shape(&structured)
    ));
    golden::check("run_host_compat.txt", &normalize(&shown, &root));
}
