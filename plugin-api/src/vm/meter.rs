//! Gas metering by instrumentation (the `vm_gas_optimization` row's baseline).
//!
//! A contract's code is rewritten before it is compiled: every function body is cut into
//! the straight-line segments of [`crate::vm::segments`], and each segment
//! starts with `i64.const cost; call $gas`, where `$gas` is a host function the rewrite
//! imports as `env.gas`. The host function takes the cost from the call's remaining gas, or
//! traps (out of gas) when there is not enough. A loop's body is a segment of
//! its own and pays on every iteration.
//!
//! The cost schedule is part of consensus: a plugin that meters differently must charge the
//! very same amounts at the very same points (same gas used, same out-of-gas point).

use super::{segment_gas, segments};
use wasm_encoder::{
    reencode::{utils, Error as ReencodeError, Reencode},
    CodeSection, EntityType, ImportSection, Instruction, Module, SectionId, TypeSection, ValType,
};
use wasmparser::{FunctionBody, Parser, Payload, TypeRef};

/// The import the rewrite adds: `(import "env" "gas" (func (param i64)))`.
pub const GAS_MODULE: &str = "env";
/// See [`GAS_MODULE`].
pub const GAS_FUNCTION: &str = "gas";

/// Rewrites `code` (a validated module) so that it charges gas through an imported
/// `env.gas(i64)` at the start of every segment. Custom sections are dropped (the name
/// section's function indices would be stale).
pub fn instrument(code: &[u8]) -> Result<Vec<u8>, String> {
    let mut imported_funcs = 0u32;
    let mut types = 0u32;
    let mut has_types = false;
    for payload in Parser::new(0).parse_all(code) {
        match payload.map_err(|e| e.to_string())? {
            Payload::TypeSection(s) => {
                has_types = true;
                for group in s.into_iter() {
                    types += group.map_err(|e| e.to_string())?.types().count() as u32;
                }
            }
            Payload::ImportSection(s) => {
                for import in s.into_imports() {
                    if matches!(import.map_err(|e| e.to_string())?.ty, TypeRef::Func(_)) {
                        imported_funcs += 1;
                    }
                }
            }
            _ => {}
        }
    }
    if !has_types {
        return Err("the module has no type section (so no functions)".into());
    }
    let mut rewriter = GasInjector {
        imported_funcs,
        gas_type: types,
        import_done: false,
    };
    let mut module = Module::new();
    rewriter
        .parse_core_module(&mut module, Parser::new(0), code)
        .map_err(|e| format!("instrumenting: {e}"))?;
    Ok(module.finish())
}

struct GasInjector {
    /// Function imports of the original module; the gas import comes right after them, so
    /// every defined function's index moves up by one.
    imported_funcs: u32,
    /// The index of the `(param i64)` type the rewrite appends.
    gas_type: u32,
    import_done: bool,
}

impl GasInjector {
    fn gas_function(&self) -> u32 {
        self.imported_funcs
    }

    fn gas_import(&mut self, imports: &mut ImportSection) {
        imports.import(
            GAS_MODULE,
            GAS_FUNCTION,
            EntityType::Function(self.gas_type),
        );
        self.import_done = true;
    }
}

type RResult<T> = Result<T, ReencodeError<std::convert::Infallible>>;

impl Reencode for GasInjector {
    type Error = std::convert::Infallible;

    fn function_index(&mut self, func: u32) -> RResult<u32> {
        Ok(if func >= self.imported_funcs {
            func + 1
        } else {
            func
        })
    }

    fn parse_type_section(
        &mut self, types: &mut TypeSection, section: wasmparser::TypeSectionReader<'_>,
    ) -> RResult<()> {
        utils::parse_type_section(self, types, section)?;
        types.ty().function([ValType::I64], []);
        Ok(())
    }

    fn parse_import_section(
        &mut self, imports: &mut ImportSection, section: wasmparser::ImportSectionReader<'_>,
    ) -> RResult<()> {
        utils::parse_import_section(self, imports, section)?;
        self.gas_import(imports);
        Ok(())
    }

    fn intersperse_section_hook(
        &mut self, module: &mut Module, after: Option<SectionId>, before: Option<SectionId>,
    ) -> RResult<()> {
        // A module without imports gets an import section right after its types.
        if !self.import_done && after == Some(SectionId::Type) && before != Some(SectionId::Import)
        {
            let mut imports = ImportSection::new();
            self.gas_import(&mut imports);
            module.section(&imports);
        }
        Ok(())
    }

