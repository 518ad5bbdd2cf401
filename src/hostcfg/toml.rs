//! Just enough TOML for Codex's `config.toml`: find, read and replace one
//! `[mcp_servers.NAME]` table while leaving every other byte of the file
//! as it was. (No TOML crate: this is the only TOML pyro touches, and a
//! full parse-and-reserialize would reformat the user's file.)

/// A table header at the start of a line, if `line` is one.
fn header(line: &str) -> Option<Vec<String>> {
    let t = line.trim();
    if t.starts_with("[[") || !t.starts_with('[') {
        return None;
    }
    let end = t.find(']')?;
    let rest = t[end + 1..].trim();
    if !rest.is_empty() && !rest.starts_with('#') {
        return None;
    }
    split_key(&t[1..end])
}

/// Splits a dotted key (`mcp_servers."pyro"`) into its parts.
fn split_key(k: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = k.trim().chars().peekable();
    loop {
        while chars.peek() == Some(&' ') || chars.peek() == Some(&'\t') {
            chars.next();
        }
        let mut part = String::new();
        match chars.peek() {
            Some('"') | Some('\'') => {
                let q = chars.next()?;
                loop {
                    match chars.next()? {
                        c if c == q => break,
                        '\\' if q == '"' => part.push(chars.next()?),
                        c => part.push(c),
                    }
                }
            }
            _ => {
                while let Some(&c) = chars.peek() {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                        part.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if part.is_empty() {
                    return None;
                }
            }
        }
        parts.push(part);
        while chars.peek() == Some(&' ') || chars.peek() == Some(&'\t') {
            chars.next();
        }
        match chars.next() {
            None => return Some(parts),
            Some('.') => continue,
            Some(_) => return None,
        }
    }
}

/// Line ranges of lines that are inside multi-line strings, so a `[x]`
/// in a string is not taken for a header.
fn in_multiline_string(lines: &[&str]) -> Vec<bool> {
    let mut inside: Option<&str> = None;
    lines
        .iter()
        .map(|l| {
            let was = inside.is_some();
            let mut rest = *l;
            loop {
                match inside {
                    Some(q) => match rest.find(q) {
                        Some(i) => {
                            rest = &rest[i + 3..];
                            inside = None;
                        }
                        None => break,
                    },
                    None => {
                        let a = rest.find("\"\"\"");
                        let b = rest.find("'''");
                        let (i, q) = match (a, b) {
                            (Some(a), Some(b)) if b < a => (b, "'''"),
                            (Some(a), _) => (a, "\"\"\""),
                            (None, Some(b)) => (b, "'''"),
                            (None, None) => break,
                        };
                        rest = &rest[i + 3..];
                        inside = Some(q);
                    }
                }
            }
            was
        })
        .collect()
}

/// Where the `[mcp_servers.NAME]` table and its sub-tables sit: the
/// header line index and the end (exclusive) of the last line that
/// belongs to them. Returns each such block.
fn blocks(lines: &[&str], name: &str) -> Vec<(usize, usize)> {
    let skip = in_multiline_string(lines);
    let mut out = Vec::new();
    let mut current: Option<usize> = None;
    for (i, l) in lines.iter().enumerate() {
        if skip[i] {
            continue;
        }
        if let Some(key) = header(l) {
            let ours = key.len() >= 2 && key[0] == "mcp_servers" && key[1] == name;
            match (current, ours) {
                (Some(start), false) => {
                    out.push((start, i));
                    current = None;
                }
                (None, true) => current = Some(i),
                _ => {}
            }
        }
    }
    if let Some(start) = current {
        out.push((start, lines.len()));
    }
    out
}

/// True when NAME is defined in a form this module does not edit (inline
/// table under `[mcp_servers]`, or dotted keys).
pub fn has_unsupported_form(text: &str, name: &str) -> bool {
    let lines: Vec<&str> = text.lines().collect();
    let skip = in_multiline_string(&lines);
    let mut table: Vec<String> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if skip[i] {
            continue;
        }
        if let Some(k) = header(l) {
            table = k;
            continue;
        }
        let Some((key, _)) = l.split_once('=') else {
            continue;
        };
        let Some(mut key) = split_key(key) else {
            continue;
        };
        let mut full = table.clone();
        full.append(&mut key);
        if full.len() >= 2 && full[0] == "mcp_servers" && full[1] == name && table.len() < 2 {
            return true;
        }
    }
    false
}

/// The `command` and `args` of `[mcp_servers.NAME]`, if the table exists.
pub fn read_server(text: &str, name: &str) -> Option<(Option<String>, Vec<String>)> {
    let lines: Vec<&str> = text.lines().collect();
    let (start, end) = *blocks(&lines, name).first()?;
    let mut command = None;
    let mut args = Vec::new();
    // Only the main table's keys; sub-tables ([...pyro.env]) start later.
    let mut i = start + 1;
    while i < end {
        if header(lines[i]).is_some() {
            break;
        }
        if let Some((k, v)) = lines[i].split_once('=') {
            match k.trim() {
                "command" => command = parse_string(v.trim()).map(|(s, _)| s),
                "args" => {
                    // Arrays may span lines: gather until the closing bracket.
                    let mut value = strip_comment(v).trim().to_string();
                    while parse_string_array(&value).is_none() && i + 1 < end {
                        i += 1;
                        value.push(' ');
                        value.push_str(strip_comment(lines[i]).trim());
                    }
                    args = parse_string_array(&value).unwrap_or_default();
                }
                _ => {}
            }
        }
        i += 1;
    }
    Some((command, args))
}

