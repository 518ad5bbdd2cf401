//! CLI behaviour that needs no guest: help, usage errors, doctor, env list,
//! and how `pyro run` behaves on a host that cannot boot guests.

mod support;

use serde_json::Value;
use support::vm::lock_like_a_vmm;
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

/// A private PYRO_HOME and HOME for one test: commands that write state
/// or chat-host configs must never touch the real ones.
struct Scratch(TempDir);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = TempDir::new(&format!("cli-{tag}"));
        for sub in ["home", "pyro", "bin", "src"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        // The state directory must not be writable by others.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("pyro"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(dir.join("src/note.txt"), "hello\n").unwrap();
        std::fs::write(dir.join("fix.diff"), "x\n").unwrap();
        Scratch(dir)
    }

    /// `pyro ARGS` with this scratch's PYRO_HOME, HOME and an empty PATH
    /// (no chat-host CLI is found), stdin closed.
    fn pyro(&self, args: &[&str]) -> std::process::Output {
        pyro_cmd()
            .args(args)
            .env("PYRO_HOME", self.0.join("pyro"))
            .env("HOME", self.0.join("home"))
            .env("PATH", self.0.join("bin"))
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("spawn pyro")
    }

    fn path(&self, rel: &str) -> String {
        self.0.join(rel).to_str().unwrap().to_string()
    }
}

