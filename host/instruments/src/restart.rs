//! `bench --module-restart RUNS`: `vm_jit_caching`'s restart figure. A node that restarts
//! loads its plugins again and calls its contracts again; with `artifacts = "DIR"` the
//! plugin loads each module's precompiled artifact instead of compiling it. This measures
//! both ways on freshly loaded hosts (a library loaded again, nothing in memory), runs
//! alternating: the load itself (open, init, self-test), then the first call of each of 20
//! contracts, each answer checked against the baseline's.

use std::{path::Path, time::Instant};

use dubchain_host::{
    host::{Host, HostOptions},
    measure::{self, Estimate},
    session::Session,
    vm::{MemoryStorage, Vm},
    workload,
};
use dubchain_plugin_api::{
    slots::{CallRequest, CallResult, GasCounter, HostFn},
    types::Bytes32,
};

/// The plugin measured.
pub const PLUGIN: &str = "vm_jit_caching";
/// Contracts called once each after the restart.
pub const CONTRACTS: usize = 20;
/// Rounds of the compute contract a call runs (as the `module_run` case's).
const ROUNDS: i64 = 100;
const GAS: u64 = 1_000_000;

/// Milliseconds per run of one side.
#[derive(Debug, Clone, Default)]
pub struct Side {
    /// Loading a fresh host with the plugin: library, init, self-test.
    pub load_ms: Vec<f64>,
    /// The first call of each contract, after the load.
    pub first_calls_ms: Vec<f64>,
}

/// The figure: both sides, and compile / artifact per run for the first calls and for the
/// whole restart (load and first calls).
#[derive(Debug, Clone)]
pub struct Figure {
    pub compile: Side,
    pub artifacts: Side,
    pub first_calls_ratio: Estimate,
    pub restart_ratio: Estimate,
    /// Whether every answer was the baseline's.
    pub identical: bool,
}

/// Runs the measurement: `runs` fresh hosts per side, sides alternating, after one host
/// with artifacts on wrote them to `dir` (emptied first) and was dropped.
pub fn run(s: &Session, runs: usize, seed: u64, dir: &Path) -> Result<Figure, String> {
    if s.manifest(PLUGIN).is_none() {
        return Err(format!(
            "no plugin `{PLUGIN}` in {}; the restart figure is its",
            s.options.plugin_dir.display()
        ));
    }
    let resolution = crate::micro::alone(s, PLUGIN)?;
    let w = workload::module_calls(seed, CONTRACTS, 0);
    let storage = MemoryStorage::default();
    let want: Vec<CallResult> = w
        .contracts
        .iter()
        .map(|(contract, _, wasm)| {
            let out = Vm::shared()
                .run(wasm, GasCounter::HostCall, *contract, ROUNDS, GAS, &storage)
                .map_err(|e| e.to_string())?;
            Ok(CallResult::from(&out))
        })
        .collect::<Result<_, String>>()?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let with_artifacts = format!("artifacts = {:?}\n", dir.display().to_string());
    let mut identical = true;
    // One restart: a fresh host with `config`, then each contract's first call.
    let mut restart = |config: &str| -> Result<(f64, f64), String> {
        let t = Instant::now();
        let host = Host::new(HostOptions::default());
        let report = host
            .apply(&s.manifests, &resolution, |_| config.to_owned())
            .map_err(|p| format!("the plan has {} problem(s)", p.len()))?;
        if let Some(e) = report.failed.first() {
            return Err(e.to_string());
        }
        let load = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let answers: Vec<Option<CallResult>> = w
            .contracts
            .iter()
            .map(|(contract, key, wasm)| first_call(&host, *contract, *key, wasm))
            .collect();
        let calls = t.elapsed().as_secs_f64() * 1e3;
        identical &= answers
            .iter()
            .zip(&want)
            .all(|(a, w)| a.as_ref() == Some(w));
        Ok((load, calls))
    };
    restart(&with_artifacts)?;
    let (mut compile, mut artifacts) = (Side::default(), Side::default());
    let record = |side: &mut Side, (load, calls): (f64, f64)| {
        side.load_ms.push(load);
        side.first_calls_ms.push(calls);
    };
    for round in 0..runs.max(2) {
        if round % 2 == 0 {
            record(&mut compile, restart("")?);
            record(&mut artifacts, restart(&with_artifacts)?);
        } else {
            record(&mut artifacts, restart(&with_artifacts)?);
            record(&mut compile, restart("")?);
        }
    }
    let ratios = |f: &dyn Fn(&Side, usize) -> f64| -> Estimate {
        let r: Vec<f64> = (0..compile.load_ms.len())
            .map(|i| f(&compile, i) / f(&artifacts, i).max(1e-9))
            .collect();
        // A handful of whole restarts per side: the t interval, as for the chain runs.
        measure::log_t_interval(&r)
    };
    let first_calls_ratio = ratios(&|s, i| s.first_calls_ms[i]);
    let restart_ratio = ratios(&|s, i| s.load_ms[i] + s.first_calls_ms[i]);
    Ok(Figure {
        compile,
        artifacts,
        first_calls_ratio,
        restart_ratio,
        identical,
    })
}

/// A contract's call through the host's `vm.module_cache` slot; `None` if the plugin did
/// not answer it.
fn first_call(host: &Host, contract: Bytes32, key: Bytes32, wasm: &[u8]) -> Option<CallResult> {
    let request = CallRequest {
        key,
        wasm: wasm.into(),
        counter: GasCounter::HostCall,
        contract,
        input: ROUNDS,
        gas: GAS,
    };
    let store = HostFn(|_: &Bytes32, _: i64| Ok(0));
    host.slots.module_cache.run(&request, store.as_store())
}

/// The figure as a markdown table.
pub fn markdown(f: &Figure) -> String {
    let med = |v: &[f64]| measure::median(&mut v.to_vec());
    let row =
        |what: &str, c: &[f64], a: &[f64]| format!("| {what} | {:.2} | {:.2} |\n", med(c), med(a));
    let total = |s: &Side| -> Vec<f64> {
        s.load_ms
            .iter()
            .zip(&s.first_calls_ms)
            .map(|(l, c)| l + c)
            .collect()
    };
    let mut out = format!(
        "`{PLUGIN}` restarted {} times per side (fresh hosts, alternating): medians in ms.\n\n\
         | | compiled after the restart | loaded from artifacts |\n|---|---|---|\n",
        f.compile.load_ms.len()
    );
    out += &row(
        "load (library, init, self-test)",
        &f.compile.load_ms,
        &f.artifacts.load_ms,
    );
    out += &row(
        &format!("first call of each of {CONTRACTS} contracts"),
        &f.compile.first_calls_ms,
        &f.artifacts.first_calls_ms,
    );
    out += &row(
        "restart to the last first call",
        &total(&f.compile),
        &total(&f.artifacts),
    );
    out += &format!(
        "\nFirst calls {:.2}x [{:.2}, {:.2}] faster from artifacts; the whole restart {:.2}x [{:.2}, {:.2}] (geometric means of the per-restart ratios, 95% Student-t intervals). Every answer the baseline's: {}.\n",
        f.first_calls_ratio.median,
        f.first_calls_ratio.low,
        f.first_calls_ratio.high,
        f.restart_ratio.median,
        f.restart_ratio.low,
        f.restart_ratio.high,
        if f.identical { "yes" } else { "**NO**" }
    );
    out
}
