//! The records the pallet stores. Every one is bounded (`MaxEncodedLen`).

use crate::game::{Claim, Game};
use frame_support::pallet_prelude::*;
use frame_support::BoundedVec;
use opml_runtime::Hash;
use scale_info::TypeInfo;

/// Index of a registered model.
pub type ModelId = u32;
/// Index of a task.
pub type TaskId = u64;

/// A registered model: who registered it, the deposit held for its storage,
/// and a summary of its commitment (the full commitment is in
/// [`Commitments`](crate::Commitments), the code in [`Code`](crate::Code)).
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, MaxEncodedLen, TypeInfo)]
pub struct ModelInfo<AccountId, Balance> {
    pub owner: AccountId,
    pub deposit: Balance,
    /// `ModelCommitment::hash`: the model's identity in claims.
    pub model_hash: Hash,
    pub code_hash: Hash,
    /// N: steps of every run.
    pub steps: u64,
    /// Bytes of a task input.
    pub input_len: u64,
}

/// Where a task is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Encode, Decode, MaxEncodedLen, TypeInfo)]
pub enum TaskStatus {
    /// Waiting for a result (again, after a claim was refuted).
    Open,
    /// A claim is posted; see [`Claims`](crate::Claims). Once it stood
    /// through its challenge period and every dispute, `finalize` pays the
    /// fee and removes the task and the claim.
    Claimed,
}

/// A task: a model applied to one input, paid for by `requester`.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, MaxEncodedLen, TypeInfo)]
#[scale_info(skip_type_params(MaxInput))]
pub struct Task<AccountId, Balance, BlockNumber, MaxInput: Get<u32>> {
    pub requester: AccountId,
    pub model: ModelId,
    pub input: BoundedVec<u8, MaxInput>,
    /// Held from `requester` until the task is finalized.
    pub fee: Balance,
    pub status: TaskStatus,
    pub created: BlockNumber,
}

/// A posted claim with its bond and output.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, MaxEncodedLen, TypeInfo)]
#[scale_info(skip_type_params(MaxOutput))]
pub struct ClaimRecord<AccountId, Balance, BlockNumber, MaxOutput: Get<u32>> {
    pub server: AccountId,
    /// The core's claim (initial root derived on-chain, output proven).
    pub claim: Claim,
    /// The claimed output bytes (`claim.output_hash` commits to them).
    pub output: BoundedVec<u8, MaxOutput>,
    /// Held from `server` under `HoldReason::ServerBond`.
    pub bond: Balance,
    /// Challenges are accepted up to and including this block.
    pub challenge_end: BlockNumber,
    /// Games still being played against this claim.
    pub open_games: u32,
}

/// One challenger's game against a claim.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, MaxEncodedLen, TypeInfo)]
pub struct GameRecord<Balance> {
    /// Held from the challenger under `HoldReason::ChallengerBond`.
    pub bond: Balance,
    /// The core's state machine (time in block numbers).
    pub game: Game,
}

/// What the benchmarks need of a real model: a registered model's code and
/// commitment, a task input, a wrong result on it, and the moves of the game
/// that refutes it (dissections and picks, then the one-step proof).
#[cfg(feature = "runtime-benchmarks")]
pub struct BenchScenario {
    pub code: alloc::vec::Vec<u8>,
    pub commitment: crate::game::ModelCommitment,
    pub input: alloc::vec::Vec<u8>,
    pub output: alloc::vec::Vec<u8>,
    pub final_fuel: u64,
    pub final_memory_root: opml_runtime::Hash,
    pub output_proof: crate::game::OutputProof,
    pub moves: alloc::vec::Vec<crate::game::Move>,
}

/// Provides the benchmarks' scenario (a chain embeds one for the largest
/// model and proof it admits).
#[cfg(feature = "runtime-benchmarks")]
pub trait BenchmarkHelper {
    /// The chain's reference model (its largest real one).
    fn scenario() -> BenchScenario;
    /// A scenario whose one-step proof is close to `MaxProofLen`.
    fn largest_proof_scenario() -> BenchScenario;
}
