//! Differential tests: each plugin, loaded from its library as the host loads it, gives
//! exactly the baseline's answers on generated and adversarial inputs.

use dubchain_host::{baseline, workload, Host};
use dubchain_plugin_api::types::{Blob, Record};
use dubchain_tests::PluginDir;

/// The configurations of `crypto_parallel_verification` under test.
const VERIFIER_CONFIGS: &[&str] = &[
    "chunk = 7\nbatch = false\n",
    "chunk = 16\nbatch = true\n",
    "chunk = 4096\nbatch = true\n",
];

/// A host with both first-party plugins loaded with `config`.
fn loaded(config: &str) -> (Host, PluginDir) {
    dubchain_tests::first_party_host(config)
}

fn verifier_hosts() -> Vec<(&'static str, Host, PluginDir)> {
    VERIFIER_CONFIGS
        .iter()
        .map(|c| {
            let (h, d) = loaded(c);
            (*c, h, d)
        })
        .collect()
}

fn assert_same_verdicts(
    hosts: &[(&str, Host, PluginDir)], set: &workload::SignatureSet, what: &str,
) {
    let items = set.items();
    let expected = baseline::sig_verify(&items);
    for (config, host, _) in hosts {
        let got = host.slots.sig_verify.verify_batch(&items);
        assert_eq!(got.len(), expected.len());
        for (i, (e, g)) in expected.iter().zip(&got).enumerate() {
            assert_eq!(
                e, g,
                "{what}, config {config:?}: item {i} ({}): baseline {e}, plugin {g}",
                set.labels[i]
            );
        }
        let status = host.slots.sig_verify.status();
        assert_eq!(
            status.counters.fallbacks, 0,
            "answered by the plugin itself: {status:?}"
        );
    }
}

#[test]
fn signatures_generated_and_adversarial() {
    let hosts = verifier_hosts();
    for seed in 0..6 {
        assert_same_verdicts(
            &hosts,
            &workload::signature_set(seed, 300, true),
            &format!("seed {seed}"),
        );
    }
    assert_same_verdicts(
        &hosts,
        &workload::signature_set(99, 500, false),
        "all valid",
    );
    assert_same_verdicts(&hosts, &workload::SignatureSet::default(), "empty batch");
}

#[test]
fn every_adversarial_kind_alone_and_among_valid_ones() {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
    let signer = ed25519_dalek::SigningKey::generate(&mut rng);
    let hosts = verifier_hosts();
    let valid = workload::signature_set(3, 40, false);
    for kind in 0..workload::ADVERSARIAL_KINDS {
        for msg_seed in 0..8u8 {
            let (label, key, sig, msg) =
                workload::adversarial_item(kind, &signer, vec![msg_seed; 33], &mut rng);
            let mut set = valid.clone();
            // Alone, then hidden in a batch of valid signatures, twice (duplicates).
            let alone = workload::SignatureSet {
                entries: vec![(key, sig, msg.clone())],
                labels: vec![label],
            };
            assert_same_verdicts(&hosts, &alone, label);
            set.entries.insert(17, (key, sig, msg.clone()));
            set.labels.insert(17, label);
            set.entries.push((key, sig, msg));
            set.labels.push(label);
            assert_same_verdicts(&hosts, &set, label);
        }
    }
}

/// The bad-item acceptance test of the exact batch verifier: over many random seeds, one
/// adversarial item of every kind at every position of a batch of valid signatures is
/// never accepted where strict verification refuses it (and the valid ones keep their
/// `true`): every configuration, batching or not, answers as the baseline. Batches of 41
/// and of 141 items, so that the verifier's equations are on both sides of the size from
/// which it sums the `R` terms on another library's points.
#[test]
fn a_batch_with_one_bad_item_is_never_accepted_over_many_seeds() {
    use rand::{Rng, SeedableRng};
    let hosts = verifier_hosts();
    let sizes = [
        workload::signature_set(11, 40, false),
        workload::signature_set(12, 140, false),
    ];
    for seed in 0..220u64 {
        // Every kind at both sizes.
        let valid = &sizes[seed as usize / workload::ADVERSARIAL_KINDS % 2];
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
        let signer = ed25519_dalek::SigningKey::generate(&mut rng);
        let kind = seed as usize % workload::ADVERSARIAL_KINDS;
        let len = rng.gen_range(0..120);
        let msg: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let (label, key, sig, msg) = workload::adversarial_item(kind, &signer, msg, &mut rng);
        let at = seed as usize % (valid.entries.len() + 1);
        let mut set = valid.clone();
        set.entries.insert(at, (key, sig, msg));
        set.labels.insert(at, label);
        assert_same_verdicts(&hosts, &set, &format!("seed {seed}, {label} at {at}"));
    }
}

#[test]
fn the_adversarial_set_really_is_adversarial() {
    // Without the exactness checks, cofactorless batch verification would accept some of
    // these: prove the inputs exercise that, so the test above can fail.
    let set = workload::signature_set(1, 600, true);
    let items = set.items();
    let expected = baseline::sig_verify(&items);
    let strict_rejected_but_equation_holds = items
        .iter()
        .zip(&expected)
        .filter(|(item, ok)| {
            !**ok && {
                let key = ed25519_dalek::VerifyingKey::from_bytes(&item.public_key);
                let sig = ed25519_dalek::Signature::from_bytes(&item.signature);
                key.is_ok_and(|k| {
                    use ed25519_dalek::Verifier;
                    k.verify(item.message.as_slice(), &sig).is_ok()
                })
            }
        })
        .count();
    assert!(
        strict_rejected_but_equation_holds > 0,
        "some items pass non-strict verification only"
    );
    assert!(expected.iter().any(|v| *v) && expected.iter().any(|v| !*v));
}

/// Encodes `records` through the loaded codec.
fn encode(host: &Host, records: &[Record]) -> Vec<Vec<u8>> {
    host.slots.record_codec.encode(records)
}

fn decode(host: &Host, values: &[Vec<u8>]) -> Vec<Result<Record, String>> {
    let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    host.slots.record_codec.decode(&refs)
}

#[test]
fn records_round_trip_byte_exact_and_read_old_json() {
    let (host, _dir) = loaded("");
    for seed in 0..4 {
        let records = workload::records(seed, 5, 20);
        let json = baseline::encode_records(&records);
        let bin = encode(&host, &records);
        assert!(
            bin.iter().all(|b| b.starts_with(b"DCB1")),
            "the plugin, not the baseline, encoded"
        );
        // decode(encode(r)) == r, and encode(decode(bytes)) == bytes.
        let back: Vec<Record> = decode(&host, &bin)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(back, records);
        assert_eq!(encode(&host, &back), bin);
        // Old JSON records read exactly as the baseline reads them.
        let json_refs: Vec<&[u8]> = json.iter().map(Vec::as_slice).collect();
        assert_eq!(decode(&host, &json), baseline::decode_records(&json_refs));
        for (b, j) in bin.iter().zip(&json) {
            assert!(b.len() < j.len());
        }
    }
    assert_eq!(host.slots.record_codec.status().counters.fallbacks, 0);
}

#[test]
fn records_edge_cases() {
    let (host, _dir) = loaded("");
    let mut records = workload::records(8, 1, 3);
    if let Record::Transaction(tx) = &mut records[0] {
        tx.amount = u64::MAX;
        tx.nonce = 0;
        tx.payload = Blob(vec![0u8; 0].into());
        tx.access_list = vec![].into();
    }
    if let Record::Block(b) = records.last_mut().unwrap() {
        b.receipts[0].error = "ünïcødé \"quoted\" \\ error\n".into();
        b.header.height = u64::MAX;
    }
    let bin = encode(&host, &records);
    assert_eq!(
        decode(&host, &bin)
            .into_iter()
            .map(Result::unwrap)
            .collect::<Vec<_>>(),
        records
    );
    let json = baseline::encode_records(&records);
    assert_eq!(
        decode(&host, &json)
            .into_iter()
            .map(Result::unwrap)
            .collect::<Vec<_>>(),
        records
    );
}

#[test]
fn corrupt_records_are_errors_for_that_item_only() {
    let (host, _dir) = loaded("");
    let records = workload::records(2, 1, 2);
    let good = encode(&host, &records[..1]).remove(0);
    let json = baseline::encode_records(&records[..1]).remove(0);
    let mut truncated = good.clone();
    truncated.truncate(good.len() / 2);
    let mut trailing = good.clone();
    trailing.push(0);
    let mut bad_json = json.clone();
    bad_json.truncate(json.len() - 1);
    let mut flipped_tag = good.clone();
    flipped_tag[4] = 0x7f; // no such Record variant
    let values = vec![
        good.clone(),
        vec![],
        b"DCB1".to_vec(),
        truncated,
        trailing,
        bad_json.clone(),
        flipped_tag,
        b"\x00\x01\x02".to_vec(),
        json.clone(),
    ];
    let out = decode(&host, &values);
    assert_eq!(out[0].as_ref().unwrap(), &records[0]);
    for (i, r) in out.iter().enumerate().take(8).skip(1) {
        assert!(r.is_err(), "value {i} must not decode: {r:?}");
    }
    assert_eq!(out[8].as_ref().unwrap(), &records[0]);
    // The baseline agrees on the JSON-shaped ones.
    assert!(baseline::decode_records(&[&bad_json])
        .pop()
        .unwrap()
        .is_err());
    assert_eq!(host.slots.record_codec.status().counters.fallbacks, 0);
}

