//! Producing a block from the mempool, and validating a block received from a proposer.

use dubchain_plugin_api::{
    slots::BlockCheck,
    types::{hex_encode, Block, BlockHeader, Bytes32, Record, Transaction},
};

use crate::{
    chain::{block_hash, tx_hashes, tx_root},
    execute::{check_stateless, execute_block, verify_signatures, TxError},
    mempool::Mempool,
    state::{BlockWriter, Head, StateError, StateStore},
};
use dubchain_host::Host;

/// Why a block is not valid.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("block {height}: parent {got:?} is not the head {expected:?}")]
    Parent {
        height: u64,
        expected: Bytes32,
        got: Bytes32,
    },
    #[error("block height {got}, expected {expected}")]
    Height { expected: u64, got: u64 },
    #[error("block {height}: transaction root does not match its transactions")]
    TxRoot { height: u64 },
    #[error("block {height}: transaction {index} is invalid: {error}")]
    Tx {
        height: u64,
        index: usize,
        error: TxError,
    },
    #[error("block {height}: {count} receipts for {txs} transactions")]
    ReceiptCount {
        height: u64,
        count: usize,
        txs: usize,
    },
    #[error("block {height}: receipt {index} differs from re-execution")]
    Receipt { height: u64, index: usize },
    #[error("block {height}: state root {got:?} differs from re-execution {expected:?}")]
    StateRoot {
        height: u64,
        expected: Bytes32,
        got: Bytes32,
    },
    #[error("block {height} is not stored or cannot be decoded: {detail}")]
    Unreadable { height: u64, detail: String },
    #[error("its chain began at genesis {}, but the workload's flags (--seed, --accounts) give genesis {}: they are not the flags it was made with, and every transaction they generate for it would be refused; give those flags, or another data directory", hex_encode(&stored.0[..8]), hex_encode(&expected.0[..8]))]
    OtherGenesis { stored: Bytes32, expected: Bytes32 },
    #[error(transparent)]
    State(#[from] StateError),
}

/// Genesis time; block `h` is stamped `h` block intervals later (deterministic runs).
pub const GENESIS_MS: u64 = 1_700_000_000_000;
pub const BLOCK_INTERVAL_MS: u64 = 2_000;

/// Gives `store` its genesis: on an empty store, commits the one `accounts` give; on a
/// store with a chain, checks that the chain began there (worked out as [`commit_genesis`]
/// writes it, on a scratch store removed afterwards). A store made with other workload
/// flags holds accounts the workload does not sign for: going on would produce blocks of
/// refused transactions.
pub fn open_genesis(
    host: &Host, store: &StateStore, accounts: &[(Bytes32, crate::state::Account)],
) -> Result<(), BlockError> {
    if store.head()?.is_none() {
        commit_genesis(host, store, accounts)?;
        return Ok(());
    }
    let scratch = crate::state::scratch_dir("genesis");
    let expected = (|| commit_genesis(host, &StateStore::open(&scratch)?, accounts))();
    let _ = std::fs::remove_dir_all(&scratch);
    same_genesis(host, store, &expected?)
}

/// Whether the chain in `store` began at the genesis block `expected` heads.
pub fn same_genesis(host: &Host, store: &StateStore, expected: &Head) -> Result<(), BlockError> {
    let stored = block_hash(&stored_block(host, store, 0)?.header);
    if stored != expected.hash {
        return Err(BlockError::OtherGenesis {
            stored,
            expected: expected.hash,
        });
    }
    Ok(())
}

