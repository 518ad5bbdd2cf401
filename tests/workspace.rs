//! Persistent workspaces on real VMs, through the `pyro` binary (CLI and
//! MCP server). `#[ignore]`d like tests/vm.rs: `make test-vm` runs them
//! with `--ignored` inside the test host (or directly on hardware KVM).

mod support;

use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use support::mcp::Mcp;
use support::vm::{pid_alive, vmm_pids_of, VmGuard};
use support::{
    json_stdout, mode, now, pyro, pyro_cmd, pyro_home, workspace_args, workspace_id, write_file,
    TempDir,
};

const ENV: &str = "debian:12";

/// `pyro workspace ARGS --json`: (exit code, JSON, stderr).
fn ws(args: &[&str]) -> (i32, Value, String) {
    let out = pyro_cmd()
        .args(workspace_args(args))
        .output()
        .expect("spawn pyro");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v = json_stdout(&out, &args);
    (out.status.code().unwrap_or(-1), v, stderr)
}

/// A call that must succeed.
fn ok(args: &[&str]) -> Value {
    let (code, v, err) = ws(args);
    assert_eq!(code, 0, "{args:?} failed: {v}\n{err}");
    v
}

/// A call that must fail; returns its error message.
fn fails(args: &[&str]) -> String {
    let (code, v, err) = ws(args);
    assert_ne!(code, 0, "{args:?} should have failed: {v}");
    assert_eq!(v["ok"], false, "{v}");
    let msg = v["error"].as_str().unwrap_or_default().to_string();
    assert!(!msg.is_empty(), "{args:?}: empty error; stderr {err}");
    msg
}

fn create(seed: Option<&Path>, extra: &[&str]) -> String {
    let mut args = vec!["create", ENV];
    let seed_s;
    if let Some(s) = seed {
        seed_s = s.to_string_lossy().into_owned();
        args.extend(["--seed-path", &seed_s]);
    }
    args.extend(extra);
    let v = ok(&args);
    assert_eq!(v["state"], "started", "{v}");
    v["workspace_id"].as_str().unwrap().to_string()
}

fn exec(id: &str, cmd: &str) -> Value {
    ok(&["exec", id, "--", "sh", "-c", cmd])
}

#[test]
#[ignore = "boots VMs: run with `make test`"]
fn files_patches_diff_export_and_reset() {
    let _vm = VmGuard::new();
    let d = TempDir::new("ws-files");
    let seed = d.join("seed");
    write_file(&seed.join("src/app.py"), b"def main():\n    return 1\n");
    write_file(&seed.join("old.txt"), b"bye\n");
    write_file(&seed.join("rename-me.txt"), b"same\n");
    write_file(&seed.join("blob.bin"), [0u8, 1, 2, 255, 254]);
    std::os::unix::fs::symlink("src/app.py", seed.join("link")).unwrap();
    let id = create(Some(&seed), &["--name", "files"]);
    let st = ok(&["status", &id]);
    assert_eq!(st["workspace_seed"]["mode"], "directory");
    assert_eq!(st["workspace_seed"]["entry_count"], 6);
    // Creating a workspace does not copy the root image.
    let disk = st["disk"]["allocated_bytes_at_create"].as_u64().unwrap();
    assert!(
        disk < 16 << 20,
        "a new workspace took {disk} bytes on the host"
    );

    // Listing, flat and recursive; symlinks listed, not followed.
    let flat = ok(&["file", "list", &id]);
    let names: Vec<&str> = flat["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "/workspace/blob.bin",
            "/workspace/link",
            "/workspace/old.txt",
            "/workspace/rename-me.txt",
            "/workspace/src"
        ]
    );
    assert_eq!(flat["entries"][1]["link_target"], "src/app.py");
    let deep = ok(&["file", "list", &id, "/workspace", "--recursive"]);
    assert_eq!(deep["entries"].as_array().unwrap().len(), 6);

    // Reads: bounded, binary content intact (base64).
    let r = ok(&["file", "read", &id, "src/app.py", "--max-bytes", "5"]);
    assert_eq!(
        (r["content"].as_str(), r["truncated"].as_bool()),
        (Some("def m"), Some(true))
    );
    assert_eq!(r["size_bytes"], 25);
    let b = ok(&["file", "read", &id, "/workspace/blob.bin"]);
    assert_eq!(b["encoding"], "base64");
    assert_eq!(
        pyro_proto::base64_decode(b["content"].as_str().unwrap()).unwrap(),
        [0u8, 1, 2, 255, 254]
    );

    // Writes create parents; the result is visible to commands.
    ok(&["file", "write", &id, "deep/er/note.txt", "--text", "hi\n"]);
    assert_eq!(exec(&id, "cat deep/er/note.txt")["stdout"], "hi\n");

    // A multi-file patch: modify, add, delete, rename.
    let patch = "\
--- a/src/app.py
+++ b/src/app.py
@@ -1,2 +1,2 @@
 def main():
