//! What the operator let this server's MCP client reach on the host: host
//! execution (`--allow-host-compat`) and the directories its host paths
//! may name (the project plus `--allow-path` roots). Set once at startup
//! from the command line, never from a client.

use super::project::ProjectSource;
use crate::engine::hostpath::{HostPathError, Roots};
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct HostAccess {
    /// `vm_run`/`workspace_create` may honour `allow_host_compat`.
    pub allow_host_compat: bool,
    /// Where `seed_path`, `source_path` and `output_path` may lead.
    pub roots: Roots,
}

/// The error text for `allow_host_compat: true` on a server that does not
/// allow it. It says what to do instead and nothing about how the operator
/// could enable it: a prompt-injected model must not be invited to ask.
pub const HOST_COMPAT_REFUSED: &str =
    "this server runs every command in a VM and never on the host; \
     call again without allow_host_compat (or with it false)";

impl HostAccess {
    /// The project's directory (when it is a local one) and `allowed`.
    pub fn new(
        project: &ProjectSource,
        allowed: &[PathBuf],
        allow_host_compat: bool,
    ) -> Result<HostAccess, HostPathError> {
        Ok(HostAccess {
            allow_host_compat,
            roots: Roots::confined(project.host_root(), allowed)?,
        })
    }

    /// No host path allowed, no host execution: for tests of the protocol.
    #[cfg(test)]
    pub fn none() -> HostAccess {
        HostAccess {
            allow_host_compat: false,
            roots: Roots::confined(None, &[]).expect("no roots to check"),
        }
    }

    /// Sentences for the server's `instructions`.
    pub fn describe(&self, paths: bool) -> String {
        let mut s = String::new();
        if paths {
            let list: Vec<String> = self
                .roots
                .list()
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            if list.is_empty() {
                s.push_str(
                    "Host paths (seed_path, source_path, output_path): none are allowed on this server; \
                     workspace_create without seed_path still seeds from the project source.",
                );
            } else {
                s.push_str(&format!(
                    "Host paths (seed_path, source_path, output_path) must lie inside: {} \
                     (symlinks are followed and must stay inside too).",
                    list.join(", ")
                ));
                match self.roots.base() {
                    Some(b) => s.push_str(&format!(
                        " Relative host paths resolve against {}.",
                        b.display()
                    )),
                    None => s.push_str(" Give host paths as absolute paths."),
                }
                s.push_str(
                    " workspace_export never writes into a hidden directory or file (a name starting \
                     with '.', such as .git) below them, nor replaces one of them itself.",
                );
            }
        }
        if self.allow_host_compat {
            s.push_str(
                " The operator allowed host execution: on a host where no VM can boot, vm_run with \
                 allow_host_compat true runs the command directly on the host WITHOUT isolation.",
            );
        } else {
            s.push_str(" Every command runs in a VM; allow_host_compat is refused.");
        }
        s.trim_start().to_string()
    }

    /// `_meta["pyro/host_access"]` of the `initialize` answer.
    pub fn to_json(&self) -> Value {
        json!({
            "allowed_roots": self.roots.list(),
            "relative_to": self.roots.base(),
            "allow_host_compat": self.allow_host_compat,
        })
    }
}
