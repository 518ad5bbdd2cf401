//! `workspace_export`: a file, symlink or directory from `/workspace` to a
//! host path.
//!
//! The guest is not trusted here: its tar stream is extracted on the host
//! under the same rules as a seed (no absolute or `..` members, no hard
//! links or devices, no symlink leading out, no write through a symlink).
//! Everything is written into a fresh temporary sibling of the destination
//! and renamed onto it only when complete, so a failed export leaves
//! nothing behind, and an existing destination is replaced only with
//! `overwrite` (and then only once the new copy is whole).

use super::lifecycle::{self, open_live};
use super::review::{self, Event};
use super::{guest_path, normalize_path, EngineError, Result};
use crate::engine::agent;
use pyro_guest::archive::member_path;
use pyro_guest::beneath::symlink_stays_inside;
use pyro_proto::{ArtifactType, ChunkReader, Request, Response};
use serde_json::{json, Value};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn resolve_output(output_path: &str) -> Result<PathBuf> {
    let t = output_path.trim();
    if t.is_empty() {
        return Err(EngineError::Invalid("output_path must not be empty".into()));
    }
    let p = PathBuf::from(t);
    let p = if p.is_absolute() {
        p
    } else {
        std::env::current_dir()
            .map_err(|e| EngineError::io("finding the current directory", e))?
            .join(p)
    };
    let name = p.file_name().ok_or_else(|| {
        EngineError::Invalid(format!("output_path {t:?} must name a file or directory"))
    })?;
    let parent = p.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent).map_err(|e| {
        EngineError::Invalid(format!(
            "cannot create the directory of output_path {t:?}: {e}"
        ))
    })?;
    let parent = std::fs::canonicalize(parent)
        .map_err(|e| EngineError::io(format!("resolving {}", parent.display()), e))?;
    Ok(parent.join(name))
}

/// Extracts a tar into `root` (a fresh directory), refusing anything that
/// could land outside it. Returns (entries, bytes).
pub fn extract_confined<R: Read>(input: R, root: &Path, single: bool) -> Result<(u64, u64)> {
    let mut ar = tar::Archive::new(input);
    let (mut n, mut bytes) = (0u64, 0u64);
    for entry in ar.entries().map_err(bad_stream)? {
        let mut entry = entry.map_err(bad_stream)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let rel =
            member_path(&name).map_err(|e| EngineError::Guest(format!("export refused: {e}")))?;
        if rel.is_empty() {
            continue;
        }
        let target = root.join(&rel);
        // No member may pass through a symlink made by an earlier one.
        let mut cur = root.to_path_buf();
        let comps: Vec<&str> = rel.split('/').collect();
        for c in &comps[..comps.len() - 1] {
            cur.push(c);
            match std::fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(EngineError::Guest(format!(
                        "export refused: member {name:?} would be written through the symlink {c:?}"
                    )))
                }
                Ok(m) if !m.is_dir() => {
                    return Err(EngineError::Guest(format!(
                        "export refused: member {name:?} lies under a non-directory"
                    )))
                }
                Ok(_) => {}
                Err(_) => {
                    std::fs::create_dir(&cur)
                        .map_err(|e| EngineError::io(format!("creating {}", cur.display()), e))?;
                }
            }
        }
        if std::fs::symlink_metadata(&target).is_ok_and(|m| !m.is_dir()) {
            return Err(EngineError::Guest(format!(
                "export refused: member {name:?} appears twice"
            )));
        }
        let t = entry.header().entry_type();
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        if t.is_dir() {
            if !target.is_dir() {
                std::fs::create_dir(&target)
                    .map_err(|e| EngineError::io(format!("creating {}", target.display()), e))?;
            }
            let _ =
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode | 0o700));
        } else if t.is_file() || t == tar::EntryType::Continuous {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&target)
                .map_err(|e| EngineError::io(format!("creating {}", target.display()), e))?;
            bytes += std::io::copy(&mut entry, &mut f)
                .map_err(|e| EngineError::io(format!("writing {}", target.display()), e))?;
            let _ = std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode));
        } else if t.is_symlink() {
            let link = entry
                .link_name()
                .ok()
                .flatten()
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !single && !symlink_stays_inside(&rel, &link) {
                return Err(EngineError::Guest(format!(
                    "export refused: symlink {name:?} -> {link:?} points outside the exported tree"
                )));
            }
            if single && (link.starts_with('/') || link.is_empty()) {
                return Err(EngineError::Guest(format!(
                    "export refused: symlink {name:?} has the absolute target {link:?}"
                )));
            }
            std::os::unix::fs::symlink(&link, &target)
                .map_err(|e| EngineError::io(format!("creating {}", target.display()), e))?;
        } else {
            return Err(EngineError::Guest(format!(
                "export refused: member {name:?} is not a file, directory or symlink"
            )));
        }
        n += 1;
    }
    Ok((n, bytes))
}

