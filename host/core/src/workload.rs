//! Seeded generators of slot inputs: the same seed gives the same bytes on every machine.
//!
//! They serve the self-tests, the differential tests, the benchmarks and `dubchain-perf run`.
//! Signature sets can include adversarial items, chosen because they are where fast
//! verifiers diverge from strict ones.

use curve25519_dalek::{
    constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION},
    edwards::CompressedEdwardsY,
    scalar::Scalar,
};
use dubchain_plugin_api::types::{
    Blob, Block, BlockHeader, Bytes32, Bytes64, Receipt, Record, SigItem, Transaction, TxKind,
};
use ed25519_dalek::{Signer, SigningKey};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha512};

/// Owned signatures with their messages; [`SignatureSet::items`] borrows them as slot input.
#[derive(Debug, Clone, Default)]
pub struct SignatureSet {
    pub entries: Vec<([u8; 32], [u8; 64], Vec<u8>)>,
    /// For each entry, what kind of case it is (for messages in failing tests).
    pub labels: Vec<&'static str>,
}

impl SignatureSet {
    pub fn items(&self) -> Vec<SigItem<'_>> {
        self.entries
            .iter()
            .map(|(k, s, m)| SigItem::new(*k, *s, m.as_slice().into()))
            .collect()
    }

    fn push(&mut self, label: &'static str, key: [u8; 32], sig: [u8; 64], msg: Vec<u8>) {
        self.entries.push((key, sig, msg));
        self.labels.push(label);
    }
}

/// `n` signatures from a pool of signers. Without `adversarial`, all are valid. With it,
/// about a third are invalid or adversarial, cycling through every kind in
/// [`adversarial_item`], and the rest valid.
pub fn signature_set(seed: u64, n: usize, adversarial: bool) -> SignatureSet {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let signers: Vec<SigningKey> = (0..16).map(|_| SigningKey::generate(&mut rng)).collect();
    let mut set = SignatureSet::default();
    let mut kind = 0usize;
    for i in 0..n {
        let signer = &signers[i % signers.len()];
        let len = rng.gen_range(0..200);
        let msg: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        if adversarial && i % 3 == 1 {
            let (label, key, sig, msg) = adversarial_item(kind, signer, msg, &mut rng);
            kind += 1;
            set.push(label, key, sig, msg);
        } else {
            let sig = signer.sign(&msg).to_bytes();
            set.push("valid", signer.verifying_key().to_bytes(), sig, msg);
        }
    }
    set
}

/// The number of distinct adversarial kinds [`adversarial_item`] cycles through.
pub const ADVERSARIAL_KINDS: usize = 11;

/// One adversarial item of kind `kind % ADVERSARIAL_KINDS`.
pub fn adversarial_item(
    kind: usize, signer: &SigningKey, mut msg: Vec<u8>, rng: &mut ChaCha20Rng,
) -> (&'static str, [u8; 32], [u8; 64], Vec<u8>) {
    let key = signer.verifying_key().to_bytes();
    let good = signer.sign(&msg).to_bytes();
    let identity = CompressedEdwardsY::default().0; // y = 1: the identity, order 1
    let mut identity_enc = [0u8; 32];
    identity_enc[0] = 1;
    match kind % ADVERSARIAL_KINDS {
        0 => {
            msg.push(0x55);
            ("tampered message", key, good, msg)
        }
        1 => {
            let mut sig = good;
            sig[7] ^= 0x10;
            ("flipped bit in R", key, sig, msg)
        }
        2 => {
            let other = SigningKey::generate(rng).verifying_key().to_bytes();
            ("wrong key", other, good, msg)
        }
        3 => {
            // s + l encodes the same scalar non-canonically; strict verification rejects it.
            let mut sig = good;
            let s = Scalar::from_canonical_bytes(sig[32..].try_into().expect("32 bytes"))
                .expect("canonical");
            sig[32..].copy_from_slice(&add_group_order(s.to_bytes()));
            ("non-canonical s", key, sig, msg)
        }
        4 => {
            // Small-order key and R with s = 0: the cofactorless equation holds (0 = 0),
            // so a non-strict or batch verifier accepts it.
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(&identity_enc);
            ("small-order key and R, s = 0", identity_enc, sig, msg)
        }
        5 => {
            let _ = identity;
            let mut sig = good;
            sig[..32].copy_from_slice(&EIGHT_TORSION[1].compress().0);
            ("small-order R", key, sig, msg)
        }
        6 => {
            // A y coordinate >= p: the key does not decode canonically or at all.
            let mut bad = [0xffu8; 32];
            bad[31] = 0x7f;
            ("non-canonical key encoding", bad, good, msg)
        }
        7 => (
            "mixed-order R",
            key,
            sign_with_torsion_in_r(signer, &msg, 4),
            msg,
        ),
        8 => (
            "mixed-order R (order-2 component)",
            key,
            sign_with_torsion_in_r(signer, &msg, 2),
            msg,
        ),
        9 => {
            let (k, s) = sign_with_mixed_key(signer, &msg);
            ("mixed-order key", k, s, msg)
        }
        _ => {
            let mut sig = good;
            sig[63] |= 0xf0; // s far above l
            ("s out of range", key, sig, msg)
        }
    }
}

