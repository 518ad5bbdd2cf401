//! Engine errors: each says what went wrong and what to do about it.

use std::fmt;

#[derive(Debug)]
pub enum EngineError {
    /// The caller asked for something invalid (bad name, bad size).
    Invalid(String),
    NotFound(String),
    /// The host cannot run VMs as asked (no KVM, PVM, missing files).
    Unavailable(String),
    /// The VM or its agent failed.
    Guest(String),
    Io(String),
}

pub type Result<T> = std::result::Result<T, EngineError>;

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Invalid(m)
            | EngineError::NotFound(m)
            | EngineError::Unavailable(m)
            | EngineError::Guest(m)
            | EngineError::Io(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for EngineError {}

impl EngineError {
    pub fn io(context: impl fmt::Display, e: std::io::Error) -> Self {
        EngineError::Io(format!("{context}: {e}"))
    }

    /// Process exit code for the CLI: 2 for usage errors, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            EngineError::Invalid(_) => 2,
            _ => 1,
        }
    }
}
