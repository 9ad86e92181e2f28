//! One node on a persistent data directory: produce blocks onto it (`dubchain-perf chain
//! produce`, resumable: it goes on from the stored head), and check it (`chain check`: the
//! stored blocks replayed from genesis on a scratch store must give the stored head, and
//! the stored state must have the head's root); and rewrite its blocks with another codec
//! (`chain migrate`), so that no stored block is stranded when a codec plugin is turned off.

use std::path::{Path, PathBuf};

use dubchain_host::Host;
use dubchain_plugin_api::types::{Block, Record};

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

impl LedgerError {
    /// Whether the data directory given is refused as it is (no store or no chain where
    /// one must be, another kind of store, other files): the command's input, not a
    /// failure of the store.
    pub fn is_refused_input(&self) -> bool {
        match self {
            LedgerError::Empty { .. } => true,
            LedgerError::Store { source, .. } => matches!(
                source,
                StateError::Missing { .. }
                    | StateError::NotAChain { .. }
                    | StateError::NotAStore { .. }
            ),
            _ => false,
        }
    }
}

/// The error of the store in `dir`.
fn store_error(dir: &Path) -> impl Fn(StateError) -> LedgerError + Copy + '_ {
    move |source| LedgerError::Store {
        dir: dir.to_owned(),
        source,
    }
}

/// The error of a block of the store in `dir`.
fn block_error(dir: &Path) -> impl Fn(BlockError) -> LedgerError + Copy + '_ {
    move |source| LedgerError::Block {
        dir: dir.to_owned(),
        source,
    }
}

/// Produces blocks on the store at `data_dir` (created, with genesis, if empty) until its
/// head is at height `blocks`; `committed` is called with each new block. Returns the head.
pub fn produce(
    host: &Host, data_dir: &Path, config: &WorkloadConfig, blocks: u64,
    mut committed: impl FnMut(&Block),
) -> Result<Head, LedgerError> {
    produce_while(
        host,
        data_dir,
        config,
        |head| head.height < blocks,
        |p| committed(p.block),
    )
}

/// One block [`produce_while`] committed.
pub struct Produced<'a> {
    pub block: &'a Block,
    /// From the admission of its transactions to its commit.
    pub took: std::time::Duration,
    /// Transactions left in the mempool after it.
    pub mempool: usize,
}

