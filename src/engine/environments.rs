//! The environment catalog and the local store of installed environments.
//!
//! An installed environment is a directory `environments/<slug>/` holding
//! `vmlinux`, `rootfs.ext4` (shared read-only by every VM), `scratch.ext4`
//! (an empty template each VM's writable disk is copied from) and
//! `environment.json`.

use super::paths;
use super::{EngineError, Result};
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

pub const CATALOG_VERSION: &str = "4.3.0";

pub struct CatalogEntry {
    pub name: &'static str,
    pub version: &'static str,
    pub description: &'static str,
    pub default_packages: &'static [&'static str],
}

pub const CATALOG: &[CatalogEntry] = &[
    CatalogEntry {
        name: "debian:12",
        version: "1.0.0",
        description: "Debian 12 environment with Git preinstalled for common agent workflows.",
        default_packages: &[
            "bash",
            "coreutils",
            "git",
            "curl",
            "ca-certificates",
            "python3",
        ],
    },
    CatalogEntry {
        name: "debian:12-base",
        version: "1.0.0",
        description: "Minimal Debian 12 environment for shell and core Unix tooling.",
        default_packages: &["bash", "coreutils"],
    },
    CatalogEntry {
        name: "debian:12-build",
        version: "1.0.0",
        description: "Debian 12 environment with Git and common build tools preinstalled.",
        default_packages: &[
            "bash",
            "coreutils",
            "git",
            "gcc",
            "make",
            "cmake",
            "python3",
        ],
    },
];

pub fn lookup(name: &str) -> Result<&'static CatalogEntry> {
    CATALOG.iter().find(|e| e.name == name).ok_or_else(|| {
        let names: Vec<_> = CATALOG.iter().map(|e| e.name).collect();
        EngineError::NotFound(format!(
            "unknown environment {name:?}; available: {}",
            names.join(", ")
        ))
    })
}

pub fn slug(name: &str) -> String {
    name.replace([':', '/'], "-")
}

pub fn install_dir(name: &str) -> PathBuf {
    paths::environments().join(slug(name))
}

/// Files of one installed environment.
#[derive(Debug, Clone)]
pub struct Installed {
    pub kernel: PathBuf,
    pub rootfs: PathBuf,
    pub scratch: PathBuf,
    pub manifest: Value,
}

const FILES: [&str; 4] = ["vmlinux", "rootfs.ext4", "scratch.ext4", "environment.json"];

fn is_complete(dir: &Path) -> bool {
    FILES.iter().all(|f| dir.join(f).is_file())
}

pub fn installed(name: &str) -> Result<Installed> {
    let dir = install_dir(lookup(name)?.name);
    if !is_complete(&dir) {
        return Err(EngineError::NotFound(format!(
            "environment {name} is not installed (looked in {}); run `pyro env pull {name}`, or `make envs` in a pyro checkout",
            dir.display()
        )));
    }
    let manifest = std::fs::read(dir.join("environment.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    Ok(Installed {
        kernel: dir.join("vmlinux"),
        rootfs: dir.join("rootfs.ext4"),
        scratch: dir.join("scratch.ext4"),
        manifest,
    })
}

/// One environment of the catalog, and whether it is installed here.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvironmentInfo {
    pub name: &'static str,
    pub version: &'static str,
    pub description: &'static str,
    pub default_packages: &'static [&'static str],
    pub distribution: &'static str,
    pub distribution_version: &'static str,
    pub installed: bool,
    /// Where it is installed (null when it is not).
    pub install_dir: Option<PathBuf>,
    /// The installed image's `environment.json` as it was built (null when
    /// unreadable); only `inspect` gives it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub install_manifest: Option<Value>,
}

/// `pyro env list`: the catalog.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvList {
    pub catalog_version: &'static str,
    pub environments: Vec<EnvironmentInfo>,
}

/// `pyro env pull`: an environment already installed here (this build
/// pulls nothing).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pulled {
    #[serde(flatten)]
    pub environment: EnvironmentInfo,
    pub pulled: bool,
    pub message: &'static str,
}

