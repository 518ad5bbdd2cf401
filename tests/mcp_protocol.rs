//! `pyro mcp serve` as a child process, driven over its real stdio: the
//! protocol edge cases a client can hit, what the operator lets a client
//! reach on the host (host paths confined to the allowed roots, no host
//! execution unless enabled), and (ignored unless run where VMs boot, e.g.
//! `tests/vmhost/run -- <this test binary> --ignored`) cancellation and EOF
//! while a VM is running.

mod support;

use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use support::mcp::{serve, serve_in, Mcp};
use support::vm::{vmm_pids_of, VmGuard};
use support::{pyro, pyro_cmd, pyro_home, TempDir};

/// A server with the vm-run profile, initialized.
fn started() -> Mcp {
    let mut s = Mcp::spawn(&mut serve(pyro(), &["--profile", "vm-run"]));
    let init = s.initialize();
    assert_eq!(init["protocolVersion"], "2025-11-25");
    s
}

#[test]
fn malformed_json_gets_a_parse_error_and_the_server_keeps_serving() {
    let mut s = started();
    s.send_raw(b"{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": \n");
    let e = s.next();
    assert_eq!(e["error"]["code"], -32700);
    assert_eq!(e["id"], Value::Null);
    s.send_raw(b"\xff\xfe not even utf-8\n");
    assert_eq!(s.next()["error"]["code"], -32700);
    s.ping();
    s.close();
}

#[test]
fn invalid_requests_and_unknown_methods_use_their_codes() {
    let mut s = started();
    s.send_message(&json!({"jsonrpc": "2.0", "id": 1, "method": "no/such/method"}));
    assert_eq!(s.reply(1)["error"]["code"], -32601);
    s.send_message(&json!({"jsonrpc": "1.0", "id": 2, "method": "ping"}));
    assert_eq!(s.reply(2)["error"]["code"], -32600);
    s.send_message(&json!({"id": 3, "method": "ping"}));
    assert_eq!(s.reply(3)["error"]["code"], -32600);
    s.send_message(&json!({"jsonrpc": "2.0", "id": 4}));
    assert_eq!(s.reply(4)["error"]["code"], -32600);
    s.send_message(&json!(42));
    assert_eq!(s.next()["error"]["code"], -32600);
    // Unknown notifications are ignored, as JSON-RPC requires.
    s.send_message(&json!({"jsonrpc": "2.0", "method": "notifications/whatever"}));
    s.ping();
    s.close();
}

#[test]
fn wrong_param_types_are_invalid_params_or_tool_errors() {
    let mut s = started();
    // The envelope of tools/call is the protocol's business: -32602.
    s.send_message(
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": 5}}),
    );
    assert_eq!(s.reply(1)["error"]["code"], -32602);
    s.send_message(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "vm_run", "arguments": "echo hi"}}));
    assert_eq!(s.reply(2)["error"]["code"], -32602);
    s.send_message(
        &json!({"jsonrpc": "2.0", "id": 3, "method": "logging/setLevel", "params": {"level": 3}}),
    );
    assert_eq!(s.reply(3)["error"]["code"], -32602);
    s.send_message(&json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list", "params": [1, 2]}));
    assert_eq!(s.reply(4)["error"]["code"], -32602);
    // Arguments are the model's business: a tool error it can act on.
    s.send_message(&json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {"name": "vm_run", "arguments": {"environment": "debian:12",
            "command": "true", "vcpu_count": "two", "timeout_seconds": 0}}}));
    let r = s.reply(5)["result"].clone();
    assert_eq!(r["isError"], true);
    let text = r["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("vcpu_count must be an integer from 1 to 32"),
        "{text}"
    );
    assert!(
        text.contains("timeout_seconds must be an integer from 1 to"),
        "{text}"
    );
    s.close();
}

#[test]
fn oversized_request_is_refused_and_serving_continues() {
    let mut s = started();
    let mut big = br#"{"jsonrpc":"2.0","id":9,"method":"ping","params":{"pad":""#.to_vec();
    big.extend(std::iter::repeat_n(b'a', 9 * 1024 * 1024));
    big.extend(b"\"}}\n");
    s.send_raw(&big);
    let e = s.next();
    assert_eq!(e["error"]["code"], -32600);
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("exceeds the limit"));
    s.ping();
    s.close();
}

