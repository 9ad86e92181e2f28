//! `vm_jit_caching`: the `vm.module_cache` slot, with compiled modules kept.
//!
//! The baseline compiles a contract's metered code with wasmtime (Cranelift) on every call,
//! then instantiates and runs it. This plugin runs the host's own VM (`dubchain_host::vm`,
//! compiled into the library: the same engine settings, host functions and gas rules), but
//! keeps each compiled module under the request's key (the SHA-256 of the metered code, so
//! a key names one module whatever address runs it): a call to a contract compiled before
//! instantiates and runs it. Results, writes, gas and trap texts are the baseline's, because
//! what runs is the same code under the same engine configuration.
//!
//! * **Bounded by count.** Two generations of at most `modules / 2` each
//!   ([`dubchain_plugin_api::cache`]): a module goes into the young one; when it is full it
//!   becomes the old one (the previous old one is dropped), and a hit in the old one moves
//!   the module back. A compiled module's size is wasmtime's; contracts are small, so the
//!   bound is a count.
//! * **Compiles outside the lock.** Two calls missing the same key at once both compile; the
//!   second's module replaces the first's, which is identical.
//! * **Code that does not compile** is not kept: the call answers what the baseline does.
//!
//! * **Precompiled artifacts on disk** (`artifacts = "DIR"`, off by default): a module
//!   compiled is also written to `DIR/<key>.cwasm`, so a restarted node loads it instead of
//!   compiling. wasmtime's `Module::deserialize` runs whatever native code it is given, so
//!   an artifact is used only after its integrity is checked ([`artifacts`]): a truncated,
//!   corrupted, foreign (another build or engine configuration) or planted file is
//!   reported on stderr, removed and recompiled, never deserialized.
//!
//! * **Instances from a pool** (`pool = N`, 64 by default; 0 turns it off): the plugin's
//!   engine uses wasmtime's pooling allocator, with slots for N calls at once reserved at
//!   init and reused, so an instantiation maps no memory. Pooling does not change compiled
//!   code. A call the pool cannot serve (N calls already running, or a module beyond a
//!   slot's limits, which the pooled engine does not even compile) runs as the baseline
//!   does: compiled and instantiated on demand, not cached.

use std::{path::PathBuf, sync::Arc, sync::Mutex};

pub mod artifacts;

use dubchain_host::vm::{CallOutcome, Compiled, ContractStorage, Ran, StorageError, Vm};
use dubchain_plugin_api::{
    cache::Generations,
    export_plugin, settings,
    slots::{CallRequest, CallResult, ContractStoreRef, ModuleCache},
    types::Bytes32,
    PluginError,
};

dubchain_plugin_api::declare_settings! {
    /// The most compiled modules kept (at least 2).
    modules: usize = 256,
    /// Where precompiled artifacts are kept across restarts (none: compile after each).
    artifacts: Option<PathBuf> = None,
    /// Calls at once the instance pool serves (0: no pool, instances on demand).
    pool: u32 = 64,
}

/// Compiled modules by key.
type Modules = Generations<Bytes32, Arc<Compiled>>;

/// The plugin.
#[derive(Debug)]
pub struct JitCache {
    /// Modules a generation holds before it ages (half the bound).
    generation: usize,
    inner: Mutex<Modules>,
    disk: Option<artifacts::Artifacts>,
    /// The engine modules are compiled for and instantiated from: pooled, or the process's
    /// on-demand one.
    vm: VmRef,
}

#[derive(Debug)]
enum VmRef {
    Pooled(Box<Vm>),
    OnDemand,
}

impl VmRef {
    fn get(&self) -> &Vm {
        match self {
            VmRef::Pooled(vm) => vm,
            VmRef::OnDemand => Vm::shared(),
        }
    }
}

/// The call's storage reads, to the host.
struct Below<'a, 'b>(&'a ContractStoreRef<'b>);

impl ContractStorage for Below<'_, '_> {
    fn get(&self, contract: &Bytes32, key: i64) -> Result<i64, StorageError> {
        self.0
            .get(contract, key)
            .into_result()
            .map_err(|e| e.to_string().into())
    }
}

impl JitCache {
    /// From the plugin's configuration table.
    pub fn from_config(config: &str) -> Result<Self, PluginError> {
        let s: Settings = settings::parse(config)?;
        settings::at_least("modules", s.modules, 2)?;
        let vm = match s.pool {
            0 => VmRef::OnDemand,
            n => VmRef::Pooled(Box::new(Vm::pooled(n).map_err(|e| {
                PluginError::failed(format!("{e}; set pool = 0 to instantiate on demand"))
            })?)),
        };
        let disk = match s.artifacts {
            None => None,
            Some(dir) => Some(artifacts::Artifacts::open(dir, vm.get())?),
        };
        Ok(JitCache {
            generation: s.modules / 2,
            inner: Mutex::default(),
            disk,
            vm,
        })
    }

    /// The module of `key`: from the artifact on disk if there is a sound one, else
    /// compiled (and written to disk). `Err` is the outcome of code that does not compile.
    fn load(&self, vm: &Vm, key: &Bytes32, wasm: &[u8]) -> Result<Compiled, CallOutcome> {
        if let Some(m) = self.disk.as_ref().and_then(|d| d.load(vm, key)) {
            return Ok(m);
        }
        let m = vm.compile(wasm)?;
        if let Some(d) = &self.disk {
            d.store(vm, key, &m);
        }
        Ok(m)
    }

