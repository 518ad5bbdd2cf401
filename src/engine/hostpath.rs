//! Host paths named by a caller, resolved under a policy before the engine
//! touches them.
//!
//! The CLI acts for the person who typed the command: its paths may lead
//! anywhere that person can reach ([`Roots::unconfined`]). An MCP client is
//! only semi-trusted (a prompt-injected model sends hostile arguments), so
//! the paths it names must resolve inside the roots the operator allowed
//! ([`Roots::confined`]): the server's project directory plus any
//! `--allow-path` directories.
//!
//! Resolution walks the path one component at a time, the way the kernel
//! does, following every symlink it meets (so `..` after a symlink climbs
//! from the link's target, not lexically), with no more than
//! [`MAX_SYMLINKS`] links. When confined, it never looks at a component
//! that is neither inside a root nor an ancestor of one: a path elsewhere
//! is refused without being probed, so the answer reveals nothing about
//! what exists there. A tail that does not exist yet (a new export
//! destination) is taken lexically after its deepest existing ancestor,
//! and may not contain `..`.
//!
//! Writes are stricter than reads: the destination must lie strictly below
//! a root (never a root itself) and no component below that root may start
//! with `.` (`.git/hooks`, `.envrc`, `.github/workflows`): such files are
//! run by tools the user trusts. An operator who wants exports there allows
//! that directory itself as a root.
//!
//! The engine takes only [`ReadPath`] and [`WritePath`], which nothing but
//! this resolver can construct, so no host path reaches it unresolved.
//!
//! Between resolution and use a path could change. The only host writes an
//! MCP client can cause are exports, and every symlink they can create
//! leads where a write is allowed ([`WritePath::check_link`]; links inside
//! an exported tree stay inside it), so a client cannot plant a link that
//! later redirects one of its own paths out of the roots. An export's
//! directory is also checked again right before its final rename
//! ([`WritePath::verify`]).

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed while resolving one path: Linux's own limit
/// (MAXSYMLINKS, 40), so whatever the kernel resolves, this resolves too,
/// and a loop ends in an error instead of spinning.
pub const MAX_SYMLINKS: usize = 40;

/// Why a host path was refused. Messages say what to do; none invites the
/// caller to widen what the operator allowed.
#[derive(Debug, Clone, PartialEq)]
pub enum HostPathError {
    Empty,
    /// A NUL byte: no valid path has one.
    Nul,
    /// The path names no file (`/`, `..`, `dir/..`) where one is needed.
    NoName {
        given: String,
    },
    /// A relative path, but there is no project directory to take it from.
    RelativeWithoutBase {
        given: String,
    },
    /// Confined, and no root at all was configured.
    NoRoots {
        given: String,
    },
    /// Resolves (possibly through a symlink) outside every root.
    Outside {
        given: String,
        via_symlink: bool,
        roots: Vec<PathBuf>,
    },
    /// A write onto an allowed root itself.
    RootItself {
        given: String,
        root: PathBuf,
    },
    /// A write below a hidden component (`.git`, `.ssh`, `.envrc`, ...).
    DotComponent {
        given: String,
        component: String,
    },
    /// `..` after a component that does not exist.
    DotDotAfterMissing {
        given: String,
    },
    /// A component that must be a directory is something else.
    NotADirectory {
        given: String,
        component: PathBuf,
    },
    /// A path that must exist (a read) does not.
    NotFound {
        given: String,
    },
    TooManySymlinks {
        given: String,
    },
    /// The kernel refused to tell (permissions, I/O).
    Io {
        given: String,
        message: String,
    },
    /// A checked destination changed while the operation ran.
    Changed {
        given: String,
    },
}

