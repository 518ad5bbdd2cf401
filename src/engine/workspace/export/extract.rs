//! Extracting an export's tar stream from the guest on the host. The
//! guest is not trusted: every member is checked before it is written (no
//! absolute or `..` names, no hard links or devices, no write through a
//! symlink, no symlink that could lead out, alone or chained with others:
//! `pyro_proto::path::check_symlink`), the stream's limits are checked
//! from each header before its content is read, and runs of zeros become
//! holes rather than allocated blocks.

use super::{EXPORT_MAX_BYTES, EXPORT_MAX_ENTRIES};
use crate::engine::{EngineError, Result};
use pyro_proto::archive::{link_target, member_path};
use pyro_proto::bounded_tar::{limit_error, BoundedTar, TarLimits};
use pyro_proto::path::check_symlink;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

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
            let link = link_target(&entry);
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

#[cfg(test)]
mod tests {
    use super::super::EXPORT_LIMITS;
    use super::*;
    use crate::engine::workspace::raw_tar::{header_only, raw_tar};
    use crate::temp_dir::TempDir;
    use pyro_proto::bounded_tar::MAX_TAR_META_BYTES;

    #[test]
    fn hostile_guest_streams_cannot_escape() {
        use tar::EntryType::*;
        let d = TempDir::new("export-hostile");
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
    }

    #[test]
    fn a_terabyte_sparse_file_is_refused_from_its_header_and_nothing_is_written() {
        let d = TempDir::new("export-sparse");
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
    }

    #[test]
    fn export_limits_on_bytes_entries_and_metadata_are_enforced() {
        use tar::EntryType::*;
        let d = TempDir::new("export-limits");
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
    }

    #[test]
    fn runs_of_zeros_become_holes_and_the_content_is_intact() {
        use std::os::unix::fs::MetadataExt;
        let d = TempDir::new("export-holes");
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
    }

    #[test]
    fn a_single_exported_symlink_may_not_climb() {
        use tar::EntryType::*;
        let d = TempDir::new("export-single");
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
    }
}
