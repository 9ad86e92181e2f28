//! `consensus_o1_structures`: the `mempool.tx_pool` index without linear scans (the
//! catalogue row of that name).
//!
//! The baseline keeps a `Vec` and scans it for every duplicate check, for every
//! transaction it selects, and for every removal. Here:
//!
//! * a hash index answers duplicates in O(1);
//! * each sender's entries sit in a `BTreeMap` by nonce (several entries may share a
//!   nonce: replacements), so a sender's ready entry is one lookup;
//! * selection keeps a heap with each sender's best ready entry (highest fee, then the
//!   smallest hash): taking one pushes that sender's best at the next nonce, so a block of
//!   `k` from `n` pending entries of `s` senders costs `s` nonce lookups and
//!   O((s + k) log s), not the baseline's `k` scans of `n`;
//! * removal splits off each sender's entries below its next nonce and drops the
//!   included hashes through the hash index.
//!
//! Identical to the baseline on every call, including its corner: a nonce of `u64::MAX`
//! is followed by nonce 0 (the arithmetic wraps as the baseline's does), and an entry
//! already chosen is never chosen twice.

use std::{
    cmp::Reverse,
    collections::{hash_map::Entry, BTreeMap, BinaryHeap, HashMap, HashSet},
};

use dubchain_plugin_api::{
    export_plugin,
    slots::{NonceSourceRef, PoolEntry, TxIndex, TxPool},
    types::Bytes32,
    PluginError,
};

/// The factory: a fresh index per mempool.
#[derive(Debug, Default)]
pub struct Structures;

/// One mempool's pending transactions.
#[derive(Debug, Default)]
pub struct Index {
    by_hash: HashMap<Bytes32, PoolEntry>,
    /// Each sender's entries by nonce: (fee, hash) of every entry with that nonce.
    by_sender: HashMap<Bytes32, BTreeMap<u64, Vec<(u64, Bytes32)>>>,
}

/// The order the baseline chooses in: the highest fee, then the smallest hash.
type Rank = (u64, Reverse<Bytes32>);

impl Index {
    /// The best entry of `sender` at `nonce` not yet `taken`.
    fn ready(&self, sender: &Bytes32, nonce: u64, taken: &HashSet<Bytes32>) -> Option<Rank> {
        self.by_sender
            .get(sender)?
            .get(&nonce)?
            .iter()
            .filter(|(_, h)| !taken.contains(h))
            .map(|&(fee, hash)| (fee, Reverse(hash)))
            .max()
    }

    /// The next nonce of every sender with pending entries, from the host.
    fn next_nonces(&self, nonces: &NonceSourceRef<'_>) -> Result<Vec<(Bytes32, u64)>, PluginError> {
        self.by_sender
            .keys()
            .map(|s| Ok((*s, nonces.next_nonce(s).into_result()?)))
            .collect()
    }

    fn drop_entry(&mut self, hash: &Bytes32) -> bool {
        let Some(e) = self.by_hash.remove(hash) else {
            return false;
        };
        if let Entry::Occupied(mut by_nonce) = self.by_sender.entry(e.sender) {
            if let Some(at) = by_nonce.get_mut().get_mut(&e.nonce) {
                at.retain(|(_, h)| h != hash);
                if at.is_empty() {
                    by_nonce.get_mut().remove(&e.nonce);
                }
            }
            if by_nonce.get().is_empty() {
                by_nonce.remove();
            }
        }
        true
    }
}

impl TxIndex for Index {
    fn insert(&mut self, entries: &[PoolEntry]) -> Result<Vec<bool>, PluginError> {
        Ok(entries
            .iter()
            .map(|e| match self.by_hash.entry(e.hash) {
                Entry::Occupied(_) => false,
                Entry::Vacant(v) => {
                    v.insert(*e);
                    self.by_sender
                        .entry(e.sender)
                        .or_default()
                        .entry(e.nonce)
                        .or_default()
                        .push((e.fee, e.hash));
                    true
                }
            })
            .collect())
    }

    fn select(
        &mut self, max: u64, nonces: &NonceSourceRef<'_>,
    ) -> Result<Vec<Bytes32>, PluginError> {
        let taken = HashSet::new();
        let mut heap: BinaryHeap<(Rank, Bytes32, u64)> = BinaryHeap::new();
        for (sender, next) in self.next_nonces(nonces)? {
            if let Some(rank) = self.ready(&sender, next, &taken) {
                heap.push((rank, sender, next));
            }
        }
        let mut taken = taken;
        let mut out = Vec::new();
        while (out.len() as u64) < max {
            let Some(((_, Reverse(hash)), sender, nonce)) = heap.pop() else {
                break;
            };
            taken.insert(hash);
            out.push(hash);
            let next = nonce.wrapping_add(1);
            if let Some(rank) = self.ready(&sender, next, &taken) {
                heap.push((rank, sender, next));
            }
        }
        Ok(out)
    }

    fn remove(
        &mut self, included: &[Bytes32], nonces: &NonceSourceRef<'_>,
    ) -> Result<Vec<Bytes32>, PluginError> {
        // Every nonce first: a failing lookup changes nothing.
        let next = self.next_nonces(nonces)?;
        let mut gone = Vec::new();
        for (sender, next) in next {
            let by_nonce = self.by_sender.get_mut(&sender).expect("a pending sender");
            let keep = by_nonce.split_off(&next);
            for (_, at) in std::mem::replace(by_nonce, keep) {
                for (_, hash) in at {
                    self.by_hash.remove(&hash);
                    gone.push(hash);
                }
            }
            if by_nonce.is_empty() {
                self.by_sender.remove(&sender);
            }
        }
        for hash in included {
            if self.drop_entry(hash) {
                gone.push(*hash);
            }
        }
        Ok(gone)
    }

    fn len(&self) -> Result<u64, PluginError> {
        Ok(self.by_hash.len() as u64)
    }
}

impl TxPool for Structures {
    type Index = Index;
    fn new_index(&self) -> Result<Index, PluginError> {
        Ok(Index::default())
    }
}

export_plugin! {
    name: "consensus_o1_structures",
    init: dubchain_plugin_api::settings::none,
    tx_pool: |_: &str| Ok(Structures),
}
