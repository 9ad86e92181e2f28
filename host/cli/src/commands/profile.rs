//! `profile`: CPU and heap profiles of a workload on baselines and with plugins.

use std::process::ExitCode;

use anyhow::{Context, Result};
use dubchain_host::session::Session;
use dubchain_instruments::profile::{self as prof, ProfileOptions, ProfileSide};

use crate::{args::ProfileArgs, print, BadInput};

pub fn profile(s: &Session, args: &ProfileArgs, global_args: Vec<String>) -> Result<ExitCode> {
    print::manifest_errors(s);
    let micro = args.micro.options(1);
    let workload = prof::Workload::parse(&args.workload, &micro)
        .map_err(|e| BadInput(format!("--workload {}: {e}", args.workload)))?;
    let sides = match args.side.as_str() {
        "both" => vec![ProfileSide::Baseline, ProfileSide::Plugins],
        "baseline" => vec![ProfileSide::Baseline],
        "plugins" => vec![ProfileSide::Plugins],
        other => {
            return Err(BadInput(format!(
                "--side {other}: expected baseline, plugins or both"
            ))
            .into())
        }
    };
    dubchain_host::files::writable_dir(&args.out).map_err(|e| BadInput(format!("--out {e}")))?;
    let host = print::loaded_host(s);
    let o = ProfileOptions {
        workload,
        frequency: args.frequency,
        chain: args.system.workload(),
        blocks: args.system.blocks,
        micro,
        repeat: args.repeat,
        sides: sides.clone(),
        cpu: !args.no_cpu,
        min_share: args.min_share,
        out: args.out.clone(),
    };
    let report = prof::run(s, &host, &o).map_err(anyhow::Error::msg)?;
    if args.no_cpu {
        // The massif child: the heap profile is the product, written by valgrind.
        return Ok(ExitCode::SUCCESS);
    }
    let mut md = prof::markdown(&report);
    if args.heap {
        let exe = std::env::current_exe().context("locating dubchain-perf")?;
        md += "## Heap profiles (valgrind massif)\n\n";
        for side in &sides {
            eprintln!("heap profile of {} under valgrind massif ...", side.name());
            let repeats = report
                .sides
                .iter()
                .find(|p| p.side == *side)
                .map_or(1, |p| p.repeats);
            let files = prof::massif(
                &exe,
                &global_args,
                &args.child_args(repeats),
                *side,
                &args.out,
            )
            .map_err(anyhow::Error::msg)?;
            for f in files {
                md += &format!("- {}\n", f.display());
            }
        }
    }
    let written = prof::write(&report, &md, &args.out).map_err(anyhow::Error::msg)?;
    print!("{md}");
    println!("wrote {}", written.join(" and "));
    Ok(ExitCode::SUCCESS)
}