/// s + l as 32 little-endian bytes (fits: l < 2^253).
fn add_group_order(s: [u8; 32]) -> [u8; 32] {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(s[i]) + u16::from(L[i]) + carry;
        out[i] = v as u8;
        carry = v >> 8;
    }
    out
}

fn challenge(r: &[u8; 32], a: &[u8; 32], msg: &[u8]) -> Scalar {
    let mut h = Sha512::new();
    h.update(r);
    h.update(a);
    h.update(msg);
    Scalar::from_bytes_mod_order_wide(&h.finalize().into())
}

/// A signature whose R carries a torsion component of order `order` (2, 4 or 8), with `s`
/// computed so that [s]B - [k]A is exactly the torsion-free part of R. Strict verification
/// rejects it (R differs from the recomputed point); a cofactorless batch equation is off by
/// a small-order point only, which a random linear combination can cancel.
fn sign_with_torsion_in_r(signer: &SigningKey, msg: &[u8], order: usize) -> [u8; 64] {
    let a = signer.to_scalar();
    let key = signer.verifying_key().to_bytes();
    let r = Scalar::from_bytes_mod_order_wide(&Sha512::digest(msg).into());
    let torsion = EIGHT_TORSION[8 / order];
    let big_r = (ED25519_BASEPOINT_POINT * r + torsion).compress().0;
    let k = challenge(&big_r, &key, msg);
    let s = r + k * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&big_r);
    sig[32..].copy_from_slice(&s.to_bytes());
    sig
}

/// A key A' = A + T (T of order 8) and a signature by A's secret over `msg` under A'.
/// Strict verification accepts it exactly when [k]T is the identity.
fn sign_with_mixed_key(signer: &SigningKey, msg: &[u8]) -> ([u8; 32], [u8; 64]) {
    let a = signer.to_scalar();
    let mixed = (ED25519_BASEPOINT_POINT * a + EIGHT_TORSION[1])
        .compress()
        .0;
    let r = Scalar::from_bytes_mod_order_wide(&Sha512::digest([msg, b"r"].concat()).into());
    let big_r = (ED25519_BASEPOINT_POINT * r).compress().0;
    let k = challenge(&big_r, &mixed, msg);
    let s = r + k * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&big_r);
    sig[32..].copy_from_slice(&s.to_bytes());
    (mixed, sig)
}

/// The transactions of [`records`]`(seed, blocks, txs)`: every kind, as a chain carries
/// them (`blocks * txs` of them).
pub fn transactions(seed: u64, blocks: usize, txs: usize) -> Vec<Transaction> {
    records(seed, blocks, txs)
        .into_iter()
        .filter_map(|r| match r {
            Record::Transaction(t) => Some(t),
            Record::Block(_) => None,
        })
        .collect()
}

/// `blocks` blocks of `txs` transactions each, plus those transactions on their own, as
/// stored records. Values are random but well formed, with signatures from real keys.
pub fn records(seed: u64, blocks: usize, txs: usize) -> Vec<Record> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let signers: Vec<SigningKey> = (0..8).map(|_| SigningKey::generate(&mut rng)).collect();
    let mut out = Vec::new();
    let mut parent = Bytes32::default();
    for height in 0..blocks as u64 {
        let mut transactions = Vec::new();
        let mut receipts = Vec::new();
        for _ in 0..txs {
            let tx = transaction(&mut rng, &signers);
            out.push(Record::Transaction(tx.clone()));
            let success = rng.gen_bool(0.9);
            receipts.push(Receipt {
                success,
                gas_used: rng.gen_range(21_000..200_000),
                error: if success {
                    "".into()
                } else {
                    "insufficient balance".into()
                },
            });
            transactions.push(tx);
        }
        let header = BlockHeader {
            parent,
            height,
            proposer: Bytes32(
                signers[height as usize % signers.len()]
                    .verifying_key()
                    .to_bytes(),
            ),
            tx_root: Bytes32(rng.gen()),
            state_root: Bytes32(rng.gen()),
            timestamp_ms: 1_700_000_000_000 + height * 2_000,
        };
        parent = Bytes32(rng.gen());
        out.push(Record::Block(Block {
            header,
            transactions: transactions.into(),
            receipts: receipts.into(),
        }));
    }
    out
}

