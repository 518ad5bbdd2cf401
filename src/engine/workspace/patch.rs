//! Unified diffs: parsing (plain `diff -u` and `git diff` output, several
//! files, creations, deletions, renames) and applying to text.
//!
//! Applying is pure: the caller reads every target first, applies every
//! hunk in memory, and writes only when all of them applied, so a patch
//! either lands whole or not at all. A hunk whose context is not found
//! exactly is rejected with the file and hunk named. Hunks may sit at
//! other line numbers than their header says (the nearest exact match
//! wins), as `patch` allows.

use super::{normalize_path, EngineError, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct Hunk {
    pub old_start: usize,
    pub old_count: usize,
    pub new_start: usize,
    pub new_count: usize,
    /// Header text after the second `@@`, for messages.
    pub section: String,
    /// (' ' | '-' | '+', line text with its newline if it had one)
    pub lines: Vec<(char, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Added,
    Modified,
    Deleted,
    Renamed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Added => "added",
            Status::Modified => "modified",
            Status::Deleted => "deleted",
            Status::Renamed => "renamed",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FilePatch {
    /// Source path (workspace-relative); the target for added files.
    pub old_path: String,
    /// Target path; differs from `old_path` only for renames.
    pub new_path: String,
    pub status: Status,
    pub hunks: Vec<Hunk>,
}

fn invalid(msg: String) -> EngineError {
    EngineError::Invalid(format!("invalid patch: {msg}"))
}

/// A `---`/`+++` label as a workspace path; `None` for `/dev/null`.
fn label_path(label: &str) -> Result<Option<String>> {
    let raw = label.split('\t').next().unwrap_or("").trim_end();
    let raw = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(raw);
    if raw == "/dev/null" {
        return Ok(None);
    }
    let raw = raw
        .strip_prefix("a/")
        .or_else(|| raw.strip_prefix("b/"))
        .unwrap_or(raw);
    let rel = normalize_path(raw)?;
    if rel.is_empty() {
        return Err(invalid(format!(
            "{label:?} names the workspace root, not a file"
        )));
    }
    Ok(Some(rel))
}

fn parse_range(s: &str) -> Option<(usize, usize)> {
    match s.split_once(',') {
        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
        None => Some((s.parse().ok()?, 1)),
    }
}

fn parse_hunk_header(line: &str) -> Option<(usize, usize, usize, usize, String)> {
    let rest = line.strip_prefix("@@ -")?;
    let (old, rest) = rest.split_once(" +")?;
    let (new, rest) = rest.split_once(" @@")?;
    let (os, oc) = parse_range(old)?;
    let (ns, nc) = parse_range(new)?;
    Some((os, oc, ns, nc, rest.trim().to_string()))
}

/// Parses a unified diff into per-file patches.
pub fn parse(text: &str) -> Result<Vec<FilePatch>> {
    if text.trim().is_empty() {
        return Err(invalid("the patch is empty".into()));
    }
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out: Vec<FilePatch> = Vec::new();
    let mut i = 0;
    // Facts from a `diff --git` header, used when the file has no hunks
    // (pure renames, empty new files).
    let mut git_old: Option<String> = None;
    let mut git_new: Option<String> = None;
    let mut rename: (Option<String>, Option<String>) = (None, None);
    let mut git_status: Option<Status> = None;
    let flush_git = |out: &mut Vec<FilePatch>,
                     git_old: &mut Option<String>,
                     git_new: &mut Option<String>,
                     rename: &mut (Option<String>, Option<String>),
                     git_status: &mut Option<Status>|
     -> Result<()> {
        // A git section that ended without ---/+++ lines.
        if let (Some(from), Some(to)) = (rename.0.take(), rename.1.take()) {
            out.push(FilePatch {
                old_path: from,
                new_path: to,
                status: Status::Renamed,
                hunks: Vec::new(),
            });
        } else if let Some(st @ (Status::Added | Status::Deleted)) = *git_status {
            let p = if st == Status::Added {
                git_new.clone()
            } else {
                git_old.clone()
            };
            if let Some(p) = p {
                out.push(FilePatch {
                    old_path: p.clone(),
                    new_path: p,
                    status: st,
                    hunks: Vec::new(),
                });
            }
        }
        *git_old = None;
        *git_new = None;
        *git_status = None;
        Ok(())
    };
    while i < lines.len() {
        let line = lines[i].trim_end_matches(['\n', '\r']);
        if let Some(rest) = line.strip_prefix("diff --git ") {
            flush_git(
                &mut out,
                &mut git_old,
                &mut git_new,
                &mut rename,
                &mut git_status,
            )?;
            if let Some((a, b)) = rest.split_once(" b/") {
                git_old = label_path(a)?;
                git_new = label_path(&format!("b/{b}"))?;
            }
            i += 1;
            continue;
        }
        if let Some(p) = line.strip_prefix("rename from ") {
            rename.0 = Some(label_path(p)?.unwrap_or_default());
            i += 1;
            continue;
        }
        if let Some(p) = line.strip_prefix("rename to ") {
            rename.1 = Some(label_path(p)?.unwrap_or_default());
            i += 1;
            continue;
        }
        if line.starts_with("new file mode") {
            git_status = Some(Status::Added);
            i += 1;
            continue;
        }
        if line.starts_with("deleted file mode") {
            git_status = Some(Status::Deleted);
            i += 1;
            continue;
        }
        if line.starts_with("copy from ") || line.starts_with("copy to ") {
            return Err(invalid(format!("copies are not supported ({line})")));
        }
        if line.starts_with("GIT binary patch") || line.starts_with("Binary files ") {
            return Err(invalid(format!(
                "binary patches are not supported ({line}); write such files with workspace_sync_push"
            )));
        }
        if line.starts_with("index ")
            || line.starts_with("similarity index")
            || line.starts_with("dissimilarity index")
            || line.starts_with("old mode")
            || line.starts_with("new mode")
        {
            i += 1;
            continue;
        }
        if let Some(old_label) = line.strip_prefix("--- ") {
            let Some(new_line) = lines.get(i + 1).map(|l| l.trim_end_matches(['\n', '\r'])) else {
                return Err(invalid(format!(
                    "'--- {old_label}' is not followed by a '+++' line"
                )));
            };
            let Some(new_label) = new_line.strip_prefix("+++ ") else {
                return Err(invalid(format!(
                    "'--- {old_label}' is not followed by a '+++' line"
                )));
            };
            let old = label_path(old_label)?;
            let new = label_path(new_label)?;
            i += 2;
            let (status, old_path, new_path) = match (&old, &new) {
                (None, Some(n)) => (Status::Added, n.clone(), n.clone()),
                (Some(o), None) => (Status::Deleted, o.clone(), o.clone()),
                (Some(o), Some(n)) if o == n => (Status::Modified, o.clone(), n.clone()),
                (Some(o), Some(n)) => (Status::Renamed, o.clone(), n.clone()),
                (None, None) => return Err(invalid("both sides of a file are /dev/null".into())),
            };
            rename = (None, None);
            git_status = None;
            git_old = None;
            git_new = None;
            let mut hunks = Vec::new();
            while i < lines.len() && lines[i].starts_with("@@") {
                let header = lines[i].trim_end_matches(['\n', '\r']);
                let (os, oc, ns, nc, section) = parse_hunk_header(header)
                    .ok_or_else(|| invalid(format!("bad hunk header {header:?} in {new_path}")))?;
                i += 1;
                let mut hl: Vec<(char, String)> = Vec::new();
                let (mut seen_old, mut seen_new) = (0, 0);
                while i < lines.len() && (seen_old < oc || seen_new < nc) {
                    let l = lines[i];
                    if l.starts_with('\\') {
                        strip_newline(&mut hl);
                        i += 1;
                        continue;
                    }
                    let (tag, body) = match l.chars().next() {
                        Some(c @ (' ' | '-' | '+')) => (c, l[1..].to_string()),
                        // Some tools drop the space of empty context lines.
                        Some('\n') => (' ', "\n".to_string()),
                        _ => break,
                    };
                    match tag {
                        ' ' => {
                            seen_old += 1;
                            seen_new += 1
                        }
                        '-' => seen_old += 1,
                        _ => seen_new += 1,
                    }
                    hl.push((tag, body));
                    i += 1;
                }
                if seen_old != oc || seen_new != nc {
                    return Err(invalid(format!(
                        "hunk {} of {new_path} ({header}) says -{oc} +{nc} lines but has -{seen_old} +{seen_new}",
                        hunks.len() + 1
                    )));
                }
                if i < lines.len() && lines[i].starts_with('\\') {
                    strip_newline(&mut hl);
                    i += 1;
                }
                hunks.push(Hunk {
                    old_start: os,
                    old_count: oc,
                    new_start: ns,
                    new_count: nc,
                    section,
                    lines: hl,
                });
            }
            if hunks.is_empty() && status != Status::Renamed {
                return Err(invalid(format!("{new_path} has no hunks")));
            }
            out.push(FilePatch {
                old_path,
                new_path,
                status,
                hunks,
            });
            continue;
        }
        if line.trim().is_empty() || out.is_empty() && git_old.is_none() {
            // Text before the first file (a commit message) is ignored.
            i += 1;
            continue;
        }
        return Err(invalid(format!("unexpected line {:?}", truncate(line))));
    }
    flush_git(
        &mut out,
        &mut git_old,
        &mut git_new,
        &mut rename,
        &mut git_status,
    )?;
    if out.is_empty() {
        return Err(invalid(
            "no file changes found (expected '--- a/PATH' and '+++ b/PATH' headers)".into(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for fp in &out {
        let mut paths = vec![&fp.old_path];
        if fp.new_path != fp.old_path {
            paths.push(&fp.new_path);
        }
        for p in paths {
            if !seen.insert(p.clone()) {
                return Err(invalid(format!(
                    "{p} appears in more than one file section"
                )));
            }
        }
    }
    Ok(out)
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

fn strip_newline(hl: &mut [(char, String)]) {
    if let Some((_, body)) = hl.last_mut() {
        if body.ends_with('\n') {
            body.pop();
        }
    }
}

/// Applies `fp` to `before` (None when the file does not exist). Returns
/// the new text, or None when the file is deleted.
pub fn apply(fp: &FilePatch, before: Option<&str>) -> Result<Option<String>> {
    let path = &fp.new_path;
    let reject = |hunk: usize, h: &Hunk, why: &str| {
        EngineError::Invalid(format!(
            "patch does not apply: hunk {hunk} of {path} (@@ -{},{} +{},{} @@{}) {why}; nothing was changed",
            h.old_start,
            h.old_count,
            h.new_start,
            h.new_count,
            if h.section.is_empty() {
                String::new()
            } else {
                format!(" {}", h.section)
            }
        ))
    };
    let text = before.unwrap_or("");
    let old: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out: Vec<String> = Vec::new();
    let mut cursor = 0usize;
    for (n, h) in fp.hunks.iter().enumerate() {
        let want: Vec<&str> = h
            .lines
            .iter()
            .filter(|(t, _)| *t != '+')
            .map(|(_, b)| b.as_str())
            .collect();
        let expected = h.old_start.saturating_sub(1).max(cursor);
        let fits = |at: usize| {
            at + want.len() <= old.len() && want.iter().enumerate().all(|(k, w)| old[at + k] == *w)
        };
        let at = if want.is_empty() {
            // Pure insertion: trust the header.
            let at = if h.old_start == 0 { 0 } else { h.old_start };
            if at < cursor || at > old.len() {
                return Err(reject(n + 1, h, "inserts past the end of the file"));
            }
            Some(at)
        } else {
            (0..=old.len())
                .flat_map(|d| [expected.checked_add(d), expected.checked_sub(d)])
                .flatten()
                .filter(|at| *at >= cursor)
                .take(2 * (old.len() + 1))
                .find(|at| fits(*at))
        };
        let Some(at) = at else {
            let why = if before.is_none() {
                "expects existing lines but the file does not exist".to_string()
            } else {
                let first = want.first().map(|l| l.trim_end()).unwrap_or("");
                format!("does not match the file: its context/removed lines (starting {first:?}) were not found")
            };
            return Err(reject(n + 1, h, &why));
        };
        out.extend(old[cursor..at].iter().map(|s| s.to_string()));
        for (t, body) in &h.lines {
            if *t != '-' {
                out.push(body.clone());
            }
        }
        cursor = at + want.len();
    }
    out.extend(old[cursor..].iter().map(|s| s.to_string()));
    let after = out.concat();
    if fp.status == Status::Deleted {
        if !after.is_empty() {
            return Err(EngineError::Invalid(format!(
                "patch does not apply: deleting {path} would leave {} byte(s) the patch does not remove; nothing was changed",
                after.len()
            )));
        }
        return Ok(None);
    }
    if fp.status == Status::Renamed && fp.hunks.is_empty() {
        return Ok(Some(text.to_string()));
    }
    Ok(Some(after))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MULTI: &str = "\
diff --git a/src/app.py b/src/app.py
index 111..222 100644
--- a/src/app.py
+++ b/src/app.py
@@ -1,3 +1,3 @@
 def main():
-    return 1
+    return 0
 
diff --git a/NEW.md b/NEW.md
new file mode 100644
--- /dev/null
+++ b/NEW.md
@@ -0,0 +1,2 @@
+# New
+text
--- a/old.txt
+++ /dev/null
@@ -1 +0,0 @@
-bye
diff --git a/a.txt b/b.txt
similarity index 100%
rename from a.txt
rename to b.txt
";

    #[test]
    fn parses_git_diffs_with_every_kind_of_change() {
        let p = parse(MULTI).unwrap();
        let kinds: Vec<(&str, &str, Status)> = p
            .iter()
            .map(|f| (f.old_path.as_str(), f.new_path.as_str(), f.status))
            .collect();
        assert_eq!(
            kinds,
            [
                ("src/app.py", "src/app.py", Status::Modified),
                ("NEW.md", "NEW.md", Status::Added),
                ("old.txt", "old.txt", Status::Deleted),
                ("a.txt", "b.txt", Status::Renamed),
            ]
        );
        let app = &p[0];
        assert_eq!(
            apply(app, Some("def main():\n    return 1\n\n"))
                .unwrap()
                .unwrap(),
            "def main():\n    return 0\n\n"
        );
        assert_eq!(apply(&p[1], None).unwrap().unwrap(), "# New\ntext\n");
        assert_eq!(apply(&p[2], Some("bye\n")).unwrap(), None);
        assert_eq!(apply(&p[3], Some("same")).unwrap().unwrap(), "same");
    }

    #[test]
    fn hunks_may_be_offset_but_must_match_exactly() {
        let p = parse("--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n+B\n").unwrap();
        // The context sits three lines lower than the header says.
        let got = apply(&p[0], Some("x\ny\nz\na\nb\n")).unwrap().unwrap();
        assert_eq!(got, "x\ny\nz\na\nB\n");
        let e = apply(&p[0], Some("a\nc\n")).unwrap_err().to_string();
        assert!(e.contains("hunk 1 of f"), "{e}");
        assert!(e.contains("\"a\""), "{e}");
        assert!(e.contains("nothing was changed"), "{e}");
    }

    #[test]
    fn no_newline_markers_are_honoured() {
        let p = parse(
            "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-old\n\\ No newline at end of file\n+new\n\\ No newline at end of file\n",
        )
        .unwrap();
        assert_eq!(apply(&p[0], Some("old")).unwrap().unwrap(), "new");
        assert!(apply(&p[0], Some("old\n")).is_err());
    }

    #[test]
    fn the_second_hunk_is_named_when_it_fails() {
        let p = parse("--- a/f\n+++ b/f\n@@ -1 +1 @@\n-1\n+one\n@@ -5 +5 @@ fn x\n-5\n+five\n")
            .unwrap();
        let e = apply(&p[0], Some("1\n2\n3\n4\nX\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("hunk 2 of f (@@ -5,1 +5,1 @@ fn x)"), "{e}");
    }

    #[test]
    fn bad_patches_say_what_is_wrong() {
        for (text, want) in [
            ("", "empty"),
            ("hello\n", "no file changes"),
            (
                "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n",
                "says -2 +2 lines",
            ),
            ("--- a/f\n+++ b/f\n", "has no hunks"),
            (
                "--- a/../etc/passwd\n+++ b/../etc/passwd\n@@ -1 +1 @@\n-a\n+b\n",
                "'..'",
            ),
            (
                "--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-a\n+b\n",
                "outside /workspace",
            ),
            ("diff --git a/x b/x\nGIT binary patch\n", "binary patches"),
            (
                "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n--- a/f\n+++ b/f\n@@ -1 +1 @@\n-b\n+c\n",
                "more than one",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
        let p = parse("--- /dev/null\n+++ b/n\n@@ -0,0 +1 @@\n+x\n").unwrap();
        assert_eq!(p[0].status, Status::Added);
        let p = parse("--- a/f\n+++ b/f\n@@ -1 +1 @@\n-x\n+y\n").unwrap();
        assert!(apply(&p[0], None)
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
        let p = parse("--- a/f\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n").unwrap();
        assert!(apply(&p[0], Some("x\ny\n"))
            .unwrap_err()
            .to_string()
            .contains("would leave"));
    }
}