/// A node without peers (`dubchain-perf node` alone): [`produce_while`] one block every
/// `block_time` (zero: as fast as it can), until the head reaches `until_height` or `stop`
/// is set, which also cuts a wait short. `head_seen` is told of the head before each block,
/// `committed` of each block.
pub fn produce_paced(
    host: &Host, data_dir: &Path, config: &WorkloadConfig,
    (stop, until_height, block_time): (
        &std::sync::atomic::AtomicBool,
        Option<u64>,
        std::time::Duration,
    ),
    mut head_seen: impl FnMut(&Head), committed: impl FnMut(Produced<'_>),
) -> Result<Head, LedgerError> {
    use std::{sync::atomic::Ordering, time::Instant};
    let stopped = || stop.load(Ordering::SeqCst);
    let mut next = Instant::now();
    produce_while(
        host,
        data_dir,
        config,
        |head| {
            head_seen(head);
            if until_height.is_some_and(|h| head.height >= h) {
                return false;
            }
            while Instant::now() < next && !stopped() {
                std::thread::sleep(
                    (next - Instant::now()).min(std::time::Duration::from_millis(50)),
                );
            }
            next = Instant::now().max(next) + block_time;
            !stopped()
        },
        committed,
    )
}

/// Produces blocks on the store at `data_dir` (created, with genesis, if empty) while
/// `go(head)` says so (asked before each block: a block once begun is committed);
/// `committed` is told of each. Returns the head.
pub fn produce_while(
    host: &Host, data_dir: &Path, config: &WorkloadConfig, mut go: impl FnMut(&Head) -> bool,
    mut committed: impl FnMut(Produced<'_>),
) -> Result<Head, LedgerError> {
    let dir = data_dir.to_owned();
    let store_err = store_error(data_dir);
    let workload = Workload::new(config.clone());
    let store = StateStore::open_data_dir(data_dir).map_err(store_err)?;
    store
        .check_codecs(&host.slots.record_codec)
        .map_err(store_err)?;
    store.attach(&host.slots);
    block::open_genesis(host, &store, &workload.genesis()).map_err(|e| match e {
        BlockError::State(e) => store_err(e),
        e => block_error(data_dir)(e),
    })?;
    let mut mempool = Mempool::new(&host.slots);
    loop {
        let head = store
            .head()
            .map_err(store_err)?
            .expect("genesis is committed above");
        if !go(&head) {
            return Ok(head);
        }
        let began = std::time::Instant::now();
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
        committed(Produced {
            block: &b,
            took: began.elapsed(),
            mempool: mempool.len(),
        });
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
    host: &Host, data_dir: &Path, config: &WorkloadConfig,
) -> Result<Consistency, LedgerError> {
    let dir = data_dir.to_owned();
    let (store_err, block_err) = (store_error(data_dir), block_error(data_dir));
    let store = StateStore::open_existing(data_dir).map_err(store_err)?;
    store
        .check_codecs(&host.slots.record_codec)
        .map_err(store_err)?;
    let Some(head) = store.head().map_err(store_err)? else {
        return Err(LedgerError::Empty { dir });
    };
    let stored_root = store.state_root().map_err(store_err)?;
    let genesis = Workload::new(config.clone()).genesis();
    let scratch = crate::state::scratch_dir("check");
    let replayed = (|| {
        let replay = StateStore::open(&scratch).map_err(store_err)?;
        replay.attach(&host.slots);
        let mut replayed = block::commit_genesis(host, &replay, &genesis).map_err(store_err)?;
        // The replay's genesis is the one the flags give: the stored chain must begin there.
        block::same_genesis(host, &store, &replayed).map_err(block_err)?;
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

/// The codec `chain migrate` rewrites a store's blocks with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrateTo {
    /// The baseline's serde_json records, which every host reads.
    Json,
    /// The `storage.record_codec` plugin active in the host, by name (it must be the one
    /// answering).
    Plugin(String),
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// Blocks rewritten.
    pub blocks: u64,
    /// The codecs the blocks were written by before, and after.
    pub before: Vec<String>,
    pub after: Vec<String>,
}

/// Blocks rewritten per atomic batch by [`migrate`].
pub const MIGRATE_RUN: u64 = 256;

/// Rewrites every stored block of the store at `data_dir` with codec `to`, crash-safely:
/// the target joins the store's codec list first, each run of [`MIGRATE_RUN`] blocks is
/// decoded (with every codec the host has), re-encoded and written as one atomic synced
/// batch, and only the last batch narrows the list to the target. Killed at any point,
/// the store holds each block in a codec its list names, and running the migration again
/// finishes it. Every block is decoded again after the rewrite and compared with what it
/// was: a codec that does not give back the same block stops the migration before its
/// list is narrowed.
pub fn migrate(host: &Host, data_dir: &Path, to: &MigrateTo) -> Result<Migration, LedgerError> {
    use dubchain_host::slot::JSON_CODEC;
    let dir = data_dir.to_owned();
    let (store_err, block_err) = (store_error(data_dir), block_error(data_dir));
    let store = StateStore::open_existing(data_dir).map_err(store_err)?;
    let codecs = &host.slots.record_codec;
    store.check_codecs(codecs).map_err(store_err)?;
    let Some(head) = store.head().map_err(store_err)? else {
        return Err(LedgerError::Empty { dir });
    };
    let before: Vec<String> = store.codecs().into_iter().collect();
    let target = match to {
        MigrateTo::Json => JSON_CODEC.to_owned(),
        MigrateTo::Plugin(name) => name.clone(),
    };
    let encode = |records: &[Record]| -> Result<Vec<Vec<u8>>, LedgerError> {
        match to {
            MigrateTo::Json => Ok(dubchain_host::baseline::encode_records(records)),
            MigrateTo::Plugin(name) => {
                let (values, by) = codecs.encode_named(records);
                if by == *name {
                    Ok(values)
                } else {
                    Err(LedgerError::Refused {
                        dir: dir.clone(),
                        height: 0,
                        detail: format!("codec `{name}` did not answer (`{by}` did); enable it, and check `plugins list --load`"),
                    })
                }
            }
        }
    };
    let mut from = 0;
    while from <= head.height {
        let to_height = (from + MIGRATE_RUN - 1).min(head.height);
        let mut records = Vec::new();
        for height in from..=to_height {
            let b = block::stored_block(host, &store, height).map_err(block_err)?;
            records.push(Record::Block(b));
        }
        let values = encode(&records)?;
        // Read back before writing: the new bytes must give the same blocks.
        let slices: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        for (i, (got, want)) in codecs.decode(&slices).into_iter().zip(&records).enumerate() {
            if got.as_ref() != Ok(want) {
                return Err(LedgerError::Refused {
                    dir: dir.clone(),
                    height: from + i as u64,
                    detail: format!("re-encoded with `{target}`, the block does not read back as it was; nothing of this run was written"),
                });
            }
        }
        let last = to_height == head.height;
        let narrowed: std::collections::BTreeSet<String> = [target.clone()].into();
        let rewritten: Vec<(u64, Vec<u8>)> = (from..=to_height).zip(values).collect();
        if from == 0 {
            // Recorded before the first block is rewritten (a crash in between leaves the
            // target among the codecs the blocks may be in), and only once the target has
            // answered and read back: a refused migration leaves the store as it was.
            store.note_codec(&target).map_err(store_err)?;
        }
        store
            .rewrite_blocks(&rewritten, last.then_some(&narrowed))
            .map_err(store_err)?;
        from = to_height + 1;
    }
    Ok(Migration {
        blocks: head.height + 1,
        before,
        after: store.codecs().into_iter().collect(),
    })
}
