//! Golden files: output pinned byte for byte in tests/golden/, so that any
//! change to what users or MCP clients see fails a test and shows where.
//!
//! - [`check`] compares a test's output with its golden file, or rewrites
//!   the file when `PYRO_BLESS` is set (`PYRO_BLESS=1 cargo test --test
//!   NAME`; then review the diff before committing it);
//! - [`transcript`] writes down one command's run (argv, exit code, both
//!   streams) the way every golden transcript shows it;
//! - [`shape`] reduces JSON to its field names and types, for output whose
//!   values depend on the host or the moment;
//! - [`normalize`] replaces what changes from run to run in a transcript
//!   (the test's directory, timestamps, measured durations and sizes).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

/// Where the golden files live.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// How to regenerate this test binary's golden files.
fn bless_hint() -> String {
    format!(
        "PYRO_BLESS=1 cargo test --test {}",
        env!("CARGO_CRATE_NAME")
    )
}

/// Compares `actual` with golden file `name`; a difference fails the test
/// showing the differing lines. With `PYRO_BLESS` set the file is written
/// instead.
#[track_caller]
pub fn check(name: &str, actual: &str) {
    let path = dir().join(name);
    if std::env::var_os("PYRO_BLESS").is_some() {
        std::fs::create_dir_all(dir()).unwrap();
        std::fs::write(&path, actual).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    if let Err(e) = compare(&path, actual) {
        panic!("{e}");
    }
}

/// What [`check`] does without `PYRO_BLESS`: `Err` says how the file at
/// `path` differs from `actual`, or why it cannot be read.
pub fn compare(path: &Path, actual: &str) -> Result<(), String> {
    let want = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: {e}; generate it with {}", path.display(), bless_hint()))?;
    if want == actual {
        return Ok(());
    }
    Err(format!(
        "{} differs from the actual output:\n{}\
         (if the change is intended: {}, then review the diff)",
        path.display(),
        diff(&want, actual),
        bless_hint()
    ))
}

/// Lines of context shown around a difference.
const CONTEXT: usize = 3;
/// Changed lines shown of each side at most.
const SHOWN: usize = 20;

/// The differing stretch of `want` (golden, `-`) and `actual` (`+`): the
/// lines between their common beginning and common end, with a little
/// context. A line with control characters or trailing white space is
/// shown quoted, so that what differs can be seen. Also says when only
/// the line ends differ.
pub fn diff(want: &str, actual: &str) -> String {
    let (w, a): (Vec<&str>, Vec<&str>) = (want.lines().collect(), actual.lines().collect());
    let head = w.iter().zip(&a).take_while(|(x, y)| x == y).count();
    let tail = w[head..]
        .iter()
        .rev()
        .zip(a[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (w_end, a_end) = (w.len() - tail, a.len() - tail);
    let mut out = String::new();
    if head == w_end && head == a_end {
        // Same lines: the difference is in line endings.
        let end = |s: &str| -> String {
            let mut e: Vec<char> = s.chars().rev().take(2).collect();
            e.reverse();
            e.into_iter().collect()
        };
        out.push_str(&format!(
            "  the same lines, different line ends: golden ends {:?}, actual ends {:?}\n",
            end(want),
            end(actual)
        ));
        return out;
    }
    out.push_str(&format!(
        "@@ from line {}: {} golden line(s) (-), {} actual line(s) (+) @@\n",
        head + 1,
        w_end - head,
        a_end - head
    ));
    let side = |out: &mut String, mark: char, lines: &[&str]| {
        for l in lines.iter().take(SHOWN) {
            if l.contains(char::is_control) || l.ends_with(char::is_whitespace) {
                out.push_str(&format!("{mark} {l:?}\n"));
            } else {
                out.push_str(&format!("{mark} {l}\n"));
            }
        }
        if lines.len() > SHOWN {
            out.push_str(&format!("{mark} ... {} more\n", lines.len() - SHOWN));
        }
    };
    side(&mut out, ' ', &w[head.saturating_sub(CONTEXT)..head]);
    side(&mut out, '-', &w[head..w_end]);
    side(&mut out, '+', &a[head..a_end]);
    side(&mut out, ' ', &w[w_end..(w_end + CONTEXT).min(w.len())]);
    out
}

/// One command's run as the golden transcripts show it: `==== CMD`, the
/// exit code (-1 for a signal), then stdout and stderr as they came.
pub fn transcript(cmd: &str, out: &Output) -> String {
    format!(
        "==== {cmd}\nexit {}\n--- stdout\n{}--- stderr\n{}",
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `name: type` for every field of `v`, depth first, objects' keys in
/// order; an array shows its first element's shape (`name[]`).
pub fn shape(v: &Value) -> Vec<String> {
    fn walk(v: &Value, path: &str, out: &mut Vec<String>) {
        let kind = match v {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_f64() => "number",
            Value::Number(_) => "integer",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        if !path.is_empty() {
            out.push(format!("{path}: {kind}"));
        }
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(x, &p, out);
                }
            }
            Value::Array(a) => {
                if let Some(first) = a.first() {
                    walk(first, &format!("{path}[]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, "", &mut out);
    out
}

/// The text with what changes between runs replaced: the test's
/// directory `root` (by `<root>`), timestamps (ten or more digits, with
/// their fraction, by `<t>`), and durations and allocated bytes (numbers
/// after `..._ms` and `allocated_bytes` keys and `Disk:`, and before
/// ` ms`, by `N`).
pub fn normalize(text: &str, root: &Path) -> String {
    let text = text.replace(root.to_str().unwrap(), "<root>");
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let after = |p: &str| out.ends_with(p);
        if b[i].is_ascii_digit() && !out.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let digits = i - start;
            if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            let volatile = ["_ms\": ", "_ms=", "allocated_bytes\": ", "Disk: "]
                .iter()
                .any(|p| after(p))
                || text[i..].starts_with(" ms");
            if digits >= 10 {
                out.push_str("<t>");
            } else if volatile {
                out.push('N');
            } else {
                out.push_str(&text[start..i]);
            }
            continue;
        }
        let c = text[i..].chars().next().unwrap();
        out.push(c);
        i += c.len_utf8();
    }
    out
}