/// Every subcommand and option the CLI accepted before it was rebuilt on
/// one definition per option, each given so that the command fails (or
/// succeeds) without booting a VM, with what it shows of the option's
/// meaning. A usage error always prints a `Usage:` line; a command the
/// parser accepted never does.
#[test]
fn every_option_accepted_before_the_typed_cli_is_still_accepted() {
    let s = Scratch::new("accepted");
    let src = s.path("src");
    let note = s.path("src/note.txt");
    let patch = s.path("fix.diff");
    let out_file = s.path("out.txt");
    let project = s.path("src");
    let missing_ws = "0123456789ab";
    let gone = "does not exist";
    // (arguments, text the output must contain)
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--version"], "pyro "),
        (vec!["-V"], "pyro "),
        (vec!["--help"], "Usage: pyro"),
        (vec!["-h"], "Usage: pyro"),
        (vec!["help"], "Usage: pyro"),
        (vec!["help", "run"], "Usage: pyro run"),
        (vec!["help", "workspace"], "Usage: pyro workspace"),
        // pyro run: every option, the run refused before anything boots.
        (
            vec![
                "run",
                "debian:12",
                "--vcpu-count",
                "99",
                "--json",
                "--",
                "true",
            ],
            "vcpu_count must be between 1 and 32, got 99",
        ),
        (
            vec!["run", "debian:12", "--mem-mib", "1", "--", "true"],
            "mem_mib must be between 256 and 65536, got 1",
        ),
        (
            vec!["run", "debian:12", "--timeout-seconds", "0", "--", "true"],
            "timeout_seconds must be between",
        ),
        (
            vec!["run", "debian:12", "--ttl-seconds", "0", "--", "true"],
            "ttl_seconds must be at least 1",
        ),
        (
            vec![
                "run",
                "debian:12",
                "--network",
                "--allow-host-compat",
                "--vcpu-count",
                "0",
                "--",
                "true",
            ],
            "vcpu_count must be between",
        ),
        (vec!["run", "--help"], "Usage: pyro run"),
        (vec!["run", "-h"], "Usage: pyro run"),
        // pyro env
        (vec!["env", "list", "--json"], "catalog_version"),
        (vec!["env", "inspect", "debian:12", "--json"], "\"name\""),
        (vec!["env", "pull", "alpine:3"], "unknown environment"),
        (vec!["env", "prune", "--json"], "removed"),
        (
            vec![
                "env",
                "import",
                "alpine:3",
                "--image-dir",
                &src,
                "--kernel",
                &note,
            ],
            "unknown environment",
        ),
        (vec!["env", "--help"], "Usage: pyro env"),
        // pyro doctor, pyro demo
        (vec!["doctor", "--json"], "\"checks\""),
        (vec!["doctor", "--help"], "Usage: pyro doctor"),
        (
            vec!["demo", "--environment", "alpine:3", "--json"],
            "unknown environment \\\"alpine:3\\\"",
        ),
        (vec!["demo", "--help"], "Usage: pyro demo"),
        // pyro mcp serve: starts, and stops when stdin closes.
        (
            vec![
                "mcp",
                "serve",
                "--profile",
                "vm-run",
                "--project-path",
                &project,
                "--allow-path",
                &src,
                "--allow-host-compat",
            ],
            "serving profile vm-run",
        ),
        (
            vec![
                "mcp",
                "serve",
                "--repo-url",
                "https://example.org/r.git",
                "--repo-ref",
                "main",
            ],
            "serving profile workspace-core",
        ),
        (vec!["mcp", "--help"], "Usage: pyro mcp <command>"),
        (vec!["mcp", "serve", "--help"], "Usage: pyro mcp serve"),
        // pyro host, in the scratch HOME.
        (
            vec![
                "host",
                "connect",
                "claude-code",
                "--profile",
                "vm-run",
                "--project-path",
                &project,
                "--json",
            ],
            "\"action\"",
        ),
        (
            vec![
                "host",
                "print-config",
                "opencode",
                "--profile",
                "vm-run",
                "--project-path",
                &project,
            ],
            "\"mcp\"",
        ),
        (vec!["host", "doctor", "--json"], "\"hosts\""),
        (vec!["host", "repair", "codex", "--json"], "\"host\""),
        (vec!["host", "--help"], "Usage: pyro host"),
        // pyro workspace: create refused by its own checks, before booting.
        (
            vec![
                "workspace",
                "create",
                "debian:12",
                "--vcpu-count",
                "99",
                "--mem-mib",
                "512",
                "--ttl-seconds",
                "60",
                "--retention-seconds",
                "60",
                "--seed-path",
                &src,
                "--name",
                "n",
                "--label",
                "k=v",
                "--label",
                "k2=v2",
                "--network-policy",
                "off",
                "--json",
            ],
            "vcpu_count must be between 1 and 32, got 99",
        ),
        (
            vec!["workspace", "create", "--mem-mib", "1", "--id-only"],
            "mem_mib must be between 256 and 65536, got 1",
        ),
        (
            vec!["workspace", "create", "--ttl-seconds", "0", "--json"],
            "ttl_seconds must be between",
        ),
        (
            vec![
                "workspace",
                "create",
                "--retention-seconds",
                "999999999999",
                "--json",
            ],
            "retention_seconds must be between",
        ),
        (
            vec![
                "workspace",
                "create",
                "--seed-path",
                "/nonexistent-pyro-seed",
                "--json",
            ],
            "host path \\\"/nonexistent-pyro-seed\\\" does not exist",
        ),
        (
            vec!["workspace", "create", "--network-policy", "on", "--json"],
            "--network-policy on is not available",
        ),
        (
            vec![
                "workspace",
                "create",
                "--allow-host-compat",
                "--vcpu-count",
                "0",
                "--json",
            ],
            "vcpu_count must be between",
        ),
        (vec!["workspace", "list", "--json"], "\"workspaces\""),
        (vec!["workspace", "status", missing_ws, "--json"], gone),
        (
            vec![
                "workspace",
                "update",
                missing_ws,
                "--name",
                "n",
                "--label",
                "a=b",
                "--clear-label",
                "c",
                "--json",
            ],
            gone,
        ),
        (
            vec!["workspace", "update", missing_ws, "--clear-name", "--json"],
            gone,
        ),
        (
            vec![
                "workspace",
                "exec",
                missing_ws,
                "--timeout-seconds",
                "5",
                "--json",
                "--",
                "true",
            ],
            gone,
        ),
        (
            vec![
                "workspace",
                "sync",
                "push",
                missing_ws,
                &src,
                "--dest",
                "sub",
                "--json",
            ],
            gone,
        ),
        (
            vec!["workspace", "sync-push", missing_ws, &src, "--json"],
            gone,
        ),
        (
            vec![
                "workspace",
                "file",
                "list",
                missing_ws,
                "sub",
                "--recursive",
                "--json",
            ],
            gone,
        ),
        (
            vec![
                "workspace",
                "file",
                "read",
                missing_ws,
                "a.txt",
                "--max-bytes",
                "10",
                "--content-only",
                "--json",
            ],
            gone,
        ),
        (
            vec![
                "workspace",
                "file",
                "write",
                missing_ws,
                "a.txt",
                "--text",
                "hi",
                "--json",
            ],
            gone,
        ),
        (
            vec![
                "workspace",
                "file",
                "write",
                missing_ws,
                "a.txt",
                "--text-file",
                &note,
                "--json",
            ],
            gone,
        ),
        (
            vec![
                "workspace",
                "patch",
                "apply",
                missing_ws,
                "--patch",
                "x",
                "--json",
            ],
            "invalid patch: no file changes found",
        ),
        (
            vec![
                "workspace",
                "patch",
                "apply",
                missing_ws,
                "--patch-file",
                &patch,
                "--json",
            ],
            "invalid patch: no file changes found",
        ),
        (vec!["workspace", "diff", missing_ws, "--json"], gone),
        (
            vec![
                "workspace",
                "export",
                missing_ws,
                "a.txt",
                "--output",
                &out_file,
                "--overwrite",
                "--json",
            ],
            gone,
        ),
        (vec!["workspace", "logs", missing_ws, "--json"], gone),
        (vec!["workspace", "summary", missing_ws, "--json"], gone),
        (
            vec![
                "workspace",
                "reset",
                missing_ws,
                "--snapshot",
                "baseline",
                "--json",
            ],
            gone,
        ),
        (vec!["workspace", "delete", missing_ws, "--json"], gone),
        (vec!["workspace", "--help"], "Usage: pyro workspace"),
        (vec!["workspace", "exec", "--help"], "--timeout-seconds"),
    ];
    for (args, expect) in &cases {
        let out = s.pyro(args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let help = args.iter().any(|a| ["--help", "-h", "help"].contains(a));
        if !help {
            assert!(
                !stderr.lines().any(|l| l.starts_with("Usage:")),
                "{args:?} was refused as a usage error:\n{stderr}"
            );
            // Understood: it worked (0) or its work failed (1), never 2.
            assert!(
                matches!(out.status.code(), Some(0) | Some(1)),
                "{args:?} exited {:?}:\n{stderr}",
                out.status.code()
            );
        }
        assert!(
            stdout.contains(expect) || stderr.contains(expect),
            "{args:?}: expected {expect:?} in\nstdout: {stdout}\nstderr: {stderr}"
        );
    }
    // `host connect` wrote the scratch HOME's config, with the flags given.
    let cfg = std::fs::read_to_string(s.0.join("home/.claude.json")).unwrap();
    assert!(cfg.contains("vm-run") && cfg.contains(&project), "{cfg}");
}

