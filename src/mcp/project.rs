//! The project a server session works on: what `pyro mcp serve` was told
//! (`--project-path`, `--repo-url [--repo-ref]`) or found (the Git checkout
//! around its working directory). Workspaces seed from it when a
//! `workspace_create` call omits `seed_path`.
//!
//! Resolved once at startup, without running git: chat hosts start the
//! server often and it must answer its first request fast.

use serde_json::{json, Value};
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub enum ProjectSource {
    /// Nothing given and the working directory is not inside a checkout.
    None { cwd: PathBuf },
    /// Found by walking up from the working directory.
    Detected { root: PathBuf, head: Option<Head> },
    /// `--project-path`; `git` holds the checkout root when it is one.
    Path {
        path: PathBuf,
        git: Option<(PathBuf, Option<Head>)>,
    },
    /// `--repo-url URL [--repo-ref REF]`: a clean clone, made when needed.
    Repo {
        url: String,
        git_ref: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Head {
    Branch(String),
    Detached(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProjectError {
    NotAbsolute(String),
    Missing(String),
    NotADirectory(String),
    BadUrl(String),
    BadRef(String),
    RefWithoutUrl,
    PathAndUrl,
}

impl fmt::Display for ProjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProjectError::NotAbsolute(p) => write!(
                f,
                "--project-path must be an absolute path, got {p:?} (chat hosts may start the server in any directory)"
            ),
            ProjectError::Missing(p) => write!(f, "--project-path {p:?} does not exist"),
            ProjectError::NotADirectory(p) => {
                write!(f, "--project-path {p:?} is not a directory")
            }
            ProjectError::BadUrl(u) => write!(
                f,
                "--repo-url {u:?} is not a repository URL (use https://, http://, ssh://, git://, file:// or user@host:path)"
            ),
            ProjectError::BadRef(r) => write!(
                f,
                "--repo-ref {r:?} is not a valid Git branch, tag or commit name"
            ),
            ProjectError::RefWithoutUrl => write!(f, "--repo-ref needs --repo-url"),
            ProjectError::PathAndUrl => write!(
                f,
                "--project-path and --repo-url are alternatives; give one of them"
            ),
        }
    }
}

/// What the command line said.
#[derive(Debug, Clone, Default)]
pub struct ProjectArgs {
    pub project_path: Option<String>,
    pub repo_url: Option<String>,
    pub repo_ref: Option<String>,
}

pub fn resolve(args: &ProjectArgs, cwd: &Path) -> Result<ProjectSource, ProjectError> {
    if args.repo_ref.is_some() && args.repo_url.is_none() {
        return Err(ProjectError::RefWithoutUrl);
    }
    if args.project_path.is_some() && args.repo_url.is_some() {
        return Err(ProjectError::PathAndUrl);
    }
    if let Some(url) = &args.repo_url {
        if !valid_url(url) {
            return Err(ProjectError::BadUrl(url.clone()));
        }
        if let Some(r) = &args.repo_ref {
            if !valid_ref(r) {
                return Err(ProjectError::BadRef(r.clone()));
            }
        }
        return Ok(ProjectSource::Repo {
            url: url.clone(),
            git_ref: args.repo_ref.clone(),
        });
    }
    if let Some(p) = &args.project_path {
        let path = Path::new(p);
        if !path.is_absolute() {
            return Err(ProjectError::NotAbsolute(p.clone()));
        }
        let meta = std::fs::metadata(path).map_err(|_| ProjectError::Missing(p.clone()))?;
        if !meta.is_dir() {
            return Err(ProjectError::NotADirectory(p.clone()));
        }
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let git = find_checkout(&path);
        return Ok(ProjectSource::Path { path, git });
    }
    Ok(match find_checkout(cwd) {
        Some((root, head)) => ProjectSource::Detected { root, head },
        None => ProjectSource::None {
            cwd: cwd.to_path_buf(),
        },
    })
}

/// The checkout containing `start`: the nearest ancestor with a `.git`
/// directory or gitdir file (worktrees, submodules).
fn find_checkout(start: &Path) -> Option<(PathBuf, Option<Head>)> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        let dotgit = d.join(".git");
        if dotgit.is_dir() {
            return Some((d.to_path_buf(), read_head(&dotgit)));
        }
        if dotgit.is_file() {
            let gitdir = std::fs::read_to_string(&dotgit).ok().and_then(|s| {
                s.strip_prefix("gitdir:")
                    .map(|p| d.join(p.trim()))
                    .filter(|p| p.is_dir())
            });
            if let Some(g) = gitdir {
                return Some((d.to_path_buf(), read_head(&g)));
            }
        }
        dir = d.parent();
    }
    None
}

