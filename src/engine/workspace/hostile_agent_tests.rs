//! The host against a hostile guest agent.
//!
//! A fake agent serves the real protocol on a workspace's `vsock.sock`
//! (the hybrid-vsock `CONNECT <port>` handshake, then request and answer
//! frames and chunk streams) and answers what a taken-over guest could:
//! tar metadata bombs, a terabyte sparse file, frames that claim more
//! than the host allows or trickle in, answers larger than asked, huge
//! manifests and diffs. The host side is the real engine code (export's
//! receiving half, file reads, exec, diff, summary) in a child process:
//! this test binary run again on [`child_process_entry`], with `PYRO_HOME`
//! pointing at a fabricated workspace. The child measures its own peak RSS
//! (`VmHWM`) around the operation and fails if it grew by more than
//! [`MAX_HOST_GROWTH`]; the parent, which runs the fake agent, checks
//! how much it managed to send (a refused stream is dropped, not drained).

use super::diff::{self, Budget, DIFF_MAX_BYTES, DIFF_MAX_ENTRIES, DIFF_MAX_FILES};
use super::export::{self, EXPORT_MAX_BYTES, EXPORT_MAX_ENTRIES};
use super::raw_tar::header_only;
use super::{files, review};
use pyro_proto::bounded_tar::MAX_TAR_META_BYTES;
use pyro_proto::{
    base64_encode, read_frame, write_frame, ArtifactType, ChunkWriter, ExecRequest, ExecResult,
    Request, Response, LISTING_REPLY_MAX_BYTES, MAX_LISTING_ENTRIES, SMALL_REPLY_MAX_BYTES,
};
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How much the host's peak RSS may grow while it deals with a hostile
/// agent. Without the bounds, a claimed 1 GiB long name alone grew it by
/// 1.5 GiB.
const MAX_HOST_GROWTH: u64 = 64 * 1024 * 1024;

/// The child gets this long before it is killed and the test fails.
const CHILD_DEADLINE: Duration = Duration::from_secs(120);

const SCENARIO_ENV: &str = "PYRO_HOSTILE_SCENARIO";
const ID_ENV: &str = "PYRO_HOSTILE_WORKSPACE";

// ---- the fake agent (parent side) ---------------------------------------

/// Counts what the fake agent wrote.
struct Counting<'a> {
    inner: &'a mut UnixStream,
    sent: &'a AtomicU64,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What the fake agent does with one connection: the `n`th, whose
/// request it has read.
type Serve = fn(n: usize, req: Request, out: &mut dyn Write) -> io::Result<()>;

struct FakeAgent {
    sock: PathBuf,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    conns: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeAgent {
    fn start(sock: &Path, serve: Serve) -> FakeAgent {
        let listener = UnixListener::bind(sock).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let conns = Arc::new(AtomicUsize::new(0));
        let (stop2, sent2, conns2) = (stop.clone(), sent.clone(), conns.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut s) = stream else { continue };
                let n = conns2.fetch_add(1, Ordering::SeqCst);
                let sent = sent2.clone();
                // One thread per connection: a trickling answer must not
                // hold up the next one.
                std::thread::spawn(move || {
                    let _ = handshake(&mut s).and_then(|()| {
                        let req: Request =
                            read_frame(&mut s)?.ok_or(io::ErrorKind::UnexpectedEof)?;
                        let mut out = Counting {
                            inner: &mut s,
                            sent: &sent,
                        };
                        serve(n, req, &mut out)
                    });
                });
            }
        });
        FakeAgent {
            sock: sock.to_path_buf(),
            stop,
            sent,
            conns,
            thread: Some(thread),
        }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = UnixStream::connect(&self.sock);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The agent side of the hybrid vsock handshake (read a byte at a time:
/// the request frame follows the line).
fn handshake(s: &mut UnixStream) -> io::Result<()> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < 64 && !line.ends_with(b"\n") {
        if s.read(&mut b)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        line.push(b[0]);
    }
    if line != b"CONNECT 52\n" {
        return Err(io::Error::other(format!("bad handshake {line:?}")));
    }
    s.write_all(b"OK 1\n")
}

