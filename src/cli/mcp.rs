//! `pyro mcp serve [--profile P] [--project-path DIR | --repo-url URL [--repo-ref REF]]
//! [--allow-path DIR]... [--allow-host-compat]`

use super::usage_error;
use crate::mcp::access::HostAccess;
use crate::mcp::project::{self, ProjectArgs};
use crate::mcp::server::Config;
use crate::mcp::tools::{Profile, Toolset, PROFILE_NAMES};
use lexopt::prelude::*;

pub const USAGE: &str = "\
Usage: pyro mcp serve [--profile PROFILE] [--project-path DIR | --repo-url URL [--repo-ref REF]]
                      [--allow-path DIR]... [--allow-host-compat]

Serves the Model Context Protocol on stdin/stdout (JSON-RPC 2.0, one message
per line) for chat hosts such as Claude Code, Codex and OpenCode. Logs go to
stderr. The server exits when stdin closes, stopping any VM still running.

Options:
  --profile PROFILE     tool surface: workspace-core (default), vm-run, workspace-full
  --project-path DIR    absolute path of the project to work on (default: the Git
                        checkout containing the current directory, if any)
  --repo-url URL        work on a clean clone of URL instead of a local checkout
  --repo-ref REF        branch, tag or commit of --repo-url to use
  --allow-path DIR      let the client's host paths also lead into DIR (absolute,
                        existing; repeatable), besides the local project
  --allow-host-compat   let vm_run with allow_host_compat run commands directly on
                        this host, WITHOUT isolation, where no guest can boot
  -h, --help            show this help

workspace-core serves vm_run and the 16 workspace_* tools; workspace_create
without seed_path seeds from the project above. workspace-full lists only the
tools this build implements.

Host paths a client names (seed_path, source_path, output_path) must resolve,
symlinks followed, inside the local project directory or an --allow-path DIR;
relative ones start at the project. Exports never write below a hidden
(dot) directory or file of those roots, such as .git, unless that directory
itself is an --allow-path. Without --allow-host-compat, allow_host_compat is
refused.

Examples:
  pyro mcp serve
  pyro mcp serve --profile vm-run
  pyro mcp serve --project-path /home/me/src/app
  pyro mcp serve --allow-path /home/me/pyro-exports
  claude mcp add pyro -- pyro mcp serve      (or: pyro host connect claude-code)
";

pub fn main(mut parser: lexopt::Parser) -> i32 {
    match parser.next() {
        Ok(Some(Value(v))) if v == "serve" => serve(parser),
        Ok(Some(Long("help"))) | Ok(Some(Short('h'))) | Ok(None) => {
            print!("{USAGE}");
            if matches!(parser.next(), Ok(None)) {
                0
            } else {
                2
            }
        }
        Ok(Some(other)) => usage_error(
            &format!(
                "unexpected {} (the mcp command has one subcommand: serve)",
                super::describe(&other)
            ),
            USAGE,
        ),
        Err(e) => usage_error(&e.to_string(), USAGE),
    }
}

fn serve(mut parser: lexopt::Parser) -> i32 {
    let mut profile = Profile::WorkspaceCore;
    let mut args = ProjectArgs::default();
    let mut allowed: Vec<std::path::PathBuf> = Vec::new();
    let mut allow_host_compat = false;
    loop {
        let arg = match parser.next() {
            Ok(Some(a)) => a,
            Ok(None) => break,
            Err(e) => return usage_error(&e.to_string(), USAGE),
        };
        let value = |parser: &mut lexopt::Parser, name: &str| -> Result<String, String> {
            parser
                .value()
                .map_err(|e| e.to_string())?
                .into_string()
                .map_err(|_| format!("--{name} must be valid UTF-8"))
        };
        let r = match arg {
            Long("profile") => value(&mut parser, "profile").and_then(|p| {
                Profile::parse(&p).map(|p| profile = p).ok_or_else(|| {
                    format!(
                        "unknown profile {p:?}; choose one of: {}",
                        PROFILE_NAMES.join(", ")
                    )
                })
            }),
            Long("project-path") => {
                value(&mut parser, "project-path").map(|v| args.project_path = Some(v))
            }
            Long("repo-url") => value(&mut parser, "repo-url").map(|v| args.repo_url = Some(v)),
            Long("repo-ref") => value(&mut parser, "repo-ref").map(|v| args.repo_ref = Some(v)),
            Long("allow-path") => value(&mut parser, "allow-path").and_then(|v| {
                if !std::path::Path::new(&v).is_absolute() {
                    return Err(format!("--allow-path must be an absolute path, got {v:?}"));
                }
                allowed.push(v.into());
                Ok(())
            }),
            Long("allow-host-compat") => {
                allow_host_compat = true;
                Ok(())
            }
            Long("help") | Short('h') => {
                print!("{USAGE}");
                return 0;
            }
            other => Err(format!("unexpected {}", super::describe(&other))),
        };
        if let Err(e) = r {
            return usage_error(&e, USAGE);
        }
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let project = match project::resolve(&args, &cwd) {
        Ok(p) => p,
        Err(e) => return usage_error(&e.to_string(), USAGE),
    };
    let access = match HostAccess::new(&project, &allowed, allow_host_compat) {
        Ok(a) => a,
        Err(e) => return usage_error(&format!("--allow-path: {e}"), USAGE),
    };
    let toolset = Toolset::new(profile);
    eprintln!(
        "pyro mcp: serving profile {} (tools: {}) on stdio; {} {}",
        profile.name(),
        toolset.names().join(", "),
        project.describe(),
        access.describe(toolset.has("workspace_create"))
    );
    if allow_host_compat {
        eprintln!(
            "pyro mcp: WARNING: --allow-host-compat: where no guest can boot, vm_run may run client commands on this host WITHOUT isolation"
        );
    }
    // Exports an earlier process was killed in the middle of: put back
    // what they had moved aside.
    crate::engine::workspace::export::reap_stages();
    // Ctrl-C / SIGTERM stop this process's VMs before exiting.
    super::signals::install();
    match crate::mcp::serve_stdio(Config {
        toolset,
        project,
        access,
    }) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("pyro mcp: reading stdin failed: {e}");
            1
        }
    }
}
