//! Several nodes, each with its own host (plugin instances, caches, pools), RocksDB and
//! thread, connected over TCP on loopback:
//! transactions are gossiped, the proposer of each height (validators take turns) broadcasts
//! its block, every node validates it, commits it and broadcasts its BLS vote; the next
//! proposer waits for the block to be final.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::mpsc::{self, RecvTimeoutError},
    time::{Duration, Instant},
};

use dubchain_plugin_api::types::Block;

use crate::{
    block,
    consensus::{verify_votes, ConsensusState, ValidatorSet, Vote},
    gen::{Workload, WorkloadConfig},
    mempool::Mempool,
    net::{self, Inbound, KindTraffic, Message, Network, NetworkStats},
    run::RunError,
    state::{Head, StateStore},
};
use dubchain_host::Host;

/// How long a node waits for any message before it declares the cluster stalled.
pub const STALL: Duration = Duration::from_secs(30);

/// What one node ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeOutcome {
    pub index: usize,
    pub head: Head,
    pub finalized: u64,
    pub stats: NodeStats,
}

/// What a node's network carried inside the cluster, and where its thread's time went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Sent, queue depth and threads.
    pub network: NetworkStats,
    /// Frames received from peers, per kind.
    pub received: KindTraffic,
    /// Proposing: the block's transactions, execution, commit and broadcast.
    pub propose: Duration,
    /// Peers' blocks: validation, commit, and this node's vote.
    pub blocks: Duration,
    /// Peers' votes: verification and tally.
    pub votes: Duration,
    /// Gossiped transactions admitted to the mempool.
    pub admission: Duration,
    /// Received frames decoded into messages.
    pub decode: Duration,
    /// Waiting for frames.
    pub wait: Duration,
}

/// Runs `workload.validators` nodes until each has `blocks` final blocks, node `i` on
/// `hosts[i]` (one host per node: `hosts` has one entry per validator); stores go in
/// `data_dir/node-<i>` (emptied first).
pub fn run_cluster(
    hosts: &[&Host],
    workload: WorkloadConfig,
    blocks: u64,
    data_dir: &Path,
) -> Result<Vec<NodeOutcome>, RunError> {
    let n = workload.validators.max(1);
    if hosts.len() != n {
        return Err(RunError::Hosts {
            nodes: n,
            hosts: hosts.len(),
        });
    }
    let workload = Workload::new(WorkloadConfig {
        validators: n,
        ..workload
    });
    let validators = ValidatorSet::generate(workload.config.seed, &workload.validators);
    let slots: Vec<_> = hosts.iter().map(|h| &h.slots).collect();
    let nets = net::mesh(&slots).map_err(|source| RunError::Io {
        path: PathBuf::from("127.0.0.1"),
        source,
    })?;
    let results: Vec<Result<NodeOutcome, RunError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = nets
            .into_iter()
            .map(|(network, inbox)| {
                let dir = data_dir.join(format!("node-{}", network.index));
                let (workload, validators) = (&workload, &validators);
                let host = hosts[network.index];
                scope.spawn(move || {
                    let outcome = Node::start(host, workload, validators, network.index, n, &dir)
                        .and_then(|mut node| node.run(&network, &inbox, blocks));
                    network.shutdown();
                    outcome
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("node thread"))
            .collect()
    });
    results.into_iter().collect()
}

struct Node<'a> {
    host: &'a Host,
    workload: &'a Workload,
    validators: &'a ValidatorSet,
    index: usize,
    n: usize,
    store: StateStore,
    mempool: Mempool,
    consensus: ConsensusState,
    /// Blocks received ahead of the head, by height.
    waiting: BTreeMap<u64, Block>,
    stats: NodeStats,
}

