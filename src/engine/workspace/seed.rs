//! Seeds: what goes into `/workspace`, as a tar stream the agent extracts.
//!
//! A seed is a host directory, a `.tar`/`.tar.gz`/`.tgz` archive, a Git
//! checkout (its files as Git sees them: tracked plus untracked-but-not-
//! ignored, without `.git`), or a clean clone of a repository URL. Every
//! source is first *planned*: walked or read once and checked (no special
//! files, no hard links, no `..` or absolute member names, no symlink that
//! leads outside the workspace). Only a plan that passed is written out, as
//! a fresh tar, so the guest only ever receives what was checked.

use super::{EngineError, Result};
use crate::engine::hostpath::ReadPath;
use pyro_proto::archive::{link_target, member_path};
use pyro_proto::bounded_tar::{BoundedTar, TarLimits};
use pyro_proto::path::check_symlink;
use pyro_proto::{ArtifactType, FileEntry, Sha256Digest};
use serde::Serialize;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where a workspace's content comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum SeedSource {
    Empty,
    /// A `seed_path` (directory or archive), resolved under the caller's
    /// policy (confined to the allowed roots for an MCP client).
    Path(ReadPath),
    /// A Git checkout's root: the files Git sees, without `.git`.
    GitCheckout(PathBuf),
    /// A clean clone of a repository, at an optional ref.
    Repo {
        url: String,
        git_ref: Option<String>,
    },
}

#[derive(Debug, Clone)]
enum Kind {
    File { size: u64, mode: u32 },
    Dir { mode: u32 },
    Symlink { target: String },
}

#[derive(Debug, Clone)]
struct Item {
    rel: String,
    kind: Kind,
}

#[derive(Debug)]
enum Origin {
    /// Entries are files under this directory.
    Dir(PathBuf),
    /// Entries are members of this archive, in order.
    Archive { path: PathBuf, gzip: bool },
}

/// A checked seed, ready to be written as a tar.
#[derive(Debug)]
pub struct Plan {
    origin: Option<Origin>,
    items: Vec<Item>,
    /// `empty`, `directory`, `tar_archive`, `git_checkout`, `repo_clone`.
    pub mode: &'static str,
    /// What the user named (path or URL), for the metadata.
    pub source: Option<String>,
    /// Where a clone came from.
    pub repo: Option<RepoInfo>,
    /// A temporary clone to remove when done.
    cleanup: Option<PathBuf>,
}

impl Drop for Plan {
    fn drop(&mut self) {
        if let Some(d) = self.cleanup.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Which operation a seed description is for; it names the source
/// `seed_path` for a workspace's seed and `source_path` for a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Seed,
    Sync,
}

/// The source a seed description names, under the key of its origin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum SourceKey {
    #[serde(rename = "seed_path")]
    Seed(Option<String>),
    #[serde(rename = "source_path")]
    Sync(Option<String>),
}

/// The commit a clone was seeded from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepoInfo {
    /// The ref asked for (the default branch when none).
    pub repo_ref: Option<String>,
    pub commit: String,
}

/// What a seed or a sync put into the workspace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeedInfo {
    /// `empty`, `directory`, `tar_archive`, `git_checkout`, `repo_clone`.
    pub mode: &'static str,
    /// The host path or URL it came from (null for an empty seed).
    #[serde(flatten)]
    pub source: SourceKey,
    pub destination: String,
    pub entry_count: u64,
    pub bytes_written: u64,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub repo: Option<RepoInfo>,
}

/// What writing a plan produced.
#[derive(Debug, Default)]
pub struct Written {
    pub entry_count: u64,
    pub bytes: u64,
    /// Per entry, with SHA-256 for files (when asked for).
    pub manifest: Vec<FileEntry>,
}

fn bad_seed(msg: String) -> EngineError {
    EngineError::Invalid(msg)
}

impl Plan {
    pub fn empty() -> Plan {
        Plan {
            origin: None,
            items: Vec::new(),
            mode: "empty",
            source: None,
            repo: None,
            cleanup: None,
        }
    }

