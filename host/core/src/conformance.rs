//! The conformance suite of each slot: the inputs a plugin must answer exactly as the
//! baseline does, generated and adversarial. `dubchain-perf plugin verify` runs it against a
//! loaded library; plugin authors run it in-process from their own tests.

use dubchain_plugin_api::types::{Record, SigItem};
use serde::Serialize;

use dubchain_plugin_api::slots::*;

use crate::{baseline, selftest, workload, Host};

type Suite = fn(&Host) -> Vec<CaseResult>;

/// Every slot's suite. Most run through the host's slot (so the host's boundary checks and
/// fallback are part of what is tested, and `plugin verify` reports the slot's errors); the
/// slots whose answers the host repairs, and those whose objects are made per use (indexes,
/// tallies, queues, write sets, connections), run on the top provider itself.
pub const SUITES: &[(SlotInfo, Suite)] = &[
    (SIG_VERIFY, |host| {
        check_sig_verify(|items| Ok(host.slots.sig_verify.verify_batch(items)))
    }),
    (RECORD_CODEC, |host| {
        check_record_codec(
            |r| Ok(host.slots.record_codec.encode(r)),
            |v| Ok(host.slots.record_codec.decode(v)),
        )
    }),
    (VOTE_VERIFY, |host| {
        check_vote_verify(|votes| Ok(host.slots.vote_verify.verify_votes(votes)))
    }),
    (MERKLE, |host| {
        check_merkle(|trees| Ok(host.slots.merkle.roots(trees)))
    }),
    (TX_VALIDATION, |host| {
        check_tx_validation(|txs| {
            host.slots
                .tx_validation
                .validate(txs)
                .ok_or_else(|| "the plugin did not answer".to_owned())
        })
    }),
    (BLOCK_VALIDATION, |host| {
        check_block_validation(|height, hash, blocks| {
            host.slots
                .block_validation
                .check_run(height, hash, blocks)
                .ok_or_else(|| "the plugin did not answer".to_owned())
        })
    }),
    (TX_DECODE, |host| {
        check_tx_decode(|payloads| Ok(host.slots.tx_decode.decode(payloads)))
    }),
    (BROADCAST, |host| {
        check_broadcast(|msgs, peers| {
            host.slots
                .broadcast
                .frames(msgs, peers)
                .map(|lists| {
                    lists
                        .into_iter()
                        .map(|l| l.iter().map(|f| f.to_vec()).collect())
                        .collect()
                })
                .ok_or_else(|| "the plugin did not answer".to_owned())
        })
    }),
    (BLOCK_EXECUTION, |host| {
        check_block_execution(|b| {
            host.slots
                .block_execution
                .execute_in_memory(&b.pre, &b.txs, &b.proposer)
                .ok_or_else(|| "the plugin did not answer".to_owned())
        })
    }),
    (CODE_LOADER, check_code_loader),
    (METERING, check_metering),
    (MODULE_CACHE, check_module_cache),
    (CONTRACT_STATE, check_contract_state),
    (ACCOUNT_READ, check_account_read),
    (BUFFER_POOL, check_buffer_pool),
    (FRAME_SEND, check_frame_send),
    (BLOCK_RECLAIM, check_block_reclaim),
    (TX_POOL, |host| {
        state::seeded(
            &host.slots.tx_pool,
            "a script of inserts, selections, removals and nonce moves",
            5,
            selftest::tx_pool_at,
        )
    }),
    (VOTE_TALLY, |host| {
        state::seeded(
            &host.slots.vote_tally,
            "vote sequences with double votes, equivocation and late votes, then four threads",
            3,
            selftest::vote_tally_at,
        )
    }),
    (BLOCK_COMMIT, |host| {
        state::seeded(
            &host.slots.block_commit,
            "two write sets of awkward keys, reads and prefix scans along the way",
            5,
            selftest::block_commit_at,
        )
    }),
    (SEND_QUEUE, |host| {
        state::seeded(
            &host.slots.send_queue,
            "a slow peer's consensus and gossip frames, pushed and popped, then closed",
            4,
            selftest::send_queue_at,
        )
    }),
    (DURABILITY, |host| {
        state::seeded(
            &host.slots.durability,
            "commits on two fsynced logs, one at a time and from many threads",
            2,
            selftest::durability_at,
        )
    }),
    (STATE_ROOT, |host| {
        state::seeded(
            &host.slots.state_root,
            "blocks of inserts, updates and removals over awkward keys, rollbacks and restarts",
            4,
            selftest::state_root_at,
        )
    }),
    (TRANSPORT, |host| {
        state::seeded(
            &host.slots.transport,
            "frames both ways on loopback peers, random payload sizes",
            3,
            selftest::transport_at,
        )
    }),
];

