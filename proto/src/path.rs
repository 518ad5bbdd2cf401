//! Workspace paths and symlink targets: the rules the host and the agent
//! both apply, so neither can accept a path the other would refuse.
//!
//! A workspace path is relative to the workspace root (`/workspace` in
//! the guest), `/`-separated, without `..`; `.` and empty components are
//! dropped, and the empty path is the root itself. [`RelPath`] is a path
//! that passed this check, in its normal form. Each side words its own
//! refusal (the host names what the user typed, the agent says "bad
//! workspace path", an archive names its member) from one
//! [`RelPathError`].
//!
//! Symlinks that archives carry (a seed into the guest, an export out to
//! the host) are judged by [`check_symlink`], whose rule holds however the
//! links of one tree point at each other, not only for each link on its
//! own:
//!
//! - the target is relative and not empty;
//! - every `..` comes first (`../../lib/x` passes, `a/../b` and
//!   `up/up/../../x` do not): a `..` after a name would climb from wherever
//!   that name leads if it is (or later becomes) a symlink, so it is refused
//!   whatever the name is today;
//! - the leading `..`s climb no higher than the link's own directory is
//!   deep in the tree;
//! - the link's directory is reached without passing through a symlink
//!   (each caller makes sure of this: the host refuses members under a
//!   symlink, the agent creates links only in real directories), so its
//!   depth in the tree is its real depth.
//!
//! Then, by induction on resolution steps, every link resolves inside the
//! tree: its leading `..`s climb real directories to one still inside, and
//! each name after them either descends into a child or is a link that
//! resolves inside by the same rule.

use std::fmt;

/// A workspace path that passed [`RelPath::parse`], in normal form:
/// `a/b/c`, never `/a`, `a//b`, `./a` or `a/../b`; `""` is the root. It
/// reads as a `&str` (it derefs to one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(String);

/// Why a path is not a [`RelPath`]. The texts finish a sentence such as
/// "bad workspace path \"/etc\": ...".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelPathError {
    /// It starts with `/`.
    Absolute,
    /// It holds a NUL byte, which no file name can.
    Nul,
    /// One of its components is `..`.
    DotDot,
}

impl fmt::Display for RelPathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RelPathError::Absolute => "must be relative to the workspace root",
            RelPathError::Nul => "contains a NUL byte",
            RelPathError::DotDot => "'..' is not allowed",
        })
    }
}

impl std::error::Error for RelPathError {}

impl RelPath {
    /// The workspace root itself.
    pub fn root() -> RelPath {
        RelPath(String::new())
    }