fn bad_stream(e: std::io::Error) -> EngineError {
    EngineError::Guest(format!(
        "the export stream from the guest is not a valid archive: {e}"
    ))
}

/// Copies workspace `path` to host `output_path`.
pub fn export(id: &str, path: &str, output_path: &str, overwrite: bool) -> Result<Value> {
    let rel = normalize_path(path)?;
    let out = resolve_output(output_path)?;
    let exists = std::fs::symlink_metadata(&out).is_ok();
    if exists && !overwrite {
        return Err(EngineError::Invalid(format!(
            "output_path {} already exists; choose a new path or pass overwrite to replace it",
            out.display()
        )));
    }
    let mut live = open_live(id, "export")?;
    let parent = out.parent().unwrap_or(Path::new("/")).to_path_buf();
    let stage = parent.join(format!(
        ".{}.pyro-export-{}",
        out.file_name().unwrap_or_default().to_string_lossy(),
        crate::engine::paths::random_id(4)
    ));
    std::fs::create_dir(&stage)
        .map_err(|e| EngineError::io(format!("creating {}", stage.display()), e))?;
    let result = (|| -> Result<(ArtifactType, u64, u64, PathBuf)> {
        let deadline = Instant::now() + agent::TRANSFER_DEADLINE;
        let mut s = agent::open(&lifecycle::vsock(id), deadline)
            .map_err(|e| lifecycle::lost_agent(id, "connecting to the guest agent", e))?;
        pyro_proto::write_frame(&mut s, &Request::PullArchive { path: rel.clone() })
            .map_err(|e| lifecycle::lost_agent(id, "asking for the export", e))?;
        let kind = match pyro_proto::read_frame::<_, Response>(&mut s) {
            Ok(Some(Response::ArchiveStart { artifact_type })) => artifact_type,
            Ok(Some(Response::Error { message })) => return Err(lifecycle::agent_error(message)),
            Ok(other) => {
                return Err(EngineError::Guest(format!(
                    "unexpected agent answer to an export: {other:?}"
                )))
            }
            Err(e) => return Err(lifecycle::lost_agent(id, "starting the export", e)),
        };
        let single = kind != ArtifactType::Directory;
        let tree = stage.join("tree");
        std::fs::create_dir(&tree)
            .map_err(|e| EngineError::io(format!("creating {}", tree.display()), e))?;
        let mut chunks = ChunkReader::new(&mut s);
        let extracted = extract_confined(&mut chunks, &tree, single);
        // Read to the end so the agent's final word can be read.
        let drained = chunks.drain();
        let (n, bytes) = extracted?;
        drained.map_err(|e| lifecycle::lost_agent(id, "receiving the export", e))?;
        match pyro_proto::read_frame::<_, Response>(&mut s) {
            Ok(Some(Response::ArchiveDone { .. })) => {}
            Ok(Some(Response::Error { message })) => return Err(lifecycle::agent_error(message)),
            Ok(other) => {
                return Err(EngineError::Guest(format!(
                    "unexpected end of an export: {other:?}"
                )))
            }
            Err(e) => return Err(lifecycle::lost_agent(id, "finishing the export", e)),
        }
        let made = if single {
            let name = rel.rsplit('/').next().unwrap_or("");
            tree.join(name)
        } else {
            tree
        };
        if std::fs::symlink_metadata(&made).is_err() {
            return Err(EngineError::Guest(format!(
                "the export of {} arrived empty",
                guest_path(&rel)
            )));
        }
        Ok((kind, n, bytes, made))
    })();
    let outcome = result.and_then(|(kind, n, bytes, made)| {
        if exists {
            // Replace: move the old one aside, the new one in, drop the old.
            let old = stage.join("old");
            std::fs::rename(&out, &old)
                .map_err(|e| EngineError::io(format!("moving aside {}", out.display()), e))?;
            if let Err(e) = std::fs::rename(&made, &out) {
                let _ = std::fs::rename(&old, &out);
                return Err(EngineError::io(format!("writing {}", out.display()), e));
            }
        } else {
            std::fs::rename(&made, &out)
                .map_err(|e| EngineError::io(format!("writing {}", out.display()), e))?;
        }
        Ok((kind, n, bytes))
    });
    let _ = std::fs::remove_dir_all(&stage);
    let (kind, n, bytes) = outcome?;
    review::append(
        id,
        &Event::new("export")
            .with("path", guest_path(&rel))
            .with("output_path", out.to_string_lossy().into_owned())
            .with("artifact_type", kind.as_str())
            .with("bytes_written", bytes),
    );
    live.touch()?;
    Ok(live.annotate(json!({
        "workspace_id": id,
        "workspace_path": guest_path(&rel),
        "output_path": out,
        "artifact_type": kind.as_str(),
        "entry_count": n,
        "bytes_written": bytes,
        "overwrote": exists,
        "execution_mode": "guest_vsock",
    })))
}

