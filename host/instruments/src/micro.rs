//! Microbenchmarks per slot: each enabled plugin, alone (with only what it depends on), on
//! its slot's workload against the baseline, interleaved in one process.
//!
//! A slot's workloads are listed by [`cases`]; the one marked `contract` is the workload a
//! manifest's `[contract] min_speedup` promises a speed-up on, so its ratio is judged
//! against the promise (met when the whole 95% interval is at or above it). Before any
//! timing, the plugin's answers on the workload (and on adversarial inputs) are compared
//! with the baseline's: a fast wrong answer is reported as such, not as a speed-up.

use std::{collections::BTreeSet, hint::black_box};

use dubchain_plugin_api::{
    slots::{
        SlotInfo, BLOCK_COMMIT, BLOCK_EXECUTION, BLOCK_VALIDATION, MERKLE, RECORD_CODEC,
        SIG_VERIFY, TX_VALIDATION, VOTE_VERIFY,
    },
    types::{Block, Bytes32, Record, Transaction},
};

use dubchain_host::{
    baseline,
    measure::compare_with_reset,
    resolve::{resolve, Request, Source},
    session::{host_api_version, Session},
    workload, Host,
};

use crate::MicroResult;

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

type Cases = fn(&MicroOptions) -> Vec<Case>;

/// The workloads of each slot the suite measures, keyed by slot.
pub const CASES: &[(SlotInfo, Cases)] = &[
    (SIG_VERIFY, sig_verify_cases),
    (RECORD_CODEC, record_codec_cases),
    (VOTE_VERIFY, vote_verify_cases),
    (BLOCK_EXECUTION, block_execution_cases),
    (BLOCK_COMMIT, block_commit_cases),
    (TX_VALIDATION, tx_validation_cases),
    (BLOCK_VALIDATION, block_validation_cases),
    (MERKLE, merkle_cases),
];

/// The workloads of `slot`; empty for a slot the suite has no workload for yet.
pub fn cases(slot: &str, o: &MicroOptions) -> Vec<Case> {
    CASES
        .iter()
        .find(|(info, _)| info.id == slot)
        .map_or_else(Vec::new, |(_, cases)| cases(o))
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
    vec![Case {
        name: "vote_verify",
        slot: VOTE_VERIFY.id,
        workload: format!(
            "verify the BLS votes of {} validators on one block",
            o.votes
        ),
        contract: true,
    }]
}

fn block_execution_cases(o: &MicroOptions) -> Vec<Case> {
    let what = |hot: &str| {
        format!(
            "execute and write a block of {} transfers over 1000 accounts ({hot}) on RocksDB",
            o.block_txs
        )
    };
    vec![
        Case {
            name: "block_execution_hot",
            slot: BLOCK_EXECUTION.id,
            workload: what("half of them on 4 hot accounts"),
            contract: true,
        },
        Case {
            name: "block_execution_low",
            slot: BLOCK_EXECUTION.id,
            workload: what("5% on 4 hot accounts: low conflict"),
            contract: false,
        },
    ]
}

fn block_commit_cases(o: &MicroOptions) -> Vec<Case> {
    vec![Case {
        name: "block_commit",
        slot: BLOCK_COMMIT.id,
        workload: format!(
            "write a block of {} transfers' account writes (half of them on 4 hot accounts) and commit it with its record and head, synced, on RocksDB",
            o.block_txs
        ),
        contract: true,
    }]
}

