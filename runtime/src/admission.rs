//! Admission: the static checks a Wasm module must pass before the sandbox
//! runs it. Everything later stages rely on is established here.
//!
//! A module is admitted only if all of the following hold:
//!
//! 1. It parses as a core Wasm module (`Malformed`).
//! 2. Integer-only: no `f32`/`f64` in function types, locals, globals, block
//!    types or typed `select` (`FloatType`), and no float instruction at all,
//!    including float loads/stores/consts and conversions such as
//!    `i32.trunc_f32_s` or `i32.reinterpret_f32` (`FloatInstruction`).
//! 3. No SIMD (`SimdType`, `SimdInstruction`), no threads: no atomics
//!    (`AtomicInstruction`), no shared memory (`SharedMemory`); no reference
//!    types (`ReferenceType`).
//! 4. Instructions are exactly: `unreachable nop block loop if else end br
//!    br_if br_table return call drop select local.get/set/tee global.get
//!    memory.size memory.grow i32.const i64.const` and every i32/i64 integer
//!    load, store, arithmetic, comparison, conversion (`i32.wrap_i64`,
//!    `i64.extend_i32_s/u`) and sign-extension op. Anything else
//!    (`call_indirect`, `return_call`, `global.set`, bulk memory, reference,
//!    table, exception and GC ops, and typed `select`, which needs the
//!    reference-types proposal) is `ForbiddenInstruction`.
//! 5. No imports (`Import`; the host set is empty), no start function
//!    (`StartFunction`), no tables (`Table`), no element segments
//!    (`ElementSegment`), only immutable globals (`MutableGlobal`), no tags,
//!    GC types or custom page sizes (`Unsupported`).
//! 6. Exactly one memory (`MemoryCount`), 32-bit (`Memory64`), not shared,
//!    with a maximum (`MemoryUnbounded`) of at most [`MAX_PAGES`]
//!    (`MemoryTooLarge`) and `min <= max` (`MemoryMinAboveMax`). Data segments
//!    are active on memory 0 at an `i32.const` offset (`PassiveData`,
//!    `BadDataSegment`) and fit in the initial memory (`DataOutOfBounds`).
//! 7. Exports: `memory` is memory 0, `step` is a function `[] -> [i32]`
//!    (`MissingExport`, `BadExport`); names starting with `__opml` are
//!    reserved (`ReservedExport`). Limits come from exported immutable globals
//!    with constant initializers (`BadLimit`): `opml_step_fuel` (i64,
//!    required, `1..=MAX_STEP_FUEL`), `opml_chunk_log2` (i32, default
//!    [`DEFAULT_CHUNK_LOG2`], `MIN_CHUNK_LOG2..=MAX_CHUNK_LOG2`),
//!    `opml_max_touched` (i32, default `max(1, DEFAULT_TOUCHED_BYTES >>
//!    chunk_log2)`, `>= 1`, times the chunk size `<= MAX_PROOF_CHUNK_BYTES`).
//! 8. The direct call graph is acyclic (`Recursion`); its longest chain, one
//!    function counting 1, is at most [`MAX_CALL_DEPTH`] (`CallTooDeep`);
//!    every function has at most [`MAX_LOCALS`] params + locals
//!    (`TooManyLocals`); along every chain the sum of frame weights
//!    `params + locals + operators + 16` is at most [`MAX_STACK_WEIGHT`]
//!    (`StackTooDeep`). Depth and weight are bounded over all functions, not
//!    only those reachable from `step`.
//! 9. Full validation with only mutable-global, sign-extension and
//!    multi-value enabled (`Invalid`), the backstop that guarantees types.
//!
//! Rules 1–6 are checked section by section in module order, 7–9 afterwards
//! in that order; the error names the first offending item (for instructions:
//! function index, byte offset in the module, `wasmparser` operator name).
//! No input makes [`admit`] panic, and its allocations are bounded by the
//! input size.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use wasmparser::{
    BinaryReaderError, BlockType, CompositeInnerType, ConstExpr, DataKind, Encoding, Export,
    ExternalKind, FuncType, FunctionBody, GlobalType, Operator, Parser, Payload, ValType,
    Validator, WasmFeatures,
};

