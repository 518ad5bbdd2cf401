//! What each `pyro workspace` subcommand takes: its typed args and the one
//! table of its arguments and options, which both parses the command line
//! and writes its `--help`. The work is in dispatch.rs.

use super::dispatch;
use crate::cli::flags::{self, json_flag, Arg, Command, Opt, Takes};
use crate::engine::workspace::create::{CreateRequest, DEFAULT_ENVIRONMENT};
use crate::engine::workspace::expiry::{DEFAULT_RETENTION_SECONDS, RETENTION_ENV};
use crate::engine::workspace::{files, DEFAULT_READ_MAX_BYTES};
use std::collections::BTreeMap;
use std::ffi::OsString;

/// Args structs naming a workspace by its id.
pub trait WorkspaceId {
    fn id_mut(&mut self) -> &mut String;
}

macro_rules! workspace_args {
    ($($t:ty),* $(,)?) => {
        json_flag!($($t),*);
        $(impl WorkspaceId for $t {
            fn id_mut(&mut self) -> &mut String {
                &mut self.id
            }
        })*
    };
}

fn set_id<T: WorkspaceId>(a: &mut T, v: OsString) -> Result<(), String> {
    *a.id_mut() = flags::text(v)?;
    Ok(())
}

/// The `ID` every subcommand but create and list takes.
const fn id<T: WorkspaceId>() -> Arg<T> {
    Arg::required(
        "ID",
        "workspace ID",
        "the workspace (`pyro workspace list` shows them)",
        set_id::<T>,
    )
}

/// `--json`, as every subcommand takes it.
const fn json<T: flags::JsonFlag>() -> Opt<T> {
    flags::json("print the JSON object the MCP tool returns")
}

/// `KEY=VALUE` into `labels` (a later one for the same key wins).
fn label(labels: &mut BTreeMap<String, String>, v: OsString) -> Result<(), String> {
    let l = flags::text(v)?;
    let Some((k, v)) = l.split_once('=') else {
        return Err(format!("needs KEY=VALUE, got {l:?}"));
    };
    labels.insert(k.to_string(), v.to_string());
    Ok(())
}

/// Text given inline or as a file to read (`--text` / `--text-file`).
#[derive(Debug, PartialEq, Eq)]
pub enum Text {
    Inline(String),
    File(String),
}

/// Stores `new` unless the other spelling was already given; `other` is
/// that spelling's option name.
fn set_text(slot: &mut Option<Text>, new: Text, other: &str) -> Result<(), String> {
    let clash = matches!(
        (&*slot, &new),
        (Some(Text::Inline(_)), Text::File(_)) | (Some(Text::File(_)), Text::Inline(_))
    );
    if clash {
        return Err(format!(
            "cannot be combined with --{other}; give exactly one of them"
        ));
    }
    *slot = Some(new);
    Ok(())
}

// ---- create

pub struct CreateArgs {
    /// Environment, VM size, expiry, name and labels; the seed is resolved
    /// from `seed_path` when the command runs.
    pub req: CreateRequest,
    pub seed_path: Option<String>,
    pub network_policy: String,
    pub json: bool,
    pub id_only: bool,
}

impl Default for CreateArgs {
    fn default() -> Self {
        CreateArgs {
            req: CreateRequest::new(DEFAULT_ENVIRONMENT),
            seed_path: None,
            network_policy: "off".to_string(),
            json: false,
            id_only: false,
        }
    }
}

json_flag!(CreateArgs);

