//! `dubchain-perf plugin verify`: the conformance suite of a plugin's slot, run against its
//! library in a child process, so that a plugin that crashes (abort, segfault) cannot take
//! the verifier down: the parent reports the crash as a failure.
//!
//! The child prints one JSON [`Check`] per line as it goes; the parent prints them as they
//! come and knows which check was running if the child dies.

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use dubchain_plugin_api::slots::*;
use serde::{Deserialize, Serialize};

use crate::{
    baseline,
    conformance::{self, CaseResult},
    host::{Host, HostOptions},
    manifest::{self, Manifest},
    measure,
    resolve::{self, Request, Source},
    session::host_api_version,
    slot::with_slots,
    workload,
};

/// One line of the child's report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    pub check: String,
    pub passed: bool,
    pub detail: String,
}

/// Finds the manifest and library of the plugin at `path`: a manifest file, or a directory
/// holding one plugin manifest (a plugin package, or a plugin crate whose library is in
/// `target/release/`). `library` overrides where the library is.
pub fn locate(path: &Path, library: Option<&Path>) -> Result<(PathBuf, PathBuf), String> {
    let manifest_path = if path.is_dir() {
        let mut found: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && !p.ends_with("Cargo.toml"))
            .collect();
        found.sort();
        match found.len() {
            1 => found.remove(0),
            0 => {
                return Err(format!(
                    "{}: no plugin manifest (*.toml other than Cargo.toml)",
                    path.display()
                ))
            }
            _ => return Err(format!("{}: several manifests; name one", path.display())),
        }
    } else {
        path.to_owned()
    };
    let m = manifest::read(&manifest_path).map_err(|e| e.to_string())?;
    let lib = match library {
        Some(l) => l.to_owned(),
        None => {
            let file = m
                .library
                .file_name()
                .expect("library has a file name")
                .to_owned();
            let dir = manifest_path.parent().unwrap_or(Path::new("."));
            let mut candidates = vec![m.library.clone(), dir.join("target/release").join(&file)];
            if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
                candidates.push(PathBuf::from(t).join("release").join(&file));
            }
            candidates.iter().find(|c| c.is_file()).cloned().ok_or_else(|| {
                format!(
                    "no library for `{}` at {}; build it (cargo build --release) or pass --library",
                    m.name,
                    candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(" or ")
                )
            })?
        }
    };
    Ok((manifest_path, lib))
}

/// Parent side: runs `exe plugin verify-child` on the plugin and prints each check.
/// Returns whether every check passed and the child exited cleanly.
pub fn run_parent(
    exe: &Path,
    manifest_path: &Path,
    library: &Path,
    out: &mut impl Write,
) -> std::io::Result<bool> {
    let mut child = Command::new(exe)
        .args(["plugin", "verify-child"])
        .arg(manifest_path)
        .arg("--library")
        .arg(library)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    // Drain stderr concurrently so a chatty child cannot block on a full pipe.
    let mut stderr_pipe = child.stderr.take().expect("piped");
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr_pipe, &mut text);
        text
    });
    let mut all_passed = true;
    let mut checks = 0;
    let mut last = String::from("starting");
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let Ok(check) = serde_json::from_str::<Check>(&line) else {
            continue;
        };
        checks += 1;
        all_passed &= check.passed;
        let mark = if check.passed { "PASS" } else { "FAIL" };
        if check.detail.is_empty() {
            writeln!(out, "{mark}  {}", check.check)?;
        } else {
            writeln!(out, "{mark}  {}: {}", check.check, check.detail)?;
        }
        last = check.check;
    }
    let status = child.wait()?;
    let stderr = stderr_reader.join().unwrap_or_default();
    if !status.success() {
        all_passed = false;
        let how = exit_description(&status);
        writeln!(
            out,
            "FAIL  the plugin crashed the verifier's child process ({how}) after `{last}`"
        )?;
        for l in stderr.lines().filter(|l| !l.trim().is_empty()).take(5) {
            writeln!(out, "      {l}")?;
        }
    }
    if checks == 0 {
        all_passed = false;
    }
    writeln!(
        out,
        "\nverdict: {}",
        if all_passed { "PASS" } else { "FAIL" }
    )?;
    Ok(all_passed)
}

