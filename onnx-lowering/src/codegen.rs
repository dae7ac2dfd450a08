//! Code generation: the kernels the program needs, a dispatcher `step()`,
//! and data segments holding the constants, the schedule and the
//! descriptors.
//!
//! `step()` reads the node and unit counters, calls the node's kernel on
//! the unit through a `br_table`, advances the counters and returns whether
//! nodes remain. The code depends only on which kernels are used, never on
//! the weights: a module carries exactly the kernels its nodes use, in
//! registry order, numbered densely from 0. So a model's code (and its
//! code hash) does not change when a kernel for some other op family is
//! added to the registry.

use crate::error::LowerError;
use crate::ir::Program;
use crate::layout::{NODE_COUNTER, SCHED_ENTRY, UNIT_COUNTER};
use crate::ops::family::{kernel_id, schedule, Budget, Kernel, Scheduled, KERNELS};
use std::fmt::Write;
use wasm_encoder::{ConstExpr, DataSection, Encode};

/// Options of code generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CodegenOptions {
    pub budget: Budget,
    /// Fuel cap of one step (a multiple of the unit budget, for headroom).
    pub step_fuel: u64,
    pub chunk_log2: u32,
    pub max_touched: u32,
}

impl Default for CodegenOptions {
    fn default() -> Self {
        Self {
            budget: Budget {
                unit_fuel: 200_000,
                unit_bytes: 24 << 10,
            },
            step_fuel: 4_000_000,
            chunk_log2: 9,
            // Units are sized to touch about `unit_bytes`; this is only the
            // hard cap, for units whose reads are spread over many chunks
            // (a conv reading C channel planes touches at least C chunks).
            // Worst-case proof data: 1024 x 512 B (x2 for straddling).
            max_touched: 1024,
        }
    }
}

/// The generated module and where things are in its memory.
#[derive(Clone, Debug)]
pub struct Generated {
    pub wasm: Vec<u8>,
    /// Data segments `(offset, bytes)`, in order; with zeros elsewhere they
    /// are the initial memory image.
    pub segments: Vec<(u32, Vec<u8>)>,
    pub memory_pages: u32,
}

impl Generated {
    /// The memory image at instantiation: zeros plus the data segments.
    pub fn initial_image(&self) -> Vec<u8> {
        let mut mem = vec![0u8; self.memory_pages as usize * 65536];
        for (offset, bytes) in &self.segments {
            mem[*offset as usize..*offset as usize + bytes.len()].copy_from_slice(bytes);
        }
        mem
    }
}

fn align8(x: u32) -> u32 {
    (x + 7) & !7
}

/// Generates the module of `program`, with each node's kernel, units and
/// descriptor.
pub fn generate(
    program: &Program,
    opts: &CodegenOptions,
) -> Result<(Generated, Vec<Scheduled>), LowerError> {
    if program.nodes.is_empty() {
        return Err(LowerError::InvalidProgram("program has no nodes".into()));
    }
    let tensors_end = program.tensors.iter().map(|t| t.end()).max().unwrap_or(0);
    let sched_base = align8(tensors_end);
    let mut schedule_words: Vec<u32> = Vec::new();
    let mut desc_words: Vec<u32> = Vec::new();
    let desc_base = sched_base + SCHED_ENTRY * program.nodes.len() as u32;
    let mut scheduled = Vec::new();
    for node in &program.nodes {
        let s = schedule(&node.op, program, &opts.budget)?;
        if s.units == 0 {
            return Err(LowerError::InvalidProgram(format!(
                "node {} has no work",
                node.name
            )));
        }
        scheduled.push(s);
    }
    let kernels = used_kernels(&scheduled);
    for s in &scheduled {
        let id = kernels
            .iter()
            .position(|k| k.name == s.kernel)
            .expect("every scheduled kernel is used") as u32;
        let desc_at = desc_base + 4 * desc_words.len() as u32;
        schedule_words.extend([id, s.units, desc_at, 0]);
        desc_words.extend(&s.descriptor);
    }
    let end = desc_base + 4 * desc_words.len() as u32;
    let pages = end.div_ceil(65536).max(1);

    let mut segments: Vec<(u32, Vec<u8>)> = Vec::new();
    for c in &program.constants {
        segments.push((program.tensors[c.tensor].offset, c.bytes.clone()));
    }
    let words = |w: &[u32]| w.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    segments.push((sched_base, words(&schedule_words)));
    segments.push((desc_base, words(&desc_words)));

    let text = module_text(
        &kernels,
        program.nodes.len() as u32,
        sched_base,
        pages,
        opts,
    );
    let mut wasm = wat::parse_str(&text).map_err(|e| LowerError::Codegen(format!("{e}")))?;
    let mut data = DataSection::new();
    for (offset, bytes) in &segments {
        data.active(
            0,
            &ConstExpr::i32_const(*offset as i32),
            bytes.iter().copied(),
        );
    }
    wasm.push(11); // data section id; the code section precedes it
    data.encode(&mut wasm);
    let generated = Generated {
        wasm,
        segments,
        memory_pages: pages,
    };
    Ok((generated, scheduled))
}

