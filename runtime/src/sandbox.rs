//! The prover's sandbox: runs an admitted module step by step over its real
//! linear memory and commits the state after every step.
//!
//! Each step runs the fast variant (see [`crate::instrument`]). Afterwards
//! the sandbox reads the read/write marks of the step, clears them, and
//! rehashes exactly the chunks the step wrote (plus their Merkle paths). A
//! step that touched more distinct chunks (counted by the first byte of each
//! access, see [`crate::instrument`]) than the module allows becomes the
//! terminal `Faulted(TouchLimit)` state, whose memory and fuel are those
//! before the step.
//!
//! [`Sandbox::prove_next_step`] re-runs the next step in the virtual variant
//! over a copy of memory that records every chunk the step touches, and
//! packs those chunks with a multiproof into a [`OneStepProof`].

use crate::admission::{admit, AdmissionError, ModuleInfo};
use crate::checkpoint::Snapshot;
use crate::engine::{classify, engine, run_virtual_step, EngineError, Meter, StepEnd, VirtualStep};
use crate::hash::{code_hash, Hash};
use crate::instrument::{instrument, InstrumentError, Variant, MARKS_MEMORY};
use crate::limits::PAGE_SIZE;
use crate::merkle::{MerkleError, MerkleTree};
use crate::proof::{OneStepProof, ProvenChunk, PROOF_VERSION};
use crate::state::{Fault, StateFields, Status};
use crate::vmem::{Backing, HostMemory, HostStop};
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmi::{Engine, Instance, Memory, Module, Store, TypedFunc};

/// Anything that stops the sandbox from doing what was asked. A module's own
/// misbehaviour is never an error: it is a committed `Faulted` state.
#[derive(Debug)]
pub enum SandboxError {
    /// The module was not admitted.
    Admission(AdmissionError),
    /// The machine is halted or faulted; it takes no more steps.
    Terminal(Status),
    /// A snapshot does not belong to this module or does not match its root.
    BadSnapshot(String),
    /// Input written outside memory, or after step 0.
    BadInput(String),
    /// The step counter or cumulative fuel would overflow `u64` (only a
    /// hand-made state can get there).
    CounterOverflow,
    /// Internal failure (instrumentation, engine, host resources).
    Internal(String),
}

impl std::fmt::Display for SandboxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Admission(e) => write!(f, "module rejected: {e}"),
            Self::Terminal(s) => write!(f, "machine is terminal ({s:?}) and takes no more steps"),
            Self::BadSnapshot(e) => write!(f, "bad snapshot: {e}"),
            Self::BadInput(e) => write!(f, "bad input: {e}"),
            Self::CounterOverflow => write!(f, "step counter or cumulative fuel would overflow"),
            Self::Internal(e) => write!(f, "internal sandbox error: {e}"),
        }
    }
}

impl std::error::Error for SandboxError {}

fn internal(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Internal(e.to_string())
}

impl From<InstrumentError> for SandboxError {
    fn from(e: InstrumentError) -> Self {
        internal(e)
    }
}
impl From<EngineError> for SandboxError {
    fn from(e: EngineError) -> Self {
        Self::Internal(e.0)
    }
}
impl From<MerkleError> for SandboxError {
    fn from(e: MerkleError) -> Self {
        internal(e)
    }
}

/// An admitted module, compiled once and shared by any number of sandboxes.
pub struct Program {
    code: Vec<u8>,
    info: ModuleInfo,
    code_hash: Hash,
    engine: Engine,
    fast: Module,
    virt: Module,
}

impl Program {
    /// Admits and compiles `code`.
    pub fn new(code: &[u8]) -> Result<Arc<Self>, SandboxError> {
        let info = admit(code).map_err(SandboxError::Admission)?;
        let engine = engine();
        let fast =
            Module::new(&engine, &instrument(code, &info, Variant::Fast)?[..]).map_err(internal)?;
        let virt = Module::new(&engine, &instrument(code, &info, Variant::Virtual)?[..])
            .map_err(internal)?;
        Ok(Arc::new(Self {
            code: code.to_vec(),
            info,
            code_hash: code_hash(code),
            engine,
            fast,
            virt,
        }))
    }

