//! The contract VM: wasm contracts on wasmtime, with storage host functions and gas metered
//! by instrumentation. What a contract may be and what it costs is
//! [`dubchain_plugin_api::vm`]; this is the host's runtime for it.
//!
//! # One call, the baseline way
//!
//! Every call does all the work the four `vm_*` rows of the catalogue remove: the code is
//! read from the state store and decoded and validated ([`validate_code`],
//! `vm_bytecode_caching`), [`meter::instrument`] rewrites it to call the host per basic
//! block (`vm_gas_optimization`), wasmtime compiles it (`vm_jit_caching`), and every
//! `storage_get` goes to the state store (`vm_state_caching`). A call's writes are kept in
//! a journal and applied only if it returns: a trap, including running out of gas, reverts
//! them, and the gas is charged either way.

pub mod check;
pub mod contracts;
/// The baseline's host-call metering rewrite, defined in the plugin API so that a
/// `vm.metering` provider can start from it.
pub use dubchain_plugin_api::vm::meter;

use std::{collections::BTreeMap, sync::OnceLock};

use dubchain_plugin_api::types::Bytes32;
pub use dubchain_plugin_api::vm::{
    features, validate_code, INSTRUCTION_GAS, MAX_MEMORY_PAGES, STORAGE_READ_GAS, STORAGE_WRITE_GAS,
};
use dubchain_plugin_api::{
    slots::{
        CallEnd, CallRequest, CallResult, GasCounter, HostCode, HostFn, LoadedCode, Metered,
        StorageWrite,
    },
    vm::GAS_GLOBAL,
    PluginError,
};
use sha2::{Digest, Sha256};

use crate::slot::Slots;
use wasmtime::{
    Caller, Config, Engine, Extern, Linker, Module, Store, StoreLimits, StoreLimitsBuilder, Val,
};

/// A failure of the store under a contract's storage reads: the node's problem, not the
/// call's (the node gets its own error type back by downcasting).
pub type StorageError = Box<dyn std::error::Error + Send + Sync>;

/// The trap a call ends with when its gas runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfGas;

impl std::fmt::Display for OutOfGas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("out of gas")
    }
}

impl std::error::Error for OutOfGas {}

/// The trap a host function raises when the state store fails under it; the store's error
/// itself is kept in the call's context and returned as an error (not a receipt).
#[derive(Debug)]
struct StoreFault;

impl std::fmt::Display for StoreFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("state store failure")
    }
}

impl std::error::Error for StoreFault {}

/// Reads of contract storage during a call.
pub trait ContractStorage: Sync {
    /// The value under `key` in `contract`'s storage; 0 when absent.
    fn get(&self, contract: &Bytes32, key: i64) -> Result<i64, StorageError>;
}

/// How a call ended, when it did not fail the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOutcome {
    /// Gas the contract used (instructions and host calls), at most the limit it was given;
    /// all of it when it ran out.
    pub gas_used: u64,
    /// The function's result and its storage writes (last value per key, in key order), or
    /// why it failed (its writes are discarded).
    pub result: Result<(i64, Vec<(i64, i64)>), CallFailure>,
}

/// Why a call failed. The texts are part of consensus (they end up in receipts), so they
/// never contain addresses or backtraces.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallFailure {
    #[error("out of gas")]
    OutOfGas,
    #[error("trap: {0}")]
    Trap(String),
    #[error("invalid contract: {0}")]
    Invalid(String),
    #[error("no contract at {0:?}")]
    NoContract(Bytes32),
}

/// What a call's host functions see.
struct CallContext {
    contract: Bytes32,
    /// The call's storage: borrowed for the duration of [`Vm::run`] only (see the SAFETY
    /// note there).
    storage: &'static dyn ContractStorage,
    counter: GasCounter,
    writes: BTreeMap<i64, i64>,
    /// Gas left, for [`GasCounter::HostCall`] code (global-counted code keeps it in its
    /// global).
    remaining: u64,
    fault: Option<StorageError>,
    limits: StoreLimits,
}

