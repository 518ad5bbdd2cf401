//! What a tool is: its definition (name, profiles, schemas, hints,
//! handler), what a call gets from the server and what it returns. The
//! tools themselves are defined in `registry`; this file knows none of
//! them.

use super::profile::Profile;
use super::schema::{self, Arg};
use crate::engine::vm::CancelToken;
use crate::engine::Result;
use crate::render::Rendered;
use serde_json::{json, Map, Value};

/// The result of one tool call as MCP reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `structuredContent` plus a short text rendering of it.
    Done { structured: Value, text: String },
    /// `isError: true` with a message a model can act on.
    Failed(String),
    /// The client cancelled the call; no response is sent. The text says
    /// what the cancellation stopped, for the log.
    Cancelled(String),
}

/// Services a running tool call gets from the server.
pub struct CallContext<'a> {
    pub cancel: &'a CancelToken,
    /// The project `workspace_create` seeds from when given no seed_path.
    pub project: &'a super::project::ProjectSource,
    /// What the operator allowed on the host (paths, host execution).
    pub access: &'a super::access::HostAccess,
    /// Sends a progress notification (only when the caller asked for them).
    pub progress: &'a (dyn Fn(&str) + Sync),
    /// Sends a log notification at a level name ("debug", "info", ...).
    pub log: &'a (dyn Fn(&str, Value) + Sync),
}

/// Arguments of a call, validated against the tool's table and with
/// defaults filled in.
pub type Args = Map<String, Value>;

/// How a call of the tool runs.
#[derive(Clone, Copy)]
pub enum Handler {
    /// In the profile's contract but not in this build: left out of
    /// `tools/list` rather than advertised as a stub.
    Planned,
    /// Runs the whole call itself (`vm_run`: phases, heartbeat,
    /// cancellation of its VM).
    Direct(fn(&Args, &CallContext) -> Outcome),
    /// One workspace engine operation; the cancellation scope, the outcome
    /// of a cancelled call and the rendering are shared
    /// (`workspace_tools::call`).
    Workspace {
        run: fn(&Args, &CallContext) -> Result<Box<dyn Rendered>>,
        /// What a cancellation that made the operation fail did.
        cancelled: &'static str,
    },
}

/// One tool, defined once: everything `tools/list`, the profiles and
/// dispatch know about it.
pub struct Tool {
    pub name: &'static str,
    /// The profiles whose contract includes it.
    pub profiles: &'static [Profile],
    pub title: &'static str,
    pub description: &'static str,
    pub args: Vec<Arg>,
    pub output_schema: Value,
    /// Hints for clients: the tool changes nothing / may destroy data.
    pub read_only: bool,
    pub destructive: bool,
    pub handler: Handler,
}

impl Tool {
    /// A contract tool this build does not serve yet.
    pub fn planned(name: &'static str, profiles: &'static [Profile]) -> Tool {
        Tool {
            name,
            profiles,
            title: "",
            description: "",
            args: Vec::new(),
            output_schema: Value::Null,
            read_only: false,
            destructive: false,
            handler: Handler::Planned,
        }
    }

    pub fn is_served(&self) -> bool {
        !matches!(self.handler, Handler::Planned)
    }

    pub fn in_profile(&self, p: Profile) -> bool {
        self.profiles.contains(&p)
    }

    /// Its entry in `tools/list`.
    pub fn listing(&self) -> Value {
        json!({
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "inputSchema": schema::object_schema(&self.args),
            "outputSchema": self.output_schema,
            "annotations": {
                "title": self.title,
                "readOnlyHint": self.read_only,
                "destructiveHint": self.destructive,
                "idempotentHint": false,
                "openWorldHint": false,
            },
        })
    }
}
