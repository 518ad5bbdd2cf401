//! pyro: one binary holding the CLI, the MCP server, the VMM and the
//! workspace engine.

mod cli;
mod engine;
mod hostcfg;
mod mcp;
mod signals;
mod vmm;

fn main() {
    std::process::exit(cli::main());
}

/// The hidden VMM role: `pyro vmm --config FILE`, one process per VM.
fn vmm_main(mut parser: lexopt::Parser) -> i32 {
    use lexopt::prelude::*;
    let mut config = None;
    while let Ok(Some(arg)) = parser.next() {
        match arg {
            Long("config") => config = parser.value().ok(),
            _ => {
                return cli::usage_error(
                    "usage: pyro vmm --config FILE",
                    "Usage: pyro vmm --config FILE",
                )
            }
        }
    }
    let Some(path) = config else {
        return cli::usage_error("missing --config FILE", "Usage: pyro vmm --config FILE");
    };
    let cfg: vmm::config::VmConfig = match std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "pyro-vmm: bad config {}: {e}",
                std::path::Path::new(&path).display()
            );
            return 2;
        }
    };
    // The disks first: a VMM that cannot have its disk to itself must not
    // touch KVM or the VM's sockets (another VMM's, while it runs).
    let claim = match vmm::claim_disks(&cfg) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pyro-vmm: {e}");
            return e.exit_code();
        }
    };
    match vmm::run(&cfg, claim) {
        Ok(why) => {
            eprintln!("pyro-vmm: {why}");
            0
        }
        Err(e) => {
            eprintln!("pyro-vmm: {e}");
            1
        }
    }
}
