//! `pyro mcp serve [--profile P] [--project-path DIR | --repo-url URL [--repo-ref REF]]
//! [--allow-path DIR]... [--allow-host-compat]`

use super::flags::{self, Command, Entry, Group, Opt};
use crate::mcp::access::HostAccess;
use crate::mcp::project::{self, ProjectArgs};
use crate::mcp::server::Config;
use crate::mcp::tools::{Profile, Toolset, PROFILE_NAMES};
use std::path::PathBuf;

pub static MCP: Group = Group {
    path: "mcp",
    about: "serve MCP tools on stdio for chat hosts",
    doc: "The Model Context Protocol server chat hosts start (`pyro host connect`\n\
          registers it).",
    entries: &[Entry::command("serve", &SERVE)],
    examples: &["pyro mcp serve", "claude mcp add pyro -- pyro mcp serve"],
    version: None,
};

pub struct ServeArgs {
    profile: Profile,
    project: ProjectArgs,
    allowed: Vec<PathBuf>,
    allow_host_compat: bool,
}

impl Default for ServeArgs {
    fn default() -> Self {
        ServeArgs {
            profile: Profile::WorkspaceCore,
            project: ProjectArgs::default(),
            allowed: Vec::new(),
            allow_host_compat: false,
        }
    }
}

static SERVE: Command<ServeArgs> = Command {
    path: "mcp serve",
    about: "serve the MCP tools on stdin/stdout",
    doc: "Serves the Model Context Protocol on stdin/stdout (JSON-RPC 2.0, one message\n\
          per line) for chat hosts such as Claude Code, Codex and OpenCode. Logs go to\n\
          stderr. The server exits when stdin closes, stopping any VM still running.\n\
          \n\
          workspace-core serves vm_run and the 16 workspace_* tools; workspace_create\n\
          without seed_path seeds from the project. workspace-full lists only the\n\
          tools this build implements.\n\
          \n\
          Host paths a client names (seed_path, source_path, output_path) must resolve,\n\
          symlinks followed, inside the local project directory or an --allow-path DIR;\n\
          relative ones start at the project. Exports never write below a hidden\n\
          (dot) directory or file of those roots, such as .git, unless that directory\n\
          itself is an --allow-path. Without --allow-host-compat, allow_host_compat is\n\
          refused.",
    args: &[],
    opts: &[
        Opt::value(
            "profile",
            "PROFILE",
            "tool surface: vm-run, workspace-core or workspace-full",
            |a: &mut ServeArgs, v| {
                let p = flags::text(v)?;
                a.profile = Profile::parse(&p).ok_or_else(|| {
                    format!("must be one of {}, got {p:?}", PROFILE_NAMES.join(", "))
                })?;
                Ok(())
            },
        )
        .default(|a| a.profile.name().to_string()),
        Opt::value(
            "project-path",
            "DIR",
            "absolute path of the project to work on (default: the Git\n\
             checkout containing the current directory, if any)",
            |a: &mut ServeArgs, v| {
                a.project.project_path = Some(flags::text(v)?);
                Ok(())
            },
        ),
        Opt::value(
            "repo-url",
            "URL",
            "work on a clean clone of URL instead of a local checkout",
            |a: &mut ServeArgs, v| {
                a.project.repo_url = Some(flags::text(v)?);
                Ok(())
            },
        ),
        Opt::value(
            "repo-ref",
            "REF",
            "branch, tag or commit of --repo-url to use",
            |a: &mut ServeArgs, v| {
                a.project.repo_ref = Some(flags::text(v)?);
                Ok(())
            },
        ),
        Opt::value(
            "allow-path",
            "DIR",
            "let the client's host paths also lead into DIR (absolute,\n\
             existing), besides the local project",
            |a: &mut ServeArgs, v| {
                let v = flags::text(v)?;
                if !std::path::Path::new(&v).is_absolute() {
                    return Err(format!("must be an absolute path, got {v:?}"));
                }
                a.allowed.push(v.into());
                Ok(())
            },
        )
        .repeats(),
        Opt::switch(
            "allow-host-compat",
            "let vm_run with allow_host_compat run commands directly on\n\
             this host, WITHOUT isolation, where no guest can boot",
            |a| a.allow_host_compat = true,
        ),
    ],
    check: None,
    examples: &[
        "pyro mcp serve",
        "pyro mcp serve --profile vm-run",
        "pyro mcp serve --project-path /home/me/src/app",
        "pyro mcp serve --allow-path /home/me/pyro-exports",
        "claude mcp add pyro -- pyro mcp serve      (or: pyro host connect claude-code)",
    ],
    run: serve,
};

fn serve(a: ServeArgs) -> i32 {
    let ServeArgs {
        profile,
        project: args,
        allowed,
        allow_host_compat,
    } = a;
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let project = match project::resolve(&args, &cwd) {
        Ok(p) => p,
        Err(e) => return SERVE.usage_error(&e),
    };
    let access = match HostAccess::new(&project, &allowed, allow_host_compat) {
        Ok(a) => a,
        Err(e) => return SERVE.usage_error(&format!("--allow-path: {e}")),
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
    crate::engine::workspace::export::stage::reap_stages();
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
