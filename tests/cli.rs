//! CLI behaviour that needs no guest: help, usage errors, doctor, env list,
//! and how `pyro run` behaves on a host that cannot boot guests.

use serde_json::Value;
use std::process::Command;

fn pyro(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pyro"))
        .args(args)
        .output()
        .expect("spawn pyro")
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn help_teaches_and_bad_usage_exits_2() {
    let out = pyro(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("pyro run debian:12 -- git --version"),
        "{text}"
    );
    let out = pyro(&["run", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("--timeout-seconds"));
    let out = pyro(&["run", "debian:12", "--vcpu-count", "lots", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--vcpu-count needs a number"));
    let out = pyro(&["env", "inspect"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn doctor_exit_code_matches_readiness() {
    let out = pyro(&["doctor", "--json"]);
    let v = json(&out);
    let ready = v["ready"].as_bool().unwrap();
    assert_eq!(out.status.success(), ready, "{v}");
    let kind = v["kvm"]["kind"].as_str().unwrap();
    assert!(
        ["hardware", "pvm", "unknown", "absent"].contains(&kind),
        "{kind}"
    );
    if kind == "pvm" {
        assert!(!ready, "a PVM host cannot boot pyro's stock guest kernel");
        let kvm_check = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "kvm_kind")
            .unwrap();
        assert!(kvm_check["detail"].as_str().unwrap().contains("PVM"));
    }
    let human = pyro(&["doctor"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("kvm_kind"));
}

#[test]
fn env_list_shows_the_catalog() {
    let v = json(&pyro(&["env", "list", "--json"]));
    let names: Vec<&str> = v["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["debian:12", "debian:12-base", "debian:12-build"]);
    let human = String::from_utf8_lossy(&pyro(&["env", "list"]).stdout).into_owned();
    assert!(human.contains("debian:12-build ["), "{human}");
    let out = pyro(&["env", "inspect", "alpine:3", "--json"]);
    assert!(!out.status.success());
    assert!(json(&out)["error"]
        .as_str()
        .unwrap()
        .contains("unknown environment"));
}

#[test]
fn run_without_usable_kvm_refuses_or_runs_host_compat_loudly() {
    let doctor = json(&pyro(&["doctor", "--json"]));
    let can_boot = matches!(
        doctor["kvm"]["kind"].as_str(),
        Some("hardware") | Some("unknown")
    ) && doctor["kvm"]["readable"] == true
        && doctor["kvm"]["writable"] == true;
    if can_boot {
        return; // the VM tests cover this host
    }
    let out = pyro(&["run", "debian:12", "--", "echo", "hi"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot boot a guest here") && err.contains("--allow-host-compat"),
        "{err}"
    );

    let out = pyro(&[
        "run",
        "debian:12",
        "--allow-host-compat",
        "--json",
        "--",
        "sh",
        "-c",
        "echo hi; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let v = json(&out);
    assert_eq!(v["execution_mode"], "host_compat");
    assert_eq!(v["stdout"], "hi\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("NOT ISOLATED"));
}
