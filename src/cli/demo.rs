//! `pyro demo`: the one-shot lifecycle, narrated with timings.

use super::flags::{self, json_flag, Command, Opt};
use super::{fail, print_json};
use crate::engine::run::{self, RunRequest};
use crate::render::{json_text, to_json};
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
    let mut progress = |phase: &run::Phase| {
        let ms = last.elapsed().as_millis();
        last = Instant::now();
        if !json {
            let what = match phase {
                run::Phase::Create { .. } => "create: environment resolved, writable disk made",
                run::Phase::Start { .. } => "start: VMM process launched, kernel booting",
                run::Phase::Execute { .. } => "exec: guest agent answered; running `git --version`",
                run::Phase::Delete { .. } => "delete: VM stopped, state removed",
                other => other.name(),
            };
            println!("[demo] +{ms:>5} ms  {what}");
        }
        steps.push(
            serde_json::json!({"phase": phase.name(), "since_previous_ms": ms, "details": phase}),
        );
    };
    let req = RunRequest::new(&environment, "git --version");
    match run::run(&req, &mut progress) {
        Ok(r) => {
            if json {
                print_json(
                    &serde_json::json!({"steps": steps, "result": to_json(&r), "total_ms": start.elapsed().as_millis() as u64}),
                );
            } else {
                // The demo's own view of the run: its output and timings.
                print!("{}", r.exec.stdout);
                println!(
                    "[demo] done in {} ms (boot {} ms, exec {} ms)",
                    start.elapsed().as_millis(),
                    json_text(&r.timings.boot_ms),
                    r.timings.exec_ms
                );
            }
            r.exec.exit_code
        }
        Err(e) => fail(&e, json),
    }
}
