//! Slots: where the host calls an optimization, with its baseline underneath.
//!
//! A slot holds a stack of providers behind an [`ArcSwap`]. A call loads the current stack
//! (one atomic load), and the stack it loaded stays alive until the call returns, so a swap
//! never pulls an implementation out from under a call in flight. Installing a new stack is
//! one atomic store; the old stack is dropped by whichever call finishes with it last.
//!
//! Every call is answered: when a provider errors, panics (caught on the plugin side), or
//! returns the wrong number of answers, the layer below answers instead, down to the
//! baseline. A [`Breaker`] per provider stops calling a provider after repeated failures and
//! probes it again after a backoff.

use std::{
    sync::{
        atomic::{
            AtomicBool, AtomicU32, AtomicU64,
            Ordering::{Relaxed, Release},
        },
        Arc,
    },
    time::{Duration, Instant},
};

use abi_stable::std_types::{RSlice, RVec};
use arc_swap::ArcSwap;
use dubchain_plugin_api::slots::{
    check_len, BroadcastBox, ConnectionsBox, HostLeaves, InboundSinkBox, PeerSocket, SendQueueBox,
    SendQueuesBox, SharedFrame, TransportBox,
};
use dubchain_plugin_api::{
    exec::{AccountEntry, AccountState},
    slots::{
        AccountReadBox, BlockCheck, BlockCommitBox, BlockExecutionBox, BlockReclaimBox,
        BlockValidationBox, BlockWritesBox, BufferPoolBox, CallRequest, CallResult, CodeLoaderBox,
        CodeSourceRef, ContractStateBox, ContractStoreRef, ContractWrite, DurabilityBox,
        FrameSendBox, FrameSink, FrameSink_TO, HostAccounts, HostWal, LoadedCode, LowerFn,
        MerkleBox, Metered, MeteringBox, ModuleCacheBox, RecordCodecBox, SigVerifyBox,
        StateRootBox, TxCheck, TxDecodeBox, TxIndexBox, TxPoolBox, TxValidationBox, VoteTalliesBox,
        VoteTallyBox, VoteVerifyBox,
    },
    state_tree::{self, LeafChange, StateLeaf},
    types::{Block, Bytes32, Record, SigItem, Transaction, VoteItem},
    PluginError,
};
use serde::Serialize;

use crate::{
    baseline,
    count::Count,
    latency::Latency,
    shadow::{Call, Shadow},
};

/// Circuit-breaker settings, shared by all providers of a host (`[host.breaker]`; a key
/// left out keeps its default).
#[derive(Debug, Clone, Copy, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    #[serde(deserialize_with = "crate::config::positive")]
    pub failure_threshold: u32,
    /// First wait before a probe call, in milliseconds; doubles after each failed probe.
    #[serde(deserialize_with = "crate::config::positive")]
    pub backoff_ms: u64,
    /// Longest wait between probes, in milliseconds.
    pub max_backoff_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 3,
            backoff_ms: 1_000,
            max_backoff_ms: 60_000,
        }
    }
}

/// Per-provider circuit breaker: closed (calls go to the plugin), open (calls go to the
/// layer below until `open_until`), half-open (one probe call is let through).
pub struct Breaker {
    config: BreakerConfig,
    epoch: Instant,
    consecutive_failures: AtomicU32,
    /// Nanoseconds since `epoch` until which the breaker is open; 0 when closed.
    open_until: AtomicU64,
    backoff_ms: AtomicU64,
    probing: AtomicBool,
    /// Set by a shadow check that found a wrong answer: open for good (the provider comes
    /// back only as a newly loaded one).
    demoted: AtomicBool,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Breaker {
            config,
            epoch: Instant::now(),
            consecutive_failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            backoff_ms: AtomicU64::new(config.backoff_ms),
            probing: AtomicBool::new(false),
            demoted: AtomicBool::new(false),
        }
    }

    /// Opens the breaker for good: no call and no probe goes to the provider again.
    pub fn demote(&self) {
        self.demoted.store(true, Relaxed);
        self.open_until.store(u64::MAX, Relaxed);
    }

    pub fn is_demoted(&self) -> bool {
        self.demoted.load(Relaxed)
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether this call may go to the provider.
    pub fn admit(&self) -> bool {
        let until = self.open_until.load(Relaxed);
        if until == 0 {
            return true;
        }
        !self.demoted.load(Relaxed)
            && self.now() >= until
            && self
                .probing
                .compare_exchange(false, true, Relaxed, Relaxed)
                .is_ok()
    }

    pub fn is_open(&self) -> bool {
        self.open_until.load(Relaxed) != 0
    }

    pub fn record_success(&self) {
        // Loads first: on the hot path nothing changes, and a store would take the cache
        // line from every other thread calling the provider.
        if self.consecutive_failures.load(Relaxed) != 0 {
            self.consecutive_failures.store(0, Relaxed);
        }
        if self.open_until.load(Relaxed) != 0 && !self.demoted.load(Relaxed) {
            self.open_until.store(0, Relaxed);
            self.backoff_ms.store(self.config.backoff_ms, Relaxed);
            tracing::info!("circuit breaker closed after a successful probe");
        }
        if self.probing.load(Relaxed) {
            self.probing.store(false, Relaxed);
        }
    }

    pub fn record_failure(&self) {
        let was_probe = self.probing.swap(false, Relaxed);
        let failures = self.consecutive_failures.fetch_add(1, Relaxed) + 1;
        if was_probe || failures >= self.config.failure_threshold {
            let backoff = if was_probe {
                let doubled = self
                    .backoff_ms
                    .load(Relaxed)
                    .saturating_mul(2)
                    .min(self.config.max_backoff_ms);
                self.backoff_ms.store(doubled, Relaxed);
                doubled
            } else {
                self.backoff_ms.load(Relaxed)
            };
            let wait = u64::try_from(Duration::from_millis(backoff).as_nanos()).unwrap_or(u64::MAX);
            let until = self.now().saturating_add(wait);
            self.open_until.store(until.max(1), Relaxed);
        }
    }
}

/// Counters of one provider or slot, bumped on every call without a locked instruction
/// ([`Count`]).
#[derive(Default)]
pub struct Counters {
    pub calls: Count,
    pub errors: Count,
    /// Of the errors, the panics caught at the boundary.
    pub panics: Count,
    pub fallbacks: Count,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CounterSnapshot {
    pub calls: u64,
    pub errors: u64,
    pub panics: u64,
    pub fallbacks: u64,
}

impl Counters {
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            calls: self.calls.get(),
            errors: self.errors.get(),
            panics: self.panics.get(),
            fallbacks: self.fallbacks.get(),
        }
    }
}

/// One plugin's implementation of one slot, as installed.
pub struct Provider<I> {
    pub plugin: String,
    pub version: String,
    /// Load generation of the library this object came from.
    pub generation: u64,
    pub imp: I,
    pub breaker: Breaker,
    pub counters: Counters,
    /// The durations of a sample of its calls ([`Latency`]).
    pub latency: Latency,
    /// The message of the most recent failed call.
    pub last_error: std::sync::Mutex<Option<String>>,
}

impl<I> Provider<I> {
    pub fn new(
        plugin: String, version: String, generation: u64, imp: I, breaker: BreakerConfig,
    ) -> Self {
        Provider {
            plugin,
            version,
            generation,
            imp,
            breaker: Breaker::new(breaker),
            counters: Counters::default(),
            latency: Latency::default(),
            last_error: std::sync::Mutex::new(None),
        }
    }

