//! `/workspace` against its baseline (the tree right after seeding).
//!
//! The agent sends a manifest of the current tree with a SHA-256 per file
//! (cached in the guest by inode and times, so an unchanged tree is cheap);
//! the baseline's manifest was written at creation. Only paths whose type,
//! target or hash differ are fetched: the current content from the guest,
//! the old one from `baseline.tar`. Text files get a unified diff
//! (`similar`, Myers with a time bound); binary ones are flagged. Like the
//! reference, directories count only when empty.

use super::lifecycle;
use super::store;
use super::{EngineError, Result, FILE_MAX_BYTES};
use crate::engine::agent;
use pyro_guest::bounded_tar::{BoundedTar, TarLimits};
use pyro_proto::{base64_decode, ArtifactType, FileEntry, Request, Response};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// Files bigger than this are compared by hash only (no text patch).
pub const TEXT_DIFF_MAX_BYTES: u64 = FILE_MAX_BYTES;

/// Non-directories plus empty directories, by path (borrowed: a manifest
/// may hold 200,000 entries).
fn significant(entries: &[FileEntry]) -> BTreeMap<&str, &FileEntry> {
    let mut parents = BTreeSet::new();
    for e in entries {
        let mut p = e.path.as_str();
        while let Some((head, _)) = p.rsplit_once('/') {
            if !parents.insert(head) {
                // Its own parents are in already.
                break;
            }
            p = head;
        }
    }
    entries
        .iter()
        .filter(|e| {
            e.artifact_type != ArtifactType::Directory || !parents.contains(e.path.as_str())
        })
        .map(|e| (e.path.as_str(), e))
        .collect()
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

fn guest_manifest(id: &str) -> Result<Vec<FileEntry>> {
    match agent::call(
        &lifecycle::vsock(id),
        &Request::Manifest {
            path: String::new(),
        },
        Duration::from_secs(600),
    ) {
        Ok(Response::Manifest { entries }) => Ok(entries),
        Ok(Response::Error { message }) => Err(lifecycle::agent_error(message)),
        Ok(other) => Err(EngineError::Guest(format!(
            "unexpected agent answer to a manifest request: {other:?}"
        ))),
        Err(e) => Err(lifecycle::lost_agent(
            id,
            "reading the workspace manifest",
            e,
        )),
    }
}

/// Whole content of a guest file, if it is at most `max` bytes.
fn guest_read(id: &str, rel: &str, max: u64) -> Result<Option<Vec<u8>>> {
    match agent::call(
        &lifecycle::vsock(id),
        &Request::ReadFile {
            path: rel.to_string(),
            max_bytes: max,
        },
        Duration::from_secs(120),
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
        Ok(Response::Error { message }) => Err(lifecycle::agent_error(message)),
        Ok(other) => Err(EngineError::Guest(format!(
            "unexpected agent answer to a read: {other:?}"
        ))),
        Err(e) => Err(lifecycle::lost_agent(id, "reading a file", e)),
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
/// to make text patches. Each text file is at most 1 MiB, so this covers
/// a few large edits or hundreds of small ones; beyond it, changed files
/// are listed with their hash and size only and the result says
/// `truncated`. It bounds the host's memory (contents and patch text) and
/// what is sent to the client, which gains nothing from more.
pub const DIFF_MAX_BYTES: u64 = 8 * 1024 * 1024;

/// Most files one diff reads to make text patches (each costs an agent
/// round trip); beyond it, as for [`DIFF_MAX_BYTES`].
pub const DIFF_MAX_FILES: usize = 1000;

/// Most changed paths one diff lists. A guest makes 200,000 files with
/// one shell loop; listing them all would cost the host hundreds of MiB
/// as JSON values and send the client a line of tens of MiB. The counts in
/// `summary` always cover every change; past this many, entries are left
/// out and the result says `truncated`.
pub const DIFF_MAX_ENTRIES: usize = 10_000;

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

/// How one changed path is shown.
enum Shown {
    /// Not a file on both sides, or a type change: no content involved.
    Plain,
    /// A side is over [`TEXT_DIFF_MAX_BYTES`] or not text.
    Binary,
    /// A unified diff.
    Text(String),
    /// Text-sized, but the budget was spent: hash and size only.
    OverBudget,
}

/// The diff of a live workspace against its baseline. With `keep_text`
/// false the patches are made (to count them) but not kept: the summary
/// needs only the list.
pub fn diff(id: &str, keep_text: bool) -> Result<Value> {
    diff_within(id, keep_text, Budget::DEFAULT)
}

/// `e` when it is a regular file.
fn file(e: Option<&FileEntry>) -> Option<&FileEntry> {
    e.filter(|e| e.artifact_type == ArtifactType::File)
}

/// [`diff`] within `budget`.
pub fn diff_within(id: &str, keep_text: bool, budget: Budget) -> Result<Value> {
    let baseline = load_baseline(id)?;
    let current = guest_manifest(id)?;
    let old = significant(&baseline);
    let new = significant(&current);
    let paths: BTreeSet<&str> = old.keys().chain(new.keys()).copied().collect();
    let mut changes: Vec<(&str, &'static str, Option<&FileEntry>, Option<&FileEntry>)> = Vec::new();
    for p in paths {
        let (o, n) = (old.get(p).copied(), new.get(p).copied());
        let status = match (o, n) {
            (None, Some(_)) => "added",
            (Some(_), None) => "deleted",
            (Some(a), Some(b)) if a.artifact_type != b.artifact_type => "type_changed",
            (Some(a), Some(b)) => {
                let same = match a.artifact_type {
                    ArtifactType::File => a.sha256 == b.sha256,
                    ArtifactType::Symlink => a.link_target == b.link_target,
                    _ => true,
                };
                if same {
                    continue;
                }
                "modified"
            }
            (None, None) => continue,
        };
        changes.push((p, status, o, n));
    }
    // Which files get a text diff: in path order, while the budget lasts.
    // Sizes are the manifests' (the guest's may lie: its reads are capped
    // at the size it claimed, so the budget holds whatever it sends).
    let mut left = budget;
    let mut shown: Vec<Shown> = Vec::with_capacity(changes.len());
    for (_, status, o, n) in &changes {
        let (fo, fn_) = (file(*o), file(*n));
        shown.push(
            if *status == "type_changed" || (fo.is_none() && fn_.is_none()) {
                Shown::Plain
            } else if fo.is_some_and(|e| e.size_bytes > TEXT_DIFF_MAX_BYTES)
                || fn_.is_some_and(|e| e.size_bytes > TEXT_DIFF_MAX_BYTES)
            {
                Shown::Binary
            } else {
                let need = fo.map_or(0, |e| e.size_bytes) + fn_.map_or(0, |e| e.size_bytes);
                if left.take(need) {
                    Shown::Text(String::new())
                } else {
                    Shown::OverBudget
                }
            },
        );
    }
    // Old contents of the chosen files, from the baseline archive.
    let want_old: BTreeSet<String> = changes
        .iter()
        .zip(&shown)
        .filter(|((_, _, o, _), s)| matches!(s, Shown::Text(_)) && file(*o).is_some())
        .map(|((p, ..), _)| p.to_string())
        .collect();
    let mut old_data = read_from_tar(&store::dir(id).join("baseline.tar"), &want_old)?;
    let mut bytes_read = 0u64;
    let mut files_read = 0usize;
    for ((path, _, o, n), s) in changes.iter().zip(shown.iter_mut()) {
        if !matches!(s, Shown::Text(_)) {
            continue;
        }
        files_read += 1;
        let before = match file(*o) {
            Some(_) => old_data.remove(*path),
            None => Some(Vec::new()),
        };
        let after = match file(*n) {
            Some(e) => guest_read(id, path, e.size_bytes)?,
            None => Some(Vec::new()),
        };
        bytes_read += before.as_ref().map_or(0, |b| b.len() as u64)
            + after.as_ref().map_or(0, |a| a.len() as u64);
        *s = match (before, after) {
            (Some(b), Some(a)) if is_text(&b) && is_text(&a) => Shown::Text(text_patch(
                path,
                o.map(|_| std::str::from_utf8(&b).unwrap_or("")),
                n.map(|_| std::str::from_utf8(&a).unwrap_or("")),
            )),
            // Not text, or changed since the manifest (a read cut short).
            _ => Shown::Binary,
        };
    }
    let mut summary: BTreeMap<&str, u64> = [
        "total",
        "added",
        "modified",
        "deleted",
        "type_changed",
        "text_patched",
        "non_text",
    ]
    .into_iter()
    .map(|k| (k, 0))
    .collect();
    let mut entries = Vec::with_capacity(changes.len().min(DIFF_MAX_ENTRIES));
    let mut patch = String::new();
    let mut over_budget = 0u64;
    for ((path, status, o, n), s) in changes.iter().zip(shown) {
        let kind = n
            .or(*o)
            .map(|e| e.artifact_type)
            .unwrap_or(ArtifactType::File);
        let side = |e: &Option<&FileEntry>, p: &str| {
            if e.is_some() {
                format!("{p}/{path}")
            } else {
                "/dev/null".into()
            }
        };
        *summary.get_mut("total").unwrap() += 1;
        *summary.get_mut(status).unwrap() += 1;
        let binary = matches!(s, Shown::Binary);
        let skipped = matches!(s, Shown::OverBudget);
        let mut text = None;
        match s {
            Shown::Text(t) if !t.is_empty() => {
                *summary.get_mut("text_patched").unwrap() += 1;
                if keep_text {
                    patch.push_str(&t);
                    text = Some(t);
                }
            }
            Shown::Binary => {
                *summary.get_mut("non_text").unwrap() += 1;
                if keep_text {
                    patch.push_str(&format!(
                        "Binary files {} and {} differ\n",
                        side(o, "a"),
                        side(n, "b")
                    ));
                }
            }
            Shown::OverBudget => {
                *summary.get_mut("non_text").unwrap() += 1;
                over_budget += 1;
            }
            Shown::Text(_) | Shown::Plain => *summary.get_mut("non_text").unwrap() += 1,
        }
        if entries.len() == DIFF_MAX_ENTRIES {
            continue;
        }
        let mut e = json!({
            "path": path,
            "status": status,
            "artifact_type": kind.as_str(),
            "binary": binary,
            "size_bytes": n.or(*o).map(|e| e.size_bytes),
            "sha256": n.or(*o).and_then(|e| e.sha256.clone()),
            "text_patch": text,
        });
        if skipped {
            e["over_budget"] = json!(true);
        }
        entries.push(e);
    }
    let omitted = changes.len() - entries.len();
    let truncated = over_budget > 0 || omitted > 0;
    Ok(json!({
        "workspace_id": id,
        "changed": !changes.is_empty(),
        "summary": summary,
        "entries": entries,
        "patch": patch,
        "truncated": truncated,
        "budget": {
            "max_bytes": budget.bytes,
            "max_files": budget.files,
            "bytes_read": bytes_read,
            "files_read": files_read,
            "files_over_budget": over_budget,
            "max_entries": DIFF_MAX_ENTRIES,
            "entries_omitted": omitted,
        },
    }))
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
        assert_eq!(s.keys().copied().collect::<Vec<_>>(), ["a/f", "b"]);
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