pub static CREATE: Command<CreateArgs> = Command {
    path: "workspace create",
    about: "create and boot a workspace",
    doc: "Creates a workspace from environment ENV, seeds /workspace from --seed-path,\n\
          and boots its VM. The seed is the baseline `diff` compares against and\n\
          `reset` goes back to.",
    args: &[Arg::optional(
        "ENV",
        "guest environment (`pyro env list`; default debian:12)",
        |a: &mut CreateArgs, v| {
            a.req.environment = flags::text(v)?;
            Ok(())
        },
    )],
    opts: &[
        Opt::value(
            "seed-path",
            "DIR|ARCHIVE",
            "a host directory or .tar/.tar.gz to copy into /workspace",
            |a: &mut CreateArgs, v| {
                a.seed_path = Some(flags::text(v)?);
                Ok(())
            },
        ),
        Opt::value("name", "NAME", "a name to show beside the id", |a: &mut CreateArgs, v| {
            a.req.name = Some(flags::text(v)?);
            Ok(())
        }),
        Opt::value("label", "KEY=VALUE", "a label to show and filter on", |a: &mut CreateArgs, v| {
            label(&mut a.req.labels, v)
        })
        .repeats(),
        Opt::value("vcpu-count", "N", "vCPUs", |a: &mut CreateArgs, v| {
            a.req.vcpu_count = flags::number(v)?;
            Ok(())
        })
        .default(|a| a.req.vcpu_count.to_string()),
        Opt::value("mem-mib", "M", "guest memory in MiB", |a: &mut CreateArgs, v| {
            a.req.mem_mib = flags::number(v)?;
            Ok(())
        })
        .default(|a| a.req.mem_mib.to_string()),
        Opt::value(
            "ttl-seconds",
            "S",
            "stop the VM (state expired, disk kept) after S seconds\nwithout activity",
            |a: &mut CreateArgs, v| {
                a.req.ttl_seconds = flags::number(v)?;
                Ok(())
            },
        )
        .default(|a| a.req.ttl_seconds.to_string()),
        Opt::value(
            "retention-seconds",
            "S",
            "delete an expired workspace S seconds after it expired",
            |a: &mut CreateArgs, v| {
                a.req.retention_seconds = Some(flags::number(v)?);
                Ok(())
            },
        )
        .default(|_| format!("${RETENTION_ENV}, else {DEFAULT_RETENTION_SECONDS}")),
        Opt::value(
            "network-policy",
            "POLICY",
            "guest networking; only off exists in this build",
            |a: &mut CreateArgs, v| {
                a.network_policy = flags::text(v)?;
                Ok(())
            },
        )
        .default(|a| a.network_policy.clone()),
        Opt::switch(
            "allow-host-compat",
            "accepted as `pyro run` takes it; a workspace always needs a\nVM, so it only explains the error where none can boot",
            |a| a.req.allow_host_compat = true,
        ),
        json(),
        Opt::switch("id-only", "print only the new workspace's id", |a| {
            a.id_only = true
        }),
    ],
    check: None,
    examples: &[
        "pyro workspace create debian:12 --seed-path ./repo --name fix-123",
        "id=$(pyro workspace create --seed-path ./repo --id-only)",
    ],
    run: dispatch::create,
};

// ---- list, and the subcommands that take only an ID

#[derive(Default)]
pub struct ListArgs {
    pub json: bool,
}

json_flag!(ListArgs);

pub static LIST: Command<ListArgs> = Command {
    path: "workspace list",
    about: "workspaces, most recently active first",
    doc: "",
    args: &[],
    opts: &[json()],
    check: None,
    examples: &[],
    run: dispatch::list,
};

#[derive(Default)]
pub struct IdArgs {
    pub id: String,
    pub json: bool,
}

pub static STATUS: Command<IdArgs> = Command {
    path: "workspace status",
    about: "state, resources, seed, last command",
    doc: "",
    args: &[id()],
    opts: &[json()],
    check: None,
    examples: &[],
    run: dispatch::status,
};

pub static DIFF: Command<IdArgs> = Command {
    path: "workspace diff",
    about: "/workspace against the baseline (the seeded tree)",
    doc: "Compares /workspace with the baseline (the seeded tree) and prints the\n\
          changes as a unified diff; binary files and files over the diff budget\n\
          are listed with their hashes (see --json).",
    args: &[id()],
    opts: &[json()],
    check: None,
    examples: &["pyro workspace diff $id > changes.diff"],
    run: dispatch::diff,
};

