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

use std::collections::HashMap;

use blst::{
    blst_p1, blst_p1_affine, blst_p2, blst_p2_affine,
    min_pk::{AggregatePublicKey, AggregateSignature, PublicKey, Signature},
    MultiPoint, BLST_ERROR,
};
use dubchain_plugin_api::{
    export_plugin,
    slots::{VoteVerify, VOTE_DST},
    types::VoteItem,
    PluginError,
};
use rand::RngCore;

/// The plugin: stateless.
pub struct Aggregating;

/// A vote whose key and signature decoded and validated.
struct Checked {
    index: usize,
    pk: blst_p1_affine,
    sig: blst_p2_affine,
}

fn decode(v: &VoteItem<'_>) -> Option<(blst_p1_affine, blst_p2_affine)> {
    let pk = PublicKey::from_bytes(&v.public_key).ok()?;
    pk.validate().ok()?;
    let sig = Signature::from_bytes(&v.signature).ok()?;
    sig.validate(true).ok()?;
    Some((pk.into(), sig.into()))
}

/// One vote, exactly as the baseline checks it (its key and signature already validated).
fn verify_one(message: &[u8], c: &Checked) -> bool {
    Signature::from(c.sig).verify(false, message, VOTE_DST, &[], &PublicKey::from(c.pk), false)
        == BLST_ERROR::BLST_SUCCESS
}

/// The randomised aggregate check of `group` (all on `message`).
fn verify_aggregate(message: &[u8], group: &[&Checked]) -> bool {
    let mut scalars = vec![0u8; group.len() * 8];
    rand::thread_rng().fill_bytes(&mut scalars);
    for r in scalars.chunks_mut(8) {
        r[0] |= 1; // never zero: a zero weight would drop its vote from the check
    }
    let sigs: Vec<blst_p2_affine> = group.iter().map(|c| c.sig).collect();
    let pks: Vec<blst_p1_affine> = group.iter().map(|c| c.pk).collect();
    let agg_sig: blst_p2 = sigs.as_slice().mult(&scalars, 64);
    let agg_pk: blst_p1 = pks.as_slice().mult(&scalars, 64);
    let sig = Signature::from_aggregate(&AggregateSignature::from(agg_sig));
    let pk = PublicKey::from_aggregate(&AggregatePublicKey::from(agg_pk));
    sig.verify(false, message, VOTE_DST, &[], &pk, false) == BLST_ERROR::BLST_SUCCESS
}

/// Verdicts for `group`, splitting on failure.
fn verify_group(message: &[u8], group: &[&Checked], out: &mut [bool]) {
    match group.len() {
        0 => {}
        1 => out[group[0].index] = verify_one(message, group[0]),
        n => {
            if verify_aggregate(message, group) {
                for c in group {
                    out[c.index] = true;
                }
            } else {
                let (a, b) = group.split_at(n / 2);
                verify_group(message, a, out);
                verify_group(message, b, out);
            }
        }
    }
}

impl VoteVerify for Aggregating {
    fn verify_votes(&self, votes: &[VoteItem<'_>]) -> Result<Vec<bool>, PluginError> {
        let mut out = vec![false; votes.len()];
        let mut groups: HashMap<&[u8], Vec<Checked>> = HashMap::new();
        for (index, v) in votes.iter().enumerate() {
            if let Some((pk, sig)) = decode(v) {
                groups
                    .entry(v.message.as_slice())
                    .or_default()
                    .push(Checked { index, pk, sig });
            }
        }
        for (message, group) in &groups {
            let refs: Vec<&Checked> = group.iter().collect();
            verify_group(message, &refs, &mut out);
        }
        Ok(out)
    }
}

export_plugin! {
    name: "batching_signature_aggregation",
    vote_verify: |_config: &str| Ok(Aggregating),
}
