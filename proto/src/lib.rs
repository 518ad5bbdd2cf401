//! The wire protocol between the pyro host and the guest agent.
//!
//! One request per vsock connection: the host connects to [`AGENT_PORT`],
//! writes one [`Request`] frame and reads one [`Response`] frame. A frame is
//! a 4-byte big-endian length followed by that many bytes of JSON. Keeping
//! both sides on these types is what stops the host and the guest drifting.
//!
//! The messages are defined here; `frame` reads and writes them, `chunk`
//! carries a byte stream (an archive) between frames on one connection,
//! and `base64` carries file bytes inside the JSON.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub mod archive;
mod base64;
pub mod bounded_tar;
mod chunk;
pub mod client;
pub mod error;
mod frame;
pub mod path;
pub mod reply;

pub use base64::{base64_decode, base64_encode};
pub use chunk::{ChunkReader, ChunkWriter, CHUNK_BYTES};
pub use error::{AgentError, ErrorKind};
pub use frame::{read_frame, read_frame_limited, read_frame_with, write_frame, MAX_FRAME_BYTES};
pub use reply::{read_reply, LISTING_REPLY_MAX_BYTES, MAX_LISTING_ENTRIES, SMALL_REPLY_MAX_BYTES};

/// The vsock port the agent listens on.
pub const AGENT_PORT: u32 = 52;

/// Bumped whenever a message changes shape. 3: errors carry a kind
/// ([`ErrorKind`]); a host reads an error without one as `Unknown`.
pub const PROTOCOL_VERSION: u32 = 3;

/// Default cap on captured stdout and stderr (each) of one exec.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Liveness probe; answered with [`Response::Pong`].
    Ping,
    Exec(ExecRequest),
    /// Flush filesystems and power the VM off (the VMM exits on reboot).
    Shutdown,
    /// Metadata of one workspace path, and of its children when it is a
    /// directory (all descendants with `recursive`).
    ListFiles {
        path: String,
        #[serde(default)]
        recursive: bool,
    },
    /// Up to `max_bytes` of one regular file (symlinks are not followed).
    ReadFile {
        path: String,
        max_bytes: u64,
    },
    /// Writes and deletes applied all-or-nothing (see [`ApplyRequest`]).
    Apply(ApplyRequest),
    /// Every entry under a workspace path with a content hash per file;
    /// the host diffs it against the baseline's.
    Manifest {
        path: String,
    },
    /// The host streams a tar archive (chunked, see [`ChunkWriter`]) right
    /// after this frame; the agent extracts it under `dest` and answers
    /// [`Response::Extracted`].
    PushArchive {
        dest: String,
    },
    /// The agent answers [`Response::ArchiveStart`], streams a tar of `path`
    /// as chunks, then sends a final [`Response::ArchiveDone`] (or `Error`).
    PullArchive {
        path: String,
    },
    /// The host streams chunks right after this frame; the agent reads them
    /// to the end, keeps nothing and answers [`Response::Discarded`]. It
    /// measures the bare transport (`make bench` compares sync push to it).
    Discard,
}

/// All paths in file requests are relative to the workspace root
/// (`/workspace` in the guest), `/`-separated, without `.` or `..`
/// components; the empty string is the root itself. The agent re-checks
/// this and resolves every path beneath the root, so a symlink cannot lead
/// a request outside it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ApplyRequest {
    /// Regular files to create or replace; parents are created.
    #[serde(default)]
    pub writes: Vec<FileWrite>,
    /// Regular files or symlinks to remove.
    #[serde(default)]
    pub deletes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileWrite {
    pub path: String,
    /// The content, base64 (see [`base64_encode`]).
    pub data_b64: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactType {
    File,
    Directory,
    Symlink,
    /// Devices, fifos, sockets: listed, never read or archived.
    Other,
}

impl ArtifactType {
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactType::File => "file",
            ArtifactType::Directory => "directory",
            ArtifactType::Symlink => "symlink",
            ArtifactType::Other => "other",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    /// Relative to the workspace root.
    pub path: String,
    pub artifact_type: ArtifactType,
    pub size_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
    /// Permission bits.
    #[serde(default)]
    pub mode: u32,
    /// SHA-256 of a regular file's content (manifests only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256Digest>,
}

/// A SHA-256 digest: 64 lowercase hex digits on the wire and in records,
/// 32 bytes in memory (a manifest may hold 200,000 of them, and as hex
/// strings they made up a third of its size).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// From 64 hex digits (either case).
    pub fn from_hex(hex: &str) -> Option<Sha256Digest> {
        let b = hex.as_bytes();
        if b.len() != 64 {
            return None;
        }
        let nibble = |c: u8| (c as char).to_digit(16).map(|v| v as u8);
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = nibble(b[2 * i])? << 4 | nibble(b[2 * i + 1])?;
        }
        Some(Sha256Digest(out))
    }
}