-    return 1
+    return 0
--- /dev/null
+++ b/NEW.md
@@ -0,0 +1 @@
+# new
--- a/old.txt
+++ /dev/null
@@ -1 +0,0 @@
-bye
diff --git a/rename-me.txt b/renamed.txt
similarity index 100%
rename from rename-me.txt
rename to renamed.txt
";
    let p = ok(&["patch", "apply", &id, "--patch", patch]);
    assert_eq!(
        p["summary"],
        json!({"total": 4, "added": 1, "modified": 1, "deleted": 1, "renamed": 1})
    );
    assert_eq!(
        exec(
            &id,
            "cat src/app.py NEW.md renamed.txt; ls old.txt rename-me.txt 2>&1 | wc -l"
        )["stdout"],
        "def main():\n    return 0\n# new\nsame\n2\n"
    );

    // A patch with one bad hunk changes nothing and names file and hunk.
    let bad = "\
--- a/NEW.md
+++ b/NEW.md
@@ -1 +1 @@
-# new
+# newer
--- a/src/app.py
+++ b/src/app.py
@@ -1,2 +1,2 @@
 def main():
-    return 42
+    return 43
";
    let e = fails(&["patch", "apply", &id, "--patch", bad]);
    assert!(
        e.contains("hunk 1 of src/app.py") && e.contains("nothing was changed"),
        "{e}"
    );
    assert_eq!(ok(&["file", "read", &id, "NEW.md"])["content"], "# new\n");

    // The diff against the baseline: every kind of change, binary flagged.
    exec(&id, "printf '\\001\\002' > blob.bin");
    let diff = ok(&["diff", &id]);
    let s = &diff["summary"];
    assert_eq!(
        (
            s["added"].as_u64(),
            s["modified"].as_u64(),
            s["deleted"].as_u64()
        ),
        (Some(3), Some(2), Some(2)),
        "{diff}"
    );
    let blob = diff["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "blob.bin")
        .unwrap();
    assert_eq!(blob["binary"], true);
    let patch_text = diff["patch"].as_str().unwrap();
    assert!(
        patch_text.contains("-    return 1\n+    return 0\n"),
        "{patch_text}"
    );
    assert!(
        patch_text.contains("Binary files a/blob.bin and b/blob.bin differ"),
        "{patch_text}"
    );

    // Export: a file and a directory; never over an existing path unless asked.
    let out = d.join("out");
    let f = out.join("app.py");
    let e = ok(&["export", &id, "src/app.py", "--output", f.to_str().unwrap()]);
    assert_eq!(e["artifact_type"], "file");
    assert_eq!(
        std::fs::read_to_string(&f).unwrap(),
        "def main():\n    return 0\n"
    );
    let e = fails(&["export", &id, "NEW.md", "--output", f.to_str().unwrap()]);
    assert!(e.contains("already exists"), "{e}");
    assert_eq!(
        std::fs::read_to_string(&f).unwrap(),
        "def main():\n    return 0\n"
    );
    ok(&[
        "export",
        &id,
        "NEW.md",
        "--output",
        f.to_str().unwrap(),
        "--overwrite",
    ]);
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "# new\n");
    let tree = out.join("tree");
    let e = ok(&[
        "export",
        &id,
        "/workspace",
        "--output",
        tree.to_str().unwrap(),
    ]);
    assert_eq!(e["artifact_type"], "directory");
    assert_eq!(
        std::fs::read_to_string(tree.join("deep/er/note.txt")).unwrap(),
        "hi\n"
    );
    assert_eq!(
        std::fs::read_link(tree.join("link")).unwrap().to_str(),
        Some("src/app.py")
    );
    assert_eq!(std::fs::read(tree.join("blob.bin")).unwrap(), [1u8, 2]);

    // Summary and logs of the session.
    let sum = ok(&["summary", &id]);
    assert_eq!(sum["commands"]["count"], 3, "{sum}");
    assert_eq!(sum["patch_applies"].as_array().unwrap().len(), 1);
    assert_eq!(sum["file_edits"].as_array().unwrap().len(), 1);
    assert_eq!(sum["exports"].as_array().unwrap().len(), 3);
    assert_eq!(sum["changes"]["summary"]["total"], 7);
    let logs = ok(&["logs", &id]);
    assert_eq!(logs["count"], 3);
    assert_eq!(
        logs["entries"][0]["command"],
        "sh -c 'cat deep/er/note.txt'"
    );
    assert_eq!(logs["entries"][0]["stdout"], "hi\n");

    // Reset: back to the baseline, history cleared.
    let r = ok(&["reset", &id]);
    assert_eq!(r["reset_count"], 1);
    assert_eq!(r["workspace_reset"]["entry_count"], 6);
    assert_eq!(ok(&["diff", &id])["changed"], false);
    assert_eq!(ok(&["logs", &id])["count"], 0);
    assert_eq!(
        ok(&["file", "read", &id, "src/app.py"])["content"],
        "def main():\n    return 1\n"
    );
    let sum = ok(&["summary", &id]);
    assert_eq!(sum["session"]["since"], "reset");
    assert_eq!(sum["commands"]["count"], 0);
    ok(&["delete", &id]);
}

fn tar_with(path: &Path, members: &[(&str, tar::EntryType, &[u8], &str)]) {
    std::fs::write(path, support::raw_tar::raw_tar(members)).unwrap();
}

