//! The chain model's canonical bytes and hashes: what is signed, what is hashed, and the
//! Merkle root of a block's transactions.
//!
//! Canonical encodings are hand-written fixed layouts (little-endian integers, length-
//! prefixed byte strings), independent of any storage format, so that a storage codec plugin
//! can never change a hash.

use dubchain_plugin_api::types::{BlockHeader, Bytes32, Transaction, TxKind};
use sha2::{Digest, Sha256};

/// The bytes a transaction's sender signs: every field but the signature.
pub fn signing_bytes(tx: &Transaction) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + tx.payload.0.len() + 32 * tx.access_list.len());
    out.extend_from_slice(b"dubchain-tx-v1");
    out.extend_from_slice(&tx.from.0);
    out.extend_from_slice(&tx.to.0);
    for v in [tx.amount, tx.fee, tx.nonce, tx.gas_limit] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.push(match tx.kind {
        TxKind::Transfer => 0,
        TxKind::Deploy => 1,
        TxKind::Call => 2,
    });
    out.extend_from_slice(&(tx.payload.0.len() as u64).to_le_bytes());
    out.extend_from_slice(&tx.payload.0);
    out.extend_from_slice(&(tx.access_list.len() as u64).to_le_bytes());
    for a in tx.access_list.iter() {
        out.extend_from_slice(&a.0);
    }
    out
}

/// A transaction's identity: the hash of its signing bytes and signature.
pub fn tx_hash(tx: &Transaction) -> Bytes32 {
    let mut h = Sha256::new();
    h.update(signing_bytes(tx));
    h.update(tx.signature.0);
    Bytes32(h.finalize().into())
}

/// A block's identity: the hash of its header.
pub fn block_hash(header: &BlockHeader) -> Bytes32 {
    let mut h = Sha256::new();
    h.update(b"dubchain-block-v1");
    h.update(header.parent.0);
    h.update(header.height.to_le_bytes());
    h.update(header.proposer.0);
    h.update(header.tx_root.0);
    h.update(header.state_root.0);
    h.update(header.timestamp_ms.to_le_bytes());
    Bytes32(h.finalize().into())
}

/// RFC 6962 Merkle tree hash over `leaves` (leaf and node hashes are domain-separated, so
/// no two different lists share a root; an empty list has the hash of the empty string).
pub fn merkle_root(leaves: &[Bytes32]) -> Bytes32 {
    crate::baseline::merkle_root(leaves)
}

/// The leaves of a block's transaction tree: the transactions' hashes, in order.
pub fn tx_hashes(txs: &[Transaction]) -> Vec<Bytes32> {
    txs.iter().map(tx_hash).collect()
}

/// The Merkle root of a block's transactions, by their hashes (on the baseline; the node
/// computes it through the `crypto.merkle` slot).
pub fn tx_root(txs: &[Transaction]) -> Bytes32 {
    merkle_root(&tx_hashes(txs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merkle_root_matches_rfc6962_shape() {
        let l = |b: u8| Bytes32([b; 32]);
        assert_ne!(merkle_root(&[]), merkle_root(&[l(0)]));
        // Duplicating the last leaf changes the root (no CVE-2012-2459 style collision).
        assert_ne!(
            merkle_root(&[l(1), l(2), l(3)]),
            merkle_root(&[l(1), l(2), l(3), l(3)])
        );
        // Order matters.
        assert_ne!(merkle_root(&[l(1), l(2)]), merkle_root(&[l(2), l(1)]));
        // Five leaves split 4 + 1.
        let five = [l(1), l(2), l(3), l(4), l(5)];
        let manual = {
            let mut h = Sha256::new();
            h.update([1u8]);
            h.update(merkle_root(&five[..4]).0);
            h.update(merkle_root(&five[4..]).0);
            Bytes32(h.finalize().into())
        };
        assert_eq!(merkle_root(&five), manual);
    }
}
