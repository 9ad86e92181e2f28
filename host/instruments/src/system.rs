//! System benchmarks: the node's chain workload on the baselines and with the configured
//! plugins, alternating run by run (B P, P B, B P, ...), from the same seed. This is the one
//! engine behind `dubchain-perf bench`'s system rows and the main job's stage table.
//!
//! How a figure is taken (docs/benchmarking.md, "How the node is measured"):
//! * every node owns its host: each run asks `new_host` for a fresh host (plugins newly
//!   loaded, so no cache, pool or instance survives from an earlier run) for the proposer,
//!   the validator and the catch-up node; the network stage's nodes are processes of their
//!   own ([`NodeProcesses`]), timed by their own clocks from the first node starting its run
//!   (every peer connected, store open) to the last reaching the final height;
//! * every run starts from fresh stores;
//! * stage timers cover the node's work only (generating and signing the workload is not in
//!   any stage);
//! * each stage's ratio is the geometric mean of the per-run ratios (run `i` of the
//!   baselines against run `i` of the plugins) with a 95% Student-t interval on their
//!   logarithms ([`dubchain_host::measure::log_t_interval`]: a bootstrap of so few runs only
//!   spans them); an interval that contains 1 is "no change";
//! * allocation counting is off in the timed runs; heap figures come from one extra,
//!   untimed run per side with counting on.
//!
//! Every run must reach the same chain; a run that does not is an error, not a data point.

use std::{path::PathBuf, time::Instant};

use dubchain_host::{alloc_count, Host};
use dubchain_node::{
    block,
    cluster::NodeStats,
    gen::{Workload, WorkloadConfig},
    launch::{self, Launch},
    process::Report,
    run::{run_chain, ChainConfig, ChainReport, NodeHosts},
    state::{Head, StateStore},
};

use crate::{quantile, ChainSummary, ClusterNode, StageRow, SystemResult, SystemSide};

/// Makes a new host for one node: the baselines only, or the session's plugins freshly
/// loaded. Called once per node per run, before anything is timed.
pub type NewHost<'a> = dyn Fn() -> Result<Host, String> + Sync + 'a;

/// What to run.
#[derive(Debug, Clone)]
pub struct SystemOptions {
    pub workload: WorkloadConfig,
    pub blocks: u64,
    /// Runs per side (at least 3 give an interval worth the name).
    pub runs: usize,
    /// Scratch directory for the stores (emptied per run).
    pub data_dir: PathBuf,
    /// Also run the chain by `workload.validators` node processes over TCP on loopback.
    pub network: Option<NodeProcesses>,
    /// Also replay each run's chain on a new node in runs of 64 blocks.
    pub catch_up: bool,
    /// One extra untimed run per side with allocation counting on (the host's heap).
    pub count_allocations: bool,
}

/// What the system benchmark makes in its data directory, and deletes after it.
const SCRATCH: [&str; 4] = ["baseline", "plugins", "heap-baseline", "heap-plugins"];

/// What `run --watch` keeps in the same directory after the benchmark: the live node's
/// stores and its monitor's token; and the lock a running benchmark holds there.
const KEPT: [&str; 3] = ["watch", "monitor.token", dubchain_node::state::NODE_LOCK];

/// Checks that `dir` may serve as the benchmark's scratch directory: missing (then it is
/// made, and removed afterwards: the answer is `true`), or a directory holding nothing but
/// what an earlier run left ([`SCRATCH`], [`KEPT`]). Anything else is refused
/// ([`scratch_refusal`]) before anything is measured, since the stores there are deleted
/// after the run: a `--data-dir` pointed at a chain of one's own, or at a home directory,
/// must lose nothing.
pub fn check_scratch(dir: &std::path::Path) -> Result<bool, String> {
    if let Some(why) = scratch_refusal(dir) {
        return Err(why);
    }
    if dir.exists() {
        return Ok(false);
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        format!(
            "data directory {}: cannot create it: {e}; give a writable --data-dir",
            dir.display()
        )
    })?;
    Ok(true)
}