#[test]
#[ignore = "boots VMs: run with `make test`"]
fn bad_input_is_refused_clearly_and_loses_nothing() {
    let _vm = VmGuard::new();
    use tar::EntryType::*;
    let d = TempDir::new("ws-bad");
    // Refused before any VM boots.
    let e = fails(&["status", "0123456789ab"]);
    assert!(e.contains("does not exist"), "{e}");
    let e = fails(&["exec", "../../etc", "--", "true"]);
    assert!(e.contains("does not exist"), "{e}");
    let e = fails(&[
        "create",
        ENV,
        "--seed-path",
        d.join("nope").to_str().unwrap(),
    ]);
    assert!(e.contains("does not exist"), "{e}");
    let e = fails(&["create", ENV, "--seed-path", "/dev/null"]);
    assert!(e.contains("character device"), "{e}");
    for (i, (members, want)) in [
        (vec![("../escape", Regular, &b"x"[..], "")], "'..'"),
        (vec![("/etc/cron.d/x", Regular, &b"x"[..], "")], "absolute"),
        (vec![("l", Symlink, &b""[..], "../../../etc")], "outside"),
        (vec![("h", Link, &b""[..], "x")], "hard link"),
    ]
    .into_iter()
    .enumerate()
    {
        let t = d.join(format!("evil{i}.tar"));
        tar_with(&t, &members);
        let e = fails(&["create", ENV, "--seed-path", t.to_str().unwrap()]);
        assert!(e.contains(want), "{want}: {e}");
    }
    assert!(
        !pyro_home().join("workspaces").exists()
            || std::fs::read_dir(pyro_home().join("workspaces"))
                .unwrap()
                .flatten()
                .all(|e| e.file_name().to_string_lossy().starts_with('.')),
        "refused creates leave nothing behind"
    );

    let seed = d.join("seed");
    write_file(&seed.join("keep.txt"), b"precious\n");
    let id = create(Some(&seed), &["--name", "only-one"]);
    let e = fails(&["create", ENV, "--name", "only-one"]);
    assert!(e.contains("already exists") && e.contains(&id), "{e}");
    let e = fails(&["status", "only-one"]);
    assert!(e.contains(&id), "names point at the id: {e}");

    // Paths: '..', absolute elsewhere, symlinks leading out.
    let e = fails(&["file", "read", &id, "../etc/passwd"]);
    assert!(e.contains("'..'"), "{e}");
    let e = fails(&["file", "read", &id, "/etc/passwd"]);
    assert!(e.contains("outside /workspace"), "{e}");
    exec(&id, "ln -s /etc esc && ln -s .. up");
    for p in ["esc/passwd", "up/etc/passwd"] {
        let e = fails(&["file", "read", &id, p]);
        assert!(e.contains("resolves outside /workspace"), "{p}: {e}");
    }
    let e = fails(&["file", "write", &id, "esc/evil", "--text", "x"]);
    assert!(e.contains("resolves outside /workspace"), "{e}");
    let e = fails(&["file", "list", &id, "up/etc"]);
    assert!(e.contains("resolves outside"), "{e}");
    let e = fails(&[
        "patch",
        "apply",
        &id,
        "--patch",
        "--- a/esc/hostname\n+++ b/esc/hostname\n@@ -1 +1 @@\n-pyro\n+evil\n",
    ]);
    assert!(e.contains("resolves outside"), "{e}");
    assert_eq!(
        exec(&id, "cat /etc/hostname; ls /etc/evil 2>&1 | wc -l")["stdout"],
        "pyro\n1\n"
    );
    let e = fails(&[
        "export",
        &id,
        "esc",
        "--output",
        d.join("x").to_str().unwrap(),
    ]);
    assert!(e.contains("is absolute"), "{e}");
    assert!(!d.join("x").exists());
    // The symlink chain of the security review, made in the guest: each
    // link alone looks harmless, together they climb out of the export.
    exec(
        &id,
        "mkdir chain && ln -s . chain/up && ln -s up/up/../../SECRET chain/leak",
    );
    let e = fails(&[
        "export",
        &id,
        "chain",
        "--output",
        d.join("chain").to_str().unwrap(),
    ]);
    assert!(e.contains("'..' after a name"), "{e}");
    assert!(!d.join("chain").exists());
    // A terabyte sparse file is refused from its header: no dense write,
    // no partial output, no stage directory left behind.
    exec(
        &id,
        "mkdir out && truncate -s 1T out/big && echo small > out/note",
    );
    let e = fails(&[
        "export",
        &id,
        "out",
        "--output",
        d.join("out").to_str().unwrap(),
    ]);
    assert!(
        e.contains("\"big\" is 1099511627776 bytes, over the 8589934592-byte limit"),
        "{e}"
    );
    assert!(!d.join("out").exists());
    assert!(
        std::fs::read_dir(&d)
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().contains("pyro-export")),
        "no stage directory is left"
    );
    // Within the limit, a sparse file stays sparse on the host.
    exec(&id, "truncate -s 64M out/big && printf x >> out/big");
    ok(&[
        "export",
        &id,
        "out/big",
        "--output",
        d.join("big").to_str().unwrap(),
    ]);
    let m = std::fs::metadata(d.join("big")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(m.len(), (64 << 20) + 1);
    assert!(
        m.blocks() * 512 < 1 << 20,
        "{} blocks allocated",
        m.blocks()
    );
    std::fs::remove_file(d.join("big")).unwrap();
    exec(&id, "rm -rf chain out");
    // Archive tricks in a sync push.
    let t = d.join("push.tar");
    tar_with(
        &t,
        &[
            ("ok.txt", Regular, b"fine", ""),
            ("../../x", Regular, b"x", ""),
        ],
    );
    let e = fails(&["sync", "push", &id, t.to_str().unwrap()]);
    assert!(e.contains("'..'"), "{e}");
    assert_eq!(
        exec(
            &id,
            "test -e ok.txt && echo yes || echo no; ls / | grep -c '^x$' || true"
        )["stdout"],
        "no\n0\n"
    );

    // Oversized writes and reads.
    let big = "x".repeat(1024 * 1024 + 1);
    let bigf = d.join("big.txt");
    std::fs::write(&bigf, &big).unwrap();
    let e = fails(&[
        "file",
        "write",
        &id,
        "big.txt",
        "--text-file",
        bigf.to_str().unwrap(),
    ]);
    assert!(e.contains("at most 1048576"), "{e}");
    let e = fails(&["file", "read", &id, "keep.txt", "--max-bytes", "1048577"]);
    assert!(e.contains("max_bytes"), "{e}");

    // Concurrent operations on one workspace are serialized.
    let spawn = |tag: &str| {
        pyro_cmd()
            .args(["workspace", "exec", &id, "--json", "--", "sh", "-c"])
            .arg(format!(
                "echo {tag}-start >> order; sleep 1; echo {tag}-end >> order"
            ))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let kids: Vec<Child> = vec![spawn("a"), spawn("b"), spawn("c")];
    let mut seqs: Vec<u64> = kids
        .into_iter()
        .map(|k| {
            let out = k.wait_with_output().unwrap();
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["exit_code"], 0, "{v}");
            v["sequence"].as_u64().unwrap()
        })
        .collect();
    seqs.sort();
    let order = exec(&id, "cat order")["stdout"]
        .as_str()
        .unwrap()
        .to_string();
    let lines: Vec<&str> = order.lines().collect();
    assert_eq!(lines.len(), 6, "{order}");
    for pair in lines.chunks(2) {
        let tag = pair[0].strip_suffix("-start").expect(&order);
        assert_eq!(pair[1], format!("{tag}-end"), "interleaved: {order}");
    }
    let logs = ok(&["logs", &id]);
    let all: Vec<u64> = logs["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(
        all,
        (1..=all.len() as u64).collect::<Vec<_>>(),
        "sequences are unique and dense"
    );
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));

    // A full disk: clear errors, nothing lost, usable again once freed.
    exec(
        &id,
        "a=$(df -B1 --output=avail /workspace | tail -1); \
               fallocate -l $((a - 1048576)) fill && dd if=/dev/zero of=fill2 bs=64k 2>/dev/null; \
               df -B1 --output=avail /workspace | tail -1",
    );
    let fat = d.join("fat.txt");
    std::fs::write(&fat, "y".repeat(200_000)).unwrap();
    let fat = fat.to_str().unwrap();
    let e = fails(&["file", "write", &id, "keep.txt", "--text-file", fat]);
    assert!(e.contains("no space left"), "{e}");
    let e = fails(&["file", "write", &id, "new.txt", "--text-file", fat]);
    assert!(e.contains("no space left"), "{e}");
    assert_eq!(
        ok(&["file", "read", &id, "keep.txt"])["content"],
        "precious\n"
    );
    assert_eq!(exec(&id, "ls new.txt 2>/dev/null | wc -l")["stdout"], "0\n");
    exec(&id, "rm -f fill fill2");
    ok(&["file", "write", &id, "new.txt", "--text", "room again\n"]);
    assert_eq!(
        ok(&["file", "read", &id, "new.txt"])["content"],
        "room again\n"
    );

    // A deleted workspace is gone for every operation.
    ok(&["delete", &id]);
    for args in [
        vec!["status", id.as_str()],
        vec!["exec", id.as_str(), "--", "true"],
        vec!["delete", id.as_str()],
    ] {
        let e = fails(&args);
        assert!(e.contains("does not exist"), "{args:?}: {e}");
    }
}

