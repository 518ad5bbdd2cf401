//! The parser against a small table (typed errors), the help it writes,
//! and [`problems`], which the CLI's tests run over every real command.

use super::*;
use std::collections::BTreeSet;

#[derive(Debug, PartialEq)]
struct Args {
    id: String,
    argv: Vec<String>,
    count: u32,
    tags: Vec<String>,
    output: String,
    json: bool,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            id: String::new(),
            argv: Vec::new(),
            count: 7,
            tags: Vec::new(),
            output: String::new(),
            json: false,
        }
    }
}

json_flag!(Args);

const ID: Arg<Args> = Arg::required("ID", "thing ID", "the thing", |a, v| {
    a.id = text(v)?;
    Ok(())
});

const COUNT: Opt<Args> = Opt::value("count", "N", "how many", |a: &mut Args, v| {
    a.count = number(v)?;
    Ok(())
})
.default(|a| a.count.to_string());

const TAG: Opt<Args> = Opt::value("tag", "TAG", "a tag", |a: &mut Args, v| {
    a.tags.push(text(v)?);
    Ok(())
})
.repeats();

static EXEC: Command<Args> = Command {
    path: "thing exec",
    about: "run a command on a thing",
    doc: "Runs CMD on the thing ID.\nOptions go before `--`.",
    args: &[
        ID,
        Arg::required(
            "CMD",
            "command after `--`",
            "what to run",
            |a: &mut Args, v| {
                a.argv.push(text(v)?);
                Ok(())
            },
        )
        .rest(Takes::Rest),
    ],
    opts: &[COUNT, TAG, json("print JSON")],
    check: None,
    examples: &["pyro thing exec 1 -- make"],
    run: |_| 0,
};

static RAW: Command<Args> = Command {
    path: "thing raw",
    about: "run a command, raw",
    doc: "",
    args: &[
        ID,
        Arg::required("CMD", "command", "what to run", |a: &mut Args, v| {
            a.argv.push(text(v)?);
            Ok(())
        })
        .rest(Takes::RawRest),
    ],
    opts: &[json("print JSON")],
    check: None,
    examples: &[],
    run: |_| 0,
};

static EXPORT: Command<Args> = Command {
    path: "thing export",
    about: "export a thing",
    doc: "",
    args: &[ID],
    opts: &[
        Opt::value("output", "PATH", "where to", |a: &mut Args, v| {
            a.output = text(v)?;
            Ok(())
        })
        .required(),
        COUNT,
    ],
    check: Some(|a| {
        if a.count == 0 {
            Err("--count 0 exports nothing".into())
        } else {
            Ok(())
        }
    }),
    examples: &[],
    run: |_| 0,
};

fn parse_with(cmd: &Command<Args>, args: &[&str]) -> Result<Args, UsageError> {
    let mut p = lexopt::Parser::from_args(args.iter().map(|s| s.to_string()));
    match parse(cmd, &mut p)? {
        Parsed::Args(a) => Ok(a),
        Parsed::Help => panic!("{args:?} asked for help"),
    }
}

#[test]
fn options_switches_and_the_command_after_dashes_land_in_their_fields() {
    let a = parse_with(
        &EXEC,
        &[
            "abc", "--count", "5", "--json", "--tag=x", "--tag", "y", "--", "sh", "-c", "echo hi",
        ],
    )
    .unwrap();
    assert_eq!(
        a,
        Args {
            id: "abc".into(),
            argv: vec!["sh".into(), "-c".into(), "echo hi".into()],
            count: 5,
            tags: vec!["x".into(), "y".into()],
            output: String::new(),
            json: true,
        }
    );
    // Options stay options between the words of the command until `--`,
    // and the default holds when an option is not given.
    let a = parse_with(&EXEC, &["abc", "make", "--json", "-k"]);
    assert_eq!(
        a,
        Err(UsageError::UnknownOption {
            option: "-k".into(),
            similar: vec![]
        })
    );
    let a = parse_with(&EXEC, &["abc", "make", "--json", "test"]).unwrap();
    assert_eq!(
        (a.argv, a.json, a.count),
        (vec!["make".into(), "test".into()], true, 7)
    );
}

#[test]
fn a_raw_rest_takes_everything_from_its_first_word_on() {
    let a = parse_with(&RAW, &["abc", "--json", "echo", "--json", "-n", "--", "x"]).unwrap();
    assert_eq!(a.argv, ["echo", "--json", "-n", "--", "x"]);
    assert!(a.json);
}