    pub fn code(&self) -> &[u8] {
        &self.code
    }
    pub fn info(&self) -> &ModuleInfo {
        &self.info
    }
    pub fn code_hash(&self) -> Hash {
        self.code_hash
    }
}

/// What one step did, besides the new state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepReport {
    pub state: StateFields,
    /// Chunks the step wrote (and so rehashed), ascending.
    pub written: Vec<u32>,
    /// Distinct chunks the step read or wrote.
    pub touched: usize,
}

/// A running machine.
pub struct Sandbox {
    program: Arc<Program>,
    store: Store<()>,
    step_fn: TypedFunc<(), i32>,
    meter: Meter,
    memory: Memory,
    marks: Memory,
    tree: MerkleTree,
    fields: StateFields,
}

impl Sandbox {
    /// Admits `code` and builds the machine at step 0.
    pub fn new(code: &[u8]) -> Result<Self, SandboxError> {
        Self::from_program(Program::new(code)?)
    }

    /// A fresh machine at step 0 of an already compiled program.
    pub fn from_program(program: Arc<Program>) -> Result<Self, SandboxError> {
        let mut store = Store::new(&program.engine, ());
        let instance = Instance::new(&mut store, &program.fast, &[]).map_err(internal)?;
        let step_fn = instance
            .get_typed_func::<(), i32>(&store, "step")
            .map_err(internal)?;
        let meter = Meter::new(&store, &instance).map_err(|e| internal(e.0))?;
        let memory = instance
            .get_memory(&store, "memory")
            .ok_or_else(|| internal("no memory export"))?;
        let marks = instance
            .get_memory(&store, MARKS_MEMORY)
            .ok_or_else(|| internal("no marks memory"))?;
        let limits = program.info.limits;
        let tree = MerkleTree::new(
            limits.tree_depth(),
            limits.chunk_size(),
            memory.data(&store),
        )?;
        let fields = StateFields {
            status: Status::Running,
            step: 0,
            fuel: 0,
            memory_pages: limits.min_pages,
            memory_root: tree.root(),
        };
        Ok(Self {
            program,
            store,
            step_fn,
            meter,
            memory,
            marks,
            tree,
            fields,
        })
    }

    /// Rebuilds the machine from a snapshot, checking it against its root.
    pub fn restore(program: Arc<Program>, snapshot: &Snapshot) -> Result<Self, SandboxError> {
        if snapshot.code_hash != program.code_hash {
            return Err(SandboxError::BadSnapshot(
                "snapshot is of another module".into(),
            ));
        }
        let mut sb = Self::from_program(program)?;
        let f = snapshot.fields;
        let limits = sb.program.info.limits;
        if f.memory_pages < limits.min_pages || f.memory_pages > limits.max_pages {
            return Err(SandboxError::BadSnapshot(format!(
                "{} pages out of range",
                f.memory_pages
            )));
        }
        if snapshot.memory.len() as u64 != u64::from(f.memory_pages) * PAGE_SIZE {
            return Err(SandboxError::BadSnapshot(
                "memory length does not match its pages".into(),
            ));
        }
        let grow = u64::from(f.memory_pages - limits.min_pages);
        sb.memory.grow(&mut sb.store, grow).map_err(internal)?;
        sb.memory
            .data_mut(&mut sb.store)
            .copy_from_slice(&snapshot.memory);
        sb.tree = MerkleTree::new(limits.tree_depth(), limits.chunk_size(), &snapshot.memory)?;
        if sb.tree.root() != f.memory_root {
            return Err(SandboxError::BadSnapshot(
                "memory does not hash to the memory root".into(),
            ));
        }
        sb.fields = f;
        Ok(sb)
    }

