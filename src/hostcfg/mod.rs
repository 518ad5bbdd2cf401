//! Registering `pyro mcp serve` with chat hosts (Claude Code, Codex,
//! OpenCode), checking those registrations and repairing them.
//!
//! Where the host's own CLI is installed, pyro drives it (`claude mcp add`,
//! `codex mcp add`) so the host stays the owner of its file format; where
//! it is not, pyro edits the host's config file itself. Either way the file
//! is backed up first, only the `pyro` entry is touched, and doing the same
//! thing twice changes nothing the second time.

mod files;
mod hosts;
mod toml;

pub use hosts::{opencode_config, Host, HOST_NAMES};

use serde_json::{json, Value};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The name pyro registers itself under in every host.
pub const SERVER_NAME: &str = "pyro";
/// How long a host CLI or a `pyro --version` probe may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub enum HostError {
    Io(String),
    /// The config file exists but cannot be parsed; it is left alone.
    Unparseable {
        path: PathBuf,
        why: String,
    },
    /// The entry exists in a shape pyro does not rewrite (comments, inline
    /// TOML tables); the user has to edit it.
    HandEdit(String),
    /// The host's CLI failed.
    Cli(String),
    Unsupported(String),
}

impl HostError {
    pub fn io(context: impl fmt::Display, e: std::io::Error) -> Self {
        HostError::Io(format!("{context}: {e}"))
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Io(m) | HostError::HandEdit(m) | HostError::Cli(m) | HostError::Unsupported(m) => {
                f.write_str(m)
            }
            HostError::Unparseable { path, why } => write!(
                f,
                "{} is not valid ({why}); fix or move it, then retry (pyro does not overwrite a file it cannot read)",
                path.display()
            ),
        }
    }
}

/// A server entry: the command a host runs to start pyro.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub command: String,
    pub args: Vec<String>,
}

impl Registration {
    /// This very binary, serving MCP with `extra` flags.
    pub fn this_binary(extra: &[String]) -> Result<Registration, HostError> {
        let exe = std::env::current_exe()
            .and_then(std::fs::canonicalize)
            .map_err(|e| HostError::io("locating the pyro binary", e))?;
        let mut args = vec!["mcp".to_string(), "serve".to_string()];
        args.extend(extra.iter().cloned());
        Ok(Registration {
            command: exe.to_string_lossy().into_owned(),
            args,
        })
    }

    pub fn to_json(&self) -> Value {
        json!({"command": self.command, "args": self.args})
    }

    /// Why this entry would not start a working pyro MCP server, if so.
    pub fn problem(&self) -> Option<String> {
        if self.args.len() < 2 || self.args[0] != "mcp" || self.args[1] != "serve" {
            return Some(format!(
                "its arguments {:?} do not start with \"mcp serve\"",
                self.args
            ));
        }
        let path = match which(&self.command) {
            Some(p) => p,
            None => {
                return Some(if self.command.contains('/') {
                    format!(
                        "its command {} does not exist (moved or deleted?)",
                        self.command
                    )
                } else {
                    format!("its command {:?} is not on PATH", self.command)
                })
            }
        };
        if !is_executable(&path) {
            return Some(format!("its command {} is not executable", path.display()));
        }
        match probe_version(&path) {
            Ok(v) if v.starts_with("pyro ") => None,
            Ok(v) => Some(format!(
                "its command {} is not pyro (`--version` printed {:?})",
                path.display(),
                v.lines().next().unwrap_or("")
            )),
            Err(e) => Some(format!("its command {} did not run: {e}", path.display())),
        }
    }
}

/// What `connect` / `repair` did.
#[derive(Debug)]
pub struct Change {
    pub host: Host,
    /// "unchanged", "added" or "updated".
    pub action: &'static str,
    /// How: "host-cli" (the host's own CLI) or "config-file".
    pub method: &'static str,
    pub config_path: PathBuf,
    pub backup: Option<PathBuf>,
    pub before: Option<Registration>,
    pub after: Registration,
    pub note: String,
}

impl Change {
    pub fn to_json(&self) -> Value {
        json!({
            "host": self.host.name(),
            "action": self.action,
            "method": self.method,
            "config_path": self.config_path,
            "backup": self.backup,
            "before": self.before.as_ref().map(Registration::to_json),
            "after": self.after.to_json(),
            "note": self.note,
        })
    }
}

/// `pyro host connect HOST`: make HOST start this binary's MCP server.
pub fn connect(host: Host, extra_args: &[String]) -> Result<Change, HostError> {
    if host == Host::OpenCode {
        return Err(HostError::Unsupported(
            "OpenCode has no `mcp add` command; run `pyro host print-config opencode` and merge the output into opencode.json"
                .into(),
        ));
    }
    let want = Registration::this_binary(extra_args)?;
    register(host, want)
}