    /// The `workspace_seed` / `workspace_sync` object for results: what
    /// went where, the source named as `purpose` says.
    pub fn describe(&self, purpose: Purpose, destination: &str, written: &Written) -> SeedInfo {
        let source = self.source.clone();
        SeedInfo {
            mode: self.mode,
            source: match purpose {
                Purpose::Seed => SourceKey::Seed(source),
                Purpose::Sync => SourceKey::Sync(source),
            },
            destination: destination.to_string(),
            entry_count: written.entry_count,
            bytes_written: written.bytes,
            repo: self.repo.clone(),
        }
    }

    /// Writes the plan as a tar to `out`; with `hash`, the manifest gets
    /// each file's SHA-256.
    pub fn write_tar<W: Write>(&self, out: W, hash: bool) -> Result<Written> {
        let mut b = tar::Builder::new(out);
        b.follow_symlinks(false);
        let mut w = Written::default();
        match &self.origin {
            None => {}
            Some(Origin::Dir(root)) => {
                for item in &self.items {
                    let src = root.join(&item.rel);
                    match &item.kind {
                        Kind::File { size, mode } => {
                            let f = std::fs::File::open(&src).map_err(|e| {
                                EngineError::io(format!("reading {}", src.display()), e)
                            })?;
                            add_file(&mut b, &mut w, &item.rel, *size, *mode, f, hash)?;
                        }
                        _ => add_other(&mut b, &mut w, item)?,
                    }
                }
            }
            Some(Origin::Archive { path, gzip }) => {
                let input = open_archive(path, *gzip)?;
                let mut ar = tar::Archive::new(input);
                let mut items = self.items.iter();
                for entry in ar.entries().map_err(|e| archive_err(path, e))? {
                    let entry = entry.map_err(|e| archive_err(path, e))?;
                    if skipped_member(&entry) {
                        continue;
                    }
                    let Some(item) = items.next() else { break };
                    match &item.kind {
                        Kind::File { size, mode } => {
                            add_file(&mut b, &mut w, &item.rel, *size, *mode, entry, hash)?
                        }
                        _ => add_other(&mut b, &mut w, item)?,
                    }
                }
            }
        }
        b.into_inner()
            .and_then(|mut o| o.flush())
            .map_err(|e| EngineError::io("writing the seed archive", e))?;
        Ok(w)
    }
}

fn add_file<W: Write, R: Read>(
    b: &mut tar::Builder<W>,
    w: &mut Written,
    rel: &str,
    size: u64,
    mode: u32,
    data: R,
    hash: bool,
) -> Result<()> {
    use sha2::Digest;
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(mode & 0o7777);
    let mut hasher = hash.then(sha2::Sha256::new);
    // Exactly `size` bytes, even if the file changed since it was planned.
    let body = HashingReader {
        inner: data.take(size).chain(io::repeat(0)).take(size),
        hasher: hasher.as_mut(),
    };
    b.append_data(&mut h, rel, body)
        .map_err(|e| EngineError::io(format!("archiving {rel}"), e))?;
    w.entry_count += 1;
    w.bytes += size;
    w.manifest.push(FileEntry {
        path: rel.to_string(),
        artifact_type: ArtifactType::File,
        size_bytes: size,
        link_target: None,
        mode: mode & 0o7777,
        sha256: hasher.map(|h| {
            let mut d = Sha256Digest([0; 32]);
            d.0.copy_from_slice(&h.finalize());
            d
        }),
    });
    Ok(())
}

struct HashingReader<'a, R> {
    inner: R,
    hasher: Option<&'a mut sha2::Sha256>,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(buf)?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