#[test]
#[ignore = "boots VMs: run with `make test`"]
fn workspaces_outlive_processes_and_killed_vms() {
    let _vm = VmGuard::new();
    let d = TempDir::new("ws-persist");
    // Made over MCP by one server process, seeded from its --project-path
    // (no seed_path given)...
    let project = d.join("project");
    write_file(&project.join("README.md"), b"the project\n");
    let mut m = Mcp::start(pyro(), &d, &["--project-path", project.to_str().unwrap()]);
    let tools = m.request("tools/list", json!({}));
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 17, "{names:?}");
    let created = m.call(
        "workspace_create",
        json!({"environment": ENV, "name": "persist", "labels": {"k": "v"}}),
    );
    let id = created["workspace_id"].as_str().unwrap().to_string();
    assert_eq!(created["workspace_seed"]["mode"], "directory", "{created}");
    assert_eq!(created["workspace_seed"]["entry_count"], 1, "{created}");
    let r = m.call(
        "workspace_file_read",
        json!({"workspace_id": id, "path": "README.md"}),
    );
    assert_eq!(r["content"], "the project\n");
    let r = m.call(
        "workspace_exec",
        json!({"workspace_id": id, "command": "echo kept > /workspace/state.txt"}),
    );
    assert_eq!(r["exit_code"], 0);
    // Over MCP host paths are confined to the project: an export into it
    // (relative paths start there) works and replaces with overwrite,
    // leaving no stage behind; a hidden directory is refused untouched.
    let r = m.call(
        "workspace_export",
        json!({"workspace_id": id, "path": "README.md", "output_path": "exported/README.md"}),
    );
    assert_eq!(r["overwrote"], false, "{r}");
    let exported = project.join("exported/README.md");
    assert_eq!(std::fs::read_to_string(&exported).unwrap(), "the project\n");
    let r = m.call(
        "workspace_export",
        json!({"workspace_id": id, "path": "state.txt", "output_path": exported,
               "overwrite": true}),
    );
    assert_eq!(r["overwrote"], true, "{r}");
    assert_eq!(std::fs::read_to_string(&exported).unwrap(), "kept\n");
    let left: Vec<_> = std::fs::read_dir(project.join("exported"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["README.md"], "no stage directory is left");
    let e = m.call_err(
        "workspace_export",
        json!({"workspace_id": id, "path": "state.txt", "output_path": ".hidden/state.txt"}),
    );
    assert!(e.contains("hidden"), "{e}");
    assert!(!project.join(".hidden").exists());
    let e = m.call_err(
        "workspace_file_read",
        json!({"workspace_id": id, "path": "../x"}),
    );
    assert!(e.contains("'..'"), "{e}");
    m.close();

    // ...seen and used by the CLI and by a second server after it exits.
    let list = ok(&["list"]);
    let mine = list["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["workspace_id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(mine["state"], "started");
    assert_eq!(mine["name"], "persist");
    assert_eq!(mine["labels"]["k"], "v");
    let mut m2 = Mcp::start(pyro(), &d, &[]);
    let l = m2.call("workspace_list", json!({}));
    assert!(l["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w["workspace_id"] == id.as_str()));
    let r = m2.call(
        "workspace_file_read",
        json!({"workspace_id": id, "path": "state.txt"}),
    );
    assert_eq!(r["content"], "kept\n");
    m2.close();

    // A killed VMM: the workspace reads stopped, files intact, and the next
    // operation boots it again and says so.
    let pid = ok(&["status", &id])["vmm_pid"].as_i64().unwrap();
    // SAFETY: kill(2) signalling the workspace's VMM; no memory is involved.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    while pid_alive(pid) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let st = ok(&["status", &id]);
    assert_eq!(st["state"], "stopped", "{st}");
    assert!(
        st["last_error"]
            .as_str()
            .unwrap()
            .contains("no longer running"),
        "{st}"
    );
    let r = exec(&id, "cat state.txt");
    assert_eq!(r["stdout"], "kept\n");
    assert!(
        r["restarted_vm"]
            .as_str()
            .unwrap()
            .contains("booted it again"),
        "{r}"
    );
    let st = ok(&["status", &id]);
    assert_eq!(st["state"], "started");
    assert_eq!(st["restart_count"], 1);
    let new_pid = st["vmm_pid"].as_i64().unwrap();
    ok(&["delete", &id]);
    assert!(
        !pid_alive(new_pid),
        "delete stops the VMM: {:?}",
        std::fs::read_to_string(format!("/proc/{new_pid}/status"))
    );
    assert!(!pyro_home().join("workspaces").join(&id).exists());
}

/// Sleeps until the wall clock has passed `t`.
fn wait_past(t: f64) {
    while now() <= t {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn list_entry(id: &str) -> (Value, Value) {
    let l = ok(&["list"]);
    let w = l["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["workspace_id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed: {l}"))
        .clone();
    (w, l)
}

#[test]
#[ignore = "boots VMs: run with `make test`"]
fn inactivity_stops_the_vm_keeps_the_disk_and_retention_deletes_it() {
    let _vm = VmGuard::new();
    const TTL: f64 = 6.0;
    let v = ok(&[
        "create",
        ENV,
        "--ttl-seconds",
        "6",
        "--retention-seconds",
        "5",
    ]);
    let id = v["workspace_id"].as_str().unwrap().to_string();
    assert_eq!(v["retention_seconds"], 5, "{v}");
    let created = v["created_at"].as_f64().unwrap();

    // Everything it keeps is its user's alone: directories 0700, files and
    // sockets 0600.
    let home = pyro_home();
    let d = home.join("workspaces").join(&id);
    for p in [
        home.clone(),
        home.join("workspaces"),
        d.clone(),
        d.join("vm"),
    ] {
        assert_eq!(mode(&p), 0o700, "{}", p.display());
    }
    for f in [
        "workspace.json",
        "baseline.tar",
        "baseline.json",
        "vm/vm.json",
        "vm/scratch.ext4",
        "vm/serial.log",
        "vm/vmm.log",
        "vm/vsock.sock",
        "vm/control.sock",
    ] {
        assert_eq!(mode(&d.join(f)), 0o600, "{f}");
    }
    let slots: Vec<_> = std::fs::read_dir(home.join("vms"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    assert!(!slots.is_empty());
    for s in &slots {
        assert_eq!(mode(s), 0o600, "{}", s.display());
    }

    // Activity halfway through the TTL: the TTL counts from it, so the
    // workspace outlives creation + TTL.
    wait_past(created + 3.0);
    exec(&id, "echo kept > kept.txt");
    assert_eq!(mode(&d.join("commands")), 0o700);
    for f in ["activity", "events.jsonl", "commands/000001.json"] {
        assert_eq!(mode(&d.join(f)), 0o600, "{f}");
    }
    let last = ok(&["status", &id])["last_activity_at"].as_f64().unwrap();
    assert!(last > created + 3.0);
    wait_past(created + TTL + 0.2);
    assert!(now() < last + TTL, "the host was too slow to tell");
    let (w, l) = list_entry(&id);
    assert_eq!(w["state"], "started", "{l}");

    // Past it: the VM is stopped, the disk and everything else kept.
    let pid = ok(&["status", &id])["vmm_pid"].as_i64().unwrap();
    wait_past(last + TTL + 0.1);
    let (w, l) = list_entry(&id);
    assert_eq!(w["state"], "expired", "{l}");
    assert_eq!(l["expired_stopped"], json!([id]), "{l}");
    assert!(w["delete_after"].as_f64().unwrap() >= w["expired_at"].as_f64().unwrap() + 5.0);
    assert!(!pid_alive(pid), "the expired workspace's VMM was stopped");
    assert!(d.join("vm/scratch.ext4").exists());
    let st = ok(&["status", &id]);
    assert_eq!(st["state"], "expired", "{st}");
    assert!(st["vmm_pid"].is_null());

    // Any operation boots it again, files intact, and ends the expiry.
    let r = exec(&id, "cat kept.txt");
    assert_eq!(r["stdout"], "kept\n");
    assert!(
        r["restarted_vm"].as_str().unwrap().contains("had expired"),
        "{r}"
    );
    let st = ok(&["status", &id]);
    assert_eq!(st["state"], "started", "{st}");
    assert!(st["expired_at"].is_null(), "{st}");

    // Left alone again: expired, then deleted once the retention is over.
    let last = st["last_activity_at"].as_f64().unwrap();
    wait_past(last + TTL + 0.1);
    let (w, _) = list_entry(&id);
    assert_eq!(w["state"], "expired");
    wait_past(w["delete_after"].as_f64().unwrap() + 0.5);
    // The reaper also needs its own measure of the 5 s (CLOCK_BOOTTIME),
    // which the wall clock just showed have passed.
    let l = ok(&["list"]);
    assert_eq!(l["expired_deleted"], json!([id]), "{l}");
    assert!(!d.exists(), "disk, sockets and history removed");
    let e = fails(&["exec", &id, "--", "true"]);
    assert!(e.contains("does not exist"), "{e}");
}

#[test]
#[ignore = "boots VMs: run with `make test`"]
fn vm_starts_past_the_host_caps_are_refused_naming_the_running_vms() {
    let _vm = VmGuard::new();
    let holder = create(None, &["--name", "cap-holder"]);
    let with_caps = |caps: &[(&str, &str)], args: &[&str]| {
        let mut c = pyro_cmd();
        c.args(args);
        for (k, v) in caps {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (
            out.status.code(),
            v,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let before = std::fs::read_dir(pyro_home().join("workspaces"))
        .unwrap()
        .count();
    for (caps, why) in [
        (
            &[("PYRO_MAX_VMS", "1")][..],
            "at most 1 may run at once (PYRO_MAX_VMS)",
        ),
        (
            &[("PYRO_MAX_GUEST_MEM_MIB", "1500")][..],
            "over the cap of 1500 MiB",
        ),
    ] {
        for args in [
            &["workspace", "create", ENV, "--json"][..],
            &["run", ENV, "--json", "--", "true"],
        ] {
            let (code, v, err) = with_caps(caps, args);
            assert_ne!(code, Some(0), "{args:?}: {v} {err}");
            let e = v["error"].as_str().unwrap_or(&err).to_string();
            assert!(e.contains(why), "{args:?}: {e}");
            assert!(
                e.contains(&format!("workspace {holder} (\"cap-holder\") (1024 MiB)")),
                "{args:?}: {e}"
            );
        }
    }
    // Refused before anything was made.
    assert_eq!(
        std::fs::read_dir(pyro_home().join("workspaces"))
            .unwrap()
            .count(),
        before
    );
    // The holder's place is freed when it goes.
    ok(&["delete", &holder]);
    let (code, v, err) = with_caps(
        &[("PYRO_MAX_VMS", "1")],
        &["run", ENV, "--json", "--", "true"],
    );
    assert_eq!(code, Some(0), "{v} {err}");
}

#[test]
#[ignore = "boots VMs: run with `make test`"]
fn parallel_workspaces_are_isolated() {
    let _vm = VmGuard::new();
    let d = TempDir::new("ws-parallel");
    write_file(&d.join("seed/shared.txt"), b"base\n");
    let seed = d.join("seed");
    let kids: Vec<(String, Child)> = ["alpha", "beta", "gamma"]
        .iter()
        .map(|n| {
            let c = pyro_cmd()
                .args([
                    "workspace",
                    "create",
                    ENV,
                    "--json",
                    "--name",
                    n,
                    "--label",
                    &format!("branch={n}"),
                    "--seed-path",
                ])
                .arg(&seed)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (n.to_string(), c)
        })
        .collect();
    let ids: Vec<(String, String)> = kids
        .into_iter()
        .map(|(n, c)| {
            let out = c.wait_with_output().unwrap();
            let v: Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
            (n, v["workspace_id"].as_str().unwrap().to_string())
        })
        .collect();
    for (n, id) in &ids {
        ok(&[
            "file",
            "write",
            id,
            "shared.txt",
            "--text",
            &format!("{n}\n"),
        ]);
    }
    for (n, id) in &ids {
        assert_eq!(
            exec(id, "cat shared.txt; hostname")["stdout"],
            format!("{n}\npyro\n")
        );
        let diff = ok(&["diff", id]);
        assert_eq!(diff["summary"]["modified"], 1);
    }
    let listed = |id: &str| {
        ok(&["list"])["workspaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["workspace_id"] == id)
    };
    for (_, id) in &ids {
        assert!(listed(id));
        ok(&["delete", id]);
        assert!(!listed(id));
    }
}

/// Runs git on the host (inside the test host, the host's own git through
/// the shared /usr; `make test-vm` shares it).
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=pyro tests",
            "-c",
            "user.email=tests@pyro.invalid",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "protocol.file.allow=always",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("git is needed for this test: {e}"));
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `find /workspace` inside the workspace, as sorted relative paths.
fn guest_tree(m: &mut Mcp, id: &str) -> Vec<String> {
    let r = m.call(
        "workspace_exec",
        json!({"workspace_id": id, "command": "cd /workspace && find . -mindepth 1 | sort"}),
    );
    assert_eq!(r["exit_code"], 0, "{r}");
    r["stdout"]
        .as_str()
        .unwrap()
        .lines()
        .map(|l| l.trim_start_matches("./").to_string())
        .collect()
}

/// A server started in `cwd` with `extra` seeds a new workspace from the
/// checkout the test below makes: what Git sees of it, untracked files
/// included, without `.git` or what `.gitignore` names.
fn create_from_checkout(cwd: &Path, extra: &[&str]) -> (Mcp, String) {
    let mut m = Mcp::start(pyro(), cwd, extra);
    let r = m.call("workspace_create", json!({"environment": ENV}));
    let id = workspace_id(&r);
    assert_eq!(r["workspace_seed"]["mode"], "git_checkout", "{r}");
    assert_eq!(
        guest_tree(&mut m, &id),
        [".gitignore", "README.md", "notes.txt", "src", "src/lib.rs"]
    );
    (m, id)
}

#[test]
#[ignore = "boots VMs: run with `make test`"]
fn seeds_from_the_detected_checkout_and_from_a_repo_url() {
    let _vm = VmGuard::new();
    let d = TempDir::new("ws-git");
    let pyro_bin = pyro();
    // A checkout with a commit, a tag, then a second commit, an ignored
    // build directory and an untracked file.
    let co = d.join("checkout");
    std::fs::create_dir_all(&co).unwrap();
    git(&co, &["init", "-q"]);
    write_file(&co.join("src/lib.rs"), b"pub fn v() -> u32 { 1 }\n");
    write_file(&co.join(".gitignore"), b"target/\n");
    git(&co, &["add", "."]);
    git(&co, &["commit", "-q", "-m", "v1"]);
    git(&co, &["tag", "v1"]);
    let v1 = git(&co, &["rev-parse", "HEAD"]);
    write_file(&co.join("src/lib.rs"), b"pub fn v() -> u32 { 2 }\n");
    write_file(&co.join("README.md"), b"two\n");
    git(&co, &["add", "."]);
    git(&co, &["commit", "-q", "-m", "v2"]);
    write_file(&co.join("target/debug/big.bin"), [0u8; 4096]);
    write_file(&co.join("notes.txt"), b"untracked\n");
    let bare = d.join("origin.git");
    git(
        &d,
        &["clone", "-q", "--bare", co.to_str().unwrap(), "origin.git"],
    );

    // Started inside the checkout (a subdirectory).
    let (mut m, id) = create_from_checkout(&co.join("src"), &[]);
    let lib = m.call(
        "workspace_file_read",
        json!({"workspace_id": id, "path": "src/lib.rs"}),
    );
    assert_eq!(lib["content"], "pub fn v() -> u32 { 2 }\n", "{lib}");
    // The seed is the baseline.
    assert_eq!(
        m.call("workspace_diff", json!({"workspace_id": id}))["changed"],
        false
    );
    m.call("workspace_delete", json!({"workspace_id": id}));
    m.close();

    // --project-path names the same checkout from elsewhere.
    let (mut m, id) = create_from_checkout(&d, &["--project-path", co.to_str().unwrap()]);
    m.call("workspace_delete", json!({"workspace_id": id}));
    m.close();

    // --repo-url with --repo-ref: a clean clone at the tag, none of the
    // checkout's untracked or ignored files.
    let url = format!("file://{}", bare.display());
    let mut m = Mcp::start(pyro_bin, &d, &["--repo-url", &url, "--repo-ref", "v1"]);
    let r = m.call("workspace_create", json!({"environment": ENV}));
    let id = workspace_id(&r);
    assert_eq!(r["workspace_seed"]["mode"], "repo_clone", "{r}");
    assert_eq!(r["workspace_seed"]["commit"], v1.as_str(), "{r}");
    assert_eq!(guest_tree(&mut m, &id), [".gitignore", "src", "src/lib.rs"]);
    let lib = m.call(
        "workspace_file_read",
        json!({"workspace_id": id, "path": "src/lib.rs"}),
    );
    assert_eq!(lib["content"], "pub fn v() -> u32 { 1 }\n", "{lib}");
    m.call("workspace_delete", json!({"workspace_id": id}));
    m.close();

    // A ref the repository does not have: a clear error, nothing created.
    let before = ok(&["list"])["count"].clone();
    let mut m = Mcp::start(
        pyro_bin,
        &d,
        &["--repo-url", &url, "--repo-ref", "no-such-ref"],
    );
    let e = m.call_err("workspace_create", json!({"environment": ENV}));
    assert!(e.contains("no-such-ref"), "{e}");
    m.close();
    assert_eq!(ok(&["list"])["count"], before);
}

/// Pids of the `pyro vmm` processes serving workspace `id`, whatever
/// spelling of PYRO_HOME started them.
fn vmm_pids(id: &str) -> Vec<i32> {
    vmm_pids_of(&format!("workspaces/{id}/vm/vm.json"))
}

/// `pyro workspace ARGS --json` with PYRO_HOME spelt `home`.
fn ok_in(home: &Path, args: &[&str]) -> Value {
    let out = pyro_cmd()
        .env("PYRO_HOME", home)
        .args(workspace_args(args))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?} with PYRO_HOME={}: {}\n{}",
        home.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
#[ignore = "boots VMs: run with `make test`"]
fn two_spellings_of_pyro_home_never_boot_a_second_vmm() {
    let _vm = VmGuard::new();
    let home = pyro_home().canonicalize().unwrap();
    let d = TempDir::new("ws-spellings");
    // Another path to the same PYRO_HOME: a symlink, and a bind mount
    // where this test may mount (root in the test host).
    let link = d.join("home-link");
    std::os::unix::fs::symlink(&home, &link).unwrap();
    let bind = d.join("home-bind");
    std::fs::create_dir(&bind).unwrap();
    let mounted = Command::new("mount")
        .arg("--bind")
        .arg(&home)
        .arg(&bind)
        .status()
        .is_ok_and(|s| s.success());
    let mut spellings = vec![link.clone()];
    if mounted {
        spellings.push(bind.clone());
    } else {
        eprintln!("note: cannot bind-mount here; testing the symlinked spelling only");
    }

    let id = create(None, &[]);
    let pid = ok(&["status", &id])["vmm_pid"].as_i64().unwrap();
    assert_eq!(vmm_pids(&id), [pid as i32]);
    for other in &spellings {
        // The VMM started through one spelling serves the other: no second
        // boot, the same pid.
        let r = ok_in(other, &["exec", &id, "--", "sh", "-c", "echo via-other"]);
        assert_eq!(r["stdout"], "via-other\n", "{r}");
        assert!(r.get("restarted_vm").is_none(), "booted again: {r}");
        let st = ok_in(other, &["status", &id]);
        assert_eq!(
            (st["state"].clone(), st["vmm_pid"].as_i64()),
            (json!("started"), Some(pid))
        );
        assert_eq!(vmm_pids(&id), [pid as i32]);
    }

    // A VMM booted through the other spelling is alive for this one too.
    // SAFETY: kill(2) signalling the workspace's VMM; no memory is involved.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    while pid_alive(pid) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let r = ok_in(&link, &["exec", &id, "--", "true"]);
    assert!(r["restarted_vm"].is_string(), "{r}");
    let new_pid = ok_in(&link, &["status", &id])["vmm_pid"].as_i64().unwrap();
    let r = exec(&id, "echo via-canonical");
    assert_eq!(r["stdout"], "via-canonical\n");
    assert!(r.get("restarted_vm").is_none(), "booted again: {r}");
    assert_eq!(ok(&["status", &id])["vmm_pid"].as_i64(), Some(new_pid));
    assert_eq!(vmm_pids(&id), [new_pid as i32]);

    // Deleting through the other spelling stops that VMM.
    ok_in(spellings.last().unwrap(), &["delete", &id]);
    assert!(!pid_alive(new_pid), "delete stopped the VMM");
    assert!(vmm_pids(&id).is_empty());
    if mounted {
        let _ = Command::new("umount").arg(&bind).status();
    }
}

#[test]
#[ignore = "boots VMs: run with `make test`"]
fn cancelling_a_stuck_exec_frees_the_workspace_and_kills_the_command() {
    let _vm = VmGuard::new();
    let d = TempDir::new("ws-cancel");
    let mut m = Mcp::start(pyro(), &d, &[]);
    let id = workspace_id(&m.call("workspace_create", json!({"environment": ENV})));
    let stuck = m.start_call(
        "workspace_exec",
        json!({"workspace_id": id, "command": "touch /workspace/started; sleep 1000",
               "timeout_seconds": 3600}),
    );
    // Wait until the exec holds the workspace, then give the guest time to
    // start the command (checked below: `started` must exist).
    let lock = pyro_home().join("workspaces").join(&id).join("lock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !std::fs::read_to_string(&lock)
        .unwrap_or_default()
        .starts_with("exec `touch")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the exec never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_secs(5));
    m.notify(
        "notifications/cancelled",
        json!({"requestId": stuck, "reason": "test"}),
    );
    // The next call on the workspace gets its lock at once (it would wait
    // up to 10 minutes behind the stuck call), and the command is gone.
    let cancelled_at = std::time::Instant::now();
    let count = "test -e /workspace/started && echo started; \
                 for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done \
                 | grep -c '^sleep 1000' || true";
    let r = m.call(
        "workspace_exec",
        json!({"workspace_id": id, "command": count}),
    );
    let took = cancelled_at.elapsed();
    assert!(took < std::time::Duration::from_secs(60), "waited {took:?}");
    let out = r["stdout"].as_str().unwrap().to_string();
    assert!(out.starts_with("started\n"), "the command never ran: {out}");
    // The guest kills it as soon as the connection closes; allow the
    // check to race that by a little.
    let mut left = out.lines().nth(1).unwrap_or("").to_string();
    for _ in 0..20 {
        if left == "0" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
        let r = m.call(
            "workspace_exec",
            json!({"workspace_id": id, "command": count}),
        );
        left = r["stdout"]
            .as_str()
            .unwrap()
            .lines()
            .nth(1)
            .unwrap_or("")
            .to_string();
    }
    assert_eq!(left, "0", "`sleep 1000` still runs in the guest");
    // The cancelled call got no answer (MCP: none is sent after a cancel).
    assert!(!m.answered(stuck), "the cancelled call was answered");
    m.call("workspace_delete", json!({"workspace_id": id}));
    m.close();
}
