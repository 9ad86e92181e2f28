//! `chain produce`, `chain check`, `chain migrate`: one node on a persistent data directory;
//! `chain commit-race`: concurrent durable commits on one store, for the crash test.

use std::{path::Path, process::ExitCode};

use anyhow::Result;
use dubchain_host::session::Session;
use dubchain_node::ledger;
use dubchain_plugin_api::slots;

use crate::{args::ChainArgs, print};

/// A data directory refused as it is is bad input (exit 2); any other error of the store
/// is a failure.
fn refused_input(e: ledger::LedgerError) -> anyhow::Error {
    if e.is_refused_input() {
        crate::BadInput(e.to_string()).into()
    } else {
        e.into()
    }
}

pub fn produce(s: &Session, args: &ChainArgs, seed: u64) -> Result<ExitCode> {
    print::manifest_errors(s);
    let host = print::loaded_host(s);
    std::fs::create_dir_all(&args.data_dir).map_err(|e| {
        crate::BadInput(format!(
            "--data-dir {}: cannot make it a directory (give a directory, or a path where one can be made): {e}",
            args.data_dir.display()
        ))
    })?;
    let head = ledger::produce(
        &host,
        &args.data_dir,
        &args.workload(seed),
        args.blocks,
        |b| {
            println!(
                "committed block {} with {} transactions, root {:?}",
                b.header.height,
                b.transactions.len(),
                b.header.state_root
            )
        },
    )
    .map_err(refused_input)?;
    println!(
        "head {} {:?} root {:?}",
        head.height, head.hash, head.state_root
    );
    Ok(ExitCode::SUCCESS)
}

pub fn check(s: &Session, args: &ChainArgs, seed: u64) -> Result<ExitCode> {
    print::manifest_errors(s);
    let host = print::loaded_host(s);
    let c = ledger::check(&host, &args.data_dir, &args.workload(seed)).map_err(refused_input)?;
    println!("head {} {:?}", c.head.height, c.head.hash);
    if c.is_consistent() {
        println!(
            "consistent: replaying {} block{} from genesis gives the head, and the stored state has its root",
            c.head.height,
            if c.head.height == 1 { "" } else { "s" }
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "INCONSISTENT: replay ends at {:?}, stored state root {:?}, head {:?}",
            c.replayed, c.stored_root, c.head
        );
        Ok(ExitCode::FAILURE)
    }
}

pub fn migrate(s: &Session, data_dir: &Path, codec: &str) -> Result<ExitCode> {
    print::manifest_errors(s);
    let codecs: Vec<&str> = s
        .manifests
        .iter()
        .filter(|m| m.provides_slot(slots::RECORD_CODEC.id))
        .map(|m| m.name.as_str())
        .collect();
    let to = match codec {
        dubchain_host::slot::JSON_CODEC => ledger::MigrateTo::Json,
        name if codecs.contains(&name) => ledger::MigrateTo::Plugin(name.to_owned()),
        name => {
            eprintln!(
                "error: --codec {name}: no plugin of that name provides {} in {} (codec plugins there: {}); give one of them, or json",
                slots::RECORD_CODEC.id,
                s.options.plugin_dir.display(),
                if codecs.is_empty() { "none".to_owned() } else { codecs.join(", ") }
            );
            return Ok(ExitCode::from(2));
        }
    };
    let host = print::loaded_host(s);
    let m = ledger::migrate(&host, data_dir, &to).map_err(refused_input)?;
    println!(
        "rewrote {} blocks: written by {} before, by {} now",
        m.blocks,
        m.before.join(", "),
        m.after.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

pub fn commit_race(
    s: &Session, data_dir: &Path, committers: u32, commits: u64, check: bool,
) -> Result<ExitCode> {
    use std::io::Write;
    if data_dir.exists() && !data_dir.is_dir() {
        return Err(crate::BadInput(format!(
            "--data-dir {}: not a directory; give the commit store a directory of its own (it is made if missing)",
            data_dir.display()
        ))
        .into());
    }
    if check {
        let next = dubchain_node::commit_race::recovered(data_dir, committers)
            .map_err(anyhow::Error::msg)?;
        for (t, n) in next.iter().enumerate() {
            println!("committer {t}: {n} records");
        }
        println!("consistent: every committer's records are numbered 0, 1, ... with no gap");
        return Ok(ExitCode::SUCCESS);
    }
    print::manifest_errors(s);
    let host = print::loaded_host(s);
    eprintln!(
        "{committers} committers on {}, commits made durable by {}",
        data_dir.display(),
        host.slots.durability.status().active
    );
    let out = std::io::stdout();
    dubchain_node::commit_race::run(&host, data_dir, committers, commits, |t, seq| {
        // Printed and flushed after the acknowledgement, before the next commit: a line the
        // crash test read was acknowledged.
        let mut out = out.lock();
        let _ = writeln!(out, "acknowledged {t} {seq}").and_then(|()| out.flush());
    })
    .map_err(anyhow::Error::msg)?;
    Ok(ExitCode::SUCCESS)
}
