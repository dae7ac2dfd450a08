//! Rewrites an admitted module into the two variants the sandbox executes.
//!
//! Both variants run the module's own code with two additions:
//!
//! * **Metering.** Fuel is opml's own, charged by code inserted at the start
//!   of every *metered region* of the original code: a maximal run of
//!   instructions that control can only enter at its first instruction
//!   (function entry and the instruction after each `loop`, `if`, `else` and
//!   `end`). The charge is the number of original instructions in the region,
//!   where `block`, `loop`, `else` and `end` count 0 and every other
//!   instruction 1. A region is charged in full before it runs, so leaving it
//!   early (branch, return, trap) has still paid for all of it. If the fuel
//!   left is smaller than the charge, the step traps with `OutOfFuel` and the
//!   region is not charged. Because the charges depend only on the original
//!   code, the fuel of a step is the same in both variants, whatever else the
//!   variants add, and it does not depend on the wasmi version either.
//! * **Memory accounting**, which differs:
//!   - [`Variant::Fast`] (the prover's per-step path) keeps the real linear
//!     memory and, after every successful access, writes a 1 into a second
//!     memory (`__opml_marks`) of three regions of `max_chunks` bytes: a load
//!     marks the chunk of its first byte in region R; a store marks the chunk
//!     of its first byte in region W and, if wider than a byte, the chunk of
//!     its last byte in region L. The sandbox reads the marks after each
//!     step: the step *touched* R ∪ W (counted against the module's
//!     `max_touched`), and *wrote* W ∪ L (rehashed). The chunk of a wide
//!     load's last byte is not marked: it is not counted against the limit
//!     and the step does not change it, so the fast path needs no mark for it
//!     (the proof still carries it, see [`crate::vmem`]). The module cannot
//!     name the second memory, so the marks cannot be forged.
//!   - [`Variant::Virtual`] (the verifier, and the prover when it records a
//!     proof) has no linear memory at all: every load, store, `memory.size`
//!     and `memory.grow` becomes a call of a host function in module `opml`
//!     (see [`HOST_FUNCS`]), which serves it from whatever memory the host
//!     has: the sparse chunks of a proof, or the full memory while recording.
//!
//! Added exports: `__opml_fuel` (i64, fuel left in the step), `__opml_oof`
//! (i32, 1 after an out-of-fuel trap) and in the fast variant
//! `__opml_marks`. Only `step` and, in the fast variant, `memory` are kept
//! from the module's own exports.

use crate::admission::ModuleInfo;
use alloc::{format, string::String, vec::Vec};
use wasm_encoder::{
    CodeSection, ConstExpr, DataSection, EntityType, ExportKind, ExportSection, Function,
    FunctionSection, GlobalSection, GlobalType, ImportSection, Instruction, MemArg, MemorySection,
    MemoryType, Module, TypeSection, ValType,
};
use wasmparser::{Operator, Parser, Payload};

/// Host module name of the virtual memory imports.
pub const HOST_MODULE: &str = "opml";
/// Export name of the fuel-left global.
pub const FUEL_GLOBAL: &str = "__opml_fuel";
/// Export name of the out-of-fuel flag global.
pub const OOF_GLOBAL: &str = "__opml_oof";
/// Export name of the access-marks memory (fast variant).
pub const MARKS_MEMORY: &str = "__opml_marks";

/// Regions of the marks memory: first-byte reads, first-byte writes,
/// last-byte writes, each `max_chunks` bytes.
pub const MARK_REGIONS: u64 = 3;

/// Which executable variant to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Real memory plus read/write marks.
    Fast,
    /// Memory served by host functions.
    Virtual,
}

/// The value type a host memory function moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    I32,
    I64,
}

/// One host function of the virtual variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostOp {
    /// `(addr: i32, offset: i32) -> T`: load `bytes` bytes, sign- or zero-extend.
    Load { ty: Width, bytes: u8, signed: bool },
    /// `(addr: i32, value: T, offset: i32) -> ()`: store the low `bytes` bytes.
    Store { ty: Width, bytes: u8 },
    /// `() -> i32`: memory size in pages.
    Size,
    /// `(delta: i32) -> i32`: grow, old size or -1.
    Grow,
}

