//! Live performance contracts: each live provider's speed-up against the baseline, from
//! the pairs of times the shadow checker records (the provider's on the node's call, the
//! baseline's on the same inputs on the checker's thread), judged against the
//! `min_speedup` its manifest promises.
//!
//! The estimate is the median of the window's per-call ratios with a 95% bootstrap
//! interval (`dubchain_host::measure::bootstrap_median`, as `bench` uses). A contract is
//! broken only when the whole interval is under `min_speedup * (1 - tolerance)`: noise alone
//! does not roll a plugin back. The two sides do not run in the same conditions (the
//! provider on the node's thread among its other work, the baseline on an otherwise idle
//! checker thread), which is why a tolerance exists; `bench` remains the instrument of
//! record for a plugin's speed-up.

use dubchain_host::{measure::Estimate, shadow::Window, Host};
use serde::Serialize;

use crate::config::Contracts;

/// One live provider's contract and how it is doing.
#[derive(Debug, Clone, Serialize)]
pub struct ContractStatus {
    pub slot: String,
    pub plugin: String,
    pub version: String,
    pub min_speedup: f64,
    /// Agreeing shadow samples in the window.
    pub samples: usize,
    /// `None` until the window holds `min_samples`.
    pub speedup: Option<Estimate>,
    pub broken: bool,
}

impl ContractStatus {
    /// Why the contract is broken, in words.
    pub fn why(&self, tolerance: f64) -> String {
        match self.speedup {
            Some(e) => format!(
                "live speed-up {:.2}x [{:.2}, {:.2}] over {} shadow samples of {} is under its contract's {}x (less the {:.0}% tolerance: {:.2}x)",
                e.median,
                e.low,
                e.high,
                self.samples,
                self.slot,
                self.min_speedup,
                tolerance * 100.0,
                self.min_speedup * (1.0 - tolerance)
            ),
            None => format!("{} samples, not judged yet", self.samples),
        }
    }
}

/// The contract of every live provider whose manifest states one and whose calls the
/// shadow checker has sampled (windows of earlier versions are left out).
pub fn judge(host: &Host, windows: &[Window], settings: &Contracts) -> Vec<ContractStatus> {
    windows
        .iter()
        .filter_map(|w| {
            let (live, _) = host.live_version(&w.plugin)?;
            if live != w.version {
                return None;
            }
            let contract = host.contract(&w.plugin)?;
            let speedup = (w.speedups.len() >= settings.min_samples).then(|| {
                dubchain_host::measure::bootstrap_median(&w.speedups, 500, w.speedups.len() as u64)
            });
            Some(ContractStatus {
                slot: w.slot.clone(),
                plugin: w.plugin.clone(),
                version: w.version.clone(),
                min_speedup: contract.min_speedup,
                samples: w.speedups.len(),
                speedup,
                broken: speedup
                    .is_some_and(|e| e.high < contract.min_speedup * (1.0 - settings.tolerance)),
            })
        })
        .collect()
}

/// A plugin disabled for breaking its contract.
#[derive(Debug, Clone, Serialize)]
pub struct Rollback {
    pub plugin: String,
    /// Seconds since the Unix epoch.
    pub at: f64,
    pub why: String,
    /// What the disable did (`None`: it was applied), or why it could not be.
    pub refused: Option<String>,
}
