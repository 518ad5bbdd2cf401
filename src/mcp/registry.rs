//! The one table of MCP tools: each tool defined once, with its name,
//! the profiles it belongs to, its input schema (argument table), its
//! output schema, its hints and its handler. Profiles, `tools/list` and
//! dispatch all read this table (`tools::Toolset`), so adding a tool is
//! adding its entry here (and the handler it names).
//!
//! The order of the table is the order of `tools/list`. Tools of a
//! profile's contract that this build does not serve yet are listed as
//! `Tool::planned`: counted, never advertised.

use super::profile::{CORE, EVERY, FULL};
use super::schema::{output_types, Arg, Kind};
use super::tool::{Handler, Tool};
use super::{vm_run, workspace_tools};
use crate::engine::environments::CATALOG;
use crate::engine::run;
use crate::engine::workspace::expiry;
use crate::engine::workspace::{create, files, DEFAULT_READ_MAX_BYTES, FILE_MAX_BYTES};
use serde_json::json;

fn workspace_id() -> Arg {
    Arg::required_text(
        "workspace_id",
        "The workspace's id, as workspace_create or workspace_list returned it.",
    )
}

/// The workspace object's fields every lifecycle tool returns.
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

/// Every tool of every profile, in `tools/list` order.
pub fn tools() -> Vec<Tool> {
    let envs: Vec<String> = CATALOG.iter().map(|e| e.name.to_string()).collect();
    vec![
        Tool {
            name: "vm_run",
            profiles: EVERY,
            title: "Run a command in a fresh microVM",
            description: "Boot a disposable Linux microVM from an environment, run one shell command \
                in it, return its exit code, stdout and stderr, and destroy the VM. Nothing persists \
                between calls. Use it for one-off checks (a build, a test, an untrusted script). \
                A nonzero exit code is a normal result, not a tool error.",
            args: vec![
                Arg::required(
                    "environment",
                    "Environment to boot (must be installed on the host; `pyro env list` shows which are).",
                    Kind::one_of(envs.clone()),
                ),
                Arg::required_text(
                    "command",
                    "Shell command line, run with /bin/sh -c in /workspace inside the VM.",
                ),
                Arg::with_default(
                    "vcpu_count",
                    "Virtual CPUs for the VM.",
                    Kind::int(vm_run::VCPU_RANGE.0, vm_run::VCPU_RANGE.1),
                    json!(run::DEFAULT_VCPU_COUNT),
                ),
                Arg::with_default(
                    "mem_mib",
                    "Guest memory in MiB.",
                    Kind::int(vm_run::MEM_MIB_RANGE.0, vm_run::MEM_MIB_RANGE.1),
                    json!(run::DEFAULT_MEM_MIB),
                ),
                Arg::with_default(
                    "timeout_seconds",
                    "Kill the command after this many seconds; the result then has timed_out true and exit_code 124.",
                    Kind::int(1, run::MAX_TIMEOUT_SECONDS as i64),
                    json!(run::DEFAULT_TIMEOUT_SECONDS),
                ),
                Arg::with_default(
                    "ttl_seconds",
                    "Lifetime bound of the VM record; a one-shot VM is always destroyed when the call ends, so this only matters for compatibility.",
                    Kind::int(1, vm_run::TTL_MAX),
                    json!(run::DEFAULT_TTL_SECONDS),
                ),
                Arg::with_default(
                    "network",
                    "Give the guest network access (not available in this build yet; true fails with an explanation).",
                    Kind::Boolean,
                    json!(false),
                ),
                Arg::with_default(
                    "allow_host_compat",
                    "Leave false. Only a server whose operator enabled unisolated host execution honours true (then, where no guest can boot, the command runs directly on the host WITHOUT isolation); anywhere else true is refused.",
                    Kind::Boolean,
                    json!(false),
                ),
            ],
            output_schema: vm_run::output_schema(),
            read_only: false,
            destructive: false,
            handler: Handler::Direct(vm_run::call),
        },
        Tool {
            name: "workspace_create",
            profiles: CORE,
            title: "Create a persistent workspace",
            description: "Create and boot a persistent Linux microVM workspace whose /workspace survives between \
             calls until workspace_delete. After ttl_seconds without activity its VM is stopped \
             (state expired) and its disk kept: any workspace tool boots it again. An expired \
             workspace is deleted only once retention_seconds have passed since it expired, by the \
             wall clock and by the host uptime pyro measured itself (a clock jump deletes nothing). Seeded from seed_path (a host directory or \
             .tar/.tar.gz archive) or, when seed_path is omitted, from the project this server was \
             started for (the Git checkout it runs in, --project-path, or a clean clone of \
             --repo-url); empty when there is none. The seeded tree is the baseline that \
             workspace_diff compares against and workspace_reset returns to. The guest has no network.",
            args: vec![
                Arg::with_default(
                    "environment",
                    "Environment to boot (must be installed on the host).",
                    Kind::one_of(envs),
                    json!(create::DEFAULT_ENVIRONMENT),
                ),
                Arg::with_default(
                    "vcpu_count",
                    "Virtual CPUs.",
                    Kind::int(1, 32),
                    json!(create::DEFAULT_VCPU_COUNT),
                ),
                Arg::with_default(
                    "mem_mib",
                    "Guest memory in MiB.",
                    Kind::int(256, 65536),
                    json!(create::DEFAULT_MEM_MIB),
                ),
                Arg::with_default(
                    "ttl_seconds",
                    "Seconds without activity (any workspace tool call on it) after which its VM is stopped and the workspace reads expired; /workspace is kept.",
                    Kind::int(1, create::MAX_TTL_SECONDS as i64),
                    json!(create::DEFAULT_TTL_SECONDS),
                ),
                Arg::optional(
                    "retention_seconds",
                    "Seconds an expired workspace keeps its disk before it is deleted (default 604800, 7 days, or the server's PYRO_WORKSPACE_RETENTION_SECONDS). Using it again before then ends the expiry.",
                    Kind::int(0, expiry::MAX_RETENTION_SECONDS as i64),
                ),
                Arg::with_default(
                    "allow_host_compat",
                    "Leave false: a workspace always runs in a VM. true is refused unless the server's operator enabled host execution, and even then changes nothing here.",
                    Kind::Boolean,
                    json!(false),
                ),
                Arg::optional(
                    "seed_path",
                    "Host directory or .tar/.tar.gz/.tgz archive to copy into /workspace. It must lie inside the host directories this server allows (listed in its instructions; symlinks are followed and must stay inside); a relative path resolves against the project directory. Omit to use the server's project source.",
                    Kind::text(),
                ),
                Arg::optional(
                    "name",
                    "Optional unique human-friendly name (up to 120 characters).",
                    Kind::text(),
                ),
                Arg::optional(
                    "labels",
                    "Optional labels for finding the workspace later, e.g. {\"issue\": \"123\"}.",
                    Kind::StringMap,
                ),
            ],
            output_schema: output_types(WORKSPACE_FIELDS),
            read_only: false,
            destructive: false,
            handler: Handler::Workspace {
                run: workspace_tools::create,
                cancelled: workspace_tools::CANCEL_REMOVES,
            },
        },
        Tool {
            name: "workspace_list",
            profiles: CORE,
            title: "List workspaces",
            description: "List the persistent workspaces on this host (any process's), most recently active first, with name, labels, state (started, stopped, expired or damaged) and expiry. Inactive workspaces past their TTL are stopped first (expired_stopped) and expired ones past their retention deleted (expired_deleted); a workspace whose metadata is damaged is listed with state damaged and the reason.",
            args: vec![],
            output_schema: output_types(&[("count", "integer"), ("workspaces", "array")]),
            read_only: true,
            destructive: false,
            handler: Handler::Workspace {
                run: workspace_tools::list,
                cancelled: workspace_tools::CANCEL_KEEPS,
            },
        },
        Tool {
            name: "workspace_update",
            profiles: CORE,
            title: "Rename or relabel a workspace",
            description: "Change a workspace's name or labels: set name, clear_name, merge labels, or remove clear_labels keys.",
            args: vec![
                workspace_id(),
                Arg::optional(
                    "name",
                    "New unique name.",
                    Kind::text(),
                ),
                Arg::with_default("clear_name", "Remove the name.", Kind::Boolean, json!(false)),
                Arg::optional("labels", "Labels to add or change.", Kind::StringMap),
                Arg::optional("clear_labels", "Label keys to remove.", Kind::StringList),
            ],
            output_schema: output_types(WORKSPACE_FIELDS),
            read_only: false,
            destructive: false,
            handler: Handler::Workspace {
                run: workspace_tools::update,
                cancelled: workspace_tools::CANCEL_KEEPS,
            },
        },
        Tool {
            name: "workspace_status",
            profiles: CORE,
            title: "Show a workspace",
            description: "State (started, stopped or expired), resources, seed, expiry (expires_at, last_activity_at, retention_seconds, expired_at, delete_after), disk use and the last command of one workspace. A look: it does not count as activity and does not boot an expired workspace.",
            args: vec![workspace_id()],
            output_schema: output_types(WORKSPACE_FIELDS),
            read_only: true,
            destructive: false,
            handler: Handler::Workspace {
                run: workspace_tools::status,
                cancelled: workspace_tools::CANCEL_KEEPS,
            },
        },
        Tool {
            name: "workspace_sync_push",
            profiles: CORE,
            title: "Copy host files into a workspace",
            description: "Copy a host directory or .tar/.tar.gz/.tgz archive into /workspace (or dest inside it), replacing files of the same name. Checked before anything is sent: special files, hard links, '..' or absolute members and symlinks leading out are refused.",
            args: vec![
                workspace_id(),
                Arg::required_text("source_path", "Host directory or archive to copy. It must lie inside the host directories this server allows (listed in its instructions; symlinks are followed and must stay inside); a relative path resolves against the project directory."),
                Arg::with_default(
                    "dest",
                    "Destination directory inside /workspace (absolute under /workspace or relative to it).",
                    Kind::text(),
                    json!("/workspace"),
                ),
            ],
            output_schema: output_types(&[("workspace_id", "string"), ("workspace_sync", "object")]),
            read_only: false,
            destructive: false,
            handler: Handler::Workspace {
                run: workspace_tools::sync_push,
                cancelled: workspace_tools::CANCEL_KEEPS,
            },
        },
        Tool {
            name: "workspace_exec",
            profiles: CORE,
            title: "Run a command in a workspace",
            description: "Run one shell command (/bin/sh -c) in /workspace of a persistent workspace and return its exit code, stdout and stderr. Files persist between calls. A nonzero exit code is a result, not a tool error. A stopped workspace is booted again first.",
            args: vec![
                workspace_id(),
                Arg::required_text("command", "Shell command line."),
                Arg::with_default(
                    "timeout_seconds",
                    "Kill the command after this many seconds (exit_code 124, timed_out true).",
                    Kind::int(1, files::MAX_TIMEOUT_SECONDS as i64),
                    json!(files::DEFAULT_TIMEOUT_SECONDS),
                ),
            ],
            output_schema: output_types(&[
                ("workspace_id", "string"),
                ("command", "string"),
                ("stdout", "string"),
                ("stderr", "string"),
                ("exit_code", "integer"),
                ("duration_ms", "integer"),
                ("sequence", "integer"),
            ]),
            read_only: false,
            destructive: false,
            handler: Handler::Workspace {
                run: workspace_tools::exec,
                cancelled: workspace_tools::CANCEL_KEEPS,
            },
        },
        Tool {
            name: "workspace_logs",
            profiles: CORE,
            title: "Command history of a workspace",
            description: "Every command run since the last reset: command, exit code, duration and output (long output keeps its start and end).",
            args: vec![workspace_id()],
            output_schema: output_types(&[("workspace_id", "string"), ("count", "integer"), ("entries", "array")]),
            read_only: true,
            destructive: false,
            handler: Handler::Workspace {
                run: workspace_tools::logs,
                cancelled: workspace_tools::CANCEL_KEEPS,
            },
        },
        Tool {
            name: "workspace_summary",
            profiles: CORE,
            title: "Review a workspace session",
            description: "One concise review of the session since the last reset (or creation): commands with exit codes and durations, files changed against the baseline, syncs, file writes, patch applies and exports.",
            args: vec![workspace_id()],
            output_schema: output_types(&[("workspace_id", "string"), ("headline", "string"), ("commands", "object"), ("changes", "object")]),
            read_only: true,
            destructive: false,
            handler: Handler::Workspace {
                run: workspace_tools::summary,
                cancelled: workspace_tools::CANCEL_KEEPS,
            },
        },
        Tool {
            name: "workspace_file_list",
            profiles: CORE,
            title: "List workspace files",
            description: "Files, directories and symlinks under a /workspace path (recursively with recursive). Symlinks are listed, never followed.",
            args: vec![
                workspace_id(),
                Arg::with_default(
                    "path",
                    "Path inside /workspace.",
                    Kind::text(),
                    json!("/workspace"),
                ),
                Arg::with_default("recursive", "Walk subdirectories.", Kind::Boolean, json!(false)),
            ],
            output_schema: output_types(&[("workspace_id", "string"), ("path", "string"), ("entries", "array")]),
            read_only: true,
            destructive: false,
            handler: Handler::Workspace {
                run: workspace_tools::file_list,
                cancelled: workspace_tools::CANCEL_KEEPS,
            },
        },
        Tool {
            name: "workspace_file_read",
            profiles: CORE,
            title: "Read a workspace file",
            description: "Read up to max_bytes of one regular file under /workspace. UTF-8 text comes back as is (encoding \"utf-8\"); anything else as base64 (encoding \"base64\"). truncated says whether the file is longer.",
            args: vec![
                workspace_id(),
                Arg::required_text("path", "File path inside /workspace."),
                Arg::with_default(
                    "max_bytes",
                    "Most bytes to return.",
                    Kind::int(1, FILE_MAX_BYTES as i64),
                    json!(DEFAULT_READ_MAX_BYTES),
                ),
            ],
            output_schema: output_types(&[
                ("workspace_id", "string"),
                ("path", "string"),
                ("content", "string"),
                ("encoding", "string"),
                ("size_bytes", "integer"),
                ("truncated", "boolean"),
            ]),
            read_only: true,
            destructive: false,
            handler: Handler::Workspace {
                run: workspace_tools::file_read,
                cancelled: workspace_tools::CANCEL_KEEPS,
            },
        },
        Tool {
            name: "workspace_file_write",
            profiles: CORE,
            title: "Write a workspace file",
            description: "Create or replace one UTF-8 text file under /workspace (at most 1 MiB), creating missing parent directories. The old content is replaced atomically; symlinks and directories are not written through.",
            args: vec![
                workspace_id(),
                Arg::required_text("path", "File path inside /workspace."),
                Arg::required("text", "The whole new content.", Kind::any_text()),
            ],
            output_schema: output_types(&[("workspace_id", "string"), ("path", "string"), ("bytes_written", "integer")]),
            read_only: false,
            destructive: false,
            handler: Handler::Workspace {
                run: workspace_tools::file_write,
                cancelled: workspace_tools::CANCEL_KEEPS,
            },
        },
        Tool {
            name: "workspace_patch_apply",
            profiles: CORE,
            title: "Apply a patch in a workspace",
            description: "Apply a unified diff (diff -u or git diff: several files, new, deleted and renamed files) under /workspace. All or nothing: if any hunk does not apply, the error names the file and hunk and nothing changes.",
            args: vec![workspace_id(), Arg::required_text("patch", "The unified diff text (at most 1 MiB).")],
            output_schema: output_types(&[("workspace_id", "string"), ("changed", "boolean"), ("summary", "object"), ("entries", "array")]),
            read_only: false,
            destructive: false,
            handler: Handler::Workspace {
                run: workspace_tools::patch_apply,
                cancelled: workspace_tools::CANCEL_KEEPS,
            },
        },
        Tool {
            name: "workspace_diff",
            profiles: CORE,
            title: "Diff a workspace against its baseline",
            description: "A unified diff of /workspace against the baseline (the tree right after seeding, or after the last reset): added, modified, deleted and type-changed paths; binary files are flagged, not diffed. At most 4 MiB of file content in 1000 files is diffed and 5000 changed paths are listed per call; beyond that, files are listed with sha256 and size only (or only counted in summary) and `truncated` is true.",
            args: vec![workspace_id()],
            output_schema: output_types(&[("workspace_id", "string"), ("changed", "boolean"), ("summary", "object"), ("entries", "array"), ("patch", "string"), ("truncated", "boolean"), ("budget", "object")]),
            read_only: true,
            destructive: false,
            handler: Handler::Workspace {
                run: workspace_tools::diff,
                cancelled: workspace_tools::CANCEL_KEEPS,
            },
        },
        Tool {
            name: "workspace_export",
            profiles: CORE,
            title: "Copy a workspace path to the host",
            description: "Copy one file, symlink or directory from /workspace to output_path on the host. output_path must lie inside the host directories this server allows, not in a hidden directory such as .git. Never replaces an existing output_path unless overwrite is true; nothing is written outside output_path. This is the only way results leave the VM.",
            args: vec![
                workspace_id(),
                Arg::required_text("path", "Path inside /workspace to export."),
                Arg::required_text("output_path", "Host path to create, inside the host directories this server allows (listed in its instructions) and below no hidden directory or file (a name starting with '.'); a relative path resolves against the project directory. Missing parent directories are created."),
                Arg::with_default("overwrite", "Replace output_path if it exists.", Kind::Boolean, json!(false)),
            ],
            output_schema: output_types(&[("workspace_id", "string"), ("workspace_path", "string"), ("output_path", "string"), ("artifact_type", "string")]),
            read_only: false,
            destructive: false,
            handler: Handler::Workspace {
                run: workspace_tools::export,
                cancelled: workspace_tools::CANCEL_KEEPS,
            },
        },
        Tool {
            name: "workspace_reset",
            profiles: CORE,
            title: "Reset a workspace to its baseline",
            description: "Recreate the workspace's VM on a fresh disk and restore /workspace from the baseline. Everything done since (files, installed packages, command history) is discarded.",
            args: vec![
                workspace_id(),
                Arg::with_default(
                    "snapshot",
                    "What to restore; workspace-core has only the baseline.",
                    Kind::one_of(vec!["baseline".into()]),
                    json!("baseline"),
                ),
            ],
            output_schema: output_types(WORKSPACE_FIELDS),
            read_only: false,
            destructive: true,
            handler: Handler::Workspace {
                run: workspace_tools::reset,
                cancelled: workspace_tools::CANCEL_KEEPS,
            },
        },
        Tool {
            name: "workspace_delete",
            profiles: CORE,
            title: "Delete a workspace",
            description: "Stop the workspace's VM and delete its disk, history and everything else. Export what you need first.",
            args: vec![workspace_id()],
            output_schema: output_types(&[("workspace_id", "string"), ("deleted", "boolean")]),
            read_only: false,
            destructive: true,
            handler: Handler::Workspace {
                run: workspace_tools::delete,
                cancelled: workspace_tools::CANCEL_KEEPS,
            },
        },
        Tool::planned("vm_list_environments", FULL),
        Tool::planned("vm_create", FULL),
        Tool::planned("vm_start", FULL),
        Tool::planned("vm_exec", FULL),
        Tool::planned("vm_stop", FULL),
        Tool::planned("vm_delete", FULL),
        Tool::planned("vm_status", FULL),
        Tool::planned("vm_network_info", FULL),
        Tool::planned("vm_reap_expired", FULL),
        Tool::planned("workspace_start", FULL),
        Tool::planned("workspace_stop", FULL),
        Tool::planned("workspace_disk_export", FULL),
        Tool::planned("workspace_disk_list", FULL),
        Tool::planned("workspace_disk_read", FULL),
        Tool::planned("snapshot_create", FULL),
        Tool::planned("snapshot_list", FULL),
        Tool::planned("snapshot_delete", FULL),
        Tool::planned("shell_open", FULL),
        Tool::planned("shell_read", FULL),
        Tool::planned("shell_write", FULL),
        Tool::planned("shell_signal", FULL),
        Tool::planned("shell_close", FULL),
        Tool::planned("service_start", FULL),
        Tool::planned("service_list", FULL),
        Tool::planned("service_status", FULL),
        Tool::planned("service_logs", FULL),
        Tool::planned("service_stop", FULL),
    ]
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
        let all: Vec<Tool> = tools()
            .into_iter()
            .filter(|t| t.name.starts_with("workspace_") && t.is_served())
            .collect();
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
}
