//! One definition per option, driving both parsing and help.
//!
//! Every command is a [`Command`]: its positional [`Arg`]s and its
//! [`Opt`]s, each defined once with its name, value name, help line,
//! default and the function that stores it into the command's typed args
//! struct. The parser (parse.rs) and the help text (help.rs) read that one
//! table, so an option cannot be accepted without being documented, nor
//! documented without being accepted, and the default help shows is read
//! from the struct the parser starts from. Commands with subcommands are
//! [`Group`]s. ripgrep's `crates/core/flags` is the model: lexopt splits
//! the command line, the table gives each piece its meaning and type.
//!
//! Exit codes: a command line the table refuses is a [`UsageError`], exit
//! [`EXIT_USAGE`] (2); everything that fails once the command runs exits 1.

mod help;
mod parse;

#[cfg(test)]
mod tests;

pub use parse::{parse, Parsed};

use std::ffi::OsString;
use std::fmt;

/// Exit code of a command line pyro could not understand.
pub const EXIT_USAGE: i32 = 2;

/// Stores one value into a command's args struct; `Err` says what is wrong
/// with it, as a predicate the option's or argument's name is put before
/// ("needs a number, got \"x\"" becomes "--mem-mib needs a number, ...").
pub type Setter<T> = fn(&mut T, OsString) -> Result<(), String>;

/// A rule between a command's options; `Err` is the message.
pub type Check<T> = fn(&T) -> Result<(), String>;

/// Whether an option takes a value.
pub enum Kind<T: 'static> {
    /// `--json`: present or not.
    Switch(fn(&mut T)),
    /// `--mem-mib M`: `name` is the placeholder help shows (`M`).
    Value { name: &'static str, set: Setter<T> },
}

/// One `--option` of one command.
pub struct Opt<T: 'static> {
    /// The name without its dashes.
    pub long: &'static str,
    pub kind: Kind<T>,
    /// What it does; a `\n` starts a continuation line.
    pub help: &'static str,
    /// Shows the value the command uses when the option is not given, read
    /// from the args struct parsing starts from (`T::default()`).
    pub default: Option<fn(&T) -> String>,
    /// May be given more than once (each one counts).
    pub repeats: bool,
    /// Must be given.
    pub required: bool,
}

impl<T> Opt<T> {
    pub const fn switch(long: &'static str, help: &'static str, set: fn(&mut T)) -> Self {
        Opt {
            long,
            kind: Kind::Switch(set),
            help,
            default: None,
            repeats: false,
            required: false,
        }
    }

    pub const fn value(
        long: &'static str,
        name: &'static str,
        help: &'static str,
        set: Setter<T>,
    ) -> Self {
        Opt {
            long,
            kind: Kind::Value { name, set },
            help,
            default: None,
            repeats: false,
            required: false,
        }
    }

    pub const fn default(self, show: fn(&T) -> String) -> Self {
        Opt {
            default: Some(show),
            ..self
        }
    }

    pub const fn repeats(self) -> Self {
        Opt {
            repeats: true,
            ..self
        }
    }

    pub const fn required(self) -> Self {
        Opt {
            required: true,
            ..self
        }
    }

    /// `--name VALUE`, as usage lines and help show it.
    pub fn spelled(&self) -> String {
        match self.kind {
            Kind::Switch(_) => format!("--{}", self.long),
            Kind::Value { name, .. } => format!("--{} {name}", self.long),
        }
    }
}

/// How many command-line values a positional argument takes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Takes {
    One,
    /// Every value from here on; options are still options until `--`
    /// (`workspace exec ID -- CMD...`).
    Rest,
    /// Everything from its first value on, options included, untouched
    /// (`run ENV -- CMD...`, where `pyro run ENV echo --json` runs
    /// `echo --json`).
    RawRest,
}

/// One positional argument of one command.
pub struct Arg<T: 'static> {
    /// The placeholder usage lines show (`ID`).
    pub name: &'static str,
    pub help: &'static str,
    pub takes: Takes,
    /// For a required argument, what the error names when it is missing
    /// ("missing workspace ID"); `None` for an optional one.
    pub missing: Option<&'static str>,
    pub set: Setter<T>,
}

impl<T> Arg<T> {
    /// A required argument; `missing` names it in the error.
    pub const fn required(
        name: &'static str,
        missing: &'static str,
        help: &'static str,
        set: Setter<T>,
    ) -> Self {
        Arg {
            name,
            help,
            takes: Takes::One,
            missing: Some(missing),
            set,
        }
    }

    pub const fn optional(name: &'static str, help: &'static str, set: Setter<T>) -> Self {
        Arg {
            name,
            help,
            takes: Takes::One,
            missing: None,
            set,
        }
    }