/// Why `dir` may not serve as the benchmark's scratch directory ([`check_scratch`]), if it
/// may not; it only reads, so a command can refuse its `--data-dir` before it starts.
pub fn scratch_refusal(dir: &std::path::Path) -> Option<String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            return Some(format!(
                "data directory {}: cannot read it ({e}); give a directory the benchmark may fill and empty",
                dir.display()
            ))
        }
    };
    let mut foreign: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !SCRATCH.contains(&name.as_str()) && !KEPT.contains(&name.as_str()))
        .collect();
    if foreign.is_empty() {
        return None;
    }
    foreign.sort();
    let more = foreign.len().saturating_sub(3);
    foreign.truncate(3);
    Some(format!(
        "data directory {}: holds {}{} which the benchmark did not make, and it deletes its stores there after the run; give an empty or new --data-dir",
        dir.display(),
        foreign.join(", "),
        if more > 0 { format!(" and {more} more") } else { String::new() }
    ))
}

/// The chain workload of `o` in words, every setting that shapes it: what a saved run's
/// system figures are compared on.
pub fn describe(o: &SystemOptions) -> String {
    let w = &o.workload;
    format!(
        "{} blocks of up to {} transactions, seed {}, {} accounts, {} validators, zipf {}, \
         invalid share {}, contract share {}{}{}",
        o.blocks,
        w.txs_per_block,
        w.seed,
        w.accounts,
        w.validators,
        w.zipf,
        w.invalid_share,
        w.contract_share,
        if o.network.is_some() {
            ", over TCP"
        } else {
            ""
        },
        if o.catch_up { ", with catch-up" } else { "" },
    )
}

/// The network stage's nodes: processes of `dubchain-perf node` ([`dubchain_node::launch`]),
/// each loading its own host. The plugins' nodes get `host_args` (the session's plugin
/// selection); the baselines' nodes the same and `--baselines`, so that both sides run the
/// same binary on the same configuration. Shadow checks are off on both (a node of the
/// baselines has nothing to check).
#[derive(Debug, Clone)]
pub struct NodeProcesses {
    /// The `dubchain-perf` binary.
    pub exe: PathBuf,
    /// Its arguments before `node`.
    pub host_args: Vec<String>,
    /// How long one cluster may take, start-up included.
    pub timeout: std::time::Duration,
}

/// The chain's end on every node of a run: what both sides must agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ends {
    block_hashes: Vec<dubchain_plugin_api::types::Bytes32>,
    state_root: dubchain_plugin_api::types::Bytes32,
    cluster: Option<Head>,
    synced: Option<Head>,
}

struct Measured {
    report: ChainReport,
    network_s: Option<f64>,
    /// Each cluster node's figures, by node.
    cluster_nodes: Vec<NodeStats>,
    catch_up_s: Option<f64>,
    cpu_s: f64,
    peak_rss: Option<u64>,
    ends: Ends,
}

fn chain_config(o: &SystemOptions, dir: PathBuf) -> ChainConfig {
    ChainConfig {
        workload: o.workload.clone(),
        blocks: o.blocks,
        data_dir: dir,
    }
}

