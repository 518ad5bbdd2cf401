//! Profiles: named selections of tools a server is started with. Which
//! tools belong to which profile is said by each tool (`registry`).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    VmRun,
    WorkspaceCore,
    WorkspaceFull,
}

pub const PROFILE_NAMES: [&str; 3] = ["vm-run", "workspace-core", "workspace-full"];

impl Profile {
    pub fn parse(name: &str) -> Option<Profile> {
        match name {
            "vm-run" => Some(Profile::VmRun),
            "workspace-core" => Some(Profile::WorkspaceCore),
            "workspace-full" => Some(Profile::WorkspaceFull),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Profile::VmRun => "vm-run",
            Profile::WorkspaceCore => "workspace-core",
            Profile::WorkspaceFull => "workspace-full",
        }
    }
}

/// Membership lists for tool definitions: in every profile, in
/// `workspace-core` (and so in `workspace-full`, which extends it), and in
/// `workspace-full` only.
pub const EVERY: &[Profile] = &[
    Profile::VmRun,
    Profile::WorkspaceCore,
    Profile::WorkspaceFull,
];
pub const CORE: &[Profile] = &[Profile::WorkspaceCore, Profile::WorkspaceFull];
pub const FULL: &[Profile] = &[Profile::WorkspaceFull];
