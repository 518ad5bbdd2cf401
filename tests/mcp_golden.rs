//! Golden files pinning what MCP clients see of the tools: the
//! `tools/list` answer of every profile, byte for byte, as the real
//! `pyro mcp serve` writes it on stdout. A change to a tool's name,
//! description, schema or annotations fails here and shows the difference;
//! when the change is intended, regenerate the files with
//! `PYRO_BLESS=1 cargo test --test mcp_golden` and review the diff.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

const PYRO: &str = env!("CARGO_BIN_EXE_pyro");
const PROFILES: [&str; 3] = ["vm-run", "workspace-core", "workspace-full"];

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Compares `actual` with golden file `name`, or writes it under
/// `PYRO_BLESS=1`.
fn check_golden(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("PYRO_BLESS").is_some() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; generate it with PYRO_BLESS=1 cargo test --test mcp_golden",
            path.display()
        )
    });
    if want != actual {
        let first = want
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(want.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the server's answer from line {} on:\n  golden: {:?}\n  actual: {:?}\n\
             (if intended: PYRO_BLESS=1 cargo test --test mcp_golden, then review the diff)",
            path.display(),
            first + 1,
            want.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

/// The raw stdout lines answering `initialize` and `tools/list` from
/// `pyro mcp serve --profile PROFILE`, run in an empty directory (whose
/// path reads `<cwd>` in the first).
fn session_lines(profile: &str) -> (String, String) {
    // Tests run in parallel: one directory per session.
    static SESSIONS: AtomicUsize = AtomicUsize::new(0);
    let home = std::env::temp_dir().join(format!(
        "pyro-golden-{profile}-{}-{}",
        std::process::id(),
        SESSIONS.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&home).unwrap();
    let mut child = Command::new(PYRO)
        .args(["mcp", "serve", "--profile", profile])
        .current_dir(&home)
        .env("PYRO_HOME", &home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pyro mcp serve");
    let mut stdin = child.stdin.take().unwrap();
    for msg in [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
               "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                          "clientInfo": {"name": "mcp_golden.rs", "version": "0"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    ] {
        writeln!(stdin, "{msg}").unwrap();
    }
    drop(stdin);
    let (mut init, mut list) = (None, None);
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["id"] == 1 {
            init = Some(line.replace(home.to_str().unwrap(), "<cwd>"));
        } else if v["id"] == 2 {
            list = Some(line);
        }
    }
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&home);
    (
        init.expect("the server answered initialize"),
        list.expect("the server answered tools/list"),
    )
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap() + "\n"
}

#[test]
fn tools_list_of_every_profile_matches_its_golden_file() {
    for profile in PROFILES {
        let (_, line) = session_lines(profile);
        let v: Value = serde_json::from_str(&line).unwrap();
        // The wire form is serde_json's compact form of the value (keys
        // sorted), so equal values mean equal bytes; the golden file keeps
        // the value pretty-printed so that a change reads as a diff.
        assert_eq!(line, serde_json::to_string(&v).unwrap(), "{profile}");
        check_golden(&format!("tools_list.{profile}.json"), &pretty(&v["result"]));
    }
}

/// The instructions name the profile's tools and count the ones not built
/// yet, so they too are pinned per profile.
#[test]
fn initialize_of_every_profile_matches_its_golden_file() {
    for profile in PROFILES {
        let (line, _) = session_lines(profile);
        let v: Value = serde_json::from_str(&line).unwrap();
        check_golden(&format!("initialize.{profile}.json"), &pretty(&v["result"]));
    }
}
