//! Drivers that compare a `vm.*` provider's answers with the baseline's, call by call. The
//! self-tests at load run them on the test contracts at a few gas limits
//! (`crate::selftest`); the conformance suites run them module by module on generated
//! contracts too, with gas swept across each call's range (`crate::conformance`).

use dubchain_plugin_api::{
    slots::{
        CallRequest, CallResult, CodeSourceRef, ContractStoreRef, GasCounter, HostCode, HostFn,
        LoadedCode, Metered,
    },
    types::Bytes32,
    PluginError,
};
use sha2::{Digest, Sha256};

use super::{baseline_load, meter, CallOutcome, ContractStorage, MemoryStorage, Vm};

/// A module to call: its name, its (unmetered, valid) code, and the inputs to call it with.
pub type TestModule = (String, Vec<u8>, Vec<i64>);

/// The contract every checked call runs as.
pub const CONTRACT: Bytes32 = Bytes32([0xc0; 32]);

/// Gas enough for any test call.
pub const AMPLE_GAS: u64 = 10_000_000;

/// The storage checked calls read: a value under keys -5..20 of [`CONTRACT`].
pub fn storage() -> MemoryStorage {
    let mut s = MemoryStorage::default();
    for k in -5..20 {
        s.0.insert((CONTRACT, k), k * 1_000 + 1);
    }
    s
}

/// The test contracts (`super::contracts::test_modules`), named.
pub fn test_modules() -> Vec<TestModule> {
    super::contracts::test_modules()
        .into_iter()
        .map(|(n, c, i)| (n.to_owned(), c, i))
        .collect()
}

/// Gas limits around what a call needs: ample, exactly enough, one short, and very little.
pub fn around(needed: u64) -> Vec<u64> {
    vec![AMPLE_GAS, needed, needed.saturating_sub(1), 50]
}

/// Gas limits across a call's range: none, one unit, every sixteenth of what it needs,
/// exactly that, one short and one over, and ample.
pub fn sweep(needed: u64) -> Vec<u64> {
    let mut g: Vec<u64> = (0..=16).map(|i| needed * i / 16).collect();
    g.extend([1, needed.saturating_sub(1), needed + 1, AMPLE_GAS]);
    g.sort_unstable();
    g.dedup();
    g
}

fn storage_error(e: super::StorageError) -> String {
    e.to_string()
}

