//! Tar archives into and out of the workspace.
//!
//! Extraction refuses members that could land outside the destination:
//! absolute names, `..`, hard links, device nodes, and symlinks whose
//! target could leave the workspace (the rule is
//! `pyro_proto::path::check_symlink`'s, which holds for chains of links
//! too; a symlink is only created in a directory reached without
//! symlinks). A file that replaces another is written to
//! a temporary name and renamed into place, so a failure (a full disk)
//! never leaves a half written file where an intact one was.

use crate::beneath::{self, check_rel, Root};
use pyro_proto::archive::{link_target, member_path};
use pyro_proto::bounded_tar::{limit_error, BoundedTar, TarLimits};
use pyro_proto::path::{check_symlink, join, split_parent};
use pyro_proto::{AgentError, ArtifactType, ErrorKind};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

/// What extraction wrote: (entries, bytes of file content).
pub fn extract<R: Read>(root: &Root, dest: &str, input: R) -> io::Result<(u64, u64)> {
    let dest = check_rel(dest)?;
    let mut created = Vec::new();
    root.ensure_dir(&dest, &mut created)?;
    // The host is the sender here, but a long name or PAX member is read
    // whole by the tar crate: capped all the same.
    let bounded = BoundedTar::new(input, TarLimits::metadata_only());
    let mut archive = tar::Archive::new(bounded);
    let mut entries = 0u64;
    let mut bytes = 0u64;
    let mut dirs = DirCache::default();
    for entry in archive.entries()? {
        let mut entry = entry.map_err(|e| unreadable(&e))?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8(raw.clone()).map_err(|_| {
            bad_archive(format!(
                "member name {:?} is not UTF-8",
                String::from_utf8_lossy(&raw)
            ))
        })?;
        let member = member_path(&name)?;
        let kind = entry.header().entry_type();
        if member.is_empty() {
            // "./": the destination itself.
            if kind.is_dir() {
                continue;
            }
            return Err(bad_archive(format!("member {name:?} has an empty path")));
        }
        let rel = join(&dest, &member);
        entries += 1;
        let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
        if kind.is_dir() {
            let mut c = Vec::new();
            root.ensure_dir(&rel, &mut c)?;
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            bytes += write_file(root, &mut dirs, &rel, &mut entry, mode)?;
        } else if kind.is_symlink() {
            let target = link_target(&entry);
            // Judged from where it lands in the workspace, so a link into
            // `dest` may climb out of `dest` but never out of /workspace.
            if let Err(why) = check_symlink(&rel, &target) {
                return Err(bad_archive(format!(
                    "symlink {name:?} -> {target:?} would point outside /workspace: {why}"
                )));
            }
            make_symlink(root, &rel, &target)?;
        } else if kind.is_hard_link() {
            return Err(bad_archive(format!(
                "member {name:?} is a hard link; hard links are not allowed in workspace archives"
            )));
        } else if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            entries -= 1;
        } else {
            return Err(bad_archive(format!(
                "member {name:?} is a {}; only files, directories and symlinks are allowed",
                describe_type(kind)
            )));
        }
    }
    crate::files::sync_root(root);
    Ok((entries, bytes))
}

fn describe_type(t: tar::EntryType) -> &'static str {
    match t {
        tar::EntryType::Char => "character device",
        tar::EntryType::Block => "block device",
        tar::EntryType::Fifo => "fifo",
        _ => "special member",
    }
}

fn bad_archive(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// A stream the tar crate could not read: over a limit of the bounded
/// reader, or damaged.
fn unreadable(e: &io::Error) -> io::Error {
    let kind = match limit_error(e) {
        Some(_) => ErrorKind::TooLarge,
        None => ErrorKind::Invalid,
    };
    AgentError::io(
        io::ErrorKind::InvalidInput,
        kind,
        format!("unreadable archive: {e}"),
    )
}

/// The directory the previous member went into, kept open: archives list
/// a directory's files together, so most members need no path walk.
#[derive(Default)]
struct DirCache(Option<(String, OwnedFd)>);

impl DirCache {
    fn get(&mut self, root: &Root, rel: &str) -> io::Result<i32> {
        if !matches!(&self.0, Some((r, _)) if r == rel) {
            let mut created = Vec::new();
            self.0 = Some((rel.to_string(), root.ensure_dir(rel, &mut created)?));
        }
        Ok(self.0.as_ref().map(|(_, fd)| fd.as_raw_fd()).unwrap_or(-1))
    }
}

/// The agent's umask, read once: a file created with `mode` needs an
/// fchmod only when the umask cut bits from it.
fn umask() -> u32 {
    static UMASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Umask:"))
                    .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            })
            .unwrap_or(0o7777)
    })
}

