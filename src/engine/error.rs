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

    /// `Invalid` unless `lo <= value <= hi`, naming the field and its bounds.
    pub fn check_range(name: &str, value: u64, lo: u64, hi: u64) -> Result<()> {
        if (lo..=hi).contains(&value) {
            Ok(())
        } else {
            Err(EngineError::Invalid(format!(
                "{name} must be between {lo} and {hi}, got {value}"
            )))
        }
    }

    /// The VM size limits shared by one-shot runs and workspaces.
    pub fn check_vm_size(vcpu_count: u8, mem_mib: u32) -> Result<()> {
        Self::check_range("vcpu_count", vcpu_count.into(), 1, 32)?;
        Self::check_range("mem_mib", mem_mib.into(), 256, 65536)
    }
}
