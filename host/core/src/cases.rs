//! The comparison harness's workloads: for each slot the bench suite measures without the
//! node, its cases (what is run, in words, and which one a manifest's promise is judged
//! on), their inputs, one run of either side, and the answer check that comes before any
//! timing. `dubchain-perf bench` and `run` (through `dubchain_instruments::micro`, which adds
//! the cases that need a RocksDB store), `plugin verify`'s quick ratio, the criterion benches
//! and a scaffolded plugin's `cargo bench` all measure these, with [`measure_contract`] or
//! the same interleaved [`measure::compare_with_reset`], so a figure means the same
//! wherever it is printed.

use std::hint::black_box;

use dubchain_plugin_api::{
    slots::{
        ConnectionsBox, Guarded, HostNonces, InboundSink, InboundSinkBox, InboundSink_TO, Outgoing,
        PeerSocket, PoolEntry, SharedFrame, SlotInfo, TrafficClass, TransportBox, TransportFfi_TO,
        TxIndexBox, BLOCK_RECLAIM, BLOCK_VALIDATION, BROADCAST, BUFFER_POOL, CODE_LOADER,
        DURABILITY, FRAME_SEND, MERKLE, METERING, MODULE_CACHE, RECORD_CODEC, SEND_QUEUE,
        SIG_VERIFY, STATE_ROOT, TRANSPORT, TX_DECODE, TX_POOL, TX_VALIDATION, VOTE_TALLY,
        VOTE_VERIFY,
    },
    transport::ThreadTransport,
    types::{Block, Bytes32, Record, Transaction},
};

use crate::{baseline, measure, workload, Host};

/// Sizes and rounds of the micro workloads.
#[derive(Debug, Clone)]
pub struct MicroOptions {
    pub rounds: usize,
    /// Signatures per `crypto.sig_verify` batch.
    pub signatures: usize,
    /// Blocks of 64 transactions per `storage.record_codec` batch.
    pub record_blocks: usize,
    /// Votes per `consensus.vote_verify` batch (one per validator, one block).
    pub votes: usize,
    /// Leaves of the `crypto.merkle` tree.
    pub leaves: usize,
    /// Transfers per `exec.block_execution` block.
    pub block_txs: usize,
    /// Blocks, and transfers per block, of the `consensus.block_validation` run.
    pub run_blocks: usize,
    pub run_txs: usize,
    /// Heights of 100 votes each that the `consensus.vote_tally` case's four threads record.
    pub tally_heights: u64,
    /// Pending transactions (of a tenth as many senders) the `mempool.tx_pool` case selects from.
    pub pool_pending: usize,
    /// Account reads of the `storage.account_read` case.
    pub reads: usize,
    /// Leaves of the state the `storage.state_root` case's blocks change.
    pub state_leaves: usize,
    /// Frames each way per peer of the `net.transport` cases.
    pub transport_frames: usize,
    pub seed: u64,
}

impl Default for MicroOptions {
    fn default() -> Self {
        MicroOptions {
            rounds: 20,
            signatures: 2048,
            record_blocks: 32,
            votes: 100,
            leaves: 4096,
            block_txs: 256,
            run_blocks: 64,
            run_txs: 256,
            tally_heights: 200,
            pool_pending: 50_000,
            reads: 20_000,
            state_leaves: 100_000,
            transport_frames: 64,
            seed: 7,
        }
    }
}

impl MicroOptions {
    /// The sizes `plugin verify`'s quick ratio runs the suite's cases at: the same
    /// workloads as `bench`, smaller, 7 rounds.
    pub fn quick() -> MicroOptions {
        MicroOptions {
            rounds: 7,
            signatures: 512,
            record_blocks: 8,
            run_blocks: 16,
            run_txs: 64,
            pool_pending: 5_000,
            state_leaves: 20_000,
            transport_frames: 16,
            ..MicroOptions::default()
        }
    }
}

/// One workload of a slot.
#[derive(Debug, Clone)]
pub struct Case {
    /// Short name, unique within the slot: `sig_verify`, `record_encode`, ...
    pub name: &'static str,
    pub slot: &'static str,
    pub workload: String,
    /// Whether this is the workload manifests' contracts promise a speed-up on.
    pub contract: bool,
}

/// What the measuring harness knows of one slot with node-free cases. Everything per slot
/// (its cases, their inputs, their rounds, the processes `plugin verify` pools) comes from
/// this table, [`CASES`]; nothing dispatches on slot ids.
pub struct SlotCases {
    pub slot: SlotInfo,
    /// The slot's cases at the given workload sizes.
    pub cases: fn(&MicroOptions) -> Vec<Case>,
    /// A case's inputs, generated once, deterministically from the seed.
    pub input: fn(&Case, &MicroOptions) -> Input,
    /// Rounds per side of each case, given the rounds asked for.
    pub rounds: fn(usize) -> usize,
    /// Fresh processes whose rounds `plugin verify` pools for the slot's quick ratio.
    pub processes: usize,
}

impl SlotCases {
    /// A slot whose cases run the rounds asked for, their quick ratio in one process.
    const fn new(
        slot: SlotInfo, cases: fn(&MicroOptions) -> Vec<Case>,
        input: fn(&Case, &MicroOptions) -> Input,
    ) -> SlotCases {
        SlotCases {
            slot,
            cases,
            input,
            rounds: as_asked,
            processes: 1,
        }
    }
}

/// The node-free workloads of each slot.
pub const CASES: &[SlotCases] = &[
    SlotCases::new(SIG_VERIFY, sig_verify_cases, sig_verify_input),
    SlotCases::new(RECORD_CODEC, record_codec_cases, record_codec_input),
    SlotCases::new(VOTE_VERIFY, vote_verify_cases, vote_verify_input),
    SlotCases::new(TX_VALIDATION, tx_validation_cases, tx_validation_input),
    SlotCases {
        rounds: at_most_8,
        ..SlotCases::new(
            BLOCK_VALIDATION,
            block_validation_cases,
            block_validation_input,
        )
    },
    SlotCases::new(MERKLE, merkle_cases, merkle_input),
    SlotCases {
        rounds: contended_rounds,
        processes: CONTENDED_PROCESSES,
        ..SlotCases::new(VOTE_TALLY, vote_tally_cases, vote_tally_input)
    },
    SlotCases::new(TX_POOL, tx_pool_cases, tx_pool_input),
    SlotCases {
        rounds: at_most_7,
        ..SlotCases::new(DURABILITY, durability_cases, durability_input)
    },
    SlotCases::new(STATE_ROOT, state_root_cases, state_root_input),
    SlotCases::new(CODE_LOADER, code_loader_cases, code_loader_input),
    SlotCases::new(MODULE_CACHE, module_cache_cases, module_cache_input),
    SlotCases::new(METERING, metering_cases, metering_input),
    SlotCases::new(TX_DECODE, tx_decode_cases, tx_decode_input),
    SlotCases::new(BUFFER_POOL, buffer_pool_cases, buffer_pool_input),
    SlotCases {
        rounds: reclaim_rounds,
        ..SlotCases::new(BLOCK_RECLAIM, block_reclaim_cases, block_reclaim_input)
    },
    SlotCases::new(FRAME_SEND, frame_send_cases, frame_send_input),
    SlotCases::new(BROADCAST, broadcast_cases, broadcast_input),
    SlotCases::new(TRANSPORT, transport_cases, transport_input),
    SlotCases {
        processes: CONTENDED_PROCESSES,
        ..SlotCases::new(SEND_QUEUE, send_queue_cases, send_queue_input)
    },
];

/// The row of [`CASES`] for `slot`, if it has node-free cases.
pub fn slot_cases(slot: &str) -> Option<&'static SlotCases> {
    CASES.iter().find(|c| c.slot.id == slot)
}

/// The node-free workloads of `slot`; empty for a slot without any.
pub fn cases(slot: &str, o: &MicroOptions) -> Vec<Case> {
    slot_cases(slot).map_or_else(Vec::new, |c| (c.cases)(o))
}

fn sig_verify_cases(o: &MicroOptions) -> Vec<Case> {
    vec![
        Case {
            name: "sig_verify",
            slot: SIG_VERIFY.id,
            workload: format!(
                "verify {} valid signatures from 16 signers, the same batch every round (warm: a cache has seen them, as when a block's transactions passed the mempool)",
                o.signatures
            ),
            contract: true,
        },
        Case {
            name: "sig_verify_cold",
            slot: SIG_VERIFY.id,
            workload: format!(
                "verify {} valid signatures never seen before, a fresh batch every run (cold: what a cache costs when it cannot help)",
                o.signatures
            ),
            contract: false,
        },
    ]
}

fn record_codec_cases(o: &MicroOptions) -> Vec<Case> {
    let n = o.record_blocks * 65;
    vec![
        Case {
            name: "record_encode",
            slot: RECORD_CODEC.id,
            workload: format!(
                "encode {} blocks of 64 transactions and their transactions ({n} records)",
                o.record_blocks
            ),
            contract: true,
        },
        Case {
            name: "record_decode",
            slot: RECORD_CODEC.id,
            workload: format!("decode the same {n} records from each codec's own encoding"),
            contract: false,
        },
    ]
}