#[test]
fn eof_in_the_middle_of_a_message_ends_the_session_cleanly() {
    let mut s = started();
    s.send_raw(br#"{"jsonrpc":"2.0","id":7,"method":"tools/li"#);
    let (code, rest) = s.close_status();
    assert_eq!(code, 0);
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0]["error"]["code"], -32700);
}

#[test]
fn unknown_profile_and_bad_project_flags_exit_2() {
    for args in [
        &["--profile", "everything"][..],
        &["--project-path", "relative/dir"],
        &["--project-path", "/nonexistent/pyro-project"],
        &["--repo-ref", "main"],
        &["--allow-path", "relative/dir"],
        &["--allow-path", "/nonexistent/pyro-allowed"],
        &["--repo-url", "not a url"],
        &[
            "--repo-url",
            "https://example.org/r.git",
            "--project-path",
            "/",
        ],
        &["--bogus"],
    ] {
        let out = pyro_cmd()
            .args(["mcp", "serve"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            out.stdout.is_empty(),
            "{args:?}: nothing but protocol on stdout"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: "), "{args:?}: {err}");
    }
    let out = pyro_cmd()
        .args(["mcp", "serve", "--profile", "everything"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("vm-run, workspace-core, workspace-full"),
        "{err}"
    );
}

#[test]
fn project_source_is_reported_in_initialize() {
    let dir = TempDir::new("mcp-proj");
    std::fs::create_dir_all(dir.join(".git")).unwrap();
    std::fs::write(dir.join(".git/HEAD"), "ref: refs/heads/trunk\n").unwrap();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2024-11-05", "capabilities": {},
                   "clientInfo": {"name": "t", "version": "0"}}});
    let cases: Vec<(Vec<String>, Value)> = vec![
        (
            vec!["--project-path".into(), dir.to_string_lossy().into()],
            json!({"kind": "git_checkout", "origin": "--project-path"}),
        ),
        (
            vec![
                "--repo-url".into(),
                "https://example.org/app.git".into(),
                "--repo-ref".into(),
                "v2".into(),
            ],
            json!({"kind": "repo_url", "url": "https://example.org/app.git", "ref": "v2"}),
        ),
    ];
    for (args, want) in cases {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut s = Mcp::spawn(&mut serve(pyro(), &argv));
        s.send_message(&init);
        let r = s.reply(1)["result"].clone();
        assert_eq!(r["protocolVersion"], "2024-11-05");
        for (k, v) in want.as_object().unwrap() {
            assert_eq!(&r["_meta"]["pyro/project"][k], v, "{k} for {args:?}");
        }
        let text = r["instructions"].as_str().unwrap();
        assert!(text.contains("Project source:"), "{text}");
        let _ = s.close_status();
    }
    // Auto-detection from the working directory.
    let mut child = pyro_cmd()
        .args(["mcp", "serve"])
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{init}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let project = &r["result"]["_meta"]["pyro/project"];
    assert_eq!(project["origin"], "auto-detected");
    assert_eq!(project["head"]["branch"], "trunk");
    assert_eq!(r["result"]["_meta"]["pyro/profile"], "workspace-core");
}

// ---- what the operator lets a client reach on the host --------------------

/// A scratch area: `proj/` (a Git checkout with `.git/hooks`, `src/`, a
/// fifo), `outside/` (a secret), `extra/` (for --allow-path), and a
/// PYRO_HOME beside them holding one workspace record, so calls that name
/// it get as far as their host paths.
struct Scratch {
    base: TempDir,
    proj: PathBuf,
    home: TempDir,
}

