//! Persistent workspaces: a microVM with a writable disk whose `/workspace`
//! outlives the process that created it.
//!
//! Each workspace is a directory `$PYRO_HOME/workspaces/<id>/` holding its
//! metadata, its writable disk, the baseline archive diff and reset use,
//! command history and review events. The VMM runs detached; any later
//! `pyro` process (CLI or MCP server) finds it through that directory (pid
//! plus sockets) and serializes its operations with a lock file there.
//!
//! - `store`: metadata, locking, the directory layout
//! - `vmm`: a workspace's VMM process: launching, liveness, stopping
//! - `guest`: its guest agent: the socket, archive pushes, agent errors
//! - `create`, `update`, `reset`, `delete`: the operations on a whole workspace
//! - `view`: the workspace object, status and list
//! - `live`: a workspace opened for an operation, its VM booted again if it had stopped
//! - `reap`: the reaper, which applies expiry and retention
//! - `expiry`: the inactivity expiry and retention rule the reaper applies
//! - `seed`: turning a directory, an archive or a Git checkout into a tar
//! - `files`: file list/read/write, sync push, exec
//! - `patch`: unified diff parsing and applying
//! - `diff`: `/workspace` against the baseline
//! - `review`: command history, review events and the session summary
//! - `export`: copying workspace paths out to the host
//! - `results`: what the operations return (the tools' structured content)

pub mod create;
pub mod delete;
pub mod diff;
pub mod expiry;
pub mod export;
pub mod files;
pub mod guest;
#[cfg(test)]
mod hostile_agent_tests;
pub mod live;
pub mod patch;
pub mod reap;
pub mod reset;
pub mod results;

#[cfg(test)]
#[path = "../../../tests/support/raw_tar.rs"]
mod raw_tar;
pub mod review;
pub mod seed;
pub mod store;
pub mod update;
pub mod view;
pub mod vmm;

use super::{EngineError, Result};
use pyro_proto::path::RelPath;

/// Where the workspace lives inside the guest.
pub const GUEST_ROOT: &str = "/workspace";
/// Largest text a file write or a patched file may have, and the most a
/// read returns (the reference's limits).
pub const FILE_MAX_BYTES: u64 = 1024 * 1024;
pub const DEFAULT_READ_MAX_BYTES: u64 = 65536;
pub const PATCH_MAX_BYTES: usize = 1024 * 1024;

/// Normalizes a user-given workspace path (`/workspace/a/b`, `a/b`,
/// `./a/b`) to the agent's relative form (`a/b`; `""` for the root), by
/// the protocol's rule ([`RelPath`]) once a `/workspace` prefix is taken
/// off. Refuses `..` and absolute paths outside `/workspace` with a
/// message that says why.
pub fn normalize_path(path: &str) -> Result<String> {
    let p = path.trim();
    if p.is_empty() {
        return Err(EngineError::Invalid(
            "workspace path must not be empty".into(),
        ));
    }
    if p.contains('\0') {
        return Err(EngineError::Invalid(
            "workspace path must not contain NUL".into(),
        ));
    }
    let rel = if let Some(rest) = p.strip_prefix('/') {
        match rest.strip_prefix("workspace") {
            // `/workspace//a` is `a`, as `a//b` is `a/b`.
            Some(r) if r.is_empty() || r.starts_with('/') => r.trim_start_matches('/'),
            _ => {
                return Err(EngineError::Invalid(format!(
                    "path {path:?} is outside {GUEST_ROOT}; use a path inside it (absolute under {GUEST_ROOT}/ or relative to it)"
                )))
            }
        }
    } else {
        p
    };
    match RelPath::parse(rel) {
        Ok(rel) => Ok(rel.into_string()),
        // What is left is relative and has no NUL: only a `..` is refused.
        Err(_) => Err(EngineError::Invalid(format!(
            "path {path:?} contains '..'; workspace paths must stay inside {GUEST_ROOT}"
        ))),
    }
}

/// `/workspace/rel`.
pub fn guest_path(rel: &str) -> String {
    if rel.is_empty() {
        GUEST_ROOT.to_string()
    } else {
        format!("{GUEST_ROOT}/{rel}")
    }
}

pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalize_inside_the_workspace() {
        assert_eq!(normalize_path("/workspace").unwrap(), "");
        assert_eq!(normalize_path("/workspace/").unwrap(), "");
        assert_eq!(normalize_path("/workspace/a//b/./c").unwrap(), "a/b/c");
        assert_eq!(normalize_path("src/app.py").unwrap(), "src/app.py");
        assert_eq!(normalize_path(".").unwrap(), "");
        assert_eq!(normalize_path("/workspace//a/").unwrap(), "a");
        assert_eq!(normalize_path(" ./a ").unwrap(), "a");
        for bad in ["../x", "a/../../b", "/etc/passwd", "/workspaces/x", "/", ""] {
            assert!(normalize_path(bad).is_err(), "{bad}");
        }
        let e = normalize_path("/etc/passwd").unwrap_err().to_string();
        assert!(e.contains("outside /workspace"), "{e}");
        let e = normalize_path("a/../b").unwrap_err().to_string();
        assert!(e.contains("'..'"), "{e}");
        assert_eq!(guest_path("a"), "/workspace/a");
    }
}