fn vote_verify_cases(o: &MicroOptions) -> Vec<Case> {
    vec![
        Case {
            name: "vote_verify",
            slot: VOTE_VERIFY.id,
            workload: format!(
                "verify the BLS votes of {} validators on one block",
                o.votes
            ),
            contract: true,
        },
        Case {
            name: "vote_verify_adversarial",
            slot: VOTE_VERIFY.id,
            workload: format!(
                "verify the votes of {} validators, about one in four bad (another block, another key, a broken or off-subgroup signature)",
                o.votes
            ),
            contract: false,
        },
    ]
}

fn tx_validation_cases(o: &MicroOptions) -> Vec<Case> {
    vec![Case {
        name: "tx_validation",
        slot: TX_VALIDATION.id,
        workload: format!(
            "validate {} signed transfers from 16 senders (signature, then rules), a fresh batch every run (admission sees a transaction once)",
            o.signatures / 4
        ),
        contract: true,
    }]
}

fn block_validation_cases(o: &MicroOptions) -> Vec<Case> {
    vec![Case {
        name: "block_run",
        slot: BLOCK_VALIDATION.id,
        workload: format!(
            "the stateless checks of a run of {} blocks x {} signed transfers never seen before, a fresh run every run (catch-up sync)",
            o.run_blocks, o.run_txs
        ),
        contract: true,
    }]
}

fn merkle_cases(o: &MicroOptions) -> Vec<Case> {
    vec![Case {
        name: "merkle_root",
        slot: MERKLE.id,
        workload: format!("RFC 6962 Merkle root of {} leaves", o.leaves),
        contract: true,
    }]
}

fn vote_tally_cases(o: &MicroOptions) -> Vec<Case> {
    vec![Case {
        name: "vote_tally",
        slot: VOTE_TALLY.id,
        workload: format!(
            "four threads recording 100 validators' votes for {} heights, nine reads of the finalized height per vote (a fresh state per run)",
            o.tally_heights
        ),
        contract: true,
    }]
}

fn durability_cases(_: &MicroOptions) -> Vec<Case> {
    vec![Case {
        name: "durability",
        slot: DURABILITY.id,
        workload: format!(
            "{COMMITTERS} committers, {COMMITS} commits each, every commit a write to one file and a sync of it (an fsync)"
        ),
        contract: true,
    }]
}

fn state_root_cases(o: &MicroOptions) -> Vec<Case> {
    vec![Case {
        name: "state_root",
        slot: STATE_ROOT.id,
        workload: format!(
            "the state root after a block of {} leaf changes (a block of {} transfers) on a state of {} leaves; the baseline hashes every leaf, the plugin starts from the parent's tree (built before timing, as the block before would have)",
            2 * o.block_txs,
            o.block_txs,
            o.state_leaves
        ),
        contract: true,
    }]
}

#[cfg(feature = "vm")]
fn code_loader_cases(_: &MicroOptions) -> Vec<Case> {
    vec![Case {
        name: "code_load",
        slot: CODE_LOADER.id,
        workload: format!(
            "load the code of {CODE_LOADS} contract calls among {CODE_CONTRACTS} contracts, in random order: read and validated (the baseline), or the loader's answer, whose hash the host checks"
        ),
        contract: true,
    }]
}

#[cfg(feature = "vm")]
fn module_cache_cases(_: &MicroOptions) -> Vec<Case> {
    vec![Case {
        name: "module_run",
        slot: MODULE_CACHE.id,
        workload: format!(
            "{MODULE_CALLS} calls among {CODE_CONTRACTS} contracts (the compute contract, 100 rounds each), in random order, each contract called once before timing: compiled on every call (the baseline), or by the provider"
        ),
        contract: true,
    }]
}

/// A host without the contract VM cannot check a `vm.*` provider, so has no case for one.
#[cfg(not(feature = "vm"))]
fn code_loader_cases(_: &MicroOptions) -> Vec<Case> {
    Vec::new()
}

#[cfg(not(feature = "vm"))]
fn module_cache_cases(_: &MicroOptions) -> Vec<Case> {
    Vec::new()
}

#[cfg(feature = "vm")]
fn metering_cases(_: &MicroOptions) -> Vec<Case> {
    vec![Case {
        name: "metered_run",
        slot: METERING.id,
        workload: format!(
            "a call of the compute contract with {METERED_ROUNDS} rounds: metered (by the baseline's host-call rewrite, or the provider's), compiled and run"
        ),
        contract: true,
    }]
}

#[cfg(not(feature = "vm"))]
fn metering_cases(_: &MicroOptions) -> Vec<Case> {
    Vec::new()
}

/// Rounds of the `vm.metering` case's call (about 20 gas each).
#[cfg(feature = "vm")]
const METERED_ROUNDS: i64 = 200_000;

/// Calls of the `vm.module_cache` case, and the rounds each runs.
#[cfg(feature = "vm")]
const MODULE_CALLS: usize = 200;
#[cfg(feature = "vm")]
const MODULE_ROUNDS: i64 = 100;

/// Calls, and contracts, of the `vm.code_loader` case.
#[cfg(feature = "vm")]
const CODE_LOADS: usize = 2_000;
#[cfg(feature = "vm")]
const CODE_CONTRACTS: usize = 20;

/// Blocks of the `storage.state_root` case, taken in turn, all on one parent.
const STATE_BLOCKS: usize = 4;

/// Threads, and commits each, of the `storage.durability` case.
const COMMITTERS: usize = 8;
const COMMITS: usize = 20;

/// Gossiped transactions of the `mem.tx_decode` and `mem.buffer_pool` cases (8 blocks of
/// 256 from the workload's mix: 60% transfers, calls with 4-64 B of input, deploys of
/// 200-2000 B), and transactions of the block the `mem.block_reclaim` case hands over.
const GOSSIP_BLOCKS: usize = 8;
const GOSSIP_TXS: usize = 256;
const RECLAIM_TXS: usize = 1024;
/// The `net.frame_send` case: frames, their messages' size, frames per writer wake-up.
const WIRE_FRAMES: usize = 2_048;
const WIRE_PAYLOAD: usize = 200;
const WIRE_POP: usize = 256;
/// The `net.broadcast` case: the block's transactions, and the peers.
const BROADCAST_TXS: usize = 2_400;
const BROADCAST_PEERS: usize = 16;

fn tx_decode_cases(_: &MicroOptions) -> Vec<Case> {
    vec![Case {
        name: "tx_decode",
        slot: TX_DECODE.id,
        workload: format!(
            "decode {} gossiped transactions from their JSON payloads (60% transfers, calls, deploys; two access-list entries each), in one batch as `node::net::decode` hands them over",
            GOSSIP_BLOCKS * GOSSIP_TXS
        ),
        contract: true,
    }]
}

fn buffer_pool_cases(_: &MicroOptions) -> Vec<Case> {
    vec![Case {
        name: "framing",
        slot: BUFFER_POOL.id,
        workload: format!(
            "frame {} gossiped transactions as `node::net::encode_frame` does: a buffer of the frame's size, the length and the serialised payload copied in, the buffer released after the write (payloads serialised before timing: the buffers are what is measured)",
            GOSSIP_BLOCKS * GOSSIP_TXS
        ),
        contract: true,
    }]
}

fn block_reclaim_cases(_: &MicroOptions) -> Vec<Case> {
    vec![Case {
        name: "block_reclaim",
        slot: BLOCK_RECLAIM.id,
        workload: format!(
            "the commit path's hand-over of a committed block of {RECLAIM_TXS} transactions, one block a run (a fresh copy each run): dropped on the committing thread (the baseline) or given to the provider; the time the committing thread spends"
        ),
        contract: true,
    }]
}

fn frame_send_cases(_: &MicroOptions) -> Vec<Case> {
    vec![Case {
        name: "frame_send",
        slot: FRAME_SEND.id,
        workload: format!(
            "write {WIRE_FRAMES} frames of {WIRE_PAYLOAD}-byte messages to a loopback TCP peer (TCP_NODELAY, as the node sets it), in pops of {WIRE_POP} as a peer's writer takes them from its queue, until a thread at the far end has read them all"
        ),
        contract: true,
    }]
}

fn broadcast_cases(_: &MicroOptions) -> Vec<Case> {
    vec![Case {
        name: "broadcast",
        slot: BROADCAST.id,
        workload: format!(
            "the frames of one block of {BROADCAST_TXS} transactions (about 1 MiB of JSON) for {BROADCAST_PEERS} peers, as `node::net::Network::broadcast` asks for them; the baseline serialises it once per peer into a fresh buffer"
        ),
        contract: true,
    }]
}

/// The `net.send_queue` slow-peer case: batches pushed one a millisecond, each of gossip
/// frames and one consensus frame, to a peer that reads a tenth as fast.
const SLOW_BATCHES: usize = 300;
const SLOW_GOSSIP: usize = 10;
const SLOW_GOSSIP_BYTES: usize = 1024;
/// The socket buffers on both ends of the slow peer's connection (the kernel doubles
/// them): small, so the slow reader is felt at once rather than after megabytes.
const SLOW_SOCKET_BUFFER: i32 = 16 << 10;

