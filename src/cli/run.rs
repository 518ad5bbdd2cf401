//! `pyro run ENV [options] -- CMD...`

use super::{fail, parse_num, print_json, usage_error};
use crate::engine::run::{self, RunRequest};
use crate::engine::EngineError;
use crate::render::{to_json, Rendered};
use lexopt::prelude::*;

pub const USAGE: &str = "\
Usage: pyro run ENV [options] -- CMD [ARGS...]

Boots a fresh microVM from environment ENV, runs CMD in /workspace, prints
its output, and always tears the VM down. Exits with CMD's exit code
(124 when it timed out).

Options:
  --vcpu-count N        vCPUs (default 1)
  --mem-mib M           guest memory in MiB (default 1024)
  --timeout-seconds S   kill CMD after S seconds (default 30)
  --ttl-seconds S       accepted for compatibility; one-shot VMs never outlive the run
  --network             give the guest network access (not available yet)
  --allow-host-compat   if no guest can boot here, run CMD on the host, unisolated
  --json                print one JSON object instead of the output
  -h, --help            show this help

Examples:
  pyro run debian:12 -- git --version
  pyro run debian:12-build --timeout-seconds 300 -- sh -c 'make -j2 && make test'
";

pub fn main(mut parser: lexopt::Parser) -> i32 {
    let mut env: Option<String> = None;
    let mut argv: Vec<String> = Vec::new();
    let mut req = RunRequest::new("", "");
    let mut json = false;
    loop {
        let arg = match parser.next() {
            Ok(Some(a)) => a,
            Ok(None) => break,
            Err(e) => return usage_error(&e.to_string(), USAGE),
        };
        let r: Result<(), String> = match arg {
            Long("vcpu-count") => parse_num(&mut parser, "vcpu-count").map(|v| req.vcpu_count = v),
            Long("mem-mib") => parse_num(&mut parser, "mem-mib").map(|v| req.mem_mib = v),
            Long("timeout-seconds") => {
                parse_num(&mut parser, "timeout-seconds").map(|v| req.timeout_seconds = v)
            }
            Long("ttl-seconds") => {
                parse_num(&mut parser, "ttl-seconds").map(|v| req.ttl_seconds = v)
            }
            Long("network") => {
                req.network = true;
                Ok(())
            }
            Long("allow-host-compat") => {
                req.allow_host_compat = true;
                Ok(())
            }
            Long("json") => {
                json = true;
                Ok(())
            }
            Long("help") | Short('h') => {
                print!("{USAGE}");
                return 0;
            }
            Value(v) if env.is_none() => {
                env = Some(v.to_string_lossy().into_owned());
                Ok(())
            }
            Value(v) => {
                // Everything after `--` arrives as values; the first stray
                // value before it is an error.
                argv.push(v.to_string_lossy().into_owned());
                argv.extend(
                    parser
                        .raw_args()
                        .map(|mut r| {
                            r.by_ref()
                                .map(|a| a.to_string_lossy().into_owned())
                                .collect::<Vec<_>>()
                        })
                        .unwrap_or_default(),
                );
                Ok(())
            }
            other => Err(format!("unexpected {}", super::describe(&other))),
        };
        if let Err(e) = r {
            return usage_error(&e, USAGE);
        }
    }
    let Some(env) = env else {
        return usage_error("missing ENV (e.g. debian:12)", USAGE);
    };
    if argv.is_empty() {
        return usage_error("missing command after `--`", USAGE);
    }
    req.environment = env;
    req.command = shell_join(&argv);
    super::signals::install();
    let mut progress = |phase: &run::Phase| {
        if let run::Phase::HostCompat { warning } = phase {
            eprintln!("[run] WARNING: {warning}");
        } else if !json {
            let fields: Vec<String> = to_json(phase)
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| {
                            format!(
                                "{k}={}",
                                v.as_str().map(String::from).unwrap_or(v.to_string())
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            eprintln!("[run] phase={} {}", phase.name(), fields.join(" "));
        }
    };
    match run::run(&req, &mut progress) {
        Ok(r) => {
            if json {
                print_json(&r.to_json());
            } else {
                r.to_human().print();
            }
            r.exec.exit_code
        }
        // A person typed this command: tell them about the unisolated
        // fallback (MCP clients never see this hint).
        Err(e) if run::is_no_guest(&e) && !req.allow_host_compat => fail(
            &EngineError::Unavailable(format!(
                "{e} (--allow-host-compat runs the command on the host instead, without isolation)"
            )),
            json,
        ),
        Err(e) => fail(&e, json),
    }
}

/// Joins argv into one shell command line, quoting only where needed.
pub fn shell_join(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\"'\"'"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::shell_join;

    #[test]
    fn quotes_like_shlex() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(shell_join(&args(&["git", "--version"])), "git --version");
        assert_eq!(
            shell_join(&args(&["sh", "-c", "echo it's"])),
            "sh -c 'echo it'\"'\"'s'"
        );
        assert_eq!(shell_join(&args(&[""])), "''");
    }
}