impl CallContext {
    fn charge(&mut self, cost: u64) -> wasmtime::Result<()> {
        match self.remaining.checked_sub(cost) {
            Some(left) => {
                self.remaining = left;
                Ok(())
            }
            None => {
                self.remaining = 0;
                Err(wasmtime::Error::new(OutOfGas))
            }
        }
    }
}

/// Charges a host function's `cost` to the call, wherever its code counts gas.
fn charge(caller: &mut Caller<'_, CallContext>, cost: u64) -> wasmtime::Result<()> {
    if caller.data().counter == GasCounter::HostCall {
        return caller.data_mut().charge(cost);
    }
    let global = caller
        .get_export(GAS_GLOBAL)
        .and_then(Extern::into_global)
        .ok_or_else(|| wasmtime::Error::msg("metered code lost its gas global"))?;
    let left = global.get(&mut *caller).i64().unwrap_or(-1);
    if left < 0 || (left as u64) < cost {
        global.set(&mut *caller, Val::I64(-1))?;
        return Err(wasmtime::Error::new(OutOfGas));
    }
    global.set(&mut *caller, Val::I64(left - cost as i64))
}

/// A contract module compiled by a [`Vm`] ([`Vm::compile`]), to be run by the same VM any
/// number of times.
pub struct Compiled(Module);

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled").finish_non_exhaustive()
    }
}

/// The wasmtime engine and the host functions, shared by every call.
pub struct Vm {
    engine: Engine,
    linker: Linker<CallContext>,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm").finish_non_exhaustive()
    }
}

/// The engine configuration contracts run under ([`dubchain_plugin_api::vm::ENGINE_SETTINGS`]):
/// Cranelift with NaNs canonicalised, so that float results are deterministic. (Which wasm
/// features a contract may use is decided by [`validate_code`], before anything is
/// compiled.)
pub fn engine_config() -> Config {
    let mut c = Config::new();
    c.cranelift_nan_canonicalization(true);
    c
}

impl Vm {
    /// A VM with its own engine, whose instances are allocated on demand (the baseline's).
    pub fn new() -> Vm {
        Vm::with_engine(
            Engine::new(&engine_config()).expect("the contract engine configuration is valid"),
        )
    }

    /// A VM whose instances come from wasmtime's pooling allocator: memory and instance
    /// slots for `instances` calls at once are reserved when it is made and reused, so an
    /// instantiation maps nothing. The engine compiles as [`Vm::new`]'s does (pooling does
    /// not change compiled code, nor [`Vm::fingerprint`]); a pooled memory is capped at
    /// [`MAX_MEMORY_PAGES`], the limit every call has anyway. An instance the pool cannot
    /// give (all in use) is not created: [`Vm::run_compiled`] says so and the caller
    /// runs the call elsewhere. A module beyond a slot's limits (a table of more than
    /// 20,000 elements) does not even compile here ([`Vm::compile`] fails), so a pooled
    /// VM's compile error is not the module's outcome. `Err` when the reservation fails.
    pub fn pooled(instances: u32) -> Result<Vm, String> {
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.total_core_instances(instances)
            .total_memories(instances)
            .total_tables(instances)
            .max_memory_size((MAX_MEMORY_PAGES * 65_536) as usize);
        let mut c = engine_config();
        c.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        let engine =
            Engine::new(&c).map_err(|e| format!("a pool of {instances} instances: {e}"))?;
        Ok(Vm::with_engine(engine))
    }

