//! Path confinement for file operations: every path a request names is
//! resolved beneath the workspace root with `openat2(RESOLVE_BENEATH)`, so
//! neither `..` nor a symlink (absolute or relative) can lead an operation
//! outside it. Paths are checked lexically first for a clear message; the
//! kernel's check is what actually holds.
//!
//! The lexical rules (what a workspace path is, which symlink targets an
//! archive may carry and why that holds for chains of links) are the
//! protocol's, shared with the host: `pyro_proto::path`.

use pyro_proto::path::{split_parent, RelPath};
use pyro_proto::{AgentError, ErrorKind};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_NO_SYMLINKS: u64 = 0x04;
const RESOLVE_BENEATH: u64 = 0x08;

/// `struct open_how` of openat2(2).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// The directory every path is confined to, held open.
pub struct Root {
    fd: OwnedFd,
    /// How paths are shown in messages (`/workspace`).
    display: String,
}

/// Shown in messages whatever the real root directory is (tests use a
/// temporary one).
pub const DISPLAY_ROOT: &str = "/workspace";

impl Root {
    pub fn open(path: &std::path::Path) -> io::Result<Root> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in root path"))?;
        // SAFETY: valid C string; the result is checked.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("cannot open the workspace root {}: {e}", path.display()),
            ));
        }
        Ok(Root {
            // SAFETY: fresh descriptor we own.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            display: DISPLAY_ROOT.to_string(),
        })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// `rel` as the user sees it: `/workspace/rel`.
    pub fn show(&self, rel: &str) -> String {
        if rel.is_empty() {
            self.display.clone()
        } else {
            format!("{}/{rel}", self.display)
        }
    }

    /// Opens `rel` (already checked by [`check_rel`]) beneath the root.
    /// With `O_NOFOLLOW` in `flags`, a final symlink is not followed.
    pub fn open_beneath(&self, rel: &str, flags: i32, mode: u32) -> io::Result<OwnedFd> {
        self.open_beneath_raw(rel, flags, mode)
            .map_err(|e| self.explain(rel, e))
    }

    /// [`Root::open_beneath`] with the bare OS error.
    pub fn open_beneath_raw(&self, rel: &str, flags: i32, mode: u32) -> io::Result<OwnedFd> {
        self.openat2(rel, flags, mode, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)
    }

    /// Directory `rel` beneath the root, reached without following any
    /// symlink on the way (`ELOOP` if one is met): where a symlink may be
    /// created, see `pyro_proto::path::check_symlink`.
    pub fn open_real_dir(&self, rel: &str) -> io::Result<OwnedFd> {
        self.openat2(
            rel,
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
            RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
        )
    }

    fn openat2(&self, rel: &str, flags: i32, mode: u32, resolve: u64) -> io::Result<OwnedFd> {
        let path = if rel.is_empty() { "." } else { rel };
        let c = CString::new(path)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
        let how = OpenHow {
            flags: (flags | libc::O_CLOEXEC) as u64,
            mode: if flags & libc::O_CREAT != 0 {
                mode as u64
            } else {
                0
            },
            resolve,
        };
        // SAFETY: valid pointers for the call; the result is checked.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                self.fd(),
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        } as i32;
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh descriptor we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Turns an errno from resolving or writing `rel` into a message
    /// naming the path, with the protocol's kind of the failure.
    pub fn explain(&self, rel: &str, e: io::Error) -> io::Error {
        let shown = self.show(rel);
        let (kind, msg) = match e.raw_os_error() {
            Some(libc::EXDEV) => (
                ErrorKind::Invalid,
                format!(
                    "{shown} resolves outside {} (through a symlink); paths must stay inside {}",
                    self.display, self.display
                ),
            ),
            Some(libc::ENOENT) => (ErrorKind::NotFound, format!("{shown} does not exist")),
            Some(libc::ENOTDIR) => (
                ErrorKind::Invalid,
                format!("{shown}: a parent component is not a directory"),
            ),
            Some(libc::ELOOP) => (
                ErrorKind::Invalid,
                format!("{shown} is a symlink (symlinks are not followed here)"),
            ),
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => (
                ErrorKind::NoSpace,
                format!("no space left on the workspace disk while writing {shown}"),
            ),
            Some(libc::ENOSYS) => (
                ErrorKind::Io,
                "this kernel lacks openat2(2), which path confinement needs".into(),
            ),
            _ => (ErrorKind::of(&e), format!("{shown}: {e}")),
        };
        AgentError::io(e.kind(), kind, msg)
    }

    /// Directory `rel`, created with its missing parents (mode 0755).
    /// Returns the directories this call created, outermost first, so a
    /// failed operation can remove them again.
    pub fn ensure_dir(&self, rel: &str, created: &mut Vec<String>) -> io::Result<OwnedFd> {
        // A final symlink is followed, but only while it stays beneath.
        let flags = libc::O_RDONLY | libc::O_DIRECTORY;
        match self.open_beneath(rel, flags, 0) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !rel.is_empty() => {}
            Err(e) => {
                if e.raw_os_error() == Some(libc::ELOOP) || is_notdir(&e) {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("{} exists and is not a directory", self.show(rel)),
                    ));
                }
                return Err(e);
            }
        }
        let (parent, name) = split_parent(rel);
        let pfd = self.ensure_dir(parent, created)?;
        let c = cname(name)?;
        // SAFETY: valid descriptor and C string.
        let r = unsafe { libc::mkdirat(pfd.as_raw_fd(), c.as_ptr(), 0o755) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(self.explain(rel, e));
            }
        } else {
            created.push(rel.to_string());
        }
        self.open_beneath(rel, flags, 0).map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(
                    e.kind(),
                    format!("{} exists and is not a directory", self.show(rel)),
                )
            } else {
                e
            }
        })
    }

    /// Removes directories [`Root::ensure_dir`] created, innermost first
    /// (only while they are empty).
    pub fn remove_created(&self, created: &[String]) {
        for rel in created.iter().rev() {
            let (parent, name) = split_parent(rel);
            let Ok(pfd) = self.open_beneath(parent, libc::O_RDONLY | libc::O_DIRECTORY, 0) else {
                continue;
            };
            if let Ok(c) = cname(name) {
                // SAFETY: valid descriptor and C string.
                unsafe { libc::unlinkat(pfd.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) };
            }
        }
    }
}

