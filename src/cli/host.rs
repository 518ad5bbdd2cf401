//! `pyro host connect|print-config|doctor|repair`: set up chat hosts.

use super::{print_json, usage_error};
use crate::hostcfg::{self, Host, Registration, HOST_NAMES};
use crate::mcp::tools::{Profile, PROFILE_NAMES};
use lexopt::prelude::*;

pub const USAGE: &str = "\
Usage: pyro host connect claude-code|codex [--profile P] [--project-path DIR] [--json]
       pyro host print-config opencode [--profile P] [--project-path DIR]
       pyro host doctor [--json]
       pyro host repair claude-code|codex|opencode [--json]

Registers this pyro binary's MCP server (`pyro mcp serve`) with a chat host.

  connect        uses the host's own CLI (`claude mcp add --scope user`,
                 `codex mcp add`) when it is on PATH, else edits the host's
                 config file (~/.claude.json, ~/.codex/config.toml) directly
  print-config   prints an opencode.json snippet to merge into your config
  doctor         for each host: CLI found, pyro registered, command still valid
  repair         re-points a stale or broken entry at this binary, keeping
                 its flags

Running the same command twice changes nothing the second time. Entries of
other servers are never touched, and a config file is backed up
(FILE.pyro-backup-TIME) before pyro changes it.

Options:
  --profile P        add `--profile P` to the server command (vm-run,
                     workspace-core, workspace-full; default: workspace-core)
  --project-path DIR add `--project-path DIR` (for hosts that do not start
                     servers in the project directory)
  --json             print JSON
  -h, --help         show this help
";

struct Opts {
    positional: Vec<String>,
    extra: Vec<String>,
    json: bool,
}

fn parse(mut parser: lexopt::Parser) -> Result<Option<Opts>, String> {
    let mut o = Opts {
        positional: Vec::new(),
        extra: Vec::new(),
        json: false,
    };
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("json") => o.json = true,
            Long("profile") => {
                let p = parser
                    .value()
                    .map_err(|e| e.to_string())?
                    .string()
                    .map_err(|_| "bad --profile".to_string())?;
                if Profile::parse(&p).is_none() {
                    return Err(format!(
                        "unknown profile {p:?}; choose one of: {}",
                        PROFILE_NAMES.join(", ")
                    ));
                }
                o.extra.extend(["--profile".to_string(), p]);
            }
            Long("project-path") => {
                let p = parser
                    .value()
                    .map_err(|e| e.to_string())?
                    .string()
                    .map_err(|_| "bad --project-path".to_string())?;
                if !std::path::Path::new(&p).is_absolute() {
                    return Err(format!("--project-path must be absolute, got {p:?}"));
                }
                o.extra.extend(["--project-path".to_string(), p]);
            }
            Long("help") | Short('h') => return Ok(None),
            Value(v) => o.positional.push(
                v.string()
                    .map_err(|_| "arguments must be UTF-8".to_string())?,
            ),
            other => return Err(format!("unexpected {}", super::describe(&other))),
        }
    }
    Ok(Some(o))
}