    fn with_engine(engine: Engine) -> Vm {
        let mut linker = Linker::new(&engine);
        linker
            .func_wrap(
                meter::GAS_MODULE,
                meter::GAS_FUNCTION,
                |mut caller: Caller<'_, CallContext>, cost: i64| {
                    caller.data_mut().charge(cost as u64)
                },
            )
            .expect("fresh linker");
        linker
            .func_wrap(
                "env",
                "storage_get",
                |mut caller: Caller<'_, CallContext>, key: i64| -> wasmtime::Result<i64> {
                    charge(&mut caller, STORAGE_READ_GAS)?;
                    let ctx = caller.data_mut();
                    if let Some(v) = ctx.writes.get(&key) {
                        return Ok(*v);
                    }
                    match ctx.storage.get(&ctx.contract, key) {
                        Ok(v) => Ok(v),
                        Err(e) => {
                            ctx.fault = Some(e);
                            Err(wasmtime::Error::new(StoreFault))
                        }
                    }
                },
            )
            .expect("fresh linker");
        linker
            .func_wrap(
                "env",
                "storage_set",
                |mut caller: Caller<'_, CallContext>,
                 key: i64,
                 value: i64|
                 -> wasmtime::Result<()> {
                    charge(&mut caller, STORAGE_WRITE_GAS)?;
                    caller.data_mut().writes.insert(key, value);
                    Ok(())
                },
            )
            .expect("fresh linker");
        Vm { engine, linker }
    }

    /// The VM the node uses (one engine per process).
    pub fn shared() -> &'static Vm {
        static VM: OnceLock<Vm> = OnceLock::new();
        VM.get_or_init(Vm::new)
    }

    /// The baseline pipeline on code already in hand: validates it, meters it with host
    /// calls ([`meter::instrument`]) and [`Self::run`]s it.
    pub fn call(
        &self, code: &[u8], contract: Bytes32, input: i64, gas: u64, storage: &dyn ContractStorage,
    ) -> Result<CallOutcome, StorageError> {
        if let Err(e) = validate_code(code) {
            return Ok(CallOutcome::failed(0, CallFailure::Invalid(e)));
        }
        match meter::instrument(code) {
            Ok(wasm) => self.run(&wasm, GasCounter::HostCall, contract, input, gas, storage),
            Err(e) => Ok(CallOutcome::failed(0, CallFailure::Invalid(e))),
        }
    }

    /// Compiles metered `wasm` and runs `call(input)` on it with `gas` to spend (at most
    /// `i64::MAX`) and storage reads going to `storage`: the `vm.module_cache` baseline,
    /// which compiles on every call. An `Err` is a storage failure under a host function
    /// (the node's problem, not the call's).
    pub fn run(
        &self, wasm: &[u8], counter: GasCounter, contract: Bytes32, input: i64, gas: u64,
        storage: &dyn ContractStorage,
    ) -> Result<CallOutcome, StorageError> {
        match self.compile(wasm) {
            Ok(module) => self
                .run_compiled(&module, counter, contract, input, gas, storage)
                .outcome(),
            Err(outcome) => Ok(outcome),
        }
    }

    /// Compiles metered `wasm` under this VM's engine, for [`Vm::run_compiled`]; `Err` is the
    /// outcome of a call on code that does not compile (what [`Vm::run`] answers).
    pub fn compile(&self, wasm: &[u8]) -> Result<Compiled, CallOutcome> {
        Module::new(&self.engine, wasm).map(Compiled).map_err(|e| {
            CallOutcome::failed(0, CallFailure::Invalid(format!("does not compile: {e}")))
        })
    }

    /// `module`'s compiled code as bytes, for [`Vm::deserialize`] by a VM of the same build
    /// and engine configuration (a precompiled artifact on disk).
    pub fn serialize(&self, module: &Compiled) -> Result<Vec<u8>, String> {
        module.0.serialize().map_err(|e| e.to_string())
    }

    /// A module from [`Vm::serialize`]'s bytes, without compiling. wasmtime refuses bytes of
    /// another wasmtime version or engine configuration, but does not check the code itself.
    ///
    /// # Safety
    ///
    /// `bytes` must be exactly what [`Vm::serialize`] produced with this [`Vm::fingerprint`]:
    /// deserialized code runs as native code. Check its integrity before calling.
    pub unsafe fn deserialize(&self, bytes: &[u8]) -> Result<Compiled, String> {
        // SAFETY: the caller guarantees the bytes are this engine's serialized module.
        unsafe { Module::deserialize(&self.engine, bytes) }
            .map(Compiled)
            .map_err(|e| e.to_string())
    }

    /// What serialized modules of this VM are compatible with: the engine's compilation
    /// settings and wasmtime's version, hashed (a different build may give another value,
    /// which only makes its artifacts unusable here, never wrongly usable).
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        env!("CARGO_PKG_VERSION").hash(&mut h);
        h.finish()
    }

    /// [`Vm::run`] on a module this VM compiled ([`Vm::compile`]): what a `vm.module_cache`
    /// provider runs, compiling each module once. [`Ran::outcome`] is the call's outcome as
    /// [`Vm::run`] gives it; [`Ran::NotInstantiated`] says the module was not instantiated (a
    /// pooled VM without a free slot, or a failure any VM would have), for a caller that
    /// then runs the call on an on-demand VM, whose answer is [`Vm::run`]'s either way.
    pub fn run_compiled(
        &self, module: &Compiled, counter: GasCounter, contract: Bytes32, input: i64, gas: u64,
        storage: &dyn ContractStorage,
    ) -> Ran {
        let gas = gas.min(i64::MAX as u64);
        let module = &module.0;
        // SAFETY: the reference is stored in the call's `Store`, which is created here and
        // dropped (`into_data` below) before this function returns; nothing reachable from
        // the store outlives it (host functions only read it during `call`). So the
        // borrow, whose lifetime is erased for wasmtime's `'static` bound, is never used
        // after `storage` is gone.
        let storage: &'static dyn ContractStorage = unsafe {
            std::mem::transmute::<&dyn ContractStorage, &'static dyn ContractStorage>(storage)
        };
        let mut store = Store::new(
            &self.engine,
            CallContext {
                contract,
                storage,
                counter,
                writes: BTreeMap::new(),
                remaining: gas,
                fault: None,
                limits: StoreLimitsBuilder::new()
                    .memory_size((MAX_MEMORY_PAGES * 65_536) as usize)
                    .instances(1)
                    .build(),
            },
        );
        store.limiter(|c| &mut c.limits);
        let instance = match self.linker.instantiate(&mut store, module) {
            Ok(i) => i,
            Err(e) => return Ran::NotInstantiated(describe_trap(&e)),
        };
        let global = match counter {
            GasCounter::HostCall => None,
            GasCounter::Global => match instance.get_global(&mut store, GAS_GLOBAL) {
                Some(g) if g.set(&mut store, Val::I64(gas as i64)).is_ok() => Some(g),
                _ => {
                    return Ran::Done(Ok(CallOutcome::failed(
                        0,
                        CallFailure::Invalid(format!(
                            "metered code does not export a mutable i64 `{GAS_GLOBAL}`"
                        )),
                    )))
                }
            },
        };
        let result = instance
            .get_typed_func::<i64, i64>(&mut store, "call")
            .and_then(|f| f.call(&mut store, input));
        let left = match global {
            None => store.data().remaining,
            Some(g) => g.get(&mut store).i64().unwrap_or(-1).max(-1) as u64,
        };
        let ctx = store.into_data();
        if let Some(fault) = ctx.fault {
            return Ran::Done(Err(fault));
        }
        let out_of_gas = global.is_some() && left == u64::MAX;
        Ran::Done(Ok(match result {
            Err(_) if out_of_gas => CallOutcome::failed(gas, CallFailure::OutOfGas),
            Err(e) if e.is::<OutOfGas>() => CallOutcome::failed(gas, CallFailure::OutOfGas),
            Err(e) => {
                CallOutcome::failed(gas - left.min(gas), CallFailure::Trap(describe_trap(&e)))
            }
            Ok(v) => CallOutcome {
                gas_used: gas - left.min(gas),
                result: Ok((v, ctx.writes.into_iter().collect())),
            },
        }))
    }
}

