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
//! Signatures are decompressed and subgroup-checked in parallel (rayon), and groups on
//! different messages are checked in parallel.

use std::{collections::HashMap, sync::RwLock};

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
use rayon::prelude::*;

/// Most validator keys remembered before the memo is cleared.
const MAX_KEYS: usize = 1 << 16;

/// The plugin: a memo of validated validator keys.
#[derive(Default)]
pub struct Aggregating {
    /// Compressed key to its decoded point, or `None` if it does not validate.
    keys: RwLock<HashMap<[u8; 48], Option<blst_p1_affine>>>,
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

/// Verdicts for `group`, in its order, splitting on failure.
fn verify_group(message: &[u8], group: &[&Checked]) -> Vec<bool> {
    match group.len() {
        0 => Vec::new(),
        1 => vec![verify_one(message, group[0])],
        n => {
            if verify_aggregate(message, group) {
                vec![true; n]
            } else {
                let (a, b) = group.split_at(n / 2);
                let mut v = verify_group(message, a);
                v.extend(verify_group(message, b));
                v
            }
        }
    }
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
        let verdicts: Vec<Vec<(usize, bool)>> = groups
            .into_par_iter()
            .map(|(message, group)| {
                let refs: Vec<&Checked> = group.iter().collect();
                let verdicts = verify_group(message, &refs);
                group.iter().map(|c| c.index).zip(verdicts).collect()
            })
            .collect();
        let mut out = vec![false; votes.len()];
        for (i, ok) in verdicts.into_iter().flatten() {
            out[i] = ok;
        }
        Ok(out)
    }
}

export_plugin! {
    name: "batching_signature_aggregation",
    init: dubchain_plugin_api::settings::none,
    vote_verify: |_: &str| Ok(Aggregating::default()),
}
