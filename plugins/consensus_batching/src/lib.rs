//! `consensus_batching`: a run of blocks (catch-up sync) has its stateless checks done
//! together instead of block after block (`consensus.block_validation`).
//!
//! The baseline validates one block at a time: its links, its transaction root, then its
//! signatures as one batch of at most a block's transactions, then its rules. Here the
//! whole run is one job: the header links are checked in order (cheap), the transaction
//! roots of all blocks are computed in parallel, and every signature of the run is
//! verified in one parallel pass over all of them, so the cores stay busy across block
//! boundaries instead of idling at the end of each block's batch.
//!
//! # Exact verdicts
//!
//! Each signature is verified strictly (`verify_strict`: small-order keys and `R`,
//! non-canonical `s` refused), exactly as `crypto.sig_verify` defines it, never with a
//! batch equation: a cofactorless batch check can accept a signature with a small-order
//! component that the strict check refuses (see `docs/benchmarks.md`), and a verdict that
//! differs from the baseline's is a chain split. Per block, the first failing check in the
//! contract's order is the verdict, computed from the same functions the host uses
//! (`dubchain_plugin_api::chain`, `dubchain_plugin_api::exec::check_stateless`), so the
//! host refuses the same first block with the same error.

use dubchain_plugin_api::{
    chain::{block_hash, merkle_root, tx_hash},
    exec::check_stateless,
    export_plugin,
    slots::{BlockCheck, BlockValidation},
    types::{Block, Bytes32, Transaction},
    PluginError,
};
use rayon::prelude::*;

use dubchain_plugin_api::sig::verify_tx as verify_strict;

/// The plugin: stateless.
pub struct RunValidator;

impl BlockValidation for RunValidator {
    fn check_run(
        &self,
        head_height: u64,
        head_hash: &Bytes32,
        blocks: &[Block],
    ) -> Result<Vec<BlockCheck>, PluginError> {
        // Every signature of the run, in one parallel pass (flattened, so a block's last
        // signatures do not leave a core idle).
        let all: Vec<&Transaction> = blocks.iter().flat_map(|b| b.transactions.iter()).collect();
        let signatures: Vec<bool> = all
            .par_iter()
            .with_min_len(16)
            .map(|t| verify_strict(t))
            .collect();
        // Every block's transaction root, in parallel.
        let roots_ok: Vec<bool> = blocks
            .par_iter()
            .map(|b| {
                let hashes: Vec<Bytes32> = b.transactions.iter().map(tx_hash).collect();
                merkle_root(&hashes) == b.header.tx_root
            })
            .collect();
        // Links and the per-block verdict, in order.
        let (mut height, mut parent) = (head_height, *head_hash);
        let mut offset = 0;
        let mut out = Vec::with_capacity(blocks.len());
        for (b, root_ok) in blocks.iter().zip(roots_ok) {
            let h = &b.header;
            let sigs = &signatures[offset..offset + b.transactions.len()];
            offset += b.transactions.len();
            let verdict = if h.height != height + 1 {
                BlockCheck::Height {
                    expected: height + 1,
                    got: h.height,
                }
            } else if h.parent != parent {
                BlockCheck::Parent {
                    expected: parent,
                    got: h.parent,
                }
            } else if !root_ok {
                BlockCheck::TxRoot
            } else if b.receipts.len() != b.transactions.len() {
                BlockCheck::ReceiptCount {
                    count: b.receipts.len() as u64,
                    txs: b.transactions.len() as u64,
                }
            } else {
                b.transactions
                    .iter()
                    .zip(sigs)
                    .enumerate()
                    .find_map(|(i, (tx, ok))| {
                        if !ok {
                            Some(BlockCheck::BadSignature { index: i as u64 })
                        } else {
                            check_stateless(tx).err().map(|failure| BlockCheck::Tx {
                                index: i as u64,
                                failure,
                            })
                        }
                    })
                    .unwrap_or(BlockCheck::Valid)
            };
            height = h.height;
            parent = block_hash(h);
            out.push(verdict);
        }
        Ok(out)
    }
}

export_plugin! {
    name: "consensus_batching",
    block_validation: |_config: &str| Ok(RunValidator),
}
