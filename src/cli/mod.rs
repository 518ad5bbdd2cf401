//! Command-line front end: parse, call the engine, print. Every command is
//! a `flags::Command` table (its arguments and options, each defined once)
//! that both parses its command line into typed args and writes its
//! `--help`; [`TOP`] lists them. Human output by default, the engine's JSON
//! with `--json`. Exit codes: 0 done, 1 the work failed, 2 the command line
//! was wrong (`run` and `workspace exec` exit with the command's own code).

mod demo;
mod doctor;
mod env;
mod flags;
mod host;
mod mcp;
mod run;
pub mod signals;
mod vmm;
mod workspace;

use crate::engine::EngineError;
use flags::{Arg, Command, Entry, Group, Node, Takes};

/// `pyro` itself: every command, and the help that lists them.
static TOP: Group = Group {
    path: "",
    about: "disposable microVM sandboxes for coding agents",
    doc: "Start with `pyro doctor`, then `pyro run debian:12 -- git --version`.",
    entries: &[
        Entry::command("run", &run::RUN),
        Entry::group("env", &env::ENV),
        Entry::group("workspace", &workspace::WORKSPACE),
        Entry::command("doctor", &doctor::DOCTOR),
        Entry::command("demo", &demo::DEMO),
        Entry::group("mcp", &mcp::MCP),
        Entry::group("host", &host::HOST),
        Entry::command("help", &HELP),
        // The VMM role `pyro` starts for each VM; not for people.
        Entry {
            name: "vmm",
            node: Node::Raw(vmm::main),
            hidden: true,
        },
    ],
    examples: &[
        "pyro doctor",
        "pyro run debian:12 -- git --version",
        "id=$(pyro workspace create debian:12 --seed-path . --id-only)",
        "pyro host connect claude-code",
    ],
    version: Some(concat!("pyro ", env!("CARGO_PKG_VERSION"))),
};

#[derive(Default)]
struct HelpArgs {
    topic: Vec<String>,
}

static HELP: Command<HelpArgs> = Command {
    path: "help",
    about: "show the help of a command",
    doc: "Shows the help of COMMAND (`pyro help workspace exec`), the same as\n\
          `pyro COMMAND --help`; without one, the list of commands.",
    args: &[Arg::optional(
        "COMMAND",
        "a command, with its subcommand words",
        |a: &mut HelpArgs, v| {
            a.topic.push(flags::text(v)?);
            Ok(())
        },
    )
    .rest(Takes::Rest)],
    opts: &[],
    check: None,
    examples: &["pyro help workspace", "pyro help workspace file read"],
    run: |a| {
        print!("{}", TOP.help_for(&a.topic));
        0
    },
};

pub fn main() -> i32 {
    TOP.main(lexopt::Parser::from_env())
}

/// Exit code of a command that could not do its work, whatever the reason
/// (a command line pyro cannot understand exits [`flags::EXIT_USAGE`]).
pub const EXIT_FAILURE: i32 = 1;

/// Prints a usage error (and where to get help) and returns exit code 2,
/// for `pyro vmm`, which parses its own arguments.
pub fn usage_error(msg: &str, usage: &str) -> i32 {
    let first = usage
        .lines()
        .find(|l| l.starts_with("Usage:"))
        .unwrap_or("");
    eprintln!("error: {msg}\n{first}\nRun with --help for details.");
    flags::EXIT_USAGE
}

/// Prints an engine error as the CLI does everywhere; returns
/// [`EXIT_FAILURE`]: the command line was understood, the work failed.
pub fn fail(e: &EngineError, json: bool) -> i32 {
    if let Some(sig) = signals::interrupted() {
        // The error is the teardown the interrupt caused, not news.
        return 128 + sig;
    }
    if json {
        println!(
            "{}",
            serde_json::json!({"ok": false, "error": e.to_string()})
        );
    } else {
        eprintln!("error: {e}");
    }
    EXIT_FAILURE
}

pub fn print_json(v: &serde_json::Value) {
    use std::io::Write;
    let text = serde_json::to_string_pretty(v).expect("JSON values serialize");
    // A closed pipe (`pyro ... --json | head`) is the reader's choice, not an error.
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

#[cfg(test)]
mod tests {
    use super::flags::{Group, Node};
    use super::TOP;
    use std::collections::BTreeSet;

    /// Walks `g`: the commands it lists, and what is wrong in its tables.
    fn walk(g: &Group, commands: &mut Vec<String>, problems: &mut Vec<String>) {
        let mut names = BTreeSet::new();
        let below = |name: &str| {
            if g.path.is_empty() {
                name.to_string()
            } else {
                format!("{} {name}", g.path)
            }
        };
        for e in g.entries {
            if !names.insert(e.name) {
                problems.push(format!("`pyro {}`: {} given twice", g.path, e.name));
            }
            match e.node {
                Node::Command(c) => {
                    problems.extend(c.problems());
                    if !e.hidden {
                        if c.path() != below(e.name) {
                            problems.push(format!("{} listed as {}", c.path(), below(e.name)));
                        }
                        commands.push(c.path().to_string());
                    }
                }
                Node::Group(sub) => {
                    if sub.path != below(e.name) {
                        problems.push(format!("{} listed as {}", sub.path, below(e.name)));
                    }
                    walk(sub, commands, problems);
                }
                Node::Raw(_) => {}
            }
        }
    }

    #[test]
    fn every_command_is_defined_once_and_its_help_shows_every_option() {
        let mut commands = Vec::new();
        let mut problems = Vec::new();
        walk(&TOP, &mut commands, &mut problems);
        assert!(problems.is_empty(), "{problems:#?}");
        assert_eq!(
            commands,
            [
                "run",
                "env list",
                "env inspect",
                "env pull",
                "env prune",
                "env import",
                "workspace create",
                "workspace list",
                "workspace status",
                "workspace update",
                "workspace exec",
                "workspace sync push",
                "workspace file list",
                "workspace file read",
                "workspace file write",
                "workspace patch apply",
                "workspace diff",
                "workspace export",
                "workspace logs",
                "workspace summary",
                "workspace reset",
                "workspace delete",
                "doctor",
                "demo",
                "mcp serve",
                "host connect",
                "host print-config",
                "host doctor",
                "host repair",
                "help",
            ]
        );
    }

    #[test]
    fn help_finds_commands_by_their_words() {
        let words = |w: &[&str]| TOP.help_for(&w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(words(&[]).starts_with("pyro: "));
        assert!(words(&["workspace", "file", "read"])
            .starts_with("Usage: pyro workspace file read ID PATH [options]"));
        assert!(words(&["workspace", "sync-push"]).starts_with("Usage: pyro workspace sync push"));
        // An unknown word stops at the deepest group it reached.
        assert!(words(&["workspace", "nope"]).starts_with("Usage: pyro workspace <command>"));
    }
}
