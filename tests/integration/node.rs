//! The node: deterministic chains on baselines and plugins, every validity rule, blocks that
//! must be refused, and crash recovery of the RocksDB store (an interrupted block and a real
//! `kill -9`).

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use dubchain_host::{testing::install_one, Host};
use dubchain_node::{
    block::{self, BlockError},
    chain::{signing_bytes, tx_root},
    execute::{check_stateless, execute, TxError, TRANSFER_GAS},
    gen::WorkloadConfig,
    mempool::{Mempool, Rejection},
    run::{run_chain, ChainConfig, NodeHosts},
    state::{Account, StateStore},
};
use dubchain_plugin_api::{
    slots::{AccountReadFfi_TO, Guarded},
    types::{Blob, Bytes32, Bytes64, Transaction, TxKind},
};
use dubchain_tests::{
    assert_mentions, dubchain_perf, host_with_first_party, load, succeeded, test_host, PluginDir,
};
use ed25519_dalek::{Signer, SigningKey};

fn small(seed: u64) -> WorkloadConfig {
    WorkloadConfig {
        seed,
        accounts: 60,
        validators: 3,
        txs_per_block: 48,
        zipf: 1.2,
        invalid_share: 0.15,
        contract_share: 0.1,
    }
}

fn chain(host: &Host, seed: u64, blocks: u64, dir: &Path) -> dubchain_node::run::ChainReport {
    run_chain(
        NodeHosts::shared(host),
        &ChainConfig {
            workload: small(seed),
            blocks,
            data_dir: dir.to_owned(),
        },
        |_| {},
    )
    .unwrap()
}

/// The chain of `seed` on baselines, in `tmp/base`: what every plugin's chain must equal.
fn baseline_chain(tmp: &Path, seed: u64, blocks: u64) -> dubchain_node::run::ChainReport {
    chain(
        &Host::new(Default::default()),
        seed,
        blocks,
        &tmp.join("base"),
    )
}

/// Runs the chain of `seed` on `host` and checks that it is `expected`: the same block
/// hashes and state root.
fn assert_same_chain(
    host: &Host, seed: u64, dir: &Path, expected: &dubchain_node::run::ChainReport, what: &str,
) {
    let got = chain(host, seed, expected.block_hashes.len() as u64 - 1, dir);
    assert_eq!(got.block_hashes, expected.block_hashes, "{what}");
    assert_eq!(got.state_root, expected.state_root, "{what}");
}

#[test]
fn same_seed_same_chain_on_baselines_and_on_every_plugin() {
    let tmp = tempfile::tempdir().unwrap();
    let baseline = Host::new(Default::default());
    let a = chain(&baseline, 7, 12, &tmp.path().join("a"));
    let b = chain(&baseline, 7, 12, &tmp.path().join("b"));
    assert_eq!(a.block_hashes, b.block_hashes);
    assert_eq!(a.state_root, b.state_root);
    assert!(
        a.transactions > 300,
        "most transactions are included: {}",
        a.transactions
    );
    assert!(a.rejected > 0, "some are invalid and refused");

    let every = [
        "crypto_verification_caching",
        "crypto_parallel_verification",
        "crypto_hardware_acceleration",
        "storage_binary_formats",
        "batching_signature_aggregation",
        "batching_state_writes",
        "storage_write_batching",
        "batching_tx_validation",
        "consensus_o1_structures",
        "consensus_lock_reduction",
        "storage_multi_tier_cache",
        "storage_incremental_root",
        "vm_bytecode_caching",
        "vm_jit_caching",
        "vm_gas_optimization",
        "vm_state_caching",
    ];
    let (plugins, _dir) = host_with_first_party(&every, "");
    let c = chain(&plugins, 7, 12, &tmp.path().join("c"));
    assert_eq!(
        a.block_hashes, c.block_hashes,
        "plugins reach the same chain"
    );
    assert_eq!(a.state_root, c.state_root);
    // Every slot the plugins fill was called and answered by them (block validation of
    // runs is exercised below, by catch-up).
    for s in plugins
        .slot_status()
        .into_iter()
        .filter(|s| !s.stack.is_empty())
    {
        assert!(
            s.counters.calls > 0 && s.counters.fallbacks == 0,
            "the plugins did the work: {s:?}"
        );
    }

    // The other provider of exec.block_execution (exclusive with batching_state_writes).
    let (shard, _dir2) = host_with_first_party(&["batching_shard_aware"], "");
    let e = chain(&shard, 7, 12, &tmp.path().join("e"));
    assert_eq!(
        a.block_hashes, e.block_hashes,
        "shard-aware execution, same chain"
    );
    let st = shard.slots.block_execution.status();
    assert!(
        st.counters.calls > 0 && st.counters.fallbacks == 0,
        "{st:?}"
    );

    // Catch-up sync of the stored chain, on baselines and with consensus_batching: the same
    // heads, and a run with a tampered block is refused at the same block, with the same
    // error, keeping what came before it.
    let (batching, _dir3) = host_with_first_party(&["consensus_batching"], "");
    let source = StateStore::open(&tmp.path().join("a/proposer")).unwrap();
    let stored: Vec<_> = (1..=12)
        .map(|h| dubchain_node::block::stored_block(&baseline, &source, h).unwrap())
        .collect();
    drop(source);
    let mut tampered = stored.clone();
    tampered[7].transactions[0].signature.0[5] ^= 1;
    tampered[7].header.tx_root = dubchain_node::chain::tx_root(&tampered[7].transactions);
    let outcomes: Vec<_> = [(&baseline, "base"), (&batching, "batch")]
        .iter()
        .map(|(h, name)| {
            let replay = StateStore::open(&tmp.path().join(format!("replay-{name}"))).unwrap();
            dubchain_node::block::commit_genesis(
                h,
                &replay,
                &dubchain_node::gen::Workload::new(small(7)).genesis(),
            )
            .unwrap();
            let (heads, refused) = dubchain_node::block::validate_run(h, &replay, &stored).unwrap();
            assert!(refused.is_none(), "{name}: {refused:?}");
            assert_eq!(
                heads.last().unwrap().hash,
                *a.block_hashes.last().unwrap(),
                "{name}"
            );
            let replay2 = StateStore::open(&tmp.path().join(format!("replay2-{name}"))).unwrap();
            dubchain_node::block::commit_genesis(
                h,
                &replay2,
                &dubchain_node::gen::Workload::new(small(7)).genesis(),
            )
            .unwrap();
            let (heads, refused) =
                dubchain_node::block::validate_run(h, &replay2, &tampered).unwrap();
            let (at, error) = refused.expect("the tampered block is refused");
            (heads.len(), at, error.to_string())
        })
        .collect();
    assert_eq!(outcomes[0], outcomes[1]);
    assert_eq!(outcomes[0].1, 7);
    assert!(
        outcomes[0]
            .2
            .contains("transaction 0 is invalid: bad signature"),
        "{:?}",
        outcomes[0]
    );
    assert!(batching.slots.block_validation.status().counters.calls > 0);

    let d = chain(&baseline, 8, 12, &tmp.path().join("d"));
    assert_ne!(a.state_root, d.state_root, "another seed, another chain");
}

