//! What one VMM process runs: written as JSON by the engine, read by
//! `pyro vmm --config FILE`.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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

impl VmConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.vcpus == 0 || self.vcpus > 32 {
            return Err(format!("vcpus must be 1..=32, got {}", self.vcpus));
        }
        if self.mem_mib < 128 || self.mem_mib > 256 * 1024 {
            return Err(format!(
                "mem_mib must be 128..=262144, got {}",
                self.mem_mib
            ));
        }
        if let Some(v) = &self.vsock {
            if v.guest_cid < 3 || v.guest_cid > u32::MAX as u64 {
                return Err(format!(
                    "guest_cid must be 3..=4294967295, got {}",
                    v.guest_cid
                ));
            }
        }
        Ok(())
    }
}
