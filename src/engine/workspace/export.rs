//! `workspace_export`: a file, symlink or directory from `/workspace` to a
//! host path.
//!
//! The guest is not trusted here: its tar stream is extracted on the host
//! under the same rules as a seed (no absolute or `..` members, no hard
//! links or devices, no write through a symlink, and no symlink that could
//! lead out, alone or chained with others: `beneath::check_symlink`).
//! Everything is written into a fresh temporary sibling of the destination
//! and renamed onto it only when complete, so a failed export leaves
//! nothing behind, and an existing destination is replaced only with
//! `overwrite` (and then only once the new copy is whole).

use super::lifecycle::{self, open_live};
use super::review::{self, Event};
use super::{guest_path, normalize_path, EngineError, Result};
use crate::engine::agent;
use pyro_guest::archive::member_path;
use pyro_guest::beneath::check_symlink;
use pyro_guest::bounded_tar::{limit_error, BoundedTar, TarLimits, MAX_TAR_META_BYTES};
use pyro_proto::{ArtifactType, ChunkReader, Request, Response};
use serde_json::{json, Value};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// Most bytes one export may carry from the guest (the tar stream: headers,
/// content and padding). It is the size of a workspace disk (8 GiB,
/// `scripts/build-image.sh`), so no honest export of what a guest stores is
/// refused, while a sparse file (`truncate -s 1T`) or a lying stream is
/// refused from its header instead of filling the host's disk.
pub const EXPORT_MAX_BYTES: u64 = 8 << 30;

/// Most entries one export may hold: the agent's own walk stops at this
/// many, so only a hostile stream (say, millions of empty files to use up
/// the host's inodes) reaches it.
pub const EXPORT_MAX_ENTRIES: u64 = pyro_proto::MAX_LISTING_ENTRIES as u64;

/// The limits of an export stream (see [`pyro_guest::bounded_tar`]).
pub const EXPORT_LIMITS: TarLimits = TarLimits {
    meta_bytes: MAX_TAR_META_BYTES,
    member_bytes: EXPORT_MAX_BYTES,
    total_bytes: EXPORT_MAX_BYTES,
    members: EXPORT_MAX_ENTRIES,
};