impl std::fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Hex;
        impl serde::de::Visitor<'_> for Hex {
            type Value = Sha256Digest;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a SHA-256 as 64 hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Sha256Digest, E> {
                Sha256Digest::from_hex(v)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_str(Hex)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ExecRequest {
    /// Program and arguments, run without a shell.
    #[serde(default)]
    pub argv: Vec<String>,
    /// A shell command line, run as `/bin/sh -c`; used when `argv` is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Wall-clock limit; the whole process group is killed when it passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Cap on each of stdout and stderr; the rest is counted, not kept.
    #[serde(default = "default_max_output")]
    pub max_output_bytes: usize,
    /// Flush the filesystem holding the working directory once the command
    /// ends, so what it wrote survives the VM being killed afterwards.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sync_after: bool,
}

fn default_max_output() -> usize {
    DEFAULT_MAX_OUTPUT_BYTES
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ExecResult {
    /// Exit status when the process exited normally.
    pub exit_code: Option<i32>,
    /// Signal number when the process was killed by a signal.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Total bytes the command wrote, kept or not.
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub timed_out: bool,
    pub duration_ms: u64,
}

impl ExecResult {
    /// The conventional shell exit code: the status, or 128 + signal.
    /// The signal number comes from the guest, so one outside the range a
    /// shell can report (1-127) gives 255 rather than an overflow.
    pub fn shell_exit_code(&self) -> i32 {
        match (self.exit_code, self.signal) {
            (Some(code), _) => code,
            (None, Some(sig)) if (1..128).contains(&sig) => 128 + sig,
            (None, _) => 255,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Response {
    Pong {
        protocol_version: u32,
        agent_version: String,
        /// Guest uptime when the ping was answered, from /proc/uptime.
        uptime_ms: u64,
    },
    Exec(ExecResult),
    Ok,
    /// The request failed. `kind` travels as `error_kind` (`kind` is the
    /// tag); an agent before protocol 3 sends none, read as
    /// [`ErrorKind::Unknown`].
    Error {
        #[serde(rename = "error_kind", default)]
        kind: ErrorKind,
        message: String,
    },
    Files {
        /// The listed path itself.
        entry: FileEntry,
        /// Children (descendants when recursive), sorted by path; empty
        /// unless the path is a directory.
        entries: Vec<FileEntry>,
    },
    FileData {
        size_bytes: u64,
        data_b64: String,
        /// The file is longer than what was returned.
        truncated: bool,
    },
    Applied {
        written: u64,
        deleted: u64,
        bytes_written: u64,
    },
    Manifest {
        entries: Vec<FileEntry>,
    },
    Extracted {
        entry_count: u64,
        bytes_written: u64,
    },
    ArchiveStart {
        artifact_type: ArtifactType,
    },
    ArchiveDone {
        entry_count: u64,
        bytes_written: u64,
    },
    Discarded {
        bytes: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_defaults_apply_when_fields_are_missing() {
        let req: Request = serde_json::from_str(r#"{"op":"exec","shell":"true"}"#).unwrap();
        match req {
            Request::Exec(e) => {
                assert_eq!(e.max_output_bytes, DEFAULT_MAX_OUTPUT_BYTES);
                assert!(e.argv.is_empty());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn file_requests_have_stable_json() {
        let req: Request = serde_json::from_str(r#"{"op":"list_files","path":"src"}"#).unwrap();
        assert_eq!(
            req,
            Request::ListFiles {
                path: "src".into(),
                recursive: false
            }
        );
        let r = Response::ArchiveStart {
            artifact_type: ArtifactType::Directory,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"kind":"archive_start","artifact_type":"directory"}"#
        );
    }

    #[test]
    fn digests_travel_as_hex() {
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let d = Sha256Digest::from_hex(hex).unwrap();
        assert_eq!(d.to_string(), hex);
        assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{hex}\""));
        let back: Sha256Digest =
            serde_json::from_str(&format!("\"{}\"", hex.to_uppercase())).unwrap();
        assert_eq!(back, d);
        for bad in ["", "zz", &hex[..63], &format!("{hex}0")] {
            assert!(serde_json::from_str::<Sha256Digest>(&format!("\"{bad}\"")).is_err());
        }
    }

    #[test]
    fn shell_exit_code_maps_signals() {
        let r = ExecResult {
            signal: Some(9),
            ..Default::default()
        };
        assert_eq!(r.shell_exit_code(), 137);
    }

    #[test]
    fn shell_exit_code_survives_hostile_signal_numbers() {
        for sig in [i32::MAX, i32::MIN, -1, 0, 128] {
            let r = ExecResult {
                signal: Some(sig),
                ..Default::default()
            };
            assert_eq!(r.shell_exit_code(), 255, "{sig}");
        }
    }
}