fn write_file<R: Read>(
    root: &Root,
    dirs: &mut DirCache,
    rel: &str,
    data: &mut R,
    mode: u32,
) -> io::Result<u64> {
    let (parent, name) = split_parent(rel);
    let dir = dirs.get(root, parent)?;
    let c = beneath::cname(name)?;
    // A new name is written in place: nothing intact can be lost there,
    // and a failure removes the partial file.
    let created = beneath::open_at(
        dir,
        name,
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
        mode & 0o777,
    );
    match created {
        Ok(fd) => {
            let mut f = std::fs::File::from(fd);
            let result = fill(&mut f, data, mode);
            if result.is_err() {
                // SAFETY: valid descriptor and C string.
                unsafe { libc::unlinkat(dir, c.as_ptr(), 0) };
            }
            return result.map_err(|e| root.explain(rel, e));
        }
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => return Err(root.explain(rel, e)),
    }
    if let Ok(st) = beneath::lstat_at(dir, name) {
        if beneath::kind_of(&st) == ArtifactType::Directory {
            return Err(bad_archive(format!(
                "{} is a directory; the archive has a file there",
                root.show(rel)
            )));
        }
    }
    // Replacing: write a temporary name and rename it over the old one.
    let tmp_name = format!(".pyro-tmp-x-{}-{name}", std::process::id())
        .chars()
        .take(200)
        .collect::<String>();
    let tmp = beneath::cname(&tmp_name)?;
    let fd = beneath::open_at(
        dir,
        &tmp_name,
        libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW,
        0o600,
    )
    .map_err(|e| root.explain(rel, e))?;
    let mut f = std::fs::File::from(fd);
    let result = fill(&mut f, data, mode | FORCE_CHMOD).and_then(|n| {
        // SAFETY: valid descriptors and C strings.
        if unsafe { libc::renameat(dir, tmp.as_ptr(), dir, c.as_ptr()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n)
    });
    result.map_err(|e| {
        // SAFETY: valid descriptor and C string.
        unsafe { libc::unlinkat(dir, tmp.as_ptr(), 0) };
        root.explain(rel, e)
    })
}

/// Set in `fill`'s mode when the file was created 0600 (a temporary).
const FORCE_CHMOD: u32 = 0o10000;

/// Copies a member's content into `f` and gives it `mode`'s permission
/// bits, with an fchmod only where creation could not.
fn fill<R: Read>(f: &mut std::fs::File, data: &mut R, mode: u32) -> io::Result<u64> {
    let n = copy_large(data, f)?;
    let perms = mode & 0o7777;
    if mode & FORCE_CHMOD != 0 || perms & !0o777 != 0 || perms & umask() != 0 {
        // SAFETY: fchmod on our descriptor.
        if unsafe { libc::fchmod(f.as_raw_fd(), perms) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(n)
}

/// `io::copy` with 256 KiB steps instead of 8 KiB: a fraction of the
/// syscalls on the vsock stream and the file for big members.
fn copy_large<R: Read>(data: &mut R, f: &mut std::fs::File) -> io::Result<u64> {
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with(|b| {
        let mut buf = b.borrow_mut();
        buf.resize(pyro_proto::CHUNK_BYTES, 0);
        let mut total = 0u64;
        loop {
            let n = match data.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            f.write_all(&buf[..n])?;
            total += n as u64;
        }
    })
}

fn make_symlink(root: &Root, rel: &str, target: &str) -> io::Result<()> {
    let (parent, name) = split_parent(rel);
    let mut created = Vec::new();
    root.ensure_dir(parent, &mut created)?;
    // `check_symlink` counted the link's depth from its path: that is its
    // real depth only if no directory on the way is a symlink.
    let dir = root.open_real_dir(parent).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            bad_archive(format!(
                "symlink {} would be created under a symlinked directory; symlinks may only be made in real directories",
                root.show(rel)
            ))
        } else {
            root.explain(parent, e)
        }
    })?;
    let c = beneath::cname(name)?;
    if let Ok(st) = beneath::lstat_at(dir.as_raw_fd(), name) {
        match beneath::kind_of(&st) {
            ArtifactType::Directory => {
                return Err(bad_archive(format!(
                    "{} is a directory; the archive has a symlink there",
                    root.show(rel)
                )))
            }
            // SAFETY: valid descriptor and C string.
            _ => unsafe {
                libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0);
            },
        }
    }
    let t = beneath::cname(target)?;
    // SAFETY: valid descriptor and C strings.
    if unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), c.as_ptr()) } < 0 {
        return Err(root.explain(rel, io::Error::last_os_error()));
    }
    Ok(())
}

