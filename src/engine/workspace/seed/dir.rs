//! Planning a host directory: walked without following symlinks (or only
//! the files Git lists), each entry checked: files, directories and
//! symlinks that stay inside the tree, nothing else.

use super::{bad_seed, Item, Kind};
use crate::engine::{EngineError, Result};
use pyro_proto::path::check_symlink;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

pub(super) fn describe_file_type(m: &std::fs::Metadata) -> &'static str {
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

/// Walks `root` (only `only` when given: Git's file list), refusing what
/// cannot be seeded. Never follows symlinks.
pub(super) fn plan_dir(root: &Path, only: Option<&[String]>) -> Result<Vec<Item>> {
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

#[cfg(test)]
mod tests {
    use super::super::plan_path;
    use super::super::tests::tmp;

    #[test]
    fn directories_with_special_files_or_links_out_are_refused() {
        let d = tmp("bad-dir");
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
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn directory_seeds_refuse_the_symlink_chain_out_of_the_tree() {
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
        std::fs::remove_dir_all(&d).unwrap();
    }
}
