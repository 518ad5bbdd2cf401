//! `/workspace` against its baseline (the tree right after seeding).
//!
//! The agent sends a manifest of the current tree with a SHA-256 per file
//! (cached in the guest by inode and times, so an unchanged tree is cheap);
//! the baseline's manifest was written at creation. Only paths whose type,
//! target or hash differ are fetched: the current content from the guest,
//! the old one from `baseline.tar`. Text files get a unified diff
//! (`similar`, Myers with a time bound); binary ones are flagged. Like the
//! reference, directories count only when empty.

use super::guest;
use super::results::{ChangeStatus, Diff, DiffBudget, DiffEntry, DiffSummary};
use super::store;
use super::{EngineError, Result, FILE_MAX_BYTES};
use crate::engine::agent;
use pyro_proto::bounded_tar::{BoundedTar, TarLimits};
use pyro_proto::{base64_decode, ArtifactType, FileEntry, Request, Response};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

/// Files bigger than this are compared by hash only (no text patch).
pub const TEXT_DIFF_MAX_BYTES: u64 = FILE_MAX_BYTES;

/// Non-directories plus empty directories, sorted by path (borrowed: a
/// manifest may hold 200,000 entries). A path listed twice (only a hostile
/// agent does that) counts once.
fn significant(entries: &[FileEntry]) -> Vec<&FileEntry> {
    let mut parents = HashSet::new();
    for e in entries {
        let mut p = e.path.as_str();
        while let Some((head, _)) = p.rsplit_once('/') {
            if !parents.insert(head) {
                // Its own parents went in with it.
                break;
            }
            p = head;
        }
    }
    let mut out: Vec<&FileEntry> = entries
        .iter()
        .filter(|e| {
            e.artifact_type != ArtifactType::Directory || !parents.contains(e.path.as_str())
        })
        .collect();
    out.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    out.dedup_by(|a, b| a.path == b.path);
    out
}