/// The kernels `scheduled` uses, each once, in registry order: the module's
/// kernel ids are positions in this list.
fn used_kernels(scheduled: &[Scheduled]) -> Vec<&'static Kernel> {
    let mut ids: Vec<u32> = scheduled.iter().map(|s| kernel_id(s.kernel)).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter().map(|i| KERNELS[i as usize]).collect()
}

fn module_text(
    kernels: &[&Kernel],
    nodes: u32,
    sched: u32,
    pages: u32,
    opts: &CodegenOptions,
) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "(module");
    let _ = writeln!(t, "  (memory (export \"memory\") {pages} {pages})");
    let _ = writeln!(
        t,
        "  (global (export \"opml_step_fuel\") i64 (i64.const {}))",
        opts.step_fuel
    );
    let _ = writeln!(
        t,
        "  (global (export \"opml_chunk_log2\") i32 (i32.const {}))",
        opts.chunk_log2
    );
    let _ = writeln!(
        t,
        "  (global (export \"opml_max_touched\") i32 (i32.const {}))",
        opts.max_touched
    );
    for k in kernels {
        t.push_str(k.wat);
    }
    let _ = writeln!(t, "  (func (export \"step\") (result i32)");
    let _ = writeln!(t, "    (local $node i32) (local $unit i32) (local $e i32)");
    let _ = writeln!(
        t,
        "    (local.set $node (i32.load (i32.const {NODE_COUNTER})))"
    );
    let _ = writeln!(
        t,
        "    (local.set $unit (i32.load (i32.const {UNIT_COUNTER})))"
    );
    let _ = writeln!(
        t,
        "    (local.set $e (i32.add (i32.const {sched}) (i32.shl (local.get $node) (i32.const 4))))"
    );
    // Nested blocks: the innermost is kernel 0.
    let _ = writeln!(t, "    (block $done");
    for i in (0..kernels.len()).rev() {
        let _ = writeln!(t, "    (block $k{i}");
    }
    let labels: String = (0..kernels.len()).map(|i| format!("$k{i} ")).collect();
    let _ = writeln!(
        t,
        "      (br_table {labels}$done (i32.load (local.get $e))))"
    );
    for k in kernels {
        let _ = writeln!(
            t,
            "      (call ${} (i32.load offset=8 (local.get $e)) (local.get $unit)) (br $done))",
            k.name
        );
    }
    let _ = writeln!(
        t,
        "    (local.set $unit (i32.add (local.get $unit) (i32.const 1)))"
    );
    let _ = writeln!(
        t,
        "    (if (i32.ge_u (local.get $unit) (i32.load offset=4 (local.get $e)))"
    );
    let _ = writeln!(
        t,
        "      (then (local.set $unit (i32.const 0)) (local.set $node (i32.add (local.get $node) (i32.const 1)))))"
    );
    let _ = writeln!(
        t,
        "    (i32.store (i32.const {NODE_COUNTER}) (local.get $node))"
    );
    let _ = writeln!(
        t,
        "    (i32.store (i32.const {UNIT_COUNTER}) (local.get $unit))"
    );
    let _ = writeln!(t, "    (i32.lt_u (local.get $node) (i32.const {nodes})))");
    let _ = writeln!(t, ")");
    t
}