pub fn main(parser: lexopt::Parser) -> i32 {
    let o = match parse(parser) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{USAGE}");
            return 0;
        }
        Err(e) => return usage_error(&e, USAGE),
    };
    let (verb, rest) = match o.positional.split_first() {
        Some((v, r)) => (v.as_str(), r),
        None => {
            return usage_error(
                "missing subcommand (connect, print-config, doctor, repair)",
                USAGE,
            )
        }
    };
    let host = |wanted: &[Host]| -> Result<Host, i32> {
        let names: Vec<&str> = wanted.iter().map(|h| h.name()).collect();
        match rest {
            [name] => match Host::parse(name) {
                Some(h) if wanted.contains(&h) => Ok(h),
                Some(h) => Err(usage_error(
                    &format!(
                        "`pyro host {verb}` does not support {}; it supports: {}",
                        h.name(),
                        names.join(", ")
                    ),
                    USAGE,
                )),
                None => Err(usage_error(
                    &format!(
                        "unknown host {name:?}; known hosts: {}",
                        HOST_NAMES.join(", ")
                    ),
                    USAGE,
                )),
            },
            [] => Err(usage_error(
                &format!("missing HOST ({})", names.join(", ")),
                USAGE,
            )),
            _ => Err(usage_error("expected exactly one HOST", USAGE)),
        }
    };
    match verb {
        "connect" => match host(&[Host::ClaudeCode, Host::Codex]) {
            Ok(h) => report(hostcfg::connect(h, &o.extra), o.json),
            Err(code) => code,
        },
        "repair" => {
            if !o.extra.is_empty() {
                return usage_error(
                    "repair keeps the entry's own flags; use connect to change them",
                    USAGE,
                );
            }
            match host(&Host::all()) {
                Ok(h) => report(hostcfg::repair(h), o.json),
                Err(code) => code,
            }
        }
        "print-config" => match host(&[Host::OpenCode]) {
            Ok(_) => match Registration::this_binary(&o.extra) {
                Ok(reg) => {
                    print_json(&hostcfg::opencode_config(&reg));
                    0
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    1
                }
            },
            Err(code) => code,
        },
        "doctor" => {
            if !rest.is_empty() || !o.extra.is_empty() {
                return usage_error("doctor takes no arguments besides --json", USAGE);
            }
            doctor(o.json)
        }
        other => usage_error(&format!("unknown subcommand {other:?}"), USAGE),
    }
}

fn report(r: Result<hostcfg::Change, hostcfg::HostError>, json: bool) -> i32 {
    match r {
        Ok(c) => {
            if json {
                print_json(&c.to_json());
            } else {
                let what = match c.action {
                    "unchanged" => "unchanged",
                    "added" => "connected",
                    _ => "updated",
                };
                println!("{}: {what} ({})", c.host.display(), c.note);
                println!("  config: {}", c.config_path.display());
                println!("  server: {} {}", c.after.command, c.after.args.join(" "));
                if let Some(b) = &c.backup {
                    println!("  backup: {}", b.display());
                }
                if let Some(before) = c.before.as_ref().filter(|b| **b != c.after) {
                    println!("  was:    {} {}", before.command, before.args.join(" "));
                }
            }
            0
        }
        Err(e) => {
            if json {
                print_json(&serde_json::json!({"ok": false, "error": e.to_string()}));
            } else {
                eprintln!("error: {e}");
            }
            1
        }
    }
}

fn doctor(json: bool) -> i32 {
    let hosts: Vec<serde_json::Value> = Host::all().into_iter().map(hostcfg::diagnose).collect();
    let broken = hosts.iter().any(|h| h["status"] == "broken");
    if json {
        print_json(&serde_json::json!({"ok": !broken, "hosts": hosts}));
    } else {
        for h in &hosts {
            let cli = match h["cli"]["path"].as_str() {
                Some(p) => format!("{} found at {p}", h["cli"]["name"].as_str().unwrap_or("")),
                None => format!("{} not on PATH", h["cli"]["name"].as_str().unwrap_or("")),
            };
            println!(
                "{}: {}",
                h["host"].as_str().unwrap_or(""),
                h["status"].as_str().unwrap_or("")
            );
            println!("  cli:        {cli}");
            println!("  config:     {}", h["config_path"].as_str().unwrap_or(""));
            match h["registration"].as_object() {
                Some(r) => {
                    let args: Vec<&str> = r["args"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                        .unwrap_or_default();
                    println!(
                        "  registered: yes: {} {}",
                        r["command"].as_str().unwrap_or(""),
                        args.join(" ")
                    );
                    println!(
                        "  command:    {}",
                        if h["command_valid"] == true {
                            "valid"
                        } else {
                            "INVALID"
                        }
                    );
                }
                None => println!("  registered: no"),
            }
            if let Some(p) = h["problem"].as_str() {
                println!("  problem:    {p}");
            }
            if let Some(a) = h["advice"].as_str() {
                println!("  next:       {a}");
            }
        }
    }
    if broken {
        1
    } else {
        0
    }
}