impl fmt::Display for HostPathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |roots: &[PathBuf]| {
            roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            HostPathError::Empty => write!(f, "the host path is empty"),
            HostPathError::Nul => write!(f, "the host path contains a NUL byte"),
            HostPathError::NoName { given } => {
                write!(f, "host path {given:?} must name a file or directory")
            }
            HostPathError::RelativeWithoutBase { given } => write!(
                f,
                "host path {given:?} is relative, but this server has no project directory to resolve it against; give an absolute path"
            ),
            HostPathError::NoRoots { given } => write!(
                f,
                "host path {given:?} refused: this server may not use any host directory (it has no project directory and none was allowed)"
            ),
            HostPathError::Outside {
                given,
                via_symlink,
                roots,
            } => write!(
                f,
                "host path {given:?} {} outside the host directories this server may use ({}); use a path inside one of them",
                if *via_symlink {
                    "leads through a symlink"
                } else {
                    "is"
                },
                list(roots)
            ),
            HostPathError::RootItself { given, root } => write!(
                f,
                "host path {given:?} is the allowed directory {} itself, which is never replaced; name a path inside it",
                root.display()
            ),
            HostPathError::DotComponent { given, component } => write!(
                f,
                "host path {given:?} refused: writing into the hidden {component:?} (a name starting with '.', like .git) is not allowed; choose a destination without hidden components"
            ),
            HostPathError::DotDotAfterMissing { given } => write!(
                f,
                "host path {given:?} has '..' after a directory that does not exist; write the path without '..'"
            ),
            HostPathError::NotADirectory { given, component } => write!(
                f,
                "host path {given:?} passes through {}, which is not a directory",
                component.display()
            ),
            HostPathError::NotFound { given } => write!(f, "host path {given:?} does not exist"),
            HostPathError::TooManySymlinks { given } => write!(
                f,
                "host path {given:?} goes through more than {MAX_SYMLINKS} symlinks (a loop?)"
            ),
            HostPathError::Io { given, message } => {
                write!(f, "cannot resolve host path {given:?}: {message}")
            }
            HostPathError::Changed { given } => write!(
                f,
                "the directory of host path {given:?} changed (a symlink appeared?) while the operation ran; nothing was written there, retry"
            ),
        }
    }
}

impl std::error::Error for HostPathError {}

impl From<HostPathError> for super::EngineError {
    fn from(e: HostPathError) -> Self {
        super::EngineError::Invalid(e.to_string())
    }
}

/// One allowed root: its canonical path and the spelling it was given in
/// (so `/home/me/link/app/x` works when the operator wrote `/home/me/link/app`).
#[derive(Debug, Clone, PartialEq)]
struct Root {
    path: PathBuf,
    spelled: PathBuf,
}

/// Where host paths may lead.
#[derive(Debug, Clone, PartialEq)]
pub struct Roots {
    /// `None`: unconfined (the CLI).
    roots: Option<Vec<Root>>,
    /// Where relative paths start: the project (confined) or the current
    /// directory at resolution time (unconfined, `None`).
    base: Option<PathBuf>,
}

/// A host path checked for reading: it exists and, when confined, lies
/// inside a root. Only [`Roots::resolve_read`] makes one.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadPath {
    given: String,
    path: PathBuf,
}

impl ReadPath {
    /// The resolved path: absolute, no symlink in it when it was checked.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the caller wrote.
    pub fn given(&self) -> &str {
        &self.given
    }
}

/// A host destination checked for writing. Only [`Roots::resolve_write`]
/// makes one. Its directory may not exist yet: [`WritePath::create_dirs`]
/// makes it, and only once the caller has validated everything else.
#[derive(Debug, Clone, PartialEq)]
pub struct WritePath {
    given: String,
    /// The deepest ancestor that existed: a real directory.
    existing: PathBuf,
    /// Directories to create below `existing`, in order.
    missing: Vec<OsString>,
    /// The destination's own name (not followed: a symlink there is
    /// replaced, never written through).
    name: OsString,
    /// The policy it was checked under, for the symlinks an export makes.
    roots: Roots,
}

impl WritePath {
    pub fn given(&self) -> &str {
        &self.given
    }

    /// The directory the destination goes into.
    pub fn dir(&self) -> PathBuf {
        let mut d = self.existing.clone();
        d.extend(&self.missing);
        d
    }

    pub fn name(&self) -> &OsStr {
        &self.name
    }

    /// Checked for a confined (MCP) caller.
    pub fn is_confined(&self) -> bool {
        self.roots.is_confined()
    }

    /// The destination itself.
    pub fn path(&self) -> PathBuf {
        self.dir().join(&self.name)
    }