/// A fresh store with `accounts` funded, and their keys.
fn funded(dir: &Path, host: &Host) -> (StateStore, Vec<SigningKey>) {
    let store = StateStore::open(dir).unwrap();
    let keys: Vec<SigningKey> = (0..3u8)
        .map(|i| SigningKey::from_bytes(&[i + 1; 32]))
        .collect();
    let genesis: Vec<(Bytes32, Account)> = keys
        .iter()
        .map(|k| {
            (
                Bytes32(k.verifying_key().to_bytes()),
                Account {
                    balance: 1_000,
                    nonce: 0,
                },
            )
        })
        .collect();
    block::commit_genesis(host, &store, &genesis).unwrap();
    (store, keys)
}

fn transfer(from: &SigningKey, to: &SigningKey, amount: u64, fee: u64, nonce: u64) -> Transaction {
    let (f, t) = (
        Bytes32(from.verifying_key().to_bytes()),
        Bytes32(to.verifying_key().to_bytes()),
    );
    let mut tx = Transaction {
        from: f,
        to: t,
        amount,
        fee,
        nonce,
        gas_limit: TRANSFER_GAS,
        kind: TxKind::Transfer,
        payload: Blob::default(),
        access_list: vec![f, t].into(),
        signature: Bytes64([0; 64]),
    };
    tx.signature = Bytes64(from.sign(&signing_bytes(&tx)).to_bytes());
    tx
}

fn resign(mut tx: Transaction, key: &SigningKey) -> Transaction {
    tx.signature = Bytes64(key.sign(&signing_bytes(&tx)).to_bytes());
    tx
}

#[test]
fn every_validity_rule_rejects_what_it_must() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::new(Default::default());
    let (store, k) = funded(tmp.path(), &host);
    let good = transfer(&k[0], &k[1], 10, 1, 0);
    assert_eq!(check_stateless(&good), Ok(()));

    let mut bad_sig = good.clone();
    bad_sig.signature.0[3] ^= 1;
    let zero_fee = resign(
        Transaction {
            fee: 0,
            ..good.clone()
        },
        &k[0],
    );
    let low_gas = resign(
        Transaction {
            gas_limit: 20_999,
            ..good.clone()
        },
        &k[0],
    );
    let undeclared = resign(
        Transaction {
            access_list: vec![good.from].into(),
            ..good.clone()
        },
        &k[0],
    );
    // A call that moves value, a call with a short input, a deploy to the wrong address.
    let contract = resign(
        Transaction {
            kind: TxKind::Call,
            ..good.clone()
        },
        &k[0],
    );
    let short_input = resign(
        Transaction {
            kind: TxKind::Call,
            amount: 0,
            payload: Blob(vec![1, 2, 3].into()),
            ..good.clone()
        },
        &k[0],
    );
    let misaddressed = resign(
        Transaction {
            kind: TxKind::Deploy,
            amount: 0,
            payload: Blob(vec![0; 10].into()),
            gas_limit: 1_000_000,
            ..good.clone()
        },
        &k[0],
    );
    let stale = transfer(&k[0], &k[1], 10, 1, 0);

    let mut pool = Mempool::default();
    let verdicts = pool
        .admit(
            vec![
                good.clone(),
                good.clone(),
                bad_sig,
                zero_fee,
                low_gas,
                undeclared,
                contract,
                short_input,
                misaddressed,
            ],
            &host.slots.sig_verify,
            &store,
        )
        .unwrap();
    assert_eq!(
        verdicts,
        vec![
            None,
            Some(Rejection::Duplicate),
            Some(Rejection::Invalid(TxError::BadSignature)),
            Some(Rejection::Invalid(TxError::ZeroFee)),
            Some(Rejection::Invalid(TxError::GasLimit(20_999))),
            Some(Rejection::Invalid(TxError::UndeclaredAccess(
                "the recipient"
            ))),
            Some(Rejection::Invalid(TxError::ContractValue)),
            Some(Rejection::Invalid(TxError::BadPayload)),
            Some(Rejection::Invalid(TxError::BadContractAddress)),
        ]
    );

    // Stateful rules, at execution.
    let proposer = Bytes32([9; 32]);
    let mut w = store.begin_block(1);
    assert!(execute(&mut w, &host.slots, &good, &proposer)
        .unwrap()
        .is_ok());
    assert_eq!(
        execute(&mut w, &host.slots, &stale, &proposer).unwrap(),
        Err(TxError::BadNonce {
            expected: 1,
            got: 0
        })
    );
    let broke = transfer(&k[1], &k[2], 2_000, 1, 0);
    assert_eq!(
        execute(&mut w, &host.slots, &broke, &proposer).unwrap(),
        Err(TxError::InsufficientBalance {
            balance: 1_010,
            needed: 2_001
        })
    );
    let overflow = transfer(&k[1], &k[2], u64::MAX, 1, 0);
    assert_eq!(
        execute(&mut w, &host.slots, &overflow, &proposer).unwrap(),
        Err(TxError::Overflow)
    );
    // A rejected transaction changed nothing.
    assert_eq!(
        w.account(&Bytes32(k[1].verifying_key().to_bytes()))
            .unwrap(),
        Account {
            balance: 1_010,
            nonce: 0
        }
    );
    w.abort().unwrap();
    // Stale nonces are refused at admission once the state has moved on.
    let mut w = store.begin_block(1);
    execute(&mut w, &host.slots, &good, &proposer)
        .unwrap()
        .unwrap();
    w.commit(
        b"{}",
        "json",
        dubchain_node::state::Head {
            height: 1,
            hash: Bytes32([1; 32]),
            state_root: Bytes32([2; 32]),
        },
    )
    .unwrap();
    let v = Mempool::default()
        .admit(vec![stale], &host.slots.sig_verify, &store)
        .unwrap();
    assert_eq!(
        v,
        vec![Some(Rejection::Invalid(TxError::BadNonce {
            expected: 1,
            got: 0
        }))]
    );
}

