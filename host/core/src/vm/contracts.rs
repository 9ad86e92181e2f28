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

/// Exercises every control construct the metering must get right: `br_table` over four
/// cases (recursive calls, a memory loop with `br_if`, storage, a trap), early `return`s.
pub const CONTROL_WAT: &str = r#"(module
  (import "env" "storage_get" (func $get (param i64) (result i64)))
  (import "env" "storage_set" (func $set (param i64 i64)))
  (memory 1)
  (func $fib (param $n i64) (result i64)
    (if (result i64) (i64.lt_s (local.get $n) (i64.const 2))
      (then (local.get $n))
      (else (i64.add (call $fib (i64.sub (local.get $n) (i64.const 1)))
                     (call $fib (i64.sub (local.get $n) (i64.const 2)))))))
  (func (export "call") (param $x i64) (result i64)
    (local $i i32)
    block $out
      block $b2
        block $b1
          block $b0
            local.get $x
            i64.const 4
            i64.rem_u
            i32.wrap_i64
            br_table $b0 $b1 $b2 $out
          end
          local.get $x
          i64.const 16
          i64.rem_u
          call $fib
          return
        end
        loop $l
          local.get $i
          i32.const 8
          i32.mul
          local.get $x
          local.get $i
          i64.extend_i32_u
          i64.mul
          i64.store
          local.get $i
          i32.const 1
          i32.add
          local.tee $i
          i32.const 100
          i32.lt_u
          br_if $l
        end
        i32.const 80
        i64.load
        return
      end
      local.get $x
      local.get $x
      call $get
      i64.const 7
      i64.add
      call $set
      local.get $x
      call $get
      return
    end
    unreachable))"#;

/// No imports at all (the metering must add an import section), and float arithmetic
/// whose NaNs must come out the same everywhere.
pub const FLOAT_WAT: &str = r#"(module
  (func (export "call") (param $x i64) (result i64)
    (i64.reinterpret_f64
      (f64.div (f64.convert_i64_s (local.get $x)) (f64.sub (f64.const 3) (f64.const 3))))))"#;

/// A table beyond what a pooled instance slot holds (wasmtime's pool takes 20,000 elements
/// by default), called through: an engine that instantiates from a pool must answer it as
/// the on-demand baseline does.
pub const TABLE_WAT: &str = r#"(module
  (table 30000 funcref)
  (func $nine (result i64) (i64.const 9))
  (elem (i32.const 29999) $nine)
  (func (export "call") (param $x i64) (result i64)
    (i64.add (local.get $x) (call_indirect (result i64) (i32.const 29999)))))"#;

/// The modules and inputs the `vm.*` self-tests and conformance suites run: the reference
/// contracts and [`CONTROL_WAT`], [`FLOAT_WAT`] and [`TABLE_WAT`], each with inputs that take every path.
pub fn test_modules() -> Vec<(&'static str, Vec<u8>, Vec<i64>)> {
    [
        ("counter", COUNTER_WAT, vec![0, 5, -3]),
        ("compute", COMPUTE_WAT, vec![0, 1, 37]),
        ("control", CONTROL_WAT, vec![0, 1, 2, 3, 12, 13, 14, 15]),
        ("float", FLOAT_WAT, vec![0, 1, -1]),
        ("table", TABLE_WAT, vec![0, 4]),
    ]
    .into_iter()
    .map(|(name, wat, inputs)| {
        (
            name,
            wat::parse_str(wat).expect("the test modules assemble"),
            inputs,
        )
    })
    .collect()
}
