//! The state root's definition: a compact sparse Merkle tree over 256-bit keys.
//!
//! Each piece of state is one [`StateLeaf`]: `key` is the SHA-256 of its store key, `value`
//! the digest of what is stored (the node defines both, `dubchain_node::state`). The root
//! of a set of leaves with distinct keys is, at depth `d` (starting at 0):
//!
//! - no leaf: [`EMPTY`];
//! - exactly one leaf: `sha256(0x00 || key || value)` ([`leaf_hash`]), whatever the depth;
//! - otherwise `sha256(0x01 || root(left) || root(right))` ([`node_hash`]), where `left`
//!   holds the leaves whose key has bit `d` clear ([`bit`]: bit 0 is the most significant
//!   bit of byte 0) and `right` the others, both at depth `d + 1`.
//!
//! The root is a function of the set alone (not of the order or history that made it), and
//! a change of `k` leaves changes only the nodes on their paths, about `k * log2(n)` hashes
//! for `n` leaves: a `storage.state_root` provider can keep a tree and update it from each
//! block's changes, where [`root`] (the baseline) hashes every leaf of the state again.

use abi_stable::{std_types::ROption, StableAbi};
use sha2::{Digest, Sha256};

use crate::{types::Bytes32, PluginError};

/// One leaf of the state tree.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StateLeaf {
    /// SHA-256 of the leaf's store key: where it sits in the tree.
    pub key: Bytes32,
    /// The digest of the leaf's stored value.
    pub value: Bytes32,
}

/// A block's change of one leaf: set to `value`, or removed (`RNone`; removing a key the
/// state does not hold changes nothing).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafChange {
    /// The leaf's key.
    pub key: Bytes32,
    /// Its new value digest, or `RNone` when the block removed it.
    pub value: ROption<Bytes32>,
}

/// The root of the empty state (and of every empty subtree): SHA-256 of the empty string.
/// Not all zeros, so a zeroed root (a placeholder, a damaged head) never names the empty
/// tree.
pub const EMPTY: Bytes32 = Bytes32([
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
]);

/// The hash of a subtree that holds exactly `leaf`.
pub fn leaf_hash(leaf: &StateLeaf) -> Bytes32 {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(leaf.key.0);
    h.update(leaf.value.0);
    Bytes32(h.finalize().into())
}

/// The hash of a subtree of two or more leaves, from its halves' hashes.
pub fn node_hash(left: &Bytes32, right: &Bytes32) -> Bytes32 {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left.0);
    h.update(right.0);
    Bytes32(h.finalize().into())
}

/// Bit `depth` of `key` (0: the most significant bit of byte 0): whether the key goes right
/// at that depth. `depth` must be below 256.
pub fn bit(key: &Bytes32, depth: usize) -> bool {
    key.0[depth / 8] & (0x80 >> (depth % 8)) != 0
}

/// The root of `leaves`, computed from scratch (the baseline): sorts them by key and hashes
/// every node. Two leaves with one key are an error.
pub fn root(leaves: &mut [StateLeaf]) -> Result<Bytes32, PluginError> {
    leaves.sort_unstable_by_key(|l| l.key);
    if let Some(w) = leaves.windows(2).find(|w| w[0].key == w[1].key) {
        return Err(PluginError::failed(format!(
            "two state leaves with key {:?}",
            w[0].key
        )));
    }
    Ok(sorted_root(leaves, 0))
}

/// The root of the subtree at `depth` that holds `leaves` (sorted, distinct keys, all on
/// this subtree's path).
pub fn sorted_root(leaves: &[StateLeaf], depth: usize) -> Bytes32 {
    match leaves {
        [] => EMPTY,
        [one] => leaf_hash(one),
        _ => {
            let split = leaves.partition_point(|l| !bit(&l.key, depth));
            node_hash(
                &sorted_root(&leaves[..split], depth + 1),
                &sorted_root(&leaves[split..], depth + 1),
            )
        }
    }
}

/// `Ok` when `changes` are sorted by key with no key twice (what the host hands a
/// provider).
pub fn check_changes(changes: &[LeafChange]) -> Result<(), PluginError> {
    match changes.windows(2).find(|w| w[0].key >= w[1].key) {
        None => Ok(()),
        Some(w) => Err(PluginError::failed(format!(
            "state changes out of key order or repeated at {:?}",
            w[1].key
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(key: u8, value: u8) -> StateLeaf {
        StateLeaf {
            key: Bytes32([key; 32]),
            value: Bytes32([value; 32]),
        }
    }

    #[test]
    fn empty_is_the_sha256_of_nothing() {
        assert_eq!(EMPTY.0, <[u8; 32]>::from(Sha256::digest(b"")));
        assert_eq!(root(&mut []).unwrap(), EMPTY);
    }

    #[test]
    fn a_single_leaf_is_its_own_root_at_any_depth() {
        let one = leaf(0x80, 1);
        assert_eq!(root(&mut [one]).unwrap(), leaf_hash(&one));
        assert_eq!(sorted_root(&[one], 200), leaf_hash(&one));
    }

    #[test]
    fn the_root_follows_the_first_differing_bit() {
        // 0x00.. and 0x40..: both left at depth 0, apart at depth 1.
        let (a, b) = (leaf(0x00, 1), leaf(0x40, 2));
        let expected = node_hash(&node_hash(&leaf_hash(&a), &leaf_hash(&b)), &EMPTY);
        assert_eq!(root(&mut [b, a]).unwrap(), expected);
    }

    #[test]
    fn order_does_not_matter_and_duplicates_are_refused() {
        let mut one = [leaf(1, 1), leaf(9, 2), leaf(200, 3)];
        let mut other = [leaf(200, 3), leaf(1, 1), leaf(9, 2)];
        assert_eq!(root(&mut one).unwrap(), root(&mut other).unwrap());
        assert!(root(&mut [leaf(1, 1), leaf(1, 2)]).is_err());
    }

    #[test]
    fn changes_must_be_sorted_and_distinct() {
        let c = |k: u8| LeafChange {
            key: Bytes32([k; 32]),
            value: ROption::RNone,
        };
        assert!(check_changes(&[c(1), c(2)]).is_ok());
        assert!(check_changes(&[c(2), c(1)]).is_err());
        assert!(check_changes(&[c(1), c(1)]).is_err());
    }
}
