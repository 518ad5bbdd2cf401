//! `pyro workspace ...`: persistent workspaces from the terminal. Each
//! subcommand calls the same engine function as the MCP tool of the same
//! name; `--json` prints exactly the object the tool returns.

use super::{fail, print_json, usage_error};
use crate::engine::host::kvm_status;
use crate::engine::hostpath::{HostPathError, Roots};
use crate::engine::workspace::lifecycle::{self, CreateRequest, DEFAULT_ENVIRONMENT};
use crate::engine::workspace::results::Encoding;
use crate::engine::workspace::seed::SeedSource;
use crate::engine::workspace::{export, files, DEFAULT_READ_MAX_BYTES};
use crate::engine::{EngineError, Result};
use crate::render::Rendered;
use lexopt::prelude::*;
use std::collections::BTreeMap;

pub const USAGE: &str = "\
Usage: pyro workspace <command> [options]

Persistent microVM workspaces: /workspace survives between commands and
across pyro processes until the workspace is deleted. After --ttl-seconds
without activity (default 600) its VM is stopped (state expired) and the disk
kept; any operation boots it again. An expired workspace is deleted once
--retention-seconds (default 604800, 7 days; PYRO_WORKSPACE_RETENTION_SECONDS
sets the default) have passed, by the wall clock and by the host uptime pyro
measured itself, so a clock jump deletes nothing.

Commands:
  create [ENV]              create and boot a workspace (ENV default debian:12)
      [--seed-path DIR|ARCHIVE] [--name NAME] [--label KEY=VALUE]...
      [--vcpu-count N] [--mem-mib M] [--ttl-seconds S] [--retention-seconds S]
      [--json | --id-only]
  list                      workspaces, most recently active first
  status ID                 state, resources, seed, last command
  update ID [--name NAME | --clear-name] [--label K=V]... [--clear-label K]...
  exec ID [--timeout-seconds S] -- CMD [ARGS...]
                            run CMD in /workspace; exits with its exit code
  sync push ID SOURCE [--dest PATH]   (also: sync-push)
                            copy a host directory or .tar/.tar.gz into /workspace
  file list ID [PATH] [--recursive]
  file read ID PATH [--max-bytes N] [--content-only]
  file write ID PATH (--text TEXT | --text-file FILE)
  patch apply ID (--patch TEXT | --patch-file FILE)
                            apply a unified diff, all files or none
  diff ID                   /workspace against the baseline (the seeded tree)
  export ID PATH --output HOST_PATH [--overwrite]
                            copy a file or directory out to the host
  logs ID                   commands run since the last reset
  summary ID                one review of the session since the last reset
  reset ID                  fresh VM and disk, /workspace back to the baseline
  delete ID                 stop the VM and remove everything

Every command takes --json for the same JSON object the MCP tool returns.
Paths inside the workspace are relative to /workspace (or absolute under it).

Examples:
  id=$(pyro workspace create debian:12 --seed-path ./repo --id-only)
  pyro workspace exec $id -- make test
  pyro workspace patch apply $id --patch-file fix.diff
  pyro workspace diff $id
  pyro workspace export $id src/fixed.c --output ./fixed.c
  pyro workspace delete $id
";

/// Parsed options of one subcommand.
#[derive(Default)]
struct Args {
    positional: Vec<String>,
    opts: BTreeMap<&'static str, Vec<String>>,
    flags: Vec<&'static str>,
}

impl Args {
    fn opt(&self, name: &str) -> Option<&str> {
        self.opts
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }
    fn all(&self, name: &str) -> Vec<String> {
        self.opts.get(name).cloned().unwrap_or_default()
    }
    fn flag(&self, name: &str) -> bool {
        self.flags.contains(&name)
    }
    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> std::result::Result<T, String> {
        match self.opt(name) {
            None => Ok(default),
            Some(s) => s
                .parse()
                .map_err(|_| format!("--{name} needs a number, got {s:?}")),
        }
    }
}

