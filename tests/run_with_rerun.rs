//! tests/run-with-rerun, the script `make test-vm` and tests/mcp/run wrap
//! test runs in, against fake test binaries: shell scripts that print what
//! libtest (or pytest -v) prints, each test passing or failing per attempt
//! as the case says, and logging how they were invoked. So the script is
//! held to rerunning exactly the failed tests by name, printing `FLAKY:`
//! for those that pass alone, and failing the run otherwise: it cannot
//! silently pass.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::TempDir;

/// A fake libtest binary. `$FAKE_DIR/plan` has a line per test, `NAME
/// OUTCOME...` (pass, fail or crash; the attempt's outcome, the last one
/// repeating). Filters, `--exact` and `--skip` select as libtest does; with
/// `$FAKE_DIR/deaf` present any filter selects nothing. Each invocation's
/// arguments are appended to `$FAKE_DIR/argv`. A failing test's captured
/// output carries a decoy `failures:` list.
const FAKE_LIBTEST: &str = r#"#!/bin/sh
d=$FAKE_DIR
echo "$*" >>"$d/argv"
exact=0; filters=""; skips=""
while [ $# -gt 0 ]; do
  case $1 in
    --exact) exact=1 ;;
    --skip) shift; skips="$skips $1" ;;
    -*) ;;
    *) filters="$filters $1" ;;
  esac
  shift
done
selected() {
  for s in $skips; do case $1 in *"$s"*) return 1 ;; esac; done
  [ -z "$filters" ] && return 0
  [ -e "$d/deaf" ] && return 1
  for f in $filters; do
    if [ $exact = 1 ]; then [ "$1" = "$f" ] && return 0
    else case $1 in *"$f"*) return 0 ;; esac; fi
  done
  return 1
}
passed=0; failed=""; out=0
while read -r name outcomes; do
  if ! selected "$name"; then out=$((out + 1)); continue; fi
  n=$(cat "$d/n.$name" 2>/dev/null || echo 0); echo $((n + 1)) >"$d/n.$name"
  set -- $outcomes; shift $((n < $# ? n : $# - 1)); outcome=$1
  printf 'test %s ... ' "$name"
  case $outcome in
    pass) echo ok; passed=$((passed + 1)) ;;
    fail) echo FAILED; failed="$failed $name" ;;
    crash) echo; echo "error: process didn't exit successfully (signal: 6, SIGABRT)"; exit 134 ;;
  esac
done <"$d/plan"
if [ -z "$failed" ]; then
  echo; echo "test result: ok. $passed passed; 0 failed; 0 ignored; 0 measured; $out filtered out; finished in 0.01s"
  exit 0
fi
echo; echo "failures:"; echo
for f in $failed; do
  echo "---- $f stdout ----"
  echo "thread '$f' panicked at tests/vm.rs:1:1:"
  echo "a test printing what looks like a list:"; echo "failures:"; echo "    decoy::not_a_test"; echo
done
echo; echo "failures:"
for f in $failed; do echo "    $f"; done
echo; echo "test result: FAILED. $passed passed; $(echo $failed | wc -w | tr -d ' ') failed; 0 ignored; 0 measured; $out filtered out; finished in 0.01s"
exit 101
"#;

