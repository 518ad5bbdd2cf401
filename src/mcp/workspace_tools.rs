//! The `workspace_*` tools of `workspace-core`: argument tables and thin
//! calls into the workspace engine, which returns the same JSON objects
//! `pyro workspace ... --json` prints.

use super::project::ProjectSource;
use super::schema::{Arg, Kind};
use super::tools::{CallContext, Outcome, Tool};
use crate::engine::cancel;
use crate::engine::environments::CATALOG;
use crate::engine::workspace::lifecycle::{self, CreateRequest};
use crate::engine::workspace::seed::SeedSource;
use crate::engine::workspace::{export, files, DEFAULT_READ_MAX_BYTES, FILE_MAX_BYTES};
use crate::engine::Result;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

fn workspace_id() -> Arg {
    Arg {
        name: "workspace_id",
        description: "The workspace's id, as workspace_create or workspace_list returned it.",
        kind: Kind::String {
            min_len: 1,
            one_of: None,
        },
        default: None,
    }
}

fn string(name: &'static str, description: &'static str) -> Arg {
    Arg {
        name,
        description,
        kind: Kind::String {
            min_len: 1,
            one_of: None,
        },
        default: None,
    }
}

fn optional(name: &'static str, description: &'static str, kind: Kind) -> Arg {
    Arg {
        name,
        description,
        kind,
        default: Some(Value::Null),
    }
}

fn with_default(name: &'static str, description: &'static str, kind: Kind, d: Value) -> Arg {
    Arg {
        name,
        description,
        kind,
        default: Some(d),
    }
}

/// An output schema: an open object with these fields required.
fn output(fields: &[(&str, &str)]) -> Value {
    let props: Map<String, Value> = fields
        .iter()
        .map(|(k, t)| (k.to_string(), json!({"type": t})))
        .collect();
    let required: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
    json!({"type": "object", "properties": props, "required": required, "additionalProperties": true})
}

const WORKSPACE_FIELDS: &[(&str, &str)] = &[
    ("workspace_id", "string"),
    ("environment", "string"),
    ("state", "string"),
    ("workspace_path", "string"),
    ("workspace_seed", "object"),
    ("created_at", "number"),
    ("expires_at", "number"),
    ("command_count", "integer"),
    ("reset_count", "integer"),
];

fn tool(
    name: &'static str,
    title: &'static str,
    description: &'static str,
    args: Vec<Arg>,
    out: Value,
    read_only: bool,
    destructive: bool,
) -> Tool {
    Tool {
        name,
        title,
        description,
        args,
        output_schema: out,
        read_only,
        destructive,
    }
}