/// Writes the genesis state (`accounts` and the reference contracts,
/// [`crate::vm::contracts::genesis`]) and block (height 0) to an empty store.
pub fn commit_genesis(
    host: &Host, store: &StateStore, accounts: &[(Bytes32, crate::state::Account)],
) -> Result<Head, StateError> {
    let written = write_block(host, store, 0, |w| {
        for (a, acc) in accounts {
            w.put(a, *acc)?;
        }
        for c in crate::vm::contracts::genesis() {
            w.put_code(&c.address, &c.code)?;
        }
        let state_root = w.state_root()?;
        let header = BlockHeader {
            parent: Bytes32::default(),
            height: 0,
            proposer: Bytes32::default(),
            tx_root: tx_root(&[]),
            state_root,
            timestamp_ms: GENESIS_MS,
        };
        let head = Head {
            height: 0,
            hash: block_hash(&header),
            state_root,
        };
        let block = Block {
            header,
            transactions: Default::default(),
            receipts: Default::default(),
        };
        Ok((head, encode(host, block), head))
    });
    match written {
        Ok(head) => Ok(head),
        Err(BlockError::State(e)) => Err(e),
        Err(e) => unreachable!("genesis is not validated: {e}"),
    }
}

/// Runs `build` over a writer for block `height`, then commits what it returns (the
/// block's record and head) and answers its output. If `build` fails, the block's writes
/// are rolled back and its error returned.
///
/// If the `storage.block_commit` provider fails at any point, the block is rolled back (what its
/// set passed through is restored from the undo entries; what it held never reached the
/// store) and built again on the baseline write path, so a failing provider costs time,
/// never a block.
fn write_block<T>(
    host: &Host, store: &StateStore, height: u64,
    mut build: impl FnMut(&mut BlockWriter<'_>) -> Result<(T, Encoded, Head), BlockError>,
) -> Result<T, BlockError> {
    let mut w = store.begin_block(height);
    loop {
        let held = w.is_held();
        let id = w.store_id();
        let result = match build(&mut w) {
            Ok((out, (record, codec), head)) => w
                .commit(&record, &codec, head)
                .map(|()| out)
                .map_err(Into::into),
            Err(e) => roll_back(host, w).and(Err(e)),
        };
        match result {
            Err(BlockError::State(e @ StateError::WriteSet { .. })) if held => {
                tracing::warn!(error = %e, "running the block again on the baseline write path");
                // The write set may have told `vm.contract_state` of writes that never landed.
                host.slots.contract_state.reset(id);
                w = store.begin_block_on_baseline(height);
            }
            other => return other,
        }
    }
}

/// A block's stored bytes, and the name of the codec that wrote them.
type Encoded = (Vec<u8>, String);

fn encode(host: &Host, block: Block) -> Encoded {
    let (mut values, codec) = host
        .slots
        .record_codec
        .encode_named(&[Record::Block(block)]);
    (values.pop().expect("one record in, one value out"), codec)
}

/// Undoes a block in progress, and tells `vm.contract_state` providers to forget the store as it
/// was (it has a new identity from now on).
fn roll_back(host: &Host, w: BlockWriter<'_>) -> Result<(), BlockError> {
    let id = w.store_id();
    w.abort()?;
    host.slots.contract_state.reset(id);
    Ok(())
}

/// Decodes stored block `height`.
pub fn stored_block(host: &Host, store: &StateStore, height: u64) -> Result<Block, BlockError> {
    let bytes = store.block_bytes(height)?.ok_or(BlockError::Unreadable {
        height,
        detail: "missing".into(),
    })?;
    match host.slots.record_codec.decode(&[&bytes]).pop() {
        Some(Ok(Record::Block(b))) => Ok(b),
        Some(Ok(Record::Transaction(_))) => Err(BlockError::Unreadable {
            height,
            detail: "a transaction record".into(),
        }),
        Some(Err(e)) => Err(BlockError::Unreadable { height, detail: e }),
        None => Err(BlockError::Unreadable {
            height,
            detail: "no answer".into(),
        }),
    }
}

/// Where the proposer's time went while producing one block.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProduceTimes {
    /// Selecting from the mempool and removing what was included.
    pub mempool: std::time::Duration,
    /// Executing the transactions.
    pub execution: std::time::Duration,
    /// State root, encoding and commit.
    pub storage: std::time::Duration,
}

