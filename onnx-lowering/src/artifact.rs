//! A lowered model: the module, its metadata, and both engines that run it.
//!
//! [`Artifact::build`] generates the module, admits it, and runs it once on
//! a zero input to record where every node ends (step index and cumulative
//! fuel). Kernels are branch-free in the data, so those figures hold for
//! every input; [`Artifact::run_wasm`] checks them on every run.
//! [`Artifact::run_native`] executes the same integer program natively and
//! produces the identical memory image, and so the identical state root, at
//! every node boundary.

use crate::codegen::{generate, CodegenOptions, Generated};
use crate::error::LowerError;
use crate::ir::{Op, Program, TensorId};
use crate::layout::{NODE_COUNTER, UNIT_COUNTER};
use crate::ops::family::run_native;
use crate::ops::matmul;
use crate::ops::native_gemm::Panel;
use opml_runtime::hash::Hash;
use opml_runtime::merkle::MerkleTree;
use opml_runtime::{Sandbox, StateFields, Status};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

fn codegen(e: opml_runtime::SandboxError) -> LowerError {
    LowerError::Codegen(e.to_string())
}

/// Where one node ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeBoundary {
    pub name: String,
    pub kind: String,
    pub units: u32,
    /// Step index after the node's last unit.
    pub end_step: u64,
    /// Cumulative fuel after the node's last unit.
    pub end_fuel: u64,
}

/// The result of running a model on one engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    /// States at step 0 and after every node.
    pub boundaries: Vec<StateFields>,
    /// The final memory image.
    pub memory: Vec<u8>,
}

impl Run {
    /// Node-boundary state roots (index 0 is the initial state).
    pub fn roots(&self) -> Vec<Hash> {
        self.boundaries.iter().map(|s| s.hash()).collect()
    }

    /// The final state.
    pub fn last(&self) -> StateFields {
        *self.boundaries.last().expect("a run has an initial state")
    }
}

/// A lowered model.
#[derive(Clone, Debug)]
pub struct Artifact {
    pub program: Program,
    pub generated: Generated,
    pub options: CodegenOptions,
    pub nodes: Vec<NodeBoundary>,
    /// Built on first use: the admitted, compiled module, and the Merkle
    /// tree of the initial image (inputs zero), so that a run only compiles
    /// once and only rehashes the chunks its inputs and nodes write.
    pub(crate) cache: Cache,
}

/// Lazily built, derived state of an [`Artifact`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Cache {
    compiled: std::sync::OnceLock<Arc<CompiledProgram>>,
    tree: std::sync::OnceLock<MerkleTree>,
    native: std::sync::OnceLock<NativeCache>,
    image: std::sync::OnceLock<Vec<u8>>,
    /// Images of finished [`Artifact::run_native_final`] runs, restored to
    /// the initial image, for the next runs.
    scratch: ScratchPool,
}

/// A pool of memory images; a clone starts empty.
#[derive(Debug, Default)]
struct ScratchPool(std::sync::Mutex<Vec<Vec<u8>>>);

impl Clone for ScratchPool {
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// What the native executor derives once per artifact: per node, the
/// packed weights of a matmul whose weight bytes no input and no node
/// writes (so they hold their initial value in every run).
#[derive(Clone, Debug, Default)]
pub(crate) struct NativeCache {
    weights: Vec<Option<Panel>>,
}

impl NativeCache {
    fn new(program: &Program, image: &[u8]) -> Self {
        let range = |t: TensorId| {
            let t = &program.tensors[t];
            (t.offset, t.end())
        };
        let written: Vec<(u32, u32)> = program
            .inputs
            .iter()
            .copied()
            .chain(program.nodes.iter().map(|n| n.op.output()))
            .map(range)
            .collect();
        let weights = program
            .nodes
            .iter()
            .map(|n| match &n.op {
                Op::MatMul(o) => {
                    let (lo, hi) = range(o.w);
                    let untouched = written.iter().all(|(a, b)| *b <= lo || hi <= *a);
                    untouched.then(|| matmul::pack_weights(o, program, image))
                }
                _ => None,
            })
            .collect();
        Self { weights }
    }
}

/// `opml_runtime::Program` is not `Debug`; this wrapper is.
pub(crate) struct CompiledProgram(Arc<opml_runtime::Program>);

impl std::fmt::Debug for CompiledProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CompiledProgram({})", hex::encode(self.0.code_hash()))
    }
}