/// How [`Vm::run_compiled`] ended.
#[derive(Debug)]
pub enum Ran {
    /// The call's outcome, or the storage failure under a host function.
    Done(Result<CallOutcome, StorageError>),
    /// The module was not instantiated (nothing of it ran but a start function), with
    /// wasmtime's reason.
    NotInstantiated(String),
}

impl Ran {
    /// The outcome [`Vm::run`] gives: a module not instantiated is a failed call.
    pub fn outcome(self) -> Result<CallOutcome, StorageError> {
        match self {
            Ran::Done(outcome) => outcome,
            Ran::NotInstantiated(why) => Ok(CallOutcome::failed(
                0,
                CallFailure::Invalid(format!("does not instantiate: {why}")),
            )),
        }
    }
}

impl CallOutcome {
    fn failed(gas_used: u64, f: CallFailure) -> CallOutcome {
        CallOutcome {
            gas_used,
            result: Err(f),
        }
    }
}

impl Default for Vm {
    fn default() -> Self {
        Vm::new()
    }
}

/// What a contract call needs from the node: the state store's code, code hashes and
/// storage, and the identity of the store (for `vm.contract_state` providers' caches; it changes
/// whenever the store is rolled back).
pub trait ContractHost: Sync {
    /// The code deployed at `contract`.
    fn code(&self, contract: &Bytes32) -> Result<Option<Vec<u8>>, StorageError>;
    /// SHA-256 of the code deployed at `contract`, read without the code.
    fn code_hash(&self, contract: &Bytes32) -> Result<Option<Bytes32>, StorageError>;
    /// The value under `key` in `contract`'s storage in the store (0 when absent).
    fn storage(&self, contract: &Bytes32, key: i64) -> Result<i64, StorageError>;
    /// The store's current identity.
    fn store_id(&self) -> u64;
}

