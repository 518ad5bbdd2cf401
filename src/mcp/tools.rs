//! The tools a server serves: the profile it was started with, applied
//! to the one tool table (`registry`), with the `tools/list` answer built
//! once and calls dispatched through each tool's handler.

pub use super::profile::{Profile, PROFILE_NAMES};
use super::registry;
use super::tool::{Args, CallContext, Handler, Outcome, Tool};
use serde_json::{json, Value};

#[cfg(test)]
impl Profile {
    /// Every tool the contract puts in this profile, served or not.
    pub fn contract_tools(self) -> Vec<&'static str> {
        registry::tools()
            .iter()
            .filter(|t| t.in_profile(self))
            .map(|t| t.name)
            .collect()
    }
}

/// The tools of one profile, with the `tools/list` answer built once.
pub struct Toolset {
    pub profile: Profile,
    tools: Vec<Tool>,
    /// Contract tools of the profile that this build does not serve yet.
    pending: Vec<&'static str>,
    listing: Value,
}

impl Toolset {
    pub fn new(profile: Profile) -> Toolset {
        let (tools, planned): (Vec<Tool>, Vec<Tool>) = registry::tools()
            .into_iter()
            .filter(|t| t.in_profile(profile))
            .partition(Tool::is_served);
        let listing = json!({"tools": tools.iter().map(Tool::listing).collect::<Vec<_>>()});
        Toolset {
            profile,
            tools,
            pending: planned.iter().map(|t| t.name).collect(),
            listing,
        }
    }

    /// The `tools/list` result.
    pub fn listing(&self) -> &Value {
        &self.listing
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.tools.iter().map(|t| t.name).collect()
    }

    /// Contract tools of the profile that this build does not serve yet.
    pub fn pending(&self) -> Vec<&'static str> {
        self.pending.clone()
    }

    pub fn has(&self, name: &str) -> bool {
        self.tools.iter().any(|t| t.name == name)
    }

    /// Runs tool `name` (which must be `has`); argument problems become a
    /// `Failed` outcome so the model can correct itself.
    pub fn call(&self, name: &str, args: &Args, ctx: &CallContext) -> Outcome {
        let Some(tool) = self.tools.iter().find(|t| t.name == name) else {
            return Outcome::Failed(format!("unknown tool {name:?}"));
        };
        let args = match super::schema::validate(&tool.args, args) {
            Ok(a) => a,
            Err(e) => return Outcome::Failed(format!("invalid arguments for {name}: {e}")),
        };
        match tool.handler {
            Handler::Planned => Outcome::Failed(format!("tool {name} has no implementation")),
            Handler::Direct(f) => f(&args, ctx),
            Handler::Workspace { run, cancelled } => {
                super::workspace_tools::call(name, ctx, || run(&args, ctx), cancelled)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 4.3 contract's `workspace-core` surface.
    const WORKSPACE_CORE_CONTRACT: &[&str] = &[
        "vm_run",
        "workspace_create",
        "workspace_list",
        "workspace_update",
        "workspace_status",
        "workspace_sync_push",
        "workspace_exec",
        "workspace_logs",
        "workspace_summary",
        "workspace_file_list",
        "workspace_file_read",
        "workspace_file_write",
        "workspace_patch_apply",
        "workspace_diff",
        "workspace_export",
        "workspace_reset",
        "workspace_delete",
    ];

    #[test]
    fn every_profile_lists_only_working_tools() {
        for name in PROFILE_NAMES {
            let p = Profile::parse(name).unwrap();
            assert_eq!(p.name(), name);
            let t = Toolset::new(p);
            assert!(t.names().contains(&"vm_run"));
            assert!(t.profile.contract_tools().contains(&"vm_run"));
        }
        assert_eq!(Toolset::new(Profile::VmRun).names(), vec!["vm_run"]);
        // Bare `pyro mcp serve` serves exactly the workspace-core contract.
        let mut core = Toolset::new(Profile::WorkspaceCore).names();
        let mut want = WORKSPACE_CORE_CONTRACT.to_vec();
        core.sort();
        want.sort();
        assert_eq!(core, want);
        assert!(Toolset::new(Profile::WorkspaceCore).pending().is_empty());
        assert!(Profile::parse("workspace").is_none());
        let full = Toolset::new(Profile::WorkspaceFull);
        assert!(full.pending().contains(&"shell_open"));
        assert!(!Toolset::new(Profile::WorkspaceCore)
            .pending()
            .contains(&"shell_open"));
    }

    #[test]
    fn every_tool_is_defined_once_and_belongs_to_a_profile() {
        let all = registry::tools();
        let mut names: Vec<&str> = all.iter().map(|t| t.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len(), "a tool name appears twice");
        for t in &all {
            assert!(!t.profiles.is_empty(), "{} is in no profile", t.name);
            // workspace-full extends workspace-core.
            if t.in_profile(Profile::WorkspaceCore) {
                assert!(t.in_profile(Profile::WorkspaceFull), "{}", t.name);
            }
        }
        // The whole workspace-full contract: 17 served, 27 to come.
        assert_eq!(Profile::WorkspaceFull.contract_tools().len(), 44);
    }
}