/// A fabricated workspace: its directory with an empty baseline, and the
/// fake agent on its socket.
struct Rig {
    home: crate::temp_dir::TempDir,
    id: String,
    /// Stopped before the directory (and its socket) goes.
    agent: Option<FakeAgent>,
}

impl Rig {
    fn new(serve: Serve) -> Rig {
        let home = crate::temp_dir::TempDir::new("hostile");
        let id = crate::engine::paths::random_id(6);
        let dir = home.join("workspaces").join(&id);
        std::fs::create_dir_all(dir.join("vm")).unwrap();
        std::fs::write(dir.join("baseline.json"), "[]").unwrap();
        std::fs::write(dir.join("baseline.tar"), [0u8; 1024]).unwrap();
        let agent = Some(FakeAgent::start(&dir.join("vm/vsock.sock"), serve));
        Rig { home, id, agent }
    }

    fn agent(&self) -> &FakeAgent {
        self.agent.as_ref().unwrap()
    }

    /// Runs `scenario`'s host side in a child process; panics with its
    /// output if it failed.
    fn run_host(&self, scenario: &str) -> String {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "engine::workspace::hostile_agent_tests::child_process_entry",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("PYRO_HOME", self.home.path())
            .env(SCENARIO_ENV, scenario)
            .env(ID_ENV, &self.id)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break Some(st);
            }
            if start.elapsed() > CHILD_DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        match status {
            Some(st) if st.success() && out.contains("HOSTILE-SCENARIO-DONE") => {
                if let Some(l) = out.lines().find(|l| l.contains("peak RSS growth")) {
                    let at = l.find("peak RSS growth").unwrap_or(0);
                    eprintln!("{scenario}: {}", &l[at..]);
                }
                out
            }
            Some(st) => panic!("{scenario}: the host side failed ({st}):\n{out}"),
            None => panic!("{scenario}: the host side hung past {CHILD_DEADLINE:?}:\n{out}"),
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // The directory (a field) goes after this.
        drop(self.agent.take());
    }
}

/// Writes `archive_start`, then the chunked stream `body` (which may be
/// endless: the host is expected to hang up).
fn serve_archive(out: &mut dyn Write, body: &mut dyn Read) -> io::Result<()> {
    write_frame(
        &mut &mut *out,
        &Response::ArchiveStart {
            artifact_type: ArtifactType::Directory,
        },
    )?;
    let mut w = ChunkWriter::new(out);
    io::copy(body, &mut w)?;
    w.finish()?;
    Ok(())
}

/// `.0` repeated `.1` times, produced as it is read.
struct Blocks(Vec<u8>, u64);

impl Read for Blocks {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while self.1 > 0 && out.len() - n >= self.0.len() {
            out[n..n + self.0.len()].copy_from_slice(&self.0);
            n += self.0.len();
            self.1 -= 1;
        }
        Ok(n)
    }
}

/// A header claiming `size` bytes, then that many bytes of `fill`,
/// produced as they are sent.
fn claim(name: &str, kind: tar::EntryType, size: u64, fill: u8) -> impl Read {
    io::Cursor::new(header_only(name, kind, size)).chain(io::repeat(fill).take(size))
}

/// A manifest frame of `count` file entries with `path_len`-byte paths,
/// each claiming `size` bytes, written as it is generated (the fake agent
/// must not hold it either, or it would count in no one's memory).
fn write_manifest(out: &mut dyn Write, count: usize, path_len: usize, size: u64) -> io::Result<()> {
    let entry = |i: usize| {
        format!(
            r#"{{"path":"{i:0>w$}","artifact_type":"file","size_bytes":{size},"mode":420,"sha256":"{:064x}"}}"#,
            i,
            w = path_len
        )
    };
    let head = r#"{"kind":"manifest","entries":["#;
    let len: usize = head.len() + 2 + (0..count).map(|i| entry(i).len() + 1).sum::<usize>() - 1;
    let mut w = io::BufWriter::with_capacity(64 * 1024, out);
    w.write_all(&(len as u32).to_be_bytes())?;
    w.write_all(head.as_bytes())?;
    for i in 0..count {
        if i > 0 {
            w.write_all(b",")?;
        }
        w.write_all(entry(i).as_bytes())?;
    }
    w.write_all(b"]}")?;
    w.flush()
}