    /// The message of the most recent failed call, if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn label(&self) -> String {
        format!("{}@{}#{}", self.plugin, self.version, self.generation)
    }

    /// Runs `call` against this provider if its breaker admits it, recording the outcome.
    /// `None` means the caller must answer from the layer below.
    fn attempt<T>(
        &self, slot: &Counters, slot_id: &str, call: impl FnOnce(&I) -> Result<T, PluginError>,
    ) -> Option<T> {
        self.attempt_settling(slot, slot_id, call, true)
    }

    /// [`Provider::attempt`]; a success closes the breaker only if `settle` (a call that
    /// makes an object is settled by the object's own calls instead).
    fn attempt_settling<T>(
        &self, slot: &Counters, slot_id: &str, call: impl FnOnce(&I) -> Result<T, PluginError>,
        settle: bool,
    ) -> Option<T> {
        if !self.breaker.admit() {
            self.counters.fallbacks.bump();
            slot.fallbacks.bump();
            return None;
        }
        self.counters.calls.bump();
        let timer = crate::latency::sample().then(Instant::now);
        let answer = call(&self.imp);
        if let Some(t) = timer {
            self.latency.record(t.elapsed());
        }
        match answer {
            Ok(v) => {
                if settle {
                    self.breaker.record_success();
                }
                Some(v)
            }
            Err(e) => {
                self.counters.errors.bump();
                if e.kind == dubchain_plugin_api::ErrorKind::Panicked {
                    self.counters.panics.bump();
                    slot.panics.bump();
                }
                self.counters.fallbacks.bump();
                slot.errors.bump();
                slot.fallbacks.bump();
                self.breaker.record_failure();
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                tracing::warn!(slot = slot_id, plugin = %self.label(), error = %e, "plugin call failed; answered by the layer below");
                None
            }
        }
    }
}

/// One installed provider of a slot, as the monitor shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderStatus {
    pub plugin: String,
    pub version: String,
    pub generation: u64,
    pub breaker_open: bool,
    /// Taken out for good by a shadow check that found a wrong answer.
    pub demoted: bool,
    pub counters: CounterSnapshot,
    pub latency: crate::latency::LatencySnapshot,
    pub last_error: Option<String>,
}

impl<I: Send + Sync> crate::shadow::Checked for Provider<I> {
    fn plugin(&self) -> &str {
        &self.plugin
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn demote(&self, why: String) {
        self.breaker.demote();
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }
}

/// What a slot looks like right now.
#[derive(Debug, Clone, Serialize)]
pub struct SlotStatus {
    pub slot: &'static str,
    /// Providers bottom to top, as labels; empty means baseline only.
    pub stack: Vec<String>,
    /// Providers whose breaker is open.
    pub open: Vec<String>,
    /// What answers a call now: the top admitted provider, or `baseline`.
    pub active: String,
    pub counters: CounterSnapshot,
    pub providers: Vec<(String, CounterSnapshot)>,
    /// Each provider in full, bottom to top (what the monitor exports).
    pub detail: Vec<ProviderStatus>,
}

/// A slot: the providers, and the counters of calls made through it.
pub struct Slot<I> {
    id: &'static str,
    stack: ArcSwap<Vec<Arc<Provider<I>>>>,
    /// Whether `stack` holds a provider, read first on every call: a slot without one (most
    /// of them, most of the time) answers with the baseline for one relaxed load, not a
    /// guarded load of the stack (two atomic read-modify-writes, a third of a baseline
    /// frame's cost through `mem.buffer_pool`). A call that races an install may see
    /// either side of it, as it may anyway.
    occupied: AtomicBool,
    counters: Counters,
    /// Every provider that was ever installed and is not any more, newest first. Their
    /// libraries stay mapped; `storage.record_codec` reads with them what the active codec
    /// cannot (data written by a codec that has since been swapped out is not lost).
    retired: ArcSwap<Vec<Arc<Provider<I>>>>,
    /// The shadow checker of this slot's calls, if one is on (the slots of
    /// `shadow::REPLAYED`); `shadow_every` mirrors its rate so the hot path reads one word.
    shadow: arc_swap::ArcSwapOption<Shadow>,
    shadow_every: AtomicU32,
}

impl<I> Slot<I> {
    fn new(id: &'static str) -> Self {
        Slot {
            id,
            stack: ArcSwap::from_pointee(Vec::new()),
            occupied: AtomicBool::new(false),
            counters: Counters::default(),
            retired: ArcSwap::from_pointee(Vec::new()),
            shadow: arc_swap::ArcSwapOption::empty(),
            shadow_every: AtomicU32::new(0),
        }
    }

    /// Checks a sample of this slot's calls with `shadow` (`None`: stops checking).
    fn set_shadow(&self, shadow: Option<Arc<Shadow>>) {
        self.shadow_every
            .store(shadow.as_ref().map_or(0, |s| s.every()), Relaxed);
        self.shadow.store(shadow);
    }

    /// The checker, if this call is one it samples.
    #[inline]
    fn sampled(&self) -> Option<Arc<Shadow>> {
        let every = self.shadow_every.load(Relaxed);
        if every != 0 && crate::shadow::draw(every) {
            self.shadow.load_full()
        } else {
            None
        }
    }

    /// Installs `providers` (bottom to top) atomically; returns the stack it replaced.
    /// Calls already running finish on the old stack.
    pub fn install(&self, providers: Vec<Arc<Provider<I>>>) -> Arc<Vec<Arc<Provider<I>>>> {
        let old = self.stack.swap(Arc::new(providers.clone()));
        self.occupied.store(!providers.is_empty(), Release);
        // Swaps are serialised by `Host::apply`, so this read-modify-write does not race.
        let mut retired: Vec<Arc<Provider<I>>> = old
            .iter()
            .filter(|p| !providers.iter().any(|n| Arc::ptr_eq(n, p)))
            .cloned()
            .collect();
        retired.extend(
            self.retired
                .load()
                .iter()
                .filter(|p| !providers.iter().any(|n| Arc::ptr_eq(n, p)))
                .cloned(),
        );
        self.retired.store(Arc::new(retired));
        old
    }

    /// The installed providers, bottom to top.
    pub fn providers(&self) -> Arc<Vec<Arc<Provider<I>>>> {
        self.stack.load_full()
    }

    pub fn status(&self) -> SlotStatus {
        let stack = self.stack.load();
        let active = stack
            .iter()
            .rev()
            .find(|p| !p.breaker.is_open())
            .map_or_else(|| "baseline".to_owned(), |p| p.label());
        SlotStatus {
            slot: self.id,
            stack: stack.iter().map(|p| p.label()).collect(),
            open: stack
                .iter()
                .filter(|p| p.breaker.is_open())
                .map(|p| p.label())
                .collect(),
            active,
            counters: self.counters.snapshot(),
            providers: stack
                .iter()
                .map(|p| (p.label(), p.counters.snapshot()))
                .collect(),
            detail: stack
                .iter()
                .map(|p| ProviderStatus {
                    plugin: p.plugin.clone(),
                    version: p.version.clone(),
                    generation: p.generation,
                    breaker_open: p.breaker.is_open(),
                    demoted: p.breaker.is_demoted(),
                    counters: p.counters.snapshot(),
                    latency: p.latency.snapshot(),
                    last_error: p.last_error(),
                })
                .collect(),
        }
    }
}

impl<I> Slot<I> {
    /// Calls the active provider of an exclusive slot; `None` means the caller must run the
    /// baseline (no provider, breaker open, or the call failed).
    fn try_call<T>(&self, call: impl FnOnce(&I) -> Result<T, PluginError>) -> Option<T> {
        self.counters.calls.bump();
        if !self.occupied.load(Relaxed) {
            return None;
        }
        let stack = self.stack.load();
        stack
            .last()
            .and_then(|p| p.attempt(&self.counters, self.id, call))
    }