#[cfg(test)]
#[path = "../../../tests/support/raw_tar.rs"]
mod raw_tar;

#[cfg(test)]
mod tests {
    use super::raw_tar::raw_tar;
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "pyro-export-{tag}-{}",
            crate::engine::paths::random_id(4)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn hostile_guest_streams_cannot_escape() {
        use tar::EntryType::*;
        let d = tmp("hostile");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (raw_tar(&[("../evil", Regular, b"x", "")]), "'..'"),
            (raw_tar(&[("/tmp/evil", Regular, b"x", "")]), "absolute"),
            (
                raw_tar(&[("l", Symlink, b"", "../../etc")]),
                "points outside",
            ),
            (
                raw_tar(&[("l", Symlink, b"", "."), ("l/x", Regular, b"x", "")]),
                "through the symlink",
            ),
            (raw_tar(&[("h", Link, b"", "x")]), "not a file"),
            (
                raw_tar(&[("f", Regular, b"1", ""), ("f", Regular, b"2", "")]),
                "twice",
            ),
        ];
        for (i, (bytes, want)) in cases.into_iter().enumerate() {
            let root = d.join(format!("r{i}"));
            std::fs::create_dir(&root).unwrap();
            let e = extract_confined(bytes.as_slice(), &root, false)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
        assert!(!d.join("evil").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn output_paths_get_their_parents() {
        let d = tmp("out");
        let p = resolve_output(d.join("new/dir/file").to_str().unwrap()).unwrap();
        assert!(p.parent().unwrap().is_dir());
        std::fs::write(d.join("plain"), "x").unwrap();
        assert!(resolve_output(d.join("plain/file").to_str().unwrap()).is_err());
        assert_eq!(
            resolve_output(d.join("x.txt").to_str().unwrap()).unwrap(),
            std::fs::canonicalize(&d).unwrap().join("x.txt")
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