fn exit_description(status: &std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("killed by signal {sig}");
        }
    }
    format!("{status}")
}

/// Child side: loads the plugin into a host and runs the suite, printing checks as JSON lines.
pub fn run_child(manifest_path: &Path, library: &Path) -> bool {
    let emit = |check: &str, passed: bool, detail: String| {
        let line = serde_json::to_string(&Check {
            check: check.to_owned(),
            passed,
            detail,
        })
        .expect("serialisable");
        println!("{line}");
        let _ = std::io::stdout().flush();
        passed
    };
    let mut m: Manifest = match manifest::read(manifest_path) {
        Ok(m) => m,
        Err(e) => return emit("manifest", false, e.to_string()),
    };
    m.library = library.to_owned();
    emit(
        "manifest",
        true,
        format!("{} {} provides {}", m.name, m.version, provided(&m)),
    );

    let manifests = vec![m.clone()];
    let requests = vec![Request {
        name: m.name.clone(),
        enable: true,
        source: Source::CommandLine,
    }];
    let resolution = resolve::resolve(&manifests, &requests, &host_api_version());
    if !resolution.is_ok() {
        let problems: Vec<String> = resolution
            .problems
            .iter()
            .map(ToString::to_string)
            .collect();
        return emit("manifest against this host", false, problems.join("; "));
    }
    let host = Host::new(HostOptions::default());
    let report = host
        .apply(&manifests, &resolution, |_| String::new())
        .expect("resolution checked");
    if let Some(e) = report.failed.first() {
        return emit(
            "load: library, ABI layout, fingerprint, sha256 pin, init, self-test",
            false,
            e.to_string(),
        );
    }
    emit(
        "load: library, ABI layout, fingerprint, sha256 pin, init, self-test",
        true,
        String::new(),
    );

    let mut ok = true;
    for p in &m.provides {
        let results = if p.slot == SIG_VERIFY.id {
            conformance::check_sig_verify(|items| Ok(host.slots.sig_verify.verify_batch(items)))
        } else if p.slot == RECORD_CODEC.id {
            conformance::check_record_codec(
                |r| Ok(host.slots.record_codec.encode(r)),
                |v| Ok(host.slots.record_codec.decode(v)),
            )
        } else if p.slot == VOTE_VERIFY.id {
            conformance::check_vote_verify(|votes| Ok(host.slots.vote_verify.verify_votes(votes)))
        } else if p.slot == MERKLE.id {
            conformance::check_merkle(|trees| Ok(host.slots.merkle.roots(trees)))
        } else if p.slot == TX_VALIDATION.id {
            conformance::check_tx_validation(|txs| {
                host.slots
                    .tx_validation
                    .validate(txs)
                    .ok_or_else(|| "the plugin did not answer".to_owned())
            })
        } else if p.slot == BLOCK_VALIDATION.id {
            conformance::check_block_validation(|height, hash, blocks| {
                host.slots
                    .block_validation
                    .check_run(height, hash, blocks)
                    .ok_or_else(|| "the plugin did not answer".to_owned())
            })
        } else if p.slot == TX_DECODE.id {
            conformance::check_tx_decode(|payloads| Ok(host.slots.tx_decode.decode(payloads)))
        } else if p.slot == BROADCAST.id {
            conformance::check_broadcast(|msgs, peers| {
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
        } else if p.slot == BLOCK_EXECUTION.id {
            conformance::check_block_execution(|b| {
                host.slots
                    .block_execution
                    .execute_in_memory(&b.pre, &b.txs, &b.proposer)
                    .ok_or_else(|| "the plugin did not answer".to_owned())
            })
        } else {
            selftest_suite(&host, &p.slot)
        };
        for r in results {
            // The host hides a plugin failure behind the baseline's answer; here it counts.
            let failure = plugin_failure(&host, &p.slot);
            let (passed, detail) = match failure {
                Some(e) if r.passed => (
                    false,
                    format!("the plugin failed and the baseline answered: {e}"),
                ),
                _ => (r.passed, r.detail),
            };
            ok &= emit(&format!("{}: {}", p.slot, r.case), passed, detail);
            reset_failure(&host, &p.slot);
        }
        // Not a containment test (that is the host's, tested in its own suite): whether
        // the plugin answered every call of the suite itself, none failing or panicking.
        // Only where the suite's calls went through the slot: a suite that calls the
        // provider's objects directly (the self-test suites) reports failures in its cases.
        let (calls, failed) = call_counts(&host, &p.slot);
        if calls > 0 {
            ok &= emit(
                &format!("{}: every call answered by the plugin", p.slot),
                failed == 0,
                format!("{calls} calls, {failed} failed or panicked and were answered below it"),
            );
        }
        emit(
            &format!("{}: quick ratio", p.slot),
            true,
            quick_ratio(&host, &p.slot, &m),
        );
    }
    ok
}

fn provided(m: &Manifest) -> String {
    m.provides
        .iter()
        .map(|p| format!("{}@{}", p.slot, p.version))
        .collect::<Vec<_>>()
        .join(", ")
}

macro_rules! selftest_suite {
    ([] $($field:ident: $info:ident => $boxed:ident, $test:ident;)*) => {
        /// For slots whose suite is their self-test (the `vm.*`, `mem.*`, `net.*` and
        /// `mempool.*` slots): the self-test's cases run on the loaded provider. It passed
        /// them at load; here a failure is reported with what differed.
        fn selftest_suite(host: &Host, slot: &str) -> Vec<CaseResult> {
            $(
                if slot == $info.id {
                    let providers = host.slots.$field.providers();
                    return match providers.last() {
                        Some(top) => {
                            let r = crate::selftest::$test(&top.imp);
                            vec![CaseResult {
                                case: "the self-test's known answers, generated and adversarial"
                                    .to_owned(),
                                passed: r.is_ok(),
                                detail: r.err().unwrap_or_default(),
                            }]
                        }
                        None => Vec::new(),
                    };
                }
            )*
            Vec::new()
        }
    };
}
with_slots!(selftest_suite);

macro_rules! failures {
    ([] $($field:ident: $info:ident => $boxed:ident, $test:ident;)*) => {
        /// The last error of the plugin's provider in `slot`, if any call failed.
        fn plugin_failure(host: &Host, slot: &str) -> Option<String> {
            $(
                if slot == $info.id {
                    return host.slots.$field.providers().last().and_then(|p| p.last_error());
                }
            )*
            None
        }

        /// Forgets the last errors of `slot`'s providers.
        fn reset_failure(host: &Host, slot: &str) {
            let clear = |m: &std::sync::Mutex<Option<String>>| {
                *m.lock().unwrap_or_else(|p| p.into_inner()) = None
            };
            $(
                if slot == $info.id {
                    host.slots.$field.providers().iter().for_each(|p| clear(&p.last_error));
                }
            )*
        }
    };
}
with_slots!(failures);

/// Calls made through `slot` so far, and how many of them the provider failed.
fn call_counts(host: &Host, slot: &str) -> (u64, u64) {
    host.slot_status()
        .into_iter()
        .find(|s| s.slot == slot)
        .map_or((0, 0), |s| (s.counters.calls, s.counters.errors))
}

/// A whole call of the compute contract, through every `vm.*` slot, with and without the
/// plugin.
#[cfg(feature = "vm")]
fn vm_quick_ratio(host: &Host, slot: &str) -> measure::Comparison {
    // A whole call of the compute contract, through every vm.* slot, with and without
    // the plugin.
    let chain = crate::vm::MemoryChain::with_genesis_contracts();
    let compute = crate::vm::contracts::compute().address;
    let no_plugins = crate::slot::Slots::default();
    let vm = crate::vm::Vm::shared();
    measure::compare(
        slot,
        7,
        || {
            std::hint::black_box(crate::vm::call_contract(
                &no_plugins,
                vm,
                &chain,
                &compute,
                200,
                1_000_000,
            ))
            .ok();
        },
        || {
            std::hint::black_box(crate::vm::call_contract(
                &host.slots,
                vm,
                &chain,
                &compute,
                200,
                1_000_000,
            ))
            .ok();
        },
    )
}

/// A host without the VM refuses `vm.*` providers at load, so there is nothing to measure.
#[cfg(not(feature = "vm"))]
fn vm_quick_ratio(_: &Host, slot: &str) -> measure::Comparison {
    unreachable!("{slot} providers do not load into a host without the contract VM")
}

/// 500 frames of 200 bytes to a peer over a Unix socket (drained by a thread), written by
/// the baseline and by the slot's provider.
fn frame_send_ratio(host: &Host, slot: &str) -> measure::Comparison {
    use std::io::Read;
    let (a, mut b) = std::os::unix::net::UnixStream::pair().expect("a socket pair");
    let drain = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while matches!(b.read(&mut buf), Ok(n) if n > 0) {}
    });
    let frames: Vec<Vec<u8>> = (0..500u32)
        .map(|i| [200u32.to_be_bytes().to_vec(), vec![i as u8; 200]].concat())
        .collect();
    let views: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
    let none = crate::slot::Slots::default();
    let c = measure::compare(
        slot,
        7,
        || {
            none.frame_send
                .send(&views, &mut &a)
                .expect("the socket takes it")
        },
        || {
            host.slots
                .frame_send
                .send(&views, &mut &a)
                .expect("the socket takes it")
        },
    );
    drop(a);
    let _ = drain.join();
    c
}