pub static LOGS: Command<IdArgs> = Command {
    path: "workspace logs",
    about: "commands run since the last reset",
    doc: "",
    args: &[id()],
    opts: &[json()],
    check: None,
    examples: &[],
    run: dispatch::logs,
};

pub static SUMMARY: Command<IdArgs> = Command {
    path: "workspace summary",
    about: "one review of the session since the last reset",
    doc: "",
    args: &[id()],
    opts: &[json()],
    check: None,
    examples: &[],
    run: dispatch::summary,
};

pub static DELETE: Command<IdArgs> = Command {
    path: "workspace delete",
    about: "stop the VM and remove everything",
    doc: "",
    args: &[id()],
    opts: &[json()],
    check: None,
    examples: &[],
    run: dispatch::delete,
};

// ---- update

#[derive(Default)]
pub struct UpdateArgs {
    pub id: String,
    pub name: Option<String>,
    pub clear_name: bool,
    pub labels: BTreeMap<String, String>,
    pub clear_labels: Vec<String>,
    pub json: bool,
}

pub static UPDATE: Command<UpdateArgs> = Command {
    path: "workspace update",
    about: "change a workspace's name and labels",
    doc: "",
    args: &[id()],
    opts: &[
        Opt::value("name", "NAME", "the new name", |a: &mut UpdateArgs, v| {
            a.name = Some(flags::text(v)?);
            Ok(())
        }),
        Opt::switch("clear-name", "remove the name", |a| a.clear_name = true),
        Opt::value(
            "label",
            "KEY=VALUE",
            "add or change a label",
            |a: &mut UpdateArgs, v| label(&mut a.labels, v),
        )
        .repeats(),
        Opt::value(
            "clear-label",
            "KEY",
            "remove a label",
            |a: &mut UpdateArgs, v| {
                a.clear_labels.push(flags::text(v)?);
                Ok(())
            },
        )
        .repeats(),
        json(),
    ],
    check: None,
    examples: &["pyro workspace update $id --name fix-123 --label ticket=123"],
    run: dispatch::update,
};

// ---- exec

pub struct ExecArgs {
    pub id: String,
    pub argv: Vec<String>,
    pub timeout_seconds: u64,
    pub json: bool,
}

impl Default for ExecArgs {
    fn default() -> Self {
        ExecArgs {
            id: String::new(),
            argv: Vec::new(),
            timeout_seconds: files::DEFAULT_TIMEOUT_SECONDS,
            json: false,
        }
    }
}

pub static EXEC: Command<ExecArgs> = Command {
    path: "workspace exec",
    about: "run CMD in /workspace; exits with its exit code",
    doc: "Runs CMD in /workspace and exits with its exit code (124 when it timed\n\
          out), its output on stdout and stderr. Options go before `--`.",
    args: &[
        id(),
        Arg::required(
            "CMD",
            "command after `--`",
            "the command and its arguments, after `--`",
            |a: &mut ExecArgs, v| {
                a.argv.push(flags::text(v)?);
                Ok(())
            },
        )
        .rest(Takes::Rest),
    ],
    opts: &[
        Opt::value(
            "timeout-seconds",
            "S",
            "kill CMD after S seconds",
            |a: &mut ExecArgs, v| {
                a.timeout_seconds = flags::number(v)?;
                Ok(())
            },
        )
        .default(|a| a.timeout_seconds.to_string()),
        json(),
    ],
    check: None,
    examples: &[
        "pyro workspace exec $id -- make test",
        "pyro workspace exec $id --timeout-seconds 600 -- sh -c 'make -j2 && make check'",
    ],
    run: dispatch::exec,
};

// ---- sync push