#[test]
fn the_cache_layer_answers_exactly_as_the_layers_below_first_time_and_every_time() {
    for (stack, config) in [
        (
            &[
                "crypto_verification_caching",
                "crypto_parallel_verification",
            ][..],
            "",
        ),
        (&["crypto_verification_caching"][..], ""),
        (&["crypto_verification_caching"][..], "capacity = 8\n"),
    ] {
        let (host, _dir) = dubchain_tests::host_with_first_party(stack, config);
        let status = host.slots.sig_verify.status();
        assert!(
            status
                .stack
                .last()
                .unwrap()
                .starts_with("crypto_verification_caching@"),
            "cache on top: {status:?}"
        );
        for seed in 0..3 {
            let set = workload::signature_set(seed, 200, true);
            let items = set.items();
            let expected = baseline::sig_verify(&items);
            for pass in 0..3 {
                assert_eq!(
                    host.slots.sig_verify.verify_batch(&items),
                    expected,
                    "{stack:?} {config:?} seed {seed} pass {pass}"
                );
            }
            // A remembered signature under another message or key is not a hit.
            let mut twisted = set.clone();
            for e in &mut twisted.entries {
                e.2.push(1);
            }
            let items = twisted.items();
            assert_eq!(
                host.slots.sig_verify.verify_batch(&items),
                baseline::sig_verify(&items)
            );
        }
        assert_eq!(host.slots.sig_verify.status().counters.fallbacks, 0);
    }
}

/// A host with only `plugin` enabled (from its library), given `config`.
fn host_with(plugin: &str, config: &str) -> (Host, PluginDir) {
    dubchain_tests::host_with_first_party(&[plugin], config)
}

#[test]
fn votes_generated_and_adversarial() {
    let (host, _dir) = host_with("batching_signature_aggregation", "");
    let mut sets = vec![
        workload::VoteSet::default(),
        workload::vote_set(1, 1, false),
        workload::vote_set(2, 100, false),
    ];
    sets.extend((0..12).map(|seed| workload::vote_set(100 + seed, 40, true)));
    // Votes on two different blocks in one batch: grouped by message, each group checked.
    let mut two_blocks = workload::vote_set(3, 30, true);
    let other = workload::vote_set(4, 30, true);
    two_blocks.entries.extend(other.entries);
    two_blocks.labels.extend(other.labels);
    sets.push(two_blocks);
    let mut kinds_seen = std::collections::BTreeSet::new();
    for (n, set) in sets.iter().enumerate() {
        let items = set.items();
        let expected = baseline::verify_votes(&items);
        let got = host.slots.vote_verify.verify_votes(&items);
        for (i, (e, g)) in expected.iter().zip(&got).enumerate() {
            assert_eq!(
                e, g,
                "set {n}, vote {i} ({}): baseline {e}, plugin {g}",
                set.labels[i]
            );
            kinds_seen.insert(set.labels[i]);
        }
        assert_eq!(expected.len(), got.len());
    }
    // The sets really contain every kind of bad vote, and every bad kind is refused.
    assert!(
        kinds_seen.len() > workload::BAD_VOTE_KINDS,
        "{kinds_seen:?}"
    );
    let status = host.slots.vote_verify.status();
    assert_eq!(
        status.counters.fallbacks, 0,
        "answered by the plugin: {status:?}"
    );
}

#[test]
fn the_plus_minus_d_pair_fools_a_plain_aggregate_but_not_the_plugin() {
    use blst::min_pk::{AggregatePublicKey, AggregateSignature, PublicKey, Signature};
    // Find a set holding a +D/-D pair.
    let set = (0..64)
        .map(|seed| workload::vote_set(900 + seed, 24, true))
        .find(|s| s.labels.iter().any(|l| l.starts_with("signature + D")))
        .expect("the generator makes +D/-D pairs");
    let at = set
        .labels
        .iter()
        .position(|l| l.starts_with("signature + D"))
        .unwrap();
    let pair = &set.entries[at..at + 2];
    // A plain (unweighted) aggregate of the pair verifies...
    let sigs: Vec<Signature> = pair
        .iter()
        .map(|e| Signature::from_bytes(&e.1).unwrap())
        .collect();
    let pks: Vec<PublicKey> = pair
        .iter()
        .map(|e| PublicKey::from_bytes(&e.0).unwrap())
        .collect();
    let agg_sig = AggregateSignature::aggregate(&sigs.iter().collect::<Vec<_>>(), true).unwrap();
    let agg_pk = AggregatePublicKey::aggregate(&pks.iter().collect::<Vec<_>>(), true).unwrap();
    assert_eq!(
        agg_sig.to_signature().verify(
            true,
            &pair[0].2,
            dubchain_plugin_api::slots::VOTE_DST,
            &[],
            &agg_pk.to_public_key(),
            true
        ),
        blst::BLST_ERROR::BLST_SUCCESS,
        "the pair is adversarial for plain aggregation"
    );
    // ...while neither vote is valid, and the plugin says so.
    let items = set.items();
    assert_eq!(&baseline::verify_votes(&items[at..at + 2]), &[false, false]);
    let (host, _dir) = host_with("batching_signature_aggregation", "");
    assert_eq!(
        host.slots.vote_verify.verify_votes(&items),
        baseline::verify_votes(&items)
    );
}

#[test]
fn merkle_roots_on_every_engine() {
    let engines: Vec<&str> = ["sha_ni", "avx2", "portable"]
        .into_iter()
        .filter(|e| match *e {
            "sha_ni" => std::arch::is_x86_feature_detected!("sha"),
            "avx2" => std::arch::is_x86_feature_detected!("avx2"),
            _ => true,
        })
        .collect();
    assert!(!engines.is_empty());
    let sizes: Vec<usize> = (0..=80)
        .chain([255, 256, 257, 1023, 1024, 1025, 4095, 4096, 4097])
        .collect();
    let trees = workload::merkle_trees(77, &sizes);
    let refs: Vec<&[dubchain_plugin_api::types::Bytes32]> =
        trees.iter().map(Vec::as_slice).collect();
    let expected: Vec<_> = trees.iter().map(|t| baseline::merkle_root(t)).collect();
    for engine in engines {
        let (host, _dir) = host_with(
            "crypto_hardware_acceleration",
            &format!("engine = \"{engine}\"\n"),
        );
        let got = host.slots.merkle.roots(&refs);
        for (i, (e, g)) in expected.iter().zip(&got).enumerate() {
            assert_eq!(e, g, "engine {engine}: tree of {} leaves", sizes[i]);
        }
        // Adversarial shapes: all-equal leaves, a leaf equal to an inner node's hash.
        let same = vec![dubchain_plugin_api::types::Bytes32([7; 32]); 300];
        assert_eq!(
            host.slots.merkle.root(&same),
            baseline::merkle_root(&same),
            "{engine}"
        );
        let inner = baseline::merkle_root(&same[..2]);
        let tricky = vec![inner, same[0], same[1]];
        assert_eq!(
            host.slots.merkle.root(&tricky),
            baseline::merkle_root(&tricky),
            "{engine}"
        );
        assert_eq!(host.slots.merkle.status().counters.fallbacks, 0, "{engine}");
    }
    // An engine the configuration names but the CPU may lack is refused at load, not used.
    let dir = PluginDir::new();
    dir.add_first_party("crypto_hardware_acceleration");
    let host = dubchain_tests::test_host();
    let manifests = dir.manifests();
    let resolution = dubchain_tests::resolve(
        &manifests,
        &dubchain_tests::enable(&["crypto_hardware_acceleration"]),
    );
    let report = host
        .apply(&manifests, &resolution, |_| "engine = \"quantum\"\n".into())
        .unwrap();
    assert!(
        report.failed[0].to_string().contains("engine `quantum`"),
        "{:?}",
        report.failed
    );
}

fn assert_same_execution(host: &Host, b: &workload::TransferBlock, what: &str) {
    let expected = baseline::execute_block(&b.pre, &b.txs, &b.proposer);
    let got = host
        .slots
        .block_execution
        .execute_in_memory(&b.pre, &b.txs, &b.proposer)
        .unwrap_or_else(|| panic!("{what}: the plugin did not answer"));
    for (i, (e, g)) in expected.results.iter().zip(got.results.iter()).enumerate() {
        assert_eq!(e, g, "{what}: transaction {i} ({})", b.labels[i]);
    }
    assert_eq!(expected.results.len(), got.results.len(), "{what}");
    assert_eq!(expected.state, got.state, "{what}: final state");
}