/// Parses with `valued` options (taking a value) and `flags`.
fn parse(
    parser: &mut lexopt::Parser,
    valued: &[&'static str],
    flags: &[&'static str],
) -> std::result::Result<Option<Args>, String> {
    let mut a = Args::default();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("help") | Short('h') => {
                print!("{USAGE}");
                return Ok(None);
            }
            Long(name) => {
                let name = name.to_string();
                if let Some(v) = valued.iter().find(|v| **v == name) {
                    let val = parser
                        .value()
                        .map_err(|e| e.to_string())?
                        .into_string()
                        .map_err(|_| format!("--{name} must be valid UTF-8"))?;
                    a.opts.entry(v).or_default().push(val);
                } else if let Some(f) = flags.iter().find(|f| **f == name) {
                    a.flags.push(f);
                } else {
                    return Err(format!("unknown option --{name}"));
                }
            }
            Short(c) => return Err(format!("unknown option -{c}")),
            Value(v) => {
                let v = v
                    .into_string()
                    .map_err(|_| "arguments must be valid UTF-8".to_string())?;
                a.positional.push(v);
            }
        }
    }
    Ok(Some(a))
}

pub fn main(mut parser: lexopt::Parser) -> i32 {
    let sub = match parser.next() {
        Ok(Some(Value(v))) => v.to_string_lossy().into_owned(),
        Ok(Some(Long("help"))) | Ok(Some(Short('h'))) | Ok(None) => {
            print!("{USAGE}");
            return 0;
        }
        Ok(Some(other)) => {
            return usage_error(&format!("unexpected {}", super::describe(&other)), USAGE)
        }
        Err(e) => return usage_error(&e.to_string(), USAGE),
    };
    // Two-word commands: `sync push`, `file list|read|write`, `patch apply`.
    let sub = match sub.as_str() {
        "sync" | "file" | "patch" => match parser.next() {
            Ok(Some(Value(v))) => format!("{sub} {}", v.to_string_lossy()),
            _ => {
                return usage_error(
                    &format!(
                        "`workspace {sub}` needs a subcommand ({})",
                        match sub.as_str() {
                            "sync" => "push",
                            "file" => "list, read or write",
                            _ => "apply",
                        }
                    ),
                    USAGE,
                )
            }
        },
        "sync-push" => "sync push".to_string(),
        _ => sub,
    };
    let (valued, flags): (&[&'static str], &[&'static str]) = match sub.as_str() {
        "create" => (
            &[
                "vcpu-count",
                "mem-mib",
                "ttl-seconds",
                "retention-seconds",
                "seed-path",
                "name",
                "label",
                "network-policy",
            ],
            &["json", "id-only", "allow-host-compat"],
        ),
        "update" => (&["name", "label", "clear-label"], &["json", "clear-name"]),
        "exec" => (&["timeout-seconds"], &["json"]),
        "sync push" => (&["dest"], &["json"]),
        "file list" => (&[], &["json", "recursive"]),
        "file read" => (&["max-bytes"], &["json", "content-only"]),
        "file write" => (&["text", "text-file"], &["json"]),
        "patch apply" => (&["patch", "patch-file"], &["json"]),
        "export" => (&["output"], &["json", "overwrite"]),
        "reset" => (&["snapshot"], &["json"]),
        "list" | "status" | "logs" | "summary" | "diff" | "delete" => (&[], &["json"]),
        other => return usage_error(&format!("unknown workspace command {other:?}"), USAGE),
    };
    let args = match parse(&mut parser, valued, flags) {
        Ok(Some(a)) => a,
        Ok(None) => return 0,
        Err(e) => return usage_error(&format!("workspace {sub}: {e}"), USAGE),
    };
    let json = args.flag("json");
    match run(&sub, args) {
        Ok(Outcome::Show(r, code)) => {
            if json {
                print_json(&r.to_json());
            } else {
                r.to_human().print();
            }
            code
        }
        Ok(Outcome::Done(code)) => code,
        Err(Failure::Usage(m)) => usage_error(&format!("workspace {sub}: {m}"), USAGE),
        Err(Failure::Engine(e)) => fail(&e, json),
    }
}

enum Outcome {
    /// A result and the exit code.
    Show(Box<dyn Rendered>, i32),
    /// Already printed.
    Done(i32),
}

enum Failure {
    Usage(String),
    Engine(EngineError),
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        Failure::Engine(e)
    }
}

impl From<HostPathError> for Failure {
    fn from(e: HostPathError) -> Self {
        Failure::Engine(e.into())
    }
}

