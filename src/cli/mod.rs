//! Command-line front end: parse, call the engine, print. Human output by
//! default, the engine's JSON with `--json`.

mod demo;
mod doctor;
mod env;
mod host;
mod mcp;
mod run;
pub mod signals;
mod vmm;
mod workspace;

use crate::engine::EngineError;
use lexopt::prelude::*;

pub const USAGE: &str = "\
pyro: disposable microVM sandboxes for coding agents

Usage: pyro <command> [options]

Commands:
  run ENV [options] -- CMD...   boot ENV, run CMD in it, tear it down
  env list|inspect|pull|prune   manage guest environments
  workspace create|exec|...     persistent workspaces (`pyro help workspace`)
  doctor                        check that this host can run guests
  demo                          narrated create/start/exec/delete lifecycle
  mcp serve [--profile P]       serve MCP tools on stdio for chat hosts
  host connect|print-config|doctor|repair
                                register pyro with Claude Code, Codex, OpenCode
  help [command]                show help for a command

Options:
  --version                     print the version
  -h, --help                    show this help

Start with `pyro doctor`, then `pyro run debian:12 -- git --version`.
";

pub fn main() -> i32 {
    let mut parser = lexopt::Parser::from_env();
    let cmd = match parser.next() {
        Ok(Some(Value(v))) => v.string().unwrap_or_default(),
        Ok(Some(Long("version"))) | Ok(Some(Short('V'))) => {
            println!("pyro {}", env!("CARGO_PKG_VERSION"));
            return 0;
        }
        Ok(Some(Long("help"))) | Ok(Some(Short('h'))) | Ok(None) => {
            print!("{USAGE}");
            return 0;
        }
        Ok(Some(other)) => return usage_error(&format!("unexpected {}", describe(&other)), USAGE),
        Err(e) => return usage_error(&e.to_string(), USAGE),
    };
    match cmd.as_str() {
        "run" => run::main(parser),
        "env" => env::main(parser),
        "doctor" => doctor::main(parser),
        "demo" => demo::main(parser),
        "mcp" => mcp::main(parser),
        "host" => host::main(parser),
        "workspace" => workspace::main(parser),
        "vmm" => vmm::main(parser),
        "help" => {
            let topic = parser.next().ok().flatten().and_then(|a| match a {
                Value(v) => v.string().ok(),
                _ => None,
            });
            match topic.as_deref() {
                Some("run") => print!("{}", run::USAGE),
                Some("env") => print!("{}", env::USAGE),
                Some("doctor") => print!("{}", doctor::USAGE),
                Some("demo") => print!("{}", demo::USAGE),
                Some("mcp") => print!("{}", mcp::USAGE),
                Some("host") => print!("{}", host::USAGE),
                Some("workspace") => print!("{}", workspace::USAGE),
                _ => print!("{USAGE}"),
            }
            0
        }
        other => usage_error(&format!("unknown command {other:?}"), USAGE),
    }
}

pub fn describe(arg: &lexopt::Arg) -> String {
    match arg {
        Long(l) => format!("option --{l}"),
        Short(s) => format!("option -{s}"),
        Value(v) => format!("argument {:?}", v.to_string_lossy()),
    }
}

/// Prints a usage error (and where to get help) and returns exit code 2.
pub fn usage_error(msg: &str, usage: &str) -> i32 {
    let first = usage
        .lines()
        .find(|l| l.starts_with("Usage:"))
        .unwrap_or("");
    eprintln!("error: {msg}\n{first}\nRun with --help for details.");
    2
}

/// Prints an engine error as the CLI does everywhere.
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
    e.exit_code()
}

pub fn print_json(v: &serde_json::Value) {
    use std::io::Write;
    let text = serde_json::to_string_pretty(v).expect("JSON values serialize");
    // A closed pipe (`pyro ... --json | head`) is the reader's choice, not an error.
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// Parses a numeric option value with a message naming the option.
pub fn parse_num<T: std::str::FromStr>(
    parser: &mut lexopt::Parser,
    name: &str,
) -> Result<T, String> {
    let v = parser.value().map_err(|e| e.to_string())?;
    let s = v.string().map_err(|_| format!("--{name} needs a number"))?;
    s.parse()
        .map_err(|_| format!("--{name} needs a number, got {s:?}"))
}