    /// Creates the missing directories one by one. One that appeared in
    /// the meantime must be a real directory (not a symlink).
    pub fn create_dirs(&self) -> io::Result<()> {
        let mut d = self.existing.clone();
        for m in &self.missing {
            d.push(m);
            match std::fs::create_dir(&d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let meta = std::fs::symlink_metadata(&d)?;
                    if !meta.is_dir() {
                        return Err(io::Error::new(
                            io::ErrorKind::AlreadyExists,
                            format!("{} appeared and is not a directory", d.display()),
                        ));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Checks that the destination's directory is still what was checked:
    /// the same path with no symlink in it. Called right before writing.
    pub fn verify(&self) -> Result<(), HostPathError> {
        let dir = self.dir();
        match std::fs::canonicalize(&dir) {
            Ok(c) if c == dir => Ok(()),
            _ => Err(HostPathError::Changed {
                given: self.given.clone(),
            }),
        }
    }

    /// Checks a symlink that would be created at the destination with
    /// target `link`: when confined, it must lead where a write could go
    /// (inside a root, no hidden component below it), so no symlink made
    /// for an MCP client opens a way out for a later call.
    pub fn check_link(&self, link: &Path) -> Result<(), HostPathError> {
        let Some(roots) = &self.roots.roots else {
            return Ok(());
        };
        let given = format!("{} -> {}", self.given, link.display());
        let w = walk(&self.dir().join(link), Some(roots), true, &given)?;
        let full = w.full();
        check_write_place(&full, roots, &given, w.via_symlink, true)
    }
}

/// Result of a walk: the existing physical prefix and the tail that does
/// not exist.
struct Walked {
    existing: PathBuf,
    missing: Vec<OsString>,
    via_symlink: bool,
}

impl Walked {
    fn full(&self) -> PathBuf {
        let mut p = self.existing.clone();
        p.extend(&self.missing);
        p
    }
}

fn root_paths(roots: &[Root]) -> Vec<PathBuf> {
    roots.iter().map(|r| r.path.clone()).collect()
}

/// Whether the walk may look at `p`: inside a root, or on the way to one.
fn relevant(p: &Path, roots: &[Root]) -> bool {
    roots
        .iter()
        .any(|r| p.starts_with(&r.path) || r.path.starts_with(p))
}

/// One step of a path, owned so a symlink's target can be spliced in.
enum Part {
    Root,
    Up,
    Name(OsString),
}

fn parts(p: &Path) -> impl DoubleEndedIterator<Item = Part> + '_ {
    p.components().filter_map(|c| match c {
        Component::Prefix(_) | Component::CurDir => None,
        Component::RootDir => Some(Part::Root),
        Component::ParentDir => Some(Part::Up),
        Component::Normal(n) => Some(Part::Name(n.to_os_string())),
    })
}

/// Walks `path` (absolute) component by component, following symlinks
/// (the last one too when `follow_last`). Confined to `roots` when given.
fn walk(
    path: &Path,
    roots: Option<&[Root]>,
    follow_last: bool,
    given: &str,
) -> Result<Walked, HostPathError> {
    let fail = |e: fn(String) -> HostPathError| e(given.to_string());
    let mut queue: VecDeque<Part> = parts(path).collect();
    let mut cur = PathBuf::from("/");
    let mut missing: Vec<OsString> = Vec::new();
    let mut links = 0usize;
    let mut via_symlink = false;
    while let Some(part) = queue.pop_front() {
        let name = match part {
            Part::Root => {
                cur = PathBuf::from("/");
                continue;
            }
            Part::Up if missing.is_empty() => {
                cur.pop();
                continue;
            }
            Part::Up => return Err(fail(|given| HostPathError::DotDotAfterMissing { given })),
            Part::Name(n) => n,
        };
        if !missing.is_empty() {
            missing.push(name);
            continue;
        }
        let cand = cur.join(&name);
        if let Some(r) = roots {
            if !relevant(&cand, r) {
                return Err(HostPathError::Outside {
                    given: given.to_string(),
                    via_symlink,
                    roots: root_paths(r),
                });
            }
        }
        let last = queue.is_empty();
        match std::fs::symlink_metadata(&cand) {
            Ok(m) if m.file_type().is_symlink() && (follow_last || !last) => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(fail(|given| HostPathError::TooManySymlinks { given }));
                }
                let target = std::fs::read_link(&cand).map_err(|e| HostPathError::Io {
                    given: given.to_string(),
                    message: format!("reading the symlink {}: {e}", cand.display()),
                })?;
                via_symlink = true;
                if target.as_os_str().is_empty() {
                    // The kernel resolves an empty link to nothing (ENOENT).
                    missing.push(name);
                    continue;
                }
                // The target's steps replace the link, relative to its
                // directory (`cur`) unless absolute.
                for p in parts(&target).rev() {
                    queue.push_front(p);
                }
            }
            Ok(m) => {
                if !m.is_dir() && !last {
                    return Err(HostPathError::NotADirectory {
                        given: given.to_string(),
                        component: cand,
                    });
                }
                cur = cand;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(name),
            Err(e) => {
                return Err(HostPathError::Io {
                    given: given.to_string(),
                    message: format!("{}: {e}", cand.display()),
                })
            }
        }
    }
    Ok(Walked {
        existing: cur,
        missing,
        via_symlink,
    })
}

/// Refuses a write at `full` unless some root holds it strictly below
/// itself with no hidden component in between (`root_ok`: the root itself
/// is acceptable, for where a symlink may point).
fn check_write_place(
    full: &Path,
    roots: &[Root],
    given: &str,
    via_symlink: bool,
    root_ok: bool,
) -> Result<(), HostPathError> {
    let mut hidden: Option<String> = None;
    let mut itself: Option<PathBuf> = None;
    // Innermost root first: its verdict is the one worth reporting.
    let mut holding: Vec<&Root> = roots.iter().filter(|r| full.starts_with(&r.path)).collect();
    if holding.is_empty() {
        return Err(HostPathError::Outside {
            given: given.to_string(),
            via_symlink,
            roots: root_paths(roots),
        });
    }
    holding.sort_by_key(|r| std::cmp::Reverse(r.path.components().count()));
    for r in holding {
        let below = full.strip_prefix(&r.path).expect("filtered on starts_with");
        if below.as_os_str().is_empty() && !root_ok {
            itself.get_or_insert(r.path.clone());
            continue;
        }
        match below
            .components()
            .find(|c| c.as_os_str().as_encoded_bytes().first() == Some(&b'.'))
        {
            Some(c) => {
                hidden.get_or_insert(c.as_os_str().to_string_lossy().into_owned());
            }
            None => return Ok(()),
        }
    }
    match (hidden, itself) {
        (Some(component), _) => Err(HostPathError::DotComponent {
            given: given.to_string(),
            component,
        }),
        (None, Some(root)) => Err(HostPathError::RootItself {
            given: given.to_string(),
            root,
        }),
        (None, None) => unreachable!("some root holds the path"),
    }
}

impl Roots {
    /// The CLI's policy: any path the person can reach; relative paths
    /// start at the current directory.
    pub fn unconfined() -> Roots {
        Roots {
            roots: None,
            base: None,
        }
    }

    /// The MCP server's policy: `project` (relative paths start there) and
    /// `allowed`, each an existing absolute directory, canonicalized now.
    pub fn confined(project: Option<&Path>, allowed: &[PathBuf]) -> Result<Roots, HostPathError> {
        let mut roots = Vec::new();
        let mut base = None;
        for (i, p) in project
            .into_iter()
            .chain(allowed.iter().map(PathBuf::as_path))
            .enumerate()
        {
            let given = p.display().to_string();
            if !p.is_absolute() {
                return Err(HostPathError::RelativeWithoutBase { given });
            }
            let path = std::fs::canonicalize(p).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => HostPathError::NotFound {
                    given: given.clone(),
                },
                _ => HostPathError::Io {
                    given: given.clone(),
                    message: e.to_string(),
                },
            })?;
            if !path.is_dir() {
                return Err(HostPathError::NotADirectory {
                    given,
                    component: path,
                });
            }
            if i == 0 && project.is_some() {
                base = Some(path.clone());
            }
            if !roots
                .iter()
                .any(|r: &Root| r.path == path && r.spelled == p)
            {
                roots.push(Root {
                    path,
                    spelled: p.to_path_buf(),
                });
            }
        }
        Ok(Roots {
            roots: Some(roots),
            base,
        })
    }