/// The id of the workspace record `Scratch` writes (stopped, far from
/// expiry; it has no disk, so anything that gets past the host path checks
/// fails when it tries to boot it).
const WS: &str = "0123456789ab";
/// A well-formed id no workspace has.
const NO_WS: &str = "ba9876543210";

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let base = TempDir::new(&format!("confine-{tag}"));
        let proj = base.join("proj");
        for d in [
            "proj/.git/hooks",
            "proj/src",
            "proj/tree",
            "outside/secrets",
            "extra/data",
        ] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        std::fs::write(proj.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(proj.join("src/a.txt"), "a\n").unwrap();
        std::fs::write(proj.join("tree/f.txt"), "f\n").unwrap();
        std::fs::write(base.join("outside/secrets/id_rsa"), "KEY\n").unwrap();
        std::fs::write(base.join("extra/data/d.txt"), "d\n").unwrap();
        let fifo = std::ffi::CString::new(proj.join("tree/fifo").to_str().unwrap()).unwrap();
        // SAFETY: mkfifo(3) reads a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        std::os::unix::fs::symlink("../outside/secrets", proj.join("keys")).unwrap();
        std::os::unix::fs::symlink(".", proj.join("up")).unwrap();
        std::os::unix::fs::symlink("up/up/../../outside/secrets", proj.join("leak")).unwrap();
        std::os::unix::fs::symlink(".git/hooks", proj.join("hooks")).unwrap();
        let home = TempDir::new(&format!("confine-{tag}-home"));
        let ws = home.join("workspaces").join(WS);
        std::fs::create_dir_all(&ws).unwrap();
        let now = support::now();
        let record = json!({"layout_version": 1, "workspace_id": WS, "environment": "debian:12",
            "vcpu_count": 1, "mem_mib": 1024, "ttl_seconds": 604800, "created_at": now,
            "expires_at": now + 604800.0, "last_activity_at": now, "state": "stopped"});
        std::fs::write(ws.join("workspace.json"), record.to_string()).unwrap();
        Scratch { base, proj, home }
    }

    /// Every path under the scratch area with its kind: what a refused
    /// call must leave exactly as it was.
    fn tree(&self) -> Vec<String> {
        fn walk(d: &Path, base: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                let m = std::fs::symlink_metadata(&p).unwrap();
                let kind = if m.file_type().is_symlink() {
                    "link"
                } else if m.is_dir() {
                    "dir"
                } else {
                    "file"
                };
                out.push(format!(
                    "{kind} {}",
                    p.strip_prefix(base).unwrap().display()
                ));
                if m.is_dir() {
                    walk(&p, base, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.base, &self.base, &mut out);
        out.sort();
        out
    }

    /// A server started in `proj/` with this PYRO_HOME, initialized; its
    /// `initialize` result. Each of these tests makes many failing calls:
    /// what they say is in the replies, not worth a log line each.
    fn serve(&self, args: &[&str]) -> (Mcp, Value) {
        let mut s = Mcp::spawn(&mut serve_in(pyro(), &self.proj, &self.home, args));
        let init = s.initialize();
        (s, init)
    }
}

/// A confinement refusal, as opposed to any later failure.
fn is_confinement(text: &str) -> bool {
    text.contains("host path") || text.contains("outside the host directories")
}

#[test]
fn host_execution_is_refused_unless_the_operator_allowed_it_and_never_suggested() {
    let sc = Scratch::new("compat");
    let (mut s, init) = sc.serve(&["--profile", "workspace-core"]);
    assert_eq!(
        init["_meta"]["pyro/host_access"]["allow_host_compat"],
        false
    );
    let text = init["instructions"].as_str().unwrap();
    assert!(text.contains("allow_host_compat is refused"), "{text}");
    let run = json!({"environment": "debian:12", "command": "touch /tmp/pyro-host-compat-was-here",
                     "allow_host_compat": true});
    let e = s.call_err("vm_run", run.clone());
    assert!(e.contains("never on the host"), "{e}");
    let e2 = s.call_err(
        "workspace_create",
        json!({"environment": "debian:12", "allow_host_compat": true}),
    );
    assert!(e2.contains("never on the host"), "{e2}");
    // Nothing a client reads may point at the switch: not the refusals,
    // not the plain failure (no guest here, or no environment in this
    // PYRO_HOME), not the tool descriptions, not the instructions.
    let (_, plain) = s.call_outcome(
        "vm_run",
        json!({"environment": "debian:12", "command": "true"}),
    );
    s.send_message(&json!({"jsonrpc": "2.0", "id": "list", "method": "tools/list"}));
    let listing = s.reply("list").to_string();
    for t in [&e, &e2, &plain, &listing, &init.to_string()] {
        assert!(!t.contains("--allow-host-compat"), "{t}");
        assert!(!t.contains("allow-host-compat"), "{t}");
    }
    s.close();

    // Enabled by the operator: the argument is honoured (on a host where no
    // guest boots the command runs here; elsewhere the VM path is taken
    // and fails for want of an installed environment), never refused.
    let (mut s, init) = sc.serve(&["--allow-host-compat"]);
    assert_eq!(init["_meta"]["pyro/host_access"]["allow_host_compat"], true);
    assert!(init["instructions"]
        .as_str()
        .unwrap()
        .contains("WITHOUT isolation"));
    let (err, text) = s.call_outcome(
        "vm_run",
        json!({"environment": "debian:12", "command": "echo compat", "allow_host_compat": true}),
    );
    assert!(!text.contains("never on the host"), "{text}");
    if !err {
        assert!(text.contains("compat"), "{text}");
    }
    s.close();
}

#[test]
fn host_paths_outside_the_project_are_refused_and_refusals_touch_nothing() {
    let sc = Scratch::new("outside");
    let before = sc.tree();
    let (mut s, init) = sc.serve(&[]);
    let text = init["instructions"].as_str().unwrap();
    assert!(text.contains(sc.proj.to_str().unwrap()), "{text}");
    assert_eq!(
        init["_meta"]["pyro/host_access"]["allowed_roots"],
        json!([sc.proj])
    );
    let secrets = sc.base.join("outside/secrets");
    let outside_reads = [
        secrets.to_str().unwrap().to_string(),
        "../outside/secrets".into(),
        "src/../../outside/secrets".into(),
        // Through symlinks: plain, and the `up -> .` chain that a lexical
        // check lets through.
        "keys".into(),
        "keys/id_rsa".into(),
        "leak".into(),
        "up/up/../../outside/secrets".into(),
        "/etc".into(),
    ];
    for p in &outside_reads {
        let e = s.call_err(
            "workspace_create",
            json!({"environment": "debian:12", "seed_path": p}),
        );
        assert!(e.contains("outside the host directories"), "{p}: {e}");
        let e = s.call_err(
            "workspace_sync_push",
            json!({"workspace_id": WS, "source_path": p}),
        );
        assert!(e.contains("outside the host directories"), "{p}: {e}");
    }
    let outside_writes = [
        (
            sc.base
                .join("outside/new/out")
                .to_str()
                .unwrap()
                .to_string(),
            "outside the host directories",
        ),
        ("../outside/x".into(), "outside the host directories"),
        (
            "keys/authorized_keys".into(),
            "outside the host directories",
        ),
        (
            "up/up/../../outside/x".into(),
            "outside the host directories",
        ),
        (".git/hooks/pre-commit".into(), "hidden \".git\""),
        ("hooks/pre-commit".into(), "hidden \".git\""),
        (".envrc".into(), "hidden \".envrc\""),
        ("new/.github/workflows/ci.yml".into(), "hidden \".github\""),
        (".".into(), "itself"),
        (sc.proj.to_str().unwrap().to_string(), "itself"),
        (
            "new/../../../outside".into(),
            "'..' after a directory that does not exist",
        ),
    ];
    for (p, want) in &outside_writes {
        let e = s.call_err(
            "workspace_export",
            json!({"workspace_id": WS, "path": "x", "output_path": p, "overwrite": true}),
        );
        assert!(e.contains(want), "{p}: {e}");
    }
    s.close();
    assert_eq!(sc.tree(), before, "a refused call changed the host");
}

#[test]
fn an_unknown_workspace_is_reported_before_anything_on_the_host_is_touched() {
    let sc = Scratch::new("unknown");
    let before = sc.tree();
    let (mut s, _) = sc.serve(&[]);
    // Export: no directory of the destination is made for a missing id.
    let e = s.call_err(
        "workspace_export",
        json!({"workspace_id": NO_WS, "path": "x", "output_path": "made/a/b/out"}),
    );
    assert!(e.contains("does not exist"), "{e}");
    // Sync push: the id comes before the source, so nothing is walked and
    // the answer says nothing about the path (no existence oracle)...
    for src in ["tree", "../outside/secrets", "no/such/dir"] {
        let e = s.call_err(
            "workspace_sync_push",
            json!({"workspace_id": NO_WS, "source_path": src}),
        );
        assert!(
            e.contains(&format!("workspace \"{NO_WS}\" does not exist")),
            "{e}"
        );
        assert!(!e.contains("fifo") && !is_confinement(&e), "{e}");
    }
    // ...while for a workspace that exists the same source is walked (and
    // its fifo refused), so the check above was not vacuous.
    let e = s.call_err(
        "workspace_sync_push",
        json!({"workspace_id": WS, "source_path": "tree"}),
    );
    assert!(e.contains("fifo"), "{e}");
    s.close();
    assert_eq!(sc.tree(), before, "an unknown workspace changed the host");
}

#[test]
fn allow_path_extends_the_roots_and_is_listed_in_the_instructions() {
    let sc = Scratch::new("allow");
    let extra = sc.base.join("extra");
    // Without it, extra/ is outside.
    let (mut s, _) = sc.serve(&[]);
    let e = s.call_err(
        "workspace_export",
        json!({"workspace_id": WS, "path": "x", "output_path": extra.join("out")}),
    );
    assert!(e.contains("outside the host directories"), "{e}");
    s.close();

    let (mut s, init) = sc.serve(&["--allow-path", extra.to_str().unwrap()]);
    let text = init["instructions"].as_str().unwrap();
    assert!(
        text.contains(&format!("{}, {}", sc.proj.display(), extra.display())),
        "{text}"
    );
    assert!(
        text.contains("Relative host paths resolve against"),
        "{text}"
    );
    assert_eq!(
        init["_meta"]["pyro/host_access"]["allowed_roots"],
        json!([sc.proj, extra])
    );
    // Accepted now: these calls get past the host path checks and fail only
    // later, booting the record's VM (it has no disk) or for want of a VM.
    for (tool, args) in [
        (
            "workspace_export",
            json!({"workspace_id": WS, "path": "x", "output_path": extra.join("new/out")}),
        ),
        (
            "workspace_export",
            json!({"workspace_id": WS, "path": "x", "output_path": "src/b.txt"}),
        ),
        (
            "workspace_sync_push",
            json!({"workspace_id": WS, "source_path": extra.join("data")}),
        ),
        (
            "workspace_create",
            json!({"environment": "debian:12", "seed_path": extra.join("data")}),
        ),
        (
            "workspace_create",
            json!({"environment": "debian:12", "seed_path": "src"}),
        ),
    ] {
        let e = s.call_err(tool, args.clone());
        assert!(!is_confinement(&e), "{tool} {args}: {e}");
    }
    // The export's directory is created only once the workspace is usable.
    assert!(!extra.join("new").exists());
    // Still confined: the allowed directory itself is not replaced, and
    // everything else stays outside.
    let e = s.call_err(
        "workspace_export",
        json!({"workspace_id": WS, "path": "x", "output_path": extra, "overwrite": true}),
    );
    assert!(e.contains("itself"), "{e}");
    let e = s.call_err(
        "workspace_sync_push",
        json!({"workspace_id": WS, "source_path": sc.base.join("outside/secrets")}),
    );
    assert!(e.contains("outside the host directories"), "{e}");
    s.close();
}

#[test]
fn a_server_without_a_local_project_allows_no_host_path() {
    let sc = Scratch::new("noproj");
    // A --repo-url project is not on the host: no root at all.
    let (mut s, init) = sc.serve(&["--repo-url", "https://example.org/app.git"]);
    assert_eq!(
        init["_meta"]["pyro/host_access"]["allowed_roots"],
        json!([])
    );
    let e = s.call_err(
        "workspace_sync_push",
        json!({"workspace_id": WS, "source_path": sc.proj.join("src")}),
    );
    assert!(e.contains("may not use any host directory"), "{e}");
    s.close();
}

// ---- VM-backed: run where guests boot (the test host on this machine) ----

fn runs_dir() -> PathBuf {
    pyro_home().join("runs")
}

/// Pids of VMM processes whose config lives in the run directory of `vm_id`.
fn vmm_pids(vm_id: &str) -> Vec<i32> {
    vmm_pids_of(&format!("/runs/{vm_id}/vm.json"))
}

/// Starts `sleep 600` in a VM with progress on and waits until the command
/// runs; returns the VM id.
fn start_long_run(s: &mut Mcp, id: &str) -> String {
    s.send_message(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "vm_run", "_meta": {"progressToken": id},
            "arguments": {"environment": "debian:12", "command": "sleep 600",
                          "timeout_seconds": 900}}}));
    let mut vm_id = None;
    loop {
        let m = s.next();
        assert!(m.get("id") != Some(&json!(id)), "the call ended early: {m}");
        if m["method"] != "notifications/progress" {
            continue;
        }
        assert_eq!(m["params"]["progressToken"], id);
        let msg = m["params"]["message"].as_str().unwrap().to_string();
        if let Some(rest) = msg.strip_prefix("creating VM ") {
            vm_id = rest.split_whitespace().next().map(String::from);
        }
        if msg.contains("running the command") {
            break;
        }
    }
    let vm_id = vm_id.expect("progress named the VM");
    assert!(runs_dir().join(&vm_id).join("vm.json").exists());
    assert_eq!(vmm_pids(&vm_id).len(), 1, "one VMM runs for {vm_id}");
    vm_id
}

