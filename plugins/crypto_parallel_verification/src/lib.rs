//! `crypto_parallel_verification`: strict ed25519 verdicts, computed across cores, with
//! exact batch verification.
//!
//! The batch is split into chunks that rayon verifies in parallel. Within a chunk, every
//! item that is provably safe to batch joins one random linear combination of the
//! signature equations, checked with one multi-scalar multiplication; every other item is
//! verified on its own with `verify_strict`, the baseline's definition. If the combination
//! does not hold, the chunk is halved and each half checked again, down to single items,
//! which `verify_strict` settles: the verdicts are exactly the baseline's.
//!
//! # Why a batched verdict is the strict one
//!
//! `verify_strict` accepts iff `s` is canonical, neither `A` nor `R` is of small order, and
//! the cofactorless equation `R = [s]B - [k]A` holds for the encoding of `R` as given. An
//! item is batched only if `s` is canonical, `A` decodes to a point of the prime-order
//! subgroup that is not the identity (checked once per key and cached: keys repeat), and
//! `R` is the canonical encoding of a point of the prime-order subgroup that is not the
//! identity. Then every point of its equation lies in the prime-order subgroup, `T = [s]B -
//! [k]A - R` does too, and `verify_strict` accepts iff `T` is the identity. The check
//! `sum z_i T_i = O`, with `z_i` fresh random 128-bit odd integers, holds when every `T_i` is
//! the identity, and otherwise with probability at most about 2^-127 (a group of prime
//! order: a nonzero `T_i` fixes the one `z_i` that cancels it). Without the subgroup checks
//! that bound fails: a small-order component of `R` (which `verify_strict` refuses) is
//! cancelled by an even `z_i`, or by another item's component, with probability up to 1/2.
//!
//! The subgroup test of `R` is Pornin's point-halving test (ePrint 2022/1164, from the
//! `crrl` crate), about a fifth of a strict verification here, where `[l]R` costs about
//! three quarters of one; `curve25519-dalek` has no such test. The test only decides
//! whether an item may be batched; verdicts come from the equations above or from
//! `verify_strict`. With `batch = false` every item is verified with `verify_strict`.
//!
//! In an equation of many items the `R` terms are summed on the points the test decoded
//! (`crrl`, [`msm`]), and compared by canonical encoding with the rest of the equation
//! (`curve25519-dalek`): decoding each `R` a second time was a sixth of the batch's time.

use std::{collections::HashMap, sync::RwLock};

use curve25519_dalek::{
    constants::ED25519_BASEPOINT_POINT,
    edwards::{CompressedEdwardsY, EdwardsPoint},
    traits::{IsIdentity, VartimeMultiscalarMul},
    Scalar,
};
use dubchain_plugin_api::slots::{Next, SigVerify};
use dubchain_plugin_api::{export_plugin, settings, types::SigItem, PluginError};
use rand::Rng;
use rayon::prelude::*;
use sha2::{Digest, Sha512};

mod msm;

dubchain_plugin_api::declare_settings! {
    /// Items per parallel task; with `batch`, the least per task (a batch is split evenly
    /// over the threads, each task one equation).
    chunk: usize = 32,
    /// Batch-verify the items that are provably safe to batch (see the crate docs).
    batch: bool = true,
    /// Most keys remembered.
    key_cache: usize = 65_536,
}

/// Below this many items a failed combination is settled item by item rather than halved.
const SETTLE_SINGLY: usize = 4;

/// Below this many items a chunk is verified item by item: an equation of so few costs
/// about what `verify_strict` does, and the subgroup tests come on top.
const BATCH_MIN: usize = 8;

/// From this many items an equation's `R` terms are summed on `crrl`'s points, which the
/// subgroup test decoded, rather than decoded again for `curve25519-dalek` (a square root
/// each, about 5.6 us here). Below it, `crrl`'s bucket method costs more per point than
/// the decoding saves (measured: 10.4 us a point at 32 points, against 6.6 us at 128 and
/// 3.4 us at 1,024; `curve25519-dalek`'s multi-scalar multiplication about 5 us).
const CRRL_R_MIN: usize = 64;

/// The verifier.
pub struct ParallelVerifier {
    settings: Settings,
    /// Each key seen: its point if it is safe to batch (a canonical encoding of a point of
    /// the prime-order subgroup other than the identity), else `None`.
    keys: RwLock<HashMap<[u8; 32], Option<EdwardsPoint>>>,
}

/// One item's share of a batch equation: `[s]B - [k]A - R`.
struct Term {
    /// The item's index in its chunk.
    index: usize,
    /// `R` as given, and its point (decoded by the subgroup test).
    r_bytes: [u8; 32],
    r: crrl::ed25519::Point,
    /// `R` for `curve25519-dalek`, decoded the first time an equation under
    /// [`CRRL_R_MIN`] items needs it (a failing equation's halves may need it again).
    r_dalek: std::cell::OnceCell<Option<EdwardsPoint>>,
    /// The key, as given, and its point.
    key: [u8; 32],
    a: EdwardsPoint,
    s: Scalar,
    k: Scalar,
}