/// The type of `path` and a tar writer for it: a file or symlink becomes a
/// one-member archive named after it; a directory's members are its
/// contents, relative to it.
pub fn kind(root: &Root, path: &str) -> io::Result<ArtifactType> {
    let rel = check_rel(path)?;
    if rel.is_empty() {
        return Ok(ArtifactType::Directory);
    }
    let (parent, name) = split_parent(&rel);
    let pfd = root.open_beneath(parent, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let st = beneath::lstat_at(pfd.as_raw_fd(), name).map_err(|e| root.explain(&rel, e))?;
    match beneath::kind_of(&st) {
        ArtifactType::Other => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is {}; only files, directories and symlinks can be exported",
                root.show(&rel),
                beneath::describe_kind(&st)
            ),
        )),
        k => Ok(k),
    }
}

/// Writes a tar of `path` to `out`; returns (entries, file bytes).
pub fn create<W: Write>(root: &Root, path: &str, out: W) -> io::Result<(u64, u64)> {
    let rel = check_rel(path)?;
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let mut entries = 0u64;
    let mut bytes = 0u64;
    let (parent, name) = split_parent(&rel);
    let top = kind(root, &rel)?;
    if top == ArtifactType::Directory {
        let dfd = root.open_beneath(
            &rel,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        )?;
        add_dir_contents(root, &mut b, &dfd, &rel, "", &mut entries, &mut bytes)?;
    } else {
        let pfd = root.open_beneath(parent, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        add_one(
            root,
            &mut b,
            pfd.as_raw_fd(),
            name,
            &rel,
            name,
            &mut entries,
            &mut bytes,
        )?;
    }
    b.into_inner()?.flush()?;
    Ok((entries, bytes))
}

fn add_dir_contents<W: Write>(
    root: &Root,
    b: &mut tar::Builder<W>,
    dfd: &OwnedFd,
    rel: &str,
    arc: &str,
    entries: &mut u64,
    bytes: &mut u64,
) -> io::Result<()> {
    for name in beneath::read_dir_names(dfd.as_raw_fd())? {
        let child_rel = join(rel, &name);
        let child_arc = join(arc, &name);
        let is_dir = add_one(
            root,
            b,
            dfd.as_raw_fd(),
            &name,
            &child_rel,
            &child_arc,
            entries,
            bytes,
        )?;
        if is_dir {
            let sub = beneath::open_dir_at(dfd.as_raw_fd(), &name)
                .map_err(|e| root.explain(&child_rel, e))?;
            add_dir_contents(root, b, &sub, &child_rel, &child_arc, entries, bytes)?;
        }
    }
    Ok(())
}

/// Adds one entry; returns whether it was a directory.
#[allow(clippy::too_many_arguments)]
fn add_one<W: Write>(
    root: &Root,
    b: &mut tar::Builder<W>,
    dirfd: i32,
    name: &str,
    rel: &str,
    arc: &str,
    entries: &mut u64,
    bytes: &mut u64,
) -> io::Result<bool> {
    let st = beneath::lstat_at(dirfd, name).map_err(|e| root.explain(rel, e))?;
    let mut h = tar::Header::new_gnu();
    h.set_mode(st.st_mode & 0o7777);
    h.set_mtime(st.st_mtime.max(0) as u64);
    *entries += 1;
    match beneath::kind_of(&st) {
        ArtifactType::Directory => {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            b.append_data(&mut h, format!("{arc}/"), io::empty())?;
            Ok(true)
        }
        ArtifactType::Symlink => {
            let target = beneath::readlink_at(dirfd, name).map_err(|e| root.explain(rel, e))?;
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, arc, &target)?;
            Ok(false)
        }
        ArtifactType::File => {
            let fd = beneath::open_at(
                dirfd,
                name,
                libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
                0,
            )
            .map_err(|e| root.explain(rel, e))?;
            let f = std::fs::File::from(fd);
            let size = beneath::fstat(f.as_raw_fd())?.st_size as u64;
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(size);
            // A file that shrinks while read is padded, one that grows is cut.
            let body = f.take(size).chain(io::repeat(0)).take(size);
            b.append_data(&mut h, arc, body)?;
            *bytes += size;
            Ok(false)
        }
        ArtifactType::Other => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is {}; only files, directories and symlinks can be archived",
                root.show(rel),
                beneath::describe_kind(&st)
            ),
        )),
    }
}

#[cfg(test)]
#[path = "../../tests/support/raw_tar.rs"]
pub(crate) mod raw_tar;

#[cfg(test)]
mod tests {
    use super::raw_tar::raw_tar;
    use super::*;
    use crate::files::tests::TempRoot;

