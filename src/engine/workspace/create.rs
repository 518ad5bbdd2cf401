//! Creating a workspace: the request and its defaults, then the steps
//! (seed checked, disk copied, VM booted while the baseline is written,
//! `/workspace` seeded), undone if one fails.

use super::expiry;
use super::guest::push_file;
use super::reap::reap_expired;
use super::results::{CreateTimings, Created};
use super::review::{self, Event};
use super::seed::{self, SeedSource};
use super::store::{self, Record, WorkspaceState};
use super::update::{normalize_labels, normalize_name};
use super::view::{describe, disk_bytes};
use super::vmm::{kill_vmm, launch, wait_ready};
use super::{now, EngineError, Result, GUEST_ROOT};
use crate::engine::capacity::{self, Owner};
use crate::engine::disk;
use crate::engine::environments;
use crate::engine::host::kvm_status;
use std::collections::BTreeMap;
use std::time::Instant;

pub const DEFAULT_VCPU_COUNT: u8 = 1;
pub const DEFAULT_MEM_MIB: u32 = 1024;
pub const DEFAULT_TTL_SECONDS: u64 = 600;
pub const MAX_TTL_SECONDS: u64 = 7 * 24 * 3600;
pub const DEFAULT_ENVIRONMENT: &str = "debian:12";

#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub environment: String,
    pub vcpu_count: u8,
    pub mem_mib: u32,
    pub ttl_seconds: u64,
    /// None: the operator's default (`expiry::retention_for`).
    pub retention_seconds: Option<u64>,
    pub allow_host_compat: bool,
    pub seed: SeedSource,
    pub name: Option<String>,
    pub labels: BTreeMap<String, String>,
}

impl CreateRequest {
    pub fn new(environment: &str) -> Self {
        CreateRequest {
            environment: environment.to_string(),
            vcpu_count: DEFAULT_VCPU_COUNT,
            mem_mib: DEFAULT_MEM_MIB,
            ttl_seconds: DEFAULT_TTL_SECONDS,
            retention_seconds: None,
            allow_host_compat: false,
            seed: SeedSource::Empty,
            name: None,
            labels: BTreeMap::new(),
        }
    }

    fn validate(&mut self) -> Result<()> {
        EngineError::check_vm_size(self.vcpu_count, self.mem_mib)?;
        EngineError::check_range("ttl_seconds", self.ttl_seconds, 1, MAX_TTL_SECONDS)?;
        self.retention_seconds = Some(expiry::retention_for(self.retention_seconds)?);
        self.name = match self.name.take() {
            Some(n) => Some(normalize_name(&n)?),
            None => None,
        };
        self.labels = normalize_labels(&self.labels)?;
        Ok(())
    }
}

