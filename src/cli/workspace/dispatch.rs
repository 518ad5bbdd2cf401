//! Each `pyro workspace` subcommand's work: its typed args to the engine
//! function of the MCP tool of the same name, and the result to stdout
//! (`--json`: the tool's JSON object; else render.rs).

use super::args::*;
use super::render;
use crate::cli::{fail, print_json};
use crate::engine::host::kvm_status;
use crate::engine::hostpath::Roots;
use crate::engine::workspace::seed::SeedSource;
use crate::engine::workspace::{export, files, lifecycle};
use crate::engine::{EngineError, Result};
use serde_json::Value as Json;

enum Outcome {
    /// The result to print, and the exit code.
    Print(Json, i32),
    /// Already printed; the exit code.
    Done(i32),
}

/// Runs `work` and prints what it gave as subcommand `sub` prints it;
/// the exit code.
fn finish(sub: &str, json: bool, work: impl FnOnce() -> Result<Outcome>) -> i32 {
    match work() {
        Ok(Outcome::Print(v, code)) => {
            if json {
                print_json(&v);
            } else {
                render::human(sub, &v);
            }
            code
        }
        Ok(Outcome::Done(code)) => code,
        Err(e) => fail(&e, json),
    }
}

fn read_text_file(path: &str, what: &str) -> Result<String> {
    let bytes =
        std::fs::read(path).map_err(|e| EngineError::io(format!("reading {what} {path}"), e))?;
    String::from_utf8(bytes)
        .map_err(|_| EngineError::Invalid(format!("{what} {path} is not UTF-8 text")))
}

/// The text `--X` / `--X-file` gave.
fn text(t: Text, file_option: &str) -> Result<String> {
    match t {
        Text::Inline(t) => Ok(t),
        Text::File(f) => read_text_file(&f, file_option),
    }
}

pub fn create(a: CreateArgs) -> i32 {
    finish("create", a.json, move || {
        if a.network_policy != "off" {
            return Err(EngineError::Unavailable(format!(
                "--network-policy {} is not available: guest networking is not in this build (workspaces are offline)",
                a.network_policy
            )));
        }
        let mut req = a.req;
        if let Some(p) = &a.seed_path {
            // The person typed it: any path they can reach.
            req.seed = SeedSource::Path(Roots::unconfined().resolve_read(p)?);
        }
        let quiet = a.json || a.id_only;
        let compat = req.allow_host_compat;
        crate::cli::signals::install();
        let v = lifecycle::create(req, &mut |phase| {
            if !quiet {
                eprintln!("[workspace] {phase}");
            }
        })
        .map_err(|e| match e {
            // The person asked for the fallback: say why it did not apply.
            EngineError::Unavailable(m) if compat && kvm_status().blocker().is_some() => {
                EngineError::Unavailable(format!(
                    "{m} (--allow-host-compat applies to one-shot `pyro run` only: a workspace always needs a VM)"
                ))
            }
            e => e,
        })?;
        if a.id_only {
            println!("{}", v["workspace_id"].as_str().unwrap_or(""));
            return Ok(Outcome::Done(0));
        }
        Ok(Outcome::Print(v, 0))
    })
}

pub fn list(a: ListArgs) -> i32 {
    finish("list", a.json, || Ok(Outcome::Print(lifecycle::list()?, 0)))
}

pub fn status(a: IdArgs) -> i32 {
    finish("status", a.json, || {
        Ok(Outcome::Print(lifecycle::status(&a.id)?, 0))
    })
}

pub fn diff(a: IdArgs) -> i32 {
    finish("diff", a.json, || {
        Ok(Outcome::Print(files::diff(&a.id)?, 0))
    })
}

pub fn logs(a: IdArgs) -> i32 {
    finish("logs", a.json, || {
        Ok(Outcome::Print(files::logs(&a.id)?, 0))
    })
}

pub fn summary(a: IdArgs) -> i32 {
    finish("summary", a.json, || {
        Ok(Outcome::Print(files::summary(&a.id)?, 0))
    })
}

pub fn delete(a: IdArgs) -> i32 {
    finish("delete", a.json, || {
        Ok(Outcome::Print(lifecycle::delete(&a.id)?, 0))
    })
}

pub fn update(a: UpdateArgs) -> i32 {
    finish("update", a.json, || {
        let v = lifecycle::update(&a.id, a.name, a.clear_name, a.labels, a.clear_labels)?;
        Ok(Outcome::Print(v, 0))
    })
}

pub fn exec(a: ExecArgs) -> i32 {
    finish("exec", a.json, || {
        let command = crate::cli::run::shell_join(&a.argv);
        crate::cli::signals::install();
        let v = files::exec(&a.id, &command, a.timeout_seconds)?;
        let code = v["exit_code"].as_i64().unwrap_or(1) as i32;
        Ok(Outcome::Print(v, code))
    })
}

pub fn sync_push(a: SyncPushArgs) -> i32 {
    finish("sync push", a.json, || {
        let source = Roots::unconfined().resolve_read(&a.source)?;
        Ok(Outcome::Print(
            files::sync_push(&a.id, &source, &a.dest)?,
            0,
        ))
    })
}

pub fn file_list(a: FileListArgs) -> i32 {
    finish("file list", a.json, || {
        Ok(Outcome::Print(files::list(&a.id, &a.path, a.recursive)?, 0))
    })
}

pub fn file_read(a: FileReadArgs) -> i32 {
    finish("file read", a.json, || {
        let v = files::read(&a.id, &a.path, a.max_bytes)?;
        if a.content_only {
            use std::io::Write;
            let body = match v["encoding"].as_str() {
                Some("base64") => pyro_proto::base64_decode(v["content"].as_str().unwrap_or(""))
                    .unwrap_or_default(),
                _ => v["content"].as_str().unwrap_or("").as_bytes().to_vec(),
            };
            let _ = std::io::stdout().write_all(&body);
            return Ok(Outcome::Done(0));
        }
        Ok(Outcome::Print(v, 0))
    })
}

pub fn file_write(a: FileWriteArgs) -> i32 {
    finish("file write", a.json, || {
        let given = a
            .text
            .expect("FILE_WRITE's check requires --text or --text-file");
        let content = text(given, "--text-file")?;
        Ok(Outcome::Print(files::write(&a.id, &a.path, &content)?, 0))
    })
}

pub fn patch_apply(a: PatchArgs) -> i32 {
    finish("patch apply", a.json, || {
        let given = a
            .patch
            .expect("PATCH_APPLY's check requires --patch or --patch-file");
        let patch = text(given, "--patch-file")?;
        Ok(Outcome::Print(files::patch_apply(&a.id, &patch)?, 0))
    })
}

pub fn export(a: ExportArgs) -> i32 {
    finish("export", a.json, || {
        let dest = Roots::unconfined().resolve_write(&a.output)?;
        let v = export::export(&a.id, &a.path, &dest, a.overwrite)?;
        Ok(Outcome::Print(v, 0))
    })
}

pub fn reset(a: ResetArgs) -> i32 {
    finish("reset", a.json, || {
        crate::cli::signals::install();
        Ok(Outcome::Print(lifecycle::reset(&a.id, &a.snapshot)?, 0))
    })
}