    fn inner(&self) -> Result<std::sync::MutexGuard<'_, Modules>, PluginError> {
        self.inner
            .lock()
            .map_err(|_| PluginError::poisoned("the module cache"))
    }

    /// The module kept for `key`, moved to the young generation if it was old.
    fn lookup(&self, key: &Bytes32) -> Result<Option<Arc<Compiled>>, PluginError> {
        Ok(self.inner()?.get(key, self.generation))
    }

    /// Files `module` under `key` in the young generation, aging it first if it is full.
    fn keep(&self, key: Bytes32, module: Arc<Compiled>) -> Result<(), PluginError> {
        self.inner()?.insert(key, module, self.generation);
        Ok(())
    }
}

impl ModuleCache for JitCache {
    fn run(
        &self, r: &CallRequest<'_>, storage: &ContractStoreRef<'_>,
    ) -> Result<CallResult, PluginError> {
        let vm = self.vm.get();
        let module = match self.lookup(&r.key)? {
            Some(m) => m,
            None => match self.load(vm, &r.key, &r.wasm) {
                Ok(m) => {
                    let m = Arc::new(m);
                    self.keep(r.key, m.clone())?;
                    m
                }
                Err(outcome) => match self.vm {
                    VmRef::OnDemand => return Ok(CallResult::from(&outcome)),
                    // A pooled engine refuses a module beyond its slots' limits too, so
                    // the baseline's own way answers: compiled (or refused) on demand.
                    VmRef::Pooled(_) => return on_demand(r, &Below(storage)),
                },
            },
        };
        let below = Below(storage);
        match vm.run_compiled(&module, r.counter, r.contract, r.input, r.gas, &below) {
            Ran::Done(out) => outcome(out),
            // Not instantiated here (no free pool slot, or a failure any engine has).
            Ran::NotInstantiated(_) => on_demand(r, &below),
        }
    }
}

/// The call the baseline's own way: compiled and instantiated on demand.
fn on_demand(r: &CallRequest<'_>, below: &Below<'_, '_>) -> Result<CallResult, PluginError> {
    outcome(Vm::shared().run(&r.wasm, r.counter, r.contract, r.input, r.gas, below))
}

fn outcome(out: Result<CallOutcome, StorageError>) -> Result<CallResult, PluginError> {
    out.map(|o| CallResult::from(&o))
        .map_err(|e| PluginError::failed(e.to_string()))
}

export_plugin! {
    name: "vm_jit_caching",
    module_cache: JitCache::from_config,
}

#[cfg(test)]
mod tests {
    use super::*;
    use dubchain_host::vm::{contracts, MemoryStorage};
    use dubchain_plugin_api::{slots::GasCounter, slots::HostFn, vm::meter};
    use sha2::{Digest, Sha256};

    fn metered(wat: &str) -> (Vec<u8>, Bytes32) {
        let wasm = meter::instrument(&wat::parse_str(wat).unwrap()).unwrap();
        let key = Bytes32(Sha256::digest(&wasm).into());
        (wasm, key)
    }

    fn request(wasm: &[u8], key: Bytes32, input: i64) -> CallRequest<'_> {
        CallRequest {
            key,
            wasm: wasm.into(),
            counter: GasCounter::HostCall,
            contract: Bytes32([1; 32]),
            input,
            gas: 1_000_000,
        }
    }

    /// What the baseline answers with every storage key holding `value`.
    fn baseline(wasm: &[u8], input: i64, value: i64) -> CallResult {
        let mut storage = MemoryStorage::default();
        storage.0.insert((Bytes32([1; 32]), input), value);
        let out = Vm::shared()
            .run(
                wasm,
                GasCounter::HostCall,
                Bytes32([1; 32]),
                input,
                1_000_000,
                &storage,
            )
            .unwrap();
        CallResult::from(&out)
    }

    /// A pool of one: a call made while another runs (from its storage read) finds no free
    /// slot and is answered the baseline's way, as is a module the pool cannot hold; calls
    /// the pool serves answer as the baseline does too.
    #[test]
    fn calls_the_pool_cannot_serve_answer_as_the_baseline() {
        let cache = JitCache::from_config("pool = 1").unwrap();
        assert!(matches!(cache.vm, VmRef::Pooled(_)));
        let (wasm, key) = metered(contracts::COUNTER_WAT);
        let nested = std::sync::Mutex::new(None);
        let store = HostFn(|_: &Bytes32, _: i64| {
            let inner = HostFn(|_: &Bytes32, _: i64| Ok(41));
            *nested.lock().unwrap() = Some(cache.run(&request(&wasm, key, 5), &inner.as_store()));
            Ok(41)
        });
        let outer = cache
            .run(&request(&wasm, key, 3), &store.as_store())
            .unwrap();
        assert_eq!(outer, baseline(&wasm, 3, 41));
        let inner = nested.lock().unwrap().take().expect("the nested call ran");
        assert_eq!(inner.unwrap(), baseline(&wasm, 5, 41));

        let (wasm, key) = metered(contracts::TABLE_WAT);
        let zero = HostFn(|_: &Bytes32, _: i64| Ok(0));
        for _ in 0..2 {
            let got = cache
                .run(&request(&wasm, key, 4), &zero.as_store())
                .unwrap();
            assert_eq!(got, baseline(&wasm, 4, 0));
        }
    }

    /// `pool = 0` keeps the process's on-demand engine.
    #[test]
    fn no_pool_when_asked_for_none() {
        let cache = JitCache::from_config("pool = 0").unwrap();
        assert!(matches!(cache.vm, VmRef::OnDemand));
    }
}