/// One run of one side: the chain on two fresh hosts, then (if asked) the cluster of node
/// processes and the catch-up node on a fresh host.
fn measure(
    new_host: &NewHost, baselines: bool, o: &SystemOptions, dir: PathBuf,
) -> Result<Measured, String> {
    let (proposer, validator) = (new_host()?, new_host()?);
    let rss_reset = alloc_count::reset_peak_rss();
    let cpu = alloc_count::cpu_seconds();
    let report = run_chain(
        NodeHosts {
            proposer: &proposer,
            validator: &validator,
        },
        &chain_config(o, dir.clone()),
        |_| {},
    )
    .map_err(|e| e.to_string())?;
    let cpu_s = alloc_count::cpu_seconds() - cpu;
    let peak_rss = if rss_reset {
        alloc_count::peak_rss_bytes()
    } else {
        None
    };
    drop(validator);

    let mut network_s = None;
    let mut cluster = None;
    let mut cluster_nodes = Vec::new();
    if let Some(processes) = &o.network {
        let nodes = cluster_of_processes(processes, baselines, o, &dir)?;
        // From the first node starting its run to the last reaching the final height.
        let started = nodes.iter().map(|r| r.started_unix_ns).min().unwrap_or(0);
        let finished = nodes.iter().map(|r| r.finished_unix_ns).max().unwrap_or(0);
        network_s = Some(finished.saturating_sub(started) as f64 / 1e9);
        let head = nodes[0].outcome.head;
        if let Some(odd) = nodes.iter().find(|r| r.outcome.head != head) {
            return Err(format!(
                "over TCP, node {} ended on {:?}, node 0 on {:?}",
                odd.outcome.index, odd.outcome.head, head
            ));
        }
        cluster = Some(head);
        cluster_nodes = nodes.iter().map(|r| r.outcome.stats).collect();
    }

    let mut catch_up_s = None;
    let mut synced = None;
    if o.catch_up {
        // The stored chain, read back untimed through the proposer's own codec.
        let blocks = {
            let source = StateStore::open(&dir.join("proposer")).map_err(|e| e.to_string())?;
            (1..=o.blocks)
                .map(|height| block::stored_block(&proposer, &source, height))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?
        };
        let host = new_host()?;
        let store_dir = dir.join("catch-up");
        let _ = std::fs::remove_dir_all(&store_dir);
        let store = StateStore::open(&store_dir).map_err(|e| e.to_string())?;
        store.attach(&host.slots);
        let mut head =
            block::commit_genesis(&host, &store, &Workload::new(o.workload.clone()).genesis())
                .map_err(|e| e.to_string())?;
        let t = Instant::now();
        for run in blocks.chunks(64) {
            let (heads, refused) =
                block::validate_run(&host, &store, run).map_err(|e| e.to_string())?;
            if let Some((i, e)) = refused {
                return Err(format!(
                    "catch-up refused block {}: {e}",
                    run[i].header.height
                ));
            }
            head = *heads.last().expect("a run is never empty");
        }
        catch_up_s = Some(t.elapsed().as_secs_f64());
        synced = Some(head);
    }
    Ok(Measured {
        ends: Ends {
            block_hashes: report.block_hashes.clone(),
            state_root: report.state_root,
            cluster,
            synced,
        },
        report,
        network_s,
        cluster_nodes,
        catch_up_s,
        cpu_s,
        peak_rss,
    })
}

/// The chain by `workload.validators` node processes on loopback, stores under
/// `dir/cluster`; each node's report.
fn cluster_of_processes(
    p: &NodeProcesses, baselines: bool, o: &SystemOptions, dir: &std::path::Path,
) -> Result<Vec<Report>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let config = dir.join("monitor.toml");
    std::fs::write(
        &config,
        "# Written by the system benchmark.\n[shadow]\nevery = 0\n",
    )
    .map_err(|e| format!("{}: {e}", config.display()))?;
    let mut node_args = vec!["--monitor-config".to_owned(), config.display().to_string()];
    if baselines {
        node_args.push("--baselines".to_owned());
    }
    launch::launch(
        &Launch {
            exe: p.exe.clone(),
            host_args: p.host_args.clone(),
            node_args,
            workload: o.workload.clone(),
            until_height: o.blocks,
            block_time: std::time::Duration::ZERO,
            data_dir: dir.join("cluster"),
            timeout: p.timeout,
        },
        |_, _| {},
    )
    .map_err(|e| format!("the run over TCP: {e}"))
}

/// The host's heap over one untimed chain run with counting on.
fn count_heap(
    new_host: &NewHost, o: &SystemOptions, dir: PathBuf,
) -> Result<alloc_count::AllocStats, String> {
    let (proposer, validator) = (new_host()?, new_host()?);
    let _counting = alloc_count::counting();
    alloc_count::reset_peak();
    let before = alloc_count::snapshot();
    run_chain(
        NodeHosts {
            proposer: &proposer,
            validator: &validator,
        },
        &chain_config(o, dir),
        |_| {},
    )
    .map_err(|e| e.to_string())?;
    Ok(alloc_count::snapshot().since(&before))
}

