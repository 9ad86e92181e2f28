//! A chain run: a proposer and a validator node, each with its own host (its own plugin
//! instances, caches and pools) and its own RocksDB, driven by the seeded workload for N
//! blocks, with the time of each stage recorded.
//!
//! The validator is a node in its own right: it decodes the transactions it is gossiped from
//! their wire payloads (`node::net::decode`, through `mem.tx_decode`) and admits them into
//! its own mempool before the block arrives, as a real node does, so whatever cache answers
//! its block check was warmed by its own work, never by the proposer's.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use dubchain_plugin_api::types::Bytes32;
use serde::Serialize;

use crate::{
    block::{self, BlockError},
    consensus::{verify_votes, ConsensusState, ValidatorSet, Vote},
    gen::{self, Workload, WorkloadConfig},
    mempool::{Mempool, Rejection},
    net::{self, Message},
    state::StateStore,
};
use dubchain_host::{
    alloc_count::{self, AllocStats},
    Host,
};

/// What to run.
#[derive(Debug, Clone)]
pub struct ChainConfig {
    pub workload: WorkloadConfig,
    pub blocks: u64,
    /// Where the two nodes' stores go (`proposer/`, `validator/`); emptied first.
    pub data_dir: PathBuf,
}

/// Seconds spent per stage, summed over the run. Generating and signing the workload's
/// transactions is not in any stage: it is the clients' work, not the node's.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stages {
    /// Admission (signatures, rules, dedupe), selection and removal on the proposer.
    pub mempool: f64,
    /// The validator decoding the gossiped transactions from their wire payloads
    /// (`mem.tx_decode`), admitting them into its own mempool, and removing them once their
    /// block is committed.
    pub gossip_admission: f64,
    /// Executing the selected transactions on the proposer.
    pub execution: f64,
    /// State root, encoding and commit of the proposer's block.
    pub storage: f64,
    /// The validator's check, re-execution and commit of each block.
    pub validation: f64,
    /// Verifying every validator's BLS vote on each block and tallying stake to finality.
    pub consensus: f64,
}

/// Heap allocations per stage, from the counting allocator (zeros where it is not
/// installed or counting is off, see [`alloc_count::counting`]): admission, block
/// production (selection, execution, storage), validation, consensus.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StageAllocs {
    pub admission: AllocStats,
    pub production: AllocStats,
    pub validation: AllocStats,
    pub consensus: AllocStats,
}

/// Adds what was allocated since `*mark` to `into`, and moves the mark.
fn charge(into: &mut AllocStats, mark: &mut AllocStats) {
    let now = alloc_count::snapshot();
    let d = now.since(mark);
    into.allocations += d.allocations;
    into.bytes += d.bytes;
    into.peak_bytes = into.peak_bytes.max(d.peak_bytes);
    *mark = now;
}

/// What a run produced and how long it took.
#[derive(Debug, Clone, Serialize)]
pub struct ChainReport {
    pub block_hashes: Vec<Bytes32>,
    pub state_root: Bytes32,
    pub transactions: u64,
    pub rejected: u64,
    /// The highest block with votes of two thirds of the stake.
    pub finalized: u64,
    /// Votes whose signature did not verify (the workload sends some).
    pub invalid_votes: u64,
    pub stages: Stages,
    pub allocs: StageAllocs,
    /// Per block: selection + execution + storage on the proposer, milliseconds.
    pub block_latency_ms: Vec<f64>,
    pub wall_s: f64,
}

impl ChainReport {
    pub fn tps(&self) -> f64 {
        self.transactions as f64 / self.wall_s.max(1e-9)
    }

    /// The `q` quantile (0..=1) of block creation latency.
    pub fn latency_ms(&self, q: f64) -> f64 {
        let mut v = self.block_latency_ms.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return 0.0;
        }
        v[((q * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)]
    }
}

/// A run failed: a store error, or the validator refused the proposer's block (which
/// means the node itself is wrong).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Block(#[from] BlockError),
    #[error("{0}")]
    State(#[from] crate::state::StateError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A data directory's chain that this node cannot go on with.
    #[error("{path}: {source}")]
    Chain { path: PathBuf, source: BlockError },
    #[error("the proposer and the validator disagree at block {height}: {proposer:?} against {validator:?}")]
    Diverged {
        height: u64,
        proposer: Bytes32,
        validator: Bytes32,
    },
    #[error("a cluster of {nodes} nodes was given {hosts} hosts; each node needs its own")]
    Hosts { nodes: usize, hosts: usize },
    #[error(
        "node {node} heard nothing for {:?} at height {height} (finalized {finalized})",
        crate::cluster::STALL
    )]
    Stalled {
        node: usize,
        height: u64,
        finalized: u64,
    },
    #[error("{0}")]
    Placement(String),
}

fn fresh_dir(path: &Path) -> Result<(), RunError> {
    let io = |source| RunError::Io {
        path: path.to_owned(),
        source,
    };
    if path.exists() {
        std::fs::remove_dir_all(path).map_err(io)?;
    }
    std::fs::create_dir_all(path).map_err(io)
}

/// The hosts of a run's nodes, one each.
#[derive(Clone, Copy)]
pub struct NodeHosts<'a> {
    pub proposer: &'a Host,
    pub validator: &'a Host,
}

