//! What a chain registers about a model, and the two checks that bind a task
//! to it: the initial state root derived from the input, and the claimed
//! output proven against the final memory root.

use super::regions::{
    chunk_contents, covered_chunks, edge_chunks, total_len, well_formed, write_regions, ChunkBytes,
    EdgeError, Regions,
};
use super::{
    Hash, MAX_EDGE_CHUNKS, MAX_EDGE_CHUNK_LOG2, MAX_LEMMAS, MAX_NODES, MODEL_TAG, OUTPROOF_TAG,
};
use alloc::vec::Vec;
use bounded_collections::{BoundedVec, ConstU32};
use opml_runtime::hash::{code_hash, leaf_hash, tagged};
use opml_runtime::limits::{MAX_CHUNK_LOG2, MIN_CHUNK_LOG2, PAGE_SIZE};
use opml_runtime::merkle::{root_from_multiproof, MerkleError, MAX_PROOF_DEPTH};
use opml_runtime::{StateFields, Status};
use parity_scale_codec::{Decode, DecodeWithMemTracking, Encode, MaxEncodedLen};
use scale_info::TypeInfo;

/// A registered model.
///
/// `input_edges` and `input_lemmas` prove the chunks covering the input
/// regions against `initial_memory_root` (inputs zero): the full initial
/// contents of every chunk the inputs only partly cover, and the Merkle
/// multiproof lemmas of all covered chunks. From them and the input bytes
/// anyone derives a task's initial state root without the memory image.
#[derive(
    Clone, PartialEq, Eq, Debug, Encode, Decode, DecodeWithMemTracking, MaxEncodedLen, TypeInfo,
)]
pub struct ModelCommitment {
    /// `opml_runtime::hash::code_hash` of the Wasm module.
    pub code_hash: Hash,
    /// Memory root of the image at instantiation, inputs zero.
    pub initial_memory_root: Hash,
    /// Memory size in 64 KiB pages (fixed for lowered models).
    pub memory_pages: u32,
    /// log2 of the Merkle chunk size.
    pub chunk_log2: u32,
    /// Depth of the memory Merkle tree.
    pub tree_depth: u32,
    /// Input tensors, ascending and disjoint; a task's input is their bytes
    /// concatenated in this order.
    pub inputs: Regions,
    pub input_edges: BoundedVec<ChunkBytes, ConstU32<MAX_EDGE_CHUNKS>>,
    pub input_lemmas: BoundedVec<Hash, ConstU32<MAX_LEMMAS>>,
    /// Output tensors, ascending and disjoint.
    pub outputs: Regions,
    /// Step index at the end of each graph node, strictly ascending; the last
    /// is the total step count N.
    pub node_ends: BoundedVec<u64, ConstU32<MAX_NODES>>,
}

/// A Merkle proof of output bytes against a final memory root: the full
/// final contents of the chunks the outputs only partly cover, and the
/// multiproof lemmas of all covered chunks.
#[derive(
    Clone, PartialEq, Eq, Debug, Encode, Decode, DecodeWithMemTracking, MaxEncodedLen, TypeInfo,
)]
pub struct OutputProof {
    pub edges: BoundedVec<ChunkBytes, ConstU32<MAX_EDGE_CHUNKS>>,
    pub lemmas: BoundedVec<Hash, ConstU32<MAX_LEMMAS>>,
}

impl OutputProof {
    /// Domain-separated hash of the encoding.
    pub fn hash(&self) -> Hash {
        tagged(OUTPROOF_TAG, &[&self.encode()])
    }
}

/// Why a commitment, an input or an output proof was rejected.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum CommitmentError {
    /// `chunk_log2` outside the runtime's range.
    BadChunkSize(u32),
    /// The tree is too deep for a multiproof, or too shallow for the memory.
    BadTreeDepth(u32),
    /// Node ends are empty, start at 0, or are not strictly ascending.
    BadNodeEnds,
    /// Regions overlap, are not ascending, or leave memory.
    BadRegions,
    /// The code does not hash to `code_hash`.
    CodeHashMismatch,
    /// The code's limits (pages, chunk size, depth) differ from the commitment.
    LimitsMismatch,
    /// The code is not admissible.
    Inadmissible,
    /// The input (or output) is not as long as its regions together.
    WrongLength { expected: u64, got: u64 },
    /// A partially covered chunk lacks its contents.
    MissingEdgeChunk(u32),
    /// Contents given for a chunk that is not partially covered.
    UnexpectedEdgeChunk(u32),
    /// Chunk contents of the wrong size.
    EdgeChunkSize(u32),
    /// The model has no inputs or no outputs.
    NoRegions,
    /// The input or output regions partly cover more than `MAX_EDGE_CHUNKS`
    /// chunks, or partly cover chunks larger than `MAX_EDGE_CHUNK_BYTES`:
    /// the commitment or an output proof could not carry them.
    EdgesOutOfBounds,
    /// The multiproof is malformed (too few or too many lemmas, ...).
    Merkle(MerkleError),
    /// The input chunks do not hash to the initial memory root.
    InitialRootMismatch,
    /// The output bytes do not hash to the final memory root.
    OutputMismatch,
}

