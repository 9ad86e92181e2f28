//! The baseline `consensus.vote_tally` state, here so that the host's baseline and a plugin
//! that starts from it (the scaffold `plugin new` writes) share one definition.

use std::collections::BTreeMap;

use crate::types::Bytes32;

/// `consensus.vote_tally`'s baseline: the vote tallies (the node keeps them behind one `Mutex`).
/// Only a validator's first vote at a height counts; a block whose votes reach two thirds of
/// the stake finalizes its height if it is above the finalized one. Arithmetic wraps.
///
/// Only heights above the finalized one are kept: a vote at or below it can only ever be
/// answered `None` (the finalized height only grows), so it is not recorded, and a
/// height's votes are dropped once it is finalized or passed. The memory is bounded by the
/// votes of the heights not final yet, however long the node runs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    finalized: u64,
    /// Stake behind each (height, block), heights above `finalized` only.
    tallies: BTreeMap<(u64, Bytes32), u64>,
    /// Validators that already voted at a height, heights above `finalized` only.
    voted: BTreeMap<u64, Vec<u32>>,
}

impl Tally {
    /// A state whose finalized height is `finalized` and that has no votes above it: what
    /// a state that finalized `finalized` answers from then on, whatever votes at or below
    /// that height it took.
    pub fn resuming_at(finalized: u64) -> Tally {
        Tally {
            finalized,
            ..Tally::default()
        }
    }

    /// Counts a verified vote of validator `validator` (stake `stakes[validator]`; an
    /// unknown validator's vote counts for nothing); returns the new finalized height if
    /// this vote finalized one.
    pub fn record(
        &mut self, stakes: &[u64], height: u64, block: &Bytes32, validator: u32,
    ) -> Option<u64> {
        let stake = *stakes.get(validator as usize)?;
        if height <= self.finalized {
            return None;
        }
        let voted = self.voted.entry(height).or_default();
        if voted.contains(&validator) {
            return None;
        }
        voted.push(validator);
        let tally = self.tallies.entry((height, *block)).or_default();
        *tally = tally.wrapping_add(stake);
        if !two_thirds(*tally, stakes) {
            return None;
        }
        self.finalized = height;
        // Heights at or below the finalized one are settled: forget them.
        match height.checked_add(1) {
            Some(above) => {
                self.tallies = self.tallies.split_off(&(above, Bytes32::default()));
                self.voted = self.voted.split_off(&above);
            }
            None => {
                self.tallies.clear();
                self.voted.clear();
            }
        }
        Some(height)
    }

    /// What [`Tally::record`] would answer to this vote, without counting it: to check
    /// another tally's answer before this one takes the vote.
    pub fn answer(
        &self, stakes: &[u64], height: u64, block: &Bytes32, validator: u32,
    ) -> Option<u64> {
        let voted = self
            .voted
            .get(&height)
            .is_some_and(|v| v.contains(&validator));
        if height <= self.finalized || voted {
            return None;
        }
        let stake = *stakes.get(validator as usize)?;
        let behind = self.tallies.get(&(height, *block)).copied().unwrap_or(0);
        two_thirds(behind.wrapping_add(stake), stakes).then_some(height)
    }

    /// Heights above the finalized one that have votes: what the state holds.
    pub fn open_heights(&self) -> usize {
        self.voted.len()
    }

    /// The finalized height.
    pub fn finalized(&self) -> u64 {
        self.finalized
    }
}

/// Whether `tally` reaches two thirds of the total stake (`3 * tally >= 2 * total`).
fn two_thirds(tally: u64, stakes: &[u64]) -> bool {
    let total = stakes.iter().fold(0u64, |s, x| s.wrapping_add(*x));
    tally.wrapping_mul(3) >= total.wrapping_mul(2)
}