fn add_other<W: Write>(b: &mut tar::Builder<W>, w: &mut Written, item: &Item) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(0);
    let entry = match &item.kind {
        Kind::Dir { mode } => {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(mode & 0o7777);
            b.append_data(&mut h, format!("{}/", item.rel), io::empty())
                .map_err(|e| EngineError::io(format!("archiving {}", item.rel), e))?;
            FileEntry {
                path: item.rel.clone(),
                artifact_type: ArtifactType::Directory,
                size_bytes: 0,
                link_target: None,
                mode: mode & 0o7777,
                sha256: None,
            }
        }
        Kind::Symlink { target } => {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            b.append_link(&mut h, &item.rel, target)
                .map_err(|e| EngineError::io(format!("archiving {}", item.rel), e))?;
            FileEntry {
                path: item.rel.clone(),
                artifact_type: ArtifactType::Symlink,
                size_bytes: target.len() as u64,
                link_target: Some(target.clone()),
                mode: 0o777,
                sha256: None,
            }
        }
        Kind::File { .. } => unreachable!("files go through add_file"),
    };
    w.entry_count += 1;
    w.manifest.push(entry);
    Ok(())
}

fn archive_err(path: &Path, e: io::Error) -> EngineError {
    bad_seed(format!("cannot read archive {}: {e}", path.display()))
}

/// The archive's tar stream, with long names and PAX members capped
/// (`bounded_tar`): the tar crate would read them whole into memory.
fn open_archive(path: &Path, gzip: bool) -> Result<Box<dyn Read>> {
    let f = std::fs::File::open(path)
        .map_err(|e| EngineError::io(format!("opening {}", path.display()), e))?;
    let r = io::BufReader::with_capacity(256 * 1024, f);
    let raw: Box<dyn Read> = if gzip {
        Box::new(flate2::read::GzDecoder::new(r))
    } else {
        Box::new(r)
    };
    Ok(Box::new(BoundedTar::new(raw, TarLimits::metadata_only())))
}

/// PAX headers and the archive root ("./") carry no content of their own.
fn skipped_member<R: Read>(e: &tar::Entry<R>) -> bool {
    let t = e.header().entry_type();
    if t.is_pax_global_extensions() || t.is_pax_local_extensions() {
        return true;
    }
    let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
    t.is_dir() && matches!(member_path(&name).as_deref(), Ok(""))
}

fn describe_file_type(m: &std::fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_fifo() {
        "a fifo"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "a special file"
    }
}

/// Plans a resolved `seed_path` (or a sync source): a directory or an
/// archive. Only a [`ReadPath`] gets here, so the caller's path policy
/// has been applied.
pub fn plan_read(p: &ReadPath) -> Result<Plan> {
    let shown = p.path().to_str().ok_or_else(|| {
        bad_seed(format!(
            "seed path {:?} resolves to a path that is not valid UTF-8",
            p.given()
        ))
    })?;
    plan_path(shown)
}

/// Plans a directory or an archive named by `given`, which must already be
/// resolved (see [`plan_read`]).
fn plan_path(given: &str) -> Result<Plan> {
    let trimmed = given.trim();
    if trimmed.is_empty() {
        return Err(bad_seed("seed path must not be empty".into()));
    }
    let path = PathBuf::from(trimmed);
    let meta = std::fs::metadata(&path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            bad_seed(format!("seed path {trimmed} does not exist"))
        } else {
            EngineError::io(format!("seed path {trimmed}"), e)
        }
    })?;
    let abs = std::fs::canonicalize(&path).unwrap_or(path.clone());
    if meta.is_dir() {
        let items = plan_dir(&abs, None)?;
        return Ok(Plan {
            origin: Some(Origin::Dir(abs.clone())),
            items,
            mode: "directory",
            source: Some(abs.to_string_lossy().into_owned()),
            repo: None,
            cleanup: None,
        });
    }
    if !meta.is_file() {
        return Err(bad_seed(format!(
            "seed path {trimmed} is {}; give a directory or a .tar/.tar.gz/.tgz archive",
            describe_file_type(&meta)
        )));
    }
    let name = abs.to_string_lossy().to_lowercase();
    if !(name.ends_with(".tar") || name.ends_with(".tar.gz") || name.ends_with(".tgz")) {
        return Err(bad_seed(format!(
            "seed path {trimmed} is a file but not a .tar, .tar.gz or .tgz archive"
        )));
    }
    let mut magic = [0u8; 2];
    let gzip = std::fs::File::open(&abs)
        .and_then(|mut f| f.read(&mut magic))
        .map(|n| n == 2 && magic == [0x1f, 0x8b])
        .unwrap_or(false);
    let items = plan_archive(&abs, gzip)?;
    Ok(Plan {
        origin: Some(Origin::Archive {
            path: abs.clone(),
            gzip,
        }),
        items,
        mode: "tar_archive",
        source: Some(abs.to_string_lossy().into_owned()),
        repo: None,
        cleanup: None,
    })
}

