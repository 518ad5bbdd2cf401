//! What the operator let this server's MCP client reach on the host: host
//! execution (`--allow-host-compat`) and the directories its host paths
//! may name (the project plus `--allow-path` roots). Set once at startup
//! from the command line, never from a client.

use super::project::ProjectSource;
use crate::engine::hostpath::{HostPathError, Roots};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct HostAccess {
    /// `vm_run`/`workspace_create` may honour `allow_host_compat`.
    pub allow_host_compat: bool,
    /// Where `seed_path`, `source_path` and `output_path` may lead.
    pub roots: Roots,
    /// Why the project is not among the roots, when it is not.
    pub note: Option<String>,
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
        let home = std::env::var_os("HOME").map(PathBuf::from);
        HostAccess::with_home(project, allowed, allow_host_compat, home.as_deref())
    }

    /// `new`, with the user's home directory given. A checkout found by
    /// walking up that holds the whole home directory (a dotfiles repo in
    /// `~`, a checkout at `/`) is not a root: it would put `~/.ssh` and
    /// every other private file in reach. An operator who means it says so
    /// with `--project-path` or `--allow-path`.
    fn with_home(
        project: &ProjectSource,
        allowed: &[PathBuf],
        allow_host_compat: bool,
        home: Option<&Path>,
    ) -> Result<HostAccess, HostPathError> {
        let home = home.and_then(|h| std::fs::canonicalize(h).ok());
        let (root, note) = match project {
            ProjectSource::Detected { root, .. }
                if home.as_ref().is_some_and(|h| h.starts_with(root)) =>
            {
                (
                    None,
                    Some(format!(
                        "The detected checkout {} holds the home directory, so it is not an allowed host directory.",
                        root.display()
                    )),
                )
            }
            p => (p.host_root(), None),
        };
        Ok(HostAccess {
            allow_host_compat,
            roots: Roots::confined(root, allowed)?,
            note,
        })
    }

    /// No host path allowed, no host execution: for tests of the protocol.
    #[cfg(test)]
    pub fn none() -> HostAccess {
        HostAccess {
            allow_host_compat: false,
            roots: Roots::confined(None, &[]).expect("no roots to check"),
            note: None,
        }
    }

    /// Sentences for the server's `instructions`.
    pub fn describe(&self, paths: bool) -> String {
        let mut s = String::new();
        if paths {
            if let Some(n) = &self.note {
                s.push_str(n);
                s.push(' ');
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detected_checkout_holding_the_home_directory_is_not_a_root() {
        let d = crate::temp_dir::TempDir::new("access");
        let home = d.join("home/me");
        std::fs::create_dir_all(home.join("src/app")).unwrap();
        let detected = |root: PathBuf| ProjectSource::Detected { root, head: None };
        // A dotfiles checkout at ~ (or anything above it): no root.
        for root in [d.join("home/me"), d.join("home"), PathBuf::from("/")] {
            let a =
                HostAccess::with_home(&detected(root.clone()), &[], false, Some(&home)).unwrap();
            assert!(a.roots.list().is_empty(), "{root:?}");
            assert!(a.describe(true).contains("holds the home directory"));
        }
        // A checkout inside it is the project, as always.
        let app = d.join("home/me/src/app");
        let a = HostAccess::with_home(&detected(app.clone()), &[], false, Some(&home)).unwrap();
        assert_eq!(a.roots.list(), vec![app.clone()]);
        assert!(a.note.is_none());
        // The operator naming it explicitly is obeyed.
        let given = ProjectSource::Path {
            path: d.join("home/me"),
            git: None,
        };
        let a = HostAccess::with_home(&given, &[], false, Some(&home)).unwrap();
        assert_eq!(a.roots.list(), vec![d.join("home/me")]);
    }

    #[test]
    fn instructions_list_the_roots_and_the_host_execution_setting() {
        let a = HostAccess::none();
        let t = a.describe(true);
        assert!(t.contains("none are allowed"), "{t}");
        assert!(t.contains("allow_host_compat is refused"), "{t}");
        assert!(!t.contains("--allow"), "{t}");
        assert!(!a.describe(false).contains("Host paths"));
        assert_eq!(a.to_json()["allowed_roots"], serde_json::json!([]));
    }
}
