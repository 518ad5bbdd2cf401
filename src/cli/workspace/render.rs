//! Human output of `pyro workspace ...`: what each subcommand prints when
//! `--json` is not given.

use crate::cli::print_json;
use serde_json::Value as Json;

fn s(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Null => "-".into(),
        other => other.to_string(),
    }
}

fn workspace_human(v: &Json, action: &str) {
    println!("{action}: {}", s(&v["workspace_id"]));
    if let Some(n) = v["name"].as_str() {
        println!("Name: {n}");
    }
    if let Some(l) = v["labels"].as_object().filter(|l| !l.is_empty()) {
        let parts: Vec<String> = l.iter().map(|(k, x)| format!("{k}={}", s(x))).collect();
        println!("Labels: {}", parts.join(", "));
    }
    println!(
        "Environment: {} ({})",
        s(&v["environment"]),
        s(&v["environment_version"])
    );
    println!("State: {}", s(&v["state"]));
    if let Some(e) = v["last_error"].as_str() {
        println!("Note: {e}");
    }
    println!("Workspace: {}", s(&v["workspace_path"]));
    let seed = &v["workspace_seed"];
    match seed["seed_path"].as_str() {
        Some(p) => println!(
            "Seed: {} from {p} ({} entries, {} bytes)",
            s(&seed["mode"]),
            s(&seed["entry_count"]),
            s(&seed["bytes_written"])
        ),
        None => println!("Seed: {}", s(&seed["mode"])),
    }
    println!(
        "Resources: {} vCPU / {} MiB",
        s(&v["vcpu_count"]),
        s(&v["mem_mib"])
    );
    println!(
        "Disk: {} bytes allocated on the host",
        s(&v["disk"]["allocated_bytes"])
    );
    if v["state"] == "expired" {
        println!(
            "Expired at: {} (no activity for {} s); disk kept, deleted not before {} (retention {} s) unless used",
            s(&v["expired_at"]),
            s(&v["ttl_seconds"]),
            s(&v["delete_after"]),
            s(&v["retention_seconds"])
        );
    } else {
        println!(
            "Expires at: {} ({} s after the last activity; then the VM stops and the disk is kept {} s)",
            s(&v["expires_at"]),
            s(&v["ttl_seconds"]),
            s(&v["retention_seconds"])
        );
    }
    if let Some(m) = v["metadata_recovered"].as_str() {
        println!("Metadata: {m}");
    }
    println!(
        "Commands: {}  Resets: {}",
        s(&v["command_count"]),
        s(&v["reset_count"])
    );
    if v["last_command"].is_object() {
        println!(
            "Last command: {} (exit_code={})",
            s(&v["last_command"]["command"]),
            s(&v["last_command"]["exit_code"])
        );
    }
}