/// Walks `root` (only `only` when given: Git's file list), refusing what
/// cannot be seeded. Never follows symlinks.
fn plan_dir(root: &Path, only: Option<&[String]>) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    match only {
        None => walk(root, "", &mut items)?,
        Some(list) => {
            let mut dirs = std::collections::BTreeSet::new();
            for rel in list {
                let p = root.join(rel);
                let m = match std::fs::symlink_metadata(&p) {
                    Ok(m) => m,
                    // In the index, deleted in the working tree.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(EngineError::io(format!("reading {}", p.display()), e)),
                };
                // Parents first, so the archive has them in order.
                let mut parent = Path::new(rel).parent();
                let mut chain = Vec::new();
                while let Some(d) = parent.filter(|d| !d.as_os_str().is_empty()) {
                    chain.push(d.to_string_lossy().into_owned());
                    parent = d.parent();
                }
                for d in chain.into_iter().rev() {
                    if dirs.insert(d.clone()) {
                        // Git never lists a path under a symlink, but an
                        // index can be made to: reading through it would
                        // read outside the checkout.
                        let dm = std::fs::symlink_metadata(root.join(&d));
                        if dm.as_ref().is_ok_and(|m| !m.is_dir()) {
                            return Err(bad_seed(format!(
                                "{} is listed by git but {} is not a directory (a symlink?); seeds are not read through symlinks",
                                root.join(rel).display(),
                                root.join(&d).display()
                            )));
                        }
                        let mode = dm.map(|m| m.mode()).unwrap_or(0o755);
                        items.push(Item {
                            rel: d,
                            kind: Kind::Dir { mode },
                        });
                    }
                }
                if m.is_dir() {
                    // A submodule (a gitlink): take its tree as it is.
                    if dirs.insert(rel.clone()) {
                        items.push(Item {
                            rel: rel.clone(),
                            kind: Kind::Dir { mode: m.mode() },
                        });
                        walk(root, rel, &mut items)?;
                    }
                    continue;
                }
                items.push(item_for(root, rel, &m)?);
            }
        }
    }
    Ok(items)
}

fn item_for(root: &Path, rel: &str, m: &std::fs::Metadata) -> Result<Item> {
    let p = root.join(rel);
    let t = m.file_type();
    let kind = if t.is_symlink() {
        let target = std::fs::read_link(&p)
            .map_err(|e| EngineError::io(format!("reading {}", p.display()), e))?
            .to_string_lossy()
            .into_owned();
        if let Err(why) = check_symlink(rel, &target) {
            return Err(bad_seed(format!(
                "{} is a symlink to {target:?}, which points outside the workspace ({why}); seeds may only hold symlinks that stay inside",
                p.display()
            )));
        }
        Kind::Symlink { target }
    } else if t.is_file() {
        Kind::File {
            size: m.len(),
            mode: m.mode(),
        }
    } else if t.is_dir() {
        Kind::Dir { mode: m.mode() }
    } else {
        return Err(bad_seed(format!(
            "{} is {}; seeds may only hold files, directories and symlinks",
            p.display(),
            describe_file_type(m)
        )));
    };
    if rel.contains('\n') || rel.contains('\0') {
        return Err(bad_seed(format!(
            "{} has a name pyro cannot carry",
            p.display()
        )));
    }
    Ok(Item {
        rel: rel.to_string(),
        kind,
    })
}

