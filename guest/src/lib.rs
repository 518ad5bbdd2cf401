//! The guest agent's command runner, also used by the host for the
//! explicit `--allow-host-compat` fallback so both paths behave alike.

pub mod archive;
pub mod beneath;
pub mod exec;
pub mod files;
pub mod ops;

/// The test harness's temporary directory, for unit tests too.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../../tests/support/temp_dir.rs"]
mod temp_dir;