/// `pyro ARGS` refused as a usage error: exit 2, nothing on stdout (not
/// even with --json), and stderr says what is wrong, the usage line, and
/// which --help to read.
fn usage_error(s: &Scratch, args: &[&str], says: &str, help: &str) {
    let out = s.pyro(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?}: stdout {:?}", out.stdout);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{args:?}: {err}");
    assert_eq!(lines[0], format!("error: {says}"), "{args:?}");
    assert!(lines[1].starts_with("Usage: pyro "), "{args:?}: {err}");
    assert!(lines[2].contains(&format!("`{help}`")), "{args:?}: {err}");
}

#[test]
fn usage_errors_exit_2_naming_what_is_wrong_and_which_help_to_read() {
    let s = Scratch::new("usage");
    let id = "0123456789ab";
    let exec_help = "pyro workspace exec --help";
    usage_error(
        &s,
        &["workspace", "exec", id, "--bogus", "--json", "--", "true"],
        "unknown option --bogus",
        exec_help,
    );
    usage_error(
        &s,
        &["workspace", "exec", id, "--timeout", "5", "--", "true"],
        "unknown option --timeout (did you mean --timeout-seconds?)",
        exec_help,
    );
    usage_error(
        &s,
        &["workspace", "exec", id, "--timeout-seconds"],
        "--timeout-seconds needs a value: --timeout-seconds S",
        exec_help,
    );
    usage_error(
        &s,
        &[
            "workspace",
            "exec",
            id,
            "--timeout-seconds",
            "soon",
            "--",
            "true",
        ],
        "--timeout-seconds needs a number, got \"soon\"",
        exec_help,
    );
    usage_error(
        &s,
        &["workspace", "exec", id, "--json"],
        "missing command after `--`",
        exec_help,
    );
    usage_error(
        &s,
        &["workspace", "status", "--json"],
        "missing workspace ID",
        "pyro workspace status --help",
    );
    usage_error(
        &s,
        &["workspace", "delete", id, "other-id", "--json"],
        "unexpected argument \"other-id\"",
        "pyro workspace delete --help",
    );
    usage_error(
        &s,
        &["workspace", "list", "--json=yes"],
        "--json takes no value; give it alone",
        "pyro workspace list --help",
    );
    usage_error(
        &s,
        &["workspace", "export", id, "a.txt", "--json"],
        "missing --output HOST_PATH",
        "pyro workspace export --help",
    );
    usage_error(
        &s,
        &["workspace", "file", "write", id, "a.txt", "--json"],
        "give exactly one of --text or --text-file",
        "pyro workspace file write --help",
    );
    usage_error(
        &s,
        &["workspace", "create", "--label", "nokey", "--json"],
        "--label needs KEY=VALUE, got \"nokey\"",
        "pyro workspace create --help",
    );
    usage_error(
        &s,
        &["workspace", "frobnicate"],
        "unknown workspace command \"frobnicate\"",
        "pyro workspace --help",
    );
    usage_error(
        &s,
        &["workspace", "file"],
        "`pyro workspace file` needs a command: list, read, write",
        "pyro workspace file --help",
    );
    usage_error(
        &s,
        &["frobnicate"],
        "unknown command \"frobnicate\"",
        "pyro --help",
    );
    usage_error(
        &s,
        &["run", "debian:12", "--bogus", "--", "true"],
        "unknown option --bogus",
        "pyro run --help",
    );
    usage_error(
        &s,
        &["env", "import", "debian:12", "--image-dir", "/x"],
        "missing --kernel FILE",
        "pyro env import --help",
    );
    usage_error(
        &s,
        &["host", "connect", "opencode"],
        "HOST opencode is not supported by this command; it supports: claude-code, codex",
        "pyro host connect --help",
    );
}

