//! `run`, the main job: the chain on the baselines and with the plugins, then each plugin
//! on its slot's workloads; `--watch` keeps the node running while plugins are reloaded.

use std::{process::ExitCode, sync::Arc, time::Duration};

use anyhow::Result;
use dubchain_host::session::Session;
use dubchain_instruments::{
    live,
    main_job::{self, MainJobOptions, Refusal},
};

use crate::{args::RunArgs, print};

pub fn run(s: &Session, args: &RunArgs, global_args: Vec<String>) -> Result<ExitCode> {
    print::manifest_errors(s);
    let prepared = match main_job::prepare(
        s,
        args.allow_missing,
        args.watch,
        (&args.out, &args.chain.data_dir),
    ) {
        Ok(p) => p,
        Err((errors, refusal)) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            eprintln!("error: {refusal}");
            return Ok(match refusal {
                Refusal::Plan { .. }
                | Refusal::Absent { .. }
                | Refusal::Out(_)
                | Refusal::DataDir(_) => ExitCode::from(2),
                Refusal::Load { .. } => ExitCode::FAILURE,
            });
        }
    };
    for e in &prepared.errors {
        eprintln!("error: {e}");
    }
    let c = &args.chain;
    let w = &c.workload;
    eprintln!(
        "chain: {} blocks of up to {} transactions, {} accounts (zipf {}), {} validators, {:.0}% invalid, {:.0}% contract calls, seed {}; {} runs per side, alternating, every node on a freshly loaded host",
        c.blocks,
        w.txs_per_block,
        w.accounts,
        w.zipf,
        w.validators,
        w.invalid_share * 100.0,
        w.contract_share * 100.0,
        args.seed,
        args.runs
    );
    let options = MainJobOptions {
        workload: c.workload(args.seed),
        blocks: c.blocks,
        runs: args.runs.into(),
        data_dir: c.data_dir.clone(),
        micro: dubchain_instruments::micro::MicroOptions {
            rounds: args.rounds,
            signatures: args.signatures,
            record_blocks: args.record_blocks,
            seed: args.seed,
            ..Default::default()
        },
        allow_missing: args.allow_missing,
        out: args.out.clone(),
        network: Some(dubchain_instruments::system::NodeProcesses {
            exe: std::env::current_exe()?,
            host_args: global_args,
            timeout: Duration::from_secs(600),
        }),
    };
    let progress = print::progress("chain runs", u64::from(args.runs) * 2);
    let job = main_job::run(s, &prepared, &options, progress).map_err(anyhow::Error::msg)?;

    println!(
        "feature set {} (profile {})",
        s.resolution.feature_set_id, s.options.profile
    );
    if !job.missing.is_empty() {
        println!(
            "MISSING (not loaded, their slots ran on baselines): {}",
            job.missing.join(", ")
        );
    }
    if let Some(ch) = &job.chains.chain {
        println!(
            "chain of {} blocks ({} final), {} transactions included, {} rejected at admission, {} invalid votes refused",
            ch.blocks, ch.finalized, ch.transactions, ch.rejected, ch.invalid_votes
        );
    }
    print::table(&main_job::stage_rows(&job.chains));
    let nodes = main_job::cluster_rows(&job.chains);
    if nodes.len() > 1 {
        println!("the network row, node by node (medians over the runs):");
        print::table(&nodes);
    }
    println!("{}", main_job::chain_verdict(&job.chains));
    println!("{}\n", main_job::method_note(&job.chains));
    if !job.slots.is_empty() {
        println!("each plugin alone on its own host, on its slot's workloads ({} interleaved rounds; the same cases as `bench`):", args.rounds);
        print::table(&main_job::slot_rows(&job.slots));
        if let Some(note) = dubchain_host::measure::few_rounds_note(args.rounds) {
            println!("({note})");
        }
    }
    if !job.off.is_empty() {
        println!(
            "\nthe plugins profile `{}` leaves off, each alone on its own host (in no chain run above; why each is off: the profile, and docs/benchmarks.md \"Goals not met, and why\"):",
            s.options.profile
        );
        print::table(&main_job::slot_rows(&job.off));
    }
    if !job.slots.is_empty() || !job.off.is_empty() {
        println!("({})", dubchain_host::measure::CASE_TABLE_NOTE);
    }
    for (plugin, error) in &job.off_not_loaded {
        println!("not measured: {plugin} (off in the profile) did not load: {error}");
    }
    println!("wrote {}", job.json.display());
    if let Some(why) = job.disagreement() {
        eprintln!("error: {why}");
        return Ok(ExitCode::FAILURE);
    }
    if args.watch {
        let host = Arc::new(prepared.host);
        let reloader = Arc::new(dubchain_host::watch::Reloader::new(
            host.clone(),
            s.options.clone(),
        ));
        // The monitor, if asked for: its own token in the data directory, the admin API
        // through the watch's reloader.
        let monitor = match args.monitor {
            Some(addr) => {
                std::fs::create_dir_all(&c.data_dir)?;
                let m = Arc::new(
                    dubchain_monitor::Monitor::new(
                        host,
                        Some(reloader.clone()),
                        (dubchain_monitor::config::builtin(), Vec::new()),
                        &c.data_dir,
                    )?
                    .with_change_log(Box::new(|what, event| println!("{what}: {event}"))),
                );
                m.set_feature_set(&s.resolution.feature_set_id);
                let running =
                    dubchain_monitor::serve(m.clone(), addr, &c.data_dir, Duration::from_secs(1))?;
                println!(
                    "monitor on http://{}; admin token in {}",
                    running.addr,
                    running.token_path.display()
                );
                Some((m, running))
            }
            None => None,
        };
        let node = monitor.as_ref().map(|(m, _)| m.node.clone());
        live::keep_running(
            s,
            reloader,
            &c.workload(args.seed),
            &c.data_dir,
            args.duration.map(Duration::from_secs),
            |line| println!("{line}"),
            |b| {
                if let Some(n) = &node {
                    n.committed(b.height, b.txs, b.took);
                    n.mempool
                        .store(b.mempool as u64, std::sync::atomic::Ordering::Relaxed);
                }
            },
        )?;
        drop(monitor);
    }
    Ok(ExitCode::SUCCESS)
}
