//! `vm_gas_optimization`: the `vm.metering` slot, with gas counted in a wasm global.
//!
//! The baseline (`dubchain_plugin_api::vm::meter`) starts every straight-line segment with
//! `i64.const cost; call $env.gas`: a call out of the compiled code into the host per basic
//! block, which in a compute-bound loop costs more than the loop's own work. This rewrite
//! charges the same costs at the same points without leaving wasm: the module gets a
//! mutable `i64` global, exported as [`GAS_GLOBAL`], holding the gas left (the host sets it
//! before the call and reads it after; its storage functions charge it), and each segment
//! starts with
//!
//! ```wasm
//! global.get $gas  i64.const cost  i64.lt_s
//! if  i64.const -1  global.set $gas  unreachable  end
//! global.get $gas  i64.const cost  i64.sub  global.set $gas
//! ```
//!
//! so a segment that costs more than is left sets the global to -1 and traps, which the
//! host reads as running out of gas: the baseline's out-of-gas point, all the call's gas
//! used. The inserted `if` is closed before the segment's own operators, so no branch depth
//! of the original code changes; the global is appended after the module's own, so no
//! global index changes either.

use dubchain_plugin_api::{
    abi_stable::std_types::RVec,
    export_plugin,
    slots::{GasCounter, Metered, Metering},
    vm::{meter::meter_body, GAS_GLOBAL},
    PluginError,
};
use wasm_encoder::{
    reencode::{utils, Error as ReencodeError, Reencode},
    BlockType, CodeSection, ConstExpr, ExportKind, ExportSection, GlobalSection, GlobalType,
    Instruction, Module, SectionId, ValType,
};
use wasmparser::{FunctionBody, Parser, Payload, TypeRef};

/// The plugin (no settings).
#[derive(Debug, Default)]
pub struct GlobalGas;

impl Metering for GlobalGas {
    fn instrument(&self, code: &[u8]) -> Result<Metered, PluginError> {
        instrument(code)
            .map(|wasm| Metered {
                wasm: RVec::from(wasm),
                counter: GasCounter::Global,
            })
            .map_err(PluginError::invalid_input)
    }
}

/// Rewrites `code` (a validated module) to charge gas to an exported mutable global at the
/// start of every segment. Custom sections are dropped, as the baseline drops them.
pub fn instrument(code: &[u8]) -> Result<Vec<u8>, String> {
    let mut globals = 0u32;
    for payload in Parser::new(0).parse_all(code) {
        match payload.map_err(|e| e.to_string())? {
            Payload::ImportSection(s) => {
                for import in s.into_imports() {
                    if matches!(import.map_err(|e| e.to_string())?.ty, TypeRef::Global(_)) {
                        globals += 1;
                    }
                }
            }
            Payload::GlobalSection(s) => globals += s.count(),
            _ => {}
        }
    }
    let mut rewriter = GlobalInjector {
        gas: globals,
        global_done: false,
        export_done: false,
    };
    let mut module = Module::new();
    rewriter
        .parse_core_module(&mut module, Parser::new(0), code)
        .map_err(|e| format!("instrumenting: {e}"))?;
    if !rewriter.global_done || !rewriter.export_done {
        return Err("instrumenting: the module has no place for the gas global".into());
    }
    Ok(module.finish())
}

struct GlobalInjector {
    /// The index of the gas global: after every global the module imports or defines.
    gas: u32,
    global_done: bool,
    export_done: bool,
}

type RResult<T> = Result<T, ReencodeError<std::convert::Infallible>>;

impl GlobalInjector {
    fn gas_global(&mut self, globals: &mut GlobalSection) {
        globals.global(
            GlobalType {
                val_type: ValType::I64,
                mutable: true,
                shared: false,
            },
            &ConstExpr::i64_const(0),
        );
        self.global_done = true;
    }

    fn gas_export(&mut self, exports: &mut ExportSection) {
        exports.export(GAS_GLOBAL, ExportKind::Global, self.gas);
        self.export_done = true;
    }
}

/// The sections that come after the global section, in the binary's order.
fn after_globals(id: SectionId) -> bool {
    matches!(
        id,
        SectionId::Export
            | SectionId::Start
            | SectionId::Element
            | SectionId::DataCount
            | SectionId::Code
            | SectionId::Data
    )
}

impl Reencode for GlobalInjector {
    type Error = std::convert::Infallible;

    fn parse_global_section(
        &mut self, globals: &mut GlobalSection, section: wasmparser::GlobalSectionReader<'_>,
    ) -> RResult<()> {
        utils::parse_global_section(self, globals, section)?;
        self.gas_global(globals);
        Ok(())
    }

    fn parse_export_section(
        &mut self, exports: &mut ExportSection, section: wasmparser::ExportSectionReader<'_>,
    ) -> RResult<()> {
        utils::parse_export_section(self, exports, section)?;
        self.gas_export(exports);
        Ok(())
    }

    fn intersperse_section_hook(
        &mut self, module: &mut Module, _after: Option<SectionId>, before: Option<SectionId>,
    ) -> RResult<()> {
        // A module without globals gets a global section where one would stand, and one
        // without exports an export section (a contract always exports `call`, but the
        // rewrite does not rely on it).
        if !self.global_done && before.is_none_or(after_globals) {
            let mut globals = GlobalSection::new();
            self.gas_global(&mut globals);
            module.section(&globals);
        }
        if !self.export_done && before.is_none_or(|id| after_globals(id) && id != SectionId::Export)
        {
            let mut exports = ExportSection::new();
            self.gas_export(&mut exports);
            module.section(&exports);
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
        let gas = self.gas;
        meter_body(self, code, func, |cost| {
            let cost = cost as i64;
            vec![
                Instruction::GlobalGet(gas),
                Instruction::I64Const(cost),
                Instruction::I64LtS,
                Instruction::If(BlockType::Empty),
                Instruction::I64Const(-1),
                Instruction::GlobalSet(gas),
                Instruction::Unreachable,
                Instruction::End,
                Instruction::GlobalGet(gas),
                Instruction::I64Const(cost),
                Instruction::I64Sub,
                Instruction::GlobalSet(gas),
            ]
        })
    }
}

export_plugin! {
    name: "vm_gas_optimization",
    init: dubchain_plugin_api::settings::none,
    metering: |_: &str| Ok(GlobalGas),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rewrite_validates_and_exports_the_gas_global_with_or_without_globals() {
        for wat in [
            r#"(module (func (export "call") (param i64) (result i64) local.get 0))"#,
            r#"(module (global $g (mut i32) (i32.const 5))
                 (func (export "call") (param i64) (result i64) global.get $g drop local.get 0))"#,
        ] {
            let out = instrument(&wat::parse_str(wat).unwrap()).unwrap();
            wasmparser::Validator::new().validate_all(&out).unwrap();
            let exported = Parser::new(0).parse_all(&out).any(|p| match p.unwrap() {
                Payload::ExportSection(s) => s.into_iter().any(|e| e.unwrap().name == GAS_GLOBAL),
                _ => false,
            });
            assert!(exported, "{wat}");
        }
    }
}