fn side(runs: &[Measured], heap: Option<alloc_count::AllocStats>) -> SystemSide {
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
        heap,
        cluster: cluster_nodes(runs),
    }
}

/// Each cluster node's figures, the median of each over `runs`.
fn cluster_nodes(runs: &[Measured]) -> Vec<ClusterNode> {
    use dubchain_node::net::{KindTraffic, Traffic};
    let nodes = runs
        .iter()
        .map(|m| m.cluster_nodes.len())
        .min()
        .unwrap_or(0);
    (0..nodes)
        .map(|node| {
            let of: Vec<&NodeStats> = runs.iter().map(|m| &m.cluster_nodes[node]).collect();
            let count = |f: &dyn Fn(&NodeStats) -> u64| -> u64 {
                let mut v: Vec<u64> = of.iter().map(|s| f(s)).collect();
                v.sort_unstable();
                v[v.len() / 2]
            };
            let ms = |f: &dyn Fn(&NodeStats) -> std::time::Duration| -> f64 {
                quantile(
                    &of.iter()
                        .map(|s| f(s).as_secs_f64() * 1e3)
                        .collect::<Vec<_>>(),
                    0.5,
                )
            };
            let traffic = |f: &dyn Fn(&NodeStats) -> KindTraffic| -> KindTraffic {
                let kind = |k: &dyn Fn(&KindTraffic) -> Traffic| Traffic {
                    messages: count(&|s| k(&f(s)).messages),
                    bytes: count(&|s| k(&f(s)).bytes),
                };
                KindTraffic {
                    tx: kind(&|t| t.tx),
                    block: kind(&|t| t.block),
                    vote: kind(&|t| t.vote),
                }
            };
            ClusterNode {
                node,
                sent: traffic(&|s| s.network.sent),
                received: traffic(&|s| s.received),
                queue_peak: of[0]
                    .network
                    .queue_peak
                    .map(|_| count(&|s| s.network.queue_peak.unwrap_or(0))),
                threads: count(&|s| s.network.threads),
                propose_ms: ms(&|s| s.propose),
                blocks_ms: ms(&|s| s.blocks),
                votes_ms: ms(&|s| s.votes),
                admission_ms: ms(&|s| s.admission),
                admission_cpu_ms: ms(&|s| s.admission_cpu),
                admission_process_cpu_ms: ms(&|s| s.admission_process_cpu),
                admission_batches: count(&|s| s.admission_batches),
                decode_ms: ms(&|s| s.decode),
                wait_ms: ms(&|s| s.wait),
            }
        })
        .collect()
}

/// The per-stage rows, from paired runs.
fn rows(b: &[Measured], p: &[Measured], o: &SystemOptions) -> Vec<StageRow> {
    let per = |f: &dyn Fn(&Measured) -> f64| -> (Vec<f64>, Vec<f64>) {
        (b.iter().map(f).collect(), p.iter().map(f).collect())
    };
    let mut out = Vec::new();
    let mut time_row = |name: &str, f: &dyn Fn(&Measured) -> f64| {
        let (bv, pv) = per(f);
        out.push(StageRow::new(name, "ms", false, bv, pv));
    };
    time_row("mempool (proposer)", &|m| m.report.stages.mempool * 1e3);
    time_row("gossip admission (validator)", &|m| {
        m.report.stages.gossip_admission * 1e3
    });
    time_row("execution", &|m| m.report.stages.execution * 1e3);
    time_row("storage", &|m| m.report.stages.storage * 1e3);
    time_row("validation", &|m| m.report.stages.validation * 1e3);
    time_row("consensus", &|m| m.report.stages.consensus * 1e3);
    if o.network.is_some() {
        let name = match o.workload.validators.max(1) {
            1 => "network (1 node process, TCP)".to_owned(),
            n => format!("network ({n} node processes, TCP)"),
        };
        time_row(&name, &|m| m.network_s.unwrap_or(0.0) * 1e3);
    }
    if o.catch_up {
        time_row("catch-up sync (runs of 64)", &|m| {
            m.catch_up_s.unwrap_or(0.0) * 1e3
        });
    }
    time_row("block latency p50", &|m| m.report.latency_ms(0.5));
    time_row("block latency p99", &|m| m.report.latency_ms(0.99));
    let (bv, pv) = per(&|m| m.report.tps());
    out.push(StageRow::new("throughput", "tx/s", true, bv, pv));
    out
}

