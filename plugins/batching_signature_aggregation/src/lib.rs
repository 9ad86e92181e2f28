//! `batching_signature_aggregation`: the BLS votes of a batch that sign the same message
//! (validators voting on one block) are checked with one pairing equation instead of one
//! per vote, and only a failing group is split to find the bad votes.
//!
//! # Exactness
//!
//! The baseline verdict of a vote is blst's `verify` with the signature's subgroup check
//! and the key's validation. This plugin:
//!
//! 1. decodes and validates every key and signature on its own (decompression, not
//!    infinity, in the prime-order subgroup): a vote failing here is `false`, as in the
//!    baseline, and never reaches an aggregate;
//! 2. for the votes on one message, draws a fresh random 64-bit scalar `r_i` per vote and
//!    checks `e(sum r_i sig_i, g1) == e(H(m), sum r_i pk_i)` (two multi-scalar
//!    multiplications by Pippenger, one pairing check). A plain sum would accept a pair of
//!    votes whose signatures are wrong by `+D` and `-D`; with secret random weights such a
//!    batch passes only with probability about 2^-64;
//! 3. if the check fails, splits the group in halves and checks each the same way, down to
//!    single votes, which are verified exactly as the baseline does.
//!
//! So every `true` is either a baseline verification or an aggregate that all-valid votes
//! always pass, and every `false` ends at a baseline verification: verdicts equal the
//! baseline's except with probability about 2^-64 per check.
//!
//! # Speed
//!
//! Validator keys repeat block after block, so a key's decompression and subgroup check
//! are done once and remembered (bounded: the memo is cleared past 65,536 keys).
//! Signatures are decompressed and subgroup-checked in parallel (rayon), groups on
//! different messages are checked in parallel (blst spreads each multi-scalar
//! multiplication over the cores itself), and the halves of a failed group are checked in
//! parallel.
//!
//! Bisection pays when bad votes are rare: with a share `p` of bad votes it spends about
//! `2 p n log2(1/p)` aggregate checks, each about one vote's pairings plus a multi-scalar
//! multiplication over its votes, where verifying every vote costs `n` pairings; at
//! `p = 0.1` that is `0.66 n` checks and their multiplications, about what the votes one by
//! one cost. So the plugin keeps the share of bad votes among those that decode in its
//! recent batches, and above [`PER_VOTE_ABOVE`] verifies vote by vote (in parallel) until
//! the share falls again (`vote_verify_adversarial` in `bench`: about one vote in six bad).

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU32, Ordering},
        RwLock,
    },
};

use blst::{
    blst_fp12, blst_p1, blst_p1_affine, blst_p2, blst_p2_affine,
    min_pk::{AggregatePublicKey, AggregateSignature, PublicKey, Signature},
    MultiPoint,
};
use dubchain_plugin_api::{
    export_plugin,
    slots::{VoteVerify, VOTE_DST},
    types::VoteItem,
    PluginError,
};
use rand::RngCore;
use rayon::prelude::*;

/// Most validator keys remembered before the memo is cleared.
const MAX_KEYS: usize = 1 << 16;

/// A failed group smaller than this is verified vote by vote: an aggregate check costs about
/// one vote's pairings, so splitting a failed group of two or three saves nothing.
const SPLIT_FROM: usize = 4;

/// Share of bad votes (per mille, recent batches) above which votes are verified one by one.
const PER_VOTE_ABOVE: u32 = 100;

/// The plugin: a memo of validated validator keys, and the recent share of bad votes.
#[derive(Default)]
pub struct Aggregating {
    /// Compressed key to its decoded point, or `None` if it does not validate.
    keys: RwLock<HashMap<[u8; 48], Option<blst_p1_affine>>>,
    /// Bad votes among the decoded ones, per mille, averaged over recent batches (each new
    /// batch weighs a quarter).
    bad_share: AtomicU32,
}

impl Aggregating {
    /// The decoded, validated key, from the memo or computed (and remembered).
    fn key(&self, bytes: &[u8; 48]) -> Option<blst_p1_affine> {
        if let Some(k) = self
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(bytes)
        {
            return *k;
        }
        let decoded = PublicKey::from_bytes(bytes)
            .ok()
            .filter(|pk| pk.validate().is_ok())
            .map(blst_p1_affine::from);
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        if keys.len() >= MAX_KEYS {
            keys.clear();
        }
        keys.insert(*bytes, decoded);
        decoded
    }
}