    /// Takes the rest of the command line, as [`Takes::Rest`] or
    /// [`Takes::RawRest`].
    pub const fn rest(self, takes: Takes) -> Self {
        Arg { takes, ..self }
    }

    /// As usage lines show it: `ID`, `[PATH]`, `-- CMD [ARGS...]` (a
    /// command to run), `[TOPIC...]`.
    pub fn spelled(&self) -> String {
        match (self.takes, self.missing) {
            (Takes::One, Some(_)) => self.name.to_string(),
            (Takes::One, None) => format!("[{}]", self.name),
            (_, Some(_)) => format!("-- {} [ARGS...]", self.name),
            (_, None) => format!("[{}...]", self.name),
        }
    }
}

/// A command that runs: its arguments, options and the function that
/// does the work with the typed args the parser built.
pub struct Command<T: 'static> {
    /// The words after `pyro`: `workspace exec`.
    pub path: &'static str,
    /// One line, for its group's list of commands.
    pub about: &'static str,
    /// Paragraphs `--help` shows after `about` (may be empty).
    pub doc: &'static str,
    pub args: &'static [Arg<T>],
    pub opts: &'static [Opt<T>],
    /// Rules between options the table cannot say (exactly one of two).
    pub check: Option<Check<T>>,
    pub examples: &'static [&'static str],
    pub run: fn(T) -> i32,
}

/// A command or group whatever its args type: what groups, `pyro help`
/// and the dispatcher need.
pub trait Runnable: Sync {
    fn path(&self) -> &'static str;
    fn about(&self) -> &'static str;
    /// Arguments and required options, without `[options]`: the line a
    /// group's list shows.
    fn brief(&self) -> String;
    fn help(&self) -> String;
    /// Parses the rest of the command line and runs; the exit code.
    fn main(&self, parser: lexopt::Parser) -> i32;
    /// What is inconsistent in the table (tests.rs checks every command).
    #[cfg(test)]
    fn problems(&self) -> Vec<String>;
}

impl<T: Default> Runnable for Command<T> {
    fn path(&self) -> &'static str {
        self.path
    }
    fn about(&self) -> &'static str {
        self.about
    }
    fn brief(&self) -> String {
        self.brief_line()
    }
    fn help(&self) -> String {
        self.help_text()
    }
    fn main(&self, mut parser: lexopt::Parser) -> i32 {
        match parse(self, &mut parser) {
            Ok(Parsed::Help) => {
                print!("{}", self.help_text());
                0
            }
            Ok(Parsed::Args(args)) => (self.run)(args),
            Err(e) => self.usage_error(&e),
        }
    }
    #[cfg(test)]
    fn problems(&self) -> Vec<String> {
        tests::problems(self)
    }
}

impl<T: Default> Command<T> {
    /// Prints a usage error for this command; returns [`EXIT_USAGE`].
    pub fn usage_error(&self, e: &dyn fmt::Display) -> i32 {
        report(e, &self.usage_line(), self.path)
    }
}

/// A command with subcommands: `pyro workspace`, `pyro workspace file`,
/// and `pyro` itself (path "").
pub struct Group {
    pub path: &'static str,
    pub about: &'static str,
    pub doc: &'static str,
    pub entries: &'static [Entry],
    pub examples: &'static [&'static str],
    /// `--version` / `-V` print this (only `pyro` itself has one).
    pub version: Option<&'static str>,
}

/// One name a group dispatches on.
pub struct Entry {
    pub name: &'static str,
    pub node: Node,
    /// Accepted but not listed (aliases, internal roles).
    pub hidden: bool,
}