/// Without the contract VM a host cannot run contracts, so it cannot check a `vm.*`
/// provider: each suite is one failed case saying so.
#[cfg(not(feature = "vm"))]
mod vm_suites {
    use super::CaseResult;
    use crate::Host;

    fn refused(slot: &str) -> Vec<CaseResult> {
        vec![CaseResult {
            case: format!("{slot} needs the contract VM"),
            passed: false,
            detail: "this host is built without the contract VM (feature `vm`)".to_owned(),
        }]
    }
    pub fn check_code_loader(_: &Host) -> Vec<CaseResult> {
        refused("vm.code_loader")
    }
    pub fn check_metering(_: &Host) -> Vec<CaseResult> {
        refused("vm.metering")
    }
    pub fn check_module_cache(_: &Host) -> Vec<CaseResult> {
        refused("vm.module_cache")
    }
}

#[cfg(feature = "vm")]
mod vm_suites;

mod io;
mod state;

pub use io::{check_block_reclaim, check_buffer_pool, check_frame_send};
pub use state::{check_account_read, check_contract_state};
pub use vm_suites::{check_code_loader, check_metering, check_module_cache};

/// The conformance suite of `slot` on `host`'s providers.
pub fn run_on(host: &Host, slot: &str) -> Vec<CaseResult> {
    SUITES
        .iter()
        .find(|(info, _)| info.id == slot)
        .map(|(_, suite)| suite(host))
        .unwrap_or_default()
}

/// A case named `case` that passed if `r` is `Ok`.
fn outcome(case: String, r: Result<(), String>) -> CaseResult {
    CaseResult {
        case,
        passed: r.is_ok(),
        detail: r.err().unwrap_or_default(),
    }
}

/// The outcome of one conformance case.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct CaseResult {
    pub case: String,
    pub passed: bool,
    /// What differed, or what failed.
    pub detail: String,
}

/// Named signature sets: valid, mixed, each adversarial kind alone and hidden in a batch,
/// duplicates, an empty batch and a large one.
pub fn sig_verify_cases() -> Vec<(String, workload::SignatureSet)> {
    use rand::SeedableRng;
    let mut cases = vec![
        ("empty batch".to_owned(), workload::SignatureSet::default()),
        (
            "64 valid".to_owned(),
            workload::signature_set(101, 64, false),
        ),
        (
            "1024 valid".to_owned(),
            workload::signature_set(102, 1024, false),
        ),
    ];
    for seed in 0..4 {
        cases.push((
            format!("300 mixed, seed {seed}"),
            workload::signature_set(200 + seed, 300, true),
        ));
    }
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(303);
    let signer = ed25519_dalek::SigningKey::generate(&mut rng);
    let valid = workload::signature_set(304, 50, false);
    for kind in 0..workload::ADVERSARIAL_KINDS {
        let (label, key, sig, msg) =
            workload::adversarial_item(kind, &signer, vec![kind as u8; 40], &mut rng);
        cases.push((
            format!("adversarial alone: {label}"),
            workload::SignatureSet {
                entries: vec![(key, sig, msg.clone())],
                labels: vec![label],
            },
        ));
        let mut hidden = valid.clone();
        for at in [0, 25, hidden.entries.len()] {
            hidden.entries.insert(at, (key, sig, msg.clone()));
            hidden.labels.insert(at, label);
        }
        cases.push((
            format!("adversarial among valid, duplicated: {label}"),
            hidden,
        ));
    }
    cases
}

