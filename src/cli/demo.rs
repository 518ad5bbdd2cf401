//! `pyro demo`: the one-shot lifecycle, narrated with timings.

use super::flags::{self, json_flag, Command, Opt};
use super::{fail, print_json};
use crate::engine::run::{self, RunRequest};
use std::time::Instant;

pub struct DemoArgs {
    environment: String,
    json: bool,
}

impl Default for DemoArgs {
    fn default() -> Self {
        DemoArgs {
            environment: "debian:12".to_string(),
            json: false,
        }
    }
}

json_flag!(DemoArgs);

pub static DEMO: Command<DemoArgs> = Command {
    path: "demo",
    about: "narrated create/start/exec/delete lifecycle",
    doc: "Creates a microVM, boots it, runs `git --version` in it, and deletes it,\n\
          printing each step with how long it took. Proves the whole path works.",
    args: &[],
    opts: &[
        Opt::value(
            "environment",
            "NAME",
            "the environment to boot",
            |a: &mut DemoArgs, v| {
                a.environment = flags::text(v)?;
                Ok(())
            },
        )
        .default(|a| a.environment.clone()),
        flags::json("print the steps and the result as one JSON object"),
    ],
    check: None,
    examples: &["pyro demo", "pyro demo --environment debian:12-base --json"],
    run: main,
};

fn main(a: DemoArgs) -> i32 {
    let json = a.json;
    let environment = a.environment;
    super::signals::install();
    let start = Instant::now();
    let mut steps = Vec::new();
    let mut last = Instant::now();
    let mut progress = |phase: &str, details: serde_json::Value| {
        let ms = last.elapsed().as_millis();
        last = Instant::now();
        if !json {
            let what = match phase {
                "create" => "create: environment resolved, writable disk made",
                "start" => "start: VMM process launched, kernel booting",
                "execute" => "exec: guest agent answered; running `git --version`",
                "delete" => "delete: VM stopped, state removed",
                _ => phase,
            };
            println!("[demo] +{ms:>5} ms  {what}");
        }
        steps
            .push(serde_json::json!({"phase": phase, "since_previous_ms": ms, "details": details}));
    };
    let req = RunRequest::new(&environment, "git --version");
    match run::run(&req, &mut progress) {
        Ok(v) => {
            if json {
                print_json(
                    &serde_json::json!({"steps": steps, "result": v, "total_ms": start.elapsed().as_millis() as u64}),
                );
            } else {
                print!("{}", v["stdout"].as_str().unwrap_or(""));
                println!(
                    "[demo] done in {} ms (boot {} ms, exec {} ms)",
                    start.elapsed().as_millis(),
                    v["timings"]["boot_ms"],
                    v["timings"]["exec_ms"]
                );
            }
            v["exit_code"].as_i64().unwrap_or(1) as i32
        }
        Err(e) => fail(&e, json),
    }
}