#[test]
fn invalid_blocks_are_refused_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::new(Default::default());
    let (proposer, k) = funded(&tmp.path().join("p"), &host);
    let (validator, _) = funded(&tmp.path().join("v"), &host);
    let mut pool = Mempool::default();
    let txs = vec![
        transfer(&k[0], &k[1], 5, 3, 0),
        transfer(&k[1], &k[2], 7, 2, 0),
        transfer(&k[0], &k[2], 1, 1, 1),
    ];
    pool.admit(txs, &host.slots.sig_verify, &proposer).unwrap();
    let (good, _) = block::produce(&host, &proposer, &mut pool, Bytes32([7; 32]), 10).unwrap();
    assert_eq!(good.transactions.len(), 3);
    let before = (validator.head().unwrap(), validator.state_root().unwrap());

    let mut tampered = Vec::new();
    let mut b = good.clone();
    b.header.parent = Bytes32([1; 32]);
    tampered.push(("parent", b));
    let mut b = good.clone();
    b.header.height = 5;
    tampered.push(("height", b));
    let mut b = good.clone();
    b.transactions.swap(0, 1);
    tampered.push(("tx root", b));
    let mut b = good.clone();
    b.transactions[1].signature.0[0] ^= 1;
    b.header.tx_root = tx_root(&b.transactions);
    tampered.push(("signature", b));
    let mut b = good.clone();
    b.receipts[2].gas_used += 1;
    tampered.push(("receipt", b));
    let mut b = good.clone();
    b.header.state_root = Bytes32([3; 32]);
    tampered.push(("state root", b));
    let mut b = good.clone();
    b.transactions[2] = transfer(&k[0], &k[2], 1, 1, 7);
    b.header.tx_root = tx_root(&b.transactions);
    tampered.push(("nonce", b));

    for (what, b) in tampered {
        let err = block::validate_and_commit(&host, &validator, &b).expect_err(what);
        let ok = match what {
            "parent" => matches!(err, BlockError::Parent { .. }),
            "height" => matches!(err, BlockError::Height { .. }),
            "tx root" => matches!(err, BlockError::TxRoot { .. }),
            "signature" => matches!(
                err,
                BlockError::Tx {
                    index: 1,
                    error: TxError::BadSignature,
                    ..
                }
            ),
            "receipt" => matches!(err, BlockError::Receipt { index: 2, .. }),
            "state root" => matches!(err, BlockError::StateRoot { .. }),
            "nonce" => matches!(
                err,
                BlockError::Tx {
                    index: 2,
                    error: TxError::BadNonce { .. },
                    ..
                }
            ),
            _ => unreachable!(),
        };
        assert!(ok, "{what}: {err}");
        assert_eq!(
            (validator.head().unwrap(), validator.state_root().unwrap()),
            before,
            "{what} left no trace"
        );
    }
    let head = block::validate_and_commit(&host, &validator, &good).unwrap();
    assert_eq!(Some(head), proposer.head().unwrap());
}

#[test]
fn an_interrupted_block_is_rolled_back_on_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::new(Default::default());
    let (store, k) = funded(tmp.path(), &host);
    let root = store.state_root().unwrap();
    let head = store.head().unwrap();
    {
        let mut w = store.begin_block(1);
        execute(
            &mut w,
            &host.slots,
            &transfer(&k[0], &k[1], 10, 1, 0),
            &Bytes32([9; 32]),
        )
        .unwrap()
        .unwrap();
        assert_ne!(w.state_root().unwrap(), root, "the writes reached RocksDB");
        // Dropped without commit or abort: the process "dies" here.
        std::mem::forget(w);
    }
    drop(store);
    let store = StateStore::open(tmp.path()).unwrap();
    assert_eq!(store.state_root().unwrap(), root);
    assert_eq!(store.head().unwrap(), head);
}

fn perf(args: &[&str], data: &Path, plugins: &Path) -> Command {
    let mut cmd = Command::new(dubchain_perf());
    cmd.arg("--plugin-dir")
        .arg(plugins)
        .arg("--state-dir")
        .arg(data.join("state"))
        .args(args);
    cmd.args(["--txs-per-block", "64", "--accounts", "200", "--data-dir"])
        .arg(data.join("db"));
    cmd
}

