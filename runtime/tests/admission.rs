//! Admission: one fixture per rejection under `tests/admission/`, a good
//! module, inline edge cases, and a no-panic property test.

use opml_runtime::admission::{admit, AdmissionError, ModuleInfo};
use opml_runtime::limits::{ModuleLimits, MAX_CALL_DEPTH, MAX_LOCALS, MAX_PAGES};
use proptest::prelude::*;
use AdmissionError as E;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/admission/{name}.wat", env!("CARGO_MANIFEST_DIR"));
    wat::parse_file(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn reject(name: &str) -> AdmissionError {
    let err = admit(&fixture(name)).expect_err(name);
    assert!(!err.to_string().is_empty());
    err
}

fn reject_str(wat: &str) -> AdmissionError {
    admit(&wat::parse_str(wat).unwrap()).expect_err(wat)
}

/// A module with the usual memory and fuel, plus `rest`.
fn module(rest: &str) -> String {
    format!(
        r#"(module (memory (export "memory") 1 1)
           (global (export "opml_step_fuel") i64 (i64.const 100000)) {rest})"#
    )
}

const STEP: &str = r#"(func (export "step") (result i32) (i32.const 0))"#;

/// Asserts an instruction error of `kind` in `func` naming `opcode`, whose
/// offset points at the encoding `bytes` in the module.
fn assert_instr(name: &str, kind: &str, func: u32, opcode: &str, bytes: &[u8]) {
    let code = fixture(name);
    let err = admit(&code).expect_err(name);
    let (k, f, offset, op) = match &err {
        E::FloatInstruction {
            func,
            offset,
            opcode,
        } => ("float", *func, *offset, opcode),
        E::SimdInstruction {
            func,
            offset,
            opcode,
        } => ("simd", *func, *offset, opcode),
        E::AtomicInstruction {
            func,
            offset,
            opcode,
        } => ("atomic", *func, *offset, opcode),
        E::ForbiddenInstruction {
            func,
            offset,
            opcode,
        } => ("forbidden", *func, *offset, opcode),
        other => panic!("{name}: unexpected {other:?}"),
    };
    assert_eq!((k, f, op.as_str()), (kind, func, opcode), "{name}: {err}");
    assert_eq!(
        &code[offset..offset + bytes.len()],
        bytes,
        "{name}: offset {offset}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(opcode) && msg.contains(&format!("function {func}")),
        "{msg}"
    );
}

#[test]
fn counter_is_admitted_with_default_limits() {
    let info = admit(&fixture("counter")).unwrap();
    let limits = ModuleLimits {
        step_fuel: 100_000,
        chunk_log2: 10,
        max_touched: 32,
        min_pages: 1,
        max_pages: 1,
    };
    let expected = ModuleInfo {
        limits,
        step_func: 0,
        num_funcs: 1,
        num_globals: 1,
        num_types: 1,
    };
    assert_eq!(info, expected);
}

#[test]
fn explicit_limits_are_read() {
    let wat = r#"(module (memory (export "memory") 2 8)
        (global (export "opml_step_fuel") i64 (i64.const 17179869184))
        (global (export "opml_chunk_log2") i32 (i32.const 16))
        (global (export "opml_max_touched") i32 (i32.const 16))
        (data (i32.const 131064) "12345678")
        (func $helper (param i64) (result i32) (i32.wrap_i64 (local.get 0)))
        (func (export "step") (result i32) (call $helper (i64.const 1))))"#;
    let info = admit(&wat::parse_str(wat).unwrap()).unwrap();
    let limits = ModuleLimits {
        step_fuel: 1 << 34,
        chunk_log2: 16,
        max_touched: 16,
        min_pages: 2,
        max_pages: 8,
    };
    assert_eq!(info.limits, limits);
    assert_eq!((info.step_func, info.num_funcs, info.num_types), (1, 2, 2));
    assert_eq!(info.num_globals, 3);
}