use crate::limits::{
    ModuleLimits, DEFAULT_CHUNK_LOG2, DEFAULT_TOUCHED_BYTES, MAX_CALL_DEPTH, MAX_CHUNK_LOG2,
    MAX_LOCALS, MAX_PAGES, MAX_PROOF_CHUNK_BYTES, MAX_STACK_WEIGHT, MAX_STEP_FUEL, MIN_CHUNK_LOG2,
    PAGE_SIZE,
};

/// Export names reserved for the sandbox.
pub const RESERVED_PREFIX: &str = "__opml";
/// Fixed per-frame overhead in the stack weight of a function.
pub const FRAME_OVERHEAD: u64 = 16;

/// What admission learned about a module; everything later stages rely on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleInfo {
    pub limits: ModuleLimits,
    /// Function index of the exported `step` (no imports, so indices are of
    /// defined functions).
    pub step_func: u32,
    pub num_funcs: u32,
    pub num_globals: u32,
    pub num_types: u32,
}

/// Why a module was not admitted. Offsets are byte offsets in the module;
/// `func` is a (defined) function index; `opcode` is the `wasmparser`
/// operator name (e.g. `F32Add`, `I32TruncF32S`, `MemoryCopy`).
#[rustfmt::skip]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdmissionError {
    Malformed { offset: usize, message: String },
    /// `location` is e.g. `type 2 param 0`, `function 3 local 1`, `global 0`.
    FloatType { location: String },
    SimdType { location: String },
    ReferenceType { location: String },
    FloatInstruction { func: u32, offset: usize, opcode: String },
    SimdInstruction { func: u32, offset: usize, opcode: String },
    AtomicInstruction { func: u32, offset: usize, opcode: String },
    ForbiddenInstruction { func: u32, offset: usize, opcode: String },
    Import { module: String, name: String },
    StartFunction { func: u32 },
    Table,
    ElementSegment,
    MutableGlobal { index: u32 },
    /// A construct of a proposal the sandbox does not support (tags, GC
    /// types, shared globals, custom page sizes, components).
    Unsupported { offset: usize, what: String },
    SharedMemory,
    Memory64,
    MemoryCount { count: u32 },
    MemoryUnbounded,
    MemoryTooLarge { max: u64, limit: u32 },
    MemoryMinAboveMax { min: u64, max: u64 },
    PassiveData { index: u32 },
    /// Not on memory 0, or offset not a single `i32.const`.
    BadDataSegment { index: u32, reason: String },
    DataOutOfBounds { index: u32 },
    MissingExport { name: String },
    BadExport { name: String, reason: String },
    ReservedExport { name: String },
    /// `value` is the global's constant value, or 0 if it has none.
    BadLimit { name: String, value: i64, reason: String },
    Recursion { func: u32 },
    CallTooDeep { depth: u32 },
    TooManyLocals { func: u32, count: u64 },
    StackTooDeep { weight: u64 },
    Invalid { offset: usize, message: String },
}