    /// Like [`Slot::try_call`]; a call the shadow checker samples is handed to it as
    /// `replay` describes it (inputs and answer), with the provider that answered and the
    /// time the provider took.
    fn try_call_shadowed<T>(
        &self, call: impl FnOnce(&I) -> Result<T, PluginError>, replay: impl FnOnce(&T) -> Call,
    ) -> Option<T>
    where
        I: Send + Sync + 'static,
    {
        self.counters.calls.bump();
        if !self.occupied.load(Relaxed) {
            return None;
        }
        let stack = self.stack.load();
        let top = stack.last()?;
        // The clock is read only for a sampled call.
        let shadow = self.sampled().map(|sh| (sh, Instant::now()));
        let answer = top.attempt(&self.counters, self.id, call)?;
        if let Some((sh, began)) = shadow {
            sh.offer(top.clone(), began.elapsed(), replay(&answer));
        }
        Some(answer)
    }

    /// Whether a provider is installed (it may still be in fallback).
    pub fn has_provider(&self) -> bool {
        !self.stack.load().is_empty()
    }

    /// Delivers a notification that keeps providers' caches coherent (`vm.contract_state`,
    /// `storage.account_read`) to every provider, whatever its breaker says: one that missed a write
    /// could serve stale answers once readmitted. A provider that fails `notify` is told to
    /// `forget` the store; one that fails that too counts a failure.
    fn notify_all(&self, notify: impl Fn(&I) -> bool, forget: impl Fn(&I) -> bool) {
        for p in self.stack.load().iter() {
            if !notify(&p.imp) && !forget(&p.imp) {
                p.breaker.record_failure();
            }
        }
    }

    /// Calls the active provider for an object whose own calls decide whether the provider
    /// works (a `storage.block_commit` write set): like `try_call`, but a success does not close
    /// the breaker; [`Slot::object_done`] or [`Slot::object_failed`] settles it.
    fn try_make<T>(&self, call: impl FnOnce(&I) -> Result<T, PluginError>) -> Option<T> {
        self.counters.calls.bump();
        let stack = self.stack.load();
        stack
            .last()
            .and_then(|p| p.attempt_settling(&self.counters, self.id, call, false))
    }

    /// Records that an object the active provider made did all its work: a success for
    /// the provider's breaker.
    pub fn object_done(&self) {
        if let Some(p) = self.stack.load().last() {
            p.breaker.record_success();
        }
    }

    /// Records that an object the active provider made (a `storage.block_commit` write set)
    /// failed a call: counted, remembered and fed to the breaker like a failed call of the
    /// provider itself, so that a provider whose objects keep failing is set aside.
    pub fn object_failed(&self, what: &str, e: &PluginError) {
        self.counters.errors.bump();
        self.counters.fallbacks.bump();
        if let Some(p) = self.stack.load().last() {
            p.counters.errors.bump();
            p.counters.fallbacks.bump();
            p.breaker.record_failure();
            *p.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{what}: {e}"));
            tracing::warn!(slot = self.id, plugin = %p.label(), call = what, error = %e, "an object of the plugin failed; the host falls back");
        }
    }

    /// True, counting the call (answered by the baseline), when no provider is installed.
    fn baseline_only(&self) -> bool {
        if self.has_provider() {
            return false;
        }
        self.counters.calls.bump();
        true
    }
}

/// The `exec.block_execution` slot (exclusive). Its baseline is the node's execution
/// over the block in progress (`node::execute::execute_block`), so a call here answers
/// `None` when the caller must run it.
pub type BlockExecutionSlot = Slot<BlockExecutionBox>;

impl BlockExecutionSlot {
    /// True, counting the call as the baseline's, when no provider is installed.
    pub fn on_baseline(&self) -> bool {
        self.baseline_only()
    }

    /// The provider's verdicts for `txs` over `state` (the block's accounts, read and
    /// written through the host's primitives), or `None`: run the baseline (after undoing
    /// whatever the provider wrote, which is the caller's to do).
    pub fn execute_block(
        &self, txs: &[Transaction], proposer: &Bytes32,
        state: dubchain_plugin_api::slots::AccountStoreRef<'_>,
    ) -> Option<Vec<abi_stable::std_types::RResult<(), dubchain_plugin_api::exec::TxFailure>>> {
        let mut state = Some(state);
        self.try_call(|imp| {
            let out = imp
                .execute_block(txs.into(), proposer, state.take().expect("moved once"))
                .into_result()?;
            check_len(txs.len(), out.into_vec())
        })
    }

