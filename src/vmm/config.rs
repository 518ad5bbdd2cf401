//! What one VMM process runs: written as JSON by the engine, read by
//! `pyro vmm --config FILE`.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    pub kernel: PathBuf,
    /// Base kernel command line; the VMM appends its device list.
    pub cmdline: String,
    pub vcpus: u8,
    pub mem_mib: u32,
    #[serde(default)]
    pub disks: Vec<DiskConfig>,
    #[serde(default)]
    pub vsock: Option<VsockConfig>,
    #[serde(default = "yes")]
    pub rng: bool,
    pub serial_log: PathBuf,
    #[serde(default)]
    pub control_socket: Option<PathBuf>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    pub path: PathBuf,
    pub read_only: bool,
    /// Offer the guest a flush command and honour it with fdatasync. Off,
    /// writes only reach the host page cache (Firecracker's default
    /// "Unsafe" cache): right for disks thrown away with the VM.
    #[serde(default)]
    pub flush: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VsockConfig {
    pub guest_cid: u64,
    pub uds_path: PathBuf,
}

/// A config the VMM refuses: a value out of the range it supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    Vcpus(u8),
    MemMib(u32),
    GuestCid(u64),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Vcpus(n) => write!(f, "vcpus must be 1..=32, got {n}"),
            ConfigError::MemMib(n) => write!(f, "mem_mib must be 128..=262144, got {n}"),
            ConfigError::GuestCid(n) => write!(f, "guest_cid must be 3..=4294967295, got {n}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Why a config file could not be read.
#[derive(Debug)]
pub enum ConfigFileError {
    Read(std::io::Error),
    Parse(serde_json::Error),
}

impl std::fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigFileError::Read(e) => write!(f, "{e}"),
            ConfigFileError::Parse(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ConfigFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigFileError::Read(e) => Some(e),
            ConfigFileError::Parse(e) => Some(e),
        }
    }
}

impl VmConfig {
    /// Reads the JSON config the engine wrote.
    pub fn read(path: &Path) -> Result<VmConfig, ConfigFileError> {
        let bytes = std::fs::read(path).map_err(ConfigFileError::Read)?;
        serde_json::from_slice(&bytes).map_err(ConfigFileError::Parse)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.vcpus == 0 || self.vcpus > 32 {
            return Err(ConfigError::Vcpus(self.vcpus));
        }
        if self.mem_mib < 128 || self.mem_mib > 256 * 1024 {
            return Err(ConfigError::MemMib(self.mem_mib));
        }
        if let Some(v) = &self.vsock {
            if v.guest_cid < 3 || v.guest_cid > u32::MAX as u64 {
                return Err(ConfigError::GuestCid(v.guest_cid));
            }
        }
        Ok(())
    }
}