impl fmt::Display for AdmissionError {
    #[rustfmt::skip]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use AdmissionError::*;
        let instr = |f: &mut fmt::Formatter<'_>, what: &str, func, offset, opcode| {
            write!(f, "{what} instruction {opcode} in function {func} at offset {offset:#x}")
        };
        match self {
            Malformed { offset, message } => write!(f, "malformed module at {offset:#x}: {message}"),
            FloatType { location } => write!(f, "floating-point type at {location}"),
            SimdType { location } => write!(f, "SIMD type v128 at {location}"),
            ReferenceType { location } => write!(f, "reference type at {location}"),
            FloatInstruction { func, offset, opcode } => instr(f, "floating-point", func, offset, opcode),
            SimdInstruction { func, offset, opcode } => instr(f, "SIMD", func, offset, opcode),
            AtomicInstruction { func, offset, opcode } => instr(f, "atomic", func, offset, opcode),
            ForbiddenInstruction { func, offset, opcode } => instr(f, "forbidden", func, offset, opcode),
            Import { module, name } => write!(f, "import {module:?} {name:?}: imports are not allowed"),
            StartFunction { func } => write!(f, "start function {func}: start functions are not allowed"),
            Table => f.write_str("tables are not allowed"),
            ElementSegment => f.write_str("element segments are not allowed"),
            MutableGlobal { index } => write!(f, "global {index} is mutable; globals must be immutable"),
            Unsupported { offset, what } => write!(f, "unsupported at {offset:#x}: {what}"),
            SharedMemory => f.write_str("shared memory is not allowed"),
            Memory64 => f.write_str("64-bit memory is not allowed"),
            MemoryCount { count } => write!(f, "module has {count} memories, exactly one is required"),
            MemoryUnbounded => f.write_str("memory must declare a maximum size"),
            MemoryTooLarge { max, limit } => write!(f, "memory maximum of {max} pages exceeds the limit of {limit}"),
            MemoryMinAboveMax { min, max } => write!(f, "memory minimum of {min} pages exceeds its maximum {max}"),
            PassiveData { index } => write!(f, "data segment {index} is passive; only active segments are allowed"),
            BadDataSegment { index, reason } => write!(f, "data segment {index}: {reason}"),
            DataOutOfBounds { index } => write!(f, "data segment {index} does not fit in the initial memory"),
            MissingExport { name } => write!(f, "missing required export {name:?}"),
            BadExport { name, reason } => write!(f, "export {name:?}: {reason}"),
            ReservedExport { name } => write!(f, "export {name:?}: names starting with {RESERVED_PREFIX:?} are reserved"),
            BadLimit { name, value, reason } => write!(f, "limit {name} = {value}: {reason}"),
            Recursion { func } => write!(f, "function {func} is on a call cycle; recursion is not allowed"),
            CallTooDeep { depth } => write!(f, "call chain of depth {depth} exceeds the limit of {MAX_CALL_DEPTH}"),
            TooManyLocals { func, count } => write!(f, "function {func} has {count} locals, more than {MAX_LOCALS}"),
            StackTooDeep { weight } => write!(f, "call chain of stack weight {weight} exceeds the limit of {MAX_STACK_WEIGHT}"),
            Invalid { offset, message } => write!(f, "invalid module at {offset:#x}: {message}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for AdmissionError {}

type Res<T> = Result<T, AdmissionError>;

fn malformed(e: BinaryReaderError) -> AdmissionError {
    AdmissionError::Malformed {
        offset: e.offset(),
        message: e.message().to_string(),
    }
}

/// The Wasm features an admitted module may use (rule 9).
pub fn features() -> WasmFeatures {
    WasmFeatures::MUTABLE_GLOBAL
        .union(WasmFeatures::SIGN_EXTENSION)
        .union(WasmFeatures::MULTI_VALUE)
}

/// Admits `code` or names the first reason it may not run in the sandbox.
pub fn admit(code: &[u8]) -> Result<ModuleInfo, AdmissionError> {
    let module = scan(code)?;
    let (limits, step_func) = module.exports()?;
    module.call_graph()?;
    Validator::new_with_features(features())
        .validate_all(code)
        .map_err(|e| AdmissionError::Invalid {
            offset: e.offset(),
            message: e.message().to_string(),
        })?;
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    Ok(ModuleInfo {
        limits,
        step_func,
        num_funcs: count(module.funcs.len()),
        num_globals: count(module.globals.len()),
        num_types: count(module.types.len()),
    })
}

/// Per-function facts gathered from the code section.
struct Body {
    /// Params plus declared locals.
    locals: u64,
    operators: u64,
    /// Direct callees, sorted and deduplicated.
    callees: Vec<u32>,
}

#[derive(Default)]
struct Module<'a> {
    types: Vec<FuncType>,
    /// Type index of each defined function.
    funcs: Vec<u32>,
    /// Type and constant initializer (if a single `i32/i64.const`) of each global.
    globals: Vec<(GlobalType, Option<i64>)>,
    /// `(min, max)` pages of the memory, once seen.
    memory: Option<(u32, u32)>,
    exports: Vec<Export<'a>>,
    bodies: Vec<Body>,
}

fn check_type(ty: ValType, location: impl FnOnce() -> String) -> Res<()> {
    let error: fn(String) -> AdmissionError = match ty {
        ValType::I32 | ValType::I64 => return Ok(()),
        ValType::F32 | ValType::F64 => |location| AdmissionError::FloatType { location },
        ValType::V128 => |location| AdmissionError::SimdType { location },
        ValType::Ref(_) => |location| AdmissionError::ReferenceType { location },
    };
    Err(error(location()))
}

fn unsupported(offset: usize, what: impl Into<String>) -> AdmissionError {
    let what = what.into();
    AdmissionError::Unsupported { offset, what }
}

/// Value of a constant expression that is exactly one `i32.const`/`i64.const`.
fn const_value(expr: &ConstExpr<'_>) -> Option<i64> {
    let mut ops = expr.get_operators_reader();
    let value = match ops.read().ok()? {
        Operator::I32Const { value } => i64::from(value),
        Operator::I64Const { value } => value,
        _ => return None,
    };
    match ops.read().ok()? {
        Operator::End if ops.eof() => Some(value),
        _ => None,
    }
}

fn scan(code: &[u8]) -> Res<Module<'_>> {
    use AdmissionError as E;
    let mut m = Module::default();
    let mut memories = 0u32;
    for payload in Parser::new(0).parse_all(code) {
        match payload.map_err(malformed)? {
            Payload::Version {
                encoding, range, ..
            } if encoding != Encoding::Module => {
                return Err(unsupported(range.start, "a component, not a core module"));
            }
            Payload::TypeSection(reader) => {
                for group in reader.into_iter_with_offsets() {
                    let (offset, group) = group.map_err(malformed)?;
                    for sub in group.types() {
                        let t = m.types.len();
                        let func = match &sub.composite_type.inner {
                            CompositeInnerType::Func(func) if !sub.composite_type.shared => func,
                            _ => {
                                return Err(unsupported(
                                    offset,
                                    format!("type {t} is not a function type"),
                                ))
                            }
                        };
                        for (i, &ty) in func.params().iter().enumerate() {
                            check_type(ty, || format!("type {t} param {i}"))?;
                        }
                        for (i, &ty) in func.results().iter().enumerate() {
                            check_type(ty, || format!("type {t} result {i}"))?;
                        }
                        m.types.push(func.clone());
                    }
                }
            }
            Payload::ImportSection(reader) => {
                if let Some(import) = reader.into_iter().next() {
                    let import = import.map_err(malformed)?;
                    return Err(E::Import {
                        module: import.module.into(),
                        name: import.name.into(),
                    });
                }
            }
            Payload::FunctionSection(reader) => {
                for ty in reader {
                    m.funcs.push(ty.map_err(malformed)?);
                }
            }
            Payload::TableSection(reader) if reader.count() > 0 => return Err(E::Table),
            Payload::ElementSection(reader) if reader.count() > 0 => return Err(E::ElementSegment),
            Payload::TagSection(reader) if reader.count() > 0 => {
                return Err(unsupported(reader.range().start, "exception tags"));
            }
            Payload::StartSection { func, .. } => return Err(E::StartFunction { func }),
            Payload::MemorySection(reader) => {
                let count = memories.saturating_add(reader.count());
                if count != 1 {
                    return Err(E::MemoryCount { count });
                }
                memories = count;
                for mem in reader.into_iter_with_offsets() {
                    let (offset, mem) = mem.map_err(malformed)?;
                    if mem.memory64 {
                        return Err(E::Memory64);
                    }
                    if mem.shared {
                        return Err(E::SharedMemory);
                    }
                    if mem.page_size_log2.is_some() {
                        return Err(unsupported(offset, "custom page size"));
                    }
                    let max = mem.maximum.ok_or(E::MemoryUnbounded)?;
                    let (min, limit) = (mem.initial, MAX_PAGES);
                    if max > u64::from(limit) {
                        return Err(E::MemoryTooLarge { max, limit });
                    }
                    if min > max {
                        return Err(E::MemoryMinAboveMax { min, max });
                    }
                    // Both fit: max <= MAX_PAGES.
                    m.memory = Some((min as u32, max as u32));
                }
            }
            Payload::GlobalSection(reader) => {
                for global in reader {
                    let global = global.map_err(malformed)?;
                    let index = m.globals.len();
                    check_type(global.ty.content_type, || format!("global {index}"))?;
                    let index = u32::try_from(index).unwrap_or(u32::MAX);
                    if global.ty.mutable {
                        return Err(E::MutableGlobal { index });
                    }
                    if global.ty.shared {
                        let offset = global.init_expr.get_binary_reader().original_position();
                        return Err(unsupported(offset, format!("global {index} is shared")));
                    }
                    m.globals.push((global.ty, const_value(&global.init_expr)));
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    m.exports.push(export.map_err(malformed)?);
                }
            }
            Payload::DataSection(reader) => {
                for (index, data) in (0u32..).zip(reader) {
                    let data = data.map_err(malformed)?;
                    let DataKind::Active {
                        memory_index,
                        offset_expr,
                    } = data.kind
                    else {
                        return Err(E::PassiveData { index });
                    };
                    let bad = |reason: &str| E::BadDataSegment {
                        index,
                        reason: reason.into(),
                    };
                    let (min, _) = m.memory.ok_or(E::MemoryCount { count: 0 })?;
                    if memory_index != 0 {
                        return Err(bad("must initialize memory 0"));
                    }
                    let Some(start) = const_value(&offset_expr) else {
                        return Err(bad("offset must be a single i32.const"));
                    };
                    // Wasm reads an i32 offset as unsigned.
                    let start = u64::from(start as u32);
                    let end = start.saturating_add(data.data.len() as u64);
                    if end > u64::from(min) * PAGE_SIZE {
                        return Err(E::DataOutOfBounds { index });
                    }
                }
            }
            Payload::CodeSectionEntry(body) => {
                let body = m.body(body)?;
                m.bodies.push(body);
            }
            Payload::End(_) if m.memory.is_none() => return Err(E::MemoryCount { count: 0 }),
            // Empty table/element/tag sections, data count, code section
            // header, custom sections; anything else is left to validation.
            _ => {}
        }
    }
    Ok(m)
}

