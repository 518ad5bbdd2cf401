//! Runs one command: its own process group, bounded output capture, a
//! deadline that kills the whole group, and, when the host hangs up the
//! connection that asked for it (a cancelled or timed-out host
//! operation), the same kill at once: nobody is left to read the result,
//! and the command must not keep running unseen.

use pyro_proto::{ExecRequest, ExecResult};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BASE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// After the command exits, background children may hold its pipes open;
/// keep collecting output only this long before returning.
const EXIT_GRACE: Duration = Duration::from_millis(100);

/// Shell words that are keywords, or builtins that act on the shell itself
/// or differ from the program of the same name (`echo -e`, `pwd -L`): a
/// command starting with one of these always goes through the shell.
const SHELL_WORDS: &[&str] = &[
    ".", ":", "[", "alias", "bg", "break", "case", "cd", "command", "continue", "do", "done",
    "echo", "elif", "else", "esac", "eval", "exec", "exit", "export", "fc", "fg", "fi", "for",
    "getopts", "hash", "if", "in", "jobs", "kill", "local", "printf", "pwd", "read", "readonly",
    "return", "set", "shift", "source", "test", "then", "times", "trap", "type", "ulimit", "umask",
    "unalias", "unset", "until", "wait", "while",
];

/// The words of a shell command that the shell would pass on unchanged:
/// only plain characters (no quoting, expansion, globbing, redirection or
/// operators) and a first word that names a program. Such a command runs
/// without `/bin/sh -c`, as make does for its recipes: starting the shell
/// costs as much as starting the command again (~40 ms per call measured
/// in a nested guest).
fn plain_words(command: &str) -> Option<Vec<String>> {
    let plain = |c: char| c == ' ' || c.is_ascii_alphanumeric() || "_-./,:@%+=".contains(c);
    if !command.chars().all(plain) {
        return None;
    }
    let words: Vec<String> = command
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect();
    let first = words.first()?;
    if first.contains('=') || SHELL_WORDS.contains(&first.as_str()) {
        return None;
    }
    Some(words)
}

pub fn run(req: &ExecRequest) -> io::Result<ExecResult> {
    run_for(req, None)
}

/// [`run`] on behalf of the host connection `peer`: if the peer hangs up
/// before the command ends, its process group is killed and the result is
/// an error of kind `ConnectionAborted`.
pub fn run_for(req: &ExecRequest, peer: Option<RawFd>) -> io::Result<ExecResult> {
    let direct = req
        .shell
        .as_deref()
        .filter(|_| req.argv.is_empty())
        .and_then(plain_words);
    if let Some(r) = run_with(req, direct, peer)? {
        return Ok(r);
    }
    // The program could not start (missing, not executable, a script with
    // no #! line): the shell handles and reports that in its own words.
    Ok(run_with(req, None, peer)?.expect("the shell path always answers"))
}

fn hung_up() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the host closed the connection; the command's process group was killed",
    )
}

/// `Ok(None)` only when a direct start failed before anything ran.
fn run_with(
    req: &ExecRequest,
    direct: Option<Vec<String>>,
    peer: Option<RawFd>,
) -> io::Result<Option<ExecResult>> {
    let start = Instant::now();
    let argv = direct.as_ref().unwrap_or(&req.argv);
    let mut cmd = if !argv.is_empty() {
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]);
        c
    } else if let Some(sh) = &req.shell {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(sh);
        c
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "exec needs argv or shell",
        ));
    };
    let cwd = req.cwd.clone().unwrap_or_else(|| default_cwd().to_string());
    cmd.env_clear()
        .env("PATH", BASE_PATH)
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8")
        .env("TERM", "dumb");
    if direct.is_some() {
        // What the shell would have exported.
        cmd.env("PWD", &cwd);
    }
    cmd.envs(&req.env)
        .current_dir(&cwd)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            if direct.is_some() {
                return Ok(None);
            }
            // Mirror a shell: a command that cannot start is exit 126/127.
            let code = if e.kind() == io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            let what = argv.first().map(String::as_str).unwrap_or("/bin/sh");
            let msg = if e.kind() == io::ErrorKind::NotFound && !std::path::Path::new(&cwd).is_dir()
            {
                format!("pyro: working directory {cwd} does not exist\n")
            } else {
                format!("pyro: cannot run {what}: {e}\n")
            };
            return Ok(Some(ExecResult {
                exit_code: Some(code),
                stderr_bytes: msg.len() as u64,
                stderr: msg,
                duration_ms: start.elapsed().as_millis() as u64,
                ..Default::default()
            }));
        }
    };
    let pgid = child.id() as i32;
    let deadline = req.timeout_ms.map(|ms| start + Duration::from_millis(ms));
    let mut out = Capture::new(req.max_output_bytes);
    let mut err = Capture::new(req.max_output_bytes);
    let mut stdout = child.stdout.take().map(|p| File::from(OwnedFd::from(p)));
    let mut stderr = child.stderr.take().map(|p| File::from(OwnedFd::from(p)));
    let mut timed_out = false;
    let mut exited_at: Option<Instant> = None;
    let mut status = None;
    while stdout.is_some() || stderr.is_some() {
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            timed_out = true;
            kill_group(pgid);
            break;
        }
        if status.is_none() {
            status = child.try_wait()?;
            if status.is_some() {
                exited_at = Some(now);
            }
        }
        if exited_at.is_some_and(|t| now.duration_since(t) >= EXIT_GRACE) {
            break;
        }
        let mut wait_ms = 50u64;
        if let Some(d) = deadline {
            wait_ms = wait_ms.min(d.saturating_duration_since(now).as_millis() as u64 + 1);
        }
        let io = (&mut stdout, &mut out, &mut stderr, &mut err);
        if poll_read(io, peer, wait_ms as i32)? {
            // Background children holding the pipes go with it.
            kill_group(pgid);
            if status.is_none() {
                child.wait()?;
            }
            return Err(hung_up());
        }
    }
    let status = match status {
        Some(s) => s,
        None => match wait_until(&mut child, deadline, peer)? {
            Wait::Exited(s) => s,
            Wait::TimedOut => {
                timed_out = true;
                kill_group(pgid);
                child.wait()?
            }
            Wait::HungUp => {
                kill_group(pgid);
                child.wait()?;
                return Err(hung_up());
            }
        },
    };
    Ok(Some(ExecResult {
        exit_code: status.code(),
        signal: status.signal(),
        stdout_bytes: out.total,
        stderr_bytes: err.total,
        stdout_truncated: out.truncated(),
        stderr_truncated: err.truncated(),
        stdout: String::from_utf8_lossy(&out.kept).into_owned(),
        stderr: String::from_utf8_lossy(&err.kept).into_owned(),
        timed_out,
        duration_ms: start.elapsed().as_millis() as u64,
    }))
}

