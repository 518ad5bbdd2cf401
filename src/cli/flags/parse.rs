//! The command line into typed args: a pure function of the arguments and
//! a command's table (its tests assert [`UsageError`] variants), and the
//! dispatch of a group to the command a word names.

use super::{Command, Entry, Group, Kind, Node, Takes, UsageError};
use lexopt::prelude::*;

/// What parsing a command's arguments gave.
#[derive(Debug)]
pub enum Parsed<T> {
    Args(T),
    /// `-h` / `--help` was given: print the help, run nothing.
    Help,
}

/// Parses the rest of `parser` with `cmd`'s table into its args struct,
/// starting from `T::default()`.
pub fn parse<T: Default>(
    cmd: &Command<T>,
    parser: &mut lexopt::Parser,
) -> Result<Parsed<T>, UsageError> {
    let mut args = T::default();
    // The positional argument the next value goes to, and whether a
    // `Rest` argument has had a value.
    let mut slot = 0;
    let mut rest_given = false;
    let mut given = vec![false; cmd.opts.len()];
    while let Some(arg) = parser.next().map_err(lexopt_error)? {
        match arg {
            Long("help") | Short('h') => return Ok(Parsed::Help),
            Long(name) => {
                let Some(i) = cmd.opts.iter().position(|o| o.long == name) else {
                    return Err(UsageError::UnknownOption {
                        option: format!("--{name}"),
                        similar: similar(name, cmd.opts.iter().map(|o| o.long)),
                    });
                };
                let opt = &cmd.opts[i];
                given[i] = true;
                match opt.kind {
                    Kind::Switch(set) => set(&mut args),
                    Kind::Value { name, set } => {
                        let v = parser.value().map_err(|_| UsageError::MissingValue {
                            option: opt.long,
                            value: name,
                        })?;
                        set(&mut args, v).map_err(|why| UsageError::BadValue {
                            option: opt.long,
                            why,
                        })?;
                    }
                }
            }
            Short(c) => {
                return Err(UsageError::UnknownOption {
                    option: format!("-{c}"),
                    similar: Vec::new(),
                })
            }
            Value(v) => {
                let Some(a) = cmd.args.get(slot) else {
                    return Err(UsageError::UnexpectedArgument(
                        v.to_string_lossy().into_owned(),
                    ));
                };
                let bad = |why| UsageError::BadArgument { name: a.name, why };
                (a.set)(&mut args, v).map_err(bad)?;
                match a.takes {
                    Takes::One => slot += 1,
                    Takes::Rest => rest_given = true,
                    Takes::RawRest => {
                        rest_given = true;
                        for v in parser.raw_args().map_err(lexopt_error)? {
                            (a.set)(&mut args, v).map_err(bad)?;
                        }
                    }
                }
            }
        }
    }
    for (i, a) in cmd.args.iter().enumerate() {
        let filled = i < slot || (i == slot && rest_given);
        match a.missing {
            Some(what) if !filled => return Err(UsageError::MissingArgument(what)),
            _ => {}
        }
    }
    for (o, given) in cmd.opts.iter().zip(given) {
        if o.required && !given {
            return Err(UsageError::MissingOption {
                option: o.long,
                value: match o.kind {
                    Kind::Value { name, .. } => name,
                    Kind::Switch(_) => "",
                },
            });
        }
    }
    if let Some(check) = cmd.check {
        check(&args).map_err(UsageError::Rule)?;
    }
    Ok(Parsed::Args(args))
}

/// lexopt's own refusals: a value given to a switch (`--json=1`), a
/// non-UTF-8 option name.
fn lexopt_error(e: lexopt::Error) -> UsageError {
    match e {
        lexopt::Error::UnexpectedValue { option, .. } => UsageError::UnexpectedValue { option },
        e => UsageError::Other(e.to_string()),
    }
}

/// The names among `known` the person may have meant by `given`: one is
/// the start of the other, or they are at most two edits apart.
pub(super) fn similar(given: &str, known: impl Iterator<Item = &'static str>) -> Vec<&'static str> {
    if given.len() < 2 {
        return Vec::new();
    }
    known
        .filter(|k| k.starts_with(given) || given.starts_with(k) || edits(given, k) <= 2)
        .collect()
}

/// Levenshtein distance (the names are short).
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

impl Group {
    /// Reads the next word and hands the rest of the command line to the
    /// command or group it names. `--help` prints this group's help; no
    /// word at all does too for `pyro` itself, and is a usage error (naming
    /// the choices) for the groups below it.
    pub fn main(&self, mut parser: lexopt::Parser) -> i32 {
        let word = match parser.next() {
            Ok(None) if !self.path.is_empty() => {
                return self.usage_error(&UsageError::MissingCommand {
                    group: self.path,
                    choices: self.visible().map(|e| e.name).collect(),
                })
            }
            Ok(None) | Ok(Some(Long("help"))) | Ok(Some(Short('h'))) => {
                print!("{}", self.help_text());
                return 0;
            }
            Ok(Some(Long("version"))) | Ok(Some(Short('V'))) if self.version.is_some() => {
                println!("{}", self.version.unwrap_or_default());
                return 0;
            }
            Ok(Some(Value(w))) => w.to_string_lossy().into_owned(),
            Ok(Some(Long(name))) => {
                return self.usage_error(&UsageError::UnknownOption {
                    option: format!("--{name}"),
                    similar: Vec::new(),
                })
            }
            Ok(Some(Short(c))) => {
                return self.usage_error(&UsageError::UnknownOption {
                    option: format!("-{c}"),
                    similar: Vec::new(),
                })
            }
            Err(e) => return self.usage_error(&lexopt_error(e)),
        };
        match self.find(&word).map(|e| &e.node) {
            Some(Node::Command(c)) => c.main(parser),
            Some(Node::Group(g)) => g.main(parser),
            Some(Node::Raw(f)) => f(parser),
            None => self.usage_error(&UsageError::UnknownCommand {
                group: self.path,
                word,
            }),
        }
    }

    /// The entries a listing shows (not aliases or internal roles).
    pub(super) fn visible(&self) -> impl Iterator<Item = &'static Entry> {
        self.entries.iter().filter(|e| !e.hidden)
    }
}

#[cfg(test)]
pub(super) fn edits_for_test(a: &str, b: &str) -> usize {
    edits(a, b)
}