impl<'a> NodeHosts<'a> {
    /// Both nodes on one host. Only for tests that do not measure or count per node: the two
    /// nodes then share every plugin instance and cache.
    pub fn shared(host: &'a Host) -> NodeHosts<'a> {
        NodeHosts {
            proposer: host,
            validator: host,
        }
    }
}

/// Runs `config` with the proposer on `hosts.proposer` and the validator on
/// `hosts.validator`, calling `progress(height)` after each block.
pub fn run_chain(
    hosts: NodeHosts<'_>, config: &ChainConfig, mut progress: impl FnMut(u64),
) -> Result<ChainReport, RunError> {
    let (host, vhost) = (hosts.proposer, hosts.validator);
    let start = Instant::now();
    let workload = Workload::new(config.workload.clone());
    let (p_dir, v_dir) = (
        config.data_dir.join("proposer"),
        config.data_dir.join("validator"),
    );
    fresh_dir(&p_dir)?;
    fresh_dir(&v_dir)?;
    let proposer = StateStore::open(&p_dir)?;
    let validator = StateStore::open(&v_dir)?;
    proposer.attach(&host.slots);
    validator.attach(&vhost.slots);
    let genesis = workload.genesis();
    let g = block::commit_genesis(host, &proposer, &genesis)?;
    let gv = block::commit_genesis(vhost, &validator, &genesis)?;
    if g != gv {
        return Err(RunError::Diverged {
            height: 0,
            proposer: g.hash,
            validator: gv.hash,
        });
    }

    let validators = ValidatorSet::generate(config.workload.seed, &workload.validators);
    let consensus = ConsensusState::new(&host.slots, &validators);
    let mut mempool = Mempool::new(&host.slots);
    let mut validator_mempool = Mempool::new(&vhost.slots);
    let mut stages = Stages::default();
    let mut report = ChainReport {
        block_hashes: vec![g.hash],
        state_root: g.state_root,
        transactions: 0,
        rejected: 0,
        finalized: 0,
        invalid_votes: 0,
        stages: Stages::default(),
        allocs: StageAllocs::default(),
        block_latency_ms: Vec::new(),
        wall_s: 0.0,
    };
    let secs = |d: Duration| d.as_secs_f64();
    let mut allocs = StageAllocs::default();
    let mut mark = alloc_count::snapshot();
    for height in 1..=config.blocks {
        // The clients' work, untimed: generating and signing the block's transactions, and
        // the proposer's gossip of them, as the wire carries it (a tag and JSON each).
        let txs = workload.txs_for_block(height, &proposer)?;
        let gossiped = gen::gossip(&txs);
        charge(&mut AllocStats::default(), &mut mark);
        let t = Instant::now();
        let verdicts = mempool.admit_with(
            txs,
            &host.slots.sig_verify,
            Some(&host.slots.tx_validation),
            &proposer,
        )?;
        report.rejected += verdicts
            .iter()
            .filter(|v| matches!(v, Some(Rejection::Invalid(_)) | Some(Rejection::Duplicate)))
            .count() as u64;
        stages.mempool += secs(t.elapsed());
        let t = Instant::now();
        // A payload that does not decode is dropped, as the node drops it off the wire; the
        // block's own check does not depend on what the validator admitted.
        let received = net::decode(&vhost.slots, &gossiped)
            .into_iter()
            .filter_map(|(_, m)| match m {
                Ok(Message::Tx(tx)) => Some(tx),
                _ => None,
            })
            .collect();
        validator_mempool.admit_with(
            received,
            &vhost.slots.sig_verify,
            Some(&vhost.slots.tx_validation),
            &validator,
        )?;
        stages.gossip_admission += secs(t.elapsed());
        charge(&mut allocs.admission, &mut mark);

        let (block, times) = block::produce(
            host,
            &proposer,
            &mut mempool,
            workload.proposer(height),
            config.workload.txs_per_block,
        )?;
        report
            .block_latency_ms
            .push((times.mempool + times.execution + times.storage).as_secs_f64() * 1e3);
        stages.mempool += secs(times.mempool);
        stages.execution += secs(times.execution);
        stages.storage += secs(times.storage);
        charge(&mut allocs.production, &mut mark);

        let t = Instant::now();
        let head = block::validate_and_commit(vhost, &validator, &block)?;
        stages.validation += secs(t.elapsed());
        let t = Instant::now();
        validator_mempool.remove(&block.transactions, &validator)?;
        stages.gossip_admission += secs(t.elapsed());
        charge(&mut allocs.validation, &mut mark);
        let proposer_head = proposer.head()?.expect("committed");
        if head != proposer_head {
            return Err(RunError::Diverged {
                height,
                proposer: proposer_head.hash,
                validator: head.hash,
            });
        }
        let t = Instant::now();
        let votes: Vec<Vote> = (0..validators.validators.len())
            .map(|i| {
                // Now and then a validator signs the wrong thing: its vote must not count.
                if (height + i as u64).is_multiple_of(13) {
                    let mut v = validators.vote(i, height, &block.header.parent);
                    v.block = head.hash;
                    v
                } else {
                    validators.vote(i, height, &head.hash)
                }
            })
            .collect();
        for (vote, ok) in
            votes
                .iter()
                .zip(verify_votes(&host.slots.vote_verify, &validators, &votes))
        {
            if ok {
                consensus.record(&validators, vote);
            } else {
                report.invalid_votes += 1;
            }
        }
        stages.consensus += secs(t.elapsed());
        charge(&mut allocs.consensus, &mut mark);
        report.finalized = consensus.finalized();
        report.transactions += block.transactions.len() as u64;
        report.block_hashes.push(head.hash);
        report.state_root = head.state_root;
        // Done with the block: freed here (the baseline) or handed to `mem.block_reclaim`.
        let t = Instant::now();
        host.slots.block_reclaim.reclaim(vec![block]);
        stages.storage += secs(t.elapsed());
        progress(height);
    }
    report.stages = stages;
    report.allocs = allocs;
    report.wall_s = start.elapsed().as_secs_f64();
    Ok(report)
}
