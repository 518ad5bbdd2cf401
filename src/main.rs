//! pyro: one binary holding the CLI, the MCP server, the VMM and the
//! workspace engine.

mod cli;
mod engine;
mod hostcfg;
mod mcp;
mod render;
mod signals;
mod vmm;

/// The test harness's temporary directory, for unit tests too.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../tests/support/temp_dir.rs"]
mod temp_dir;

fn main() {
    std::process::exit(cli::main());
}