fn send_queue_cases(_: &MicroOptions) -> Vec<Case> {
    vec![Case {
        name: "slow_peer",
        slot: SEND_QUEUE.id,
        workload: format!(
            "{SLOW_BATCHES} batches pushed one a millisecond, each {SLOW_GOSSIP} gossip frames of {SLOW_GOSSIP_BYTES} bytes and one consensus frame, into a peer's queue whose writer thread pops 256 at a time (as the node's) and writes to a loopback peer reading a tenth as fast (16 KiB socket buffers); the times are each run's p99 latency of consensus frames (pushed to written), the ratio theirs; its own figure: the most frames the queue held"
        ),
        // The quick ratio stays the seam's cost (`compare::RATIOS`); this case is what
        // the catalogue judges the backpressure row on.
        contract: false,
    }]
}

/// The `net.transport` cases' peers; the largest is the contract case.
const TRANSPORT_PEERS: [(usize, &str); 3] = [
    (16, "transport_16"),
    (64, "transport_64"),
    (256, "transport_256"),
];

fn transport_cases(o: &MicroOptions) -> Vec<Case> {
    TRANSPORT_PEERS
        .iter()
        .map(|&(peers, name)| Case {
            name,
            slot: TRANSPORT.id,
            workload: format!(
                "{peers} loopback peers (TCP_NODELAY), each sending the node {f} frames of {WIRE_PAYLOAD}-byte messages and sent {f} (the host's frames, shared), from handing over the connections to every frame read at both ends and the connections shut down; the baseline is a reader thread per peer on blocking sockets, writes on the caller's thread (`transport::ThreadTransport`, the host's I/O model)",
                f = o.transport_frames
            ),
            contract: peers == TRANSPORT_PEERS[2].0,
        })
        .collect()
}

fn tx_pool_cases(o: &MicroOptions) -> Vec<Case> {
    vec![Case {
        name: "tx_pool_select",
        slot: TX_POOL.id,
        workload: format!(
            "select a block of 256 from {} pending transactions of {} senders (fees 1-99, each sender's nonces 0, 1, ...)",
            o.pool_pending,
            o.pool_pending / 10
        ),
        contract: true,
    }]
}

/// Inputs handed out one a run, so that a layer which remembers what it saw (a verification
/// cache under the plugin) meets each only once while timed: the cold cases. The last one
/// is kept apart for the answer check.
pub struct Fresh<T> {
    sets: Vec<T>,
    next: std::sync::atomic::AtomicUsize,
}

impl<T> Fresh<T> {
    /// Enough sets for every run [`measure::compare_with_reset`] makes of `case` (a warm-up
    /// and [`rounds_for`] rounds per side) and the untimed counting run of each side, plus
    /// the one kept apart; `make(i)` builds the `i`th. A caller that runs more (a criterion
    /// loop) goes round them again.
    fn new(case: &Case, o: &MicroOptions, make: impl FnMut(u64) -> T) -> Self {
        let runs = 2 * (rounds_for(case, o).max(2) + 1) + 2;
        Fresh {
            sets: (0..=runs as u64).map(make).collect(),
            next: Default::default(),
        }
    }

    /// The next run's set.
    fn next(&self) -> &T {
        let k = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.sets[k % (self.sets.len() - 1)]
    }

    /// The set no timed run was given.
    fn kept(&self) -> &T {
        self.sets.last().expect("at least two sets")
    }
}

/// The inputs of a block run: the head it extends, and its blocks.
pub struct Run {
    head_height: u64,
    head_hash: Bytes32,
    blocks: Vec<Block>,
}

/// The inputs of a case, generated once (deterministically from the seed).
pub enum Input {
    Signatures(workload::SignatureSet),
    /// A fresh batch for every run.
    FreshSignatures(Fresh<workload::SignatureSet>),
    Votes(workload::VoteSet),
    Tree(Vec<Bytes32>),
    /// A fresh batch of transactions for every run.
    Txs(Fresh<Vec<Transaction>>),
    /// Pending entries, the baseline's index of them, and the provider's (filled by
    /// [`Input::for_host`]; selecting changes neither).
    Pool {
        entries: Vec<PoolEntry>,
        base: baseline::VecIndex,
        own: Option<std::sync::Mutex<TxIndexBox>>,
    },
    /// The log file the `storage.durability` case's committers write and sync (removed
    /// when dropped).
    Log(SyncedLog),
    /// The validators' stakes, and the heights every one of them votes at.
    Tally {
        stakes: Vec<u64>,
        heights: u64,
    },
    /// Contracts' code and the calls that load it.
    #[cfg(feature = "vm")]
    Code(workload::CodeLoads),
    /// Contracts' metered code and the calls that run it.
    #[cfg(feature = "vm")]
    Modules(workload::ModuleCalls),
    /// A contract's code, to meter and run.
    #[cfg(feature = "vm")]
    Contract(Vec<u8>),
    /// A state, its root, and blocks over it, taken in turn (`next`).
    State {
        blocks: workload::StateBlocks,
        parent: Bytes32,
        next: std::sync::atomic::AtomicUsize,
    },
    /// A fresh run of blocks for every run.
    Run(Fresh<Run>),
    /// Gossiped transactions' JSON payloads, to decode (`mem.tx_decode`).
    Gossip(Vec<Vec<u8>>),
    /// Serialised message payloads, to frame (`mem.buffer_pool`).
    Frames(Vec<Vec<u8>>),
    /// Frames to write, and the loopback peer they go to (`net.frame_send`).
    Wire {
        frames: Vec<Vec<u8>>,
        peer: LoopbackPeer,
        /// A host with no provider: the baseline side goes through the same slot code.
        none: Box<crate::slot::Slots>,
    },
    /// Messages to frame for [`BROADCAST_PEERS`] peers (`net.broadcast`).
    Broadcast(Vec<dubchain_plugin_api::wire::Message>),
    /// Loopback peers to hand a transport, and the most threads the process ran during an
    /// exchange, per side (`net.transport`).
    Transport(Box<TransportInput>),
    /// The slow peer's batches, and each run's p99 consensus latency and the most frames
    /// queued, per side (`net.send_queue`).
    SlowPeer(Box<SlowPeerInput>),
    /// Copies of one committed block, one handed over per run (`mem.block_reclaim`).
    Reclaim(std::sync::Mutex<Vec<Block>>),
    Records {
        records: Vec<Record>,
        /// The baseline's encoding (what the baseline decodes).
        json: Vec<Vec<u8>>,
        /// The slot's encoding (what the plugin decodes); filled by [`Input::for_host`].
        own: Vec<Vec<u8>>,
    },
}

impl Input {
    /// The inputs of `case` (one of [`cases`]), generated once, deterministically from the
    /// seed.
    pub fn new(case: &Case, o: &MicroOptions) -> Input {
        let slot = slot_cases(case.slot).unwrap_or_else(|| {
            unreachable!(
                "slot {} has no node-free case (`cases` lists them)",
                case.slot
            )
        });
        (slot.input)(case, o)
    }

    /// Completes the input for `host` (the plugin's own encoding, to decode).
    pub fn for_host(mut self, host: &Host) -> Input {
        match &mut self {
            Input::Records { records, own, .. } => {
                *own = host.slots.record_codec.encode(records);
            }
            Input::Pool { entries, own, .. } => {
                *own = host.slots.tx_pool.new_index().map(|mut index| {
                    let _ = index.insert(entries.as_slice().into());
                    std::sync::Mutex::new(index)
                });
            }
            #[cfg(feature = "vm")]
            Input::Modules(w) => {
                // Warm: every contract called once, as a running node has.
                for i in 0..w.contracts.len() {
                    let _ = module_call(Side::Plugin, host, w, i);
                }
            }
            Input::State { blocks, parent, .. } => {
                // The block before: a block that changed nothing on the parent's state, so
                // that a provider holds the parent's tree, as it would in a running node.
                let _ = host
                    .slots
                    .state_root
                    .root(parent, &[], &|| Ok(blocks.before.clone()));
            }
            _ => {}
        }
        self
    }
}

/// Which implementation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Baseline,
    Plugin,
}

