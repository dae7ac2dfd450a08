//! The game core: pure, no_std + alloc. Everything here is what a chain runs
//! (the pallet stores these types and calls these functions); time is always
//! an input (a block number), never a clock.

pub mod bisection;
pub mod claim;
pub mod commitment;
pub mod game;
pub mod regions;
pub mod state;

pub use bisection::{ceil_log, dissection, round_bound, Dissection};
pub use claim::{Claim, ClaimError};
pub use commitment::{initial_state, verify_output, CommitmentError, ModelCommitment, OutputProof};
pub use game::{EndReason, Game, GameError, Move, Outcome, Party, Phase};
pub use regions::{ChunkBytes, Region};
pub use state::CommittedState;

/// A SHA-256 digest (the runtime's).
pub use opml_runtime::Hash;

/// Largest arity of the bisection.
pub const MAX_K: u32 = 16;
/// Most dissection points in one move (`MAX_K - 1`).
pub const MAX_POINTS: u32 = MAX_K - 1;
// The bounds below set `ModelCommitment::max_encoded_len()` (57 603 B; it was
// 1.25 MB with 16 edge chunks of up to 64 KiB), which a chain charges as the
// proof size of every call reading a commitment. The real fixtures use far
// less (`tests/commitment_bounds.rs`): digits 5 nodes, 1 edge chunk of 512 B,
// 7 lemmas (879 B); PaddleOCR 109 nodes, 2 edge chunks, 8 lemmas (2 262 B);
// MiniLM 88 nodes.

/// Most graph nodes of a committed model.
pub const MAX_NODES: u32 = 1024;
/// Most input (or output) regions of a model.
pub const MAX_REGIONS: u32 = 8;
/// Most partially covered chunks of the input (or output) regions together
/// (`ModelCommitment::validate` refuses layouts with more).
pub const MAX_EDGE_CHUNKS: u32 = 8;
/// log2 of the largest chunk a commitment or an output proof carries whole:
/// a model with larger chunks must align its input and output regions to
/// chunk boundaries (`validate` checks it).
pub const MAX_EDGE_CHUNK_LOG2: u32 = 12;
/// Largest partially covered chunk carried whole (4 KiB).
pub const MAX_EDGE_CHUNK_BYTES: u32 = 1 << MAX_EDGE_CHUNK_LOG2;
/// Most Merkle lemmas of an input or output proof. The covered chunks of at
/// most `MAX_REGIONS` regions form at most that many runs of adjacent
/// leaves; a multiproof needs at most two siblings per run per tree level.
pub const MAX_LEMMAS: u32 = 2 * MAX_REGIONS * opml_runtime::merkle::MAX_PROOF_DEPTH;
/// Largest one-step proof accepted in a [`Move::OneStep`].
pub const MAX_PROOF_BYTES: u32 = 1 << 21;

/// Tag of a model commitment hash.
pub const MODEL_TAG: &[u8; 16] = b"opml.model.v1\0\0\0";
/// Tag of a claim hash.
pub const CLAIM_TAG: &[u8; 16] = b"opml.claim.v1\0\0\0";
/// Tag of a game-state hash.
pub const GAME_TAG: &[u8; 16] = b"opml.game.v1\0\0\0\0";
/// Tag of a move hash.
pub const MOVE_TAG: &[u8; 16] = b"opml.move.v1\0\0\0\0";
/// Tag of output bytes (`Claim::output_hash`).
pub const OUTPUT_TAG: &[u8; 16] = b"opml.output.v1\0\0";
/// Tag of input bytes (`Claim::input_hash`).
pub const INPUT_TAG: &[u8; 16] = b"opml.input.v1\0\0\0";
/// Tag of an output proof hash.
pub const OUTPROOF_TAG: &[u8; 16] = b"opml.outprf.v1\0\0";