/// Answers a read with exactly `max_bytes` of text (`x` lines).
fn answer_read(req: &Request, out: &mut dyn Write) -> io::Result<()> {
    let Request::ReadFile { max_bytes, .. } = req else {
        return write_frame(
            &mut &mut *out,
            &Response::Error {
                kind: pyro_proto::ErrorKind::Invalid,
                message: "unexpected".into(),
            },
        );
    };
    let mut data = vec![b'x'; *max_bytes as usize];
    for (i, b) in data.iter_mut().enumerate() {
        if i % 64 == 63 {
            *b = b'\n';
        }
    }
    write_frame(
        &mut &mut *out,
        &Response::FileData {
            size_bytes: *max_bytes,
            data_b64: base64_encode(&data),
            truncated: false,
        },
    )
}

// ---- the child process: the real host code ------------------------------

/// A `/proc/self/status` figure of this process (`VmHWM`: peak resident,
/// `VmPeak`: peak mapped), in bytes.
fn status_bytes(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

fn peak_rss() -> u64 {
    status_bytes("VmHWM")
}

fn vsock(id: &str) -> PathBuf {
    super::guest::vsock(id)
}

/// The host side of each scenario; panics when the host misbehaves.
fn host_side(scenario: &str, id: &str) {
    let stage = super::store::dir(id).join("stage");
    std::fs::create_dir_all(&stage).unwrap();
    let refused = |r: super::Result<_>| match r {
        Ok(_) => panic!("{scenario}: the host accepted it"),
        Err(e) => e.to_string(),
    };
    match scenario {
        "export_long_name_bomb" | "export_pax_bomb" => {
            let e = refused(export::receive(id, "", &stage).map(|_| ()));
            let what = if scenario == "export_pax_bomb" {
                "PAX extension"
            } else {
                "GNU long name"
            };
            assert!(
                e.contains(&format!(
                    "a {what} header of 1073741824 bytes is over the {MAX_TAR_META_BYTES}-byte limit"
                )),
                "{e}"
            );
        }
        "export_sparse_terabyte" => {
            let e = refused(export::receive(id, "", &stage).map(|_| ()));
            assert!(
                e.contains(&format!(
                    "member \"big\" is 1099511627776 bytes, over the {EXPORT_MAX_BYTES}-byte limit"
                )),
                "{e}"
            );
            // Nothing of it was written.
            assert_eq!(std::fs::read_dir(stage.join("tree")).unwrap().count(), 0);
        }
        "export_too_many_entries" => {
            let e = refused(export::receive(id, "", &stage).map(|_| ()));
            assert!(
                e.contains(&format!(
                    "the archive has more than {EXPORT_MAX_ENTRIES} members"
                )),
                "{e}"
            );
        }
        "export_oversized_start_frame" => {
            let e = refused(export::receive(id, "", &stage).map(|_| ()));
            assert!(
                e.contains(&format!("over the {SMALL_REPLY_MAX_BYTES}-byte limit")),
                "{e}"
            );
        }
        "read_more_than_asked" => {
            // A frame longer than 100 bytes of base64 allows: refused.
            let e = refused(
                files::read_raw(
                    id,
                    "f",
                    100,
                    std::time::Instant::now() + crate::engine::agent::FILE_OP_DEADLINE,
                )
                .map(|_| ()),
            );
            assert!(e.contains("-byte limit"), "{e}");
            // Within the frame limit but more data than asked: cut.
            let (size, data, truncated) = files::read_raw(
                id,
                "f",
                100,
                std::time::Instant::now() + crate::engine::agent::FILE_OP_DEADLINE,
            )
            .unwrap();
            assert_eq!((size, data.len(), truncated), (100, 100, true));
        }
        "exec_more_than_asked" => {
            let req = Request::Exec(ExecRequest {
                shell: Some("true".into()),
                max_output_bytes: 1000,
                ..Default::default()
            });
            let e =
                crate::engine::agent::call(&vsock(id), &req, Duration::from_secs(10)).unwrap_err();
            assert!(e.to_string().contains("-byte limit"), "{e}");
            match crate::engine::agent::call(&vsock(id), &req, Duration::from_secs(10)).unwrap() {
                Response::Exec(r) => {
                    assert_eq!((r.stdout.len(), r.stderr.len()), (1000, 1000));
                    assert!(r.stdout_truncated && r.stderr_truncated);
                }
                other => panic!("{other:?}"),
            }
        }
        "trickled_frame" => {
            let req = Request::Exec(ExecRequest {
                max_output_bytes: pyro_proto::DEFAULT_MAX_OUTPUT_BYTES,
                ..Default::default()
            });
            // Nothing is mapped for the 12 MiB the frame claims (a zeroed
            // buffer of that size would not be resident yet, but mapped).
            let mapped = status_bytes("VmPeak");
            let e =
                crate::engine::agent::call(&vsock(id), &req, Duration::from_secs(5)).unwrap_err();
            // The agent hangs up mid-frame (or, trickling slower than the
            // read timeout, is timed out).
            assert!(
                e.to_string().contains("inside a 12582912-byte frame")
                    || matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ),
                "{e}"
            );
            let grew = status_bytes("VmPeak").saturating_sub(mapped);
            assert!(
                grew < 4 << 20,
                "{} KiB mapped for a trickled frame",
                grew >> 10
            );
        }
        "manifest_over_the_caps" => {
            let e = refused(diff::diff(id, true).map(|_| ()));
            assert!(
                e.contains(&format!("over the {LISTING_REPLY_MAX_BYTES}-byte limit")),
                "{e}"
            );
            let e = refused(diff::diff(id, true).map(|_| ()));
            assert!(
                e.contains(&format!("more than {MAX_LISTING_ENTRIES} entries")),
                "{e}"
            );
        }
        "huge_manifest_and_diff" => {
            let v = diff::diff(id, true).unwrap();
            // Every change is counted; the list and the patches stop at
            // their budgets.
            assert_eq!(v.summary.total, MAX_LISTING_ENTRIES as u64);
            assert_eq!(v.summary.added, MAX_LISTING_ENTRIES as u64);
            assert_eq!(v.entries.len(), DIFF_MAX_ENTRIES);
            assert!(v.truncated);
            let b = &v.budget;
            assert_eq!(b.bytes_read, DIFF_MAX_BYTES);
            assert_eq!(b.files_read as u64, DIFF_MAX_BYTES / (64 * 1024));
            assert_eq!(v.summary.text_patched, DIFF_MAX_BYTES / (64 * 1024));
            assert_eq!(b.entries_omitted, MAX_LISTING_ENTRIES - DIFF_MAX_ENTRIES);
            let over = &v.entries[DIFF_MAX_ENTRIES - 1];
            assert!(over.over_budget);
            assert!(over.text_patch.is_none());
            assert_eq!(over.sha256.as_ref().unwrap().len(), 64);
            assert_eq!(over.size_bytes, Some(64 * 1024));
            // What the MCP server would send.
            let line = serde_json::to_string(&v).unwrap();
            assert!(line.len() < 16 << 20, "{} bytes", line.len());
            drop((v, line));
            // The summary of the same session.
            let s = review::summary(
                &super::view::describe(&super::store::sample_record(id)),
                &diff::diff(id, false).unwrap(),
            );
            assert!(s.changes.truncated);
            assert_eq!(s.changes.summary.total, MAX_LISTING_ENTRIES as u64);
        }
        "huge_listing" => {
            let v = files::listing(id, "", true).unwrap();
            assert_eq!(v.count, MAX_LISTING_ENTRIES);
            assert_eq!(v.entries.len(), files::LIST_MAX_ENTRIES);
            assert!(v.truncated);
            let line = serde_json::to_string(&v).unwrap();
            assert!(line.len() < 4 << 20, "{} bytes", line.len());
        }
        "diff_file_budget" => {
            let v = diff::diff(id, true).unwrap();
            assert_eq!(v.budget.files_read, DIFF_MAX_FILES);
            assert_eq!(v.budget.files_over_budget, 100);
            assert_eq!(v.summary.text_patched, DIFF_MAX_FILES as u64);
            // The patch holds exactly the diffed files.
            let patch = &v.patch;
            assert_eq!(patch.matches("\n+++ b/").count(), DIFF_MAX_FILES);
            // A smaller budget, in bytes this time: 3 files of 640 bytes.
            let v = diff::diff_within(
                id,
                true,
                Budget {
                    bytes: 3 * 640,
                    files: usize::MAX,
                },
            )
            .unwrap();
            assert_eq!(v.budget.files_read, 3);
            assert_eq!(v.budget.bytes_read, 3 * 640);
            assert!(v.truncated);
        }
        other => panic!("unknown scenario {other}"),
    }
}