fn plugin_error(e: StorageError) -> PluginError {
    PluginError::failed(e.to_string())
}

/// Contract storage reads through the `vm.contract_state` slot, down to the store.
struct SlotStorage<'a> {
    slots: &'a Slots,
    host: &'a dyn ContractHost,
}

impl ContractStorage for SlotStorage<'_> {
    fn get(&self, contract: &Bytes32, key: i64) -> Result<i64, StorageError> {
        let slot = &self.slots.contract_state;
        if slot.has_provider() {
            let below = HostFn(|c: &Bytes32, k: i64| self.host.storage(c, k).map_err(plugin_error));
            if let Some(v) = slot.get(self.host.store_id(), contract, key, below.as_store()) {
                return Ok(v);
            }
        }
        self.host.storage(contract, key)
    }
}

/// One contract call, through the four `vm.*` slots, each falling back to its baseline: the
/// code from `vm.code_loader` (baseline: read it and [`validate_code`] it), metered by
/// `vm.metering` (baseline: [`meter::instrument`]), run by `vm.module_cache` (baseline:
/// [`Vm::run`], which compiles it), with storage reads through `vm.contract_state` (baseline: the
/// store). The caller applies the writes of a call that returned, and tells `vm.contract_state`
/// ([`crate::slot::ContractStateSlot::written`]).
pub fn call_contract(
    slots: &Slots, vm: &Vm, host: &dyn ContractHost, contract: &Bytes32, input: i64, gas: u64,
) -> Result<CallOutcome, StorageError> {
    let loaded = load_code(slots, host, contract)?;
    let code = match loaded {
        LoadedCode::Valid(code) => code,
        LoadedCode::Invalid(e) => {
            return Ok(CallOutcome::failed(0, CallFailure::Invalid(e.into())))
        }
        LoadedCode::Missing => {
            return Ok(CallOutcome::failed(0, CallFailure::NoContract(*contract)))
        }
    };
    let metered = match slots.metering.instrument(&code) {
        Some(m) => m,
        None => match meter::instrument(&code) {
            Ok(wasm) => Metered {
                wasm: wasm.into(),
                counter: GasCounter::HostCall,
            },
            Err(e) => return Ok(CallOutcome::failed(0, CallFailure::Invalid(e))),
        },
    };
    let storage = SlotStorage { slots, host };
    if slots.module_cache.has_provider() {
        let request = CallRequest {
            key: Bytes32(Sha256::digest(&metered.wasm).into()),
            wasm: metered.wasm.as_slice().into(),
            counter: metered.counter,
            contract: *contract,
            input,
            gas: gas.min(i64::MAX as u64),
        };
        let store = HostFn(|c: &Bytes32, k: i64| storage.get(c, k).map_err(plugin_error));
        if let Some(r) = slots.module_cache.run(&request, store.as_store()) {
            return Ok(CallOutcome::from(r));
        }
    }
    vm.run(
        &metered.wasm,
        metered.counter,
        *contract,
        input,
        gas,
        &storage,
    )
}

