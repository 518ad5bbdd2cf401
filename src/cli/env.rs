//! `pyro env list|inspect|pull|prune|import`: the guest environments.

use super::flags::{self, json_flag, Arg, Command, Entry, Group, Opt};
use super::{fail, print_json};
use crate::engine::environments;
use std::path::PathBuf;

pub static ENV: Group = Group {
    path: "env",
    about: "manage guest environments",
    doc: "Environments: debian:12-base, debian:12, debian:12-build.",
    entries: &[
        Entry::command("list", &LIST),
        Entry::command("inspect", &INSPECT),
        Entry::command("pull", &PULL),
        Entry::command("prune", &PRUNE),
        Entry::command("import", &IMPORT),
    ],
    examples: &["pyro env list", "pyro env inspect debian:12"],
    version: None,
};

#[derive(Default)]
pub struct EnvArgs {
    name: String,
    image_dir: PathBuf,
    kernel: PathBuf,
    json: bool,
}

json_flag!(EnvArgs);

const NAME: Arg<EnvArgs> = Arg::required(
    "NAME",
    "environment NAME",
    "an environment of the catalog, e.g. debian:12",
    |a: &mut EnvArgs, v| {
        a.name = flags::text(v)?;
        Ok(())
    },
);

const JSON: Opt<EnvArgs> = flags::json("print JSON");

static LIST: Command<EnvArgs> = Command {
    path: "env list",
    about: "the catalog, and which environments are installed",
    doc: "",
    args: &[],
    opts: &[JSON],
    check: None,
    examples: &[],
    run: |a| finish("list", a.json, Ok(environments::list())),
};

static INSPECT: Command<EnvArgs> = Command {
    path: "env inspect",
    about: "one environment's details and install manifest",
    doc: "",
    args: &[NAME],
    opts: &[JSON],
    check: None,
    examples: &["pyro env inspect debian:12-build"],
    run: |a| finish("inspect", a.json, environments::inspect(&a.name)),
};

static PULL: Command<EnvArgs> = Command {
    path: "env pull",
    about: "install NAME into the local store",
    doc: "",
    args: &[NAME],
    opts: &[JSON],
    check: None,
    examples: &[],
    run: |a| finish("pull", a.json, pull(&a.name)),
};

static PRUNE: Command<EnvArgs> = Command {
    path: "env prune",
    about: "remove partial or unknown entries from the store",
    doc: "",
    args: &[],
    opts: &[JSON],
    check: None,
    examples: &[],
    run: |a| finish("prune", a.json, environments::prune()),
};

static IMPORT: Command<EnvArgs> = Command {
    path: "env import",
    about: "install a locally built image (what `make envs` runs)",
    doc: "",
    args: &[NAME],
    opts: &[
        Opt::value(
            "image-dir",
            "DIR",
            "directory of the built image",
            |a: &mut EnvArgs, v| {
                a.image_dir = v.into();
                Ok(())
            },
        )
        .required(),
        Opt::value(
            "kernel",
            "FILE",
            "the guest kernel to install with it",
            |a: &mut EnvArgs, v| {
                a.kernel = v.into();
                Ok(())
            },
        )
        .required(),
        JSON,
    ],
    check: None,
    examples: &[],
    run: |a| {
        let r = environments::import(&a.name, &a.image_dir, &a.kernel);
        finish("import", a.json, r)
    },
};

fn finish(sub: &str, json: bool, result: crate::engine::Result<serde_json::Value>) -> i32 {
    match result {
        Ok(v) if json => {
            print_json(&v);
            0
        }
        Ok(v) => {
            print_human(sub, &v);
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
