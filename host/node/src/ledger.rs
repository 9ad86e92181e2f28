//! One node on a persistent data directory: produce blocks onto it (`dubchain-perf chain
//! produce`, resumable: it goes on from the stored head), and check it (`chain check`: the
//! stored blocks replayed from genesis on a scratch store must give the stored head, and
//! the stored state must have the head's root).

use std::path::{Path, PathBuf};

use dubchain_host::Host;
use dubchain_plugin_api::types::Block;

use crate::{
    block::{self, BlockError},
    gen::{Workload, WorkloadConfig},
    mempool::Mempool,
    state::{Head, StateError, StateStore},
};

/// Catch-up replays stored blocks in runs of this many (validated together by a
/// `consensus.block_validation` provider if one is enabled).
pub const REPLAY_RUN: u64 = 64;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// (The store's errors name its path.)
    #[error("{source}")]
    Store { dir: PathBuf, source: StateError },
    #[error("{dir}: {source}")]
    Block { dir: PathBuf, source: BlockError },
    #[error(
        "{dir}: no chain (the store has no head); produce one with `dubchain-perf chain produce`"
    )]
    Empty { dir: PathBuf },
    #[error("{dir}: replaying block {height}: {detail}")]
    Refused {
        dir: PathBuf,
        height: u64,
        detail: String,
    },
}

/// Produces blocks on the store at `data_dir` (created, with genesis, if empty) until its
/// head is at height `blocks`; `committed` is called with each new block. Returns the head.
pub fn produce(
    host: &Host,
    data_dir: &Path,
    config: &WorkloadConfig,
    blocks: u64,
    mut committed: impl FnMut(&Block),
) -> Result<Head, LedgerError> {
    let dir = data_dir.to_owned();
    let store_err = |source| LedgerError::Store {
        dir: dir.clone(),
        source,
    };
    let workload = Workload::new(config.clone());
    let store = StateStore::open(data_dir).map_err(store_err)?;
    store.attach(&host.slots);
    if store.head().map_err(store_err)?.is_none() {
        block::commit_genesis(host, &store, &workload.genesis()).map_err(store_err)?;
    }
    let mut mempool = Mempool::new(&host.slots);
    loop {
        let head = store
            .head()
            .map_err(store_err)?
            .expect("genesis is committed above");
        if head.height >= blocks {
            return Ok(head);
        }
        let txs = workload
            .txs_for_block(head.height + 1, &store)
            .map_err(store_err)?;
        mempool
            .admit_with(
                txs,
                &host.slots.sig_verify,
                Some(&host.slots.tx_validation),
                &store,
            )
            .map_err(store_err)?;
        let (b, _) = block::produce(
            host,
            &store,
            &mut mempool,
            workload.proposer(head.height + 1),
            config.txs_per_block,
        )
        .map_err(|source| LedgerError::Block {
            dir: dir.clone(),
            source,
        })?;
        committed(&b);
    }
}

/// What [`check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consistency {
    /// The stored head.
    pub head: Head,
    /// Where replaying the stored blocks from genesis ends.
    pub replayed: Head,
    /// The root of the stored state.
    pub stored_root: dubchain_plugin_api::types::Bytes32,
}

impl Consistency {
    pub fn is_consistent(&self) -> bool {
        self.replayed == self.head && self.stored_root == self.head.state_root
    }
}

/// Replays the chain stored at `data_dir` from the genesis of `config` on a scratch store
/// (removed afterwards), in runs of [`REPLAY_RUN`] blocks.
pub fn check(
    host: &Host,
    data_dir: &Path,
    config: &WorkloadConfig,
) -> Result<Consistency, LedgerError> {
    let dir = data_dir.to_owned();
    let store_err = |source| LedgerError::Store {
        dir: dir.clone(),
        source,
    };
    let block_err = |source| LedgerError::Block {
        dir: dir.clone(),
        source,
    };
    let store = StateStore::open_existing(data_dir).map_err(store_err)?;
    let Some(head) = store.head().map_err(store_err)? else {
        return Err(LedgerError::Empty { dir });
    };
    let stored_root = store.state_root().map_err(store_err)?;
    let scratch = std::env::temp_dir().join(format!("dubchain-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let replayed = (|| {
        let replay = StateStore::open(&scratch).map_err(store_err)?;
        replay.attach(&host.slots);
        let genesis = Workload::new(config.clone()).genesis();
        let mut replayed = block::commit_genesis(host, &replay, &genesis).map_err(store_err)?;
        let mut next = 1;
        while next <= head.height {
            let last = (next + REPLAY_RUN - 1).min(head.height);
            let run = (next..=last)
                .map(|h| block::stored_block(host, &store, h))
                .collect::<Result<Vec<_>, _>>()
                .map_err(block_err)?;
            let (heads, refused) = block::validate_run(host, &replay, &run).map_err(store_err)?;
            if let Some((i, e)) = refused {
                return Err(LedgerError::Refused {
                    dir: dir.clone(),
                    height: run[i].header.height,
                    detail: e.to_string(),
                });
            }
            replayed = *heads.last().expect("a run of at least one block");
            next = last + 1;
        }
        Ok(replayed)
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(Consistency {
        head,
        replayed: replayed?,
        stored_root,
    })
}
