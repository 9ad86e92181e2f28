//! Several nodes, each with its own host (plugin instances, caches, pools), RocksDB and
//! thread, connected over TCP on loopback:
//! transactions are gossiped, the proposer of each height (validators take turns) broadcasts
//! its block, every node validates it, commits it and broadcasts its BLS vote; the next
//! proposer waits for the block to be final.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{self, RecvTimeoutError},
    },
    time::{Duration, Instant},
};

use dubchain_plugin_api::types::Block;

use crate::{
    block,
    consensus::{verify_votes, ConsensusState, ValidatorSet},
    gen::{Workload, WorkloadConfig},
    mempool::Mempool,
    net::{self, Inbound, KindTraffic, Message, Network, NetworkStats},
    run::RunError,
    state::{Head, StateStore},
};
use dubchain_host::{alloc_count, Host};

/// How long a node waits for any message before it declares the cluster stalled.
pub const STALL: Duration = Duration::from_secs(30);

/// The most blocks a node sends a peer that joins behind it: a node further behind
/// catches up this many blocks per connection it makes.
pub const CATCH_UP: u64 = 256;

/// How long a node runs, and what it tells on the way.
#[derive(Default)]
pub struct Until<'a> {
    /// Stop once this many blocks are final (`None`: until `stop`).
    pub blocks: Option<u64>,
    /// Set from outside to stop, after the block in progress.
    pub stop: Option<&'a AtomicBool>,
    /// Without any message for this long the cluster is stalled, an error (`None`: wait on).
    pub stall: Option<Duration>,
    /// At least this long between two proposals of the node.
    pub block_time: Duration,
    /// Peers that (re)connected, with their heads: the node sends each the blocks and votes
    /// it lacks.
    pub joins: Option<&'a mpsc::Receiver<(usize, u64)>>,
    /// Where the node keeps its head's height for others to read (a handshake tells it).
    pub head: Option<&'a AtomicU64>,
    /// Told of every block the node commits.
    pub observe: Option<&'a (dyn Fn(&Observed) + Sync)>,
}

impl Until<'_> {
    /// Until `blocks` are final, stalled after [`STALL`] without a message.
    pub fn blocks(blocks: u64) -> Until<'static> {
        Until {
            blocks: Some(blocks),
            stall: Some(STALL),
            ..Until::default()
        }
    }
}

/// A block a node committed, and the node then.
#[derive(Debug, Clone)]
pub struct Observed {
    pub head: Head,
    pub finalized: u64,
    pub txs: usize,
    /// From the start of its production or validation to its commit.
    pub took: Duration,
    pub mempool: usize,
    pub peers: usize,
    pub sent: KindTraffic,
    pub received: KindTraffic,
}

/// What one node ended with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeOutcome {
    pub index: usize,
    pub head: Head,
    pub finalized: u64,
    pub stats: NodeStats,
}

/// What a node's network carried inside the cluster, and where its thread's time went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// The CPU time of the node's own thread in those admissions (not the time it waited
    /// for a core, nor work handed to other threads); that of the whole process meanwhile
    /// (a provider's pool included, and any peer thread that ran in the same interval); and
    /// how many batches they were.
    pub admission_cpu: Duration,
    pub admission_process_cpu: Duration,
    pub admission_batches: u64,
    /// Received frames decoded into messages.
    pub decode: Duration,
    /// Waiting for frames.
    pub wait: Duration,
}