/// The kind of instruction an operator is (rules 2–4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Allowed,
    Simd,
    Atomic,
    Float,
    Forbidden,
}

/// The `wasmparser::Operator` variant name of `op`, e.g. `I32TruncF32S`.
fn mnemonic(op: &Operator<'_>) -> String {
    let mut name = format!("{op:?}");
    let end = name.find([' ', '{', '(']).unwrap_or(name.len());
    name.truncate(end);
    name
}

/// Classifies an operator name: SIMD, then atomics, then floats, else forbidden.
fn classify_name(name: &str) -> Kind {
    let lanes = ["x16", "x8", "x4", "x2"];
    if name.contains("V128") || lanes.iter().any(|l| name.contains(l)) {
        Kind::Simd
    } else if name.contains("Atomic") {
        Kind::Atomic
    } else if name.contains("F32") || name.contains("F64") {
        Kind::Float
    } else {
        Kind::Forbidden
    }
}

impl Kind {
    #[rustfmt::skip]
    fn error(self, func: u32, offset: usize, opcode: String) -> AdmissionError {
        use AdmissionError as E;
        match self {
            Kind::Simd => E::SimdInstruction { func, offset, opcode },
            Kind::Atomic => E::AtomicInstruction { func, offset, opcode },
            Kind::Float => E::FloatInstruction { func, offset, opcode },
            Kind::Allowed | Kind::Forbidden => E::ForbiddenInstruction { func, offset, opcode },
        }
    }
}

