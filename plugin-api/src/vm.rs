//! The contract interface and the gas schedule: what a contract may be, and what running it
//! costs. Shared by the host's VM (the baselines of the `vm.*` slots) and by plugins that
//! load, meter, compile or feed contracts differently, so that they charge exactly the
//! same gas at exactly the same points.
//!
//! # Contracts
//!
//! A contract is a core wasm module (WebAssembly 1.0 plus sign extension, saturating
//! float-to-int conversion and multi-value; no SIMD, threads, bulk memory or reference
//! types: [`features`]) that
//!
//! * exports `call: (i64) -> i64`, which a call transaction runs with its 8-byte input as
//!   the argument;
//! * may import `env.storage_get: (i64) -> i64` and `env.storage_set: (i64, i64) -> ()`,
//!   the contract's own key-value storage (an absent key reads 0; writing 0 deletes it);
//! * imports nothing else, and starts with at most [`MAX_MEMORY_PAGES`] pages of memory
//!   (nor may it grow past them).
//!
//! # Gas
//!
//! Every function body is cut into straight-line [`segments`]: a segment ends after any
//! instruction that transfers control or ends a block (`block`, `loop`, `if`, `else`,
//! `end`, `br`, `br_if`, `br_table`, `return`, `unreachable`). Every branch lands at a
//! segment's first instruction, so once a segment starts it runs to its end unless it
//! traps. A segment costs [`INSTRUCTION_GAS`] per instruction, charged **before** its first
//! instruction runs; when less gas is left than the segment costs, the call runs out of gas
//! there, and all its gas is used. A `storage_get` costs [`STORAGE_READ_GAS`] and a
//! `storage_set` [`STORAGE_WRITE_GAS`], charged when called, the same way.

pub mod meter;

use wasmparser::{
    ExternalKind, FuncType, Operator, Parser, Payload, TypeRef, ValType, Validator, WasmFeatures,
};

/// Gas per executed wasm instruction.
pub const INSTRUCTION_GAS: u64 = 1;
/// Gas a `storage_get` costs, on top of its instructions.
pub const STORAGE_READ_GAS: u64 = 200;
/// Gas a `storage_set` costs.
pub const STORAGE_WRITE_GAS: u64 = 5_000;
/// The most linear memory a contract may have, in 64 KiB pages: 1 MiB.
pub const MAX_MEMORY_PAGES: u64 = 16;

/// The global a `GasCounter::Global` rewrite exports: the gas left (-1 once it ran out).
/// Contracts may not export names starting with `dubchain_`.
pub const GAS_GLOBAL: &str = "dubchain_gas";

/// The engine settings contracts are compiled under (with Cranelift), which any compiler
/// of contracts must use too: NaN results canonicalised (float results are deterministic);
/// everything else wasmtime's defaults.
pub const ENGINE_SETTINGS: &str = "cranelift, nan canonicalization on";

/// The wasm features a contract may use.
pub fn features() -> WasmFeatures {
    WasmFeatures::WASM1
        | WasmFeatures::SIGN_EXTENSION
        | WasmFeatures::SATURATING_FLOAT_TO_INT
        | WasmFeatures::MULTI_VALUE
}

/// Decodes and validates contract code: a valid module with only the [`features`]
/// allowed, the `call` export, only the storage imports, memory within
/// [`MAX_MEMORY_PAGES`]. The error says what is wrong.
pub fn validate_code(code: &[u8]) -> Result<(), String> {
    let types = Validator::new_with_features(features())
        .validate_all(code)
        .map_err(|e| e.message().to_string())?;
    let types = types.as_ref();
    let func_type = |index: u32| -> FuncType {
        types[types.core_type_at_in_module(index)]
            .unwrap_func()
            .clone()
    };
    let i64_ = ValType::I64;
    let mut call = false;
    for payload in Parser::new(0).parse_all(code) {
        match payload.map_err(|e| e.message().to_string())? {
            Payload::ImportSection(s) => {
                for import in s.into_imports() {
                    let import = import.map_err(|e| e.message().to_string())?;
                    let TypeRef::Func(t) = import.ty else {
                        return Err(format!(
                            "imports {}.{}, which is not a function",
                            import.module, import.name
                        ));
                    };
                    let ty = func_type(t);
                    let ok = import.module == "env"
                        && match import.name {
                            "storage_get" => ty.params() == [i64_] && ty.results() == [i64_],
                            "storage_set" => ty.params() == [i64_, i64_] && ty.results().is_empty(),
                            _ => false,
                        };
                    if !ok {
                        return Err(format!(
                            "imports {}.{} {ty}, which the host does not provide",
                            import.module, import.name
                        ));
                    }
                }
            }
            Payload::MemorySection(s) => {
                for m in s {
                    let m = m.map_err(|e| e.message().to_string())?;
                    if m.initial > MAX_MEMORY_PAGES {
                        return Err(format!(
                            "starts with {} pages of memory, more than the {MAX_MEMORY_PAGES} allowed",
                            m.initial
                        ));
                    }
                }
            }
            Payload::ExportSection(s) => {
                for e in s {
                    let e = e.map_err(|e| e.message().to_string())?;
                    if e.name.starts_with("dubchain_") {
                        return Err(format!("exports `{}`, a name the host reserves", e.name));
                    }
                    if e.name == "call" {
                        if e.kind != ExternalKind::Func {
                            return Err("exports `call`, but not as a function".into());
                        }
                        let ty = types[types.core_function_at(e.index)].unwrap_func();
                        if ty.params() != [i64_] || ty.results() != [i64_] {
                            return Err(format!("exports `call` as {ty}, not (i64) -> i64"));
                        }
                        call = true;
                    }
                }
            }
            _ => {}
        }
    }
    if !call {
        return Err("does not export `call`".into());
    }
    Ok(())
}

/// Whether `op` ends a straight-line segment (see the module docs).
pub fn ends_segment(op: &Operator<'_>) -> bool {
    matches!(
        op,
        Operator::Block { .. }
            | Operator::Loop { .. }
            | Operator::If { .. }
            | Operator::Else
            | Operator::End
            | Operator::Br { .. }
            | Operator::BrIf { .. }
            | Operator::BrTable { .. }
            | Operator::Return
            | Operator::Unreachable
    )
}

/// The segments of a function body as `(start, end)` operator index ranges (end
/// exclusive), in order; together they cover every operator once.
pub fn segments(ops: &[Operator<'_>]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, op) in ops.iter().enumerate() {
        if ends_segment(op) || i + 1 == ops.len() {
            out.push((start, i + 1));
            start = i + 1;
        }
    }
    out
}

/// The gas a segment of `len` instructions costs.
pub fn segment_gas(len: usize) -> u64 {
    len as u64 * INSTRUCTION_GAS
}
