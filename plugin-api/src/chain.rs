//! The chain's canonical bytes and hashes: what a transaction's sender signs, a
//! transaction's and a block's identity, and the RFC 6962 Merkle root. The host and every
//! plugin that validates blocks use these same functions.
//!
//! Canonical encodings are hand-written fixed layouts (little-endian integers, length-
//! prefixed byte strings), independent of any storage format, so that a storage codec
//! plugin can never change a hash.

use sha2::{Digest, Sha256};

use crate::types::{BlockHeader, Bytes32, Transaction, TxKind};

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

/// The address of the contract `deployer` creates with the transaction of nonce `nonce`: a
/// deploy transaction's `to` must be this.
pub fn contract_address(deployer: &Bytes32, nonce: u64) -> Bytes32 {
    let mut h = Sha256::new();
    h.update(b"dubchain-contract-v1");
    h.update(deployer.0);
    h.update(nonce.to_le_bytes());
    Bytes32(h.finalize().into())
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

/// The RFC 6962 Merkle tree hash of `leaves`, with SHA-256: the empty tree is `SHA-256()`,
/// a leaf `SHA-256(0x00 || leaf)`, a node `SHA-256(0x01 || left || right)`, and `n > 1`
/// leaves split at the largest power of two below `n`.
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
                let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
                node(&root(&leaves[..k]), &root(&leaves[k..]))
            }
        }
    }
    Bytes32(root(leaves))
}