/// The child process's entry: runs the scenario named in the environment
/// (nothing when run without one, as by `cargo test -- --ignored`).
#[test]
#[ignore = "entry point of the hostile-agent tests' child process"]
fn child_process_entry() {
    let (Ok(scenario), Ok(id)) = (std::env::var(SCENARIO_ENV), std::env::var(ID_ENV)) else {
        return;
    };
    let before = peak_rss();
    host_side(&scenario, &id);
    let growth = peak_rss().saturating_sub(before);
    println!("peak RSS growth: {} KiB", growth / 1024);
    assert!(
        growth < MAX_HOST_GROWTH,
        "{scenario}: the host's peak RSS grew by {} MiB (limit {} MiB)",
        growth >> 20,
        MAX_HOST_GROWTH >> 20
    );
    println!("HOSTILE-SCENARIO-DONE");
}

// ---- the tests -----------------------------------------------------------

/// Most a fake agent may get sent before a refusing host hangs up: the
/// socket buffers and a few chunks in flight, far below what it claimed.
const SENT_AFTER_REFUSAL: u64 = 16 * 1024 * 1024;

#[test]
fn a_long_name_bomb_in_an_export_is_refused_and_the_stream_dropped() {
    let rig = Rig::new(|_, _, out| {
        serve_archive(
            out,
            &mut claim("././@LongLink", tar::EntryType::GNULongName, 1 << 30, b'a'),
        )
    });
    rig.run_host("export_long_name_bomb");
    assert!(
        rig.agent().sent() < SENT_AFTER_REFUSAL,
        "{}",
        rig.agent().sent()
    );
}