fn transaction(rng: &mut ChaCha20Rng, signers: &[SigningKey]) -> Transaction {
    let signer = &signers[rng.gen_range(0..signers.len())];
    let kind = match rng.gen_range(0..10) {
        0 => TxKind::Deploy,
        1..=3 => TxKind::Call,
        _ => TxKind::Transfer,
    };
    let payload_len = match kind {
        TxKind::Transfer => 0,
        TxKind::Call => rng.gen_range(4..64),
        TxKind::Deploy => rng.gen_range(200..2_000),
    };
    let from = Bytes32(signer.verifying_key().to_bytes());
    let to = Bytes32(rng.gen());
    let mut tx = Transaction {
        from,
        to,
        amount: rng.gen_range(0..u64::from(u32::MAX)),
        fee: rng.gen_range(1..10_000),
        nonce: rng.gen_range(0..1_000),
        gas_limit: if kind == TxKind::Transfer {
            21_000
        } else {
            rng.gen_range(50_000..5_000_000)
        },
        kind,
        payload: Blob(
            (0..payload_len)
                .map(|_| rng.gen())
                .collect::<Vec<u8>>()
                .into(),
        ),
        access_list: vec![from, to].into(),
        signature: Bytes64([0; 64]),
    };
    let digest = Sha512::digest(serde_json::to_vec(&tx).expect("serialisable"));
    tx.signature = Bytes64(signer.sign(&digest).to_bytes());
    tx
}

/// `n` synthetic manifests for resolver benchmarks and tests: chains of 50 plugins, each
/// depending on the previous two of its chain and declaring a conflict with a plugin of the
/// next chain at an incompatible version (so it never fires), every one a layer of
/// `crypto.sig_verify` ordered above its predecessor.
pub fn synthetic_manifests(n: usize) -> Vec<crate::manifest::Manifest> {
    use crate::manifest::{Conflict, Depend, Manifest, Ordering, Provide, Risk};
    use semver::{Version, VersionReq};
    let name = |i: usize| format!("p{i:05}");
    let any = VersionReq::STAR;
    (0..n)
        .map(|i| {
            let pos = i % 50;
            let depends = (1..=2)
                .filter(|d| pos >= *d)
                .map(|d| Depend {
                    name: name(i - d),
                    version: any.clone(),
                    reason: "chain".into(),
                })
                .collect();
            let conflicts = vec![Conflict {
                name: name((i + 50) % n.max(1)),
                version: VersionReq::parse(">=9").expect("valid"),
                reason: "never at this version".into(),
            }];
            Manifest {
                name: name(i),
                version: Version::new(0, 1, 0),
                description: String::new(),
                subsystem: "synthetic".into(),
                path: format!("/synthetic/{}.toml", name(i)).into(),
                library: format!("/synthetic/{}.so", name(i)).into(),
                sha256: None,
                api: VersionReq::parse("^0.3").expect("valid"),
                provides: vec![Provide {
                    slot: dubchain_plugin_api::slots::SIG_VERIFY.id.into(),
                    version: 1,
                }],
                depends,
                conflicts,
                uses: vec![],
                recommends: vec![],
                ordering: Ordering {
                    above: if pos > 0 { vec![name(i - 1)] } else { vec![] },
                    below: vec![],
                },
                risk: Risk::Low,
                contract: None,
                default_enabled: false,
            }
        })
        .collect()
}

/// A batch of BLS votes (`consensus.vote_verify`), with a label per vote.
#[derive(Debug, Clone, Default)]
pub struct VoteSet {
    pub entries: Vec<([u8; 48], [u8; 96], Vec<u8>)>,
    pub labels: Vec<&'static str>,
}

impl VoteSet {
    pub fn items(&self) -> Vec<dubchain_plugin_api::types::VoteItem<'_>> {
        self.entries
            .iter()
            .map(|(k, s, m)| dubchain_plugin_api::types::VoteItem::new(*k, *s, m.as_slice().into()))
            .collect()
    }
}

/// The kinds of bad vote [`vote_set`] mixes in.
pub const BAD_VOTE_KINDS: usize = 6;

