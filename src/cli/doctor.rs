//! `pyro doctor`

use super::{print_json, usage_error};
use crate::render::Rendered;
use lexopt::prelude::*;

pub const USAGE: &str = "\
Usage: pyro doctor [--json]

Checks that this host can boot pyro guests: /dev/kvm present and usable,
which kind of KVM it is (hardware, PVM, none) and what that means, TUN and
IP forwarding for guest networking, a writable state directory, and
installed environments. Exits 0 only when `pyro run` can work here.
";

pub fn main(mut parser: lexopt::Parser) -> i32 {
    let mut json = false;
    loop {
        match parser.next() {
            Ok(Some(Long("json"))) => json = true,
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
    let report = crate::engine::doctor::report();
    let ready = report.ready;
    if json {
        print_json(&report.to_json());
    } else {
        report.to_human().print();
    }
    if ready {
        0
    } else {
        1
    }
}