fn is_notdir(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOTDIR) || e.to_string().contains("not a directory")
}

/// Checks a request path ([`RelPath::parse`]): relative, no `..`; `.`
/// and empty components are dropped. The normal form ("" is the root).
pub fn check_rel(path: &str) -> io::Result<RelPath> {
    RelPath::parse(path).map_err(|why| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad workspace path {path:?}: {why}"),
        )
    })
}

pub fn cname(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))
}

/// `openat(dirfd, name, flags | O_CLOEXEC, mode)`: `name` in an open
/// directory, with the bare OS error (callers [`Root::explain`] it with
/// the path they know). `mode` counts only with `O_CREAT`.
pub fn open_at(dirfd: RawFd, name: &str, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let c = cname(name)?;
    // SAFETY: a valid C string; the result is checked before use.
    let fd = unsafe { libc::openat(dirfd, c.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat returned a fresh descriptor, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The directory `name` in `dirfd`, not followed if it is a symlink
/// (`ELOOP`, or `ENOTDIR` for anything else that is not a directory).
pub fn open_dir_at(dirfd: RawFd, name: &str) -> io::Result<OwnedFd> {
    open_at(
        dirfd,
        name,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    )
}

/// `fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW)`.
pub fn lstat_at(dirfd: RawFd, name: &str) -> io::Result<libc::stat> {
    let c = cname(if name.is_empty() { "." } else { name })?;
    // SAFETY: zeroed stat is a valid out-buffer; pointers are valid.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstatat(dirfd, c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(st)
    }
}

pub fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: as in lstat_at.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(st)
    }
}

