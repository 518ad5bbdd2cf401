//! `pyro run ENV [options] -- CMD...`

use super::flags::{self, json_flag, Arg, Command, Opt, Takes};
use super::{fail, print_json};
use crate::engine::run::{self, RunRequest};
use crate::engine::EngineError;

pub struct RunArgs {
    /// Environment and VM settings; the command is joined from `argv`.
    req: RunRequest,
    argv: Vec<String>,
    json: bool,
}

impl Default for RunArgs {
    fn default() -> Self {
        RunArgs {
            req: RunRequest::new("", ""),
            argv: Vec::new(),
            json: false,
        }
    }
}

json_flag!(RunArgs);

pub static RUN: Command<RunArgs> = Command {
    path: "run",
    about: "boot ENV, run CMD in it, tear it down",
    doc: "Boots a fresh microVM from environment ENV, runs CMD in /workspace, prints\n\
          its output, and always tears the VM down. Exits with CMD's exit code\n\
          (124 when it timed out).",
    args: &[
        Arg::required(
            "ENV",
            "ENV (e.g. debian:12)",
            "guest environment (`pyro env list`)",
            |a: &mut RunArgs, v| {
                a.req.environment = flags::text(v)?;
                Ok(())
            },
        ),
        Arg::required(
            "CMD",
            "command after `--`",
            "the command and its arguments (all of them, options too)",
            |a: &mut RunArgs, v| {
                a.argv.push(flags::text(v)?);
                Ok(())
            },
        )
        .rest(Takes::RawRest),
    ],
    opts: &[
        Opt::value("vcpu-count", "N", "vCPUs", |a: &mut RunArgs, v| {
            a.req.vcpu_count = flags::number(v)?;
            Ok(())
        })
        .default(|a| a.req.vcpu_count.to_string()),
        Opt::value(
            "mem-mib",
            "M",
            "guest memory in MiB",
            |a: &mut RunArgs, v| {
                a.req.mem_mib = flags::number(v)?;
                Ok(())
            },
        )
        .default(|a| a.req.mem_mib.to_string()),
        Opt::value(
            "timeout-seconds",
            "S",
            "kill CMD after S seconds (exit code 124)",
            |a: &mut RunArgs, v| {
                a.req.timeout_seconds = flags::number(v)?;
                Ok(())
            },
        )
        .default(|a| a.req.timeout_seconds.to_string()),
        Opt::value(
            "ttl-seconds",
            "S",
            "accepted for compatibility; one-shot VMs never outlive the run",
            |a: &mut RunArgs, v| {
                a.req.ttl_seconds = flags::number(v)?;
                Ok(())
            },
        ),
        Opt::switch(
            "network",
            "give the guest network access (not available yet)",
            |a| a.req.network = true,
        ),
        Opt::switch(
            "allow-host-compat",
            "if no guest can boot here, run CMD on the host, unisolated",
            |a| a.req.allow_host_compat = true,
        ),
        flags::json("print one JSON object instead of the output"),
    ],
    check: None,
    examples: &[
        "pyro run debian:12 -- git --version",
        "pyro run debian:12-build --timeout-seconds 300 -- sh -c 'make -j2 && make test'",
        "pyro run debian:12 --json -- uname -a",
    ],
    run: main,
};

fn main(a: RunArgs) -> i32 {
    let mut req = a.req;
    let json = a.json;
    req.command = shell_join(&a.argv);
    super::signals::install();
    let mut progress = |phase: &str, details: serde_json::Value| {
        if phase == "host_compat" {
            eprintln!(
                "[run] WARNING: {}",
                details["warning"].as_str().unwrap_or("")
            );
        } else if !json {
            let fields: Vec<String> = details
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
            eprintln!("[run] phase={phase} {}", fields.join(" "));
        }
    };
    match run::run(&req, &mut progress) {
        Ok(v) => {
            let code = v["exit_code"].as_i64().unwrap_or(1) as i32;
            if json {
                print_json(&v);
            } else {
                use std::io::Write;
                let _ = std::io::stdout().write_all(v["stdout"].as_str().unwrap_or("").as_bytes());
                let _ = std::io::stdout().flush();
                eprint!("{}", v["stderr"].as_str().unwrap_or(""));
                for (flag, what) in [
                    ("stdout_truncated", "stdout"),
                    ("stderr_truncated", "stderr"),
                ] {
                    if v[flag] == true {
                        eprintln!(
                            "[run] note: {what} was truncated ({} bytes produced)",
                            v[format!("{what}_bytes")]
                        );
                    }
                }
                eprintln!(
                    "[run] environment={} execution_mode={} exit_code={code} duration_ms={} boot_ms={}",
                    v["environment"].as_str().unwrap_or(""),
                    v["execution_mode"].as_str().unwrap_or(""),
                    v["duration_ms"],
                    v["timings"]["boot_ms"]
                );
            }
            code
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
