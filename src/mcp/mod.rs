//! The MCP server: hand-rolled JSON-RPC 2.0 over stdio, newline-delimited.
//! Only protocol goes to stdout; diagnostics go to stderr.
//!
//! - `access`: what the operator let the client reach on the host
//! - `jsonrpc`: framing and envelopes
//! - `server`: the session (lifecycle, dispatch, cancellation, logging)
//! - `registry`: the one table of tools (name, profiles, schemas, handler)
//! - `tool`: what a tool, a call and its outcome are
//! - `profile`: the profiles a server can be started with
//! - `tools`: a profile's toolset: `tools/list` and dispatch
//! - `schema`: argument tables that yield both JSON Schema and validation
//! - `project`: the project source the session works on
//! - `vm_run`: the `vm_run` handler
//! - `workspace_tools`: the `workspace_*` handlers over the workspace engine

pub mod access;
pub mod jsonrpc;
pub mod profile;
pub mod project;
pub mod registry;
pub mod schema;
pub mod server;
pub mod tool;
pub mod tools;
pub mod vm_run;
pub mod workspace_tools;

/// Serves MCP on this process's stdin and stdout until stdin closes.
pub fn serve_stdio(cfg: server::Config) -> std::io::Result<()> {
    let stdin = std::io::stdin();
    server::serve(cfg, stdin.lock(), Box::new(std::io::stdout()))
}