fn default_cwd() -> &'static str {
    if std::path::Path::new("/workspace").is_dir() {
        "/workspace"
    } else {
        "/"
    }
}

enum Wait {
    Exited(std::process::ExitStatus),
    TimedOut,
    HungUp,
}

/// Waits for the command (whose pipes are closed) to exit, its deadline to
/// pass, or the host to hang up.
fn wait_until(
    child: &mut std::process::Child,
    deadline: Option<Instant>,
    peer: Option<RawFd>,
) -> io::Result<Wait> {
    if deadline.is_none() && peer.is_none() {
        return child.wait().map(Wait::Exited);
    }
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(Wait::Exited(s));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(Wait::TimedOut);
        }
        // Sleeps 5 ms, or less if the host hangs up meanwhile.
        if poll_peer(peer, 5)? {
            return Ok(Wait::HungUp);
        }
    }
}

/// Whether the host hung up `peer`, waiting up to `ms` for it (just
/// sleeping without a peer).
fn poll_peer(peer: Option<RawFd>, ms: i32) -> io::Result<bool> {
    let Some(fd) = peer else {
        std::thread::sleep(Duration::from_millis(ms as u64));
        return Ok(false);
    };
    let mut fds = [libc::pollfd {
        fd,
        events: libc::POLLRDHUP,
        revents: 0,
    }];
    Ok(poll(&mut fds, ms)? && hangup(fds[0].revents))
}

/// `poll(2)` on `fds` for up to `ms`: whether it returned events (false
/// on a timeout or a signal, which the callers' loops simply retry).
fn poll(fds: &mut [libc::pollfd], ms: i32) -> io::Result<bool> {
    // SAFETY: fds is a valid, exclusively borrowed array of pollfd for the
    // call's duration, and its length is what poll is told.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(e)
        };
    }
    Ok(n > 0)
}

/// Poll events that mean the host's end of the connection is gone (a
/// vsock or Unix stream reports the peer's shutdown or close this way).
fn hangup(revents: libc::c_short) -> bool {
    revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

fn kill_group(pgid: i32) {
    // SAFETY: kill takes no pointers; a stale group id only yields ESRCH.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
}

struct Capture {
    kept: Vec<u8>,
    limit: usize,
    total: u64,
}

impl Capture {
    fn new(limit: usize) -> Self {
        Capture {
            kept: Vec::new(),
            limit,
            total: 0,
        }
    }
    fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        let room = self.limit.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&data[..data.len().min(room)]);
    }
    fn truncated(&self) -> bool {
        self.total > self.kept.len() as u64
    }
}