/// Runs the `crypto.sig_verify` suite against `verify` (which returns the implementation's
/// verdicts, or why it failed).
pub fn check_sig_verify(
    verify: impl Fn(&[SigItem<'_>]) -> Result<Vec<bool>, String>,
) -> Vec<CaseResult> {
    sig_verify_cases()
        .into_iter()
        .map(|(case, set)| {
            let items = set.items();
            labelled_case(case, &items, &set.labels, baseline::sig_verify, &verify)
        })
        .collect()
}

/// Named record sets for `storage.record_codec`.
pub fn record_cases() -> Vec<(String, Vec<Record>)> {
    let mut cases = vec![("no records".to_owned(), Vec::new())];
    for (seed, blocks, txs) in [(1, 1, 1), (2, 4, 16), (3, 16, 64)] {
        cases.push((
            format!("{blocks} blocks of {txs} transactions"),
            workload::records(seed, blocks, txs),
        ));
    }
    let mut edge = workload::records(4, 1, 2);
    if let Record::Transaction(tx) = &mut edge[0] {
        tx.amount = u64::MAX;
        tx.nonce = u64::MAX;
        tx.payload.0.clear();
        tx.access_list.clear();
    }
    if let Record::Block(b) = edge.last_mut().expect("a block") {
        b.receipts[0].error = "ünïcødé \"quoted\" \\ error\n".into();
    }
    cases.push(("extreme values and text".to_owned(), edge));
    cases
}

/// Runs the `storage.record_codec` suite: each set must survive `encode` then `decode`
/// exactly, the baseline's JSON must decode exactly as the baseline decodes it, and corrupt
/// values must be errors.
pub fn check_record_codec(
    encode: impl Fn(&[Record]) -> Result<Vec<Vec<u8>>, String>,
    decode: impl Fn(&[&[u8]]) -> Result<Vec<Result<Record, String>>, String>,
) -> Vec<CaseResult> {
    let mut out = Vec::new();
    for (case, records) in record_cases() {
        let detail = (|| {
            let enc = encode(&records)?;
            let refs: Vec<&[u8]> = enc.iter().map(Vec::as_slice).collect();
            let dec = decode(&refs)?;
            if dec.len() != records.len() {
                return Err(format!("{} records back for {}", dec.len(), records.len()));
            }
            if let Some(i) = dec
                .iter()
                .zip(&records)
                .position(|(d, r)| d.as_ref().ok() != Some(r))
            {
                return Err(format!(
                    "record {i} does not survive encode then decode: {:?}",
                    dec[i].as_ref().err()
                ));
            }
            let json = baseline::encode_records(&records);
            let json_refs: Vec<&[u8]> = json.iter().map(Vec::as_slice).collect();
            let old = decode(&json_refs)?;
            if old != baseline::decode_records(&json_refs) {
                return Err(
                    "the baseline's JSON records are not read as the baseline reads them".into(),
                );
            }
            Ok(())
        })();
        let detail = detail.err().unwrap_or_default();
        out.push(CaseResult {
            case,
            passed: detail.is_empty(),
            detail,
        });
    }
    let corrupt: Vec<&[u8]> = vec![
        b"",
        b"{",
        b"{\"transaction\": 1}",
        b"\x00\x01\x02\x03",
        b"{}trailing",
    ];
    let detail = match decode(&corrupt) {
        Err(e) => e,
        Ok(v) if v.len() != corrupt.len() => {
            format!("{} answers for {} values", v.len(), corrupt.len())
        }
        Ok(v) => match v.iter().position(Result::is_ok) {
            Some(i) => format!(
                "corrupt value {i} ({:?}) decoded as a record",
                String::from_utf8_lossy(corrupt[i])
            ),
            None => String::new(),
        },
    };
    out.push(CaseResult {
        case: "corrupt values are errors".into(),
        passed: detail.is_empty(),
        detail,
    });
    out
}

/// A labelled set's case: its items' verdicts from `verify` against the baseline's, an item
/// that differs named by its label.
fn labelled_case<I>(
    case: String, items: &[I], labels: &[&str], baseline: fn(&[I]) -> Vec<bool>,
    verify: impl Fn(&[I]) -> Result<Vec<bool>, String>,
) -> CaseResult {
    verdict_case(case, &baseline(items), verify(items), |i| labels[i])
}

/// Compares `got` (or why it failed) with `expected`, naming the first differing item.
fn verdict_case<T: PartialEq + std::fmt::Debug, L: std::fmt::Display>(
    case: String, expected: &[T], got: Result<Vec<T>, String>, label: impl Fn(usize) -> L,
) -> CaseResult {
    let detail = match got {
        Err(e) => e,
        Ok(got) if got.len() != expected.len() => {
            format!("{} answers for {} items", got.len(), expected.len())
        }
        Ok(got) => match expected.iter().zip(&got).position(|(e, g)| e != g) {
            None => String::new(),
            Some(i) => format!(
                "item {i} ({}): baseline says {:?}, plugin says {:?}",
                label(i),
                expected[i],
                got[i]
            ),
        },
    };
    CaseResult {
        case,
        passed: detail.is_empty(),
        detail,
    }
}

/// Runs the `consensus.vote_verify` suite: an empty batch, all valid (4 and 100
/// validators), and mixed batches with every kind of bad vote (wrong block, wrong key,
/// undecodable bytes, infinity, off-subgroup points, +D/-D pairs, duplicates).
pub fn check_vote_verify(
    verify: impl Fn(&[dubchain_plugin_api::types::VoteItem<'_>]) -> Result<Vec<bool>, String>,
) -> Vec<CaseResult> {
    let mut cases = vec![
        ("empty batch".to_owned(), workload::VoteSet::default()),
        ("4 valid".to_owned(), workload::vote_set(401, 4, false)),
        ("100 valid".to_owned(), workload::vote_set(402, 100, false)),
    ];
    for seed in 0..6 {
        cases.push((
            format!("64 mixed, seed {seed}"),
            workload::vote_set(410 + seed, 64, true),
        ));
    }
    cases
        .into_iter()
        .map(|(case, set)| {
            let items = set.items();
            labelled_case(case, &items, &set.labels, baseline::verify_votes, &verify)
        })
        .collect()
}

/// Runs the `crypto.merkle` suite: every size from 0 to 70, powers of two and their
/// neighbours up to 4097, and a batch of many trees at once.
pub fn check_merkle(
    roots: impl Fn(
        &[&[dubchain_plugin_api::types::Bytes32]],
    ) -> Result<Vec<dubchain_plugin_api::types::Bytes32>, String>,
) -> Vec<CaseResult> {
    let small: Vec<usize> = (0..=70).collect();
    let edges: Vec<usize> = (7..=12)
        .flat_map(|k| [(1usize << k) - 1, 1 << k, (1 << k) + 1])
        .collect();
    [
        ("sizes 0 to 70", 501, small),
        ("powers of two and neighbours", 502, edges),
    ]
    .into_iter()
    .map(|(case, seed, sizes)| {
        let trees = workload::merkle_trees(seed, &sizes);
        let refs: Vec<&[dubchain_plugin_api::types::Bytes32]> =
            trees.iter().map(Vec::as_slice).collect();
        let expected: Vec<_> = trees.iter().map(|t| baseline::merkle_root(t)).collect();
        verdict_case(case.to_owned(), &expected, roots(&refs), |i| {
            format!("tree of {} leaves", sizes[i])
        })
    })
    .collect()
}

/// Runs the `exec.block_execution` suite: empty blocks, independent transfers, one hot
/// account, all kinds of failing and conflicting transfers at low and high conflict, a
/// large block. Results and the final write set must equal the baseline's.
pub fn check_block_execution(
    execute: impl Fn(&workload::TransferBlock) -> Result<baseline::Executed, String>,
) -> Vec<CaseResult> {
    let mut cases = vec![
        (
            "empty block".to_owned(),
            workload::transfer_block(601, 10, 0, 0.0, false),
        ),
        (
            "independent transfers".to_owned(),
            workload::transfer_block(602, 400, 100, 0.0, false),
        ),
        (
            "one hot account".to_owned(),
            workload::transfer_block(603, 50, 200, 1.0, false),
        ),
        (
            "1000 transfers, mixed".to_owned(),
            workload::transfer_block(604, 300, 1000, 0.3, true),
        ),
    ];
    for seed in 0..6 {
        let conflict = [0.0, 0.2, 0.5, 0.8, 1.0, 0.05][seed as usize];
        cases.push((
            format!("adversarial, conflict {conflict}, seed {seed}"),
            workload::transfer_block(610 + seed, 60, 150, conflict, true),
        ));
    }
    cases
        .into_iter()
        .map(|(case, b)| {
            let expected = baseline::execute_block(&b.pre, &b.txs, &b.proposer);
            let got = execute(&b);
            let mut r = verdict_case(
                case,
                &expected.results,
                got.as_ref()
                    .map(|o| o.results.clone())
                    .map_err(Clone::clone),
                |i| b.labels[i].to_owned(),
            );
            if r.passed {
                if let Ok(o) = &got {
                    if o.state != expected.state {
                        r.passed = false;
                        r.detail = "same results, different final state".into();
                    }
                }
            }
            r
        })
        .collect()
}

/// Runs the `consensus.block_validation` suite: an empty run, valid runs (1 block, 64
/// blocks of 16 transactions, blocks without transactions), and runs with a faulty block
/// of every kind, each compared block by block with the baseline's verdicts.
pub fn check_block_validation(
    check: impl Fn(
        u64,
        &dubchain_plugin_api::types::Bytes32,
        &[dubchain_plugin_api::types::Block],
    ) -> Result<Vec<dubchain_plugin_api::slots::BlockCheck>, String>,
) -> Vec<CaseResult> {
    let mut cases = vec![
        (
            "empty run".to_owned(),
            workload::block_run(701, 0, 4, false),
        ),
        (
            "one valid block".to_owned(),
            workload::block_run(702, 1, 8, false),
        ),
        (
            "64 valid blocks of 16".to_owned(),
            workload::block_run(703, 64, 16, false),
        ),
        (
            "blocks without transactions".to_owned(),
            workload::block_run(704, 5, 0, false),
        ),
    ];
    for seed in 0..8 {
        cases.push((
            format!("faulty blocks, seed {seed}"),
            workload::block_run(710 + seed, 30, 8, true),
        ));
    }
    cases
        .into_iter()
        .map(|(case, (height, hash, blocks, labels))| {
            let expected = baseline::check_run(height, &hash, &blocks);
            verdict_case(case, &expected, check(height, &hash, &blocks), |i| {
                format!("block {i}: {}", labels[i])
            })
        })
        .collect()
}

/// Runs the `exec.tx_validation` suite: empty, valid, and mixed batches with every kind of
/// faulty transaction, and a batch repeating the same transactions (caches must not change
/// verdicts).
pub fn check_tx_validation(
    validate: impl Fn(
        &[dubchain_plugin_api::types::Transaction],
    ) -> Result<Vec<dubchain_plugin_api::slots::TxCheck>, String>,
) -> Vec<CaseResult> {
    let mut cases = vec![
        ("empty batch".to_owned(), Vec::new()),
        ("100 valid".to_owned(), workload::tx_batch(801, 100, false)),
    ];
    for seed in 0..6 {
        cases.push((
            format!("300 mixed, seed {seed}"),
            workload::tx_batch(810 + seed, 300, true),
        ));
    }
    let mut repeated = workload::tx_batch(820, 50, true);
    repeated.extend(repeated.clone());
    cases.push(("the same 50 twice".to_owned(), repeated));
    cases
        .into_iter()
        .map(|(case, txs)| {
            let expected = baseline::validate_txs(&txs);
            verdict_case(case, &expected, validate(&txs), |i| {
                format!("transaction {i}")
            })
        })
        .collect()
}

/// Runs the `mem.tx_decode` suite, larger than the load-time check: 1024 gossiped
/// transactions, the check's edited payloads, every prefix of a transaction, 600 byte flips,
/// garbage of many lengths, deep nesting and oversized fields. Each payload must decode to
/// the baseline's transaction, or be refused where the baseline refuses it (the texts of the
/// refusals may differ).
pub fn check_tx_decode(
    decode: impl Fn(
        &[&[u8]],
    ) -> Result<Vec<Result<dubchain_plugin_api::types::Transaction, String>>, String>,
) -> Vec<CaseResult> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0x7d_ec0d);
    let encode = |t: &dubchain_plugin_api::types::Transaction| {
        serde_json::to_vec(t).expect("transactions serialise")
    };
    let txs = workload::transactions(0x7d, 4, 256);
    let one = encode(&txs[0]);
    let mut cases: Vec<(String, Vec<Vec<u8>>)> = vec![
        (
            "1024 gossiped transactions".into(),
            txs.iter().map(encode).collect(),
        ),
        (
            "the load-time check's edited payloads".into(),
            crate::selftest::tx_payloads()
                .into_iter()
                .map(|(_, p)| p)
                .collect(),
        ),
        (
            "every prefix of a transaction".into(),
            (0..one.len()).map(|n| one[..n].to_vec()).collect(),
        ),
    ];
    let flips: Vec<Vec<u8>> = (0..600)
        .map(|_| {
            let mut p = encode(&txs[rng.gen_range(0..txs.len())]);
            let at = rng.gen_range(0..p.len());
            p[at] ^= 1 << rng.gen_range(0..8);
            p
        })
        .collect();
    cases.push(("600 single-bit flips".into(), flips));
    let garbage: Vec<Vec<u8>> = [0usize, 1, 2, 7, 64, 1_000, 65_536]
        .iter()
        .map(|&n| (0..n).map(|_| rng.gen()).collect())
        .collect();
    cases.push(("random bytes, 0 to 64 KiB".into(), garbage));
    let text = String::from_utf8(one.clone()).expect("JSON is UTF-8");
    cases.push((
        "deep nesting and oversized fields".into(),
        vec![
            "[".repeat(100_000).into_bytes(),
            format!("{}1{}", "{\"a\":".repeat(5_000), "}".repeat(5_000)).into_bytes(),
            text.replacen("\"nonce\":", "\"nonce\":184467440737095516150", 1)
                .into_bytes(),
            text.replacen(
                "\"payload\":\"",
                &format!("\"payload\":\"{}", "ab".repeat(500_000)),
                1,
            )
            .into_bytes(),
            format!("{text}{text}").into_bytes(),
            b"null".to_vec(),
            b"{}".to_vec(),
        ],
    ));
    cases
        .into_iter()
        .map(|(case, payloads)| {
            let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            let outcome = |r: Vec<Result<dubchain_plugin_api::types::Transaction, String>>| {
                r.into_iter().map(Result::ok).collect::<Vec<_>>()
            };
            let expected = outcome(baseline::decode_txs(&refs));
            verdict_case(case, &expected, decode(&refs).map(outcome), |i| {
                format!("payload {i} ({} bytes)", payloads[i].len())
            })
        })
        .collect()
}

/// Runs the `net.broadcast` suite: for 0, 1, 2, 16 and 64 peers, empty gossip, one
/// transaction, a block's worth of transactions, a large block, votes (well and badly
/// formed) and all of them mixed. Every peer's frames must be, byte for byte,
/// `wire::frame` of each message, in order.
pub fn check_broadcast(
    frames: impl Fn(&[dubchain_plugin_api::wire::Message], usize) -> Result<Vec<Vec<Vec<u8>>>, String>,
) -> Vec<CaseResult> {
    use dubchain_plugin_api::{
        types::{Blob, Bytes32},
        wire::{frame, Message},
    };
    let txs: Vec<Message> = workload::transactions(0xb0, 1, 256)
        .into_iter()
        .map(Message::Tx)
        .collect();
    let (_, _, blocks, _) = workload::block_run(0xb1, 2, 400, false);
    let votes: Vec<Message> = (0..8u32)
        .map(|i| Message::Vote {
            height: u64::from(i),
            block: Bytes32([i as u8; 32]),
            validator: i,
            signature: Blob(vec![i as u8; if i % 3 == 0 { 95 } else { 96 }].into()),
        })
        .collect();
    let mixed: Vec<Message> = txs[..20]
        .iter()
        .cloned()
        .chain(votes.iter().cloned())
        .chain(blocks.iter().cloned().map(Message::Block))
        .collect();
    let lists: Vec<(&str, Vec<Message>)> = vec![
        ("no messages", Vec::new()),
        ("one transaction", txs[..1].to_vec()),
        ("256 transactions", txs.clone()),
        (
            "two blocks of 400 transactions",
            blocks.into_iter().map(Message::Block).collect(),
        ),
        ("votes, some malformed", votes),
        ("all of them mixed", mixed),
    ];
    let mut out = Vec::new();
    for (what, msgs) in &lists {
        for peers in [0usize, 1, 2, 16, 64] {
            let one: Vec<Vec<u8>> = msgs.iter().map(frame).collect();
            let expected = vec![one; peers];
            out.push(verdict_case(
                format!("{what}, {peers} peers"),
                &expected,
                frames(msgs, peers),
                |i| format!("peer {i}"),
            ));
        }
    }
    out
}

#[cfg(test)]
mod decode_and_broadcast_suites {
    use super::*;

    #[test]
    fn the_decode_suite_passes_the_baseline_and_fails_a_lenient_decoder() {
        let all = |r: &[CaseResult]| r.iter().all(|c| c.passed);
        assert!(all(&check_tx_decode(|p| Ok(baseline::decode_txs(p)))));
        // Accepts every prefix of a valid payload by padding it: a different verdict.
        let lenient = check_tx_decode(|p| {
            Ok(p.iter()
                .map(|b| {
                    serde_json::from_slice(b).or_else(|_| {
                        serde_json::from_slice(&[b, &b"\"}"[..]].concat())
                            .map_err(|e| e.to_string())
                    })
                })
                .collect())
        });
        assert!(!all(&lenient), "{lenient:#?}");
    }

    #[test]
    fn the_broadcast_suite_passes_exact_frames_and_fails_a_dropped_one() {
        use dubchain_plugin_api::wire::frame;
        let exact = |msgs: &[dubchain_plugin_api::wire::Message], peers: usize| {
            Ok(vec![msgs.iter().map(frame).collect::<Vec<_>>(); peers])
        };
        assert!(check_broadcast(exact).iter().all(|c| c.passed));
        let drops_last = |msgs: &[dubchain_plugin_api::wire::Message], peers: usize| {
            let mut one: Vec<Vec<u8>> = msgs.iter().map(frame).collect();
            one.pop();
            Ok(vec![one; peers])
        };
        assert!(check_broadcast(drops_last).iter().any(|c| !c.passed));
    }
}

#[cfg(test)]
mod every_slot {
    #[test]
    fn has_a_suite_of_its_own() {
        for info in dubchain_plugin_api::slots::ALL {
            assert!(
                super::SUITES.iter().any(|(s, _)| s.id == info.id),
                "{} has no conformance suite",
                info.id
            );
        }
    }
}

/// The suites on in-process providers: a provider equal to the baseline passes each, and one
/// with the mistake a suite exists for fails it.
#[cfg(test)]
mod suites_catch_mistakes {
    use abi_stable::sabi_trait::TD_Opaque;
    use dubchain_plugin_api::{slots::*, PluginError};

    use crate::{
        slot::Slot,
        testing::{AccountReadCache, KeepingPool},
        Host,
    };

    fn install<B>(slot: &Slot<B>, imp: B) {
        crate::testing::install_one(slot, "in_process", imp);
    }

    fn passes(cases: &[super::CaseResult]) -> bool {
        !cases.is_empty() && cases.iter().all(|c| c.passed)
    }

    /// Each provider installed in turn on `slot` of one host, and `check`'s suite run on it:
    /// the suite passes exactly where the provider is paired with `true`.
    fn each_passes_or_fails<B, const N: usize>(
        providers: [(B, bool); N], slot: fn(&Host) -> &Slot<B>,
        check: fn(&Host) -> Vec<super::CaseResult>,
    ) {
        let host = Host::new(Default::default());
        for (imp, ok) in providers {
            install(slot(&host), imp);
            let cases = check(&host);
            assert_eq!(passes(&cases), ok, "{cases:#?}");
        }
    }

    #[test]
    fn account_read_passes_a_coherent_cache_and_fails_a_stale_one() {
        let host = Host::new(Default::default());
        install(
            &host.slots.account_read,
            AccountReadFfi_TO::from_value(Guarded(AccountReadCache::new()), TD_Opaque),
        );
        let cases = super::check_account_read(&host);
        assert!(passes(&cases), "{cases:#?}");
        install(
            &host.slots.account_read,
            AccountReadFfi_TO::from_value(Guarded(AccountReadCache::ignoring_writes()), TD_Opaque),
        );
        let cases = super::check_account_read(&host);
        assert!(
            cases
                .iter()
                .any(|c| !c.passed && c.detail.contains("the store holds")),
            "{cases:#?}"
        );
    }

    #[test]
    fn buffer_pool_passes_a_clearing_pool_and_fails_one_that_shows_old_contents() {
        let pool = |p| BufferPoolFfi_TO::from_value(Guarded(p), TD_Opaque);
        each_passes_or_fails(
            [
                (pool(KeepingPool::clearing()), true),
                (pool(KeepingPool::dirty()), false),
            ],
            |h| &h.slots.buffer_pool,
            super::check_buffer_pool,
        );
    }

    /// Writes every frame, or all but the last.
    struct Writes {
        all: bool,
    }

    impl FrameSend for Writes {
        fn send(
            &self, frames: &[abi_stable::std_types::RSlice<'_, u8>], sink: &FrameSinkRef<'_>,
        ) -> Result<(), PluginError> {
            let n = if self.all {
                frames.len()
            } else {
                frames.len().saturating_sub(1)
            };
            for f in &frames[..n] {
                sink.write(*f).into_result()?;
            }
            Ok(())
        }
    }

    #[test]
    fn frame_send_passes_a_complete_writer_and_fails_one_that_stops_short() {
        let writes = |all| FrameSendFfi_TO::from_value(Guarded(Writes { all }), TD_Opaque);
        each_passes_or_fails(
            [(writes(true), true), (writes(false), false)],
            |h| &h.slots.frame_send,
            super::check_frame_send,
        );
    }

    /// The baseline's metering, or (`twice`) the metered code metered again: other gas.
    #[cfg(feature = "vm")]
    struct Meter {
        twice: bool,
    }

    #[cfg(feature = "vm")]
    impl Metering for Meter {
        fn instrument(&self, code: &[u8]) -> Result<Metered, PluginError> {
            let mut wasm = crate::vm::meter::instrument(code).map_err(PluginError::failed)?;
            if self.twice {
                wasm = crate::vm::meter::instrument(&wasm).map_err(PluginError::failed)?;
            }
            Ok(Metered {
                wasm: wasm.into(),
                counter: GasCounter::HostCall,
            })
        }
    }

    #[cfg(feature = "vm")]
    #[test]
    fn metering_passes_the_baseline_rewrite_and_fails_other_gas_on_every_module() {
        let host = Host::new(Default::default());
        for (twice, ok) in [(false, true), (true, false)] {
            install(
                &host.slots.metering,
                MeteringFfi_TO::from_value(Guarded(Meter { twice }), TD_Opaque),
            );
            let cases = super::check_metering(&host);
            assert!(cases.len() > 8, "test and generated contracts");
            if ok {
                assert!(passes(&cases), "{cases:#?}");
            } else {
                assert!(cases.iter().all(|c| !c.passed), "{cases:#?}");
            }
        }
    }
}