#[test]
fn block_execution_generated_and_adversarial_on_both_plugins() {
    for plugin in ["batching_state_writes", "batching_shard_aware"] {
        let (host, _dir) = host_with(plugin, "");
        let mut kinds = std::collections::BTreeSet::new();
        for seed in 0..24u64 {
            let conflict = [0.0, 0.05, 0.3, 0.7, 1.0][seed as usize % 5];
            let adversarial = seed % 3 != 0;
            let n = [0, 1, 63, 64, 256, 700][seed as usize % 6];
            let mut b = workload::transfer_block(
                seed,
                20 + 40 * (seed as usize % 7),
                n,
                conflict,
                adversarial,
            );
            assert_same_execution(&host, &b, &format!("{plugin}, seed {seed}"));
            kinds.extend(b.labels.iter().copied());
            // The same block without the transactions that name the proposer: the
            // shard-aware plugin then really splits it into parallel groups.
            let keep: Vec<bool> = b
                .txs
                .iter()
                .map(|t| !t.access_list.contains(&b.proposer))
                .collect();
            let mut k = keep.iter();
            b.txs.retain(|_| *k.next().unwrap());
            let mut k = keep.iter();
            b.labels.retain(|_| *k.next().unwrap());
            assert_same_execution(
                &host,
                &b,
                &format!("{plugin}, seed {seed}, proposer untouched"),
            );
        }
        for kind in [
            "future nonce",
            "replayed nonce",
            "cannot pay",
            "amount + fee overflows",
            "undeclared recipient",
            "pays the proposer",
            "self-transfer",
            "declares an extra hot account",
            "duplicate of the previous one",
        ] {
            assert!(
                kinds.contains(kind),
                "{plugin}: the blocks include `{kind}`: {kinds:?}"
            );
        }
        let status = host.slots.block_execution.status();
        assert_eq!(
            status.counters.fallbacks, 0,
            "{plugin}: answered by the plugin: {status:?}"
        );
    }
}

#[test]
fn block_runs_generated_and_faulty() {
    let (host, _dir) = host_with("consensus_batching", "");
    let mut labels_seen = std::collections::BTreeSet::new();
    for seed in 0..16u64 {
        let (blocks, txs) =
            [(0, 4), (1, 1), (3, 0), (40, 6), (12, 30), (25, 10)][seed as usize % 6];
        let labels = dubchain_tests::check_block_run(&host, seed, blocks, txs, seed % 4 != 0);
        labels_seen.extend(labels);
    }
    for kind in [
        "a flipped signature bit",
        "a small-order key",
        "a non-canonical s",
        "another key's signature",
        "a zero fee",
        "a gas limit below a transfer's",
        "an undeclared recipient",
        "a contract call",
        "a wrong height",
        "a wrong parent",
        "a wrong transaction root",
        "a missing receipt",
    ] {
        assert!(
            labels_seen.contains(kind),
            "the runs include {kind}: {labels_seen:?}"
        );
    }
    // Every faulty kind is refused by the baseline (the generator is really adversarial).
    let (height, hash, run, labels) = workload::block_run(99, 60, 5, true);
    for ((check, label), b) in baseline::check_run(height, &hash, &run)
        .iter()
        .zip(&labels)
        .zip(&run)
    {
        let _ = b;
        if *label != "valid" {
            assert_ne!(
                *check,
                dubchain_plugin_api::slots::BlockCheck::Valid,
                "{label}"
            );
        }
    }
}

#[test]
fn tx_batches_generated_and_faulty() {
    let (host, _dir) = host_with("batching_tx_validation", "");
    let mut batches = vec![
        Vec::new(),
        workload::tx_batch(1, 1, false),
        workload::tx_batch(2, 500, false),
    ];
    batches.extend((0..10).map(|seed| workload::tx_batch(100 + seed, 200, true)));
    // The same faulty transactions twice in one batch: memoised keys must not change verdicts.
    let mut twice = workload::tx_batch(300, 60, true);
    twice.extend(twice.clone());
    batches.push(twice);
    let mut kinds = std::collections::BTreeSet::new();
    for (n, txs) in batches.iter().enumerate() {
        let expected = baseline::validate_txs(txs);
        let got = host
            .slots
            .tx_validation
            .validate(txs)
            .expect("the plugin answers");
        assert_eq!(expected, got, "batch {n}");
        kinds.extend(expected.iter().map(|c| {
            format!("{c:?}")
                .split(['(', ' '])
                .next()
                .unwrap()
                .to_owned()
        }));
    }
    for k in ["Valid", "BadSignature", "Invalid"] {
        assert!(kinds.contains(k), "verdict {k} appears: {kinds:?}");
    }
    // A transaction with both a bad signature and a broken rule: the signature is reported,
    // as the baseline reports it.
    let mut both = workload::tx_batch(400, 1, false);
    both[0].fee = 0;
    assert_eq!(
        host.slots.tx_validation.validate(&both).unwrap(),
        vec![dubchain_plugin_api::slots::TxCheck::BadSignature]
    );
    assert_eq!(
        baseline::validate_txs(&both),
        vec![dubchain_plugin_api::slots::TxCheck::BadSignature]
    );
}

/// What a store holds, as far as the chain is concerned.
fn store_view(
    s: &dubchain_node::state::StateStore,
) -> (
    Vec<(
        dubchain_plugin_api::types::Bytes32,
        dubchain_node::state::Account,
    )>,
    Vec<(dubchain_plugin_api::types::Bytes32, Vec<u8>)>,
    Vec<(dubchain_plugin_api::types::Bytes32, i64, i64)>,
    dubchain_plugin_api::types::Bytes32,
) {
    (
        s.accounts().unwrap(),
        s.contracts().unwrap(),
        s.storage_entries().unwrap(),
        s.state_root().unwrap(),
    )
}

#[test]
fn block_writes_generated_and_adversarial_through_and_held() {
    use dubchain_node::state::{Account, BlockWriter, Head, StateStore};
    use dubchain_plugin_api::types::Bytes32;
    use rand::{Rng, SeedableRng};
    let (host, _dir) = host_with("storage_write_batching", "");
    let tmp = tempfile::tempdir().unwrap();
    let through = StateStore::open(&tmp.path().join("through")).unwrap();
    let held = StateStore::open(&tmp.path().join("held")).unwrap();
    held.attach(&host.slots);
    // A small key space, so that keys are written again and again, deleted and rewritten.
    let accounts: Vec<Bytes32> = (0..12u8).map(|i| Bytes32([i * 17; 32])).collect();
    let contracts: Vec<Bytes32> = (0..3u8).map(|i| Bytes32([0xc0 + i; 32])).collect();
    let slots: [i64; 6] = [i64::MIN, -1, 0, 1, 42, i64::MAX];
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0x5707);
    // Every read the block makes must agree between the two write paths.
    let same_reads = |a: &BlockWriter<'_>, b: &BlockWriter<'_>, when: &str| {
        for x in &accounts {
            assert_eq!(a.account(x).unwrap(), b.account(x).unwrap(), "{when}");
            assert_eq!(
                a.account_record(x).unwrap(),
                b.account_record(x).unwrap(),
                "{when}"
            );
        }
        for c in &contracts {
            assert_eq!(a.code(c).unwrap(), b.code(c).unwrap(), "{when}");
            assert_eq!(a.code_hash(c).unwrap(), b.code_hash(c).unwrap(), "{when}");
            for k in slots {
                assert_eq!(a.storage(c, k).unwrap(), b.storage(c, k).unwrap(), "{when}");
            }
        }
        assert_eq!(a.state_root().unwrap(), b.state_root().unwrap(), "{when}");
    };
    let mut height = 0;
    for block in 0..30 {
        let mut w = [
            through.begin_block(height + 1),
            held.begin_block(height + 1),
        ];
        assert!(!w[0].is_held() && w[1].is_held());
        for op in 0..rng.gen_range(0..60) {
            match rng.gen_range(0..10) {
                0..=5 => {
                    let a = accounts[rng.gen_range(0..accounts.len())];
                    // One in five writes an account back to its default (no leaf).
                    let acc = if rng.gen_range(0..5) == 0 {
                        Account::default()
                    } else {
                        Account {
                            balance: rng.gen_range(0..4),
                            nonce: rng.gen(),
                        }
                    };
                    w.iter_mut().for_each(|w| w.put(&a, acc).unwrap());
                }
                6..=8 => {
                    let c = contracts[rng.gen_range(0..contracts.len())];
                    let k = slots[rng.gen_range(0..slots.len())];
                    // Zero deletes the slot.
                    let v = [0, 0, 1, -1, i64::MAX, rng.gen()][rng.gen_range(0..6)];
                    w.iter_mut().for_each(|w| w.put_storage(&c, k, v).unwrap());
                }
                _ => {
                    let c = contracts[rng.gen_range(0..contracts.len())];
                    let code = vec![rng.gen::<u8>(); rng.gen_range(1..40)];
                    w.iter_mut().for_each(|w| w.put_code(&c, &code).unwrap());
                }
            }
            if op % 7 == 0 {
                same_reads(&w[0], &w[1], &format!("block {block}, op {op}"));
            }
        }
        same_reads(&w[0], &w[1], &format!("block {block}, end"));
        let [a, b] = w;
        // One block in four is rolled back: nothing of it may remain on either path.
        if block % 4 == 3 {
            a.abort().unwrap();
            b.abort().unwrap();
        } else {
            height += 1;
            let head = Head {
                height,
                hash: Bytes32([height as u8; 32]),
                state_root: a.state_root().unwrap(),
            };
            a.commit(b"block", "json", head).unwrap();
            b.commit(b"block", "json", head).unwrap();
        }
        assert_eq!(
            store_view(&through),
            store_view(&held),
            "after block {block}"
        );
        assert_eq!(through.head().unwrap(), held.head().unwrap());
    }
    assert!(height > 15);
    let status = host.slots.block_commit.status();
    assert_eq!(status.counters.errors, 0);
    assert!(status.active.starts_with("storage_write_batching@"));
}