/// A fake `pytest -v`, planned the same way; a directory argument selects
/// every test, a `FILE::NAME` argument that one.
const FAKE_PYTEST: &str = r#"#!/bin/sh
d=$FAKE_DIR
echo "$*" >>"$d/argv"
ids=""
for a in "$@"; do case $a in *::*) ids="$ids $a" ;; esac; done
echo "============================= test session starts =============================="
passed=0; failed=""
while read -r name outcomes; do
  if [ -n "$ids" ]; then case " $ids " in *" $name "*) ;; *) continue ;; esac; fi
  n=$(cat "$d/n.$(echo "$name" | tr '/:' '__')" 2>/dev/null || echo 0)
  echo $((n + 1)) >"$d/n.$(echo "$name" | tr '/:' '__')"
  set -- $outcomes; shift $((n < $# ? n : $# - 1))
  if [ "$1" = pass ]; then echo "$name PASSED    [ 50%]"; passed=$((passed + 1))
  else echo "$name FAILED    [ 50%]"; failed="$failed $name"; fi
done <"$d/plan"
if [ -z "$failed" ]; then echo "============================== $passed passed in 0.01s =============================="; exit 0; fi
echo "=================================== FAILURES ==================================="
echo "=========================== short test summary info ============================"
for f in $failed; do echo "FAILED $f - AssertionError: boom"; done
echo "========================= $(echo $failed | wc -w | tr -d ' ') failed, $passed passed in 0.01s =========================="
exit 1
"#;

struct Case {
    dir: TempDir,
    fake: PathBuf,
}

impl Case {
    fn new(tag: &str, fake: &str, plan: &str) -> Case {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new(&format!("rerun-{tag}"));
        let path = dir.join("fake-tests");
        std::fs::write(&path, fake).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join("plan"), plan).unwrap();
        Case { fake: path, dir }
    }

    /// tests/run-with-rerun ARGS (the fake stands for `FAKE`): exit code
    /// and everything it printed.
    fn run(&self, args: &[&str]) -> (i32, String) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/run-with-rerun");
        let out = Command::new(script)
            .args(args.iter().map(|a| {
                if *a == "FAKE" {
                    self.fake.as_os_str()
                } else {
                    a.as_ref()
                }
            }))
            .env("FAKE_DIR", &*self.dir)
            .current_dir(&self.dir)
            .output()
            .expect("run tests/run-with-rerun");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), text)
    }

    /// The arguments of each invocation of the fake, in order.
    fn invocations(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("argv"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }
}

const LIBTEST_ARGS: [&str; 3] = ["FAKE", "--ignored", "--test-threads=1"];

#[test]
fn a_passing_run_is_run_once_and_nothing_is_called_flaky() {
    let c = Case::new("pass", FAKE_LIBTEST, "vm::a pass\nvm::b pass\n");
    let (code, out) = c.run(&LIBTEST_ARGS);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("FLAKY"), "{out}");
    assert_eq!(c.invocations(), ["--ignored --test-threads=1"]);
}

#[test]
fn a_test_that_passes_alone_is_named_flaky_and_only_it_is_rerun() {
    let c = Case::new(
        "flaky",
        FAKE_LIBTEST,
        "vm::a pass\nvm::b fail pass\nvm::c pass\n",
    );
    let (code, out) = c.run(&LIBTEST_ARGS);
    assert_eq!(code, 0, "{out}");
    assert!(out.lines().any(|l| l == "FLAKY: vm::b"), "{out}");
    assert_eq!(out.matches("FLAKY:").count(), 1, "{out}");
    assert_eq!(
        c.invocations(),
        [
            "--ignored --test-threads=1",
            "--ignored --test-threads=1 --exact vm::b"
        ]
    );
    // The first run's output stays in the log, above the rerun's.
    let first = out.find("test vm::b ... FAILED").expect("first run shown");
    let second = out.find("test vm::b ... ok").expect("rerun shown");
    assert!(first < second, "{out}");
}

#[test]
fn a_test_that_fails_again_fails_the_run_and_is_not_called_flaky() {
    let c = Case::new("steady", FAKE_LIBTEST, "vm::a pass\nvm::b fail fail\n");
    let (code, out) = c.run(&LIBTEST_ARGS);
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains("FLAKY"), "{out}");
    assert!(out.contains("FAILED (failed twice): vm::b"), "{out}");
    assert_eq!(c.invocations().len(), 2);
}

#[test]
fn each_failed_test_is_judged_on_its_own_rerun() {
    let c = Case::new(
        "mixed",
        FAKE_LIBTEST,
        "ws::a fail pass\nws::b pass\nws::c fail fail\nws::d fail pass\n",
    );
    let (code, out) = c.run(&LIBTEST_ARGS);
    assert_eq!(code, 1, "{out}");
    let flaky: Vec<&str> = out.lines().filter(|l| l.starts_with("FLAKY: ")).collect();
    assert_eq!(flaky, ["FLAKY: ws::a", "FLAKY: ws::d"], "{out}");
    assert!(out.contains("FAILED (failed twice): ws::c"), "{out}");
    let calls = c.invocations();
    assert_eq!(
        calls[1..],
        [
            "--ignored --test-threads=1 --exact ws::a",
            "--ignored --test-threads=1 --exact ws::c",
            "--ignored --test-threads=1 --exact ws::d"
        ]
    );
}