/// Selecting a block of 256 from 5,000 pending transactions of 500 senders, on the
/// baseline's index and on the provider's.
fn tx_pool_ratio(host: &Host, slot: &str) -> measure::Comparison {
    use dubchain_plugin_api::{
        slots::{HostNonces, PoolEntry},
        types::Bytes32,
    };
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let senders: Vec<Bytes32> = (0..500).map(|_| Bytes32(rng.gen())).collect();
    let entries: Vec<PoolEntry> = (0..5_000)
        .map(|i| PoolEntry {
            hash: Bytes32(rng.gen()),
            sender: senders[i % senders.len()],
            nonce: (i / senders.len()) as u64,
            fee: rng.gen_range(1..100),
        })
        .collect();
    let mut base = baseline::VecIndex::default();
    base.insert(&entries);
    let mut index = host
        .slots
        .tx_pool
        .new_index()
        .expect("the provider makes an index");
    let _ = index.insert(entries.as_slice().into());
    let zero = |_: &Bytes32| -> Result<u64, dubchain_plugin_api::PluginError> { Ok(0) };
    let source = HostNonces(zero);
    let index = std::sync::Mutex::new(index);
    measure::compare(
        slot,
        5,
        || drop(std::hint::black_box(base.select(256, &zero))),
        || {
            let mut ix = index.lock().expect("not poisoned");
            drop(std::hint::black_box(ix.select(256, source.as_source())));
        },
    )
}

