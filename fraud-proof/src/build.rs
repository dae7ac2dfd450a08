//! Building commitments and output proofs from full memory images (std).

use crate::core::regions::{covered_chunks, fully_covered};
use crate::core::{ChunkBytes, ModelCommitment, OutputProof, Region};
use opml_lowering::Artifact;
use opml_runtime::hash::code_hash;
use opml_runtime::limits::ModuleLimits;
use opml_runtime::merkle::MerkleTree;

/// Why a commitment or proof could not be built.
#[derive(Debug)]
pub struct BuildError(pub String);

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::error::Error for BuildError {}

fn err(e: impl std::fmt::Display) -> BuildError {
    BuildError(e.to_string())
}

fn bounded<T, const N: u32>(
    v: Vec<T>,
    what: &str,
) -> Result<bounded_collections::BoundedVec<T, bounded_collections::ConstU32<N>>, BuildError> {
    let len = v.len();
    v.try_into()
        .map_err(|_| BuildError(format!("{len} {what} exceed the limit of {N}")))
}

/// The partially covered chunks of `regions` in `memory`, and the lemmas of
/// all covered chunks in `tree`.
fn region_proof(
    tree: &MerkleTree,
    memory: &[u8],
    regions: &[Region],
    chunk_log2: u32,
) -> Result<(Vec<ChunkBytes>, Vec<opml_runtime::Hash>), BuildError> {
    let chunks = covered_chunks(regions, chunk_log2);
    let size = 1usize << chunk_log2;
    let mut edges = Vec::new();
    for &c in &chunks {
        if !fully_covered(regions, chunk_log2, c) {
            let lo = c as usize * size;
            let data = memory
                .get(lo..lo + size)
                .ok_or_else(|| BuildError(format!("chunk {c} is outside memory")))?;
            edges.push(ChunkBytes {
                index: c,
                data: bounded(data.to_vec(), "chunk bytes")?,
            });
        }
    }
    let lemmas = tree.multiproof(&chunks).map_err(err)?;
    Ok((edges, lemmas))
}

/// The commitment of a module whose initial memory image is `image` (inputs
/// zero). `limits` are the module's.
pub fn commitment_from_image(
    code: &[u8],
    image: &[u8],
    limits: &ModuleLimits,
    inputs: Vec<Region>,
    outputs: Vec<Region>,
    node_ends: Vec<u64>,
) -> Result<ModelCommitment, BuildError> {
    let (log2, depth) = (limits.chunk_log2, limits.tree_depth());
    let tree = MerkleTree::new(depth, limits.chunk_size(), image).map_err(err)?;
    let (edges, lemmas) = region_proof(&tree, image, &inputs, log2)?;
    let model = ModelCommitment {
        code_hash: code_hash(code),
        initial_memory_root: tree.root(),
        memory_pages: limits.min_pages,
        chunk_log2: log2,
        tree_depth: depth,
        inputs: bounded(inputs, "input regions")?,
        input_edges: bounded(edges, "input edge chunks")?,
        input_lemmas: bounded(lemmas, "input lemmas")?,
        outputs: bounded(outputs, "output regions")?,
        node_ends: bounded(node_ends, "graph nodes")?,
    };
    model
        .check_code(code)
        .map_err(|e| BuildError(format!("{e:?}")))?;
    Ok(model)
}

/// The commitment of a lowered model.
pub fn commitment_from_artifact(a: &Artifact) -> Result<ModelCommitment, BuildError> {
    let region = |t: &usize| {
        let t = &a.program.tensors[*t];
        Region {
            offset: t.offset,
            len: t.bytes(),
        }
    };
    let mut inputs: Vec<Region> = a.program.inputs.iter().map(region).collect();
    let mut outputs: Vec<Region> = a.program.outputs.iter().map(region).collect();
    inputs.sort_by_key(|r| r.offset);
    outputs.sort_by_key(|r| r.offset);
    if inputs
        .windows(2)
        .any(|w| w[0].offset != w[1].offset && w[0].end() > u64::from(w[1].offset))
    {
        return Err(BuildError("input tensors overlap".into()));
    }
    let limits = a.compiled().map_err(err)?.info().limits;
    let ends = a.nodes.iter().map(|n| n.end_step).collect();
    commitment_from_image(a.wasm(), &a.initial_image(), &limits, inputs, outputs, ends)
}

/// A task's input bytes in the commitment's order (regions ascending by
/// offset) from the artifact's per-tensor inputs.
pub fn input_bytes(a: &Artifact, inputs: &[Vec<u8>]) -> Vec<u8> {
    let mut order: Vec<(u32, &Vec<u8>)> = a
        .program
        .inputs
        .iter()
        .zip(inputs)
        .map(|(t, b)| (a.program.tensors[*t].offset, b))
        .collect();
    order.sort_by_key(|(o, _)| *o);
    order
        .into_iter()
        .flat_map(|(_, b)| b.iter().copied())
        .collect()
}

/// The output bytes of `memory` (regions concatenated) and their proof.
pub fn output_proof(
    model: &ModelCommitment,
    memory: &[u8],
) -> Result<(Vec<u8>, OutputProof), BuildError> {
    let tree = MerkleTree::new(model.tree_depth, 1 << model.chunk_log2, memory).map_err(err)?;
    let (edges, lemmas) = region_proof(&tree, memory, &model.outputs, model.chunk_log2)?;
    let mut out = Vec::new();
    for r in model.outputs.iter() {
        let (lo, hi) = (r.offset as usize, r.end() as usize);
        out.extend_from_slice(
            memory
                .get(lo..hi)
                .ok_or_else(|| BuildError("output outside memory".into()))?,
        );
    }
    Ok((
        out,
        OutputProof {
            edges: bounded(edges, "output edge chunks")?,
            lemmas: bounded(lemmas, "output lemmas")?,
        },
    ))
}