#[test]
#[ignore = "boots VMs: run inside tests/vmhost/run"]
fn vm_cancel_tears_down_the_vm_and_ping_stays_answered() {
    let _vm = VmGuard::new();
    let mut s = started();
    s.send_message(
        &json!({"jsonrpc": "2.0", "id": "lvl", "method": "logging/setLevel",
        "params": {"level": "info"}}),
    );
    s.reply("lvl");
    let vm_id = start_long_run(&mut s, "long");
    // A long vm_run must not block the cheap requests.
    s.ping();
    s.send_message(
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": "long", "reason": "test"}}),
    );
    loop {
        let m = s.next();
        assert!(
            m.get("id") != Some(&json!("long")),
            "a cancelled call gets no response: {m}"
        );
        if m["method"] == "notifications/message" && m["params"]["data"]["event"] == "cancelled" {
            assert_eq!(m["params"]["data"]["requestId"], "long");
            break;
        }
    }
    assert!(vmm_pids(&vm_id).is_empty(), "the VMM of {vm_id} is gone");
    assert!(
        !runs_dir().join(&vm_id).exists(),
        "the state of {vm_id} is removed"
    );
    // The session goes on: a short run still works.
    s.send_message(
        &json!({"jsonrpc": "2.0", "id": "short", "method": "tools/call",
        "params": {"name": "vm_run", "arguments": {"environment": "debian:12",
            "command": "echo after-cancel"}}}),
    );
    let r = s.reply("short")["result"].clone();
    assert_eq!(r["isError"], false, "{r}");
    assert_eq!(r["structuredContent"]["stdout"], "after-cancel\n");
    s.close();
}

