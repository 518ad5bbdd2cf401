//! A temporary directory that cleans up after itself: the one every test
//! uses, integration tests (through tests/support/mod.rs) and unit tests
//! alike (src/main.rs and guest/src/lib.rs include this file, as does
//! guest/tests/agent.rs), so it depends on nothing but std.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

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
