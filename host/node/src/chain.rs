//! The chain model's canonical bytes and hashes: what is signed, what is hashed, and the
//! Merkle root of a block's transactions. The encodings live in
//! `dubchain_plugin_api::chain`, so plugins that validate blocks hash exactly as the host.

use dubchain_plugin_api::types::{Bytes32, Transaction};
#[cfg(test)]
use sha2::{Digest, Sha256};

pub use dubchain_plugin_api::chain::{block_hash, signing_bytes, tx_hash};

/// RFC 6962 Merkle tree hash over `leaves` (leaf and node hashes are domain-separated, so
/// no two different lists share a root; an empty list has the hash of the empty string).
pub fn merkle_root(leaves: &[Bytes32]) -> Bytes32 {
    dubchain_host::baseline::merkle_root(leaves)
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