/// Builds, executes and commits the next block from `mempool`'s best `max_txs`
/// transactions; transactions that fail execution are dropped from the block and the pool.
pub fn produce(
    host: &Host, store: &StateStore, mempool: &mut Mempool, proposer: Bytes32, max_txs: usize,
) -> Result<(Block, ProduceTimes), BlockError> {
    use std::time::Instant;
    let mut times = ProduceTimes::default();
    let head = store.head()?.expect("genesis committed");
    let height = head.height + 1;
    let t = Instant::now();
    let candidates = mempool.select(max_txs, store)?;
    times.mempool += t.elapsed();
    let started = Instant::now();
    let (block, mut dropped) = write_block(host, store, height, |w| {
        let t = Instant::now();
        let mut transactions: Vec<Transaction> = Vec::with_capacity(candidates.len());
        let mut receipts = Vec::with_capacity(candidates.len());
        let mut dropped = Vec::new();
        let outcomes = execute_block(&host.slots, w, &candidates, &proposer)?;
        for (tx, outcome) in candidates.iter().zip(outcomes) {
            match outcome {
                Ok(r) => {
                    transactions.push(tx.clone());
                    receipts.push(r);
                }
                Err(_) => dropped.push(tx.clone()),
            }
        }
        times.execution += t.elapsed();
        let state_root = w.state_root()?;
        let header = BlockHeader {
            parent: head.hash,
            height,
            proposer,
            tx_root: host.slots.merkle.root(&tx_hashes(&transactions)),
            state_root,
            timestamp_ms: GENESIS_MS + height * BLOCK_INTERVAL_MS,
        };
        let hash = block_hash(&header);
        let block = Block {
            header,
            transactions: transactions.into(),
            receipts: receipts.into(),
        };
        let record = encode(host, block.clone());
        Ok((
            (block, dropped),
            record,
            Head {
                height,
                hash,
                state_root,
            },
        ))
    })?;
    // State root, encoding and commit: everything but execution.
    times.storage = started.elapsed().saturating_sub(times.execution);
    let t = Instant::now();
    dropped.extend(block.transactions.iter().cloned());
    mempool.remove(&dropped, store)?;
    times.mempool += t.elapsed();
    Ok((block, times))
}

/// Checks `block` against `store`'s head and re-executes it; commits it if it is valid,
/// leaves the store as it was if not.
pub fn validate_and_commit(
    host: &Host, store: &StateStore, block: &Block,
) -> Result<Head, BlockError> {
    let head = store.head()?.expect("genesis committed");
    check_stateless_block(host, &head, block)?;
    execute_and_commit(host, store, block)
}

/// The checks of `block` that need no state, against `head`: height, parent, transaction
/// root, receipt count, then each transaction's signature and stateless rules in order.
pub fn check_stateless_block(host: &Host, head: &Head, block: &Block) -> Result<(), BlockError> {
    let h = &block.header;
    if h.height != head.height + 1 {
        return Err(BlockError::Height {
            expected: head.height + 1,
            got: h.height,
        });
    }
    if h.parent != head.hash {
        return Err(BlockError::Parent {
            height: h.height,
            expected: head.hash,
            got: h.parent,
        });
    }
    if h.tx_root != host.slots.merkle.root(&tx_hashes(&block.transactions)) {
        return Err(BlockError::TxRoot { height: h.height });
    }
    if block.receipts.len() != block.transactions.len() {
        return Err(BlockError::ReceiptCount {
            height: h.height,
            count: block.receipts.len(),
            txs: block.transactions.len(),
        });
    }
    let verdicts = verify_signatures(&host.slots.sig_verify, &block.transactions);
    for (index, (tx, ok)) in block.transactions.iter().zip(verdicts).enumerate() {
        let checked = if ok {
            check_stateless(tx)
        } else {
            Err(TxError::BadSignature)
        };
        if let Err(error) = checked {
            return Err(BlockError::Tx {
                height: h.height,
                index,
                error,
            });
        }
    }
    Ok(())
}

