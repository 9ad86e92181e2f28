//! Proof of stake: a validator set with stakes votes on every block with BLS signatures
//! (blst, min-pk); a block is final when valid votes carry at least two thirds of the stake.
//!
//! Baselines, as the catalogue names them: every vote's signature is verified on its own
//! (`batching_signature_aggregation` replaces that), and the consensus state is one `Mutex`
//! shared by the threads that record votes (`consensus_lock_reduction` replaces that).

use std::sync::Mutex;

use blst::min_pk::{PublicKey, SecretKey};
use dubchain_plugin_api::types::{Bytes32, VoteItem};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use dubchain_plugin_api::slots::VoteTallyBox;

use dubchain_host::{
    baseline,
    slot::{Slots, VoteVerifySlot},
};

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
                items.push(VoteItem::new(
                    validator.public_key.compress(),
                    v.signature,
                    m.as_slice().into(),
                ));
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

/// The consensus state, shared by every thread that records votes: the baseline's
/// [`baseline::Tally`] behind one `Mutex`, or a `consensus.vote_tally` provider's state.
pub struct ConsensusState {
    imp: Imp,
}

enum Imp {
    Baseline(Mutex<baseline::Tally>),
    Plugin {
        tally: VoteTallyBox,
        stakes: Vec<u64>,
        /// The votes the provider recorded, in the order it answered them: what the
        /// baseline replays if the provider fails.
        log: Mutex<Vec<(u64, Bytes32, u32)>>,
        /// The baseline, once the provider has failed (for good, for this state).
        fallen: Mutex<Option<baseline::Tally>>,
    },
}

impl Default for ConsensusState {
    /// A state on the baseline.
    fn default() -> Self {
        ConsensusState {
            imp: Imp::Baseline(Mutex::new(baseline::Tally::default())),
        }
    }
}

impl ConsensusState {
    /// A state from the `consensus.vote_tally` provider if there is one, else the baseline's.
    pub fn new(slots: &Slots, set: &ValidatorSet) -> ConsensusState {
        let stakes: Vec<u64> = set.validators.iter().map(|v| v.stake).collect();
        match slots.vote_tally.new_tally(&stakes) {
            Some(tally) => ConsensusState {
                imp: Imp::Plugin {
                    tally,
                    stakes,
                    log: Mutex::new(Vec::new()),
                    fallen: Mutex::new(None),
                },
            },
            None => ConsensusState::default(),
        }
    }

    /// Counts a verified vote; returns the new finalized height if this vote finalized one.
    pub fn record(&self, set: &ValidatorSet, vote: &Vote) -> Option<u64> {
        match &self.imp {
            Imp::Baseline(m) => {
                let stakes: Vec<u64> = set.validators.iter().map(|v| v.stake).collect();
                m.lock().unwrap_or_else(|p| p.into_inner()).record(
                    &stakes,
                    vote.height,
                    &vote.block,
                    vote.validator,
                )
            }
            Imp::Plugin {
                tally,
                stakes,
                log,
                fallen,
            } => {
                let key = (vote.height, vote.block, vote.validator);
                {
                    let mut f = fallen.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(b) = f.as_mut() {
                        return b.record(stakes, key.0, &key.1, key.2);
                    }
                }
                match tally.record(key.0, &key.1, key.2).into_result() {
                    Ok(r) => {
                        log.lock().unwrap_or_else(|p| p.into_inner()).push(key);
                        r.into_option()
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "consensus.vote_tally provider failed; this node's consensus state continues on the baseline");
                        let mut f = fallen.lock().unwrap_or_else(|p| p.into_inner());
                        let b = f.get_or_insert_with(|| {
                            let mut b = baseline::Tally::default();
                            for (h, block, v) in
                                log.lock().unwrap_or_else(|p| p.into_inner()).iter()
                            {
                                b.record(stakes, *h, block, *v);
                            }
                            b
                        });
                        b.record(stakes, key.0, &key.1, key.2)
                    }
                }
            }
        }
    }

    pub fn finalized(&self) -> u64 {
        match &self.imp {
            Imp::Baseline(m) => m.lock().unwrap_or_else(|p| p.into_inner()).finalized(),
            Imp::Plugin {
                tally,
                fallen,
                stakes,
                log,
            } => {
                if let Some(b) = fallen.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                    return b.finalized();
                }
                match tally.finalized().into_result() {
                    Ok(h) => h,
                    Err(_) => {
                        // Answer from the votes the provider took.
                        let mut b = baseline::Tally::default();
                        for (h, block, v) in log.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                            b.record(stakes, *h, block, *v);
                        }
                        b.finalized()
                    }
                }
            }
        }
    }
}