/// `pyro env prune`: what was removed from the store.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pruned {
    pub removed: Vec<String>,
    pub environments_dir: PathBuf,
}

fn describe(e: &CatalogEntry) -> EnvironmentInfo {
    let dir = install_dir(e.name);
    let installed = is_complete(&dir);
    EnvironmentInfo {
        name: e.name,
        version: e.version,
        description: e.description,
        default_packages: e.default_packages,
        distribution: "debian",
        distribution_version: "12",
        installed,
        install_dir: installed.then_some(dir),
        install_manifest: None,
    }
}

pub fn list() -> EnvList {
    EnvList {
        catalog_version: CATALOG_VERSION,
        environments: CATALOG.iter().map(describe).collect(),
    }
}

pub fn inspect(name: &str) -> Result<EnvironmentInfo> {
    let e = lookup(name)?;
    let mut v = describe(e);
    if let Ok(inst) = installed(name) {
        v.install_manifest = Some(inst.manifest);
    }
    Ok(v)
}

/// Installs an environment from a locally built image directory (as
/// `scripts/build-image.sh` prints) and a kernel. Replaces an existing
/// install atomically: the new tree is staged beside it and renamed.
pub fn import(name: &str, image_dir: &Path, kernel: &Path) -> Result<EnvironmentInfo> {
    let e = lookup(name)?;
    for f in ["rootfs.ext4", "scratch.ext4", "environment.json"] {
        if !image_dir.join(f).is_file() {
            return Err(EngineError::NotFound(format!(
                "{} has no {f}",
                image_dir.display()
            )));
        }
    }
    if !kernel.is_file() {
        return Err(EngineError::NotFound(format!(
            "kernel {} not found",
            kernel.display()
        )));
    }
    paths::ensure_home()?;
    let root = paths::environments();
    paths::private_dir(&root)
        .map_err(|err| EngineError::io(format!("creating {}", root.display()), err))?;
    let stage = root.join(format!(".{}.staging-{}", slug(e.name), paths::random_id(4)));
    let result = (|| -> std::io::Result<()> {
        std::fs::create_dir(&stage)?;
        super::disk::copy_sparse(&image_dir.join("rootfs.ext4"), &stage.join("rootfs.ext4"))?;
        super::disk::copy_sparse(&image_dir.join("scratch.ext4"), &stage.join("scratch.ext4"))?;
        super::disk::copy_sparse(kernel, &stage.join("vmlinux"))?;
        std::fs::copy(
            image_dir.join("environment.json"),
            stage.join("environment.json"),
        )?;
        let dest = install_dir(e.name);
        let old = root.join(format!(".{}.old-{}", slug(e.name), paths::random_id(4)));
        if dest.exists() {
            std::fs::rename(&dest, &old)?;
        }
        std::fs::rename(&stage, &dest)?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    })();
    if let Err(err) = result {
        let _ = std::fs::remove_dir_all(&stage);
        return Err(EngineError::io(format!("importing {name}"), err));
    }
    inspect(name)
}

/// Removes partial downloads and stale staging directories.
pub fn prune() -> Result<Pruned> {
    let root = paths::environments();
    let mut removed = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&root) {
        for ent in rd.flatten() {
            let name = ent.file_name().to_string_lossy().into_owned();
            let known = CATALOG
                .iter()
                .any(|e| slug(e.name) == name && is_complete(&ent.path()));
            if !known {
                let _ = std::fs::remove_dir_all(ent.path())
                    .or_else(|_| std::fs::remove_file(ent.path()));
                removed.push(name);
            }
        }
    }
    Ok(Pruned {
        removed,
        environments_dir: root,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_environment_lists_the_catalog() {
        let err = lookup("ubuntu:24.04").err().unwrap().to_string();
        assert!(
            err.contains("debian:12-base") && err.contains("ubuntu:24.04"),
            "{err}"
        );
    }

    #[test]
    fn slugs_are_path_safe() {
        assert_eq!(slug("debian:12-build"), "debian-12-build");
    }
}