/// Four threads recording 100 validators' votes for 50 heights, each vote followed by nine
/// reads of the finalized height (the catalogue's 9:1), on the baseline (one `Mutex`) and
/// on the provider's state.
fn consensus_state_ratio(host: &Host, slot: &str) -> measure::Comparison {
    use dubchain_plugin_api::types::Bytes32;
    let stakes: Vec<u64> = (1..=100).collect();
    let block = Bytes32([7; 32]);
    let run = |record: &(dyn Fn(u64, u32) + Sync), read: &(dyn Fn() -> u64 + Sync)| {
        std::thread::scope(|scope| {
            for t in 0..4u32 {
                scope.spawn(move || {
                    for h in 1..=50 {
                        for v in (t..100).step_by(4) {
                            record(h, v);
                            for _ in 0..9 {
                                std::hint::black_box(read());
                            }
                        }
                    }
                });
            }
        })
    };
    measure::compare(
        slot,
        5,
        || {
            let m = std::sync::Mutex::new(baseline::Tally::default());
            run(
                &|h, v| {
                    m.lock()
                        .expect("not poisoned")
                        .record(&stakes, h, &block, v);
                },
                &|| m.lock().expect("not poisoned").finalized(),
            );
        },
        || {
            let state = host
                .slots
                .consensus_state
                .new_tally(&stakes)
                .expect("the provider makes a state");
            run(
                &|h, v| {
                    let _ = state.record(h, &block, v);
                },
                &|| state.finalized().into_result().unwrap_or(0),
            );
        },
    )
}