/// Runs `case` once on `side`.
pub fn run(case: &Case, side: Side, host: &Host, input: &Input) {
    match (case.name, input) {
        ("sig_verify_cold" | "sig_verify", Input::FreshSignatures(..) | Input::Signatures(_)) => {
            let items = match input {
                Input::FreshSignatures(sets) => sets.next().items(),
                Input::Signatures(set) => set.items(),
                _ => unreachable!("matched above"),
            };
            match side {
                Side::Baseline => drop(black_box(baseline::sig_verify(black_box(&items)))),
                Side::Plugin => drop(black_box(
                    host.slots.sig_verify.verify_batch(black_box(&items)),
                )),
            }
        }
        ("vote_verify" | "vote_verify_adversarial", Input::Votes(set)) => {
            let items = set.items();
            match side {
                Side::Baseline => drop(black_box(baseline::verify_votes(black_box(&items)))),
                Side::Plugin => drop(black_box(
                    host.slots.vote_verify.verify_votes(black_box(&items)),
                )),
            }
        }
        ("block_run", Input::Run(runs)) => {
            let run = runs.next();
            let (height, hash, blocks) = (run.head_height, &run.head_hash, &run.blocks);
            match side {
                Side::Baseline => drop(black_box(baseline::check_run(height, hash, blocks))),
                Side::Plugin => drop(black_box(
                    host.slots.block_validation.check_run(height, hash, blocks),
                )),
            }
        }
        ("tx_validation", Input::Txs(batches)) => {
            let txs = batches.next();
            match side {
                Side::Baseline => drop(black_box(baseline::validate_txs(black_box(txs)))),
                Side::Plugin => drop(black_box(host.slots.tx_validation.validate(black_box(txs)))),
            }
        }
        ("merkle_root", Input::Tree(leaves)) => match side {
            Side::Baseline => drop(black_box(baseline::merkle_root(black_box(leaves)))),
            Side::Plugin => drop(black_box(host.slots.merkle.root(black_box(leaves)))),
        },
        ("record_encode", Input::Records { records, .. }) => match side {
            Side::Baseline => drop(black_box(baseline::encode_records(black_box(records)))),
            Side::Plugin => drop(black_box(
                host.slots.record_codec.encode(black_box(records)),
            )),
        },
        ("record_decode", Input::Records { json, own, .. }) => {
            let bytes = if side == Side::Baseline { json } else { own };
            let refs: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
            match side {
                Side::Baseline => drop(black_box(baseline::decode_records(black_box(&refs)))),
                Side::Plugin => drop(black_box(host.slots.record_codec.decode(black_box(&refs)))),
            }
        }
        ("tx_decode", Input::Gossip(payloads)) => {
            let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            match side {
                Side::Baseline => drop(black_box(baseline::decode_txs(black_box(&refs)))),
                Side::Plugin => drop(black_box(host.slots.tx_decode.decode(black_box(&refs)))),
            }
        }
        ("framing", Input::Frames(payloads)) => {
            for p in payloads {
                let frame = match side {
                    Side::Baseline => abi_stable::std_types::RVec::with_capacity(4 + p.len()),
                    Side::Plugin => host.slots.buffer_pool.take(4 + p.len()),
                };
                let frame = black_box(baseline::fill_frame(frame, p));
                match side {
                    Side::Baseline => drop(frame),
                    Side::Plugin => host.slots.buffer_pool.give(frame),
                }
            }
        }
        ("frame_send", Input::Wire { frames, peer, none }) => {
            let slot = match side {
                Side::Baseline => &none.frame_send,
                Side::Plugin => &host.slots.frame_send,
            };
            let until = peer.received() + frames.iter().map(|f| f.len() as u64).sum::<u64>();
            for pop in frames.chunks(WIRE_POP) {
                let views: Vec<&[u8]> = pop.iter().map(Vec::as_slice).collect();
                slot.send(&views, &mut &peer.stream)
                    .expect("the loopback peer takes the frames");
            }
            // Messages per second are messages the peer read: the run ends when it has.
            peer.wait_for(until);
        }
        (_, Input::SlowPeer(sp)) => {
            let queue = crate::peer_queue::PeerQueue::new(match side {
                Side::Baseline => None,
                Side::Plugin => host.slots.send_queue.new_queue(1),
            });
            let (p99, peak) = slow_peer_run(&queue, &sp.batches);
            sp.p99_s[side as usize]
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(p99);
            sp.peak_frames[side as usize].fetch_max(peak, std::sync::atomic::Ordering::Relaxed);
        }
        (_, Input::Transport(t)) => {
            let threads = transport_exchange(t.peers, t.frames, |peers, sink| match side {
                Side::Baseline => t
                    .threads_model
                    .connect(peers.into(), sink)
                    .into_result()
                    .ok(),
                Side::Plugin => host.slots.transport.connect(peers, sink),
            });
            t.threads[side as usize].fetch_max(threads, std::sync::atomic::Ordering::Relaxed);
        }
        ("broadcast", Input::Broadcast(msgs)) => match side {
            Side::Baseline => drop(black_box(baseline::broadcast_frames(
                black_box(msgs),
                BROADCAST_PEERS,
            ))),
            Side::Plugin => drop(black_box(
                host.slots
                    .broadcast
                    .frames(black_box(msgs), BROADCAST_PEERS),
            )),
        },
        ("block_reclaim", Input::Reclaim(blocks)) => {
            let block = blocks.lock().unwrap_or_else(|p| p.into_inner()).pop();
            if let Some(block) = block {
                match side {
                    Side::Baseline => drop(black_box(vec![block])),
                    Side::Plugin => host.slots.block_reclaim.reclaim(vec![block]),
                }
            }
        }
        ("tx_pool_select", Input::Pool { base, own, .. }) => match side {
            Side::Baseline => drop(black_box(base.select(256, &no_nonces_committed))),
            Side::Plugin => {
                if let Some(own) = own {
                    let source = HostNonces(no_nonces_committed);
                    let mut index = own.lock().expect("not poisoned");
                    drop(black_box(index.select(256, source.as_source())));
                }
            }
        },
        ("durability", Input::Log(log)) => {
            let commit = || match side {
                Side::Baseline => log.sync().expect("the log syncs"),
                Side::Plugin => host
                    .slots
                    .durability
                    .make_durable(u64::MAX, || log.sync())
                    .expect("the log syncs"),
            };
            std::thread::scope(|scope| {
                for _ in 0..COMMITTERS {
                    scope.spawn(|| (0..COMMITS).for_each(|_| commit()));
                }
            })
        }
        (
            "state_root",
            Input::State {
                blocks,
                parent,
                next,
            },
        ) => {
            let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % blocks.blocks.len();
            let (changes, after) = &blocks.blocks[k];
            match side {
                Side::Baseline => drop(black_box(dubchain_plugin_api::state_tree::root(
                    &mut black_box(after).clone(),
                ))),
                Side::Plugin => drop(black_box(host.slots.state_root.root(
                    parent,
                    black_box(changes),
                    &|| Ok(after.clone()),
                ))),
            }
        }
        #[cfg(feature = "vm")]
        ("metered_run", Input::Contract(code)) => drop(black_box(metered_call(
            side,
            host,
            code,
            METERED_ROUNDS,
            10_000_000,
        ))),
        #[cfg(feature = "vm")]
        ("module_run", Input::Modules(w)) => {
            for &i in &w.order {
                drop(black_box(module_call(side, host, w, i)));
            }
        }
        #[cfg(feature = "vm")]
        ("code_load", Input::Code(w)) => {
            let stored = |c: &Bytes32| w.codes.get(c).cloned();
            let source = dubchain_plugin_api::slots::HostCode(|c: &Bytes32| Ok(stored(c)));
            for c in &w.order {
                let loaded = match side {
                    Side::Baseline => None,
                    Side::Plugin => {
                        host.slots
                            .code_loader
                            .load(c, &w.hashes[c], source.as_source())
                    }
                };
                drop(black_box(
                    loaded.unwrap_or_else(|| crate::vm::baseline_load(stored(c))),
                ));
            }
        }
        ("vote_tally", Input::Tally { stakes, heights }) => match side {
            Side::Baseline => {
                // On the heap and on cache lines of its own, as a provider's state is: on
                // the stack it shared lines with the closures every thread reads, and each
                // run's stack address decided how much.
                #[repr(align(128))]
                struct OwnLines(std::sync::Mutex<baseline::Tally>);
                let state = Box::new(OwnLines(Default::default()));
                let m = &state.0;
                tally_threads(
                    *heights,
                    &|h, v| {
                        m.lock()
                            .expect("not poisoned")
                            .record(stakes, h, &TALLY_BLOCK, v);
                    },
                    &|| m.lock().expect("not poisoned").finalized(),
                );
            }
            Side::Plugin => {
                let Some(state) = host.slots.vote_tally.new_tally(stakes) else {
                    return;
                };
                tally_threads(
                    *heights,
                    &|h, v| {
                        let _ = state.record(h, &TALLY_BLOCK, v);
                    },
                    &|| state.finalized().into_result().unwrap_or(0),
                );
            }
        },
        _ => unreachable!("case {} does not take this input", case.name),
    }
}

/// One call of `code` with `rounds` and `gas`, on empty storage: metered by the baseline's
/// rewrite, or on the plugin side by the slot (the baseline's if it does not answer), then
/// compiled and run.
#[cfg(feature = "vm")]
fn metered_call(
    side: Side, host: &Host, code: &[u8], rounds: i64, gas: u64,
) -> Option<crate::vm::CallOutcome> {
    use dubchain_plugin_api::slots::{GasCounter, Metered};
    let baseline = || Metered {
        wasm: dubchain_plugin_api::vm::meter::instrument(code)
            .expect("the compute contract meters")
            .into(),
        counter: GasCounter::HostCall,
    };
    let metered = match side {
        Side::Baseline => baseline(),
        Side::Plugin => host
            .slots
            .metering
            .instrument(code)
            .unwrap_or_else(baseline),
    };
    let storage = crate::vm::MemoryStorage::default();
    crate::vm::Vm::shared()
        .run(
            &metered.wasm,
            metered.counter,
            Bytes32([3; 32]),
            rounds,
            gas,
            &storage,
        )
        .ok()
}

