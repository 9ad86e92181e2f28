//! System benchmarks: the node's chain workload (a proposer and a validator on their own
//! RocksDB stores, admission, execution, storage, validation, BLS votes) run on the
//! baselines and with the configured plugins, alternating run by run (B P, P B, ...), from
//! the same seed. Every run must reach the same chain; a run that does not is an error,
//! not a data point.

use std::path::PathBuf;

use crate::{
    alloc_count,
    host::HostOptions,
    node::{
        gen::WorkloadConfig,
        run::{run_chain, ChainConfig, ChainReport},
    },
    Host,
};

use super::{quantile, SystemResult, SystemSide};

/// What to run.
#[derive(Debug, Clone)]
pub struct SystemOptions {
    pub workload: WorkloadConfig,
    pub blocks: u64,
    /// Runs per side.
    pub runs: usize,
    /// Scratch directory for the stores (emptied per run).
    pub data_dir: PathBuf,
}

struct Measured {
    report: ChainReport,
    cpu_s: f64,
    peak_rss: Option<u64>,
    heap: Option<alloc_count::AllocStats>,
}

fn measure(host: &Host, config: &ChainConfig) -> Result<Measured, String> {
    let rss_reset = alloc_count::reset_peak_rss();
    alloc_count::reset_peak();
    let before = alloc_count::snapshot();
    let cpu = alloc_count::cpu_seconds();
    let report = run_chain(host, config, |_| {}).map_err(|e| e.to_string())?;
    Ok(Measured {
        cpu_s: alloc_count::cpu_seconds() - cpu,
        peak_rss: if rss_reset {
            alloc_count::peak_rss_bytes()
        } else {
            None
        },
        heap: alloc_count::installed().then(|| alloc_count::snapshot().since(&before)),
        report,
    })
}

fn side(runs: &[Measured]) -> SystemSide {
    let block_latency_ms: Vec<f64> = runs
        .iter()
        .flat_map(|m| m.report.block_latency_ms.iter().copied())
        .collect();
    SystemSide {
        latency_p50_ms: quantile(&block_latency_ms, 0.5),
        latency_p99_ms: quantile(&block_latency_ms, 0.99),
        block_latency_ms,
        throughput_tps: runs.iter().map(|m| m.report.tps()).collect(),
        cpu_s: runs.iter().map(|m| m.cpu_s).collect(),
        wall_s: runs.iter().map(|m| m.report.wall_s).collect(),
        peak_rss_bytes: runs.iter().filter_map(|m| m.peak_rss).max(),
        heap: runs
            .iter()
            .filter_map(|m| m.heap)
            .max_by_key(|h| h.peak_bytes),
    }
}

/// Runs the chain `o.runs` times on each side, alternating; `progress(done, total)` after
/// each run.
pub fn run(
    plugins: &Host,
    o: &SystemOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<SystemResult, String> {
    let baseline = Host::new(HostOptions::default());
    let config = |name: &str| ChainConfig {
        workload: o.workload.clone(),
        blocks: o.blocks,
        data_dir: o.data_dir.join(name),
    };
    let (mut b, mut p) = (Vec::new(), Vec::new());
    let total = o.runs.max(1) * 2;
    for run in 0..o.runs.max(1) {
        let order: [(bool, &Host); 2] = if run % 2 == 0 {
            [(true, &baseline), (false, plugins)]
        } else {
            [(false, plugins), (true, &baseline)]
        };
        for (is_baseline, host) in order {
            let name = if is_baseline { "baseline" } else { "plugins" };
            let m = measure(host, &config(name))
                .map_err(|e| format!("system benchmark, run {} on {name}: {e}", run + 1))?;
            if is_baseline { &mut b } else { &mut p }.push(m);
            progress(b.len() + p.len(), total);
        }
    }
    let reference = &b[0].report;
    let identical = b.iter().chain(&p).all(|m| {
        m.report.block_hashes == reference.block_hashes
            && m.report.state_root == reference.state_root
    });
    let _ = std::fs::remove_dir_all(&o.data_dir);
    Ok(SystemResult {
        blocks: o.blocks,
        txs_per_block: o.workload.txs_per_block,
        validators: o.workload.validators,
        seed: o.workload.seed,
        runs: o.runs.max(1),
        baseline: side(&b),
        plugins: side(&p),
        identical,
    })
}