fn read_head(gitdir: &Path) -> Option<Head> {
    let head = std::fs::read_to_string(gitdir.join("HEAD")).ok()?;
    let head = head.trim();
    match head.strip_prefix("ref:") {
        Some(r) => {
            let r = r.trim();
            Some(Head::Branch(
                r.strip_prefix("refs/heads/").unwrap_or(r).to_string(),
            ))
        }
        None if head.len() >= 7 && head.chars().all(|c| c.is_ascii_hexdigit()) => {
            Some(Head::Detached(head.to_string()))
        }
        None => None,
    }
}

fn valid_url(url: &str) -> bool {
    // A leading '-' would be read by git as an option.
    if url.is_empty()
        || url.starts_with('-')
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return false;
    }
    for scheme in ["https://", "http://", "ssh://", "git://", "file://"] {
        if let Some(rest) = url.strip_prefix(scheme) {
            return rest.len() > 1 && !rest.starts_with('/')
                || scheme == "file://" && rest.len() > 1;
        }
    }
    // scp-like syntax: [user@]host:path, host without '/'.
    match url.split_once(':') {
        Some((host, path)) => {
            !host.is_empty() && !host.contains('/') && !path.is_empty() && !path.starts_with("//")
        }
        None => false,
    }
}

/// Git's ref-name rules, loosely (git itself decides whether it exists).
fn valid_ref(r: &str) -> bool {
    !r.is_empty()
        && !r.starts_with('-')
        && !r.starts_with('/')
        && !r.ends_with('/')
        && !r.ends_with(".lock")
        && !r.ends_with('.')
        && !r.contains("..")
        && !r.contains("@{")
        && !r.contains("//")
        && !r
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c))
}

impl fmt::Display for Head {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Head::Branch(b) => write!(f, "branch {b}"),
            Head::Detached(c) => write!(f, "detached at {}", &c[..c.len().min(12)]),
        }
    }
}

impl ProjectSource {
    /// The local directory the project is, when it is one: the root MCP
    /// host paths may lead into (a `--repo-url` clone is not on the host
    /// until a create makes a temporary one).
    pub fn host_root(&self) -> Option<&Path> {
        match self {
            ProjectSource::Detected { root, .. } => Some(root),
            ProjectSource::Path { path, .. } => Some(path),
            ProjectSource::None { .. } | ProjectSource::Repo { .. } => None,
        }
    }

    /// One sentence for the server's `instructions`.
    pub fn describe(&self) -> String {
        let head = |h: &Option<Head>| h.as_ref().map(|h| format!(" ({h})")).unwrap_or_default();
        match self {
            ProjectSource::None { cwd } => format!(
                "No project source: the server's directory {} is not inside a Git checkout and neither --project-path nor --repo-url was given.",
                cwd.display()
            ),
            ProjectSource::Detected { root, head: h } => format!(
                "Project source: the Git checkout at {}{} (detected from the server's working directory).",
                root.display(),
                head(h)
            ),
            ProjectSource::Path { path, git } => match git {
                Some((root, h)) => format!(
                    "Project source: {} (--project-path), inside the Git checkout at {}{}.",
                    path.display(),
                    root.display(),
                    head(h)
                ),
                None => format!(
                    "Project source: {} (--project-path, not a Git checkout).",
                    path.display()
                ),
            },
            ProjectSource::Repo { url, git_ref } => format!(
                "Project source: a clean clone of {url}{} (--repo-url).",
                git_ref
                    .as_ref()
                    .map(|r| format!(" at {r}"))
                    .unwrap_or_default()
            ),
        }
    }