    pub fn is_confined(&self) -> bool {
        self.roots.is_some()
    }

    /// The allowed roots (canonical), project first; empty when unconfined.
    pub fn list(&self) -> Vec<PathBuf> {
        self.roots.as_deref().map(root_paths).unwrap_or_default()
    }

    /// Where relative paths start when confined (the project).
    pub fn base(&self) -> Option<&Path> {
        self.base.as_deref()
    }

    /// `given` as an absolute path, before any resolution: relative paths
    /// joined to the base, a root's given spelling replaced by its
    /// canonical path.
    fn absolute(&self, given: &str) -> Result<PathBuf, HostPathError> {
        if given.is_empty() {
            return Err(HostPathError::Empty);
        }
        if given.contains('\0') {
            return Err(HostPathError::Nul);
        }
        let p = Path::new(given);
        let Some(roots) = &self.roots else {
            if p.is_absolute() {
                return Ok(p.to_path_buf());
            }
            let cwd = std::env::current_dir().map_err(|e| HostPathError::Io {
                given: given.to_string(),
                message: format!("finding the current directory: {e}"),
            })?;
            return Ok(cwd.join(p));
        };
        if roots.is_empty() {
            return Err(HostPathError::NoRoots {
                given: given.to_string(),
            });
        }
        if !p.is_absolute() {
            return match &self.base {
                Some(b) => Ok(b.join(p)),
                None => Err(HostPathError::RelativeWithoutBase {
                    given: given.to_string(),
                }),
            };
        }
        for r in roots {
            if let Ok(rest) = p.strip_prefix(&r.spelled) {
                return Ok(r.path.join(rest));
            }
        }
        Ok(p.to_path_buf())
    }

