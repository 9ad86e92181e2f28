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
//! # Signatures through the host's `crypto.sig_verify`
//!
//! The run's signatures are verified through host services, in chunks handed out in
//! parallel: the node's own `crypto.sig_verify` stack answers them (a verification cache
//! answers the signatures the node saw at admission, a parallel verifier spreads a chunk
//! further), with its breakers and the strict baseline underneath, so the verdicts are
//! `verify_strict`'s by construction. The manifest declares the use. Where the host attached
//! no services (an isolated load, a test of the Rust type), each signature is verified
//! strictly here.
//!
//! Per block, the first failing check in the contract's order is the verdict, computed from
//! the same functions the host uses (`dubchain_plugin_api::chain`,
//! `dubchain_plugin_api::exec::check_stateless`), so the host refuses the same first block
//! with the same error.

use dubchain_plugin_api::{
    chain::{block_hash, merkle_root, tx_hash},
    exec::check_stateless,
    export_plugin, services,
    slots::{BlockCheck, BlockValidation},
    types::{Block, Bytes32, Transaction},
    PluginError,
};
use rayon::prelude::*;

/// Signatures per host-services call, at least: a call's fixed cost (the boundary, the
/// slot's stack) is noise against 64 verifications.
const CHUNK_MIN: usize = 64;

/// Signatures per call, at most: a batch verifier below (`crypto_parallel_verification`)
/// checks a call as one equation per thread, and larger equations cost less per signature
/// (its equations of 32 cost about 16.6 us a signature, of 128 about 12 us).
const CHUNK_MAX: usize = 256;

/// Signatures per call for a run of `n`: as many as keep four calls per core, within
/// [`CHUNK_MIN`, `CHUNK_MAX`], so that a run of a few blocks still spreads over every core
/// and a long one makes large equations.
fn chunk_for(n: usize) -> usize {
    (n / (4 * rayon::current_num_threads())).clamp(CHUNK_MIN, CHUNK_MAX)
}

/// The plugin: stateless.
pub struct RunValidator;

impl BlockValidation for RunValidator {
    fn check_run(
        &self, head_height: u64, head_hash: &Bytes32, blocks: &[Block],
    ) -> Result<Vec<BlockCheck>, PluginError> {
        // Every signature of the run, in one parallel pass over chunks (flattened, so a
        // block's last signatures do not leave a core idle), through crypto.sig_verify.
        let all: Vec<&Transaction> = blocks.iter().flat_map(|b| b.transactions.iter()).collect();
        let signatures: Vec<bool> = all
            .par_chunks(chunk_for(all.len()))
            .map(services::verify_txs)
            .collect::<Result<Vec<Vec<bool>>, PluginError>>()?
            .concat();
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
    init: dubchain_plugin_api::settings::none,
    block_validation: |_: &str| Ok(RunValidator),
}