/// Every workspace-core workspace tool.
pub fn tools() -> Vec<Tool> {
    let envs: Vec<String> = CATALOG.iter().map(|e| e.name.to_string()).collect();
    vec![
        tool(
            "workspace_create",
            "Create a persistent workspace",
            "Create and boot a persistent Linux microVM workspace whose /workspace survives between \
             calls until workspace_delete or its TTL. Seeded from seed_path (a host directory or \
             .tar/.tar.gz archive) or, when seed_path is omitted, from the project this server was \
             started for (the Git checkout it runs in, --project-path, or a clean clone of \
             --repo-url); empty when there is none. The seeded tree is the baseline that \
             workspace_diff compares against and workspace_reset returns to. The guest has no network.",
            vec![
                with_default(
                    "environment",
                    "Environment to boot (must be installed on the host).",
                    Kind::String {
                        min_len: 1,
                        one_of: Some(envs),
                    },
                    json!(lifecycle::DEFAULT_ENVIRONMENT),
                ),
                with_default(
                    "vcpu_count",
                    "Virtual CPUs.",
                    Kind::Integer { min: 1, max: 32 },
                    json!(lifecycle::DEFAULT_VCPU_COUNT),
                ),
                with_default(
                    "mem_mib",
                    "Guest memory in MiB.",
                    Kind::Integer { min: 256, max: 65536 },
                    json!(lifecycle::DEFAULT_MEM_MIB),
                ),
                with_default(
                    "ttl_seconds",
                    "Seconds from creation after which the workspace (VM, disk, history) is deleted.",
                    Kind::Integer {
                        min: 1,
                        max: lifecycle::MAX_TTL_SECONDS as i64,
                    },
                    json!(lifecycle::DEFAULT_TTL_SECONDS),
                ),
                with_default(
                    "allow_host_compat",
                    "Accepted for compatibility; a workspace always needs a VM (only vm_run can fall back to the host).",
                    Kind::Boolean,
                    json!(false),
                ),
                optional(
                    "seed_path",
                    "Host directory or .tar/.tar.gz/.tgz archive to copy into /workspace. Omit to use the server's project source.",
                    Kind::String {
                        min_len: 1,
                        one_of: None,
                    },
                ),
                optional(
                    "name",
                    "Optional unique human-friendly name (up to 120 characters).",
                    Kind::String {
                        min_len: 1,
                        one_of: None,
                    },
                ),
                optional(
                    "labels",
                    "Optional labels for finding the workspace later, e.g. {\"issue\": \"123\"}.",
                    Kind::StringMap,
                ),
            ],
            output(WORKSPACE_FIELDS),
            false,
            false,
        ),
        tool(
            "workspace_list",
            "List workspaces",
            "List the persistent workspaces on this host (any process's), most recently active first, with name, labels, state and expiry. Expired workspaces are deleted first.",
            vec![],
            output(&[("count", "integer"), ("workspaces", "array")]),
            true,
            false,
        ),
        tool(
            "workspace_update",
            "Rename or relabel a workspace",
            "Change a workspace's name or labels: set name, clear_name, merge labels, or remove clear_labels keys.",
            vec![
                workspace_id(),
                optional(
                    "name",
                    "New unique name.",
                    Kind::String {
                        min_len: 1,
                        one_of: None,
                    },
                ),
                with_default("clear_name", "Remove the name.", Kind::Boolean, json!(false)),
                optional("labels", "Labels to add or change.", Kind::StringMap),
                optional("clear_labels", "Label keys to remove.", Kind::StringList),
            ],
            output(WORKSPACE_FIELDS),
            false,
            false,
        ),
        tool(
            "workspace_status",
            "Show a workspace",
            "State (started or stopped), resources, seed, expiry, disk use and the last command of one workspace.",
            vec![workspace_id()],
            output(WORKSPACE_FIELDS),
            true,
            false,
        ),
        tool(
            "workspace_sync_push",
            "Copy host files into a workspace",
            "Copy a host directory or .tar/.tar.gz/.tgz archive into /workspace (or dest inside it), replacing files of the same name. Checked before anything is sent: special files, hard links, '..' or absolute members and symlinks leading out are refused.",
            vec![
                workspace_id(),
                string("source_path", "Host directory or archive to copy."),
                with_default(
                    "dest",
                    "Destination directory inside /workspace (absolute under /workspace or relative to it).",
                    Kind::String {
                        min_len: 1,
                        one_of: None,
                    },
                    json!("/workspace"),
                ),
            ],
            output(&[("workspace_id", "string"), ("workspace_sync", "object")]),
            false,
            false,
        ),
        tool(
            "workspace_exec",
            "Run a command in a workspace",
            "Run one shell command (/bin/sh -c) in /workspace of a persistent workspace and return its exit code, stdout and stderr. Files persist between calls. A nonzero exit code is a result, not a tool error. A stopped workspace is booted again first.",
            vec![
                workspace_id(),
                string("command", "Shell command line."),
                with_default(
                    "timeout_seconds",
                    "Kill the command after this many seconds (exit_code 124, timed_out true).",
                    Kind::Integer {
                        min: 1,
                        max: files::MAX_TIMEOUT_SECONDS as i64,
                    },
                    json!(files::DEFAULT_TIMEOUT_SECONDS),
                ),
            ],
            output(&[
                ("workspace_id", "string"),
                ("command", "string"),
                ("stdout", "string"),
                ("stderr", "string"),
                ("exit_code", "integer"),
                ("duration_ms", "integer"),
                ("sequence", "integer"),
            ]),
            false,
            false,
        ),
        tool(
            "workspace_logs",
            "Command history of a workspace",
            "Every command run since the last reset: command, exit code, duration and output (long output keeps its start and end).",
            vec![workspace_id()],
            output(&[("workspace_id", "string"), ("count", "integer"), ("entries", "array")]),
            true,
            false,
        ),
        tool(
            "workspace_summary",
            "Review a workspace session",
            "One concise review of the session since the last reset (or creation): commands with exit codes and durations, files changed against the baseline, syncs, file writes, patch applies and exports.",
            vec![workspace_id()],
            output(&[("workspace_id", "string"), ("headline", "string"), ("commands", "object"), ("changes", "object")]),
            true,
            false,
        ),
        tool(
            "workspace_file_list",
            "List workspace files",
            "Files, directories and symlinks under a /workspace path (recursively with recursive). Symlinks are listed, never followed.",
            vec![
                workspace_id(),
                with_default(
                    "path",
                    "Path inside /workspace.",
                    Kind::String {
                        min_len: 1,
                        one_of: None,
                    },
                    json!("/workspace"),
                ),
                with_default("recursive", "Walk subdirectories.", Kind::Boolean, json!(false)),
            ],
            output(&[("workspace_id", "string"), ("path", "string"), ("entries", "array")]),
            true,
            false,
        ),
        tool(
            "workspace_file_read",
            "Read a workspace file",
            "Read up to max_bytes of one regular file under /workspace. UTF-8 text comes back as is (encoding \"utf-8\"); anything else as base64 (encoding \"base64\"). truncated says whether the file is longer.",
            vec![
                workspace_id(),
                string("path", "File path inside /workspace."),
                with_default(
                    "max_bytes",
                    "Most bytes to return.",
                    Kind::Integer {
                        min: 1,
                        max: FILE_MAX_BYTES as i64,
                    },
                    json!(DEFAULT_READ_MAX_BYTES),
                ),
            ],
            output(&[
                ("workspace_id", "string"),
                ("path", "string"),
                ("content", "string"),
                ("encoding", "string"),
                ("size_bytes", "integer"),
                ("truncated", "boolean"),
            ]),
            true,
            false,
        ),
        tool(
            "workspace_file_write",
            "Write a workspace file",
            "Create or replace one UTF-8 text file under /workspace (at most 1 MiB), creating missing parent directories. The old content is replaced atomically; symlinks and directories are not written through.",
            vec![
                workspace_id(),
                string("path", "File path inside /workspace."),
                Arg {
                    name: "text",
                    description: "The whole new content.",
                    kind: Kind::String {
                        min_len: 0,
                        one_of: None,
                    },
                    default: None,
                },
            ],
            output(&[("workspace_id", "string"), ("path", "string"), ("bytes_written", "integer")]),
            false,
            false,
        ),
        tool(
            "workspace_patch_apply",
            "Apply a patch in a workspace",
            "Apply a unified diff (diff -u or git diff: several files, new, deleted and renamed files) under /workspace. All or nothing: if any hunk does not apply, the error names the file and hunk and nothing changes.",
            vec![workspace_id(), string("patch", "The unified diff text (at most 1 MiB).")],
            output(&[("workspace_id", "string"), ("changed", "boolean"), ("summary", "object"), ("entries", "array")]),
            false,
            false,
        ),
        tool(
            "workspace_diff",
            "Diff a workspace against its baseline",
            "A unified diff of /workspace against the baseline (the tree right after seeding, or after the last reset): added, modified, deleted and type-changed paths; binary files are flagged, not diffed.",
            vec![workspace_id()],
            output(&[("workspace_id", "string"), ("changed", "boolean"), ("summary", "object"), ("entries", "array"), ("patch", "string")]),
            true,
            false,
        ),
        tool(
            "workspace_export",
            "Copy a workspace path to the host",
            "Copy one file, symlink or directory from /workspace to output_path on the host. Never replaces an existing output_path unless overwrite is true; nothing is written outside output_path. This is the only way results leave the VM.",
            vec![
                workspace_id(),
                string("path", "Path inside /workspace to export."),
                string("output_path", "Host path to create (absolute; relative paths resolve against the server's directory)."),
                with_default("overwrite", "Replace output_path if it exists.", Kind::Boolean, json!(false)),
            ],
            output(&[("workspace_id", "string"), ("workspace_path", "string"), ("output_path", "string"), ("artifact_type", "string")]),
            false,
            false,
        ),
        tool(
            "workspace_reset",
            "Reset a workspace to its baseline",
            "Recreate the workspace's VM on a fresh disk and restore /workspace from the baseline. Everything done since (files, installed packages, command history) is discarded.",
            vec![
                workspace_id(),
                with_default(
                    "snapshot",
                    "What to restore; workspace-core has only the baseline.",
                    Kind::String {
                        min_len: 1,
                        one_of: Some(vec!["baseline".into()]),
                    },
                    json!("baseline"),
                ),
            ],
            output(WORKSPACE_FIELDS),
            false,
            true,
        ),
        tool(
            "workspace_delete",
            "Delete a workspace",
            "Stop the workspace's VM and delete its disk, history and everything else. Export what you need first.",
            vec![workspace_id()],
            output(&[("workspace_id", "string"), ("deleted", "boolean")]),
            false,
            true,
        ),
    ]
}