pub struct SyncPushArgs {
    pub id: String,
    pub source: String,
    pub dest: String,
    pub json: bool,
}

impl Default for SyncPushArgs {
    fn default() -> Self {
        SyncPushArgs {
            id: String::new(),
            source: String::new(),
            dest: "/workspace".to_string(),
            json: false,
        }
    }
}

pub static SYNC_PUSH: Command<SyncPushArgs> = Command {
    path: "workspace sync push",
    about: "copy a host directory or .tar/.tar.gz into /workspace",
    doc: "Copies a host directory or .tar/.tar.gz archive into the workspace\n\
          (`pyro workspace sync-push` is the same command).",
    args: &[
        id(),
        Arg::required(
            "SOURCE",
            "SOURCE",
            "the host directory or archive",
            |a: &mut SyncPushArgs, v| {
                a.source = flags::text(v)?;
                Ok(())
            },
        ),
    ],
    opts: &[
        Opt::value(
            "dest",
            "PATH",
            "where in the workspace to copy it",
            |a: &mut SyncPushArgs, v| {
                a.dest = flags::text(v)?;
                Ok(())
            },
        )
        .default(|a| a.dest.clone()),
        json(),
    ],
    check: None,
    examples: &["pyro workspace sync push $id ./vendor --dest vendor"],
    run: dispatch::sync_push,
};

// ---- file list / read / write

pub struct FileListArgs {
    pub id: String,
    pub path: String,
    pub recursive: bool,
    pub json: bool,
}

impl Default for FileListArgs {
    fn default() -> Self {
        FileListArgs {
            id: String::new(),
            path: "/workspace".to_string(),
            recursive: false,
            json: false,
        }
    }
}

pub static FILE_LIST: Command<FileListArgs> = Command {
    path: "workspace file list",
    about: "the entries of a directory in the workspace",
    doc: "",
    args: &[
        id(),
        Arg::optional(
            "PATH",
            "directory to list (default /workspace)",
            |a: &mut FileListArgs, v| {
                a.path = flags::text(v)?;
                Ok(())
            },
        ),
    ],
    opts: &[
        Opt::switch("recursive", "list the whole tree below PATH", |a| {
            a.recursive = true
        }),
        json(),
    ],
    check: None,
    examples: &["pyro workspace file list $id src --recursive"],
    run: dispatch::file_list,
};

pub struct FileReadArgs {
    pub id: String,
    pub path: String,
    pub max_bytes: u64,
    pub content_only: bool,
    pub json: bool,
}

impl Default for FileReadArgs {
    fn default() -> Self {
        FileReadArgs {
            id: String::new(),
            path: String::new(),
            max_bytes: DEFAULT_READ_MAX_BYTES,
            content_only: false,
            json: false,
        }
    }
}

pub static FILE_READ: Command<FileReadArgs> = Command {
    path: "workspace file read",
    about: "print a file of the workspace",
    doc: "",
    args: &[
        id(),
        Arg::required("PATH", "PATH", "the file", |a: &mut FileReadArgs, v| {
            a.path = flags::text(v)?;
            Ok(())
        }),
    ],
    opts: &[
        Opt::value(
            "max-bytes",
            "N",
            "read at most N bytes",
            |a: &mut FileReadArgs, v| {
                a.max_bytes = flags::number(v)?;
                Ok(())
            },
        )
        .default(|a| a.max_bytes.to_string()),
        Opt::switch(
            "content-only",
            "print the bytes alone (binary ones too), nothing else",
            |a| a.content_only = true,
        ),
        json(),
    ],
    check: None,
    examples: &["pyro workspace file read $id src/main.c --content-only > main.c"],
    run: dispatch::file_read,
};

#[derive(Default)]
pub struct FileWriteArgs {
    pub id: String,
    pub path: String,
    /// Set: `check` requires it.
    pub text: Option<Text>,
    pub json: bool,
}