/// A vote whose key and signature decoded and validated.
struct Checked {
    index: usize,
    pk: blst_p1_affine,
    sig: blst_p2_affine,
}

/// The decoded signature, if it decompresses, is not infinity and is in the subgroup.
fn decode_signature(bytes: &[u8; 96]) -> Option<blst_p2_affine> {
    let sig = Signature::from_bytes(bytes).ok()?;
    sig.validate(true).ok()?;
    Some(sig.into())
}

/// `message` hashed to G2 under the votes' domain, as blst's `verify` hashes it.
fn hash_to_g2(message: &[u8]) -> blst_p2_affine {
    let (mut point, mut affine) = (blst_p2::default(), blst_p2_affine::default());
    // SAFETY: every pointer is to a live value of the type blst expects, with its length;
    // blst writes only `point` and then `affine`.
    unsafe {
        blst::blst_hash_to_g2(
            &mut point,
            message.as_ptr(),
            message.len(),
            VOTE_DST.as_ptr(),
            VOTE_DST.len(),
            std::ptr::null(),
            0,
        );
        blst::blst_p2_to_affine(&mut affine, &point);
    }
    affine
}

/// `e(pk, H(m)) == e(g1, sig)`: the pairing check of blst's `verify` for a key and a
/// signature that are not infinity, with `H(m)` (`hashed`) computed once per message.
fn pairing_holds(hashed: &blst_p2_affine, pk: &blst_p1_affine, sig: &blst_p2_affine) -> bool {
    // SAFETY: blst's generator is a static, valid for the whole program.
    let g1 = unsafe { *blst::blst_p1_affine_generator() };
    blst_fp12::finalverify(
        &blst_fp12::miller_loop(hashed, pk),
        &blst_fp12::miller_loop(sig, &g1),
    )
}

/// One vote, as the baseline's `verify` checks it once its key and signature are validated
/// (neither is infinity, both in their subgroups).
fn verify_one(hashed: &blst_p2_affine, c: &Checked) -> bool {
    pairing_holds(hashed, &c.pk, &c.sig)
}

/// The randomised aggregate check of `group` (all on the message hashed to `hashed`).
fn verify_aggregate(hashed: &blst_p2_affine, group: &[&Checked]) -> bool {
    let mut scalars = vec![0u8; group.len() * 8];
    rand::thread_rng().fill_bytes(&mut scalars);
    for r in scalars.chunks_mut(8) {
        r[0] |= 1; // never zero: a zero weight would drop its vote from the check
    }
    // blst spreads each multi-scalar multiplication over the cores itself.
    let sigs: Vec<blst_p2_affine> = group.iter().map(|c| c.sig).collect();
    let pks: Vec<blst_p1_affine> = group.iter().map(|c| c.pk).collect();
    let agg_sig: blst_p2 = sigs.as_slice().mult(&scalars, 64);
    let agg_pk: blst_p1 = pks.as_slice().mult(&scalars, 64);
    // An aggregate at infinity fails, as blst's `verify` refuses such a key.
    // SAFETY: both point to live points of the types blst expects.
    if unsafe { blst::blst_p2_is_inf(&agg_sig) || blst::blst_p1_is_inf(&agg_pk) } {
        return false;
    }
    let sig = blst_p2_affine::from(Signature::from_aggregate(&AggregateSignature::from(
        agg_sig,
    )));
    let pk = blst_p1_affine::from(PublicKey::from_aggregate(&AggregatePublicKey::from(agg_pk)));
    pairing_holds(hashed, &pk, &sig)
}

/// Every vote of `group` on its own, in parallel.
fn verify_each(hashed: &blst_p2_affine, group: &[&Checked]) -> Vec<bool> {
    group.par_iter().map(|c| verify_one(hashed, c)).collect()
}

/// Verdicts for `group`, in its order: one aggregate check, split in halves on failure.
fn verify_group(hashed: &blst_p2_affine, group: &[&Checked]) -> Vec<bool> {
    let n = group.len();
    if n < 2 {
        return verify_each(hashed, group);
    }
    if verify_aggregate(hashed, group) {
        return vec![true; n];
    }
    let halves = |part: &[&Checked]| {
        if part.len() < SPLIT_FROM {
            verify_each(hashed, part)
        } else {
            verify_group(hashed, part)
        }
    };
    let (a, b) = group.split_at(n / 2);
    let (mut v, w) = rayon::join(|| halves(a), || halves(b));
    v.extend(w);
    v
}