pub(super) fn human(sub: &str, v: &Json) {
    use std::io::Write;
    if let Some(r) = v["restarted_vm"].as_str() {
        eprintln!("[workspace] note: {r}");
    }
    match sub {
        "create" => workspace_human(v, "Workspace"),
        "status" => workspace_human(v, "Workspace"),
        "update" => workspace_human(v, "Updated workspace"),
        "reset" => {
            workspace_human(v, "Reset workspace");
            let r = &v["workspace_reset"];
            println!(
                "Restored: {} ({} entries, {} bytes)",
                s(&r["snapshot_name"]),
                s(&r["entry_count"]),
                s(&r["bytes_written"])
            );
        }
        "list" => {
            let items = v["workspaces"].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                println!("No workspaces.");
            }
            for w in items {
                let name = w["name"].as_str().map(|n| format!(" name={n:?}")).unwrap_or_default();
                let labels = w["labels"]
                    .as_object()
                    .filter(|l| !l.is_empty())
                    .map(|l| {
                        format!(
                            " labels={}",
                            l.iter().map(|(k, x)| format!("{k}={}", s(x))).collect::<Vec<_>>().join(",")
                        )
                    })
                    .unwrap_or_default();
                if w["state"] == "damaged" {
                    println!(
                        "[workspace] workspace_id={} state=damaged damage={:?}",
                        s(&w["workspace_id"]),
                        s(&w["damage"])
                    );
                    continue;
                }
                let when = if w["state"] == "expired" {
                    format!("delete_after={}", s(&w["delete_after"]))
                } else {
                    format!("expires_at={}", s(&w["expires_at"]))
                };
                println!(
                    "[workspace] workspace_id={}{name} state={} environment={}{labels} commands={} {when}",
                    s(&w["workspace_id"]),
                    s(&w["state"]),
                    s(&w["environment"]),
                    s(&w["command_count"]),
                );
            }
        }
        "exec" => {
            let _ = std::io::stdout().write_all(v["stdout"].as_str().unwrap_or("").as_bytes());
            let _ = std::io::stdout().flush();
            eprint!("{}", v["stderr"].as_str().unwrap_or(""));
            for stream in ["stdout", "stderr"] {
                if v[format!("{stream}_truncated")] == true {
                    eprintln!(
                        "[workspace-exec] note: {stream} was truncated ({} bytes produced)",
                        s(&v[format!("{stream}_bytes")])
                    );
                }
            }
            eprintln!(
                "[workspace-exec] workspace_id={} sequence={} cwd={} exit_code={} duration_ms={}",
                s(&v["workspace_id"]),
                s(&v["sequence"]),
                s(&v["cwd"]),
                s(&v["exit_code"]),
                s(&v["duration_ms"])
            );
        }
        "sync push" => {
            let w = &v["workspace_sync"];
            println!(
                "[workspace-sync] workspace_id={} mode={} source={} destination={} entry_count={} bytes_written={}",
                s(&v["workspace_id"]),
                s(&w["mode"]),
                s(&w["source_path"]),
                s(&w["destination"]),
                s(&w["entry_count"]),
                s(&w["bytes_written"])
            );
        }
        "file list" => {
            println!("Workspace path: {} (recursive={})", s(&v["path"]), s(&v["recursive"]));
            let entries = v["entries"].as_array().cloned().unwrap_or_default();
            if entries.is_empty() {
                println!("No entries.");
            }
            for e in entries {
                let link = e["link_target"].as_str().map(|t| format!(" -> {t}")).unwrap_or_default();
                println!("{} [{}] size={}{link}", s(&e["path"]), s(&e["artifact_type"]), s(&e["size_bytes"]));
            }
        }
        "file read" => {
            let content = v["content"].as_str().unwrap_or("");
            print!("{content}");
            if !content.is_empty() && !content.ends_with('\n') {
                println!();
            }
            eprintln!(
                "[workspace-file-read] workspace_id={} path={} size_bytes={} encoding={} truncated={}",
                s(&v["workspace_id"]),
                s(&v["path"]),
                s(&v["size_bytes"]),
                s(&v["encoding"]),
                s(&v["truncated"])
            );
        }
        "file write" => println!(
            "[workspace-file-write] workspace_id={} path={} bytes_written={}",
            s(&v["workspace_id"]),
            s(&v["path"]),
            s(&v["bytes_written"])
        ),
        "patch apply" => {
            let m = &v["summary"];
            println!(
                "[workspace-patch] workspace_id={} total={} added={} modified={} deleted={} renamed={}",
                s(&v["workspace_id"]),
                s(&m["total"]),
                s(&m["added"]),
                s(&m["modified"]),
                s(&m["deleted"]),
                s(&m["renamed"])
            );
        }
        "diff" => {
            if v["changed"] != true {
                println!("No changes against the baseline.");
                return;
            }
            let m = &v["summary"];
            println!(
                "[workspace-diff] workspace_id={} total={} added={} modified={} deleted={} type_changed={} text_patched={} non_text={}",
                s(&v["workspace_id"]),
                s(&m["total"]),
                s(&m["added"]),
                s(&m["modified"]),
                s(&m["deleted"]),
                s(&m["type_changed"]),
                s(&m["text_patched"]),
                s(&m["non_text"])
            );
            print!("{}", v["patch"].as_str().unwrap_or(""));
            if v["truncated"] == true {
                let b = &v["budget"];
                println!(
                    "[workspace-diff] truncated: {} file(s) over the diff budget ({} bytes, {} files) are listed with hashes only; see --json",
                    s(&b["files_over_budget"]),
                    s(&b["max_bytes"]),
                    s(&b["max_files"])
                );
            }
        }
        "export" => println!(
            "[workspace-export] workspace_id={} workspace_path={} output_path={} artifact_type={} entry_count={} bytes_written={}",
            s(&v["workspace_id"]),
            s(&v["workspace_path"]),
            s(&v["output_path"]),
            s(&v["artifact_type"]),
            s(&v["entry_count"]),
            s(&v["bytes_written"])
        ),
        "logs" => {
            let entries = v["entries"].as_array().cloned().unwrap_or_default();
            if entries.is_empty() {
                println!("No commands since the last reset.");
            }
            for e in entries {
                println!(
                    "#{} exit_code={} duration_ms={}",
                    s(&e["sequence"]),
                    s(&e["exit_code"]),
                    s(&e["duration_ms"])
                );
                println!("$ {}", s(&e["command"]));
                for stream in ["stdout", "stderr"] {
                    let body = e[stream].as_str().unwrap_or("");
                    if !body.is_empty() {
                        print!("{body}");
                        if !body.ends_with('\n') {
                            println!();
                        }
                    }
                }
            }
        }
        "summary" => {
            println!("{}", s(&v["headline"]));
            println!("Workspace: {} state={}", s(&v["workspace_id"]), s(&v["state"]));
            for c in v["commands"]["entries"].as_array().cloned().unwrap_or_default() {
                println!(
                    "  #{} exit_code={} {}ms  $ {}",
                    s(&c["sequence"]),
                    s(&c["exit_code"]),
                    s(&c["duration_ms"]),
                    s(&c["command"])
                );
            }
            for c in v["changes"]["entries"].as_array().cloned().unwrap_or_default() {
                println!(
                    "  {} {}{}",
                    s(&c["status"]),
                    s(&c["path"]),
                    if c["binary"] == true { " (binary)" } else { "" }
                );
            }
            for (key, label) in [
                ("syncs", "sync push"),
                ("file_edits", "file write"),
                ("patch_applies", "patch apply"),
                ("exports", "export"),
            ] {
                let n = v[key].as_array().map(|a| a.len()).unwrap_or(0);
                if n > 0 {
                    println!("  {label}: {n}");
                }
            }
        }
        "delete" => println!("Deleted workspace: {}", s(&v["workspace_id"])),
        _ => print_json(v),
    }
}
