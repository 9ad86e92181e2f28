//! The reference contracts: deployed at genesis, called by the workload, and used by the
//! tests and benchmarks. Written in the wasm text format and assembled when first used.

use std::sync::OnceLock;

use dubchain_plugin_api::{chain::contract_address, types::Bytes32};

/// `call(key)`: adds one to storage `key` and returns the new value (storage-bound).
pub const COUNTER_WAT: &str = r#"(module
  (import "env" "storage_get" (func $get (param i64) (result i64)))
  (import "env" "storage_set" (func $set (param i64 i64)))
  (func (export "call") (param $key i64) (result i64)
    (local $v i64)
    (local.set $v (i64.add (call $get (local.get $key)) (i64.const 1)))
    (call $set (local.get $key) (local.get $v))
    (local.get $v)))"#;

/// `call(n)`: `n` rounds of a 64-bit mixing function seeded from storage key 0, the result
/// stored back under key 0 and returned (compute-bound: about 20 gas a round).
pub const COMPUTE_WAT: &str = r#"(module
  (import "env" "storage_get" (func $get (param i64) (result i64)))
  (import "env" "storage_set" (func $set (param i64 i64)))
  (func (export "call") (param $n i64) (result i64)
    (local $x i64) (local $i i64)
    (local.set $x (call $get (i64.const 0)))
    (block $done
      (loop $next
        (br_if $done (i64.ge_s (local.get $i) (local.get $n)))
        (local.set $x (i64.add (i64.mul (local.get $x) (i64.const 6364136223846793005))
                               (i64.const 1442695040888963407)))
        (local.set $x (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 33))))
        (local.set $i (i64.add (local.get $i) (i64.const 1)))
        (br $next)))
    (call $set (i64.const 0) (local.get $x))
    (local.get $x)))"#;

/// The deployer of the genesis contracts (no key signs for it).
pub const GENESIS_DEPLOYER: Bytes32 = Bytes32([0; 32]);

/// A reference contract: its name, address at genesis and code.
#[derive(Debug, Clone)]
pub struct Contract {
    pub name: &'static str,
    pub address: Bytes32,
    pub code: Vec<u8>,
}

/// The contracts every chain starts with: the counter (nonce 0) and the compute contract
/// (nonce 1) of [`GENESIS_DEPLOYER`].
pub fn genesis() -> &'static [Contract] {
    static GENESIS: OnceLock<Vec<Contract>> = OnceLock::new();
    GENESIS.get_or_init(|| {
        [("counter", COUNTER_WAT), ("compute", COMPUTE_WAT)]
            .into_iter()
            .enumerate()
            .map(|(i, (name, wat))| Contract {
                name,
                address: contract_address(&GENESIS_DEPLOYER, i as u64),
                code: wat::parse_str(wat).expect("the reference contracts assemble"),
            })
            .collect()
    })
}

/// The counter contract at genesis.
pub fn counter() -> &'static Contract {
    &genesis()[0]
}

/// The compute contract at genesis.
pub fn compute() -> &'static Contract {
    &genesis()[1]
}