#[rustfmt::skip]
fn classify(op: &Operator<'_>) -> Kind {
    use Operator::*;
    match op {
        Unreachable | Nop | Block { .. } | Loop { .. } | If { .. } | Else | End | Br { .. }
        | BrIf { .. } | BrTable { .. } | Return | Call { .. } | Drop | Select
        | LocalGet { .. } | LocalSet { .. } | LocalTee { .. } | GlobalGet { .. }
        | MemorySize { .. } | MemoryGrow { .. } | I32Const { .. } | I64Const { .. }
        // Loads and stores.
        | I32Load { .. } | I64Load { .. } | I32Load8S { .. } | I32Load8U { .. }
        | I32Load16S { .. } | I32Load16U { .. } | I64Load8S { .. } | I64Load8U { .. }
        | I64Load16S { .. } | I64Load16U { .. } | I64Load32S { .. } | I64Load32U { .. }
        | I32Store { .. } | I64Store { .. } | I32Store8 { .. } | I32Store16 { .. }
        | I64Store8 { .. } | I64Store16 { .. } | I64Store32 { .. }
        // Comparisons.
        | I32Eqz | I32Eq | I32Ne | I32LtS | I32LtU | I32GtS | I32GtU | I32LeS | I32LeU
        | I32GeS | I32GeU | I64Eqz | I64Eq | I64Ne | I64LtS | I64LtU | I64GtS | I64GtU
        | I64LeS | I64LeU | I64GeS | I64GeU
        // Arithmetic.
        | I32Clz | I32Ctz | I32Popcnt | I32Add | I32Sub | I32Mul | I32DivS | I32DivU
        | I32RemS | I32RemU | I32And | I32Or | I32Xor | I32Shl | I32ShrS | I32ShrU
        | I32Rotl | I32Rotr | I64Clz | I64Ctz | I64Popcnt | I64Add | I64Sub | I64Mul
        | I64DivS | I64DivU | I64RemS | I64RemU | I64And | I64Or | I64Xor | I64Shl
        | I64ShrS | I64ShrU | I64Rotl | I64Rotr
        // Conversions and sign extension.
        | I32WrapI64 | I64ExtendI32S | I64ExtendI32U | I32Extend8S | I32Extend16S
        | I64Extend8S | I64Extend16S | I64Extend32S => Kind::Allowed,
        _ => classify_name(&mnemonic(op)),
    }
}