impl Artifact {
    /// Generates, admits and measures the module of `program`.
    pub fn build(program: Program, options: CodegenOptions) -> Result<Self, LowerError> {
        let (generated, schedule) = generate(&program, &options)?;
        program.validate(&generated.initial_image())?;
        let mut nodes: Vec<NodeBoundary> = program
            .nodes
            .iter()
            .zip(&schedule)
            .map(|(n, s)| NodeBoundary {
                name: n.name.clone(),
                kind: n.op.kind().into(),
                units: s.units,
                end_step: 0,
                end_fuel: 0,
            })
            .collect();
        let mut step = 0u64;
        for n in nodes.iter_mut() {
            step += u64::from(n.units);
            n.end_step = step;
        }
        let mut artifact = Self {
            program,
            generated,
            options,
            nodes,
            cache: Cache::default(),
        };
        let zeros: Vec<Vec<u8>> = artifact
            .program
            .inputs
            .iter()
            .map(|t| vec![0u8; artifact.program.tensors[*t].bytes() as usize])
            .collect();
        let run = artifact.execute_wasm(&zeros, false)?;
        for (n, s) in artifact.nodes.iter_mut().zip(&run.boundaries[1..]) {
            n.end_fuel = s.fuel;
        }
        Ok(artifact)
    }

    /// The Wasm module.
    pub fn wasm(&self) -> &[u8] {
        &self.generated.wasm
    }

    /// The memory image at instantiation (before inputs are written).
    pub fn initial_image(&self) -> Vec<u8> {
        self.generated.initial_image()
    }

    fn check_inputs(&self, inputs: &[Vec<u8>]) -> Result<(), LowerError> {
        if inputs.len() != self.program.inputs.len() {
            return Err(LowerError::BadInput(format!(
                "{} inputs given, the model takes {}",
                inputs.len(),
                self.program.inputs.len()
            )));
        }
        for (bytes, t) in inputs.iter().zip(&self.program.inputs) {
            let t = &self.program.tensors[*t];
            if bytes.len() != t.bytes() as usize {
                return Err(LowerError::BadInput(format!(
                    "input {} takes {} bytes, got {}",
                    t.name,
                    t.bytes(),
                    bytes.len()
                )));
            }
        }
        Ok(())
    }

    /// Runs every step in the metered sandbox; returns the node-boundary
    /// states and checks them against the recorded step and fuel figures.
    pub fn run_wasm(&self, inputs: &[Vec<u8>]) -> Result<Run, LowerError> {
        self.execute_wasm(inputs, true)
    }

    /// The admitted and compiled module (compiled once per artifact).
    pub fn compiled(&self) -> Result<Arc<opml_runtime::Program>, LowerError> {
        if let Some(c) = self.cache.compiled.get() {
            return Ok(c.0.clone());
        }
        let p = opml_runtime::Program::new(&self.generated.wasm).map_err(codegen)?;
        Ok(self
            .cache
            .compiled
            .get_or_init(|| Arc::new(CompiledProgram(p)))
            .0
            .clone())
    }

    /// Depth of the module's Merkle tree, by the runtime's own rule.
    fn depth(&self) -> u32 {
        opml_runtime::limits::ModuleLimits {
            step_fuel: self.options.step_fuel,
            chunk_log2: self.options.chunk_log2,
            max_touched: self.options.max_touched,
            min_pages: self.generated.memory_pages,
            max_pages: self.generated.memory_pages,
        }
        .tree_depth()
    }

    /// The Merkle tree of the initial image (built once per artifact).
    fn initial_tree(&self) -> Result<&MerkleTree, LowerError> {
        if let Some(t) = self.cache.tree.get() {
            return Ok(t);
        }
        let t = MerkleTree::new(
            self.depth(),
            1 << self.options.chunk_log2,
            &self.initial_image(),
        )
        .map_err(|e| LowerError::Codegen(e.to_string()))?;
        Ok(self.cache.tree.get_or_init(|| t))
    }

