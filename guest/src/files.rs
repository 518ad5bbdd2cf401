//! File operations on the workspace: list, read, all-or-nothing writes and
//! deletes, and content manifests for diffs. Every path goes through
//! [`Root`], so none can reach outside the workspace.

use crate::beneath::{self, check_rel, Root};
use pyro_proto::path::{join, split_parent};
use pyro_proto::{
    base64_decode, AgentError, ApplyRequest, ArtifactType, ErrorKind, FileEntry, Sha256Digest,
};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Mutex;

/// Entries a recursive listing or manifest returns at most: the host
/// refuses a listing with more.
pub const MAX_ENTRIES: usize = pyro_proto::MAX_LISTING_ENTRIES;

fn entry_for(dirfd: i32, name: &str, rel: &str) -> io::Result<FileEntry> {
    let st = beneath::lstat_at(dirfd, name)?;
    let kind = beneath::kind_of(&st);
    Ok(FileEntry {
        path: rel.to_string(),
        artifact_type: kind,
        size_bytes: if kind == ArtifactType::Directory {
            0
        } else {
            st.st_size as u64
        },
        link_target: if kind == ArtifactType::Symlink {
            beneath::readlink_at(dirfd, name).ok()
        } else {
            None
        },
        mode: st.st_mode & 0o7777,
        sha256: None,
    })
}

/// Opens the parent of `rel` and returns it with the final name.
fn parent_of<'a>(root: &Root, rel: &'a str) -> io::Result<(OwnedFd, &'a str)> {
    let (parent, name) = split_parent(rel);
    let fd = root.open_beneath(parent, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    Ok((fd, name))
}

/// Metadata of `path` and, for a directory, of its children (descendants
/// when `recursive`), sorted by path.
pub fn list(root: &Root, path: &str, recursive: bool) -> io::Result<(FileEntry, Vec<FileEntry>)> {
    let rel = check_rel(path)?;
    let top = if rel.is_empty() {
        entry_for(root.fd(), ".", "")?
    } else {
        let (pfd, name) = parent_of(root, &rel)?;
        entry_for(pfd.as_raw_fd(), name, &rel).map_err(|e| root.explain(&rel, e))?
    };
    let mut entries = Vec::new();
    if top.artifact_type == ArtifactType::Directory {
        let dfd = root.open_beneath(
            &rel,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        )?;
        walk(root, dfd, &rel, recursive, &mut |_, _, e| {
            entries.push(e);
            Ok(())
        })?;
        entries.sort_by(|a, b| a.path.cmp(&b.path));
    }
    Ok((top, entries))
}

/// Calls `visit(dirfd, name, entry)` for each entry below `dfd`, depth
/// first; never follows symlinks.
fn walk(
    root: &Root,
    dfd: OwnedFd,
    rel: &str,
    recursive: bool,
    visit: &mut dyn FnMut(i32, &str, FileEntry) -> io::Result<()>,
) -> io::Result<()> {
    let mut count = 0usize;
    walk_inner(root, dfd, rel, recursive, visit, &mut count)
}

fn walk_inner(
    root: &Root,
    dfd: OwnedFd,
    rel: &str,
    recursive: bool,
    visit: &mut dyn FnMut(i32, &str, FileEntry) -> io::Result<()>,
    count: &mut usize,
) -> io::Result<()> {
    for name in beneath::read_dir_names(dfd.as_raw_fd())? {
        *count += 1;
        if *count > MAX_ENTRIES {
            return Err(AgentError::io(
                io::ErrorKind::Other,
                ErrorKind::TooLarge,
                format!(
                    "more than {MAX_ENTRIES} entries under {}; list a narrower path",
                    root.show(rel)
                ),
            ));
        }
        let child = join(rel, &name);
        let e = match entry_for(dfd.as_raw_fd(), &name, &child) {
            Ok(e) => e,
            // Removed while we looked: not an error for a listing.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(root.explain(&child, e)),
        };
        let is_dir = e.artifact_type == ArtifactType::Directory;
        visit(dfd.as_raw_fd(), &name, e)?;
        if recursive && is_dir {
            let sub = beneath::open_dir_at(dfd.as_raw_fd(), &name)
                .map_err(|e| root.explain(&child, e))?;
            walk_inner(root, sub, &child, recursive, visit, count)?;
        }
    }
    Ok(())
}

/// Up to `max_bytes` of a regular file: (size, bytes, truncated).
pub fn read(root: &Root, path: &str, max_bytes: u64) -> io::Result<(u64, Vec<u8>, bool)> {
    let rel = check_rel(path)?;
    if rel.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is a directory, not a file", root.show("")),
        ));
    }
    let fd = root
        .open_beneath_raw(
            &rel,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
            0,
        )
        .map_err(|e| not_regular(root, &rel, e))?;
    let st = beneath::fstat(fd.as_raw_fd())?;
    if beneath::kind_of(&st) != ArtifactType::File {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is {}, not a regular file",
                root.show(&rel),
                beneath::describe_kind(&st)
            ),
        ));
    }
    let size = st.st_size as u64;
    let mut file = std::fs::File::from(fd);
    let mut data = Vec::with_capacity(size.min(max_bytes) as usize);
    (&mut file).take(max_bytes).read_to_end(&mut data)?;
    // The file may have grown since fstat: one more byte tells.
    let mut probe = [0u8; 1];
    let more = data.len() as u64 == max_bytes && file.read(&mut probe)? > 0;
    Ok((size.max(data.len() as u64), data, more))
}

