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
//! - [`sparse`]: a sparse file copy (the test host's busybox has none).
//!
//! Each test binary uses part of this, so unused items are expected.
#![allow(dead_code)]

pub mod golden;
pub mod mcp;
pub mod raw_tar;
pub mod sparse;
pub mod vm;

use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

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

/// A fresh directory under the system's temporary directory, removed with
/// everything in it when dropped, passed or failed. Its path is canonical
/// and unique to this process and call (`pyro-test-TAG-PID-N`).
///
/// It derefs to its path, so `d.join("x")` and `&d` work where a `Path`
/// is wanted.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("pyro-test-{tag}-{}-{n}", std::process::id()));
        // A leftover of an earlier run whose pid this run reuses.
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        TempDir(std::fs::canonicalize(&p).unwrap())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // A test may bind-mount something inside (tests/workspace.rs mounts
        // PYRO_HOME there) and fail before unmounting it: removing the tree
        // would then delete what the mount shows. Keep it instead.
        if let Some(m) = mount_inside(&self.0) {
            eprintln!(
                "note: {} is left in place: {m} is mounted inside it",
                self.0.display()
            );
            return;
        }
        // A test may have taken permissions away (tests/state.rs does, on
        // the directory itself) to check how pyro reacts.
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o700));
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("note: cannot remove {}: {e}", self.0.display());
            }
        }
    }
}

/// The first mount point at or below `dir`, from /proc/self/mountinfo.
fn mount_inside(dir: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        // Spaces and the like are octal-escaped (`\040`); a temporary
        // directory's name has none, so a plain prefix test is exact.
        .find(|m| Path::new(m).starts_with(dir))
        .map(str::to_string)
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
