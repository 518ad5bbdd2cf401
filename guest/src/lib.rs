//! The guest agent's command runner, also used by the host for the
//! explicit `--allow-host-compat` fallback so both paths behave alike.

pub mod archive;
pub mod beneath;
pub mod exec;
pub mod files;
pub mod ops;
