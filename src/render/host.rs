//! The host: the environment catalog and store (`pyro env`) and the
//! readiness checks (`pyro doctor`).

use super::{show, Human, Report};
use crate::engine::doctor;
use crate::engine::environments::{EnvList, EnvironmentInfo, Pruned, Pulled};

impl Report for EnvList {
    /// A line per environment.
    fn human(&self, h: &mut Human) {
        h.out(format!("Catalog version: {}\n", self.catalog_version));
        for e in &self.environments {
            let status = if e.installed {
                "installed"
            } else {
                "not installed"
            };
            h.out(format!("{} [{status}] {}\n", e.name, e.description));
        }
    }
}

fn environment_human(e: &EnvironmentInfo, h: &mut Human) {
    h.out(format!(
        "Environment: {}\nVersion: {}\nInstalled: {}\n",
        e.name,
        e.version,
        if e.installed { "yes" } else { "no" }
    ));
    if let Some(d) = &e.install_dir {
        h.out(format!("Install dir: {}\n", show(d)));
    }
    h.out(format!(
        "Default packages: {}\n",
        e.default_packages.join(", ")
    ));
}

impl Report for EnvironmentInfo {
    fn human(&self, h: &mut Human) {
        environment_human(self, h);
    }
}

impl Report for Pulled {
    fn human(&self, h: &mut Human) {
        environment_human(&self.environment, h);
        h.out(format!("{}\n", self.message));
    }
}

impl Report for Pruned {
    fn human(&self, h: &mut Human) {
        h.out(format!(
            "Removed {} stale entries from {}\n",
            self.removed.len(),
            show(&self.environments_dir)
        ));
    }
}

impl Report for doctor::Report {
    /// A line per check, then the verdict.
    fn human(&self, h: &mut Human) {
        h.out(format!("pyro doctor (state: {})\n", show(&self.pyro_home)));
        for c in &self.checks {
            let mark = if c.ok {
                "ok  "
            } else if c.required {
                "FAIL"
            } else {
                "warn"
            };
            h.out(format!("  [{mark}] {:<14} {}\n", c.name, c.detail));
        }
        h.out(if self.ready {
            "Ready: `pyro run` can boot guests here.\n"
        } else {
            "Not ready: fix the FAIL lines above.\n"
        });
    }
}