fn walk(root: &Path, rel: &str, items: &mut Vec<Item>) -> Result<()> {
    let dir = root.join(rel);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| EngineError::io(format!("reading {}", dir.display()), e))?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for name in names {
        let Some(name) = name.to_str().map(String::from) else {
            return Err(bad_seed(format!(
                "{} holds a file name that is not UTF-8: {:?}",
                dir.display(),
                name
            )));
        };
        let child = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let m = std::fs::symlink_metadata(root.join(&child))
            .map_err(|e| EngineError::io(format!("reading {}", root.join(&child).display()), e))?;
        let item = item_for(root, &child, &m)?;
        let is_dir = matches!(item.kind, Kind::Dir { .. });
        items.push(item);
        if is_dir {
            walk(root, &child, items)?;
        }
    }
    Ok(())
}

fn plan_archive(path: &Path, gzip: bool) -> Result<Vec<Item>> {
    let mut ar = tar::Archive::new(open_archive(path, gzip)?);
    let mut items = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut links = std::collections::HashSet::new();
    for entry in ar.entries().map_err(|e| archive_err(path, e))? {
        let entry = entry.map_err(|e| archive_err(path, e))?;
        if skipped_member(&entry) {
            continue;
        }
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8(raw).map_err(|e| {
            bad_seed(format!(
                "archive {} has a member name that is not UTF-8: {:?}",
                path.display(),
                String::from_utf8_lossy(e.as_bytes())
            ))
        })?;
        let rel = member_path(&name)
            .map_err(|e| bad_seed(format!("archive {}: {e}", path.display())))?
            .into_string();
        // A member under an earlier symlink member would be written
        // through it (and a link there would sit at another depth than
        // its path says, which the symlink rule relies on).
        if let Some(link) = under_link(&rel, &links) {
            return Err(bad_seed(format!(
                "archive {}: member {name:?} lies under the symlink {link:?}; members may not be written through symlinks",
                path.display()
            )));
        }
        let h = entry.header();
        let t = h.entry_type();
        let mode = h.mode().unwrap_or(0o644);
        let kind = if t.is_file() || t == tar::EntryType::Continuous {
            Kind::File {
                size: entry.size(),
                mode,
            }
        } else if t.is_dir() {
            Kind::Dir { mode }
        } else if t.is_symlink() {
            let target = link_target(&entry);
            if let Err(why) = check_symlink(&rel, &target) {
                return Err(bad_seed(format!(
                    "archive {}: symlink {name:?} -> {target:?} would point outside /workspace: {why}",
                    path.display()
                )));
            }
            Kind::Symlink { target }
        } else if t.is_hard_link() {
            return Err(bad_seed(format!(
                "archive {}: member {name:?} is a hard link; hard links are not allowed in workspace archives",
                path.display()
            )));
        } else {
            return Err(bad_seed(format!(
                "archive {}: member {name:?} is a device, fifo or other special member; only files, directories and symlinks are allowed",
                path.display()
            )));
        };
        if matches!(kind, Kind::Symlink { .. }) {
            links.insert(rel.clone());
        }
        if !seen.insert(rel.clone()) && !matches!(kind, Kind::Dir { .. }) {
            return Err(bad_seed(format!(
                "archive {}: member {name:?} appears twice",
                path.display()
            )));
        }
        items.push(Item { rel, kind });
    }
    Ok(items)
}

/// The first proper prefix of `rel` (by components) that is in `links`.
fn under_link<'a>(rel: &str, links: &'a std::collections::HashSet<String>) -> Option<&'a str> {
    let mut end = 0;
    while let Some(i) = rel[end..].find('/') {
        end += i;
        if let Some(l) = links.get(&rel[..end]) {
            return Some(l);
        }
        end += 1;
    }
    None
}