/// 20,000 Zipf-distributed reads of 1,000 accounts whose records (JSON, as stored) sit in
/// memory: decoded on every read by the baseline, through the provider otherwise. (No
/// RocksDB here, so this is the decode half of the baseline's cost; `bench` measures the
/// node.)
/// 20,000 Zipfian reads of 1,000 accounts, on two RocksDB stores at the same state: one read
/// by the host (the baseline: RocksDB and a JSON record every read), one attached to the
/// slots, so every read goes through the provider with that store as `below`.
#[cfg(feature = "node")]
fn account_read_ratio(host: &Host, slot: &str) -> measure::Comparison {
    use crate::node::state::Account;
    use dubchain_plugin_api::types::Bytes32;
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let genesis: Vec<(Bytes32, Account)> = (0..1_000u64)
        .map(|i| {
            (
                Bytes32(rng.gen()),
                Account {
                    balance: 1_000 * (i + 1),
                    nonce: i,
                },
            )
        })
        .collect();
    let reads: Vec<Bytes32> = (0..20_000)
        .map(|_| {
            let u: f64 = rng.gen();
            genesis[((u.powf(4.0)) * genesis.len() as f64) as usize % genesis.len()].0
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("dubchain-verify-read-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let stores = [
        crate::perf::micro::scratch_store(&dir.join("baseline"), &genesis),
        crate::perf::micro::scratch_store(&dir.join("plugin"), &genesis),
    ];
    stores[1].attach(&host.slots);
    let read_all = |store: &crate::node::state::StateStore| {
        for a in &reads {
            std::hint::black_box(store.account(a).expect("the scratch store reads"));
        }
    };
    let c = measure::compare(slot, 7, || read_all(&stores[0]), || read_all(&stores[1]));
    drop(stores);
    let _ = std::fs::remove_dir_all(&dir);
    c
}

/// Without the node (a scaffolded plugin's bench): the same reads over an in-memory map of
/// JSON records, which makes every boundary crossing weigh more than on RocksDB.
#[cfg(not(feature = "node"))]
fn account_read_ratio(host: &Host, slot: &str) -> measure::Comparison {
    use dubchain_plugin_api::{exec::AccountState, types::Bytes32};
    use rand::{Rng, SeedableRng};
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Record {
        balance: u64,
        nonce: u64,
    }
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let accounts: Vec<Bytes32> = (0..1_000).map(|_| Bytes32(rng.gen())).collect();
    let stored: std::collections::HashMap<Bytes32, Vec<u8>> = accounts
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let r = Record {
                balance: i as u64 * 1_000,
                nonce: i as u64,
            };
            (*a, serde_json::to_vec(&r).expect("serialises"))
        })
        .collect();
    let reads: Vec<Bytes32> = (0..20_000)
        .map(|_| {
            let u: f64 = rng.gen();
            accounts[((u.powf(4.0)) * accounts.len() as f64) as usize % accounts.len()]
        })
        .collect();
    let read = |a: &Bytes32| -> AccountState {
        let r: Record = serde_json::from_slice(&stored[a]).expect("decodes");
        AccountState {
            balance: r.balance,
            nonce: r.nonce,
        }
    };
    measure::compare(
        slot,
        7,
        || {
            for a in &reads {
                std::hint::black_box(read(a));
            }
        },
        || {
            for a in &reads {
                std::hint::black_box(host.slots.account_read.get(
                    u64::MAX,
                    std::slice::from_ref(a),
                    |xs| Ok(xs.iter().map(read).collect()),
                ));
            }
        },
    )
}