#[test]
fn name_filters_select_the_first_run_only_and_options_keep_their_values() {
    // Under --exact, the filter `vm::a` would select vm::a again.
    let c = Case::new(
        "filters",
        FAKE_LIBTEST,
        "vm::a pass\nvm::b fail pass\nvm::c pass\n",
    );
    let (code, out) = c.run(&[
        "FAKE",
        "--ignored",
        "--skip",
        "vm::c",
        "vm::a",
        "vm::b",
        "--test-threads=1",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.lines().any(|l| l == "FLAKY: vm::b"), "{out}");
    assert_eq!(
        c.invocations(),
        [
            "--ignored --skip vm::c --test-threads=1 vm::a vm::b",
            "--ignored --skip vm::c --test-threads=1 --exact vm::b"
        ]
    );
}

#[test]
fn only_the_list_before_the_result_names_failed_tests_not_the_tests_output() {
    // Every failing test's output holds a `failures:` list naming
    // decoy::not_a_test (see FAKE_LIBTEST).
    let c = Case::new("decoy", FAKE_LIBTEST, "vm::a fail pass\n");
    let (code, out) = c.run(&LIBTEST_ARGS);
    assert_eq!(code, 0, "{out}");
    assert!(!c.invocations().iter().any(|a| a.contains("decoy")));
    assert_eq!(c.invocations().len(), 2);
}

#[test]
fn a_failed_run_that_names_no_test_fails_without_a_rerun() {
    let c = Case::new("crash", FAKE_LIBTEST, "vm::a pass\nvm::b crash pass\n");
    let (code, out) = c.run(&LIBTEST_ARGS);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("without naming a failed test"), "{out}");
    assert!(!out.contains("FLAKY"), "{out}");
    assert_eq!(c.invocations().len(), 1);
}

#[test]
fn a_rerun_that_runs_nothing_does_not_count_as_a_pass() {
    let c = Case::new("deaf", FAKE_LIBTEST, "vm::a fail pass\n");
    // The rerun's filter will select nothing, and the fake exits 0.
    std::fs::write(c.dir.join("deaf"), "").unwrap();
    let (code, out) = c.run(&LIBTEST_ARGS);
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains("FLAKY"), "{out}");
    assert!(out.contains("did not run that one test"), "{out}");
}

#[test]
fn pytest_failures_are_rerun_by_node_id_without_the_first_run_arguments() {
    let plan = "tests/mcp/test_client.py::test_a pass\n\
                tests/mcp/test_client.py::test_vm fail pass\n\
                tests/mcp/test_hosts.py::test_b fail fail\n";
    let c = Case::new("pytest", FAKE_PYTEST, plan);
    let (code, out) = c.run(&["--pytest", "FAKE", "-v", "--", "tests/mcp"]);
    assert_eq!(code, 1, "{out}");
    let flaky: Vec<&str> = out.lines().filter(|l| l.starts_with("FLAKY: ")).collect();
    assert_eq!(flaky, ["FLAKY: tests/mcp/test_client.py::test_vm"], "{out}");
    assert!(
        out.contains("FAILED (failed twice): tests/mcp/test_hosts.py::test_b"),
        "{out}"
    );
    assert_eq!(
        c.invocations(),
        [
            "-v tests/mcp",
            "-v tests/mcp/test_client.py::test_vm",
            "-v tests/mcp/test_hosts.py::test_b"
        ]
    );

    let c = Case::new(
        "pytest-flaky",
        FAKE_PYTEST,
        "tests/mcp/test_client.py::test_vm fail pass\n",
    );
    let (code, out) = c.run(&["--pytest", "FAKE", "-v", "--", "tests/mcp"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("FLAKY: tests/mcp/test_client.py::test_vm"));
}
