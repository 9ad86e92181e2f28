//! What a set of results was measured on: the machine, the build and the active plugin
//! set. Results are compared with a saved run only when these agree (or when the user
//! says so explicitly): a "regression" between a laptop and a CI runner, a debug and a
//! release build, or two plugin sets is not a regression.
//!
//! The build part is the build *configuration* (compiler, target, profile, API version),
//! not the source: comparing two commits is what regression detection is for. The commit
//! is recorded for the reader but is not part of the identity.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: u64,
    pub os: String,
}

/// The build configuration of the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    pub host_version: String,
    pub api_version: String,
    pub rustc: String,
    pub target: String,
    pub profile: String,
    /// How the host's code (the baselines) was optimised next to the plugins: baselines and
    /// plugins are compared only when both come from the same settings.
    #[serde(default)]
    pub optimisation: String,
    /// `git rev-parse --short HEAD` where available; informative, not compared.
    pub commit: Option<String>,
}

/// The active plugin set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginSet {
    /// The resolver's id of the enabled set, versions and stacking order.
    pub feature_set_id: String,
    /// `name@version`, sorted.
    pub plugins: Vec<String>,
}

/// Machine, build and plugin set, with a short id over the compared parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub id: String,
    pub machine: Machine,
    pub build: Build,
    pub plugins: PluginSet,
}

impl Fingerprint {
    pub fn new(machine: Machine, build: Build, plugins: PluginSet) -> Fingerprint {
        let mut h = Sha256::new();
        let compared = serde_json::json!({
            "machine": machine,
            "build": { "host": build.host_version, "api": build.api_version, "rustc": build.rustc,
                       "target": build.target, "profile": build.profile,
                       "optimisation": build.optimisation },
            "plugins": plugins,
        });
        h.update(compared.to_string().as_bytes());
        let id = h.finalize()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Fingerprint {
            id,
            machine,
            build,
            plugins,
        }
    }

    /// The fingerprint of this process, with `plugins` active.
    pub fn current(plugins: PluginSet) -> Fingerprint {
        let host = dubchain_plugin_api::Fingerprint::current();
        Fingerprint::new(
            Machine::current(),
            Build {
                host_version: env!("CARGO_PKG_VERSION").to_owned(),
                api_version: host.api_version.to_string(),
                rustc: host.rustc.to_string(),
                target: host.target.to_string(),
                profile: host.profile.to_string(),
                optimisation: optimisation(),
                commit: git_commit(),
            },
            plugins,
        )
    }

    /// How `other` differs from `self`, one line per differing part; empty when they may be
    /// compared.
    pub fn mismatches(&self, other: &Fingerprint) -> Vec<String> {
        let mut out = Vec::new();
        let (a, b) = (&self.machine, &other.machine);
        if a != b {
            out.push(format!(
                "machine: {} ({} cores, {} GiB, {}) vs {} ({} cores, {} GiB, {})",
                a.cpu, a.cores, a.memory_gib, a.os, b.cpu, b.cores, b.memory_gib, b.os
            ));
        }
        let (a, b) = (&self.build, &other.build);
        let cfg = |x: &Build| {
            format!(
                "host {} api {} {} {} {} ({})",
                x.host_version, x.api_version, x.rustc, x.target, x.profile, x.optimisation
            )
        };
        if cfg(a) != cfg(b) {
            out.push(format!("build: {} vs {}", cfg(a), cfg(b)));
        }
        if self.plugins != other.plugins {
            out.push(format!(
                "plugin set: {} [{}] vs {} [{}]",
                self.plugins.feature_set_id,
                self.plugins.plugins.join(", "),
                other.plugins.feature_set_id,
                other.plugins.plugins.join(", ")
            ));
        }
        out
    }
}

/// The optimisation settings of this build of the host. The workspace's `Cargo.toml` gives
/// the dev build (the tests' and the main job's) the release settings the plugins are built
/// with: opt-level 3, no debug assertions, no overflow checks. The level is the one this
/// crate was compiled at (its build script reads it), which the host's crates share.
fn optimisation() -> String {
    format!(
        "host opt-level {}, debug assertions {}; plugins release (opt-level 3, no debug assertions)",
        env!("DUBCHAIN_OPT_LEVEL"),
        if cfg!(debug_assertions) {
            "ON: not like for like"
        } else {
            "off"
        }
    )
}

impl Machine {
    /// This machine, from `/proc` where available.
    pub fn current() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                let line = m.lines().find(|l| l.starts_with("MemTotal:"))?.to_owned();
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .map_or(0, |kib| (kib + (1 << 19)) >> 20);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            memory_gib,
            os: format!("{} {kernel}", std::env::consts::OS)
                .trim()
                .to_owned(),
        }
    }
}

fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(id: &str) -> PluginSet {
        PluginSet {
            feature_set_id: id.into(),
            plugins: vec!["a@1.0.0".into()],
        }
    }

    #[test]
    fn the_commit_is_not_part_of_the_identity_but_the_plugin_set_is() {
        let a = Fingerprint::current(set("x"));
        let mut b = a.clone();
        b.build.commit = Some("0000000".into());
        let b = Fingerprint::new(b.machine, b.build, b.plugins);
        assert_eq!(a.id, b.id);
        assert!(a.mismatches(&b).is_empty());

        let c = Fingerprint::current(set("y"));
        assert_ne!(a.id, c.id);
        let m = a.mismatches(&c);
        assert_eq!(m.len(), 1);
        assert!(m[0].starts_with("plugin set: x"), "{m:?}");
    }

    #[test]
    fn another_machine_is_a_mismatch() {
        let a = Fingerprint::current(set("x"));
        let mut other = a.machine.clone();
        other.cores += 6;
        let b = Fingerprint::new(other, a.build.clone(), a.plugins.clone());
        assert_ne!(a.id, b.id);
        assert!(a.mismatches(&b)[0].starts_with("machine:"));
    }
}
