//! The one test harness: what every integration test, the use-case
//! smokes and the benchmarks share, so that each helper exists once and
//! cannot drift between files.
//!
//! A test file takes it with `mod support;` (`#[path = "../support/mod.rs"]`
//! from tests/smoke, `#[path = "../tests/support/mod.rs"]` from benches).
//!
//! - here: the binary under test ([`pyro`]), the state directory it uses
//!   ([`pyro_home`]), a temporary directory that cleans up after itself
//!   ([`TempDir`]), and the small helpers around `pyro ... --json` calls;
//! - [`vm`]: the VM-test guard (always tears down, dumps the VMM's logs on
//!   failure) and the leak check (no `pyro vmm` process, run directory or
//!   socket left behind);
//! - [`mcp`]: one MCP client over a `pyro mcp serve` child;
//! - [`golden`]: golden files (compare, or re-bless with `PYRO_BLESS=1`)
//!   and the helpers that make output comparable (transcripts, JSON
//!   shapes, run-to-run values normalized);
//! - [`raw_tar`]: tar archives with hostile members (also included by the
//!   engine's and the agent's unit tests, so it depends on nothing here);
//! - [`sparse`]: a sparse file copy (the test host's busybox has none);
//! - `temp_dir`: [`TempDir`] (also included by the crate's unit tests,
//!   so it depends on nothing here).
//!
//! Each test binary uses part of this, so unused items are expected.
#![allow(dead_code)]

pub mod golden;
pub mod mcp;
pub mod raw_tar;
pub mod sparse;
mod temp_dir;
pub mod vm;

// Unused in the benchmarks, like much here (see dead_code above).
#[allow(unused_imports)]
pub use temp_dir::TempDir;

use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `pyro` binary cargo built for these tests.
pub fn pyro() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_pyro"))
}

/// A command running [`pyro`].
pub fn pyro_cmd() -> Command {
    Command::new(pyro())
}

/// The state directory pyro uses, resolved as pyro resolves it
/// (src/engine/paths.rs `home`): `$PYRO_HOME`, else
/// `$XDG_DATA_HOME/pyro`, else `~/.local/share/pyro` (empty variables
/// count as unset).
pub fn pyro_home() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(h) = var("PYRO_HOME") {
        return h.into();
    }
    if let Some(x) = var("XDG_DATA_HOME") {
        return PathBuf::from(x).join("pyro");
    }
    PathBuf::from(var("HOME").unwrap_or_else(|| "/root".into())).join(".local/share/pyro")
}

/// Writes `data` to `p`, making its parent directories first.
pub fn write_file(p: &Path, data: impl AsRef<[u8]>) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
}

/// The permission bits of `p` (the file itself, links followed).
pub fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// The wall clock, in seconds since the epoch (as pyro's records keep it).
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// `workspace ARGS --json`: `--json` goes before a `--`, after which it
/// would be part of the command.
pub fn workspace_args<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let cut = args.iter().position(|a| *a == "--").unwrap_or(args.len());
    let mut a = vec!["workspace"];
    a.extend(&args[..cut]);
    a.push("--json");
    a.extend(&args[cut..]);
    a
}

/// The stdout of a `--json` call, which must be JSON; `what` names the
/// call in the failure, which shows both streams.
pub fn json_stdout(out: &Output, what: &dyn std::fmt::Debug) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what:?}: stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The `workspace_id` of a result that must carry one.
pub fn workspace_id(r: &Value) -> String {
    r["workspace_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no workspace_id in {r}"))
        .to_string()
}
