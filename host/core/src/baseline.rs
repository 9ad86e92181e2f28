//! The host's own implementation of every slot: honest, simple, always available.
//!
//! These are what a competent engineer writes first, and what every plugin is measured and
//! differentially tested against. A slot falls back to them whenever its plugin is disabled,
//! missing, failing or panicking.

use blst::{
    min_pk::{PublicKey, Signature as BlsSignature},
    BLST_ERROR,
};
use dubchain_plugin_api::{
    slots::VOTE_DST,
    types::{Bytes32, Record, SigItem, VoteItem},
};

/// `crypto.sig_verify`: each signature in turn, with `verify_strict`.
pub fn sig_verify(items: &[SigItem<'_>]) -> Vec<bool> {
    items.iter().map(verify_one_strict).collect()
}

/// The verdict of one item, as `crypto.sig_verify` defines it (the API's one definition).
pub use dubchain_plugin_api::sig::verify_item as verify_one_strict;

/// `storage.record_codec`: one serde_json document per record.
pub fn encode_records(records: &[Record]) -> Vec<Vec<u8>> {
    records
        .iter()
        .map(|r| serde_json::to_vec(r).expect("records contain no maps with non-string keys"))
        .collect()
}

/// Decodes what [`encode_records`] wrote.
pub fn decode_records(values: &[&[u8]]) -> Vec<Result<Record, String>> {
    values
        .iter()
        .map(|v| serde_json::from_slice(v).map_err(|e| format!("not a JSON record: {e}")))
        .collect()
}

/// `consensus.vote_verify`: each vote's BLS signature verified on its own, with the
/// signature's subgroup check and the key's validation.
pub fn verify_votes(votes: &[VoteItem<'_>]) -> Vec<bool> {
    votes.iter().map(verify_vote).collect()
}

/// The verdict of one vote, as `consensus.vote_verify` defines it.
pub fn verify_vote(v: &VoteItem<'_>) -> bool {
    let (Ok(pk), Ok(sig)) = (
        PublicKey::from_bytes(&v.public_key),
        BlsSignature::from_bytes(&v.signature),
    ) else {
        return false;
    };
    sig.verify(true, v.message.as_slice(), VOTE_DST, &[], &pk, true) == BLST_ERROR::BLST_SUCCESS
}

/// `crypto.merkle`: the RFC 6962 Merkle tree hash of `leaves`, recursively, one SHA-256 at
/// a time (the reference in `dubchain_plugin_api::chain`).
pub fn merkle_root(leaves: &[Bytes32]) -> Bytes32 {
    dubchain_plugin_api::chain::merkle_root(leaves)
}

/// What executing a run of transfers leaves: the verdicts, and the state of every account
/// in the state before it or written by it, sorted by account, leaving out accounts in the
/// default state (which the state root leaves out too). Two executions agree when these are
/// equal, however each wrote its accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed {
    pub results: Vec<abi_stable::std_types::RResult<(), dubchain_plugin_api::exec::TxFailure>>,
    pub state: Vec<dubchain_plugin_api::exec::AccountEntry>,
}

/// `exec.block_execution`, as a pure function: `txs` applied one after another to an
/// in-memory copy of `pre` with [`dubchain_plugin_api::exec::apply_transfer`], each
/// transaction's writes applied at once. The node's baseline does the same against the
/// block in progress (`node::execute::execute_block`); this form is what plugins are tested
/// against (the slot's `execute_in_memory` runs a plugin over the same in-memory state).
/// An account outside `pre` reads as empty.
pub fn execute_block(
    pre: &[dubchain_plugin_api::exec::AccountEntry],
    txs: &[dubchain_plugin_api::types::Transaction], proposer: &Bytes32,
) -> Executed {
    use dubchain_plugin_api::exec::{apply_transfer, AccountEntry, AccountState, State};
    use std::collections::BTreeMap;
    struct Mem(BTreeMap<Bytes32, AccountState>);
    impl State for Mem {
        type Error = std::convert::Infallible;
        fn get(&mut self, a: &Bytes32) -> Result<AccountState, Self::Error> {
            Ok(self.0.get(a).copied().unwrap_or_default())
        }
        fn put(&mut self, a: &Bytes32, s: AccountState) -> Result<(), Self::Error> {
            self.0.insert(*a, s);
            Ok(())
        }
    }
    let mut mem = Mem(pre.iter().map(|e| (e.account, e.state)).collect());
    let results = txs
        .iter()
        .map(|tx| match apply_transfer(&mut mem, tx, proposer) {
            Ok(r) => r.into(),
            Err(never) => match never {},
        })
        .collect();
    Executed {
        results,
        state: mem
            .0
            .into_iter()
            .filter(|(_, s)| *s != AccountState::default())
            .map(|(account, state)| AccountEntry { account, state })
            .collect(),
    }
}

/// `consensus.block_validation`, as the host checks blocks: one block at a time, each
/// block's signatures verified one by one (strict), then its transactions' stateless
/// rules, in the order the slot's contract gives. The node does the same through its
/// slots in `node::block::validate_and_commit`.
pub fn check_run(
    head_height: u64, head_hash: &Bytes32, blocks: &[dubchain_plugin_api::types::Block],
) -> Vec<dubchain_plugin_api::slots::BlockCheck> {
    use dubchain_plugin_api::{
        chain::{block_hash, tx_hash},
        exec::check_stateless,
        slots::BlockCheck,
    };
    let (mut height, mut parent) = (head_height, *head_hash);
    blocks
        .iter()
        .map(|b| {
            let h = &b.header;
            let verdict = (|| {
                if h.height != height + 1 {
                    return BlockCheck::Height {
                        expected: height + 1,
                        got: h.height,
                    };
                }
                if h.parent != parent {
                    return BlockCheck::Parent {
                        expected: parent,
                        got: h.parent,
                    };
                }
                let hashes: Vec<Bytes32> = b.transactions.iter().map(tx_hash).collect();
                if h.tx_root != merkle_root(&hashes) {
                    return BlockCheck::TxRoot;
                }
                if b.receipts.len() != b.transactions.len() {
                    return BlockCheck::ReceiptCount {
                        count: b.receipts.len() as u64,
                        txs: b.transactions.len() as u64,
                    };
                }
                for (i, tx) in b.transactions.iter().enumerate() {
                    if !tx_signature_ok(tx) {
                        return BlockCheck::BadSignature { index: i as u64 };
                    }
                    if let Err(failure) = check_stateless(tx) {
                        return BlockCheck::Tx {
                            index: i as u64,
                            failure,
                        };
                    }
                }
                BlockCheck::Valid
            })();
            height = h.height;
            parent = block_hash(h);
            verdict
        })
        .collect()
}

/// `exec.tx_validation`: each transaction fully, one at a time: its signature (strict),
/// then its stateless rules. (The node's admission does the same, with the signatures of a
/// batch going through `crypto.sig_verify`.)
pub fn validate_txs(
    txs: &[dubchain_plugin_api::types::Transaction],
) -> Vec<dubchain_plugin_api::slots::TxCheck> {
    use dubchain_plugin_api::{exec::check_stateless, slots::TxCheck};
    txs.iter()
        .map(|tx| {
            if !tx_signature_ok(tx) {
                TxCheck::BadSignature
            } else {
                check_stateless(tx).map_or_else(TxCheck::Invalid, |()| TxCheck::Valid)
            }
        })
        .collect()
}

/// Whether a transaction's signature over its signing bytes verifies strictly.
use dubchain_plugin_api::sig::verify_tx as tx_signature_ok;

/// `mempool.tx_pool`: the baseline index (the catalogue's `consensus_o1_structures` baseline),
/// defined in plugin-api so a plugin can start from it.
pub use dubchain_plugin_api::pool::VecIndex;

/// `consensus.vote_tally`: the baseline's vote tallies (the node keeps them behind one
/// `Mutex`), defined in plugin-api so a plugin can start from it.
pub use dubchain_plugin_api::tally::Tally;

/// `mem.tx_decode`: each payload decoded by serde_json, every field into an allocation of
/// its own (hex strings to owned `Vec`s, the access list to a `Vec`).
pub fn decode_txs(
    payloads: &[&[u8]],
) -> Vec<Result<dubchain_plugin_api::types::Transaction, String>> {
    payloads
        .iter()
        .map(|p| serde_json::from_slice(p).map_err(|e| e.to_string()))
        .collect()
}

/// A frame in `buffer` (empty, from `mem.buffer_pool` or fresh): `payload`'s length (4
/// bytes, big-endian), then `payload`. How the node frames a message
/// (`node::net::encode_frame`) and what the `framing` case times. One copy each:
/// `RVec::extend_from_slice` would push a byte at a time.
pub fn fill_frame(
    mut buffer: abi_stable::std_types::RVec<u8>, payload: &[u8],
) -> abi_stable::std_types::RVec<u8> {
    buffer.extend_from_copy_slice(&(payload.len() as u32).to_be_bytes());
    buffer.extend_from_copy_slice(payload);
    buffer
}

/// `net.broadcast`'s baseline: every message framed ([`dubchain_plugin_api::wire::frame`])
/// once per peer, each frame in a buffer of its own.
pub fn broadcast_frames(
    msgs: &[dubchain_plugin_api::wire::Message], peers: usize,
) -> Vec<Vec<dubchain_plugin_api::slots::SharedFrame>> {
    (0..peers)
        .map(|_| {
            msgs.iter()
                .map(|m| {
                    abi_stable::std_types::RArc::new(dubchain_plugin_api::wire::frame(m).into())
                })
                .collect()
        })
        .collect()
}

/// `net.send_queue`: the baseline's per-peer queue, an unbounded FIFO: nothing is dropped,
/// and a slow peer's queue grows without limit.
#[derive(Default)]
pub struct FifoQueue {
    state: std::sync::Mutex<(
        std::collections::VecDeque<dubchain_plugin_api::slots::Outgoing>,
        bool,
    )>,
    ready: std::sync::Condvar,
}

impl FifoQueue {
    /// Queues `frames`.
    pub fn push(&self, frames: Vec<dubchain_plugin_api::slots::Outgoing>) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0.extend(frames);
        self.ready.notify_all();
    }

    /// Up to `max` frames, waiting up to `wait` for the first (see
    /// `dubchain_plugin_api::slots::SendQueue`).
    pub fn pop(&self, max: usize, wait: std::time::Duration) -> dubchain_plugin_api::slots::Popped {
        use dubchain_plugin_api::slots::Popped;
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.0.is_empty() && !s.1 {
            s = self
                .ready
                .wait_timeout(s, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let n = max.max(1).min(s.0.len());
        let frames = s.0.drain(..n).collect();
        Popped::of(frames, s.1)
    }

    /// No more pushes; pops drain, then answer `Closed`.
    pub fn close(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1 = true;
        self.ready.notify_all();
    }

    /// Frames queued now.
    pub fn len(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