/// `consensus_lock_reduction` against the baseline's one-lock tally: step by step on
/// generated sequences (double votes, equivocation, late votes, unknown validators, stakes
/// that wrap), each step's answer and finalized height; then under four threads.
#[test]
fn vote_tallies_generated_adversarial_and_concurrent() {
    use dubchain_plugin_api::types::Bytes32;
    use rand::{Rng, SeedableRng};
    for config in ["", "shards = 1\n", "shards = 3\n"] {
        let (host, _dir) = host_with("consensus_lock_reduction", config);
        for seed in 0..12u64 {
            let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
            let n = rng.gen_range(1..150usize);
            let stakes: Vec<u64> = match seed % 3 {
                // Stakes whose sums and tallies wrap, as the baseline's arithmetic does.
                0 => (0..n)
                    .map(|_| rng.gen_range(u64::MAX / 4..=u64::MAX))
                    .collect(),
                1 => (0..n).map(|_| rng.gen_range(0..3)).collect(),
                _ => (0..n).map(|_| rng.gen_range(1..1_000)).collect(),
            };
            let blocks: Vec<Bytes32> = (0..3).map(|_| Bytes32(rng.gen())).collect();
            let state = host
                .slots
                .vote_tally
                .new_tally(&stakes)
                .expect("the plugin makes a state");
            let mut expected = baseline::Tally::default();
            for step in 0..4_000 {
                // Mostly near the frontier, sometimes far behind or far ahead.
                let height = match rng.gen_range(0..10) {
                    0 => rng.gen_range(0..5),
                    1 => rng.gen_range(0..u64::MAX),
                    _ => expected.finalized() + rng.gen_range(0..6),
                };
                let block = blocks[rng.gen_range(0..blocks.len())];
                let validator = rng.gen_range(0..n as u32 + 3);
                let want = expected.record(&stakes, height, &block, validator);
                let got = state
                    .record(height, &block, validator)
                    .unwrap()
                    .into_option();
                assert_eq!(
                    (got, state.finalized().unwrap()),
                    (want, expected.finalized()),
                    "config {config:?} seed {seed} step {step}: vote of {validator} at {height}"
                );
            }
        }
        // Four threads, each voting for its own validators at heights 1..=300, one vote per
        // validator and height; a third of the votes are for another block (so some heights
        // never reach two thirds). With one vote each, the tallies and so the final height
        // do not depend on the order: it must be the baseline's. In any order, each height
        // is announced at most once, only heights whose block reached two thirds, and the
        // last announced is the final height.
        let stakes: Vec<u64> = (1..=40).collect();
        let (honest, other) = (Bytes32([1; 32]), Bytes32([2; 32]));
        let state = host.slots.vote_tally.new_tally(&stakes).unwrap();
        let announced = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for t in 0..4u32 {
                let (state, announced) = (&state, &announced);
                scope.spawn(move || {
                    for h in 1..=300u64 {
                        for v in (t..40).step_by(4) {
                            let block = if (h + u64::from(v)) % 3 == 0 {
                                other
                            } else {
                                honest
                            };
                            if let Some(f) = state.record(h, &block, v).unwrap().into_option() {
                                announced.lock().unwrap().push(f);
                            }
                            let _ = state.finalized().unwrap();
                        }
                    }
                });
            }
        });
        let mut expected = baseline::Tally::default();
        for h in 1..=300u64 {
            for v in 0..40u32 {
                let block = if (h + u64::from(v)) % 3 == 0 {
                    other
                } else {
                    honest
                };
                expected.record(&stakes, h, &block, v);
            }
        }
        assert_eq!(
            state.finalized().unwrap(),
            expected.finalized(),
            "config {config:?}"
        );
        let mut announced = announced.into_inner().unwrap();
        let count = announced.len();
        let last = *announced.iter().max().expect("something finalized");
        assert_eq!(last, state.finalized().unwrap(), "config {config:?}");
        announced.sort_unstable();
        announced.dedup();
        assert_eq!(
            announced.len(),
            count,
            "a height announced twice: config {config:?}"
        );
        let total: u64 = stakes.iter().sum();
        for h in &announced {
            // The most a block at `h` can have: every vote for it.
            let best = [honest, other]
                .iter()
                .map(|b| {
                    (0..40u32)
                        .filter(|v| ((h + u64::from(*v)) % 3 == 0) == (*b == other))
                        .map(|v| stakes[v as usize])
                        .sum::<u64>()
                })
                .max()
                .unwrap();
            assert!(
                3 * best >= 2 * total,
                "height {h} announced without two thirds"
            );
        }
        let st = host.slots.vote_tally.status();
        assert_eq!(st.counters.fallbacks, 0, "{st:?}");
    }
}

/// `consensus_o1_structures` against the baseline's `Vec` index on generated scripts of
/// inserts (duplicates, replacements at one nonce, equal fees, nonce gaps, nonces at
/// `u64::MAX` that wrap to 0), selections and removals (of hashes never added too, and
/// after the committed nonces moved), and on 50,000 pending entries: every verdict, every
/// selection in order, every removal as a set, every length.
#[test]
fn tx_pool_scripts_generated_adversarial_and_large() {
    use dubchain_plugin_api::{
        slots::{HostNonces, PoolEntry},
        types::Bytes32,
        PluginError,
    };
    use rand::{Rng, SeedableRng};
    use std::{collections::HashMap, sync::Mutex};
    let (host, _dir) = host_with("consensus_o1_structures", "");
    let run = |seed: u64, senders: usize, steps: usize, start: usize| {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
        let senders: Vec<Bytes32> = (0..senders).map(|_| Bytes32(rng.gen())).collect();
        // Some senders start just below the top of the nonce range.
        let committed: Mutex<HashMap<Bytes32, u64>> = Mutex::new(
            senders
                .iter()
                .map(|s| (*s, if rng.gen_bool(0.1) { u64::MAX - 2 } else { 0 }))
                .collect(),
        );
        let next = |s: &Bytes32| -> Result<u64, PluginError> {
            Ok(*committed.lock().unwrap().get(s).unwrap_or(&0))
        };
        let source = HostNonces(next);
        let mut index = host.slots.tx_pool.new_index().expect("an index");
        let mut expected = dubchain_host::baseline::VecIndex::default();
        let mut seen: Vec<Bytes32> = Vec::new();
        let entry = |rng: &mut rand_chacha::ChaCha20Rng, seen: &mut Vec<Bytes32>| {
            let sender = senders[rng.gen_range(0..senders.len())];
            let hash = if !seen.is_empty() && rng.gen_ratio(1, 12) {
                seen[rng.gen_range(0..seen.len())]
            } else {
                Bytes32(rng.gen())
            };
            seen.push(hash);
            PoolEntry {
                hash,
                sender,
                nonce: next(&sender).unwrap().wrapping_add(rng.gen_range(0..5)),
                fee: rng.gen_range(1..4),
            }
        };
        let initial: Vec<PoolEntry> = (0..start).map(|_| entry(&mut rng, &mut seen)).collect();
        assert_eq!(
            index.insert(initial.as_slice().into()).unwrap().into_vec(),
            expected.insert(&initial),
            "seed {seed}: the initial batch"
        );
        for step in 0..steps {
            match rng.gen_range(0..10) {
                0..=3 => {
                    let batch: Vec<PoolEntry> = (0..rng.gen_range(0..40))
                        .map(|_| entry(&mut rng, &mut seen))
                        .collect();
                    assert_eq!(
                        index.insert(batch.as_slice().into()).unwrap().into_vec(),
                        expected.insert(&batch),
                        "seed {seed} step {step}: insert"
                    );
                }
                4..=6 => {
                    let max = rng.gen_range(0..300);
                    assert_eq!(
                        index.select(max, source.as_source()).unwrap().into_vec(),
                        expected.select(max as usize, &next).unwrap(),
                        "seed {seed} step {step}: select {max}"
                    );
                }
                _ => {
                    // A block of what would be selected, plus hashes never added; then the
                    // committed nonces move past the block.
                    let mut included = expected.select(rng.gen_range(0..200), &next).unwrap();
                    included.extend((0..3).map(|_| Bytes32(rng.gen())));
                    for h in &included {
                        if let Some(e) = expected.get(h) {
                            let mut c = committed.lock().unwrap();
                            let n = c.entry(e.sender).or_default();
                            *n = (*n).max(e.nonce.wrapping_add(1));
                        }
                    }
                    let mut want = expected.remove(&included, &next).unwrap();
                    let mut got = index
                        .remove(included.as_slice().into(), source.as_source())
                        .unwrap()
                        .into_vec();
                    want.sort_unstable();
                    got.sort_unstable();
                    assert_eq!(got, want, "seed {seed} step {step}: remove");
                }
            }
            assert_eq!(
                index.len().unwrap(),
                expected.len() as u64,
                "seed {seed} step {step}: length"
            );
        }
    };
    for seed in 0..10 {
        run(seed, 1 + seed as usize * 7, 300, 0);
    }
    // 50,000 pending entries of 5,000 senders.
    run(99, 5_000, 12, 50_000);
}