pub fn load_baseline(id: &str) -> Result<Vec<FileEntry>> {
    let p = store::dir(id).join("baseline.json");
    let bytes = std::fs::read(&p).map_err(|e| {
        EngineError::io(format!("reading the baseline manifest {}", p.display()), e)
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| EngineError::Io(format!("baseline manifest {} is damaged: {e}", p.display())))
}

/// Contents of `wanted` paths from a tar file, in one pass.
pub fn read_from_tar(tar: &Path, wanted: &BTreeSet<String>) -> Result<HashMap<String, Vec<u8>>> {
    let mut out = HashMap::new();
    if wanted.is_empty() {
        return Ok(out);
    }
    let f = std::fs::File::open(tar)
        .map_err(|e| EngineError::io(format!("reading {}", tar.display()), e))?;
    let mut ar = tar::Archive::new(BoundedTar::new(
        std::io::BufReader::new(f),
        TarLimits::metadata_only(),
    ));
    for entry in ar
        .entries()
        .map_err(|e| EngineError::io("reading the baseline", e))?
    {
        let mut entry = entry.map_err(|e| EngineError::io("reading the baseline", e))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = name.trim_end_matches('/').to_string();
        if wanted.contains(&name) {
            // The baseline is the host's own, but never read a member past
            // what a text diff can use.
            let mut data = Vec::new();
            (&mut entry)
                .take(TEXT_DIFF_MAX_BYTES + 1)
                .read_to_end(&mut data)
                .map_err(|e| EngineError::io("reading the baseline", e))?;
            out.insert(name, data);
        }
    }
    Ok(out)
}

fn is_text(data: &[u8]) -> bool {
    !data.contains(&0) && std::str::from_utf8(data).is_ok()
}

fn guest_manifest(id: &str, deadline: Instant) -> Result<Vec<FileEntry>> {
    match agent::request(
        &guest::vsock(id),
        &Request::Manifest {
            path: String::new(),
        },
        deadline,
    ) {
        Ok(Response::Manifest { entries }) => Ok(entries),
        Ok(Response::Error { kind, message }) => Err(guest::agent_error(kind, message)),
        Ok(other) => Err(EngineError::Guest(format!(
            "unexpected agent answer to a manifest request: {other:?}"
        ))),
        Err(e) => Err(guest::lost_agent(id, "reading the workspace manifest", e)),
    }
}

/// Whole content of a guest file, if it is at most `max` bytes.
fn guest_read(id: &str, rel: &str, max: u64, deadline: Instant) -> Result<Option<Vec<u8>>> {
    match agent::request(
        &guest::vsock(id),
        &Request::ReadFile {
            path: rel.to_string(),
            max_bytes: max,
        },
        deadline,
    ) {
        Ok(Response::FileData {
            data_b64,
            truncated,
            ..
        }) => {
            if truncated {
                return Ok(None);
            }
            let data = base64_decode(&data_b64)
                .ok_or_else(|| EngineError::Guest("the agent sent invalid base64".into()))?;
            // More than asked (cut by `Response::clip_to` or not): too big.
            Ok((data.len() as u64 <= max).then_some(data))
        }
        Ok(Response::Error { kind, message }) => Err(guest::agent_error(kind, message)),
        Ok(other) => Err(EngineError::Guest(format!(
            "unexpected agent answer to a read: {other:?}"
        ))),
        Err(e) => Err(guest::lost_agent(id, "reading a file", e)),
    }
}

/// A unified diff of two texts; `None` side is `/dev/null`.
pub fn text_patch(path: &str, before: Option<&str>, after: Option<&str>) -> String {
    let a = if before.is_some() {
        format!("a/{path}")
    } else {
        "/dev/null".into()
    };
    let b = if after.is_some() {
        format!("b/{path}")
    } else {
        "/dev/null".into()
    };
    let diff = similar::TextDiff::configure()
        .timeout(Duration::from_secs(5))
        .diff_lines(before.unwrap_or(""), after.unwrap_or(""));
    diff.unified_diff()
        .context_radius(3)
        .header(&a, &b)
        .to_string()
}

/// Most bytes of file content (before and after, together) one diff reads
/// to make text patches: about a million tokens of patch, more than any
/// client reads. Each text file is at most 1 MiB, so this covers a few
/// large edits or hundreds of small ones; beyond it, changed files are
/// listed with their hash and size only and the result says `truncated`.
/// It bounds the host's memory (contents, and the patch text that the
/// result carries twice: whole and per file) and what the client gets.
pub const DIFF_MAX_BYTES: u64 = 4 * 1024 * 1024;

/// Most files one diff reads to make text patches (each costs an agent
/// round trip); beyond it, as for [`DIFF_MAX_BYTES`].
pub const DIFF_MAX_FILES: usize = 1000;

/// Most changed paths one diff lists. A guest makes 200,000 files with
/// one shell loop; listing them all would cost the host hundreds of MiB
/// as JSON values and send the client a line of tens of MiB. 5,000 is
/// about 1 MiB of JSON. The counts in
/// `summary` always cover every change; past this many, entries are left
/// out and the result says `truncated`.
pub const DIFF_MAX_ENTRIES: usize = 5_000;

/// What a diff may still read (see [`DIFF_MAX_BYTES`]).
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub bytes: u64,
    pub files: usize,
}

impl Budget {
    pub const DEFAULT: Budget = Budget {
        bytes: DIFF_MAX_BYTES,
        files: DIFF_MAX_FILES,
    };

    /// Takes `bytes` for one more file if they fit.
    fn take(&mut self, bytes: u64) -> bool {
        if self.files == 0 || bytes > self.bytes {
            return false;
        }
        self.files -= 1;
        self.bytes -= bytes;
        true
    }
}

/// What happened to one path.
type Status = ChangeStatus;

/// How one changed path is shown.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shown {
    /// Not a file on either side, a type change, or no textual difference.
    Plain,
    /// A side is over [`TEXT_DIFF_MAX_BYTES`] or not text.
    Binary,
    /// Within the budget, not read yet.
    Pending,
    /// A unified diff: index into the texts.
    Text(usize),
    /// Text-sized, but the budget was spent: hash and size only.
    OverBudget,
}

/// One changed path, kept small: there may be 200,000.
struct Change<'a> {
    old: Option<&'a FileEntry>,
    new: Option<&'a FileEntry>,
    status: Status,
    shown: Shown,
}

impl Change<'_> {
    fn path(&self) -> &str {
        self.new.or(self.old).map(|e| e.path.as_str()).unwrap_or("")
    }
}