/// `text` with every `[mcp_servers.NAME]` block removed and a fresh one
/// appended.
pub fn replace_server(text: &str, name: &str, command: &str, args: &[String]) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let blocks = blocks(&lines, name);
    let mut kept: Vec<&str> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if !blocks.iter().any(|(s, e)| (*s..*e).contains(&i)) {
            kept.push(l);
        }
    }
    while kept.last().is_some_and(|l| l.trim().is_empty()) {
        kept.pop();
    }
    let mut out = kept.join("\n");
    if !out.is_empty() {
        out.push_str("\n\n");
    }
    let quoted: Vec<String> = args.iter().map(|a| quote(a)).collect();
    out.push_str(&format!(
        "[mcp_servers.{name}]\ncommand = {}\nargs = [{}]\n",
        quote(command),
        quoted.join(", ")
    ));
    out
}

/// A TOML basic string.
pub fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `line` without a trailing `# comment` (a `#` inside a string stays).
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (Some('"'), '\\') if !escaped => {
                escaped = true;
                continue;
            }
            (Some(q), c) if c == q && !escaped => quote = None,
            (None, '"') | (None, '\'') => quote = Some(c),
            (None, '#') => return &line[..i],
            _ => {}
        }
        escaped = false;
    }
    line
}

/// Parses one string at the start of `s`; returns it and the rest.
fn parse_string(s: &str) -> Option<(String, &str)> {
    let mut chars = s.char_indices();
    let (_, q) = chars.next()?;
    if q != '"' && q != '\'' {
        return None;
    }
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c == q => return Some((out, &s[i + 1..])),
            '\\' if q == '"' => {
                let (_, e) = chars.next()?;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'u' | 'U' => {
                        let n = if e == 'u' { 4 } else { 8 };
                        let hex: String =
                            (0..n).filter_map(|_| chars.next().map(|x| x.1)).collect();
                        out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                    }
                    other => out.push(other),
                }
            }
            c => out.push(c),
        }
    }
    None
}

fn parse_string_array(s: &str) -> Option<Vec<String>> {
    let mut rest = s.trim().strip_prefix('[')?;
    let mut out = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix(']') {
            let r = r.trim();
            return (r.is_empty() || r.starts_with('#')).then_some(out);
        }
        let (item, r) = parse_string(rest)?;
        out.push(item);
        rest = r.trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"model = "o4-mini"
# my servers
[mcp_servers.docs]
command = "docs-server"
args = ["--port", "1"]

[mcp_servers."pyro"]
command = "/old/pyro"
args = [
  "mcp",
  "serve", # trailing comment
]

[mcp_servers.pyro.env]
A = "1"

[profiles.fast]
note = """
[mcp_servers.pyro]
"""
"#;

    #[test]
    fn reads_the_table_even_quoted_and_multiline() {
        let (cmd, args) = read_server(SAMPLE, "pyro").unwrap();
        assert_eq!(cmd.as_deref(), Some("/old/pyro"));
        assert_eq!(args, vec!["mcp", "serve"]);
        assert!(read_server(SAMPLE, "other").is_none());
        assert!(!has_unsupported_form(SAMPLE, "pyro"));
    }

    #[test]
    fn replace_keeps_everything_else() {
        let args = vec!["mcp".to_string(), "serve".to_string()];
        let out = replace_server(SAMPLE, "pyro", "/new/pyro \"x\"", &args);
        assert!(out.contains("[mcp_servers.docs]\ncommand = \"docs-server\""));
        assert!(out.contains("[profiles.fast]\nnote = \"\"\"\n[mcp_servers.pyro]\n\"\"\""));
        assert!(!out.contains("/old/pyro"));
        assert!(!out.contains("A = \"1\""));
        assert!(out.starts_with("model = \"o4-mini\"\n# my servers\n"));
        let (cmd, a) = read_server(&out, "pyro").unwrap();
        assert_eq!(cmd.as_deref(), Some("/new/pyro \"x\""));
        assert_eq!(a, args);
        // Idempotent: replacing again yields the same text.
        assert_eq!(replace_server(&out, "pyro", "/new/pyro \"x\"", &args), out);
        assert_eq!(
            replace_server("", "pyro", "p", &[]),
            "[mcp_servers.pyro]\ncommand = \"p\"\nargs = []\n"
        );
    }

    #[test]
    fn inline_and_dotted_forms_are_detected() {
        assert!(has_unsupported_form(
            "[mcp_servers]\npyro = { command = \"x\" }\n",
            "pyro"
        ));
        assert!(has_unsupported_form(
            "mcp_servers.pyro.command = \"x\"\n",
            "pyro"
        ));
        assert!(!has_unsupported_form(
            "[mcp_servers]\nother = { command = \"x\" }\n",
            "pyro"
        ));
    }
}