fn str_arg<'a>(args: &'a Map<String, Value>, k: &str) -> &'a str {
    args.get(k).and_then(Value::as_str).unwrap_or_default()
}

fn opt_str(args: &Map<String, Value>, k: &str) -> Option<String> {
    args.get(k).and_then(Value::as_str).map(String::from)
}

fn int(args: &Map<String, Value>, k: &str) -> u64 {
    args.get(k).and_then(Value::as_f64).unwrap_or(0.0) as u64
}

fn map(args: &Map<String, Value>, k: &str) -> BTreeMap<String, String> {
    args.get(k)
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The seed a `workspace_create` without `seed_path` uses.
pub fn project_seed(p: &ProjectSource) -> SeedSource {
    match p {
        ProjectSource::None { .. } => SeedSource::Empty,
        ProjectSource::Detected { root, .. } => SeedSource::GitCheckout(root.clone()),
        ProjectSource::Path { path, git } => match git {
            Some(_) => SeedSource::GitCheckout(path.clone()),
            None => SeedSource::Path(path.to_string_lossy().into_owned()),
        },
        ProjectSource::Repo { url, git_ref } => SeedSource::Repo {
            url: url.clone(),
            git_ref: git_ref.clone(),
        },
    }
}

/// Runs workspace tool `name` with validated `args`.
pub fn call(name: &str, args: &Map<String, Value>, ctx: &CallContext) -> Outcome {
    // Cancelling the call reaches every wait and agent connection of the
    // engine operation below (see engine::cancel).
    let _cancel = cancel::scope(ctx.cancel);
    let id = || str_arg(args, "workspace_id").to_string();
    let result: Result<Value> = match name {
        "workspace_create" => {
            let mut req = CreateRequest::new(str_arg(args, "environment"));
            req.vcpu_count = int(args, "vcpu_count") as u8;
            req.mem_mib = int(args, "mem_mib") as u32;
            req.ttl_seconds = int(args, "ttl_seconds");
            req.allow_host_compat = args.get("allow_host_compat") == Some(&json!(true));
            req.name = opt_str(args, "name");
            req.labels = map(args, "labels");
            req.seed = match opt_str(args, "seed_path") {
                Some(p) => SeedSource::Path(p),
                None => project_seed(ctx.project),
            };
            lifecycle::create(req, &mut |phase| (ctx.progress)(phase))
        }
        "workspace_list" => lifecycle::list(),
        "workspace_update" => {
            let clear: Vec<String> = args
                .get("clear_labels")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            lifecycle::update(
                &id(),
                opt_str(args, "name"),
                args.get("clear_name") == Some(&json!(true)),
                map(args, "labels"),
                clear,
            )
        }
        "workspace_status" => lifecycle::status(&id()),
        "workspace_sync_push" => {
            files::sync_push(&id(), str_arg(args, "source_path"), str_arg(args, "dest"))
        }
        "workspace_exec" => files::exec(
            &id(),
            str_arg(args, "command"),
            int(args, "timeout_seconds"),
        ),
        "workspace_logs" => files::logs(&id()),
        "workspace_summary" => files::summary(&id()),
        "workspace_file_list" => files::list(
            &id(),
            str_arg(args, "path"),
            args.get("recursive") == Some(&json!(true)),
        ),
        "workspace_file_read" => files::read(&id(), str_arg(args, "path"), int(args, "max_bytes")),
        "workspace_file_write" => files::write(&id(), str_arg(args, "path"), str_arg(args, "text")),
        "workspace_patch_apply" => files::patch_apply(&id(), str_arg(args, "patch")),
        "workspace_diff" => files::diff(&id()),
        "workspace_export" => export::export(
            &id(),
            str_arg(args, "path"),
            str_arg(args, "output_path"),
            args.get("overwrite") == Some(&json!(true)),
        ),
        "workspace_reset" => lifecycle::reset(&id(), str_arg(args, "snapshot")),
        "workspace_delete" => lifecycle::delete(&id()),
        other => return Outcome::Failed(format!("tool {other} has no implementation")),
    };
    if ctx.cancel.is_cancelled() {
        // As for vm_run: no response to a cancelled request (MCP), only a
        // log line saying what the cancellation did.
        return Outcome::Cancelled(match (&result, name) {
            (Ok(v), _) => format!(
                "it had finished before the cancellation reached it; its result is dropped{}",
                v["workspace_id"]
                    .as_str()
                    .map(|id| format!(" (workspace {id})"))
                    .unwrap_or_default()
            ),
            (Err(_), "workspace_create") => {
                "the workspace it was creating was removed with its VM".into()
            }
            (Err(_), _) => "its agent connection was closed (a command it ran was killed in the guest); the workspace and its VM stay".into(),
        });
    }
    match result {
        Ok(v) => Outcome::Done {
            text: render(name, &v),
            structured: v,
        },
        Err(e) => Outcome::Failed(format!("{name} failed: {e}")),
    }
}

/// Text for clients that show only text: readable for exec, reads and
/// diffs, the JSON itself otherwise.
fn render(name: &str, v: &Value) -> String {
    let note = v["restarted_vm"]
        .as_str()
        .map(|r| format!("note: {r}\n"))
        .unwrap_or_default();
    let body = match name {
        "workspace_exec" => {
            let mut s = format!(
                "exit_code {} from `{}` in workspace {} ({} ms, sequence {})",
                v["exit_code"],
                v["command"].as_str().unwrap_or(""),
                v["workspace_id"].as_str().unwrap_or(""),
                v["duration_ms"],
                v["sequence"]
            );
            if v["timed_out"] == true {
                s.push_str("; timed out");
            }
            for stream in ["stdout", "stderr"] {
                if v[format!("{stream}_truncated")] == true {
                    s.push_str(&format!(
                        "\n[{stream} truncated: {} bytes produced]",
                        v[format!("{stream}_bytes")]
                    ));
                }
                let body = v[stream].as_str().unwrap_or("");
                if !body.is_empty() {
                    s.push_str(&format!("\n--- {stream} ---\n{body}"));
                    if !body.ends_with('\n') {
                        s.push('\n');
                    }
                }
            }
            s
        }
        "workspace_file_read" => format!(
            "{} ({} bytes, encoding {}{})\n{}",
            v["path"].as_str().unwrap_or(""),
            v["size_bytes"],
            v["encoding"].as_str().unwrap_or(""),
            if v["truncated"] == true {
                format!(", truncated to {} bytes", v["returned_bytes"])
            } else {
                String::new()
            },
            v["content"].as_str().unwrap_or("")
        ),
        "workspace_diff" => {
            if v["changed"] != true {
                "no changes against the baseline".to_string()
            } else {
                let mut s = format!("{}\n", v["summary"]);
                for e in v["entries"].as_array().into_iter().flatten() {
                    if e["text_patch"].is_null() {
                        s.push_str(&format!(
                            "{} {} ({}{})\n",
                            e["status"].as_str().unwrap_or(""),
                            e["path"].as_str().unwrap_or(""),
                            e["artifact_type"].as_str().unwrap_or(""),
                            if e["binary"] == true { ", binary" } else { "" }
                        ));
                    }
                }
                s.push_str(v["patch"].as_str().unwrap_or(""));
                s
            }
        }
        _ => serde_json::to_string_pretty(v).unwrap_or_default(),
    };
    format!("{note}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::schema::object_schema;

    #[test]
    fn schemas_follow_the_reference_arguments() {
        let all = tools();
        assert_eq!(all.len(), 16);
        let find = |n: &str| all.iter().find(|t| t.name == n).unwrap();
        let s = object_schema(&find("workspace_create").args);
        assert_eq!(s["required"], json!([]));
        assert_eq!(s["properties"]["ttl_seconds"]["default"], 600);
        assert_eq!(s["properties"]["labels"]["type"], "object");
        let s = object_schema(&find("workspace_file_read").args);
        assert_eq!(s["required"], json!(["workspace_id", "path"]));
        assert_eq!(s["properties"]["max_bytes"]["default"], 65536);
        assert_eq!(s["properties"]["max_bytes"]["maximum"], 1048576);
        let s = object_schema(&find("workspace_exec").args);
        assert_eq!(s["required"], json!(["workspace_id", "command"]));
        assert_eq!(s["properties"]["timeout_seconds"]["default"], 30);
        let s = object_schema(&find("workspace_export").args);
        assert_eq!(
            s["required"],
            json!(["workspace_id", "path", "output_path"])
        );
        let s = object_schema(&find("workspace_update").args);
        assert_eq!(s["properties"]["clear_labels"]["type"], "array");
    }

    #[test]
    fn missing_seed_path_uses_the_project() {
        assert_eq!(
            project_seed(&ProjectSource::None { cwd: "/".into() }),
            SeedSource::Empty
        );
        assert_eq!(
            project_seed(&ProjectSource::Detected {
                root: "/src/app".into(),
                head: None
            }),
            SeedSource::GitCheckout("/src/app".into())
        );
        assert_eq!(
            project_seed(&ProjectSource::Path {
                path: "/data".into(),
                git: None
            }),
            SeedSource::Path("/data".into())
        );
        assert_eq!(
            project_seed(&ProjectSource::Repo {
                url: "https://h/r".into(),
                git_ref: Some("v1".into())
            }),
            SeedSource::Repo {
                url: "https://h/r".into(),
                git_ref: Some("v1".into())
            }
        );
    }
}
