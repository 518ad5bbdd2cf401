//! Golden files pinning what `pyro env` and `pyro doctor` print, human
//! and `--json`, in a state directory of their own: the catalog before
//! and after an import from a fabricated image, inspect, pull of an
//! installed and a missing environment, prune. Doctor's checks depend on
//! the host, so its human output is compared with what its own `--json`
//! says, and only the shape of that JSON is pinned.
//!
//! When a change is intended, regenerate with
//! `PYRO_BLESS=1 cargo test --test cli_golden` and review the diff.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const PYRO: &str = env!("CARGO_BIN_EXE_pyro");

fn check_golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("PYRO_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; generate it with PYRO_BLESS=1 cargo test --test cli_golden",
            path.display()
        )
    });
    if want != actual {
        let (w, a): (Vec<&str>, Vec<&str>) = (want.lines().collect(), actual.lines().collect());
        let first = w
            .iter()
            .zip(&a)
            .position(|(x, y)| x != y)
            .unwrap_or(w.len().min(a.len()));
        panic!(
            "{} differs from line {} on:\n  golden: {:?}\n  actual: {:?}\n\
             (if intended: PYRO_BLESS=1 cargo test --test cli_golden, then review the diff)",
            path.display(),
            first + 1,
            w.get(first),
            a.get(first)
        );
    }
}

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("pyro-cli-golden-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `pyro ARGS` with `home` as its state directory; returns what it
/// printed, the test directory written as `<root>`.
fn pyro(root: &Path, args: &[&str]) -> String {
    let o = Command::new(PYRO)
        .args(args)
        .env("PYRO_HOME", root.join("home"))
        .output()
        .unwrap();
    format!(
        "==== pyro {}\nexit {}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
    .replace(root.to_str().unwrap(), "<root>")
}

#[test]
fn env_commands_match_their_golden_file() {
    let dir = Dir::new("env");
    let root = &dir.0;
    // A locally built image, as `make envs` leaves one.
    let image = root.join("image");
    std::fs::create_dir_all(&image).unwrap();
    for f in ["rootfs.ext4", "scratch.ext4"] {
        std::fs::write(image.join(f), b"disk").unwrap();
    }
    std::fs::write(
        image.join("environment.json"),
        r#"{"name": "debian:12", "built_by": "cli_golden.rs"}"#,
    )
    .unwrap();
    std::fs::write(root.join("vmlinux"), b"kernel").unwrap();
    let (image, kernel) = (
        image.to_str().unwrap().to_string(),
        root.join("vmlinux").to_str().unwrap().to_string(),
    );
    let mut shown = String::new();
    for args in [
        vec!["env", "list"],
        vec!["env", "list", "--json"],
        vec!["env", "inspect", "debian:12"],
        vec!["env", "inspect", "debian:12", "--json"],
        vec!["env", "pull", "debian:12"],
        vec![
            "env",
            "import",
            "debian:12",
            "--image-dir",
            &image,
            "--kernel",
            &kernel,
        ],
        vec!["env", "list"],
        vec!["env", "inspect", "debian:12"],
        vec!["env", "inspect", "debian:12", "--json"],
        vec!["env", "pull", "debian:12"],
        vec!["env", "pull", "debian:12", "--json"],
    ] {
        shown.push_str(&pyro(root, &args));
    }
    // Leftovers of an interrupted install.
    std::fs::create_dir_all(root.join("home/environments/.debian-12.staging-ab12")).unwrap();
    shown.push_str(&pyro(root, &["env", "prune"]));
    std::fs::create_dir_all(root.join("home/environments/junk")).unwrap();
    shown.push_str(&pyro(root, &["env", "prune", "--json"]));
    check_golden("env_cli.txt", &shown);
}

/// `name: type` for every field of `v`, depth first (arrays by their
/// first element).
fn shape(v: &Value, path: &str, out: &mut Vec<String>) {
    let kind = match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    if !path.is_empty() {
        out.push(format!("{path}: {kind}"));
    }
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                shape(x, &p, out);
            }
        }
        Value::Array(a) => {
            if let Some(first) = a.first() {
                shape(first, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn doctor_prints_what_its_json_says() {
    let dir = Dir::new("doctor");
    let root = &dir.0;
    let run = |json: bool| {
        let mut c = Command::new(PYRO);
        c.arg("doctor").env("PYRO_HOME", root.join("home"));
        if json {
            c.arg("--json");
        }
        c.output().unwrap()
    };
    let j = run(true);
    let h = run(false);
    let v: Value = serde_json::from_slice(&j.stdout).unwrap();
    assert_eq!(j.status.code(), h.status.code());
    let ready = v["ready"] == true;
    assert_eq!(h.status.code(), Some(if ready { 0 } else { 1 }));
    let mut want = format!(
        "pyro doctor (state: {})\n",
        v["pyro_home"].as_str().unwrap()
    );
    for c in v["checks"].as_array().unwrap() {
        let mark = if c["ok"] == true {
            "ok  "
        } else if c["required"] == true {
            "FAIL"
        } else {
            "warn"
        };
        want.push_str(&format!(
            "  [{mark}] {:<14} {}\n",
            c["name"].as_str().unwrap(),
            c["detail"].as_str().unwrap()
        ));
    }
    want.push_str(if ready {
        "Ready: `pyro run` can boot guests here.\n"
    } else {
        "Not ready: fix the FAIL lines above.\n"
    });
    assert_eq!(String::from_utf8_lossy(&h.stdout), want);
    // Which checks, and the JSON's shape (values are the host's).
    let mut lines = Vec::new();
    shape(&v, "", &mut lines);
    // Whether any environment is installed decides one array's shape.
    lines.retain(|l| !l.starts_with("installed_environments[]"));
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    check_golden(
        "doctor_json_shape.txt",
        &format!("checks: {}\n{}\n", names.join(", "), lines.join("\n")),
    );
}