pub static FILE_WRITE: Command<FileWriteArgs> = Command {
    path: "workspace file write",
    about: "write a text file in the workspace",
    doc: "Writes a UTF-8 text file in the workspace, replacing it; give the text\n\
          with exactly one of --text and --text-file.",
    args: &[
        id(),
        Arg::required("PATH", "PATH", "the file", |a: &mut FileWriteArgs, v| {
            a.path = flags::text(v)?;
            Ok(())
        }),
    ],
    opts: &[
        Opt::value(
            "text",
            "TEXT",
            "the new content",
            |a: &mut FileWriteArgs, v| {
                set_text(&mut a.text, Text::Inline(flags::text(v)?), "text-file")
            },
        ),
        Opt::value(
            "text-file",
            "FILE",
            "a host file holding the new content",
            |a: &mut FileWriteArgs, v| set_text(&mut a.text, Text::File(flags::text(v)?), "text"),
        ),
        json(),
    ],
    check: Some(|a| match a.text {
        Some(_) => Ok(()),
        None => Err("give exactly one of --text or --text-file".into()),
    }),
    examples: &["pyro workspace file write $id NOTES.md --text-file ./notes.md"],
    run: dispatch::file_write,
};

// ---- patch apply

#[derive(Default)]
pub struct PatchArgs {
    pub id: String,
    /// Set: `check` requires it.
    pub patch: Option<Text>,
    pub json: bool,
}

pub static PATCH_APPLY: Command<PatchArgs> = Command {
    path: "workspace patch apply",
    about: "apply a unified diff, all files or none",
    doc: "Applies a unified diff to /workspace: every file changes, or none does.\n\
          Give the patch with exactly one of --patch and --patch-file.",
    args: &[id()],
    opts: &[
        Opt::value(
            "patch",
            "TEXT",
            "the unified diff",
            |a: &mut PatchArgs, v| {
                set_text(&mut a.patch, Text::Inline(flags::text(v)?), "patch-file")
            },
        ),
        Opt::value(
            "patch-file",
            "FILE",
            "a host file holding the unified diff",
            |a: &mut PatchArgs, v| set_text(&mut a.patch, Text::File(flags::text(v)?), "patch"),
        ),
        json(),
    ],
    check: Some(|a| match a.patch {
        Some(_) => Ok(()),
        None => Err("give exactly one of --patch or --patch-file".into()),
    }),
    examples: &["pyro workspace patch apply $id --patch-file fix.diff"],
    run: dispatch::patch_apply,
};

// ---- export

#[derive(Default)]
pub struct ExportArgs {
    pub id: String,
    pub path: String,
    pub output: String,
    pub overwrite: bool,
    pub json: bool,
}

pub static EXPORT: Command<ExportArgs> = Command {
    path: "workspace export",
    about: "copy a file or directory out to the host",
    doc: "",
    args: &[
        id(),
        Arg::required(
            "PATH",
            "PATH",
            "the file or directory in the workspace",
            |a: &mut ExportArgs, v| {
                a.path = flags::text(v)?;
                Ok(())
            },
        ),
    ],
    opts: &[
        Opt::value(
            "output",
            "HOST_PATH",
            "where on the host to put it",
            |a: &mut ExportArgs, v| {
                a.output = flags::text(v)?;
                Ok(())
            },
        )
        .required(),
        Opt::switch("overwrite", "replace HOST_PATH if it exists", |a| {
            a.overwrite = true
        }),
        json(),
    ],
    check: None,
    examples: &["pyro workspace export $id src/fixed.c --output ./fixed.c"],
    run: dispatch::export,
};

// ---- reset

pub struct ResetArgs {
    pub id: String,
    pub snapshot: String,
    pub json: bool,
}

impl Default for ResetArgs {
    fn default() -> Self {
        ResetArgs {
            id: String::new(),
            snapshot: "baseline".to_string(),
            json: false,
        }
    }
}