pub fn readlink_at(dirfd: RawFd, name: &str) -> io::Result<String> {
    let c = cname(name)?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: buf is valid for its length.
    let n = unsafe {
        libc::readlinkat(
            dirfd,
            c.as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Names in an open directory (without `.` and `..`), sorted.
pub fn read_dir_names(dirfd: RawFd) -> io::Result<Vec<String>> {
    // SAFETY: dup gives fdopendir its own descriptor, which closedir frees.
    unsafe {
        let fd = libc::fcntl(dirfd, libc::F_DUPFD_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let dir = libc::fdopendir(fd);
        if dir.is_null() {
            let e = io::Error::last_os_error();
            libc::close(fd);
            return Err(e);
        }
        libc::rewinddir(dir);
        let mut names = Vec::new();
        loop {
            let ent = libc::readdir(dir);
            if ent.is_null() {
                break;
            }
            let name = std::ffi::CStr::from_ptr((*ent).d_name.as_ptr());
            let bytes = name.to_bytes();
            if bytes == b"." || bytes == b".." {
                continue;
            }
            names.push(String::from_utf8_lossy(bytes).into_owned());
        }
        libc::closedir(dir);
        names.sort();
        Ok(names)
    }
}

pub fn kind_of(st: &libc::stat) -> pyro_proto::ArtifactType {
    use pyro_proto::ArtifactType;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => ArtifactType::File,
        libc::S_IFDIR => ArtifactType::Directory,
        libc::S_IFLNK => ArtifactType::Symlink,
        _ => ArtifactType::Other,
    }
}

pub fn describe_kind(st: &libc::stat) -> &'static str {
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => "a regular file",
        libc::S_IFDIR => "a directory",
        libc::S_IFLNK => "a symlink",
        libc::S_IFIFO => "a fifo",
        libc::S_IFSOCK => "a socket",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        _ => "a special file",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rel_paths_are_normalized_or_refused() {
        assert_eq!(check_rel("a/./b//c/").unwrap().as_str(), "a/b/c");
        assert!(check_rel("").unwrap().is_root());
        assert!(check_rel(".").unwrap().is_root());
        assert_eq!(
            check_rel("a/../b").unwrap_err().to_string(),
            r#"bad workspace path "a/../b": '..' is not allowed"#
        );
        let e = check_rel("/etc").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            e.to_string(),
            r#"bad workspace path "/etc": must be relative to the workspace root"#
        );
    }

    #[test]
    fn explained_errors_name_the_path_and_carry_their_kind() {
        let t = crate::files::tests::TempRoot::new("explain");
        let root = t.root();
        for (errno, kind, text) in [
            (libc::ENOENT, ErrorKind::NotFound, "/workspace/a/b does not exist"),
            (
                libc::ENOSPC,
                ErrorKind::NoSpace,
                "no space left on the workspace disk while writing /workspace/a/b",
            ),
            (
                libc::EDQUOT,
                ErrorKind::NoSpace,
                "no space left on the workspace disk while writing /workspace/a/b",
            ),
            (
                libc::EXDEV,
                ErrorKind::Invalid,
                "/workspace/a/b resolves outside /workspace (through a symlink); paths must stay inside /workspace",
            ),
            (
                libc::ELOOP,
                ErrorKind::Invalid,
                "/workspace/a/b is a symlink (symlinks are not followed here)",
            ),
            (
                libc::ENOTDIR,
                ErrorKind::Invalid,
                "/workspace/a/b: a parent component is not a directory",
            ),
            (
                libc::EACCES,
                ErrorKind::Permission,
                "/workspace/a/b: Permission denied (os error 13)",
            ),
            (
                libc::EIO,
                ErrorKind::Io,
                "/workspace/a/b: Input/output error (os error 5)",
            ),
        ] {
            let raw = io::Error::from_raw_os_error(errno);
            let io_kind = raw.kind();
            let e = root.explain("a/b", raw);
            assert_eq!(e.to_string(), text);
            assert_eq!(ErrorKind::of(&e), kind, "{text}");
            // Code on the way still sees the errno's kind.
            assert_eq!(e.kind(), io_kind, "{text}");
        }
        // A real missing path, through the real call.
        let e = root.open_beneath("missing", libc::O_RDONLY, 0).unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::NotFound);
    }
}
