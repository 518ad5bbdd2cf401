//! Usage lines and `--help` text, written from the same tables the parser
//! reads.

use super::{Arg, Command, Group, Node, Takes};

/// Left column of help tables, at most this wide; longer entries put
/// their text on the next line.
const COLUMN: usize = 26;

/// Help texts wrap their notes (default, repeatable) past this width.
const TEXT: usize = 52;

impl<T: Default> Command<T> {
    /// `Usage: pyro workspace exec ID [options] -- CMD [ARGS...]`
    pub fn usage_line(&self) -> String {
        let mut parts = vec![format!("Usage: pyro {}", self.path)];
        parts.extend(self.args_before_options());
        parts.push("[options]".to_string());
        parts.extend(self.rest_args());
        parts.join(" ")
    }

    /// Arguments and required options: `ID PATH --output HOST_PATH`.
    pub fn brief_line(&self) -> String {
        let mut parts = self.args_before_options();
        parts.extend(self.rest_args());
        parts.join(" ")
    }

    /// A command to run (`-- CMD [ARGS...]`) goes after `[options]`,
    /// everything else before.
    fn is_command(a: &Arg<T>) -> bool {
        a.takes != Takes::One && a.missing.is_some()
    }

    fn args_before_options(&self) -> Vec<String> {
        let args = self.args.iter().filter(|a| !Self::is_command(a));
        let required = self.opts.iter().filter(|o| o.required);
        args.map(|a| a.spelled())
            .chain(required.map(|o| o.spelled()))
            .collect()
    }

    fn rest_args(&self) -> Vec<String> {
        self.args
            .iter()
            .filter(|a| Self::is_command(a))
            .map(|a| a.spelled())
            .collect()
    }

    pub fn help_text(&self) -> String {
        let mut out = self.usage_line();
        out.push_str("\n\n");
        if self.doc.is_empty() {
            out.push_str(&sentence(self.about));
        } else {
            out.push_str(self.doc);
        }
        out.push('\n');
        let args: Vec<(String, String)> = self
            .args
            .iter()
            .map(|a| {
                let name = match (a.takes, a.missing) {
                    (Takes::One, _) => a.name.to_string(),
                    (_, Some(_)) => format!("{} [ARGS...]", a.name),
                    (_, None) => format!("{}...", a.name),
                };
                (name, a.help.to_string())
            })
            .collect();
        let defaults = T::default();
        let mut opts: Vec<(String, String)> = self
            .opts
            .iter()
            .map(|o| {
                let mut text = o.help.to_string();
                if let Some(show) = o.default {
                    annotate(&mut text, &format!("(default {})", show(&defaults)));
                }
                if o.repeats {
                    annotate(&mut text, "(repeatable)");
                }
                if o.required {
                    annotate(&mut text, "(required)");
                }
                (o.spelled(), text)
            })
            .collect();
        opts.push(("-h, --help".into(), "show this help".into()));
        // One width for both tables, so their texts line up.
        let width = width(args.iter().chain(&opts));
        if !args.is_empty() {
            out.push_str("\nArguments:\n");
            columns(&args, width, &mut out);
        }
        out.push_str("\nOptions:\n");
        columns(&opts, width, &mut out);
        examples(self.examples, &mut out);
        out
    }
}

impl Group {
    pub fn usage_line(&self) -> String {
        if self.path.is_empty() {
            "Usage: pyro <command> [options]".to_string()
        } else {
            format!("Usage: pyro {} <command> [options]", self.path)
        }
    }

    pub fn help_text(&self) -> String {
        let mut out = String::new();
        if self.path.is_empty() {
            out.push_str(&format!("pyro: {}\n\n", self.about));
        }
        out.push_str(&self.usage_line());
        out.push('\n');
        if !self.doc.is_empty() {
            out.push('\n');
            out.push_str(self.doc);
            out.push('\n');
        }
        out.push_str("\nCommands:\n");
        let mut rows = Vec::new();
        self.listing(self.path, &mut rows);
        columns(&rows, width(&rows), &mut out);
        out.push_str("\nOptions:\n");
        let mut rows = Vec::new();
        if self.version.is_some() {
            rows.push(("-V, --version".to_string(), "print the version".to_string()));
        }
        rows.push(("-h, --help".to_string(), "show this help".to_string()));
        columns(&rows, width(&rows), &mut out);
        let prefix = if self.path.is_empty() {
            "pyro".to_string()
        } else {
            format!("pyro {}", self.path)
        };
        out.push_str(&format!(
            "\nRun `{prefix} <command> --help` for its options and examples.\n"
        ));
        examples(self.examples, &mut out);
        out
    }

    /// The rows of this group's command list, named relative to `base`.
    /// `pyro` lists each group below it on one line; the other groups
    /// list the commands of their subgroups one by one (`file read ...`).
    fn listing(&self, base: &str, rows: &mut Vec<(String, String)>) {
        let relative = |path: &str| {
            path.strip_prefix(base)
                .unwrap_or(path)
                .trim_start()
                .to_string()
        };
        for e in self.visible() {
            match e.node {
                Node::Command(c) => {
                    let left = format!("{} {}", relative(c.path()), c.brief());
                    rows.push((left.trim_end().to_string(), c.about().to_string()));
                }
                Node::Group(g) if base.is_empty() => {
                    let names: Vec<&str> = g.visible().map(|e| e.name).collect();
                    let joined = names.join("|");
                    let left = if joined.len() <= COLUMN {
                        format!("{} {joined}", e.name)
                    } else {
                        format!("{} <command>", e.name)
                    };
                    rows.push((left, g.about.to_string()));
                }
                Node::Group(g) => g.listing(base, rows),
                Node::Raw(_) => {}
            }
        }
    }
}

/// A one-line `about` as a sentence: capitalized, with a full stop.
fn sentence(about: &str) -> String {
    let mut chars = about.chars();
    let mut s: String = match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    if !s.ends_with(['.', '!', '?', ')']) {
        s.push('.');
    }
    s
}

/// Appends `note` to a help text, on a line of its own when the last line
/// would get longer than [`TEXT`].
fn annotate(text: &mut String, note: &str) {
    let last = text.lines().last().unwrap_or("");
    if last.len() + 1 + note.len() > TEXT {
        text.push('\n');
    } else {
        text.push(' ');
    }
    text.push_str(note);
}

/// The left column's width for `rows`: their longest left entry, entries
/// longer than [`COLUMN`] aside.
fn width<'a>(rows: impl IntoIterator<Item = &'a (String, String)>) -> usize {
    rows.into_iter()
        .map(|(l, _)| l.len())
        .filter(|n| *n <= COLUMN)
        .max()
        .unwrap_or(0)
}

/// Two columns: `  left  text`, the text's continuation lines (`\n` in
/// it) and the text of over-long left entries aligned under the text.
fn columns(rows: &[(String, String)], width: usize, out: &mut String) {
    let pad = " ".repeat(2 + width + 2);
    for (left, text) in rows {
        out.push_str("  ");
        out.push_str(left);
        let mut lines = text.lines();
        if left.len() <= width {
            out.push_str(&" ".repeat(width - left.len() + 2));
            out.push_str(lines.next().unwrap_or(""));
        }
        out.push('\n');
        for line in lines {
            out.push_str(&pad);
            out.push_str(line);
            out.push('\n');
        }
    }
}

fn examples(examples: &[&str], out: &mut String) {
    if examples.is_empty() {
        return;
    }
    out.push_str("\nExamples:\n");
    for e in examples {
        out.push_str("  ");
        out.push_str(e);
        out.push('\n');
    }
}
