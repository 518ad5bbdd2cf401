//! `pyro vmm --config FILE`: the hidden VMM role, one process per VM,
//! started by the engine (see `crate::vmm::main`).

use lexopt::prelude::*;

pub const USAGE: &str = "Usage: pyro vmm --config FILE";

pub fn main(mut parser: lexopt::Parser) -> i32 {
    let mut config = None;
    while let Ok(Some(arg)) = parser.next() {
        match arg {
            Long("config") => config = parser.value().ok(),
            _ => return super::usage_error("usage: pyro vmm --config FILE", USAGE),
        }
    }
    let Some(path) = config else {
        return super::usage_error("missing --config FILE", USAGE);
    };
    crate::vmm::main(std::path::Path::new(&path))
}
