//! pyro: one binary holding the CLI, the MCP server, the VMM and the
//! workspace engine.

mod cli;
mod engine;
mod hostcfg;
mod mcp;
mod vmm;

fn main() {
    std::process::exit(cli::main());
}