/// Call `i` of the `vm.module_cache` case (on empty storage) on `side`: the baseline
/// compiles and runs; the plugin side goes through the slot, the baseline answering if it
/// does not.
#[cfg(feature = "vm")]
fn module_call(
    side: Side, host: &Host, w: &workload::ModuleCalls, i: usize,
) -> dubchain_plugin_api::slots::CallResult {
    use dubchain_plugin_api::slots::{CallRequest, CallResult, GasCounter, HostFn};
    let (contract, key, wasm) = &w.contracts[i];
    let storage = crate::vm::MemoryStorage::default();
    let baseline = || {
        let out = crate::vm::Vm::shared()
            .run(
                wasm,
                GasCounter::HostCall,
                *contract,
                MODULE_ROUNDS,
                1_000_000,
                &storage,
            )
            .expect("memory storage does not fail");
        CallResult::from(&out)
    };
    match side {
        Side::Baseline => baseline(),
        Side::Plugin => {
            let request = CallRequest {
                key: *key,
                wasm: wasm.as_slice().into(),
                counter: GasCounter::HostCall,
                contract: *contract,
                input: MODULE_ROUNDS,
                gas: 1_000_000,
            };
            let store = HostFn(|_: &Bytes32, _: i64| Ok(0));
            host.slots
                .module_cache
                .run(&request, store.as_store())
                .unwrap_or_else(baseline)
        }
    }
}

/// A file in the temporary directory, written and fsynced by each commit.
pub struct SyncedLog {
    path: std::path::PathBuf,
    file: std::sync::Mutex<std::fs::File>,
}

impl SyncedLog {
    fn new() -> SyncedLog {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "dubchain-bench-sync-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let file = std::fs::File::create(&path).expect("a temporary file");
        SyncedLog {
            path,
            file: std::sync::Mutex::new(file),
        }
    }

    /// One commit's write, then an fsync of the file.
    fn sync(&self) -> Result<(), String> {
        use std::io::Write;
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(b"commit\n")
            .and_then(|()| f.sync_all())
            .map_err(|e| e.to_string())
    }
}

impl Drop for SyncedLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The slow-peer case's input: see [`Input::SlowPeer`].
#[derive(Debug)]
pub struct SlowPeerInput {
    batches: Vec<Vec<Outgoing>>,
    /// Each run's p99 consensus latency in seconds, `[baseline, plugin]`, in run order
    /// (the first of each side is its warm-up run).
    pub p99_s: [std::sync::Mutex<Vec<f64>>; 2],
    /// The most frames the queue held in any run, `[baseline, plugin]`.
    pub peak_frames: [std::sync::atomic::AtomicU64; 2],
}

/// One slow-peer run through `queue`: `batches` pushed one a millisecond while a writer
/// thread pops (256 at most) and writes to a loopback peer that reads a tenth as fast as
/// they are pushed, until every consensus frame is written. Returns the p99 of the consensus
/// frames' latencies (pushed to written), in seconds, and the most frames queued after a
/// push. Every wait is bounded: the writer's pops wait 50 ms, the reader's reads 100 ms.
fn slow_peer_run(queue: &crate::peer_queue::PeerQueue, batches: &[Vec<Outgoing>]) -> (f64, u64) {
    use std::{
        io::{Read, Write},
        net::{Shutdown, TcpListener, TcpStream},
        os::fd::AsRawFd,
        sync::atomic::{AtomicBool, Ordering},
        time::{Duration, Instant},
    };

    use dubchain_plugin_api::slots::Popped;

    let buffer = |fd: i32, option: libc::c_int| {
        // SAFETY: `fd` is an open socket and the value is a c_int of the size passed.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                (&SLOW_SOCKET_BUFFER as *const i32).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
    // An accepted socket takes the listener's receive buffer.
    buffer(listener.as_raw_fd(), libc::SO_RCVBUF);
    let near =
        TcpStream::connect(listener.local_addr().expect("its address")).expect("loopback connects");
    let (mut far, _) = listener.accept().expect("loopback accepts");
    buffer(near.as_raw_fd(), libc::SO_SNDBUF);
    near.set_nodelay(true).expect("TCP_NODELAY");
    far.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("a read timeout");
    let per_batch: usize = batches
        .first()
        .map_or(0, |b| b.iter().map(|o| o.frame.len()).sum());
    // Bytes a second the peer reads: a tenth of what is pushed (a batch a millisecond).
    let rate = per_batch as f64 * 1_000.0 / 10.0;
    let consensus = batches
        .iter()
        .flatten()
        .filter(|o| o.class == TrafficClass::Consensus)
        .count();
    let mut pushed = Vec::with_capacity(consensus);
    let done = AtomicBool::new(false);
    let mut peak = 0u64;
    let written: Vec<Instant> = std::thread::scope(|s| {
        s.spawn(|| {
            let (start, mut read, mut buf) = (Instant::now(), 0u64, [0u8; 4096]);
            while !done.load(Ordering::Acquire) {
                match far.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => read += n as u64,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        continue
                    }
                    Err(_) => return,
                }
                let due = Duration::from_secs_f64(read as f64 / rate);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        });
        let writer = s.spawn(|| {
            let mut out = Vec::with_capacity(consensus);
            let mut stream = &near;
            while out.len() < consensus {
                match queue.pop(256, Duration::from_millis(50)) {
                    Popped::Frames(frames) => {
                        let (t, mut bytes) = (Instant::now(), 0);
                        for o in frames.iter() {
                            stream
                                .write_all(&o.frame)
                                .expect("the slow peer takes the frames");
                            bytes += o.frame.len();
                            if o.class == TrafficClass::Consensus {
                                out.push(Instant::now());
                            }
                        }
                        queue.written(bytes, t.elapsed());
                    }
                    Popped::Idle => {}
                    Popped::Closed => break,
                }
            }
            out
        });
        let start = Instant::now();
        for (j, batch) in batches.iter().enumerate() {
            let due = start + Duration::from_millis(j as u64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            pushed.push(Instant::now());
            queue.push(batch.clone());
            peak = peak.max(queue.depth() as u64);
        }
        let written = writer.join().expect("the writer finishes");
        done.store(true, Ordering::Release);
        let _ = near.shutdown(Shutdown::Both);
        written
    });
    queue.close();
    assert_eq!(
        written.len(),
        consensus,
        "every consensus frame was written"
    );
    let mut latency: Vec<f64> = written
        .iter()
        .zip(&pushed)
        .map(|(w, p)| w.duration_since(*p).as_secs_f64())
        .collect();
    latency.sort_by(f64::total_cmp);
    let p99 = latency[((latency.len() * 99).div_ceil(100)).saturating_sub(1)];
    (p99, peak)
}

/// The `net.transport` cases' input: see [`Input::Transport`].
pub struct TransportInput {
    pub peers: usize,
    pub frames: usize,
    /// The baseline's model behind the slot's interface: a reader thread per peer.
    threads_model: TransportBox,
    /// The most threads the process ran during an exchange, `[baseline, plugin]`.
    pub threads: [std::sync::atomic::AtomicU64; 2],
}

impl std::fmt::Debug for TransportInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportInput")
            .field("peers", &self.peers)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

/// Threads the process runs now (`/proc/self/status`; 0 where it cannot be read).
pub fn process_threads() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// One exchange over `peers` fresh loopback connections handed to `connect`: every peer's
/// far end sends `frames` frames, which the node's inbox must all receive, and is sent
/// `frames` frames, which it must all read; then the connections are shut down. One far
/// thread writes to every peer and one reads from each in turn (the same on both sides).
/// Returns the threads the process ran while the frames were in flight. Every wait is
/// bounded (30 s), a failure panics, which fails the case rather than hanging the suite.
fn transport_exchange(
    peers: usize, frames: usize,
    connect: impl FnOnce(&[PeerSocket], InboundSinkBox) -> Option<ConnectionsBox>,
) -> u64 {
    use std::{
        io::{Read, Write},
        net::{TcpListener, TcpStream},
        os::fd::IntoRawFd,
        sync::{mpsc, Mutex},
        time::Duration,
    };

    use abi_stable::std_types::{RArc, RResult, RVec};
    use dubchain_plugin_api::PluginError;

    struct Count(Mutex<mpsc::Sender<()>>);
    impl InboundSink for Count {
        fn deliver(&self, _peer: u32, _payload: RVec<u8>) -> RResult<(), PluginError> {
            let _ = self.0.lock().unwrap_or_else(|p| p.into_inner()).send(());
            RResult::ROk(())
        }
    }
    const WAIT: Duration = Duration::from_secs(30);
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
    let addr = listener.local_addr().expect("its address");
    let mut far = Vec::with_capacity(peers);
    let mut near = Vec::with_capacity(peers);
    for peer in 0..peers {
        let f = TcpStream::connect(addr).expect("loopback connects");
        let (n, _) = listener.accept().expect("loopback accepts");
        for s in [&f, &n] {
            s.set_nodelay(true).expect("TCP_NODELAY");
        }
        f.set_read_timeout(Some(WAIT)).expect("a read timeout");
        f.set_write_timeout(Some(WAIT)).expect("a write timeout");
        far.push(f);
        near.push(PeerSocket {
            peer: peer as u32,
            fd: n.into_raw_fd(),
        });
    }
    let mut frame = (WIRE_PAYLOAD as u32).to_be_bytes().to_vec();
    frame.extend((0..WIRE_PAYLOAD).map(|k| k as u8));
    let stream = frame.repeat(frames);
    let shared = RArc::new(RVec::from(frame));
    let (tx, rx) = mpsc::channel();
    let sink = InboundSink_TO::from_value(Count(Mutex::new(tx)), abi_stable::sabi_trait::TD_Opaque);
    let conns = connect(&near, sink).expect("the transport takes the connections");
    let threads = std::thread::scope(|s| {
        s.spawn(|| {
            for mut f in &far {
                f.write_all(&stream).expect("the far end writes its frames");
            }
        });
        let reader = s.spawn(|| {
            let mut got = vec![0u8; stream.len()];
            for mut f in &far {
                f.read_exact(&mut got)
                    .expect("every frame reaches the far end");
            }
        });
        for peer in 0..peers {
            conns
                .send(peer as u32, vec![shared.clone(); frames].into())
                .into_result()
                .expect("the transport queues the frames");
        }
        let threads = process_threads();
        for _ in 0..peers * frames {
            rx.recv_timeout(WAIT).expect("every frame reaches the node");
        }
        reader.join().expect("the far reader finishes");
        threads
    });
    let _ = conns.shutdown().into_result();
    threads
}

/// A loopback TCP connection whose far end a thread drains until the near end closes,
/// counting the bytes it read.
pub struct LoopbackPeer {
    pub stream: std::net::TcpStream,
    received: std::sync::Arc<std::sync::atomic::AtomicU64>,
    drain: Option<std::thread::JoinHandle<()>>,
}

impl LoopbackPeer {
    fn new() -> LoopbackPeer {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
        let stream = std::net::TcpStream::connect(listener.local_addr().expect("its address"))
            .expect("loopback connects");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        let (mut far, _) = listener.accept().expect("loopback accepts");
        let received = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let count = received.clone();
        let drain = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            while let Ok(n @ 1..) = far.read(&mut buf) {
                count.fetch_add(n as u64, std::sync::atomic::Ordering::Release);
            }
        });
        LoopbackPeer {
            stream,
            received,
            drain: Some(drain),
        }
    }

    /// Bytes the far end has read so far.
    pub fn received(&self) -> u64 {
        self.received.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Returns once the far end has read `bytes` in all (bounded: 30 s, then it panics,
    /// which fails the case rather than hanging the suite).
    pub fn wait_for(&self, bytes: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.received() < bytes {
            assert!(
                std::time::Instant::now() < deadline,
                "the loopback peer read {} of {bytes} bytes in 30 s",
                self.received()
            );
            std::thread::yield_now();
        }
    }
}

impl std::fmt::Debug for LoopbackPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopbackPeer").finish_non_exhaustive()
    }
}

