//! Where each chat host keeps its MCP servers and how to change them.
//!
//! - Claude Code: `~/.claude.json` (or `$CLAUDE_CONFIG_DIR/.claude.json`),
//!   user scope, `mcpServers.pyro = {type: "stdio", command, args, env}`;
//!   CLI `claude mcp add --scope user pyro -- CMD ARGS...`.
//! - Codex: `~/.codex/config.toml` (or `$CODEX_HOME/config.toml`),
//!   `[mcp_servers.pyro]` with `command` and `args`; CLI `codex mcp add`.
//! - OpenCode: `~/.config/opencode/opencode.json` (XDG), `mcp.pyro =
//!   {type: "local", command: [CMD, ARGS...], enabled: true}`; no CLI verb.

use super::{files, run_tool, toml, HostError, Registration, SERVER_NAME};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    ClaudeCode,
    Codex,
    OpenCode,
}

pub const HOST_NAMES: [&str; 3] = ["claude-code", "codex", "opencode"];

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

fn env_dir(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl Host {
    pub fn parse(name: &str) -> Option<Host> {
        match name {
            "claude-code" | "claude" => Some(Host::ClaudeCode),
            "codex" => Some(Host::Codex),
            "opencode" => Some(Host::OpenCode),
            _ => None,
        }
    }

    pub fn all() -> [Host; 3] {
        [Host::ClaudeCode, Host::Codex, Host::OpenCode]
    }

    pub fn name(self) -> &'static str {
        match self {
            Host::ClaudeCode => "claude-code",
            Host::Codex => "codex",
            Host::OpenCode => "opencode",
        }
    }

    pub fn display(self) -> &'static str {
        match self {
            Host::ClaudeCode => "Claude Code",
            Host::Codex => "Codex",
            Host::OpenCode => "OpenCode",
        }
    }

    /// The host's CLI, looked for on PATH.
    pub fn cli_name(self) -> Option<&'static str> {
        match self {
            Host::ClaudeCode => Some("claude"),
            Host::Codex => Some("codex"),
            Host::OpenCode => Some("opencode"),
        }
    }

    /// The host's CLI when it can register MCP servers itself.
    pub fn registering_cli(self) -> Option<&'static str> {
        match self {
            Host::OpenCode => None,
            h => h.cli_name(),
        }
    }

    pub fn config_path(self) -> PathBuf {
        match self {
            Host::ClaudeCode => env_dir("CLAUDE_CONFIG_DIR")
                .unwrap_or_else(home)
                .join(".claude.json"),
            Host::Codex => env_dir("CODEX_HOME")
                .unwrap_or_else(|| home().join(".codex"))
                .join("config.toml"),
            Host::OpenCode => {
                let dir = env_dir("XDG_CONFIG_HOME")
                    .unwrap_or_else(|| home().join(".config"))
                    .join("opencode");
                let json = dir.join("opencode.json");
                let jsonc = dir.join("opencode.jsonc");
                if !json.exists() && jsonc.exists() {
                    jsonc
                } else {
                    json
                }
            }
        }
    }

    /// The `pyro` entry in the host's config, if any.
    pub fn read(self) -> Result<Option<Registration>, HostError> {
        let path = self.config_path();
        match self {
            Host::ClaudeCode => {
                let Some(root) = files::read_json(&path)? else {
                    return Ok(None);
                };
                Ok(root
                    .get("mcpServers")
                    .and_then(|s| s.get(SERVER_NAME))
                    .map(|e| Registration {
                        command: e["command"].as_str().unwrap_or("").to_string(),
                        args: strings(&e["args"]),
                    }))
            }
            Host::Codex => {
                let text = read_text(&path)?;
                if toml::has_unsupported_form(&text, SERVER_NAME) {
                    return Err(HostError::HandEdit(format!(
                        "{} defines mcp_servers.{SERVER_NAME} as an inline table or dotted keys, which pyro does not rewrite; change it to a [mcp_servers.{SERVER_NAME}] table or edit it by hand",
                        path.display()
                    )));
                }
                Ok(
                    toml::read_server(&text, SERVER_NAME).map(|(command, args)| Registration {
                        command: command.unwrap_or_default(),
                        args,
                    }),
                )
            }
            Host::OpenCode => {
                let Some(root) = files::read_json(&path)? else {
                    return Ok(None);
                };
                Ok(root.get("mcp").and_then(|s| s.get(SERVER_NAME)).map(|e| {
                    let argv = strings(&e["command"]);
                    Registration {
                        command: argv.first().cloned().unwrap_or_default(),
                        args: argv.get(1..).map(<[String]>::to_vec).unwrap_or_default(),
                    }
                }))
            }
        }
    }

    /// Refuses early when pyro could not rewrite the file safely.
    pub fn check_writable(self) -> Result<(), HostError> {
        let path = self.config_path();
        self.read()?;
        if self == Host::OpenCode {
            let text = read_text(&path)?;
            if files::has_json_comments(&text) {
                return Err(HostError::HandEdit(format!(
                    "{} has comments, which a rewrite would lose; edit the mcp.{SERVER_NAME} entry by hand (see `pyro host print-config opencode`)",
                    path.display()
                )));
            }
        }
        Ok(())
    }

    /// Writes the entry into the config file directly, keeping every other
    /// entry and any extra keys of the pyro entry (env, timeouts).
    pub fn write(self, reg: &Registration) -> Result<(), HostError> {
        let path = self.config_path();
        match self {
            Host::Codex => {
                let text = read_text(&path)?;
                files::write(
                    &path,
                    toml::replace_server(&text, SERVER_NAME, &reg.command, &reg.args).as_bytes(),
                )
            }
            Host::ClaudeCode | Host::OpenCode => {
                let mut root = files::read_json(&path)?.unwrap_or_else(|| json!({}));
                let (table, fresh) = if self == Host::ClaudeCode {
                    ("mcpServers", json!({"type": "stdio", "env": {}}))
                } else {
                    ("mcp", json!({"type": "local", "enabled": true}))
                };
                let unparseable = |why: &str| HostError::Unparseable {
                    path: path.clone(),
                    why: why.into(),
                };
                let servers = root
                    .as_object_mut()
                    .ok_or_else(|| unparseable("the top level is not an object"))?
                    .entry(table)
                    .or_insert_with(|| Value::Object(Map::new()))
                    .as_object_mut()
                    .ok_or_else(|| unparseable(&format!("\"{table}\" is not an object")))?;
                let entry = servers.entry(SERVER_NAME).or_insert(fresh);
                if !entry.is_object() {
                    return Err(unparseable(&format!(
                        "\"{table}.{SERVER_NAME}\" is not an object"
                    )));
                }
                if self == Host::ClaudeCode {
                    entry["command"] = json!(reg.command);
                    entry["args"] = json!(reg.args);
                } else {
                    let mut argv = vec![reg.command.clone()];
                    argv.extend(reg.args.iter().cloned());
                    entry["command"] = json!(argv);
                }
                files::write_json(&path, &root)
            }
        }
    }

    /// Registers through the host's CLI (replacing an existing entry).
    pub fn register_with_cli(
        self,
        cli: &Path,
        exists: bool,
        reg: &Registration,
    ) -> Result<(), HostError> {
        let fail = |what: &str, e: String| {
            HostError::Cli(format!("`{} mcp {what}` failed: {e}", cli.display()))
        };
        let mut add: Vec<&str> = vec!["mcp", "add"];
        match self {
            Host::ClaudeCode => {
                if exists {
                    run_tool(cli, &["mcp", "remove", SERVER_NAME, "--scope", "user"])
                        .map_err(|e| fail("remove", e))?;
                }
                add.extend(["--scope", "user"]);
            }
            // `codex mcp add` replaces an existing entry of the same name.
            Host::Codex => {}
            Host::OpenCode => {
                return Err(HostError::Unsupported(
                    "OpenCode's CLI cannot register MCP servers".into(),
                ))
            }
        }
        add.extend([SERVER_NAME, "--", reg.command.as_str()]);
        add.extend(reg.args.iter().map(String::as_str));
        run_tool(cli, &add).map(|_| ()).map_err(|e| fail("add", e))
    }
}

/// The OpenCode config that starts this binary's MCP server.
pub fn opencode_config(reg: &Registration) -> Value {
    let mut argv = vec![reg.command.clone()];
    argv.extend(reg.args.iter().cloned());
    json!({
        "$schema": "https://opencode.ai/config.json",
        "mcp": {SERVER_NAME: {"type": "local", "command": argv, "enabled": true}},
    })
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn read_text(path: &Path) -> Result<String, HostError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(HostError::io(format!("reading {}", path.display()), e)),
    }
}