    /// Checks `path` (absolute first, then NUL, then `..`) and returns its
    /// normal form.
    pub fn parse(path: &str) -> Result<RelPath, RelPathError> {
        if path.starts_with('/') {
            return Err(RelPathError::Absolute);
        }
        if path.contains('\0') {
            return Err(RelPathError::Nul);
        }
        let mut normal = String::with_capacity(path.len());
        for comp in path.split('/') {
            match comp {
                "" | "." => {}
                ".." => return Err(RelPathError::DotDot),
                c => {
                    if !normal.is_empty() {
                        normal.push('/');
                    }
                    normal.push_str(c);
                }
            }
        }
        Ok(RelPath(normal))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// Whether this is the root (the empty path).
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// `self/other` (either may be the root).
    pub fn join(&self, other: &RelPath) -> RelPath {
        if other.is_root() {
            return self.clone();
        }
        RelPath(join(&self.0, &other.0))
    }
}

impl std::ops::Deref for RelPath {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for RelPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<std::path::Path> for RelPath {
    fn as_ref(&self) -> &std::path::Path {
        std::path::Path::new(&self.0)
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `("a/b", "c")` for `"a/b/c"`, `("", "c")` for `"c"`.
pub fn split_parent(rel: &str) -> (&str, &str) {
    match rel.rfind('/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => ("", rel),
    }
}

/// `parent/name`, or `name` when `parent` is the root.
pub fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

/// Whether a symlink at `link_rel` (relative to the tree's root) pointing
/// to `target` is allowed in an archive: see the module doc for the rule
/// and why it holds for chains of links. `Err` says why not, to finish a
/// sentence like "symlink a -> b is refused: ...". Absolute targets never
/// pass: the same tree is exported to hosts where `/` means something else.
pub fn check_symlink(link_rel: &str, target: &str) -> Result<(), &'static str> {
    if target.is_empty() {
        return Err("its target is empty");
    }
    if target.starts_with('/') {
        return Err("its target is absolute");
    }
    if target.contains('\0') {
        return Err("its target contains a NUL byte");
    }
    let (parent, _) = split_parent(link_rel);
    let depth = parent.split('/').filter(|c| !c.is_empty()).count();
    let mut ups = 0usize;
    let mut named = false;
    for comp in target.split('/') {
        match comp {
            "" | "." => {}
            ".." if named => return Err(
                "its target has '..' after a name (that name may be a symlink leading anywhere)",
            ),
            ".." => ups += 1,
            _ => named = true,
        }
    }
    if ups > depth {
        return Err("its target climbs above the tree");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stays_inside(link_rel: &str, target: &str) -> bool {
        check_symlink(link_rel, target).is_ok()
    }

    #[test]
    fn rel_paths_are_normalized_or_refused_with_the_first_reason() {
        assert_eq!(RelPath::parse("a/./b//c/").unwrap().as_str(), "a/b/c");
        assert!(RelPath::parse("").unwrap().is_root());
        assert!(RelPath::parse(".").unwrap().is_root());
        assert!(RelPath::parse("./").unwrap().is_root());
        assert_eq!(RelPath::parse("a/../b"), Err(RelPathError::DotDot));
        assert_eq!(RelPath::parse(".."), Err(RelPathError::DotDot));
        assert_eq!(RelPath::parse("/etc"), Err(RelPathError::Absolute));
        assert_eq!(RelPath::parse("a\0b"), Err(RelPathError::Nul));
        // Absolute before NUL before '..', whatever their order in the text.
        assert_eq!(RelPath::parse("/../\0"), Err(RelPathError::Absolute));
        assert_eq!(RelPath::parse("../\0"), Err(RelPathError::Nul));
        // Names that merely contain dots are names.
        assert_eq!(RelPath::parse("..a/b..").unwrap().as_str(), "..a/b..");
        assert_eq!(
            RelPathError::DotDot.to_string(),
            "'..' is not allowed",
            "the agent's message finishes with this"
        );
    }

    #[test]
    fn rel_paths_join_and_split() {
        let a = RelPath::parse("a/b").unwrap();
        assert_eq!(a.join(&RelPath::parse("c").unwrap()).as_str(), "a/b/c");
        assert_eq!(RelPath::root().join(&a), a);
        assert_eq!(a.join(&RelPath::root()), a);
        assert_eq!(split_parent("a/b/c"), ("a/b", "c"));
        assert_eq!(split_parent("c"), ("", "c"));
        assert_eq!(join("", "c"), "c");
        assert_eq!(join("a", "c"), "a/c");
    }

    #[test]
    fn symlink_targets_are_judged_from_the_link() {
        assert!(stays_inside("a/link", "../b"));
        assert!(stays_inside("a/b/link", "../../c"));
        assert!(stays_inside("a/b/link", "./../.././c/d"));
        assert!(!stays_inside("a/link", "../../b"));
        assert!(!stays_inside("link", "/etc/passwd"));
        assert!(!stays_inside("link", ""));
        assert!(stays_inside("link", "x/./y"));
        assert!(stays_inside("link", "."));
        assert_eq!(
            check_symlink("link", "a\0b"),
            Err("its target contains a NUL byte")
        );
    }

    #[test]
    fn a_dot_dot_after_a_name_is_refused_whatever_the_name_is() {
        // The chain of the security review: `up -> .` passes on its own,
        // and `up/up/../..` would climb two levels above the tree.
        assert!(stays_inside("up", "."));
        assert_eq!(
            check_symlink("leak", "up/up/../../SECRET"),
            Err("its target has '..' after a name (that name may be a symlink leading anywhere)")
        );
        // Variants: the climb hidden at any depth, or cancelling out.
        assert!(stays_inside("a", "."));
        assert!(!stays_inside("b", "a/a/.."));
        assert!(!stays_inside("d/e/l", "x/.."));
        assert!(!stays_inside("d/e/l", "../x/../y"));
        // `x -> y` with `y -> ..` made later: `x` is harmless, `y` at the
        // root is refused; one level down it stays inside.
        assert!(stays_inside("x", "y"));
        assert_eq!(
            check_symlink("y", ".."),
            Err("its target climbs above the tree")
        );
        assert!(stays_inside("d/y", ".."));
        assert!(!stays_inside("l", "/"));
        assert!(!stays_inside("l", "//etc"));
    }
}
