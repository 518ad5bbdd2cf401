//! The workspace engine: everything the CLI and the MCP server do, as one
//! library API whose operations return typed results (`run::RunResult`,
//! `workspace::results`), serialized as the JSON both front ends give and
//! shown as text by `render`. Front ends only parse arguments and print.

pub mod agent;
pub mod cancel;
pub mod capacity;
pub mod disk;
pub mod doctor;
pub mod environments;
pub mod error;
pub mod host;
pub mod hostpath;
pub mod lock;
pub mod paths;
pub mod run;
pub mod vm;
pub mod workspace;

pub use error::{EngineError, Result};