impl<'a> Module<'a> {
    fn func_type(&self, func: u32) -> Option<&FuncType> {
        let ty = *self.funcs.get(usize::try_from(func).ok()?)?;
        self.types.get(usize::try_from(ty).ok()?)
    }

    /// Checks one function body (rules 2–4) and records its frame facts.
    fn body(&self, body: FunctionBody<'_>) -> Res<Body> {
        let func = u32::try_from(self.bodies.len()).unwrap_or(u32::MAX);
        let params = self.func_type(func).map_or(0, |t| t.params().len() as u64);
        let mut locals = params;
        for group in body.get_locals_reader().map_err(malformed)? {
            let (count, ty) = group.map_err(malformed)?;
            check_type(ty, || format!("function {func} local {locals}"))?;
            locals = locals.saturating_add(u64::from(count));
        }
        let mut ops = body.get_operators_reader().map_err(malformed)?;
        let (mut operators, mut callees) = (0u64, Vec::new());
        while !ops.eof() {
            let (op, offset) = ops.read_with_offset().map_err(malformed)?;
            operators += 1;
            let typed = match &op {
                Operator::Block { blockty }
                | Operator::Loop { blockty }
                | Operator::If { blockty } => match blockty {
                    BlockType::Type(ty) => Some((*ty, "block type")),
                    _ => None,
                },
                Operator::TypedSelect { ty } => Some((*ty, "select")),
                Operator::Call { function_index } => {
                    callees.push(*function_index);
                    None
                }
                _ => None,
            };
            if let Some((ty, what)) = typed {
                check_type(ty, || {
                    format!("function {func} {what} at offset {offset:#x}")
                })?;
            }
            let kind = classify(&op);
            if kind != Kind::Allowed {
                return Err(kind.error(func, offset, mnemonic(&op)));
            }
        }
        callees.sort_unstable();
        callees.dedup();
        Ok(Body {
            locals,
            operators,
            callees,
        })
    }