impl ParallelVerifier {
    pub fn new(settings: Settings) -> Result<Self, PluginError> {
        if settings.chunk == 0 {
            return Err(PluginError::invalid_input("chunk must be at least 1"));
        }
        Ok(ParallelVerifier {
            settings,
            keys: RwLock::new(HashMap::new()),
        })
    }

    pub fn from_config(config: &str) -> Result<Self, PluginError> {
        ParallelVerifier::new(settings::parse(config)?)
    }

    /// Strict verdicts for `items`.
    pub fn verify(&self, items: &[SigItem<'_>]) -> Vec<bool> {
        let mut chunk = self.settings.chunk;
        if self.settings.batch {
            // A batch equation costs less per item the more items it has: one task per
            // thread, each at least `chunk` items.
            chunk = chunk.max(items.len().div_ceil(rayon::current_num_threads()));
        }
        if items.len() <= chunk {
            return self.verify_chunk(items);
        }
        items
            .par_chunks(chunk)
            .flat_map_iter(|c| self.verify_chunk(c))
            .collect()
    }

    fn verify_chunk(&self, items: &[SigItem<'_>]) -> Vec<bool> {
        if !self.settings.batch || items.len() < BATCH_MIN {
            return items.iter().map(verify_strict).collect();
        }
        let mut verdicts = vec![false; items.len()];
        let mut terms = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            match self.term(index, item) {
                Some(t) => terms.push(t),
                None => verdicts[index] = verify_strict(item),
            }
        }
        settle(items, &terms, &mut verdicts);
        verdicts
    }

    /// `item`'s share of a batch equation, if batching cannot change its verdict (see the
    /// crate docs).
    fn term(&self, index: usize, item: &SigItem<'_>) -> Option<Term> {
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(
            item.signature[32..].try_into().expect("32 bytes"),
        ))?;
        let a = self.key_point(&item.public_key)?;
        let r_bytes: [u8; 32] = item.signature[..32].try_into().expect("32 bytes");
        let r = subgroup_point(&r_bytes)?;
        let k = challenge(&r_bytes, &item.public_key, item.message.as_slice());
        Some(Term {
            index,
            r_bytes,
            r,
            r_dalek: std::cell::OnceCell::new(),
            key: item.public_key,
            a,
            s,
            k,
        })
    }

    /// The point of `key` if it is safe to batch, from the cache or decoded now.
    fn key_point(&self, key: &[u8; 32]) -> Option<EdwardsPoint> {
        if let Some(&point) = self.keys.read().unwrap_or_else(|p| p.into_inner()).get(key) {
            return point;
        }
        // The same canonical encoding, so the same point.
        let point = subgroup_point(key).and_then(|_| CompressedEdwardsY(*key).decompress());
        let mut cache = self.keys.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= self.settings.key_cache {
            cache.clear();
        }
        cache.insert(*key, point);
        point
    }
}