/// `validators` votes on one block message (each validator once, seeded keys), and, if
/// `adversarial`, about one vote in four replaced by a bad one, in turn: a vote for another
/// block, a signature by another validator's key, bytes that do not decompress, the point
/// at infinity (which leaves a plain aggregate unchanged), a point on the curve outside the
/// G2 subgroup, and a pair of votes whose signatures are both wrong by +D and -D for a
/// valid point D (so that their plain aggregate verifies while neither vote does). Valid
/// duplicate votes are mixed in too.
pub fn vote_set(seed: u64, validators: usize, adversarial: bool) -> VoteSet {
    use blst::min_pk::SecretKey;
    use dubchain_plugin_api::slots::VOTE_DST;
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x0b15);
    let keys: Vec<SecretKey> = (0..validators.max(2))
        .map(|_| SecretKey::key_gen(&rng.gen::<[u8; 32]>(), &[]).expect("32 bytes of ikm"))
        .collect();
    let message = [
        b"dubchain-vote-v1".as_slice(),
        &rng.gen::<u64>().to_le_bytes(),
        &rng.gen::<[u8; 32]>(),
    ]
    .concat();
    let other = [
        b"dubchain-vote-v1".as_slice(),
        &rng.gen::<u64>().to_le_bytes(),
        &rng.gen::<[u8; 32]>(),
    ]
    .concat();
    let sign = |k: &SecretKey, m: &[u8]| k.sign(m, VOTE_DST, &[]).to_bytes();
    let mut set = VoteSet::default();
    let mut kind = 0;
    let mut i = 0;
    while i < validators {
        let k = &keys[i];
        let pk = k.sk_to_pk().compress();
        if adversarial && rng.gen_ratio(1, 4) {
            let bad: ([u8; 96], &'static str) = match kind % BAD_VOTE_KINDS {
                0 => (sign(k, &other), "vote for another block"),
                1 => (
                    sign(&keys[(i + 1) % keys.len()], &message),
                    "another validator's signature",
                ),
                2 => ([0xab; 96], "signature bytes that do not decompress"),
                3 => {
                    let mut inf = [0u8; 96];
                    inf[0] = 0xc0;
                    (inf, "the point at infinity")
                }
                4 => (
                    off_subgroup_g2(&mut rng),
                    "a curve point outside the G2 subgroup",
                ),
                _ if i + 1 < validators => {
                    // +D on this vote, -D on the next: the plain aggregate is unchanged.
                    let d = sign(&keys[0], &other);
                    let next = &keys[i + 1];
                    let (a, b) = delta_pair(&sign(k, &message), &sign(next, &message), &d);
                    set.entries.push((pk, a, message.clone()));
                    set.labels.push("signature + D (paired with - D)");
                    set.entries
                        .push((next.sk_to_pk().compress(), b, message.clone()));
                    set.labels.push("signature - D (paired with + D)");
                    kind += 1;
                    i += 2;
                    continue;
                }
                _ => (sign(k, &other), "vote for another block"),
            };
            kind += 1;
            set.entries.push((pk, bad.0, message.clone()));
            set.labels.push(bad.1);
        } else {
            set.entries.push((pk, sign(k, &message), message.clone()));
            set.labels.push("valid");
            if adversarial && rng.gen_ratio(1, 12) {
                set.entries.push((pk, sign(k, &message), message.clone()));
                set.labels.push("valid duplicate");
            }
        }
        i += 1;
    }
    set
}

/// Compressed signatures `a + d` and `b - d`.
fn delta_pair(a: &[u8; 96], b: &[u8; 96], d: &[u8; 96]) -> ([u8; 96], [u8; 96]) {
    use blst::{
        blst_p2, blst_p2_add_or_double, blst_p2_affine, blst_p2_cneg, blst_p2_compress,
        blst_p2_from_affine, blst_p2_uncompress,
    };
    let point = |bytes: &[u8; 96]| {
        let mut aff = blst_p2_affine::default();
        let mut p = blst_p2::default();
        // SAFETY: `bytes` is 96 readable bytes; the outputs are valid, writable structs.
        unsafe {
            blst_p2_uncompress(&mut aff, bytes.as_ptr());
            blst_p2_from_affine(&mut p, &aff);
        }
        p
    };
    let (pa, pb, pd) = (point(a), point(b), point(d));
    let mut neg_d = pd;
    let (mut sa, mut sb) = (blst_p2::default(), blst_p2::default());
    let (mut ca, mut cb) = ([0u8; 96], [0u8; 96]);
    // SAFETY: all pointers are to valid, initialised points and 96-byte buffers.
    unsafe {
        blst_p2_cneg(&mut neg_d, true);
        blst_p2_add_or_double(&mut sa, &pa, &pd);
        blst_p2_add_or_double(&mut sb, &pb, &neg_d);
        blst_p2_compress(ca.as_mut_ptr(), &sa);
        blst_p2_compress(cb.as_mut_ptr(), &sb);
    }
    (ca, cb)
}

/// A compressed point on the G2 curve that is not in the prime-order subgroup.
fn off_subgroup_g2(rng: &mut ChaCha20Rng) -> [u8; 96] {
    use blst::{blst_p2_affine, blst_p2_affine_in_g2, blst_p2_uncompress, BLST_ERROR};
    loop {
        let mut x: [u8; 96] = [0; 96];
        rng.fill(&mut x[..]);
        // Keep both Fp2 coordinates below p (whose top byte is 0x1a), set the compression
        // flag, clear the infinity flag.
        x[0] = 0x80 | (x[0] & 0x0f);
        x[48] &= 0x0f;
        let mut aff = blst_p2_affine::default();
        // SAFETY: `x` is 96 readable bytes; `aff` is a valid, writable struct.
        let on_curve =
            unsafe { blst_p2_uncompress(&mut aff, x.as_ptr()) } == BLST_ERROR::BLST_SUCCESS;
        // SAFETY: `aff` was written by a successful uncompress.
        if on_curve && !unsafe { blst_p2_affine_in_g2(&aff) } {
            return x;
        }
    }
}