impl Drop for LoopbackPeer {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(d) = self.drain.take() {
            let _ = d.join();
        }
    }
}

/// The committed state of the `mempool.tx_pool` case: every sender's next nonce is 0.
fn no_nonces_committed(_: &Bytes32) -> Result<u64, dubchain_plugin_api::PluginError> {
    Ok(0)
}

/// The block every vote of the `consensus.vote_tally` case is for.
const TALLY_BLOCK: Bytes32 = Bytes32([7; 32]);

/// Four threads recording 100 validators' votes (thread `t` has validators `t`, `t + 4`,
/// ...) for heights `1..=heights`, each vote followed by nine reads of the finalized height
/// (the catalogue's 9:1).
fn tally_threads(
    heights: u64, record: &(dyn Fn(u64, u32) + Sync), read: &(dyn Fn() -> u64 + Sync),
) {
    std::thread::scope(|scope| {
        for t in 0..4u32 {
            scope.spawn(move || {
                for h in 1..=heights {
                    for v in (t..100).step_by(4) {
                        record(h, v);
                        for _ in 0..9 {
                            black_box(read());
                        }
                    }
                }
            });
        }
    })
}

/// Whether `host` answers `case` exactly as the baseline does, on the workload and (for
/// signatures) on adversarial inputs too.
pub fn identical(case: &Case, host: &Host, input: &Input, o: &MicroOptions) -> bool {
    match input {
        Input::FreshSignatures(..) | Input::Signatures(_) => {
            let set = match input {
                // The set kept apart: the timed runs' batches stay unseen.
                Input::FreshSignatures(sets) => sets.kept(),
                Input::Signatures(set) => set,
                _ => unreachable!("matched above"),
            };
            let adversarial = workload::signature_set(o.seed ^ 0xad, 256, true);
            [set, &adversarial].iter().all(|s| {
                let items = s.items();
                host.slots.sig_verify.verify_batch(&items) == baseline::sig_verify(&items)
            })
        }
        Input::Votes(set) => {
            let adversarial = workload::vote_set(o.seed ^ 0xad, 48, true);
            [set, &adversarial].iter().all(|s| {
                let items = s.items();
                host.slots.vote_verify.verify_votes(&items) == baseline::verify_votes(&items)
            })
        }
        Input::Txs(batches) => {
            let adversarial = workload::tx_batch(o.seed ^ 0x7a, 300, true);
            [batches.kept(), &adversarial]
                .iter()
                .all(|t| host.slots.tx_validation.validate(t) == Some(baseline::validate_txs(t)))
        }
        Input::Run(runs) => {
            let kept = runs.kept();
            let same = |h: u64, hash: &Bytes32, blocks: &[Block]| {
                host.slots.block_validation.check_run(h, hash, blocks)
                    == Some(baseline::check_run(h, hash, blocks))
            };
            same(kept.head_height, &kept.head_hash, &kept.blocks)
                && (0..6).all(|i| {
                    let (h, hash, blocks, _) =
                        workload::block_run(o.seed ^ (0xfa17 + i), 20, 12, true);
                    same(h, &hash, &blocks)
                })
        }
        Input::Tree(leaves) => {
            let sizes: Vec<usize> = (0..=17).chain([leaves.len(), leaves.len() + 1]).collect();
            workload::merkle_trees(o.seed ^ 0x3e, &sizes)
                .iter()
                .chain([leaves])
                .all(|t| host.slots.merkle.root(t) == baseline::merkle_root(t))
        }
        Input::Pool { base, own, .. } => {
            // Selections of every size up to past the whole pool's ready set, as the
            // baseline makes them.
            let Some(own) = own else { return false };
            let source = HostNonces(no_nonces_committed);
            let mut index = own.lock().expect("not poisoned");
            [0usize, 1, 256, 4_096].iter().all(|&max| {
                index
                    .select(max as u64, source.as_source())
                    .into_result()
                    .ok()
                    .map(|v| v.into_vec())
                    == base.select(max, &no_nonces_committed).ok()
            })
        }
        // The contract (a sync that began after the call) is what the slot's self-test and
        // conformance suite check; here, that the provider answers.
        Input::Log(log) => host
            .slots
            .durability
            .make_durable(u64::MAX, || log.sync())
            .is_ok(),
        #[cfg(feature = "vm")]
        Input::Contract(code) => {
            // The workload's call, and short calls that run out of gas at every point of
            // their first rounds: the same outcome (result, writes, gas used) each time.
            let limits = (0..400).step_by(7).chain([10_000_000]);
            [METERED_ROUNDS, 3].iter().all(|&rounds| {
                limits.clone().all(|gas| {
                    metered_call(Side::Plugin, host, code, rounds, gas)
                        == metered_call(Side::Baseline, host, code, rounds, gas)
                })
            })
        }
        #[cfg(feature = "vm")]
        Input::Modules(w) => (0..w.contracts.len()).all(|i| {
            module_call(Side::Plugin, host, w, i) == module_call(Side::Baseline, host, w, i)
        }),
        #[cfg(feature = "vm")]
        Input::Code(w) => {
            // Every contract of the workload, then the conformance suite's stored codes
            // (invalid, truncated, not wasm, empty) at addresses of their own, each twice.
            let mut codes: Vec<(Bytes32, Vec<u8>)> =
                w.codes.iter().map(|(a, c)| (*a, c.clone())).collect();
            codes.extend(
                crate::vm::check::stored_codes()
                    .into_iter()
                    .enumerate()
                    .map(|(i, (_, c))| (Bytes32([i as u8 ^ 0x5a; 32]), c)),
            );
            codes.iter().all(|(a, code)| {
                use sha2::Digest;
                let hash = Bytes32(sha2::Sha256::digest(code).into());
                let source =
                    dubchain_plugin_api::slots::HostCode(|_: &Bytes32| Ok(Some(code.clone())));
                let want = crate::vm::baseline_load(Some(code.clone()));
                (0..2).all(|_| {
                    host.slots.code_loader.load(a, &hash, source.as_source()) == Some(want.clone())
                })
            })
        }
        Input::State { blocks, parent, .. } => {
            // Blocks one on another (each on the state the one before left), then a block
            // that changes nothing on the timed runs' parent (which a provider must answer
            // with the parent's root, and which leaves it holding the parent's tree, as the
            // timed runs expect), then every block on that parent: every root the
            // baseline's, answered by the provider.
            use dubchain_plugin_api::state_tree;
            let chained = workload::state_blocks(o.seed ^ 0x5c, 2_000, 6, 64);
            let slot = &host.slots.state_root;
            let mut state =
                workload::LeafState(chained.before.iter().map(|l| (l.key, l.value)).collect());
            let _ = slot.root(&state.root(), &[], &|| Ok(state.leaves()));
            let in_turn = chained.blocks.iter().all(|(changes, _)| {
                let block = changes
                    .iter()
                    .map(|c| (c.key, c.value.into_option()))
                    .collect();
                let (after, list) = state.apply(&block);
                let expected = after.root();
                let got = slot.root(&state.root(), &list, &|| Ok(after.leaves()));
                state = after;
                got == Some(expected)
            });
            let unchanged = slot.root(parent, &[], &|| Ok(blocks.before.clone()));
            let on_parent = blocks.blocks.iter().all(|(changes, after)| {
                slot.root(parent, changes, &|| Ok(after.clone()))
                    == state_tree::root(&mut after.clone()).ok()
            });
            in_turn && unchanged == Some(*parent) && on_parent
        }
        Input::Tally { stakes, heights } => {
            // The workload's votes in one order, then a generated sequence with double
            // votes, other blocks, late votes and unknown validators: every answer and
            // finalized height the baseline's.
            use rand::{Rng, SeedableRng};
            let Some(state) = host.slots.vote_tally.new_tally(stakes) else {
                return false;
            };
            let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(o.seed ^ 0x7a11);
            let mut expected = baseline::Tally::default();
            let workload =
                (1..=*heights).flat_map(|h| (0..100u32).map(move |v| (h, TALLY_BLOCK, v)));
            let blocks = [TALLY_BLOCK, Bytes32([8; 32])];
            let generated: Vec<(u64, Bytes32, u32)> = (0..5_000)
                .map(|_| {
                    (
                        heights + rng.gen_range(0..30),
                        blocks[rng.gen_range(0..2)],
                        rng.gen_range(0..104),
                    )
                })
                .collect();
            workload.chain(generated).all(|(h, b, v)| {
                let want = expected.record(stakes, h, &b, v);
                state.record(h, &b, v).into_result().ok() == Some(want.into())
                    && state.finalized().into_result().ok() == Some(expected.finalized())
            })
        }
        Input::Wire { frames, .. } => {
            // The workload, then the self-test's sets (none, empty, 1 MiB frames): the
            // bytes that reach the connection are the frames', in order.
            let sets = std::iter::once(frames.clone())
                .chain(crate::selftest::frame_sets().into_iter().map(|(_, f)| f));
            sets.into_iter().all(|set| {
                let views: Vec<&[u8]> = set.iter().map(Vec::as_slice).collect();
                let mut out = Vec::new();
                host.slots.frame_send.send(&views, &mut out).is_ok() && out == set.concat()
            })
        }
        Input::SlowPeer(_) => {
            // Every frame each queue pops is checked by the host's ledger as it is popped
            // (consensus never dropped or reordered); here, the slot's conformance suite.
            crate::conformance::run_on(host, SEND_QUEUE.id)
                .iter()
                .all(|c| c.passed)
        }
        Input::Transport(_) => {
            // The conformance suite's exchange at another seed, twice its length: payloads
            // of every size both ways, each peer's in order, and the sockets closed at the
            // shutdown.
            host.slots.transport.providers().last().is_some_and(|top| {
                crate::selftest::transport_at(
                    &top.imp,
                    crate::selftest::Depth {
                        seed: o.seed,
                        scale: 2,
                    },
                )
                .is_ok()
            })
        }
        Input::Broadcast(msgs) => {
            // The workload, no messages, a mixed broadcast, and zero or one peer: every
            // peer's frames byte for byte the baseline's.
            let mixed: Vec<_> = workload::transactions(o.seed ^ 0xb0, 1, 40)
                .into_iter()
                .map(dubchain_plugin_api::wire::Message::Tx)
                .chain(msgs.iter().cloned())
                .collect();
            [
                (msgs.as_slice(), BROADCAST_PEERS),
                (&[], 3),
                (&mixed, 5),
                (&mixed, 0),
                (&mixed, 1),
            ]
            .iter()
            .all(|&(m, peers)| {
                let bytes = |lists: Vec<Vec<SharedFrame>>| -> Vec<Vec<Vec<u8>>> {
                    lists
                        .into_iter()
                        .map(|l| l.iter().map(|f| f.to_vec()).collect())
                        .collect()
                };
                host.slots.broadcast.frames(m, peers).map(bytes)
                    == Some(bytes(baseline::broadcast_frames(m, peers)))
            })
        }
        Input::Gossip(payloads) => {
            // The workload, every prefix of its first payload and single-bit flips of a
            // few: each decoded to the baseline's transaction, or refused where it refuses.
            let mut edited: Vec<Vec<u8>> = (0..payloads[0].len())
                .map(|n| payloads[0][..n].to_vec())
                .collect();
            for (i, p) in payloads.iter().take(64).enumerate() {
                let mut p = p.clone();
                let at = (i * 7919) % p.len();
                p[at] ^= 1 << (i % 8);
                edited.push(p);
            }
            [payloads, &edited].iter().all(|set| {
                let refs: Vec<&[u8]> = set.iter().map(Vec::as_slice).collect();
                let outcome = |v: Vec<Result<Transaction, String>>| -> Vec<Option<Transaction>> {
                    v.into_iter().map(Result::ok).collect()
                };
                outcome(host.slots.tx_decode.decode(&refs)) == outcome(baseline::decode_txs(&refs))
            })
        }
        Input::Frames(payloads) => {
            // Every frame, byte for byte the baseline's, with buffers that went round the
            // pool twice; answered by the provider, not the slot's fallback.
            let before = host.slots.buffer_pool.status().counters;
            let same = (0..2).all(|_| {
                payloads.iter().all(|p| {
                    let want = baseline::fill_frame(abi_stable::std_types::RVec::new(), p);
                    let got = baseline::fill_frame(host.slots.buffer_pool.take(4 + p.len()), p);
                    let same = got == want;
                    host.slots.buffer_pool.give(got);
                    same
                })
            });
            let after = host.slots.buffer_pool.status().counters;
            same && after.errors == before.errors && after.fallbacks == before.fallbacks
        }
        Input::Reclaim(blocks) => {
            // The provider takes a block without failing (what it frees, and when, is the
            // conformance suite's and the tests' to check).
            let before = host.slots.block_reclaim.status().counters;
            let block = blocks.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let Some(block) = block else { return false };
            host.slots.block_reclaim.reclaim(vec![block]);
            let after = host.slots.block_reclaim.status().counters;
            after.errors == before.errors && after.fallbacks == before.fallbacks
        }
        Input::Records {
            records, json, own, ..
        } => {
            let read = |bytes: &Vec<Vec<u8>>| {
                let refs: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
                host.slots
                    .record_codec
                    .decode(&refs)
                    .iter()
                    .zip(records)
                    .all(|(d, r)| d.as_ref().ok() == Some(r))
            };
            let _ = case;
            own.len() == records.len() && read(own) && read(json)
        }
    }
}

