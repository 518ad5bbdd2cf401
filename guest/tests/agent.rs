//! The agent binary served over a Unix socket (`PYRO_AGENT_UNIX`) against
//! a temporary workspace root: file requests and archive streams end to
//! end, as the host speaks them, without a VM.

#[path = "../../tests/support/raw_tar.rs"]
mod raw_tar;
#[path = "../../tests/support/temp_dir.rs"]
#[allow(dead_code)]
mod temp_dir;

use pyro_proto::{
    base64_decode, base64_encode, read_frame, write_frame, ApplyRequest, ArtifactType, ChunkReader,
    ChunkWriter, ErrorKind, FileWrite, Request, Response,
};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

struct Agent {
    child: Child,
    /// Its socket and workspace root; removed after the agent is stopped.
    dir: temp_dir::TempDir,
}

impl Agent {
    fn start(tag: &str) -> Agent {
        Agent::start_in(tag, Command::new(env!("CARGO_BIN_EXE_pyro-guest")))
    }

    /// The agent run by `cmd` (the agent binary itself, or a wrapper that
    /// ends by exec'ing it).
    fn start_in(tag: &str, mut cmd: Command) -> Agent {
        let dir = temp_dir::TempDir::new(&format!("agent-{tag}"));
        std::fs::create_dir_all(dir.join("ws")).unwrap();
        let child = cmd
            .env("PYRO_AGENT_UNIX", dir.join("agent.sock"))
            .env("PYRO_WORKSPACE_ROOT", dir.join("ws"))
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(dir.join("agent.sock")).is_err() {
            assert!(Instant::now() < deadline, "agent did not listen");
            std::thread::sleep(Duration::from_millis(10));
        }
        Agent { child, dir }
    }

    fn conn(&self) -> UnixStream {
        UnixStream::connect(self.dir.join("agent.sock")).unwrap()
    }

    fn call(&self, req: &Request) -> Response {
        let mut c = self.conn();
        write_frame(&mut c, req).unwrap();
        read_frame(&mut c).unwrap().unwrap()
    }

