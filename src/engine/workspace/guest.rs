//! Talking to a workspace's guest agent: its socket, pushing an archive
//! into `/workspace`, and the agent's failures as engine errors (by the
//! kind the agent gave, or a lost connection said as what it means for
//! the workspace).

use super::store;
use super::vmm::vmm_alive;
use super::{EngineError, Result};
use crate::engine::agent;
use pyro_proto::{ChunkWriter, ErrorKind, Request, Response};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The agent socket of a running workspace.
pub fn vsock(id: &str) -> PathBuf {
    store::vm_dir(id).join("vsock.sock")
}

/// Streams `archive` into the guest under `dest`: (entries, bytes).
pub fn push_archive(
    id: &str,
    dest: &str,
    write: &mut dyn FnMut(&mut dyn Write) -> Result<()>,
) -> Result<(u64, u64)> {
    let deadline = Instant::now() + agent::TRANSFER_DEADLINE;
    let mut s = agent::open(&vsock(id), deadline)
        .map_err(|e| lost_agent(id, "connecting to the guest agent", e))?;
    let req = Request::PushArchive {
        dest: dest.to_string(),
    };
    pyro_proto::write_frame(&mut s, &req)
        .map_err(|e| lost_agent(id, "sending the archive request", e))?;
    let mut w = ChunkWriter::new(std::io::BufWriter::with_capacity(
        pyro_proto::CHUNK_BYTES + 8,
        &mut s,
    ));
    let sent = write(&mut w);
    // Always end the stream, so the agent answers (an error, if cut short).
    let finished = w
        .finish()
        .and_then(|mut b| b.flush())
        .map_err(|e| lost_agent(id, "streaming the archive", e));
    sent?;
    finished?;
    match pyro_proto::read_reply(&mut s, &req) {
        Ok(Some(Response::Extracted {
            entry_count,
            bytes_written,
        })) => Ok((entry_count, bytes_written)),
        Ok(Some(Response::Error { kind, message })) => Err(agent_error(kind, message)),
        Ok(other) => Err(EngineError::Guest(format!(
            "unexpected agent answer to an archive push: {other:?}"
        ))),
        Err(e) => Err(lost_agent(id, "waiting for the archive to be extracted", e)),
    }
}

/// An agent's error as an engine error, by the kind the agent gave it.
pub fn agent_error(kind: ErrorKind, message: String) -> EngineError {
    match kind {
        ErrorKind::NotFound => EngineError::NotFound(message),
        ErrorKind::NoSpace => EngineError::Guest(format!(
            "{message}; free space in the workspace (delete files with workspace_exec) or reset it"
        )),
        // Every other agent error has always been reported as the
        // request's fault (exit code 2); kept so.
        ErrorKind::Invalid | ErrorKind::Permission | ErrorKind::TooLarge | ErrorKind::Io => {
            EngineError::Invalid(message)
        }
        ErrorKind::Unknown => agent_error(legacy_error_kind(&message), message),
    }
}

/// The kind of an error that came without one: from an agent before
/// protocol 3 (a workspace made from an older image), read from its words
/// as hosts did before kinds were sent.
fn legacy_error_kind(message: &str) -> ErrorKind {
    if message.contains("does not exist") {
        ErrorKind::NotFound
    } else if message.contains("no space left") {
        ErrorKind::NoSpace
    } else {
        ErrorKind::Invalid
    }
}

pub fn lost_agent(id: &str, what: &str, e: std::io::Error) -> EngineError {
    if agent::is_cancelled(&e) {
        return crate::engine::cancel::cancelled_error(&format!("{what} in workspace {id}"));
    }
    if e.kind() == std::io::ErrorKind::TimedOut {
        return EngineError::Guest(format!(
            "the guest agent of workspace {id} did not finish {what} within the operation's deadline ({e}); \
             the VM keeps running and /workspace is intact: retry, or check the guest's load with workspace_exec"
        ));
    }
    let alive = vmm_alive(id);
    EngineError::Guest(format!(
        "lost the guest agent of workspace {id} while {what} ({e}){}",
        if alive {
            ""
        } else {
            "; its VM has stopped (the next operation restarts it with /workspace intact)"
        }
    ))
}

/// Pushes a tar file into the guest.
pub fn push_file(id: &str, dest: &str, tar: &Path) -> Result<(u64, u64)> {
    push_archive(id, dest, &mut |w| {
        let mut f = std::fs::File::open(tar)
            .map_err(|e| EngineError::io(format!("reading {}", tar.display()), e))?;
        std::io::copy(&mut f, w).map_err(|e| lost_agent(id, "streaming the archive", e))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_errors_map_by_their_kind_and_an_old_agents_by_their_words() {
        let missing = "/workspace/a does not exist";
        assert!(matches!(
            agent_error(ErrorKind::NotFound, missing.into()),
            EngineError::NotFound(m) if m == missing
        ));
        let full = "no space left on the workspace disk while writing /workspace/a";
        assert!(matches!(
            agent_error(ErrorKind::NoSpace, full.into()),
            EngineError::Guest(m) if m == format!("{full}; free space in the workspace (delete files with workspace_exec) or reset it")
        ));
        for kind in [
            ErrorKind::Invalid,
            ErrorKind::Permission,
            ErrorKind::TooLarge,
            ErrorKind::Io,
        ] {
            assert!(matches!(
                agent_error(kind, "m".into()),
                EngineError::Invalid(m) if m == "m"
            ));
        }
        // The words no longer decide when a kind came with them: a file
        // named "does not exist" that cannot be read is not missing.
        let odd = "/workspace/does not exist: Permission denied (os error 13)";
        assert!(matches!(
            agent_error(ErrorKind::Permission, odd.into()),
            EngineError::Invalid(_)
        ));
        // Without a kind (an agent before protocol 3), the words do.
        assert!(matches!(
            agent_error(ErrorKind::Unknown, missing.into()),
            EngineError::NotFound(_)
        ));
        assert!(matches!(
            agent_error(ErrorKind::Unknown, full.into()),
            EngineError::Guest(m) if m.ends_with("or reset it")
        ));
        assert!(matches!(
            agent_error(ErrorKind::Unknown, "bad workspace path".into()),
            EngineError::Invalid(_)
        ));
    }
}