    /// Resolves a path to read (a seed or a sync source): it must exist
    /// and, when confined, lie inside a root (the root itself included).
    pub fn resolve_read(&self, given: &str) -> Result<ReadPath, HostPathError> {
        let given = given.trim();
        let abs = self.absolute(given)?;
        let w = walk(&abs, self.roots.as_deref(), true, given)?;
        if let Some(roots) = &self.roots {
            if !roots.iter().any(|r| w.full().starts_with(&r.path)) {
                return Err(HostPathError::Outside {
                    given: given.to_string(),
                    via_symlink: w.via_symlink,
                    roots: root_paths(roots),
                });
            }
        }
        if !w.missing.is_empty() {
            return Err(HostPathError::NotFound {
                given: given.to_string(),
            });
        }
        Ok(ReadPath {
            given: given.to_string(),
            path: w.existing,
        })
    }

    /// Resolves a destination to write (an export): its directory is
    /// resolved through symlinks, its own name is kept as is (whatever is
    /// there, a symlink included, is replaced rather than followed). When
    /// confined it must lie strictly below a root with no hidden
    /// component under that root. Nothing is created here.
    pub fn resolve_write(&self, given: &str) -> Result<WritePath, HostPathError> {
        let given = given.trim();
        let abs = self.absolute(given)?;
        let no_name = || HostPathError::NoName {
            given: given.to_string(),
        };
        let name = match abs.components().next_back() {
            Some(Component::Normal(n)) => n.to_os_string(),
            _ => return Err(no_name()),
        };
        let parent = abs.parent().ok_or_else(no_name)?;
        let w = walk(parent, self.roots.as_deref(), true, given)?;
        if w.missing.is_empty() && !w.existing.is_dir() {
            return Err(HostPathError::NotADirectory {
                given: given.to_string(),
                component: w.existing,
            });
        }
        let full = w.full().join(&name);
        if let Some(roots) = &self.roots {
            check_write_place(&full, roots, given, w.via_symlink, false)?;
        }
        Ok(WritePath {
            given: given.to_string(),
            existing: w.existing,
            missing: w.missing,
            name,
            roots: self.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::temp_dir::TempDir;
    use std::os::unix::fs::symlink;

    /// `base/proj` (the project, with a `.git/hooks`), `base/outside/secret`
    /// and `base/extra` (for --allow-path).
    fn layout(tag: &str) -> (TempDir, Roots) {
        let d = TempDir::new(&format!("hostpath-{tag}"));
        std::fs::create_dir_all(d.join("proj/src")).unwrap();
        std::fs::create_dir_all(d.join("proj/.git/hooks")).unwrap();
        std::fs::create_dir_all(d.join("outside")).unwrap();
        std::fs::create_dir_all(d.join("extra")).unwrap();
        std::fs::write(d.join("outside/secret"), "s").unwrap();
        std::fs::write(d.join("proj/src/a.txt"), "a").unwrap();
        let roots = Roots::confined(Some(&d.join("proj")), &[]).unwrap();
        (d, roots)
    }

    fn s(p: &Path) -> String {
        p.to_str().unwrap().to_string()
    }

    #[test]
    fn reads_inside_the_project_resolve_and_relative_paths_start_there() {
        let (d, roots) = layout("read");
        let p = roots.resolve_read(&s(&d.join("proj/src/a.txt"))).unwrap();
        assert_eq!(p.path(), d.join("proj/src/a.txt"));
        assert_eq!(roots.resolve_read("src/a.txt").unwrap().path(), p.path());
        assert_eq!(
            roots.resolve_read("./src/../src").unwrap().path(),
            d.join("proj/src")
        );
        // The project itself may be read (a seed of the whole tree).
        assert_eq!(roots.resolve_read(".").unwrap().path(), d.join("proj"));
        assert_eq!(roots.base(), Some(d.join("proj").as_path()));
    }

    #[test]
    fn paths_outside_every_root_are_refused_without_being_probed() {
        let (d, roots) = layout("outside");
        for given in [
            s(&d.join("outside/secret")),
            s(&d.join("outside/no-such-file")),
            "../outside/secret".to_string(),
            "src/../../outside/secret".to_string(),
            "/etc/passwd".to_string(),
            "/".to_string(),
        ] {
            let e = roots.resolve_read(&given).unwrap_err();
            assert!(
                matches!(
                    e,
                    HostPathError::Outside {
                        via_symlink: false,
                        ..
                    }
                ),
                "{given}: {e:?}"
            );
        }
        // Not probed: a symlink out there that leads back into the project
        // would be followed if the walk looked at it.
        symlink(d.join("proj/src"), d.join("outside/back")).unwrap();
        assert!(matches!(
            roots
                .resolve_read(&s(&d.join("outside/back/a.txt")))
                .unwrap_err(),
            HostPathError::Outside {
                via_symlink: false,
                ..
            }
        ));
        // A missing file outside reads exactly like an existing one: no oracle.
        let a = roots
            .resolve_read(&s(&d.join("outside/secret")))
            .unwrap_err();
        let b = roots
            .resolve_read(&s(&d.join("outside/nothing")))
            .unwrap_err();
        assert_eq!(
            a.to_string().replace("secret", "X"),
            b.to_string().replace("nothing", "X")
        );
    }

    #[test]
    fn symlinks_are_followed_component_by_component() {
        let (d, roots) = layout("links");
        let proj = d.join("proj");
        symlink(d.join("outside"), proj.join("out-abs")).unwrap();
        symlink("../outside", proj.join("out-rel")).unwrap();
        // The review's chain: `up -> .` then `up/up/../..` climbs from the
        // link's target, two levels above the project.
        symlink(".", proj.join("up")).unwrap();
        symlink("up/up/../../outside/secret", proj.join("leak")).unwrap();
        symlink("src", proj.join("inside")).unwrap();
        symlink("loop2", proj.join("loop1")).unwrap();
        symlink("loop1", proj.join("loop2")).unwrap();
        for given in [
            "out-abs/secret",
            "out-rel/secret",
            "leak",
            "up/up/../../outside",
        ] {
            let e = roots.resolve_read(given).unwrap_err();
            assert!(
                matches!(
                    e,
                    HostPathError::Outside {
                        via_symlink: true,
                        ..
                    }
                ),
                "{given}: {e:?}"
            );
            assert!(e.to_string().contains("through a symlink"), "{e}");
        }
        assert_eq!(
            roots.resolve_read("inside/a.txt").unwrap().path(),
            proj.join("src/a.txt")
        );
        assert_eq!(
            roots.resolve_read("up/up/src").unwrap().path(),
            proj.join("src")
        );
        assert!(matches!(
            roots.resolve_read("loop1").unwrap_err(),
            HostPathError::TooManySymlinks { .. }
        ));
        // Writes through the same links are refused alike.
        assert!(matches!(
            roots.resolve_write("out-rel/new").unwrap_err(),
            HostPathError::Outside {
                via_symlink: true,
                ..
            }
        ));
        assert!(matches!(
            roots.resolve_write("up/up/../../outside/new").unwrap_err(),
            HostPathError::Outside {
                via_symlink: true,
                ..
            }
        ));
    }

    #[test]
    fn reads_need_an_existing_path_and_report_it_plainly() {
        let (_dir, roots) = layout("missing");
        assert!(matches!(
            roots.resolve_read("nope").unwrap_err(),
            HostPathError::NotFound { .. }
        ));
        assert!(matches!(
            roots.resolve_read("src/a.txt/x").unwrap_err(),
            HostPathError::NotADirectory { .. }
        ));
        assert_eq!(roots.resolve_read("").unwrap_err(), HostPathError::Empty);
        assert_eq!(roots.resolve_read("a\0b").unwrap_err(), HostPathError::Nul);
    }

    #[test]
    fn writes_stay_below_a_root_and_out_of_hidden_directories() {
        let (d, roots) = layout("write");
        let proj = d.join("proj");
        let w = roots.resolve_write("out/deep/result.txt").unwrap();
        assert_eq!(w.path(), proj.join("out/deep/result.txt"));
        assert_eq!(w.dir(), proj.join("out/deep"));
        // Nothing is created by resolving.
        assert!(!proj.join("out").exists());
        for (given, want) in [
            (".git/hooks/pre-commit", ".git"),
            (".envrc", ".envrc"),
            ("src/.hidden/x", ".hidden"),
            ("new/.config/x", ".config"),
        ] {
            match roots.resolve_write(given).unwrap_err() {
                HostPathError::DotComponent { component, .. } => assert_eq!(component, want),
                e => panic!("{given}: {e:?}"),
            }
        }
        // Through a symlink into .git is as refused as naming it.
        symlink(".git/hooks", proj.join("hooks")).unwrap();
        assert!(matches!(
            roots.resolve_write("hooks/pre-commit").unwrap_err(),
            HostPathError::DotComponent { .. }
        ));
        for given in [".", &s(&proj), "src/.."] {
            assert!(
                matches!(
                    roots.resolve_write(given).unwrap_err(),
                    HostPathError::RootItself { .. } | HostPathError::NoName { .. }
                ),
                "{given}"
            );
        }
        assert!(matches!(
            roots.resolve_write("..").unwrap_err(),
            HostPathError::NoName { .. }
        ));
        assert!(matches!(
            roots.resolve_write(&s(&d.join("outside/x"))).unwrap_err(),
            HostPathError::Outside { .. }
        ));
        // `..` in a tail that does not exist cannot be checked: refused.
        assert!(matches!(
            roots.resolve_write("new/../../outside/x").unwrap_err(),
            HostPathError::DotDotAfterMissing { .. }
        ));
        assert!(matches!(
            roots.resolve_write("src/a.txt/x").unwrap_err(),
            HostPathError::NotADirectory { .. }
        ));
    }

    #[test]
    fn a_symlink_at_the_destination_is_replaced_not_followed() {
        let (d, roots) = layout("destlink");
        let proj = d.join("proj");
        symlink(d.join("outside/secret"), proj.join("result")).unwrap();
        let w = roots.resolve_write("result").unwrap();
        assert_eq!(w.path(), proj.join("result"));
    }

    #[test]
    fn allowed_paths_extend_the_roots_and_may_open_a_hidden_directory() {
        let (d, _) = layout("allow");
        let proj = d.join("proj");
        std::fs::create_dir_all(proj.join(".cache/exports")).unwrap();
        let roots =
            Roots::confined(Some(&proj), &[d.join("extra"), proj.join(".cache/exports")]).unwrap();
        assert_eq!(
            roots.list(),
            vec![proj.clone(), d.join("extra"), proj.join(".cache/exports")]
        );
        assert!(roots.resolve_write(&s(&d.join("extra/x"))).is_ok());
        assert!(roots.resolve_read(&s(&d.join("extra"))).is_ok());
        assert!(roots.resolve_write(".cache/exports/x").is_ok());
        assert!(matches!(
            roots.resolve_write(".cache/other").unwrap_err(),
            HostPathError::DotComponent { .. }
        ));
        assert!(matches!(
            roots.resolve_write(&s(&d.join("extra"))).unwrap_err(),
            HostPathError::RootItself { .. }
        ));
        // A root named through a symlink also works in that spelling.
        symlink(d.join("extra"), d.join("extra-link")).unwrap();
        let roots = Roots::confined(None, &[d.join("extra-link")]).unwrap();
        assert_eq!(roots.list(), vec![d.join("extra")]);
        let w = roots.resolve_write(&s(&d.join("extra-link/f"))).unwrap();
        assert_eq!(w.path(), d.join("extra/f"));
        // No project: relative paths have nothing to start from.
        assert!(matches!(
            roots.resolve_read("f").unwrap_err(),
            HostPathError::RelativeWithoutBase { .. }
        ));
    }

    #[test]
    fn no_roots_refuses_everything_and_bad_roots_are_refused() {
        let roots = Roots::confined(None, &[]).unwrap();
        assert!(matches!(
            roots.resolve_read("/tmp").unwrap_err(),
            HostPathError::NoRoots { .. }
        ));
        assert!(matches!(
            Roots::confined(None, &[PathBuf::from("rel")]).unwrap_err(),
            HostPathError::RelativeWithoutBase { .. }
        ));
        assert!(matches!(
            Roots::confined(None, &[PathBuf::from("/nonexistent/pyro-root")]).unwrap_err(),
            HostPathError::NotFound { .. }
        ));
        let d = TempDir::new("hostpath-fileroot");
        std::fs::write(d.join("f"), "").unwrap();
        assert!(matches!(
            Roots::confined(None, &[d.join("f")]).unwrap_err(),
            HostPathError::NotADirectory { .. }
        ));
    }

    #[test]
    fn the_cli_reaches_anything_but_still_resolves_links() {
        let (d, _) = layout("cli");
        let roots = Roots::unconfined();
        assert!(!roots.is_confined());
        let p = roots.resolve_read(&s(&d.join("outside/secret"))).unwrap();
        assert_eq!(p.path(), d.join("outside/secret"));
        symlink(d.join("outside"), d.join("proj/o")).unwrap();
        let w = roots.resolve_write(&s(&d.join("proj/o/new/f"))).unwrap();
        assert_eq!(w.path(), d.join("outside/new/f"));
        assert_eq!(w.dir(), d.join("outside/new"));
        assert!(w.check_link(Path::new("/anything")).is_ok());
    }

    #[test]
    fn directories_are_created_only_on_request_and_verified_before_writing() {
        let (d, roots) = layout("create");
        let proj = d.join("proj");
        let w = roots.resolve_write("a/b/c").unwrap();
        assert!(!proj.join("a").exists());
        w.create_dirs().unwrap();
        assert!(proj.join("a/b").is_dir());
        assert!(!proj.join("a/b/c").exists());
        w.verify().unwrap();
        // The directory swapped for a symlink after the check: refused.
        std::fs::remove_dir(proj.join("a/b")).unwrap();
        symlink(d.join("outside"), proj.join("a/b")).unwrap();
        assert!(matches!(
            w.verify().unwrap_err(),
            HostPathError::Changed { .. }
        ));
        assert!(w.create_dirs().is_err());
    }

    #[test]
    fn symlinks_an_mcp_export_makes_must_lead_where_it_could_write() {
        let (_dir, roots) = layout("mklink");
        let w = roots.resolve_write("out/link").unwrap();
        w.create_dirs().unwrap();
        assert!(w.check_link(Path::new("../src/a.txt")).is_ok());
        assert!(w.check_link(Path::new("../missing-yet")).is_ok());
        assert!(w.check_link(Path::new("..")).is_ok());
        for bad in ["../../outside/secret", "/etc/passwd", "../.git/hooks"] {
            assert!(w.check_link(Path::new(bad)).is_err(), "{bad}");
        }
    }
}
