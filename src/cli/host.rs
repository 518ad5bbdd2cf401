//! `pyro host connect|print-config|doctor|repair`: set up chat hosts.

use super::flags::{self, json_flag, Arg, Command, Entry, Group, Opt};
use super::print_json;
use crate::hostcfg::{self, Host, Registration, HOST_NAMES};
use crate::mcp::tools::{Profile, PROFILE_NAMES};
use std::ffi::OsString;

pub static HOST: Group = Group {
    path: "host",
    about: "register pyro with Claude Code, Codex, OpenCode",
    doc: "Registers this pyro binary's MCP server (`pyro mcp serve`) with a chat host.\n\
          \n\
          Running the same command twice changes nothing the second time. Entries of\n\
          other servers are never touched, and a config file is backed up\n\
          (FILE.pyro-backup-TIME) before pyro changes it.",
    entries: &[
        Entry::command("connect", &CONNECT),
        Entry::command("print-config", &PRINT_CONFIG),
        Entry::command("doctor", &DOCTOR),
        Entry::command("repair", &REPAIR),
    ],
    examples: &[
        "pyro host connect claude-code",
        "pyro host connect codex --profile workspace-full",
        "pyro host print-config opencode > opencode-pyro.json",
        "pyro host doctor",
    ],
    version: None,
};

#[derive(Default)]
pub struct HostArgs {
    /// Set by the required HOST argument.
    host: Option<Host>,
    /// Flags added to the registered server command, in the order given.
    extra: Vec<String>,
    json: bool,
}

json_flag!(HostArgs);

/// HOST, one of `among`.
fn host(a: &mut HostArgs, v: OsString, among: &[Host]) -> Result<(), String> {
    let name = flags::text(v)?;
    let names: Vec<&str> = among.iter().map(|h| h.name()).collect();
    match Host::parse(&name) {
        Some(h) if among.contains(&h) => {
            a.host = Some(h);
            Ok(())
        }
        Some(h) => Err(format!(
            "{} is not supported by this command; it supports: {}",
            h.name(),
            names.join(", ")
        )),
        None => Err(format!(
            "{name:?} is not a known host; known hosts: {}",
            HOST_NAMES.join(", ")
        )),
    }
}

const PROFILE: Opt<HostArgs> = Opt::value(
    "profile",
    "P",
    "add `--profile P` to the server command (vm-run,\n\
     workspace-core, workspace-full; default: workspace-core)",
    |a, v| {
        let p = flags::text(v)?;
        if Profile::parse(&p).is_none() {
            return Err(format!(
                "must be one of {}, got {p:?}",
                PROFILE_NAMES.join(", ")
            ));
        }
        a.extra.extend(["--profile".to_string(), p]);
        Ok(())
    },
);

const PROJECT_PATH: Opt<HostArgs> = Opt::value(
    "project-path",
    "DIR",
    "add `--project-path DIR` (for hosts that do not start\n\
     servers in the project directory)",
    |a, v| {
        let p = flags::text(v)?;
        if !std::path::Path::new(&p).is_absolute() {
            return Err(format!("must be absolute, got {p:?}"));
        }
        a.extra.extend(["--project-path".to_string(), p]);
        Ok(())
    },
);

const JSON: Opt<HostArgs> = flags::json("print JSON");

static CONNECT: Command<HostArgs> = Command {
    path: "host connect",
    about: "register pyro with a host",
    doc: "Registers pyro with HOST through the host's own CLI (`claude mcp add --scope\n\
          user`, `codex mcp add`) when it is on PATH, else by editing the host's config\n\
          file (~/.claude.json, ~/.codex/config.toml) directly.",
    args: &[Arg::required(
        "HOST",
        "HOST (claude-code, codex)",
        "claude-code or codex",
        |a, v| host(a, v, &[Host::ClaudeCode, Host::Codex]),
    )],
    opts: &[PROFILE, PROJECT_PATH, JSON],
    check: None,
    examples: &[
        "pyro host connect claude-code",
        "pyro host connect codex --project-path /home/me/src/app",
    ],
    run: |a| {
        report(
            hostcfg::connect(a.host.expect("HOST is required"), &a.extra),
            a.json,
        )
    },
};

static PRINT_CONFIG: Command<HostArgs> = Command {
    path: "host print-config",
    about: "print an opencode.json snippet to merge into your config",
    doc: "Prints the opencode.json snippet that registers pyro; merge it into your\n\
          OpenCode config. The output is JSON with or without --json.",
    args: &[Arg::required(
        "HOST",
        "HOST (opencode)",
        "opencode",
        |a, v| host(a, v, &[Host::OpenCode]),
    )],
    opts: &[PROFILE, PROJECT_PATH, JSON],
    check: None,
    examples: &["pyro host print-config opencode --profile workspace-full"],
    run: |a| match Registration::this_binary(&a.extra) {
        Ok(reg) => {
            print_json(&hostcfg::opencode_config(&reg));
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    },
};

static DOCTOR: Command<HostArgs> = Command {
    path: "host doctor",
    about: "for each host: CLI found, pyro registered, command still valid",
    doc: "For each host: whether its CLI is on PATH, whether pyro is registered, and\n\
          whether the registered command still works. Exits 1 when one is broken.",
    args: &[],
    opts: &[JSON],
    check: None,
    examples: &[],
    run: |a| doctor(a.json),
};

static REPAIR: Command<HostArgs> = Command {
    path: "host repair",
    about: "re-point a stale or broken entry at this binary",
    doc: "Re-points HOST's stale or broken pyro entry at this binary, keeping the\n\
          entry's own flags (use `pyro host connect` to change them).",
    args: &[Arg::required(
        "HOST",
        "HOST (claude-code, codex, opencode)",
        "claude-code, codex or opencode",
        |a, v| host(a, v, &Host::all()),
    )],
    opts: &[JSON],
    check: None,
    examples: &["pyro host repair claude-code"],
    run: |a| report(hostcfg::repair(a.host.expect("HOST is required")), a.json),
};

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