    #[test]
    fn round_trips_a_tree() {
        let src = TempRoot::new("arc-src");
        std::fs::create_dir_all(src.ws().join("d/e")).unwrap();
        std::fs::write(src.ws().join("d/f.txt"), "content").unwrap();
        std::os::unix::fs::symlink("f.txt", src.ws().join("d/l")).unwrap();
        let long = "n".repeat(150);
        std::fs::write(src.ws().join(&long), "long name").unwrap();
        let mut buf = Vec::new();
        let (n, bytes) = create(&src.root(), "", &mut buf).unwrap();
        assert_eq!((n, bytes), (5, 16));
        let dst = TempRoot::new("arc-dst");
        let (n2, bytes2) = extract(&dst.root(), "sub", buf.as_slice()).unwrap();
        assert_eq!((n2, bytes2), (5, 16));
        let d = dst.ws().join("sub");
        assert_eq!(
            std::fs::read_to_string(d.join("d/f.txt")).unwrap(),
            "content"
        );
        assert_eq!(
            std::fs::read_link(d.join("d/l")).unwrap().to_str(),
            Some("f.txt")
        );
        assert!(d.join("d/e").is_dir());
        assert_eq!(std::fs::read_to_string(d.join(&long)).unwrap(), "long name");
        // A single file archives as one member named after it.
        let mut one = Vec::new();
        assert_eq!(create(&src.root(), "d/f.txt", &mut one).unwrap(), (1, 7));
        assert_eq!(kind(&src.root(), "d/l").unwrap(), ArtifactType::Symlink);
    }

    #[test]
    fn hostile_members_are_refused() {
        let t = TempRoot::new("arc-bad");
        std::fs::write(t.0.join("outside"), "safe").unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                raw_tar(&[("../outside", tar::EntryType::Regular, b"x", "")]),
                "contains '..'",
            ),
            (
                raw_tar(&[("/etc/evil", tar::EntryType::Regular, b"x", "")]),
                "absolute path",
            ),
            (
                raw_tar(&[("l", tar::EntryType::Symlink, b"", "/etc")]),
                "point outside",
            ),
            (
                raw_tar(&[("a/l", tar::EntryType::Symlink, b"", "../../outside")]),
                "point outside",
            ),
            (
                raw_tar(&[("h", tar::EntryType::Link, b"", "x")]),
                "hard link",
            ),
            (
                raw_tar(&[("dev", tar::EntryType::Char, b"", "")]),
                "character device",
            ),
        ];
        for (archive, want) in cases {
            let e = extract(&t.root(), "", archive.as_slice())
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "want {want:?}: {e}");
        }
        // The review's chain: `up -> .` is fine, `leak -> up/up/../../x`
        // is refused, and nothing lands outside.
        let chain = raw_tar(&[
            ("up", tar::EntryType::Symlink, b"", "."),
            ("leak", tar::EntryType::Symlink, b"", "up/up/../../outside"),
        ]);
        let e = extract(&t.root(), "", chain.as_slice())
            .unwrap_err()
            .to_string();
        assert!(e.contains("'..' after a name"), "{e}");
        assert!(std::fs::symlink_metadata(t.ws().join("leak")).is_err());
        // Its variants: `b -> a/a/..`, and `x -> y` then `y -> ..`.
        for (members, want) in [
            (
                vec![
                    ("a", tar::EntryType::Symlink, &b""[..], "."),
                    ("b", tar::EntryType::Symlink, &b""[..], "a/a/.."),
                ],
                "'..' after a name",
            ),
            (
                vec![
                    ("x", tar::EntryType::Symlink, &b""[..], "y"),
                    ("y", tar::EntryType::Symlink, &b""[..], ".."),
                ],
                "climbs above the tree",
            ),
            (
                vec![("abs", tar::EntryType::Symlink, &b""[..], "/workspace/x")],
                "is absolute",
            ),
        ] {
            let t2 = TempRoot::new("arc-chain");
            let e = extract(&t2.root(), "", raw_tar(&members).as_slice())
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "want {want:?}: {e}");
        }
        // A link made under a symlinked directory would sit at another
        // depth than its path says: `d -> .` then `d/d/l -> ../../x`.
        let t3 = TempRoot::new("arc-under");
        let under = raw_tar(&[
            ("d", tar::EntryType::Symlink, b"", "."),
            ("d/d/l", tar::EntryType::Symlink, b"", "../../outside"),
        ]);
        let e = extract(&t3.root(), "", under.as_slice())
            .unwrap_err()
            .to_string();
        assert!(e.contains("under a symlinked directory"), "{e}");
        assert!(std::fs::symlink_metadata(t3.ws().join("l")).is_err());
        // A symlink already in the workspace cannot carry later members out.
        std::os::unix::fs::symlink("..", t.ws().join("esc")).unwrap();
        let a = raw_tar(&[("esc/outside", tar::EntryType::Regular, b"pwned", "")]);
        let e = extract(&t.root(), "", a.as_slice())
            .unwrap_err()
            .to_string();
        assert!(e.contains("resolves outside"), "{e}");
        assert_eq!(
            std::fs::read_to_string(t.0.join("outside")).unwrap(),
            "safe"
        );
    }
}