/// The code of `contract`, loaded and validated through `vm.code_loader`.
fn load_code(
    slots: &Slots, host: &dyn ContractHost, contract: &Bytes32,
) -> Result<LoadedCode, StorageError> {
    if slots.code_loader.has_provider() {
        let Some(hash) = host.code_hash(contract)? else {
            return Ok(LoadedCode::Missing);
        };
        let source = HostCode(|c: &Bytes32| host.code(c).map_err(plugin_error));
        if let Some(loaded) = slots.code_loader.load(contract, &hash, source.as_source()) {
            return Ok(loaded);
        }
    }
    Ok(baseline_load(host.code(contract)?))
}

/// The `vm.code_loader` baseline's answer for stored `code`.
pub fn baseline_load(code: Option<Vec<u8>>) -> LoadedCode {
    match code {
        None => LoadedCode::Missing,
        Some(code) => match validate_code(&code) {
            Ok(()) => LoadedCode::Valid(code.into()),
            Err(e) => LoadedCode::Invalid(e.into()),
        },
    }
}

impl From<CallResult> for CallOutcome {
    fn from(r: CallResult) -> CallOutcome {
        let result = match r.end {
            CallEnd::Returned { value, writes } => {
                Ok((value, writes.iter().map(|w| (w.key, w.value)).collect()))
            }
            CallEnd::OutOfGas => Err(CallFailure::OutOfGas),
            CallEnd::Trap(t) => Err(CallFailure::Trap(t.into())),
            CallEnd::Invalid(e) => Err(CallFailure::Invalid(e.into())),
        };
        CallOutcome {
            gas_used: r.gas_used,
            result,
        }
    }
}

impl From<&CallOutcome> for CallResult {
    fn from(o: &CallOutcome) -> CallResult {
        let end = match &o.result {
            Ok((value, writes)) => CallEnd::Returned {
                value: *value,
                writes: writes
                    .iter()
                    .map(|&(key, value)| StorageWrite { key, value })
                    .collect(),
            },
            Err(CallFailure::OutOfGas) => CallEnd::OutOfGas,
            Err(CallFailure::Trap(t)) => CallEnd::Trap(t.as_str().into()),
            Err(CallFailure::Invalid(e)) => CallEnd::Invalid(e.as_str().into()),
            Err(f @ CallFailure::NoContract(_)) => CallEnd::Invalid(f.to_string().into()),
        };
        CallResult {
            gas_used: o.gas_used,
            end,
        }
    }
}

/// A trap's deterministic description: wasmtime's trap code, or the error's first line.
fn describe_trap(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(t) => t.to_string(),
        None => e
            .to_string()
            .lines()
            .next()
            .unwrap_or("unknown")
            .to_string(),
    }
}

/// Contracts and their storage in memory: a [`ContractHost`] for measurements and tests
/// that need no state store.
#[derive(Debug, Clone, Default)]
pub struct MemoryChain {
    pub code: std::collections::HashMap<Bytes32, Vec<u8>>,
    pub storage: MemoryStorage,
}

impl MemoryChain {
    /// The genesis contracts, with empty storage.
    pub fn with_genesis_contracts() -> MemoryChain {
        MemoryChain {
            code: contracts::genesis()
                .iter()
                .map(|c| (c.address, c.code.clone()))
                .collect(),
            storage: MemoryStorage::default(),
        }
    }
}