#[test]
fn operation_failures_exit_1() {
    let s = Scratch::new("fail");
    let src = s.path("src");
    // (arguments, what the error says); none boots a VM. The engine's
    // "invalid" errors among them (bounds, host paths, the patch) exited 2
    // before, as if the command line had been wrong.
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["workspace", "status", "0123456789ab", "--json"],
            "workspace \"0123456789ab\" does not exist",
        ),
        (
            vec!["workspace", "exec", "0123456789ab", "--", "true"],
            "workspace \"0123456789ab\" does not exist",
        ),
        (
            vec!["workspace", "create", "--vcpu-count", "99", "--json"],
            "vcpu_count must be between 1 and 32, got 99",
        ),
        (
            vec!["run", "debian:12", "--mem-mib", "1", "--", "true"],
            "mem_mib must be between 256 and 65536, got 1",
        ),
        (
            vec![
                "workspace",
                "exec",
                "0123456789ab",
                "--timeout-seconds",
                "0",
                "--",
                "true",
            ],
            "timeout_seconds must be between",
        ),
        (
            vec![
                "workspace",
                "file",
                "read",
                "x",
                "a",
                "--max-bytes",
                "0",
                "--json",
            ],
            "max_bytes must be between",
        ),
        (
            vec![
                "workspace",
                "create",
                "--seed-path",
                "/nonexistent-pyro-seed",
            ],
            "host path \"/nonexistent-pyro-seed\" does not exist",
        ),
        (
            vec![
                "workspace",
                "sync",
                "push",
                "0123456789ab",
                "/nonexistent-pyro-src",
            ],
            "host path \"/nonexistent-pyro-src\" does not exist",
        ),
        (
            vec![
                "workspace",
                "patch",
                "apply",
                "0123456789ab",
                "--patch",
                "x",
                "--json",
            ],
            "invalid patch",
        ),
        (
            vec!["workspace", "exec", "../../etc", "--json", "--", "true"],
            "workspace \"../../etc\" does not exist",
        ),
        (
            vec!["workspace", "create", "--network-policy", "on"],
            "--network-policy on is not available",
        ),
        (
            vec![
                "env",
                "import",
                "debian:12",
                "--image-dir",
                &src,
                "--kernel",
                &src,
            ],
            "rootfs.ext4",
        ),
        (
            vec!["demo", "--environment", "alpine:3"],
            "unknown environment \"alpine:3\"",
        ),
    ];
    for (args, says) in &cases {
        let out = s.pyro(args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stdout} {stderr}");
        if args.contains(&"--json") {
            let v: Value = serde_json::from_str(&stdout).unwrap();
            assert_eq!(v["ok"], false, "{args:?}");
            assert!(v["error"].as_str().unwrap().contains(says), "{args:?}: {v}");
        } else {
            assert!(
                stderr.starts_with("error: ") && stderr.contains(says),
                "{args:?}: {stderr}"
            );
        }
        assert!(!stderr.contains("Usage:"), "{args:?}: {stderr}");
    }
}

