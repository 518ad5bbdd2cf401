//! `pyro doctor`

use super::flags::{self, json_flag, Command};
use super::print_json;
use crate::render::Rendered;

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
