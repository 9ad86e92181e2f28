//! `bench`, the benchmark suite, and `bench-child` (one case under callgrind, internal).

use std::process::ExitCode;

use anyhow::Result;
use dubchain_host::session::Session;
use dubchain_instruments::{
    callgrind,
    micro::Side,
    report, restart,
    suite::{self, BenchOptions},
    system::SystemOptions,
    BenchResults,
};

use crate::{
    args::{BenchArgs, BenchChildArgs},
    print,
};

pub fn bench(s: &Session, args: &BenchArgs, global_args: Vec<String>) -> Result<ExitCode> {
    print::manifest_errors(s);
    let micro = (!args.no_micro).then(|| args.micro.options(args.rounds));
    if args.list_metrics {
        for name in BenchResults::metric_names(s, micro.as_ref()) {
            println!("{name}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(runs) = args.module_restart {
        let dir = args.out.join("restart-artifacts");
        return match restart::run(s, runs, args.micro.micro_seed, &dir) {
            Ok(f) => {
                print!("{}", restart::markdown(&f));
                Ok(if f.identical {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
            Err(e) => {
                eprintln!("error: {e}");
                Ok(ExitCode::from(2))
            }
        };
    }
    let host = print::loaded_host(s);
    // A child of this run: the same plugin set and workload sizes.
    let child = |scratch| callgrind::Child {
        exe: std::env::current_exe().unwrap_or_else(|_| "dubchain-perf".into()),
        global_args: global_args.clone(),
        workload_args: args.micro.child_args(),
        scratch,
    };
    let options = BenchOptions {
        micro,
        system: (!args.no_system).then(|| SystemOptions {
            workload: args.system.workload(),
            blocks: args.system.blocks,
            runs: args.runs.into(),
            data_dir: args.out.join("scratch"),
            network: None,
            catch_up: false,
            count_allocations: true,
        }),
        instructions: args
            .instructions
            .then(|| (child(callgrind::scratch(&args.out)), args.instr_iterations)),
        more_processes: (args.processes > 1)
            .then(|| (child(args.out.join("processes")), args.processes - 1)),
        budgets: args.budgets.clone(),
        save_baseline: args.save_baseline.clone(),
        baseline: args.baseline.clone(),
        allow_fingerprint_mismatch: args.allow_fingerprint_mismatch,
        threshold: args.threshold,
        require_promises: args.require_promises,
        out: args.out.clone(),
        isolation: args.isolation,
    };
    let outcome = match suite::run(s, &host, &options, &print::stage_progress()) {
        Ok(o) => o,
        Err(refused) => {
            eprintln!("error: {refused}");
            return Ok(ExitCode::from(2));
        }
    };
    print!("{}", report::markdown(&outcome.results));
    for w in &outcome.written {
        println!("wrote {}", w.display());
    }
    if outcome.failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for f in &outcome.failures {
            eprintln!("FAIL: {f}");
        }
        Ok(ExitCode::FAILURE)
    }
}

pub fn child(s: &Session, args: &BenchChildArgs) -> Result<ExitCode> {
    let host = print::loaded_host(s);
    let side = match args.side.as_str() {
        "baseline" => Side::Baseline,
        _ => Side::Plugin,
    };
    suite::child(
        s,
        &host,
        &args.micro.options(1),
        &args.case,
        side,
        args.iterations,
    )
    .map_err(anyhow::Error::msg)?;
    Ok(ExitCode::SUCCESS)
}