    /// The provider run over an in-memory copy of `pre` (see [`execute_in_memory`]); `None`:
    /// no provider, or it failed.
    pub fn execute_in_memory(
        &self, pre: &[AccountEntry], txs: &[Transaction], proposer: &Bytes32,
    ) -> Option<baseline::Executed> {
        self.try_call(|imp| execute_in_memory(imp, pre, txs, proposer))
    }
}

/// Runs an `exec.block_execution` object over an in-memory copy of `pre` (an account outside
/// it reads as empty), in the form [`baseline::execute_block`] answers: what the self-test,
/// the conformance suite and the benchmarks compare with the baseline.
pub fn execute_in_memory(
    imp: &BlockExecutionBox, pre: &[AccountEntry], txs: &[Transaction], proposer: &Bytes32,
) -> Result<baseline::Executed, PluginError> {
    let mem: std::sync::Mutex<std::collections::BTreeMap<Bytes32, AccountState>> =
        std::sync::Mutex::new(pre.iter().map(|e| (e.account, e.state)).collect());
    let lock = || mem.lock().unwrap_or_else(|p| p.into_inner());
    let store = dubchain_plugin_api::slots::HostAccountStore(
        |accounts: &[Bytes32]| {
            let m = lock();
            Ok(accounts
                .iter()
                .map(|a| m.get(a).copied().unwrap_or_default())
                .collect())
        },
        |writes: &[AccountEntry]| {
            let mut m = lock();
            for w in writes {
                m.insert(w.account, w.state);
            }
            Ok(())
        },
    );
    let results = imp
        .execute_block(txs.into(), proposer, store.as_store())
        .into_result()?;
    let results = check_len(txs.len(), results.into_vec())?;
    let state = mem
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .filter(|(_, s)| *s != AccountState::default())
        .map(|(account, state)| AccountEntry { account, state })
        .collect();
    Ok(baseline::Executed { results, state })
}

/// The `consensus.block_validation` slot (exclusive). Its baseline is the node's block
/// by block validation, so a call answers `None` when the caller must run it.
pub type BlockValidationSlot = Slot<BlockValidationBox>;

impl BlockValidationSlot {
    /// The plugin's verdicts on the run, or `None` (validate one block at a time).
    pub fn check_run(
        &self, head_height: u64, head_hash: &Bytes32, blocks: &[Block],
    ) -> Option<Vec<BlockCheck>> {
        self.try_call(|imp| {
            imp.check_run(head_height, head_hash, blocks.into())
                .into_result()
                .map(RVec::into_vec)
                .and_then(|v| check_len(blocks.len(), v))
        })
    }
}

/// The `exec.tx_validation` slot (exclusive). Its baseline is the node's admission path
/// (signatures through `crypto.sig_verify`, then the stateless rules), so a call answers
/// `None` when the caller must run it.
pub type TxValidationSlot = Slot<TxValidationBox>;

impl TxValidationSlot {
    /// The plugin's verdicts, or `None` (check them the baseline way).
    pub fn validate(&self, txs: &[Transaction]) -> Option<Vec<TxCheck>> {
        self.try_call(|imp| {
            imp.validate(txs.into())
                .into_result()
                .map(RVec::into_vec)
                .and_then(|v| check_len(txs.len(), v))
        })
    }
}

/// The `vm.code_loader` slot (exclusive). Its baseline reads the code from the store and
/// validates it on every call (`crate::vm::call_contract`), so a call answers `None` when
/// the caller must do that.
pub type CodeLoaderSlot = Slot<CodeLoaderBox>;

impl CodeLoaderSlot {
    /// The plugin's loaded code, or `None` (load it the baseline way). `code_hash` is the
    /// SHA-256 of the code stored at `contract` (the store keeps it beside the code): the
    /// host refuses an answer of valid code that does not hash to it (a cache answering
    /// for other code), and `Missing` (there is code, since it has a hash).
    pub fn load(
        &self, contract: &Bytes32, code_hash: &Bytes32, source: CodeSourceRef<'_>,
    ) -> Option<LoadedCode> {
        use sha2::Digest;
        self.try_call(|imp| {
            let loaded = imp.load(contract, code_hash, source).into_result()?;
            match &loaded {
                LoadedCode::Valid(code)
                    if sha2::Sha256::digest(code.as_slice()).as_slice() != code_hash.0 =>
                {
                    Err(PluginError::failed(format!(
                        "answered {} bytes of code for {contract:?} that do not hash to its code hash {code_hash:?}",
                        code.len()
                    )))
                }
                LoadedCode::Missing => Err(PluginError::failed(format!(
                    "answered no code for {contract:?}, which has code (hash {code_hash:?})"
                ))),
                _ => Ok(loaded),
            }
        })
    }
}

/// The `vm.metering` slot (exclusive). Its baseline is `crate::vm::meter::instrument`.
pub type MeteringSlot = Slot<MeteringBox>;

impl MeteringSlot {
    /// The plugin's metered code, or `None` (meter it the baseline way).
    pub fn instrument(&self, code: &[u8]) -> Option<Metered> {
        self.try_call(|imp| imp.instrument(code.into()).into_result())
    }
}

/// The `vm.module_cache` slot (exclusive). Its baseline is `crate::vm::Vm::run`.
pub type ModuleCacheSlot = Slot<ModuleCacheBox>;

impl ModuleCacheSlot {
    /// The plugin's run of `request`, or `None` (run it the baseline way).
    pub fn run(
        &self, request: &CallRequest<'_>, storage: ContractStoreRef<'_>,
    ) -> Option<CallResult> {
        self.try_call(|imp| {
            let out = imp.run(request, storage).into_result()?;
            check_call_result(request, out)
        })
    }
}

/// The host's check of a `vm.module_cache` answer: no more gas than the request allowed,
/// all of it when the gas ran out, and writes once per key in key order (the host applies
/// them as they are).
fn check_call_result(
    request: &CallRequest<'_>, out: CallResult,
) -> Result<CallResult, PluginError> {
    use dubchain_plugin_api::slots::CallEnd;
    if out.gas_used > request.gas {
        return Err(PluginError::failed(format!(
            "the call used {} gas of the {} it was given",
            out.gas_used, request.gas
        )));
    }
    match &out.end {
        CallEnd::OutOfGas if out.gas_used != request.gas => Err(PluginError::failed(format!(
            "out of gas after {} of {} gas",
            out.gas_used, request.gas
        ))),
        CallEnd::Returned { writes, .. } if writes.windows(2).any(|w| w[0].key >= w[1].key) => Err(
            PluginError::failed("the call's writes are not once per key in key order"),
        ),
        _ => Ok(out),
    }
}

/// `written` and `reset` of a slot whose providers keep what they read (`vm.contract_state`,
/// `storage.account_read`): every provider in the stack is told of each applied write and
/// each rollback, whichever answers reads.
macro_rules! told_of_writes {
    ($slot:ty, $entry:ty) => {
        impl $slot {
            /// Tells every provider of applied writes (see `Slot::notify_all`); nothing when
            /// there are none.
            pub fn written(&self, store: u64, writes: &[$entry]) {
                if writes.is_empty() {
                    return;
                }
                self.notify_all(
                    |imp| imp.written(store, writes.into()).into_result().is_ok(),
                    |imp| imp.reset(store).into_result().is_ok(),
                );
            }

            /// Tells every provider that `store` was rolled back.
            pub fn reset(&self, store: u64) {
                self.notify_all(|imp| imp.reset(store).into_result().is_ok(), |_| false);
            }
        }
    };
}

/// The `vm.contract_state` slot (exclusive). Its baseline reads the store.
pub type ContractStateSlot = Slot<ContractStateBox>;

impl ContractStateSlot {
    /// The plugin's answer, or `None` (read the store).
    pub fn get(
        &self, store: u64, contract: &Bytes32, key: i64, below: ContractStoreRef<'_>,
    ) -> Option<i64> {
        self.try_call(|imp| imp.get(store, contract, key, below).into_result())
    }
}

told_of_writes!(ContractStateSlot, ContractWrite);

/// The `mem.block_reclaim` slot (exclusive). Baseline: drop the blocks here and now.
pub type BlockReclaimSlot = Slot<BlockReclaimBox>;

impl BlockReclaimSlot {
    /// Hands `blocks` to the provider, or drops them (the baseline). A provider that fails
    /// has taken them anyway (a panic dropped them while unwinding).
    pub fn reclaim(&self, blocks: Vec<Block>) {
        if !self.baseline_only() {
            let mut blocks = Some(RVec::from(blocks));
            self.try_call(|imp| {
                imp.reclaim(blocks.take().expect("moved once"))
                    .into_result()
            });
        }
    }
}

/// The `mem.buffer_pool` slot (exclusive). Baseline: a fresh buffer each time, freed after.
pub type BufferPoolSlot = Slot<BufferPoolBox>;

impl BufferPoolSlot {
    /// An empty buffer with room for `capacity` bytes.
    ///
    /// Called once a frame, so the provider stack is loaded once a call (`try_call`, which
    /// counts the call and answers `None` when no provider is installed), not twice.
    pub fn take(&self, capacity: usize) -> RVec<u8> {
        self.try_call(|imp| {
            // Never a buffer with old contents visible, nor one too small.
            dubchain_plugin_api::slots::check_buffer(
                imp.take(capacity as u64).into_result()?,
                capacity,
            )
        })
        .unwrap_or_else(|| RVec::with_capacity(capacity))
    }

    /// Gives a buffer back (the baseline frees it: when no provider takes it, it is
    /// dropped here).
    pub fn give(&self, buffer: RVec<u8>) {
        let mut buffer = Some(buffer);
        self.try_call(|imp| imp.give(buffer.take().expect("moved once")).into_result());
    }
}

/// A host-side [`FrameSink`] over a writer, counting the bytes it took.
pub struct CountingSink<'a, W> {
    writer: std::sync::Mutex<&'a mut W>,
    written: AtomicU64,
}

