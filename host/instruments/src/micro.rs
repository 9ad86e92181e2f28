//! Microbenchmarks per slot: each enabled plugin, alone (with only what it depends on), on
//! its slot's workload against the baseline, interleaved in one process.
//!
//! A slot's workloads are listed by [`cases`]: the host's node-free ones
//! (`dubchain_host::cases`, shared with `plugin verify` and plugins' own benches) and the
//! ones here that need a RocksDB store. The one marked `contract` is the workload a
//! manifest's `[contract] min_speedup` promises a speed-up on, so its ratio is judged
//! against the promise (met when the whole 95% interval is at or above it). Before any
//! timing, the plugin's answers on the workload (and on adversarial inputs) are compared
//! with the baseline's: a fast wrong answer is reported as such, not as a speed-up.

use std::{collections::BTreeSet, hint::black_box};

use dubchain_plugin_api::{
    slots::{SlotInfo, ACCOUNT_READ, BLOCK_COMMIT, BLOCK_EXECUTION, CONTRACT_STATE},
    types::Bytes32,
};

pub use dubchain_host::cases::{Case, MicroOptions, Side};
use dubchain_host::{
    cases as pure,
    measure::compare_with_reset,
    resolve::{resolve, Request, Source},
    session::{host_api_version, Session},
    workload, Host,
};

use crate::{ExtraFigure, MicroResult};

/// The workloads of one slot that need a RocksDB store: its cases, and their inputs.
pub struct StoreCases {
    pub slot: SlotInfo,
    pub cases: fn(&MicroOptions) -> Vec<Case>,
    pub input: fn(&Case, &MicroOptions) -> Input,
}

/// The workloads that need a RocksDB store, one row per slot (every other slot's are the
/// host's, [`pure::CASES`]).
pub const STORE_CASES: &[StoreCases] = &[
    StoreCases {
        slot: BLOCK_EXECUTION,
        cases: block_execution_cases,
        input: |case, o| {
            let conflict = if case.name == "block_execution_hot" {
                0.5
            } else {
                0.05
            };
            Input::Store(Box::new(StoreInput::new(o.seed, o.block_txs, conflict)))
        },
    },
    StoreCases {
        slot: BLOCK_COMMIT,
        cases: block_commit_cases,
        input: |_, o| Input::Commit(Box::new(CommitInput::new(o.seed, o.block_txs))),
    },
    StoreCases {
        slot: ACCOUNT_READ,
        cases: account_read_cases,
        input: |_, o| Input::Reads(Box::new(ReadInput::new(o.seed, o.reads))),
    },
    StoreCases {
        slot: CONTRACT_STATE,
        cases: contract_state_cases,
        input: |_, o| Input::StorageReads(Box::new(StorageReadInput::new(o.seed, o.reads))),
    },
];

fn store_cases(slot: &str) -> Option<&'static StoreCases> {
    STORE_CASES.iter().find(|c| c.slot.id == slot)
}

/// The workloads of `slot`; empty for a slot the suite has no workload for yet.
pub fn cases(slot: &str, o: &MicroOptions) -> Vec<Case> {
    match store_cases(slot) {
        Some(c) => (c.cases)(o),
        None => pure::cases(slot, o),
    }
}

/// The inputs of a case, generated once (deterministically from the seed).
pub enum Input {
    /// A store holding the state before a block, the block, and slots without providers
    /// (whose `exec.block_execution` is the node's baseline).
    Store(Box<StoreInput>),
    /// Two stores at the same state, one written through and one attached to the host's
    /// slots, and the writes of a block (for `storage.block_commit`).
    Commit(Box<CommitInput>),
    /// Two stores at the same state, one read by the host and one attached to the host's
    /// slots, and the accounts to read (for `storage.account_read`).
    Reads(Box<ReadInput>),
    /// A store holding a contract's storage, and the keys its calls read (for
    /// `vm.contract_state`).
    StorageReads(Box<StorageReadInput>),
    /// A node-free case's inputs.
    Pure(pure::Input),
}

impl Input {
    pub fn new(case: &Case, o: &MicroOptions) -> Input {
        match store_cases(case.slot) {
            Some(c) => (c.input)(case, o),
            None => Input::Pure(pure::Input::new(case, o)),
        }
    }

