//! Seeds: what goes into `/workspace`, as a tar stream the agent extracts.
//!
//! A seed is a host directory, a `.tar`/`.tar.gz`/`.tgz` archive, a Git
//! checkout (its files as Git sees them: tracked plus untracked-but-not-
//! ignored, without `.git`), or a clean clone of a repository URL. Every
//! source is first *planned*: walked or read once and checked (no special
//! files, no hard links, no `..` or absolute member names, no symlink that
//! leads outside the workspace). Only a plan that passed is written out, as
//! a fresh tar, so the guest only ever receives what was checked.
//!
//! - `dir`: walking a host directory (or the files Git lists in it)
//! - `archive`: reading the members of a `.tar`/`.tar.gz` archive
//! - `git`: a Git checkout's files, or a clean clone of a repository URL

mod archive;
mod dir;
mod git;

use super::{EngineError, Result};
use crate::engine::hostpath::ReadPath;
use archive::{archive_err, open_archive, plan_archive, skipped_member};
use dir::{describe_file_type, plan_dir};
use git::{plan_git_checkout, plan_repo};
use pyro_proto::{ArtifactType, FileEntry, Sha256Digest};
use serde::Serialize;
use std::io::{self, Read, Write};
use std::path::PathBuf;

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

    pub(super) fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "pyro-seed-{tag}-{}",
            super::super::super::paths::random_id(4)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    pub(super) fn names(w: &Written) -> Vec<String> {
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
    fn bad_seed_paths_are_refused_with_the_reason() {
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
        std::fs::remove_dir_all(&d).unwrap();
    }
}