    pub fn to_json(&self) -> Value {
        let head = |h: &Option<Head>| match h {
            Some(Head::Branch(b)) => json!({"branch": b}),
            Some(Head::Detached(c)) => json!({"commit": c}),
            None => Value::Null,
        };
        match self {
            ProjectSource::None { cwd } => json!({"kind": "none", "cwd": cwd}),
            ProjectSource::Detected { root, head: h } => {
                json!({"kind": "git_checkout", "origin": "auto-detected", "path": root, "head": head(h)})
            }
            ProjectSource::Path { path, git } => json!({
                "kind": if git.is_some() { "git_checkout" } else { "directory" },
                "origin": "--project-path",
                "path": path,
                "checkout_root": git.as_ref().map(|g| &g.0),
                "head": git.as_ref().map(|g| head(&g.1)).unwrap_or(Value::Null),
            }),
            ProjectSource::Repo { url, git_ref } => {
                json!({"kind": "repo_url", "origin": "--repo-url", "url": url, "ref": git_ref})
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::temp_dir::TempDir;

    #[test]
    fn detects_the_checkout_around_cwd_and_its_branch() {
        let d = TempDir::new("project-detect");
        std::fs::create_dir_all(d.join(".git")).unwrap();
        std::fs::write(d.join(".git/HEAD"), "ref: refs/heads/feature/x\n").unwrap();
        std::fs::create_dir_all(d.join("src/deep")).unwrap();
        let got = resolve(&ProjectArgs::default(), &d.join("src/deep")).unwrap();
        assert_eq!(
            got,
            ProjectSource::Detected {
                root: d.to_path_buf(),
                head: Some(Head::Branch("feature/x".into()))
            }
        );
        assert!(got.describe().contains("branch feature/x"));
    }

    #[test]
    fn no_checkout_is_reported_not_an_error() {
        let d = TempDir::new("project-none");
        // Only meaningful when no ancestor of the temp dir is a checkout.
        if find_checkout(&d).is_none() {
            let got = resolve(&ProjectArgs::default(), &d).unwrap();
            assert_eq!(got.to_json()["kind"], "none");
        }
    }

    #[test]
    fn project_path_must_be_an_absolute_directory() {
        let args = |p: &str| ProjectArgs {
            project_path: Some(p.into()),
            ..Default::default()
        };
        let cwd = Path::new("/");
        assert!(matches!(
            resolve(&args("rel/dir"), cwd),
            Err(ProjectError::NotAbsolute(_))
        ));
        assert!(matches!(
            resolve(&args("/nonexistent/pyro/x"), cwd),
            Err(ProjectError::Missing(_))
        ));
        let d = TempDir::new("project-path");
        let f = d.join("file");
        std::fs::write(&f, "x").unwrap();
        assert!(matches!(
            resolve(&args(f.to_str().unwrap()), cwd),
            Err(ProjectError::NotADirectory(_))
        ));
        let got = resolve(&args(d.to_str().unwrap()), cwd).unwrap();
        assert_eq!(got.to_json()["origin"], "--project-path");
    }

    #[test]
    fn repo_flags_are_validated() {
        let args = |u: Option<&str>, r: Option<&str>| ProjectArgs {
            repo_url: u.map(String::from),
            repo_ref: r.map(String::from),
            ..Default::default()
        };
        let cwd = Path::new("/");
        for good in [
            "https://github.com/o/r.git",
            "git@github.com:o/r.git",
            "ssh://git@host/o/r",
            "file:///srv/repo.git",
        ] {
            assert!(
                resolve(&args(Some(good), Some("v1.2")), cwd).is_ok(),
                "{good}"
            );
        }
        for bad in [
            "",
            "-uhoh",
            "not a url",
            "https://",
            "/abs/only",
            "relative/path",
        ] {
            assert!(
                matches!(
                    resolve(&args(Some(bad), None), cwd),
                    Err(ProjectError::BadUrl(_))
                ),
                "{bad}"
            );
        }
        for bad in ["", "a..b", "-x", "has space", "x.lock", "a:b"] {
            assert!(
                matches!(
                    resolve(&args(Some("https://h/r"), Some(bad)), cwd),
                    Err(ProjectError::BadRef(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            resolve(&args(None, Some("main")), cwd),
            Err(ProjectError::RefWithoutUrl)
        );
        let both = ProjectArgs {
            project_path: Some("/".into()),
            repo_url: Some("https://h/r".into()),
            repo_ref: None,
        };
        assert_eq!(resolve(&both, cwd), Err(ProjectError::PathAndUrl));
    }
}