/// Runs the chain `o.runs` times on each side, alternating; `progress(done, total)` after
/// each run. Every node of every run gets its own host from `baseline` or `plugins`.
pub fn run(
    baseline: &NewHost, plugins: &NewHost, o: &SystemOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<SystemResult, String> {
    let created = check_scratch(&o.data_dir)?;
    // Two benchmarks on one directory would delete each other's stores mid-run.
    let held = dubchain_node::state::lock_data_dir(&o.data_dir)?;
    let runs = o.runs.max(1);
    let (mut b, mut p) = (Vec::new(), Vec::new());
    let total = runs * 2 + if o.count_allocations { 2 } else { 0 };
    for run in 0..runs {
        let order = if run % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for is_baseline in order {
            let (name, new_host) = if is_baseline {
                ("baseline", baseline)
            } else {
                ("plugins", plugins)
            };
            let m = measure(new_host, is_baseline, o, o.data_dir.join(name))
                .map_err(|e| format!("system benchmark, run {} on {name}: {e}", run + 1))?;
            if is_baseline { &mut b } else { &mut p }.push(m);
            progress(b.len() + p.len(), total);
        }
    }
    let (mut heap_b, mut heap_p) = (None, None);
    if o.count_allocations && alloc_count::installed() {
        heap_b = Some(count_heap(baseline, o, o.data_dir.join("heap-baseline"))?);
        progress(runs * 2 + 1, total);
        heap_p = Some(count_heap(plugins, o, o.data_dir.join("heap-plugins"))?);
        progress(total, total);
    }
    let reference = &b[0].ends;
    let identical = b.iter().chain(&p).all(|m| &m.ends == reference);
    for name in SCRATCH {
        let _ = std::fs::remove_dir_all(o.data_dir.join(name));
    }
    drop(held);
    if created {
        let _ = std::fs::remove_file(o.data_dir.join(dubchain_node::state::NODE_LOCK));
        let _ = std::fs::remove_dir(&o.data_dir);
    }
    Ok(SystemResult {
        workload: Some(describe(o)),
        blocks: o.blocks,
        txs_per_block: o.workload.txs_per_block,
        validators: o.workload.validators,
        seed: o.workload.seed,
        runs,
        runs_per_side: runs,
        rows: rows(&b, &p, o),
        chain: Some(summary(&b[0].report)),
        baseline: side(&b, heap_b),
        plugins: side(&p, heap_p),
        identical,
    })
}

fn summary(r: &ChainReport) -> ChainSummary {
    ChainSummary {
        blocks: r.block_hashes.len() as u64 - 1,
        finalized: r.finalized,
        transactions: r.transactions,
        rejected: r.rejected,
        invalid_votes: r.invalid_votes,
        last_block: *r.block_hashes.last().expect("genesis at least"),
        state_root: r.state_root,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data directory holding anything the benchmark did not make is refused and left
    /// whole; one it made, or a missing one, is taken.
    #[test]
    fn a_data_directory_of_someone_elses_is_refused_and_left_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let mine = tmp.path().join("mine");
        std::fs::create_dir_all(mine.join("plugins")).unwrap();
        std::fs::write(mine.join("precious.txt"), "keep").unwrap();
        let e = check_scratch(&mine).unwrap_err();
        assert!(
            e.contains("holds precious.txt which the benchmark did not make"),
            "{e}"
        );
        assert!(mine.join("precious.txt").is_file());
        std::fs::remove_file(mine.join("precious.txt")).unwrap();
        assert_eq!(check_scratch(&mine), Ok(false), "an earlier run's scratch");
        assert_eq!(check_scratch(&tmp.path().join("new")), Ok(true));
    }
}
