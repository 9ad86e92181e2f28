//! Proof of stake: a validator set with stakes votes on every block with BLS signatures
//! (blst, min-pk); a block is final when valid votes carry at least two thirds of the stake.
//!
//! Baselines, as the catalogue names them: every vote's signature is verified on its own
//! (`batching_signature_aggregation` replaces that), and the consensus state is one `Mutex`
//! shared by the threads that record votes (`consensus_lock_reduction` replaces that).

use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Mutex,
};

use blst::min_pk::{PublicKey, SecretKey};
use dubchain_plugin_api::types::{Bytes32, VoteItem};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use dubchain_plugin_api::{slots::VoteTallyBox, PluginError};

use dubchain_host::{
    baseline,
    slot::{Slots, VoteTalliesSlot, VoteVerifySlot},
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
pub struct ConsensusState<'a> {
    imp: Imp<'a>,
}

enum Imp<'a> {
    Baseline(Mutex<baseline::Tally>),
    Plugin {
        /// The slot whose provider made `tally`: told of its failure, so that the status and
        /// the monitor show it, and its breaker counts it.
        slot: &'a VoteTalliesSlot,
        tally: VoteTallyBox,
        stakes: Vec<u64>,
        /// The baseline's count of the votes the provider took, which checks each answer
        /// ([`Replay::take`]), and the baseline itself once the provider has failed (for
        /// good, for this state). One lock, held across the provider's `record`, so the
        /// votes are counted in the order the provider answered them and no vote falls
        /// between the provider and the baseline. The node's votes are so counted one at a
        /// time on either side: the provider's gain in the node is the finalized height,
        /// which is read without this lock.
        votes: Mutex<Replay>,
        /// Whether the provider has failed and `votes` answers: read by `finalized`
        /// without the lock.
        fallen: AtomicBool,
        /// The highest height the provider finalized and the host accepted (what
        /// the replay's tally holds as finalized, mirrored here for `finalized` to read without the
        /// lock): its `finalized` can never answer less.
        claimed: AtomicU64,
    },
}

impl Default for ConsensusState<'_> {
    /// A state on the baseline.
    fn default() -> Self {
        ConsensusState {
            imp: Imp::Baseline(Mutex::new(baseline::Tally::default())),
        }
    }
}