#[test]
fn unknown_options_are_named_with_the_ones_meant() {
    let e = parse_with(&EXEC, &["abc", "--bogus"]).unwrap_err();
    assert_eq!(
        e,
        UsageError::UnknownOption {
            option: "--bogus".into(),
            similar: vec![]
        }
    );
    assert_eq!(e.to_string(), "unknown option --bogus");
    let e = parse_with(&EXEC, &["abc", "--cuont", "1"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown option --cuont (did you mean --count?)"
    );
    let e = parse_with(&EXEC, &["abc", "--js"]).unwrap_err();
    assert_eq!(e.to_string(), "unknown option --js (did you mean --json?)");
}

#[test]
fn values_missing_or_malformed_are_usage_errors_naming_the_option() {
    assert_eq!(
        parse_with(&EXEC, &["abc", "--count"]).unwrap_err(),
        UsageError::MissingValue {
            option: "count",
            value: "N"
        }
    );
    let e = parse_with(&EXEC, &["abc", "--count", "lots"]).unwrap_err();
    assert_eq!(
        e,
        UsageError::BadValue {
            option: "count",
            why: "needs a number, got \"lots\"".into()
        }
    );
    assert_eq!(e.to_string(), "--count needs a number, got \"lots\"");
    assert_eq!(
        parse_with(&EXEC, &["abc", "--json=yes", "--", "x"]).unwrap_err(),
        UsageError::UnexpectedValue {
            option: "--json".into()
        }
    );
}

#[test]
fn arguments_missing_or_extra_are_usage_errors() {
    assert_eq!(
        parse_with(&EXEC, &[]).unwrap_err(),
        UsageError::MissingArgument("thing ID")
    );
    let e = parse_with(&EXEC, &["abc", "--json"]).unwrap_err();
    assert_eq!(e, UsageError::MissingArgument("command after `--`"));
    assert_eq!(e.to_string(), "missing command after `--`");
    assert_eq!(
        parse_with(&EXPORT, &["abc", "def", "--output", "x"]).unwrap_err(),
        UsageError::UnexpectedArgument("def".into())
    );
}

#[test]
fn required_options_and_rules_between_options_are_checked_after_parsing() {
    let e = parse_with(&EXPORT, &["abc"]).unwrap_err();
    assert_eq!(
        e,
        UsageError::MissingOption {
            option: "output",
            value: "PATH"
        }
    );
    assert_eq!(e.to_string(), "missing --output PATH");
    assert_eq!(
        parse_with(&EXPORT, &["abc", "--output", "o", "--count", "0"]).unwrap_err(),
        UsageError::Rule("--count 0 exports nothing".into())
    );
    assert_eq!(
        parse_with(&EXPORT, &["--output", "o", "abc"])
            .unwrap()
            .output,
        "o"
    );
}

#[test]
fn help_anywhere_asks_for_help_instead_of_running() {
    for args in [
        &["--help"][..],
        &["abc", "-h"],
        &["abc", "--bogus-later", "--help"],
    ] {
        let mut p = lexopt::Parser::from_args(args.iter().map(|s| s.to_string()));
        match parse(&EXEC, &mut p) {
            Ok(Parsed::Help) => {}
            // An unknown option before --help is reported first.
            Err(UsageError::UnknownOption { .. }) if args.len() == 3 => {}
            other => panic!("{args:?}: {other:?}"),
        }
    }
}

#[test]
fn help_is_written_from_the_table() {
    let h = EXEC.help_text();
    assert!(
        h.starts_with("Usage: pyro thing exec ID [options] -- CMD [ARGS...]\n\nRuns CMD"),
        "{h}"
    );
    for line in [
        "  ID             the thing",
        "  CMD [ARGS...]  what to run",
        "  --count N      how many (default 7)",
        "  --tag TAG      a tag (repeatable)",
        "  --json         print JSON",
        "  -h, --help     show this help",
        "  pyro thing exec 1 -- make",
    ] {
        assert!(h.lines().any(|l| l == line), "{line:?} not in\n{h}");
    }
    assert_eq!(
        EXPORT.usage_line(),
        "Usage: pyro thing export ID --output PATH [options]"
    );
    let h = EXPORT.help_text();
    assert!(
        h.contains("\n  --output PATH  where to (required)\n"),
        "{h}"
    );
    assert!(problems(&EXEC).is_empty() && problems(&EXPORT).is_empty());
}

#[test]
fn edit_distance() {
    assert_eq!(parse::edits_for_test("kitten", "sitting"), 3);
    assert_eq!(parse::edits_for_test("json", "json"), 0);
    assert_eq!(parse::edits_for_test("", "abc"), 3);
}

/// What is wrong with `cmd`'s table: names given twice, `help` redefined,
/// arguments out of order, empty help lines, an option help does not show.
pub fn problems<T: Default>(cmd: &Command<T>) -> Vec<String> {
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    for o in cmd.opts {
        if !names.insert(o.long) {
            out.push(format!("{}: --{} defined twice", cmd.path, o.long));
        }
        if o.long == "help" || o.long.starts_with('-') || o.long.is_empty() {
            out.push(format!("{}: bad option name {:?}", cmd.path, o.long));
        }
        if o.help.trim().is_empty() {
            out.push(format!("{}: --{} has no help", cmd.path, o.long));
        }
    }
    let mut optional_seen = false;
    for (i, a) in cmd.args.iter().enumerate() {
        if a.takes != Takes::One && i + 1 != cmd.args.len() {
            out.push(format!(
                "{}: {} takes the rest but is not last",
                cmd.path, a.name
            ));
        }
        if a.missing.is_some() && optional_seen {
            out.push(format!(
                "{}: required {} after an optional one",
                cmd.path, a.name
            ));
        }
        optional_seen |= a.missing.is_none();
        if a.help.trim().is_empty() {
            out.push(format!("{}: {} has no help", cmd.path, a.name));
        }
    }
    if cmd.about.trim().is_empty() {
        out.push(format!("{}: no about line", cmd.path));
    }
    let help = cmd.help_text();
    for o in cmd.opts {
        if !help.contains(&format!("  {}", o.spelled())) {
            out.push(format!("{}: help does not show --{}", cmd.path, o.long));
        }
    }
    out
}
