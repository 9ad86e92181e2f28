//! Suites of the `vm.*` slots, through the host's slots, on the drivers of
//! [`crate::vm::check`]: the test contracts and generated ones (random arithmetic, branches,
//! bounded loops, divisions that trap) one module per case, at gas limits swept from none
//! to ample; code loading on valid, refused, mutated and missing code.

use dubchain_plugin_api::{
    slots::{CallRequest, CodeSourceRef, ContractStoreRef},
    types::Bytes32,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::{outcome, CaseResult};
use crate::{
    vm::{
        check::{self, TestModule},
        meter,
    },
    Host,
};

/// A contract generated from `seed`: a body of random statements over the argument
/// (wrapping arithmetic, comparisons, if/else, loops bounded by a counter, divisions by
/// constants that may be 0 or -1, so some inputs trap), with inputs that include the
/// extremes.
fn generated(seed: u64) -> TestModule {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut body = String::new();
    for _ in 0..rng.gen_range(4..24) {
        let c: i64 = rng.gen_range(-40..40);
        let stmt = match rng.gen_range(0..6) {
            0 => format!("(local.set 0 (i64.add (local.get 0) (i64.const {c})))"),
            1 => format!("(local.set 0 (i64.mul (local.get 0) (i64.const {c})))"),
            2 => format!(
                "(if (i64.gt_s (local.get 0) (i64.const {c})) (then (local.set 0 (i64.sub (local.get 0) (i64.const 3)))) (else (local.set 0 (i64.xor (local.get 0) (i64.const {c})))))"
            ),
            3 => format!(
                "(local.set 1 (i64.const {})) (block (loop (br_if 1 (i64.eqz (local.get 1))) (local.set 0 (i64.add (local.get 0) (local.get 1))) (local.set 1 (i64.sub (local.get 1) (i64.const 1))) (br 0)))",
                rng.gen_range(0..200)
            ),
            4 => format!(
                "(local.set 0 (i64.div_s (local.get 0) (i64.const {})))",
                [0, -1, 1, 7, c][rng.gen_range(0..5)]
            ),
            _ => "(local.set 0 (i64.rotl (local.get 0) (i64.const 13)))".to_owned(),
        };
        body.push_str(&stmt);
    }
    let wat = format!(
        "(module (func (export \"call\") (param i64) (result i64) (local i64) {body} (local.get 0)))"
    );
    let code = wat::parse_str(&wat).expect("the generator writes valid text");
    (
        format!("generated contract {seed:#x}"),
        code,
        vec![0, 1, -7, 1_000_003, i64::MIN, i64::MAX],
    )
}

/// The test contracts and eight generated ones.
fn modules() -> Vec<TestModule> {
    let mut m = check::test_modules();
    m.extend((0..8).map(|i| generated(0xa11 + i)));
    m
}

/// `vm.metering`: each module metered by the plugin and run by the host gives the
/// baseline's result, writes, gas and trap, at every limit of the sweep.
pub fn check_metering(host: &Host) -> Vec<CaseResult> {
    modules()
        .into_iter()
        .map(|m| {
            let r = check::metered_calls(std::slice::from_ref(&m), check::sweep, |code| {
                host.slots
                    .metering
                    .instrument(code)
                    .ok_or_else(|| "the plugin did not answer".to_owned())
            });
            outcome(
                format!("{}: every input, gas swept from 0 to ample", m.0),
                r,
            )
        })
        .collect()
}

/// `vm.module_cache`: each module, metered the baseline way, run by the plugin twice at
/// every limit of the sweep; then every module interleaved (a cache keyed wrongly answers
/// for the wrong module); then code that does not compile.
pub fn check_module_cache(host: &Host) -> Vec<CaseResult> {
    let run = |request: &CallRequest<'_>, store: ContractStoreRef<'_>| {
        host.slots
            .module_cache
            .run(request, store)
            .ok_or_else(|| "the plugin did not answer".to_owned())
    };
    let all = modules();
    let mut cases: Vec<CaseResult> = all
        .iter()
        .map(|m| {
            let r = check::cached_calls(std::slice::from_ref(m), check::sweep, run);
            outcome(
                format!("{}: every input, gas swept, each call twice", m.0),
                r,
            )
        })
        .collect();
    let interleaved = (|| {
        for round in 0..3 {
            for (name, code, inputs) in &all {
                let wasm = meter::instrument(code)?;
                check::call_once(&wasm, inputs[round % inputs.len()], check::AMPLE_GAS, run)
                    .map_err(|e| format!("{name}, round {round}: {e}"))?;
            }
        }
        Ok(())
    })();
    cases.push(outcome(
        "every module interleaved, three rounds".to_owned(),
        interleaved,
    ));
    cases.push(outcome(
        "code that does not compile".to_owned(),
        check::call_once(b"\0asm\x01\0\0\0\x01\x05", 0, 1_000, run),
    ));
    cases
}

/// `vm.code_loader`: the stored codes of every loader check, 64 single-bit mutations of
/// valid modules, each asked twice, and an address whose code changed under it.
pub fn check_code_loader(host: &Host) -> Vec<CaseResult> {
    let load = |contract: &Bytes32, hash: &Bytes32, source: CodeSourceRef<'_>| {
        host.slots
            .code_loader
            .load(contract, hash, source)
            .ok_or_else(|| "the plugin did not answer".to_owned())
    };
    let mut rng = ChaCha20Rng::seed_from_u64(0x10ad);
    let valid = modules();
    let mut codes = check::stored_codes();
    for i in 0..64 {
        let mut c = valid[i % valid.len()].1.clone();
        let at = rng.gen_range(0..c.len());
        c[at] ^= 1 << rng.gen_range(0..8);
        codes.push((
            format!("mutated module {i} (a bit flipped at byte {at})"),
            c,
        ));
    }
    let mut cases: Vec<CaseResult> = codes
        .iter()
        .enumerate()
        .map(|(i, (name, code))| {
            let r = check::loads(&Bytes32([i as u8; 32]), code, load);
            outcome(format!("{name}, asked twice"), r)
        })
        .collect();
    cases.push(outcome(
        "an address whose code changed (a deploy rolled back and redone)".to_owned(),
        check::redeploy(load),
    ));
    cases
}