impl<'a, W: std::io::Write> CountingSink<'a, W> {
    pub fn new(writer: &'a mut W) -> Self {
        CountingSink {
            writer: std::sync::Mutex::new(writer),
            written: AtomicU64::new(0),
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written.load(Relaxed)
    }

    /// The sink as a provider is handed it.
    pub fn as_ffi(&self) -> dubchain_plugin_api::slots::FrameSinkRef<'_>
    where
        W: Send,
    {
        FrameSink_TO::from_ptr(
            abi_stable::sabi_types::RRef::new(self),
            abi_stable::sabi_trait::TD_Opaque,
        )
    }

    fn write_all(&self, bytes: &[u8]) -> Result<(), PluginError> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = w
                .write(rest)
                .map_err(|e| PluginError::failed(format!("write: {e}")))?;
            if n == 0 {
                return Err(PluginError::failed("write: the connection took nothing"));
            }
            self.written.fetch_add(n as u64, Relaxed);
            rest = &rest[n..];
        }
        Ok(())
    }

    fn write_vectored_all(&self, parts: &[&[u8]]) -> Result<(), PluginError> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut slices: Vec<std::io::IoSlice<'_>> =
            parts.iter().map(|p| std::io::IoSlice::new(p)).collect();
        let mut bufs = slices.as_mut_slice();
        std::io::IoSlice::advance_slices(&mut bufs, 0);
        while !bufs.is_empty() {
            let n = w
                .write_vectored(bufs)
                .map_err(|e| PluginError::failed(format!("write: {e}")))?;
            if n == 0 {
                return Err(PluginError::failed("write: the connection took nothing"));
            }
            self.written.fetch_add(n as u64, Relaxed);
            std::io::IoSlice::advance_slices(&mut bufs, n);
        }
        Ok(())
    }
}

impl<W: std::io::Write + Send> FrameSink for CountingSink<'_, W> {
    fn write(&self, bytes: RSlice<'_, u8>) -> abi_stable::std_types::RResult<(), PluginError> {
        self.write_all(bytes.as_slice()).into()
    }
    fn write_vectored(
        &self, parts: RSlice<'_, RSlice<'_, u8>>,
    ) -> abi_stable::std_types::RResult<(), PluginError> {
        let parts: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
        self.write_vectored_all(&parts).into()
    }
}

/// The `net.frame_send` slot (exclusive). Baseline: one write per frame.
pub type FrameSendSlot = Slot<FrameSendBox>;

impl FrameSendSlot {
    /// Writes `frames` to `writer`, through the provider if there is one. If the provider
    /// fails part way, the rest of the stream (from the last byte the connection took) is
    /// written the baseline way, so the peer always reads exactly the frames, in order.
    pub fn send<W: std::io::Write + Send>(
        &self, frames: &[&[u8]], writer: &mut W,
    ) -> std::io::Result<()> {
        let sink = CountingSink::new(writer);
        let mut from = 0u64;
        if !self.baseline_only() {
            let slices: Vec<RSlice<'_, u8>> = frames.iter().map(|f| (*f).into()).collect();
            let sent = self.try_call(|imp| {
                imp.send(slices.as_slice().into(), sink.as_ffi())
                    .into_result()
            });
            let total: u64 = frames.iter().map(|f| f.len() as u64).sum();
            from = sink.written();
            if sent.is_some() && from == total {
                return Ok(());
            }
            if from > total {
                return Err(std::io::Error::other(format!(
                    "net.frame_send provider wrote {from} bytes for {total} bytes of frames"
                )));
            }
            if sent.is_some() {
                tracing::warn!(written = from, total, "net.frame_send provider returned before writing every frame; the host writes the rest");
            }
        }
        // Baseline: one write per frame, from where the provider (if any) stopped.
        let mut offset = 0u64;
        for f in frames {
            let end = offset + f.len() as u64;
            if end > from {
                let skip = from.saturating_sub(offset) as usize;
                sink.write_all(&f[skip..])
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
            }
            offset = end;
        }
        Ok(())
    }
}

/// The `mempool.tx_pool` slot (exclusive). Baseline: `baseline::VecIndex`, a `Vec` with
/// linear scans. A mempool asks for its index once, when it is made.
pub type TxPoolSlot = Slot<TxPoolBox>;

impl TxPoolSlot {
    /// A fresh index from the provider, or `None` (use the baseline's).
    pub fn new_index(&self) -> Option<TxIndexBox> {
        self.try_call(|imp| imp.new_index().into_result())
    }
}

/// The `consensus.vote_tally` slot (exclusive). Baseline: `baseline::Tally` behind one `Mutex`
/// (`node::consensus::ConsensusState`). A node asks for its state once.
pub type VoteTalliesSlot = Slot<VoteTalliesBox>;

impl VoteTalliesSlot {
    /// A fresh state from the provider for validators with `stakes`, or `None`.
    pub fn new_tally(&self, stakes: &[u64]) -> Option<VoteTallyBox> {
        self.try_call(|imp| imp.new_tally(stakes.into()).into_result())
    }
}

/// The `mem.tx_decode` slot (exclusive). Baseline: `serde_json` per payload.
pub type TxDecodeSlot = Slot<TxDecodeBox>;

impl TxDecodeSlot {
    /// The transaction in each payload, or why it is not one.
    pub fn decode(&self, payloads: &[&[u8]]) -> Vec<Result<Transaction, String>> {
        if !self.baseline_only() {
            let slices: Vec<RSlice<'_, u8>> = payloads.iter().map(|p| (*p).into()).collect();
            if let Some(out) = self.try_call_shadowed(
                |imp| {
                    let v = check_len(
                        payloads.len(),
                        imp.decode(slices.as_slice().into())
                            .into_result()?
                            .into_vec(),
                    )?;
                    Ok(v.into_iter()
                        .map(|r| r.into_result().map_err(String::from))
                        .collect())
                },
                |answer: &Vec<Result<Transaction, String>>| Call::tx_decode(payloads, answer),
            ) {
                return out;
            }
        }
        baseline::decode_txs(payloads)
    }
}

/// The `storage.account_read` slot (exclusive). Baseline: read RocksDB and decode the record.
pub type AccountReadSlot = Slot<AccountReadBox>;

impl AccountReadSlot {
    /// Writes the provider's answer for `accounts` of store `store` to `out` (as long as
    /// `accounts`) and returns true; false: no provider, or it failed (read the store; `out`
    /// may hold part of an answer). `below` fills its `out` the same way, from the store.
    pub fn read_into(
        &self, store: u64, accounts: &[Bytes32], out: &mut [AccountState],
        below: impl Fn(&[Bytes32], &mut [AccountState]) -> Result<(), PluginError> + Sync,
    ) -> bool {
        if accounts.len() != out.len() {
            return false;
        }
        // One load of the stack (`try_call` counts the call either way): this is the node's
        // most frequent slot call.
        let below = HostAccounts(below);
        self.try_call(|imp| {
            imp.get(store, accounts.into(), out.into(), below.as_source())
                .into_result()
        })
        .is_some()
    }

    /// [`AccountReadSlot::read_into`] into a fresh vector: the provider's answer, or `None`.
    pub fn get(
        &self, store: u64, accounts: &[Bytes32],
        below: impl Fn(&[Bytes32], &mut [AccountState]) -> Result<(), PluginError> + Sync,
    ) -> Option<Vec<AccountState>> {
        let mut out = vec![AccountState::default(); accounts.len()];
        self.read_into(store, accounts, &mut out, below)
            .then_some(out)
    }
}

told_of_writes!(AccountReadSlot, AccountEntry);

/// The `storage.durability` slot (exclusive). Baseline: sync the log, once per commit.
pub type DurabilitySlot = Slot<DurabilityBox>;