/// The closed set of host functions, in import order.
pub const HOST_FUNCS: [(&str, HostOp); 21] = {
    use HostOp::*;
    use Width::*;
    [
        (
            "i32_load",
            Load {
                ty: I32,
                bytes: 4,
                signed: false,
            },
        ),
        (
            "i64_load",
            Load {
                ty: I64,
                bytes: 8,
                signed: false,
            },
        ),
        (
            "i32_load8_s",
            Load {
                ty: I32,
                bytes: 1,
                signed: true,
            },
        ),
        (
            "i32_load8_u",
            Load {
                ty: I32,
                bytes: 1,
                signed: false,
            },
        ),
        (
            "i32_load16_s",
            Load {
                ty: I32,
                bytes: 2,
                signed: true,
            },
        ),
        (
            "i32_load16_u",
            Load {
                ty: I32,
                bytes: 2,
                signed: false,
            },
        ),
        (
            "i64_load8_s",
            Load {
                ty: I64,
                bytes: 1,
                signed: true,
            },
        ),
        (
            "i64_load8_u",
            Load {
                ty: I64,
                bytes: 1,
                signed: false,
            },
        ),
        (
            "i64_load16_s",
            Load {
                ty: I64,
                bytes: 2,
                signed: true,
            },
        ),
        (
            "i64_load16_u",
            Load {
                ty: I64,
                bytes: 2,
                signed: false,
            },
        ),
        (
            "i64_load32_s",
            Load {
                ty: I64,
                bytes: 4,
                signed: true,
            },
        ),
        (
            "i64_load32_u",
            Load {
                ty: I64,
                bytes: 4,
                signed: false,
            },
        ),
        ("i32_store", Store { ty: I32, bytes: 4 }),
        ("i64_store", Store { ty: I64, bytes: 8 }),
        ("i32_store8", Store { ty: I32, bytes: 1 }),
        ("i32_store16", Store { ty: I32, bytes: 2 }),
        ("i64_store8", Store { ty: I64, bytes: 1 }),
        ("i64_store16", Store { ty: I64, bytes: 2 }),
        ("i64_store32", Store { ty: I64, bytes: 4 }),
        ("memory_size", Size),
        ("memory_grow", Grow),
    ]
};

/// The instrumenter met something admission should have rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstrumentError(pub String);

impl core::fmt::Display for InstrumentError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "cannot instrument module: {}", self.0)
    }
}

fn err(e: impl core::fmt::Display) -> InstrumentError {
    InstrumentError(format!("{e}"))
}

fn val_type(t: wasmparser::ValType) -> Result<ValType, InstrumentError> {
    match t {
        wasmparser::ValType::I32 => Ok(ValType::I32),
        wasmparser::ValType::I64 => Ok(ValType::I64),
        other => Err(err(format_args!("value type {other:?}"))),
    }
}

/// Fuel cost of one original instruction.
fn cost(op: &Operator) -> u64 {
    match op {
        Operator::Block { .. } | Operator::Loop { .. } | Operator::Else | Operator::End => 0,
        _ => 1,
    }
}

/// Does a new metered region start right after `op`?
fn ends_region(op: &Operator) -> bool {
    matches!(
        op,
        Operator::Loop { .. } | Operator::If { .. } | Operator::Else | Operator::End
    )
}

/// `(bytes, width, is_store)` of a memory access, with its memarg.
fn access(op: &Operator) -> Option<(usize, wasmparser::MemArg)> {
    use Operator::*;
    let (idx, m) = match op {
        I32Load { memarg } => (0, memarg),
        I64Load { memarg } => (1, memarg),
        I32Load8S { memarg } => (2, memarg),
        I32Load8U { memarg } => (3, memarg),
        I32Load16S { memarg } => (4, memarg),
        I32Load16U { memarg } => (5, memarg),
        I64Load8S { memarg } => (6, memarg),
        I64Load8U { memarg } => (7, memarg),
        I64Load16S { memarg } => (8, memarg),
        I64Load16U { memarg } => (9, memarg),
        I64Load32S { memarg } => (10, memarg),
        I64Load32U { memarg } => (11, memarg),
        I32Store { memarg } => (12, memarg),
        I64Store { memarg } => (13, memarg),
        I32Store8 { memarg } => (14, memarg),
        I32Store16 { memarg } => (15, memarg),
        I64Store8 { memarg } => (16, memarg),
        I64Store16 { memarg } => (17, memarg),
        I64Store32 { memarg } => (18, memarg),
        _ => return None,
    };
    Some((idx, *m))
}

