//! `run --watch`: the node keeps running while the plugin directory is watched. A proposer
//! and a validator (stores under `<data-dir>/watch/`) produce and validate block after
//! block on the one host being reloaded, and every slot with a provider is checked against
//! its baseline every few seconds. Stops at the first disagreement.
//!
//! Not a measurement: both nodes share the reloaded host on purpose, so every swap is
//! exercised by production and validation alike.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use dubchain_host::{
    session::Session,
    watch::{watch, Reloader},
    Host,
};
use dubchain_node::{
    block,
    gen::{Workload, WorkloadConfig},
    mempool::Mempool,
    state::StateStore,
};

use crate::micro::{check_slots, MicroOptions, SlotCheck};

/// How often the running node reports (and checks the slots).
pub const REPORT_EVERY: Duration = Duration::from_secs(5);

/// Small workloads: the differential checks run every few seconds beside the node.
fn check_options() -> MicroOptions {
    MicroOptions {
        signatures: 256,
        record_blocks: 4,
        votes: 32,
        leaves: 300,
        block_txs: 64,
        run_blocks: 4,
        run_txs: 16,
        ..MicroOptions::default()
    }
}

/// Every slot with a provider against the baseline; the line says which were compared and
/// which have no differential check here.
fn check_line(host: &Host, height: u64) -> Result<String> {
    let results = check_slots(host, &check_options());
    if let Some(bad) = results.iter().find(|c| c.identical == Some(false)) {
        bail!(
            "block {height}: {} ({}) answered differently from the baseline",
            bad.slot,
            bad.stack.join(" > ")
        );
    }
    let (compared, unchecked): (Vec<&SlotCheck>, Vec<&SlotCheck>) =
        results.iter().partition(|c| c.identical.is_some());
    let names = |v: &[&SlotCheck]| v.iter().map(|c| c.slot).collect::<Vec<_>>().join(", ");
    let mut line = if compared.is_empty() {
        "no slot with a provider has a differential check here".to_owned()
    } else {
        format!("identical to the baselines: {}", names(&compared))
    };
    if !unchecked.is_empty() {
        line += &format!(
            "; not compared (no differential check in the watch loop): {}",
            names(&unchecked)
        );
    }
    Ok(line)
}

/// A block the watched node committed: its height, its transactions, the time from the
/// admission of its transactions to the validator's commit, and the mempool after it.
pub struct Committed {
    pub height: u64,
    pub txs: usize,
    pub took: Duration,
    pub mempool: usize,
}

/// Runs the node on `reloader`'s host while the session's plugin directory is watched, for
/// `duration` or until an error; `say` gets each reload event and progress line, and
/// `committed` each block.
pub fn keep_running(
    s: &Session, reloader: Arc<Reloader>, config: &WorkloadConfig, data_dir: &Path,
    duration: Option<Duration>, say: impl Fn(&str) + Send + Sync + 'static,
    committed: impl Fn(Committed),
) -> Result<()> {
    let say = Arc::new(say);
    let host = reloader.host().clone();
    let on_event = {
        let say = say.clone();
        move |event: dubchain_host::watch::ReloadEvent| say(&event.to_string())
    };
    let _watcher = watch(&s.options.plugin_dir, reloader, on_event)
        .with_context(|| format!("watching {}", s.options.plugin_dir.display()))?;
    let workload = Workload::new(config.clone());
    let dirs = [
        data_dir.join("watch/proposer"),
        data_dir.join("watch/validator"),
    ];
    for d in &dirs {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let (proposer, validator) = (StateStore::open(&dirs[0])?, StateStore::open(&dirs[1])?);
    proposer.attach(&host.slots);
    validator.attach(&host.slots);
    block::commit_genesis(&host, &proposer, &workload.genesis())?;
    block::commit_genesis(&host, &validator, &workload.genesis())?;
    let mut mempool = Mempool::new(&host.slots);
    say(&format!(
        "\nthe node keeps running; watching {} for plugin changes{}",
        s.options.plugin_dir.display(),
        match duration {
            Some(d) => format!(" for {}s", d.as_secs()),
            None => " (Ctrl-C to stop)".to_owned(),
        }
    ));
    let start = Instant::now();
    let mut last_report = Instant::now();
    let mut height = 0;
    while duration.is_none_or(|d| start.elapsed() < d) {
        height += 1;
        let began = Instant::now();
        let txs = workload.txs_for_block(height, &proposer)?;
        mempool.admit_with(
            txs,
            &host.slots.sig_verify,
            Some(&host.slots.tx_validation),
            &proposer,
        )?;
        let (b, _) = block::produce(
            &host,
            &proposer,
            &mut mempool,
            workload.proposer(height),
            config.txs_per_block,
        )?;
        let head = block::validate_and_commit(&host, &validator, &b)
            .with_context(|| format!("the validator refused block {height}"))?;
        if Some(head) != proposer.head()? {
            bail!("proposer and validator disagree at block {height}");
        }
        committed(Committed {
            height,
            txs: b.transactions.len(),
            took: began.elapsed(),
            mempool: mempool.len(),
        });
        if last_report.elapsed() >= REPORT_EVERY {
            last_report = Instant::now();
            let active: Vec<String> = host
                .slot_status()
                .iter()
                .filter(|st| st.active != "baseline")
                .map(|st| format!("{}={}", st.slot, st.active))
                .collect();
            let active = if active.is_empty() {
                "none, every slot on its baseline".to_owned()
            } else {
                active.join(", ")
            };
            say(&format!(
                "block {height}, validated; {}; active: {active}",
                check_line(&host, height)?
            ));
        }
    }
    say(&format!(
        "stopped at block {height}; every block validated; {}",
        check_line(&host, height)?
    ));
    Ok(())
}
