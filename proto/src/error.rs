//! What kind of failure an agent error is, decided by the agent where the
//! failure arises and sent beside the message ([`crate::Response::Error`]),
//! so the host acts on the kind (a file missing before a patch creates it,
//! a full disk that needs advice) and never reads the message's words.
//!
//! Inside the agent a failure travels as an `io::Error` up to the point
//! where the answer is written. Its kind comes from [`AgentError`] when
//! the code where it arose chose one, else from the error itself
//! ([`ErrorKind::of`]).

use crate::bounded_tar::limit_error;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The path the request names does not exist.
    NotFound,
    /// The workspace disk (or its quota) is full.
    NoSpace,
    /// The request cannot be done as asked: a bad path, one that leads
    /// outside the workspace or through a symlink, a file of the wrong
    /// type, a refused archive member.
    Invalid,
    /// The guest's permissions refuse it.
    Permission,
    /// Over a limit: an archive's metadata, a listing's entry count.
    TooLarge,
    /// Any other failure of the guest's I/O.
    Io,
    /// No kind was sent (an agent before protocol 3) or one this host
    /// does not know (a newer agent).
    #[default]
    #[serde(other)]
    Unknown,
}

impl ErrorKind {
    /// The kind `e` stands for: the one an [`AgentError`] inside it
    /// carries, [`ErrorKind::TooLarge`] for a tar limit
    /// ([`crate::bounded_tar::LimitError`]), else the one its
    /// `io::ErrorKind` (the errno's, for a system call) maps to.
    pub fn of(e: &io::Error) -> ErrorKind {
        if let Some(a) = e.get_ref().and_then(|i| i.downcast_ref::<AgentError>()) {
            return a.kind;
        }
        if limit_error(e).is_some() {
            return ErrorKind::TooLarge;
        }
        use io::ErrorKind as Io;
        match e.kind() {
            Io::NotFound => ErrorKind::NotFound,
            Io::StorageFull | Io::QuotaExceeded => ErrorKind::NoSpace,
            Io::PermissionDenied | Io::ReadOnlyFilesystem => ErrorKind::Permission,
            Io::FileTooLarge => ErrorKind::TooLarge,
            Io::InvalidInput
            | Io::InvalidData
            | Io::InvalidFilename
            | Io::AlreadyExists
            | Io::NotADirectory
            | Io::IsADirectory
            | Io::DirectoryNotEmpty
            | Io::CrossesDevices => ErrorKind::Invalid,
            _ => ErrorKind::Io,
        }
    }
}

/// A failure whose [`ErrorKind`] was chosen where it arose, carried inside
/// an `io::Error` (whose text is this one's message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentError {
    pub kind: ErrorKind,
    pub message: String,
}

impl AgentError {
    /// An `io::Error` of `io_kind` (what code on the way may test) that
    /// reads as `message` and answers as `kind`.
    pub fn io(io_kind: io::ErrorKind, kind: ErrorKind, message: String) -> io::Error {
        io::Error::new(io_kind, AgentError { kind, message })
    }
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AgentError {}

impl crate::Response {
    /// The answer for a request that failed with `e`: its text, and its
    /// kind by [`ErrorKind::of`].
    pub fn error(e: &io::Error) -> crate::Response {
        crate::Response::Error {
            kind: ErrorKind::of(e),
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounded_tar::LimitError;
    use crate::Response;

    #[test]
    fn errors_travel_with_their_kind_and_a_missing_kind_reads_as_unknown() {
        let sent = Response::Error {
            kind: ErrorKind::NoSpace,
            message: "no space left on the workspace disk while writing /workspace/a".into(),
        };
        let json = serde_json::to_string(&sent).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"error","error_kind":"no_space","message":"no space left on the workspace disk while writing /workspace/a"}"#
        );
        let back: Response = serde_json::from_str(&json).unwrap();
        assert_eq!(back, sent);
        // An agent before protocol 3 sends no kind; a newer one may send a
        // kind this host does not know. Both still parse.
        for old in [
            r#"{"kind":"error","message":"m"}"#,
            r#"{"kind":"error","error_kind":"quantum_flux","message":"m"}"#,
        ] {
            assert_eq!(
                serde_json::from_str::<Response>(old).unwrap(),
                Response::Error {
                    kind: ErrorKind::Unknown,
                    message: "m".into()
                },
                "{old}"
            );
        }
    }

    #[test]
    fn the_kind_of_an_io_error_is_its_own_or_its_errnos() {
        let chosen = AgentError::io(
            io::ErrorKind::Other,
            ErrorKind::TooLarge,
            "more than 3 entries".into(),
        );
        assert_eq!(ErrorKind::of(&chosen), ErrorKind::TooLarge);
        assert_eq!(chosen.to_string(), "more than 3 entries");
        assert_eq!(chosen.kind(), io::ErrorKind::Other);
        let limit = io::Error::new(io::ErrorKind::InvalidData, LimitError("cap".into()));
        assert_eq!(ErrorKind::of(&limit), ErrorKind::TooLarge);
        for (errno, kind) in [
            (2, ErrorKind::NotFound),    // ENOENT
            (28, ErrorKind::NoSpace),    // ENOSPC
            (122, ErrorKind::NoSpace),   // EDQUOT
            (13, ErrorKind::Permission), // EACCES
            (1, ErrorKind::Permission),  // EPERM
            (30, ErrorKind::Permission), // EROFS
            (27, ErrorKind::TooLarge),   // EFBIG
            (20, ErrorKind::Invalid),    // ENOTDIR
            (21, ErrorKind::Invalid),    // EISDIR
            (18, ErrorKind::Invalid),    // EXDEV
            (5, ErrorKind::Io),          // EIO
        ] {
            let e = io::Error::from_raw_os_error(errno);
            assert_eq!(ErrorKind::of(&e), kind, "errno {errno}: {e}");
        }
        let e = io::Error::new(io::ErrorKind::InvalidInput, "bad path");
        assert_eq!(
            Response::error(&e),
            Response::Error {
                kind: ErrorKind::Invalid,
                message: "bad path".into()
            }
        );
    }
}