/// Eight threads each committing 20 times to one log (a real file, written and fsynced):
/// every commit syncing itself (the baseline), or made durable by the provider.
fn durability_ratio(host: &Host, slot: &str) -> measure::Comparison {
    use std::io::Write;
    let path = std::env::temp_dir().join(format!("dubchain-verify-sync-{}", std::process::id()));
    let file = std::sync::Mutex::new(std::fs::File::create(&path).expect("a temporary file"));
    let sync = || -> Result<(), String> {
        let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(b"commit\n")
            .and_then(|()| f.sync_all())
            .map_err(|e| e.to_string())
    };
    let committers = |commit: &(dyn Fn() + Sync)| {
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..20 {
                        commit();
                    }
                });
            }
        })
    };
    let c = measure::compare(
        slot,
        5,
        || committers(&|| sync().expect("the file syncs")),
        || {
            committers(&|| {
                host.slots
                    .durability
                    .make_durable(u64::MAX, sync)
                    .expect("the file syncs")
            })
        },
    );
    let _ = std::fs::remove_file(&path);
    c
}

/// 3,000 frames of 200 bytes (one in ten consensus) pushed in batches of 30 while a writer
/// thread pops them: through the baseline's FIFO, and through the provider's queue.
fn send_queue_ratio(host: &Host, slot: &str) -> measure::Comparison {
    use abi_stable::std_types::{RArc, RVec};
    use dubchain_plugin_api::slots::{Outgoing, Popped, TrafficClass};
    let batch: Vec<Outgoing> = (0..30)
        .map(|i| Outgoing {
            class: if i % 10 == 0 {
                TrafficClass::Consensus
            } else {
                TrafficClass::Gossip
            },
            frame: RArc::new(RVec::from(vec![i as u8; 200])),
        })
        .collect();
    let run = |push: &(dyn Fn(Vec<Outgoing>) + Sync),
               pop: &(dyn Fn() -> Popped + Sync),
               close: &dyn Fn()| {
        std::thread::scope(|scope| {
            let consumer = scope.spawn(|| loop {
                if let Popped::Closed = pop() {
                    return;
                }
            });
            for _ in 0..100 {
                push(batch.clone());
            }
            close();
            let _ = consumer.join();
        })
    };
    measure::compare(
        slot,
        7,
        || {
            let q = baseline::FifoQueue::default();
            run(
                &|f| q.push(f),
                &|| q.pop(256, std::time::Duration::from_millis(10)),
                &|| q.close(),
            );
        },
        || {
            let q = host
                .slots
                .send_queue
                .new_queue(1)
                .expect("the provider makes a queue");
            run(
                &|f| {
                    let _ = q.push(f.into());
                },
                &|| q.pop(256, 10).into_result().unwrap_or(Popped::Closed),
                &|| {
                    let _ = q.close();
                },
            );
        },
    )
}