/// A final-symlink refusal worded for reads and writes, with its target.
fn not_regular(root: &Root, rel: &str, e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        if let Ok((pfd, name)) = parent_of(root, rel) {
            if let Ok(t) = beneath::readlink_at(pfd.as_raw_fd(), name) {
                return io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is a symlink to {t:?}, not a regular file (symlinks are not followed)",
                        root.show(rel)
                    ),
                );
            }
        }
    }
    root.explain(rel, e)
}

/// Applies writes and deletes all-or-nothing: everything is checked and
/// every new content is written to a temporary file first; only then are
/// the files renamed into place and the deletes done. A failure before
/// that point (a bad path, a full disk) leaves the workspace unchanged.
/// Returns (files written, files deleted, bytes written).
pub fn apply(root: &Root, req: &ApplyRequest) -> io::Result<(u64, u64, u64)> {
    let mut seen = std::collections::HashSet::new();
    let mut writes = Vec::new();
    for w in &req.writes {
        let rel = check_rel(&w.path)?;
        if rel.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot write the workspace root itself",
            ));
        }
        if !seen.insert(rel.clone()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} appears twice in one request", root.show(&rel)),
            ));
        }
        let data = base64_decode(&w.data_b64).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("content for {} is not valid base64", root.show(&rel)),
            )
        })?;
        writes.push((rel, data));
    }
    let mut deletes = Vec::new();
    for d in &req.deletes {
        let rel = check_rel(d)?;
        if rel.is_empty() || !seen.insert(rel.clone()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot delete {} in this request", root.show(&rel)),
            ));
        }
        let (pfd, name) = parent_of(root, &rel)?;
        let st = beneath::lstat_at(pfd.as_raw_fd(), name).map_err(|e| root.explain(&rel, e))?;
        if beneath::kind_of(&st) == ArtifactType::Directory {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is a directory; only files and symlinks are deleted",
                    root.show(&rel)
                ),
            ));
        }
        deletes.push(rel);
    }
    // Stage every write.
    let mut created_dirs = Vec::new();
    let mut staged: Vec<Staged> = Vec::new();
    let staging = (|| -> io::Result<()> {
        for (rel, data) in &writes {
            staged.push(stage(root, rel, data, &mut created_dirs)?);
        }
        Ok(())
    })();
    if let Err(e) = staging {
        for s in &staged {
            s.discard();
        }
        root.remove_created(&created_dirs);
        return Err(e);
    }
    // Commit: renames within one filesystem need no new space.
    let mut bytes = 0u64;
    for s in &staged {
        s.commit(root)?;
        bytes += s.len;
    }
    for rel in &deletes {
        let (pfd, name) = parent_of(root, rel)?;
        let c = beneath::cname(name)?;
        // SAFETY: valid descriptor and C string.
        if unsafe { libc::unlinkat(pfd.as_raw_fd(), c.as_ptr(), 0) } < 0 {
            return Err(root.explain(rel, io::Error::last_os_error()));
        }
    }
    sync_root(root);
    Ok((staged.len() as u64, deletes.len() as u64, bytes))
}

