//! `verify_one_step`: re-executes one step over the memory chunks of a proof.
//!
//! no_std + alloc: this is what a chain runs. The module is admitted and
//! rewritten into its virtual variant (memory served by the host, see
//! [`crate::instrument`]), the proof's chunks are checked against the
//! pre-state's memory root, and the step runs in wasmi over just those
//! chunks. Any access outside them makes the proof invalid, so memory use and
//! time are proportional to the proof and the step, never to the module's
//! memory. The post-state root comes from the same multiproof with the
//! chunks' new contents.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use opml_runtime::{Sandbox, verify_one_step};
//! let code = wat::parse_str(r#"(module
//!   (memory (export "memory") 1 1)
//!   (global (export "opml_step_fuel") i64 (i64.const 1000))
//!   (func (export "step") (result i32)
//!     (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
//!     (i32.lt_u (i32.load (i32.const 0)) (i32.const 3))))"#)?;
//! let mut sandbox = Sandbox::new(&code)?;
//! let pre_root = sandbox.state_root();
//! let proof = sandbox.prove_next_step()?;
//! let post = sandbox.step()?;
//! assert_eq!(verify_one_step(&code, &pre_root, &proof)?, post.hash());
//! # Ok(()) }
//! ```

use crate::admission::{admit, AdmissionError};
use crate::engine::{engine, run_virtual_step, EngineError, StepEnd, VirtualStep};
use crate::hash::{leaf_hash, Hash};
use crate::instrument::{instrument, InstrumentError, Variant};
use crate::merkle::{root_from_multiproof, MerkleError};
use crate::proof::{OneStepProof, ProofDecodeError, PROOF_VERSION};
use crate::state::{Fault, StateFields, Status};
use crate::vmem::{HostMemory, HostStop, SparseChunks};
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use wasmi::Module;

/// Why a proof was rejected (or could not be checked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyError {
    /// The code is not an admissible module.
    Admission(AdmissionError),
    /// The proof bytes do not decode.
    Decode(ProofDecodeError),
    /// The proof names a version this verifier does not know.
    UnsupportedVersion(u8),
    /// `hash(proof.pre)` is not the claimed pre-state root.
    PreStateMismatch,
    /// A halted or faulted state takes no step.
    PreStateTerminal(Status),
    /// The pre-state's memory size is outside the module's limits.
    BadMemorySize { pages: u32, min: u32, max: u32 },
    /// More chunks than one step may touch.
    TooManyChunks { count: usize, max: u32 },
    /// Chunk indices not strictly ascending.
    ChunksNotSorted,
    /// A chunk beyond the module's largest memory.
    ChunkOutOfRange { index: u32 },
    /// A chunk of the wrong size.
    BadChunkSize {
        index: u32,
        len: usize,
        expected: usize,
    },
    /// The multiproof is malformed.
    Merkle(MerkleError),
    /// The chunks do not hash to the pre-state's memory root.
    MemoryRootMismatch,
    /// The step accessed a chunk the proof does not hold.
    MissingChunk(u32),
    /// The step counter or cumulative fuel would overflow.
    CounterOverflow,
    /// Internal: instrumentation or the engine failed (a bug, never a verdict
    /// on the proof's content).
    Internal(String),
}