impl DurabilitySlot {
    /// Returns once everything written to store `store` before the call is durable: through
    /// the provider if there is one, else (or if it fails) by calling `sync` here.
    pub fn make_durable<E>(
        &self, store: u64, sync: impl Fn() -> Result<(), E> + Sync,
    ) -> Result<(), E>
    where
        E: std::fmt::Display,
    {
        if !self.baseline_only() {
            let wal = HostWal(|| sync().map_err(|e| PluginError::failed(e.to_string())));
            if self
                .try_call(|imp| imp.make_durable(store, wal.as_wal()).into_result())
                .is_some()
            {
                return Ok(());
            }
        }
        sync()
    }
}

/// The `storage.block_commit` slot (exclusive). Baseline: each write goes to the store at once,
/// one put per key after its undo entry (`node::state::BlockWriter`). A store asks for a
/// write set at the start of every block.
pub type BlockCommitSlot = Slot<BlockCommitBox>;

impl BlockCommitSlot {
    /// A fresh write set for block `height` from the provider, or `None` (write through).
    /// The provider's breaker is settled by the block: [`Slot::object_done`] once it is
    /// committed, [`Slot::object_failed`] if the set fails.
    pub fn begin(&self, height: u64) -> Option<BlockWritesBox> {
        self.try_make(|imp| imp.begin(height).into_result())
    }
}

/// The `storage.state_root` slot (exclusive). Baseline: the sparse Merkle root of every
/// leaf, from scratch ([`dubchain_plugin_api::state_tree::root`] over a full scan of the
/// store, `node::state`).
pub type StateRootSlot = Slot<StateRootBox>;

/// Every how many calls `storage.state_root` checks a provider's root against the baseline
/// (the first call of the slot is one of them): a root is a commitment nothing else at the
/// boundary can check, and a wrong one makes the node's blocks refused by every other node.
pub const STATE_ROOT_AUDIT_EVERY: u64 = 64;

impl StateRootSlot {
    /// The provider's root of the state after a block, or `None` (the caller computes it from
    /// scratch). `parent` is the root before the block, `changes` what the block did (sorted
    /// by key, distinct: [`dubchain_plugin_api::state_tree::check_changes`]) and `all` lists
    /// every leaf after it. The host checks what it can: a block that changed nothing keeps
    /// its parent's root, and every [`STATE_ROOT_AUDIT_EVERY`]th answer is compared with the
    /// baseline's; a wrong answer is a failure of the provider, answered by the baseline.
    pub fn root<F>(&self, parent: &Bytes32, changes: &[LeafChange], all: &F) -> Option<Bytes32>
    where
        F: Fn() -> Result<Vec<StateLeaf>, PluginError> + Sync,
    {
        if !self.has_provider() {
            return None;
        }
        let audit = self
            .counters
            .calls
            .get()
            .is_multiple_of(STATE_ROOT_AUDIT_EVERY);
        let source = HostLeaves(all);
        self.try_call(|imp| {
            let got = imp
                .root(*parent, changes.into(), source.as_source())
                .into_result()?;
            if changes.is_empty() && got != *parent {
                return Err(PluginError::failed(format!(
                    "answered {got:?} for a block that changed nothing (the parent's root is {parent:?})"
                )));
            }
            if audit {
                let expected = state_tree::root(&mut all()?)?;
                if got != expected {
                    return Err(PluginError::failed(format!(
                        "answered {got:?} where the state's root is {expected:?} (an audit against the baseline)"
                    )));
                }
            }
            Ok(got)
        })
    }
}

/// The `net.broadcast` slot (exclusive). Baseline: every message serialised into a frame
/// once per peer, in a buffer from `mem.buffer_pool` (`node::net::Network::broadcast`).
pub type BroadcastSlot = Slot<BroadcastBox>;

impl BroadcastSlot {
    /// The provider's frames for `msgs` to `peers` peers, or `None` (build them the
    /// baseline way).
    pub fn frames(
        &self, msgs: &[dubchain_plugin_api::wire::Message], peers: usize,
    ) -> Option<Vec<Vec<SharedFrame>>> {
        self.try_call(|imp| {
            let lists = check_len(
                peers,
                imp.frames(msgs.into(), peers as u32)
                    .into_result()?
                    .into_vec(),
            )?;
            lists
                .into_iter()
                .map(|l| check_len(msgs.len(), l.into_vec()))
                .collect()
        })
    }
}

/// The `net.send_queue` slot (exclusive). Baseline: `baseline::FifoQueue`, unbounded. A
/// network asks for one queue per peer when it starts.
pub type SendQueuesSlot = Slot<SendQueuesBox>;

impl SendQueuesSlot {
    /// A fresh queue from the provider for peer `peer`, or `None` (use the baseline's).
    pub fn new_queue(&self, peer: u32) -> Option<SendQueueBox> {
        self.try_call(|imp| imp.new_queue(peer).into_result())
    }
}

/// The `net.transport` slot (exclusive). Baseline: `node::net`'s reader and writer threads
/// per peer, on blocking sockets.
pub type TransportSlot = Slot<TransportBox>;

impl TransportSlot {
    /// The provider's running connections over `peers`, or `None` (run the threads).
    pub fn connect(&self, peers: &[PeerSocket], inbound: InboundSinkBox) -> Option<ConnectionsBox> {
        let mut inbound = Some(inbound);
        self.try_call(|imp| {
            imp.connect(peers.into(), inbound.take().expect("moved once"))
                .into_result()
        })
    }
}

/// The `consensus.vote_verify` slot (exclusive).
pub type VoteVerifySlot = Slot<VoteVerifyBox>;
/// The `crypto.merkle` slot (exclusive).
pub type MerkleSlot = Slot<MerkleBox>;

impl VoteVerifySlot {
    /// Per-vote verdicts.
    pub fn verify_votes(&self, votes: &[VoteItem<'_>]) -> Vec<bool> {
        self.try_call_shadowed(
            |imp| {
                imp.verify_votes(votes.into())
                    .into_result()
                    .map(RVec::into_vec)
                    .and_then(|v| check_len(votes.len(), v))
            },
            |answer| Call::votes(votes, answer),
        )
        .unwrap_or_else(|| baseline::verify_votes(votes))
    }
}

impl MerkleSlot {
    /// The root of each tree.
    pub fn roots(&self, trees: &[&[Bytes32]]) -> Vec<Bytes32> {
        let slices: Vec<RSlice<'_, Bytes32>> = trees.iter().map(|t| (*t).into()).collect();
        self.try_call_shadowed(
            |imp| {
                imp.roots(slices.as_slice().into())
                    .into_result()
                    .map(RVec::into_vec)
                    .and_then(|roots| check_len(trees.len(), roots))
            },
            |answer| Call::merkle(trees, answer),
        )
        .unwrap_or_else(|| trees.iter().map(|t| baseline::merkle_root(t)).collect())
    }

