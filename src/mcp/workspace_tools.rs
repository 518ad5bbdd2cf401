//! The `workspace_*` tools of `workspace-core`: argument tables and thin
//! calls into the workspace engine, which returns the same JSON objects
//! `pyro workspace ... --json` prints.

use super::access::HOST_COMPAT_REFUSED;
use super::project::ProjectSource;
use super::schema::{Arg, Kind};
use super::tools::{CallContext, Outcome, Tool};
use crate::engine::cancel;
use crate::engine::environments::CATALOG;
use crate::engine::hostpath::Roots;
use crate::engine::workspace::expiry;
use crate::engine::workspace::lifecycle::{self, CreateRequest};
use crate::engine::workspace::seed::SeedSource;
use crate::engine::workspace::{export, files, store, DEFAULT_READ_MAX_BYTES, FILE_MAX_BYTES};
use crate::engine::{EngineError, Result};
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
             calls until workspace_delete. After ttl_seconds without activity its VM is stopped \
             (state expired) and its disk kept: any workspace tool boots it again. An expired \
             workspace is deleted only once retention_seconds have passed since it expired, by the \
             wall clock and by the host uptime pyro measured itself (a clock jump deletes nothing). Seeded from seed_path (a host directory or \
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
                    "Seconds without activity (any workspace tool call on it) after which its VM is stopped and the workspace reads expired; /workspace is kept.",
                    Kind::Integer {
                        min: 1,
                        max: lifecycle::MAX_TTL_SECONDS as i64,
                    },
                    json!(lifecycle::DEFAULT_TTL_SECONDS),
                ),
                optional(
                    "retention_seconds",
                    "Seconds an expired workspace keeps its disk before it is deleted (default 604800, 7 days, or the server's PYRO_WORKSPACE_RETENTION_SECONDS). Using it again before then ends the expiry.",
                    Kind::Integer {
                        min: 0,
                        max: expiry::MAX_RETENTION_SECONDS as i64,
                    },
                ),
                with_default(
                    "allow_host_compat",
                    "Leave false: a workspace always runs in a VM. true is refused unless the server's operator enabled host execution, and even then changes nothing here.",
                    Kind::Boolean,
                    json!(false),
                ),
                optional(
                    "seed_path",
                    "Host directory or .tar/.tar.gz/.tgz archive to copy into /workspace. It must lie inside the host directories this server allows (listed in its instructions; symlinks are followed and must stay inside); a relative path resolves against the project directory. Omit to use the server's project source.",
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
            "List the persistent workspaces on this host (any process's), most recently active first, with name, labels, state (started, stopped, expired or damaged) and expiry. Inactive workspaces past their TTL are stopped first (expired_stopped) and expired ones past their retention deleted (expired_deleted); a workspace whose metadata is damaged is listed with state damaged and the reason.",
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
            "State (started, stopped or expired), resources, seed, expiry (expires_at, last_activity_at, retention_seconds, expired_at, delete_after), disk use and the last command of one workspace. A look: it does not count as activity and does not boot an expired workspace.",
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
                string("source_path", "Host directory or archive to copy. It must lie inside the host directories this server allows (listed in its instructions; symlinks are followed and must stay inside); a relative path resolves against the project directory."),
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
            "A unified diff of /workspace against the baseline (the tree right after seeding, or after the last reset): added, modified, deleted and type-changed paths; binary files are flagged, not diffed. At most 4 MiB of file content in 1000 files is diffed and 5000 changed paths are listed per call; beyond that, files are listed with sha256 and size only (or only counted in summary) and `truncated` is true.",
            vec![workspace_id()],
            output(&[("workspace_id", "string"), ("changed", "boolean"), ("summary", "object"), ("entries", "array"), ("patch", "string"), ("truncated", "boolean"), ("budget", "object")]),
            true,
            false,
        ),
        tool(
            "workspace_export",
            "Copy a workspace path to the host",
            "Copy one file, symlink or directory from /workspace to output_path on the host. output_path must lie inside the host directories this server allows, not in a hidden directory such as .git. Never replaces an existing output_path unless overwrite is true; nothing is written outside output_path. This is the only way results leave the VM.",
            vec![
                workspace_id(),
                string("path", "Path inside /workspace to export."),
                string("output_path", "Host path to create, inside the host directories this server allows (listed in its instructions) and below no hidden directory or file (a name starting with '.'); a relative path resolves against the project directory. Missing parent directories are created."),
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

/// The seed a `workspace_create` without `seed_path` uses. A plain
/// project directory is one of `roots`, so it resolves like any other path.
pub fn project_seed(p: &ProjectSource, roots: &Roots) -> Result<SeedSource> {
    Ok(match p {
        ProjectSource::None { .. } => SeedSource::Empty,
        ProjectSource::Detected { root, .. } => SeedSource::GitCheckout(root.clone()),
        ProjectSource::Path { path, git } => match git {
            Some(_) => SeedSource::GitCheckout(path.clone()),
            None => SeedSource::Path(roots.resolve_read(&path.to_string_lossy())?),
        },
        ProjectSource::Repo { url, git_ref } => SeedSource::Repo {
            url: url.clone(),
            git_ref: git_ref.clone(),
        },
    })
}

/// `workspace_create`: host execution and `seed_path` as the operator allows.
fn create(args: &Map<String, Value>, ctx: &CallContext) -> Result<Value> {
    let compat = args.get("allow_host_compat") == Some(&json!(true));
    if compat && !ctx.access.allow_host_compat {
        return Err(EngineError::Invalid(HOST_COMPAT_REFUSED.into()));
    }
    let mut req = CreateRequest::new(str_arg(args, "environment"));
    req.vcpu_count = int(args, "vcpu_count") as u8;
    req.mem_mib = int(args, "mem_mib") as u32;
    req.ttl_seconds = int(args, "ttl_seconds");
    req.retention_seconds = args
        .get("retention_seconds")
        .filter(|v| !v.is_null())
        .map(|_| int(args, "retention_seconds"));
    req.allow_host_compat = compat;
    req.name = opt_str(args, "name");
    req.labels = map(args, "labels");
    req.seed = match opt_str(args, "seed_path") {
        Some(p) => SeedSource::Path(ctx.access.roots.resolve_read(&p)?),
        None => project_seed(ctx.project, &ctx.access.roots)?,
    };
    lifecycle::create(req, &mut |phase| (ctx.progress)(phase))
}

/// `workspace_sync_push`: the workspace is looked up before the source
/// path is even resolved, so an unknown id touches nothing on the host.
fn sync_push(id: &str, args: &Map<String, Value>, ctx: &CallContext) -> Result<Value> {
    store::load(id)?;
    let source = ctx
        .access
        .roots
        .resolve_read(str_arg(args, "source_path"))?;
    files::sync_push(id, &source, str_arg(args, "dest"))
}

/// `workspace_export`: the workspace first, then the destination, which
/// must be writable under the server's roots.
fn export(id: &str, args: &Map<String, Value>, ctx: &CallContext) -> Result<Value> {
    store::load(id)?;
    let dest = ctx
        .access
        .roots
        .resolve_write(str_arg(args, "output_path"))?;
    export::export(
        id,
        str_arg(args, "path"),
        &dest,
        args.get("overwrite") == Some(&json!(true)),
    )
}

/// Runs workspace tool `name` with validated `args`.
pub fn call(name: &str, args: &Map<String, Value>, ctx: &CallContext) -> Outcome {
    // Cancelling the call reaches every wait and agent connection of the
    // engine operation below (see engine::cancel).
    let _cancel = cancel::scope(ctx.cancel);
    let id = || str_arg(args, "workspace_id").to_string();
    let result: Result<Value> = match name {
        "workspace_create" => create(args, ctx),
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
        "workspace_sync_push" => sync_push(&id(), args, ctx),
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
        "workspace_export" => export(&id(), args, ctx),
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
                            if e["binary"] == true {
                                ", binary"
                            } else if e["over_budget"] == true {
                                ", not diffed: over the diff budget"
                            } else {
                                ""
                            }
                        ));
                    }
                }
                s.push_str(v["patch"].as_str().unwrap_or(""));
                if v["truncated"] == true {
                    s.push_str(&format!(
                        "[truncated: the diff budget ({} bytes of content, {} files) was spent; the files marked above are listed with sha256 and size only: read them with workspace_file_read]\n",
                        v["budget"]["max_bytes"], v["budget"]["max_files"]
                    ));
                }
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
    fn the_diff_tool_states_the_diff_budgets() {
        use crate::engine::workspace::diff::{DIFF_MAX_BYTES, DIFF_MAX_ENTRIES, DIFF_MAX_FILES};
        let all = tools();
        let d = all.iter().find(|t| t.name == "workspace_diff").unwrap();
        for want in [
            format!("{} MiB of file content", DIFF_MAX_BYTES >> 20),
            format!("in {DIFF_MAX_FILES} files"),
            format!("{DIFF_MAX_ENTRIES} changed paths"),
        ] {
            assert!(d.description.contains(&want), "{want}: {}", d.description);
        }
    }

    #[test]
    fn schemas_follow_the_reference_arguments() {
        let all = tools();
        assert_eq!(all.len(), 16);
        let find = |n: &str| all.iter().find(|t| t.name == n).unwrap();
        let s = object_schema(&find("workspace_create").args);
        assert_eq!(s["required"], json!([]));
        assert_eq!(s["properties"]["ttl_seconds"]["default"], 600);
        assert_eq!(
            s["properties"]["retention_seconds"]["maximum"],
            365 * 24 * 3600
        );
        assert!(s["properties"]["retention_seconds"]["default"].is_null());
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
        let seed = |p: &ProjectSource| {
            let roots = Roots::confined(p.host_root(), &[]).unwrap();
            project_seed(p, &roots).unwrap()
        };
        assert_eq!(
            seed(&ProjectSource::None { cwd: "/".into() }),
            SeedSource::Empty
        );
        let d = std::env::temp_dir().join(format!(
            "pyro-project-seed-{}",
            crate::engine::paths::random_id(4)
        ));
        std::fs::create_dir_all(&d).unwrap();
        let d = std::fs::canonicalize(&d).unwrap();
        assert_eq!(
            seed(&ProjectSource::Detected {
                root: d.clone(),
                head: None
            }),
            SeedSource::GitCheckout(d.clone())
        );
        match seed(&ProjectSource::Path {
            path: d.clone(),
            git: None,
        }) {
            SeedSource::Path(p) => assert_eq!(p.path(), d),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            seed(&ProjectSource::Repo {
                url: "https://h/r".into(),
                git_ref: Some("v1".into())
            }),
            SeedSource::Repo {
                url: "https://h/r".into(),
                git_ref: Some("v1".into())
            }
        );
        std::fs::remove_dir_all(d).unwrap();
    }
}