/// Runs `workload.validators` nodes until each has `blocks` final blocks, node `i` on
/// `hosts[i]` (one host per node: `hosts` has one entry per validator); stores go in
/// `data_dir/node-<i>` (emptied first).
pub fn run_cluster(
    hosts: &[&Host], workload: WorkloadConfig, blocks: u64, data_dir: &Path,
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
    let done = &std::sync::Barrier::new(n);
    let results: Vec<Result<NodeOutcome, RunError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = nets
            .into_iter()
            .map(|(network, inbox)| {
                let dir = data_dir.join(format!("node-{}", network.index));
                let (workload, validators) = (&workload, &validators);
                let host = hosts[network.index];
                scope.spawn(move || {
                    // Every node arrives at `done`, even one whose run panicked.
                    let arrive = Arrive(done);
                    let outcome =
                        Node::open(host, workload, validators, (network.index, n), &dir, true)
                            .and_then(|mut node| {
                                node.run(&network, &inbox, &Until::blocks(blocks))
                            });
                    // No node closes its connections while another may still write to
                    // it (the last votes): a write to a closed peer is a failed send.
                    network.finish_sending();
                    drop(arrive);
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

/// Waits at the barrier when dropped.
struct Arrive<'a>(&'a std::sync::Barrier);

impl Drop for Arrive<'_> {
    fn drop(&mut self) {
        self.0.wait();
    }
}

/// One validator node: its host, store, mempool and consensus state (a thread of
/// [`run_cluster`], or a node process, `crate::process`).
pub(crate) struct Node<'a> {
    host: &'a Host,
    workload: &'a Workload,
    validators: &'a ValidatorSet,
    index: usize,
    n: usize,
    store: StateStore,
    mempool: Mempool<'a>,
    consensus: ConsensusState<'a>,
    /// Blocks received ahead of the head, by height.
    waiting: BTreeMap<u64, Block>,
    stats: NodeStats,
    /// When the node may propose again (`Until::block_time` after its last proposal).
    next_proposal: Instant,
}

impl<'a> Node<'a> {
    /// Node `index` of `n` on the store in `dir`: emptied first if `fresh`, else resumed
    /// from its head (genesis committed if it has none).
    pub(crate) fn open(
        host: &'a Host, workload: &'a Workload, validators: &'a ValidatorSet,
        (index, n): (usize, usize), dir: &Path, fresh: bool,
    ) -> Result<Node<'a>, RunError> {
        let io = |source| RunError::Io {
            path: dir.to_owned(),
            source,
        };
        if fresh && dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io)?;
        }
        std::fs::create_dir_all(dir).map_err(io)?;
        let store = StateStore::open_data_dir(dir)?;
        if !fresh {
            // Blocks stored by a codec this host cannot read would be stranded.
            store.check_codecs(&host.slots.record_codec)?;
        }
        store.attach(&host.slots);
        block::open_genesis(host, &store, &workload.genesis()).map_err(|e| match e {
            block::BlockError::State(e) => RunError::State(e),
            source => RunError::Chain {
                path: dir.to_owned(),
                source,
            },
        })?;
        let node = Node {
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
            next_proposal: Instant::now(),
        };
        // A node resuming its store counts its own vote for its head again (the votes it
        // had were in memory): with its peers' votes, which they send when it connects,
        // the head is final again, which it needs before it proposes.
        let head = node.head()?;
        if !fresh && head.height > 0 {
            let vote = validators.vote(index, head.height, &head.hash);
            node.consensus.record(validators, &vote);
        }
        Ok(node)
    }

    fn head(&self) -> Result<Head, RunError> {
        Ok(self.store.head()?.expect("genesis committed"))
    }

    /// Takes part in the chain until `until` says to stop.
    pub(crate) fn run(
        &mut self, net: &Network, inbox: &mpsc::Receiver<Inbound>, until: &Until<'_>,
    ) -> Result<NodeOutcome, RunError> {
        // A node that can be stopped or joined waits in short slices, to look at both.
        let slice = if until.stop.is_some() || until.joins.is_some() {
            Duration::from_millis(100)
        } else {
            until.stall.unwrap_or(STALL)
        };
        let mut last_message = Instant::now();
        loop {
            let head = self.head()?;
            if let Some(h) = until.head {
                h.store(head.height, Ordering::SeqCst);
            }
            if let Some(joins) = until.joins {
                for (peer, their_head) in joins.try_iter() {
                    self.catch_up(net, peer, their_head, head)?;
                }
            }
            let finalized = self.consensus.finalized();
            let done = until
                .blocks
                .is_some_and(|b| head.height >= b && finalized >= b);
            if done || until.stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
                self.stats.network = net.stats();
                return Ok(NodeOutcome {
                    index: self.index,
                    head,
                    finalized,
                    stats: self.stats,
                });
            }
            // The latest block is final and the next one is ours to propose.
            let ours = finalized >= head.height
                && until.blocks.is_none_or(|b| head.height < b)
                && (head.height + 1) % self.n as u64 == self.index as u64;
            let now = Instant::now();
            if ours && now >= self.next_proposal {
                let t = Instant::now();
                self.propose(net, head.height + 1, until)?;
                self.stats.propose += t.elapsed();
                self.next_proposal = t + until.block_time;
                continue;
            }
            let wait = if ours {
                (self.next_proposal - now).min(slice)
            } else {
                slice
            };
            let t = Instant::now();
            let received = inbox.recv_timeout(wait);
            self.stats.wait += t.elapsed();
            let first = match received {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    let stalled = until.stall.is_some_and(|s| last_message.elapsed() >= s);
                    if !stalled {
                        continue;
                    }
                    return Err(RunError::Stalled {
                        node: self.index,
                        height: head.height,
                        finalized,
                    });
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(RunError::Stalled {
                        node: self.index,
                        height: head.height,
                        finalized,
                    });
                }
            };
            last_message = Instant::now();
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
                self.handle(net, head, msg, until)?;
                *if is_block {
                    &mut self.stats.blocks
                } else {
                    &mut self.stats.votes
                } += t.elapsed();
            }
            self.admit(pending_txs)?;
        }
    }

    /// Sends `peer`, whose head is at `their_head`, the stored blocks it lacks (at most
    /// [`CATCH_UP`]) and this node's votes from its head up, so that it can apply them and
    /// see them final.
    fn catch_up(
        &mut self, net: &Network, peer: usize, their_head: u64, head: Head,
    ) -> Result<(), RunError> {
        // Each stored block read once: the blocks it lacks, then this node's votes from
        // its head (which it has) up.
        let (mut msgs, mut votes) = (Vec::new(), Vec::new());
        let last = head.height.min(their_head + CATCH_UP);
        for h in their_head.min(last).max(1)..=last {
            let b = block::stored_block(self.host, &self.store, h)?;
            let hash = dubchain_plugin_api::chain::block_hash(&b.header);
            votes.push(net::vote_message(
                &self.validators.vote(self.index, h, &hash),
            ));
            if h > their_head {
                msgs.push(Message::Block(b));
            }
        }
        msgs.extend(votes);
        tracing::info!(
            node = self.index,
            peer,
            their_head,
            head = head.height,
            "peer joined; catching it up"
        );
        net.send_to(&self.host.slots, peer, &msgs);
        Ok(())
    }

    /// Tells `until`'s observer of the head just committed.
    fn observe(
        &self, net: &Network, until: &Until<'_>, txs: usize, took: Duration,
    ) -> Result<(), RunError> {
        if let Some(observe) = until.observe {
            let stats = net.stats();
            observe(&Observed {
                head: self.head()?,
                finalized: self.consensus.finalized(),
                txs,
                took,
                mempool: self.mempool.len(),
                peers: net.connected(),
                sent: stats.sent,
                received: self.stats.received,
            });
        }
        Ok(())
    }

    /// Admits transactions (gossiped, or this node's own), in one batch.
    fn admit(&mut self, txs: Vec<dubchain_plugin_api::types::Transaction>) -> Result<(), RunError> {
        if !txs.is_empty() {
            let t = Instant::now();
            let (thread, process) = (
                alloc_count::thread_cpu_seconds(),
                alloc_count::cpu_seconds(),
            );
            self.mempool.admit_with(
                txs,
                &self.host.slots.sig_verify,
                Some(&self.host.slots.tx_validation),
                &self.store,
            )?;
            let since = |before: f64, now: f64| Duration::from_secs_f64((now - before).max(0.0));
            self.stats.admission_cpu += since(thread, alloc_count::thread_cpu_seconds());
            self.stats.admission_process_cpu += since(process, alloc_count::cpu_seconds());
            self.stats.admission += t.elapsed();
            self.stats.admission_batches += 1;
        }
        Ok(())
    }

    /// Handles a block or a vote.
    fn handle(
        &mut self, net: &Network, head: Head, msg: Message, until: &Until<'_>,
    ) -> Result<(), RunError> {
        {
            match msg {
                Message::Tx(_) => unreachable!("admitted in batches"),
                Message::Block(b) => {
                    if b.header.height > head.height {
                        self.waiting.insert(b.header.height, b);
                    }
                    self.apply_waiting(net, until)?;
                }
                msg @ Message::Vote { .. } => {
                    let Some(vote) = crate::net::message_vote(msg) else {
                        return Ok(());
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
    fn apply_waiting(&mut self, net: &Network, until: &Until<'_>) -> Result<(), RunError> {
        loop {
            let next = self.head()?.height + 1;
            let Some(b) = self.waiting.remove(&next) else {
                return Ok(());
            };
            let t = Instant::now();
            let head = block::validate_and_commit(self.host, &self.store, &b)?;
            self.mempool.remove(&b.transactions, &self.store)?;
            let txs = b.transactions.len();
            self.host.slots.block_reclaim.reclaim(vec![b]);
            self.vote(net, head);
            self.observe(net, until, txs, t.elapsed())?;
        }
    }

    fn vote(&mut self, net: &Network, head: Head) {
        let vote = self.validators.vote(self.index, head.height, &head.hash);
        self.consensus.record(self.validators, &vote);
        net.broadcast(&self.host.slots, &[net::vote_message(&vote)]);
    }

    fn propose(&mut self, net: &Network, height: u64, until: &Until<'_>) -> Result<(), RunError> {
        let began = Instant::now();
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
        let txs = b.transactions.len();
        net.broadcast(&self.host.slots, &[Message::Block(b)]);
        let head = self.head()?;
        self.vote(net, head);
        self.observe(net, until, txs, began.elapsed())
    }
}