/// `vm.metering`: each module metered by `instrument` and run by the host must give what the
/// baseline pipeline gives (result, writes, gas, trap) for every input at every limit of
/// `limits(gas the call needs)`.
pub fn metered_calls(
    modules: &[TestModule], limits: fn(u64) -> Vec<u64>,
    instrument: impl Fn(&[u8]) -> Result<Metered, String>,
) -> Result<(), String> {
    let (vm, st) = (Vm::shared(), storage());
    for (name, code, inputs) in modules {
        let metered = instrument(code).map_err(|e| format!("{name}: {e}"))?;
        for &input in inputs {
            let needed = vm
                .call(code, CONTRACT, input, AMPLE_GAS, &st)
                .map_err(storage_error)?
                .gas_used;
            for gas in limits(needed) {
                let want = vm
                    .call(code, CONTRACT, input, gas, &st)
                    .map_err(storage_error)?;
                let got = vm
                    .run(&metered.wasm, metered.counter, CONTRACT, input, gas, &st)
                    .map_err(storage_error)?;
                if got != want {
                    return Err(format!(
                        "{name}({input}) with {gas} gas: baseline {want:?}, plugin {got:?}"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// `vm.module_cache`: each module, metered the baseline way, run by `run` twice (first and
/// repeated) for every input at every limit of `limits(gas the call needs)`, must give what
/// the host's own run gives.
pub fn cached_calls(
    modules: &[TestModule], limits: fn(u64) -> Vec<u64>,
    run: impl Fn(&CallRequest<'_>, ContractStoreRef<'_>) -> Result<CallResult, String>,
) -> Result<(), String> {
    let (vm, st) = (Vm::shared(), storage());
    for (name, code, inputs) in modules {
        let wasm = meter::instrument(code).map_err(|e| format!("{name}: {e}"))?;
        for &input in inputs {
            let needed = vm
                .run(&wasm, GasCounter::HostCall, CONTRACT, input, AMPLE_GAS, &st)
                .map_err(storage_error)?
                .gas_used;
            for gas in limits(needed) {
                for round in ["first", "repeated"] {
                    call_once(&wasm, input, gas, &run)
                        .map_err(|e| format!("{name}({input}) with {gas} gas, {round} run: {e}"))?;
                }
            }
        }
    }
    Ok(())
}

/// One call of metered `wasm` through `run`, checked against the host's run of it.
pub fn call_once(
    wasm: &[u8], input: i64, gas: u64,
    run: impl Fn(&CallRequest<'_>, ContractStoreRef<'_>) -> Result<CallResult, String>,
) -> Result<(), String> {
    let (vm, st) = (Vm::shared(), storage());
    let want = vm
        .run(wasm, GasCounter::HostCall, CONTRACT, input, gas, &st)
        .map_err(storage_error)?;
    let below =
        HostFn(|c: &Bytes32, k: i64| st.get(c, k).map_err(|e| PluginError::failed(e.to_string())));
    let request = CallRequest {
        key: Bytes32(Sha256::digest(wasm).into()),
        wasm: wasm.into(),
        counter: GasCounter::HostCall,
        contract: CONTRACT,
        input,
        gas,
    };
    let got = CallOutcome::from(run(&request, below.as_store())?);
    if got != want {
        return Err(format!("baseline {want:?}, plugin {got:?}"));
    }
    Ok(())
}

/// Code to load: a name, and the bytes stored.
pub type StoredCode = (String, Vec<u8>);

/// Stored code every loader check asks for: each test contract, one the rules refuse, bytes
/// that are not wasm, and the empty code. (Where nothing is deployed there is no code hash,
/// and the host answers `Missing` without asking the loader.)
pub fn stored_codes() -> Vec<StoredCode> {
    let mut codes: Vec<StoredCode> = test_modules()
        .into_iter()
        .map(|(n, c, _)| (format!("the {n} contract"), c))
        .collect();
    let refused = wat::parse_str(
        r#"(module (import "env" "clock" (func (result i64))) (func (export "call") (param i64) (result i64) local.get 0))"#,
    )
    .expect("assembles");
    codes.push((
        "a module with an import the rules refuse".to_owned(),
        refused,
    ));
    codes.push((
        "bytes that are not wasm".to_owned(),
        b"\0asm\x01\0\0\0garbage".to_vec(),
    ));
    codes.push(("empty code".to_owned(), Vec::new()));
    codes
}

/// `vm.code_loader`: `code` stored at `contract`, loaded by `load` twice, must give the
/// baseline's answer both times.
pub fn loads(
    contract: &Bytes32, code: &[u8],
    load: impl Fn(&Bytes32, &Bytes32, CodeSourceRef<'_>) -> Result<LoadedCode, String>,
) -> Result<(), String> {
    let hash = Bytes32(Sha256::digest(code).into());
    let source = HostCode(|_: &Bytes32| Ok(Some(code.to_vec())));
    let want = baseline_load(Some(code.to_vec()));
    for round in ["first", "repeated"] {
        let got = load(contract, &hash, source.as_source())?;
        if got != want {
            return Err(format!(
                "{round} load: baseline {}, plugin {}",
                brief(&want),
                brief(&got)
            ));
        }
    }
    Ok(())
}

/// `vm.code_loader`: an address whose code changes (a deploy rolled back and redone with
/// other code) must load its new code.
pub fn redeploy(
    load: impl Fn(&Bytes32, &Bytes32, CodeSourceRef<'_>) -> Result<LoadedCode, String>,
) -> Result<(), String> {
    let modules = test_modules();
    let contract = Bytes32([0xee; 32]);
    for (_, code, _) in [&modules[0], &modules[modules.len() - 1]] {
        loads(&contract, code, &load).map_err(|e| format!("after its code changed: {e}"))?;
    }
    Ok(())
}

/// A loaded code's verdict without its bytes.
fn brief(l: &LoadedCode) -> String {
    match l {
        LoadedCode::Valid(c) => format!("valid ({} bytes)", c.len()),
        LoadedCode::Invalid(e) => format!("invalid ({e})"),
        LoadedCode::Missing => "missing".to_owned(),
    }
}