/// `storage_multi_tier_cache` never answers other than the store: random interleavings of
/// reads (single and batched, repeated keys), announced writes and rollbacks (a rollback
/// restores an older state under a new store identity) over several stores, with a bound
/// small enough that entries are evicted all the time; then a writer announcing writes
/// while two readers read: once it is done, every read gives the final state (no stale
/// entry survives a race between a read that missed and a write).
#[test]
fn account_reads_coherent_under_writes_rollbacks_and_races() {
    use dubchain_plugin_api::{
        exec::{AccountEntry, AccountState},
        types::Bytes32,
        PluginError,
    };
    use rand::{Rng, SeedableRng};
    use std::{collections::HashMap, sync::RwLock};
    type Truth = RwLock<HashMap<Bytes32, AccountState>>;
    fn below(
        truth: &Truth,
    ) -> impl Fn(&[Bytes32], &mut [AccountState]) -> Result<(), PluginError> + Sync + '_ {
        move |accounts, out| {
            let t = truth.read().unwrap();
            for (a, o) in accounts.iter().zip(out) {
                *o = t.get(a).copied().unwrap_or_default();
            }
            Ok(())
        }
    }
    for config in ["", "max_bytes = 4096\n"] {
        let (host, _dir) = host_with("storage_multi_tier_cache", config);
        let slot = &host.slots.account_read;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
        let accounts: Vec<Bytes32> = (0..300).map(|_| Bytes32(rng.gen())).collect();
        // Three stores, each with its truth, identity and saved states to roll back to.
        let mut stores: Vec<(u64, Truth, Vec<HashMap<Bytes32, AccountState>>)> = (0..3)
            .map(|i| (100 + i, RwLock::default(), Vec::new()))
            .collect();
        let mut next_id = 200;
        for step in 0..20_000 {
            let (id, truth, saved) = &mut stores[rng.gen_range(0..3)];
            match rng.gen_range(0..20) {
                0..=11 => {
                    let n = if rng.gen_bool(0.8) {
                        1
                    } else {
                        rng.gen_range(0..20)
                    };
                    // Zipf-like: low indices far more often.
                    let asked: Vec<Bytes32> = (0..n)
                        .map(|_| accounts[(rng.gen::<f64>().powi(3) * 300.0) as usize % 300])
                        .collect();
                    let want: Vec<AccountState> = {
                        let t = truth.read().unwrap();
                        asked
                            .iter()
                            .map(|a| t.get(a).copied().unwrap_or_default())
                            .collect()
                    };
                    let got = slot
                        .get(*id, &asked, below(truth))
                        .expect("the plugin answers");
                    assert_eq!(
                        got, want,
                        "config {config:?} step {step}: read of store {id}"
                    );
                }
                12..=17 => {
                    let writes: Vec<AccountEntry> = (0..rng.gen_range(1..8))
                        .map(|_| AccountEntry {
                            account: accounts[rng.gen_range(0..300)],
                            state: AccountState {
                                balance: rng.gen(),
                                nonce: rng.gen_range(0..9),
                            },
                        })
                        .collect();
                    if rng.gen_bool(0.2) {
                        saved.push(truth.read().unwrap().clone());
                    }
                    {
                        let mut t = truth.write().unwrap();
                        for w in &writes {
                            t.insert(w.account, w.state);
                        }
                    }
                    slot.written(*id, &writes);
                }
                _ => {
                    if let Some(old) = saved.pop() {
                        *truth.write().unwrap() = old;
                        slot.reset(*id);
                        *id = next_id;
                        next_id += 1;
                    }
                }
            }
        }
        // The race made certain: a write lands (and is announced) while a read that missed
        // is reading the store. That read may answer the older state; the next must not.
        let truth: Truth = RwLock::default();
        let racing = accounts[299];
        let raced = std::sync::atomic::AtomicBool::new(false);
        let first = slot
            .get(
                9,
                &[racing],
                |asked: &[Bytes32], out: &mut [AccountState]| {
                    below(&truth)(asked, out)?;
                    if !raced.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        let w = AccountEntry {
                            account: racing,
                            state: AccountState {
                                balance: 1,
                                nonce: 1,
                            },
                        };
                        truth.write().unwrap().insert(w.account, w.state);
                        slot.written(9, &[w]);
                    }
                    Ok(())
                },
            )
            .unwrap();
        assert_eq!(first[0], AccountState::default());
        assert_eq!(
            slot.get(9, &[racing], below(&truth)).unwrap()[0],
            truth.read().unwrap()[&racing],
            "config {config:?}: the read that raced a write left its older state cached"
        );
        // A writer and two readers on one store.
        let truth: Truth = RwLock::default();
        let hot = &accounts[..16];
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for round in 1..=2_000u64 {
                    let w = AccountEntry {
                        account: hot[round as usize % hot.len()],
                        state: AccountState {
                            balance: round,
                            nonce: round,
                        },
                    };
                    truth.write().unwrap().insert(w.account, w.state);
                    slot.written(7, &[w]);
                }
            });
            for _ in 0..2 {
                scope.spawn(|| {
                    for i in 0..20_000 {
                        let a = hot[i % hot.len()];
                        assert!(slot.get(7, &[a], below(&truth)).is_some());
                    }
                });
            }
        });
        let t = truth.read().unwrap();
        for a in hot {
            assert_eq!(
                slot.get(7, &[*a], below(&truth)).unwrap()[0],
                t[a],
                "config {config:?}: a stale entry after the race"
            );
        }
        let st = slot.status();
        assert_eq!(st.counters.fallbacks, 0, "{st:?}");
    }
}

/// `storage_background_fsync` keeps the durability contract under eight concurrent
/// committers on a real file: every call that returns `Ok` was covered by a sync that
/// began after it arrived and succeeded before it returned (events ordered by one
/// counter); a failing sync fails the calls that waited on it and no call is answered by
/// a failed sync; stores are kept apart. And it groups: far fewer syncs than commits.
#[test]
fn group_commit_keeps_the_durability_contract() {
    use dubchain_plugin_api::PluginError;
    use std::{
        io::Write,
        sync::{
            atomic::{AtomicU64, Ordering::SeqCst},
            Mutex,
        },
    };
    let (host, _dir) = host_with("storage_background_fsync", "");
    let slot = &host.slots.durability;
    let tmp = tempfile::tempdir().unwrap();
    let clock = AtomicU64::new(0);
    // Per store: the log file, and each sync's (began, ended, ok).
    let logs: Vec<(Mutex<std::fs::File>, Mutex<Vec<(u64, u64, bool)>>)> = (0..2)
        .map(|i| {
            (
                Mutex::new(std::fs::File::create(tmp.path().join(format!("log{i}"))).unwrap()),
                Mutex::new(Vec::new()),
            )
        })
        .collect();
    let syncs = AtomicU64::new(0);
    let answered = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            let (clock, logs, syncs, answered) = (&clock, &logs, &syncs, &answered);
            scope.spawn(move || {
                for _ in 0..25 {
                    let store = t % 2;
                    let (file, record) = &logs[store as usize];
                    let arrived = clock.fetch_add(1, SeqCst);
                    let sync = || -> Result<(), String> {
                        let began = clock.fetch_add(1, SeqCst);
                        let n = syncs.fetch_add(1, SeqCst);
                        // Every seventh sync fails.
                        let ok = n % 7 != 6;
                        let r = {
                            let mut f = file.lock().unwrap();
                            let r = f.write_all(b"commit\n").and_then(|()| f.sync_all());
                            // A disk as slow as a spinning one's fsync: this machine's answers
                            // in microseconds, and under a loaded test run the committers then
                            // seldom overlap, so whether commits were grouped would depend on
                            // the scheduler. Holding the sync open a millisecond makes the
                            // other committers arrive during it, as group commit assumes.
                            std::thread::sleep(std::time::Duration::from_millis(1));
                            r
                        };
                        let ended = clock.fetch_add(1, SeqCst);
                        record.lock().unwrap().push((began, ended, ok && r.is_ok()));
                        if ok {
                            r.map_err(|e| e.to_string())
                        } else {
                            Err("an injected failure".into())
                        }
                    };
                    // Through the provider only: a failure is reported, not synced around.
                    let wal =
                        dubchain_plugin_api::slots::HostWal(|| sync().map_err(PluginError::failed));
                    let providers = slot.providers();
                    let top = providers.last().expect("a provider");
                    let r = top.imp.make_durable(store, wal.as_wal()).into_result();
                    let returned = clock.fetch_add(1, SeqCst);
                    answered
                        .lock()
                        .unwrap()
                        .push((store, arrived, returned, r.is_ok()));
                }
            });
        }
    });
    let answered = answered.into_inner().unwrap();
    let total_syncs = syncs.load(SeqCst);
    assert!(
        total_syncs < 200 * 3 / 4,
        "{total_syncs} syncs for 200 commits: not grouped"
    );
    let mut failed = 0;
    for (store, arrived, returned, ok) in &answered {
        let record = logs[*store as usize].1.lock().unwrap();
        let covered = record
            .iter()
            .any(|(b, e, good)| *good && b > arrived && e < returned);
        if *ok {
            assert!(covered, "store {store}: a call ({arrived}..{returned}) answered Ok without a successful sync that began after it arrived");
        } else {
            failed += 1;
        }
    }
    assert!(failed > 0, "the injected failures reached some callers");
}

/// `plugin` loaded alone from its library with `config`, after its slot's whole conformance
/// suite passed on it.
fn conforming(plugin: &str, slot: &str, config: &str) -> (Host, PluginDir) {
    let (host, dir) = host_with(plugin, config);
    let failed: Vec<_> = dubchain_host::conformance::run_on(&host, slot)
        .into_iter()
        .filter(|c| !c.passed)
        .collect();
    assert!(failed.is_empty(), "{plugin}: {failed:#?}");
    (host, dir)
}