impl ContractHost for MemoryChain {
    fn code(&self, contract: &Bytes32) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.code.get(contract).cloned())
    }
    fn code_hash(&self, contract: &Bytes32) -> Result<Option<Bytes32>, StorageError> {
        Ok(self
            .code
            .get(contract)
            .map(|c| Bytes32(Sha256::digest(c).into())))
    }
    fn storage(&self, contract: &Bytes32, key: i64) -> Result<i64, StorageError> {
        self.storage.get(contract, key)
    }
    fn store_id(&self) -> u64 {
        0
    }
}

/// Storage that exists only in memory (tests, the micro benchmarks).
#[derive(Debug, Clone, Default)]
pub struct MemoryStorage(pub std::collections::HashMap<(Bytes32, i64), i64>);

impl ContractStorage for MemoryStorage {
    fn get(&self, contract: &Bytes32, key: i64) -> Result<i64, StorageError> {
        Ok(self.0.get(&(*contract, key)).copied().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every test module's outcomes on a pooled VM are the on-demand VM's, the table beyond
    /// a pool slot included (which the pooled VM does not instantiate, and says so).
    #[test]
    fn a_pooled_vm_answers_as_the_on_demand_one_or_says_it_cannot() {
        let pooled = Vm::pooled(4).unwrap();
        assert_eq!(pooled.fingerprint(), Vm::shared().fingerprint());
        let storage = MemoryStorage::default();
        let mut refused = Vec::new();
        for (name, code, inputs) in contracts::test_modules() {
            let wasm = meter::instrument(&code).unwrap();
            // A pooled engine refuses to compile a module beyond its slots' limits.
            let Ok(module) = pooled.compile(&wasm) else {
                refused.push(name);
                continue;
            };
            for input in inputs {
                let want = Vm::shared()
                    .run(
                        &wasm,
                        GasCounter::HostCall,
                        Bytes32([1; 32]),
                        input,
                        50_000,
                        &storage,
                    )
                    .unwrap();
                match pooled.run_compiled(
                    &module,
                    GasCounter::HostCall,
                    Bytes32([1; 32]),
                    input,
                    50_000,
                    &storage,
                ) {
                    Ran::Done(got) => assert_eq!(got.unwrap(), want, "{name}({input})"),
                    Ran::NotInstantiated(_) => refused.push(name),
                }
            }
        }
        assert_eq!(refused, ["table"]);
    }

    /// A pool of one: a call made while the first is running (from its storage read) finds
    /// no free slot, and is refused rather than failed.
    #[test]
    fn a_pooled_vm_refuses_a_call_it_has_no_free_slot_for() {
        let pooled = Vm::pooled(1).unwrap();
        let wasm = meter::instrument(&wat::parse_str(contracts::COUNTER_WAT).unwrap()).unwrap();
        let module = pooled.compile(&wasm).unwrap();
        // The outcome, or `None` if the call was not instantiated.
        let run = |storage: &dyn ContractStorage| match pooled.run_compiled(
            &module,
            GasCounter::HostCall,
            Bytes32([1; 32]),
            3,
            1_000_000,
            storage,
        ) {
            Ran::Done(outcome) => Some(outcome),
            Ran::NotInstantiated(_) => None,
        };
        struct Nested<'a>(
            &'a (dyn Fn() -> bool + Sync),
            std::sync::Mutex<Option<bool>>,
        );
        impl ContractStorage for Nested<'_> {
            fn get(&self, _: &Bytes32, _: i64) -> Result<i64, StorageError> {
                *self.1.lock().unwrap() = Some((self.0)());
                Ok(41)
            }
        }
        let inner_served = || run(&MemoryStorage::default()).is_some();
        let nested = Nested(&inner_served, Default::default());
        let outer = run(&nested).expect("the first call has the slot").unwrap();
        assert_eq!(outer.result.unwrap().0, 42);
        assert_eq!(
            *nested.1.lock().unwrap(),
            Some(false),
            "the nested call was refused"
        );
        // The slot is free again.
        assert!(run(&MemoryStorage::default()).is_some());
    }