/// `pyro host repair HOST`: re-point a missing, stale or broken entry at
/// this binary, keeping the flags (profile, project) the user chose.
pub fn repair(host: Host) -> Result<Change, HostError> {
    let found = host.read()?;
    let extra: Vec<String> = match &found {
        Some(r) if r.args.len() >= 2 && r.args[0] == "mcp" && r.args[1] == "serve" => {
            r.args[2..].to_vec()
        }
        _ => Vec::new(),
    };
    let want = Registration::this_binary(&extra)?;
    if let Some(r) = &found {
        if r.problem().is_none() && *r == want {
            return Ok(Change {
                host,
                action: "unchanged",
                method: "none",
                config_path: host.config_path(),
                backup: None,
                before: found.clone(),
                after: want,
                note: "the registration is healthy; nothing to repair".into(),
            });
        }
    }
    if host == Host::OpenCode && found.is_none() {
        return Err(HostError::Unsupported(format!(
            "no pyro entry in {}; run `pyro host print-config opencode` and merge it into that file",
            host.config_path().display()
        )));
    }
    register(host, want)
}

fn register(host: Host, want: Registration) -> Result<Change, HostError> {
    let path = host.config_path();
    let before = host.read()?;
    if before.as_ref() == Some(&want) {
        return Ok(Change {
            host,
            action: "unchanged",
            method: "none",
            config_path: path,
            backup: None,
            before,
            after: want,
            note: "already registered with this binary; nothing changed".into(),
        });
    }
    host.check_writable()?;
    let backup = files::backup(&path)?;
    let cli = host.registering_cli().and_then(which);
    let (method, note) = match &cli {
        Some(cli) => {
            host.register_with_cli(cli, before.is_some(), &want)?;
            (
                "host-cli",
                format!("registered through {} (the host's own CLI)", cli.display()),
            )
        }
        None => {
            host.write(&want)?;
            (
                "config-file",
                format!(
                    "{} is not on PATH, so pyro wrote {} itself",
                    host.cli_name().unwrap_or("the host CLI"),
                    path.display()
                ),
            )
        }
    };
    // Trust the file, not the exit code: read back what the host will see.
    let after = host.read()?;
    if after.as_ref() != Some(&want) {
        return Err(HostError::Cli(format!(
            "after registering, {} shows {:?} instead of {:?}",
            path.display(),
            after,
            want
        )));
    }
    Ok(Change {
        host,
        action: if before.is_some() { "updated" } else { "added" },
        method,
        config_path: path,
        backup,
        before,
        after: want,
        note,
    })
}

/// One host's state for `pyro host doctor`.
pub fn diagnose(host: Host) -> Value {
    let cli = host.cli_name().map(|n| (n, which(n)));
    let (registration, read_error) = match host.read() {
        Ok(r) => (r, None),
        Err(e) => (None, Some(e.to_string())),
    };
    let problem = registration.as_ref().and_then(Registration::problem);
    let status = match (&read_error, &registration, &problem) {
        (Some(_), _, _) => "broken",
        (None, None, _) => "not-connected",
        (None, Some(_), Some(_)) => "broken",
        (None, Some(_), None) => "ok",
    };
    let advice = match status {
        "ok" => None,
        "not-connected" if host == Host::OpenCode => Some(
            "run `pyro host print-config opencode` and merge it into opencode.json".to_string(),
        ),
        "not-connected" => Some(format!("run `pyro host connect {}`", host.name())),
        _ if read_error.is_some() => {
            Some("fix the config file, then `pyro host doctor` again".into())
        }
        _ => Some(format!("run `pyro host repair {}`", host.name())),
    };
    json!({
        "host": host.name(),
        "status": status,
        "cli": cli.map(|(name, path)| json!({"name": name, "found": path.is_some(), "path": path})),
        "config_path": host.config_path(),
        "registered": registration.is_some(),
        "registration": registration.as_ref().map(Registration::to_json),
        "command_valid": registration.as_ref().map(|_| problem.is_none()),
        "problem": read_error.or(problem),
        "advice": advice,
    })
}

/// `PATH` lookup (or the path itself when it has a slash).
pub fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = Path::new(name);
        return p.exists().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file() && is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Runs `cmd args` with a deadline; returns stdout, or an error with the
/// command's stderr.
fn run_tool(cmd: &Path, args: &[&str]) -> Result<String, String> {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + TOOL_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {} s", TOOL_TIMEOUT.as_secs()));
            }
        }
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let why = if stderr.trim().is_empty() {
            stdout
        } else {
            stderr.into_owned()
        };
        Err(format!("exited with {}: {}", out.status, why.trim()))
    }
}

fn probe_version(path: &Path) -> Result<String, String> {
    run_tool(path, &["--version"]).map(|s| s.trim().to_string())
}