/// Runs git; the error says what to do when git is missing.
fn git(args: &[&str], cwd: Option<&Path>) -> Result<Vec<u8>> {
    let mut cmd = Command::new("git");
    cmd.args(args)
        .stdin(Stdio::null())
        .env("GIT_TERMINAL_PROMPT", "0");
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let out = cmd.output().map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            EngineError::Unavailable(
                "git is not installed on this host; it is needed to seed from a Git checkout or --repo-url (pass seed_path instead)".into(),
            )
        } else {
            EngineError::io("running git", e)
        }
    })?;
    if !out.status.success() {
        return Err(EngineError::Invalid(format!(
            "git {} failed: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

/// Plans a Git checkout: tracked files plus untracked files that are not
/// ignored, as they are in the working tree; `.git` stays out.
pub fn plan_git_checkout(root: &Path, cached_only: bool) -> Result<Plan> {
    let mut args = vec!["ls-files", "-z", "--cached"];
    if !cached_only {
        args.extend(["--others", "--exclude-standard"]);
    }
    let out = git(&args, Some(root))?;
    let mut list: Vec<String> = out
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    list.sort();
    list.dedup();
    let items = plan_dir(root, Some(&list))?;
    Ok(Plan {
        origin: Some(Origin::Dir(root.to_path_buf())),
        items,
        mode: "git_checkout",
        source: Some(root.to_string_lossy().into_owned()),
        repo: None,
        cleanup: None,
    })
}

/// Clones `url` into a temporary directory and plans its tree at `git_ref`
/// (default branch when none).
pub fn plan_repo(url: &str, git_ref: Option<&str>) -> Result<Plan> {
    let tmp =
        std::env::temp_dir().join(format!("pyro-clone-{}", super::super::paths::random_id(6)));
    let result = (|| {
        let dest = tmp.to_string_lossy().into_owned();
        git(
            &["clone", "--quiet", "--no-checkout", "--", url, &dest],
            None,
        )?;
        let rev = git_ref.unwrap_or("HEAD");
        git(&["checkout", "--quiet", "--detach", rev, "--"], Some(&tmp))
            .or_else(|_| {
                // A branch or tag only on the remote side.
                let remote = format!("origin/{rev}");
                git(
                    &["checkout", "--quiet", "--detach", &remote, "--"],
                    Some(&tmp),
                )
            })
            .map_err(|e| EngineError::Invalid(format!("cannot check out {rev:?} of {url}: {e}")))?;
        let head = git(&["rev-parse", "HEAD"], Some(&tmp))?;
        let mut plan = plan_git_checkout(&tmp, true)?;
        plan.mode = "repo_clone";
        plan.source = Some(url.to_string());
        plan.repo = Some(RepoInfo {
            repo_ref: git_ref.map(String::from),
            commit: String::from_utf8_lossy(&head).trim().to_string(),
        });
        Ok(plan)
    })();
    match result {
        Ok(mut plan) => {
            plan.cleanup = Some(tmp);
            Ok(plan)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

pub fn plan(source: &SeedSource) -> Result<Plan> {
    match source {
        SeedSource::Empty => Ok(Plan::empty()),
        SeedSource::Path(p) => plan_read(p),
        SeedSource::GitCheckout(root) => plan_git_checkout(root, false),
        SeedSource::Repo { url, git_ref } => plan_repo(url, git_ref.as_deref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "pyro-seed-{tag}-{}",
            super::super::super::paths::random_id(4)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn names(w: &Written) -> Vec<String> {
        w.manifest.iter().map(|e| e.path.clone()).collect()
    }

    #[test]
    fn directory_seed_round_trips_through_tar() {
        let d = tmp("dir");
        std::fs::create_dir_all(d.join("src/empty")).unwrap();
        std::fs::write(d.join("src/a.txt"), "abc").unwrap();
        std::os::unix::fs::symlink("src/a.txt", d.join("link")).unwrap();
        let plan = plan_path(d.to_str().unwrap()).unwrap();
        assert_eq!(plan.mode, "directory");
        assert_eq!(plan.items.len(), 4);
        let mut buf = Vec::new();
        let w = plan.write_tar(&mut buf, true).unwrap();
        assert_eq!(names(&w), ["link", "src", "src/a.txt", "src/empty"]);
        assert_eq!(w.bytes, 3);
        let a = w.manifest.iter().find(|e| e.path == "src/a.txt").unwrap();
        assert_eq!(
            a.sha256.map(|h| h.to_string()).as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        // The tar re-plans to the same entries (it is a valid seed itself).
        let t = d.with_extension("tar");
        std::fs::write(&t, &buf).unwrap();
        let again = plan_path(t.to_str().unwrap()).unwrap();
        assert_eq!(again.mode, "tar_archive");
        let w2 = again.write_tar(io::sink(), true).unwrap();
        assert_eq!(names(&w2), names(&w));
        assert_eq!(w2.manifest[2].sha256, a.sha256);
        std::fs::remove_dir_all(&d).unwrap();
        std::fs::remove_file(t).unwrap();
    }

    #[test]
    fn gzip_archives_are_read() {
        let d = tmp("gz");
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o755);
        b.append_data(&mut h, "bin/run", &b"hi"[..]).unwrap();
        let raw = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).unwrap();
        let p = d.join("seed.tgz");
        std::fs::write(&p, gz.finish().unwrap()).unwrap();
        let plan = plan_path(p.to_str().unwrap()).unwrap();
        let w = plan.write_tar(io::sink(), false).unwrap();
        assert_eq!(names(&w), ["bin/run"]);
        assert_eq!(w.manifest[0].mode, 0o755);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bad_seeds_are_refused_with_the_reason() {
        let d = tmp("bad");
        let e = plan_path(d.join("missing").to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
        let e = plan_path("/dev/null").unwrap_err().to_string();
        assert!(e.contains("is a character device"), "{e}");
        std::fs::write(d.join("notes.txt"), "x").unwrap();
        let e = plan_path(d.join("notes.txt").to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a .tar"), "{e}");
        // A fifo inside a directory seed.
        let inner = d.join("tree");
        std::fs::create_dir_all(&inner).unwrap();
        let fifo = std::ffi::CString::new(inner.join("pipe").to_str().unwrap()).unwrap();
        // SAFETY: valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let e = plan_path(inner.to_str().unwrap()).unwrap_err().to_string();
        assert!(e.contains("pipe is a fifo"), "{e}");
        std::fs::remove_file(inner.join("pipe")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", inner.join("escape")).unwrap();
        let e = plan_path(inner.to_str().unwrap()).unwrap_err().to_string();
        assert!(e.contains("points outside the workspace"), "{e}");
        std::fs::remove_file(inner.join("escape")).unwrap();
        // Archive tricks.
        let mk = |name: &str, kind: tar::EntryType, link: &str| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(0);
            let raw = h.as_old_mut();
            raw.name[..name.len()].copy_from_slice(name.as_bytes());
            raw.linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_cksum();
            let mut b = tar::Builder::new(Vec::new());
            b.append(&h, io::empty()).unwrap();
            b.into_inner().unwrap()
        };
        for (bytes, want) in [
            (mk("../up", tar::EntryType::Regular, ""), "contains '..'"),
            (mk("/abs", tar::EntryType::Regular, ""), "absolute path"),
            (mk("l", tar::EntryType::Symlink, "../../x"), "point outside"),
            (mk("h", tar::EntryType::Link, "l"), "hard link"),
            (mk("f", tar::EntryType::Fifo, ""), "special member"),
        ] {
            let p = d.join("t.tar");
            std::fs::write(&p, bytes).unwrap();
            let e = plan_path(p.to_str().unwrap()).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn seeds_refuse_the_symlink_chain_out_of_the_tree() {
        let d = tmp("chain");
        let tree = d.join("tree");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(d.join("SECRET"), "host secret").unwrap();
        // The review's chain, as a host directory.
        std::os::unix::fs::symlink(".", tree.join("up")).unwrap();
        std::os::unix::fs::symlink("up/up/../../SECRET", tree.join("leak")).unwrap();
        let e = plan_path(tree.to_str().unwrap()).unwrap_err().to_string();
        assert!(e.contains("leak") && e.contains("'..' after a name"), "{e}");
        std::fs::remove_file(tree.join("leak")).unwrap();
        // `b -> a/a/..` and `y -> ..` (reached by `x -> y`).
        std::os::unix::fs::symlink("up/up/..", tree.join("b")).unwrap();
        assert!(plan_path(tree.to_str().unwrap()).is_err());
        std::fs::remove_file(tree.join("b")).unwrap();
        std::os::unix::fs::symlink("y", tree.join("x")).unwrap();
        std::os::unix::fs::symlink("..", tree.join("y")).unwrap();
        let e = plan_path(tree.to_str().unwrap()).unwrap_err().to_string();
        assert!(e.contains("climbs above the tree"), "{e}");
        std::fs::remove_file(tree.join("y")).unwrap();
        // What is left (`up -> .`, `x -> y`) is a valid seed.
        assert!(plan_path(tree.to_str().unwrap()).is_ok());
        // The same chains in archives, and a member under a link.
        let tar_of = |members: &[(&str, tar::EntryType, &str)]| {
            let mut b = tar::Builder::new(Vec::new());
            for (name, kind, link) in members {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(*kind);
                h.set_size(0);
                h.set_mode(0o644);
                let raw = h.as_old_mut();
                raw.name[..name.len()].copy_from_slice(name.as_bytes());
                raw.linkname[..link.len()].copy_from_slice(link.as_bytes());
                h.set_cksum();
                b.append(&h, io::empty()).unwrap();
            }
            b.into_inner().unwrap()
        };
        use tar::EntryType::{Regular, Symlink};
        for (members, want) in [
            (
                vec![
                    ("up", Symlink, "."),
                    ("leak", Symlink, "up/up/../../SECRET"),
                ],
                "'..' after a name",
            ),
            (
                vec![("x", Symlink, "y"), ("y", Symlink, "..")],
                "climbs above the tree",
            ),
            (
                vec![("d", Symlink, "."), ("d/d/l", Symlink, "../../SECRET")],
                "lies under the symlink \"d\"",
            ),
            (
                vec![("d", Symlink, "."), ("d/f", Regular, "")],
                "lies under the symlink",
            ),
        ] {
            let p = d.join("chain.tar");
            std::fs::write(&p, tar_of(&members)).unwrap();
            let e = plan_path(p.to_str().unwrap()).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    fn have_git() -> bool {
        Command::new("git").arg("--version").output().is_ok()
    }

    #[test]
    fn git_checkouts_skip_ignored_files_and_dot_git() {
        if !have_git() {
            return;
        }
        let d = tmp("git");
        let run = |args: &[&str]| {
            let out = Command::new("git")
                .args(args)
                .current_dir(&d)
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@e")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@e")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&["init", "-q", "-b", "main"]);
        std::fs::write(d.join(".gitignore"), "target/\n").unwrap();
        std::fs::create_dir_all(d.join("src")).unwrap();
        std::fs::create_dir_all(d.join("target")).unwrap();
        std::fs::write(d.join("src/lib.rs"), "v1").unwrap();
        std::fs::write(d.join("target/big"), "ignored").unwrap();
        run(&["add", "."]);
        run(&["commit", "-q", "-m", "one"]);
        run(&["tag", "v1"]);
        std::fs::write(d.join("src/lib.rs"), "v2 uncommitted").unwrap();
        std::fs::write(d.join("new.txt"), "untracked").unwrap();
        let plan = plan_git_checkout(&d, false).unwrap();
        let w = plan.write_tar(io::sink(), false).unwrap();
        assert_eq!(names(&w), [".gitignore", "new.txt", "src", "src/lib.rs"]);
        assert_eq!(w.bytes, 8 + 9 + 14);
        // A clean clone sees the committed tree only.
        let url = format!("file://{}", d.display());
        let plan = plan_repo(&url, Some("v1")).unwrap();
        assert_eq!(plan.mode, "repo_clone");
        let w = plan.write_tar(io::sink(), false).unwrap();
        assert_eq!(names(&w), [".gitignore", "src", "src/lib.rs"]);
        assert_eq!(w.bytes, 8 + 2);
        let clone = plan.cleanup.clone().unwrap();
        drop(plan);
        assert!(!clone.exists(), "the temporary clone is removed");
        let e = plan_repo(&url, Some("no-such-ref"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no-such-ref"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
