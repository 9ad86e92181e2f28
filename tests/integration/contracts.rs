//! Contracts on the node: deploys and calls through blocks on RocksDB, gas charged per the
//! schedule, out-of-gas and traps reverting a call's writes, bad code refused, rollback of
//! contract state with the block.

use dubchain_host::{
    slot::Slots,
    vm::{contracts, Vm, STORAGE_READ_GAS, STORAGE_WRITE_GAS},
};
use dubchain_node::{
    block,
    execute::{execute, TxError},
    state::{Account, BlockWriter, StateStore},
};
use dubchain_plugin_api::{
    chain::{contract_address, signing_bytes},
    exec::{deploy_gas, CALL_BASE_GAS},
    types::{Blob, Bytes32, Bytes64, Receipt, Transaction, TxKind},
};
use dubchain_tests::test_host;
use ed25519_dalek::{Signer, SigningKey};

const BALANCE: u64 = 10_000_000;

/// The host's slots with no plugin: every `vm.*` call takes the baselines.
fn no_plugins() -> &'static Slots {
    static SLOTS: std::sync::OnceLock<Slots> = std::sync::OnceLock::new();
    SLOTS.get_or_init(Slots::default)
}
const PROPOSER: Bytes32 = Bytes32([9; 32]);

/// `tx` executed on the baselines and included (whether it succeeded is its receipt's).
fn included(w: &mut BlockWriter<'_>, tx: &Transaction) -> Receipt {
    execute(w, no_plugins(), tx, &PROPOSER).unwrap().unwrap()
}

fn store_with_sender(dir: &std::path::Path) -> (StateStore, SigningKey, Bytes32) {
    let store = StateStore::open(dir).unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    let me = Bytes32(key.verifying_key().to_bytes());
    block::commit_genesis(
        &test_host(),
        &store,
        &[(
            me,
            Account {
                balance: BALANCE,
                nonce: 0,
            },
        )],
    )
    .unwrap();
    (store, key, me)
}

fn contract_tx(
    key: &SigningKey, kind: TxKind, to: Bytes32, payload: Vec<u8>, gas_limit: u64, nonce: u64,
) -> Transaction {
    let from = Bytes32(key.verifying_key().to_bytes());
    let mut tx = Transaction {
        from,
        to,
        amount: 0,
        fee: 10,
        nonce,
        gas_limit,
        kind,
        payload: Blob(payload.into()),
        access_list: vec![from, to].into(),
        signature: Bytes64([0; 64]),
    };
    tx.signature = Bytes64(key.sign(&signing_bytes(&tx)).to_bytes());
    tx
}

fn call(key: &SigningKey, to: Bytes32, arg: i64, gas_limit: u64, nonce: u64) -> Transaction {
    contract_tx(
        key,
        TxKind::Call,
        to,
        arg.to_le_bytes().to_vec(),
        gas_limit,
        nonce,
    )
}

#[test]
fn deploy_then_call_charges_the_schedule_and_writes_storage() {
    let dir = tempfile::tempdir().unwrap();
    let (store, key, me) = store_with_sender(dir.path());
    let code = wat::parse_str(contracts::COUNTER_WAT).unwrap();
    let address = contract_address(&me, 0);
    let mut w = store.begin_block(1);

    let deploy = contract_tx(&key, TxKind::Deploy, address, code.clone(), 1_000_000, 0);
    let r = included(&mut w, &deploy);
    assert_eq!(
        r,
        Receipt {
            success: true,
            gas_used: deploy_gas(code.len()),
            error: "".into()
        }
    );
    assert_eq!(w.code(&address).unwrap(), Some(code));

    let r1 = included(&mut w, &call(&key, address, 5, 100_000, 1));
    let r2 = included(&mut w, &call(&key, address, 5, 100_000, 2));
    assert!(r1.success && r2.success, "{r1:?}");
    // The second call pays what the first did: same instructions, same host calls.
    assert_eq!(r1.gas_used, r2.gas_used);
    assert!(r1.gas_used > CALL_BASE_GAS + STORAGE_READ_GAS + STORAGE_WRITE_GAS);
    assert_eq!(store.storage(&address, 5).unwrap(), 2);
    assert_eq!(store.storage(&address, 6).unwrap(), 0);

    let paid = deploy.fee + deploy_gas(deploy.payload.0.len()) + 2 * (10 + r1.gas_used);
    assert_eq!(
        w.account(&me).unwrap(),
        Account {
            balance: BALANCE - paid,
            nonce: 3
        }
    );
    assert_eq!(w.account(&PROPOSER).unwrap().balance, paid);
}

#[test]
fn out_of_gas_reverts_the_calls_writes_and_charges_all_its_gas() {
    let dir = tempfile::tempdir().unwrap();
    let (store, key, me) = store_with_sender(dir.path());
    let compute = contracts::compute().address;
    let mut w = store.begin_block(1);
    let before = store.storage(&compute, 0).unwrap();

    let limit = CALL_BASE_GAS + 10_000;
    let r = included(&mut w, &call(&key, compute, 100_000, limit, 0));
    assert_eq!(
        r,
        Receipt {
            success: false,
            gas_used: limit,
            error: "out of gas".into()
        }
    );
    assert_eq!(store.storage(&compute, 0).unwrap(), before);
    assert_eq!(
        w.account(&me).unwrap(),
        Account {
            balance: BALANCE - 10 - limit,
            nonce: 1
        }
    );

    // The same call with enough gas writes key 0; it costs less than its limit.
    let r = included(&mut w, &call(&key, compute, 100, limit, 1));
    assert!(r.success && r.gas_used < limit, "{r:?}");
    assert_ne!(store.storage(&compute, 0).unwrap(), before);
}