struct Layout {
    variant: Variant,
    imports: u32,
    fuel: u32,
    oof: u32,
    chunk_log2: u32,
    max_chunks: u64,
}

/// Builds the executable `variant` of an admitted module.
///
/// `info` must come from [`crate::admission::admit`] on the same bytes.
pub fn instrument(
    code: &[u8],
    info: &ModuleInfo,
    variant: Variant,
) -> Result<Vec<u8>, InstrumentError> {
    let limits = info.limits;
    let imports = match variant {
        Variant::Fast => 0,
        Variant::Virtual => HOST_FUNCS.len() as u32,
    };
    let layout = Layout {
        variant,
        imports,
        fuel: info.num_globals,
        oof: info.num_globals + 1,
        chunk_log2: limits.chunk_log2,
        max_chunks: limits.max_chunks(),
    };

    let mut types = TypeSection::new();
    let mut funcs = FunctionSection::new();
    let mut globals = GlobalSection::new();
    let mut code_sec = CodeSection::new();
    let mut data = DataSection::new();
    let mut func_types: Vec<u32> = Vec::new();
    let mut type_params: Vec<u32> = Vec::new();
    let mut body_index = 0usize;

    for payload in Parser::new(0).parse_all(code) {
        match payload.map_err(err)? {
            Payload::TypeSection(r) => {
                for group in r {
                    for sub in group.map_err(err)?.into_types() {
                        let f = match &sub.composite_type.inner {
                            wasmparser::CompositeInnerType::Func(f) => f,
                            other => return Err(err(format_args!("type {other:?}"))),
                        };
                        let params = f
                            .params()
                            .iter()
                            .map(|t| val_type(*t))
                            .collect::<Result<Vec<_>, _>>()?;
                        let results = f
                            .results()
                            .iter()
                            .map(|t| val_type(*t))
                            .collect::<Result<Vec<_>, _>>()?;
                        type_params.push(params.len() as u32);
                        types.ty().function(params, results);
                    }
                }
            }
            Payload::FunctionSection(r) => {
                for t in r {
                    let t = t.map_err(err)?;
                    func_types.push(t);
                    funcs.function(t);
                }
            }
            Payload::GlobalSection(r) => {
                for g in r {
                    let g = g.map_err(err)?;
                    let init = match g.init_expr.get_operators_reader().read().map_err(err)? {
                        Operator::I32Const { value } => ConstExpr::i32_const(value),
                        Operator::I64Const { value } => ConstExpr::i64_const(value),
                        other => return Err(err(format_args!("global initialiser {other:?}"))),
                    };
                    globals.global(
                        GlobalType {
                            val_type: val_type(g.ty.content_type)?,
                            mutable: false,
                            shared: false,
                        },
                        &init,
                    );
                }
            }
            Payload::DataSection(r) => {
                for d in r {
                    let d = d.map_err(err)?;
                    let offset = match d.kind {
                        wasmparser::DataKind::Active {
                            memory_index: 0,
                            offset_expr,
                        } => match offset_expr.get_operators_reader().read().map_err(err)? {
                            Operator::I32Const { value } => value,
                            other => return Err(err(format_args!("data offset {other:?}"))),
                        },
                        _ => return Err(err("passive data segment")),
                    };
                    if variant == Variant::Fast {
                        data.active(0, &ConstExpr::i32_const(offset), d.data.iter().copied());
                    }
                }
            }
            Payload::CodeSectionEntry(body) => {
                let ty = *func_types
                    .get(body_index)
                    .ok_or_else(|| err("more bodies than functions"))?;
                let params = *type_params
                    .get(ty as usize)
                    .ok_or_else(|| err("function type out of range"))?;
                code_sec.function(&instrument_body(&body, params, &layout)?);
                body_index += 1;
            }
            Payload::ImportSection(_)
            | Payload::TableSection(_)
            | Payload::ElementSection { .. }
            | Payload::StartSection { .. }
            | Payload::TagSection(_) => return Err(err("section not allowed by admission")),
            _ => {}
        }
    }

    // Host function types follow the module's own.
    let mut imports_sec = ImportSection::new();
    if variant == Variant::Virtual {
        let first = type_params.len() as u32;
        for (k, (name, op)) in HOST_FUNCS.iter().enumerate() {
            let t = |w: Width| match w {
                Width::I32 => ValType::I32,
                Width::I64 => ValType::I64,
            };
            match *op {
                HostOp::Load { ty, .. } => {
                    types.ty().function([ValType::I32, ValType::I32], [t(ty)])
                }
                HostOp::Store { ty, .. } => {
                    types.ty().function([ValType::I32, t(ty), ValType::I32], [])
                }
                HostOp::Size => types.ty().function([], [ValType::I32]),
                HostOp::Grow => types.ty().function([ValType::I32], [ValType::I32]),
            };
            imports_sec.import(HOST_MODULE, name, EntityType::Function(first + k as u32));
        }
    }

    let mut memories = MemorySection::new();
    if variant == Variant::Fast {
        memories.memory(MemoryType {
            minimum: u64::from(limits.min_pages),
            maximum: Some(u64::from(limits.max_pages)),
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
        let marks_pages = (MARK_REGIONS * layout.max_chunks)
            .div_ceil(crate::limits::PAGE_SIZE)
            .max(1);
        memories.memory(MemoryType {
            minimum: marks_pages,
            maximum: Some(marks_pages),
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
    }

    let i64_mut = GlobalType {
        val_type: ValType::I64,
        mutable: true,
        shared: false,
    };
    let i32_mut = GlobalType {
        val_type: ValType::I32,
        mutable: true,
        shared: false,
    };
    globals.global(i64_mut, &ConstExpr::i64_const(0));
    globals.global(i32_mut, &ConstExpr::i32_const(0));

    let mut exports = ExportSection::new();
    exports.export("step", ExportKind::Func, info.step_func + imports);
    exports.export(FUEL_GLOBAL, ExportKind::Global, layout.fuel);
    exports.export(OOF_GLOBAL, ExportKind::Global, layout.oof);
    if variant == Variant::Fast {
        exports.export("memory", ExportKind::Memory, 0);
        exports.export(MARKS_MEMORY, ExportKind::Memory, 1);
    }

    let mut module = Module::new();
    module.section(&types);
    if variant == Variant::Virtual {
        module.section(&imports_sec);
    }
    module.section(&funcs);
    if variant == Variant::Fast {
        module.section(&memories);
    }
    module.section(&globals);
    module.section(&exports);
    module.section(&code_sec);
    if variant == Variant::Fast {
        module.section(&data);
    }
    Ok(module.finish())
}

fn instrument_body(
    body: &wasmparser::FunctionBody,
    params: u32,
    layout: &Layout,
) -> Result<Function, InstrumentError> {
    let mut locals: Vec<(u32, ValType)> = Vec::new();
    let mut n_locals = params;
    for l in body.get_locals_reader().map_err(err)? {
        let (count, ty) = l.map_err(err)?;
        locals.push((count, val_type(ty)?));
        n_locals = n_locals.saturating_add(count);
    }
    // Temporaries of the fast variant: address, i32 value, i64 value.
    let (t_addr, t_v32, t_v64) = (n_locals, n_locals + 1, n_locals + 2);
    if layout.variant == Variant::Fast {
        locals.push((2, ValType::I32));
        locals.push((1, ValType::I64));
    }

    let mut ops: Vec<Operator> = Vec::new();
    let mut reader = body.get_operators_reader().map_err(err)?;
    while !reader.eof() {
        ops.push(reader.read().map_err(err)?);
    }

    // Region charges, indexed by the instruction that starts the region.
    let mut charge = alloc::vec![0u64; ops.len()];
    let mut start = 0usize;
    for (i, op) in ops.iter().enumerate() {
        charge[start] += cost(op);
        if ends_region(op) {
            start = i + 1;
            if start >= ops.len() {
                break;
            }
        }
    }

    let mut f = Function::new(locals);
    for (i, op) in ops.into_iter().enumerate() {
        if charge[i] > 0 {
            emit_charge(&mut f, charge[i], layout);
        }
        if let Some((k, memarg)) = access(&op) {
            emit_access(&mut f, k, memarg, layout, (t_addr, t_v32, t_v64));
            continue;
        }
        match op {
            Operator::Call { function_index } => {
                f.instruction(&Instruction::Call(function_index + layout.imports));
            }
            Operator::MemorySize { .. } if layout.variant == Variant::Virtual => {
                f.instruction(&Instruction::Call(19));
            }
            Operator::MemoryGrow { .. } if layout.variant == Variant::Virtual => {
                f.instruction(&Instruction::Call(20));
            }
            other => {
                let ins = Instruction::try_from(other).map_err(err)?;
                f.instruction(&ins);
            }
        }
    }
    Ok(f)
}

fn emit_charge(f: &mut Function, amount: u64, layout: &Layout) {
    let amount = amount as i64;
    f.instruction(&Instruction::GlobalGet(layout.fuel))
        .instruction(&Instruction::I64Const(amount))
        .instruction(&Instruction::I64LtU)
        .instruction(&Instruction::If(wasm_encoder::BlockType::Empty))
        .instruction(&Instruction::I32Const(1))
        .instruction(&Instruction::GlobalSet(layout.oof))
        .instruction(&Instruction::Unreachable)
        .instruction(&Instruction::End)
        .instruction(&Instruction::GlobalGet(layout.fuel))
        .instruction(&Instruction::I64Const(amount))
        .instruction(&Instruction::I64Sub)
        .instruction(&Instruction::GlobalSet(layout.fuel));
}

fn emit_access(
    f: &mut Function,
    k: usize,
    memarg: wasmparser::MemArg,
    layout: &Layout,
    (t_addr, t_v32, t_v64): (u32, u32, u32),
) {
    let (_, op) = HOST_FUNCS[k];
    let original = |memarg: wasmparser::MemArg| -> Instruction<'static> {
        let m: MemArg = memarg.into();
        match k {
            0 => Instruction::I32Load(m),
            1 => Instruction::I64Load(m),
            2 => Instruction::I32Load8S(m),
            3 => Instruction::I32Load8U(m),
            4 => Instruction::I32Load16S(m),
            5 => Instruction::I32Load16U(m),
            6 => Instruction::I64Load8S(m),
            7 => Instruction::I64Load8U(m),
            8 => Instruction::I64Load16S(m),
            9 => Instruction::I64Load16U(m),
            10 => Instruction::I64Load32S(m),
            11 => Instruction::I64Load32U(m),
            12 => Instruction::I32Store(m),
            13 => Instruction::I64Store(m),
            14 => Instruction::I32Store8(m),
            15 => Instruction::I32Store16(m),
            16 => Instruction::I64Store8(m),
            17 => Instruction::I64Store16(m),
            _ => Instruction::I64Store32(m),
        }
    };
    let offset = memarg.offset as u32;
    match layout.variant {
        Variant::Virtual => {
            f.instruction(&Instruction::I32Const(offset as i32))
                .instruction(&Instruction::Call(k as u32));
        }
        Variant::Fast => {
            let mc = layout.max_chunks;
            let log2 = layout.chunk_log2;
            match op {
                HostOp::Load { .. } => {
                    f.instruction(&Instruction::LocalTee(t_addr));
                    f.instruction(&original(memarg));
                    // The access succeeded, so addr + offset + bytes <= memory
                    // size < 2^32 and the wrapping i32 arithmetic is exact.
                    emit_mark(f, t_addr, offset, 0, log2);
                }
                HostOp::Store { ty, bytes } => {
                    let tv = if ty == Width::I32 { t_v32 } else { t_v64 };
                    f.instruction(&Instruction::LocalSet(tv))
                        .instruction(&Instruction::LocalTee(t_addr))
                        .instruction(&Instruction::LocalGet(tv));
                    f.instruction(&original(memarg));
                    emit_mark(f, t_addr, offset, mc, log2);
                    if bytes > 1 {
                        let last = offset.wrapping_add(u32::from(bytes) - 1);
                        emit_mark(f, t_addr, last, 2 * mc, log2);
                    }
                }
                HostOp::Size | HostOp::Grow => {}
            }
        }
    }
}

fn emit_mark(f: &mut Function, t_addr: u32, offset: u32, base: u64, chunk_log2: u32) {
    f.instruction(&Instruction::LocalGet(t_addr));
    if offset != 0 {
        f.instruction(&Instruction::I32Const(offset as i32))
            .instruction(&Instruction::I32Add);
    }
    f.instruction(&Instruction::I32Const(chunk_log2 as i32))
        .instruction(&Instruction::I32ShrU)
        .instruction(&Instruction::I32Const(1))
        .instruction(&Instruction::I32Store8(MemArg {
            offset: base,
            align: 0,
            memory_index: 1,
        }));
}