impl<'a> ConsensusState<'a> {
    /// A state from the `consensus.vote_tally` provider if there is one, else the baseline's.
    pub fn new(slots: &'a Slots, set: &ValidatorSet) -> ConsensusState<'a> {
        let stakes: Vec<u64> = set.validators.iter().map(|v| v.stake).collect();
        match slots.vote_tally.new_tally(&stakes) {
            Some(tally) => ConsensusState {
                imp: Imp::Plugin {
                    slot: &slots.vote_tally,
                    tally,
                    stakes,
                    votes: Mutex::new(Replay::default()),
                    fallen: AtomicBool::new(false),
                    claimed: AtomicU64::new(0),
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
                slot,
                tally,
                stakes,
                votes,
                fallen,
                claimed,
            } => {
                let key = (vote.height, vote.block, vote.validator);
                let mut votes = votes.lock().unwrap_or_else(|p| p.into_inner());
                if fallen.load(Ordering::Acquire) {
                    return votes.tally.record(stakes, key.0, &key.1, key.2);
                }
                let taken = tally
                    .record(key.0, &key.1, key.2)
                    .into_result()
                    .and_then(|answer| {
                        votes
                            .take(stakes, key, answer.into_option())
                            .map_err(PluginError::failed)
                    });
                match taken {
                    Ok(answer) => {
                        if let Some(h) = answer {
                            claimed.fetch_max(h, Ordering::Release);
                        }
                        answer
                    }
                    Err(e) => {
                        // Counted and logged there; this state continues on the baseline's
                        // count for good (which has not counted this vote yet).
                        slot.object_failed("record", &e);
                        fallen.store(true, Ordering::Release);
                        votes.tally.record(stakes, key.0, &key.1, key.2)
                    }
                }
            }
        }
    }

    pub fn finalized(&self) -> u64 {
        match &self.imp {
            Imp::Baseline(m) => m.lock().unwrap_or_else(|p| p.into_inner()).finalized(),
            Imp::Plugin {
                slot,
                tally,
                fallen,
                votes,
                claimed,
                ..
            } => {
                if !fallen.load(Ordering::Acquire) {
                    // Read before the provider is asked: a claim accepted since can only
                    // raise what it answers.
                    let least = claimed.load(Ordering::Acquire);
                    let answer = tally.finalized().into_result().and_then(|h| {
                        if h >= least {
                            Ok(h)
                        } else {
                            Err(PluginError::failed(format!(
                                "it answered finalized height {h}, below the height {least} it finalized"
                            )))
                        }
                    });
                    match answer {
                        Ok(h) => return h,
                        Err(e) => {
                            // Under the lock, so that the failure is reported once.
                            let _votes = votes.lock().unwrap_or_else(|p| p.into_inner());
                            if !fallen.swap(true, Ordering::AcqRel) {
                                slot.object_failed("finalized", &e);
                            }
                        }
                    }
                }
                // The baseline's, for good.
                votes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .tally
                    .finalized()
            }
        }
    }
}

/// The votes a `consensus.vote_tally` provider took, counted by the baseline's tally in
/// the order the provider answered them: what every answer of the provider is checked
/// against ([`baseline::Tally::answer`]), and the baseline it falls back to. The baseline
/// keeps only the heights above the finalized one, so this is bounded by the heights not
/// final yet, however long the node runs.
#[derive(Debug, Default)]
struct Replay {
    tally: baseline::Tally,
}

impl Replay {
    /// Takes the provider's `answer` to the vote `(height, block, validator)` and returns
    /// it, or says why the baseline would not have given it (and counts nothing).
    fn take(
        &mut self, stakes: &[u64], (height, block, validator): (u64, Bytes32, u32),
        answer: Option<u64>,
    ) -> Result<Option<u64>, String> {
        let expected = self.tally.answer(stakes, height, &block, validator);
        if answer != expected {
            let say = |a: Option<u64>| {
                a.map_or("no height final".to_owned(), |h| {
                    format!("height {h} final")
                })
            };
            return Err(format!(
                "it answered {} to validator {validator}'s vote at height {height}, where the baseline's count of the votes it took makes {} (finalized height {})",
                say(answer),
                say(expected),
                self.tally.finalized()
            ));
        }
        self.tally.record(stakes, height, &block, validator);
        Ok(expected)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use dubchain_host::testing::{assert_failed_once, install_one};
    use dubchain_plugin_api::{
        abi_stable::sabi_trait::TD_Opaque,
        slots::{Guarded, VoteTallies, VoteTalliesFfi_TO, VoteTally},
        PluginError,
    };

    use super::*;

    /// Votes of `n` validators at heights `1..=heights`, mostly for one block, some for
    /// another, some repeated, some from outside the set, some far behind.
    fn votes(seed: u64, n: u32, heights: u64) -> Vec<(u64, Bytes32, u32)> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let blocks = [Bytes32([1; 32]), Bytes32([2; 32])];
        let mut out = Vec::new();
        for h in 1..=heights {
            for _ in 0..n * 2 {
                let height = if rng.gen_range(0..8) == 0 {
                    rng.gen_range(0..=h)
                } else {
                    h
                };
                let block = blocks[usize::from(rng.gen_range(0..5) == 0)];
                out.push((height, block, rng.gen_range(0..n + 1)));
            }
        }
        out
    }

    #[test]
    fn the_baseline_tally_keeps_only_heights_above_the_finalized_one() {
        let stakes: Vec<u64> = (1..=7).collect();
        let mut t = baseline::Tally::default();
        let mut highest = 0;
        for (h, b, v) in votes(1, 7, 2_000) {
            t.record(&stakes, h, &b, v);
            highest = highest.max(h);
            let open = t.open_heights() as u64;
            assert!(open <= highest - t.finalized(), "height {h}: {open} open");
        }
        assert!(
            t.finalized() > 1_500,
            "most heights finalize: {}",
            t.finalized()
        );
    }

    /// Every answer is checked: one that differs from the baseline's on the same votes is
    /// refused and changes nothing; the right one is taken, and the baseline resumed from
    /// what is kept answers as one that took every vote.
    #[test]
    fn the_replay_refuses_every_wrong_answer_and_resumes_where_every_vote_would() {
        for seed in 0..20 {
            let stakes: Vec<u64> = (0..10).map(|i| (i * 37 + seed) % 11).collect();
            let (mut full, mut replay) = (baseline::Tally::default(), Replay::default());
            for (i, key) in votes(seed, 10, 200).into_iter().enumerate() {
                let want = full.record(&stakes, key.0, &key.1, key.2);
                let wrong = match want {
                    Some(h) if i % 2 == 0 => Some(h + 1),
                    Some(_) => None,
                    None => Some(key.0),
                };
                let kept = replay.tally.clone();
                assert!(
                    replay.take(&stakes, key, wrong).is_err(),
                    "seed {seed} vote {i}: {wrong:?} for {want:?}"
                );
                assert_eq!(replay.tally, kept, "a refused answer changes nothing");
                assert_eq!(
                    replay.take(&stakes, key, want),
                    Ok(want),
                    "seed {seed} vote {i}"
                );
                let mut resumed = replay.tally.clone();
                assert_eq!(resumed.finalized(), full.finalized());
                // Only what the baseline keeps (the heights above the finalized one).
                assert_eq!(resumed, full);
                // The next vote is answered alike from the resumed state.
                let probe = (full.finalized() + 1, Bytes32([1; 32]), 3);
                assert_eq!(
                    resumed.record(&stakes, probe.0, &probe.1, probe.2),
                    full.clone().record(&stakes, probe.0, &probe.1, probe.2)
                );
            }
        }
    }

    #[test]
    fn a_claimed_finality_the_votes_do_not_carry_is_refused() {
        let stakes = [1, 1, 1];
        let block = Bytes32([1; 32]);
        let other = Bytes32([2; 32]);
        let mut r = Replay::default();
        assert!(
            r.take(&stakes, (1, block, 0), Some(1)).is_err(),
            "one of three"
        );
        assert!(r.take(&stakes, (1, block, 9), Some(1)).is_err(), "no stake");
        assert_eq!(r.take(&stakes, (1, block, 0), None), Ok(None));
        assert!(
            r.take(&stakes, (1, block, 0), Some(1)).is_err(),
            "a second vote"
        );
        assert!(r.take(&stakes, (1, other, 1), Some(1)).is_err(), "split");
        assert!(
            r.take(&stakes, (1, block, 2), Some(2)).is_err(),
            "another height"
        );
        assert!(
            r.take(&stakes, (1, block, 2), None).is_err(),
            "finality withheld"
        );
        assert_eq!(r.take(&stakes, (1, block, 2), Some(1)), Ok(Some(1)));
        assert_eq!(r.tally.open_heights(), 0);
        assert!(r.take(&stakes, (1, block, 1), Some(1)).is_err(), "again");
    }

    /// How a [`Lying`] tally departs from the baseline's.
    #[derive(Clone, Copy)]
    enum Lie {
        None,
        /// It claims this height final on the first vote there.
        ClaimsAt(u64),
        /// It never says this height is final (and counts no vote there).
        WithholdsAt(u64),
        /// It answers 0 when asked for the finalized height.
        Forgets,
    }

    /// The baseline's tally behind a lock, but for its [`Lie`].
    struct Lying {
        stakes: Vec<u64>,
        inner: Mutex<baseline::Tally>,
        lie: Lie,
        finalized: AtomicU64,
    }

    impl VoteTally for Lying {
        fn record(&self, h: u64, b: &Bytes32, v: u32) -> Result<Option<u64>, PluginError> {
            match self.lie {
                Lie::ClaimsAt(at) if h == at => {
                    self.finalized.fetch_max(h, Ordering::Relaxed);
                    return Ok(Some(h));
                }
                Lie::WithholdsAt(at) if h == at => return Ok(None),
                _ => {}
            }
            let answer = self.inner.lock().unwrap().record(&self.stakes, h, b, v);
            if let Some(f) = answer {
                self.finalized.fetch_max(f, Ordering::Relaxed);
            }
            Ok(answer)
        }
        fn finalized(&self) -> Result<u64, PluginError> {
            Ok(if matches!(self.lie, Lie::Forgets) {
                0
            } else {
                self.finalized.load(Ordering::Relaxed)
            })
        }
    }

    impl VoteTallies for Lie {
        type Tally = Lying;
        fn new_tally(&self, stakes: &[u64]) -> Result<Lying, PluginError> {
            Ok(Lying {
                stakes: stakes.to_vec(),
                inner: Mutex::default(),
                lie: *self,
                finalized: AtomicU64::new(0),
            })
        }
    }

    /// Four validators voting for one block at heights `1..=heights`, recorded by a state
    /// on `provider` and one on the baseline: every answer and every finalized height
    /// compared. The provider's slot, to read its status.
    fn against_the_baseline(provider: Lie, heights: u64) -> Slots {
        let ids: Vec<Bytes32> = (0..4u8).map(|i| Bytes32([i; 32])).collect();
        let set = ValidatorSet::generate(5, &ids);
        let slots = Slots::default();
        install_one(
            &slots.vote_tally,
            "lying_tally",
            VoteTalliesFfi_TO::from_value(Guarded(provider), TD_Opaque),
        );
        {
            let on_provider = ConsensusState::new(&slots, &set);
            let on_baseline = ConsensusState::default();
            for height in 1..=heights {
                for validator in 0..4 {
                    let vote = Vote {
                        height,
                        block: Bytes32([7; 32]),
                        validator,
                        signature: [0; 96],
                    };
                    assert_eq!(
                        on_provider.record(&set, &vote),
                        on_baseline.record(&set, &vote),
                        "height {height} validator {validator}"
                    );
                    assert_eq!(on_provider.finalized(), on_baseline.finalized());
                }
            }
            assert_eq!(on_provider.finalized(), heights, "every height finalized");
        }
        slots
    }

    #[test]
    fn a_truthful_provider_is_kept_through_the_checks() {
        let slots = against_the_baseline(Lie::None, 40);
        assert_eq!(slots.vote_tally.status().counters.errors, 0);
    }

    #[test]
    fn a_provider_that_claims_a_false_finality_is_replaced_by_the_baseline_mid_run() {
        assert_failed_once(&against_the_baseline(Lie::ClaimsAt(40), 80).vote_tally);
    }

    #[test]
    fn a_provider_that_withholds_a_finality_is_replaced_by_the_baseline_mid_run() {
        assert_failed_once(&against_the_baseline(Lie::WithholdsAt(40), 80).vote_tally);
    }

    #[test]
    fn a_provider_whose_finalized_height_goes_below_its_claims_is_replaced() {
        // Right until its first claim (when 0 is the finalized height), wrong after.
        assert_failed_once(&against_the_baseline(Lie::Forgets, 10).vote_tally);
    }
}
