//! The handlers of the `workspace_*` tools (defined in `registry`): thin
//! calls into the workspace engine, whose typed results are the same
//! objects `pyro workspace ... --json` prints, and what every workspace
//! call shares (cancellation, the outcome of a cancelled call).

use super::access::HOST_COMPAT_REFUSED;
use super::project::ProjectSource;
use super::tool::{Args, CallContext, Outcome};
use crate::engine::cancel;
use crate::engine::hostpath::Roots;
use crate::engine::workspace::create::{self, CreateRequest};
use crate::engine::workspace::seed::SeedSource;
use crate::engine::workspace::{delete, export, files, reset, store, update, view};
use crate::engine::{EngineError, Result};
use crate::render::Rendered;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

fn id(args: &Args) -> &str {
    str_arg(args, "workspace_id")
}

fn str_arg<'a>(args: &'a Map<String, Value>, k: &str) -> &'a str {
    args.get(k).and_then(Value::as_str).unwrap_or_default()
}

fn opt_str(args: &Map<String, Value>, k: &str) -> Option<String> {
    args.get(k).and_then(Value::as_str).map(String::from)
}

fn int(args: &Map<String, Value>, k: &str) -> u64 {
    args.get(k).and_then(Value::as_f64).unwrap_or(0.0) as u64
}

