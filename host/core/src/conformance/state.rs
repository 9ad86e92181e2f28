//! Suites of the slots that keep state between calls: the seeded drivers of the self-tests
//! at other seeds and several times their length, and generated scripts of reads, writes
//! and rollbacks for the two read caches, each step checked against a model of the store.

use std::{collections::HashMap, hash::Hash, sync::Mutex};

use dubchain_plugin_api::{
    exec::{AccountEntry, AccountState},
    slots::{ContractWrite, HostFn},
    types::Bytes32,
    PluginError,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::{outcome, CaseResult};
use crate::{
    selftest::Depth,
    slot::{Provider, Slot},
    Host,
};

/// The seeds each seeded suite runs (the self-test at load runs seed 0).
const SEEDS: [u64; 4] = [0x51, 0x52, 0x53, 0x54];

/// `check` on the top provider of `slot`, at each of [`SEEDS`] with `scale` times the
/// self-test's work: one case per seed, named after `what`.
pub fn seeded<B>(
    slot: &Slot<B>, what: &str, scale: usize, check: fn(&B, Depth) -> Result<(), String>,
) -> Vec<CaseResult> {
    let providers = slot.providers();
    let Some(top) = providers.last() else {
        return Vec::new();
    };
    let top: &Provider<B> = top;
    SEEDS
        .iter()
        .map(|&seed| {
            outcome(
                format!("{what}, seed {seed:#x}, {scale}x the self-test's length"),
                check(&top.imp, Depth { seed, scale }),
            )
        })
        .collect()
}

/// Contract values worth trying: small, negative, the extremes, and 0 (a delete).
fn awkward_value(rng: &mut ChaCha20Rng) -> i64 {
    match rng.gen_range(0..8) {
        0 => 0,
        1 => i64::MIN,
        2 => i64::MAX,
        3 => -1,
        _ => rng.gen_range(-1_000..1_000),
    }
}

/// `vm.contract_state` through the host's slot: for each seed, 3,000 steps over three stores
/// of four contracts (keys -3..12, the extremes among them): reads (some repeated at
/// once), announced write batches (deletes and extreme values among them), and rollbacks
/// (the store's contents go back to an earlier snapshot, then `reset`), every read checked
/// against the store.
pub fn check_contract_state(host: &Host) -> Vec<CaseResult> {
    SEEDS
        .iter()
        .map(|&seed| {
            outcome(
                format!("reads, writes and rollbacks of 3 stores, seed {seed:#x}"),
                contract_state_script(host, seed),
            )
        })
        .collect()
}

/// A rollback of `store` in a model of several stores: its contents return to those it had
/// in one of `snapshots` (empty when none was taken). The other stores keep theirs.
fn roll_back<K: Eq + Hash + Clone, V: Clone>(
    model: &Mutex<HashMap<(u64, K), V>>, snapshots: &[HashMap<(u64, K), V>], rng: &mut ChaCha20Rng,
    store: u64,
) {
    let earlier = match snapshots.len() {
        0 => HashMap::new(),
        n => snapshots[rng.gen_range(0..n)].clone(),
    };
    let mut m = model.lock().unwrap_or_else(|p| p.into_inner());
    m.retain(|(s, _), _| *s != store);
    m.extend(earlier.into_iter().filter(|((s, _), _)| *s == store));
}

/// The driver the two scripts share: `steps` steps, each on one of three stores of this
/// seed's own (a provider keeps what it learnt of other stores): 12 in 20 a read (`read`,
/// checked by the caller), 6 a write batch (`write`, which updates `model` and announces
/// it), 1 a snapshot of `model`, and 1 a rollback (`model` back to a snapshot, then `reset`).
fn script<K: Eq + Hash + Clone, V: Clone>(
    seed: u64, steps: u32, model: &Mutex<HashMap<(u64, K), V>>,
    mut read: impl FnMut(&mut ChaCha20Rng, u32, u64) -> Result<(), String>,
    mut write: impl FnMut(&mut ChaCha20Rng, u64), reset: impl Fn(u64),
) -> Result<(), String> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut snapshots = Vec::new();
    for step in 0..steps {
        let store = seed * 16 + rng.gen_range(1..=3u64);
        match rng.gen_range(0..20) {
            0..=11 => read(&mut rng, step, store)?,
            12..=17 => write(&mut rng, store),
            18 => snapshots.push(model.lock().unwrap_or_else(|p| p.into_inner()).clone()),
            _ => {
                roll_back(model, &snapshots, &mut rng, store);
                reset(store);
            }
        }
    }
    Ok(())
}

type ContractModel = HashMap<(u64, (Bytes32, i64)), i64>;

