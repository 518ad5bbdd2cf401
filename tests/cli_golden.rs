//! Golden files pinning what `pyro env` and `pyro doctor` print, human
//! and `--json`, in a state directory of their own: the catalog before
//! and after an import from a fabricated image, inspect, pull of an
//! installed and a missing environment, prune. Doctor's checks depend on
//! the host, so its human output is compared with what its own `--json`
//! says, and only the shape of that JSON is pinned.
//!
//! When a change is intended, regenerate with
//! `PYRO_BLESS=1 cargo test --test cli_golden` and review the diff.

mod support;

use std::path::Path;
use support::golden::{self, shape, transcript};
use support::{json_stdout, pyro_cmd, write_file, TempDir};

/// Runs `pyro ARGS` with `ROOT/home` as its state directory; returns its
/// transcript, the test directory written as `<root>`.
fn pyro(root: &Path, args: &[&str]) -> String {
    let o = pyro_cmd()
        .args(args)
        .env("PYRO_HOME", root.join("home"))
        .output()
        .unwrap();
    transcript(&format!("pyro {}", args.join(" ")), &o).replace(root.to_str().unwrap(), "<root>")
}

#[test]
fn env_commands_match_their_golden_file() {
    let root = &TempDir::new("cli-golden-env");
    // A locally built image, as `make envs` leaves one.
    let image = root.join("image");
    for f in ["rootfs.ext4", "scratch.ext4"] {
        write_file(&image.join(f), b"disk");
    }
    write_file(
        &image.join("environment.json"),
        r#"{"name": "debian:12", "built_by": "cli_golden.rs"}"#,
    );
    write_file(&root.join("vmlinux"), b"kernel");
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
    golden::check("env_cli.txt", &shown);
}

#[test]
fn doctor_prints_what_its_json_says() {
    let root = &TempDir::new("cli-golden-doctor");
    let run = |json: bool| {
        let mut c = pyro_cmd();
        c.arg("doctor").env("PYRO_HOME", root.join("home"));
        if json {
            c.arg("--json");
        }
        c.output().unwrap()
    };
    let j = run(true);
    let h = run(false);
    let v = json_stdout(&j, &"pyro doctor --json");
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
    let mut lines = shape(&v);
    // Whether any environment is installed decides one array's shape.
    lines.retain(|l| !l.starts_with("installed_environments[]"));
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    golden::check(
        "doctor_json_shape.txt",
        &format!("checks: {}\n{}\n", names.join(", "), lines.join("\n")),
    );
}

/// The golden check itself (tests/support/golden.rs), tested once here: a
/// one-character change fails naming the line and showing both versions;
/// an equal file passes; a missing file says how to create it.
#[test]
fn a_golden_file_that_differs_by_one_character_fails_showing_where() {
    let dir = TempDir::new("cli-golden-check");
    let file = dir.join("pinned.txt");
    let pinned = "one\ntwo\nthree\nfour\nfive\nsix\nseven\neight\n";
    write_file(&file, pinned);
    assert_eq!(golden::compare(&file, pinned), Ok(()));

    let err = golden::compare(&file, &pinned.replace("six", "sax")).unwrap_err();
    let shown = err.lines().skip(1).take(9).collect::<Vec<_>>().join("\n");
    assert_eq!(
        shown,
        "@@ from line 6: 1 golden line(s) (-), 1 actual line(s) (+) @@\n  three\n  four\n  five\n- six\n+ sax\n  seven\n  eight\n(if the change is intended: PYRO_BLESS=1 cargo test --test cli_golden, then review the diff)",
        "{err}"
    );
    assert!(
        err.starts_with(&format!("{} differs", file.display())),
        "{err}"
    );

    // A line added at the end, and one whose trailing blank is all that
    // changed (shown quoted so that the blank can be seen).
    let err = golden::compare(&file, &format!("{pinned}nine\n")).unwrap_err();
    assert!(
        err.contains("from line 9: 0 golden line(s) (-), 1 actual line(s) (+)"),
        "{err}"
    );
    assert!(err.contains("\n+ nine\n"), "{err}");
    let err = golden::compare(&file, &pinned.replace("two", "two ")).unwrap_err();
    assert!(err.contains("\n+ \"two \"\n"), "{err}");
    // Only the final newline differs.
    let err = golden::compare(&file, pinned.trim_end()).unwrap_err();
    assert!(err.contains("the same lines, different line ends"), "{err}");

    let err = golden::compare(&dir.join("missing.txt"), "x").unwrap_err();
    assert!(
        err.contains("generate it with PYRO_BLESS=1 cargo test --test cli_golden"),
        "{err}"
    );
}