/// Trees of the given sizes with seeded random leaves.
pub fn merkle_trees(seed: u64, sizes: &[usize]) -> Vec<Vec<Bytes32>> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    sizes
        .iter()
        .map(|&n| (0..n).map(|_| Bytes32(rng.gen())).collect())
        .collect()
}

/// A block of transfers to execute: the state before it, the transactions, the proposer.
#[derive(Debug, Clone)]
pub struct TransferBlock {
    pub pre: Vec<dubchain_plugin_api::exec::AccountEntry>,
    pub txs: Vec<Transaction>,
    pub proposer: Bytes32,
    /// What each transaction is, for messages.
    pub labels: Vec<&'static str>,
}

/// `n` transfers among `accounts` accounts. `conflict` (0..=1) is the share of transactions
/// that touch one of four hot accounts (the rest pick from the whole set, so at low
/// conflict most transactions are independent). With `adversarial`, about a quarter are
/// made to fail or to stress scheduling: wrong nonces (future and replayed), amounts the
/// sender cannot pay, amounts that overflow, undeclared recipients, the proposer as sender
/// or recipient, self-transfers, access lists declaring extra accounts (false conflicts),
/// and exact duplicates. Signatures are not set: execution does not check them.
pub fn transfer_block(
    seed: u64, accounts: usize, n: usize, conflict: f64, adversarial: bool,
) -> TransferBlock {
    use dubchain_plugin_api::exec::{AccountEntry, AccountState};
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x7a5f);
    let ids: Vec<Bytes32> = (0..accounts.max(6)).map(|_| Bytes32(rng.gen())).collect();
    let proposer = ids[ids.len() - 1];
    let mut state: std::collections::BTreeMap<Bytes32, AccountState> = ids
        .iter()
        .map(|a| {
            (
                *a,
                AccountState {
                    balance: rng.gen_range(0..2_000_000),
                    nonce: rng.gen_range(0..3),
                },
            )
        })
        .collect();
    // One account near the top of the range, to make credits overflow.
    state.insert(
        ids[4],
        AccountState {
            balance: u64::MAX - 10,
            nonce: 0,
        },
    );
    let pre: Vec<AccountEntry> = state
        .iter()
        .map(|(a, s)| AccountEntry {
            account: *a,
            state: *s,
        })
        .collect();
    let mut nonces: std::collections::HashMap<Bytes32, u64> =
        state.iter().map(|(a, s)| (*a, s.nonce)).collect();
    let pick = |rng: &mut ChaCha20Rng| {
        if rng.gen_bool(conflict.clamp(0.0, 1.0)) {
            ids[rng.gen_range(0..4)]
        } else {
            ids[rng.gen_range(0..ids.len() - 1)]
        }
    };
    let mut txs: Vec<Transaction> = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    while txs.len() < n {
        let from = pick(&mut rng);
        let mut to = pick(&mut rng);
        let nonce = nonces[&from];
        let mut tx = Transaction {
            from,
            to,
            amount: rng.gen_range(1..5_000),
            fee: rng.gen_range(1..50),
            nonce,
            gas_limit: 21_000,
            kind: TxKind::Transfer,
            payload: Blob::default(),
            access_list: vec![from, to].into(),
            signature: Bytes64([0; 64]),
        };
        let mut label = "valid";
        if adversarial && rng.gen_ratio(1, 4) {
            match rng.gen_range(0..10) {
                0 => {
                    tx.nonce += 1 + rng.gen_range(0..3);
                    label = "future nonce";
                }
                1 => {
                    tx.nonce = tx.nonce.saturating_sub(1);
                    label = if nonce == 0 {
                        "valid"
                    } else {
                        "replayed nonce"
                    };
                }
                2 => {
                    tx.amount = u64::MAX / 2;
                    label = "cannot pay";
                }
                3 => {
                    tx.amount = u64::MAX;
                    label = "amount + fee overflows";
                }
                4 => {
                    to = ids[4];
                    tx.to = to;
                    tx.amount = 100;
                    tx.access_list = vec![from, to].into();
                    label = "credit overflows (unless the sender cannot pay)";
                }
                5 => {
                    tx.access_list = vec![from].into();
                    label = "undeclared recipient";
                }
                6 => {
                    tx.to = proposer;
                    tx.access_list = vec![from, proposer].into();
                    label = "pays the proposer";
                }
                7 => {
                    tx.to = from;
                    tx.access_list = vec![from].into();
                    label = "self-transfer";
                }
                8 => {
                    let extra = ids[rng.gen_range(0..4)];
                    tx.access_list = vec![from, to, extra].into();
                    label = "declares an extra hot account";
                }
                _ => {
                    if let Some(prev) = txs.last().cloned() {
                        txs.push(prev);
                        labels.push("duplicate of the previous one");
                        continue;
                    }
                }
            }
        }
        if label == "valid"
            || label == "pays the proposer"
            || label == "self-transfer"
            || label.starts_with("declares")
        {
            // Assume it applies; if it does not (balance), later nonces of this sender fail,
            // which is fine: those are adversarial too.
            *nonces.get_mut(&from).expect("known account") += 1;
        }
        txs.push(tx);
        labels.push(label);
    }
    TransferBlock {
        pre,
        txs,
        proposer,
        labels,
    }
}