fn need(args: &Args, n: usize, names: &str) -> std::result::Result<(), Failure> {
    if args.positional.len() < n {
        return Err(Failure::Usage(format!("missing {names}")));
    }
    Ok(())
}

fn labels(items: &[String]) -> std::result::Result<BTreeMap<String, String>, Failure> {
    let mut out = BTreeMap::new();
    for l in items {
        let Some((k, v)) = l.split_once('=') else {
            return Err(Failure::Usage(format!(
                "--label needs KEY=VALUE, got {l:?}"
            )));
        };
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

fn read_text_file(path: &str, what: &str) -> Result<String> {
    let bytes =
        std::fs::read(path).map_err(|e| EngineError::io(format!("reading {what} {path}"), e))?;
    String::from_utf8(bytes)
        .map_err(|_| EngineError::Invalid(format!("{what} {path} is not UTF-8 text")))
}

fn run(sub: &str, a: Args) -> std::result::Result<Outcome, Failure> {
    let id = || a.positional.first().cloned().unwrap_or_default();
    let usage = |m: String| Failure::Usage(m);
    let v: Box<dyn Rendered> = match sub {
        "create" => {
            if a.positional.len() > 1 {
                return Err(usage(format!("unexpected argument {:?}", a.positional[1])));
            }
            if let Some(p) = a.opt("network-policy").filter(|p| *p != "off") {
                return Err(Failure::Engine(EngineError::Unavailable(format!(
                    "--network-policy {p} is not available: guest networking is not in this build (workspaces are offline)"
                ))));
            }
            let mut req = CreateRequest::new(
                a.positional
                    .first()
                    .map(String::as_str)
                    .unwrap_or(DEFAULT_ENVIRONMENT),
            );
            req.vcpu_count = a.num("vcpu-count", req.vcpu_count).map_err(usage)?;
            req.mem_mib = a.num("mem-mib", req.mem_mib).map_err(usage)?;
            req.ttl_seconds = a.num("ttl-seconds", req.ttl_seconds).map_err(usage)?;
            if a.opt("retention-seconds").is_some() {
                req.retention_seconds = Some(a.num("retention-seconds", 0).map_err(usage)?);
            }
            req.allow_host_compat = a.flag("allow-host-compat");
            req.name = a.opt("name").map(String::from);
            req.labels = labels(&a.all("label"))?;
            if let Some(p) = a.opt("seed-path") {
                // The person typed it: any path they can reach.
                req.seed = SeedSource::Path(Roots::unconfined().resolve_read(p)?);
            }
            let quiet = a.flag("json") || a.flag("id-only");
            let compat = req.allow_host_compat;
            super::signals::install();
            let r = lifecycle::create(req, &mut |phase| {
                if !quiet {
                    eprintln!("[workspace] {phase}");
                }
            })
            .map_err(|e| match e {
                // The person asked for the fallback: say why it did not apply.
                EngineError::Unavailable(m) if compat && kvm_status().blocker().is_some() => {
                    EngineError::Unavailable(format!(
                        "{m} (--allow-host-compat applies to one-shot `pyro run` only: a workspace always needs a VM)"
                    ))
                }
                e => e,
            })?;
            if a.flag("id-only") {
                println!("{}", r.workspace.workspace_id);
                return Ok(Outcome::Done(0));
            }
            Box::new(r)
        }
        "list" => Box::new(lifecycle::list()?),
        "status" => {
            need(&a, 1, "workspace ID")?;
            Box::new(lifecycle::status(&id())?)
        }
        "update" => {
            need(&a, 1, "workspace ID")?;
            Box::new(lifecycle::update(
                &id(),
                a.opt("name").map(String::from),
                a.flag("clear-name"),
                labels(&a.all("label"))?,
                a.all("clear-label"),
            )?)
        }
        "exec" => {
            need(&a, 2, "workspace ID and the command (after --)")?;
            let command = super::run::shell_join(&a.positional[1..]);
            let timeout = a
                .num("timeout-seconds", files::DEFAULT_TIMEOUT_SECONDS)
                .map_err(usage)?;
            super::signals::install();
            let r = files::exec(&id(), &command, timeout)?;
            let code = r.exec.exit_code;
            return Ok(Outcome::Show(Box::new(r), code));
        }
        "sync push" => {
            need(&a, 2, "workspace ID and SOURCE")?;
            Box::new(files::sync_push(
                &id(),
                &Roots::unconfined().resolve_read(&a.positional[1])?,
                a.opt("dest").unwrap_or("/workspace"),
            )?)
        }
        "file list" => {
            need(&a, 1, "workspace ID")?;
            let path = a
                .positional
                .get(1)
                .map(String::as_str)
                .unwrap_or("/workspace");
            Box::new(files::list(&id(), path, a.flag("recursive"))?)
        }
        "file read" => {
            need(&a, 2, "workspace ID and PATH")?;
            let max = a.num("max-bytes", DEFAULT_READ_MAX_BYTES).map_err(usage)?;
            let r = files::read(&id(), &a.positional[1], max)?;
            if a.flag("content-only") {
                use std::io::Write;
                let body = match r.encoding {
                    Encoding::Base64 => pyro_proto::base64_decode(&r.content).unwrap_or_default(),
                    Encoding::Utf8 => r.content.into_bytes(),
                };
                let _ = std::io::stdout().write_all(&body);
                return Ok(Outcome::Done(0));
            }
            Box::new(r)
        }
        "file write" => {
            need(&a, 2, "workspace ID and PATH")?;
            let text = match (a.opt("text"), a.opt("text-file")) {
                (Some(t), None) => t.to_string(),
                (None, Some(f)) => read_text_file(f, "--text-file")?,
                _ => return Err(usage("give exactly one of --text or --text-file".into())),
            };
            Box::new(files::write(&id(), &a.positional[1], &text)?)
        }
        "patch apply" => {
            need(&a, 1, "workspace ID")?;
            let text = match (a.opt("patch"), a.opt("patch-file")) {
                (Some(t), None) => t.to_string(),
                (None, Some(f)) => read_text_file(f, "--patch-file")?,
                _ => return Err(usage("give exactly one of --patch or --patch-file".into())),
            };
            Box::new(files::patch_apply(&id(), &text)?)
        }
        "diff" => {
            need(&a, 1, "workspace ID")?;
            Box::new(files::diff(&id())?)
        }
        "export" => {
            need(&a, 2, "workspace ID and PATH")?;
            let Some(out) = a.opt("output") else {
                return Err(usage("missing --output HOST_PATH".into()));
            };
            let dest = Roots::unconfined().resolve_write(out)?;
            Box::new(export::export(
                &id(),
                &a.positional[1],
                &dest,
                a.flag("overwrite"),
            )?)
        }
        "logs" => {
            need(&a, 1, "workspace ID")?;
            Box::new(files::logs(&id())?)
        }
        "summary" => {
            need(&a, 1, "workspace ID")?;
            Box::new(files::summary(&id())?)
        }
        "reset" => {
            need(&a, 1, "workspace ID")?;
            super::signals::install();
            Box::new(lifecycle::reset(
                &id(),
                a.opt("snapshot").unwrap_or("baseline"),
            )?)
        }
        "delete" => {
            need(&a, 1, "workspace ID")?;
            Box::new(lifecycle::delete(&id())?)
        }
        _ => unreachable!("checked in main"),
    };
    Ok(Outcome::Show(v, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(
        args: &[&str],
        valued: &[&'static str],
        flags: &[&'static str],
    ) -> std::result::Result<Args, String> {
        let mut p = lexopt::Parser::from_args(args.iter().map(|s| s.to_string()));
        parse(&mut p, valued, flags).map(|a| a.unwrap())
    }

    #[test]
    fn options_flags_and_the_command_after_dashes() {
        let a = parse_str(
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
            &["timeout-seconds"],
            &["json"],
        )
        .unwrap();
        assert_eq!(a.positional, ["abc", "sh", "-c", "echo hi"]);
        assert_eq!(a.num("timeout-seconds", 30u64).unwrap(), 5);
        assert!(a.flag("json"));
        let e = parse_str(&["--bogus"], &[], &["json"]).err().unwrap();
        assert!(e.contains("--bogus"), "{e}");
        let a = parse_str(&["--label", "a=1", "--label", "b=2"], &["label"], &[]).unwrap();
        let l = labels(&a.all("label")).ok().unwrap();
        assert_eq!(l.len(), 2);
        assert!(labels(&["nokey".to_string()]).is_err());
    }
}
