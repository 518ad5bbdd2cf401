//! The rules every tar member meets, whichever side extracts it (the
//! agent a seed or a push, the host an export or its own seed archive):
//! its name is a workspace path ([`member_path`]), a symlink's target
//! passes [`crate::path::check_symlink`] (taken from the member by
//! [`link_target`]), and the stream itself is read through
//! [`crate::bounded_tar::BoundedTar`].

use crate::path::{RelPath, RelPathError};
use std::fmt;
use std::io;

/// A member name that is not a clean relative path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPathError {
    pub name: String,
    pub why: RelPathError,
}

impl fmt::Display for MemberPathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = &self.name;
        match self.why {
            RelPathError::Absolute => write!(
                f,
                "member {name:?} has an absolute path; archive members must be relative"
            ),
            RelPathError::DotDot => write!(
                f,
                "member {name:?} contains '..'; archive members must stay inside the destination"
            ),
            RelPathError::Nul => write!(f, "bad workspace path {name:?}: {}", self.why),
        }
    }
}

impl std::error::Error for MemberPathError {}

/// A refused member is an invalid archive.
impl From<MemberPathError> for io::Error {
    fn from(e: MemberPathError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

/// A member name as a clean relative path (the root for `./`). A member
/// is refused for being absolute, then for a `..` anywhere in it, then for
/// a NUL byte.
pub fn member_path(name: &str) -> Result<RelPath, MemberPathError> {
    let refuse = |why| {
        Err(MemberPathError {
            name: name.to_string(),
            why,
        })
    };
    match RelPath::parse(name) {
        // A name with both a NUL and a `..` is refused for the `..`.
        Err(RelPathError::Nul) if name.split('/').any(|c| c == "..") => {
            refuse(RelPathError::DotDot)
        }
        Err(why) => refuse(why),
        Ok(rel) => Ok(rel),
    }
}

/// A symlink member's target as text (lossily decoded), empty when it has
/// none: [`crate::path::check_symlink`] refuses an empty one.
pub fn link_target<R: io::Read>(entry: &tar::Entry<R>) -> String {
    entry
        .link_name()
        .ok()
        .flatten()
        .map(|t| t.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_are_refused_with_their_own_wording() {
        assert_eq!(member_path("./a//b").unwrap().as_str(), "a/b");
        assert!(member_path("./").unwrap().is_root());
        assert_eq!(
            member_path("/etc/x").unwrap_err().to_string(),
            r#"member "/etc/x" has an absolute path; archive members must be relative"#
        );
        assert_eq!(
            member_path("a/../../b").unwrap_err().to_string(),
            r#"member "a/../../b" contains '..'; archive members must stay inside the destination"#
        );
        assert_eq!(
            member_path("a\0b").unwrap_err().to_string(),
            r#"bad workspace path "a\0b": contains a NUL byte"#
        );
        // Both a NUL and a '..': the '..' is named.
        assert_eq!(member_path("a\0/..").unwrap_err().why, RelPathError::DotDot);
        let e: io::Error = member_path("/x").unwrap_err().into();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