/// A new content waiting in a temporary file beside its target.
struct Staged {
    dir: OwnedFd,
    tmp: std::ffi::CString,
    name: std::ffi::CString,
    rel: String,
    len: u64,
}

impl Staged {
    fn discard(&self) {
        // SAFETY: valid descriptor and C string.
        unsafe { libc::unlinkat(self.dir.as_raw_fd(), self.tmp.as_ptr(), 0) };
    }

    fn commit(&self, root: &Root) -> io::Result<()> {
        // SAFETY: valid descriptors and C strings.
        let r = unsafe {
            libc::renameat(
                self.dir.as_raw_fd(),
                self.tmp.as_ptr(),
                self.dir.as_raw_fd(),
                self.name.as_ptr(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            self.discard();
            return Err(root.explain(&self.rel, e));
        }
        Ok(())
    }
}

static TMP_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn stage(root: &Root, rel: &str, data: &[u8], created: &mut Vec<String>) -> io::Result<Staged> {
    let (parent, name) = split_parent(rel);
    let dir = root.ensure_dir(parent, created)?;
    // Keep an existing file's permissions (an executable script stays one).
    let mut mode = 0o644;
    match beneath::lstat_at(dir.as_raw_fd(), name) {
        Ok(st) => match beneath::kind_of(&st) {
            ArtifactType::File => mode = st.st_mode & 0o7777,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is {}; only regular files are written",
                        root.show(rel),
                        beneath::describe_kind(&st)
                    ),
                ))
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(root.explain(rel, e)),
    }
    let tmp_name = format!(
        ".pyro-tmp-{}-{}",
        std::process::id(),
        TMP_SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    let tmp = beneath::cname(&tmp_name)?;
    let fd = beneath::open_at(
        dir.as_raw_fd(),
        &tmp_name,
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
        mode,
    )
    .map_err(|e| root.explain(rel, e))?;
    let mut f = std::fs::File::from(fd);
    let staged = Staged {
        dir,
        tmp,
        name: beneath::cname(name)?,
        rel: rel.to_string(),
        len: data.len() as u64,
    };
    let wrote = f
        .write_all(data)
        .and_then(|_| {
            // SAFETY: fchmod on our descriptor (umask may have cut the mode).
            if unsafe { libc::fchmod(f.as_raw_fd(), mode) } < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
        // Allocation errors surface at fsync on some filesystems.
        .and_then(|_| f.sync_data());
    if let Err(e) = wrote {
        staged.discard();
        return Err(root.explain(rel, e));
    }
    Ok(staged)
}

/// Flushes the filesystem holding the root (best effort).
pub fn sync_root(root: &Root) {
    // SAFETY: syncfs on a valid descriptor.
    unsafe { libc::syncfs(root.fd()) };
}

/// Content hashes keyed by what changes when a file does, so repeated
/// manifests only hash what changed since the last one.
type HashKey = (u64, u64, i64, i64, i64, i64, i64);
static HASH_CACHE: Mutex<Option<HashMap<HashKey, Sha256Digest>>> = Mutex::new(None);

fn hash_key(st: &libc::stat) -> HashKey {
    (
        st.st_dev,
        st.st_ino,
        st.st_size,
        st.st_mtime,
        st.st_mtime_nsec,
        st.st_ctime,
        st.st_ctime_nsec,
    )
}

fn file_sha256(dirfd: i32, name: &str) -> io::Result<Sha256Digest> {
    use sha2::Digest;
    let fd = beneath::open_at(
        dirfd,
        name,
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
        0,
    )?;
    let mut f = std::fs::File::from(fd);
    let st = beneath::fstat(f.as_raw_fd())?;
    let key = hash_key(&st);
    if let Some(h) = HASH_CACHE
        .lock()
        .unwrap()
        .as_ref()
        .and_then(|m| m.get(&key))
    {
        return Ok(*h);
    }
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let mut digest = Sha256Digest([0; 32]);
    digest.0.copy_from_slice(&hasher.finalize());
    let mut cache = HASH_CACHE.lock().unwrap();
    let map = cache.get_or_insert_with(HashMap::new);
    if map.len() > 500_000 {
        map.clear();
    }
    map.insert(key, digest);
    Ok(digest)
}

/// Every entry below `path` (relative to it), files with their SHA-256.
pub fn manifest(root: &Root, path: &str) -> io::Result<Vec<FileEntry>> {
    let rel = check_rel(path)?;
    let dfd = root.open_beneath(
        &rel,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    )?;
    let mut out = Vec::new();
    let prefix_len = if rel.is_empty() { 0 } else { rel.len() + 1 };
    walk(root, dfd, &rel, true, &mut |dirfd, name, mut e| {
        if e.artifact_type == ArtifactType::File {
            e.sha256 = Some(match file_sha256(dirfd, name) {
                Ok(h) => h,
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(err) => return Err(root.explain(&e.path, err)),
            });
        }
        e.path = e.path[prefix_len..].to_string();
        out.push(e);
        Ok(())
    })?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use pyro_proto::{base64_encode, FileWrite};
    use std::path::{Path, PathBuf};

    /// A temporary directory holding `ws`, the workspace root under test
    /// (what is beside it stands for the rest of the guest's file system).
    pub struct TempRoot(pub crate::temp_dir::TempDir);

    impl TempRoot {
        pub fn new(tag: &str) -> TempRoot {
            let p = crate::temp_dir::TempDir::new(&format!("guest-{tag}"));
            std::fs::create_dir_all(p.join("ws")).unwrap();
            TempRoot(p)
        }
        pub fn ws(&self) -> PathBuf {
            self.0.join("ws")
        }
        pub fn root(&self) -> Root {
            Root::open(&self.ws()).unwrap()
        }
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn w(path: &str, data: &[u8]) -> FileWrite {
        FileWrite {
            path: path.into(),
            data_b64: base64_encode(data),
        }
    }

    #[test]
    fn lists_flat_and_recursive() {
        let t = TempRoot::new("list");
        write(&t.ws().join("a/b/c.txt"), "hello");
        write(&t.ws().join("top.txt"), "x");
        std::os::unix::fs::symlink("a/b/c.txt", t.ws().join("link")).unwrap();
        let r = t.root();
        let (top, flat) = list(&r, "", false).unwrap();
        assert_eq!(top.artifact_type, ArtifactType::Directory);
        let names: Vec<&str> = flat.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(names, ["a", "link", "top.txt"]);
        let link = &flat[1];
        assert_eq!(link.artifact_type, ArtifactType::Symlink);
        assert_eq!(link.link_target.as_deref(), Some("a/b/c.txt"));
        let (_, deep) = list(&r, "", true).unwrap();
        let names: Vec<&str> = deep.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(names, ["a", "a/b", "a/b/c.txt", "link", "top.txt"]);
        assert_eq!(deep[2].size_bytes, 5);
        let (one, none) = list(&r, "a/b/c.txt", true).unwrap();
        assert_eq!(one.path, "a/b/c.txt");
        assert!(none.is_empty());
        let e = list(&r, "missing", false).unwrap_err().to_string();
        assert!(e.contains("/workspace/missing does not exist"), "{e}");
    }

    #[test]
    fn reads_are_bounded_and_binary_safe() {
        let t = TempRoot::new("read");
        let bin: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        std::fs::write(t.ws().join("bin"), &bin).unwrap();
        let r = t.root();
        let (size, data, trunc) = read(&r, "bin", 4096).unwrap();
        assert_eq!((size, trunc), (1000, false));
        assert_eq!(data, bin);
        let (size, data, trunc) = read(&r, "bin", 10).unwrap();
        assert_eq!((size, data.len(), trunc), (1000, 10, true));
        let (_, _, trunc) = read(&r, "bin", 1000).unwrap();
        assert!(!trunc, "exactly max_bytes long is not truncated");
        std::fs::create_dir(t.ws().join("d")).unwrap();
        let e = read(&r, "d", 10).unwrap_err().to_string();
        assert!(e.contains("is a directory, not a regular file"), "{e}");
    }

    #[test]
    fn symlinks_out_of_the_root_are_refused() {
        let t = TempRoot::new("escape");
        write(&t.0.join("secret"), "host secret");
        std::os::unix::fs::symlink("/etc", t.ws().join("etc")).unwrap();
        std::os::unix::fs::symlink("../secret", t.ws().join("up")).unwrap();
        std::os::unix::fs::symlink("..", t.ws().join("parent")).unwrap();
        let r = t.root();
        for p in ["etc/passwd", "parent/secret"] {
            let e = read(&r, p, 100).unwrap_err().to_string();
            assert!(e.contains("resolves outside /workspace"), "{p}: {e}");
        }
        let e = read(&r, "up", 100).unwrap_err().to_string();
        assert!(e.contains("is a symlink to \"../secret\""), "{e}");
        let e = list(&r, "parent/secret", false).unwrap_err().to_string();
        assert!(e.contains("resolves outside"), "{e}");
        let req = ApplyRequest {
            writes: vec![w("parent/secret", b"pwned")],
            deletes: vec![],
        };
        let e = apply(&r, &req).unwrap_err().to_string();
        assert!(e.contains("resolves outside"), "{e}");
        let req = ApplyRequest {
            writes: vec![w("etc/x/y", b"pwned")],
            deletes: vec![],
        };
        assert!(apply(&r, &req).is_err());
        assert_eq!(
            std::fs::read_to_string(t.0.join("secret")).unwrap(),
            "host secret"
        );
        assert!(read(&r, "../secret", 10)
            .unwrap_err()
            .to_string()
            .contains("'..'"));
        assert!(read(&r, "/etc/passwd", 10).is_err());
    }

    #[test]
    fn apply_writes_creates_parents_and_keeps_modes() {
        let t = TempRoot::new("apply");
        write(&t.ws().join("run.sh"), "old");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            t.ws().join("run.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        write(&t.ws().join("gone.txt"), "bye");
        let r = t.root();
        let req = ApplyRequest {
            writes: vec![w("run.sh", b"new"), w("deep/er/new.txt", b"n")],
            deletes: vec!["gone.txt".into()],
        };
        assert_eq!(apply(&r, &req).unwrap(), (2, 1, 4));
        assert_eq!(
            std::fs::read_to_string(t.ws().join("run.sh")).unwrap(),
            "new"
        );
        let mode = std::fs::metadata(t.ws().join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            std::fs::read_to_string(t.ws().join("deep/er/new.txt")).unwrap(),
            "n"
        );
        assert!(!t.ws().join("gone.txt").exists());
        let leftovers: Vec<_> = std::fs::read_dir(t.ws())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".pyro-tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn failed_apply_changes_nothing() {
        let t = TempRoot::new("atomic");
        write(&t.ws().join("keep.txt"), "original");
        std::fs::create_dir(t.ws().join("dir")).unwrap();
        let r = t.root();
        // The second write targets a directory: nothing may change.
        let req = ApplyRequest {
            writes: vec![
                w("keep.txt", b"changed"),
                w("new/sub/f", b"x"),
                w("dir", b"x"),
            ],
            deletes: vec![],
        };
        let e = apply(&r, &req).unwrap_err().to_string();
        assert!(e.contains("/workspace/dir is a directory"), "{e}");
        assert_eq!(
            std::fs::read_to_string(t.ws().join("keep.txt")).unwrap(),
            "original"
        );
        assert!(
            !t.ws().join("new").exists(),
            "created parents are removed again"
        );
        // A delete of something missing fails before any write.
        let req = ApplyRequest {
            writes: vec![w("keep.txt", b"changed")],
            deletes: vec!["nope".into()],
        };
        assert!(apply(&r, &req)
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
        assert_eq!(
            std::fs::read_to_string(t.ws().join("keep.txt")).unwrap(),
            "original"
        );
        let names: Vec<_> = std::fs::read_dir(t.ws())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn manifest_hashes_files_relative_to_the_path() {
        let t = TempRoot::new("manifest");
        write(&t.ws().join("src/a.txt"), "abc");
        std::fs::create_dir_all(t.ws().join("src/empty")).unwrap();
        let r = t.root();
        let m = manifest(&r, "src").unwrap();
        let names: Vec<&str> = m.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(names, ["a.txt", "empty"]);
        assert_eq!(
            m[0].sha256.map(|h| h.to_string()).as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        // Cached hashes follow content changes.
        std::fs::write(t.ws().join("src/a.txt"), "abd").unwrap();
        let m2 = manifest(&r, "src").unwrap();
        assert_ne!(m2[0].sha256, m[0].sha256);
    }
}