#[test]
fn float_instructions() {
    assert_instr("float_add", "float", 1, "F32Add", &[0x92]);
    assert_instr("float_const", "float", 0, "F64Const", &[0x44]);
    assert_instr("trunc_f32", "float", 0, "I32TruncF32S", &[0xa8]);
    for (op, name) in [
        ("i32.trunc_sat_f64_u", "I32TruncSatF64U"),
        ("i32.reinterpret_f32", "I32ReinterpretF32"),
        ("f64.convert_i32_s", "F64ConvertI32S"),
        ("f32.load", "F32Load"),
    ] {
        let wat = module(&format!(
            r#"(func (export "step") (result i32) unreachable {op} drop i32.const 0)"#
        ));
        let err = reject_str(&wat);
        assert!(
            matches!(&err, E::FloatInstruction { func: 0, opcode, .. } if opcode == name),
            "{op}: {err:?}"
        );
    }
}

#[test]
fn float_types() {
    let loc = |e: AdmissionError| match e {
        E::FloatType { location } => location,
        other => panic!("{other:?}"),
    };
    assert_eq!(loc(reject("float_local")), "function 1 local 1");
    assert_eq!(loc(reject("float_param")), "type 1 param 0");
    let global = module(&format!("(global f32 (f32.const 0)) {STEP}"));
    assert_eq!(loc(reject_str(&global)), "global 1");
    let result = module(r#"(func (export "step") (result f64) (f64.const 0))"#);
    assert_eq!(loc(reject_str(&result)), "type 0 result 0");
    let block = module(
        r#"(func (export "step") (result i32) (block (result f32) unreachable) drop i32.const 0)"#,
    );
    assert!(loc(reject_str(&block)).starts_with("function 0 block type at offset"));
    let select = module(
        r#"(func (export "step") (result i32) unreachable (select (result f64)) drop i32.const 0)"#,
    );
    assert!(loc(reject_str(&select)).starts_with("function 0 select at offset"));
}

#[test]
fn simd_and_threads() {
    assert_instr("simd", "simd", 0, "V128Const", &[0xfd, 0x0c]);
    assert_instr("atomic", "atomic", 0, "I32AtomicLoad", &[0xfe, 0x10]);
    assert_eq!(reject("shared_memory"), E::SharedMemory);
    let local = module(r#"(func (export "step") (result i32) (local v128) (i32.const 0))"#);
    assert!(
        matches!(reject_str(&local), E::SimdType { location } if location == "function 0 local 0")
    );
}

#[test]
fn forbidden_instructions() {
    assert_instr("call_indirect", "forbidden", 0, "CallIndirect", &[0x11]);
    assert_instr("memory_copy", "forbidden", 0, "MemoryCopy", &[0xfc, 0x0a]);
    for (body, name) in [
        ("(global.set 0 (i64.const 1))", "GlobalSet"),
        ("(return_call 0)", "ReturnCall"),
        (
            "(memory.fill (i32.const 0) (i32.const 0) (i32.const 0))",
            "MemoryFill",
        ),
        ("(ref.is_null (ref.null func)) drop", "RefNull"),
        // Typed select needs the reference-types proposal, which is off.
        (
            "(select (result i32) (i32.const 1) (i32.const 2) (i32.const 0)) drop",
            "TypedSelect",
        ),
    ] {
        let wat = module(&format!(
            r#"(func (export "step") (result i32) {body} i32.const 0)"#
        ));
        let err = reject_str(&wat);
        assert!(
            matches!(&err, E::ForbiddenInstruction { func: 0, opcode, .. } if opcode == name),
            "{body}: {err:?}"
        );
    }
}

#[test]
fn module_structure() {
    let import = E::Import {
        module: "env".into(),
        name: "log".into(),
    };
    assert_eq!(reject("import"), import);
    assert_eq!(reject("start"), E::StartFunction { func: 0 });
    assert_eq!(reject("mutable_global"), E::MutableGlobal { index: 1 });
    assert_eq!(reject("table"), E::Table);
    let elem = module(&format!("(elem declare func 0) {STEP}"));
    assert_eq!(reject_str(&elem), E::ElementSegment);
    let tag = module(&format!("(tag) {STEP}"));
    assert!(matches!(reject_str(&tag), E::Unsupported { what, .. } if what == "exception tags"));
}

#[test]
fn memory() {
    assert_eq!(reject("unbounded_memory"), E::MemoryUnbounded);
    let too_large = E::MemoryTooLarge {
        max: 20_000,
        limit: MAX_PAGES,
    };
    assert_eq!(reject("memory_too_large"), too_large);
    assert_eq!(reject("two_memories"), E::MemoryCount { count: 2 });
    let none = format!(r#"(module (global (export "opml_step_fuel") i64 (i64.const 1)) {STEP})"#);
    assert_eq!(reject_str(&none), E::MemoryCount { count: 0 });
    let wat = format!(r#"(module (memory (export "memory") 2 1) {STEP})"#);
    assert_eq!(reject_str(&wat), E::MemoryMinAboveMax { min: 2, max: 1 });
    let wat = format!(r#"(module (memory (export "memory") i64 1 1) {STEP})"#);
    assert_eq!(reject_str(&wat), E::Memory64);
}

#[test]
fn data_segments() {
    assert_eq!(reject("passive_data"), E::PassiveData { index: 1 });
    for offset in ["65532", "-1"] {
        let wat = module(&format!(r#"(data (i32.const {offset}) "12345") {STEP}"#));
        assert_eq!(
            reject_str(&wat),
            E::DataOutOfBounds { index: 0 },
            "{offset}"
        );
    }
    let wat = module(&format!(r#"(data (global.get 0) "1") {STEP}"#));
    assert!(matches!(
        reject_str(&wat),
        E::BadDataSegment { index: 0, .. }
    ));
    // Exactly filling the page is fine.
    let wat = module(&format!(r#"(data (i32.const 65532) "1234") {STEP}"#));
    admit(&wat::parse_str(wat).unwrap()).unwrap();
}

#[test]
fn exports() {
    let missing = |name: &str| E::MissingExport { name: name.into() };
    assert_eq!(reject("no_memory_export"), missing("memory"));
    assert_eq!(reject("no_step"), missing("step"));
    assert_eq!(reject("missing_fuel"), missing("opml_step_fuel"));
    match reject("bad_step_type") {
        E::BadExport { name, reason } => {
            assert_eq!(name, "step");
            assert!(reason.contains("[i32] -> [i64]"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let reserved = E::ReservedExport {
        name: "__opml_hook".into(),
    };
    assert_eq!(reject("reserved_export"), reserved);
    let wat = format!(
        r#"(module (memory 1 1) (global (export "opml_step_fuel") i64 (i64.const 1))
           (func (export "memory")) {STEP})"#
    );
    assert!(matches!(reject_str(&wat), E::BadExport { name, .. } if name == "memory"));
}

#[test]
fn limits() {
    let bad = |e: AdmissionError| match e {
        E::BadLimit { name, value, .. } => (name, value),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        bad(reject("bad_chunk_log2")),
        ("opml_chunk_log2".into(), 20)
    );
    let with =
        |globals: &str| format!(r#"(module (memory (export "memory") 1 1) {globals} {STEP})"#);
    let fuel = |v: &str| format!(r#"(global (export "opml_step_fuel") i64 (i64.const {v}))"#);
    assert_eq!(
        bad(reject_str(&with(&fuel("0")))),
        ("opml_step_fuel".into(), 0)
    );
    let over = (1i64 << 34) + 1;
    let wat = with(&fuel(&over.to_string()));
    assert_eq!(bad(reject_str(&wat)), ("opml_step_fuel".into(), over));
    let wat = with(r#"(global (export "opml_step_fuel") i32 (i32.const 5))"#);
    assert_eq!(bad(reject_str(&wat)), ("opml_step_fuel".into(), 5));
    let wat = with(&format!(
        r#"{} (global (export "opml_chunk_log2") i32 (i32.const 16))
           (global (export "opml_max_touched") i32 (i32.const 17))"#,
        fuel("1")
    ));
    assert_eq!(bad(reject_str(&wat)), ("opml_max_touched".into(), 17));
    let wat = with(&format!(
        r#"{} (global (export "opml_max_touched") i32 (i32.const 0))"#,
        fuel("1")
    ));
    assert_eq!(bad(reject_str(&wat)), ("opml_max_touched".into(), 0));
    // Default max_touched at 64 KiB chunks is one chunk.
    let wat = with(&format!(
        r#"{} (global (export "opml_chunk_log2") i32 (i32.const 16))"#,
        fuel("1")
    ));
    let info = admit(&wat::parse_str(wat).unwrap()).unwrap();
    assert_eq!((info.limits.chunk_log2, info.limits.max_touched), (16, 1));
}

/// `step` calling a chain of `n - 1` more functions, each with `nops` nops
/// (encoded directly: assembling a million `nop`s from text is slow).
fn chain(n: u32, nops: usize) -> Vec<u8> {
    use wasm_encoder::*;
    let mut types = TypeSection::new();
    types.ty().function([], [ValType::I32]);
    let mut funcs = FunctionSection::new();
    let mut code = CodeSection::new();
    for i in 0..n {
        funcs.function(0);
        let mut f = Function::new([]);
        for _ in 0..nops {
            f.instructions().nop();
        }
        if i + 1 < n {
            f.instructions().call(i + 1);
        } else {
            f.instructions().i32_const(0);
        }
        f.instructions().end();
        code.function(&f);
    }
    let mut memories = MemorySection::new();
    let (maximum, page_size_log2) = (Some(1), None);
    let (memory64, shared) = (false, false);
    memories.memory(MemoryType {
        minimum: 1,
        maximum,
        memory64,
        shared,
        page_size_log2,
    });
    let mut globals = GlobalSection::new();
    let ty = GlobalType {
        val_type: ValType::I64,
        mutable: false,
        shared: false,
    };
    globals.global(ty, &ConstExpr::i64_const(1000));
    let mut exports = ExportSection::new();
    exports.export("memory", ExportKind::Memory, 0);
    exports.export("opml_step_fuel", ExportKind::Global, 0);
    exports.export("step", ExportKind::Func, 0);
    let mut module = Module::new();
    module.section(&types).section(&funcs).section(&memories);
    module.section(&globals).section(&exports).section(&code);
    module.finish()
}

#[test]
fn call_graph() {
    assert_eq!(reject("recursion"), E::Recursion { func: 1 });
    let self_call = module(r#"(func (export "step") (result i32) (call 0))"#);
    assert_eq!(reject_str(&self_call), E::Recursion { func: 0 });
    admit(&chain(MAX_CALL_DEPTH, 0)).unwrap();
    let depth = MAX_CALL_DEPTH + 1;
    assert_eq!(admit(&chain(depth, 0)), Err(E::CallTooDeep { depth }));
    // Each frame weighs nops + 2 operators (call or i32.const, end) + 16,
    // so 32 frames of 32750 nops weigh exactly MAX_STACK_WEIGHT = 2^20.
    admit(&chain(32, 32_750)).unwrap();
    let weight = 32 * (32_751 + 18);
    assert_eq!(admit(&chain(32, 32_751)), Err(E::StackTooDeep { weight }));
}

#[test]
fn too_many_locals() {
    let locals = "i32 ".repeat(MAX_LOCALS as usize);
    let ok = module(&format!(
        r#"(func (export "step") (result i32) (local {locals}) (i32.const 0))"#
    ));
    admit(&wat::parse_str(ok).unwrap()).unwrap();
    let wat = module(&format!(r#"{STEP} (func (param i64) (local {locals}))"#));
    let count = u64::from(MAX_LOCALS) + 1;
    assert_eq!(reject_str(&wat), E::TooManyLocals { func: 1, count });
}

#[test]
fn validation_is_the_backstop() {
    let wat =
        module(r#"(func (export "step") (result i32) (i32.add (i64.const 1) (i32.const 2)))"#);
    assert!(matches!(reject_str(&wat), E::Invalid { .. }));
    let wat = module(r#"(func (export "step") (result i32) (call 7))"#);
    assert!(matches!(reject_str(&wat), E::Invalid { .. }));
}

#[test]
fn garbage_is_malformed() {
    assert!(matches!(admit(b"not wasm"), Err(E::Malformed { .. })));
    let mut code = fixture("counter");
    code.truncate(code.len() - 3);
    assert!(matches!(admit(&code), Err(E::Malformed { .. })));
}

static MUTANTS: std::sync::LazyLock<Vec<Vec<u8>>> = std::sync::LazyLock::new(|| {
    let names = [
        "counter",
        "recursion",
        "passive_data",
        "float_local",
        "memory_copy",
    ];
    names.iter().map(|name| fixture(name)).collect()
});

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = admit(&bytes);
        let mut with_header = b"\0asm\x01\0\0\0".to_vec();
        with_header.extend_from_slice(&bytes);
        let _ = admit(&with_header);
    }

    #[test]
    fn mutated_modules_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        for code in MUTANTS.iter() {
            let mut code = code.clone();
            for &(at, byte) in &edits {
                let len = code.len();
                code[at % len] = byte;
            }
            let _ = admit(&code);
            code.truncate(cut % (code.len() + 1));
            let _ = admit(&code);
        }
    }
}