    fn export(&self, name: &str) -> Option<&Export<'a>> {
        self.exports.iter().find(|e| e.name == name)
    }

    /// Rule 7: required exports and declared limits.
    fn exports(&self) -> Res<(ModuleLimits, u32)> {
        use AdmissionError as E;
        let bad = |name: &str, reason: &str| E::BadExport {
            name: name.into(),
            reason: reason.into(),
        };
        let missing = |name: &str| E::MissingExport { name: name.into() };
        let memory = self.export("memory").ok_or_else(|| missing("memory"))?;
        if memory.kind != ExternalKind::Memory || memory.index != 0 {
            return Err(bad("memory", "must export memory 0"));
        }
        let step = self.export("step").ok_or_else(|| missing("step"))?;
        if step.kind != ExternalKind::Func {
            return Err(bad("step", "must be a function"));
        }
        let ty = self
            .func_type(step.index)
            .ok_or_else(|| bad("step", "no such function"))?;
        if !ty.params().is_empty() || ty.results() != [ValType::I32] {
            let sig = |tys: &[ValType]| tys.iter().map(|t| format!("{t}")).collect::<Vec<_>>();
            let (params, results) = (sig(ty.params()).join(", "), sig(ty.results()).join(", "));
            let reason = format!("has type [{params}] -> [{results}], expected [] -> [i32]");
            return Err(bad("step", &reason));
        }
        let reserved = self
            .exports
            .iter()
            .find(|e| e.name.starts_with(RESERVED_PREFIX));
        if let Some(&Export { name, .. }) = reserved {
            return Err(E::ReservedExport { name: name.into() });
        }
        let (min_pages, max_pages) = self.memory.ok_or(E::MemoryCount { count: 0 })?;
        let step_fuel = self.limit("opml_step_fuel", ValType::I64)?;
        let step_fuel = step_fuel.ok_or_else(|| missing("opml_step_fuel"))?;
        check_limit("opml_step_fuel", step_fuel, 1, MAX_STEP_FUEL)?;
        let chunk_log2 = self.limit("opml_chunk_log2", ValType::I32)?;
        let chunk_log2 = chunk_log2.unwrap_or(i64::from(DEFAULT_CHUNK_LOG2));
        let (lo, hi) = (MIN_CHUNK_LOG2.into(), MAX_CHUNK_LOG2.into());
        check_limit("opml_chunk_log2", chunk_log2, lo, hi)?;
        let default = (DEFAULT_TOUCHED_BYTES >> chunk_log2).max(1) as i64;
        let touched = self.limit("opml_max_touched", ValType::I32)?;
        let touched = touched.unwrap_or(default);
        let hi = MAX_PROOF_CHUNK_BYTES >> chunk_log2;
        check_limit("opml_max_touched", touched, 1, hi)?;
        // All three are in range now, so the casts are exact.
        let limits = ModuleLimits {
            step_fuel: step_fuel as u64,
            chunk_log2: chunk_log2 as u32,
            max_touched: touched as u32,
            min_pages,
            max_pages,
        };
        Ok((limits, step.index))
    }

    /// The constant value of the limit global exported as `name`, if any.
    fn limit(&self, name: &str, want: ValType) -> Res<Option<i64>> {
        let Some(export) = self.export(name) else {
            return Ok(None);
        };
        let bad = |value: Option<i64>, reason: String| AdmissionError::BadLimit {
            name: name.into(),
            value: value.unwrap_or(0),
            reason,
        };
        if export.kind != ExternalKind::Global {
            return Err(bad(None, "must be an exported global".into()));
        }
        let index = usize::try_from(export.index).unwrap_or(usize::MAX);
        let global = self.globals.get(index);
        let &(ty, value) = global.ok_or_else(|| bad(None, "no such global".into()))?;
        if ty.content_type != want || ty.mutable {
            return Err(bad(value, format!("must be an immutable {want} global")));
        }
        let reason = || bad(None, format!("initializer must be a single {want}.const"));
        value.map(Some).ok_or_else(reason)
    }

    /// Rule 8: call graph and frame sizes.
    fn call_graph(&self) -> Res<()> {
        use AdmissionError as E;
        let n = self.bodies.len();
        let (mut state, mut depth, mut weight) = (vec![0u8; n], vec![0u32; n], vec![0u64; n]);
        for root in 0..n {
            if state[root] != 0 {
                continue;
            }
            state[root] = 1;
            let mut stack = vec![(root, 0usize)];
            while let Some((f, next)) = stack.last_mut() {
                let f = *f;
                let callees = &self.bodies[f].callees;
                if let Some(&c) = callees.get(*next) {
                    *next += 1;
                    let c = c as usize;
                    match state.get(c) {
                        Some(0) => {
                            state[c] = 1;
                            stack.push((c, 0));
                        }
                        Some(1) => return Err(E::Recursion { func: c as u32 }),
                        _ => {} // done, or out of range (left to validation)
                    }
                } else {
                    let below = callees.iter().filter_map(|&c| {
                        let c = c as usize;
                        Some((*depth.get(c)?, *weight.get(c)?))
                    });
                    let (d, w) = below.fold((0, 0), |(d, w), (cd, cw)| (d.max(cd), w.max(cw)));
                    let b = &self.bodies[f];
                    let own = (b.locals.saturating_add(b.operators)).saturating_add(FRAME_OVERHEAD);
                    depth[f] = d.saturating_add(1);
                    weight[f] = w.saturating_add(own);
                    state[f] = 2;
                    stack.pop();
                }
            }
        }
        let depth = depth.iter().copied().max().unwrap_or(0);
        if depth > MAX_CALL_DEPTH {
            return Err(E::CallTooDeep { depth });
        }
        let mut locals = (0u32..).zip(&self.bodies).map(|(func, b)| (func, b.locals));
        if let Some((func, count)) = locals.find(|&(_, n)| n > u64::from(MAX_LOCALS)) {
            return Err(E::TooManyLocals { func, count });
        }
        let weight = weight.iter().copied().max().unwrap_or(0);
        if weight > MAX_STACK_WEIGHT {
            return Err(E::StackTooDeep { weight });
        }
        Ok(())
    }
}