#[test]
fn a_pax_bomb_in_an_export_is_refused_and_the_stream_dropped() {
    let rig = Rig::new(|_, _, out| {
        serve_archive(
            out,
            &mut claim("pax", tar::EntryType::XHeader, 1 << 30, b'1'),
        )
    });
    rig.run_host("export_pax_bomb");
    assert!(
        rig.agent().sent() < SENT_AFTER_REFUSAL,
        "{}",
        rig.agent().sent()
    );
}

#[test]
fn a_terabyte_sparse_file_is_refused_before_a_byte_of_it_is_written() {
    // What the honest agent sends for `truncate -s 1T big`: the header,
    // then zeros for as long as the host reads.
    let rig = Rig::new(|_, _, out| {
        serve_archive(out, &mut claim("big", tar::EntryType::Regular, 1 << 40, 0))
    });
    rig.run_host("export_sparse_terabyte");
    assert!(
        rig.agent().sent() < SENT_AFTER_REFUSAL,
        "{}",
        rig.agent().sent()
    );
}

#[test]
fn an_export_of_more_entries_than_allowed_is_refused() {
    // The same directory over and over: no disk use, only the count.
    let rig = Rig::new(|_, _, out| {
        let one = header_only("d/", tar::EntryType::Directory, 0);
        serve_archive(out, &mut Blocks(one, EXPORT_MAX_ENTRIES + 1))
    });
    rig.run_host("export_too_many_entries");
}

#[test]
fn an_archive_start_frame_over_its_limit_is_refused_from_its_length() {
    let rig = Rig::new(|_, _, out| {
        out.write_all(&(60u32 << 20).to_be_bytes())?;
        io::copy(&mut io::repeat(b' ').take(60 << 20), out).map(|_| ())
    });
    rig.run_host("export_oversized_start_frame");
    assert!(
        rig.agent().sent() < SENT_AFTER_REFUSAL,
        "{}",
        rig.agent().sent()
    );
}