#[test]
fn the_out_of_gas_point_is_exact() {
    // The gas a call needs, found by running it; one unit less runs out.
    let code = &contracts::compute().code;
    let run_rounds = |rounds, gas| {
        Vm::shared()
            .call(
                code,
                contracts::compute().address,
                rounds,
                gas,
                &dubchain_host::vm::MemoryStorage::default(),
            )
            .unwrap()
    };
    let run = |gas| run_rounds(37, gas);
    let needed = run(1_000_000).gas_used;
    assert!(run(needed).result.is_ok());
    assert_eq!(
        run(needed - 1).result.unwrap_err().to_string(),
        "out of gas"
    );
    // Every instruction is charged: a call that does more rounds pays per round.
    let per_round = (
        run_rounds(37, 1_000_000).gas_used,
        run_rounds(38, 1_000_000).gas_used,
    );
    assert!(per_round.1 > per_round.0);
    assert_eq!(dubchain_host::vm::INSTRUCTION_GAS, 1);
}

#[test]
fn bad_code_missing_contracts_and_traps_fail_with_gas_charged() {
    let dir = tempfile::tempdir().unwrap();
    let (store, key, me) = store_with_sender(dir.path());
    let mut w = store.begin_block(1);

    // Not wasm: included, charged the deploy's gas, nothing stored.
    let junk = vec![0xde, 0xad, 0xbe, 0xef];
    let bad = contract_tx(
        &key,
        TxKind::Deploy,
        contract_address(&me, 0),
        junk.clone(),
        1_000_000,
        0,
    );
    let r = included(&mut w, &bad);
    assert!(!r.success);
    assert!(r.error.as_str().starts_with("invalid contract:"), "{r:?}");
    assert_eq!(r.gas_used, deploy_gas(junk.len()));
    assert_eq!(w.code(&contract_address(&me, 0)).unwrap(), None);

    // Nothing deployed at the address.
    let nowhere = Bytes32([5; 32]);
    let r = included(&mut w, &call(&key, nowhere, 1, 100_000, 1));
    assert_eq!((r.success, r.gas_used), (false, CALL_BASE_GAS));
    assert!(r.error.as_str().starts_with("no contract at"));

    // A contract that traps after writing: the write is reverted.
    let trapping = wat::parse_str(
        r#"(module (import "env" "storage_set" (func $set (param i64 i64)))
             (func (export "call") (param i64) (result i64)
               (call $set (i64.const 1) (i64.const 99)) unreachable))"#,
    )
    .unwrap();
    let address = contract_address(&me, 2);
    let d = contract_tx(&key, TxKind::Deploy, address, trapping, 1_000_000, 2);
    assert!(included(&mut w, &d).success);
    let r = included(&mut w, &call(&key, address, 0, 100_000, 3));
    assert_eq!(
        r.error.as_str(),
        "trap: wasm trap: wasm `unreachable` instruction executed"
    );
    assert_eq!(store.storage(&address, 1).unwrap(), 0);

    // A balance that cannot cover fee plus the whole gas limit is rejected: no effect.
    let greedy = call(&key, contracts::counter().address, 1, BALANCE, 4);
    assert!(matches!(
        execute(&mut w, no_plugins(), &greedy, &PROPOSER).unwrap(),
        Err(TxError::InsufficientBalance { .. })
    ));
    assert_eq!(w.account(&me).unwrap().nonce, 4);
}

#[test]
fn contract_state_rolls_back_with_its_block() {
    let dir = tempfile::tempdir().unwrap();
    let counter = contracts::counter().address;
    let root = {
        let (store, key, me) = store_with_sender(dir.path());
        let root = store.state_root().unwrap();
        let mut w = store.begin_block(1);
        let code = wat::parse_str(contracts::COUNTER_WAT).unwrap();
        let d = contract_tx(
            &key,
            TxKind::Deploy,
            contract_address(&me, 0),
            code,
            1_000_000,
            0,
        );
        assert!(included(&mut w, &d).success);
        let c = call(&key, counter, 3, 100_000, 1);
        assert!(included(&mut w, &c).success);
        assert_ne!(store.state_root().unwrap(), root);
        // The process "dies" here: the block never commits.
        std::mem::forget(w);
        root
    };
    let store = StateStore::open(dir.path()).unwrap();
    assert_eq!(store.state_root().unwrap(), root);
    assert_eq!(store.storage(&counter, 3).unwrap(), 0);
    let me = Bytes32(SigningKey::from_bytes(&[7; 32]).verifying_key().to_bytes());
    assert_eq!(store.code(&contract_address(&me, 0)).unwrap(), None);
    // The genesis contracts are part of the state.
    assert!(store.code(&counter).unwrap().is_some());
}
