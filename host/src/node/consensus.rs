//! Proof of stake: a validator set with stakes votes on every block with BLS signatures
//! (blst, min-pk); a block is final when valid votes carry at least two thirds of the stake.
//!
//! Baselines, as the catalogue names them: every vote's signature is verified on its own
//! (`batching_signature_aggregation` replaces that), and the consensus state is one `Mutex`
//! shared by the threads that record votes (`consensus_lock_reduction` replaces that).

use std::{collections::BTreeMap, sync::Mutex};

use blst::min_pk::{PublicKey, SecretKey};
use dubchain_plugin_api::types::{Bytes32, VoteItem};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::slot::VoteVerifySlot;

/// Domain separation tag of DubChain votes (proof-of-possession ciphersuite).
pub const DST: &[u8] = dubchain_plugin_api::slots::VOTE_DST;

/// A validator as everyone knows it.
#[derive(Debug, Clone)]
pub struct Validator {
    pub id: Bytes32,
    pub stake: u64,
    pub public_key: PublicKey,
}

/// The validator set, with the secret keys of the validators this process runs.
pub struct ValidatorSet {
    pub validators: Vec<Validator>,
    secrets: Vec<SecretKey>,
}

/// One validator's vote for a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    pub height: u64,
    pub block: Bytes32,
    pub validator: u32,
    /// Compressed BLS signature over [`vote_message`].
    pub signature: [u8; 96],
}

/// What a vote signs.
pub fn vote_message(height: u64, block: &Bytes32) -> Vec<u8> {
    [
        b"dubchain-vote-v1".as_slice(),
        &height.to_le_bytes(),
        &block.0,
    ]
    .concat()
}

impl ValidatorSet {
    /// `ids.len()` validators with seeded BLS keys and stakes between 1 and 100.
    pub fn generate(seed: u64, ids: &[Bytes32]) -> ValidatorSet {
        let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0xb15);
        let secrets: Vec<SecretKey> = ids
            .iter()
            .map(|_| {
                let ikm: [u8; 32] = rng.gen();
                SecretKey::key_gen(&ikm, &[]).expect("32 bytes of key material")
            })
            .collect();
        let validators = ids
            .iter()
            .zip(&secrets)
            .map(|(id, sk)| Validator {
                id: *id,
                stake: rng.gen_range(1..=100),
                public_key: sk.sk_to_pk(),
            })
            .collect();
        ValidatorSet {
            validators,
            secrets,
        }
    }

    pub fn total_stake(&self) -> u64 {
        self.validators.iter().map(|v| v.stake).sum()
    }

    /// Validator `index`'s vote for `block` at `height`.
    pub fn vote(&self, index: usize, height: u64, block: &Bytes32) -> Vote {
        let signature = self.secrets[index]
            .sign(&vote_message(height, block), DST, &[])
            .to_bytes();
        Vote {
            height,
            block: *block,
            validator: index as u32,
            signature,
        }
    }
}

/// Verdicts on `votes`, in one batch through the `consensus.vote_verify` slot (whose
/// baseline verifies each signature on its own). A vote from an unknown validator is
/// invalid without being asked.
pub fn verify_votes(slot: &VoteVerifySlot, set: &ValidatorSet, votes: &[Vote]) -> Vec<bool> {
    let messages: Vec<Vec<u8>> = votes
        .iter()
        .map(|v| vote_message(v.height, &v.block))
        .collect();
    let mut known = Vec::with_capacity(votes.len());
    let mut items = Vec::with_capacity(votes.len());
    for (v, m) in votes.iter().zip(&messages) {
        match set.validators.get(v.validator as usize) {
            Some(validator) => {
                known.push(true);
                items.push(VoteItem {
                    public_key: validator.public_key.compress(),
                    signature: v.signature,
                    message: m.as_slice().into(),
                });
            }
            None => known.push(false),
        }
    }
    let mut verdicts = slot.verify_votes(&items).into_iter();
    known
        .into_iter()
        .map(|k| k && verdicts.next().unwrap_or(false))
        .collect()
}

#[derive(Default)]
struct Tally {
    stake: u64,
    voters: Vec<u32>,
}

#[derive(Default)]
struct Inner {
    finalized: u64,
    /// Stake behind each (height, block), counting each validator once per height.
    tallies: BTreeMap<(u64, Bytes32), Tally>,
    /// Validators that already voted at a height (the first vote counts; equivocation is
    /// ignored).
    voted: BTreeMap<u64, Vec<u32>>,
}

/// The consensus state, shared by every thread that records votes.
#[derive(Default)]
pub struct ConsensusState {
    inner: Mutex<Inner>,
}

impl ConsensusState {
    /// Counts a verified vote; returns the new finalized height if this vote finalized one.
    pub fn record(&self, set: &ValidatorSet, vote: &Vote) -> Option<u64> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let voted = inner.voted.entry(vote.height).or_default();
        if voted.contains(&vote.validator) {
            return None;
        }
        voted.push(vote.validator);
        let stake = set.validators[vote.validator as usize].stake;
        let tally = inner.tallies.entry((vote.height, vote.block)).or_default();
        tally.stake += stake;
        tally.voters.push(vote.validator);
        let reached = tally.stake * 3 >= set.total_stake() * 2;
        if reached && vote.height > inner.finalized {
            inner.finalized = vote.height;
            // Older tallies are settled.
            let keep = inner.tallies.split_off(&(vote.height, Bytes32::default()));
            inner.tallies = keep;
            return Some(vote.height);
        }
        None
    }

    pub fn finalized(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .finalized
    }
}