/// Every call of `slot` on `host` so far was answered by its provider: none failed, none
/// fell back.
fn assert_answered_by_the_plugin(host: &Host, slot: &str) {
    let status = host
        .slot_status()
        .into_iter()
        .find(|s| s.slot == slot)
        .expect("a slot of the host");
    assert!(status.counters.calls > 0, "{status:?}");
    assert_eq!(
        (status.counters.errors, status.counters.fallbacks),
        (0, 0),
        "{status:?}"
    );
}

/// Every reference contract called through the whole VM pipeline on `chain` with each of
/// `inputs` and each of `gases`, on `host`'s slots and on the baselines: the same outcome
/// (result, writes, gas used, trap text) every time.
fn assert_reference_calls_match(
    host: &Host, chain: &dubchain_host::vm::MemoryChain, inputs: &[i64], gases: &[u64], what: &str,
) {
    use dubchain_host::vm::{self, Vm};
    let no_plugins = dubchain_host::slot::Slots::default();
    for c in vm::contracts::genesis() {
        for &input in inputs {
            for &gas in gases {
                let call = |slots| {
                    vm::call_contract(slots, Vm::shared(), chain, &c.address, input, gas).unwrap()
                };
                assert_eq!(
                    call(&host.slots),
                    call(&no_plugins),
                    "{what}: {} ({input}, {gas} gas)",
                    c.name
                );
            }
        }
    }
}

/// `storage_incremental_root`, loaded from its library: its conformance suite, then long
/// chains through the host's slot (two threads at once, each its own chain, as two
/// validators of one host would), with rollbacks to states several blocks back, restarts
/// on states it never saw, blocks that empty the state, and keys that share all but their
/// last bit; every root the baseline's from scratch, no fallback taken.
#[test]
fn state_roots_generated_adversarial_rolled_back_and_concurrent() {
    use dubchain_host::workload::{LeafChanges, LeafState};
    use dubchain_plugin_api::types::Bytes32;
    use rand::{Rng, SeedableRng};
    let (host, _dir) = conforming(
        "storage_incremental_root",
        "storage.state_root",
        "versions = 4\n",
    );
    let chain = |seed: u64| {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
        let mut history = vec![LeafState::default()];
        for block in 0..120usize {
            let before = match block % 11 {
                // A rollback to a state up to six blocks back (past the four kept, at times).
                4 if history.len() > 7 => {
                    let back = rng.gen_range(2..7);
                    history[history.len() - back].clone()
                }
                // A restart on a state no one answered.
                9 => {
                    let n = rng.gen_range(0..300);
                    LeafState::random(&mut rng, n)
                }
                _ => history.last().cloned().unwrap(),
            };
            let held: Vec<Bytes32> = before.0.keys().copied().collect();
            let mut changes = LeafChanges::new();
            if block % 17 == 16 {
                // Empty the state.
                changes.extend(held.iter().map(|&k| (k, None)));
            }
            for i in 0..if block % 17 == 16 {
                0
            } else {
                rng.gen_range(0..120)
            } {
                let key = if i % 5 == 0 && !held.is_empty() {
                    // A neighbour of a held key, in its last bit or deep in the middle.
                    let mut k = held[rng.gen_range(0..held.len())];
                    k.0[if rng.gen() { 31 } else { 20 }] ^= 1;
                    k
                } else if i % 3 == 0 && !held.is_empty() {
                    held[rng.gen_range(0..held.len())]
                } else {
                    Bytes32(rng.gen())
                };
                changes.insert(key, (rng.gen_range(0..5) != 0).then(|| Bytes32(rng.gen())));
            }
            let (after, list) = before.apply(&changes);
            let got = host
                .slots
                .state_root
                .root(&before.root(), &list, &|| Ok(after.leaves()));
            assert_eq!(
                got,
                Some(after.root()),
                "chain {seed:#x}, block {block}: {} changes on {} leaves",
                list.len(),
                before.0.len()
            );
            history.push(after);
        }
    };
    std::thread::scope(|scope| {
        for seed in [0x5701, 0x5702] {
            scope.spawn(move || chain(seed));
        }
    });
    assert_answered_by_the_plugin(&host, "storage.state_root");
}

/// `vm_bytecode_caching`, loaded from its library: its conformance suite (every test
/// module, mutated modules, code that is not wasm, an address whose code changed), then the
/// same contracts called through the whole VM pipeline, first and again, with the
/// baseline's outcomes. And the host's check of a loader's answer: a loader that answers
/// another contract's code (a cache keyed wrongly) or no code is refused and the call falls
/// back to the baseline.
#[test]
fn code_loads_cached_by_hash_and_wrong_answers_refused() {
    use dubchain_host::{
        slot::{BreakerConfig, Provider},
        vm::{self, MemoryChain, Vm},
    };
    use dubchain_plugin_api::{
        abi_stable::sabi_trait::TD_Opaque,
        slots::{CodeLoader, CodeLoaderFfi_TO, CodeSourceRef, Guarded, LoadedCode},
        types::Bytes32,
        PluginError,
    };
    let (host, _dir) = conforming(
        "vm_bytecode_caching",
        "vm.code_loader",
        "max_bytes = 8192\n",
    );
    let chain = MemoryChain::with_genesis_contracts();
    assert_reference_calls_match(&host, &chain, &[0, 7, 200], &[100_000], "cached code");
    assert_answered_by_the_plugin(&host, "vm.code_loader");
    let no_plugins = dubchain_host::slot::Slots::default();

    /// Answers the counter contract's code whoever asks, or nothing.
    struct Lies(bool);
    impl CodeLoader for Lies {
        fn load(
            &self, _: &Bytes32, _: &Bytes32, _: &CodeSourceRef<'_>,
        ) -> Result<LoadedCode, PluginError> {
            Ok(match self.0 {
                true => LoadedCode::Valid(vm::contracts::genesis()[0].code.clone().into()),
                false => LoadedCode::Missing,
            })
        }
    }
    let compute = &vm::contracts::genesis()[1];
    for lie in [true, false] {
        let lying = dubchain_host::slot::Slots::default();
        lying
            .code_loader
            .install(vec![std::sync::Arc::new(Provider::new(
                "lies".into(),
                "0.1.0".into(),
                1,
                CodeLoaderFfi_TO::from_value(Guarded(Lies(lie)), TD_Opaque),
                BreakerConfig::default(),
            ))]);
        let call = |slots| {
            vm::call_contract(slots, Vm::shared(), &chain, &compute.address, 50, 100_000).unwrap()
        };
        assert_eq!(
            call(&lying),
            call(&no_plugins),
            "lie {lie}: the baseline answered"
        );
        let status = lying.code_loader.status();
        assert_eq!(
            status.counters.errors, 1,
            "lie {lie}: refused at the boundary: {status:?}"
        );
    }
}

/// `vm_jit_caching`, loaded from its library: its conformance suite (every test module with
/// each gas counter, out of gas at every segment, traps, storage failures), then each
/// reference contract called again and again through the whole VM pipeline, compiled once,
/// with the baseline's outcomes, and no fallback taken.
#[test]
fn module_runs_compiled_once_with_the_baselines_outcomes() {
    use dubchain_host::vm::MemoryChain;
    let (host, _dir) = conforming("vm_jit_caching", "vm.module_cache", "modules = 4\n");
    let chain = MemoryChain::with_genesis_contracts();
    for round in 0..3 {
        for (input, gas) in [(0, 100_000), (300, 100_000), (300, 2_000), (5, 0)] {
            assert_reference_calls_match(
                &host,
                &chain,
                &[input],
                &[gas],
                &format!("round {round}"),
            );
        }
    }
    assert_answered_by_the_plugin(&host, "vm.module_cache");
}

/// `vm_gas_optimization`, loaded from its library: its conformance suite (every test module,
/// out of gas at every segment, storage functions charging the global), then each reference
/// contract called through the whole VM pipeline with every gas limit from 0 up past what its
/// first rounds need: the same result, writes and gas used as the host-call rewrite, so the
/// same out-of-gas point.
#[test]
fn global_gas_runs_out_where_the_host_call_rewrite_does() {
    use dubchain_host::vm::{self, MemoryChain};
    let (host, _dir) = conforming("vm_gas_optimization", "vm.metering", "");
    let mut chain = MemoryChain::with_genesis_contracts();
    for c in vm::contracts::genesis() {
        chain.storage.0.insert((c.address, 0), 41);
        chain.storage.0.insert((c.address, 3), -7);
    }
    let gases: Vec<u64> = (0..700).chain([100_000]).collect();
    assert_reference_calls_match(&host, &chain, &[0, 3, 25], &gases, "global gas");
    assert_answered_by_the_plugin(&host, "vm.metering");
}