/// A run of blocks for stateless block validation (`consensus.block_validation`): signed
/// transfers, headers linked by hash with correct transaction roots, one receipt per
/// transaction, extending a head at `head_height` with hash `head_hash`. With
/// `adversarial`, some blocks break one check each (wrong height, parent, root or receipt
/// count; a transaction with a flipped signature bit, a small-order key, a non-canonical
/// `s`, another key's signature, a zero fee, a low gas limit, an undeclared recipient, a
/// contract kind). Returns the head and the blocks, with a label per block.
pub fn block_run(
    seed: u64, blocks: usize, txs: usize, adversarial: bool,
) -> (u64, Bytes32, Vec<Block>, Vec<&'static str>) {
    use dubchain_plugin_api::chain::{block_hash, merkle_root, signing_bytes, tx_hash};
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0xb10c);
    let signers: Vec<SigningKey> = (0..16).map(|_| SigningKey::generate(&mut rng)).collect();
    let head_height = rng.gen_range(0..1_000);
    let head_hash = Bytes32(rng.gen());
    let sign = |tx: &mut Transaction, key: &SigningKey| {
        tx.signature = Bytes64(key.sign(&signing_bytes(tx)).to_bytes());
    };
    // Signs again with the sender's own key, after a field changed.
    let resign = |tx: &mut Transaction| {
        let own = signers
            .iter()
            .find(|k| k.verifying_key().to_bytes() == tx.from.0)
            .unwrap_or(&signers[0]);
        sign(tx, own);
    };
    let mut out = Vec::with_capacity(blocks);
    let mut labels = Vec::with_capacity(blocks);
    let (mut parent, mut height) = (head_hash, head_height);
    for b in 0..blocks {
        height += 1;
        let mut transactions: Vec<Transaction> = (0..txs)
            .map(|_| {
                let k = &signers[rng.gen_range(0..signers.len())];
                let from = Bytes32(k.verifying_key().to_bytes());
                let to = Bytes32(rng.gen());
                let mut tx = Transaction {
                    from,
                    to,
                    amount: rng.gen_range(1..1_000),
                    fee: rng.gen_range(1..100),
                    nonce: rng.gen_range(0..100),
                    gas_limit: 21_000,
                    kind: TxKind::Transfer,
                    payload: Blob::default(),
                    access_list: vec![from, to].into(),
                    signature: Bytes64([0; 64]),
                };
                sign(&mut tx, k);
                tx
            })
            .collect();
        let mut label = "valid";
        let mut header_fault = 0;
        if adversarial && b % 3 == 1 && !transactions.is_empty() {
            let i = rng.gen_range(0..transactions.len());
            let k = signers[0].clone();
            let tx = &mut transactions[i];
            match rng.gen_range(0..12) {
                0 => {
                    tx.signature.0[10] ^= 1;
                    label = "a flipped signature bit";
                }
                1 => {
                    let mut identity = [0u8; 32];
                    identity[0] = 1;
                    tx.from = Bytes32(identity);
                    tx.access_list = vec![tx.from, tx.to].into();
                    label = "a small-order key";
                }
                2 => {
                    // s + l: the same point equation, but a non-canonical scalar.
                    let s = curve25519_dalek::scalar::Scalar::from_bytes_mod_order(
                        tx.signature.0[32..].try_into().expect("32 bytes"),
                    );
                    // l, the order of the base point, little-endian.
                    const L: [u8; 32] = [
                        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2,
                        0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
                    ];
                    let mut sum = [0u8; 32];
                    let (a, c) = (s.to_bytes(), L);
                    let mut carry = 0u16;
                    for j in 0..32 {
                        let v = u16::from(a[j]) + u16::from(c[j]) + carry;
                        sum[j] = v as u8;
                        carry = v >> 8;
                    }
                    tx.signature.0[32..].copy_from_slice(&sum);
                    label = "a non-canonical s";
                }
                3 => {
                    sign(tx, &k);
                    if tx.from.0 == k.verifying_key().to_bytes() {
                        tx.signature.0[0] ^= 1;
                    }
                    label = "another key's signature";
                }
                4 => {
                    tx.fee = 0;
                    resign(tx);
                    label = "a zero fee";
                }
                5 => {
                    tx.gas_limit = 20_999;
                    resign(tx);
                    label = "a gas limit below a transfer's";
                }
                6 => {
                    tx.access_list = vec![tx.from].into();
                    resign(tx);
                    label = "an undeclared recipient";
                }
                7 => {
                    tx.kind = TxKind::Call;
                    resign(tx);
                    label = "a contract call";
                }
                f => {
                    header_fault = f - 7;
                    label = [
                        "",
                        "a wrong height",
                        "a wrong parent",
                        "a wrong transaction root",
                        "a missing receipt",
                    ][header_fault];
                }
            }
        }
        let root = merkle_root(&transactions.iter().map(tx_hash).collect::<Vec<_>>());
        let mut header = BlockHeader {
            parent,
            height,
            proposer: Bytes32(rng.gen()),
            tx_root: root,
            state_root: Bytes32(rng.gen()),
            timestamp_ms: 1_700_000_000_000 + height * 1_000,
        };
        let mut receipts: Vec<Receipt> = transactions
            .iter()
            .map(|_| Receipt {
                success: true,
                gas_used: 21_000,
                error: "".into(),
            })
            .collect();
        match header_fault {
            1 => header.height += 1,
            2 => header.parent.0[0] ^= 1,
            3 => header.tx_root.0[31] ^= 1,
            4 => {
                receipts.pop();
            }
            _ => {}
        }
        parent = dubchain_plugin_api::chain::block_hash(&header);
        height = header.height;
        let _ = block_hash;
        out.push(Block {
            header,
            transactions: transactions.into(),
            receipts: receipts.into(),
        });
        labels.push(label);
    }
    (head_height, head_hash, out, labels)
}

