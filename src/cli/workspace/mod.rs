//! `pyro workspace ...`: persistent workspaces from the terminal. Each
//! subcommand calls the same engine function as the MCP tool of the same
//! name; `--json` prints exactly the object the tool returns.
//!
//! - args.rs: what each subcommand takes (typed args, one table each)
//! - dispatch.rs: the engine call and the exit code
//! - render.rs: the human output

mod args;
mod dispatch;
mod render;

use crate::cli::flags::{Entry, Group};

pub static WORKSPACE: Group = Group {
    path: "workspace",
    about: "persistent workspaces",
    doc: "Persistent microVM workspaces: /workspace survives between commands and\n\
          across pyro processes until the workspace is deleted. After --ttl-seconds\n\
          without activity its VM is stopped (state expired) and the disk kept; any\n\
          operation boots it again. An expired workspace is deleted once\n\
          --retention-seconds have passed, by the wall clock and by the host uptime\n\
          pyro measured itself, so a clock jump deletes nothing. The defaults are in\n\
          `pyro workspace create --help`.\n\
          \n\
          Every command takes --json for the same JSON object the MCP tool returns.\n\
          Paths inside the workspace are relative to /workspace (or absolute under it).",
    entries: &[
        Entry::command("create", &args::CREATE),
        Entry::command("list", &args::LIST),
        Entry::command("status", &args::STATUS),
        Entry::command("update", &args::UPDATE),
        Entry::command("exec", &args::EXEC),
        Entry::group("sync", &SYNC),
        Entry::command("sync-push", &args::SYNC_PUSH).hidden(),
        Entry::group("file", &FILE),
        Entry::group("patch", &PATCH),
        Entry::command("diff", &args::DIFF),
        Entry::command("export", &args::EXPORT),
        Entry::command("logs", &args::LOGS),
        Entry::command("summary", &args::SUMMARY),
        Entry::command("reset", &args::RESET),
        Entry::command("delete", &args::DELETE),
    ],
    examples: &[
        "id=$(pyro workspace create debian:12 --seed-path ./repo --id-only)",
        "pyro workspace exec $id -- make test",
        "pyro workspace patch apply $id --patch-file fix.diff",
        "pyro workspace diff $id",
        "pyro workspace export $id src/fixed.c --output ./fixed.c",
        "pyro workspace delete $id",
    ],
    version: None,
};

static SYNC: Group = Group {
    path: "workspace sync",
    about: "copy host files into a workspace",
    doc: "",
    entries: &[Entry::command("push", &args::SYNC_PUSH)],
    examples: &[],
    version: None,
};

static FILE: Group = Group {
    path: "workspace file",
    about: "list, read and write files in a workspace",
    doc: "",
    entries: &[
        Entry::command("list", &args::FILE_LIST),
        Entry::command("read", &args::FILE_READ),
        Entry::command("write", &args::FILE_WRITE),
    ],
    examples: &[],
    version: None,
};

static PATCH: Group = Group {
    path: "workspace patch",
    about: "apply patches to a workspace",
    doc: "",
    entries: &[Entry::command("apply", &args::PATCH_APPLY)],
    examples: &[],
    version: None,
};