impl VoteVerify for Aggregating {
    fn verify_votes(&self, votes: &[VoteItem<'_>]) -> Result<Vec<bool>, PluginError> {
        let sigs: Vec<Option<blst_p2_affine>> = votes
            .par_iter()
            .map(|v| decode_signature(&v.signature))
            .collect();
        let mut groups: HashMap<&[u8], Vec<Checked>> = HashMap::new();
        for (index, (v, sig)) in votes.iter().zip(sigs).enumerate() {
            if let (Some(sig), Some(pk)) = (sig, self.key(&v.public_key)) {
                groups
                    .entry(v.message.as_slice())
                    .or_default()
                    .push(Checked { index, pk, sig });
            }
        }
        let per_vote = self.bad_share.load(Ordering::Relaxed) > PER_VOTE_ABOVE;
        let verdicts: Vec<Vec<(usize, bool)>> = groups
            .into_par_iter()
            .map(|(message, group)| {
                let refs: Vec<&Checked> = group.iter().collect();
                // The message hashed to G2 once, for every check of its votes.
                let hashed = hash_to_g2(message);
                let verdicts = if per_vote {
                    verify_each(&hashed, &refs)
                } else {
                    verify_group(&hashed, &refs)
                };
                group.iter().map(|c| c.index).zip(verdicts).collect()
            })
            .collect();
        let mut out = vec![false; votes.len()];
        let (mut decoded, mut bad) = (0u64, 0u64);
        for (i, ok) in verdicts.into_iter().flatten() {
            out[i] = ok;
            decoded += 1;
            bad += u64::from(!ok);
        }
        if let Some(share) = (bad * 1000).checked_div(decoded) {
            let old = self.bad_share.load(Ordering::Relaxed);
            self.bad_share
                .store((old * 3 + share as u32) / 4, Ordering::Relaxed);
        }
        Ok(out)
    }
}

export_plugin! {
    name: "batching_signature_aggregation",
    init: dubchain_plugin_api::settings::none,
    vote_verify: |_: &str| Ok(Aggregating::default()),
}

#[cfg(test)]
mod tests {
    use super::*;
    use blst::min_pk::SecretKey;

    /// `n` votes on `message`, every `bad_every`-th one signed over another message.
    fn votes(n: usize, message: &[u8], bad_every: usize) -> (Vec<[u8; 48]>, Vec<[u8; 96]>) {
        let (mut pks, mut sigs) = (Vec::new(), Vec::new());
        for i in 0..n {
            let sk = SecretKey::key_gen(&[i as u8 + 1; 32], &[]).unwrap();
            let signed: &[u8] = if bad_every > 0 && i % bad_every == 0 {
                b"another block"
            } else {
                message
            };
            pks.push(sk.sk_to_pk().compress());
            sigs.push(sk.sign(signed, VOTE_DST, &[]).compress());
        }
        (pks, sigs)
    }

    /// The same verdicts as the baseline whether the plugin aggregates or, after batches
    /// heavy with bad votes, verifies vote by vote; and it goes back to aggregating.
    #[test]
    fn verdicts_are_exact_in_both_modes_and_the_mode_follows_the_bad_share() {
        let plugin = Aggregating::default();
        let message = b"block 7".to_vec();
        let run = |bad_every: usize| {
            let (pks, sigs) = votes(24, &message, bad_every);
            let items: Vec<VoteItem<'_>> = pks
                .iter()
                .zip(&sigs)
                .map(|(pk, sig)| VoteItem::new(*pk, *sig, message.as_slice().into()))
                .collect();
            let expected: Vec<bool> = (0..24)
                .map(|i| bad_every == 0 || i % bad_every != 0)
                .collect();
            assert_eq!(plugin.verify_votes(&items).unwrap(), expected);
        };
        run(0);
        assert!(plugin.bad_share.load(Ordering::Relaxed) <= PER_VOTE_ABOVE);
        for _ in 0..4 {
            run(2); // half of them bad
        }
        assert!(plugin.bad_share.load(Ordering::Relaxed) > PER_VOTE_ABOVE);
        run(2);
        run(5);
        for _ in 0..8 {
            run(0);
        }
        assert!(plugin.bad_share.load(Ordering::Relaxed) <= PER_VOTE_ABOVE);
        run(7);
    }
}
