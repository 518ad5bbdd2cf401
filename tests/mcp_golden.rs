//! Golden files pinning what MCP clients see of the tools: the
//! `tools/list` answer of every profile, byte for byte, as the real
//! `pyro mcp serve` writes it on stdout. A change to a tool's name,
//! description, schema or annotations fails here and shows the difference;
//! when the change is intended, regenerate the files with
//! `PYRO_BLESS=1 cargo test --test mcp_golden` and review the diff.

mod support;

use serde_json::{json, Value};
use support::golden;
use support::mcp::{serve_in, Mcp, PROTOCOL_VERSION};
use support::{pyro, TempDir};

const PROFILES: [&str; 3] = ["vm-run", "workspace-core", "workspace-full"];

/// The raw stdout lines answering `initialize` and `tools/list` from
/// `pyro mcp serve --profile PROFILE`, run in an empty directory (whose
/// path reads `<cwd>` in the first).
fn session_lines(profile: &str) -> (String, String) {
    let home = TempDir::new(&format!("mcp-golden-{profile}"));
    let mut m = Mcp::spawn(&mut serve_in(pyro(), &home, &home, &["--profile", profile]));
    let (_, init) = m.request_line(
        "initialize",
        json!({"protocolVersion": PROTOCOL_VERSION, "capabilities": {},
               "clientInfo": {"name": "mcp_golden.rs", "version": "0"}}),
    );
    m.send_message(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    let (_, list) = m.request_line("tools/list", json!({}));
    m.close();
    (init.replace(home.to_str().unwrap(), "<cwd>"), list)
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap() + "\n"
}

#[test]
fn tools_list_of_every_profile_matches_its_golden_file() {
    for profile in PROFILES {
        let (_, line) = session_lines(profile);
        let v: Value = serde_json::from_str(&line).unwrap();
        // The wire form is serde_json's compact form of the value (keys
        // sorted), so equal values mean equal bytes; the golden file keeps
        // the value pretty-printed so that a change reads as a diff.
        assert_eq!(line, serde_json::to_string(&v).unwrap(), "{profile}");
        golden::check(&format!("tools_list.{profile}.json"), &pretty(&v["result"]));
    }
}

/// The instructions name the profile's tools and count the ones not built
/// yet, so they too are pinned per profile.
#[test]
fn initialize_of_every_profile_matches_its_golden_file() {
    for profile in PROFILES {
        let (line, _) = session_lines(profile);
        let v: Value = serde_json::from_str(&line).unwrap();
        golden::check(&format!("initialize.{profile}.json"), &pretty(&v["result"]));
    }
}