/// Extracts a tar into `root` (a fresh directory), refusing anything that
/// could land outside it or exceeds `limits` (checked from each header,
/// before its content is read), then reads the rest of `input` (still
/// within the limits). Returns (entries, bytes). On an error the rest of
/// the stream is left unread: the caller drops it.
pub fn extract_confined<R: Read>(input: R, root: &Path, limits: TarLimits) -> Result<(u64, u64)> {
    let mut ar = tar::Archive::new(BoundedTar::new(input, limits));
    let (mut n, mut bytes) = (0u64, 0u64);
    // One buffer for every file: content is copied through it.
    let mut buf = vec![0u8; pyro_proto::CHUNK_BYTES];
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
            bytes += write_sparse(&mut entry, &mut f, &mut buf)
                .map_err(|e| EngineError::io(format!("writing {}", target.display()), e))?;
            let _ = std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode));
        } else if t.is_symlink() {
            let link = entry
                .link_name()
                .ok()
                .flatten()
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default();
            // Judged within what is written (a single exported link sits at
            // its top, so it may not climb at all); its parent chain was
            // checked above (no member is written through a symlink), which
            // the rule relies on.
            if let Err(why) = check_symlink(&rel, &link) {
                return Err(EngineError::Guest(format!(
                    "export refused: symlink {name:?} -> {link:?} points outside the exported tree: {why}"
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
    // After the end-of-archive block: padding (bounded like the rest).
    ar.into_inner().drain().map_err(bad_stream)?;
    Ok((n, bytes))
}

fn bad_stream(e: std::io::Error) -> EngineError {
    if let Some(limit) = limit_error(&e) {
        return EngineError::Guest(format!(
            "export refused: {limit}; an export carries at most {EXPORT_MAX_BYTES} bytes and {EXPORT_MAX_ENTRIES} entries, and no sparse file is expanded past that: export a smaller path (nothing was written)"
        ));
    }
    EngineError::Guest(format!(
        "the export stream from the guest is not a valid archive: {e}"
    ))
}

/// Block size below which zeros are written rather than skipped: the
/// usual filesystem block, so a hole is only made where it saves space.
const HOLE_BLOCK: usize = 4096;

/// Copies `data` into the new file `f`, leaving holes where whole blocks
/// of zeros arrive (a sparse file in the guest stays sparse on the host
/// rather than turning into allocated zeros). Returns the bytes copied.
fn write_sparse<R: Read>(
    data: &mut R,
    f: &mut std::fs::File,
    buf: &mut [u8],
) -> std::io::Result<u64> {
    use std::io::{Seek, SeekFrom, Write};
    let mut total = 0u64;
    let mut pending_hole = false;
    loop {
        let n = match data.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        // Runs of data blocks are written, runs of zero blocks skipped.
        let mut at = 0;
        while at < n {
            let zero = |i: usize| buf[i..(i + HOLE_BLOCK).min(n)].iter().all(|b| *b == 0);
            let hole = zero(at);
            let mut end = at;
            while end < n && zero(end) == hole {
                end = (end + HOLE_BLOCK).min(n);
            }
            if hole {
                f.seek(SeekFrom::Current((end - at) as i64))?;
            } else {
                f.write_all(&buf[at..end])?;
            }
            pending_hole = hole;
            at = end;
        }
        total += n as u64;
    }
    if pending_hole {
        // A file that ends in a hole gets its length from set_len.
        f.set_len(total)?;
    }
    Ok(total)
}

/// Receives the export of workspace path `rel` into `stage/tree`: asks
/// the agent for the archive and extracts it under [`EXPORT_LIMITS`].
/// Returns (type, entries, bytes, the path made in `stage`).
pub(super) fn receive(
    id: &str,
    rel: &str,
    stage: &Path,
) -> Result<(ArtifactType, u64, u64, PathBuf)> {
    let mut s = agent::connect(&lifecycle::vsock(id), Duration::from_secs(120))
        .map_err(|e| lifecycle::lost_agent(id, "connecting to the guest agent", e))?;
    let req = Request::PullArchive {
        path: rel.to_string(),
    };
    pyro_proto::write_frame(&mut s, &req)
        .map_err(|e| lifecycle::lost_agent(id, "asking for the export", e))?;
    let kind = match pyro_proto::read_reply(&mut s, &req) {
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
    // Extraction reads the stream to its end (so the agent's final word
    // can be read) or fails; then the connection is dropped unread: a
    // refused stream (1 TB of a sparse file) is never drained.
    let mut chunks = ChunkReader::new(&mut s);
    let (n, bytes) = extract_confined(&mut chunks, &tree, EXPORT_LIMITS)?;
    if !chunks.is_done() {
        return Err(EngineError::Guest(
            "the export stream from the guest did not end where its archive did".into(),
        ));
    }
    match pyro_proto::read_reply(&mut s, &req) {
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
            guest_path(rel)
        )));
    }
    Ok((kind, n, bytes, made))
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
    let result = receive(id, &rel, &stage);
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
            // The review's chain: `up -> .` passes on its own, the climb
            // through it does not.
            (
                raw_tar(&[
                    ("up", Symlink, b"", "."),
                    ("leak", Symlink, b"", "up/up/../../SECRET"),
                ]),
                "'..' after a name",
            ),
            (
                raw_tar(&[("a", Symlink, b"", "."), ("b", Symlink, b"", "a/a/..")]),
                "'..' after a name",
            ),
            (
                raw_tar(&[("x", Symlink, b"", "y"), ("y", Symlink, b"", "..")]),
                "climbs above the tree",
            ),
            (raw_tar(&[("l", Symlink, b"", "/etc/passwd")]), "absolute"),
            (
                raw_tar(&[("f", Regular, b"1", ""), ("f", Regular, b"2", "")]),
                "twice",
            ),
        ];
        for (i, (bytes, want)) in cases.into_iter().enumerate() {
            let root = d.join(format!("r{i}"));
            std::fs::create_dir(&root).unwrap();
            let e = extract_confined(bytes.as_slice(), &root, EXPORT_LIMITS)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
        assert!(!d.join("evil").exists());
        // Nothing of the chain is left to follow.
        assert!(std::fs::symlink_metadata(d.join("r6/leak")).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// A tar header alone, claiming `size` bytes of `kind` content.
    fn header_only(name: &str, kind: tar::EntryType, size: u64) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    #[test]
    fn a_terabyte_sparse_file_is_refused_from_its_header_and_nothing_is_written() {
        let d = tmp("sparse");
        // What the guest sends for `truncate -s 1T big`: a header, then
        // zeros it would stream for hours. Only the header is here: the
        // refusal must not need the content.
        let bytes = header_only("big", tar::EntryType::Regular, 1 << 40);
        let e = extract_confined(bytes.as_slice(), &d, EXPORT_LIMITS)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"big\" is 1099511627776 bytes, over the 8589934592-byte limit"),
            "{e}"
        );
        assert!(e.contains("export a smaller path"), "{e}");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn export_limits_on_bytes_entries_and_metadata_are_enforced() {
        use tar::EntryType::*;
        let d = tmp("limits");
        // A 1 GiB long name claim: refused before anything is read.
        let bomb = header_only("././@LongLink", GNULongName, 1 << 30);
        let e = extract_confined(bomb.as_slice(), &d, EXPORT_LIMITS)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("GNU long name header of 1073741824 bytes"),
            "{e}"
        );
        // The running total and the member count, with small limits.
        let small = TarLimits {
            meta_bytes: MAX_TAR_META_BYTES,
            member_bytes: 1 << 20,
            total_bytes: 8 * 1024,
            members: 10,
        };
        let kb = vec![b'x'; 3000];
        let three = raw_tar(&[
            ("a", Regular, &kb, ""),
            ("b", Regular, &kb, ""),
            ("c", Regular, &kb, ""),
        ]);
        let root = d.join("total");
        std::fs::create_dir(&root).unwrap();
        let e = extract_confined(three.as_slice(), &root, small)
            .unwrap_err()
            .to_string();
        assert!(e.contains("over the 8192-byte limit"), "{e}");
        assert!(
            !root.join("c").exists(),
            "the member over the limit is not written"
        );
        let root = d.join("count");
        std::fs::create_dir(&root).unwrap();
        let small = TarLimits {
            total_bytes: 1 << 20,
            members: 2,
            ..small
        };
        let e = extract_confined(three.as_slice(), &root, small)
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than 2 members"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn runs_of_zeros_become_holes_and_the_content_is_intact() {
        use std::os::unix::fs::MetadataExt;
        let d = tmp("holes");
        let mut data = vec![0u8; 4 << 20];
        data[1_000_000..1_000_010].copy_from_slice(b"0123456789");
        let mut tail = data.clone();
        tail.extend_from_slice(b"end");
        let bytes = raw_tar(&[
            ("zeros", tar::EntryType::Regular, &data, ""),
            ("tail", tar::EntryType::Regular, &tail, ""),
        ]);
        let (n, written) = extract_confined(bytes.as_slice(), &d, EXPORT_LIMITS).unwrap();
        assert_eq!((n, written), (2, (data.len() + tail.len()) as u64));
        assert_eq!(std::fs::read(d.join("zeros")).unwrap(), data);
        assert_eq!(std::fs::read(d.join("tail")).unwrap(), tail);
        // Only the blocks around the data are allocated (where the
        // filesystem has holes at all).
        let m = std::fs::metadata(d.join("zeros")).unwrap();
        assert!(m.blocks() * 512 <= 64 * 1024, "{} blocks", m.blocks());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_single_exported_symlink_may_not_climb() {
        use tar::EntryType::*;
        let d = tmp("single");
        for (target, ok) in [
            ("x/y", true),
            (".", true),
            ("../x", false),
            ("a/../x", false),
        ] {
            let root = d.join(format!("r{}", target.len()));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir(&root).unwrap();
            let r = extract_confined(
                raw_tar(&[("l", Symlink, b"", target)]).as_slice(),
                &root,
                EXPORT_LIMITS,
            );
            assert_eq!(r.is_ok(), ok, "{target}: {r:?}");
        }
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
