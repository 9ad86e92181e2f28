//! Known-answer self-tests run on every slot object before it is installed, in the manner
//! of the Linux kernel's crypto API: a fast implementation must agree with the generic one
//! on a small fixed set of inputs, including adversarial ones, or it is not registered.

use dubchain_plugin_api::{
    slots::{
        AccountReadBox, BlockCommitBox, BlockExecutionBox, BlockReclaimBox, BlockValidationBox,
        BroadcastBox, BufferPoolBox, DurabilityBox, FrameSendBox, LowerFn, MerkleBox,
        RecordCodecBox, SendQueuesBox, SigVerifyBox, StateRootBox, TransportBox, TxDecodeBox,
        TxPoolBox, TxValidationBox, VoteTalliesBox, VoteVerifyBox,
    },
    types::{Bytes32, Record, SigItem},
};

use crate::{baseline, workload};

/// An in-process provider as the host holds one: `boxed!(TxPoolFfi_TO, imp)` is
/// `TxPoolFfi_TO::from_value(Guarded(imp), TD_Opaque)` (the tests' seam providers).
/// The self-test `check` passes `good` and refuses `bad` with an error that says `why`.
#[cfg(test)]
fn passes_then_refuses<B>(check: fn(&B) -> Result<(), String>, good: B, bad: B, why: &str) {
    check(&good).unwrap();
    let err = check(&bad).unwrap_err();
    assert!(err.contains(why), "{err}");
}

#[cfg(test)]
macro_rules! boxed {
    ($to:ident, $imp:expr) => {
        $to::from_value(
            dubchain_plugin_api::slots::Guarded($imp),
            abi_stable::sabi_trait::TD_Opaque,
        )
    };
}

/// How hard a seeded check drives a provider. The self-test at load runs [`Depth::LOAD`];
/// the conformance suite ([`crate::conformance`]) runs the same drivers at other seeds and
/// several times longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Depth {
    /// Mixed into the check's own seed (0: the load-time sequence).
    pub seed: u64,
    /// How many times the load-time amount of work (at least 1).
    pub scale: usize,
}

impl Depth {
    /// The self-test's own sequence and size.
    pub const LOAD: Depth = Depth { seed: 0, scale: 1 };
}

/// Takes store `id`'s contents out of a checker's model of several stores (empty if it held
/// none): what a rolled-back store held, for the store that takes its place.
fn take_store<V: Default>(
    stores: &std::sync::Mutex<std::collections::HashMap<u64, V>>, id: u64,
) -> V {
    stores
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id)
        .unwrap_or_default()
}

