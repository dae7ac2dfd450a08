//! A server's claim about one task, checked at submission.

use super::commitment::{
    initial_state, verify_output, CommitmentError, ModelCommitment, OutputProof,
};
use super::{Hash, CLAIM_TAG, INPUT_TAG, OUTPUT_TAG};
use opml_runtime::hash::tagged;
use opml_runtime::{StateFields, Status};
use parity_scale_codec::{Decode, Encode, MaxEncodedLen};
use scale_info::TypeInfo;

/// What a server commits to for one task. Only `final_root` and the output
/// come from the server; `initial_root` is derived from the model and the
/// input, and the output is proven against the final state at submission.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Encode, Decode, MaxEncodedLen, TypeInfo)]
pub struct Claim {
    pub task: u64,
    /// [`ModelCommitment::hash`].
    pub model: Hash,
    /// [`input_hash`] of the task input.
    pub input_hash: Hash,
    /// [`output_hash`] of the claimed output.
    pub output_hash: Hash,
    /// State root at step 0 (derived, never taken from the server).
    pub initial_root: Hash,
    /// Claimed state root at step N (halted).
    pub final_root: Hash,
    /// N: total steps, from the model.
    pub steps: u64,
}

/// Why a claim was refused at submission.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ClaimError {
    /// The input or output does not fit the model, or its proof fails.
    Commitment(CommitmentError),
    /// The claimed final state is not halted.
    NotHalted,
    /// The claimed final state is not at step N.
    WrongStepCount { expected: u64, got: u64 },
}

impl From<CommitmentError> for ClaimError {
    fn from(e: CommitmentError) -> Self {
        Self::Commitment(e)
    }
}

/// Domain-separated hash of task input bytes.
pub fn input_hash(input: &[u8]) -> Hash {
    tagged(INPUT_TAG, &[input])
}

/// Domain-separated hash of output bytes.
pub fn output_hash(output: &[u8]) -> Hash {
    tagged(OUTPUT_TAG, &[output])
}

impl Claim {
    /// Checks a submission and builds the claim: the final state is halted
    /// at step N, `output` is proven against its memory root, and the
    /// initial root is derived from `model` and `input`.
    pub fn new(
        task: u64,
        model: &ModelCommitment,
        input: &[u8],
        output: &[u8],
        final_state: &StateFields,
        proof: &OutputProof,
    ) -> Result<Self, ClaimError> {
        let initial = initial_state(model, input)?;
        if final_state.status != Status::Halted {
            return Err(ClaimError::NotHalted);
        }
        if final_state.step != model.steps() {
            return Err(ClaimError::WrongStepCount {
                expected: model.steps(),
                got: final_state.step,
            });
        }
        verify_output(model, final_state, output, proof)?;
        Ok(Claim {
            task,
            model: model.hash(),
            input_hash: input_hash(input),
            output_hash: output_hash(output),
            initial_root: initial.hash(),
            final_root: final_state.hash(),
            steps: model.steps(),
        })
    }

    /// Domain-separated hash of the encoding.
    pub fn hash(&self) -> Hash {
        tagged(CLAIM_TAG, &[&self.encode()])
    }
}