/// Four nodes on loopback; one broadcasts a block's worth of transaction gossip and the
/// other three receive all of it: with the host's threads, and with the provider's I/O.
#[cfg(feature = "node")]
fn transport_ratio(host: &Host, slot: &str) -> measure::Comparison {
    use crate::node::net::{self, Message};
    let msgs: Vec<Message> = workload::transactions(1, 1, 256)
        .into_iter()
        .map(Message::Tx)
        .collect();
    let run = |slots: &crate::slot::Slots| {
        let nodes = net::mesh(&[slots; 4]).expect("loopback connections");
        nodes[0].0.broadcast(slots, &msgs);
        for (_, inbox) in &nodes[1..] {
            for _ in 0..msgs.len() {
                inbox
                    .recv_timeout(std::time::Duration::from_secs(10))
                    .expect("every frame arrives");
            }
        }
        for (network, _) in nodes {
            network.shutdown();
        }
    };
    let none = crate::slot::Slots::default();
    measure::compare(slot, 5, || run(&none), || run(&host.slots))
}

/// `plugin verify` is a command of `dubchain-perf`, which is built with the node.
#[cfg(not(feature = "node"))]
fn transport_ratio(_: &Host, slot: &str) -> measure::Comparison {
    unreachable!("{slot}: measuring a transport needs the node's network (feature `node`)")
}

/// The micro suite's contract case of `slot`, on a real RocksDB store (`exec.block_execution`:
/// a block of transfers executed and written; `storage.commit`: a block's writes committed),
/// interleaved with the block rolled back outside the timed region.
#[cfg(feature = "node")]
fn store_case_ratio(host: &Host, slot: &str) -> measure::Comparison {
    use crate::perf::micro::{self, MicroOptions};
    let o = MicroOptions {
        rounds: 7,
        ..MicroOptions::default()
    };
    let case = micro::cases(slot, &o)
        .into_iter()
        .find(|c| c.contract)
        .expect("every store slot has a contract case");
    let r = micro::measure_case(slot, slot, &case, host, None, None, &o);
    measure::Comparison {
        name: slot.to_owned(),
        rounds: r.rounds,
        baseline_s: r.baseline_s,
        optimized_s: r.plugin_s,
        ratio: r.ratio,
    }
}

/// `plugin verify` is a command of `dubchain-perf`, which is built with the node.
#[cfg(not(feature = "node"))]
fn store_case_ratio(_: &Host, slot: &str) -> measure::Comparison {
    unreachable!("{slot}: measuring it needs the node's state store (feature `node`)")
}

fn quick_ratio(host: &Host, slot: &str, m: &Manifest) -> String {
    let c = slot_ratio(host, slot);
    let promise = m.contract.as_ref().map_or(String::new(), |c| {
        format!("; the manifest promises >= {}x", c.min_speedup)
    });
    format!(
        "{:.2}x ({:.2}-{:.2}) against the baseline{promise}",
        c.ratio.median, c.ratio.low, c.ratio.high
    )
}