    /// A full copy of the current state.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            code_hash: self.program.code_hash,
            fields: self.fields,
            memory: self.memory().to_vec(),
        }
    }

    pub fn program(&self) -> &Arc<Program> {
        &self.program
    }

    /// The committed fields of the current state.
    pub fn state(&self) -> StateFields {
        self.fields
    }

    /// The current state root.
    pub fn state_root(&self) -> Hash {
        self.fields.hash()
    }

    /// Current linear memory. After a `TouchLimit` fault this still holds
    /// what the over-limit step wrote, although the committed state does not.
    pub fn memory(&self) -> &[u8] {
        self.memory.data(&self.store)
    }

    /// Writes task input into memory before the first step; the initial state
    /// root changes accordingly.
    pub fn write_input(&mut self, offset: u64, bytes: &[u8]) -> Result<(), SandboxError> {
        if self.fields.step != 0 {
            return Err(SandboxError::BadInput(
                "input can only be written at step 0".into(),
            ));
        }
        let end = offset
            .checked_add(bytes.len() as u64)
            .filter(|e| *e <= self.memory().len() as u64)
            .ok_or_else(|| {
                SandboxError::BadInput(format!("{} bytes at {offset} exceed memory", bytes.len()))
            })?;
        self.memory.data_mut(&mut self.store)[offset as usize..end as usize].copy_from_slice(bytes);
        if !bytes.is_empty() {
            let log2 = self.program.info.limits.chunk_log2;
            let dirty: Vec<u32> = ((offset >> log2) as u32..=((end - 1) >> log2) as u32).collect();
            let mem = self.memory.data(&self.store);
            self.tree.update(mem, &dirty)?;
            self.fields.memory_root = self.tree.root();
        }
        Ok(())
    }

    /// Takes one step and commits the new state.
    pub fn step(&mut self) -> Result<StateFields, SandboxError> {
        self.step_report().map(|r| r.state)
    }

    /// Takes one step, reporting what it touched.
    pub fn step_report(&mut self) -> Result<StepReport, SandboxError> {
        if self.fields.status.is_terminal() {
            return Err(SandboxError::Terminal(self.fields.status));
        }
        let limits = self.program.info.limits;
        let pre = self.fields;
        let next_step = pre
            .step
            .checked_add(1)
            .ok_or(SandboxError::CounterOverflow)?;
        self.meter.arm(&mut self.store, limits.step_fuel);
        let result = self.step_fn.call(&mut self.store, ());
        let end = classify(result, self.meter.out_of_fuel(&self.store))?;
        let status = match end {
            StepEnd::Status(s) => s,
            StepEnd::Host(stop) => {
                return Err(internal(format!("host stop {stop} in the fast variant")))
            }
        };
        let pages = self.memory.size(&self.store) as u32;
        let (written, touched) = self.take_marks(limits.chunks_in(pages), limits.max_chunks());
        if touched > limits.max_touched as usize {
            self.fields = StateFields {
                status: Status::Faulted(Fault::TouchLimit),
                step: next_step,
                ..pre
            };
            return Ok(StepReport {
                state: self.fields,
                written: Vec::new(),
                touched,
            });
        }
        self.tree.grow(limits.chunks_in(pages))?;
        let mem = self.memory.data(&self.store);
        self.tree.update(mem, &written)?;
        let used = limits
            .step_fuel
            .saturating_sub(self.meter.left(&self.store));
        self.fields = StateFields {
            status,
            step: next_step,
            fuel: pre
                .fuel
                .checked_add(used)
                .ok_or(SandboxError::CounterOverflow)?,
            memory_pages: pages,
            memory_root: self.tree.root(),
        };
        Ok(StepReport {
            state: self.fields,
            written,
            touched,
        })
    }

    /// Reads and clears the marks of the chunks below `n`; returns the
    /// written chunks (first- or last-byte write marks) and the number of
    /// distinct touched chunks (first-byte read or write marks). Scans in
    /// blocks of 64 marks, so a step that touched little costs about
    /// `n / 64` block tests.
    fn take_marks(&mut self, n: u64, max_chunks: u64) -> (Vec<u32>, usize) {
        const BLOCK: usize = 64;
        let mc = max_chunks as usize;
        let marks = self.marks.data_mut(&mut self.store);
        let (reads, rest) = marks.split_at_mut(mc);
        let (first_writes, last_writes) = rest.split_at_mut(mc);
        let n = n as usize;
        let mut written = Vec::new();
        let mut touched = 0usize;
        let mut lo = 0usize;
        while lo < n {
            let hi = (lo + BLOCK).min(n);
            let (r, w, l) = (
                &mut reads[lo..hi],
                &mut first_writes[lo..hi],
                &mut last_writes[lo..hi],
            );
            if r.iter().chain(w.iter()).chain(l.iter()).all(|b| *b == 0) {
                lo = hi;
                continue;
            }
            for i in 0..hi - lo {
                touched += usize::from(r[i] != 0 || w[i] != 0);
                if w[i] != 0 || l[i] != 0 {
                    written.push((lo + i) as u32);
                }
            }
            r.fill(0);
            w.fill(0);
            l.fill(0);
            lo = hi;
        }
        (written, touched)
    }

    /// Proves the next step from the current state: re-runs it in the virtual
    /// variant over a recording copy of memory.
    pub fn prove_next_step(&self) -> Result<OneStepProof, SandboxError> {
        self.prove_and_run_next_step().map(|(proof, _)| proof)
    }

    /// Proves the next step and returns the post-state the recording run
    /// computed (which must equal what [`Sandbox::step`] commits).
    pub fn prove_and_run_next_step(&self) -> Result<(OneStepProof, StateFields), SandboxError> {
        let pre = self.fields;
        if pre.status.is_terminal() {
            return Err(SandboxError::Terminal(pre.status));
        }
        let limits = self.program.info.limits;
        let backing = Recording {
            memory: self.memory().to_vec(),
            chunk_size: limits.chunk_size(),
            pre: BTreeMap::new(),
        };
        let host = HostMemory::new(
            backing,
            limits.chunk_log2,
            pre.memory_pages,
            limits.max_pages,
            limits.max_touched,
        );
        let VirtualStep {
            end,
            fuel_used: used,
            memory: host,
        } = run_virtual_step(
            &self.program.engine,
            &self.program.virt,
            host,
            limits.step_fuel,
        )?;
        let indices: Vec<u32> = host.backing.pre.keys().copied().collect();
        // A step that touches no memory is proven by its pre-state alone.
        let lemmas = if indices.is_empty() {
            Vec::new()
        } else {
            self.tree.multiproof(&indices)?
        };
        let proof = OneStepProof {
            version: PROOF_VERSION,
            pre,
            chunks: host
                .backing
                .pre
                .into_iter()
                .map(|(index, data)| ProvenChunk { index, data })
                .collect(),
            lemmas,
        };
        let next_step = pre
            .step
            .checked_add(1)
            .ok_or(SandboxError::CounterOverflow)?;
        let post = match end {
            StepEnd::Host(HostStop::TouchLimit) => StateFields {
                status: Status::Faulted(Fault::TouchLimit),
                step: next_step,
                ..pre
            },
            StepEnd::Host(HostStop::MissingChunk(c)) => {
                return Err(internal(format!("recording memory lacks chunk {c}")))
            }
            StepEnd::Status(status) => {
                let mut tree = self.tree.clone();
                tree.grow(limits.chunks_in(host.pages))?;
                let mem = &host.backing.memory;
                tree.update(mem, &indices)?;
                StateFields {
                    status,
                    step: next_step,
                    fuel: pre
                        .fuel
                        .checked_add(used)
                        .ok_or(SandboxError::CounterOverflow)?,
                    memory_pages: host.pages,
                    memory_root: tree.root(),
                }
            }
        };
        Ok((proof, post))
    }
}

/// The prover's full memory, remembering the pre-step contents of every
/// chunk it hands out.
struct Recording {
    memory: Vec<u8>,
    chunk_size: usize,
    pre: BTreeMap<u32, Vec<u8>>,
}

impl Backing for Recording {
    fn chunk(&mut self, index: u32) -> Option<&mut [u8]> {
        let lo = index as usize * self.chunk_size;
        let hi = lo + self.chunk_size;
        if hi > self.memory.len() {
            return None;
        }
        self.pre
            .entry(index)
            .or_insert_with(|| self.memory[lo..hi].to_vec());
        Some(&mut self.memory[lo..hi])
    }

    fn grown(&mut self, pages: u32) {
        self.memory.resize(pages as usize * PAGE_SIZE as usize, 0);
    }
}