// The inputs of each slot's cases, generated once, deterministically from the seed
// (`SlotCases::input`).

fn sig_verify_input(case: &Case, o: &MicroOptions) -> Input {
    if case.name == "sig_verify_cold" {
        Input::FreshSignatures(Fresh::new(case, o, |i| {
            workload::signature_set(o.seed ^ (0xc01d << 8) ^ i, o.signatures, false)
        }))
    } else {
        Input::Signatures(workload::signature_set(o.seed, o.signatures, false))
    }
}

fn vote_verify_input(case: &Case, o: &MicroOptions) -> Input {
    Input::Votes(workload::vote_set(
        o.seed,
        o.votes,
        case.name == "vote_verify_adversarial",
    ))
}

fn tx_validation_input(case: &Case, o: &MicroOptions) -> Input {
    Input::Txs(Fresh::new(case, o, |i| {
        workload::tx_batch(o.seed ^ (i << 32), o.signatures / 4, false)
    }))
}

fn block_validation_input(case: &Case, o: &MicroOptions) -> Input {
    Input::Run(Fresh::new(case, o, |i| {
        let (head_height, head_hash, blocks, _) =
            workload::block_run(o.seed ^ (i << 32), o.run_blocks, o.run_txs, false);
        Run {
            head_height,
            head_hash,
            blocks,
        }
    }))
}