    fn parse_custom_section(
        &mut self, _module: &mut Module, _section: wasmparser::CustomSectionReader<'_>,
    ) -> RResult<()> {
        Ok(())
    }

    fn parse_function_body(
        &mut self, code: &mut CodeSection, func: FunctionBody<'_>,
    ) -> RResult<()> {
        let gas = self.gas_function();
        meter_body(self, code, func, |cost| {
            vec![Instruction::I64Const(cost as i64), Instruction::Call(gas)]
        })
    }
}

/// What every metering rewrite does with a function body: its operators cut into the
/// segments of [`segments`], each preceded by `charge(its cost)` ([`segment_gas`]), the
/// operators themselves re-encoded by `r` (so index shifts apply). The rewrites differ only
/// in how they charge: this one calls the host, a `vm.metering` provider may do otherwise.
pub fn meter_body<R: Reencode>(
    r: &mut R, code: &mut CodeSection, func: FunctionBody<'_>,
    charge: impl Fn(u64) -> Vec<Instruction<'static>>,
) -> Result<(), ReencodeError<R::Error>> {
    let mut f = r.new_function_with_parsed_locals(&func)?;
    let mut reader = func.get_operators_reader()?;
    let mut ops = Vec::new();
    while !reader.eof() {
        ops.push(reader.read()?);
    }
    for (start, end) in segments(&ops) {
        for ins in charge(segment_gas(end - start)) {
            f.instruction(&ins);
        }
        for op in &ops[start..end] {
            let ins = r.instruction(op.clone())?;
            f.instruction(&ins);
        }
    }
    code.function(&f);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(wat: &str) -> Vec<String> {
        let wasm = wat::parse_str(wat).unwrap();
        let out = instrument(&wasm).unwrap();
        wasmparser::Validator::new().validate_all(&out).unwrap();
        let mut names = Vec::new();
        for p in Parser::new(0).parse_all(&out) {
            if let Payload::CodeSectionEntry(body) = p.unwrap() {
                let mut r = body.get_operators_reader().unwrap();
                while !r.eof() {
                    names.push(format!("{:?}", r.read().unwrap()));
                }
            }
        }
        names
    }

    #[test]
    fn charges_each_segment_its_length_at_its_start() {
        let names = ops(r#"(module (func (export "call") (param i64) (result i64)
                local.get 0
                i32.wrap_i64
                if (result i64) i64.const 1 else i64.const 2 end))"#);
        // [local.get, i32.wrap_i64, if] | [i64.const 1, else] | [i64.const 2, end] | [end]
        let charges: Vec<&String> = names.iter().filter(|n| n.starts_with("I64Const")).collect();
        assert_eq!(
            charges,
            [
                "I64Const { value: 3 }",
                "I64Const { value: 2 }",
                "I64Const { value: 1 }",
                "I64Const { value: 2 }",
                "I64Const { value: 2 }",
                "I64Const { value: 1 }"
            ]
        );
        assert_eq!(names.iter().filter(|n| n.starts_with("Call")).count(), 4);
    }

    #[test]
    fn shifts_defined_functions_past_the_gas_import() {
        let names = ops(r#"(module
              (import "env" "storage_get" (func $get (param i64) (result i64)))
              (func $helper (result i64) i64.const 7)
              (func (export "call") (param i64) (result i64) call $helper))"#);
        // Import 0 is storage_get, import 1 is gas, $helper moved from 1 to 2.
        assert!(
            names.contains(&"Call { function_index: 2 }".to_string()),
            "{names:?}"
        );
        assert!(names.contains(&"Call { function_index: 1 }".to_string()));
    }

    #[test]
    fn segments_cover_every_operator_once() {
        let wasm = wat::parse_str(
            r#"(module (func (param i32) (loop (br_if 0 (local.get 0))) (block (br 0)) nop))"#,
        )
        .unwrap();
        for p in Parser::new(0).parse_all(&wasm) {
            if let Payload::CodeSectionEntry(body) = p.unwrap() {
                let mut r = body.get_operators_reader().unwrap();
                let mut ops = Vec::new();
                while !r.eof() {
                    ops.push(r.read().unwrap());
                }
                let segs = segments(&ops);
                assert_eq!(segs.first().unwrap().0, 0);
                assert_eq!(segs.last().unwrap().1, ops.len());
                assert!(segs.windows(2).all(|w| w[0].1 == w[1].0));
            }
        }
    }
}