pub enum Node {
    Command(&'static dyn Runnable),
    Group(&'static Group),
    /// Parses its own arguments (the internal `pyro vmm` role).
    Raw(fn(lexopt::Parser) -> i32),
}

impl Entry {
    pub const fn command(name: &'static str, c: &'static dyn Runnable) -> Self {
        Entry {
            name,
            node: Node::Command(c),
            hidden: false,
        }
    }
    pub const fn group(name: &'static str, g: &'static Group) -> Self {
        Entry {
            name,
            node: Node::Group(g),
            hidden: false,
        }
    }
    pub const fn hidden(self) -> Self {
        Entry {
            hidden: true,
            ..self
        }
    }
}

impl Group {
    pub fn find(&self, word: &str) -> Option<&'static Entry> {
        self.entries.iter().find(|e| e.name == word)
    }

    /// Prints a usage error for this group; returns [`EXIT_USAGE`].
    pub fn usage_error(&self, e: &dyn fmt::Display) -> i32 {
        report(e, &self.usage_line(), self.path)
    }

    /// The help of `words` below this group (`["file", "read"]`), or of
    /// the deepest group they lead to.
    pub fn help_for(&self, words: &[String]) -> String {
        let Some((first, rest)) = words.split_first() else {
            return self.help_text();
        };
        match self.find(first).map(|e| &e.node) {
            Some(Node::Group(g)) => g.help_for(rest),
            Some(Node::Command(c)) => c.help(),
            Some(Node::Raw(_)) | None => self.help_text(),
        }
    }
}

/// Commands whose output can be JSON.
pub trait JsonFlag {
    fn json_flag(&mut self) -> &mut bool;
}

fn set_json<T: JsonFlag>(args: &mut T) {
    *args.json_flag() = true;
}

/// `--json`, with the help line the command gives.
pub const fn json<T: JsonFlag>(help: &'static str) -> Opt<T> {
    Opt::switch("json", help, set_json::<T>)
}

/// `impl JsonFlag` for args structs with a `json: bool` field.
macro_rules! json_flag {
    ($($t:ty),* $(,)?) => {
        $(impl $crate::cli::flags::JsonFlag for $t {
            fn json_flag(&mut self) -> &mut bool {
                &mut self.json
            }
        })*
    };
}
pub(crate) use json_flag;

/// A value as UTF-8 text.
pub fn text(v: OsString) -> Result<String, String> {
    v.into_string()
        .map_err(|v| format!("must be valid UTF-8, got {:?}", v.to_string_lossy()))
}

/// A value as a number.
pub fn number<N: std::str::FromStr>(v: OsString) -> Result<N, String> {
    let s = v.into_string().map_err(|_| "needs a number".to_string())?;
    s.parse().map_err(|_| format!("needs a number, got {s:?}"))
}

/// What is wrong with a command line.
#[derive(Debug, PartialEq, Eq)]
pub enum UsageError {
    /// An option this command does not have; `similar` are the ones the
    /// person may have meant.
    UnknownOption {
        option: String,
        similar: Vec<&'static str>,
    },
    /// An option that takes a value was last on the command line.
    MissingValue {
        option: &'static str,
        value: &'static str,
    },
    /// `--json=yes`: a value given to an option that takes none.
    UnexpectedValue {
        option: String,
    },
    /// The option's value is not what it takes.
    BadValue {
        option: &'static str,
        why: String,
    },
    /// A positional argument is not what it takes.
    BadArgument {
        name: &'static str,
        why: String,
    },
    /// More positional arguments than the command takes.
    UnexpectedArgument(String),
    MissingArgument(&'static str),
    MissingOption {
        option: &'static str,
        value: &'static str,
    },
    /// A rule between options ([`Command::check`]).
    Rule(String),
    /// A word a group has no command for.
    UnknownCommand {
        group: &'static str,
        word: String,
    },
    /// A group given nothing it can dispatch on.
    MissingCommand {
        group: &'static str,
        choices: Vec<&'static str>,
    },
    /// What lexopt itself refused (for instance a non-UTF-8 option name).
    Other(String),
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::UnknownOption { option, similar } => {
                write!(f, "unknown option {option}")?;
                if !similar.is_empty() {
                    let names: Vec<String> = similar.iter().map(|s| format!("--{s}")).collect();
                    write!(f, " (did you mean {}?)", names.join(" or "))?;
                }
                Ok(())
            }
            UsageError::MissingValue { option, value } => {
                write!(f, "--{option} needs a value: --{option} {value}")
            }
            UsageError::UnexpectedValue { option } => {
                write!(f, "{option} takes no value; give it alone")
            }
            UsageError::BadValue { option, why } => write!(f, "--{option} {why}"),
            UsageError::BadArgument { name, why } => write!(f, "{name} {why}"),
            UsageError::UnexpectedArgument(v) => write!(f, "unexpected argument {v:?}"),
            UsageError::MissingArgument(what) => write!(f, "missing {what}"),
            UsageError::MissingOption { option, value } => write!(f, "missing --{option} {value}"),
            UsageError::Rule(m) | UsageError::Other(m) => f.write_str(m),
            UsageError::UnknownCommand { group, word } => {
                let group = if group.is_empty() {
                    String::new()
                } else {
                    format!("{group} ")
                };
                write!(f, "unknown {group}command {word:?}")
            }
            UsageError::MissingCommand { group, choices } => {
                write!(f, "`pyro {group}` needs a command: {}", choices.join(", "))
            }
        }
    }
}

/// Prints `error: ...`, the usage line and where the help is; returns
/// [`EXIT_USAGE`].
fn report(e: &dyn fmt::Display, usage: &str, path: &str) -> i32 {
    let help = if path.is_empty() {
        "pyro --help".to_string()
    } else {
        format!("pyro {path} --help")
    };
    eprintln!("error: {e}\n{usage}\nSee `{help}` for the options and examples.");
    EXIT_USAGE
}