/// Checks a `crypto.sig_verify` object against the baseline on valid, invalid and
/// adversarial signatures. The object is given the baseline as its layer below.
pub fn sig_verify(imp: &SigVerifyBox) -> Result<(), String> {
    let set = workload::signature_set(0x5e1f_7e57, 24, true);
    let items = set.items();
    let expected = baseline::sig_verify(&items);
    let lower = LowerFn(|xs: &[SigItem<'_>]| Ok(baseline::sig_verify(xs)));
    let got = imp
        .verify_batch(items.as_slice().into(), lower.as_ffi())
        .into_result()
        .map_err(|e| e.to_string())?;
    if got.as_slice() != expected.as_slice() {
        let first = expected
            .iter()
            .zip(got.iter())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        return Err(format!(
            "item {first} ({}): baseline says {}, plugin says {:?}",
            set.labels[first],
            expected[first],
            got.get(first)
        ));
    }
    Ok(())
}

/// Checks a `storage.record_codec` object: its own round trip, and that it reads the
/// baseline's JSON records as the baseline does.
pub fn record_codec(imp: &RecordCodecBox) -> Result<(), String> {
    let records: Vec<Record> = workload::records(0xc0_dec, 3, 4);
    let decode = |values: &[Vec<u8>]| {
        let slices: Vec<_> = values.iter().map(|v| v.as_slice().into()).collect();
        imp.decode(slices.as_slice().into())
            .into_result()
            .map_err(|e| e.to_string())
    };
    let encoded = imp
        .encode(records.as_slice().into())
        .into_result()
        .map_err(|e| e.to_string())?;
    let encoded: Vec<Vec<u8>> = encoded.into_iter().map(|v| v.into_vec()).collect();
    for (i, (d, r)) in decode(&encoded)?.into_iter().zip(&records).enumerate() {
        match d.into_result() {
            Ok(d) if &d == r => {}
            Ok(_) => return Err(format!("record {i} does not survive its own round trip")),
            Err(e) => return Err(format!("record {i} cannot be read back: {e}")),
        }
    }
    let json = baseline::encode_records(&records);
    for (i, (d, r)) in decode(&json)?.into_iter().zip(&records).enumerate() {
        if d.into_result().ok().as_ref() != Some(r) {
            return Err(format!(
                "baseline JSON record {i} is not read as the baseline reads it"
            ));
        }
    }
    Ok(())
}

/// Checks a `consensus.vote_verify` object against the baseline on valid and bad votes,
/// including the pair whose plain aggregate verifies while neither vote does.
pub fn vote_verify(imp: &VoteVerifyBox) -> Result<(), String> {
    let set = workload::vote_set(0x05e1_fb15, 24, true);
    let items = set.items();
    let expected = baseline::verify_votes(&items);
    let got = imp
        .verify_votes(items.as_slice().into())
        .into_result()
        .map_err(|e| e.to_string())?;
    first_difference(&expected, &got, &set.labels)
}

/// Checks a `crypto.merkle` object against the baseline on trees of 0 to 9, 33 and 64
/// leaves, in one batch.
pub fn merkle(imp: &MerkleBox) -> Result<(), String> {
    let sizes: Vec<usize> = (0..=9).chain([33, 64]).collect();
    let trees = workload::merkle_trees(0x3e_4c1e, &sizes);
    let slices: Vec<abi_stable::std_types::RSlice<'_, Bytes32>> =
        trees.iter().map(|t| t.as_slice().into()).collect();
    let got = imp
        .roots(slices.as_slice().into())
        .into_result()
        .map_err(|e| e.to_string())?;
    let expected: Vec<Bytes32> = trees.iter().map(|t| baseline::merkle_root(t)).collect();
    let labels: Vec<String> = sizes
        .iter()
        .map(|n| format!("tree of {n} leaves"))
        .collect();
    first_difference(&expected, &got, &labels)
}

fn first_difference<T: PartialEq + std::fmt::Debug, L: std::fmt::Display>(
    expected: &[T], got: &[T], labels: &[L],
) -> Result<(), String> {
    if got.len() != expected.len() {
        return Err(format!(
            "{} answers for {} inputs",
            got.len(),
            expected.len()
        ));
    }
    match expected.iter().zip(got).position(|(a, b)| a != b) {
        None => Ok(()),
        Some(i) => Err(format!(
            "item {i} ({}): baseline says {:?}, plugin says {:?}",
            labels[i], expected[i], got[i]
        )),
    }
}

/// Checks an `exec.block_execution` object against the baseline on a block with every
/// kind of failing and conflicting transfer.
pub fn block_execution(imp: &BlockExecutionBox) -> Result<(), String> {
    for (seed, conflict) in [(1, 0.1), (2, 0.9)] {
        let b = workload::transfer_block(0xe7ec + seed, 40, 120, conflict, true);
        let expected = baseline::execute_block(&b.pre, &b.txs, &b.proposer);
        let got = crate::slot::execute_in_memory(imp, &b.pre, &b.txs, &b.proposer)
            .map_err(|e| e.to_string())?;
        first_difference(&expected.results, &got.results, &b.labels)?;
        if got.state != expected.state {
            let at = got
                .state
                .iter()
                .zip(&expected.state)
                .position(|(a, b)| a != b);
            return Err(format!(
                "same results, different final state ({} accounts, the baseline's {}; first difference at {at:?})",
                got.state.len(),
                expected.state.len()
            ));
        }
    }
    Ok(())
}

/// Checks a `consensus.block_validation` object against the baseline on a run with every
/// kind of faulty block.
pub fn block_validation(imp: &BlockValidationBox) -> Result<(), String> {
    let (height, hash, blocks, labels) = workload::block_run(0xb10c_7e57, 24, 6, true);
    let expected = baseline::check_run(height, &hash, &blocks);
    let got = imp
        .check_run(height, &hash, blocks.as_slice().into())
        .into_result()
        .map_err(|e| e.to_string())?;
    first_difference(&expected, &got, &labels)
}

/// Checks an `exec.tx_validation` object against the baseline on a batch with every kind
/// of faulty transaction.
pub fn tx_validation(imp: &TxValidationBox) -> Result<(), String> {
    let txs = workload::tx_batch(0x7a11d, 200, true);
    let expected = baseline::validate_txs(&txs);
    let got = imp
        .validate(txs.as_slice().into())
        .into_result()
        .map_err(|e| e.to_string())?;
    let labels: Vec<String> = (0..txs.len()).map(|i| format!("transaction {i}")).collect();
    first_difference(&expected, &got, &labels)
}

/// Without the contract VM (feature `vm`) a host cannot check `vm.*` providers, and
/// refuses them.
#[cfg(not(feature = "vm"))]
mod vm_checks {
    use dubchain_plugin_api::slots::{
        CodeLoaderBox, ContractStateBox, MeteringBox, ModuleCacheBox,
    };

    fn refused(slot: &str) -> Result<(), String> {
        Err(format!(
            "this host is built without the contract VM (feature `vm`), so it cannot check a {slot} provider"
        ))
    }
    pub fn metering(_: &MeteringBox) -> Result<(), String> {
        refused("vm.metering")
    }
    pub fn module_cache(_: &ModuleCacheBox) -> Result<(), String> {
        refused("vm.module_cache")
    }
    pub fn code_loader(_: &CodeLoaderBox) -> Result<(), String> {
        refused("vm.code_loader")
    }
    pub fn contract_state(_: &ContractStateBox) -> Result<(), String> {
        refused("vm.contract_state")
    }
}

/// The `vm.*` self-tests: known answers of the host's VM.
#[cfg(feature = "vm")]
mod vm_checks {
    use dubchain_plugin_api::{
        slots::{CodeLoaderBox, CodeSourceRef, ContractStateBox, MeteringBox, ModuleCacheBox},
        types::Bytes32,
    };

    use crate::vm::check;

    /// Checks a `vm.metering` object: every test module metered by it and run by the host
    /// must give the baseline's result, writes and gas for every input, at ample gas, at
    /// exactly the gas needed, one unit short of it (out of gas at the same point), and at
    /// very little.
    pub fn metering(imp: &MeteringBox) -> Result<(), String> {
        check::metered_calls(&check::test_modules(), check::around, |code| {
            imp.instrument(code.into())
                .into_result()
                .map_err(|e| e.to_string())
        })
    }

    /// Checks a `vm.module_cache` object: every test module (metered the baseline way) run by
    /// it must give what the host's own run gives, at the same gas limits as [`metering`], and
    /// again when it has seen the module before.
    pub fn module_cache(imp: &ModuleCacheBox) -> Result<(), String> {
        check::cached_calls(&check::test_modules(), check::around, |request, store| {
            imp.run(request, store)
                .into_result()
                .map_err(|e| e.to_string())
        })
    }

    /// Checks a `vm.code_loader` object: valid, invalid, undecodable and missing code, asked
    /// twice, and an address whose code changed (a rolled-back deploy redone), must give the
    /// baseline's answers.
    pub fn code_loader(imp: &CodeLoaderBox) -> Result<(), String> {
        let load = |contract: &Bytes32, hash: &Bytes32, source: CodeSourceRef<'_>| {
            imp.load(contract, hash, source)
                .into_result()
                .map_err(|e| e.to_string())
        };
        for (i, (name, code)) in check::stored_codes().iter().enumerate() {
            check::loads(&Bytes32([i as u8 + 1; 32]), code, load)
                .map_err(|e| format!("{name}: {e}"))?;
        }
        check::redeploy(load)
    }

    /// Checks a `vm.contract_state` object: reads of two stores with different contents, writes
    /// announced one by one, a rollback (`reset`, then a new identity) must all read what the
    /// store holds.
    pub fn contract_state(imp: &ContractStateBox) -> Result<(), String> {
        use dubchain_plugin_api::slots::{ContractWrite, HostFn};
        use std::{collections::HashMap, sync::Mutex};
        let stores: Mutex<HashMap<u64, HashMap<(Bytes32, i64), i64>>> = Mutex::new(HashMap::new());
        let (a, b, c) = (Bytes32([1; 32]), Bytes32([2; 32]), Bytes32([3; 32]));
        for (id, base) in [(11u64, 1i64), (12, 100)] {
            let mut m = HashMap::new();
            for (i, contract) in [a, b].iter().enumerate() {
                for k in 0..8 {
                    m.insert((*contract, k), base * (k + 1) + i as i64);
                }
            }
            stores.lock().expect("not poisoned").insert(id, m);
        }
        let read = |id: u64, contract: Bytes32, key: i64, what: &str| -> Result<(), String> {
            let expected = stores
                .lock()
                .expect("not poisoned")
                .get(&id)
                .and_then(|m| m.get(&(contract, key)).copied())
                .unwrap_or(0);
            let below = HostFn(|c: &Bytes32, k: i64| {
                Ok(stores
                    .lock()
                    .expect("not poisoned")
                    .get(&id)
                    .and_then(|m| m.get(&(*c, k)).copied())
                    .unwrap_or(0))
            });
            let got = imp
                .get(id, &contract, key, below.as_store())
                .into_result()
                .map_err(|e| e.to_string())?;
            if got != expected {
                return Err(format!(
                    "store {id}, contract {contract:?}, key {key} ({what}): the store holds {expected}, plugin says {got}"
                ));
            }
            Ok(())
        };
        let write = |id: u64, contract: Bytes32, key: i64, value: i64| -> Result<(), String> {
            let mut s = stores.lock().expect("not poisoned");
            let m = s.entry(id).or_default();
            if value == 0 {
                m.remove(&(contract, key));
            } else {
                m.insert((contract, key), value);
            }
            drop(s);
            imp.written(
                id,
                [ContractWrite {
                    contract,
                    key,
                    value,
                }]
                .as_slice()
                .into(),
            )
            .into_result()
            .map_err(|e| e.to_string())
        };
        for round in ["cold", "warm"] {
            for id in [11, 12] {
                for contract in [a, b, c] {
                    for k in [0, 3, 7, 9] {
                        read(id, contract, k, round)?;
                    }
                }
            }
        }
        write(11, a, 3, 42)?;
        write(11, c, 9, 5)?;
        write(12, b, 0, 0)?;
        for id in [11, 12] {
            for contract in [a, b, c] {
                for k in [0, 3, 9] {
                    read(id, contract, k, "after writes")?;
                }
            }
        }
        // Store 11 rolls back: it is reset and comes back as store 13, as it was before.
        imp.reset(11).into_result().map_err(|e| e.to_string())?;
        let mut rolled = crate::selftest::take_store(&stores, 11);
        rolled.insert((a, 3), 4);
        rolled.remove(&(c, 9));
        stores.lock().expect("not poisoned").insert(13, rolled);
        for contract in [a, c] {
            for k in [3, 9] {
                read(13, contract, k, "after a rollback")?;
            }
        }
        Ok(())
    }

    /// The `vm.*` self-tests against in-process providers: the baselines wrapped as plugins pass,
    /// and providers with the mistakes the self-tests exist for fail.
    #[cfg(test)]
    mod vm_seams {
        use std::{collections::HashMap, sync::Mutex};

        use dubchain_plugin_api::{slots::*, types::Bytes32, PluginError};

        use crate::vm::{self, ContractStorage, Vm};

        /// The baseline metering, plus `extra` gas per segment (0: exact).
        struct HostCallMetering {
            extra: i64,
        }

        impl Metering for HostCallMetering {
            fn instrument(&self, code: &[u8]) -> Result<Metered, PluginError> {
                let mut wasm = vm::meter::instrument(code).map_err(PluginError::failed)?;
                if self.extra != 0 {
                    // Re-meter the metered code: every segment is charged twice, the second time
                    // a little differently; enough to change the gas.
                    wasm = vm::meter::instrument(&wasm).map_err(PluginError::failed)?;
                }
                Ok(Metered {
                    wasm: wasm.into(),
                    counter: GasCounter::HostCall,
                })
            }
        }

        #[test]
        fn metering_self_test_accepts_the_baseline_and_refuses_other_gas() {
            let metering = |extra| boxed!(MeteringFfi_TO, HostCallMetering { extra });
            crate::selftest::passes_then_refuses(
                super::metering,
                metering(0),
                metering(1),
                "baseline",
            );
        }

        /// Runs calls on the host's VM; optionally forgets the writes.
        struct HostRun {
            drop_writes: bool,
        }

        struct Below<'a, 'b>(&'a ContractStoreRef<'b>);

        impl ContractStorage for Below<'_, '_> {
            fn get(&self, c: &Bytes32, k: i64) -> Result<i64, vm::StorageError> {
                self.0
                    .get(c, k)
                    .into_result()
                    .map_err(|e| e.to_string().into())
            }
        }

        impl ModuleCache for HostRun {
            fn run(
                &self, r: &CallRequest<'_>, storage: &ContractStoreRef<'_>,
            ) -> Result<CallResult, PluginError> {
                let mut out = Vm::shared()
                    .run(
                        &r.wasm,
                        r.counter,
                        r.contract,
                        r.input,
                        r.gas,
                        &Below(storage),
                    )
                    .map_err(|e| PluginError::failed(e.to_string()))?;
                if self.drop_writes {
                    if let Ok((_, w)) = &mut out.result {
                        w.clear();
                    }
                }
                Ok(CallResult::from(&out))
            }
        }

        #[test]
        fn module_cache_self_test_accepts_the_baseline_and_refuses_lost_writes() {
            let run = |drop_writes| boxed!(ModuleCacheFfi_TO, HostRun { drop_writes });
            crate::selftest::passes_then_refuses(
                super::module_cache,
                run(false),
                run(true),
                "counter",
            );
        }

        /// Caches validated code, by hash (right) or by address (wrong after a redeploy).
        struct Cache {
            by_address: bool,
            seen: Mutex<HashMap<Bytes32, LoadedCode>>,
        }

        impl CodeLoader for Cache {
            fn load(
                &self, contract: &Bytes32, code_hash: &Bytes32, source: &CodeSourceRef<'_>,
            ) -> Result<LoadedCode, PluginError> {
                let key = if self.by_address {
                    *contract
                } else {
                    *code_hash
                };
                if let Some(hit) = self.seen.lock().unwrap().get(&key) {
                    return Ok(hit.clone());
                }
                let code = source.code(contract).into_result()?.into_option();
                let loaded = vm::baseline_load(code.map(|c| c.into_vec()));
                self.seen.lock().unwrap().insert(key, loaded.clone());
                Ok(loaded)
            }
        }

        fn cache(by_address: bool) -> CodeLoaderBox {
            let seen = Default::default();
            boxed!(CodeLoaderFfi_TO, Cache { by_address, seen })
        }

        #[test]
        fn code_loader_self_test_accepts_a_content_addressed_cache_and_refuses_an_address_cache() {
            let why = "after its code changed";
            crate::selftest::passes_then_refuses(
                super::code_loader,
                cache(false),
                cache(true),
                why,
            );
        }

        /// A read cache that heeds writes and resets, or not.
        struct ReadCache {
            heed_writes: bool,
            seen: Mutex<HashMap<(u64, Bytes32, i64), i64>>,
        }

        impl ContractState for ReadCache {
            fn get(
                &self, store: u64, contract: &Bytes32, key: i64, below: &ContractStoreRef<'_>,
            ) -> Result<i64, PluginError> {
                if let Some(v) = self.seen.lock().unwrap().get(&(store, *contract, key)) {
                    return Ok(*v);
                }
                let v = below.get(contract, key).into_result()?;
                self.seen.lock().unwrap().insert((store, *contract, key), v);
                Ok(v)
            }
            fn written(&self, store: u64, writes: &[ContractWrite]) -> Result<(), PluginError> {
                if self.heed_writes {
                    let mut seen = self.seen.lock().unwrap();
                    for w in writes {
                        seen.insert((store, w.contract, w.key), w.value);
                    }
                }
                Ok(())
            }
            fn reset(&self, store: u64) -> Result<(), PluginError> {
                self.seen.lock().unwrap().retain(|k, _| k.0 != store);
                Ok(())
            }
        }

        fn read_cache(heed_writes: bool) -> ContractStateBox {
            let seen = Default::default();
            boxed!(ContractStateFfi_TO, ReadCache { heed_writes, seen })
        }

        #[test]
        fn contract_state_self_test_accepts_a_coherent_cache_and_refuses_a_stale_one() {
            let (good, stale) = (read_cache(true), read_cache(false));
            crate::selftest::passes_then_refuses(
                super::contract_state,
                good,
                stale,
                "after writes",
            );
        }
    }
}

pub use vm_checks::{code_loader, contract_state, metering, module_cache};

/// Checks a `mem.block_reclaim` object: it takes blocks of every size (none, one empty,
/// several full) and returns without an error.
pub fn block_reclaim(imp: &BlockReclaimBox) -> Result<(), String> {
    let (_, _, blocks, _) = workload::block_run(0x9c, 4, 40, false);
    for batch in [Vec::new(), blocks[..1].to_vec(), blocks] {
        let n = batch.len();
        imp.reclaim(batch.into())
            .into_result()
            .map_err(|e| format!("reclaiming {n} blocks: {e}"))?;
    }
    Ok(())
}

/// A buffer of `n` bytes' capacity from a `mem.buffer_pool` object, refused unless it is
/// empty with at least that capacity; `at` says where in a check the take was.
pub fn take_fresh(
    imp: &BufferPoolBox, n: usize, at: &str,
) -> Result<abi_stable::std_types::RVec<u8>, String> {
    let b = imp
        .take(n as u64)
        .into_result()
        .map_err(|e| format!("{at}take({n}): {e}"))?;
    if !b.is_empty() || b.capacity() < n {
        return Err(format!(
            "{at}take({n}): a buffer of length {} and capacity {}",
            b.len(),
            b.capacity()
        ));
    }
    Ok(b)
}

/// Checks a `mem.buffer_pool` object: every buffer it gives is empty with the capacity
/// asked, including after buffers full of data came back, of every size.
pub fn buffer_pool(imp: &BufferPoolBox) -> Result<(), String> {
    let sizes = [0usize, 1, 17, 4_096, 65_536, 1 << 20];
    for round in 0..3 {
        let mut held = Vec::new();
        for &n in &sizes {
            held.push(take_fresh(imp, n, &format!("round {round}, "))?);
        }
        for mut b in held {
            let cap = b.capacity();
            b.extend(std::iter::repeat_n(0xab, cap.max(1)));
            imp.give(b)
                .into_result()
                .map_err(|e| format!("give: {e}"))?;
        }
    }
    Ok(())
}

/// Frame sets the `net.frame_send` checks write: none, one empty, one, many small, mixed with
/// large ones.
pub fn frame_sets() -> Vec<(String, Vec<Vec<u8>>)> {
    let frame = |n: usize, tag: u8| -> Vec<u8> {
        let mut f = (n as u32).to_be_bytes().to_vec();
        f.extend((0..n).map(|i| tag.wrapping_add(i as u8)));
        f
    };
    vec![
        ("no frames".into(), Vec::new()),
        ("one empty frame".into(), vec![frame(0, 0)]),
        ("one frame".into(), vec![frame(200, 1)]),
        (
            "500 frames of 200 bytes".into(),
            (0..500).map(|i| frame(200, i as u8)).collect(),
        ),
        (
            "small and 1 MiB frames".into(),
            (0..9)
                .map(|i| frame(if i % 3 == 0 { 1 << 20 } else { 30 }, i as u8))
                .collect(),
        ),
    ]
}

/// Checks a `net.frame_send` object: for every [`frame_sets`] set, the bytes that reach the
/// connection are exactly the frames', in order.
pub fn frame_send(imp: &FrameSendBox) -> Result<(), String> {
    for (name, frames) in frame_sets() {
        frames_arrive_exactly(imp, &frames).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

/// `frames` sent by a `net.frame_send` object: the connection must get exactly their bytes,
/// in order, by the time `send` returns.
pub fn frames_arrive_exactly(imp: &FrameSendBox, frames: &[Vec<u8>]) -> Result<(), String> {
    let mut out: Vec<u8> = Vec::new();
    let sink = crate::slot::CountingSink::new(&mut out);
    let slices: Vec<abi_stable::std_types::RSlice<'_, u8>> =
        frames.iter().map(|f| f.as_slice().into()).collect();
    imp.send(slices.as_slice().into(), sink.as_ffi())
        .into_result()
        .map_err(|e| e.to_string())?;
    let expected = frames.concat();
    if out != expected {
        let at = out
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(out.len().min(expected.len()));
        return Err(format!(
            "the connection got {} bytes, the frames are {}; first difference at byte {at}",
            out.len(),
            expected.len()
        ));
    }
    Ok(())
}

/// Checks a `mempool.tx_pool` object: a new index driven through a seeded script of inserts
/// (duplicates within and across batches, stale and future nonces), selections, removals
/// of what was selected, and nonces moved under it, must answer as the baseline
/// [`baseline::VecIndex`] at every step.
pub fn tx_pool(imp: &TxPoolBox) -> Result<(), String> {
    tx_pool_at(imp, Depth::LOAD)
}

/// [`tx_pool`] at depth `d` (another seed, `d.scale` times the work), for the conformance
/// suite.
pub fn tx_pool_at(imp: &TxPoolBox, d: Depth) -> Result<(), String> {
    use dubchain_plugin_api::slots::{HostNonces, PoolEntry};
    use rand::{Rng, SeedableRng};
    let mut index = imp.new_index().into_result().map_err(|e| e.to_string())?;
    let mut expected = baseline::VecIndex::default();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0x9001 ^ d.seed);
    let senders: Vec<Bytes32> = (0..12).map(|_| Bytes32(rng.gen())).collect();
    let nonces: std::sync::Mutex<std::collections::HashMap<Bytes32, u64>> =
        std::sync::Mutex::new(senders.iter().map(|s| (*s, 0)).collect());
    let next = |s: &Bytes32| -> Result<u64, String> {
        Ok(*nonces.lock().expect("not poisoned").get(s).unwrap_or(&0))
    };
    let source =
        HostNonces(|s: &Bytes32| next(s).map_err(dubchain_plugin_api::PluginError::failed));
    // The baseline's and the plugin's removals of `chosen`, each sorted.
    let remove_both = |expected: &mut baseline::VecIndex,
                       index: &mut dubchain_plugin_api::slots::TxIndexBox,
                       chosen: &[Bytes32],
                       step: usize|
     -> Result<(Vec<Bytes32>, Vec<Bytes32>), String> {
        let mut want = expected.remove(chosen, &next)?;
        let mut got = index
            .remove(chosen.into(), source.as_source())
            .into_result()
            .map_err(|e| format!("step {step}, remove: {e}"))?
            .into_vec();
        want.sort_unstable();
        got.sort_unstable();
        Ok((want, got))
    };
    let mut seen: Vec<Bytes32> = Vec::new();
    for step in 0..400 * d.scale {
        match rng.gen_range(0..10) {
            0..=4 => {
                let n = rng.gen_range(1..24);
                let mut batch = Vec::with_capacity(n);
                for _ in 0..n {
                    let sender = senders[rng.gen_range(0..senders.len())];
                    let base = next(&sender)?;
                    let hash = match rng.gen_range(0..10) {
                        0 if !seen.is_empty() => seen[rng.gen_range(0..seen.len())],
                        _ => Bytes32(rng.gen()),
                    };
                    seen.push(hash);
                    batch.push(PoolEntry {
                        hash,
                        sender,
                        nonce: base + rng.gen_range(0..4),
                        fee: rng.gen_range(1..8),
                    });
                }
                let want = expected.insert(&batch);
                let got = index
                    .insert(batch.as_slice().into())
                    .into_result()
                    .map_err(|e| format!("step {step}, insert: {e}"))?;
                if got.as_slice() != want.as_slice() {
                    return Err(format!(
                        "step {step}, insert: baseline {want:?}, plugin {got:?}"
                    ));
                }
            }
            5..=7 => {
                let max = rng.gen_range(0..30);
                let want = expected.select(max, &next)?;
                let got = index
                    .select(max as u64, source.as_source())
                    .into_result()
                    .map_err(|e| format!("step {step}, select: {e}"))?;
                if got.as_slice() != want.as_slice() {
                    return Err(format!(
                        "step {step}, select({max}): baseline {want:?}, plugin {got:?}"
                    ));
                }
                // The selection is included in a block: its senders' nonces move.
                let keep = rng.gen_range(0..=want.len());
                let chosen = &want[..keep];
                {
                    let mut n = nonces.lock().expect("not poisoned");
                    for h in chosen {
                        let e = expected.get(h).expect("selected from the index");
                        n.insert(e.sender, e.nonce + 1);
                    }
                }
                let (want, got) = remove_both(&mut expected, &mut index, chosen, step)?;
                if got != want {
                    return Err(format!(
                        "step {step}, remove: baseline dropped {} hashes, plugin {}",
                        want.len(),
                        got.len()
                    ));
                }
            }
            _ => {
                // Another node's block moved a sender on.
                let sender = senders[rng.gen_range(0..senders.len())];
                *nonces
                    .lock()
                    .expect("not poisoned")
                    .entry(sender)
                    .or_default() += rng.gen_range(1..3);
                let (want, got) = remove_both(&mut expected, &mut index, &[], step)?;
                if got != want {
                    return Err(format!(
                        "step {step}, remove after a nonce moved: baseline dropped {want:?}, plugin {got:?}"
                    ));
                }
            }
        }
        let len = index.len().into_result().map_err(|e| e.to_string())?;
        if len != expected.len() as u64 {
            return Err(format!(
                "step {step}: plugin holds {len}, baseline {}",
                expected.len()
            ));
        }
    }
    Ok(())
}

/// The `mempool.tx_pool` self-test against in-process indexes: a heap-and-map index (what a
/// plugin would do) passes; one that breaks fee ties the other way fails.
#[cfg(test)]
mod pool_seam {
    use std::collections::{BinaryHeap, HashMap, HashSet};

    use dubchain_plugin_api::{slots::*, types::Bytes32, PluginError};

    /// Entries by sender and nonce; selection with a max-heap of eligible entries.
    struct HeapIndex {
        ties_to_larger_hash: bool,
        hashes: HashSet<Bytes32>,
        by_sender: HashMap<Bytes32, Vec<PoolEntry>>,
    }

    impl HeapIndex {
        fn key(&self, e: &PoolEntry) -> (u64, Bytes32) {
            let h = if self.ties_to_larger_hash {
                e.hash
            } else {
                Bytes32(e.hash.0.map(|b| !b))
            };
            (e.fee, h)
        }
    }

    impl TxIndex for HeapIndex {
        fn insert(&mut self, entries: &[PoolEntry]) -> Result<Vec<bool>, PluginError> {
            Ok(entries
                .iter()
                .map(|e| {
                    let fresh = self.hashes.insert(e.hash);
                    if fresh {
                        self.by_sender.entry(e.sender).or_default().push(*e);
                    }
                    fresh
                })
                .collect())
        }

        fn select(
            &mut self, max: u64, nonces: &NonceSourceRef<'_>,
        ) -> Result<Vec<Bytes32>, PluginError> {
            let mut next = HashMap::new();
            let mut heap = BinaryHeap::new();
            for (s, es) in &self.by_sender {
                let n = nonces.next_nonce(s).into_result()?;
                next.insert(*s, n);
                for e in es.iter().filter(|e| e.nonce == n) {
                    heap.push((self.key(e), *e));
                }
            }
            let mut out = Vec::new();
            while (out.len() as u64) < max {
                let Some((_, e)) = heap.pop() else { break };
                if next[&e.sender] != e.nonce {
                    continue;
                }
                out.push(e.hash);
                next.insert(e.sender, e.nonce + 1);
                for f in self.by_sender[&e.sender]
                    .iter()
                    .filter(|f| f.nonce == e.nonce + 1)
                {
                    heap.push((self.key(f), *f));
                }
            }
            Ok(out)
        }

        fn remove(
            &mut self, included: &[Bytes32], nonces: &NonceSourceRef<'_>,
        ) -> Result<Vec<Bytes32>, PluginError> {
            let included: HashSet<&Bytes32> = included.iter().collect();
            let mut gone = Vec::new();
            for (s, es) in self.by_sender.iter_mut() {
                let n = nonces.next_nonce(s).into_result()?;
                es.retain(|e| {
                    let keep = !included.contains(&e.hash) && e.nonce >= n;
                    if !keep {
                        gone.push(e.hash);
                    }
                    keep
                });
            }
            self.by_sender.retain(|_, es| !es.is_empty());
            for h in &gone {
                self.hashes.remove(h);
            }
            Ok(gone)
        }

        fn len(&self) -> Result<u64, PluginError> {
            Ok(self.hashes.len() as u64)
        }
    }

    struct Pool {
        ties_to_larger_hash: bool,
    }

    impl TxPool for Pool {
        type Index = HeapIndex;
        fn new_index(&self) -> Result<HeapIndex, PluginError> {
            Ok(HeapIndex {
                ties_to_larger_hash: self.ties_to_larger_hash,
                hashes: HashSet::new(),
                by_sender: HashMap::new(),
            })
        }
    }

    #[test]
    fn tx_pool_self_test_accepts_a_heap_index_and_refuses_other_tie_breaks() {
        let pool = |ties_to_larger_hash| {
            boxed!(
                TxPoolFfi_TO,
                Pool {
                    ties_to_larger_hash
                }
            )
        };
        super::passes_then_refuses(super::tx_pool, pool(false), pool(true), "select");
    }
}

/// Checks a `consensus.vote_tally` object: seeded vote sequences over several heights (double
/// votes, equivocation, unknown validators, late votes for settled heights) recorded one
/// by one must give the baseline's answers and finalized heights at every step; then four
/// threads recording disjoint votes at once must end where the baseline ends.
pub fn vote_tally(imp: &VoteTalliesBox) -> Result<(), String> {
    vote_tally_at(imp, Depth::LOAD)
}

/// [`vote_tally`] at depth `d` (another seed, `d.scale` times the work), for the conformance
/// suite.
pub fn vote_tally_at(imp: &VoteTalliesBox, d: Depth) -> Result<(), String> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0xc0de ^ d.seed);
    let stakes: Vec<u64> = (0..10).map(|_| rng.gen_range(1..=100)).collect();
    let blocks: Vec<Bytes32> = (0..3).map(|_| Bytes32(rng.gen())).collect();
    let state = imp
        .new_tally(stakes.as_slice().into())
        .into_result()
        .map_err(|e| e.to_string())?;
    let mut expected = baseline::Tally::default();
    for step in 0..3_000 * d.scale {
        let height = rng.gen_range(1..40);
        let block = blocks[rng.gen_range(0..blocks.len())];
        let validator = rng.gen_range(0..stakes.len() as u32 + 2);
        let want = expected.record(&stakes, height, &block, validator);
        let got = state
            .record(height, &block, validator)
            .into_result()
            .map_err(|e| format!("step {step}: {e}"))?
            .into_option();
        let fin = state.finalized().into_result().map_err(|e| e.to_string())?;
        if got != want || fin != expected.finalized() {
            return Err(format!(
                "step {step}, vote of {validator} for height {height}: baseline {want:?} (finalized {}), plugin {got:?} (finalized {fin})",
                expected.finalized()
            ));
        }
    }
    // Four threads, each with its own validators' votes for heights 1..=200 on one block.
    let state = imp
        .new_tally(stakes.as_slice().into())
        .into_result()
        .map_err(|e| e.to_string())?;
    let block = blocks[0];
    let mut expected = baseline::Tally::default();
    for h in 1..=200 {
        for v in 0..stakes.len() as u32 {
            expected.record(&stakes, h, &block, v);
        }
    }
    let failed = std::sync::Mutex::new(None);
    let n = stakes.len() as u32;
    std::thread::scope(|scope| {
        for t in 0..4u32 {
            let (state, failed) = (&state, &failed);
            scope.spawn(move || {
                for h in 1..=200 {
                    for v in (t..n).step_by(4) {
                        if let Err(e) = state.record(h, &block, v).into_result() {
                            *failed.lock().expect("not poisoned") = Some(e.to_string());
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().expect("not poisoned") {
        return Err(format!("concurrent recording: {e}"));
    }
    let fin = state.finalized().into_result().map_err(|e| e.to_string())?;
    if fin != expected.finalized() {
        return Err(format!(
            "after concurrent recording: baseline finalized {}, plugin {fin}",
            expected.finalized()
        ));
    }
    Ok(())
}

/// The `consensus.vote_tally` self-test against in-process states: sharded atomics with a
/// compare-and-swap finalized height pass; one that finalizes at a third of the stake fails.
#[cfg(test)]
mod consensus_seam {
    use std::{
        collections::HashMap,
        sync::{
            atomic::{AtomicU64, Ordering::SeqCst},
            Mutex,
        },
    };

    use dubchain_plugin_api::{slots::*, types::Bytes32, PluginError};

    /// Per-height shards; the finalized height moves by compare-and-swap.
    struct Sharded {
        stakes: Vec<u64>,
        threshold_num: u64,
        shards: Vec<Mutex<HashMap<u64, (Vec<u32>, HashMap<Bytes32, u64>)>>>,
        finalized: AtomicU64,
    }

    impl VoteTally for Sharded {
        fn record(
            &self, height: u64, block: &Bytes32, validator: u32,
        ) -> Result<Option<u64>, PluginError> {
            let Some(stake) = self.stakes.get(validator as usize).copied() else {
                return Ok(None);
            };
            let total: u64 = self.stakes.iter().sum();
            let reached = {
                let mut shard = self.shards[height as usize % self.shards.len()]
                    .lock()
                    .unwrap();
                let (voted, tallies) = shard.entry(height).or_default();
                if voted.contains(&validator) {
                    return Ok(None);
                }
                voted.push(validator);
                let t = tallies.entry(*block).or_default();
                *t += stake;
                *t * 3 >= total * self.threshold_num
            };
            if !reached {
                return Ok(None);
            }
            let mut cur = self.finalized.load(SeqCst);
            while height > cur {
                match self.finalized.compare_exchange(cur, height, SeqCst, SeqCst) {
                    Ok(_) => return Ok(Some(height)),
                    Err(now) => cur = now,
                }
            }
            Ok(None)
        }
        fn finalized(&self) -> Result<u64, PluginError> {
            Ok(self.finalized.load(SeqCst))
        }
    }

    struct States {
        threshold_num: u64,
    }

    impl VoteTallies for States {
        type Tally = Sharded;
        fn new_tally(&self, stakes: &[u64]) -> Result<Sharded, PluginError> {
            Ok(Sharded {
                stakes: stakes.to_vec(),
                threshold_num: self.threshold_num,
                shards: (0..16).map(|_| Mutex::new(HashMap::new())).collect(),
                finalized: AtomicU64::new(0),
            })
        }
    }

    #[test]
    fn consensus_state_self_test_accepts_sharded_tallies_and_refuses_a_wrong_quorum() {
        let states = |threshold_num| boxed!(VoteTalliesFfi_TO, States { threshold_num });
        super::passes_then_refuses(super::vote_tally, states(2), states(3 / 2), "baseline");
    }
}

/// Payloads the `mem.tx_decode` checks decode: generated transactions of every kind as the
/// baseline writes them, the same with upper-case hex and other spacing, and broken ones
/// (unknown or missing fields, bad hex, wrong lengths, overflowing numbers, an unknown
/// kind, trailing bytes, invalid UTF-8, nothing at all).
pub fn tx_payloads() -> Vec<(String, Vec<u8>)> {
    let txs = workload::transactions(0xdec0, 3, 40);
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, tx) in txs.iter().enumerate() {
        out.push((
            format!("transaction {i}"),
            serde_json::to_vec(tx).expect("serialises"),
        ));
    }
    let text = serde_json::to_string(&txs[0]).expect("serialises");
    let value: serde_json::Value = serde_json::from_str(&text).expect("parses");
    let edit = |f: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
        let mut v = value.clone();
        f(v.as_object_mut().expect("an object"));
        serde_json::to_vec(&v).expect("serialises")
    };
    let from = value["from"].as_str().expect("hex").to_owned();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "upper-case hex",
            text.replace(&from, &from.to_uppercase()).into_bytes(),
        ),
        (
            "pretty-printed",
            serde_json::to_vec_pretty(&value).expect("serialises"),
        ),
        (
            "an unknown field",
            edit(&|m| {
                m.insert("extra".into(), 1.into());
            }),
        ),
        (
            "a missing field",
            edit(&|m| {
                m.remove("nonce");
            }),
        ),
        (
            "odd-length hex",
            edit(&|m| {
                m.insert("from".into(), "abc".into());
            }),
        ),
        (
            "a non-hex digit",
            edit(&|m| {
                m.insert("from".into(), format!("zz{}", &from[2..]).into());
            }),
        ),
        (
            "a 31-byte key",
            edit(&|m| {
                m.insert("from".into(), from[2..].to_owned().into());
            }),
        ),
        (
            "an amount beyond u64",
            text.replacen("\"amount\":", "\"amount\":1", 1)
                .replacen("\"amount\":1", "\"amount\":99999999999999999999", 1)
                .into_bytes(),
        ),
        (
            "a negative fee",
            edit(&|m| {
                m.insert("fee".into(), (-1).into());
            }),
        ),
        (
            "an unknown kind",
            edit(&|m| {
                m.insert("kind".into(), "teleport".into());
            }),
        ),
        ("trailing bytes", [text.as_bytes(), b" x"].concat()),
        (
            "invalid UTF-8",
            [
                &text.as_bytes()[..10],
                &[0xff, 0xfe],
                &text.as_bytes()[10..],
            ]
            .concat(),
        ),
        ("null", b"null".to_vec()),
        ("nothing", Vec::new()),
    ];
    out.extend(cases.into_iter().map(|(n, p)| (n.to_owned(), p)));
    out
}

/// Checks a `mem.tx_decode` object: every [`tx_payloads`] payload decodes to the baseline's
/// transaction, or fails where the baseline fails.
pub fn tx_decode(imp: &TxDecodeBox) -> Result<(), String> {
    let cases = tx_payloads();
    let payloads: Vec<&[u8]> = cases.iter().map(|(_, p)| p.as_slice()).collect();
    let expected = baseline::decode_txs(&payloads);
    let slices: Vec<abi_stable::std_types::RSlice<'_, u8>> =
        payloads.iter().map(|p| (*p).into()).collect();
    let got = imp
        .decode(slices.as_slice().into())
        .into_result()
        .map_err(|e| e.to_string())?;
    for (((name, _), want), got) in cases.iter().zip(&expected).zip(got.iter()) {
        let same = match (want, got) {
            (Ok(a), abi_stable::std_types::RResult::ROk(b)) => a == b,
            (Err(_), abi_stable::std_types::RResult::RErr(_)) => true,
            _ => false,
        };
        if !same {
            return Err(format!("{name}: baseline {want:?}, plugin {got:?}"));
        }
    }
    Ok(())
}

/// The `mem.tx_decode` self-test against in-process decoders.
#[cfg(test)]
mod decode_seam {
    use abi_stable::std_types::RSlice;
    use dubchain_plugin_api::{slots::*, types::Transaction, PluginError};

    /// serde_json through a `Value` (another route to the same answers), or a lenient
    /// decoder that ignores unknown fields.
    struct ViaValue {
        lenient: bool,
    }

    impl TxDecode for ViaValue {
        fn decode(
            &self, payloads: &[RSlice<'_, u8>],
        ) -> Result<Vec<Result<Transaction, String>>, PluginError> {
            Ok(payloads
                .iter()
                .map(|p| {
                    let mut v: serde_json::Value =
                        serde_json::from_slice(p).map_err(|e| e.to_string())?;
                    if self.lenient {
                        if let Some(m) = v.as_object_mut() {
                            m.remove("extra");
                        }
                    }
                    serde_json::from_value(v).map_err(|e| e.to_string())
                })
                .collect())
        }
    }

    #[test]
    fn tx_decode_self_test_accepts_another_route_and_refuses_leniency() {
        let ok = boxed!(TxDecodeFfi_TO, ViaValue { lenient: false });
        super::tx_decode(&ok).unwrap();
        let lenient = boxed!(TxDecodeFfi_TO, ViaValue { lenient: true });
        assert!(super::tx_decode(&lenient)
            .unwrap_err()
            .starts_with("an unknown field"));
    }
}

/// Checks a `storage.account_read` object: batched reads of two stores with different contents
/// (cold and warm), writes announced as they happen, and a rollback (`reset`, then a new
/// identity with the old contents) must all read what the store holds.
pub fn account_read(imp: &AccountReadBox) -> Result<(), String> {
    use dubchain_plugin_api::{
        exec::{AccountEntry, AccountState},
        slots::HostAccounts,
    };
    use std::{collections::HashMap, sync::Mutex};
    let accounts: Vec<Bytes32> = (0..24u8).map(|i| Bytes32([i; 32])).collect();
    let stores: Mutex<HashMap<u64, HashMap<Bytes32, AccountState>>> = Mutex::new(HashMap::new());
    for (id, base) in [(21u64, 10u64), (22, 1_000)] {
        let m = accounts
            .iter()
            .take(16)
            .enumerate()
            .map(|(i, a)| {
                (
                    *a,
                    AccountState {
                        balance: base * (i as u64 + 1),
                        nonce: i as u64,
                    },
                )
            })
            .collect();
        stores.lock().expect("not poisoned").insert(id, m);
    }
    let held = |id: u64, a: &Bytes32| -> AccountState {
        stores
            .lock()
            .expect("not poisoned")
            .get(&id)
            .and_then(|m| m.get(a).copied())
            .unwrap_or_default()
    };
    let read = |id: u64, which: &[Bytes32], what: &str| -> Result<(), String> {
        let below = HostAccounts(|xs: &[Bytes32], out: &mut [AccountState]| {
            for (a, o) in xs.iter().zip(out) {
                *o = held(id, a);
            }
            Ok(())
        });
        let mut got = vec![AccountState::default(); which.len()];
        imp.get(
            id,
            which.into(),
            got.as_mut_slice().into(),
            below.as_source(),
        )
        .into_result()
        .map_err(|e| e.to_string())?;
        for (a, g) in which.iter().zip(got.iter()) {
            let want = held(id, a);
            if *g != want {
                return Err(format!(
                    "store {id}, account {a:?} ({what}): the store holds {want:?}, plugin says {g:?}"
                ));
            }
        }
        Ok(())
    };
    let write = |id: u64, a: Bytes32, state: AccountState| -> Result<(), String> {
        stores
            .lock()
            .expect("not poisoned")
            .entry(id)
            .or_default()
            .insert(a, state);
        imp.written(id, [AccountEntry { account: a, state }].as_slice().into())
            .into_result()
            .map_err(|e| e.to_string())
    };
    for what in ["cold", "warm"] {
        for id in [21, 22] {
            read(id, &accounts, what)?;
            read(id, &accounts[3..5], what)?;
        }
    }
    write(
        21,
        accounts[3],
        AccountState {
            balance: 7,
            nonce: 9,
        },
    )?;
    write(
        21,
        accounts[20],
        AccountState {
            balance: 1,
            nonce: 1,
        },
    )?;
    write(22, accounts[3], AccountState::default())?;
    for id in [21, 22] {
        read(id, &accounts, "after writes")?;
    }
    // Store 21 rolls back: reset, and back as store 23 with its old contents.
    imp.reset(21).into_result().map_err(|e| e.to_string())?;
    let mut old = take_store(&stores, 21);
    old.insert(
        accounts[3],
        AccountState {
            balance: 40,
            nonce: 3,
        },
    );
    old.remove(&accounts[20]);
    stores.lock().expect("not poisoned").insert(23, old);
    read(23, &accounts, "after a rollback")
}

/// The `storage.account_read` self-test against in-process caches: the coherent reference cache
/// passes; one that ignores announced writes fails.
#[cfg(test)]
mod read_seam {
    use dubchain_plugin_api::slots::AccountReadFfi_TO;

    use crate::testing::AccountReadCache;

    #[test]
    fn account_read_self_test_accepts_a_coherent_cache_and_refuses_a_stale_one() {
        let ok = boxed!(AccountReadFfi_TO, AccountReadCache::new());
        let stale = boxed!(AccountReadFfi_TO, AccountReadCache::ignoring_writes());
        super::passes_then_refuses(super::account_read, ok, stale, "after writes");
    }
}

/// Checks a `storage.block_commit` object against a model of a block's write set (a `BTreeMap`,
/// last write per key): two blocks' sets open at once (they must not share writes), each fed
/// generated writes and deletes over keys chosen to be awkward (a key that is a prefix of
/// another, keys that differ in their last byte, `0xff` bytes, the empty key, empty values
/// as opposed to deletes, deletes of keys never written), with every `read` and `held`
/// (for several prefixes, the empty one included) checked along the way, then `drain`ed
/// and checked empty afterwards.
pub fn block_commit(imp: &BlockCommitBox) -> Result<(), String> {
    block_commit_at(imp, Depth::LOAD)
}

/// [`block_commit`] at depth `d` (another seed, `d.scale` times the work), for the conformance
/// suite.
pub fn block_commit_at(imp: &BlockCommitBox, d: Depth) -> Result<(), String> {
    use abi_stable::std_types::{RSlice, RVec};
    use dubchain_plugin_api::slots::{BlockWritesBox, Held, HostWriteThrough, KvWrite};
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    /// Key to its last write (`None`: deleted).
    type Model = BTreeMap<Vec<u8>, Option<Vec<u8>>>;
    let keys: Vec<Vec<u8>> = vec![
        b"a/".to_vec(),
        b"a/\x00".to_vec(),
        b"a/\x00\x00".to_vec(),
        b"a/\x01".to_vec(),
        b"a/\xff".to_vec(),
        b"a/\xff\xff".to_vec(),
        b"a0".to_vec(),
        b"a".to_vec(),
        b"s/".to_vec(),
        [
            b"s/".as_slice(),
            &[7; 32],
            &0x8000_0000_0000_0000u64.to_be_bytes(),
        ]
        .concat(),
        [
            b"s/".as_slice(),
            &[7; 32],
            &0x7fff_ffff_ffff_ffffu64.to_be_bytes(),
        ]
        .concat(),
        [b"s/".as_slice(), &[7; 33]].concat(),
        vec![0xff; 3],
        Vec::new(),
    ];
    let prefixes: [&[u8]; 6] = [b"", b"a", b"a/", b"a/\x00", b"s/", b"\xff"];
    let fail = |what: &str, e: dubchain_plugin_api::PluginError| format!("{what}: {e}");
    /// One block: its set, the model of its writes, and the store the set's write-through
    /// primitive writes to.
    struct Block {
        set: BlockWritesBox,
        model: Model,
        store: Mutex<Model>,
    }
    /// The block's writes as the host sees them: what went through, under what is held.
    fn effective(store: &Model, held: Vec<KvWrite>, prefix: &[u8]) -> Model {
        let mut e: Model = store
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for w in held {
            e.insert(w.key.into_vec(), w.value.into_option().map(RVec::into_vec));
        }
        e
    }
    let under = |m: &Model, prefix: &[u8]| -> Model {
        m.iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let read_held = |b: &Block, k: &[u8]| {
        b.set
            .read(RSlice::from_slice(k))
            .into_result()
            .map_err(|e| fail("read", e))
    };
    let check = |b: &Block, when: &str| -> Result<(), String> {
        let store = b.store.lock().unwrap_or_else(|p| p.into_inner());
        for k in &keys {
            let held = read_held(b, k)?;
            let got = match held {
                Held::NotHeld => store.get(k).cloned(),
                Held::Deleted => Some(None),
                Held::Value(v) => Some(Some(v.into_vec())),
            };
            let want = b.model.get(k).cloned();
            if got != want {
                return Err(format!(
                    "{when}: key {k:?} reads as {got:?} (held or written through), the block's last write is {want:?}"
                ));
            }
        }
        for p in prefixes {
            let held = b
                .set
                .held(RSlice::from_slice(p))
                .into_result()
                .map_err(|e| fail("held", e))?;
            let (n, got) = (held.len(), effective(&store, held.into_vec(), p));
            let want = under(&b.model, p);
            if got != want {
                return Err(format!(
                    "{when}: held({p:?}) answered {n} writes; with what went through the block shows {} keys under it, its last writes are {} (first difference at {:?})",
                    got.len(),
                    want.len(),
                    got.iter().zip(&want).position(|(a, b)| a != b)
                ));
            }
        }
        Ok(())
    };
    let write = |b: &mut Block, key: &[u8], value: Option<&[u8]>| -> Result<(), String> {
        let store = &b.store;
        let through = HostWriteThrough(|k: &[u8], v: Option<&[u8]>| {
            store
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(k.to_vec(), v.map(<[u8]>::to_vec));
            Ok(())
        });
        b.set
            .write(
                RSlice::from_slice(key),
                value.map(RSlice::from_slice).into(),
                through.as_through(),
            )
            .into_result()
            .map_err(|e| fail("write", e))?;
        b.model.insert(key.to_vec(), value.map(<[u8]>::to_vec));
        Ok(())
    };
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0xc0_1117 ^ d.seed);
    let mut blocks: Vec<Block> = Vec::new();
    for height in [7u64, 8] {
        let set = imp
            .begin(height)
            .into_result()
            .map_err(|e| fail("begin", e))?;
        blocks.push(Block {
            set,
            model: Model::new(),
            store: Mutex::new(Model::new()),
        });
    }
    for (i, b) in blocks.iter().enumerate() {
        check(b, &format!("set {i} before any write"))?;
    }
    for step in 0..400 * d.scale {
        let which = rng.gen_range(0..blocks.len());
        let key = keys[rng.gen_range(0..keys.len())].clone();
        let value: Option<Vec<u8>> = match rng.gen_range(0..5) {
            0 => None,
            1 => Some(Vec::new()),
            2 => Some(vec![0; rng.gen_range(1..4)]),
            3 => Some(vec![0xff; 4_096]),
            _ => Some(format!("{{\"step\":{step}}}").into_bytes()),
        };
        write(&mut blocks[which], &key, value.as_deref())?;
        if step % 37 == 0 {
            check(&blocks[which], &format!("set {which} after write {step}"))?;
        }
    }
    for (i, b) in blocks.iter_mut().enumerate() {
        check(b, &format!("set {i} after every write"))?;
        let drained = b.set.drain().into_result().map_err(|e| fail("drain", e))?;
        let n = drained.len();
        let store = b.store.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let got = effective(&store, drained.into_vec(), b"");
        if got != b.model {
            let first = got.iter().zip(&b.model).position(|(a, b)| a != b);
            return Err(format!(
                "set {i}: drain answered {n} writes; with what went through the store gets {} keys for {} written; first difference at {first:?}",
                got.len(),
                b.model.len(),
            ));
        }
        // Drained, the set holds nothing: every key reads as the store has it.
        for k in &keys {
            let held = read_held(b, k)?;
            if held != Held::NotHeld {
                return Err(format!("set {i}: after drain, key {k:?} is still held"));
            }
        }
        if !b
            .set
            .drain()
            .into_result()
            .map_err(|e| fail("drain", e))?
            .is_empty()
        {
            return Err(format!("set {i}: a second drain answered writes"));
        }
    }
    // A set that is dropped without a drain (a rolled-back block) leaves nothing held.
    let mut dropped = Block {
        set: imp.begin(9).into_result().map_err(|e| fail("begin", e))?,
        model: Model::new(),
        store: Mutex::new(Model::new()),
    };
    write(&mut dropped, b"a/x", Some(b"1"))?;
    drop(dropped);
    let fresh = Block {
        set: imp.begin(9).into_result().map_err(|e| fail("begin", e))?,
        model: Model::new(),
        store: Mutex::new(Model::new()),
    };
    check(&fresh, "a new set after one was dropped")
}

/// The `storage.block_commit` self-test against in-process write sets: the reference passes; the
/// mistakes a batching write set can make are each refused.
#[cfg(test)]
mod commit_seam {
    use std::{
        collections::BTreeMap,
        sync::{Arc, Mutex},
    };

    use dubchain_plugin_api::{
        slots::{BlockCommit, BlockCommitFfi_TO, BlockWrites, Held, KvWrite, WriteThroughRef},
        PluginError,
    };

    use crate::{reference::ForwardingWrites, testing::BatchedWrites};

    #[derive(Clone, Copy)]
    enum Mistake {
        /// Keeps a key's first write instead of its last.
        FirstWriteWins,
        /// Forgets a key when it is deleted, so the store's old value shows through.
        DeleteForgets,
        /// One map for every block.
        Shared,
        /// Passes deletes through but keeps answering the key's earlier held write.
        ThroughLeavesStale,
    }

    struct Wrong(Mistake, Arc<Mutex<BTreeMap<Vec<u8>, Option<Vec<u8>>>>>);

    impl BlockWrites for Wrong {
        fn write(
            &mut self, key: &[u8], value: Option<&[u8]>, through: &WriteThroughRef<'_>,
        ) -> Result<(), PluginError> {
            let mut m = self.1.lock().unwrap();
            match (self.0, value) {
                (Mistake::FirstWriteWins, _) if m.contains_key(key) => {}
                (Mistake::DeleteForgets, None) => drop(m.remove(key)),
                (Mistake::ThroughLeavesStale, None) => {
                    through.put(key.into(), None.into()).into_result()?;
                }
                _ => drop(m.insert(key.to_vec(), value.map(<[u8]>::to_vec))),
            }
            Ok(())
        }
        fn read(&self, key: &[u8]) -> Result<Held, PluginError> {
            Ok(match self.1.lock().unwrap().get(key) {
                None => Held::NotHeld,
                Some(None) => Held::Deleted,
                Some(Some(v)) => Held::Value(v.clone().into()),
            })
        }
        fn held(&self, prefix: &[u8]) -> Result<Vec<KvWrite>, PluginError> {
            Ok(self
                .1
                .lock()
                .unwrap()
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| KvWrite {
                    key: k.clone().into(),
                    value: v.clone().map(Into::into).into(),
                })
                .collect())
        }
        fn drain(&mut self) -> Result<Vec<KvWrite>, PluginError> {
            let out = self.held(b"")?;
            self.1.lock().unwrap().clear();
            Ok(out)
        }
    }

    struct WrongFactory(Mistake, Arc<Mutex<BTreeMap<Vec<u8>, Option<Vec<u8>>>>>);

    impl BlockCommit for WrongFactory {
        type Writes = Wrong;
        fn begin(&self, _: u64) -> Result<Wrong, PluginError> {
            Ok(match self.0 {
                Mistake::Shared => Wrong(self.0, self.1.clone()),
                _ => Wrong(self.0, Default::default()),
            })
        }
    }

    #[test]
    fn block_commit_self_test_accepts_the_references_and_refuses_each_mistake() {
        let ok = boxed!(BlockCommitFfi_TO, BatchedWrites::new());
        super::block_commit(&ok).unwrap();
        let forwarding = boxed!(BlockCommitFfi_TO, ForwardingWrites);
        super::block_commit(&forwarding).unwrap();
        for (mistake, says) in [
            (Mistake::FirstWriteWins, "the block's last write"),
            (Mistake::DeleteForgets, "the block's last write"),
            (Mistake::Shared, "set 0"),
            (Mistake::ThroughLeavesStale, "the block's last write"),
        ] {
            let wrong = boxed!(BlockCommitFfi_TO, WrongFactory(mistake, Default::default()));
            let err = super::block_commit(&wrong).unwrap_err();
            assert!(err.contains(says), "{err}");
        }
    }
}

/// Checks a `storage.durability` object: for every call, one at a time and from eight threads at
/// once, on two stores, a sync of *that store's* log that began after the call began must
/// have completed when the call returns. The logs are real files, fsynced.
pub fn durability(imp: &DurabilityBox) -> Result<(), String> {
    durability_at(imp, Depth::LOAD)
}

/// [`durability`] at depth `d` (another seed, `d.scale` times the work), for the conformance
/// suite.
pub fn durability_at(imp: &DurabilityBox, d: Depth) -> Result<(), String> {
    use dubchain_plugin_api::slots::HostWal;
    use std::{
        io::Write,
        sync::{
            atomic::{AtomicU64, Ordering::SeqCst},
            Mutex,
        },
    };
    /// One store's log: an event clock, and the latest clock value at which a completed
    /// sync began.
    struct Log {
        file: Mutex<std::fs::File>,
        clock: AtomicU64,
        durable_from: AtomicU64,
    }
    impl Log {
        fn sync(&self) -> Result<(), dubchain_plugin_api::PluginError> {
            let began = self.clock.fetch_add(1, SeqCst);
            let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
            f.write_all(b"commit\n")
                .and_then(|()| f.sync_all())
                .map_err(|e| dubchain_plugin_api::PluginError::failed(e.to_string()))?;
            self.durable_from.fetch_max(began, SeqCst);
            Ok(())
        }
    }
    let dir = std::env::temp_dir().join(format!("dubchain-selftest-sync-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let log = |name: &str| -> Result<Log, String> {
        Ok(Log {
            file: Mutex::new(std::fs::File::create(dir.join(name)).map_err(|e| e.to_string())?),
            clock: AtomicU64::new(1),
            durable_from: AtomicU64::new(0),
        })
    };
    let logs = [log("a")?, log("b")?];
    let call = |store: usize| -> Result<(), String> {
        let log = &logs[store];
        let began = log.clock.fetch_add(1, SeqCst);
        let wal = HostWal(|| log.sync());
        imp.make_durable(store as u64 + 1, wal.as_wal())
            .into_result()
            .map_err(|e| e.to_string())?;
        if log.durable_from.load(SeqCst) <= began {
            return Err(format!(
                "store {}: the call returned, but no sync of its log began after the call did",
                store + 1
            ));
        }
        Ok(())
    };
    let result = (|| {
        for i in 0..10 * d.scale {
            call(i % 2)?;
        }
        let failure = Mutex::new(None);
        std::thread::scope(|scope| {
            for t in 0..8 * d.scale {
                let (call, failure) = (&call, &failure);
                scope.spawn(move || {
                    for _ in 0..12 + d.seed as usize % 5 {
                        if let Err(e) = call(t % 2) {
                            *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        }
                    }
                });
            }
        });
        match failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(format!("concurrent commits: {e}")),
            None => Ok(()),
        }
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The `storage.durability` self-test against in-process committers: a group commit passes; one
/// that lets a caller ride on a sync that began before it fails.
#[cfg(test)]
mod sync_seam {
    use std::{
        collections::HashMap,
        sync::{Arc, Condvar, Mutex},
    };

    use dubchain_plugin_api::{slots::*, PluginError};

    #[derive(Default)]
    struct Group {
        state: Mutex<(u64, u64, bool)>, // next ticket, synced up to (exclusive), running
        done: Condvar,
    }

    /// Leader/follower group commit per store; `skip` returns at once whenever a sync is
    /// already running (wrongly: that sync may have begun before the call).
    struct GroupCommit {
        skip: bool,
        groups: Mutex<HashMap<u64, Arc<Group>>>,
    }

    impl Durability for GroupCommit {
        fn make_durable(&self, store: u64, wal: &WalSyncRef<'_>) -> Result<(), PluginError> {
            let g = self
                .groups
                .lock()
                .unwrap()
                .entry(store)
                .or_default()
                .clone();
            let mut s = g.state.lock().unwrap();
            let mine = s.0;
            s.0 += 1;
            loop {
                if s.1 > mine {
                    return Ok(());
                }
                if s.2 && self.skip {
                    return Ok(());
                }
                if !s.2 {
                    s.2 = true;
                    let upto = s.0;
                    drop(s);
                    let r = wal.sync().into_result();
                    s = g.state.lock().unwrap();
                    s.2 = false;
                    if r.is_ok() {
                        s.1 = s.1.max(upto);
                    }
                    g.done.notify_all();
                    r?;
                } else {
                    s = g.done.wait(s).unwrap();
                }
            }
        }
    }

    #[test]
    fn durability_self_test_accepts_group_commit_and_refuses_riding_an_earlier_sync() {
        let ok = boxed!(
            DurabilityFfi_TO,
            GroupCommit {
                skip: false,
                groups: Default::default(),
            }
        );
        super::durability(&ok).unwrap();
        let eager = boxed!(
            DurabilityFfi_TO,
            GroupCommit {
                skip: true,
                groups: Default::default(),
            }
        );
        // The race needs overlapping calls; eight threads on real fsyncs overlap, but try a
        // few times before concluding the check cannot see it.
        let refused = (0..5).any(|_| super::durability(&eager).is_err());
        assert!(refused, "riding on an earlier sync went unnoticed");
    }
}

/// Checks a `net.broadcast` object: for transactions, blocks, votes (one, many, none) and
/// every peer count from 1 to 5, one list per peer, one frame per message, each byte for
/// byte the wire format's frame of its message.
pub fn broadcast(imp: &BroadcastBox) -> Result<(), String> {
    use dubchain_plugin_api::{
        types::Blob,
        wire::{frame, Message},
    };
    let records = workload::records(0xb0ad, 2, 30);
    let mut msgs: Vec<Message> = records
        .into_iter()
        .map(|r| match r {
            Record::Transaction(t) => Message::Tx(t),
            Record::Block(b) => Message::Block(b),
        })
        .collect();
    msgs.push(Message::Vote {
        height: 7,
        block: Bytes32([3; 32]),
        validator: 2,
        signature: Blob(vec![0xab; 96].into()),
    });
    for batch in [&msgs[..0], &msgs[..1], &msgs[..]] {
        for peers in 1..=5u32 {
            let lists = imp
                .frames(batch.into(), peers)
                .into_result()
                .map_err(|e| format!("{} messages to {peers} peers: {e}", batch.len()))?;
            for (p, list) in lists.iter().enumerate() {
                for (i, (m, f)) in batch.iter().zip(list.iter()).enumerate() {
                    if f.as_slice() != frame(m).as_slice() {
                        return Err(format!(
                            "{} messages to {peers} peers: peer {p}'s frame {i} is not the message's wire frame",
                            batch.len()
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// The `net.broadcast` self-test against in-process builders: frames shared by every peer
/// pass; frames without their length prefix fail.
#[cfg(test)]
mod broadcast_seam {
    use abi_stable::std_types::{RArc, RVec};
    use dubchain_plugin_api::{slots::*, wire, PluginError};

    struct Shared {
        prefix: bool,
    }

    impl Broadcast for Shared {
        fn frames(
            &self, msgs: &[wire::Message], peers: u32,
        ) -> Result<Vec<Vec<SharedFrame>>, PluginError> {
            let once: Vec<SharedFrame> = msgs
                .iter()
                .map(|m| {
                    RArc::new(RVec::from(if self.prefix {
                        wire::frame(m)
                    } else {
                        wire::payload(m)
                    }))
                })
                .collect();
            Ok((0..peers).map(|_| once.clone()).collect())
        }
    }

    #[test]
    fn broadcast_self_test_accepts_shared_frames_and_refuses_bare_payloads() {
        let shared = |prefix| boxed!(BroadcastFfi_TO, Shared { prefix });
        super::passes_then_refuses(super::broadcast, shared(true), shared(false), "wire frame");
    }
}

/// Checks a `net.send_queue` object: a producer pushes consensus and gossip frames (marked
/// with their class and sequence number) while a consumer pops; then the queue is closed.
/// Every consensus frame must come out exactly once and in order, gossip frames in order
/// (those dropped counted by `push`), and after the close, `Closed` once all is drained.
/// An empty queue must answer `Idle` when nothing arrives.
pub fn send_queue(imp: &SendQueuesBox) -> Result<(), String> {
    send_queue_at(imp, Depth::LOAD)
}

/// [`send_queue`] at depth `d` (another seed, `d.scale` times the work), for the conformance
/// suite.
pub fn send_queue_at(imp: &SendQueuesBox, d: Depth) -> Result<(), String> {
    use abi_stable::std_types::{RArc, RVec};
    use dubchain_plugin_api::slots::{Outgoing, Popped, TrafficClass};
    let queue = imp.new_queue(1).into_result().map_err(|e| e.to_string())?;
    match queue.pop(8, 1).into_result().map_err(|e| e.to_string())? {
        Popped::Idle => {}
        other => return Err(format!("an empty, open queue popped {other:?}")),
    }
    let frame = |class: TrafficClass, seq: u32| Outgoing {
        class,
        frame: RArc::new(RVec::from(
            [[class as u8].as_slice(), &seq.to_be_bytes(), &[0u8; 200]].concat(),
        )),
    };
    let batches = 300 * d.scale as u32 + (d.seed % 7) as u32;
    let mut dropped = 0u64;
    let push = |b: u32, dropped: &mut u64| -> Result<(), String> {
        let batch = vec![
            frame(TrafficClass::Gossip, 2 * b),
            frame(TrafficClass::Consensus, b),
            frame(TrafficClass::Gossip, 2 * b + 1),
        ];
        *dropped += queue
            .push(batch.into())
            .into_result()
            .map_err(|e| format!("push: {e}"))?;
        Ok(())
    };
    // A slow peer: a third of the frames pile up before anything is popped.
    for b in 0..batches / 3 {
        push(b, &mut dropped)?;
    }
    let consumed = std::thread::scope(|scope| {
        let consumer = scope.spawn(|| -> Result<Vec<(u8, u32)>, String> {
            let mut got = Vec::new();
            loop {
                match queue.pop(16, 20).into_result().map_err(|e| e.to_string())? {
                    Popped::Frames(fs) => {
                        for o in fs.iter() {
                            let seq =
                                u32::from_be_bytes(o.frame[1..5].try_into().expect("4 bytes"));
                            got.push((o.frame[0], seq));
                        }
                    }
                    Popped::Idle => {}
                    Popped::Closed => return Ok(got),
                }
            }
        });
        for b in batches / 3..batches {
            push(b, &mut dropped)?;
        }
        queue.close().into_result().map_err(|e| e.to_string())?;
        consumer
            .join()
            .map_err(|_| "the consumer panicked".to_owned())?
    })?;
    let of = |class: TrafficClass| -> Vec<u32> {
        consumed
            .iter()
            .filter(|(c, _)| *c == class as u8)
            .map(|(_, s)| *s)
            .collect()
    };
    let consensus = of(TrafficClass::Consensus);
    if consensus != (0..batches).collect::<Vec<_>>() {
        return Err(format!(
            "consensus frames came out as {} of {batches}, or out of order",
            consensus.len()
        ));
    }
    let gossip = of(TrafficClass::Gossip);
    if gossip.windows(2).any(|w| w[0] >= w[1]) {
        return Err("gossip frames came out of order".into());
    }
    if gossip.len() as u64 + dropped != 2 * batches as u64 {
        return Err(format!(
            "{} gossip frames came out and {dropped} were reported dropped, of {} pushed",
            gossip.len(),
            2 * batches
        ));
    }
    Ok(())
}

/// The `net.send_queue` self-test against in-process queues: a bounded queue that drops
/// the oldest gossip and sends consensus first passes; one that drops consensus fails.
#[cfg(test)]
mod queue_seam {
    use std::{
        collections::VecDeque,
        sync::{Condvar, Mutex},
        time::Duration,
    };

    use dubchain_plugin_api::{slots::*, PluginError};

    #[derive(Default)]
    struct Lanes {
        consensus: VecDeque<Outgoing>,
        gossip: VecDeque<Outgoing>,
        closed: bool,
    }

    struct Bounded {
        gossip_limit: usize,
        drop_consensus: bool,
        lanes: Mutex<Lanes>,
        ready: Condvar,
    }

    impl SendQueue for Bounded {
        fn push(&self, frames: Vec<Outgoing>) -> Result<u64, PluginError> {
            let mut l = self.lanes.lock().unwrap();
            let mut dropped = 0;
            for f in frames {
                match f.class {
                    TrafficClass::Consensus => {
                        if self.drop_consensus && l.consensus.len() > 2 {
                            continue;
                        }
                        l.consensus.push_back(f);
                    }
                    TrafficClass::Gossip => {
                        l.gossip.push_back(f);
                        if l.gossip.len() > self.gossip_limit {
                            l.gossip.pop_front();
                            dropped += 1;
                        }
                    }
                }
            }
            self.ready.notify_all();
            Ok(dropped)
        }
        fn pop(&self, max: u64, wait_ms: u64) -> Result<Popped, PluginError> {
            let mut l = self.lanes.lock().unwrap();
            if l.consensus.is_empty() && l.gossip.is_empty() && !l.closed {
                l = self
                    .ready
                    .wait_timeout(l, Duration::from_millis(wait_ms))
                    .unwrap()
                    .0;
            }
            let mut out = Vec::new();
            while (out.len() as u64) < max.max(1) {
                match l.consensus.pop_front().or_else(|| l.gossip.pop_front()) {
                    Some(f) => out.push(f),
                    None => break,
                }
            }
            Ok(Popped::of(out, l.closed))
        }
        fn written(&self, _bytes: u64, _micros: u64) -> Result<(), PluginError> {
            Ok(())
        }
        fn close(&self) -> Result<(), PluginError> {
            self.lanes.lock().unwrap().closed = true;
            self.ready.notify_all();
            Ok(())
        }
    }

    struct Queues {
        drop_consensus: bool,
    }

    impl SendQueues for Queues {
        type Queue = Bounded;
        fn new_queue(&self, _peer: u32) -> Result<Bounded, PluginError> {
            Ok(Bounded {
                gossip_limit: 16,
                drop_consensus: self.drop_consensus,
                lanes: Mutex::default(),
                ready: Condvar::new(),
            })
        }
    }

    #[test]
    fn send_queue_self_test_accepts_a_bounded_priority_queue_and_refuses_lost_consensus() {
        let queues = |drop_consensus| boxed!(SendQueuesFfi_TO, Queues { drop_consensus });
        let why = "consensus frames";
        super::passes_then_refuses(super::send_queue, queues(false), queues(true), why);
    }
}

/// Checks a `net.transport` object on three loopback TCP connections: payloads the far
/// ends send (empty, small, 100 KiB) arrive in order, per peer; frames the host sends
/// arrive at the far ends byte for byte, in order; and after `shutdown` the far ends see
/// their connections close. Every wait is bounded.
pub fn transport(imp: &TransportBox) -> Result<(), String> {
    transport_at(imp, Depth::LOAD)
}

/// [`transport`] at depth `d`: `2 + d.scale` peers, and beyond the three payloads `d.seed`
/// picks `8 * (d.scale - 1)` more of random sizes up to 64 KiB.
pub fn transport_at(imp: &TransportBox, d: Depth) -> Result<(), String> {
    use std::{
        io::{Read, Write},
        net::{TcpListener, TcpStream},
        os::fd::IntoRawFd,
        sync::Mutex,
        time::{Duration, Instant},
    };

    use abi_stable::{
        sabi_trait::TD_Opaque,
        std_types::{RArc, RResult, RVec},
    };
    use dubchain_plugin_api::{
        slots::{InboundSink, InboundSink_TO, PeerSocket},
        PluginError,
    };

    struct Collect(std::sync::Arc<Mutex<Vec<(u32, Vec<u8>)>>>);
    impl InboundSink for Collect {
        fn deliver(&self, peer: u32, payload: RVec<u8>) -> RResult<(), PluginError> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((peer, payload.into_vec()));
            RResult::ROk(())
        }
    }
    let io = |e: std::io::Error| e.to_string();
    let peers = 2 + d.scale.max(1) as u32;
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io)?;
    let addr = listener.local_addr().map_err(io)?;
    let mut far: Vec<TcpStream> = Vec::new();
    let mut sockets = Vec::new();
    for peer in 0..peers {
        let near = TcpStream::connect(addr).map_err(io)?;
        let (other, _) = listener.accept().map_err(io)?;
        other
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(io)?;
        far.push(other);
        sockets.push(PeerSocket {
            peer,
            fd: near.into_raw_fd(),
        });
    }
    let got = std::sync::Arc::new(Mutex::new(Vec::new()));
    let inbox = InboundSink_TO::from_value(Collect(got.clone()), TD_Opaque);
    let conns = imp
        .connect(sockets.as_slice().into(), inbox)
        .into_result()
        .map_err(|e| e.to_string())?;
    let mut payloads: Vec<Vec<u8>> = vec![Vec::new(), b"hello".to_vec(), vec![7u8; 100 * 1024]];
    {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0x7c9 ^ d.seed);
        for _ in 0..8 * (d.scale.max(1) - 1) {
            let n = rng.gen_range(0..64 * 1024);
            payloads.push((0..n).map(|_| rng.gen()).collect());
        }
    }
    let frame = |p: &[u8]| [&(p.len() as u32).to_be_bytes()[..], p].concat();
    // In: each far end sends every payload, tagged with its peer.
    for (peer, f) in far.iter_mut().enumerate() {
        for p in &payloads {
            let mut tagged = vec![peer as u8];
            tagged.extend_from_slice(p);
            f.write_all(&frame(&tagged)).map_err(io)?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.lock().unwrap_or_else(|p| p.into_inner()).len() < (peers as usize) * payloads.len()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let got = got.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for peer in 0..peers {
        let from: Vec<&Vec<u8>> = got
            .iter()
            .filter(|(p, _)| *p == peer)
            .map(|(_, b)| b)
            .collect();
        let want: Vec<Vec<u8>> = payloads
            .iter()
            .map(|p| [vec![peer as u8], p.clone()].concat())
            .collect();
        if from.len() != want.len() || from.iter().zip(&want).any(|(a, b)| *a != b) {
            return Err(format!(
                "peer {peer} sent {} payloads; {} arrived, or not as sent",
                want.len(),
                from.len()
            ));
        }
    }
    // Out: the host sends each peer the frames; the far ends read them.
    let frames: Vec<Vec<u8>> = payloads.iter().map(|p| frame(p)).collect();
    for peer in 0..peers {
        let shared: Vec<_> = frames
            .iter()
            .map(|f| RArc::new(RVec::from(f.clone())))
            .collect();
        conns
            .send(peer, shared.into())
            .into_result()
            .map_err(|e| e.to_string())?;
    }
    let expected = frames.concat();
    for (peer, f) in far.iter_mut().enumerate() {
        let mut buf = vec![0u8; expected.len()];
        f.read_exact(&mut buf)
            .map_err(|e| format!("peer {peer}: reading what the host sent: {e}"))?;
        if buf != expected {
            return Err(format!(
                "peer {peer} received other bytes than the frames sent"
            ));
        }
    }
    conns.shutdown().into_result().map_err(|e| e.to_string())?;
    for (peer, f) in far.iter_mut().enumerate() {
        let mut one = [0u8; 1];
        match f.read(&mut one) {
            Ok(0) => {}
            Ok(_) => return Err(format!("peer {peer} got bytes after the shutdown")),
            Err(e) => return Err(format!("peer {peer}'s connection did not close: {e}")),
        }
    }
    Ok(())
}

/// The `net.transport` self-test against in-process transports: the thread-per-peer
/// reference passes; the same delivering frames with their length prefix fails.
#[cfg(test)]
mod transport_seam {
    use abi_stable::{
        sabi_trait::TD_Opaque,
        std_types::{RResult, RVec},
    };
    use dubchain_plugin_api::{slots::*, PluginError};

    use crate::testing::ThreadTransport;

    /// Hands the inner transport a sink that puts the length prefix back on.
    struct Prefixing(ThreadTransport);

    struct Prefix(InboundSinkBox);

    impl InboundSink for Prefix {
        fn deliver(&self, peer: u32, payload: RVec<u8>) -> RResult<(), PluginError> {
            let mut framed = (payload.len() as u32).to_be_bytes().to_vec();
            framed.extend_from_slice(&payload);
            self.0.deliver(peer, framed.into())
        }
    }

    impl Transport for Prefixing {
        type Connections = <ThreadTransport as Transport>::Connections;
        fn connect(
            &self, peers: &[PeerSocket], inbound: InboundSinkBox,
        ) -> Result<Self::Connections, PluginError> {
            self.0.connect(
                peers,
                InboundSink_TO::from_value(Prefix(inbound), TD_Opaque),
            )
        }
    }

    #[test]
    fn transport_self_test_accepts_threads_and_refuses_unframed_delivery() {
        let ok = boxed!(TransportFfi_TO, ThreadTransport);
        let raw = boxed!(TransportFfi_TO, Prefixing(ThreadTransport));
        super::passes_then_refuses(super::transport, ok, raw, "not as sent");
    }
}

/// Checks a `storage.state_root` object against [`state_tree::root`] from scratch, block
/// after block: a generated state grown, updated and shrunk by blocks of inserts, updates,
/// removals and removals of keys it never held, over keys chosen to be awkward (all zeros,
/// all ones, pairs that differ only in their last bit, runs that share long prefixes);
/// blocks that change nothing, a block that empties the state, rollbacks (the next block
/// built on an older state, not the last one answered), and states the provider never saw
/// (a restart: it must build from `all`). Every root must be the baseline's.
///
/// [`state_tree::root`]: dubchain_plugin_api::state_tree::root
pub fn state_root(imp: &StateRootBox) -> Result<(), String> {
    state_root_at(imp, Depth::LOAD)
}

/// [`state_root`] at depth `d` (another seed, `d.scale` times the work), for the
/// conformance suite.
pub fn state_root_at(imp: &StateRootBox, d: Depth) -> Result<(), String> {
    use dubchain_plugin_api::slots::HostLeaves;
    use rand::{Rng, SeedableRng};
    use workload::{LeafChanges, LeafState};
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0x5747_e500 ^ d.seed);
    // Keys worth trying: the extremes, neighbours in the last bit, long shared prefixes.
    let mut awkward = vec![Bytes32([0; 32]), Bytes32([0xff; 32])];
    for _ in 0..4 {
        let base: [u8; 32] = rng.gen();
        let mut twin = base;
        twin[31] ^= 1;
        let mut cousin = base;
        cousin[16] ^= 0x80;
        awkward.extend([Bytes32(base), Bytes32(twin), Bytes32(cousin)]);
    }
    // The states answered so far, newest last: a rollback builds on one of them.
    let mut history = vec![LeafState::default()];
    let blocks = 14 * d.scale.max(1);
    for block in 0..blocks {
        let (what, before) = match block % 7 {
            // A restart: a state the provider has never seen.
            5 => (
                "a state it never saw",
                LeafState::random(&mut rng, 50 + block),
            ),
            // A rollback: an older state than the last one answered.
            3 if history.len() > 2 => {
                let k = rng.gen_range(0..history.len() - 1);
                ("a rolled-back state", history[k].clone())
            }
            _ => (
                "the last state",
                history.last().cloned().unwrap_or_default(),
            ),
        };
        let mut changes = LeafChanges::new();
        let n = match block % 5 {
            0 => 0,
            1 => rng.gen_range(150..300),
            _ => rng.gen_range(1..40),
        };
        let held: Vec<Bytes32> = before.0.keys().copied().collect();
        for _ in 0..n {
            let key = match rng.gen_range(0..6) {
                0 => awkward[rng.gen_range(0..awkward.len())],
                1 | 2 if !held.is_empty() => held[rng.gen_range(0..held.len())],
                _ => Bytes32(rng.gen()),
            };
            let value = (rng.gen_range(0..4) != 0).then(|| Bytes32(rng.gen()));
            changes.insert(key, value);
        }
        if block == blocks / 2 {
            // Everything removed, and a key never held.
            changes = held.iter().map(|&k| (k, None)).collect();
            changes.insert(Bytes32(rng.gen()), None);
        }
        let (after, list) = before.apply(&changes);
        let expected = after.root();
        let all = HostLeaves(|| Ok(after.leaves()));
        let got = imp
            .root(before.root(), list.as_slice().into(), all.as_source())
            .into_result()
            .map_err(|e| format!("block {block} ({} changes on {what}): {e}", list.len()))?;
        if got != expected {
            return Err(format!(
                "block {block} ({} changes on {what} of {} leaves): root {got:?}, the baseline's {expected:?}",
                list.len(),
                before.0.len()
            ));
        }
        history.push(after);
    }
    Ok(())
}

#[cfg(test)]
mod state_root_seam {
    use dubchain_plugin_api::{
        slots::{LeafSourceRef, StateRoot, StateRootFfi_TO},
        state_tree::{self, LeafChange},
        types::Bytes32,
        PluginError,
    };

    /// The baseline through the seam, and providers wrong in one way each.
    enum Seam {
        /// Every leaf of `all`, from scratch: right.
        FromScratch,
        /// Answers the parent's root: a provider that never applies anything.
        Parent,
        /// Treats a removal as setting the leaf to zeros.
        RemovalAsZero,
    }

    impl StateRoot for Seam {
        fn root(
            &self, parent: &Bytes32, changes: &[LeafChange], all: &LeafSourceRef<'_>,
        ) -> Result<Bytes32, PluginError> {
            let mut leaves = all.leaves().into_result()?.into_vec();
            match self {
                Seam::FromScratch => {}
                Seam::Parent => return Ok(*parent),
                Seam::RemovalAsZero => {
                    leaves.extend(changes.iter().filter(|c| c.value.is_none()).map(|c| {
                        state_tree::StateLeaf {
                            key: c.key,
                            value: Bytes32::default(),
                        }
                    }));
                    leaves.sort_by_key(|l| l.key);
                    leaves.dedup_by_key(|l| l.key);
                }
            }
            state_tree::root(&mut leaves)
        }
    }

    #[test]
    fn state_root_self_test_accepts_the_baseline_and_refuses_each_mistake() {
        super::state_root(&boxed!(StateRootFfi_TO, Seam::FromScratch)).unwrap();
        for wrong in [Seam::Parent, Seam::RemovalAsZero] {
            let err = super::state_root(&boxed!(StateRootFfi_TO, wrong)).unwrap_err();
            assert!(err.contains("the baseline's"), "{err}");
        }
    }
}