impl From<EdgeError> for CommitmentError {
    fn from(e: EdgeError) -> Self {
        match e {
            EdgeError::Missing(c) => Self::MissingEdgeChunk(c),
            EdgeError::Unexpected(c) => Self::UnexpectedEdgeChunk(c),
            EdgeError::WrongSize(c) => Self::EdgeChunkSize(c),
        }
    }
}

impl ModelCommitment {
    /// Domain-separated hash of the encoding: the model id.
    pub fn hash(&self) -> Hash {
        tagged(MODEL_TAG, &[&self.encode()])
    }

    /// Total steps N of a run.
    pub fn steps(&self) -> u64 {
        self.node_ends.last().copied().unwrap_or(0)
    }

    /// Bytes of linear memory.
    pub fn memory_len(&self) -> u64 {
        u64::from(self.memory_pages) * PAGE_SIZE
    }

    /// Structural checks (no code needed).
    pub fn validate(&self) -> Result<(), CommitmentError> {
        if !(MIN_CHUNK_LOG2..=MAX_CHUNK_LOG2).contains(&self.chunk_log2) {
            return Err(CommitmentError::BadChunkSize(self.chunk_log2));
        }
        let chunks = self.memory_len() >> self.chunk_log2;
        if self.tree_depth > MAX_PROOF_DEPTH || chunks > (1u64 << self.tree_depth) {
            return Err(CommitmentError::BadTreeDepth(self.tree_depth));
        }
        let mut prev = 0u64;
        for &e in self.node_ends.iter() {
            if e <= prev {
                return Err(CommitmentError::BadNodeEnds);
            }
            prev = e;
        }
        if self.node_ends.is_empty() {
            return Err(CommitmentError::BadNodeEnds);
        }
        if self.inputs.is_empty() || self.outputs.is_empty() {
            return Err(CommitmentError::NoRegions);
        }
        if !well_formed(&self.inputs, self.memory_len())
            || !well_formed(&self.outputs, self.memory_len())
        {
            return Err(CommitmentError::BadRegions);
        }
        for regions in [&self.inputs, &self.outputs] {
            let edges = edge_chunks(regions, self.chunk_log2).len();
            if edges > MAX_EDGE_CHUNKS as usize
                || (edges > 0 && self.chunk_log2 > MAX_EDGE_CHUNK_LOG2)
            {
                return Err(CommitmentError::EdgesOutOfBounds);
            }
        }
        Ok(())
    }

    /// Checks the commitment against the module's code: its hash and the
    /// limits it declares (what a chain does at registration).
    pub fn check_code(&self, code: &[u8]) -> Result<(), CommitmentError> {
        self.validate()?;
        if code_hash(code) != self.code_hash {
            return Err(CommitmentError::CodeHashMismatch);
        }
        let limits = opml_runtime::admission::admit(code)
            .map_err(|_| CommitmentError::Inadmissible)?
            .limits;
        if limits.min_pages != self.memory_pages
            || limits.max_pages != self.memory_pages
            || limits.chunk_log2 != self.chunk_log2
            || limits.tree_depth() != self.tree_depth
        {
            return Err(CommitmentError::LimitsMismatch);
        }
        Ok(())
    }

    /// Bytes of a task input.
    pub fn input_len(&self) -> u64 {
        total_len(&self.inputs)
    }

    /// Bytes of a task output.
    pub fn output_len(&self) -> u64 {
        total_len(&self.outputs)
    }
}

fn check_len(expected: u64, got: usize) -> Result<(), CommitmentError> {
    if expected != got as u64 {
        return Err(CommitmentError::WrongLength {
            expected,
            got: got as u64,
        });
    }
    Ok(())
}

fn root_of(
    depth: u32,
    chunks: &[u32],
    contents: &[Vec<u8>],
    lemmas: &[Hash],
) -> Result<Hash, CommitmentError> {
    let leaves: Vec<(u32, Hash)> = chunks
        .iter()
        .zip(contents)
        .map(|(&i, c)| (i, leaf_hash(c)))
        .collect();
    root_from_multiproof(depth, &leaves, lemmas).map_err(CommitmentError::Merkle)
}

