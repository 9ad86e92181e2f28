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
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

/// `crypto.sig_verify`: each signature in turn, with `verify_strict`.
pub fn sig_verify(items: &[SigItem<'_>]) -> Vec<bool> {
    items.iter().map(verify_one_strict).collect()
}

/// The verdict of one item, as `crypto.sig_verify` defines it.
pub fn verify_one_strict(item: &SigItem<'_>) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(&item.public_key) else {
        return false;
    };
    let signature = Signature::from_bytes(&item.signature);
    key.verify_strict(item.message.as_slice(), &signature)
        .is_ok()
}

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
/// a time.
pub fn merkle_root(leaves: &[Bytes32]) -> Bytes32 {
    fn leaf(l: &Bytes32) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(l.0);
        h.finalize().into()
    }
    fn node(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update([1u8]);
        h.update(a);
        h.update(b);
        h.finalize().into()
    }
    fn root(leaves: &[Bytes32]) -> [u8; 32] {
        match leaves.len() {
            0 => Sha256::digest([]).into(),
            1 => leaf(&leaves[0]),
            n => {
                // The largest power of two smaller than n.
                let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
                node(&root(&leaves[..k]), &root(&leaves[k..]))
            }
        }
    }
    Bytes32(root(leaves))
}

/// `exec.block_execution`, as a pure function: `txs` applied one after another to an
/// in-memory copy of `pre` with [`dubchain_plugin_api::exec::apply_transfer`], each
/// transaction's writes applied at once. The node's baseline does the same against the
/// store (`node::execute::execute_block`); this form is what plugins are tested against.
/// An account outside `pre` reads as empty.
pub fn execute_block(
    pre: &[dubchain_plugin_api::exec::AccountEntry],
    txs: &[dubchain_plugin_api::types::Transaction],
    proposer: &Bytes32,
) -> dubchain_plugin_api::slots::BlockOutcome {
    use dubchain_plugin_api::exec::{apply_transfer, AccountEntry, AccountState, State};
    use std::collections::BTreeMap;
    struct Mem {
        state: BTreeMap<Bytes32, AccountState>,
        written: std::collections::BTreeSet<Bytes32>,
    }
    impl State for Mem {
        type Error = std::convert::Infallible;
        fn get(&mut self, a: &Bytes32) -> Result<AccountState, Self::Error> {
            Ok(self.state.get(a).copied().unwrap_or_default())
        }
        fn put(&mut self, a: &Bytes32, s: AccountState) -> Result<(), Self::Error> {
            self.state.insert(*a, s);
            self.written.insert(*a);
            Ok(())
        }
    }
    let mut mem = Mem {
        state: pre.iter().map(|e| (e.account, e.state)).collect(),
        written: Default::default(),
    };
    let results = txs
        .iter()
        .map(|tx| match apply_transfer(&mut mem, tx, proposer) {
            Ok(r) => r.into(),
            Err(never) => match never {},
        })
        .collect();
    let writes = mem
        .written
        .iter()
        .map(|a| AccountEntry {
            account: *a,
            state: mem.state[a],
        })
        .collect();
    dubchain_plugin_api::slots::BlockOutcome { results, writes }
}