/// `vm_state_caching`, loaded from its library: its conformance suite (reads interleaved with
/// writes, rollbacks and stores replaced, from several threads), then the reference
/// contracts called again and again through the whole VM pipeline, each call's writes
/// announced as the node announces them: every outcome the baseline's, no fallback taken.
#[test]
fn contract_reads_cached_and_coherent_with_writes() {
    use dubchain_host::vm::{self, MemoryChain, Vm};
    use dubchain_plugin_api::slots::ContractWrite;
    let (host, _dir) = conforming(
        "vm_state_caching",
        "vm.contract_state",
        "max_entries = 64\n",
    );
    let no_plugins = dubchain_host::slot::Slots::default();
    // Two chains, one per side, applying each call's writes as they return.
    let mut chains = [
        MemoryChain::with_genesis_contracts(),
        MemoryChain::with_genesis_contracts(),
    ];
    for round in 0..40i64 {
        for c in vm::contracts::genesis() {
            let input = round % 7;
            let outcomes: Vec<_> = [&host.slots, &no_plugins]
                .iter()
                .zip(chains.iter_mut())
                .map(|(slots, chain)| {
                    let out =
                        vm::call_contract(slots, Vm::shared(), chain, &c.address, input, 100_000)
                            .unwrap();
                    if let Ok((_, writes)) = &out.result {
                        let applied = ContractWrite::of(c.address, writes);
                        for w in &applied {
                            chain.storage.0.insert((w.contract, w.key), w.value);
                        }
                        slots.contract_state.written(0, &applied);
                    }
                    out
                })
                .collect();
            assert_eq!(outcomes[0], outcomes[1], "round {round}, {}", c.name);
        }
    }
    assert_answered_by_the_plugin(&host, "vm.contract_state");
}

/// The four `vm.*` plugins together, loaded from their libraries: every test module (storage,
/// compute loops, control flow with traps and deep recursion, floats) at every input it is
/// tested with and a sweep of gas limits (none, each sixteenth of what it needs, one short,
/// one over, ample), called twice (the second time from every cache), through the whole
/// pipeline: the same result, writes, gas used and trap text as the four baselines.
#[test]
fn the_four_vm_plugins_together_give_the_baselines_receipts() {
    use dubchain_host::vm::{self, check, MemoryChain, Vm};
    let (host, _dir) = dubchain_tests::host_with_first_party(
        &[
            "vm_bytecode_caching",
            "vm_gas_optimization",
            "vm_jit_caching",
            "vm_state_caching",
        ],
        "",
    );
    let no_plugins = dubchain_host::slot::Slots::default();
    let mut chain = MemoryChain {
        storage: check::storage(),
        ..MemoryChain::default()
    };
    for (name, code, inputs) in check::test_modules() {
        chain.code.insert(check::CONTRACT, code);
        for input in inputs {
            let call = |slots, gas| {
                vm::call_contract(slots, Vm::shared(), &chain, &check::CONTRACT, input, gas)
                    .unwrap()
            };
            let needed = call(&no_plugins, check::AMPLE_GAS).gas_used;
            for gas in check::sweep(needed) {
                let want = call(&no_plugins, gas);
                for round in ["first", "again"] {
                    assert_eq!(
                        call(&host.slots, gas),
                        want,
                        "{name}({input}) with {gas} gas, {round}"
                    );
                }
            }
        }
    }
    for slot in [
        "vm.code_loader",
        "vm.metering",
        "vm.module_cache",
        "vm.contract_state",
    ] {
        let status = host
            .slot_status()
            .into_iter()
            .find(|s| s.slot == slot)
            .unwrap();
        assert!(status.counters.calls > 0, "{status:?}");
        assert_eq!(
            (status.counters.errors, status.counters.fallbacks),
            (0, 0),
            "{status:?}"
        );
    }
}

/// The host's checks of a `storage.state_root` answer: a provider that answers a root other
/// than the parent's for a block that changed nothing, or a wrong root on a call the host
/// audits (the slot's first), is refused, and the caller computes the root from scratch.
#[test]
fn wrong_state_roots_are_refused_at_the_boundary() {
    use dubchain_host::slot::{BreakerConfig, Provider, Slots};
    use dubchain_host::workload::LeafState;
    use dubchain_plugin_api::{
        abi_stable::sabi_trait::TD_Opaque,
        slots::{Guarded, LeafSourceRef, StateRoot, StateRootFfi_TO},
        state_tree::{LeafChange, EMPTY},
        types::Bytes32,
        PluginError,
    };
    use rand::SeedableRng;
    /// Always answers the empty tree's root.
    struct Empty;
    impl StateRoot for Empty {
        fn root(
            &self, _: &Bytes32, _: &[LeafChange], _: &LeafSourceRef<'_>,
        ) -> Result<Bytes32, PluginError> {
            Ok(EMPTY)
        }
    }
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0x5e7);
    let before = LeafState::random(&mut rng, 40);
    let (after, changes) = before.apply(
        &LeafState::random(&mut rng, 3)
            .0
            .into_iter()
            .map(|(k, v)| (k, Some(v)))
            .collect(),
    );
    for (what, changes, state) in [
        ("a block that changed nothing", vec![], &before),
        ("an audited block", changes, &after),
    ] {
        let slots = Slots::default();
        slots
            .state_root
            .install(vec![std::sync::Arc::new(Provider::new(
                "empty".into(),
                "0.1.0".into(),
                1,
                StateRootFfi_TO::from_value(Guarded(Empty), TD_Opaque),
                BreakerConfig::default(),
            ))]);
        let got = slots
            .state_root
            .root(&before.root(), &changes, &|| Ok(state.leaves()));
        assert_eq!(got, None, "{what}: refused, the caller computes it");
        assert_eq!(slots.state_root.status().counters.errors, 1, "{what}");
    }
}

/// `memory_buffer_reuse`, loaded from its library: its conformance suite, then four
/// threads taking, filling and giving back frame buffers of mixed sizes at once. Every
/// buffer taken is empty with room for its request, and keeps the taker's bytes until it is
/// given back (no buffer is handed to two takers at once); every call answered by the pool.
#[test]
fn buffer_pool_hands_out_each_buffer_once_and_empty_under_concurrent_use() {
    let (host, _dir) = conforming(
        "memory_buffer_reuse",
        "mem.buffer_pool",
        "max_retained_bytes = 1048576\nmax_per_class = 8\n",
    );
    let pool = &host.slots.buffer_pool;
    std::thread::scope(|scope| {
        for t in 0..4u8 {
            scope.spawn(move || {
                let sizes = [
                    0usize,
                    1,
                    63,
                    64,
                    65,
                    300,
                    4_000,
                    70_000,
                    1 << 20,
                    (1 << 20) + 1,
                ];
                for round in 0..200usize {
                    let held: Vec<_> = (0..4)
                        .map(|k| {
                            let n = sizes[(round + k + usize::from(t)) % sizes.len()];
                            let mut b = pool.take(n);
                            assert!(b.is_empty() && b.capacity() >= n, "take({n}): {}", b.len());
                            b.extend(std::iter::repeat_n(t ^ k as u8, n));
                            b
                        })
                        .collect();
                    std::thread::yield_now();
                    for (k, b) in held.into_iter().enumerate() {
                        assert!(
                            b.iter().all(|&x| x == t ^ k as u8),
                            "thread {t}: a buffer changed hands while held"
                        );
                        pool.give(b);
                    }
                }
            });
        }
    });
    assert_answered_by_the_plugin(&host, "mem.buffer_pool");
}

/// `memory_gc_tuning`, loaded from its library: its conformance suite, then generated runs
/// of blocks handed over one by one and in batches, faster than one reclaimer frees them,
/// from two threads (two nodes' commit paths); every hand-over taken without an error, and
/// unloading the host afterwards waits for the reclaimer rather than leaving it running.
#[test]
fn block_reclaim_takes_every_block_off_the_commit_path() {
    let (host, dir) = conforming(
        "memory_gc_tuning",
        "mem.block_reclaim",
        "queue_blocks = 2\n",
    );
    let (_, _, blocks, _) = workload::block_run(0x6c, 12, 64, false);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                for _ in 0..20 {
                    for b in &blocks {
                        host.slots.block_reclaim.reclaim(vec![b.clone()]);
                    }
                    host.slots.block_reclaim.reclaim(blocks.clone());
                }
            });
        }
    });
    assert_answered_by_the_plugin(&host, "mem.block_reclaim");
    drop(host);
    drop(dir);
}