/// `plugin verify`'s quick ratio of `slot`: its workload on the baseline and through
/// `host`'s slot, interleaved (7 rounds). Public for scaffolded plugins' benches, which
/// install their provider on a host of their own.
pub fn slot_ratio(host: &Host, slot: &str) -> measure::Comparison {
    if slot == SIG_VERIFY.id {
        let set = workload::signature_set(1, 512, false);
        let items = set.items();
        measure::compare(
            slot,
            7,
            || drop(baseline::sig_verify(&items)),
            || drop(host.slots.sig_verify.verify_batch(&items)),
        )
    } else if slot == VOTE_VERIFY.id {
        let set = workload::vote_set(1, 100, false);
        let items = set.items();
        measure::compare(
            slot,
            7,
            || drop(baseline::verify_votes(&items)),
            || drop(host.slots.vote_verify.verify_votes(&items)),
        )
    } else if slot == TX_VALIDATION.id {
        let txs = workload::tx_batch(1, 512, false);
        measure::compare(
            slot,
            7,
            || {
                std::hint::black_box(baseline::validate_txs(&txs));
            },
            || {
                std::hint::black_box(host.slots.tx_validation.validate(&txs));
            },
        )
    } else if slot == BLOCK_VALIDATION.id {
        let (height, hash, blocks, _) = workload::block_run(1, 16, 64, false);
        measure::compare(
            slot,
            5,
            || {
                std::hint::black_box(baseline::check_run(height, &hash, &blocks));
            },
            || {
                std::hint::black_box(
                    host.slots
                        .block_validation
                        .check_run(height, &hash, &blocks),
                );
            },
        )
    } else if slot == BLOCK_EXECUTION.id {
        store_case_ratio(host, slot)
    } else if [
        CODE_LOADER.id,
        METERING.id,
        MODULE_CACHE.id,
        CONTRACT_STATE.id,
    ]
    .contains(&slot)
    {
        vm_quick_ratio(host, slot)
    } else if slot == BLOCK_RECLAIM.id {
        let (_, _, blocks, _) = workload::block_run(1, 8, 256, false);
        measure::compare(
            slot,
            7,
            || drop(std::hint::black_box(blocks.clone())),
            || {
                host.slots
                    .block_reclaim
                    .reclaim(std::hint::black_box(blocks.clone()))
            },
        )
    } else if slot == BUFFER_POOL.id {
        let fill = |mut b: abi_stable::std_types::RVec<u8>| {
            b.extend_from_slice(&[7; 512]);
            b
        };
        measure::compare(
            slot,
            7,
            || {
                for _ in 0..2_000 {
                    drop(std::hint::black_box(fill(
                        abi_stable::std_types::RVec::with_capacity(65_536),
                    )));
                }
            },
            || {
                for _ in 0..2_000 {
                    let b = fill(host.slots.buffer_pool.take(65_536));
                    host.slots.buffer_pool.give(std::hint::black_box(b));
                }
            },
        )
    } else if slot == FRAME_SEND.id {
        frame_send_ratio(host, slot)
    } else if slot == TX_POOL.id {
        tx_pool_ratio(host, slot)
    } else if slot == CONSENSUS_STATE.id {
        consensus_state_ratio(host, slot)
    } else if slot == ACCOUNT_READ.id {
        account_read_ratio(host, slot)
    } else if slot == DURABILITY.id {
        durability_ratio(host, slot)
    } else if slot == BROADCAST.id {
        // A block's worth of transaction gossip to 16 peers.
        let msgs: Vec<dubchain_plugin_api::wire::Message> = workload::transactions(1, 1, 256)
            .into_iter()
            .map(dubchain_plugin_api::wire::Message::Tx)
            .collect();
        measure::compare(
            slot,
            7,
            || {
                let lists: Vec<Vec<Vec<u8>>> = (0..16)
                    .map(|_| msgs.iter().map(dubchain_plugin_api::wire::frame).collect())
                    .collect();
                drop(std::hint::black_box(lists));
            },
            || drop(std::hint::black_box(host.slots.broadcast.frames(&msgs, 16))),
        )
    } else if slot == SEND_QUEUE.id {
        send_queue_ratio(host, slot)
    } else if slot == TRANSPORT.id {
        transport_ratio(host, slot)
    } else if slot == BLOCK_COMMIT.id {
        store_case_ratio(host, slot)
    } else if slot == TX_DECODE.id {
        let payloads: Vec<Vec<u8>> = workload::transactions(1, 8, 256)
            .iter()
            .map(|t| serde_json::to_vec(t).expect("transactions serialise"))
            .collect();
        let views: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
        measure::compare(
            slot,
            7,
            || drop(std::hint::black_box(baseline::decode_txs(&views))),
            || drop(std::hint::black_box(host.slots.tx_decode.decode(&views))),
        )
    } else if slot == MERKLE.id {
        let tree = workload::merkle_trees(1, &[4096]).pop().expect("one tree");
        measure::compare(
            slot,
            7,
            || {
                std::hint::black_box(baseline::merkle_root(&tree));
            },
            || {
                std::hint::black_box(host.slots.merkle.root(&tree));
            },
        )
    } else {
        let records = workload::records(1, 8, 64);
        measure::compare(
            slot,
            7,
            || drop(baseline::encode_records(&records)),
            || drop(host.slots.record_codec.encode(&records)),
        )
    }
}