fn map(args: &Map<String, Value>, k: &str) -> BTreeMap<String, String> {
    args.get(k)
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The seed a `workspace_create` without `seed_path` uses. A plain
/// project directory is one of `roots`, so it resolves like any other path.
pub fn project_seed(p: &ProjectSource, roots: &Roots) -> Result<SeedSource> {
    Ok(match p {
        ProjectSource::None { .. } => SeedSource::Empty,
        ProjectSource::Detected { root, .. } => SeedSource::GitCheckout(root.clone()),
        ProjectSource::Path { path, git } => match git {
            Some(_) => SeedSource::GitCheckout(path.clone()),
            None => SeedSource::Path(roots.resolve_read(&path.to_string_lossy())?),
        },
        ProjectSource::Repo { url, git_ref } => SeedSource::Repo {
            url: url.clone(),
            git_ref: git_ref.clone(),
        },
    })
}

/// `workspace_create`: host execution and `seed_path` as the operator allows.
pub fn create(args: &Args, ctx: &CallContext) -> Result<Box<dyn Rendered>> {
    let compat = args.get("allow_host_compat") == Some(&json!(true));
    if compat && !ctx.access.allow_host_compat {
        return Err(EngineError::Invalid(HOST_COMPAT_REFUSED.into()));
    }
    let mut req = CreateRequest::new(str_arg(args, "environment"));
    req.vcpu_count = int(args, "vcpu_count") as u8;
    req.mem_mib = int(args, "mem_mib") as u32;
    req.ttl_seconds = int(args, "ttl_seconds");
    req.retention_seconds = args
        .get("retention_seconds")
        .filter(|v| !v.is_null())
        .map(|_| int(args, "retention_seconds"));
    req.allow_host_compat = compat;
    req.name = opt_str(args, "name");
    req.labels = map(args, "labels");
    req.seed = match opt_str(args, "seed_path") {
        Some(p) => SeedSource::Path(ctx.access.roots.resolve_read(&p)?),
        None => project_seed(ctx.project, &ctx.access.roots)?,
    };
    Ok(Box::new(create::create(req, &mut |phase| {
        (ctx.progress)(phase)
    })?))
}

/// `workspace_sync_push`: the workspace is looked up before the source
/// path is even resolved, so an unknown id touches nothing on the host.
pub fn sync_push(args: &Args, ctx: &CallContext) -> Result<Box<dyn Rendered>> {
    let id = id(args);
    store::load(id)?;
    let source = ctx
        .access
        .roots
        .resolve_read(str_arg(args, "source_path"))?;
    Ok(Box::new(files::sync_push(
        id,
        &source,
        str_arg(args, "dest"),
    )?))
}

/// `workspace_export`: the workspace first, then the destination, which
/// must be writable under the server's roots.
pub fn export(args: &Args, ctx: &CallContext) -> Result<Box<dyn Rendered>> {
    let id = id(args);
    store::load(id)?;
    let dest = ctx
        .access
        .roots
        .resolve_write(str_arg(args, "output_path"))?;
    Ok(Box::new(export::export(
        id,
        str_arg(args, "path"),
        &dest,
        args.get("overwrite") == Some(&json!(true)),
    )?))
}

pub fn list(_: &Args, _: &CallContext) -> Result<Box<dyn Rendered>> {
    Ok(Box::new(view::list()?))
}

pub fn update(args: &Args, _: &CallContext) -> Result<Box<dyn Rendered>> {
    let clear: Vec<String> = args
        .get("clear_labels")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    Ok(Box::new(update::update(
        id(args),
        opt_str(args, "name"),
        args.get("clear_name") == Some(&json!(true)),
        map(args, "labels"),
        clear,
    )?))
}

pub fn status(args: &Args, _: &CallContext) -> Result<Box<dyn Rendered>> {
    Ok(Box::new(view::status(id(args))?))
}

pub fn exec(args: &Args, _: &CallContext) -> Result<Box<dyn Rendered>> {
    let r = files::exec(
        id(args),
        str_arg(args, "command"),
        int(args, "timeout_seconds"),
    )?;
    Ok(Box::new(r))
}

pub fn logs(args: &Args, _: &CallContext) -> Result<Box<dyn Rendered>> {
    Ok(Box::new(files::logs(id(args))?))
}

pub fn summary(args: &Args, _: &CallContext) -> Result<Box<dyn Rendered>> {
    Ok(Box::new(files::summary(id(args))?))
}

pub fn file_list(args: &Args, _: &CallContext) -> Result<Box<dyn Rendered>> {
    Ok(Box::new(files::list(
        id(args),
        str_arg(args, "path"),
        args.get("recursive") == Some(&json!(true)),
    )?))
}

pub fn file_read(args: &Args, _: &CallContext) -> Result<Box<dyn Rendered>> {
    Ok(Box::new(files::read(
        id(args),
        str_arg(args, "path"),
        int(args, "max_bytes"),
    )?))
}

pub fn file_write(args: &Args, _: &CallContext) -> Result<Box<dyn Rendered>> {
    Ok(Box::new(files::write(
        id(args),
        str_arg(args, "path"),
        str_arg(args, "text"),
    )?))
}

pub fn patch_apply(args: &Args, _: &CallContext) -> Result<Box<dyn Rendered>> {
    Ok(Box::new(files::patch_apply(
        id(args),
        str_arg(args, "patch"),
    )?))
}

pub fn diff(args: &Args, _: &CallContext) -> Result<Box<dyn Rendered>> {
    Ok(Box::new(files::diff(id(args))?))
}

pub fn reset(args: &Args, _: &CallContext) -> Result<Box<dyn Rendered>> {
    Ok(Box::new(reset::reset(id(args), str_arg(args, "snapshot"))?))
}

pub fn delete(args: &Args, _: &CallContext) -> Result<Box<dyn Rendered>> {
    Ok(Box::new(delete::delete(id(args))?))
}

/// What a cancellation that made a workspace operation fail did, for the
/// log: most operations leave the workspace as it was...
pub const CANCEL_KEEPS: &str = "its agent connection was closed (a command it ran was killed in the guest); the workspace and its VM stay";
/// ...while a cancelled create removes what it made.
pub const CANCEL_REMOVES: &str = "the workspace it was creating was removed with its VM";

/// Runs workspace tool `name`'s operation `run`; `cancelled` says what a
/// cancellation that made it fail did.
pub fn call(
    name: &str,
    ctx: &CallContext,
    run: impl FnOnce() -> Result<Box<dyn Rendered>>,
    cancelled: &'static str,
) -> Outcome {
    // Cancelling the call reaches every wait and agent connection of the
    // engine operation below (see engine::cancel).
    let _cancel = cancel::scope(ctx.cancel);
    let result = run();
    if ctx.cancel.is_cancelled() {
        // As for vm_run: no response to a cancelled request (MCP), only a
        // log line saying what the cancellation did.
        return Outcome::Cancelled(match &result {
            Ok(r) => format!(
                "it had finished before the cancellation reached it; its result is dropped{}",
                r.about_workspace()
                    .map(|id| format!(" (workspace {id})"))
                    .unwrap_or_default()
            ),
            Err(_) => cancelled.into(),
        });
    }
    match result {
        Ok(r) => Outcome::Done {
            text: r.to_text(),
            structured: r.to_json(),
        },
        Err(e) => Outcome::Failed(format!("{name} failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_seed_path_uses_the_project() {
        let seed = |p: &ProjectSource| {
            let roots = Roots::confined(p.host_root(), &[]).unwrap();
            project_seed(p, &roots).unwrap()
        };
        assert_eq!(
            seed(&ProjectSource::None { cwd: "/".into() }),
            SeedSource::Empty
        );
        let dir = crate::temp_dir::TempDir::new("project-seed");
        let d = dir.to_path_buf();
        assert_eq!(
            seed(&ProjectSource::Detected {
                root: d.clone(),
                head: None
            }),
            SeedSource::GitCheckout(d.clone())
        );
        match seed(&ProjectSource::Path {
            path: d.clone(),
            git: None,
        }) {
            SeedSource::Path(p) => assert_eq!(p.path(), d),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            seed(&ProjectSource::Repo {
                url: "https://h/r".into(),
                git_ref: Some("v1".into())
            }),
            SeedSource::Repo {
                url: "https://h/r".into(),
                git_ref: Some("v1".into())
            }
        );
    }
}