    fn call(wat: &str, input: i64, gas: u64, storage: MemoryStorage) -> CallOutcome {
        let code = wat::parse_str(wat).unwrap();
        Vm::shared()
            .call(&code, Bytes32([1; 32]), input, gas, &storage)
            .unwrap()
    }

    #[test]
    fn counter_reads_and_writes_storage() {
        let mut s = MemoryStorage::default();
        s.0.insert((Bytes32([1; 32]), 3), 41);
        let out = call(contracts::COUNTER_WAT, 3, 1_000_000, s);
        let (ret, writes) = out.result.unwrap();
        assert_eq!(ret, 42);
        assert_eq!(writes, vec![(3, 42)]);
        assert!(out.gas_used > STORAGE_READ_GAS + STORAGE_WRITE_GAS);
    }

    #[test]
    fn gas_is_deterministic_and_grows_with_work() {
        let compute = |rounds| {
            call(
                contracts::COMPUTE_WAT,
                rounds,
                10_000_000,
                Default::default(),
            )
        };
        let [a, b, c, d] = [10, 10, 20, 100].map(compute);
        assert_eq!(a, b);
        // A fixed part plus the same cost per round: linear in the rounds.
        let per_ten = c.gas_used - a.gas_used;
        assert!(per_ten > 0);
        assert_eq!(d.gas_used - a.gas_used, 9 * per_ten);
    }

    #[test]
    fn out_of_gas_charges_everything_and_discards_writes() {
        let full = call(
            contracts::COMPUTE_WAT,
            50,
            10_000_000,
            MemoryStorage::default(),
        );
        let needed = full.gas_used;
        assert!(full.result.is_ok());
        // Exactly enough succeeds; one less runs out.
        let exact = call(contracts::COMPUTE_WAT, 50, needed, MemoryStorage::default());
        assert_eq!(exact, full);
        let short = call(
            contracts::COMPUTE_WAT,
            50,
            needed - 1,
            MemoryStorage::default(),
        );
        assert_eq!(short.gas_used, needed - 1);
        assert_eq!(short.result, Err(CallFailure::OutOfGas));
    }

    #[test]
    fn traps_are_failures_with_stable_texts() {
        let wat = r#"(module (func (export "call") (param i64) (result i64)
            i64.const 1 local.get 0 i64.div_s))"#;
        let out = call(wat, 0, 100_000, MemoryStorage::default());
        assert_eq!(
            out.result,
            Err(CallFailure::Trap(
                "wasm trap: integer divide by zero".into()
            ))
        );
        assert!(out.gas_used > 0);
    }

    #[test]
    fn bad_code_is_refused_before_running() {
        for (wat, want) in [
            (
                r#"(module (func (export "main")))"#,
                "does not export `call`",
            ),
            (
                r#"(module (import "env" "clock" (func (result i64))) (func (export "call") (param i64) (result i64) local.get 0))"#,
                "which the host does not provide",
            ),
            (
                r#"(module (import "env" "gas" (func (param i64))) (func (export "call") (param i64) (result i64) local.get 0))"#,
                "which the host does not provide",
            ),
            (
                r#"(module (memory 17) (func (export "call") (param i64) (result i64) local.get 0))"#,
                "pages of memory",
            ),
            (
                r#"(module (func (export "call") (param i32) (result i64) i64.const 0))"#,
                "not (i64) -> i64",
            ),
        ] {
            let code = wat::parse_str(wat).unwrap();
            let err = validate_code(&code).unwrap_err();
            assert!(err.contains(want), "{wat}: {err}");
        }
        assert!(validate_code(b"\0asm garbage").is_err());
    }

    #[test]
    fn memory_cannot_grow_past_the_cap() {
        let wat = r#"(module (memory 1) (func (export "call") (param i64) (result i64)
            i32.const 100 memory.grow i64.extend_i32_s))"#;
        let out = call(wat, 0, 100_000, MemoryStorage::default());
        assert_eq!(out.result.unwrap().0, -1);
    }
}