pub static RESET: Command<ResetArgs> = Command {
    path: "workspace reset",
    about: "fresh VM and disk, /workspace back to the baseline",
    doc: "",
    args: &[id()],
    opts: &[
        Opt::value(
            "snapshot",
            "NAME",
            "the snapshot to go back to (workspace-core keeps only\nthe baseline)",
            |a: &mut ResetArgs, v| {
                a.snapshot = flags::text(v)?;
                Ok(())
            },
        )
        .default(|a| a.snapshot.clone()),
        json(),
    ],
    check: None,
    examples: &[],
    run: dispatch::reset,
};

workspace_args!(
    IdArgs,
    UpdateArgs,
    ExecArgs,
    SyncPushArgs,
    FileListArgs,
    FileReadArgs,
    FileWriteArgs,
    PatchArgs,
    ExportArgs,
    ResetArgs,
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::flags::{parse, Parsed, UsageError};

    fn parsed<T: Default>(cmd: &Command<T>, args: &[&str]) -> Result<T, UsageError> {
        let mut p = lexopt::Parser::from_args(args.iter().map(|s| s.to_string()));
        match parse(cmd, &mut p)? {
            Parsed::Args(a) => Ok(a),
            Parsed::Help => panic!("{args:?} asked for help"),
        }
    }

    #[test]
    fn options_flags_and_the_command_after_dashes() {
        let a = parsed(
            &EXEC,
            &[
                "abc",
                "--timeout-seconds",
                "5",
                "--json",
                "--",
                "sh",
                "-c",
                "echo hi",
            ],
        )
        .unwrap();
        assert_eq!(a.id, "abc");
        assert_eq!(a.argv, ["sh", "-c", "echo hi"]);
        assert_eq!((a.timeout_seconds, a.json), (5, true));
        let a = parsed(&EXEC, &["abc", "--", "true"]).unwrap();
        assert_eq!(a.timeout_seconds, files::DEFAULT_TIMEOUT_SECONDS);
        let e = parsed(&EXEC, &["abc", "--bogus"]).err().unwrap();
        assert!(e.to_string().contains("--bogus"), "{e}");
    }

    #[test]
    fn create_options_fill_the_engine_request() {
        let a = parsed(
            &CREATE,
            &[
                "debian:12-build",
                "--vcpu-count",
                "2",
                "--mem-mib",
                "2048",
                "--ttl-seconds",
                "60",
                "--retention-seconds",
                "0",
                "--seed-path",
                "./repo",
                "--name",
                "fix",
                "--label",
                "a=1",
                "--label",
                "b=x=y",
                "--label",
                "a=2",
                "--network-policy",
                "off",
                "--allow-host-compat",
                "--id-only",
            ],
        )
        .unwrap();
        let r = &a.req;
        assert_eq!(r.environment, "debian:12-build");
        assert_eq!((r.vcpu_count, r.mem_mib, r.ttl_seconds), (2, 2048, 60));
        assert_eq!(r.retention_seconds, Some(0));
        assert_eq!(a.seed_path.as_deref(), Some("./repo"));
        assert_eq!(r.name.as_deref(), Some("fix"));
        let labels: Vec<(&str, &str)> = r
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(labels, [("a", "2"), ("b", "x=y")]);
        assert_eq!(a.network_policy, "off");
        assert!(r.allow_host_compat && a.id_only && !a.json);

        // Nothing given: the engine's own defaults, the operator's retention.
        let a = parsed(&CREATE, &[]).unwrap();
        let d = CreateRequest::new(DEFAULT_ENVIRONMENT);
        assert_eq!(a.req.environment, DEFAULT_ENVIRONMENT);
        assert_eq!(
            (a.req.vcpu_count, a.req.mem_mib, a.req.ttl_seconds),
            (d.vcpu_count, d.mem_mib, d.ttl_seconds)
        );
        assert_eq!(a.req.retention_seconds, None);

        assert_eq!(
            parsed(&CREATE, &["--label", "nokey"]).err().unwrap(),
            UsageError::BadValue {
                option: "label",
                why: "needs KEY=VALUE, got \"nokey\"".into()
            }
        );
        assert_eq!(
            parsed(&CREATE, &["debian:12", "extra"]).err().unwrap(),
            UsageError::UnexpectedArgument("extra".into())
        );
    }

    #[test]
    fn update_collects_labels_and_clears() {
        let a = parsed(
            &UPDATE,
            &[
                "abc",
                "--name",
                "n",
                "--clear-name",
                "--label",
                "k=v",
                "--clear-label",
                "x",
                "--clear-label",
                "y",
            ],
        )
        .unwrap();
        assert_eq!((a.id.as_str(), a.name.as_deref()), ("abc", Some("n")));
        assert!(a.clear_name);
        assert_eq!(a.labels.get("k").map(String::as_str), Some("v"));
        assert_eq!(a.clear_labels, ["x", "y"]);
    }

    #[test]
    fn text_comes_from_exactly_one_of_the_two_options() {
        let a = parsed(&FILE_WRITE, &["abc", "p", "--text", "a", "--text", "b"]).unwrap();
        assert_eq!(a.text, Some(Text::Inline("b".into())));
        let a = parsed(&FILE_WRITE, &["abc", "p", "--text-file", "f"]).unwrap();
        assert_eq!(a.text, Some(Text::File("f".into())));
        assert_eq!(
            parsed(&FILE_WRITE, &["abc", "p"]).err().unwrap(),
            UsageError::Rule("give exactly one of --text or --text-file".into())
        );
        assert!(matches!(
            parsed(
                &FILE_WRITE,
                &["abc", "p", "--text", "a", "--text-file", "f"]
            ),
            Err(UsageError::BadValue {
                option: "text-file",
                ..
            })
        ));
        let a = parsed(&PATCH_APPLY, &["abc", "--patch-file", "fix.diff"]).unwrap();
        assert_eq!(a.patch, Some(Text::File("fix.diff".into())));
        assert_eq!(
            parsed(&PATCH_APPLY, &["abc"]).err().unwrap(),
            UsageError::Rule("give exactly one of --patch or --patch-file".into())
        );
    }

    #[test]
    fn paths_options_and_their_defaults() {
        let a = parsed(&SYNC_PUSH, &["abc", "./src"]).unwrap();
        assert_eq!(
            (a.source.as_str(), a.dest.as_str()),
            ("./src", "/workspace")
        );
        let a = parsed(&SYNC_PUSH, &["abc", "./src", "--dest", "vendor"]).unwrap();
        assert_eq!(a.dest, "vendor");
        let a = parsed(&FILE_LIST, &["abc"]).unwrap();
        assert_eq!((a.path.as_str(), a.recursive), ("/workspace", false));
        let a = parsed(&FILE_LIST, &["abc", "src", "--recursive"]).unwrap();
        assert_eq!((a.path.as_str(), a.recursive), ("src", true));
        let a = parsed(&FILE_READ, &["abc", "f", "--content-only"]).unwrap();
        assert_eq!(
            (a.max_bytes, a.content_only),
            (DEFAULT_READ_MAX_BYTES, true)
        );
        let a = parsed(&EXPORT, &["abc", "f", "--output", "o", "--overwrite"]).unwrap();
        assert_eq!((a.output.as_str(), a.overwrite), ("o", true));
        assert_eq!(
            parsed(&EXPORT, &["abc", "f"]).err().unwrap(),
            UsageError::MissingOption {
                option: "output",
                value: "HOST_PATH"
            }
        );
        assert_eq!(parsed(&RESET, &["abc"]).unwrap().snapshot, "baseline");
        assert_eq!(
            parsed(&RESET, &["abc", "--snapshot", "s1"])
                .unwrap()
                .snapshot,
            "s1"
        );
    }
}
