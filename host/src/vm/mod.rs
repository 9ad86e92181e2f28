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

pub mod contracts;
pub mod meter;

use std::{collections::BTreeMap, sync::OnceLock};

use dubchain_plugin_api::types::Bytes32;
pub use dubchain_plugin_api::vm::{
    features, validate_code, INSTRUCTION_GAS, MAX_MEMORY_PAGES, STORAGE_READ_GAS, STORAGE_WRITE_GAS,
};
use wasmtime::{
    Caller, Config, Engine, Instance, Linker, Module, Store, StoreLimits, StoreLimitsBuilder,
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
pub trait ContractStorage: Send + 'static {
    /// The value under `key` in `contract`'s storage; 0 when absent.
    fn get(&mut self, contract: &Bytes32, key: i64) -> Result<i64, StorageError>;
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
    storage: Box<dyn ContractStorage>,
    writes: BTreeMap<i64, i64>,
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

/// The engine configuration contracts run under: Cranelift with NaNs canonicalised, so that
/// float results are deterministic. (Which wasm features a contract may use is decided by
/// [`validate_code`], before anything is compiled.)
pub fn engine_config() -> Config {
    let mut c = Config::new();
    c.cranelift_nan_canonicalization(true);
    c
}

impl Vm {
    /// A VM with its own engine.
    pub fn new() -> Vm {
        let engine =
            Engine::new(&engine_config()).expect("the contract engine configuration is valid");
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
                    let ctx = caller.data_mut();
                    ctx.charge(STORAGE_READ_GAS)?;
                    if let Some(v) = ctx.writes.get(&key) {
                        return Ok(*v);
                    }
                    let contract = ctx.contract;
                    match ctx.storage.get(&contract, key) {
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
                    let ctx = caller.data_mut();
                    ctx.charge(STORAGE_WRITE_GAS)?;
                    ctx.writes.insert(key, value);
                    Ok(())
                },
            )
            .expect("fresh linker");
        Vm { engine, linker }
    }

    /// The VM the node uses (one engine per process; compiled code is not shared between
    /// calls, see the module docs).
    pub fn shared() -> &'static Vm {
        static VM: OnceLock<Vm> = OnceLock::new();
        VM.get_or_init(Vm::new)
    }

    /// Runs `contract`'s `call(input)` with `gas` to spend: validates and instruments the
    /// code, compiles it, and runs it with storage reads going to `storage`. An `Err` is a
    /// state store failure under a host function (the node's problem, not the call's).
    pub fn call(
        &self,
        code: &[u8],
        contract: Bytes32,
        input: i64,
        gas: u64,
        storage: Box<dyn ContractStorage>,
    ) -> Result<CallOutcome, StorageError> {
        let failed = |gas_used, f| CallOutcome {
            gas_used,
            result: Err(f),
        };
        if let Err(e) = validate_code(code) {
            return Ok(failed(0, CallFailure::Invalid(e)));
        }
        let instrumented = match meter::instrument(code) {
            Ok(w) => w,
            Err(e) => return Ok(failed(0, CallFailure::Invalid(e))),
        };
        let module = match Module::new(&self.engine, &instrumented) {
            Ok(m) => m,
            Err(e) => {
                return Ok(failed(
                    0,
                    CallFailure::Invalid(format!("does not compile: {e}")),
                ))
            }
        };
        let mut store = Store::new(
            &self.engine,
            CallContext {
                contract,
                storage,
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
        let run = |store: &mut Store<CallContext>| -> wasmtime::Result<i64> {
            let instance: Instance = self.linker.instantiate(&mut *store, &module)?;
            let f = instance.get_typed_func::<i64, i64>(&mut *store, "call")?;
            f.call(&mut *store, input)
        };
        let result = run(&mut store);
        let ctx = store.into_data();
        if let Some(fault) = ctx.fault {
            return Err(fault);
        }
        let gas_used = gas - ctx.remaining;
        Ok(match result {
            Ok(v) => CallOutcome {
                gas_used,
                result: Ok((v, ctx.writes.into_iter().collect())),
            },
            Err(e) if e.is::<OutOfGas>() => failed(gas, CallFailure::OutOfGas),
            Err(e) => failed(gas_used, CallFailure::Trap(describe_trap(&e))),
        })
    }
}

impl Default for Vm {
    fn default() -> Self {
        Vm::new()
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

/// Storage that exists only in memory (tests, the micro benchmarks).
#[derive(Debug, Clone, Default)]
pub struct MemoryStorage(pub std::collections::HashMap<(Bytes32, i64), i64>);

impl ContractStorage for MemoryStorage {
    fn get(&mut self, contract: &Bytes32, key: i64) -> Result<i64, StorageError> {
        Ok(self.0.get(&(*contract, key)).copied().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(wat: &str, input: i64, gas: u64, storage: MemoryStorage) -> CallOutcome {
        let code = wat::parse_str(wat).unwrap();
        Vm::shared()
            .call(&code, Bytes32([1; 32]), input, gas, Box::new(storage))
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
        let a = call(
            contracts::COMPUTE_WAT,
            10,
            10_000_000,
            MemoryStorage::default(),
        );
        let b = call(
            contracts::COMPUTE_WAT,
            10,
            10_000_000,
            MemoryStorage::default(),
        );
        let c = call(
            contracts::COMPUTE_WAT,
            20,
            10_000_000,
            MemoryStorage::default(),
        );
        let d = call(
            contracts::COMPUTE_WAT,
            100,
            10_000_000,
            MemoryStorage::default(),
        );
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