/// The transactions of [`block_run`]'s blocks, as one batch for admission
/// (`exec.tx_validation`), with the run's faults (bad signatures, small-order keys,
/// non-canonical `s`, zero fees, low gas limits, undeclared recipients, contract kinds).
pub fn tx_batch(seed: u64, n: usize, adversarial: bool) -> Vec<Transaction> {
    let per_block = 16;
    let blocks = n.div_ceil(per_block);
    let (_, _, run, _) = block_run(seed, blocks, per_block, adversarial);
    run.into_iter()
        .flat_map(|b| b.transactions.into_vec())
        .take(n)
        .collect()
}

/// `n` pending transactions of `senders` senders for a mempool index: random hashes, sender
/// `i % senders` with nonces 0, 1, ... in turn, fees 1 to 99.
pub fn pool_entries(
    seed: u64, n: usize, senders: usize,
) -> Vec<dubchain_plugin_api::slots::PoolEntry> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x9001);
    let senders: Vec<Bytes32> = (0..senders.max(1)).map(|_| Bytes32(rng.gen())).collect();
    (0..n)
        .map(|i| dubchain_plugin_api::slots::PoolEntry {
            hash: Bytes32(rng.gen()),
            sender: senders[i % senders.len()],
            nonce: (i / senders.len()) as u64,
            fee: rng.gen_range(1..100),
        })
        .collect()
}

/// A state as a set of leaves, the model the `storage.state_root` checks keep: leaf key to
/// value digest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeafState(pub std::collections::BTreeMap<Bytes32, Bytes32>);

/// A block's changes to a [`LeafState`]: leaf key to its new value, `None` to remove it.
pub type LeafChanges = std::collections::BTreeMap<Bytes32, Option<Bytes32>>;

impl LeafState {
    /// `n` leaves of random keys and values.
    pub fn random(rng: &mut impl Rng, n: usize) -> LeafState {
        LeafState(
            (0..n)
                .map(|_| (Bytes32(rng.gen()), Bytes32(rng.gen())))
                .collect(),
        )
    }

    /// Every leaf, sorted by key.
    pub fn leaves(&self) -> Vec<dubchain_plugin_api::state_tree::StateLeaf> {
        self.0
            .iter()
            .map(|(&key, &value)| dubchain_plugin_api::state_tree::StateLeaf { key, value })
            .collect()
    }

    /// The root, from scratch (the baseline's).
    pub fn root(&self) -> Bytes32 {
        dubchain_plugin_api::state_tree::sorted_root(&self.leaves(), 0)
    }

    /// The state after `changes`, and the changes as the host hands them to a provider
    /// (sorted, distinct).
    pub fn apply(
        &self, changes: &LeafChanges,
    ) -> (LeafState, Vec<dubchain_plugin_api::state_tree::LeafChange>) {
        use abi_stable::std_types::ROption;
        let mut after = self.clone();
        for (k, v) in changes {
            match v {
                Some(v) => after.0.insert(*k, *v),
                None => after.0.remove(k),
            };
        }
        let list = changes
            .iter()
            .map(
                |(&key, &value)| dubchain_plugin_api::state_tree::LeafChange {
                    key,
                    value: value.map_or(ROption::RNone, ROption::RSome),
                },
            )
            .collect();
        (after, list)
    }
}