    fn ws(&self) -> PathBuf {
        self.dir.join("ws")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tar_with(members: &[(&str, &[u8])]) -> Vec<u8> {
    let regular: Vec<_> = members
        .iter()
        .map(|(name, data)| (*name, tar::EntryType::Regular, *data, ""))
        .collect();
    raw_tar::raw_tar(&regular)
}

fn push(agent: &Agent, dest: &str, archive: &[u8]) -> Response {
    let mut c = agent.conn();
    write_frame(&mut c, &Request::PushArchive { dest: dest.into() }).unwrap();
    let mut w = ChunkWriter::new(&mut c);
    w.write_all(archive).unwrap();
    w.finish().unwrap();
    read_frame(&mut c).unwrap().unwrap()
}

#[test]
fn files_and_archives_over_the_socket() {
    let agent = Agent::start("files");
    std::fs::create_dir_all(agent.dir.join("outside")).unwrap();
    std::os::unix::fs::symlink("../outside", agent.ws().join("out")).unwrap();

    // Push a tree, then read, list and pull it back.
    let archive = tar_with(&[("src/a.txt", b"alpha\n"), ("bin.dat", &[0, 159, 146, 150])]);
    match push(&agent, "proj", &archive) {
        Response::Extracted {
            entry_count,
            bytes_written,
        } => assert_eq!((entry_count, bytes_written), (2, 10)),
        other => panic!("{other:?}"),
    }
    match agent.call(&Request::ReadFile {
        path: "proj/bin.dat".into(),
        max_bytes: 3,
    }) {
        Response::FileData {
            size_bytes,
            data_b64,
            truncated,
        } => {
            assert_eq!(size_bytes, 4);
            assert!(truncated);
            assert_eq!(base64_decode(&data_b64).unwrap(), [0, 159, 146]);
        }
        other => panic!("{other:?}"),
    }
    match agent.call(&Request::ListFiles {
        path: "proj".into(),
        recursive: true,
    }) {
        Response::Files { entry, entries } => {
            assert_eq!(entry.artifact_type, ArtifactType::Directory);
            let names: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
            assert_eq!(names, ["proj/bin.dat", "proj/src", "proj/src/a.txt"]);
        }
        other => panic!("{other:?}"),
    }
    let mut c = agent.conn();
    write_frame(
        &mut c,
        &Request::PullArchive {
            path: "proj".into(),
        },
    )
    .unwrap();
    let start: Response = read_frame(&mut c).unwrap().unwrap();
    assert_eq!(
        start,
        Response::ArchiveStart {
            artifact_type: ArtifactType::Directory
        }
    );
    let mut tar_bytes = Vec::new();
    ChunkReader::new(&mut c)
        .read_to_end(&mut tar_bytes)
        .unwrap();
    let done: Response = read_frame(&mut c).unwrap().unwrap();
    assert_eq!(
        done,
        Response::ArchiveDone {
            entry_count: 3,
            bytes_written: 10
        }
    );
    let mut names: Vec<String> = tar::Archive::new(tar_bytes.as_slice())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["bin.dat", "src/", "src/a.txt"]);

    // Writes through an escaping symlink, and '..' members, are refused and
    // leave nothing behind; the connection still answers properly.
    let r = agent.call(&Request::Apply(ApplyRequest {
        writes: vec![FileWrite {
            path: "out/evil".into(),
            data_b64: base64_encode(b"x"),
        }],
        deletes: vec![],
    }));
    assert!(
        matches!(&r, Response::Error { kind: ErrorKind::Invalid, message } if message.contains("resolves outside /workspace")),
        "{r:?}"
    );
    let evil = tar_with(&[("ok.txt", b"fine"), ("../../escape.txt", b"evil")]);
    let r = push(&agent, "", &evil);
    assert!(
        matches!(&r, Response::Error { kind: ErrorKind::Invalid, message } if message.contains("contains '..'")),
        "{r:?}"
    );
    assert!(std::fs::read_dir(agent.dir.join("outside"))
        .unwrap()
        .next()
        .is_none());
    assert!(!agent.dir.join("escape.txt").exists());
    let r = agent.call(&Request::ReadFile {
        path: "../agent.sock".into(),
        max_bytes: 10,
    });
    assert!(
        matches!(&r, Response::Error { kind: ErrorKind::Invalid, message } if message.contains("'..'")),
        "{r:?}"
    );
}

/// The error kind of an answer, or a panic naming what came instead.
fn error_kind(r: &Response) -> ErrorKind {
    match r {
        Response::Error { kind, .. } => *kind,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn each_failure_is_answered_with_the_kind_the_agent_gave_it() {
    let agent = Agent::start("kinds");
    std::fs::create_dir(agent.ws().join("dir")).unwrap();
    let read = |path: &str| {
        agent.call(&Request::ReadFile {
            path: path.into(),
            max_bytes: 10,
        })
    };
    let missing = read("nope/file");
    assert_eq!(error_kind(&missing), ErrorKind::NotFound, "{missing:?}");
    assert!(format!("{missing:?}").contains("/workspace/nope/file does not exist"));
    for (r, what) in [
        (read("dir"), "not a regular file"),
        (read("../x"), "'..' is not allowed"),
        (read(""), "is a directory, not a file"),
        (
            agent.call(&Request::Manifest {
                path: "dir/../..".into(),
            }),
            "'..'",
        ),
        (
            push(&agent, "", &tar_with(&[("/abs", b"x")])),
            "absolute path",
        ),
    ] {
        assert_eq!(error_kind(&r), ErrorKind::Invalid, "{r:?}");
        assert!(format!("{r:?}").contains(what), "{what}: {r:?}");
    }
    // A 1 MiB long name: refused from its header as over the metadata cap.
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::GNULongName);
    h.set_size(1 << 20);
    h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    h.set_cksum();
    let mut bomb = h.as_bytes().to_vec();
    bomb.resize(512 + (1 << 20), b'a');
    let r = push(&agent, "", &bomb);
    assert_eq!(error_kind(&r), ErrorKind::TooLarge, "{r:?}");
    // A frame that is not a request.
    let mut c = agent.conn();
    c.write_all(&4u32.to_be_bytes()).unwrap();
    c.write_all(b"null").unwrap();
    let r: Response = read_frame(&mut c).unwrap().unwrap();
    assert_eq!(error_kind(&r), ErrorKind::Invalid, "{r:?}");
}

#[test]
fn a_full_workspace_disk_is_answered_as_no_space() {
    // A 64 KiB tmpfs as the workspace, mounted in a user and mount
    // namespace of the agent's own.
    let probe = Command::new("unshare").args(["-rm", "true"]).status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("skipped: needs unshare(1) and unprivileged user namespaces");
        return;
    }
    let mut cmd = Command::new("unshare");
    cmd.args([
        "-rm",
        "sh",
        "-c",
        r#"mount -t tmpfs -o size=64k pyro-test "$PYRO_WORKSPACE_ROOT" && exec "$0""#,
        env!("CARGO_BIN_EXE_pyro-guest"),
    ]);
    let agent = Agent::start_in("nospace", cmd);
    let big = vec![7u8; 256 * 1024];
    let r = agent.call(&Request::Apply(ApplyRequest {
        writes: vec![FileWrite {
            path: "big.bin".into(),
            data_b64: base64_encode(&big),
        }],
        deletes: vec![],
    }));
    assert_eq!(error_kind(&r), ErrorKind::NoSpace, "{r:?}");
    assert!(
        format!("{r:?}")
            .contains("no space left on the workspace disk while writing /workspace/big.bin"),
        "{r:?}"
    );
    let r = push(&agent, "", &tar_with(&[("big.bin", &big)]));
    assert_eq!(error_kind(&r), ErrorKind::NoSpace, "{r:?}");
}

#[test]
fn discard_counts_the_streamed_bytes_and_keeps_nothing() {
    let agent = Agent::start("discard");
    let mut c = agent.conn();
    write_frame(&mut c, &Request::Discard).unwrap();
    let mut w = ChunkWriter::new(&mut c);
    let block = vec![7u8; 100_000];
    for _ in 0..7 {
        w.write_all(&block).unwrap();
    }
    w.finish().unwrap();
    match read_frame(&mut c).unwrap().unwrap() {
        Response::Discarded { bytes } => assert_eq!(bytes, 700_000),
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read_dir(agent.ws()).unwrap().count(), 0);
}

#[test]
fn pushed_files_keep_their_modes_new_or_replaced() {
    use std::os::unix::fs::PermissionsExt;
    let agent = Agent::start("modes");
    let tar_modes = |members: &[(&str, u32, &[u8])]| {
        let mut b = tar::Builder::new(Vec::new());
        for (name, mode, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(*mode);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    };
    let mode_of = |p: &str| {
        std::fs::metadata(agent.ws().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    let first = tar_modes(&[
        ("d/run.sh", 0o755, b"#!/bin/sh\n"),
        ("d/secret", 0o600, b"s"),
        ("d/open", 0o666, b"o"),
    ]);
    assert!(matches!(
        push(&agent, "", &first),
        Response::Extracted { .. }
    ));
    assert_eq!(
        (mode_of("d/run.sh"), mode_of("d/secret"), mode_of("d/open")),
        (0o755, 0o600, 0o666)
    );
    // Replacing existing files goes through a temporary name: same modes.
    let second = tar_modes(&[("d/run.sh", 0o700, b"new\n"), ("d/secret", 0o640, b"t")]);
    assert!(matches!(
        push(&agent, "", &second),
        Response::Extracted { .. }
    ));
    assert_eq!((mode_of("d/run.sh"), mode_of("d/secret")), (0o700, 0o640));
    assert_eq!(
        std::fs::read(agent.ws().join("d/run.sh")).unwrap(),
        b"new\n"
    );
    let leftovers: Vec<_> = std::fs::read_dir(agent.ws().join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".pyro-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Whether process `pid` still runs (a zombie waiting to be reaped does not).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
    })
}

/// Starts `sh` in the workspace through `c`, with a background and a
/// foreground `sleep`; returns (shell pid, background pid) once both run.
fn start_sleepers(agent: &Agent, c: &mut UnixStream, tag: &str) -> (i32, i32) {
    write_frame(
        c,
        &Request::Exec(pyro_proto::ExecRequest {
            shell: Some(format!(
                "sleep 1000 & echo $! > {tag}.bg; echo $$ > {tag}.sh; sleep 1000"
            )),
            cwd: Some(agent.ws().display().to_string()),
            ..Default::default()
        }),
    )
    .unwrap();
    let read_pid = |name: &str| -> Option<i32> {
        std::fs::read_to_string(agent.ws().join(name))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let (Some(sh), Some(bg)) = (
            read_pid(&format!("{tag}.sh")),
            read_pid(&format!("{tag}.bg")),
        ) {
            assert!(running(sh) && running(bg));
            return (sh, bg);
        }
        assert!(Instant::now() < deadline, "the command did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn closing_the_connection_kills_the_commands_process_group() {
    let agent = Agent::start("hangup");
    // Closed outright, and shut down while still open (as a cancelled
    // host operation does).
    for shut_down in [false, true] {
        let tag = if shut_down { "shutdown" } else { "close" };
        let mut c = agent.conn();
        let (sh, bg) = start_sleepers(&agent, &mut c, tag);
        // Still running while the host waits...
        std::thread::sleep(Duration::from_millis(300));
        assert!(running(sh) && running(bg), "{tag}: died early");
        // ...and gone, foreground and background, once it hangs up.
        let kept = if shut_down {
            c.shutdown(std::net::Shutdown::Both).unwrap();
            Some(c)
        } else {
            drop(c);
            None
        };
        let hung_up = Instant::now();
        while running(sh) || running(bg) {
            assert!(
                hung_up.elapsed() < Duration::from_secs(5),
                "{tag}: the command outlived its connection"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(kept);
    }
    // The agent itself serves on.
    assert!(matches!(agent.call(&Request::Ping), Response::Pong { .. }));
}