#[test]
fn a_read_answered_with_more_than_max_bytes_is_refused_or_clipped() {
    let rig = Rig::new(|n, _, out| {
        let data = vec![b'z'; if n == 0 { 10 << 20 } else { 30_000 }];
        write_frame(
            &mut &mut *out,
            &Response::FileData {
                size_bytes: 100,
                data_b64: base64_encode(&data),
                truncated: false,
            },
        )
    });
    rig.run_host("read_more_than_asked");
}

#[test]
fn exec_output_beyond_max_output_bytes_is_refused_or_clipped() {
    let rig = Rig::new(|n, _, out| {
        // 1 MiB of output is past the frame limit for 1000 bytes asked;
        // 5000 bytes per stream fits the frame but not the ask.
        let len = if n == 0 { 1 << 20 } else { 5000 };
        write_frame(
            &mut &mut *out,
            &Response::Exec(ExecResult {
                exit_code: Some(0),
                stdout: "o".repeat(len),
                stderr: "\u{1}".repeat(len),
                ..Default::default()
            }),
        )
    });
    rig.run_host("exec_more_than_asked");
}

#[test]
fn a_trickled_frame_is_never_allocated_from_its_claimed_length() {
    let rig = Rig::new(|_, _, out| {
        // 12 MiB claimed, a byte every 20 ms for 2 s, then gone.
        out.write_all(&(12u32 << 20).to_be_bytes())?;
        out.write_all(b"{\"kind\":\"exec\",\"stdout\":\"")?;
        for _ in 0..100 {
            out.write_all(b"x")?;
            out.flush()?;
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    });
    let out = rig.run_host("trickled_frame");
    assert!(out.contains("peak RSS growth"), "{out}");
}

#[test]
fn manifests_over_the_byte_or_entry_cap_are_refused() {
    let rig = Rig::new(|n, _, out| {
        if n == 0 {
            // 33 MiB claimed: refused from the length.
            out.write_all(&((LISTING_REPLY_MAX_BYTES as u32) + 1).to_be_bytes())?;
            return io::copy(&mut io::repeat(b' ').take(33 << 20), out).map(|_| ());
        }
        // One entry too many, small enough in bytes.
        write_manifest(out, MAX_LISTING_ENTRIES + 1, 1, 0)
    });
    rig.run_host("manifest_over_the_caps");
}

#[test]
fn a_huge_manifest_and_diff_stay_within_the_diff_budgets_and_host_memory() {
    // 200,000 new files (paths sized to about 31 MiB of manifest), each
    // claiming 64 KiB of text; every read is answered in full.
    let rig = Rig::new(|_, req, out| match req {
        Request::Manifest { .. } => write_manifest(out, MAX_LISTING_ENTRIES, 20, 64 * 1024),
        other => answer_read(&other, out),
    });
    rig.run_host("huge_manifest_and_diff");
}

#[test]
fn a_huge_listing_is_returned_up_to_its_entry_cap() {
    let rig = Rig::new(|_, _, out| {
        // `write_manifest`'s entries in a `files` answer.
        let mut body = Vec::new();
        write_manifest(&mut body, MAX_LISTING_ENTRIES, 20, 1)?;
        let text = std::str::from_utf8(&body[4..]).unwrap().replacen(
            r#"{"kind":"manifest","#,
            r#"{"kind":"files","entry":{"path":"","artifact_type":"directory","size_bytes":0},"#,
            1,
        );
        out.write_all(&(text.len() as u32).to_be_bytes())?;
        out.write_all(text.as_bytes())
    });
    rig.run_host("huge_listing");
}

#[test]
fn a_diff_stops_reading_at_its_file_budget() {
    let rig = Rig::new(|_, req, out| match req {
        Request::Manifest { .. } => write_manifest(out, DIFF_MAX_FILES + 100, 8, 640),
        other => answer_read(&other, out),
    });
    rig.run_host("diff_file_budget");
    // One manifest and one read per diffed file, twice (both budgets).
    assert_eq!(
        rig.agent().conns.load(Ordering::SeqCst),
        2 + DIFF_MAX_FILES + 3
    );
}