pub fn create(mut req: CreateRequest, progress: &mut dyn FnMut(&str)) -> Result<Created> {
    req.validate()?;
    let entry = environments::lookup(&req.environment)?;
    if let Some(why) = kvm_status().blocker() {
        // No hint about host execution here: this text reaches MCP clients
        // too (the CLI adds its own note).
        return Err(EngineError::Unavailable(format!(
            "cannot boot a workspace VM here: {why}."
        )));
    }
    let env = environments::installed(&req.environment)?;
    reap_expired();
    // Refused before anything is made; the start itself checks again.
    capacity::precheck(&Owner::workspace("", req.name.as_deref()), req.mem_mib)?;
    let start = Instant::now();
    // Check the seed before anything is created.
    progress("checking the seed");
    let plan = seed::plan(&req.seed)?;
    let plan_ms = start.elapsed().as_millis() as u64;

    let store_lock = store::lock_store()?;
    if let Some(name) = &req.name {
        if let Some(other) = store::list_records()?
            .into_iter()
            .find(|r| r.name.as_deref() == Some(name))
        {
            return Err(EngineError::Invalid(format!(
                "a workspace named {name:?} already exists ({}); pick another name or delete that workspace first",
                other.workspace_id
            )));
        }
    }
    let id = loop {
        let id = crate::engine::paths::random_id(6);
        if !store::dir(&id).exists() {
            break id;
        }
    };
    let dir = store::dir(&id);
    store::make_private_dir(&dir)?;
    let lock = store::lock(&id, "create")?;
    let created_at = now();
    let mut record = Record {
        name: req.name.clone(),
        labels: req.labels.clone(),
        vcpu_count: req.vcpu_count,
        mem_mib: req.mem_mib,
        ttl_seconds: req.ttl_seconds,
        retention_seconds: req
            .retention_seconds
            .unwrap_or(expiry::DEFAULT_RETENTION_SECONDS),
        ..Record::new(&id, &req.environment, entry.version, created_at)
    };
    record.stamp_activity(created_at);
    store::save(&record)?;
    drop(store_lock);

    let result = (|| -> Result<Created> {
        store::make_private_dir(&store::vm_dir(&id))?;
        disk::copy_sparse(&env.scratch, &store::vm_dir(&id).join("scratch.ext4"))
            .map_err(|e| EngineError::io("creating the workspace disk", e))?;
        // The guest boots while the baseline is written.
        progress("booting the VM");
        let t = Instant::now();
        let vm = launch(&record)?;
        record.vmm_pid = Some(vm.pid);
        store::save(&record)?;
        progress("writing the baseline");
        let baseline = dir.join("baseline.tar");
        let wrote = (|| -> Result<()> {
            let f = crate::engine::paths::create_private(&baseline)
                .map_err(|e| EngineError::io("creating the baseline archive", e))?;
            let written = plan.write_tar(std::io::BufWriter::new(f), true)?;
            let manifest = serde_json::to_vec(&written.manifest).expect("manifest serializes");
            crate::engine::paths::write_atomic(&dir.join("baseline.json"), &manifest)
                .map_err(|e| EngineError::io("writing the baseline manifest", e))
        })();
        let baseline_ms = t.elapsed().as_millis() as u64;
        if let Err(e) = wrote {
            let mut vm = vm;
            vm.kill();
            return Err(e);
        }
        wait_ready(vm)?;
        let boot_ms = t.elapsed().as_millis() as u64;
        progress("seeding /workspace");
        let t = Instant::now();
        let (entry_count, bytes) = push_file(&id, "", &baseline)?;
        let seed_ms = t.elapsed().as_millis() as u64;
        record.state = WorkspaceState::Started;
        let seed = plan.describe(
            seed::Purpose::Seed,
            GUEST_ROOT,
            &seed::Written {
                entry_count,
                bytes,
                manifest: Vec::new(),
            },
        );
        record.workspace_seed = serde_json::to_value(seed).expect("seeds serialize");
        record.created_disk_bytes = disk_bytes(&id);
        record.stamp_activity(now());
        store::save(&record)?;
        review::append(
            &id,
            &Event::new("create")
                .with("seed", record.workspace_seed.clone())
                .with("duration_ms", start.elapsed().as_millis() as u64),
        );
        Ok(Created {
            workspace: describe(&record),
            timings: CreateTimings {
                create_ms: start.elapsed().as_millis() as u64,
                seed_check_ms: plan_ms,
                baseline_write_ms: baseline_ms,
                boot_ms,
                seed_push_ms: seed_ms,
            },
        })
    })();
    match result {
        Ok(v) => {
            drop(lock);
            Ok(v)
        }
        Err(e) => {
            // A VMM that cannot be stopped keeps its directory: the record
            // still says `creating`, and the reaper retries later.
            if kill_vmm(&id, record.vmm_pid).is_ok() {
                let _ = std::fs::remove_dir_all(&dir);
            }
            drop(lock);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_checks_arguments_first() {
        let mut r = CreateRequest::new("debian:12");
        r.vcpu_count = 0;
        assert!(create(r, &mut |_| {})
            .unwrap_err()
            .to_string()
            .contains("vcpu_count"));
        let mut r = CreateRequest::new("debian:12");
        r.ttl_seconds = 0;
        assert!(create(r, &mut |_| {})
            .unwrap_err()
            .to_string()
            .contains("ttl_seconds"));
        let r = CreateRequest::new("debian:99");
        assert!(create(r, &mut |_| {})
            .unwrap_err()
            .to_string()
            .contains("unknown environment"));
    }
}