#[test]
#[ignore = "boots VMs: run inside tests/vmhost/run"]
fn vm_eof_mid_call_exits_and_tears_down_the_vm() {
    let _vm = VmGuard::new();
    let mut s = started();
    let vm_id = start_long_run(&mut s, "doomed");
    let (code, rest) = s.close_status();
    assert_eq!(code, 0);
    assert!(
        rest.iter().all(|m| m.get("id") != Some(&json!("doomed"))),
        "no response after the client left: {rest:?}"
    );
    assert!(vmm_pids(&vm_id).is_empty(), "the VMM of {vm_id} is gone");
    assert!(
        !runs_dir().join(&vm_id).exists(),
        "the state of {vm_id} is removed"
    );
}

#[test]
fn cancelling_a_workspace_call_stuck_behind_the_workspace_lock_ends_it_at_once() {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::PermissionsExt;
    let home = TempDir::new("mcp-cancel");
    let ws = home.join("workspaces/0123456789ab");
    std::fs::create_dir_all(&ws).unwrap();
    for d in [home.path(), &home.join("workspaces"), &ws] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    // Another operation holds the workspace (its lock waits 10 minutes).
    let lock = std::fs::File::create(ws.join("lock")).unwrap();
    // SAFETY: flock on our own descriptor.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);

    let mut s =
        Mcp::spawn(serve(pyro(), &["--profile", "workspace-core"]).env("PYRO_HOME", &*home));
    s.initialize();
    s.send_message(
        &json!({"jsonrpc": "2.0", "id": "lvl", "method": "logging/setLevel",
        "params": {"level": "info"}}),
    );
    s.reply("lvl");
    s.send_message(
        &json!({"jsonrpc": "2.0", "id": "stuck", "method": "tools/call",
        "params": {"name": "workspace_file_read",
                   "arguments": {"workspace_id": "0123456789ab", "path": "a.txt"}}}),
    );
    // It waits behind the lock...
    std::thread::sleep(Duration::from_secs(1));
    while let Some(m) = s.try_next() {
        assert!(m.get("id") != Some(&json!("stuck")), "answered early: {m}");
    }
    // ...until cancelled: then it ends at once, without a response.
    s.send_message(
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": "stuck", "reason": "test"}}),
    );
    let cancelled_at = std::time::Instant::now();
    loop {
        let m = s.next();
        assert!(
            m.get("id") != Some(&json!("stuck")),
            "a cancelled call gets no response: {m}"
        );
        if m["method"] == "notifications/message" && m["params"]["data"]["event"] == "cancelled" {
            assert_eq!(m["params"]["data"]["requestId"], "stuck");
            break;
        }
    }
    let took = cancelled_at.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the call ended {took:?} after the cancel"
    );
    s.ping();
    let (code, rest) = s.close_status();
    assert_eq!(code, 0);
    assert!(rest.iter().all(|m| m.get("id") != Some(&json!("stuck"))));
    drop(lock);
}