/// Kills `dubchain-perf chain produce` three times mid-run, each time checking that the
/// store reopens at or past the last block it reported committed, and consistent.
fn kill_and_reopen(enable: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = PluginDir::new();
    let mut enabled = Vec::new();
    for p in enable {
        plugins.add_first_party(p);
        enabled.extend(["--enable", p]);
    }
    let mut last_seen = 0;
    for round in 0..3 {
        let mut child = perf(
            &[&enabled[..], &["chain", "produce", "--blocks", "100000"]].concat(),
            tmp.path(),
            plugins.path(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let target = last_seen + 5 + round * 3;
        for line in lines {
            let line = line.unwrap();
            if let Some(h) = line
                .strip_prefix("committed block ")
                .and_then(|r| r.split(' ').next())
                .and_then(|h| h.parse::<u64>().ok())
            {
                last_seen = h;
                if h >= target {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL: no destructor, no flush
        child.wait().unwrap();
        let out = perf(
            &[&enabled[..], &["chain", "check"]].concat(),
            tmp.path(),
            plugins.path(),
        )
        .output()
        .unwrap();
        let text = succeeded(&out, &format!("{enable:?}, round {round}"));
        assert_mentions(&text, &["consistent"]);
        let head: u64 = text
            .lines()
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            head >= last_seen,
            "{enable:?}: every block reported committed survived: head {head}, saw {last_seen}"
        );
    }
}

#[test]
fn a_node_killed_mid_run_reopens_with_its_committed_state() {
    // The baseline write path (undo entries), with binary records.
    kill_and_reopen(&["storage_binary_formats"]);
    // Blocks held by a write set and committed as one batch.
    kill_and_reopen(&["storage_binary_formats", "storage_write_batching"]);
    // Every commit made durable through group commit (each waits for a sync that began
    // after it arrived). A kill leaves the page cache to the kernel, so this proves that
    // acknowledged commits are in the log and the store recovers consistent, not that the
    // fsync reached the disk (a power cut would be needed for that).
    kill_and_reopen(&["storage_background_fsync", "storage_write_batching"]);
    // Each block's state root from its parent's tree: a restarted process holds no tree
    // (it builds one from the store), and `chain check` replays every root.
    kill_and_reopen(&["storage_incremental_root", "storage_write_batching"]);
}

/// The short form of `cargo xtask crash`'s group-commit part: `chain commit-race` (8
/// committers on one store, every commit made durable by `storage_background_fsync`) killed
/// with SIGKILL three times after a varying number of acknowledgements; every commit it
/// acknowledged (to the last line it wrote) is in the reopened store, each committer's
/// records without a gap, and each run resumes where the store left off.
#[test]
fn concurrent_committers_killed_mid_run_keep_every_acknowledged_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = PluginDir::new();
    plugins.add_first_party("storage_background_fsync");
    let race = |args: &[&str]| {
        let mut cmd = Command::new(dubchain_perf());
        cmd.arg("--plugin-dir")
            .arg(plugins.path())
            .arg("--state-dir")
            .arg(tmp.path().join("state"))
            .args([
                "--enable",
                "storage_background_fsync",
                "chain",
                "commit-race",
            ])
            .args(["--committers", "8", "--data-dir"])
            .arg(tmp.path().join("db"))
            .args(args);
        cmd
    };
    let mut total = 0;
    for (round, before_kill) in [20usize, 150, 60].into_iter().enumerate() {
        let mut child = race(&[])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acked = [None::<u64>; 8];
        let mut note = |line: String| {
            let words: Vec<u64> = line
                .split(' ')
                .skip(1)
                .map(|w| w.parse().unwrap())
                .collect();
            let a = &mut acked[words[0] as usize];
            *a = Some(a.map_or(words[1], |m| m.max(words[1])));
        };
        for line in lines.by_ref().take(before_kill) {
            note(line.unwrap());
        }
        child.kill().unwrap(); // SIGKILL: no destructor, no flush
        for line in lines {
            note(line.unwrap());
        }
        child.wait().unwrap();
        let out = race(&["--check"]).output().unwrap();
        let text = succeeded(&out, &format!("round {round}"));
        let held: Vec<u64> = text
            .lines()
            .filter_map(|l| l.strip_prefix("committer "))
            .map(|l| l.split(' ').nth(1).unwrap().parse().unwrap())
            .collect();
        assert_eq!(held.len(), 8, "{text}");
        for (t, a) in acked.iter().enumerate() {
            if let Some(seq) = a {
                assert!(
                    held[t] > *seq,
                    "round {round}: committer {t} acknowledged {seq}, the store holds {}",
                    held[t]
                );
            }
        }
        let now: u64 = held.iter().sum();
        assert!(
            now >= total + before_kill as u64,
            "round {round}: the run resumed and added to the store"
        );
        total = now;
    }
}

#[test]
fn votes_verify_and_finality_needs_two_thirds_of_the_stake() {
    use dubchain_node::consensus::{verify_votes, ConsensusState, ValidatorSet};
    let ids: Vec<Bytes32> = (0..6u8).map(|i| Bytes32([i; 32])).collect();
    let set = ValidatorSet::generate(3, &ids);
    let block = Bytes32([42; 32]);
    let slots = dubchain_host::slot::Slots::default();
    let good: Vec<_> = (0..6).map(|i| set.vote(i, 1, &block)).collect();
    assert!(verify_votes(&slots.vote_verify, &set, &good)
        .iter()
        .all(|ok| *ok));

    let mut wrong_message = set.vote(0, 1, &Bytes32([1; 32]));
    wrong_message.block = block;
    let mut wrong_key = set.vote(1, 1, &block);
    wrong_key.validator = 2;
    let mut garbage = set.vote(3, 1, &block);
    garbage.signature = [0xab; 96];
    let mut unknown = set.vote(4, 1, &block);
    unknown.validator = 99;
    let wrong_height = Vote {
        height: 2,
        ..set.vote(5, 1, &block)
    };
    assert_eq!(
        verify_votes(
            &slots.vote_verify,
            &set,
            &[wrong_message, wrong_key, garbage, unknown, wrong_height]
        ),
        vec![false; 5]
    );

    // Finality exactly when two thirds of the stake has voted, counting each validator once.
    let total = set.total_stake();
    let state = ConsensusState::default();
    let mut stake = 0;
    for (i, v) in good.iter().enumerate() {
        let before = state.finalized();
        let finalized = state.record(&set, v);
        assert_eq!(state.record(&set, v), None, "a repeated vote counts once");
        stake += set.validators[i].stake;
        let should = stake * 3 >= total * 2;
        assert_eq!(
            finalized.is_some(),
            should && before == 0,
            "after {} of {} stake",
            stake,
            total
        );
        if should {
            assert_eq!(state.finalized(), 1);
        }
    }
}

use dubchain_node::consensus::Vote;

/// Four nodes on loopback for 6 blocks, each on its own host loading `plugins` (its own
/// instances): every node reaches the same head at height 6, finalized, and each host's
/// provider of `slot` answered its calls.
fn cluster_agrees_with(plugins: &[&str], slot: &str) {
    use dubchain_node::cluster::run_cluster;
    let tmp = tempfile::tempdir().unwrap();
    let dir = PluginDir::new();
    for p in plugins {
        dir.add_first_party(p);
    }
    let config = WorkloadConfig {
        validators: 4,
        txs_per_block: 32,
        accounts: 80,
        ..small(11)
    };
    let hosts: Vec<Host> = (0..4)
        .map(|_| {
            let host = test_host();
            assert!(load(&host, &dir, plugins, "").failed.is_empty());
            host
        })
        .collect();
    let refs: Vec<&Host> = hosts.iter().collect();
    let outcomes = run_cluster(&refs, config, 6, tmp.path()).unwrap();
    for h in &hosts {
        let s = h
            .slot_status()
            .into_iter()
            .find(|s| s.slot == slot)
            .unwrap();
        assert!(
            s.counters.calls > 0 && s.counters.errors == 0 && s.counters.fallbacks == 0,
            "every node's own plugin instance answered: {s:?}"
        );
    }
    assert_eq!(outcomes.len(), 4);
    for o in &outcomes {
        assert_eq!(
            o.head, outcomes[0].head,
            "node {} and node 0 disagree",
            o.index
        );
        assert_eq!(o.head.height, 6);
        assert!(o.finalized >= 6);
        // The node's own account of its network: the other proposers' blocks and at least
        // two peers' votes per height reached it (finality needs three of four); it sent
        // each peer its votes on the blocks it took; its peers' threads are its own on the
        // baseline, the provider's otherwise.
        let st = &o.stats;
        assert!(
            st.received.block.messages >= 4 && st.received.vote.messages >= 6 * 2,
            "node {}: {st:?}",
            o.index
        );
        assert!(
            st.network.sent.vote.messages >= 4 * 3,
            "node {}: {st:?}",
            o.index
        );
        assert_eq!(
            st.received.total().bytes > 0,
            st.network.sent.total().bytes > 0
        );
        // It admitted gossip in batches, and its thread's CPU time in them is inside their
        // wall time (a clock that counted waiting, or another thread's work, could exceed it).
        assert!(
            st.admission_batches > 0
                && st.admission_cpu > std::time::Duration::ZERO
                && st.admission_cpu <= st.admission,
            "node {}: {st:?}",
            o.index
        );
        if slot == "net.transport" {
            assert_eq!((st.network.threads, st.network.queue_peak), (0, None));
        } else {
            assert_eq!(st.network.threads, 2 * 3);
            assert!(st.network.queue_peak.is_some());
        }
    }
}

#[test]
fn four_nodes_on_loopback_converge_on_the_same_chain() {
    cluster_agrees_with(&["crypto_parallel_verification"], "crypto.sig_verify");
}

/// The network plugins on every node: frames written in vectored groups
/// (`network_batching`) from broadcasts encoded once (`network_zero_copy`), and bounded
/// queues with consensus first (`network_adaptive_backpressure`).
#[test]
fn four_nodes_converge_with_coalesced_writes_and_shared_broadcast_frames() {
    cluster_agrees_with(&["network_batching", "network_zero_copy"], "net.frame_send");
    cluster_agrees_with(&["network_zero_copy"], "net.broadcast");
    cluster_agrees_with(&["network_adaptive_backpressure"], "net.send_queue");
}

/// Every node's connections driven by its own host's tokio reactor (`network_async_io`).
#[test]
fn four_nodes_converge_with_their_connections_on_a_reactor() {
    cluster_agrees_with(&["network_async_io"], "net.transport");
}

/// A host whose `storage.account_read` slot holds an in-process cache; its hit counter.
fn host_with_read_cache(
    cache: dubchain_host::testing::AccountReadCache,
) -> (Host, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use dubchain_plugin_api::abi_stable::sabi_trait::TD_Opaque;
    let hits = cache.hit_counter();
    let host = Host::new(Default::default());
    install_one(
        &host.slots.account_read,
        "in_process_read_cache",
        AccountReadFfi_TO::from_value(Guarded(cache), TD_Opaque),
    );
    (host, hits)
}

#[test]
fn a_storage_read_provider_is_told_every_write_and_sees_the_same_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let baseline = baseline_chain(tmp.path(), 9, 8);
    let (host, hits) = host_with_read_cache(dubchain_host::testing::AccountReadCache::new());
    assert_same_chain(&host, 9, &tmp.path().join("cached"), &baseline, "cached");
    assert!(hits.load(std::sync::atomic::Ordering::Relaxed) > 100);
    // A cache that ignores the writes it is told of serves stale balances and nonces: the
    // chain it produces is not the baseline's (which is what the self-test refuses).
    let (host, _) =
        host_with_read_cache(dubchain_host::testing::AccountReadCache::ignoring_writes());
    let stale = run_chain(
        NodeHosts::shared(&host),
        &ChainConfig {
            workload: small(9),
            blocks: 8,
            data_dir: tmp.path().join("stale"),
        },
        |_| {},
    );
    assert!(stale.map_or(true, |s| s.state_root != baseline.state_root));
}

#[test]
fn four_nodes_converge_with_their_io_run_by_a_net_transport_provider() {
    use dubchain_host::testing::ThreadTransport;
    use dubchain_node::cluster::run_cluster;
    use dubchain_plugin_api::{abi_stable::sabi_trait::TD_Opaque, slots::TransportFfi_TO};
    let host = Host::new(Default::default());
    install_one(
        &host.slots.transport,
        "in_process_transport",
        TransportFfi_TO::from_value(Guarded(ThreadTransport), TD_Opaque),
    );
    let tmp = tempfile::tempdir().unwrap();
    let nodes = run_cluster(
        &[&host; 4],
        WorkloadConfig {
            validators: 4,
            ..small(5)
        },
        4,
        tmp.path(),
    )
    .unwrap();
    assert!(nodes
        .iter()
        .all(|n| n.head == nodes[0].head && n.head.height >= 4));
    let status = host.slots.transport.status();
    assert_eq!(
        status.counters.calls, 4,
        "each node's connections went to the provider"
    );
    assert_eq!(status.counters.errors, 0);
}

/// A host whose `storage.block_commit` slot holds an in-process write-set factory (and, if
/// given, whose `storage.account_read` slot holds a cache); the factory's count of sets made.
fn host_with_write_sets(
    writes: dubchain_host::testing::BatchedWrites,
    cache: Option<dubchain_host::testing::AccountReadCache>,
) -> (Host, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use dubchain_plugin_api::{abi_stable::sabi_trait::TD_Opaque, slots::BlockCommitFfi_TO};
    let begun = writes.begun_counter();
    let host = match cache {
        Some(cache) => host_with_read_cache(cache).0,
        None => Host::new(Default::default()),
    };
    install_one(
        &host.slots.block_commit,
        "in_process_write_sets",
        BlockCommitFfi_TO::from_value(Guarded(writes), TD_Opaque),
    );
    (host, begun)
}

#[test]
fn a_storage_commit_provider_holds_every_block_and_reaches_the_same_chain() {
    use dubchain_host::testing::{AccountReadCache, BatchedWrites};
    let tmp = tempfile::tempdir().unwrap();
    let baseline = baseline_chain(tmp.path(), 11, 8);
    // With a read cache on top: it is told of a held block's writes when they reach the
    // store, at the commit, and must still see the same chain.
    for (name, cache) in [
        ("held", None),
        ("held+cached", Some(AccountReadCache::new())),
    ] {
        let (host, begun) = host_with_write_sets(BatchedWrites::new(), cache);
        assert_same_chain(&host, 11, &tmp.path().join(name), &baseline, name);
        // Genesis and 8 blocks on the proposer, the same on the validator.
        assert!(
            begun.load(std::sync::atomic::Ordering::Relaxed) >= 18,
            "{name}"
        );
        assert_eq!(
            host.slots.block_commit.status().counters.errors,
            0,
            "{name}"
        );
    }
}

#[test]
fn a_failing_write_set_costs_a_block_its_time_not_its_writes() {
    use dubchain_host::testing::BatchedWrites;
    let tmp = tempfile::tempdir().unwrap();
    let baseline = baseline_chain(tmp.path(), 12, 5);
    for call in ["write", "read", "held", "drain"] {
        let (host, _) = host_with_write_sets(BatchedWrites::failing(3, call), None);
        assert_same_chain(&host, 12, &tmp.path().join(call), &baseline, call);
        let status = host.slots.block_commit.status();
        assert!(
            status.counters.errors >= 1,
            "{call}: the failure was counted"
        );
        assert!(
            status.providers[0].1.errors >= 1,
            "{call}: and charged to the provider"
        );
    }
}

/// `storage_incremental_root` on the node: the baseline's chain (contracts, refused
/// transactions, every block's root) alone, over held write sets, and over write sets that
/// fail mid-block (the block is aborted and run again on the baseline write path, so its
/// parent is asked for twice and the first answer's state never commits). Every root came
/// from the plugin, none from a fallback.
#[test]
fn an_incremental_state_root_gives_the_baseline_chain_through_aborted_blocks() {
    use dubchain_host::testing::BatchedWrites;
    use dubchain_plugin_api::{abi_stable::sabi_trait::TD_Opaque, slots::BlockCommitFfi_TO};
    let tmp = tempfile::tempdir().unwrap();
    let baseline = baseline_chain(tmp.path(), 14, 10);
    for (name, writes) in [
        ("alone", None),
        ("held", Some(BatchedWrites::new())),
        ("held, failing", Some(BatchedWrites::failing(3, "held"))),
    ] {
        let (host, _dir) = host_with_first_party(&["storage_incremental_root"], "");
        if let Some(writes) = writes {
            install_one(
                &host.slots.block_commit,
                "in_process_write_sets",
                BlockCommitFfi_TO::from_value(Guarded(writes), TD_Opaque),
            );
        }
        assert_same_chain(&host, 14, &tmp.path().join(name), &baseline, name);
        let status = host.slots.state_root.status();
        assert!(status.counters.calls >= 20, "{name}: {status:?}");
        assert_eq!(status.counters.errors, 0, "{name}: {status:?}");
        assert_eq!(status.counters.fallbacks, 0, "{name}: {status:?}");
    }
}

#[test]
fn a_provider_whose_write_sets_always_fail_is_set_aside_by_its_breaker() {
    use dubchain_host::testing::BatchedWrites;
    let tmp = tempfile::tempdir().unwrap();
    let baseline = baseline_chain(tmp.path(), 13, 8);
    let (host, begun) = host_with_write_sets(BatchedWrites::always_failing("drain"), None);
    assert_same_chain(&host, 13, &tmp.path().join("failing"), &baseline, "failing");
    let status = host.slots.block_commit.status();
    // Three failed blocks open the breaker (the default threshold); from then on blocks go
    // straight to the baseline instead of being built twice, but for a probe after each
    // backoff (1 s, then 2 s, ...). 18 blocks were written: genesis and 8 on each store.
    let begun = begun.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(status.open.len(), 1, "{status:?}");
    assert_eq!(
        status.counters.errors, begun,
        "every set failed: {status:?}"
    );
    assert!((3..=6).contains(&begun), "{begun} sets for 18 blocks");
    assert!(status.counters.fallbacks >= 18, "{status:?}");
}

#[test]
fn a_held_block_reaches_the_store_all_at_once_at_its_commit() {
    use dubchain_host::testing::BatchedWrites;
    let tmp = tempfile::tempdir().unwrap();
    let (host, _) = host_with_write_sets(BatchedWrites::new(), None);
    let (store, keys) = funded(tmp.path(), &host);
    store.attach(&host.slots);
    let root = store.state_root().unwrap();
    let head = store.head().unwrap();
    let sender = Bytes32(keys[0].verifying_key().to_bytes());
    {
        let mut w = store.begin_block(1);
        assert!(w.is_held());
        execute(
            &mut w,
            &host.slots,
            &transfer(&keys[0], &keys[1], 10, 1, 0),
            &Bytes32([9; 32]),
        )
        .unwrap()
        .unwrap();
        // The block sees its own writes; the store has none of them.
        assert_eq!(w.account(&sender).unwrap().nonce, 1);
        assert_ne!(w.state_root().unwrap(), root);
        assert_eq!(store.state_root().unwrap(), root);
        assert_eq!(store.account(&sender).unwrap().nonce, 0);
        // Dropped without commit or abort: the process "dies" here.
        std::mem::forget(w);
    }
    drop(store);
    let store = StateStore::open(tmp.path()).unwrap();
    store.attach(&host.slots);
    assert_eq!(
        (store.state_root().unwrap(), store.head().unwrap()),
        (root, head)
    );

    // A block refused by validation leaves nothing; the good one lands whole.
    let mut pool = Mempool::new(&host.slots);
    pool.admit(
        vec![
            transfer(&keys[0], &keys[1], 5, 3, 0),
            transfer(&keys[1], &keys[2], 7, 2, 0),
        ],
        &host.slots.sig_verify,
        &store,
    )
    .unwrap();
    let other = tempfile::tempdir().unwrap();
    let (producer, _) = funded(other.path(), &Host::new(Default::default()));
    let (good, _) = block::produce(&host, &producer, &mut pool, Bytes32([7; 32]), 10).unwrap();
    let mut bad = good.clone();
    bad.header.state_root = Bytes32([3; 32]);
    assert!(matches!(
        block::validate_and_commit(&host, &store, &bad),
        Err(BlockError::StateRoot { .. })
    ));
    assert_eq!(
        (store.state_root().unwrap(), store.head().unwrap()),
        (root, head)
    );
    let landed = block::validate_and_commit(&host, &store, &good).unwrap();
    assert_eq!(store.state_root().unwrap(), landed.state_root);
    assert_eq!(store.account(&sender).unwrap().nonce, 1);
}

/// How a [`LyingIndex`] departs from the baseline's index.
#[derive(Debug, Clone, Copy, PartialEq)]
enum PoolLie {
    /// Every insert verdict "kept", duplicates too.
    KeepsDuplicates,
    /// A remove drops every pending transaction, not only the included ones.
    DropsPending,
}

/// The baseline's `VecIndex` as a `mempool.tx_pool` provider, but for its [`PoolLie`].
struct LyingIndex(dubchain_plugin_api::pool::VecIndex, PoolLie);

impl dubchain_plugin_api::slots::TxIndex for LyingIndex {
    fn insert(
        &mut self, entries: &[dubchain_plugin_api::slots::PoolEntry],
    ) -> Result<Vec<bool>, dubchain_plugin_api::PluginError> {
        let kept = self.0.insert(entries);
        Ok(match self.1 {
            PoolLie::KeepsDuplicates => vec![true; kept.len()],
            PoolLie::DropsPending => kept,
        })
    }
    fn select(
        &mut self, max: u64, nonces: &dubchain_plugin_api::slots::NonceSourceRef<'_>,
    ) -> Result<Vec<Bytes32>, dubchain_plugin_api::PluginError> {
        self.0
            .select(max as usize, &|s| nonces.next_nonce(s).into_result())
    }
    fn remove(
        &mut self, included: &[Bytes32], nonces: &dubchain_plugin_api::slots::NonceSourceRef<'_>,
    ) -> Result<Vec<Bytes32>, dubchain_plugin_api::PluginError> {
        // Every pending entry (each sender's from nonce 0, as in the test below).
        let all: Vec<Bytes32> = self.0.select(usize::MAX, &|_| Ok(0))?;
        let gone = self
            .0
            .remove(included, &|s| nonces.next_nonce(s).into_result())?;
        Ok(match self.1 {
            PoolLie::DropsPending => all
                .into_iter()
                .chain(gone)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
            PoolLie::KeepsDuplicates => gone,
        })
    }
    fn len(&self) -> Result<u64, dubchain_plugin_api::PluginError> {
        Ok(self.0.len() as u64)
    }
}

impl dubchain_plugin_api::slots::TxPool for PoolLie {
    type Index = LyingIndex;
    fn new_index(&self) -> Result<LyingIndex, dubchain_plugin_api::PluginError> {
        Ok(LyingIndex(Default::default(), *self))
    }
}

/// An index's insert verdicts and the hashes it says it dropped are checked against the
/// pending transactions: a wrong answer is the provider's failure, the mempool goes on
/// with the baseline's index, and no transaction is lost or let in twice.
#[test]
fn a_mempool_index_that_answers_wrongly_is_replaced_and_nothing_is_lost() {
    for lie in [PoolLie::KeepsDuplicates, PoolLie::DropsPending] {
        let tmp = tempfile::tempdir().unwrap();
        let host = test_host();
        install_one(
            &host.slots.tx_pool,
            "lying_pool",
            dubchain_plugin_api::slots::TxPoolFfi_TO::from_value(
                Guarded(lie),
                dubchain_plugin_api::abi_stable::sabi_trait::TD_Opaque,
            ),
        );
        let (store, keys) = funded(tmp.path(), &host);
        let mut pool = Mempool::new(&host.slots);
        let txs = vec![
            transfer(&keys[0], &keys[1], 5, 3, 0),
            transfer(&keys[1], &keys[2], 7, 2, 0),
            transfer(&keys[2], &keys[0], 1, 1, 0),
        ];
        let admitted = pool
            .admit(txs.clone(), &host.slots.sig_verify, &store)
            .unwrap();
        assert_eq!(admitted, vec![None, None, None]);
        let again = pool
            .admit(txs[..1].to_vec(), &host.slots.sig_verify, &store)
            .unwrap();
        assert_eq!(again, vec![Some(Rejection::Duplicate)], "{lie:?}");
        pool.remove(&txs[..1], &store).unwrap();
        assert_eq!(pool.len(), 2, "{lie:?}: the two not included stay pending");
        assert!(!pool.on_provider(), "{lie:?}");
        dubchain_host::testing::assert_failed_once(&host.slots.tx_pool);
        let selected = pool.select(10, &store).unwrap();
        assert_eq!(selected.len(), 2);
        assert!(selected.iter().all(|t| txs[1..].contains(t)));
    }
}

/// Two nodes on one machine, each with its own instance of `crypto_verification_caching`:
/// every call a node makes reaches its own instance and nobody else's, so the validator's
/// cache can only have been warmed by the validator's own admission of the gossiped
/// transactions, never by the proposer's.
#[test]
fn each_node_verifies_through_its_own_plugin_instance() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = PluginDir::new();
    dir.add_first_party("crypto_verification_caching");
    let node_host = || {
        let host = test_host();
        let report = load(&host, &dir, &["crypto_verification_caching"], "");
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        host
    };
    let (proposer, validator) = (node_host(), node_host());
    let blocks = 6;
    let report = run_chain(
        NodeHosts {
            proposer: &proposer,
            validator: &validator,
        },
        &ChainConfig {
            workload: small(21),
            blocks,
            data_dir: tmp.path().to_owned(),
        },
        |_| {},
    )
    .unwrap();
    let calls = |h: &Host| {
        let st = h.slots.sig_verify.status();
        assert_eq!(st.providers.len(), 1, "{st:?}");
        st.providers[0].1.calls
    };
    // The proposer verifies once per block (admission); the validator twice (admission of
    // the gossip, then its block check). On one shared host the one instance would see all.
    assert_eq!(
        calls(&proposer),
        blocks,
        "the proposer's instance saw only its own work"
    );
    assert_eq!(
        calls(&validator),
        2 * blocks,
        "the validator's instance saw only its own work"
    );
    // Two loads, two mapped copies: two instances with their own statics and caches.
    let mapped = |h: &Host| h.live_library("crypto_verification_caching").unwrap().0;
    assert_ne!(mapped(&proposer), mapped(&validator));
    // And the chain is the baselines' chain.
    let base = chain(
        &Host::new(Default::default()),
        21,
        blocks,
        &tmp.path().join("b"),
    );
    assert_eq!(report.block_hashes, base.block_hashes);
    assert_eq!(report.state_root, base.state_root);
}

/// A `storage.block_commit` provider that forwards every write to the host's write-through
/// primitive (what `plugin new` scaffolds) is the baseline: the same chain, and a block
/// interrupted before its commit is rolled back on reopen from the undo entries of what it
/// passed through, exactly as on the baseline path.
#[test]
fn a_forwarding_write_set_is_the_baseline_write_path() {
    use dubchain_host::reference::ForwardingWrites;
    use dubchain_plugin_api::{abi_stable::sabi_trait::TD_Opaque, slots::BlockCommitFfi_TO};
    let tmp = tempfile::tempdir().unwrap();
    let forwarding = || {
        let host = Host::new(Default::default());
        install_one(
            &host.slots.block_commit,
            "in_process_forwarding_writes",
            BlockCommitFfi_TO::from_value(Guarded(ForwardingWrites), TD_Opaque),
        );
        host
    };
    let baseline = baseline_chain(tmp.path(), 13, 8);
    let host = forwarding();
    assert_same_chain(&host, 13, &tmp.path().join("fwd"), &baseline, "forwarding");
    let st = host.slots.block_commit.status();
    assert!(
        st.counters.calls >= 18,
        "every block went to the provider: {st:?}"
    );
    assert_eq!(st.counters.errors, 0);

    // Interrupted: its writes went through at once, and the undo entries roll them back.
    let dir = tmp.path().join("interrupted");
    let (store, keys) = funded(&dir, &host);
    store.attach(&host.slots);
    let (root, head) = (store.state_root().unwrap(), store.head().unwrap());
    let sender = Bytes32(keys[0].verifying_key().to_bytes());
    {
        let mut w = store.begin_block(1);
        assert!(w.is_held(), "the block's writes go to the provider's set");
        execute(
            &mut w,
            &host.slots,
            &transfer(&keys[0], &keys[1], 10, 1, 0),
            &Bytes32([9; 32]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            store.account(&sender).unwrap().nonce,
            1,
            "passed through: in the store at once"
        );
        std::mem::forget(w);
    }
    drop(store);
    let store = StateStore::open(&dir).unwrap();
    assert_eq!(
        (store.state_root().unwrap(), store.head().unwrap()),
        (root, head)
    );
    assert_eq!(store.account(&sender).unwrap().nonce, 0);
}

/// An `exec.block_execution` provider that writes through the host's primitives and then
/// fails: the host puts back every account it wrote before the baseline runs, so the chain
/// is the baselines' and the failure costs time, never state.
#[test]
fn a_block_execution_provider_that_fails_after_writing_leaves_the_baseline_chain() {
    use dubchain_plugin_api::{
        abi_stable::{sabi_trait::TD_Opaque, std_types::RResult},
        exec::{AccountEntry, AccountState, TxFailure},
        slots::{AccountStoreRef, BlockExecution, BlockExecutionFfi_TO},
        PluginError,
    };
    struct WritesThenFails;
    impl BlockExecution for WritesThenFails {
        fn execute_block(
            &self, txs: &[Transaction], proposer: &Bytes32, state: &AccountStoreRef<'_>,
        ) -> Result<Vec<RResult<(), TxFailure>>, PluginError> {
            let accounts = dubchain_plugin_api::exec::declared_accounts(txs, proposer);
            // Garbage for every account, then a failure.
            let garbage: Vec<AccountEntry> = accounts
                .iter()
                .map(|a| AccountEntry {
                    account: *a,
                    state: AccountState {
                        balance: 7,
                        nonce: 99,
                    },
                })
                .collect();
            state.put(garbage.as_slice().into()).into_result()?;
            Err(PluginError::failed("failed after writing"))
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let baseline = baseline_chain(tmp.path(), 17, 6);
    let host = Host::new(Default::default());
    install_one(
        &host.slots.block_execution,
        "in_process_writes_then_fails",
        BlockExecutionFfi_TO::from_value(Guarded(WritesThenFails), TD_Opaque),
    );
    assert_same_chain(
        &host,
        17,
        &tmp.path().join("failing"),
        &baseline,
        "writes then fails",
    );
    let st = host.slots.block_execution.status();
    assert!(
        st.counters.errors > 0,
        "the provider was called and failed: {st:?}"
    );
}

/// A store whose blocks a codec plugin wrote is refused by a host without that codec (by
/// `chain produce` and `chain check` alike, naming the codec and the two ways on), nothing
/// written; `chain migrate` with the codec enabled rewrites the blocks as JSON, after which
/// a host without the plugin reads and checks the chain.
#[test]
fn blocks_a_codec_wrote_are_never_stranded_and_migrate_to_json() {
    use dubchain_node::{
        ledger::{self, LedgerError, MigrateTo},
        state::StateError,
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = small(5);
    let (binary, _dir) = dubchain_tests::first_party_host("");
    let head = ledger::produce(&binary, &data, &config, 6, |_| {}).unwrap();
    let plain = test_host();
    let stranded = |e: LedgerError| {
        let text = e.to_string();
        assert!(
            matches!(&e, LedgerError::Store { source: StateError::CodecMissing { missing, .. }, .. } if missing == &["storage_binary_formats".to_owned()]),
            "{text}"
        );
        assert_mentions(
            &text,
            &[
                "`--enable storage_binary_formats`",
                "chain migrate --data-dir",
                "--codec json",
            ],
        );
    };
    stranded(ledger::check(&plain, &data, &config).unwrap_err());
    stranded(ledger::produce(&plain, &data, &config, 9, |_| {}).unwrap_err());
    let m = ledger::migrate(&binary, &data, &MigrateTo::Json).unwrap();
    assert_eq!(m.blocks, head.height + 1);
    assert_eq!(m.before, ["storage_binary_formats"]);
    assert_eq!(m.after, ["json"]);
    let c = ledger::check(&plain, &data, &config).unwrap();
    assert!(c.is_consistent(), "{c:?}");
    assert_eq!(c.head, head, "the migration changed no block");
    // A migration to a codec the host has not loaded is refused and leaves the store as
    // it was: still read by a host without any codec plugin.
    for name in ["storage_binary_formats", "no_such_codec"] {
        let e = ledger::migrate(&plain, &data, &MigrateTo::Plugin(name.into())).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("codec `{name}` did not answer")),
            "{e}"
        );
        let c = ledger::check(&plain, &data, &config).unwrap();
        assert!(c.is_consistent() && c.head == head, "{c:?}");
    }
    // And back: the plugin's codec again, read by the host that has it.
    let m = ledger::migrate(
        &binary,
        &data,
        &MigrateTo::Plugin("storage_binary_formats".into()),
    )
    .unwrap();
    assert_eq!(m.after, ["storage_binary_formats"]);
    assert!(ledger::check(&binary, &data, &config)
        .unwrap()
        .is_consistent());
    stranded(ledger::check(&plain, &data, &config).unwrap_err());
}

/// A store RocksDB will not open is refused with the reason and what to do, which depends on
/// the reason: held by another open store, or damaged files.
#[test]
fn a_store_that_cannot_be_opened_says_why_and_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let refusal = || match StateStore::open(tmp.path()) {
        Ok(_) => panic!("the store opened"),
        Err(e) => e.to_string(),
    };
    let first = StateStore::open(tmp.path()).unwrap();
    let e = refusal();
    assert_mentions(&e, &["cannot open it", "another process has it open"]);
    drop(first);
    std::fs::write(tmp.path().join("CURRENT"), "garbage\n").unwrap();
    let e = refusal();
    assert_mentions(&e, &["Corruption", "restore the directory from a backup"]);
}

/// A launch of node processes empties only the node directories an earlier launch made
/// and no running node holds: a store of one's own that happens to be called `node-1`, or
/// one a node is running on, is refused before anything is started or removed.
#[test]
fn a_launch_empties_only_its_own_node_directories() {
    use dubchain_node::launch::{launch, Launch, LaunchError, SCRATCH_MARK};
    let tmp = tempfile::tempdir().unwrap();
    let (ours, theirs) = (tmp.path().join("node-0"), tmp.path().join("node-1"));
    for dir in [&ours, &theirs] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("kept"), "a block").unwrap();
    }
    std::fs::write(ours.join(SCRATCH_MARK), "").unwrap();
    let l = Launch {
        exe: PathBuf::from("/nonexistent/dubchain-perf"),
        host_args: Vec::new(),
        node_args: Vec::new(),
        workload: WorkloadConfig {
            validators: 2,
            ..small(3)
        },
        until_height: 1,
        block_time: Duration::ZERO,
        data_dir: tmp.path().to_owned(),
        timeout: Duration::from_secs(10),
    };
    let refused = |e: LaunchError, named: &str| match e {
        LaunchError::NotScratch(why) => assert!(why.contains(named), "{why}"),
        e => panic!("{e}"),
    };
    refused(
        launch(&l, |_, _| {}).unwrap_err(),
        "node-1: holds files that no launch made",
    );
    std::fs::remove_dir_all(&theirs).unwrap();
    let running = dubchain_node::state::lock_data_dir(&ours).unwrap();
    refused(
        launch(&l, |_, _| {}).unwrap_err(),
        "another node or benchmark is running on it",
    );
    assert!(ours.join("kept").exists(), "nothing was removed");
    drop(running);
    // Its own, idle: emptied, marked again, and the launch goes on (to the missing binary).
    assert!(matches!(
        launch(&l, |_, _| {}).unwrap_err(),
        LaunchError::Io { .. }
    ));
    assert!(!ours.join("kept").exists() && ours.join(SCRATCH_MARK).exists());
}
