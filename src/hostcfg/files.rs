//! Careful edits of other programs' config files: a timestamped backup
//! before any change, atomic replacement, and the file's mode kept (Claude
//! Code's file is 0600 and must stay so).

use super::HostError;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Copies `path` to `path.pyro-backup-<UTC time>` if it exists.
pub fn backup(path: &Path) -> Result<Option<PathBuf>, HostError> {
    if !path.exists() {
        return Ok(None);
    }
    let stamp = utc_stamp();
    let mut dest = PathBuf::from(format!("{}.pyro-backup-{stamp}", path.display()));
    let mut n = 1;
    while dest.exists() {
        dest = PathBuf::from(format!("{}.pyro-backup-{stamp}-{n}", path.display()));
        n += 1;
    }
    fs::copy(path, &dest)
        .map_err(|e| HostError::io(format!("backing up {}", path.display()), e))?;
    Ok(Some(dest))
}

/// Replaces `path` with `data` atomically, keeping its permissions (new
/// files get 0600: host configs can hold tokens).
pub fn write(path: &Path, data: &[u8]) -> Result<(), HostError> {
    let ctx = |what: &str| format!("{what} {}", path.display());
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| HostError::io(ctx("creating the directory of"), e))?;
    let mode = fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o600);
    crate::engine::paths::write_atomic_mode(path, data, mode)
        .map_err(|e| HostError::io(ctx("writing"), e))
}

/// Reads a JSON config; a missing file is None, an unreadable or invalid
/// one an error (it is never overwritten).
pub fn read_json(path: &Path) -> Result<Option<Value>, HostError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(HostError::io(format!("reading {}", path.display()), e)),
    };
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&strip_json_comments(&text))
        .map(Some)
        .map_err(|e| HostError::Unparseable {
            path: path.to_path_buf(),
            why: e.to_string(),
        })
}

pub fn write_json(path: &Path, v: &Value) -> Result<(), HostError> {
    let mut text = serde_json::to_string_pretty(v).expect("JSON values serialize");
    text.push('\n');
    write(path, text.as_bytes())
}

/// Drops `//` and `/* */` comments outside strings (JSONC, as OpenCode
/// accepts). Used for reading only; files with comments are never rewritten.
pub fn strip_json_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                }
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut prev = ' ';
                for n in chars.by_ref() {
                    if prev == '*' && n == '/' {
                        break;
                    }
                    prev = n;
                }
            }
            _ => out.push(c),
        }
    }
    out
}

pub fn has_json_comments(s: &str) -> bool {
    strip_json_comments(s) != s
}

fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86400, secs % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_stripped_outside_strings_only() {
        let s = "{\n // note\n \"a\": \"http://x/*y*/\", /* gone */ \"b\": 1\n}";
        let v: Value = serde_json::from_str(&strip_json_comments(s)).unwrap();
        assert_eq!(v["a"], "http://x/*y*/");
        assert_eq!(v["b"], 1);
        assert!(has_json_comments(s));
        assert!(!has_json_comments("{\"a\": \"//not a comment\"}"));
    }

    #[test]
    fn stamp_looks_like_iso_basic() {
        let s = utc_stamp();
        assert_eq!(s.len(), 16, "{s}");
        assert!(
            s.starts_with("20") && s.ends_with('Z') && s.as_bytes()[8] == b'T',
            "{s}"
        );
    }

    #[test]
    fn write_keeps_mode_and_backup_copies() {
        let d = crate::temp_dir::TempDir::new("hostcfg-files");
        let p = d.join("c.json");
        fs::write(&p, "{}").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        let b = backup(&p).unwrap().unwrap();
        write(&p, b"{\"x\":1}").unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(fs::read_to_string(&b).unwrap(), "{}");
        let fresh = d.join("new.json");
        write(&fresh, b"{}").unwrap();
        assert_eq!(
            fs::metadata(&fresh).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
