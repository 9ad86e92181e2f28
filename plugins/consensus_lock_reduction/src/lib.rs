//! `consensus_lock_reduction`: the `consensus.vote_tally` state without one lock around
//! everything (the catalogue row of that name).
//!
//! The baseline keeps the whole state behind one `Mutex`, so the finalized height, read
//! nine times for every vote, waits for every vote being counted. Here:
//!
//! * the finalized height is an `AtomicU64`: a read is one load and takes no lock;
//! * the tallies of a height live in one of `shards` shards (by height), each behind a lock
//!   of its own, so votes for different heights do not wait for each other;
//! * a vote at or below the finalized height is answered `None` without a lock: the
//!   contract can answer nothing else for it, whatever was recorded (a height is finalized
//!   only when it is above the finalized one, and that only grows). For the same reason a
//!   height's state is dropped once it is finalized or passed, which bounds the memory.
//!
//! Linearizable: a vote that is counted takes its shard's lock, and the finalized height
//! moves (`fetch_max`) inside that lock, so votes at one height are ordered by the lock and
//! their finality by the atomic. Arithmetic wraps as the baseline's does.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
};

use dubchain_plugin_api::slots::{VoteTallies, VoteTally};
use dubchain_plugin_api::{export_plugin, settings, types::Bytes32, PluginError};

dubchain_plugin_api::declare_settings! {
    /// Shards of the per-height tallies (1 to 1024).
    shards: usize = 16,
}

/// The factory: a fresh state per node.
#[derive(Debug)]
pub struct LockReduction {
    shards: usize,
}

impl LockReduction {
    /// From the plugin's configuration table.
    pub fn from_config(config: &str) -> Result<Self, PluginError> {
        let s: Settings = settings::parse(config)?;
        Ok(LockReduction {
            shards: settings::within("shards", s.shards, 1..=1024)?,
        })
    }
}

/// What is known of one height that is not finalized or passed yet.
#[derive(Debug, Default)]
struct Height {
    /// Validators that voted at this height, one bit each.
    voted: Vec<u64>,
    /// Stake behind each block voted for, in the order first voted for (a handful).
    tallies: Vec<(Bytes32, u64)>,
}

/// One node's consensus state.
#[derive(Debug)]
pub struct Tally {
    stakes: Vec<u64>,
    /// The sum of `stakes`, wrapping, as the baseline computes it.
    total: u64,
    finalized: AtomicU64,
    shards: Vec<Shard>,
}

/// One shard's heights, on cache lines of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(Mutex<HashMap<u64, Height>>);

impl VoteTally for Tally {
    fn record(
        &self, height: u64, block: &Bytes32, validator: u32,
    ) -> Result<Option<u64>, PluginError> {
        let Some(&stake) = self.stakes.get(validator as usize) else {
            return Ok(None);
        };
        if height <= self.finalized.load(Ordering::Acquire) {
            return Ok(None);
        }
        let shard = &self.shards[(height % self.shards.len() as u64) as usize];
        let mut heights = shard
            .0
            .lock()
            .map_err(|_| PluginError::poisoned("a tally shard"))?;
        // Checked again under the lock: a vote in this shard may have finalized it (or a
        // higher height) since.
        let finalized = self.finalized.load(Ordering::Acquire);
        if height <= finalized {
            return Ok(None);
        }
        if !heights.contains_key(&height) {
            // A new height: first drop the ones that were finalized or passed elsewhere.
            heights.retain(|&k, _| k > finalized);
        }
        let h = heights.entry(height).or_default();
        let (word, bit) = (validator as usize / 64, 1u64 << (validator % 64));
        if h.voted.len() <= word {
            h.voted.resize(word + 1, 0);
        }
        if h.voted[word] & bit != 0 {
            return Ok(None);
        }
        h.voted[word] |= bit;
        let tally = match h.tallies.iter_mut().find(|(b, _)| b == block) {
            Some((_, t)) => t,
            None => {
                h.tallies.push((*block, 0));
                &mut h.tallies.last_mut().expect("just pushed").1
            }
        };
        *tally = tally.wrapping_add(stake);
        if tally.wrapping_mul(3) < self.total.wrapping_mul(2) {
            return Ok(None);
        }
        let before = self.finalized.fetch_max(height, Ordering::AcqRel);
        // Heights at or below the finalized one can only ever answer `None`: forget them.
        heights.retain(|&k, _| k > height);
        Ok((before < height).then_some(height))
    }

    fn finalized(&self) -> Result<u64, PluginError> {
        Ok(self.finalized.load(Ordering::Acquire))
    }
}

impl VoteTallies for LockReduction {
    type Tally = Tally;
    fn new_tally(&self, stakes: &[u64]) -> Result<Tally, PluginError> {
        Ok(Tally {
            stakes: stakes.to_vec(),
            total: stakes.iter().fold(0u64, |s, x| s.wrapping_add(*x)),
            finalized: AtomicU64::new(0),
            shards: (0..self.shards).map(|_| Shard::default()).collect(),
        })
    }
}

export_plugin! {
    name: "consensus_lock_reduction",
    vote_tally: LockReduction::from_config,
}
