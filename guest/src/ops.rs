//! The agent's side of the file and archive requests: resolves the
//! workspace root, runs the operation, and turns the outcome into a
//! response (streams included).

use crate::beneath::Root;
use crate::{archive, files};
use pyro_proto::{base64_encode, write_frame, ChunkReader, ChunkWriter, Request, Response};
use std::io::{self, Read, Write};
use std::path::PathBuf;

/// `/workspace`, or `$PYRO_WORKSPACE_ROOT` (the agent's tests run it
/// outside a VM against a temporary directory).
pub fn workspace_root() -> PathBuf {
    std::env::var_os("PYRO_WORKSPACE_ROOT")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/workspace"))
}

fn error(e: io::Error) -> Response {
    Response::error(&e)
}

/// Serves one file request on `conn` (whose request frame was read);
/// returns `None` for requests that are not file requests.
pub fn serve<S: Read + Write>(req: &Request, conn: &mut S) -> Option<io::Result<()>> {
    let root = || Root::open(&workspace_root());
    let resp = match req {
        Request::ListFiles { path, recursive } => root()
            .and_then(|r| files::list(&r, path, *recursive))
            .map(|(entry, entries)| Response::Files { entry, entries })
            .unwrap_or_else(error),
        Request::ReadFile { path, max_bytes } => root()
            .and_then(|r| files::read(&r, path, *max_bytes))
            .map(|(size_bytes, data, truncated)| Response::FileData {
                size_bytes,
                data_b64: base64_encode(&data),
                truncated,
            })
            .unwrap_or_else(error),
        Request::Apply(a) => root()
            .and_then(|r| files::apply(&r, a))
            .map(|(written, deleted, bytes_written)| Response::Applied {
                written,
                deleted,
                bytes_written,
            })
            .unwrap_or_else(error),
        Request::Manifest { path } => root()
            .and_then(|r| files::manifest(&r, path))
            .map(|entries| Response::Manifest { entries })
            .unwrap_or_else(error),
        Request::PushArchive { dest } => {
            // Buffered: tar reads 512-byte headers, each a syscall otherwise.
            let buffered = io::BufReader::with_capacity(pyro_proto::CHUNK_BYTES, &mut *conn);
            let mut input = ChunkReader::new(buffered);
            let result = root().and_then(|r| archive::extract(&r, dest, &mut input));
            // Read the rest of the stream even after a failure, so the
            // host's writes complete and it reads this answer.
            if let Err(e) = input.drain() {
                return Some(Err(e));
            }
            match result {
                Ok((entry_count, bytes_written)) => Response::Extracted {
                    entry_count,
                    bytes_written,
                },
                Err(e) => error(e),
            }
        }
        Request::PullArchive { path } => return Some(pull(path, conn)),
        Request::Discard => {
            let mut input = ChunkReader::new(&mut *conn);
            match io::copy(&mut input, &mut io::sink()) {
                Ok(bytes) => Response::Discarded { bytes },
                Err(e) => return Some(Err(e)),
            }
        }
        _ => return None,
    };
    Some(write_frame(conn, &resp))
}

fn pull<S: Read + Write>(path: &str, conn: &mut S) -> io::Result<()> {
    let root = match Root::open(&workspace_root()) {
        Ok(r) => r,
        Err(e) => return write_frame(conn, &error(e)),
    };
    let kind = match archive::kind(&root, path) {
        Ok(k) => k,
        Err(e) => return write_frame(conn, &error(e)),
    };
    write_frame(
        conn,
        &Response::ArchiveStart {
            artifact_type: kind,
        },
    )?;
    let mut out = ChunkWriter::new(&mut *conn);
    let result = archive::create(&root, path, &mut out);
    out.finish()?;
    let done = match result {
        Ok((entry_count, bytes_written)) => Response::ArchiveDone {
            entry_count,
            bytes_written,
        },
        Err(e) => error(e),
    };
    write_frame(conn, &done)
}

/// Flushes the filesystem that holds `dir` (best effort): an exec with
/// `sync_after` calls it so the command's writes survive a killed VM.
pub fn sync_dir(dir: &str) {
    if let Ok(f) = std::fs::File::open(dir) {
        use std::os::fd::AsRawFd;
        // SAFETY: syncfs on a valid descriptor.
        unsafe { libc::syncfs(f.as_raw_fd()) };
    }
}
