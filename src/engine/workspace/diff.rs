//! `/workspace` against its baseline (the tree right after seeding).
//!
//! The agent sends a manifest of the current tree with a SHA-256 per file
//! (cached in the guest by inode and times, so an unchanged tree is cheap);
//! the baseline's manifest was written at creation. Only paths whose type,
//! target or hash differ are fetched: the current content from the guest,
//! the old one from `baseline.tar`. Text files get a unified diff
//! (`similar`, Myers with a time bound); binary ones are flagged. Like the
//! reference, directories count only when empty.

use super::lifecycle::{self, Live};
use super::store;
use super::{EngineError, Result, FILE_MAX_BYTES};
use crate::engine::agent;
use pyro_proto::{base64_decode, ArtifactType, FileEntry, Request, Response};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

/// Files bigger than this are compared by hash only (no text patch).
pub const TEXT_DIFF_MAX_BYTES: u64 = FILE_MAX_BYTES;

/// Non-directories plus empty directories, by path.
fn significant(entries: &[FileEntry]) -> BTreeMap<String, &FileEntry> {
    let mut parents = BTreeSet::new();
    for e in entries {
        let mut p = e.path.as_str();
        while let Some((head, _)) = p.rsplit_once('/') {
            parents.insert(head.to_string());
            p = head;
        }
    }
    entries
        .iter()
        .filter(|e| e.artifact_type != ArtifactType::Directory || !parents.contains(&e.path))
        .map(|e| (e.path.clone(), e))
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
    let mut ar = tar::Archive::new(std::io::BufReader::new(f));
    for entry in ar
        .entries()
        .map_err(|e| EngineError::io("reading the baseline", e))?
    {
        let mut entry = entry.map_err(|e| EngineError::io("reading the baseline", e))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = name.trim_end_matches('/').to_string();
        if wanted.contains(&name) {
            let mut data = Vec::new();
            entry
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
        &lifecycle::vsock(id),
        &Request::Manifest {
            path: String::new(),
        },
        deadline,
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
fn guest_read(id: &str, rel: &str, max: u64, deadline: Instant) -> Result<Option<Vec<u8>>> {
    match agent::request(
        &lifecycle::vsock(id),
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
            Ok(Some(base64_decode(&data_b64).ok_or_else(|| {
                EngineError::Guest("the agent sent invalid base64".into())
            })?))
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

/// The diff of a live workspace against its baseline.
pub fn diff(live: &Live) -> Result<Value> {
    let id = live.id().to_string();
    let baseline = load_baseline(&id)?;
    // One deadline for the manifest and every file read.
    let deadline = Instant::now() + agent::DIFF_DEADLINE;
    let current = guest_manifest(&id, deadline)?;
    let old = significant(&baseline);
    let new = significant(&current);
    let paths: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut changes: Vec<(String, &'static str, Option<&FileEntry>, Option<&FileEntry>)> =
        Vec::new();
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
        changes.push((p.clone(), status, o, n));
    }
    // Old contents of text candidates, from the baseline archive.
    let want_old: BTreeSet<String> = changes
        .iter()
        .filter(|(_, _, o, _)| {
            o.is_some_and(|e| {
                e.artifact_type == ArtifactType::File && e.size_bytes <= TEXT_DIFF_MAX_BYTES
            })
        })
        .map(|(p, ..)| p.clone())
        .collect();
    let old_data = read_from_tar(&store::dir(&id).join("baseline.tar"), &want_old)?;
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
    let mut entries = Vec::new();
    let mut patch = String::new();
    for (path, status, o, n) in &changes {
        let kind = n
            .or(*o)
            .map(|e| e.artifact_type)
            .unwrap_or(ArtifactType::File);
        let file_side =
            |e: &Option<&FileEntry>| e.is_some_and(|e| e.artifact_type == ArtifactType::File);
        let mut binary = false;
        let mut text = None;
        if *status != "type_changed" && (file_side(o) || file_side(n)) {
            let before = match o {
                Some(_) => old_data.get(path).cloned(),
                None => Some(Vec::new()),
            };
            let after = match n {
                Some(e) if e.size_bytes <= TEXT_DIFF_MAX_BYTES => {
                    guest_read(&id, path, TEXT_DIFF_MAX_BYTES, deadline)?
                }
                Some(_) => None,
                None => Some(Vec::new()),
            };
            match (before, after) {
                (Some(b), Some(a)) if is_text(&b) && is_text(&a) => {
                    let t = text_patch(
                        path,
                        o.map(|_| std::str::from_utf8(&b).unwrap_or("")),
                        n.map(|_| std::str::from_utf8(&a).unwrap_or("")),
                    );
                    if !t.is_empty() {
                        text = Some(t);
                    }
                }
                (Some(b), Some(a)) => binary = !is_text(&b) || !is_text(&a),
                // Too large to diff as text: judged by hash only.
                _ => binary = true,
            }
            if binary {
                patch.push_str(&format!(
                    "Binary files {} and {} differ\n",
                    if o.is_some() {
                        format!("a/{path}")
                    } else {
                        "/dev/null".into()
                    },
                    if n.is_some() {
                        format!("b/{path}")
                    } else {
                        "/dev/null".into()
                    },
                ));
            }
        }
        *summary.get_mut("total").unwrap() += 1;
        *summary.get_mut(status).unwrap() += 1;
        if let Some(t) = &text {
            patch.push_str(t);
            *summary.get_mut("text_patched").unwrap() += 1;
        } else {
            *summary.get_mut("non_text").unwrap() += 1;
        }
        entries.push(json!({
            "path": path,
            "status": status,
            "artifact_type": kind.as_str(),
            "binary": binary,
            "size_bytes": n.or(*o).map(|e| e.size_bytes),
            "text_patch": text,
        }));
    }
    Ok(json!({
        "workspace_id": id,
        "changed": !entries.is_empty(),
        "summary": summary,
        "entries": entries,
        "patch": patch,
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
        assert_eq!(s.keys().collect::<Vec<_>>(), ["a/f", "b"]);
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
