//! The wire protocol between the pyro host and the guest agent.
//!
//! One request per vsock connection: the host connects to [`AGENT_PORT`],
//! writes one [`Request`] frame and reads one [`Response`] frame. A frame is
//! a 4-byte big-endian length followed by that many bytes of JSON. Keeping
//! both sides on these types is what stops the host and the guest drifting.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};

/// The vsock port the agent listens on.
pub const AGENT_PORT: u32 = 52;

/// Frames bigger than this are refused on both sides, so a confused peer
/// cannot make the other allocate without bound.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// Bumped whenever a message changes shape.
pub const PROTOCOL_VERSION: u32 = 1;

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
    pub fn shell_exit_code(&self) -> i32 {
        match (self.exit_code, self.signal) {
            (Some(code), _) => code,
            (None, Some(sig)) => 128 + sig,
            (None, None) => 255,
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
    Error {
        message: String,
    },
}

/// Writes one frame.
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(io::Error::other)?;
    if body.len() > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "frame of {} bytes exceeds the {MAX_FRAME_BYTES}-byte limit",
                body.len()
            ),
        ));
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf)?;
    w.flush()
}

/// Reads one frame; `Ok(None)` on a clean EOF before the first byte.
pub fn read_frame<R: Read, T: for<'de> Deserialize<'de>>(r: &mut R) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("peer sent a {len}-byte frame, over the {MAX_FRAME_BYTES}-byte limit"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let req = Request::Exec(ExecRequest {
            argv: vec!["git".into(), "--version".into()],
            timeout_ms: Some(5000),
            ..Default::default()
        });
        let mut buf = Vec::new();
        write_frame(&mut buf, &req).unwrap();
        assert_eq!(
            u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize,
            buf.len() - 4
        );
        let back: Request = read_frame(&mut buf.as_slice()).unwrap().unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn eof_before_frame_is_none_and_mid_frame_is_error() {
        let none: Option<Request> = read_frame(&mut &[][..]).unwrap();
        assert!(none.is_none());
        let err = read_frame::<_, Request>(&mut &[0u8, 0][..]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn oversized_frame_is_refused_before_allocation() {
        let huge = ((MAX_FRAME_BYTES + 1) as u32).to_be_bytes();
        let err = read_frame::<_, Request>(&mut &huge[..]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

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
    fn shell_exit_code_maps_signals() {
        let r = ExecResult {
            signal: Some(9),
            ..Default::default()
        };
        assert_eq!(r.shell_exit_code(), 137);
    }
}
