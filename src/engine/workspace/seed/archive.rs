//! Planning a `.tar`/`.tar.gz`/`.tgz` archive: its members read through the
//! bounded tar reader and checked by the protocol's member and symlink
//! rules (no hard links or special members, nothing under a symlink
//! member, no member twice); the plan's writer reads it again, in order.

use super::{bad_seed, Item, Kind};
use crate::engine::{EngineError, Result};
use pyro_proto::archive::{link_target, member_path};
use pyro_proto::bounded_tar::{BoundedTar, TarLimits};
use pyro_proto::path::check_symlink;
use std::io::{self, Read};
use std::path::Path;

pub(super) fn archive_err(path: &Path, e: io::Error) -> EngineError {
    bad_seed(format!("cannot read archive {}: {e}", path.display()))
}

/// The archive's tar stream, with long names and PAX members capped
/// (`bounded_tar`): the tar crate would read them whole into memory.
pub(super) fn open_archive(path: &Path, gzip: bool) -> Result<Box<dyn Read>> {
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
pub(super) fn skipped_member<R: Read>(e: &tar::Entry<R>) -> bool {
    let t = e.header().entry_type();
    if t.is_pax_global_extensions() || t.is_pax_local_extensions() {
        return true;
    }
    let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
    t.is_dir() && matches!(member_path(&name).as_deref(), Ok(""))
}

pub(super) fn plan_archive(path: &Path, gzip: bool) -> Result<Vec<Item>> {
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

#[cfg(test)]
mod tests {
    use super::super::plan_path;
    use super::super::tests::{names, tmp};
    use crate::engine::workspace::raw_tar::raw_tar;
    use std::io::{self, Write};

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
    fn archive_tricks_are_refused_with_the_reason() {
        let d = tmp("bad-archive");
        // Archive tricks.
        let mk = |name: &str, kind: tar::EntryType, link: &str| raw_tar(&[(name, kind, b"", link)]);
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
    fn archive_seeds_refuse_the_symlink_chain_and_members_under_links() {
        let d = tmp("chain-archive");
        // The directory test's chains, in archives, and a member under a link.
        // Members without content: (name, type, link target).
        let tar_of = |members: &[(&str, tar::EntryType, &str)]| {
            let members: Vec<_> = members
                .iter()
                .map(|&(name, kind, link)| (name, kind, &b""[..], link))
                .collect();
            raw_tar(&members)
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
}