    /// A sandbox at step 0 with `inputs` written: the initial state of a task.
    pub fn sandbox(&self, inputs: &[Vec<u8>]) -> Result<Sandbox, LowerError> {
        self.check_inputs(inputs)?;
        let mut sb = Sandbox::from_program(self.compiled()?).map_err(codegen)?;
        for (bytes, t) in inputs.iter().zip(&self.program.inputs) {
            sb.write_input(u64::from(self.program.tensors[*t].offset), bytes)
                .map_err(codegen)?;
        }
        Ok(sb)
    }

    fn execute_wasm(&self, inputs: &[Vec<u8>], check: bool) -> Result<Run, LowerError> {
        let mut sb = self.sandbox(inputs)?;
        let mut boundaries = vec![sb.state()];
        for n in &self.nodes {
            while sb.state().step < n.end_step {
                let s = sb.step().map_err(codegen)?;
                if let Status::Faulted(f) = s.status {
                    return Err(LowerError::Codegen(format!(
                        "node {} faulted: {f:?} at step {}",
                        n.name, s.step
                    )));
                }
            }
            let s = sb.state();
            if check && s.fuel != n.end_fuel {
                return Err(LowerError::Codegen(format!(
                    "node {} ended with fuel {}, recorded {}: a kernel's fuel depends on data",
                    n.name, s.fuel, n.end_fuel
                )));
            }
            boundaries.push(s);
        }
        if sb.state().status != Status::Halted {
            return Err(LowerError::Codegen(format!(
                "module did not halt after {} steps",
                sb.state().step
            )));
        }
        Ok(Run {
            boundaries,
            memory: sb.memory().to_vec(),
        })
    }

    /// Runs the integer program natively, producing the same node-boundary
    /// states as [`Artifact::run_wasm`].
    pub fn run_native(&self, inputs: &[Vec<u8>]) -> Result<Run, LowerError> {
        self.check_inputs(inputs)?;
        // One copy of the cached image (no zero-filling first: that cost as
        // much as the copy for large models).
        let image = self.cached_image();
        let mut memory = Vec::with_capacity(image.len());
        memory.extend_from_slice(image);
        let (boundaries, _) = self.execute_native(inputs, true, &mut memory)?;
        Ok(Run { boundaries, memory })
    }

    /// Runs the integer program natively and gives the bytes of every
    /// output (in [`Program::outputs`] order) and the final state only:
    /// what a claim needs. The Merkle tree is updated once, over every
    /// chunk the run wrote, instead of at every node boundary, and the
    /// memory image is a recycled one (restored to the initial image
    /// chunk by chunk where the run wrote, since every op writes only its
    /// output), so a large model's image is neither allocated nor copied
    /// whole per run. The state equals `run_native(inputs)?.last()`; the
    /// node-boundary roots can be computed later, when a dispute asks for
    /// them.
    pub fn run_native_final(
        &self,
        inputs: &[Vec<u8>],
    ) -> Result<(Vec<Vec<u8>>, StateFields), LowerError> {
        self.check_inputs(inputs)?;
        let image = self.cached_image();
        let mut mem = self
            .cache
            .scratch
            .0
            .lock()
            .map_err(|_| LowerError::Codegen("scratch pool poisoned".into()))?
            .pop()
            .unwrap_or_else(|| image.to_vec());
        // A failed run drops its image (its contents are unknown).
        let (mut states, dirty) = self.execute_native(inputs, false, &mut mem)?;
        let chunk = 1usize << self.options.chunk_log2;
        let outputs = self
            .program
            .outputs
            .iter()
            .map(|t| {
                let t = &self.program.tensors[*t];
                mem[t.offset as usize..t.end() as usize].to_vec()
            })
            .collect();
        for c in dirty {
            let (lo, hi) = (
                c as usize * chunk,
                ((c as usize + 1) * chunk).min(mem.len()),
            );
            mem[lo..hi].copy_from_slice(&image[lo..hi]);
        }
        if let Ok(mut pool) = self.cache.scratch.0.lock() {
            if pool.len() < 4 {
                pool.push(mem);
            }
        }
        let last = states.pop().expect("the final state");
        Ok((outputs, last))
    }