/// The initial state of a task on `model` with `input` (the input regions'
/// bytes, concatenated): checks the commitment's input proof against the
/// initial memory root, then recomputes the root with the input written.
/// Costs O(input chunks * (chunk size + depth)) hashing, never the memory.
pub fn initial_state(
    model: &ModelCommitment,
    input: &[u8],
) -> Result<StateFields, CommitmentError> {
    model.validate()?;
    check_len(model.input_len(), input.len())?;
    let (log2, depth) = (model.chunk_log2, model.tree_depth);
    let chunks = covered_chunks(&model.inputs, log2);
    let mut contents = chunk_contents(&model.inputs, log2, &chunks, &model.input_edges)?;
    if root_of(depth, &chunks, &contents, &model.input_lemmas)? != model.initial_memory_root {
        return Err(CommitmentError::InitialRootMismatch);
    }
    write_regions(&model.inputs, log2, &chunks, &mut contents, input);
    Ok(StateFields {
        status: Status::Running,
        step: 0,
        fuel: 0,
        memory_pages: model.memory_pages,
        memory_root: root_of(depth, &chunks, &contents, &model.input_lemmas)?,
    })
}

/// Checks that `output` (the output regions' bytes, concatenated) is what the
/// memory of `final_state` holds there.
pub fn verify_output(
    model: &ModelCommitment,
    final_state: &StateFields,
    output: &[u8],
    proof: &OutputProof,
) -> Result<(), CommitmentError> {
    model.validate()?;
    check_len(model.output_len(), output.len())?;
    let (log2, depth) = (model.chunk_log2, model.tree_depth);
    let chunks = covered_chunks(&model.outputs, log2);
    let mut contents = chunk_contents(&model.outputs, log2, &chunks, &proof.edges)?;
    write_regions(&model.outputs, log2, &chunks, &mut contents, output);
    if root_of(depth, &chunks, &contents, &proof.lemmas)? != final_state.memory_root {
        return Err(CommitmentError::OutputMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Region;
    use alloc::vec;
    use parity_scale_codec::DecodeWithMemLimit;

    fn commitment() -> ModelCommitment {
        ModelCommitment {
            code_hash: [1; 32],
            initial_memory_root: [2; 32],
            memory_pages: 1,
            chunk_log2: 10,
            tree_depth: 6,
            inputs: vec![Region {
                offset: 0,
                len: 100,
            }]
            .try_into()
            .unwrap(),
            input_edges: vec![ChunkBytes {
                index: 0,
                data: vec![0u8; 1024].try_into().unwrap(),
            }]
            .try_into()
            .unwrap(),
            input_lemmas: vec![[3; 32]; 6].try_into().unwrap(),
            outputs: vec![Region {
                offset: 2048,
                len: 10,
            }]
            .try_into()
            .unwrap(),
            node_ends: vec![1, 2, 3].try_into().unwrap(),
        }
    }

    #[test]
    fn max_encoded_len_is_bounded_works() {
        // 8 edge chunks of 4 KiB, 512 lemmas, 1 024 node ends, 16 regions.
        assert_eq!(ModelCommitment::max_encoded_len(), 57_603);
        assert!(OutputProof::max_encoded_len() < 50 * 1024);
        assert_eq!(commitment().validate(), Ok(()));
    }

    #[test]
    fn cannot_validate_if_edge_chunks_too_large() {
        // 8 KiB chunks: the input's partly covered chunk could not be carried.
        let mut c = commitment();
        c.chunk_log2 = 13;
        c.tree_depth = 3;
        assert_eq!(c.validate(), Err(CommitmentError::EdgesOutOfBounds));
        // Chunk-aligned regions need no edge chunks: fine at any chunk size.
        c.inputs = vec![Region {
            offset: 0,
            len: 8192,
        }]
        .try_into()
        .unwrap();
        c.outputs = vec![Region {
            offset: 8192,
            len: 8192,
        }]
        .try_into()
        .unwrap();
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn cannot_validate_if_too_many_edge_chunks() {
        // 5 regions of 10 bytes, each in the middle of its own 1 KiB chunk
        // ... and of the next: 10 partly covered chunks.
        let mut c = commitment();
        c.memory_pages = 1;
        let regions: Vec<Region> = (0..5)
            .map(|i| Region {
                offset: 2048 * i + 1019,
                len: 10,
            })
            .collect();
        c.outputs = regions.try_into().unwrap();
        assert_eq!(c.validate(), Err(CommitmentError::EdgesOutOfBounds));
        c.outputs.truncate(4);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn decode_with_mem_limit_works() {
        let (c, p) = (
            commitment(),
            OutputProof {
                edges: Default::default(),
                lemmas: vec![[4; 32]].try_into().unwrap(),
            },
        );
        let got = ModelCommitment::decode_with_mem_limit(&mut &c.encode()[..], 1 << 20).unwrap();
        assert_eq!(got, c);
        let got = OutputProof::decode_with_mem_limit(&mut &p.encode()[..], 1 << 20).unwrap();
        assert_eq!(got, p);
    }

    #[test]
    fn cannot_decode_commitment_if_mem_limit_too_small() {
        // The edge chunk alone allocates 1 KiB.
        let bytes = commitment().encode();
        assert!(ModelCommitment::decode_with_mem_limit(&mut &bytes[..], 512).is_err());
    }
}
