//! `pyro demo`: the one-shot lifecycle, narrated with timings.

use super::{fail, print_json, usage_error};
use crate::engine::run::{self, RunRequest};
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