fn merkle_input(_: &Case, o: &MicroOptions) -> Input {
    Input::Tree(
        workload::merkle_trees(o.seed, &[o.leaves])
            .pop()
            .expect("one tree"),
    )
}

fn record_codec_input(_: &Case, o: &MicroOptions) -> Input {
    let records = workload::records(o.seed, o.record_blocks, 64);
    let json = baseline::encode_records(&records);
    Input::Records {
        records,
        json,
        own: Vec::new(),
    }
}

fn tx_pool_input(_: &Case, o: &MicroOptions) -> Input {
    let entries = workload::pool_entries(o.seed, o.pool_pending, o.pool_pending / 10);
    Input::Pool {
        base: baseline::VecIndex::from_entries(entries.iter().copied()),
        entries,
        own: None,
    }
}

fn durability_input(_: &Case, _: &MicroOptions) -> Input {
    Input::Log(SyncedLog::new())
}

#[cfg(feature = "vm")]
fn metering_input(_: &Case, _: &MicroOptions) -> Input {
    Input::Contract(
        crate::vm::contracts::genesis()
            .iter()
            .find(|c| c.name == "compute")
            .expect("the compute contract is a genesis contract")
            .code
            .clone(),
    )
}

#[cfg(feature = "vm")]
fn module_cache_input(_: &Case, o: &MicroOptions) -> Input {
    Input::Modules(workload::module_calls(o.seed, CODE_CONTRACTS, MODULE_CALLS))
}

#[cfg(feature = "vm")]
fn code_loader_input(_: &Case, o: &MicroOptions) -> Input {
    Input::Code(workload::code_loads(o.seed, CODE_CONTRACTS, CODE_LOADS))
}

fn state_root_input(_: &Case, o: &MicroOptions) -> Input {
    let blocks = workload::state_blocks(o.seed, o.state_leaves, STATE_BLOCKS, 2 * o.block_txs);
    let parent =
        dubchain_plugin_api::state_tree::root(&mut blocks.before.clone()).expect("distinct keys");
    Input::State {
        blocks,
        parent,
        next: Default::default(),
    }
}

fn vote_tally_input(_: &Case, o: &MicroOptions) -> Input {
    Input::Tally {
        stakes: (1..=100).collect(),
        heights: o.tally_heights,
    }
}

fn tx_decode_input(_: &Case, o: &MicroOptions) -> Input {
    Input::Gossip(
        workload::transactions(o.seed, GOSSIP_BLOCKS, GOSSIP_TXS)
            .iter()
            .map(|t| serde_json::to_vec(t).expect("transactions serialise"))
            .collect(),
    )
}

fn buffer_pool_input(_: &Case, o: &MicroOptions) -> Input {
    Input::Frames(
        workload::transactions(o.seed, GOSSIP_BLOCKS, GOSSIP_TXS)
            .into_iter()
            .map(|t| dubchain_plugin_api::wire::payload(&dubchain_plugin_api::wire::Message::Tx(t)))
            .collect(),
    )
}

fn frame_send_input(_: &Case, _: &MicroOptions) -> Input {
    Input::Wire {
        frames: (0..WIRE_FRAMES)
            .map(|i| {
                let mut f = (WIRE_PAYLOAD as u32).to_be_bytes().to_vec();
                f.extend((0..WIRE_PAYLOAD).map(|k| (i + k) as u8));
                f
            })
            .collect(),
        peer: LoopbackPeer::new(),
        none: Box::default(),
    }
}

fn broadcast_input(_: &Case, o: &MicroOptions) -> Input {
    let (_, _, mut blocks, _) = workload::block_run(o.seed, 1, BROADCAST_TXS, false);
    Input::Broadcast(vec![dubchain_plugin_api::wire::Message::Block(
        blocks.pop().expect("one block"),
    )])
}

fn send_queue_input(_: &Case, _: &MicroOptions) -> Input {
    Input::SlowPeer(Box::new(SlowPeerInput {
        batches: (0..SLOW_BATCHES)
            .map(|b| {
                let frame = |class, n: usize| Outgoing {
                    class,
                    frame: abi_stable::std_types::RArc::new(
                        [&(n as u32).to_be_bytes()[..], &vec![b as u8; n]]
                            .concat()
                            .into(),
                    ),
                };
                let mut batch: Vec<Outgoing> = (0..SLOW_GOSSIP)
                    .map(|_| frame(TrafficClass::Gossip, SLOW_GOSSIP_BYTES))
                    .collect();
                batch.insert(SLOW_GOSSIP / 2, frame(TrafficClass::Consensus, 200));
                batch
            })
            .collect(),
        p99_s: Default::default(),
        peak_frames: Default::default(),
    }))
}

fn transport_input(case: &Case, o: &MicroOptions) -> Input {
    Input::Transport(Box::new(TransportInput {
        peers: TRANSPORT_PEERS
            .iter()
            .find(|(_, name)| *name == case.name)
            .map_or(TRANSPORT_PEERS[0].0, |&(peers, _)| peers),
        frames: o.transport_frames,
        threads_model: TransportFfi_TO::from_value(
            Guarded(ThreadTransport),
            abi_stable::sabi_trait::TD_Opaque,
        ),
        threads: Default::default(),
    }))
}

fn block_reclaim_input(case: &Case, o: &MicroOptions) -> Input {
    let (_, _, mut blocks, _) = workload::block_run(o.seed, 1, RECLAIM_TXS, false);
    let block = blocks.pop().expect("one block");
    // Warm-up and every round of both sides, the answer check and the two
    // counted runs, with some to spare.
    let runs = 2 * (rounds_for(case, o) + 1) + 8;
    Input::Reclaim(std::sync::Mutex::new(vec![block; runs]))
}

/// The `vm.*` slots have no cases without the `vm` feature, so no inputs.
#[cfg(not(feature = "vm"))]
fn no_vm_input(case: &Case, _: &MicroOptions) -> Input {
    unreachable!(
        "slot {} has no node-free case without the `vm` feature",
        case.slot
    )
}
#[cfg(not(feature = "vm"))]
use no_vm_input as metering_input;
#[cfg(not(feature = "vm"))]
use no_vm_input as module_cache_input;
#[cfg(not(feature = "vm"))]
use no_vm_input as code_loader_input;

/// Rounds per side for `case` ([`SlotCases::rounds`]).
pub fn rounds_for(case: &Case, o: &MicroOptions) -> usize {
    slot_cases(case.slot).map_or(o.rounds, |c| (c.rounds)(o.rounds))
}

fn as_asked(rounds: usize) -> usize {
    rounds
}

/// A run of 64 full blocks takes about a second on the baseline: `consensus.block_validation`
/// runs at most 8.
fn at_most_8(rounds: usize) -> usize {
    rounds.min(8)
}

/// 160 fsyncs a baseline run of `storage.durability`.
fn at_most_7(rounds: usize) -> usize {
    rounds.min(7)
}

/// See [`CONTENDED_ROUNDS`].
fn contended_rounds(rounds: usize) -> usize {
    rounds.max(CONTENDED_ROUNDS)
}

/// One block a run of `mem.block_reclaim`, about a millisecond: enough runs for a tail.
fn reclaim_rounds(rounds: usize) -> usize {
    rounds.max(RECLAIM_ROUNDS)
}

/// Rounds, at least, of the `mem.block_reclaim` case.
pub const RECLAIM_ROUNDS: usize = 101;

/// Rounds, at least, of the workloads the scheduler disturbs most (`consensus.vote_tally`,
/// four threads on 2 cores; `net.send_queue`), each run tens of milliseconds: over 9
/// rounds the tally's median still moved from 0.7x to 1.1x between runs.
pub const CONTENDED_ROUNDS: usize = 21;

/// Fresh processes whose rounds `plugin verify` pools for the quick ratio of `slot`: the
/// contended workloads (`consensus.vote_tally`, `net.send_queue`) carry a bias per process
/// (the tally forwarder's median moved from 0.70x to 0.96x between processes of one build,
/// at 101 rounds each), so their figure is taken over [`CONTENDED_PROCESSES`] processes;
/// every other slot's over one.
pub fn processes_for(slot: &str) -> usize {
    slot_cases(slot).map_or(1, |c| c.processes)
}

/// See [`processes_for`].
pub const CONTENDED_PROCESSES: usize = 5;

/// The contract case of `slot` on `host`, interleaved with the baseline after its answers
/// are compared: the comparison and whether the answers were identical. `None` for a slot
/// without a node-free case.
pub fn measure_contract(
    host: &Host, slot: &str, o: &MicroOptions,
) -> Option<(measure::Comparison, bool)> {
    let case = cases(slot, o).into_iter().find(|c| c.contract)?;
    let input = Input::new(&case, o).for_host(host);
    let same = identical(&case, host, &input, o);
    let c = measure::compare(
        slot,
        rounds_for(&case, o),
        || run(&case, Side::Baseline, host, &input),
        || run(&case, Side::Plugin, host, &input),
    );
    Some((c, same))
}
