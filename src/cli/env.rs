//! `pyro env list|inspect|pull|prune|import`

use super::{fail, print_json, usage_error};
use crate::engine::environments;
use crate::render::Rendered;
use lexopt::prelude::*;
use std::path::PathBuf;

pub const USAGE: &str = "\
Usage: pyro env <list|inspect NAME|pull NAME|prune> [--json]

  list            the catalog, and which environments are installed
  inspect NAME    one environment's details and install manifest
  pull NAME       install NAME into the local store
  prune           remove partial or unknown entries from the store
  import NAME --image-dir DIR --kernel FILE
                  install a locally built image (what `make envs` runs)

Environments: debian:12-base, debian:12, debian:12-build.
";

pub fn main(mut parser: lexopt::Parser) -> i32 {
    let mut positional = Vec::new();
    let mut json = false;
    let mut image_dir: Option<PathBuf> = None;
    let mut kernel: Option<PathBuf> = None;
    loop {
        match parser.next() {
            Ok(Some(Long("json"))) => json = true,
            Ok(Some(Long("image-dir"))) => match parser.value() {
                Ok(v) => image_dir = Some(v.into()),
                Err(e) => return usage_error(&e.to_string(), USAGE),
            },
            Ok(Some(Long("kernel"))) => match parser.value() {
                Ok(v) => kernel = Some(v.into()),
                Err(e) => return usage_error(&e.to_string(), USAGE),
            },
            Ok(Some(Long("help"))) | Ok(Some(Short('h'))) => {
                print!("{USAGE}");
                return 0;
            }
            Ok(Some(Value(v))) => positional.push(v.to_string_lossy().into_owned()),
            Ok(None) => break,
            Ok(Some(other)) => {
                return usage_error(&format!("unexpected {}", super::describe(&other)), USAGE)
            }
            Err(e) => return usage_error(&e.to_string(), USAGE),
        }
    }
    let sub = positional.first().map(String::as_str);
    let name = positional.get(1).map(String::as_str);
    let result: crate::engine::Result<Box<dyn Rendered>> = match (sub, name) {
        (Some("list"), None) => Ok(Box::new(environments::list())),
        (Some("inspect"), Some(n)) => boxed(environments::inspect(n)),
        (Some("pull"), Some(n)) => boxed(pull(n)),
        (Some("prune"), None) => boxed(environments::prune()),
        (Some("import"), Some(n)) => match (&image_dir, &kernel) {
            (Some(d), Some(k)) => boxed(environments::import(n, d, k)),
            _ => return usage_error("import needs --image-dir DIR and --kernel FILE", USAGE),
        },
        (Some("inspect" | "pull" | "import"), None) => {
            return usage_error("missing environment NAME", USAGE)
        }
        (Some(s), _) => {
            return usage_error(&format!("unknown or malformed env command {s:?}"), USAGE)
        }
        (None, _) => return usage_error("missing env command", USAGE),
    };
    match result {
        Ok(r) if json => {
            print_json(&r.to_json());
            0
        }
        Ok(r) => {
            r.to_human().print();
            0
        }
        Err(e) => fail(&e, json),
    }
}

fn boxed<T: Rendered + 'static>(
    r: crate::engine::Result<T>,
) -> crate::engine::Result<Box<dyn Rendered>> {
    r.map(|r| Box::new(r) as Box<dyn Rendered>)
}

/// Until registry pulls land, pull only confirms a local install.
fn pull(name: &str) -> crate::engine::Result<environments::Pulled> {
    environments::lookup(name)?;
    match environments::installed(name) {
        Ok(_) => Ok(environments::Pulled {
            environment: environments::inspect(name)?,
            pulled: false,
            message: "already installed",
        }),
        Err(_) => Err(crate::engine::EngineError::Unavailable(format!(
            "cannot pull {name}: this build has no registry client yet; build it locally with `make envs` in a pyro checkout"
        ))),
    }
}