impl<'a> Node<'a> {
    fn start(
        host: &'a Host,
        workload: &'a Workload,
        validators: &'a ValidatorSet,
        index: usize,
        n: usize,
        dir: &Path,
    ) -> Result<Node<'a>, RunError> {
        let io = |source| RunError::Io {
            path: dir.to_owned(),
            source,
        };
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io)?;
        }
        std::fs::create_dir_all(dir).map_err(io)?;
        let store = StateStore::open(dir)?;
        store.attach(&host.slots);
        block::commit_genesis(host, &store, &workload.genesis())?;
        Ok(Node {
            host,
            workload,
            validators,
            index,
            n,
            store,
            mempool: Mempool::new(&host.slots),
            consensus: ConsensusState::new(&host.slots, validators),
            waiting: BTreeMap::new(),
            stats: NodeStats::default(),
        })
    }

    fn head(&self) -> Result<Head, RunError> {
        Ok(self.store.head()?.expect("genesis committed"))
    }

    fn run(
        &mut self,
        net: &Network,
        inbox: &mpsc::Receiver<Inbound>,
        blocks: u64,
    ) -> Result<NodeOutcome, RunError> {
        loop {
            let head = self.head()?;
            let finalized = self.consensus.finalized();
            if head.height >= blocks && finalized >= blocks {
                self.stats.network = net.stats();
                return Ok(NodeOutcome {
                    index: self.index,
                    head,
                    finalized,
                    stats: self.stats,
                });
            }
            // The latest block is final and the next one is ours to propose.
            if finalized >= head.height
                && head.height < blocks
                && (head.height + 1) % self.n as u64 == self.index as u64
            {
                let t = Instant::now();
                self.propose(net, head.height + 1)?;
                self.stats.propose += t.elapsed();
                continue;
            }
            let t = Instant::now();
            let received = inbox.recv_timeout(STALL);
            self.stats.wait += t.elapsed();
            let first = match received {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    return Err(RunError::Stalled {
                        node: self.index,
                        height: head.height,
                        finalized,
                    });
                }
            };
            // Whatever else has arrived, decoded in one batch.
            let mut frames = vec![first];
            while frames.len() < 1_024 {
                match inbox.try_recv() {
                    Ok(f) => frames.push(f),
                    Err(_) => break,
                }
            }
            for (_, payload) in &frames {
                self.stats
                    .received
                    .count(payload.first().copied(), 4 + payload.len());
            }
            let t = Instant::now();
            let decoded = net::decode(&self.host.slots, &frames);
            self.stats.decode += t.elapsed();
            let mut pending_txs = Vec::new();
            for (from, decoded) in decoded {
                let msg = match decoded {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(node = self.index, peer = from, error = %e, "undecodable message dropped");
                        continue;
                    }
                };
                if let Message::Tx(tx) = msg {
                    pending_txs.push(tx);
                    continue;
                }
                self.admit(std::mem::take(&mut pending_txs))?;
                let t = Instant::now();
                let is_block = matches!(msg, Message::Block(_));
                self.handle(net, head, msg)?;
                *if is_block {
                    &mut self.stats.blocks
                } else {
                    &mut self.stats.votes
                } += t.elapsed();
            }
            self.admit(pending_txs)?;
        }
    }

    /// Admits transactions (gossiped, or this node's own), in one batch.
    fn admit(&mut self, txs: Vec<dubchain_plugin_api::types::Transaction>) -> Result<(), RunError> {
        if !txs.is_empty() {
            let t = Instant::now();
            self.mempool.admit_with(
                txs,
                &self.host.slots.sig_verify,
                Some(&self.host.slots.tx_validation),
                &self.store,
            )?;
            self.stats.admission += t.elapsed();
        }
        Ok(())
    }

    /// Handles a block or a vote.
    fn handle(&mut self, net: &Network, head: Head, msg: Message) -> Result<(), RunError> {
        {
            match msg {
                Message::Tx(_) => unreachable!("admitted in batches"),
                Message::Block(b) => {
                    if b.header.height > head.height {
                        self.waiting.insert(b.header.height, b);
                    }
                    self.apply_waiting(net)?;
                }
                Message::Vote {
                    height,
                    block,
                    validator,
                    signature,
                } => {
                    let Ok(signature) = <[u8; 96]>::try_from(signature.0.as_slice()) else {
                        return Ok(());
                    };
                    let vote = Vote {
                        height,
                        block,
                        validator,
                        signature,
                    };
                    if verify_votes(
                        &self.host.slots.vote_verify,
                        self.validators,
                        std::slice::from_ref(&vote),
                    )[0]
                    {
                        self.consensus.record(self.validators, &vote);
                    }
                }
            }
        }
        Ok(())
    }

    /// Commits every waiting block that extends the head, voting for each.
    fn apply_waiting(&mut self, net: &Network) -> Result<(), RunError> {
        loop {
            let next = self.head()?.height + 1;
            let Some(b) = self.waiting.remove(&next) else {
                return Ok(());
            };
            let head = block::validate_and_commit(self.host, &self.store, &b)?;
            self.mempool.remove(&b.transactions, &self.store)?;
            self.host.slots.block_reclaim.reclaim(vec![b]);
            self.vote(net, head);
        }
    }

    fn vote(&mut self, net: &Network, head: Head) {
        let vote = self.validators.vote(self.index, head.height, &head.hash);
        self.consensus.record(self.validators, &vote);
        net.broadcast(&self.host.slots, &[net::vote_message(&vote)]);
    }

    fn propose(&mut self, net: &Network, height: u64) -> Result<(), RunError> {
        let txs = self.workload.txs_for_block(height, &self.store)?;
        // Gossip: the block's transactions queued for each peer at once.
        let gossip: Vec<Message> = txs.iter().cloned().map(Message::Tx).collect();
        net.broadcast(&self.host.slots, &gossip);
        self.admit(txs)?;
        let proposer = self.workload.proposer(height);
        let (b, _) = block::produce(
            self.host,
            &self.store,
            &mut self.mempool,
            proposer,
            self.workload.config.txs_per_block,
        )?;
        net.broadcast(&self.host.slots, &[Message::Block(b)]);
        let head = self.head()?;
        self.vote(net, head);
        Ok(())
    }
}
