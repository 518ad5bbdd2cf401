//! Each `pyro workspace` subcommand's work: its typed args to the engine
//! function of the MCP tool of the same name, and the result to stdout
//! (`--json`: the tool's JSON object; else the result's renderer in
//! `crate::render`, the same one that writes the MCP text).

use super::args::*;
use crate::cli::{fail, print_json};
use crate::engine::host::kvm_status;
use crate::engine::hostpath::Roots;
use crate::engine::workspace::results::Encoding;
use crate::engine::workspace::seed::SeedSource;
use crate::engine::workspace::{create, delete, export, files, reset, update, view};
use crate::engine::{EngineError, Result};
use crate::render::Rendered;

enum Outcome {
    /// The result to print, and the exit code.
    Print(Box<dyn Rendered>, i32),
    /// Already printed; the exit code.
    Done(i32),
}

/// Runs `work` and prints the result it gave;
/// the exit code.
fn finish(json: bool, work: impl FnOnce() -> Result<Outcome>) -> i32 {
    match work() {
        Ok(Outcome::Print(r, code)) => {
            if json {
                print_json(&r.to_json());
            } else {
                r.to_human().print();
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
    finish(a.json, move || {
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
        let v = create::create(req, &mut |phase| {
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
            println!("{}", v.workspace.workspace_id);
            return Ok(Outcome::Done(0));
        }
        Ok(Outcome::Print(Box::new(v), 0))
    })
}

pub fn list(a: ListArgs) -> i32 {
    finish(a.json, || Ok(Outcome::Print(Box::new(view::list()?), 0)))
}

pub fn status(a: IdArgs) -> i32 {
    finish(a.json, || {
        Ok(Outcome::Print(Box::new(view::status(&a.id)?), 0))
    })
}

pub fn diff(a: IdArgs) -> i32 {
    finish(a.json, || {
        Ok(Outcome::Print(Box::new(files::diff(&a.id)?), 0))
    })
}

pub fn logs(a: IdArgs) -> i32 {
    finish(a.json, || {
        Ok(Outcome::Print(Box::new(files::logs(&a.id)?), 0))
    })
}

pub fn summary(a: IdArgs) -> i32 {
    finish(a.json, || {
        Ok(Outcome::Print(Box::new(files::summary(&a.id)?), 0))
    })
}

pub fn delete(a: IdArgs) -> i32 {
    finish(a.json, || {
        Ok(Outcome::Print(Box::new(delete::delete(&a.id)?), 0))
    })
}

pub fn update(a: UpdateArgs) -> i32 {
    finish(a.json, || {
        let v = update::update(&a.id, a.name, a.clear_name, a.labels, a.clear_labels)?;
        Ok(Outcome::Print(Box::new(v), 0))
    })
}

pub fn exec(a: ExecArgs) -> i32 {
    finish(a.json, || {
        let command = crate::cli::run::shell_join(&a.argv);
        crate::cli::signals::install();
        let v = files::exec(&a.id, &command, a.timeout_seconds)?;
        let code = v.exec.exit_code;
        Ok(Outcome::Print(Box::new(v), code))
    })
}

pub fn sync_push(a: SyncPushArgs) -> i32 {
    finish(a.json, || {
        let source = Roots::unconfined().resolve_read(&a.source)?;
        Ok(Outcome::Print(
            Box::new(files::sync_push(&a.id, &source, &a.dest)?),
            0,
        ))
    })
}

pub fn file_list(a: FileListArgs) -> i32 {
    finish(a.json, || {
        Ok(Outcome::Print(
            Box::new(files::list(&a.id, &a.path, a.recursive)?),
            0,
        ))
    })
}

pub fn file_read(a: FileReadArgs) -> i32 {
    finish(a.json, || {
        let v = files::read(&a.id, &a.path, a.max_bytes)?;
        if a.content_only {
            use std::io::Write;
            let body = match v.encoding {
                Encoding::Base64 => pyro_proto::base64_decode(&v.content).unwrap_or_default(),
                Encoding::Utf8 => v.content.into_bytes(),
            };
            let _ = std::io::stdout().write_all(&body);
            return Ok(Outcome::Done(0));
        }
        Ok(Outcome::Print(Box::new(v), 0))
    })
}

pub fn file_write(a: FileWriteArgs) -> i32 {
    finish(a.json, || {
        let given = a
            .text
            .expect("FILE_WRITE's check requires --text or --text-file");
        let content = text(given, "--text-file")?;
        Ok(Outcome::Print(
            Box::new(files::write(&a.id, &a.path, &content)?),
            0,
        ))
    })
}

pub fn patch_apply(a: PatchArgs) -> i32 {
    finish(a.json, || {
        let given = a
            .patch
            .expect("PATCH_APPLY's check requires --patch or --patch-file");
        let patch = text(given, "--patch-file")?;
        Ok(Outcome::Print(
            Box::new(files::patch_apply(&a.id, &patch)?),
            0,
        ))
    })
}

pub fn export(a: ExportArgs) -> i32 {
    finish(a.json, || {
        let dest = Roots::unconfined().resolve_write(&a.output)?;
        let v = export::export(&a.id, &a.path, &dest, a.overwrite)?;
        Ok(Outcome::Print(Box::new(v), 0))
    })
}

pub fn reset(a: ResetArgs) -> i32 {
    finish(a.json, || {
        crate::cli::signals::install();
        Ok(Outcome::Print(
            Box::new(reset::reset(&a.id, &a.snapshot)?),
            0,
        ))
    })
}
