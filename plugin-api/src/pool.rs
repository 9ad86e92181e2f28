//! The baseline `mempool.tx_pool` index, here so that the host's baseline and a plugin
//! that starts from it (the scaffold `plugin new` writes) share one definition.

use std::collections::HashMap;

use crate::{slots::PoolEntry, types::Bytes32};

/// `mempool.tx_pool`'s baseline: a `Vec` of entries, every operation a linear scan (the
/// catalogue's `consensus_o1_structures` baseline).
#[derive(Debug, Default, Clone)]
pub struct VecIndex {
    entries: Vec<PoolEntry>,
}

impl VecIndex {
    /// The index that inserting `entries` into an empty one gives (the first of equal
    /// hashes kept), built in one pass instead of a scan per entry: for setting up large
    /// pools in tests and benchmarks.
    pub fn from_entries(entries: impl IntoIterator<Item = PoolEntry>) -> VecIndex {
        let mut seen = std::collections::HashSet::new();
        VecIndex {
            entries: entries
                .into_iter()
                .filter(|e| seen.insert(e.hash))
                .collect(),
        }
    }

    /// One verdict per entry: kept, or `false` for a hash already pending.
    pub fn insert(&mut self, entries: &[PoolEntry]) -> Vec<bool> {
        entries
            .iter()
            .map(|e| {
                if self.entries.iter().any(|p| p.hash == e.hash) {
                    false
                } else {
                    self.entries.push(*e);
                    true
                }
            })
            .collect()
    }

    /// Up to `max` hashes in fee order that respects each sender's nonce sequence from
    /// `next_nonce`; ties go to the smaller hash.
    pub fn select<E>(
        &self, max: usize, next_nonce: &dyn Fn(&Bytes32) -> Result<u64, E>,
    ) -> Result<Vec<Bytes32>, E> {
        let mut next: HashMap<Bytes32, u64> = HashMap::new();
        for e in &self.entries {
            if let std::collections::hash_map::Entry::Vacant(v) = next.entry(e.sender) {
                v.insert(next_nonce(&e.sender)?);
            }
        }
        let mut taken = vec![false; self.entries.len()];
        let mut out = Vec::new();
        while out.len() < max {
            let mut best: Option<usize> = None;
            for (i, e) in self.entries.iter().enumerate() {
                if taken[i] || e.nonce != next[&e.sender] {
                    continue;
                }
                let better = best.is_none_or(|b| {
                    let bt = &self.entries[b];
                    (e.fee, std::cmp::Reverse(e.hash)) > (bt.fee, std::cmp::Reverse(bt.hash))
                });
                if better {
                    best = Some(i);
                }
            }
            let Some(b) = best else { break };
            taken[b] = true;
            let e = &self.entries[b];
            next.insert(e.sender, e.nonce + 1);
            out.push(e.hash);
        }
        Ok(out)
    }

    /// Drops `included` and every entry whose nonce is below its sender's next one;
    /// returns the hashes dropped.
    pub fn remove<E>(
        &mut self, included: &[Bytes32], next_nonce: &dyn Fn(&Bytes32) -> Result<u64, E>,
    ) -> Result<Vec<Bytes32>, E> {
        let mut nonces: HashMap<Bytes32, u64> = HashMap::new();
        let mut keep = Vec::with_capacity(self.entries.len());
        let mut gone = Vec::new();
        for e in std::mem::take(&mut self.entries) {
            let nonce = match nonces.get(&e.sender) {
                Some(n) => *n,
                None => *nonces.entry(e.sender).or_insert(next_nonce(&e.sender)?),
            };
            if !included.contains(&e.hash) && e.nonce >= nonce {
                keep.push(e);
            } else {
                gone.push(e.hash);
            }
        }
        self.entries = keep;
        Ok(gone)
    }

    /// The pending entry with hash `hash`.
    pub fn get(&self, hash: &Bytes32) -> Option<&PoolEntry> {
        self.entries.iter().find(|e| e.hash == *hash)
    }

    /// How many entries are pending.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
