//! Quick ratios, node-free: for each slot, one workload run on the baseline and through a
//! host's slot, interleaved by [`measure::compare`]. `plugin verify` and a scaffolded
//! plugin's `cargo bench` print these. A slot the bench suite has cases for
//! ([`crate::cases`]) is measured on its contract case, at [`MicroOptions::quick`] sizes: the
//! figure is `bench`'s workload. Every other slot has one quick-ratio workload here
//! ([`RATIOS`]). `storage.account_read` has a second figure in `dubchain_instruments`, on
//! RocksDB (the bench case of `micro`; here: in memory, for plugins' own benches, which do
//! not build the node).

use dubchain_plugin_api::slots::*;

use crate::{
    baseline,
    cases::{self, MicroOptions},
    measure, Host,
};

type Ratio = fn(&Host, &str) -> measure::Comparison;

/// The quick-ratio workload of each slot that needs no node and has no bench case, keyed
/// by slot.
pub const RATIOS: &[(SlotInfo, Ratio)] = &[
    (CODE_LOADER, vm_quick_ratio),
    (METERING, vm_quick_ratio),
    (MODULE_CACHE, vm_quick_ratio),
    (CONTRACT_STATE, vm_quick_ratio),
    (ACCOUNT_READ, account_read_ratio),
    (SEND_QUEUE, send_queue_ratio),
];

/// The quick ratio of `slot` through `host`'s slot (interleaved rounds): its bench contract
/// case where it has one, else its [`RATIOS`] workload; `None` for a slot measured only on the node.
pub fn slot_ratio(host: &Host, slot: &str) -> Option<measure::Comparison> {
    if let Some((c, _)) = cases::measure_contract(host, slot, &MicroOptions::quick()) {
        return Some(c);
    }
    RATIOS
        .iter()
        .find(|(info, _)| info.id == slot)
        .map(|(_, ratio)| ratio(host, slot))
}

/// `rounds` interleaved rounds of `baseline` against `plugin`; what each returns is kept
/// from the optimiser and then dropped.
#[cfg(feature = "vm")]
fn timed<T, U>(
    slot: &str, rounds: usize, mut baseline: impl FnMut() -> T, mut plugin: impl FnMut() -> U,
) -> measure::Comparison {
    measure::compare(
        slot,
        rounds,
        || drop(std::hint::black_box(baseline())),
        || drop(std::hint::black_box(plugin())),
    )
}

/// A whole call of the compute contract, through every `vm.*` slot, with and without the
/// plugin.
#[cfg(feature = "vm")]
fn vm_quick_ratio(host: &Host, slot: &str) -> measure::Comparison {
    let chain = crate::vm::MemoryChain::with_genesis_contracts();
    let compute = crate::vm::contracts::compute().address;
    let no_plugins = crate::slot::Slots::default();
    let vm = crate::vm::Vm::shared();
    let call = |slots| crate::vm::call_contract(slots, vm, &chain, &compute, 200, 1_000_000).ok();
    timed(slot, 7, || call(&no_plugins), || call(&host.slots))
}

/// A host without the VM refuses `vm.*` providers at load, so there is nothing to measure.
#[cfg(not(feature = "vm"))]
fn vm_quick_ratio(_: &Host, slot: &str) -> measure::Comparison {
    unreachable!("{slot} providers do not load into a host without the contract VM")
}

/// Batches of 30 frames the send-queue workload's producer pushes.
const QUEUE_PUSHES: usize = 1_000;

/// 20,000 Zipf-distributed reads of 1,000 accounts whose records (JSON, as stored) sit in
/// memory: decoded on every read by the baseline, through the provider otherwise. No RocksDB
/// here (a scaffolded plugin's bench does not build it), so every boundary crossing weighs
/// more than on the node; `plugin verify` and `bench` time this slot on RocksDB
/// (`dubchain_instruments::verify`).
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
                let mut got = [AccountState::default()];
                let read_into = |xs: &[Bytes32], out: &mut [AccountState]| {
                    for (x, o) in xs.iter().zip(out) {
                        *o = read(x);
                    }
                    Ok(())
                };
                if !host.slots.account_read.read_into(
                    u64::MAX,
                    std::slice::from_ref(a),
                    &mut got,
                    read_into,
                ) {
                    got[0] = read(a);
                }
                std::hint::black_box(got);
            }
        },
    )
}

/// 30,000 frames of 200 bytes (one in ten consensus) pushed in batches of 30, each batch
/// popped at once by the same thread: through the baseline's FIFO, and through the
/// provider's queue. One thread, no waiting: with a producer and a writer thread on 2 cores
/// the run's time is the scheduler's, and the ratio ranged from 0.6x to 1.4x between runs.
/// (The catalogue judges a backpressure plugin on memory and latency under a slow peer, in
/// its own benchmark; this is the cost of the seam.)
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
    let run = |push: &dyn Fn(Vec<Outgoing>), pop: &dyn Fn() -> Popped| {
        for _ in 0..QUEUE_PUSHES {
            push(batch.clone());
            let mut left = batch.len();
            while left > 0 {
                match pop() {
                    Popped::Frames(f) => left = left.saturating_sub(f.len()),
                    Popped::Idle | Popped::Closed => break,
                }
            }
        }
    };
    measure::compare(
        slot,
        cases::CONTENDED_ROUNDS,
        || {
            let q = baseline::FifoQueue::default();
            run(&|f| q.push(f), &|| q.pop(256, std::time::Duration::ZERO));
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
                &|| q.pop(256, 0).into_result().unwrap_or(Popped::Closed),
            );
        },
    )
}