/// Waits up to `ms` for either pipe or a hang-up of `peer`, reads what is
/// there, and drops a pipe at EOF. Returns whether the peer hung up.
fn poll_read<R: Read + AsRawFd>(
    (a, a_cap, b, b_cap): (&mut Option<R>, &mut Capture, &mut Option<R>, &mut Capture),
    peer: Option<RawFd>,
    ms: i32,
) -> io::Result<bool> {
    let mut fds = Vec::with_capacity(3);
    for p in [a.as_ref(), b.as_ref()].into_iter().flatten() {
        fds.push(libc::pollfd {
            fd: p.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
    }
    if let Some(fd) = peer {
        fds.push(libc::pollfd {
            fd,
            events: libc::POLLRDHUP,
            revents: 0,
        });
    }
    if !poll(&mut fds, ms)? {
        return Ok(false);
    }
    if peer.is_some() && hangup(fds[fds.len() - 1].revents) {
        return Ok(true);
    }
    let mut buf = [0u8; 65536];
    for (pipe, cap) in [(a, a_cap), (b, b_cap)] {
        let Some(p) = pipe.as_mut() else { continue };
        let ready = fds.iter().any(|f| f.fd == p.as_raw_fd() && f.revents != 0);
        if !ready {
            continue;
        }
        match p.read(&mut buf) {
            Ok(0) => *pipe = None,
            Ok(k) => cap.push(&buf[..k]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(cmd: &str) -> ExecRequest {
        ExecRequest {
            shell: Some(cmd.into()),
            cwd: Some("/".into()),
            max_output_bytes: 1024,
            ..Default::default()
        }
    }

    #[test]
    fn captures_output_and_exit_code() {
        let r = run(&sh("echo out; echo err >&2; exit 3")).unwrap();
        assert_eq!(r.stdout, "out\n");
        assert_eq!(r.stderr, "err\n");
        assert_eq!(r.exit_code, Some(3));
        assert!(!r.timed_out);
    }

    #[test]
    fn truncates_and_counts_output() {
        let r = run(&sh("head -c 5000 /dev/zero | tr '\\0' a")).unwrap();
        assert_eq!(r.stdout.len(), 1024);
        assert_eq!(r.stdout_bytes, 5000);
        assert!(r.stdout_truncated);
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let mut req = sh("sleep 30 & sleep 30; echo never");
        req.timeout_ms = Some(300);
        let r = run(&req).unwrap();
        assert!(r.timed_out);
        assert_eq!(r.signal, Some(libc::SIGKILL));
        assert!(r.duration_ms < 10_000);
        assert!(!r.stdout.contains("never"));
    }

    #[test]
    fn missing_program_is_127() {
        let req = ExecRequest {
            argv: vec!["/no/such/program".into()],
            ..Default::default()
        };
        let r = run(&req).unwrap();
        assert_eq!(r.exit_code, Some(127));
        assert!(r.stderr.contains("/no/such/program"));
    }

    #[test]
    fn plain_commands_skip_the_shell_and_others_keep_it() {
        let words = |c: &str| plain_words(c);
        assert_eq!(
            words("  make  -j4 test V=1 ").unwrap(),
            ["make", "-j4", "test", "V=1"]
        );
        assert_eq!(words("true").unwrap(), ["true"]);
        for shell in [
            "",
            "   ",
            "echo -e x",
            "cd src",
            "A=1 make",
            "ls *.c",
            "ls ~",
            "cat a > b",
            "a && b",
            "a; b",
            "echo $HOME",
            "grep 'x y' f",
            "grep \\x f",
            "sleep 1 &",
            "a\nb",
            "a\tb",
            "pwd",
        ] {
            assert_eq!(words(shell), None, "{shell:?}");
        }
    }

    #[test]
    fn a_plain_command_behaves_as_under_the_shell() {
        let r = run(&sh("printenv PWD HOME")).unwrap();
        assert_eq!(r.stdout, "/\n/root\n");
        let r = run(&sh("ls /proc/self/fd/0")).unwrap();
        assert_eq!(r.exit_code, Some(0), "{}", r.stderr);
        // A missing program is reported by the shell, as without the fast path.
        let r = run(&sh("no-such-program-pyro --flag")).unwrap();
        assert_eq!(r.exit_code, Some(127));
        assert!(r.stderr.contains("not found"), "{}", r.stderr);
        // A script without #! runs as a shell script, as the shell would.
        let dir = std::env::temp_dir().join(format!("pyro-exec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("noshebang");
        std::fs::write(&script, "echo from-script\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let r = run(&sh(&script.display().to_string())).unwrap();
        assert_eq!(r.stdout, "from-script\n", "{}", r.stderr);
        std::fs::remove_dir_all(&dir).unwrap();
        // Nonexistent working directory: the same clear message either way.
        let mut req = sh("true");
        req.cwd = Some("/no/such/dir".into());
        let r = run(&req).unwrap();
        assert_eq!(r.exit_code, Some(127));
        assert!(
            r.stderr.contains("/no/such/dir does not exist"),
            "{}",
            r.stderr
        );
    }

    #[test]
    fn background_child_holding_pipes_does_not_block() {
        let r = run(&sh("sleep 5 & echo done")).unwrap();
        assert_eq!(r.stdout, "done\n");
        assert!(r.duration_ms < 4000, "took {} ms", r.duration_ms);
    }
}