/// Sets the verdict of every item of `terms`: all true if their combination holds, else
/// each half settled again; a single item, or a small set whose combination fails, is
/// verified item by item.
fn settle(items: &[SigItem<'_>], terms: &[Term], verdicts: &mut [bool]) {
    if terms.is_empty() {
        return;
    }
    if terms.len() > 1 && combination_holds(terms) {
        for t in terms {
            verdicts[t.index] = true;
        }
    } else if terms.len() <= SETTLE_SINGLY {
        for t in terms {
            verdicts[t.index] = verify_strict(&items[t.index]);
        }
    } else {
        let (left, right) = terms.split_at(terms.len() / 2);
        settle(items, left, verdicts);
        settle(items, right, verdicts);
    }
}

/// Whether `sum z_i ([s_i]B - [k_i]A_i - R_i)` is the identity for fresh random odd
/// 128-bit `z_i`. The keys' terms are summed per key first (keys repeat). From
/// [`CRRL_R_MIN`] items, `sum z_i R_i` is computed on `crrl`'s points and compared, by
/// canonical encoding, with the rest computed by `curve25519-dalek`.
fn combination_holds(terms: &[Term]) -> bool {
    let mut rng = rand::thread_rng();
    let z: Vec<u128> = terms.iter().map(|_| rng.gen::<u128>() | 1).collect();
    let mut base = Scalar::ZERO;
    let mut keys: HashMap<[u8; 32], (EdwardsPoint, Scalar)> = HashMap::new();
    for (t, &z) in terms.iter().zip(&z) {
        let z = Scalar::from(z);
        base += z * t.s;
        keys.entry(t.key).or_insert((t.a, Scalar::ZERO)).1 += z * t.k;
    }
    // [base]B - sum_j [c_j]A_j, with c_j the key's z_i k_i summed.
    let (mut scalars, mut points): (Vec<Scalar>, Vec<EdwardsPoint>) =
        keys.into_values().map(|(a, c)| (-c, a)).unzip();
    scalars.push(base);
    points.push(ED25519_BASEPOINT_POINT);
    if terms.len() >= CRRL_R_MIN {
        let rest = EdwardsPoint::vartime_multiscalar_mul(scalars, points);
        let r_terms: Vec<(crrl::ed25519::Point, [u8; 32])> = terms
            .iter()
            .zip(&z)
            .map(|(t, z)| {
                let mut bytes = [0u8; 32];
                bytes[..16].copy_from_slice(&z.to_le_bytes());
                (t.r, bytes)
            })
            .collect();
        return msm::msm(&r_terms, 128).encode() == rest.compress().0;
    }
    for (t, &z) in terms.iter().zip(&z) {
        // A canonical encoding of a curve point (the subgroup test decoded it).
        let Some(r) = *t
            .r_dalek
            .get_or_init(|| CompressedEdwardsY(t.r_bytes).decompress())
        else {
            return false;
        };
        scalars.push(-Scalar::from(z));
        points.push(r);
    }
    EdwardsPoint::vartime_multiscalar_mul(scalars, points).is_identity()
}

/// The signature's challenge `k = SHA-512(R || A || message) mod l`, over the encodings
/// as given (as `verify_strict` hashes them).
fn challenge(r: &[u8; 32], key: &[u8; 32], message: &[u8]) -> Scalar {
    Scalar::from_bytes_mod_order_wide(
        &Sha512::new()
            .chain_update(r)
            .chain_update(key)
            .chain_update(message)
            .finalize()
            .into(),
    )
}

/// The point encoded by `bytes`, if the encoding is canonical and the point is in the
/// prime-order subgroup and not the identity (the only small-order point in it).
fn subgroup_point(bytes: &[u8; 32]) -> Option<crrl::ed25519::Point> {
    let p = crrl::ed25519::Point::decode(bytes)?;
    (p.is_in_subgroup() != 0 && p.isneutral() == 0).then_some(p)
}

/// The slot's definition of a verdict (the API's one definition).
use dubchain_plugin_api::sig::verify_item as verify_strict;

impl SigVerify for ParallelVerifier {
    fn verify_batch(
        &self, items: &[SigItem<'_>], _next: &Next<'_>,
    ) -> Result<Vec<bool>, PluginError> {
        Ok(self.verify(items))
    }
}

export_plugin! {
    name: "crypto_parallel_verification",
    sig_verify: ParallelVerifier::from_config,
}

#[cfg(test)]
mod tests {
    use curve25519_dalek::constants::EIGHT_TORSION;
    use ed25519_dalek::{Signer, SigningKey};
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Pornin's test, which decides what may be batched, against the definition: `[l]P` is
    /// the identity. Points of the prime-order subgroup plus each of the eight small-order
    /// points (the subgroup's own, the identity, included); and what may be batched is
    /// exactly the subgroup without the identity.
    #[test]
    fn the_subgroup_test_agrees_with_multiplying_by_the_group_order() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..64 {
            let p = ED25519_BASEPOINT_POINT * Scalar::from(rng.gen::<u128>());
            for (i, t) in EIGHT_TORSION.iter().enumerate() {
                for q in [p + t, *t] {
                    let bytes = q.compress().0;
                    let crrl = crrl::ed25519::Point::decode(&bytes).expect("a curve point");
                    assert_eq!(
                        crrl.is_in_subgroup() != 0,
                        q.is_torsion_free(),
                        "torsion point {i}"
                    );
                    assert_eq!(
                        subgroup_point(&bytes).map(crrl::ed25519::Point::encode),
                        (q.is_torsion_free() && !q.is_small_order()).then_some(bytes),
                        "torsion point {i}"
                    );
                }
            }
        }
    }

    /// Encodings `verify_strict` would read as other points or not at all are never
    /// batched: `y` at or above the field's prime, and `x = 0` with its sign bit set.
    #[test]
    fn non_canonical_encodings_are_not_batched() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let p = ED25519_BASEPOINT_POINT * Scalar::from(rng.gen::<u128>());
        let canonical = p.compress().0;
        assert!(subgroup_point(&canonical).is_some());
        // y = p + 1 = 2^255 - 18, a non-canonical encoding of y = 1.
        let mut y_above = [0xffu8; 32];
        y_above[0] = 0xee;
        y_above[31] = 0x7f;
        assert!(subgroup_point(&y_above).is_none());
        // The identity (0, 1) with the sign of x set.
        let mut negative_zero = [0u8; 32];
        negative_zero[0] = 1;
        negative_zero[31] = 0x80;
        assert!(subgroup_point(&negative_zero).is_none());
    }

    /// A signature whose `R` carries the small-order point `torsion`, with `s` such that
    /// `[s]B - [k]A` is `R`'s prime-order part: strict verification refuses it, and a
    /// combination can cancel the rest.
    fn torsion_in_r(signer: &SigningKey, msg: &[u8], torsion: EdwardsPoint) -> [u8; 64] {
        let r = Scalar::from_bytes_mod_order_wide(&Sha512::digest(msg).into());
        let big_r = (ED25519_BASEPOINT_POINT * r + torsion).compress().0;
        let k = challenge(&big_r, &signer.verifying_key().to_bytes(), msg);
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&big_r);
        sig[32..].copy_from_slice(&(r + k * signer.to_scalar()).to_bytes());
        sig
    }

    /// Items with a small-order component in `R`, of every order, alone, one among valid
    /// signatures, and two with the same component (which cancel under odd coefficients):
    /// every verdict is `verify_strict`'s, at every chunk size.
    #[test]
    fn torsion_in_r_of_every_order_is_refused_alone_in_pairs_and_among_valid_ones() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let signers: Vec<SigningKey> = (0..4).map(|_| SigningKey::generate(&mut rng)).collect();
        // Enough that whole sets make equations on both sides of `CRRL_R_MIN`.
        let valid: Vec<([u8; 32], [u8; 64], Vec<u8>)> = (0..100)
            .map(|i| {
                let s = &signers[i % 4];
                let m = vec![i as u8; 1 + i % 50];
                (s.verifying_key().to_bytes(), s.sign(&m).to_bytes(), m)
            })
            .collect();
        let verifiers: Vec<ParallelVerifier> = [1, 5, 16, 64, 256]
            .into_iter()
            .map(|chunk| {
                ParallelVerifier::new(Settings {
                    chunk,
                    ..Settings::default()
                })
                .unwrap()
            })
            .collect();
        for (t, torsion) in EIGHT_TORSION.iter().enumerate().skip(1) {
            let bad: Vec<([u8; 32], [u8; 64], Vec<u8>)> = (0..2u8)
                .map(|j| {
                    let m = vec![0xa0 + j; 33];
                    let s = &signers[usize::from(j)];
                    (
                        s.verifying_key().to_bytes(),
                        torsion_in_r(s, &m, *torsion),
                        m,
                    )
                })
                .collect();
            let mut sets = vec![bad[..1].to_vec(), bad.clone()];
            for at in [0, 13, 40, 100] {
                let mut one = valid.clone();
                one.insert(at, bad[0].clone());
                sets.push(one);
                let mut two = valid.clone();
                two.insert(at, bad[0].clone());
                two.push(bad[1].clone());
                sets.push(two);
            }
            for set in &sets {
                let items: Vec<SigItem<'_>> = set
                    .iter()
                    .map(|(k, s, m)| SigItem::new(*k, *s, m.as_slice().into()))
                    .collect();
                let expected: Vec<bool> = items.iter().map(verify_strict).collect();
                assert!(expected.iter().filter(|ok| !**ok).count() >= 1);
                for v in &verifiers {
                    assert_eq!(
                        v.verify(&items),
                        expected,
                        "torsion point {t}, chunk {}",
                        v.settings.chunk
                    );
                }
            }
        }
    }

    /// A batch that fails is halved down to its bad items: every valid item keeps `true`,
    /// every bad one gets `false`, wherever they sit.
    #[test]
    fn a_failing_batch_finds_exactly_its_bad_items() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let signer = SigningKey::generate(&mut rng);
        let v = ParallelVerifier::new(Settings::default()).unwrap();
        for round in 0..20 {
            // Equations of about 100 and 50 (halves), on both sides of `CRRL_R_MIN`.
            let mut set: Vec<([u8; 32], [u8; 64], Vec<u8>)> = (0..200u32)
                .map(|i| {
                    let m = (i + 1000 * round).to_le_bytes().to_vec();
                    (
                        signer.verifying_key().to_bytes(),
                        signer.sign(&m).to_bytes(),
                        m,
                    )
                })
                .collect();
            let bad: Vec<usize> = (0..rng.gen_range(1..6))
                .map(|_| rng.gen_range(0..200))
                .collect();
            for &b in &bad {
                set[b].2.push(1);
            }
            let items: Vec<SigItem<'_>> = set
                .iter()
                .map(|(k, s, m)| SigItem::new(*k, *s, m.as_slice().into()))
                .collect();
            let got = v.verify(&items);
            for (i, ok) in got.iter().enumerate() {
                assert_eq!(*ok, !bad.contains(&i), "round {round}, item {i}");
            }
        }
    }
}