/// The error the node gives for a stateless verdict of the `consensus.block_validation`
/// slot on `block` (the same [`check_stateless_block`] gives).
fn stateless_error(block: &Block, check: BlockCheck) -> Option<BlockError> {
    let height = block.header.height;
    Some(match check {
        BlockCheck::Valid => return None,
        BlockCheck::Height { expected, got } => BlockError::Height { expected, got },
        BlockCheck::Parent { expected, got } => BlockError::Parent {
            height,
            expected,
            got,
        },
        BlockCheck::TxRoot => BlockError::TxRoot { height },
        BlockCheck::ReceiptCount { count, txs } => BlockError::ReceiptCount {
            height,
            count: count as usize,
            txs: txs as usize,
        },
        BlockCheck::BadSignature { index } => BlockError::Tx {
            height,
            index: index as usize,
            error: TxError::BadSignature,
        },
        BlockCheck::Tx { index, failure } => BlockError::Tx {
            height,
            index: index as usize,
            error: TxError::from(failure),
        },
    })
}

/// Validates and commits a run of blocks extending the store's head (catch-up sync),
/// stopping at the first invalid block: returns the heads committed and, if a block was
/// refused, its index in the run and why. With a `consensus.block_validation` plugin the
/// stateless checks of the whole run are done first, together; execution and commit then
/// go block by block. Without one (or if it fails), each block is validated on its own.
/// Either way the same blocks are committed and the same first invalid block is refused
/// with the same error.
pub fn validate_run(
    host: &Host, store: &StateStore, blocks: &[Block],
) -> Result<(Vec<Head>, Option<(usize, BlockError)>), StateError> {
    let head = store.head()?.expect("genesis committed");
    let mut heads = Vec::with_capacity(blocks.len());
    if let Some(checks) = host
        .slots
        .block_validation
        .check_run(head.height, &head.hash, blocks)
    {
        for (i, (block, check)) in blocks.iter().zip(checks).enumerate() {
            if let Some(e) = stateless_error(block, check) {
                return Ok((heads, Some((i, e))));
            }
            match execute_and_commit(host, store, block) {
                Ok(h) => heads.push(h),
                Err(BlockError::State(e)) => return Err(e),
                Err(e) => return Ok((heads, Some((i, e)))),
            }
        }
        return Ok((heads, None));
    }
    for (i, block) in blocks.iter().enumerate() {
        match validate_and_commit(host, store, block) {
            Ok(h) => heads.push(h),
            Err(BlockError::State(e)) => return Err(e),
            Err(e) => return Ok((heads, Some((i, e)))),
        }
    }
    Ok((heads, None))
}

/// Re-executes `block` (whose stateless checks passed) on `store` and commits it if its
/// receipts and state root match; leaves the store as it was if not.
pub fn execute_and_commit(
    host: &Host, store: &StateStore, block: &Block,
) -> Result<Head, BlockError> {
    let h = &block.header;
    write_block(host, store, h.height, |w| {
        let outcomes = execute_block(&host.slots, w, &block.transactions, &h.proposer)?;
        for (index, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Ok(r) if r == block.receipts[index] => {}
                Ok(_) => {
                    return Err(BlockError::Receipt {
                        height: h.height,
                        index,
                    })
                }
                Err(error) => {
                    return Err(BlockError::Tx {
                        height: h.height,
                        index,
                        error,
                    })
                }
            }
        }
        let root = w.state_root()?;
        if root != h.state_root {
            return Err(BlockError::StateRoot {
                height: h.height,
                expected: root,
                got: h.state_root,
            });
        }
        let head = Head {
            height: h.height,
            hash: block_hash(h),
            state_root: root,
        };
        Ok((head, encode(host, block.clone()), head))
    })
}