fn check_limit(name: &str, value: i64, min: u64, max: u64) -> Res<()> {
    match u64::try_from(value) {
        Ok(v) if (min..=max).contains(&v) => Ok(()),
        _ => Err(AdmissionError::BadLimit {
            name: name.into(),
            value,
            reason: format!("must be in {min}..={max}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_classified_in_order() {
        assert_eq!(classify_name("I32x4Add"), Kind::Simd);
        assert_eq!(classify_name("F32x4Add"), Kind::Simd);
        assert_eq!(classify_name("V128Load"), Kind::Simd);
        assert_eq!(classify_name("I8x16RelaxedSwizzle"), Kind::Simd);
        assert_eq!(classify_name("I32AtomicRmwAdd"), Kind::Atomic);
        assert_eq!(classify_name("MemoryAtomicWait32"), Kind::Atomic);
        assert_eq!(classify_name("I32TruncF32S"), Kind::Float);
        assert_eq!(classify_name("I64TruncSatF64U"), Kind::Float);
        assert_eq!(classify_name("F64ConvertI32S"), Kind::Float);
        assert_eq!(classify_name("MemoryCopy"), Kind::Forbidden);
        assert_eq!(classify_name("I64Add128"), Kind::Forbidden);
    }

    #[test]
    fn operators_are_classified() {
        use Operator::*;
        assert_eq!(classify(&I32Add), Kind::Allowed);
        assert_eq!(classify(&I64Extend32S), Kind::Allowed);
        assert_eq!(classify(&Call { function_index: 3 }), Kind::Allowed);
        assert_eq!(classify(&I32ReinterpretF32), Kind::Float);
        assert_eq!(classify(&F32Add), Kind::Float);
        assert_eq!(classify(&GlobalSet { global_index: 0 }), Kind::Forbidden);
        assert_eq!(classify(&TypedSelect { ty: ValType::I32 }), Kind::Forbidden);
        assert_eq!(classify(&MemoryFill { mem: 0 }), Kind::Forbidden);
        assert_eq!(classify(&I64MulWideS), Kind::Forbidden);
        assert_eq!(
            mnemonic(&CallIndirect {
                type_index: 0,
                table_index: 0
            }),
            "CallIndirect"
        );
        assert_eq!(mnemonic(&Drop), "Drop");
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(admit(b""), Err(AdmissionError::Malformed { .. })));
        assert!(matches!(
            admit(b"\0asm\x01\0\0\0\x01"),
            Err(AdmissionError::Malformed { .. })
        ));
        // A bare header has no memory.
        assert_eq!(
            admit(b"\0asm\x01\0\0\0"),
            Err(AdmissionError::MemoryCount { count: 0 })
        );
    }

    #[test]
    fn limit_ranges() {
        assert!(check_limit("x", 0, 1, 2).is_err());
        assert!(check_limit("x", -1, 0, 2).is_err());
        assert!(check_limit("x", 2, 1, 2).is_ok());
    }
}
