//! Planning from Git: a checkout's files as Git sees them (tracked, plus
//! untracked ones that are not ignored; never `.git`), or a clean clone of
//! a repository URL at a ref, removed when its plan is dropped.

use super::dir::plan_dir;
use super::{Origin, Plan, RepoInfo};
use crate::engine::{EngineError, Result};
use std::io;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs git; the error says what to do when git is missing.
fn git(args: &[&str], cwd: Option<&Path>) -> Result<Vec<u8>> {
    let mut cmd = Command::new("git");
    cmd.args(args)
        .stdin(Stdio::null())
        .env("GIT_TERMINAL_PROMPT", "0");
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let out = cmd.output().map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            EngineError::Unavailable(
                "git is not installed on this host; it is needed to seed from a Git checkout or --repo-url (pass seed_path instead)".into(),
            )
        } else {
            EngineError::io("running git", e)
        }
    })?;
    if !out.status.success() {
        return Err(EngineError::Invalid(format!(
            "git {} failed: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

/// Plans a Git checkout: tracked files plus untracked files that are not
/// ignored, as they are in the working tree; `.git` stays out.
pub fn plan_git_checkout(root: &Path, cached_only: bool) -> Result<Plan> {
    let mut args = vec!["ls-files", "-z", "--cached"];
    if !cached_only {
        args.extend(["--others", "--exclude-standard"]);
    }
    let out = git(&args, Some(root))?;
    let mut list: Vec<String> = out
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    list.sort();
    list.dedup();
    let items = plan_dir(root, Some(&list))?;
    Ok(Plan {
        origin: Some(Origin::Dir(root.to_path_buf())),
        items,
        mode: "git_checkout",
        source: Some(root.to_string_lossy().into_owned()),
        repo: None,
        cleanup: None,
    })
}

/// Clones `url` into a temporary directory and plans its tree at `git_ref`
/// (default branch when none).
pub fn plan_repo(url: &str, git_ref: Option<&str>) -> Result<Plan> {
    let tmp =
        std::env::temp_dir().join(format!("pyro-clone-{}", crate::engine::paths::random_id(6)));
    let result = (|| {
        let dest = tmp.to_string_lossy().into_owned();
        git(
            &["clone", "--quiet", "--no-checkout", "--", url, &dest],
            None,
        )?;
        let rev = git_ref.unwrap_or("HEAD");
        git(&["checkout", "--quiet", "--detach", rev, "--"], Some(&tmp))
            .or_else(|_| {
                // A branch or tag only on the remote side.
                let remote = format!("origin/{rev}");
                git(
                    &["checkout", "--quiet", "--detach", &remote, "--"],
                    Some(&tmp),
                )
            })
            .map_err(|e| EngineError::Invalid(format!("cannot check out {rev:?} of {url}: {e}")))?;
        let head = git(&["rev-parse", "HEAD"], Some(&tmp))?;
        let mut plan = plan_git_checkout(&tmp, true)?;
        plan.mode = "repo_clone";
        plan.source = Some(url.to_string());
        plan.repo = Some(RepoInfo {
            repo_ref: git_ref.map(String::from),
            commit: String::from_utf8_lossy(&head).trim().to_string(),
        });
        Ok(plan)
    })();
    match result {
        Ok(mut plan) => {
            plan.cleanup = Some(tmp);
            Ok(plan)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{names, tmp};
    use super::*;

    fn have_git() -> bool {
        Command::new("git").arg("--version").output().is_ok()
    }

    #[test]
    fn git_checkouts_skip_ignored_files_and_dot_git() {
        if !have_git() {
            return;
        }
        let d = tmp("git");
        let run = |args: &[&str]| {
            let out = Command::new("git")
                .args(args)
                .current_dir(&d)
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@e")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@e")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&["init", "-q", "-b", "main"]);
        std::fs::write(d.join(".gitignore"), "target/\n").unwrap();
        std::fs::create_dir_all(d.join("src")).unwrap();
        std::fs::create_dir_all(d.join("target")).unwrap();
        std::fs::write(d.join("src/lib.rs"), "v1").unwrap();
        std::fs::write(d.join("target/big"), "ignored").unwrap();
        run(&["add", "."]);
        run(&["commit", "-q", "-m", "one"]);
        run(&["tag", "v1"]);
        std::fs::write(d.join("src/lib.rs"), "v2 uncommitted").unwrap();
        std::fs::write(d.join("new.txt"), "untracked").unwrap();
        let plan = plan_git_checkout(&d, false).unwrap();
        let w = plan.write_tar(io::sink(), false).unwrap();
        assert_eq!(names(&w), [".gitignore", "new.txt", "src", "src/lib.rs"]);
        assert_eq!(w.bytes, 8 + 9 + 14);
        // A clean clone sees the committed tree only.
        let url = format!("file://{}", d.display());
        let plan = plan_repo(&url, Some("v1")).unwrap();
        assert_eq!(plan.mode, "repo_clone");
        let w = plan.write_tar(io::sink(), false).unwrap();
        assert_eq!(names(&w), [".gitignore", "src", "src/lib.rs"]);
        assert_eq!(w.bytes, 8 + 2);
        let clone = plan.cleanup.clone().unwrap();
        drop(plan);
        assert!(!clone.exists(), "the temporary clone is removed");
        let e = plan_repo(&url, Some("no-such-ref"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no-such-ref"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