    /// The root of one tree.
    pub fn root(&self, leaves: &[Bytes32]) -> Bytes32 {
        self.roots(&[leaves])[0]
    }
}

/// The `crypto.sig_verify` slot (layered).
pub type SigVerifySlot = Slot<SigVerifyBox>;
/// The `storage.record_codec` slot (exclusive).
pub type RecordCodecSlot = Slot<RecordCodecBox>;

impl SigVerifySlot {
    /// Strict ed25519 verdicts for `items`, one per item.
    pub fn verify_batch(&self, items: &[SigItem<'_>]) -> Vec<bool> {
        self.counters.calls.bump();
        let stack = self.stack.load();
        let shadow = if stack.is_empty() {
            None
        } else {
            self.sampled()
        };
        self.verify_from(&stack, stack.len(), items, shadow.as_deref())
    }

    /// Answers with the bottom `depth` layers of `stack`. `shadow`: the call is sampled,
    /// and the layer that answers it (the top, or below it after a failure; not the layers
    /// a provider calls itself) is handed to the checker.
    fn verify_from(
        &self, stack: &[Arc<Provider<SigVerifyBox>>], depth: usize, items: &[SigItem<'_>],
        shadow: Option<&Shadow>,
    ) -> Vec<bool> {
        let Some(top) = depth.checked_sub(1).map(|k| &stack[k]) else {
            return baseline::sig_verify(items);
        };
        let below = LowerFn(|xs: &[SigItem<'_>]| Ok(self.verify_from(stack, depth - 1, xs, None)));
        // The clock is read only for a sampled call.
        let sampled = shadow.map(|sh| (sh, Instant::now()));
        let answer = top.attempt(&self.counters, self.id, |imp| {
            imp.verify_batch(items.into(), below.as_ffi())
                .into_result()
                .map(|v| v.into_vec())
                .and_then(|v| check_len(items.len(), v))
        });
        match answer {
            Some(v) => {
                if let Some((sh, began)) = sampled {
                    sh.offer(top.clone(), began.elapsed(), Call::sig(items, &v));
                }
                v
            }
            None => self.verify_from(stack, depth - 1, items, shadow),
        }
    }
}

/// The name a store records for records the baseline encoded (serde_json).
pub const JSON_CODEC: &str = "json";

impl RecordCodecSlot {
    /// The stored bytes of each record.
    pub fn encode(&self, records: &[Record]) -> Vec<Vec<u8>> {
        self.encode_named(records).0
    }

    /// The stored bytes of each record, and the name of the codec that wrote them: the
    /// plugin's, or [`JSON_CODEC`] for the baseline. A store records the names of the codecs
    /// its records were written by, so that it is never opened without one of them.
    pub fn encode_named(&self, records: &[Record]) -> (Vec<Vec<u8>>, String) {
        self.counters.calls.bump();
        let stack = self.stack.load();
        stack
            .last()
            .and_then(|p| {
                p.attempt(&self.counters, self.id, |imp| {
                    imp.encode(records.into())
                        .into_result()
                        .map(|v| v.into_iter().map(|b| b.into_vec()).collect())
                        .and_then(|v| check_len(records.len(), v))
                })
                .map(|v| (v, p.plugin.clone()))
            })
            .unwrap_or_else(|| (baseline::encode_records(records), JSON_CODEC.to_owned()))
    }

    /// The codecs this slot can read with: [`JSON_CODEC`] and every codec plugin installed in
    /// this process, now or earlier.
    pub fn readable_codecs(&self) -> std::collections::BTreeSet<String> {
        let stack = self.stack.load();
        let retired = self.retired.load();
        std::iter::once(JSON_CODEC.to_owned())
            .chain(stack.iter().chain(retired.iter()).map(|p| p.plugin.clone()))
            .collect()
    }

    /// The record behind each stored value: read by the active codec (or the baseline),
    /// and, for what that cannot read, by every codec installed in this process: the ones
    /// installed now, whatever their breaker says (a codec set aside for failing must not
    /// strand what it wrote), then the ones installed earlier. A value no codec here can
    /// read is an error for that item; it stays stored.
    pub fn decode(&self, values: &[&[u8]]) -> Vec<Result<Record, String>> {
        let mut out = self.decode_active(values);
        let stack = self.stack.load();
        let retired = self.retired.load();
        for (i, r) in out.iter_mut().enumerate() {
            if r.is_err() {
                let one = [values[i].into()];
                let older = stack.iter().rev().chain(retired.iter()).find_map(|p| {
                    let got = p.imp.decode(one.as_slice().into()).into_result().ok()?;
                    let mut got = check_len(1, got.into_vec()).ok()?;
                    got.pop()?.into_result().ok()
                });
                if let Some(record) = older {
                    *r = Ok(record);
                }
            }
        }
        out
    }

    fn decode_active(&self, values: &[&[u8]]) -> Vec<Result<Record, String>> {
        self.counters.calls.bump();
        let stack = self.stack.load();
        stack
            .last()
            .and_then(|p| {
                let slices: Vec<_> = values.iter().map(|v| (*v).into()).collect();
                p.attempt(&self.counters, self.id, |imp| {
                    let v = check_len(
                        values.len(),
                        imp.decode(slices.as_slice().into())
                            .into_result()?
                            .into_vec(),
                    )?;
                    Ok(v.into_iter()
                        .map(|r| r.into_result().map_err(|e| e.to_string()))
                        .collect())
                })
            })
            .unwrap_or_else(|| baseline::decode_records(values))
    }
}

/// The table of the host's slots: for each, the field that holds it (in [`Slots`], in a
/// loaded plugin, and in the plugin's root module), its [`SlotInfo`] constant, the FFI
/// object a provider hands over, and the self-test a provider passes before it is
/// installed.
///
/// `with_slots!(m [args])` expands `m! { [args] field: INFO => Box, selftest; ... }`, so
/// the bookkeeping that is the same for every slot (the loader's factories and self-tests,
/// the host's providers and installs, [`Slots`]) is written once, over this table. Adding
/// a slot is one line here, in `ALL` order, plus what is particular to it: its contract in
/// `plugin-api`, its baseline, self-test, conformance suite and the node's call.
///
/// [`SlotInfo`]: dubchain_plugin_api::slots::SlotInfo
macro_rules! with_slots {
    ($m:ident $([$($args:tt)*])?) => {
        $m! {
            [$($($args)*)?]
            sig_verify: SIG_VERIFY => SigVerifyBox, sig_verify;
            record_codec: RECORD_CODEC => RecordCodecBox, record_codec;
            vote_verify: VOTE_VERIFY => VoteVerifyBox, vote_verify;
            merkle: MERKLE => MerkleBox, merkle;
            block_execution: BLOCK_EXECUTION => BlockExecutionBox, block_execution;
            block_validation: BLOCK_VALIDATION => BlockValidationBox, block_validation;
            tx_validation: TX_VALIDATION => TxValidationBox, tx_validation;
            code_loader: CODE_LOADER => CodeLoaderBox, code_loader;
            metering: METERING => MeteringBox, metering;
            module_cache: MODULE_CACHE => ModuleCacheBox, module_cache;
            contract_state: CONTRACT_STATE => ContractStateBox, contract_state;
            block_reclaim: BLOCK_RECLAIM => BlockReclaimBox, block_reclaim;
            buffer_pool: BUFFER_POOL => BufferPoolBox, buffer_pool;
            frame_send: FRAME_SEND => FrameSendBox, frame_send;
            tx_pool: TX_POOL => TxPoolBox, tx_pool;
            vote_tally: VOTE_TALLY => VoteTalliesBox, vote_tally;
            tx_decode: TX_DECODE => TxDecodeBox, tx_decode;
            account_read: ACCOUNT_READ => AccountReadBox, account_read;
            durability: DURABILITY => DurabilityBox, durability;
            broadcast: BROADCAST => BroadcastBox, broadcast;
            send_queue: SEND_QUEUE => SendQueuesBox, send_queue;
            transport: TRANSPORT => TransportBox, transport;
            block_commit: BLOCK_COMMIT => BlockCommitBox, block_commit;
            state_root: STATE_ROOT => StateRootBox, state_root;
        }
    };
}
pub(crate) use with_slots;

macro_rules! slots_struct {
    ([] $($field:ident: $info:ident => $boxed:ident, $test:ident;)*) => {
        /// Every slot of the host.
        pub struct Slots {
            $(pub $field: Arc<Slot<$boxed>>,)*
        }

        impl Default for Slots {
            fn default() -> Self {
                use dubchain_plugin_api::slots::{$($info),*};
                Slots {
                    $($field: Arc::new(Slot::new($info.id)),)*
                }
            }
        }

        impl Slots {
            /// Every slot, in `dubchain_plugin_api::slots::ALL` order.
            pub fn status(&self) -> Vec<SlotStatus> {
                vec![$(self.$field.status()),*]
            }

            /// Checks a sample of the calls of every slot of `shadow::REPLAYED` with
            /// `shadow` (`None`: stops).
            pub fn set_shadow(&self, shadow: Option<Arc<Shadow>>) {
                self.sig_verify.set_shadow(shadow.clone());
                self.vote_verify.set_shadow(shadow.clone());
                self.merkle.set_shadow(shadow.clone());
                self.tx_decode.set_shadow(shadow);
            }
        }
    };
}
with_slots!(slots_struct);

macro_rules! slot_errors {
    ([] $($field:ident: $info:ident => $boxed:ident, $test:ident;)*) => {
        impl Slots {
            /// The last error of the top provider of `slot`, if a call of it failed.
            pub fn last_error(&self, slot: &str) -> Option<String> {
                use dubchain_plugin_api::slots::{$($info),*};
                $(
                    if slot == $info.id {
                        return self.$field.providers().last().and_then(|p| p.last_error());
                    }
                )*
                None
            }

            /// Forgets the last errors of `slot`'s providers.
            pub fn clear_errors(&self, slot: &str) {
                use dubchain_plugin_api::slots::{$($info),*};
                let clear = |m: &std::sync::Mutex<Option<String>>| {
                    *m.lock().unwrap_or_else(|p| p.into_inner()) = None
                };
                $(
                    if slot == $info.id {
                        self.$field.providers().iter().for_each(|p| clear(&p.last_error));
                    }
                )*
            }
        }
    };
}
with_slots!(slot_errors);

#[cfg(test)]
mod memory_and_network_seams {
    use std::sync::Mutex;

    use abi_stable::{
        sabi_trait::TD_Opaque,
        std_types::{RSlice, RVec},
    };
    use dubchain_plugin_api::{slots::*, types::Block, PluginError};

    use super::*;

    fn install<I>(slot: &Slot<I>, imp: I) {
        crate::testing::install_one(slot, "test", imp);
    }

    /// Coalesces every frame into one write; `drop_last` forgets the last frame, and
    /// `fail_after` writes that many frames and then reports an error.
    struct Coalesce {
        drop_last: bool,
        fail_after: Option<usize>,
    }

    impl FrameSend for Coalesce {
        fn send(
            &self, frames: &[RSlice<'_, u8>], sink: &FrameSinkRef<'_>,
        ) -> Result<(), PluginError> {
            if let Some(n) = self.fail_after {
                for f in frames.iter().take(n) {
                    sink.write(*f).into_result()?;
                }
                return Err(PluginError::failed("connection hiccup"));
            }
            let keep = frames.len() - usize::from(self.drop_last && !frames.is_empty());
            let parts: Vec<RSlice<'_, u8>> = frames[..keep].to_vec();
            sink.write_vectored(parts.as_slice().into()).into_result()
        }
    }

    fn boxed(c: Coalesce) -> FrameSendBox {
        FrameSendFfi_TO::from_value(Guarded(c), TD_Opaque)
    }

    #[test]
    fn net_send_self_test_accepts_coalescing_and_refuses_a_lost_frame() {
        crate::selftest::frame_send(&boxed(Coalesce {
            drop_last: false,
            fail_after: None,
        }))
        .unwrap();
        let err = crate::selftest::frame_send(&boxed(Coalesce {
            drop_last: true,
            fail_after: None,
        }))
        .unwrap_err();
        assert!(err.contains("first difference"), "{err}");
    }

    #[test]
    fn the_host_finishes_the_stream_a_failing_provider_started() {
        let slot = FrameSendSlot::new(dubchain_plugin_api::slots::FRAME_SEND.id);
        install(
            &slot,
            boxed(Coalesce {
                drop_last: false,
                fail_after: Some(3),
            }),
        );
        for (name, frames) in crate::selftest::frame_sets() {
            let views: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
            let mut out = Vec::new();
            slot.send(&views, &mut out).unwrap();
            assert_eq!(out, frames.concat(), "{name}");
        }
        assert!(slot.status().counters.errors > 0);
    }

    use crate::testing::KeepingPool as Keep;

    #[test]
    fn buffer_pool_self_test_accepts_a_pool_and_refuses_dirty_buffers() {
        let ok = BufferPoolFfi_TO::from_value(Guarded(Keep::clearing()), TD_Opaque);
        crate::selftest::buffer_pool(&ok).unwrap();
        let dirty = BufferPoolFfi_TO::from_value(Guarded(Keep::dirty()), TD_Opaque);
        let err = crate::selftest::buffer_pool(&dirty).unwrap_err();
        assert!(err.contains("length"), "{err}");
        // Through the slot, a dirty buffer is refused at the boundary: the caller gets an
        // empty one anyway.
        let slot = BufferPoolSlot::new(dubchain_plugin_api::slots::BUFFER_POOL.id);
        install(&slot, dirty);
        let mut b = slot.take(10);
        b.extend_from_slice(b"leftovers");
        slot.give(b);
        assert!(slot.take(10).is_empty());
    }

    /// Frees blocks on a thread of its own.
    struct Background(Mutex<std::sync::mpsc::Sender<RVec<Block>>>);

    impl BlockReclaim for Background {
        fn reclaim(&self, blocks: RVec<Block>) -> Result<(), PluginError> {
            self.0
                .lock()
                .unwrap()
                .send(blocks)
                .map_err(|_| PluginError::failed("the reclaiming thread is gone"))
        }
    }

    #[test]
    fn block_reclaim_takes_blocks_off_the_callers_thread() {
        let (tx, rx) = std::sync::mpsc::channel::<RVec<Block>>();
        let freed = std::thread::spawn(move || rx.iter().map(|b| b.len()).sum::<usize>());
        let imp = BlockReclaimFfi_TO::from_value(Guarded(Background(Mutex::new(tx))), TD_Opaque);
        crate::selftest::block_reclaim(&imp).unwrap();
        let slot = BlockReclaimSlot::new(dubchain_plugin_api::slots::BLOCK_RECLAIM.id);
        install(&slot, imp);
        let (_, _, blocks, _) = crate::workload::block_run(3, 2, 5, false);
        slot.reclaim(blocks);
        drop(slot);
        // Every block handed over reached the reclaiming thread: 0 + 1 + 4 (self-test) + 2.
        assert_eq!(freed.join().unwrap(), 7);
    }
}

#[cfg(test)]
mod breaker_limits {
    use super::*;

    /// A configured backoff too large for the clock keeps the breaker open; it does not wrap
    /// around into a short one (or overflow).
    #[test]
    fn a_huge_backoff_saturates() {
        let b = Breaker::new(BreakerConfig {
            failure_threshold: 1,
            backoff_ms: u64::MAX / 2 + 1,
            max_backoff_ms: u64::MAX,
        });
        assert!(b.admit());
        b.record_failure();
        assert!(b.is_open());
        assert!(
            !b.admit(),
            "open for (practically) ever, not for a wrapped instant"
        );
        b.record_failure();
        assert!(!b.admit());
    }
}