#[test]
fn every_command_has_help_with_its_usage_options_and_the_formerly_undocumented_ones() {
    let s = Scratch::new("help");
    for path in [
        "run",
        "env list",
        "env inspect",
        "env pull",
        "env prune",
        "env import",
        "workspace create",
        "workspace list",
        "workspace status",
        "workspace update",
        "workspace exec",
        "workspace sync push",
        "workspace sync-push",
        "workspace file list",
        "workspace file read",
        "workspace file write",
        "workspace patch apply",
        "workspace diff",
        "workspace export",
        "workspace logs",
        "workspace summary",
        "workspace reset",
        "workspace delete",
        "doctor",
        "demo",
        "mcp serve",
        "host connect",
        "host print-config",
        "host doctor",
        "host repair",
    ] {
        let words: Vec<&str> = path.split(' ').collect();
        let out = s.pyro(&[&words[..], &["--help"]].concat());
        assert_eq!(out.status.code(), Some(0), "{path}");
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        let shown = path.replace("sync-push", "sync push");
        assert!(help.starts_with(&format!("Usage: pyro {shown} ")), "{help}");
        assert!(
            help.contains("\nOptions:\n") && help.contains("  -h, --help"),
            "{help}"
        );
        // `pyro help WORDS` is the same text.
        let via_help = s.pyro(&[&["help"][..], &words].concat());
        assert_eq!(String::from_utf8_lossy(&via_help.stdout), help, "{path}");
    }
    let help = |args: &[&str]| String::from_utf8_lossy(&s.pyro(args).stdout).into_owned();
    let create = help(&["workspace", "create", "--help"]);
    for line in [
        "  --network-policy POLICY",
        "  --allow-host-compat",
        "  --retention-seconds S",
    ] {
        assert!(create.contains(line), "{line}: {create}");
    }
    assert!(help(&["workspace", "reset", "--help"]).contains("  --snapshot NAME"));
    // Groups list their commands; pyro lists its groups.
    let ws = help(&["workspace", "--help"]);
    assert!(
        ws.contains("\n  file read ID PATH ") && ws.contains("\n  sync push ID SOURCE "),
        "{ws}"
    );
    let top = help(&["--help"]);
    assert!(
        top.contains("\n  workspace <command> ") && top.contains("\n  mcp serve "),
        "{top}"
    );
}