/// `memory_allocation_reduction`, loaded from its library: its conformance suite (prefixes,
/// bit flips, garbage, nesting, oversized fields), then generated edits of gossiped
/// transactions aimed at its own decoders: hex fields in upper case, with JSON escapes, one
/// digit short or long, with a non-hex digit, as numbers or arrays; access lists empty,
/// long, nested or holding a bad entry; fields repeated, missing, reordered or unknown;
/// the array form. Every payload decodes to the baseline's transaction or is refused where
/// the baseline refuses it, and every call is answered by the plugin.
#[test]
fn tx_decode_gives_serde_jsons_verdicts_on_edited_transactions() {
    use rand::{Rng, SeedableRng};
    let (host, _dir) = conforming("memory_allocation_reduction", "mem.tx_decode", "");
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0xa110c);
    let txs = workload::transactions(0xa1, 2, 128);
    let hexes = ["from", "to", "signature", "payload"];
    let mut payloads: Vec<Vec<u8>> = Vec::new();
    for t in &txs {
        let v = serde_json::to_value(t).expect("transactions serialise");
        let text = v.to_string();
        payloads.push(text.clone().into_bytes());
        let field = hexes[rng.gen_range(0..hexes.len())];
        let value = v[field].as_str().expect("hex").to_owned();
        let at = |f: &str, new: &str| text.replacen(&format!("\"{f}\":\"{value}\""), new, 1);
        let edits = [
            at(field, &format!("\"{field}\":\"{}\"", value.to_uppercase())),
            at(
                field,
                &format!("\"{field}\":\"\\u0030{}\"", value.get(1..).unwrap_or("")),
            ),
            at(
                field,
                &format!("\"{field}\":\"{}\"", value.get(1..).unwrap_or("")),
            ),
            at(field, &format!("\"{field}\":\"{value}0\"")),
            at(field, &format!("\"{field}\":\"{value}00\"")),
            at(
                field,
                &format!("\"{field}\":\"g{}\"", value.get(1..).unwrap_or("")),
            ),
            at(field, &format!("\"{field}\":12")),
            at(field, &format!("\"{field}\":[1,2]")),
            at(field, &format!("\"{field}\":null")),
            at(
                field,
                &format!("\"{field}\":\"{value}\",\"{field}\":\"{value}\""),
            ),
            at(field, ""),
            at(field, &format!("\"{field}\":\"{value}\",\"extra\":1")),
            text.replacen("\"access_list\":[", "\"access_list\":[[],", 1),
            text.replacen("\"access_list\":[", "\"access_list\":[\"00\",", 1),
            text.replacen(
                "\"access_list\":[",
                &format!(
                    "\"access_list\":[{}",
                    format!("\"{}\",", "ab".repeat(32)).repeat(40)
                ),
                1,
            ),
            text.replacen("\"access_list\":[", "\"access_list\":{\"a\":", 1),
            text.replacen("\"nonce\":", "\"nonce\":-", 1),
            text.replacen("\"kind\":\"", "\"kind\":\"x", 1),
            format!(" {text} \n"),
            format!("{text},"),
            serde_json::to_string(&[
                &v["from"],
                &v["to"],
                &v["amount"],
                &v["fee"],
                &v["nonce"],
                &v["gas_limit"],
                &v["kind"],
                &v["payload"],
                &v["access_list"],
                &v["signature"],
            ])
            .expect("an array serialises"),
        ];
        payloads.extend(edits.into_iter().map(String::into_bytes));
    }
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let want = baseline::decode_txs(&refs);
    let got = host.slots.tx_decode.decode(&refs);
    assert_eq!(want.len(), got.len());
    let mut accepted = 0;
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        assert_eq!(
            w.as_ref().ok(),
            g.as_ref().ok(),
            "payload {i}: {}\nbaseline {w:?}\nplugin {g:?}",
            String::from_utf8_lossy(&payloads[i])
        );
        accepted += usize::from(w.is_ok());
    }
    // The edits are both kinds: some still decode (upper case, escapes, the array form).
    assert!(
        accepted > txs.len() && accepted < payloads.len(),
        "{accepted}"
    );
    assert_answered_by_the_plugin(&host, "mem.tx_decode");
}

/// `network_batching`, loaded from its library, with tight bounds so that groups split
/// often: its conformance suite, then generated pops (0 to 700 frames of 0 to 70,000 bytes,
/// every tenth of 1 MiB) written through the slot to a loopback TCP peer: the far end reads
/// exactly the frames' bytes, in order, and the plugin answered every call.
#[test]
fn coalesced_writes_deliver_exactly_the_frames_in_order() {
    use rand::{Rng, SeedableRng};
    use std::io::Read;
    let (host, _dir) = conforming(
        "network_batching",
        "net.frame_send",
        "max_bytes = 8192\nmax_frames = 5\n",
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut near = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    near.set_nodelay(true).unwrap();
    let (mut far, _) = listener.accept().unwrap();
    far.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0xba7c);
    for round in 0..30 {
        let frames: Vec<Vec<u8>> = (0..rng.gen_range(0..700))
            .map(|i| {
                let n = if i % 10 == 9 && round % 3 == 0 {
                    1 << 20
                } else {
                    rng.gen_range(0..70_000usize.min(1 + 200 * (round + 1)))
                };
                let mut f = (n as u32).to_be_bytes().to_vec();
                f.extend((0..n).map(|_| rng.gen::<u8>()));
                f
            })
            .collect();
        let want = frames.concat();
        let got = std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut got = vec![0u8; want.len()];
                far.read_exact(&mut got).map(|()| got)
            });
            let views: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
            host.slots.frame_send.send(&views, &mut near).unwrap();
            reader.join().unwrap().unwrap()
        });
        assert!(got == want, "round {round}: the peer read other bytes");
    }
    assert_answered_by_the_plugin(&host, "net.frame_send");
}

/// `network_zero_copy`, loaded from its library: its conformance suite, then generated
/// broadcasts (transactions, blocks, votes with signatures of every length, adversarial
/// transactions; 0 to 40 messages) for 0 to 17 peers: every peer's frames byte for byte the
/// baseline's, one buffer per message shared by all peers.
#[test]
fn shared_broadcast_frames_are_the_baselines_bytes() {
    use dubchain_plugin_api::wire::Message;
    use rand::{Rng, SeedableRng};
    let (host, _dir) = conforming("network_zero_copy", "net.broadcast", "");
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0x0c09);
    for round in 0..40u64 {
        let mut msgs: Vec<Message> = Vec::new();
        for _ in 0..rng.gen_range(0..40) {
            msgs.push(match rng.gen_range(0..4) {
                0 => Message::Tx(workload::transactions(round, 1, 1).remove(0)),
                1 => Message::Tx(workload::tx_batch(round, 1, true).remove(0)),
                2 => {
                    let (_, _, mut blocks, _) =
                        workload::block_run(round, 1, rng.gen_range(0..20), round % 2 == 0);
                    Message::Block(blocks.remove(0))
                }
                _ => Message::Vote {
                    height: rng.gen(),
                    block: dubchain_plugin_api::types::Bytes32(rng.gen()),
                    validator: rng.gen(),
                    signature: Blob((0..rng.gen_range(0..200)).map(|_| rng.gen()).collect()),
                },
            });
        }
        let peers = rng.gen_range(0..18);
        let got = host.slots.broadcast.frames(&msgs, peers).unwrap();
        let want = baseline::broadcast_frames(&msgs, peers);
        assert_eq!(got.len(), peers, "round {round}");
        for (g, w) in got.iter().zip(&want) {
            let g: Vec<&[u8]> = g.iter().map(|f| f.as_slice()).collect();
            let w: Vec<&[u8]> = w.iter().map(|f| f.as_slice()).collect();
            assert!(g == w, "round {round}: other bytes");
        }
        if peers > 1 && !msgs.is_empty() {
            assert!(std::ptr::eq(&*got[0][0], &*got[peers - 1][0]), "shared");
        }
    }
    assert_answered_by_the_plugin(&host, "net.broadcast");
}

/// `network_adaptive_backpressure`, loaded from its library with a small window: its
/// conformance suite, then a peer that drains a tenth as fast as frames arrive, through the
/// host's queue (`PeerQueue`, with its ledger): every consensus frame arrives once, in
/// order; gossip is dropped (counted) and what arrives of it is in order; the gossip the
/// plugin and the host's ledger hold stays under the window's ceiling throughout.
#[test]
fn a_slow_peer_gets_every_consensus_frame_in_order_and_bounded_gossip() {
    use dubchain_host::peer_queue::PeerQueue;
    use dubchain_plugin_api::abi_stable::std_types::{RArc, RVec};
    use dubchain_plugin_api::slots::{Outgoing, Popped, TrafficClass};
    let (host, _dir) = conforming(
        "network_adaptive_backpressure",
        "net.send_queue",
        "initial_window_bytes = 65536\nmin_window_bytes = 16384\nmax_window_bytes = 131072\n",
    );
    let q = PeerQueue::new(host.slots.send_queue.new_queue(1));
    let frame = |class: TrafficClass, seq: u32| Outgoing {
        class,
        frame: RArc::new(RVec::from(
            [[class as u8].as_slice(), &seq.to_be_bytes(), &[0u8; 195]].concat(),
        )),
    };
    let (mut consensus, mut gossip) = (Vec::new(), Vec::new());
    let mut take = |q: &PeerQueue, max: usize| -> bool {
        match q.pop(max, std::time::Duration::ZERO) {
            Popped::Frames(f) => {
                for o in f.iter() {
                    let seq = u32::from_be_bytes(o.frame[1..5].try_into().unwrap());
                    match o.class {
                        TrafficClass::Consensus => consensus.push(seq),
                        TrafficClass::Gossip => gossip.push(seq),
                    }
                }
                true
            }
            Popped::Idle => true,
            Popped::Closed => false,
        }
    };
    for b in 0..4_000u32 {
        let mut batch: Vec<Outgoing> = (0..10)
            .map(|k| frame(TrafficClass::Gossip, b * 10 + k))
            .collect();
        if b % 20 == 0 {
            batch.insert(5, frame(TrafficClass::Consensus, b / 20));
        }
        q.push(batch);
        // The slow peer: one frame written per ten pushed.
        take(&q, 1);
        q.written(200, std::time::Duration::from_micros(50));
        assert!(!q.provider_failed(), "batch {b}");
        // The window's ceiling in gossip frames, and the consensus frames not yet written.
        assert!(
            q.held() <= 131_072 / 200 + 200,
            "batch {b}: {} held",
            q.held()
        );
    }
    q.close();
    while take(&q, 64) {}
    assert_eq!(consensus, (0..200).collect::<Vec<_>>());
    assert!(gossip.windows(2).all(|w| w[0] < w[1]), "gossip in order");
    assert!(q.dropped() > 30_000, "dropped {}", q.dropped());
    assert_eq!(
        q.dropped() + gossip.len() as u64,
        40_000,
        "every gossip frame accounted for"
    );
    assert_answered_by_the_plugin(&host, "net.send_queue");
}
