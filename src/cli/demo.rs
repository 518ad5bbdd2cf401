//! `pyro demo`: the one-shot lifecycle, narrated with timings.

use super::{fail, print_json, usage_error};
use crate::engine::run::{self, RunRequest};
use crate::render::{json_text, to_json};
use lexopt::prelude::*;
use std::time::Instant;

pub const USAGE: &str = "\
Usage: pyro demo [--environment NAME] [--json]

Creates a microVM, boots it, runs `git --version` in it, and deletes it,
printing each step with how long it took. Proves the whole path works.
";

pub fn main(mut parser: lexopt::Parser) -> i32 {
    let mut json = false;
    let mut environment = "debian:12".to_string();
    loop {
        match parser.next() {
            Ok(Some(Long("json"))) => json = true,
            Ok(Some(Long("environment"))) => match parser.value() {
                Ok(v) => environment = v.to_string_lossy().into_owned(),
                Err(e) => return usage_error(&e.to_string(), USAGE),
            },
            Ok(Some(Long("help"))) | Ok(Some(Short('h'))) => {
                print!("{USAGE}");
                return 0;
            }
            Ok(None) => break,
            Ok(Some(other)) => {
                return usage_error(&format!("unexpected {}", super::describe(&other)), USAGE)
            }
            Err(e) => return usage_error(&e.to_string(), USAGE),
        }
    }
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