impl core::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Admission(e) => write!(f, "module not admissible: {e}"),
            Self::Decode(e) => write!(f, "{e}"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported proof version {v}"),
            Self::PreStateMismatch => write!(f, "proof pre-state does not hash to the given root"),
            Self::PreStateTerminal(s) => {
                write!(f, "pre-state is terminal ({s:?}): no step to prove")
            }
            Self::BadMemorySize { pages, min, max } => {
                write!(f, "pre-state memory of {pages} pages outside {min}..={max}")
            }
            Self::TooManyChunks { count, max } => {
                write!(f, "{count} chunks exceed the step limit {max}")
            }
            Self::ChunksNotSorted => write!(f, "chunk indices are not strictly ascending"),
            Self::ChunkOutOfRange { index } => {
                write!(f, "chunk {index} is beyond the largest memory")
            }
            Self::BadChunkSize {
                index,
                len,
                expected,
            } => {
                write!(f, "chunk {index} has {len} bytes, expected {expected}")
            }
            Self::Merkle(e) => write!(f, "bad multiproof: {e}"),
            Self::MemoryRootMismatch => write!(f, "chunks do not match the pre-state memory root"),
            Self::MissingChunk(c) => {
                write!(f, "step accesses chunk {c}, which the proof does not hold")
            }
            Self::CounterOverflow => write!(f, "step counter or cumulative fuel overflows"),
            Self::Internal(e) => write!(f, "internal verifier error: {e}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for VerifyError {}

impl From<InstrumentError> for VerifyError {
    fn from(e: InstrumentError) -> Self {
        Self::Internal(e.0)
    }
}

impl From<EngineError> for VerifyError {
    fn from(e: EngineError) -> Self {
        Self::Internal(e.0)
    }
}

fn internal(e: impl core::fmt::Display) -> VerifyError {
    VerifyError::Internal(alloc::format!("{e}"))
}

/// Verifies `proof` against `pre_state_root` and returns the post-state root.
pub fn verify_one_step(
    code: &[u8],
    pre_state_root: &Hash,
    proof: &OneStepProof,
) -> Result<Hash, VerifyError> {
    verify_one_step_fields(code, pre_state_root, proof).map(|f| f.hash())
}

/// [`verify_one_step`] on SCALE bytes of at most `max_len` bytes.
pub fn verify_one_step_bytes(
    code: &[u8],
    pre_state_root: &Hash,
    proof: &[u8],
    max_len: usize,
) -> Result<Hash, VerifyError> {
    let proof = OneStepProof::decode_bounded(proof, max_len).map_err(VerifyError::Decode)?;
    verify_one_step(code, pre_state_root, &proof)
}

/// Like [`verify_one_step`], returning every post-state field.
pub fn verify_one_step_fields(
    code: &[u8],
    pre_state_root: &Hash,
    proof: &OneStepProof,
) -> Result<StateFields, VerifyError> {
    let info = admit(code).map_err(VerifyError::Admission)?;
    let limits = info.limits;
    if proof.version != PROOF_VERSION {
        return Err(VerifyError::UnsupportedVersion(proof.version));
    }
    let pre = proof.pre;
    if &pre.hash() != pre_state_root {
        return Err(VerifyError::PreStateMismatch);
    }
    if pre.status.is_terminal() {
        return Err(VerifyError::PreStateTerminal(pre.status));
    }
    let next_step = pre
        .step
        .checked_add(1)
        .ok_or(VerifyError::CounterOverflow)?;
    if pre.memory_pages < limits.min_pages || pre.memory_pages > limits.max_pages {
        return Err(VerifyError::BadMemorySize {
            pages: pre.memory_pages,
            min: limits.min_pages,
            max: limits.max_pages,
        });
    }
    // Counted chunks plus, for accesses straddling a boundary, the next one
    // (see crate::vmem).
    let max_chunks_in_proof = 2 * limits.max_touched;
    if proof.chunks.len() > max_chunks_in_proof as usize {
        return Err(VerifyError::TooManyChunks {
            count: proof.chunks.len(),
            max: max_chunks_in_proof,
        });
    }
    let chunk_size = limits.chunk_size();
    let max_chunks = limits.max_chunks();
    let mut leaves = Vec::with_capacity(proof.chunks.len());
    for (i, c) in proof.chunks.iter().enumerate() {
        if i > 0 && proof.chunks[i - 1].index >= c.index {
            return Err(VerifyError::ChunksNotSorted);
        }
        if u64::from(c.index) >= max_chunks {
            return Err(VerifyError::ChunkOutOfRange { index: c.index });
        }
        if c.data.len() != chunk_size {
            return Err(VerifyError::BadChunkSize {
                index: c.index,
                len: c.data.len(),
                expected: chunk_size,
            });
        }
        leaves.push((c.index, leaf_hash(&c.data)));
    }
    let depth = limits.tree_depth();
    if !leaves.is_empty() {
        let root =
            root_from_multiproof(depth, &leaves, &proof.lemmas).map_err(VerifyError::Merkle)?;
        if root != pre.memory_root {
            return Err(VerifyError::MemoryRootMismatch);
        }
    } else if !proof.lemmas.is_empty() {
        return Err(VerifyError::Merkle(MerkleError::ExtraLemmas {
            used: 0,
            supplied: proof.lemmas.len(),
        }));
    }

    // Run the step over the proven chunks.
    let chunks: BTreeMap<u32, Vec<u8>> = proof
        .chunks
        .iter()
        .map(|c| (c.index, c.data.clone()))
        .collect();
    let virt = instrument(code, &info, Variant::Virtual)?;
    let engine = engine();
    let module = Module::new(&engine, &virt[..]).map_err(internal)?;
    let memory = HostMemory::new(
        SparseChunks(chunks),
        limits.chunk_log2,
        pre.memory_pages,
        limits.max_pages,
        limits.max_touched,
    );
    let VirtualStep {
        end,
        fuel_used: used,
        memory,
    } = run_virtual_step(&engine, &module, memory, limits.step_fuel)?;

    let status = match end {
        StepEnd::Host(HostStop::MissingChunk(c)) => return Err(VerifyError::MissingChunk(c)),
        StepEnd::Host(HostStop::TouchLimit) => {
            return Ok(StateFields {
                status: Status::Faulted(Fault::TouchLimit),
                step: next_step,
                ..pre
            });
        }
        StepEnd::Status(s) => s,
    };
    let fuel = pre
        .fuel
        .checked_add(used)
        .ok_or(VerifyError::CounterOverflow)?;
    let memory_root = if leaves.is_empty() {
        pre.memory_root
    } else {
        let post_leaves: Vec<(u32, Hash)> = memory
            .backing
            .0
            .iter()
            .map(|(i, data)| (*i, leaf_hash(data)))
            .collect();
        root_from_multiproof(depth, &post_leaves, &proof.lemmas).map_err(VerifyError::Merkle)?
    };
    Ok(StateFields {
        status,
        step: next_step,
        fuel,
        memory_pages: memory.pages,
        memory_root,
    })
}