    /// The native run on `mem`, the initial image: with `every_node`, the
    /// states at every node boundary (the first is the initial state);
    /// otherwise the final state only, the tree updated once. Also gives
    /// the chunks written since the last tree update (sorted).
    fn execute_native(
        &self,
        inputs: &[Vec<u8>],
        every_node: bool,
        mem: &mut [u8],
    ) -> Result<(Vec<StateFields>, Vec<u32>), LowerError> {
        for (bytes, t) in inputs.iter().zip(&self.program.inputs) {
            let off = self.program.tensors[*t].offset as usize;
            mem[off..off + bytes.len()].copy_from_slice(bytes);
        }
        let chunk_log2 = self.options.chunk_log2;
        let pages = self.generated.memory_pages;
        let mut tree = self.initial_tree()?.clone();
        let mut dirty: Vec<u32> = Vec::new();
        for t in &self.program.inputs {
            let t = &self.program.tensors[*t];
            if t.bytes() > 0 {
                dirty.extend((t.offset >> chunk_log2)..=((t.end() - 1) >> chunk_log2));
            }
        }
        let update = |tree: &mut MerkleTree, mem: &[u8], dirty: &mut Vec<u32>| {
            dirty.sort_unstable();
            dirty.dedup();
            tree.update(mem, dirty)
                .map_err(|e| LowerError::Codegen(e.to_string()))
        };
        let mut states = Vec::new();
        let state = |tree: &MerkleTree, halted: bool, step: u64, fuel: u64| StateFields {
            status: if halted {
                Status::Halted
            } else {
                Status::Running
            },
            step,
            fuel,
            memory_pages: pages,
            memory_root: tree.root(),
        };
        if every_node {
            update(&mut tree, mem, &mut dirty)?;
            states.push(state(&tree, false, 0, 0));
            dirty.clear();
        }
        let last = self.program.nodes.len() - 1;
        for (k, (node, b)) in self.program.nodes.iter().zip(&self.nodes).enumerate() {
            self.run_node_native(k, mem)?;
            mem[NODE_COUNTER as usize..NODE_COUNTER as usize + 4]
                .copy_from_slice(&(k as u32 + 1).to_le_bytes());
            mem[UNIT_COUNTER as usize..UNIT_COUNTER as usize + 4]
                .copy_from_slice(&0u32.to_le_bytes());
            let out = &self.program.tensors[node.op.output()];
            let (lo, hi) = (out.offset >> chunk_log2, (out.end() - 1) >> chunk_log2);
            dirty.push(0);
            dirty.extend(lo..=hi);
            if every_node || k == last {
                update(&mut tree, mem, &mut dirty)?;
                states.push(state(&tree, k == last, b.end_step, b.end_fuel));
                if every_node {
                    dirty.clear();
                }
            }
        }
        Ok((states, dirty))
    }

    /// The native cache (built on first use from the initial image).
    fn native_cache(&self) -> &NativeCache {
        self.cache
            .native
            .get_or_init(|| NativeCache::new(&self.program, self.cached_image()))
    }

    /// The initial image, built once per artifact for the native executor.
    fn cached_image(&self) -> &[u8] {
        self.cache.image.get_or_init(|| self.initial_image())
    }

    /// Runs node `k`'s op natively on the memory image `mem` (with the
    /// artifact's cached packed weights where it has them). Does not touch
    /// the node and unit counters.
    pub fn run_node_native(&self, k: usize, mem: &mut [u8]) -> Result<(), LowerError> {
        let node = self.program.nodes.get(k).ok_or_else(|| {
            LowerError::BadInput(format!(
                "node {k} is past the last of {}",
                self.program.nodes.len()
            ))
        })?;
        match (&node.op, self.native_cache().weights.get(k)) {
            (Op::MatMul(o), Some(Some(w))) => {
                matmul::run_packed(o, &self.program, mem, w);
                Ok(())
            }
            (op, _) => run_native(op, &self.program, mem),
        }
    }

    /// Bytes of an output tensor in a run's memory.
    pub fn output<'a>(&self, run: &'a Run, t: TensorId) -> &'a [u8] {
        let t = &self.program.tensors[t];
        &run.memory[t.offset as usize..t.end() as usize]
    }
}
