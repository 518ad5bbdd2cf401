//! `pyro doctor`

use super::flags::{self, json_flag, Command};
use super::print_json;

#[derive(Default)]
pub struct DoctorArgs {
    json: bool,
}

json_flag!(DoctorArgs);

pub static DOCTOR: Command<DoctorArgs> = Command {
    path: "doctor",
    about: "check that this host can run guests",
    doc: "Checks that this host can boot pyro guests: /dev/kvm present and usable,\n\
          which kind of KVM it is (hardware, PVM, none) and what that means, TUN and\n\
          IP forwarding for guest networking, a writable state directory, and\n\
          installed environments. Exits 0 only when `pyro run` can work here.",
    args: &[],
    opts: &[flags::json("print the report as JSON")],
    check: None,
    examples: &["pyro doctor", "pyro doctor --json"],
    run: main,
};

fn main(a: DoctorArgs) -> i32 {
    let json = a.json;
    let report = crate::engine::doctor::report();
    let ready = report["ready"] == true;
    if json {
        print_json(&report);
    } else {
        println!(
            "pyro doctor (state: {})",
            report["pyro_home"].as_str().unwrap_or("")
        );
        for c in report["checks"].as_array().unwrap() {
            let mark = if c["ok"] == true {
                "ok  "
            } else if c["required"] == true {
                "FAIL"
            } else {
                "warn"
            };
            println!(
                "  [{mark}] {:<14} {}",
                c["name"].as_str().unwrap_or(""),
                c["detail"].as_str().unwrap_or("")
            );
        }
        println!(
            "{}",
            if ready {
                "Ready: `pyro run` can boot guests here."
            } else {
                "Not ready: fix the FAIL lines above."
            }
        );
    }
    if ready {
        0
    } else {
        1
    }
}