fn tx_validation_cases(o: &MicroOptions) -> Vec<Case> {
    vec![Case {
        name: "tx_validation",
        slot: TX_VALIDATION.id,
        workload: format!(
            "validate {} signed transfers from 16 senders (signature, then rules)",
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
            "the stateless checks of a run of {} blocks x {} signed transfers (catch-up sync)",
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

/// The inputs of a case, generated once (deterministically from the seed).
pub enum Input {
    /// A store holding the state before a block, the block, and slots without providers
    /// (whose `exec.block_execution` is the node's baseline).
    Store(Box<StoreInput>),
    /// Two stores at the same state, one written through and one attached to the host's
    /// slots, and the writes of a block (for `storage.block_commit`).
    Commit(Box<CommitInput>),
    Signatures(workload::SignatureSet),
    /// A fresh batch for every run (the last one is kept apart for the answer check), and
    /// the next to hand out.
    FreshSignatures(Vec<workload::SignatureSet>, std::sync::atomic::AtomicUsize),
    Votes(workload::VoteSet),
    Tree(Vec<Bytes32>),
    Txs(Vec<Transaction>),
    Run {
        head_height: u64,
        head_hash: Bytes32,
        blocks: Vec<Block>,
    },
    Records {
        records: Vec<Record>,
        /// The baseline's encoding (what the baseline decodes).
        json: Vec<Vec<u8>>,
        /// The slot's encoding (what the plugin decodes); filled by [`Input::for_host`].
        own: Vec<Vec<u8>>,
    },
}

impl Input {
    pub fn new(case: &Case, o: &MicroOptions) -> Input {
        match case.slot {
            s if s == SIG_VERIFY.id && case.name == "sig_verify_cold" => {
                // Warm-up and every round, both sides, plus one apart for the check.
                let runs = 2 * (o.rounds.max(2) + 1) + 1;
                Input::FreshSignatures(
                    (0..runs as u64)
                        .map(|i| {
                            workload::signature_set(o.seed ^ (0xc01d << 8) ^ i, o.signatures, false)
                        })
                        .collect(),
                    Default::default(),
                )
            }
            s if s == SIG_VERIFY.id => {
                Input::Signatures(workload::signature_set(o.seed, o.signatures, false))
            }
            s if s == VOTE_VERIFY.id => Input::Votes(workload::vote_set(o.seed, o.votes, false)),
            s if s == BLOCK_EXECUTION.id => {
                let conflict = if case.name == "block_execution_hot" {
                    0.5
                } else {
                    0.05
                };
                Input::Store(Box::new(StoreInput::new(o.seed, o.block_txs, conflict)))
            }
            s if s == BLOCK_COMMIT.id => {
                Input::Commit(Box::new(CommitInput::new(o.seed, o.block_txs)))
            }
            s if s == TX_VALIDATION.id => {
                Input::Txs(workload::tx_batch(o.seed, o.signatures / 4, false))
            }
            s if s == BLOCK_VALIDATION.id => {
                let (head_height, head_hash, blocks, _) =
                    workload::block_run(o.seed, o.run_blocks, o.run_txs, false);
                Input::Run {
                    head_height,
                    head_hash,
                    blocks,
                }
            }
            s if s == MERKLE.id => Input::Tree(
                workload::merkle_trees(o.seed, &[o.leaves])
                    .pop()
                    .expect("one tree"),
            ),
            _ => {
                let records = workload::records(o.seed, o.record_blocks, 64);
                let json = baseline::encode_records(&records);
                Input::Records {
                    records,
                    json,
                    own: Vec::new(),
                }
            }
        }
    }

    /// Completes the input for `host` (the plugin's own encoding, to decode; the store the
    /// plugin writes to).
    pub fn for_host(mut self, host: &Host) -> Input {
        if let Input::Records { records, own, .. } = &mut self {
            *own = host.slots.record_codec.encode(records);
        }
        if let Input::Commit(c) = &self {
            c.stores()[1].attach(&host.slots);
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

/// What a run left to undo: a block in progress on a store, rolled back by [`Pending::undo`]
/// outside the timed region.
pub enum Pending<'a> {
    Nothing,
    Block(dubchain_node::state::BlockWriter<'a>),
    #[doc(hidden)]
    _Lifetime(std::marker::PhantomData<&'a ()>),
}

impl Pending<'_> {
    /// Rolls back what the run wrote.
    pub fn undo(self) {
        if let Pending::Block(w) = self {
            w.abort().expect("rolling back a benchmark block");
        }
    }
}

/// Runs `case` once on `side`; undo the returned [`Pending`] before the next run.
pub fn run_once<'a>(case: &Case, side: Side, host: &Host, input: &'a Input) -> Pending<'a> {
    if let Input::Commit(c) = input {
        c.commit_next(side);
        return Pending::Nothing;
    }
    if let Input::Store(s) = input {
        let slots = match side {
            Side::Baseline => &s.no_plugins,
            Side::Plugin => &host.slots,
        };
        let store = s.store.as_ref().expect("open");
        let mut w = store.begin_block(1);
        black_box(
            dubchain_node::execute::execute_block(slots, &mut w, &s.block.txs, &s.block.proposer)
                .expect("the benchmark store works"),
        );
        return Pending::Block(w);
    }
    run_pure(case, side, host, input);
    Pending::Nothing
}

fn run_pure(case: &Case, side: Side, host: &Host, input: &Input) {
    match (case.name, input) {
        ("sig_verify_cold", Input::FreshSignatures(sets, next)) => {
            let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % (sets.len() - 1);
            let items = sets[k].items();
            match side {
                Side::Baseline => drop(black_box(baseline::sig_verify(black_box(&items)))),
                Side::Plugin => drop(black_box(
                    host.slots.sig_verify.verify_batch(black_box(&items)),
                )),
            }
        }
        ("sig_verify", Input::Signatures(set)) => {
            let items = set.items();
            match side {
                Side::Baseline => drop(black_box(baseline::sig_verify(black_box(&items)))),
                Side::Plugin => drop(black_box(
                    host.slots.sig_verify.verify_batch(black_box(&items)),
                )),
            }
        }
        ("vote_verify", Input::Votes(set)) => {
            let items = set.items();
            match side {
                Side::Baseline => drop(black_box(baseline::verify_votes(black_box(&items)))),
                Side::Plugin => drop(black_box(
                    host.slots.vote_verify.verify_votes(black_box(&items)),
                )),
            }
        }
        (
            "block_run",
            Input::Run {
                head_height,
                head_hash,
                blocks,
            },
        ) => match side {
            Side::Baseline => drop(black_box(baseline::check_run(
                *head_height,
                head_hash,
                blocks,
            ))),
            Side::Plugin => drop(black_box(host.slots.block_validation.check_run(
                *head_height,
                head_hash,
                blocks,
            ))),
        },
        ("tx_validation", Input::Txs(txs)) => match side {
            Side::Baseline => drop(black_box(baseline::validate_txs(black_box(txs)))),
            Side::Plugin => drop(black_box(host.slots.tx_validation.validate(black_box(txs)))),
        },
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
        _ => unreachable!("case {} does not take this input", case.name),
    }
}

/// Whether `host` answers `case` exactly as the baseline does, on the workload and (for
/// signatures) on adversarial inputs too.
pub fn identical(case: &Case, host: &Host, input: &Input, o: &MicroOptions) -> bool {
    match input {
        Input::FreshSignatures(sets, _) => {
            // The set kept apart: the timed runs' batches stay unseen.
            let adversarial = workload::signature_set(o.seed ^ 0xad, 256, true);
            [sets.last().expect("at least one set"), &adversarial]
                .iter()
                .all(|s| {
                    let items = s.items();
                    host.slots.sig_verify.verify_batch(&items) == baseline::sig_verify(&items)
                })
        }
        Input::Signatures(set) => {
            let adversarial = workload::signature_set(o.seed ^ 0xad, 256, true);
            [set, &adversarial].iter().all(|s| {
                let items = s.items();
                host.slots.sig_verify.verify_batch(&items) == baseline::sig_verify(&items)
            })
        }
        Input::Commit(c) => c.identical(host),
        Input::Store(_) => {
            // Differential on generated and adversarial blocks, plugin against the pure
            // baseline; the write path itself is checked by the node's tests.
            let _ = case;
            (0..4).all(|i| {
                let b = workload::transfer_block(o.seed ^ (0xb10c + i), 200, 300, 0.3, true);
                host.slots
                    .block_execution
                    .execute_in_memory(&b.pre, &b.txs, &b.proposer)
                    .is_some_and(|got| got == baseline::execute_block(&b.pre, &b.txs, &b.proposer))
            })
        }
        Input::Votes(set) => {
            let adversarial = workload::vote_set(o.seed ^ 0xad, 48, true);
            [set, &adversarial].iter().all(|s| {
                let items = s.items();
                host.slots.vote_verify.verify_votes(&items) == baseline::verify_votes(&items)
            })
        }
        Input::Txs(txs) => {
            let adversarial = workload::tx_batch(o.seed ^ 0x7a, 300, true);
            [txs, &adversarial]
                .iter()
                .all(|t| host.slots.tx_validation.validate(t) == Some(baseline::validate_txs(t)))
        }
        Input::Run { .. } => (0..6).all(|i| {
            let (h, hash, blocks, _) = workload::block_run(o.seed ^ (0xfa17 + i), 20, 12, true);
            host.slots.block_validation.check_run(h, &hash, &blocks)
                == Some(baseline::check_run(h, &hash, &blocks))
        }),
        Input::Tree(leaves) => {
            let sizes: Vec<usize> = (0..=17).chain([leaves.len(), leaves.len() + 1]).collect();
            workload::merkle_trees(o.seed ^ 0x3e, &sizes)
                .iter()
                .chain([leaves])
                .all(|t| host.slots.merkle.root(t) == baseline::merkle_root(t))
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

/// One slot's answers against the baseline's, on the harness's workloads.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SlotCheck {
    pub slot: &'static str,
    /// Providers bottom to top.
    pub stack: Vec<String>,
    /// `Some(identical)` where the harness has a differential check for the slot; `None`
    /// where it has none (the slot's answers were not compared).
    pub identical: Option<bool>,
}

/// Compares every slot of `host` that has a provider with the baseline, on each of the
/// slot's workloads (generated and adversarial). A slot without provider is the baseline and
/// is not listed.
pub fn check_slots(host: &Host, o: &MicroOptions) -> Vec<SlotCheck> {
    host.slot_status()
        .into_iter()
        .filter(|st| !st.stack.is_empty())
        .map(|st| {
            let cases = cases(st.slot, o);
            let identical = (!cases.is_empty()).then(|| {
                cases.iter().all(|case| {
                    let input = Input::new(case, o).for_host(host);
                    identical(case, host, &input, o)
                })
            });
            SlotCheck {
                slot: st.slot,
                stack: st.stack,
                identical,
            }
        })
        .collect()
}

/// A host with `plugin` and what it depends on enabled, nothing else; each plugin given
/// its configuration from the session's profile.
pub fn isolated_host(s: &Session, plugin: &str) -> Result<Host, String> {
    let mut closure = BTreeSet::from([plugin.to_owned()]);
    let mut todo = vec![plugin.to_owned()];
    while let Some(name) = todo.pop() {
        let m = s
            .manifest(&name)
            .ok_or_else(|| format!("no plugin `{name}` in {}", s.options.plugin_dir.display()))?;
        for d in &m.depends {
            if closure.insert(d.name.clone()) {
                todo.push(d.name.clone());
            }
        }
    }
    let requests: Vec<Request> = s
        .manifests
        .iter()
        .map(|m| Request {
            name: m.name.clone(),
            enable: closure.contains(&m.name),
            source: Source::CommandLine,
        })
        .collect();
    let resolution = resolve(&s.manifests, &requests, &host_api_version());
    s.loaded_host_with(&resolution, false)
}

/// What the suite will measure for the session's enabled plugins: `(id, plugin label,
/// case, promise)`. A layered slot with several enabled providers also gets its whole
/// stack measured, as `stack.<slot>.<case>`.
pub fn plan(s: &Session, o: &MicroOptions) -> Vec<(String, String, Case, Option<f64>)> {
    let mut out = Vec::new();
    for name in s.resolution.enabled() {
        let Some(m) = s.manifest(name) else { continue };
        for p in &m.provides {
            for case in cases(&p.slot, o) {
                let promise = m.contract.as_ref().and_then(|c| {
                    let judged_here = match &c.case {
                        Some(name) => name == case.name,
                        None => case.contract,
                    };
                    judged_here.then_some(c.min_speedup)
                });
                out.push((
                    format!("{name}.{}", case.name),
                    name.to_owned(),
                    case,
                    promise,
                ));
            }
        }
    }
    for (slot, stack) in &s.resolution.stacks {
        if stack.len() > 1 {
            for case in cases(slot, o) {
                out.push((
                    format!("stack.{slot}.{}", case.name),
                    stack.join(" > "),
                    case,
                    None,
                ));
            }
        }
    }
    out
}

/// Runs the plan: each case on its host, interleaved with the baseline. `full` is the
/// host with the whole configured set, used for stack rows. `progress(i, n, id)` is called
/// before each case.
pub fn run(
    s: &Session,
    full: &Host,
    o: &MicroOptions,
    progress: impl FnMut(usize, usize, &str),
) -> Result<Vec<MicroResult>, String> {
    run_except(s, full, o, &[], progress)
}

/// Like [`run`], leaving out the cases of the plugins in `missing` (plugins that failed to
/// load, when the caller goes on without them).
pub fn run_except(
    s: &Session,
    full: &Host,
    o: &MicroOptions,
    missing: &[String],
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<Vec<MicroResult>, String> {
    let plan: Vec<_> = plan(s, o)
        .into_iter()
        .filter(|(_, label, _, _)| !missing.iter().any(|m| label.split(" > ").any(|l| l == m)))
        .collect();
    let mut results = Vec::new();
    for (i, (id, label, case, promise)) in plan.iter().enumerate() {
        progress(i, plan.len(), id);
        let isolated;
        let host = if id.starts_with("stack.") {
            full
        } else {
            isolated = isolated_host(s, label)?;
            &isolated
        };
        let goal = if id.starts_with("stack.") {
            None
        } else {
            dubchain_host::catalogue::goal_for(label, case.name)
        };
        results.push(measure_case(id, label, case, host, *promise, goal, o));
    }
    // Controls: on the slots whose speed-up must be the plugin's own code, a provider that
    // forwards to the baseline through the same primitives, measured the same way. It must
    // come out at about 1x; if it did not, the speed-up would be in the host.
    let mut controlled = BTreeSet::new();
    for (_, _, case, _) in &plan {
        if controlled.insert(case.name) {
            if let Some(host) = dubchain_host::reference::forwarding_host(case.slot) {
                let id = format!("control.{}.{}", case.slot, case.name);
                let label = "forwarding to the baseline (control)".to_owned();
                results.push(measure_case(&id, &label, case, &host, None, None, o));
            }
        }
    }
    progress(plan.len(), plan.len(), "");
    Ok(results)
}

/// One case on `host`, interleaved with the baseline, after its answers are compared (what
/// every micro row, control row and `plugin verify`'s store ratios are).
pub fn measure_case(
    id: &str,
    label: &str,
    case: &Case,
    host: &Host,
    promise: Option<f64>,
    goal: Option<f64>,
    o: &MicroOptions,
) -> MicroResult {
    let input = Input::new(case, o).for_host(host);
    let same = identical(case, host, &input, o);
    let pending = std::cell::RefCell::new(Pending::Nothing);
    // A run of 64 full blocks takes about a second on the baseline: fewer rounds.
    let rounds = if case.slot == BLOCK_VALIDATION.id {
        o.rounds.min(8)
    } else {
        o.rounds
    };
    let c = compare_with_reset(
        id,
        rounds,
        || *pending.borrow_mut() = run_once(case, Side::Baseline, host, &input),
        || *pending.borrow_mut() = run_once(case, Side::Plugin, host, &input),
        || pending.replace(Pending::Nothing).undo(),
    );
    MicroResult {
        id: id.to_owned(),
        plugin: label.to_owned(),
        slot: case.slot.to_owned(),
        workload: case.workload.clone(),
        rounds: c.rounds,
        met: promise.map(|p| c.ratio.low >= p),
        goal,
        promise,
        ratio: c.ratio,
        baseline_s: c.baseline_s,
        plugin_s: c.optimized_s,
        identical: same,
    }
}

/// A scratch RocksDB store with the state before a generated block (for
/// `exec.block_execution`), removed when dropped.
pub struct StoreInput {
    dir: std::path::PathBuf,
    store: Option<dubchain_node::state::StateStore>,
    block: workload::TransferBlock,
    no_plugins: dubchain_host::slot::Slots,
}

impl StoreInput {
    fn new(seed: u64, txs: usize, conflict: f64) -> StoreInput {
        let dir = std::env::temp_dir().join(format!(
            "dubchain-bench-store-{}-{seed}-{txs}-{conflict}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let block = workload::transfer_block(seed, 1000, txs, conflict, false);
        let store = scratch_store(&dir, &genesis_of(&block));
        StoreInput {
            dir,
            store: Some(store),
            block,
            no_plugins: dubchain_host::slot::Slots::default(),
        }
    }
}

impl Drop for StoreInput {
    fn drop(&mut self) {
        drop(self.store.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Two scratch RocksDB stores at the same genesis, and the account writes a generated block
/// of transfers makes, in execution order (three per transfer: sender, recipient,
/// proposer). Each run writes them as the next block of one store and commits it: the
/// baseline's store writes through, the plugin's is attached to the plugin's slots. Both
/// grow by a block per run. Removed when dropped.
pub struct CommitInput {
    dir: std::path::PathBuf,
    /// The baseline's store and the plugin's (closed before the directory is removed).
    stores: Option<[dubchain_node::state::StateStore; 2]>,
    writes: Vec<dubchain_plugin_api::exec::AccountEntry>,
    genesis: Vec<(Bytes32, dubchain_node::state::Account)>,
    /// The last height committed to each store (baseline, plugin).
    heights: [std::sync::atomic::AtomicU64; 2],
}

impl CommitInput {
    fn new(seed: u64, txs: usize) -> CommitInput {
        use dubchain_plugin_api::exec::{apply_transfer, AccountState, Overlay, State};

        /// An in-memory state that records every write in order.
        struct Recorder(Overlay, Vec<dubchain_plugin_api::exec::AccountEntry>);
        impl State for Recorder {
            type Error = dubchain_plugin_api::exec::Undeclared;
            fn get(&mut self, a: &Bytes32) -> Result<AccountState, Self::Error> {
                self.0.get(a)
            }
            fn put(&mut self, a: &Bytes32, s: AccountState) -> Result<(), Self::Error> {
                self.1.push(dubchain_plugin_api::exec::AccountEntry {
                    account: *a,
                    state: s,
                });
                self.0.put(a, s)
            }
        }

        let block = workload::transfer_block(seed, 1000, txs, 0.5, false);
        let mut rec = Recorder(Overlay::new(&block.pre), Vec::new());
        for tx in &block.txs {
            let _ = apply_transfer(&mut rec, tx, &block.proposer).expect("declared accounts");
        }
        let genesis = genesis_of(&block);
        let dir = std::env::temp_dir().join(format!(
            "dubchain-bench-commit-{}-{seed}-{txs}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        CommitInput {
            stores: Some([
                scratch_store(&dir.join("through"), &genesis),
                scratch_store(&dir.join("held"), &genesis),
            ]),
            dir,
            writes: rec.1,
            genesis,
            heights: Default::default(),
        }
    }

    fn stores(&self) -> &[dubchain_node::state::StateStore; 2] {
        self.stores.as_ref().expect("open until dropped")
    }

    /// Writes the block as the next block of `side`'s store and commits it.
    fn commit_next(&self, side: Side) {
        let i = match side {
            Side::Baseline => 0,
            Side::Plugin => 1,
        };
        let (store, height) = (&self.stores()[i], &self.heights[i]);
        let height = height.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        write_and_commit(store, height, &self.writes);
    }

    /// Whether the plugin's write path leaves a store exactly as the baseline's does: the
    /// block's writes, then a block of adversarial writes (a new account, an account
    /// written back to its default, the same key written many times), on fresh stores.
    fn identical(&self, host: &Host) -> bool {
        use dubchain_node::state::{Account, StateStore};
        let dir = self.dir.join("identical");
        let _ = std::fs::remove_dir_all(&dir);
        let stores: Vec<StateStore> = ["through", "held"]
            .iter()
            .map(|name| scratch_store(&dir.join(name), &self.genesis))
            .collect();
        stores[1].attach(&host.slots);
        let fresh = Bytes32([0xee; 32]);
        let first = self.genesis[0].0;
        let mut odd: Vec<dubchain_plugin_api::exec::AccountEntry> = (0..50u64)
            .map(|i| dubchain_plugin_api::exec::AccountEntry {
                account: first,
                state: dubchain_plugin_api::exec::AccountState {
                    balance: i,
                    nonce: i,
                },
            })
            .collect();
        odd.push(dubchain_plugin_api::exec::AccountEntry {
            account: fresh,
            state: dubchain_plugin_api::exec::AccountState {
                balance: 5,
                nonce: 0,
            },
        });
        odd.push(dubchain_plugin_api::exec::AccountEntry {
            account: first,
            state: Default::default(),
        });
        for store in &stores {
            write_and_commit(store, 1, &self.writes);
            write_and_commit(store, 2, &odd);
        }
        let view = |s: &StateStore| -> Option<(Vec<(Bytes32, Account)>, Bytes32, Option<Vec<u8>>)> {
            Some((
                s.accounts().ok()?,
                s.state_root().ok()?,
                s.block_bytes(2).ok()?,
            ))
        };
        let same = view(&stores[0]).is_some() && view(&stores[0]) == view(&stores[1]);
        drop(stores);
        let _ = std::fs::remove_dir_all(&dir);
        same
    }
}

/// The genesis accounts of a generated block: its declared accounts' state before it.
fn genesis_of(block: &workload::TransferBlock) -> Vec<(Bytes32, dubchain_node::state::Account)> {
    block
        .pre
        .iter()
        .map(|e| {
            (
                e.account,
                dubchain_node::state::Account {
                    balance: e.state.balance,
                    nonce: e.state.nonce,
                },
            )
        })
        .collect()
}

/// A new store at `dir` holding the genesis block with `genesis`, written on baselines.
pub fn scratch_store(
    dir: &std::path::Path,
    genesis: &[(Bytes32, dubchain_node::state::Account)],
) -> dubchain_node::state::StateStore {
    std::fs::create_dir_all(dir).expect("creating a scratch store");
    let store = dubchain_node::state::StateStore::open(dir).expect("opening a scratch store");
    dubchain_node::block::commit_genesis(&Host::new(Default::default()), &store, genesis)
        .expect("genesis");
    store
}

/// Writes `writes` as block `height` of `store` and commits it (a fixed record, the head).
fn write_and_commit(
    store: &dubchain_node::state::StateStore,
    height: u64,
    writes: &[dubchain_plugin_api::exec::AccountEntry],
) {
    use dubchain_node::state::{Account, Head};
    let mut w = store.begin_block(height);
    for e in writes {
        w.put(
            &e.account,
            Account {
                balance: e.state.balance,
                nonce: e.state.nonce,
            },
        )
        .expect("the benchmark store writes");
    }
    let head = Head {
        height,
        hash: Bytes32([height as u8; 32]),
        state_root: Bytes32::default(),
    };
    w.commit(&[7; 256], head)
        .expect("the benchmark store commits");
}

impl Drop for CommitInput {
    fn drop(&mut self) {
        drop(self.stores.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