    /// Completes the input for `host` (the plugin's own encoding, to decode; the store the
    /// plugin writes to).
    pub fn for_host(self, host: &Host) -> Input {
        match self {
            Input::Pure(p) => Input::Pure(p.for_host(host)),
            Input::Commit(c) => {
                c.stores()[1].attach(&host.slots);
                Input::Commit(c)
            }
            Input::Reads(r) => {
                r.stores()[1].attach(&host.slots);
                Input::Reads(r)
            }
            store => store,
        }
    }
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

fn account_read_cases(o: &MicroOptions) -> Vec<Case> {
    vec![Case {
        name: "account_read",
        slot: ACCOUNT_READ.id,
        workload: format!(
            "{} Zipfian reads of 1,000 accounts on RocksDB, one at a time as the node reads (a cache empty at the start of every run)",
            o.reads
        ),
        contract: true,
    }]
}

fn contract_state_cases(o: &MicroOptions) -> Vec<Case> {
    vec![Case {
        name: "contract_reads",
        slot: CONTRACT_STATE.id,
        workload: format!(
            "{} Zipfian storage reads of a contract's 1,000 keys on RocksDB, one at a time as its calls read them (a cache empty at the start of every run)",
            o.reads
        ),
        contract: true,
    }]
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
    if let Input::StorageReads(r) = input {
        let store = r.store();
        let below = dubchain_plugin_api::slots::HostFn(|c: &Bytes32, k: i64| {
            store
                .storage(c, k)
                .map_err(|e| dubchain_plugin_api::PluginError::failed(e.to_string()))
        });
        for &key in &r.keys {
            let read = || {
                store
                    .storage(&r.contract, key)
                    .expect("the scratch store reads")
            };
            black_box(match side {
                Side::Baseline => read(),
                Side::Plugin => host
                    .slots
                    .contract_state
                    .get(store.id(), &r.contract, key, below.as_store())
                    .unwrap_or_else(read),
            });
        }
        // An empty block rolled back: the store takes a new identity, so the next run
        // starts with nothing cached of it.
        return Pending::Block(store.begin_block(1));
    }
    if let Input::Reads(r) = input {
        let store = &r.stores()[usize::from(side == Side::Plugin)];
        for a in &r.reads {
            black_box(store.account(a).expect("the scratch store reads"));
        }
        // An empty block rolled back: the store takes a new identity, so the next run
        // starts with nothing cached of it.
        return Pending::Block(store.begin_block(1));
    }
    if let Input::Store(s) = input {
        let slots = match side {
            Side::Baseline => &s.no_plugins,
            Side::Plugin => &host.slots,
        };
        let store = &*s.store;
        let mut w = store.begin_block(1);
        black_box(
            dubchain_node::execute::execute_block(slots, &mut w, &s.block.txs, &s.block.proposer)
                .expect("the benchmark store works"),
        );
        return Pending::Block(w);
    }
    if let Input::Pure(p) = input {
        pure::run(case, side, host, p);
    }
    Pending::Nothing
}

/// Whether `host` answers `case` exactly as the baseline does, on the workload and on
/// adversarial inputs too.
pub fn identical(case: &Case, host: &Host, input: &Input, o: &MicroOptions) -> bool {
    match input {
        Input::Commit(c) => c.identical(host),
        Input::Reads(r) => r.identical(),
        Input::StorageReads(r) => r.identical(host),
        Input::Store(_) => {
            // Differential on generated and adversarial blocks, plugin against the pure
            // baseline; the write path itself is checked by the node's tests.
            (0..4).all(|i| {
                let b = workload::transfer_block(o.seed ^ (0xb10c + i), 200, 300, 0.3, true);
                host.slots
                    .block_execution
                    .execute_in_memory(&b.pre, &b.txs, &b.proposer)
                    .is_some_and(|got| {
                        got == dubchain_host::baseline::execute_block(&b.pre, &b.txs, &b.proposer)
                    })
            })
        }
        Input::Pure(p) => pure::identical(case, host, p, o),
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
    s.loaded_host_with(&alone(s, plugin)?, false)
}

/// The resolution that enables `plugin` and what it depends on, nothing else.
pub(crate) fn alone(
    s: &Session, plugin: &str,
) -> Result<dubchain_host::resolve::Resolution, String> {
    with_closure(s, [plugin.to_owned()].into())
}

/// The session's enabled providers of the slots `plugin` calls through host services (its
/// manifest's `[[uses]]`), bottom to top; empty when none is enabled.
fn used_stack(s: &Session, plugin: &str) -> Vec<String> {
    let Some(m) = s.manifest(plugin) else {
        return Vec::new();
    };
    m.uses
        .iter()
        .flat_map(|u| s.resolution.stacks.get(&u.slot).into_iter().flatten())
        .filter(|p| *p != plugin)
        .cloned()
        .collect()
}

/// A host with `plugin` over the session's providers of the slots it uses (and what they
/// all depend on), nothing else: an `over.` row.
fn over_host(s: &Session, plugin: &str) -> Result<Host, String> {
    let mut names: BTreeSet<String> = used_stack(s, plugin).into_iter().collect();
    names.insert(plugin.to_owned());
    s.loaded_host_with(&with_closure(s, names)?, false)
}

/// The host a planned row (`id`, `label` from [`plan`]) runs on: `None` for a `stack.` row
/// (the caller's host with the whole configured set), the plugin over the providers of the
/// slots it uses for an `over.` row, the plugin alone for any other.
pub fn row_host(s: &Session, id: &str, label: &str) -> Result<Option<Host>, String> {
    if id.starts_with("stack.") {
        return Ok(None);
    }
    match label.split_once(" over ") {
        Some((plugin, _)) if id.starts_with("over.") => over_host(s, plugin).map(Some),
        _ => isolated_host(s, label).map(Some),
    }
}

/// The resolution that enables `names` and what they depend on, nothing else.
fn with_closure(
    s: &Session, names: BTreeSet<String>,
) -> Result<dubchain_host::resolve::Resolution, String> {
    let mut closure = names.clone();
    let mut todo: Vec<String> = names.into_iter().collect();
    while let Some(name) = todo.pop() {
        let m = s.manifest(&name).ok_or_else(|| {
            format!(
                "no plugin `{name}` in {}{}",
                s.options.plugin_dir.display(),
                s.did_you_mean(&name)
            )
        })?;
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
    Ok(resolve(&s.manifests, &requests, &host_api_version()))
}

/// `bench --isolation`: each enabled plugin whose slots can all be isolated
/// (`dubchain_host::isolate::ISOLATABLE`), measured again with the plugin loaded in a child
/// process, as `isolated.<plugin>.<case>`. Against its `<plugin>.<case>` row, the
/// difference of the plugin times is what isolation costs per call (a copy of the batch
/// each way and a JSON round trip over a pipe).
pub fn run_isolated(
    s: &Session, o: &MicroOptions, mut progress: impl FnMut(usize, usize, &str),
) -> Result<Vec<MicroResult>, String> {
    let isolatable = |plugin: &str| {
        s.manifest(plugin).is_some_and(|m| {
            m.provides
                .iter()
                .all(|p| dubchain_host::isolate::ISOLATABLE.contains(&p.slot.as_str()))
        })
    };
    let plan: Vec<_> = plan(s, o)
        .into_iter()
        .filter(|(id, label, _, _)| {
            !id.starts_with("stack.") && !id.starts_with("over.") && isolatable(label)
        })
        .collect();
    let mut results = Vec::new();
    for (i, (id, label, case, _)) in plan.iter().enumerate() {
        let id = format!("isolated.{id}");
        progress(i, plan.len(), &id);
        let host = s.apply_to(
            s.host_isolating([label.clone()].into()),
            &alone(s, label)?,
            false,
        )?;
        let label = format!("{label} (in a child process)");
        let mut row = measure_case(&id, &label, case, &host, None, None, o);
        // The plugin allocates in the child, which this process's counters do not see.
        row.allocations = None;
        results.push(row);
    }
    progress(plan.len(), plan.len(), "");
    Ok(results)
}

/// A planned row: `(id, plugin label, case, promise)`.
pub type Planned = (String, String, Case, Option<f64>);

/// What the suite will measure for the session's enabled plugins: their rows
/// ([`plugin_rows`]), and for a layered slot with several enabled providers the whole
/// stack, as `stack.<slot>.<case>`.
pub fn plan(s: &Session, o: &MicroOptions) -> Vec<Planned> {
    let enabled: Vec<String> = s.resolution.enabled().map(str::to_owned).collect();
    let mut out = plugin_rows(s, &enabled, o);
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

/// The plugins in the directory that the session leaves off, in name order.
fn off(s: &Session) -> Vec<String> {
    s.resolution
        .decisions
        .iter()
        .filter(|(_, d)| !d.enabled)
        .map(|(name, _)| name.clone())
        .collect()
}

/// The rows of the plugins `names`: each alone on each case of each slot it provides
/// (`<plugin>.<case>`, with the manifest's promise on its contract case), then each that
/// calls other slots through host services over the session's providers of those slots
/// (`over.<plugin>.<case>`). Such a plugin's cases hand every run inputs never seen before
/// (a catch-up run, an admission batch), so a cache layer among them is as cold as the
/// node would find it.
fn plugin_rows(s: &Session, names: &[String], o: &MicroOptions) -> Vec<Planned> {
    let mut out = Vec::new();
    for name in names {
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
    for name in names {
        let stack = used_stack(s, name);
        let Some(m) = s.manifest(name).filter(|_| !stack.is_empty()) else {
            continue;
        };
        for p in &m.provides {
            for case in cases(&p.slot, o) {
                out.push((
                    format!("over.{name}.{}", case.name),
                    format!("{name} over {}", stack.join(" > ")),
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
    s: &Session, full: &Host, o: &MicroOptions, progress: impl FnMut(usize, usize, &str),
) -> Result<Vec<MicroResult>, String> {
    run_except(s, full, o, &[], progress)
}

/// Like [`run`], leaving out the cases of the plugins in `missing` (plugins that failed to
/// load, when the caller goes on without them).
pub fn run_except(
    s: &Session, full: &Host, o: &MicroOptions, missing: &[String],
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<Vec<MicroResult>, String> {
    let plan: Vec<_> = plan(s, o)
        .into_iter()
        .filter(|(_, label, _, _)| !missing.iter().any(|m| names_plugin(label, m)))
        .collect();
    let mut results = Vec::new();
    for (i, (id, label, case, promise)) in plan.iter().enumerate() {
        progress(i, plan.len(), id);
        let own = row_host(s, id, label)?;
        let host = own.as_ref().unwrap_or(full);
        results.push(measure_planned(id, label, case, host, *promise, o));
    }
    results.extend(controls(plan.iter().map(|(_, _, case, _)| case), &[], o));
    progress(plan.len(), plan.len(), "");
    Ok(results)
}

/// The plugins the session leaves off ([`off`]), measured as [`run`] measures the enabled
/// ones: each alone, and over the session's providers of the slots it calls. These rows are
/// not part of any chain run; they give every plugin in the directory a figure. A plugin
/// whose host does not load is not measured further: `(its name, the load error)` in the
/// second list. Their slots' controls come after them, those not among `measured` already.
pub fn run_off(
    s: &Session, o: &MicroOptions, measured: &[MicroResult],
) -> (Vec<MicroResult>, Vec<(String, String)>) {
    let mut planned = Vec::new();
    let mut results = Vec::new();
    let mut unloaded = Vec::new();
    for name in off(s) {
        let rows = plugin_rows(s, std::slice::from_ref(&name), o);
        for (id, label, case, promise) in &rows {
            match row_host(s, id, label) {
                Ok(host) => results
                    .extend(host.map(|host| measure_planned(id, label, case, &host, *promise, o))),
                Err(e) => {
                    unloaded.push((name.clone(), e));
                    break;
                }
            }
        }
        planned.extend(rows);
    }
    results.extend(controls(
        planned.iter().map(|(_, _, case, _)| case),
        measured,
        o,
    ));
    (results, unloaded)
}

/// Whether a row's plugin label (`a`, `a over b > c`, `a > b`) names plugin `name`.
fn names_plugin(label: &str, name: &str) -> bool {
    label
        .split(" over ")
        .flat_map(|part| part.split(" > "))
        .any(|l| l == name)
}

/// A planned row measured on `host`, judged against the catalogue goal where it is a
/// plugin's own row (not a stack's, nor one over other providers).
fn measure_planned(
    id: &str, label: &str, case: &Case, host: &Host, promise: Option<f64>, o: &MicroOptions,
) -> MicroResult {
    let goal = if id.starts_with("stack.") || id.starts_with("over.") {
        None
    } else {
        dubchain_host::catalogue::goal_for(label, case.name)
    };
    measure_case(id, label, case, host, promise, goal, o)
}

/// Controls: on the slots whose speed-up must be the plugin's own code, a provider that
/// forwards to the baseline through the same primitives, measured the same way. It must
/// come out at about 1x; if it did not, the speed-up would be in the host. One row per
/// case of `cases` whose slot has a forwarding provider and that has no row in `measured`.
fn controls<'a>(
    cases: impl Iterator<Item = &'a Case>, measured: &[MicroResult], o: &MicroOptions,
) -> Vec<MicroResult> {
    let mut controlled = BTreeSet::new();
    let mut results = Vec::new();
    for case in cases {
        let id = format!("control.{}.{}", case.slot, case.name);
        if controlled.insert(case.name) && !measured.iter().any(|m| m.id == id) {
            if let Some(host) = dubchain_host::reference::forwarding_host(case.slot) {
                let label = "forwarding to the baseline (control)".to_owned();
                results.push(measure_case(&id, &label, case, &host, None, None, o));
            }
        }
    }
    results
}

/// One case on `host`, interleaved with the baseline, after its answers are compared (what
/// every micro row, control row and `plugin verify`'s store ratios are).
pub fn measure_case(
    id: &str, label: &str, case: &Case, host: &Host, promise: Option<f64>, goal: Option<f64>,
    o: &MicroOptions,
) -> MicroResult {
    let input = Input::new(case, o).for_host(host);
    let same = identical(case, host, &input, o);
    let pending = std::cell::RefCell::new(Pending::Nothing);
    let rounds = pure::rounds_for(case, o);
    let mut c = compare_with_reset(
        id,
        rounds,
        || *pending.borrow_mut() = run_once(case, Side::Baseline, host, &input),
        || *pending.borrow_mut() = run_once(case, Side::Plugin, host, &input),
        || pending.replace(Pending::Nothing).undo(),
    );
    if let Input::Pure(pure::Input::SlowPeer(sp)) = &input {
        // The figure is each run's p99 consensus latency, not the run's length (which is
        // the push schedule's plus the last frame's wait).
        let timed = |side: usize| -> Vec<f64> {
            let p99 = sp.p99_s[side].lock().unwrap_or_else(|p| p.into_inner());
            // The first run of each side is its warm-up.
            p99.iter().skip(1).take(c.rounds).copied().collect()
        };
        let (b, p) = (timed(0), timed(1));
        let ratios: Vec<f64> = b.iter().zip(&p).map(|(b, p)| b / p.max(1e-12)).collect();
        c.ratio = dubchain_host::measure::bootstrap_median(&ratios, 2_000, 0x5eed);
        c.rounds = ratios.len();
        (c.baseline_s, c.optimized_s) = (b, p);
    }
    // Untimed: one more run of each side with counting on, undone as a timed run is.
    let allocations = dubchain_host::alloc_count::installed().then(|| {
        [Side::Baseline, Side::Plugin].map(|side| {
            let before = dubchain_host::alloc_count::snapshot();
            let counting = dubchain_host::alloc_count::counting();
            *pending.borrow_mut() = run_once(case, side, host, &input);
            drop(counting);
            let n = dubchain_host::alloc_count::snapshot()
                .since(&before)
                .allocations;
            pending.replace(Pending::Nothing).undo();
            n
        })
    });
    MicroResult {
        id: id.to_owned(),
        plugin: label.to_owned(),
        slot: case.slot.to_owned(),
        workload: case.workload.clone(),
        rounds: c.rounds,
        processes: 1,
        met: promise.map(|p| c.ratio.low >= p),
        goal,
        promise,
        ratio: c.ratio,
        baseline_s: c.baseline_s,
        plugin_s: c.optimized_s,
        identical: same,
        allocations,
        extra: extra_figure(&input),
    }
}

/// The case's own figure besides time, where it has one (see [`ExtraFigure`]).
fn extra_figure(input: &Input) -> Option<ExtraFigure> {
    let most = |v: &[std::sync::atomic::AtomicU64; 2]| {
        v.each_ref()
            .map(|n| n.load(std::sync::atomic::Ordering::Relaxed))
    };
    match input {
        Input::Pure(pure::Input::Transport(t)) => Some(ExtraFigure {
            name: "threads in the process".into(),
            values: most(&t.threads),
        }),
        Input::Pure(pure::Input::SlowPeer(sp)) => Some(ExtraFigure {
            name: "frames queued at most".into(),
            values: most(&sp.peak_frames),
        }),
        _ => None,
    }
}

/// What a case opened in a scratch directory of its own (RocksDB stores): closed, then the
/// directory removed, when dropped.
struct Scratch<T> {
    dir: std::path::PathBuf,
    open: Option<T>,
}

impl<T> Scratch<T> {
    /// `open` in a fresh directory `dubchain-bench-{name}-{pid}` under the system's
    /// temporary directory (anything an earlier run left there is removed first).
    fn new(name: String, open: impl FnOnce(&std::path::Path) -> T) -> Scratch<T> {
        let dir =
            std::env::temp_dir().join(format!("dubchain-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let open = Some(open(&dir));
        Scratch { dir, open }
    }
}

impl<T> std::ops::Deref for Scratch<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.open.as_ref().expect("open until dropped")
    }
}

impl<T> Drop for Scratch<T> {
    fn drop(&mut self) {
        drop(self.open.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A scratch RocksDB store with the state before a generated block (for
/// `exec.block_execution`), removed when dropped.
pub struct StoreInput {
    store: Scratch<dubchain_node::state::StateStore>,
    block: workload::TransferBlock,
    no_plugins: dubchain_host::slot::Slots,
}

impl StoreInput {
    fn new(seed: u64, txs: usize, conflict: f64) -> StoreInput {
        let block = workload::transfer_block(seed, 1000, txs, conflict, false);
        let store = Scratch::new(format!("store-{seed}-{txs}-{conflict}"), |dir| {
            scratch_store(dir, &genesis_of(&block))
        });
        StoreInput {
            store,
            block,
            no_plugins: dubchain_host::slot::Slots::default(),
        }
    }
}

/// Two scratch RocksDB stores at the same genesis of 1,000 accounts, and Zipfian reads of
/// them: the baseline's store is read by the host (RocksDB and a JSON record every read),
/// the plugin's is attached to the plugin's slots (every read goes through the provider
/// with that store below). Removed when dropped.
pub struct ReadInput {
    /// The baseline's store and the plugin's.
    stores: Scratch<[dubchain_node::state::StateStore; 2]>,
    genesis: Vec<(Bytes32, dubchain_node::state::Account)>,
    reads: Vec<Bytes32>,
}

impl ReadInput {
    fn new(seed: u64, reads: usize) -> ReadInput {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed ^ 0x4ead);
        let genesis: Vec<(Bytes32, dubchain_node::state::Account)> = (0..1_000u64)
            .map(|i| {
                (
                    Bytes32(rng.gen()),
                    dubchain_node::state::Account {
                        balance: 1_000 * (i + 1),
                        nonce: i,
                    },
                )
            })
            .collect();
        let reads = (0..reads)
            .map(|_| {
                let u: f64 = rng.gen();
                genesis[(u.powf(4.0) * genesis.len() as f64) as usize % genesis.len()].0
            })
            .collect();
        let stores = Scratch::new(format!("reads-{seed}"), |dir| {
            [
                scratch_store(&dir.join("baseline"), &genesis),
                scratch_store(&dir.join("plugin"), &genesis),
            ]
        });
        ReadInput {
            stores,
            genesis,
            reads,
        }
    }

    fn stores(&self) -> &[dubchain_node::state::StateStore; 2] {
        &self.stores
    }

    /// Every genesis account, and some never written, reads the same from both stores.
    fn identical(&self) -> bool {
        let absent = (0..16u8).map(|i| Bytes32([i; 32]));
        self.genesis
            .iter()
            .map(|(a, _)| *a)
            .chain(absent)
            .all(|a| self.stores()[0].account(&a).ok() == self.stores()[1].account(&a).ok())
    }
}

/// A scratch RocksDB store whose block 1 wrote 1,000 storage keys of one contract, and a
/// Zipfian sequence of reads of them (and of keys never written). Removed when dropped.
pub struct StorageReadInput {
    store: Scratch<dubchain_node::state::StateStore>,
    contract: Bytes32,
    /// Key `k` holds `values[k]`.
    values: Vec<i64>,
    keys: Vec<i64>,
}

impl StorageReadInput {
    fn new(seed: u64, reads: usize) -> StorageReadInput {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed ^ 0x57a7);
        let values: Vec<i64> = (0..1_000).map(|_| rng.gen_range(1..i64::MAX)).collect();
        let keys = (0..reads)
            .map(|_| {
                let u: f64 = rng.gen();
                // One read in fifty is of a key never written (0).
                if rng.gen_range(0..50) == 0 {
                    -1 - rng.gen_range(0..100)
                } else {
                    (u.powf(4.0) * values.len() as f64) as i64 % values.len() as i64
                }
            })
            .collect();
        let store = Scratch::new(format!("storage-{seed}"), |dir| scratch_store(dir, &[]));
        let contract = Bytes32(rng.gen());
        let mut w = store.begin_block(1);
        for (k, v) in values.iter().enumerate() {
            w.put_storage(&contract, k as i64, *v)
                .expect("the benchmark store writes");
        }
        let head = dubchain_node::state::Head {
            height: 1,
            hash: Bytes32([1; 32]),
            state_root: Bytes32::default(),
        };
        w.commit(&[7; 256], dubchain_host::slot::JSON_CODEC, head)
            .expect("the benchmark store commits");
        StorageReadInput {
            store,
            contract,
            values,
            keys,
        }
    }

    fn store(&self) -> &dubchain_node::state::StateStore {
        &self.store
    }

    /// Every key, written or not, read twice through the slot, then after writes the
    /// provider is told of: the store's values each time.
    fn identical(&self, host: &Host) -> bool {
        use dubchain_plugin_api::slots::{ContractWrite, HostFn};
        let store = self.store();
        let id = store.id();
        let mut values: std::collections::HashMap<i64, i64> =
            (0..).zip(self.values.iter().copied()).collect();
        let below = |values: &std::collections::HashMap<i64, i64>, k: i64| {
            values.get(&k).copied().unwrap_or(0)
        };
        let read_all = |values: &std::collections::HashMap<i64, i64>| {
            let source = HostFn(|_: &Bytes32, k: i64| Ok(below(values, k)));
            (-5..1_005).all(|k| {
                (0..2).all(|_| {
                    host.slots
                        .contract_state
                        .get(id, &self.contract, k, source.as_store())
                        == Some(below(values, k))
                })
            })
        };
        let first = read_all(&values);
        let writes = ContractWrite::of(self.contract, &[(3, 0), (7, -9), (2_000, 5)]);
        for w in &writes {
            values.insert(w.key, w.value);
        }
        host.slots.contract_state.written(id, &writes);
        let after = read_all(&values);
        host.slots.contract_state.reset(id);
        first && after && store.storage(&self.contract, 5).ok() == Some(self.values[5])
    }
}

/// Two scratch RocksDB stores at the same genesis, and the account writes a generated block
/// of transfers makes, in execution order (three per transfer: sender, recipient,
/// proposer). Each run writes them as the next block of one store and commits it: the
/// baseline's store writes through, the plugin's is attached to the plugin's slots. Both
/// grow by a block per run. Removed when dropped.
pub struct CommitInput {
    /// The baseline's store and the plugin's.
    stores: Scratch<[dubchain_node::state::StateStore; 2]>,
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
        CommitInput {
            stores: Scratch::new(format!("commit-{seed}-{txs}"), |dir| {
                [
                    scratch_store(&dir.join("through"), &genesis),
                    scratch_store(&dir.join("held"), &genesis),
                ]
            }),
            writes: rec.1,
            genesis,
            heights: Default::default(),
        }
    }

    fn stores(&self) -> &[dubchain_node::state::StateStore; 2] {
        &self.stores
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
        let dir = self.stores.dir.join("identical");
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
    dir: &std::path::Path, genesis: &[(Bytes32, dubchain_node::state::Account)],
) -> dubchain_node::state::StateStore {
    std::fs::create_dir_all(dir).expect("creating a scratch store");
    let store = dubchain_node::state::StateStore::open(dir).expect("opening a scratch store");
    dubchain_node::block::commit_genesis(&Host::new(Default::default()), &store, genesis)
        .expect("genesis");
    store
}

/// Writes `writes` as block `height` of `store` and commits it (a fixed record, the head).
fn write_and_commit(
    store: &dubchain_node::state::StateStore, height: u64,
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
    w.commit(&[7; 256], dubchain_host::slot::JSON_CODEC, head)
        .expect("the benchmark store commits");
}
