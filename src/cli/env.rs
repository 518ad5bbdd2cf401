//! `pyro env list|inspect|pull|prune|import`

use super::{fail, print_json, usage_error};
use crate::engine::environments;
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
    let result = match (sub, name) {
        (Some("list"), None) => Ok(environments::list()),
        (Some("inspect"), Some(n)) => environments::inspect(n),
        (Some("pull"), Some(n)) => pull(n),
        (Some("prune"), None) => environments::prune(),
        (Some("import"), Some(n)) => match (&image_dir, &kernel) {
            (Some(d), Some(k)) => environments::import(n, d, k),
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
        Ok(v) if json => {
            print_json(&v);
            0
        }
        Ok(v) => {
            print_human(sub.unwrap(), &v);
            0
        }
        Err(e) => fail(&e, json),
    }
}

/// Until registry pulls land, pull only confirms a local install.
fn pull(name: &str) -> crate::engine::Result<serde_json::Value> {
    environments::lookup(name)?;
    match environments::installed(name) {
        Ok(_) => {
            let mut v = environments::inspect(name)?;
            v["pulled"] = serde_json::json!(false);
            v["message"] = serde_json::json!("already installed");
            Ok(v)
        }
        Err(_) => Err(crate::engine::EngineError::Unavailable(format!(
            "cannot pull {name}: this build has no registry client yet; build it locally with `make envs` in a pyro checkout"
        ))),
    }
}

fn print_human(sub: &str, v: &serde_json::Value) {
    match sub {
        "list" => {
            println!(
                "Catalog version: {}",
                v["catalog_version"].as_str().unwrap_or("")
            );
            for e in v["environments"].as_array().unwrap() {
                let status = if e["installed"] == true {
                    "installed"
                } else {
                    "not installed"
                };
                println!(
                    "{} [{status}] {}",
                    e["name"].as_str().unwrap_or(""),
                    e["description"].as_str().unwrap_or("")
                );
            }
        }
        "prune" => {
            let removed = v["removed"].as_array().map(|a| a.len()).unwrap_or(0);
            println!(
                "Removed {removed} stale entries from {}",
                v["environments_dir"].as_str().unwrap_or("")
            );
        }
        _ => {
            println!("Environment: {}", v["name"].as_str().unwrap_or(""));
            println!("Version: {}", v["version"].as_str().unwrap_or(""));
            println!(
                "Installed: {}",
                if v["installed"] == true { "yes" } else { "no" }
            );
            if let Some(d) = v["install_dir"].as_str() {
                println!("Install dir: {d}");
            }
            if let Some(p) = v["default_packages"].as_array() {
                let names: Vec<_> = p.iter().filter_map(|x| x.as_str()).collect();
                println!("Default packages: {}", names.join(", "));
            }
            if let Some(m) = v["message"].as_str() {
                println!("{m}");
            }
        }
    }
}
