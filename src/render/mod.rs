//! How engine results are shown, for both front ends: each result type
//! implements [`Report`] once, here, with the text an MCP client gets
//! beside the structured content and what the CLI prints without `--json`.
//! The JSON itself is the type's `Serialize` form, the same for
//! `structuredContent` and `--json`.
//!
//! - `exec`: command results (`vm_run`/`pyro run`, `workspace_exec`)
//! - `files`: file list, read, write, patch apply and export
//! - `review`: diff and summary
//! - `workspace`: the workspace itself, the list, history and sync
//! - `host`: environments and doctor

mod exec;
mod files;
mod host;
mod review;
mod workspace;

use serde::Serialize;
use serde_json::Value;
use std::io::Write;

/// The JSON form of a result. Always through `Value`, whose objects keep
/// their keys sorted: the order clients have always seen.
pub fn to_json<T: Serialize + ?Sized>(v: &T) -> Value {
    serde_json::to_value(v).expect("results serialize")
}

/// A value as the CLI shows it in `key=value` lines: strings bare, a
/// missing value as `-`, anything else as JSON.
pub fn show<T: Serialize + ?Sized>(v: &T) -> String {
    match to_json(v) {
        Value::String(s) => s,
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A value as JSON text (`null` for a missing one).
pub fn json_text<T: Serialize + ?Sized>(v: &T) -> String {
    to_json(v).to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// What the CLI prints for a result, in order, each piece to its stream.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Human(Vec<(Stream, String)>);

impl Human {
    /// Text for stdout.
    pub fn out(&mut self, s: impl Into<String>) {
        self.0.push((Stream::Stdout, s.into()));
    }

    /// Text for stderr.
    pub fn err(&mut self, s: impl Into<String>) {
        self.0.push((Stream::Stderr, s.into()));
    }

    /// A line for stderr.
    pub fn errln(&mut self, s: impl Into<String>) {
        let mut s = s.into();
        s.push('\n');
        self.err(s);
    }

    /// Everything written to `stream`, for tests.
    #[cfg(test)]
    pub fn on(&self, stream: Stream) -> String {
        self.0
            .iter()
            .filter(|(s, _)| *s == stream)
            .map(|(_, t)| t.as_str())
            .collect()
    }

    /// Prints it: stdout flushed before anything goes to stderr, so a
    /// terminal shows the pieces in order. A closed pipe is the reader's
    /// choice, not an error.
    pub fn print(&self) {
        for (stream, text) in &self.0 {
            match stream {
                Stream::Stdout => {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(text.as_bytes());
                    let _ = out.flush();
                }
                Stream::Stderr => {
                    let _ = std::io::stderr().lock().write_all(text.as_bytes());
                }
            }
        }
    }
}

/// How one result type is shown. Its JSON is its `Serialize` form.
pub trait Report: Serialize {
    /// The text content of the MCP tool result, for clients that show only
    /// text: the JSON itself unless the type reads better otherwise.
    fn text(&self) -> String {
        serde_json::to_string_pretty(&to_json(self)).unwrap_or_default()
    }

    /// What the CLI prints without `--json`.
    fn human(&self, h: &mut Human);

    /// Why the operation had to boot the workspace's VM again, if it did.
    fn restarted_vm(&self) -> Option<&str> {
        None
    }

    /// The workspace the result is about, if one.
    fn workspace_id(&self) -> Option<&str> {
        None
    }
}

/// Any [`Report`], as the front ends hold it (the note about a restarted
/// VM added in front of both renderings).
pub trait Rendered {
    fn to_json(&self) -> Value;
    fn to_text(&self) -> String;
    fn to_human(&self) -> Human;
    fn about_workspace(&self) -> Option<&str>;
}

impl<T: Report> Rendered for T {
    fn to_json(&self) -> Value {
        to_json(self)
    }

    fn to_text(&self) -> String {
        let note = self
            .restarted_vm()
            .map(|r| format!("note: {r}\n"))
            .unwrap_or_default();
        format!("{note}{}", self.text())
    }

    fn to_human(&self) -> Human {
        let mut h = Human::default();
        if let Some(r) = self.restarted_vm() {
            h.errln(format!("[workspace] note: {r}"));
        }
        self.human(&mut h);
        h
    }

    fn about_workspace(&self) -> Option<&str> {
        self.workspace_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_show_as_the_cli_always_showed_them() {
        assert_eq!(show("a b"), "a b");
        assert_eq!(show(&None::<u64>), "-");
        assert_eq!(show(&Some(3u64)), "3");
        // serde_json's float form, not Rust's: 1795996800.0 keeps its ".0".
        assert_eq!(show(&1_795_996_800.0f64), "1795996800.0");
        assert_eq!(show(&json!({"b": 1, "a": 2})), r#"{"a":2,"b":1}"#);
        assert_eq!(json_text(&None::<u64>), "null");
        assert_eq!(json_text(&7i32), "7");
    }
}