/// A state and blocks over it, for the `storage.state_root` case: what a node of
/// `accounts` accounts does to its state tree in a block.
pub struct StateBlocks {
    /// The state before every block, sorted by key.
    pub before: Vec<dubchain_plugin_api::state_tree::StateLeaf>,
    /// Each block: its changes (sorted, distinct) and the state after it, sorted by key.
    pub blocks: Vec<(
        Vec<dubchain_plugin_api::state_tree::LeafChange>,
        Vec<dubchain_plugin_api::state_tree::StateLeaf>,
    )>,
}

/// `accounts` leaves of random keys and values, and `blocks` blocks of `changes` changes each
/// over them: four in five update a leaf the state holds (a sender or a recipient seen
/// before), the rest insert a new one (a first-time recipient), and one in a hundred is a
/// removal.
pub fn state_blocks(seed: u64, accounts: usize, blocks: usize, changes: usize) -> StateBlocks {
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x57a7_e000);
    let state = LeafState::random(&mut rng, accounts);
    let keys: Vec<Bytes32> = state.0.keys().copied().collect();
    let blocks = (0..blocks)
        .map(|_| {
            let mut block = LeafChanges::new();
            while block.len() < changes {
                let roll = rng.gen_range(0..100);
                let key = if roll < 80 && !keys.is_empty() {
                    keys[rng.gen_range(0..keys.len())]
                } else {
                    Bytes32(rng.gen())
                };
                block.insert(key, (roll != 99).then(|| Bytes32(rng.gen())));
            }
            let (after, list) = state.apply(&block);
            (list, after.leaves())
        })
        .collect();
    StateBlocks {
        before: state.leaves(),
        blocks,
    }
}

/// Contracts' code and the order calls load it in, for the `vm.code_loader` case.
#[cfg(feature = "vm")]
pub struct CodeLoads {
    /// Each contract's stored code, by address.
    pub codes: std::collections::HashMap<Bytes32, Vec<u8>>,
    /// The SHA-256 of each contract's code (what the store keeps beside it).
    pub hashes: std::collections::HashMap<Bytes32, Bytes32>,
    /// The contract of each call, in order.
    pub order: Vec<Bytes32>,
}

/// `contracts` distinct contracts (the compute contract, each with its own mixing
/// constant) and `loads` calls among them in random order.
#[cfg(feature = "vm")]
pub fn code_loads(seed: u64, contracts: usize, loads: usize) -> CodeLoads {
    use sha2::Digest;
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0xc0de);
    let codes: std::collections::HashMap<Bytes32, Vec<u8>> = (0..contracts)
        .map(|i| {
            let wat = crate::vm::contracts::COMPUTE_WAT.replace(
                "6364136223846793005",
                &(6364136223846793005u64 + 2 * i as u64).to_string(),
            );
            let code = wat::parse_str(&wat).expect("the compute contract assembles");
            (Bytes32(rng.gen()), code)
        })
        .collect();
    let hashes = codes
        .iter()
        .map(|(a, c)| (*a, Bytes32(sha2::Sha256::digest(c).into())))
        .collect();
    let addresses: Vec<Bytes32> = codes.keys().copied().collect();
    let order = (0..loads)
        .map(|_| addresses[rng.gen_range(0..addresses.len())])
        .collect();
    CodeLoads {
        codes,
        hashes,
        order,
    }
}

/// Contracts' metered code and the calls that run it, for the `vm.module_cache` case.
#[cfg(feature = "vm")]
pub struct ModuleCalls {
    /// Each contract: its address, the SHA-256 of its metered code, and the metered code.
    pub contracts: Vec<(Bytes32, Bytes32, Vec<u8>)>,
    /// The index into `contracts` of each call, in order.
    pub order: Vec<usize>,
}

/// The contracts of [`code_loads`], metered by the baseline's rewrite, and `calls` calls
/// among them in random order.
#[cfg(feature = "vm")]
pub fn module_calls(seed: u64, contracts: usize, calls: usize) -> ModuleCalls {
    use sha2::Digest;
    let loads = code_loads(seed, contracts, 0);
    let mut contracts: Vec<(Bytes32, Bytes32, Vec<u8>)> = loads
        .codes
        .iter()
        .map(|(a, code)| {
            let wasm =
                dubchain_plugin_api::vm::meter::instrument(code).expect("the contracts meter");
            (*a, Bytes32(sha2::Sha256::digest(&wasm).into()), wasm)
        })
        .collect();
    contracts.sort_by_key(|c| c.0);
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x0d01e);
    let order = (0..calls)
        .map(|_| rng.gen_range(0..contracts.len()))
        .collect();
    ModuleCalls { contracts, order }
}