fn contract_state_script(host: &Host, seed: u64) -> Result<(), String> {
    let contracts: Vec<Bytes32> = (0..4).map(|i| Bytes32([0x40 + i; 32])).collect();
    let keys: Vec<i64> = (-3..12).chain([i64::MIN, i64::MAX]).collect();
    let model: Mutex<ContractModel> = Mutex::new(HashMap::new());
    let held = |store: u64, c: &Bytes32, k: i64| -> i64 {
        *model
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(store, (*c, k)))
            .unwrap_or(&0)
    };
    let read = |rng: &mut ChaCha20Rng, step: u32, store: u64| -> Result<(), String> {
        let c = contracts[rng.gen_range(0..contracts.len())];
        let k = keys[rng.gen_range(0..keys.len())];
        let below = HostFn(|c: &Bytes32, k: i64| Ok::<i64, PluginError>(held(store, c, k)));
        for read in 0..rng.gen_range(1..=2) {
            let got = host
                .slots
                .contract_state
                .get(store, &c, k, below.as_store())
                .ok_or_else(|| format!("step {step}: the plugin did not answer"))?;
            let want = held(store, &c, k);
            if got != want {
                return Err(format!(
                    "step {step}, read {read} of store {store}, contract {:02x}.., key {k}: the store holds {want}, the plugin says {got}",
                    c.0[0]
                ));
            }
        }
        Ok(())
    };
    let write = |rng: &mut ChaCha20Rng, store: u64| {
        let writes: Vec<ContractWrite> = (0..rng.gen_range(1..=5))
            .map(|_| ContractWrite {
                contract: contracts[rng.gen_range(0..contracts.len())],
                key: keys[rng.gen_range(0..keys.len())],
                value: awkward_value(rng),
            })
            .collect();
        let mut m = model.lock().unwrap_or_else(|p| p.into_inner());
        for w in &writes {
            match w.value {
                0 => m.remove(&(store, (w.contract, w.key))),
                v => m.insert((store, (w.contract, w.key)), v),
            };
        }
        drop(m);
        host.slots.contract_state.written(store, &writes);
    };
    script(seed, 3_000, &model, read, write, |store| {
        host.slots.contract_state.reset(store)
    })
}

/// `storage.account_read` through the host's slot: for each seed, 2,000 steps over three
/// stores of 40 accounts: batched reads (empty batches, duplicates within a batch, accounts
/// never written), announced writes (zero and extreme balances and nonces among them), and
/// rollbacks (contents back to an earlier snapshot, then `reset`), every answer checked
/// against the store.
pub fn check_account_read(host: &Host) -> Vec<CaseResult> {
    SEEDS
        .iter()
        .map(|&seed| {
            outcome(
                format!("batched reads, writes and rollbacks of 3 stores, seed {seed:#x}"),
                account_read_script(host, seed),
            )
        })
        .collect()
}

type AccountModel = HashMap<(u64, Bytes32), AccountState>;

fn account_read_script(host: &Host, seed: u64) -> Result<(), String> {
    let accounts: Vec<Bytes32> = (0..40u8).map(|i| Bytes32([i; 32])).collect();
    let model: Mutex<AccountModel> = Mutex::new(HashMap::new());
    let held = |store: u64, a: &Bytes32| -> AccountState {
        model
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(store, *a))
            .copied()
            .unwrap_or_default()
    };
    let extreme = |rng: &mut ChaCha20Rng| match rng.gen_range(0..6) {
        0 => 0,
        1 => u64::MAX,
        _ => rng.gen_range(1..1_000_000),
    };
    let read = |rng: &mut ChaCha20Rng, step: u32, store: u64| -> Result<(), String> {
        let batch: Vec<Bytes32> = (0..rng.gen_range(0..12))
            .map(|_| accounts[rng.gen_range(0..accounts.len())])
            .collect();
        let want: Vec<AccountState> = batch.iter().map(|a| held(store, a)).collect();
        let got = host
            .slots
            .account_read
            .get(
                store,
                &batch,
                |asked: &[Bytes32], out: &mut [AccountState]| {
                    for (a, o) in asked.iter().zip(out) {
                        *o = held(store, a);
                    }
                    Ok(())
                },
            )
            .ok_or_else(|| format!("step {step}: the plugin did not answer"))?;
        match (0..want.len()).find(|&i| got.get(i) != Some(&want[i])) {
            Some(i) => Err(format!(
                "step {step}, read of store {store}, account {:02x}..: the store holds {:?}, the plugin says {:?}",
                batch[i].0[0],
                want[i],
                got.get(i)
            )),
            None => Ok(()),
        }
    };
    let write = |rng: &mut ChaCha20Rng, store: u64| {
        let writes: Vec<AccountEntry> = (0..rng.gen_range(1..=6))
            .map(|_| AccountEntry {
                account: accounts[rng.gen_range(0..accounts.len())],
                state: AccountState {
                    balance: extreme(rng),
                    nonce: extreme(rng),
                },
            })
            .collect();
        let mut m = model.lock().unwrap_or_else(|p| p.into_inner());
        for w in &writes {
            m.insert((store, w.account), w.state);
        }
        drop(m);
        host.slots.account_read.written(store, &writes);
    };
    script(seed, 2_000, &model, read, write, |store| {
        host.slots.account_read.reset(store)
    })
}