/// The changes from `old` to `new` (both sorted by path), in path order.
fn changes<'a>(old: &[&'a FileEntry], new: &[&'a FileEntry]) -> Vec<Change<'a>> {
    use std::cmp::Ordering;
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    loop {
        let (o, n) = (old.get(i).copied(), new.get(j).copied());
        let (o, n) = match (o, n) {
            (None, None) => break,
            (Some(a), Some(b)) => match a.path.cmp(&b.path) {
                Ordering::Less => (Some(a), None),
                Ordering::Greater => (None, Some(b)),
                Ordering::Equal => (Some(a), Some(b)),
            },
            other => other,
        };
        i += usize::from(o.is_some());
        j += usize::from(n.is_some());
        let status = match (o, n) {
            (None, _) => Status::Added,
            (_, None) => Status::Deleted,
            (Some(a), Some(b)) if a.artifact_type != b.artifact_type => Status::TypeChanged,
            (Some(a), Some(b)) => {
                let same = match a.artifact_type {
                    ArtifactType::File => a.sha256 == b.sha256,
                    ArtifactType::Symlink => a.link_target == b.link_target,
                    _ => true,
                };
                if same {
                    continue;
                }
                Status::Modified
            }
        };
        out.push(Change {
            old: o,
            new: n,
            status,
            shown: Shown::Plain,
        });
    }
    out
}

/// The diff of a live workspace against its baseline. With `keep_text`
/// false the patches are made (to count them) but not kept: the summary
/// needs only the list.
pub fn diff(id: &str, keep_text: bool) -> Result<Diff> {
    diff_within(id, keep_text, Budget::DEFAULT)
}

/// `e` when it is a regular file.
fn file(e: Option<&FileEntry>) -> Option<&FileEntry> {
    e.filter(|e| e.artifact_type == ArtifactType::File)
}

/// [`diff`] within `budget`.
pub fn diff_within(id: &str, keep_text: bool, budget: Budget) -> Result<Diff> {
    let baseline = load_baseline(id)?;
    // One deadline for the manifest and every file read.
    let deadline = Instant::now() + agent::DIFF_DEADLINE;
    let current = guest_manifest(id, deadline)?;
    let mut changes = changes(&significant(&baseline), &significant(&current));
    // Which files get a text diff: in path order, while the budget lasts.
    // Sizes are the manifests' (the guest's may lie: its reads are capped
    // at the size it claimed, so the budget holds whatever it sends).
    let mut left = budget;
    for c in changes.iter_mut() {
        let (fo, fnew) = (file(c.old), file(c.new));
        c.shown = if c.status == Status::TypeChanged || (fo.is_none() && fnew.is_none()) {
            Shown::Plain
        } else if fo.is_some_and(|e| e.size_bytes > TEXT_DIFF_MAX_BYTES)
            || fnew.is_some_and(|e| e.size_bytes > TEXT_DIFF_MAX_BYTES)
        {
            Shown::Binary
        } else if left.take(fo.map_or(0, |e| e.size_bytes) + fnew.map_or(0, |e| e.size_bytes)) {
            Shown::Pending
        } else {
            Shown::OverBudget
        };
    }
    // Old contents of the chosen files, from the baseline archive.
    let want_old: BTreeSet<String> = changes
        .iter()
        .filter(|c| c.shown == Shown::Pending && file(c.old).is_some())
        .map(|c| c.path().to_string())
        .collect();
    let mut old_data = read_from_tar(&store::dir(id).join("baseline.tar"), &want_old)?;
    drop(want_old);
    let mut texts: Vec<String> = Vec::new();
    let mut bytes_read = 0u64;
    let mut files_read = 0usize;
    for c in changes.iter_mut().filter(|c| c.shown == Shown::Pending) {
        files_read += 1;
        let path = c.new.or(c.old).map(|e| e.path.as_str()).unwrap_or("");
        let before = match file(c.old) {
            Some(_) => old_data.remove(path),
            None => Some(Vec::new()),
        };
        let after = match file(c.new) {
            Some(e) => guest_read(id, path, e.size_bytes, deadline)?,
            None => Some(Vec::new()),
        };
        bytes_read += before.as_ref().map_or(0, |b| b.len() as u64)
            + after.as_ref().map_or(0, |a| a.len() as u64);
        c.shown = match (before, after) {
            (Some(b), Some(a)) if is_text(&b) && is_text(&a) => {
                let t = text_patch(
                    path,
                    c.old.map(|_| std::str::from_utf8(&b).unwrap_or("")),
                    c.new.map(|_| std::str::from_utf8(&a).unwrap_or("")),
                );
                if t.is_empty() {
                    Shown::Plain
                } else {
                    texts.push(if keep_text { t } else { String::new() });
                    Shown::Text(texts.len() - 1)
                }
            }
            // Not text, or changed since the manifest (a read cut short).
            _ => Shown::Binary,
        };
    }
    let mut summary = DiffSummary::default();
    let mut entries = Vec::with_capacity(changes.len().min(DIFF_MAX_ENTRIES));
    let mut patch = String::new();
    let mut over_budget = 0u64;
    for c in &changes {
        let path = c.path();
        summary.count(c.status);
        let mut text = None;
        match c.shown {
            Shown::Text(i) => {
                summary.text_patched += 1;
                if keep_text {
                    let t = std::mem::take(&mut texts[i]);
                    patch.push_str(&t);
                    text = Some(t);
                }
            }
            Shown::Binary => {
                summary.non_text += 1;
                if keep_text {
                    let side = |e: Option<&FileEntry>, p: &str| match e {
                        Some(_) => format!("{p}/{path}"),
                        None => "/dev/null".into(),
                    };
                    patch.push_str(&format!(
                        "Binary files {} and {} differ\n",
                        side(c.old, "a"),
                        side(c.new, "b")
                    ));
                }
            }
            Shown::OverBudget => {
                summary.non_text += 1;
                over_budget += 1;
            }
            Shown::Plain | Shown::Pending => summary.non_text += 1,
        }
        if entries.len() == DIFF_MAX_ENTRIES {
            continue;
        }
        let e = c.new.or(c.old);
        entries.push(DiffEntry {
            path: path.to_string(),
            status: c.status,
            artifact_type: e.map(|e| e.artifact_type).unwrap_or(ArtifactType::File),
            binary: c.shown == Shown::Binary,
            size_bytes: e.map(|e| e.size_bytes),
            sha256: e.and_then(|e| e.sha256).map(|h| h.to_string()),
            text_patch: text,
            over_budget: c.shown == Shown::OverBudget,
        });
    }
    let omitted = changes.len() - entries.len();
    Ok(Diff {
        workspace_id: id.to_string(),
        changed: !changes.is_empty(),
        summary,
        truncated: over_budget > 0 || omitted > 0,
        budget: DiffBudget {
            max_bytes: budget.bytes,
            max_files: budget.files,
            bytes_read,
            files_read,
            files_over_budget: over_budget,
            max_entries: DIFF_MAX_ENTRIES,
            entries_omitted: omitted,
        },
        entries,
        patch,
        restarted_vm: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fe(path: &str, kind: ArtifactType) -> FileEntry {
        FileEntry {
            path: path.into(),
            artifact_type: kind,
            size_bytes: 0,
            link_target: None,
            mode: 0,
            sha256: None,
        }
    }

    #[test]
    fn only_empty_directories_count() {
        let e = [
            fe("a", ArtifactType::Directory),
            fe("a/f", ArtifactType::File),
            fe("b", ArtifactType::Directory),
        ];
        let s = significant(&e);
        let paths: Vec<&str> = s.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a/f", "b"]);
    }

    #[test]
    fn text_patches_round_trip_through_the_patch_parser() {
        let t = text_patch("src/x.txt", Some("a\nb\nc\n"), Some("a\nB\nc\nd"));
        assert!(t.starts_with("--- a/src/x.txt\n+++ b/src/x.txt\n"), "{t}");
        let fp = super::super::patch::parse(&t).unwrap();
        let got = super::super::patch::apply(&fp[0], Some("a\nb\nc\n")).unwrap();
        assert_eq!(got.as_deref(), Some("a\nB\nc\nd"));
        let added = text_patch("n", None, Some("x\n"));
        assert!(added.starts_with("--- /dev/null\n+++ b/n\n"), "{added}");
        let fp = super::super::patch::parse(&added).unwrap();
        assert_eq!(
            super::super::patch::apply(&fp[0], None).unwrap().as_deref(),
            Some("x\n")
        );
        assert!(!is_text(&[0, 1]));
        assert!(!is_text(&[0xff, 0xfe]));
    }
}
